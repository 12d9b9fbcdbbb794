//! Closing and reopening a cycle.
//!
//! Close, in one transaction: estimate every missing read (quality 3.8.0, the estimation basis kept with
//! the read; a skipped read is superseded by its estimate), refuse while any exception is unresolved
//! (listing them), then build the batch: per account, each meter's current read against the meter's
//! last billed reading in history, plus meters pulled since the last billed reading (old meter's
//! `final − previous`), with the cycle's adjustments. The billed readings become the accounts'
//! history (so the next cycle validates against them), the cycle is marked closed, the close audited.
//! Reopen takes those history rows back, reopens the cycle and is audited; closing again writes the
//! next batch version.

use super::batch::{
    AdjustmentLine, Batch, BillingRecord, HeldAccount, HoldSource, LineReadType, MeterLine,
};
use super::{BillingError, BATCH_SCHEMA_VERSION};
use crate::cycles;
use crate::cycles::CycleSettings;
use crate::domain::{
    AccountStatus, Cycle, CycleStatus, FlagKind, HistoryRead, ReadKind, ReadMethod, ReadStatus,
    ReadType, Register, RegisterDelta, Unit,
};
use crate::store::billing as sql;
use crate::store::cycles as reads_sql;
use crate::store::review as audit;
use crate::store::{Store, StoredRead};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// An exception that keeps a cycle from closing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OpenException {
    /// `None` for a read of a meter the district does not know (it cannot be held: resolve it).
    pub account_id: Option<String>,
    pub meter_id: String,
    pub read_id: Option<i64>,
    pub flags: Vec<String>,
    pub detail: String,
}

impl fmt::Display for OpenException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "account {} meter {}",
            self.account_id.as_deref().unwrap_or("(none)"),
            self.meter_id
        )?;
        if let Some(id) = self.read_id {
            write!(f, " read {id}")?;
        }
        write!(f, ": {}", self.flags.join(", "))?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// What a close did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReport {
    pub cycle_id: String,
    pub batch_version: u32,
    /// Missing reads estimated by this close.
    pub estimated: usize,
    pub records: u64,
    pub meter_lines: u64,
    /// Accounts held out of the batch.
    pub held: Vec<String>,
    pub consumption_hcf: Decimal,
    pub adjustments_total: Decimal,
    pub checksum: String,
}

/// What a reopen did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReopenReport {
    pub cycle_id: String,
    /// The batch version that stays the latest until the cycle closes again.
    pub batch_version: u32,
    /// History rows the close had written and the reopen took back.
    pub history_removed: usize,
}

/// Closes `cycle_id` (see the module docs), holding `holds` (account ids) out of the batch. The actor
/// recorded is `meter-gateway`; [`close_cycle_by`] names one.
pub fn close_cycle(
    store: &mut Store,
    config: &dyn CycleSettings,
    cycle_id: &str,
    holds: &[String],
    now: NaiveDateTime,
) -> Result<CloseReport, BillingError> {
    close_cycle_by(store, config, cycle_id, holds, "meter-gateway", now)
}

/// [`close_cycle`], audited under `actor`.
pub fn close_cycle_by(
    store: &mut Store,
    config: &dyn CycleSettings,
    cycle_id: &str,
    holds: &[String],
    actor: &str,
    now: NaiveDateTime,
) -> Result<CloseReport, BillingError> {
    let store: &Store = store;
    // `missing_reads` reads through the store; an immediate transaction on the same connection makes
    // it, the estimates and the batch one consistent, exclusive unit (the daemon may be writing).
    let tx = Transaction::new_unchecked(store.conn(), TransactionBehavior::Immediate)?;
    let report = close_in(store, &tx, config, cycle_id, holds, actor, now)?;
    tx.commit()?;
    Ok(report)
}

fn close_in(
    store: &Store,
    conn: &Connection,
    config: &dyn CycleSettings,
    cycle_id: &str,
    holds: &[String],
    actor: &str,
    now: NaiveDateTime,
) -> Result<CloseReport, BillingError> {
    let cycle = reads_sql::load_cycle(conn, cycle_id)?
        .ok_or_else(|| BillingError::UnknownCycle(cycle_id.to_string()))?;
    if cycle.status == CycleStatus::Closed {
        return Err(BillingError::Closed(cycle_id.to_string()));
    }
    let held = held_at_close(conn, cycle_id, holds)?;

    // 1. Estimate the missing reads.
    let (estimated, mut exceptions) = estimate_missing(store, conn, config, &cycle, &held, now)?;

    // 2. Unresolved exceptions.
    let reads = reads_sql::cycle_reads(conn, cycle_id)?;
    exceptions.extend(unresolved(&reads, &held));

    // 3. The records.
    let listed: HashSet<(String, String)> = exceptions
        .iter()
        .filter_map(|e| Some((e.account_id.clone()?, e.meter_id.clone())))
        .collect();
    let (records, mut more) = build_records(conn, &cycle, &reads, &held, &listed)?;
    exceptions.append(&mut more);
    if !exceptions.is_empty() {
        exceptions.sort_by(|a, b| {
            (&a.account_id, &a.meter_id, a.read_id).cmp(&(&b.account_id, &b.meter_id, b.read_id))
        });
        return Err(BillingError::Unresolved {
            cycle_id: cycle_id.to_string(),
            exceptions,
        });
    }
    let held_accounts = held_accounts(conn, cycle_id, &reads, &held)?;

    // 4. The batch, the history, the cycle's state, the audit.
    let version = sql::batch_version(conn, cycle_id)? + 1;
    let batch = Batch::build(
        cycle_id,
        (cycle.window_from, cycle.window_to),
        version,
        now,
        actor,
        records,
        held_accounts,
    )?;
    record_close(conn, cycle_id, &batch, version, estimated, actor, now)?;
    let h = batch.header();
    Ok(CloseReport {
        cycle_id: cycle_id.to_string(),
        batch_version: version,
        estimated,
        records: h.record_count,
        meter_lines: h.meter_line_count,
        held: batch.held().iter().map(|h| h.account_id.clone()).collect(),
        consumption_hcf: h.consumption_hcf,
        adjustments_total: h.adjustments_total,
        checksum: h.checksum.clone(),
    })
}

/// The accounts held out of the batch: those the close names (each must exist) and those a clerk
/// held.
fn held_at_close(
    conn: &Connection,
    cycle_id: &str,
    holds: &[String],
) -> Result<BTreeMap<String, HoldSource>, BillingError> {
    let mut held: BTreeMap<String, HoldSource> = BTreeMap::new();
    for h in holds.iter().map(|h| h.trim()).filter(|h| !h.is_empty()) {
        if !sql::account_exists(conn, h)? {
            return Err(BillingError::UnknownAccount(h.to_string()));
        }
        held.insert(h.to_string(), HoldSource::Close);
    }
    for r in reads_sql::cycle_reads(conn, cycle_id)? {
        if let (ReadStatus::Held, None, Some(a)) = (r.status, r.superseded_by, &r.account_id) {
            held.insert(a.clone(), HoldSource::Clerk);
        }
    }
    Ok(held)
}

/// Estimates each missing read of an account not held (as of the close, no later than the window's
/// end), superseding a skip; a meter that cannot be estimated is an open exception. Returns how
/// many were estimated, and those exceptions.
fn estimate_missing(
    store: &Store,
    conn: &Connection,
    config: &dyn CycleSettings,
    cycle: &Cycle,
    held: &BTreeMap<String, HoldSource>,
    now: NaiveDateTime,
) -> Result<(usize, Vec<OpenException>), BillingError> {
    let cycle_id = cycle.id.as_str();
    let (on, estimate_at) = estimate_date(cycle, now);
    let mut exceptions: Vec<OpenException> = Vec::new();
    let mut estimated = 0;
    for m in cycles::missing_reads(store, config, cycle_id, on)? {
        if held.contains_key(&m.account_id) {
            continue;
        }
        let Some(e) = &m.estimate else {
            exceptions.push(OpenException {
                account_id: Some(m.account_id.clone()),
                meter_id: m.meter_id.clone(),
                read_id: None,
                flags: vec![FlagKind::Missing.to_string()],
                detail: m.flag.explanation.clone(),
            });
            continue;
        };
        let reading = e.reading.to_string();
        let note = format!("estimated at cycle close: {}", e.basis);
        let read_id = reads_sql::insert_read(
            conn,
            &reads_sql::NewRead {
                cycle_id,
                meter_id: &m.meter_id,
                account_id: Some(&m.account_id),
                read_at: estimate_at,
                raw_reading: &reading,
                reading: Some(e.reading),
                read_type: ReadType::Regular,
                // Not keyed: no manual-read quality (2.4.131); its status and 3.8.0 say what it is.
                method: ReadMethod::Estimated,
                reader: "",
                codes: &[],
                skip_code: None,
                note: Some(&note),
                device: None,
                received_at: now,
                status: ReadStatus::Estimated,
                previous_reading: None,
                previous_read_on: None,
                consumption: i64::try_from(e.consumption).ok(),
                expected_use: None,
                expected_basis: Some(&e.basis),
                low_limit: None,
                high_limit: None,
                intended_reading: None,
                flags: std::slice::from_ref(&m.flag),
            },
            &HashSet::new(),
        )?;
        sql::supersede_skipped(conn, cycle_id, &m.meter_id, read_id)?;
        estimated += 1;
    }
    Ok((estimated, exceptions))
}

/// The current reads still flagged, of accounts not held.
fn unresolved(reads: &[StoredRead], held: &BTreeMap<String, HoldSource>) -> Vec<OpenException> {
    let mut exceptions = Vec::new();
    for r in reads.iter().filter(|r| r.superseded_by.is_none()) {
        if r.status != ReadStatus::Flagged {
            continue;
        }
        if r.account_id.as_ref().is_some_and(|a| held.contains_key(a)) {
            continue;
        }
        exceptions.push(OpenException {
            account_id: r.account_id.clone(),
            meter_id: r.meter_id.clone(),
            read_id: Some(r.read_id),
            flags: r
                .flags
                .iter()
                .filter(|f| f.kind.is_exception())
                .map(|f| f.kind.to_string())
                .collect(),
            detail: r
                .flags
                .iter()
                .filter(|f| f.kind.is_exception())
                .map(|f| f.explanation.as_str())
                .collect::<Vec<_>>()
                .join(" | "),
        });
    }
    exceptions
}

/// What the batch says of each held account: its open reads and their flags, and its pending
/// adjustments.
fn held_accounts(
    conn: &Connection,
    cycle_id: &str,
    reads: &[StoredRead],
    held: &BTreeMap<String, HoldSource>,
) -> Result<Vec<HeldAccount>, BillingError> {
    let mut open_reads: HashMap<&str, Vec<&StoredRead>> = HashMap::new();
    for r in reads.iter().filter(|r| r.superseded_by.is_none()) {
        if let (Some(a), ReadStatus::Held | ReadStatus::Flagged) = (&r.account_id, r.status) {
            open_reads.entry(a.as_str()).or_default().push(r);
        }
    }
    let mut pending: HashMap<String, Vec<(i64, Decimal)>> = HashMap::new();
    for (id, a) in sql::adjustments_of_cycle(conn, cycle_id)? {
        if held.contains_key(&a.account_id) {
            pending
                .entry(a.account_id)
                .or_default()
                .push((id, a.amount));
        }
    }
    let held_accounts: Vec<HeldAccount> = held
        .iter()
        .map(|(account, source)| {
            let mine = open_reads.remove(account.as_str()).unwrap_or_default();
            let mut flags: Vec<String> = mine
                .iter()
                .flat_map(|r| &r.flags)
                .filter(|f| f.kind.is_exception())
                .map(|f| f.kind.to_string())
                .collect();
            flags.sort();
            flags.dedup();
            let money = pending.remove(account).unwrap_or_default();
            HeldAccount {
                account_id: account.clone(),
                source: *source,
                read_ids: mine.iter().map(|r| r.read_id).collect(),
                flags,
                pending_adjustment_ids: money.iter().map(|m| m.0).collect(),
                pending_adjustments_total: money.iter().map(|m| m.1).sum(),
            }
        })
        .collect();
    Ok(held_accounts)
}

/// Writes the batch, the billed reads into history, the cycle's closed state and the audit record.
fn record_close(
    conn: &Connection,
    cycle_id: &str,
    batch: &Batch,
    version: u32,
    estimated: usize,
    actor: &str,
    now: NaiveDateTime,
) -> Result<(), BillingError> {
    let header_json = batch.header_json()?;
    let h = batch.header();
    sql::insert_batch(
        conn,
        &sql::NewBatch {
            cycle_id,
            version,
            schema_version: BATCH_SCHEMA_VERSION,
            closed_at: now,
            closed_by: actor,
            record_count: h.record_count,
            held_count: h.held_count,
            header: &header_json,
            body: batch.canonical_body(),
            checksum: &h.checksum,
        },
    )?;
    for r in batch.records() {
        for l in &r.meters {
            let kind = match l.read_type {
                LineReadType::Final => continue,
                LineReadType::Estimated => ReadKind::Estimated,
                _ => ReadKind::Actual,
            };
            sql::write_closing_history(
                conn,
                cycle_id,
                &r.account_id,
                &l.meter_id,
                l.current_read_on,
                l.current_reading,
                kind,
            )?;
        }
    }
    sql::mark_closed(conn, cycle_id, now, version)?;
    let after = serde_json::json!({
        "status": "closed",
        "batch_version": version,
        "records": h.record_count,
        "held": batch.held().iter().map(|h| h.account_id.as_str()).collect::<Vec<_>>(),
        "estimated": estimated,
        "checksum": h.checksum,
    });
    audit::insert_audit(
        conn,
        &audit::AuditEntry {
            at: now,
            actor,
            entity: "cycle",
            entity_id: cycle_id,
            action: "close",
            before: Some(serde_json::json!({ "status": "open" })),
            after: Some(after),
            reason: "",
        },
    )?;
    Ok(())
}

/// The date estimates are made for, and their read time: the close time, but no later than the end of
/// the read window (a cycle closed days after its window bills its window, not the days after it).
fn estimate_date(cycle: &Cycle, now: NaiveDateTime) -> (NaiveDate, NaiveDateTime) {
    if now.date() <= cycle.window_to {
        (now.date(), now)
    } else {
        let end = NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default();
        (cycle.window_to, cycle.window_to.and_time(end))
    }
}

/// Reopens a closed cycle for corrections: the history rows its close wrote are taken back, the cycle
/// takes reads again, and the reopen is audited with `reason`. The batch versions already written stay.
pub fn reopen_cycle(
    store: &mut Store,
    cycle_id: &str,
    reason: &str,
    actor: &str,
    now: NaiveDateTime,
) -> Result<ReopenReport, BillingError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(BillingError::NoReason(cycle_id.to_string()));
    }
    store.write(|tx| {
        let cycle = reads_sql::load_cycle(tx, cycle_id)?
            .ok_or_else(|| BillingError::UnknownCycle(cycle_id.to_string()))?;
        if cycle.status != CycleStatus::Closed {
            return Err(BillingError::NotClosed(cycle_id.to_string()));
        }
        // A route is read in one open cycle at a time (as `cycle open` enforces).
        if let Some((route, other)) = reads_sql::routes_in_open_cycles(tx)?
            .into_iter()
            .find(|(r, c)| c != cycle_id && cycle.routes.contains(r))
        {
            return Err(BillingError::RouteBusy {
                cycle_id: cycle_id.to_string(),
                route,
                other,
            });
        }
        let version = sql::batch_version(tx, cycle_id)?;
        let history_removed = sql::remove_closing_history(tx, cycle_id)?;
        sql::mark_open(tx, cycle_id)?;
        // Its accounts' history changed: their judging basis is written again.
        crate::cycles::prepare_judging(tx, &cycle.routes)?;
        let before = serde_json::json!({"status": "closed", "batch_version": version});
        let after = serde_json::json!({"status": "open", "history_removed": history_removed});
        audit::insert_audit(
            tx,
            &audit::AuditEntry {
                at: now,
                actor,
                entity: "cycle",
                entity_id: cycle_id,
                action: "reopen",
                before: Some(before),
                after: Some(after),
                reason,
            },
        )?;
        Ok(ReopenReport {
            cycle_id: cycle_id.to_string(),
            batch_version: version,
            history_removed,
        })
    })
}

// ---- the records -----------------------------------------------------------------------------------

/// A meter's last billed reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Base {
    pub reading: u64,
    pub read_on: NaiveDate,
    pub kind: ReadKind,
}

/// A meter pulled since the account's last billed reading: its use is not billed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pulled {
    pub meter_id: String,
    pub previous: Base,
    pub final_reading: u64,
    pub final_on: NaiveDate,
}

/// An account's history replayed up to a date: where each meter in service stands, which pulled
/// meters' use is still unbilled, and when the unbilled period began.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Replay {
    pub bases: HashMap<String, Base>,
    pub pulled: Vec<Pulled>,
    pub period_start: Option<NaiveDate>,
}

/// Replays history rows dated up to `upto` (inclusive). A billed (actual or estimated) reading starts a
/// new period and settles the meters pulled before it; a final reading removes its meter from service
/// and leaves `final − previous` to bill; an initial reading sets a new meter's base.
pub(crate) fn replay(reads: &[HistoryRead], upto: NaiveDate) -> Replay {
    let mut order: Vec<&HistoryRead> = reads.iter().filter(|r| r.read_on <= upto).collect();
    order.sort_by_key(|r| (r.read_on, r.kind.same_day_rank()));
    let mut out = Replay::default();
    for r in order {
        let base = Base {
            reading: r.reading,
            read_on: r.read_on,
            kind: r.kind,
        };
        match r.kind {
            ReadKind::Final => {
                if let Some(previous) = out.bases.remove(&r.meter_id) {
                    out.pulled.push(Pulled {
                        meter_id: r.meter_id.clone(),
                        previous,
                        final_reading: r.reading,
                        final_on: r.read_on,
                    });
                }
            }
            ReadKind::Initial => {
                out.bases.insert(r.meter_id.clone(), base);
                out.period_start.get_or_insert(r.read_on);
            }
            ReadKind::Actual | ReadKind::Estimated => {
                out.bases.insert(r.meter_id.clone(), base);
                out.period_start = Some(r.read_on);
                out.pulled.clear();
            }
        }
    }
    out
}

/// Use between two readings of a register in billing units, and whether it wrapped through zero;
/// `None` when the register went backwards (the shorter way round is backwards and no rollover was
/// recognised by validation).
pub(crate) fn billed_use(
    register: &Register,
    previous: u64,
    current: u64,
    rollover_flagged: bool,
) -> Option<(u64, bool)> {
    match register.delta(previous, current) {
        RegisterDelta::Forward(d) => Some((register.to_billing(d), false)),
        RegisterDelta::Below { wrapped, back } if rollover_flagged || wrapped < back => {
            Some((register.to_billing(wrapped), true))
        }
        RegisterDelta::Below { .. } => None,
    }
}

/// Billing units to HCF (see [`Unit::to_hcf`]).
pub(crate) fn to_hcf(units: u64, unit: Unit) -> Decimal {
    unit.to_hcf(Decimal::from(units))
}

fn read_type_of(r: &StoredRead, edited: bool) -> LineReadType {
    if r.status == ReadStatus::Estimated {
        LineReadType::Estimated
    } else if edited {
        LineReadType::Edited
    } else if matches!(
        r.read_type,
        ReadType::HighConfirmed | ReadType::LowConfirmed
    ) {
        LineReadType::Confirmed
    } else {
        LineReadType::Actual
    }
}

fn quality_of(r: &StoredRead, edited: bool) -> Vec<String> {
    let kinds: Vec<FlagKind> = r.flags.iter().map(|f| f.kind).collect();
    let mut q: Vec<String> = crate::vee::read_quality(r.method, r.status, &kinds)
        .into_iter()
        .map(str::to_string)
        .collect();
    if edited && r.status != ReadStatus::Estimated {
        q.push("3.7.0".to_string());
    }
    q
}

type Records = (Vec<BillingRecord>, Vec<OpenException>);

/// One record per account of the cycle's routes that has something to bill, and the exceptions that
/// keep an account from being billed (no previous reading, a register that went backwards...).
fn build_records(
    conn: &Connection,
    cycle: &Cycle,
    reads: &[StoredRead],
    held: &BTreeMap<String, HoldSource>,
    listed: &HashSet<(String, String)>,
) -> Result<Records, BillingError> {
    let mut exceptions = Vec::new();
    let edited = edited_reads(reads);
    let current = current_reads(reads);
    let upto = current
        .values()
        .map(|r| r.read_at.date())
        .max()
        .map_or(cycle.window_to, |d| d.max(cycle.window_to));

    let accounts: Vec<sql::CycleAccount> = sql::cycle_accounts(conn, &cycle.id)?
        .into_iter()
        .filter(|a| !held.contains_key(&a.account_id))
        .collect();
    let mut in_service = in_service_meters(conn, &cycle.id)?;
    let scope = reads_sql::Scope::new(conn, accounts.iter().map(|a| a.account_id.clone()))?;
    let registers = scope.registers(conn)?;
    let mut replays: HashMap<String, Replay> = HashMap::new();
    scope.for_each_history(conn, |account, rows| -> Result<(), BillingError> {
        replays.insert(account.to_string(), replay(rows, upto));
        Ok(())
    })?;
    let mut adjustments = adjustment_lines(conn, &cycle.id)?;

    let empty = Replay::default();
    let mut records = Vec::new();
    for account in &accounts {
        let id = account.account_id.as_str();
        let history = replays.get(id).unwrap_or(&empty);
        let mut meters = in_service.remove(id).unwrap_or_default();
        meters.sort_by(|a, b| a.0.cmp(&b.0));
        let mut lines: Vec<MeterLine> = Vec::new();
        let mut trouble = false;
        let mut problem = |meter: &str, read_id: Option<i64>, flag: &str, detail: String| {
            exceptions.push(OpenException {
                account_id: Some(id.to_string()),
                meter_id: meter.to_string(),
                read_id,
                flags: vec![flag.to_string()],
                detail,
            });
        };
        for (meter_id, register) in &meters {
            let Some(r) = current.get(&(id, meter_id.as_str())) else {
                // Missing reads of active accounts were estimated, and flagged ones listed, already;
                // an inactive or closed account with no read has nothing to bill.
                if listed.contains(&(id.to_string(), meter_id.clone())) {
                    trouble = true;
                } else if account.status == AccountStatus::Active {
                    problem(
                        meter_id,
                        None,
                        "no_usable_read",
                        "no billable read this cycle (invalid or rejected); correct or estimate it"
                            .into(),
                    );
                    trouble = true;
                }
                continue;
            };
            let reading = r.reading.unwrap_or_default();
            let Some(base) = history
                .bases
                .get(meter_id)
                .filter(|b| b.read_on <= r.read_at.date())
            else {
                problem(
                    meter_id,
                    Some(r.read_id),
                    "no_previous_reading",
                    format!("no earlier reading of meter {meter_id} in the account's history"),
                );
                trouble = true;
                continue;
            };
            let rollover_flagged = r.flags.iter().any(|f| f.kind == FlagKind::Rollover);
            let Some((consumption, rollover)) =
                billed_use(register, base.reading, reading, rollover_flagged)
            else {
                problem(
                    meter_id,
                    Some(r.read_id),
                    "negative",
                    format!(
                        "reading {reading} is below the previous reading {} and is not a rollover",
                        base.reading
                    ),
                );
                trouble = true;
                continue;
            };
            let is_edited = edited.contains(&r.read_id);
            lines.push(MeterLine {
                meter_id: meter_id.clone(),
                dials: register.dials,
                multiplier: register.multiplier,
                unit: register.unit.to_string(),
                previous_reading: base.reading,
                previous_read_on: base.read_on,
                previous_kind: base.kind.to_string(),
                current_reading: reading,
                current_read_on: r.read_at.date(),
                read_type: read_type_of(r, is_edited),
                read_id: Some(r.read_id),
                rollover,
                consumption,
                consumption_hcf: to_hcf(consumption, register.unit),
                quality: quality_of(r, is_edited),
            });
        }
        // Meters pulled since the last billed reading: with this cycle's reads (a meter change) or,
        // without any, when pulled within the window (the account's final bill).
        let (pulled_lines, pulled_problems) =
            pulled_meter_lines(cycle, history, &registers, !lines.is_empty())?;
        for (meter, flag, detail) in pulled_problems {
            problem(&meter, None, flag, detail);
            trouble = true;
        }
        let money = adjustments.remove(id).unwrap_or_default();
        if trouble || (lines.is_empty() && pulled_lines.is_empty() && money.is_empty()) {
            continue;
        }
        records.push(record_of(
            cycle,
            account,
            history,
            pulled_lines,
            lines,
            money,
        ));
    }
    Ok((records, exceptions))
}

/// A meter an account's record cannot bill: meter id, flag, detail.
type LineProblem = (String, &'static str, String);

/// The final lines of the meters pulled from an account since its last billed reading: due with
/// this cycle's reads of its other meters (`with_reads`, a meter change) or, without any, when pulled
/// within the window (the account's final bill). A pulled meter that cannot be billed is a problem
/// (meter, flag, detail) instead.
fn pulled_meter_lines(
    cycle: &Cycle,
    history: &Replay,
    registers: &reads_sql::Registers<'_>,
    with_reads: bool,
) -> Result<(Vec<MeterLine>, Vec<LineProblem>), BillingError> {
    let mut pulled_lines = Vec::new();
    let mut problems = Vec::new();
    for p in &history.pulled {
        let due = with_reads || (cycle.window_from <= p.final_on && p.final_on <= cycle.window_to);
        if !due {
            continue;
        }
        let Some(register) = registers.get(&p.meter_id)? else {
            problems.push((
                p.meter_id.clone(),
                "unknown_meter",
                format!("pulled meter {} is not in the district", p.meter_id),
            ));
            continue;
        };
        let Some((consumption, rollover)) =
            billed_use(&register, p.previous.reading, p.final_reading, false)
        else {
            problems.push((
                p.meter_id.clone(),
                "negative",
                format!(
                    "final reading {} of pulled meter {} is below its previous reading {}",
                    p.final_reading, p.meter_id, p.previous.reading
                ),
            ));
            continue;
        };
        pulled_lines.push(MeterLine {
            meter_id: p.meter_id.clone(),
            dials: register.dials,
            multiplier: register.multiplier,
            unit: register.unit.to_string(),
            previous_reading: p.previous.reading,
            previous_read_on: p.previous.read_on,
            previous_kind: p.previous.kind.to_string(),
            current_reading: p.final_reading,
            current_read_on: p.final_on,
            read_type: LineReadType::Final,
            read_id: None,
            rollover,
            consumption,
            consumption_hcf: to_hcf(consumption, register.unit),
            quality: Vec::new(),
        });
    }
    Ok((pulled_lines, problems))
}

/// Reads that replaced another (a clerk's correction); a skip replaced by its estimate is not one.
fn edited_reads(reads: &[StoredRead]) -> HashSet<i64> {
    let by_id: HashMap<i64, &StoredRead> = reads.iter().map(|r| (r.read_id, r)).collect();
    reads
        .iter()
        .filter(|old| old.read_type != ReadType::Skipped)
        .filter_map(|old| old.superseded_by)
        .filter(|new| by_id.contains_key(new))
        .collect()
}

/// The current read per (account, meter): not superseded, a reading, billable status; a read from
/// the meter over an estimate (a late read after a reopen), then the latest.
fn current_reads(reads: &[StoredRead]) -> HashMap<(&str, &str), &StoredRead> {
    let mut current: HashMap<(&str, &str), &StoredRead> = HashMap::new();
    for r in reads {
        let Some(account) = r.account_id.as_deref() else {
            continue;
        };
        let billable = matches!(
            r.status,
            ReadStatus::Accepted | ReadStatus::Resolved | ReadStatus::Estimated
        );
        if r.superseded_by.is_some()
            || r.reading.is_none()
            || r.read_type == ReadType::Skipped
            || !billable
        {
            continue;
        }
        let rank = |r: &StoredRead| (r.status != ReadStatus::Estimated, r.read_at, r.read_id);
        let slot = current.entry((account, r.meter_id.as_str())).or_insert(r);
        if rank(r) > rank(slot) {
            *slot = r;
        }
    }
    current
}

/// The meters in service on the cycle's routes, by account, with their registers.
fn in_service_meters(
    conn: &Connection,
    cycle_id: &str,
) -> Result<HashMap<String, Vec<(String, Register)>>, BillingError> {
    let mut in_service: HashMap<String, Vec<(String, Register)>> = HashMap::new();
    for m in reads_sql::route_stops(conn, cycle_id, None)? {
        if let Some(a) = m.account_id {
            in_service
                .entry(a)
                .or_default()
                .push((m.meter_id, m.register));
        }
    }
    Ok(in_service)
}

/// The cycle's adjustments as batch lines, by account.
fn adjustment_lines(
    conn: &Connection,
    cycle_id: &str,
) -> Result<HashMap<String, Vec<AdjustmentLine>>, BillingError> {
    let mut adjustments: HashMap<String, Vec<AdjustmentLine>> = HashMap::new();
    for (id, a) in sql::adjustments_of_cycle(conn, cycle_id)? {
        adjustments
            .entry(a.account_id.clone())
            .or_default()
            .push(AdjustmentLine {
                adjustment_id: id,
                kind: a.kind.to_string(),
                amount: a.amount,
                units: a.units,
                read_id: a.read_id,
                note: a.note,
                created_by: a.created_by,
                created_at: a.created_at,
            });
    }
    Ok(adjustments)
}

/// An account's record: the pulled meters' final lines first, then this cycle's lines, over the
/// period from the last billed reading.
fn record_of(
    cycle: &Cycle,
    account: &sql::CycleAccount,
    history: &Replay,
    mut pulled_lines: Vec<MeterLine>,
    mut lines: Vec<MeterLine>,
    money: Vec<AdjustmentLine>,
) -> BillingRecord {
    let id = account.account_id.as_str();
    pulled_lines
        .sort_by(|a, b| (a.current_read_on, &a.meter_id).cmp(&(b.current_read_on, &b.meter_id)));
    pulled_lines.append(&mut lines);
    let meters = pulled_lines;
    let period_to = meters
        .iter()
        .map(|l| l.current_read_on)
        .max()
        .unwrap_or(cycle.window_to);
    let period_from = history
        .period_start
        .or_else(|| meters.iter().map(|l| l.previous_read_on).min())
        .unwrap_or(cycle.window_from)
        .min(period_to);
    let read_type = meters
        .iter()
        .map(|l| l.read_type)
        .filter(|t| *t != LineReadType::Final)
        .max()
        .unwrap_or(if meters.is_empty() {
            LineReadType::Actual
        } else {
            LineReadType::Final
        });
    BillingRecord {
        account_id: id.to_string(),
        account_status: account.status.to_string(),
        rate_class: account.rate_class.clone(),
        route_id: account.route_id.clone(),
        period_from,
        period_to,
        days: (period_to - period_from).num_days(),
        read_type,
        consumption_hcf: meters.iter().map(|l| l.consumption_hcf).sum(),
        meters,
        adjustments_total: money.iter().map(|a| a.amount).sum(),
        adjustments: money,
        held: false,
    }
}
