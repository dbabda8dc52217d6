//! Region snapshots: a region's figures over an hour, a day or a week,
//! computed from the region-level `capacity_score` and `pressure` samples
//! the leader appends every tick and from the region's budget ledger.

use std::collections::HashSet;

use sqlx::any::AnyRow;
use sqlx::Row;

use fleetscale_core::region::mode::ScalingMode;
use fleetscale_core::region::snapshot::PeriodType;
use fleetscale_core::region::state::RegionState;

use crate::sql::{audit, new_id, parse_text, to_json};
use crate::{Result, Store, StoreError};

/// A region's figures over one period.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionSnapshot {
    /// Id (UUIDv7).
    pub id: String,
    /// Region id.
    pub region_id: String,
    /// Hourly, daily or weekly.
    pub period_type: PeriodType,
    /// Start of the period, Unix ms.
    pub period_start_ms: i64,
    /// End of the period (or of the part of it covered so far), Unix ms.
    pub period_end_ms: i64,
    /// Mean capacity score over the period; `None` without samples.
    pub avg_capacity: Option<f64>,
    /// Highest overall pressure over the period; `None` without samples.
    pub peak_pressure: Option<f64>,
    /// Net spend of the region's budget in the period (spends − refunds),
    /// cents.
    pub budget_used_cents: i64,
    /// The region's state when the snapshot was taken.
    pub state: RegionState,
    /// Its mode then.
    pub mode: ScalingMode,
    /// When it was taken, Unix ms.
    pub created_at_ms: i64,
}

/// What a snapshot is taken of.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotRequest<'a> {
    /// Region id.
    pub region_id: &'a str,
    /// The period's type.
    pub period_type: PeriodType,
    /// `[start, end)` covered.
    pub period: (i64, i64),
    /// The region's state now.
    pub state: &'a RegionState,
    /// Its mode now.
    pub mode: ScalingMode,
    /// Who asks: `Some` for an operator (replaces an earlier snapshot of the
    /// same period, audited), `None` for the leader at a period's end
    /// (keeps an existing one).
    pub actor: Option<&'a str>,
    /// Now, Unix ms.
    pub now_ms: i64,
}

/// The columns [`snapshot_row`] decodes.
const SNAPSHOT_COLS: &str = "id, region_id, period_type, period_start_ms, period_end_ms, avg_capacity, peak_pressure, budget_used_cents, state, created_at_ms";

impl Store {
    /// Takes (stores) a snapshot and returns it; see [`SnapshotRequest`].
    pub async fn take_region_snapshot(&self, r: &SnapshotRequest<'_>) -> Result<RegionSnapshot> {
        let (start, end) = r.period;
        let mut tx = self.begin().await?;
        let figures = sqlx::query(
            "SELECT AVG(CASE WHEN metric = 'capacity_score' THEN value END) AS avg_capacity, \
                    MAX(CASE WHEN metric = 'pressure' THEN value END) AS peak_pressure \
             FROM region_points WHERE region_id = $1 AND ts_ms >= $2 AND ts_ms < $3 \
               AND metric IN ('capacity_score', 'pressure')",
        )
        .bind(r.region_id)
        .bind(start)
        .bind(end)
        .fetch_one(&mut *tx)
        .await?;
        let avg_capacity: Option<f64> = figures.try_get("avg_capacity")?;
        let peak_pressure: Option<f64> = figures.try_get("peak_pressure")?;
        let used: Option<i64> = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN transaction_type = 'spend' THEN amount_cents \
                                           WHEN transaction_type = 'refund' THEN -amount_cents \
                                           ELSE 0 END), 0) AS BIGINT) AS used \
             FROM region_budget_transactions WHERE region_id = $1 AND created_at_ms >= $2 AND created_at_ms < $3",
        )
        .bind(r.region_id)
        .bind(start)
        .bind(end)
        .fetch_one(&mut *tx)
        .await?
        .try_get("used")?;
        let state = to_json(&serde_json::json!({"state": r.state, "mode": r.mode}));
        let conflict = if r.actor.is_some() {
            "DO UPDATE SET period_end_ms = excluded.period_end_ms, avg_capacity = excluded.avg_capacity, \
             peak_pressure = excluded.peak_pressure, budget_used_cents = excluded.budget_used_cents, \
             state = excluded.state, created_at_ms = excluded.created_at_ms"
        } else {
            "DO NOTHING"
        };
        sqlx::query(&format!(
            "INSERT INTO region_snapshots ({SNAPSHOT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (region_id, period_type, period_start_ms) {conflict}"
        ))
        .bind(new_id())
        .bind(r.region_id)
        .bind(r.period_type.as_str())
        .bind(start)
        .bind(end)
        .bind(avg_capacity)
        .bind(peak_pressure)
        .bind(used.unwrap_or(0))
        .bind(state)
        .bind(r.now_ms)
        .execute(&mut *tx)
        .await?;
        if let Some(actor) = r.actor {
            audit(
                &mut tx,
                actor,
                "region.snapshot",
                None,
                "region",
                r.region_id,
                serde_json::json!({"period_type": r.period_type.as_str(), "period_start_ms": start, "period_end_ms": end}),
                r.now_ms,
            )
            .await?;
        }
        let row = sqlx::query(&format!(
            "SELECT {SNAPSHOT_COLS} FROM region_snapshots WHERE region_id = $1 AND period_type = $2 AND period_start_ms = $3"
        ))
        .bind(r.region_id)
        .bind(r.period_type.as_str())
        .bind(start)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        snapshot_row(&row)
    }

    /// The regions that have a `period_type` snapshot starting at `start_ms`.
    pub async fn regions_with_snapshot(
        &self,
        period_type: PeriodType,
        start_ms: i64,
    ) -> Result<HashSet<String>> {
        let rows = sqlx::query(
            "SELECT region_id FROM region_snapshots WHERE period_type = $1 AND period_start_ms = $2",
        )
        .bind(period_type.as_str())
        .bind(start_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("region_id")?)).collect()
    }

    /// A region's newest `limit` snapshots of `period_type`, newest first.
    pub async fn region_snapshots(
        &self,
        region_id: &str,
        period_type: PeriodType,
        limit: i64,
    ) -> Result<Vec<RegionSnapshot>> {
        let rows = sqlx::query(&format!(
            "SELECT {SNAPSHOT_COLS} FROM region_snapshots WHERE region_id = $1 AND period_type = $2 \
             ORDER BY period_start_ms DESC LIMIT $3"
        ))
        .bind(region_id)
        .bind(period_type.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(snapshot_row).collect()
    }
}

fn snapshot_row(r: &AnyRow) -> Result<RegionSnapshot> {
    #[derive(serde::Deserialize)]
    struct Kept {
        state: RegionState,
        mode: ScalingMode,
    }
    let state: String = r.try_get("state")?;
    let kept: Kept = serde_json::from_str(&state)
        .map_err(|e| StoreError::Corrupt(format!("region snapshot state: {e}")))?;
    Ok(RegionSnapshot {
        id: r.try_get("id")?,
        region_id: r.try_get("region_id")?,
        period_type: parse_text(r, "period_type")?,
        period_start_ms: r.try_get("period_start_ms")?,
        period_end_ms: r.try_get("period_end_ms")?,
        avg_capacity: r.try_get("avg_capacity")?,
        peak_pressure: r.try_get("peak_pressure")?,
        budget_used_cents: r.try_get("budget_used_cents")?,
        state: kept.state,
        mode: kept.mode,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}
