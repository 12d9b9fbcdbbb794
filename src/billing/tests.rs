//! Unit tests: history replay, billed use, HCF conversion, the batch's canonical form and checksum.

use super::batch::{Batch, BillingRecord, HeldAccount, HoldSource, LineReadType, MeterLine};
use super::close::{billed_use, replay, to_hcf, Base, Pulled};
use super::BillingError;
use crate::domain::{HistoryRead, ReadKind, Register, Unit};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::str::FromStr;

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, m, d).unwrap()
}

fn h(meter: &str, m: u32, d: u32, reading: u64, kind: ReadKind) -> HistoryRead {
    HistoryRead {
        account_id: "A".into(),
        meter_id: meter.into(),
        read_on: day(m, d),
        reading,
        kind,
    }
}

fn reg(dials: u8, multiplier: u32, unit: Unit) -> Register {
    Register {
        dials,
        multiplier,
        unit,
    }
}

#[test]
fn a_meter_change_since_the_last_billed_read_leaves_the_old_meters_use_to_bill() {
    let rows = [
        h("OLD", 9, 5, 480, ReadKind::Actual),
        h("NEW", 10, 20, 0, ReadKind::Initial),
        h("OLD", 10, 20, 510, ReadKind::Final),
        h("OLD", 10, 5, 500, ReadKind::Actual),
    ];
    let r = replay(&rows, day(11, 30));
    assert_eq!(r.period_start, Some(day(10, 5)));
    assert_eq!(
        r.pulled,
        [Pulled {
            meter_id: "OLD".into(),
            previous: Base {
                reading: 500,
                read_on: day(10, 5),
                kind: ReadKind::Actual
            },
            final_reading: 510,
            final_on: day(10, 20),
        }]
    );
    assert_eq!(r.bases.len(), 1);
    assert_eq!(r.bases["NEW"].kind, ReadKind::Initial);
}

#[test]
fn a_billed_read_after_a_meter_change_settles_the_pulled_meter() {
    let rows = [
        h("OLD", 10, 5, 500, ReadKind::Actual),
        h("OLD", 10, 20, 510, ReadKind::Final),
        h("NEW", 10, 20, 0, ReadKind::Initial),
        h("NEW", 11, 5, 12, ReadKind::Estimated),
    ];
    let r = replay(&rows, day(11, 30));
    assert!(r.pulled.is_empty());
    assert_eq!(r.period_start, Some(day(11, 5)));
    assert_eq!(r.bases["NEW"].reading, 12);
    // Rows after the cut-off are not replayed.
    let early = replay(&rows, day(11, 4));
    assert_eq!(early.pulled.len(), 1);
    assert_eq!(early.bases["NEW"].reading, 0);
}

#[test]
fn a_new_service_starts_its_period_on_the_initial_reading() {
    let r = replay(&[h("M", 10, 12, 7, ReadKind::Initial)], day(11, 30));
    assert_eq!(r.period_start, Some(day(10, 12)));
    assert_eq!(r.bases["M"].reading, 7);
}

#[test]
fn billed_use_wraps_through_zero_and_refuses_a_register_that_went_backwards() {
    let r = reg(4, 1, Unit::Hcf);
    assert_eq!(billed_use(&r, 9_990, 12, false), Some((22, true)));
    assert_eq!(billed_use(&r, 100, 130, false), Some((30, false)));
    assert_eq!(billed_use(&r, 500, 400, false), None);
    // Validation recognised a long wrap as a rollover: billing follows it.
    assert_eq!(billed_use(&r, 4_000, 1_000, true), Some((7_000, true)));
    let cf = reg(5, 100, Unit::Cf);
    assert_eq!(billed_use(&cf, 10, 25, false), Some((1_500, false)));
}

#[test]
fn hcf_is_exact_for_cubic_feet_and_rounded_to_a_cubic_foot_for_gallons() {
    assert_eq!(to_hcf(1_550, Unit::Cf), Decimal::from_str("15.5").unwrap());
    assert_eq!(to_hcf(7, Unit::Hcf), Decimal::from(7));
    assert_eq!(to_hcf(748_052, Unit::Gal), Decimal::from(1_000));
    assert_eq!(to_hcf(1_000, Unit::Gal), Decimal::from_str("1.34").unwrap());
    assert_eq!(to_hcf(1, Unit::Kgal), Decimal::from_str("1.34").unwrap());
    assert_eq!(to_hcf(283, Unit::M3), Decimal::from_str("99.94").unwrap());
}

fn line(meter: &str, consumption: u64, unit: Unit) -> MeterLine {
    MeterLine {
        meter_id: meter.into(),
        dials: 5,
        multiplier: 1,
        unit: unit.to_string(),
        previous_reading: 100,
        previous_read_on: day(10, 5),
        previous_kind: "actual".into(),
        current_reading: 100 + consumption,
        current_read_on: day(11, 5),
        read_type: LineReadType::Actual,
        read_id: Some(1),
        rollover: false,
        consumption,
        consumption_hcf: to_hcf(consumption, unit),
        quality: vec!["3.0.1".into()],
    }
}

fn rec(account: &str, lines: Vec<MeterLine>, adjust: &str) -> BillingRecord {
    BillingRecord {
        account_id: account.into(),
        account_status: "active".into(),
        rate_class: "residential".into(),
        route_id: "R1".into(),
        period_from: day(10, 5),
        period_to: day(11, 5),
        days: 31,
        read_type: LineReadType::Actual,
        consumption_hcf: lines.iter().map(|l| l.consumption_hcf).sum(),
        meters: lines,
        adjustments: Vec::new(),
        adjustments_total: Decimal::from_str(adjust).unwrap(),
        held: false,
    }
}

fn build(records: Vec<BillingRecord>) -> Batch {
    let held = vec![HeldAccount {
        account_id: "Z9".into(),
        source: HoldSource::Close,
        read_ids: vec![7],
        flags: vec!["high".into()],
        pending_adjustment_ids: Vec::new(),
        pending_adjustments_total: Decimal::ZERO,
    }];
    Batch::build(
        "2026-11",
        (day(11, 1), day(11, 20)),
        1,
        day(11, 21).and_hms_opt(17, 0, 0).unwrap(),
        "tester",
        records,
        held,
    )
    .unwrap()
}

#[test]
fn the_batch_body_is_canonical_whatever_order_the_records_come_in() {
    let a = rec("A1", vec![line("M1", 12, Unit::Hcf)], "0");
    let b = rec("B2", vec![line("M2", 1_500, Unit::Cf)], "-4.10");
    let one = build(vec![a.clone(), b.clone()]);
    let two = build(vec![b, a]);
    assert_eq!(one.canonical_body(), two.canonical_body());
    assert_eq!(one.header(), two.header());
    let h = one.header();
    assert_eq!(h.record_count, 2);
    assert_eq!(h.consumption_by_unit["hcf"], 12);
    assert_eq!(h.consumption_by_unit["cf"], 1_500);
    assert_eq!(h.consumption_hcf, Decimal::from(27));
    assert_eq!(h.adjustments_total, Decimal::from_str("-4.10").unwrap());
    let ids: Vec<&str> = one.records().map(|r| r.account_id.as_str()).collect();
    assert_eq!(ids, ["A1", "B2"]);
}

#[test]
fn a_stored_batch_whose_body_was_altered_is_refused() {
    let b = build(vec![rec("A1", vec![line("M1", 12, Unit::Hcf)], "0")]);
    let header = b.header_json().unwrap();
    let back = Batch::from_stored(&header, b.canonical_body().to_string()).unwrap();
    assert_eq!(back, b);
    let tampered = b
        .canonical_body()
        .replace("\"consumption\":12", "\"consumption\":2");
    assert_ne!(tampered, b.canonical_body());
    let err = Batch::from_stored(&header, tampered).unwrap_err();
    assert!(matches!(err, BillingError::Corrupt { .. }), "{err}");
}

#[test]
fn the_jsonl_export_is_the_header_then_the_body() {
    let b = build(vec![rec("A1", vec![line("M1", 12, Unit::Hcf)], "0")]);
    let mut out = Vec::new();
    b.write_jsonl(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    assert!(first.starts_with(r#"{"type":"header","schema_version":1,"cycle_id":"2026-11""#));
    assert_eq!(rest, b.canonical_body());
    assert!(rest.ends_with("{\"type\":\"held\",\"account_id\":\"Z9\",\"source\":\"close\",\"read_ids\":[7],\"flags\":[\"high\"],\"pending_adjustment_ids\":[],\"pending_adjustments_total\":\"0\"}\n"));
}

#[test]
fn every_csv_row_has_every_column() {
    let b = build(vec![rec("A1", vec![line("M1", 12, Unit::Hcf)], "0")]);
    let mut out = Vec::new();
    b.write_csv(&mut out).unwrap();
    let mut r = csv::Reader::from_reader(out.as_slice());
    let width = r.headers().unwrap().len();
    let kinds: Vec<String> = r
        .records()
        .map(|row| {
            let row = row.unwrap();
            assert_eq!(row.len(), width);
            row[0].to_string()
        })
        .collect();
    assert_eq!(kinds, ["batch", "meter", "held"]);
}

#[test]
fn the_csv_reads_back_as_its_rows() {
    let b = build(vec![rec("A1", vec![line("M1", 12, Unit::Hcf)], "0")]);
    let mut out = Vec::new();
    b.write_csv(&mut out).unwrap();
    let header = std::str::from_utf8(&out).unwrap().lines().next().unwrap();
    assert_eq!(header, super::batch::BatchCsvRow::columns().join(","));
    let rows = super::batch::read_csv(out.as_slice()).unwrap();
    let kinds: Vec<&str> = rows.iter().map(|r| r.record_type.as_str()).collect();
    assert_eq!(kinds, ["batch", "meter", "held"]);
    assert_eq!(
        (rows[1].account_id.as_str(), rows[1].meter_id.as_str()),
        ("A1", "M1")
    );
    assert_eq!(rows[1].cycle_id, "2026-11");
    assert!(rows[0].note.contains("checksum="), "{:?}", rows[0]);
}

#[test]
fn a_misspelt_unknown_or_missing_csv_column_is_refused_by_name() {
    let b = build(vec![rec("A1", vec![line("M1", 12, Unit::Hcf)], "0")]);
    let mut out = Vec::new();
    b.write_csv(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let (header, rest) = text.split_once('\n').unwrap();
    for (bad_header, named) in [
        (
            header.replace("consumption_hcf", "consumpton_hcf"),
            "unknown column `consumpton_hcf`",
        ),
        (format!("{header},colour"), "unknown column `colour`"),
        (header.replace(",quality", ""), "missing column `quality`"),
    ] {
        let e = super::batch::read_csv(format!("{bad_header}\n{rest}").as_bytes()).unwrap_err();
        assert!(matches!(e, BillingError::BadCsv(_)), "{e:?}");
        assert!(e.to_string().contains(named), "{e}");
    }
}
