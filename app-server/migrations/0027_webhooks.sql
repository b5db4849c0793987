-- Webhooks: endpoints that hear of downloads and shares, and the outbox their deliveries come
-- from. Portable between SQLite and PostgreSQL like 0001: TEXT and BIGINT only, NULL where a
-- value is absent; times here are Unix milliseconds (`_ms`), retries run to the second and
-- below. Numbered after its issue (27) so that concurrent migrations elsewhere do not clash.

-- An endpoint. The secrets are stored as shown (`whsec_…`): signing needs them, unlike the
-- hashed secrets a client presents. `events`: the subscribed types, space-separated.
CREATE TABLE webhooks (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url                 TEXT NOT NULL,
    description         TEXT NOT NULL,
    events              TEXT NOT NULL,
    secret              TEXT NOT NULL,
    -- After a rotation: the secret that still signs beside the new one, until when.
    previous_secret     TEXT,
    previous_until_ms   BIGINT,
    created_ms          BIGINT NOT NULL,
    -- The first failed attempt since the last success; NULL while the last attempt succeeded.
    failing_since_ms    BIGINT,
    -- Set when it has failed for --webhooks-disable-after; cleared by re-enabling.
    disabled_ms         BIGINT
);
CREATE INDEX webhooks_user_id ON webhooks (user_id, created_ms);

-- The outbox: one row per event and endpoint, written in the transaction that records what
-- happened. event_id (`msg_…`) is the `webhook-id` of every attempt; payload is the body, the
-- same bytes on every attempt. state: `pending`, `delivered`, or `failed` (out of retries).
-- A delivering app server holds a row until locked_until_ms (its lease, lease_id), so another
-- takes it over only once a crashed one's claim has run out.
CREATE TABLE webhook_messages (
    event_id         TEXT NOT NULL,
    webhook_id       TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    created_ms       BIGINT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_ms  BIGINT NOT NULL,
    locked_until_ms  BIGINT NOT NULL,
    lease_id         TEXT,
    PRIMARY KEY (event_id, webhook_id)
);
CREATE INDEX webhook_messages_due ON webhook_messages (state, next_attempt_ms);
CREATE INDEX webhook_messages_webhook ON webhook_messages (webhook_id, state);

-- The delivery log: each attempt's answer, the last 100 per endpoint.
CREATE TABLE webhook_attempts (
    id           TEXT PRIMARY KEY,
    webhook_id   TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id     TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    started_ms   BIGINT NOT NULL,
    started_us   BIGINT NOT NULL,
    -- The HTTP status; NULL when no answer came (timeout, refused address, connection error).
    status       BIGINT,
    latency_ms   BIGINT NOT NULL,
    error        TEXT
);
CREATE INDEX webhook_attempts_webhook ON webhook_attempts (webhook_id, started_us);

-- When a share's expiry (`share.expired`) and its last download taken (`share.exhausted`)
-- were announced, so each is sent once. The delivery task finds what is due through these
-- partial indexes, which hold only what is still to be announced.
ALTER TABLE shares ADD COLUMN expiry_announced_ms BIGINT;
ALTER TABLE shares ADD COLUMN exhaustion_announced_ms BIGINT;
CREATE INDEX shares_expiry_due ON shares (expires_at) WHERE expiry_announced_ms IS NULL;
CREATE INDEX shares_exhaustion_due ON shares (id)
    WHERE exhaustion_announced_ms IS NULL AND downloads >= max_downloads;
