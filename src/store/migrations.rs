//! Schema migrations: an append-only list applied in one exclusive transaction, tracked by
//! `PRAGMA user_version`. Never edit or remove an entry that has shipped; append a new one.

use super::{Result, StoreError};
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

/// Migration `i` (0-based) takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_district.sql"),
    include_str!("migrations/0002_devices.sql"),
    include_str!("migrations/0003_users.sql"),
    include_str!("migrations/0004_review.sql"),
    include_str!("migrations/0005_billing.sql"),
    include_str!("migrations/0006_judging_basis.sql"),
    include_str!("migrations/0007_read_identity.sql"),
    include_str!("migrations/0008_security.sql"),
    include_str!("migrations/0009_intended_reading.sql"),
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i64 + 1;
        let mig = |source| StoreError::Migration {
            path: path.to_path_buf(),
            version,
            source,
        };
        tx.execute_batch(sql).map_err(mig)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(mig)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn a_database_newer_than_the_binary_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn, Path::new("district.db")).unwrap_err();
        assert!(
            err.to_string()
                .contains("newer than this meter-gateway understands"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_migration_rolls_back_and_keeps_the_data() {
        // A version-0 file that already has a `routes` table of its own: migration 1 fails on it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE routes (legacy TEXT); INSERT INTO routes VALUES ('keep me');",
        )
        .unwrap();
        let err = migrate(&mut conn, &path).unwrap_err();
        assert!(
            matches!(err, StoreError::Migration { version: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("nothing was changed"), "{err}");
        drop(conn);
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        let kept: String = conn
            .query_row("SELECT legacy FROM routes", [], |r| r.get(0))
            .unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!((v, kept.as_str(), tables), (0, "keep me", 1));
    }

    #[test]
    fn a_migrated_file_reopened_is_not_migrated_again_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("district.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        conn.execute(
            "INSERT INTO routes (route_id, name) VALUES ('R1', 'North')",
            [],
        )
        .unwrap();
        drop(conn);
        let mut conn = Connection::open(&path).unwrap();
        // Migration 1 has no IF NOT EXISTS: running it again would fail, so success means it was skipped.
        migrate(&mut conn, &path).unwrap();
        let name: String = conn
            .query_row("SELECT name FROM routes WHERE route_id = 'R1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(name, "North");
    }
}
