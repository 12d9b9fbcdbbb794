//! `meter-gateway cycle open|status`, `import reads`, `reads`, `route`.

use super::{say, CycleAction, ReadsArgs, RouteArgs};
use crate::clock::DistrictClock;
use crate::config::Config;
use crate::cycles::{
    cycle_status, import_reads as import_file, list_reads, open_cycle, route_file, write_reads,
    RouteProgress,
};
use crate::store::Store;
use std::io::Write;
use std::path::Path;

fn output(out: Option<&Path>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

pub fn cycle(db: &Path, action: &CycleAction, clock: &DistrictClock) -> anyhow::Result<()> {
    match action {
        CycleAction::Open {
            id,
            from,
            to,
            routes,
        } => {
            let mut store = Store::open(db)?;
            let c = open_cycle(&mut store, id, *from, *to, routes, clock.now_local())?;
            say!(
                "opened cycle {} ({} – {}) on {} route(s): {}",
                c.id,
                c.window_from,
                c.window_to,
                c.routes.len(),
                c.routes.join(", ")
            );
        }
        CycleAction::Status { id } => {
            let store = Store::open(db)?;
            let s = cycle_status(&store, id)?;
            say!(
                "cycle {} ({}, {} – {})",
                s.cycle_id,
                s.status,
                s.window_from,
                s.window_to
            );
            say!(
                "{:<10} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "route",
                "expected",
                "in",
                "flagged",
                "resolved",
                "missing"
            );
            let mut total = RouteProgress {
                route_id: "total".into(),
                ..RouteProgress::default()
            };
            for r in &s.routes {
                say!(
                    "{:<10} {:>8} {:>8} {:>8} {:>8} {:>8}",
                    r.route_id,
                    r.expected,
                    r.read_in,
                    r.flagged,
                    r.resolved,
                    r.missing
                );
                total.expected += r.expected;
                total.read_in += r.read_in;
                total.flagged += r.flagged;
                total.resolved += r.resolved;
                total.missing += r.missing;
            }
            say!(
                "{:<10} {:>8} {:>8} {:>8} {:>8} {:>8}",
                total.route_id,
                total.expected,
                total.read_in,
                total.flagged,
                total.resolved,
                total.missing
            );
            if s.unassigned_reads > 0 {
                say!(
                    "{} read(s) for meters on no route of this cycle",
                    s.unassigned_reads
                );
            }
        }
        CycleAction::Close { .. } | CycleAction::Reopen { .. } => {
            anyhow::bail!("cycle close and reopen are handled by the billing module")
        }
    }
    Ok(())
}

pub fn import_reads(
    db: &Path,
    config: &Config,
    cycle: &str,
    file: &Path,
    clock: &DistrictClock,
) -> anyhow::Result<()> {
    let mut store = Store::open(db)?;
    let report = import_file(&mut store, config, cycle, file, clock.now_local())?;
    for note in &report.notes {
        eprintln!("{note}");
    }
    say!("{}", report.summary());
    Ok(())
}

pub fn reads(db: &Path, args: &ReadsArgs) -> anyhow::Result<()> {
    let store = Store::open(db)?;
    let rows = list_reads(&store, &args.cycle)?;
    let mut out = output(args.out.as_deref())?;
    write_reads(&rows, args.format.into(), &mut out)?;
    out.flush()?;
    Ok(())
}

pub fn route(db: &Path, config: &Config, args: &RouteArgs) -> anyhow::Result<()> {
    let store = Store::open(db)?;
    let rf = route_file(&store, config, &args.cycle, &args.route)?;
    let mut out = output(args.out.as_deref())?;
    serde_json::to_writer_pretty(&mut out, &rf)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}
