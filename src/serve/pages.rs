//! The front door (`GET /`), the sign-in page (`GET/POST /login`) and sign-out (`POST /logout`).
//!
//! `/` shows nothing: it sends a signed-in clerk or admin to the exception queue (`/review`) and anyone
//! else to the sign-in page, which after sign-in lands on the queue too (unless it was reached from
//! another page, which it goes back to).
//!
//! Sign-in attempts go through [`super::signin`]: one check at a time per (user name, client
//! address), a backoff after repeated failures of that pair (429 with `Retry-After`, the page saying
//! when to try again; other addresses and other names are not slowed), and a bound on the argon2
//! checks running at once. An unknown name costs the same argon2 work as a wrong password, so timing
//! does not tell which names exist. A form whose CSRF token does not match is answered 403 with the
//! page again, saying so.

use super::auth::{
    check_csrf, client_address, cookie, cookie_header, random_hex, start_session,
    verify_password_in, ClerkUser, LOGIN_CSRF_COOKIE, MAX_PASSWORD_CHARS, SESSION_COOKIE,
};
use super::error::AppError;
use super::signin::{CheckError, NotNow};
use super::AppState;
use crate::auth::sha256_hex;
use crate::review::html::esc;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;
use std::sync::OnceLock;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(front_door))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

/// Where sign-in lands when no page asked for it: the exception queue.
const HOME: &str = "/review";

/// `GET /`: a redirect (307), never a page, so it needs no credential: to the exception queue with a
/// clerk's or admin's session, to the sign-in page without one.
async fn front_door(user: Result<ClerkUser, AppError>) -> Result<Response, AppError> {
    match user {
        Ok(_) => Ok(Redirect::temporary(HOME).into_response()),
        Err(AppError::SignIn { .. } | AppError::Unauthorized | AppError::Forbidden) => {
            Ok(Redirect::temporary("/login").into_response())
        }
        Err(e) => Err(e),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// Only a local path may be a redirect target after sign-in (no `//host`, no scheme): no open redirect.
/// Anything else, an empty `next` included, lands on the exception queue.
fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control());
    if local {
        next
    } else {
        HOME
    }
}

/// The sign-in page's style sheet (inline, allowed by its hash in the Content-Security-Policy).
pub const LOGIN_STYLE: &str =
    "body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}\
label{display:block;margin-top:1rem}input{width:100%;padding:.4rem;font-size:1rem}\
button{margin-top:1.5rem;padding:.5rem 1.5rem;font-size:1rem}.error{color:#a00}\
:focus{outline:3px solid #2a6fdb}";

fn login_html(csrf: &str, next: &str, name: &str, message: Option<&str>) -> String {
    let message = message
        .map(|m| format!("<p role=\"alert\" class=\"error\">{}</p>", esc(m)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Sign in · meter-gateway</title>\
<style>{LOGIN_STYLE}</style></head>\n<body><main>\n<h1>Sign in</h1>\n{message}\
<form method=\"post\" action=\"/login\">\n\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
<input type=\"hidden\" name=\"next\" value=\"{next}\">\n\
<label for=\"name\">User name</label>\n\
<input id=\"name\" name=\"name\" autocomplete=\"username\" required autofocus value=\"{name}\">\n\
<label for=\"password\">Password</label>\n\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\n\
<button type=\"submit\">Sign in</button>\n</form>\n</main></body></html>\n",
        csrf = esc(csrf),
        next = esc(next),
        name = esc(name),
    )
}

/// A page with a fresh sign-in CSRF token (set as a cookie and embedded in the form).
fn login_response(
    state: &AppState,
    status: StatusCode,
    next: &str,
    name: &str,
    message: Option<&str>,
) -> Result<Response, AppError> {
    let token = random_hex(32).map_err(AppError::internal)?;
    let set = cookie_header(state, LOGIN_CSRF_COOKIE, &token, 3600);
    Ok((
        status,
        [
            (header::SET_COOKIE, set),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Html(login_html(&token, safe_next(next), name, message)),
    )
        .into_response())
}

async fn login_page(
    State(state): State<AppState>,
    Query(q): Query<NextQuery>,
) -> Result<Response, AppError> {
    login_response(&state, StatusCode::OK, &q.next, "", None)
}

/// A valid argon2id hash of a random password, verified against when the name is unknown so that
/// the answer takes as long as for a known name.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let password = random_hex(16).unwrap_or_else(|_| "decoy-password-0".into());
        super::auth::hash_password(&password).unwrap_or_default()
    })
}

async fn login(
    State(state): State<AppState>,
    Extension(client): Extension<ClientAddress>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, AppError> {
    let Form(form) = form?;
    let name = form.name.trim().to_string();
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    if expected.is_empty() || !crate::auth::constant_time_eq(expected, &form.csrf) {
        tracing::info!(user = %name, client = %client.0, "sign-in refused: CSRF token mismatch");
        return login_response(
            &state,
            StatusCode::FORBIDDEN,
            &form.next,
            &name,
            Some(CSRF_MESSAGE),
        );
    }
    let now = state.now_local();
    let client = client.0;
    let turn = match state.signin.turn(&state.db, &name, &client, now).await {
        Ok(t) => t,
        Err(why) => return not_now(&state, &form.next, &name, &client, &why),
    };
    let password = form.password;
    let ok = if password.chars().count() > MAX_PASSWORD_CHARS {
        false
    } else {
        let n = name.clone();
        let stored = state
            .db
            .read(move |c| crate::store::password_hash_in(c, &n))
            .await??;
        let hash = stored
            .as_ref()
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| decoy_hash().to_string());
        let known = stored.is_some();
        // argon2 takes tens of milliseconds of CPU and 19 MiB: bounded, and off the async workers.
        match state
            .signin
            .check(move |memory| verify_password_in(&hash, &password, memory) && known)
            .await
        {
            Ok(ok) => ok,
            Err(CheckError::NotNow(why)) => {
                drop(turn);
                return not_now(&state, &form.next, &name, &client, &why);
            }
            Err(CheckError::Failed(e)) => return Err(e),
        }
    };
    turn.finish(ok, now);
    let keep_since =
        now - chrono::Duration::minutes(i64::from(state.config.serve.login_forget_minutes));
    let (n, c) = (name.clone(), client.clone());
    state
        .db
        .call(move |s| s.record_login_attempt(&n, &c, ok, now, keep_since))
        .await??;
    if !ok {
        tracing::info!(user = %name, client = %client, "sign-in failed");
        return login_response(
            &state,
            StatusCode::UNAUTHORIZED,
            &form.next,
            &name,
            Some("Wrong user name or password."),
        );
    }
    let (session, _csrf) = start_session(&state, &name, now).await?;
    tracing::info!(user = %name, client = %client, "signed in");
    let max_age = i64::from(state.config.serve.session_minutes) * 60;
    let mut response = Redirect::to(safe_next(&form.next)).into_response();
    let h = response.headers_mut();
    for value in [
        cookie_header(&state, SESSION_COOKIE, &session, max_age),
        cookie_header(&state, LOGIN_CSRF_COOKIE, "", 0),
    ] {
        h.append(
            header::SET_COOKIE,
            value.parse().map_err(AppError::internal)?,
        );
    }
    Ok(response)
}

/// What the sign-in page says when its form token does not match.
const CSRF_MESSAGE: &str = "This sign-in form has expired or did not come from this gateway (its \
    security token did not match). Sign in again on this page.";

/// An attempt answered without a check: 429, `Retry-After`, the page saying when to try again.
fn not_now(
    state: &AppState,
    next: &str,
    name: &str,
    client: &str,
    why: &NotNow,
) -> Result<Response, AppError> {
    tracing::warn!(user = %name, client = %client, reason = ?why, "sign-in not checked");
    let mut r = login_response(
        state,
        StatusCode::TOO_MANY_REQUESTS,
        next,
        name,
        Some(&why.message()),
    )?;
    r.headers_mut().insert(
        header::RETRY_AFTER,
        why.retry_after_secs()
            .to_string()
            .parse()
            .map_err(AppError::internal)?,
    );
    Ok(r)
}

async fn logout(
    State(state): State<AppState>,
    user: ClerkUser,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, AppError> {
    let Form(form) = form?;
    check_csrf(&user, &form.csrf)?;
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        let hash = sha256_hex(id.as_bytes());
        state.db.call(move |s| s.delete_session(&hash)).await??;
    }
    tracing::info!(user = %user.name, "signed out");
    Ok((
        [(
            header::SET_COOKIE,
            cookie_header(&state, SESSION_COOKIE, "", 0),
        )],
        Redirect::to("/login"),
    )
        .into_response())
}

/// The client's address, put in the request extensions by a middleware of [`super::router`] (it is
/// "unknown" when there is no socket, as in router tests).
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

pub(crate) async fn client_address_layer(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let address = client_address(request.extensions());
    request.extensions_mut().insert(ClientAddress(address));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next("/review?cycle=1"), "/review?cycle=1");
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil",
            "",
            "review",
        ] {
            assert_eq!(safe_next(bad), "/review", "{bad}");
        }
    }

    #[test]
    fn the_sign_in_page_escapes_what_it_echoes() {
        let html = login_html("tok", "/x\"><script>", "<b>ann</b>", Some("a < b"));
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>ann"));
        assert!(html.contains("a &lt; b"));
        assert!(html.contains("name=\"csrf\" value=\"tok\""));
    }
}
