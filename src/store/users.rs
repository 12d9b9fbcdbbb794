//! Office users: clerks and admins (password, sign-in sessions), billing users (API tokens), and the
//! sign-in attempts the rate limit counts. Secrets arrive here already hashed: the store never sees a
//! password, a session id or a token.

use super::cycles::time_text;
use super::{Result, Store, StoreError};
use crate::cli::UserRole;
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
        Ok(self
            .conn()
            .query_row(
                "SELECT role, password_hash FROM users
                  WHERE name = ?1 AND disabled = 0 AND password_hash IS NOT NULL",
                [name],
                |r| Ok((parse_role(&r.get::<_, String>(0)?)?, r.get(1)?)),
            )
            .optional()?)
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

    /// Failed sign-ins since `since`: for `name` (only those after its last success) and from `client`.
    pub fn recent_login_failures(
        &self,
        name: &str,
        client: &str,
        since: NaiveDateTime,
    ) -> Result<(u32, u32)> {
        let since = time_text(since);
        let by_user: u32 = self.conn().query_row(
            "SELECT COUNT(*) FROM login_attempts
              WHERE user_name = ?1 AND success = 0
                AND at >= max(?2, COALESCE((SELECT MAX(at) FROM login_attempts
                                             WHERE user_name = ?1 AND success = 1), ''))",
            params![name, since],
            |r| r.get(0),
        )?;
        let by_client: u32 = self.conn().query_row(
            "SELECT COUNT(*) FROM login_attempts WHERE client = ?1 AND success = 0 AND at >= ?2",
            params![client, since],
            |r| r.get(0),
        )?;
        Ok((by_user, by_client))
    }
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
    fn failures_count_per_user_since_the_last_success_and_per_client() {
        let mut s = Store::open_in_memory().unwrap();
        let old = at(7, 0);
        s.record_login_attempt("ann", "10.0.0.1", false, at(8, 0), old)
            .unwrap();
        s.record_login_attempt("ann", "10.0.0.2", false, at(8, 1), old)
            .unwrap();
        assert_eq!(
            s.recent_login_failures("ann", "10.0.0.1", at(7, 50))
                .unwrap(),
            (2, 1)
        );
        s.record_login_attempt("ann", "10.0.0.1", true, at(8, 2), old)
            .unwrap();
        s.record_login_attempt("bob", "10.0.0.1", false, at(8, 3), old)
            .unwrap();
        assert_eq!(
            s.recent_login_failures("ann", "10.0.0.1", at(7, 50))
                .unwrap(),
            (0, 2)
        );
        assert_eq!(
            s.recent_login_failures("ann", "10.0.0.1", at(8, 2))
                .unwrap(),
            (0, 1)
        );
    }
}
