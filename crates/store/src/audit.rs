//! The audit log: listing it and recording entries outside a mutation.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{audit, listed, parse_json};
use crate::{budget, now_ms, AuditEntry, Listed, Page, Result, Store};

impl Store {
    /// Lists audit entries, newest first, optionally of one tenant: the
    /// `audit_log` rows merged with the budget ledger's entries, which are
    /// the audit records of budget operations (see
    /// `budget::ledger_audit_row`). Both are ordered by their UUIDv7 ids,
    /// so one cursor pages through both. `audit_log` rows about ledger
    /// entries (a server older than migration 0009 may still write them
    /// during a rolling upgrade) are left out: the ledger speaks for them.
    pub async fn list_audit(
        &self,
        tenant_id: Option<&str>,
        page: &Page,
    ) -> Result<Listed<AuditEntry>> {
        // With a tenant the condition is `x = $1` alone, so that both
        // backends use the ledger's partial (agency_id, id) index. An empty
        // tenant means every tenant, as it always has.
        let tenant_id = tenant_id.filter(|t| !t.is_empty());
        let (log_where, ledger_where) = match tenant_id {
            Some(_) => ("tenant_id = $1", "agency_id = $1"),
            None => ("$1 = ''", "$1 = ''"),
        };
        let limit = page.limit();
        let cursor = page.cursor.clone().unwrap_or_default();
        let log = sqlx::query(&format!(
            "SELECT id, actor, action, tenant_id, object_type, object_id, detail, created_at_ms FROM audit_log WHERE {log_where} AND object_type <> 'budget_transaction' AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3",
        ))
        .bind(tenant_id.unwrap_or(""))
        .bind(&cursor)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let ledger = sqlx::query(&format!(
            "SELECT {} FROM region_budget_transactions WHERE {ledger_where} AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3",
            budget::LEDGER_AUDIT_COLS
        ))
        .bind(tenant_id.unwrap_or(""))
        .bind(&cursor)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items = log
            .iter()
            .map(audit_row)
            .chain(ledger.iter().map(budget::ledger_audit_row))
            .collect::<Result<Vec<_>>>()?;
        // Byte order, which for lowercase hyphenated UUIDs is the order both
        // databases sort `id` in (and the time order of UUIDv7).
        items.sort_unstable_by(|a, b| b.id.cmp(&a.id));
        Ok(listed(items, limit, |a| a.id.clone()))
    }

    /// Audit entries after the id `after` (exclusive; empty: from the
    /// start), oldest first, at most `limit`, optionally of one tenant: the
    /// same merge of `audit_log` and the budget ledger as [`Store::list_audit`],
    /// read forwards. The live stream (`GET /api/v1/stream`) reads the
    /// journal this way; both tables are ordered by their UUIDv7 ids.
    pub async fn audit_after(
        &self,
        tenant_id: Option<&str>,
        after: &str,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let tenant_id = tenant_id.filter(|t| !t.is_empty());
        let (log_where, ledger_where) = match tenant_id {
            Some(_) => ("tenant_id = $1", "agency_id = $1"),
            None => ("$1 = ''", "$1 = ''"),
        };
        let log = sqlx::query(&format!(
            "SELECT id, actor, action, tenant_id, object_type, object_id, detail, created_at_ms FROM audit_log WHERE {log_where} AND object_type <> 'budget_transaction' AND id > $2 ORDER BY id LIMIT $3",
        ))
        .bind(tenant_id.unwrap_or(""))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let ledger = sqlx::query(&format!(
            "SELECT {} FROM region_budget_transactions WHERE {ledger_where} AND id > $2 ORDER BY id LIMIT $3",
            budget::LEDGER_AUDIT_COLS
        ))
        .bind(tenant_id.unwrap_or(""))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut items = log
            .iter()
            .map(audit_row)
            .chain(ledger.iter().map(budget::ledger_audit_row))
            .collect::<Result<Vec<_>>>()?;
        items.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        items.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(items)
    }

    /// Records an audit entry on its own (for mutations outside the store).
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        tenant_id: Option<&str>,
        object_type: &str,
        object_id: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        audit(
            &mut tx,
            actor,
            action,
            tenant_id,
            object_type,
            object_id,
            detail,
            now_ms(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn audit_row(r: &AnyRow) -> Result<AuditEntry> {
    let detail: String = r.try_get("detail")?;
    Ok(AuditEntry {
        id: r.try_get("id")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        tenant_id: r.try_get("tenant_id")?,
        object_type: r.try_get("object_type")?,
        object_id: r.try_get("object_id")?,
        detail: parse_json(&detail)?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}
