//! Office users: clerks and admins (password, sign-in sessions), billing users (API tokens), and the
//! sign-in attempts the rate limit counts. Secrets arrive here already hashed: the store never sees a
//! password, a session id or a token.

use super::cycles::time_text;
use super::{Result, Store, StoreError};
use crate::domain::UserRole;
use chrono::NaiveDateTime;
use rusqlite::{params, OptionalExtension};

/// A user as the office sees it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: UserRole,
    pub created_at: String,
    pub disabled: bool,
}

/// The signed-in user behind a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub name: String,
    pub role: UserRole,
    pub csrf: String,
}

/// The secret a new user is created with, already hashed.
#[derive(Debug, Clone, Copy)]
pub enum NewUserSecret<'a> {
    /// Argon2 PHC string (clerks, admins).
    PasswordHash(&'a str),
    /// SHA-256 hex of a random API token (billing users).
    TokenSha256(&'a str),
}

pub fn role_text(role: UserRole) -> &'static str {
    match role {
        UserRole::Clerk => "clerk",
        UserRole::Admin => "admin",
        UserRole::Billing => "billing",
    }
}

fn parse_role(text: &str) -> rusqlite::Result<UserRole> {
    match text {
        "clerk" => Ok(UserRole::Clerk),
        "admin" => Ok(UserRole::Admin),
        "billing" => Ok(UserRole::Billing),
        other => Err(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown user role `{other}`").into(),
        )),
    }
}

/// Checks a user name: 1-40 letters, digits, `.`, `-`, `_` (it appears in the audit log and URLs).
pub fn check_user_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 40
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(StoreError::Invalid(format!(
            "user name `{name}`: use 1-40 letters, digits, `.`, `-` or `_`"
        )));
    }
    Ok(())
}

impl Store {
    /// Creates a user. Clerks and admins need a password hash, billing users a token hash.
    /// Takes back a billing user whose token never reached anyone (it could not be shown): the user
    /// and its token, only while no session or use refers to it.
    pub fn forget_new_user(&mut self, name: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM api_tokens WHERE user_name = ?1", [name])?;
            tx.execute(
                "DELETE FROM users WHERE name = ?1
                    AND NOT EXISTS (SELECT 1 FROM sessions WHERE user_name = ?1)",
                [name],
            )?;
            Ok(())
        })
    }

    pub fn add_user(
        &mut self,
        name: &str,
        role: UserRole,
        secret: NewUserSecret<'_>,
        now: NaiveDateTime,
    ) -> Result<()> {
        check_user_name(name)?;
        let (password, token) = match (role, secret) {
            (UserRole::Billing, NewUserSecret::TokenSha256(t)) => (None, Some(t)),
            (UserRole::Clerk | UserRole::Admin, NewUserSecret::PasswordHash(p)) => (Some(p), None),
            (role, _) => {
                return Err(StoreError::Invalid(format!(
                    "a {} user signs in with {}",
                    role_text(role),
                    if role == UserRole::Billing {
                        "an API token"
                    } else {
                        "a password"
                    }
                )))
            }
        };
        self.write(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM users WHERE name = ?1)",
                [name],
                |r| r.get(0),
            )?;
            if exists {
                return Err(StoreError::Invalid(format!("user {name} already exists")));
            }
            tx.execute(
                "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, role_text(role), password, time_text(now)],
            )?;
            if let Some(t) = token {
                tx.execute(
                    "INSERT INTO api_tokens (token_sha256, user_name, created_at) VALUES (?1, ?2, ?3)",
                    params![t, name, time_text(now)],
                )?;
            }
            Ok(())
        })
    }

    pub fn users(&self) -> Result<Vec<User>> {
        let mut st = self
            .conn()
            .prepare("SELECT name, role, created_at, disabled FROM users ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok(User {
                name: r.get(0)?,
                role: parse_role(&r.get::<_, String>(1)?)?,
                created_at: r.get(2)?,
                disabled: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The role and password hash of an enabled clerk or admin.
    pub fn password_hash(&self, name: &str) -> Result<Option<(UserRole, String)>> {
        password_hash_in(self.conn(), name)
    }

    /// The enabled user holding the API token with this SHA-256, and their role.
    pub fn token_user(&self, token_sha256: &str) -> Result<Option<(String, UserRole)>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT u.name, u.role FROM api_tokens t JOIN users u ON u.name = t.user_name
                  WHERE t.token_sha256 = ?1 AND t.revoked = 0 AND u.disabled = 0",
                [token_sha256],
                |r| Ok((r.get(0)?, parse_role(&r.get::<_, String>(1)?)?)),
            )
            .optional()?)
    }

    /// Records a session (its id's SHA-256) for `name`, and drops expired sessions.
    pub fn create_session(
        &mut self,
        session_sha256: &str,
        name: &str,
        csrf: &str,
        now: NaiveDateTime,
        expires: NaiveDateTime,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM sessions WHERE expires_at <= ?1",
                [time_text(now)],
            )?;
            tx.execute(
                "INSERT INTO sessions (session_sha256, user_name, csrf, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    session_sha256,
                    name,
                    csrf,
                    time_text(now),
                    time_text(expires)
                ],
            )?;
            Ok(())
        })
    }

    /// The user of a live (unexpired, enabled) session.
    pub fn session_user(
        &self,
        session_sha256: &str,
        now: NaiveDateTime,
    ) -> Result<Option<SessionUser>> {
        session_user_in(self.conn(), session_sha256, now)
    }

    pub fn delete_session(&mut self, session_sha256: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM sessions WHERE session_sha256 = ?1",
            [session_sha256],
        )?;
        Ok(())
    }

    /// Records a sign-in attempt, pruning attempts older than `keep_since`.
    pub fn record_login_attempt(
        &mut self,
        name: &str,
        client: &str,
        success: bool,
        now: NaiveDateTime,
        keep_since: NaiveDateTime,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM login_attempts WHERE at < ?1",
                [time_text(keep_since)],
            )?;
            tx.execute(
                "INSERT INTO login_attempts (user_name, client, at, success) VALUES (?1, ?2, ?3, ?4)",
                params![name, client, time_text(now), success],
            )?;
            Ok(())
        })
    }

    /// Disables a user: their sessions end and their API tokens are revoked at once (audited).
    pub fn disable_user(
        &mut self,
        name: &str,
        actor: &str,
        reason: &str,
        now: NaiveDateTime,
    ) -> Result<UserAccessChange> {
        self.write(|tx| {
            let user = user_in(tx, name)?;
            if user.disabled {
                return Err(StoreError::Invalid(format!(
                    "user {name} is already disabled"
                )));
            }
            tx.execute("UPDATE users SET disabled = 1 WHERE name = ?1", [name])?;
            let change = end_access(tx, name)?;
            audit_user(tx, name, actor, "disable", &change, reason, now)?;
            Ok(change)
        })
    }

    /// Enables a disabled user again (audited). Their old sessions and tokens stay ended.
    pub fn enable_user(
        &mut self,
        name: &str,
        actor: &str,
        reason: &str,
        now: NaiveDateTime,
    ) -> Result<()> {
        self.write(|tx| {
            let user = user_in(tx, name)?;
            if !user.disabled {
                return Err(StoreError::Invalid(format!("user {name} is not disabled")));
            }
            tx.execute("UPDATE users SET disabled = 0 WHERE name = ?1", [name])?;
            let change = UserAccessChange::default();
            audit_user(tx, name, actor, "enable", &change, reason, now)?;
            Ok(())
        })
    }

    /// Gives a user a new secret (a clerk's or admin's password hash, a billing user's token hash):
    /// every session of the user ends and every older token is revoked (audited, without secrets).
    /// `shown` runs last, before the commit: when it fails (a new token that could not be shown),
    /// nothing changes.
    pub fn reset_user_secret(
        &mut self,
        name: &str,
        secret: NewUserSecret<'_>,
        actor: &str,
        now: NaiveDateTime,
        shown: impl FnOnce() -> std::io::Result<()>,
    ) -> Result<UserAccessChange> {
        self.write(|tx| {
            let user = user_in(tx, name)?;
            let change = match (user.role, secret) {
                (UserRole::Billing, NewUserSecret::TokenSha256(t)) => {
                    let change = end_access(tx, name)?;
                    tx.execute(
                        "INSERT INTO api_tokens (token_sha256, user_name, created_at) VALUES (?1, ?2, ?3)",
                        params![t, name, time_text(now)],
                    )?;
                    change
                }
                (UserRole::Clerk | UserRole::Admin, NewUserSecret::PasswordHash(p)) => {
                    tx.execute(
                        "UPDATE users SET password_hash = ?2 WHERE name = ?1",
                        params![name, p],
                    )?;
                    end_access(tx, name)?
                }
                (role, _) => {
                    return Err(StoreError::Invalid(format!(
                        "a {} user {}",
                        role_text(role),
                        if role == UserRole::Billing {
                            "gets a new API token, not a password"
                        } else {
                            "gets a new password, not a token"
                        }
                    )))
                }
            };
            let action = if user.role == UserRole::Billing {
                "new_token"
            } else {
                "reset_password"
            };
            audit_user(tx, name, actor, action, &change, "", now)?;
            shown().map_err(|e| {
                StoreError::Invalid(format!(
                    "the new secret could not be shown ({e}); nothing was changed"
                ))
            })?;
            Ok(change)
        })
    }
}

/// What taking a user's access away ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserAccessChange {
    pub sessions_ended: usize,
    pub tokens_revoked: usize,
}

fn user_in(tx: &rusqlite::Connection, name: &str) -> Result<User> {
    tx.query_row(
        "SELECT name, role, created_at, disabled FROM users WHERE name = ?1",
        [name],
        |r| {
            Ok(User {
                name: r.get(0)?,
                role: parse_role(&r.get::<_, String>(1)?)?,
                created_at: r.get(2)?,
                disabled: r.get(3)?,
            })
        },
    )
    .optional()?
    .ok_or_else(|| StoreError::Invalid(format!("no user {name}")))
}

/// Ends every session of `name` and revokes every token.
fn end_access(tx: &rusqlite::Connection, name: &str) -> Result<UserAccessChange> {
    Ok(UserAccessChange {
        sessions_ended: tx.execute("DELETE FROM sessions WHERE user_name = ?1", [name])?,
        tokens_revoked: tx.execute(
            "UPDATE api_tokens SET revoked = 1 WHERE user_name = ?1 AND revoked = 0",
            [name],
        )?,
    })
}

fn audit_user(
    tx: &rusqlite::Connection,
    name: &str,
    actor: &str,
    action: &str,
    change: &UserAccessChange,
    reason: &str,
    now: NaiveDateTime,
) -> Result<()> {
    super::review::insert_audit(
        tx,
        &super::review::AuditEntry {
            at: now,
            actor,
            entity: "user",
            entity_id: name,
            action,
            before: None,
            after: Some(serde_json::json!({
                "sessions_ended": change.sessions_ended,
                "tokens_revoked": change.tokens_revoked,
            })),
            reason,
        },
    )?;
    Ok(())
}

/// The failures in a row of sign-ins by `name` from `client` since `since` (after the pair's last
/// success), and the time of the last one.
pub(crate) fn login_failures_in(
    conn: &rusqlite::Connection,
    name: &str,
    client: &str,
    since: NaiveDateTime,
) -> Result<(u32, Option<NaiveDateTime>)> {
    Ok(conn.query_row(
        "SELECT COUNT(*), MAX(at) FROM login_attempts
          WHERE user_name = ?1 AND client = ?2 AND success = 0 AND at >= ?3
            AND at > COALESCE((SELECT MAX(at) FROM login_attempts
                                WHERE user_name = ?1 AND client = ?2 AND success = 1), '')",
        params![name, client, time_text(since)],
        |r| Ok((r.get(0)?, super::cycles::opt_time_at(r, 1)?)),
    )?)
}

/// The role and password hash of an enabled clerk or admin (on any connection: sign-in reads it on a
/// read-only one).
pub(crate) fn password_hash_in(
    conn: &rusqlite::Connection,
    name: &str,
) -> Result<Option<(UserRole, String)>> {
    Ok(conn
        .query_row(
            "SELECT role, password_hash FROM users
              WHERE name = ?1 AND disabled = 0 AND password_hash IS NOT NULL",
            [name],
            |r| Ok((parse_role(&r.get::<_, String>(0)?)?, r.get(1)?)),
        )
        .optional()?)
}

/// The signed-in user of a session that has not expired (on any connection: the clerk pages look it
/// up on a read-only one).
pub(crate) fn session_user_in(
    conn: &rusqlite::Connection,
    session_sha256: &str,
    now: NaiveDateTime,
) -> Result<Option<SessionUser>> {
    Ok(conn
        .query_row(
            "SELECT u.name, u.role, s.csrf FROM sessions s JOIN users u ON u.name = s.user_name
              WHERE s.session_sha256 = ?1 AND s.expires_at > ?2 AND u.disabled = 0",
            params![session_sha256, time_text(now)],
            |r| {
                Ok(SessionUser {
                    name: r.get(0)?,
                    role: parse_role(&r.get::<_, String>(1)?)?,
                    csrf: r.get(2)?,
                })
            },
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(h: u32, m: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, 5)
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
    }

    #[test]
    fn a_billing_user_needs_a_token_and_a_clerk_a_password() {
        let mut s = Store::open_in_memory().unwrap();
        assert!(s
            .add_user(
                "ann",
                UserRole::Clerk,
                NewUserSecret::TokenSha256("x"),
                at(8, 0)
            )
            .is_err());
        assert!(s
            .add_user(
                "bill",
                UserRole::Billing,
                NewUserSecret::PasswordHash("x"),
                at(8, 0)
            )
            .is_err());
        s.add_user(
            "bill",
            UserRole::Billing,
            NewUserSecret::TokenSha256("t1"),
            at(8, 0),
        )
        .unwrap();
        assert_eq!(
            s.token_user("t1").unwrap(),
            Some(("bill".to_string(), UserRole::Billing))
        );
        assert_eq!(s.password_hash("bill").unwrap(), None);
        assert!(s
            .add_user(
                "bill",
                UserRole::Billing,
                NewUserSecret::TokenSha256("t2"),
                at(8, 0)
            )
            .is_err());
    }

    #[test]
    fn a_session_expires_and_can_be_deleted() {
        let mut s = Store::open_in_memory().unwrap();
        s.add_user(
            "ann",
            UserRole::Admin,
            NewUserSecret::PasswordHash("h"),
            at(8, 0),
        )
        .unwrap();
        s.create_session("s1", "ann", "c1", at(8, 0), at(9, 0))
            .unwrap();
        s.create_session("s2", "ann", "c2", at(8, 0), at(9, 0))
            .unwrap();
        let u = s.session_user("s1", at(8, 30)).unwrap().unwrap();
        assert_eq!(
            (u.name.as_str(), u.role, u.csrf.as_str()),
            ("ann", UserRole::Admin, "c1")
        );
        assert_eq!(s.session_user("s1", at(9, 0)).unwrap(), None);
        s.delete_session("s2").unwrap();
        assert_eq!(s.session_user("s2", at(8, 30)).unwrap(), None);
    }

    #[test]
    fn failures_count_per_user_and_client_since_the_pairs_last_success() {
        let mut s = Store::open_in_memory().unwrap();
        let old = at(7, 0);
        s.record_login_attempt("ann", "10.0.0.1", false, at(8, 0), old)
            .unwrap();
        s.record_login_attempt("ann", "10.0.0.2", false, at(8, 1), old)
            .unwrap();
        s.record_login_attempt("ann", "10.0.0.1", false, at(8, 2), old)
            .unwrap();
        let pair =
            |s: &Store, c: &str, since| login_failures_in(s.conn(), "ann", c, since).unwrap();
        assert_eq!(pair(&s, "10.0.0.1", at(7, 50)), (2, Some(at(8, 2))));
        assert_eq!(pair(&s, "10.0.0.1", at(8, 1)), (1, Some(at(8, 2))));
        // A success elsewhere leaves the pair alone; a success of the pair clears it.
        s.record_login_attempt("ann", "10.0.0.2", true, at(8, 3), old)
            .unwrap();
        assert_eq!(pair(&s, "10.0.0.1", at(7, 50)).0, 2);
        s.record_login_attempt("ann", "10.0.0.1", true, at(8, 4), old)
            .unwrap();
        assert_eq!(pair(&s, "10.0.0.1", at(7, 50)), (0, None));
        assert_eq!(pair(&s, "10.0.0.9", at(7, 50)), (0, None));
    }

    #[test]
    fn disabling_a_user_ends_their_sessions_and_tokens_and_is_audited() {
        let mut s = Store::open_in_memory().unwrap();
        s.add_user(
            "ann",
            UserRole::Clerk,
            NewUserSecret::PasswordHash("h1"),
            at(8, 0),
        )
        .unwrap();
        s.add_user(
            "bill",
            UserRole::Billing,
            NewUserSecret::TokenSha256("t1"),
            at(8, 0),
        )
        .unwrap();
        s.create_session("s1", "ann", "c1", at(8, 0), at(20, 0))
            .unwrap();
        s.create_session("s2", "ann", "c2", at(8, 0), at(20, 0))
            .unwrap();
        let change = s.disable_user("ann", "cli:root", "left", at(9, 0)).unwrap();
        assert_eq!(change.sessions_ended, 2);
        assert_eq!(s.session_user("s1", at(9, 1)).unwrap(), None);
        assert_eq!(s.password_hash("ann").unwrap(), None);
        assert!(s.disable_user("ann", "cli:root", "", at(9, 0)).is_err());
        assert!(s.disable_user("nobody", "cli:root", "", at(9, 0)).is_err());
        let change = s.disable_user("bill", "cli:root", "", at(9, 0)).unwrap();
        assert_eq!(change.tokens_revoked, 1);
        assert_eq!(s.token_user("t1").unwrap(), None);
        s.enable_user("ann", "cli:root", "back", at(10, 0)).unwrap();
        assert!(s.password_hash("ann").unwrap().is_some());
        assert_eq!(s.session_user("s2", at(10, 1)).unwrap(), None);
        let actions: Vec<String> = s
            .conn()
            .prepare("SELECT entity_id || ' ' || action FROM audit_log WHERE entity = 'user' ORDER BY audit_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(actions, ["ann disable", "bill disable", "ann enable"]);
    }

    #[test]
    fn a_reset_secret_replaces_the_old_one_only_once_it_was_shown() {
        let mut s = Store::open_in_memory().unwrap();
        s.add_user(
            "bill",
            UserRole::Billing,
            NewUserSecret::TokenSha256("t1"),
            at(8, 0),
        )
        .unwrap();
        let lost = s.reset_user_secret(
            "bill",
            NewUserSecret::TokenSha256("t2"),
            "cli",
            at(9, 0),
            || Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
        );
        assert!(lost
            .unwrap_err()
            .to_string()
            .contains("nothing was changed"));
        assert!(s.token_user("t1").unwrap().is_some());
        assert_eq!(s.token_user("t2").unwrap(), None);
        s.reset_user_secret(
            "bill",
            NewUserSecret::TokenSha256("t2"),
            "cli",
            at(9, 0),
            || Ok(()),
        )
        .unwrap();
        assert_eq!(s.token_user("t1").unwrap(), None);
        assert!(s.token_user("t2").unwrap().is_some());
        s.add_user(
            "ann",
            UserRole::Admin,
            NewUserSecret::PasswordHash("h1"),
            at(8, 0),
        )
        .unwrap();
        s.create_session("s1", "ann", "c1", at(8, 0), at(20, 0))
            .unwrap();
        assert!(s
            .reset_user_secret(
                "ann",
                NewUserSecret::TokenSha256("x"),
                "cli",
                at(9, 0),
                || Ok(())
            )
            .is_err());
        let change = s
            .reset_user_secret(
                "ann",
                NewUserSecret::PasswordHash("h2"),
                "cli",
                at(9, 0),
                || Ok(()),
            )
            .unwrap();
        assert_eq!(change.sessions_ended, 1);
        assert_eq!(s.password_hash("ann").unwrap().unwrap().1, "h2");
    }
}
