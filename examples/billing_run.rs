//! A reference billing consumer: builds a demo district, runs its cycle to close as an office would,
//! then takes the closed cycle's batch through the Rust API and prices every account with a tiered
//! water tariff (`examples/tariff.toml`) in exact decimal money.
//!
//! It is the proof that the batch holds everything a billing core needs: rate class, meters with their
//! previous and current readings, consumption across rollovers and meter changes, read types, days,
//! adjustments (leak credits) and the accounts held out.
//!
//! ```text
//! cargo run --release --example billing_run -- [ACCOUNTS] [TARIFF.toml]
//! ```

use anyhow::{bail, Context};
use chrono::{Duration, NaiveDate, NaiveDateTime};
use meter_gateway::billing::{self, Adjustment, AdjustmentKind, BillingError, BillingRecord};
use meter_gateway::config::Config;
use meter_gateway::cycles;
use meter_gateway::demo::{self, DemoParams};
use meter_gateway::domain::{ReadStatus, ReadType, Unit};
use meter_gateway::review::actions as clerk;
use meter_gateway::store::Store;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tariff {
    currency: String,
    fixed_charge: BTreeMap<String, Decimal>,
    meter_size: Vec<SizeRule>,
    rates: Vec<Rates>,
    leak_credit: LeakCredit,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeRule {
    dials: Option<u8>,
    multiplier: Option<u32>,
    unit: Option<String>,
    size: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rates {
    class: String,
    tiers: Vec<Tier>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tier {
    up_to: Option<Decimal>,
    price: Decimal,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeakCredit {
    percent: Decimal,
}

/// One priced account.
#[derive(Debug)]
struct Bill {
    account_id: String,
    rate_class: String,
    days: i64,
    hcf: Decimal,
    fixed: Decimal,
    usage: Decimal,
    adjustments: Decimal,
    total: Decimal,
}

fn cents(v: Decimal) -> Decimal {
    v.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

impl Tariff {
    fn load(path: &str) -> anyhow::Result<Tariff> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        let t: Tariff = toml::from_str(&text).with_context(|| format!("parsing {path}"))?;
        for r in &t.rates {
            if r.tiers.last().is_none_or(|t| t.up_to.is_some()) {
                bail!(
                    "{path}: rates for {}: the last tier must have no up_to",
                    r.class
                );
            }
        }
        for rule in &t.meter_size {
            if !t.fixed_charge.contains_key(&rule.size) {
                bail!("{path}: meter size {} has no fixed charge", rule.size);
            }
        }
        Ok(t)
    }

    fn rates(&self, class: &str) -> anyhow::Result<&[Tier]> {
        self.rates
            .iter()
            .find(|r| r.class == class)
            .map(|r| r.tiers.as_slice())
            .with_context(|| format!("the tariff has no rates for class {class}"))
    }

    fn size(&self, dials: u8, multiplier: u32, unit: &str) -> anyhow::Result<&str> {
        self.meter_size
            .iter()
            .find(|r| {
                r.dials.is_none_or(|d| d == dials)
                    && r.multiplier.is_none_or(|m| m == multiplier)
                    && r.unit.as_deref().is_none_or(|u| u == unit)
            })
            .map(|r| r.size.as_str())
            .with_context(|| {
                format!("no meter size for a {dials}-dial ×{multiplier} {unit} register")
            })
    }

    /// Increasing block pricing of `hcf`.
    fn usage_charge(&self, class: &str, hcf: Decimal) -> anyhow::Result<Decimal> {
        let mut charge = Decimal::ZERO;
        let mut floor = Decimal::ZERO;
        for tier in self.rates(class)? {
            let top = tier.up_to.map_or(hcf, |t| t.min(hcf));
            if top > floor {
                charge += (top - floor) * tier.price;
            }
            floor = tier.up_to.unwrap_or(hcf).max(floor);
            if floor >= hcf {
                break;
            }
        }
        Ok(cents(charge))
    }

    fn price(&self, r: &BillingRecord) -> anyhow::Result<Bill> {
        let mut fixed = Decimal::ZERO;
        // One service charge per meter in service; a meter pulled during the period is billed its use
        // only (its replacement carries the charge).
        for m in r
            .meters
            .iter()
            .filter(|m| m.read_type != billing::LineReadType::Final)
        {
            let size = self.size(m.dials, m.multiplier, &m.unit)?;
            fixed += self.fixed_charge[size];
        }
        let usage = self.usage_charge(&r.rate_class, r.consumption_hcf)?;
        let total = fixed + usage + r.adjustments_total;
        Ok(Bill {
            account_id: r.account_id.clone(),
            rate_class: r.rate_class.clone(),
            days: r.days,
            hcf: r.consumption_hcf,
            fixed,
            usage,
            adjustments: r.adjustments_total,
            total,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let accounts: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(7_000);
    let tariff_path = args.next().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tariff.toml").to_string()
    });
    let tariff = Tariff::load(&tariff_path)?;
    let config = Config::default();

    // The district and its month, as the office lives it: load, open, ingest the handhelds' reads.
    let as_of = NaiveDate::from_ymd_opt(2026, 11, 26).context("date")?;
    let started = Instant::now();
    let district = demo::generate(&DemoParams {
        accounts,
        seed: 2026,
        as_of,
    });
    let mut store = Store::open_in_memory()?;
    demo::load(&mut store, &district)?;
    let c = &district.cycle;
    let opened = c.window_from.and_hms_opt(7, 0, 0).context("time")?;
    district.open_cycle(&mut store, opened)?;
    let received = c.window_to.and_hms_opt(18, 0, 0).context("time")?;
    cycles::ingest(&mut store, &config, &c.id, &district.field_reads, received)?;
    println!(
        "district: {} accounts, {} field reads ingested into cycle {} ({:.1} s)",
        district.accounts.len(),
        district.field_reads.len(),
        c.id,
        started.elapsed().as_secs_f64()
    );

    // Close is refused while exceptions are open, with the list.
    let close_at = c.window_to.and_hms_opt(19, 0, 0).context("time")? + Duration::days(1);
    let first = billing::close_cycle(&mut store, &config, &c.id, &[], close_at);
    let Err(BillingError::Unresolved { exceptions, .. }) = first else {
        bail!("the first close should be refused with the open exceptions, got {first:?}");
    };
    println!(
        "close refused: {} unresolved exception(s), e.g.:",
        exceptions.len()
    );
    for e in exceptions.iter().take(3) {
        println!("  {e}");
    }

    // The clerk: accept confirmed leaks (they bill as read) and grant a leak credit; accept reads of
    // meters with no account (nothing to bill); hold every other exception's account for next month.
    let clerk_at = close_at - Duration::hours(2);
    let (credits, accepted) = work_exceptions(&mut store, &tariff, &c.id, clerk_at)?;
    let mut holds: BTreeSet<String> = BTreeSet::new();
    let closing = Instant::now();
    let mut attempts = 0;
    let report = loop {
        attempts += 1;
        let list: Vec<String> = holds.iter().cloned().collect();
        match billing::close_cycle_by(&mut store, &config, &c.id, &list, "billing-run", close_at) {
            Ok(r) => break r,
            Err(BillingError::Unresolved { exceptions, .. }) => {
                let before = holds.len();
                holds.extend(exceptions.iter().filter_map(|e| e.account_id.clone()));
                if holds.len() == before {
                    bail!(
                        "exceptions without an account remain: {:?}",
                        exceptions.first()
                    );
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    let closed_in = closing.elapsed();
    println!(
        "clerk: accepted {accepted} read(s), granted {credits} leak credit(s); cycle closed as batch \
         version {} with {} account(s) held, {} missing read(s) estimated ({attempts} close call(s) in {:.2} s)",
        report.batch_version,
        report.held.len(),
        report.estimated,
        closed_in.as_secs_f64()
    );

    // The billing core's side: open the batch, verify, reconcile, price.
    let opening = Instant::now();
    let batch = billing::open_batch(&store, &c.id, None)?;
    println!(
        "opened and verified the batch in {:.3} s ({} bytes of canonical body)",
        opening.elapsed().as_secs_f64(),
        batch.canonical_body().len()
    );
    let h = batch.header();
    let mut by_unit: BTreeMap<&str, u64> = BTreeMap::new();
    let mut hcf = Decimal::ZERO;
    let mut money = Decimal::ZERO;
    let mut read_types: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut rollovers, mut changes) = (0, 0);
    for r in batch.records() {
        for m in &r.meters {
            *by_unit.entry(m.unit.as_str()).or_default() += m.consumption;
            rollovers += usize::from(m.rollover);
        }
        changes += usize::from(
            r.meters
                .iter()
                .any(|m| m.read_type == billing::LineReadType::Final),
        );
        *read_types.entry(r.read_type.as_str()).or_default() += 1;
        hcf += r.consumption_hcf;
        money += r.adjustments_total;
    }
    let by_unit_owned: BTreeMap<String, u64> =
        by_unit.iter().map(|(u, n)| (u.to_string(), *n)).collect();
    if by_unit_owned != h.consumption_by_unit
        || hcf != h.consumption_hcf
        || money != h.adjustments_total
    {
        bail!("the batch does not reconcile with its header");
    }
    println!(
        "batch: schema {}, cycle {} version {}, closed {} by {}; {} records ({} meter lines, {} held); \
         checksum {}",
        h.schema_version,
        h.cycle_id,
        h.batch_version,
        h.closed_at,
        h.closed_by,
        h.record_count,
        h.meter_line_count,
        h.held_count,
        &h.checksum[..16]
    );
    println!(
        "reconciled: consumption by unit {:?} = Σ meter lines; {} HCF; adjustments {} {}",
        h.consumption_by_unit, h.consumption_hcf, h.adjustments_total, tariff.currency
    );
    println!(
        "read types {read_types:?}; {rollovers} rollover(s), {changes} account(s) with a meter pulled in the period"
    );

    let mut bills = Vec::with_capacity(h.record_count as usize);
    for r in batch.records() {
        bills.push(tariff.price(r)?);
    }
    let sum = |f: fn(&Bill) -> Decimal| bills.iter().map(f).sum::<Decimal>();
    println!(
        "priced {} bills: fixed {} + usage {} + adjustments {} = {} {}",
        bills.len(),
        sum(|b| b.fixed),
        sum(|b| b.usage),
        sum(|b| b.adjustments),
        sum(|b| b.total),
        tariff.currency
    );
    let mut per_class: BTreeMap<&str, (usize, Decimal)> = BTreeMap::new();
    for b in &bills {
        let e = per_class.entry(b.rate_class.as_str()).or_default();
        e.0 += 1;
        e.1 += b.total;
    }
    for (class, (n, total)) in &per_class {
        println!("  {class:<13} {n:>6} bills {total:>14} {}", tariff.currency);
    }
    bills.sort_by(|a, b| b.total.cmp(&a.total).then(a.account_id.cmp(&b.account_id)));
    println!("the ten largest bills:");
    println!(
        "  {:<12} {:<13} {:>5} {:>10} {:>9} {:>10} {:>10} {:>11}",
        "account", "class", "days", "HCF", "fixed", "usage", "adjust", "total"
    );
    for b in bills.iter().take(10) {
        println!(
            "  {:<12} {:<13} {:>5} {:>10} {:>9} {:>10} {:>10} {:>11}",
            b.account_id, b.rate_class, b.days, b.hcf, b.fixed, b.usage, b.adjustments, b.total
        );
    }
    println!("total run time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The clerk's pass over the flagged reads; returns (leak credits granted, reads accepted).
fn work_exceptions(
    store: &mut Store,
    tariff: &Tariff,
    cycle_id: &str,
    now: NaiveDateTime,
) -> anyhow::Result<(usize, usize)> {
    let flagged: Vec<_> = store
        .cycle_reads(cycle_id)?
        .into_iter()
        .filter(|r| r.status == ReadStatus::Flagged && r.superseded_by.is_none())
        .collect();
    let (mut credits, mut accepted) = (0, 0);
    for r in flagged {
        let confirmed_high = r.read_type == ReadType::HighConfirmed;
        if r.account_id.is_none() {
            clerk::accept(
                store,
                r.read_id,
                "clerk",
                "no account at this meter: nothing to bill",
                now,
            )?;
            accepted += 1;
        } else if confirmed_high {
            clerk::accept(
                store,
                r.read_id,
                "clerk",
                "confirmed at the meter: a leak",
                now,
            )?;
            accepted += 1;
            let (Some(account), Some(used), Some(expected)) =
                (r.account_id.clone(), r.consumption, r.expected_use)
            else {
                continue;
            };
            let Some(class) = store.account(&account)?.map(|a| a.rate_class) else {
                continue;
            };
            // Use is in the meter's billing units; the credit is in HCF, as the tariff prices.
            let per_hcf = match r.unit {
                Some(Unit::Hcf) => Decimal::ONE,
                Some(Unit::Cf) => Decimal::ONE_HUNDRED,
                Some(Unit::Gal) => Decimal::new(748_052, 3),
                Some(Unit::Kgal) => Decimal::new(748_052, 6),
                Some(Unit::M3) => Decimal::new(28_316_846_592, 10),
                None => continue,
            };
            let excess = (Decimal::from(used) - Decimal::try_from(expected)?.round_dp(2)) / per_hcf;
            if excess <= Decimal::ZERO {
                continue;
            }
            let units = cents(excess * tariff.leak_credit.percent / Decimal::ONE_HUNDRED);
            let first_tier = tariff.rates(&class)?[0].price;
            billing::add_adjustment(
                store,
                &Adjustment {
                    account_id: account,
                    cycle_id: cycle_id.to_string(),
                    read_id: Some(r.read_id),
                    kind: AdjustmentKind::LeakCredit,
                    amount: -cents(units * first_tier),
                    units: Some(units),
                    note: format!(
                        "leak credit: {}% of {excess} HCF above expected",
                        tariff.leak_credit.percent
                    ),
                    created_by: "clerk".into(),
                    created_at: now,
                },
            )?;
            credits += 1;
        }
    }
    Ok((credits, accepted))
}
