//! Payload layouts of the transfer layer's frames. Decoding never panics: a short or unknown payload
//! is `None`, and the caller reports it as a [`super::PeerError`].
//!
//! Every multi-byte field is little-endian, like the frame header. A newer peer may append fields:
//! decoders read the prefix they know and ignore the rest.

/// `Data` frame flag: the payload is a [`Control`] record, not a chunk of the current transfer.
pub(crate) const FLAG_CONTROL: u8 = 0x01;
/// `Reset` frame flag: the `echo` field holds the peer session the sender has seen.
pub(crate) const RESET_FLAG_ECHO: u8 = 0x01;
/// `Reset` frame flag: the sender has completed the handshake (it is a reply, not a request).
pub(crate) const RESET_FLAG_UP: u8 = 0x02;

/// Sequence numbers after the cumulative one that an ACK can report selectively. It bounds the
/// window: every frame in flight must be reportable.
pub(crate) const SACK_BITS: u32 = 64;

/// An acknowledgement. `next` (carried in the header's `seq`) is the first sequence number not
/// yet received; bit `i` of `sack` set means `next + 1 + i` was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ack {
    pub next: u32,
    pub sack: u64,
    /// Frames the receiver can hold from `next` on.
    pub window: u16,
}

pub(crate) const ACK_LEN: usize = 10;

impl Ack {
    pub fn encode(&self) -> [u8; ACK_LEN] {
        let mut b = [0u8; ACK_LEN];
        b[..8].copy_from_slice(&self.sack.to_le_bytes());
        b[8..].copy_from_slice(&self.window.to_le_bytes());
        b
    }

    pub fn decode(next: u32, payload: &[u8]) -> Option<Self> {
        let sack = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
        let window = u16::from_le_bytes(payload.get(8..10)?.try_into().ok()?);
        Some(Self { next, sack, window })
    }
}

/// The link handshake, carried by `Reset` frames. The session (a per-instance nonce) is in the
/// header's `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResetInfo {
    pub session: u32,
    pub echo: Option<u32>,
    pub up: bool,
    /// Largest frame payload the sender accepts.
    pub max_payload: u16,
    /// Frames the sender can buffer out of order.
    pub window: u16,
}

pub(crate) const RESET_LEN: usize = 8;

impl ResetInfo {
    pub fn flags(&self) -> u8 {
        let mut f = 0;
        if self.echo.is_some() {
            f |= RESET_FLAG_ECHO;
        }
        if self.up {
            f |= RESET_FLAG_UP;
        }
        f
    }

    pub fn encode(&self) -> [u8; RESET_LEN] {
        let mut b = [0u8; RESET_LEN];
        b[..4].copy_from_slice(&self.echo.unwrap_or(0).to_le_bytes());
        b[4..6].copy_from_slice(&self.max_payload.to_le_bytes());
        b[6..8].copy_from_slice(&self.window.to_le_bytes());
        b
    }

    pub fn decode(session: u32, flags: u8, payload: &[u8]) -> Option<Self> {
        let echo = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?);
        let max_payload = u16::from_le_bytes(payload.get(4..6)?.try_into().ok()?);
        let window = u16::from_le_bytes(payload.get(6..8)?.try_into().ok()?);
        Some(Self {
            session,
            echo: (flags & RESET_FLAG_ECHO != 0).then_some(echo),
            up: flags & RESET_FLAG_UP != 0,
            max_payload,
            window,
        })
    }
}

/// Why a receiver refused a transfer.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The offered length exceeds the receiver's `max_transfer_len`.
    TooLarge,
    /// A code this implementation does not know.
    Unknown(u8),
}

impl RejectReason {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            RejectReason::TooLarge => 1,
            RejectReason::Unknown(c) => c,
        }
    }

    pub(crate) fn from_u8(c: u8) -> Self {
        match c {
            1 => RejectReason::TooLarge,
            c => RejectReason::Unknown(c),
        }
    }
}

/// A control record: one per `Data` frame with [`FLAG_CONTROL`], in the same sequence space as
/// chunks, so it is delivered reliably and in order with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// The sender has `total` bytes for transfer `id`; the receiver answers Accept or Reject.
    Offer {
        id: u32,
        total: u32,
    },
    /// The receiver already holds `offset` bytes of `id` (0 for a new transfer, `total` when it
    /// was delivered before): the sender sends from there.
    Accept {
        id: u32,
        offset: u32,
    },
    Reject {
        id: u32,
        reason: RejectReason,
    },
    /// The chunks that follow belong to `id`, starting at `offset`.
    Begin {
        id: u32,
        offset: u32,
    },
}

pub(crate) const CONTROL_MAX_LEN: usize = 9;

impl Control {
    /// Encodes into `buf`, returning the length used.
    pub fn encode(&self, buf: &mut [u8; CONTROL_MAX_LEN]) -> usize {
        let (kind, id, arg): (u8, u32, Option<u32>) = match *self {
            Control::Offer { id, total } => (1, id, Some(total)),
            Control::Accept { id, offset } => (2, id, Some(offset)),
            Control::Reject { id, .. } => (3, id, None),
            Control::Begin { id, offset } => (4, id, Some(offset)),
        };
        buf[0] = kind;
        buf[1..5].copy_from_slice(&id.to_le_bytes());
        match (self, arg) {
            (Control::Reject { reason, .. }, _) => {
                buf[5] = reason.to_u8();
                6
            }
            (_, Some(a)) => {
                buf[5..9].copy_from_slice(&a.to_le_bytes());
                9
            }
            (_, None) => 5,
        }
    }

    pub fn decode(payload: &[u8]) -> Option<Self> {
        let kind = *payload.first()?;
        let id = u32::from_le_bytes(payload.get(1..5)?.try_into().ok()?);
        let arg =
            || -> Option<u32> { Some(u32::from_le_bytes(payload.get(5..9)?.try_into().ok()?)) };
        match kind {
            1 => Some(Control::Offer { id, total: arg()? }),
            2 => Some(Control::Accept { id, offset: arg()? }),
            3 => Some(Control::Reject {
                id,
                reason: RejectReason::from_u8(*payload.get(5)?),
            }),
            4 => Some(Control::Begin { id, offset: arg()? }),
            _ => None,
        }
    }
}

/// `a` is before `b` in sequence-number order (serial arithmetic, RFC 1982 style).
pub(crate) fn seq_lt(a: u32, b: u32) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < 0x8000_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_records_round_trip() {
        for c in [
            Control::Offer {
                id: 7,
                total: 200_000,
            },
            Control::Accept {
                id: u32::MAX,
                offset: 3,
            },
            Control::Reject {
                id: 9,
                reason: RejectReason::TooLarge,
            },
            Control::Begin {
                id: 1,
                offset: 81_920,
            },
        ] {
            let mut b = [0u8; CONTROL_MAX_LEN];
            let n = c.encode(&mut b);
            assert_eq!(Control::decode(&b[..n]), Some(c));
            assert_eq!(Control::decode(&b[..n - 1]), None, "truncated {c:?}");
        }
        assert_eq!(Control::decode(&[0x7f, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(Control::decode(&[]), None);
    }

    #[test]
    fn acks_and_resets_round_trip_and_short_payloads_are_refused() {
        let a = Ack {
            next: 5,
            sack: 0x8000_0000_0000_0001,
            window: 32,
        };
        assert_eq!(Ack::decode(5, &a.encode()), Some(a));
        assert_eq!(Ack::decode(5, &a.encode()[..9]), None);
        let r = ResetInfo {
            session: 1,
            echo: Some(0),
            up: true,
            max_payload: 4096,
            window: 64,
        };
        assert_eq!(ResetInfo::decode(1, r.flags(), &r.encode()), Some(r));
        let r = ResetInfo {
            echo: None,
            up: false,
            ..r
        };
        assert_eq!(ResetInfo::decode(1, r.flags(), &r.encode()), Some(r));
        assert_eq!(ResetInfo::decode(1, 0, &[0; 7]), None);
    }

    #[test]
    fn sequence_order_survives_wrapping() {
        assert!(seq_lt(1, 2));
        assert!(!seq_lt(2, 2));
        assert!(seq_lt(u32::MAX, 0));
        assert!(!seq_lt(0, u32::MAX));
    }
}
