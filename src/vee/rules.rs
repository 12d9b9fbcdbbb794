//! The read rules: one field read against its meter, account and history.

use super::expect::{expect_between, Expectation};
use super::history::{hcf_per_billing_unit, AccountHistory};
use super::quality;
use super::settings::ValidationConfig;
use crate::domain::{
    AccountStatus, DayLimits, FieldRead, Flag, FlagKind, MessageCode, MeterStatus, ReadKind,
    ReadMethod, ReadStatus, ReadType, Register, RegisterDelta, Unit, WindowLimits,
};
use chrono::{NaiveDate, NaiveDateTime};

/// What the store knows about the meter a read names.
#[derive(Debug, Clone, Copy)]
pub enum MeterContext<'a> {
    /// No meter with this id.
    Unknown,
    /// A meter that is not in service at an account: in inventory, retired, or pulled.
    NotInService {
        status: MeterStatus,
        account_id: Option<&'a str>,
    },
    /// The meter set at an account.
    InService(Service<'a>),
}

/// An in-service meter, its account and the account's history.
#[derive(Debug, Clone, Copy)]
pub struct Service<'a> {
    pub account_id: &'a str,
    pub account_status: AccountStatus,
    pub rate_class: &'a str,
    pub route_id: &'a str,
    /// Whether the account's route is one of the cycle's routes.
    pub on_cycle: bool,
    pub register: Register,
    pub history: &'a AccountHistory,
}

/// Everything one read is judged against.
#[derive(Debug, Clone, Copy)]
pub struct ReadInput<'a> {
    pub read: &'a FieldRead,
    pub meter: MeterContext<'a>,
    pub window_from: NaiveDate,
    pub window_to: NaiveDate,
    /// When the read reached the gateway: a read time after it is in the future.
    pub now: NaiveDateTime,
    /// The reading already stored for this meter in this cycle, if any (raw text as keyed).
    pub earlier: Option<&'a str>,
    /// The District's message codes: a code on the read that asks for follow-up (a leak seen) is
    /// the reader's evidence.
    pub codes: &'a [MessageCode],
}

/// The validation decision stored with the read.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub reading: Option<u64>,
    pub previous_reading: Option<u64>,
    pub previous_read_on: Option<NaiveDate>,
    /// Billing units since the previous read (negative for a backwards read); `None` when unknown.
    pub consumption: Option<i64>,
    pub expected_use: Option<f64>,
    pub expected_basis: Option<String>,
    /// Limits as register readings at the read date (wrap-aware: `high < low` means the range wraps).
    pub low_limit: Option<u64>,
    pub high_limit: Option<u64>,
    pub flags: Vec<Flag>,
    pub status: ReadStatus,
    /// What the reader likely meant, when a keyed reading is far off and exactly one of the usual
    /// slips lands inside the band ([`super::slips`]).
    pub intended: Option<super::slips::Intended>,
}

/// Whether two keyed readings are the same value (`00123` and `123` are).
pub fn same_reading(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.trim_start_matches('0').to_string())
    };
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn duplicate_flag(earlier: &str) -> Flag {
    flag(
        FlagKind::Duplicate,
        format!(
            "a different reading ({}) is already in for this meter this cycle",
            earlier.trim()
        ),
    )
}

/// Marks a decision made without knowing of an earlier read (`ReadInput::earlier` = `None`) as a
/// duplicate of `earlier`: the same as validating with it. Lets a batch be judged per account, in
/// history order, and the duplicates settled in arrival order afterwards.
pub fn mark_duplicate(d: &mut Decision, earlier: &str) {
    if !d.flags.iter().any(|f| f.kind == FlagKind::Duplicate) {
        // Where `validate` puts it: right after the timing flag.
        let at = d
            .flags
            .iter()
            .take_while(|f| f.kind == FlagKind::OutOfWindow)
            .count();
        d.flags.insert(at, duplicate_flag(earlier));
        d.status = ReadStatus::Flagged;
    }
}

fn flag(kind: FlagKind, explanation: String) -> Flag {
    Flag {
        kind,
        quality: quality::of(kind).to_string(),
        explanation,
    }
}

/// Formats a use figure for a clerk: whole units when it is one, else one decimal.
pub fn amount(v: f64) -> String {
    if (v - v.round()).abs() < 0.05 || v.abs() >= 100.0 {
        format!("{:.0}", v.round())
    } else {
        format!("{v:.1}")
    }
}

/// Register readings bounding `[low, high]` billing units of use since `base` (with `carry` units
/// already used on a pulled meter), wrapped at 10^dials. `None` when the band spans the whole dial.
pub fn limits_as_readings(
    register: &Register,
    base: u64,
    carry: f64,
    low: f64,
    high: f64,
) -> Option<(u64, u64)> {
    let m = f64::from(register.multiplier.max(1));
    // The register units whose use lies inside the band: exactly the readings a float comparison
    // with the band would pass.
    let low_units = ((low - carry) / m).ceil().max(0.0);
    let high_units = ((high - carry) / m).floor().max(low_units);
    if high_units >= register.modulus() as f64 {
        return None;
    }
    Some((
        register.advance(base, low_units as u64),
        register.advance(base, high_units as u64),
    ))
}

/// Hi/lo limits, as register readings, for reading `meter_id` on the first and on the last day of
/// the window `[early, late]` (the limits of a day between move linearly:
/// [`WindowLimits::on_day`]). An inactive account expects no use: both limits are the previous
/// reading. `None` without a previous reading or history; both ends the whole dial when the band
/// is wider than the dial.
pub fn stop_limits(
    history: &AccountHistory,
    meter_id: &str,
    register: &Register,
    rate_class: &str,
    active: bool,
    early: NaiveDate,
    late: NaiveDate,
    cfg: &ValidationConfig,
) -> Option<WindowLimits> {
    let base = history.base_of(meter_id)?;
    if !active {
        let none = (base.reading, base.reading);
        return Some(WindowLimits {
            first: none,
            last: none,
        });
    }
    let judge = Judged::from(history, base, register);
    window_band(history, &judge, register, rate_class, early, late, cfg).map(|b| b.limits)
}

/// The band of a read window: the expectation on its first and last day and the limits they make.
struct WindowBand {
    first: Expectation,
    last: Expectation,
    limits: WindowLimits,
}

/// The expectations for a read on the window's first and last day (the first day no earlier than
/// the day after the reading use is judged from), in `register`'s units, and the limits as register
/// readings: `previous + band` through the multiplier, wrapped at 10^dials. The low limit asks for at
/// least one register unit of use where a read of no use would be flagged `zero` (the account
/// normally uses water), and is the previous reading itself where no use is plausible; the high
/// limit is the band's top. Either end wider than the dial: no limits at all.
fn window_band(
    history: &AccountHistory,
    judge: &Judged,
    register: &Register,
    rate_class: &str,
    early: NaiveDate,
    late: NaiveDate,
    cfg: &ValidationConfig,
) -> Option<WindowBand> {
    let early = early.max(judge.from + chrono::Duration::days(1));
    let late = late.max(early);
    let (e, l) = expect_between(history, rate_class, judge.from, early, late, cfg)?;
    let (first, last) = (e.for_register(register), l.for_register(register));
    let end = |x: &Expectation| band_limits(x, history, judge.reading, register, cfg);
    let whole = (0, register.modulus() - 1);
    let limits = match (end(&first), end(&last)) {
        (Some(f), Some(l)) => WindowLimits { first: f, last: l },
        _ => WindowLimits {
            first: whole,
            last: whole,
        },
    };
    Some(WindowBand {
        first,
        last,
        limits,
    })
}

/// The limits, as register readings from `base` (the reading use is judged from), of the band of
/// `x` (in `register`'s billing units): the register units whose use lies inside the band, so that
/// the limits decide exactly as the band would. The low limit asks for at least one unit where a
/// read of no use is flagged `zero` (the account normally uses water), and is `base` itself where
/// no use is plausible. `None` when the band is as wide as the dial.
fn band_limits(
    x: &Expectation,
    history: &AccountHistory,
    base: u64,
    register: &Register,
    cfg: &ValidationConfig,
) -> Option<(u64, u64)> {
    let carry = history.carry / hcf_per_billing_unit(register);
    let zero_periods = history.unexpected_zero_periods(12, cfg.zero_min_use / 30.0);
    let zero_floor = cfg.zero_min_use * x.days as f64 / 30.0 / hcf_per_billing_unit(register);
    let zero_flagged = x.season_low >= zero_floor && zero_periods <= cfg.zero_periods_allowed;
    let m = f64::from(register.multiplier.max(1));
    let low_units = if zero_flagged {
        ((x.low - carry) / m).ceil().max(1.0)
    } else {
        0.0
    };
    let high_units = ((x.high - carry) / m).floor().max(low_units);
    if high_units >= register.modulus() as f64 - 1.0 {
        return None;
    }
    Some((
        register.advance(base, low_units as u64),
        register.advance(base, high_units as u64),
    ))
}

/// `reading` as register units from `base`, signed, within half the dial either way.
fn units_from(register: &Register, base: u64, reading: u64) -> i64 {
    let m = register.modulus() as i128;
    let mut d = (i128::from(reading) - i128::from(base)).rem_euclid(m);
    if d > m / 2 {
        d -= m;
    }
    d as i64
}

/// Judges one read. Pure: the caller supplies the meter, account, history and what is already stored.
pub fn validate(input: &ReadInput<'_>, cfg: &ValidationConfig) -> Decision {
    let read = input.read;
    let mut d = Decision {
        reading: None,
        previous_reading: None,
        previous_read_on: None,
        consumption: None,
        expected_use: None,
        expected_basis: None,
        low_limit: None,
        high_limit: None,
        flags: Vec::new(),
        status: ReadStatus::Accepted,
        intended: None,
    };
    let day = read.read_at.date();
    if read.read_at > input.now {
        d.flags.push(flag(
            FlagKind::OutOfWindow,
            format!(
                "read time {} is after the read reached the gateway ({})",
                read.read_at.format("%Y-%m-%d %H:%M"),
                input.now.format("%Y-%m-%d %H:%M")
            ),
        ));
    } else if day < input.window_from || day > input.window_to {
        d.flags.push(flag(
            FlagKind::OutOfWindow,
            format!(
                "read on {day}, outside the cycle's window {} – {}",
                input.window_from, input.window_to
            ),
        ));
    }
    if let Some(earlier) = input.earlier {
        d.flags.push(duplicate_flag(earlier));
    }

    if read.read_type == ReadType::Skipped {
        let why = read
            .skip_code
            .as_deref()
            .map(|c| format!(" (skip code {c})"))
            .unwrap_or_default();
        d.flags.push(flag(
            FlagKind::Missing,
            format!("not read{why}: to be estimated at close"),
        ));
        return finish(d, read);
    }

    let service = match input.meter {
        MeterContext::Unknown => {
            d.reading = read.reading();
            d.flags.push(flag(
                FlagKind::MeterMismatch,
                format!(
                    "meter {} is not in the district's meter list",
                    read.meter_id
                ),
            ));
            return finish(d, read);
        }
        MeterContext::NotInService { status, account_id } => {
            d.reading = read.reading();
            let at = account_id
                .map(|a| format!(", last at account {a}"))
                .unwrap_or_default();
            d.flags.push(flag(
                FlagKind::MeterMismatch,
                format!(
                    "meter {} is {status}{at}, not the active meter of an account",
                    read.meter_id
                ),
            ));
            return finish(d, read);
        }
        MeterContext::InService(s) => s,
    };
    if !service.on_cycle {
        d.flags.push(flag(
            FlagKind::MeterMismatch,
            format!(
                "meter {} is at account {} on route {}, which is not in this cycle",
                read.meter_id, service.account_id, service.route_id
            ),
        ));
    }

    let reg = service.register;
    let history = service.history;
    let base = history.base_of(&read.meter_id);
    let digits = read.raw_reading.trim().len();
    let reading = match read.reading() {
        Some(r) if reg.fits(r) && digits <= usize::from(reg.dials) => r,
        Some(_) => {
            d.flags.push(flag(
                FlagKind::InvalidReading,
                format!(
                    "reading {} has more digits than the meter's {} dials",
                    read.raw_reading.trim(),
                    reg.dials
                ),
            ));
            // A digit keyed twice overflows a full register: the band may still say which.
            if let Some(base) = base {
                let judge = Judged::from(history, base, &reg);
                let (e, limits) = band_on_day(input, &service, &judge, cfg, day);
                let carry = history.carry / hcf_per_billing_unit(&reg);
                let at = near(&reg, limits, e.as_ref(), judge.reading, carry, None);
                let trouble = !reader_signals(read, input.codes).follow_up.is_empty();
                d = with_intended(d, read, at, trouble, cfg, &[FlagKind::InvalidReading]);
            }
            return finish(d, read);
        }
        None => {
            d.flags.push(flag(
                FlagKind::InvalidReading,
                format!("reading `{}` is not a number", read.raw_reading.trim()),
            ));
            return finish(d, read);
        }
    };
    d.reading = Some(reading);

    let Some(base) = base else {
        // A meter with no reading on record (set without an initial reading): nothing to subtract.
        return finish(d, read);
    };
    d.previous_reading = Some(base.reading);
    d.previous_read_on = Some(base.read_on);
    let judge = Judged::from(history, base, &reg);
    let from = judge.from;
    let unit = reg.unit;
    // Use on a pulled meter, in this meter's billing units.
    let carry_units = history.carry / hcf_per_billing_unit(&reg);
    let (exp, day_limits) = band_on_day(input, &service, &judge, cfg, day);
    if let Some(e) = &exp {
        d.expected_use = Some(round2(e.expected));
        d.expected_basis = Some(e.basis.to_string() + &judge.note);
    }
    if let Some(DayLimits::Range { low, high }) = day_limits {
        d.low_limit = Some(low);
        d.high_limit = Some(high);
    }
    let days = (day - from).num_days();
    let carry = carry_units.round() as i64;
    let m = i64::from(reg.multiplier);
    let base = JudgedBase {
        reading: judge.reading,
        read_on: judge.from_reading_on,
    };
    // A reading equal to the previous one (`zero`) is a stopped meter more often than a slip, and
    // low use a slowed or idle one ([`slip_odds`]).
    const SLIPPED: &[FlagKind] = &[FlagKind::High, FlagKind::Negative];

    let usage = match reg.delta(base.reading, reading) {
        RegisterDelta::Forward(u) => u,
        RegisterDelta::Below { wrapped, back } => {
            let wrapped_use = reg.to_billing(wrapped) as f64 + carry_units;
            let plausible = wrapped < back
                && match &exp {
                    Some(e) => wrapped_use <= e.high * cfg.rollover_slack,
                    // No history to judge by: accept a wrap of at most a tenth of the dial.
                    None => wrapped.saturating_mul(10) <= reg.modulus(),
                };
            if !plausible {
                d.consumption =
                    Some(carry - (back as i64).saturating_mul(m) - judge.estimated_since);
                let wrap_note = if wrapped < back {
                    format!(
                        "; a rollover would mean {} {unit} of use, implausible",
                        amount(wrapped_use)
                    )
                } else {
                    String::new()
                };
                d.flags.push(flag(
                    FlagKind::Negative,
                    format!(
                        "reading {reading} is {} {unit} below the previous reading {} ({}){wrap_note}",
                        reg.to_billing(back),
                        base.reading,
                        base.read_on
                    ),
                ));
                let at = near(
                    &reg,
                    day_limits,
                    exp.as_ref(),
                    judge.reading,
                    carry_units,
                    None,
                );
                let trouble = !reader_signals(read, input.codes).follow_up.is_empty();
                let d = with_intended(d, read, at, trouble, cfg, SLIPPED);
                return finish(d, read);
            }
            d.flags.push(flag(
                FlagKind::Rollover,
                format!(
                    "register rolled over from {} through 0 to {reading}: {} {unit} of use",
                    base.reading,
                    amount(wrapped_use)
                ),
            ));
            wrapped
        }
    };
    let used = reg.to_billing(usage) as i64 + carry;
    // Billed use is from the previous (possibly estimated) reading; judged use from the firm one.
    d.consumption = Some(used - judge.estimated_since);

    if service.account_status != AccountStatus::Active {
        if used > 0 {
            d.flags.push(flag(
                FlagKind::InactiveUsage,
                format!(
                    "used {used} {unit} in {days} days on a {} account",
                    service.account_status
                ),
            ));
        }
        return finish(d, read);
    }
    let (Some(e), Some(limits)) = (exp, day_limits) else {
        return finish(d, read);
    };
    let zero_periods = history.unexpected_zero_periods(12, cfg.zero_min_use / 30.0);
    let outside = match limits {
        DayLimits::Range { high, .. } if !limits.contains(reading) => Some(high),
        _ => None,
    };
    let signals = reader_signals(read, input.codes);
    if let Some(high) = outside {
        if used == 0 {
            // The low limit asks for use only where the account normally uses water.
            let zeros = history.zero_periods(12);
            let before = match (zeros, zero_periods) {
                (0, _) => "it has used water every period".to_string(),
                (n, 0) => format!(
                    "{n} of its last 12 periods had no use, each at a time of year it used little"
                ),
                (n, _) => format!("{n} of its last 12 periods had no use"),
            };
            d.flags.push(flag(
                FlagKind::Zero,
                format!(
                    "no use in {days} days; expected {} {unit} ({}); {before}",
                    amount(e.expected),
                    e.basis
                ),
            ));
        } else {
            // Outside the range: more use since the previous reading than the high limit allows
            // is high, else low, as the handheld asks the reader to confirm.
            let previous = d.previous_reading.unwrap_or(reading);
            let kind = if reg.forward_use(previous, reading) > reg.forward_use(previous, high) {
                FlagKind::High
            } else {
                FlagKind::Low
            };
            let mut text = band_text(used, days, &e, unit);
            if kind == FlagKind::High {
                text.push_str(&signals.text());
            }
            d.flags.push(flag(kind, text));
        }
    } else if signals.any() && used as f64 > e.expected.max(0.0) {
        // Inside the band, but the reader saw something: a confirmed leak always reaches a clerk;
        // another signal does with use well above expected.
        let confirmed_leak = signals.confirmed_high && !signals.follow_up.is_empty();
        if confirmed_leak || used as f64 > e.expected * cfg.signal_ratio {
            d.flags.push(flag(
                FlagKind::High,
                format!("{}{}", band_text(used, days, &e, unit), signals.text()),
            ));
        }
    }
    let last = last_period_use(history, &reg, days);
    let at = near(&reg, day_limits, Some(&e), judge.reading, carry_units, last);
    let trouble = !signals.follow_up.is_empty();
    let d = with_intended(d, read, at, trouble, cfg, SLIPPED);
    finish(d, read)
}

/// The expectation for a read on `day` in `judge`'s units and the limits it is judged by: a read in
/// the window by exactly the limits its handheld prompted with that day (the window's two ends,
/// interpolated); a read outside it by the band of its own day.
fn band_on_day(
    input: &ReadInput<'_>,
    service: &Service<'_>,
    judge: &Judged,
    cfg: &ValidationConfig,
    day: NaiveDate,
) -> (Option<Expectation>, Option<DayLimits>) {
    let reg = service.register;
    let history = service.history;
    let carry_units = history.carry / hcf_per_billing_unit(&reg);
    let in_window = (input.window_from..=input.window_to).contains(&day);
    if in_window {
        match window_band(
            history,
            judge,
            &reg,
            service.rate_class,
            input.window_from,
            input.window_to,
            cfg,
        ) {
            Some(b) => {
                let span = (input.window_to - input.window_from).num_days();
                let k = (day - input.window_from).num_days();
                let base = history
                    .base_of(&input.read.meter_id)
                    .map_or(judge.reading, |b| b.reading);
                let limits = b.limits.on_day(&reg, base, span, k);
                let e = day_expectation(&b, span, k, &reg, judge.reading, carry_units, limits);
                (Some(e), Some(limits))
            }
            None => (None, None),
        }
    } else {
        let exp = expect_between(history, service.rate_class, judge.from, day, day, cfg)
            .map(|(e, _)| e.for_register(&reg));
        let limits =
            exp.as_ref().map(
                |e| match band_limits(e, history, judge.reading, &reg, cfg) {
                    Some((low, high)) => DayLimits::Range { low, high },
                    None => DayLimits::Any,
                },
            );
        (exp, limits)
    }
}

/// What the reader said about a read besides its value.
struct Signals<'a> {
    confirmed_high: bool,
    /// Codes on the read that ask the office to follow up (a leak seen), with their descriptions.
    follow_up: Vec<&'a MessageCode>,
}

fn reader_signals<'a>(read: &FieldRead, codes: &'a [MessageCode]) -> Signals<'a> {
    Signals {
        confirmed_high: read.read_type == ReadType::HighConfirmed,
        follow_up: codes
            .iter()
            .filter(|c| c.requires_follow_up && read.codes.iter().any(|k| k == &c.code))
            .collect(),
    }
}

impl Signals<'_> {
    fn any(&self) -> bool {
        self.confirmed_high || !self.follow_up.is_empty()
    }

    /// "; the reader reported LK (leak at meter)": appended to a high read's explanation.
    fn text(&self) -> String {
        if self.follow_up.is_empty() {
            return String::new();
        }
        let codes: Vec<String> = self
            .follow_up
            .iter()
            .map(|c| format!("{} ({})", c.code, c.description.to_lowercase()))
            .collect();
        format!("; the reader reported {}", codes.join(", "))
    }
}

/// Adds what the reader likely meant to a keyed read flagged with one of `kinds`, when exactly one
/// slip lands inside the day's limits and near the expected use ([`super::slips`]), to the
/// decision and its first such flag. How near depends on whether the keyed use could be real: use
/// that a leak could make must be explained closely (the band shrunk to `slip_band` of its width
/// on each side); use no meter makes (backwards, `slip_sure` × expected or more, more digits than
/// the dials) is explained by a slip anywhere within `slip_band_sure` of the band.
fn with_intended(
    mut d: Decision,
    read: &FieldRead,
    near: Option<Near<'_>>,
    follow_up: bool,
    cfg: &ValidationConfig,
    kinds: &[FlagKind],
) -> Decision {
    let Some(Near {
        reg,
        limits: limits @ DayLimits::Range { .. },
        e,
        from,
        carry,
        last,
    }) = near
    else {
        return d;
    };
    // A confirmed read, or one whose reader reported trouble (a leak, tampering), is what the
    // reader saw: no slip to undo.
    if read.method != ReadMethod::Keyed || read.confirmed() || follow_up {
        return d;
    }
    let Some(at) = d.flags.iter().position(|f| kinds.contains(&f.kind)) else {
        return d;
    };
    let band = match d.consumption {
        Some(used) => match slip_odds(used as f64, e.expected.max(1.0), last, cfg) {
            SlipOdds::Real => return d,
            SlipOdds::Possible => cfg.slip_band,
            SlipOdds::Sure => cfg.slip_band_sure,
        },
        // Too many digits for the dials.
        None => cfg.slip_band_sure,
    };
    // How far a candidate's use lands from the expected use: 1 at `band` of the way to the band's
    // edge on its side.
    let distance = |v: u64| -> Option<f64> {
        if !(reg.fits(v) && limits.contains(v)) {
            return None;
        }
        let used = reg.to_billing(reg.forward_use(from, v)) as f64 + carry;
        let half = if used >= e.expected {
            e.high - e.expected
        } else {
            e.expected - e.low
        };
        Some((used - e.expected).abs() / (band * half).max(1e-9))
    };
    if let Some(i) = super::slips::intended(&read.raw_reading, reg.dials, distance) {
        d.flags[at].explanation.push_str(&format!("; {i}"));
        d.intended = Some(i);
    }
    d
}

/// Whether a keyed use is what the meter says or a slip.
enum SlipOdds {
    /// Use a meter makes: within `slip_far` of expected either way, low but positive (a slowed,
    /// stopped-between-reads or idle meter), or in line with the last period's (a leak that goes
    /// on). No slip is named.
    Real,
    /// Use a leak could make: a slip must land close to the expected use.
    Possible,
    /// Use no meter makes: backwards by `slip_far` × expected, or `slip_sure` × expected and more.
    Sure,
}

/// Judges keyed use `used` against `expected` (both in billing units over the read's days) and the
/// last period's use over as many days.
fn slip_odds(used: f64, expected: f64, last: Option<f64>, cfg: &ValidationConfig) -> SlipOdds {
    if used < 0.0 {
        return if -used >= expected * cfg.slip_far {
            SlipOdds::Sure
        } else {
            SlipOdds::Real
        };
    }
    let in_line = last.is_some_and(|l| used <= l * LAST_IN_LINE && used >= l / LAST_IN_LINE);
    if used < expected * cfg.slip_far || in_line {
        SlipOdds::Real
    } else if used >= expected * cfg.slip_sure {
        SlipOdds::Sure
    } else {
        SlipOdds::Possible
    }
}

/// Where a slip's reading must land: the day's limits, and near the expected use from the reading
/// use is judged from (with `carry` units used on a pulled meter).
#[derive(Clone, Copy)]
struct Near<'a> {
    reg: &'a Register,
    limits: DayLimits,
    e: &'a Expectation,
    from: u64,
    carry: f64,
    /// The last period's use over as many days, in billing units, when it was read (not estimated).
    last: Option<f64>,
}

fn near<'a>(
    reg: &'a Register,
    limits: Option<DayLimits>,
    e: Option<&'a Expectation>,
    from: u64,
    carry: f64,
    last: Option<f64>,
) -> Option<Near<'a>> {
    Some(Near {
        reg,
        limits: limits?,
        e: e?,
        from,
        carry,
        last,
    })
}

/// Use within this factor of the last period's (either way) is in line with it.
const LAST_IN_LINE: f64 = 1.5;

/// The last period's use, read at both ends, over `days` days in `reg`'s billing units.
fn last_period_use(history: &AccountHistory, reg: &Register, days: i64) -> Option<f64> {
    let p = history.periods.last().filter(|p| !p.estimated)?;
    Some(p.daily() * days as f64 / hcf_per_billing_unit(reg))
}

/// The expectation for a read `k` days into a window of `span` days: the two ends' expected use
/// interpolated, with the band of the day's limits (in billing units from the reading use is judged
/// from), so that an explanation's numbers agree with the decision.
fn day_expectation(
    b: &WindowBand,
    span: i64,
    k: i64,
    reg: &Register,
    base: u64,
    carry: f64,
    limits: DayLimits,
) -> Expectation {
    let t = if span > 0 {
        (k.clamp(0, span) as f64) / span as f64
    } else {
        0.0
    };
    let lerp = |a: f64, z: f64| a + (z - a) * t;
    let (f, l) = (&b.first, &b.last);
    let near = if t < 0.5 { f } else { l };
    let m = f64::from(reg.multiplier.max(1));
    let (low, high) = match limits {
        DayLimits::Range { low, high } => (
            units_from(reg, base, low) as f64 * m + carry,
            units_from(reg, base, high) as f64 * m + carry,
        ),
        DayLimits::Any => (0.0, f64::INFINITY),
    };
    Expectation {
        days: near.days,
        expected: lerp(f.expected, l.expected),
        season_low: lerp(f.season_low, l.season_low),
        season_high: lerp(f.season_high, l.season_high),
        low: low.max(0.0),
        high,
        basis: near.basis,
        relative: near.relative,
        spread: near.spread,
        margin: lerp(f.margin, l.margin),
        own_max: f.own_max.zip(l.own_max).map(|(a, z)| lerp(a, z)),
        high_is_own_max: near.high_is_own_max,
    }
}

/// The reading use is judged from: the previous reading, or, when that was an estimate, the meter's
/// last firm reading (an estimate may have been far off; the use since the last actual read is what the
/// customer really used).
struct Judged {
    reading: u64,
    from: NaiveDate,
    from_reading_on: NaiveDate,
    /// Billing units the estimates since the firm reading already billed.
    estimated_since: i64,
    note: String,
}

impl Judged {
    fn from(history: &AccountHistory, base: &super::MeterBase, reg: &Register) -> Judged {
        if base.kind == ReadKind::Estimated && base.firm_on < base.read_on {
            let est = reg.to_billing(reg.forward_use(base.firm_reading, base.reading));
            Judged {
                reading: base.firm_reading,
                from: base.firm_on,
                from_reading_on: base.firm_on,
                estimated_since: i64::try_from(est).unwrap_or(i64::MAX),
                note: format!(
                    "; judged since the last actual reading {} on {}, the last bill was estimated",
                    base.firm_reading, base.firm_on
                ),
            }
        } else {
            Judged {
                reading: base.reading,
                from: history.period_start.unwrap_or(base.read_on),
                from_reading_on: base.read_on,
                estimated_since: 0,
                note: String::new(),
            }
        }
    }
}

struct JudgedBase {
    reading: u64,
    read_on: NaiveDate,
}

fn band_text(used: i64, days: i64, e: &Expectation, unit: Unit) -> String {
    let ratio = if e.expected > 0.0 {
        format!("{:.1}× expected", used as f64 / e.expected)
    } else {
        "expected none".to_string()
    };
    let season = if e.season_high > e.season_low * 1.05 + 0.5 {
        format!(
            " (season early/late: {}–{})",
            amount(e.season_low),
            amount(e.season_high)
        )
    } else {
        String::new()
    };
    let own = match e.own_max {
        Some(m) if e.high_is_own_max && used as f64 > e.high => {
            format!(
                "; its most at this time of year in past years was {} {unit}",
                amount(m)
            )
        }
        _ => String::new(),
    };
    format!(
        "used {used} {unit} in {days} days; expected {} {unit} ({}){season}; {ratio}; band {}–{} {unit}{own}",
        amount(e.expected),
        e.basis,
        amount(e.low),
        amount(e.high)
    )
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Sets the status from the flags; a reader-confirmed read stays flagged but says it was confirmed.
fn finish(mut d: Decision, read: &FieldRead) -> Decision {
    let exception = d.flags.iter().any(|f| f.kind.is_exception());
    d.status = if exception {
        ReadStatus::Flagged
    } else {
        ReadStatus::Accepted
    };
    if read.confirmed() {
        for f in d
            .flags
            .iter_mut()
            .filter(|f| matches!(f.kind, FlagKind::High | FlagKind::Low | FlagKind::Zero))
        {
            f.explanation
                .push_str("; confirmed by the reader at the meter");
        }
    }
    d
}
