//! Online backups through SQLite's backup API.
//!
//! The whole copy is one backup step under one read transaction: in WAL mode that is a consistent
//! snapshot that never blocks the daemon's writer, and it cannot be restarted half-way by a concurrent
//! commit (which a page-at-a-time backup would be, forever, under a steady write load).

use super::Store;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a backup waits for a lock (another process checkpointing, or an exclusive migration).
const LOCK_RETRIES: u32 = 200;
const LOCK_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{} already exists; a backup never overwrites a file (choose a new name or move the old one away)", path.display())]
    DestinationExists { path: PathBuf },
    #[error("database {} does not exist", path.display())]
    SourceMissing { path: PathBuf },
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {} stayed locked; backup abandoned", path.display())]
    Locked { path: PathBuf },
    #[error("the copy at {} failed its integrity check: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("backup to {} failed: {source}", path.display())]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// What a backup copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub pages: u64,
    pub bytes: u64,
    pub schema_version: i64,
}

impl Store {
    /// Copies this database to `dest`, a file that must not exist yet.
    pub fn backup_to(&self, dest: &Path) -> Result<BackupReport, BackupError> {
        copy(self.conn(), dest)
    }
}

/// Copies the database at `src` to `dest` without migrating or otherwise changing `src`, while other
/// connections (the daemon) may be writing to it.
pub fn backup_database(src: &Path, dest: &Path) -> Result<BackupReport, BackupError> {
    if !src.exists() {
        return Err(BackupError::SourceMissing {
            path: src.to_path_buf(),
        });
    }
    let sql = |source| BackupError::Sql {
        path: dest.to_path_buf(),
        source,
    };
    // Read-write without CREATE: a read-only handle cannot always join a WAL database whose daemon is
    // not running (it would need to create the shared-memory file). Nothing is written through it.
    let conn = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
    copy(&conn, dest)
}

fn copy(src: &Connection, dest: &Path) -> Result<BackupReport, BackupError> {
    // create_new is atomic: two backups racing for one name cannot both win, and an existing file is
    // never touched.
    match OpenOptions::new().write(true).create_new(true).open(dest) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(BackupError::DestinationExists {
                path: dest.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(BackupError::Create {
                path: dest.to_path_buf(),
                source,
            })
        }
    }
    let result = copy_into(src, dest);
    if result.is_err() {
        // The file is ours (created above) and incomplete: leaving it would look like a backup.
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = dest.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
    result
}

fn copy_into(src: &Connection, dest: &Path) -> Result<BackupReport, BackupError> {
    let sql = |source| BackupError::Sql {
        path: dest.to_path_buf(),
        source,
    };
    let mut dst = Connection::open_with_flags(
        dest,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    let pages = {
        let backup = Backup::new(src, &mut dst).map_err(sql)?;
        let mut retries = 0;
        loop {
            match backup.step(-1).map_err(sql)? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked => {
                    retries += 1;
                    if retries > LOCK_RETRIES {
                        return Err(BackupError::Locked {
                            path: dest.to_path_buf(),
                        });
                    }
                    std::thread::sleep(LOCK_PAUSE);
                }
                // StepResult is non-exhaustive; a future variant is treated as "try again".
                _ => std::thread::sleep(LOCK_PAUSE),
            }
        }
        u64::try_from(backup.progress().pagecount).unwrap_or(0)
    };
    let check: String = dst
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(sql)?;
    if check != "ok" {
        return Err(BackupError::Corrupt {
            path: dest.to_path_buf(),
            detail: check,
        });
    }
    let schema_version: i64 = dst
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)?;
    dst.close().map_err(|(_, e)| sql(e))?;
    let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        path: dest.to_path_buf(),
        pages,
        bytes,
        schema_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Route;

    #[test]
    fn a_backup_of_an_in_memory_store_opens_with_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open_in_memory().unwrap();
        let routes = vec![Route {
            id: "R1".into(),
            name: "Downtown".into(),
        }];
        s.upsert_routes(&routes).unwrap();
        let dest = dir.path().join("copy.db");
        let report = s.backup_to(&dest).unwrap();
        assert_eq!(report.schema_version, crate::store::SCHEMA_VERSION);
        assert!(report.pages > 0);
        assert_eq!(Store::open(&dest).unwrap().routes().unwrap(), routes);
    }

    #[test]
    fn a_backup_never_overwrites_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("precious.db");
        std::fs::write(&dest, b"not a database, but someone's file").unwrap();
        let s = Store::open_in_memory().unwrap();
        let err = s.backup_to(&dest).unwrap_err();
        assert!(
            matches!(err, BackupError::DestinationExists { .. }),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            b"not a database, but someone's file"
        );
    }

    #[test]
    fn a_backup_of_a_missing_database_says_so_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("nope.db");
        let dest = dir.path().join("copy.db");
        let err = backup_database(&src, &dest).unwrap_err();
        assert!(matches!(err, BackupError::SourceMissing { .. }), "{err}");
        assert!(!src.exists() && !dest.exists());
    }
}
