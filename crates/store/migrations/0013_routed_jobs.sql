-- Job routing (the phase 92 shard router): every job the router accepted,
-- queued in its region until it is marked done. A region's queued jobs
-- count toward its jobs_in_queue; the jobs done in the last minutes are
-- its measured throughput.
CREATE TABLE routed_jobs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    region_id TEXT NOT NULL REFERENCES regions(id) ON DELETE CASCADE,
    job_type TEXT NOT NULL,
    priority BIGINT NOT NULL,
    estimated_cost_cents BIGINT NOT NULL,
    shard_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'done')),
    created_at_ms BIGINT NOT NULL,
    done_at_ms BIGINT
);
-- Queued jobs per region (jobs_in_queue): only the queued rows are indexed,
-- so the index stays as small as the queues whatever the history.
CREATE INDEX routed_jobs_queued ON routed_jobs (region_id) WHERE status = 'queued';
-- Jobs done per region in a recent window (throughput).
CREATE INDEX routed_jobs_done ON routed_jobs (region_id, done_at_ms) WHERE status = 'done';
