-- Resumable uploads (tus 1.0, issue 26 part 2): one row per upload being received over several
-- requests. Portable between SQLite and PostgreSQL like 0001: TEXT and BIGINT only, NULL where
-- a value is absent; times are Unix milliseconds (`_ms`). Numbered after its issue (0028; the
-- upload links of the same issue take 0029).
--
-- id_hash: the SHA-256 of the id in the upload's URL (as sessions and tokens are stored), so a
-- leaked database names no live upload. storage_key: where the file will live once whole; the
-- bytes so far are the store's (`.part-<key>` locally, a multipart upload in S3), resumed from
-- store_state, the backend's own opaque note. upload_offset: bytes received and made durable,
-- the only offset ever acknowledged.
--
-- A PATCH holds the row while it writes: lease_id until lease_until_ms, taken by one UPDATE
-- that also checks the offset (compare-and-set), so two app servers sharing the database never
-- append to one upload at once; a crashed holder's lease runs out.
--
-- via_link: the upload link a recipient used (a later step; NULL for the owner's own session
-- or access token). file_id: the file row the upload becomes (chosen at creation, so finishing
-- twice finds it rather than making a second row); finished_ms: when it did.
CREATE TABLE uploads (
    id_hash         TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    via_link        TEXT,
    file_id         TEXT NOT NULL,
    storage_key     TEXT NOT NULL,
    name            TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    upload_length   BIGINT NOT NULL,
    upload_offset   BIGINT NOT NULL,
    store_state     TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    expires_ms      BIGINT NOT NULL,
    lease_id        TEXT,
    lease_until_ms  BIGINT NOT NULL,
    finished_ms     BIGINT
);
CREATE INDEX uploads_expires ON uploads (expires_ms);
CREATE INDEX uploads_user_id ON uploads (user_id);
