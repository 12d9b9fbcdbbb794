//! The reference handheld, for a field test or a demo: docks (serial cradle or HTTP), loads its route,
//! walks it producing realistic reads, then docks again to upload them.
//!
//! ```text
//! cargo run --release --example handheld -- --serial /dev/ttyUSB0 --device HH-01
//! cargo run --release --example handheld -- --http http://127.0.0.1:8080 --token HH-01.SECRET
//! ```
//! `--upload-only` / `--download-only` dock once; `--state FILE` keeps what the handheld holds
//! (reads not yet acknowledged, routes, partial downloads) between runs, as its flash would.

use anyhow::{bail, Context};
use clap::Parser;
use firmware_protocol::message as msg;
use indicatif::{ProgressBar, ProgressStyle};
use meter_gateway::sync::client::{Cradle, HttpCradle, Progress, SerialCradle};
use meter_gateway::sync::handheld::{walk_route, HandheldState, Mode, ReadModel, Rng};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Serial port of the cradle (or one end of a PTY pair).
    #[arg(long, conflicts_with = "http")]
    serial: Option<PathBuf>,
    /// Base URL of the gateway's HTTP device API.
    #[arg(long)]
    http: Option<String>,
    /// Device id (serial docks identify the handheld by it).
    #[arg(long)]
    device: Option<String>,
    /// Device token `DEVICE.SECRET` (required with --http).
    #[arg(long)]
    token: Option<String>,
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// File holding the handheld's state between runs.
    #[arg(long)]
    state: Option<PathBuf>,
    #[arg(long, conflicts_with = "download_only")]
    upload_only: bool,
    #[arg(long)]
    download_only: bool,
    /// Seed of the reading model.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "REF")]
    reader: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = match (&args.device, &args.token) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.split('.').next().unwrap_or_default().to_string(),
        (None, None) => bail!("give --device (serial) or --token (HTTP)"),
    };
    let mut state = match &args.state {
        Some(p) if p.exists() => HandheldState::from_bytes(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )?,
        _ => HandheldState::new(&device),
    };
    let save = |s: &HandheldState| -> anyhow::Result<()> {
        if let Some(p) = &args.state {
            std::fs::write(p, s.to_bytes()).with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(())
    };
    let mut cradle: Box<dyn Cradle> = match (&args.serial, &args.http) {
        (Some(p), _) => Box::new(SerialCradle::open(p, args.baud)?),
        (None, Some(url)) => {
            let token = args.token.clone().context("--http needs --token")?;
            Box::new(HttpCradle::new(url, &token)?)
        }
        (None, None) => bail!("give --serial PATH or --http URL"),
    };
    if !args.upload_only {
        state = dock(&mut *cradle, state, Mode::default())?;
        save(&state)?;
        if args.download_only {
            return Ok(());
        }
        let mut rng = Rng::new(args.seed);
        // A stop a minute, route after route, finishing now: no read is timed after the docking.
        let stops: usize = state.routes.iter().map(|r| r.stops.len()).sum();
        let now = meter_gateway::sync::protocol_time(chrono::Local::now().naive_local());
        let mut start = now - 60 * stops as i64;
        for i in 0..state.routes.len() {
            let n = walk_route(
                &mut state,
                i,
                &ReadModel::default(),
                &mut rng,
                &args.reader,
                start,
            );
            start += 60 * state.routes[i].stops.len() as i64;
            let confirmed = state
                .pending
                .iter()
                .filter(|r| {
                    matches!(
                        r.read_type,
                        msg::ReadType::HighConfirmed | msg::ReadType::LowConfirmed
                    )
                })
                .count();
            eprintln!(
                "walked route {}: {n} reads ({confirmed} confirmed out of range so far)",
                state.routes[i].route_id
            );
        }
        save(&state)?;
    }
    state = dock(
        &mut *cradle,
        state,
        Mode {
            download: false,
            ..Mode::default()
        },
    )?;
    save(&state)?;
    eprintln!("{} read(s) still unacknowledged", state.unacknowledged());
    Ok(())
}

/// One docking with a progress bar.
fn dock(
    cradle: &mut dyn Cradle,
    state: HandheldState,
    mode: Mode,
) -> anyhow::Result<HandheldState> {
    let pending = state.unacknowledged();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:8} [{bar:40}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t0 = Instant::now();
    let (state, report) = cradle.dock(state, mode, &mut |p| {
        let (what, done, total) = match p {
            Progress::Route { done, total } => ("route", done, total),
            Progress::Reads { done, total } => ("reads", done, total),
        };
        bar.set_message(what);
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    for line in &report.log {
        eprintln!("  {line}");
    }
    if !report.finished {
        eprintln!("docking incomplete; state kept for the next one");
    }
    eprintln!(
        "docked in {:.2} s: {} of {pending} read(s) acknowledged, {} route(s) and {} code(s) received",
        t0.elapsed().as_secs_f64(),
        report.reads_acknowledged,
        report.routes,
        report.codes
    );
    Ok(state)
}
