//! Consistent Overhead Byte Stuffing (Cheshire and Baker, 1999).
//!
//! COBS removes every `0x00` from a byte string at a cost of at most one byte per 254, so that
//! `0x00` can mark the end of a frame: a receiver that lost sync (line noise, a handheld docked
//! mid-frame) is back in step at the next `0x00`, whatever it saw before.
//!
//! The encoded string is a sequence of blocks. Each block starts with a code byte `c` (1..=255)
//! followed by `c - 1` data bytes. A block with `c < 255` stands for its data followed by one `0x00`;
//! a block with `c = 255` stands for its 254 data bytes alone. The zero implied by the very last block
//! is not part of the data.
//!
//! [`encode`] never emits a trailing `0x01` block after a full 255 block; [`Unstuffer`] accepts it
//! (some published encoders emit it) and it decodes to the same data.

/// Largest COBS encoding of `n` bytes (without the frame delimiter).
pub const fn max_encoded_len(n: usize) -> usize {
    n + n / 254 + 1
}

/// The output buffer was too small for the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferTooSmall;

/// A streaming COBS encoder writing into a caller's slice: feed the pieces of a frame (header,
/// payload, CRC) without first copying them together.
#[derive(Debug)]
pub struct Encoder<'o> {
    out: &'o mut [u8],
    /// Where the current block's code byte goes (reserved, written when the block closes).
    code_at: usize,
    /// Next free position.
    pos: usize,
    /// Code of the current block so far: 1 + data bytes in it.
    code: u8,
    /// The last thing that happened was closing a full (255) block: if the data ends here, the
    /// reserved slot for a next code byte is not needed.
    after_full_block: bool,
    overflow: bool,
}

impl<'o> Encoder<'o> {
    pub fn new(out: &'o mut [u8]) -> Self {
        Self {
            out,
            code_at: 0,
            pos: 1,
            code: 1,
            after_full_block: false,
            overflow: false,
        }
    }

    fn put(&mut self, at: usize, b: u8) {
        match self.out.get_mut(at) {
            Some(slot) => *slot = b,
            None => self.overflow = true,
        }
    }

    pub fn push(&mut self, b: u8) {
        self.after_full_block = false;
        if b == 0 {
            self.close_block();
            return;
        }
        self.put(self.pos, b);
        self.pos += 1;
        self.code += 1;
        if self.code == 0xFF {
            self.close_block();
            self.after_full_block = true;
        }
    }

    pub fn extend(&mut self, data: &[u8]) {
        for &b in data {
            self.push(b);
        }
    }

    fn close_block(&mut self) {
        self.put(self.code_at, self.code);
        self.code_at = self.pos;
        self.pos += 1;
        self.code = 1;
    }

    /// Writes the final code byte and returns the encoded length (no delimiter).
    pub fn finish(mut self) -> Result<usize, BufferTooSmall> {
        let len = if self.after_full_block {
            self.code_at
        } else {
            self.put(self.code_at, self.code);
            self.pos
        };
        if self.overflow || len > self.out.len() {
            Err(BufferTooSmall)
        } else {
            Ok(len)
        }
    }
}

/// COBS-encodes `data` into `out`, returning the encoded length (no delimiter).
pub fn encode(data: &[u8], out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let mut e = Encoder::new(out);
    e.extend(data);
    e.finish()
}

/// Why an encoded string is not valid COBS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CobsError {
    /// A `0x00` inside the encoded string, at this offset (a delimiter cannot be data).
    ZeroByte { at: usize },
    /// The string ended inside a block that promised more data; `at` is the string's length.
    Truncated { at: usize },
    /// The decoded data does not fit the output buffer.
    BufferTooSmall,
}

/// What the streaming unstuffer made of one encoded byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A code byte that emits nothing (yet).
    Nothing,
    /// One decoded byte.
    Byte(u8),
    /// A code byte that first completes the previous block's implied `0x00`.
    Zero,
}

/// The byte-at-a-time COBS decoding state, shared by [`decode`] and the frame decoder.
///
/// It never sees the delimiter: the caller splits frames at `0x00` and asks [`Unstuffer::at_boundary`]
/// whether the frame ended where a block ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unstuffer {
    /// Data bytes left in the current block; 0 means the next byte is a code byte.
    left: u8,
    /// The current block implies a `0x00` if another block follows it.
    zero_pending: bool,
}

impl Unstuffer {
    pub const fn new() -> Self {
        Self {
            left: 0,
            zero_pending: false,
        }
    }

    /// Takes one non-zero encoded byte.
    #[inline]
    pub fn step(&mut self, b: u8) -> Step {
        if self.left > 0 {
            self.left -= 1;
            return Step::Byte(b);
        }
        let zero = self.zero_pending;
        self.left = b.wrapping_sub(1);
        self.zero_pending = b != 0xFF;
        if zero {
            Step::Zero
        } else {
            Step::Nothing
        }
    }

    /// True when the encoded string may end here (no block is waiting for data bytes).
    pub const fn at_boundary(&self) -> bool {
        self.left == 0
    }
}

/// COBS-decodes `data` (no delimiter) into `out`, returning the decoded length.
pub fn decode(data: &[u8], out: &mut [u8]) -> Result<usize, CobsError> {
    let mut u = Unstuffer::new();
    let mut n = 0;
    for (at, &b) in data.iter().enumerate() {
        if b == 0 {
            return Err(CobsError::ZeroByte { at });
        }
        let byte = match u.step(b) {
            Step::Nothing => continue,
            Step::Byte(x) => x,
            Step::Zero => 0,
        };
        *out.get_mut(n).ok_or(CobsError::BufferTooSmall)? = byte;
        n += 1;
    }
    if u.at_boundary() {
        Ok(n)
    } else {
        Err(CobsError::Truncated { at: data.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(data: &[u8]) -> ([u8; 1100], usize) {
        let mut out = [0u8; 1100];
        let n = encode(data, &mut out).expect("fits");
        (out, n)
    }

    #[test]
    fn the_textbook_examples_encode_as_published() {
        // Examples from the COBS literature (also on the Wikipedia page).
        let cases: &[(&[u8], &[u8])] = &[
            (&[], &[0x01]),
            (&[0x00], &[0x01, 0x01]),
            (&[0x00, 0x00], &[0x01, 0x01, 0x01]),
            (&[0x00, 0x11, 0x00], &[0x01, 0x02, 0x11, 0x01]),
            (&[0x11, 0x22, 0x00, 0x33], &[0x03, 0x11, 0x22, 0x02, 0x33]),
            (&[0x11, 0x22, 0x33, 0x44], &[0x05, 0x11, 0x22, 0x33, 0x44]),
            (&[0x11, 0x00, 0x00, 0x00], &[0x02, 0x11, 0x01, 0x01, 0x01]),
        ];
        for (data, want) in cases {
            let (out, n) = enc(data);
            assert_eq!(&out[..n], *want, "encoding {data:02x?}");
            let mut back = [0u8; 16];
            let m = decode(want, &mut back).expect("valid");
            assert_eq!(&back[..m], *data);
        }
    }

    #[test]
    fn a_run_of_254_non_zero_bytes_takes_one_full_block_and_nothing_more() {
        let data: [u8; 254] = core::array::from_fn(|i| (i + 1) as u8);
        let (out, n) = enc(&data);
        assert_eq!(n, 255);
        assert_eq!(out[0], 0xFF);
        assert_eq!(&out[1..255], &data[..]);
    }

    #[test]
    fn a_trailing_empty_block_after_a_full_block_is_accepted() {
        let data: [u8; 254] = core::array::from_fn(|i| (i + 1) as u8);
        let (mut out, n) = enc(&data);
        out[n] = 0x01;
        let mut back = [0u8; 300];
        let m = decode(&out[..n + 1], &mut back).expect("valid");
        assert_eq!(&back[..m], &data[..]);
    }

    #[test]
    fn long_runs_round_trip_at_every_length_around_the_block_size() {
        for len in [253, 254, 255, 256, 507, 508, 509, 1000] {
            for zero_at in [None, Some(0), Some(253), Some(254), Some(len - 1)] {
                let mut data = [0u8; 1000];
                for (i, d) in data.iter_mut().enumerate().take(len) {
                    *d = (i % 255 + 1) as u8;
                }
                if let Some(z) = zero_at {
                    data[z] = 0;
                }
                let (out, n) = enc(&data[..len]);
                assert!(n <= max_encoded_len(len), "len {len}");
                assert!(!out[..n].contains(&0));
                let mut back = [0u8; 1000];
                let m = decode(&out[..n], &mut back).expect("valid");
                assert_eq!(&back[..m], &data[..len], "len {len} zero_at {zero_at:?}");
            }
        }
    }

    #[test]
    fn an_encoding_cut_inside_a_block_is_truncated() {
        assert_eq!(
            decode(&[0x05, 0x11, 0x22], &mut [0u8; 8]),
            Err(CobsError::Truncated { at: 3 })
        );
    }

    #[test]
    fn a_zero_inside_an_encoding_is_rejected() {
        assert_eq!(
            decode(&[0x03, 0x11, 0x00], &mut [0u8; 8]),
            Err(CobsError::ZeroByte { at: 2 })
        );
    }

    #[test]
    fn a_too_small_output_buffer_is_reported_not_overrun() {
        assert_eq!(encode(&[1, 2, 3], &mut [0u8; 3]), Err(BufferTooSmall));
        assert_eq!(encode(&[], &mut []), Err(BufferTooSmall));
        assert_eq!(
            decode(&[0x04, 1, 2, 3], &mut [0u8; 2]),
            Err(CobsError::BufferTooSmall)
        );
    }
}
