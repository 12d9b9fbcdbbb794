//! The exception queue of a cycle: filters, counts per flag, sorted by likely bill impact, j/k/Enter.

use super::html::{esc, notice, page, url, Esc};
use super::tariff::{to_hcf, TariffConfig};
use super::{db, viewer};
use crate::domain::ReadStatus;
use crate::serve::auth::ClerkUser;
use crate::serve::error::AppError;
use crate::serve::AppState;
use crate::store::review as sql;
use crate::store::ReviewRead;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Money a read would add to (or take off) the bill against expected use: bill(use) − bill(expected).
pub fn bill_impact(tariff: &TariffConfig, r: &ReviewRead) -> Option<Decimal> {
    let unit = r.unit?;
    let class = r.rate_class.as_deref()?;
    let used = to_hcf(Decimal::from(r.consumption?), unit);
    let expected = to_hcf(Decimal::from_f64(r.expected_use?)?.round_dp(2), unit);
    Some(tariff.bill(class, used).total - tariff.bill(class, expected).total)
}

#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
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
    #[serde(default)]
    pub done: String,
    #[serde(default)]
    pub error: String,
}

/// `GET /review`: the newest open cycle's queue (or the newest cycle's).
pub async fn home(State(state): State<AppState>, user: ClerkUser) -> Result<Response, AppError> {
    let cycles = db(&state, |s| Ok(sql::cycles_list(s.conn())?)).await?;
    let pick = cycles
        .iter()
        .find(|(_, st)| st == "open")
        .or_else(|| cycles.first());
    if let Some((id, _)) = pick {
        return Ok(Redirect::to(&format!("/review/cycles/{}", url(id))).into_response());
    }
    let v = viewer(&user);
    Ok(Html(page(
        "Exceptions",
        &v,
        "<p>No read cycle yet. Open one with <code>meter-gateway cycle open</code>.</p>",
    ))
    .into_response())
}

fn confirmed(r: &ReviewRead) -> bool {
    matches!(r.read_type.as_str(), "high_confirmed" | "low_confirmed")
}

/// `GET /review/cycles/{cycle}`.
pub async fn queue(
    State(state): State<AppState>,
    user: ClerkUser,
    Path(cycle): Path<String>,
    Query(q): Query<QueueQuery>,
) -> Result<Response, AppError> {
    let now = crate::serve::auth::now_local();
    let c = cycle.clone();
    let (reads, cycles) = db(&state, move |s| {
        // Re-reads completed at a dock since the last look come back into their reads first.
        super::actions::apply_completed_rereads(s, now)?;
        if s.cycle(&c)?.is_none() {
            return Err(super::actions::ReviewError::Invalid(format!(
                "no cycle `{c}`"
            )));
        }
        Ok((
            sql::cycle_review_reads(s.conn(), &c)?,
            sql::cycles_list(s.conn())?,
        ))
    })
    .await
    .map_err(|e| match e {
        AppError::BadRequest(m) => AppError::NotFound(m),
        other => other,
    })?;
    let show = if q.show.is_empty() {
        "open"
    } else {
        q.show.as_str()
    };
    let wanted_status = |r: &ReviewRead| match show {
        "held" => r.status == ReadStatus::Held,
        "resolved" => matches!(
            r.status,
            ReadStatus::Resolved | ReadStatus::Estimated | ReadStatus::Accepted
        ),
        "all" => true,
        _ => r.status == ReadStatus::Flagged,
    };
    let in_status: Vec<&ReviewRead> = reads.iter().filter(|r| wanted_status(r)).collect();
    let mut per_flag: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &in_status {
        for f in &r.flags {
            *per_flag.entry(f.kind.as_str()).or_default() += 1;
        }
    }
    let mut routes: Vec<&str> = reads.iter().filter_map(|r| r.route_id.as_deref()).collect();
    routes.sort_unstable();
    routes.dedup();
    let tariff = &state.config.tariff;
    let mut rows: Vec<(&ReviewRead, Option<Decimal>)> = in_status
        .into_iter()
        .filter(|r| q.route.is_empty() || r.route_id.as_deref() == Some(q.route.as_str()))
        .filter(|r| q.flag.is_empty() || r.flags.iter().any(|f| f.kind.as_str() == q.flag))
        .filter(|r| match q.confirmed.as_str() {
            "yes" => confirmed(r),
            "no" => !confirmed(r),
            _ => true,
        })
        .map(|r| (r, bill_impact(tariff, r)))
        .collect();
    // Largest likely change to a bill first; reads whose impact is unknown (no usable reading) after.
    rows.sort_by(|a, b| {
        b.1.map(|d| d.abs())
            .cmp(&a.1.map(|d| d.abs()))
            .then(a.0.read_id.cmp(&b.0.read_id))
    });

    let v = viewer(&user);
    let mut body = notice(Some(&q.done), Some(&q.error));
    body.push_str("<nav aria-label=\"Cycles\">Cycles: ");
    for (id, st) in &cycles {
        if *id == cycle {
            let _ = write!(body, "<strong>{} ({})</strong> ", Esc(id), Esc(st));
        } else {
            let _ = write!(
                body,
                "<a href=\"/review/cycles/{}\">{} ({})</a> ",
                url(id),
                Esc(id),
                Esc(st)
            );
        }
    }
    let _ = write!(
        body,
        "</nav><form method=\"get\" action=\"/review/cycles/{}\" aria-label=\"Filter\">\
         <label>Route <select name=\"route\"><option value=\"\">all</option>",
        url(&cycle)
    );
    for r in &routes {
        let _ = write!(
            body,
            "<option{1}>{0}</option>",
            Esc(r),
            if *r == q.route { " selected" } else { "" }
        );
    }
    body.push_str(
        "</select></label><label>Flag <select name=\"flag\"><option value=\"\">all</option>",
    );
    for k in crate::domain::FlagKind::ALL {
        let k = k.as_str();
        let _ = write!(
            body,
            "<option{1}>{0}</option>",
            k,
            if k == q.flag { " selected" } else { "" }
        );
    }
    body.push_str("</select></label><label>Confirmed by reader <select name=\"confirmed\">");
    for (val, label) in [
        ("", "either"),
        ("yes", "confirmed"),
        ("no", "not confirmed"),
    ] {
        let _ = write!(
            body,
            "<option value=\"{val}\"{}>{label}</option>",
            if val == q.confirmed { " selected" } else { "" }
        );
    }
    body.push_str("</select></label><label>Show <select name=\"show\">");
    for (val, label) in [
        ("open", "to review"),
        ("held", "held"),
        ("resolved", "resolved"),
        ("all", "all"),
    ] {
        let _ = write!(
            body,
            "<option value=\"{val}\"{}>{label}</option>",
            if val == show { " selected" } else { "" }
        );
    }
    body.push_str("</select></label><button type=\"submit\">Filter</button></form>");
    body.push_str("<h2>Counts per flag</h2><p>");
    if per_flag.is_empty() {
        body.push_str("No exceptions.");
    }
    for (k, n) in &per_flag {
        let _ = write!(
            body,
            "<a href=\"/review/cycles/{c}?show={s}&amp;flag={k}\"><span class=\"flag\">{k}</span> {n}</a> ",
            c = url(&cycle),
            s = url(show),
        );
    }
    let _ = write!(
        body,
        "</p><h2>{n} read{s}</h2><p class=\"muted\">Keys: <kbd>j</kbd>/<kbd>k</kbd> move, <kbd>Enter</kbd> opens.</p>\
         <table id=\"queue\"><thead><tr><th>Read</th><th>Route</th><th>Account</th><th>Meter</th><th>Reading</th>\
         <th class=\"num\">Use</th><th class=\"num\">Expected</th><th>Flags</th><th>Reader</th><th>Status</th>\
         <th class=\"num\">Likely bill impact</th></tr></thead><tbody>",
        n = rows.len(),
        s = if rows.len() == 1 { "" } else { "s" }
    );
    for (r, impact) in &rows {
        let unit = r.unit.map(|u| u.to_string()).unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td><a href=\"/review/reads/{id}\">{id}</a></td><td>{route}</td><td>{acct}<br><span class=\"muted\">{addr}</span></td>\
             <td>{meter}</td><td>{raw}{conf}</td><td class=\"num\">{used}</td><td class=\"num\">{exp}</td><td>{flags}</td>\
             <td>{reader}</td><td>{status}</td><td class=\"num\">{impact}</td></tr>",
            id = r.read_id,
            route = Esc(r.route_id.as_deref().unwrap_or("—")),
            acct = Esc(r.account_id.as_deref().unwrap_or("—")),
            addr = Esc(r.service_address.as_deref().unwrap_or("")),
            meter = Esc(&r.meter_id),
            raw = Esc(&r.raw_reading),
            conf = if confirmed(r) { " ✓ confirmed" } else { "" },
            used = r.consumption.map(|c| format!("{c} {}", esc(&unit))).unwrap_or_else(|| "—".into()),
            exp = r.expected_use.map(|e| format!("{} {}", esc(&crate::vee::amount(e)), esc(&unit))).unwrap_or_else(|| "—".into()),
            flags = r.flags.iter().map(|f| format!("<span class=\"flag\">{}</span>", f.kind)).collect::<Vec<_>>().join(" "),
            reader = Esc(&r.reader),
            status = r.status,
            impact = impact.map(|d| format!("{}${}", if d.is_sign_negative() { "−" } else { "+" }, d.abs())).unwrap_or_else(|| "—".into()),
        );
    }
    body.push_str("</tbody></table>");
    body.push_str(QUEUE_SCRIPT);
    Ok(Html(page(&format!("Exceptions · cycle {cycle}"), &v, &body)).into_response())
}

/// j/k move the selection (and focus its link, so Enter opens it); ignored while typing in a field.
const QUEUE_SCRIPT: &str = "<script>(function(){var rows=[].slice.call(document.querySelectorAll('#queue tbody tr'));var i=0;\
function sel(n){if(!rows.length)return;rows[i].classList.remove('sel');i=Math.max(0,Math.min(rows.length-1,n));\
rows[i].classList.add('sel');rows[i].querySelector('a').focus();}\
document.addEventListener('keydown',function(e){if(/INPUT|SELECT|TEXTAREA|BUTTON/.test(e.target.tagName)||e.ctrlKey||e.metaKey||e.altKey)return;\
if(e.key==='j'){sel(i+1);e.preventDefault();}else if(e.key==='k'){sel(i-1);e.preventDefault();}\
else if(e.key==='Enter'&&rows.length&&e.target===document.body){location.href=rows[i].querySelector('a').href;}});\
if(rows.length)rows[0].classList.add('sel');})();</script>";
