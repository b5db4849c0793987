-- Upload links: an owner's counted, revocable permission for anyone holding the link to send
-- them files, without an account. Portable between SQLite and PostgreSQL like 0001: TEXT and
-- BIGINT only, times in Unix seconds, NULL where a value is absent. Numbered after its issue
-- (26 part 1 takes 29; the tus uploads take 28) so that concurrent migrations do not clash.

-- secret_hash is the SHA-256 (hex) of the secret in the link; the secret is never stored.
-- The counters are changed only by single conditional statements (upload_links.rs):
-- files_pending + files_received never exceeds max_files, bytes_received never exceeds
-- max_bytes, whatever the number of app servers and concurrent uploads.
CREATE TABLE upload_links (
    id             TEXT PRIMARY KEY,
    secret_hash    TEXT NOT NULL UNIQUE,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    note           TEXT NOT NULL,
    -- argon2id PHC string; NULL: no password.
    password_hash  TEXT,
    max_files      BIGINT NOT NULL,
    max_bytes      BIGINT NOT NULL,
    -- Uploads that hold a slot and are still streaming.
    files_pending  BIGINT NOT NULL DEFAULT 0,
    files_received BIGINT NOT NULL DEFAULT 0,
    bytes_received BIGINT NOT NULL DEFAULT 0,
    expires_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    created_at     BIGINT NOT NULL,
    created_us     BIGINT NOT NULL
);
CREATE INDEX upload_links_user_id ON upload_links (user_id, created_us);

-- One row per slot an upload holds while it streams, deleted by the commit (in the file's
-- transaction) or by the release: a release that runs twice frees one slot, once. seen_at
-- moves while bytes arrive; a slot not seen for long (its app server died mid-upload) is
-- reclaimed by the next upload that finds the link full.
CREATE TABLE upload_link_slots (
    id          TEXT PRIMARY KEY,
    link_id     TEXT NOT NULL REFERENCES upload_links (id) ON DELETE CASCADE,
    reserved_at BIGINT NOT NULL,
    seen_at     BIGINT NOT NULL
);
CREATE INDEX upload_link_slots_link_id ON upload_link_slots (link_id);

-- Where a file came from when it arrived through an upload link: the link, the uploader's
-- address and browser. NULL for the owner's own uploads.
ALTER TABLE files ADD COLUMN received_via TEXT;
ALTER TABLE files ADD COLUMN received_from TEXT;
ALTER TABLE files ADD COLUMN received_agent TEXT;
CREATE INDEX files_received_via ON files (received_via);
