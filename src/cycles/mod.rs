//! Read cycles over the store: open a cycle, ingest field reads through validation, import a reads
//! CSV, list reads, cycle status and route files.
//!
//! Every read, from a handheld upload or a reads CSV, goes through [`ingest`]: one transaction per
//! batch, validation by [`crate::vee`], the decision stored with the read.

mod csv_reads;
mod intake;
mod reread;
mod route_file;

pub use csv_reads::{import_reads, parse_reads_csv, ImportReport, NumberedRead};
pub use intake::{OffRoutePolicy, ReadTimeBounds, ReadsConfig, Refusal, MAX_DEVICE_SEQ};
pub use reread::{apply_completed_rereads, fold_reread};

/// What reading cycles need of the settings: `[validation]` (how reads are judged) and `[reads]`
/// (which reads are taken at all). `config::Config`, which assembles the settings file, implements it;
/// so does [`Settings`], those two sections alone.
pub trait CycleSettings: Send + Sync {
    fn validation(&self) -> &vee::ValidationConfig;
    fn reads(&self) -> &ReadsConfig;
}

/// The settings reading cycles use, alone (defaults, or built by a caller that has no settings file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub validation: vee::ValidationConfig,
    pub reads: ReadsConfig,
}

impl CycleSettings for Settings {
    fn validation(&self) -> &vee::ValidationConfig {
        &self.validation
    }
    fn reads(&self) -> &ReadsConfig {
        &self.reads
    }
}
pub use route_file::{
    route_file, route_files, LimitRange, RouteCode, RouteFile, RouteOrder, RouteStop, StopLimits,
};

use crate::domain::{Cycle, CycleStatus, FieldRead, Flag, FlagKind, ReadStatus, ReadType};
use crate::store::basis::{self, MeterBasis};
use crate::store::cycles as sql;
use crate::store::{MeterRow, Store, StoreError, StoredRead};
use crate::vee::{self, AccountHistory, MeterContext, ReadInput, Service};
use chrono::{NaiveDate, NaiveDateTime};
use std::collections::{HashMap, HashSet};
use std::io::Write;

#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no cycle `{0}`")]
    UnknownCycle(String),
    #[error("cycle `{0}` already exists")]
    DuplicateCycle(String),
    #[error("cycle `{0}` is closed: it takes no more reads")]
    Closed(String),
    #[error("unknown route `{0}`")]
    UnknownRoute(String),
    #[error("route `{route}` is not in cycle `{cycle}`")]
    RouteNotInCycle { cycle: String, route: String },
    #[error("route `{route}` is already in open cycle `{cycle}`; close it first")]
    RouteBusy { route: String, cycle: String },
    #[error("read window {from} – {to} is inverted")]
    InvertedWindow { from: NaiveDate, to: NaiveDate },
    #[error("a cycle needs at least one route, and the district has none")]
    NoRoutes,
    #[error("cycle id must be 1–40 printable characters without spaces, got `{0}`")]
    BadCycleId(String),
    /// A read of the batch is not taken ([`intake`]): nothing of the batch was written.
    #[error("{0}")]
    Refused(String),
    /// A malformed row of a reads file: nothing of the file was written.
    #[error("{file}:{line}: column {column}: {reason}")]
    Malformed {
        file: String,
        line: u64,
        column: String,
        reason: String,
    },
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
}

impl From<rusqlite::Error> for CycleError {
    fn from(e: rusqlite::Error) -> Self {
        CycleError::Store(StoreError::Sql(e))
    }
}

pub type Result<T, E = CycleError> = std::result::Result<T, E>;

// ---- open and status ---------------------------------------------------------------------------

/// Opens cycle `id` over `routes` (every route when empty). Refuses an unknown route, an inverted
/// window, an existing id, and a route already in another open cycle (a route is read once at a time).
pub fn open_cycle(
    store: &mut Store,
    id: &str,
    from: NaiveDate,
    to: NaiveDate,
    routes: &[String],
    now: NaiveDateTime,
) -> Result<Cycle> {
    let id = id.trim();
    if id.is_empty() || id.len() > 40 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CycleError::BadCycleId(id.to_string()));
    }
    if to < from {
        return Err(CycleError::InvertedWindow { from, to });
    }
    store.write(|tx| {
        if sql::load_cycle(tx, id)?.is_some() {
            return Err(CycleError::DuplicateCycle(id.to_string()));
        }
        let known = sql::route_ids(tx)?;
        let mut chosen: Vec<String> = if routes.is_empty() {
            known.clone()
        } else {
            let mut v: Vec<String> = routes.iter().map(|r| r.trim().to_string()).collect();
            v.sort();
            v.dedup();
            v
        };
        chosen.retain(|r| !r.is_empty());
        if chosen.is_empty() {
            return Err(CycleError::NoRoutes);
        }
        if let Some(r) = chosen.iter().find(|r| known.binary_search(r).is_err()) {
            return Err(CycleError::UnknownRoute(r.clone()));
        }
        let busy = sql::routes_in_open_cycles(tx)?;
        if let Some((route, cycle)) = busy.into_iter().find(|(r, _)| chosen.contains(r)) {
            return Err(CycleError::RouteBusy { route, cycle });
        }
        let cycle = Cycle {
            id: id.to_string(),
            window_from: from,
            window_to: to,
            routes: chosen,
            status: CycleStatus::Open,
        };
        sql::insert_cycle(tx, &cycle, now)?;
        prepare_judging(tx, &cycle.routes)?;
        Ok(cycle)
    })
}

/// Writes the judging basis (`store::basis`) of every meter in service on `routes` that has none (a
/// row that exists is current), so that reads docked during the cycle are judged from one row each.
/// Returns how many it wrote.
pub fn prepare_judging(conn: &rusqlite::Connection, routes: &[String]) -> Result<usize> {
    let routes: HashSet<&str> = routes.iter().map(String::as_str).collect();
    let meters = sql::meters_without_basis(conn, &routes)?;
    if meters.is_empty() {
        return Ok(0);
    }
    let scope = sql::Scope::new(
        conn,
        meters
            .iter()
            .filter_map(|m| m.account_id.clone())
            .collect::<Vec<_>>(),
    )?;
    let empty = AccountHistory::default();
    // Meters are in account order, as history streams by: walked alongside it.
    let mut next = 0;
    let mut written = 0;
    let mut write_until = |account: Option<&str>, history: &AccountHistory| -> Result<()> {
        let before = |m: &MeterRow| match (m.account_id.as_deref(), account) {
            (Some(a), Some(b)) => a < b,
            _ => true,
        };
        let start = next;
        while next < meters.len() && before(&meters[next]) {
            next += 1;
        }
        // Accounts passed without history: their meters are judged on no history.
        written += basis::write_bases(conn, meters[start..next].iter().map(|m| (m, &empty)))?;
        let start = next;
        while next < meters.len() && meters[next].account_id.as_deref() == account {
            next += 1;
        }
        written += basis::write_bases(conn, meters[start..next].iter().map(|m| (m, history)))?;
        Ok(())
    };
    for_each_account_history(conn, &scope, |account, history| {
        write_until(Some(account), history)
    })?;
    write_until(None, &empty)?;
    Ok(written)
}

/// [`prepare_judging`] for the routes of every open cycle: after a change to the district (a CIS
/// import, a reopened cycle) took some rows away. A store error.
pub fn prepare_judging_for_open_cycles(conn: &rusqlite::Connection) -> Result<usize, StoreError> {
    let routes: Vec<String> = sql::routes_in_open_cycles(conn)?
        .into_iter()
        .map(|(route, _)| route)
        .collect();
    prepare_judging(conn, &routes).map_err(|e| match e {
        CycleError::Store(e) => e,
        other => StoreError::Invalid(other.to_string()),
    })
}

/// Where one route of a cycle stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouteProgress {
    pub route_id: String,
    /// Stops to read: active meters of the route's accounts.
    pub expected: u64,
    /// Stops with at least one read.
    pub read_in: u64,
    /// Reads awaiting a clerk.
    pub flagged: u64,
    pub resolved: u64,
    /// Stops with no read yet.
    pub missing: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CycleProgress {
    pub cycle_id: String,
    pub status: String,
    pub window_from: NaiveDate,
    pub window_to: NaiveDate,
    pub routes: Vec<RouteProgress>,
    /// Reads for meters not on any of the cycle's routes (unknown meters, other routes).
    pub unassigned_reads: u64,
}

pub fn cycle_status(store: &Store, cycle_id: &str) -> Result<CycleProgress> {
    cycle_status_in(store.conn(), cycle_id)
}

/// [`cycle_status`] on any connection (a read-only one for the clerk pages).
pub fn cycle_status_in(conn: &rusqlite::Connection, cycle_id: &str) -> Result<CycleProgress> {
    let cycle = crate::store::load_cycle(conn, cycle_id)?
        .ok_or_else(|| CycleError::UnknownCycle(cycle_id.to_string()))?;
    let mut routes: Vec<RouteProgress> = sql::expected_stops(conn, cycle_id)?
        .into_iter()
        .map(|(route_id, expected)| RouteProgress {
            route_id,
            expected,
            ..RouteProgress::default()
        })
        .collect();
    let stops: HashSet<(String, String)> = sql::route_stops(conn, cycle_id, None)?
        .into_iter()
        .filter_map(|m| Some((m.account.as_ref()?.route_id.clone(), m.meter_id)))
        .collect();
    let mut read_meters: HashSet<(String, String)> = HashSet::new();
    let mut unassigned = 0;
    for r in sql::cycle_reads(conn, cycle_id)? {
        let key = (r.route_id.clone().unwrap_or_default(), r.meter_id.clone());
        let Some(p) = routes
            .iter_mut()
            .find(|p| Some(&p.route_id) == r.route_id.as_ref())
        else {
            unassigned += 1;
            continue;
        };
        match r.status {
            // A superseded read is no open exception (its replacement is the meter's read).
            ReadStatus::Flagged | ReadStatus::Held if r.superseded_by.is_none() => p.flagged += 1,
            ReadStatus::Resolved => p.resolved += 1,
            _ => {}
        }
        if stops.contains(&key) && r.status != ReadStatus::Estimated && read_meters.insert(key) {
            p.read_in += 1;
        }
    }
    for p in &mut routes {
        p.missing = p.expected.saturating_sub(p.read_in);
    }
    Ok(CycleProgress {
        cycle_id: cycle.id,
        status: cycle.status.to_string(),
        window_from: cycle.window_from,
        window_to: cycle.window_to,
        routes,
        unassigned_reads: unassigned,
    })
}

// ---- ingest ------------------------------------------------------------------------------------

/// What happened to one read of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Validated and stored.
    Stored {
        status: ReadStatus,
        flags: Vec<Flag>,
    },
    /// The same (device, sequence) was stored before: a re-sent read, not stored again.
    AlreadyReceived,
    /// The same value for the same meter is already in this cycle, and the read is not a
    /// handheld's (a reads CSV imported again): nothing new, not stored.
    SameAsEarlier,
    /// A handheld's read with the same reading as a read already in the cycle for its meter, but
    /// not the same read (another time, note, code or sequence number): stored, with what it
    /// carries, superseded by the earlier read (which stays the meter's read; no `duplicate`).
    Repeat {
        /// The read already in the cycle.
        of: i64,
    },
    /// Not stored ([`intake`]): a reused sequence number with different content, a read time out of
    /// bounds, an off-route read the District refuses. `read_id` of the outcome is the read already
    /// held under the sequence number for a `seq_conflict`, else 0.
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReadOutcome {
    /// Position in the batch.
    pub index: usize,
    pub meter_id: String,
    /// The stored read (for `AlreadyReceived` / `SameAsEarlier`, the read stored before).
    pub read_id: i64,
    pub disposition: Disposition,
}

impl ReadOutcome {
    pub fn flags(&self) -> &[Flag] {
        match &self.disposition {
            Disposition::Stored { flags, .. } => flags,
            _ => &[],
        }
    }
}

/// Streams the history of the accounts in `scope`, built into periods, to `f` one account at a time
/// (one pass over `history`; only one account's history is in memory). Accounts without history are
/// not visited.
pub(crate) fn for_each_account_history(
    conn: &rusqlite::Connection,
    scope: &sql::Scope,
    mut f: impl FnMut(&str, &AccountHistory) -> Result<()>,
) -> Result<()> {
    let registers = scope.registers(conn)?;
    scope.for_each_history(conn, |account, reads| -> Result<()> {
        // Reads come by meter: each meter's register once.
        let mut previous: Option<&str> = None;
        for r in reads {
            if previous != Some(r.meter_id.as_str()) {
                registers.get(&r.meter_id)?;
                previous = Some(&r.meter_id);
            }
        }
        let h = AccountHistory::build(reads, |m| registers.cached(m));
        f(account, &h)
    })
}

/// Validates and stores a batch of field reads in ONE transaction and says what became of each; a
/// batch with a read [`intake`] refuses is refused whole ([`CycleError::Refused`]).
///
/// - A read re-sent by a handheld (same device id and device sequence) is recognised and not stored
///   twice; a read with the same value as one already in the cycle for that meter is deduplicated.
/// - A read for a meter the district does not know is **stored**, flagged `meter_mismatch`, rather
///   than refused: the number was read at a real meter (a swapped or unrecorded meter, or a mis-keyed
///   id), and the clerk needs it in the exception list to send a re-read or fix the inventory; a
///   refused read would be lost with the handheld's next reset.
/// - Message codes that require a follow-up open a `follow_ups` row.
///
/// A large batch (a whole cycle's reads) on a database file is judged first, before the write
/// transaction, on two read-only connections in parallel (each half of the accounts, each one pass
/// over its half of `history`); the write transaction then stores it, or judges it again if another
/// connection committed meanwhile.
pub fn ingest(
    store: &mut Store,
    config: &dyn CycleSettings,
    cycle_id: &str,
    reads: &[FieldRead],
    now: NaiveDateTime,
) -> Result<Vec<ReadOutcome>> {
    ingest_judged_apart(store, config, cycle_id, reads, now, PARALLEL_MIN, || {})
}

/// Fewest reads [`ingest`] judges in parallel, before its write transaction.
const PARALLEL_MIN: usize = 4 * sql::ALWAYS_SEEK;

fn ingest_judged_apart(
    store: &mut Store,
    config: &dyn CycleSettings,
    cycle_id: &str,
    reads: &[FieldRead],
    now: NaiveDateTime,
    parallel_min: usize,
    // Runs between judging and storing (tests commit from another connection there).
    between: impl FnOnce(),
) -> Result<Vec<ReadOutcome>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if reads.len() < parallel_min || cores < 2 || store.in_memory() {
        return store.write(|tx| whole(ingest_in(tx, config, cycle_id, reads, now)?));
    }
    // Moves when another connection commits: then what was judged may be stale.
    use crate::store::data_version;
    let before = data_version(store.conn())?;
    let judged = judge_in_halves(store, config, cycle_id, reads, now)?;
    between();
    store.write(|tx| {
        let judged = if data_version(tx)? == before {
            judged
        } else {
            judge(tx, config, cycle_id, reads.to_vec(), now)?
        };
        whole(store_judged(tx, judged, now)?)
    })
}

/// A batch [`ingest`] stores is taken whole or not at all: a refused read (a read time far outside
/// the cycle...) fails it, and the transaction writes nothing.
fn whole(outcomes: Vec<ReadOutcome>) -> Result<Vec<ReadOutcome>> {
    match outcomes.iter().find_map(|o| match &o.disposition {
        Disposition::Refused(r) => Some(r),
        _ => None,
    }) {
        Some(r) => Err(CycleError::Refused(r.detail.clone())),
        None => Ok(outcomes),
    }
}

/// [`judge`] on two read-only connections at once, each taking the reads of half the accounts (a
/// meter's reads all go to the half of its account, so duplicates within the batch are seen there).
fn judge_in_halves(
    store: &Store,
    config: &dyn CycleSettings,
    cycle_id: &str,
    reads: &[FieldRead],
    now: NaiveDateTime,
) -> Result<Judged> {
    let ReadMeters { mut meters, .. } = meters_of(store.conn(), reads, &[])?;
    let mut accounts: Vec<&str> = meters.iter().filter_map(account_in_service).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let split = accounts.get(accounts.len() / 2).map(|a| a.to_string());
    // Reads of meters not in service go with the first half: they are judged without history.
    let second_half = |m: &Option<MeterRow>| matches!((account_in_service(m), &split), (Some(a), Some(s)) if a >= s.as_str());
    let mut halves: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    for (i, m) in meters.iter().enumerate() {
        halves[usize::from(second_half(m))].push(i);
    }
    let [first, second] = halves.each_ref().map(|indexes| {
        let part: Vec<FieldRead> = indexes.iter().map(|&i| reads[i].clone()).collect();
        let part_meters: Vec<Option<MeterRow>> =
            indexes.iter().map(|&i| meters[i].take()).collect();
        (part, part_meters)
    });
    let path = store.path();
    let judge_half = |(part, part_meters): (Vec<FieldRead>, Vec<Option<MeterRow>>)| {
        let mut conn = crate::store::open_read_only(path)?;
        // One snapshot for the half (rolled back when dropped: only temp tables were written).
        let snapshot = conn.transaction()?;
        judge_with_meters(
            &snapshot,
            config,
            cycle_id,
            part,
            part_meters,
            &HashMap::new(),
            now,
        )
    };
    let (first, second) = std::thread::scope(|s| {
        let second = s.spawn(|| judge_half(second));
        (judge_half(first), second.join())
    });
    let second = second.map_err(|_| {
        CycleError::Store(StoreError::Invalid("judging half a batch panicked".into()))
    })??;
    // Back in arrival order: each half is in arrival order, so a merge by read index.
    let n = reads.len();
    let mut judged = Judged {
        cycle_id: cycle_id.to_string(),
        reads: Vec::with_capacity(n),
        meters: Vec::with_capacity(n),
        has_later: Vec::with_capacity(n),
        decisions: Vec::with_capacity(n),
        refusals: Vec::with_capacity(n),
    };
    let mut halves_judged = [first?, second].map(|j| {
        j.reads
            .into_iter()
            .zip(j.meters)
            .zip(j.has_later)
            .zip(j.decisions)
            .zip(j.refusals)
    });
    let mut next = [halves[0].iter().peekable(), halves[1].iter().peekable()];
    for i in 0..n {
        let half = usize::from(next[0].peek() != Some(&&i));
        let ((((r, m), later), d), refused) = next[half]
            .next()
            .filter(|&&at| at == i)
            .and(halves_judged[half].next())
            .ok_or_else(|| StoreError::Invalid("a read judged in neither half".into()))?;
        judged.reads.push(r);
        judged.meters.push(m);
        judged.has_later.push(later);
        judged.decisions.push(d);
        judged.refusals.push(refused);
    }
    Ok(judged)
}

/// The account of a meter in service.
fn account_in_service(m: &Option<MeterRow>) -> Option<&str> {
    let m = m.as_ref().filter(|m| in_service(m))?;
    Some(m.account.as_ref()?.account_id.as_str())
}

/// [`ingest`] inside a transaction (or savepoint) the caller owns: [`judge`] then [`store_judged`] on
/// the same connection.
pub fn ingest_in(
    tx: &rusqlite::Connection,
    config: &dyn CycleSettings,
    cycle_id: &str,
    reads: &[FieldRead],
    now: NaiveDateTime,
) -> Result<Vec<ReadOutcome>> {
    let judged = judge(tx, config, cycle_id, reads.to_vec(), now)?;
    store_judged(tx, judged, now)
}

/// A batch of reads judged against the district (meters, accounts, history, the cycle), not yet
/// stored. Judging only reads, so the sync daemon does it on a read-only connection, in parallel with
/// the writer, and hands the writer only [`store_judged`]; the writer judges again if the district
/// changed in between (`store::Db::district_epoch`).
#[derive(Debug, Clone)]
pub struct Judged {
    /// Checked open again when the batch is stored.
    cycle_id: String,
    reads: Vec<FieldRead>,
    /// Each read's meter (`None`: a meter the district does not know).
    meters: Vec<Option<MeterRow>>,
    /// A later read of the batch is for the same meter (duplicate detection must remember this one).
    has_later: Vec<bool>,
    /// The decision for each read, not yet knowing of reads already in the cycle.
    decisions: Vec<vee::Decision>,
    /// Reads not to store at all, and why ([`intake`]).
    refusals: Vec<Option<Refusal>>,
}

impl Judged {
    /// The decision for each read, as judged (before duplicates within the cycle are known).
    pub fn decisions(&self) -> &[vee::Decision] {
        &self.decisions
    }

    /// The reads refused before storing, by position in the batch.
    pub fn refusals(&self) -> &[Option<Refusal>] {
        &self.refusals
    }
}

/// Judges a batch of reads for cycle `cycle_id`: refuses an unknown or closed cycle, then validates
/// each read against its meter, account and history. Reads nothing but the district; writes only temp
/// tables.
pub fn judge(
    conn: &rusqlite::Connection,
    config: &dyn CycleSettings,
    cycle_id: &str,
    reads: Vec<FieldRead>,
    now: NaiveDateTime,
) -> Result<Judged> {
    let ReadMeters { meters, histories } = meters_of(conn, &reads, &[])?;
    judge_with_meters(conn, config, cycle_id, reads, meters, &histories, now)
}

/// Each read's meter (with its account), and the history of those accounts that have a judging basis.
#[derive(Debug, Default)]
pub struct ReadMeters {
    /// By read; `None` for a meter the district does not know.
    pub meters: Vec<Option<MeterRow>>,
    /// Account histories already built (from the judging basis), by account id. Accounts not here
    /// are read from `history` when judged.
    pub histories: HashMap<String, AccountHistory>,
}

/// Fewest reads in a batch for which [`meters_of`] reads the bases of the handheld's routes as ranges.
const ROUTE_RANGE_MIN: usize = 64;

/// The meter (with its account) of each read, `None` for a meter the district does not know. A small
/// batch (a handheld's upload) takes each meter's judging basis (`store::basis`) where it has one,
/// with its account's history: first from the ranges of `routes` (the handheld's routes, where most
/// of its reads are), then meter by meter; the rest comes from the tables in one query.
pub fn meters_of(
    conn: &rusqlite::Connection,
    reads: &[FieldRead],
    routes: &[String],
) -> Result<ReadMeters> {
    let mut meter_ids: HashMap<&str, usize> = HashMap::with_capacity(reads.len());
    let slot_of: Vec<usize> = reads
        .iter()
        .map(|r| {
            let next = meter_ids.len();
            *meter_ids.entry(r.meter_id.as_str()).or_insert(next)
        })
        .collect();
    let mut slots: Vec<Option<MeterRow>> = vec![None; meter_ids.len()];
    let mut histories = HashMap::new();
    let mut missing: HashMap<&str, usize> = HashMap::new();
    if meter_ids.len() < sql::ALWAYS_SEEK {
        let mut found = |slots: &mut Vec<Option<MeterRow>>, slot: usize, b: MeterBasis| {
            if let Some(a) = &b.meter.account_id {
                histories.insert(a.clone(), b.history);
            }
            slots[slot] = Some(b.meter);
        };
        // A range costs the whole route: worth it for a day's upload, not for a few reads.
        let ranges = if meter_ids.len() >= ROUTE_RANGE_MIN {
            routes
        } else {
            &[]
        };
        for route in ranges {
            for (slot, b) in basis::bases_on_route(conn, route, &meter_ids)? {
                found(&mut slots, slot, b);
            }
        }
        for (&id, &slot) in &meter_ids {
            if slots[slot].is_some() {
                continue;
            }
            match basis::basis_of(conn, id)? {
                Some(b) => found(&mut slots, slot, b),
                None => {
                    let next = missing.len();
                    missing.insert(id, next);
                }
            }
        }
    } else {
        missing = meter_ids.clone();
    }
    if !missing.is_empty() {
        let mut found = sql::meters_by_id(conn, &missing)?;
        for (id, at) in missing {
            slots[meter_ids[id]] = found.get_mut(at).and_then(Option::take);
        }
    }
    // Moved to the meter's last read, cloned only for a meter read more than once.
    let mut uses = vec![0u32; slots.len()];
    for &slot in &slot_of {
        uses[slot] += 1;
    }
    let meters = slot_of
        .iter()
        .map(|&slot| {
            uses[slot] -= 1;
            if uses[slot] == 0 {
                slots[slot].take()
            } else {
                slots[slot].clone()
            }
        })
        .collect();
    Ok(ReadMeters { meters, histories })
}

/// [`judge`] with each read's meter already loaded ([`meters_of`]), and the histories it found.
pub fn judge_with_meters(
    conn: &rusqlite::Connection,
    config: &dyn CycleSettings,
    cycle_id: &str,
    reads: Vec<FieldRead>,
    meters: Vec<Option<MeterRow>>,
    histories: &HashMap<String, AccountHistory>,
    now: NaiveDateTime,
) -> Result<Judged> {
    let cfg = config.validation();
    let cycle = open_cycle_named(conn, cycle_id)?;
    // A read with a later one of the same meter is remembered for duplicate detection.
    let mut has_later = vec![false; reads.len()];
    let mut last_of: HashMap<&str, usize> = HashMap::with_capacity(reads.len());
    for (i, r) in reads.iter().enumerate() {
        if let Some(last) = last_of.insert(r.meter_id.as_str(), i) {
            has_later[last] = true;
        }
    }
    // Reads of meters in service whose history is still to read, by account, in account order:
    // history streams by in that order, so the pass walks this list alongside it instead of looking
    // each account up.
    let mut by_account: Vec<(&str, usize)> = meters
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let account = account_in_service(m)?;
            (!histories.contains_key(account)).then_some((account, i))
        })
        .collect();
    by_account.sort_unstable();
    let scope = sql::Scope::new(conn, by_account.iter().map(|(a, _)| (*a).to_string()))?;
    let on_cycle: HashSet<&str> = cycle.routes.iter().map(String::as_str).collect();
    let judge_one = |i: usize, history: &AccountHistory| -> vee::Decision {
        let context = match &meters[i] {
            None => MeterContext::Unknown,
            Some(m) => match (&m.account, in_service(m)) {
                (Some(a), true) => MeterContext::InService(Service {
                    account_id: &a.account_id,
                    account_status: a.status,
                    rate_class: &a.rate_class,
                    route_id: &a.route_id,
                    on_cycle: on_cycle.contains(a.route_id.as_str()),
                    register: m.register,
                    history,
                }),
                _ => MeterContext::NotInService {
                    status: m.status,
                    account_id: m.account_id.as_deref(),
                },
            },
        };
        let input = ReadInput {
            read: &reads[i],
            meter: context,
            window_from: cycle.window_from,
            window_to: cycle.window_to,
            now,
            earlier: None,
        };
        vee::validate(&input, cfg)
    };
    let mut decisions: Vec<Option<vee::Decision>> = vec![None; reads.len()];
    // Accounts whose history came with their meter's judging basis.
    for (i, m) in meters.iter().enumerate() {
        let known = account_in_service(m).and_then(|a| histories.get(a));
        if let Some(history) = known {
            decisions[i] = Some(judge_one(i, history));
        }
    }
    // The others in history order: each account's reads are judged as its history streams by.
    let mut next = 0;
    for_each_account_history(conn, &scope, |account, history| {
        while next < by_account.len() && by_account[next].0 < account {
            next += 1;
        }
        while next < by_account.len() && by_account[next].0 == account {
            let i = by_account[next].1;
            decisions[i] = Some(judge_one(i, history));
            next += 1;
        }
        Ok(())
    })?;
    // No history (a new account), or not a meter in service.
    let empty = AccountHistory::default();
    let mut decisions: Vec<vee::Decision> = decisions
        .into_iter()
        .enumerate()
        .map(|(i, d)| d.unwrap_or_else(|| judge_one(i, &empty)))
        .collect();
    let refusals = intake_checks(conn, config, &cycle, &reads, &meters, &mut decisions, now)?;
    Ok(Judged {
        cycle_id: cycle.id,
        reads,
        meters,
        has_later,
        decisions,
        refusals,
    })
}

/// What [`intake`] refuses of a judged batch, by read; an off-route read the District takes gets
/// its `off_route` flag here.
fn intake_checks(
    conn: &rusqlite::Connection,
    config: &dyn CycleSettings,
    cycle: &Cycle,
    reads: &[FieldRead],
    meters: &[Option<MeterRow>],
    decisions: &mut [vee::Decision],
    now: NaiveDateTime,
) -> Result<Vec<Option<Refusal>>> {
    let bounds = ReadTimeBounds::new(config.reads(), cycle.window_from, now);
    // Who carries each route of the cycle; only handheld reads can be off route.
    let assigned = if reads.iter().any(|r| r.device.is_some()) {
        crate::store::route_assignments(conn, &cycle.id)?
    } else {
        HashMap::new()
    };
    let mut refusals = Vec::with_capacity(reads.len());
    for ((read, meter), d) in reads.iter().zip(meters).zip(decisions.iter_mut()) {
        let refusal = intake::check_seq(read)
            .or_else(|| intake::check_text(read))
            .or_else(|| bounds.check(read.read_at, &read.meter_id));
        if refusal.is_some() {
            refusals.push(refusal);
            continue;
        }
        let owner = read.device.as_ref().and_then(|dev| {
            let route = &meter.as_ref()?.account.as_ref()?.route_id;
            let to = assigned.get(route)?;
            (*to != dev.device_id).then_some((route, to))
        });
        let Some((route, to)) = owner else {
            refusals.push(None);
            continue;
        };
        match intake::off_route(read, route, to, config.reads().off_route) {
            Ok(flag) => {
                d.flags.push(flag);
                if d.status == ReadStatus::Accepted {
                    d.status = ReadStatus::Flagged;
                }
                refusals.push(None);
            }
            Err(refusal) => refusals.push(Some(refusal)),
        }
    }
    Ok(refusals)
}

/// The cycle named `cycle_id`, refused unless it exists and is open.
fn open_cycle_named(conn: &rusqlite::Connection, cycle_id: &str) -> Result<Cycle> {
    let cycle = sql::load_cycle(conn, cycle_id)?
        .ok_or_else(|| CycleError::UnknownCycle(cycle_id.to_string()))?;
    if cycle.status != CycleStatus::Open {
        return Err(CycleError::Closed(cycle_id.to_string()));
    }
    Ok(cycle)
}

/// Stores a judged batch, in arrival order: refused reads are left out; a handheld's read whose
/// (device, state id, sequence) is held already is recognised when its content is the same
/// (`AlreadyReceived`) and refused when it is not (`seq_conflict`); the same value as one already in
/// the cycle is deduplicated, a different second read of a meter is marked duplicate, the rest
/// inserted with their decisions (and follow-ups for codes that require one).
///
/// An off-route read waiting for a clerk does not count against the assigned handheld's read of the
/// same meter: that read is stored as the meter's read (no `duplicate` flag) and the off-route read
/// is superseded by it.
pub fn store_judged(
    tx: &rusqlite::Connection,
    judged: Judged,
    now: NaiveDateTime,
) -> Result<Vec<ReadOutcome>> {
    let Judged {
        cycle_id,
        reads,
        meters,
        has_later,
        decisions,
        refusals,
    } = judged;
    let cycle_id = open_cycle_named(tx, &cycle_id)?.id;
    let cycle_id = cycle_id.as_str();
    let meter_ids: HashSet<&str> = reads.iter().map(|r| r.meter_id.as_str()).collect();
    let stored = sql::earlier_reads(tx, cycle_id, &meter_ids)?;
    // Readings already in the cycle per meter: stored ones, then this batch's as they are stored
    // (borrowed, and only those a later read of the batch may repeat).
    let mut earlier: HashMap<&str, Vec<Earlier<'_>>> = HashMap::with_capacity(stored.len());
    for (meter, v) in &stored {
        earlier.insert(
            meter,
            v.iter()
                .map(|e| Earlier {
                    read_id: e.read_id,
                    raw: e.raw_reading.as_str(),
                    off_route_pending: e.off_route_pending,
                })
                .collect(),
        );
    }
    let follow_ups = sql::follow_up_codes(tx)?;
    // Reads already stored per handheld state of the batch, by device sequence (re-sent reads).
    let mut seen_devices: HeldByState<'_> = HashMap::new();
    for d in reads.iter().filter_map(|r| r.device.as_ref()) {
        let key = (d.device_id.as_str(), d.state_id);
        if let std::collections::hash_map::Entry::Vacant(e) = seen_devices.entry(key) {
            e.insert(sql::reads_by_device(tx, key.0, key.1)?);
        }
    }
    let mut out = Vec::with_capacity(reads.len());
    let judged = reads.iter().enumerate().zip(decisions).zip(refusals);
    for (((index, read), mut d), refusal) in judged {
        let outcome = |read_id, disposition| ReadOutcome {
            index,
            meter_id: read.meter_id.clone(),
            read_id,
            disposition,
        };
        if let Some(refusal) = refusal {
            out.push(outcome(0, Disposition::Refused(refusal)));
            continue;
        }
        if let Some(dev) = &read.device {
            let held = seen_devices
                .get(&(dev.device_id.as_str(), dev.state_id))
                .and_then(|s| s.get(&dev.seq));
            if let Some(held) = held {
                if held.content == Some(dev.content) {
                    out.push(outcome(held.read_id, Disposition::AlreadyReceived));
                } else {
                    let refusal = Refusal {
                        reason: crate::domain::RefusalReason::SeqConflict,
                        detail: format!(
                            "read of meter {} (reading {}): sequence number {} of this handheld \
                             state already holds a different read (#{}, meter {}, reading {})",
                            read.meter_id,
                            shown_reading(read),
                            dev.seq,
                            held.read_id,
                            held.meter_id,
                            held.raw_reading
                        ),
                    };
                    out.push(outcome(held.read_id, Disposition::Refused(refusal)));
                }
                continue;
            }
        }
        let off_route = d.flags.iter().any(|f| f.kind == FlagKind::OffRoute);
        // Reads this one is judged against: an assigned handheld's read ignores off-route reads
        // still waiting for a clerk (it replaces them below).
        let before: Vec<&Earlier<'_>> = earlier
            .get(read.meter_id.as_str())
            .map(|v| {
                v.iter()
                    .filter(|e| off_route || !e.off_route_pending)
                    .collect()
            })
            .unwrap_or_default();
        let same = before
            .iter()
            .find(|e| vee::same_reading(e.raw, &read.raw_reading))
            .map(|e| e.read_id);
        if let (Some(same), None) = (same, &read.device) {
            // The office's own data again (a reads CSV imported twice): nothing new to keep.
            out.push(outcome(same, Disposition::SameAsEarlier));
            continue;
        }
        if let (Some(first), None) = (before.first(), same) {
            vee::mark_duplicate(&mut d, first.raw);
        }
        let read_type = confirmed_direction(read.read_type, &d.flags);
        let read_id = sql::insert_read(
            tx,
            &sql::NewRead {
                cycle_id,
                meter_id: &read.meter_id,
                account_id: meters[index].as_ref().and_then(|m| m.account_id.as_deref()),
                read_at: read.read_at,
                raw_reading: &read.raw_reading,
                reading: d.reading,
                read_type,
                method: read.method,
                reader: &read.reader,
                codes: &read.codes,
                skip_code: read.skip_code.as_deref(),
                note: read.note.as_deref(),
                device: read.device.as_ref(),
                received_at: now,
                status: d.status,
                previous_reading: d.previous_reading,
                previous_read_on: d.previous_read_on,
                consumption: d.consumption,
                expected_use: d.expected_use,
                expected_basis: d.expected_basis.as_deref(),
                low_limit: d.low_limit,
                high_limit: d.high_limit,
                flags: &d.flags,
            },
            &follow_ups,
        )?;
        if let Some(same) = same {
            // A handheld's second read of the meter with the same reading but not the same read
            // (another time, note, code or number): kept, with what it carries, behind the read
            // already in the cycle, which stays the meter's read.
            crate::store::review::set_superseded(tx, read_id, same)?;
            out.push(outcome(read_id, Disposition::Repeat { of: same }));
            hold(&mut seen_devices, read, read_id);
            continue;
        }
        if !off_route {
            if let Some(v) = earlier.get_mut(read.meter_id.as_str()) {
                for e in v.iter().filter(|e| e.off_route_pending) {
                    crate::store::review::set_superseded(tx, e.read_id, read_id)?;
                }
                v.retain(|e| !e.off_route_pending);
            }
        }
        hold(&mut seen_devices, read, read_id);
        if has_later[index] {
            earlier
                .entry(read.meter_id.as_str())
                .or_default()
                .push(Earlier {
                    read_id,
                    raw: read.raw_reading.as_str(),
                    off_route_pending: off_route && d.status == ReadStatus::Flagged,
                });
        }
        out.push(outcome(
            read_id,
            Disposition::Stored {
                status: d.status,
                flags: d.flags,
            },
        ));
    }
    Ok(out)
}

/// Reads held per handheld state, by sequence number, as [`store_judged`] learns them.
type HeldByState<'a> = HashMap<(&'a str, u64), HashMap<u64, sql::HeldRead>>;

/// Notes a handheld's read just stored, so a later read of the batch under its number is judged
/// against it.
fn hold<'a>(held: &mut HeldByState<'a>, read: &'a FieldRead, read_id: i64) {
    if let Some(dev) = &read.device {
        held.entry((dev.device_id.as_str(), dev.state_id))
            .or_default()
            .insert(
                dev.seq,
                sql::HeldRead {
                    read_id,
                    content: Some(dev.content),
                    meter_id: read.meter_id.clone(),
                    raw_reading: read.raw_reading.clone(),
                },
            );
    }
}

/// A read already in the cycle, as [`store_judged`] weighs the next read of its meter against it.
struct Earlier<'a> {
    read_id: i64,
    raw: &'a str,
    /// Flagged `off_route` and not yet resolved by a clerk.
    off_route_pending: bool,
}

/// A read's reading for a message: the keyed value, or "skipped".
fn shown_reading(read: &FieldRead) -> &str {
    if read.read_type == ReadType::Skipped {
        "skipped"
    } else {
        read.raw_reading.trim()
    }
}

/// A meter set at an account and reading for it.
fn in_service(m: &MeterRow) -> bool {
    m.status == crate::domain::MeterStatus::Active && m.account.is_some()
}

/// A reads file only says "verified"; which way the reader confirmed is what validation found.
fn confirmed_direction(t: ReadType, flags: &[Flag]) -> ReadType {
    if !matches!(t, ReadType::HighConfirmed | ReadType::LowConfirmed) {
        return t;
    }
    if flags
        .iter()
        .any(|f| matches!(f.kind, FlagKind::Low | FlagKind::Zero))
    {
        ReadType::LowConfirmed
    } else if flags.iter().any(|f| f.kind == FlagKind::High) {
        ReadType::HighConfirmed
    } else {
        t
    }
}

// ---- missing reads -----------------------------------------------------------------------------

/// A stop of an active account with no read this cycle (or only a skipped one), with its estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingRead {
    pub route_id: String,
    pub account_id: String,
    pub meter_id: String,
    /// The reader was there and left a skip code.
    pub skipped: bool,
    /// `None` when the meter has no previous reading or the account no usable history: a clerk must
    /// estimate by hand.
    pub estimate: Option<vee::Estimate>,
    pub flag: Flag,
}

/// Stops of the cycle's active accounts that have no usable read, each estimated for `on` (same period
/// last year, else average daily use × days): what cycle close turns into estimated reads.
pub fn missing_reads(
    store: &Store,
    config: &dyn CycleSettings,
    cycle_id: &str,
    on: NaiveDate,
) -> Result<Vec<MissingRead>> {
    let conn = store.conn();
    if sql::load_cycle(conn, cycle_id)?.is_none() {
        return Err(CycleError::UnknownCycle(cycle_id.to_string()));
    }
    let mut read: HashSet<String> = HashSet::new();
    let mut skipped: HashSet<String> = HashSet::new();
    for r in store.cycle_reads(cycle_id)? {
        if r.read_type == ReadType::Skipped {
            skipped.insert(r.meter_id);
        } else {
            read.insert(r.meter_id);
        }
    }
    let stops: Vec<MeterRow> = sql::route_stops(conn, cycle_id, None)?
        .into_iter()
        .filter(|m| {
            !read.contains(&m.meter_id)
                && m.account
                    .as_ref()
                    .is_some_and(|a| a.status == crate::domain::AccountStatus::Active)
        })
        .collect();
    let scope = sql::Scope::new(conn, stops.iter().filter_map(|m| m.account_id.clone()))?;
    let mut by_account: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, m) in stops.iter().enumerate() {
        if let Some(a) = &m.account {
            by_account.entry(a.account_id.as_str()).or_default().push(i);
        }
    }
    let mut estimates: Vec<Option<vee::Estimate>> = vec![None; stops.len()];
    for_each_account_history(conn, &scope, |account, h| {
        for &i in by_account.get(account).into_iter().flatten() {
            let (m, class) = (&stops[i], stops[i].account.as_ref().map(|a| &a.rate_class));
            estimates[i] = class.and_then(|class| {
                vee::estimate(h, &m.meter_id, &m.register, class, on, config.validation())
            });
        }
        Ok(())
    })?;
    let mut out = Vec::with_capacity(stops.len());
    for (m, estimate) in stops.into_iter().zip(estimates) {
        let Some(a) = m.account else { continue };
        let was_skipped = skipped.contains(&m.meter_id);
        let explanation = match &estimate {
            Some(e) => format!(
                "{} this cycle; estimated {} {} to reading {} ({})",
                if was_skipped { "skipped" } else { "not read" },
                e.consumption,
                m.register.unit,
                e.reading,
                e.basis
            ),
            None => "not read this cycle; no history to estimate from: estimate by hand".into(),
        };
        out.push(MissingRead {
            route_id: a.route_id,
            account_id: a.account_id,
            meter_id: m.meter_id,
            skipped: was_skipped,
            estimate,
            flag: Flag {
                kind: FlagKind::Missing,
                quality: vee::quality::of(FlagKind::Missing).to_string(),
                explanation,
            },
        });
    }
    Ok(out)
}

// ---- listing -----------------------------------------------------------------------------------

/// One row of `meter-gateway reads`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReadRow {
    pub account_id: String,
    pub meter_id: String,
    pub read_at: String,
    pub reading: String,
    pub consumption: Option<i64>,
    pub status: String,
    pub flags: String,
    pub quality: String,
    pub explanation: String,
}

impl ReadRow {
    pub fn from_stored(r: &StoredRead) -> ReadRow {
        let kinds: Vec<FlagKind> = r.flags.iter().map(|f| f.kind).collect();
        let explanation = if r.flags.is_empty() {
            match (&r.expected_use, &r.expected_basis) {
                (Some(e), Some(b)) => {
                    let unit = r.unit.map(|u| format!(" {u}")).unwrap_or_default();
                    format!(
                        "within expected range: expected {}{unit} ({b})",
                        vee::amount(*e)
                    )
                }
                _ => String::new(),
            }
        } else {
            r.flags
                .iter()
                .map(|f| format!("{}: {}", f.kind, f.explanation))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        ReadRow {
            account_id: r.account_id.clone().unwrap_or_default(),
            meter_id: r.meter_id.clone(),
            read_at: crate::store::cycles::time_text(r.read_at),
            reading: r.raw_reading.clone(),
            consumption: r.consumption,
            status: r.status.to_string(),
            flags: kinds
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(";"),
            quality: vee::read_quality(r.method, r.status, &kinds).join(";"),
            explanation,
        }
    }
}

/// The cycle's reads as listing rows, in arrival order.
pub fn list_reads(store: &Store, cycle_id: &str) -> Result<Vec<ReadRow>> {
    if store.cycle(cycle_id)?.is_none() {
        return Err(CycleError::UnknownCycle(cycle_id.to_string()));
    }
    Ok(store
        .cycle_reads(cycle_id)?
        .iter()
        .map(ReadRow::from_stored)
        .collect())
}

/// How [`write_reads`] writes a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadsFormat {
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// Writes listing rows as CSV (with a header) or as a JSON array.
pub fn write_reads(rows: &[ReadRow], format: ReadsFormat, out: impl Write) -> anyhow::Result<()> {
    match format {
        ReadsFormat::Csv => {
            let mut w = crate::csv_out::Writer::from_writer(out);
            for r in rows {
                w.serialize(r)?;
            }
            if rows.is_empty() {
                w.write_record([
                    "account_id",
                    "meter_id",
                    "read_at",
                    "reading",
                    "consumption",
                    "status",
                    "flags",
                    "quality",
                    "explanation",
                ])?;
            }
            w.flush()?;
        }
        ReadsFormat::Json => {
            let mut out = out;
            serde_json::to_writer_pretty(&mut out, rows)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{self, DemoParams};

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// A demo district in a file of its own (read-only connections need one), its cycle open; and its
    /// reads, with a second read of some meters (the same value, and a different one).
    fn demo_district(dir: &std::path::Path, name: &str) -> (Store, demo::District, Vec<FieldRead>) {
        let district = demo::generate(&DemoParams {
            accounts: 600,
            seed: 5,
            as_of: d("2026-10-20"),
        });
        let mut store = Store::open(&dir.join(name)).unwrap();
        demo::load(&mut store, &district).unwrap();
        district
            .open_cycle(&mut store, d("2026-10-01").and_hms_opt(7, 0, 0).unwrap())
            .unwrap();
        let mut reads = district.field_reads.clone();
        for (i, r) in district.field_reads.iter().take(40).enumerate() {
            let mut again = r.clone();
            again.device = None; // keyed again at the office, not re-sent by the handheld
            if i % 2 == 0 {
                again.raw_reading.push('1');
            }
            reads.push(again);
        }
        (store, district, reads)
    }

    /// After every read of the demo cycle (late ones included) reached the gateway.
    fn now() -> NaiveDateTime {
        d("2026-11-06").and_hms_opt(9, 0, 0).unwrap()
    }

    #[test]
    fn a_cycle_judged_in_halves_is_stored_as_if_judged_on_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Settings::default();
        let (mut halves, district, reads) = demo_district(dir.path(), "halves.db");
        let (mut writer, ..) = demo_district(dir.path(), "writer.db");
        let id = &district.cycle.id;
        let a = ingest_judged_apart(&mut halves, &cfg, id, &reads, now(), 1, || {}).unwrap();
        let b =
            ingest_judged_apart(&mut writer, &cfg, id, &reads, now(), usize::MAX, || {}).unwrap();
        assert_eq!(a, b);
        let same = a
            .iter()
            .filter(|o| matches!(o.disposition, Disposition::SameAsEarlier))
            .count();
        assert!(same >= 20, "the same values again are not stored: {same}");
        let (a, b) = (
            halves.cycle_reads(id).unwrap(),
            writer.cycle_reads(id).unwrap(),
        );
        assert!(a
            .iter()
            .any(|r| r.flags.iter().any(|f| f.kind == FlagKind::Duplicate)));
        assert_eq!(a, b);
    }

    #[test]
    fn a_cycle_judged_before_another_connection_committed_is_judged_again() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Settings::default();
        let (mut store, district, reads) = demo_district(dir.path(), "stale.db");
        // An account whose read was judged normal...
        let (read_meter, account) = district
            .field_reads
            .iter()
            .find_map(|r| {
                let m = district.meters.iter().find(|m| m.id == r.meter_id)?;
                let a = district
                    .accounts
                    .iter()
                    .find(|a| Some(&a.id) == m.account_id.as_ref())?;
                (a.status == crate::domain::AccountStatus::Active
                    && !district.planted_meters().contains(m.id.as_str()))
                .then(|| (m.id.clone(), a.id.clone()))
            })
            .unwrap();
        let path = store.path().to_path_buf();
        // ...is closed by another process between judging and storing.
        let out = ingest_judged_apart(
            &mut store,
            &cfg,
            &district.cycle.id,
            &reads,
            now(),
            1,
            || {
                rusqlite::Connection::open(&path)
                    .unwrap()
                    .execute(
                        "UPDATE accounts SET status = 'closed' WHERE account_id = ?1",
                        [&account],
                    )
                    .unwrap();
            },
        )
        .unwrap();
        let flags = out
            .iter()
            .find(|o| o.meter_id == read_meter)
            .map(|o| o.flags().iter().map(|f| f.kind).collect::<Vec<_>>())
            .unwrap();
        assert!(flags.contains(&FlagKind::InactiveUsage), "{flags:?}");
    }

    /// A reading a handheld takes without a prompt on its read day is not flagged high, low or zero
    /// at the office for that day; one outside the day's limits is (or is flagged negative, or usage
    /// on an inactive account): every stop of a demo district, four read days across the window.
    #[test]
    fn the_office_judges_high_and_low_by_the_limits_the_handheld_prompted_with_that_day() {
        use firmware_protocol::message::DayLimits;
        let dir = tempfile::tempdir().unwrap();
        let cfg = Settings::default();
        let (store, district, _) = demo_district(dir.path(), "limits.db");
        let id = &district.cycle.id;
        let files = route_files(&store, &cfg, id).unwrap();
        let (from, to) = (district.cycle.window_from, district.cycle.window_to);
        let span = (to - from).num_days();
        let days: Vec<NaiveDate> = [0, span / 3, 2 * span / 3, span]
            .iter()
            .map(|k| from + chrono::Duration::days(*k))
            .collect();
        let mut reads = Vec::new();
        // (inside?, what it was) per read.
        let mut cases: Vec<(bool, String)> = Vec::new();
        let mut with_limits = 0;
        for f in &files {
            let route = crate::sync::route_data(f);
            let window = (route.window_from, route.window_to);
            for stop in &route.stops {
                let modulus = 10u64.pow(u32::from(stop.dials));
                for day in &days {
                    let DayLimits::Range { low, high } =
                        stop.limits_on(window, crate::sync::protocol_day(*day))
                    else {
                        continue;
                    };
                    with_limits += 1;
                    let mid = if low <= high {
                        low + (high - low) / 2
                    } else {
                        high
                    };
                    let below = (low + modulus - 1) % modulus;
                    let above = (high + 1) % modulus;
                    let mut candidates = vec![(true, low), (true, high), (true, mid)];
                    if below != high && above != low {
                        candidates.push((false, below));
                        candidates.push((false, above));
                    }
                    for (inside, reading) in candidates {
                        reads.push(FieldRead {
                            meter_id: stop.meter_id.clone(),
                            read_at: day.and_hms_opt(11, 0, 0).unwrap(),
                            raw_reading: reading.to_string(),
                            read_type: ReadType::Regular,
                            method: crate::domain::ReadMethod::Keyed,
                            reader: "T".into(),
                            codes: Vec::new(),
                            skip_code: None,
                            note: None,
                            device: None,
                        });
                        cases.push((
                            inside,
                            format!("{} on {day}: {reading} in {low}–{high}", stop.meter_id),
                        ));
                    }
                }
            }
        }
        assert!(with_limits > 1_000, "{with_limits} stop-days with limits");
        let judged = judge(store.conn(), &cfg, id, reads, now()).unwrap();
        let judging = [FlagKind::High, FlagKind::Low, FlagKind::Zero];
        let outside_ok = [
            FlagKind::High,
            FlagKind::Low,
            FlagKind::Zero,
            FlagKind::Negative,
            FlagKind::InactiveUsage,
        ];
        let mut checked = 0;
        for (d, (inside, what)) in judged.decisions().iter().zip(&cases) {
            let kinds: Vec<FlagKind> = d.flags.iter().map(|f| f.kind).collect();
            if *inside {
                assert!(
                    !kinds.iter().any(|k| judging.contains(k)),
                    "accepted by the handheld, flagged at the office: {what}: {kinds:?}"
                );
            } else {
                assert!(
                    kinds.iter().any(|k| outside_ok.contains(k)),
                    "prompted on the handheld, not flagged at the office: {what}: {kinds:?}"
                );
            }
            checked += 1;
        }
        assert_eq!(checked, cases.len());
    }
}
