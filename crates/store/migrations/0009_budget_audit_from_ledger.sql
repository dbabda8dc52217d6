-- The budget ledger is the audit log of budget operations. Every ledger entry
-- used to be written twice in its transaction: as the entry and as an
-- audit_log row holding the same facts (actor, time, budget.<type>, the
-- agency as tenant, amount, balance after, job type, refund_of, region,
-- reservation). The budget writers now write the entry alone and
-- Store::list_audit serves its audit record from the ledger, with the
-- entry's id as the record's id. The audit rows written before are the same
-- records under other ids: they are removed so that each operation is
-- listed once.
DELETE FROM audit_log
    WHERE object_type = 'budget_transaction'
      AND object_id IN (SELECT id FROM region_budget_transactions);

-- A tenant's audit listing (tenant = the entry's agency) pages through the
-- ledger by id. Partial: entries without an agency pay no index insert.
CREATE INDEX region_budget_tx_agency ON region_budget_transactions (agency_id, id)
    WHERE agency_id IS NOT NULL;
