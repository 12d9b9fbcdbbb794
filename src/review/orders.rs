//! Field orders (re-read, door hanger / 48-hour notice, shut-off, turn-on, meter change) and message
//! codes: created and edited by the office, carried to handhelds in route files at their next dock.

use super::actions::{Result, ReviewError};
use super::settings::ReviewConfig;
use crate::domain::{MessageCode, MeterStatus};
use crate::store::review::{self as sql, AuditEntry, NewOrder};
use crate::store::Store;
use chrono::{NaiveDate, NaiveDateTime};
use serde_json::json;

/// Order kinds, as stored and as the handheld receives them.
pub const KINDS: &[(&str, &str)] = &[
    ("reread", "Re-read"),
    ("door_hanger", "Door hanger / 48-hour notice"),
    ("shut_off", "Shut off for non-payment"),
    ("turn_on", "Turn on"),
    ("meter_change", "Meter change"),
];

pub fn kind_label(kind: &str) -> &str {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(kind, |(_, l)| l)
}

fn one_line(text: &str, what: &str, max: usize) -> Result<String> {
    let t = text.trim();
    if t.chars().count() > max || t.chars().any(char::is_control) {
        return Err(ReviewError::Invalid(format!(
            "{what} must be one line of at most {max} characters"
        )));
    }
    Ok(t.to_string())
}

/// Creates an order for an account (its active meter unless one is named). It is attached to the open
/// cycle that reads the account's route, so the route file of that cycle carries it.
pub fn create_order(
    store: &mut Store,
    kind: &str,
    account_id: &str,
    meter_id: Option<&str>,
    instructions: &str,
    actor: &str,
    now: NaiveDateTime,
) -> Result<i64> {
    if !KINDS.iter().any(|(k, _)| *k == kind) {
        return Err(ReviewError::Invalid(format!("unknown order kind `{kind}`")));
    }
    let instructions = one_line(instructions, "instructions", 80)?;
    let account_id = account_id.trim().to_string();
    let account = store
        .account(&account_id)?
        .ok_or_else(|| ReviewError::Invalid(format!("no account `{account_id}`")))?;
    let meter = match meter_id.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => {
            let meter = store
                .meter(m)?
                .ok_or_else(|| ReviewError::Invalid(format!("no meter `{m}`")))?;
            if meter.account_id.as_deref() != Some(account_id.as_str()) {
                return Err(ReviewError::Invalid(format!(
                    "meter `{m}` is not set at account `{account_id}`"
                )));
            }
            Some(meter.id)
        }
        None => store
            .meters_of_account(&account_id)?
            .into_iter()
            .find(|m| m.status == MeterStatus::Active)
            .map(|m| m.id),
    };
    store.write(|tx| {
        let cycle = crate::store::open_cycle_of_route(tx, &account.route_id)?;
        let id = sql::insert_order(
            tx,
            &NewOrder {
                kind,
                account_id: &account_id,
                meter_id: meter.as_deref(),
                cycle_id: cycle.as_deref(),
                read_id: None,
                instructions: &instructions,
                created_by: actor,
                created_at: now,
            },
        )?;
        sql::insert_audit(
            tx,
            &AuditEntry {
                at: now,
                actor,
                entity: "field_order",
                entity_id: &id.to_string(),
                action: "create",
                before: None,
                after: Some(
                    json!({ "kind": kind, "account_id": account_id, "meter_id": meter, "cycle_id": cycle, "instructions": instructions }),
                ),
                reason: "",
            },
        )?;
        Ok(id)
    })
}

pub fn cancel_order(
    store: &mut Store,
    order_id: i64,
    reason: &str,
    actor: &str,
    now: NaiveDateTime,
) -> Result<()> {
    let reason = one_line(reason, "reason", 200)?;
    store.write(|tx| {
        let o = sql::order_by_id(tx, order_id)?.ok_or(ReviewError::UnknownOrder(order_id))?;
        if !matches!(o.status.as_str(), "open" | "sent") {
            return Err(ReviewError::Invalid(format!(
                "order {order_id} is {}: only open or sent orders can be cancelled",
                o.status
            )));
        }
        sql::set_order_status(tx, order_id, "cancelled", None, None)?;
        audit_order(
            tx,
            order_id,
            "cancel",
            &o.status,
            "cancelled",
            None,
            actor,
            now,
            &reason,
        )
    })
}

fn audit_order(
    conn: &rusqlite::Connection,
    order_id: i64,
    action: &str,
    before: &str,
    after: &str,
    result: Option<&serde_json::Value>,
    actor: &str,
    now: NaiveDateTime,
    reason: &str,
) -> Result<()> {
    sql::insert_audit(
        conn,
        &AuditEntry {
            at: now,
            actor,
            entity: "field_order",
            entity_id: &order_id.to_string(),
            action,
            before: Some(json!({ "status": before })),
            after: Some(json!({ "status": after, "result": result })),
            reason,
        },
    )?;
    Ok(())
}

/// A meter change as the crew reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterChange {
    pub final_reading: u64,
    pub new_meter_id: String,
    pub initial_reading: u64,
    pub on: NaiveDate,
}

/// Completes an order from the office (the crew phoned it in, or a paper ticket came back). A meter
/// change moves the old meter to inventory and the new one to active at the account, with final and
/// initial readings in the history, so the cycle's use spans both meters. A shut-off makes the account
/// inactive (no use expected); a turn-on makes it active again.
pub fn complete_order(
    store: &mut Store,
    config: &ReviewConfig,
    order_id: i64,
    note: &str,
    change: Option<&MeterChange>,
    actor: &str,
    now: NaiveDateTime,
) -> Result<()> {
    let note = one_line(note, "note", 200)?;
    let o = sql::order_by_id(store.conn(), order_id)?.ok_or(ReviewError::UnknownOrder(order_id))?;
    if !matches!(o.status.as_str(), "open" | "sent") {
        return Err(ReviewError::Invalid(format!(
            "order {order_id} is {}: only open or sent orders can be completed",
            o.status
        )));
    }
    if o.kind == "meter_change" {
        let c = change.ok_or_else(|| {
            ReviewError::Invalid(
                "a meter change needs the old meter's final reading, the new meter number and its initial reading".into(),
            )
        })?;
        let old = o.meter_id.clone().ok_or_else(|| {
            ReviewError::Invalid(format!("order {order_id} names no meter to pull"))
        })?;
        return apply_meter_change(store, config, order_id, &old, c, &note, actor, now);
    }
    store.write(|tx| {
        let result = json!({ "completed_by": actor, "note": note });
        let account_status = match o.kind.as_str() {
            "shut_off" => Some("inactive"),
            "turn_on" => Some("active"),
            _ => None,
        };
        if let Some(status) = account_status {
            let before = sql::set_account_status(tx, &o.account_id, status)?;
            sql::insert_audit(
                tx,
                &AuditEntry {
                    at: now,
                    actor,
                    entity: "account",
                    entity_id: &o.account_id,
                    action: &o.kind,
                    before: Some(json!({ "status": before })),
                    after: Some(json!({ "status": status })),
                    reason: &format!("field order {order_id}"),
                },
            )?;
        }
        sql::set_order_status(
            tx,
            order_id,
            "completed",
            Some(now),
            Some(&result.to_string()),
        )?;
        audit_order(
            tx,
            order_id,
            "complete",
            &o.status,
            "completed",
            Some(&result),
            actor,
            now,
            &note,
        )?;
        // A re-read done on paper comes back into its read now (the meter's latest read after it).
        if o.kind == "reread" {
            crate::cycles::fold_reread(tx, order_id, now)?;
        }
        Ok(())
    })
}

/// Applies a meter change reported for `order_id` (by the office or, from an upload, by sync).
pub fn apply_meter_change(
    store: &mut Store,
    config: &ReviewConfig,
    order_id: i64,
    old_meter: &str,
    c: &MeterChange,
    note: &str,
    actor: &str,
    now: NaiveDateTime,
) -> Result<()> {
    let old = store
        .meter(old_meter)?
        .ok_or_else(|| ReviewError::Invalid(format!("no meter `{old_meter}`")))?;
    let account = old
        .account_id
        .clone()
        .ok_or_else(|| ReviewError::Invalid(format!("meter `{old_meter}` is at no account")))?;
    let new_id = c.new_meter_id.trim();
    let new = store.meter(new_id)?.ok_or_else(|| ReviewError::Field {
        field: "new_meter_id",
        message: format!("no meter `{new_id}` in the inventory"),
    })?;
    if new.status != MeterStatus::Inventory {
        return Err(ReviewError::Field {
            field: "new_meter_id",
            message: format!("meter `{new_id}` is {}, not in inventory", new.status),
        });
    }
    if !old.register.fits(c.final_reading) {
        return Err(ReviewError::Field {
            field: "final_reading",
            message: format!(
                "final reading {} does not fit meter `{old_meter}`'s {} dials",
                c.final_reading, old.register.dials
            ),
        });
    }
    if !new.register.fits(c.initial_reading) {
        return Err(ReviewError::Field {
            field: "initial_reading",
            message: format!(
                "initial reading {} does not fit meter `{new_id}`'s {} dials",
                c.initial_reading, new.register.dials
            ),
        });
    }
    check_change_date(store.conn(), config, &account, c.on, now.date())?;
    if let Some((day, reading)) = sql::last_actual_reading(store.conn(), old_meter)? {
        if c.on < day {
            return Err(ReviewError::Field {
                field: "on",
                message: format!(
                    "{} is before meter {old_meter}'s last actual read ({reading} on {day}): the change cannot come before it",
                    c.on
                ),
            });
        }
        if c.final_reading < reading {
            return Err(ReviewError::Field {
                field: "final_reading",
                message: format!(
                    "final reading {} is below meter {old_meter}'s last actual reading {reading} (on {day})",
                    c.final_reading
                ),
            });
        }
    }
    store.write(|tx| {
        sql::change_meter(
            tx,
            &account,
            old_meter,
            c.final_reading,
            new_id,
            c.initial_reading,
            c.on,
        )?;
        // The account's judging basis went with the change: written again for the open cycles.
        crate::cycles::prepare_judging_for_open_cycles(tx)?;
        let result = json!({
            "completed_by": actor, "note": note, "old_meter_id": old_meter, "final_reading": c.final_reading,
            "new_meter_id": new_id, "initial_reading": c.initial_reading, "on": c.on.to_string(),
        });
        for (meter, before, after) in [
            (old_meter, "active", "inventory"),
            (new_id, "inventory", "active"),
        ] {
            sql::insert_audit(
                tx,
                &AuditEntry {
                    at: now,
                    actor,
                    entity: "meter",
                    entity_id: meter,
                    action: "meter_change",
                    before: Some(json!({ "status": before })),
                    after: Some(json!({ "status": after, "account_id": (after == "active").then_some(&account) })),
                    reason: &format!("field order {order_id}"),
                },
            )?;
        }
        let before = sql::order_by_id(tx, order_id)?
            .ok_or(ReviewError::UnknownOrder(order_id))?
            .status;
        sql::set_order_status(
            tx,
            order_id,
            "completed",
            Some(now),
            Some(&result.to_string()),
        )?;
        audit_order(tx, order_id, "complete", &before, "completed", Some(&result), actor, now, note)
    })
}

/// A meter change's date must fall in the read window of the open cycle that reads the account's route
/// (widened by `meter_change_days_around_window`), or, with no open cycle, within
/// `meter_change_days_back` days before today; never after today.
fn check_change_date(
    conn: &rusqlite::Connection,
    config: &ReviewConfig,
    account_id: &str,
    on: NaiveDate,
    today: NaiveDate,
) -> Result<()> {
    let refuse = |message: String| {
        Err(ReviewError::Field {
            field: "on",
            message,
        })
    };
    if on > today {
        return refuse(format!(
            "{on} is in the future: enter the day the meter was changed"
        ));
    }
    let route = crate::store::account_in(conn, account_id)?.map(|a| a.route_id);
    let cycle = match route {
        Some(r) => crate::store::open_cycle_of_route(conn, &r)?,
        None => None,
    };
    let slack = chrono::Days::new(u64::from(config.meter_change_days_around_window));
    match cycle.and_then(|c| crate::store::load_cycle(conn, &c).ok().flatten()) {
        Some(c) => {
            let from = c
                .window_from
                .checked_sub_days(slack)
                .unwrap_or(c.window_from);
            let to = c.window_to.checked_add_days(slack).unwrap_or(c.window_to);
            if on < from || on > to {
                return refuse(format!(
                    "{on} is outside cycle {}'s read window ({from} to {to})",
                    c.id
                ));
            }
        }
        None => {
            let from = today
                .checked_sub_days(chrono::Days::new(u64::from(config.meter_change_days_back)))
                .unwrap_or(today);
            if on < from {
                return refuse(format!(
                    "{on} is more than {} days ago (the account is on no open cycle)",
                    config.meter_change_days_back
                ));
            }
        }
    }
    Ok(())
}

// ---- message codes -------------------------------------------------------------------------------------

/// A message code as the admin form sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeForm {
    pub code: String,
    pub category: String,
    pub description: String,
    pub requires_follow_up: bool,
}

/// The message categories a code can have (a pick-list on the page): `(category, what it means)`.
pub const CATEGORIES: &[(&str, &str)] = &[
    ("trouble", "trouble: a problem at the meter or box"),
    ("skip", "skip: the meter could not be read"),
    ("hazard", "hazard: warns the reader (dog, traffic...)"),
    ("note", "note: information for the office"),
];

fn checked(f: &CodeForm, existing_category: Option<&str>) -> Result<MessageCode> {
    let code = f.code.trim().to_ascii_uppercase();
    // Neptune skip codes are at most 4 characters; Badger's are 01–99: both fit.
    if code.is_empty() || code.len() > 4 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ReviewError::Field {
            field: "code",
            message: format!("a code is 1–4 letters or digits, got `{}`", f.code.trim()),
        });
    }
    let category = f.category.trim().to_ascii_lowercase();
    // A code imported from the CIS may carry a category of its own: editing it keeps it.
    if !CATEGORIES.iter().any(|(c, _)| *c == category)
        && existing_category != Some(category.as_str())
    {
        return Err(ReviewError::Field {
            field: "category",
            message: format!(
                "pick a category from the list ({}), got `{}`",
                CATEGORIES
                    .iter()
                    .map(|(c, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", "),
                f.category.trim()
            ),
        });
    }
    let description = one_line(&f.description, "description", 80)?;
    if description.is_empty() {
        return Err(ReviewError::Field {
            field: "description",
            message: "a code needs a description".into(),
        });
    }
    Ok(MessageCode {
        code,
        category,
        description,
        requires_follow_up: f.requires_follow_up,
        retired: false,
    })
}

fn code_json(c: &MessageCode) -> serde_json::Value {
    json!({ "code": c.code, "category": c.category, "description": c.description,
            "requires_follow_up": c.requires_follow_up, "retired": c.retired })
}

/// Creates a code (refused if it exists) or edits one (`editing`); handhelds get it at their next dock.
pub fn save_code(
    store: &mut Store,
    form: &CodeForm,
    editing: bool,
    actor: &str,
    now: NaiveDateTime,
) -> Result<MessageCode> {
    let existing = sql::code_by_id(store.conn(), form.code.trim().to_ascii_uppercase().as_str())?;
    let mut c = checked(form, existing.as_ref().map(|e| e.category.as_str()))?;
    store.write(|tx| {
        let before = sql::code_by_id(tx, &c.code)?;
        match (&before, editing) {
            (Some(_), false) => {
                return Err(ReviewError::Invalid(format!(
                    "code `{}` exists: edit it instead",
                    c.code
                )))
            }
            (None, true) => return Err(ReviewError::Invalid(format!("no code `{}`", c.code))),
            (Some(b), true) => c.retired = b.retired,
            (None, false) => {}
        }
        sql::put_code(tx, &c)?;
        sql::insert_audit(
            tx,
            &AuditEntry {
                at: now,
                actor,
                entity: "message_code",
                entity_id: &c.code,
                action: if editing { "edit" } else { "create" },
                before: before.as_ref().map(code_json),
                after: Some(code_json(&c)),
                reason: "",
            },
        )?;
        Ok(c.clone())
    })
}

/// Retires (or brings back) a code: retired codes stay for history but are no longer sent to handhelds.
pub fn set_code_retired(
    store: &mut Store,
    code: &str,
    retired: bool,
    actor: &str,
    now: NaiveDateTime,
) -> Result<()> {
    store.write(|tx| {
        let before = sql::code_by_id(tx, code)?
            .ok_or_else(|| ReviewError::Invalid(format!("no code `{code}`")))?;
        let after = MessageCode {
            retired,
            ..before.clone()
        };
        sql::put_code(tx, &after)?;
        sql::insert_audit(
            tx,
            &AuditEntry {
                at: now,
                actor,
                entity: "message_code",
                entity_id: code,
                action: if retired { "retire" } else { "restore" },
                before: Some(code_json(&before)),
                after: Some(code_json(&after)),
                reason: "",
            },
        )?;
        Ok(())
    })
}
