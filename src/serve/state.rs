//! The state every request handler and dock shares, below the handlers that use it (`review`, the
//! rest of `serve`) and above the settings file it holds (`config`).

use super::{health, signin};
use crate::config::Config;
use crate::store::Db;
use crate::sync::{DockBoard, SyncService};
use std::sync::Arc;

/// Everything a request handler or a dock needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    /// The sync engine shared by the HTTP device API and the serial docks.
    pub sync: SyncService,
    /// Live status of the serial docks.
    pub docks: DockBoard,
    /// Sign-in's backoff per (name, address) and its bound on password checks in flight.
    pub signin: Arc<signin::SignInGuard>,
    /// The last health check, shared by `/healthz` callers and the systemd watchdog.
    pub health: Arc<health::HealthCache>,
}

impl AppState {
    pub fn new(db: Db, config: Arc<Config>) -> AppState {
        AppState {
            sync: SyncService::new(db.clone(), config.clone()),
            docks: DockBoard::default(),
            signin: Arc::new(signin::SignInGuard::new(&config.serve)),
            health: Arc::new(health::HealthCache::default()),
            db,
            config,
        }
    }
}

/// A state with the default settings, for tests of any area.
#[cfg(any(test, feature = "test-support"))]
pub fn test_state(db: Db) -> AppState {
    AppState::new(db, Arc::new(Config::default()))
}
