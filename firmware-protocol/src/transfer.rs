//! Reliable transfer of byte strings over frames: a sliding window with selective repeat, for both
//! the dock and the handheld, over a full-duplex serial link. Sans-IO: the caller moves bytes
//! between the port and the [`Endpoint`], and passes the time in.
//!
//! Frame types used: `Data` (sequenced: chunks and control records), `Ack`, `Ping`, `Pong`,
//! `Reset` (the link handshake). No frame type beyond FRAMING's codes 1..=5 is needed; control
//! records ride in `Data` frames with the `CONTROL` flag (see `PROTOCOL.md`, "Reliable transfer").
//!
//! # Model
//! - A *connection* starts with a handshake of `Reset` frames carrying each side's session nonce
//!   and capabilities (max payload, window); the effective values are the minimum of both sides.
//!   A `Reset` with an unknown session means the peer restarted: both sequence spaces start again
//!   from 0 and unfinished transfers are offered again, resuming where the receiver stands.
//! - Each direction is one sequence space of `Data` frames. A transfer is an `Offer` (id, total),
//!   answered by `Accept` (the offset the receiver already holds) or `Reject`; then `Begin` (id,
//!   offset) and chunks, in sequence. The chunk size adapts to the loss rate the sender observes.
//! - The receiver acknowledges every `Data` frame it sees with the cumulative next-expected
//!   sequence number, a 64-bit SACK bitmap and its window.
//!
//! # Invariants
//! - **Exactly once:** a transfer is reported by [`Event::TransferComplete`] once per id on an
//!   endpoint, byte for byte as sent; a frame received twice is acknowledged again, never applied
//!   twice. Ids marked with [`Endpoint::mark_delivered`] are not delivered again either.
//! - **Bounded waits:** no retransmission timer, back-off included, exceeds
//!   [`LinkConfig::ack_timeout_ms`] (2 s, ANSI C12.18); a partial frame followed by
//!   [`LinkConfig::char_gap_ms`] (500 ms) of silence is discarded.
//! - **Bounded memory:** at most `window` frames are in flight or buffered out of order; a
//!   transfer is accepted only up to [`LinkConfig::max_transfer_len`].
//! - **Transmit budget:** [`Endpoint::poll_transmit`] hands out one frame per call, acknowledgements
//!   and control frames before data, so an ACK never waits behind more than the frame being sent.
//! - **Resume:** the receiver's held prefix of every unfinished transfer can be exported
//!   ([`Endpoint::partials`]) and imported into a new endpoint ([`Endpoint::import_partial`]); the
//!   sender then sends only what follows it.
//! - No panics on input: malformed or unexpected frames are dropped and reported as
//!   [`Event::PeerError`].

mod recv;
mod send;
mod wire;

pub use wire::RejectReason;

use crate::decoder::{Decoder, Feed, FrameError};
use crate::frame::{encode_frame_vec, FrameType, Header, DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_LIMIT};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use recv::{InTransfer, Placement, Receiver};
use send::{Item, OutState, OutTransfer, Sender, Slot, FRAME_OVERHEAD};
use wire::{Ack, Control, ResetInfo, CONTROL_MAX_LEN, FLAG_CONTROL, SACK_BITS};

/// The smallest `max_payload` a `Reset` may announce (PROTOCOL.md §2.1): the smallest chunk the
/// sender's adaptive sizing uses. A `Reset` announcing less is ignored and reported.
pub const MIN_LINK_PAYLOAD: usize = 32;

/// Which end of the cradle this endpoint is. The transfer layer is symmetric; the role only
/// enters the session nonce, so that two endpoints started at the same instant still differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Dock,
    Handheld,
}

/// Local limits and timers. `max_payload` and `window` are this side's capabilities (from the
/// Hello/Welcome exchange); the link uses the minimum of both sides'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// Largest frame payload this side accepts and sends, at most [`MAX_PAYLOAD_LIMIT`].
    pub max_payload: usize,
    /// Frames this side lets in flight and buffers out of order, 1..=64 (the SACK bitmap).
    pub window: u16,
    /// Smallest chunk the adaptive sizing chooses under errors.
    pub min_payload: usize,
    /// Chunk size before anything is known about the link; it grows while chunks get through
    /// and shrinks with the loss rate.
    pub initial_payload: usize,
    /// The longest any retransmission timer runs (ANSI C12.18: 2 s).
    pub ack_timeout_ms: u64,
    /// Retransmission timeout before a round trip has been measured.
    pub initial_rto_ms: u64,
    /// Floor of the measured retransmission timeout.
    pub min_rto_ms: u64,
    /// Silence after which a partial frame is discarded (ANSI C12.18: 500 ms).
    pub char_gap_ms: u64,
    /// Silence after which a `Ping` is sent.
    pub keepalive_ms: u64,
    /// Unanswered probes (`Ping`, or `Reset` while connecting) after which the link is down.
    pub keepalive_misses: u32,
    /// Largest transfer this side accepts from the peer.
    pub max_transfer_len: u32,
    /// Bytes per second the port carries, if known (115200 8N1 = 11520). Lets the endpoint time
    /// from when a frame has left the port rather than when it was handed out, and keeps a frame
    /// under a quarter of the ACK timeout on slow links.
    pub line_rate: Option<u32>,
    /// Distinguishes this endpoint instance from earlier ones (a boot counter or random number);
    /// mixed with the creation time into the session nonce.
    pub nonce: u32,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            max_payload: DEFAULT_MAX_PAYLOAD,
            window: 32,
            min_payload: 32,
            initial_payload: DEFAULT_MAX_PAYLOAD,
            ack_timeout_ms: 2000,
            initial_rto_ms: 1000,
            min_rto_ms: 100,
            char_gap_ms: 500,
            keepalive_ms: 1000,
            keepalive_misses: 3,
            max_transfer_len: 64 << 20,
            line_rate: None,
            nonce: 0,
        }
    }
}

impl LinkConfig {
    /// Brings every field into its valid range, so that a bad configuration cannot stall the link.
    fn sanitized(mut self) -> Self {
        self.max_payload = self.max_payload.clamp(MIN_LINK_PAYLOAD, MAX_PAYLOAD_LIMIT);
        self.window = self.window.clamp(1, SACK_BITS as u16);
        self.min_payload = self.min_payload.clamp(1, self.max_payload);
        self.initial_payload = self
            .initial_payload
            .clamp(self.min_payload, self.max_payload);
        self.ack_timeout_ms = self.ack_timeout_ms.max(1);
        self.initial_rto_ms = self.initial_rto_ms.clamp(1, self.ack_timeout_ms);
        self.min_rto_ms = self.min_rto_ms.clamp(1, self.ack_timeout_ms);
        self.char_gap_ms = self.char_gap_ms.max(1);
        self.keepalive_ms = self.keepalive_ms.max(1);
        self.keepalive_misses = self.keepalive_misses.max(1);
        if let Some(rate) = self.line_rate {
            self.line_rate = (rate > 0).then_some(rate);
        }
        self
    }
}

/// The link's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Handshake in progress; no data is sent.
    Connecting,
    Up,
    /// Terminal: too many probes went unanswered, or [`Endpoint::link_lost`] was called. Export
    /// the partial state and build a new endpoint for the next connection.
    Down,
}

/// Which way a transfer goes, seen from this endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Outgoing,
    Incoming,
}

/// Something the peer sent that this endpoint could not use. The frame was dropped.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerError {
    /// A sound frame of a protocol version this endpoint does not speak (reported once per version).
    UnsupportedVersion(u8),
    /// A frame type this endpoint does not know (reported once per code).
    UnknownFrameType(u8),
    /// A frame of a known type whose payload does not parse.
    Malformed { frame_type: u8 },
    /// A `Begin` or chunk for a transfer that was not offered and accepted.
    UnknownTransfer { id: u32 },
    /// A `Begin` past the offset this side accepted.
    BeginMismatch { id: u32, offset: u32, held: u32 },
    /// Chunks beyond the offered total.
    Overrun { id: u32 },
    /// A `Reset` announcing a payload limit below [`MIN_LINK_PAYLOAD`] or a window of 0: ignored,
    /// so the link never comes up with a peer that could not take the smallest chunk.
    BadReset { max_payload: u16, window: u16 },
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::UnsupportedVersion(v) => write!(f, "peer speaks protocol version {v}"),
            PeerError::UnknownFrameType(t) => write!(f, "unknown frame type {t}"),
            PeerError::Malformed { frame_type } => {
                write!(f, "malformed payload in a frame of type {frame_type}")
            }
            PeerError::UnknownTransfer { id } => {
                write!(f, "data for transfer {id}, which was not accepted")
            }
            PeerError::BeginMismatch { id, offset, held } => write!(
                f,
                "transfer {id} begins at offset {offset} but {held} bytes are held"
            ),
            PeerError::Overrun { id } => write!(f, "transfer {id} carries more bytes than offered"),
            PeerError::BadReset {
                max_payload,
                window,
            } => write!(
                f,
                "reset ignored: max_payload {max_payload} (at least {MIN_LINK_PAYLOAD}) or window {window} (at least 1)"
            ),
        }
    }
}

/// What happened, for the application. Drain with [`Endpoint::poll_event`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed; the effective maximum payload and window.
    LinkUp {
        max_payload: usize,
        window: u16,
    },
    /// A transfer from the peer is complete; `data` is exactly what the peer sent.
    TransferComplete {
        id: u32,
        data: Vec<u8>,
    },
    /// The peer holds every byte of a transfer this side sent.
    Delivered {
        id: u32,
    },
    /// The peer refused a transfer this side sent.
    Rejected {
        id: u32,
        reason: RejectReason,
    },
    /// Bytes held by the receiver (incoming: by this side; outgoing: acknowledged by the peer).
    /// Coalesced: at most one per transfer waits in the queue.
    Progress {
        id: u32,
        direction: Direction,
        offset: u32,
        total: u32,
    },
    /// A transfer continues from `offset` instead of starting over.
    Resumed {
        id: u32,
        direction: Direction,
        offset: u32,
    },
    /// The link is down (terminal for this endpoint).
    LinkDown,
    PeerError(PeerError),
}

/// Why [`Endpoint::send`] refused a transfer.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Longer than a transfer can be (`u32::MAX`).
    TooLong { len: usize },
    /// A transfer with this id is already queued.
    DuplicateId(u32),
    /// The endpoint is down.
    LinkDown,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::TooLong { len } => write!(f, "transfer of {len} bytes exceeds u32::MAX"),
            SendError::DuplicateId(id) => write!(f, "transfer {id} is already queued"),
            SendError::LinkDown => write!(f, "the link is down"),
        }
    }
}

impl core::error::Error for SendError {}

/// Why [`Endpoint::import_partial`] refused state.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportError {
    /// More bytes held than the transfer's total.
    LongerThanTotal { held: usize, total: u32 },
    /// The total exceeds [`LinkConfig::max_transfer_len`].
    TooLarge { total: u32 },
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::LongerThanTotal { held, total } => {
                write!(f, "{held} bytes held of a {total}-byte transfer")
            }
            ImportError::TooLarge { total } => {
                write!(f, "transfer of {total} bytes exceeds the limit")
            }
        }
    }
}

impl core::error::Error for ImportError {}

/// An unfinished incoming transfer: `data` is the prefix held, `data.len()` its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial<'a> {
    pub id: u32,
    pub total: u32,
    pub data: &'a [u8],
}

/// Counters, for diagnostics and the benchmark.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub frames_received: u64,
    /// Frames the decoder rejected (CRC, COBS, length).
    pub bad_frames: u64,
    /// Partial frames discarded after the character gap.
    pub gap_discards: u64,
    /// Chunk payload bytes handed out, retransmissions included.
    pub chunk_bytes_sent: u64,
    /// Chunk payload bytes handed out again.
    pub chunk_bytes_resent: u64,
    pub retransmissions: u64,
    pub timeouts: u64,
    /// `Data` frames received again (their ACK was lost).
    pub duplicates: u64,
    pub peer_restarts: u64,
}

/// What `transmit_inner` put in the output.
enum Sent {
    Nothing,
    /// A frame outside the window (handshake, ACK, probe).
    Frame,
    /// `inflight[i]`.
    Slot(usize),
}

#[derive(Debug, Clone, Copy)]
struct PeerInfo {
    session: u32,
    max_payload: usize,
    window: u16,
}

/// Liveness probing: `Reset` while connecting, `Ping` once up.
#[derive(Debug, Clone, Copy, Default)]
struct Probe {
    due: bool,
    outstanding_since: Option<u64>,
    last_sent: u64,
    missed: u32,
}

/// One end of the link. See the module documentation for the invariants.
#[derive(Debug, Clone)]
pub struct Endpoint {
    decoder: Decoder<Vec<u8>>,
    last_rx_byte: u64,
    conn: Conn,
}

#[derive(Debug, Clone)]
struct Conn {
    role: Role,
    cfg: LinkConfig,
    state: LinkState,
    session: u32,
    peer: Option<PeerInfo>,
    reset_reply: bool,
    probe: Probe,
    last_rx_frame: u64,
    pong_pending: Option<u32>,
    ping_seq: u32,
    tx_busy_until: u64,
    tx: Sender,
    rx: Receiver,
    events: VecDeque<Event>,
    stats: Stats,
    reported_versions: Vec<u8>,
    reported_types: Vec<u8>,
}

/// A 32-bit mix (from SplitMix64) of the nonce, the creation time and the role.
fn session_nonce(nonce: u32, now_ms: u64, role: Role) -> u32 {
    let mut z =
        (u64::from(nonce) << 32 ^ now_ms ^ (role as u64) << 63).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

impl Endpoint {
    /// A new endpoint, connecting: it starts the handshake at the first [`Endpoint::poll_transmit`].
    pub fn new(role: Role, cfg: LinkConfig, now_ms: u64) -> Self {
        let cfg = cfg.sanitized();
        let tx = Sender {
            ceiling: cfg.max_payload,
            peer_window: 1,
            loss: send::LossEstimate::with_initial_payload(cfg.initial_payload),
            ..Sender::default()
        };
        Self {
            decoder: Decoder::new(cfg.max_payload),
            last_rx_byte: now_ms,
            conn: Conn {
                role,
                session: session_nonce(cfg.nonce, now_ms, role),
                cfg,
                state: LinkState::Connecting,
                peer: None,
                reset_reply: false,
                probe: Probe {
                    due: true,
                    last_sent: now_ms,
                    ..Probe::default()
                },
                last_rx_frame: now_ms,
                pong_pending: None,
                ping_seq: 0,
                tx_busy_until: now_ms,
                tx,
                rx: Receiver::default(),
                events: VecDeque::new(),
                stats: Stats::default(),
                reported_versions: Vec::new(),
                reported_types: Vec::new(),
            },
        }
    }

    pub fn role(&self) -> Role {
        self.conn.role
    }

    pub fn state(&self) -> LinkState {
        self.conn.state
    }

    pub fn stats(&self) -> Stats {
        self.conn.stats
    }

    /// The effective (max payload, window) once the peer's capabilities are known.
    pub fn negotiated(&self) -> Option<(usize, u16)> {
        self.conn
            .peer
            .map(|_| (self.conn.max_payload(), self.conn.window()))
    }

    /// The longest frame [`Endpoint::poll_transmit`] can hand out, on the wire: wait until the
    /// port can take this many bytes before polling, so that no frame waits in a queue of ours.
    pub fn max_frame_len(&self) -> usize {
        crate::frame::max_encoded_len(self.conn.max_payload())
    }

    /// The payload length the next new chunk would have: the adaptive frame size, for diagnostics.
    pub fn chunk_len(&self) -> usize {
        self.conn
            .tx
            .chunk_len(self.conn.max_payload(), &self.conn.cfg)
    }

    /// Queues `data` as transfer `id`. Ids are the application's (e.g. a read batch number); if the
    /// receiver holds a prefix of `id` with the same length, only the rest is sent.
    pub fn send(&mut self, id: u32, data: Vec<u8>) -> Result<(), SendError> {
        if self.conn.state == LinkState::Down {
            return Err(SendError::LinkDown);
        }
        let total =
            u32::try_from(data.len()).map_err(|_| SendError::TooLong { len: data.len() })?;
        if self.conn.tx.transfer(id).is_some() {
            return Err(SendError::DuplicateId(id));
        }
        self.conn.tx.transfers.push_back(OutTransfer {
            id,
            data,
            state: OutState::NeedOffer,
            acked: 0,
            total,
        });
        Ok(())
    }

    /// Ids of transfers sent but not yet delivered, in queue order: what to send again on the next
    /// connection.
    pub fn pending_sends(&self) -> impl Iterator<Item = u32> + '_ {
        self.conn.tx.transfers.iter().map(|t| t.id)
    }

    /// The length of outgoing transfer `id`, while it is not yet delivered.
    pub fn outgoing_total(&self, id: u32) -> Option<u32> {
        let t = self.conn.tx.transfer(id)?;
        u32::try_from(t.data.len()).ok()
    }

    /// The prefix held of unfinished incoming transfer `id`: (offset, bytes).
    pub fn partial(&self, id: u32) -> Option<(u32, &[u8])> {
        let p = self.conn.rx.partials.get(&id)?;
        Some((p.data.len() as u32, p.data.as_slice()))
    }

    /// Every unfinished incoming transfer, to keep across a reconnect.
    pub fn partials(&self) -> impl Iterator<Item = Partial<'_>> + '_ {
        self.conn.rx.partials.iter().map(|(&id, p)| Partial {
            id,
            total: p.total,
            data: &p.data,
        })
    }

    /// Seeds this endpoint with the prefix of incoming transfer `id` held from an earlier
    /// connection; when the peer offers `id` with the same total, it resumes after `data`.
    pub fn import_partial(
        &mut self,
        id: u32,
        total: u32,
        data: Vec<u8>,
    ) -> Result<(), ImportError> {
        if total > self.conn.cfg.max_transfer_len {
            return Err(ImportError::TooLarge { total });
        }
        if data.len() > total as usize {
            return Err(ImportError::LongerThanTotal {
                held: data.len(),
                total,
            });
        }
        self.conn.rx.partials.insert(id, InTransfer { total, data });
        Ok(())
    }

    /// Records that incoming transfer `id` of `total` bytes was delivered on an earlier
    /// connection: if the peer offers it again it is told so and it is not delivered twice.
    pub fn mark_delivered(&mut self, id: u32, total: u32) {
        self.conn.rx.partials.remove(&id);
        self.conn.rx.delivered.insert(id, total);
    }

    /// The port reported a disconnect (on Linux a pulled USB adapter reads `Ok(0)` forever).
    pub fn link_lost(&mut self) {
        self.conn.go_down();
    }

    /// Bytes read from the port, in any split.
    pub fn handle_input(&mut self, bytes: &[u8], now_ms: u64) {
        if self.conn.state == LinkState::Down || bytes.is_empty() {
            return;
        }
        self.last_rx_byte = now_ms;
        let mut input = bytes;
        loop {
            match self.decoder.feed(input) {
                Feed::Consumed => break,
                Feed::Frame { frame, remaining } => {
                    self.conn.on_frame(frame.header, frame.payload, now_ms);
                    input = remaining;
                }
                Feed::Error { error, remaining } => {
                    self.conn.on_frame_error(error);
                    input = remaining;
                }
            }
            if self.conn.state == LinkState::Down {
                break;
            }
        }
    }

    /// Appends at most one frame to `out` and returns whether it did. Call it whenever the port can
    /// take a frame (up to `max_encoded_len(max_payload)` bytes); acknowledgements and control
    /// frames come before data, so keep the port's own queue short.
    pub fn poll_transmit(&mut self, now_ms: u64, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let sent = self.conn.transmit(now_ms, out);
        if sent {
            let len = out.len() - start;
            self.conn.stats.frames_sent += 1;
            self.conn.stats.bytes_sent += len as u64;
        }
        sent
    }

    /// The earliest time [`Endpoint::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        let c = &self.conn;
        if c.state == LinkState::Down {
            return None;
        }
        let mut t = c.probe_deadline();
        if self.decoder.has_partial() {
            let gap = self.last_rx_byte.saturating_add(c.cfg.char_gap_ms);
            t = Some(t.map_or(gap, |t| t.min(gap)));
        }
        if c.state == LinkState::Up {
            if let Some(r) = c.tx.rto_deadline(&c.cfg) {
                t = Some(t.map_or(r, |t| t.min(r)));
            }
        }
        t
    }

    /// Runs the timers due at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.conn.state == LinkState::Down {
            return;
        }
        if self.decoder.has_partial()
            && now_ms >= self.last_rx_byte.saturating_add(self.conn.cfg.char_gap_ms)
        {
            self.decoder.discard_partial();
            self.conn.stats.gap_discards += 1;
        }
        self.conn.on_timeout(now_ms);
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.conn.events.pop_front()
    }
}

impl Conn {
    fn max_payload(&self) -> usize {
        let mut m = self.cfg.max_payload;
        if let Some(p) = self.peer {
            m = m.min(p.max_payload);
        }
        if let Some(rate) = self.cfg.line_rate {
            // A frame should take at most a quarter of the ACK timeout to send.
            let cap = (u64::from(rate) * self.cfg.ack_timeout_ms / 4000) as usize;
            m = m.min(cap.max(self.cfg.min_payload));
        }
        m.max(1)
    }

    fn window(&self) -> u16 {
        let peer = self.peer.map_or(1, |p| p.window);
        self.cfg.window.min(peer).min(self.tx.peer_window).max(1)
    }

    fn go_down(&mut self) {
        if self.state != LinkState::Down {
            self.state = LinkState::Down;
            self.events.push_back(Event::LinkDown);
        }
    }

    fn probe_timeout(&self) -> u64 {
        match self.state {
            LinkState::Up => self.cfg.ack_timeout_ms,
            _ => self.cfg.initial_rto_ms,
        }
    }

    /// When the probe timer next needs attention; `None` while a probe waits to be sent.
    fn probe_deadline(&self) -> Option<u64> {
        if self.probe.due || self.reset_reply {
            return None;
        }
        Some(match (self.probe.outstanding_since, self.state) {
            (Some(t), _) => t.saturating_add(self.probe_timeout()),
            (None, LinkState::Up) => self.last_rx_frame.saturating_add(self.cfg.keepalive_ms),
            (None, _) => self.probe.last_sent.saturating_add(self.probe_timeout()),
        })
    }

    fn on_timeout(&mut self, now: u64) {
        if self.state == LinkState::Up && self.tx.on_rto(now, &self.cfg) {
            self.stats.timeouts += 1;
        }
        if self.probe.due || self.reset_reply {
            return;
        }
        match self.probe.outstanding_since {
            Some(t) if now >= t.saturating_add(self.probe_timeout()) => {
                self.probe.outstanding_since = None;
                self.probe.missed += 1;
                if self.probe.missed >= self.cfg.keepalive_misses {
                    self.go_down();
                } else {
                    self.probe.due = true;
                }
            }
            Some(_) => {}
            None => {
                if self.probe_deadline().is_some_and(|d| now >= d) {
                    self.probe.due = true;
                }
            }
        }
    }

    /// When the frame being handed out will have left the port, if the line rate is known.
    fn departure(&mut self, now: u64, wire_len: usize) -> u64 {
        match self.cfg.line_rate {
            Some(rate) => {
                let start = now.max(self.tx_busy_until);
                let dur = (wire_len as u64 * 1000).div_ceil(u64::from(rate));
                self.tx_busy_until = start.saturating_add(dur);
                self.tx_busy_until
            }
            None => now,
        }
    }

    fn emit_frame(&mut self, header: Header, payload: &[u8], out: &mut Vec<u8>) -> Sent {
        match encode_frame_vec(&header, payload, out) {
            Ok(()) => Sent::Frame,
            Err(_) => Sent::Nothing,
        }
    }

    fn transmit(&mut self, now: u64, out: &mut Vec<u8>) -> bool {
        if self.state == LinkState::Down {
            return false;
        }
        let start = out.len();
        let sent = self.transmit_inner(now, out);
        let wire_len = out.len() - start;
        match sent {
            Sent::Nothing => return false,
            Sent::Frame => {
                // Acks and probes occupy the port too: later data frames leave after them.
                self.departure(now, wire_len);
            }
            Sent::Slot(i) => {
                let departure = self.departure(now, wire_len);
                self.tx.loss.on_sent(wire_len);
                if let Some(s) = self.tx.inflight.get_mut(i) {
                    s.sent_at = departure;
                }
            }
        }
        true
    }

    fn transmit_inner(&mut self, now: u64, out: &mut Vec<u8>) -> Sent {
        let connecting_probe = self.state == LinkState::Connecting && self.probe.due;
        if self.reset_reply || connecting_probe {
            let info = ResetInfo {
                session: self.session,
                echo: self.peer.map(|p| p.session),
                up: self.state == LinkState::Up,
                max_payload: self.cfg.max_payload as u16,
                window: self.cfg.window,
            };
            self.reset_reply = false;
            if connecting_probe {
                self.probe.due = false;
                self.probe.outstanding_since = Some(now);
                self.probe.last_sent = now;
            }
            let header = Header::new(FrameType::Reset, self.session).with_flags(info.flags());
            return self.emit_frame(header, &info.encode(), out);
        }
        if let Some(seq) = self.pong_pending.take() {
            return self.emit_frame(Header::new(FrameType::Pong, seq), &[], out);
        }
        if self.rx.ack_pending && self.peer.is_some() {
            self.rx.ack_pending = false;
            let ack = self.rx.ack(self.cfg.window);
            return self.emit_frame(Header::new(FrameType::Ack, ack.next), &ack.encode(), out);
        }
        if self.state != LinkState::Up {
            return Sent::Nothing;
        }
        if self.probe.due {
            self.probe.due = false;
            self.probe.outstanding_since = Some(now);
            self.probe.last_sent = now;
            self.ping_seq = self.ping_seq.wrapping_add(1);
            return self.emit_frame(Header::new(FrameType::Ping, self.ping_seq), &[], out);
        }
        if let Some(i) = self.tx.inflight.iter().position(|s| s.lost) {
            return self.send_slot(i, out);
        }
        if self.tx.inflight.len() < usize::from(self.window()) {
            let max_payload = self.max_payload();
            if let Some(item) = self.tx.next_item(max_payload, &self.cfg) {
                self.tx.inflight.push_back(Slot {
                    item,
                    acked: false,
                    lost: false,
                    sent_at: now,
                    tx_order: 0,
                    transmissions: 0,
                });
                let i = self.tx.inflight.len() - 1;
                return self.send_slot(i, out);
            }
        }
        Sent::Nothing
    }

    /// Encodes `inflight[i]` and records its transmission.
    fn send_slot(&mut self, i: usize, out: &mut Vec<u8>) -> Sent {
        let seq = self.tx.base.wrapping_add(i as u32);
        let Some(slot) = self.tx.inflight.get(i) else {
            return Sent::Nothing;
        };
        let item = slot.item;
        let resend = slot.transmissions > 0;
        let start = out.len();
        let ok = match item {
            Item::Control(c) => {
                let mut buf = [0u8; CONTROL_MAX_LEN];
                let n = c.encode(&mut buf);
                let header = Header::new(FrameType::Data, seq).with_flags(FLAG_CONTROL);
                encode_frame_vec(&header, &buf[..n], out).is_ok()
            }
            Item::Chunk { id, offset, len } => {
                let bytes = self.tx.transfer(id).and_then(|t| {
                    t.data
                        .get(offset as usize..(offset as usize).saturating_add(len as usize))
                });
                match bytes {
                    Some(b) => encode_frame_vec(&Header::new(FrameType::Data, seq), b, out).is_ok(),
                    None => false,
                }
            }
        };
        if !ok {
            // Cannot happen for frames this side built; never retry a frame that cannot be encoded.
            out.truncate(start);
            if let Some(s) = self.tx.inflight.get_mut(i) {
                s.acked = true;
                s.lost = false;
            }
            return Sent::Nothing;
        }
        self.tx.tx_counter += 1;
        let order = self.tx.tx_counter;
        if let Some(s) = self.tx.inflight.get_mut(i) {
            s.lost = false;
            s.tx_order = order;
            s.transmissions = s.transmissions.saturating_add(1);
        }
        if let Item::Chunk { len, .. } = item {
            self.stats.chunk_bytes_sent += u64::from(len);
            if resend {
                self.stats.chunk_bytes_resent += u64::from(len);
            }
        }
        if resend {
            self.stats.retransmissions += 1;
        }
        Sent::Slot(i)
    }

    fn peer_error(&mut self, e: PeerError) {
        self.events.push_back(Event::PeerError(e));
    }

    fn on_frame_error(&mut self, error: FrameError) {
        match error {
            FrameError::UnsupportedVersion(v) => {
                if !self.reported_versions.contains(&v) {
                    self.reported_versions.push(v);
                    self.peer_error(PeerError::UnsupportedVersion(v));
                }
            }
            // Damage on the line: the CRC caught it; SACK or a timeout recovers the frame.
            _ => self.stats.bad_frames += 1,
        }
    }

    fn on_frame(&mut self, header: Header, payload: &[u8], now: u64) {
        self.stats.frames_received += 1;
        self.last_rx_frame = now;
        self.probe.outstanding_since = None;
        self.probe.missed = 0;
        let code = header.frame_type.to_u8();
        if header.frame_type == FrameType::Reset {
            match ResetInfo::decode(header.seq, header.flags, payload) {
                Some(info)
                    if usize::from(info.max_payload) < MIN_LINK_PAYLOAD || info.window == 0 =>
                {
                    self.peer_error(PeerError::BadReset {
                        max_payload: info.max_payload,
                        window: info.window,
                    })
                }
                Some(info) => self.on_reset(info),
                None => self.peer_error(PeerError::Malformed { frame_type: code }),
            }
            return;
        }
        if self.peer.is_none() {
            // Sequence numbers mean nothing before the handshake: these are from an older session.
            return;
        }
        match header.frame_type {
            FrameType::Data => {
                if let Some(rate) = self.cfg.line_rate {
                    let wire = (payload.len() + FRAME_OVERHEAD) as u64;
                    self.tx.ack_delay_ms = (wire * 1000).div_ceil(u64::from(rate));
                }
                self.on_data(header.seq, header.flags, payload);
            }
            FrameType::Ack => match Ack::decode(header.seq, payload) {
                Some(ack) => self.on_ack(&ack, now),
                None => self.peer_error(PeerError::Malformed { frame_type: code }),
            },
            FrameType::Ping => self.pong_pending = Some(header.seq),
            FrameType::Pong => {}
            _ => {
                if !self.reported_types.contains(&code) {
                    self.reported_types.push(code);
                    self.peer_error(PeerError::UnknownFrameType(code));
                }
            }
        }
    }

    fn on_reset(&mut self, info: ResetInfo) {
        let known = self.peer.map(|p| p.session);
        let new_peer = known != Some(info.session);
        let knows_us = info.echo == Some(self.session);
        // Once up, the peer only sends `Reset` to answer one, always echoing us: a `Reset` that
        // does not is from a peer that restarted (with a new session, or, after a reboot with an
        // unlucky nonce, the same one). The link is FIFO, so no older `Reset` can still be on its
        // way.
        let restarted = known.is_some() && (new_peer || (self.state == LinkState::Up && !knows_us));
        if restarted {
            // Its sequence spaces start over, and so do ours.
            self.tx.restart();
            self.rx.restart();
            self.stats.peer_restarts += 1;
            self.state = LinkState::Connecting;
            self.pong_pending = None;
        }
        if new_peer {
            self.peer = Some(PeerInfo {
                session: info.session,
                max_payload: usize::from(info.max_payload).min(MAX_PAYLOAD_LIMIT),
                window: info.window.clamp(1, SACK_BITS as u16),
            });
            self.tx.peer_window = info.window.clamp(1, SACK_BITS as u16);
        }
        if knows_us && self.state == LinkState::Connecting {
            self.state = LinkState::Up;
            self.probe = Probe {
                last_sent: self.probe.last_sent,
                ..Probe::default()
            };
            self.events.push_back(Event::LinkUp {
                max_payload: self.max_payload(),
                window: self.window(),
            });
        }
        if new_peer || !info.up || !knows_us {
            self.reset_reply = true;
        }
    }

    fn on_ack(&mut self, ack: &Ack, now: u64) {
        let outcome = self.tx.on_ack(ack, now, &self.cfg);
        for (id, offset, total) in outcome.progress {
            self.progress(id, Direction::Outgoing, offset, total);
        }
        for id in outcome.delivered {
            self.events.push_back(Event::Delivered { id });
        }
    }

    /// Queues a progress event, replacing one for the same transfer still waiting at the back.
    fn progress(&mut self, id: u32, direction: Direction, offset: u32, total: u32) {
        if let Some(Event::Progress {
            id: i,
            direction: d,
            offset: o,
            ..
        }) = self.events.back_mut()
        {
            if *i == id && *d == direction {
                *o = offset;
                return;
            }
        }
        self.events.push_back(Event::Progress {
            id,
            direction,
            offset,
            total,
        });
    }

    fn on_data(&mut self, seq: u32, flags: u8, payload: &[u8]) {
        match self.rx.place(seq, flags, payload, self.cfg.window) {
            Placement::Duplicate => self.stats.duplicates += 1,
            Placement::OutOfWindow | Placement::Stored => {}
        }
        while let Some((flags, payload)) = self.rx.pop_in_order() {
            if flags & FLAG_CONTROL != 0 {
                match Control::decode(&payload) {
                    Some(c) => self.on_control(c),
                    None => self.peer_error(PeerError::Malformed {
                        frame_type: FrameType::Data.to_u8(),
                    }),
                }
            } else {
                self.on_chunk(&payload);
            }
        }
    }

    fn on_control(&mut self, c: Control) {
        match c {
            Control::Offer { id, total } => self.on_offer(id, total),
            Control::Accept { id, offset } => self.on_accept(id, offset),
            Control::Reject { id, reason } => {
                if self
                    .tx
                    .transfer(id)
                    .is_some_and(|t| t.state == OutState::Offered)
                {
                    self.tx.transfers.retain(|t| t.id != id);
                    self.events.push_back(Event::Rejected { id, reason });
                }
            }
            Control::Begin { id, offset } => {
                let held = self.rx.partials.get_mut(&id).map(|p| {
                    let held = p.data.len();
                    if offset as usize <= held {
                        // The sender is authoritative on what follows `offset`.
                        p.data.truncate(offset as usize);
                    }
                    held as u32
                });
                match held {
                    Some(h) if offset <= h => self.rx.current = Some(id),
                    Some(held) => {
                        self.rx.current = None;
                        self.peer_error(PeerError::BeginMismatch { id, offset, held });
                    }
                    None => {
                        self.rx.current = None;
                        self.peer_error(PeerError::UnknownTransfer { id });
                    }
                }
            }
        }
    }

    fn on_offer(&mut self, id: u32, total: u32) {
        let reply = if self.rx.delivered.get(&id) == Some(&total) {
            Control::Accept { id, offset: total }
        } else if total > self.cfg.max_transfer_len {
            Control::Reject {
                id,
                reason: RejectReason::TooLarge,
            }
        } else {
            self.rx.delivered.remove(&id);
            let held = match self.rx.partials.get(&id) {
                Some(p) if p.total == total => p.data.len() as u32,
                _ => 0,
            };
            if held == 0 {
                let data = Vec::with_capacity((total as usize).min(64 << 10));
                self.rx.partials.insert(id, InTransfer { total, data });
            } else {
                self.events.push_back(Event::Resumed {
                    id,
                    direction: Direction::Incoming,
                    offset: held,
                });
            }
            if held == total {
                self.complete(id);
            }
            Control::Accept { id, offset: held }
        };
        self.tx.controls.push_back(reply);
    }

    fn on_accept(&mut self, id: u32, offset: u32) {
        let Some(t) = self.tx.transfer_mut(id) else {
            return;
        };
        if t.state != OutState::Offered {
            return;
        }
        if offset >= t.total {
            self.tx.transfers.retain(|t| t.id != id);
            self.events.push_back(Event::Delivered { id });
            return;
        }
        t.state = OutState::Streaming {
            next: offset,
            begun: false,
        };
        t.acked = offset;
        if offset > 0 {
            self.events.push_back(Event::Resumed {
                id,
                direction: Direction::Outgoing,
                offset,
            });
        }
    }

    fn on_chunk(&mut self, payload: &[u8]) {
        let Some(id) = self.rx.current else {
            return;
        };
        let Some(p) = self.rx.partials.get_mut(&id) else {
            self.rx.current = None;
            self.peer_error(PeerError::UnknownTransfer { id });
            return;
        };
        if p.data.len() + payload.len() > p.total as usize {
            self.rx.current = None;
            self.peer_error(PeerError::Overrun { id });
            return;
        }
        p.data.extend_from_slice(payload);
        let (held, total) = (p.data.len() as u32, p.total);
        if held == total {
            self.rx.current = None;
            self.complete(id);
        } else {
            self.progress(id, Direction::Incoming, held, total);
        }
    }

    fn complete(&mut self, id: u32) {
        if let Some(p) = self.rx.partials.remove(&id) {
            self.rx.delivered.insert(id, p.total);
            self.events
                .push_back(Event::TransferComplete { id, data: p.data });
        }
    }
}
