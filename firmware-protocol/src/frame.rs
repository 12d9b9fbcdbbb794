//! The frame: an 8-byte header, a payload and a CRC-32C, COBS-encoded and ended by `0x00`.
//!
//! ```text
//! wire  = COBS(header ‖ payload ‖ crc32c(header ‖ payload) as u32 LE) 0x00
//! header = version u8 | frame_type u8 | flags u8 | reserved u8 (0) | seq u32 LE
//! ```
//! The envelope (COBS, delimiter, CRC-32C, version in the first byte) is the same in every protocol
//! version, so a receiver can always tell a damaged frame from a frame of a version it does not speak.

use crate::cobs;
use crate::crc::Crc32c;
use core::fmt;

/// The protocol version this crate speaks, carried in every frame header.
pub const PROTOCOL_VERSION: u8 = 1;
/// Header bytes before the payload.
pub const HEADER_LEN: usize = 8;
/// CRC bytes after the payload.
pub const CRC_LEN: usize = 4;
/// Largest payload both sides accept before negotiating (Hello/Welcome).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024;
/// Largest payload that may ever be negotiated.
pub const MAX_PAYLOAD_LIMIT: usize = 4096;

/// Bytes on the wire for a frame with `payload_len` payload bytes, at most: COBS overhead plus the
/// trailing delimiter. Size transmit buffers with it.
pub const fn max_encoded_len(payload_len: usize) -> usize {
    cobs::max_encoded_len(HEADER_LEN + payload_len + CRC_LEN) + 1
}

/// What a frame is for. Codes 1..=5 are defined here; 6..=15 are reserved for the transfer layer;
/// anything else arrives as [`FrameType::Unknown`] and is the transfer layer's to ignore.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// A piece of a transfer.
    Data,
    /// Acknowledges data (cumulative and selective; layout owned by the transfer layer).
    Ack,
    /// Keepalive probe.
    Ping,
    /// Answer to [`FrameType::Ping`].
    Pong,
    /// Abandon the session state and start over.
    Reset,
    /// A code this implementation does not know (a newer peer, or a reserved code).
    Unknown(u8),
}

impl FrameType {
    pub const fn from_u8(code: u8) -> Self {
        match code {
            1 => FrameType::Data,
            2 => FrameType::Ack,
            3 => FrameType::Ping,
            4 => FrameType::Pong,
            5 => FrameType::Reset,
            other => FrameType::Unknown(other),
        }
    }

    pub const fn to_u8(self) -> u8 {
        match self {
            FrameType::Data => 1,
            FrameType::Ack => 2,
            FrameType::Ping => 3,
            FrameType::Pong => 4,
            FrameType::Reset => 5,
            FrameType::Unknown(code) => code,
        }
    }
}

impl From<u8> for FrameType {
    fn from(code: u8) -> Self {
        FrameType::from_u8(code)
    }
}

impl From<FrameType> for u8 {
    fn from(t: FrameType) -> Self {
        t.to_u8()
    }
}

/// A frame header. The reserved byte is not represented: it is sent as 0 and ignored on receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    pub version: u8,
    pub frame_type: FrameType,
    /// Per-frame-type flags, defined by the transfer layer.
    pub flags: u8,
    pub seq: u32,
}

impl Header {
    /// A header of the current [`PROTOCOL_VERSION`] with no flags.
    pub const fn new(frame_type: FrameType, seq: u32) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            frame_type,
            flags: 0,
            seq,
        }
    }

    pub const fn with_flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let s = self.seq.to_le_bytes();
        [
            self.version,
            self.frame_type.to_u8(),
            self.flags,
            0,
            s[0],
            s[1],
            s[2],
            s[3],
        ]
    }

    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Self {
        Self {
            version: b[0],
            frame_type: FrameType::from_u8(b[1]),
            flags: b[2],
            seq: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// Why a frame could not be encoded.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The payload is longer than [`MAX_PAYLOAD_LIMIT`].
    PayloadTooLong { len: usize, limit: usize },
    /// `out` is shorter than [`max_encoded_len`] of the payload.
    BufferTooSmall { needed: usize, available: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::PayloadTooLong { len, limit } => {
                write!(
                    f,
                    "frame payload of {len} bytes exceeds the limit of {limit}"
                )
            }
            EncodeError::BufferTooSmall { needed, available } => write!(
                f,
                "frame needs an output buffer of {needed} bytes, got {available}"
            ),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Encodes one frame into `out` (COBS bytes and the trailing `0x00`) and returns its length.
///
/// `out` must hold [`max_encoded_len`]`(payload.len())` bytes, whatever the payload's content, so a
/// caller sizing its buffer from the limit never sees [`EncodeError::BufferTooSmall`] at run time.
pub fn encode_frame(header: &Header, payload: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
    if payload.len() > MAX_PAYLOAD_LIMIT {
        return Err(EncodeError::PayloadTooLong {
            len: payload.len(),
            limit: MAX_PAYLOAD_LIMIT,
        });
    }
    let needed = max_encoded_len(payload.len());
    if out.len() < needed {
        return Err(EncodeError::BufferTooSmall {
            needed,
            available: out.len(),
        });
    }
    let head = header.to_bytes();
    let mut crc = Crc32c::new();
    crc.update(&head);
    crc.update(payload);
    let (body, _) = out.split_at_mut(needed - 1);
    let mut enc = cobs::Encoder::new(body);
    enc.extend(&head);
    enc.extend(payload);
    enc.extend(&crc.finish().to_le_bytes());
    // Cannot fail: `body` holds the worst case, checked above.
    let n = enc.finish().map_err(|_| EncodeError::BufferTooSmall {
        needed,
        available: out.len(),
    })?;
    out[n] = 0;
    Ok(n + 1)
}

/// Appends one encoded frame (COBS bytes and the trailing `0x00`) to `out`.
#[cfg(feature = "alloc")]
pub fn encode_frame_vec(
    header: &Header,
    payload: &[u8],
    out: &mut alloc::vec::Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.resize(start + max_encoded_len(payload.len()), 0);
    match encode_frame(header, payload, &mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crc::crc32c;

    #[test]
    fn frame_type_codes_round_trip_and_unknown_codes_are_kept() {
        for code in 0..=255u8 {
            assert_eq!(FrameType::from_u8(code).to_u8(), code);
        }
        assert_eq!(FrameType::from_u8(1), FrameType::Data);
        assert_eq!(FrameType::from_u8(5), FrameType::Reset);
        assert_eq!(FrameType::from_u8(200), FrameType::Unknown(200));
    }

    #[test]
    fn the_header_is_little_endian_with_a_zero_reserved_byte() {
        let h = Header::new(FrameType::Ack, 0x0403_0201).with_flags(0x80);
        assert_eq!(h.to_bytes(), [1, 2, 0x80, 0, 1, 2, 3, 4]);
        assert_eq!(Header::from_bytes(&h.to_bytes()), h);
    }

    #[test]
    fn an_encoded_frame_is_cobs_of_header_payload_and_crc_then_a_delimiter() {
        let h = Header::new(FrameType::Ping, 7);
        let mut out = [0u8; 64];
        let n = encode_frame(&h, &[], &mut out).expect("fits");
        assert_eq!(out[n - 1], 0);
        assert!(!out[..n - 1].contains(&0));
        let mut raw = [0u8; 16];
        let m = crate::cobs::decode(&out[..n - 1], &mut raw).expect("valid cobs");
        assert_eq!(m, HEADER_LEN + CRC_LEN);
        assert_eq!(&raw[..8], &h.to_bytes());
        assert_eq!(raw[8..12], crc32c(&raw[..8]).to_le_bytes());
    }

    #[test]
    fn a_payload_over_the_protocol_limit_is_refused() {
        let payload = [1u8; MAX_PAYLOAD_LIMIT + 1];
        let mut out = [0u8; max_encoded_len(MAX_PAYLOAD_LIMIT + 1)];
        assert_eq!(
            encode_frame(&Header::new(FrameType::Data, 0), &payload, &mut out),
            Err(EncodeError::PayloadTooLong {
                len: MAX_PAYLOAD_LIMIT + 1,
                limit: MAX_PAYLOAD_LIMIT
            })
        );
    }

    #[test]
    fn a_buffer_smaller_than_the_worst_case_is_refused_before_writing() {
        let mut out = [0xAAu8; 20];
        assert_eq!(
            encode_frame(&Header::new(FrameType::Data, 0), &[1; 10], &mut out),
            Err(EncodeError::BufferTooSmall {
                needed: max_encoded_len(10),
                available: 20
            })
        );
        assert!(out.iter().all(|&b| b == 0xAA));
    }

    #[test]
    fn the_worst_case_length_holds_for_zero_free_payloads_of_every_size() {
        let payload = [0x5Au8; MAX_PAYLOAD_LIMIT];
        let mut out = [0u8; max_encoded_len(MAX_PAYLOAD_LIMIT)];
        for len in (0..=MAX_PAYLOAD_LIMIT).step_by(61).chain([242, 496, 4096]) {
            let n = encode_frame(&Header::new(FrameType::Data, 1), &payload[..len], &mut out)
                .expect("fits");
            assert!(n <= max_encoded_len(len));
        }
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn encode_frame_vec_appends_the_same_bytes() {
        let h = Header::new(FrameType::Data, 42);
        let mut out = [0u8; max_encoded_len(3)];
        let n = encode_frame(&h, b"abc", &mut out).expect("fits");
        let mut v = alloc::vec![9u8];
        encode_frame_vec(&h, b"abc", &mut v).expect("fits");
        assert_eq!(v[0], 9);
        assert_eq!(&v[1..], &out[..n]);
    }
}
