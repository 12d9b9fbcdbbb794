//! Who is asking: axum extractors for every role, passwords (argon2id), sessions, CSRF.
//!
//! - Clerks and admins sign in with a password and carry a session cookie (a random id; the store keeps
//!   its SHA-256). Every form they post carries the session's CSRF token ([`check_csrf`]).
//! - Billing users send `Authorization: Bearer <token>` (random; stored as SHA-256).
//! - Handhelds send `Authorization: Bearer DEVICE.SECRET` ([`crate::auth::DeviceToken`]).
//!
//! Random secrets need no slow hash (nothing to brute-force); passwords, chosen by people, do.

use super::error::AppError;
use super::state::AppState;
pub use crate::auth::random_hex;
use crate::auth::{constant_time_eq, sha256_hex, AuthError, DeviceToken};
use crate::domain::UserRole;
#[cfg(any(test, feature = "test-support"))]
use crate::store::NewUserSecret;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use chrono::NaiveDateTime;
use std::net::SocketAddr;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "mg_session";
/// Double-submit cookie protecting the sign-in form itself (there is no session yet to hold a token).
pub const LOGIN_CSRF_COOKIE: &str = "mg_login_csrf";
/// Prefix of billing API tokens, so a leaked one is recognisable in logs and secret scanners.
pub const BILLING_TOKEN_PREFIX: &str = "mgb_";

/// A signed-in clerk or admin (session cookie).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClerkUser {
    pub name: String,
    pub role: UserRole,
    /// The session's CSRF token: put it in every form as `csrf`, check it with [`check_csrf`].
    pub csrf: String,
}

/// A signed-in admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser(pub ClerkUser);

/// A billing user (API token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingUser {
    pub name: String,
}

/// A registered handheld (device token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuth {
    pub device_id: String,
}

/// Any valid credential (documents every role may read, such as the OpenAPI description).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyCredential {
    Clerk(ClerkUser),
    Billing(BillingUser),
    Device(DeviceAuth),
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must be at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password must be at most {MAX_PASSWORD_CHARS} characters")]
    TooLong,
    #[error("hashing the password failed: {0}")]
    Hash(String),
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

pub const MIN_PASSWORD_CHARS: usize = 10;
/// Bounds the work an attacker can ask argon2 to do per attempt.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Hashes a password with argon2id (the crate's defaults: 19 MiB, 2 passes), as a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordError::TooLong);
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| PasswordError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// [`verify_password`] with the argon2 memory (19 MiB for the default parameters) taken from
/// `memory`, which keeps it for the next check: sign-in's check threads each keep one, so checks never
/// allocate (a fresh 19 MiB per check left the allocator holding about 100 MB per thread).
pub fn verify_password_in(hash: &str, password: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use argon2::password_hash::PasswordHash;
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return false;
    }
    let Ok(h) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(h.algorithm) else {
        return false;
    };
    let Ok(version) = h.version.map(argon2::Version::try_from).transpose() else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&h) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    memory.resize(params.block_count(), argon2::Block::new());
    let mut out = vec![0u8; expected.len()];
    let argon = argon2::Argon2::new(algorithm, version.unwrap_or_default(), params);
    argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..])
        .is_ok()
        && out.len() == expected.len()
        && out
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A fresh billing API token (`mgb_` + 256 random bits) and the SHA-256 the store keeps.
pub fn new_billing_token() -> Result<(String, String), AuthError> {
    let token = format!("{BILLING_TOKEN_PREFIX}{}", random_hex(32)?);
    let hash = sha256_hex(token.as_bytes());
    Ok((token, hash))
}

/// Refuses a clerk form whose `csrf` field is not the session's token.
pub fn check_csrf(user: &ClerkUser, form_token: &str) -> Result<(), AppError> {
    if !user.csrf.is_empty() && constant_time_eq(&user.csrf, form_token) {
        Ok(())
    } else {
        Err(AppError::Csrf)
    }
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// `Set-Cookie` value for a cookie only the server reads (HttpOnly, SameSite=Strict; Secure when the
/// gateway is reached over TLS, `[serve] secure_cookies`). `max_age` 0 deletes it.
pub fn cookie_header(state: &AppState, name: &str, value: &str, max_age_secs: i64) -> String {
    let secure = if state.config.serve.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

/// The client's IP address, as the rate limit counts it ("unknown" when the connection info is absent,
/// as in router tests without a socket).
pub fn client_address(parts_extensions: &axum::http::Extensions) -> String {
    parts_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// What to answer a request without a session: a browser asking for a page goes to the sign-in page,
/// anything else gets 401.
fn not_signed_in(parts: &Parts) -> AppError {
    let wants_html = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html && (parts.method == Method::GET || parts.method == Method::HEAD) {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        AppError::SignIn { next }
    } else {
        AppError::Unauthorized
    }
}

async fn session_user(parts: &Parts, state: &AppState) -> Result<Option<ClerkUser>, AppError> {
    let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = sha256_hex(id.as_bytes());
    let now = state.now_local();
    // On a read-only connection: a clerk's page never waits behind the writer (handhelds' uploads).
    let user = state
        .db
        .read_desk(move |c| crate::store::session_user_in(c, &hash, now))
        .await??;
    Ok(user.map(|u| ClerkUser {
        name: u.name,
        role: u.role,
        csrf: u.csrf,
    }))
}

impl FromRequestParts<AppState> for ClerkUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(u) = parts.extensions.get::<ClerkUser>() {
            return Ok(u.clone());
        }
        let Some(user) = session_user(parts, state).await? else {
            return Err(not_signed_in(parts));
        };
        if !matches!(user.role, UserRole::Clerk | UserRole::Admin) {
            return Err(AppError::Forbidden);
        }
        // Several extractors of one handler (ClerkUser, AdminUser) need not ask the store twice.
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let user = ClerkUser::from_request_parts(parts, state).await?;
        if user.role == UserRole::Admin {
            Ok(AdminUser(user))
        } else {
            Err(AppError::Forbidden)
        }
    }
}

impl FromRequestParts<AppState> for BillingUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(&parts.headers).ok_or(AppError::Unauthorized)?;
        let hash = sha256_hex(token.as_bytes());
        match state.db.call(move |s| s.token_user(&hash)).await?? {
            Some((name, UserRole::Billing)) => Ok(BillingUser { name }),
            Some(_) => Err(AppError::Forbidden),
            None => Err(AppError::Unauthorized),
        }
    }
}

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(&parts.headers).ok_or(AppError::Unauthorized)?;
        let token = DeviceToken::parse(token).map_err(|_| AppError::Unauthorized)?;
        let device_id = token.device_id.clone();
        if state.db.call(move |s| s.verify_device(&token)).await?? {
            Ok(DeviceAuth { device_id })
        } else {
            Err(AppError::Unauthorized)
        }
    }
}

impl FromRequestParts<AppState> for AnyCredential {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(token) = bearer(&parts.headers) {
            return if token.starts_with(BILLING_TOKEN_PREFIX) {
                BillingUser::from_request_parts(parts, state)
                    .await
                    .map(AnyCredential::Billing)
            } else {
                DeviceAuth::from_request_parts(parts, state)
                    .await
                    .map(AnyCredential::Device)
            };
        }
        ClerkUser::from_request_parts(parts, state)
            .await
            .map(AnyCredential::Clerk)
    }
}

/// Starts a session for `name`: returns the cookie value (the random session id) and the CSRF token.
pub(crate) async fn start_session(
    state: &AppState,
    name: &str,
    now: NaiveDateTime,
) -> Result<(String, String), AppError> {
    let id = random_hex(32).map_err(AppError::internal)?;
    let csrf = random_hex(32).map_err(AppError::internal)?;
    let hash = sha256_hex(id.as_bytes());
    let expires = now + chrono::Duration::minutes(i64::from(state.config.serve.session_minutes));
    let (name, token) = (name.to_string(), csrf.clone());
    state
        .db
        .call(move |s| s.create_session(&hash, &name, &token, now, expires))
        .await??;
    Ok((id, csrf))
}

/// Test helper: makes sure user `name` exists with `role` (clerk or admin; it cannot sign in with a
/// password) and starts a session. Returns the `Cookie` header value and the session's CSRF token.
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub async fn sign_in_session_for_tests(
    state: &AppState,
    name: &str,
    role: UserRole,
) -> (String, String) {
    assert!(
        role != UserRole::Billing,
        "billing users have tokens, not sessions"
    );
    let now = state.now_local();
    let owned = name.to_string();
    state
        .db
        .call(move |s| {
            if s.password_hash(&owned)?.is_none() {
                // Not a PHC string, so no password ever verifies against it.
                s.add_user(&owned, role, NewUserSecret::PasswordHash("!test"), now)?;
            }
            Ok::<_, crate::store::StoreError>(())
        })
        .await
        .expect("database writer running")
        .expect("test user created");
    let (id, csrf) = start_session(state, name, now)
        .await
        .expect("session started");
    (format!("{SESSION_COOKIE}={id}"), csrf)
}

/// Test helper: creates billing user `name` and returns its API token (for `Authorization: Bearer`).
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub async fn billing_token_for_tests(state: &AppState, name: &str) -> String {
    let (token, hash) = new_billing_token().expect("random token");
    let (owned, now) = (name.to_string(), state.now_local());
    state
        .db
        .call(move |s| {
            s.add_user(
                &owned,
                UserRole::Billing,
                NewUserSecret::TokenSha256(&hash),
                now,
            )
        })
        .await
        .expect("database writer running")
        .expect("billing user created");
    token
}

/// Test helper: registers handheld `device_id` and returns its token `DEVICE.SECRET`.
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub async fn device_token_for_tests(state: &AppState, device_id: &str) -> String {
    let token = DeviceToken::generate(device_id).expect("random token");
    let (t, now) = (token.clone(), state.now_local());
    state
        .db
        .call(move |s| s.add_device(&t, now))
        .await
        .expect("database writer running")
        .expect("device registered");
    token.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_and_nothing_else_does() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse batterY"));
        assert!(!verify_password("!test", "anything at all"));
        assert_ne!(h, hash_password("correct horse battery").unwrap());
        // The same answers with memory kept between checks.
        let mut memory = Vec::new();
        for (hash, password, expected) in [
            (h.as_str(), "correct horse battery", true),
            (h.as_str(), "correct horse batterY", false),
            ("!test", "anything at all", false),
            (h.as_str(), "correct horse battery", true),
        ] {
            assert_eq!(verify_password_in(hash, password, &mut memory), expected);
            assert_eq!(verify_password(hash, password), expected);
        }
        assert_eq!(memory.len(), 19 * 1024);
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert!(matches!(
            hash_password("short"),
            Err(PasswordError::TooShort)
        ));
        assert!(matches!(
            hash_password(&"x".repeat(MAX_PASSWORD_CHARS + 1)),
            Err(PasswordError::TooLong)
        ));
    }

    #[test]
    fn the_csrf_check_needs_the_sessions_exact_token() {
        let u = ClerkUser {
            name: "ann".into(),
            role: UserRole::Clerk,
            csrf: "abc123".into(),
        };
        assert!(check_csrf(&u, "abc123").is_ok());
        assert!(matches!(check_csrf(&u, ""), Err(AppError::Csrf)));
        assert!(matches!(check_csrf(&u, "abc124"), Err(AppError::Csrf)));
        let empty = ClerkUser {
            csrf: String::new(),
            ..u
        };
        assert!(check_csrf(&empty, "").is_err());
    }

    #[test]
    fn cookies_are_found_among_several_headers_and_pairs() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; mg_session=xyz".parse().unwrap());
        h.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "mg"), None);
    }

    #[test]
    fn a_bearer_token_needs_the_scheme() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "bearer  tok ".parse().unwrap());
        assert_eq!(bearer(&h), Some("tok"));
    }
}
