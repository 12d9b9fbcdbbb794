//! The worklist of a cycle: filters that stay put (route, flag, confirmed, status, search), sorting by
//! any column, server-side paging, counts per flag, j/k/Enter; the same list as CSV and as a printable
//! page per route. The read page walks the same list (previous / next, save and next).

use super::html::{flag_label, money, notice, page, url};
use super::tariff::{to_hcf, TariffConfig};
use super::{read, viewer};
use crate::domain::{FlagKind, ReadStatus};
use crate::serve::auth::ClerkUser;
use crate::serve::error::AppError;
use crate::serve::state::AppState;
use crate::store::review as sql;
use crate::store::review::{QueueKey, QueueStatus};
use crate::store::ReviewRead;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup, PreEscaped};
use rusqlite::Connection;
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// Rows on one page of the worklist.
pub const PAGE_SIZE: usize = 50;
/// Most reads a search returns.
const SEARCH_LIMIT: u32 = 500;

/// Money a read would add to (or take off) the bill against expected use: bill(use) − bill(expected).
pub fn bill_impact(tariff: &TariffConfig, r: &ReviewRead) -> Option<Decimal> {
    let unit = r.unit?;
    let class = r.rate_class.as_deref()?;
    let used = to_hcf(Decimal::from(r.consumption?), unit);
    let expected = to_hcf(Decimal::from_f64(r.expected_use?)?.round_dp(2), unit);
    Some(tariff.bill(class, used).total - tariff.bill(class, expected).total)
}

/// Which list a clerk is working: kept in every link of the worklist and the read page, so filters,
/// search and order stay put through decisions.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
pub struct ListCtx {
    #[serde(default)]
    pub route: String,
    #[serde(default)]
    pub flag: String,
    /// `yes`: only reads the reader confirmed at the meter; `no`: only unconfirmed.
    #[serde(default)]
    pub confirmed: String,
    /// `open` (flagged, default), `held`, `resolved`, `all`.
    #[serde(default)]
    pub show: String,
    /// Search text: account, name, address, meter or read id (every read of the cycle).
    #[serde(default)]
    pub q: String,
    /// Column to sort by (default: likely bill impact).
    #[serde(default)]
    pub sort: String,
    /// `asc` or `desc`.
    #[serde(default)]
    pub dir: String,
}

/// The columns a list can be sorted by: `(key, heading)`.
pub const COLUMNS: &[(&str, &str)] = &[
    ("read", "Read"),
    ("route", "Route"),
    ("account", "Account"),
    ("meter", "Meter"),
    ("reading", "Reading"),
    ("use", "Use"),
    ("expected", "Expected"),
    ("flags", "Flags"),
    ("reader", "Reader"),
    ("status", "Status"),
    ("impact", "Likely bill impact"),
];

impl ListCtx {
    pub fn show(&self) -> &str {
        match self.show.as_str() {
            "held" | "resolved" | "all" => &self.show,
            _ => "open",
        }
    }

    fn sort_key(&self) -> &str {
        COLUMNS
            .iter()
            .map(|(k, _)| *k)
            .find(|k| *k == self.sort)
            .unwrap_or("impact")
    }

    fn descending(&self) -> bool {
        match self.dir.as_str() {
            "asc" => false,
            "desc" => true,
            // Largest impact first; other columns A→Z.
            _ => self.sort_key() == "impact",
        }
    }

    /// The list as a query string (no leading `?`), without empty values.
    pub fn query(&self) -> String {
        let pairs = [
            ("route", &self.route),
            ("flag", &self.flag),
            ("confirmed", &self.confirmed),
            ("show", &self.show),
            ("q", &self.q),
            ("sort", &self.sort),
            ("dir", &self.dir),
        ];
        pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", url(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// `path` with the list's query string (and `extra`, already encoded) appended.
    pub fn link(&self, path: &str, extra: &str) -> String {
        let q = [self.query(), extra.to_string()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("&");
        if q.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{q}")
        }
    }

    fn with(&self, f: impl FnOnce(&mut ListCtx)) -> ListCtx {
        let mut c = self.clone();
        f(&mut c);
        c
    }
}

fn confirmed(read_type: &str) -> bool {
    matches!(read_type, "high_confirmed" | "low_confirmed")
}

fn in_status(show: &str, status: ReadStatus, flagged: bool) -> bool {
    match show {
        "held" => status == ReadStatus::Held,
        "resolved" => {
            matches!(status, ReadStatus::Resolved | ReadStatus::Estimated)
                || (status == ReadStatus::Accepted && flagged)
        }
        "all" => true,
        _ => status == ReadStatus::Flagged,
    }
}

/// A cycle's list as the clerk filtered and sorted it: the keys of every read in it (the page's rows
/// are loaded whole afterwards, [`page_reads`]) with their likely bill impact.
pub struct Listing {
    pub rows: Vec<(QueueKey, Option<Decimal>)>,
    /// Reads per flag among the reads of the chosen status (and search), before the flag filter.
    pub per_flag: BTreeMap<FlagKind, usize>,
    pub routes: Vec<String>,
}

/// Bill impact of a key, the tariff's bills remembered per (class, HCF): a cycle's thousands of
/// exceptions share few distinct uses.
struct Impacts<'t> {
    tariff: &'t TariffConfig,
    bills: HashMap<(String, Decimal), Decimal>,
}

impl Impacts<'_> {
    fn bill(&mut self, class: &str, hcf: Decimal) -> Decimal {
        let tariff = self.tariff;
        *self
            .bills
            .entry((class.to_string(), hcf))
            .or_insert_with(|| tariff.bill(class, hcf).total)
    }

    fn of(&mut self, k: &QueueKey) -> Option<Decimal> {
        let unit = k.unit?;
        let class = k.rate_class.as_deref()?;
        let used = to_hcf(Decimal::from(k.consumption?), unit);
        let expected = to_hcf(Decimal::from_f64(k.expected_use?)?.round_dp(2), unit);
        Some(self.bill(class, used) - self.bill(class, expected))
    }
}

/// Builds the list: the cycle's exceptions of the chosen status (or, with a search, every read of the
/// cycle matching it), filtered, sorted by the chosen column, read id breaking ties.
pub fn listing(
    conn: &Connection,
    tariff: &TariffConfig,
    cycle: &str,
    ctx: &ListCtx,
) -> Result<Listing, crate::store::StoreError> {
    let search = ctx.q.trim();
    let show = ctx.show();
    let keys: Vec<QueueKey> = if search.is_empty() {
        let status = match show {
            "held" => QueueStatus::Held,
            "resolved" => QueueStatus::Resolved,
            "all" => QueueStatus::All,
            _ => QueueStatus::Open,
        };
        sql::queue_keys(conn, cycle, status)?
    } else {
        // A search looks at every read it found, whatever their status, unless a status is chosen.
        sql::search_reads(conn, cycle, search, SEARCH_LIMIT)?
            .iter()
            .map(QueueKey::of)
            .filter(|k| ctx.show.is_empty() || in_status(show, k.status, !k.flags.is_empty()))
            .collect()
    };
    let routes = crate::store::routes_in(conn)?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let base: Vec<QueueKey> = keys
        .into_iter()
        .filter(|k| ctx.route.is_empty() || k.route_id.as_deref() == Some(ctx.route.as_str()))
        .filter(|k| match ctx.confirmed.as_str() {
            "yes" => confirmed(&k.read_type),
            "no" => !confirmed(&k.read_type),
            _ => true,
        })
        .collect();
    let mut per_flag: BTreeMap<FlagKind, usize> = BTreeMap::new();
    for k in &base {
        for f in &k.flags {
            *per_flag.entry(*f).or_default() += 1;
        }
    }
    let mut impacts = Impacts {
        tariff,
        bills: HashMap::new(),
    };
    let mut rows: Vec<(QueueKey, Option<Decimal>)> = base
        .into_iter()
        .filter(|k| ctx.flag.is_empty() || k.flags.iter().any(|f| f.as_str() == ctx.flag))
        .map(|k| {
            let i = impacts.of(&k);
            (k, i)
        })
        .collect();
    sort(&mut rows, ctx);
    Ok(Listing {
        rows,
        per_flag,
        routes,
    })
}

/// The whole reads of some of a list's rows, in the list's order, each with its impact.
pub fn page_reads(
    conn: &Connection,
    rows: &[(QueueKey, Option<Decimal>)],
) -> Result<Vec<(ReviewRead, Option<Decimal>)>, crate::store::StoreError> {
    let ids: Vec<i64> = rows.iter().map(|(k, _)| k.read_id).collect();
    let reads = sql::review_reads_by_ids(conn, &ids)?;
    Ok(reads
        .into_iter()
        .zip(rows.iter().map(|(_, i)| *i))
        .collect())
}

fn sort(rows: &mut [(QueueKey, Option<Decimal>)], ctx: &ListCtx) {
    use std::cmp::Ordering;
    let key = ctx.sort_key();
    let desc = ctx.descending();
    // Unknown values (no impact, no use) sort last whichever the direction.
    fn opt<T: Ord>(a: Option<T>, b: Option<T>, desc: bool) -> Ordering {
        match (a, b) {
            (Some(a), Some(b)) => {
                if desc {
                    b.cmp(&a)
                } else {
                    a.cmp(&b)
                }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    let flip = |o: Ordering| if desc { o.reverse() } else { o };
    rows.sort_by(|(a, ia), (b, ib)| {
        let o = match key {
            "read" => flip(a.read_id.cmp(&b.read_id)),
            "route" => flip(a.route_id.cmp(&b.route_id)),
            "account" => flip(a.account_id.cmp(&b.account_id)),
            "meter" => flip(a.meter_id.cmp(&b.meter_id)),
            "reading" => opt(a.reading, b.reading, desc),
            "use" => opt(a.consumption, b.consumption, desc),
            "expected" => opt(
                a.expected_use.and_then(Decimal::from_f64),
                b.expected_use.and_then(Decimal::from_f64),
                desc,
            ),
            "flags" => flip(a.flags.cmp(&b.flags)),
            "reader" => flip(a.reader.cmp(&b.reader)),
            "status" => flip(a.status.as_str().cmp(b.status.as_str())),
            _ => opt(ia.map(|d| d.abs()), ib.map(|d| d.abs()), desc),
        };
        o.then(a.read_id.cmp(&b.read_id))
    });
}

/// Where `read_id` stands in the list: the reads before and after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Place {
    pub prev: Option<i64>,
    pub next: Option<i64>,
    /// 1-based position and the list's length (position 0: the read is not in the list).
    pub position: usize,
    pub total: usize,
}

pub fn place(
    conn: &Connection,
    tariff: &TariffConfig,
    cycle: &str,
    ctx: &ListCtx,
    read_id: i64,
) -> Result<Place, crate::store::StoreError> {
    let ids: Vec<i64> = listing(conn, tariff, cycle, ctx)?
        .rows
        .iter()
        .map(|(r, _)| r.read_id)
        .collect();
    let total = ids.len();
    Ok(match ids.iter().position(|i| *i == read_id) {
        Some(i) => Place {
            prev: i.checked_sub(1).map(|p| ids[p]),
            next: ids.get(i + 1).copied(),
            position: i + 1,
            total,
        },
        None => Place {
            prev: None,
            next: ids.first().copied(),
            position: 0,
            total,
        },
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    #[serde(flatten)]
    pub ctx: ListCtx,
    #[serde(default)]
    pub page: String,
    #[serde(default)]
    pub done: String,
    #[serde(default)]
    pub error: String,
}

/// `GET /review`: the newest open cycle's worklist (or the newest cycle's).
pub async fn home(State(state): State<AppState>, user: ClerkUser) -> Result<Response, AppError> {
    let cycles = read(&state, |c| Ok(sql::cycles_list(c)?)).await?;
    let pick = cycles
        .iter()
        .find(|(_, st)| st == "open")
        .or_else(|| cycles.first());
    if let Some((id, _)) = pick {
        return Ok(Redirect::to(&format!("/review/cycles/{}", url(id))).into_response());
    }
    let v = viewer(&user);
    Ok(Html(
        page(
            "Exceptions",
            &v,
            html! { p { "No read cycle yet. Open one with " code { "meter-gateway cycle open" } "." } },
        )
        .into_string(),
    )
    .into_response())
}

fn known_cycle(c: &Connection, cycle: &str) -> Result<(), super::actions::ReviewError> {
    if crate::store::load_cycle(c, cycle)?.is_none() {
        return Err(super::actions::ReviewError::UnknownCycle(cycle.to_string()));
    }
    Ok(())
}

fn use_text(r: &ReviewRead) -> String {
    let unit = r.unit.map(|u| u.to_string()).unwrap_or_default();
    r.consumption
        .map(|c| format!("{c} {unit}"))
        .unwrap_or_else(|| "—".into())
}

fn expected_text(r: &ReviewRead) -> String {
    let unit = r.unit.map(|u| u.to_string()).unwrap_or_default();
    r.expected_use
        .map(|e| format!("{} {unit}", crate::vee::amount(e)))
        .unwrap_or_else(|| "—".into())
}

/// `GET /review/cycles/{cycle}`.
pub async fn queue(
    State(state): State<AppState>,
    user: ClerkUser,
    Path(cycle): Path<String>,
    Query(q): Query<QueueQuery>,
) -> Result<Response, AppError> {
    let (c, ctx, tariff) = (cycle.clone(), q.ctx.clone(), state.config.tariff.clone());
    let asked = q.page.parse::<usize>().unwrap_or(1).max(1);
    let (listing, shown, page_no, cycles) = read(&state, move |conn| {
        known_cycle(conn, &c)?;
        let l = listing(conn, &tariff, &c, &ctx)?;
        let pages = l.rows.len().div_ceil(PAGE_SIZE).max(1);
        let page_no = asked.min(pages);
        let from = ((page_no - 1) * PAGE_SIZE).min(l.rows.len());
        let to = (page_no * PAGE_SIZE).min(l.rows.len());
        let shown = page_reads(conn, &l.rows[from..to])?;
        Ok((l, shown, page_no, sql::cycles_list(conn)?))
    })
    .await?;
    let ctx = &q.ctx;
    let total = listing.rows.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let base = format!("/review/cycles/{}", url(&cycle));
    let show = ctx.show();
    let searching = !ctx.q.trim().is_empty();
    let v = viewer(&user);
    let body = html! {
        (notice(Some(&q.done), Some(&q.error)))
        nav.noprint aria-label="Cycles" {
            "Cycles: "
            @for (id, st) in &cycles {
                @if *id == cycle { strong { (id) " (" (st) ")" } " " }
                @else { a href={ "/review/cycles/" (url(id)) } { (id) " (" (st) ")" } " " }
            }
        }
        form.noprint method="get" action=(base) aria-label="Search and filter" {
            label { "Search " input type="search" name="q" value=(ctx.q) size="24" maxlength="80"
                placeholder="account, name, address, meter or read"; }
            label { "Route " select name="route" {
                option value="" { "all" }
                @for r in &listing.routes { option selected[*r == ctx.route] { (r) } }
            } }
            label { "Flag " select name="flag" {
                option value="" { "all" }
                @for k in FlagKind::ALL { option value=(k.as_str()) selected[k.as_str() == ctx.flag] { (flag_label(*k)) } }
            } }
            label { "Confirmed by reader " select name="confirmed" {
                @for (val, label) in [("", "either"), ("yes", "confirmed"), ("no", "not confirmed")] {
                    option value=(val) selected[val == ctx.confirmed] { (label) }
                }
            } }
            label { "Show " select name="show" {
                @for (val, label) in [("", if searching { "any status" } else { "to review" }), ("open", "to review"), ("held", "held"), ("resolved", "resolved"), ("all", "all")] {
                    @if !val.is_empty() || searching {
                        option value=(val) selected[val == ctx.show || (val == "open" && ctx.show.is_empty() && !searching)] { (label) }
                    }
                }
            } }
            input type="hidden" name="sort" value=(ctx.sort);
            input type="hidden" name="dir" value=(ctx.dir);
            button type="submit" { "Show" }
            " "
            a href=(base) { "Clear" }
        }
        @if searching { p.muted { "Search covers every read of the cycle, accepted ones too." } }
        h2 { "Counts per flag" }
        p {
            @if listing.per_flag.is_empty() { "No exceptions." }
            @for (k, n) in &listing.per_flag {
                a href=(ctx.with(|c| c.flag = k.as_str().into()).link(&base, "")) {
                    span.flag { (flag_label(*k)) } " " (n)
                } " "
            }
        }
        h2 { (total) " read" @if total != 1 { "s" } " " span.muted { "(" (show_label(show, searching && ctx.show.is_empty())) ")" } }
        p.noprint {
            a href=(ctx.link(&format!("{base}/exceptions.csv"), "")) { "Download CSV" } " · "
            a href=(ctx.link(&format!("{base}/print"), "")) { "Printable list per route" }
            " · " span.muted { "Keys: " kbd { "j" } "/" kbd { "k" } " move, " kbd { "Enter" } " opens." }
        }
        (pager(&base, ctx, page_no, pages))
        table.cards #queue {
            thead { tr {
                @for (key, head) in COLUMNS {
                    th.num[matches!(*key, "use" | "expected" | "impact")] {
                        @let active = ctx.sort_key() == *key;
                        @let dir = if active && !ctx.descending() { "desc" } else if active { "asc" } else if *key == "impact" { "desc" } else { "asc" };
                        a href=(ctx.with(|c| { c.sort = (*key).into(); c.dir = dir.into(); }).link(&base, "")) {
                            (head)
                            @if active { (if ctx.descending() { " ▼" } else { " ▲" }) }
                        }
                    }
                }
            } }
            tbody {
                @for (r, impact) in &shown {
                    tr {
                        td data-label="Read" { a href=(ctx.link(&format!("/review/reads/{}", r.read_id), "")) { (r.read_id) } }
                        td data-label="Route" { (r.route_id.as_deref().unwrap_or("—")) }
                        td data-label="Account" {
                            (r.account_id.as_deref().unwrap_or("no account")) br;
                            span.muted { (r.customer_name.as_deref().unwrap_or("")) " · " (r.service_address.as_deref().unwrap_or("")) }
                        }
                        td data-label="Meter" { (r.meter_id) }
                        td data-label="Reading" { (r.raw_reading) @if confirmed(&r.read_type) { " ✓ confirmed" } }
                        td.num data-label="Use" { (use_text(r)) }
                        td.num data-label="Expected" { (expected_text(r)) }
                        td data-label="Flags" { @for f in &r.flags { span.flag { (flag_label(f.kind)) } " " } }
                        td data-label="Reader" { (r.reader) }
                        td data-label="Status" { (r.status) }
                        td.num data-label="Impact" { (impact.map(money).unwrap_or_else(|| "—".into())) }
                    }
                }
            }
        }
        (pager(&base, ctx, page_no, pages))
        script { (PreEscaped(QUEUE_SCRIPT)) }
    };
    Ok(Html(page(&format!("Exceptions · cycle {cycle}"), &v, body).into_string()).into_response())
}

fn show_label(show: &str, any: bool) -> &'static str {
    if any {
        return "any status";
    }
    match show {
        "held" => "held",
        "resolved" => "resolved",
        "all" => "all",
        _ => "to review",
    }
}

fn pager(base: &str, ctx: &ListCtx, page_no: usize, pages: usize) -> Markup {
    html! {
        @if pages > 1 {
            nav.pager.noprint aria-label="Pages" {
                @if page_no > 1 { a rel="prev" href=(ctx.link(base, &format!("page={}", page_no - 1))) { "← previous" } }
                "Page " strong { (page_no) } " of " (pages)
                @if page_no < pages { " " a rel="next" href=(ctx.link(base, &format!("page={}", page_no + 1))) { "next →" } }
            }
        }
    }
}

/// j/k move the selection (and focus its link, so Enter opens it); ignored while typing in a field.
/// Inline, allowed by its hash in the Content-Security-Policy (`serve::security`).
pub const QUEUE_SCRIPT: &str = "(function(){var rows=[].slice.call(document.querySelectorAll('#queue tbody tr'));var i=0;\
function sel(n){if(!rows.length)return;rows[i].classList.remove('sel');i=Math.max(0,Math.min(rows.length-1,n));\
rows[i].classList.add('sel');rows[i].querySelector('a').focus();}\
document.addEventListener('keydown',function(e){if(/INPUT|SELECT|TEXTAREA|BUTTON/.test(e.target.tagName)||e.ctrlKey||e.metaKey||e.altKey)return;\
if(e.key==='j'){sel(i+1);e.preventDefault();}else if(e.key==='k'){sel(i-1);e.preventDefault();}\
else if(e.key==='Enter'&&rows.length&&e.target===document.body){location.href=rows[i].querySelector('a').href;}});\
if(rows.length)rows[0].classList.add('sel');})();";

/// One line of the exception list as CSV (and the printable list).
#[derive(Debug, serde::Serialize)]
struct CsvRow<'a> {
    read_id: i64,
    route: &'a str,
    account: &'a str,
    customer: &'a str,
    service_address: &'a str,
    meter: &'a str,
    read_at: String,
    reading: &'a str,
    #[serde(rename = "use")]
    used: String,
    expected: String,
    flags: String,
    reader: &'a str,
    status: &'a str,
    likely_bill_impact: String,
}

fn csv_row(r: &ReviewRead, impact: Option<Decimal>) -> CsvRow<'_> {
    CsvRow {
        read_id: r.read_id,
        route: r.route_id.as_deref().unwrap_or(""),
        account: r.account_id.as_deref().unwrap_or(""),
        customer: r.customer_name.as_deref().unwrap_or(""),
        service_address: r.service_address.as_deref().unwrap_or(""),
        meter: &r.meter_id,
        read_at: r.read_at.format("%Y-%m-%d %H:%M").to_string(),
        reading: &r.raw_reading,
        used: r.consumption.map(|c| c.to_string()).unwrap_or_default(),
        expected: r.expected_use.map(crate::vee::amount).unwrap_or_default(),
        flags: r
            .flags
            .iter()
            .map(|f| flag_label(f.kind))
            .collect::<Vec<_>>()
            .join("; "),
        reader: &r.reader,
        status: r.status.as_str(),
        likely_bill_impact: impact
            .map(|d| d.round_dp(2).to_string())
            .unwrap_or_default(),
    }
}

/// `GET /review/cycles/{cycle}/exceptions.csv`: the filtered list, every page, in its order.
pub async fn csv(
    State(state): State<AppState>,
    _user: ClerkUser,
    Path(cycle): Path<String>,
    Query(ctx): Query<ListCtx>,
) -> Result<Response, AppError> {
    let (c, tariff) = (cycle.clone(), state.config.tariff.clone());
    let bytes = read(&state, move |conn| {
        known_cycle(conn, &c)?;
        let l = listing(conn, &tariff, &c, &ctx)?;
        let rows = page_reads(conn, &l.rows)?;
        let mut w = crate::csv_out::Writer::from_writer(Vec::new());
        let err = |e: csv::Error| super::actions::ReviewError::Invalid(format!("writing CSV: {e}"));
        if rows.is_empty() {
            w.write_record([
                "read_id",
                "route",
                "account",
                "customer",
                "service_address",
                "meter",
                "read_at",
                "reading",
                "use",
                "expected",
                "flags",
                "reader",
                "status",
                "likely_bill_impact",
            ])
            .map_err(err)?;
        }
        for (r, i) in &rows {
            w.serialize(csv_row(r, *i)).map_err(err)?;
        }
        w.into_inner()
            .map_err(|e| super::actions::ReviewError::Invalid(format!("writing CSV: {e}")))
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
                format!("attachment; filename=\"exceptions-{safe}.csv\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /review/cycles/{cycle}/print`: the filtered list per route, one Letter sheet per route, for the
/// field supervisor.
pub async fn print(
    State(state): State<AppState>,
    user: ClerkUser,
    Path(cycle): Path<String>,
    Query(ctx): Query<ListCtx>,
) -> Result<Response, AppError> {
    let (c, tariff, cx) = (cycle.clone(), state.config.tariff.clone(), ctx.clone());
    let rows = read(&state, move |conn| {
        known_cycle(conn, &c)?;
        let l = listing(conn, &tariff, &c, &cx)?;
        Ok(page_reads(conn, &l.rows)?)
    })
    .await?;
    let mut by_route: BTreeMap<String, Vec<&(ReviewRead, Option<Decimal>)>> = BTreeMap::new();
    for row in &rows {
        by_route
            .entry(row.0.route_id.clone().unwrap_or_else(|| "no route".into()))
            .or_default()
            .push(row);
    }
    let v = viewer(&user);
    let body = html! {
        p.noprint { "Print this page (Ctrl+P): one sheet per route. " a href=(ctx.link(&format!("/review/cycles/{}", url(&cycle)), "")) { "← back to the list" } }
        @if by_route.is_empty() { p { "No exceptions in this list." } }
        @for (route, rows) in &by_route {
            section.sheet {
                h2 { "Route " (route) " — high/low exceptions, cycle " (cycle) }
                p.muted { (rows.len()) " read" @if rows.len() != 1 { "s" } ", " (show_label(ctx.show(), false)) }
                table.print-list {
                    thead { tr { th { "Account" } th { "Address" } th { "Meter" } th { "Reading" } th { "Use / expected" } th { "Flags" } th { "Reader" } th { "Checked" } } }
                    tbody {
                        @for (r, _) in rows {
                            tr {
                                td { (r.account_id.as_deref().unwrap_or("—")) }
                                td { (r.service_address.as_deref().unwrap_or("")) }
                                td { (r.meter_id) }
                                td { (r.raw_reading) }
                                td { (use_text(r)) " / " (expected_text(r)) }
                                td { @for f in &r.flags { (flag_label(f.kind)) " " } }
                                td { (r.reader) }
                                td { "☐" }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(
        Html(page(&format!("Exception list · cycle {cycle}"), &v, body).into_string())
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_context_round_trips_through_its_query_string() {
        let c = ListCtx {
            route: "R 01".into(),
            flag: "high".into(),
            q: "O'Brien & co".into(),
            ..ListCtx::default()
        };
        assert_eq!(c.query(), "route=R%2001&flag=high&q=O%27Brien%20%26%20co");
        assert_eq!(
            c.link("/x", "page=2"),
            "/x?route=R%2001&flag=high&q=O%27Brien%20%26%20co&page=2"
        );
        assert_eq!(ListCtx::default().link("/x", ""), "/x");
        assert_eq!(c.show(), "open");
    }
}
