//! Estimation of a missing read (at cycle close): same period last year, else average daily use × days.

use super::expect::{expect, Basis};
use super::history::{hcf_per_billing_unit, AccountHistory};
use super::settings::ValidationConfig;
use crate::domain::Register;
use chrono::NaiveDate;

/// IEC 61968-9 quality of an estimated read (MDM estimated).
pub const ESTIMATED_QUALITY: &str = "3.8.0";

/// An estimated read for one meter.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Billing units over the period (including use on a meter pulled during it).
    pub consumption: u64,
    /// The register reading the estimate implies on the read date (wrapped at 10^dials).
    pub reading: u64,
    pub basis: String,
    pub quality: &'static str,
}

/// Estimates the use of `meter_id` up to `on`: last year's same period (adjusted by the account's
/// growth) when history covers it, else the recent average daily use × days. `None` when the meter has
/// no previous reading or the account no usable history.
pub fn estimate(
    history: &AccountHistory,
    meter_id: &str,
    register: &Register,
    rate_class: &str,
    on: NaiveDate,
    cfg: &ValidationConfig,
) -> Option<Estimate> {
    let base = history.base_of(meter_id)?;
    let from = history.period_start.unwrap_or(base.read_on);
    let e = expect(history, rate_class, from, on, cfg)?.for_register(register);
    let carry = history.carry / hcf_per_billing_unit(register);
    let m = f64::from(register.multiplier.max(1));
    // Whole register units on this meter; use already counted on a pulled meter is not re-registered.
    let units = ((e.expected - carry).max(0.0) / m).round();
    let consumption = (units * m + carry).round().max(0.0) as u64;
    let basis = match e.basis {
        b @ Basis::SamePeriodLastYear { .. } => b.to_string(),
        _ => format!(
            "average daily use {:.2} × {} days",
            e.expected / e.days as f64,
            e.days
        ),
    };
    Some(Estimate {
        consumption,
        reading: register.advance(base.reading, units as u64),
        basis,
        quality: ESTIMATED_QUALITY,
    })
}
