//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 description of every endpoint of the daemon.
//!
//! The bodies' schemas are derived from the very types the handlers and the reference handheld
//! (de)serialize (`#[derive(utoipa::ToSchema)]` on `sync::api`, `cycles::route_file`,
//! `serve::error::ErrorJson`; the two types of `sync` without the derive are described here and
//! checked against what they serialize to), so a field renamed, added or retyped changes the document
//! with it. The paths are written here: a test checks that every route of the router is in the
//! document and everything in it is routed, and `.ci/run` runs schemathesis against the demo daemon
//! with each credential, checking every answer's status, content type, headers and body against it.

use super::auth::AnyCredential;
use crate::sync::{DockStatus, RefusedRead, UploadReceipt};
use axum::Json;
use serde_json::{json, Value};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// A schema written as JSON (for the types of `sync` that do not derive it).
fn schema_of(value: Value) -> RefOr<Schema> {
    match serde_json::from_value::<Schema>(value) {
        Ok(s) => RefOr::T(s),
        Err(e) => unreachable!("a schema written in this file does not parse: {e}"),
    }
}

impl PartialSchema for RefusedRead {
    fn schema() -> RefOr<Schema> {
        schema_of(
            json!({ "type": "object", "required": ["device_seq", "reason", "detail"],
            "description": "A read of the upload that was not stored",
            "properties": {
                "device_seq": { "type": "integer", "format": "int64", "minimum": 0 },
                "reason": { "type": "string", "enum": ["seq_conflict", "batch_conflict", "bad_time", "off_route", "bad_read"],
                    "description": "seq_conflict: send the read again under a new device_seq" },
                "detail": { "type": "string", "description": "One sentence for the reader or a clerk, naming the read" } } }),
        )
    }
}

impl ToSchema for RefusedRead {}

impl PartialSchema for DockStatus {
    fn schema() -> RefOr<Schema> {
        schema_of(json!({ "type": "object",
            "required": ["path", "state", "device", "bytes_up", "bytes_down", "reads_received", "routes_sent",
                "last_error", "since"],
            "properties": {
                "path": { "type": "string" },
                "state": { "type": "string", "description": "waiting, idle, connected, uploading, storing, \
                    downloading, done, refused, stopped" },
                "device": { "type": ["string", "null"] },
                "bytes_up": { "type": "integer", "format": "int64", "minimum": 0 },
                "bytes_down": { "type": "integer", "format": "int64", "minimum": 0 },
                "reads_received": { "type": "integer", "format": "int64", "minimum": 0 },
                "routes_sent": { "type": "integer", "format": "int64", "minimum": 0 },
                "last_error": { "type": ["string", "null"] },
                "since": { "type": ["string", "null"], "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?$",
                    "description": "District local time of the last change, no offset" } } }))
    }
}

impl ToSchema for DockStatus {}

impl PartialSchema for UploadReceipt {
    fn schema() -> RefOr<Schema> {
        schema_of(json!({ "type": "object",
            "required": ["up_to_seq", "stored", "flagged", "already_received", "refused", "held_seq"],
            "properties": {
                "up_to_seq": { "type": ["integer", "null"], "format": "int64", "minimum": 0,
                    "description": "Every read of the batch with device_seq up to this is durably stored, or \
                        listed in `refused` (null for an empty batch)" },
                "stored": { "type": "integer", "minimum": 0, "description": "Reads stored now" },
                "flagged": { "type": "integer", "minimum": 0, "description": "Of those, reads flagged for a clerk" },
                "already_received": { "type": "integer", "minimum": 0,
                    "description": "Reads stored before, proven the same: not stored again" },
                "refused": { "type": "array", "items": { "$ref": "#/components/schemas/RefusedRead" } },
                "held_seq": { "type": "integer", "format": "int64", "minimum": 0,
                    "description": "The highest device_seq the gateway holds from this state" },
                "batch_conflict": { "type": ["string", "null"],
                    "description": "Never in an HTTP answer (a reused batch id is a 409)" } } }))
    }
}

impl ToSchema for UploadReceipt {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((RefusedRead::name().into_owned(), RefusedRead::schema()));
    }
}

/// Every schema the document names, each with the schemas it refers to.
fn schemas() -> Value {
    let mut all: Vec<(String, RefOr<Schema>)> = Vec::new();
    fn add<T: ToSchema>(all: &mut Vec<(String, RefOr<Schema>)>) {
        T::schemas(all);
        all.push((T::name().into_owned(), T::schema()));
    }
    use crate::sync::api::{
        CodesJson, HelloJson, ReceiptJson, RoutesJson, UploadJson, WelcomeJson,
    };
    add::<UploadJson>(&mut all);
    add::<ReceiptJson>(&mut all);
    add::<HelloJson>(&mut all);
    add::<WelcomeJson>(&mut all);
    add::<RoutesJson>(&mut all);
    add::<CodesJson>(&mut all);
    add::<super::device_api::DocksJson>(&mut all);
    add::<super::error::ErrorJson>(&mut all);
    let map: serde_json::Map<String, Value> = all
        .into_iter()
        .map(|(name, schema)| (name, serde_json::to_value(schema).unwrap_or(Value::Null)))
        .collect();
    Value::Object(map)
}

pub async fn serve_document(_who: AnyCredential) -> Json<Value> {
    Json(document())
}

fn error_response(description: &str) -> Value {
    json!({ "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorJson" } } } })
}

/// The usual refusals of an authenticated endpoint.
fn refusals() -> Value {
    json!({
        "401": error_response("No credential, or an invalid one"),
        "403": error_response("The credential's role may not do this"),
    })
}

fn with_refusals(mut responses: Value) -> Value {
    if let (Some(r), Value::Object(extra)) = (responses.as_object_mut(), refusals()) {
        r.extend(extra);
    }
    responses
}

fn json_ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn html_ok(description: &str) -> Value {
    json!({ "description": description, "content": { "text/html": { "schema": { "type": "string" } } } })
}

/// Who may call a clerk page: any signed-in clerk or admin (approving a large leak credit, one action
/// of a read's form, is refused to clerks by the handler).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Desk {
    Clerk,
}

fn session(desk: Desk) -> Value {
    match desk {
        Desk::Clerk => json!([{ "session": [] }]),
    }
}

fn clerk_page(summary: &str, desk: Desk, params: Value) -> Value {
    json!({
        "summary": summary, "tags": ["clerk pages"], "security": session(desk), "parameters": params,
        "responses": with_refusals(json!({
            "200": html_ok("The page"),
            "303": { "description": "Not signed in (browser): to /login" },
            "400": error_response("A path or query value is malformed or out of range"),
            "404": error_response("No such record"),
            "422": { "description": "A query value refused (paperwork): the page again, the message beside it",
                "content": { "text/html": { "schema": { "type": "string" } } } },
        })),
    })
}

fn clerk_form(summary: &str, desk: Desk, params: Value, fields: &[&str]) -> Value {
    let mut props = serde_json::Map::new();
    props.insert(
        "csrf".into(),
        json!({ "type": "string", "description": "The session's CSRF token" }),
    );
    for f in fields {
        props.insert((*f).into(), json!({ "type": "string" }));
    }
    json!({
        "summary": summary, "tags": ["clerk pages"], "security": session(desk), "parameters": params,
        "requestBody": { "required": true, "content": { "application/x-www-form-urlencoded": {
            "schema": { "type": "object", "required": ["csrf"], "properties": props } } } },
        "responses": with_refusals(json!({
            "303": { "description": "Done: back to a page (after a decision on a read: the next read of the list)" },
            "400": error_response("The form is refused (the message says why)"),
            "422": { "description": "Refused: the page again, the message beside the field, what was typed kept",
                "content": { "text/html": { "schema": { "type": "string" } } } },
            "404": error_response("No such record or action"),
            "409": error_response("The record changed or the action does not apply any more"),
            "413": error_response("The form is larger than a clerk's form can be"),
            "415": error_response("The body is not a form (Content-Type application/x-www-form-urlencoded)"),
        })),
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description,
            "schema": { "type": "string" } })
}

fn query_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description,
            "schema": { "type": "string" } })
}

/// The clerk pages (`crate::review`) and the billing export (`crate::billing`).
fn desk_paths() -> Value {
    let cycle = path_param("cycle", "Cycle id, e.g. 2026-10");
    let read = path_param("id", "Read id");
    let notices = [
        query_param("done", "Notice shown after an action"),
        query_param("error", "Error shown after an action"),
    ];
    json!({
        "/review": { "get": clerk_page("The clerk's desk: open cycles and their exceptions", Desk::Clerk, json!([])) },
        "/review/cycles/{cycle}": { "get": clerk_page("A cycle's worklist: search, filters, sort, pages", Desk::Clerk, json!([
            cycle, query_param("q", "Search: account, name, address, meter or read id (every read of the cycle)"),
            query_param("route", "Only this route"), query_param("flag", "Only this flag"),
            query_param("confirmed", "Only reads the reader confirmed"), query_param("show", "Which reads to list"),
            query_param("sort", "Column to sort by"), query_param("dir", "asc or desc"), query_param("page", "Page number"),
            notices[0], notices[1]])) },
        "/review/cycles/{cycle}/exceptions.csv": { "get": {
            "summary": "The worklist (filtered, sorted, every page) as CSV", "tags": ["clerk pages"],
            "security": session(Desk::Clerk), "parameters": [cycle, query_param("q", "Search"),
                query_param("route", "Only this route"), query_param("flag", "Only this flag"), query_param("show", "Which reads")],
            "responses": with_refusals(json!({
                "200": { "description": "CSV", "content": { "text/csv": { "schema": { "type": "string" } } } },
                "400": error_response("A path or query value is malformed or out of range"),
                "404": error_response("No such cycle"),
            })) } },
        "/review/cycles/{cycle}/print": { "get": clerk_page("The worklist per route, to print", Desk::Clerk,
            json!([cycle, query_param("route", "Only this route"), query_param("flag", "Only this flag")])) },
        "/review/reads/{id}": { "get": clerk_page("One read: where it stands in the list, flags, decisions, history, last 13 reads",
            Desk::Clerk, json!([read, query_param("q", "The list's search"), query_param("route", "The list's route"),
                query_param("flag", "The list's flag"), query_param("show", "The list's status"),
                query_param("sort", "The list's order"), notices[0], notices[1]])) },
        "/review/reads/{id}/{action}": { "post": clerk_form(
            "Act on a read; then the next read of the list opens", Desk::Clerk,
            json!([read, path_param("action", "accept | hold | correct | estimate | reread | leak | approve_leak (admin) | reopen | assign | void")]),
            &["reason", "reading", "instructions", "repair_proof", "meter_id", "decision"]) },
        "/review/paperwork": { "get": clerk_page("Paperwork: door hangers, notices, shut-off lists, in/out tags", Desk::Clerk, json!([])) },
        "/review/paperwork/notices": { "get": clerk_page("Door hangers or 48-hour notices to print", Desk::Clerk,
            json!([query_param("kind", "door_hanger or notice"), query_param("accounts", "Account ids"),
                query_param("amount", "Amount due"), query_param("date", "Pay by / shut off on, YYYY-MM-DD")])) },
        "/review/paperwork/shut-offs": { "get": clerk_page("The shut-off list of a route in walk order", Desk::Clerk,
            json!([query_param("route", "Only this route")])) },
        "/review/paperwork/tags": {
            "get": clerk_page("An in or out tag to print", Desk::Clerk,
                json!([query_param("kind", "in or out"), query_param("account", "Account id")])),
            "post": clerk_form("Record a tag back from the field: its reading enters history", Desk::Clerk, json!([]),
                &["kind", "account", "reading", "on"]),
        },
        "/review/codes": {
            "get": clerk_page("Message codes", Desk::Clerk, json!([notices[0], notices[1]])),
            "post": clerk_form("Add a message code", Desk::Clerk, json!([]),
                &["code", "category", "description", "requires_follow_up", "op"]),
        },
        "/review/codes/{code}": { "post": clerk_form("Edit or retire a message code", Desk::Clerk,
            json!([path_param("code", "Message code")]),
            &["code", "category", "description", "requires_follow_up", "op"]) },
        "/review/orders": {
            "get": clerk_page("Field orders", Desk::Clerk, json!([
                query_param("status", "Only orders in this status"), query_param("account", "Only this account"),
                notices[0], notices[1]])),
            "post": clerk_form("Create a field order", Desk::Clerk, json!([]),
                &["kind", "account_id", "meter_id", "instructions", "note", "final_reading"]),
        },
        "/review/orders/{id}/{action}": { "post": clerk_form("Act on a field order (send, complete, cancel)",
            Desk::Clerk, json!([path_param("id", "Order id"), path_param("action", "What to do")]),
            &["kind", "account_id", "meter_id", "instructions", "note", "final_reading"]) },
        "/review/handhelds": { "get": clerk_page(
            "Handhelds: their states (a new one is a wiped or replaced unit) and the reads refused, with what was sent",
            Desk::Clerk, json!([query_param("device", "Only this handheld")])) },
        "/review/handhelds/refused.csv": { "get": {
            "summary": "Refused reads as CSV", "tags": ["clerk pages"], "security": session(Desk::Clerk),
            "parameters": [query_param("device", "Only this handheld")],
            "responses": with_refusals(json!({
                "200": { "description": "CSV", "content": { "text/csv": { "schema": { "type": "string" } } } },
                "400": error_response("A path or query value is malformed or out of range"),
            })) } },
        "/review/reports": { "get": clerk_page("Reports: choose a cycle", Desk::Clerk, json!([])) },
        "/review/reports/{cycle}": { "get": clerk_page("A cycle's reports", Desk::Clerk,
            json!([cycle, query_param("month", "Month shown, YYYY-MM")])) },
        "/review/reports/{cycle}/{file}": { "get": {
            "summary": "A cycle's report as CSV", "tags": ["clerk pages"], "security": session(Desk::Clerk),
            "parameters": [cycle, path_param("file", "Report file name"), query_param("month", "Month, YYYY-MM")],
            "responses": with_refusals(json!({
                "200": { "description": "CSV", "content": { "text/csv": { "schema": { "type": "string" } } } },
                "400": error_response("A path or query value is malformed or out of range"),
                "404": error_response("No such report"),
            })) } },
        "/api/v1/cycles/{id}/billing": { "get": {
            "summary": "A closed cycle's billing batch (billing role)", "tags": ["billing"],
            "security": [{ "billingToken": [] }],
            "parameters": [path_param("id", "Cycle id"), query_param("format", "jsonl (default) or csv"),
                { "name": "version", "in": "query", "required": false, "schema": { "type": "integer" },
                  "description": "Batch version (default: the latest)" }],
            "responses": with_refusals(json!({
                "200": { "description": "The batch", "content": {
                    "application/x-ndjson": { "schema": { "type": "string" } },
                    "text/csv": { "schema": { "type": "string" } } } },
                "400": error_response("Unknown format"),
                "404": error_response("No such cycle, cycle never closed, or no such version"),
            })) } },
    })
}

/// The document.
pub fn document() -> Value {
    let mut doc = own_document();
    if let (Some(paths), Value::Object(more)) = (doc["paths"].as_object_mut(), desk_paths()) {
        paths.extend(more);
    }
    if let (Some(paths), Value::Object(more)) =
        (doc["paths"].as_object_mut(), crate::field::openapi_paths())
    {
        paths.extend(more);
    }
    doc
}

fn own_document() -> Value {
    let device_security = json!([{ "deviceToken": [] }]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "meter-gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The meter-reading office's gateway: handheld sync over HTTP, clerk pages, \
                billing handoff. Times are district local time (ISO 8601, no offset).",
        },
        "components": {
            "securitySchemes": {
                "session": { "type": "apiKey", "in": "cookie", "name": super::auth::SESSION_COOKIE,
                    "description": "Clerk or admin session from POST /login" },
                "billingToken": { "type": "http", "scheme": "bearer",
                    "description": "A billing user's API token (`meter-gateway user add NAME --role billing`)" },
                "deviceToken": { "type": "http", "scheme": "bearer",
                    "description": "A handheld's token DEVICE.SECRET (`meter-gateway device add ID`)" },
            },
            "schemas": schemas(),
        },
        "paths": {
            "/": { "get": { "summary": "The front door (no credential; shows nothing): to the exception queue \
                with a session, to the sign-in page without", "tags": ["sign-in"], "security": [],
                "responses": { "307": { "description": "To /review (signed in) or /login" } } } },
            "/healthz": { "get": { "summary": "Liveness (no credential)", "tags": ["daemon"], "security": [],
                "responses": { "200": { "description": "ok",
                    "content": { "text/plain": { "schema": { "type": "string" } } } } } } },
            "/api/v1/openapi.json": { "get": { "summary": "This document (any credential)", "tags": ["daemon"],
                "security": [{ "session": [] }, { "billingToken": [] }, { "deviceToken": [] }],
                "responses": with_refusals(json!({ "200": json_ok("OpenAPI 3.1", json!({ "type": "object" })) })) } },
            "/login": {
                "get": { "summary": "Sign-in page (no credential)", "tags": ["sign-in"], "security": [],
                    "parameters": [{ "name": "next", "in": "query", "required": false,
                        "schema": { "type": "string" }, "description": "Local path to go to after sign-in" }],
                    "responses": { "200": html_ok("The form, with a CSRF token (also set as a cookie)") } },
                "post": { "summary": "Sign in (no credential; rate-limited per user and per client)",
                    "tags": ["sign-in"], "security": [],
                    "requestBody": { "required": true, "content": { "application/x-www-form-urlencoded": {
                        "schema": { "type": "object", "required": ["name", "password", "csrf"], "properties": {
                            "name": { "type": "string" }, "password": { "type": "string" },
                            "csrf": { "type": "string" }, "next": { "type": "string" } } } } } },
                    "responses": {
                        "303": { "description": "Signed in: session cookie set, to `next` (a local path), \
                            else to the exception queue /review" },
                        "400": error_response("The body is not a sign-in form, or a field holds a refused character"),
                        "401": html_ok("Wrong name or password: the form again"),
                        "403": { "description": "The form's CSRF token is not its cookie's: the form again, saying \
                            so (or, with an Origin of another site, refused as JSON)", "content": {
                            "text/html": { "schema": { "type": "string" } },
                            "application/json": { "schema": { "$ref": "#/components/schemas/ErrorJson" } } } },
                        "413": error_response("The body is too large"),
                        "429": { "description": "Not checked: this name from this address is in its backoff, or \
                            is being checked, or too many checks are running; the form again, saying when to try \
                            (also in Retry-After)", "headers": { "Retry-After": { "schema": { "type": "integer" } } },
                            "content": { "text/html": { "schema": { "type": "string" } } } },
                    } },
            },
            "/logout": { "post": clerk_form("Sign out", Desk::Clerk, json!([]), &[]) },
            "/api/v1/device/hello": { "post": {
                "summary": "A handheld says who it is (its state id) and learns what the gateway holds from it",
                "tags": ["device"], "security": device_security.clone(),
                "requestBody": { "required": true, "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/HelloJson" } } } },
                "responses": with_refusals(json!({
                    "200": json_ok("Where the handheld stands", json!({ "$ref": "#/components/schemas/WelcomeJson" })),
                    "400": error_response("No or malformed state id (a protocol-1 client)"),
                })) } },
            "/api/v1/device/route": { "get": {
                "summary": "The routes assigned to this handheld (the next unread route when none is)",
                "tags": ["device"], "security": device_security.clone(),
                "responses": with_refusals(json!({
                    "200": json_ok("Route files", json!({ "$ref": "#/components/schemas/RoutesJson" })),
                })) } },
            "/api/v1/device/reads": { "post": {
                "summary": "Upload a batch of reads; answered after the durable commit",
                "tags": ["device"], "security": device_security.clone(),
                "requestBody": { "required": true, "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/UploadJson" } } } },
                "responses": with_refusals(json!({
                    "200": json_ok("Receipt", json!({ "$ref": "#/components/schemas/ReceiptJson" })),
                    "400": error_response("Malformed batch or read, or no state id (a protocol-1 client)"),
                    "409": { "description": "The batch id was used before for other reads (code \
                        batch_conflict: send them under a new batch id), or no open cycle takes these reads",
                        "content": { "application/json": { "schema": {
                            "$ref": "#/components/schemas/ErrorJson" } } } },
                    "413": error_response("Body over 4 MiB or more than 10,000 reads"),
                })) } },
            "/api/v1/device/codes": { "get": {
                "summary": "The message codes handhelds carry", "tags": ["device"],
                "security": device_security,
                "responses": with_refusals(json!({
                    "200": json_ok("Codes", json!({ "$ref": "#/components/schemas/CodesJson" })),
                })) } },
            "/api/v1/docks": { "get": {
                "summary": "Live status of the serial docks (clerk or admin)", "tags": ["daemon"],
                "security": [{ "session": [] }],
                "responses": with_refusals(json!({
                    "200": json_ok("Docks", json!({ "$ref": "#/components/schemas/DocksJson" })),
                })) } },
        },
    })
}

/// Every `(METHOD, path)` the document describes.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    out.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    /// `(METHOD, path)` of every `.route("PATH", get(..).post(..))` in the crate's source.
    fn routes_in_source() -> BTreeSet<(String, String)> {
        fn walk(dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(std::fs::read_to_string(&p).unwrap());
                }
            }
        }
        let mut sources = Vec::new();
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut sources,
        );
        let mut found = BTreeSet::new();
        for src in &sources {
            // Test modules build their own small routers.
            let src = src.split("#[cfg(test)]").next().unwrap_or_default();
            assert!(
                !src.contains(".nest("),
                "routers nest: teach this test to prefix nested paths"
            );
            for chunk in src.split(".route(").skip(1) {
                let Some(rest) = chunk.trim_start().strip_prefix('"') else {
                    continue;
                };
                let Some((path, rest)) = rest.split_once('"') else {
                    continue;
                };
                // The handlers of this route: up to the next route or the end of the builder chain.
                let body = rest.split(".route(").next().unwrap_or_default();
                let body = body.split(";\n").next().unwrap_or_default();
                for method in ["get", "post", "put", "patch", "delete"] {
                    let calls = body.match_indices(&format!("{method}(")).any(|(i, _)| {
                        i == 0
                            || !body.as_bytes()[i - 1].is_ascii_alphanumeric()
                                && body.as_bytes()[i - 1] != b'_'
                    });
                    if calls {
                        found.insert((method.to_ascii_uppercase(), path.to_string()));
                    }
                }
            }
        }
        found
    }

    #[test]
    fn every_route_in_the_source_is_described() {
        let described: BTreeSet<_> = operations(&document()).into_iter().collect();
        let routes = routes_in_source();
        assert!(
            routes.contains(&("POST".into(), "/api/v1/device/reads".into())),
            "{routes:?}"
        );
        let missing: Vec<_> = routes.difference(&described).collect();
        assert!(
            missing.is_empty(),
            "routes missing from openapi.rs: {missing:?}"
        );
    }

    /// The two schemas written by hand name exactly the fields their types serialize.
    #[test]
    fn the_hand_written_schemas_match_what_their_types_serialize() {
        let refused = serde_json::to_value(RefusedRead {
            device_seq: 1,
            reason: "bad_time".into(),
            detail: "x".into(),
        })
        .unwrap();
        let dock = serde_json::to_value(DockStatus::default()).unwrap();
        let receipt = serde_json::to_value(UploadReceipt {
            up_to_seq: Some(3),
            stored: 1,
            flagged: 0,
            already_received: 0,
            refused: Vec::new(),
            held_seq: 3,
            batch_conflict: Some("x".into()),
        })
        .unwrap();
        for (value, schema) in [
            (
                refused,
                serde_json::to_value(RefusedRead::schema()).unwrap(),
            ),
            (dock, serde_json::to_value(DockStatus::schema()).unwrap()),
            (
                receipt,
                serde_json::to_value(UploadReceipt::schema()).unwrap(),
            ),
        ] {
            let fields: BTreeSet<&String> = value.as_object().unwrap().keys().collect();
            let described: BTreeSet<&String> =
                schema["properties"].as_object().unwrap().keys().collect();
            assert_eq!(fields, described, "{schema}");
        }
    }

    /// Times are district local time without an offset: never `date-time`, which requires one.
    #[test]
    fn local_times_are_described_by_their_pattern_not_as_date_time() {
        let doc = document();
        let text = doc.to_string();
        assert!(!text.contains("\"format\":\"date-time\""), "{text}");
        let read = &doc["components"]["schemas"]["ReadJson"];
        assert_eq!(read["properties"]["read_time"]["type"], "string", "{read}");
        assert!(read["properties"]["read_time"]["pattern"]
            .as_str()
            .unwrap()
            .contains("T[0-9]{2}"));
        assert_eq!(read["additionalProperties"], false, "{read}");
        let upload = &doc["components"]["schemas"]["UploadJson"];
        assert!(upload["required"]
            .as_array()
            .unwrap()
            .contains(&json!("state_id")));
        // Every reference resolves.
        for name in text
            .split("#/components/schemas/")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap())
        {
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{name} is referred to but not described"
            );
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_operation_says_who_may_call_it() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        for (method, path) in operations(&doc) {
            let op = &doc["paths"][&path][method.to_ascii_lowercase()];
            assert!(
                op.get("security").is_some(),
                "{method} {path} has no security"
            );
            assert!(
                op.get("responses").is_some(),
                "{method} {path} has no responses"
            );
        }
    }
}
