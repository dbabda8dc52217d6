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
