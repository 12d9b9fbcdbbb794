//! The field orders page: create, list with status, cancel, complete (a meter change with its readings).

use super::html::{notice, page, Esc};
use super::orders::{cancel_order, complete_order, create_order, kind_label, MeterChange, KINDS};
use super::{act, actions::ReviewError, db, viewer};
use crate::serve::auth::{check_csrf, now_local, ClerkUser};
use crate::serve::error::AppError;
use crate::serve::AppState;
use crate::store::review as sql;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use std::fmt::Write;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    done: String,
    #[serde(default)]
    error: String,
}

/// `GET /review/orders`.
pub async fn list(
    State(state): State<AppState>,
    user: ClerkUser,
    Query(q): Query<ListQuery>,
) -> Result<Response, AppError> {
    let status = match q.status.as_str() {
        "" | "active" => None,
        s => Some(s.to_string()),
    };
    let account = Some(q.account.trim().to_string()).filter(|a| !a.is_empty());
    let active_only = matches!(q.status.as_str(), "" | "active");
    let (st, ac) = (status.clone(), account.clone());
    let mut list = db(&state, move |s| {
        Ok(sql::orders(
            s.conn(),
            st.as_deref(),
            ac.as_deref(),
            None,
            500,
        )?)
    })
    .await?;
    if active_only {
        list.retain(|o| matches!(o.status.as_str(), "open" | "sent"));
    }
    let v = viewer(&user);
    let csrf = v.csrf_field();
    let mut b = notice(Some(&q.done), Some(&q.error));
    b.push_str("<h2>New order</h2><form method=\"post\" action=\"/review/orders\">");
    b.push_str(&csrf);
    b.push_str("<label>Kind <select name=\"kind\">");
    for (k, l) in KINDS {
        let _ = write!(b, "<option value=\"{k}\">{}</option>", Esc(l));
    }
    b.push_str(
        "</select></label><label>Account <input name=\"account_id\" required size=\"12\"></label>\
         <label>Meter (blank: the account's) <input name=\"meter_id\" size=\"12\"></label>\
         <label>Instructions <input name=\"instructions\" size=\"50\" maxlength=\"80\"></label> \
         <button type=\"submit\">Create order</button></form>\
         <p class=\"muted\">Open orders go down with the account's route at the next dock.</p>",
    );
    b.push_str("<h2>Orders</h2><form method=\"get\" action=\"/review/orders\"><label>Status <select name=\"status\">");
    for (val, label) in [
        ("active", "open or sent"),
        ("open", "open"),
        ("sent", "sent"),
        ("completed", "completed"),
        ("cancelled", "cancelled"),
    ] {
        let sel = if val == q.status || (q.status.is_empty() && val == "active") {
            " selected"
        } else {
            ""
        };
        let _ = write!(b, "<option value=\"{val}\"{sel}>{label}</option>");
    }
    let _ = write!(
        b,
        "</select></label><label>Account <input name=\"account\" value=\"{}\" size=\"12\"></label> <button type=\"submit\">Show</button></form>",
        Esc(&q.account)
    );
    b.push_str("<table id=\"orders\"><tr><th>Order</th><th>Kind</th><th>Account</th><th>Route</th><th>Meter</th><th>Cycle</th><th>Status</th><th>Instructions</th><th>Created</th><th>Result</th><th>Actions</th></tr>");
    for o in &list {
        let _ = write!(
            b,
            "<tr><td>{id}</td><td>{kind}</td><td>{acct}<br><span class=\"muted\">{addr}</span></td><td>{route}</td><td>{meter}</td>\
             <td>{cycle}</td><td>{status}</td><td>{instr}</td><td>{by} {at}</td><td>{result}</td><td>",
            id = o.order_id,
            kind = Esc(kind_label(&o.kind)),
            acct = Esc(&o.account_id),
            addr = Esc(o.service_address.as_deref().unwrap_or("")),
            route = Esc(o.route_id.as_deref().unwrap_or("")),
            meter = Esc(o.meter_id.as_deref().unwrap_or("")),
            cycle = Esc(o.cycle_id.as_deref().unwrap_or("")),
            status = Esc(&o.status),
            instr = Esc(&o.instructions),
            by = Esc(&o.created_by),
            at = o.created_at.format("%Y-%m-%d %H:%M"),
            result = Esc(o.result.as_deref().unwrap_or("")),
        );
        if let Some(r) = o.read_id {
            let _ = write!(b, "<a href=\"/review/reads/{r}\">read {r}</a> ");
        }
        if matches!(o.status.as_str(), "open" | "sent") {
            let id = o.order_id;
            if o.kind == "meter_change" {
                let _ = write!(
                    b,
                    "<form method=\"post\" action=\"/review/orders/{id}/complete\">{csrf}<fieldset><legend>Meter change done</legend>\
                     <label>Old meter's final reading <input name=\"final_reading\" inputmode=\"numeric\" required size=\"8\"></label>\
                     <label>New meter number <input name=\"new_meter_id\" required size=\"10\"></label>\
                     <label>New meter's initial reading <input name=\"initial_reading\" inputmode=\"numeric\" required size=\"8\"></label>\
                     <label>On <input type=\"date\" name=\"on\" required></label>\
                     <label>Note <input name=\"note\" size=\"20\"></label> <button type=\"submit\">Complete</button></fieldset></form>"
                );
            } else {
                let _ = write!(
                    b,
                    "<form method=\"post\" action=\"/review/orders/{id}/complete\">{csrf}<label>Note <input name=\"note\" size=\"20\"></label> \
                     <button type=\"submit\">Mark done</button></form>"
                );
            }
            let _ = write!(
                b,
                "<form method=\"post\" action=\"/review/orders/{id}/cancel\">{csrf}<label>Reason <input name=\"note\" size=\"20\"></label> \
                 <button type=\"submit\">Cancel order</button></form>"
            );
        }
        b.push_str("</td></tr>");
    }
    b.push_str("</table>");
    Ok(Html(page("Field orders", &v, &b)).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct OrderForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    account_id: String,
    #[serde(default)]
    meter_id: String,
    #[serde(default)]
    instructions: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    final_reading: String,
    #[serde(default)]
    new_meter_id: String,
    #[serde(default)]
    initial_reading: String,
    #[serde(default)]
    on: String,
}

/// `POST /review/orders`: create.
pub async fn create(
    State(state): State<AppState>,
    user: ClerkUser,
    Form(f): Form<OrderForm>,
) -> Result<Response, AppError> {
    check_csrf(&user, &f.csrf)?;
    let (now, actor) = (now_local(), user.name.clone());
    act(&state, "/review/orders".into(), move |s| {
        let meter = Some(f.meter_id.as_str()).filter(|m| !m.trim().is_empty());
        let id = create_order(
            s,
            &f.kind,
            &f.account_id,
            meter,
            &f.instructions,
            &actor,
            now,
        )?;
        Ok((
            None,
            format!("Order {id} created: {}.", kind_label(&f.kind)),
        ))
    })
    .await
}

fn reading(text: &str, what: &str) -> Result<u64, ReviewError> {
    let t = text.trim();
    if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ReviewError::Invalid(format!(
            "{what} must be 1–12 digits, got `{t}`"
        )));
    }
    t.parse()
        .map_err(|_| ReviewError::Invalid(format!("{what} `{t}` is not a reading")))
}

/// `POST /review/orders/{id}/{complete|cancel}`.
pub async fn post_action(
    State(state): State<AppState>,
    user: ClerkUser,
    Path((order_id, action)): Path<(i64, String)>,
    Form(f): Form<OrderForm>,
) -> Result<Response, AppError> {
    check_csrf(&user, &f.csrf)?;
    let (now, actor) = (now_local(), user.name.clone());
    match action.as_str() {
        "cancel" => {
            act(&state, "/review/orders".into(), move |s| {
                cancel_order(s, order_id, &f.note, &actor, now)?;
                Ok((None, format!("Order {order_id} cancelled.")))
            })
            .await
        }
        "complete" => {
            act(&state, "/review/orders".into(), move |s| {
                let change = if f.new_meter_id.trim().is_empty() {
                    None
                } else {
                    let on = chrono::NaiveDate::parse_from_str(f.on.trim(), "%Y-%m-%d").map_err(
                        |_| {
                            ReviewError::Invalid(format!(
                                "the date must be YYYY-MM-DD, got `{}`",
                                f.on.trim()
                            ))
                        },
                    )?;
                    Some(MeterChange {
                        final_reading: reading(&f.final_reading, "the final reading")?,
                        new_meter_id: f.new_meter_id.trim().to_string(),
                        initial_reading: reading(&f.initial_reading, "the initial reading")?,
                        on,
                    })
                };
                complete_order(s, order_id, &f.note, change.as_ref(), &actor, now)?;
                Ok((None, format!("Order {order_id} completed.")))
            })
            .await
        }
        other => Err(AppError::NotFound(format!("no action `{other}`"))),
    }
}
