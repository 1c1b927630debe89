-- FreeSWITCH nodes trunkline keeps in step over the Event Socket, and the per-node sync state
-- the reconciler needs to survive restarts (esl/, store/switches.rs). Same schema on both
-- backends; timestamps are RFC 3339 UTC text with microseconds (fixed width, so text order is
-- time order, which the lease relies on).

CREATE TABLE switches (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    esl_host TEXT NOT NULL,
    esl_port INTEGER NOT NULL,
    esl_password TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    profiles TEXT NOT NULL,
    from_config BOOLEAN NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- What trunkline verified running on a node, per gateway: written only after verification.
CREATE TABLE switch_gateways (
    switch_id TEXT NOT NULL REFERENCES switches (id) ON DELETE CASCADE,
    gateway_name TEXT NOT NULL,
    profile TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (switch_id, gateway_name)
);

-- Per node: the ACL last reloaded, the last successful sync, and the lease that lets one
-- trunkline instance at a time act on the node.
CREATE TABLE switch_sync (
    switch_id TEXT PRIMARY KEY REFERENCES switches (id) ON DELETE CASCADE,
    acl_fingerprint TEXT,
    core_uuid TEXT,
    last_sync_at TEXT,
    lease_holder TEXT,
    lease_expires_at TEXT
);
