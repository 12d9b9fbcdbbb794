//! The message primitives (PROTOCOL.md §3.2): varints, zigzag, strings, lists, options, records,
//! front-coded strings; a writer and a bounded reader that reports offsets into the message.

use super::MessageError;
use alloc::string::String;
use alloc::vec::Vec;

/// Appends the primitives.
pub(super) struct Writer<'a> {
    pub(super) out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    pub(super) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(super) fn varint(&mut self, v: u64) {
        write_varint(self.out, v);
    }

    pub(super) fn i64(&mut self, v: i64) {
        self.varint(zigzag(v));
    }

    pub(super) fn bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }

    pub(super) fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    pub(super) fn list<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Self, &T)) {
        self.varint(items.len() as u64);
        for item in items {
            each(self, item);
        }
    }

    pub(super) fn option<T>(&mut self, v: Option<&T>, each: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.out.push(0),
            Some(v) => {
                self.out.push(1);
                each(self, v);
            }
        }
    }

    /// A string as `shared` (bytes in common with the start of `prev`) then the rest as a string.
    pub(super) fn front_coded(&mut self, prev: &str, s: &str) {
        let shared = prev
            .bytes()
            .zip(s.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        self.varint(shared as u64);
        self.varint((s.len() - shared) as u64);
        self.out.extend_from_slice(&s.as_bytes()[shared..]);
    }

    /// Writes the fields, then puts their byte length in front of them.
    pub(super) fn record(&mut self, fields: impl FnOnce(&mut Self)) {
        let start = self.out.len();
        fields(self);
        let len = self.out.len() - start;
        let mut prefix = [0u8; 10];
        let n = varint_into(&mut prefix, len as u64);
        self.out.extend_from_slice(&prefix[..n]);
        self.out[start..].rotate_right(n);
    }
}

/// Appends `v` as an unsigned LEB128 varint (shortest form).
pub fn write_varint(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 10];
    let n = varint_into(&mut buf, v);
    out.extend_from_slice(&buf[..n]);
}

fn varint_into(buf: &mut [u8; 10], mut v: u64) -> usize {
    let mut n = 0;
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            buf[n] = b;
            return n + 1;
        }
        buf[n] = b | 0x80;
        n += 1;
    }
}

/// Maps signed to unsigned so that small magnitudes stay short: 0, −1, 1, −2 → 0, 1, 2, 3.
pub const fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub const fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads the primitives from a slice, reporting offsets relative to the whole message.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    /// Offset of `buf` within the message.
    pub(super) base: usize,
    /// A newer message version: ignore bytes after the known fields.
    pub(super) lenient: bool,
}

impl<'a> Reader<'a> {
    pub(super) fn at(&self) -> usize {
        self.base + self.pos
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(super) fn bytes(
        &mut self,
        field: &'static str,
        n: usize,
    ) -> Result<&'a [u8], MessageError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(MessageError::Truncated {
                field,
                at: self.at(),
            }),
        }
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, MessageError> {
        Ok(self.bytes(field, 1)?[0])
    }

    pub(super) fn varint(&mut self, field: &'static str) -> Result<u64, MessageError> {
        let start = self.at();
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8(field)?;
            let group = u64::from(b & 0x7F);
            // The tenth byte may only carry the 64th bit.
            if i == 9 && group > 1 {
                return Err(MessageError::VarintOverflow { at: start });
            }
            v |= group << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(MessageError::NonCanonicalVarint { at: start });
                }
                return Ok(v);
            }
        }
        Err(MessageError::VarintOverflow { at: start })
    }

    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, MessageError> {
        let v = self.varint(field)?;
        u16::try_from(v).map_err(|_| MessageError::OutOfRange { field, value: v })
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, MessageError> {
        let v = self.varint(field)?;
        u32::try_from(v).map_err(|_| MessageError::OutOfRange { field, value: v })
    }

    pub(super) fn i64(&mut self, field: &'static str) -> Result<i64, MessageError> {
        Ok(unzigzag(self.varint(field)?))
    }

    pub(super) fn bool(&mut self, field: &'static str) -> Result<bool, MessageError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(MessageError::OutOfRange {
                field,
                value: u64::from(other),
            }),
        }
    }

    pub(super) fn str(&mut self, field: &'static str, max: usize) -> Result<String, MessageError> {
        let len = self.varint(field)?;
        if len > max as u64 {
            return Err(MessageError::StringTooLong { field, len, max });
        }
        let at = self.at();
        let raw = self.bytes(field, len as usize)?;
        core::str::from_utf8(raw)
            .map(String::from)
            .map_err(|e| MessageError::BadUtf8 {
                field,
                at: at + e.valid_up_to(),
            })
    }

    /// A front-coded string (see [`Writer::front_coded`]) following `prev`.
    pub(super) fn front_coded(
        &mut self,
        field: &'static str,
        max: usize,
        prev: &str,
    ) -> Result<String, MessageError> {
        let shared = self.varint(field)?;
        if shared > prev.len() as u64 {
            return Err(MessageError::OutOfRange {
                field,
                value: shared,
            });
        }
        let shared = shared as usize;
        let len = self.varint(field)?;
        let total = len.saturating_add(shared as u64);
        if total > max as u64 {
            return Err(MessageError::StringTooLong {
                field,
                len: total,
                max,
            });
        }
        let at = self.at();
        let rest = self.bytes(field, len as usize)?;
        let mut v = Vec::with_capacity(total as usize);
        v.extend_from_slice(&prev.as_bytes()[..shared]);
        v.extend_from_slice(rest);
        String::from_utf8(v).map_err(|e| MessageError::BadUtf8 {
            field,
            at: (at + e.utf8_error().valid_up_to()).saturating_sub(shared),
        })
    }

    /// A list count, bounded by `max` and by the bytes left (every item takes at least one byte),
    /// so that it is safe to reserve.
    pub(super) fn count(&mut self, field: &'static str, max: usize) -> Result<usize, MessageError> {
        let count = self.varint(field)?;
        if count > max as u64 {
            return Err(MessageError::TooManyItems { field, count, max });
        }
        if count > self.remaining() as u64 {
            return Err(MessageError::Truncated {
                field,
                at: self.at(),
            });
        }
        Ok(count as usize)
    }

    pub(super) fn list<T>(
        &mut self,
        field: &'static str,
        max: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, MessageError>,
    ) -> Result<Vec<T>, MessageError> {
        let n = self.count(field, max)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(item(self)?);
        }
        Ok(v)
    }

    pub(super) fn option<T>(
        &mut self,
        field: &'static str,
        value: impl FnOnce(&mut Self) -> Result<T, MessageError>,
    ) -> Result<Option<T>, MessageError> {
        if self.bool(field)? {
            value(self).map(Some)
        } else {
            Ok(None)
        }
    }

    pub(super) fn record<T>(
        &mut self,
        field: &'static str,
        fields: impl FnOnce(&mut Reader<'a>) -> Result<T, MessageError>,
    ) -> Result<T, MessageError> {
        let at = self.at();
        let len = self.varint(field)?;
        if len > self.remaining() as u64 {
            return Err(MessageError::RecordOverrun { at, len });
        }
        let body_at = self.at();
        let body = self.bytes(field, len as usize)?;
        let mut inner = Reader {
            buf: body,
            pos: 0,
            base: body_at,
            lenient: self.lenient,
        };
        let v = fields(&mut inner)?;
        inner.finish()?;
        Ok(v)
    }

    pub(super) fn finish(&self) -> Result<(), MessageError> {
        if self.remaining() > 0 && !self.lenient {
            return Err(MessageError::TrailingBytes { at: self.at() });
        }
        Ok(())
    }
}
