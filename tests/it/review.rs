//! Integration tests: the clerk's desk over HTTP (`serve::router` driven with `oneshot`): every action,
//! every role refusal, the audit log, re-reads in route files, corrections re-validated, leak credits,
//! message codes, field orders, reports.

use crate::fixture::{district, field_read, now, sql, District, CYCLE};
use crate::web::form_body;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use meter_gateway::billing;
use meter_gateway::config::Config;
use meter_gateway::cycles;
use meter_gateway::domain::ReadType;
use meter_gateway::domain::UserRole;
use meter_gateway::serve::{
    self, billing_token_for_tests, device_token_for_tests, sign_in_session_for_tests,
};
use rust_decimal::Decimal;
use std::str::FromStr;
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    location: String,
    content_type: String,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let h = |n: header::HeaderName| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (location, content_type) = (h(header::LOCATION), h(header::CONTENT_TYPE));
    let bytes = axum::body::to_bytes(r.into_body(), 16 << 20).await.unwrap();
    Reply {
        status,
        location,
        content_type,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

struct Desk {
    d: District,
    app: Router,
    cookie: String,
    csrf: String,
}

impl Desk {
    async fn new(role: UserRole) -> Desk {
        let d = district();
        let app = serve::router(d.state.clone());
        let (cookie, csrf) = sign_in_session_for_tests(&d.state, "ann", role).await;
        Desk {
            d,
            app,
            cookie,
            csrf,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        let req = Request::get(path)
            .header(header::COOKIE, &self.cookie)
            .header(header::ACCEPT, "text/html")
            .body(Body::empty())
            .unwrap();
        send(&self.app, req).await
    }

    /// Posts a form with the session's CSRF token.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &form_body(&all)).await
    }

    async fn post_raw(&self, path: &str, body: &str) -> Reply {
        let req = Request::post(path)
            .header(header::COOKIE, &self.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.to_string()))
            .unwrap();
        send(&self.app, req).await
    }

    fn status_of(&self, read: i64) -> String {
        sql(&self.d)
            .query_row(
                "SELECT status FROM field_reads WHERE read_id = ?1",
                [read],
                |r| r.get(0),
            )
            .unwrap()
    }

    fn count(&self, query: &str) -> i64 {
        sql(&self.d).query_row(query, [], |r| r.get(0)).unwrap()
    }

    fn audit_actions(
        &self,
        entity: &str,
        id: &str,
    ) -> Vec<(String, String, Option<String>, Option<String>)> {
        let c = sql(&self.d);
        let mut stmt = c
            .prepare("SELECT actor, action, before, after FROM audit_log WHERE entity = ?1 AND entity_id = ?2 ORDER BY audit_id")
            .unwrap();
        let rows = stmt
            .query_map([entity, id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    async fn route_file_orders(&self, route: &str) -> Vec<(i64, String)> {
        let route = route.to_string();
        self.d
            .state
            .db
            .call(move |s| cycles::route_file(s, &Config::default(), CYCLE, &route).unwrap())
            .await
            .unwrap()
            .stops
            .iter()
            .flat_map(|s| s.field_orders.iter().map(|o| (o.order_id, o.kind.clone())))
            .collect()
    }

    /// Orders a re-read of `read` from its page; returns the order's id.
    async fn order_reread(&self, read: i64, instructions: &str) -> i64 {
        let r = self
            .post(
                &format!("/review/reads/{read}/reread"),
                &[("instructions", instructions)],
            )
            .await;
        assert!(done(&r), "{}", r.location);
        sql(&self.d)
            .query_row(
                "SELECT order_id FROM field_orders WHERE kind = 'reread' AND read_id = ?1",
                [read],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// `original`'s page says it was replaced by `result`, and the store agrees.
    async fn assert_folded(&self, original: i64, result: i64) {
        let page = self.get(&format!("/review/reads/{original}")).await;
        assert!(
            page.body
                .contains(&format!("replaced by <a href=\"/review/reads/{result}\"")),
            "folded back"
        );
        let superseded: i64 = sql(&self.d)
            .query_row(
                "SELECT superseded_by FROM field_reads WHERE read_id = ?1",
                [original],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(superseded, result);
    }

    /// A handheld re-reads M1 (`last[0] + delta`) and names re-read `order` in its upload, through the
    /// sync engine. Returns the stored read's id.
    async fn handheld_reread(&self, order: i64, delta: u64) -> i64 {
        use firmware_protocol::message as msg;
        let at = now() - chrono::Duration::hours(1);
        let read = msg::Read {
            device_seq: 1,
            meter_id: "M1".into(),
            reading: self.d.last[0] + delta,
            read_time: meter_gateway::sync::protocol_time(at),
            read_type: msg::ReadType::Regular,
            method: msg::ReadMethod::Keyed,
            message_codes: Vec::new(),
            skip_code: None,
            note: None,
            reader_id: "pat".into(),
            order: Some(msg::OrderCompletion {
                order_id: order as u64,
                new_meter_id: None,
                new_meter_initial: None,
            }),
        };
        let sync = meter_gateway::sync::SyncService::new(
            self.d.state.db.clone(),
            std::sync::Arc::new(Config::default()),
        );
        sql(&self.d)
            .execute(
                "INSERT OR IGNORE INTO devices (device_id, secret_sha256, registered_at) VALUES ('HH-01', '', ?1)",
                [at.format("%Y-%m-%dT%H:%M:%S").to_string()],
            )
            .unwrap();
        let from = meter_gateway::sync::Uploader {
            device_id: "HH-01",
            state_id: 1,
            via: meter_gateway::sync::Via::Serial,
        };
        let receipt = sync.upload(from, None, vec![read], at).await.unwrap();
        assert_eq!(receipt.stored + receipt.already_received, 1);
        sql(&self.d)
            .query_row(
                "SELECT coalesce((SELECT read_id FROM field_reads WHERE device_id = 'HH-01' AND device_seq = 1), \
                 (SELECT read_id FROM field_orders WHERE order_id = ?1))",
                [order],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// The reader re-reads M1 at the next dock, an hour ago (what sync does): `last[0] + delta`.
    async fn reread_m1(&self, delta: u64) -> Vec<cycles::ReadOutcome> {
        let at = now() - chrono::Duration::hours(1);
        let reading = (self.d.last[0] + delta).to_string();
        self.d
            .state
            .db
            .call(move |s| {
                let read = field_read("M1", at, &reading, ReadType::Regular, "pat");
                cycles::ingest(s, &Config::default(), CYCLE, &[read], at).unwrap()
            })
            .await
            .unwrap()
    }
}

fn done(r: &Reply) -> bool {
    r.status == StatusCode::SEE_OTHER
        && r.location.contains("done=")
        && !r.location.contains("error=")
}

/// Refused with the reason shown on the page again (422), the message beside the form.
fn refused_with_notice(r: &Reply) -> bool {
    r.status == StatusCode::UNPROCESSABLE_ENTITY && r.body.contains("role=\"alert\"")
}

/// Whether a page links to read `id` (the link may carry the clerk's list after `?`).
fn links_to(body: &str, id: i64) -> bool {
    body.contains(&format!("href=\"/review/reads/{id}\""))
        || body.contains(&format!("href=\"/review/reads/{id}?"))
}

// ---- who may do what ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_without_a_session_is_sent_to_sign_in_and_a_post_is_refused() {
    let desk = Desk::new(UserRole::Clerk).await;
    for path in [
        "/review",
        &format!("/review/reads/{}", desk.d.high),
        "/review/orders",
        "/review/codes",
    ] {
        let req = Request::get(path)
            .header(header::ACCEPT, "text/html")
            .body(Body::empty())
            .unwrap();
        let r = send(&desk.app, req).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            r.location.starts_with("/login?next="),
            "{path}: {}",
            r.location
        );
        let req = Request::get(path).body(Body::empty()).unwrap();
        assert_eq!(
            send(&desk.app, req).await.status,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    let req = Request::post(format!("/review/reads/{}/accept", desk.d.high))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("csrf=x"))
        .unwrap();
    assert_eq!(send(&desk.app, req).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(desk.status_of(desk.d.high), "flagged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_and_billing_tokens_do_not_open_the_clerk_pages() {
    let desk = Desk::new(UserRole::Clerk).await;
    let device = device_token_for_tests(&desk.d.state, "HH-01").await;
    let billing = billing_token_for_tests(&desk.d.state, "cis").await;
    for token in [device, billing] {
        for (method, path) in [
            (Method::GET, format!("/review/cycles/{CYCLE}")),
            (
                Method::GET,
                format!("/review/reports/{CYCLE}/completion.csv"),
            ),
            (
                Method::POST,
                format!("/review/reads/{}/accept", desk.d.high),
            ),
        ] {
            let req = Request::builder()
                .method(method.clone())
                .uri(&path)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("csrf="))
                .unwrap();
            let s = send(&desk.app, req).await.status;
            assert!(
                matches!(s, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                "{method} {path}: {s}"
            );
        }
    }
    assert_eq!(desk.status_of(desk.d.high), "flagged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clerk_manages_message_codes_picking_the_category_from_a_list() {
    let desk = Desk::new(UserRole::Clerk).await;
    let page = desk.get("/review/codes").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Leak seen"));
    assert!(
        page.body.contains("<select name=\"category\"")
            && !page.body.contains("name=\"category\" value="),
        "the category is a pick-list"
    );
    // A category that is not on the list is refused beside the field, with what was typed kept.
    let r = desk
        .post(
            "/review/codes",
            &[
                ("code", "XY"),
                ("category", "stuff"),
                ("description", "Lid broken"),
            ],
        )
        .await;
    assert!(refused_with_notice(&r));
    assert!(
        r.body.contains("id=\"err-new-category\""),
        "message beside the field"
    );
    assert!(
        r.body.contains("value=\"Lid broken\""),
        "what was typed is kept"
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM message_codes WHERE code = 'XY'"),
        0
    );
    let r = desk
        .post(
            "/review/codes",
            &[
                ("code", "XY"),
                ("category", "trouble"),
                ("description", "Lid broken"),
            ],
        )
        .await;
    assert!(done(&r), "{}", r.location);
    assert_eq!(desk.audit_actions("message_code", "XY")[0].0, "ann");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_without_the_sessions_csrf_token_is_refused_and_changes_nothing() {
    let desk = Desk::new(UserRole::Admin).await;
    let high = desk.d.high;
    for path in [
        format!("/review/reads/{high}/accept"),
        format!("/review/reads/{high}/hold"),
        format!("/review/reads/{high}/correct"),
        format!("/review/reads/{high}/estimate"),
        format!("/review/reads/{high}/reread"),
        format!("/review/reads/{high}/leak"),
        "/review/codes".to_string(),
        "/review/codes/LK".to_string(),
        "/review/orders".to_string(),
    ] {
        for body in [
            "reason=x&reading=5012",
            "csrf=not-the-token&reason=x&reading=5012",
        ] {
            let r = desk.post_raw(&path, body).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} {body}");
        }
    }
    assert_eq!(desk.status_of(high), "flagged");
    assert_eq!(desk.count("SELECT count(*) FROM audit_log"), 0);
    assert_eq!(desk.count("SELECT count(*) FROM field_orders"), 0);
}

// ---- the queue and the detail page --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_lists_exceptions_by_bill_impact_with_counts_and_filters() {
    let desk = Desk::new(UserRole::Clerk).await;
    let home = desk.get("/review").await;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(home.location, format!("/review/cycles/{CYCLE}"));
    let q = desk.get(&home.location).await;
    assert_eq!(q.status, StatusCode::OK);
    let (high, miskey) = (desk.d.high, desk.d.miskey);
    let pos = |id: i64| {
        q.body
            .find(&format!("href=\"/review/reads/{id}"))
            .unwrap_or(usize::MAX)
    };
    assert!(
        pos(high) < pos(miskey),
        "the high read (a known bill impact) comes first"
    );
    assert!(!links_to(&q.body, desk.d.normal));
    assert!(
        q.body.contains("<span class=\"flag\">high</span> 1"),
        "counts per flag"
    );
    assert!(q.body.contains("O'Brien &lt;script&gt;"), "escaped name");
    assert!(q.body.contains("keydown"), "j/k script");
    let only_r02 = desk.get(&format!("/review/cycles/{CYCLE}?route=R02")).await;
    assert!(!links_to(&only_r02.body, high));
    assert!(links_to(&only_r02.body, miskey));
    let confirmed = desk
        .get(&format!("/review/cycles/{CYCLE}?confirmed=yes"))
        .await;
    assert!(links_to(&confirmed.body, high));
    assert!(!links_to(&confirmed.body, miskey));
    assert_eq!(
        desk.get("/review/cycles/nope").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detail_page_explains_the_flags_draws_the_history_and_escapes_every_value() {
    let desk = Desk::new(UserRole::Clerk).await;
    let r = desk.get(&format!("/review/reads/{}", desk.d.high)).await;
    assert_eq!(r.status, StatusCode::OK);
    let b = &r.body;
    assert!(
        b.contains("O'Brien &lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped name"
    );
    assert!(!b.contains("<script>alert(1)"));
    assert!(b.contains("<svg id=\"history-chart\""));
    let bars = b.matches("<rect class=\"bar").count();
    assert!((24..=37).contains(&bars), "{bars} bars");
    assert_eq!(b.matches("class=\"bar current\"").count(), 1);
    assert!(b.contains("class=\"band\""), "expected range band");
    assert!(b.contains("<span class=\"flag\">high</span> (quality 3.6.3)"));
    assert!(
        b.contains("Leak seen (trouble)"),
        "the reader's code explained"
    );
    assert!(b.contains("water running in yard"));
    assert!(b.contains("Likely bill impact"));
    // 60 HCF on the default tariff: 28.50 + 6×5.12 + 9×6.87 + 45×9.45 = 546.30.
    assert!(b.contains("$546.30"), "bill at this read's use");
    assert_eq!(
        desk.get("/review/reads/999999").await.status,
        StatusCode::NOT_FOUND
    );
}

// ---- actions ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_a_read_resolves_it_and_writes_the_audit_log_and_review_actions() {
    let desk = Desk::new(UserRole::Clerk).await;
    let high = desk.d.high;
    let r = desk
        .post(
            &format!("/review/reads/{high}/accept"),
            &[("reason", "customer confirmed a leak")],
        )
        .await;
    assert!(done(&r), "{} {}", r.status, r.location);
    assert_eq!(desk.status_of(high), "resolved");
    let audit = desk.audit_actions("read", &high.to_string());
    assert_eq!(audit.len(), 1);
    let (actor, action, before, after) = &audit[0];
    assert_eq!((actor.as_str(), action.as_str()), ("ann", "accept"));
    assert!(before
        .as_deref()
        .unwrap()
        .contains("\"status\":\"flagged\""));
    assert!(after
        .as_deref()
        .unwrap()
        .contains("\"status\":\"resolved\""));
    assert_eq!(
        desk.count(&format!(
            "SELECT count(*) FROM review_actions WHERE read_id = {high} AND action = 'accept'"
        )),
        1
    );
    // Accepting twice is refused with a reason shown on the page.
    let again = desk
        .post(&format!("/review/reads/{high}/accept"), &[])
        .await;
    assert!(refused_with_notice(&again), "{}", again.status);
    assert!(
        again
            .body
            .contains("is resolved; accept needs a read that is flagged or held"),
        "{}",
        &again.body[again.body.find("<main>").unwrap_or(0)..][..1500.min(again.body.len())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holding_a_read_needs_a_reason_and_keeps_it_out_of_billing() {
    let desk = Desk::new(UserRole::Clerk).await;
    let high = desk.d.high;
    assert!(refused_with_notice(
        &desk.post(&format!("/review/reads/{high}/hold"), &[]).await
    ));
    assert_eq!(desk.status_of(high), "flagged");
    let r = desk
        .post(
            &format!("/review/reads/{high}/hold"),
            &[("reason", "calling the customer")],
        )
        .await;
    assert!(done(&r));
    assert_eq!(desk.status_of(high), "held");
    assert_eq!(desk.audit_actions("read", &high.to_string())[0].1, "hold");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_is_revalidated_and_supersedes_the_mis_keyed_read() {
    let desk = Desk::new(UserRole::Clerk).await;
    let (miskey, last) = (desk.d.miskey, desk.d.last[2]);
    // Without a reason, nothing happens.
    let r = desk
        .post(
            &format!("/review/reads/{miskey}/correct"),
            &[("reading", &(last + 8).to_string())],
        )
        .await;
    assert!(refused_with_notice(&r));
    // A correction to a normal reading passes validation.
    let r = desk
        .post(
            &format!("/review/reads/{miskey}/correct"),
            &[
                ("reading", &(last + 8).to_string()),
                ("reason", "digits transposed"),
            ],
        )
        .await;
    assert!(done(&r), "{}", r.location);
    let (new, status, consumption, superseded): (i64, String, i64, i64) = sql(&desk.d)
        .query_row(
            "SELECT n.read_id, n.status, n.consumption, o.superseded_by FROM field_reads o JOIN field_reads n ON n.read_id = o.superseded_by WHERE o.read_id = ?1",
            [miskey],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(superseded, new);
    assert_eq!(
        (status.as_str(), consumption),
        ("accepted", 8),
        "re-validated, no duplicate flag"
    );
    // Re-validated as accepted: the next read of the list opens (save and next), saying what happened.
    assert!(
        r.location.contains(&format!(
            "new%20read%20{new}%20re-validated%20as%20accepted"
        )),
        "{}",
        r.location
    );
    assert!(!r.location.starts_with(&format!("/review/reads/{miskey}")));
    assert_eq!(
        desk.audit_actions("read", &miskey.to_string())[0].1,
        "correct"
    );
    // The replaced read takes no more actions.
    let again = desk
        .post(&format!("/review/reads/{miskey}/accept"), &[])
        .await;
    assert!(refused_with_notice(&again));

    // A correction that is still far too high is flagged again by the same rules.
    let high = desk.d.high;
    let r = desk
        .post(
            &format!("/review/reads/{high}/correct"),
            &[
                ("reading", &(desk.d.last[0] + 90).to_string()),
                ("reason", "re-keyed"),
            ],
        )
        .await;
    assert!(done(&r));
    let flags: String = sql(&desk.d)
        .query_row(
            "SELECT group_concat(f.flag) FROM field_reads o JOIN flags f ON f.read_id = o.superseded_by WHERE o.read_id = ?1",
            [high],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(flags, "high");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reading_validation_thinks_was_meant_is_one_click_away() {
    let desk = Desk::new(UserRole::Clerk).await;
    let (miskey, last) = (desk.d.miskey, desk.d.last[2]);
    let page = desk.get(&format!("/review/reads/{miskey}")).await;
    assert!(
        !page.body.contains("id=\"correct-intended\""),
        "no suggestion yet"
    );
    // As validation stores it when one slip explains the keyed reading (cycles tests prove that).
    let meant = last + 8;
    sql(&desk.d)
        .execute(
            "UPDATE field_reads SET intended_reading = ?1 WHERE read_id = ?2",
            rusqlite::params![meant as i64, miskey],
        )
        .unwrap();
    let page = desk.get(&format!("/review/reads/{miskey}")).await;
    assert!(
        page.body
            .contains(&format!("Correct to {meant} and re-validate")),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&format!(
            "<input type=\"hidden\" name=\"reading\" value=\"{meant}\">"
        )),
        "{}",
        page.body
    );
    // The button posts the reading and a reason: one click corrects and re-validates.
    let r = desk
        .post(
            &format!("/review/reads/{miskey}/correct"),
            &[
                ("reading", &meant.to_string()),
                (
                    "reason",
                    &format!("likely mis-key of {meant}, as validation suggested"),
                ),
            ],
        )
        .await;
    assert!(done(&r), "{}", r.location);
    let status: String = sql(&desk.d)
        .query_row(
            "SELECT n.status FROM field_reads o JOIN field_reads n ON n.read_id = o.superseded_by WHERE o.read_id = ?1",
            [miskey],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_estimate_replaces_the_read_and_records_its_method() {
    let desk = Desk::new(UserRole::Clerk).await;
    let miskey = desk.d.miskey;
    let page = desk.get(&format!("/review/reads/{miskey}")).await;
    assert!(
        page.body.contains("Estimate: reading"),
        "the method is shown before estimating"
    );
    let r = desk
        .post(
            &format!("/review/reads/{miskey}/estimate"),
            &[("reason", "meter unreadable")],
        )
        .await;
    assert!(done(&r), "{}", r.location);
    let (status, method, consumption, note): (String, String, i64, String) = sql(&desk.d)
        .query_row(
            "SELECT n.status, n.method, n.consumption, n.note FROM field_reads o JOIN field_reads n ON n.read_id = o.superseded_by WHERE o.read_id = ?1",
            [miskey],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(status, "estimated");
    assert_eq!(method, "estimated");
    assert!(
        (6..=10).contains(&consumption),
        "about 8 HCF a month, got {consumption}"
    );
    assert!(note.contains("estimated by ann"), "{note}");
    let after = desk.audit_actions("read", &miskey.to_string());
    assert!(after[0].3.as_deref().unwrap().contains("method"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reread_goes_down_in_the_route_file_and_its_result_comes_back_into_the_read() {
    let desk = Desk::new(UserRole::Clerk).await;
    let high = desk.d.high;
    let order = desk.order_reread(high, "check for leak at hose bib").await;
    assert!(desk
        .route_file_orders("R01")
        .await
        .contains(&(order, "reread".to_string())));
    assert!(desk.route_file_orders("R02").await.is_empty());
    assert_eq!(
        desk.audit_actions("field_order", &order.to_string())[0].1,
        "create"
    );
    // A second re-read of the same read while one is on order is refused.
    assert!(refused_with_notice(
        &desk
            .post(&format!("/review/reads/{high}/reread"), &[])
            .await
    ));

    // The reader re-reads at the next dock (what sync does): a new read, and the order completed.
    let out = desk.reread_m1(13).await;
    let result_read = out[0].read_id;
    assert_eq!(
        out[0]
            .flags()
            .iter()
            .map(|f| f.kind.as_str())
            .collect::<Vec<_>>(),
        ["duplicate"]
    );
    // The paper comes back to the office: completing the order folds the meter's new read into the
    // read it was ordered for, there and then (no page view needed).
    assert!(done(
        &desk
            .post(
                &format!("/review/orders/{order}/complete"),
                &[("note", "re-read 13 HCF")]
            )
            .await
    ));
    assert_eq!(desk.count("SELECT count(*) FROM reread_results"), 1);
    desk.assert_folded(high, result_read).await;
    assert_eq!(
        desk.status_of(result_read),
        "accepted",
        "the duplicate flag went with the original"
    );
    // Pages only read: looking again folds nothing more.
    let audits = desk.count("SELECT count(*) FROM audit_log");
    desk.get(&format!("/review/cycles/{CYCLE}")).await;
    desk.get(&format!("/review/reads/{high}")).await;
    assert_eq!(desk.count("SELECT count(*) FROM reread_results"), 1);
    assert_eq!(desk.count("SELECT count(*) FROM audit_log"), audits);
}

/// The same, through the sync engine: the handheld's read names the order it completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reread_completed_by_a_handheld_folds_back_into_the_read() {
    let desk = Desk::new(UserRole::Clerk).await;
    let high = desk.d.high;
    let order = desk.order_reread(high, "").await;
    let result_read = desk.handheld_reread(order, 13).await;
    desk.assert_folded(high, result_read).await;
}

// ---- leak credits -----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_credit_is_computed_exactly_recorded_for_billing_and_refused_a_second_time() {
    let desk = Desk::new(UserRole::Clerk).await;
    let high = desk.d.high;
    // Normal use for the period pinned to 12 HCF so the figures below are the policy's, not the model's.
    sql(&desk.d)
        .execute(
            "UPDATE field_reads SET expected_use = 12.0 WHERE read_id = ?1",
            [high],
        )
        .unwrap();
    // A flagged read is accepted first.
    let early = desk
        .post(
            &format!("/review/reads/{high}/leak"),
            &[("repair_proof", "invoice")],
        )
        .await;
    assert!(refused_with_notice(&early));
    assert!(done(
        &desk
            .post(
                &format!("/review/reads/{high}/accept"),
                &[("reason", "leak")]
            )
            .await
    ));
    let page = desk.get(&format!("/review/reads/{high}")).await;
    // bill(60) = 546.30, bill(12) = 28.50 + 30.72 + 6×6.87 = 100.44; excess cost 445.86; 50% = 222.93.
    assert!(
        page.body.contains("Use above normal: 60 − 12 = 48 HCF."),
        "steps shown: {}",
        &page.body[page.body.find("<h2>Leak adjustment</h2>").unwrap_or(0)..]
    );
    assert!(page.body.contains("$445.86"));
    assert!(page.body.contains("Proof of repair: required"));
    // Proof of repair is required.
    assert!(refused_with_notice(
        &desk.post(&format!("/review/reads/{high}/leak"), &[]).await
    ));
    let r = desk
        .post(
            &format!("/review/reads/{high}/leak"),
            &[("repair_proof", "plumber invoice #88")],
        )
        .await;
    assert!(done(&r), "{}", r.location);
    let adj = billing::adjustments_of_account(&sql(&desk.d), "A1").unwrap();
    assert_eq!(adj.len(), 1);
    assert_eq!(adj[0].1.amount, Decimal::from_str("-222.93").unwrap());
    assert_eq!(adj[0].1.read_id, Some(high));
    assert_eq!(desk.audit_actions("account", "A1")[0].1, "leak_credit");
    // Within 12 months: refused, nothing more recorded.
    let again = desk
        .post(
            &format!("/review/reads/{high}/leak"),
            &[("repair_proof", "another")],
        )
        .await;
    assert!(refused_with_notice(&again), "{}", again.status);
    assert!(
        again.body.contains("already granted"),
        "refused: already granted"
    );
    assert_eq!(desk.count("SELECT count(*) FROM leak_credits"), 1);
    assert_eq!(desk.count("SELECT count(*) FROM adjustments"), 1);
}

// ---- message codes and field orders -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_edits_and_retires_codes_and_handhelds_get_them_at_the_next_dock() {
    let desk = Desk::new(UserRole::Admin).await;
    let codes = |d: &Desk| {
        let path = d.d.path.clone();
        let store = meter_gateway::store::Store::open(&path).unwrap();
        cycles::route_file(&store, &Config::default(), CYCLE, "R01")
            .unwrap()
            .message_codes
            .into_iter()
            .map(|c| (c.code, c.description))
            .collect::<Vec<_>>()
    };
    let r = desk
        .post(
            "/review/codes",
            &[
                ("code", "bx"),
                ("category", "Trouble"),
                ("description", "Box needs cleaning"),
                ("requires_follow_up", "on"),
            ],
        )
        .await;
    assert!(done(&r), "{}", r.location);
    assert!(codes(&desk).contains(&("BX".into(), "Box needs cleaning".into())));
    assert!(refused_with_notice(
        &desk
            .post(
                "/review/codes",
                &[("code", "BX"), ("category", "note"), ("description", "dup")]
            )
            .await
    ));
    assert!(refused_with_notice(
        &desk
            .post(
                "/review/codes",
                &[
                    ("code", "TOOLONG"),
                    ("category", "note"),
                    ("description", "x")
                ]
            )
            .await
    ));
    let r = desk
        .post(
            "/review/codes/BX",
            &[
                ("op", "edit"),
                ("category", "trouble"),
                ("description", "Box full of dirt"),
            ],
        )
        .await;
    assert!(done(&r));
    assert!(codes(&desk).contains(&("BX".into(), "Box full of dirt".into())));
    assert!(done(
        &desk.post("/review/codes/BX", &[("op", "retire")]).await
    ));
    assert!(!codes(&desk).iter().any(|(c, _)| c == "BX"));
    let trail: Vec<String> = desk
        .audit_actions("message_code", "BX")
        .into_iter()
        .map(|a| a.1)
        .collect();
    assert_eq!(trail, ["create", "edit", "retire"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_orders_are_created_listed_carried_in_route_files_and_completed() {
    let desk = Desk::new(UserRole::Clerk).await;
    let r = desk
        .post(
            "/review/orders",
            &[
                ("kind", "door_hanger"),
                ("account_id", "A2"),
                ("instructions", "48-hour notice"),
            ],
        )
        .await;
    assert!(done(&r), "{}", r.location);
    let r = desk
        .post(
            "/review/orders",
            &[("kind", "shut_off"), ("account_id", "A2")],
        )
        .await;
    assert!(done(&r));
    assert!(refused_with_notice(
        &desk
            .post(
                "/review/orders",
                &[("kind", "teleport"), ("account_id", "A2")]
            )
            .await
    ));
    assert!(refused_with_notice(
        &desk
            .post(
                "/review/orders",
                &[("kind", "turn_on"), ("account_id", "NOPE")]
            )
            .await
    ));
    let kinds: Vec<String> = desk
        .route_file_orders("R01")
        .await
        .into_iter()
        .map(|o| o.1)
        .collect();
    assert_eq!(kinds, ["door_hanger", "shut_off"]);
    let list = desk.get("/review/orders").await;
    assert!(
        list.body.contains("Door hanger / 48-hour notice") && list.body.contains("48-hour notice")
    );
    let shut: i64 = sql(&desk.d)
        .query_row(
            "SELECT order_id FROM field_orders WHERE kind = 'shut_off'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(done(
        &desk
            .post(
                &format!("/review/orders/{shut}/complete"),
                &[("note", "valve locked")]
            )
            .await
    ));
    let status: String = sql(&desk.d)
        .query_row(
            "SELECT status FROM accounts WHERE account_id = 'A2'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        status, "inactive",
        "shut off for non-payment: no use expected"
    );
    assert_eq!(
        desk.route_file_orders("R01").await.len(),
        1,
        "completed orders are not sent again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_change_moves_the_meters_and_the_cycles_use_spans_both() {
    let desk = Desk::new(UserRole::Clerk).await;
    assert!(done(
        &desk
            .post(
                "/review/orders",
                &[("kind", "meter_change"), ("account_id", "A2")]
            )
            .await
    ));
    let order: i64 = sql(&desk.d)
        .query_row(
            "SELECT order_id FROM field_orders WHERE kind = 'meter_change'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // Changed the day of the cycle's read, after it (the crew's final reading is 4 HCF past it).
    let change_day = desk.d.read_day;
    let last = desk.d.last[1];
    // The new meter must come from the inventory.
    let bad = desk
        .post(
            &format!("/review/orders/{order}/complete"),
            &[
                ("final_reading", &(last + 4).to_string()),
                ("new_meter_id", "M3"),
                ("initial_reading", "0"),
                ("on", &change_day.to_string()),
            ],
        )
        .await;
    assert!(refused_with_notice(&bad));
    let r = desk
        .post(
            &format!("/review/orders/{order}/complete"),
            &[
                ("final_reading", &(last + 14).to_string()),
                ("new_meter_id", "M9"),
                ("initial_reading", "10"),
                ("on", &change_day.to_string()),
            ],
        )
        .await;
    assert!(done(&r), "{}", r.location);
    let meters: Vec<(String, String, Option<String>)> = {
        let c = sql(&desk.d);
        let mut s = c.prepare("SELECT meter_id, status, account_id FROM meters WHERE meter_id IN ('M2', 'M9') ORDER BY meter_id").unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        meters,
        [
            ("M2".into(), "inventory".into(), None),
            ("M9".into(), "active".into(), Some("A2".into()))
        ]
    );
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM history WHERE account_id = 'A2' AND kind IN ('final', 'initial')"
        ),
        2
    );
    // The change's judging basis is written again at once: the new meter has one, the old one none.
    assert_eq!(
        desk.count("SELECT count(*) FROM judging_basis WHERE meter_id = 'M9'"),
        1
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM judging_basis WHERE meter_id = 'M2'"),
        0
    );
    // The new meter's read (judged from that basis): 6 on it plus 14 on the old one.
    let at = now() - chrono::Duration::hours(1);
    let out = desk
        .d
        .state
        .db
        .call(move |s| {
            cycles::ingest(
                s,
                &Config::default(),
                CYCLE,
                &[field_read("M9", at, "16", ReadType::Regular, "pat")],
                at,
            )
            .unwrap()
        })
        .await
        .unwrap();
    let consumption: i64 = sql(&desk.d)
        .query_row(
            "SELECT consumption FROM field_reads WHERE read_id = ?1",
            [out[0].read_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(consumption, 20);
    assert_eq!(desk.audit_actions("meter", "M9")[0].1, "meter_change");
}

// ---- reports ------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reports_are_shown_and_downloadable_as_csv() {
    let desk = Desk::new(UserRole::Clerk).await;
    let page = desk.get(&format!("/review/reports/{CYCLE}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Route completion") && page.body.contains("Reader productivity"));
    let csv = |name: &str| format!("/review/reports/{CYCLE}/{name}.csv");
    let r = desk.get(&csv("completion")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type.starts_with("text/csv"));
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(
        lines[0],
        "route,expected,read,missing,flagged_or_held,resolved,percent_complete"
    );
    assert_eq!(lines[1], "R01,2,2,0,1,0,100");
    assert_eq!(lines[2], "R02,1,1,0,1,0,100");
    let p = desk.get(&csv("productivity")).await.body;
    let lines: Vec<&str> = p.lines().collect();
    assert_eq!(
        lines[0],
        "reader,reads,skips,exceptions,days,hours,reads_per_hour"
    );
    // pat: two reads 90 minutes apart, one exception; lee: one read, no time span.
    assert_eq!(lines[1], "lee,1,0,1,1,0,");
    assert_eq!(lines[2], "pat,2,0,1,1,1.50,1.3");
    let e = desk.get(&csv("exceptions")).await.body;
    assert!(e.lines().any(|l| l == "high,1,1,0,0"), "{e}");
    assert!(e.lines().any(|l| l == "negative,1,1,0,0"), "{e}");
    // Starts and stops: a shut-off completed this month counts as a stop on its route.
    assert!(done(
        &desk
            .post(
                "/review/orders",
                &[("kind", "shut_off"), ("account_id", "A3")]
            )
            .await
    ));
    let id: i64 = sql(&desk.d)
        .query_row("SELECT order_id FROM field_orders", [], |r| r.get(0))
        .unwrap();
    assert!(done(
        &desk
            .post(&format!("/review/orders/{id}/complete"), &[])
            .await
    ));
    let month = now().format("%Y-%m").to_string();
    let a = desk
        .get(&format!("{}?month={month}", csv("accounts")))
        .await
        .body;
    assert_eq!(
        a.lines().collect::<Vec<_>>(),
        ["route,started,stopped", "R01,0,0", "R02,0,1"]
    );
    assert_eq!(
        desk.get(&csv("nonsense")).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reread_that_finds_the_same_reading_leaves_the_read_confirmed_for_the_clerk() {
    let desk = Desk::new(UserRole::Clerk).await;
    let high = desk.d.high;
    assert!(done(
        &desk
            .post(&format!("/review/reads/{high}/reread"), &[])
            .await
    ));
    let order: i64 = sql(&desk.d)
        .query_row(
            "SELECT order_id FROM field_orders WHERE read_id = ?1",
            [high],
            |r| r.get(0),
        )
        .unwrap();
    // The handheld reads the same value and names the order: the same read, confirmed.
    desk.handheld_reread(order, 60).await;
    let page = desk.get(&format!("/review/reads/{high}")).await;
    assert!(page
        .body
        .contains("found the same reading: it stands, confirmed"));
    assert_eq!(desk.status_of(high), "flagged", "the clerk still decides");
    // The handheld's read is kept (its time, reader, codes), behind the read it confirms.
    assert_eq!(
        desk.count(&format!(
            "SELECT count(*) FROM field_reads WHERE superseded_by = {high} AND device_id IS NOT NULL"
        )),
        1
    );
    assert_eq!(
        desk.count(&format!(
            "SELECT count(*) FROM field_reads WHERE superseded_by IS NOT NULL AND read_id = {high}"
        )),
        0,
        "the read it confirms stays the meter's read"
    );
}

// ---- the worklist ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worklist_searches_the_whole_cycle_sorts_by_any_column_and_keeps_its_filters() {
    let desk = Desk::new(UserRole::Clerk).await;
    let (high, miskey, normal) = (desk.d.high, desk.d.miskey, desk.d.normal);
    let list = |q: &str| format!("/review/cycles/{CYCLE}?{q}");
    // Search finds accepted reads too (Nguyen's normal read is no exception), by name and by meter.
    for q in ["q=nguyen", "q=M2", &format!("q={normal}")] {
        let r = desk.get(&list(q)).await;
        assert!(links_to(&r.body, normal), "{q}");
        assert!(!links_to(&r.body, high), "{q}");
    }
    let by_address = desk.get(&list("q=ocean%20ave")).await;
    assert!(links_to(&by_address.body, high) && links_to(&by_address.body, normal));
    // Any column sorts, both ways.
    let pos = |body: &str, id: i64| body.find(&format!("href=\"/review/reads/{id}")).unwrap();
    let asc = desk.get(&list("sort=account&dir=asc")).await.body;
    assert!(pos(&asc, high) < pos(&asc, miskey));
    let desc = desk.get(&list("sort=account&dir=desc")).await.body;
    assert!(pos(&desc, miskey) < pos(&desc, high));
    assert!(desc.contains("Account ▼"));
    // The filters stay put: links to reads and the per-flag counts carry the route.
    let r02 = desk.get(&list("route=R02")).await.body;
    assert!(r02.contains(&format!("href=\"/review/reads/{miskey}?route=R02\"")));
    assert!(
        r02.contains("?route=R02&amp;flag=negative"),
        "counts keep the route"
    );
    // Flags in words.
    assert!(r02.contains("<span class=\"flag\">negative</span>"));
    // Money one way.
    let all = desk.get(&list("")).await.body;
    assert!(all.contains("data-label=\"Impact\">$"), "impact in dollars");
    assert!(!all.contains("+$"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worklist_pages_on_the_server() {
    let desk = Desk::new(UserRole::Clerk).await;
    // 60 more flagged reads: unknown meters' reads are exceptions too.
    let at = now() - chrono::Duration::hours(2);
    desk.d
        .state
        .db
        .call(move |s| {
            let reads: Vec<_> = (0..60)
                .map(|i| field_read(&format!("X{i:02}"), at, "100", ReadType::Regular, "pat"))
                .collect();
            cycles::ingest(s, &Config::default(), CYCLE, &reads, at).unwrap()
        })
        .await
        .unwrap();
    let first = desk
        .get(&format!("/review/cycles/{CYCLE}?show=open"))
        .await
        .body;
    assert_eq!(first.matches("<tr><td data-label=\"Read\">").count(), 50);
    assert!(first.contains("Page <strong>1</strong> of 2"));
    let second = desk
        .get(&format!("/review/cycles/{CYCLE}?show=open&page=2"))
        .await
        .body;
    assert_eq!(second.matches("<tr><td data-label=\"Read\">").count(), 12);
    let csv = desk
        .get(&format!("/review/cycles/{CYCLE}/exceptions.csv"))
        .await;
    assert!(csv.content_type.starts_with("text/csv"));
    assert_eq!(csv.body.lines().count(), 63, "every page, with a header");
    assert!(csv
        .body
        .lines()
        .next()
        .unwrap()
        .starts_with("read_id,route,account"));
    let print = desk
        .get(&format!("/review/cycles/{CYCLE}/print"))
        .await
        .body;
    assert!(print.contains("Route R01 — high/low exceptions") && print.contains("Route R02"));
    assert!(print.contains("@media print"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_and_next_opens_the_next_read_of_the_list_after_each_decision() {
    let desk = Desk::new(UserRole::Clerk).await;
    let (high, miskey) = (desk.d.high, desk.d.miskey);
    // The list by impact: the high read first, then the mis-key. Its page links to the next.
    let page = desk
        .get(&format!("/review/reads/{high}?show=open"))
        .await
        .body;
    assert!(page.contains(&format!(
        "id=\"next-read\" rel=\"next\" href=\"/review/reads/{miskey}?show=open\""
    )));
    assert!(page.contains("1 of 2"));
    // The decision controls come before the history (beside the flags, not screens below).
    assert!(page.find("Accept and next").unwrap() < page.find("<h2>History</h2>").unwrap());
    let r = desk
        .post(
            &format!("/review/reads/{high}/accept?show=open"),
            &[("reason", "leak confirmed by phone")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.location
            .starts_with(&format!("/review/reads/{miskey}?show=open&done=")),
        "{}",
        r.location
    );
    let next = desk.get(&r.location).await.body;
    assert!(next.contains(&format!("Read {high} accepted.")));
    assert!(next.contains("1 of 1"), "the accepted read left the list");
    // At the end of the list, back to the list, its filters kept.
    let r = desk
        .post(
            &format!("/review/reads/{miskey}/hold?show=open"),
            &[("reason", "calling the customer")],
        )
        .await;
    assert!(
        r.location
            .starts_with(&format!("/review/cycles/{CYCLE}?show=open&done=")),
        "{}",
        r.location
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_page_tells_the_story_and_errors_are_pages_for_browsers() {
    let desk = Desk::new(UserRole::Clerk).await;
    let page = desk
        .get(&format!("/review/reads/{}", desk.d.miskey))
        .await
        .body;
    let table = &page[page.find("id=\"last-reads\"").expect("last reads table")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr><td>").count(), 13, "the last 13 reads");
    assert!(
        page.contains(&format!("{} on ", desk.d.last[2])),
        "previous reading with its date"
    );
    // A browser asking for a missing read gets a page; the API keeps JSON.
    let r = desk.get("/review/reads/999999").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.content_type.starts_with("text/html"),
        "{}",
        r.content_type
    );
    assert!(r.body.contains("no read 999999"));
    let req = Request::get("/review/reads/999999")
        .header(header::COOKIE, &desk.cookie)
        .body(Body::empty())
        .unwrap();
    assert!(send(&desk.app, req)
        .await
        .content_type
        .starts_with("application/json"));
}

// ---- guardrails -----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_must_fit_the_meters_dials_and_a_refusal_keeps_what_was_typed() {
    let desk = Desk::new(UserRole::Clerk).await;
    let miskey = desk.d.miskey;
    let reads = desk.count("SELECT count(*) FROM field_reads");
    let r = desk
        .post(
            &format!("/review/reads/{miskey}/correct"),
            &[
                ("reading", "123456789012"),
                ("reason", "re-keyed from the photo"),
            ],
        )
        .await;
    assert!(refused_with_notice(&r));
    assert!(r
        .body
        .contains("123456789012 does not fit meter M3: it has 5 dials (at most 99999)"));
    assert!(
        r.body.contains("id=\"err-correct-reading\""),
        "beside the field"
    );
    assert!(
        r.body.contains("value=\"re-keyed from the photo\""),
        "what was typed is kept"
    );
    assert_eq!(desk.status_of(miskey), "flagged");
    assert_eq!(
        desk.count("SELECT count(*) FROM field_reads"),
        reads,
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_a_read_with_a_large_bill_impact_needs_a_reason() {
    let desk = Desk::new(UserRole::Clerk).await;
    let high = desk.d.high;
    let r = desk
        .post(&format!("/review/reads/{high}/accept"), &[])
        .await;
    assert!(refused_with_notice(&r));
    assert!(r.body.contains("this read changes the bill by $"));
    assert!(r
        .body
        .contains("(more than $100.00): say why it is accepted"));
    assert!(
        r.body.contains("id=\"err-accept-reason\""),
        "beside the reason"
    );
    assert_eq!(desk.status_of(high), "flagged");
    assert!(done(
        &desk
            .post(
                &format!("/review/reads/{high}/accept"),
                &[("reason", "pool filled")]
            )
            .await
    ));
}

async fn meter_change_order(desk: &Desk) -> i64 {
    assert!(done(
        &desk
            .post(
                "/review/orders",
                &[("kind", "meter_change"), ("account_id", "A2")]
            )
            .await
    ));
    sql(&desk.d)
        .query_row(
            "SELECT order_id FROM field_orders WHERE kind = 'meter_change'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_change_is_refused_outside_the_window_before_the_last_read_or_below_it() {
    let desk = Desk::new(UserRole::Clerk).await;
    let order = meter_change_order(&desk).await;
    let (read_day, last_read) = (desk.d.read_day, desk.d.last[1] + 10);
    let tomorrow = (now().date() + chrono::Duration::days(1)).to_string();
    let cases: [(String, u64, &str); 4] = [
        (
            "2020-01-01".into(),
            last_read + 5,
            "is outside cycle C-1's read window",
        ),
        (tomorrow, last_read + 5, "is in the future"),
        (
            (read_day - chrono::Duration::days(1)).to_string(),
            last_read + 5,
            "is before meter M2's last actual read",
        ),
        (
            read_day.to_string(),
            2_160,
            "is below meter M2's last actual reading",
        ),
    ];
    for (on, final_reading, message) in cases {
        let r = desk
            .post(
                &format!("/review/orders/{order}/complete"),
                &[
                    ("final_reading", &final_reading.to_string()),
                    ("new_meter_id", "M9"),
                    ("initial_reading", "0"),
                    ("on", &on),
                ],
            )
            .await;
        assert!(refused_with_notice(&r), "{on}");
        assert!(r.body.contains(message), "{on}: {message}");
        assert!(
            r.body.contains(&format!("value=\"{on}\"")),
            "the date typed is kept"
        );
    }
    // Nothing half-written: the meters, history and order are as they were.
    assert_eq!(
        desk.count("SELECT count(*) FROM meters WHERE meter_id = 'M9' AND status = 'inventory'"),
        1
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM history WHERE kind IN ('final', 'initial')"),
        0
    );
    assert_eq!(
        desk.count(&format!(
            "SELECT count(*) FROM field_orders WHERE order_id = {order} AND status = 'open'"
        )),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_leak_credit_is_capped_and_waits_for_a_second_approver() {
    let desk = Desk::new(UserRole::Clerk).await;
    let high = desk.d.high;
    // 600 HCF against a normal 1 HCF (an obvious mis-key): the credit is capped at the policy's $1,000.
    sql(&desk.d)
        .execute(
            "UPDATE field_reads SET expected_use = 1.0, consumption = 600 WHERE read_id = ?1",
            [high],
        )
        .unwrap();
    assert!(done(
        &desk
            .post(
                &format!("/review/reads/{high}/accept"),
                &[("reason", "leak")]
            )
            .await
    ));
    let page = desk.get(&format!("/review/reads/{high}")).await.body;
    assert!(page.contains("Capped at $1000.00"), "the cap is a step");
    assert!(page.contains("Grant the leak credit of $1,000.00"));
    let r = desk
        .post(
            &format!("/review/reads/{high}/leak"),
            &[("repair_proof", "plumber invoice")],
        )
        .await;
    assert!(done(&r), "{}", r.location);
    assert!(
        r.location.contains("waits%20for%20an%20admin"),
        "{}",
        r.location
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM adjustments"),
        0,
        "nothing to billing yet"
    );
    let page = desk.get(&format!("/review/reads/{high}")).await.body;
    assert!(page.contains("id=\"leak-pending\""));
    // The clerk may not approve; an admin (another person) does.
    let r = desk
        .post(
            &format!("/review/reads/{high}/approve_leak"),
            &[("decision", "approve")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (cookie, csrf) = sign_in_session_for_tests(&desk.d.state, "boss", UserRole::Admin).await;
    let admin = Desk {
        d: district_of(&desk),
        app: desk.app.clone(),
        cookie,
        csrf,
    };
    let r = admin
        .post(
            &format!("/review/reads/{high}/approve_leak"),
            &[("decision", "approve")],
        )
        .await;
    assert!(done(&r), "{}", r.location);
    let adj = billing::adjustments_of_account(&sql(&desk.d), "A1").unwrap();
    assert_eq!(adj.len(), 1);
    assert_eq!(adj[0].1.amount, Decimal::from_str("-1000.00").unwrap());
    assert!(adj[0].1.note.contains("approved by boss"));
    // After granting, the page says it was granted.
    let page = desk.get(&format!("/review/reads/{high}")).await.body;
    assert!(page.contains("id=\"leak-granted\""), "granted");
    assert!(page.contains("Leak credit of $1,000.00 granted by ann, approved by boss"));
    assert!(!page.contains("refused"));
}

/// A second handle on the same district (for a second user's session).
fn district_of(desk: &Desk) -> District {
    District {
        _dir: tempfile::tempdir().unwrap(),
        path: desk.d.path.clone(),
        state: desk.d.state.clone(),
        read_day: desk.d.read_day,
        high: desk.d.high,
        normal: desk.d.normal,
        miskey: desk.d.miskey,
        last: desk.d.last,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_can_be_reopened_until_the_cycle_closes_and_it_is_audited() {
    let desk = Desk::new(UserRole::Clerk).await;
    let (high, miskey, last) = (desk.d.high, desk.d.miskey, desk.d.last[2]);
    assert!(done(
        &desk
            .post(
                &format!("/review/reads/{high}/accept"),
                &[("reason", "leak")]
            )
            .await
    ));
    assert!(refused_with_notice(
        &desk
            .post(&format!("/review/reads/{high}/reopen"), &[])
            .await
    ));
    let r = desk
        .post(
            &format!("/review/reads/{high}/reopen"),
            &[("reason", "customer called back")],
        )
        .await;
    assert!(done(&r), "{}", r.location);
    assert_eq!(desk.status_of(high), "flagged");
    let trail: Vec<String> = desk
        .audit_actions("read", &high.to_string())
        .into_iter()
        .map(|a| a.1)
        .collect();
    assert_eq!(trail, ["accept", "reopen"]);
    // A correction is withdrawn: the mis-keyed read is current and to review again.
    assert!(done(
        &desk
            .post(
                &format!("/review/reads/{miskey}/correct"),
                &[
                    ("reading", &(last + 8).to_string()),
                    ("reason", "digits transposed")
                ],
            )
            .await
    ));
    let new: i64 = sql(&desk.d)
        .query_row(
            "SELECT superseded_by FROM field_reads WHERE read_id = ?1",
            [miskey],
            |r| r.get(0),
        )
        .unwrap();
    let r = desk
        .post(
            &format!("/review/reads/{new}/reopen"),
            &[("reason", "wrong digits")],
        )
        .await;
    assert!(
        r.location.starts_with(&format!("/review/reads/{miskey}")),
        "{}",
        r.location
    );
    assert_eq!(desk.status_of(miskey), "flagged");
    let (orig_sup, new_sup): (Option<i64>, Option<i64>) = sql(&desk.d)
        .query_row(
            "SELECT (SELECT superseded_by FROM field_reads WHERE read_id = ?1), (SELECT superseded_by FROM field_reads WHERE read_id = ?2)",
            [miskey, new],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((orig_sup, new_sup), (None, Some(miskey)));
    // Once the cycle is closed, nothing reopens.
    assert!(done(
        &desk
            .post(&format!("/review/reads/{high}/hold"), &[("reason", "x")])
            .await
    ));
    assert!(done(
        &desk
            .post(&format!("/review/reads/{miskey}/hold"), &[("reason", "x")])
            .await
    ));
    desk.d
        .state
        .db
        .call(|s| billing::close_cycle(s, &Config::default(), CYCLE, &[], now()).map(|_| ()))
        .await
        .unwrap()
        .unwrap();
    let r = desk
        .post(
            &format!("/review/reads/{high}/reopen"),
            &[("reason", "late")],
        )
        .await;
    assert!(refused_with_notice(&r));
    assert!(r.body.contains("is closed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_one_of_two_readings_of_a_meter_resolves_the_pair() {
    let desk = Desk::new(UserRole::Clerk).await;
    let high = desk.d.high;
    let dup = desk.reread_m1(13).await[0].read_id;
    assert_ne!(dup, high);
    let page = desk.get(&format!("/review/reads/{dup}")).await.body;
    assert!(page.contains("id=\"duplicate-of\""));
    assert!(
        links_to(&page, high),
        "the duplicate links to the read it duplicates"
    );
    assert!(done(
        &desk
            .post(
                &format!("/review/reads/{dup}/accept"),
                &[("reason", "the re-key is right")]
            )
            .await
    ));
    assert_eq!(desk.status_of(dup), "resolved");
    let sup: Option<i64> = sql(&desk.d)
        .query_row(
            "SELECT superseded_by FROM field_reads WHERE read_id = ?1",
            [high],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        sup,
        Some(dup),
        "the other reading is set aside in the same decision"
    );
    assert_eq!(
        desk.audit_actions("read", &high.to_string())[0].1,
        "duplicate_resolved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_no_account_owns_is_assigned_or_voided_and_close_says_how() {
    let desk = Desk::new(UserRole::Clerk).await;
    let at = now() - chrono::Duration::hours(1);
    let ids = desk
        .d
        .state
        .db
        .call(move |s| {
            let reads = [
                field_read("M9", at, "3010", ReadType::Regular, "pat"),
                field_read("ZZ1", at, "77", ReadType::Regular, "pat"),
            ];
            cycles::ingest(s, &Config::default(), CYCLE, &reads, at).unwrap()
        })
        .await
        .unwrap();
    let (orphan, unknown) = (ids[0].read_id, ids[1].read_id);
    // Close names them and says how to resolve them.
    for id in [desk.d.high, desk.d.miskey] {
        assert!(done(
            &desk
                .post(&format!("/review/reads/{id}/hold"), &[("reason", "x")])
                .await
        ));
    }
    let err = desk
        .d
        .state
        .db
        .call(|s| billing::close_cycle(s, &Config::default(), CYCLE, &[], now()).map(|_| ()))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("assign it to the right meter, or void it"),
        "{err}"
    );
    assert!(err.contains(&format!("/review/reads/{orphan}")), "{err}");
    let page = desk.get(&format!("/review/reads/{orphan}")).await.body;
    assert!(page.contains("Assign to a meter") && page.contains("Void the read"));
    // Void needs a reason; an unknown meter is refused beside the field.
    assert!(refused_with_notice(
        &desk
            .post(&format!("/review/reads/{unknown}/void"), &[])
            .await
    ));
    let r = desk
        .post(
            &format!("/review/reads/{orphan}/assign"),
            &[("meter_id", "NOPE")],
        )
        .await;
    assert!(r.body.contains("id=\"err-assign-meter_id\""));
    assert!(done(
        &desk
            .post(
                &format!("/review/reads/{unknown}/void"),
                &[("reason", "not our meter")]
            )
            .await
    ));
    let r = desk
        .post(
            &format!("/review/reads/{orphan}/assign"),
            &[
                ("meter_id", "M2"),
                ("reason", "numbers swapped on the paper"),
            ],
        )
        .await;
    assert!(done(&r), "{}", r.location);
    let new: i64 = sql(&desk.d)
        .query_row(
            "SELECT superseded_by FROM field_reads WHERE read_id = ?1",
            [orphan],
            |r| r.get(0),
        )
        .unwrap();
    let (meter, account): (String, String) = sql(&desk.d)
        .query_row(
            "SELECT meter_id, account_id FROM field_reads WHERE read_id = ?1",
            [new],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((meter.as_str(), account.as_str()), ("M2", "A2"));
    assert_eq!(
        desk.audit_actions("read", &orphan.to_string())[0].1,
        "assign"
    );
}

// ---- paperwork ----------------------------------------------------------------------------------------

/// The clerk's "today" is the district's: a desk in Los Angeles on New Year's Eve at 23:30, when the
/// server's clock (read as a fixed UTC instant; the host's `TZ` does not matter) is already in 2027.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_counts_its_shut_off_date_from_the_districts_today_not_the_hosts() {
    use chrono::TimeZone;
    use meter_gateway::clock::FixedClock;
    use std::sync::Arc;
    let mut d = district();
    let mut config = (*d.state.config).clone();
    config.district.time_zone = "America/Los_Angeles".parse().unwrap();
    // 2026-12-31T23:30 Pacific (PST, UTC-8) = 2027-01-01T07:30Z.
    let instant = chrono::Utc.with_ymd_and_hms(2027, 1, 1, 7, 30, 0).unwrap();
    d.state = serve::AppState::new(d.state.db.clone(), Arc::new(config))
        .with_clock(Arc::new(FixedClock::new(instant)));
    let app = serve::router(d.state.clone());
    let (cookie, csrf) = sign_in_session_for_tests(&d.state, "ann", UserRole::Clerk).await;
    let desk = Desk {
        d,
        app,
        cookie,
        csrf,
    };
    // Blank date: today + `shut_off_after_days` (2) in the district, not in UTC.
    let notice = desk
        .get("/review/paperwork/notices?kind=notice&accounts=A1&amount=80")
        .await;
    assert_eq!(notice.status, StatusCode::OK, "{}", notice.body);
    assert!(
        notice.body.contains("Saturday, January 2, 2027"),
        "{}",
        notice.body
    );
    assert!(!notice.body.contains("January 3, 2027"));
    // The district's today is still 2026-12-31: not a date that has passed.
    let today = desk
        .get("/review/paperwork/notices?kind=notice&accounts=A1&amount=80&date=2026-12-31")
        .await;
    assert_eq!(today.status, StatusCode::OK, "{}", today.body);
    assert!(today.body.contains("Thursday, December 31, 2026"));
    let past = desk
        .get("/review/paperwork/notices?kind=notice&accounts=A1&amount=80&date=2026-12-30")
        .await;
    assert!(refused_with_notice(&past));
    assert!(past.body.contains("2026-12-30 has passed"), "{}", past.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn door_hangers_notices_shut_off_lists_and_tags_print_and_a_tag_enters_history() {
    let desk = Desk::new(UserRole::Clerk).await;
    let hanger = desk
        .get("/review/paperwork/notices?kind=door_hanger&accounts=A1&amount=1234.5")
        .await;
    assert_eq!(hanger.status, StatusCode::OK);
    assert!(hanger.body.contains("O'Brien &lt;script&gt;"), "escaped");
    assert!(hanger.body.contains("$1,234.50"));
    assert!(hanger
        .body
        .contains(&Config::default().paperwork.door_hanger_text));
    assert!(hanger.body.contains("class=\"sheet notice\""));
    let notice = desk
        .get("/review/paperwork/notices?kind=notice&accounts=A1,A3&amount=80")
        .await
        .body;
    assert_eq!(notice.matches("class=\"sheet notice\"").count(), 2);
    assert!(notice.contains("Service will be shut off on"));
    // A bad amount or an unknown account: the page again, the message beside the field.
    let bad = desk
        .get("/review/paperwork/notices?kind=notice&accounts=A1&amount=lots")
        .await;
    assert!(refused_with_notice(&bad));
    assert!(bad.body.contains("id=\"err-notice-amount\""));
    assert!(bad.body.contains("value=\"A1\""));
    let nobody = desk
        .get("/review/paperwork/notices?accounts=A1,Q7&amount=5")
        .await;
    assert!(nobody.body.contains("no account `Q7`"));
    // The shut-off list: accounts with an open shut-off order, by route in walk order.
    for a in ["A2", "A1"] {
        assert!(done(
            &desk
                .post("/review/orders", &[("kind", "shut_off"), ("account_id", a)])
                .await
        ));
    }
    let list = desk.get("/review/paperwork/shut-offs?route=R01").await.body;
    assert!(
        list.find("<td>A1</td>").unwrap() < list.find("<td>A2</td>").unwrap(),
        "walk order"
    );
    // An out tag: printed, then its reading enters history and the account stops.
    let tag = desk
        .get("/review/paperwork/tags?kind=out&account=A2")
        .await
        .body;
    assert!(tag.contains("Turn-off reading"));
    let last = desk.d.last[1] + 10;
    let today = now().date().to_string();
    let low = desk
        .post(
            "/review/paperwork/tags",
            &[
                ("kind", "out"),
                ("account", "A2"),
                ("reading", "5"),
                ("on", &today),
            ],
        )
        .await;
    assert!(refused_with_notice(&low));
    assert!(low.body.contains("is below meter M2's last reading"));
    let r = desk
        .post(
            "/review/paperwork/tags",
            &[
                ("kind", "out"),
                ("account", "A2"),
                ("reading", &(last + 3).to_string()),
                ("on", &today),
            ],
        )
        .await;
    assert!(done(&r), "{}", r.location);
    assert_eq!(
        desk.count(&format!(
            "SELECT count(*) FROM history WHERE account_id = 'A2' AND read_on = '{today}' AND reading = {}",
            last + 3
        )),
        1
    );
    let status: String = sql(&desk.d)
        .query_row(
            "SELECT status FROM accounts WHERE account_id = 'A2'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "inactive");
    assert_eq!(
        desk.audit_actions("account", "A2").last().unwrap().1,
        "stop_service"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_may_not_approve_their_own_leak_credit_and_another_may_decline_it() {
    let desk = Desk::new(UserRole::Admin).await;
    let high = desk.d.high;
    sql(&desk.d)
        .execute(
            "UPDATE field_reads SET expected_use = 1.0, consumption = 600 WHERE read_id = ?1",
            [high],
        )
        .unwrap();
    assert!(done(
        &desk
            .post(
                &format!("/review/reads/{high}/accept"),
                &[("reason", "leak")]
            )
            .await
    ));
    assert!(done(
        &desk
            .post(
                &format!("/review/reads/{high}/leak"),
                &[("repair_proof", "invoice")]
            )
            .await
    ));
    let own = desk
        .post(
            &format!("/review/reads/{high}/approve_leak"),
            &[("decision", "approve")],
        )
        .await;
    assert!(refused_with_notice(&own));
    assert!(own.body.contains("another admin approves it"));
    let (cookie, csrf) = sign_in_session_for_tests(&desk.d.state, "chief", UserRole::Admin).await;
    let chief = Desk {
        d: district_of(&desk),
        app: desk.app.clone(),
        cookie,
        csrf,
    };
    assert!(done(
        &chief
            .post(
                &format!("/review/reads/{high}/approve_leak"),
                &[("decision", "decline")],
            )
            .await
    ));
    assert_eq!(desk.count("SELECT count(*) FROM adjustments"), 0);
    let page = desk.get(&format!("/review/reads/{high}")).await.body;
    assert!(!page.contains("id=\"leak-pending\""));
    assert!(page.contains("chief declined the leak credit of $1,000.00 that ann asked for."));
}
