//! The daemon's database handle: one writer thread owns the connection; everyone else sends it work.
//!
//! rusqlite blocks, so async code must not call it on a runtime worker, and SQLite allows one writer at
//! a time anyway. [`Db`] is a cheap, cloneable handle: [`Db::call`] runs a closure on the writer thread
//! and answers through a oneshot channel (awaitable from async code, or `blocking_*` from a serial
//! thread).
//!
//! **Group commit.** With `synchronous=FULL` every commit costs an fsync. Work sent with
//! [`Db::grouped`] (handheld read uploads) is batched: the writer takes every grouped job already
//! queued, runs each inside its own savepoint of ONE transaction, commits once, and only then answers
//! them all. A job whose work fails rolls back its savepoint alone. No caller hears "stored" before the
//! commit that stored it has returned, so an acknowledgement sent on that answer is durable.
//!
//! **Readers.** Work that only reads (judging an upload against the district) runs on read-only
//! connections ([`Db::read`], [`Db::read_blocking`]), each in one read transaction, so it proceeds in
//! parallel with the writer (WAL). What such work computed is only valid while the district it read
//! is unchanged: the **district epoch** ([`Db::district_epoch`]) counts everything that may have
//! changed it (every [`Db::call`] that committed to the database, and commits by other processes);
//! grouped work compares the epoch its read started under with the current one and recomputes on
//! the writer when they differ. Grouped work itself (read uploads) must not change what readers
//! judge with (meters, accounts, history, cycles).
//!
//! **A job that panics** (a bug) is caught on the writer: that job's caller is answered
//! [`DbError::Panicked`] (its transaction or savepoint rolled back) and the writer goes on with the
//! next job, so one bad request never leaves the daemon answering 500 to everyone.
//!
//! **Health.** [`Db::check_health`] says whether the writer is alive (its thread running, no job
//! stuck on it), answers, and can still write to the database (a probe commit, SQLite's page limit,
//! free space on the file system).

use super::{Store, StoreError};
use rusqlite::{Connection, TransactionBehavior};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most grouped jobs committed together; bounds the latency a large group adds to its first member.
const MAX_GROUP: usize = 128;

/// Runs on the writer and returns how to answer its caller; the writer answers once the district
/// epoch accounts for the call, so a caller who reads the epoch afterwards sees it.
type Call = Box<dyn FnOnce(&mut Store) -> Answer + Send>;
type Answer = Box<dyn FnOnce() + Send>;
/// Runs inside a savepoint; says whether its work succeeded and returns how to answer once the
/// outcome of the commit is known.
type GroupedWork = Box<dyn FnOnce(&Connection) -> (bool, Box<dyn FnOnce(bool) + Send>) + Send>;

enum Job {
    Call(Call),
    Grouped(GroupedWork),
    /// The health probe: a small commit that changes nothing a reader judges with, so it leaves
    /// the district epoch alone.
    Probe(Box<dyn FnOnce(&mut Store) + Send>),
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the database writer has stopped")]
    Stopped,
    #[error("committing the group failed: {0}")]
    Commit(String),
    /// The job panicked (a bug): it was rolled back and the writer went on with the next one.
    #[error("the database job failed unexpectedly and was rolled back: {0}")]
    Panicked(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`Db::check_health`] says the database cannot take work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Sick {
    #[error("the database writer has stopped")]
    WriterStopped,
    #[error("the database writer has been on one job for {0} s")]
    WriterStuck(u64),
    /// The probe waited this long behind other work: busy, not broken.
    #[error("the database writer did not get to the health check within {0} s (busy)")]
    WriterBusy(u64),
    #[error("the database cannot be written: {0}")]
    NotWritable(String),
    #[error("{free_mib} MiB free on the database's file system, below the {min_mib} MiB it needs")]
    LowSpace { free_mib: u64, min_mib: u64 },
}

impl Sick {
    /// Whether restarting the process could not help and must not be asked for by a watchdog
    /// (a busy writer is working).
    pub fn is_busy(&self) -> bool {
        matches!(self, Sick::WriterBusy(_))
    }
}

/// A job running on the writer longer than this is taken as stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(300);

/// The message of a caught panic.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

/// What the writer thread is doing, for [`Db::check_health`]: when its current job started, in
/// milliseconds since `origin` plus one (0: idle).
struct Activity {
    origin: Instant,
    busy_since: AtomicU64,
}

impl Activity {
    fn start(&self) {
        let ms = self.origin.elapsed().as_millis() as u64 + 1;
        self.busy_since.store(ms, Ordering::Release);
    }

    fn stop(&self) {
        self.busy_since.store(0, Ordering::Release);
    }

    /// How long the current job has run.
    fn busy_for(&self) -> Option<Duration> {
        match self.busy_since.load(Ordering::Acquire) {
            0 => None,
            since => Some(
                self.origin
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since - 1)),
            ),
        }
    }
}

struct Inner {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
    /// `None` for an in-memory database (nothing else can open it): reads go to the writer.
    readers: Option<Readers>,
    epoch: Arc<AtomicU64>,
    activity: Arc<Activity>,
}

/// Read-only connections, opened when first needed and kept for reuse.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Bounds async readers to the cores the writer leaves: the writer is the one thread every upload
    /// waits for, so readers must not take its core (on 2 cores, one reader at a time measured 57 k
    /// reads/s under `http_load`, two 49 k, the writer's work per upload then taking 2.5× as long).
    permits: tokio::sync::Semaphore,
    /// The clerk pages' own reader ([`Db::read_desk`]): a page being built never holds the permit an
    /// upload's judging waits for.
    desk: tokio::sync::Semaphore,
    keep: usize,
}

impl Readers {
    fn new(path: PathBuf) -> Readers {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let keep = cores.clamp(2, 8);
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new((cores - 1).clamp(1, 8)),
            desk: tokio::sync::Semaphore::new(1),
            keep: keep + 1,
        }
    }

    fn open(&self) -> Result<Connection, StoreError> {
        super::open_read_only(&self.path)
    }

    /// Runs `f` in one read transaction on an idle (or new) connection, then keeps the connection.
    fn run<T>(&self, f: impl FnOnce(&Connection) -> T) -> Result<T, DbError> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut conn = match idle {
            Some(c) => c,
            None => self.open()?,
        };
        let out = {
            // A deferred transaction: the snapshot starts at the first read and holds to the end.
            let tx = conn.transaction().map_err(StoreError::Sql)?;
            let out = f(&tx);
            drop(tx); // rolls back: nothing was written but temp tables
            out
        };
        if let Ok(mut v) = self.idle.lock() {
            if v.len() < self.keep {
                v.push(conn);
            }
        }
        Ok(out)
    }
}

/// Cloneable handle on the writer thread.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

impl Db {
    /// Opens the database (migrating it) and starts the writer thread.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        Self::start(Store::open(path)?)
    }

    /// Starts the writer thread over an already open store (tests use an in-memory one).
    pub fn start(store: Store) -> Result<Db, StoreError> {
        let path = store.path().to_path_buf();
        let readers = (!store.in_memory()).then(|| Readers::new(path.clone()));
        // A read-only connection of the writer's own: its `data_version` moves when the writer (or
        // anyone) commits to the database, and not for the writer's temp tables.
        let watch = readers.as_ref().map(Readers::open).transpose()?;
        let epoch = Arc::new(AtomicU64::new(0));
        let activity = Arc::new(Activity {
            origin: Instant::now(),
            busy_since: AtomicU64::new(0),
        });
        let (sender, receiver) = mpsc::channel::<Job>();
        let writer_epoch = epoch.clone();
        let writer_activity = activity.clone();
        let thread = std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || writer_loop(store, watch, receiver, &writer_epoch, &writer_activity))
            .map_err(|e| {
                StoreError::Invalid(format!("cannot start the database writer thread: {e}"))
            })?;
        Ok(Db {
            inner: Arc::new(Inner {
                sender: Mutex::new(Some(sender)),
                thread: Mutex::new(Some(thread)),
                path,
                readers,
                epoch,
                activity,
            }),
        })
    }

    /// Whether the writer is alive and the database can take a write: the writer's thread runs, no
    /// job has been on it for [`STUCK_AFTER`], a probe commit (a row of `health_probe`, nothing a
    /// reader judges with) succeeds within `wait`, SQLite's page limit is not reached, and the file
    /// system holding the database has `min_free_bytes` free.
    pub async fn check_health(&self, wait: Duration, min_free_bytes: u64) -> Result<(), Sick> {
        let finished = self
            .inner
            .thread
            .lock()
            .map_err(|_| Sick::WriterStopped)?
            .as_ref()
            .is_none_or(JoinHandle::is_finished);
        if finished {
            return Err(Sick::WriterStopped);
        }
        if let Some(busy) = self.inner.activity.busy_for() {
            if busy >= STUCK_AFTER {
                return Err(Sick::WriterStuck(busy.as_secs()));
            }
        }
        let (tx, rx) = oneshot::channel();
        self.send(Job::Probe(Box::new(move |store| {
            let _ = tx.send(store.probe_writable(chrono::Local::now().naive_local()));
        })))
        .map_err(|_| Sick::WriterStopped)?;
        match tokio::time::timeout(wait, rx).await {
            Err(_) => return Err(Sick::WriterBusy(wait.as_secs())),
            Ok(Err(_)) => return Err(Sick::WriterStopped),
            Ok(Ok(Err(e))) => return Err(Sick::NotWritable(e.to_string())),
            Ok(Ok(Ok(()))) => {}
        }
        if let Some(free) = super::free_bytes(&self.inner.path) {
            if free < min_free_bytes {
                return Err(Sick::LowSpace {
                    free_mib: free >> 20,
                    min_mib: min_free_bytes >> 20,
                });
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Counts changes that may invalidate what a reader judged: it moves after every [`Db::call`] that
    /// committed to the database and when another process committed. Read it before [`Db::read`];
    /// compare inside grouped work, where the value is exact (the writer has run everything queued
    /// before).
    pub fn district_epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    /// Whether [`Db::read`] runs off the writer (not for an in-memory database).
    pub fn has_readers(&self) -> bool {
        self.inner.readers.is_some()
    }

    /// Runs `f` on a read-only connection inside one read transaction (a consistent snapshot), on a
    /// blocking thread, in parallel with the writer. An in-memory database has no readers: `f` then
    /// runs on the writer.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> T + Send + 'static,
    ) -> Result<T, DbError> {
        if self.inner.readers.is_none() {
            return self.call(move |s| f(s.conn())).await;
        }
        let permit = {
            let readers = self.inner.readers.as_ref().ok_or(DbError::Stopped)?;
            readers
                .permits
                .acquire()
                .await
                .map_err(|_| DbError::Stopped)?
        };
        let db = self.clone();
        let out = tokio::task::spawn_blocking(move || {
            db.inner
                .readers
                .as_ref()
                .ok_or(DbError::Stopped)
                .and_then(|r| r.run(f))
        })
        .await
        .map_err(|_| DbError::Stopped)?;
        drop(permit);
        out
    }

    /// [`Db::read`] for the clerk pages: the same read-only connections and one read transaction, but
    /// its own permit (one page at a time), so a clerk's page never holds up an upload's judging and
    /// an upload never waits behind a page.
    pub async fn read_desk<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> T + Send + 'static,
    ) -> Result<T, DbError> {
        if self.inner.readers.is_none() {
            return self.call(move |s| f(s.conn())).await;
        }
        let permit = {
            let readers = self.inner.readers.as_ref().ok_or(DbError::Stopped)?;
            readers.desk.acquire().await.map_err(|_| DbError::Stopped)?
        };
        let db = self.clone();
        let out = tokio::task::spawn_blocking(move || {
            db.inner
                .readers
                .as_ref()
                .ok_or(DbError::Stopped)
                .and_then(|r| r.run(f))
        })
        .await
        .map_err(|_| DbError::Stopped)?;
        drop(permit);
        out
    }

    /// [`Db::read`] for threads outside the async runtime.
    pub fn read_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> T + Send + 'static,
    ) -> Result<T, DbError> {
        match &self.inner.readers {
            Some(r) => r.run(f),
            None => self.call_blocking(move |s| f(s.conn())),
        }
    }

    fn send(&self, job: Job) -> Result<(), DbError> {
        let guard = self.inner.sender.lock().map_err(|_| DbError::Stopped)?;
        guard
            .as_ref()
            .ok_or(DbError::Stopped)?
            .send(job)
            .map_err(|_| DbError::Stopped)
    }

    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<T, DbError>>, DbError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Call(Box::new(move |store| {
            // A panicking job is answered an error; its transaction, if it used `Store::write`, was
            // rolled back as the panic unwound (the writer loop rolls back any other).
            let out = catch_unwind(AssertUnwindSafe(|| f(store))).map_err(|p| {
                let why = panic_text(p.as_ref());
                tracing::error!(panic = %why, "a database job panicked; it was rolled back and the writer goes on");
                DbError::Panicked(why)
            });
            Box::new(move || {
                let _ = tx.send(out);
            })
        })))?;
        Ok(rx)
    }

    /// Runs `f` on the writer thread (its own transactions, if any, are its business).
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> Result<T, DbError> {
        self.submit(f)?.await.map_err(|_| DbError::Stopped)?
    }

    /// [`Db::call`] for threads outside the async runtime (serial docks, CLI). Must not be called from
    /// a runtime worker.
    pub fn call_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> Result<T, DbError> {
        self.submit(f)?
            .blocking_recv()
            .map_err(|_| DbError::Stopped)?
    }

    fn submit_grouped<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<T, GroupedError<E>>>, DbError>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Grouped(Box::new(move |conn| {
            // A panicking job fails alone: its savepoint is rolled back, the group goes on.
            let out = catch_unwind(AssertUnwindSafe(|| f(conn)));
            let ok = matches!(out, Ok(Ok(_)));
            let answer: Box<dyn FnOnce(bool) + Send> = Box::new(move |committed| {
                let reply = match out {
                    Err(p) => {
                        let why = panic_text(p.as_ref());
                        tracing::error!(panic = %why, "a grouped database job panicked; its savepoint was rolled back");
                        Err(GroupedError::Db(DbError::Panicked(why)))
                    }
                    Ok(Err(e)) => Err(GroupedError::Work(e)),
                    Ok(Ok(_)) if !committed => Err(GroupedError::Db(DbError::Commit(
                        "the group was rolled back".into(),
                    ))),
                    Ok(Ok(v)) => Ok(v),
                };
                let _ = tx.send(reply);
            });
            (ok, answer)
        })))?;
        Ok(rx)
    }

    /// Runs `f` inside a savepoint of a group transaction and answers only after the group committed
    /// (durably, `synchronous=FULL`). Use for many small concurrent writes that each need durability.
    pub async fn grouped<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, GroupedError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let rx = self.submit_grouped(f).map_err(GroupedError::Db)?;
        rx.await.map_err(|_| GroupedError::Db(DbError::Stopped))?
    }

    /// [`Db::grouped`] for threads outside the async runtime.
    pub fn grouped_blocking<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, GroupedError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let rx = self.submit_grouped(f).map_err(GroupedError::Db)?;
        rx.blocking_recv()
            .map_err(|_| GroupedError::Db(DbError::Stopped))?
    }

    /// Stops accepting work, lets the writer finish everything already queued, and waits for it.
    /// Other clones of the handle get [`DbError::Stopped`] afterwards.
    pub fn shutdown(&self) {
        if let Ok(mut s) = self.inner.sender.lock() {
            s.take();
        }
        let thread = self.inner.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// Failure of grouped work: the work's own error, or the database's.
#[derive(Debug, thiserror::Error)]
pub enum GroupedError<E> {
    #[error("{0}")]
    Work(E),
    #[error(transparent)]
    Db(DbError),
}

fn data_version(conn: &Connection) -> Option<i64> {
    super::data_version(conn).ok()
}

/// `watch`: a read-only connection on the same file (`None` in memory, where there are no readers).
fn writer_loop(
    mut store: Store,
    watch: Option<Connection>,
    receiver: mpsc::Receiver<Job>,
    epoch: &AtomicU64,
    activity: &Activity,
) {
    let mut writer_version = data_version(store.conn());
    let mut next = receiver.recv().ok();
    while let Some(job) = next.take() {
        activity.start();
        match job {
            Job::Call(f) => {
                let before = watch.as_ref().and_then(data_version);
                // `f` catches its job's panic itself (see `Db::submit`).
                let answer = f(&mut store);
                // A job that panicked inside a transaction it opened by hand leaves it open.
                if !store.conn().is_autocommit() {
                    tracing::error!("a database job left its transaction open; rolling it back");
                    let _ = store.conn().execute_batch("ROLLBACK");
                }
                // If it committed anything, readers' work from before may be stale. (Its temp
                // tables, a route file's scope, leave the database file alone.)
                if watch.as_ref().and_then(data_version) != before {
                    epoch.fetch_add(1, Ordering::AcqRel);
                }
                answer();
            }
            Job::Probe(f) => {
                if catch_unwind(AssertUnwindSafe(|| f(&mut store))).is_err() {
                    tracing::error!("the health probe panicked");
                }
                if !store.conn().is_autocommit() {
                    let _ = store.conn().execute_batch("ROLLBACK");
                }
            }
            Job::Grouped(first) => {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match receiver.try_recv() {
                        Ok(Job::Grouped(g)) => group.push(g),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                run_group(&mut store, group, epoch, &mut writer_version);
            }
        }
        activity.stop();
        if next.is_none() {
            next = receiver.recv().ok();
        }
    }
}

/// `writer_version`: the writer connection's `PRAGMA data_version` at its last group (it moves only
/// for other processes' commits).
fn run_group(
    store: &mut Store,
    group: Vec<GroupedWork>,
    epoch: &AtomicU64,
    writer_version: &mut Option<i64>,
) {
    let mut answers = Vec::with_capacity(group.len());
    let committed = (|| -> rusqlite::Result<()> {
        let mut tx = store
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process (a CLI command next to the daemon) may have committed since the last
        // group: then readers' work is stale too. Holding the write lock now, nothing else can.
        let version = super::data_version(&tx)?;
        if writer_version.replace(version) != Some(version) {
            epoch.fetch_add(1, Ordering::AcqRel);
        }
        let mut pending = group.into_iter();
        for work in pending.by_ref() {
            let sp = tx.savepoint()?;
            let (ok, answer) = work(&sp);
            if ok {
                sp.commit()?;
            } // else: dropping the savepoint rolls back this job's writes alone
            answers.push(answer);
        }
        tx.commit()
    })();
    if let Err(e) = &committed {
        tracing::error!(error = %e, "group commit failed; every read in the group is unacknowledged");
    }
    let ok = committed.is_ok();
    for answer in answers {
        answer(ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Db {
        Db::start(Store::open_in_memory().unwrap()).unwrap()
    }

    fn count(db: &Db) -> i64 {
        db.call_blocking(|s| {
            s.conn()
                .query_row("SELECT COUNT(*) FROM routes", [], |r| r.get(0))
                .unwrap()
        })
        .unwrap()
    }

    #[test]
    fn grouped_work_that_fails_rolls_back_alone() {
        let db = db();
        let ok = db.grouped_blocking(|c| {
            c.execute("INSERT INTO routes (route_id) VALUES ('R01')", [])
                .map(|_| ())
        });
        assert!(ok.is_ok());
        let dup = db.grouped_blocking(|c| {
            c.execute("INSERT INTO routes (route_id) VALUES ('R01')", [])
                .map(|_| ())
        });
        assert!(matches!(dup, Err(GroupedError::Work(_))));
        assert_eq!(count(&db), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_grouped_writers_all_commit() {
        let db = db();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.grouped(move |c| {
                    c.execute(
                        "INSERT INTO routes (route_id) VALUES (?1)",
                        [format!("R{i:03}")],
                    )
                })
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(db.call(|s| s.routes().unwrap().len()).await.unwrap(), 50);
    }

    #[test]
    fn after_shutdown_calls_are_refused_but_queued_work_finished() {
        let db = db();
        let rx = db.submit(|s| {
            s.conn()
                .execute("INSERT INTO routes (route_id) VALUES ('R09')", [])
                .unwrap()
        });
        db.shutdown();
        assert_eq!(rx.unwrap().blocking_recv().unwrap().unwrap(), 1);
        assert!(matches!(db.call_blocking(|_| ()), Err(DbError::Stopped)));
    }

    #[test]
    fn only_calls_that_commit_to_the_database_move_the_district_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::start(Store::open(&dir.path().join("d.db")).unwrap()).unwrap();
        let start = db.district_epoch();
        // Temp tables (what a route file's scope writes) leave the database alone.
        db.call_blocking(|s| {
            s.conn()
                .execute_batch("CREATE TEMP TABLE t (x); INSERT INTO t VALUES (1);")
        })
        .unwrap()
        .unwrap();
        assert_eq!(db.district_epoch(), start);
        db.call_blocking(|s| {
            s.conn()
                .execute("INSERT INTO routes (route_id) VALUES ('R01')", [])
        })
        .unwrap()
        .unwrap();
        assert_ne!(db.district_epoch(), start);
        db.shutdown();
    }

    fn boom(what: &str) -> rusqlite::Result<()> {
        panic!("{what}")
    }

    #[test]
    fn a_panicking_job_is_answered_an_error_rolled_back_and_the_writer_goes_on() {
        let db = db();
        let r = db.call_blocking(|s| -> usize {
            s.write(|tx| {
                tx.execute("INSERT INTO routes (route_id) VALUES ('R02')", [])?;
                boom("boom inside a transaction")?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
            0
        });
        assert!(
            matches!(&r, Err(DbError::Panicked(m)) if m.contains("boom inside")),
            "{:?}",
            r.err()
        );
        // A transaction opened by hand and left open by the panic is rolled back too.
        let r = db.call_blocking(|s| {
            s.conn()
                .execute_batch("BEGIN; INSERT INTO routes (route_id) VALUES ('R03');")
                .unwrap();
            boom("boom with BEGIN")
        });
        assert!(matches!(r, Err(DbError::Panicked(_))));
        // A grouped job that panics fails alone; its neighbours commit.
        let db2 = db.clone();
        let good = std::thread::spawn(move || {
            db2.grouped_blocking(|c| {
                c.execute("INSERT INTO routes (route_id) VALUES ('R05')", [])
                    .map(|_| ())
            })
        });
        let bad = db.grouped_blocking(|c| -> Result<(), rusqlite::Error> {
            c.execute("INSERT INTO routes (route_id) VALUES ('R04')", [])?;
            boom("boom in a group")
        });
        assert!(matches!(bad, Err(GroupedError::Db(DbError::Panicked(_)))));
        good.join().unwrap().unwrap();
        // The writer still works, and only R05 was stored.
        let routes: Vec<String> = db
            .call_blocking(|s| s.routes().unwrap().into_iter().map(|r| r.id).collect())
            .unwrap();
        assert_eq!(routes, ["R05"]);
    }

    #[tokio::test]
    async fn health_says_when_the_writer_or_the_database_cannot_take_work() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::start(Store::open(&dir.path().join("d.db")).unwrap()).unwrap();
        let wait = Duration::from_secs(5);
        assert_eq!(db.check_health(wait, 0).await, Ok(()));
        let epoch = db.district_epoch();
        assert_eq!(db.check_health(wait, 0).await, Ok(()));
        assert_eq!(
            db.district_epoch(),
            epoch,
            "the probe moved the district epoch"
        );
        // Writes refused (what a read-only file gives): not ok, and why.
        db.call(|s| s.conn().pragma_update(None, "query_only", true))
            .await
            .unwrap()
            .unwrap();
        let sick = db.check_health(wait, 0).await.unwrap_err();
        assert!(
            matches!(&sick, Sick::NotWritable(m) if m.contains("readonly")),
            "{sick}"
        );
        db.call(|s| s.conn().pragma_update(None, "query_only", false))
            .await
            .unwrap()
            .unwrap();
        // At SQLite's page limit: full.
        db.call(|s| {
            let pages: i64 = s
                .conn()
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .unwrap();
            s.conn()
                .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
                .unwrap();
        })
        .await
        .unwrap();
        let sick = db.check_health(wait, 0).await.unwrap_err();
        assert!(
            matches!(&sick, Sick::NotWritable(m) if m.contains("full")),
            "{sick}"
        );
        db.call(|s| {
            s.conn()
                .query_row("PRAGMA max_page_count = 1073741823", [], |_| Ok(()))
                .unwrap();
        })
        .await
        .unwrap();
        assert_eq!(db.check_health(wait, 0).await, Ok(()));
        // Less free space than asked for.
        let sick = db.check_health(wait, u64::MAX).await.unwrap_err();
        assert!(matches!(sick, Sick::LowSpace { .. }), "{sick}");
        // A writer busy with one long job: the probe waits, and says so.
        let busy = db.clone();
        let long = tokio::task::spawn_blocking(move || {
            busy.call_blocking(|_| std::thread::sleep(Duration::from_millis(1500)))
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sick = db
            .check_health(Duration::from_millis(300), 0)
            .await
            .unwrap_err();
        assert!(sick.is_busy(), "{sick}");
        long.await.unwrap().unwrap();
        db.shutdown();
        assert_eq!(db.check_health(wait, 0).await, Err(Sick::WriterStopped));
    }
}
