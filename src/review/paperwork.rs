//! Field paperwork printed from the desk: door hangers and 48-hour notices (account, service address,
//! amount due, due or shut-off date, the District's wording from `[paperwork]`), the shut-off list of a
//! route in walk order, and in/out tags for starting or stopping service, whose turn-on or turn-off
//! reading, once back from the field, enters the account's history. Each prints on Letter paper (the
//! page's print stylesheet: one sheet per notice, no navigation).

use super::html::{beside, money, notice, page, typed, FormError, Viewer};
use super::orders::KINDS;
use super::{act, form_error, read, viewer, REFUSED};
use crate::serve::auth::{check_csrf, ClerkUser};
use crate::serve::error::AppError;
use crate::serve::state::AppState;
use crate::store::review::{self as sql, AuditEntry, NoticeAccount};
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use chrono::NaiveDate;
use maud::{html, Markup};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;
use std::str::FromStr;

/// Most accounts one print run takes (a day's door hangers for a route fit easily).
const MAX_ACCOUNTS: usize = 200;

#[derive(Debug, Default, Clone, Deserialize)]
pub struct NoticeQuery {
    /// `door_hanger` or `notice` (48-hour notice).
    #[serde(default)]
    pub kind: String,
    /// Account ids, separated by commas or spaces.
    #[serde(default)]
    pub accounts: String,
    #[serde(default)]
    pub amount: String,
    /// Pay by (door hanger) or shut off on (notice); blank: today + `shut_off_after_days`.
    #[serde(default)]
    pub date: String,
    #[serde(default)]
    pub done: String,
}

fn kind_title(kind: &str) -> &'static str {
    if kind == "notice" {
        "48-hour shut-off notice"
    } else {
        "Door hanger"
    }
}

/// The paperwork page: what can be printed, with the forms that print it.
fn home_page(q: &NoticeQuery, routes: &[String], v: &Viewer, err: Option<&FormError>) -> Markup {
    html! {
        (notice(Some(&q.done), None))
        @if let Some(e) = err { p.err role="alert" { "Not done: " (e.message) } }
        h2 { "Door hangers and 48-hour notices" }
        form method="get" action="/review/paperwork/notices" {
            label { "Kind " select name="kind" {
                option value="door_hanger" selected[typed(err, "notice", "kind", &q.kind) != "notice"] { "Door hanger" }
                option value="notice" selected[typed(err, "notice", "kind", &q.kind) == "notice"] { "48-hour shut-off notice" }
            } }
            label { "Accounts " input #notice-accounts name="accounts" size="24" required placeholder="A-00012, A-00044" value=(typed(err, "notice", "accounts", &q.accounts)); (beside(err, "notice", "accounts")) }
            label { "Amount due ($) " input #notice-amount name="amount" size="9" inputmode="decimal" required value=(typed(err, "notice", "amount", &q.amount)); (beside(err, "notice", "amount")) }
            label { "Pay by / shut off on " input type="date" name="date" value=(typed(err, "notice", "date", &q.date)); (beside(err, "notice", "date")) }
            " " button #print-notices type="submit" { "Print" }
        }
        p.muted { "Blank date: today plus the District's notice period. The amount is what billing says is past due." }
        h2 { "Shut-off list" }
        form method="get" action="/review/paperwork/shut-offs" {
            label { "Route " select name="route" { option value="" { "all routes" } @for r in routes { option { (r) } } } }
            " " button type="submit" { "Print" }
        }
        p.muted { "Accounts with an open shut-off order, in walk order." }
        h2 { "In / out tags (start or stop service)" }
        form method="get" action="/review/paperwork/tags" {
            label { "Tag " select name="kind" { option value="in" { "In: start service (turn on)" } option value="out" { "Out: stop service (turn off)" } } }
            label { "Account " input name="account" size="12" required; }
            " " button type="submit" { "Print tag" }
        }
        h3 { "A tag back from the field" }
        form method="post" action="/review/paperwork/tags" {
            (v.csrf_field())
            label { "Tag " select name="kind" {
                option value="in" selected[typed(err, "tag", "kind", "") == "in"] { "In (turned on)" }
                option value="out" selected[typed(err, "tag", "kind", "") == "out"] { "Out (turned off)" }
            } }
            label { "Account " input name="account" size="12" required value=(typed(err, "tag", "account", "")); (beside(err, "tag", "account")) }
            label { "Reading " input name="reading" inputmode="numeric" size="10" required value=(typed(err, "tag", "reading", "")); (beside(err, "tag", "reading")) }
            label { "On " input type="date" name="on" required value=(typed(err, "tag", "on", "")); (beside(err, "tag", "on")) }
            " " button type="submit" { "Record" }
        }
    }
}

/// `GET /review/paperwork`.
pub async fn home(
    State(state): State<AppState>,
    user: ClerkUser,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, AppError> {
    show_home(&state, &user, &q, None).await
}

async fn show_home(
    state: &AppState,
    user: &ClerkUser,
    q: &NoticeQuery,
    err: Option<FormError>,
) -> Result<Response, AppError> {
    let routes = read(state, |c| {
        Ok(crate::store::routes_in(c)?
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>())
    })
    .await?;
    let v = viewer(user);
    let body = home_page(q, &routes, &v, err.as_ref());
    let html = Html(page("Paperwork", &v, body).into_string());
    Ok(match err {
        Some(_) => (REFUSED, html).into_response(),
        None => html.into_response(),
    })
}

fn field(field: &'static str, message: String) -> super::actions::ReviewError {
    super::actions::ReviewError::Field { field, message }
}

/// The amount due as typed: dollars and cents, more than nothing and at most $100,000.
pub fn amount_due(text: &str) -> Result<Decimal, super::actions::ReviewError> {
    let t = text.trim().trim_start_matches('$').replace(',', "");
    let d = Decimal::from_str(&t)
        .ok()
        .filter(|d| d.scale() <= 2)
        .ok_or_else(|| {
            field(
                "amount",
                format!("`{}` is not an amount in dollars and cents", text.trim()),
            )
        })?;
    if d <= Decimal::ZERO || d > Decimal::from(100_000) {
        return Err(field(
            "amount",
            format!(
                "an amount due is more than $0 and at most $100,000, got {}",
                money(d)
            ),
        ));
    }
    Ok(d)
}

fn account_ids(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `GET /review/paperwork/notices?kind=door_hanger|notice&accounts=A1,A2&amount=12.50&date=`: one
/// printable sheet per account.
pub async fn notices(
    State(state): State<AppState>,
    user: ClerkUser,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, AppError> {
    let today = state.now_local().date();
    let p = state.config.paperwork.clone();
    let ids = account_ids(&q.accounts);
    let checked = (|| {
        if ids.is_empty() {
            return Err(field("accounts", "name at least one account".into()));
        }
        if ids.len() > MAX_ACCOUNTS {
            return Err(field(
                "accounts",
                format!("at most {MAX_ACCOUNTS} accounts at a time"),
            ));
        }
        let amount = amount_due(&q.amount)?;
        let date = if q.date.trim().is_empty() {
            today + chrono::Days::new(u64::from(p.shut_off_after_days))
        } else {
            let d = NaiveDate::parse_from_str(q.date.trim(), "%Y-%m-%d").map_err(|_| {
                field(
                    "date",
                    format!("the date must be YYYY-MM-DD, got `{}`", q.date.trim()),
                )
            })?;
            if d < today {
                return Err(field(
                    "date",
                    format!("{d} has passed: pick today or a later day"),
                ));
            }
            d
        };
        Ok((amount, date))
    })();
    let (amount, date) = match checked {
        Ok(v) => v,
        Err(e) => {
            let vals = [
                ("kind", q.kind.as_str()),
                ("accounts", q.accounts.as_str()),
                ("amount", q.amount.as_str()),
                ("date", q.date.as_str()),
            ];
            return show_home(&state, &user, &q, Some(form_error("notice", &e, &vals))).await;
        }
    };
    let wanted = ids.clone();
    let found = read(&state, move |c| {
        Ok(sql::notice_accounts(c, &wanted, None, None)?)
    })
    .await?;
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| !found.iter().any(|a| &a.account_id == *id))
        .collect();
    if !missing.is_empty() {
        let e = field(
            "accounts",
            format!(
                "no account {}",
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        let vals = [
            ("kind", q.kind.as_str()),
            ("accounts", q.accounts.as_str()),
            ("amount", q.amount.as_str()),
            ("date", q.date.as_str()),
        ];
        return show_home(&state, &user, &q, Some(form_error("notice", &e, &vals))).await;
    }
    let kind = if q.kind == "notice" {
        "notice"
    } else {
        "door_hanger"
    };
    let v = viewer(&user);
    let body = html! {
        p.noprint { "Print this page (Ctrl+P): one sheet per account. " a href="/review/paperwork" { "← paperwork" } }
        @for a in &found {
            section.sheet.notice {
                h2 { (p.district) }
                h3 { (kind_title(kind)) }
                table {
                    tr { th { "Account" } td { (a.account_id) } }
                    tr { th { "Customer" } td { (a.name) } }
                    tr { th { "Service address" } td { (a.service_address) } }
                    tr { th { "Meter" } td { (a.meter_id.as_deref().unwrap_or("—")) } }
                    tr { th { "Amount due" } td.amount { strong { (money(amount)) } } }
                    tr { th { (if kind == "notice" { "Service will be shut off on" } else { "Please pay by" }) } td { strong { (date.format("%A, %B %-d, %Y")) } } }
                }
                p { (if kind == "notice" { &p.notice_text } else { &p.door_hanger_text }) }
                p.muted { (p.office) }
                p.muted { "Hung on ______________ by ______________ (route " (a.route_id) ", stop " (a.sequence) ")" }
            }
        }
    };
    Ok(Html(page(kind_title(kind), &v, body).into_string()).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct RouteQuery {
    #[serde(default)]
    route: String,
}

/// `GET /review/paperwork/shut-offs?route=R01`: accounts with an open shut-off order, by route in walk
/// order.
pub async fn shut_offs(
    State(state): State<AppState>,
    user: ClerkUser,
    Query(q): Query<RouteQuery>,
) -> Result<Response, AppError> {
    let route = Some(q.route.trim().to_string()).filter(|r| !r.is_empty());
    let list = read(&state, move |c| {
        Ok(sql::notice_accounts(
            c,
            &[],
            Some("shut_off"),
            route.as_deref(),
        )?)
    })
    .await?;
    let mut by_route: std::collections::BTreeMap<&str, Vec<&NoticeAccount>> = Default::default();
    for a in &list {
        by_route.entry(a.route_id.as_str()).or_default().push(a);
    }
    let v = viewer(&user);
    let label = KINDS
        .iter()
        .find(|(k, _)| *k == "shut_off")
        .map_or("Shut off", |(_, l)| l);
    let body = html! {
        p.noprint { "Print this page (Ctrl+P): one sheet per route. " a href="/review/paperwork" { "← paperwork" } }
        @if by_route.is_empty() { p { "No open shut-off orders." } }
        @for (route, accounts) in &by_route {
            section.sheet {
                h2 { (state.config.paperwork.district) " — " (label) ", route " (route) }
                table #shut-off-list {
                    thead { tr { th { "Stop" } th { "Account" } th { "Customer" } th { "Service address" } th { "Meter" } th { "Reading" } th { "Time" } th { "Done" } } }
                    tbody { @for a in accounts {
                        tr { td { (a.sequence) } td { (a.account_id) } td { (a.name) } td { (a.service_address) } td { (a.meter_id.as_deref().unwrap_or("—")) } td { "________" } td { "______" } td { "☐" } }
                    } }
                }
            }
        }
    };
    Ok(Html(page("Shut-off list", &v, body).into_string()).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct TagQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    account: String,
}

/// `GET /review/paperwork/tags?kind=in|out&account=A1`: a tag for the crew to fill in (reading, date).
pub async fn tags(
    State(state): State<AppState>,
    user: ClerkUser,
    Query(q): Query<TagQuery>,
) -> Result<Response, AppError> {
    let ids = vec![q.account.trim().to_string()];
    let found = read(&state, move |c| {
        Ok(sql::notice_accounts(c, &ids, None, None)?)
    })
    .await?;
    let Some(a) = found.first() else {
        return Err(AppError::NotFound(format!(
            "no account `{}`",
            q.account.trim()
        )));
    };
    let start = q.kind != "out";
    let v = viewer(&user);
    let title = if start {
        "In tag: start service"
    } else {
        "Out tag: stop service"
    };
    let body = html! {
        p.noprint { "Print this page (Ctrl+P). When the tag comes back, record its reading on " a href="/review/paperwork" { "the paperwork page" } "." }
        section.sheet.tag {
            h2 { (state.config.paperwork.district) } h3 { (title) }
            table {
                tr { th { "Account" } td { (a.account_id) } }
                tr { th { "Customer" } td { (a.name) } }
                tr { th { "Service address" } td { (a.service_address) } }
                tr { th { "Meter" } td { (a.meter_id.as_deref().unwrap_or("—")) } }
                tr { th { "Route / stop" } td { (a.route_id) " / " (a.sequence) } }
                tr { th { (if start { "Turn-on reading" } else { "Turn-off reading" }) } td { "____________" } }
                tr { th { "Date and time" } td { "____________" } }
                tr { th { "Crew" } td { "____________" } }
            }
            p.muted { (state.config.paperwork.office) }
        }
    };
    Ok(Html(page(title, &v, body).into_string()).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct TagForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    reading: String,
    #[serde(default)]
    on: String,
}

/// `POST /review/paperwork/tags`: a tag back from the field: its reading and date enter the account's
/// history (at its active meter) and the account starts (in) or stops (out) service. Audited.
pub async fn record_tag(
    State(state): State<AppState>,
    user: ClerkUser,
    Form(f): Form<TagForm>,
) -> Result<Response, AppError> {
    check_csrf(&user, &f.csrf)?;
    let (now, actor) = (state.now_local(), user.name.clone());
    let typed_in = [
        ("kind", f.kind.clone()),
        ("account", f.account.clone()),
        ("reading", f.reading.clone()),
        ("on", f.on.clone()),
    ];
    let out = act(&state, "/review/paperwork".into(), move |s| {
        let start = f.kind != "out";
        let account = f.account.trim().to_string();
        let on = NaiveDate::parse_from_str(f.on.trim(), "%Y-%m-%d")
            .map_err(|_| field("on", format!("the date must be YYYY-MM-DD, got `{}`", f.on.trim())))?;
        if on > now.date() {
            return Err(field("on", format!("{on} is in the future")));
        }
        let t = f.reading.trim();
        if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(field("reading", format!("the reading must be 1–12 digits, got `{t}`")));
        }
        let reading: u64 = t.parse().map_err(|_| field("reading", format!("`{t}` is not a reading")))?;
        s.account(&account)?
            .ok_or_else(|| field("account", format!("no account `{account}`")))?;
        let meter = s
            .meters_of_account(&account)?
            .into_iter()
            .rfind(|m| m.status == crate::domain::MeterStatus::Active)
            .ok_or_else(|| field("account", format!("account {account} has no meter in service")))?;
        if !meter.register.fits(reading) {
            return Err(field("reading", format!("{reading} does not fit meter {}'s {} dials", meter.id, meter.register.dials)));
        }
        if let Some((day, last)) = sql::last_actual_reading(s.conn(), &meter.id)? {
            if on < day {
                return Err(field("on", format!("{on} is before meter {}'s last read ({last} on {day})", meter.id)));
            }
            if reading < last {
                return Err(field("reading", format!("{reading} is below meter {}'s last reading {last} (on {day})", meter.id)));
            }
        }
        s.write(|tx| {
            let before = sql::record_service_tag(tx, &account, &meter.id, on, reading, start)?;
            // History changed: the account's judging basis is written again for the open cycles.
            crate::cycles::prepare_judging_for_open_cycles(tx)?;
            sql::insert_audit(
                tx,
                &AuditEntry {
                    at: now,
                    actor: &actor,
                    entity: "account",
                    entity_id: &account,
                    action: if start { "start_service" } else { "stop_service" },
                    before: Some(json!({ "status": before })),
                    after: Some(json!({ "status": if start { "active" } else { "inactive" }, "meter_id": meter.id, "reading": reading, "on": on.to_string() })),
                    reason: "in/out tag",
                },
            )?;
            Ok::<_, super::actions::ReviewError>(())
        })?;
        Ok((
            None,
            format!(
                "{} tag recorded: reading {reading} of meter {} on {on} is in account {account}'s history.",
                if start { "In" } else { "Out" },
                meter.id
            ),
        ))
    })
    .await?;
    match out {
        Ok(r) => Ok(r),
        Err(e) => {
            let vals: Vec<(&str, &str)> = typed_in.iter().map(|(k, v)| (*k, v.as_str())).collect();
            show_home(
                &state,
                &user,
                &NoticeQuery::default(),
                Some(form_error("tag", &e, &vals)),
            )
            .await
        }
    }
}
