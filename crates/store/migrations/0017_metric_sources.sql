-- A pool's metric source (fleetscale_core::metric_source::MetricSource as
-- JSON: a PromQL query the engine evaluates each tick, its value stored as
-- a sample like a pushed one); NULL reads pushed samples only. And the
-- record of a failing source (fleetscale_core::metric_source::MetricsError
-- as JSON: message, since_ms, consecutive_failures), written by the leader
-- and cleared by the next successful query; NULL when the source is fine.
ALTER TABLE pools ADD COLUMN metric_source TEXT;
ALTER TABLE pools ADD COLUMN metrics_error TEXT;
