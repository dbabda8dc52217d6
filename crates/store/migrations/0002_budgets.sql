-- Exact AI budgets (phase 92 region budgets and their ledger, reservations).
-- Portable SQL: amounts are BIGINT cents, times BIGINT
-- Unix ms, ids TEXT.

-- One row per region with a budget; the balances are a cache of the ledger
-- (check-ledger recomputes them). next_seq numbers the region's ledger.
CREATE TABLE region_budgets (
    region_id TEXT PRIMARY KEY REFERENCES regions(id) ON DELETE CASCADE,
    monthly_cents BIGINT NOT NULL DEFAULT 0,
    remaining_cents BIGINT NOT NULL DEFAULT 0,
    spent_today_cents BIGINT NOT NULL DEFAULT 0,
    reserved_cents BIGINT NOT NULL DEFAULT 0,
    next_seq BIGINT NOT NULL DEFAULT 1,
    last_day_key BIGINT NOT NULL,
    last_month_key BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    CHECK (remaining_cents >= 0),
    CHECK (reserved_cents >= 0)
);

-- The append-only ledger (phase 92 region_budget_transactions). Rows are
-- never updated or deleted.
CREATE TABLE region_budget_transactions (
    id TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    transaction_type TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    delta_cents BIGINT NOT NULL,
    balance_after_cents BIGINT NOT NULL,
    agency_id TEXT,
    job_type TEXT,
    description TEXT,
    reset_period TEXT,
    refund_of TEXT,
    reservation_id TEXT,
    idempotency_key TEXT,
    actor TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (region_id, seq),
    CHECK (balance_after_cents >= 0)
);
CREATE UNIQUE INDEX region_budget_tx_idem
    ON region_budget_transactions (region_id, transaction_type, idempotency_key);
CREATE INDEX region_budget_tx_refund_of ON region_budget_transactions (refund_of);
CREATE INDEX region_budget_tx_time ON region_budget_transactions (region_id, created_at_ms);

-- Holds of the two-step protocol: reserve, then commit or release; a held
-- reservation past expires_at_ms is released by the engine.
CREATE TABLE budget_reservations (
    id TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions(id) ON DELETE CASCADE,
    amount_cents BIGINT NOT NULL,
    job_type TEXT NOT NULL,
    agency_id TEXT,
    status TEXT NOT NULL,
    idempotency_key TEXT,
    expires_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    settled_at_ms BIGINT,
    committed_cents BIGINT
);
CREATE UNIQUE INDEX budget_reservations_idem ON budget_reservations (region_id, idempotency_key);
CREATE INDEX budget_reservations_held ON budget_reservations (status, expires_at_ms);
