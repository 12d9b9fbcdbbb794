//! Validation, estimation and editing (VEE): expected use, hi/lo limits and the read rules. Pure: no
//! SQLite, no IO, no clock (time is passed in).
//!
//! # Expected use
//! An account's history (which follows it across meter changes) becomes billing periods
//! ([`AccountHistory`]): use between consecutive closing reads, the old meter's `final − previous`
//! plus the new meter's `current − initial` when a period spans a change. Use is kept in HCF
//! internally (a new meter may count 10-gallon units) and shown in the meter's own unit. Periods
//! touching an estimated reading weigh `estimated_weight`; when the previous reading itself was an
//! estimate, use is judged from the meter's last actual reading (an estimate may have been far off,
//! and the catch-up read is normal). For a new period `[start, read date)`:
//! - **same period in past years** when history covers at least half of it in at least one of the
//!   last three years: the *median* over those years of the daily use over the same dates
//!   (days-weighted, so reads need not be a month apart), × a growth ratio: the *median*, over the
//!   actual periods of the last `recent_days`, of each period's daily use against its own same dates
//!   in past years (clamped to `growth_min..growth_max`). Medians, so that one period out of line (a
//!   leak that began last period, a vacation, a leak last summer) does not move the expectation that
//!   judges this one, while every recent period moving together (a new tenant, a trend) does. The
//!   same is computed with the season shifted `season_shift_days` earlier and later: irrigation that
//!   starts three weeks early in spring, or stops early in autumn, stays inside the band;
//! - else the **recent** daily use × days (the median of the recent periods' daily use when there
//!   are three or more); with fewer than `min_periods` periods this is **thin history** and the band
//!   is at least ±`thin_percent` with a doubled margin.
//!
//! # Band and limits
//! `high = season_high × (1 + r) + margin`,
//! `low = min(season_low ÷ (1 + r), season_low × c) − margin`, where `margin` is the class's
//! absolute margin per 30 days, `c` the class's `low_ceiling` (0.6 for households: a quiet month
//! is ordinary; 1.0 for steady classes) and `r` is the largest of the class percent and
//! `exp(spread_factor × σ) − 1`, σ being the account's own dispersion: the median error (log scale,
//! ×1.4826) of this same model replayed over the account's last 12 periods (only replays on the same
//! kind of basis), shrunk towards `prior_spread`. An account whose use swings widely gets a wide band;
//! a steady one (commercial, institutional) a tight band. The top is also bounded by the account's
//! **own seasonal maximum**: its highest daily use in any actual period within a month of these
//! dates in past years (at least two years of them), × (1 + `own_max_margin`) + margin, never below
//! `own_max_floor` × the season's expected use: above what the account has ever used at this time
//! of year is high, whatever a trend or a wide dispersion says. Every band is explained with its
//! numbers ("used 48 hcf in 31 days; expected 12 hcf (same period in the last 3 years, adjusted
//! ×1.10); 4.0× expected; band 7–17 hcf").
//! Limits are `previous reading + band`, back through the multiplier to register readings, wrapped at
//! 10^dials ([`limits_as_readings`]).
//!
//! # Rules and quality codes
//! Every flag carries an IEC 61968-9 reading quality (system 3 = MDM) and a plain explanation.
//!
//! | rule (`FlagKind`) | quality | exception | when |
//! |---|---|---|---|
//! | `high` | 3.6.3 usage above limit | yes | use above the band (or a reader's signal, below) |
//! | `low` | 3.6.4 usage below limit | yes | some use, below the band |
//! | `zero` | 3.6.1 zero usage | yes | no use, expected ≥ `zero_min_use` HCF/30 days even early/late in the season, and at most `zero_periods_allowed` of the last 12 periods without use (at a time of year it used water); the explanation counts every period without use |
//! | `negative` | 3.3.4 reverse rotation | yes | reading below previous and a rollover implausible |
//! | `rollover` | 3.4.1 overflow | no | wrapped through 0 and the wrapped use is plausible |
//! | `inactive_usage` | 3.6.2 usage on inactive meter | yes | use on an inactive or closed account |
//! | `meter_mismatch` | 3.5.256 outside expected range | yes | unknown meter, meter not in service, or not on the cycle's routes |
//! | `invalid_reading` | 3.7.3 rejected | yes | not a number, or more digits than the dials |
//! | `duplicate` | 3.7.3 rejected | yes | a second, different reading of the meter in the cycle |
//! | `out_of_window` | 3.5.256 outside expected range | yes | read outside the window or after it reached the gateway |
//! | `missing` | 3.5.259 known missing read | yes | skipped in the field or not read by close; estimated (3.8.0) |
//! | `off_route` | 3.5.256 outside expected range | yes | read by a handheld other than the one the meter's route is assigned to (`[reads] off_route = "flag"`) |
//!
//! A read's own quality list ([`read_quality`]): `2.4.131` (manual read from a handheld) for keyed
//! reads, then `3.0.1` (validated) when it passed, `3.8.0` when estimated, and each flag's code.
//! A reader-confirmed out-of-range read (`high_confirmed` / `low_confirmed`) stays flagged; its
//! explanation says it was confirmed.
//!
//! # The reader's signals
//! A read's type and codes are evidence. Inside the limits, a read is still flagged `high` when the
//! reader confirmed a high read *and* entered a code the District marks `requires_follow_up` (a
//! leak seen: a confirmed leak always reaches a clerk), or did either with use above `signal_ratio`
//! × expected; the explanation names the code ("; the reader reported LK (leak at meter)"). This is
//! the one office judgement of an in-window read beyond the handheld's limits: the reader's word
//! is not on the handheld's screen when it checks a reading.
//!
//! # What the reader meant ([`slips`], [`swaps`])
//! A keyed read flagged `high`, `negative`, or `invalid_reading` for too many digits, which is
//! neither confirmed nor carries a follow-up code, is tried against the usual slips (two digits
//! swapped, a digit keyed twice, a dial read one off at a digit's edge, a digit left out, a
//! neighbouring key) when its use is one no meter makes (`slip_sure` × expected or more, backwards
//! by `slip_far` × expected, too many digits) or one a leak could make (`slip_far` to `slip_sure`
//! × expected). Use below `slip_far` × expected (low but positive use included: a slowed or idle
//! meter reads so too) and use in line with the last period's (a leak that goes on) are taken as
//! what the meter says. When one candidate lands near the expected use (within `slip_band_sure`,
//! where no meter makes the keyed use, or `slip_band`, where a leak could, of the way to the
//! band's edge; a less likely slip nearer) and stands out from every other, the flag says so
//! ("; likely meant 43088: digits 3 and 4 swapped") and [`Decision::intended`] carries it: the
//! clerk's read page offers it as a one-click correction.
//!
//! Over a batch ([`mark_swapped`], run by `cycles` once every read of an upload is judged): two
//! far-off keyed reads of one route, each inside the other's limits and farther apart than both
//! ranges, were read under each other's stops; each is named the other's reading instead of a
//! slip. A read that fits more than one other is left alone.

mod estimate;
mod expect;
mod history;
mod rules;
mod settings;
pub mod slips;
pub mod swaps;

pub use estimate::{estimate, Estimate, ESTIMATED_QUALITY};
pub use expect::{expect, expect_between, Basis, Expectation};
pub use history::{hcf_per_billing_unit, rate_over, AccountHistory, MeterBase, Period};
pub use rules::{
    amount, limits_as_readings, mark_duplicate, same_reading, stop_limits, validate, Decision,
    MeterContext, ReadInput, Service,
};
pub use settings::{Tolerance, ValidationConfig};
pub use swaps::{mark_swapped, StopRead};

use crate::domain::{FlagKind, ReadMethod, ReadStatus};

/// IEC 61968-9 reading quality codes used by the gateway.
pub mod quality {
    use crate::domain::FlagKind;

    pub const VALIDATED: &str = "3.0.1";
    pub const MANUAL_HANDHELD: &str = "2.4.131";
    pub const ESTIMATED: &str = "3.8.0";

    /// The quality code a flag carries.
    pub fn of(kind: FlagKind) -> &'static str {
        match kind {
            FlagKind::High => "3.6.3",
            FlagKind::Low => "3.6.4",
            FlagKind::Zero => "3.6.1",
            FlagKind::Negative => "3.3.4",
            FlagKind::Rollover => "3.4.1",
            FlagKind::InactiveUsage => "3.6.2",
            FlagKind::MeterMismatch | FlagKind::OutOfWindow | FlagKind::OffRoute => "3.5.256",
            FlagKind::InvalidReading | FlagKind::Duplicate => "3.7.3",
            FlagKind::Missing => "3.5.259",
        }
    }
}

/// The quality codes of a stored read, in a stable order (see the module table).
pub fn read_quality(
    method: ReadMethod,
    status: ReadStatus,
    flags: &[FlagKind],
) -> Vec<&'static str> {
    let mut q = Vec::with_capacity(flags.len() + 2);
    if method == ReadMethod::Keyed {
        q.push(quality::MANUAL_HANDHELD);
    }
    match status {
        ReadStatus::Accepted => q.push(quality::VALIDATED),
        ReadStatus::Estimated => q.push(quality::ESTIMATED),
        _ => {}
    }
    for f in flags {
        let code = quality::of(*f);
        if !q.contains(&code) {
            q.push(code);
        }
    }
    q
}

#[cfg(test)]
mod tests;
