//! The sync engine: what happens when a handheld docks, shared by the serial and HTTP transports.
//!
//! [`SyncService`] is the one place reads from a handheld enter the store (through
//! `cycles::ingest_in`, in a savepoint of a group commit) and routes and codes leave it. The serial
//! docks ([`serial`]) drive a [`dock::DockSession`] per cradle; the HTTP device API calls the service
//! directly. [`handheld`] is the reference handheld, used by the tests, `examples/handheld.rs` and the
//! benchmark.

pub mod client;
pub mod dock;
pub mod handheld;
pub mod serial;

use crate::config::Config;
use crate::cycles::{self, CycleError, Disposition, RouteCode, RouteFile};
use crate::domain::{FieldRead, ReadMethod, ReadStatus, ReadType};
use crate::store::{Db, DbError, GroupedError, StoreError};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use firmware_protocol::message as msg;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// `[docks]` settings.
///
/// ```toml
/// [docks]
/// usb = [{ vid = 0x0403, pid = 0x6001 }]   # FTDI cradles: every matching port becomes a dock
/// reopen_interval_ms = 1000
/// ```
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DockConfig {
    /// USB serial adapters (by vendor and product id) that are cradles.
    pub usb: Vec<UsbId>,
    /// How often a dock whose port is gone (adapter pulled) tries to open it again.
    pub reopen_interval_ms: u64,
    /// Line speed of the cradles.
    pub baud: u32,
}

impl Default for DockConfig {
    fn default() -> Self {
        Self {
            usb: Vec::new(),
            reopen_interval_ms: 1000,
            baud: 115_200,
        }
    }
}

/// A USB vendor/product id pair.
#[derive(Debug, Clone, Copy, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UsbId {
    pub vid: u16,
    pub pid: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cycle(#[from] CycleError),
    #[error("device {0} is not registered (or is retired)")]
    UnknownDevice(String),
    #[error(
        "no open cycle takes reads from device {0}: open a cycle or assign the device a route"
    )]
    NoOpenCycle(String),
    #[error("a batch holds at most {max} reads, got {got}")]
    TooManyReads { got: usize, max: usize },
    #[error("read {device_seq}: time {time} is out of range")]
    BadTime { device_seq: u64, time: i64 },
}

impl From<GroupedError<SyncError>> for SyncError {
    fn from(e: GroupedError<SyncError>) -> Self {
        match e {
            GroupedError::Work(e) => e,
            GroupedError::Db(e) => SyncError::Db(e),
        }
    }
}

/// What became of an upload, once it is durably committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadReceipt {
    /// Every read of the device with `device_seq` up to this one is stored: the handheld may delete
    /// them. `None` for an empty batch.
    pub up_to_seq: Option<u64>,
    /// Reads stored now.
    pub stored: usize,
    /// Of those, reads validation flagged for a clerk.
    pub flagged: usize,
    /// Reads stored before (re-sent after a lost acknowledgement, or the same value already in the
    /// cycle): not stored again.
    pub already_received: usize,
}

/// The sync engine's handle: cheap to clone, shared by every dock and HTTP request.
#[derive(Clone)]
pub struct SyncService {
    db: Db,
    config: Arc<Config>,
}

impl SyncService {
    pub fn new(db: Db, config: Arc<Config>) -> Self {
        Self { db, config }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Validates and durably stores a batch of reads from a device; returns only after the commit.
    /// Idempotent by (device, device_seq) and, when given, by batch id.
    pub async fn upload(
        &self,
        device_id: &str,
        batch_id: Option<&str>,
        reads: Vec<msg::Read>,
        now: NaiveDateTime,
    ) -> Result<UploadReceipt, SyncError> {
        let work = self.upload_work(device_id, batch_id, reads, now)?;
        Ok(self.db.grouped(work).await?)
    }

    /// [`SyncService::upload`] for serial threads (never call it on a runtime worker).
    pub fn upload_blocking(
        &self,
        device_id: &str,
        batch_id: Option<&str>,
        reads: Vec<msg::Read>,
        now: NaiveDateTime,
    ) -> Result<UploadReceipt, SyncError> {
        let work = self.upload_work(device_id, batch_id, reads, now)?;
        Ok(self.db.grouped_blocking(work)?)
    }

    fn upload_work(
        &self,
        device_id: &str,
        batch_id: Option<&str>,
        reads: Vec<msg::Read>,
        now: NaiveDateTime,
    ) -> Result<
        impl FnOnce(&rusqlite::Connection) -> Result<UploadReceipt, SyncError> + Send + 'static,
        SyncError,
    > {
        if reads.len() > msg::limits::READS {
            return Err(SyncError::TooManyReads {
                got: reads.len(),
                max: msg::limits::READS,
            });
        }
        let domain: Vec<FieldRead> = reads
            .iter()
            .map(|r| field_read(device_id, r))
            .collect::<Result<_, _>>()?;
        let config = self.config.clone();
        let device = device_id.to_string();
        let batch = batch_id.map(str::to_string);
        Ok(move |conn: &rusqlite::Connection| {
            store_upload(
                conn,
                &config,
                &device,
                batch.as_deref(),
                &reads,
                domain,
                now,
            )
        })
    }

    /// Whether a device id is registered and not retired; notes it as seen when it is.
    pub fn hello_blocking(
        &self,
        device_id: &str,
        firmware: &str,
        now: NaiveDateTime,
    ) -> Result<bool, SyncError> {
        let (device, firmware) = (device_id.to_string(), firmware.to_string());
        self.db.call_blocking(move |s| -> Result<bool, SyncError> {
            if !s.device_known(&device)? {
                return Ok(false);
            }
            s.note_device_seen(&device, &firmware, now)?;
            Ok(true)
        })?
    }

    /// The routes the device should carry: its assignments in the open cycle, else the next unread
    /// route (which is then assigned to it).
    pub async fn routes_for(
        &self,
        device_id: &str,
        now: NaiveDateTime,
    ) -> Result<Vec<RouteFile>, SyncError> {
        let (config, device) = (self.config.clone(), device_id.to_string());
        self.db
            .call(move |s| routes_for_in(s, &config, &device, now))
            .await?
    }

    /// [`SyncService::routes_for`] for serial threads.
    pub fn routes_for_blocking(
        &self,
        device_id: &str,
        now: NaiveDateTime,
    ) -> Result<Vec<RouteFile>, SyncError> {
        let (config, device) = (self.config.clone(), device_id.to_string());
        self.db
            .call_blocking(move |s| routes_for_in(s, &config, &device, now))?
    }

    /// The message codes handhelds carry (not retired).
    pub async fn codes(&self) -> Result<Vec<RouteCode>, SyncError> {
        self.db.call(codes_in).await?
    }

    /// [`SyncService::codes`] for serial threads.
    pub fn codes_blocking(&self) -> Result<Vec<RouteCode>, SyncError> {
        self.db.call_blocking(codes_in)?
    }
}

fn codes_in(s: &mut crate::store::Store) -> Result<Vec<RouteCode>, SyncError> {
    Ok(s.codes(false)?.iter().map(RouteCode::from).collect())
}

fn routes_for_in(
    s: &mut crate::store::Store,
    config: &Config,
    device: &str,
    now: NaiveDateTime,
) -> Result<Vec<RouteFile>, SyncError> {
    if !s.device_known(device)? {
        return Err(SyncError::UnknownDevice(device.to_string()));
    }
    // Its assigned cycle first, then every other open cycle, oldest first, until one has a route.
    let mut cycles = crate::store::open_cycle_ids(s.conn())?;
    if let Some(c) = crate::store::open_cycle_of_device(s.conn(), device)? {
        cycles.retain(|x| *x != c);
        cycles.insert(0, c);
    }
    for cycle in cycles {
        let routes = s.routes_for_device(&cycle, device, now)?;
        if routes.is_empty() {
            continue;
        }
        // Only this device's routes: building the whole cycle's route files per request made 200
        // handhelds docking at once take minutes.
        return routes
            .iter()
            .map(|r| cycles::route_file(s, config, &cycle, r).map_err(SyncError::from))
            .collect();
    }
    Ok(Vec::new())
}

/// The upload's work inside its savepoint: resolve each read's cycle, ingest, complete orders,
/// record the batch.
fn store_upload(
    conn: &rusqlite::Connection,
    config: &Config,
    device: &str,
    batch: Option<&str>,
    reads: &[msg::Read],
    domain: Vec<FieldRead>,
    now: NaiveDateTime,
) -> Result<UploadReceipt, SyncError> {
    let up_to_seq = reads.iter().map(|r| r.device_seq).max();
    if let Some(b) = batch {
        if let Some((n, up_to)) = crate::store::upload_batch_in(conn, device, b)? {
            return Ok(UploadReceipt {
                up_to_seq: up_to,
                stored: 0,
                flagged: 0,
                already_received: n as usize,
            });
        }
    }
    let mut fallback: Option<Option<String>> = None;
    let mut by_cycle: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in domain.iter().enumerate() {
        let cycle = match crate::store::open_cycle_of_meter(conn, &r.meter_id)? {
            Some(c) => c,
            None => {
                if fallback.is_none() {
                    fallback = Some(crate::store::open_cycle_of_device(conn, device)?);
                }
                fallback
                    .clone()
                    .flatten()
                    .ok_or_else(|| SyncError::NoOpenCycle(device.to_string()))?
            }
        };
        by_cycle.entry(cycle).or_default().push(i);
    }
    let mut receipt = UploadReceipt {
        up_to_seq,
        stored: 0,
        flagged: 0,
        already_received: 0,
    };
    let mut domain: Vec<Option<FieldRead>> = domain.into_iter().map(Some).collect();
    for (cycle, indexes) in by_cycle {
        let part: Vec<FieldRead> = indexes.iter().filter_map(|&i| domain[i].take()).collect();
        let outcomes = cycles::ingest_in(conn, config, &cycle, &part, now)?;
        for o in outcomes {
            let read = &reads[indexes[o.index]];
            match &o.disposition {
                Disposition::Stored { status, .. } => {
                    receipt.stored += 1;
                    if matches!(status, ReadStatus::Flagged | ReadStatus::Held) {
                        receipt.flagged += 1;
                    }
                }
                Disposition::AlreadyReceived => {
                    receipt.already_received += 1;
                    continue; // its order was completed when it was stored
                }
                Disposition::SameAsEarlier => receipt.already_received += 1,
            }
            if let Some(order) = &read.order {
                let result = serde_json::json!({
                    "read_id": o.read_id,
                    "reading": read.reading,
                    "new_meter_id": order.new_meter_id,
                    "new_meter_initial": order.new_meter_initial,
                });
                let done = i64::try_from(order.order_id).ok().map(|id| {
                    crate::store::complete_field_order(
                        conn,
                        id,
                        o.read_id,
                        &result.to_string(),
                        now,
                    )
                });
                if !matches!(done, Some(Ok(true))) {
                    if let Some(Err(e)) = done {
                        return Err(e.into());
                    }
                    tracing::warn!(
                        device,
                        order = order.order_id,
                        "read completes no open field order"
                    );
                }
            }
        }
    }
    if let Some(b) = batch {
        crate::store::record_upload_batch(conn, device, b, reads.len() as u64, up_to_seq, now)?;
    }
    Ok(receipt)
}

// ---- conversions between the wire protocol and the domain --------------------------------------

/// Protocol `time` (seconds since 1970 in district local time) as a local date-time.
pub fn local_time(secs: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(secs, 0).map(|t| t.naive_utc())
}

/// A local date-time as protocol `time`.
pub fn protocol_time(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp()
}

/// Protocol `day` (days since 1970-01-01).
pub fn protocol_day(d: NaiveDate) -> u32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    u32::try_from((d - epoch).num_days()).unwrap_or(0)
}

/// A protocol `Read` from a device as the domain's field read.
pub fn field_read(device_id: &str, r: &msg::Read) -> Result<FieldRead, SyncError> {
    let read_at = local_time(r.read_time).ok_or(SyncError::BadTime {
        device_seq: r.device_seq,
        time: r.read_time,
    })?;
    let read_type = match r.read_type {
        msg::ReadType::Regular => ReadType::Regular,
        msg::ReadType::HighConfirmed => ReadType::HighConfirmed,
        msg::ReadType::LowConfirmed => ReadType::LowConfirmed,
        msg::ReadType::Skipped => ReadType::Skipped,
        // A newer handheld's kind of read: store it as a plain read for validation to judge rather
        // than refuse it (a refused read would sit on the handheld forever).
        _ => ReadType::Regular,
    };
    let method = match r.method {
        msg::ReadMethod::Probe => ReadMethod::Probe,
        msg::ReadMethod::Radio => ReadMethod::Radio,
        _ => ReadMethod::Keyed,
    };
    Ok(FieldRead {
        meter_id: r.meter_id.clone(),
        read_at,
        raw_reading: if read_type == ReadType::Skipped {
            String::new()
        } else {
            r.reading.to_string()
        },
        read_type,
        method,
        reader: r.reader_id.clone(),
        codes: r.message_codes.clone(),
        skip_code: r.skip_code.clone(),
        note: r.note.clone(),
        device: Some((device_id.to_string(), r.device_seq)),
    })
}

/// Cuts `s` to at most `max` bytes on a character boundary (the wire's field limits).
fn fit(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A route file as the wire's `RouteData`: limits as register readings (a wrapping range has
/// `high < low`); a stop without limits accepts any reading of its register.
pub fn route_data(f: &RouteFile) -> msg::Route {
    use msg::limits::{ID, NAME};
    let window_from = protocol_day(f.window_from);
    let stops = f
        .stops
        .iter()
        .map(|s| {
            let top = 10u64
                .checked_pow(u32::from(s.dials))
                .map_or(u64::MAX, |m| m - 1);
            let (low, high) = s.limits.map_or((0, top), |l| (l.low, l.high));
            msg::RouteStop {
                sequence: s.sequence,
                account_id: fit(&s.account_id, ID),
                customer_name: fit(&s.customer_name, NAME),
                service_address: fit(&s.service_address, NAME),
                meter_id: fit(&s.meter_id, ID),
                location_note: String::new(),
                hazard_note: String::new(),
                dials: s.dials,
                decimals: 0,
                multiplier: s.multiplier,
                unit: msg::Unit::from_name(&s.unit).unwrap_or(msg::Unit::Unknown(0)),
                previous_reading: s.previous_reading.unwrap_or(0),
                previous_read_date: s.previous_read_on.map_or(window_from, protocol_day),
                low_limit: low,
                high_limit: high,
                field_orders: s
                    .field_orders
                    .iter()
                    .take(msg::limits::ORDERS_PER_STOP)
                    .map(|o| msg::FieldOrder {
                        order_id: o.order_id as u64,
                        kind: msg::FieldOrderKind::from_name(&o.kind)
                            .unwrap_or(msg::FieldOrderKind::Unknown(0)),
                        instructions: fit(&o.instructions, msg::limits::NOTE),
                    })
                    .collect(),
            }
        })
        .collect();
    msg::Route {
        route_id: fit(&f.route_id, ID),
        cycle_id: fit(&f.cycle_id, ID),
        window_from,
        window_to: protocol_day(f.window_to),
        stops,
    }
}

/// The message-code table as the wire carries it.
pub fn code_table(codes: &[RouteCode]) -> Vec<msg::MessageCode> {
    codes
        .iter()
        .take(msg::limits::CODES)
        .map(|c| msg::MessageCode {
            code: fit(&c.code, msg::limits::CODE),
            category: fit(&c.category, msg::limits::CATEGORY),
            description: fit(&c.description, msg::limits::NAME),
            requires_follow_up: c.requires_follow_up,
        })
        .collect()
}

// ---- dock status board -------------------------------------------------------------------------

/// Where one dock stands, for `GET /api/v1/docks` and the logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DockStatus {
    pub path: String,
    /// `waiting` (port absent), `idle` (no handheld), `connected`, `uploading`, `storing`,
    /// `downloading`, `done`, `refused`, `stopped`.
    pub state: String,
    pub device: Option<String>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub reads_received: u64,
    pub routes_sent: u64,
    pub last_error: Option<String>,
    /// District local time of the last change.
    pub since: Option<NaiveDateTime>,
}

/// An unfinished incoming transfer kept for a device between dockings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPartial {
    pub id: u32,
    pub total: u32,
    pub data: Vec<u8>,
}

#[derive(Default)]
struct BoardInner {
    docks: BTreeMap<String, DockStatus>,
    partials: HashMap<String, Vec<HeldPartial>>,
}

/// Live status of every dock, and the partial uploads held per device (so that a transfer cut by a
/// cable pull resumes at the next docking, on any dock). Cheap to clone.
#[derive(Clone, Default)]
pub struct DockBoard {
    inner: Arc<Mutex<BoardInner>>,
}

impl DockBoard {
    fn with<T>(&self, f: impl FnOnce(&mut BoardInner) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Every dock's status, by path.
    pub fn snapshot(&self) -> Vec<DockStatus> {
        self.with(|b| b.docks.values().cloned().collect())
    }

    pub fn status(&self, path: &str) -> Option<DockStatus> {
        self.with(|b| b.docks.get(path).cloned())
    }

    /// Changes one dock's status.
    pub fn update(&self, path: &str, f: impl FnOnce(&mut DockStatus)) {
        self.with(|b| {
            let s = b
                .docks
                .entry(path.to_string())
                .or_insert_with(|| DockStatus {
                    path: path.to_string(),
                    ..DockStatus::default()
                });
            f(s)
        })
    }

    /// Keeps a device's unfinished uploads (replacing what was kept before).
    pub fn keep_partials(&self, device: &str, partials: Vec<HeldPartial>) {
        self.with(|b| {
            if partials.is_empty() {
                b.partials.remove(device);
            } else {
                b.partials.insert(device.to_string(), partials);
            }
        })
    }

    /// Takes the device's kept partial uploads.
    pub fn take_partials(&self, device: &str) -> Vec<HeldPartial> {
        self.with(|b| b.partials.remove(device).unwrap_or_default())
    }
}
