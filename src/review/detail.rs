//! A read's page: where it stands in the clerk's list (previous / next), the read and its flags with the
//! decision controls beside them, the history chart beside the last 13 reads, the likely bill impact,
//! the leak adjustment, field orders and the decisions in words. The actions are posted from it; after
//! each, the next read of the list opens (save and next).

use super::actions::{self, LeakGrant, LeakRequest, ReviewError};
use super::chart::{self, ChartBar, ChartInput};
use super::html::{beside, flag_label, flag_text, money, notice, page, typed, FormError, Viewer};
use super::queue::{self, ListCtx, Place};
use super::tariff::{to_hcf, Bill};
use super::{act, form_error, read, viewer, REFUSED};
use crate::config::Config;
use crate::domain::{ReadKind, ReadStatus};
use crate::serve::auth::{check_csrf, ClerkUser};
use crate::serve::error::AppError;
use crate::serve::state::AppState;
use crate::store::review as sql;
use crate::store::{FieldOrder, LeakCredit, ReviewAction, ReviewRead};
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use chrono::{Months, NaiveDate};
use maud::{html, Markup};
use rusqlite::Connection;
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct Notices {
    #[serde(default)]
    pub done: String,
    #[serde(default)]
    pub error: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    #[serde(flatten)]
    ctx: ListCtx,
    #[serde(default)]
    done: String,
    #[serde(default)]
    error: String,
}

/// One row of the last reads' table.
struct PastRead {
    on: NaiveDate,
    reading: u64,
    used: Option<f64>,
    kind: ReadKind,
    codes: Vec<String>,
}

/// Everything the page shows, read in one read transaction.
struct DetailData {
    read: ReviewRead,
    place: Place,
    chart: ChartInput<'static>,
    past: Vec<PastRead>,
    /// The reading before this one and its date (from the read, else the account's history).
    previous: Option<(u64, NaiveDate)>,
    actions: Vec<ReviewAction>,
    orders: Vec<FieldOrder>,
    code_text: Vec<(String, String)>,
    follow_ups: Vec<(String, String, chrono::NaiveDateTime)>,
    estimate: Option<crate::vee::Estimate>,
    replaces: Vec<i64>,
    /// The other current reads of the meter in the cycle (a duplicate's pair).
    pair: Vec<(i64, String)>,
    leak: Result<crate::review::leak::LeakComputation, String>,
    granted: Option<LeakCredit>,
    pending: Option<LeakRequest>,
    likely_meter: Option<(String, String)>,
    /// Whether the read's latest decision can be reopened.
    reopenable: bool,
}

fn gather(
    conn: &Connection,
    config: &Config,
    read_id: i64,
    ctx: &ListCtx,
) -> Result<DetailData, ReviewError> {
    let read = sql::review_read_by_id(conn, read_id)?.ok_or(ReviewError::UnknownRead(read_id))?;
    let place = queue::place(conn, &config.tariff, &read.cycle_id, ctx, read_id)?;
    let replaces = sql::reads_superseded_by(conn, read_id)?;
    let mut ids = replaces.clone();
    ids.push(read_id);
    let actions_list = sql::review_actions_of(conn, &ids)?;
    let follow_ups = sql::follow_ups_of(conn, &ids)?;
    let orders = match &read.account_id {
        Some(a) => sql::orders(conn, None, Some(a), None, 20)?,
        None => Vec::new(),
    };
    let codes = crate::store::codes_in(conn, true)?;
    let code_text = read
        .codes
        .iter()
        .chain(read.skip_code.iter())
        .map(|c| {
            let d = codes
                .iter()
                .find(|m| &m.code == c)
                .map(|m| format!("{} ({})", m.description, m.category))
                .unwrap_or_else(|| "unknown code".into());
            (c.clone(), d)
        })
        .collect();
    let mut pair = Vec::new();
    if read.superseded_by.is_none() {
        for id in sql::other_current_reads_of_meter(conn, &read.cycle_id, &read.meter_id, read_id)?
        {
            if let Some(o) = sql::review_read_by_id(conn, id)? {
                pair.push((id, o.raw_reading));
            }
        }
    }
    let mut chart_input = ChartInput {
        bars: Vec::new(),
        band: None,
        meter_changes: Vec::new(),
        unit: "hcf",
    };
    let mut past = Vec::new();
    let mut estimate = None;
    let mut previous = read.previous_reading.zip(read.previous_read_on);
    let day = read.read_at.date();
    if let Some(account) = &read.account_id {
        let (history, h) = actions::account_history(conn, account)?;
        if previous.is_none() {
            // Skipped, invalid or missing reads carry no previous reading: the meter's last one shows.
            previous = history
                .iter()
                .rev()
                .find(|r| {
                    r.read_on < day && (r.meter_id == read.meter_id || r.kind == ReadKind::Initial)
                })
                .or_else(|| history.iter().rev().find(|r| r.read_on < day))
                .map(|r| (r.reading, r.read_on));
        }
        let since = day.checked_sub_months(Months::new(36)).unwrap_or(day);
        for p in h.periods.iter().filter(|p| p.to > since && p.to <= day) {
            chart_input.bars.push(ChartBar {
                from: p.from,
                to: p.to,
                usage: p.usage,
                estimated: p.estimated,
                current: false,
            });
        }
        chart_input.meter_changes = history
            .iter()
            .filter(|r| r.kind == ReadKind::Initial && r.read_on > since)
            .map(|r| r.read_on)
            .collect();
        chart_input.meter_changes.dedup();
        let codes_by_day = sql::codes_by_day(conn, account)?;
        past = history
            .iter()
            .rev()
            .filter(|r| r.read_on <= day)
            .take(13)
            .map(|r| PastRead {
                on: r.read_on,
                reading: r.reading,
                used: h
                    .periods
                    .iter()
                    .find(|p| p.to == r.read_on)
                    .map(|p| p.usage),
                kind: r.kind,
                codes: codes_by_day.get(&r.read_on).cloned().unwrap_or_default(),
            })
            .collect();
        let from = h.period_start.or(read.previous_read_on).unwrap_or(day);
        if let (Some(c), Some(u)) = (read.consumption, read.unit) {
            let hcf = to_hcf(Decimal::from(c), u);
            chart_input.bars.push(ChartBar {
                from,
                to: day,
                usage: rust_decimal::prelude::ToPrimitive::to_f64(&hcf).unwrap_or(0.0),
                estimated: read.status == ReadStatus::Estimated,
                current: true,
            });
        }
        if let Some(class) = &read.rate_class {
            if from < day {
                chart_input.band = crate::vee::expect(&h, class, from, day, &config.validation)
                    .map(|e| (e.low.max(0.0), e.high));
            }
        }
        if matches!(read.status, ReadStatus::Flagged | ReadStatus::Held) {
            estimate = actions::estimate_preview(conn, config, &read)?;
        }
    }
    // A preview of the leak computation (proof of repair is asked for when it is granted).
    let mut preview_policy = config.clone();
    preview_policy.leak_policy.proof_of_repair_required = false;
    let leak = match read.status {
        _ if read.account_id.is_none() => Err("no account: nothing to credit".into()),
        ReadStatus::Accepted | ReadStatus::Resolved if read.superseded_by.is_none() => {
            actions::leak_preview(conn, &preview_policy, read_id, "")
                .map(|mut c| {
                    if config.leak_policy.proof_of_repair_required {
                        c.steps.pop();
                        c.steps.push(
                            "Proof of repair: required; note it below to grant the credit.".into(),
                        );
                    }
                    c
                })
                .map_err(|e| e.to_string())
        }
        _ => Err(
            "a leak credit applies to an accepted read (accept the confirmed high read first)"
                .into(),
        ),
    };
    let granted = sql::leak_credit_of_read(conn, read_id)?;
    let pending = actions::pending_leak_request(conn, read_id)?;
    let likely_meter = if read.account_id.is_none() && read.superseded_by.is_none() {
        actions::likely_meter(conn, &read)?
    } else {
        None
    };
    let decided = actions_list.iter().rev().find(|a| {
        matches!(
            a.action.as_str(),
            "accept" | "hold" | "correct" | "estimate" | "assign" | "void" | "reopen"
        )
    });
    let reopenable = read.cycle_open
        && granted.is_none()
        && decided.is_some_and(|a| a.action != "reopen")
        && (read.superseded_by.is_none()
            || decided.is_some_and(|a| a.read_id == read_id && a.action != "accept"));
    Ok(DetailData {
        read,
        place,
        chart: chart_input,
        past,
        previous,
        actions: actions_list,
        orders,
        code_text,
        follow_ups,
        estimate,
        replaces,
        pair,
        leak,
        granted,
        pending,
        likely_meter,
        reopenable,
    })
}

fn bill_table(title: &str, b: &Bill) -> Markup {
    html! {
        table.cards {
            caption { (title) }
            tr { th { "Charge" } th.num { "HCF" } th.num { "Rate" } th.num { "Amount" } }
            tr { td { "Fixed charge" } td {} td {} td.num { (money(b.fixed_charge)) } }
            @for l in &b.lines {
                tr {
                    td { "Tier " (l.from) " – " (l.to.map_or("up".to_string(), |t| t.to_string())) }
                    td.num { (l.hcf) } td.num { (money(l.rate)) } td.num { (money(l.amount)) }
                }
            }
            tr { th colspan="3" { "Total for " (b.hcf) " HCF" } th.num { (money(b.total)) } }
        }
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "—".to_string(), |v| v.to_string())
}

/// A decision on a read, in words.
fn sentence(a: &ReviewAction) -> String {
    let d: serde_json::Value = serde_json::from_str(&a.detail).unwrap_or_default();
    let s = |k: &str| {
        d[k].as_str()
            .map(str::to_string)
            .or_else(|| d[k].as_i64().map(|v| v.to_string()))
            .unwrap_or_default()
    };
    let money_of = |k: &str| s(k).parse::<Decimal>().map(money).unwrap_or_else(|_| s(k));
    let who = &a.actor;
    match a.action.as_str() {
        "accept" => {
            let pair: Vec<String> = d["resolves"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_i64())
                .map(|v| v.to_string())
                .collect();
            if pair.is_empty() {
                format!("{who} accepted the read as it is.")
            } else {
                format!(
                    "{who} accepted the read as it is, resolving the other reading of the meter (read {}).",
                    pair.join(", ")
                )
            }
        }
        "hold" => format!("{who} held the read out of billing."),
        "correct" => {
            let flags: Vec<String> = d["validation"]["flags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .map(flag_text)
                .collect();
            format!(
                "{who} corrected the reading to {}: new read {} re-validated as {}{}.",
                s("new_reading"),
                s("new_read_id"),
                d["validation"]["status"].as_str().unwrap_or("?"),
                if flags.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", flags.join(", "))
                }
            )
        }
        "corrected_from" => format!("{who} entered this read to correct read {}.", s("replaces")),
        "estimate" => format!(
            "{who} estimated reading {} (use {}, {}): read {}.",
            s("reading"),
            s("consumption"),
            s("method"),
            s("new_read_id")
        ),
        "reread" => format!(
            "{who} ordered a re-read (order {}): “{}”.",
            s("order_id"),
            s("instructions")
        ),
        "reread_result" => format!(
            "The re-read (order {}) came back as read {}, {}.",
            s("order_id"),
            s("result_read_id"),
            s("result_status")
        ),
        "reread_confirmed" => format!(
            "The re-read (order {}) found the same reading: it stands, confirmed.",
            s("order_id")
        ),
        "leak_credit" => match d["approved_by"].as_str() {
            Some(by) => format!(
                "{by} approved a leak credit of {} for billing.",
                money_of("credit")
            ),
            None => format!(
                "{who} granted a leak credit of {} for billing.",
                money_of("credit")
            ),
        },
        "leak_credit_requested" => format!(
            "{who} asked for a leak credit of {}; it waits for an admin's approval.",
            money_of("credit")
        ),
        "leak_credit_declined" => format!(
            "{who} declined the leak credit of {} that {} asked for.",
            money_of("credit"),
            s("requested_by")
        ),
        "duplicate_resolved" => format!(
            "{who} kept read {} of this meter instead: this reading was set aside.",
            s("kept_read_id")
        ),
        "reopen" => format!("{who} reopened the decision: the read is to review again."),
        "withdrawn" => format!(
            "{who} withdrew this read: read {} is to review again.",
            s("reopened_read_id")
        ),
        "assign" => format!(
            "{who} assigned the reading to meter {}: read {}.",
            s("meter_id"),
            s("new_read_id")
        ),
        "void" => format!("{who} voided the read: it bills nothing."),
        other => format!("{who}: {}.", other.replace('_', " ")),
    }
}

fn render(
    d: &DetailData,
    v: &Viewer,
    state: &AppState,
    ctx: &ListCtx,
    n: &Notices,
    err: Option<&FormError>,
) -> Markup {
    let r = &d.read;
    let unit = r.unit.map(|u| u.to_string()).unwrap_or_default();
    let list = ctx.link(
        &format!("/review/cycles/{}", super::html::url(&r.cycle_id)),
        "",
    );
    let read_link = |id: i64| ctx.link(&format!("/review/reads/{id}"), "");
    let tariff = &state.config.tariff;
    html! {
        (notice(Some(&n.done), Some(&n.error)))
        @if let Some(e) = err { p.err role="alert" { "Not done: " (e.message) } }
        nav.nav-read.noprint aria-label="The list" {
            a href=(list) { "← back to the list" }
            @if let Some(p) = d.place.prev { a #prev-read rel="prev" href=(read_link(p)) { "← previous" } }
            @if let Some(nx) = d.place.next { a #next-read rel="next" href=(read_link(nx)) { "next →" } }
            @if d.place.position > 0 { span.muted { (d.place.position) " of " (d.place.total) } }
        }
        @if let Some(by) = r.superseded_by {
            p.err { "This read was replaced by " a href=(read_link(by)) { "read " (by) } "." }
        }
        @for old in &d.replaces { p.muted { "Replaces " a href=(read_link(*old)) { "read " (old) } "." } }
        @if !d.pair.is_empty() {
            p.err #duplicate-of {
                "Another reading of meter " (r.meter_id) " this cycle: "
                @for (id, raw) in &d.pair { a href=(read_link(*id)) { "read " (id) " (" (raw) ")" } " " }
                "— accepting one of them sets the other aside in the same decision."
            }
        }
        div.desk {
            section aria-label="The read" {
                h2 { "The read" }
                table.cards {
                    tr { th { "Account" } td { (opt(&r.account_id)) " · " (opt(&r.customer_name)) } }
                    tr { th { "Service address" } td { (opt(&r.service_address)) " (route " (opt(&r.route_id)) ")" } }
                    tr { th { "Meter" } td { (r.meter_id) " (" (opt(&r.dials)) " dials, ×" (opt(&r.multiplier)) ", " (unit) ")" } }
                    tr { th { "Read at" } td { (r.read_at.format("%Y-%m-%d %H:%M")) " by " (r.reader) " (" (r.method) (r.device_id.as_ref().map(|d| format!(", handheld {d}")).unwrap_or_default()) ")" } }
                    tr { th { "Keyed reading" } td { strong { (if r.raw_reading.is_empty() { "— (none)" } else { &r.raw_reading }) } " · " (r.read_type.replace('_', " ")) } }
                    tr { th { "Previous reading" } td #previous-reading {
                        @match d.previous { Some((p, on)) => { (p) " on " (on) }, None => "none on record" }
                    } }
                    tr { th { "Use" } td { (opt(&r.consumption)) " " (unit) " · expected " (r.expected_use.map_or("—".into(), crate::vee::amount)) " " (unit) " (" (r.expected_basis.clone().unwrap_or_default().replace('_', " ")) ")" } }
                    tr { th { "Hi/lo limits" } td { (opt(&r.low_limit)) " – " (opt(&r.high_limit)) } }
                    tr { th { "Status" } td { strong #read-status { (r.status) } } }
                    tr { th { "Reader's note" } td { (r.note.as_deref().unwrap_or("—")) } }
                }
                h3 { "Flags" }
                @if r.flags.is_empty() { p { "No flags." } }
                ul { @for f in &r.flags { li { span.flag { (flag_label(f.kind)) } " (quality " (f.quality) "): " (f.explanation) } } }
                h3 { "Reader's codes" }
                @if d.code_text.is_empty() { p { "None." } }
                ul { @for (c, t) in &d.code_text {
                    li { strong { (c) } ": " (t)
                        @if let Some(f) = d.follow_ups.iter().find(|f| &f.0 == c) { " — follow-up " (f.1) " since " (f.2.format("%Y-%m-%d")) }
                    }
                } }
            }
            section #decide aria-label="Decide" {
                h2 { "Decide" }
                @if r.superseded_by.is_none() && r.cycle_open { (decision_forms(d, v, ctx, err)) }
                @else if !r.cycle_open { p { "The cycle is closed: its reads have gone to billing." } }
                @if d.reopenable && r.cycle_open {
                    form method="post" action=(ctx.link(&format!("/review/reads/{}/reopen", r.read_id), "")) {
                        fieldset { legend { "Undo: reopen the decision" } (v.csrf_field())
                            label { "Reason " input name="reason" size="30" maxlength="500" required value=(typed(err, "reopen", "reason", "")); (beside(err, "reopen", "reason")) }
                            " " button type="submit" { "Reopen" }
                        }
                    }
                }
            }
        }
        h2 { "History" }
        div.desk {
            div { (chart::svg(&d.chart)) (chart::legend(&d.chart)) }
            div {
                table.cards #last-reads {
                    caption { "Last " (d.past.len()) " reads" }
                    thead { tr { th { "Date" } th.num { "Reading" } th.num { "Use (hcf)" } th { "Type" } th { "Codes" } th { "Estimated" } } }
                    tbody { @for p in &d.past {
                        tr {
                            td { (p.on) } td.num { (p.reading) }
                            td.num { (p.used.map_or("—".into(), crate::vee::amount)) }
                            td { (p.kind) } td { (p.codes.join(" ")) }
                            td { (if p.kind == ReadKind::Estimated { "yes" } else { "no" }) }
                        }
                    } }
                }
            }
        }
        h2 { "Likely bill impact of accepting this read" }
        @match (r.consumption, r.unit, r.rate_class.as_deref()) {
            (Some(c), Some(u), Some(class)) => {
                @let used = to_hcf(Decimal::from(c), u);
                @let bill = tariff.bill(class, used);
                div.desk {
                    (bill_table("At this read's use", &bill))
                    @if let Some(e) = r.expected_use.and_then(Decimal::from_f64) {
                        (bill_table("At expected use", &tariff.bill(class, to_hcf(e.round_dp(2), u))))
                    }
                }
                @if let Some(e) = r.expected_use.and_then(Decimal::from_f64) {
                    @let exp = tariff.bill(class, to_hcf(e.round_dp(2), u));
                    p { strong { "Impact: " (money(bill.total)) " − " (money(exp.total)) " = " (money(bill.total - exp.total)) } }
                }
            }
            _ => p { "No use to bill: the reading is not usable as it is." },
        }
        @if r.account_id.is_some() { (leak_section(d, v, ctx, err)) }
        h2 { "Field orders for this account" }
        @if d.orders.is_empty() { p { "None." } }
        @else {
            table.cards {
                tr { th { "Order" } th { "Kind" } th { "Status" } th { "Instructions" } }
                @for o in &d.orders {
                    tr { td { (o.order_id) } td { (super::orders::kind_label(&o.kind)) } td { (o.status) } td { (o.instructions) } }
                }
            }
        }
        h2 { "Decisions" }
        @if d.actions.is_empty() { p { "None yet." } }
        @else {
            table.cards #decisions {
                tr { th { "When" } th { "Read" } th { "What happened" } th { "Reason" } }
                @for a in &d.actions {
                    tr { td { (a.at.format("%Y-%m-%d %H:%M")) } td { (a.read_id) } td { (sentence(a)) } td { (a.reason) } }
                }
            }
        }
    }
}

fn decision_forms(d: &DetailData, v: &Viewer, ctx: &ListCtx, err: Option<&FormError>) -> Markup {
    let r = &d.read;
    let id = r.read_id;
    let to = |action: &str| ctx.link(&format!("/review/reads/{id}/{action}"), "");
    let open = matches!(r.status, ReadStatus::Flagged | ReadStatus::Held);
    html! {
        @if !open { p { "The read is " (r.status) ": nothing left to decide on it." } }
        @if open && r.account_id.is_none() {
            p.err { "Meter " (r.meter_id) " is at no account (in inventory): assign the reading to the right meter, or void it." }
            form method="post" action=(to("assign")) { fieldset { legend { "Assign to a meter" } (v.csrf_field())
                label { "Meter " input name="meter_id" size="12" required value=(typed(err, "assign", "meter_id", d.likely_meter.as_ref().map_or("", |m| m.0.as_str()))); (beside(err, "assign", "meter_id")) }
                @if let Some((m, a)) = &d.likely_meter { span.muted { "likely meter " (m) " of account " (a) " (no read yet this cycle)" } }
                label { "Reason " input name="reason" size="30" maxlength="500" value=(typed(err, "assign", "reason", "")); }
                button type="submit" { "Assign" }
            } }
            form method="post" action=(to("void")) { fieldset { legend { "Void the read" } (v.csrf_field())
                label { "Reason " input name="reason" size="30" maxlength="500" required value=(typed(err, "void", "reason", "")); (beside(err, "void", "reason")) }
                button type="submit" { "Void" }
            } }
        }
        @if open {
            form method="post" action=(to("accept")) { fieldset { legend { "Accept the read as it is" } (v.csrf_field())
                label { "Reason " input #accept-reason name="reason" size="30" maxlength="500" value=(typed(err, "accept", "reason", "")); (beside(err, "accept", "reason")) }
                " " button #accept type="submit" accesskey="a" { "Accept and next" }
            } }
            @if let Some(meant) = r.intended_reading {
                form method="post" action=(to("correct")) { fieldset { legend { "Likely mis-key" } (v.csrf_field())
                    input type="hidden" name="reading" value=(meant);
                    input type="hidden" name="reason" value=(format!("likely mis-key of {meant}, as validation suggested"));
                    span { "The reader likely meant " strong { (meant) } " (see the flag)." }
                    " " button #correct-intended type="submit" { "Correct to " (meant) " and re-validate" }
                } }
            }
            form method="post" action=(to("correct")) { fieldset { legend { "Correct a mis-key" } (v.csrf_field())
                label { "Corrected reading " input #correct-reading name="reading" inputmode="numeric" pattern="[0-9]{1,12}" required size="10" value=(typed(err, "correct", "reading", "")); (beside(err, "correct", "reading")) }
                label { "Reason " input #correct-reason name="reason" size="30" maxlength="500" required value=(typed(err, "correct", "reason", "")); (beside(err, "correct", "reason")) }
                " " button #correct type="submit" { "Correct and re-validate" }
            } }
            @match &d.estimate {
                Some(e) => form method="post" action=(to("estimate")) { fieldset { legend { "Estimate" } (v.csrf_field())
                    p { "Estimate: reading " (e.reading) ", use " (e.consumption) " (" (e.basis) "), quality " (e.quality) "." }
                    label { "Reason " input name="reason" size="30" maxlength="500" value=(typed(err, "estimate", "reason", "")); }
                    " " button type="submit" { "Estimate and next" }
                } },
                None => p { "Estimate: not possible (no previous reading or no usable history); correct by hand." },
            }
            @if r.account_id.is_some() {
                form method="post" action=(to("reread")) { fieldset { legend { "Order a re-read" } (v.csrf_field())
                    label { "Instructions for the reader " input name="instructions" size="40" maxlength="80" value=(typed(err, "reread", "instructions", "")); (beside(err, "reread", "instructions")) }
                    " " button type="submit" #order-reread { "Order re-read and next" }
                } }
            }
            @if r.status == ReadStatus::Flagged {
                form method="post" action=(to("hold")) { fieldset { legend { "Hold for billing" } (v.csrf_field())
                    label { "Reason " input name="reason" size="30" maxlength="500" required value=(typed(err, "hold", "reason", "")); (beside(err, "hold", "reason")) }
                    " " button type="submit" { "Hold and next" }
                } }
            }
        }
    }
}

fn leak_section(d: &DetailData, v: &Viewer, ctx: &ListCtx, err: Option<&FormError>) -> Markup {
    let id = d.read.read_id;
    html! {
        h2 { "Leak adjustment" }
        @if let Some(g) = &d.granted {
            p.ok #leak-granted { "Leak credit of " (g.credit.parse::<Decimal>().map(money).unwrap_or_else(|_| g.credit.clone()))
                " granted by " (g.granted_by) " on " (g.granted_at.format("%Y-%m-%d")) " (proof of repair: " (g.repair_proof) "); it goes to billing with the cycle." }
        } @else if let Some(p) = &d.pending {
            p #leak-pending { "A leak credit of " (p.credit.parse::<Decimal>().map(money).unwrap_or_else(|_| p.credit.clone()))
                " asked for by " (p.requested_by) " on " (p.at.format("%Y-%m-%d")) " waits for an admin's approval (proof of repair: " (p.repair_proof) ")." }
            @if v.admin && v.name != p.requested_by {
                form method="post" action=(ctx.link(&format!("/review/reads/{id}/approve_leak"), "")) { (v.csrf_field())
                    button type="submit" name="decision" value="approve" { "Approve the credit" } " "
                    button type="submit" name="decision" value="decline" { "Decline" }
                }
            }
        } @else {
            @match &d.leak {
                Ok(c) => {
                    ol { @for s in &c.steps { li { (s) } } }
                    @if d.read.cycle_open {
                        form method="post" action=(ctx.link(&format!("/review/reads/{id}/leak"), "")) { fieldset { legend { "Grant the leak credit of " (money(c.credit)) } (v.csrf_field())
                            label { "Proof of repair " input name="repair_proof" size="40" maxlength="300" required value=(typed(err, "leak", "repair_proof", "")); (beside(err, "leak", "repair_proof")) }
                            " " button type="submit" { "Grant credit" }
                        } }
                    } @else { p.muted { "Accept the read first to grant a credit." } }
                }
                Err(why) => p { (why) },
            }
        }
    }
}

async fn show(
    state: &AppState,
    user: &ClerkUser,
    read_id: i64,
    ctx: ListCtx,
    n: Notices,
    err: Option<FormError>,
) -> Result<Response, AppError> {
    let config = state.config.clone();
    let cx = ctx.clone();
    let d = read(state, move |c| gather(c, &config, read_id, &cx)).await?;
    let v = viewer(user);
    let body = render(&d, &v, state, &ctx, &n, err.as_ref());
    let html = Html(
        page(
            &format!("Read {read_id} · meter {}", d.read.meter_id),
            &v,
            body,
        )
        .into_string(),
    );
    Ok(match err {
        Some(_) => (REFUSED, html).into_response(),
        None => html.into_response(),
    })
}

/// `GET /review/reads/{id}`.
pub async fn detail(
    State(state): State<AppState>,
    user: ClerkUser,
    Path(read_id): Path<i64>,
    Query(q): Query<DetailQuery>,
) -> Result<Response, AppError> {
    show(
        &state,
        &user,
        read_id,
        q.ctx,
        Notices {
            done: q.done,
            error: q.error,
        },
        None,
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    reading: String,
    #[serde(default)]
    instructions: String,
    #[serde(default)]
    repair_proof: String,
    #[serde(default)]
    meter_id: String,
    #[serde(default)]
    decision: String,
}

/// `POST /review/reads/{id}/{action}`: accept, correct, estimate, reread, hold, leak, approve_leak,
/// reopen, assign, void. After a decision the next read of the clerk's list opens (or the list, at its
/// end); a refusal shows the page again with the message beside the field and what was typed.
pub async fn post_action(
    State(state): State<AppState>,
    user: ClerkUser,
    Path((read_id, action)): Path<(i64, String)>,
    Query(ctx): Query<ListCtx>,
    Form(f): Form<ActionForm>,
) -> Result<Response, AppError> {
    check_csrf(&user, &f.csrf)?;
    let now = state.now_local();
    let config = state.config.clone();
    let actor = user.name.clone();
    let admin = user.role == crate::domain::UserRole::Admin;
    let here = ctx.link(&format!("/review/reads/{read_id}"), "");
    // Where "next" is, worked out before the decision moves the read out of the list.
    let (cx, cfg) = (ctx.clone(), config.clone());
    let (cycle, place) = read(&state, move |c| {
        let r = sql::review_read_by_id(c, read_id)?.ok_or(ReviewError::UnknownRead(read_id))?;
        let p = queue::place(c, &cfg.tariff, &r.cycle_id, &cx, read_id)?;
        Ok((r.cycle_id, p))
    })
    .await?;
    let next = match place.next {
        Some(n) => ctx.link(&format!("/review/reads/{n}"), ""),
        None => ctx.link(&format!("/review/cycles/{}", super::html::url(&cycle)), ""),
    };
    let values: Vec<(&str, &str)> = vec![
        ("reason", f.reason.as_str()),
        ("reading", f.reading.as_str()),
        ("instructions", f.instructions.as_str()),
        ("repair_proof", f.repair_proof.as_str()),
        ("meter_id", f.meter_id.as_str()),
    ];
    let typed_values: Vec<(String, String)> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (cx2, nx) = (ctx.clone(), next.clone());
    let outcome = match action.as_str() {
        "accept" => {
            act(&state, here.clone(), move |s| {
                actions::accept_checked(s, &config, read_id, &actor, &f.reason, now)
                    .map(|_| (Some(nx), format!("Read {read_id} accepted.")))
            })
            .await?
        }
        "hold" => {
            act(&state, here.clone(), move |s| {
                actions::hold(s, read_id, &actor, &f.reason, now)
                    .map(|_| (Some(nx), format!("Read {read_id} held out of billing.")))
            })
            .await?
        }
        "correct" => {
            act(&state, here.clone(), move |s| {
                let new =
                    actions::correct(s, &config, read_id, &f.reading, &f.reason, &actor, now)?;
                let st = sql::review_read_by_id(s.conn(), new)?
                    .map(|r| r.status)
                    .unwrap_or(ReadStatus::Flagged);
                // Still an exception: the new read needs a decision, so it opens; else the next one.
                let to = if st == ReadStatus::Flagged {
                    cx2.link(&format!("/review/reads/{new}"), "")
                } else {
                    nx
                };
                Ok((
                    Some(to),
                    format!("Read {read_id} corrected: new read {new} re-validated as {st}."),
                ))
            })
            .await?
        }
        "estimate" => {
            act(&state, here.clone(), move |s| {
                let new = actions::estimate(s, &config, read_id, &f.reason, &actor, now)?;
                Ok((Some(nx), format!("Read {read_id} estimated as read {new}.")))
            })
            .await?
        }
        "reread" => {
            act(&state, here.clone(), move |s| {
                let o = actions::order_reread(s, read_id, &f.instructions, &actor, now)?;
                Ok((
                    Some(nx),
                    format!(
                        "Re-read ordered for read {read_id} (order {o}); it goes down with the route at the next dock."
                    ),
                ))
            })
            .await?
        }
        "leak" => {
            act(&state, here.clone(), move |s| {
                let g = actions::grant_leak_credit(s, &config, read_id, &f.repair_proof, &actor, now)?;
                Ok((
                    None,
                    match g {
                        LeakGrant::Granted(c) => format!("Leak credit of {} granted for billing.", money(c.credit)),
                        LeakGrant::AwaitingApproval(c) => format!(
                            "Leak credit of {} asked for: above the policy's limit, it waits for an admin's approval.",
                            money(c.credit)
                        ),
                    },
                ))
            })
            .await?
        }
        "approve_leak" => {
            if !admin {
                return Err(AppError::Forbidden);
            }
            let approve = f.decision != "decline";
            act(&state, here.clone(), move |s| {
                let c = actions::approve_leak_credit(s, &config, read_id, approve, &actor, now)?;
                Ok((
                    None,
                    match c {
                        Some(c) => format!("Leak credit of {} approved and granted for billing.", money(c.credit)),
                        None => "Leak credit declined.".into(),
                    },
                ))
            })
            .await?
        }
        "reopen" => {
            let h = here.clone();
            act(&state, here.clone(), move |s| {
                let original = actions::reopen(s, read_id, &f.reason, &actor, now)?;
                let to = if original == read_id { h } else { cx2.link(&format!("/review/reads/{original}"), "") };
                Ok((Some(to), format!("Decision reopened: read {original} is to review again.")))
            })
            .await?
        }
        "assign" => {
            act(&state, here.clone(), move |s| {
                let new = actions::assign_meter(s, &config, read_id, &f.meter_id, &f.reason, &actor, now)?;
                Ok((Some(nx), format!("Read {read_id} assigned: new read {new}.")))
            })
            .await?
        }
        "void" => {
            act(&state, here.clone(), move |s| {
                actions::void(s, read_id, &f.reason, &actor, now)?;
                Ok((Some(nx), format!("Read {read_id} voided.")))
            })
            .await?
        }
        other => return Err(AppError::NotFound(format!("no action `{other}`"))),
    };
    match outcome {
        Ok(redirect) => Ok(redirect),
        Err(e) => {
            let vals: Vec<(&str, &str)> = typed_values
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let form = if action == "approve_leak" {
                "leak"
            } else {
                action.as_str()
            };
            let fe = form_error(form, &e, &vals);
            show(&state, &user, read_id, ctx, Notices::default(), Some(fe)).await
        }
    }
}
