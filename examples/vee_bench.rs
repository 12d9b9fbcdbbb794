//! Validation and route-file throughput on a large district in a temp-file database, against a plain
//! SQL scan of the history table (the floor any history-based validation pays).
//!
//! `cargo run --release --example vee_bench -- [ACCOUNTS]` (default 100,000).

use anyhow::Context;
use chrono::{Duration, NaiveDate};
use meter_gateway::config::Config;
use meter_gateway::cycles;
use meter_gateway::demo::{self, DemoParams};
use meter_gateway::store::Store;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let accounts: u32 = std::env::args().nth(1).map_or(Ok(100_000), |a| a.parse())?;
    let config = Config::default();
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.db");

    // The district is generated and loaded on a thread of its own, and only the cycle and its field
    // reads are copied out: glibc gives that thread's arena back to the kernel when it is freed, so the
    // peak printed at the end is the timed phases' own, not the generated district's.
    let loader = {
        let db = db.clone();
        std::thread::spawn(move || -> anyhow::Result<_> {
            let t = Instant::now();
            let district = demo::generate(&DemoParams {
                accounts,
                seed: 2026,
                as_of: NaiveDate::from_ymd_opt(2026, 4, 20).context("date")?,
            });
            println!(
                "generated {accounts} accounts, {} meters, {} history rows, {} field reads in {:.1} s",
                district.meters.len(),
                district.history.len(),
                district.field_reads.len(),
                t.elapsed().as_secs_f64()
            );
            let t = Instant::now();
            {
                let mut store = Store::open(&db)?;
                demo::load(&mut store, &district)?;
            }
            println!(
                "loaded into {} in {:.1} s",
                db.display(),
                t.elapsed().as_secs_f64()
            );
            Ok(district)
        })
    };
    let district = loader
        .join()
        .map_err(|_| anyhow::anyhow!("the loader thread panicked"))??;
    let (c, field_reads) = (district.cycle.clone(), district.field_reads.clone());
    drop(district);
    let load_peak = vm_hwm();
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();

    // The floor: every column of every history row, in primary-key order, on a cold connection.
    let t = Instant::now();
    let (rows, bytes) = {
        let conn = rusqlite::Connection::open(&db)?;
        let mut stmt =
            conn.prepare("SELECT account_id, meter_id, read_on, reading, kind FROM history")?;
        let mut q = stmt.query([])?;
        let (mut rows, mut bytes) = (0u64, 0u64);
        while let Some(r) = q.next()? {
            rows += 1;
            bytes += r.get_ref(0)?.as_str()?.len() as u64
                + r.get_ref(1)?.as_str()?.len() as u64
                + r.get_ref(2)?.as_str()?.len() as u64
                + r.get_ref(3)?.as_i64()? as u64 % 2
                + r.get_ref(4)?.as_str()?.len() as u64;
        }
        (rows, bytes)
    };
    let scan = t.elapsed().as_secs_f64();
    println!("plain scan of history: {rows} rows ({bytes} bytes of values) in {scan:.2} s");

    let mut store = Store::open(&db)?;
    let opened = c.window_from.and_hms_opt(6, 0, 0).context("time")?;
    // Opening the cycle writes the judging basis of its meters (what uploads are judged from during
    // the cycle); the route files and the full-cycle validation below read history itself.
    let t = Instant::now();
    cycles::open_cycle(
        &mut store,
        &c.id,
        c.window_from,
        c.window_to,
        &c.routes,
        opened,
    )?;
    println!(
        "opened the cycle (judging basis of every meter in service) in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let files = cycles::route_files(&store, &config, &c.id)?;
    let routes = t.elapsed().as_secs_f64();
    let stops: usize = files.iter().map(|f| f.stops.len()).sum();
    let with_limits: usize = files
        .iter()
        .flat_map(|f| &f.stops)
        .filter(|s| s.limits.is_some())
        .count();
    println!(
        "all {} route files ({stops} stops, {with_limits} with limits) in {routes:.2} s: {:.2}× the scan",
        files.len(),
        routes / scan
    );
    drop(files);

    let now = field_reads
        .iter()
        .map(|r| r.read_at)
        .max()
        .unwrap_or(opened)
        + Duration::hours(1);
    let t = Instant::now();
    let out = cycles::ingest(&mut store, &config, &c.id, &field_reads, now)?;
    let validate = t.elapsed().as_secs_f64();
    println!(
        "validated and stored {} reads in one transaction in {validate:.2} s: {:.2}× the scan, {:.0} reads/s",
        out.len(),
        validate / scan,
        out.len() as f64 / validate
    );
    if reset {
        println!(
            "peak memory (VmHWM) of the scan, route files and validation: {} (generating and loading the district: {load_peak})",
            vm_hwm()
        );
    } else {
        println!(
            "peak memory (VmHWM, includes generating and loading the district): {}",
            vm_hwm()
        );
    }
    Ok(())
}

#[path = "support/peak_memory.rs"]
mod peak_memory;

/// The process's peak resident memory (`VmHWM`), as `/proc/self/status` prints it.
fn vm_hwm() -> String {
    peak_memory::peak_rss_kib(None).map_or_else(|| "unknown".into(), |k| format!("{k} kB"))
}
