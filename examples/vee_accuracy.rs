//! How well validation catches planted problems and leaves normal reads alone, on demo districts in
//! winter (February), spring (April: irrigation ramps up), summer (July) and autumn (October: it
//! drops), against the naive rule "flag above 2× or below ½ of the last three periods' average"
//! computed in the same run. Then: how often a mis-keyed read's likely intended reading is named
//! (and a swapped meter's own reading, keyed at the other stop), and how often a reading named is
//! not the one meant, over every suggestion made; and a curve of recall against false flags over
//! the tolerance settings, and of suggestions over the slip settings, so the defaults are chosen
//! on evidence.
//!
//! `cargo run --release --example vee_accuracy -- [ACCOUNTS] [SEEDS] [curve]` (default 5000
//! accounts, 3 seeds; `curve` adds the settings curve: each row changes one setting from the
//! defaults, or, for the combined rows, sets `spread_factor` and `prior_spread` and scales every
//! class's absolute margin by the factor shown).

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
    let curve = args.get(3).is_some_and(|a| a == "curve");
    let seasons = [
        ("winter", NaiveDate::from_ymd_opt(2026, 2, 20)),
        ("spring", NaiveDate::from_ymd_opt(2026, 4, 20)),
        ("summer", NaiveDate::from_ymd_opt(2026, 7, 20)),
        ("autumn", NaiveDate::from_ymd_opt(2026, 10, 20)),
    ];
    println!("{accounts} accounts per district, seeds 1..={seeds}");
    let mut all_misses = Vec::new();
    let mut districts = Vec::new();
    let (mut total, mut slips) = (Score::default(), Slips::default());
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
            let run = run_validator(&district, &config)?;
            add(&mut ours, &run.score);
            add(&mut total, &run.score);
            slips.add(&run.slips);
            estimated.0 += run.estimated.0;
            estimated.1 += run.estimated.1;
            all_misses.extend(run.misses.into_iter().map(|m| (season, seed, m)));
            add(&mut naive, &demo::score(&district, naive_flags(&district)));
            if curve {
                districts.push(district);
            }
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
    println!("\n== all seasons ==");
    print_line("validator", &total);
    let worst = total
        .per_problem
        .iter()
        .filter(|(p, _)| !p.is_trap())
        .map(|(p, (n, met))| (pct(*met, *n), *p))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((r, p)) = worst {
        println!("  lowest recall of a planted kind: {p} {r:.1}%");
    }
    println!(
        "  mis-keyed reads (digit, transposed, doubled, dial): {} flagged; intended reading named for {} ({:.1}%), wrong in {} of the {} named ({:.1}%)",
        slips.flagged,
        slips.named,
        pct(slips.named, slips.flagged),
        slips.wrong,
        slips.named,
        pct_or_zero(slips.wrong, slips.named)
    );
    println!(
        "  suggestions on other flagged keyed reads (no planted mis-key): {} {:?}",
        slips.elsewhere, slips.elsewhere_by
    );
    let kinds: Vec<String> = slips
        .by_kind
        .iter()
        .map(|(k, (n, ok))| format!("{k} {:.0}%", pct(*ok, *n)))
        .collect();
    println!(
        "  intended reading named rightly, by kind: {}",
        kinds.join(", ")
    );
    let (sw_flagged, sw_named, sw_wrong) = slips.swapped;
    println!(
        "  swapped meters (keyed under each other's stops): {sw_flagged} flagged; the meter's reading named for {sw_named} ({:.1}%), wrong in {sw_wrong}",
        pct(sw_named, sw_flagged)
    );
    println!(
        "  of all {} suggestions made, {} not the reading meant ({:.1}%); without swapped meters: {} of {} ({:.1}%)",
        slips.made(),
        slips.not_meant(),
        pct_or_zero(slips.not_meant(), slips.made()),
        slips.wrong + slips.elsewhere,
        slips.named + slips.elsewhere,
        pct_or_zero(slips.wrong + slips.elsewhere, slips.named + slips.elsewhere)
    );
    for w in &slips.wrong_examples {
        println!("    not meant: {w}");
    }
    if curve {
        print_curve(&districts, &config)?;
    }
    if !all_misses.is_empty() {
        println!("\nvalidator misses (first 25):");
        for (season, seed, (p, m, flags, why)) in all_misses.iter().take(25) {
            println!("  {season} seed {seed}: {p} on {m}: flags {flags:?}\n      {why}");
        }
    }
    Ok(())
}

fn pct_or_zero(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        pct(a, b)
    }
}

/// Recall against false flags (normal reads and traps) over the band's settings, on the districts
/// of the run: the defaults should sit where recall stops rising and false flags start to.
fn print_curve(districts: &[District], base: &Config) -> anyhow::Result<()> {
    println!("\n== curve over the tolerance settings (all seasons and seeds) ==");
    println!(
        "  {:<44} {:>8} {:>14} {:>14}",
        "setting", "recall", "false flags", "lowest kind"
    );
    let mut settings: Vec<(String, Config)> = Vec::new();
    for k in [0.6, 0.8, 1.0, 1.25, 1.5] {
        let mut c = base.clone();
        c.validation.spread_factor *= k;
        settings.push((
            format!("spread_factor {:.2}", c.validation.spread_factor),
            c,
        ));
    }
    for m in [0.0, 0.1, 0.25, 0.4] {
        let mut c = base.clone();
        c.validation.own_max_margin = m;
        settings.push((format!("own_max_margin {m:.2}"), c));
    }
    for k in [0.5, 1.0, 1.5] {
        let mut c = base.clone();
        for t in c.validation.tolerance.values_mut() {
            t.absolute *= k;
        }
        c.validation.default.absolute *= k;
        settings.push((format!("absolute margins ×{k:.1}"), c));
    }
    for p in [0.10, 0.15, 0.20] {
        let mut c = base.clone();
        c.validation.prior_spread = p;
        settings.push((format!("prior_spread {p:.2}"), c));
    }
    for (sf, abs, ps) in [
        (2.4, 0.5, 0.25),
        (2.4, 0.75, 0.2),
        (2.4, 0.5, 0.15),
        (2.0, 0.75, 0.15),
    ] {
        let mut c = base.clone();
        c.validation.spread_factor = sf;
        c.validation.prior_spread = ps;
        for t in c.validation.tolerance.values_mut() {
            t.absolute *= abs;
        }
        c.validation.default.absolute *= abs;
        settings.push((
            format!("spread_factor {sf:.1}, margins ×{abs:.2}, prior {ps:.2}"),
            c,
        ));
    }
    for l in [0.5, 0.6, 0.7, 1.0] {
        // The households' share (the classes whose default is below 1).
        let mut c = base.clone();
        for t in c.validation.tolerance.values_mut() {
            if t.low_ceiling < 1.0 {
                t.low_ceiling = l;
            }
        }
        c.validation.default.low_ceiling = l;
        settings.push((format!("low_ceiling {l:.1} (households)"), c));
    }
    let slip_rows = settings.len();
    for (band, sure, band_sure, far) in [
        (0.3, 10.0, 1.0, 3.0),
        (0.45, 10.0, 1.0, 3.0),
        (0.6, 10.0, 1.0, 3.0),
        (0.6, 10.0, 0.6, 3.0),
        (0.45, 10.0, 0.6, 3.0),
        (0.45, 5.0, 1.0, 3.0),
        (0.45, 20.0, 1.0, 3.0),
        (0.45, 10.0, 1.0, 2.5),
    ] {
        let mut c = base.clone();
        c.validation.slip_band = band;
        c.validation.slip_sure = sure;
        c.validation.slip_band_sure = band_sure;
        c.validation.slip_far = far;
        settings.push((
            format!("slip_band {band:.2} (sure {band_sure:.1} from {sure:.0}×), far {far:.1}"),
            c,
        ));
    }
    for (row, (name, config)) in settings.into_iter().enumerate() {
        if row == slip_rows {
            println!(
                "  {:<44} {:>8} {:>12} {:>14}",
                "mis-key suggestions", "named", "wrong", "made"
            );
        }
        if row >= slip_rows {
            let mut sl = Slips::default();
            for d in districts {
                sl.add(&run_validator(d, &config)?.slips);
            }
            println!(
                "  {name:<44} {:>7.1}% {:>11.1}% {:>14}",
                pct(sl.named - sl.wrong, sl.flagged),
                pct_or_zero(sl.not_meant(), sl.made()),
                sl.made()
            );
            continue;
        }
        let mut s = Score::default();
        for d in districts {
            add(&mut s, &run_validator(d, &config)?.score);
        }
        let traps_flagged = s.traps - s.traps_clean;
        let worst = s
            .per_problem
            .iter()
            .filter(|(p, _)| !p.is_trap())
            .map(|(p, (n, met))| (pct(*met, *n), *p))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or(String::new(), |(r, p)| format!("{p} {r:.0}%"));
        let false_flags = s.normal_flagged + traps_flagged;
        println!(
            "  {name:<44} {:>7.1}% {:>6.2}% ({false_flags:>3}) {:>14}",
            100.0 * s.recall(),
            pct(false_flags, s.normal_meters + s.traps),
            worst
        );
    }
    Ok(())
}

/// Mis-keyed reads and the intended readings validation named for them.
#[derive(Debug, Default)]
struct Slips {
    /// Planted mis-keys whose read was flagged.
    flagged: usize,
    /// ... for which an intended reading was named, and how many of those were not the true one.
    named: usize,
    wrong: usize,
    /// Intended readings named on reads that were not planted mis-keys.
    elsewhere: usize,
    /// ... by what was planted there.
    elsewhere_by: BTreeMap<String, usize>,
    /// Per planted mis-key kind: (flagged, named rightly).
    by_kind: BTreeMap<String, (usize, usize)>,
    /// The first suggestions that were not the reading meant: (planted, keyed, named, flag).
    wrong_examples: Vec<String>,
    /// Swapped meters (two readings keyed under each other's stops) whose read was flagged, the
    /// other stop's reading named for them, and how many of those were not the meter's reading.
    swapped: (usize, usize, usize),
}

impl Slips {
    /// Every reading named as likely meant, and how many of those were not.
    fn made(&self) -> usize {
        self.named + self.elsewhere + self.swapped.1
    }

    fn not_meant(&self) -> usize {
        self.wrong + self.elsewhere + self.swapped.2
    }

    fn add(&mut self, o: &Slips) {
        self.swapped.0 += o.swapped.0;
        self.swapped.1 += o.swapped.1;
        self.swapped.2 += o.swapped.2;
        self.flagged += o.flagged;
        self.named += o.named;
        self.wrong += o.wrong;
        self.elsewhere += o.elsewhere;
        for (k, n) in &o.elsewhere_by {
            *self.elsewhere_by.entry(k.clone()).or_insert(0) += n;
        }
        if self.wrong_examples.len() < 12 {
            self.wrong_examples
                .extend(o.wrong_examples.iter().take(2).cloned());
        }
        for (k, (a, b)) in &o.by_kind {
            let e = self.by_kind.entry(k.clone()).or_insert((0, 0));
            e.0 += a;
            e.1 += b;
        }
    }
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

struct Run {
    score: Score,
    /// Missing stops estimated, of all missing.
    estimated: (usize, usize),
    misses: Misses,
    slips: Slips,
}

/// Loads the district, opens its cycle, ingests every field read, estimates the missing stops at the
/// window's end, and scores the flags and the intended readings named.
fn run_validator(district: &District, config: &Config) -> anyhow::Result<Run> {
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
    let mut named: HashMap<String, u64> = HashMap::new();
    let mut said: HashMap<String, String> = HashMap::new();
    for r in store.cycle_reads(&c.id)? {
        if let Some(v) = r.intended_reading {
            named.insert(r.meter_id.clone(), v);
            let why = r
                .flags
                .iter()
                .map(|f| f.explanation.as_str())
                .collect::<Vec<_>>();
            said.insert(
                r.meter_id.clone(),
                format!("keyed {}: {}", r.raw_reading, why.join(" | ")),
            );
        }
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
    let mut slips = Slips::default();
    let mut mis_keyed = std::collections::HashSet::new();
    for p in &district.truth {
        let Some(truth) = p.intended else { continue };
        mis_keyed.insert(p.meter_id.as_str());
        if !flags
            .get(&p.meter_id)
            .is_some_and(|f| f.iter().any(|k| k.is_exception()))
        {
            continue;
        }
        if p.problem == Problem::SwappedMeter {
            slips.swapped.0 += 1;
            if let Some(&v) = named.get(&p.meter_id) {
                slips.swapped.1 += 1;
                slips.swapped.2 += usize::from(v != truth);
                if v != truth {
                    slips.wrong_examples.push(format!(
                        "{} meant {truth}: {}",
                        p.problem,
                        said.get(&p.meter_id).map_or("", String::as_str)
                    ));
                }
            }
            continue;
        }
        slips.flagged += 1;
        let kind = slips.by_kind.entry(p.problem.to_string()).or_insert((0, 0));
        kind.0 += 1;
        if let Some(&v) = named.get(&p.meter_id) {
            slips.named += 1;
            slips.wrong += usize::from(v != truth);
            if v != truth {
                slips.wrong_examples.push(format!(
                    "{} meant {truth}: {}",
                    p.problem,
                    said.get(&p.meter_id).map_or("", String::as_str)
                ));
            }
            kind.1 += usize::from(v == truth);
        }
    }
    let planted: HashMap<&str, Problem> = district
        .truth
        .iter()
        .map(|p| (p.meter_id.as_str(), p.problem))
        .collect();
    for m in named.keys().filter(|m| !mis_keyed.contains(m.as_str())) {
        slips.elsewhere += 1;
        let kind = planted
            .get(m.as_str())
            .map_or("normal read".to_string(), |p| p.to_string());
        slips.wrong_examples.push(format!(
            "{kind}: {}",
            said.get(m).map_or("", String::as_str)
        ));
        *slips.elsewhere_by.entry(kind).or_insert(0) += 1;
    }
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
    Ok(Run {
        score: s,
        estimated: (estimated, missing.len()),
        misses,
        slips,
    })
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
