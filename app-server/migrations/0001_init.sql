-- Portable between SQLite and PostgreSQL: TEXT and BIGINT only, times in Unix seconds,
-- ids are random tokens.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- id_hash is the SHA-256 (hex) of the cookie's session id; the id itself is never stored.
CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE files (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    storage_key  TEXT NOT NULL UNIQUE,
    size         BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    -- Microseconds: orders files uploaded within the same second (newest first).
    created_us   BIGINT NOT NULL
);
CREATE INDEX files_user_id ON files (user_id, created_us);
