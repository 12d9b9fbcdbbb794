//! Validation settings (`[validation]` in the settings file): the tolerance per rate class and the
//! knobs of the expected-use model. Owned here, beside what they tune; `config` only assembles them.

use serde::Deserialize;
use std::collections::BTreeMap;

/// How far a read may stray from expected use before it is flagged `high` or `low`, and the knobs of
/// the expected-use model (see `vee` for how each one is used).
///
/// A file that sets only `[validation.tolerance.residential] percent = 0.3` changes only that number:
/// every table merges over the defaults, field by field.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(try_from = "RawValidation")]
pub struct ValidationConfig {
    /// Tolerance per rate class (keys lower case); classes not listed use `default`.
    pub tolerance: BTreeMap<String, Tolerance>,
    pub default: Tolerance,
    /// Widen the band by `spread_factor` × the account's own dispersion (log scale) of actual use
    /// against what this model would have predicted for its past periods.
    pub spread_factor: f64,
    /// Dispersion assumed before an account has shown its own (log scale); an account's own
    /// dispersion is shrunk towards it, weighted as `prior_weight` periods.
    pub prior_spread: f64,
    pub prior_weight: f64,
    /// Fewer usable periods than this is thin history (a new account): the band is at least
    /// ±`thin_percent` and the absolute margin doubles.
    pub min_periods: usize,
    pub thin_percent: f64,
    /// The growth ratio (this year's recent use over last year's, same months) is clamped to this range.
    pub growth_min: f64,
    pub growth_max: f64,
    /// Days of history before the period that count as "recent".
    pub recent_days: i64,
    /// The irrigation season may start or end this many days earlier or later than last year.
    pub season_shift_days: i64,
    /// Weight of a period that starts or ends on an estimated reading (actual periods weigh 1).
    pub estimated_weight: f64,
    /// A reading below the previous one is a rollover only if the wrapped use is at most this many times
    /// the high limit of use.
    pub rollover_slack: f64,
    /// `zero` fires only on accounts that normally use water: expected use (even early or late in the
    /// season) of at least this many HCF per 30 days, and at most `zero_periods_allowed` periods without
    /// use among the last 12 (counting only periods that had use a year earlier).
    pub zero_min_use: f64,
    pub zero_periods_allowed: usize,
    /// Use above the account's own highest use at this time of year (in up to three past years) by
    /// this share, plus the class margin, is high even inside the band; the high end never drops
    /// below `own_max_floor` × the season's expected use.
    pub own_max_margin: f64,
    pub own_max_floor: f64,
    /// A reader's signal (a high-confirmed read, a code that asks for follow-up such as a leak seen)
    /// lowers the high end to `signal_ratio` × expected use (never above the band's): the reader's
    /// evidence and a moderate excess together reach a clerk.
    pub signal_ratio: f64,
    /// Mis-key suggestions are tried only for a keyed reading whose use is at least `slip_far` ×
    /// expected, or backwards by that much, or too long for the dials: a moderate excess, and low
    /// but positive use, are more often what the meter says.
    pub slip_far: f64,
    /// Where the keyed use could be real (from `slip_far` to `slip_sure` × expected: a leak makes
    /// such use), a slip is named only when its use lies within the band shrunk to this share of
    /// its width around the expected use.
    pub slip_band: f64,
    /// Keyed use of this many times expected and more is use no meter makes.
    pub slip_sure: f64,
    /// Where the keyed use is one no meter makes (`slip_sure` × expected and more, backwards, too
    /// long for the dials), a slip is named within this share of the band.
    pub slip_band_sure: f64,
}

/// One rate class's tolerance.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    /// Relative band around expected use, e.g. 0.20 for ±20% (Oracle MDM's residential example).
    pub percent: f64,
    /// Absolute margin in HCF per 30 days added to the band (converted for meters in other units), so
    /// small users are not flagged for 2 units.
    pub absolute: f64,
    /// The low end never rises above this share of the season's low expected use: a household's
    /// month at 60% of its usual (a week away, guests gone) is ordinary, where a business or a
    /// building steady for years at 60% is news (1.0: the band alone decides).
    pub low_ceiling: f64,
}

/// The file's view: every field optional, merged over [`ValidationConfig::default`].
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawValidation {
    tolerance: BTreeMap<String, RawTolerance>,
    default: RawTolerance,
    spread_factor: Option<f64>,
    prior_spread: Option<f64>,
    prior_weight: Option<f64>,
    min_periods: Option<usize>,
    thin_percent: Option<f64>,
    growth_min: Option<f64>,
    growth_max: Option<f64>,
    recent_days: Option<i64>,
    season_shift_days: Option<i64>,
    estimated_weight: Option<f64>,
    rollover_slack: Option<f64>,
    zero_min_use: Option<f64>,
    zero_periods_allowed: Option<usize>,
    own_max_margin: Option<f64>,
    own_max_floor: Option<f64>,
    signal_ratio: Option<f64>,
    slip_band: Option<f64>,
    slip_far: Option<f64>,
    slip_sure: Option<f64>,
    slip_band_sure: Option<f64>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTolerance {
    percent: Option<f64>,
    absolute: Option<f64>,
    low_ceiling: Option<f64>,
}

impl RawTolerance {
    fn over(self, base: Tolerance) -> Tolerance {
        Tolerance {
            percent: self.percent.unwrap_or(base.percent),
            absolute: self.absolute.unwrap_or(base.absolute),
            low_ceiling: self.low_ceiling.unwrap_or(base.low_ceiling),
        }
    }
}

impl TryFrom<RawValidation> for ValidationConfig {
    type Error = String;

    fn try_from(raw: RawValidation) -> Result<Self, String> {
        let d = ValidationConfig::default();
        let default = raw.default.over(d.default);
        let mut tolerance = d.tolerance;
        for (class, t) in raw.tolerance {
            let class = class.to_ascii_lowercase();
            // A class new to the file starts from the (possibly overridden) default tolerance.
            let base = tolerance.get(&class).copied().unwrap_or(default);
            tolerance.insert(class, t.over(base));
        }
        let c = ValidationConfig {
            tolerance,
            default,
            spread_factor: raw.spread_factor.unwrap_or(d.spread_factor),
            prior_spread: raw.prior_spread.unwrap_or(d.prior_spread),
            prior_weight: raw.prior_weight.unwrap_or(d.prior_weight),
            min_periods: raw.min_periods.unwrap_or(d.min_periods),
            thin_percent: raw.thin_percent.unwrap_or(d.thin_percent),
            growth_min: raw.growth_min.unwrap_or(d.growth_min),
            growth_max: raw.growth_max.unwrap_or(d.growth_max),
            recent_days: raw.recent_days.unwrap_or(d.recent_days),
            season_shift_days: raw.season_shift_days.unwrap_or(d.season_shift_days),
            estimated_weight: raw.estimated_weight.unwrap_or(d.estimated_weight),
            rollover_slack: raw.rollover_slack.unwrap_or(d.rollover_slack),
            zero_min_use: raw.zero_min_use.unwrap_or(d.zero_min_use),
            zero_periods_allowed: raw.zero_periods_allowed.unwrap_or(d.zero_periods_allowed),
            own_max_margin: raw.own_max_margin.unwrap_or(d.own_max_margin),
            own_max_floor: raw.own_max_floor.unwrap_or(d.own_max_floor),
            signal_ratio: raw.signal_ratio.unwrap_or(d.signal_ratio),
            slip_band: raw.slip_band.unwrap_or(d.slip_band),
            slip_far: raw.slip_far.unwrap_or(d.slip_far),
            slip_sure: raw.slip_sure.unwrap_or(d.slip_sure),
            slip_band_sure: raw.slip_band_sure.unwrap_or(d.slip_band_sure),
        };
        c.check()?;
        Ok(c)
    }
}

impl Default for ValidationConfig {
    fn default() -> Self {
        let t = |percent, absolute, low_ceiling| Tolerance {
            percent,
            absolute,
            low_ceiling,
        };
        let tolerance = [
            ("residential", t(0.20, 1.5, 0.6)),
            ("multi_family", t(0.15, 2.5, 1.0)),
            ("commercial", t(0.10, 2.5, 1.0)),
            ("industrial", t(0.05, 5.0, 1.0)),
            ("irrigation", t(0.25, 2.5, 0.6)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        ValidationConfig {
            tolerance,
            default: t(0.20, 1.5, 0.6),
            spread_factor: 2.4,
            prior_spread: 0.15,
            prior_weight: 3.0,
            min_periods: 3,
            thin_percent: 1.0,
            growth_min: 0.5,
            growth_max: 2.0,
            recent_days: 90,
            season_shift_days: 14,
            estimated_weight: 0.3,
            rollover_slack: 3.0,
            zero_min_use: 2.0,
            zero_periods_allowed: 1,
            own_max_margin: 0.10,
            own_max_floor: 1.5,
            signal_ratio: 1.3,
            slip_band: 0.45,
            slip_far: 3.0,
            slip_sure: 10.0,
            slip_band_sure: 1.0,
        }
    }
}

impl ValidationConfig {
    pub fn tolerance_for(&self, rate_class: &str) -> Tolerance {
        // Classes are stored lower case, as the CIS usually sends them: no allocation then.
        match self.tolerance.get(rate_class) {
            Some(t) => *t,
            None => self
                .tolerance
                .get(&rate_class.to_ascii_lowercase())
                .copied()
                .unwrap_or(self.default),
        }
    }

    /// Refuses settings the model cannot work with (a negative band, an empty growth range...).
    fn check(&self) -> Result<(), String> {
        let tolerances = self
            .tolerance
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain([("default", &self.default)]);
        for (class, t) in tolerances {
            if !(t.percent >= 0.0 && t.absolute >= 0.0) {
                return Err(format!(
                    "validation.tolerance.{class}: percent and absolute must be ≥ 0"
                ));
            }
            if !(t.low_ceiling > 0.0 && t.low_ceiling <= 1.0) {
                return Err(format!(
                    "validation.tolerance.{class}: low_ceiling must be > 0 and ≤ 1"
                ));
            }
        }
        let positive = [
            ("spread_factor", self.spread_factor),
            ("prior_spread", self.prior_spread),
            ("growth_min", self.growth_min),
            ("rollover_slack", self.rollover_slack),
            ("own_max_floor", self.own_max_floor),
            ("signal_ratio", self.signal_ratio),
            ("slip_band", self.slip_band),
            ("slip_far", self.slip_far),
            ("slip_band_sure", self.slip_band_sure),
        ];
        for (name, v) in positive {
            if !(v > 0.0 && v.is_finite()) {
                return Err(format!("validation.{name} must be > 0"));
            }
        }
        if !(self.prior_weight >= 0.0
            && self.thin_percent >= 0.0
            && self.zero_min_use >= 0.0
            && self.own_max_margin >= 0.0)
        {
            return Err(
                "validation.prior_weight, thin_percent, zero_min_use and own_max_margin must be ≥ 0"
                    .into(),
            );
        }
        if self.slip_sure.is_nan() || self.slip_sure < self.slip_far {
            return Err("validation.slip_sure must be ≥ slip_far".into());
        }
        if self.growth_max.is_nan() || self.growth_max < self.growth_min {
            return Err("validation.growth_max must be ≥ growth_min".into());
        }
        if !(0.0..=1.0).contains(&self.estimated_weight) {
            return Err("validation.estimated_weight must be between 0 and 1".into());
        }
        if self.recent_days < 28 || self.season_shift_days < 0 || self.season_shift_days > 90 {
            return Err(
                "validation.recent_days must be ≥ 28 and season_shift_days between 0 and 90".into(),
            );
        }
        Ok(())
    }
}
