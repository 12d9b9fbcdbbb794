//! Integration tests: billing. Cycle close (estimates, refusal with the open exceptions, holds),
//! the batch (consumption across rollover and meter change, read types, money, reconciliation,
//! determinism), reopen and batch versions, the frozen closed cycle, the CLI and the HTTP endpoint.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::{Months, NaiveDateTime};
use clap::Parser;
use meter_gateway::billing::BatchFormat as BillingFormat;
use meter_gateway::billing::{
    self, Adjustment, AdjustmentKind, Batch, BillingError, BillingRecord, HoldSource, LineReadType,
};
use meter_gateway::config::Config;
use meter_gateway::cycles::{self, CycleError};
use meter_gateway::domain::UserRole;
use meter_gateway::domain::{
    Account, AccountStatus, FieldRead, HistoryRead, MeterStatus, ReadKind, ReadMethod, ReadStatus,
    ReadType, Register, Route, Unit,
};
use meter_gateway::review::actions as clerk;
use meter_gateway::serve;
use meter_gateway::store::{Db, Store};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::str::FromStr;
use tower::ServiceExt;

use crate::support::{account, at, day, meter};

const CYCLE: &str = "2026-11";

fn money(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// 24 monthly actual reads on the 5th up to 2026-10-05, 20 HCF a month, ending at `last`.
fn history(account: &str, meter: &str, last: u64, dials: u8) -> Vec<HistoryRead> {
    let modulus = 10u64.pow(u32::from(dials));
    (0..=24u32)
        .map(|i| {
            let back = 24 - i;
            HistoryRead {
                account_id: account.into(),
                meter_id: meter.into(),
                read_on: day(2026, 10, 5) - Months::new(back),
                reading: (last + modulus * 10 - 20 * u64::from(back)) % modulus,
                kind: ReadKind::Actual,
            }
        })
        .collect()
}

/// One route, every account residential using 20 HCF a month, read monthly on the 5th:
/// - A1: 4-dial meter at 9990, read 10 this cycle (a rollover: 20 HCF);
/// - A2: meter M2A changed on 10-20 (final 510, 10 HCF after the 10-05 read) for M2B (initial 0),
///   M2B read 10 this cycle: 20 HCF across the change;
/// - A3: not read: estimated at close;
/// - A4: mis-keyed 40200 (high), corrected to 4020;
/// - A5: confirmed high (5090: a leak), accepted, leak credit;
/// - A6: stuck at 6000 (zero);
/// - A7: 7300 (high), held by a clerk;
/// - plus a read of meter ZZ9, which the district does not know.
fn district(s: &mut Store) {
    s.upsert_routes(&[Route {
        id: "R01".into(),
        name: "Harbor".into(),
    }])
    .unwrap();
    let accounts: Vec<Account> = (1..=7)
        .map(|i| account(&format!("A{i}"), "R01", i * 10, AccountStatus::Active))
        .collect();
    s.upsert_accounts(&accounts).unwrap();
    let mut meters = vec![
        meter("M1", Some("A1"), MeterStatus::Active, 4),
        meter("M2A", None, MeterStatus::Inventory, 5),
        meter("M2B", Some("A2"), MeterStatus::Active, 5),
    ];
    for i in 3..=7 {
        meters.push(meter(
            &format!("M{i}"),
            Some(&format!("A{i}")),
            MeterStatus::Active,
            5,
        ));
    }
    meters[1].removed_on = Some(day(2026, 10, 20));
    meters[2].installed_on = Some(day(2026, 10, 20));
    s.upsert_meters(&meters).unwrap();
    let mut h = history("A1", "M1", 9_990, 4);
    h.extend(history("A2", "M2A", 500, 5));
    h.push(HistoryRead {
        account_id: "A2".into(),
        meter_id: "M2A".into(),
        read_on: day(2026, 10, 20),
        reading: 510,
        kind: ReadKind::Final,
    });
    h.push(HistoryRead {
        account_id: "A2".into(),
        meter_id: "M2B".into(),
        read_on: day(2026, 10, 20),
        reading: 0,
        kind: ReadKind::Initial,
    });
    for i in 3..=7u64 {
        h.extend(history(&format!("A{i}"), &format!("M{i}"), i * 1_000, 5));
    }
    s.upsert_history(&h).unwrap();
}

fn read(meter: &str, raw: &str, read_type: ReadType) -> FieldRead {
    FieldRead {
        meter_id: meter.into(),
        read_at: at(day(2026, 11, 5), 10),
        raw_reading: raw.into(),
        read_type,
        method: ReadMethod::Keyed,
        reader: "JS".into(),
        codes: Vec::new(),
        skip_code: None,
        note: None,
        device: None,
    }
}

fn clerk_time() -> NaiveDateTime {
    at(day(2026, 11, 21), 9)
}

fn close_time() -> NaiveDateTime {
    at(day(2026, 11, 21), 17)
}

/// The district with its cycle open and the field reads ingested (nothing resolved yet).
fn cycle_with_reads(s: &mut Store) {
    district(s);
    cycles::open_cycle(
        s,
        CYCLE,
        day(2026, 11, 1),
        day(2026, 11, 20),
        &[],
        at(day(2026, 11, 1), 6),
    )
    .unwrap();
    let reads = [
        read("M1", "0010", ReadType::Regular),
        read("M2B", "10", ReadType::Regular),
        read("M4", "40200", ReadType::Regular),
        read("M5", "5090", ReadType::HighConfirmed),
        read("M6", "6000", ReadType::Regular),
        read("M7", "7300", ReadType::Regular),
        read("ZZ9", "1234", ReadType::Regular),
    ];
    cycles::ingest(
        s,
        &Config::default(),
        CYCLE,
        &reads,
        at(day(2026, 11, 5), 18),
    )
    .unwrap();
}

/// The current (not superseded) read of a meter.
fn read_of(s: &Store, meter: &str) -> meter_gateway::store::StoredRead {
    s.cycle_reads(CYCLE)
        .unwrap()
        .into_iter()
        .rfind(|r| r.meter_id == meter && r.superseded_by.is_none())
        .unwrap_or_else(|| panic!("no read of {meter}"))
}

/// The clerk's work: correct A4, accept A5 with a leak credit of 12.50, hold A7, resolve ZZ9.
/// A6 stays flagged.
fn clerk_works(s: &mut Store) {
    let now = clerk_time();
    let m4 = read_of(s, "M4");
    clerk::correct(
        s,
        &Config::default(),
        m4.read_id,
        "4020",
        "extra zero keyed",
        "carla",
        now,
    )
    .unwrap();
    let m5 = read_of(s, "M5");
    clerk::accept(s, m5.read_id, "carla", "confirmed leak, repaired", now).unwrap();
    billing::add_adjustment(
        s,
        &Adjustment {
            account_id: "A5".into(),
            cycle_id: CYCLE.into(),
            read_id: Some(m5.read_id),
            kind: AdjustmentKind::LeakCredit,
            amount: money("-12.50"),
            units: Some(money("3.16")),
            note: "leak credit: 50% of 6.32 HCF above normal".into(),
            created_by: "carla".into(),
            created_at: now,
        },
    )
    .unwrap();
    let m7 = read_of(s, "M7");
    clerk::hold(s, m7.read_id, "carla", "customer disputes the read", now).unwrap();
    billing::add_adjustment(
        s,
        &Adjustment {
            account_id: "A7".into(),
            cycle_id: CYCLE.into(),
            read_id: None,
            kind: AdjustmentKind::Other,
            amount: money("5.00"),
            units: None,
            note: "returned check fee".into(),
            created_by: "carla".into(),
            created_at: now,
        },
    )
    .unwrap();
    let zz = read_of(s, "ZZ9");
    clerk::accept(s, zz.read_id, "carla", "not our meter", now).unwrap();
}

fn record<'b>(b: &'b Batch, account: &str) -> &'b BillingRecord {
    b.records()
        .find(|r| r.account_id == account)
        .unwrap_or_else(|| panic!("no record for {account}"))
}

fn closed_store() -> Store {
    closed(Store::open_in_memory().unwrap())
}

/// `s` with the month's reads, the clerk's work, and the cycle closed (A6 held).
fn closed(mut s: Store) -> Store {
    cycle_with_reads(&mut s);
    clerk_works(&mut s);
    billing::close_cycle(
        &mut s,
        &Config::default(),
        CYCLE,
        &["A6".into()],
        close_time(),
    )
    .unwrap();
    s
}

fn jsonl(b: &Batch) -> Vec<u8> {
    let mut out = Vec::new();
    billing::write_batch(b, BillingFormat::Jsonl, &mut out).unwrap();
    out
}

#[test]
fn close_is_refused_with_the_list_of_open_exceptions_and_changes_nothing() {
    let mut s = Store::open_in_memory().unwrap();
    cycle_with_reads(&mut s);
    let before = s.cycle_reads(CYCLE).unwrap();
    let err =
        billing::close_cycle(&mut s, &Config::default(), CYCLE, &[], close_time()).unwrap_err();
    let BillingError::Unresolved { exceptions, .. } = &err else {
        panic!("expected the open exceptions, got {err}");
    };
    let listed: Vec<(Option<&str>, &str)> = exceptions
        .iter()
        .map(|e| (e.account_id.as_deref(), e.meter_id.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            (None, "ZZ9"),
            (Some("A4"), "M4"),
            (Some("A5"), "M5"),
            (Some("A6"), "M6"),
            (Some("A7"), "M7"),
        ]
    );
    let a6 = exceptions.iter().find(|e| e.meter_id == "M6").unwrap();
    assert_eq!(a6.flags, ["zero"]);
    let text = err.to_string();
    assert!(text.contains("5 unresolved exception(s)"), "{text}");
    assert!(text.contains("account A4 meter M4"), "{text}");
    // Refused means nothing happened: no estimate stored, the cycle still open, no batch.
    assert_eq!(s.cycle_reads(CYCLE).unwrap(), before);
    assert_eq!(
        s.cycle(CYCLE).unwrap().unwrap().status,
        meter_gateway::domain::CycleStatus::Open
    );
    assert!(matches!(
        billing::open_batch(&s, CYCLE, None),
        Err(BillingError::NeverClosed(_))
    ));
}

#[test]
fn a_clerk_hold_and_a_close_hold_exclude_the_accounts_and_list_them_as_held() {
    let s = closed_store();
    let b = billing::open_batch(&s, CYCLE, None).unwrap();
    let held: Vec<(&str, HoldSource)> = b
        .held()
        .iter()
        .map(|h| (h.account_id.as_str(), h.source))
        .collect();
    assert_eq!(held, [("A6", HoldSource::Close), ("A7", HoldSource::Clerk)]);
    assert_eq!(b.held()[0].flags, ["zero"]);
    // A held account's money is not billed in this version, and not lost: it is listed as pending.
    assert_eq!(b.held()[1].pending_adjustments_total, money("5.00"));
    assert_eq!(b.held()[1].pending_adjustment_ids.len(), 1);
    assert_eq!(b.header().adjustments_total, money("-12.50"));
    assert!(b
        .records()
        .all(|r| r.account_id != "A6" && r.account_id != "A7"));
    let accounts: Vec<&str> = b.records().map(|r| r.account_id.as_str()).collect();
    assert_eq!(accounts, ["A1", "A2", "A3", "A4", "A5"]);
    assert_eq!(b.header().held_count, 2);
}

#[test]
fn consumption_is_billed_across_a_rollover_and_across_a_meter_change() {
    let s = closed_store();
    let b = billing::open_batch(&s, CYCLE, None).unwrap();
    let a1 = record(&b, "A1");
    assert_eq!(a1.meters.len(), 1);
    let m1 = &a1.meters[0];
    assert_eq!((m1.previous_reading, m1.current_reading), (9_990, 10));
    assert!(m1.rollover);
    assert_eq!(m1.consumption, 20);
    assert_eq!(a1.consumption_hcf, Decimal::from(20));
    assert_eq!(
        (a1.period_from, a1.period_to, a1.days),
        (day(2026, 10, 5), day(2026, 11, 5), 31)
    );

    let a2 = record(&b, "A2");
    let lines: Vec<(&str, u64, u64, LineReadType, u64)> = a2
        .meters
        .iter()
        .map(|l| {
            (
                l.meter_id.as_str(),
                l.previous_reading,
                l.current_reading,
                l.read_type,
                l.consumption,
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("M2A", 500, 510, LineReadType::Final, 10),
            ("M2B", 0, 10, LineReadType::Actual, 10),
        ]
    );
    assert_eq!(a2.meters[1].previous_kind, "initial");
    assert_eq!(a2.consumption_hcf, Decimal::from(20));
    assert_eq!(a2.read_type, LineReadType::Actual);
    assert_eq!((a2.period_from, a2.days), (day(2026, 10, 5), 31));
}

#[test]
fn estimated_confirmed_and_edited_reads_are_typed_with_their_quality_codes() {
    let s = closed_store();
    let b = billing::open_batch(&s, CYCLE, None).unwrap();
    let a3 = record(&b, "A3");
    assert_eq!(a3.read_type, LineReadType::Estimated);
    assert!(a3.meters[0].quality.contains(&"3.8.0".to_string()));
    // Estimated for the window's end: 20 HCF a month over the 46 days since the last read.
    assert_eq!((a3.period_to, a3.days), (day(2026, 11, 20), 46));
    assert!(
        (28..=32).contains(&a3.meters[0].consumption),
        "{:?}",
        a3.meters[0]
    );
    let est = read_of(&s, "M3");
    assert_eq!(est.status, ReadStatus::Estimated);
    assert_eq!(est.method, ReadMethod::Estimated);
    assert_eq!(a3.meters[0].read_id, Some(est.read_id));
    // No manual-read quality on an estimate.
    assert!(!a3.meters[0].quality.contains(&"2.4.131".to_string()));

    let a4 = record(&b, "A4");
    assert_eq!(a4.read_type, LineReadType::Edited);
    assert_eq!(a4.meters[0].current_reading, 4_020);
    assert_eq!(a4.meters[0].consumption, 20);
    assert!(a4.meters[0].quality.contains(&"3.7.0".to_string()));

    let a5 = record(&b, "A5");
    assert_eq!(a5.read_type, LineReadType::Confirmed);
    assert_eq!(a5.meters[0].consumption, 90);
    assert_eq!(record(&b, "A1").read_type, LineReadType::Actual);
}

#[test]
fn a_leak_credit_is_carried_as_exact_money() {
    let s = closed_store();
    let b = billing::open_batch(&s, CYCLE, None).unwrap();
    let a5 = record(&b, "A5");
    assert_eq!(a5.adjustments.len(), 1);
    assert_eq!(a5.adjustments[0].kind, "leak_credit");
    assert_eq!(a5.adjustments[0].amount, money("-12.50"));
    assert_eq!(a5.adjustments[0].units, Some(money("3.16")));
    assert_eq!(a5.adjustments_total, money("-12.50"));
    assert_eq!(b.header().adjustments_total, money("-12.50"));
    let line = String::from_utf8(jsonl(&b)).unwrap();
    assert!(
        line.contains(r#""amount":"-12.50""#),
        "money as decimal text: {line}"
    );
}

#[test]
fn adjustments_with_fractions_of_a_cent_or_on_a_closed_cycle_are_refused() {
    let mut s = Store::open_in_memory().unwrap();
    cycle_with_reads(&mut s);
    let mut a = Adjustment {
        account_id: "A1".into(),
        cycle_id: CYCLE.into(),
        read_id: None,
        kind: AdjustmentKind::Other,
        amount: money("-1.005"),
        units: None,
        note: String::new(),
        created_by: "carla".into(),
        created_at: clerk_time(),
    };
    let err = billing::add_adjustment(&mut s, &a).unwrap_err();
    assert!(
        err.to_string().contains("more than 2 decimal places"),
        "{err}"
    );
    a.amount = money("-1.00");
    a.account_id = "NOPE".into();
    assert!(matches!(
        billing::add_adjustment(&mut s, &a),
        Err(BillingError::UnknownAccount(_))
    ));
    a.account_id = "A1".into();
    a.read_id = Some(read_of(&s, "M4").read_id);
    assert!(matches!(
        billing::add_adjustment(&mut s, &a),
        Err(BillingError::BadAdjustment { .. })
    ));

    let mut s = closed_store();
    a.read_id = None;
    assert!(matches!(
        billing::add_adjustment(&mut s, &a),
        Err(BillingError::Closed(_))
    ));
}

#[test]
fn the_batch_total_reconciles_with_its_per_meter_deltas_and_its_checksum() {
    let s = closed_store();
    let b = billing::open_batch(&s, CYCLE, None).unwrap();
    let h = b.header();
    let mut hcf = 0u64;
    for r in b.records() {
        let mut account = Decimal::ZERO;
        for l in &r.meters {
            let reg = Register {
                dials: l.dials,
                multiplier: l.multiplier,
                unit: Unit::Hcf,
            };
            // Every line's consumption is its own readings' forward delta through the multiplier.
            assert_eq!(
                l.consumption,
                reg.to_billing(reg.forward_use(l.previous_reading, l.current_reading)),
                "{l:?}"
            );
            hcf += l.consumption;
            account += l.consumption_hcf;
        }
        assert_eq!(r.consumption_hcf, account);
    }
    assert_eq!(h.consumption_by_unit.get("hcf"), Some(&hcf));
    assert_eq!(h.consumption_hcf, Decimal::from(hcf));
    assert_eq!(h.record_count, 5);
    assert_eq!(h.meter_line_count, 6);
    let digest = Sha256::digest(b.canonical_body().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(h.checksum, hex);
    assert_eq!(
        (h.schema_version, h.batch_version),
        (billing::BATCH_SCHEMA_VERSION, 1)
    );
    assert_eq!(h.closed_at, close_time());
}

#[test]
fn a_closed_cycle_is_frozen_for_every_writer() {
    let mut s = closed_store();
    let err = cycles::ingest(
        &mut s,
        &Config::default(),
        CYCLE,
        &[read("M6", "6020", ReadType::Regular)],
        clerk_time(),
    )
    .unwrap_err();
    assert!(matches!(err, CycleError::Closed(_)), "{err}");
    // A writer that forgets to check (here the clerk's hold on a flagged read) is stopped by the store.
    let m6 = read_of(&s, "M6");
    assert!(clerk::hold(&mut s, m6.read_id, "carla", "late hold", clerk_time()).is_err());
    assert_eq!(read_of(&s, "M6").status, ReadStatus::Flagged);
    assert!(matches!(
        billing::close_cycle(&mut s, &Config::default(), CYCLE, &[], close_time()),
        Err(BillingError::Closed(_))
    ));
}

#[test]
fn reopen_is_audited_and_closing_again_writes_version_2_with_the_correction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("district.db");
    let mut s = closed(Store::open(&path).unwrap());
    let v1 = jsonl(&billing::open_batch(&s, CYCLE, None).unwrap());
    let history_before = s.history_of_account("A1").unwrap().len();
    assert_eq!(
        history_before, 26,
        "the close wrote the billed read into history"
    );

    assert!(matches!(
        billing::reopen_cycle(&mut s, CYCLE, "  ", "ann", close_time()),
        Err(BillingError::NoReason(_))
    ));
    let reopened_at = at(day(2026, 11, 23), 8);
    let r =
        billing::reopen_cycle(&mut s, CYCLE, "A6 was re-read: 6020", "ann", reopened_at).unwrap();
    assert_eq!((r.batch_version, r.history_removed), (1, 5));
    assert_eq!(s.history_of_account("A1").unwrap().len(), 25);
    let m6 = read_of(&s, "M6");
    clerk::correct(
        &mut s,
        &Config::default(),
        m6.read_id,
        "6020",
        "re-read",
        "carla",
        reopened_at,
    )
    .unwrap();
    let report =
        billing::close_cycle(&mut s, &Config::default(), CYCLE, &[], close_time()).unwrap();
    assert_eq!(report.batch_version, 2);
    assert_eq!(billing::batch_versions(&s, CYCLE).unwrap(), [1, 2]);

    let v2 = billing::open_batch(&s, CYCLE, None).unwrap();
    assert_eq!(v2.header().batch_version, 2);
    let a6 = record(&v2, "A6");
    assert_eq!(
        (a6.meters[0].consumption, a6.read_type),
        (20, LineReadType::Edited)
    );
    assert_eq!(v2.held().len(), 1, "A7 is still held by the clerk");
    // Version 1 is kept byte for byte.
    let old = billing::open_batch(&s, CYCLE, Some(1)).unwrap();
    assert_eq!(jsonl(&old), v1);
    assert!(old.records().all(|r| r.account_id != "A6"));
    drop(s);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let audit: Vec<(String, String, String, String)> = conn
        .prepare("SELECT actor, action, reason, at FROM audit_log WHERE entity = 'cycle' AND entity_id = ?1 ORDER BY audit_id")
        .unwrap()
        .query_map([CYCLE], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.1.as_str()).collect();
    assert_eq!(actions, ["close", "reopen", "close"]);
    assert_eq!(audit[1].0, "ann");
    assert_eq!(audit[1].2, "A6 was re-read: 6020");
    assert_eq!(audit[1].3, "2026-11-23T08:00:00");
    // The frozen cycle holds for any writer, even raw SQL.
    let frozen = conn
        .execute(
            "UPDATE field_reads SET status = 'resolved' WHERE cycle_id = ?1",
            [CYCLE],
        )
        .unwrap_err();
    assert!(frozen.to_string().contains("cycle is closed"), "{frozen}");
    // Stored batches are append-only.
    assert!(conn
        .execute("UPDATE billing_batches SET body = '' WHERE version = 1", [])
        .is_err());
}

#[test]
fn exporting_twice_gives_identical_bytes_in_both_formats_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("district.db");
    {
        let mut s = Store::open(&db).unwrap();
        cycle_with_reads(&mut s);
        clerk_works(&mut s);
    }
    let run = |args: &[&str]| {
        let mut all = vec!["meter-gateway", "--db", db.to_str().unwrap()];
        all.extend_from_slice(args);
        meter_gateway::cli::run(meter_gateway::cli::Cli::parse_from(all))
    };
    let refused = run(&["cycle", "close", CYCLE]).unwrap_err();
    assert!(
        refused.to_string().contains("account A6 meter M6"),
        "{refused}"
    );
    run(&["cycle", "close", CYCLE, "--hold", "A6"]).unwrap();
    let file = |name: &str| dir.path().join(name);
    let out = |name: &str| file(name).to_str().unwrap().to_string();
    for (format, a, b) in [("jsonl", "a.jsonl", "b.jsonl"), ("csv", "a.csv", "b.csv")] {
        run(&[
            "export",
            "billing",
            "--cycle",
            CYCLE,
            "--format",
            format,
            &out(a),
        ])
        .unwrap();
        run(&[
            "export",
            "billing",
            "--cycle",
            CYCLE,
            "--format",
            format,
            &out(b),
        ])
        .unwrap();
        let (x, y) = (read_bytes(&file(a)), read_bytes(&file(b)));
        assert!(!x.is_empty());
        assert_eq!(x, y, "{format} exports differ");
    }
    let text = String::from_utf8(read_bytes(&file("a.jsonl"))).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with(r#"{"type":"header""#), "{}", lines[0]);
    assert_eq!(lines.len(), 1 + 5 + 2);
    let csv = String::from_utf8(read_bytes(&file("a.csv"))).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("record_type,cycle_id,batch_version,account_id"));
    assert!(rows[1].starts_with("batch,2026-11,1,"));
    assert_eq!(rows.iter().filter(|r| r.starts_with("meter,")).count(), 6);
    assert_eq!(
        rows.iter().filter(|r| r.starts_with("adjustment,")).count(),
        1
    );
    assert_eq!(rows.iter().filter(|r| r.starts_with("held,")).count(), 2);
    // The file export is the API's bytes.
    let s = Store::open(&db).unwrap();
    assert_eq!(
        jsonl(&billing::open_batch(&s, CYCLE, None).unwrap()),
        text.as_bytes()
    );
}

fn read_bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[tokio::test]
async fn the_http_endpoint_serves_the_batch_to_billing_tokens_only() {
    let s = closed_store();
    let expected = jsonl(&billing::open_batch(&s, CYCLE, None).unwrap());
    let state = serve::test_state(Db::start(s).unwrap());
    let app = serve::router(state.clone());
    let billing_token = serve::billing_token_for_tests(&state, "billrun").await;
    let device = serve::device_token_for_tests(&state, "HH-01").await;
    let (clerk, _) = serve::sign_in_session_for_tests(&state, "carla", UserRole::Clerk).await;
    let (admin, _) = serve::sign_in_session_for_tests(&state, "adam", UserRole::Admin).await;
    let path = format!("/api/v1/cycles/{CYCLE}/billing");
    let send = |req: Request<Body>| {
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
                .await
                .unwrap();
            (status, headers, body.to_vec())
        }
    };
    let get = |p: &str| Request::builder().uri(p.to_string());

    let (status, headers, body) = send(
        get(&path)
            .header(header::AUTHORIZATION, format!("Bearer {billing_token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, expected);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-ndjson");
    assert_eq!(headers["x-batch-version"], "1");
    assert_eq!(headers["x-cycle-status"], "closed");
    let (status, _, csv) = send(
        get(&format!("{path}?format=csv&version=1"))
            .header(header::AUTHORIZATION, format!("Bearer {billing_token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(csv.starts_with(b"record_type,"));
    for (who, req) in [
        ("anonymous", get(&path).body(Body::empty()).unwrap()),
        (
            "device",
            get(&path)
                .header(header::AUTHORIZATION, format!("Bearer {device}"))
                .body(Body::empty())
                .unwrap(),
        ),
        (
            "clerk",
            get(&path)
                .header(header::COOKIE, &clerk)
                .body(Body::empty())
                .unwrap(),
        ),
        (
            "admin",
            get(&path)
                .header(header::COOKIE, &admin)
                .body(Body::empty())
                .unwrap(),
        ),
        (
            "forged token",
            get(&path)
                .header(header::AUTHORIZATION, "Bearer mgb_0000")
                .body(Body::empty())
                .unwrap(),
        ),
    ] {
        let (status, _, body) = send(req).await;
        assert!(
            matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
            "{who}: {status}"
        );
        assert!(
            !body.starts_with(b"{\"type\":\"header\""),
            "{who} got the batch"
        );
    }
    let (status, _, _) = send(
        get("/api/v1/cycles/1999-01/billing")
            .header(header::AUTHORIZATION, format!("Bearer {billing_token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = send(
        get(&format!("{path}?format=xml"))
            .header(header::AUTHORIZATION, format!("Bearer {billing_token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
