//! Leak (high-bill) adjustments under the District's policy (`[leak_policy]`): pure computation, shown
//! to the clerk step by step, in exact decimal money.

use super::tariff::{cents, TariffConfig};
use chrono::{Months, NaiveDate};
use rust_decimal::Decimal;
use serde::Deserialize;

/// How the water lost to the leak is priced before the credit percentage applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExcessPricing {
    /// The excess costs what it added to the tiered bill (bill at actual use − bill at normal use).
    #[default]
    Tiered,
    /// The excess is repriced at the lowest tier's rate (Otay Water District).
    LowestTier,
}

/// `[leak_policy]` settings. Defaults: credit 50% of the use above the account's normal for the period,
/// at most once per 12 months, proof of repair required.
///
/// ```toml
/// [leak_policy]
/// credit_percent = 50
/// once_per_months = 12
/// proof_of_repair_required = true
/// price_excess_at = "tiered"      # or "lowest_tier" (Otay Water District)
/// # trigger_ratio = 2             # only use ≥ 2× normal qualifies (Boswell, Lake Mary)
/// max_credit = "1000.00"          # no single credit above this (a mis-key is not a leak)
/// second_approval_above = "250.00" # an admin (another person) approves larger credits
/// ```
///
/// "Normal for the period" is the season-aware expected use validation stored with the read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeakPolicy {
    /// Percent of the excess credited.
    #[serde(deserialize_with = "super::tariff::decimal")]
    pub credit_percent: Decimal,
    /// At most one credit per account within this many months (by read date).
    pub once_per_months: u32,
    pub proof_of_repair_required: bool,
    pub price_excess_at: ExcessPricing,
    /// Only use at least this many times normal qualifies (2 = "trigger at 2× the average bill").
    #[serde(deserialize_with = "super::tariff::opt_decimal")]
    pub trigger_ratio: Option<Decimal>,
    /// The largest credit one leak may get, in dollars (the computed credit is capped at it).
    #[serde(deserialize_with = "super::tariff::opt_decimal")]
    pub max_credit: Option<Decimal>,
    /// Credits above this many dollars wait for an admin's approval (not the clerk who asked).
    #[serde(deserialize_with = "super::tariff::opt_decimal")]
    pub second_approval_above: Option<Decimal>,
}

impl Default for LeakPolicy {
    fn default() -> Self {
        LeakPolicy {
            credit_percent: Decimal::from(50),
            once_per_months: 12,
            proof_of_repair_required: true,
            price_excess_at: ExcessPricing::Tiered,
            trigger_ratio: None,
            max_credit: Some(Decimal::from(1000)),
            second_approval_above: Some(Decimal::from(250)),
        }
    }
}

/// What the policy is applied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakInput<'a> {
    pub rate_class: &'a str,
    pub read_on: NaiveDate,
    /// Use this period, HCF.
    pub use_hcf: Decimal,
    /// The account's normal use for the period, HCF, and where that figure comes from.
    pub normal_hcf: Decimal,
    pub normal_basis: &'a str,
    /// The clerk's note on the proof of repair (plumber's invoice, photo...); may be empty.
    pub repair_proof: &'a str,
    /// Read date of the account's latest earlier leak credit.
    pub last_credit_on: Option<NaiveDate>,
}

/// The computation, step by step, and the credit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeakComputation {
    pub steps: Vec<String>,
    pub use_hcf: Decimal,
    pub normal_hcf: Decimal,
    pub excess_hcf: Decimal,
    pub excess_charge: Decimal,
    pub credit: Decimal,
}

/// Why the policy grants nothing; every variant says so in the clerk's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeakRefusal {
    #[error("no use above normal: used {use_hcf} HCF, normal {normal_hcf} HCF")]
    NoExcess {
        use_hcf: Decimal,
        normal_hcf: Decimal,
    },
    #[error(
        "use of {use_hcf} HCF is under the policy's trigger of {ratio}× normal ({needed} HCF)"
    )]
    BelowTrigger {
        use_hcf: Decimal,
        ratio: Decimal,
        needed: Decimal,
    },
    #[error(
        "a leak credit was already granted for the read of {last}; the policy allows one per {months} months (next from {next})"
    )]
    TooSoon {
        last: NaiveDate,
        months: u32,
        next: NaiveDate,
    },
    #[error("the policy requires proof of repair: note what the customer showed")]
    ProofRequired,
}

/// Applies `policy` to one period's use. `Err` says why nothing is credited; the steps up to the
/// refusal are not needed by anyone, so they are not returned.
pub fn compute(
    policy: &LeakPolicy,
    tariff: &TariffConfig,
    input: &LeakInput<'_>,
) -> Result<LeakComputation, LeakRefusal> {
    let (u, n) = (input.use_hcf, input.normal_hcf.max(Decimal::ZERO));
    let mut steps = vec![
        format!("Use this period: {u} HCF."),
        format!(
            "Normal use for the period: {n} HCF ({}).",
            input.normal_basis
        ),
    ];
    if let Some(last) = input.last_credit_on {
        let next = last
            .checked_add_months(Months::new(policy.once_per_months))
            .unwrap_or(NaiveDate::MAX);
        if input.read_on < next {
            return Err(LeakRefusal::TooSoon {
                last,
                months: policy.once_per_months,
                next,
            });
        }
        steps.push(format!(
            "Last leak credit: read of {last}; more than {} months before this read of {}.",
            policy.once_per_months, input.read_on
        ));
    } else {
        steps.push(format!(
            "No leak credit in the {} months before this read.",
            policy.once_per_months
        ));
    }
    if u <= n {
        return Err(LeakRefusal::NoExcess {
            use_hcf: u,
            normal_hcf: n,
        });
    }
    if let Some(ratio) = policy.trigger_ratio {
        let needed = n * ratio;
        if u < needed {
            return Err(LeakRefusal::BelowTrigger {
                use_hcf: u,
                ratio,
                needed,
            });
        }
        steps.push(format!(
            "Trigger: use must be at least {ratio}× normal = {needed} HCF; met."
        ));
    }
    let excess = u - n;
    steps.push(format!("Use above normal: {u} − {n} = {excess} HCF."));
    let excess_charge = match policy.price_excess_at {
        ExcessPricing::Tiered => {
            let at_use = tariff.bill(input.rate_class, u).total;
            let at_normal = tariff.bill(input.rate_class, n).total;
            let charge = at_use - at_normal;
            steps.push(format!(
                "Bill at actual use: ${at_use}; bill at normal use: ${at_normal}; the excess cost ${at_use} − ${at_normal} = ${charge}."
            ));
            charge
        }
        ExcessPricing::LowestTier => {
            let rate = tariff.lowest_rate(input.rate_class);
            let charge = cents(excess * rate);
            steps.push(format!(
                "Excess repriced at the lowest tier: {excess} HCF × ${rate}/HCF = ${charge}."
            ));
            charge
        }
    };
    let mut credit = cents(excess_charge * policy.credit_percent / Decimal::from(100));
    steps.push(format!(
        "Credit: {}% × ${excess_charge} = ${credit}.",
        policy.credit_percent
    ));
    if let Some(max) = policy.max_credit.filter(|m| credit > *m) {
        credit = cents(max);
        credit.rescale(2);
        steps.push(format!(
            "Capped at ${credit}, the most the District's policy credits for one leak."
        ));
    }
    let proof = input.repair_proof.trim();
    if proof.is_empty() {
        if policy.proof_of_repair_required {
            return Err(LeakRefusal::ProofRequired);
        }
        steps.push("Proof of repair: not required by the policy, none noted.".into());
    } else {
        steps.push(format!("Proof of repair: {proof}."));
    }
    Ok(LeakComputation {
        steps,
        use_hcf: u,
        normal_hcf: n,
        excess_hcf: excess,
        excess_charge,
        credit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn day(y: i32, m: u32, dd: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, dd).unwrap()
    }

    fn input(last: Option<NaiveDate>, proof: &str) -> LeakInput<'static> {
        LeakInput {
            rate_class: "residential",
            read_on: day(2026, 11, 5),
            use_hcf: d("40"),
            normal_hcf: d("10"),
            normal_basis: "same period last year",
            repair_proof: if proof.is_empty() {
                ""
            } else {
                "plumber invoice #88"
            },
            last_credit_on: last,
        }
    }

    #[test]
    fn the_default_policy_credits_half_of_the_tiered_charge_for_the_excess() {
        let c = compute(
            &LeakPolicy::default(),
            &TariffConfig::default(),
            &input(None, "x"),
        )
        .unwrap();
        // Bill(40) = 28.50 + 30.72 + 61.83 + 25×9.45 (236.25) = 357.30; bill(10) = 28.50 + 30.72 + 4×6.87 (27.48) = 86.70
        assert_eq!(c.excess_hcf, d("30"));
        assert_eq!(c.excess_charge, d("270.60"));
        assert_eq!(c.credit, d("135.30"));
        assert!(
            c.steps
                .iter()
                .any(|s| s.contains("50% × $270.60 = $135.30")),
            "{:?}",
            c.steps
        );
    }

    #[test]
    fn a_credit_is_capped_by_the_policy() {
        let p = LeakPolicy {
            max_credit: Some(d("100")),
            ..LeakPolicy::default()
        };
        let c = compute(&p, &TariffConfig::default(), &input(None, "x")).unwrap();
        assert_eq!(c.credit, d("100.00"));
        assert!(
            c.steps.iter().any(|s| s.contains("Capped at $100.00")),
            "{:?}",
            c.steps
        );
    }

    #[test]
    fn lowest_tier_pricing_and_a_trigger_ratio_are_honoured() {
        let p = LeakPolicy {
            price_excess_at: ExcessPricing::LowestTier,
            trigger_ratio: Some(d("5")),
            ..LeakPolicy::default()
        };
        let err = compute(&p, &TariffConfig::default(), &input(None, "x")).unwrap_err();
        assert!(matches!(err, LeakRefusal::BelowTrigger { .. }), "{err}");
        let p = LeakPolicy {
            trigger_ratio: Some(d("2")),
            ..p
        };
        let c = compute(&p, &TariffConfig::default(), &input(None, "x")).unwrap();
        assert_eq!(c.excess_charge, d("153.60")); // 30 × 5.12
        assert_eq!(c.credit, d("76.80"));
    }

    #[test]
    fn a_second_credit_within_twelve_months_or_without_proof_is_refused() {
        let (p, t) = (LeakPolicy::default(), TariffConfig::default());
        let soon = compute(&p, &t, &input(Some(day(2026, 1, 5)), "x")).unwrap_err();
        assert_eq!(
            soon,
            LeakRefusal::TooSoon {
                last: day(2026, 1, 5),
                months: 12,
                next: day(2027, 1, 5)
            }
        );
        assert!(compute(&p, &t, &input(Some(day(2025, 11, 5)), "x")).is_ok());
        assert_eq!(
            compute(&p, &t, &input(None, "")).unwrap_err(),
            LeakRefusal::ProofRequired
        );
    }

    #[test]
    fn the_policy_is_read_from_the_settings_file() {
        let c = crate::config::Config::parse(
            "[leak_policy]\ncredit_percent = 75\nonce_per_months = 24\nprice_excess_at = \"lowest_tier\"\n",
        )
        .unwrap();
        assert_eq!(c.leak_policy.credit_percent, d("75"));
        assert_eq!(c.leak_policy.once_per_months, 24);
        assert!(c.leak_policy.proof_of_repair_required);
        assert!(crate::config::Config::parse("[leak_policy]\ncredit_pct = 5\n").is_err());
    }
}
