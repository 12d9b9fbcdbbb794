//! The handheld's side of a docking, over a serial cradle or the HTTP device API: the sync loop a
//! firmware team writes, as executable reference. Used by `examples/handheld.rs` and by `demo`.

use super::api::{
    state_id_text, CodesJson, HelloJson, ReadJson, ReceiptJson, RoutesJson, UploadJson, WelcomeJson,
};
use super::handheld::{Handheld, HandheldState, Mode};
use super::serial::run_handheld;
use firmware_protocol::message as msg;
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
    /// Reads the gateway refused (their content is in its refused-reads list; a read refused for a
    /// sequence conflict is numbered again and sent again).
    pub reads_refused: u64,
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
            reads_refused: o.reads_refused as u64,
            routes: o.routes_received,
            codes: o.codes_received,
            finished: finished && o.done,
            log,
        };
        Ok((hh.state(), report))
    }
}

/// The HTTP device API (`/api/v1/device/...`, PROTOCOL.md §4) with a bearer device token, over
/// ureq, with the daemon's own JSON types ([`super::api`]).
pub struct HttpCradle {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// The longest a route download may be (JSON of a 20,000-stop route is about 10 MB).
const MAX_ANSWER_BYTES: u64 = 64 << 20;

impl HttpCradle {
    pub fn new(url: &str, token: &str) -> Result<Self, ClientError> {
        if !url.starts_with("http://") {
            return Err(ClientError::Url(url.to_string()));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            agent,
        })
    }

    fn request<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T, ClientError> {
        let what = format!("{method} {path}");
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let sent = match body {
            Some(b) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(b),
            None => self.agent.get(&url).header("Authorization", &auth).call(),
        };
        let mut response = sent.map_err(|e| ClientError::Io {
            what: format!("{what} to {}", self.base),
            source: std::io::Error::other(e.to_string()),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|e| ClientError::Io {
                what: what.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        if !(200..300).contains(&status) {
            return Err(ClientError::Http {
                method: method.into(),
                path: path.into(),
                status,
                body: text,
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
        let welcome: WelcomeJson = self.request(
            "POST",
            "/api/v1/device/hello",
            Some(&HelloJson {
                state_id: Some(state_id_text(state.state_id)),
                firmware_version: Some(state.firmware.clone()),
            }),
        )?;
        state.held_by_gateway(welcome.held_seq);
        report.log.push(format!(
            "gateway speaks protocol {}, holds reads up to {} from this handheld state",
            welcome.protocol_version, welcome.held_seq
        ));
        if mode.upload && state.unacknowledged() > 0 {
            let total = state.unacknowledged() as u64;
            let mut done = 0;
            // Reads refused for a sequence conflict are numbered again and go up in the next round;
            // a few rounds at most (each renumbered read gets a number the gateway never held).
            for _round in 0..4 {
                if state.unacknowledged() == 0 {
                    break;
                }
                // Batches formed at an earlier docking go first, each with the same id and reads.
                for (id, reads) in state.batches(mode.max_batch) {
                    let body = UploadJson {
                        state_id: Some(state_id_text(state.state_id)),
                        batch_id: format!("{}-{id:08x}", state.device_id),
                        reads: reads.iter().filter_map(ReadJson::from_protocol).collect(),
                    };
                    let ReceiptJson { receipt, .. } =
                        self.request("POST", "/api/v1/device/reads", Some(&body))?;
                    let refused: Vec<msg::RefusedRead> =
                        receipt.refused.iter().map(|r| r.to_protocol()).collect();
                    for r in &receipt.refused {
                        report.log.push(format!(
                            "read {} refused ({}): {}",
                            r.device_seq, r.reason, r.detail
                        ));
                    }
                    let before = state.unacknowledged();
                    if let Some(up_to) = receipt.up_to_seq {
                        state.acknowledge(up_to, &refused);
                    }
                    state.held_by_gateway(receipt.held_seq);
                    let acknowledged = before.saturating_sub(state.unacknowledged()) as u64;
                    done += acknowledged;
                    report.reads_acknowledged += acknowledged;
                    report.reads_refused += refused.len() as u64;
                    progress(Progress::Reads { done, total });
                }
            }
        }
        if mode.download {
            let routes: RoutesJson = self.request("GET", "/api/v1/device/route", None::<&()>)?;
            for f in &routes.routes {
                let route = super::route_data(f);
                state.routes.retain(|x| x.route_id != route.route_id);
                state.routes.push(route);
                report.routes += 1;
            }
            let codes: CodesJson = self.request("GET", "/api/v1/device/codes", None::<&()>)?;
            state.codes = super::code_table(&codes.codes);
            report.codes = state.codes.len();
        }
        report.finished = true;
        Ok((state, report))
    }
}
