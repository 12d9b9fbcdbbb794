//! One dock's session with whatever handheld sits in its cradle: a sans-IO state machine over a
//! transfer-layer [`Endpoint`] (Role::Dock) that makes the gateway's decisions (PROTOCOL.md §3.8).
//!
//! The caller moves bytes between the port and [`DockSession`] and passes the time in (it is a
//! [`Station`], so a test drives it over `firmware_protocol::sim` with no port at all). Database work
//! happens through [`SyncService`]'s blocking calls, on the caller's thread: a `ReadAck` is queued
//! only after `upload_blocking` returned, i.e. after the group commit.
//!
//! A connection ends when the endpoint goes down (probes unanswered, or the port reported a
//! disconnect) or the handheld's endpoint restarted (it reconnected before ours noticed). Either
//! way the endpoint is replaced by a fresh one, and the partial uploads it held are kept on the
//! [`DockBoard`] under the device id, to be imported when that device says `Hello` again: the upload
//! then resumes where it stopped instead of starting over.

use super::{
    code_table, protocol_time, route_data, DockBoard, HeldPartial, SyncService, Uploader, Via,
};
use chrono::{Duration, NaiveDateTime};
use firmware_protocol::crc::crc32c;
use firmware_protocol::message::{self as msg, error_code, ByeReason, Compression, Message};
use firmware_protocol::sim::Station;
use firmware_protocol::transfer::{Direction, Endpoint, Event, LinkConfig, LinkState, Role};
use std::collections::VecDeque;

/// Transfer ids with this bit set carry content that is the same bytes whenever the id is offered
/// again (read batches, route transfers): only those may resume from a prefix kept from an earlier
/// connection. Session messages use small per-connection ids.
pub const STABLE_ID: u32 = 0x8000_0000;

/// The transfer id of a route transfer: a stable id derived from its bytes, so that an interrupted
/// download resumes on the next docking and a changed route never resumes from the old one's prefix.
pub fn route_transfer_id(bytes: &[u8]) -> u32 {
    STABLE_ID | (crc32c(bytes) & !STABLE_ID)
}

/// The link settings both reference ends use: frames up to 4 KiB on a clean line (the adaptive
/// chunk size shrinks them under errors), a full window.
pub fn link_config(baud: u32, nonce: u32) -> LinkConfig {
    LinkConfig {
        max_payload: 4096,
        window: 32,
        line_rate: Some(baud / 10),
        nonce,
        ..LinkConfig::default()
    }
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No handheld, or one whose `Hello` has not arrived.
    AwaitHello,
    /// Welcomed; its pending reads are coming up.
    Uploading,
    /// Routes, codes and orders are going down.
    Downloading,
    /// Our `Bye` is sent; waiting for the handheld's.
    Closing,
    /// The handheld said `Bye { done }`.
    Done,
    /// Unknown device, no common version, or a deadline expired: `Error` and `Bye` sent, nothing
    /// else is done until the handheld starts over with `Hello`.
    Refused,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::AwaitHello => "connected",
            Phase::Uploading => "uploading",
            Phase::Downloading => "downloading",
            Phase::Closing => "closing",
            Phase::Done => "done",
            Phase::Refused => "refused",
        }
    }
}

/// A route announced to the handheld, waiting for its `RouteAccept`.
struct OfferedRoute {
    transfer_id: u32,
    bytes: Vec<u8>,
    route_id: String,
    cycle_id: String,
    stops: u32,
}

/// Something worth telling the operator (the serial thread logs these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Hello {
        device: String,
        firmware: String,
        pending_reads: u32,
    },
    Refused {
        device: String,
        reason: String,
    },
    Stored {
        device: String,
        reads: usize,
        stored: usize,
        flagged: usize,
        already_received: usize,
        refused: usize,
        up_to_seq: Option<u64>,
    },
    StoreFailed {
        device: String,
        error: String,
    },
    RouteResumed {
        transfer_id: u32,
        from: u32,
        total: u32,
    },
    UploadResumed {
        transfer_id: u32,
        from: u32,
    },
    Finished {
        device: String,
    },
    /// The handheld ended the session early with `Bye` (cancelled, shutting down, error...).
    Ended {
        device: String,
        reason: String,
    },
    /// A handheld that had said `Hello` is gone (link down, or its endpoint restarted).
    Disconnected {
        device: String,
        phase: Phase,
    },
    /// A waiting state made no progress within its deadline: `Error { 10 }` and `Bye` were sent.
    Expired {
        device: Option<String>,
        waiting_for: &'static str,
        secs: u64,
    },
    PeerError(String),
}

/// What the session waits for, and until when (dock clock, ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deadline {
    at_ms: u64,
    waiting_for: &'static str,
    secs: u64,
}

/// How long each waiting state of a docking may go without progress (`[docks]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub hello_secs: u64,
    pub reads_secs: u64,
    pub accept_secs: u64,
    pub transfer_secs: u64,
    pub bye_secs: u64,
}

impl Deadlines {
    pub fn from_config(c: &super::DockConfig) -> Self {
        Deadlines {
            hello_secs: c.hello_timeout_secs,
            reads_secs: c.reads_timeout_secs,
            accept_secs: c.accept_timeout_secs,
            transfer_secs: c.transfer_timeout_secs,
            bye_secs: c.bye_timeout_secs,
        }
    }
}

/// How long the dock lets its `Error` and `Bye` go out after a deadline expired before it starts a
/// fresh connection (abandoning transfers still queued).
const LINGER_MS: u64 = 3_000;

/// The dock's side of a docking. See the module documentation.
pub struct DockSession {
    service: SyncService,
    board: DockBoard,
    /// Name on the board (the port path).
    name: String,
    baud: u32,
    /// District local time at `now_ms = 0`: the only wall-clock reading, taken by the caller.
    epoch: NaiveDateTime,
    endpoint: Endpoint,
    endpoints_made: u32,
    restarts_seen: u64,
    phase: Phase,
    device: Option<String>,
    /// The handheld's state identity (its `Hello`).
    state_id: u64,
    compression: Compression,
    pending_reads: u64,
    reads_received: u64,
    next_id: u32,
    offered: VecDeque<OfferedRoute>,
    orders: Vec<msg::AccountOrder>,
    awaiting_accept: Option<u32>,
    bye_id: Option<u32>,
    notes: VecDeque<Note>,
    deadlines: Deadlines,
    deadline: Option<Deadline>,
    /// After an expiry: when to start a fresh connection.
    linger_until: Option<u64>,
}

impl DockSession {
    /// A session on dock `name` (its port path), clock at `now_ms`, which is `now` in district
    /// local time.
    pub fn new(
        service: SyncService,
        board: DockBoard,
        name: &str,
        baud: u32,
        now: NaiveDateTime,
        now_ms: u64,
    ) -> Self {
        let epoch = now - Duration::milliseconds(now_ms as i64);
        let nonce = crc32c(name.as_bytes()) ^ now.and_utc().timestamp_subsec_nanos();
        let deadlines = Deadlines::from_config(service.config().docks());
        let s = Self {
            endpoint: Endpoint::new(Role::Dock, link_config(baud, nonce), now_ms),
            service,
            board,
            name: name.to_string(),
            baud,
            epoch,
            endpoints_made: 1,
            restarts_seen: 0,
            phase: Phase::AwaitHello,
            device: None,
            state_id: 0,
            compression: Compression::NONE,
            pending_reads: 0,
            reads_received: 0,
            next_id: 1,
            offered: VecDeque::new(),
            orders: Vec::new(),
            awaiting_accept: None,
            bye_id: None,
            notes: VecDeque::new(),
            deadlines,
            deadline: None,
            linger_until: None,
        };
        s.set_state("idle");
        s
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn device(&self) -> Option<&str> {
        self.device.as_deref()
    }

    pub fn link_state(&self) -> LinkState {
        self.endpoint.state()
    }

    /// True while a handheld is mid-exchange (a stop now would abandon a transfer).
    pub fn busy(&self) -> bool {
        matches!(
            self.phase,
            Phase::Uploading | Phase::Downloading | Phase::Closing
        )
    }

    pub fn poll_note(&mut self) -> Option<Note> {
        self.notes.pop_front()
    }

    fn now(&self, now_ms: u64) -> NaiveDateTime {
        self.epoch + Duration::milliseconds(now_ms as i64)
    }

    /// Waits for `waiting_for` at most `secs` from `now_ms`.
    fn arm(&mut self, now_ms: u64, waiting_for: &'static str, secs: u64) {
        self.deadline = Some(Deadline {
            at_ms: now_ms.saturating_add(secs.saturating_mul(1000)),
            waiting_for,
            secs,
        });
    }

    /// Something moved: the current wait starts again from `now_ms`.
    fn progressed(&mut self, now_ms: u64) {
        if let Some(d) = self.deadline {
            self.arm(now_ms, d.waiting_for, d.secs);
        }
    }

    /// A deadline passed: tell the handheld why, end the session, and start a fresh connection
    /// shortly (nothing unacknowledged was acknowledged; partial uploads are kept).
    fn expire(&mut self, d: Deadline, now_ms: u64) {
        self.deadline = None;
        let text = format!(
            "no {} within {} s: the dock ends this docking; dock again",
            d.waiting_for, d.secs
        );
        self.notes.push_back(Note::Expired {
            device: self.device.clone(),
            waiting_for: d.waiting_for,
            secs: d.secs,
        });
        self.board
            .update(&self.name, |s| s.last_error = Some(text.clone()));
        self.error_and_bye(error_code::TIMEOUT, text);
        self.phase = Phase::Refused;
        self.set_state("refused");
        self.linger_until = Some(now_ms + LINGER_MS);
    }

    fn set_state(&self, state: &str) {
        let (device, now) = (self.device.clone(), self.epoch);
        self.board.update(&self.name, |s| {
            s.state = state.to_string();
            s.device = device;
            s.since.get_or_insert(now);
        });
    }

    /// The port reported a disconnect (adapter pulled): end the connection now.
    pub fn port_lost(&mut self, now_ms: u64) {
        self.endpoint.link_lost();
        self.pump(now_ms);
    }

    /// Ends the session for a shutdown: tells a connected handheld `Bye { shutting_down }` (queued;
    /// the caller flushes what it can). Nothing unacknowledged is acknowledged.
    pub fn shut_down(&mut self) {
        if self.endpoint.state() == LinkState::Up && self.device.is_some() {
            self.send_message(&Message::Bye {
                reason: ByeReason::ShuttingDown,
            });
        }
        self.keep_partials();
        self.set_state("stopped");
    }

    fn send_message(&mut self, m: &Message) -> Option<u32> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1) & !STABLE_ID;
        match self.endpoint.send(id, m.to_vec()) {
            Ok(()) => Some(id),
            Err(e) => {
                tracing::debug!(dock = %self.name, error = %e, "message not sent");
                None
            }
        }
    }

    fn error_and_bye(&mut self, code: u16, text: String) {
        self.send_message(&Message::Error {
            code,
            text: super::fit(&text, msg::limits::NOTE),
        });
        self.send_message(&Message::Bye {
            reason: ByeReason::Error,
        });
    }

    /// Saves the current endpoint's unfinished uploads under the device id.
    fn keep_partials(&self) {
        let Some(device) = &self.device else { return };
        let key = partials_key(device, self.state_id);
        let held: Vec<HeldPartial> = self
            .endpoint
            .partials()
            .filter(|p| p.id & STABLE_ID != 0 && !p.data.is_empty())
            .map(|p| HeldPartial {
                id: p.id,
                total: p.total,
                data: p.data.to_vec(),
            })
            .collect();
        if !held.is_empty() {
            self.board.keep_partials(&key, held);
        }
    }

    /// A new connection: fresh endpoint, application state back to waiting for `Hello`.
    fn reconnect(&mut self, now_ms: u64) {
        self.keep_partials();
        // An idle cradle reconnects every few seconds: only a handheld that said Hello is news.
        if let Some(device) = self.device.clone() {
            self.notes.push_back(Note::Disconnected {
                device,
                phase: self.phase,
            });
        }
        self.deadline = None;
        self.linger_until = None;
        self.endpoints_made = self.endpoints_made.wrapping_add(1);
        let nonce =
            crc32c(self.name.as_bytes()) ^ self.endpoints_made.rotate_left(16) ^ now_ms as u32;
        self.endpoint = Endpoint::new(Role::Dock, link_config(self.baud, nonce), now_ms);
        self.restarts_seen = 0;
        self.phase = Phase::AwaitHello;
        self.device = None;
        self.state_id = 0;
        self.offered.clear();
        self.awaiting_accept = None;
        self.bye_id = None;
        self.next_id = 1;
        self.pending_reads = 0;
        self.reads_received = 0;
        self.set_state("idle");
    }

    /// Handles everything the endpoint reported.
    fn pump(&mut self, now_ms: u64) {
        while let Some(ev) = self.endpoint.poll_event() {
            match ev {
                Event::LinkUp { .. } => {
                    self.set_state("connected");
                    if self.phase == Phase::AwaitHello {
                        self.arm(now_ms, "Hello", self.deadlines.hello_secs);
                    }
                }
                Event::TransferComplete { id, data } => self.on_transfer(id, &data, now_ms),
                Event::Delivered { id } => {
                    if self.bye_id == Some(id) && self.phase == Phase::Refused {
                        self.set_state("refused");
                    }
                    if id & STABLE_ID != 0 {
                        self.board.update(&self.name, |s| s.routes_sent += 1);
                    }
                    if matches!(self.phase, Phase::Downloading | Phase::Closing) {
                        self.progressed(now_ms);
                    }
                }
                Event::Progress {
                    direction, offset, ..
                } => {
                    let waiting_on_it = match direction {
                        Direction::Incoming => {
                            matches!(self.phase, Phase::AwaitHello | Phase::Uploading)
                        }
                        Direction::Outgoing => {
                            matches!(self.phase, Phase::Downloading | Phase::Closing)
                                && self.awaiting_accept.is_none()
                        }
                    };
                    if waiting_on_it {
                        self.progressed(now_ms);
                    }
                    let off = u64::from(offset);
                    self.board.update(&self.name, |s| match direction {
                        Direction::Incoming => s.bytes_up = s.bytes_up.max(off),
                        Direction::Outgoing => s.bytes_down = s.bytes_down.max(off),
                    });
                }
                Event::Resumed {
                    id,
                    direction: Direction::Incoming,
                    offset,
                } => self.notes.push_back(Note::UploadResumed {
                    transfer_id: id,
                    from: offset,
                }),
                Event::Resumed {
                    id,
                    direction: Direction::Outgoing,
                    offset,
                } => {
                    let total = self
                        .endpoint
                        .outgoing_total(id)
                        .or_else(|| {
                            self.offered
                                .iter()
                                .find(|o| o.transfer_id == id)
                                .map(|o| o.bytes.len() as u32)
                        })
                        .unwrap_or(0);
                    self.notes.push_back(Note::RouteResumed {
                        transfer_id: id,
                        from: offset,
                        total,
                    })
                }
                Event::LinkDown => {
                    self.reconnect(now_ms);
                    return;
                }
                Event::PeerError(e) => {
                    let text = e.to_string();
                    self.board
                        .update(&self.name, |s| s.last_error = Some(text.clone()));
                    self.notes.push_back(Note::PeerError(text));
                }
                Event::Rejected { id, reason } => {
                    let text = format!("handheld refused transfer {id}: {reason:?}");
                    self.board
                        .update(&self.name, |s| s.last_error = Some(text.clone()));
                    self.notes.push_back(Note::PeerError(text));
                }
                _ => {}
            }
        }
        // The handheld's endpoint restarted (a new docking before ours noticed the old one end):
        // start a connection of our own, so that nothing queued for the old one is offered to it.
        if self.endpoint.stats().peer_restarts > self.restarts_seen {
            self.reconnect(now_ms);
        }
    }

    fn on_transfer(&mut self, id: u32, data: &[u8], now_ms: u64) {
        let m = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                let text = format!("transfer {id}: {e}");
                self.board
                    .update(&self.name, |s| s.last_error = Some(text.clone()));
                self.send_message(&Message::Error {
                    code: error_code::BAD_MESSAGE,
                    text: super::fit(&text, msg::limits::NOTE),
                });
                return;
            }
        };
        match (self.phase, m) {
            (_, Message::Hello(h)) => self.on_hello(h, now_ms),
            (Phase::Refused, _) => {}
            (Phase::Uploading | Phase::Downloading, Message::ReadBatch { reads }) => {
                self.on_reads(reads, now_ms)
            }
            (
                Phase::Downloading,
                Message::RouteAccept {
                    transfer_id,
                    resume_from,
                },
            ) => self.on_route_accept(transfer_id, resume_from, now_ms),
            (Phase::Downloading, Message::Error { code, text }) if code == error_code::NO_SPACE => {
                // The route cannot be loaded; go on without it.
                self.board.update(&self.name, |s| {
                    s.last_error = Some(format!("handheld has no space: {text}"))
                });
                if let Some(id) = self.awaiting_accept.take() {
                    self.offered.retain(|o| o.transfer_id != id);
                }
                self.offer_next(now_ms);
            }
            (_, Message::Error { code, text }) => {
                let text = format!("handheld error {code}: {text}");
                self.board
                    .update(&self.name, |s| s.last_error = Some(text.clone()));
                self.notes.push_back(Note::PeerError(text));
            }
            (_, Message::Bye { reason }) => {
                let done = reason == ByeReason::Done && self.phase == Phase::Closing;
                self.phase = if done { Phase::Done } else { Phase::AwaitHello };
                self.deadline = None;
                // A session the handheld ended early (cancelled, shutting down, an error) is not
                // a finished docking: what was not acknowledged stays on it.
                self.awaiting_accept = None;
                self.offered.clear();
                if let Some(device) = self.device.clone() {
                    self.notes.push_back(if done {
                        Note::Finished { device }
                    } else {
                        Note::Ended {
                            device,
                            reason: reason.name().unwrap_or("unknown").to_string(),
                        }
                    });
                }
                self.set_state(if self.phase == Phase::Done {
                    "done"
                } else {
                    "connected"
                });
            }
            (_, other) => {
                self.send_message(&Message::Error {
                    code: error_code::UNEXPECTED_MESSAGE,
                    text: format!("{} is not expected now", other.name()),
                });
            }
        }
    }

    fn on_hello(&mut self, h: msg::Hello, now_ms: u64) {
        // A Hello starts the session over (the handheld rebooted mid-docking).
        self.offered.clear();
        self.awaiting_accept = None;
        self.bye_id = None;
        self.reads_received = 0;
        self.deadline = None;
        self.linger_until = None;
        self.device = Some(h.device_id.clone());
        self.state_id = h.state_id;
        let now = self.now(now_ms);
        self.notes.push_back(Note::Hello {
            device: h.device_id.clone(),
            firmware: h.firmware_version.clone(),
            pending_reads: h.pending_reads,
        });
        let version = msg::SESSION_PROTOCOL_VERSION;
        if !h.protocol_versions.contains(&version) {
            self.refuse(
                error_code::UNSUPPORTED_VERSION,
                format!(
                    "this dock speaks protocol {version} only, the handheld {:?}: protocol 1 cannot \
                     tell a wiped handheld's reads from reads already received; update its firmware \
                     (its reads stay on it until then)",
                    h.protocol_versions
                ),
            );
            return;
        }
        if h.state_id == 0 {
            self.refuse(
                error_code::BAD_MESSAGE,
                "Hello carries no state id (protocol 2 needs a non-zero one)".into(),
            );
            return;
        }
        let from = Uploader {
            device_id: &h.device_id,
            state_id: h.state_id,
            via: Via::Serial,
        };
        let held_seq = match self
            .service
            .hello_blocking(from, Some(&h.firmware_version), now)
        {
            Ok(Some(held)) => held,
            Ok(None) => {
                self.refuse(
                    error_code::UNKNOWN_DEVICE,
                    format!("device {} is not registered with the District", h.device_id),
                );
                return;
            }
            Err(e) => {
                self.refuse(error_code::INTERNAL, format!("cannot check device: {e}"));
                return;
            }
        };
        for p in self
            .board
            .take_partials(&partials_key(&h.device_id, h.state_id))
        {
            if let Err(e) = self.endpoint.import_partial(p.id, p.total, p.data) {
                tracing::warn!(dock = %self.name, error = %e, "kept partial upload not usable");
            }
        }
        self.compression = h.compression.intersection(Compression::DEFLATE);
        let routes = match self.service.routes_for_blocking(&h.device_id, now) {
            Ok(r) => r,
            Err(e) => {
                let text = format!("cannot build routes: {e}");
                self.board
                    .update(&self.name, |s| s.last_error = Some(text.clone()));
                Vec::new()
            }
        };
        // The link's own values (PROTOCOL.md 2.1): Welcome states them, it does not set them.
        let (max_payload, window) = self
            .endpoint
            .negotiated()
            .unwrap_or((usize::from(h.max_payload), u16::from(h.window)));
        let welcome = msg::Welcome {
            protocol_version: version,
            max_payload: u16::try_from(max_payload).unwrap_or(u16::MAX),
            window: u8::try_from(window).unwrap_or(u8::MAX),
            compression: self.compression,
            server_time: protocol_time(now),
            assigned_routes: routes
                .iter()
                .take(msg::limits::ASSIGNED_ROUTES)
                .map(|r| super::fit(&r.route_id, msg::limits::ID))
                .collect(),
            held_seq,
        };
        self.send_message(&Message::Welcome(welcome));
        let compressed = self.compression.contains(Compression::DEFLATE);
        self.orders.clear();
        for f in &routes {
            let route = route_data(f);
            for s in &route.stops {
                for o in &s.field_orders {
                    self.orders.push(msg::AccountOrder {
                        account_id: s.account_id.clone(),
                        meter_id: s.meter_id.clone(),
                        order: o.clone(),
                    });
                }
            }
            let bytes = msg::encode_route_transfer(&route, compressed);
            self.offered.push_back(OfferedRoute {
                transfer_id: route_transfer_id(&bytes),
                bytes,
                route_id: route.route_id,
                cycle_id: route.cycle_id,
                stops: route.stops.len() as u32,
            });
        }
        self.orders.truncate(msg::limits::ORDERS);
        self.board.update(&self.name, |s| {
            s.device = Some(h.device_id.clone());
            s.bytes_up = 0;
            s.bytes_down = 0;
            s.reads_received = 0;
            s.routes_sent = 0;
            s.last_error = None;
            s.since = Some(now);
        });
        self.pending_reads = u64::from(h.pending_reads);
        if self.pending_reads == 0 {
            self.start_download(now_ms);
        } else {
            self.phase = Phase::Uploading;
            self.set_state("uploading");
            self.arm(now_ms, "read batch", self.deadlines.reads_secs);
        }
    }

    fn refuse(&mut self, code: u16, reason: String) {
        let device = self.device.clone().unwrap_or_default();
        self.notes.push_back(Note::Refused {
            device,
            reason: reason.clone(),
        });
        self.board
            .update(&self.name, |s| s.last_error = Some(reason.clone()));
        self.error_and_bye(code, reason);
        self.phase = Phase::Refused;
        self.deadline = None;
        self.set_state("refused");
    }

    fn on_reads(&mut self, reads: Vec<msg::Read>, now_ms: u64) {
        let Some(device) = self.device.clone() else {
            return;
        };
        let n = reads.len();
        self.set_state("storing");
        let from = Uploader {
            device_id: &device,
            state_id: self.state_id,
            via: Via::Serial,
        };
        match self
            .service
            .upload_blocking(from, None, reads, self.now(now_ms))
        {
            Ok(r) => {
                // Committed: only now may the handheld hear that it can delete them.
                if let Some(up_to_seq) = r.up_to_seq {
                    let refused = r
                        .refused
                        .iter()
                        .map(|x| msg::RefusedRead {
                            device_seq: x.device_seq,
                            reason: x.wire_reason(),
                        })
                        .collect();
                    self.send_message(&Message::ReadAck { up_to_seq, refused });
                }
                self.reads_received += n as u64;
                let total = self.reads_received;
                self.board.update(&self.name, |s| s.reads_received = total);
                self.notes.push_back(Note::Stored {
                    device,
                    reads: n,
                    stored: r.stored,
                    flagged: r.flagged,
                    already_received: r.already_received,
                    refused: r.refused.len(),
                    up_to_seq: r.up_to_seq,
                });
            }
            Err(e) => {
                let text = e.to_string();
                self.board
                    .update(&self.name, |s| s.last_error = Some(text.clone()));
                self.notes.push_back(Note::StoreFailed {
                    device,
                    error: text.clone(),
                });
                self.send_message(&Message::Error {
                    code: error_code::STORAGE_FAILURE,
                    text: super::fit(&text, msg::limits::NOTE),
                });
                // The reads stay on the handheld; give it its route anyway.
                self.reads_received = self.pending_reads;
            }
        }
        if self.phase == Phase::Uploading && self.reads_received >= self.pending_reads {
            self.start_download(now_ms);
        } else if self.phase == Phase::Uploading {
            self.set_state("uploading");
            self.arm(now_ms, "read batch", self.deadlines.reads_secs);
        }
    }

    fn start_download(&mut self, now_ms: u64) {
        self.phase = Phase::Downloading;
        self.set_state("downloading");
        self.deadline = None;
        self.offer_next(now_ms);
    }

    /// Offers the next route, or when none is left sends the codes, the orders and `Bye`.
    fn offer_next(&mut self, now_ms: u64) {
        if self.awaiting_accept.is_some() {
            return;
        }
        let compressed = self.compression.contains(Compression::DEFLATE);
        // Routes whose transfer was already started with `send` are not offered twice.
        let next = self
            .offered
            .iter()
            .find(|o| !self.endpoint.pending_sends().any(|id| id == o.transfer_id))
            .map(|o| (o.transfer_id, o.bytes.len()));
        if let Some((transfer_id, len)) = next {
            let offer = self
                .offered
                .iter()
                .find(|o| o.transfer_id == transfer_id)
                .map(|o| msg::RouteOffer {
                    transfer_id,
                    route_id: o.route_id.clone(),
                    cycle_id: o.cycle_id.clone(),
                    stops: o.stops,
                    bytes: len as u32,
                    compressed,
                });
            if let Some(offer) = offer {
                self.awaiting_accept = Some(transfer_id);
                self.send_message(&Message::RouteOffer(offer));
                self.arm(now_ms, "RouteAccept", self.deadlines.accept_secs);
                return;
            }
        }
        self.finish_download(now_ms);
    }

    fn on_route_accept(&mut self, transfer_id: u32, resume_from: u32, now_ms: u64) {
        if self.awaiting_accept != Some(transfer_id) {
            // Still waiting for the right answer: the RouteAccept deadline keeps running.
            self.send_message(&Message::Error {
                code: error_code::UNKNOWN_TRANSFER,
                text: format!("no route transfer {transfer_id} was offered"),
            });
            return;
        }
        self.awaiting_accept = None;
        let Some(i) = self
            .offered
            .iter()
            .position(|o| o.transfer_id == transfer_id)
        else {
            return;
        };
        let bytes = std::mem::take(&mut self.offered[i].bytes);
        if resume_from > 0 {
            // Informational (PROTOCOL.md 3.6): the transfer layer's own Accept decides the offset,
            // and its `Resumed` event is what the log shows.
            tracing::debug!(dock = %self.name, transfer_id, resume_from, "handheld holds part of the route");
        }
        if let Err(e) = self.endpoint.send(transfer_id, bytes) {
            tracing::warn!(dock = %self.name, error = %e, "route transfer not queued");
        }
        self.offered.remove(i);
        self.arm(
            now_ms,
            "route transfer progress",
            self.deadlines.transfer_secs,
        );
        self.offer_next(now_ms);
    }

    fn finish_download(&mut self, now_ms: u64) {
        let codes = match self.service.codes_blocking() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(dock = %self.name, error = %e, "cannot load message codes");
                Vec::new()
            }
        };
        self.send_message(&Message::MessageCodeTable {
            codes: code_table(&codes),
        });
        // The orders of the routes again, on their own: a handheld that already held a route (its
        // transfer was found delivered) still gets the orders as they stand now.
        let orders = std::mem::take(&mut self.orders);
        self.send_message(&Message::FieldOrders { orders });
        self.bye_id = self.send_message(&Message::Bye {
            reason: ByeReason::Done,
        });
        self.phase = Phase::Closing;
        self.set_state("closing");
        // Route transfers may still be on the line: their progress keeps this wait alive.
        self.arm(now_ms, "Bye", self.deadlines.bye_secs);
    }

    /// The deadline and the linger after an expiry, for the caller's timer.
    fn own_timeout(&self) -> Option<u64> {
        match (self.deadline.map(|d| d.at_ms), self.linger_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn check_own_timers(&mut self, now_ms: u64) {
        if let Some(d) = self.deadline.filter(|d| d.at_ms <= now_ms) {
            self.expire(d, now_ms);
        }
        if self.linger_until.is_some_and(|t| t <= now_ms) {
            self.linger_until = None;
            self.reconnect(now_ms);
        }
    }
}

/// The key of a handheld state's kept partial uploads on the board.
fn partials_key(device: &str, state_id: u64) -> String {
    format!("{device}/{state_id:016x}")
}

impl Station for DockSession {
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
        match (self.endpoint.poll_timeout(), self.own_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now_ms: u64) {
        self.endpoint.handle_timeout(now_ms);
        self.pump(now_ms);
        self.check_own_timers(now_ms);
    }
}
