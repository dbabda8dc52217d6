-- PostgreSQL: nothing changes. Its replicas share the database, so the
-- unique (region_id, transaction_type, idempotency_key) index stays the
-- arbiter of idempotency there.
--
-- SQLite runs migrations/sqlite/0008_idempotency_keys_sqlite.sql instead
-- (Store::open substitutes it): one process writes the ledger and keeps its
-- idempotency keys in memory (budget_sqlite.rs, "Idempotency keys").
SELECT 1;
