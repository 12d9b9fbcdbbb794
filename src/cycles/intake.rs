//! Which reads are taken at all, before validation judges them: read times the gateway can keep and
//! that belong near the cycle, sequence numbers in range, and the District's policy on off-route
//! reads (a handheld reading a meter on a route assigned to another).
//!
//! A refused read is not stored: the sync engine logs it with its content in `refused_reads` and tells
//! the handheld; a reads CSV with one is refused whole (`FILE:LINE: column read_at: ...`).

use crate::domain::{FieldRead, Flag, FlagKind, RefusalReason};
use chrono::{Duration, NaiveDate, NaiveDateTime};
use serde::Deserialize;

/// What the gateway does with a handheld's read of a meter on a route assigned to another handheld.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffRoutePolicy {
    /// Store it, flagged `off_route` for a clerk (readers do help a colleague finish a route).
    #[default]
    Flag,
    /// Refuse it: not stored, logged with its content in the refused-reads list.
    Refuse,
}

/// `[reads]` settings.
///
/// ```toml
/// [reads]
/// earliest_days_before_window = 60
/// latest_hours_after_received = 24
/// off_route = "flag"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawReads")]
pub struct ReadsConfig {
    /// A read time more than this many days before the cycle's window opens is refused.
    pub earliest_days_before_window: i64,
    /// A read time more than this many hours after the read reached the gateway is refused (the
    /// handheld's clock is wrong); a smaller lead is stored, flagged `out_of_window`.
    pub latest_hours_after_received: i64,
    pub off_route: OffRoutePolicy,
}

impl Default for ReadsConfig {
    fn default() -> Self {
        Self {
            earliest_days_before_window: 60,
            latest_hours_after_received: 24,
            off_route: OffRoutePolicy::Flag,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawReads {
    earliest_days_before_window: Option<i64>,
    latest_hours_after_received: Option<i64>,
    off_route: Option<OffRoutePolicy>,
}

impl TryFrom<RawReads> for ReadsConfig {
    type Error = String;

    fn try_from(raw: RawReads) -> Result<Self, String> {
        let d = ReadsConfig::default();
        let c = ReadsConfig {
            earliest_days_before_window: raw
                .earliest_days_before_window
                .unwrap_or(d.earliest_days_before_window),
            latest_hours_after_received: raw
                .latest_hours_after_received
                .unwrap_or(d.latest_hours_after_received),
            off_route: raw.off_route.unwrap_or(d.off_route),
        };
        if !(0..=3650).contains(&c.earliest_days_before_window) {
            return Err("reads.earliest_days_before_window must be between 0 and 3650".into());
        }
        if !(0..=24 * 31).contains(&c.latest_hours_after_received) {
            return Err("reads.latest_hours_after_received must be between 0 and 744".into());
        }
        Ok(c)
    }
}

/// Why one read is not taken, in a sentence that names the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RefusalReason,
    pub detail: String,
}

/// The read times a cycle takes: from `earliest_days_before_window` before the window opens to
/// `latest_hours_after_received` after the read reached the gateway, and never a time the store could
/// not give back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadTimeBounds {
    pub earliest: NaiveDateTime,
    pub latest: NaiveDateTime,
}

impl ReadTimeBounds {
    pub fn new(cfg: &ReadsConfig, window_from: NaiveDate, received: NaiveDateTime) -> Self {
        let earliest = window_from
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .checked_sub_signed(Duration::days(cfg.earliest_days_before_window))
            .unwrap_or(NaiveDateTime::MIN);
        let latest = received
            .checked_add_signed(Duration::hours(cfg.latest_hours_after_received))
            .unwrap_or(NaiveDateTime::MAX);
        Self { earliest, latest }
    }

    /// `None` when `read_at` is taken; else why not.
    pub fn check(&self, read_at: NaiveDateTime, meter_id: &str) -> Option<Refusal> {
        let why = if !crate::store::time_is_storable(read_at) {
            "is not a calendar time the gateway can keep".to_string()
        } else if read_at < self.earliest {
            format!(
                "is before {}, too long before the cycle's window",
                self.earliest.format("%Y-%m-%d")
            )
        } else if read_at > self.latest {
            format!(
                "is after {}, later than the read reached the gateway allows (is the handheld's clock right?)",
                self.latest.format("%Y-%m-%d %H:%M")
            )
        } else {
            return None;
        };
        Some(Refusal {
            reason: RefusalReason::BadTime,
            detail: format!("read of meter {meter_id}: read time {read_at} {why}"),
        })
    }
}

/// The largest sequence number the store keeps (a signed 64-bit integer).
pub const MAX_DEVICE_SEQ: u64 = i64::MAX as u64;

/// Refuses a handheld read whose sequence number is 0 or beyond what the store keeps, and any read
/// whose reading is a number beyond what the store keeps (a signed 64-bit integer; no register has
/// that many dials).
pub fn check_seq(read: &FieldRead) -> Option<Refusal> {
    if read.reading().is_some_and(|r| r > MAX_DEVICE_SEQ) {
        return Some(Refusal {
            reason: RefusalReason::BadRead,
            detail: format!(
                "read of meter {}: reading {} is beyond any register",
                crate::text::shown(&read.meter_id),
                read.raw_reading.trim()
            ),
        });
    }
    let d = read.device.as_ref()?;
    (d.seq == 0 || d.seq > MAX_DEVICE_SEQ).then(|| Refusal {
        reason: RefusalReason::BadRead,
        detail: format!(
            "read of meter {}: device_seq {} is outside 1 – {MAX_DEVICE_SEQ}",
            read.meter_id, d.seq
        ),
    })
}

/// Refuses a read whose meter id, reading, reader, codes or note carry a NUL or a bidirectional
/// control character ([`crate::text`]), from a CSV, a cradle or the HTTP API alike.
pub fn check_text(read: &FieldRead) -> Option<Refusal> {
    let fields = [
        ("meter_id", Some(read.meter_id.as_str())),
        ("reading", Some(read.raw_reading.as_str())),
        ("reader", Some(read.reader.as_str())),
        ("skip_code", read.skip_code.as_deref()),
        ("note", read.note.as_deref()),
    ];
    let codes = read
        .codes
        .iter()
        .map(|c| ("a message code", Some(c.as_str())));
    fields
        .into_iter()
        .chain(codes)
        .find_map(|(name, value)| crate::text::check(name, value?).err())
        .map(|e| Refusal {
            reason: RefusalReason::BadRead,
            detail: format!("read of meter {}: {e}", crate::text::shown(&read.meter_id)),
        })
}

/// A read of a meter whose route is assigned, in this cycle, to another handheld than the one that
/// sent it: the flag (or, by policy, the refusal) that says so.
pub fn off_route(
    read: &FieldRead,
    route_id: &str,
    assigned_to: &str,
    policy: OffRoutePolicy,
) -> Result<Flag, Refusal> {
    let device = read.device.as_ref().map_or("", |d| d.device_id.as_str());
    let reader = if read.reader.is_empty() {
        String::new()
    } else {
        format!(" (reader {})", read.reader)
    };
    let explanation = format!(
        "read by {device}{reader}, which does not carry this meter's route: meter {} is on route \
         {route_id}, assigned to {assigned_to}",
        read.meter_id
    );
    match policy {
        OffRoutePolicy::Flag => Ok(Flag {
            kind: FlagKind::OffRoute,
            quality: crate::vee::quality::of(FlagKind::OffRoute).to_string(),
            explanation,
        }),
        OffRoutePolicy::Refuse => Err(Refusal {
            reason: RefusalReason::OffRoute,
            detail: format!("{explanation}; the District refuses off-route reads"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
    }

    #[test]
    fn read_times_are_taken_from_60_days_before_the_window_to_a_day_after_receipt() {
        let window = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let b = ReadTimeBounds::new(&ReadsConfig::default(), window, at(2026, 11, 20, 12));
        assert_eq!(b.check(at(2026, 9, 2, 0), "M"), None);
        assert_eq!(b.check(at(2026, 11, 21, 12), "M"), None);
        let early = b.check(at(2026, 9, 1, 23), "M").unwrap();
        assert_eq!(early.reason, RefusalReason::BadTime);
        assert!(early.detail.contains("meter M"), "{}", early.detail);
        assert!(b.check(at(2026, 11, 21, 13), "M").is_some());
        let far = NaiveDate::from_ymd_opt(10_000, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        assert!(b.check(far, "M").unwrap().detail.contains("+10000-01-01"));
    }

    #[test]
    fn impossible_settings_are_refused_with_their_name() {
        let e = toml::from_str::<ReadsConfig>("earliest_days_before_window = -1").unwrap_err();
        assert!(e.to_string().contains("earliest_days_before_window"), "{e}");
        let c: ReadsConfig = toml::from_str("off_route = \"refuse\"").unwrap();
        assert_eq!(c.off_route, OffRoutePolicy::Refuse);
        assert_eq!(c.latest_hours_after_received, 24);
        assert!(toml::from_str::<ReadsConfig>("off_route = \"ignore\"").is_err());
    }
}
