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

use crate::compress;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

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

/// A stop's hi/lo limits for one read day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayLimits {
    /// The stop has no limits: every reading of the register is accepted.
    Any,
    /// Register readings; when `high < low` the range wraps through zero.
    Range { low: u64, high: u64 },
}

impl DayLimits {
    /// Whether `reading` is inside, honouring a range that wraps through zero.
    pub fn contains(self, reading: u64) -> bool {
        match self {
            DayLimits::Any => true,
            DayLimits::Range { low, high } if low <= high => (low..=high).contains(&reading),
            DayLimits::Range { low, high } => reading >= low || reading <= high,
        }
    }
}

/// The limits of a stop for a read on `day`, from its limits on the window's first day
/// (`first = (low, high)`) and last day (`last`), as PROTOCOL.md §3.6 defines them: with `M` =
/// 10^dials, each pair becomes an offset from the previous reading `o_low = (low − prev) mod M`
/// taken in `(−M/2, M/2]`, and a span `(high − low) mod M`; a span of `M − 1` at either end means no
/// limits. For `k = clamp(day − from, 0, n)`, `n = to − from`, the day's offsets are
/// `o_low(first) + ⌊(o_low(last) − o_low(first))·k / n⌋` and, for the high end (`o_low + span`),
/// the same with `⌈ ⌉`; the limits are `prev + offset` mod `M`. `n = 0` gives the first-day limits.
/// The gateway judges a read's high/low with this same function, so a reading the handheld takes
/// without a prompt is never flagged high or low at the office for that day, and one outside is.
pub fn limits_on(
    dials: u8,
    previous_reading: u64,
    first: (u64, u64),
    last: (u64, u64),
    window: (u32, u32),
    day: u32,
) -> DayLimits {
    let m: i128 = 10i128.pow(u32::from(dials.clamp(1, 19)));
    let prev = i128::from(previous_reading) % m;
    let ends = |(low, high): (u64, u64)| -> Option<(i128, i128)> {
        let (low, high) = (i128::from(low) % m, i128::from(high) % m);
        let span = (high - low).rem_euclid(m);
        if span == m - 1 {
            return None;
        }
        let mut o_low = (low - prev).rem_euclid(m);
        if o_low > m / 2 {
            o_low -= m;
        }
        Some((o_low, o_low + span))
    };
    let (Some((lo1, hi1)), Some((lo2, hi2))) = (ends(first), ends(last)) else {
        return DayLimits::Any;
    };
    let (from, to) = window;
    let n = i128::from(to.saturating_sub(from));
    let k = i128::from(day.clamp(from, to.max(from)) - from);
    let (lo, hi) = if n == 0 {
        (lo1, hi1)
    } else {
        (
            lo1 + ((lo2 - lo1) * k).div_euclid(n),
            hi1 - ((hi1 - hi2) * k).div_euclid(n),
        )
    };
    let at = |o: i128| (prev + o).rem_euclid(m) as u64;
    DayLimits::Range {
        low: at(lo),
        high: at(hi.max(lo)),
    }
}

impl RouteStop {
    /// The stop's limits for a read on `day` (days since 1970) of a route whose window is
    /// `window = (window_from, window_to)`: see [`limits_on`].
    pub fn limits_on(&self, window: (u32, u32), day: u32) -> DayLimits {
        limits_on(
            self.dials,
            self.previous_reading,
            (self.low_limit, self.high_limit),
            (self.low_limit_last, self.high_limit_last),
            window,
            day,
        )
    }
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
            Message::RouteData(r) => write_route(&mut w, r),
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
            message_type::ROUTE_DATA => Message::RouteData(read_route(&mut r, version)?),
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

/// Encodes a route for a route transfer: the RouteData message, zlib-deflated when `compressed`.
/// The length of the result is RouteOffer's `bytes`.
pub fn encode_route_transfer(route: &Route, compressed: bool) -> Vec<u8> {
    let plain = Message::RouteData(route.clone()).to_vec();
    if compressed {
        compress::deflate(&plain)
    } else {
        plain
    }
}

/// Decodes the bytes of a complete route transfer (see [`encode_route_transfer`]). Inflation is
/// bounded by [`limits::ROUTE_DATA`]. Returns the message, which is `RouteData` from a conforming
/// dock; the caller decides what to do with anything else.
pub fn decode_route_transfer(bytes: &[u8], compressed: bool) -> Result<Message, MessageError> {
    if compressed {
        let plain = compress::inflate(bytes, limits::ROUTE_DATA)?;
        Message::decode(&plain)
    } else {
        Message::decode(bytes)
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

/// RouteData is a table sent column by column: every stop's account id, then every stop's name, and
/// so on. Neighbouring stops share street names, id prefixes and number ranges, and deflate finds
/// far more of that when like sits next to like (measured on a realistic 2,000-stop route: 60 KB
/// deflated row by row, 44 KB column by column with front coding; see `examples/route_size.rs`).
fn write_route(w: &mut Writer<'_>, r: &Route) {
    w.str(&r.route_id);
    w.str(&r.cycle_id);
    w.varint(u64::from(r.window_from));
    w.varint(u64::from(r.window_to));
    let stops = &r.stops;
    w.varint(stops.len() as u64);
    let mut prev = 0u32;
    for s in stops {
        w.i64(i64::from(s.sequence) - i64::from(prev));
        prev = s.sequence;
    }
    for field in STOP_TEXT {
        let mut prev = "";
        for s in stops {
            w.front_coded(prev, field.get(s));
            prev = field.get(s);
        }
    }
    stops.iter().for_each(|s| w.u8(s.dials));
    stops.iter().for_each(|s| w.u8(s.decimals));
    stops.iter().for_each(|s| w.varint(u64::from(s.multiplier)));
    stops.iter().for_each(|s| w.u8(s.unit.to_u8()));
    stops.iter().for_each(|s| w.varint(s.previous_reading));
    for s in stops {
        w.i64(i64::from(s.previous_read_date) - i64::from(r.window_from));
    }
    // Limits as offsets from the previous reading (wrapping): small numbers that deflate well,
    // where the limits themselves would be as random as the reading.
    for s in stops {
        w.i64(s.low_limit.wrapping_sub(s.previous_reading) as i64);
    }
    for s in stops {
        w.i64(s.high_limit.wrapping_sub(s.previous_reading) as i64);
    }
    let orders = stops.iter().map(|s| s.field_orders.len()).sum::<usize>();
    w.varint(orders as u64);
    for (index, s) in stops.iter().enumerate() {
        for o in &s.field_orders {
            w.record(|w| {
                w.varint(index as u64);
                write_order(w, o);
            });
        }
    }
    // Version 2: the limits for a read on the window's last day, coded as the first-day ones.
    for s in stops {
        w.i64(s.low_limit_last.wrapping_sub(s.previous_reading) as i64);
    }
    for s in stops {
        w.i64(s.high_limit_last.wrapping_sub(s.previous_reading) as i64);
    }
}

/// The fewest bytes one stop can take in RouteData version 2: six front-coded strings of two bytes,
/// eleven one-byte numbers (nine in version 1).
const MIN_STOP_BYTES: usize = 6 * 2 + 11;

/// The text columns of RouteData, in wire order, with their limits.
struct TextField {
    name: &'static str,
    max: usize,
    get: fn(&RouteStop) -> &str,
    set: fn(&mut RouteStop, String),
}

impl TextField {
    fn get<'s>(&self, s: &'s RouteStop) -> &'s str {
        (self.get)(s)
    }
}

const STOP_TEXT: [TextField; 6] = [
    TextField {
        name: "account_id",
        max: limits::ID,
        get: |s| &s.account_id,
        set: |s, v| s.account_id = v,
    },
    TextField {
        name: "customer_name",
        max: limits::NAME,
        get: |s| &s.customer_name,
        set: |s, v| s.customer_name = v,
    },
    TextField {
        name: "service_address",
        max: limits::NAME,
        get: |s| &s.service_address,
        set: |s, v| s.service_address = v,
    },
    TextField {
        name: "meter_id",
        max: limits::ID,
        get: |s| &s.meter_id,
        set: |s, v| s.meter_id = v,
    },
    TextField {
        name: "location_note",
        max: limits::NOTE,
        get: |s| &s.location_note,
        set: |s, v| s.location_note = v,
    },
    TextField {
        name: "hazard_note",
        max: limits::NOTE,
        get: |s| &s.hazard_note,
        set: |s, v| s.hazard_note = v,
    },
];

fn read_route(r: &mut Reader<'_>, version: u8) -> Result<Route, MessageError> {
    let route_id = r.str("route_id", limits::ID)?;
    let cycle_id = r.str("cycle_id", limits::ID)?;
    let window_from = r.u32("window_from")?;
    let window_to = r.u32("window_to")?;
    // Every stop takes at least one byte in each column, so `count` bounds the allocation by the
    // message's length as well as by the limit.
    let n = r.count("stops", limits::STOPS)?;
    // Tighter still: a stop takes at least one byte in each of its 15 columns (two in the six text
    // columns), so a count the message cannot hold is refused before the stops are allocated.
    let min_stop = if version >= 2 {
        MIN_STOP_BYTES
    } else {
        MIN_STOP_BYTES - 2
    };
    if n.saturating_mul(min_stop) > r.remaining() {
        return Err(MessageError::Truncated {
            field: "stops",
            at: r.at(),
        });
    }
    let mut stops: Vec<RouteStop> = (0..n).map(|_| RouteStop::empty()).collect();
    let mut prev = 0u32;
    for s in &mut stops {
        let delta = r.i64("sequence")?;
        s.sequence = offset_u32("sequence", prev, delta)?;
        prev = s.sequence;
    }
    for field in &STOP_TEXT {
        let mut prev = String::new();
        for s in &mut stops {
            let v = r.front_coded(field.name, field.max, &prev)?;
            prev.clone_from(&v);
            (field.set)(s, v);
        }
    }
    for s in &mut stops {
        s.dials = r.u8("dials")?;
    }
    for s in &mut stops {
        s.decimals = r.u8("decimals")?;
    }
    for s in &mut stops {
        s.multiplier = r.u32("multiplier")?;
    }
    for s in &mut stops {
        s.unit = Unit::from_u8(r.u8("unit")?);
    }
    for s in &mut stops {
        s.previous_reading = r.varint("previous_reading")?;
    }
    for s in &mut stops {
        let delta = r.i64("previous_read_date")?;
        s.previous_read_date = offset_u32("previous_read_date", window_from, delta)?;
    }
    for s in &mut stops {
        s.low_limit = s.previous_reading.wrapping_add(r.i64("low_limit")? as u64);
    }
    for s in &mut stops {
        s.high_limit = s.previous_reading.wrapping_add(r.i64("high_limit")? as u64);
    }
    let orders = r.count("field_orders", limits::ORDERS)?;
    for _ in 0..orders {
        let (index, order) = r.record("field_order", |r| {
            let index = r.varint("stop_index")?;
            Ok((index, read_order(r)?))
        })?;
        let stop = usize::try_from(index)
            .ok()
            .and_then(|i| stops.get_mut(i))
            .ok_or(MessageError::OutOfRange {
                field: "stop_index",
                value: index,
            })?;
        if stop.field_orders.len() >= limits::ORDERS_PER_STOP {
            return Err(MessageError::TooManyItems {
                field: "field_orders",
                count: stop.field_orders.len() as u64 + 1,
                max: limits::ORDERS_PER_STOP,
            });
        }
        stop.field_orders.push(order);
    }
    if version >= 2 {
        for s in &mut stops {
            s.low_limit_last = s
                .previous_reading
                .wrapping_add(r.i64("low_limit_last")? as u64);
        }
        for s in &mut stops {
            s.high_limit_last = s
                .previous_reading
                .wrapping_add(r.i64("high_limit_last")? as u64);
        }
    } else {
        for s in &mut stops {
            s.low_limit_last = s.low_limit;
            s.high_limit_last = s.high_limit;
        }
    }
    Ok(Route {
        route_id,
        cycle_id,
        window_from,
        window_to,
        stops,
    })
}

/// `base + delta` as a `u32`, or the field is out of range.
fn offset_u32(field: &'static str, base: u32, delta: i64) -> Result<u32, MessageError> {
    let v = i64::from(base).checked_add(delta);
    v.and_then(|v| u32::try_from(v).ok())
        .ok_or(MessageError::OutOfRange {
            field,
            value: zigzag(delta),
        })
}

impl RouteStop {
    fn empty() -> Self {
        RouteStop {
            sequence: 0,
            account_id: String::new(),
            customer_name: String::new(),
            service_address: String::new(),
            meter_id: String::new(),
            location_note: String::new(),
            hazard_note: String::new(),
            dials: 0,
            decimals: 0,
            multiplier: 0,
            unit: Unit::Unknown(0),
            previous_reading: 0,
            previous_read_date: 0,
            low_limit: 0,
            high_limit: 0,
            field_orders: Vec::new(),
            low_limit_last: 0,
            high_limit_last: 0,
        }
    }
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

/// Appends the primitives.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn varint(&mut self, v: u64) {
        write_varint(self.out, v);
    }

    fn i64(&mut self, v: i64) {
        self.varint(zigzag(v));
    }

    fn bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }

    fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    fn list<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Self, &T)) {
        self.varint(items.len() as u64);
        for item in items {
            each(self, item);
        }
    }

    fn option<T>(&mut self, v: Option<&T>, each: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.out.push(0),
            Some(v) => {
                self.out.push(1);
                each(self, v);
            }
        }
    }

    /// A string as `shared` (bytes in common with the start of `prev`) then the rest as a string.
    fn front_coded(&mut self, prev: &str, s: &str) {
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
    fn record(&mut self, fields: impl FnOnce(&mut Self)) {
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
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` within the message.
    base: usize,
    /// A newer message version: ignore bytes after the known fields.
    lenient: bool,
}

impl<'a> Reader<'a> {
    fn at(&self) -> usize {
        self.base + self.pos
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn bytes(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], MessageError> {
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

    fn u8(&mut self, field: &'static str) -> Result<u8, MessageError> {
        Ok(self.bytes(field, 1)?[0])
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, MessageError> {
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

    fn u16(&mut self, field: &'static str) -> Result<u16, MessageError> {
        let v = self.varint(field)?;
        u16::try_from(v).map_err(|_| MessageError::OutOfRange { field, value: v })
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, MessageError> {
        let v = self.varint(field)?;
        u32::try_from(v).map_err(|_| MessageError::OutOfRange { field, value: v })
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, MessageError> {
        Ok(unzigzag(self.varint(field)?))
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, MessageError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(MessageError::OutOfRange {
                field,
                value: u64::from(other),
            }),
        }
    }

    fn str(&mut self, field: &'static str, max: usize) -> Result<String, MessageError> {
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
    fn front_coded(
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
    fn count(&mut self, field: &'static str, max: usize) -> Result<usize, MessageError> {
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

    fn list<T>(
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

    fn option<T>(
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

    fn record<T>(
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

    fn finish(&self) -> Result<(), MessageError> {
        if self.remaining() > 0 && !self.lenient {
            return Err(MessageError::TrailingBytes { at: self.at() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn stop() -> RouteStop {
        RouteStop {
            sequence: 10,
            account_id: "100234-01".into(),
            customer_name: "María Núñez".into(),
            service_address: "1412 W Orchard Ln".into(),
            meter_id: "SN48213377".into(),
            location_note: "left of driveway".into(),
            hazard_note: "dog in yard".into(),
            dials: 6,
            decimals: 0,
            multiplier: 1,
            unit: Unit::Hcf,
            previous_reading: 4_512,
            previous_read_date: 20_750,
            low_limit: 4_520,
            high_limit: 4_560,
            field_orders: vec![FieldOrder {
                order_id: 7,
                kind: FieldOrderKind::Reread,
                instructions: "customer disputes last bill".into(),
            }],
            low_limit_last: 4_524,
            high_limit_last: 4_575,
        }
    }

    fn read() -> Read {
        Read {
            device_seq: 1_001,
            meter_id: "SN48213377".into(),
            reading: 4_537,
            read_time: 1_795_000_000,
            read_type: ReadType::Regular,
            method: ReadMethod::Keyed,
            message_codes: vec!["LK".into()],
            skip_code: None,
            note: Some("leak at hose bib".into()),
            reader_id: "JS".into(),
            order: Some(OrderCompletion {
                order_id: 9,
                new_meter_id: Some("SN5000001".into()),
                new_meter_initial: Some(0),
            }),
        }
    }

    fn all_messages() -> Vec<Message> {
        vec![
            Message::Hello(Hello {
                device_id: "HH-0042".into(),
                firmware_version: "3.1.4".into(),
                protocol_versions: vec![2],
                max_payload: 1024,
                window: 8,
                compression: Compression::DEFLATE,
                pending_reads: 312,
                state_id: u64::MAX,
            }),
            Message::Welcome(Welcome {
                protocol_version: 2,
                max_payload: 512,
                window: 4,
                compression: Compression::NONE,
                server_time: -1,
                assigned_routes: vec!["R07".into(), "R12".into()],
                held_seq: 1_000,
            }),
            Message::ClockSync {
                server_time: i64::MIN,
            },
            Message::RouteOffer(RouteOffer {
                transfer_id: u32::MAX,
                route_id: "R07".into(),
                cycle_id: "2026-11".into(),
                stops: 1,
                bytes: 300,
                compressed: true,
            }),
            Message::RouteAccept {
                transfer_id: 3,
                resume_from: 0,
            },
            Message::RouteData(Route {
                route_id: "R07".into(),
                cycle_id: "2026-11".into(),
                window_from: 20_758,
                window_to: 20_777,
                stops: vec![stop(), stop()],
            }),
            Message::MessageCodeTable {
                codes: vec![MessageCode {
                    code: "DG".into(),
                    category: "hazard".into(),
                    description: "Dog".into(),
                    requires_follow_up: false,
                }],
            },
            Message::FieldOrders {
                orders: vec![AccountOrder {
                    account_id: "100234-01".into(),
                    meter_id: "SN48213377".into(),
                    order: FieldOrder {
                        order_id: u64::MAX,
                        kind: FieldOrderKind::Unknown(77),
                        instructions: String::new(),
                    },
                }],
            },
            Message::ReadBatch {
                reads: vec![read(), read()],
            },
            Message::ReadAck {
                up_to_seq: u64::MAX,
                refused: vec![
                    RefusedRead {
                        device_seq: 17,
                        reason: RefusalReason::SeqConflict,
                    },
                    RefusedRead {
                        device_seq: 18,
                        reason: RefusalReason::Unknown(200),
                    },
                ],
            },
            Message::Error {
                code: error_code::BUSY,
                text: "serving another handheld".into(),
            },
            Message::Bye {
                reason: ByeReason::Done,
            },
            Message::Unknown {
                message_type: 0x7E,
                body: vec![1, 2, 3],
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in all_messages() {
            let bytes = m.to_vec();
            assert_eq!(bytes[0], m.message_type());
            assert_eq!(Message::decode(&bytes), Ok(m.clone()), "{}", m.name());
            assert_eq!(m.validate(), Ok(()));
        }
    }

    #[test]
    fn every_proper_prefix_of_a_message_is_rejected() {
        for m in all_messages() {
            if matches!(m, Message::Unknown { .. }) {
                continue;
            }
            let bytes = m.to_vec();
            for cut in 0..bytes.len() {
                assert!(
                    Message::decode(&bytes[..cut]).is_err(),
                    "{} cut at {cut}",
                    m.name()
                );
            }
        }
    }

    #[test]
    fn varints_use_the_shortest_little_endian_groups() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (300, &[0xAC, 0x02]),
            (16_384, &[0x80, 0x80, 0x01]),
            (
                u64::MAX,
                &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            ),
        ];
        for (v, want) in cases {
            let mut out = Vec::new();
            write_varint(&mut out, *v);
            assert_eq!(&out, want, "{v}");
            let mut r = Reader {
                buf: want,
                pos: 0,
                base: 0,
                lenient: false,
            };
            assert_eq!(r.varint("v"), Ok(*v));
        }
    }

    #[test]
    fn overlong_and_oversized_varints_are_rejected() {
        let read = |b: &[u8]| {
            Reader {
                buf: b,
                pos: 0,
                base: 0,
                lenient: false,
            }
            .varint("v")
        };
        assert_eq!(
            read(&[0x80, 0x00]),
            Err(MessageError::NonCanonicalVarint { at: 0 })
        );
        assert_eq!(
            read(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]),
            Err(MessageError::VarintOverflow { at: 0 })
        );
        assert_eq!(
            read(&[0x80; 11]),
            Err(MessageError::VarintOverflow { at: 0 })
        );
    }

    #[test]
    fn zigzag_keeps_small_negative_numbers_short() {
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
        for v in [0, 1, -1, 1_795_000_000, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn a_hostile_list_count_is_refused_before_allocating() {
        // ReadBatch claiming 2^62 reads in 12 bytes.
        let mut bytes = vec![message_type::READ_BATCH, 1];
        write_varint(&mut bytes, 1 << 62);
        assert_eq!(
            Message::decode(&bytes),
            Err(MessageError::TooManyItems {
                field: "reads",
                count: 1 << 62,
                max: limits::READS
            })
        );
        // Within the limit but more items than bytes left.
        let mut bytes = vec![message_type::READ_BATCH, 1];
        write_varint(&mut bytes, 5_000);
        assert!(matches!(
            Message::decode(&bytes),
            Err(MessageError::Truncated { field: "reads", .. })
        ));
    }

    #[test]
    fn a_string_over_its_limit_is_refused_with_the_field_named() {
        let m = Message::Error {
            code: 1,
            text: "x".repeat(limits::NOTE + 1),
        };
        assert_eq!(
            Message::decode(&m.to_vec()),
            Err(MessageError::StringTooLong {
                field: "text",
                len: 256,
                max: 255
            })
        );
        assert!(m.encode_checked(&mut Vec::new()).is_err());
    }

    #[test]
    fn invalid_utf8_is_refused_at_its_offset() {
        let bytes = [message_type::ERROR, 1, 0x01, 0x03, b'a', 0xC3, 0x28];
        assert_eq!(
            Message::decode(&bytes),
            Err(MessageError::BadUtf8 {
                field: "text",
                at: 5
            })
        );
    }

    #[test]
    fn a_bool_other_than_zero_or_one_is_refused() {
        let offer = Message::RouteOffer(RouteOffer {
            transfer_id: 1,
            route_id: "R".into(),
            cycle_id: "C".into(),
            stops: 1,
            bytes: 1,
            compressed: true,
        });
        let mut bytes = offer.to_vec();
        let last = bytes.len() - 1;
        bytes[last] = 2;
        assert_eq!(
            Message::decode(&bytes),
            Err(MessageError::OutOfRange {
                field: "compressed",
                value: 2
            })
        );
    }

    #[test]
    fn an_unknown_message_type_is_reported_not_fatal() {
        assert_eq!(
            Message::decode(&[0x99, 1, 0xAA]),
            Ok(Message::Unknown {
                message_type: 0x99,
                body: vec![1, 0xAA]
            })
        );
        assert_eq!(Message::decode(&[]), Err(MessageError::Empty));
    }

    #[test]
    fn a_newer_message_version_may_append_fields_to_the_body_and_to_records() {
        // Version 2 of ReadBatch with one extra byte in the read record and one after the list.
        let mut v1 = Vec::new();
        Message::ReadBatch {
            reads: vec![read()],
        }
        .encode(&mut v1);
        let mut rec = Vec::new();
        write_read(&mut Writer { out: &mut rec }, &read());
        rec.push(0xEE);
        let mut v2 = vec![message_type::READ_BATCH, 2, 1];
        write_varint(&mut v2, rec.len() as u64);
        v2.extend_from_slice(&rec);
        v2.push(0xEE);
        assert_eq!(Message::decode(&v2), Message::decode(&v1));
        // The same bytes at version 1 are an error: a v1 decoder knows every v1 field.
        v2[1] = 1;
        assert!(matches!(
            Message::decode(&v2),
            Err(MessageError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn a_route_claiming_more_stops_than_its_bytes_can_hold_is_refused() {
        let mut bytes = vec![message_type::ROUTE_DATA, 2, 1, b'R', 1, b'C', 0, 0];
        write_varint(&mut bytes, 10);
        bytes.extend_from_slice(&[0u8; 10 * MIN_STOP_BYTES - 1]);
        assert!(matches!(
            Message::decode(&bytes),
            Err(MessageError::Truncated { field: "stops", .. })
        ));
    }

    #[test]
    fn version_zero_is_unsupported() {
        assert_eq!(
            Message::decode(&[message_type::READ_ACK, 0, 5]),
            Err(MessageError::UnsupportedVersion {
                message_type: message_type::READ_ACK,
                version: 0
            })
        );
    }

    #[test]
    fn a_record_longer_than_the_message_is_an_overrun() {
        let bytes = [message_type::READ_BATCH, 1, 1, 0x7F, 0x01];
        assert_eq!(
            Message::decode(&bytes),
            Err(MessageError::RecordOverrun { at: 3, len: 127 })
        );
    }

    #[test]
    fn limits_that_wrap_through_zero_accept_readings_on_both_sides_of_the_rollover() {
        let mut s = stop();
        s.previous_reading = 999_940;
        (s.low_limit, s.high_limit) = (999_950, 30);
        (s.low_limit_last, s.high_limit_last) = (999_950, 30);
        let l = s.limits_on((100, 130), 110);
        assert!(l.contains(999_990));
        assert!(l.contains(0));
        assert!(l.contains(30));
        assert!(!l.contains(31));
        assert!(!l.contains(500_000));
        (s.low_limit, s.high_limit) = (100, 200);
        (s.low_limit_last, s.high_limit_last) = (100, 200);
        s.previous_reading = 90;
        let l = s.limits_on((100, 130), 110);
        assert!(l.contains(100) && l.contains(200) && !l.contains(99) && !l.contains(201));
    }

    #[test]
    fn limits_move_linearly_from_the_first_day_to_the_last() {
        let mut s = stop();
        s.previous_reading = 1_000;
        (s.low_limit, s.high_limit) = (1_010, 1_040);
        (s.low_limit_last, s.high_limit_last) = (1_020, 1_071);
        let w = (20_000, 20_030);
        assert_eq!(
            s.limits_on(w, 20_000),
            DayLimits::Range {
                low: 1_010,
                high: 1_040
            }
        );
        assert_eq!(
            s.limits_on(w, 20_030),
            DayLimits::Range {
                low: 1_020,
                high: 1_071
            }
        );
        // Day 10 of 30: low 1010 + ⌊10·10/30⌋ = 1013, high 1040 + ⌈31·10/30⌉ = 1051.
        assert_eq!(
            s.limits_on(w, 20_010),
            DayLimits::Range {
                low: 1_013,
                high: 1_051
            }
        );
        // Days outside the window take the nearest end.
        assert_eq!(s.limits_on(w, 19_000), s.limits_on(w, 20_000));
        assert_eq!(s.limits_on(w, 21_000), s.limits_on(w, 20_030));
        // A one-day window, or a reversed one, gives the first-day limits.
        assert_eq!(
            s.limits_on((20_000, 20_000), 20_000),
            s.limits_on(w, 20_000)
        );
    }

    #[test]
    fn limits_crossing_the_rollover_between_the_two_ends_wrap_on_the_days_between() {
        let mut s = stop();
        s.dials = 4;
        s.previous_reading = 9_950;
        // First day 9960–9990; last day 9980–0030 (the range wraps by then).
        (s.low_limit, s.high_limit) = (9_960, 9_990);
        (s.low_limit_last, s.high_limit_last) = (9_980, 30);
        let l = s.limits_on((0, 20), 20);
        assert_eq!(
            l,
            DayLimits::Range {
                low: 9_980,
                high: 30
            }
        );
        assert!(l.contains(9_999) && l.contains(0) && l.contains(30) && !l.contains(31));
        // Half way: offsets from 9950 go low 10 → 30 and high 40 → 80, so the limits are 9970 and
        // 9950 + 60 = 10010, which wraps to 10.
        assert_eq!(
            s.limits_on((0, 20), 10),
            DayLimits::Range {
                low: 9_970,
                high: 10
            }
        );
    }

    #[test]
    fn a_stop_without_limits_accepts_every_reading_on_every_day() {
        let mut s = stop();
        s.dials = 5;
        s.previous_reading = 123;
        (s.low_limit, s.high_limit) = (0, 99_999);
        (s.low_limit_last, s.high_limit_last) = (0, 99_999);
        assert_eq!(s.limits_on((0, 30), 15), DayLimits::Any);
        assert!(DayLimits::Any.contains(u64::MAX));
        // An inactive account: no movement at all is expected.
        (s.low_limit, s.high_limit) = (123, 123);
        (s.low_limit_last, s.high_limit_last) = (123, 123);
        let l = s.limits_on((0, 30), 15);
        assert!(l.contains(123) && !l.contains(124) && !l.contains(122));
    }

    #[test]
    fn version_one_bodies_decode_with_the_fields_version_two_appended_at_their_defaults() {
        // Hello v1: no state id.
        let hello = Message::Hello(Hello {
            device_id: "HH-1".into(),
            firmware_version: "1".into(),
            protocol_versions: vec![1],
            max_payload: 1024,
            window: 8,
            compression: Compression::NONE,
            pending_reads: 0,
            state_id: 0,
        });
        let mut bytes = hello.to_vec();
        bytes.pop(); // the state id (0: one byte)
        bytes[1] = 1;
        assert_eq!(Message::decode(&bytes), Ok(hello));
        // ReadAck v1: no refusals.
        assert_eq!(
            Message::decode(&[message_type::READ_ACK, 1, 5]),
            Ok(Message::ReadAck {
                up_to_seq: 5,
                refused: Vec::new()
            })
        );
        // RouteData v1: the last-day limits are the first-day ones.
        let mut one = stop();
        (one.low_limit_last, one.high_limit_last) = (one.low_limit, one.high_limit);
        let route = Route {
            route_id: "R".into(),
            cycle_id: "C".into(),
            window_from: 1,
            window_to: 2,
            stops: vec![one],
        };
        let mut bytes = Message::RouteData(route.clone()).to_vec();
        bytes.truncate(bytes.len() - 2);
        bytes[1] = 1;
        assert_eq!(Message::decode(&bytes), Ok(Message::RouteData(route)));
    }

    #[test]
    fn a_route_transfer_round_trips_compressed_and_plain() {
        let route = Route {
            route_id: "R07".into(),
            cycle_id: "2026-11".into(),
            window_from: 1,
            window_to: 2,
            stops: vec![stop(); 50],
        };
        for compressed in [false, true] {
            let bytes = encode_route_transfer(&route, compressed);
            assert_eq!(
                decode_route_transfer(&bytes, compressed),
                Ok(Message::RouteData(route.clone()))
            );
        }
        assert!(
            encode_route_transfer(&route, true).len()
                < encode_route_transfer(&route, false).len() / 5
        );
    }

    #[test]
    fn code_enums_keep_unknown_codes_and_names() {
        for code in 0..=255u8 {
            assert_eq!(Unit::from_u8(code).to_u8(), code);
            assert_eq!(ReadType::from_u8(code).to_u8(), code);
        }
        assert_eq!(
            FieldOrderKind::from_name("meter_change"),
            Some(FieldOrderKind::MeterChange)
        );
        assert_eq!(ReadMethod::Probe.name(), Some("probe"));
        assert_eq!(ByeReason::Unknown(9).name(), None);
    }

    #[test]
    fn errors_display_the_field_and_offset() {
        let e = MessageError::Truncated {
            field: "meter_id",
            at: 17,
        };
        assert_eq!(e.to_string(), "message ends inside `meter_id` at byte 17");
    }
}
