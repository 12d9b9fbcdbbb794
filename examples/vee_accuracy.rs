//! How well validation catches planted problems and leaves normal reads alone, on demo districts in
//! spring (April: irrigation ramps up) and autumn (October: it drops), against the naive rule "flag
//! above 2× or below ½ of the last three periods' average" computed in the same run.
//!
//! `cargo run --release --example vee_accuracy -- [ACCOUNTS] [SEEDS]` (default 5000 accounts, 3 seeds).

use anyhow::Context;
use chrono::{Duration, NaiveDate};
use meter_gateway::config::Config;
use meter_gateway::cycles;
use meter_gateway::demo::{self, DemoParams, District, Problem, Score};
use meter_gateway::domain::{FlagKind, ReadKind, ReadType};
use meter_gateway::store::Store;
use std::collections::{BTreeMap, HashMap};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let accounts: u32 = args.get(1).map_or(Ok(5_000), |a| a.parse())?;
    let seeds: u64 = args.get(2).map_or(Ok(3), |a| a.parse())?;
    // VEE_CONFIG=FILE tries other validation settings.
    let config = Config::load(
        std::env::var_os("VEE_CONFIG")
            .as_deref()
            .map(std::path::Path::new),
    )?;
    let seasons = [
        ("spring", NaiveDate::from_ymd_opt(2026, 4, 20)),
        ("autumn", NaiveDate::from_ymd_opt(2026, 10, 20)),
    ];
    println!("{accounts} accounts per district, seeds 1..={seeds}");
    let mut all_misses = Vec::new();
    for (season, as_of) in seasons {
        let as_of = as_of.context("date")?;
        let (mut ours, mut naive) = (Score::default(), Score::default());
        let mut estimated = (0usize, 0usize);
        for seed in 1..=seeds {
            let district = demo::generate(&DemoParams {
                accounts,
                seed,
                as_of,
            });
            let (s, est, misses) = run_validator(&district, &config)?;
            add(&mut ours, &s);
            estimated.0 += est.0;
            estimated.1 += est.1;
            all_misses.extend(misses.into_iter().map(|m| (season, seed, m)));
            add(&mut naive, &demo::score(&district, naive_flags(&district)));
        }
        println!("\n== {season} (as of {as_of}) ==");
        print_line("validator", &ours);
        print_line("naive 2×/½", &naive);
        println!(
            "  missing/skipped stops estimated: {} of {}",
            estimated.0, estimated.1
        );
        println!(
            "  {:<26} {:>6} {:>10} {:>10}",
            "problem / trap", "count", "validator", "naive"
        );
        for (p, (n, met)) in &ours.per_problem {
            let nv = naive.per_problem.get(p).map_or(0, |x| x.1);
            let tag = if p.is_trap() { " (trap)" } else { "" };
            println!(
                "  {:<26} {:>6} {:>9.1}% {:>9.1}%",
                format!("{p}{tag}"),
                n,
                pct(*met, *n),
                pct(nv, *n)
            );
        }
    }
    if !all_misses.is_empty() {
        println!("\nvalidator misses (first 25):");
        for (season, seed, (p, m, flags, why)) in all_misses.iter().take(25) {
            println!("  {season} seed {seed}: {p} on {m}: flags {flags:?}\n      {why}");
        }
    }
    Ok(())
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        100.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

fn print_line(name: &str, s: &Score) {
    let traps_flagged = s.traps - s.traps_clean;
    println!(
        "  {name:<11} normal reads incl. traps: flagged {} of {} ({:.2}%)",
        s.normal_flagged + traps_flagged,
        s.normal_meters + s.traps,
        pct(s.normal_flagged + traps_flagged, s.normal_meters + s.traps)
    );
    println!(
        "  {name:<11} caught {:>5} of {:>5} planted exceptions ({:.1}%), flagged {:>5} of {:>6} normal reads ({:.2}%), traps clean {:.1}%",
        s.problems_caught,
        s.problems,
        100.0 * s.recall(),
        s.normal_flagged,
        s.normal_meters,
        100.0 * s.false_positive_rate(),
        100.0 * s.trap_pass_rate()
    );
}

fn add(total: &mut Score, s: &Score) {
    total.problems += s.problems;
    total.problems_caught += s.problems_caught;
    total.traps += s.traps;
    total.traps_clean += s.traps_clean;
    total.normal_meters += s.normal_meters;
    total.normal_flagged += s.normal_flagged;
    for (p, (n, met)) in &s.per_problem {
        let e = total.per_problem.entry(*p).or_insert((0, 0));
        e.0 += n;
        e.1 += met;
    }
}

/// (problem, meter, flags seen, what was planted and what the validator expected).
type Misses = Vec<(Problem, String, Vec<FlagKind>, String)>;

/// Loads the district, opens its cycle, ingests every field read, estimates the missing stops at the
/// window's end, and scores the flags.
fn run_validator(
    district: &District,
    config: &Config,
) -> anyhow::Result<(Score, (usize, usize), Misses)> {
    let mut store = Store::open_in_memory()?;
    demo::load(&mut store, district)?;
    let c = &district.cycle;
    let opened = c.window_from.and_hms_opt(6, 0, 0).context("time")?;
    district.open_cycle(&mut store, opened)?;
    let now = district
        .field_reads
        .iter()
        .map(|r| r.read_at)
        .max()
        .unwrap_or(opened)
        + Duration::hours(1);
    cycles::ingest(&mut store, config, &c.id, &district.field_reads, now)?;
    let mut flags: HashMap<String, Vec<FlagKind>> = HashMap::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for r in store.cycle_reads(&c.id)? {
        seen.insert(
            r.meter_id.clone(),
            format!(
                "used {:?}, expected {:?} ({}), previous {:?}, limits {:?}–{:?}",
                r.consumption,
                r.expected_use,
                r.expected_basis.as_deref().unwrap_or("-"),
                r.previous_reading,
                r.low_limit,
                r.high_limit
            ),
        );
        flags
            .entry(r.meter_id)
            .or_default()
            .extend(r.flags.iter().map(|f| f.kind));
    }
    let missing = cycles::missing_reads(&store, config, &c.id, c.window_to)?;
    let estimated = missing.iter().filter(|m| m.estimate.is_some()).count();
    for m in &missing {
        let f = flags.entry(m.meter_id.clone()).or_default();
        if !f.contains(&FlagKind::Missing) {
            f.push(FlagKind::Missing);
        }
    }
    let s = demo::score(district, |m| flags.get(m).cloned().unwrap_or_default());
    let detail: HashMap<&str, &str> = district
        .truth
        .iter()
        .map(|p| (p.meter_id.as_str(), p.detail.as_str()))
        .collect();
    let misses = s
        .misses
        .iter()
        .map(|(p, m, f)| {
            let why = format!(
                "planted: {}; validator: {}",
                detail.get(m.as_str()).unwrap_or(&"-"),
                seen.get(m).map_or("-", String::as_str)
            );
            (*p, m.clone(), f.clone(), why)
        })
        .collect();
    Ok((s, (estimated, missing.len()), misses))
}

/// The naive rule, scored generously: a meter counts as flagged "for the right reason" whenever the
/// rule flags any of its reads, and missing, skipped, unknown-meter and non-numeric reads count as
/// flagged (any system notices those).
fn naive_flags(district: &District) -> impl FnMut(&str) -> Vec<FlagKind> {
    let mut by_meter: HashMap<&str, Vec<(NaiveDate, u64)>> = HashMap::new();
    for h in &district.history {
        if matches!(h.kind, ReadKind::Actual | ReadKind::Estimated) {
            by_meter
                .entry(h.meter_id.as_str())
                .or_default()
                .push((h.read_on, h.reading));
        }
    }
    for v in by_meter.values_mut() {
        v.sort();
    }
    let mut flagged: BTreeMap<String, bool> = BTreeMap::new();
    for r in &district.field_reads {
        let f = flagged.entry(r.meter_id.clone()).or_insert(false);
        if r.read_type == ReadType::Skipped {
            *f = true;
            continue;
        }
        let (Some(value), Some(hist)) = (r.reading(), by_meter.get(r.meter_id.as_str())) else {
            *f = true;
            continue;
        };
        let Some(&(_, prev)) = hist.last() else {
            continue;
        };
        let diffs: Vec<f64> = hist
            .windows(2)
            .rev()
            .take(3)
            .map(|w| w[1].1 as f64 - w[0].1 as f64)
            .collect();
        if diffs.is_empty() {
            continue;
        }
        let avg = diffs.iter().sum::<f64>() / diffs.len() as f64;
        let used = value as f64 - prev as f64;
        if used > 2.0 * avg || used < 0.5 * avg {
            *f = true;
        }
    }
    let all: Vec<FlagKind> = FlagKind::ALL
        .iter()
        .copied()
        .filter(|k| k.is_exception())
        .collect();
    move |m: &str| match flagged.get(m) {
        Some(true) | None => all.clone(),
        Some(false) => Vec::new(),
    }
}
