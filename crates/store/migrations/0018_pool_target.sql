-- The Kubernetes workload a pool scales under `serve --actuator kubernetes`
-- (fleetscale_core::workload::WorkloadTarget as JSON: kind, namespace,
-- name); NULL when the pool has none.
ALTER TABLE pools ADD COLUMN target TEXT;
