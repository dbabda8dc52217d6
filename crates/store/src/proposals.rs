//! Proposals: capacity changes waiting for a human decision.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use fleetscale_core::ProposalStatus;

use crate::leases::check_fence;
use crate::sql::{audit, new_id, not_found, paginate, parse_json, parse_text};
use crate::{Fence, Listed, Page, Pool, Proposal, Result, Store, StoreError};

impl Store {
    /// Creates or refreshes the pending proposal of a pool. Returns it.
    pub async fn upsert_proposal(
        &self,
        pool: &Pool,
        target: i64,
        reason: &str,
        decision: &serde_json::Value,
        fence: Option<&Fence>,
        now_ms: i64,
    ) -> Result<Proposal> {
        let mut tx = self.begin().await?;
        if let Some(f) = fence {
            check_fence(&mut tx, f, now_ms, "").await?;
        }
        let existing =
            sqlx::query("SELECT id FROM proposals WHERE pool_id = $1 AND status = 'pending'")
                .bind(&pool.id)
                .fetch_optional(&mut *tx)
                .await?;
        let id = match existing {
            Some(row) => {
                let id: String = row.try_get("id")?;
                sqlx::query("UPDATE proposals SET current_capacity=$2, target_capacity=$3, reason=$4, decision=$5, updated_at_ms=$6 WHERE id=$1")
                    .bind(&id)
                    .bind(pool.desired_capacity)
                    .bind(target)
                    .bind(reason)
                    .bind(decision.to_string())
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                id
            }
            None => {
                let id = new_id();
                sqlx::query(&format!("INSERT INTO proposals ({PROPOSAL_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,'pending',NULL,NULL,NULL,$8,$8,NULL)"))
                    .bind(&id)
                    .bind(&pool.id)
                    .bind(&pool.tenant_id)
                    .bind(pool.desired_capacity)
                    .bind(target)
                    .bind(reason)
                    .bind(decision.to_string())
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                audit(
                    &mut tx,
                    "engine",
                    "proposal.create",
                    Some(&pool.tenant_id),
                    "proposal",
                    &id,
                    serde_json::json!({"pool_id": pool.id, "target": target}),
                    now_ms,
                )
                .await?;
                id
            }
        };
        tx.commit().await?;
        self.get_proposal(&id).await
    }

    /// Pool id → target capacity of every pending proposal.
    pub async fn pending_proposals(&self) -> Result<HashMap<String, i64>> {
        let rows =
            sqlx::query("SELECT pool_id, target_capacity FROM proposals WHERE status = 'pending'")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("pool_id")?, r.try_get("target_capacity")?)))
            .collect()
    }

    /// Withdraws a pool's pending proposal (the policy no longer wants a change).
    pub async fn withdraw_proposal(&self, pool_id: &str, now_ms: i64) -> Result<()> {
        sqlx::query("UPDATE proposals SET status='superseded', updated_at_ms=$2 WHERE pool_id=$1 AND status='pending'")
            .bind(pool_id)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Fetches a proposal.
    pub async fn get_proposal(&self, id: &str) -> Result<Proposal> {
        let row = sqlx::query(&format!(
            "SELECT {PROPOSAL_COLS} FROM proposals WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found("proposal"))?;
        proposal_row(&row)
    }

    /// Lists proposals, newest first, by tenant and/or status.
    pub async fn list_proposals(
        &self,
        tenant_id: Option<&str>,
        status: Option<ProposalStatus>,
        page: &Page,
    ) -> Result<Listed<Proposal>> {
        let rows = sqlx::query(&format!(
            "SELECT {PROPOSAL_COLS} FROM proposals WHERE ($1 = '' OR tenant_id = $1) AND ($2 = '' OR status = $2) AND ($3 = '' OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(tenant_id.unwrap_or(""))
        .bind(status.map_or("", ProposalStatus::as_str))
        .bind(page.cursor.clone().unwrap_or_default())
        .bind(page.limit() + 1)
        .fetch_all(&self.pool)
        .await?;
        paginate(rows, page.limit(), proposal_row, |p| p.id.clone())
    }

    /// Marks a pending proposal settled; a proposal that is not pending is a conflict.
    pub async fn settle_proposal(
        &self,
        id: &str,
        approved: bool,
        actor: &str,
        note: Option<&str>,
        event_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Proposal> {
        let p = self.get_proposal(id).await?;
        let mut tx = self.begin().await?;
        let res = sqlx::query("UPDATE proposals SET status=$2, decided_by=$3, note=$4, event_id=$5, decided_at_ms=$6, updated_at_ms=$6 WHERE id=$1 AND status='pending'")
            .bind(id)
            .bind(
                if approved {
                    ProposalStatus::Approved
                } else {
                    ProposalStatus::Rejected
                }
                .as_str(),
            )
            .bind(actor)
            .bind(note)
            .bind(event_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Conflict {
                what: format!("proposal is {}, not pending", p.status),
            });
        }
        audit(
            &mut tx,
            actor,
            if approved {
                "proposal.approve"
            } else {
                "proposal.reject"
            },
            Some(&p.tenant_id),
            "proposal",
            id,
            serde_json::json!({"note": note, "event_id": event_id}),
            now_ms,
        )
        .await?;
        tx.commit().await?;
        self.get_proposal(id).await
    }
}

/// The columns [`proposal_row`] decodes.
const PROPOSAL_COLS: &str = "id, pool_id, tenant_id, current_capacity, target_capacity, reason, decision, status, decided_by, note, event_id, created_at_ms, updated_at_ms, decided_at_ms";

fn proposal_row(r: &AnyRow) -> Result<Proposal> {
    let decision: String = r.try_get("decision")?;
    Ok(Proposal {
        id: r.try_get("id")?,
        pool_id: r.try_get("pool_id")?,
        tenant_id: r.try_get("tenant_id")?,
        current_capacity: r.try_get("current_capacity")?,
        target_capacity: r.try_get("target_capacity")?,
        reason: r.try_get("reason")?,
        decision: parse_json(&decision)?,
        status: parse_text(r, "status")?,
        decided_by: r.try_get("decided_by")?,
        note: r.try_get("note")?,
        event_id: r.try_get("event_id")?,
        created_at_ms: r.try_get("created_at_ms")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
        decided_at_ms: r.try_get("decided_at_ms")?,
    })
}
