//! Unit tests of the pure validator: each rule fires on its case and not on its trap.

use super::settings::{Tolerance, ValidationConfig};
use super::*;
use crate::domain::{
    AccountStatus, FieldRead, HistoryRead, MeterStatus, ReadKind, ReadMethod, ReadType, Register,
    Unit,
};
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn at(s: &str) -> NaiveDateTime {
    d(s).and_hms_opt(10, 0, 0).unwrap()
}

fn reg(dials: u8) -> Register {
    Register {
        dials,
        multiplier: 1,
        unit: Unit::Hcf,
    }
}

/// Monthly actual reads on the 3rd of each month from `start` for `months` months, with `use_in(month)`
/// units used in the month ending on that read, starting at `first`.
fn monthly(
    meter: &str,
    start: &str,
    months: u32,
    first: u64,
    dials: u8,
    use_in: impl Fn(u32) -> u64,
) -> Vec<HistoryRead> {
    let mut on = d(start);
    let mut reading = first;
    let mut out = vec![HistoryRead {
        account_id: "A1".into(),
        meter_id: meter.into(),
        read_on: on,
        reading,
        kind: ReadKind::Actual,
    }];
    for _ in 0..months {
        on = on.checked_add_months(chrono::Months::new(1)).unwrap();
        reading = reg(dials).advance(reading, use_in(on.month()));
        out.push(HistoryRead {
            account_id: "A1".into(),
            meter_id: meter.into(),
            read_on: on,
            reading,
            kind: ReadKind::Actual,
        });
    }
    out
}

/// An irrigation account: ~2 units a month in winter, 30 in summer, ramping in April–May and
/// dropping in October, with a few percent of deterministic noise.
fn irrigation(month: u32) -> u64 {
    let base = match month {
        5 => 12,
        6 => 26,
        7..=9 => 30,
        10 => 22,
        11 => 6,
        _ => 2,
    };
    base + u64::from(month % 3)
}

/// A steady household: 10–13 units a month.
fn household(month: u32) -> u64 {
    10 + u64::from(month * 7 % 4)
}

/// A keyed regular read of `meter` on day `on` (10:00), as keyed: `raw`.
pub(super) fn field(meter: &str, on: &str, raw: &str) -> FieldRead {
    FieldRead {
        meter_id: meter.into(),
        read_at: at(on),
        raw_reading: raw.into(),
        read_type: ReadType::Regular,
        method: ReadMethod::Keyed,
        reader: "R1".into(),
        codes: vec![],
        skip_code: None,
        note: None,
        device: None,
    }
}

struct Case {
    history: AccountHistory,
    class: &'static str,
    status: AccountStatus,
    register: Register,
}

impl Case {
    fn new(reads: &[HistoryRead], class: &'static str, dials: u8) -> Case {
        Case {
            history: AccountHistory::build(reads, |_| Some(reg(dials))),
            class,
            status: AccountStatus::Active,
            register: reg(dials),
        }
    }

    fn judge(&self, read: &FieldRead, earlier: Option<&str>) -> Decision {
        self.judge_with(read, earlier, &[])
    }

    fn judge_with(
        &self,
        read: &FieldRead,
        earlier: Option<&str>,
        codes: &[crate::domain::MessageCode],
    ) -> Decision {
        self.judge_under(read, earlier, codes, &ValidationConfig::default())
    }

    fn judge_cfg(&self, read: &FieldRead, cfg: &ValidationConfig) -> Decision {
        self.judge_under(read, None, &[], cfg)
    }

    fn judge_under(
        &self,
        read: &FieldRead,
        earlier: Option<&str>,
        codes: &[crate::domain::MessageCode],
        cfg: &ValidationConfig,
    ) -> Decision {
        let input = ReadInput {
            read,
            meter: MeterContext::InService(Service {
                account_id: "A1",
                account_status: self.status,
                rate_class: self.class,
                route_id: "R01",
                on_cycle: true,
                register: self.register,
                history: &self.history,
            }),
            window_from: read.read_at.date() - Duration::days(5),
            window_to: read.read_at.date() + Duration::days(5),
            now: read.read_at + Duration::days(1),
            earlier,
            codes,
        };
        validate(&input, cfg)
    }

    /// The reading `used` units after the meter's last reading.
    fn after(&self, meter: &str, used: u64) -> String {
        let base = self.history.base_of(meter).unwrap().reading;
        self.register.advance(base, used).to_string()
    }
}

fn kinds(dec: &Decision) -> Vec<FlagKind> {
    dec.flags.iter().map(|f| f.kind).collect()
}

#[test]
fn a_spring_ramp_up_of_an_irrigation_account_is_not_high() {
    // Two years of history up to 2026-04-03; the May read is the ramp-up.
    let c = Case::new(
        &monthly("M1", "2024-04-03", 24, 1_000, 6, irrigation),
        "irrigation",
        6,
    );
    let dec = c.judge(
        &field("M1", "2026-05-03", &c.after("M1", irrigation(5))),
        None,
    );
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
    // The same use a month earlier than it ever happened before is far above expected.
    let dec = c.judge(&field("M1", "2026-05-03", &c.after("M1", 90)), None);
    assert_eq!(kinds(&dec), vec![FlagKind::High], "{:?}", dec.flags);
}

#[test]
fn a_spring_ramp_up_three_weeks_early_is_not_high() {
    let c = Case::new(
        &monthly("M1", "2024-04-03", 24, 1_000, 6, irrigation),
        "irrigation",
        6,
    );
    // Half of June's use already in the April–May period: the season started about three weeks early.
    let dec = c.judge(&field("M1", "2026-05-03", &c.after("M1", 20)), None);
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
}

#[test]
fn an_autumn_drop_of_an_irrigation_account_is_not_low() {
    let c = Case::new(
        &monthly("M1", "2024-10-03", 24, 1_000, 6, irrigation),
        "irrigation",
        6,
    );
    // Irrigation stopped early: October's period with less than last year's use.
    let dec = c.judge(&field("M1", "2026-11-03", &c.after("M1", 8)), None);
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
    assert_eq!(
        dec.expected_basis
            .as_deref()
            .map(|b| b.starts_with("same period in the last 2 years")),
        Some(true)
    );
}

#[test]
fn a_leak_on_a_steady_household_is_high_and_says_why() {
    let c = Case::new(
        &monthly("M1", "2024-06-03", 24, 500, 5, household),
        "residential",
        5,
    );
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 48)), None);
    assert_eq!(kinds(&dec), vec![FlagKind::High]);
    let e = &dec.flags[0].explanation;
    assert!(e.starts_with("used 48 hcf in 30 days; expected "), "{e}");
    assert!(
        e.contains("same period in the last 2 years") && e.contains("× expected; band "),
        "{e}"
    );
    assert_eq!(dec.flags[0].quality, "3.6.3");
    assert_eq!(dec.status, ReadStatus::Flagged);
    assert_eq!(dec.consumption, Some(48));
}

#[test]
fn normal_use_on_a_steady_household_is_accepted_with_its_limits() {
    let c = Case::new(
        &monthly("M1", "2024-06-03", 24, 500, 5, household),
        "residential",
        5,
    );
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 12)), None);
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
    assert_eq!(dec.status, ReadStatus::Accepted);
    let (lo, hi) = (dec.low_limit.unwrap(), dec.high_limit.unwrap());
    let prev = dec.previous_reading.unwrap();
    assert!(
        lo > prev && lo < prev + 12 && hi > prev + 12 && hi < prev + 30,
        "{lo} {hi} {prev}"
    );
}

#[test]
fn a_low_read_on_a_steady_household_is_low() {
    let c = Case::new(
        &monthly("M1", "2024-06-03", 24, 500, 5, household),
        "residential",
        5,
    );
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 2)), None);
    assert_eq!(kinds(&dec), vec![FlagKind::Low]);
    assert_eq!(dec.flags[0].quality, "3.6.4");
}

#[test]
fn a_stuck_meter_is_zero_but_a_dry_irrigation_winter_is_not() {
    let c = Case::new(
        &monthly("M1", "2024-06-03", 24, 500, 5, household),
        "residential",
        5,
    );
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 0)), None);
    assert_eq!(kinds(&dec), vec![FlagKind::Zero]);
    let winter = |m: u32| if (4..=10).contains(&m) { 30 } else { 0 };
    let c = Case::new(
        &monthly("M1", "2024-06-03", 24, 500, 5, winter),
        "irrigation",
        5,
    );
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 0)), None);
    assert_eq!(
        kinds(&dec),
        vec![FlagKind::Zero],
        "summer zero on irrigation"
    );
    let c = Case::new(
        &monthly("M1", "2024-01-03", 24, 500, 5, winter),
        "irrigation",
        5,
    );
    let dec = c.judge(&field("M1", "2026-02-03", &c.after("M1", 0)), None);
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
}

#[test]
fn a_rollover_near_9999_is_accepted_and_informational() {
    let total = Case::new(
        &monthly("M1", "2024-06-03", 24, 0, 4, household),
        "residential",
        4,
    )
    .history
    .base_of("M1")
    .unwrap()
    .reading;
    let c = Case::new(
        &monthly("M1", "2024-06-03", 24, 9_990 - total, 4, household),
        "residential",
        4,
    );
    assert_eq!(c.history.base_of("M1").unwrap().reading, 9_990);
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 12)), None);
    assert_eq!(kinds(&dec), vec![FlagKind::Rollover]);
    assert_eq!(dec.flags[0].quality, "3.4.1");
    assert_eq!(dec.status, ReadStatus::Accepted);
    assert_eq!(dec.consumption, Some(12));
    // The limits wrap too: the high limit is past 0, the low limit still below 9999.
    assert!(dec.high_limit.unwrap() < dec.low_limit.unwrap());
}

#[test]
fn a_reading_below_the_previous_is_negative_when_a_rollover_is_implausible() {
    let c = Case::new(
        &monthly("M1", "2024-06-03", 24, 5_000, 4, household),
        "residential",
        4,
    );
    let base = c.history.base_of("M1").unwrap().reading;
    let dec = c.judge(&field("M1", "2026-07-03", &(base - 9).to_string()), None);
    assert_eq!(kinds(&dec), vec![FlagKind::Negative]);
    assert_eq!(dec.flags[0].quality, "3.3.4");
    assert_eq!(dec.consumption, Some(-9));
}

#[test]
fn a_meter_change_mid_history_is_followed_and_the_new_meter_is_judged_from_its_initial() {
    let mut reads = monthly("OLD", "2024-06-03", 20, 500, 5, household);
    let last = reads.last().unwrap().clone();
    let changed = last.read_on + Duration::days(10);
    reads.push(HistoryRead {
        read_on: changed,
        reading: last.reading + 4,
        kind: ReadKind::Final,
        ..last.clone()
    });
    reads.push(HistoryRead {
        meter_id: "NEW".into(),
        read_on: changed,
        reading: 0,
        kind: ReadKind::Initial,
        ..last.clone()
    });
    let mut on = last.read_on;
    let mut r = 0;
    for _ in 0..4 {
        on = on.checked_add_months(chrono::Months::new(1)).unwrap();
        r += if on
            == last
                .read_on
                .checked_add_months(chrono::Months::new(1))
                .unwrap()
        {
            household(on.month()) - 4
        } else {
            household(on.month())
        };
        reads.push(HistoryRead {
            meter_id: "NEW".into(),
            read_on: on,
            reading: r,
            kind: ReadKind::Actual,
            ..last.clone()
        });
    }
    let c = Case::new(&reads, "residential", 5);
    assert_eq!(c.history.periods.len(), 24);
    // The period spanning the change counts both meters: no dip in the history.
    assert!(
        c.history.periods.iter().all(|p| p.usage >= 10.0),
        "{:?}",
        c.history.periods
    );
    let next = (on + Duration::days(30)).format("%Y-%m-%d").to_string();
    let dec = c.judge(&field("NEW", &next, &c.after("NEW", 11)), None);
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
    assert_eq!(dec.previous_reading, Some(r));
}

#[test]
fn a_read_just_after_a_meter_change_adds_the_old_meters_use() {
    let mut reads = monthly("OLD", "2024-06-03", 24, 500, 5, household);
    let last = reads.last().unwrap().clone();
    let changed = last.read_on + Duration::days(15);
    reads.push(HistoryRead {
        read_on: changed,
        reading: last.reading + 6,
        kind: ReadKind::Final,
        ..last.clone()
    });
    reads.push(HistoryRead {
        meter_id: "NEW".into(),
        read_on: changed,
        reading: 100,
        kind: ReadKind::Initial,
        ..last.clone()
    });
    let c = Case::new(&reads, "residential", 5);
    let on = (last.read_on + Duration::days(30))
        .format("%Y-%m-%d")
        .to_string();
    let dec = c.judge(&field("NEW", &on, "105"), None);
    assert_eq!(dec.consumption, Some(11));
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
    assert_eq!(dec.previous_reading, Some(100));
    // Limits are readings on the NEW register: the 6 units on the old meter are already used.
    assert!(dec.high_limit.unwrap() < 100 + 30 && dec.low_limit.unwrap() >= 100);
}

#[test]
fn thin_history_gets_a_wide_band() {
    let c = Case::new(
        &monthly("M1", "2026-04-03", 2, 0, 5, household),
        "residential",
        5,
    );
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 19)), None);
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
    assert!(dec.expected_basis.unwrap().starts_with("only 2 periods"));
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 80)), None);
    assert_eq!(kinds(&dec), vec![FlagKind::High]);
}

#[test]
fn an_account_with_no_period_yet_is_not_judged_on_use() {
    let reads = monthly("M1", "2026-06-03", 0, 40, 5, household);
    let c = Case::new(&reads, "residential", 5);
    let dec = c.judge(&field("M1", "2026-07-03", "75"), None);
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
    assert_eq!(dec.consumption, Some(35));
    assert_eq!(dec.expected_use, None);
}

#[test]
fn use_on_an_inactive_account_is_flagged_but_no_use_is_not() {
    let mut c = Case::new(
        &monthly("M1", "2024-06-03", 24, 500, 5, household),
        "residential",
        5,
    );
    c.status = AccountStatus::Inactive;
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 0)), None);
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 3)), None);
    assert_eq!(kinds(&dec), vec![FlagKind::InactiveUsage]);
    assert_eq!(dec.flags[0].quality, "3.6.2");
}

#[test]
fn a_reading_with_more_digits_than_dials_or_not_a_number_is_invalid() {
    let c = Case::new(
        &monthly("M1", "2024-06-03", 24, 500, 4, household),
        "residential",
        4,
    );
    for raw in ["12345", "01234", "12a4", ""] {
        let dec = c.judge(&field("M1", "2026-07-03", raw), None);
        assert_eq!(kinds(&dec), vec![FlagKind::InvalidReading], "{raw}");
        assert_eq!(dec.flags[0].quality, "3.7.3");
        assert_eq!(dec.consumption, None);
    }
}

#[test]
fn a_different_second_read_is_a_duplicate_and_the_same_value_is_recognised() {
    let c = Case::new(
        &monthly("M1", "2024-06-03", 24, 500, 5, household),
        "residential",
        5,
    );
    let r = c.after("M1", 12);
    let dec = c.judge(&field("M1", "2026-07-03", &r), Some("00001"));
    assert_eq!(kinds(&dec), vec![FlagKind::Duplicate]);
    assert!(same_reading(&r, &format!("00{r}")));
    assert!(!same_reading("12", "13"));
    assert!(same_reading("abc", " abc "));
}

#[test]
fn a_read_outside_the_window_or_in_the_future_is_out_of_window() {
    let c = Case::new(
        &monthly("M1", "2024-06-03", 24, 500, 5, household),
        "residential",
        5,
    );
    let read = field("M1", "2026-07-03", &c.after("M1", 12));
    let cfg = ValidationConfig::default();
    let service = Service {
        account_id: "A1",
        account_status: AccountStatus::Active,
        rate_class: "residential",
        route_id: "R01",
        on_cycle: true,
        register: c.register,
        history: &c.history,
    };
    let mut input = ReadInput {
        read: &read,
        meter: MeterContext::InService(service),
        window_from: d("2026-07-05"),
        window_to: d("2026-07-20"),
        now: at("2026-07-10"),
        earlier: None,
        codes: &[],
    };
    assert_eq!(kinds(&validate(&input, &cfg)), vec![FlagKind::OutOfWindow]);
    input.window_from = d("2026-07-01");
    input.now = at("2026-07-02");
    let dec = validate(&input, &cfg);
    assert_eq!(kinds(&dec), vec![FlagKind::OutOfWindow]);
    assert!(dec.flags[0].explanation.contains("after the read reached"));
}

#[test]
fn a_meter_not_in_service_or_unknown_is_a_mismatch() {
    let read = field("M9", "2026-07-03", "123");
    let cfg = ValidationConfig::default();
    let mut input = ReadInput {
        read: &read,
        meter: MeterContext::Unknown,
        window_from: d("2026-07-01"),
        window_to: d("2026-07-20"),
        now: at("2026-07-10"),
        earlier: None,
        codes: &[],
    };
    let dec = validate(&input, &cfg);
    assert_eq!(kinds(&dec), vec![FlagKind::MeterMismatch]);
    assert_eq!(dec.reading, Some(123));
    input.meter = MeterContext::NotInService {
        status: MeterStatus::Inventory,
        account_id: None,
    };
    let dec = validate(&input, &cfg);
    assert!(
        dec.flags[0].explanation.contains("inventory"),
        "{:?}",
        dec.flags
    );
}

#[test]
fn a_confirmed_high_read_stays_flagged_but_says_so() {
    let c = Case::new(
        &monthly("M1", "2024-06-03", 24, 500, 5, household),
        "residential",
        5,
    );
    let mut read = field("M1", "2026-07-03", &c.after("M1", 60));
    read.read_type = ReadType::HighConfirmed;
    let dec = c.judge(&read, None);
    assert_eq!(dec.status, ReadStatus::Flagged);
    assert!(dec.flags[0]
        .explanation
        .ends_with("confirmed by the reader at the meter"));
}

#[test]
fn a_skipped_read_is_missing() {
    let c = Case::new(
        &monthly("M1", "2024-06-03", 24, 500, 5, household),
        "residential",
        5,
    );
    let mut read = field("M1", "2026-07-03", "");
    read.read_type = ReadType::Skipped;
    read.skip_code = Some("DG".into());
    let dec = c.judge(&read, None);
    assert_eq!(kinds(&dec), vec![FlagKind::Missing]);
    assert!(dec.flags[0].explanation.contains("DG"));
}

#[test]
fn limits_are_register_readings_through_the_multiplier_and_wrap() {
    let r = Register {
        dials: 4,
        multiplier: 10,
        unit: Unit::Gal,
    };
    // 9,990 + 50..=150 gallons = 5..=15 register units: wraps to 9,995 .. 5.
    assert_eq!(
        limits_as_readings(&r, 9_990, 0.0, 50.0, 150.0),
        Some((9_995, 5))
    );
    // Use already on a pulled meter is subtracted before converting.
    assert_eq!(
        limits_as_readings(&r, 100, 30.0, 50.0, 150.0),
        Some((102, 112))
    );
    // A band wider than the dial gives no usable limit.
    assert_eq!(limits_as_readings(&r, 100, 0.0, 0.0, 1.0e6), None);
}

#[test]
fn estimation_uses_the_same_period_last_year_else_the_average() {
    let c = Case::new(
        &monthly("M1", "2024-06-03", 24, 1_000, 6, irrigation),
        "irrigation",
        6,
    );
    let cfg = ValidationConfig::default();
    let e = estimate(
        &c.history,
        "M1",
        &c.register,
        "irrigation",
        d("2026-07-03"),
        &cfg,
    )
    .unwrap();
    assert!(
        e.basis.starts_with("same period in the last 2 years"),
        "{}",
        e.basis
    );
    assert!((24..=36).contains(&e.consumption), "{e:?}");
    assert_eq!(e.quality, "3.8.0");
    let base = c.history.base_of("M1").unwrap().reading;
    assert_eq!(e.reading, c.register.advance(base, e.consumption));

    let c = Case::new(
        &monthly("M1", "2026-02-03", 4, 0, 5, household),
        "residential",
        5,
    );
    let e = estimate(
        &c.history,
        "M1",
        &c.register,
        "residential",
        d("2026-07-03"),
        &cfg,
    )
    .unwrap();
    assert!(e.basis.starts_with("average daily use"), "{}", e.basis);
    assert!((9..=14).contains(&e.consumption), "{e:?}");
}

#[test]
fn read_quality_lists_the_handheld_validated_and_flag_codes() {
    assert_eq!(
        read_quality(
            ReadMethod::Keyed,
            ReadStatus::Accepted,
            &[FlagKind::Rollover]
        ),
        vec!["2.4.131", "3.0.1", "3.4.1"]
    );
    assert_eq!(
        read_quality(ReadMethod::Radio, ReadStatus::Flagged, &[FlagKind::High]),
        vec!["3.6.3"]
    );
    // An estimate is no manual read: estimated (3.8.0) only.
    assert_eq!(
        read_quality(ReadMethod::Estimated, ReadStatus::Estimated, &[]),
        vec!["3.8.0"]
    );
    assert_eq!(
        read_quality(
            ReadMethod::Estimated,
            ReadStatus::Estimated,
            &[FlagKind::Missing]
        ),
        vec!["3.8.0", "3.5.259"]
    );
}

#[test]
fn a_catch_up_after_a_low_estimate_is_judged_since_the_last_actual_read() {
    let mut reads = monthly("M1", "2024-06-03", 24, 500, 5, household);
    // The last period was estimated at a third of real use.
    let last = reads.pop().unwrap();
    let before = reads.last().unwrap().reading;
    let real = last.reading - before;
    reads.push(HistoryRead {
        reading: before + real / 3,
        kind: ReadKind::Estimated,
        ..last.clone()
    });
    let c = Case::new(&reads, "residential", 5);
    // This read is the real meter: last period's real use plus this period's.
    let dec = c.judge(
        &field("M1", "2026-07-03", &(last.reading + 12).to_string()),
        None,
    );
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
    assert_eq!(
        dec.consumption,
        Some((last.reading + 12 - (before + real / 3)) as i64)
    );
    assert!(dec
        .expected_basis
        .unwrap()
        .contains("last bill was estimated"));
    // A reading below the estimate but above the last actual reading is a credit, not negative.
    let dec = c.judge(&field("M1", "2026-07-03", &(before + 2).to_string()), None);
    assert!(
        !kinds(&dec).contains(&FlagKind::Negative),
        "{:?}",
        dec.flags
    );
}

#[test]
fn a_vacation_home_with_empty_months_is_not_zero() {
    // Empty in two recent months that had use a year earlier: empty months are this account's normal.
    let period = std::cell::Cell::new(0u32);
    let use_in = |_m: u32| {
        period.set(period.get() + 1);
        if matches!(period.get(), 17 | 21) {
            0
        } else {
            11
        }
    };
    let c = Case::new(
        &monthly("M1", "2024-06-03", 24, 500, 5, use_in),
        "residential",
        5,
    );
    assert_eq!(c.history.unexpected_zero_periods(12, 2.0 / 30.0), 2);
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 0)), None);
    assert!(!kinds(&dec).contains(&FlagKind::Zero), "{:?}", dec.flags);
}

// ---- issue 15: what a careful clerk would catch ------------------------------------------------

/// Three years of a household using `use_in(month)`, then `last` units in the period just before
/// the read (the history ends on 2026-06-03).
fn household_then(last: u64) -> Case {
    let mut reads = monthly("M1", "2023-06-03", 35, 500, 5, household);
    let end = reads.last().unwrap().clone();
    reads.push(HistoryRead {
        read_on: d("2026-06-03"),
        reading: end.reading + last,
        ..end
    });
    Case::new(&reads, "residential", 5)
}

#[test]
fn a_leak_that_began_last_period_does_not_raise_the_expectation_it_is_judged_by() {
    // 44 units last period (the leak began), 28 now; the same period in past years 10–13.
    let c = household_then(44);
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 28)), None);
    assert_eq!(kinds(&dec), vec![FlagKind::High], "{:?}", dec.flags);
    let expected = dec.expected_use.unwrap();
    assert!((9.0..=15.0).contains(&expected), "{expected}");
}

#[test]
fn a_moderate_leak_above_the_accounts_own_maximum_is_high_and_says_so() {
    // Past Julys 10–13 and never above 13 at any time of year; 24 now (about 2×).
    let c = household_then(12);
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 24)), None);
    assert_eq!(kinds(&dec), vec![FlagKind::High], "{:?}", dec.flags);
    // Normal use stays clean.
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 13)), None);
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
}

fn leak_code() -> crate::domain::MessageCode {
    crate::domain::MessageCode {
        code: "LK".into(),
        category: "trouble".into(),
        description: "Leak at meter".into(),
        requires_follow_up: true,
        retired: false,
    }
}

#[test]
fn a_leak_the_reader_confirmed_reaches_a_clerk_with_the_code_in_the_explanation() {
    // Past Julys 10–13; 13 now, inside the band, confirmed high with a leak code.
    let c = household_then(12);
    let mut read = field("M1", "2026-07-03", &c.after("M1", 13));
    read.read_type = ReadType::HighConfirmed;
    read.codes = vec!["LK".into()];
    let dec = c.judge_with(&read, None, &[leak_code()]);
    assert_eq!(kinds(&dec), vec![FlagKind::High], "{:?}", dec.flags);
    let e = &dec.flags[0].explanation;
    assert!(e.contains("the reader reported LK (leak at meter)"), "{e}");
    assert!(e.ends_with("confirmed by the reader at the meter"), "{e}");
    // Without the code table (a code the District does not know), a confirmed read of that use
    // is accepted: a confirmation alone counts only above `signal_ratio` × expected.
    let dec = c.judge(&read, None);
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
    let mut higher = read.clone();
    higher.raw_reading = c.after("M1", 16);
    let dec = c.judge(&higher, None);
    assert_eq!(kinds(&dec), vec![FlagKind::High], "{:?}", dec.flags);
    // A leak code on a read of normal use is no high read.
    let mut normal = field("M1", "2026-07-03", &c.after("M1", 11));
    normal.codes = vec!["LK".into()];
    let dec = c.judge_with(&normal, None, &[leak_code()]);
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
}

#[test]
fn a_steady_commercial_account_reading_far_below_its_norm_is_low() {
    let commercial = |m: u32| 20 + u64::from(m * 5 % 10);
    let c = Case::new(
        &monthly("M1", "2023-06-03", 36, 500, 5, commercial),
        "commercial",
        5,
    );
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 10)), None);
    assert_eq!(kinds(&dec), vec![FlagKind::Low], "{:?}", dec.flags);
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 22)), None);
    assert!(kinds(&dec).is_empty(), "{:?}", dec.flags);
}

/// The low end stops at `low_ceiling` of the season's use for a household (0.6: a week away is an
/// ordinary month), not for a business (1.0: steady for years, 60% is news).
#[test]
fn a_households_quiet_month_is_ordinary_where_a_steady_business_at_the_same_share_is_low() {
    let home = Case::new(
        &monthly("M1", "2024-06-03", 24, 500, 5, household),
        "residential",
        5,
    );
    let quiet = home.judge(&field("M1", "2026-07-03", &home.after("M1", 7)), None);
    assert!(kinds(&quiet).is_empty(), "{:?}", quiet.flags);
    let cfg = ValidationConfig {
        tolerance: [(
            "residential".to_string(),
            Tolerance {
                low_ceiling: 1.0,
                ..ValidationConfig::default().tolerance_for("residential")
            },
        )]
        .into(),
        ..ValidationConfig::default()
    };
    let band_alone = home.judge_cfg(&field("M1", "2026-07-03", &home.after("M1", 7)), &cfg);
    assert_eq!(
        kinds(&band_alone),
        vec![FlagKind::Low],
        "{:?}",
        band_alone.flags
    );

    let commercial = |m: u32| 20 + u64::from(m * 5 % 10);
    let business = Case::new(
        &monthly("M1", "2023-06-03", 36, 500, 5, commercial),
        "commercial",
        5,
    );
    let dec = business.judge(&field("M1", "2026-07-03", &business.after("M1", 15)), None);
    assert_eq!(kinds(&dec), vec![FlagKind::Low], "{:?}", dec.flags);
}

/// A household read monthly since 2023-07-03 whose last period (to 2026-08-03) used `last_use`
/// and ended at reading `last`.
fn household_ending_at(last: u64, last_use: u64) -> Case {
    let grown = monthly("M1", "2023-07-03", 36, 0, 5, household)
        .last()
        .unwrap()
        .reading;
    let mut reads = monthly(
        "M1",
        "2023-07-03",
        36,
        last - last_use - grown,
        5,
        household,
    );
    let prior = reads.last().unwrap().clone();
    reads.push(HistoryRead {
        read_on: d("2026-08-03"),
        reading: last,
        ..prior
    });
    Case::new(&reads, "residential", 5)
}

#[test]
fn a_dial_read_one_off_is_flagged_and_named_where_no_meter_reads_so() {
    // 14012 meant (11 units since 14001), 14002 keyed: the tens dial between 0 and 1. Low but
    // positive use is also what a slowed or idle meter reads: flagged, nothing named.
    let c = household_ending_at(14_001, 11);
    let dec = c.judge(&field("M1", "2026-09-03", "14002"), None);
    assert_eq!(kinds(&dec), vec![FlagKind::Low], "{:?}", dec.flags);
    assert_eq!(dec.intended, None, "{}", dec.flags[0].explanation);
    // 14096 meant (11 units since 14085), 14196 keyed: the hundreds dial about to pass 1 read as
    // past it. No household uses ten times its norm in a month: the slip is named.
    let c = household_ending_at(14_085, 11);
    let dec = c.judge(&field("M1", "2026-09-03", "14196"), None);
    assert_eq!(kinds(&dec), vec![FlagKind::High], "{:?}", dec.flags);
    assert_eq!(dec.intended.map(|i| i.reading), Some(14_096));
    assert!(
        dec.flags[0]
            .explanation
            .ends_with("likely meant 14096: the hundreds dial read one off"),
        "{}",
        dec.flags[0].explanation
    );
    // A radio read does not slip on a keypad: no suggestion.
    let mut radio = field("M1", "2026-09-03", "14196");
    radio.method = ReadMethod::Radio;
    assert_eq!(c.judge(&radio, None).intended, None);
}

#[test]
fn use_in_line_with_the_last_period_is_what_the_meter_said() {
    // 43052 keyed: 40 units since 43012, where 43025 (digits 4 and 5 swapped) would be 13, the
    // expected use. After an ordinary month the swap is named; after a month of 40 (a leak that
    // began then), 40 again is what the meter says.
    let keyed = field("M1", "2026-09-03", "43052");
    let ordinary = household_ending_at(43_012, 11).judge(&keyed, None);
    assert_eq!(
        kinds(&ordinary),
        vec![FlagKind::High],
        "{:?}",
        ordinary.flags
    );
    assert_eq!(
        ordinary.intended.map(|i| i.reading),
        Some(43_025),
        "{}",
        ordinary.flags[0].explanation
    );
    let leaking = household_ending_at(43_012, 40).judge(&keyed, None);
    assert_eq!(kinds(&leaking), vec![FlagKind::High], "{:?}", leaking.flags);
    assert_eq!(leaking.intended, None, "{}", leaking.flags[0].explanation);
}

#[test]
fn a_swapped_pair_of_digits_is_named_with_its_places() {
    let c = household_ending_at(43_076, 11);
    let dec = c.judge(&field("M1", "2026-09-03", "43808"), None);
    assert_eq!(kinds(&dec), vec![FlagKind::High], "{:?}", dec.flags);
    assert_eq!(dec.intended.map(|i| i.reading), Some(43_088));
    assert!(
        dec.flags[0]
            .explanation
            .contains("likely meant 43088: digits 3 and 4 swapped"),
        "{}",
        dec.flags[0].explanation
    );
}

#[test]
fn a_small_users_zero_explanation_counts_its_periods_without_use() {
    // 1–2 units a month, two months without use in the last year (in its low season).
    let small = |m: u32| match m {
        1 | 2 => 0,
        6..=9 => 2,
        _ => 1,
    };
    let c = Case::new(
        &monthly("M1", "2023-06-03", 36, 500, 5, small),
        "residential",
        5,
    );
    let dec = c.judge(&field("M1", "2026-07-03", &c.after("M1", 0)), None);
    for f in &dec.flags {
        assert!(
            !f.explanation.contains("it has used water every period"),
            "{}",
            f.explanation
        );
    }
}
