//! An in-process serial link simulator in virtual time, for tests and benchmarks of anything that
//! speaks the protocol (the [`Endpoint`] itself, or a gateway session wrapping one).
//!
//! The link is full duplex: each direction sends one byte at a time at `rate` bytes per second
//! (115200 8N1 = 11,520), delivers it `latency_ms` later, may flip bits independently at `ber`
//! (seeded, so every run is the same), and can be cut at a given time or after a given number of
//! bytes: from then on both directions drop everything, as when the handheld leaves the cradle.
//! Nothing sleeps; [`Sim`] jumps from one event to the next, so a 20-second transfer takes
//! milliseconds of real time.

use crate::transfer::Endpoint;
use std::collections::VecDeque;
use std::vec::Vec;

const NS_PER_S: u64 = 1_000_000_000;
const NS_PER_MS: u64 = 1_000_000;

/// One end of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// When the cable is pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// At this virtual time (milliseconds since the simulation started).
    AtMs(u64),
    /// Once `side` has put this many bytes on the wire.
    AfterBytes { side: Side, bytes: u64 },
}

/// The shape of the link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkParams {
    /// Bytes per second, each direction.
    pub rate: u32,
    /// One-way delay added to every byte.
    pub latency_ms: u64,
    /// Probability that any one bit is inverted.
    pub ber: f64,
    /// Seed of the bit-error generator.
    pub seed: u64,
    /// Bytes handed to the receiver at once at most, as a UART FIFO or USB packet would.
    pub delivery_chunk: usize,
    pub cut: Option<Cut>,
}

impl Default for LinkParams {
    /// 115200 baud 8N1, no latency, no errors, never cut.
    fn default() -> Self {
        Self {
            rate: 11_520,
            latency_ms: 0,
            ber: 0.0,
            seed: 1,
            delivery_chunk: 64,
            cut: None,
        }
    }
}

/// Counters of what the link did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Bytes put on the wire, per side (index 0 = A).
    pub written: [u64; 2],
    /// Bytes handed to the receiving side, per sending side.
    pub delivered: [u64; 2],
    pub bit_flips: u64,
    /// Bytes lost to the cut, in flight or written after it.
    pub dropped: u64,
}

#[derive(Debug, Clone)]
struct Segment {
    /// When its first bit went on the wire.
    start_ns: u64,
    bytes: Vec<u8>,
    delivered: usize,
}

#[derive(Debug, Clone, Default)]
struct Wire {
    segments: VecDeque<Segment>,
    busy_until_ns: u64,
}

/// SplitMix64: small, seedable, good enough to place bit errors.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// The full-duplex wire between [`Side::A`] and [`Side::B`].
#[derive(Debug, Clone)]
pub struct SimLink {
    params: LinkParams,
    wires: [Wire; 2],
    rng: Rng,
    /// Bits until the next flip, drawn from the geometric distribution.
    bits_to_flip: u64,
    cut_at_ns: Option<u64>,
    cut: bool,
    stats: LinkStats,
}

impl SimLink {
    pub fn new(params: LinkParams) -> Self {
        let mut link = Self {
            rng: Rng(params.seed),
            bits_to_flip: u64::MAX,
            cut_at_ns: match params.cut {
                Some(Cut::AtMs(ms)) => Some(ms.saturating_mul(NS_PER_MS)),
                _ => None,
            },
            params: LinkParams {
                rate: params.rate.max(1),
                delivery_chunk: params.delivery_chunk.max(1),
                ..params
            },
            wires: [Wire::default(), Wire::default()],
            cut: false,
            stats: LinkStats::default(),
        };
        link.bits_to_flip = link.draw_gap();
        link
    }

    pub fn params(&self) -> &LinkParams {
        &self.params
    }

    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// True once the cable has been pulled.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// When the cut happens or happened, once known.
    pub fn cut_at_ns(&self) -> Option<u64> {
        self.cut_at_ns
    }

    fn draw_gap(&mut self) -> u64 {
        let ber = self.params.ber;
        if ber <= 0.0 {
            return u64::MAX;
        }
        if ber >= 1.0 {
            return 0;
        }
        let g = self.rng.unit().ln() / (1.0 - ber).ln();
        if g >= u64::MAX as f64 {
            u64::MAX
        } else {
            g as u64
        }
    }

    /// Time for `n` bytes at the line rate.
    fn bytes_ns(&self, n: u64) -> u64 {
        n.saturating_mul(NS_PER_S) / u64::from(self.params.rate)
    }

    /// When `from` will have finished sending everything written so far.
    pub fn busy_until_ns(&self, from: Side) -> u64 {
        self.wires[from.index()].busy_until_ns
    }

    /// Puts `bytes` on the wire from `from` at `now_ns`, after what is already queued.
    pub fn write(&mut self, from: Side, bytes: &[u8], now_ns: u64) {
        self.advance(now_ns);
        if self.cut {
            self.stats.dropped += bytes.len() as u64;
            return;
        }
        let mut data = bytes.to_vec();
        let total_bits = data.len() as u64 * 8;
        let mut pos = 0u64;
        loop {
            let remaining = total_bits - pos;
            if self.bits_to_flip >= remaining {
                self.bits_to_flip -= remaining;
                break;
            }
            pos += self.bits_to_flip;
            if let Some(b) = data.get_mut((pos / 8) as usize) {
                *b ^= 1 << (pos % 8);
                self.stats.bit_flips += 1;
            }
            pos += 1;
            self.bits_to_flip = self.draw_gap();
        }
        let i = from.index();
        let start_ns = now_ns.max(self.wires[i].busy_until_ns);
        let before = self.stats.written[i];
        self.stats.written[i] += data.len() as u64;
        if let Some(Cut::AfterBytes { side, bytes: limit }) = self.params.cut {
            if side == from && self.cut_at_ns.is_none() && self.stats.written[i] >= limit {
                let into = limit.saturating_sub(before);
                self.cut_at_ns = Some(start_ns + self.bytes_ns(into));
            }
        }
        let dur = self.bytes_ns(data.len() as u64);
        self.wires[i].busy_until_ns = start_ns + dur;
        self.wires[i].segments.push_back(Segment {
            start_ns,
            bytes: data,
            delivered: 0,
        });
    }

    /// When byte `k` (0-based) of a segment starting at `start_ns` reaches the other side.
    fn arrival_ns(&self, start_ns: u64, k: usize) -> u64 {
        start_ns + self.bytes_ns(k as u64 + 1) + self.params.latency_ms * NS_PER_MS
    }

    /// Pulls the cable if its time has come: every byte that would reach the other side after it
    /// is lost; those that arrived before it are still handed over.
    fn advance(&mut self, now_ns: u64) {
        let Some(t) = self.cut_at_ns else { return };
        if self.cut || now_ns < t {
            return;
        }
        self.cut = true;
        for i in 0..2 {
            let mut wire = std::mem::take(&mut self.wires[i]);
            wire.segments.retain_mut(|s| {
                let arrived = (0..s.bytes.len())
                    .take_while(|&k| self.arrival_ns(s.start_ns, k) <= t)
                    .count();
                self.stats.dropped += (s.bytes.len() - arrived.max(s.delivered)) as u64;
                s.bytes.truncate(arrived.max(s.delivered));
                s.delivered < s.bytes.len()
            });
            self.wires[i] = wire;
        }
    }

    /// Appends to `out` the bytes sent by `from` that have reached the other side by `now_ns`,
    /// at most `delivery_chunk` of them (call again for more).
    pub fn take_arrived(&mut self, from: Side, now_ns: u64, out: &mut Vec<u8>) {
        self.advance(now_ns);
        let latency = self.params.latency_ms * NS_PER_MS;
        let rate = u64::from(self.params.rate);
        let chunk = self.params.delivery_chunk;
        let i = from.index();
        let mut budget = chunk;
        while budget > 0 {
            let Some(seg) = self.wires[i].segments.front_mut() else {
                break;
            };
            let elapsed = now_ns.saturating_sub(seg.start_ns + latency);
            // Bytes fully received: byte k arrives at start + (k+1)/rate + latency.
            let arrived = ((u128::from(elapsed) * u128::from(rate) / u128::from(NS_PER_S))
                as usize)
                .min(seg.bytes.len());
            if arrived <= seg.delivered {
                break;
            }
            let n = (arrived - seg.delivered).min(budget);
            out.extend_from_slice(&seg.bytes[seg.delivered..seg.delivered + n]);
            seg.delivered += n;
            budget -= n;
            self.stats.delivered[i] += n as u64;
            if seg.delivered == seg.bytes.len() {
                self.wires[i].segments.pop_front();
            }
        }
    }

    /// The next time bytes from `from` become deliverable, in pieces of `delivery_chunk`.
    pub fn next_arrival_ns(&self, from: Side) -> Option<u64> {
        let seg = self.wires[from.index()].segments.front()?;
        let target = (seg.delivered + self.params.delivery_chunk).min(seg.bytes.len());
        Some(self.arrival_ns(seg.start_ns, target.saturating_sub(1)))
    }
}

/// Anything that talks over the link: an [`Endpoint`], or an application session wrapping one.
pub trait Station {
    fn handle_input(&mut self, bytes: &[u8], now_ms: u64);
    /// Appends at most one frame to `out`; called whenever the wire is idle.
    fn poll_transmit(&mut self, now_ms: u64, out: &mut Vec<u8>) -> bool;
    fn poll_timeout(&self) -> Option<u64>;
    fn handle_timeout(&mut self, now_ms: u64);
}

impl Station for Endpoint {
    fn handle_input(&mut self, bytes: &[u8], now_ms: u64) {
        Endpoint::handle_input(self, bytes, now_ms);
    }
    fn poll_transmit(&mut self, now_ms: u64, out: &mut Vec<u8>) -> bool {
        Endpoint::poll_transmit(self, now_ms, out)
    }
    fn poll_timeout(&self) -> Option<u64> {
        Endpoint::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now_ms: u64) {
        Endpoint::handle_timeout(self, now_ms);
    }
}

/// Two stations joined by a [`SimLink`], driven in virtual time.
///
/// Each station is offered the wire (one `poll_transmit`) whenever its direction is idle, as a UART
/// with a one-frame buffer would; its frames are then paced at the line rate. Times given to the
/// stations are whole milliseconds since the simulation started (plus `start_ms`).
#[derive(Debug, Clone)]
pub struct Sim<A, B> {
    pub a: A,
    pub b: B,
    pub link: SimLink,
    /// Time of the events processed last.
    now_ns: u64,
    next_ns: Option<u64>,
    start_ms: u64,
    buf: Vec<u8>,
}

impl<A: Station, B: Station> Sim<A, B> {
    /// `start_ms` is added to every time given to the stations (the clock they were created with).
    pub fn new(a: A, b: B, params: LinkParams, start_ms: u64) -> Self {
        Self {
            a,
            b,
            link: SimLink::new(params),
            now_ns: 0,
            next_ns: Some(0),
            start_ms,
            buf: Vec::new(),
        }
    }

    /// Virtual time since the simulation started, as of the last events processed.
    pub fn elapsed_ns(&self) -> u64 {
        self.now_ns
    }

    /// The stations' clock now.
    pub fn now_ms(&self) -> u64 {
        self.start_ms + self.now_ns / NS_PER_MS
    }

    fn station(&mut self, side: Side) -> &mut dyn Station {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Moves the clock to the next event and processes everything due then. Returns false, without
    /// moving the clock, when nothing can ever happen again (both stations idle with no timers,
    /// nothing on the wire).
    pub fn step(&mut self) -> bool {
        let Some(next) = self.next_ns else {
            return false;
        };
        self.now_ns = self.now_ns.max(next);
        let now = self.now_ns;
        let ms = self.now_ms();
        for from in [Side::A, Side::B] {
            loop {
                let mut buf = std::mem::take(&mut self.buf);
                buf.clear();
                self.link.take_arrived(from, now, &mut buf);
                let got = !buf.is_empty();
                if got {
                    self.station(from.peer()).handle_input(&buf, ms);
                }
                self.buf = buf;
                if !got {
                    break;
                }
            }
        }
        for side in [Side::A, Side::B] {
            let st = self.station(side);
            if st.poll_timeout().is_some_and(|t| t <= ms) {
                st.handle_timeout(ms);
            }
        }
        for side in [Side::A, Side::B] {
            if self.link.busy_until_ns(side) <= now {
                let mut buf = std::mem::take(&mut self.buf);
                buf.clear();
                if self.station(side).poll_transmit(ms, &mut buf) {
                    self.link.write(side, &buf, now);
                }
                self.buf = buf;
            }
        }
        let mut next: Option<u64> = None;
        let mut consider = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        for side in [Side::A, Side::B] {
            if let Some(t) = self.link.next_arrival_ns(side) {
                consider(t);
            }
            let busy = self.link.busy_until_ns(side);
            if busy > now {
                consider(busy);
            }
        }
        if let Some(t) = self.link.cut_at_ns() {
            if t > now {
                consider(t);
            }
        }
        for t in [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
        {
            let t_ns = t.saturating_sub(self.start_ms).saturating_mul(NS_PER_MS);
            // A deadline already due (but not yet actionable) is looked at again a millisecond later.
            consider(if t_ns > now {
                t_ns
            } else {
                (ms - self.start_ms + 1) * NS_PER_MS
            });
        }
        self.next_ns = next.map(|t| t.max(now + 1));
        true
    }

    /// Steps until `done` returns true (checked after every step) or the virtual clock passes
    /// `limit_ms` since the start. Returns whether `done` was reached.
    pub fn run_until(&mut self, limit_ms: u64, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let limit_ns = limit_ms.saturating_mul(NS_PER_MS);
        while self.next_ns.is_some_and(|t| t <= limit_ns) {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }

    /// When the next event is due (virtual ns since the start), if any.
    pub fn next_event_ns(&self) -> Option<u64> {
        self.next_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn drain(link: &mut SimLink, from: Side, now_ns: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let before = out.len();
            link.take_arrived(from, now_ns, &mut out);
            if out.len() == before {
                return out;
            }
        }
    }

    #[test]
    fn bytes_arrive_paced_at_the_line_rate_after_the_latency() {
        let mut link = SimLink::new(LinkParams {
            latency_ms: 20,
            ..LinkParams::default()
        });
        let data: Vec<u8> = (0..=255).cycle().take(1152).collect();
        link.write(Side::A, &data, 0);
        // 1152 bytes at 11,520 B/s take 100 ms; then 20 ms of latency.
        assert_eq!(link.busy_until_ns(Side::A), 100 * NS_PER_MS);
        assert!(drain(&mut link, Side::A, 20 * NS_PER_MS).is_empty());
        let half = drain(&mut link, Side::A, 70 * NS_PER_MS);
        assert_eq!(half.len(), 576);
        let rest = drain(&mut link, Side::A, 120 * NS_PER_MS);
        assert_eq!([half, rest].concat(), data);
        assert!(drain(&mut link, Side::B, 120 * NS_PER_MS).is_empty());
        assert_eq!(link.next_arrival_ns(Side::A), None);
    }

    #[test]
    fn bit_errors_occur_at_the_configured_rate_and_repeat_with_the_seed() {
        let run = |seed| {
            let mut link = SimLink::new(LinkParams {
                ber: 1e-4,
                seed,
                rate: u32::MAX,
                ..LinkParams::default()
            });
            let zeros = vec![0u8; 250_000];
            link.write(Side::B, &zeros, 0);
            let got = drain(&mut link, Side::B, u64::MAX / 2);
            let ones: u32 = got.iter().map(|b| b.count_ones()).sum();
            assert_eq!(u64::from(ones), link.stats().bit_flips);
            got
        };
        let a = run(7);
        let flips: u32 = a.iter().map(|b| b.count_ones()).sum();
        // 2,000,000 bits at 1e-4: 200 expected.
        assert!((150..=250).contains(&flips), "{flips}");
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
    }

    #[test]
    fn a_cut_drops_what_has_not_arrived_in_both_directions() {
        let mut link = SimLink::new(LinkParams {
            cut: Some(Cut::AfterBytes {
                side: Side::A,
                bytes: 100,
            }),
            ..LinkParams::default()
        });
        link.write(Side::A, &[1; 300], 0);
        link.write(Side::B, &[2; 300], 0);
        let cut_at = link
            .cut_at_ns()
            .expect("cut time known once A wrote past it");
        let a = drain(&mut link, Side::A, u64::MAX / 2);
        let b = drain(&mut link, Side::B, u64::MAX / 2);
        assert_eq!((a.len(), b.len()), (100, 100));
        assert!(link.is_cut());
        assert_eq!(cut_at, link.bytes_ns(100));
        link.write(Side::A, &[3; 10], cut_at + 1);
        assert!(drain(&mut link, Side::A, u64::MAX / 2).is_empty());
        assert_eq!(link.stats().dropped, 200 + 200 + 10);
    }
}
