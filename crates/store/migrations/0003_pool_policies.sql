-- A pool's combined policies (fleetscale_core::decision::PoolPolicies as
-- JSON). NULL means the pool runs its phase-93 threshold policy alone.
ALTER TABLE pools ADD COLUMN policies TEXT;
