//! The district store: one embedded SQLite database (bundled, WAL), opened through [`Store`].
//!
//! **Architecture Invariant:** SQL lives under `store/`; the rest of the gateway speaks domain types.
//! rusqlite calls block: async code reaches the store through `spawn_blocking` or the writer thread,
//! never directly on a runtime worker.

mod backup;
pub(crate) mod basis;
pub(crate) mod billing;
pub(crate) mod cycles;
mod devices;
mod district;
mod migrations;
/// SQL of the clerk's desk (`crate::review`).
pub mod review;
mod users;
mod writer;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};

pub use backup::{backup_database, BackupError, BackupReport};
pub(crate) use cycles::load_cycle;
pub(crate) use cycles::{open_cycle_of_route, routes_in_open_cycles};
pub use cycles::{
    time_is_storable, AccountRow, EarlierRead, FollowUp, HeldRead, MeterRow, OpenOrder, StoredRead,
};
pub(crate) use devices::{
    complete_field_order, device_registered, held_seq, note_device_state, open_cycle_ids,
    open_cycle_of_device, record_refusal, record_upload_batch, route_assignments, routes_of_device,
    upload_batch_in,
};
pub use devices::{
    device_states_in, devices_in, refused_reads_in, Device, DeviceStateRow, NewRefusal,
    RefusedReadRow, UploadBatch, Via,
};
pub(crate) use district::{
    account_in, codes_in, date_text, history_of_account_in, meter_in, parse_date, routes_in,
    DistrictTx,
};
pub use district::{DistrictCounts, InvalidDate, MeterFacts, Upserted};
pub use migrations::{MIGRATIONS, SCHEMA_VERSION};
pub use review::{AuditRecord, FieldOrder, LeakCredit, ReviewAction, ReviewRead};
pub use users::{check_user_name, role_text, NewUserSecret, SessionUser, User, UserAccessChange};
pub(crate) use users::{login_failures_in, password_hash_in, session_user_in};
pub use writer::{Db, DbError, GroupedError, Sick, STUCK_AFTER};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this meter-gateway understands ({supported}); \
         upgrade meter-gateway or restore a backup taken by this version"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("migrating database {path} to schema version {version} failed (nothing was changed): {source}")]
    Migration {
        path: PathBuf,
        version: i64,
        source: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An open district database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// `PRAGMA data_version` of `conn`: it moves when another connection commits to the database (not for
/// this connection's own commits, nor for temp tables).
pub(crate) fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
}

/// A read-only connection on the database at `path` (work judged off the writer): temp tables (a
/// batch's accounts) in memory, and a busy timeout to wait out a checkpoint's brief lock.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Self::init(conn, path.to_path_buf())
    }

    /// Whether this is a private in-memory database (no other connection can open it).
    pub fn in_memory(&self) -> bool {
        self.path == Path::new(":memory:")
    }

    /// A private in-memory database (tests, benchmarks).
    pub fn open_in_memory() -> Result<Store> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: PathBuf::from(":memory:"),
            source,
        })?;
        Self::init(conn, PathBuf::from(":memory:"))
    }

    fn init(mut conn: Connection, path: PathBuf) -> Result<Store> {
        // Pragmas are set outside the migration transaction (journal_mode cannot change inside one).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before it returns, so a read acknowledged to a handheld survives a
        // power cut. The cost is one extra fsync per transaction; bulk paths batch rows per transaction.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Statement and savepoint journals (every upload in a group commit has its savepoint) and temp
        // tables in memory: as files they cost a write syscall per journaled page (measured: a third of
        // the writer's time per upload).
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        migrations::migrate(&mut conn, &path)?;
        Ok(Store { conn, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection, for the store's own modules.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection, for tests that put it in a state the library never does (writes refused).
    #[cfg(any(test, feature = "test-support"))]
    #[doc(hidden)]
    pub fn conn_for_tests(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Runs `f` in one immediate (write-locking) transaction: all of it is committed or none of it.
    pub(crate) fn write<T, E>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<rusqlite::Error>,
    {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Whether this connection can write the database: refuses a database SQLite opened read-only
    /// (the file or its directory is not writable, or its file system is mounted read-only), one at
    /// SQLite's page limit (`max_page_count`), and any failure of a small commit (a full disk, an
    /// I/O error), by writing the one row of `health_probe`, which nothing else reads.
    pub fn probe_writable(&mut self, now: chrono::NaiveDateTime) -> Result<()> {
        if self.conn.is_readonly(rusqlite::DatabaseName::Main)? {
            return Err(StoreError::Invalid(format!(
                "{} is open read-only (check the file's and its directory's owner and mode, and that \
                 the file system is not mounted read-only)",
                self.path.display()
            )));
        }
        let (pages, max): (i64, i64) = self.conn.query_row(
            "SELECT (SELECT page_count FROM pragma_page_count()), \
                    (SELECT max_page_count FROM pragma_max_page_count())",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        // Room for an upload's worth of pages: a database at its limit refuses every new read.
        if pages + 64 >= max {
            return Err(StoreError::Invalid(format!(
                "{} is full: {pages} of its {max} pages used (SQLite's max_page_count)",
                self.path.display()
            )));
        }
        self.write(|tx| {
            tx.execute(
                "INSERT INTO health_probe (probe_id, checked_at) VALUES (1, ?1) \
                 ON CONFLICT (probe_id) DO UPDATE SET checked_at = excluded.checked_at",
                [cycles::time_text(now)],
            )?;
            Ok::<_, StoreError>(())
        })
    }

    /// The schema version recorded in the database file.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}

/// Bytes free to an unprivileged user on the file system holding `path` (`None` for an in-memory
/// database or when the file system does not say).
pub fn free_bytes(path: &Path) -> Option<u64> {
    if path == Path::new(":memory:") {
        return None;
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}
