//! Integration tests: cycles. Open a cycle, ingest reads through validation, import a reads CSV, list
//! reads, cycle status and route files, over a real (in-memory or temp-file) store.

use chrono::{Datelike, Months, NaiveDateTime};
use clap::Parser;
use meter_gateway::config::Config;
use meter_gateway::cycles::{self, CycleError, Disposition};
use meter_gateway::demo::{self, DemoParams};
use meter_gateway::domain::{
    AccountStatus, FieldRead, FlagKind, HistoryRead, MeterStatus, ReadKind, ReadMethod, ReadStatus,
    ReadType, Route,
};
use meter_gateway::store::Store;

use crate::support::{account, at, day, device_ref, message_codes, meter};

/// 24 monthly reads on the 5th up to 2026-10-05, `per_month` HCF a month, ending at `last`.
fn history(account: &str, meter: &str, last: u64, per_month: u64, dials: u8) -> Vec<HistoryRead> {
    let modulus = 10u64.pow(u32::from(dials));
    (0..=24u32)
        .map(|i| {
            let back = 24 - i;
            HistoryRead {
                account_id: account.into(),
                meter_id: meter.into(),
                read_on: day(2026, 10, 5) - Months::new(back),
                reading: (last + modulus * 10 - per_month * u64::from(back) + u64::from(i % 3))
                    % modulus,
                kind: ReadKind::Actual,
            }
        })
        .collect()
}

/// Two routes: R01 walks A2 (near rollover on a 4-dial meter) then A1; R02 has inactive A3.
/// M9 is in inventory. `LK` opens a follow-up.
fn small_district() -> Store {
    let mut s = Store::open_in_memory().unwrap();
    s.upsert_routes(&[
        Route {
            id: "R01".into(),
            name: "Harbor".into(),
        },
        Route {
            id: "R02".into(),
            name: "Hills".into(),
        },
    ])
    .unwrap();
    s.upsert_accounts(&[
        account("A1", "R01", 20, AccountStatus::Active),
        account("A2", "R01", 10, AccountStatus::Active),
        account("A3", "R02", 5, AccountStatus::Inactive),
    ])
    .unwrap();
    s.upsert_meters(&[
        meter("M1", Some("A1"), MeterStatus::Active, 5),
        meter("M2", Some("A2"), MeterStatus::Active, 4),
        meter("M3", Some("A3"), MeterStatus::Active, 5),
        meter("M9", None, MeterStatus::Inventory, 5),
    ])
    .unwrap();
    let mut h = history("A1", "M1", 5_000, 12, 5);
    h.extend(history("A2", "M2", 9_995, 10, 4));
    h.extend(history("A3", "M3", 700, 0, 5));
    s.upsert_history(&h).unwrap();
    s.upsert_codes(&message_codes()).unwrap();
    s
}

fn open(s: &mut Store) {
    cycles::open_cycle(
        s,
        "2026-11",
        day(2026, 11, 1),
        day(2026, 11, 20),
        &[],
        at(day(2026, 11, 1), 6),
    )
    .unwrap();
}

fn read(meter: &str, raw: &str, device: Option<(&str, u64)>) -> FieldRead {
    FieldRead {
        meter_id: meter.into(),
        read_at: at(day(2026, 11, 5), 10),
        raw_reading: raw.into(),
        read_type: ReadType::Regular,
        method: ReadMethod::Keyed,
        reader: "JD".into(),
        codes: vec![],
        skip_code: None,
        note: None,
        device: device.map(|(d, s)| device_ref(d, s, &format!("{meter} {raw}"))),
    }
}

fn now() -> NaiveDateTime {
    at(day(2026, 11, 6), 18)
}

fn flags_of(out: &cycles::ReadOutcome) -> Vec<FlagKind> {
    out.flags().iter().map(|f| f.kind).collect()
}

fn read_count(s: &Store) -> usize {
    s.cycle_reads("2026-11").unwrap().len()
}

#[test]
fn a_cycle_opens_on_every_route_by_default_and_refuses_bad_requests() {
    let mut s = small_district();
    let t = at(day(2026, 11, 1), 6);
    let c = cycles::open_cycle(
        &mut s,
        "2026-11",
        day(2026, 11, 1),
        day(2026, 11, 20),
        &[],
        t,
    )
    .unwrap();
    assert_eq!(c.routes, vec!["R01", "R02"]);
    let err = |r: Result<_, CycleError>| r.unwrap_err().to_string();
    let again = cycles::open_cycle(
        &mut s,
        "2026-11",
        day(2026, 12, 1),
        day(2026, 12, 20),
        &[],
        t,
    );
    assert!(err(again).contains("already exists"));
    let busy = cycles::open_cycle(
        &mut s,
        "2026-12",
        day(2026, 12, 1),
        day(2026, 12, 20),
        &["R02".into()],
        t,
    );
    assert!(err(busy).contains("route `R02` is already in open cycle `2026-11`"));
    let unknown = cycles::open_cycle(
        &mut s,
        "2026-12",
        day(2026, 12, 1),
        day(2026, 12, 20),
        &["R07".into()],
        t,
    );
    assert!(err(unknown).contains("unknown route `R07`"));
    let inverted = cycles::open_cycle(
        &mut s,
        "2026-12",
        day(2026, 12, 20),
        day(2026, 12, 1),
        &[],
        t,
    );
    assert!(err(inverted).contains("inverted"));
}

#[test]
fn a_normal_read_is_accepted_and_a_leak_is_high_with_a_follow_up() {
    let mut s = small_district();
    open(&mut s);
    let mut leak = read("M1", "05060", None);
    leak.codes = vec!["LK".into(), "DG".into()];
    let out = cycles::ingest(
        &mut s,
        &Config::default(),
        "2026-11",
        &[read("M2", "0007", None), leak],
        now(),
    )
    .unwrap();
    // M2 rolled over from about 9,995 to 7: accepted, with the informational rollover flag only.
    assert_eq!(flags_of(&out[0]), vec![FlagKind::Rollover]);
    assert!(matches!(
        out[0].disposition,
        Disposition::Stored {
            status: ReadStatus::Accepted,
            ..
        }
    ));
    assert_eq!(flags_of(&out[1]), vec![FlagKind::High]);
    let listed = cycles::list_reads(&s, "2026-11").unwrap();
    assert_eq!(listed[0].quality, "2.4.131;3.0.1;3.4.1");
    assert!(listed[0]
        .explanation
        .starts_with("rollover: register rolled over from 99"));
    assert_eq!(listed[1].status, "flagged");
    assert_eq!(listed[1].flags, "high");
    assert_eq!(listed[1].quality, "2.4.131;3.6.3");
    assert!(
        listed[1].explanation.starts_with("high: used 6")
            && listed[1]
                .explanation
                .contains("hcf (same period in the last 2 years)"),
        "{}",
        listed[1].explanation
    );
    let follow = s.open_follow_ups("2026-11").unwrap();
    assert_eq!(follow.len(), 1, "{follow:?}");
    assert_eq!(
        (follow[0].code.as_str(), follow[0].meter_id.as_str()),
        ("LK", "M1")
    );
}

#[test]
fn use_on_an_inactive_account_is_flagged_and_no_use_is_not() {
    let mut s = small_district();
    open(&mut s);
    let cfg = Config::default();
    let out = cycles::ingest(&mut s, &cfg, "2026-11", &[read("M3", "00700", None)], now()).unwrap();
    assert!(flags_of(&out[0]).is_empty(), "{:?}", out[0]);
    // A second, different read of the same meter: a duplicate, and use on an inactive account.
    let out = cycles::ingest(&mut s, &cfg, "2026-11", &[read("M3", "00709", None)], now()).unwrap();
    assert_eq!(
        flags_of(&out[0]),
        vec![FlagKind::Duplicate, FlagKind::InactiveUsage]
    );
}

#[test]
fn the_same_value_again_is_deduplicated_and_a_resent_device_read_is_not_stored_twice() {
    let mut s = small_district();
    open(&mut s);
    let cfg = Config::default();
    let batch = [
        read("M1", "05013", Some(("HH-01", 7))),
        read("M2", "0007", Some(("HH-01", 8))),
    ];
    let first = cycles::ingest(&mut s, &cfg, "2026-11", &batch, now()).unwrap();
    assert_eq!(read_count(&s), 2);
    let again = cycles::ingest(&mut s, &cfg, "2026-11", &batch, now()).unwrap();
    assert_eq!(read_count(&s), 2);
    assert!(again
        .iter()
        .all(|o| o.disposition == Disposition::AlreadyReceived));
    assert_eq!(again[0].read_id, first[0].read_id);
    // Same value from another handheld (keyed again, leading zero dropped): not the same read, so
    // kept, behind the read already in the cycle, which stays the meter's read.
    let same = cycles::ingest(
        &mut s,
        &cfg,
        "2026-11",
        &[read("M1", "5013", Some(("HH-02", 1)))],
        now(),
    )
    .unwrap();
    assert_eq!(
        same[0].disposition,
        Disposition::Repeat {
            of: first[0].read_id
        }
    );
    assert_eq!(read_count(&s), 3);
    let reads = s.cycle_reads("2026-11").unwrap();
    let repeat = reads.iter().find(|r| r.read_id == same[0].read_id).unwrap();
    assert_eq!(repeat.superseded_by, Some(first[0].read_id));
    assert!(repeat.flags.iter().all(|f| f.kind != FlagKind::Duplicate));
    // The same value in a reads file (no handheld): the office's own data again, not stored.
    let file = cycles::ingest(&mut s, &cfg, "2026-11", &[read("M1", "5013", None)], now()).unwrap();
    assert_eq!(file[0].disposition, Disposition::SameAsEarlier);
    assert_eq!(read_count(&s), 3);
}

#[test]
fn a_read_for_an_unknown_or_inventory_meter_is_stored_as_a_meter_mismatch() {
    let mut s = small_district();
    open(&mut s);
    let out = cycles::ingest(
        &mut s,
        &Config::default(),
        "2026-11",
        &[read("M404", "123", None), read("M9", "00042", None)],
        now(),
    )
    .unwrap();
    assert_eq!(flags_of(&out[0]), vec![FlagKind::MeterMismatch]);
    assert_eq!(flags_of(&out[1]), vec![FlagKind::MeterMismatch]);
    assert!(out[1].flags()[0].explanation.contains("inventory"));
    assert_eq!(read_count(&s), 2);
}

#[test]
fn a_closed_or_unknown_cycle_takes_no_reads() {
    let mut s = small_district();
    let err = cycles::ingest(
        &mut s,
        &Config::default(),
        "2030-01",
        &[read("M1", "1", None)],
        now(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no cycle `2030-01`"), "{err}");
}

#[test]
fn route_files_list_stops_in_walk_order_with_limits_as_readings_that_wrap() {
    let mut s = small_district();
    open(&mut s);
    let cfg = Config::default();
    let rf = cycles::route_file(&s, &cfg, "2026-11", "R01").unwrap();
    assert_eq!(rf.route_name, "Harbor");
    let order: Vec<&str> = rf.stops.iter().map(|s| s.account_id.as_str()).collect();
    assert_eq!(order, vec!["A2", "A1"]);
    assert_eq!(rf.message_codes.len(), 2);
    // A2's 4-dial meter is near 9,999: the high limit wraps through zero.
    let a2 = &rf.stops[0];
    let prev = a2.previous_reading.unwrap();
    assert!(prev > 9_900, "{prev}");
    let l = a2.limits.unwrap();
    let (first, last) = (l.first_day, l.last_day);
    // About 10 units after 9,99x: the limits are readings wrapped through zero (a range that
    // straddles zero wraps; one past it is two small readings), never readings above 9,999.
    for r in [first, last] {
        assert!(
            r.wraps || (r.low < 100 && r.high < 100 && r.low <= r.high),
            "{l:?}"
        );
    }
    assert!(last.high < 100 && (last.wraps || last.low < 100), "{l:?}");
    // A1 uses ~12 HCF a month (read 5 October): limits are readings a few units either side of
    // previous + its use by the window's first day (27 days) and last day (46 days).
    let a1 = &rf.stops[1];
    let (prev, l) = (a1.previous_reading.unwrap(), a1.limits.unwrap());
    for (l, days) in [(l.first_day, 27), (l.last_day, 46)] {
        let expected = prev + 12 * days / 31;
        assert!(
            !l.wraps && l.low < expected && l.high > expected && l.high < prev + 40,
            "{prev} {l:?}"
        );
    }
    // The last day's limits are later readings than the first day's.
    assert!(l.last_day.high > l.first_day.high, "{l:?}");
    // The inactive account on R02: no use expected, both limits are the previous reading.
    let r2 = cycles::route_file(&s, &cfg, "2026-11", "R02").unwrap();
    let a3 = r2.stops[0].limits.unwrap();
    assert_eq!((a3.first_day.low, a3.first_day.high), (700, 700));
    assert_eq!((a3.last_day.low, a3.last_day.high), (700, 700));
    // All route files at once say the same as one at a time.
    let all = cycles::route_files(&s, &cfg, "2026-11").unwrap();
    assert_eq!(all, vec![rf, r2]);
    let err = cycles::route_file(&s, &cfg, "2026-11", "R09").unwrap_err();
    assert!(err.to_string().contains("unknown route `R09`"));
}

#[test]
fn cycle_status_counts_reads_per_route() {
    let mut s = small_district();
    open(&mut s);
    cycles::ingest(
        &mut s,
        &Config::default(),
        "2026-11",
        &[read("M1", "05060", None), read("M2", "0007", None)],
        now(),
    )
    .unwrap();
    let st = cycles::cycle_status(&s, "2026-11").unwrap();
    let r1 = &st.routes[0];
    assert_eq!(
        (
            r1.route_id.as_str(),
            r1.expected,
            r1.read_in,
            r1.flagged,
            r1.missing
        ),
        ("R01", 2, 2, 1, 0)
    );
    let r2 = &st.routes[1];
    assert_eq!((r2.expected, r2.read_in, r2.missing), (1, 0, 1));
    let missing =
        cycles::missing_reads(&s, &Config::default(), "2026-11", day(2026, 11, 20)).unwrap();
    // The inactive account's meter is not an exception when unread.
    assert!(missing.is_empty(), "{missing:?}");
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn import_reads_errors_name_the_file_line_and_column_and_write_nothing() {
    let mut s = small_district();
    open(&mut s);
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default();
    let t = now();
    let cases = [
        (
            "meter_id,read_at,reading,reader,codes,verified\nM1,2026-11-05T10:00:00,05013,JD,,false\nM2,2026-13-05T10:00:00,0007,JD,,false\n",
            ":3: column read_at: `2026-13-05T10:00:00` is not a date-time",
        ),
        (
            "meter_id,read_at,reading,reader,codes,verified\nM1,2026-11-05T10:00:00,05013,JD,,maybe\n",
            ":2: column verified: `maybe` is not true or false",
        ),
        (
            "meter_id,read_at,reading,reader,codes\nM1,2026-11-05T10:00:00,05013,JD,\n",
            ":1: column verified: missing from the header",
        ),
        (
            "meter_id,read_at,reading,reader,codes,verified\nM1,2026-11-05T10:00:00,05013\n",
            ":2: column reader: missing (row has 3 fields, the header 6)",
        ),
        // A read time the cycle cannot take: the whole file is refused, the read named.
        (
            "meter_id,read_at,reading,reader,codes,verified\nM1,2026-11-05T10:00:00,05013,JD,,false\nM2,+10000-01-01T00:00:00,0007,JD,,false\n",
            ":3: column read_at: read of meter M2: read time +10000-01-01 00:00:00 is not a calendar time",
        ),
        (
            "meter_id,read_at,reading,reader,codes,verified\nM1,2025-01-05T10:00:00,05013,JD,,false\n",
            ":2: column read_at: read of meter M1: read time 2025-01-05 10:00:00 is before 2026-09-02",
        ),
        (
            "meter_id,read_at,reading,reader,codes,verified\nM1,2026-11-09T10:00:00,05013,JD,,false\n",
            ":2: column read_at: read of meter M1: read time 2026-11-09 10:00:00 is after 2026-11-07 18:00",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = write(&dir, &format!("reads{i}.csv"), text);
        let err = cycles::import_reads(&mut s, &cfg, "2026-11", &path, t).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        assert!(msg.contains(want), "{msg} !~ {want}");
    }
    assert_eq!(read_count(&s), 0);
}

#[test]
fn import_reads_flags_a_non_numeric_reading_and_notes_an_unknown_meter_by_line() {
    let mut s = small_district();
    open(&mut s);
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "reads.csv",
        "meter_id,read_at,reading,reader,codes,verified\n\
         M1,2026-11-05T10:00:00,45O1,JD,,false\n\
         M404,2026-11-05 10:05,123,JD,DG,false\n\
         M2,2026-11-05,0007,JD,LK;DG,true\n",
    );
    let report = cycles::import_reads(&mut s, &Config::default(), "2026-11", &path, now()).unwrap();
    // M2's verified read carries a leak code (LK asks for follow-up): a leak the reader confirmed
    // reaches a clerk even with normal-looking use.
    assert_eq!((report.rows, report.accepted, report.flagged), (3, 0, 3));
    assert_eq!(
        flags_of(&report.outcomes[0]),
        vec![FlagKind::InvalidReading]
    );
    assert_eq!(
        flags_of(&report.outcomes[2]),
        vec![FlagKind::Rollover, FlagKind::High]
    );
    assert_eq!(report.notes.len(), 1);
    assert!(
        report.notes[0].starts_with(&format!("{}:3: meter M404", path.display())),
        "{:?}",
        report.notes
    );
    // Importing the same file again stores nothing new.
    let again = cycles::import_reads(&mut s, &Config::default(), "2026-11", &path, now()).unwrap();
    assert_eq!(again.already_in, 3);
    assert_eq!(read_count(&s), 3);
}

#[test]
fn the_reads_command_lists_csv_and_json_with_one_row_per_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("district.db");
    {
        let mut s = Store::open(&db).unwrap();
        let d = demo::generate(&DemoParams {
            accounts: 600,
            seed: 7,
            as_of: day(2026, 10, 20),
        });
        demo::load(&mut s, &d).unwrap();
    }
    let run = |args: &[&str]| {
        let mut argv = vec!["meter-gateway", "--db", db.to_str().unwrap()];
        argv.extend_from_slice(args);
        meter_gateway::cli::run(meter_gateway::cli::Cli::try_parse_from(argv).unwrap())
    };
    run(&[
        "cycle",
        "open",
        "2026-10",
        "--from",
        "2026-10-01",
        "--to",
        "2026-10-31",
    ])
    .unwrap();
    let reads = write(
        &dir,
        "reads.csv",
        "meter_id,read_at,reading,reader,codes,verified\nNOPE,2026-10-05T10:00:00,1,JD,,false\n",
    );
    run(&[
        "import",
        "reads",
        "--cycle",
        "2026-10",
        reads.to_str().unwrap(),
    ])
    .unwrap();
    let csv_out = dir.path().join("reads-out.csv");
    let json_out = dir.path().join("reads-out.json");
    run(&[
        "reads",
        "--cycle",
        "2026-10",
        "--format",
        "csv",
        "--out",
        csv_out.to_str().unwrap(),
    ])
    .unwrap();
    run(&[
        "reads",
        "--cycle",
        "2026-10",
        "--format",
        "json",
        "--out",
        json_out.to_str().unwrap(),
    ])
    .unwrap();
    let csv_text = std::fs::read_to_string(&csv_out).unwrap();
    let mut lines = csv_text.lines();
    assert_eq!(
        lines.next(),
        Some("account_id,meter_id,read_at,reading,consumption,status,flags,quality,explanation")
    );
    assert!(lines
        .next()
        .unwrap()
        .starts_with(",NOPE,2026-10-05T10:00:00,1,,flagged,meter_mismatch,2.4.131;3.5.256,"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    assert_eq!(json[0]["meter_id"], "NOPE");
    assert_eq!(json[0]["flags"], "meter_mismatch");
    let route = dir.path().join("route.json");
    let first_route = {
        let s = Store::open(&db).unwrap();
        s.cycle("2026-10").unwrap().unwrap().routes[0].clone()
    };
    run(&[
        "route",
        "--cycle",
        "2026-10",
        "--route",
        &first_route,
        "--out",
        route.to_str().unwrap(),
    ])
    .unwrap();
    let rf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&route).unwrap()).unwrap();
    assert!(rf["stops"].as_array().unwrap().len() > 10);
    assert!(rf["stops"][0]["limits"]["first_day"]["high"].is_u64());
    assert!(rf["stops"][0]["limits"]["last_day"]["low"].is_u64());
}

#[test]
fn a_demo_cycle_flags_its_planted_problems_and_not_its_traps() {
    let d = demo::generate(&DemoParams {
        accounts: 1_200,
        seed: 11,
        as_of: day(2026, 4, 20),
    });
    let mut s = Store::open_in_memory().unwrap();
    demo::load(&mut s, &d).unwrap();
    let c = &d.cycle;
    d.open_cycle(&mut s, at(c.window_from, 6)).unwrap();
    let last = d.field_reads.iter().map(|r| r.read_at).max().unwrap();
    let cfg = Config::default();
    let first = cycles::ingest(&mut s, &cfg, &c.id, &d.field_reads, last).unwrap();
    let stored = read_count(&s);
    // The handhelds re-send everything: nothing is stored twice.
    let again = cycles::ingest(&mut s, &cfg, &c.id, &d.field_reads, last).unwrap();
    assert_eq!(read_count(&s), stored);
    assert!(again
        .iter()
        .all(|o| !matches!(o.disposition, Disposition::Stored { .. })));
    assert_eq!(first.len(), again.len());

    let mut flags: std::collections::HashMap<String, Vec<FlagKind>> = Default::default();
    for r in s.cycle_reads(&c.id).unwrap() {
        flags
            .entry(r.meter_id)
            .or_default()
            .extend(r.flags.iter().map(|f| f.kind));
    }
    for m in cycles::missing_reads(&s, &cfg, &c.id, c.window_to).unwrap() {
        assert!(m.estimate.is_some(), "{m:?}");
        flags.entry(m.meter_id).or_default().push(FlagKind::Missing);
    }
    let score = demo::score(&d, |m| flags.get(m).cloned().unwrap_or_default());
    assert!(score.recall() >= 0.95, "{:?}", score.misses);
    assert!(
        score.false_positive_rate() <= 0.01,
        "{}",
        score.false_positive_rate()
    );
    assert_eq!(score.traps_clean, score.traps, "{:?}", score.misses);
    assert!(d.field_reads.iter().any(|r| r.read_at.month() == 4));
}

#[test]
fn two_readings_keyed_under_each_others_stops_are_each_named_the_other() {
    let mut s = small_district();
    // A4 walks R01 too: about 8 units a month from 800.
    s.upsert_accounts(&[account("A4", "R01", 30, AccountStatus::Active)])
        .unwrap();
    s.upsert_meters(&[meter("M4", Some("A4"), MeterStatus::Active, 5)])
        .unwrap();
    s.upsert_history(&history("A4", "M4", 800, 8, 5)).unwrap();
    open(&mut s);
    // M1 (about 5012 now) and M4 (about 808) read under each other's stops, in one upload.
    let out = cycles::ingest(
        &mut s,
        &Config::default(),
        "2026-11",
        &[read("M1", "809", None), read("M4", "5013", None)],
        now(),
    )
    .unwrap();
    assert_eq!(flags_of(&out[0]), vec![FlagKind::Negative]);
    assert_eq!(flags_of(&out[1]), vec![FlagKind::High]);
    let stored = s.cycle_reads("2026-11").unwrap();
    let of = |m: &str| stored.iter().find(|r| r.meter_id == m).unwrap();
    assert_eq!(of("M1").intended_reading, Some(5_013));
    assert_eq!(of("M4").intended_reading, Some(809));
    assert!(
        of("M1").flags[0].explanation.ends_with(
            "; likely meant 5013: the readings of this meter and meter M4 look swapped (each fits the other)"
        ),
        "{}",
        of("M1").flags[0].explanation
    );
}

#[test]
fn a_mis_keyed_read_is_stored_with_the_reading_the_reader_likely_meant() {
    let mut s = small_district();
    open(&mut s);
    // About 12 units a month from 5,000: 5012 meant, 5102 keyed (digits 2 and 3 swapped).
    let out = cycles::ingest(
        &mut s,
        &Config::default(),
        "2026-11",
        &[read("M1", "5102", None)],
        now(),
    )
    .unwrap();
    assert_eq!(flags_of(&out[0]), vec![FlagKind::High]);
    let stored = &s.cycle_reads("2026-11").unwrap()[0];
    assert_eq!(stored.intended_reading, Some(5_012));
    assert!(
        stored.flags[0]
            .explanation
            .ends_with("; likely meant 5012: digits 2 and 3 swapped"),
        "{}",
        stored.flags[0].explanation
    );
    // A radio read does not slip on a keypad: no reading is named.
    let mut radio = read("M2", "9905", None);
    radio.method = ReadMethod::Radio;
    cycles::ingest(&mut s, &Config::default(), "2026-11", &[radio], now()).unwrap();
    let stored = s.cycle_reads("2026-11").unwrap();
    assert_eq!(stored[1].intended_reading, None);
}
