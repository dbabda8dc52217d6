//! Scaling: capacity changes, their events and actuation.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::pools::{pool_row, POOL_COLS};
use fleetscale_core::{ActuationStatus, TriggerSource};

use crate::leases::check_fence;
use crate::sql::{audit, new_id, not_found, paginate, parse_json, parse_text};
use crate::{Actuation, Fence, Listed, Page, Pool, Result, ScalingEvent, Store};

impl Store {
    /// Changes a pool's desired capacity (clamped to its bounds) and records the
    /// scaling event and audit entry in one transaction. Idempotent per
    /// `expect_desired`: a retried autoscaler write whose precondition no longer
    /// holds changes nothing.
    pub async fn scale(&self, req: &ScaleRequest) -> Result<ScaleOutcome> {
        let mut tx = self.begin().await?;
        if let Some(f) = &req.fence {
            check_fence(&mut tx, f, req.now_ms, self.for_update()).await?;
        }
        let row = sqlx::query(&format!(
            "SELECT {POOL_COLS} FROM pools WHERE id = $1{}",
            self.for_update()
        ))
        .bind(&req.pool_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found("pool"))?;
        let pool = pool_row(&row)?;
        let skip = |why: &str| ScaleOutcome {
            pool: pool.clone(),
            event: None,
            skipped: Some(why.to_string()),
        };
        if req.respect_safety_lock && pool.safety_lock {
            return Ok(skip("safety lock is set"));
        }
        if let Some(exp) = req.expect_desired {
            if exp != pool.desired_capacity {
                return Ok(skip("desired capacity changed since the decision"));
            }
        }
        let new = req.capacity.clamp(pool.min_capacity, pool.max_capacity);
        if new == pool.desired_capacity {
            return Ok(ScaleOutcome {
                pool,
                event: None,
                skipped: None,
            });
        }
        sqlx::query("UPDATE pools SET desired_capacity=$2, last_scaled_at_ms=$3, updated_at_ms=$3 WHERE id=$1")
            .bind(&pool.id)
            .bind(new)
            .bind(req.now_ms)
            .execute(&mut *tx)
            .await?;
        let mut metadata = req.metadata.clone();
        if let Some(m) = metadata.as_object_mut() {
            m.insert("min_capacity".into(), pool.min_capacity.into());
            m.insert("max_capacity".into(), pool.max_capacity.into());
            m.insert("requested_capacity".into(), req.capacity.into());
            m.insert("actor".into(), req.actor.clone().into());
        }
        let ev = ScalingEvent {
            id: new_id(),
            pool_id: pool.id.clone(),
            tenant_id: pool.tenant_id.clone(),
            region: pool.region.clone(),
            agent_type: pool.agent_type.clone(),
            previous_capacity: pool.desired_capacity,
            new_capacity: new,
            reason: req.reason.clone(),
            trigger_source: req.trigger_source,
            metadata,
            actuation: Actuation {
                status: req.actuation_status,
                attempts: 0,
                error: None,
                actuated_at_ms: None,
            },
            created_at_ms: req.now_ms,
        };
        sqlx::query(&format!("INSERT INTO scaling_events ({EVENT_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,0,NULL,NULL,$12)"))
            .bind(&ev.id)
            .bind(&ev.pool_id)
            .bind(&ev.tenant_id)
            .bind(&ev.region)
            .bind(&ev.agent_type)
            .bind(ev.previous_capacity)
            .bind(ev.new_capacity)
            .bind(&ev.reason)
            .bind(ev.trigger_source.as_str())
            .bind(ev.metadata.to_string())
            .bind(ev.actuation.status.as_str())
            .bind(ev.created_at_ms)
            .execute(&mut *tx)
            .await?;
        // An older undelivered event of the same pool is superseded by this one.
        sqlx::query("UPDATE scaling_events SET actuation_status='superseded' WHERE pool_id=$1 AND id <> $2 AND actuation_status IN ('pending','failed')")
            .bind(&pool.id)
            .bind(&ev.id)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            &req.actor,
            "pool.scale",
            Some(&pool.tenant_id),
            "pool",
            &pool.id,
            serde_json::json!({"previous": pool.desired_capacity, "new": new, "trigger_source": req.trigger_source, "event_id": ev.id}),
            req.now_ms,
        )
        .await?;
        tx.commit().await?;
        self.view_changed();
        let mut pool = pool;
        pool.desired_capacity = new;
        pool.last_scaled_at_ms = Some(req.now_ms);
        pool.updated_at_ms = req.now_ms;
        Ok(ScaleOutcome {
            pool,
            event: Some(ev),
            skipped: None,
        })
    }

    /// Lists scaling events, newest first, filtered by pool and/or tenant.
    pub async fn list_events(
        &self,
        pool_id: Option<&str>,
        tenant_id: Option<&str>,
        page: &Page,
    ) -> Result<Listed<ScalingEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM scaling_events WHERE ($1 = '' OR pool_id = $1) AND ($2 = '' OR tenant_id = $2) AND ($3 = '' OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(pool_id.unwrap_or(""))
        .bind(tenant_id.unwrap_or(""))
        .bind(page.cursor.clone().unwrap_or_default())
        .bind(page.limit() + 1)
        .fetch_all(&self.pool)
        .await?;
        paginate(rows, page.limit(), event_row, |e| e.id.clone())
    }

    /// Fetches one scaling event.
    pub async fn get_event(&self, id: &str) -> Result<ScalingEvent> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM scaling_events WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found("scaling event"))?;
        event_row(&row)
    }

    /// Events awaiting actuation (`pending` or `failed`), oldest first, at most `limit`.
    pub async fn pending_actuations(&self, limit: i64) -> Result<Vec<ScalingEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM scaling_events WHERE actuation_status IN ('pending','failed') ORDER BY id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_row).collect()
    }

    /// Records the outcome of one delivery attempt series. Only an event still
    /// awaiting actuation is updated (a superseded one stays superseded).
    pub async fn record_actuation(
        &self,
        event_id: &str,
        delivered: bool,
        attempts: i64,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE scaling_events SET actuation_status=$2, actuation_attempts=actuation_attempts+$3, actuation_error=$4, actuated_at_ms=$5 WHERE id=$1 AND actuation_status IN ('pending','failed')",
        )
        .bind(event_id)
        .bind(
            if delivered {
                ActuationStatus::Delivered
            } else {
                ActuationStatus::Failed
            }
            .as_str(),
        )
        .bind(attempts)
        .bind(error)
        .bind(if delivered { Some(now_ms) } else { None })
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// A request to change a pool's desired capacity.
#[derive(Debug, Clone)]
pub struct ScaleRequest {
    /// Pool to change.
    pub pool_id: String,
    /// Requested capacity (clamped to the pool bounds).
    pub capacity: i64,
    /// Why.
    pub reason: String,
    /// What causes the change.
    pub trigger_source: TriggerSource,
    /// Extra event metadata (decision inputs, ...).
    pub metadata: serde_json::Value,
    /// Audit actor.
    pub actor: String,
    /// Apply only if the pool still has this desired capacity (optimistic check).
    pub expect_desired: Option<i64>,
    /// Refuse when the pool's safety lock is set (autoscaler writes).
    pub respect_safety_lock: bool,
    /// Initial actuation status of the event (`pending` or `none`).
    pub actuation_status: ActuationStatus,
    /// Fence for writes made by the control loop.
    pub fence: Option<Fence>,
    /// Time of the change, Unix ms.
    pub now_ms: i64,
}

/// The result of [`Store::scale`].
#[derive(Debug, Clone)]
pub struct ScaleOutcome {
    /// The pool after the change.
    pub pool: Pool,
    /// The event written, or `None` when the capacity did not change.
    pub event: Option<ScalingEvent>,
    /// True when `expect_desired` or the safety lock prevented the change.
    pub skipped: Option<String>,
}

/// The columns [`event_row`] decodes.
const EVENT_COLS: &str = "id, pool_id, tenant_id, region, agent_type, previous_capacity, new_capacity, reason, trigger_source, metadata, actuation_status, actuation_attempts, actuation_error, actuated_at_ms, created_at_ms";

fn event_row(r: &AnyRow) -> Result<ScalingEvent> {
    let metadata: String = r.try_get("metadata")?;
    Ok(ScalingEvent {
        id: r.try_get("id")?,
        pool_id: r.try_get("pool_id")?,
        tenant_id: r.try_get("tenant_id")?,
        region: r.try_get("region")?,
        agent_type: r.try_get("agent_type")?,
        previous_capacity: r.try_get("previous_capacity")?,
        new_capacity: r.try_get("new_capacity")?,
        reason: r.try_get("reason")?,
        trigger_source: parse_text(r, "trigger_source")?,
        metadata: parse_json(&metadata)?,
        actuation: Actuation {
            status: parse_text(r, "actuation_status")?,
            attempts: r.try_get("actuation_attempts")?,
            error: r.try_get("actuation_error")?,
            actuated_at_ms: r.try_get("actuated_at_ms")?,
        },
        created_at_ms: r.try_get("created_at_ms")?,
    })
}
