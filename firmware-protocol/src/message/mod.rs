//! Application messages: what travels inside a reliable transfer.
//!
//! Every message is `message_type u8 | message_version u8 | body`, all little-endian, built from a
//! handful of primitives a firmware author can write by hand (see `PROTOCOL.md`, "Messages"):
//!
//! - `u8` fields (codes, flags, small counts such as dials) are one raw byte;
//! - `u16`/`u32`/`u64` are unsigned LEB128 varints in their shortest form;
//! - `i64` (times) are zigzag-mapped, then varints;
//! - `bool` is one byte, 0 or 1; an optional value is a `bool` then the value when 1;
//! - a string is a varint byte length then UTF-8, each field with a stated maximum;
//! - a list is a varint count then the items, each list with a stated maximum;
//! - a record (a stop, a read, an order...) inside a list is a varint byte length then its fields, so a
//!   later message version can append fields to records and older receivers skip them.
//!
//! Versioning: a receiver that gets a `message_version` higher than it knows decodes the fields it
//! knows and ignores bytes after them (in the body and in every record); at a version it knows, extra
//! bytes are an error. Fields are only ever appended.

mod codec;
mod route;
#[cfg(test)]
mod tests;

use crate::compress;
use alloc::string::String;
use alloc::vec::Vec;
use codec::{Reader, Writer};
use core::fmt;

pub use codec::{unzigzag, write_varint, zigzag};
pub use route::{decode_route_transfer, encode_route_transfer, limits_on, DayLimits};

/// The session protocol version this implementation speaks (`Hello.protocol_versions`,
/// `Welcome.protocol_version`). Not the frame header's `version` byte, which is the framing
/// version and is 1 in every session protocol version so far.
pub const SESSION_PROTOCOL_VERSION: u8 = 2;

/// The body version this implementation writes and fully understands, per message type. Protocol 2
/// appended fields to `Hello` (`state_id`), `Welcome` (`held_seq`), `ReadAck` (`refused`) and
/// `RouteData` (the limits for the last day of the window); every other type is still at version 1.
/// A decoder reads a lower version of a type without the fields appended since (they take their
/// documented defaults).
pub const fn message_version(message_type: u8) -> u8 {
    match message_type {
        message_type::HELLO
        | message_type::WELCOME
        | message_type::READ_ACK
        | message_type::ROUTE_DATA => 2,
        _ => 1,
    }
}

/// Maximum sizes, in bytes for strings and in items for lists. A decoder rejects anything larger,
/// so a hostile length costs at most one bounded allocation.
pub mod limits {
    /// Device, route, cycle, account, meter and reader ids; firmware version.
    pub const ID: usize = 32;
    /// Message codes and skip codes (Neptune skip codes are at most 4 characters).
    pub const CODE: usize = 8;
    /// Message-code category (`trouble`, `skip`, `note`, `hazard`...).
    pub const CATEGORY: usize = 16;
    /// Customer name, service address, message-code description.
    pub const NAME: usize = 80;
    /// Location and hazard notes, order instructions, read notes, error text.
    pub const NOTE: usize = 255;
    pub const PROTOCOL_VERSIONS: usize = 16;
    pub const ASSIGNED_ROUTES: usize = 64;
    pub const STOPS: usize = 20_000;
    pub const ORDERS_PER_STOP: usize = 16;
    pub const CODES: usize = 1_000;
    pub const ORDERS: usize = 10_000;
    pub const READS: usize = 10_000;
    pub const CODES_PER_READ: usize = 8;
    /// Largest inflated route transfer: a 20,000-stop route with every note filled fits.
    pub const ROUTE_DATA: usize = 16 * 1024 * 1024;
}

/// Message type codes.
pub mod message_type {
    pub const HELLO: u8 = 0x01;
    pub const WELCOME: u8 = 0x02;
    pub const CLOCK_SYNC: u8 = 0x03;
    pub const ERROR: u8 = 0x04;
    pub const BYE: u8 = 0x05;
    pub const READ_BATCH: u8 = 0x10;
    pub const READ_ACK: u8 = 0x11;
    pub const ROUTE_OFFER: u8 = 0x20;
    pub const ROUTE_ACCEPT: u8 = 0x21;
    pub const ROUTE_DATA: u8 = 0x22;
    pub const MESSAGE_CODE_TABLE: u8 = 0x23;
    pub const FIELD_ORDERS: u8 = 0x24;
}

/// Codes of [`Message::Error`].
pub mod error_code {
    /// The dock does not know this device id (not registered with the District).
    pub const UNKNOWN_DEVICE: u16 = 1;
    /// No protocol version in common (Hello), or a message version the receiver cannot use.
    pub const UNSUPPORTED_VERSION: u16 = 2;
    /// A message that failed to decode; the text says why.
    pub const BAD_MESSAGE: u16 = 3;
    /// The dock is serving another handheld or is otherwise busy; retry later.
    pub const BUSY: u16 = 4;
    /// A message that is valid but not expected now (a RouteAccept without an offer...).
    pub const UNEXPECTED_MESSAGE: u16 = 5;
    /// A RouteAccept or route data for a transfer id the receiver does not know.
    pub const UNKNOWN_TRANSFER: u16 = 6;
    /// The dock could not store reads durably; they stay on the handheld. Retry later.
    pub const STORAGE_FAILURE: u16 = 7;
    /// The handheld has no room for the offered route.
    pub const NO_SPACE: u16 = 8;
    /// Anything else on the sender's side.
    pub const INTERNAL: u16 = 9;
    /// The session made no progress within the deadline of the state it was in (PROTOCOL.md §3.8);
    /// the sender ends it with `Bye { error }`. Nothing unacknowledged was acknowledged.
    pub const TIMEOUT: u16 = 10;
}

/// Why a message could not be decoded. `at` is a byte offset into the message.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// Zero bytes: not even a message type.
    Empty,
    /// The message (or a record) ended in the middle of `field`.
    Truncated {
        field: &'static str,
        at: usize,
    },
    /// `message_version` 0: versions start at 1.
    UnsupportedVersion {
        message_type: u8,
        version: u8,
    },
    /// A varint longer than 10 bytes or beyond 64 bits.
    VarintOverflow {
        at: usize,
    },
    /// A varint with redundant trailing zero groups; senders must use the shortest form.
    NonCanonicalVarint {
        at: usize,
    },
    /// A number that does not fit its field (a `u16` above 65535, a bool of 2...).
    OutOfRange {
        field: &'static str,
        value: u64,
    },
    StringTooLong {
        field: &'static str,
        len: u64,
        max: usize,
    },
    BadUtf8 {
        field: &'static str,
        at: usize,
    },
    TooManyItems {
        field: &'static str,
        count: u64,
        max: usize,
    },
    /// A record's length runs past the end of the message.
    RecordOverrun {
        at: usize,
        len: u64,
    },
    /// Bytes after the last field at a message version this decoder knows completely.
    TrailingBytes {
        at: usize,
    },
    /// Route data that did not inflate (compressed transfers only).
    Inflate(compress::InflateError),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::Empty => f.write_str("empty message"),
            MessageError::Truncated { field, at } => {
                write!(f, "message ends inside `{field}` at byte {at}")
            }
            MessageError::UnsupportedVersion {
                message_type,
                version,
            } => write!(
                f,
                "message type {message_type:#04x} has unsupported version {version}"
            ),
            MessageError::VarintOverflow { at } => {
                write!(f, "varint at byte {at} exceeds 64 bits")
            }
            MessageError::NonCanonicalVarint { at } => {
                write!(f, "varint at byte {at} is not in its shortest form")
            }
            MessageError::OutOfRange { field, value } => {
                write!(f, "`{field}` value {value} is out of range")
            }
            MessageError::StringTooLong { field, len, max } => {
                write!(f, "`{field}` is {len} bytes long, at most {max} allowed")
            }
            MessageError::BadUtf8 { field, at } => {
                write!(f, "`{field}` at byte {at} is not valid UTF-8")
            }
            MessageError::TooManyItems { field, count, max } => {
                write!(f, "`{field}` has {count} items, at most {max} allowed")
            }
            MessageError::RecordOverrun { at, len } => write!(
                f,
                "record at byte {at} claims {len} bytes, past the end of the message"
            ),
            MessageError::TrailingBytes { at } => {
                write!(f, "unexpected bytes after the last field, at byte {at}")
            }
            MessageError::Inflate(e) => write!(f, "route data: {e}"),
        }
    }
}

impl core::error::Error for MessageError {}

impl From<compress::InflateError> for MessageError {
    fn from(e: compress::InflateError) -> Self {
        MessageError::Inflate(e)
    }
}

/// Declares a one-byte code enum with an `Unknown(u8)` catch-all, so a newer peer's code is carried
/// instead of failing the whole message.
macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $code:literal => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant,)+
            /// A code this implementation does not know.
            Unknown(u8),
        }
        impl $name {
            pub const fn from_u8(code: u8) -> Self {
                match code { $($code => $name::$variant,)+ other => $name::Unknown(other) }
            }
            pub const fn to_u8(self) -> u8 {
                match self { $($name::$variant => $code,)+ $name::Unknown(c) => c }
            }
            /// The lower-snake-case name used in `PROTOCOL.md` and the vectors; `None` for unknown codes.
            pub const fn name(self) -> Option<&'static str> {
                match self { $($name::$variant => Some($text),)+ $name::Unknown(_) => None }
            }
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

code_enum!(
    /// The unit a register counts in.
    Unit { Cf = 1 => "cf", Hcf = 2 => "hcf", Gal = 3 => "gal", Kgal = 4 => "kgal", M3 = 5 => "m3" }
);
code_enum!(
    /// What a field order asks the reader to do at a stop.
    FieldOrderKind {
        Reread = 1 => "reread",
        /// Leave a door hanger (48-hour shut-off notice).
        DoorHanger = 2 => "door_hanger",
        ShutOff = 3 => "shut_off",
        TurnOn = 4 => "turn_on",
        /// Pull the meter and set a new one: the read is the old meter's final.
        MeterChange = 5 => "meter_change",
    }
);
code_enum!(
    /// What the reader says about a read.
    ReadType {
        Regular = 1 => "regular",
        /// Above the high limit, re-keyed and confirmed at the meter.
        HighConfirmed = 2 => "high_confirmed",
        /// Below the low limit, re-keyed and confirmed at the meter.
        LowConfirmed = 3 => "low_confirmed",
        /// Not read; the skip code says why.
        Skipped = 4 => "skipped",
    }
);
code_enum!(
    /// How the reading was obtained.
    ReadMethod { Keyed = 1 => "keyed", Probe = 2 => "probe", Radio = 3 => "radio" }
);
code_enum!(
    /// Why a side ends the session.
    ByeReason {
        /// Everything was exchanged.
        Done = 1 => "done",
        /// The reader cancelled on the handheld, or the clerk at the dock.
        Cancelled = 2 => "cancelled",
        /// The sender is powering down or restarting.
        ShuttingDown = 3 => "shutting_down",
        /// After an Error message that ends the session.
        Error = 4 => "error",
    }
);

code_enum!(
    /// Why the dock refused a read of a `ReadBatch` (`ReadAck.refused`, version 2). The dock keeps
    /// the refused read's content in its refused-reads log, where a clerk sees it; only
    /// `SeqConflict` asks the handheld to send the read again (under a new sequence number).
    RefusalReason {
        /// The dock holds a different read under this (device, state id, `device_seq`): give the
        /// read a new sequence number and send it again.
        SeqConflict = 1 => "seq_conflict",
        /// `read_time` is not a time the dock accepts (far before the cycle's window, after the
        /// read reached the dock by more than the allowed clock drift, or not a calendar time).
        BadTime = 2 => "bad_time",
        /// A meter on a route assigned to another handheld, and the District refuses off-route
        /// reads.
        OffRoute = 3 => "off_route",
        /// A field outside its range (`device_seq` 0 or above 2^63 − 1).
        BadRead = 4 => "bad_read",
    }
);

/// One read of a batch that the dock did not store, and why (`ReadAck.refused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedRead {
    pub device_seq: u64,
    pub reason: RefusalReason,
}

/// Compression methods, as a bit set: what a side supports (Hello) or what the dock will use (Welcome).
/// Unknown bits are kept so they can be passed on and intersected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Compression(pub u8);

impl Compression {
    pub const NONE: Compression = Compression(0);
    /// zlib-wrapped deflate (RFC 1950/1951) of whole route transfers.
    pub const DEFLATE: Compression = Compression(0x01);

    pub const fn contains(self, other: Compression) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn intersection(self, other: Compression) -> Compression {
        Compression(self.0 & other.0)
    }

    pub const fn union(self, other: Compression) -> Compression {
        Compression(self.0 | other.0)
    }
}

/// The handheld introduces itself (handheld → dock), first message of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub device_id: String,
    pub firmware_version: String,
    /// Protocol versions the handheld speaks, any order.
    pub protocol_versions: Vec<u8>,
    /// Largest frame payload the handheld can receive.
    pub max_payload: u16,
    /// Largest number of unacknowledged data frames the handheld can buffer.
    pub window: u8,
    pub compression: Compression,
    /// Reads the handheld will send in this session (every read it holds that was not acknowledged):
    /// the dock waits for that many before it sends routes.
    pub pending_reads: u32,
    /// The handheld's state identity (version 2): a random non-zero 64-bit number made when its read
    /// storage was initialised (first boot, factory reset, wipe, a replacement unit). Sequence
    /// numbers are unique per (device, state id). 0 when absent (a version-1 `Hello`).
    pub state_id: u64,
}

/// The dock's answer to Hello (dock → handheld): the session's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub protocol_version: u8,
    /// Payload limit for frames in both directions: at most both sides' maxima.
    pub max_payload: u16,
    pub window: u8,
    /// Compression the dock may use; a subset of what the handheld offered.
    pub compression: Compression,
    /// Seconds since 1970-01-01 00:00 in District local time (not UTC): the handheld sets its clock.
    pub server_time: i64,
    pub assigned_routes: Vec<String>,
    /// The highest `device_seq` the dock holds (stored or refused) from this device under the
    /// `Hello`'s state id, 0 for none (version 2): the handheld numbers new reads above it.
    pub held_seq: u64,
}

/// The dock proposes to send a route (dock → handheld).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOffer {
    pub transfer_id: u32,
    pub route_id: String,
    pub cycle_id: String,
    pub stops: u32,
    /// Length of the route transfer as sent (compressed when `compressed`).
    pub bytes: u32,
    pub compressed: bool,
}

/// A route as loaded on a handheld for one cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub route_id: String,
    pub cycle_id: String,
    /// First day of the read window, days since 1970-01-01.
    pub window_from: u32,
    /// Last day of the read window (inclusive), days since 1970-01-01.
    pub window_to: u32,
    /// In walk order.
    pub stops: Vec<RouteStop>,
}

/// One meter on a route, with everything the reader needs at the curb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteStop {
    /// Position in the walk order.
    pub sequence: u32,
    pub account_id: String,
    pub customer_name: String,
    pub service_address: String,
    pub meter_id: String,
    /// Where the meter is ("front left by driveway").
    pub location_note: String,
    /// What to watch out for ("dog in yard").
    pub hazard_note: String,
    /// Digits on the register: it wraps from 10^dials − 1 to 0.
    pub dials: u8,
    /// Of the dials, how many are after the decimal point (shown, not keyed).
    pub decimals: u8,
    /// Register units × multiplier = billing units.
    pub multiplier: u32,
    pub unit: Unit,
    pub previous_reading: u64,
    /// Days since 1970-01-01.
    pub previous_read_date: u32,
    /// Lowest plausible reading (a register value, compared directly with the keyed number).
    pub low_limit: u64,
    /// Highest plausible reading. When `high_limit < low_limit` the acceptable range wraps through
    /// zero: a reading is in range when it is ≥ low_limit or ≤ high_limit.
    pub high_limit: u64,
    pub field_orders: Vec<FieldOrder>,
    /// `low_limit` and `high_limit` are the limits for a read on the window's first day; these two
    /// are for a read on its last day (version 2; equal to the first-day limits in version 1).
    /// Between the two the limits move linearly with the day ([`RouteStop::limits_on`]).
    pub low_limit_last: u64,
    pub high_limit_last: u64,
}

/// Work the office wants done at a stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldOrder {
    pub order_id: u64,
    pub kind: FieldOrderKind,
    pub instructions: String,
}

/// A field order not carried with a route (issued after the route was loaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountOrder {
    pub account_id: String,
    pub meter_id: String,
    pub order: FieldOrder,
}

/// One entry of the utility's message-code table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageCode {
    pub code: String,
    pub category: String,
    pub description: String,
    /// A read carrying this code opens a follow-up item at the office.
    pub requires_follow_up: bool,
}

/// A read taken in the field (handheld → dock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Strictly increasing per device, never reused: the dock's idempotency key.
    pub device_seq: u64,
    pub meter_id: String,
    /// The register value as keyed or probed; 0 when `read_type` is skipped.
    pub reading: u64,
    /// Seconds since 1970-01-01 00:00, District local time.
    pub read_time: i64,
    pub read_type: ReadType,
    pub method: ReadMethod,
    pub message_codes: Vec<String>,
    pub skip_code: Option<String>,
    pub note: Option<String>,
    pub reader_id: String,
    /// The field order this read completes, if any.
    pub order: Option<OrderCompletion>,
}

/// Completion of a field order with a read. For a meter change the read is the old meter's final
/// and the new meter's number and initial reading come here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderCompletion {
    pub order_id: u64,
    pub new_meter_id: Option<String>,
    pub new_meter_initial: Option<u64>,
}

/// An application message.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Welcome(Welcome),
    /// Dock → handheld: set the clock (seconds since 1970-01-01, District local time).
    ClockSync {
        server_time: i64,
    },
    RouteOffer(RouteOffer),
    /// Handheld → dock: take the offered route. `resume_from` reports how many bytes of this transfer
    /// id the handheld already holds (0 for none); it is informational: the transfer layer's own
    /// Offer/Accept is the only resume mechanism (PROTOCOL.md §2.4).
    RouteAccept {
        transfer_id: u32,
        resume_from: u32,
    },
    RouteData(Route),
    MessageCodeTable {
        codes: Vec<MessageCode>,
    },
    FieldOrders {
        orders: Vec<AccountOrder>,
    },
    ReadBatch {
        reads: Vec<Read>,
    },
    /// Dock → handheld, only after every read of the batch with `device_seq ≤ up_to_seq` is durably
    /// stored or durably recorded as refused; `refused` (version 2) lists the latter.
    ReadAck {
        up_to_seq: u64,
        refused: Vec<RefusedRead>,
    },
    Error {
        code: u16,
        text: String,
    },
    Bye {
        reason: ByeReason,
    },
    /// A message type this implementation does not know (a newer peer). `body` is every byte after
    /// the type byte, starting with the message version, so it re-encodes unchanged.
    Unknown {
        message_type: u8,
        body: Vec<u8>,
    },
}

impl Message {
    pub fn message_type(&self) -> u8 {
        use message_type as t;
        match self {
            Message::Hello(_) => t::HELLO,
            Message::Welcome(_) => t::WELCOME,
            Message::ClockSync { .. } => t::CLOCK_SYNC,
            Message::RouteOffer(_) => t::ROUTE_OFFER,
            Message::RouteAccept { .. } => t::ROUTE_ACCEPT,
            Message::RouteData(_) => t::ROUTE_DATA,
            Message::MessageCodeTable { .. } => t::MESSAGE_CODE_TABLE,
            Message::FieldOrders { .. } => t::FIELD_ORDERS,
            Message::ReadBatch { .. } => t::READ_BATCH,
            Message::ReadAck { .. } => t::READ_ACK,
            Message::Error { .. } => t::ERROR,
            Message::Bye { .. } => t::BYE,
            Message::Unknown { message_type, .. } => *message_type,
        }
    }

    /// The lower-snake-case name used in `PROTOCOL.md` and the vectors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Welcome(_) => "welcome",
            Message::ClockSync { .. } => "clock_sync",
            Message::RouteOffer(_) => "route_offer",
            Message::RouteAccept { .. } => "route_accept",
            Message::RouteData(_) => "route_data",
            Message::MessageCodeTable { .. } => "message_code_table",
            Message::FieldOrders { .. } => "field_orders",
            Message::ReadBatch { .. } => "read_batch",
            Message::ReadAck { .. } => "read_ack",
            Message::Error { .. } => "error",
            Message::Bye { .. } => "bye",
            Message::Unknown { .. } => "unknown",
        }
    }

    /// Appends the encoding to `out`. Does not check the size limits: a message built from
    /// unchecked input should go through [`Message::encode_checked`], or the peer will reject it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer { out };
        w.u8(self.message_type());
        if let Message::Unknown { body, .. } = self {
            w.out.extend_from_slice(body);
            return;
        }
        w.u8(message_version(self.message_type()));
        match self {
            Message::Hello(h) => {
                w.str(&h.device_id);
                w.str(&h.firmware_version);
                w.varint(h.protocol_versions.len() as u64);
                w.out.extend_from_slice(&h.protocol_versions);
                w.varint(u64::from(h.max_payload));
                w.u8(h.window);
                w.u8(h.compression.0);
                w.varint(u64::from(h.pending_reads));
                w.varint(h.state_id);
            }
            Message::Welcome(m) => {
                w.u8(m.protocol_version);
                w.varint(u64::from(m.max_payload));
                w.u8(m.window);
                w.u8(m.compression.0);
                w.i64(m.server_time);
                w.list(&m.assigned_routes, |w, r| w.str(r));
                w.varint(m.held_seq);
            }
            Message::ClockSync { server_time } => w.i64(*server_time),
            Message::RouteOffer(o) => {
                w.varint(u64::from(o.transfer_id));
                w.str(&o.route_id);
                w.str(&o.cycle_id);
                w.varint(u64::from(o.stops));
                w.varint(u64::from(o.bytes));
                w.bool(o.compressed);
            }
            Message::RouteAccept {
                transfer_id,
                resume_from,
            } => {
                w.varint(u64::from(*transfer_id));
                w.varint(u64::from(*resume_from));
            }
            Message::RouteData(r) => route::write_route(&mut w, r),
            Message::MessageCodeTable { codes } => w.list(codes, |w, c| {
                w.record(|w| {
                    w.str(&c.code);
                    w.str(&c.category);
                    w.str(&c.description);
                    w.bool(c.requires_follow_up);
                })
            }),
            Message::FieldOrders { orders } => w.list(orders, |w, o| {
                w.record(|w| {
                    w.str(&o.account_id);
                    w.str(&o.meter_id);
                    write_order(w, &o.order);
                })
            }),
            Message::ReadBatch { reads } => w.list(reads, |w, r| w.record(|w| write_read(w, r))),
            Message::ReadAck { up_to_seq, refused } => {
                w.varint(*up_to_seq);
                w.list(refused, |w, r| {
                    w.record(|w| {
                        w.varint(r.device_seq);
                        w.u8(r.reason.to_u8());
                    })
                });
            }
            Message::Error { code, text } => {
                w.varint(u64::from(*code));
                w.str(text);
            }
            Message::Bye { reason } => w.u8(reason.to_u8()),
            Message::Unknown { .. } => {}
        }
    }

    /// The encoding as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Checks the size limits, then encodes: the peer will not reject the result for its sizes.
    pub fn encode_checked(&self, out: &mut Vec<u8>) -> Result<(), MessageError> {
        self.validate()?;
        self.encode(out);
        Ok(())
    }

    /// Checks every string and list against [`limits`], as the decoder will.
    pub fn validate(&self) -> Result<(), MessageError> {
        // Decoding our own encoding applies exactly the decoder's checks; it costs a copy, which is
        // nothing next to sending the bytes over a serial link.
        let bytes = self.to_vec();
        Message::decode(&bytes).map(|_| ())
    }

    /// Decodes one message. Never panics; every count and length is bounded by [`limits`] and by the
    /// bytes actually present.
    pub fn decode(bytes: &[u8]) -> Result<Message, MessageError> {
        let (&message_type, rest) = bytes.split_first().ok_or(MessageError::Empty)?;
        let known = matches!(
            message_type,
            message_type::HELLO
                | message_type::WELCOME
                | message_type::CLOCK_SYNC
                | message_type::ERROR
                | message_type::BYE
                | message_type::READ_BATCH
                | message_type::READ_ACK
                | message_type::ROUTE_OFFER
                | message_type::ROUTE_ACCEPT
                | message_type::ROUTE_DATA
                | message_type::MESSAGE_CODE_TABLE
                | message_type::FIELD_ORDERS
        );
        if !known {
            return Ok(Message::Unknown {
                message_type,
                body: rest.to_vec(),
            });
        }
        let mut r = Reader {
            buf: rest,
            pos: 0,
            base: 1,
            lenient: false,
        };
        let version = r.u8("message_version")?;
        if version == 0 {
            return Err(MessageError::UnsupportedVersion {
                message_type,
                version,
            });
        }
        r.lenient = version > message_version(message_type);
        let m = match message_type {
            message_type::HELLO => Message::Hello(Hello {
                device_id: r.str("device_id", limits::ID)?,
                firmware_version: r.str("firmware_version", limits::ID)?,
                protocol_versions: {
                    let n = r.count("protocol_versions", limits::PROTOCOL_VERSIONS)?;
                    r.bytes("protocol_versions", n)?.to_vec()
                },
                max_payload: r.u16("max_payload")?,
                window: r.u8("window")?,
                compression: Compression(r.u8("compression")?),
                pending_reads: r.u32("pending_reads")?,
                state_id: if version >= 2 {
                    r.varint("state_id")?
                } else {
                    0
                },
            }),
            message_type::WELCOME => Message::Welcome(Welcome {
                protocol_version: r.u8("protocol_version")?,
                max_payload: r.u16("max_payload")?,
                window: r.u8("window")?,
                compression: Compression(r.u8("compression")?),
                server_time: r.i64("server_time")?,
                assigned_routes: r.list("assigned_routes", limits::ASSIGNED_ROUTES, |r| {
                    r.str("assigned_routes", limits::ID)
                })?,
                held_seq: if version >= 2 {
                    r.varint("held_seq")?
                } else {
                    0
                },
            }),
            message_type::CLOCK_SYNC => Message::ClockSync {
                server_time: r.i64("server_time")?,
            },
            message_type::ROUTE_OFFER => Message::RouteOffer(RouteOffer {
                transfer_id: r.u32("transfer_id")?,
                route_id: r.str("route_id", limits::ID)?,
                cycle_id: r.str("cycle_id", limits::ID)?,
                stops: r.u32("stops")?,
                bytes: r.u32("bytes")?,
                compressed: r.bool("compressed")?,
            }),
            message_type::ROUTE_ACCEPT => Message::RouteAccept {
                transfer_id: r.u32("transfer_id")?,
                resume_from: r.u32("resume_from")?,
            },
            message_type::ROUTE_DATA => Message::RouteData(route::read_route(&mut r, version)?),
            message_type::MESSAGE_CODE_TABLE => Message::MessageCodeTable {
                codes: r.list("codes", limits::CODES, |r| {
                    r.record("code", |r| {
                        Ok(MessageCode {
                            code: r.str("code", limits::CODE)?,
                            category: r.str("category", limits::CATEGORY)?,
                            description: r.str("description", limits::NAME)?,
                            requires_follow_up: r.bool("requires_follow_up")?,
                        })
                    })
                })?,
            },
            message_type::FIELD_ORDERS => Message::FieldOrders {
                orders: r.list("orders", limits::ORDERS, |r| {
                    r.record("order", |r| {
                        Ok(AccountOrder {
                            account_id: r.str("account_id", limits::ID)?,
                            meter_id: r.str("meter_id", limits::ID)?,
                            order: read_order(r)?,
                        })
                    })
                })?,
            },
            message_type::READ_BATCH => Message::ReadBatch {
                reads: r.list("reads", limits::READS, |r| r.record("read", read_read))?,
            },
            message_type::READ_ACK => Message::ReadAck {
                up_to_seq: r.varint("up_to_seq")?,
                refused: if version >= 2 {
                    r.list("refused", limits::READS, |r| {
                        r.record("refused", |r| {
                            Ok(RefusedRead {
                                device_seq: r.varint("device_seq")?,
                                reason: RefusalReason::from_u8(r.u8("reason")?),
                            })
                        })
                    })?
                } else {
                    Vec::new()
                },
            },
            message_type::ERROR => Message::Error {
                code: r.u16("code")?,
                text: r.str("text", limits::NOTE)?,
            },
            message_type::BYE => Message::Bye {
                reason: ByeReason::from_u8(r.u8("reason")?),
            },
            _ => {
                return Ok(Message::Unknown {
                    message_type,
                    body: rest.to_vec(),
                })
            }
        };
        r.finish()?;
        Ok(m)
    }
}

fn write_order(w: &mut Writer<'_>, o: &FieldOrder) {
    w.varint(o.order_id);
    w.u8(o.kind.to_u8());
    w.str(&o.instructions);
}

fn read_order(r: &mut Reader<'_>) -> Result<FieldOrder, MessageError> {
    Ok(FieldOrder {
        order_id: r.varint("order_id")?,
        kind: FieldOrderKind::from_u8(r.u8("kind")?),
        instructions: r.str("instructions", limits::NOTE)?,
    })
}

/// Appends the fields of one `Read` record as `ReadBatch` carries it (without the record's length
/// prefix): the bytes whose SHA-256 identifies a read's content (PROTOCOL.md §3.5).
pub fn encode_read(read: &Read, out: &mut Vec<u8>) {
    write_read(&mut Writer { out }, read);
}

fn write_read(w: &mut Writer<'_>, r: &Read) {
    w.varint(r.device_seq);
    w.str(&r.meter_id);
    w.varint(r.reading);
    w.i64(r.read_time);
    w.u8(r.read_type.to_u8());
    w.u8(r.method.to_u8());
    w.list(&r.message_codes, |w, c| w.str(c));
    w.option(r.skip_code.as_ref(), |w, c| w.str(c));
    w.option(r.note.as_ref(), |w, n| w.str(n));
    w.str(&r.reader_id);
    w.option(r.order.as_ref(), |w, o| {
        w.varint(o.order_id);
        w.option(o.new_meter_id.as_ref(), |w, m| w.str(m));
        w.option(o.new_meter_initial.as_ref(), |w, v| w.varint(*v));
    });
}

fn read_read(r: &mut Reader<'_>) -> Result<Read, MessageError> {
    Ok(Read {
        device_seq: r.varint("device_seq")?,
        meter_id: r.str("meter_id", limits::ID)?,
        reading: r.varint("reading")?,
        read_time: r.i64("read_time")?,
        read_type: ReadType::from_u8(r.u8("read_type")?),
        method: ReadMethod::from_u8(r.u8("method")?),
        message_codes: r.list("message_codes", limits::CODES_PER_READ, |r| {
            r.str("message_codes", limits::CODE)
        })?,
        skip_code: r.option("skip_code", |r| r.str("skip_code", limits::CODE))?,
        note: r.option("note", |r| r.str("note", limits::NOTE))?,
        reader_id: r.str("reader_id", limits::ID)?,
        order: r.option("order", |r| {
            Ok(OrderCompletion {
                order_id: r.varint("order_id")?,
                new_meter_id: r.option("new_meter_id", |r| r.str("new_meter_id", limits::ID))?,
                new_meter_initial: r
                    .option("new_meter_initial", |r| r.varint("new_meter_initial"))?,
            })
        })?,
    })
}
