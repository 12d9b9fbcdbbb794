//! What a clerk does to a read: accept, correct, estimate, order a re-read, hold, grant a leak credit.
//! Each runs in one transaction and writes `review_actions` and the append-only `audit_log`.

use super::leak::{self, LeakComputation, LeakInput, LeakRefusal};
use super::tariff::to_hcf;
use crate::billing::{Adjustment, AdjustmentKind, BillingError};
use crate::config::Config;
use crate::cycles::{self, CycleError, Disposition};
use crate::domain::{FieldRead, FlagKind, ReadMethod, ReadStatus, ReadType, Register};
use crate::store::review::{self as sql, AuditEntry, NewOrder};
use crate::store::{ReviewRead, Store, StoreError};
use crate::vee::{self, AccountHistory};
use chrono::NaiveDateTime;
use rusqlite::Connection;
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no read {0}")]
    UnknownRead(i64),
    #[error("no field order {0}")]
    UnknownOrder(i64),
    #[error("no cycle `{0}`")]
    UnknownCycle(String),
    #[error("read {read} was replaced by read {by}: act on that one")]
    Superseded { read: i64, by: i64 },
    #[error("cycle `{0}` is closed: its reads have gone to billing")]
    CycleClosed(String),
    #[error("read {read} is {status}; {action} needs a read that is {needs}")]
    WrongStatus {
        read: i64,
        status: ReadStatus,
        action: &'static str,
        needs: &'static str,
    },
    /// A refused form value; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// A refused value of one form field (the page shows the message beside it).
    #[error("{message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("leak credit refused: {0}")]
    Leak(#[from] LeakRefusal),
    #[error(transparent)]
    Cycle(#[from] CycleError),
    #[error(transparent)]
    Billing(#[from] BillingError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ReviewError {
    fn from(e: rusqlite::Error) -> Self {
        ReviewError::Store(StoreError::Sql(e))
    }
}

impl ReviewError {
    fn field(field: &'static str, message: impl Into<String>) -> ReviewError {
        ReviewError::Field {
            field,
            message: message.into(),
        }
    }

    /// The form field a refusal is about, if it names one.
    pub fn field_name(&self) -> Option<&'static str> {
        match self {
            ReviewError::Field { field, .. } => Some(field),
            ReviewError::Leak(LeakRefusal::ProofRequired) => Some("repair_proof"),
            _ => None,
        }
    }

    /// Whether the clerk can fix this (shown on the page) rather than a fault (logged, 500).
    pub fn is_user_error(&self) -> bool {
        match self {
            ReviewError::Store(_) => false,
            ReviewError::Billing(e) => !matches!(e, BillingError::Store(_)),
            ReviewError::Cycle(e) => !matches!(e, CycleError::Store(_) | CycleError::Io { .. }),
            _ => true,
        }
    }
}

pub type Result<T, E = ReviewError> = std::result::Result<T, E>;

fn load(conn: &Connection, read_id: i64) -> Result<ReviewRead> {
    sql::review_read_by_id(conn, read_id)?.ok_or(ReviewError::UnknownRead(read_id))
}

/// The read, refused if it is not the current one or its cycle is closed.
fn actionable(conn: &Connection, read_id: i64) -> Result<ReviewRead> {
    let r = load(conn, read_id)?;
    if let Some(by) = r.superseded_by {
        return Err(ReviewError::Superseded { read: read_id, by });
    }
    if !r.cycle_open {
        return Err(ReviewError::CycleClosed(r.cycle_id));
    }
    Ok(r)
}

/// Refuses `action` on a read whose status is not one of `allowed` (`needs` says which, for the clerk).
fn require_status(
    r: &ReviewRead,
    action: &'static str,
    allowed: &[ReadStatus],
    needs: &'static str,
) -> Result<()> {
    if allowed.contains(&r.status) {
        return Ok(());
    }
    Err(ReviewError::WrongStatus {
        read: r.read_id,
        status: r.status,
        action,
        needs,
    })
}

/// What a clerk's correction, estimate or re-read order applies to.
const FLAGGED_OR_HELD: &[ReadStatus] = &[ReadStatus::Flagged, ReadStatus::Held];

use crate::cycles::read_snapshot as snapshot;

/// Records one decision: a `review_actions` row and its audit record (`cycles::record_decision`,
/// which a re-read folded back by a handheld's upload writes too).
fn record(
    conn: &Connection,
    read: &ReviewRead,
    action: &str,
    actor: &str,
    now: NaiveDateTime,
    reason: &str,
    detail: serde_json::Value,
    after: serde_json::Value,
) -> Result<()> {
    cycles::record_decision(conn, read, action, actor, now, reason, detail, after)?;
    Ok(())
}

fn clean(text: &str, what: &str, max: usize) -> Result<String> {
    let t = text.trim();
    if t.chars().count() > max {
        return Err(ReviewError::Invalid(format!(
            "{what} is longer than {max} characters"
        )));
    }
    if t.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(ReviewError::Invalid(format!(
            "{what} contains control characters"
        )));
    }
    Ok(t.to_string())
}

fn status_change(
    store: &mut Store,
    read_id: i64,
    action: &'static str,
    from: &[ReadStatus],
    needs: &'static str,
    to: ReadStatus,
    actor: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<()> {
    let reason = clean(reason, "reason", 500)?;
    store.write(|tx| {
        let r = actionable(tx, read_id)?;
        require_status(&r, action, from, needs)?;
        sql::set_read_status(tx, read_id, to)?;
        let mut after = snapshot(&r);
        after["status"] = json!(to.as_str());
        record(tx, &r, action, actor, now, &reason, json!({}), after)
    })
}

/// Accepts a flagged (or held) read as it is: it bills as read. When the meter has another current read
/// in the cycle (a duplicate with a different reading), accepting this one resolves the pair in the same
/// decision: the other read is superseded by this one.
pub fn accept(
    store: &mut Store,
    read_id: i64,
    actor: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<()> {
    let reason = clean(reason, "reason", 500)?;
    store.write(|tx| accept_in(tx, read_id, actor, &reason, now))
}

/// [`accept`] as the clerk's page does it: a read whose likely bill impact is above
/// `[review] accept_reason_above` needs a reason.
pub fn accept_checked(
    store: &mut Store,
    config: &Config,
    read_id: i64,
    actor: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<()> {
    let reason = clean(reason, "reason", 500)?;
    store.write(|tx| {
        let r = actionable(tx, read_id)?;
        require_status(&r, "accept", FLAGGED_OR_HELD, "flagged or held")?;
        let limit = config.review.accept_reason_above;
        if reason.is_empty() {
            if let Some(impact) = super::queue::bill_impact(&config.tariff, &r) {
                if impact.abs() > limit {
                    return Err(ReviewError::field(
                        "reason",
                        format!(
                            "this read changes the bill by {} (more than {}): say why it is accepted",
                            super::html::money(impact),
                            super::html::money(limit)
                        ),
                    ));
                }
            }
        }
        accept_in(tx, read_id, actor, &reason, now)
    })
}

fn accept_in(
    tx: &Connection,
    read_id: i64,
    actor: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<()> {
    let r = actionable(tx, read_id)?;
    require_status(&r, "accept", FLAGGED_OR_HELD, "flagged or held")?;
    sql::set_read_status(tx, read_id, ReadStatus::Resolved)?;
    let mut after = snapshot(&r);
    after["status"] = json!("resolved");
    let this_dup = r.flags.iter().any(|f| f.kind == FlagKind::Duplicate);
    let mut pair = Vec::new();
    for other in sql::other_current_reads_of_meter(tx, &r.cycle_id, &r.meter_id, read_id)? {
        let o = load(tx, other)?;
        if this_dup || o.flags.iter().any(|f| f.kind == FlagKind::Duplicate) {
            pair.push(other);
        }
    }
    record(
        tx,
        &r,
        "accept",
        actor,
        now,
        reason,
        json!({ "resolves": pair }),
        after,
    )?;
    for other in pair {
        let o = load(tx, other)?;
        sql::set_superseded(tx, other, read_id)?;
        sql::set_read_status(tx, other, ReadStatus::Resolved)?;
        let mut after = snapshot(&o);
        after["status"] = json!("resolved");
        after["superseded_by"] = json!(read_id);
        record(
            tx,
            &o,
            "duplicate_resolved",
            actor,
            now,
            reason,
            json!({ "kept_read_id": read_id }),
            after,
        )?;
    }
    Ok(())
}

/// Holds a flagged read out of the billing batch.
pub fn hold(
    store: &mut Store,
    read_id: i64,
    actor: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<()> {
    if reason.trim().is_empty() {
        return Err(ReviewError::field(
            "reason",
            "say why the read is held (reason)",
        ));
    }
    status_change(
        store,
        read_id,
        "hold",
        &[ReadStatus::Flagged],
        "flagged",
        ReadStatus::Held,
        actor,
        reason,
        now,
    )
}

/// Corrects a mis-keyed reading: the new reading goes through the same validation as every field read
/// (`cycles::ingest_in`) and the new read supersedes the old. Returns the new read's id.
pub fn correct(
    store: &mut Store,
    config: &Config,
    read_id: i64,
    new_reading: &str,
    reason: &str,
    actor: &str,
    now: NaiveDateTime,
) -> Result<i64> {
    let raw = new_reading.trim();
    if raw.is_empty() || raw.len() > 12 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ReviewError::field(
            "reading",
            format!("the corrected reading must be 1–12 digits, got `{raw}`"),
        ));
    }
    let reason = clean(reason, "reason", 500)?;
    if reason.is_empty() {
        return Err(ReviewError::field(
            "reason",
            "a correction needs a reason (what was mis-keyed)",
        ));
    }
    store.write(|tx| {
        let r = actionable(tx, read_id)?;
        require_status(&r, "correct", FLAGGED_OR_HELD, "flagged or held")?;
        if let Some(m) = crate::store::meter_in(tx, &r.meter_id)? {
            let fits = raw.parse::<u64>().is_ok_and(|v| m.register.fits(v));
            if !fits {
                return Err(ReviewError::field(
                    "reading",
                    format!(
                        "{raw} does not fit meter {}: it has {} dials (at most {})",
                        r.meter_id,
                        m.register.dials,
                        10u64.checked_pow(u32::from(m.register.dials)).map_or(u64::MAX, |v| v - 1)
                    ),
                ));
            }
        }
        let read = FieldRead {
            meter_id: r.meter_id.clone(),
            read_at: r.read_at,
            raw_reading: raw.to_string(),
            read_type: ReadType::Regular,
            // A clerk's correction of an estimate is a reading keyed by hand.
            method: match r.method.parse() {
                Ok(ReadMethod::Estimated) | Err(_) => ReadMethod::Keyed,
                Ok(m) => m,
            },
            reader: r.reader.clone(),
            codes: r.codes.clone(),
            skip_code: None,
            note: Some(format!(
                "corrected by {actor} from {}: {reason}",
                r.raw_reading
            )),
            device: None,
        };
        // The read being corrected must not count as an earlier read of the meter (it would flag the
        // correction a duplicate): it is marked superseded first, by itself, inside this transaction,
        // and pointed at its replacement once that exists.
        sql::set_superseded(tx, read_id, read_id)?;
        let outcome = cycles::ingest_in(tx, config, &r.cycle_id, &[read], now)?;
        let out = outcome
            .into_iter()
            .next()
            .ok_or_else(|| ReviewError::Invalid("validation returned no outcome".into()))?;
        let new_id = out.read_id;
        sql::set_superseded(tx, read_id, new_id)?;
        sql::set_read_status(tx, read_id, ReadStatus::Resolved)?;
        let new = load(tx, new_id)?;
        let (status, flags) = match &out.disposition {
            Disposition::Stored { status, flags } => (
                status.as_str(),
                flags.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(),
            ),
            _ => (new.status.as_str(), Vec::new()),
        };
        let detail = json!({ "new_read_id": new_id, "new_reading": raw, "validation": { "status": status, "flags": flags } });
        record(
            tx,
            &r,
            "correct",
            actor,
            now,
            &reason,
            detail.clone(),
            json!({ "status": "resolved", "superseded_by": new_id, "replacement": snapshot(&new) }),
        )?;
        sql::insert_review_action(
            tx,
            new_id,
            "corrected_from",
            actor,
            now,
            &reason,
            &json!({ "replaces": read_id }),
        )?;
        Ok(new_id)
    })
}

/// The account's history as validation sees it, and the register of every meter it mentions.
pub fn account_history(
    conn: &Connection,
    account_id: &str,
) -> Result<(Vec<crate::domain::HistoryRead>, AccountHistory)> {
    let reads = crate::store::history_of_account_in(conn, account_id)?;
    let mut regs: HashMap<String, Register> = HashMap::new();
    for r in &reads {
        if !regs.contains_key(&r.meter_id) {
            if let Some(m) = crate::store::meter_in(conn, &r.meter_id)? {
                regs.insert(m.id.clone(), m.register);
            }
        }
    }
    let h = AccountHistory::build(&reads, |m| regs.get(m).copied());
    Ok((reads, h))
}

/// What an estimate of the read would be (same period last year, else average daily use × days).
pub fn estimate_preview(
    conn: &Connection,
    config: &Config,
    r: &ReviewRead,
) -> Result<Option<vee::Estimate>> {
    let (Some(account), Some(class)) = (&r.account_id, &r.rate_class) else {
        return Ok(None);
    };
    let Some(meter) = crate::store::meter_in(conn, &r.meter_id)? else {
        return Ok(None);
    };
    let (_, h) = account_history(conn, account)?;
    Ok(vee::estimate(
        &h,
        &r.meter_id,
        &meter.register,
        class,
        r.read_at.date(),
        &config.validation,
    ))
}

/// Replaces the read by an estimate; the method is recorded with it. Returns the estimated read's id.
pub fn estimate(
    store: &mut Store,
    config: &Config,
    read_id: i64,
    reason: &str,
    actor: &str,
    now: NaiveDateTime,
) -> Result<i64> {
    let reason = clean(reason, "reason", 500)?;
    let r = load(store.conn(), read_id)?;
    let e = estimate_preview(store.conn(), config, &r)?.ok_or_else(|| {
        ReviewError::Invalid(format!(
            "read {read_id} cannot be estimated: no previous reading or no usable history; correct it by hand"
        ))
    })?;
    let consumption = i64::try_from(e.consumption)
        .map_err(|_| ReviewError::Invalid(format!("estimate {} is too large", e.consumption)))?;
    store.write(|tx| {
        let r = actionable(tx, read_id)?;
        require_status(&r, "estimate", FLAGGED_OR_HELD, "flagged or held")?;
        let new_id = sql::insert_estimated_read(
            tx,
            &sql::EstimatedRead {
                replaces: &r,
                reading: e.reading,
                consumption,
                basis: &e.basis,
                clerk: actor,
                now,
            },
        )?;
        sql::set_read_status(tx, read_id, ReadStatus::Resolved)?;
        let detail = json!({ "new_read_id": new_id, "reading": e.reading, "consumption": e.consumption, "method": e.basis, "quality": e.quality });
        record(
            tx,
            &r,
            "estimate",
            actor,
            now,
            &reason,
            detail.clone(),
            json!({ "status": "resolved", "superseded_by": new_id, "estimate": detail }),
        )?;
        Ok(new_id)
    })
}

/// Orders a re-read: a `reread` field order for the read's meter, which goes down with the route at the
/// next dock. Returns the order id.
pub fn order_reread(
    store: &mut Store,
    read_id: i64,
    instructions: &str,
    actor: &str,
    now: NaiveDateTime,
) -> Result<i64> {
    let instructions = clean(instructions, "instructions", 80)?;
    store.write(|tx| {
        let r = actionable(tx, read_id)?;
        let Some(account) = r.account_id.clone() else {
            return Err(ReviewError::Invalid(format!(
                "meter {} is at no account: fix the inventory or correct the meter number",
                r.meter_id
            )));
        };
        require_status(&r, "a re-read", FLAGGED_OR_HELD, "flagged or held")?;
        if sql::orders(tx, None, None, Some(read_id), 50)?
            .iter()
            .any(|o| o.kind == "reread" && matches!(o.status.as_str(), "open" | "sent"))
        {
            return Err(ReviewError::Invalid(format!(
                "a re-read of read {read_id} is already on order"
            )));
        }
        // Route messages are short on handhelds (Neptune: 80 characters).
        let text = if instructions.is_empty() {
            let flags: Vec<&str> = r.flags.iter().map(|f| f.kind.as_str()).collect();
            let mut t = format!("Re-read: keyed {} ({})", r.raw_reading, flags.join(","));
            t.truncate(80);
            t
        } else {
            instructions
        };
        let order_id = sql::insert_order(
            tx,
            &NewOrder {
                kind: "reread",
                account_id: &account,
                meter_id: Some(&r.meter_id),
                cycle_id: Some(&r.cycle_id),
                read_id: Some(read_id),
                instructions: &text,
                created_by: actor,
                created_at: now,
            },
        )?;
        record(
            tx,
            &r,
            "reread",
            actor,
            now,
            "",
            json!({ "order_id": order_id, "instructions": text }),
            snapshot(&r),
        )?;
        sql::insert_audit(
            tx,
            &AuditEntry {
                at: now,
                actor,
                entity: "field_order",
                entity_id: &order_id.to_string(),
                action: "create",
                before: None,
                after: Some(
                    json!({ "kind": "reread", "read_id": read_id, "meter_id": r.meter_id, "instructions": text }),
                ),
                reason: "",
            },
        )?;
        Ok(order_id)
    })
}

/// The leak policy applied to a read: its use and normal in HCF, and the earlier credit, if any.
pub fn leak_input_parts(
    conn: &Connection,
    r: &ReviewRead,
) -> Result<(Decimal, Decimal, String, Option<chrono::NaiveDate>)> {
    let (Some(account), Some(consumption), Some(unit)) = (&r.account_id, r.consumption, r.unit)
    else {
        return Err(ReviewError::Invalid(format!(
            "read {} has no account, use or unit to adjust",
            r.read_id
        )));
    };
    let expected = r.expected_use.ok_or_else(|| {
        ReviewError::Invalid(format!(
            "read {} has no normal use for its period (too little history)",
            r.read_id
        ))
    })?;
    let normal = Decimal::from_f64(expected)
        .ok_or_else(|| ReviewError::Invalid(format!("normal use {expected} is not a number")))?
        .round_dp(2);
    let use_hcf = to_hcf(Decimal::from(consumption), unit);
    let normal_hcf = to_hcf(normal, unit);
    let basis = r
        .expected_basis
        .clone()
        .unwrap_or_else(|| "expected use".into())
        .replace('_', " ");
    let last = sql::leak_credits_of(conn, account)?
        .into_iter()
        .map(|c| c.read_on)
        .max();
    Ok((use_hcf, normal_hcf, basis, last))
}

/// Computes the leak credit for a read under the configured policy (nothing is written).
pub fn leak_preview(
    conn: &Connection,
    config: &Config,
    read_id: i64,
    repair_proof: &str,
) -> Result<LeakComputation> {
    let r = load(conn, read_id)?;
    let (use_hcf, normal_hcf, basis, last) = leak_input_parts(conn, &r)?;
    Ok(leak::compute(
        &config.leak_policy,
        &config.tariff,
        &LeakInput {
            rate_class: r.rate_class.as_deref().unwrap_or(""),
            read_on: r.read_at.date(),
            use_hcf,
            normal_hcf,
            normal_basis: &basis,
            repair_proof,
            last_credit_on: last,
        },
    )?)
}

/// What became of a leak credit a clerk granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeakGrant {
    /// Recorded for billing.
    Granted(LeakComputation),
    /// Above `[leak_policy] second_approval_above`: recorded as a request an admin (another person)
    /// approves before anything reaches billing.
    AwaitingApproval(LeakComputation),
}

/// A leak credit request waiting for an admin: who asked, when, the proof of repair, the credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakRequest {
    pub requested_by: String,
    pub at: NaiveDateTime,
    pub repair_proof: String,
    pub credit: String,
}

/// The read's leak credit request still waiting for approval, if any.
pub fn pending_leak_request(conn: &Connection, read_id: i64) -> Result<Option<LeakRequest>> {
    let mut pending = None;
    for a in sql::review_actions_of(conn, &[read_id])? {
        match a.action.as_str() {
            "leak_credit_requested" => {
                let d: serde_json::Value = serde_json::from_str(&a.detail).unwrap_or_default();
                pending = Some(LeakRequest {
                    requested_by: a.actor,
                    at: a.at,
                    repair_proof: a.reason,
                    credit: d["credit"].as_str().unwrap_or("").to_string(),
                });
            }
            "leak_credit" | "leak_credit_declined" | "reopen" => pending = None,
            _ => {}
        }
    }
    Ok(pending)
}

/// Grants the leak credit: recorded for billing (`billing::record_adjustment`, a negative amount) and in
/// `leak_credits` for the 12-month rule. Capped at `[leak_policy] max_credit`; above
/// `second_approval_above` it waits for an admin other than the clerk who asked
/// ([`approve_leak_credit`]).
pub fn grant_leak_credit(
    store: &mut Store,
    config: &Config,
    read_id: i64,
    repair_proof: &str,
    actor: &str,
    now: NaiveDateTime,
) -> Result<LeakGrant> {
    let proof = clean(repair_proof, "proof of repair", 300)?;
    let r = load(store.conn(), read_id)?;
    require_status(
        &r,
        "a leak credit",
        &[ReadStatus::Accepted, ReadStatus::Resolved],
        "accepted (accept the confirmed high read first)",
    )?;
    let c = leak_preview(store.conn(), config, read_id, &proof)?;
    if let Some(p) = pending_leak_request(store.conn(), read_id)? {
        return Err(ReviewError::Invalid(format!(
            "a leak credit of ${} is already waiting for an admin's approval (asked by {})",
            p.credit, p.requested_by
        )));
    }
    let needs_approval = config
        .leak_policy
        .second_approval_above
        .is_some_and(|limit| c.credit > limit);
    if needs_approval {
        store.write(|tx| {
            let r = actionable(tx, read_id)?;
            let detail = json!({ "credit": c.credit.to_string(), "excess_hcf": c.excess_hcf.to_string(), "steps": c.steps });
            record(
                tx,
                &r,
                "leak_credit_requested",
                actor,
                now,
                &proof,
                detail,
                snapshot(&r),
            )
        })?;
        return Ok(LeakGrant::AwaitingApproval(c));
    }
    write_leak_credit(store, config, read_id, &c, &proof, actor, None, now)?;
    Ok(LeakGrant::Granted(c))
}

/// An admin approves (or, `approve` false, declines) the leak credit request waiting on a read. The
/// approver must not be the clerk who asked.
pub fn approve_leak_credit(
    store: &mut Store,
    config: &Config,
    read_id: i64,
    approve: bool,
    actor: &str,
    now: NaiveDateTime,
) -> Result<Option<LeakComputation>> {
    let p = pending_leak_request(store.conn(), read_id)?.ok_or_else(|| {
        ReviewError::Invalid(format!(
            "no leak credit of read {read_id} is waiting for approval"
        ))
    })?;
    if p.requested_by == actor {
        return Err(ReviewError::Invalid(format!(
            "{actor} asked for this credit: another admin approves it"
        )));
    }
    if !approve {
        store.write(|tx| {
            let r = actionable(tx, read_id)?;
            record(
                tx,
                &r,
                "leak_credit_declined",
                actor,
                now,
                "",
                json!({ "requested_by": p.requested_by, "credit": p.credit }),
                snapshot(&r),
            )
        })?;
        return Ok(None);
    }
    let c = leak_preview(store.conn(), config, read_id, &p.repair_proof)?;
    write_leak_credit(
        store,
        config,
        read_id,
        &c,
        &p.repair_proof,
        &p.requested_by,
        Some(actor),
        now,
    )?;
    Ok(Some(c))
}

fn write_leak_credit(
    store: &mut Store,
    config: &Config,
    read_id: i64,
    c: &LeakComputation,
    proof: &str,
    actor: &str,
    approved_by: Option<&str>,
    now: NaiveDateTime,
) -> Result<()> {
    store.write(|tx| {
        let r = actionable(tx, read_id)?;
        if sql::leak_credit_of_read(tx, read_id)?.is_some() {
            return Err(ReviewError::Invalid(format!(
                "a leak credit was already granted for read {read_id}"
            )));
        }
        let account = r.account_id.clone().unwrap_or_default();
        let credited = c.excess_hcf * config.leak_policy.credit_percent / Decimal::from(100);
        let approval = approved_by
            .map(|a| format!("; approved by {a}"))
            .unwrap_or_default();
        let adjustment_id = crate::billing::record_adjustment(
            tx,
            &Adjustment {
                account_id: account.clone(),
                cycle_id: r.cycle_id.clone(),
                read_id: Some(read_id),
                kind: AdjustmentKind::LeakCredit,
                amount: -c.credit,
                units: Some(credited.round_dp(2)),
                note: format!(
                    "leak credit: {}% of {} HCF above normal; proof of repair: {proof}{approval}",
                    config.leak_policy.credit_percent, c.excess_hcf
                ),
                created_by: actor.to_string(),
                created_at: now,
            },
        )?;
        let computation = serde_json::to_string(c).map_err(|e| {
            ReviewError::Invalid(format!("cannot record the computation: {e}"))
        })?;
        let credit_id = sql::insert_leak_credit(
            tx,
            &sql::LeakCredit {
                credit_id: 0,
                account_id: account.clone(),
                read_id,
                cycle_id: r.cycle_id.clone(),
                read_on: r.read_at.date(),
                granted_at: now,
                granted_by: approved_by.map_or_else(|| actor.to_string(), |a| format!("{actor}, approved by {a}")),
                excess_hcf: c.excess_hcf.to_string(),
                credit: c.credit.to_string(),
                repair_proof: proof.to_string(),
                computation,
            },
        )?;
        let detail = json!({ "credit_id": credit_id, "adjustment_id": adjustment_id, "credit": c.credit.to_string(),
            "excess_hcf": c.excess_hcf.to_string(), "steps": c.steps, "approved_by": approved_by });
        sql::insert_review_action(tx, read_id, "leak_credit", approved_by.unwrap_or(actor), now, proof, &detail)?;
        sql::insert_audit(
            tx,
            &AuditEntry {
                at: now,
                actor: approved_by.unwrap_or(actor),
                entity: "account",
                entity_id: &account,
                action: "leak_credit",
                before: None,
                after: Some(detail),
                reason: proof,
            },
        )?;
        Ok(())
    })
}

// ---- undo, and reads no account owns ----------------------------------------------------------------

/// Reopens a decision while the cycle is open (audited): an accepted or held read is flagged again; a
/// correction or estimate is withdrawn (the original read is current and flagged again, the
/// replacement is superseded by it). Refused when a leak credit was granted on the read.
pub fn reopen(
    store: &mut Store,
    read_id: i64,
    reason: &str,
    actor: &str,
    now: NaiveDateTime,
) -> Result<i64> {
    let reason = clean(reason, "reason", 500)?;
    if reason.is_empty() {
        return Err(ReviewError::field(
            "reason",
            "say why the decision is reopened (reason)",
        ));
    }
    store.write(|tx| {
        let r = load(tx, read_id)?;
        if !r.cycle_open {
            return Err(ReviewError::CycleClosed(r.cycle_id));
        }
        // The decision to undo is on the original read: this one, or the one a clerk replaced by it.
        let replaced_by_clerk = |old: i64| -> Result<bool> {
            Ok(last_decision(tx, old)?.is_some_and(|(a, d)| {
                matches!(a.as_str(), "correct" | "estimate" | "assign")
                    && d["new_read_id"].as_i64() == Some(read_id)
            }))
        };
        let mut original = r.clone();
        for old in sql::reads_superseded_by(tx, read_id)? {
            if replaced_by_clerk(old)? {
                original = load(tx, old)?;
            }
        }
        let Some((action, detail)) = last_decision(tx, original.read_id)? else {
            return Err(ReviewError::Invalid(format!(
                "read {} has no decision to reopen",
                original.read_id
            )));
        };
        let replacement = match action.as_str() {
            "correct" | "estimate" | "assign" => detail["new_read_id"].as_i64(),
            _ => None,
        };
        for id in [Some(original.read_id), replacement].into_iter().flatten() {
            if sql::leak_credit_of_read(tx, id)?.is_some() {
                return Err(ReviewError::Invalid(format!(
                    "a leak credit was granted on read {id}: it cannot be reopened (adjust the credit in billing)"
                )));
            }
        }
        let back = if original.flags.iter().any(|f| f.kind.is_exception()) {
            ReadStatus::Flagged
        } else {
            ReadStatus::Accepted
        };
        if let Some(rep) = replacement {
            let rep_read = load(tx, rep)?;
            sql::clear_superseded(tx, original.read_id)?;
            sql::set_superseded(tx, rep, original.read_id)?;
            let mut after = snapshot(&rep_read);
            after["superseded_by"] = json!(original.read_id);
            record(tx, &rep_read, "withdrawn", actor, now, &reason, json!({ "reopened_read_id": original.read_id }), after)?;
        }
        // Reads an accept resolved as the other half of a duplicate pair are current again too.
        if action == "accept" {
            for other in detail["resolves"].as_array().into_iter().flatten().filter_map(|v| v.as_i64()) {
                let o = load(tx, other)?;
                if o.superseded_by == Some(original.read_id) {
                    sql::clear_superseded(tx, other)?;
                    let st = if o.flags.iter().any(|f| f.kind.is_exception()) { ReadStatus::Flagged } else { ReadStatus::Accepted };
                    sql::set_read_status(tx, other, st)?;
                    let mut after = snapshot(&o);
                    after["status"] = json!(st.as_str());
                    after["superseded_by"] = json!(null);
                    record(tx, &o, "reopen", actor, now, &reason, json!({ "with_read_id": original.read_id }), after)?;
                }
            }
        }
        sql::set_read_status(tx, original.read_id, back)?;
        let mut after = snapshot(&original);
        after["status"] = json!(back.as_str());
        after["superseded_by"] = json!(null);
        record(tx, &original, "reopen", actor, now, &reason, json!({ "undoes": action, "withdrawn_read_id": replacement }), after)?;
        Ok(original.read_id)
    })
}

/// The read's latest decision still standing (`accept`, `hold`, `correct`, `estimate`, `assign`,
/// `void`; `None` when the latest was reopened) and its detail.
fn last_decision(conn: &Connection, read_id: i64) -> Result<Option<(String, serde_json::Value)>> {
    let mut last = None;
    for a in sql::review_actions_of(conn, &[read_id])? {
        if a.read_id != read_id {
            continue;
        }
        match a.action.as_str() {
            "accept" | "hold" | "correct" | "estimate" | "assign" | "void" => {
                last = Some((
                    a.action,
                    serde_json::from_str(&a.detail).unwrap_or_default(),
                ));
            }
            "reopen" => last = None,
            _ => {}
        }
    }
    Ok(last)
}

/// The meter an unowned read (a meter in inventory, no account) most likely belongs to: a meter on
/// the route its reader walked that day with no read yet this cycle, whose last reading is at or just
/// below the read's (the two numbers swapped on a paper or in the CIS). `(meter, account)`.
pub fn likely_meter(conn: &Connection, r: &ReviewRead) -> Result<Option<(String, String)>> {
    let Some(reading) = r.reading else {
        return Ok(None);
    };
    let Some(route) = sql::route_walked(conn, &r.cycle_id, &r.reader, r.read_at.date())? else {
        return Ok(None);
    };
    Ok(sql::unread_meters_of_route(conn, &r.cycle_id, &route)?
        .into_iter()
        .filter_map(|(m, a, last)| {
            let last = last?;
            (last <= reading && reading - last <= 500).then_some((reading - last, m, a))
        })
        .min()
        .map(|(_, m, a)| (m, a)))
}

/// Resolves an unowned read by assigning it to the right meter: the reading is taken again as a read
/// of `meter_id` through validation (`cycles::ingest_in`), which supersedes the unowned read.
pub fn assign_meter(
    store: &mut Store,
    config: &Config,
    read_id: i64,
    meter_id: &str,
    reason: &str,
    actor: &str,
    now: NaiveDateTime,
) -> Result<i64> {
    let reason = clean(reason, "reason", 500)?;
    let meter_id = meter_id.trim().to_string();
    store.write(|tx| {
        let r = actionable(tx, read_id)?;
        if r.account_id.is_some() {
            return Err(ReviewError::Invalid(format!(
                "read {read_id} belongs to account {}: correct it instead",
                r.account_id.as_deref().unwrap_or("")
            )));
        }
        let m = crate::store::meter_in(tx, &meter_id)?
            .ok_or_else(|| ReviewError::field("meter_id", format!("no meter `{meter_id}`")))?;
        if m.account_id.is_none() || m.status != crate::domain::MeterStatus::Active {
            return Err(ReviewError::field(
                "meter_id",
                format!(
                    "meter {meter_id} is {} at no account: pick a meter in service",
                    m.status
                ),
            ));
        }
        let read = FieldRead {
            meter_id: meter_id.clone(),
            read_at: r.read_at,
            raw_reading: r.raw_reading.clone(),
            read_type: ReadType::Regular,
            method: r.method.parse().unwrap_or(ReadMethod::Keyed),
            reader: r.reader.clone(),
            codes: r.codes.clone(),
            skip_code: r.skip_code.clone(),
            note: Some(format!(
                "assigned by {actor} from meter {}: {reason}",
                r.meter_id
            )),
            device: None,
        };
        sql::set_superseded(tx, read_id, read_id)?;
        let out = cycles::ingest_in(tx, config, &r.cycle_id, &[read], now)?
            .into_iter()
            .next()
            .ok_or_else(|| ReviewError::Invalid("validation returned no outcome".into()))?;
        sql::set_superseded(tx, read_id, out.read_id)?;
        sql::set_read_status(tx, read_id, ReadStatus::Resolved)?;
        record(
            tx,
            &r,
            "assign",
            actor,
            now,
            &reason,
            json!({ "meter_id": meter_id, "new_read_id": out.read_id }),
            json!({ "status": "resolved", "superseded_by": out.read_id }),
        )?;
        Ok(out.read_id)
    })
}

/// Resolves an unowned read by voiding it (a reason is required): it bills nothing.
pub fn void(
    store: &mut Store,
    read_id: i64,
    reason: &str,
    actor: &str,
    now: NaiveDateTime,
) -> Result<()> {
    let reason = clean(reason, "reason", 500)?;
    if reason.is_empty() {
        return Err(ReviewError::field(
            "reason",
            "say why the read is void (reason)",
        ));
    }
    store.write(|tx| {
        let r = actionable(tx, read_id)?;
        if r.account_id.is_some() {
            return Err(ReviewError::Invalid(format!(
                "read {read_id} belongs to an account: only a read no account owns can be voided"
            )));
        }
        require_status(&r, "voiding", FLAGGED_OR_HELD, "flagged or held")?;
        sql::set_read_status(tx, read_id, ReadStatus::Resolved)?;
        let mut after = snapshot(&r);
        after["status"] = json!("resolved");
        record(tx, &r, "void", actor, now, &reason, json!({}), after)
    })
}
