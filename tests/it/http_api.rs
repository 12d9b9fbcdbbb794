//! Integration tests: the daemon's HTTP API (router driven with `oneshot`) and the `serve` binary.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use chrono::NaiveDateTime;
use meter_gateway::demo::{self, DemoParams};
use meter_gateway::domain::UserRole;
use meter_gateway::serve::{self, openapi, AppState};
use meter_gateway::store::{Db, Store};
use serde_json::{json, Value};
use std::net::SocketAddr;

use crate::web::{add_clerk, form_body, send, Reply};

fn request(method: Method, path: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(path)
}

fn get(path: &str) -> axum::http::request::Builder {
    request(Method::GET, path)
}

fn state() -> AppState {
    serve::test_state(Db::start(Store::open_in_memory().unwrap()).unwrap())
}

/// A credential to try an endpoint with.
#[derive(Debug, Clone)]
enum Cred {
    Anonymous,
    Session(&'static str, String),
    Bearer(&'static str, String),
}

impl Cred {
    fn apply(&self, b: axum::http::request::Builder) -> axum::http::request::Builder {
        match self {
            Cred::Anonymous => b,
            Cred::Session(_, cookie) => b.header(header::COOKIE, cookie),
            Cred::Bearer(_, token) => b.header(header::AUTHORIZATION, format!("Bearer {token}")),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Cred::Anonymous => "anonymous",
            Cred::Session(n, _) | Cred::Bearer(n, _) => n,
        }
    }
}

struct Creds {
    clerk: Cred,
    clerk_csrf: String,
    admin: Cred,
    billing: Cred,
    device: Cred,
}

async fn creds(state: &AppState) -> Creds {
    let (clerk, clerk_csrf) =
        serve::sign_in_session_for_tests(state, "carla", UserRole::Clerk).await;
    let (admin, _) = serve::sign_in_session_for_tests(state, "adam", UserRole::Admin).await;
    let billing = serve::billing_token_for_tests(state, "billrun").await;
    let device = serve::device_token_for_tests(state, "HH-01").await;
    Creds {
        clerk: Cred::Session("clerk", clerk),
        clerk_csrf,
        admin: Cred::Session("admin", admin),
        billing: Cred::Bearer("billing", billing),
        device: Cred::Bearer("device", device),
    }
}

fn refused(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::SEE_OTHER
    )
}

/// A concrete path for a documented template (`{id}` → `1`, which parses as any kind of id).
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in template.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('1');
            }
            '}' => in_param = false,
            c if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

/// Who the document says may call an operation: scheme names (`session:admin` for admin-only).
fn allowed(doc: &Value, method: &str, path: &str) -> Vec<String> {
    let op = &doc["paths"][path][method.to_ascii_lowercase()];
    let mut who = Vec::new();
    for requirement in op["security"].as_array().cloned().unwrap_or_default() {
        for (scheme, scopes) in requirement.as_object().cloned().unwrap_or_default() {
            let admin_only = scopes
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x == "admin"));
            who.push(if admin_only {
                format!("{scheme}:admin")
            } else {
                scheme
            });
        }
    }
    who
}

#[tokio::test]
async fn every_endpoint_refuses_a_missing_credential_and_every_role_it_does_not_name() {
    let state = state();
    let app = serve::router(state.clone());
    let c = creds(&state).await;
    let doc = openapi::document();
    let ops = openapi::operations(&doc);
    assert!(ops.len() >= 8, "{ops:?}");
    for (method, path) in ops {
        let who = allowed(&doc, &method, &path);
        let public = who.is_empty();
        let m: Method = method.parse().unwrap();
        let tries = [
            (Cred::Anonymous, public),
            (
                c.clerk.clone(),
                who.iter().any(|w| w == "session") || public,
            ),
            (
                c.admin.clone(),
                who.iter().any(|w| w.starts_with("session")) || public,
            ),
            (
                c.billing.clone(),
                who.iter().any(|w| w == "billingToken") || public,
            ),
            (
                c.device.clone(),
                who.iter().any(|w| w == "deviceToken") || public,
            ),
        ];
        for (cred, may) in tries {
            let req = cred
                .apply(request(m.clone(), &concrete(&path)))
                .body(Body::empty())
                .unwrap();
            let r = send(&app, req).await;
            if may {
                // A POST may still be refused for its missing CSRF token; a GET must not be refused.
                if m == Method::GET {
                    assert!(
                        !refused(r.status),
                        "{method} {path} refused {} ({})",
                        cred.name(),
                        r.status
                    );
                }
            } else {
                assert!(
                    refused(r.status),
                    "{method} {path} let {} through: {} {}",
                    cred.name(),
                    r.status,
                    r.body
                );
            }
        }
    }
}

#[tokio::test]
async fn the_health_check_answers_without_credentials_and_unknown_paths_are_404() {
    let app = serve::router(state());
    let r = send(&app, get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok\n"));
    let r = send(&app, get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_browser_without_a_session_is_sent_to_the_sign_in_page_and_an_api_client_gets_401() {
    let app = serve::router(state());
    let r = send(
        &app,
        get("/api/v1/docks")
            .header(header::ACCEPT, "text/html,application/xhtml+xml")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers[header::LOCATION], "/login?next=/api/v1/docks");
    let r = send(&app, get("/api/v1/docks").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
}

// ---- sign-in ------------------------------------------------------------------------------------

fn now() -> NaiveDateTime {
    chrono::Local::now().naive_local()
}

fn cookie_value(set_cookies: &[String], name: &str) -> Option<String> {
    set_cookies.iter().find_map(|c| {
        let pair = c.split(';').next()?;
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// The sign-in form's token: from the cookie set with the page, checked to be the one in the form.
async fn login_form_token(app: &Router) -> String {
    let r = send(
        app,
        get("/login?next=/api/v1/docks")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let token = cookie_value(&r.set_cookies(), serve::auth::LOGIN_CSRF_COOKIE).unwrap();
    assert!(r.body.contains(&format!("name=\"csrf\" value=\"{token}\"")));
    assert!(r.body.contains("<label for=\"password\">"));
    let set = r.set_cookies().join("\n");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    token
}

async fn post_login(app: &Router, token: &str, name: &str, password: &str, client: &str) -> Reply {
    post_login_with(app, token, token, name, password, client).await
}

/// A sign-in post whose form token may differ from its cookie's.
async fn post_login_with(
    app: &Router,
    cookie_token: &str,
    form_token: &str,
    name: &str,
    password: &str,
    client: &str,
) -> Reply {
    let mut req = request(Method::POST, "/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(
            header::COOKIE,
            format!("{}={cookie_token}", serve::auth::LOGIN_CSRF_COOKIE),
        )
        .body(Body::from(form_body(&[
            ("name", name),
            ("password", password),
            ("csrf", form_token),
            ("next", "/api/v1/docks"),
        ])))
        .unwrap();
    let addr: SocketAddr = format!("{client}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    send(app, req).await
}

#[tokio::test]
async fn a_clerk_signs_in_uses_the_session_and_signs_out() {
    let state = state();
    let app = serve::router(state.clone());
    add_clerk(&state, "carla", "water under the bridge").await;
    let token = login_form_token(&app).await;
    let r = post_login(&app, &token, "carla", "water under the bridge", "10.0.0.5").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers[header::LOCATION], "/api/v1/docks");
    let session = cookie_value(&r.set_cookies(), serve::auth::SESSION_COOKIE).unwrap();
    assert_eq!(session.len(), 64);
    let cookie = format!("{}={session}", serve::auth::SESSION_COOKIE);
    let docks = |cookie: String| {
        get("/api/v1/docks")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap()
    };
    let r = send(&app, docks(cookie.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["docks"], json!([]));

    // Signing out is a clerk form: refused without the session's CSRF token.
    let logout = |csrf: &str| {
        request(Method::POST, "/logout")
            .header(header::COOKIE, cookie.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={csrf}")))
            .unwrap()
    };
    assert_eq!(send(&app, logout("")).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        send(&app, logout("forged")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&app, docks(cookie.clone())).await.status,
        StatusCode::OK
    );
    // The CSRF token is the session's: read it back through the test helper's store query.
    let hash = meter_gateway::auth::sha256_hex(session.as_bytes());
    let csrf = state
        .db
        .call(move |s| s.session_user(&hash, now()))
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .csrf;
    let r = send(&app, logout(&csrf)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers[header::LOCATION], "/login");
    assert_eq!(
        send(&app, docks(cookie.clone())).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sign_in_is_refused_without_the_form_token_or_with_a_wrong_password() {
    let state = state();
    let app = serve::router(state.clone());
    add_clerk(&state, "carla", "water under the bridge").await;
    let token = login_form_token(&app).await;
    // A form token that is not the cookie's (a cross-site post) is refused before any password check.
    let r = post_login_with(
        &app,
        &token,
        "0000",
        "carla",
        "water under the bridge",
        "10.0.0.5",
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = post_login_with(&app, "", "", "carla", "water under the bridge", "10.0.0.5").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = post_login(&app, &token, "carla", "water over the bridge", "10.0.0.5").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Wrong user name or password"));
    assert!(cookie_value(&r.set_cookies(), serve::auth::SESSION_COOKIE).is_none());
    let r = post_login(&app, &token, "nobody", "water under the bridge", "10.0.0.5").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// A sign-in post from the sign-in page reached directly (no `next`), with the page's form token.
async fn post_login_from_the_door(app: &Router, token: &str, name: &str, password: &str) -> Reply {
    let req = request(Method::POST, "/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(
            header::COOKIE,
            format!("{}={token}", serve::auth::LOGIN_CSRF_COOKIE),
        )
        .body(Body::from(form_body(&[
            ("name", name),
            ("password", password),
            ("csrf", token),
        ])))
        .unwrap();
    send(app, req).await
}

#[tokio::test]
async fn the_front_door_sends_a_visitor_to_sign_in_and_a_signed_in_clerk_to_the_queue() {
    let state = state();
    let app = serve::router(state.clone());
    // Anonymous, from a browser or not: to the sign-in page, never "no such page".
    for accept in ["text/html,application/xhtml+xml", "*/*"] {
        let r = send(
            &app,
            get("/")
                .header(header::ACCEPT, accept)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::TEMPORARY_REDIRECT,
            "{accept}: {}",
            r.body
        );
        assert_eq!(r.headers[header::LOCATION], "/login");
    }
    // A stale session is anonymous.
    let r = send(
        &app,
        get("/")
            .header(
                header::COOKIE,
                format!("{}=0000", serve::auth::SESSION_COOKIE),
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.headers[header::LOCATION], "/login");
    // Signed in, clerk or admin: to the exception queue.
    let c = creds(&state).await;
    for who in [&c.clerk, &c.admin] {
        let r = send(&app, who.apply(get("/")).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT, "{}", who.name());
        assert_eq!(r.headers[header::LOCATION], "/review", "{}", who.name());
    }
    // HEAD too (a link checker, a load balancer's probe).
    let r = send(
        &app,
        request(Method::HEAD, "/").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
}

#[tokio::test]
async fn signing_in_at_the_door_lands_on_the_exception_queue() {
    // A district with cycle 2026-10 open.
    let (state, _) = district().await;
    let app = serve::router(state.clone());
    add_clerk(&state, "carla", "water under the bridge").await;

    // The door sends a visitor to the sign-in page, which is a form with its token.
    let r = send(&app, get("/").body(Body::empty()).unwrap()).await;
    let login = r.headers[header::LOCATION].to_str().unwrap().to_string();
    let r = send(&app, get(&login).body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("<form method=\"post\" action=\"/login\">"));
    let token = cookie_value(&r.set_cookies(), serve::auth::LOGIN_CSRF_COOKIE).unwrap();

    // Signing in lands on the queue, not on `/`.
    let r = post_login_from_the_door(&app, &token, "carla", "water under the bridge").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers[header::LOCATION], "/review");
    let session = cookie_value(&r.set_cookies(), serve::auth::SESSION_COOKIE).unwrap();
    let cookie = format!("{}={session}", serve::auth::SESSION_COOKIE);
    let page = |path: &str| {
        get(path)
            .header(header::COOKIE, cookie.clone())
            .header(header::ACCEPT, "text/html")
            .body(Body::empty())
            .unwrap()
    };
    // `/review` opens the open cycle's queue, and the door now leads there too.
    let r = send(&app, page("/review")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers[header::LOCATION], "/review/cycles/2026-10");
    let r = send(&app, page("/review/cycles/2026-10")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("2026-10"), "{}", r.body);
    let r = send(&app, page("/")).await;
    assert_eq!(r.headers[header::LOCATION], "/review");

    // A wrong password shows the form again, and no session.
    let r = post_login_from_the_door(&app, &token, "carla", "water over the bridge").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(cookie_value(&r.set_cookies(), serve::auth::SESSION_COOKIE).is_none());
}

// The sign-in backoff (per name and address, never a lockout) is tested in `security.rs`.

// ---- device API -----------------------------------------------------------------------------------

use crate::support::day;

/// A small demo district with cycle `2026-10` open; returns the state and its first route.
async fn district() -> (AppState, String) {
    let mut store = Store::open_in_memory().unwrap();
    let d = demo::generate(&DemoParams {
        accounts: 300,
        seed: 11,
        as_of: day(2026, 10, 20),
    });
    demo::load(&mut store, &d).unwrap();
    meter_gateway::cycles::open_cycle(
        &mut store,
        "2026-10",
        day(2026, 10, 1),
        day(2026, 10, 31),
        &[],
        now(),
    )
    .unwrap();
    let route = d.routes[0].id.clone();
    (serve::test_state(Db::start(store).unwrap()), route)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn route_request(token: &str) -> Request<Body> {
    get("/api/v1/device/route")
        .header(header::AUTHORIZATION, bearer(token))
        .body(Body::empty())
        .unwrap()
}

fn upload(token: &str, body: &Value) -> Request<Body> {
    request(Method::POST, "/api/v1/device/reads")
        .header(header::AUTHORIZATION, bearer(token))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn device_reads(state: &AppState, device: &str) -> usize {
    let device = device.to_string();
    state
        .db
        .call(move |s| s.cycle_reads("2026-10"))
        .await
        .unwrap()
        .unwrap()
        .iter()
        .filter(|r| r.device.as_ref().is_some_and(|(d, _)| *d == device))
        .count()
}

#[tokio::test]
async fn a_handheld_syncs_over_http_and_a_reposted_batch_is_not_stored_twice() {
    let (state, route) = district().await;
    let app = serve::router(state.clone());
    let token = serve::device_token_for_tests(&state, "HH-07").await;
    let r2 = route.clone();
    state
        .db
        .call(move |s| s.assign_route("2026-10", &r2, "HH-07", now()))
        .await
        .unwrap()
        .unwrap();

    let r = send(&app, route_request(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let routes = r.json()["routes"].as_array().cloned().unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0]["route_id"], route.as_str());
    let stops = routes[0]["stops"].as_array().cloned().unwrap();
    assert!(stops.len() > 5);

    let r = send(
        &app,
        get("/api/v1/device/codes")
            .header(header::AUTHORIZATION, bearer(&token))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.json()["codes"].as_array().unwrap().is_empty());

    let reads: Vec<Value> = stops
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "device_seq": 100 + i,
                "meter_id": s["meter_id"],
                "reading": s["previous_reading"].as_u64().unwrap_or(0) + 3,
                "read_time": format!("2026-10-06T09:{:02}:00", i % 60),
                "read_type": "regular",
                "method": "keyed",
                "reader_id": "JD",
            })
        })
        .collect();
    let n = reads.len();
    let batch = json!({ "state_id": "a1", "batch_id": "HH-07-0001", "reads": reads });
    let first = send(&app, upload(&token, &batch)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let receipt = first.json();
    assert_eq!(receipt["up_to_seq"], json!(100 + n - 1));
    assert_eq!(receipt["stored"], json!(n));
    assert_eq!(device_reads(&state, "HH-07").await, n);

    // The acknowledgement was lost: the handheld posts the same batch again.
    let again = send(&app, upload(&token, &batch)).await;
    assert_eq!(again.status, StatusCode::OK);
    let receipt2 = again.json();
    assert_eq!(receipt2["up_to_seq"], receipt["up_to_seq"]);
    assert_eq!(receipt2["batch_id"], receipt["batch_id"]);
    // The first answer again, word for word; nothing stored twice.
    assert_eq!(receipt2, receipt);
    assert_eq!(device_reads(&state, "HH-07").await, n);
    // The same reads under a new batch id are recognised by device sequence.
    let renamed = json!({ "state_id": "a1", "batch_id": "HH-07-0002", "reads": batch["reads"] });
    let third = send(&app, upload(&token, &renamed)).await;
    assert_eq!(third.json()["stored"], json!(0));
    assert_eq!(device_reads(&state, "HH-07").await, n);
}

#[tokio::test]
async fn an_unknown_device_or_a_wrong_secret_is_refused() {
    let (state, _) = district().await;
    let app = serve::router(state.clone());
    let token = serve::device_token_for_tests(&state, "HH-02").await;
    let unknown = meter_gateway::auth::DeviceToken::generate("HH-99")
        .unwrap()
        .to_string();
    let wrong = format!("HH-02.{}", "0".repeat(64));
    for t in [unknown.as_str(), wrong.as_str(), "HH-02", "garbage"] {
        let r = send(&app, route_request(t)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{t}");
    }
    let r = send(&app, route_request(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn a_malformed_read_is_refused_alone_and_a_malformed_batch_whole() {
    let (state, _) = district().await;
    let app = serve::router(state.clone());
    let token = serve::device_token_for_tests(&state, "HH-03").await;
    let meters = route_meters(&app, &token).await;
    let (m, prev) = meters[0].clone();
    let read = |seq: u64, t: &str| {
        json!({ "device_seq": seq, "meter_id": m, "reading": prev + 3, "read_time": "2026-10-06T09:00:00",
                "read_type": t, "method": "keyed", "reader_id": "JD" })
    };
    // Reads the protocol cannot express are refused one by one (kept for the office, named in the
    // receipt, as a cradle's dock does), the others taken: an unknown read type, a sequence number
    // the store cannot keep, a date that does not exist, an unknown field.
    let mut huge = read(2, "regular");
    huge["device_seq"] = json!(u64::MAX);
    let mut no_date = read(3, "regular");
    no_date["read_time"] = json!("2026-02-30T09:00:00");
    let mut extra = read(4, "regular");
    extra["colour"] = json!("blue");
    let body = json!({ "state_id": "a1", "batch_id": "b1",
                       "reads": [read(1, "regular"), read(5, "psychic"), huge, no_date, extra] });
    let r = send(&app, upload(&token, &body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let receipt = r.json();
    assert_eq!(receipt["stored"], json!(1), "{receipt}");
    let refused: Vec<(u64, String, String)> = receipt["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["device_seq"].as_u64().unwrap(),
                x["reason"].as_str().unwrap().to_string(),
                x["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let reasons: Vec<(u64, &str)> = refused.iter().map(|(s, r, _)| (*s, r.as_str())).collect();
    assert_eq!(
        reasons,
        vec![
            (3, "bad_time"),
            (4, "bad_read"),
            (5, "bad_read"),
            (u64::MAX, "bad_read")
        ],
        "{refused:?}"
    );
    assert!(refused[2].2.contains("psychic"), "{refused:?}");
    assert!(refused[1].2.contains("colour"), "{refused:?}");
    assert_eq!(receipt["up_to_seq"], json!(u64::MAX));
    assert_eq!(device_reads(&state, "HH-03").await, 1);
    let logged = refused_of(&state, "HH-03").await;
    assert_eq!(logged.len(), 4);
    assert!(logged.iter().any(|l| l.read_json.contains("2026-02-30")));
    // What cannot be named is refused whole, and says why.
    for (body, why) in [
        (
            json!({ "state_id": "a1", "batch_id": "", "reads": [] }),
            "batch_id",
        ),
        (
            json!({ "batch_id": "b2", "reads": [read(6, "regular")] }),
            "state_id is required",
        ),
        (
            json!({ "state_id": "a1", "batch_id": "b3", "reads": [{ "meter_id": "M1" }] }),
            "device_seq",
        ),
        (json!({ "reads": [] }), "batch_id"),
    ] {
        let r = send(&app, upload(&token, &body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains(why),
            "{}",
            r.body
        );
    }
    assert_eq!(device_reads(&state, "HH-03").await, 1);
}

#[tokio::test]
async fn an_oversize_body_is_refused_with_413_whether_or_not_its_length_is_announced() {
    let state = state();
    let app = serve::router(state.clone());
    let token = serve::device_token_for_tests(&state, "HH-04").await;
    let limit = state.config.serve.max_upload_bytes;
    let big = format!(
        "{{\"batch_id\":\"b\",\"reads\":[],\"pad\":\"{}\"}}",
        "x".repeat(limit)
    );
    for announce in [true, false] {
        let mut b = request(Method::POST, "/api/v1/device/reads")
            .header(header::AUTHORIZATION, bearer(&token))
            .header(header::CONTENT_TYPE, "application/json");
        if announce {
            b = b.header(header::CONTENT_LENGTH, big.len());
        }
        let r = send(&app, b.body(Body::from(big.clone())).unwrap()).await;
        assert_eq!(
            r.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "announced: {announce}"
        );
    }
    // Forms are bounded far lower than uploads.
    let form = format!(
        "name=a&password={}",
        "x".repeat(state.config.serve.max_form_bytes)
    );
    let r = send(
        &app,
        request(Method::POST, "/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                header::COOKIE,
                format!("{}=t", serve::auth::LOGIN_CSRF_COOKIE),
            )
            .body(Body::from(form))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

// ---- OpenAPI ------------------------------------------------------------------------------------

#[tokio::test]
async fn the_openapi_document_is_served_and_everything_it_describes_is_routed() {
    let state = state();
    let app = serve::router(state.clone());
    let c = creds(&state).await;
    let r = send(
        &app,
        c.device
            .apply(get("/api/v1/openapi.json"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert_eq!(doc, openapi::document());
    let fallback = send(&app, get("/no/such/route").body(Body::empty()).unwrap()).await;
    for (method, path) in openapi::operations(&doc) {
        let req = c
            .admin
            .apply(request(method.parse().unwrap(), &concrete(&path)))
            .body(Body::empty())
            .unwrap();
        let r = send(&app, req).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !(r.status == StatusCode::NOT_FOUND && r.body == fallback.body),
            "{method} {path} is described but not routed"
        );
    }
    let _ = c.clerk_csrf;
}

// ---- the binary -----------------------------------------------------------------------------------

/// Kills the child on drop, so a failing test leaves no daemon behind.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_meter-gateway"))
}

#[test]
fn the_binary_serves_on_port_0_answers_healthz_and_exits_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gw.db");
    let child = binary()
        .args([
            "--db",
            db.to_str().unwrap(),
            "serve",
            "--http",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let stdout = guard.0.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let address = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    let mut conn = std::net::TcpStream::connect(&address).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");

    let pid = guard.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = guard.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn the_cli_registers_a_handheld_and_a_clerk_whose_credentials_the_daemon_accepts() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gw.db");
    let db_arg = db.to_str().unwrap().to_string();
    let out = binary()
        .args(["--db", &db_arg, "device", "add", "HH-05"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text
        .split_whitespace()
        .find(|w| w.starts_with("HH-05."))
        .unwrap_or_else(|| panic!("no token in {text}"))
        .to_string();
    let mut child = binary()
        .args([
            "--db",
            &db_arg,
            "user",
            "add",
            "carla",
            "--role",
            "clerk",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"water under the bridge\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let out = binary()
        .args([
            "--db", &db_arg, "user", "add", "billrun", "--role", "billing",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("mgb_"), "{text}");
    let listing = binary()
        .args(["--db", &db_arg, "user", "list"])
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(
        listing.contains("carla\tclerk") && listing.contains("billrun\tbilling"),
        "{listing}"
    );

    let state = serve::test_state(Db::open(&db).unwrap());
    let app = serve::router(state.clone());
    let r = send(
        &app,
        get("/api/v1/device/codes")
            .header(header::AUTHORIZATION, bearer(&token))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let form_token = login_form_token(&app).await;
    let r = post_login(
        &app,
        &form_token,
        "carla",
        "water under the bridge",
        "10.0.0.8",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    state.db.shutdown();
}

#[tokio::test]
async fn shutdown_stops_accepting_and_is_bounded_even_with_a_stalled_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = meter_gateway::config::Config::default();
    config.serve.shutdown_grace_secs = 1;
    let state = AppState::new(
        Db::start(Store::open_in_memory().unwrap()).unwrap(),
        std::sync::Arc::new(config),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve::run(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    // Half a request that never completes: graceful shutdown would wait for it forever.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
        .await
        .unwrap();
    let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
    ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    ok.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let asked = std::time::Instant::now();
    stop.send(()).unwrap();
    let served = tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("run returned")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    let took = asked.elapsed();
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    drop(stalled);
    state.db.shutdown();
}

// ---- protocol 2 over HTTP: state ids, content-checked repeats, refusals ---------------------------

/// What the gateway logged as refused from `device`, newest first.
async fn refused_of(state: &AppState, device: &str) -> Vec<meter_gateway::store::RefusedReadRow> {
    let device = device.to_string();
    state
        .db
        .call(move |s| s.refused_reads(Some(&device), 1_000))
        .await
        .unwrap()
        .unwrap()
}

fn hello(token: &str, state_id: &str) -> Request<Body> {
    request(Method::POST, "/api/v1/device/hello")
        .header(header::AUTHORIZATION, bearer(token))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({ "state_id": state_id, "firmware_version": "test-1" }).to_string(),
        ))
        .unwrap()
}

fn a_read(seq: u64, meter: &str, reading: u64, time: &str) -> Value {
    json!({ "device_seq": seq, "meter_id": meter, "reading": reading, "read_time": time,
            "read_type": "regular", "method": "keyed", "reader_id": "JD" })
}

/// The meters of the device's route and their previous readings (the route comes down first).
async fn route_meters(app: &Router, token: &str) -> Vec<(String, u64)> {
    let r = send(app, route_request(token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["routes"][0]["stops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["account_status"] == "active")
        .map(|s| {
            (
                s["meter_id"].as_str().unwrap().to_string(),
                s["previous_reading"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

async fn held_seq(app: &Router, token: &str, state_id: &str) -> u64 {
    let r = send(app, hello(token, state_id)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["protocol_version"], json!(2));
    r.json()["held_seq"].as_u64().unwrap()
}

#[tokio::test]
async fn a_reused_sequence_number_or_batch_id_with_other_content_is_refused_and_logged() {
    let (state, _) = district().await;
    let app = serve::router(state.clone());
    let token = serve::device_token_for_tests(&state, "HH-05").await;
    let meters = route_meters(&app, &token).await;
    let (a, b, c, d) = (&meters[0], &meters[1], &meters[2], &meters[3]);
    assert_eq!(held_seq(&app, &token, "5a").await, 0);
    let t = "2026-10-06T09:00:00";
    let first =
        json!({ "state_id": "5a", "batch_id": "b1", "reads": [a_read(10, &a.0, a.1 + 4, t)] });
    let r = send(&app, upload(&token, &first)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.json()["stored"].clone(), r.json()["held_seq"].clone()),
        (json!(1), json!(10))
    );
    assert_eq!(held_seq(&app, &token, "5a").await, 10);

    // The same sequence number with another reading, then on another meter: refused, not stored.
    for (batch, read) in [
        ("b2", a_read(10, &a.0, a.1 + 9, t)),
        ("b3", a_read(10, &b.0, b.1 + 2, t)),
    ] {
        let body = json!({ "state_id": "5a", "batch_id": batch, "reads": [read] });
        let r = send(&app, upload(&token, &body)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let receipt = r.json();
        assert_eq!(receipt["stored"], json!(0));
        assert_eq!(receipt["already_received"], json!(0));
        assert_eq!(receipt["refused"][0]["device_seq"], json!(10));
        assert_eq!(receipt["refused"][0]["reason"], json!("seq_conflict"));
        assert!(receipt["refused"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("already holds a different read"));
    }
    assert_eq!(device_reads(&state, "HH-05").await, 1);
    // Byte for byte the same read: already received.
    let same =
        json!({ "state_id": "5a", "batch_id": "b4", "reads": [a_read(10, &a.0, a.1 + 4, t)] });
    let r = send(&app, upload(&token, &same)).await;
    assert_eq!(r.json()["already_received"], json!(1));
    assert_eq!(r.json()["refused"], json!([]));
    // Two different reads under one number in one batch: the first is stored, the second refused.
    let twice = json!({ "state_id": "5a", "batch_id": "b5",
                        "reads": [a_read(20, &c.0, c.1 + 3, t), a_read(20, &d.0, d.1 + 3, t)] });
    let r = send(&app, upload(&token, &twice)).await;
    let receipt = r.json();
    assert_eq!(receipt["stored"], json!(1), "{receipt}");
    assert_eq!(receipt["refused"][0]["device_seq"], json!(20));
    assert_eq!(device_reads(&state, "HH-05").await, 2);

    // A batch id used before for other reads: 409 with a code, nothing stored; the same reads again
    // get the first answer.
    let other =
        json!({ "state_id": "5a", "batch_id": "b1", "reads": [a_read(30, &d.0, d.1 + 5, t)] });
    let r = send(&app, upload(&token, &other)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.json()["code"], json!("batch_conflict"));
    assert_eq!(device_reads(&state, "HH-05").await, 2);
    let r = send(&app, upload(&token, &first)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (
            r.json()["stored"].clone(),
            r.json()["already_received"].clone()
        ),
        (json!(1), json!(0)),
        "the first answer again"
    );

    // Every refusal is logged with the read's content, for a clerk.
    let logged = refused_of(&state, "HH-05").await;
    let reasons: Vec<String> = logged.iter().map(|r| r.reason.to_string()).collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "seq_conflict").count(),
        3,
        "{reasons:?}"
    );
    assert!(reasons.contains(&"batch_conflict".to_string()));
    let conflict = logged.iter().find(|r| r.meter_id == b.0).unwrap();
    assert!(conflict.read_json.contains(&b.0), "{}", conflict.read_json);
    assert!(conflict.existing_read_id.is_some());

    // A wiped handheld (a new state id) numbering from 1 again: its reads are new reads.
    assert_eq!(held_seq(&app, &token, "77").await, 0);
    let wiped =
        json!({ "state_id": "77", "batch_id": "b1", "reads": [a_read(10, &b.0, b.1 + 2, t)] });
    let r = send(&app, upload(&token, &wiped)).await;
    assert_eq!(r.json()["stored"], json!(1), "{}", r.body);
    assert_eq!(device_reads(&state, "HH-05").await, 3);

    // A clerk sees both states of the handheld and what it sent that was refused, and can download it.
    let (clerk, _) = serve::sign_in_session_for_tests(&state, "carla", UserRole::Clerk).await;
    let page = send(
        &app,
        get("/review/handhelds?device=HH-05")
            .header(header::COOKIE, &clerk)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for text in [
        "Restarted 1 time(s)",
        "sequence number used twice",
        "batch id used twice",
        &format!("meter {}", b.0),
        "The read held under that number",
    ] {
        assert!(page.body.contains(text), "{text} missing from the page");
    }
    let csv = send(
        &app,
        get("/review/handhelds/refused.csv")
            .header(header::COOKIE, &clerk)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.body.starts_with("last_sent,"), "{}", csv.body);
    assert_eq!(csv.body.lines().count(), 1 + logged.len());
}

#[tokio::test]
async fn a_read_dated_far_away_is_refused_alone_and_the_cycle_stays_usable() {
    let (state, _) = district().await;
    let app = serve::router(state.clone());
    let token = serve::device_token_for_tests(&state, "HH-06").await;
    let meters = route_meters(&app, &token).await;
    let (a, b, c) = (&meters[0], &meters[1], &meters[2]);
    let body = json!({ "state_id": "6", "batch_id": "far", "reads": [
        a_read(1, &a.0, a.1 + 4, "2026-10-06T09:00:00"),
        a_read(2, &b.0, b.1 + 4, "+10000-01-01T00:00:00"),
        a_read(3, &c.0, c.1 + 4, "2026-05-01T09:00:00"),
    ]});
    let r = send(&app, upload(&token, &body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let receipt = r.json();
    assert_eq!(receipt["stored"], json!(1), "{receipt}");
    let refused: Vec<(u64, String)> = receipt["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["device_seq"].as_u64().unwrap(),
                r["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused[0].1.contains(&b.0) && refused[0].1.contains("10000"),
        "{refused:?}"
    );
    assert!(
        refused[1].1.contains(&c.0) && refused[1].1.contains("before"),
        "{refused:?}"
    );
    // Everything that lists the cycle still reads it back.
    let reads = state
        .db
        .call(|s| s.cycle_reads("2026-10"))
        .await
        .unwrap()
        .unwrap();
    assert!(!reads.is_empty());
    let (clerk, _) = serve::sign_in_session_for_tests(&state, "carla", UserRole::Clerk).await;
    let page = send(
        &app,
        get("/review/cycles/2026-10")
            .header(header::COOKIE, clerk)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
}

/// A district in Pacific time on a server whose clock is read as a fixed UTC instant: every test
/// process here runs with the host's `TZ` (UTC on CI), which must not matter.
#[tokio::test]
async fn a_handheld_upload_is_received_and_judged_in_the_district_time_zone_not_the_hosts() {
    use chrono::TimeZone;
    use meter_gateway::clock::{DistrictZone, FixedClock};
    let (state, _) = district().await;
    let mut config = (*state.config).clone();
    config.district.time_zone = "America/Los_Angeles".parse::<DistrictZone>().unwrap();
    // 2026-10-06T03:00Z is 2026-10-05 20:00 in Los Angeles (PDT, UTC-7): still the 5th there.
    let instant = chrono::Utc.with_ymd_and_hms(2026, 10, 6, 3, 0, 0).unwrap();
    let state = AppState::new(state.db.clone(), std::sync::Arc::new(config))
        .with_clock(std::sync::Arc::new(FixedClock::new(instant)));
    let pacific = crate::support::at(day(2026, 10, 5), 20);
    assert_eq!(state.now_local(), pacific);
    let app = serve::router(state.clone());
    let token = serve::device_token_for_tests(&state, "HH-LA").await;
    let meters = route_meters(&app, &token).await;
    let (a, b) = (&meters[0], &meters[1]);
    let body = json!({ "state_id": "1a", "batch_id": "la-1", "reads": [
        a_read(1, &a.0, a.1 + 4, "2026-10-05T19:00:00"),
        // 26 hours after the read reached the gateway in Pacific time (refused: the handheld's
        // clock is wrong); only 19 hours after it in UTC, where it would have been taken.
        a_read(2, &b.0, b.1 + 4, "2026-10-06T22:00:00"),
    ]});
    let r = send(&app, upload(&token, &body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let receipt = r.json();
    assert_eq!(receipt["stored"], json!(1), "{receipt}");
    let refused = receipt["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{receipt}");
    assert_eq!(refused[0]["device_seq"], json!(2), "{receipt}");
    let logged = refused_of(&state, "HH-LA").await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].meter_id, b.0);
    // The stored read's receipt time is the district's, not the host's or UTC.
    let meter = a.0.clone();
    let received: String = state
        .db
        .call(move |s| {
            s.conn_for_tests().query_row(
                "SELECT received_at FROM field_reads WHERE meter_id = ?1",
                [&meter],
                |row| row.get(0),
            )
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received, "2026-10-05T20:00:00");
}

/// A district whose route is assigned to HH-B (HH-A carries none), with `off_route` as given.
async fn two_handhelds(
    policy: meter_gateway::cycles::OffRoutePolicy,
) -> (AppState, String, String) {
    let (state, route) = district().await;
    let mut config = (*state.config).clone();
    config.reads.off_route = policy;
    let state = AppState::new(state.db.clone(), std::sync::Arc::new(config));
    let a = serve::device_token_for_tests(&state, "HH-A").await;
    let b = serve::device_token_for_tests(&state, "HH-B").await;
    state
        .db
        .call(move |s| s.assign_route("2026-10", &route, "HH-B", now()).unwrap())
        .await
        .unwrap();
    (state, a, b)
}

#[tokio::test]
async fn an_off_route_read_is_flagged_and_the_assigned_handhelds_read_replaces_it() {
    use meter_gateway::cycles::OffRoutePolicy;
    let (state, a, b) = two_handhelds(OffRoutePolicy::Flag).await;
    let app = serve::router(state.clone());
    let (m, prev) = route_meters(&app, &b).await[0].clone();
    let t = "2026-10-06T09:00:00";
    // HH-A helps out: it reads a meter of HH-B's route.
    let body = json!({ "state_id": "a", "batch_id": "x", "reads": [a_read(1, &m, prev + 6, t)] });
    let r = send(&app, upload(&a, &body)).await;
    assert_eq!(r.json()["stored"], json!(1), "{}", r.body);
    let reads = state
        .db
        .call(|s| s.cycle_reads("2026-10"))
        .await
        .unwrap()
        .unwrap();
    let helped = reads.iter().find(|r| r.meter_id == m).unwrap();
    let flag = helped
        .flags
        .iter()
        .find(|f| f.kind.as_str() == "off_route")
        .expect("flagged off_route");
    assert!(flag.explanation.contains("HH-A") && flag.explanation.contains("assigned to HH-B"));
    // HH-B's own read of the meter arrives: stored as the meter's read, not a duplicate; the
    // off-route read is superseded by it.
    let body = json!({ "state_id": "b", "batch_id": "y", "reads": [a_read(1, &m, prev + 7, t)] });
    let r = send(&app, upload(&b, &body)).await;
    assert_eq!(r.json()["stored"], json!(1), "{}", r.body);
    let reads = state
        .db
        .call(|s| s.cycle_reads("2026-10"))
        .await
        .unwrap()
        .unwrap();
    let own: Vec<_> = reads
        .iter()
        .filter(|r| r.meter_id == m && r.superseded_by.is_none())
        .collect();
    assert_eq!(own.len(), 1, "the off-route read left the queue: {own:?}");
    let replaced = reads.iter().find(|r| r.read_id == helped.read_id).unwrap();
    assert_eq!(replaced.superseded_by, Some(own[0].read_id));
    assert!(own[0].device.as_ref().is_some_and(|(d, _)| d == "HH-B"));
    assert!(
        own[0].flags.iter().all(|f| f.kind.as_str() != "duplicate"),
        "{:?}",
        own[0].flags
    );
}

#[tokio::test]
async fn the_district_may_refuse_off_route_reads_and_they_are_logged() {
    use meter_gateway::cycles::OffRoutePolicy;
    let (state, a, b) = two_handhelds(OffRoutePolicy::Refuse).await;
    let app = serve::router(state.clone());
    let (m, prev) = route_meters(&app, &b).await[0].clone();
    let body = json!({ "state_id": "a", "batch_id": "x",
                       "reads": [a_read(1, &m, prev + 6, "2026-10-06T09:00:00")] });
    let r = send(&app, upload(&a, &body)).await;
    let receipt = r.json();
    assert_eq!(receipt["stored"], json!(0), "{receipt}");
    assert_eq!(receipt["refused"][0]["reason"], json!("off_route"));
    assert_eq!(
        receipt["up_to_seq"],
        json!(1),
        "acknowledged: its content is in the log"
    );
    let logged = refused_of(&state, "HH-A").await;
    assert_eq!(logged.len(), 1);
    assert!(logged[0].detail.contains("refuses off-route reads"));
}

/// Every read stored from `device` in cycle 2026-10, as (meter, raw reading, protocol time), with
/// how often.
async fn stored_keys(
    state: &AppState,
    device: &str,
) -> std::collections::HashMap<(String, String, i64), usize> {
    let device = device.to_string();
    let reads = state
        .db
        .call(|s| s.cycle_reads("2026-10"))
        .await
        .unwrap()
        .unwrap();
    let mut out = std::collections::HashMap::new();
    for r in reads
        .iter()
        .filter(|r| r.device.as_ref().is_some_and(|(d, _)| *d == device))
    {
        let key = (
            r.meter_id.clone(),
            r.raw_reading.clone(),
            meter_gateway::sync::protocol_time(r.read_at),
        );
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// The reference handheld (`sync::client::HttpCradle`, what `examples/handheld` runs) through a
/// day whose state file is lost mid-cycle, then restored from an old copy: every read it keyed is
/// stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_handheld_survives_a_wiped_state_file_with_no_read_lost() {
    use crate::support::{keyed, walk_part};
    use meter_gateway::sync::client::{Cradle, HttpCradle};
    use meter_gateway::sync::handheld::{HandheldState, Mode};
    let (state, _) = district().await;
    let token = serve::device_token_for_tests(&state, "HH-R").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve::run(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    let noon = |hours: i64| {
        meter_gateway::sync::protocol_time(day(2026, 10, 6).and_hms_opt(9, 0, 0).unwrap())
            + hours * 3_600
    };
    let keyed_all = tokio::task::spawn_blocking(move || {
        let mut cradle = HttpCradle::new(&url, &token).unwrap();
        let up = Mode {
            download: false,
            ..Mode::default()
        };
        let down = Mode {
            upload: false,
            ..Mode::default()
        };
        let dock = |cradle: &mut HttpCradle, s: HandheldState, mode: Mode| {
            let (s, report) = cradle.dock(s, mode, &mut |_| {}).unwrap();
            assert!(report.finished);
            s
        };
        let flash = tempfile::tempdir().unwrap();
        let file = flash.path().join("handheld.state");
        // Morning: load the route, read the first quarter; a copy of the state file is taken.
        let mut s = dock(&mut cradle, HandheldState::new("HH-R"), down);
        let stops = s.routes[0].stops.len();
        let q = stops / 4;
        walk_part(&mut s, 1, 0..q, noon(0));
        let mut all = keyed(&s);
        std::fs::write(&file, s.to_bytes()).unwrap();
        let old_copy = s.to_bytes();
        let mut s = dock(&mut cradle, s, up);
        assert_eq!(s.unacknowledged(), 0);
        // The second quarter, uploaded: the gateway now holds numbers 1..2q of this state.
        walk_part(&mut s, 2, q..2 * q, noon(1));
        all.extend(keyed(&s));
        let s = dock(&mut cradle, s, up);
        assert_eq!(s.unacknowledged(), 0);
        // Midday: the flash is wiped; a fresh state loads the route and reads the third quarter.
        std::fs::remove_file(&file).unwrap();
        let mut s = dock(&mut cradle, HandheldState::new("HH-R"), down);
        walk_part(&mut s, 3, 2 * q..3 * q, noon(2));
        assert_eq!(s.pending[0].device_seq, 1, "a new state counts from 1");
        all.extend(keyed(&s));
        let s = dock(&mut cradle, s, up);
        assert_eq!(s.unacknowledged(), 0);
        // Afternoon: the morning's copy is restored (its first quarter again, never acknowledged
        // in its eyes) and reads the rest offline, numbering from q+1: numbers the gateway holds
        // for the second quarter. Those are refused, renumbered and sent again in the same docking.
        let mut s = HandheldState::from_bytes(&old_copy).unwrap();
        walk_part(&mut s, 4, 3 * q..stops, noon(4));
        all.extend(keyed(&s).into_iter().skip(q));
        let (s, report) = cradle.dock(s, up, &mut |_| {}).unwrap();
        assert!(report.reads_refused >= 1, "{report:?}");
        assert!(
            report.log.iter().any(|l| l.contains("seq_conflict")),
            "{:?}",
            report.log
        );
        assert_eq!(s.unacknowledged(), 0, "every read acknowledged");
        all
    })
    .await
    .unwrap();
    let stored = stored_keys(&state, "HH-R").await;
    for k in &keyed_all {
        assert_eq!(stored.get(k), Some(&1), "{k:?}");
    }
    assert_eq!(stored.len(), keyed_all.len());
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    state.db.shutdown();
}
