-- Alerts the region monitor raised: a critical conflict (or a critical
-- global risk), with whether the webhook took it.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    level TEXT NOT NULL,
    kind TEXT NOT NULL,
    region TEXT,
    message TEXT NOT NULL,
    detail TEXT NOT NULL,
    delivery TEXT NOT NULL,
    delivery_error TEXT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX alerts_kind_region ON alerts (kind, region, created_at_ms);

-- The region state reads the last hour's scaling events every tick (pools
-- that reached their max): by time, not by a scan of every event.
CREATE INDEX scaling_events_created ON scaling_events (created_at_ms);
