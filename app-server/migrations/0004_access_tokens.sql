-- Personal access tokens: what programs authenticate with (`Authorization: Bearer blpat_…`).
-- Portable between SQLite and PostgreSQL like 0001: TEXT and BIGINT only, Unix seconds, NULL
-- where a value is absent. Numbered 0004 so that a concurrent 0003 elsewhere does not clash.

-- token_hash is the SHA-256 (hex) of the whole token; the token itself is never stored.
-- scopes: space-separated (`files:read files:write`). Revoking deletes the row, as do a
-- password change and the user's deletion.
CREATE TABLE access_tokens (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_us   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX access_tokens_user_id ON access_tokens (user_id, created_us);
