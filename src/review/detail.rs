//! A read's detail page (account, meter, the reader's codes and note, every flag explained, the history
//! chart, the likely bill impact) and the actions posted from it.

use super::actions::{self, ReviewError};
use super::chart::{self, ChartBar, ChartInput};
use super::html::{notice, page, url, Esc, Viewer};
use super::tariff::{to_hcf, Bill};
use super::{act, db, viewer};
use crate::domain::{ReadKind, ReadStatus};
use crate::serve::auth::{check_csrf, now_local, ClerkUser};
use crate::serve::error::AppError;
use crate::serve::AppState;
use crate::store::review as sql;
use crate::store::{FieldOrder, ReviewAction, ReviewRead};
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use chrono::Months;
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::fmt::Write;

#[derive(Debug, Default, Deserialize)]
pub struct Notices {
    #[serde(default)]
    pub done: String,
    #[serde(default)]
    pub error: String,
}

/// Everything the page shows, gathered on the writer thread in one go.
struct DetailData {
    read: ReviewRead,
    chart: ChartInput<'static>,
    actions: Vec<ReviewAction>,
    orders: Vec<FieldOrder>,
    code_text: Vec<(String, String)>,
    follow_ups: Vec<(String, String, chrono::NaiveDateTime)>,
    estimate: Option<crate::vee::Estimate>,
    replaces: Vec<i64>,
    leak: Result<crate::review::leak::LeakComputation, String>,
}

fn gather(
    store: &mut crate::store::Store,
    config: &crate::config::Config,
    read_id: i64,
    now: chrono::NaiveDateTime,
) -> Result<DetailData, ReviewError> {
    actions::apply_completed_rereads(store, now)?;
    let read =
        sql::review_read_by_id(store.conn(), read_id)?.ok_or(ReviewError::UnknownRead(read_id))?;
    let replaces = sql::reads_superseded_by(store.conn(), read_id)?;
    let mut ids = replaces.clone();
    ids.push(read_id);
    let actions_list = sql::review_actions_of(store.conn(), &ids)?;
    let follow_ups = sql::follow_ups_of(store.conn(), &ids)?;
    let orders = match &read.account_id {
        Some(a) => sql::orders(store.conn(), None, Some(a), None, 20)?,
        None => Vec::new(),
    };
    let codes = store.codes(true)?;
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
    let mut chart_input = ChartInput {
        bars: Vec::new(),
        band: None,
        meter_changes: Vec::new(),
        unit: "hcf",
    };
    let mut estimate = None;
    if let Some(account) = &read.account_id {
        let (history, h) = actions::account_history(store, account)?;
        let day = read.read_at.date();
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
            estimate = actions::estimate_preview(store, config, &read)?;
        }
    }
    // A preview of the leak computation (proof of repair is asked for when it is granted).
    let mut preview_policy = config.clone();
    preview_policy.leak_policy.proof_of_repair_required = false;
    let leak = match read.status {
        ReadStatus::Accepted | ReadStatus::Resolved if read.superseded_by.is_none() => {
            actions::leak_preview(store, &preview_policy, read_id, "")
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
    Ok(DetailData {
        read,
        chart: chart_input,
        actions: actions_list,
        orders,
        code_text,
        follow_ups,
        estimate,
        replaces,
        leak,
    })
}

fn bill_table(title: &str, b: &Bill) -> String {
    let mut s = format!(
        "<table><caption>{}</caption><tr><th>Charge</th><th class=\"num\">HCF</th><th class=\"num\">Rate</th><th class=\"num\">Amount</th></tr>\
         <tr><td>Fixed charge</td><td></td><td></td><td class=\"num\">${}</td></tr>",
        Esc(title),
        b.fixed_charge
    );
    for l in &b.lines {
        let _ = write!(
            s,
            "<tr><td>Tier {} – {}</td><td class=\"num\">{}</td><td class=\"num\">${}</td><td class=\"num\">${}</td></tr>",
            l.from,
            l.to.map_or("up".to_string(), |t| t.to_string()),
            l.hcf,
            l.rate,
            l.amount
        );
    }
    let _ = write!(
        s,
        "<tr><th colspan=\"3\">Total for {} HCF</th><th class=\"num\">${}</th></tr></table>",
        b.hcf, b.total
    );
    s
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "—".to_string(), |v| v.to_string())
}

fn render(d: &DetailData, v: &Viewer, state: &AppState, n: &Notices) -> String {
    let r = &d.read;
    let unit = r.unit.map(|u| u.to_string()).unwrap_or_default();
    let mut b = notice(Some(&n.done), Some(&n.error));
    if let Some(by) = r.superseded_by {
        let _ = write!(
            b,
            "<p class=\"err\">This read was replaced by <a href=\"/review/reads/{by}\">read {by}</a>.</p>"
        );
    }
    for old in &d.replaces {
        let _ = write!(
            b,
            "<p class=\"muted\">Replaces <a href=\"/review/reads/{old}\">read {old}</a>.</p>"
        );
    }
    let _ = write!(
        b,
        "<p><a href=\"/review/cycles/{cu}\">← back to cycle {c}</a></p>\
         <h2>Account and meter</h2><table>\
         <tr><th>Account</th><td>{acct}</td><th>Customer</th><td>{name}</td></tr>\
         <tr><th>Service address</th><td>{addr}</td><th>Route</th><td>{route}</td></tr>\
         <tr><th>Rate class</th><td>{class}</td><th>Meter</th><td>{meter} ({dials} dials, ×{mult}, {unit})</td></tr></table>",
        cu = url(&r.cycle_id),
        c = Esc(&r.cycle_id),
        acct = Esc(&opt(&r.account_id)),
        name = Esc(&opt(&r.customer_name)),
        addr = Esc(&opt(&r.service_address)),
        route = Esc(&opt(&r.route_id)),
        class = Esc(&opt(&r.rate_class)),
        meter = Esc(&r.meter_id),
        dials = opt(&r.dials),
        mult = opt(&r.multiplier),
        unit = Esc(&unit),
    );
    let _ = write!(
        b,
        "<h2>The read</h2><table>\
         <tr><th>Read at</th><td>{at}</td><th>Status</th><td><strong>{status}</strong></td></tr>\
         <tr><th>Keyed reading</th><td>{raw}</td><th>Read type</th><td>{rtype}</td></tr>\
         <tr><th>Previous reading</th><td>{prev} on {prevon}</td><th>Use</th><td>{used} {unit}</td></tr>\
         <tr><th>Expected use</th><td>{exp} {unit} ({basis})</td><th>Hi/lo limits</th><td>{lo} – {hi}</td></tr>\
         <tr><th>Reader</th><td>{reader}</td><th>Method</th><td>{method}{device}</td></tr>\
         <tr><th>Reader's note</th><td colspan=\"3\">{note}</td></tr></table>",
        at = r.read_at.format("%Y-%m-%d %H:%M"),
        status = r.status,
        raw = Esc(&r.raw_reading),
        rtype = Esc(&r.read_type.replace('_', " ")),
        prev = opt(&r.previous_reading),
        prevon = opt(&r.previous_read_on),
        used = opt(&r.consumption),
        exp = r.expected_use.map_or("—".into(), crate::vee::amount),
        basis = Esc(&r.expected_basis.clone().unwrap_or_default().replace('_', " ")),
        lo = opt(&r.low_limit),
        hi = opt(&r.high_limit),
        reader = Esc(&r.reader),
        method = Esc(&r.method),
        device = r.device_id.as_ref().map(|d| format!(" (handheld {})", Esc(d))).unwrap_or_default(),
        note = Esc(r.note.as_deref().unwrap_or("—")),
        unit = Esc(&unit),
    );
    b.push_str("<h3>Reader's codes</h3>");
    if d.code_text.is_empty() {
        b.push_str("<p>None.</p>");
    } else {
        b.push_str("<ul>");
        for (c, t) in &d.code_text {
            let follow = d
                .follow_ups
                .iter()
                .find(|f| &f.0 == c)
                .map(|f| {
                    format!(
                        " — follow-up {} since {}",
                        Esc(&f.1),
                        f.2.format("%Y-%m-%d")
                    )
                })
                .unwrap_or_default();
            let _ = write!(
                b,
                "<li><strong>{}</strong>: {}{follow}</li>",
                Esc(c),
                Esc(t)
            );
        }
        b.push_str("</ul>");
    }
    b.push_str("<h3>Flags</h3>");
    if r.flags.is_empty() {
        b.push_str("<p>No flags.</p>");
    } else {
        b.push_str("<ul>");
        for f in &r.flags {
            let _ = write!(
                b,
                "<li><span class=\"flag\">{}</span> (quality {}): {}</li>",
                f.kind,
                Esc(&f.quality),
                Esc(&f.explanation)
            );
        }
        b.push_str("</ul>");
    }
    b.push_str("<h2>History</h2>");
    b.push_str(&chart::svg(&d.chart));
    b.push_str(&chart::legend(&d.chart));
    // Likely bill impact of accepting the read as it is.
    b.push_str("<h2>Likely bill impact of accepting this read</h2>");
    let tariff = &state.config.tariff;
    match (r.consumption, r.unit, r.rate_class.as_deref()) {
        (Some(c), Some(u), Some(class)) => {
            let used = to_hcf(Decimal::from(c), u);
            let bill = tariff.bill(class, used);
            b.push_str(&bill_table("At this read's use", &bill));
            if let Some(e) = r.expected_use.and_then(Decimal::from_f64) {
                let exp = tariff.bill(class, to_hcf(e.round_dp(2), u));
                b.push_str(&bill_table("At expected use", &exp));
                let _ = write!(
                    b,
                    "<p><strong>Impact: ${} − ${} = ${}</strong></p>",
                    bill.total,
                    exp.total,
                    bill.total - exp.total
                );
            }
        }
        _ => b.push_str("<p>No use to bill: the reading is not usable as it is.</p>"),
    }
    if r.superseded_by.is_none() && r.cycle_open {
        render_actions(&mut b, d, v);
    } else if !r.cycle_open {
        b.push_str("<p>The cycle is closed: its reads have gone to billing.</p>");
    }
    b.push_str("<h2>Field orders for this account</h2>");
    if d.orders.is_empty() {
        b.push_str("<p>None.</p>");
    } else {
        b.push_str("<table><tr><th>Order</th><th>Kind</th><th>Status</th><th>Instructions</th><th>Result</th></tr>");
        for o in &d.orders {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                o.order_id,
                Esc(super::orders::kind_label(&o.kind)),
                Esc(&o.status),
                Esc(&o.instructions),
                Esc(o.result.as_deref().unwrap_or(""))
            );
        }
        b.push_str("</table>");
    }
    b.push_str("<h2>Decisions</h2>");
    if d.actions.is_empty() {
        b.push_str("<p>None yet.</p>");
    } else {
        b.push_str("<table><tr><th>When</th><th>Who</th><th>Read</th><th>Action</th><th>Reason</th><th>Detail</th></tr>");
        for a in &d.actions {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                a.at.format("%Y-%m-%d %H:%M"),
                Esc(&a.actor),
                a.read_id,
                Esc(&a.action),
                Esc(&a.reason),
                Esc(&a.detail)
            );
        }
        b.push_str("</table>");
    }
    b
}

fn render_actions(b: &mut String, d: &DetailData, v: &Viewer) {
    let r = &d.read;
    let id = r.read_id;
    let csrf = v.csrf_field();
    b.push_str("<h2>Actions</h2>");
    if matches!(r.status, ReadStatus::Flagged | ReadStatus::Held) {
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/review/reads/{id}/accept\"><fieldset><legend>Accept the read as it is</legend>{csrf}\
             <label>Reason <input name=\"reason\" size=\"40\" maxlength=\"500\"></label> <button type=\"submit\">Accept</button></fieldset></form>\
             <form method=\"post\" action=\"/review/reads/{id}/correct\"><fieldset><legend>Correct a mis-key</legend>{csrf}\
             <label>Corrected reading <input name=\"reading\" inputmode=\"numeric\" pattern=\"[0-9]{{1,12}}\" required></label>\
             <label>Reason <input name=\"reason\" size=\"40\" maxlength=\"500\" required></label> <button type=\"submit\">Correct and re-validate</button></fieldset></form>"
        );
        match &d.estimate {
            Some(e) => {
                let _ = write!(
                    b,
                    "<form method=\"post\" action=\"/review/reads/{id}/estimate\"><fieldset><legend>Estimate</legend>{csrf}\
                     <p>Estimate: reading {}, use {} ({}), quality {}.</p>\
                     <label>Reason <input name=\"reason\" size=\"40\" maxlength=\"500\"></label> <button type=\"submit\">Estimate</button></fieldset></form>",
                    e.reading,
                    e.consumption,
                    Esc(&e.basis),
                    Esc(e.quality)
                );
            }
            None => b.push_str(
                "<p>Estimate: not possible (no previous reading or no usable history); correct by hand.</p>",
            ),
        }
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/review/reads/{id}/reread\"><fieldset><legend>Order a re-read</legend>{csrf}\
             <label>Instructions for the reader <input name=\"instructions\" size=\"60\" maxlength=\"80\"></label> \
             <button type=\"submit\" id=\"order-reread\">Order re-read</button></fieldset></form>"
        );
        if r.status == ReadStatus::Flagged {
            let _ = write!(
                b,
                "<form method=\"post\" action=\"/review/reads/{id}/hold\"><fieldset><legend>Hold for billing</legend>{csrf}\
                 <label>Reason <input name=\"reason\" size=\"40\" maxlength=\"500\" required></label> <button type=\"submit\">Hold</button></fieldset></form>"
            );
        }
    } else {
        let _ = write!(
            b,
            "<p>The read is {}: nothing left to decide on it.</p>",
            r.status
        );
    }
    b.push_str("<h2>Leak adjustment</h2>");
    match &d.leak {
        Ok(c) => {
            b.push_str("<ol>");
            for s in &c.steps {
                let _ = write!(b, "<li>{}</li>", Esc(s));
            }
            b.push_str("</ol>");
            let _ = write!(
                b,
                "<form method=\"post\" action=\"/review/reads/{id}/leak\"><fieldset><legend>Grant the leak credit of ${}</legend>{csrf}\
                 <label>Proof of repair <input name=\"repair_proof\" size=\"60\" maxlength=\"300\" required></label> \
                 <button type=\"submit\">Grant credit</button></fieldset></form>",
                c.credit
            );
        }
        Err(why) => {
            let _ = write!(b, "<p>{}</p>", Esc(why));
        }
    }
}

/// `GET /review/reads/{id}`.
pub async fn detail(
    State(state): State<AppState>,
    user: ClerkUser,
    Path(read_id): Path<i64>,
    Query(n): Query<Notices>,
) -> Result<Response, AppError> {
    let now = now_local();
    let config = state.config.clone();
    let d = db(&state, move |s| gather(s, &config, read_id, now)).await?;
    let v = viewer(&user);
    let body = render(&d, &v, &state, &n);
    Ok(Html(page(
        &format!("Read {read_id} · meter {}", d.read.meter_id),
        &v,
        &body,
    ))
    .into_response())
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
}

/// `POST /review/reads/{id}/{action}`: accept, correct, estimate, reread, hold, leak.
pub async fn post_action(
    State(state): State<AppState>,
    user: ClerkUser,
    Path((read_id, action)): Path<(i64, String)>,
    Form(f): Form<ActionForm>,
) -> Result<Response, AppError> {
    check_csrf(&user, &f.csrf)?;
    let now = now_local();
    let config = state.config.clone();
    let actor = user.name.clone();
    let back = format!("/review/reads/{read_id}");
    match action.as_str() {
        "accept" => {
            act(&state, back, move |s| {
                actions::accept(s, read_id, &actor, &f.reason, now)
                    .map(|_| (None, "Read accepted.".into()))
            })
            .await
        }
        "hold" => {
            act(&state, back, move |s| {
                actions::hold(s, read_id, &actor, &f.reason, now)
                    .map(|_| (None, "Read held out of billing.".into()))
            })
            .await
        }
        "correct" => {
            act(&state, back, move |s| {
                let new =
                    actions::correct(s, &config, read_id, &f.reading, &f.reason, &actor, now)?;
                let st = sql::review_read_by_id(s.conn(), new)?
                    .map(|r| r.status.to_string())
                    .unwrap_or_default();
                Ok((
                    Some(format!("/review/reads/{new}")),
                    format!("Corrected: new read {new} re-validated as {st}."),
                ))
            })
            .await
        }
        "estimate" => {
            act(&state, back, move |s| {
                let new = actions::estimate(s, &config, read_id, &f.reason, &actor, now)?;
                Ok((
                    Some(format!("/review/reads/{new}")),
                    format!("Estimated as read {new}."),
                ))
            })
            .await
        }
        "reread" => {
            act(&state, back, move |s| {
                let o = actions::order_reread(s, read_id, &f.instructions, &actor, now)?;
                Ok((
                    None,
                    format!(
                    "Re-read ordered (order {o}); it goes down with the route at the next dock."
                ),
                ))
            })
            .await
        }
        "leak" => {
            act(&state, back, move |s| {
                let c =
                    actions::grant_leak_credit(s, &config, read_id, &f.repair_proof, &actor, now)?;
                Ok((
                    None,
                    format!("Leak credit of ${} recorded for billing.", c.credit),
                ))
            })
            .await
        }
        other => Err(AppError::NotFound(format!("no action `{other}`"))),
    }
}
