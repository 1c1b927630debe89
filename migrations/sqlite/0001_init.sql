-- trunkline schema, SQLite. Ids are UUIDv7 text (so id order is creation order, which keyset
-- pagination relies on); timestamps are RFC 3339 UTC text with microseconds; lists and maps
-- are JSON text. migrations/postgres/0001_init.sql is the same schema for PostgreSQL.

CREATE TABLE config_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 0);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    context TEXT UNIQUE,
    features TEXT NOT NULL,
    failover_mode TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE carriers (
    id TEXT PRIMARY KEY,
    tenant_id TEXT REFERENCES tenants (id) ON DELETE RESTRICT,
    name TEXT NOT NULL,
    gateway_name TEXT NOT NULL UNIQUE,
    carrier_type TEXT NOT NULL,
    direction TEXT NOT NULL,
    status TEXT NOT NULL,
    remote_host TEXT NOT NULL,
    remote_port INTEGER NOT NULL,
    transport TEXT NOT NULL,
    profile TEXT NOT NULL,
    register BOOLEAN NOT NULL,
    auth_username TEXT,
    auth_password TEXT,
    realm TEXT,
    from_user TEXT,
    from_domain TEXT,
    caller_id_in_from BOOLEAN NOT NULL,
    ping_seconds INTEGER,
    inbound_ips TEXT NOT NULL,
    strip_prefix TEXT NOT NULL,
    add_prefix TEXT NOT NULL,
    add_suffix TEXT NOT NULL,
    tech_headers TEXT NOT NULL,
    attestation_header TEXT,
    failover_codes TEXT,
    leg_progress_timeout_seconds INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    archived_at TEXT
);
CREATE INDEX carriers_tenant ON carriers (tenant_id);

CREATE TABLE outbound_routes (
    id TEXT PRIMARY KEY,
    tenant_id TEXT REFERENCES tenants (id) ON DELETE RESTRICT,
    name TEXT NOT NULL,
    match_type TEXT NOT NULL,
    prefix TEXT,
    regex TEXT,
    carrier_id TEXT NOT NULL REFERENCES carriers (id) ON DELETE RESTRICT,
    priority INTEGER NOT NULL,
    strip_prefix TEXT NOT NULL,
    add_prefix TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX outbound_routes_tenant ON outbound_routes (tenant_id);
CREATE INDEX outbound_routes_carrier ON outbound_routes (carrier_id);

CREATE TABLE phone_numbers (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE RESTRICT,
    number TEXT NOT NULL UNIQUE,
    carrier_id TEXT REFERENCES carriers (id) ON DELETE SET NULL,
    capabilities TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX phone_numbers_tenant ON phone_numbers (tenant_id);
CREATE INDEX phone_numbers_carrier ON phone_numbers (carrier_id);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    tenant_id TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
