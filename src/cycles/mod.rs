//! Read cycles over the store: open a cycle, ingest field reads through validation, import a reads
//! CSV, list reads, cycle status and route files.
//!
//! Every read, from a handheld upload or a reads CSV, goes through [`ingest`]: one transaction per
//! batch, validation by [`crate::vee`], the decision stored with the read.
//!
//! A file per task: `open` (open a cycle, its judging basis, status per route), `ingest` (judge and
//! store reads), `intake` (what is taken at all), `missing` (reads still lacking, with estimates),
//! `listing` (reads as CSV or JSON), `csv_reads` (a reads file), `route_file` (a route's file for a
//! handheld), `reread` (a completed re-read folded back into its read).

mod csv_reads;
mod ingest;
mod intake;
mod listing;
mod missing;
mod open;
mod reread;
mod route_file;

pub use csv_reads::{import_reads, parse_reads_csv, ImportReport, NumberedRead};
pub use ingest::*;
pub use intake::{OffRoutePolicy, ReadTimeBounds, ReadsConfig, Refusal, MAX_DEVICE_SEQ};
pub use listing::*;
pub use missing::*;
pub use open::*;
pub use reread::{apply_completed_rereads, fold_reread};
pub(crate) use reread::{record as record_decision, snapshot as read_snapshot};

pub use route_file::{
    route_file, route_files, LimitRange, RouteCode, RouteFile, RouteOrder, RouteStop, StopLimits,
};

use crate::domain::{Cycle, CycleStatus, FieldRead, Flag, FlagKind, ReadStatus, ReadType};
use crate::store::basis::{self, MeterBasis};
use crate::store::cycles as sql;
use crate::store::{MeterRow, Store, StoreError, StoredRead};
use crate::vee::{self, AccountHistory, MeterContext, ReadInput, Service};
use chrono::{NaiveDate, NaiveDateTime};
use std::collections::{HashMap, HashSet};
use std::io::Write;

/// What reading cycles need of the settings: `[validation]` (how reads are judged) and `[reads]`
/// (which reads are taken at all). `config::Config`, which assembles the settings file, implements it;
/// so does [`Settings`], those two sections alone.
pub trait CycleSettings: Send + Sync {
    fn validation(&self) -> &vee::ValidationConfig;
    fn reads(&self) -> &ReadsConfig;
}

/// The settings reading cycles use, alone (defaults, or built by a caller that has no settings file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub validation: vee::ValidationConfig,
    pub reads: ReadsConfig,
}

impl CycleSettings for Settings {
    fn validation(&self) -> &vee::ValidationConfig {
        &self.validation
    }
    fn reads(&self) -> &ReadsConfig {
        &self.reads
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no cycle `{0}`")]
    UnknownCycle(String),
    #[error("cycle `{0}` already exists")]
    DuplicateCycle(String),
    #[error("cycle `{0}` is closed: it takes no more reads")]
    Closed(String),
    #[error("unknown route `{0}`")]
    UnknownRoute(String),
    #[error("route `{route}` is not in cycle `{cycle}`")]
    RouteNotInCycle { cycle: String, route: String },
    #[error("route `{route}` is already in open cycle `{cycle}`; close it first")]
    RouteBusy { route: String, cycle: String },
    #[error("read window {from} – {to} is inverted")]
    InvertedWindow { from: NaiveDate, to: NaiveDate },
    #[error("a cycle needs at least one route, and the district has none")]
    NoRoutes,
    #[error("cycle id must be 1–40 printable characters without spaces, got `{0}`")]
    BadCycleId(String),
    /// A read of the batch is not taken ([`intake`]): nothing of the batch was written.
    #[error("{0}")]
    Refused(String),
    /// A malformed row of a reads file: nothing of the file was written.
    #[error("{file}:{line}: column {column}: {reason}")]
    Malformed {
        file: String,
        line: u64,
        column: String,
        reason: String,
    },
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
}

impl From<rusqlite::Error> for CycleError {
    fn from(e: rusqlite::Error) -> Self {
        CycleError::Store(StoreError::Sql(e))
    }
}

pub type Result<T, E = CycleError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{self, DemoParams};

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// A demo district in a file of its own (read-only connections need one), its cycle open; and its
    /// reads, with a second read of some meters (the same value, and a different one).
    fn demo_district(dir: &std::path::Path, name: &str) -> (Store, demo::District, Vec<FieldRead>) {
        let district = demo::generate(&DemoParams {
            accounts: 600,
            seed: 5,
            as_of: d("2026-10-20"),
        });
        let mut store = Store::open(&dir.join(name)).unwrap();
        demo::load(&mut store, &district).unwrap();
        district
            .open_cycle(&mut store, d("2026-10-01").and_hms_opt(7, 0, 0).unwrap())
            .unwrap();
        let mut reads = district.field_reads.clone();
        for (i, r) in district.field_reads.iter().take(40).enumerate() {
            let mut again = r.clone();
            again.device = None; // keyed again at the office, not re-sent by the handheld
            if i % 2 == 0 {
                again.raw_reading.push('1');
            }
            reads.push(again);
        }
        (store, district, reads)
    }

    /// After every read of the demo cycle (late ones included) reached the gateway.
    fn now() -> NaiveDateTime {
        d("2026-11-06").and_hms_opt(9, 0, 0).unwrap()
    }

    #[test]
    fn a_cycle_judged_in_halves_is_stored_as_if_judged_on_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Settings::default();
        let (mut halves, district, reads) = demo_district(dir.path(), "halves.db");
        let (mut writer, ..) = demo_district(dir.path(), "writer.db");
        let id = &district.cycle.id;
        let a = ingest_judged_apart(&mut halves, &cfg, id, &reads, now(), 1, || {}).unwrap();
        let b =
            ingest_judged_apart(&mut writer, &cfg, id, &reads, now(), usize::MAX, || {}).unwrap();
        assert_eq!(a, b);
        let same = a
            .iter()
            .filter(|o| matches!(o.disposition, Disposition::SameAsEarlier))
            .count();
        assert!(same >= 20, "the same values again are not stored: {same}");
        let (a, b) = (
            halves.cycle_reads(id).unwrap(),
            writer.cycle_reads(id).unwrap(),
        );
        assert!(a
            .iter()
            .any(|r| r.flags.iter().any(|f| f.kind == FlagKind::Duplicate)));
        assert_eq!(a, b);
    }

    #[test]
    fn a_cycle_judged_before_another_connection_committed_is_judged_again() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Settings::default();
        let (mut store, district, reads) = demo_district(dir.path(), "stale.db");
        // An account whose read was judged normal...
        let (read_meter, account) = district
            .field_reads
            .iter()
            .find_map(|r| {
                let m = district.meters.iter().find(|m| m.id == r.meter_id)?;
                let a = district
                    .accounts
                    .iter()
                    .find(|a| Some(&a.id) == m.account_id.as_ref())?;
                (a.status == crate::domain::AccountStatus::Active
                    && !district.planted_meters().contains(m.id.as_str()))
                .then(|| (m.id.clone(), a.id.clone()))
            })
            .unwrap();
        let path = store.path().to_path_buf();
        // ...is closed by another process between judging and storing.
        let out = ingest_judged_apart(
            &mut store,
            &cfg,
            &district.cycle.id,
            &reads,
            now(),
            1,
            || {
                rusqlite::Connection::open(&path)
                    .unwrap()
                    .execute(
                        "UPDATE accounts SET status = 'closed' WHERE account_id = ?1",
                        [&account],
                    )
                    .unwrap();
            },
        )
        .unwrap();
        let flags = out
            .iter()
            .find(|o| o.meter_id == read_meter)
            .map(|o| o.flags().iter().map(|f| f.kind).collect::<Vec<_>>())
            .unwrap();
        assert!(flags.contains(&FlagKind::InactiveUsage), "{flags:?}");
    }

    /// A reading a handheld takes without a prompt on its read day is not flagged high, low or zero
    /// at the office for that day; one outside the day's limits is (or is flagged negative, or usage
    /// on an inactive account): every stop of a demo district, four read days across the window.
    #[test]
    fn the_office_judges_high_and_low_by_the_limits_the_handheld_prompted_with_that_day() {
        use firmware_protocol::message::DayLimits;
        let dir = tempfile::tempdir().unwrap();
        let cfg = Settings::default();
        let (store, district, _) = demo_district(dir.path(), "limits.db");
        let id = &district.cycle.id;
        let files = route_files(&store, &cfg, id).unwrap();
        let (from, to) = (district.cycle.window_from, district.cycle.window_to);
        let span = (to - from).num_days();
        let days: Vec<NaiveDate> = [0, span / 3, 2 * span / 3, span]
            .iter()
            .map(|k| from + chrono::Duration::days(*k))
            .collect();
        let mut reads = Vec::new();
        // (inside?, what it was) per read.
        let mut cases: Vec<(bool, String)> = Vec::new();
        let mut with_limits = 0;
        for f in &files {
            let route = crate::sync::route_data(f);
            let window = (route.window_from, route.window_to);
            for stop in &route.stops {
                let modulus = 10u64.pow(u32::from(stop.dials));
                for day in &days {
                    let DayLimits::Range { low, high } =
                        stop.limits_on(window, crate::sync::protocol_day(*day))
                    else {
                        continue;
                    };
                    with_limits += 1;
                    let mid = if low <= high {
                        low + (high - low) / 2
                    } else {
                        high
                    };
                    let below = (low + modulus - 1) % modulus;
                    let above = (high + 1) % modulus;
                    let mut candidates = vec![(true, low), (true, high), (true, mid)];
                    if below != high && above != low {
                        candidates.push((false, below));
                        candidates.push((false, above));
                    }
                    for (inside, reading) in candidates {
                        reads.push(FieldRead {
                            meter_id: stop.meter_id.clone(),
                            read_at: day.and_hms_opt(11, 0, 0).unwrap(),
                            raw_reading: reading.to_string(),
                            read_type: ReadType::Regular,
                            method: crate::domain::ReadMethod::Keyed,
                            reader: "T".into(),
                            codes: Vec::new(),
                            skip_code: None,
                            note: None,
                            device: None,
                        });
                        cases.push((
                            inside,
                            format!("{} on {day}: {reading} in {low}–{high}", stop.meter_id),
                        ));
                    }
                }
            }
        }
        assert!(with_limits > 1_000, "{with_limits} stop-days with limits");
        let judged = judge(store.conn(), &cfg, id, reads, now()).unwrap();
        let judging = [FlagKind::High, FlagKind::Low, FlagKind::Zero];
        let outside_ok = [
            FlagKind::High,
            FlagKind::Low,
            FlagKind::Zero,
            FlagKind::Negative,
            FlagKind::InactiveUsage,
        ];
        let mut checked = 0;
        for (d, (inside, what)) in judged.decisions().iter().zip(&cases) {
            let kinds: Vec<FlagKind> = d.flags.iter().map(|f| f.kind).collect();
            if *inside {
                assert!(
                    !kinds.iter().any(|k| judging.contains(k)),
                    "accepted by the handheld, flagged at the office: {what}: {kinds:?}"
                );
            } else {
                assert!(
                    kinds.iter().any(|k| outside_ok.contains(k)),
                    "prompted on the handheld, not flagged at the office: {what}: {kinds:?}"
                );
            }
            checked += 1;
        }
        assert_eq!(checked, cases.len());
    }
}
