//! CRC-32C (Castagnoli), the frame check sequence.
//!
//! Parameters (the "CRC-32/ISCSI" entry of the CRC catalogue): width 32, polynomial `0x1EDC6F41`
//! (reflected `0x82F63B78`), init `0xFFFFFFFF`, input and output reflected, final XOR `0xFFFFFFFF`,
//! check value over ASCII `123456789` = `0xE3069283`.
//!
//! Castagnoli rather than the Ethernet polynomial because it keeps a higher Hamming distance over the
//! frame lengths this protocol uses (see `PROTOCOL.md`), at the same cost: one 1 KiB table lookup
//! per byte, which a handheld's microcontroller can hold in flash.

/// The reflected Castagnoli polynomial.
pub const POLY_REFLECTED: u32 = 0x82F6_3B78;

/// CRC-32C of ASCII `123456789`: the catalogue's check value.
pub const CHECK: u32 = 0xE306_9283;

/// Byte-at-a-time lookup table, computed at compile time.
pub static TABLE: [u32; 256] = make_table();

const fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ POLY_REFLECTED
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

/// An incremental CRC-32C, for data that arrives in pieces (header, then payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crc32c {
    state: u32,
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32c {
    pub const fn new() -> Self {
        Self { state: 0xFFFF_FFFF }
    }

    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.state;
        for &b in data {
            c = TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.state = c;
    }

    pub const fn finish(&self) -> u32 {
        self.state ^ 0xFFFF_FFFF
    }
}

/// CRC-32C of `data` in one call.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = Crc32c::new();
    c.update(data);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-at-a-time reference, written straight from the parameters, to check the table.
    fn bitwise(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ POLY_REFLECTED
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn the_check_value_matches_the_catalogue() {
        assert_eq!(crc32c(b"123456789"), CHECK);
    }

    #[test]
    fn the_table_agrees_with_the_bitwise_definition() {
        let data: [u8; 300] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        for len in [0, 1, 2, 8, 31, 255, 300] {
            assert_eq!(crc32c(&data[..len]), bitwise(&data[..len]), "len {len}");
        }
    }

    #[test]
    fn feeding_in_pieces_equals_feeding_at_once() {
        let data = b"the quick brown fox jumps over the lazy dog";
        let mut c = Crc32c::new();
        c.update(&data[..10]);
        c.update(&data[10..]);
        assert_eq!(c.finish(), crc32c(data));
    }

    #[test]
    fn the_empty_input_has_crc_zero() {
        // Init and final XOR cancel: a property firmware authors can use to sanity-check their code.
        assert_eq!(crc32c(&[]), 0);
    }

    #[test]
    fn thirty_two_zero_bytes_match_rfc_3720() {
        // RFC 3720 (iSCSI) appendix B.4 test pattern.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }
}
