//! What stands between a sign-in attempt and argon2: a backoff per (user name, client address) and a
//! bound on the password checks in flight.
//!
//! - **At most one check per (name, address) at a time**, decided under one lock: an attempt for a
//!   pair whose check is running is answered 429 at once, without a check. So a burst of wrong
//!   passwords for one name from one address costs one argon2 run, however many arrive together.
//! - **Backoff, not lockout.** The first `[serve] login_free_failures` failures in a row of a pair
//!   cost nothing; after that the pair waits 1 s, 2 s, 4 s ... (at most `login_backoff_max_secs`)
//!   after its last failure before its next attempt is checked; earlier attempts get 429 with
//!   `Retry-After`. The pair is the key: the same name from another address (the clerk at her own
//!   desk while someone guesses from elsewhere) and other names from the same address (the office's
//!   one NAT address) are not slowed at all. A success clears its pair; failures older than
//!   `login_forget_minutes` are forgotten.
//! - **Bounded argon2 work.** Each check hashes with 19 MiB of memory; at most
//!   `login_checks_in_flight` run at once (a semaphore), each on one of that many threads of their
//!   own, which keeps its 19 MiB for the next check. (On the runtime's blocking pool, with a fresh
//!   allocation per check, the allocator held about 100 MB per thread that had run checks: 830 MB
//!   after 155 checks two at a time.) An attempt that cannot start its check within `login_queue_ms` gets 429,
//!   so a flood of attempts for many names keeps the daemon's memory flat.
//!
//! The pairs' counts live here and in `login_attempts` (the store); a pair not in memory (after a
//! restart, or evicted) is read back from the store before its first check.

use super::error::AppError;
use super::settings::ServeConfig;
use crate::store::Db;
use chrono::NaiveDateTime;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Pairs kept in memory; past this, settled pairs are dropped (they are read back from the store).
const MAX_PAIRS: usize = 10_000;

type Pair = (String, String);

/// A password check, given the argon2 memory its thread keeps.
type CheckJob = Box<dyn FnOnce(&mut Vec<argon2::Block>) + Send>;

#[derive(Debug, Default)]
struct PairState {
    /// Failures in a row, not yet forgotten.
    failures: u32,
    last_failure: Option<NaiveDateTime>,
    /// A check (or the read of the pair from the store) is running.
    in_flight: bool,
}

/// The sign-in guard of one daemon ([`super::AppState::signin`]).
pub struct SignInGuard {
    checks: tokio::sync::Semaphore,
    /// The threads that run the checks (they end when the guard is dropped).
    checkers: mpsc::Sender<CheckJob>,
    pairs: Mutex<HashMap<Pair, PairState>>,
    checked: AtomicU64,
    cfg: ServeConfig,
}

/// Why an attempt is answered without a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotNow {
    /// Another attempt for this name from this address is being checked.
    Busy,
    /// The pair's backoff: its next attempt is checked in this many seconds.
    Backoff(u64),
    /// Too many checks for other attempts are running.
    Crowded,
}

impl NotNow {
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            NotNow::Busy | NotNow::Crowded => 1,
            NotNow::Backoff(s) => (*s).max(1),
        }
    }

    pub fn message(&self) -> String {
        match self {
            NotNow::Busy => "Another sign-in for this name from your address is being checked: try again in a second.".into(),
            NotNow::Backoff(s) => format!(
                "Too many failed sign-ins for this name from your address: try again in {}.",
                if *s < 90 { format!("{} s", (*s).max(1)) } else { format!("{} min", s.div_ceil(60)) }
            ),
            NotNow::Crowded => "The gateway is busy checking other sign-ins: try again in a second.".into(),
        }
    }
}

/// The seconds a pair waits after its last failure before its next attempt is checked.
pub fn backoff_secs(failures: u32, free: u32, max_secs: u64) -> u64 {
    if failures < free {
        return 0;
    }
    let doublings = (failures - free).min(62);
    (1u64 << doublings).min(max_secs)
}

/// A pair's turn to be checked: it holds the pair's "in flight" mark until [`Turn::finish`] (or drop).
pub struct Turn {
    guard: Arc<SignInGuard>,
    pair: Pair,
    done: bool,
}

impl SignInGuard {
    pub fn new(cfg: &ServeConfig) -> SignInGuard {
        let threads = cfg.login_checks_in_flight.max(1);
        let (checkers, jobs) = mpsc::channel::<CheckJob>();
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads {
            let jobs = jobs.clone();
            let started = std::thread::Builder::new()
                .name(format!("signin-check-{i}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        let job = match jobs.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => break,
                        };
                        match job {
                            // A check that panics answers nobody (its caller sees an error); the
                            // thread goes on.
                            Ok(job) => {
                                let _ =
                                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                        job(&mut memory)
                                    }));
                            }
                            Err(_) => break,
                        }
                    }
                });
            if let Err(e) = started {
                tracing::error!(error = %e, "cannot start a sign-in check thread");
            }
        }
        SignInGuard {
            checks: tokio::sync::Semaphore::new(threads),
            checkers,
            pairs: Mutex::new(HashMap::new()),
            checked: AtomicU64::new(0),
            cfg: cfg.clone(),
        }
    }

    /// Password checks run so far.
    pub fn checked(&self) -> u64 {
        self.checked.load(Ordering::Relaxed)
    }

    fn forget_before(&self, now: NaiveDateTime) -> NaiveDateTime {
        now - chrono::Duration::minutes(i64::from(self.cfg.login_forget_minutes))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Pair, PairState>> {
        // A poisoned map holds only counters: go on with them.
        self.pairs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the pair's turn, or says why not now.
    pub async fn turn(
        self: &Arc<Self>,
        db: &Db,
        name: &str,
        client: &str,
        now: NaiveDateTime,
    ) -> Result<Turn, NotNow> {
        let pair = (name.to_string(), client.to_string());
        let known = {
            let mut pairs = self.lock();
            match pairs.get_mut(&pair) {
                Some(p) if p.in_flight => return Err(NotNow::Busy),
                Some(p) => {
                    p.in_flight = true;
                    true
                }
                None => {
                    if pairs.len() >= MAX_PAIRS {
                        self.evict(&mut pairs, now);
                    }
                    pairs.insert(
                        pair.clone(),
                        PairState {
                            in_flight: true,
                            ..PairState::default()
                        },
                    );
                    false
                }
            }
        };
        let mut turn = Turn {
            guard: self.clone(),
            pair,
            done: false,
        };
        if !known {
            // Read back what the store remembers of this pair (a restart forgets nothing).
            let (n, c, since) = (
                name.to_string(),
                client.to_string(),
                self.forget_before(now),
            );
            let seen = db
                .read(move |conn| crate::store::login_failures_in(conn, &n, &c, since))
                .await;
            match seen {
                Ok(Ok((failures, last))) => {
                    if let Some(p) = self.lock().get_mut(&turn.pair) {
                        p.failures = failures;
                        p.last_failure = last;
                    }
                }
                other => {
                    tracing::error!(
                        ?other,
                        "cannot read past sign-in failures; counting from none"
                    );
                }
            }
        }
        let wait = {
            let mut pairs = self.lock();
            let forget = self.forget_before(now);
            let p = pairs.entry(turn.pair.clone()).or_default();
            if p.last_failure.is_some_and(|t| t < forget) {
                p.failures = 0;
                p.last_failure = None;
            }
            let delay = backoff_secs(
                p.failures,
                self.cfg.login_free_failures,
                self.cfg.login_backoff_max_secs,
            );
            p.last_failure
                .map(|t| t + chrono::Duration::seconds(delay as i64) - now)
                .filter(|w| *w > chrono::Duration::zero())
        };
        if let Some(w) = wait {
            turn.release();
            let secs = (w.num_milliseconds().max(0) as u64).div_ceil(1000);
            return Err(NotNow::Backoff(secs));
        }
        Ok(turn)
    }

    /// Drops pairs that hold nothing worth keeping in memory (the store has them all).
    fn evict(&self, pairs: &mut HashMap<Pair, PairState>, now: NaiveDateTime) {
        let forget = self.forget_before(now);
        pairs.retain(|_, p| p.in_flight || p.last_failure.is_some_and(|t| t >= forget));
        if pairs.len() >= MAX_PAIRS {
            pairs.retain(|_, p| p.in_flight);
        }
    }

    /// Runs `check` (argon2) with one of the bounded permits, waiting at most `login_queue_ms`.
    pub async fn check<F>(&self, check: F) -> Result<bool, CheckError>
    where
        F: FnOnce(&mut Vec<argon2::Block>) -> bool + Send + 'static,
    {
        let wait = Duration::from_millis(self.cfg.login_queue_ms);
        let permit = match tokio::time::timeout(wait, self.checks.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) | Err(_) => return Err(CheckError::NotNow(NotNow::Crowded)),
        };
        self.checked.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.checkers
            .send(Box::new(move |memory: &mut Vec<argon2::Block>| {
                let _ = tx.send(check(memory));
            }))
            .map_err(|_| {
                CheckError::Failed(AppError::internal("the sign-in check threads stopped"))
            })?;
        let ok = rx
            .await
            .map_err(|_| CheckError::Failed(AppError::internal("a sign-in check failed")))?;
        drop(permit);
        Ok(ok)
    }
}

/// Why [`SignInGuard::check`] gave no answer.
pub enum CheckError {
    NotNow(NotNow),
    Failed(AppError),
}

impl Turn {
    fn release(&mut self) {
        if !self.done {
            self.done = true;
            if let Some(p) = self.guard.lock().get_mut(&self.pair) {
                p.in_flight = false;
            }
        }
    }

    /// Records the outcome of the pair's check and ends its turn.
    pub fn finish(mut self, ok: bool, now: NaiveDateTime) {
        if let Some(p) = self.guard.lock().get_mut(&self.pair) {
            if ok {
                p.failures = 0;
                p.last_failure = None;
            } else {
                p.failures = p.failures.saturating_add(1);
                p.last_failure = Some(now);
            }
        }
        self.release();
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn at(s: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 5)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap()
            + chrono::Duration::seconds(i64::from(s))
    }

    #[test]
    fn the_backoff_doubles_after_the_free_failures_up_to_its_cap() {
        let d: Vec<u64> = (0..16).map(|f| backoff_secs(f, 5, 300)).collect();
        assert_eq!(
            d,
            [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
        );
        assert_eq!(backoff_secs(u32::MAX, 5, 300), 300);
    }

    #[tokio::test]
    async fn one_check_per_pair_at_a_time_and_the_backoff_is_per_pair() {
        let db = Db::start(Store::open_in_memory().unwrap()).unwrap();
        let cfg = ServeConfig {
            login_free_failures: 2,
            ..ServeConfig::default()
        };
        let g = Arc::new(SignInGuard::new(&cfg));
        let first = g.turn(&db, "ann", "10.0.0.1", at(0)).await.unwrap();
        // The same pair while it is checked: refused at once.
        assert_eq!(
            g.turn(&db, "ann", "10.0.0.1", at(0)).await.err(),
            Some(NotNow::Busy)
        );
        // Another address, another name: their own turns.
        g.turn(&db, "ann", "10.0.0.2", at(0))
            .await
            .unwrap()
            .finish(true, at(0));
        g.turn(&db, "bob", "10.0.0.1", at(0))
            .await
            .unwrap()
            .finish(false, at(0));
        first.finish(false, at(0));
        g.turn(&db, "ann", "10.0.0.1", at(1))
            .await
            .unwrap()
            .finish(false, at(1));
        // Two failures: the third attempt waits a second after the last failure.
        assert_eq!(
            g.turn(&db, "ann", "10.0.0.1", at(1)).await.err(),
            Some(NotNow::Backoff(1))
        );
        g.turn(&db, "ann", "10.0.0.1", at(2))
            .await
            .unwrap()
            .finish(false, at(2));
        assert_eq!(
            g.turn(&db, "ann", "10.0.0.1", at(3)).await.err(),
            Some(NotNow::Backoff(1))
        );
        // ann from her own desk is not slowed, and a success there leaves the other pair as it is.
        g.turn(&db, "ann", "10.0.0.2", at(3))
            .await
            .unwrap()
            .finish(true, at(3));
        assert!(g.turn(&db, "ann", "10.0.0.1", at(3)).await.is_err());
        // A turn dropped without an outcome (the request went away) frees the pair.
        drop(g.turn(&db, "ann", "10.0.0.1", at(4)).await.unwrap());
        g.turn(&db, "ann", "10.0.0.1", at(4))
            .await
            .unwrap()
            .finish(true, at(4));
        g.turn(&db, "ann", "10.0.0.1", at(4)).await.unwrap();
        db.shutdown();
    }

    #[tokio::test]
    async fn a_pair_not_in_memory_is_read_back_from_the_store() {
        let db = Db::start(Store::open_in_memory().unwrap()).unwrap();
        for s in 0..4 {
            db.call(move |st| st.record_login_attempt("ann", "10.0.0.9", false, at(s), at(0)))
                .await
                .unwrap()
                .unwrap();
        }
        let cfg = ServeConfig {
            login_free_failures: 3,
            ..ServeConfig::default()
        };
        let g = Arc::new(SignInGuard::new(&cfg));
        // Four failures, the last at 3 s: the next check waits 2 s after it.
        assert_eq!(
            g.turn(&db, "ann", "10.0.0.9", at(4)).await.err(),
            Some(NotNow::Backoff(1))
        );
        g.turn(&db, "ann", "10.0.0.9", at(5)).await.unwrap();
        db.shutdown();
    }
}
