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
