//! What every response carries and what every POST must pass before a handler sees it.
//!
//! - **Headers** ([`headers`]), on every response (pages, API answers, errors, redirects): a
//!   Content-Security-Policy that allows no script or style but the gateway's own inline ones, by
//!   hash (the worklist's j/k keys, the pages' style sheet, the sign-in page's), no frames
//!   (`frame-ancestors 'none'` and `X-Frame-Options: DENY`), forms posted only to the gateway,
//!   `X-Content-Type-Options: nosniff` and `Referrer-Policy: same-origin` (worklist URLs carry searches
//!   for customers' names, never sent to another site; `no-referrer` would also make browsers send
//!   `Origin: null` on the gateway's own form posts).
//! - **Cross-site POSTs** ([`refuse_unsafe_posts`]): a POST, PUT, PATCH or DELETE without an
//!   `Authorization` header (so authenticated by a cookie, or not at all) whose `Origin` is not the
//!   gateway's own (its `Host`, or one of `[serve] allowed_origins`), or whose `Sec-Fetch-Site` says
//!   another site sent it, is refused 403, in addition to the forms' CSRF tokens and the session
//!   cookie's `SameSite=Strict`. Clients that send no `Origin` (scripts) are not browsers on another
//!   site's page; a bearer token is never sent by a browser on its own.
//! - **Refused characters** in forms: every field of a posted form (but a password) is checked for
//!   NUL and bidirectional controls ([`crate::text`]) and the form refused 400 naming the field.

use super::error::AppError;
use super::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Every inline `<script>` the gateway serves (their text exactly).
fn inline_scripts() -> [&'static str; 1] {
    [crate::review::queue::QUEUE_SCRIPT]
}

/// Every inline `<style>` the gateway serves.
fn inline_styles() -> [&'static str; 2] {
    [crate::review::html::STYLE, super::pages::LOGIN_STYLE]
}

/// `'sha256-…'` of an inline script or style, as CSP lists it.
pub fn csp_hash(text: &str) -> String {
    format!("'sha256-{}'", base64(&Sha256::digest(text.as_bytes())))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The Content-Security-Policy of every response.
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let scripts: Vec<String> = inline_scripts().iter().map(|s| csp_hash(s)).collect();
        let styles: Vec<String> = inline_styles().iter().map(|s| csp_hash(s)).collect();
        format!(
            "default-src 'none'; script-src {}; style-src {}; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            scripts.join(" "),
            styles.join(" ")
        )
    })
}

/// Adds the security headers to every response.
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    // A response that sets its own (the field app's files: their scripts are files, not inline)
    // keeps it.
    let h = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(content_security_policy()) {
        h.entry(header::CONTENT_SECURITY_POLICY).or_insert(csp);
    }
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("same-origin"));
    response
}

/// Whether a request's `Origin` and `Sec-Fetch-Site` say it came from the gateway's own pages (or
/// from no browser page at all); `Err` says where it came from.
pub fn same_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site.trim(), "same-origin" | "none") {
            return Err(format!("a page of another site ({site})"));
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .map_err(|_| "an unreadable Origin".to_string())?;
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .unwrap_or("");
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(format!("Origin {origin}"))
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// An error as a page for a browser, as JSON for anyone else.
fn refuse(html: bool, e: AppError) -> Response {
    if html {
        let page = crate::review::html::error_page(e.status().as_u16(), &e.to_string());
        return (
            e.status(),
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page.into_string(),
        )
            .into_response();
    }
    e.into_response()
}

/// Refuses a cross-site POST and a form with a refused character (see the module).
pub async fn refuse_unsafe_posts(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let html = wants_html(request.headers());
    // Only what a browser attaches by itself (cookies) can be forged by another site's page; a request
    // with an `Authorization` header (a handheld, the field app, the billing run) cannot come from one
    // without a CORS preflight the gateway never answers. (The field app's pages send `Origin: null`.)
    let bearer = request.headers().contains_key(header::AUTHORIZATION);
    let checked = if bearer {
        Ok(())
    } else {
        same_origin(request.headers(), &state.config.serve.allowed_origins)
    };
    if let Err(from) = checked {
        tracing::warn!(from = %from, path = %request.uri().path(), "cross-site request refused");
        return refuse(html, AppError::CrossSite(from));
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes()
                .starts_with(b"application/x-www-form-urlencoded")
        });
    if !is_form {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, state.config.serve.max_form_bytes).await {
        Ok(b) => b,
        Err(_) => return refuse(html, AppError::PayloadTooLarge),
    };
    // A body that does not decode is the handler's to refuse (with its own message).
    if let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes) {
        // A password is nobody's id, name or note, and is never shown: it may hold anything.
        for (name, value) in fields.iter().filter(|(name, _)| name != "password") {
            let checked =
                crate::text::check(&format!("field `{}`", crate::text::shown(name)), name)
                    .and_then(|()| crate::text::check(&format!("field `{name}`"), value));
            if let Err(e) = checked {
                return refuse(html, AppError::BadRequest(e.to_string()));
            }
        }
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_vectors() {
        for (input, out) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), out);
        }
        // Python: base64.b64encode(hashlib.sha256(b"alert('x')").digest())
        assert_eq!(
            csp_hash("alert('x')"),
            "'sha256-JPoFjrDvGjII2ZQr0zVCLdwImped9XUzr7nzeL7Ser0='"
        );
    }

    #[test]
    fn the_policy_allows_each_inline_script_and_style_by_hash_and_nothing_else() {
        let csp = content_security_policy();
        for s in inline_scripts().iter().chain(inline_styles().iter()) {
            assert!(csp.contains(&csp_hash(s)), "{csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
    }

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn only_the_gateways_own_origin_may_post() {
        let allowed = vec!["https://gateway.example.org".to_string()];
        for ok in [
            h(&[("host", "127.0.0.1:8080")]),
            h(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ]),
            h(&[
                ("host", "10.0.0.5"),
                ("origin", "https://gateway.example.org"),
            ]),
            h(&[
                ("host", "a:1"),
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://a:1"),
            ]),
            h(&[("host", "a:1"), ("sec-fetch-site", "none")]),
        ] {
            assert_eq!(same_origin(&ok, &allowed), Ok(()), "{ok:?}");
        }
        for bad in [
            h(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ]),
            h(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8081"),
            ]),
            h(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            h(&[("host", "a:1"), ("sec-fetch-site", "cross-site")]),
            h(&[
                ("host", "a:1"),
                ("sec-fetch-site", "same-site"),
                ("origin", "http://a:1"),
            ]),
            h(&[("origin", "http://a:1")]),
        ] {
            assert!(same_origin(&bad, &allowed).is_err(), "{bad:?}");
        }
    }
}
