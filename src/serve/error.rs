//! The one error type of HTTP handlers. Internal failures are logged with their detail and answered
//! with a bare 500: a client never sees SQL, paths or panics.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed or its content is refused (the message is safe to show).
    #[error("{0}")]
    BadRequest(String),
    /// No credential, or one that does not check out.
    #[error("a valid credential is required")]
    Unauthorized,
    /// A page a browser asked for without a session: send it to the sign-in page, then back.
    #[error("sign in first")]
    SignIn { next: String },
    /// The credential is valid but its role may not do this.
    #[error("this account may not do that")]
    Forbidden,
    /// A form whose CSRF token is not the session's.
    #[error("this form has expired or did not come from this gateway (its security token did not match): reload the page and try again")]
    Csrf,
    /// A POST a page of another site sent (its `Origin` or `Sec-Fetch-Site`).
    #[error("refused: this request came from {0}, not from the gateway's own pages")]
    CrossSite(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A 409 the client can act on by its machine-readable `code` (e.g. `batch_conflict`: send the
    /// reads again under a new batch id).
    #[error("{message}")]
    ConflictCode { code: &'static str, message: String },
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// Too large in a way the message explains (413).
    #[error("{0}")]
    TooLarge(String),
    #[error("too many attempts; try again in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// Anything the client cannot fix: logged, answered as a bare 500.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The body of every error the API answers in JSON.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorJson {
    /// What went wrong, for a person.
    pub error: String,
    /// For a 409 a client can act on: `batch_conflict` (send the reads again under a new batch id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl AppError {
    pub fn internal(e: impl std::fmt::Display) -> AppError {
        AppError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::SignIn { .. } => StatusCode::SEE_OTHER,
            AppError::Forbidden | AppError::Csrf | AppError::CrossSite(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) | AppError::ConflictCode { .. } => StatusCode::CONFLICT,
            AppError::PayloadTooLarge | AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::store::DbError> for AppError {
    fn from(e: crate::store::DbError) -> Self {
        AppError::internal(e)
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        AppError::internal(e)
    }
}

impl From<axum::extract::rejection::JsonRejection> for AppError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge
        } else {
            AppError::BadRequest(e.body_text())
        }
    }
}

impl From<axum::extract::rejection::FormRejection> for AppError {
    fn from(e: axum::extract::rejection::FormRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge
        } else {
            AppError::BadRequest(e.body_text())
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let message = match &self {
            AppError::SignIn { next } => {
                let target = format!("/login?next={}", percent_encode(next));
                return Redirect::to(&target).into_response();
            }
            AppError::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let status = self.status();
        let body = ErrorJson {
            error: message,
            code: match &self {
                AppError::ConflictCode { code, .. } => Some((*code).to_string()),
                _ => None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        match &self {
            AppError::Unauthorized => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"meter-gateway\""),
                );
            }
            AppError::TooManyRequests { retry_after_secs } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        response
    }
}

/// Answers a refusal axum's extractors wrote as plain text (a malformed path or query value, a body
/// that is not a form or not JSON) as [`ErrorJson`], like every other error of the API.
pub async fn rejections_as_json(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !response.status().is_client_error() || !plain {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let json = ErrorJson {
        error: if text.is_empty() {
            parts
                .status
                .canonical_reason()
                .unwrap_or("refused")
                .to_string()
        } else {
            text
        },
        code: None,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let bytes = serde_json::to_vec(&json).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Percent-encodes everything but unreserved characters and `/` (for a path in a query string).
pub(crate) fn percent_encode(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_is_answered_without_its_detail() {
        let r = AppError::internal("no such table: secrets at /var/db").into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = futures_body(r);
        assert!(!body.contains("secrets"), "{body}");
    }

    #[test]
    fn a_sign_in_redirect_keeps_the_page_asked_for() {
        let r = AppError::SignIn {
            next: "/review?cycle=2026 11&x=1".into(),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            r.headers()[header::LOCATION],
            "/login?next=/review%3Fcycle%3D2026%2011%26x%3D1"
        );
    }

    fn futures_body(r: Response) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt
            .block_on(axum::body::to_bytes(r.into_body(), 1 << 16))
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}
