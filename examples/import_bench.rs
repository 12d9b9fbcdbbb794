//! CIS import throughput against a raw rusqlite baseline.
//!
//! `cargo run --release --example import_bench -- [--accounts 100000] [--seed 7]`
//!
//! Generates N accounts, one meter each and 36 monthly history rows per account as CSV files in a temp
//! dir, imports them through `cis::import_file` into a fresh database, then inserts the same history
//! rows with one raw prepared statement in one transaction into another fresh database with the same
//! schema and pragmas. Prints both rates, their ratio (target: import >= 50% of raw) and peak memory.

use anyhow::{bail, Context};
use meter_gateway::cis::{self, Table};
use meter_gateway::store::{Store, MIGRATIONS};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

const MONTHS: u64 = 36;

/// xorshift64*: tiny, seeded, good enough to vary consumption.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn account_id(i: u64) -> String {
    format!("{:07}", 1_000_000 + i)
}

fn meter_id(i: u64) -> String {
    format!("M{:08}", i)
}

/// Calls `f(account, meter, read_on, reading, kind)` for every history row, in file order.
fn history_rows(seed: u64, accounts: u64, mut f: impl FnMut(&str, &str, &str, u64, &str)) {
    let mut rng = Rng::new(seed);
    let start = chrono::NaiveDate::from_ymd_opt(2023, 1, 28).expect("valid date");
    let dates: Vec<String> = (0..MONTHS)
        .map(|m| {
            start
                .checked_add_months(chrono::Months::new(m as u32))
                .expect("in range")
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect();
    for i in 0..accounts {
        let (a, m) = (account_id(i), meter_id(i));
        let mut reading = rng.below(500_000);
        for (month, date) in dates.iter().enumerate() {
            let kind = if month == 0 {
                "initial"
            } else if rng.below(25) == 0 {
                "estimated"
            } else {
                "actual"
            };
            f(&a, &m, date, reading, kind);
            reading = (reading + 5 + rng.below(40)) % 1_000_000;
        }
    }
}

fn generate(dir: &Path, seed: u64, accounts: u64) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed ^ 0xACC0);
    let mut w = BufWriter::new(std::fs::File::create(dir.join("accounts.csv"))?);
    writeln!(
        w,
        "account_id,name,service_address,status,rate_class,route_id,sequence,apn,phone"
    )?;
    for i in 0..accounts {
        let class =
            ["residential", "residential", "commercial", "irrigation"][rng.below(4) as usize];
        writeln!(
            w,
            "{},\"Customer {i}, Jr.\",\"{} Elm St, Springfield\",active,{class},R{:03},{},{:09},555-{:04}",
            account_id(i),
            100 + i % 9000,
            i / 1000,
            i % 1000 * 10,
            i,
            i % 10_000
        )?;
    }
    w.flush()?;
    let mut w = BufWriter::new(std::fs::File::create(dir.join("meters.csv"))?);
    writeln!(
        w,
        "meter_id,account_id,status,dials,multiplier,unit,installed_on,removed_on"
    )?;
    for i in 0..accounts {
        writeln!(
            w,
            "{},{},active,6,1,hcf,2022-12-01,",
            meter_id(i),
            account_id(i)
        )?;
    }
    w.flush()?;
    let mut w = BufWriter::new(std::fs::File::create(dir.join("history.csv"))?);
    writeln!(w, "account_id,meter_id,read_on,reading,kind")?;
    let mut err = None;
    history_rows(seed, accounts, |a, m, d, r, k| {
        if err.is_none() {
            if let Err(e) = writeln!(w, "{a},{m},{d},{r},{k}") {
                err = Some(e);
            }
        }
    });
    if let Some(e) = err {
        return Err(e.into());
    }
    w.flush()?;
    Ok(())
}

#[path = "support/peak_memory.rs"]
mod peak_memory;

fn peak_memory_kib() -> Option<u64> {
    peak_memory::peak_rss_kib(None)
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "n/a".into())
}

fn main() -> anyhow::Result<()> {
    let mut accounts = 100_000u64;
    let mut seed = 7u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--accounts" => accounts = args.next().context("--accounts N")?.parse()?,
            "--seed" => seed = args.next().context("--seed N")?.parse()?,
            other => {
                bail!("unknown argument {other}; usage: import_bench [--accounts N] [--seed N]")
            }
        }
    }
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    generate(dir.path(), seed, accounts)?;
    let size = |f: &str| {
        std::fs::metadata(dir.path().join(f))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    println!(
        "generated {accounts} accounts, {accounts} meters, {} history rows in {:.1}s (history.csv {:.1} MiB)",
        accounts * MONTHS,
        t.elapsed().as_secs_f64(),
        size("history.csv") as f64 / (1 << 20) as f64
    );
    println!("peak memory after generation: {}", mib(peak_memory_kib()));

    // ---- through the importer ----
    let mut store = Store::open(&dir.path().join("import.db"))?;
    let mut history_rate = 0.0;
    for table in [Table::Accounts, Table::Meters, Table::History] {
        let file = dir.path().join(format!("{table}.csv"));
        let t = Instant::now();
        let report = cis::import_file(&mut store, table, &file, &mut |_| {})?;
        let secs = t.elapsed().as_secs_f64();
        let rate = report.rows as f64 / secs;
        println!(
            "import {table:<8}: {:>9} rows in {secs:6.2}s = {rate:>10.0} rows/s",
            report.rows
        );
        if table == Table::History {
            history_rate = rate;
        }
    }
    let t = Instant::now();
    let again = cis::import_file(
        &mut store,
        Table::History,
        &dir.path().join("history.csv"),
        &mut |_| {},
    )?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "re-import hist : {:>9} rows in {secs:6.2}s = {:>10.0} rows/s ({} unchanged)",
        again.rows,
        again.rows as f64 / secs,
        again.unchanged
    );
    let import_peak = peak_memory_kib();
    println!("peak memory after import: {}", mib(import_peak));
    let t = Instant::now();
    let exported = cis::export(
        &store,
        Table::History,
        &dir.path().join("history-export.csv"),
    )?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "export history : {:>9} rows in {secs:6.2}s = {:>10.0} rows/s",
        exported.rows,
        exported.rows as f64 / secs
    );
    drop(store);

    // ---- raw baseline: same schema and pragmas, same rows, one prepared statement ----
    let mut conn = rusqlite::Connection::open(dir.path().join("raw.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    for m in MIGRATIONS {
        conn.execute_batch(m)?;
    }
    {
        let tx = conn.transaction()?;
        {
            let mut route =
                tx.prepare("INSERT OR IGNORE INTO routes (route_id, name) VALUES (?1, ?1)")?;
            let mut acct = tx.prepare(
                "INSERT INTO accounts (account_id, name, service_address, status, rate_class, route_id, sequence) \
                 VALUES (?1, 'x', 'x', 'active', 'residential', ?2, ?3)",
            )?;
            let mut meter = tx.prepare(
                "INSERT INTO meters (meter_id, account_id, status, dials, multiplier, unit) \
                 VALUES (?1, ?2, 'active', 6, 1, 'hcf')",
            )?;
            for i in 0..accounts {
                let r = format!("R{:03}", i / 1000);
                route.execute([&r])?;
                acct.execute(rusqlite::params![account_id(i), r, i])?;
                meter.execute([meter_id(i), account_id(i)])?;
            }
        }
        tx.commit()?;
    }
    let t = Instant::now();
    let tx = conn.transaction()?;
    let mut n = 0u64;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO history (account_id, meter_id, read_on, reading, kind) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut err = None;
        history_rows(seed, accounts, |a, m, d, r, k| {
            if err.is_none() {
                match stmt.execute(rusqlite::params![a, m, d, r as i64, k]) {
                    Ok(_) => n += 1,
                    Err(e) => err = Some(e),
                }
            }
        });
        if let Some(e) = err {
            return Err(e.into());
        }
    }
    tx.commit()?;
    let secs = t.elapsed().as_secs_f64();
    let raw_rate = n as f64 / secs;
    println!("raw    history : {n:>9} rows in {secs:6.2}s = {raw_rate:>10.0} rows/s");
    println!(
        "import / raw = {:.0}% (target >= 50%)",
        100.0 * history_rate / raw_rate
    );
    println!(
        "peak memory (VmHWM) of the whole run: {}",
        mib(peak_memory_kib())
    );
    Ok(())
}
