//! The sending half: transfers queued by the application, the window of frames in flight, loss
//! detection, retransmission timing and the adaptive chunk size.

use super::wire::{seq_lt, Ack, Control};
use super::LinkConfig;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Fixed bytes a data frame costs beside its payload: header, CRC, at least one COBS code byte and
/// the delimiter. The frame-size choice trades this against the chance of losing the frame.
pub(crate) const FRAME_OVERHEAD: usize = crate::HEADER_LEN + crate::CRC_LEN + 2;

/// How many wire bits of history the bit-error estimate remembers (about 43 s at 115200 baud): long
/// enough to see tens of errors at 1e-5, short enough to follow a cable that gets worse.
const LOSS_MEMORY_BITS: f64 = 4.0e6;

/// Estimates the link's bit error rate from the frames this side sent and lost, and from it the
/// payload length that maximises goodput.
///
/// It starts from a prior worth a tenth of a loss, placed so that the first choice is the
/// configured initial payload: frames then grow with the square root of the bits that got through
/// (a clean 115200-baud link reaches 4 KB frames after about 120 KB), instead of jumping to sizes
/// a noisy link would lose most of, each such loss costing a whole large frame again.
#[derive(Debug, Clone, Default)]
pub(crate) struct LossEstimate {
    bits: f64,
    losses: f64,
}

/// Weight of the prior, in losses.
const PRIOR_LOSSES: f64 = 0.1;

impl LossEstimate {
    /// An estimate whose best payload is `initial` until evidence arrives.
    pub fn with_initial_payload(initial: usize) -> Self {
        let (l, o) = (initial as f64, FRAME_OVERHEAD as f64);
        // Inverts `L² + oL = o/(8·ber)` for `ber = PRIOR_LOSSES / bits`.
        Self {
            bits: 8.0 * PRIOR_LOSSES * (l * l + o * l) / o,
            losses: PRIOR_LOSSES,
        }
    }

    pub fn on_sent(&mut self, wire_len: usize) {
        let b = (wire_len * 8) as f64;
        let keep = 1.0 - (b / LOSS_MEMORY_BITS).min(1.0);
        self.bits = self.bits * keep + b;
        self.losses *= keep;
    }

    pub fn on_lost(&mut self) {
        self.losses += 1.0;
    }

    /// A frame declared lost by its timer was acknowledged after all: it was not lost.
    pub fn on_spurious(&mut self) {
        self.losses = (self.losses - 1.0).max(0.0);
    }

    /// The payload length `L` maximising `L/(L+o) · (1-ber)^(8(L+o))`; for a small error rate the
    /// optimum solves `L² + oL = o/(8·ber)`. `None` when nothing bounds it (no losses, no prior).
    pub fn best_payload(&self) -> Option<usize> {
        if self.losses <= 0.0 || self.bits <= 0.0 {
            return None;
        }
        let ber = self.losses / self.bits;
        let o = FRAME_OVERHEAD as f64;
        let disc = o * o + o / (2.0 * ber);
        // Integer square root: `f64::sqrt` needs std.
        let root = (disc.min(1e15) as u64).isqrt() as f64;
        Some(((root - o) / 2.0).max(1.0) as usize)
    }
}

/// Smoothed round-trip time and variance (RFC 6298), in milliseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rtt {
    srtt: Option<u64>,
    rttvar: u64,
}

impl Rtt {
    pub fn sample(&mut self, r: u64) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                self.rttvar = (3 * self.rttvar + s.abs_diff(r)) / 4;
                self.srtt = Some((7 * s + r) / 8);
            }
        }
    }

    /// The retransmission timeout before back-off, within `[min_rto_ms, ack_timeout_ms]`.
    pub fn rto(&self, cfg: &LinkConfig) -> u64 {
        let base = match self.srtt {
            None => cfg.initial_rto_ms,
            Some(s) => s + (4 * self.rttvar).max(10),
        };
        base.clamp(cfg.min_rto_ms.min(cfg.ack_timeout_ms), cfg.ack_timeout_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    Control(Control),
    Chunk { id: u32, offset: u32, len: u32 },
}

/// A frame given a sequence number and not yet cumulatively acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub item: Item,
    /// Selectively acknowledged: never sent again.
    pub acked: bool,
    /// Declared lost: to be sent again, ahead of new frames.
    pub lost: bool,
    /// When its last transmission should have left the port (see `Endpoint::departure`).
    pub sent_at: u64,
    /// Order of its last transmission. The serial link is FIFO, so a frame sent before one that
    /// was acknowledged, and not acknowledged itself, is lost: no reordering timer is needed.
    pub tx_order: u64,
    pub transmissions: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutState {
    /// The Offer has no sequence number yet (new, or the peer restarted).
    NeedOffer,
    /// Offer sent; waiting for Accept or Reject.
    Offered,
    /// Accepted: chunks are cut from `next`; `begun` once the Begin record is queued.
    Streaming { next: u32, begun: bool },
}

#[derive(Debug, Clone)]
pub(crate) struct OutTransfer {
    pub id: u32,
    pub data: Vec<u8>,
    pub state: OutState,
    /// Bytes the peer holds for certain (cumulatively acknowledged).
    pub acked: u32,
    /// Bytes handed to the link for the first time this session (chunks cut), for statistics.
    pub total: u32,
}

/// What an acknowledgement changed, for the endpoint to turn into events.
#[derive(Debug, Default)]
pub(crate) struct AckOutcome {
    pub newly_acked: bool,
    /// Transfers whose acknowledged offset advanced: (id, acked, total).
    pub progress: Vec<(u32, u32, u32)>,
    /// Transfers the peer now holds entirely.
    pub delivered: Vec<u32>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Sender {
    /// Sequence number of `inflight[0]`.
    pub base: u32,
    pub inflight: VecDeque<Slot>,
    /// Control records waiting for a sequence number (Accept/Reject replies first-come).
    pub controls: VecDeque<Control>,
    /// In the order the application sent them; removed once delivered or rejected.
    pub transfers: VecDeque<OutTransfer>,
    /// The transfer whose chunks are being cut, so that chunks are not interleaved needlessly.
    pub current: Option<u32>,
    pub peer_window: u16,
    pub rtt: Rtt,
    pub backoff: u32,
    pub tx_counter: u64,
    pub loss: LossEstimate,
    /// Upper bound on the next chunk: doubles after a chunk goes through first time, halves on loss.
    pub ceiling: usize,
    /// How long the peer's acknowledgement may wait behind the data frame it is sending (the
    /// transmit time of the last data frame received from it), when the line rate is known.
    pub ack_delay_ms: u64,
}

impl Sender {
    pub fn next_seq(&self) -> u32 {
        self.base.wrapping_add(self.inflight.len() as u32)
    }

    /// Forgets the sequence space (the peer restarted): transfers start over with an Offer, and
    /// the peer's answer says where they resume.
    pub fn restart(&mut self) {
        self.base = 0;
        self.inflight.clear();
        self.controls.clear();
        self.current = None;
        self.backoff = 0;
        for t in &mut self.transfers {
            t.state = OutState::NeedOffer;
        }
    }

    pub fn transfer(&self, id: u32) -> Option<&OutTransfer> {
        self.transfers.iter().find(|t| t.id == id)
    }

    pub fn transfer_mut(&mut self, id: u32) -> Option<&mut OutTransfer> {
        self.transfers.iter_mut().find(|t| t.id == id)
    }

    /// The retransmission timeout with back-off, never above the ACK timeout.
    pub fn rto(&self, cfg: &LinkConfig) -> u64 {
        let base = self.rtt.rto(cfg);
        base.saturating_mul(1u64 << self.backoff.min(16))
            .saturating_add(self.ack_delay_ms)
            .min(cfg.ack_timeout_ms)
    }

    /// When the oldest unacknowledged, not-yet-lost frame times out.
    pub fn rto_deadline(&self, cfg: &LinkConfig) -> Option<u64> {
        let oldest = self
            .inflight
            .iter()
            .filter(|s| !s.acked && !s.lost)
            .map(|s| s.sent_at)
            .min()?;
        Some(oldest.saturating_add(self.rto(cfg)))
    }

    /// Declares lost every frame whose timeout has passed; true if any was.
    pub fn on_rto(&mut self, now: u64, cfg: &LinkConfig) -> bool {
        let rto = self.rto(cfg);
        let mut fired = false;
        for s in self.inflight.iter_mut() {
            if !s.acked && !s.lost && s.sent_at.saturating_add(rto) <= now {
                s.lost = true;
                fired = true;
                self.loss.on_lost();
            }
        }
        if fired {
            // Back off only while doubling can still lengthen the wait.
            if self
                .rtt
                .rto(cfg)
                .saturating_mul(1u64 << self.backoff.min(16))
                < cfg.ack_timeout_ms
            {
                self.backoff += 1;
            }
            self.ceiling = (self.ceiling / 2).max(cfg.min_payload);
        }
        fired
    }

    /// Applies an acknowledgement. Ignores one that acknowledges frames never sent (stale).
    pub fn on_ack(&mut self, ack: &Ack, now: u64, cfg: &LinkConfig) -> AckOutcome {
        let mut out = AckOutcome::default();
        let next_seq = self.next_seq();
        if seq_lt(next_seq, ack.next) || seq_lt(ack.next, self.base) {
            return out;
        }
        self.peer_window = ack.window.max(1);
        let cum = ack.next.wrapping_sub(self.base) as usize;
        let mut latest_order = None::<u64>;
        for (i, s) in self.inflight.iter_mut().enumerate() {
            let sacked = if i < cum {
                true
            } else {
                let bit = i - cum;
                (1..=64).contains(&bit) && ack.sack & (1u64 << (bit - 1)) != 0
            };
            if sacked && !s.acked {
                if s.lost && s.transmissions == 1 {
                    self.loss.on_spurious();
                }
                s.acked = true;
                out.newly_acked = true;
                latest_order = Some(latest_order.map_or(s.tx_order, |o| o.max(s.tx_order)));
                if s.transmissions == 1 {
                    self.rtt.sample(now.saturating_sub(s.sent_at));
                    if let Item::Chunk { len, .. } = s.item {
                        if len as usize * 2 > self.ceiling {
                            self.ceiling = (self.ceiling * 2).min(cfg.max_payload);
                        }
                    }
                }
                s.lost = false;
            }
        }
        if let Some(order) = latest_order {
            let mut any_lost = false;
            for s in self.inflight.iter_mut() {
                if !s.acked && !s.lost && s.tx_order < order {
                    s.lost = true;
                    any_lost = true;
                    self.loss.on_lost();
                }
            }
            // One halving per loss event: one bit flip can take two frames (a hit delimiter).
            if any_lost {
                self.ceiling = (self.ceiling / 2).max(cfg.min_payload);
            }
        }
        if out.newly_acked {
            self.backoff = 0;
        }
        while self.inflight.front().is_some_and(|s| s.acked) {
            let Some(slot) = self.inflight.pop_front() else {
                break;
            };
            self.base = self.base.wrapping_add(1);
            if let Item::Chunk { id, offset, len } = slot.item {
                if let Some(t) = self.transfer_mut(id) {
                    t.acked = t.acked.max(offset.saturating_add(len));
                    let (acked, total) = (t.acked, t.total);
                    out.progress.push((id, acked, total));
                    if acked >= total {
                        out.delivered.push(id);
                    }
                }
            }
        }
        for id in &out.delivered {
            self.transfers.retain(|t| t.id != *id);
            if self.current == Some(*id) {
                self.current = None;
            }
        }
        out
    }

    /// The payload length for the next chunk.
    pub fn chunk_len(&self, max_payload: usize, cfg: &LinkConfig) -> usize {
        let mut len = self.ceiling.min(max_payload);
        if let Some(best) = self.loss.best_payload() {
            len = len.min(best);
        }
        len.max(cfg.min_payload.min(max_payload)).max(1)
    }

    /// The next new item to put in the window, if any: queued control records first, then the
    /// Offers of new transfers, then chunks of the current (or next accepted) transfer.
    pub fn next_item(&mut self, max_payload: usize, cfg: &LinkConfig) -> Option<Item> {
        if let Some(c) = self.controls.pop_front() {
            return Some(Item::Control(c));
        }
        if let Some(t) = self
            .transfers
            .iter_mut()
            .find(|t| t.state == OutState::NeedOffer)
        {
            t.state = OutState::Offered;
            return Some(Item::Control(Control::Offer {
                id: t.id,
                total: t.total,
            }));
        }
        let streaming =
            |t: &OutTransfer| matches!(t.state, OutState::Streaming { next, .. } if next < t.total);
        let pick = match self.current {
            Some(id) if self.transfer(id).is_some_and(streaming) => Some(id),
            _ => self.transfers.iter().find(|t| streaming(t)).map(|t| t.id),
        };
        self.current = pick;
        let id = pick?;
        let len = self.chunk_len(max_payload, cfg);
        let t = self.transfer_mut(id)?;
        let OutState::Streaming { next, begun } = t.state else {
            return None;
        };
        if !begun {
            t.state = OutState::Streaming { next, begun: true };
            return Some(Item::Control(Control::Begin { id, offset: next }));
        }
        let len = (len as u32).min(t.total - next);
        t.state = OutState::Streaming {
            next: next + len,
            begun,
        };
        Some(Item::Chunk {
            id,
            offset: next,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn est(bits: f64, losses: f64) -> LossEstimate {
        LossEstimate { bits, losses }
    }

    #[test]
    fn the_best_payload_follows_the_bit_error_rate() {
        // (−14 + √(14² + 14/(2·ber))) / 2
        let at_1e5 = est(1e6, 10.0).best_payload().unwrap();
        assert!((405..=415).contains(&at_1e5), "{at_1e5}");
        let at_1e4 = est(1e6, 100.0).best_payload().unwrap();
        assert!((120..=130).contains(&at_1e4), "{at_1e4}");
        assert_eq!(est(1e6, 0.0).best_payload(), None);
        let prior = LossEstimate::with_initial_payload(1024)
            .best_payload()
            .unwrap();
        assert!((1020..=1028).contains(&prior), "{prior}");
    }

    #[test]
    fn clean_bits_raise_the_payload_and_losses_lower_it() {
        let mut e = LossEstimate::with_initial_payload(1024);
        for _ in 0..200 {
            e.on_sent(1040);
        }
        let grown = e.best_payload().unwrap();
        assert!(grown > 2048, "{grown}");
        e.on_lost();
        e.on_lost();
        assert!(e.best_payload().unwrap() < grown / 2);
        e.on_spurious();
        e.on_spurious();
        assert_eq!(e.best_payload(), Some(grown));
    }

    #[test]
    fn the_retransmission_timeout_backs_off_but_never_past_the_ack_timeout() {
        let cfg = LinkConfig::default();
        let mut s = Sender::default();
        assert_eq!(s.rto(&cfg), cfg.initial_rto_ms);
        for _ in 0..8 {
            s.rtt.sample(300);
        }
        let mut last = 0;
        for backoff in 0..40 {
            s.backoff = backoff;
            let rto = s.rto(&cfg);
            assert!(rto >= last && rto <= cfg.ack_timeout_ms, "{backoff}: {rto}");
            last = rto;
        }
        assert_eq!(last, cfg.ack_timeout_ms);
        s.rtt.sample(1_000_000);
        s.backoff = 0;
        assert_eq!(s.rto(&cfg), cfg.ack_timeout_ms);
    }

    fn three_in_flight() -> Sender {
        let mut s = Sender {
            base: 10,
            ..Sender::default()
        };
        for i in 0..3u32 {
            s.inflight.push_back(Slot {
                item: Item::Chunk {
                    id: 1,
                    offset: i * 100,
                    len: 100,
                },
                acked: false,
                lost: false,
                sent_at: 0,
                tx_order: u64::from(i) + 1,
                transmissions: 1,
            });
        }
        s.transfers.push_back(OutTransfer {
            id: 1,
            data: vec![0; 300],
            state: OutState::Streaming {
                next: 300,
                begun: true,
            },
            acked: 0,
            total: 300,
        });
        s
    }

    #[test]
    fn a_frame_sent_before_an_acknowledged_one_is_lost_and_later_ones_are_not() {
        let cfg = LinkConfig::default();
        let mut s = three_in_flight();
        // Frame 11 arrived, 10 did not; 12 may still be on its way.
        let out = s.on_ack(
            &Ack {
                next: 10,
                sack: 0b1,
                window: 32,
            },
            5,
            &cfg,
        );
        assert!(out.newly_acked && out.delivered.is_empty());
        let lost: Vec<bool> = s.inflight.iter().map(|x| x.lost).collect();
        assert_eq!(lost, vec![true, false, false]);
        // Everything arrives: the transfer is delivered and the window empties.
        let out = s.on_ack(
            &Ack {
                next: 13,
                sack: 0,
                window: 32,
            },
            6,
            &cfg,
        );
        assert_eq!(out.delivered, vec![1]);
        assert!(s.inflight.is_empty() && s.transfers.is_empty());
        assert_eq!(s.base, 13);
    }

    #[test]
    fn an_acknowledgement_of_frames_never_sent_is_ignored() {
        let cfg = LinkConfig::default();
        let mut s = three_in_flight();
        let out = s.on_ack(
            &Ack {
                next: 14,
                sack: 0,
                window: 32,
            },
            5,
            &cfg,
        );
        assert!(!out.newly_acked);
        let out = s.on_ack(
            &Ack {
                next: 9,
                sack: u64::MAX,
                window: 32,
            },
            5,
            &cfg,
        );
        assert!(!out.newly_acked);
        assert_eq!(s.inflight.len(), 3);
    }
}
