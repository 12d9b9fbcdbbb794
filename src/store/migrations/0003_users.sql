-- Migration 3: office users (clerks, admins, billing), their sign-in sessions, API tokens, and the
-- sign-in attempts the rate limit counts.

-- Clerks and admins sign in with a password (argon2id PHC string); billing users hold API tokens.
CREATE TABLE users (
    name            TEXT PRIMARY KEY,
    role            TEXT NOT NULL CHECK (role IN ('clerk', 'admin', 'billing')),
    password_hash   TEXT,
    created_at      TEXT NOT NULL,
    disabled        INTEGER NOT NULL DEFAULT 0,
    CHECK ((role = 'billing') = (password_hash IS NULL))
) STRICT;

-- Billing API tokens: 256 random bits shown once; only the SHA-256 is kept.
CREATE TABLE api_tokens (
    token_sha256    TEXT PRIMARY KEY,
    user_name       TEXT NOT NULL REFERENCES users(name),
    created_at      TEXT NOT NULL,
    revoked         INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;

-- Sign-in sessions: the cookie carries a random id; only its SHA-256 is kept. Absolute expiry.
CREATE TABLE sessions (
    session_sha256  TEXT PRIMARY KEY,
    user_name       TEXT NOT NULL REFERENCES users(name),
    csrf            TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX sessions_by_expiry ON sessions(expires_at);

-- Sign-in attempts, kept for the rate-limit window only (older rows are pruned).
CREATE TABLE login_attempts (
    attempt_id      INTEGER PRIMARY KEY,
    user_name       TEXT NOT NULL,
    client          TEXT NOT NULL,
    at              TEXT NOT NULL,
    success         INTEGER NOT NULL
) STRICT;
CREATE INDEX login_attempts_by_user ON login_attempts(user_name, at);
CREATE INDEX login_attempts_by_client ON login_attempts(client, at);
