//! The field orders page: create, list with status, cancel, complete (a meter change with its readings).

use super::html::{beside, notice, page, typed, FormError, Viewer};
use super::orders::{cancel_order, complete_order, create_order, kind_label, MeterChange, KINDS};
use super::{act, actions::ReviewError, form_error, read, viewer, REFUSED};
use crate::serve::auth::{check_csrf, ClerkUser};
use crate::serve::error::AppError;
use crate::serve::state::AppState;
use crate::store::review as sql;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

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

fn meter_change_form(id: i64, v: &Viewer, err: Option<&FormError>) -> Markup {
    let form = format!("order-{id}");
    let t = |name: &str| typed(err, &form, name, "").to_string();
    html! {
        form method="post" action={ "/review/orders/" (id) "/complete" } { (v.csrf_field()) fieldset { legend { "Meter change done" }
            label { "Old meter's final reading " input name="final_reading" inputmode="numeric" required size="8" value=(t("final_reading")); (beside(err, &form, "final_reading")) }
            label { "New meter number " input name="new_meter_id" required size="10" value=(t("new_meter_id")); (beside(err, &form, "new_meter_id")) }
            label { "New meter's initial reading " input name="initial_reading" inputmode="numeric" required size="8" value=(t("initial_reading")); (beside(err, &form, "initial_reading")) }
            label { "On " input type="date" name="on" required value=(t("on")); (beside(err, &form, "on")) }
            label { "Note " input name="note" size="20" value=(t("note")); }
            " " button type="submit" { "Complete" }
        } }
    }
}

async fn show(
    state: &AppState,
    user: &ClerkUser,
    q: ListQuery,
    err: Option<FormError>,
) -> Result<Response, AppError> {
    let status = match q.status.as_str() {
        "" | "active" => None,
        s => Some(s.to_string()),
    };
    let account = Some(q.account.trim().to_string()).filter(|a| !a.is_empty());
    let active_only = matches!(q.status.as_str(), "" | "active");
    let (st, ac) = (status.clone(), account.clone());
    let mut list = read(state, move |c| {
        Ok(sql::orders(c, st.as_deref(), ac.as_deref(), None, 500)?)
    })
    .await?;
    if active_only {
        list.retain(|o| matches!(o.status.as_str(), "open" | "sent"));
    }
    let v = viewer(user);
    let err = err.as_ref();
    let body = html! {
        (notice(Some(&q.done), Some(&q.error)))
        @if let Some(e) = err { p.err role="alert" { "Not done: " (e.message) } }
        h2 { "New order" }
        form method="post" action="/review/orders" { (v.csrf_field())
            label { "Kind " select name="kind" { @for (k, l) in KINDS { option value=(k) selected[*k == typed(err, "new", "kind", "")] { (l) } } } }
            label { "Account " input name="account_id" required size="12" value=(typed(err, "new", "account_id", "")); (beside(err, "new", "account_id")) }
            label { "Meter (blank: the account's) " input name="meter_id" size="12" value=(typed(err, "new", "meter_id", "")); }
            label { "Instructions " input name="instructions" size="40" maxlength="80" value=(typed(err, "new", "instructions", "")); }
            " " button type="submit" { "Create order" }
        }
        p.muted { "Open orders go down with the account's route at the next dock." }
        h2 { "Orders" }
        form method="get" action="/review/orders" {
            label { "Status " select name="status" {
                @for (val, label) in [("active", "open or sent"), ("open", "open"), ("sent", "sent"), ("completed", "completed"), ("cancelled", "cancelled")] {
                    option value=(val) selected[val == q.status || (q.status.is_empty() && val == "active")] { (label) }
                }
            } }
            label { "Account " input name="account" value=(q.account) size="12"; }
            " " button type="submit" { "Show" }
        }
        table.cards #orders {
            tr { th { "Order" } th { "Kind" } th { "Account" } th { "Meter" } th { "Status" } th { "Instructions" } th { "Created" } th { "Result" } th { "Actions" } }
            @for o in &list {
                tr {
                    td { (o.order_id) }
                    td { (kind_label(&o.kind)) }
                    td { (o.account_id) br; span.muted { (o.service_address.as_deref().unwrap_or("")) " · route " (o.route_id.as_deref().unwrap_or("")) } }
                    td { (o.meter_id.as_deref().unwrap_or("")) }
                    td { (o.status) }
                    td { (o.instructions) }
                    td { (o.created_by) " " (o.created_at.format("%Y-%m-%d %H:%M")) }
                    td { (result_text(o.result.as_deref())) }
                    td {
                        @if let Some(r) = o.read_id { a href={ "/review/reads/" (r) } { "read " (r) } " " }
                        @if matches!(o.kind.as_str(), "door_hanger" | "shut_off") {
                            a href={ "/review/paperwork/notices?accounts=" (super::html::url(&o.account_id)) "&kind=" (if o.kind == "door_hanger" { "door_hanger" } else { "notice" }) } { "print" } " "
                        }
                        @if matches!(o.status.as_str(), "open" | "sent") {
                            @if o.kind == "meter_change" { (meter_change_form(o.order_id, &v, err)) }
                            @else {
                                form method="post" action={ "/review/orders/" (o.order_id) "/complete" } { (v.csrf_field())
                                    label { "Note " input name="note" size="16"; } " " button type="submit" { "Mark done" }
                                }
                            }
                            form method="post" action={ "/review/orders/" (o.order_id) "/cancel" } { (v.csrf_field())
                                label { "Reason " input name="note" size="16"; } " " button type="submit" { "Cancel order" }
                            }
                        }
                    }
                }
            }
        }
    };
    let html = Html(page("Field orders", &v, body).into_string());
    Ok(match err {
        Some(_) => (REFUSED, html).into_response(),
        None => html.into_response(),
    })
}

/// A completed order's result in words (it is stored as JSON).
fn result_text(result: Option<&str>) -> String {
    let Some(text) = result else {
        return String::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return text.to_string();
    };
    let mut parts = Vec::new();
    if let Some(by) = v["completed_by"].as_str() {
        parts.push(format!("done by {by}"));
    }
    if let (Some(old), Some(new)) = (v["old_meter_id"].as_str(), v["new_meter_id"].as_str()) {
        parts.push(format!(
            "meter {old} (final {}) replaced by {new} (initial {}) on {}",
            v["final_reading"],
            v["initial_reading"],
            v["on"].as_str().unwrap_or("")
        ));
    } else if let Some(r) = v["reading"].as_u64() {
        parts.push(format!("reading {r}"));
    }
    if let Some(n) = v["note"].as_str().filter(|n| !n.is_empty()) {
        parts.push(format!("“{n}”"));
    }
    parts.join("; ")
}

/// `GET /review/orders`.
pub async fn list(
    State(state): State<AppState>,
    user: ClerkUser,
    Query(q): Query<ListQuery>,
) -> Result<Response, AppError> {
    show(&state, &user, q, None).await
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
    let (now, actor) = (state.now_local(), user.name.clone());
    let typed_in = [
        ("kind", f.kind.clone()),
        ("account_id", f.account_id.clone()),
        ("meter_id", f.meter_id.clone()),
        ("instructions", f.instructions.clone()),
    ];
    let out = act(&state, "/review/orders".into(), move |s| {
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
    .await?;
    refused_again(&state, &user, out, "new", &typed_in).await
}

async fn refused_again(
    state: &AppState,
    user: &ClerkUser,
    out: Result<Response, ReviewError>,
    form: &str,
    typed_in: &[(&str, String)],
) -> Result<Response, AppError> {
    match out {
        Ok(r) => Ok(r),
        Err(e) => {
            let vals: Vec<(&str, &str)> = typed_in.iter().map(|(k, v)| (*k, v.as_str())).collect();
            show(
                state,
                user,
                ListQuery::default(),
                Some(form_error(form, &e, &vals)),
            )
            .await
        }
    }
}

fn reading(text: &str, what: &str, field: &'static str) -> Result<u64, ReviewError> {
    let t = text.trim();
    if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ReviewError::Field {
            field,
            message: format!("{what} must be 1–12 digits, got `{t}`"),
        });
    }
    t.parse().map_err(|_| ReviewError::Field {
        field,
        message: format!("{what} `{t}` is not a reading"),
    })
}

/// `POST /review/orders/{id}/{complete|cancel}`.
pub async fn post_action(
    State(state): State<AppState>,
    user: ClerkUser,
    Path((order_id, action)): Path<(i64, String)>,
    Form(f): Form<OrderForm>,
) -> Result<Response, AppError> {
    check_csrf(&user, &f.csrf)?;
    let (now, actor) = (state.now_local(), user.name.clone());
    let config = state.config.review.clone();
    let typed_in = [
        ("final_reading", f.final_reading.clone()),
        ("new_meter_id", f.new_meter_id.clone()),
        ("initial_reading", f.initial_reading.clone()),
        ("on", f.on.clone()),
        ("note", f.note.clone()),
    ];
    let form = format!("order-{order_id}");
    let out = match action.as_str() {
        "cancel" => {
            act(&state, "/review/orders".into(), move |s| {
                cancel_order(s, order_id, &f.note, &actor, now)?;
                Ok((None, format!("Order {order_id} cancelled.")))
            })
            .await?
        }
        "complete" => {
            act(&state, "/review/orders".into(), move |s| {
                let change = if f.new_meter_id.trim().is_empty() {
                    None
                } else {
                    let on = chrono::NaiveDate::parse_from_str(f.on.trim(), "%Y-%m-%d").map_err(
                        |_| ReviewError::Field {
                            field: "on",
                            message: format!("the date must be YYYY-MM-DD, got `{}`", f.on.trim()),
                        },
                    )?;
                    Some(MeterChange {
                        final_reading: reading(
                            &f.final_reading,
                            "the final reading",
                            "final_reading",
                        )?,
                        new_meter_id: f.new_meter_id.trim().to_string(),
                        initial_reading: reading(
                            &f.initial_reading,
                            "the initial reading",
                            "initial_reading",
                        )?,
                        on,
                    })
                };
                complete_order(s, &config, order_id, &f.note, change.as_ref(), &actor, now)?;
                Ok((None, format!("Order {order_id} completed.")))
            })
            .await?
        }
        other => return Err(AppError::NotFound(format!("no action `{other}`"))),
    };
    refused_again(&state, &user, out, &form, &typed_in).await
}
