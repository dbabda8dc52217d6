-- fleetscale schema, version 1. Portable between SQLite and PostgreSQL:
-- ids are UUIDv7 text, times are Unix milliseconds (BIGINT), JSON is TEXT,
-- booleans are 0/1 BIGINT.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE regions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    jurisdiction TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE pools (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    region TEXT NOT NULL,
    agent_type TEXT NOT NULL,
    min_capacity BIGINT NOT NULL,
    max_capacity BIGINT NOT NULL,
    desired_capacity BIGINT NOT NULL,
    capacity_per_instance DOUBLE PRECISION NOT NULL,
    metric TEXT NOT NULL,
    mode TEXT NOT NULL,
    scaling_policy TEXT NOT NULL,
    window_seconds BIGINT NOT NULL,
    safety_lock BIGINT NOT NULL DEFAULT 0,
    last_scaled_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (tenant_id, region, agent_type)
);
CREATE INDEX pools_tenant ON pools (tenant_id, id);

CREATE TABLE scaling_events (
    id TEXT PRIMARY KEY,
    pool_id TEXT NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    region TEXT NOT NULL,
    agent_type TEXT NOT NULL,
    previous_capacity BIGINT NOT NULL,
    new_capacity BIGINT NOT NULL,
    reason TEXT NOT NULL,
    trigger_source TEXT NOT NULL,
    metadata TEXT NOT NULL,
    actuation_status TEXT NOT NULL,
    actuation_attempts BIGINT NOT NULL DEFAULT 0,
    actuation_error TEXT,
    actuated_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX scaling_events_pool ON scaling_events (pool_id, id);
CREATE INDEX scaling_events_tenant ON scaling_events (tenant_id, id);
CREATE INDEX scaling_events_actuation ON scaling_events (actuation_status, id);

CREATE TABLE metric_samples (
    pool_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL
);
CREATE INDEX metric_samples_series ON metric_samples (pool_id, metric, ts_ms);
CREATE INDEX metric_samples_ts ON metric_samples (ts_ms);

CREATE TABLE proposals (
    id TEXT PRIMARY KEY,
    pool_id TEXT NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    current_capacity BIGINT NOT NULL,
    target_capacity BIGINT NOT NULL,
    reason TEXT NOT NULL,
    decision TEXT NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    note TEXT,
    event_id TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    decided_at_ms BIGINT
);
CREATE INDEX proposals_pool ON proposals (pool_id, status);
CREATE INDEX proposals_tenant ON proposals (tenant_id, id);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    tenant_id TEXT,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    tenant_id TEXT REFERENCES tenants(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    epoch BIGINT NOT NULL
);
