-- Region snapshots: a region's figures over an hour, a day or a week
-- (average capacity score, peak pressure, budget used), taken by the leader
-- when each period ends and on request for the period so far.
CREATE TABLE region_snapshots (
    id TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions(id) ON DELETE CASCADE,
    period_type TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL,
    period_end_ms BIGINT NOT NULL,
    avg_capacity DOUBLE PRECISION,
    peak_pressure DOUBLE PRECISION,
    budget_used_cents BIGINT NOT NULL,
    state TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (region_id, period_type, period_start_ms)
);
