-- Shares: an owner's long-lived, counted, revocable permission for visitors to mint single-use
-- download links. Portable between SQLite and PostgreSQL like 0001: TEXT and BIGINT only,
-- times in Unix seconds, NULL where a value is absent.

-- secret_hash is the SHA-256 (hex) of the secret in the share URL; the secret is never stored.
-- downloads counts links handed out (taken) and not given back; a take is one atomic
-- `UPDATE ... WHERE downloads < max_downloads ...`, so it never exceeds max_downloads.
CREATE TABLE shares (
    id            TEXT PRIMARY KEY,
    secret_hash   TEXT NOT NULL UNIQUE,
    file_id       TEXT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- argon2id PHC string; NULL: no password.
    password_hash TEXT,
    max_downloads BIGINT NOT NULL,
    downloads     BIGINT NOT NULL DEFAULT 0,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    created_at    BIGINT NOT NULL,
    created_us    BIGINT NOT NULL
);
CREATE INDEX shares_file_id ON shares (file_id, created_us);
CREATE INDEX shares_user_id ON shares (user_id);

-- One row per download link a share POST minted: its jti, until when it can be used, and
-- whether its download was given back (link expired with nothing served).
CREATE TABLE share_takes (
    jti             TEXT PRIMARY KEY,
    share_id        TEXT NOT NULL REFERENCES shares (id) ON DELETE CASCADE,
    taken_at        BIGINT NOT NULL,
    link_expires_at BIGINT NOT NULL,
    -- 0: open; 1: given back to the share.
    given_back      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX share_takes_share_id ON share_takes (share_id, link_expires_at);

-- Download outcomes as the download servers report them (in process, or through a Redis
-- Stream), each stored once: event_id is the stream entry id (or a random id in process).
CREATE TABLE download_events (
    event_id   TEXT PRIMARY KEY,
    jti        TEXT,
    user_id    TEXT,
    storage_key TEXT,
    outcome    TEXT NOT NULL,
    status     BIGINT NOT NULL,
    bytes      BIGINT NOT NULL,
    time_ms    BIGINT NOT NULL,
    client     TEXT,
    user_agent TEXT
);
CREATE INDEX download_events_jti ON download_events (jti);
CREATE INDEX download_events_user ON download_events (user_id, time_ms);

-- Secrets every app server on this database shares (the share form token key), created by
-- whichever starts first.
CREATE TABLE app_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
