//! The domain core: accounts, meters, registers, routes, read cycles, reads and flags.
//!
//! **Architecture Invariant:** this module knows nothing of SQLite, HTTP, serial ports or the wire
//! protocol. It is plain data and pure functions; time is always passed in.

mod adjustment;
mod register;

pub use adjustment::{Adjustment, AdjustmentKind};
pub use register::{DayLimits, Register, RegisterDelta, Unit, WindowLimits};

use chrono::{NaiveDate, NaiveDateTime};
use std::fmt;
use std::str::FromStr;

/// A value that did not name a known member of a closed list (status, unit, kind...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}` (expected one of: {expected})")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Implements `as_str`, `Display` and `FromStr` for a closed enum spelled in lower snake case.
macro_rules! spelled_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $ty {
            type Err = $crate::domain::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim();
                $( if t.eq_ignore_ascii_case($text) { return Ok($ty::$variant); } )+
                Err($crate::domain::UnknownValue { what: $what, value: s.to_string(), expected: concat!($($text, " "),+) })
            }
        }
    };
}
pub(crate) use spelled_enum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountStatus {
    Active,
    Inactive,
    Closed,
}
spelled_enum!(AccountStatus, "account status", { Active => "active", Inactive => "inactive", Closed => "closed" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterStatus {
    /// Set at a service address and read every cycle.
    Active,
    /// In the warehouse (pulled at a meter change, or new stock).
    Inventory,
    /// Scrapped.
    Retired,
}
spelled_enum!(MeterStatus, "meter status", { Active => "active", Inventory => "inventory", Retired => "retired" });

/// How a historical reading came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadKind {
    /// Read at the meter.
    Actual,
    /// Estimated by billing (no read that period).
    Estimated,
    /// First reading of a newly set meter: the base for its consumption, not a consumption itself.
    Initial,
    /// Last reading of a meter as it is pulled (meter change) or the account closes.
    Final,
}
spelled_enum!(ReadKind, "read kind", { Actual => "actual", Estimated => "estimated", Initial => "initial", Final => "final" });

impl ReadKind {
    /// Order of an account's reads on one day: the old meter's final before the new meter's initial,
    /// closing reads in between.
    pub fn same_day_rank(self) -> u8 {
        match self {
            ReadKind::Final => 0,
            ReadKind::Actual | ReadKind::Estimated => 1,
            ReadKind::Initial => 2,
        }
    }
}

/// A customer account at a service address: what gets billed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub service_address: String,
    pub status: AccountStatus,
    /// Rate class as the District names it: `residential`, `multi_family`, `commercial`, `industrial`,
    /// `irrigation`, or any other class the tariff knows. Stored lower case.
    pub rate_class: String,
    pub route_id: String,
    /// Position in the route's walk order.
    pub sequence: u32,
    /// Assessor parcel number.
    pub apn: String,
    pub phone: String,
}

/// A physical meter (register). It belongs to one account at a time; the read history belongs to the
/// account, so it follows the account across meter changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meter {
    pub id: String,
    /// `None` for a meter in inventory.
    pub account_id: Option<String>,
    pub status: MeterStatus,
    pub register: Register,
    pub installed_on: Option<NaiveDate>,
    pub removed_on: Option<NaiveDate>,
}

/// One reading in an account's history (imported from the CIS, or produced by a closed cycle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRead {
    pub account_id: String,
    pub meter_id: String,
    pub read_on: NaiveDate,
    pub reading: u64,
    pub kind: ReadKind,
}

/// A meter-reading route: the accounts one reader walks, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub id: String,
    pub name: String,
}

/// A message code the reader attaches to a read (`LK` leak seen, `DG` dog, `BX` box needs cleaning...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageCode {
    pub code: String,
    /// `trouble`, `skip`, `note`, `hazard`... as the District groups them.
    pub category: String,
    pub description: String,
    /// A read carrying this code opens a follow-up item for the office (a leak seen, a broken lid).
    pub requires_follow_up: bool,
    /// Retired codes stay for history but are no longer sent to handhelds.
    pub retired: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CycleStatus {
    Open,
    Closed,
}
spelled_enum!(CycleStatus, "cycle status", { Open => "open", Closed => "closed" });

/// A monthly read cycle (`2026-11`) over a set of routes, with its read window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub id: String,
    pub window_from: NaiveDate,
    pub window_to: NaiveDate,
    pub routes: Vec<String>,
    pub status: CycleStatus,
}

/// What the reader (or the handheld) says about a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadType {
    Regular,
    /// Outside the high limit, re-keyed and confirmed at the meter.
    HighConfirmed,
    /// Below the low limit, re-keyed and confirmed at the meter.
    LowConfirmed,
    /// Not read (skip code says why).
    Skipped,
}
spelled_enum!(ReadType, "read type", { Regular => "regular", HighConfirmed => "high_confirmed", LowConfirmed => "low_confirmed", Skipped => "skipped" });

/// How a reading was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadMethod {
    Keyed,
    Probe,
    Radio,
    /// Not read at all: estimated by the office (at cycle close, or by a clerk). Never from the
    /// field (the wire protocol has no such method, and a reads CSV is keyed).
    Estimated,
}
spelled_enum!(ReadMethod, "read method", { Keyed => "keyed", Probe => "probe", Radio => "radio", Estimated => "estimated" });

/// A read as it arrives from the field (handheld upload or a reads CSV), before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRead {
    pub meter_id: String,
    /// District local time at the meter.
    pub read_at: NaiveDateTime,
    /// The reading exactly as keyed (may be malformed: that is the `invalid_reading` rule's business).
    pub raw_reading: String,
    pub read_type: ReadType,
    pub method: ReadMethod,
    pub reader: String,
    pub codes: Vec<String>,
    pub skip_code: Option<String>,
    pub note: Option<String>,
    /// The handheld that sent it, with its idempotency key; `None` for CSV imports and the office.
    pub device: Option<DeviceRef>,
}

/// A handheld's read as the gateway recognises it when it comes again: (device, state id,
/// sequence) names it, and the digest of its content proves a repeat is the same read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceRef {
    pub device_id: String,
    /// The handheld's state identity: a random number made when its read storage was initialised
    /// (a wiped or replaced unit gets a new one). Sequence numbers are unique per (device, state).
    pub state_id: u64,
    pub seq: u64,
    /// SHA-256 of the read as the handheld sent it (the wire encoding of its `Read` record).
    pub content: [u8; 32],
}

impl FieldRead {
    /// The keyed reading as a register value, if it is a plain decimal number.
    pub fn reading(&self) -> Option<u64> {
        let t = self.raw_reading.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    }

    /// True when the reader re-keyed and confirmed an out-of-range read at the meter.
    pub fn confirmed(&self) -> bool {
        matches!(
            self.read_type,
            ReadType::HighConfirmed | ReadType::LowConfirmed
        )
    }
}

/// Stable ids of the validation rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlagKind {
    High,
    Low,
    Zero,
    Negative,
    Rollover,
    InactiveUsage,
    MeterMismatch,
    InvalidReading,
    Duplicate,
    OutOfWindow,
    Missing,
    /// Read by a handheld that does not carry the meter's route (the route is assigned to another).
    OffRoute,
}
spelled_enum!(FlagKind, "flag", {
    High => "high", Low => "low", Zero => "zero", Negative => "negative", Rollover => "rollover",
    InactiveUsage => "inactive_usage", MeterMismatch => "meter_mismatch", InvalidReading => "invalid_reading",
    Duplicate => "duplicate", OutOfWindow => "out_of_window", Missing => "missing", OffRoute => "off_route",
});

/// Why a read from a handheld was not stored. The read's content is kept in the refused-reads log,
/// where a clerk sees it; the handheld is told (`ReadAck.refused`, the HTTP receipt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The gateway holds a different read under the same (device, state id, sequence number).
    SeqConflict,
    /// An HTTP upload's batch id was used before for different reads.
    BatchConflict,
    /// The read time is far outside the cycle or after the read reached the gateway.
    BadTime,
    /// A meter on a route assigned to another handheld, and the District refuses off-route reads.
    OffRoute,
    /// A field outside its range (a sequence number of 0 or above 2^63 − 1).
    BadRead,
}
spelled_enum!(RefusalReason, "refusal reason", {
    SeqConflict => "seq_conflict", BatchConflict => "batch_conflict", BadTime => "bad_time",
    OffRoute => "off_route", BadRead => "bad_read",
});

impl FlagKind {
    /// Whether this flag makes the read an exception a clerk must resolve. `rollover` is informational.
    pub fn is_exception(self) -> bool {
        !matches!(self, FlagKind::Rollover)
    }
}

/// Where a read stands in review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadStatus {
    /// Passed validation (possibly with informational flags such as rollover).
    Accepted,
    /// Has at least one exception flag awaiting a clerk.
    Flagged,
    /// Estimated (missing at cycle close, or by a clerk).
    Estimated,
    /// A clerk accepted, corrected or otherwise resolved the exceptions.
    Resolved,
    /// Held out of the billing batch by a clerk.
    Held,
}
spelled_enum!(ReadStatus, "read status", { Accepted => "accepted", Flagged => "flagged", Estimated => "estimated", Resolved => "resolved", Held => "held" });

/// One rule's verdict on a read, with what a clerk needs to understand it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub kind: FlagKind,
    /// IEC 61968-9 reading quality code, e.g. `3.6.3`.
    pub quality: String,
    /// Plain-language explanation: expected use, basis, ratio...
    pub explanation: String,
}

/// What an office user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRole {
    /// Works the exception queue, field orders and reports (signs in with a password).
    Clerk,
    /// A clerk who also approves leak credits above the District's limit (signs in with a password).
    Admin,
    /// The billing run: fetches closed cycles' batches with an API token.
    Billing,
}
