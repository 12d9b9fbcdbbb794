//! Integration tests: the daemon's HTTP API (router driven with `oneshot`) and the `serve` binary.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use chrono::NaiveDateTime;
use meter_gateway::cli::UserRole;
use meter_gateway::demo::{self, DemoParams};
use meter_gateway::serve::{self, openapi, AppState};
use meter_gateway::store::{Db, NewUserSecret, Store};
use serde_json::{json, Value};
use std::net::SocketAddr;
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

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

async fn add_clerk(state: &AppState, name: &str, password: &str) {
    let hash = serve::auth::hash_password(password).unwrap();
    let (name, now) = (name.to_string(), now());
    state
        .db
        .call(move |s| {
            s.add_user(
                &name,
                UserRole::Clerk,
                NewUserSecret::PasswordHash(&hash),
                now,
            )
        })
        .await
        .unwrap()
        .unwrap();
}

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

fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
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

#[tokio::test]
async fn five_failures_lock_the_user_name_and_the_client_address_for_the_window() {
    let state = state();
    let app = serve::router(state.clone());
    add_clerk(&state, "carla", "water under the bridge").await;
    add_clerk(&state, "dora", "another long password").await;
    let token = login_form_token(&app).await;
    for i in 0..5 {
        let client = format!("10.0.1.{i}");
        let r = post_login(&app, &token, "carla", "guess", &client).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // The right password from a fresh address: the name is locked.
    let r = post_login(&app, &token, "carla", "water under the bridge", "10.0.2.1").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers[header::RETRY_AFTER], "900");
    // Another user is unaffected...
    let r = post_login(&app, &token, "dora", "another long password", "10.0.2.1").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // ...until one address has tried five names.
    for name in ["a1", "a2", "a3", "a4", "a5"] {
        let r = post_login(&app, &token, name, "guess", "10.0.3.9").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = post_login(&app, &token, "dora", "another long password", "10.0.3.9").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

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
    let batch = json!({ "batch_id": "HH-07-0001", "reads": reads });
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
    assert_eq!(receipt2["stored"], json!(0));
    assert_eq!(receipt2["already_received"], json!(n));
    // The same reads under a new batch id are recognised by device sequence.
    let renamed = json!({ "batch_id": "HH-07-0002", "reads": batch["reads"] });
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
async fn a_malformed_batch_is_refused_with_the_reason_and_stores_nothing() {
    let (state, _) = district().await;
    let app = serve::router(state.clone());
    let token = serve::device_token_for_tests(&state, "HH-03").await;
    let read = |t: &str| {
        json!({ "device_seq": 1, "meter_id": "M1", "reading": 5, "read_time": "2026-10-06T09:00:00",
                "read_type": t, "method": "keyed", "reader_id": "JD" })
    };
    let r = send(
        &app,
        upload(
            &token,
            &json!({ "batch_id": "b1", "reads": [read("regular"), read("psychic")] }),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"].as_str().unwrap().contains("psychic"));
    let r = send(
        &app,
        upload(&token, &json!({ "batch_id": "", "reads": [] })),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = send(&app, upload(&token, &json!({ "reads": [] }))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(device_reads(&state, "HH-03").await, 0);
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
