//! The sync engine: what happens when a handheld docks, shared by the serial and HTTP transports.
//!
//! [`SyncService`] is the one place reads from a handheld enter the store (judged by `cycles::judge`
//! on a read-only connection, stored by `cycles::store_judged` in a savepoint of a group commit) and
//! routes and codes leave it. The serial
//! docks ([`serial`]) drive a [`dock::DockSession`] per cradle; the HTTP device API calls the service
//! directly. [`handheld`] is the reference handheld, used by the tests, `examples/handheld.rs` and the
//! benchmark.

pub mod api;
pub mod client;
pub mod dock;
pub mod handheld;
pub mod serial;

use crate::cycles::{self, CycleError, CycleSettings, Disposition, Refusal, RouteCode, RouteFile};
use crate::domain::{DeviceRef, FieldRead, ReadMethod, ReadStatus, ReadType, RefusalReason};
pub use crate::store::Via;
use crate::store::{Db, DbError, GroupedError, MeterRow, NewRefusal, StoreError, UploadBatch};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use firmware_protocol::message as msg;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// What the sync engine needs of the settings: what reading cycles need (it judges and stores reads
/// through `cycles`) and `[docks]`. `config::Config` implements it; so does [`Settings`].
pub trait SyncSettings: CycleSettings {
    fn docks(&self) -> &DockConfig;
}

/// The settings the sync engine uses, alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub cycles: cycles::Settings,
    pub docks: DockConfig,
}

impl CycleSettings for Settings {
    fn validation(&self) -> &crate::vee::ValidationConfig {
        &self.cycles.validation
    }
    fn reads(&self) -> &cycles::ReadsConfig {
        &self.cycles.reads
    }
}

impl SyncSettings for Settings {
    fn docks(&self) -> &DockConfig {
        &self.docks
    }
}

/// `[docks]` settings.
///
/// ```toml
/// [docks]
/// usb = [{ vid = 0x0403, pid = 0x6001 }]   # FTDI cradles: every matching port becomes a dock
/// reopen_interval_ms = 1000
/// ```
///
/// The deadlines bound every wait of a docking (PROTOCOL.md §3.8): when the handheld makes no
/// progress for that long, the dock sends `Error { 10 timeout }` and `Bye`, logs why, and is free for
/// the next handheld.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DockConfig {
    /// USB serial adapters (by vendor and product id) that are cradles.
    pub usb: Vec<UsbId>,
    /// How often a dock whose port is gone (adapter pulled) tries to open it again.
    pub reopen_interval_ms: u64,
    /// Line speed of the cradles.
    pub baud: u32,
    /// From the link coming up to the handheld's `Hello`.
    pub hello_timeout_secs: u64,
    /// While reads are announced (`Hello.pending_reads`) and not all in: without a byte of a read
    /// batch arriving.
    pub reads_timeout_secs: u64,
    /// From a `RouteOffer` to its `RouteAccept` (or `Error { 8 no space }`).
    pub accept_timeout_secs: u64,
    /// While a route transfer is on the line: without the handheld acknowledging a byte of it.
    pub transfer_timeout_secs: u64,
    /// From the dock's `Bye` (and the last transfer's progress) to the handheld's `Bye`.
    pub bye_timeout_secs: u64,
}

impl Default for DockConfig {
    fn default() -> Self {
        Self {
            usb: Vec::new(),
            reopen_interval_ms: 1000,
            baud: 115_200,
            hello_timeout_secs: 20,
            reads_timeout_secs: 60,
            accept_timeout_secs: 30,
            transfer_timeout_secs: 60,
            bye_timeout_secs: 30,
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
    #[error("a handheld's state id must not be 0 (protocol 2: a random number made when its storage was initialised)")]
    NoStateId,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct UploadReceipt {
    /// Every read of the batch with `device_seq` up to this one is stored or, when listed in
    /// `refused`, durably logged as refused: the handheld may delete them, except the refused reads
    /// whose reason asks it to send them again under a new number. `None` for an empty batch, or a
    /// batch refused whole (`batch_conflict`).
    pub up_to_seq: Option<u64>,
    /// Reads stored now.
    pub stored: usize,
    /// Of those, reads validation flagged for a clerk.
    pub flagged: usize,
    /// Reads stored before, proven the same (re-sent after a lost acknowledgement, or the same
    /// reading of the meter already in the cycle): not stored again.
    pub already_received: usize,
    /// Reads not stored, and why.
    pub refused: Vec<RefusedRead>,
    /// The highest `device_seq` the gateway now holds from this handheld state (stored or refused).
    pub held_seq: u64,
    /// The batch id was used before for different reads: nothing of this batch was taken. Says so.
    /// (Not part of an HTTP answer: that is a 409.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_conflict: Option<String>,
}

/// A read of an upload that was not stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RefusedRead {
    pub device_seq: u64,
    /// `seq_conflict` (send it again under a new sequence number), `bad_time`, `off_route`,
    /// `bad_read`.
    pub reason: String,
    /// One sentence for the reader or a clerk, naming the read.
    pub detail: String,
}

impl RefusedRead {
    /// The reason as the wire protocol codes it.
    pub fn wire_reason(&self) -> msg::RefusalReason {
        msg::RefusalReason::from_name(&self.reason).unwrap_or(msg::RefusalReason::BadRead)
    }
}

/// The sync engine's handle: cheap to clone, shared by every dock and HTTP request.
#[derive(Clone)]
pub struct SyncService {
    db: Db,
    config: Arc<dyn SyncSettings>,
    /// HTTP uploads between judging and their commit. Judging runs ahead of the one writer; without
    /// a bound, judged batches of every handheld syncing at once would wait in memory. (Serial docks
    /// upload one batch at a time each, from their own threads.)
    in_flight: Arc<tokio::sync::Semaphore>,
    /// What time it is in the district, for the serial docks (the HTTP API's handlers pass theirs).
    clock: crate::clock::DistrictClock,
}

/// Uploads judged or being judged at once (each holds its judged batch until its group commits);
/// enough to fill the writer's groups.
const UPLOADS_IN_FLIGHT: usize = 16;

impl SyncService {
    pub fn new(db: Db, config: Arc<dyn SyncSettings>) -> Self {
        Self {
            db,
            config,
            in_flight: Arc::new(tokio::sync::Semaphore::new(UPLOADS_IN_FLIGHT)),
            clock: crate::clock::DistrictClock::default(),
        }
    }

    /// The same engine reading `clock` (the daemon's: the district's zone); without it, the system
    /// clock in the host's zone.
    pub fn with_clock(mut self, clock: crate::clock::DistrictClock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock the serial docks read.
    pub fn clock(&self) -> &crate::clock::DistrictClock {
        &self.clock
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn config(&self) -> &dyn SyncSettings {
        &*self.config
    }

    /// Validates and durably stores a batch of reads from a device state; returns only after the
    /// commit. Idempotent by (device, state, device_seq) and, when given, by batch id, both proven by
    /// the content: a repeat with different content is refused, never acknowledged as received.
    ///
    /// The batch is judged on a read-only connection, in parallel with other uploads and the writer;
    /// the writer only stores it (judging again itself if the district changed meanwhile).
    pub async fn upload(
        &self,
        from: Uploader<'_>,
        batch_id: Option<&str>,
        reads: Vec<msg::Read>,
        now: NaiveDateTime,
    ) -> Result<UploadReceipt, SyncError> {
        self.upload_with_malformed(from, batch_id, reads, Vec::new(), now)
            .await
    }

    /// [`SyncService::upload`] of a batch that also carried reads the protocol cannot express (a
    /// malformed field in an HTTP upload): those are refused as they came, their content logged,
    /// and listed in the receipt with the others.
    pub async fn upload_with_malformed(
        &self,
        from: Uploader<'_>,
        batch_id: Option<&str>,
        reads: Vec<msg::Read>,
        malformed: Vec<MalformedRead>,
        now: NaiveDateTime,
    ) -> Result<UploadReceipt, SyncError> {
        use tracing::Instrument;
        let span = upload_span(from, batch_id, reads.len() + malformed.len());
        async move {
            let _in_flight = self
                .in_flight
                .acquire()
                .await
                .map_err(|_| DbError::Stopped)?;
            let mut upload = self.upload_of(from, batch_id, reads, now)?;
            upload.add_malformed(malformed);
            if self.db.has_readers() {
                let epoch = self.db.district_epoch();
                upload.judged = Some((epoch, self.db.read(upload.judging()).await?));
            }
            Ok(self.db.grouped(upload.storing(self.db.clone())).await?)
        }
        .instrument(span)
        .await
    }

    /// [`SyncService::upload`] for serial threads (never call it on a runtime worker).
    pub fn upload_blocking(
        &self,
        from: Uploader<'_>,
        batch_id: Option<&str>,
        reads: Vec<msg::Read>,
        now: NaiveDateTime,
    ) -> Result<UploadReceipt, SyncError> {
        let _span = upload_span(from, batch_id, reads.len()).entered();
        let mut upload = self.upload_of(from, batch_id, reads, now)?;
        if self.db.has_readers() {
            let epoch = self.db.district_epoch();
            upload.judged = Some((epoch, self.db.read_blocking(upload.judging())?));
        }
        Ok(self.db.grouped_blocking(upload.storing(self.db.clone()))?)
    }

    fn upload_of(
        &self,
        from: Uploader<'_>,
        batch_id: Option<&str>,
        reads: Vec<msg::Read>,
        now: NaiveDateTime,
    ) -> Result<Upload, SyncError> {
        if reads.len() > msg::limits::READS {
            return Err(SyncError::TooManyReads {
                got: reads.len(),
                max: msg::limits::READS,
            });
        }
        if from.state_id == 0 {
            return Err(SyncError::NoStateId);
        }
        let contents: Vec<[u8; 32]> = reads.iter().map(read_content).collect();
        let batch = batch_id.map(|b| (b.to_string(), batch_content(&contents)));
        let mut early = Vec::new();
        let mut judged_at = Vec::with_capacity(reads.len());
        let mut domain = Vec::with_capacity(reads.len());
        for (i, r) in reads.iter().enumerate() {
            match field_read(from.device_id, from.state_id, r, contents[i]) {
                Ok(d) => {
                    judged_at.push(i);
                    domain.push(d);
                }
                Err(refusal) => early.push((i, refusal)),
            }
        }
        Ok(Upload {
            config: self.config.clone(),
            device: from.device_id.to_string(),
            state_id: from.state_id,
            via: from.via,
            batch,
            reads,
            contents,
            early,
            malformed: Vec::new(),
            judged_at,
            domain,
            now,
            judged: None,
        })
    }

    /// A handheld says hello (a serial `Hello`, or `POST /api/v1/device/hello`): `None` when the
    /// device is not registered (or retired), else where it stands: the highest sequence number the
    /// gateway holds from its state. Notes the device and the state as seen.
    pub async fn hello(
        &self,
        from: Uploader<'_>,
        firmware: Option<&str>,
        now: NaiveDateTime,
    ) -> Result<Option<u64>, SyncError> {
        let work = hello_work(from, firmware, now);
        self.db.call(work).await?
    }

    /// [`SyncService::hello`] for serial threads.
    pub fn hello_blocking(
        &self,
        from: Uploader<'_>,
        firmware: Option<&str>,
        now: NaiveDateTime,
    ) -> Result<Option<u64>, SyncError> {
        let work = hello_work(from, firmware, now);
        self.db.call_blocking(work)?
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
            .call(move |s| routes_for_in(s, &*config, &device, now))
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
            .call_blocking(move |s| routes_for_in(s, &*config, &device, now))?
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

/// The span every line logged while an upload is judged and stored belongs to.
fn upload_span(from: Uploader<'_>, batch_id: Option<&str>, reads: usize) -> tracing::Span {
    tracing::info_span!(
        "upload",
        device = from.device_id,
        state = %format_args!("{:016x}", from.state_id),
        via = from.via.as_str(),
        batch = batch_id.unwrap_or("-"),
        reads
    )
}

/// A read of an HTTP upload that is not a read the protocol can express (a `device_seq` out of
/// range, a read time that is no date, an unknown read type...): refused as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedRead {
    pub device_seq: u64,
    pub meter_id: String,
    pub refusal: Refusal,
    /// The read as it came (JSON).
    pub read_json: String,
}

/// Who sends an upload: the device, its state identity, and how it is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uploader<'a> {
    pub device_id: &'a str,
    pub state_id: u64,
    pub via: Via,
}

type HelloWork = Box<dyn FnOnce(&mut crate::store::Store) -> Result<Option<u64>, SyncError> + Send>;

fn hello_work(from: Uploader<'_>, firmware: Option<&str>, now: NaiveDateTime) -> HelloWork {
    let (device, state, via) = (from.device_id.to_string(), from.state_id, from.via);
    let firmware = firmware.map(str::to_string);
    Box::new(move |s| {
        if state == 0 {
            return Err(SyncError::NoStateId);
        }
        if !s.device_known(&device)? {
            return Ok(None);
        }
        if let Some(f) = &firmware {
            s.note_device_seen(&device, f, now)?;
        }
        let conn = s.conn();
        crate::store::note_device_state(conn, &device, state, via, firmware.as_deref(), now)?;
        Ok(Some(crate::store::held_seq(conn, &device, state)?))
    })
}

fn codes_in(s: &mut crate::store::Store) -> Result<Vec<RouteCode>, SyncError> {
    Ok(s.codes(false)?.iter().map(RouteCode::from).collect())
}

fn routes_for_in(
    s: &mut crate::store::Store,
    config: &dyn CycleSettings,
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

/// A batch of reads on its way to the writer.
struct Upload {
    config: Arc<dyn SyncSettings>,
    device: String,
    state_id: u64,
    via: Via,
    /// The batch id and the digest of its reads.
    batch: Option<(String, [u8; 32])>,
    reads: Vec<msg::Read>,
    /// SHA-256 of each read as sent ([`read_content`]).
    contents: Vec<[u8; 32]>,
    /// Reads refused before judging (a time that is no calendar time), by position in `reads`.
    early: Vec<(usize, Refusal)>,
    /// Reads the protocol could not express at all (HTTP), refused as they came.
    malformed: Vec<MalformedRead>,
    /// The position in `reads` of each read judged (`domain`).
    judged_at: Vec<usize>,
    /// The judged reads as the domain sees them, until a reader takes them to judge
    /// ([`Upload::judging`]).
    domain: Vec<FieldRead>,
    now: NaiveDateTime,
    /// Judged on a reader under this district epoch: the reads by cycle, each part with the
    /// positions of its reads in `domain`.
    judged: Option<(u64, Result<Vec<UploadPart>, SyncError>)>,
}

type UploadPart = (Vec<usize>, cycles::Judged);

/// Resolves each read's cycle (its meter's route's open cycle, else the device's) and judges the
/// reads of each cycle.
fn judge_upload(
    conn: &rusqlite::Connection,
    config: &dyn CycleSettings,
    device: &str,
    domain: Vec<FieldRead>,
    now: NaiveDateTime,
) -> Result<Vec<UploadPart>, SyncError> {
    let routes = crate::store::routes_of_device(conn, device)?;
    let cycles::ReadMeters { meters, histories } = cycles::meters_of(conn, &domain, &routes)?;
    // A route is in one open cycle at most.
    let cycle_of_route: HashMap<String, String> = crate::store::routes_in_open_cycles(conn)?
        .into_iter()
        .collect();
    let mut fallback: Option<Option<String>> = None;
    let mut by_cycle: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, m) in meters.iter().enumerate() {
        let on_route = m
            .as_ref()
            .and_then(|m| m.account.as_ref())
            .and_then(|a| cycle_of_route.get(&a.route_id));
        let cycle = match on_route {
            Some(c) => c.clone(),
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
    let mut domain: Vec<Option<(FieldRead, Option<MeterRow>)>> =
        domain.into_iter().zip(meters).map(Some).collect();
    by_cycle
        .into_iter()
        .map(|(cycle, indexes)| {
            let (part, meters): (Vec<FieldRead>, Vec<Option<MeterRow>>) =
                indexes.iter().filter_map(|&i| domain[i].take()).unzip();
            let judged =
                cycles::judge_with_meters(conn, config, &cycle, part, meters, &histories, now)?;
            Ok((indexes, judged))
        })
        .collect()
}

impl Upload {
    /// The work a read-only connection does for the upload: its reads judged, by cycle. It takes the
    /// domain reads along (the writer rebuilds them only if it must judge again).
    fn judging(
        &mut self,
    ) -> impl FnOnce(&rusqlite::Connection) -> Result<Vec<UploadPart>, SyncError> + Send + 'static
    {
        let (config, device, domain, now) = (
            self.config.clone(),
            self.device.clone(),
            std::mem::take(&mut self.domain),
            self.now,
        );
        move |conn| judge_upload(conn, &*config, &device, domain, now)
    }

    /// The upload's work inside its savepoint of a group commit on `db`'s writer.
    fn storing(
        self,
        db: Db,
    ) -> impl FnOnce(&rusqlite::Connection) -> Result<UploadReceipt, SyncError> + Send + 'static
    {
        move |conn| self.store(conn, db.district_epoch())
    }

    /// Judges (unless a reader did, under the current district epoch), stores, completes orders,
    /// logs refusals, records the batch.
    fn store(
        mut self,
        conn: &rusqlite::Connection,
        epoch: u64,
    ) -> Result<UploadReceipt, SyncError> {
        if let Some((batch_id, content)) = &self.batch {
            if let Some(before) =
                crate::store::upload_batch_in(conn, &self.device, self.state_id, batch_id)?
            {
                return self.answer_again(conn, batch_id, *content, before);
            }
        }
        let (device, now) = (self.device.as_str(), self.now);
        if !crate::store::device_registered(conn, device)? {
            // Retired (or never registered) since it said hello: nothing it sends is taken.
            return Err(SyncError::UnknownDevice(device.to_string()));
        }
        crate::store::note_device_state(conn, device, self.state_id, self.via, None, now)?;
        let parts = match self.judged.take() {
            Some((judged_under, parts)) if judged_under == epoch => parts?,
            // The district changed since: judge here, on the writer.
            Some(_) => judge_upload(conn, &*self.config, device, self.rebuild_domain(), now)?,
            None => {
                let domain = std::mem::take(&mut self.domain);
                judge_upload(conn, &*self.config, device, domain, now)?
            }
        };
        self.store_parts(conn, parts)
    }

    /// Adds reads refused as they came; the batch's digest covers them too.
    fn add_malformed(&mut self, malformed: Vec<MalformedRead>) {
        if malformed.is_empty() {
            return;
        }
        if let Some((_, content)) = &mut self.batch {
            let mut h = Sha256::new();
            h.update(*content);
            for m in &malformed {
                h.update(Sha256::digest(m.read_json.as_bytes()));
            }
            *content = h.finalize().into();
        }
        self.malformed = malformed;
    }

    /// The judged reads again, for judging on the writer (a reader took them).
    fn rebuild_domain(&self) -> Vec<FieldRead> {
        self.judged_at
            .iter()
            .filter_map(|&i| {
                field_read(
                    &self.device,
                    self.state_id,
                    &self.reads[i],
                    self.contents[i],
                )
                .ok()
            })
            .collect()
    }

    /// A batch id seen before: the same answer when the reads are the same, else a refusal of the
    /// whole batch (logged), nothing stored.
    fn answer_again(
        &self,
        conn: &rusqlite::Connection,
        batch_id: &str,
        content: [u8; 32],
        before: UploadBatch,
    ) -> Result<UploadReceipt, SyncError> {
        let held_seq = crate::store::held_seq(conn, &self.device, self.state_id)?;
        if before.content == Some(content) {
            // The same reads again: the first answer again (with what is held now).
            let mut first: UploadReceipt =
                serde_json::from_str(&before.answer_json).map_err(|e| {
                    StoreError::Invalid(format!("the answer kept for batch {batch_id}: {e}"))
                })?;
            first.held_seq = held_seq;
            return Ok(first);
        }
        let detail = format!(
            "batch {batch_id} was received before with {} other read(s): a batch id names one list of \
             reads; send these under a new batch id",
            before.reads
        );
        let reads_json =
            serde_json::Value::Array(self.reads.iter().map(read_json).collect()).to_string();
        crate::store::record_refusal(
            conn,
            &NewRefusal {
                device_id: &self.device,
                state_id: self.state_id,
                device_seq: self.reads.iter().map(|r| r.device_seq).max(),
                batch_id: Some(batch_id),
                reason: RefusalReason::BatchConflict,
                detail: &detail,
                meter_id: self.reads.first().map_or("", |r| r.meter_id.as_str()),
                read_json: &reads_json,
                content: &content,
                existing_read_id: None,
            },
            self.now,
        )?;
        tracing::warn!(device = %self.device, batch = batch_id, "batch id reused for different reads: refused");
        Ok(UploadReceipt {
            up_to_seq: None,
            stored: 0,
            flagged: 0,
            already_received: 0,
            refused: Vec::new(),
            held_seq,
            batch_conflict: Some(detail),
        })
    }

    fn store_parts(
        &self,
        conn: &rusqlite::Connection,
        parts: Vec<UploadPart>,
    ) -> Result<UploadReceipt, SyncError> {
        let (device, now) = (self.device.as_str(), self.now);
        let mut receipt = UploadReceipt {
            up_to_seq: self
                .reads
                .iter()
                .map(|r| r.device_seq)
                .chain(self.malformed.iter().map(|m| m.device_seq))
                .max(),
            stored: 0,
            flagged: 0,
            already_received: 0,
            refused: Vec::new(),
            held_seq: 0,
            batch_conflict: None,
        };
        let mut refusals: Vec<(usize, Refusal, Option<i64>)> = self
            .early
            .iter()
            .map(|(i, r)| (*i, r.clone(), None))
            .collect();
        for (indexes, judged) in parts {
            let outcomes = cycles::store_judged(conn, judged, now)?;
            for o in outcomes {
                let at = self.judged_at[indexes[o.index]];
                let read = &self.reads[at];
                // The read an order is completed with: a repeat of the reading already in the
                // cycle confirms that read (a re-read that found the same value).
                let completing = match o.disposition {
                    Disposition::Repeat { of } => of,
                    _ => o.read_id,
                };
                match o.disposition {
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
                    // Stored behind the earlier read of the same reading: nothing it carried is lost.
                    Disposition::Repeat { .. } => receipt.stored += 1,
                    Disposition::Refused(refusal) => {
                        let held = (o.read_id != 0).then_some(o.read_id);
                        refusals.push((at, refusal, held));
                        continue;
                    }
                }
                if let Some(order) = &read.order {
                    complete_order(conn, device, read, order, completing, now)?;
                }
            }
        }
        refusals.sort_by_key(|(i, ..)| *i);
        for (at, refusal, existing) in refusals {
            let read = &self.reads[at];
            crate::store::record_refusal(
                conn,
                &NewRefusal {
                    device_id: device,
                    state_id: self.state_id,
                    device_seq: Some(read.device_seq),
                    batch_id: self.batch.as_ref().map(|(b, _)| b.as_str()),
                    reason: refusal.reason,
                    detail: &refusal.detail,
                    meter_id: &read.meter_id,
                    read_json: &read_json(read).to_string(),
                    content: &self.contents[at],
                    existing_read_id: existing,
                },
                now,
            )?;
            tracing::warn!(device, seq = read.device_seq, reason = %refusal.reason, detail = %refusal.detail, "read refused");
            receipt.refused.push(RefusedRead {
                device_seq: read.device_seq,
                reason: refusal.reason.as_str().to_string(),
                detail: refusal.detail,
            });
        }
        for m in &self.malformed {
            let content: [u8; 32] = Sha256::digest(m.read_json.as_bytes()).into();
            crate::store::record_refusal(
                conn,
                &NewRefusal {
                    device_id: device,
                    state_id: self.state_id,
                    device_seq: Some(m.device_seq),
                    batch_id: self.batch.as_ref().map(|(b, _)| b.as_str()),
                    reason: m.refusal.reason,
                    detail: &m.refusal.detail,
                    meter_id: &m.meter_id,
                    read_json: &m.read_json,
                    content: &content,
                    existing_read_id: None,
                },
                now,
            )?;
            tracing::warn!(device, seq = m.device_seq, reason = %m.refusal.reason, detail = %m.refusal.detail, "read refused as it came");
            receipt.refused.push(RefusedRead {
                device_seq: m.device_seq,
                reason: m.refusal.reason.as_str().to_string(),
                detail: m.refusal.detail.clone(),
            });
        }
        receipt.refused.sort_by_key(|r| r.device_seq);
        receipt.held_seq = crate::store::held_seq(conn, device, self.state_id)?;
        if let Some((batch_id, content)) = &self.batch {
            let answer_json = serde_json::to_string(&receipt)
                .map_err(|e| StoreError::Invalid(format!("the answer to batch {batch_id}: {e}")))?;
            crate::store::record_upload_batch(
                conn,
                device,
                self.state_id,
                batch_id,
                &UploadBatch {
                    content: Some(*content),
                    reads: self.reads.len() as u64,
                    up_to_seq: receipt.up_to_seq,
                    answer_json,
                },
                now,
            )?;
        }
        Ok(receipt)
    }
}

/// Completes the field order a stored read carries.
fn complete_order(
    conn: &rusqlite::Connection,
    device: &str,
    read: &msg::Read,
    order: &msg::OrderCompletion,
    read_id: i64,
    now: NaiveDateTime,
) -> Result<(), SyncError> {
    let result = serde_json::json!({
        "read_id": read_id,
        "reading": read.reading,
        "new_meter_id": order.new_meter_id,
        "new_meter_initial": order.new_meter_initial,
    });
    let done = i64::try_from(order.order_id)
        .ok()
        .map(|id| crate::store::complete_field_order(conn, id, read_id, &result.to_string(), now));
    match done {
        Some(Ok(true)) => {
            // A completed re-read comes back into the read it was ordered for, here where it
            // completes (not when a clerk next looks).
            let id = i64::try_from(order.order_id).unwrap_or_default();
            crate::cycles::fold_reread(conn, id, now).map_err(|e| {
                SyncError::Store(crate::store::StoreError::Invalid(format!(
                    "folding re-read order {id}: {e}"
                )))
            })?;
        }
        Some(Err(e)) => return Err(e.into()),
        _ => tracing::warn!(
            device,
            order = order.order_id,
            "read completes no open field order"
        ),
    }
    Ok(())
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

/// SHA-256 of a read as the handheld sent it: its `Read` record's encoding (PROTOCOL.md §3.5). The
/// same read sent over a cradle or the HTTP API has the same digest.
pub fn read_content(r: &msg::Read) -> [u8; 32] {
    let mut bytes = Vec::with_capacity(64);
    msg::encode_read(r, &mut bytes);
    Sha256::digest(&bytes).into()
}

/// The digest of a batch's reads, in order: what a batch id stands for.
fn batch_content(contents: &[[u8; 32]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in contents {
        h.update(c);
    }
    h.finalize().into()
}

/// A protocol `Read` from a device state as the domain's field read; refused when its time is no
/// calendar time at all (other bounds are `cycles::intake`'s).
pub fn field_read(
    device_id: &str,
    state_id: u64,
    r: &msg::Read,
    content: [u8; 32],
) -> Result<FieldRead, Refusal> {
    let read_at = local_time(r.read_time).ok_or_else(|| Refusal {
        reason: RefusalReason::BadTime,
        detail: format!(
            "read of meter {}: read time {} (seconds since 1970, district time) is not a calendar time",
            r.meter_id, r.read_time
        ),
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
        device: Some(DeviceRef {
            device_id: device_id.to_string(),
            state_id,
            seq: r.device_seq,
            content,
        }),
    })
}

/// A read as the refused-reads log keeps it: as `POST /api/v1/device/reads` takes it, or, when its
/// time is no calendar time, with `read_time` as the protocol's seconds.
pub fn read_json(r: &msg::Read) -> serde_json::Value {
    match api::ReadJson::from_protocol(r) {
        Some(j) => serde_json::to_value(j).unwrap_or_default(),
        None => {
            let placeholder = msg::Read {
                read_time: 0,
                ..r.clone()
            };
            let mut v = api::ReadJson::from_protocol(&placeholder)
                .and_then(|j| serde_json::to_value(j).ok())
                .unwrap_or_default();
            v["read_time"] = serde_json::Value::from(r.read_time);
            v
        }
    }
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
            let ((low, high), (low_last, high_last)) = s.limits.map_or(((0, top), (0, top)), |l| {
                (
                    (l.first_day.low, l.first_day.high),
                    (l.last_day.low, l.last_day.high),
                )
            });
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
                low_limit_last: low_last,
                high_limit_last: high_last,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{self, DemoParams};
    use crate::domain::FlagKind;
    use crate::store::Store;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// An upload judged on a reader, then the account closed by a clerk before the writer stored it:
    /// the writer sees the district epoch moved and judges again, so the read is flagged as use on
    /// an inactive account instead of passing on the stale judgement.
    #[test]
    fn an_upload_judged_before_a_district_change_is_judged_again_by_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("district.db");
        let mut store = Store::open(&path).unwrap();
        let d = demo::generate(&DemoParams {
            accounts: 300,
            seed: 5,
            as_of: day(2026, 11, 5),
        });
        demo::load(&mut store, &d).unwrap();
        let noon = day(2026, 11, 10).and_hms_opt(12, 0, 0).unwrap();
        d.open_cycle(&mut store, noon).unwrap();
        let token = crate::auth::DeviceToken::generate("HH-09").unwrap();
        store.add_device(&token, noon).unwrap();
        // An active account's meter and its last reading.
        let (account, meter, last): (String, String, i64) = store
            .conn()
            .query_row(
                "SELECT a.account_id, m.meter_id, (SELECT max(reading) FROM history h
                   WHERE h.meter_id = m.meter_id AND h.read_on >= date(?1, '-40 days'))
                   FROM accounts a JOIN meters m ON m.account_id = a.account_id AND m.status = 'active'
                  WHERE a.status = 'active' AND a.rate_class = 'residential'
                    AND EXISTS (SELECT 1 FROM history h WHERE h.meter_id = m.meter_id
                                 AND h.read_on >= date(?1, '-40 days'))
                  ORDER BY a.account_id LIMIT 1",
                [d.cycle.window_from.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        let db = Db::start(store).unwrap();
        assert!(db.has_readers());
        let sync = SyncService::new(db.clone(), Arc::new(Settings::default()));
        let read = msg::Read {
            device_seq: 1,
            meter_id: meter,
            reading: last as u64 + 9,
            read_time: protocol_time(d.cycle.window_from.and_hms_opt(10, 0, 0).unwrap()),
            read_type: msg::ReadType::Regular,
            method: msg::ReadMethod::Keyed,
            message_codes: Vec::new(),
            skip_code: None,
            note: None,
            reader_id: "T1".into(),
            order: None,
        };
        let from = Uploader {
            device_id: "HH-09",
            state_id: 9,
            via: Via::Serial,
        };
        let mut upload = sync.upload_of(from, None, vec![read], noon).unwrap();
        let epoch = db.district_epoch();
        let parts = db.read_blocking(upload.judging()).unwrap();
        let judged_flags = parts.as_ref().unwrap()[0].1.decisions()[0].flags.clone();
        assert!(
            judged_flags
                .iter()
                .all(|f| f.kind != FlagKind::InactiveUsage),
            "judged while the account was active: {judged_flags:?}"
        );
        upload.judged = Some((epoch, parts));
        // A clerk closes the account meanwhile.
        db.call_blocking(move |s| {
            s.conn()
                .execute(
                    "UPDATE accounts SET status = 'inactive' WHERE account_id = ?1",
                    [account],
                )
                .unwrap()
        })
        .unwrap();
        assert_ne!(db.district_epoch(), epoch);
        // A read-only call does not move the epoch (every HTTP request checks its token with one).
        let now_epoch = db.district_epoch();
        db.call_blocking(|s| s.routes().unwrap().len()).unwrap();
        assert_eq!(db.district_epoch(), now_epoch);
        let receipt = db.grouped_blocking(upload.storing(db.clone())).unwrap();
        assert_eq!((receipt.stored, receipt.flagged), (1, 1));
        let flags: Vec<String> = db
            .call_blocking(|s| {
                let mut st = s.conn().prepare("SELECT flag FROM flags").unwrap();
                let rows = st.query_map([], |r| r.get(0)).unwrap();
                rows.collect::<rusqlite::Result<Vec<String>>>().unwrap()
            })
            .unwrap();
        assert!(flags.contains(&"inactive_usage".to_string()), "{flags:?}");
        db.shutdown();
    }

    /// A commit by another process (a CLI command next to the daemon) moves the epoch at the
    /// writer's next group.
    #[test]
    fn another_process_committing_moves_the_district_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let db = Db::start(Store::open(&path).unwrap()).unwrap();
        db.grouped_blocking(|c| c.execute("INSERT INTO routes (route_id) VALUES ('R01')", []))
            .unwrap();
        let before = db.district_epoch();
        let other = Store::open(&path).unwrap();
        other
            .conn()
            .execute("INSERT INTO routes (route_id) VALUES ('R02')", [])
            .unwrap();
        db.grouped_blocking(|c| c.execute("INSERT INTO routes (route_id) VALUES ('R03')", []))
            .unwrap();
        assert_ne!(db.district_epoch(), before);
        db.shutdown();
    }

    /// The office's day limits (`domain::WindowLimits::on_day`) and the handheld's
    /// (`message::limits_on`) are one formula: the spec's vectors, then random stops.
    #[test]
    fn the_office_and_the_handheld_compute_the_same_day_limits() {
        use crate::domain::{DayLimits, Register, Unit, WindowLimits};
        let text = include_str!("../../firmware-protocol/vectors/limits.txt");
        let mut cases = 0;
        for case in text.split("\n\n").filter(|c| c.contains("name = ")) {
            let field = |k: &str| {
                case.lines()
                    .find_map(|l| l.strip_prefix(&format!("{k} = ")))
                    .map(str::to_string)
            };
            let num = |k: &str| field(k).unwrap().parse::<u64>().unwrap();
            let reg = Register {
                dials: num("dials") as u8,
                multiplier: 1,
                unit: Unit::Hcf,
            };
            let w = WindowLimits {
                first: (num("low_first"), num("high_first")),
                last: (num("low_last"), num("high_last")),
            };
            let (from, to, day) = (num("window_from"), num("window_to"), num("day"));
            let got = w.on_day(
                &reg,
                num("previous_reading"),
                to as i64 - from as i64,
                day as i64 - from as i64,
            );
            let want = match field("limits").as_deref() {
                Some("any") => DayLimits::Any,
                _ => DayLimits::Range {
                    low: num("low"),
                    high: num("high"),
                },
            };
            assert_eq!(got, want, "{case}");
            cases += 1;
        }
        assert!(cases >= 10);
        let mut rng = handheld::Rng::new(77);
        for _ in 0..20_000 {
            let dials = 1 + rng.below(12) as u8;
            let m = 10u64.pow(u32::from(dials));
            let mut r = || rng.below(m);
            let (prev, a, b, c, d) = (r(), r(), r(), r(), r());
            let days = rng.below(40);
            let day = rng.below(50);
            let office = WindowLimits {
                first: (a, b),
                last: (c, d),
            }
            .on_day(
                &Register {
                    dials,
                    multiplier: 1,
                    unit: Unit::Hcf,
                },
                prev,
                days as i64,
                day as i64,
            );
            let handheld = msg::limits_on(
                dials,
                prev,
                (a, b),
                (c, d),
                (100, 100 + days as u32),
                100 + day as u32,
            );
            let same = match (office, handheld) {
                (DayLimits::Any, msg::DayLimits::Any) => true,
                (DayLimits::Range { low, high }, msg::DayLimits::Range { low: l, high: h }) => {
                    (low, high) == (l, h)
                }
                _ => false,
            };
            assert!(
                same,
                "{dials} {prev} {a} {b} {c} {d} {days} {day}: {office:?} {handheld:?}"
            );
        }
    }
}
