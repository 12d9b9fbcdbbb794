//! The streaming frame decoder: feed it whatever the link delivered, get frames back.
//!
//! It un-stuffs COBS as bytes arrive, straight into its buffer, so a frame is never held twice. The
//! length limit is checked per byte: a frame that outgrows the negotiated payload size is dropped
//! on the spot and the rest of it, up to the next `0x00`, is skipped without being stored.

use crate::cobs::{Step, Unstuffer};
use crate::crc::crc32c;
use crate::frame::{
    Header, CRC_LEN, DEFAULT_MAX_PAYLOAD, HEADER_LEN, MAX_PAYLOAD_LIMIT, PROTOCOL_VERSION,
};
use core::fmt;

/// A frame the decoder rejected. Carries the offending value; the decoder has already resynchronised
/// at the delimiter that ended the bad frame.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The decoded frame outgrew `limit` payload bytes; the rest of it was skipped unread.
    TooLong { limit: usize },
    /// The frame ended inside a COBS block; `at` is the frame's encoded length (the offset of its
    /// delimiter).
    BadCobs { at: usize },
    /// Fewer decoded bytes than a header and a CRC.
    TooShort { len: usize },
    /// `expected` is the CRC computed over the received header and payload; `found` is the one the
    /// frame carried.
    BadCrc { expected: u32, found: u32 },
    /// A frame with a sound CRC but a protocol version this decoder does not speak.
    UnsupportedVersion(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong { limit } => {
                write!(f, "frame longer than the {limit}-byte payload limit")
            }
            FrameError::BadCobs { at } => {
                write!(f, "frame ended inside a COBS block at byte {at}")
            }
            FrameError::TooShort { len } => write!(
                f,
                "frame of {len} bytes is shorter than a header and CRC ({})",
                HEADER_LEN + CRC_LEN
            ),
            FrameError::BadCrc { expected, found } => write!(
                f,
                "frame CRC mismatch: computed {expected:#010x}, frame carries {found:#010x}"
            ),
            FrameError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "frame of protocol version {v}, expected {PROTOCOL_VERSION}"
                )
            }
        }
    }
}

impl core::error::Error for FrameError {}

/// A frame that passed every check. Borrows the decoder's buffer until the next [`Decoder::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'d> {
    pub header: Header,
    pub payload: &'d [u8],
}

/// The outcome of one [`Decoder::feed`] call.
#[derive(Debug, PartialEq, Eq)]
pub enum Feed<'d, 'i> {
    /// All input was taken and no frame finished yet.
    Consumed,
    /// A valid frame. Call `feed(remaining)` next: more frames may follow in the same input.
    Frame {
        frame: FrameRef<'d>,
        remaining: &'i [u8],
    },
    /// A rejected frame. Call `feed(remaining)` next.
    Error {
        error: FrameError,
        remaining: &'i [u8],
    },
}

/// A streaming frame decoder over a buffer `B`: a caller's `&mut [u8]` or array (no heap), or a
/// `Vec<u8>` from [`Decoder::new`].
///
/// The buffer bounds the largest frame: `HEADER_LEN + max_payload + CRC_LEN` bytes.
#[derive(Debug, Clone)]
pub struct Decoder<B> {
    buf: B,
    /// Decoded bytes of the frame in progress.
    len: usize,
    /// Encoded bytes of the frame in progress (delimiter excluded), for error offsets.
    encoded: usize,
    cobs: Unstuffer,
    /// The frame in progress outgrew the limit: skip to the next delimiter.
    skipping: bool,
    max_payload: usize,
}

#[cfg(feature = "alloc")]
impl Decoder<alloc::vec::Vec<u8>> {
    /// A decoder with its own buffer, accepting payloads up to `max_payload` (capped at
    /// [`MAX_PAYLOAD_LIMIT`]). The buffer is sized for [`MAX_PAYLOAD_LIMIT`], so
    /// [`Decoder::set_max_payload`] may raise the limit later.
    pub fn new(max_payload: usize) -> Self {
        let mut d = Self::with_buffer(alloc::vec![0u8; HEADER_LEN + MAX_PAYLOAD_LIMIT + CRC_LEN]);
        d.set_max_payload(max_payload);
        d
    }
}

#[cfg(feature = "alloc")]
impl Default for Decoder<alloc::vec::Vec<u8>> {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Decoder<B> {
    /// A decoder over `buf`. The payload limit starts at [`DEFAULT_MAX_PAYLOAD`], or less if `buf`
    /// cannot hold such a frame.
    pub fn with_buffer(buf: B) -> Self {
        let mut d = Self {
            buf,
            len: 0,
            encoded: 0,
            cobs: Unstuffer::new(),
            skipping: false,
            max_payload: 0,
        };
        d.set_max_payload(DEFAULT_MAX_PAYLOAD);
        d
    }

    /// The largest payload the buffer can hold (capped at [`MAX_PAYLOAD_LIMIT`]).
    pub fn capacity(&self) -> usize {
        self.buf
            .as_ref()
            .len()
            .saturating_sub(HEADER_LEN + CRC_LEN)
            .min(MAX_PAYLOAD_LIMIT)
    }

    /// Sets the payload limit (after negotiation), capped by the buffer and [`MAX_PAYLOAD_LIMIT`].
    /// Applies from the next byte on, including to a frame in progress.
    pub fn set_max_payload(&mut self, n: usize) {
        self.max_payload = n.min(self.capacity());
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// True when bytes of an unfinished frame have been received. With the character-gap rule the
    /// owner of the clock calls [`Decoder::discard_partial`] when this stays true for 500 ms
    /// without a new byte.
    pub fn has_partial(&self) -> bool {
        self.encoded > 0
    }

    /// Drops the frame in progress, as if a delimiter had arrived and the frame had been ignored.
    pub fn discard_partial(&mut self) {
        self.reset();
    }

    fn reset(&mut self) {
        self.len = 0;
        self.encoded = 0;
        self.cobs = Unstuffer::new();
        self.skipping = false;
    }

    /// Takes bytes until a frame ends (valid or not) or the input runs out.
    pub fn feed<'d, 'i>(&'d mut self, input: &'i [u8]) -> Feed<'d, 'i> {
        let limit = HEADER_LEN + self.max_payload + CRC_LEN;
        for (i, &b) in input.iter().enumerate() {
            if b == 0 {
                let remaining = input.get(i + 1..).unwrap_or(&[]);
                return match self.end_frame() {
                    None => continue,
                    Some(Ok((header, payload_len))) => {
                        let payload = self
                            .buf
                            .as_ref()
                            .get(HEADER_LEN..HEADER_LEN + payload_len)
                            .unwrap_or(&[]);
                        Feed::Frame {
                            frame: FrameRef { header, payload },
                            remaining,
                        }
                    }
                    Some(Err(error)) => Feed::Error { error, remaining },
                };
            }
            self.encoded = self.encoded.saturating_add(1);
            if self.skipping {
                continue;
            }
            let byte = match self.cobs.step(b) {
                Step::Nothing => continue,
                Step::Byte(x) => x,
                Step::Zero => 0,
            };
            if self.len >= limit {
                self.skipping = true;
                continue;
            }
            match self.buf.as_mut().get_mut(self.len) {
                Some(slot) => *slot = byte,
                None => {
                    self.skipping = true;
                    continue;
                }
            }
            self.len += 1;
        }
        Feed::Consumed
    }

    /// Checks the frame that a delimiter just ended; `None` for an empty frame (skipped silently).
    /// Resets the state either way; the decoded bytes stay in the buffer for the caller to borrow.
    fn end_frame(&mut self) -> Option<Result<(Header, usize), FrameError>> {
        let encoded = self.encoded;
        let len = self.len;
        let skipping = self.skipping;
        let boundary = self.cobs.at_boundary();
        self.reset();
        if encoded == 0 {
            return None;
        }
        if skipping {
            return Some(Err(FrameError::TooLong {
                limit: self.max_payload,
            }));
        }
        if !boundary {
            return Some(Err(FrameError::BadCobs { at: encoded }));
        }
        if len < HEADER_LEN + CRC_LEN {
            return Some(Err(FrameError::TooShort { len }));
        }
        let frame = self.buf.as_ref().get(..len)?;
        let (body, crc) = frame.split_at(len - CRC_LEN);
        let found = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let expected = crc32c(body);
        if expected != found {
            return Some(Err(FrameError::BadCrc { expected, found }));
        }
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&body[..HEADER_LEN]);
        let header = Header::from_bytes(&head);
        if header.version != PROTOCOL_VERSION {
            return Some(Err(FrameError::UnsupportedVersion(header.version)));
        }
        Some(Ok((header, len - HEADER_LEN - CRC_LEN)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_frame, max_encoded_len, FrameType};

    fn encode(h: &Header, payload: &[u8], out: &mut [u8]) -> usize {
        encode_frame(h, payload, out).expect("fits")
    }

    /// Feeds everything, collecting (header, payload length, first payload byte) or the error.
    fn feed_all<B: AsRef<[u8]> + AsMut<[u8]>>(
        d: &mut Decoder<B>,
        mut input: &[u8],
        out: &mut [Option<Result<(Header, usize), FrameError>>; 8],
    ) -> usize {
        let mut n = 0;
        loop {
            match d.feed(input) {
                Feed::Consumed => return n,
                Feed::Frame { frame, remaining } => {
                    out[n] = Some(Ok((frame.header, frame.payload.len())));
                    input = remaining;
                }
                Feed::Error { error, remaining } => {
                    out[n] = Some(Err(error));
                    input = remaining;
                }
            }
            n += 1;
        }
    }

    #[test]
    fn a_frame_decodes_to_its_header_and_payload() {
        let h = Header::new(FrameType::Data, 9).with_flags(3);
        let mut wire = [0u8; 64];
        let n = encode(&h, b"hello\0world", &mut wire);
        let mut d = Decoder::with_buffer([0u8; 64]);
        match d.feed(&wire[..n]) {
            Feed::Frame { frame, remaining } => {
                assert_eq!(frame.header, h);
                assert_eq!(frame.payload, b"hello\0world");
                assert!(remaining.is_empty());
            }
            other => panic!("expected a frame, got {other:?}"),
        }
        assert!(!d.has_partial());
    }

    #[test]
    fn a_frame_fed_one_byte_at_a_time_decodes_the_same() {
        let h = Header::new(FrameType::Ack, 77);
        let mut wire = [0u8; 64];
        let n = encode(&h, &[0, 0, 1, 0], &mut wire);
        let mut d = Decoder::with_buffer([0u8; 64]);
        for (i, b) in wire[..n].iter().enumerate() {
            match d.feed(core::slice::from_ref(b)) {
                Feed::Consumed => assert!(i < n - 1 && d.has_partial()),
                Feed::Frame { frame, .. } => {
                    assert_eq!(i, n - 1);
                    assert_eq!(frame.payload, &[0, 0, 1, 0]);
                }
                Feed::Error { error, .. } => panic!("{error}"),
            }
        }
    }

    #[test]
    fn empty_frames_between_frames_are_skipped_silently() {
        let mut wire = [0u8; 128];
        wire[0] = 0;
        wire[1] = 0;
        let n = 2 + encode(&Header::new(FrameType::Ping, 1), &[], &mut wire[2..]);
        wire[n] = 0;
        let m = n + 1 + encode(&Header::new(FrameType::Pong, 1), &[], &mut wire[n + 1..]);
        let mut d = Decoder::with_buffer([0u8; 32]);
        let mut got = [None; 8];
        assert_eq!(feed_all(&mut d, &wire[..m], &mut got), 2);
        assert_eq!(got[0], Some(Ok((Header::new(FrameType::Ping, 1), 0))));
        assert_eq!(got[1], Some(Ok((Header::new(FrameType::Pong, 1), 0))));
    }

    #[test]
    fn a_frame_over_the_limit_is_rejected_and_the_next_frame_still_decodes() {
        let mut wire = [0u8; 256];
        let a = encode(&Header::new(FrameType::Data, 1), &[7u8; 100], &mut wire);
        let b = a + encode(&Header::new(FrameType::Data, 2), &[7u8; 20], &mut wire[a..]);
        let mut d = Decoder::with_buffer([0u8; 64]);
        assert_eq!(d.max_payload(), 64 - 12);
        d.set_max_payload(20);
        let mut got = [None; 8];
        assert_eq!(feed_all(&mut d, &wire[..b], &mut got), 2);
        assert_eq!(got[0], Some(Err(FrameError::TooLong { limit: 20 })));
        assert_eq!(got[1], Some(Ok((Header::new(FrameType::Data, 2), 20))));
    }

    #[test]
    fn a_frame_of_exactly_the_limit_is_accepted() {
        let mut wire = [0u8; max_encoded_len(52)];
        let n = encode(&Header::new(FrameType::Data, 1), &[0u8; 52], &mut wire);
        let mut d = Decoder::with_buffer([0u8; 64]);
        let mut got = [None; 8];
        assert_eq!(feed_all(&mut d, &wire[..n], &mut got), 1);
        assert_eq!(got[0], Some(Ok((Header::new(FrameType::Data, 1), 52))));
    }

    #[test]
    fn a_frame_cut_inside_a_cobs_block_is_bad_cobs() {
        let mut d = Decoder::with_buffer([0u8; 64]);
        let mut got = [None; 8];
        assert_eq!(feed_all(&mut d, &[0x05, 1, 2, 0], &mut got), 1);
        assert_eq!(got[0], Some(Err(FrameError::BadCobs { at: 3 })));
    }

    #[test]
    fn a_frame_shorter_than_header_and_crc_is_too_short() {
        let mut d = Decoder::with_buffer([0u8; 64]);
        let mut got = [None; 8];
        assert_eq!(feed_all(&mut d, &[0x04, 1, 2, 3, 0], &mut got), 1);
        assert_eq!(got[0], Some(Err(FrameError::TooShort { len: 3 })));
    }

    #[test]
    fn a_damaged_payload_fails_the_crc_with_both_values_reported() {
        let mut wire = [0u8; 64];
        let n = encode(&Header::new(FrameType::Data, 1), b"abcdef", &mut wire);
        wire[10] ^= 0x01;
        let mut d = Decoder::with_buffer([0u8; 64]);
        let mut got = [None; 8];
        feed_all(&mut d, &wire[..n], &mut got);
        assert!(
            matches!(got[0], Some(Err(FrameError::BadCrc { expected, found })) if expected != found)
        );
    }

    #[test]
    fn a_sound_frame_of_another_version_is_unsupported_not_corrupt() {
        let h = Header {
            version: 2,
            ..Header::new(FrameType::Data, 1)
        };
        let mut wire = [0u8; 64];
        let n = encode(&h, b"x", &mut wire);
        let mut d = Decoder::with_buffer([0u8; 64]);
        let mut got = [None; 8];
        feed_all(&mut d, &wire[..n], &mut got);
        assert_eq!(got[0], Some(Err(FrameError::UnsupportedVersion(2))));
    }

    #[test]
    fn discarding_a_partial_frame_resynchronises_on_the_next_frame() {
        let mut wire = [0u8; 64];
        let n = encode(&Header::new(FrameType::Ping, 5), &[], &mut wire);
        let mut d = Decoder::with_buffer([0u8; 64]);
        assert_eq!(d.feed(&[0x33, 0x44, 0x55]), Feed::Consumed);
        assert!(d.has_partial());
        d.discard_partial();
        assert!(!d.has_partial());
        let mut got = [None; 8];
        assert_eq!(feed_all(&mut d, &wire[..n], &mut got), 1);
        assert_eq!(got[0], Some(Ok((Header::new(FrameType::Ping, 5), 0))));
    }

    #[test]
    fn unknown_frame_types_are_delivered_for_the_transfer_layer_to_judge() {
        let mut wire = [0u8; 64];
        let n = encode(&Header::new(FrameType::Unknown(99), 5), &[], &mut wire);
        let mut d = Decoder::with_buffer([0u8; 64]);
        let mut got = [None; 8];
        feed_all(&mut d, &wire[..n], &mut got);
        assert_eq!(
            got[0],
            Some(Ok((Header::new(FrameType::Unknown(99), 5), 0)))
        );
    }

    #[test]
    fn the_payload_limit_is_capped_by_the_buffer() {
        let mut d = Decoder::with_buffer([0u8; 40]);
        d.set_max_payload(4096);
        assert_eq!(d.max_payload(), 28);
        let tiny: Decoder<[u8; 5]> = Decoder::with_buffer([0u8; 5]);
        assert_eq!(tiny.max_payload(), 0);
    }

    #[test]
    fn a_decoder_works_over_a_borrowed_slice() {
        let mut storage = [0u8; 40];
        let mut d = Decoder::with_buffer(&mut storage[..]);
        let mut wire = [0u8; 32];
        let n = encode(&Header::new(FrameType::Pong, 1), b"ok", &mut wire);
        let mut got = [None; 8];
        assert_eq!(feed_all(&mut d, &wire[..n], &mut got), 1);
        assert_eq!(got[0], Some(Ok((Header::new(FrameType::Pong, 1), 2))));
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn a_heap_decoder_can_raise_its_limit_up_to_the_protocol_maximum() {
        let mut d = Decoder::new(DEFAULT_MAX_PAYLOAD);
        assert_eq!(d.max_payload(), DEFAULT_MAX_PAYLOAD);
        d.set_max_payload(usize::MAX);
        assert_eq!(d.max_payload(), MAX_PAYLOAD_LIMIT);
    }
}
