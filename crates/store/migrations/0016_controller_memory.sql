-- Each pool's controller memory (fleetscale_core::memory::ControllerMemory,
-- JSON): when the control loop last grew and last shrank the pool, target
-- tracking's recommendations and scale events, and the predictive policies'
-- cached forecast models. The leader writes it (fenced) when it changes and
-- a new leader reads it, so it continues where the last one stopped.
CREATE TABLE pool_controller_memory (
    pool_id TEXT PRIMARY KEY,
    memory TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Per-instance samples (a metric sample with an `instance` label), read by
-- target tracking's Utilization, AverageValue and resource targets. Kept
-- apart from the pool series: a pool's own metrics are what its reporter
-- aggregates.
CREATE TABLE instance_points (
    pool_id TEXT NOT NULL,
    instance TEXT NOT NULL,
    metric TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL
);
CREATE INDEX instance_points_pool_ts ON instance_points (pool_id, ts_ms);
