//! Expected use for a period, season-aware, and the band around it.

use super::history::{rate_over_days, AccountHistory, Period};
use super::settings::{Tolerance, ValidationConfig};
use chrono::{Datelike, NaiveDate};
use std::fmt;

/// Where the expected use came from: it is printed in every high/low explanation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Basis {
    /// The account's daily use over the same dates in past years (the median over up to three
    /// years), times its growth since (the median of its recent periods' ratios to their own same
    /// dates in past years).
    SamePeriodLastYear { growth: f64, years: u8 },
    /// Daily use over the recent months (no usable history a year back).
    RecentAverage { periods: usize },
    /// Fewer than `min_periods` periods: the band is wide.
    ThinHistory { periods: usize },
}

impl Basis {
    /// Short stable form stored in `field_reads.expected_basis`.
    pub fn code(&self) -> &'static str {
        match self {
            Basis::SamePeriodLastYear { .. } => "same_period_last_year",
            Basis::RecentAverage { .. } => "recent_average",
            Basis::ThinHistory { .. } => "thin_history",
        }
    }
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Basis::SamePeriodLastYear { growth, years } => {
                if *years <= 1 {
                    f.write_str("same period last year")?;
                } else {
                    write!(f, "same period in the last {years} years")?;
                }
                if (growth - 1.0).abs() >= 0.005 {
                    write!(f, ", adjusted ×{growth:.2}")?;
                }
                Ok(())
            }
            Basis::RecentAverage { periods } => {
                write!(f, "average daily use of the last {periods} periods")
            }
            Basis::ThinHistory { periods } => write!(
                f,
                "only {periods} period{} of history, wide band",
                if *periods == 1 { "" } else { "s" }
            ),
        }
    }
}

/// Expected use over one period and the band of use that passes: in HCF as [`expect`] returns it, in a
/// meter's billing units after [`Expectation::scaled`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expectation {
    pub days: i64,
    pub expected: f64,
    /// Expected use if the season came early or late by up to `season_shift_days` (equals `expected`
    /// when the basis is not last year).
    pub season_low: f64,
    pub season_high: f64,
    /// Use outside `[low, high]` is flagged.
    pub low: f64,
    pub high: f64,
    pub basis: Basis,
    /// The relative half-width applied around the season range (max of the class percent, the
    /// account's own dispersion × `spread_factor`, and the thin-history floor).
    pub relative: f64,
    /// The account's dispersion (log scale) after shrinkage towards the prior.
    pub spread: f64,
    pub margin: f64,
    /// The account's highest use over these days at this time of year in past years (at its
    /// highest daily rate then), when it has at least two such seasons.
    pub own_max: Option<f64>,
    /// The high end is the account's own seasonal maximum plus a margin, tighter than the band.
    pub high_is_own_max: bool,
}

impl Expectation {
    /// The same expectation in another unit: `k` of it per HCF (1 / HCF per billing unit).
    pub fn scaled(self, k: f64) -> Expectation {
        Expectation {
            expected: self.expected * k,
            season_low: self.season_low * k,
            season_high: self.season_high * k,
            low: self.low * k,
            high: self.high * k,
            margin: self.margin * k,
            own_max: self.own_max.map(|m| m * k),
            ..self
        }
    }

    /// This expectation in `reg`'s billing units.
    pub fn for_register(self, reg: &crate::domain::Register) -> Expectation {
        self.scaled(1.0 / super::history::hcf_per_billing_unit(reg))
    }
}

const YEAR: i32 = 365;
/// Past years the seasonal anchor looks at.
const YEARS: i32 = 3;

/// The median of `v` (the mean of the middle two for an even count); `v` is reordered.
fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The account's daily use over day numbers `[from, to)` in past years: the median over the (up to
/// three) years whose history covers at least half of those dates, and how many years did. One
/// unusual year (a leak, a vacation) does not move it.
fn seasonal(periods: &[Period], from: i32, to: i32, w: f64) -> Option<(f64, u8)> {
    let mut rates = [0.0f64; YEARS as usize];
    let mut n = 0;
    for y in 1..=YEARS {
        if let Some((rate, cover)) = rate_over_days(periods, from - YEAR * y, to - YEAR * y, w) {
            if cover >= 0.5 {
                rates[n] = rate;
                n += 1;
            }
        }
    }
    (n > 0).then(|| (median(&mut rates[..n]), n as u8))
}

/// The account's growth: the median, over its actual periods of the last `recent_days`, of each
/// period's daily use against its own same dates in past years. A median, so that one period out of
/// line (a leak that began last period, a vacation) does not carry the expectation with it; every
/// recent period moving together (a new tenant, a growing family) does.
fn growth(
    periods: &[Period],
    ratios: &Ratios,
    from: i32,
    cfg: &ValidationConfig,
    tol: Tolerance,
) -> f64 {
    const MAX: usize = 6;
    let recent_from = from - i32::try_from(cfg.recent_days).unwrap_or(i32::MAX / 4);
    let mut found = [0.0f64; MAX];
    let mut n = 0;
    for j in (0..periods.len())
        .rev()
        .take_while(|&j| periods[j].end_day() > recent_from)
        .filter(|&j| !periods[j].estimated)
        .take(MAX)
    {
        if let Some(r) = ratios.of(periods, j, cfg, tol) {
            found[n] = r;
            n += 1;
        }
    }
    if n == 0 {
        return 1.0;
    }
    median(&mut found[..n]).clamp(cfg.growth_min, cfg.growth_max)
}

/// A period's daily use against its own same dates in past years (`None` without them): the same
/// whichever later periods follow it, so the dispersion backtest computes each once ([`Ratios`]).
fn period_ratio(
    periods: &[Period],
    j: usize,
    cfg: &ValidationConfig,
    tol: Tolerance,
) -> Option<f64> {
    let p = &periods[j];
    let eps = tol.absolute / 30.0;
    seasonal(periods, p.start_day(), p.end_day(), cfg.estimated_weight)
        .map(|(then, _)| (p.daily() + eps) / (then + eps))
}

/// [`period_ratio`] of the periods from `from` on, computed once per expectation.
struct Ratios {
    from: usize,
    ratios: Vec<Option<f64>>,
}

impl Ratios {
    /// The ratios of `periods[from..]`.
    fn new(periods: &[Period], from: usize, cfg: &ValidationConfig, tol: Tolerance) -> Ratios {
        let from = from.min(periods.len());
        Ratios {
            from,
            ratios: (from..periods.len())
                .map(|j| period_ratio(periods, j, cfg, tol))
                .collect(),
        }
    }

    /// Period `j`'s ratio: from the cache, else computed.
    fn of(
        &self,
        periods: &[Period],
        j: usize,
        cfg: &ValidationConfig,
        tol: Tolerance,
    ) -> Option<f64> {
        match j.checked_sub(self.from).and_then(|k| self.ratios.get(k)) {
            Some(r) => *r,
            None => period_ratio(periods, j, cfg, tol),
        }
    }
}

/// Daily expected use over `[from, to)` from `periods` (which must all end by `from`), with the season
/// range: `(point, low, high, basis)`.
fn daily_point(
    periods: &[Period],
    ratios: &Ratios,
    from: NaiveDate,
    to: NaiveDate,
    cfg: &ValidationConfig,
    tol: Tolerance,
    with_season_range: bool,
) -> Option<(f64, f64, f64, Basis)> {
    // Day numbers: this runs for every past period of every account (the dispersion backtest).
    let (from, to) = (from.num_days_from_ce(), to.num_days_from_ce());
    let w = cfg.estimated_weight;
    let n = periods.len();
    if let Some((anchor, years)) = seasonal(periods, from, to, w) {
        let growth = growth(periods, ratios, from, cfg, tol);
        let (mut lo, mut hi) = (anchor, anchor);
        if with_season_range {
            let shift = i32::try_from(cfg.season_shift_days).unwrap_or(0);
            for s in [-shift, shift] {
                if let Some((r, _)) = seasonal(periods, from + s, to + s, w) {
                    lo = lo.min(r);
                    hi = hi.max(r);
                }
            }
        }
        return Some((
            anchor * growth,
            lo * growth,
            hi * growth,
            Basis::SamePeriodLastYear { growth, years },
        ));
    }
    let recent_from = from - i32::try_from(cfg.recent_days).unwrap_or(i32::MAX / 4);
    let start = periods
        .partition_point(|p| p.end_day() <= recent_from)
        .min(n.saturating_sub(1));
    let recent = &periods[start..];
    let (mean, _) = rate_over_days(
        recent,
        recent.first()?.start_day(),
        from.max(recent.last()?.end_day()),
        w,
    )?;
    // Three or more actual periods: their median daily use, so one period out of line does not
    // carry the expectation.
    let mut rates = [0.0f64; 8];
    let mut k = 0;
    for p in recent
        .iter()
        .rev()
        .filter(|p| !p.estimated)
        .take(rates.len())
    {
        rates[k] = p.daily();
        k += 1;
    }
    let rate = if k >= 3 {
        median(&mut rates[..k])
    } else {
        mean
    };
    let basis = if n < cfg.min_periods {
        Basis::ThinHistory { periods: n }
    } else {
        Basis::RecentAverage {
            periods: recent.len(),
        }
    };
    Some((rate, rate, rate, basis))
}

/// The account's highest daily use at this time of year: the largest daily use of an actual period
/// overlapping `[from − 30 days, to + 30 days)` in each of the past years, when at least two years
/// have one. `None` otherwise (not enough seasons to know the account's own range).
fn seasonal_max(periods: &[Period], from: i32, to: i32) -> Option<f64> {
    const AROUND: i32 = 30;
    let mut max = 0.0f64;
    let mut years = 0;
    for y in 1..=YEARS {
        let (a, b) = (from - YEAR * y - AROUND, to - YEAR * y + AROUND);
        let first = periods.partition_point(|p| p.end_day() <= a);
        let mut seen = false;
        for p in periods[first..]
            .iter()
            .take_while(|p| p.start_day() < b)
            .filter(|p| !p.estimated && p.days() > 0)
        {
            max = max.max(p.daily());
            seen = true;
        }
        years += usize::from(seen);
    }
    (years >= 2).then_some(max)
}

/// The account's dispersion: how far its actual use strayed (log scale) from what this model would have
/// predicted for each of its last `MAX_BACKTEST` periods, as a robust standard deviation (1.4826 × the
/// median absolute deviation from the prediction), shrunk towards `prior_spread`. Only predictions on
/// the same kind of basis count (`last_year`): a recent average misses every seasonal swing, and
/// those misses say nothing about how well last year predicts this account.
fn spread(
    periods: &[Period],
    ratios: &Ratios,
    cfg: &ValidationConfig,
    tol: Tolerance,
    last_year: bool,
) -> f64 {
    const MAX_BACKTEST: usize = 12;
    let mut residuals = [0.0f64; MAX_BACKTEST];
    let mut n = 0;
    let start = periods.len().saturating_sub(MAX_BACKTEST).max(1);
    for i in start..periods.len() {
        let p = &periods[i];
        if p.estimated {
            continue;
        }
        if let Some((point, _, _, basis)) =
            daily_point(&periods[..i], ratios, p.from, p.to, cfg, tol, false)
        {
            if matches!(basis, Basis::SamePeriodLastYear { .. }) != last_year {
                continue;
            }
            let days = p.days().max(1) as f64;
            let eps = tol.absolute * days / 30.0;
            residuals[n] = ((p.usage + eps) / (point * days + eps)).ln().abs();
            n += 1;
        }
    }
    let residuals = &mut residuals[..n];
    let own = if residuals.is_empty() {
        cfg.prior_spread
    } else {
        residuals.sort_by(f64::total_cmp);
        1.4826 * residuals[residuals.len() / 2]
    };
    let n = n as f64;
    let w = cfg.prior_weight;
    ((n * own * own + w * cfg.prior_spread * cfg.prior_spread) / (n + w).max(1e-9)).sqrt()
}

/// Expected use over `[from, to)` (from = the period start, to = the read date) for an account of
/// `rate_class`, or `None` when the account has no usable period at all (nothing to compare with).
pub fn expect(
    history: &AccountHistory,
    rate_class: &str,
    from: NaiveDate,
    to: NaiveDate,
    cfg: &ValidationConfig,
) -> Option<Expectation> {
    expect_between(history, rate_class, from, to, to, cfg).map(|(e, _)| e)
}

/// Expectations for a read on `early` and on `late` (the first and last day of a read window), sharing
/// one computation of the account's dispersion: a route file's low limit comes from the first, its high
/// limit from the second.
pub fn expect_between(
    history: &AccountHistory,
    rate_class: &str,
    from: NaiveDate,
    early: NaiveDate,
    late: NaiveDate,
    cfg: &ValidationConfig,
) -> Option<(Expectation, Expectation)> {
    let tol = cfg.tolerance_for(rate_class);
    let periods = &history.periods[..history.periods.partition_point(|p| p.to <= from)];
    // The backtest looks at the last 12 periods, each judged by the growth of up to 6 before it.
    let ratios = Ratios::new(periods, periods.len().saturating_sub(18), cfg, tol);
    let last_year = daily_point(periods, &ratios, from, late, cfg, tol, false)
        .is_some_and(|(.., b)| matches!(b, Basis::SamePeriodLastYear { .. }));
    let spread = spread(periods, &ratios, cfg, tol, last_year);
    let max_daily = seasonal_max(periods, from.num_days_from_ce(), late.num_days_from_ce());
    let one = |to: NaiveDate| -> Option<Expectation> {
        let days = (to - from).num_days();
        if days <= 0 {
            return None;
        }
        let (point, lo, hi, basis) = daily_point(periods, &ratios, from, to, cfg, tol, true)?;
        let thin = matches!(basis, Basis::ThinHistory { .. });
        let mut relative = tol.percent.max((cfg.spread_factor * spread).exp() - 1.0);
        let mut margin = tol.absolute * days as f64 / 30.0;
        if thin {
            relative = relative.max(cfg.thin_percent);
            margin *= 2.0;
        }
        let d = days as f64;
        let (expected, season_low, season_high) = (point * d, lo * d, hi * d);
        let band_high = season_high * (1.0 + relative) + margin;
        let own_max = max_daily.filter(|_| !thin).map(|m| m * d);
        // Above the account's own highest use for the season by a margin is high, whatever the
        // band (a trend, a wide dispersion) says; never below `own_max_floor` × the season's top.
        let own_high = own_max.map(|m| {
            (m * (1.0 + cfg.own_max_margin) + margin).max(season_high * cfg.own_max_floor)
        });
        let (high, high_is_own_max) = match own_high {
            Some(h) if h < band_high => (h, true),
            _ => (band_high, false),
        };
        Some(Expectation {
            days,
            expected,
            season_low,
            season_high,
            low: ((season_low / (1.0 + relative)).min(season_low * tol.low_ceiling) - margin)
                .max(0.0),
            high,
            basis,
            relative,
            spread,
            margin,
            own_max,
            high_is_own_max,
        })
    };
    let e = one(early)?;
    let l = if late == early { e } else { one(late)? };
    Some((e, l))
}
