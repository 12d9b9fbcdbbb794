//! Deflate for route transfers: zlib format (RFC 1950 around RFC 1951), so firmware can use zlib's
//! or miniz's one-call `uncompress()`, and the Adler-32 trailer checks the reassembled transfer end
//! to end, beyond the per-frame CRCs.
//!
//! Inflation is always bounded: a few hundred bytes of hostile deflate can describe gigabytes.

use alloc::vec::Vec;
use core::fmt;
use miniz_oxide::inflate::TINFLStatus;

/// Compression level 9: route data is compressed once at the dock and sent over a slow serial
/// link, so the extra CPU is well spent.
const LEVEL: u8 = 9;

/// Why a compressed stream did not inflate.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The stream inflates to more than `limit` bytes.
    TooLarge { limit: usize },
    /// The stream ends before its end marker.
    Truncated,
    /// The Adler-32 trailer does not match the inflated data.
    ChecksumMismatch,
    /// Not a valid zlib/deflate stream.
    Corrupt,
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InflateError::TooLarge { limit } => {
                write!(f, "compressed data inflates past the {limit}-byte limit")
            }
            InflateError::Truncated => f.write_str("compressed data is truncated"),
            InflateError::ChecksumMismatch => {
                f.write_str("compressed data fails its Adler-32 check")
            }
            InflateError::Corrupt => f.write_str("compressed data is not a valid zlib stream"),
        }
    }
}

impl core::error::Error for InflateError {}

/// zlib-compresses `data`.
pub fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, LEVEL)
}

/// Inflates a zlib stream, refusing to produce more than `max_len` bytes.
pub fn inflate(data: &[u8], max_len: usize) -> Result<Vec<u8>, InflateError> {
    miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(data, max_len).map_err(|e| {
        match e.status {
            TINFLStatus::HasMoreOutput => InflateError::TooLarge { limit: max_len },
            TINFLStatus::FailedCannotMakeProgress | TINFLStatus::NeedsMoreInput => {
                InflateError::Truncated
            }
            TINFLStatus::Adler32Mismatch => InflateError::ChecksumMismatch,
            _ => InflateError::Corrupt,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflated_data_inflates_back() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 97) as u8).collect();
        let z = deflate(&data);
        assert!(z.len() < data.len() / 10);
        assert_eq!(inflate(&z, data.len()), Ok(data));
    }

    #[test]
    fn a_stream_that_inflates_past_the_limit_is_refused() {
        // 1 MiB of zeros deflates to about a kilobyte: the classic bomb shape.
        let bomb = deflate(&alloc::vec![0u8; 1 << 20]);
        assert!(bomb.len() < 2048);
        assert_eq!(
            inflate(&bomb, 64 * 1024),
            Err(InflateError::TooLarge { limit: 64 * 1024 })
        );
    }

    #[test]
    fn a_cut_stream_is_truncated() {
        let z = deflate(b"route data route data route data");
        assert_eq!(
            inflate(&z[..z.len() - 6], 1024),
            Err(InflateError::Truncated)
        );
    }

    #[test]
    fn a_damaged_checksum_is_caught() {
        let mut z = deflate(b"route data route data route data");
        let last = z.len() - 1;
        z[last] ^= 0xFF;
        assert_eq!(inflate(&z, 1024), Err(InflateError::ChecksumMismatch));
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        assert!(inflate(&[0x78, 0x9C, 0xFF, 0xFF, 0xFF, 0xFF], 1024).is_err());
        assert!(inflate(&[], 1024).is_err());
    }
}
