-- SQLite: the budget writer keeps the ledger's idempotency keys in memory,
-- synchronized with the ledger through each region's sequence numbers
-- (budget_sqlite.rs, "Idempotency keys"), so the unique index on
-- (region_id, transaction_type, idempotency_key) is dropped. Its random keys
-- dirtied about one B-tree page per spend (23 of the 42 pages a commit of 18
-- spends wrote) and its probes were 18% of the writer's time
-- (docs/benchmarks.md). `fleetscale budgets check-ledger` reports a key used
-- twice by one transaction type, which the index used to refuse.
DROP INDEX region_budget_tx_idem;
