//! Reads into a cycle: judged through `vee` (on read-only connections when the caller can), then
//! stored (`store_judged`), the one path for CSV, handheld and clerk reads.

use super::*;

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

pub(super) fn ingest_judged_apart(
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
        judge_each(
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
    judged.pair_swapped();
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
    let mut judged = judge_each(conn, config, cycle_id, reads, meters, histories, now)?;
    judged.pair_swapped();
    Ok(judged)
}

impl Judged {
    /// Two far-off keyed reads of a route that fit each other's meters: each is named the other's
    /// reading ([`vee::mark_swapped`]). Needs the whole batch: run once, after every read is judged.
    fn pair_swapped(&mut self) {
        let stops: Vec<vee::StopRead<'_>> = self
            .reads
            .iter()
            .zip(&self.meters)
            .zip(&self.refusals)
            .map(|((read, m), refused)| vee::StopRead {
                read,
                route: m
                    .as_ref()
                    .filter(|m| refused.is_none() && in_service(m))
                    .and_then(|m| m.account.as_ref())
                    .map(|a| a.route_id.as_str()),
            })
            .collect();
        vee::mark_swapped(&stops, &mut self.decisions);
    }
}

/// Each read of a batch judged on its own (see [`judge_with_meters`]).
fn judge_each(
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
    // The reader's codes are evidence (a leak seen): which of them ask for follow-up.
    let codes = crate::store::codes_in(conn, true)?;
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
            codes: &codes,
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
    let mut earlier = earlier_in_cycle(&stored);
    let follow_ups = sql::follow_up_codes(tx)?;
    let mut seen_devices = held_by_state(tx, &reads)?;
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
        if let Some((read_id, disposition)) = held_already(&seen_devices, read) {
            out.push(outcome(read_id, disposition));
            continue;
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
        let account_id = meters[index].as_ref().and_then(|m| m.account_id.as_deref());
        let read_id = insert_judged(
            tx,
            cycle_id,
            read,
            account_id,
            &d,
            read_type,
            now,
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

/// Readings already in the cycle per meter: the stored ones, to which [`store_judged`] adds the
/// batch's as they are stored (borrowed, and only those a later read of the batch may repeat).
fn earlier_in_cycle(
    stored: &HashMap<String, Vec<sql::EarlierRead>>,
) -> HashMap<&str, Vec<Earlier<'_>>> {
    let mut earlier = HashMap::with_capacity(stored.len());
    for (meter, v) in stored {
        earlier.insert(
            meter.as_str(),
            v.iter()
                .map(|e| Earlier {
                    read_id: e.read_id,
                    raw: e.raw_reading.as_str(),
                    off_route_pending: e.off_route_pending,
                })
                .collect(),
        );
    }
    earlier
}

/// Reads already stored per handheld state of the batch, by device sequence (re-sent reads).
fn held_by_state<'a>(tx: &rusqlite::Connection, reads: &'a [FieldRead]) -> Result<HeldByState<'a>> {
    let mut seen_devices: HeldByState<'a> = HashMap::new();
    for d in reads.iter().filter_map(|r| r.device.as_ref()) {
        let key = (d.device_id.as_str(), d.state_id);
        if let std::collections::hash_map::Entry::Vacant(e) = seen_devices.entry(key) {
            e.insert(sql::reads_by_device(tx, key.0, key.1)?);
        }
    }
    Ok(seen_devices)
}

/// A handheld's read under a number its state holds already: received (the same content) or
/// refused (`seq_conflict`), with the held read's id.
fn held_already(seen_devices: &HeldByState<'_>, read: &FieldRead) -> Option<(i64, Disposition)> {
    let dev = read.device.as_ref()?;
    let held = seen_devices
        .get(&(dev.device_id.as_str(), dev.state_id))
        .and_then(|s| s.get(&dev.seq))?;
    if held.content == Some(dev.content) {
        return Some((held.read_id, Disposition::AlreadyReceived));
    }
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
    Some((held.read_id, Disposition::Refused(refusal)))
}

/// Inserts one judged read with its decision (and follow-ups for codes that require one).
fn insert_judged(
    tx: &rusqlite::Connection,
    cycle_id: &str,
    read: &FieldRead,
    account_id: Option<&str>,
    d: &vee::Decision,
    read_type: ReadType,
    now: NaiveDateTime,
    follow_ups: &HashSet<String>,
) -> Result<i64> {
    Ok(sql::insert_read(
        tx,
        &sql::NewRead {
            cycle_id,
            meter_id: &read.meter_id,
            account_id,
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
            intended_reading: d.intended.map(|i| i.reading),
        },
        follow_ups,
    )?)
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
