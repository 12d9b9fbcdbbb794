//! The field app: a progressive web app at `/field/` with which a reader reads a route on a phone or a
//! tablet, offline, and syncs through the HTTP device API (PROTOCOL.md §4) like any handheld.
//!
//! The app is plain static files (`assets/`: HTML, CSS and JavaScript modules, no build step),
//! compiled into the binary with `include_str!` and served here. Nothing of it needs a credential: they
//! are the app's own files, the same for everyone; every API call the app makes carries its device
//! token. Every response carries a Content-Security-Policy that allows only the gateway's own scripts,
//! styles and API (no inline script or style, no form submission, no framing).
//!
//! - `index.html`, `app.css`, `app.js`: the screens (pairing, routes and progress, the walk list, the
//!   keying screen).
//! - `sync.js`: the device API client (state identity, sequence numbers, frozen batches with ids
//!   derived from their content, receipts, renumbering after a sequence conflict, routes and codes).
//! - `db.js`: IndexedDB storage, every write of a reading one durable transaction.
//! - `limits.js`: a stop's limits for a read day, PROTOCOL.md §3.6, in exact integer (BigInt)
//!   arithmetic; the browser test holds it to `firmware-protocol/vectors/limits.txt`.
//! - `sw.js`: the service worker that keeps these files for offline use; `version.js` and the
//!   worker carry the app's version, a hash of the files, so a new gateway's files replace the old.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The policy every file of the app is served with: the gateway's own scripts, styles, images, API
/// and service worker only; no inline script or style; no form is ever submitted (the app's forms are
/// handled by script, and their fields have no names); no framing.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; manifest-src 'self'; worker-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// Where the app lives.
pub const PATH: &str = "/field/";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    text: &'static str,
}

/// The app's files as written (`sw.js` and `version.js` are templates, filled in by [`app`]).
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        text: include_str!("assets/index.html"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        text: include_str!("assets/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        text: include_str!("assets/app.js"),
    },
    Asset {
        name: "sync.js",
        content_type: "text/javascript; charset=utf-8",
        text: include_str!("assets/sync.js"),
    },
    Asset {
        name: "db.js",
        content_type: "text/javascript; charset=utf-8",
        text: include_str!("assets/db.js"),
    },
    Asset {
        name: "limits.js",
        content_type: "text/javascript; charset=utf-8",
        text: include_str!("assets/limits.js"),
    },
    Asset {
        name: "version.js",
        content_type: "text/javascript; charset=utf-8",
        text: include_str!("assets/version.js"),
    },
    Asset {
        name: "manifest.webmanifest",
        content_type: "application/manifest+json",
        text: include_str!("assets/manifest.webmanifest"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        text: include_str!("assets/icon.svg"),
    },
    Asset {
        name: "sw.js",
        content_type: "text/javascript; charset=utf-8",
        text: include_str!("assets/sw.js"),
    },
];

/// One file as served.
pub struct Served {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: String,
    /// A strong validator: the SHA-256 of the body.
    pub etag: String,
}

/// The app as served: its version and its files.
pub struct App {
    /// 16 hex digits of the SHA-256 of every file as written.
    pub version: String,
    pub files: Vec<Served>,
}

impl App {
    pub fn file(&self, name: &str) -> Option<&Served> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// The URL the service worker keeps for a file (the page is kept as `/field/`).
fn url_of(name: &str) -> String {
    if name == "index.html" {
        PATH.to_string()
    } else {
        format!("{PATH}{name}")
    }
}

/// The app's files with the version written into `version.js` and `sw.js` (with the list of files
/// the worker keeps), computed once.
pub fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let mut hash = Sha256::new();
        for a in ASSETS {
            hash.update(a.name.as_bytes());
            hash.update([0]);
            hash.update(a.text.as_bytes());
            hash.update([0]);
        }
        let version: String = hash
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        let kept: Vec<String> = ASSETS
            .iter()
            .filter(|a| a.name != "sw.js")
            .map(|a| url_of(a.name))
            .collect();
        let kept = serde_json::to_string(&kept).unwrap_or_else(|_| "[]".into());
        let files = ASSETS
            .iter()
            .map(|a| {
                let body = match a.name {
                    "sw.js" => a
                        .text
                        .replace("%VERSION%", &version)
                        .replace("%FILES%", &kept),
                    "version.js" => a.text.replace("%VERSION%", &version),
                    _ => a.text.to_string(),
                };
                let etag = format!("\"{}\"", crate::auth::sha256_hex(body.as_bytes()));
                Served {
                    name: a.name,
                    content_type: a.content_type,
                    body,
                    etag,
                }
            })
            .collect();
        App { version, files }
    })
}

/// `/field/`, `/field/{file}` (and `/field`, which leads to `/field/`). No credential: these are the
/// app's own files.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/field", get(to_the_app))
        .route("/field/", get(page))
        .route("/field/{file}", get(asset))
}

/// `GET /field`: the app's address is `/field/` (the service worker's scope).
async fn to_the_app() -> Redirect {
    Redirect::permanent(PATH)
}

async fn page(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers)
}

/// The security headers of every file of the app.
pub fn security_headers() -> [(HeaderName, HeaderValue); 5] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // Always revalidated: the service worker is what keeps the files for offline use.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ]
}

/// The app's routes for the OpenAPI document: static files, no credential (`security: []`).
pub fn openapi_paths() -> serde_json::Value {
    let file = |description: &str| {
        serde_json::json!({ "description": description,
            "content": { "*/*": { "schema": { "type": "string" } } } })
    };
    serde_json::json!({
        "/field": { "get": { "summary": "The field app's address: to /field/ (no credential)",
            "tags": ["field app"], "security": [],
            "responses": { "308": { "description": "To /field/" } } } },
        "/field/": { "get": { "summary": "The field app, a progressive web app for reading routes on a \
            phone (no credential: a static page; every API call it makes carries its device token)",
            "tags": ["field app"], "security": [],
            "responses": { "200": file("The app's page"),
                "304": { "description": "Not modified (If-None-Match)" } } } },
        "/field/{file}": { "get": { "summary": "A static file of the field app: script, style, \
            manifest, icon, service worker (no credential)",
            "tags": ["field app"], "security": [],
            "parameters": [{ "name": "file", "in": "path", "required": true,
                "schema": { "type": "string" }, "description": "e.g. app.js, sw.js" }],
            "responses": { "200": file("The file"),
                "304": { "description": "Not modified (If-None-Match)" },
                "404": { "description": "No such file" } } } },
    })
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(file) = app().file(name) else {
        return (
            StatusCode::NOT_FOUND,
            security_headers(),
            "no such file of the field app\n",
        )
            .into_response();
    };
    let etag = HeaderValue::from_str(&file.etag).unwrap_or(HeaderValue::from_static("\"\""));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == file.etag));
    if fresh {
        return (
            StatusCode::NOT_MODIFIED,
            security_headers(),
            [(header::ETAG, etag)],
        )
            .into_response();
    }
    (
        StatusCode::OK,
        security_headers(),
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(file.content_type),
            ),
            (header::ETAG, etag),
        ],
        file.body.clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, if_none_match: Option<&str>) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder().uri(path);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        let r = router::<()>()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn every_file_is_served_with_its_type_and_the_policy() {
        for a in ASSETS {
            let (status, headers, body) = get(&url_of(a.name), None).await;
            assert_eq!(status, StatusCode::OK, "{}", a.name);
            assert_eq!(headers[header::CONTENT_TYPE], a.content_type, "{}", a.name);
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert!(!body.is_empty());
            assert!(!body.contains("%VERSION%"), "{} has its version", a.name);
        }
        let (status, _, _) = get("/field/nothing.js", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, headers, _) = get("/field", None).await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(headers[header::LOCATION], "/field/");
    }

    #[tokio::test]
    async fn a_file_the_phone_holds_is_not_sent_again() {
        let (_, headers, _) = get("/field/app.js", None).await;
        let tag = headers[header::ETAG].to_str().unwrap().to_string();
        let (status, _, body) = get("/field/app.js", Some(&tag)).await;
        assert_eq!((status, body.as_str()), (StatusCode::NOT_MODIFIED, ""));
        let (status, _, _) = get("/field/app.js", Some("\"other\"")).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[test]
    fn the_worker_keeps_every_file_and_knows_the_version() {
        let app = app();
        let sw = &app.file("sw.js").unwrap().body;
        assert!(sw.contains(&format!("const VERSION = \"{}\"", app.version)));
        for a in ASSETS.iter().filter(|a| a.name != "sw.js") {
            assert!(
                sw.contains(&format!("\"{}\"", url_of(a.name))),
                "{} kept offline",
                a.name
            );
        }
        let version = &app.file("version.js").unwrap().body;
        assert!(version.contains(&app.version));
    }

    /// The policy forbids inline script and style: the page must not need them (they would be
    /// blocked), and script must not write markup from data (every value goes in as text).
    #[test]
    fn the_page_needs_no_inline_script_or_style_and_script_writes_no_markup() {
        let html = app().file("index.html").unwrap().body.to_ascii_lowercase();
        for tag in html.split('<').skip(1) {
            let name = tag.split([' ', '>', '\n']).next().unwrap_or_default();
            if name == "script" {
                assert!(tag.contains(" src="), "inline script: <{tag}");
            }
            assert_ne!(name, "style", "inline <style>");
            assert!(!tag.contains(" style="), "style attribute: <{tag}");
            let attrs = tag.split('>').next().unwrap_or_default();
            assert!(
                !attrs.split_whitespace().any(|a| a.starts_with("on")),
                "inline handler: <{tag}"
            );
            if ["input", "textarea", "select"].contains(&name) {
                assert!(
                    !attrs.contains(" name="),
                    "a named field would be submitted: <{tag}"
                );
            }
        }
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "console.",
            ] {
                assert!(!a.text.contains(banned), "{} uses {banned}", a.name);
            }
        }
    }
}
