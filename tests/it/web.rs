//! What the HTTP tests share when they drive the router with `oneshot`: a reply read whole, a form
//! body (encoded by the clerk pages' own `review::html::url`), a clerk added with a password.

use crate::fixture;
use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use meter_gateway::domain::UserRole;
use meter_gateway::serve::{self, AppState};
use meter_gateway::store::NewUserSecret;
use serde_json::Value;
use tower::ServiceExt;

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Reply {
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

/// `application/x-www-form-urlencoded` fields.
pub fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", meter_gateway::review::html::url(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A clerk who signs in with `password`.
pub async fn add_clerk(state: &AppState, name: &str, password: &str) {
    let hash = serve::auth::hash_password(password).unwrap();
    let (name, now) = (name.to_string(), fixture::now());
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
