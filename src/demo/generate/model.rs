//! The model of use: rate classes, their sizes, seasons, noise and registers.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Residential,
    MultiFamily,
    Commercial,
    Irrigation,
}

impl Class {
    pub(super) const ALL: [Class; 4] = [
        Class::Residential,
        Class::MultiFamily,
        Class::Commercial,
        Class::Irrigation,
    ];

    pub(super) fn idx(self) -> usize {
        self as usize
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Class::Residential => "residential",
            Class::MultiFamily => "multi_family",
            Class::Commercial => "commercial",
            Class::Irrigation => "irrigation",
        }
    }

    /// Share of accounts.
    pub(super) fn weight(self) -> f64 {
        match self {
            Class::Residential => 0.80,
            Class::MultiFamily => 0.08,
            Class::Commercial => 0.07,
            Class::Irrigation => 0.05,
        }
    }

    /// Median use in HCF per month at a seasonal factor of 1, and its spread across accounts.
    pub(super) fn size(self) -> (f64, f64) {
        match self {
            Class::Residential => (9.0, 0.45),
            Class::MultiFamily => (55.0, 0.6),
            Class::Commercial => (35.0, 0.8),
            Class::Irrigation => (70.0, 0.7),
        }
    }

    /// Seasonal factor at mid-month, January first (mean ≈ 1). Coastal California: dry Jul–Sep peak.
    pub(super) fn season(self) -> [f64; 12] {
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
    pub(super) fn weather_sensitivity(self) -> f64 {
        match self {
            Class::Residential => 0.5,
            Class::MultiFamily => 0.3,
            Class::Commercial => 0.2,
            Class::Irrigation => 1.0,
        }
    }

    /// Period-to-period noise (lognormal σ).
    pub(super) fn noise(self) -> f64 {
        match self {
            Class::Residential => 0.08,
            Class::MultiFamily | Class::Commercial => 0.05,
            Class::Irrigation => 0.10,
        }
    }

    pub(super) fn registers(self) -> &'static [(f64, Register)] {
        match self {
            Class::Residential => RESIDENTIAL_REGISTERS,
            Class::MultiFamily | Class::Commercial => LARGE_REGISTERS,
            Class::Irrigation => IRRIGATION_REGISTERS,
        }
    }
}

pub(super) const fn reg(dials: u8, multiplier: u32, unit: Unit) -> Register {
    Register {
        dials,
        multiplier,
        unit,
    }
}

/// Register mixes (share, register). Old 4-dial HCF registers on homes; cubic-foot registers whose two
/// fixed zeros make a multiplier of 100; 10- and 100-gallon registers on newer AMR meters.
pub(super) const RESIDENTIAL_REGISTERS: &[(f64, Register)] = &[
    (0.20, reg(4, 1, Unit::Hcf)),
    (0.45, reg(5, 1, Unit::Hcf)),
    (0.10, reg(6, 1, Unit::Hcf)),
    (0.10, reg(4, 100, Unit::Cf)),
    (0.15, reg(6, 10, Unit::Gal)),
];
pub(super) const LARGE_REGISTERS: &[(f64, Register)] = &[
    (0.30, reg(5, 1, Unit::Hcf)),
    (0.40, reg(6, 1, Unit::Hcf)),
    (0.15, reg(5, 100, Unit::Cf)),
    (0.15, reg(6, 100, Unit::Gal)),
];
pub(super) const IRRIGATION_REGISTERS: &[(f64, Register)] = &[
    (0.35, reg(5, 1, Unit::Hcf)),
    (0.35, reg(6, 1, Unit::Hcf)),
    (0.30, reg(6, 100, Unit::Gal)),
];

/// Gallons per register unit (one step of the last dial, after the multiplier).
pub(super) fn gallons_per_unit(reg: &Register) -> f64 {
    f64::from(reg.multiplier) * reg.unit.gallons()
}

/// Register units in one HCF.
pub(super) fn units_per_hcf(reg: &Register) -> f64 {
    GALLONS_PER_HCF / gallons_per_unit(reg)
}

pub(super) fn seasonal_rate(season: &[f64; 12], d: NaiveDate) -> f64 {
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

pub(super) fn weather_at(weather: &[f64], t0: NaiveDate, d: NaiveDate) -> f64 {
    let i = (d.year() * 12 + d.month0() as i32) - (t0.year() * 12 + t0.month0() as i32);
    weather.get(i.max(0) as usize).copied().unwrap_or_default()
}
