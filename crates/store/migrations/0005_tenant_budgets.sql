-- Tenant provider budgets (phase 66 "AI Provider Budgets"): a tier per
-- tenant, per provider an optional allocation override, a price and a hard or
-- soft limit, the month's usage counter, and an append-only usage ledger.
-- Portable SQL: units and cents are BIGINT, times BIGINT Unix ms, booleans
-- 0/1 BIGINT, ids TEXT.

-- One row per tenant that set a tier or recorded usage; no row means the
-- default tier (soft_launch). Usage recording locks this row, so a tenant's
-- records are serialized across replicas.
CREATE TABLE tenant_budgets (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    tier TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- One row per (tenant, provider) that has settings or usage. A NULL
-- allocation means the tier's default; a NULL price means not priced.
-- used_units is the usage of month month_key (a cache of the ledger);
-- next_seq numbers the ledger.
CREATE TABLE tenant_provider_budgets (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    allocation_units BIGINT,
    price_cents_per_million BIGINT,
    hard_limit BIGINT NOT NULL DEFAULT 0,
    month_key BIGINT NOT NULL DEFAULT 0,
    used_units BIGINT NOT NULL DEFAULT 0,
    next_seq BIGINT NOT NULL DEFAULT 1,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, provider),
    CHECK (used_units >= 0),
    CHECK (allocation_units IS NULL OR allocation_units >= 0),
    CHECK (price_cents_per_million IS NULL OR price_cents_per_million >= 0)
);

-- The append-only usage ledger. limit_units is the allocation enforced when
-- the budget was hard-limited (NULL when soft). Rows are never updated or
-- deleted.
CREATE TABLE provider_usage (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    seq BIGINT NOT NULL,
    month_key BIGINT NOT NULL,
    units BIGINT NOT NULL,
    used_after BIGINT NOT NULL,
    limit_units BIGINT,
    job_type TEXT,
    description TEXT,
    idempotency_key TEXT,
    actor TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (tenant_id, provider, seq),
    CHECK (units > 0),
    CHECK (used_after >= units),
    CHECK (limit_units IS NULL OR used_after <= limit_units)
);
CREATE UNIQUE INDEX provider_usage_idem ON provider_usage (tenant_id, idempotency_key);
CREATE INDEX provider_usage_time ON provider_usage (tenant_id, created_at_ms);
