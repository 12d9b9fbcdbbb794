//! Reports: route completion, reader productivity, exceptions by type, accounts started / stopped by
//! territory (route) for a month. Each is a page and a CSV download.

use super::actions::ReviewError;
use super::html::{flag_text, page, url};
use super::{read, viewer};
use crate::serve::auth::ClerkUser;
use crate::serve::error::AppError;
use crate::serve::state::AppState;
use crate::store::review as sql;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{Datelike, Months, NaiveDate};
use maud::{html, Markup};
use rusqlite::Connection;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompletionRow {
    pub route: String,
    pub expected: u64,
    pub read: u64,
    pub missing: u64,
    pub flagged_or_held: u64,
    pub resolved: u64,
    pub percent_complete: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductivityRow {
    pub reader: String,
    pub reads: u64,
    pub skips: u64,
    pub exceptions: u64,
    pub days: u64,
    /// Time between each day's first and last read, summed.
    pub hours: Decimal,
    /// Stops visited (reads and skips) per hour; empty when no time was spent (a single read a day).
    pub reads_per_hour: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExceptionRow {
    pub flag: String,
    pub reads: u64,
    pub awaiting_review: u64,
    pub held: u64,
    pub resolved: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TerritoryRow {
    pub route: String,
    pub started: u64,
    pub stopped: u64,
}

pub fn completion(conn: &Connection, cycle: &str) -> Result<Vec<CompletionRow>, ReviewError> {
    let s = crate::cycles::cycle_status_in(conn, cycle)?;
    Ok(s.routes
        .into_iter()
        .map(|r| CompletionRow {
            percent_complete: if r.expected == 0 {
                Decimal::ZERO
            } else {
                (Decimal::from(r.read_in.min(r.expected)) * Decimal::from(100)
                    / Decimal::from(r.expected))
                .round_dp(1)
            },
            route: r.route_id,
            expected: r.expected,
            read: r.read_in,
            missing: r.missing,
            flagged_or_held: r.flagged,
            resolved: r.resolved,
        })
        .collect())
}

pub fn productivity(conn: &Connection, cycle: &str) -> Result<Vec<ProductivityRow>, ReviewError> {
    let reads = sql::reader_reads(conn, cycle)?;
    let mut out: Vec<ProductivityRow> = Vec::new();
    // Reads come ordered by reader then time: each reader's days are consecutive.
    let mut day_span: BTreeMap<
        (String, NaiveDate),
        (chrono::NaiveDateTime, chrono::NaiveDateTime),
    > = BTreeMap::new();
    for r in &reads {
        if out.last().is_none_or(|p| p.reader != r.reader) {
            out.push(ProductivityRow {
                reader: r.reader.clone(),
                reads: 0,
                skips: 0,
                exceptions: 0,
                days: 0,
                hours: Decimal::ZERO,
                reads_per_hour: None,
            });
        }
        let p = out.last_mut().expect("pushed above");
        if r.skipped {
            p.skips += 1;
        } else {
            p.reads += 1;
        }
        if r.exception {
            p.exceptions += 1;
        }
        let span = day_span
            .entry((r.reader.clone(), r.read_at.date()))
            .or_insert((r.read_at, r.read_at));
        span.0 = span.0.min(r.read_at);
        span.1 = span.1.max(r.read_at);
    }
    for p in &mut out {
        let spans: Vec<_> = day_span
            .iter()
            .filter(|((reader, _), _)| *reader == p.reader)
            .map(|(_, s)| s)
            .collect();
        p.days = spans.len() as u64;
        let seconds: i64 = spans.iter().map(|(a, b)| (*b - *a).num_seconds()).sum();
        p.hours = (Decimal::from(seconds) / Decimal::from(3600)).round_dp(2);
        p.reads_per_hour = (seconds > 0).then(|| {
            (Decimal::from(p.reads + p.skips) * Decimal::from(3600) / Decimal::from(seconds))
                .round_dp(1)
        });
    }
    Ok(out)
}

pub fn exceptions(conn: &Connection, cycle: &str) -> Result<Vec<ExceptionRow>, ReviewError> {
    Ok(sql::exceptions_by_flag(conn, cycle)?
        .into_iter()
        .map(|c| ExceptionRow {
            flag: c.flag,
            reads: c.reads,
            awaiting_review: c.flagged,
            held: c.held,
            resolved: c.resolved,
        })
        .collect())
}

/// Accounts started and stopped per route in the month starting `month`, with the events behind them.
pub fn territory(
    conn: &Connection,
    month: NaiveDate,
) -> Result<(Vec<TerritoryRow>, Vec<sql::ServiceEvent>), ReviewError> {
    let to = month
        .checked_add_months(Months::new(1))
        .ok_or_else(|| ReviewError::Invalid(format!("month {month} is out of range")))?;
    let events = sql::service_events(conn, month, to)?;
    let mut per: BTreeMap<String, (u64, u64)> = crate::store::routes_in(conn)?
        .into_iter()
        .map(|r| (r.id, (0, 0)))
        .collect();
    for e in &events {
        let c = per.entry(e.route_id.clone()).or_default();
        if e.event == "start" {
            c.0 += 1;
        } else {
            c.1 += 1;
        }
    }
    Ok((
        per.into_iter()
            .map(|(route, (started, stopped))| TerritoryRow {
                route,
                started,
                stopped,
            })
            .collect(),
        events,
    ))
}

fn to_csv<T: Serialize>(rows: &[T], header: &[&str]) -> Result<Vec<u8>, ReviewError> {
    let mut w = crate::csv_out::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| ReviewError::Invalid(format!("writing CSV: {e}"));
    if rows.is_empty() {
        w.write_record(header).map_err(err)?;
    }
    for r in rows {
        w.serialize(r).map_err(err)?;
    }
    w.into_inner()
        .map_err(|e| ReviewError::Invalid(format!("writing CSV: {e}")))
}

#[derive(Debug, Default, Deserialize)]
pub struct MonthQuery {
    /// `YYYY-MM`; defaults to the month the cycle's window starts in.
    #[serde(default)]
    month: String,
}

fn month_of(q: &MonthQuery, conn: &Connection, cycle: &str) -> Result<NaiveDate, ReviewError> {
    let m = q.month.trim();
    if m.is_empty() {
        let c = crate::store::load_cycle(conn, cycle)?
            .ok_or_else(|| ReviewError::Invalid(format!("no cycle `{cycle}`")))?;
        return Ok(c.window_from.with_day(1).unwrap_or(c.window_from));
    }
    NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d")
        .map_err(|_| ReviewError::Invalid(format!("month must be YYYY-MM, got `{m}`")))
}

/// `GET /review/reports`: the newest cycle's reports.
pub async fn home(State(state): State<AppState>, _user: ClerkUser) -> Result<Response, AppError> {
    let cycles = read(&state, |c| Ok(sql::cycles_list(c)?)).await?;
    match cycles.first() {
        Some((id, _)) => Ok(Redirect::to(&format!("/review/reports/{}", url(id))).into_response()),
        None => Err(AppError::NotFound("no read cycle yet".into())),
    }
}

fn table<T: Serialize>(rows: &[T], header: &[&str]) -> Markup {
    // Rendered from the same serialisation as the CSV, so page and download never disagree.
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    for r in rows {
        let _ = w.serialize(r);
    }
    let bytes = w.into_inner().unwrap_or_default();
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes.as_slice());
    let records: Vec<csv::StringRecord> = rd.records().flatten().collect();
    html! {
        table.cards {
            tr { @for h in header { th { (h.replace('_', " ")) } } }
            @for rec in &records {
                tr { @for (i, f) in rec.iter().enumerate() {
                    // The flag column in the clerk's words.
                    td { (if header.get(i) == Some(&"flag") { flag_text(f) } else { f.to_string() }) }
                } }
            }
        }
    }
}

const COMPLETION: &[&str] = &[
    "route",
    "expected",
    "read",
    "missing",
    "flagged_or_held",
    "resolved",
    "percent_complete",
];
const PRODUCTIVITY: &[&str] = &[
    "reader",
    "reads",
    "skips",
    "exceptions",
    "days",
    "hours",
    "reads_per_hour",
];
const EXCEPTIONS: &[&str] = &["flag", "reads", "awaiting_review", "held", "resolved"];
const TERRITORY: &[&str] = &["route", "started", "stopped"];

/// `GET /review/reports/{cycle}`.
async fn page_handler(
    state: AppState,
    user: ClerkUser,
    cycle: String,
    q: MonthQuery,
) -> Result<Response, AppError> {
    let c = cycle.clone();
    let (comp, prod, exc, (terr, events), month, cycles) = read(&state, move |conn| {
        if crate::store::load_cycle(conn, &c)?.is_none() {
            return Err(ReviewError::UnknownCycle(c.clone()));
        }
        let month = month_of(&q, conn, &c)?;
        Ok((
            completion(conn, &c)?,
            productivity(conn, &c)?,
            exceptions(conn, &c)?,
            territory(conn, month)?,
            month,
            sql::cycles_list(conn)?,
        ))
    })
    .await?;
    let v = viewer(&user);
    let cu = url(&cycle);
    let m = month.format("%Y-%m").to_string();
    let body = html! {
        nav aria-label="Cycles" { "Cycles: "
            @for (id, _) in &cycles {
                @if *id == cycle { strong { (id) } " " } @else { a href={ "/review/reports/" (url(id)) } { (id) } " " }
            }
        }
        form method="get" { label { "Month for starts/stops " input name="month" value=(m) pattern="[0-9]{4}-[0-9]{2}" size="7"; } " " button type="submit" { "Show" } }
        h2 { "Route completion" } p { a href={ "/review/reports/" (cu) "/completion.csv" } { "Download CSV" } } (table(&comp, COMPLETION))
        h2 { "Reader productivity" } p { a href={ "/review/reports/" (cu) "/productivity.csv" } { "Download CSV" } } (table(&prod, PRODUCTIVITY))
        h2 { "Exceptions by type" } p { a href={ "/review/reports/" (cu) "/exceptions.csv" } { "Download CSV" } } (table(&exc, EXCEPTIONS))
        h2 { "Accounts started and stopped by territory, " (m) } p { a href={ "/review/reports/" (cu) "/accounts.csv?month=" (m) } { "Download CSV" } } (table(&terr, TERRITORY))
        @if !events.is_empty() {
            details { summary { "The accounts" } ul { @for e in &events {
                li { (e.route_id) " " (e.account_id) " " (e.event) " on " (e.on) " (" (e.source.replace('_', " ")) ")" }
            } } }
        }
    };
    Ok(Html(page(&format!("Reports · cycle {cycle}"), &v, body).into_string()).into_response())
}

pub async fn report_page(
    State(state): State<AppState>,
    user: ClerkUser,
    Path(cycle): Path<String>,
    Query(q): Query<MonthQuery>,
) -> Result<Response, AppError> {
    page_handler(state, user, cycle, q).await
}

/// `GET /review/reports/{cycle}/{completion|productivity|exceptions|accounts}.csv`.
pub async fn csv(
    State(state): State<AppState>,
    _user: ClerkUser,
    Path((cycle, file)): Path<(String, String)>,
    Query(q): Query<MonthQuery>,
) -> Result<Response, AppError> {
    let Some(name) = file.strip_suffix(".csv").map(str::to_string) else {
        return Err(AppError::NotFound(format!("no report `{file}`")));
    };
    let (c, n) = (cycle.clone(), name.clone());
    let bytes = read(&state, move |conn| {
        if crate::store::load_cycle(conn, &c)?.is_none() {
            return Err(ReviewError::UnknownCycle(c.clone()));
        }
        match n.as_str() {
            "completion" => to_csv(&completion(conn, &c)?, COMPLETION),
            "productivity" => to_csv(&productivity(conn, &c)?, PRODUCTIVITY),
            "exceptions" => to_csv(&exceptions(conn, &c)?, EXCEPTIONS),
            "accounts" => to_csv(&territory(conn, month_of(&q, conn, &c)?)?.0, TERRITORY),
            other => Err(ReviewError::Invalid(format!("no report `{other}`"))),
        }
    })
    .await?;
    let safe: String = cycle
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}-{safe}.csv\""),
            ),
        ],
        bytes,
    )
        .into_response())
}
