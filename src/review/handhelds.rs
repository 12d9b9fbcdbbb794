//! Handhelds: who docked and under which state identity (a new state id is a wiped, re-imaged or
//! replaced unit), and the reads the gateway refused, with what was sent, so a clerk can act on them:
//! a sequence number reused for another read, a read time far from the cycle, an off-route read the
//! District refuses, a batch id reused for other reads. Nothing here writes.

use super::html::{page, url};
use super::{read, viewer};
use crate::domain::RefusalReason;
use crate::serve::auth::ClerkUser;
use crate::serve::error::AppError;
use crate::serve::state::AppState;
use crate::store::{Device, DeviceStateRow, RefusedReadRow};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

/// Refused reads shown on the page (the CSV has them all, up to [`CSV_ROWS`]).
const PAGE_ROWS: usize = 200;
const CSV_ROWS: usize = 100_000;

#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    /// Only this handheld.
    pub device: Option<String>,
}

impl Filter {
    fn device(&self) -> Option<String> {
        self.device
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_string)
    }
}

/// A refusal in words, and what the office does about it.
pub fn reason_words(reason: RefusalReason) -> (&'static str, &'static str) {
    match reason {
        RefusalReason::SeqConflict => (
            "sequence number used twice",
            "The handheld numbered a new read with a number it had already used (its storage was \
             restored or re-imaged). It numbers the read again and sends it at its next docking; \
             if the read is not in the cycle by then, enter it from what was sent.",
        ),
        RefusalReason::BatchConflict => (
            "batch id used twice",
            "The handheld sent other reads under a batch id it had used. It must send them under a \
             new batch id; nothing of the batch was stored.",
        ),
        RefusalReason::BadTime => (
            "read time out of range",
            "The handheld's clock was wrong (or the read is not from this cycle). Check the \
             handheld's clock; enter the reading with the right time, or order a re-read.",
        ),
        RefusalReason::OffRoute => (
            "off its route",
            "The District refuses reads of meters on another handheld's route ([reads] off_route). \
             The assigned reader reads the meter, or a clerk enters this reading.",
        ),
        RefusalReason::BadRead => (
            "malformed read",
            "A field was out of range (a sequence number of 0 or above 2^63 - 1): a firmware fault \
             to report to the handheld's vendor.",
        ),
    }
}

/// What the handheld sent, in a line: reading, time, codes, note.
fn sent(r: &RefusedReadRow) -> String {
    let v: serde_json::Value = serde_json::from_str(&r.read_json).unwrap_or_default();
    let one = |v: &serde_json::Value| -> String {
        let mut parts = Vec::new();
        if let Some(m) = v["meter_id"].as_str() {
            parts.push(format!("meter {m}"));
        }
        match v["read_type"].as_str() {
            Some("skipped") => parts.push(format!(
                "skipped ({})",
                v["skip_code"].as_str().unwrap_or("no skip code")
            )),
            _ => parts.push(format!("reading {}", v["reading"])),
        }
        parts.push(format!(
            "at {}",
            v["read_time"]
                .as_str()
                .map_or_else(|| v["read_time"].to_string(), str::to_string)
        ));
        if let Some(codes) = v["message_codes"].as_array().filter(|c| !c.is_empty()) {
            let codes: Vec<&str> = codes.iter().filter_map(|c| c.as_str()).collect();
            parts.push(format!("codes {}", codes.join(" ")));
        }
        if let Some(n) = v["note"].as_str() {
            parts.push(format!("note \"{n}\""));
        }
        if let Some(r) = v["reader_id"].as_str() {
            parts.push(format!("reader {r}"));
        }
        parts.join(", ")
    };
    match v.as_array() {
        Some(batch) => format!(
            "{} read(s): {}",
            batch.len(),
            batch.iter().take(3).map(one).collect::<Vec<_>>().join("; ")
        ),
        None => one(&v),
    }
}

fn render(
    devices: &[Device],
    states: &[DeviceStateRow],
    refused: &[RefusedReadRow],
    only: Option<&str>,
) -> Markup {
    html! {
        p { "Each handheld's storage has a state identity. A new one means the unit was wiped, \
             re-imaged or replaced: its reads are numbered from 1 again and are never taken for \
             reads already received." }
        div.scroll { table.cards #handhelds {
            thead { tr { th { "Handheld" } th { "Status" } th { "Last docked" } th { "Firmware" }
                         th { "States (latest first)" } th { "Refused" } } }
            @for d in devices {
                @let mine: Vec<&DeviceStateRow> = states.iter().filter(|s| s.device_id == d.device_id).collect();
                @let refusals = refused.iter().filter(|r| r.device_id == d.device_id).count();
                tr {
                    td data-label="Handheld" { a href={ "/review/handhelds?device=" (url(&d.device_id)) } { (d.device_id) } }
                    td data-label="Status" { (if d.retired { "retired" } else { "active" }) }
                    td data-label="Last docked" { (d.last_seen_at.as_deref().unwrap_or("never")) }
                    td data-label="Firmware" { (d.firmware_version.as_deref().unwrap_or("-")) }
                    td data-label="States" {
                        @if mine.is_empty() { "none yet" }
                        @for s in &mine {
                            span.muted { (s.state_id) } " " (s.via) ", " (s.reads) " read(s), up to "
                            (s.held_seq) ", last " (s.last_seen_at) br;
                        }
                        @if mine.len() > 1 { strong { "Restarted " (mine.len() - 1) " time(s)" } }
                    }
                    td.num data-label="Refused" { (refusals) }
                }
            }
        } }
        h2 { "Refused reads" @if let Some(d) = only { " of " (d) } }
        p {
            a href={ "/review/handhelds/refused.csv" @if let Some(d) = only { "?device=" (url(d)) } } { "Download as CSV" }
            @if only.is_some() { " · " a href="/review/handhelds" { "All handhelds" } }
        }
        @if refused.is_empty() {
            p.ok { "No read was refused." }
        } @else {
            p { "Not stored: the gateway keeps what was sent here. The handheld was told why." }
            div.scroll { table.cards #refused {
                thead { tr { th { "Last sent" } th { "Handheld" } th { "Why" } th { "What was sent" }
                             th { "What to do" } } }
                @for r in refused {
                    @let (why, todo) = reason_words(r.reason);
                    tr {
                        td data-label="Last sent" { (r.last_at)
                            @if r.times > 1 { br; span.muted { (r.times) " times since " (r.first_at) } } }
                        td data-label="Handheld" { (r.device_id) br; span.muted { "state " (r.state_id)
                            @if let Some(s) = r.device_seq { ", read " (s) }
                            @if let Some(b) = &r.batch_id { ", batch " (b) } } }
                        td data-label="Why" { span.flag { (why) } br; (r.detail)
                            @if let Some(id) = r.existing_read_id {
                                br; a href={ "/review/reads/" (id) } { "The read held under that number" } } }
                        td data-label="What was sent" { (sent(r)) }
                        td data-label="What to do" { (todo) }
                    }
                }
            } }
        }
    }
}

/// `GET /review/handhelds[?device=ID]`.
pub async fn handhelds(
    State(state): State<AppState>,
    user: ClerkUser,
    Query(filter): Query<Filter>,
) -> Result<Html<String>, AppError> {
    let only = filter.device();
    let wanted = only.clone();
    let (devices, states, refused) = read(&state, move |c| {
        let refused = crate::store::refused_reads_in(c, wanted.as_deref(), PAGE_ROWS)?;
        let mut devices = crate::store::devices_in(c)?;
        if let Some(d) = &wanted {
            devices.retain(|x| x.device_id == *d);
        }
        Ok((devices, crate::store::device_states_in(c)?, refused))
    })
    .await?;
    let body = render(&devices, &states, &refused, only.as_deref());
    Ok(Html(page("Handhelds", &viewer(&user), body).into_string()))
}

/// `GET /review/handhelds/refused.csv[?device=ID]`: every refused read with what was sent.
pub async fn refused_csv(
    State(state): State<AppState>,
    _user: ClerkUser,
    Query(filter): Query<Filter>,
) -> Result<Response, AppError> {
    let only = filter.device();
    let refused = read(&state, move |c| {
        Ok(crate::store::refused_reads_in(
            c,
            only.as_deref(),
            CSV_ROWS,
        )?)
    })
    .await?;
    // Meter ids, details and what was sent come from handhelds: marked for spreadsheets.
    let mut w = crate::csv_out::Writer::from_writer(Vec::new());
    let header = [
        "last_sent",
        "first_sent",
        "times",
        "device_id",
        "state_id",
        "device_seq",
        "batch_id",
        "reason",
        "detail",
        "meter_id",
        "sent",
        "read_held_under_that_number",
    ];
    w.write_record(header).map_err(AppError::internal)?;
    for r in &refused {
        w.write_record([
            r.last_at.as_str(),
            r.first_at.as_str(),
            &r.times.to_string(),
            &r.device_id,
            &r.state_id,
            &r.device_seq.map(|s| s.to_string()).unwrap_or_default(),
            r.batch_id.as_deref().unwrap_or(""),
            r.reason.as_str(),
            &r.detail,
            &r.meter_id,
            &r.read_json,
            &r.existing_read_id
                .map(|i| i.to_string())
                .unwrap_or_default(),
        ])
        .map_err(AppError::internal)?;
    }
    let body = w.into_inner().map_err(AppError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"refused-reads.csv\"".to_string(),
            ),
        ],
        body,
    )
        .into_response())
}
