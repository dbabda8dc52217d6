-- Ledger indexes that match the queries budget.rs runs.
--
-- region_budget_tx_time (region_id, created_at_ms) served no query (periods
-- and listings go by seq, which UNIQUE (region_id, seq) indexes), cost every
-- spend an index insert, and misled PostgreSQL's planner on a fresh database
-- (statistics taken while the ledger held one or two rows): it probed that
-- index for the idempotency lookup and filtered the whole region under the
-- row lock, about 80 ms a lookup until the next ANALYZE.
DROP INDEX region_budget_tx_time;

-- Committing or releasing a reservation reads its 'reserve' entry by
-- reservation_id; without an index that was a scan of the whole ledger.
-- Partial: spends and refunds (no reservation) stay out of it, so the spend
-- path pays no index insert for it.
CREATE INDEX region_budget_tx_reservation ON region_budget_transactions (reservation_id)
    WHERE reservation_id IS NOT NULL;
