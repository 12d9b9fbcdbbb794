//! The receiving half: reordering of frames received out of order, and the transfers being
//! reassembled (including partial ones imported from an earlier connection).

use super::wire::{seq_lt, Ack, SACK_BITS};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

/// A transfer being received: `data.len()` bytes of `total` held, contiguous from offset 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InTransfer {
    pub total: u32,
    pub data: Vec<u8>,
}

/// What to do with a frame's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Already received (a retransmission whose ACK was lost): acknowledge again, drop.
    Duplicate,
    /// Beyond the window the peer was told: drop.
    OutOfWindow,
    /// Stored; in-order frames may now be processed.
    Stored,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Receiver {
    /// First sequence number not yet received.
    pub next: u32,
    /// `ooo[i]` holds frame `next + i` (flags, payload) when it arrived early. `ooo[0]` is always
    /// empty between calls: an in-order frame is processed at once.
    pub ooo: VecDeque<Option<(u8, Vec<u8>)>>,
    /// The transfer the chunks belong to (set by Begin).
    pub current: Option<u32>,
    pub partials: BTreeMap<u32, InTransfer>,
    /// Transfers delivered to the application (this connection, or imported), with their length:
    /// a repeated Offer is answered "all held" and not delivered twice.
    pub delivered: BTreeMap<u32, u32>,
    pub ack_pending: bool,
}

impl Receiver {
    /// Forgets the sequence space (the peer restarted). Partial transfers stay: they are what the
    /// peer resumes from.
    pub fn restart(&mut self) {
        self.next = 0;
        self.ooo.clear();
        self.current = None;
        self.ack_pending = false;
    }

    /// Places frame `seq`; the caller then drains in-order frames with [`Receiver::pop_in_order`].
    pub fn place(&mut self, seq: u32, flags: u8, payload: &[u8], window: u16) -> Placement {
        self.ack_pending = true;
        if seq_lt(seq, self.next) {
            return Placement::Duplicate;
        }
        let d = seq.wrapping_sub(self.next) as usize;
        if d >= usize::from(window) {
            return Placement::OutOfWindow;
        }
        while self.ooo.len() <= d {
            self.ooo.push_back(None);
        }
        match self.ooo.get_mut(d) {
            Some(slot @ None) => {
                *slot = Some((flags, payload.to_vec()));
                Placement::Stored
            }
            _ => Placement::Duplicate,
        }
    }

    /// The next frame in sequence, if it has arrived.
    pub fn pop_in_order(&mut self) -> Option<(u8, Vec<u8>)> {
        if !matches!(self.ooo.front(), Some(Some(_))) {
            return None;
        }
        let frame = self.ooo.pop_front().flatten();
        self.next = self.next.wrapping_add(1);
        frame
    }

    pub fn ack(&self, window: u16) -> Ack {
        let mut sack = 0u64;
        for (i, slot) in self.ooo.iter().enumerate().skip(1).take(SACK_BITS as usize) {
            if slot.is_some() {
                sack |= 1u64 << (i - 1);
            }
        }
        Ack {
            next: self.next,
            sack,
            window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_frames_wait_and_are_reported_in_the_sack_bitmap() {
        let mut r = Receiver::default();
        assert_eq!(r.place(2, 0, b"c", 8), Placement::Stored);
        assert_eq!(r.place(4, 0, b"e", 8), Placement::Stored);
        assert_eq!(r.pop_in_order(), None);
        let ack = r.ack(8);
        assert_eq!((ack.next, ack.sack), (0, 0b1010));
        assert_eq!(r.place(0, 0, b"a", 8), Placement::Stored);
        assert_eq!(r.pop_in_order(), Some((0, b"a".to_vec())));
        assert_eq!(r.pop_in_order(), None);
        assert_eq!(r.place(1, 0, b"b", 8), Placement::Stored);
        assert_eq!(r.pop_in_order(), Some((0, b"b".to_vec())));
        assert_eq!(r.pop_in_order(), Some((0, b"c".to_vec())));
        assert_eq!(r.pop_in_order(), None);
        assert_eq!(r.ack(8).next, 3);
        assert_eq!(r.ack(8).sack, 0b1);
    }

    #[test]
    fn old_repeated_and_out_of_window_frames_are_not_stored() {
        let mut r = Receiver::default();
        assert_eq!(r.place(0, 0, b"a", 4), Placement::Stored);
        assert!(r.pop_in_order().is_some());
        assert_eq!(r.place(0, 0, b"a", 4), Placement::Duplicate);
        assert_eq!(r.place(2, 0, b"c", 4), Placement::Stored);
        assert_eq!(r.place(2, 0, b"c", 4), Placement::Duplicate);
        assert_eq!(r.place(5, 0, b"f", 4), Placement::OutOfWindow);
        assert_eq!(r.place(u32::MAX, 0, b"z", 4), Placement::Duplicate);
        assert!(r.ack_pending);
    }
}
