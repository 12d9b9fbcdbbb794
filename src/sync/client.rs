//! The handheld's side of a docking, over a serial cradle or the HTTP device API: the sync loop a
//! firmware team writes, as executable reference. Used by `examples/handheld.rs` and by `demo`.

use super::handheld::{Handheld, HandheldState, Mode};
use super::serial::run_handheld;
use firmware_protocol::message as msg;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{method} {path}: HTTP {status}: {body}")]
    Http {
        method: String,
        path: String,
        status: u16,
        body: String,
    },
    #[error("{what}: bad JSON from the gateway: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    #[error("the dock refused the handheld: error {code}: {text}")]
    Refused { code: u16, text: String },
    #[error("only http:// URLs are supported, not {0}")]
    Url(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClientError {
    let what = what.into();
    move |source| ClientError::Io { what, source }
}

/// Where a docking stands, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Route bytes received so far / expected.
    Route { done: u64, total: u64 },
    /// Read bytes (serial) or reads (HTTP) acknowledged so far / to send.
    Reads { done: u64, total: u64 },
}

/// What one docking achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockReport {
    pub reads_acknowledged: u64,
    pub routes: usize,
    pub codes: usize,
    /// False when the link went down or the time ran out: the state keeps what is not acknowledged.
    pub finished: bool,
    pub log: Vec<String>,
}

/// A way to dock: a serial cradle or the HTTP API.
pub trait Cradle {
    fn dock(
        &mut self,
        state: HandheldState,
        mode: Mode,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(HandheldState, DockReport), ClientError>;
}

/// A cradle on a serial port (or one end of a PTY pair).
pub struct SerialCradle {
    port: Box<dyn serialport::SerialPort>,
    baud: u32,
    start: Instant,
    dockings: u32,
    timeout: Duration,
}

impl SerialCradle {
    pub fn open(path: &Path, baud: u32) -> Result<Self, ClientError> {
        let port = serialport::new(path.to_string_lossy(), baud)
            .timeout(Duration::from_millis(5))
            .open()
            .map_err(|e| ClientError::Io {
                what: format!("opening {}", path.display()),
                source: e.into(),
            })?;
        Ok(Self::from_port(port, baud))
    }

    pub fn from_port(port: Box<dyn serialport::SerialPort>, baud: u32) -> Self {
        SerialCradle {
            port,
            baud,
            start: Instant::now(),
            dockings: 0,
            timeout: Duration::from_secs(600),
        }
    }
}

impl Cradle for SerialCradle {
    fn dock(
        &mut self,
        state: HandheldState,
        mode: Mode,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(HandheldState, DockReport), ClientError> {
        self.dockings += 1;
        // A fresh nonce per docking tells the dock this is a new connection, not a late frame.
        let nonce =
            std::process::id() ^ (self.dockings << 24) ^ (self.start.elapsed().as_micros() as u32);
        let now = self.start.elapsed().as_millis() as u64;
        let mut hh = Handheld::new(state, mode, self.baud, nonce, now);
        let finished = run_handheld(
            &mut *self.port,
            self.baud,
            &mut hh,
            self.start,
            self.timeout,
            |h| {
                let o = h.outcome();
                if o.bytes_down > 0 {
                    progress(Progress::Route {
                        done: o.bytes_down,
                        total: o.bytes_down.max(o.bytes_down_total),
                    });
                }
                if o.bytes_up > 0 {
                    progress(Progress::Reads {
                        done: o.bytes_up,
                        total: o.bytes_up.max(o.bytes_up_total),
                    });
                }
            },
        )
        .map_err(io("serial docking"))?;
        let mut log = Vec::new();
        while let Some(line) = hh.poll_log() {
            log.push(line);
        }
        let o = hh.outcome();
        if let Some((code, text)) = &o.refused {
            return Err(ClientError::Refused {
                code: *code,
                text: text.clone(),
            });
        }
        let report = DockReport {
            reads_acknowledged: o.reads_acknowledged as u64,
            routes: o.routes_received,
            codes: o.codes_received,
            finished: finished && o.done,
            log,
        };
        Ok((hh.state(), report))
    }
}

/// The HTTP device API (`/api/v1/device/...`) with a bearer device token, over a minimal blocking
/// HTTP/1.1 client (one request per connection).
pub struct HttpCradle {
    host: String,
    token: String,
}

impl HttpCradle {
    pub fn new(url: &str, token: &str) -> Result<Self, ClientError> {
        let host = url
            .strip_prefix("http://")
            .ok_or_else(|| ClientError::Url(url.to_string()))?
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            host,
            token: token.to_string(),
        })
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<Value, ClientError> {
        let what = format!("{method} {path}");
        let mut s =
            TcpStream::connect(&self.host).map_err(io(format!("connecting to {}", self.host)))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(io(&what))?;
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host,
            self.token,
            body.len()
        )
        .map_err(io(&what))?;
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).map_err(io(&what))?;
        let code: u16 = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).map_err(io(&what))? == 0 || line.trim().is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut raw = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).map_err(io(&what))?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                if n == 0 {
                    break;
                }
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).map_err(io(&what))?;
                raw.extend_from_slice(&chunk[..n]);
            }
        } else {
            r.read_to_end(&mut raw).map_err(io(&what))?;
        }
        let text = String::from_utf8_lossy(&raw);
        if !(200..300).contains(&code) {
            return Err(ClientError::Http {
                method: method.into(),
                path: path.into(),
                status: code,
                body: text.into_owned(),
            });
        }
        serde_json::from_str(&text).map_err(|source| ClientError::Json { what, source })
    }
}

impl Cradle for HttpCradle {
    fn dock(
        &mut self,
        mut state: HandheldState,
        mode: Mode,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(HandheldState, DockReport), ClientError> {
        let mut report = DockReport::default();
        if mode.upload && state.unacknowledged() > 0 {
            let total = state.unacknowledged() as u64;
            let mut done = 0;
            // Batches formed at an earlier docking go first, each with the same id and reads.
            for (id, reads) in state.batches(mode.max_batch) {
                let body = json!({
                    "batch_id": format!("{}-{id:08x}", state.device_id),
                    "reads": reads.iter().map(read_json).collect::<Vec<_>>(),
                });
                let receipt =
                    self.request("POST", "/api/v1/device/reads", Some(&body.to_string()))?;
                if let Some(up_to) = receipt["up_to_seq"].as_u64() {
                    state.acknowledge(up_to);
                }
                done += reads.len() as u64;
                report.reads_acknowledged += reads.len() as u64;
                progress(Progress::Reads { done, total });
            }
        }
        if mode.download {
            let routes = self.request("GET", "/api/v1/device/route", None)?;
            for r in routes["routes"].as_array().into_iter().flatten() {
                let route = route_from_json(r);
                state.routes.retain(|x| x.route_id != route.route_id);
                state.routes.push(route);
                report.routes += 1;
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
            report.codes = state.codes.len();
        }
        report.finished = true;
        Ok((state, report))
    }
}

/// A read as `POST /api/v1/device/reads` takes it.
pub fn read_json(r: &msg::Read) -> Value {
    let time = super::local_time(r.read_time).map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string());
    json!({
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
        "order": r.order.as_ref().map(|o| json!({
            "order_id": o.order_id,
            "new_meter_id": o.new_meter_id,
            "new_meter_initial": o.new_meter_initial,
        })),
    })
}

/// A route as `GET /api/v1/device/route` sends it, as the handheld holds routes.
pub fn route_from_json(r: &Value) -> msg::Route {
    let day = |v: &Value| -> u32 {
        v.as_str()
            .and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .map_or(0, super::protocol_day)
    };
    let text = |v: &Value| -> String { v.as_str().unwrap_or_default().to_string() };
    let stops = r["stops"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let dials = s["dials"].as_u64().unwrap_or(4).min(12) as u8;
            let top = 10u64
                .checked_pow(u32::from(dials))
                .map_or(u64::MAX, |m| m - 1);
            msg::RouteStop {
                sequence: s["sequence"].as_u64().unwrap_or(0) as u32,
                account_id: text(&s["account_id"]),
                customer_name: text(&s["customer_name"]),
                service_address: text(&s["service_address"]),
                meter_id: text(&s["meter_id"]),
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
                        instructions: text(&o["instructions"]),
                    })
                    .collect(),
            }
        })
        .collect();
    msg::Route {
        route_id: text(&r["route_id"]),
        cycle_id: text(&r["cycle_id"]),
        window_from: day(&r["window_from"]),
        window_to: day(&r["window_to"]),
        stops,
    }
}
