//! The district's clock: the one place the daemon asks what time it is, and the district's time zone
//! (`[district]`) that turns the instant into district local time (`NaiveDateTime`), the time every
//! read window, receipt, session and audit line is in.
//!
//! A [`DistrictClock`] is a [`Clock`] (the system's, or a settable one in tests) and a
//! [`DistrictZone`]. The daemon holds one in its state (`serve::state::AppState::clock`) and hands it
//! to the sync engine; the CLI builds one at its edge. Nothing below reads a clock: `domain` and `vee`
//! take the time as a parameter.

use chrono::{DateTime, NaiveDateTime, Utc};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Where the current instant comes from.
pub trait Clock: Send + Sync {
    fn now_utc(&self) -> DateTime<Utc>;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_utc(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that says what it is told, for tests: it stands still until set or advanced.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug)]
pub struct FixedClock(std::sync::Mutex<DateTime<Utc>>);

#[cfg(any(test, feature = "test-support"))]
impl FixedClock {
    pub fn new(at: DateTime<Utc>) -> FixedClock {
        FixedClock(std::sync::Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += by;
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Clock for FixedClock {
    fn now_utc(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The district's time zone: an IANA zone, or the host's own (`"local"`, chrono's `Local`, which
/// follows `TZ` and `/etc/localtime`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum DistrictZone {
    /// The host's local zone: right only when the server is kept in the district's time.
    #[default]
    HostLocal,
    Named(chrono_tz::Tz),
}

impl DistrictZone {
    /// `at` as district local time.
    pub fn local_of(&self, at: DateTime<Utc>) -> NaiveDateTime {
        match self {
            DistrictZone::HostLocal => at.with_timezone(&chrono::Local).naive_local(),
            DistrictZone::Named(tz) => at.with_timezone(tz).naive_local(),
        }
    }
}

impl fmt::Display for DistrictZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DistrictZone::HostLocal => f.write_str("local"),
            DistrictZone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

impl FromStr for DistrictZone {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "local" {
            return Ok(DistrictZone::HostLocal);
        }
        chrono_tz::Tz::from_str(s)
            .map(DistrictZone::Named)
            .map_err(|_| {
                format!(
                    "district.time_zone: unknown time zone {s:?} (an IANA name such as \
                 \"America/Los_Angeles\", or \"local\" for the host's)"
                )
            })
    }
}

impl TryFrom<String> for DistrictZone {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// `[district]` settings.
///
/// ```toml
/// [district]
/// time_zone = "America/Los_Angeles"
/// ```
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistrictConfig {
    /// The district's time zone, in which read windows, receipts and sessions are judged. Default
    /// `"local"`: the host's zone (today's behaviour; right only on a server kept in district time).
    pub time_zone: DistrictZone,
}

/// A clock read in the district's time zone; cheap to clone.
#[derive(Clone)]
pub struct DistrictClock {
    clock: Arc<dyn Clock>,
    zone: DistrictZone,
}

impl DistrictClock {
    pub fn new(clock: Arc<dyn Clock>, zone: DistrictZone) -> DistrictClock {
        DistrictClock { clock, zone }
    }

    /// The system clock in `zone`.
    pub fn system(zone: DistrictZone) -> DistrictClock {
        DistrictClock::new(Arc::new(SystemClock), zone)
    }

    pub fn zone(&self) -> DistrictZone {
        self.zone
    }

    pub fn now_utc(&self) -> DateTime<Utc> {
        self.clock.now_utc()
    }

    /// District local time now.
    pub fn now_local(&self) -> NaiveDateTime {
        self.zone.local_of(self.clock.now_utc())
    }
}

impl Default for DistrictClock {
    /// The system clock in the host's zone.
    fn default() -> Self {
        DistrictClock::system(DistrictZone::HostLocal)
    }
}

impl fmt::Debug for DistrictClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistrictClock")
            .field("now_utc", &self.now_utc())
            .field("zone", &self.zone)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    }

    fn pacific(at: DateTime<Utc>) -> (Arc<FixedClock>, DistrictClock) {
        let fixed = Arc::new(FixedClock::new(at));
        let zone: DistrictZone = "America/Los_Angeles".parse().unwrap();
        (fixed.clone(), DistrictClock::new(fixed, zone))
    }

    #[test]
    fn the_district_clock_gives_pacific_time_across_a_dst_change() {
        // 2026-11-01 02:00 PDT the clocks go back to 01:00 PST (UTC-7 → UTC-8).
        let (fixed, clock) = pacific(utc(2026, 11, 1, 8, 30));
        assert_eq!(clock.now_local(), local(2026, 11, 1, 1, 30)); // 01:30 PDT
        fixed.advance(chrono::Duration::hours(1));
        assert_eq!(clock.now_local(), local(2026, 11, 1, 1, 30)); // 01:30 PST, the hour again
        fixed.advance(chrono::Duration::hours(1));
        assert_eq!(clock.now_local(), local(2026, 11, 1, 2, 30));
        // 2026-03-08 02:00 PST the clocks go forward to 03:00 PDT.
        fixed.set(utc(2026, 3, 8, 9, 59));
        assert_eq!(clock.now_local(), local(2026, 3, 8, 1, 59));
        fixed.set(utc(2026, 3, 8, 10, 0));
        assert_eq!(clock.now_local(), local(2026, 3, 8, 3, 0));
        // Summer and winter offsets.
        fixed.set(utc(2026, 7, 1, 12, 0));
        assert_eq!(clock.now_local(), local(2026, 7, 1, 5, 0));
        fixed.set(utc(2026, 1, 15, 12, 0));
        assert_eq!(clock.now_local(), local(2026, 1, 15, 4, 0));
    }

    #[test]
    fn the_district_clock_gives_pacific_time_across_a_year_end() {
        // 2026-12-31T23:30 Pacific is 2027-01-01T07:30Z: the district's year has not ended yet.
        let (fixed, clock) = pacific(utc(2027, 1, 1, 7, 30));
        assert_eq!(clock.now_utc(), utc(2027, 1, 1, 7, 30));
        assert_eq!(clock.now_local(), local(2026, 12, 31, 23, 30));
        fixed.advance(chrono::Duration::minutes(30));
        assert_eq!(clock.now_local(), local(2027, 1, 1, 0, 0));
    }

    #[test]
    fn the_host_zone_is_chronos_local() {
        let at = utc(2026, 6, 1, 12, 0);
        let clock = DistrictClock::new(Arc::new(FixedClock::new(at)), DistrictZone::HostLocal);
        assert_eq!(
            clock.now_local(),
            at.with_timezone(&chrono::Local).naive_local()
        );
    }

    #[test]
    fn a_zone_is_an_iana_name_or_local_and_anything_else_is_refused_with_the_key() {
        assert_eq!(
            "local".parse::<DistrictZone>().unwrap(),
            DistrictZone::HostLocal
        );
        assert_eq!(
            "UTC".parse::<DistrictZone>().unwrap(),
            DistrictZone::Named(chrono_tz::UTC)
        );
        let z: DistrictZone = "America/Los_Angeles".parse().unwrap();
        assert_eq!(z.to_string(), "America/Los_Angeles");
        let err = "Pacific Time".parse::<DistrictZone>().unwrap_err();
        assert!(
            err.contains("district.time_zone") && err.contains("Pacific Time"),
            "{err}"
        );
    }
}
