//! The clerk's desk: web pages for flagged reads, message codes, field orders, leak adjustments, reports.

/// `[tariff]` settings.
#[derive(Debug, Clone, Default, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TariffConfig {}

/// `[leak_policy]` settings.
#[derive(Debug, Clone, Default, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LeakPolicy {}

/// The clerk pages' routes (merged into the daemon's router by `serve`).
pub fn router() -> axum::Router<crate::serve::AppState> {
    axum::Router::new()
}
