-- Where a region's current day and month began in its ledger: a refund gives
-- money back to the period its spend was charged in, so the budget writer
-- looks up the latest resets under the row lock, and the month's statistics
-- start at the latest monthly reset. Resets are a few rows a day per region,
-- so this partial index stays tiny, costs spends nothing, and spares both
-- lookups a scan of the region's ledger.
CREATE INDEX region_budget_tx_resets ON region_budget_transactions (region_id, seq)
    WHERE transaction_type = 'reset';
