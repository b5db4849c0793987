-- Sign-in through an OpenID Connect provider, and administrators. Portable between SQLite and
-- PostgreSQL like 0001: TEXT and BIGINT only, Unix seconds, NULL where a value is absent.
-- Numbered 0006 so that a concurrent 0005 elsewhere does not clash.

-- 1: an administrator (the Users page). Set by `app-server user add --admin`, or at each
-- sign-in through the provider from --oidc-admin-groups.
ALTER TABLE users ADD COLUMN is_admin BIGINT NOT NULL DEFAULT 0;

-- Who the provider says a user is: (issuer, sub), never an e-mail address. A user made by a
-- sign-in through the provider has password_hash '!', which no password verifies against.
CREATE TABLE oidc_identities (
    issuer        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    user_id       TEXT NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);

-- Sign-ins waiting for the provider's answer (app-server/src/oidc/pending.rs): the SHA-256
-- (hex) of their state and of the browser's binding cookie, never the values themselves.
-- Deleted when used, and when expired by the next sign-in that starts.
CREATE TABLE oidc_logins (
    state_hash    TEXT PRIMARY KEY,
    browser_hash  TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX oidc_logins_expires_at ON oidc_logins (expires_at);

-- The ID token a session started through the provider came with: the hint of its
-- RP-initiated logout. NULL for a password session.
ALTER TABLE sessions ADD COLUMN id_token TEXT;
