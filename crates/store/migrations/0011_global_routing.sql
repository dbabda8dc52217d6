-- Global routing: the job kind a pool serves, tenants' region and routing
-- policies, recorded routing decisions (with the inputs that replay them),
-- per-tenant region ejections, each region's state and mode as the leader
-- last computed it, its mode transitions, and region-level metric samples
-- (the observed latency to a region).

ALTER TABLE pools ADD COLUMN job_kind TEXT;

CREATE TABLE tenant_region_policies (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    policy TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE tenant_routing_policies (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    policy TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE routing_decisions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    workload_type TEXT NOT NULL,
    agent_type TEXT NOT NULL,
    selected_region TEXT NOT NULL,
    input TEXT NOT NULL,
    decision TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX routing_decisions_tenant ON routing_decisions (tenant_id, id);

CREATE TABLE routing_ejections (
    tenant_id TEXT NOT NULL,
    region TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, region)
);

CREATE TABLE region_states (
    region_id TEXT PRIMARY KEY REFERENCES regions(id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    mode TEXT NOT NULL,
    mode_state TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE region_mode_events (
    id TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions(id) ON DELETE CASCADE,
    from_mode TEXT NOT NULL,
    to_mode TEXT NOT NULL,
    figures TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX region_mode_events_region ON region_mode_events (region_id, created_at_ms);

CREATE TABLE region_points (
    region_id TEXT NOT NULL REFERENCES regions(id) ON DELETE CASCADE,
    metric TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL
);
CREATE INDEX region_points_series ON region_points (region_id, metric, ts_ms);
