//! Registers: dials, rollover, multiplier and units.

use super::spelled_enum;
use std::fmt;
use std::str::FromStr;

/// The unit a register counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Cubic feet.
    Cf,
    /// Hundred cubic feet (748 gallons): the usual US billing unit.
    Hcf,
    Gal,
    /// Thousand gallons.
    Kgal,
    /// Cubic metres.
    M3,
}
spelled_enum!(Unit, "unit", { Cf => "cf", Hcf => "hcf", Gal => "gal", Kgal => "kgal", M3 => "m3" });

/// A meter register: `dials` digits that wrap from 10^dials − 1 to 0, times a multiplier, in a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Register {
    pub dials: u8,
    pub multiplier: u32,
    pub unit: Unit,
}

/// How a register moved between two readings, in register units (before the multiplier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterDelta {
    /// Current ≥ previous.
    Forward(u64),
    /// Current < previous: either a wrap through zero (`wrapped` units of use) or backwards movement
    /// (`back` units: mis-key, reverse flow, swapped meter). Which one is a validation decision.
    Below { wrapped: u64, back: u64 },
}

impl Register {
    pub const MIN_DIALS: u8 = 1;
    pub const MAX_DIALS: u8 = 12;

    /// 10^dials: the first value the register cannot show.
    pub fn modulus(&self) -> u64 {
        10u64.pow(u32::from(
            self.dials.clamp(Self::MIN_DIALS, Self::MAX_DIALS),
        ))
    }

    /// Whether `reading` fits on the register's dials.
    pub fn fits(&self, reading: u64) -> bool {
        reading < self.modulus()
    }

    pub fn delta(&self, previous: u64, current: u64) -> RegisterDelta {
        if current >= previous {
            RegisterDelta::Forward(current - previous)
        } else {
            RegisterDelta::Below {
                wrapped: self.modulus() - previous + current,
                back: previous - current,
            }
        }
    }

    /// Use between two readings assuming forward flow (wrapping through zero), in register units.
    pub fn forward_use(&self, previous: u64, current: u64) -> u64 {
        match self.delta(previous, current) {
            RegisterDelta::Forward(d) => d,
            RegisterDelta::Below { wrapped, .. } => wrapped,
        }
    }

    /// The register value after `usage` register units from `from`, wrapping at the modulus.
    pub fn advance(&self, from: u64, usage: u64) -> u64 {
        (from % self.modulus() + usage % self.modulus()) % self.modulus()
    }

    /// Register units to billing units (the meter's unit) through the multiplier.
    pub fn to_billing(&self, register_units: u64) -> u64 {
        register_units.saturating_mul(u64::from(self.multiplier))
    }
}

/// A stop's hi/lo limits as register readings for a read on the first and on the last day of the
/// cycle's read window. For a day between, the limits move linearly ([`WindowLimits::on_day`]): the
/// gateway judges a read's high/low with exactly the limits the handheld prompted with that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// (low, high) for a read on the window's first day.
    pub first: (u64, u64),
    /// (low, high) for a read on its last day.
    pub last: (u64, u64),
}

/// A stop's limits for one read day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayLimits {
    /// No limits: every reading is accepted.
    Any,
    /// Register readings; `high < low` when the range wraps through zero.
    Range { low: u64, high: u64 },
}

impl DayLimits {
    /// Whether `reading` is inside, honouring a range that wraps through zero.
    pub fn contains(self, reading: u64) -> bool {
        match self {
            DayLimits::Any => true,
            DayLimits::Range { low, high } if low <= high => (low..=high).contains(&reading),
            DayLimits::Range { low, high } => reading >= low || reading <= high,
        }
    }
}

impl WindowLimits {
    /// The limits for a read on day `day` of a window of `days` days after its first (`day` is
    /// clamped into `0..=days`), around `previous` (the previous reading the handheld shows), as
    /// PROTOCOL.md §3.6 defines them (`firmware_protocol::message::limits_on` is the handheld's
    /// copy; a test holds the two to the same vectors): each end becomes a signed offset of the low
    /// limit from `previous` and a span to the high limit; a span of the whole dial means no limits;
    /// the offsets move linearly, the low one rounded down and the high one up.
    pub fn on_day(&self, register: &Register, previous: u64, days: i64, day: i64) -> DayLimits {
        let m = i128::from(register.modulus());
        let prev = i128::from(previous) % m;
        let ends = |(low, high): (u64, u64)| -> Option<(i128, i128)> {
            let (low, high) = (i128::from(low) % m, i128::from(high) % m);
            let span = (high - low).rem_euclid(m);
            if span == m - 1 {
                return None;
            }
            let mut o_low = (low - prev).rem_euclid(m);
            if o_low > m / 2 {
                o_low -= m;
            }
            Some((o_low, o_low + span))
        };
        let (Some((lo1, hi1)), Some((lo2, hi2))) = (ends(self.first), ends(self.last)) else {
            return DayLimits::Any;
        };
        let n = i128::from(days.max(0));
        let k = i128::from(day.clamp(0, days.max(0)));
        let (lo, hi) = if n == 0 {
            (lo1, hi1)
        } else {
            (
                lo1 + ((lo2 - lo1) * k).div_euclid(n),
                hi1 - ((hi1 - hi2) * k).div_euclid(n),
            )
        };
        let at = |o: i128| (prev + o).rem_euclid(m) as u64;
        DayLimits::Range {
            low: at(lo),
            high: at(hi.max(lo)),
        }
    }
}

impl Unit {
    /// `units` of this unit in HCF, exact decimal, rounded to 0.01 HCF (one cubic foot): exact for hcf
    /// and cf. 1 HCF = 748.052 gallons = 2.8316846592 m³.
    pub fn to_hcf(self, units: rust_decimal::Decimal) -> rust_decimal::Decimal {
        use rust_decimal::{Decimal, RoundingStrategy};
        let gallons_per_hcf = Decimal::new(748_052, 3);
        let hcf = match self {
            Unit::Hcf => units,
            Unit::Cf => units / Decimal::ONE_HUNDRED,
            Unit::Gal => units / gallons_per_hcf,
            Unit::Kgal => units * Decimal::ONE_THOUSAND / gallons_per_hcf,
            Unit::M3 => units / Decimal::new(28_316_846_592, 10),
        };
        hcf.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
            .normalize()
    }

    /// Gallons in one unit (exact for the US units; m³ rounded to 264.172).
    pub fn gallons(self) -> f64 {
        match self {
            Unit::Cf => 7.48052,
            Unit::Hcf => 748.052,
            Unit::Gal => 1.0,
            Unit::Kgal => 1000.0,
            Unit::M3 => 264.172,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(dials: u8) -> Register {
        Register {
            dials,
            multiplier: 1,
            unit: Unit::Hcf,
        }
    }

    #[test]
    fn a_four_dial_register_wraps_from_9999_to_0() {
        let r = reg(4);
        assert_eq!(r.modulus(), 10_000);
        assert_eq!(
            r.delta(9_990, 12),
            RegisterDelta::Below {
                wrapped: 22,
                back: 9_978
            }
        );
        assert_eq!(r.forward_use(9_990, 12), 22);
        assert_eq!(r.advance(9_990, 22), 12);
        assert!(r.fits(9_999));
        assert!(!r.fits(10_000));
    }

    #[test]
    fn multiplier_scales_register_units_to_billing_units() {
        let r = Register {
            dials: 6,
            multiplier: 10,
            unit: Unit::Cf,
        };
        assert_eq!(r.to_billing(r.forward_use(100, 250)), 1_500);
    }

    #[test]
    fn units_parse_as_the_csv_spells_them() {
        assert_eq!("m3".parse::<Unit>().unwrap(), Unit::M3);
        assert_eq!("HCF".parse::<Unit>().unwrap(), Unit::Hcf);
        assert!("litres".parse::<Unit>().is_err());
    }
}
