-- The refund lookup index only needs refunds: spends, reservations, resets
-- and allocations (nearly every ledger row) have no refund_of and no longer
-- pay an index insert for it. Queries filter `refund_of = ...`, which implies
-- IS NOT NULL, so both SQLite and PostgreSQL still use the index.
DROP INDEX region_budget_tx_refund_of;
CREATE INDEX region_budget_tx_refund_of ON region_budget_transactions (refund_of)
    WHERE refund_of IS NOT NULL;
