//! The reference handheld: a sans-IO docking session over a transfer-layer [`Endpoint`]
//! (Role::Handheld), and a route walk that produces realistic reads. Used by the tests,
//! `examples/handheld.rs` and the benchmark; firmware authors can read it next to PROTOCOL.md §3.8.
//!
//! What a handheld must keep across power cycles is [`HandheldState`] (plain data the caller saves
//! and restores; a test restores it to simulate a reboot): its state identity (a random number made
//! when the state is created: a wiped or replaced unit starts under a new one), the read counter,
//! the reads not yet acknowledged, the batch in flight (re-sent with the same transfer id and bytes,
//! so the dock can resume it), the routes and what is held of an unfinished route download.

use super::dock::{link_config, route_transfer_id, STABLE_ID};
use super::HeldPartial;
use firmware_protocol::message::{
    self as msg, error_code, AccountOrder, ByeReason, Compression, Message, Read, Route,
};
use firmware_protocol::sim::Station;
use firmware_protocol::transfer::{Direction, Endpoint, Event, LinkState, Role};
use std::collections::VecDeque;

/// Everything the handheld persists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandheldState {
    pub device_id: String,
    pub firmware: String,
    /// The state identity (protocol 2): random, non-zero, made with this state. Sequence numbers
    /// are unique per (device, state id).
    pub state_id: u64,
    /// The next `device_seq`; never reused. Moved above what the gateway holds at each docking
    /// (`Welcome.held_seq`), so a state restored from an old copy does not number reads twice.
    pub next_seq: u64,
    /// Batches formed so far (for the log; a batch's transfer id comes from its bytes).
    pub next_batch: u32,
    /// Reads taken and not yet in a batch.
    pub pending: Vec<Read>,
    /// Batches formed and not yet acknowledged, in order: (transfer id, reads). A batch, once
    /// formed, is frozen: sent again, identical and under the same id, at every docking until
    /// acknowledged (so the dock can resume it), new reads going into new batches.
    pub in_flight: Vec<(u32, Vec<Read>)>,
    pub routes: Vec<Route>,
    /// Transfer ids (and lengths) of the routes held, so an offer of the same route is not
    /// downloaded again.
    pub loaded: Vec<(u32, u32)>,
    pub codes: Vec<msg::MessageCode>,
    /// Prefixes held of unfinished route downloads.
    pub partials: Vec<HeldPartial>,
}

impl HandheldState {
    /// A new (or wiped) handheld's state, with a fresh random state id.
    pub fn new(device_id: &str) -> Self {
        Self::with_state_id(device_id, new_state_id())
    }

    /// A new state with a given state id (tests that need to reproduce one).
    pub fn with_state_id(device_id: &str, state_id: u64) -> Self {
        Self {
            device_id: device_id.to_string(),
            firmware: concat!("ref-", env!("CARGO_PKG_VERSION")).to_string(),
            state_id: state_id.max(1),
            next_seq: 1,
            next_batch: 1,
            ..Self::default()
        }
    }

    /// Reads stored and not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.pending.len() + self.in_flight.iter().map(|(_, r)| r.len()).sum::<usize>()
    }

    /// Takes a read: gives it the next sequence number and keeps it until acknowledged.
    pub fn record(&mut self, mut read: Read) -> u64 {
        read.device_seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push(read);
        self.next_seq - 1
    }

    /// Applies a `ReadAck` (or an HTTP receipt): deletes every read with `device_seq ≤ up_to_seq`,
    /// except a read refused for a sequence conflict, which gets a new sequence number and waits for
    /// the next batch (the gateway holds a different read under its old number). Reads refused for
    /// any other reason are deleted: the gateway keeps their content in its refused-reads list.
    /// Returns how many reads were renumbered.
    pub fn acknowledge(&mut self, up_to_seq: u64, refused: &[msg::RefusedRead]) -> usize {
        let again: Vec<u64> = refused
            .iter()
            .filter(|r| r.reason == msg::RefusalReason::SeqConflict && r.device_seq <= up_to_seq)
            .map(|r| r.device_seq)
            .collect();
        let mut renumber = Vec::new();
        let mut keep = |r: &Read| {
            if r.device_seq > up_to_seq {
                return true;
            }
            if again.contains(&r.device_seq) {
                renumber.push(r.clone());
            }
            false
        };
        for (_, reads) in &mut self.in_flight {
            reads.retain(&mut keep);
        }
        self.in_flight.retain(|(_, r)| !r.is_empty());
        self.pending.retain(&mut keep);
        let n = renumber.len();
        for read in renumber {
            self.record(read);
        }
        n
    }

    /// What the gateway holds from this state (`Welcome.held_seq`, an HTTP receipt): new reads are
    /// numbered above it.
    pub fn held_by_gateway(&mut self, held_seq: u64) {
        self.next_seq = self.next_seq.max(held_seq.saturating_add(1));
    }

    /// Freezes the pending reads into batches of at most `max` reads and returns every batch not
    /// yet acknowledged, oldest first: what to send. A batch's transfer id is a stable id derived
    /// from its bytes (PROTOCOL.md §3.8), so a cut upload resumes and different reads never do.
    pub fn batches(&mut self, max: usize) -> Vec<(u32, Vec<Read>)> {
        let max = max.clamp(1, msg::limits::READS);
        while !self.pending.is_empty() {
            let n = self.pending.len().min(max);
            let reads: Vec<Read> = self.pending.drain(..n).collect();
            let bytes = Message::ReadBatch {
                reads: reads.clone(),
            }
            .to_vec();
            let id = route_transfer_id(&bytes);
            self.next_batch = self.next_batch.wrapping_add(1);
            self.in_flight.push((id, reads));
        }
        self.in_flight.clone()
    }
}

/// A fresh state identity: 64 random bits from the operating system (never 0).
pub fn new_state_id() -> u64 {
    let id = getrandom::u64().unwrap_or_else(|_| {
        // No OS randomness (never seen on the platforms the reference runs on): the clock and the
        // process id still make a new value for every state.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ (u64::from(std::process::id()) << 32)
    });
    id.max(1)
}

/// What this docking is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    pub upload: bool,
    pub download: bool,
    /// Most reads per batch (at most the protocol's 10,000). Every batch is queued at once; the
    /// dock commits one while the next is on the line, so only the last batch's commit adds to
    /// the time until the last `ReadAck`.
    pub max_batch: usize,
}

impl Default for Mode {
    fn default() -> Self {
        Self {
            upload: true,
            download: true,
            max_batch: 250,
        }
    }
}

/// How a docking ended (so far).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Both sides said `Bye { done }`.
    pub done: bool,
    /// The dock ended the session with an error (`Error` then `Bye { error }`).
    pub refused: Option<(u16, String)>,
    /// Errors the dock reported along the way.
    pub errors: Vec<(u16, String)>,
    /// Reads the dock acknowledged as stored (or refused for good).
    pub reads_acknowledged: usize,
    /// Reads the dock refused (`ReadAck.refused`).
    pub reads_refused: usize,
    /// Of those, reads refused for a sequence conflict and numbered again for the next docking.
    pub reads_renumbered: usize,
    pub routes_received: usize,
    pub codes_received: usize,
    pub link_down: bool,
    /// Bytes of route transfers received / of read batches acknowledged so far (progress display).
    pub bytes_down: u64,
    pub bytes_up: u64,
    /// Size of the transfer `bytes_down` / `bytes_up` belong to.
    pub bytes_down_total: u64,
    pub bytes_up_total: u64,
    /// A route download continued from this offset instead of starting over.
    pub resumed_from: Option<u32>,
    /// Handheld clock (ms) when the first read batch was queued, and when the last `ReadAck` came.
    pub upload_started_ms: Option<u64>,
    /// Handheld clock when the dock held every byte of the last batch (transfer layer).
    pub upload_delivered_ms: Option<u64>,
    pub last_ack_ms: Option<u64>,
    /// Bytes this handheld had put on the line when the last `ReadAck` came (frames, control
    /// records and acknowledgements included).
    pub wire_bytes_at_last_ack: u64,
    /// Handheld clock when the last route finished loading.
    pub route_loaded_ms: Option<u64>,
}

/// One docking of the reference handheld. See the module documentation.
pub struct Handheld {
    state: HandheldState,
    endpoint: Endpoint,
    mode: Mode,
    next_id: u32,
    hello_sent: bool,
    compressed_offers: Vec<(u32, bool)>,
    bye_id: Option<u32>,
    outcome: Outcome,
    log: VecDeque<String>,
    /// The clock as of the last call, for a disconnect reported without a time.
    now_ms: u64,
    restarts_seen: u64,
}

impl Handheld {
    /// Starts a docking with the persisted `state`, at `now_ms`, on a line of `baud`.
    pub fn new(state: HandheldState, mode: Mode, baud: u32, nonce: u32, now_ms: u64) -> Self {
        let mut endpoint = Endpoint::new(Role::Handheld, link_config(baud, nonce), now_ms);
        for p in &state.partials {
            // A prefix that no longer fits is dropped: the route then downloads from the start.
            let _ = endpoint.import_partial(p.id, p.total, p.data.clone());
        }
        Self {
            state,
            endpoint,
            mode,
            next_id: 1,
            hello_sent: false,
            compressed_offers: Vec::new(),
            bye_id: None,
            outcome: Outcome::default(),
            log: VecDeque::new(),
            now_ms,
            restarts_seen: 0,
        }
    }

    /// What the handheld would persist now (including what it holds of an unfinished download).
    pub fn state(&self) -> HandheldState {
        let mut s = self.state.clone();
        let live: Vec<HeldPartial> = self
            .endpoint
            .partials()
            .filter(|p| p.id & STABLE_ID != 0 && !p.data.is_empty())
            .map(|p| HeldPartial {
                id: p.id,
                total: p.total,
                data: p.data.to_vec(),
            })
            .collect();
        if !live.is_empty() || self.endpoint.state() != LinkState::Down {
            s.partials.retain(|k| !live.iter().any(|l| l.id == k.id));
            s.partials.extend(live);
        }
        s
    }

    /// The transfer layer's counters for this docking.
    pub fn link_stats(&self) -> firmware_protocol::transfer::Stats {
        self.endpoint.stats()
    }

    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    pub fn link_state(&self) -> LinkState {
        self.endpoint.state()
    }

    /// Finished: both byes exchanged, refused, or the link went down.
    pub fn finished(&self) -> bool {
        self.outcome.done || self.outcome.refused.is_some() || self.outcome.link_down
    }

    pub fn poll_log(&mut self) -> Option<String> {
        self.log.pop_front()
    }

    /// The port reported a disconnect.
    pub fn port_lost(&mut self) {
        self.endpoint.link_lost();
        self.pump(self.now_ms);
    }

    fn send_message(&mut self, m: &Message) -> Option<u32> {
        let id = self.next_id;
        self.next_id = (self.next_id + 1) & !STABLE_ID;
        self.endpoint.send(id, m.to_vec()).ok().map(|()| id)
    }

    fn pump(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        while let Some(ev) = self.endpoint.poll_event() {
            match ev {
                // A new connection, or the dock's endpoint restarted (it started over and forgot
                // our Hello): the session starts with Hello either way.
                Event::LinkUp { .. }
                    if !self.hello_sent
                        || self.endpoint.stats().peer_restarts > self.restarts_seen =>
                {
                    self.hello_sent = true;
                    self.restarts_seen = self.endpoint.stats().peer_restarts;
                    let pending = if self.mode.upload {
                        self.state.unacknowledged() as u32
                    } else {
                        0
                    };
                    self.send_message(&Message::Hello(msg::Hello {
                        device_id: self.state.device_id.clone(),
                        firmware_version: self.state.firmware.clone(),
                        protocol_versions: vec![msg::SESSION_PROTOCOL_VERSION],
                        max_payload: 4096,
                        window: 32,
                        compression: Compression::DEFLATE,
                        pending_reads: pending,
                        state_id: self.state.state_id,
                    }));
                }
                Event::TransferComplete { id, data } => self.on_transfer(id, data, now_ms),
                Event::Delivered { id } if Some(id) == self.bye_id => self.outcome.done = true,
                Event::Delivered { id } if id & STABLE_ID != 0 => {
                    self.outcome.upload_delivered_ms = Some(now_ms)
                }
                Event::Progress {
                    direction: Direction::Incoming,
                    id,
                    offset,
                    total,
                } if id & STABLE_ID != 0 => {
                    self.outcome.bytes_down = u64::from(offset);
                    self.outcome.bytes_down_total = u64::from(total);
                }
                Event::Progress {
                    direction: Direction::Outgoing,
                    id,
                    offset,
                    total,
                } if id & STABLE_ID != 0 => {
                    self.outcome.bytes_up = u64::from(offset);
                    self.outcome.bytes_up_total = u64::from(total);
                }
                Event::Resumed {
                    direction: Direction::Incoming,
                    offset,
                    id,
                } => {
                    self.outcome.resumed_from = Some(offset);
                    self.log
                        .push_back(format!("route transfer {id:#x} resumes at byte {offset}"));
                }
                Event::LinkDown => {
                    // Keep what is held of an unfinished download for the next docking.
                    self.state = self.state();
                    self.outcome.link_down = true;
                }
                Event::PeerError(e) => self.log.push_back(format!("peer error: {e}")),
                _ => {}
            }
        }
    }

    fn on_transfer(&mut self, id: u32, data: Vec<u8>, now_ms: u64) {
        if let Some(&(_, compressed)) = self.compressed_offers.iter().find(|(t, _)| *t == id) {
            let total = data.len() as u32;
            match msg::decode_route_transfer(&data, compressed) {
                Ok(Message::RouteData(route)) => {
                    self.log.push_back(format!(
                        "route {} ({} stops) loaded",
                        route.route_id,
                        route.stops.len()
                    ));
                    self.state.routes.retain(|r| r.route_id != route.route_id);
                    self.state.routes.push(route);
                    self.state.loaded.retain(|(t, _)| *t != id);
                    self.state.loaded.push((id, total));
                    self.state.partials.retain(|p| p.id != id);
                    self.outcome.routes_received += 1;
                    self.outcome.route_loaded_ms = Some(now_ms);
                }
                Ok(other) => self
                    .log
                    .push_back(format!("route transfer held a {}", other.name())),
                Err(e) => {
                    self.send_message(&Message::Error {
                        code: error_code::BAD_MESSAGE,
                        text: format!("route transfer {id}: {e}"),
                    });
                }
            }
            return;
        }
        let m = match Message::decode(&data) {
            Ok(m) => m,
            Err(e) => {
                self.send_message(&Message::Error {
                    code: error_code::BAD_MESSAGE,
                    text: format!("transfer {id}: {e}"),
                });
                return;
            }
        };
        match m {
            Message::Welcome(w) => {
                self.log.push_back(format!(
                    "welcome: routes {:?}, server time {}, gateway holds reads up to {}",
                    w.assigned_routes, w.server_time, w.held_seq
                ));
                self.state.held_by_gateway(w.held_seq);
                if self.mode.upload {
                    let batches = self.state.batches(self.mode.max_batch);
                    if !batches.is_empty() {
                        self.outcome.upload_started_ms = Some(now_ms);
                    }
                    for (bid, reads) in batches {
                        self.log
                            .push_back(format!("uploading {} reads (batch {bid:#x})", reads.len()));
                        let _ = self
                            .endpoint
                            .send(bid, Message::ReadBatch { reads }.to_vec());
                    }
                }
            }
            Message::ReadAck { up_to_seq, refused } => {
                let before = self.state.unacknowledged();
                let renumbered = self.state.acknowledge(up_to_seq, &refused);
                self.outcome.reads_acknowledged +=
                    before.saturating_sub(self.state.unacknowledged());
                self.outcome.reads_refused += refused.len();
                self.outcome.reads_renumbered += renumbered;
                self.outcome.last_ack_ms = Some(now_ms);
                self.outcome.wire_bytes_at_last_ack = self.endpoint.stats().bytes_sent;
                self.log
                    .push_back(format!("reads up to {up_to_seq} acknowledged"));
                for r in &refused {
                    self.log.push_back(format!(
                        "read {} refused: {}",
                        r.device_seq,
                        r.reason.name().unwrap_or("unknown reason")
                    ));
                }
                if renumbered > 0 {
                    self.log.push_back(format!(
                        "{renumbered} read(s) renumbered, to be sent at the next docking"
                    ));
                }
            }
            Message::RouteOffer(o) => {
                if !self.mode.download {
                    self.send_message(&Message::Error {
                        code: error_code::NO_SPACE,
                        text: "not loading routes in this docking".into(),
                    });
                    return;
                }
                self.compressed_offers.push((o.transfer_id, o.compressed));
                let resume_from = if self.state.loaded.contains(&(o.transfer_id, o.bytes)) {
                    // Already held: the transfer layer reports it delivered, nothing is sent.
                    self.endpoint.mark_delivered(o.transfer_id, o.bytes);
                    self.log
                        .push_back(format!("route {} already held", o.route_id));
                    o.bytes
                } else {
                    self.endpoint
                        .partial(o.transfer_id)
                        .map_or(0, |(off, _)| off)
                };
                self.send_message(&Message::RouteAccept {
                    transfer_id: o.transfer_id,
                    resume_from,
                });
            }
            Message::MessageCodeTable { codes } => {
                self.outcome.codes_received = codes.len();
                self.state.codes = codes;
            }
            Message::FieldOrders { orders } => self.attach_orders(orders),
            Message::ClockSync { .. } => {}
            Message::Error { code, text } => {
                self.log.push_back(format!("dock error {code}: {text}"));
                self.outcome.errors.push((code, text));
            }
            Message::Bye { reason } => {
                if reason == ByeReason::Done {
                    // Everything received is stored (in `state`): say so.
                    self.bye_id = self.send_message(&Message::Bye {
                        reason: ByeReason::Done,
                    });
                } else {
                    let last = self.outcome.errors.last().cloned();
                    self.outcome.refused =
                        Some(last.unwrap_or((error_code::INTERNAL, format!("bye: {reason:?}"))));
                }
            }
            other => self
                .log
                .push_back(format!("ignored unexpected {}", other.name())),
        }
    }

    fn attach_orders(&mut self, orders: Vec<AccountOrder>) {
        for o in orders {
            for r in &mut self.state.routes {
                if let Some(s) = r
                    .stops
                    .iter_mut()
                    .find(|s| s.account_id == o.account_id && s.meter_id == o.meter_id)
                {
                    s.field_orders.retain(|x| x.order_id != o.order.order_id);
                    s.field_orders.push(o.order.clone());
                }
            }
        }
    }
}

impl Station for Handheld {
    fn handle_input(&mut self, bytes: &[u8], now_ms: u64) {
        self.endpoint.handle_input(bytes, now_ms);
        self.pump(now_ms);
    }

    fn poll_transmit(&mut self, now_ms: u64, out: &mut Vec<u8>) -> bool {
        let sent = self.endpoint.poll_transmit(now_ms, out);
        self.pump(now_ms);
        sent
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.endpoint.poll_timeout()
    }

    fn handle_timeout(&mut self, now_ms: u64) {
        self.endpoint.handle_timeout(now_ms);
        self.pump(now_ms);
    }
}

// ---- walking a route -----------------------------------------------------------------------------

/// SplitMix64: deterministic, seeded.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// How readers' reads come out on a walk.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadModel {
    /// Share of stops read well above expected use (a leak, a pool fill).
    pub high: f64,
    /// Share of readings mis-keyed (two digits swapped).
    pub miskeyed: f64,
    /// Share of stops not read (skip code).
    pub skipped: f64,
    /// Share of reads carrying a message code.
    pub coded: f64,
}

impl Default for ReadModel {
    fn default() -> Self {
        Self {
            high: 0.03,
            miskeyed: 0.02,
            skipped: 0.02,
            coded: 0.05,
        }
    }
}

/// Walks every stop of `route` in order and records a read for each, as a reader would: a reading
/// around expected use (the middle of the stop's limits), some high, some mis-keyed; a reading
/// outside the limits is re-keyed: a mis-key is then usually corrected, otherwise the reader
/// confirms it (`high_confirmed` / `low_confirmed`). Reads of stops with a field order complete it.
/// `start_time` is protocol time (local seconds); reads are a minute apart.
pub fn walk_route(
    state: &mut HandheldState,
    route_index: usize,
    model: &ReadModel,
    rng: &mut Rng,
    reader_id: &str,
    start_time: i64,
) -> usize {
    let Some(route) = state.routes.get(route_index).cloned() else {
        return 0;
    };
    let codes: Vec<String> = state
        .codes
        .iter()
        .filter(|c| c.category != "skip")
        .map(|c| c.code.clone())
        .collect();
    let skip_codes: Vec<String> = state
        .codes
        .iter()
        .filter(|c| c.category == "skip")
        .map(|c| c.code.clone())
        .collect();
    let mut n = 0;
    for (i, stop) in route.stops.iter().enumerate() {
        let modulus = 10u64.checked_pow(u32::from(stop.dials)).unwrap_or(u64::MAX);
        let time = start_time + 60 * i as i64;
        let order = stop.field_orders.first().map(|o| msg::OrderCompletion {
            order_id: o.order_id,
            new_meter_id: (o.kind == msg::FieldOrderKind::MeterChange).then(|| {
                format!("N{}", stop.meter_id)
                    .chars()
                    .take(msg::limits::ID)
                    .collect()
            }),
            new_meter_initial: (o.kind == msg::FieldOrderKind::MeterChange).then_some(0),
        });
        let mut read = Read {
            device_seq: 0,
            meter_id: stop.meter_id.clone(),
            reading: 0,
            read_time: time,
            read_type: msg::ReadType::Regular,
            method: msg::ReadMethod::Keyed,
            message_codes: Vec::new(),
            skip_code: None,
            note: None,
            reader_id: reader_id.to_string(),
            order,
        };
        if rng.unit() < model.skipped {
            read.read_type = msg::ReadType::Skipped;
            read.skip_code = Some(
                skip_codes
                    .get(rng.below(skip_codes.len() as u64) as usize)
                    .cloned()
                    .unwrap_or_else(|| "CG".into()),
            );
            state.record(read);
            n += 1;
            continue;
        }
        // Expected use: the middle of the day's limits, as an offset from the previous reading.
        let day = u32::try_from(time.div_euclid(86_400)).unwrap_or(route.window_from);
        let limits = stop.limits_on((route.window_from, route.window_to), day);
        let (low_limit, high_limit) = match limits {
            msg::DayLimits::Range { low, high } => (low, high),
            msg::DayLimits::Any => (
                stop.previous_reading,
                stop.previous_reading.wrapping_add(20),
            ),
        };
        let span = |a: u64, b: u64| if b >= a { b - a } else { b + (modulus - a) };
        let low_use = span(stop.previous_reading, low_limit) % modulus;
        let high_use = span(stop.previous_reading, high_limit) % modulus;
        let (low_use, high_use) = if high_use >= low_use {
            (low_use, high_use)
        } else {
            (0, high_use)
        };
        let mut used = low_use + rng.below(high_use - low_use + 1);
        if rng.unit() < model.high {
            used = high_use.saturating_mul(2).max(used + 10);
        }
        let truth = (stop.previous_reading % modulus + used % modulus) % modulus;
        let mut keyed = truth;
        if rng.unit() < model.miskeyed {
            keyed = swap_digits(truth, stop.dials, rng);
        }
        if !limits.contains(keyed) {
            // Re-keyed at the meter: a mis-key is caught most of the time.
            if keyed != truth && rng.unit() < 0.7 {
                keyed = truth;
            }
            if !limits.contains(keyed) {
                let above = span(stop.previous_reading, keyed) % modulus > high_use;
                read.read_type = if above {
                    msg::ReadType::HighConfirmed
                } else {
                    msg::ReadType::LowConfirmed
                };
            }
        }
        read.reading = keyed;
        if !codes.is_empty() && rng.unit() < model.coded {
            read.message_codes
                .push(codes[rng.below(codes.len() as u64) as usize].clone());
        }
        state.record(read);
        n += 1;
    }
    n
}

/// Swaps two neighbouring digits of `v` (a typical keying slip).
fn swap_digits(v: u64, dials: u8, rng: &mut Rng) -> u64 {
    let mut digits: Vec<u8> = format!("{v:0width$}", width = usize::from(dials.max(2)))
        .bytes()
        .collect();
    if digits.len() < 2 {
        return v;
    }
    let i = rng.below(digits.len() as u64 - 1) as usize;
    digits.swap(i, i + 1);
    std::str::from_utf8(&digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(v)
}

// ---- persistence ---------------------------------------------------------------------------------

/// Why a saved handheld state could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("not a handheld state file (bad magic)")]
    Magic,
    #[error("handheld state file is truncated at byte {0}")]
    Truncated(usize),
    #[error("handheld state file: {0}")]
    Message(String),
}

/// Version 2 of the state file adds the state id after the firmware version.
const STATE_MAGIC: &[u8; 6] = b"MGHH02";
/// A state file written before protocol 2 (no state id): read with a fresh one.
const STATE_MAGIC_V1: &[u8; 6] = b"MGHH01";

impl HandheldState {
    /// The state as bytes (what firmware would write to flash), built from the wire's own message
    /// encodings: reads as `ReadBatch`, routes as `RouteData`, codes as `MessageCodeTable`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = STATE_MAGIC.to_vec();
        let put = |out: &mut Vec<u8>, b: &[u8]| {
            msg::write_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        };
        put(&mut out, self.device_id.as_bytes());
        put(&mut out, self.firmware.as_bytes());
        msg::write_varint(&mut out, self.state_id);
        msg::write_varint(&mut out, self.next_seq);
        msg::write_varint(&mut out, u64::from(self.next_batch));
        put(
            &mut out,
            &Message::ReadBatch {
                reads: self.pending.clone(),
            }
            .to_vec(),
        );
        msg::write_varint(&mut out, self.in_flight.len() as u64);
        for (id, reads) in &self.in_flight {
            msg::write_varint(&mut out, u64::from(*id));
            put(
                &mut out,
                &Message::ReadBatch {
                    reads: reads.clone(),
                }
                .to_vec(),
            );
        }
        msg::write_varint(&mut out, self.routes.len() as u64);
        for r in &self.routes {
            put(&mut out, &Message::RouteData(r.clone()).to_vec());
        }
        msg::write_varint(&mut out, self.loaded.len() as u64);
        for (id, total) in &self.loaded {
            msg::write_varint(&mut out, u64::from(*id));
            msg::write_varint(&mut out, u64::from(*total));
        }
        put(
            &mut out,
            &Message::MessageCodeTable {
                codes: self.codes.clone(),
            }
            .to_vec(),
        );
        msg::write_varint(&mut out, self.partials.len() as u64);
        for p in &self.partials {
            msg::write_varint(&mut out, u64::from(p.id));
            msg::write_varint(&mut out, u64::from(p.total));
            put(&mut out, &p.data);
        }
        out
    }

    /// Reads back [`HandheldState::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, StateError> {
        let (rest, v1) = match b.strip_prefix(STATE_MAGIC.as_slice()) {
            Some(rest) => (rest, false),
            None => (
                b.strip_prefix(STATE_MAGIC_V1.as_slice())
                    .ok_or(StateError::Magic)?,
                true,
            ),
        };
        let mut r = StateReader { b: rest, at: 0 };
        let device_id = r.string()?;
        let firmware = r.string()?;
        // A protocol-1 state has no identity: it gets a new one, under which its unacknowledged
        // reads can never be taken for reads the gateway already holds.
        let state_id = if v1 {
            new_state_id()
        } else {
            r.varint()?.max(1)
        };
        let next_seq = r.varint()?;
        let next_batch = r.varint()? as u32;
        let pending = r.reads()?;
        let in_flight = (0..r.count()?)
            .map(|_| Ok((r.varint()? as u32, r.reads()?)))
            .collect::<Result<_, StateError>>()?;
        let routes = (0..r.count()?)
            .map(|_| match r.message()? {
                Message::RouteData(route) => Ok(route),
                m => Err(StateError::Message(format!(
                    "expected a route, found {}",
                    m.name()
                ))),
            })
            .collect::<Result<_, _>>()?;
        let loaded = (0..r.count()?)
            .map(|_| Ok((r.varint()? as u32, r.varint()? as u32)))
            .collect::<Result<_, StateError>>()?;
        let codes = match r.message()? {
            Message::MessageCodeTable { codes } => codes,
            m => {
                return Err(StateError::Message(format!(
                    "expected codes, found {}",
                    m.name()
                )))
            }
        };
        let partials = (0..r.count()?)
            .map(|_| {
                Ok(HeldPartial {
                    id: r.varint()? as u32,
                    total: r.varint()? as u32,
                    data: r.bytes()?.to_vec(),
                })
            })
            .collect::<Result<_, StateError>>()?;
        Ok(Self {
            device_id,
            firmware,
            state_id,
            next_seq,
            next_batch,
            pending,
            in_flight,
            routes,
            loaded,
            codes,
            partials,
        })
    }
}

struct StateReader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> StateReader<'a> {
    fn varint(&mut self) -> Result<u64, StateError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.at).ok_or(StateError::Truncated(self.at))?;
            self.at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(StateError::Truncated(self.at))
    }

    fn count(&mut self) -> Result<usize, StateError> {
        let n = self.varint()? as usize;
        // Every item takes at least one byte: a corrupt count cannot make us allocate much.
        if n > self.b.len() - self.at.min(self.b.len()) {
            return Err(StateError::Truncated(self.at));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], StateError> {
        let n = self.varint()? as usize;
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or(StateError::Truncated(self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn string(&mut self) -> Result<String, StateError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|e| StateError::Message(e.to_string()))
    }

    fn message(&mut self) -> Result<Message, StateError> {
        Message::decode(self.bytes()?).map_err(|e| StateError::Message(e.to_string()))
    }

    fn reads(&mut self) -> Result<Vec<Read>, StateError> {
        match self.message()? {
            Message::ReadBatch { reads } => Ok(reads),
            m => Err(StateError::Message(format!(
                "expected reads, found {}",
                m.name()
            ))),
        }
    }
}
