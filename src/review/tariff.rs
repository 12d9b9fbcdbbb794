//! The water tariff (`[tariff]`): a fixed charge plus tiered rates per HCF, in exact decimal money. Used
//! to show a read's likely bill impact and to price leak credits; the billing core remains the one that
//! bills.

use crate::domain::Unit;
use rust_decimal::prelude::*;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Rounds money to cents, half away from zero (how utility bills round).
pub fn cents(v: Decimal) -> Decimal {
    v.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// One block of the tiered rate: HCF up to `up_to` (cumulative; `None` = no upper bound) at `rate` per HCF.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    #[serde(default, deserialize_with = "opt_decimal")]
    pub up_to: Option<Decimal>,
    #[serde(deserialize_with = "decimal")]
    pub rate: Decimal,
}

/// A rate class's own fixed charge and tiers (irrigation, commercial...).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassTariff {
    #[serde(deserialize_with = "decimal")]
    pub fixed_charge: Decimal,
    pub tiers: Vec<Tier>,
}

/// `[tariff]` settings: a fixed charge per bill and tiered rates per HCF, with optional per-class
/// overrides under `[tariff.classes.NAME]`. Money may be written as a string (`"5.12"`) or a number.
///
/// ```toml
/// [tariff]
/// fixed_charge = "28.50"
/// tiers = [{ up_to = 6, rate = "5.12" }, { up_to = 15, rate = "6.87" }, { rate = "9.45" }]
///
/// [tariff.classes.irrigation]
/// fixed_charge = "40.00"
/// tiers = [{ up_to = 50, rate = "5.40" }, { rate = "7.25" }]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawTariff")]
pub struct TariffConfig {
    pub fixed_charge: Decimal,
    pub tiers: Vec<Tier>,
    /// Keys lower case.
    pub classes: BTreeMap<String, ClassTariff>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTariff {
    #[serde(deserialize_with = "opt_decimal")]
    fixed_charge: Option<Decimal>,
    tiers: Option<Vec<Tier>>,
    classes: BTreeMap<String, ClassTariff>,
}

impl Default for TariffConfig {
    fn default() -> Self {
        let d = |s: &str| Decimal::from_str(s).unwrap_or_default();
        TariffConfig {
            fixed_charge: d("28.50"),
            tiers: vec![
                Tier {
                    up_to: Some(d("6")),
                    rate: d("5.12"),
                },
                Tier {
                    up_to: Some(d("15")),
                    rate: d("6.87"),
                },
                Tier {
                    up_to: None,
                    rate: d("9.45"),
                },
            ],
            classes: BTreeMap::new(),
        }
    }
}

impl TryFrom<RawTariff> for TariffConfig {
    type Error = String;

    fn try_from(raw: RawTariff) -> Result<Self, String> {
        let d = TariffConfig::default();
        let t = TariffConfig {
            fixed_charge: raw.fixed_charge.unwrap_or(d.fixed_charge),
            tiers: raw.tiers.unwrap_or(d.tiers),
            classes: raw
                .classes
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        };
        check_tiers("tariff", t.fixed_charge, &t.tiers)?;
        for (k, c) in &t.classes {
            check_tiers(&format!("tariff.classes.{k}"), c.fixed_charge, &c.tiers)?;
        }
        Ok(t)
    }
}

fn check_tiers(name: &str, fixed: Decimal, tiers: &[Tier]) -> Result<(), String> {
    if fixed.is_sign_negative() {
        return Err(format!("{name}.fixed_charge must be ≥ 0, got {fixed}"));
    }
    let Some(last) = tiers.last() else {
        return Err(format!("{name}.tiers must list at least one tier"));
    };
    if last.up_to.is_some() {
        return Err(format!(
            "{name}.tiers: the last tier must have no `up_to` (it takes all remaining use)"
        ));
    }
    let mut floor = Decimal::ZERO;
    for (i, t) in tiers.iter().enumerate() {
        if t.rate.is_sign_negative() {
            return Err(format!(
                "{name}.tiers[{i}].rate must be ≥ 0, got {}",
                t.rate
            ));
        }
        match t.up_to {
            Some(u) if u <= floor => {
                return Err(format!(
                    "{name}.tiers[{i}].up_to must be above the previous tier's ({floor}), got {u}"
                ))
            }
            Some(u) => floor = u,
            None if i + 1 < tiers.len() => {
                return Err(format!(
                    "{name}.tiers[{i}] has no `up_to` but is not the last tier"
                ))
            }
            None => {}
        }
    }
    Ok(())
}

/// Money in the settings file: `"5.12"` (exact) or a TOML number, taken by its decimal spelling.
pub(crate) fn decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Text(String),
        Int(i64),
        Float(f64),
    }
    let text = match Num::deserialize(d)? {
        Num::Text(s) => s,
        Num::Int(i) => i.to_string(),
        // Rust prints the shortest spelling that reads back as the same float: 4.12 stays "4.12".
        Num::Float(f) => f.to_string(),
    };
    Decimal::from_str(text.trim())
        .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a decimal amount: {e}")))
}

pub(crate) fn opt_decimal<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Decimal>, D::Error> {
    decimal(d).map(Some)
}

/// One tier's share of a bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLine {
    /// HCF range of the tier: `from` < use ≤ `to` (`None` = unbounded).
    pub from: Decimal,
    pub to: Option<Decimal>,
    pub hcf: Decimal,
    pub rate: Decimal,
    pub amount: Decimal,
}

/// A bill for some use: the fixed charge and one line per tier used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bill {
    pub hcf: Decimal,
    pub fixed_charge: Decimal,
    pub lines: Vec<BillLine>,
    pub total: Decimal,
}

impl TariffConfig {
    /// The fixed charge and tiers that apply to `rate_class`.
    pub fn for_class(&self, rate_class: &str) -> (Decimal, &[Tier]) {
        match self.classes.get(&rate_class.to_ascii_lowercase()) {
            Some(c) => (c.fixed_charge, &c.tiers),
            None => (self.fixed_charge, &self.tiers),
        }
    }

    /// The bill for `hcf` of use (negative use bills as none). Each tier's amount is rounded to cents.
    pub fn bill(&self, rate_class: &str, hcf: Decimal) -> Bill {
        let (fixed, tiers) = self.for_class(rate_class);
        let hcf = hcf.max(Decimal::ZERO);
        let mut lines = Vec::new();
        let mut floor = Decimal::ZERO;
        for t in tiers {
            if hcf <= floor {
                break;
            }
            let top = t.up_to.map_or(hcf, |u| u.min(hcf));
            let used = top - floor;
            lines.push(BillLine {
                from: floor,
                to: t.up_to,
                hcf: used,
                rate: t.rate,
                amount: cents(used * t.rate),
            });
            match t.up_to {
                Some(u) => floor = u,
                None => break,
            }
        }
        let total = fixed + lines.iter().map(|l| l.amount).sum::<Decimal>();
        Bill {
            hcf,
            fixed_charge: fixed,
            lines,
            total,
        }
    }

    /// The rate of the first tier: what "reprice the lost water at the lowest tier" policies use.
    pub fn lowest_rate(&self, rate_class: &str) -> Decimal {
        self.for_class(rate_class)
            .1
            .first()
            .map_or(Decimal::ZERO, |t| t.rate)
    }
}

/// HCF in `units` billing units of a meter in `unit`, to 0.01 HCF (see [`Unit::to_hcf`]).
pub fn to_hcf(units: Decimal, unit: Unit) -> Decimal {
    unit.to_hcf(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn a_bill_walks_the_tiers_in_exact_cents() {
        let t = TariffConfig::default();
        let b = t.bill("residential", d("20"));
        // 28.50 + 6×5.12 + 9×6.87 + 5×9.45 = 28.50 + 30.72 + 61.83 + 47.25
        assert_eq!(b.total, d("168.30"));
        assert_eq!(b.lines.len(), 3);
        assert_eq!(b.lines[2].hcf, d("5"));
        assert_eq!(t.bill("residential", d("0")).total, d("28.50"));
        assert_eq!(t.bill("residential", d("-3")).total, d("28.50"));
    }

    #[test]
    fn a_class_override_and_string_or_number_money_are_read_from_the_settings() {
        let c = crate::config::Config::parse(
            "[tariff]\nfixed_charge = 10\n[[tariff.tiers]]\nup_to = 5\nrate = 4.12\n[[tariff.tiers]]\nrate = \"7.5\"\n\
             [tariff.classes.Irrigation]\nfixed_charge = \"40\"\ntiers = [{ rate = 3 }]\n",
        )
        .unwrap();
        assert_eq!(c.tariff.bill("residential", d("7")).total, d("45.60"));
        assert_eq!(c.tariff.bill("irrigation", d("7")).total, d("61.00"));
        assert_eq!(c.tariff.lowest_rate("residential"), d("4.12"));
    }

    #[test]
    fn tiers_out_of_order_or_bounded_at_the_top_are_refused() {
        for bad in [
            "[tariff]\ntiers = [{ up_to = 5, rate = 1 }]\n",
            "[tariff]\ntiers = [{ up_to = 5, rate = 1 }, { up_to = 3, rate = 1 }, { rate = 1 }]\n",
            "[tariff]\ntiers = [{ rate = -1 }]\n",
            "[tariff]\nfixed_charge = \"abc\"\n",
        ] {
            assert!(crate::config::Config::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn units_convert_to_hcf() {
        assert_eq!(to_hcf(d("1496"), Unit::Gal), d("2"));
        assert_eq!(to_hcf(d("250"), Unit::Cf), d("2.5"));
        assert_eq!(to_hcf(d("12"), Unit::Hcf), d("12"));
    }
}
