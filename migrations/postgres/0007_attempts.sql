-- Attempt records (issue 17): one row per outbound leg trunkline routed, from the node's
-- CHANNEL_HANGUP_COMPLETE (src/quality/recorder.rs writes them in batches, src/store/attempts.rs
-- reads and prunes them). History, not configuration: no foreign keys, so a record outlives the
-- carrier, route, tenant or switch it names, and an insert never fails because one went away.
-- Ids are UUIDv7 text given on arrival; timestamps are RFC 3339 UTC text with microseconds
-- (fixed width; COLLATE "C" so text order is time order whatever the database's collation).
-- The same schema as migrations/sqlite/0007_attempts.sql; integers are BIGINT for sqlx's i64.

CREATE TABLE call_attempts (
    id TEXT COLLATE "C" PRIMARY KEY,
    call_id TEXT NOT NULL,
    -- A repeated hangup event for the same leg is written once (ON CONFLICT DO NOTHING).
    leg_id TEXT NOT NULL UNIQUE,
    switch_id TEXT,
    tenant_id TEXT,
    route_id TEXT,
    carrier_id TEXT NOT NULL,
    gateway TEXT NOT NULL,
    number TEXT COLLATE "C" NOT NULL,
    attempt BIGINT NOT NULL,
    sip_status BIGINT,
    cause TEXT NOT NULL,
    q850 BIGINT,
    started_at TEXT COLLATE "C" NOT NULL,
    progress_at TEXT,
    answered_at TEXT,
    ended_at TEXT COLLATE "C" NOT NULL,
    billable_seconds BIGINT NOT NULL,
    -- `carrier` or `switch`; NULL when the node reported no disposition.
    hangup_by TEXT
);
CREATE INDEX call_attempts_tenant_started ON call_attempts (tenant_id, started_at);
CREATE INDEX call_attempts_carrier_started ON call_attempts (carrier_id, started_at);
CREATE INDEX call_attempts_call ON call_attempts (call_id, attempt);
CREATE INDEX call_attempts_ended ON call_attempts (ended_at);
