//! Builds the demo district: a coastal-California water district with 36 months of history, an open
//! cycle, the reads the handhelds bring back, and planted problems with their ground truth.
//!
//! # The district
//! Routes of ~600 accounts (12 for the default 7,000), in walk order (sequence 10, 20... with gaps and
//! squeezed-in stops); residential 80%, multi-family 8%, commercial 7%, irrigation 5%; 2.5% inactive
//! (meter in place, no use since some month), 1.5% closed (final read, meter pulled). One reader and
//! handheld (`HH-01`...) per three routes; each route is read on two consecutive weekdays, routes
//! staggered over the first three weeks of a cycle's read window. ~4% of meters were changed during
//! the history (`final` + `initial`, old meter to inventory or retired); ~1% of monthly reads are
//! estimated.
//!
//! # The day the demo runs
//! Whatever day `as_of` is, the open cycle is the one being read then, near its end: its read window
//! opened [`WINDOW_OPENED_DAYS_AGO`] (25) days before `as_of` and runs a month (to 2–5 days after
//! `as_of`), every route has been read (the last reads at least two days before `as_of`), and the
//! handhelds bring all of it back. A real district on the 1st–3rd of a month is still reading, or
//! reviewing, the cycle whose window opened in the previous month; the demo's cycle is named for the
//! month its window opens in (on 3 December: `2026-11`, window 8 November – 7 December). Earlier
//! cycles' windows open on the same day of earlier months, so every period is about a month long
//! whatever the day. Nothing is dated on or after `as_of`: no read is ever after "now".
//!
//! # The model
//! Every account has a size (lognormal per rate class), a slow drift (a household grows, a shop changes
//! hands: a random walk of 1% a month in log space) and a seasonal profile (dry summer, wet winter:
//! irrigation ≈ 18× summer/winter, residential ≈ 1.7×). Use accrues *per day* along the seasonal curve,
//! so a period's use depends on its real length (read dates move ±3 days and skip weekends). A
//! district-wide weather factor per month (AR(1), σ 6%) scales outdoor use, irrigation fully, residential
//! by half. Each period then gets its own noise (lognormal σ: residential 8%, multi-family and
//! commercial 5%, irrigation 10%); with read dates moving ±3 days, a month's use swings 10–20% as
//! real ones do. Registers count whole units of their own unit and multiplier, so the
//! small integers of a 4-dial HCF register round like real ones. Normal reads this cycle come from the
//! very same model as the history: nothing about a normal read is special.
//!
//! # Planted problems (a good validator must flag them)
//! Each is planted on an account that is otherwise clean (no other problem or trap, not near a
//! rollover), and only where the effect is unmistakable against the model's expected use `E` for the
//! period: "high" means use ≥ 3·E and ≥ E + 8 HCF; "low" means use ≤ 0.35·E and ≤ E − 6 HCF; a backward
//! read must be far from a plausible rollover. `Expect` names the rule that should catch it (`kind`)
//! and other rules that legitimately catch the same read (`also`).
//!
//! | problem                 | what the field read looks like                                     | expect                          |
//! |-------------------------|--------------------------------------------------------------------|---------------------------------|
//! | `leak`                  | use 3–10× expected, regular read, `LK` on some                      | high                            |
//! | `confirmed_leak`        | same, read type high_confirmed, `LK`                                | high (a confirmed high is still a high bill to review) |
//! | `stuck_meter`           | reading = previous reading on an account that uses ≥ 5 HCF/period   | zero (also low)                 |
//! | `tampering`             | use 10–30% of expected, `TR` on some                                | low (also zero)                 |
//! | `mis_keyed_extra_digit` | a digit keyed twice (4521 → 45521); half on full-dial readings      | invalid_reading (also high) when it overflows the dials, else high (also invalid_reading) |
//! | `mis_keyed_digit`       | one digit keyed as its keypad neighbour                            | high, or negative (also high), or low |
//! | `transposed_digits`     | two adjacent digits swapped                                        | high, or negative (also high), or low |
//! | `swapped_meter`         | two neighbours' readings keyed against each other's meter (2 entries)| per meter: high / negative / low |
//! | `reverse_flow`          | reading below previous by 30–100% of a period's use, `RR` on some   | negative                        |
//! | `usage_on_inactive`     | an inactive account's meter moved 3–15 HCF                          | inactive_usage (also high)      |
//! | `pulled_meter_read`     | a radio read of a meter now in inventory (its endpoint still talks) | meter_mismatch                  |
//! | `unknown_meter`         | a read keyed for a meter id the district does not know              | meter_mismatch                  |
//! | `invalid_reading`       | raw reading not a number (`45O1`, `4,521`, `4521.5`, blank, `*`)    | invalid_reading                 |
//! | `duplicate_different`   | the meter read twice with different readings                       | duplicate                       |
//! | `out_of_window`         | read a few days before the window opened (never in the future)     | out_of_window                   |
//! | `skipped`               | read type skipped with a skip code (LG, NA, DG, CP, MC)             | missing                         |
//! | `missing`               | no read at all for an active meter                                  | missing                         |
//! | `dial_misread`          | one dial read one off at a digit's edge (`14002` for `14012`)       | high, low or negative, as the use says |
//!
//! Problems built into the use itself (chosen before the history is simulated, on otherwise plain
//! accounts large enough that doubling is not a unit's rounding; "norm" is the model's use without
//! the problem):
//!
//! | problem             | what happened                                                           | expect |
//! |---------------------|-------------------------------------------------------------------------|--------|
//! | `continuing_leak`   | a leak began last period (2.5–4× the norm) and continues (2.2–3.5×)      | high   |
//! | `moderate_leak`     | a household at 1.8–2.5× its norm this period                             | high   |
//! | `commercial_leak`   | a commercial or multi-family account, steady for years, at 1.7–2.5×      | high   |
//! | `gallon_meter_leak` | 1.8–2.5× on a meter counting gallons or cubic feet                       | high   |
//! | `commercial_low`    | a steady commercial or multi-family account at 30–50% of its norm        | low (also zero) |
//!
//! # Traps (normal reads a naive rule would flag; a good validator must not raise an exception)
//! | trap                      | why it is normal                                                  |
//! |---------------------------|-------------------------------------------------------------------|
//! | `seasonal_ramp_up`/`_drop`| class seasonal use this period vs the last three periods > 1.6× or < 0.625× (irrigation in spring/autumn) |
//! | `rollover`                | the register wrapped through zero with plausible use (`rollover` info flag is fine) |
//! | `meter_change_this_year`  | meter changed 1–11 months ago: `final` + `initial` the same day; history continues on the account |
//! | `meter_change_last_period`| meter changed since the last read: the previous reading is the new meter's `initial`, the period is short |
//! | `meter_change_new_unit`   | the new meter counts in another unit/multiplier (HCF → 10 gal) |
//! | `thin_history`            | service started within the last 12 months (as little as one period) |
//! | `inactive_no_use`         | inactive account, meter did not move: zero use is expected |
//! | `duplicate_same`          | the same reading sent twice minutes apart |
//! | `after_estimate`          | last period was estimated low (30–45% of real use); this read catches up. Use since the last *actual* read is normal |
//! | `vacation`                | one period 2–11 months ago at 10–30% of the norm (away); this read is normal |
//! | `small_user`              | 1–3 HCF a month, two periods of no use in the last year |
//! | `new_tenant`              | since 4–9 months ago the account uses 0.55–0.7× or 1.5–1.9× what it did; this read is at the new level |
//! | `second_home`             | lived in from May to October, 4–10% of the norm the rest of the year, every year |
//! | `trend`                   | use growing 1.5% a month for three years |
//!
//! Shares of the accounts: missing 1.2%, skipped 0.6%, out-of-window 0.5%, stuck 0.5%, moderate
//! leaks 0.6%, the others 0.2–0.4% each (at least 2 of each kind, so a small demo district still
//! carries every kind; the problems built into use and the life traps from 400 accounts up).
//! A mis-keyed read's truth carries the reading meant (`Planted::intended`), so `vee_accuracy` can
//! measure the likely readings validation names.
//!
//! # Scoring
//! One truth entry per affected meter. A problem counts as caught when any of the meter's reads this
//! cycle carries an exception flag among `kind` ∪ `also` (a `missing` flag for a meter with no read).
//! A trap passes when none of its reads carries an exception flag (`rollover` is informational).
//! Every other meter with a read is a normal read: any exception flag on it is a false positive.
//! [`super::score`] does exactly this.

use super::names::{
    APARTMENT_KINDS, BUSINESS_KINDS, FIRST_NAMES, IRRIGATION_SITES, LAST_NAMES, ROUTE_AREAS,
    STREET_NAMES, STREET_SUFFIXES,
};
use super::rng::Rng;
use super::{DemoParams, District, Expect, Planted, Problem};
use crate::domain::{
    Account, AccountStatus, Cycle, CycleStatus, DeviceRef, FieldRead, FlagKind, HistoryRead,
    MessageCode, Meter, MeterStatus, ReadKind, ReadMethod, ReadType, Register, Route, Unit,
};
use chrono::{Datelike, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use std::collections::{HashMap, HashSet};

/// Monthly history reads before the open cycle.
pub const HISTORY_MONTHS: i32 = 36;
const AVG_MONTH_DAYS: f64 = 30.436_875;
/// Accounts per route (a reader walks ~300 a day; a route is two days).
const ACCOUNTS_PER_ROUTE: u32 = 600;
const GALLONS_PER_HCF: f64 = 748.052;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Residential,
    MultiFamily,
    Commercial,
    Irrigation,
}

impl Class {
    const ALL: [Class; 4] = [
        Class::Residential,
        Class::MultiFamily,
        Class::Commercial,
        Class::Irrigation,
    ];

    fn idx(self) -> usize {
        self as usize
    }

    fn as_str(self) -> &'static str {
        match self {
            Class::Residential => "residential",
            Class::MultiFamily => "multi_family",
            Class::Commercial => "commercial",
            Class::Irrigation => "irrigation",
        }
    }

    /// Share of accounts.
    fn weight(self) -> f64 {
        match self {
            Class::Residential => 0.80,
            Class::MultiFamily => 0.08,
            Class::Commercial => 0.07,
            Class::Irrigation => 0.05,
        }
    }

    /// Median use in HCF per month at a seasonal factor of 1, and its spread across accounts.
    fn size(self) -> (f64, f64) {
        match self {
            Class::Residential => (9.0, 0.45),
            Class::MultiFamily => (55.0, 0.6),
            Class::Commercial => (35.0, 0.8),
            Class::Irrigation => (70.0, 0.7),
        }
    }

    /// Seasonal factor at mid-month, January first (mean ≈ 1). Coastal California: dry Jul–Sep peak.
    fn season(self) -> [f64; 12] {
        match self {
            Class::Residential => [
                0.78, 0.76, 0.82, 0.92, 1.05, 1.15, 1.25, 1.28, 1.22, 1.08, 0.90, 0.80,
            ],
            Class::MultiFamily => [
                0.88, 0.86, 0.90, 0.95, 1.02, 1.08, 1.13, 1.15, 1.12, 1.04, 0.95, 0.90,
            ],
            Class::Commercial => [
                0.92, 0.90, 0.94, 0.97, 1.01, 1.05, 1.09, 1.10, 1.07, 1.02, 0.97, 0.94,
            ],
            Class::Irrigation => [
                0.12, 0.10, 0.25, 0.70, 1.30, 1.90, 2.30, 2.40, 2.00, 1.30, 0.45, 0.15,
            ],
        }
    }

    /// How strongly the month's weather moves use (outdoor share).
    fn weather_sensitivity(self) -> f64 {
        match self {
            Class::Residential => 0.5,
            Class::MultiFamily => 0.3,
            Class::Commercial => 0.2,
            Class::Irrigation => 1.0,
        }
    }

    /// Period-to-period noise (lognormal σ).
    fn noise(self) -> f64 {
        match self {
            Class::Residential => 0.08,
            Class::MultiFamily | Class::Commercial => 0.05,
            Class::Irrigation => 0.10,
        }
    }

    fn registers(self) -> &'static [(f64, Register)] {
        match self {
            Class::Residential => RESIDENTIAL_REGISTERS,
            Class::MultiFamily | Class::Commercial => LARGE_REGISTERS,
            Class::Irrigation => IRRIGATION_REGISTERS,
        }
    }
}

const fn reg(dials: u8, multiplier: u32, unit: Unit) -> Register {
    Register {
        dials,
        multiplier,
        unit,
    }
}

/// Register mixes (share, register). Old 4-dial HCF registers on homes; cubic-foot registers whose two
/// fixed zeros make a multiplier of 100; 10- and 100-gallon registers on newer AMR meters.
const RESIDENTIAL_REGISTERS: &[(f64, Register)] = &[
    (0.20, reg(4, 1, Unit::Hcf)),
    (0.45, reg(5, 1, Unit::Hcf)),
    (0.10, reg(6, 1, Unit::Hcf)),
    (0.10, reg(4, 100, Unit::Cf)),
    (0.15, reg(6, 10, Unit::Gal)),
];
const LARGE_REGISTERS: &[(f64, Register)] = &[
    (0.30, reg(5, 1, Unit::Hcf)),
    (0.40, reg(6, 1, Unit::Hcf)),
    (0.15, reg(5, 100, Unit::Cf)),
    (0.15, reg(6, 100, Unit::Gal)),
];
const IRRIGATION_REGISTERS: &[(f64, Register)] = &[
    (0.35, reg(5, 1, Unit::Hcf)),
    (0.35, reg(6, 1, Unit::Hcf)),
    (0.30, reg(6, 100, Unit::Gal)),
];

/// Gallons per register unit (one step of the last dial, after the multiplier).
fn gallons_per_unit(reg: &Register) -> f64 {
    f64::from(reg.multiplier) * reg.unit.gallons()
}

/// Register units in one HCF.
fn units_per_hcf(reg: &Register) -> f64 {
    GALLONS_PER_HCF / gallons_per_unit(reg)
}

// ---- calendar ----------------------------------------------------------------------------------

fn month_first(base: NaiveDate, offset: i32) -> NaiveDate {
    let m0 = base.year() * 12 + base.month0() as i32 + offset;
    NaiveDate::from_ymd_opt(m0.div_euclid(12), m0.rem_euclid(12) as u32 + 1, 1).unwrap_or(base)
}

fn days_in_month(first: NaiveDate) -> u32 {
    let next = month_first(first, 1);
    (next - first).num_days() as u32
}

fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// `d` moved by `months` calendar months, on the same day of the month (the month's last day when it
/// has fewer days): the read windows of successive cycles.
fn months_after(d: NaiveDate, months: i32) -> NaiveDate {
    let shifted = if months >= 0 {
        d.checked_add_months(Months::new(months.unsigned_abs()))
    } else {
        d.checked_sub_months(Months::new(months.unsigned_abs()))
    };
    shifted.unwrap_or(d)
}

/// The weekday on or nearest after `d`, else before it, staying within `first..=last`.
fn weekday_within(d: NaiveDate, first: NaiveDate, last: NaiveDate) -> NaiveDate {
    for step in [0i64, 1, 2, -1, -2, 3, -3] {
        let c = d + Duration::days(step);
        if c >= first && c <= last && !is_weekend(c) {
            return c;
        }
    }
    d
}

fn next_weekday(d: NaiveDate) -> NaiveDate {
    let mut c = d + Duration::days(1);
    while is_weekend(c) {
        c += Duration::days(1);
    }
    c
}

fn prev_weekday(d: NaiveDate) -> NaiveDate {
    let mut c = d - Duration::days(1);
    while is_weekend(c) {
        c -= Duration::days(1);
    }
    c
}

/// How many days before the day the demo runs its cycle's read window opened. With routes read over the
/// first three weeks of a window ([`READ_SPREAD_DAYS`], two weekdays each: the last read at most 22 days
/// in), every route has been read by the day before, and the window, a month long, still runs for a few
/// days after today (re-reads ordered today fall inside it).
pub const WINDOW_OPENED_DAYS_AGO: i64 = 25;
/// Routes' first read days are spread over this many days from the second day of each window.
const READ_SPREAD_DAYS: f64 = 18.0;

/// Everything derived from the parameters that every account shares.
struct Ctx {
    as_of: NaiveDate,
    /// The open cycle's read window. Earlier cycles' windows open on the same day of earlier months.
    window_from: NaiveDate,
    window_to: NaiveDate,
    /// First day of the use tables.
    t0: NaiveDate,
    /// Per class, cumulative seasonal×weather use (in "average months") from `t0` to the start of day i.
    cum: [Vec<f64>; 4],
    /// Per route, per cycle (index m + 36, m = −36..=0), the two read days (first and second half).
    read_days: Vec<Vec<[NaiveDate; 2]>>,
}

impl Ctx {
    fn new(params: &DemoParams, routes: usize, rng: &mut Rng) -> Ctx {
        let window_from = params.as_of - Duration::days(WINDOW_OPENED_DAYS_AGO);
        let window_to = months_after(window_from, 1) - Duration::days(1);
        let t0 = month_first(window_from, -(HISTORY_MONTHS + 3));
        let t_end = month_first(window_from, 3);
        let n_days = (t_end - t0).num_days() as usize + 1;
        let n_months = (HISTORY_MONTHS + 6) as usize;
        // Weather: AR(1) in log space, one value per calendar month from t0.
        let mut weather = Vec::with_capacity(n_months);
        let mut x = 0.0;
        for _ in 0..n_months {
            x = 0.5 * x + 0.06 * rng.normal();
            weather.push(x);
        }
        let mut cum: [Vec<f64>; 4] = Default::default();
        for class in Class::ALL {
            let season = class.season();
            let sens = class.weather_sensitivity();
            let mut c = Vec::with_capacity(n_days + 1);
            let mut acc = 0.0;
            c.push(0.0);
            for i in 0..n_days {
                let d = t0 + Duration::days(i as i64);
                let rate = seasonal_rate(&season, d) * (sens * weather_at(&weather, t0, d)).exp();
                acc += rate / AVG_MONTH_DAYS;
                c.push(acc);
            }
            cum[class.idx()] = c;
        }
        let mut read_days = Vec::with_capacity(routes);
        for r in 0..routes {
            let mut per_month = Vec::with_capacity(HISTORY_MONTHS as usize + 1);
            for m in -HISTORY_MONTHS..=0 {
                let first = months_after(window_from, m);
                let last = months_after(window_from, m + 1) - Duration::days(1);
                let target = 1.0 + (r as f64 + 0.5) / routes as f64 * READ_SPREAD_DAYS;
                // The current cycle is read on schedule; history wanders ±3 days.
                let jitter = if m == 0 {
                    0
                } else {
                    rng.range(0, 6) as i64 - 3
                };
                let offset =
                    (target.round() as i64 + jitter).clamp(0, (last - first).num_days() - 2);
                let d1 = weekday_within(first + Duration::days(offset), first, last);
                let next = next_weekday(d1);
                let d2 = if next <= last { next } else { prev_weekday(d1) };
                per_month.push(if d2 < d1 { [d2, d1] } else { [d1, d2] });
            }
            read_days.push(per_month);
        }
        Ctx {
            as_of: params.as_of,
            window_from,
            window_to,
            t0,
            cum,
            read_days,
        }
    }

    /// Cumulative class use (average months) at the start of `d`.
    fn c(&self, class: Class, d: NaiveDate) -> f64 {
        let table = &self.cum[class.idx()];
        let i = (d - self.t0).num_days().clamp(0, table.len() as i64 - 1) as usize;
        table[i]
    }

    fn read_day(&self, route: usize, m: i32, half: usize) -> NaiveDate {
        self.read_days[route][(m + HISTORY_MONTHS) as usize][half]
    }

    /// The first day of cycle `m`'s read window (0: the open cycle).
    fn window_start(&self, m: i32) -> NaiveDate {
        months_after(self.window_from, m)
    }

    /// The weekday nearest `d` within cycle `m`'s read window.
    fn weekday_in_window(&self, m: i32, d: NaiveDate) -> NaiveDate {
        let last = self.window_start(m + 1) - Duration::days(1);
        weekday_within(d, self.window_start(m), last)
    }
}

fn seasonal_rate(season: &[f64; 12], d: NaiveDate) -> f64 {
    // Linear between mid-month points (the 15th).
    let m = d.month0() as usize;
    let day = f64::from(d.day());
    let dim = days_in_month(month_first(d, 0)) as f64;
    let (a, b, t) = if day >= 15.0 {
        (m, (m + 1) % 12, (day - 15.0) / dim)
    } else {
        ((m + 11) % 12, m, (day - 15.0 + 30.0) / 30.0)
    };
    season[a] * (1.0 - t) + season[b] * t.clamp(0.0, 1.0)
}

fn weather_at(weather: &[f64], t0: NaiveDate, d: NaiveDate) -> f64 {
    let i = (d.year() * 12 + d.month0() as i32) - (t0.year() * 12 + t0.month0() as i32);
    weather.get(i.max(0) as usize).copied().unwrap_or_default()
}

// ---- plans -------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct MeterChange {
    on: NaiveDate,
    /// The monthly read (m) that ends the period in which the change happens.
    period: i32,
    new_register: Register,
    old_to_inventory: bool,
}

#[derive(Debug, Clone)]
struct Plan {
    class: Class,
    status: AccountStatus,
    route: usize,
    half: usize,
    /// Position within its half-route day (for read times).
    slot: usize,
    base_gal: f64,
    register: Register,
    method: ReadMethod,
    years_installed: f64,
    /// New service within the history window.
    start: Option<NaiveDate>,
    /// Zero use after the read of this month.
    inactive_after: Option<i32>,
    /// Final read at this month's read.
    closed_at: Option<i32>,
    change: Option<MeterChange>,
    /// Estimated months and how much of the real use each estimate caught.
    estimates: Vec<(i32, f64)>,
    /// The register wraps through zero at this month's read (0: the current read).
    wrap_at: Option<i32>,
    /// A structural trap (or a problem built into the use itself: a leak) chosen before simulation.
    trap: Option<Problem>,
    /// Use in these months (0: the current period) multiplied by this factor: leaks, vacations,
    /// a new tenant, a second home, a trend.
    use_factors: Vec<(i32, f64)>,
    hazard: Option<&'static str>,
}

/// The simulated current period of an account with an active (or inactive) meter.
#[derive(Debug, Clone)]
struct Current {
    meter: usize,
    register: Register,
    prev_reading: u64,
    prev_on: NaiveDate,
    prev_kind: ReadKind,
    on: NaiveDate,
    /// The true reading on `on`.
    reading: u64,
    /// True use this period in register units.
    use_units: u64,
    /// Model expectation for the period in register units (no noise).
    expected: f64,
    /// For readings at other dates: volume at `prev_on` and `on`, and how volume maps to the register.
    v_prev: f64,
    v_now: f64,
    v_base: f64,
    units_base: u64,
    /// Class seasonal use this period over the mean of the three before (per day).
    season_ratio: Option<f64>,
}

impl Current {
    fn reading_at_volume(&self, v: f64) -> u64 {
        let g = gallons_per_unit(&self.register);
        let units = ((v - self.v_base) / g).floor().max(0.0) as u64 + self.units_base;
        units % self.register.modulus()
    }

    fn expected_hcf(&self) -> f64 {
        self.expected / units_per_hcf(&self.register)
    }

    /// No plausible use could carry the register through zero.
    fn far_from_rollover(&self) -> bool {
        let m = self.register.modulus() as f64;
        (self.prev_reading as f64) + 12.0 * self.expected + 20.0 * units_per_hcf(&self.register) < m
            && self.prev_reading as f64 > 2.0 * self.expected + 20.0 * units_per_hcf(&self.register)
    }
}

/// What a good validator must say about `value` keyed against a meter whose previous reading was
/// `prev`, when the period's expected use is `expected` register units; `None` when the read would be
/// plausible (not a fair test).
fn classify(reg: &Register, prev: u64, value: u64, expected: f64) -> Option<Expect> {
    let per_hcf = units_per_hcf(reg);
    if !reg.fits(value) {
        return Some(Expect::exception_or(
            FlagKind::InvalidReading,
            &[FlagKind::High],
        ));
    }
    if value < prev {
        let wrapped = (reg.modulus() - prev + value) as f64;
        return (wrapped > 5.0 * expected + 30.0 * per_hcf)
            .then(|| Expect::exception_or(FlagKind::Negative, &[FlagKind::High]));
    }
    let used = (value - prev) as f64;
    if used >= 3.0 * expected && used - expected >= 8.0 * per_hcf {
        return Some(Expect::exception(FlagKind::High));
    }
    if used == 0.0 && expected >= 5.0 * per_hcf {
        return Some(Expect::exception_or(FlagKind::Zero, &[FlagKind::Low]));
    }
    if used <= 0.35 * expected && expected - used >= 6.0 * per_hcf {
        return Some(Expect::exception_or(FlagKind::Low, &[FlagKind::Zero]));
    }
    None
}

// ---- the generator -----------------------------------------------------------------------------

/// How many of a planted kind: a share of the accounts, at least `min` (so small demo districts still
/// carry every kind).
fn share(n: usize, rate: f64, min: usize) -> usize {
    ((n as f64 * rate).round() as usize).max(min)
}

/// Builds the district. Pure: the same parameters always give the same district.
pub fn generate(params: &DemoParams) -> District {
    let n = params.accounts as usize;
    let master = Rng::new(params.seed);
    let routes_n = (params.accounts.div_ceil(ACCOUNTS_PER_ROUTE)).max(1) as usize;
    let mut rng_ctx = master.fork(1);
    let ctx = Ctx::new(params, routes_n, &mut rng_ctx);
    // Named for the month its window opens in.
    let cycle_id = format!(
        "{:04}-{:02}",
        ctx.window_from.year(),
        ctx.window_from.month()
    );

    let routes = make_routes(routes_n);
    let readers = make_readers(routes_n, &mut master.fork(2));
    let (mut accounts, mut plans) = make_accounts(n, &routes, &mut master.fork(3));
    plan_structure(&mut plans, &ctx, &mut master.fork(4));

    // Meters and history, account by account.
    let mut meters: Vec<Meter> = Vec::with_capacity(n + n / 10);
    let mut history: Vec<HistoryRead> = Vec::with_capacity(n * (HISTORY_MONTHS as usize + 1));
    let mut currents: Vec<Option<Current>> = Vec::with_capacity(n);
    let mut ids = MeterIds::new();
    for (i, (account, plan)) in accounts.iter().zip(&plans).enumerate() {
        let mut rng = master.fork(1_000 + i as u64);
        currents.push(simulate(
            account,
            plan,
            &ctx,
            &mut rng,
            &mut ids,
            &mut meters,
            &mut history,
        ));
    }
    // New stock in the warehouse, never installed.
    let mut stock_rng = master.fork(5);
    for _ in 0..share(n, 0.004, 1) {
        let reg = *stock_rng.choice(&[
            Register {
                dials: 5,
                multiplier: 1,
                unit: Unit::Hcf,
            },
            Register {
                dials: 6,
                multiplier: 10,
                unit: Unit::Gal,
            },
        ]);
        meters.push(Meter {
            id: ids.next(&reg, &mut stock_rng),
            account_id: None,
            status: MeterStatus::Inventory,
            register: reg,
            installed_on: None,
            removed_on: None,
        });
    }

    let mut truth: Vec<Planted> = Vec::new();
    let reads = plant_and_read(
        &accounts,
        &plans,
        &currents,
        &meters,
        &history,
        &ctx,
        &readers,
        &mut ids,
        &mut truth,
        &mut master.fork(6),
    );
    label_traps(&accounts, &plans, &currents, &meters, &mut truth);
    let field_reads = order_reads(reads);

    // Inactive accounts keep their status; closed accounts already lost their meter in `simulate`.
    for (a, p) in accounts.iter_mut().zip(&plans) {
        a.status = p.status;
    }
    truth.sort_by(|a, b| {
        (a.problem, &a.account_id, &a.meter_id).cmp(&(b.problem, &b.account_id, &b.meter_id))
    });

    District {
        cycle: Cycle {
            id: cycle_id,
            window_from: ctx.window_from,
            window_to: ctx.window_to,
            routes: routes.iter().map(|r| r.id.clone()).collect(),
            status: CycleStatus::Open,
        },
        routes,
        accounts,
        meters,
        history,
        codes: message_codes(),
        field_reads,
        truth,
    }
}

fn make_routes(n: usize) -> Vec<Route> {
    let width = if n > 99 { 3 } else { 2 };
    (0..n)
        .map(|r| {
            let area = ROUTE_AREAS[r % ROUTE_AREAS.len()];
            let name = if r < ROUTE_AREAS.len() {
                area.to_string()
            } else {
                format!("{area} {}", r / ROUTE_AREAS.len() + 1)
            };
            Route {
                id: format!("R{:0width$}", r + 1),
                name,
            }
        })
        .collect()
}

/// One reader (initials) and handheld per reader; each route belongs to one reader.
struct Readers {
    initials: Vec<String>,
    /// Reader index per route.
    of_route: Vec<usize>,
}

impl Readers {
    fn of(&self, route: usize) -> (&str, String) {
        let r = self.of_route[route];
        (&self.initials[r], format!("HH-{:02}", r + 1))
    }
}

fn make_readers(routes: usize, rng: &mut Rng) -> Readers {
    let count = routes.div_ceil(3).max(1);
    let mut initials: Vec<String> = Vec::with_capacity(count);
    let mut taken = HashSet::new();
    while initials.len() < count {
        let f = rng.choice(FIRST_NAMES).chars().next().unwrap_or('X');
        let l = rng.choice(LAST_NAMES).chars().next().unwrap_or('X');
        let mut s = format!("{f}{l}");
        let mut k = 2;
        while taken.contains(&s) {
            s = format!("{f}{l}{k}");
            k += 1;
        }
        taken.insert(s.clone());
        initials.push(s);
    }
    Readers {
        initials,
        of_route: (0..routes).map(|r| r % count).collect(),
    }
}

fn phone(rng: &mut Rng) -> String {
    let area = *rng.choice(&["831", "831", "805", "408"]);
    format!(
        "({area}) {}{:02}-{:04}",
        rng.range(2, 9),
        rng.range(0, 99),
        rng.range(0, 9999)
    )
}

fn person(rng: &mut Rng) -> String {
    let last = rng.choice(LAST_NAMES);
    let first = rng.choice(FIRST_NAMES);
    if rng.chance(0.15) {
        let other = rng.choice(FIRST_NAMES);
        format!("{last}, {first} & {other}")
    } else {
        format!("{last}, {first}")
    }
}

fn make_accounts(n: usize, routes: &[Route], rng: &mut Rng) -> (Vec<Account>, Vec<Plan>) {
    let mut accounts = Vec::with_capacity(n);
    let mut plans = Vec::with_capacity(n);
    // Route sizes vary ±15%.
    let weights: Vec<f64> = routes.iter().map(|_| rng.lognormal(1.0, 0.15)).collect();
    let total: f64 = weights.iter().sum();
    let mut bounds = Vec::with_capacity(routes.len() + 1);
    let mut acc = 0.0;
    bounds.push(0usize);
    for w in &weights {
        acc += w;
        bounds.push(((acc / total) * n as f64).round() as usize);
    }
    if let Some(last) = bounds.last_mut() {
        *last = n;
    }
    let class_weights: Vec<f64> = Class::ALL.iter().map(|c| c.weight()).collect();
    let mut idx = 0usize;
    for (r, route) in routes.iter().enumerate() {
        let size = bounds[r + 1] - bounds[r];
        let book = 100 + (r * 37) % 800;
        let mut seq = 0u32;
        let mut street_i = 0usize;
        let mut house = 0u32;
        let mut street = String::new();
        let mut parcel = 0u32;
        for pos in 0..size {
            if pos == 0 || rng.chance(1.0 / 45.0) {
                street_i += 1;
                street = format!(
                    "{} {}",
                    rng.choice(STREET_NAMES),
                    rng.choice(STREET_SUFFIXES)
                );
                house = rng.range(1, 40) as u32 * 10 + rng.range(0, 1) as u32;
                parcel = 0;
            }
            // Walk order with gaps (removed stops) and the odd inserted stop (15 between 10 and 20).
            seq += if rng.chance(0.03) {
                5
            } else if rng.chance(0.05) {
                20
            } else {
                10
            };
            house += 2 * rng.range(1, 6) as u32;
            parcel += rng.range(1, 3) as u32;
            let class = Class::ALL[rng.weighted(&class_weights)];
            let address = format!("{house} {street}");
            let name = match class {
                Class::Residential => person(rng),
                Class::MultiFamily => format!(
                    "{} {}",
                    street.split(' ').next().unwrap_or("Harbor"),
                    rng.choice(APARTMENT_KINDS)
                ),
                Class::Commercial => {
                    let owner = rng.choice(LAST_NAMES);
                    format!("{owner}'s {}", rng.choice(BUSINESS_KINDS))
                }
                Class::Irrigation => {
                    let site = rng.choice(IRRIGATION_SITES);
                    let place = street.split(' ').next().unwrap_or("Harbor");
                    format!("{place} {site}")
                }
            };
            let status = {
                let x = rng.unit();
                if x < 0.025 {
                    AccountStatus::Inactive
                } else if x < 0.04 {
                    AccountStatus::Closed
                } else {
                    AccountStatus::Active
                }
            };
            let (median, sigma) = class.size();
            let base_gal = rng
                .lognormal(median, sigma)
                .clamp(median / 6.0, median * 6.0)
                * GALLONS_PER_HCF;
            let regs = class.registers();
            let reg_w: Vec<f64> = regs.iter().map(|(w, _)| *w).collect();
            let register = regs[rng.weighted(&reg_w)].1;
            let method = match rng.weighted(&[0.55, 0.20, 0.25]) {
                0 => ReadMethod::Keyed,
                1 => ReadMethod::Probe,
                _ => ReadMethod::Radio,
            };
            let half = usize::from(pos >= size.div_ceil(2));
            let slot = if half == 0 {
                pos
            } else {
                pos - size.div_ceil(2)
            };
            let hazard = if rng.chance(0.04) {
                Some("DG")
            } else if rng.chance(0.004) {
                Some("BE")
            } else {
                None
            };
            // Account numbers are handed out as services start, not in walk order.
            let id = 1_000_000 + (idx as u64 * 7_001 + 313) % 9_000_000;
            accounts.push(Account {
                id: id.to_string(),
                name,
                service_address: address,
                status: AccountStatus::Active,
                rate_class: class.as_str().to_string(),
                route_id: route.id.clone(),
                sequence: seq,
                apn: format!(
                    "{book:03}-{:03}-{:03}",
                    (street_i * 10) % 1000,
                    parcel % 1000
                ),
                phone: phone(rng),
            });
            plans.push(Plan {
                class,
                status,
                route: r,
                half,
                slot,
                base_gal,
                register,
                method,
                years_installed: rng.uniform(1.0, 25.0),
                start: None,
                inactive_after: None,
                closed_at: None,
                change: None,
                estimates: Vec::new(),
                wrap_at: None,
                trap: None,
                use_factors: Vec::new(),
                hazard,
            });
            idx += 1;
        }
    }
    (accounts, plans)
}

/// A weekday strictly between `a` and `b` (at least one day from each), if there is one.
fn day_between(a: NaiveDate, b: NaiveDate, rng: &mut Rng) -> Option<NaiveDate> {
    let span = (b - a).num_days();
    if span < 3 {
        return None;
    }
    for _ in 0..8 {
        let d = a + Duration::days(rng.range(1, span as u64 - 1) as i64);
        if !is_weekend(d) {
            return Some(d);
        }
    }
    None
}

fn upgraded(reg: &Register, new_unit: bool) -> Register {
    if new_unit {
        return if reg.unit == Unit::Gal {
            // Back to a plain HCF register.
            Register {
                dials: 5,
                multiplier: 1,
                unit: Unit::Hcf,
            }
        } else {
            // AMR upgrade: a 10-gallon register on a home, 100-gallon on a large service.
            Register {
                dials: 7,
                multiplier: if reg.dials >= 6 || reg.multiplier >= 100 && reg.dials >= 5 {
                    100
                } else {
                    10
                },
                unit: Unit::Gal,
            }
        };
    }
    Register {
        dials: (reg.dials + 1).min(6),
        ..*reg
    }
}

/// Chooses the structural traps and the background life of accounts (new services, closures, meter
/// changes, estimates) before any use is simulated.
fn plan_structure(plans: &mut [Plan], ctx: &Ctx, rng: &mut Rng) {
    let n = plans.len();
    let month_day = |plan: &Plan, m: i32| ctx.read_day(plan.route, m, plan.half);
    let mut active: Vec<usize> = (0..n)
        .filter(|&i| plans[i].status == AccountStatus::Active)
        .collect();
    rng.shuffle(&mut active);
    let mut take = |count: usize| -> Vec<usize> {
        let k = count.min(active.len());
        active.drain(..k).collect()
    };
    let thin = take(share(n, 0.004, 2));
    let change_last = take(share(n, 0.003, 2));
    let change_unit = take(share(n, 0.003, 2));
    let change_year = take(share(n, 0.006, 2));
    let after_est = take(share(n, 0.006, 3));
    let rollover = take(share(n, 0.004, 2));
    let history_wrap = take(share(n, 0.006, 1));
    // Problems built into the use itself, and traps of the account's own life (taken from accounts
    // large enough that a doubling is not a unit's rounding).
    let leak_kinds = [
        (Problem::ContinuingLeak, 0.004),
        (Problem::ModerateLeak, 0.006),
        (Problem::CommercialLeak, 0.003),
        (Problem::GallonMeterLeak, 0.003),
        (Problem::CommercialLow, 0.003),
    ];
    let mut built_in: Vec<(Problem, Vec<usize>)> = Vec::new();
    // A district of a few dozen accounts keeps its accounts for the read-level problems.
    let least = if n >= 400 { 2 } else { 0 };
    for (kind, rate) in leak_kinds {
        let want = share(n, rate, least);
        let fits = |p: &Plan| {
            let hcf = p.base_gal / GALLONS_PER_HCF;
            match kind {
                Problem::CommercialLeak | Problem::CommercialLow => {
                    matches!(p.class, Class::Commercial | Class::MultiFamily) && hcf >= 8.0
                }
                Problem::GallonMeterLeak => {
                    p.class != Class::Irrigation && p.register.unit != Unit::Hcf && hcf >= 5.0
                }
                _ => p.class == Class::Residential && hcf >= 5.0,
            }
        };
        let picked: Vec<usize> = active
            .iter()
            .copied()
            .filter(|&i| fits(&plans[i]))
            .take(want)
            .collect();
        active.retain(|i| !picked.contains(i));
        built_in.push((kind, picked));
    }
    let life_traps = [
        Problem::Vacation,
        Problem::SmallUser,
        Problem::NewTenant,
        Problem::SecondHome,
        Problem::Trend,
    ];
    for kind in life_traps {
        let want = share(n, 0.004, least);
        let picked: Vec<usize> = active
            .iter()
            .copied()
            .filter(|&i| plans[i].class == Class::Residential)
            .take(want)
            .collect();
        active.retain(|i| !picked.contains(i));
        built_in.push((kind, picked));
    }
    let mut take = |count: usize| -> Vec<usize> {
        let k = count.min(active.len());
        active.drain(..k).collect()
    };
    let background_change = take(share(n, 0.03, 0));
    let background_start = take(share(n, 0.03, 0));
    // Structural traps.
    for (kind, picked) in built_in {
        for i in picked {
            let away: Vec<i32> = (-HISTORY_MONTHS..=0)
                .filter(|&m| !(5..=10).contains(&month_day(&plans[i], m).month()))
                .collect();
            let plan = &mut plans[i];
            plan.trap = Some(kind);
            let f = &mut plan.use_factors;
            match kind {
                Problem::ContinuingLeak => {
                    f.push((-1, rng.uniform(2.5, 4.0)));
                    f.push((0, rng.uniform(2.2, 3.5)));
                }
                Problem::ModerateLeak | Problem::GallonMeterLeak => {
                    f.push((0, rng.uniform(1.8, 2.5)))
                }
                Problem::CommercialLeak => f.push((0, rng.uniform(1.7, 2.5))),
                Problem::CommercialLow => f.push((0, rng.uniform(0.3, 0.5))),
                Problem::Vacation => f.push((-(rng.range(2, 11) as i32), rng.uniform(0.1, 0.3))),
                Problem::SmallUser => {
                    plan.base_gal = rng.uniform(1.0, 3.0) * GALLONS_PER_HCF;
                    let a = -(rng.range(2, 12) as i32);
                    let mut b = -(rng.range(2, 12) as i32);
                    if b == a {
                        b = if a == -2 { -3 } else { a + 1 };
                    }
                    f.extend([(a, 0.0), (b, 0.0)]);
                }
                Problem::NewTenant => {
                    let from = -(rng.range(4, 9) as i32);
                    let level = if rng.chance(0.5) {
                        rng.uniform(0.55, 0.7)
                    } else {
                        rng.uniform(1.5, 1.9)
                    };
                    f.extend((from..=0).map(|m| (m, level)));
                }
                Problem::SecondHome => {
                    let empty = rng.uniform(0.04, 0.1);
                    f.extend(away.iter().map(|&m| (m, empty)));
                }
                Problem::Trend => {
                    f.extend((-HISTORY_MONTHS..=0).map(|m| (m, 1.015f64.powi(m + HISTORY_MONTHS))))
                }
                _ => {}
            }
        }
    }
    for &i in &thin {
        let m = -(rng.range(2, 4) as i32);
        let first = ctx.window_start(m);
        let before_read = month_day(&plans[i], m) - Duration::days(10);
        let d = first + Duration::days(rng.range(0, 6) as i64);
        plans[i].start = Some(ctx.weekday_in_window(m, d.min(before_read.max(first))));
        plans[i].trap = Some(Problem::ThinHistory);
    }
    for &i in &background_start {
        let m = -(rng.range(13, 34) as i32);
        let first = ctx.window_start(m);
        plans[i].start =
            Some(ctx.weekday_in_window(m, first + Duration::days(rng.range(0, 20) as i64)));
    }
    let change = |plan: &mut Plan, period: i32, new_unit: bool, rng: &mut Rng| -> bool {
        let a = month_day(plan, period - 1);
        let b = month_day(plan, period);
        // Leave a few days before the next read: the crew changes the meter, the reader comes later.
        // A change this period is already in the CIS by the day the demo runs, when that is possible.
        let b = if period == 0 {
            (b - Duration::days(4)).min(ctx.as_of.max(a + Duration::days(4)))
        } else {
            b
        };
        let Some(on) = day_between(a, b, rng) else {
            return false;
        };
        plan.change = Some(MeterChange {
            on,
            period,
            new_register: upgraded(&plan.register, new_unit),
            old_to_inventory: rng.chance(0.7),
        });
        true
    };
    for &i in &change_last {
        if change(&mut plans[i], 0, false, rng) {
            plans[i].trap = Some(Problem::MeterChangeLastPeriod);
        }
    }
    for &i in &change_unit {
        let period = -(rng.range(1, 11) as i32);
        if change(&mut plans[i], period, true, rng) {
            plans[i].trap = Some(Problem::MeterChangeNewUnit);
        }
    }
    for &i in &change_year {
        let period = -(rng.range(1, 11) as i32);
        if change(&mut plans[i], period, false, rng) {
            plans[i].trap = Some(Problem::MeterChangeThisYear);
        }
    }
    for &i in &background_change {
        let period = -(rng.range(13, 35) as i32);
        change(&mut plans[i], period, false, rng);
    }
    for &i in &after_est {
        plans[i].estimates.push((-1, rng.uniform(0.30, 0.45)));
        plans[i].trap = Some(Problem::AfterEstimate);
    }
    for &i in &rollover {
        plans[i].wrap_at = Some(0);
    }
    for &i in &history_wrap {
        plans[i].wrap_at = Some(-(rng.range(1, 35) as i32));
    }
    // Background: inactive and closed accounts, scattered estimates.
    for plan in plans.iter_mut() {
        match plan.status {
            AccountStatus::Inactive => plan.inactive_after = Some(-(rng.range(2, 30) as i32)),
            AccountStatus::Closed => plan.closed_at = Some(-(rng.range(1, 34) as i32)),
            AccountStatus::Active => {}
        }
        if plan.trap.is_none() && plan.wrap_at.is_none() {
            for m in -HISTORY_MONTHS + 1..=-2 {
                if rng.chance(0.008) {
                    plan.estimates.push((m, rng.uniform(0.6, 0.95)));
                }
            }
        }
    }
}

/// Meter ids: a make letter and seven digits, unique through a fixed permutation of a counter.
struct MeterIds {
    next: u64,
}

impl MeterIds {
    fn new() -> MeterIds {
        MeterIds { next: 0 }
    }

    fn next(&mut self, reg: &Register, rng: &mut Rng) -> String {
        let k = self.next;
        self.next += 1;
        let make = match reg.unit {
            Unit::Gal => *rng.choice(&['B', 'N']),
            _ => *rng.choice(&['S', 'S', 'N', 'I']),
        };
        format!("{make}{:07}", (k * 7_919 + 1_234_567) % 10_000_000)
    }
}

/// Simulates one account over the history window and the current period. Pushes its meters and
/// history; returns the current period for accounts that still have a meter in service.
fn simulate(
    account: &Account,
    plan: &Plan,
    ctx: &Ctx,
    rng: &mut Rng,
    ids: &mut MeterIds,
    meters: &mut Vec<Meter>,
    history: &mut Vec<HistoryRead>,
) -> Option<Current> {
    let class = plan.class;
    // Monthly read points that exist for this account.
    let mut points: Vec<(i32, NaiveDate)> = Vec::with_capacity(HISTORY_MONTHS as usize + 1);
    for m in -HISTORY_MONTHS..=0 {
        let d = ctx.read_day(plan.route, m, plan.half);
        if let Some(s) = plan.start {
            if d < s + Duration::days(7) {
                continue;
            }
        }
        if let Some(c) = plan.closed_at {
            if m > c {
                break;
            }
        }
        points.push((m, d));
    }
    // Volume (gallons) at each point, and drift.
    let mut vols = Vec::with_capacity(points.len());
    let mut drift = 0.0f64;
    let mut prev_date = plan.start.unwrap_or(points.first().map(|p| p.1)?);
    let mut v = 0.0f64;
    let mut expected_now = 0.0;
    for &(m, d) in &points {
        drift += 0.01 * rng.normal();
        let noise = rng.lognormal(1.0, class.noise());
        let mean = plan.base_gal * drift.exp() * (ctx.c(class, d) - ctx.c(class, prev_date));
        let dead = plan.inactive_after.is_some_and(|after| m > after);
        let used = if dead || (plan.start.is_none() && vols.is_empty()) {
            0.0
        } else {
            let factor: f64 = plan
                .use_factors
                .iter()
                .filter(|f| f.0 == m)
                .map(|f| f.1)
                .product();
            mean * noise * factor
        };
        if m == 0 {
            expected_now = mean;
        }
        v += used;
        vols.push(v);
        prev_date = d;
    }
    let volume_at = |d: NaiveDate| -> f64 {
        // Interpolate along the class curve between the surrounding points.
        let mut prev = (plan.start.unwrap_or(points[0].1), 0.0);
        for (k, &(_, pd)) in points.iter().enumerate() {
            if pd >= d {
                let span = ctx.c(class, pd) - ctx.c(class, prev.0);
                let f = if span > 0.0 {
                    (ctx.c(class, d) - ctx.c(class, prev.0)) / span
                } else {
                    0.0
                };
                return prev.1 + (vols[k] - prev.1) * f.clamp(0.0, 1.0);
            }
            prev = (pd, vols[k]);
        }
        prev.1
    };

    // Meters.
    let old_reg = plan.register;
    let g_old = gallons_per_unit(&old_reg);
    let m_old = old_reg.modulus();
    let annual_units = plan.base_gal * 12.0 / g_old;
    let mut old_offset = if plan.start.is_some() {
        0
    } else {
        (plan.years_installed * annual_units * rng.uniform(0.7, 1.1)) as u64 % m_old
    };
    if let (Some(at), None) = (plan.wrap_at, &plan.change) {
        if let Some(k) = points.iter().position(|p| p.0 == at).filter(|&k| k > 0) {
            let u_prev = (vols[k - 1] / g_old).floor() as u64;
            let u_now = (vols[k] / g_old).floor() as u64;
            if u_now >= u_prev + 2 {
                let short = rng.range(1, u_now - u_prev - 1);
                old_offset = (m_old - short % m_old + m_old - u_prev % m_old) % m_old;
            }
        }
    }
    let old_installed = plan.start.unwrap_or_else(|| {
        ctx.window_from - Duration::days((plan.years_installed * 365.25) as i64 + 1_100)
    });
    let old_id = ids.next(&old_reg, rng);
    let old_idx = meters.len();
    meters.push(Meter {
        id: old_id.clone(),
        account_id: Some(account.id.clone()),
        status: MeterStatus::Active,
        register: old_reg,
        installed_on: Some(old_installed),
        removed_on: None,
    });
    let change = plan.change.as_ref().filter(|c| {
        points.first().is_some_and(|p| p.0 < c.period) && points.iter().any(|p| p.0 == c.period)
    });
    let new_meter = change.map(|c| {
        let id = ids.next(&c.new_register, rng);
        let v_c = volume_at(c.on);
        let start_units = rng.range(0, 2);
        meters[old_idx].account_id = None;
        meters[old_idx].status = if c.old_to_inventory {
            MeterStatus::Inventory
        } else {
            MeterStatus::Retired
        };
        meters[old_idx].removed_on = Some(c.on);
        meters.push(Meter {
            id: id.clone(),
            account_id: Some(account.id.clone()),
            status: MeterStatus::Active,
            register: c.new_register,
            installed_on: Some(c.on),
            removed_on: None,
        });
        (meters.len() - 1, id, v_c, start_units)
    });

    // History rows. Unwrapped register units per meter; readings are taken modulo the dials.
    let units_old = |v: f64| (v / g_old).floor() as u64 + old_offset;
    let push =
        |history: &mut Vec<HistoryRead>, meter: &str, on: NaiveDate, units: u64, m: u64, kind| {
            history.push(HistoryRead {
                account_id: account.id.clone(),
                meter_id: meter.to_string(),
                read_on: on,
                reading: units % m,
                kind,
            });
        };
    if let Some(s) = plan.start {
        push(history, &old_id, s, old_offset, m_old, ReadKind::Initial);
    }
    let mut reported = old_offset; // last reported unwrapped units on the meter in service
    let mut reported_on = plan.start.unwrap_or(points[0].1);
    let mut reported_kind = ReadKind::Initial;
    let mut on_new = false;
    let mut current = None;
    for (k, &(m, d)) in points.iter().enumerate() {
        if let (Some(c), Some((_, new_id, v_c, start))) = (change, new_meter.as_ref()) {
            if !on_new && m == c.period {
                push(
                    history,
                    &old_id,
                    c.on,
                    units_old(*v_c),
                    m_old,
                    ReadKind::Final,
                );
                push(
                    history,
                    new_id,
                    c.on,
                    *start,
                    c.new_register.modulus(),
                    ReadKind::Initial,
                );
                on_new = true;
                reported = *start;
                reported_on = c.on;
                reported_kind = ReadKind::Initial;
            }
        }
        let (meter_idx, reg, units_true, v_base, units_base) = match (on_new, new_meter.as_ref()) {
            (true, Some((idx, _, v_c, start))) => {
                let reg = meters[*idx].register;
                let g = gallons_per_unit(&reg);
                (
                    *idx,
                    reg,
                    ((vols[k] - v_c) / g).floor().max(0.0) as u64 + start,
                    *v_c,
                    *start,
                )
            }
            _ => (old_idx, old_reg, units_old(vols[k]), 0.0, old_offset),
        };
        let modulus = reg.modulus();
        if m == 0 {
            if k == 0 {
                break;
            }
            let g = gallons_per_unit(&reg);
            let from = if reported_kind == ReadKind::Initial && on_new {
                reported_on
            } else {
                points[k - 1].1
            };
            let expected = if reported_kind == ReadKind::Initial && on_new {
                expected_now * (ctx.c(class, d) - ctx.c(class, from))
                    / (ctx.c(class, d) - ctx.c(class, points[k - 1].1)).max(1e-9)
            } else {
                expected_now
            };
            let season_ratio = (k >= 4).then(|| {
                let per_day = |a: NaiveDate, b: NaiveDate| {
                    (ctx.c(class, b) - ctx.c(class, a)) / ((b - a).num_days().max(1) as f64)
                };
                per_day(points[k - 1].1, d) / per_day(points[k - 4].1, points[k - 1].1)
            });
            let v_prev = if on_new && reported_kind == ReadKind::Initial {
                v_base
            } else {
                vols[k - 1]
            };
            current = Some(Current {
                meter: meter_idx,
                register: reg,
                prev_reading: reported % modulus,
                prev_on: reported_on,
                prev_kind: reported_kind,
                on: d,
                reading: units_true % modulus,
                use_units: units_true.saturating_sub(reported),
                expected: expected / g,
                v_prev,
                v_now: vols[k],
                v_base,
                units_base,
                season_ratio,
            });
            break;
        }
        let closing = plan.closed_at == Some(m);
        let estimate = plan.estimates.iter().find(|e| e.0 == m).map(|e| e.1);
        let (units, kind) = match estimate {
            Some(frac) if !closing && k > 0 => {
                let caught = ((units_true - reported) as f64 * frac).round() as u64;
                (reported + caught, ReadKind::Estimated)
            }
            _ if closing => (units_true, ReadKind::Final),
            _ => (units_true, ReadKind::Actual),
        };
        push(
            history,
            &meters[meter_idx].id.clone(),
            d,
            units,
            modulus,
            kind,
        );
        reported = units;
        reported_on = d;
        reported_kind = kind;
        if closing {
            meters[meter_idx].account_id = None;
            meters[meter_idx].status = if rng.chance(0.6) {
                MeterStatus::Inventory
            } else {
                MeterStatus::Retired
            };
            meters[meter_idx].removed_on = Some(d);
        }
    }
    current
}

// ---- the current cycle ---------------------------------------------------------------------------

/// A field read before it is timed and sequenced.
struct Pending {
    route: usize,
    read: FieldRead,
}

fn read_time(ctx_day: NaiveDate, slot: usize, rng: &mut Rng) -> NaiveDateTime {
    // 07:30 start, ~95 s a stop, a 30-minute lunch after 11:30.
    let mut secs = 7 * 3600 + 1800 + slot as i64 * 95 + rng.range(0, 40) as i64;
    if secs > 11 * 3600 + 1800 {
        secs += 1800;
    }
    let t = NaiveTime::from_num_seconds_from_midnight_opt((secs % 86_400) as u32, 0)
        .unwrap_or(NaiveTime::MIN);
    ctx_day.and_time(t)
}

fn format_reading(value: u64, reg: &Register, method: ReadMethod) -> String {
    match method {
        // Radio endpoints send every dial.
        ReadMethod::Radio => format!("{value:0width$}", width = usize::from(reg.dials)),
        _ => value.to_string(),
    }
}

/// Chooses the read-level problems, builds every field read and records the truth.
fn plant_and_read(
    accounts: &[Account],
    plans: &[Plan],
    currents: &[Option<Current>],
    meters: &[Meter],
    history: &[HistoryRead],
    ctx: &Ctx,
    readers: &Readers,
    ids: &mut MeterIds,
    truth: &mut Vec<Planted>,
    rng: &mut Rng,
) -> Vec<Pending> {
    let n = accounts.len();
    // Planted read values (and read types, codes) per account, decided first.
    let mut plant: HashMap<usize, Problem> = HashMap::new();
    let clean: Vec<usize> = {
        let mut v: Vec<usize> = (0..n)
            .filter(|&i| {
                plans[i].status == AccountStatus::Active
                    && plans[i].trap.is_none()
                    && plans[i].wrap_at != Some(0)
                    && currents[i].as_ref().is_some_and(|c| {
                        c.far_from_rollover()
                            && c.prev_kind == ReadKind::Actual
                            && c.prev_reading < c.reading
                    })
            })
            .collect();
        rng.shuffle(&mut v);
        v
    };
    let cur = |i: usize| currents[i].as_ref();
    let keyed = |i: usize| plans[i].method == ReadMethod::Keyed;
    let e_hcf = |i: usize| cur(i).map_or(0.0, Current::expected_hcf);
    struct Want {
        problem: Problem,
        count: usize,
    }
    let wants = [
        Want {
            problem: Problem::Leak,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::ConfirmedLeak,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::StuckMeter,
            count: share(n, 0.005, 2),
        },
        Want {
            problem: Problem::Tampering,
            count: share(n, 0.003, 2),
        },
        Want {
            problem: Problem::MisKeyedExtraDigit,
            count: share(n, 0.003, 2),
        },
        Want {
            problem: Problem::MisKeyedDigit,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::TransposedDigits,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::DialMisread,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::ReverseFlow,
            count: share(n, 0.003, 2),
        },
        Want {
            problem: Problem::InvalidReading,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::DuplicateDifferent,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::DuplicateSame,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::OutOfWindow,
            count: share(n, 0.005, 2),
        },
        Want {
            problem: Problem::Skipped,
            count: share(n, 0.006, 2),
        },
        Want {
            problem: Problem::Missing,
            count: share(n, 0.012, 2),
        },
    ];
    // Planted values: (field value or raw text, expectation, detail).
    let mut values: HashMap<usize, (String, Expect, String)> = HashMap::new();
    let mut pool = clean.clone();
    for want in &wants {
        let mut got = 0;
        // Half of the doubled keypresses go on registers whose reading already uses every dial, so
        // the extra digit overflows them (invalid_reading); the rest still fit (a high read).
        let strict_first = want.problem == Problem::MisKeyedExtraDigit;
        for strict in [strict_first, false] {
            let goal = if strict { want.count / 2 } else { want.count };
            let mut k = 0;
            while got < goal && k < pool.len() {
                let i = pool[k];
                let full_dials = cur(i)
                    .is_some_and(|c| c.reading.to_string().len() == usize::from(c.register.dials));
                let candidate = cur(i).filter(|_| !strict || full_dials);
                match candidate.and_then(|c| {
                    plant_value(want.problem, c, keyed(i), e_hcf(i), ctx.window_from, rng)
                }) {
                    Some(v) => {
                        values.insert(i, v);
                        plant.insert(i, want.problem);
                        pool.swap_remove(k);
                        got += 1;
                    }
                    None => k += 1,
                }
            }
        }
    }
    // Swapped meters: neighbours on the same route, both keyed.
    let swap_pairs = share(n, 0.002, 1);
    let in_pool: HashSet<usize> = pool.iter().copied().collect();
    // Every eligible neighbour pair, in random order, so the swaps spread over the district.
    let mut candidates: Vec<usize> = (0..n.saturating_sub(1))
        .filter(|&i| {
            let j = i + 1;
            in_pool.contains(&i)
                && in_pool.contains(&j)
                && keyed(i)
                && keyed(j)
                && plans[i].route == plans[j].route
                && plans[i].half == plans[j].half
        })
        .collect();
    rng.shuffle(&mut candidates);
    let mut swapped = 0;
    for i in candidates {
        let j = i + 1;
        if swapped >= swap_pairs || plant.contains_key(&i) || plant.contains_key(&j) {
            continue;
        }
        let (Some(a), Some(b)) = (cur(i), cur(j)) else {
            continue;
        };
        let ea = classify(&a.register, a.prev_reading, b.reading, a.expected);
        let eb = classify(&b.register, b.prev_reading, a.reading, b.expected);
        if let (Some(ea), Some(eb)) = (ea, eb) {
            values.insert(
                i,
                (
                    b.reading.to_string(),
                    ea,
                    format!("keyed {}'s reading {}", meters[b.meter].id, b.reading),
                ),
            );
            values.insert(
                j,
                (
                    a.reading.to_string(),
                    eb,
                    format!("keyed {}'s reading {}", meters[a.meter].id, a.reading),
                ),
            );
            plant.insert(i, Problem::SwappedMeter);
            plant.insert(j, Problem::SwappedMeter);
            swapped += 1;
        }
    }
    // Inactive accounts: illegal use on some, none on the rest.
    let mut inactive: Vec<usize> = (0..n)
        .filter(|&i| plans[i].status == AccountStatus::Inactive && currents[i].is_some())
        .collect();
    rng.shuffle(&mut inactive);
    let illegal = share(n, 0.004, 2).min(inactive.len());
    for &i in &inactive[..illegal] {
        plant.insert(i, Problem::UsageOnInactive);
    }

    let mut reads: Vec<Pending> = Vec::with_capacity(n);
    for i in 0..n {
        let Some(c) = cur(i) else { continue };
        let plan = &plans[i];
        let account = &accounts[i];
        let meter_id = meters[c.meter].id.clone();
        let (reader, device) = readers.of(plan.route);
        let mut at = read_time(c.on, plan.slot, rng);
        let mut codes: Vec<String> = plan.hazard.map(|h| vec![h.to_string()]).unwrap_or_default();
        let mut note = None;
        let mut read_type = ReadType::Regular;
        let mut skip_code = None;
        let mut method = plan.method;
        let mut value = c.reading;
        let mut raw: Option<String> = None;
        let mut record = |problem: Problem, expect: Expect, detail: String| {
            truth.push(Planted {
                account_id: account.id.clone(),
                meter_id: meter_id.clone(),
                problem,
                expect,
                detail,
                intended: None,
            });
        };
        match plant.get(&i).copied() {
            Some(Problem::Missing) => {
                record(
                    Problem::Missing,
                    Expect::exception(FlagKind::Missing),
                    "no read came back".into(),
                );
                continue;
            }
            Some(Problem::UsageOnInactive) => {
                let units = (rng.uniform(3.0, 15.0) * units_per_hcf(&c.register))
                    .round()
                    .max(2.0) as u64;
                value = c.register.advance(c.prev_reading, units);
                record(
                    Problem::UsageOnInactive,
                    Expect::exception_or(FlagKind::InactiveUsage, &[FlagKind::High]),
                    format!(
                        "inactive account used {units} units (previous {})",
                        c.prev_reading
                    ),
                );
            }
            Some(Problem::Skipped) => {
                let code = *rng.choice(&["LG", "NA", "DG", "CP", "MC"]);
                read_type = ReadType::Skipped;
                skip_code = Some(code.to_string());
                raw = Some(String::new());
                method = ReadMethod::Keyed;
                record(
                    Problem::Skipped,
                    Expect::exception(FlagKind::Missing),
                    format!("skipped with {code}"),
                );
            }
            Some(Problem::OutOfWindow) => {
                // Read a few days before the window opened (early, or late for the last cycle) and
                // docked with this cycle's reads. Never after it closes: that is still to come.
                let d = prev_weekday(ctx.window_from - Duration::days(rng.range(0, 2) as i64));
                at = d.and_time(at.time());
                let span = ctx.c(plan.class, c.on) - ctx.c(plan.class, c.prev_on);
                let f = if span > 0.0 {
                    (ctx.c(plan.class, d) - ctx.c(plan.class, c.prev_on)) / span
                } else {
                    1.0
                };
                value = c.reading_at_volume(c.v_prev + (c.v_now - c.v_prev) * f);
                record(
                    Problem::OutOfWindow,
                    Expect::exception(FlagKind::OutOfWindow),
                    format!("read on {d}, window {}..{}", ctx.window_from, ctx.window_to),
                );
            }
            Some(Problem::DuplicateSame) | Some(Problem::DuplicateDifferent) => {
                let same = plant.get(&i) == Some(&Problem::DuplicateSame);
                let first = if same {
                    c.reading
                } else {
                    c.reading - rng.range(1, (c.use_units / 3).max(1))
                };
                let later = at + Duration::seconds(rng.range(90, 1_500) as i64);
                reads.push(Pending {
                    route: plan.route,
                    read: FieldRead {
                        meter_id: meter_id.clone(),
                        read_at: at,
                        raw_reading: format_reading(first, &c.register, method),
                        read_type: ReadType::Regular,
                        method,
                        reader: reader.to_string(),
                        codes: codes.clone(),
                        skip_code: None,
                        note: None,
                        device: Some(demo_device(device.clone())),
                    },
                });
                at = later;
                if same {
                    record(
                        Problem::DuplicateSame,
                        Expect::NotFlagged,
                        format!("{} sent twice", c.reading),
                    );
                } else {
                    note = Some("re-read".to_string());
                    record(
                        Problem::DuplicateDifferent,
                        Expect::exception(FlagKind::Duplicate),
                        format!("read {first} then {}", c.reading),
                    );
                }
            }
            Some(p) => {
                if let Some((text, expect, detail)) = values.remove(&i) {
                    raw = Some(text);
                    match p {
                        Problem::ConfirmedLeak => {
                            read_type = ReadType::HighConfirmed;
                            codes.push("LK".into());
                        }
                        Problem::Leak if rng.chance(0.3) => codes.push("LK".into()),
                        Problem::StuckMeter => {
                            if rng.chance(0.4) {
                                read_type = ReadType::LowConfirmed;
                            }
                            if rng.chance(0.3) {
                                codes.push("ST".into());
                            }
                        }
                        Problem::Tampering if rng.chance(0.5) => codes.push("TR".into()),
                        Problem::ReverseFlow if rng.chance(0.5) => codes.push("RR".into()),
                        _ => {}
                    }
                    if matches!(
                        p,
                        Problem::MisKeyedDigit
                            | Problem::MisKeyedExtraDigit
                            | Problem::TransposedDigits
                            | Problem::DialMisread
                            | Problem::SwappedMeter
                            | Problem::InvalidReading
                    ) {
                        method = ReadMethod::Keyed;
                    }
                    record(p, expect, detail);
                    if matches!(
                        p,
                        Problem::MisKeyedDigit
                            | Problem::MisKeyedExtraDigit
                            | Problem::TransposedDigits
                            | Problem::DialMisread
                    ) {
                        if let Some(t) = truth.last_mut() {
                            t.intended = Some(c.reading);
                        }
                    }
                }
            }
            None => {
                // Everyday notes on normal reads.
                let x = rng.unit();
                if x < 0.015 {
                    codes.push("BX".into());
                } else if x < 0.019 {
                    codes.push("MC".into());
                } else if x < 0.021 {
                    codes.push("BL".into());
                } else if x < 0.023 {
                    codes.push("FL".into());
                } else if x < 0.0245 {
                    // Wet ground near the box, use normal: a follow-up, not a high read.
                    codes.push("LK".into());
                } else if x < 0.030 {
                    codes.push("NT".into());
                    note = Some(
                        (*rng.choice(&[
                            "new gate code",
                            "box behind hedge",
                            "car parked over box usually",
                            "call before visit",
                        ]))
                        .to_string(),
                    );
                }
            }
        }
        let raw_reading = raw.unwrap_or_else(|| format_reading(value, &c.register, method));
        reads.push(Pending {
            route: plan.route,
            read: FieldRead {
                meter_id,
                read_at: at,
                raw_reading,
                read_type,
                method,
                reader: reader.to_string(),
                codes,
                skip_code,
                note,
                device: Some(demo_device(device)),
            },
        });
    }

    // Reads of meters that are not on the route.
    let mut inventory: Vec<usize> = (0..meters.len())
        .filter(|&k| meters[k].status == MeterStatus::Inventory && meters[k].removed_on.is_some())
        .collect();
    rng.shuffle(&mut inventory);
    let by_id: HashMap<&str, usize> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.as_str(), i))
        .collect();
    // The account a pulled meter last served, and its last reading (its `final`).
    let mut last_account: HashMap<&str, (&str, u64)> = HashMap::new();
    for h in history {
        last_account.insert(h.meter_id.as_str(), (h.account_id.as_str(), h.reading));
    }
    for &k in inventory.iter().take(share(n, 0.002, 1)) {
        let Some((acct_id, reading)) = last_account.get(meters[k].id.as_str()) else {
            continue;
        };
        let Some(&i) = by_id.get(acct_id) else {
            continue;
        };
        let plan = &plans[i];
        let (reader, device) = readers.of(plan.route);
        let day = ctx.read_day(plan.route, 0, plan.half);
        reads.push(Pending {
            route: plan.route,
            read: FieldRead {
                meter_id: meters[k].id.clone(),
                read_at: read_time(day, plan.slot, rng) + Duration::seconds(20),
                raw_reading: format_reading(*reading, &meters[k].register, ReadMethod::Radio),
                read_type: ReadType::Regular,
                method: ReadMethod::Radio,
                reader: reader.to_string(),
                codes: Vec::new(),
                skip_code: None,
                note: None,
                device: Some(demo_device(device)),
            },
        });
        truth.push(Planted {
            account_id: acct_id.to_string(),
            meter_id: meters[k].id.clone(),
            problem: Problem::PulledMeterRead,
            expect: Expect::exception(FlagKind::MeterMismatch),
            detail: format!(
                "meter pulled {} is in inventory; its radio endpoint still answers",
                meters[k]
                    .removed_on
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            ),
            intended: None,
        });
    }
    // Found meters: keyed at a stop, unknown to the district.
    let mut found = 0;
    let target = share(n, 0.002, 1);
    let mut tries = 0;
    while found < target && tries < 20 * target && !accounts.is_empty() {
        tries += 1;
        let i = rng.index(n);
        if plans[i].status != AccountStatus::Active || plant.contains_key(&i) {
            continue;
        }
        let Some(c) = cur(i) else { continue };
        let reg = Register {
            dials: 5,
            multiplier: 1,
            unit: Unit::Hcf,
        };
        let id = ids.next(&reg, rng);
        let plan = &plans[i];
        let (reader, device) = readers.of(plan.route);
        reads.push(Pending {
            route: plan.route,
            read: FieldRead {
                meter_id: id.clone(),
                read_at: read_time(c.on, plan.slot, rng) + Duration::seconds(45),
                raw_reading: rng.range(10, 3_000).to_string(),
                read_type: ReadType::Regular,
                method: ReadMethod::Keyed,
                reader: reader.to_string(),
                codes: vec!["NT".to_string()],
                skip_code: None,
                note: Some("meter found, not on route".to_string()),
                device: Some(demo_device(device)),
            },
        });
        truth.push(Planted {
            account_id: accounts[i].id.clone(),
            meter_id: id,
            problem: Problem::UnknownMeter,
            expect: Expect::exception(FlagKind::MeterMismatch),
            detail: format!("found next to {}'s meter", accounts[i].id),
            intended: None,
        });
        found += 1;
    }
    reads
}

/// Planted value for a read-level problem on a clean account: (raw reading, expectation, detail).
fn plant_value(
    problem: Problem,
    c: &Current,
    keyed: bool,
    e_hcf: f64,
    window_from: NaiveDate,
    rng: &mut Rng,
) -> Option<(String, Expect, String)> {
    let reg = &c.register;
    let prev = c.prev_reading;
    let e = c.expected;
    let check = |value: u64| classify(reg, prev, value, e);
    match problem {
        Problem::Leak | Problem::ConfirmedLeak => {
            if e_hcf < 4.0 {
                return None;
            }
            let factor = rng.uniform(3.2, 10.0);
            let units = (e * factor).round() as u64;
            let value = reg.advance(prev, units);
            let expect = check(value).filter(|x| *x == Expect::exception(FlagKind::High))?;
            Some((
                value.to_string(),
                expect,
                format!("use {units} units, {factor:.1}× the expected {e:.0}"),
            ))
        }
        Problem::StuckMeter => {
            if e_hcf < 5.0 {
                return None;
            }
            let expect = check(prev)?;
            Some((
                prev.to_string(),
                expect,
                format!("register stuck at {prev}, expected {e:.0} units of use"),
            ))
        }
        Problem::Tampering => {
            if e_hcf < 12.0 {
                return None;
            }
            let frac = rng.uniform(0.1, 0.3);
            let units = (e * frac).round() as u64;
            let value = reg.advance(prev, units);
            let expect = check(value)?;
            Some((
                value.to_string(),
                expect,
                format!(
                    "use {units} units, {:.0}% of the expected {e:.0}",
                    frac * 100.0
                ),
            ))
        }
        Problem::ReverseFlow => {
            let back = (e * rng.uniform(0.3, 1.0)).round().max(1.0) as u64;
            let value = prev.checked_sub(back)?;
            let expect = check(value).filter(|x| {
                matches!(
                    x,
                    Expect::Exception {
                        kind: FlagKind::Negative,
                        ..
                    }
                )
            })?;
            Some((
                value.to_string(),
                expect,
                format!("register ran back {back} units from {prev}"),
            ))
        }
        Problem::MisKeyedExtraDigit | Problem::MisKeyedDigit | Problem::TransposedDigits => {
            if !keyed {
                return None;
            }
            let digits: Vec<u8> = c.reading.to_string().bytes().collect();
            if digits.len() < 2 {
                return None;
            }
            for _ in 0..12 {
                let mut d = digits.clone();
                match problem {
                    Problem::MisKeyedExtraDigit => {
                        let j = rng.index(d.len());
                        d.insert(j, d[j]);
                    }
                    Problem::MisKeyedDigit => {
                        // A thumb on the key next to the meant one (phone-style keypad).
                        let j = rng.index(d.len());
                        let near = crate::vee::slips::keypad_neighbours(d[j] - b'0');
                        let x = b'0' + *rng.choice(near);
                        if j == 0 && x == b'0' {
                            continue;
                        }
                        d[j] = x;
                    }
                    _ => {
                        let j = rng.index(d.len() - 1);
                        if d[j] == d[j + 1] || (j == 0 && d[1] == b'0') {
                            continue;
                        }
                        d.swap(j, j + 1);
                    }
                }
                let text = String::from_utf8(d).ok()?;
                let value: u64 = text.parse().ok()?;
                if value == c.reading {
                    continue;
                }
                if let Some(mut expect) = check(value) {
                    if problem == Problem::MisKeyedExtraDigit {
                        if let Expect::Exception {
                            kind: FlagKind::High,
                            also,
                        } = &mut expect
                        {
                            also.push(FlagKind::InvalidReading);
                        }
                    }
                    return Some((text, expect, format!("keyed {value} for {}", c.reading)));
                }
            }
            None
        }
        Problem::DialMisread => {
            if !keyed {
                return None;
            }
            // One dial read one off: its pointer by a digit's edge (the dial below just past 0:
            // read one low; about to pass it: read one high), far enough to be called.
            let digits = c.reading.to_string().len() as u32;
            let mut options = Vec::new();
            for k in 1..digits {
                let place = 10u64.pow(k);
                let below = c.reading % place;
                let edge = place / 10 * 3;
                let slips = [
                    (below < edge)
                        .then(|| c.reading.checked_sub(place))
                        .flatten(),
                    (below >= place - edge)
                        .then(|| c.reading.checked_add(place))
                        .flatten(),
                ];
                for value in slips.into_iter().flatten() {
                    if value.to_string().len() == digits as usize {
                        if let Some(expect) = check(value) {
                            options.push((value, expect));
                        }
                    }
                }
            }
            if options.is_empty() {
                return None;
            }
            let (value, expect) = options.swap_remove(rng.index(options.len()));
            Some((
                value.to_string(),
                expect,
                format!("keyed {value} for {}: one dial off", c.reading),
            ))
        }
        Problem::InvalidReading => {
            if !keyed {
                return None;
            }
            let s = c.reading.to_string();
            let text = match rng.index(5) {
                0 if s.contains('0') => s.replacen('0', "O", 1),
                1 if s.len() > 3 => format!("{},{}", &s[..s.len() - 3], &s[s.len() - 3..]),
                2 => format!("{s}.5"),
                3 => String::new(),
                _ => format!("{}*", &s[..s.len().saturating_sub(1)]),
            };
            Some((
                text.clone(),
                Expect::exception(FlagKind::InvalidReading),
                format!("keyed `{text}` for {}", c.reading),
            ))
        }
        Problem::DuplicateDifferent => (c.use_units >= 3).then(|| {
            (
                String::new(),
                Expect::exception(FlagKind::Duplicate),
                String::new(),
            )
        }),
        // An out-of-window read is dated a few days before the window opened: well after the
        // previous read, so that its use is still a plausible share of the period's.
        Problem::OutOfWindow => ((window_from - c.prev_on).num_days() > 12)
            .then(|| (String::new(), Expect::NotFlagged, String::new())),
        Problem::DuplicateSame | Problem::Skipped | Problem::Missing => {
            Some((String::new(), Expect::NotFlagged, String::new()))
        }
        _ => None,
    }
}

/// Labels the traps that come from the data itself (rollovers, seasonal swings) and the structural
/// traps chosen in `plan_structure`, on meters that carry no planted problem.
fn label_traps(
    accounts: &[Account],
    plans: &[Plan],
    currents: &[Option<Current>],
    meters: &[Meter],
    truth: &mut Vec<Planted>,
) {
    let planted: HashSet<String> = truth.iter().map(|p| p.meter_id.clone()).collect();
    for (i, c) in currents.iter().enumerate() {
        let Some(c) = c else { continue };
        let meter_id = &meters[c.meter].id;
        if planted.contains(meter_id) {
            continue;
        }
        let plan = &plans[i];
        let (problem, detail) = if plan.status == AccountStatus::Inactive {
            (
                Problem::InactiveNoUse,
                format!("inactive, reading stays {}", c.reading),
            )
        } else if let Some(trap) = plan.trap {
            let detail = match trap {
                Problem::ThinHistory => format!(
                    "service started {}",
                    plan.start.map(|d| d.to_string()).unwrap_or_default()
                ),
                Problem::AfterEstimate => format!(
                    "last read estimated at {}, real use {} units since",
                    c.prev_reading, c.use_units
                ),
                Problem::ContinuingLeak
                | Problem::ModerateLeak
                | Problem::CommercialLeak
                | Problem::GallonMeterLeak
                | Problem::CommercialLow
                | Problem::Vacation
                | Problem::SmallUser
                | Problem::NewTenant
                | Problem::SecondHome
                | Problem::Trend => {
                    let factors: Vec<String> = plan
                        .use_factors
                        .iter()
                        .filter(|f| f.0 >= -1 || trap == Problem::Vacation)
                        .map(|(m, f)| format!("month {m} ×{f:.2}"))
                        .collect();
                    format!(
                        "use {} units, norm {:.1}; {}",
                        c.use_units,
                        c.expected,
                        factors.join(", ")
                    )
                }
                _ => format!(
                    "meter changed {}",
                    plan.change
                        .as_ref()
                        .map(|ch| ch.on.to_string())
                        .unwrap_or_default()
                ),
            };
            (trap, detail)
        } else if c.reading < c.prev_reading {
            (
                Problem::Rollover,
                format!(
                    "{} → {} on {} dials",
                    c.prev_reading, c.reading, c.register.dials
                ),
            )
        } else if let Some(r) = c.season_ratio.filter(|r| *r > 1.6 || *r < 0.625) {
            let p = if r > 1.0 {
                Problem::SeasonalRampUp
            } else {
                Problem::SeasonalDrop
            };
            (p, format!("class use {r:.2}× the last three periods"))
        } else {
            continue;
        };
        let expect = match problem {
            Problem::CommercialLow => Expect::exception_or(FlagKind::Low, &[FlagKind::Zero]),
            p if !p.is_trap() => Expect::exception(FlagKind::High),
            _ => Expect::NotFlagged,
        };
        truth.push(Planted {
            account_id: accounts[i].id.clone(),
            meter_id: meter_id.clone(),
            problem,
            expect,
            detail,
            intended: None,
        });
    }
}

/// Puts reads in the order handhelds return them (day by day, device by device) and numbers them per
/// device.
fn order_reads(mut reads: Vec<Pending>) -> Vec<FieldRead> {
    reads.sort_by(|a, b| {
        let da = a.read.device.as_ref().map(|d| d.device_id.as_str());
        let db = b.read.device.as_ref().map(|d| d.device_id.as_str());
        (a.read.read_at.date(), da, a.read.read_at, a.route).cmp(&(
            b.read.read_at.date(),
            db,
            b.read.read_at,
            b.route,
        ))
    });
    let mut seq: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::with_capacity(reads.len());
    for p in reads {
        let mut r = p.read;
        let content = demo_content(&r);
        if let Some(dev) = r.device.as_mut() {
            let next = seq.entry(dev.device_id.clone()).or_insert(10_000);
            *next += 1;
            dev.seq = *next;
            dev.content = content;
        }
        out.push(r);
    }
    out
}

/// The state id of the demo district's handhelds (their reads of this month are loaded directly).
const DEMO_STATE_ID: u64 = 0x0DE0_0DE0_0DE0_0DE0;

fn demo_device(device_id: String) -> DeviceRef {
    DeviceRef {
        device_id,
        state_id: DEMO_STATE_ID,
        seq: 0,
        content: [0; 32],
    }
}

/// A digest of a demo read's fields, standing for the digest of what a handheld would have sent.
fn demo_content(r: &FieldRead) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let text = format!(
        "{}|{}|{}|{}|{}|{}|{}",
        r.meter_id,
        r.read_at,
        r.raw_reading,
        r.read_type,
        r.method,
        r.reader,
        r.codes.join(";")
    );
    Sha256::digest(text.as_bytes()).into()
}

fn message_codes() -> Vec<MessageCode> {
    let c =
        |code: &str, category: &str, description: &str, follow: bool, retired: bool| MessageCode {
            code: code.to_string(),
            category: category.to_string(),
            description: description.to_string(),
            requires_follow_up: follow,
            retired,
        };
    vec![
        c(
            "LK",
            "trouble",
            "Leak seen at meter or service",
            true,
            false,
        ),
        c(
            "TR",
            "trouble",
            "Tampering suspected (bypass, broken seal)",
            true,
            false,
        ),
        c(
            "RR",
            "trouble",
            "Register reading reversed (running backwards)",
            true,
            false,
        ),
        c(
            "ST",
            "trouble",
            "Meter stopped, dials not moving",
            true,
            false,
        ),
        c("DM", "trouble", "Meter damaged", true, false),
        c("BL", "trouble", "Box lid broken or missing", true, false),
        c("BX", "trouble", "Box needs cleaning", false, false),
        c("FL", "trouble", "Box flooded", false, false),
        c(
            "MC",
            "skip",
            "Meter covered (dirt, plants, debris)",
            false,
            false,
        ),
        c("LG", "skip", "Locked gate", false, false),
        c("NA", "skip", "No access", false, false),
        c("CP", "skip", "Car parked over box", false, false),
        c("DG", "hazard", "Dog in yard", false, false),
        c("BE", "hazard", "Bees in box", false, false),
        c("NT", "note", "See note", false, false),
        c("VC", "note", "Premises appear vacant", false, false),
        c("CR", "note", "Customer requested call", false, false),
        c("99", "note", "Miscellaneous (old code)", false, true),
    ]
}
