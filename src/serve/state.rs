//! The state every request handler and dock shares, below the handlers that use it (`review`, the
//! rest of `serve`) and above the settings file it holds (`config`).

use super::{health, signin};
use crate::clock::{Clock, DistrictClock};
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
    /// What time it is in the district (`[district] time_zone`): every handler and extractor reads
    /// the time here, the sync engine's docks too.
    pub clock: DistrictClock,
}

impl AppState {
    /// The state of a daemon on the system clock, in the district's time zone.
    pub fn new(db: Db, config: Arc<Config>) -> AppState {
        let clock = DistrictClock::system(config.district.time_zone);
        AppState {
            sync: SyncService::new(db.clone(), config.clone()).with_clock(clock.clone()),
            clock,
            docks: DockBoard::default(),
            signin: Arc::new(signin::SignInGuard::new(&config.serve)),
            health: Arc::new(health::HealthCache::default()),
            db,
            config,
        }
    }

    /// The same state reading `clock` (a fixed one in tests), still in the district's time zone;
    /// the sync engine reads it too.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> AppState {
        self.clock = DistrictClock::new(clock, self.config.district.time_zone);
        self.sync = self.sync.with_clock(self.clock.clone());
        self
    }

    /// District local time now: what every handler and extractor calls "now".
    pub fn now_local(&self) -> chrono::NaiveDateTime {
        self.clock.now_local()
    }
}

/// A state with the default settings, for tests of any area.
#[cfg(any(test, feature = "test-support"))]
pub fn test_state(db: Db) -> AppState {
    AppState::new(db, Arc::new(Config::default()))
}
