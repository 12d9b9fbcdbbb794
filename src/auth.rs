//! Credentials: device secrets (random, shown once, stored as SHA-256) and their checks.
//!
//! Device secrets are 256 random bits, so a fast hash is enough to store them: there is nothing to
//! brute-force. (Clerk passwords, chosen by people, need a slow hash; they live with the review pages.)

use sha2::{Digest, Sha256};

/// A device's bearer token as given to the handheld: `DEVICE_ID.SECRET` (the id lets the gateway find the
/// stored hash without scanning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceToken {
    pub device_id: String,
    pub secret: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the system random number generator failed: {0}")]
    Random(String),
    #[error("malformed device token (expected DEVICE_ID.SECRET)")]
    MalformedToken,
}

impl DeviceToken {
    /// A fresh token for `device_id` from the operating system's random generator.
    pub fn generate(device_id: &str) -> Result<DeviceToken, AuthError> {
        Ok(DeviceToken {
            device_id: device_id.to_string(),
            secret: random_hex(32)?,
        })
    }

    pub fn parse(token: &str) -> Result<DeviceToken, AuthError> {
        let (id, secret) = token
            .trim()
            .rsplit_once('.')
            .ok_or(AuthError::MalformedToken)?;
        if id.is_empty() || secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AuthError::MalformedToken);
        }
        Ok(DeviceToken {
            device_id: id.to_string(),
            secret: secret.to_ascii_lowercase(),
        })
    }

    pub fn secret_sha256(&self) -> String {
        sha256_hex(self.secret.as_bytes())
    }
}

impl std::fmt::Display for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.device_id, self.secret)
    }
}

/// `n` bytes from the operating system's random generator, as lower-case hex.
pub fn random_hex(n: usize) -> Result<String, AuthError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(hex(&bytes))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Compares two hashes in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_back_and_its_hash_matches() {
        let t = DeviceToken::generate("HH-01").unwrap();
        let parsed = DeviceToken::parse(&t.to_string()).unwrap();
        assert_eq!(parsed, t);
        assert!(constant_time_eq(
            &parsed.secret_sha256(),
            &t.secret_sha256()
        ));
    }

    #[test]
    fn two_tokens_for_the_same_device_differ() {
        assert_ne!(
            DeviceToken::generate("HH-01").unwrap(),
            DeviceToken::generate("HH-01").unwrap()
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for t in [
            "",
            "HH-01",
            "HH-01.",
            ".abcd",
            "HH-01.xyz",
            &format!("HH-01.{}", "g".repeat(64)),
        ] {
            assert_eq!(DeviceToken::parse(t), Err(AuthError::MalformedToken), "{t}");
        }
    }

    #[test]
    fn sha256_matches_the_standard_test_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
