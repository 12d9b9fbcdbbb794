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
use meter_gateway::sync::handheld::{walk_route, Handheld, HandheldState, Mode, ReadModel, Rng};
use meter_gateway::sync::serial::run_handheld;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    let mut link: Box<dyn Dock> = match (&args.serial, &args.http) {
        (Some(p), _) => Box::new(SerialDock::open(p, args.baud)?),
        (None, Some(url)) => {
            let token = args.token.clone().context("--http needs --token")?;
            Box::new(HttpDock::new(url, &token)?)
        }
        (None, None) => bail!("give --serial PATH or --http URL"),
    };
    let now_local = chrono::Local::now().naive_local();
    if !args.upload_only {
        state = link.dock(state, Mode::default())?;
        save(&state)?;
        if args.download_only {
            return Ok(());
        }
        let mut rng = Rng::new(args.seed);
        let start = meter_gateway::sync::protocol_time(now_local);
        for i in 0..state.routes.len() {
            let n = walk_route(
                &mut state,
                i,
                &ReadModel::default(),
                &mut rng,
                &args.reader,
                start,
            );
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
    state = link.dock(
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

trait Dock {
    fn dock(&mut self, state: HandheldState, mode: Mode) -> anyhow::Result<HandheldState>;
}

struct SerialDock {
    port: Box<dyn serialport::SerialPort>,
    baud: u32,
    start: Instant,
    docking: u32,
}

impl SerialDock {
    fn open(path: &std::path::Path, baud: u32) -> anyhow::Result<Self> {
        let port = serialport::new(path.to_string_lossy(), baud)
            .timeout(Duration::from_millis(5))
            .open()
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            port,
            baud,
            start: Instant::now(),
            docking: 0,
        })
    }
}

impl Dock for SerialDock {
    fn dock(&mut self, state: HandheldState, mode: Mode) -> anyhow::Result<HandheldState> {
        self.docking += 1;
        let pending = state.unacknowledged() as u64;
        let nonce = std::process::id() ^ (self.docking << 24);
        let now = self.start.elapsed().as_millis() as u64;
        let mut hh = Handheld::new(state, mode, self.baud, nonce, now);
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message("docking");
        let t0 = Instant::now();
        let finished = run_handheld(
            &mut *self.port,
            self.baud,
            &mut hh,
            self.start,
            Duration::from_secs(600),
            |h| {
                let o = h.outcome();
                if o.bytes_down > 0 {
                    bar.set_message("route");
                    bar.set_length(bar.length().unwrap_or(0).max(o.bytes_down));
                    bar.set_position(o.bytes_down);
                } else if o.bytes_up > 0 {
                    bar.set_message("reads");
                    bar.set_length(bar.length().unwrap_or(0).max(o.bytes_up));
                    bar.set_position(o.bytes_up);
                }
            },
        )?;
        bar.finish_and_clear();
        while let Some(line) = hh.poll_log() {
            eprintln!("  {line}");
        }
        let o = hh.outcome();
        if let Some((code, text)) = &o.refused {
            bail!("the dock refused the handheld: error {code}: {text}");
        }
        if !finished || !o.done {
            eprintln!(
                "docking incomplete (link down: {}); state kept for the next one",
                o.link_down
            );
        }
        eprintln!(
            "docked in {:.2} s: {} of {pending} read(s) acknowledged, {} route(s) and {} code(s) received",
            t0.elapsed().as_secs_f64(),
            o.reads_acknowledged,
            o.routes_received,
            o.codes_received
        );
        Ok(hh.state())
    }
}

/// The HTTP device API (`src/serve/device_api.rs`), over a minimal HTTP/1.1 client.
struct HttpDock {
    host: String,
    token: String,
}

impl HttpDock {
    fn new(url: &str, token: &str) -> anyhow::Result<Self> {
        let host = url
            .strip_prefix("http://")
            .context("only http:// URLs are supported")?
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            host,
            token: token.to_string(),
        })
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut s = TcpStream::connect(&self.host)
            .with_context(|| format!("connecting to {}", self.host))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host,
            self.token,
            body.len()
        )?;
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status)?;
        let code: u16 = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut chunked = false;
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            if line.trim().is_empty() {
                break;
            }
            if line.to_ascii_lowercase().starts_with("transfer-encoding:")
                && line.contains("chunked")
            {
                chunked = true;
            }
        }
        let mut raw = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                r.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                if n == 0 {
                    break;
                }
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                raw.extend_from_slice(&chunk[..n]);
            }
        } else {
            r.read_to_end(&mut raw)?;
        }
        let text = String::from_utf8_lossy(&raw);
        if !(200..300).contains(&code) {
            bail!("{method} {path}: HTTP {code}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }
}

impl Dock for HttpDock {
    fn dock(&mut self, mut state: HandheldState, mode: Mode) -> anyhow::Result<HandheldState> {
        use serde_json::Value;
        let t0 = Instant::now();
        if mode.upload && state.unacknowledged() > 0 {
            let bar = ProgressBar::new(state.unacknowledged() as u64);
            // The batches formed at an earlier docking first, each with the same id and reads.
            for (id, reads) in state.batches(mode.max_batch) {
                let body = serde_json::json!({
                    "batch_id": format!("{}-{id:08x}", state.device_id),
                    "reads": reads.iter().map(read_json).collect::<Vec<_>>(),
                });
                let receipt =
                    self.request("POST", "/api/v1/device/reads", Some(&body.to_string()))?;
                if let Some(up_to) = receipt["up_to_seq"].as_u64() {
                    state.acknowledge(up_to);
                }
                bar.inc(reads.len() as u64);
            }
            bar.finish_and_clear();
        }
        if mode.download {
            let routes = self.request("GET", "/api/v1/device/route", None)?;
            for r in routes["routes"].as_array().into_iter().flatten() {
                let route = route_from_json(r)?;
                state.routes.retain(|x| x.route_id != route.route_id);
                state.routes.push(route);
            }
            let codes = self.request("GET", "/api/v1/device/codes", None)?;
            state.codes = codes["codes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c: &Value| msg::MessageCode {
                    code: c["code"].as_str().unwrap_or_default().into(),
                    category: c["category"].as_str().unwrap_or_default().into(),
                    description: c["description"].as_str().unwrap_or_default().into(),
                    requires_follow_up: c["requires_follow_up"].as_bool().unwrap_or(false),
                })
                .collect();
        }
        eprintln!(
            "synced over HTTP in {:.2} s: {} route(s), {} code(s), {} read(s) unacknowledged",
            t0.elapsed().as_secs_f64(),
            state.routes.len(),
            state.codes.len(),
            state.unacknowledged()
        );
        Ok(state)
    }
}

fn read_json(r: &msg::Read) -> serde_json::Value {
    let time = meter_gateway::sync::local_time(r.read_time)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string());
    serde_json::json!({
        "device_seq": r.device_seq,
        "meter_id": r.meter_id,
        "reading": r.reading,
        "read_time": time,
        "read_type": r.read_type.name().unwrap_or("regular"),
        "method": r.method.name().unwrap_or("keyed"),
        "message_codes": r.message_codes,
        "skip_code": r.skip_code,
        "note": r.note,
        "reader_id": r.reader_id,
        "order": r.order.as_ref().map(|o| serde_json::json!({
            "order_id": o.order_id,
            "new_meter_id": o.new_meter_id,
            "new_meter_initial": o.new_meter_initial,
        })),
    })
}

/// A route file as `GET /api/v1/device/route` sends it, as the handheld holds routes.
fn route_from_json(r: &serde_json::Value) -> anyhow::Result<msg::Route> {
    let day = |v: &serde_json::Value| -> u32 {
        v.as_str()
            .and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .map_or(0, meter_gateway::sync::protocol_day)
    };
    let stops = r["stops"]
        .as_array()
        .context("route without stops")?
        .iter()
        .map(|s| {
            let dials = s["dials"].as_u64().unwrap_or(4) as u8;
            let top = 10u64
                .checked_pow(u32::from(dials))
                .map_or(u64::MAX, |m| m - 1);
            msg::RouteStop {
                sequence: s["sequence"].as_u64().unwrap_or(0) as u32,
                account_id: s["account_id"].as_str().unwrap_or_default().into(),
                customer_name: s["customer_name"].as_str().unwrap_or_default().into(),
                service_address: s["service_address"].as_str().unwrap_or_default().into(),
                meter_id: s["meter_id"].as_str().unwrap_or_default().into(),
                location_note: String::new(),
                hazard_note: String::new(),
                dials,
                decimals: 0,
                multiplier: s["multiplier"].as_u64().unwrap_or(1) as u32,
                unit: msg::Unit::from_name(s["unit"].as_str().unwrap_or_default())
                    .unwrap_or(msg::Unit::Unknown(0)),
                previous_reading: s["previous_reading"].as_u64().unwrap_or(0),
                previous_read_date: day(&s["previous_read_on"]),
                low_limit: s["limits"]["low"].as_u64().unwrap_or(0),
                high_limit: s["limits"]["high"].as_u64().unwrap_or(top),
                field_orders: s["field_orders"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|o| msg::FieldOrder {
                        order_id: o["order_id"].as_u64().unwrap_or(0),
                        kind: msg::FieldOrderKind::from_name(
                            o["kind"].as_str().unwrap_or_default(),
                        )
                        .unwrap_or(msg::FieldOrderKind::Unknown(0)),
                        instructions: o["instructions"].as_str().unwrap_or_default().into(),
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(msg::Route {
        route_id: r["route_id"].as_str().unwrap_or_default().into(),
        cycle_id: r["cycle_id"].as_str().unwrap_or_default().into(),
        window_from: day(&r["window_from"]),
        window_to: day(&r["window_to"]),
        stops,
    })
}
