//! Regions' live state: region-level metric samples, the state and scaling
//! mode the leader last computed for each region, and the record of its
//! mode transitions.

use std::collections::{HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::Row;

use fleetscale_core::region::mode::{ModeState, ModeTransition, ScalingMode};
use fleetscale_core::region::state::RegionState;

use crate::leases::check_fence;
use crate::sql::{new_id, parse_text, to_json};
use crate::{Fence, Region, Result, Store, StoreError};

/// A metric sample about a region rather than a pool (the observed latency
/// to it, its queue).
#[derive(Debug, Clone, PartialEq)]
pub struct RegionSample {
    /// Region id.
    pub region_id: String,
    /// Metric name (`latency_ms`, `queue_depth`, ...).
    pub metric: String,
    /// Timestamp, Unix ms.
    pub ts_ms: i64,
    /// Value.
    pub value: f64,
}

/// A region's state as the leader last computed it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRegionState {
    /// Region id.
    pub region_id: String,
    /// The figures.
    pub state: RegionState,
    /// The scaling mode and its hysteresis memory.
    pub mode: ModeState,
    /// When it was computed, Unix ms.
    pub updated_at_ms: i64,
}

/// One recorded mode transition of a region.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionModeEvent {
    /// Event id (UUIDv7).
    pub id: String,
    /// Region id.
    pub region_id: String,
    /// The transition and the figures that caused it.
    pub transition: ModeTransition,
}

impl Store {
    /// Every region, by name.
    pub async fn all_regions(&self) -> Result<Vec<Region>> {
        let rows =
            sqlx::query("SELECT id, name, jurisdiction, created_at_ms FROM regions ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(Region {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    jurisdiction: r.try_get("jurisdiction")?,
                    created_at_ms: r.try_get("created_at_ms")?,
                })
            })
            .collect()
    }

    /// Appends region-level samples durably, in one transaction.
    pub async fn insert_region_samples(&self, samples: &[RegionSample]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for s in samples {
            sqlx::query(
                "INSERT INTO region_points (region_id, metric, ts_ms, value) VALUES ($1, $2, $3, $4)",
            )
            .bind(&s.region_id)
            .bind(&s.metric)
            .bind(s.ts_ms)
            .bind(s.value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.view_changed();
        Ok(())
    }

    /// The newest value of `metric` per region at or before `now_ms`, by
    /// region id.
    pub async fn newest_region_samples(
        &self,
        metric: &str,
        now_ms: i64,
    ) -> Result<HashMap<String, f64>> {
        let rows = sqlx::query(
            "SELECT p.region_id AS region_id, p.value AS value FROM region_points p \
             JOIN (SELECT region_id, MAX(ts_ms) AS ts_ms FROM region_points \
                   WHERE metric = $1 AND ts_ms <= $2 GROUP BY region_id) newest \
               ON newest.region_id = p.region_id AND newest.ts_ms = p.ts_ms \
             WHERE p.metric = $1",
        )
        .bind(metric)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("region_id")?, r.try_get("value")?)))
            .collect()
    }

    /// Deletes region-level samples older than `before_ms`; returns how many.
    pub async fn prune_region_samples(&self, before_ms: i64) -> Result<u64> {
        let res = sqlx::query("DELETE FROM region_points WHERE ts_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected())
    }

    /// Every region's stored state, by region id.
    pub async fn region_states(&self) -> Result<HashMap<String, StoredRegionState>> {
        let rows = sqlx::query(
            "SELECT region_id, state, mode, mode_state, updated_at_ms FROM region_states",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let s = state_row(r)?;
                Ok((s.region_id.clone(), s))
            })
            .collect()
    }

    /// One region's stored state, if the leader computed one.
    pub async fn region_state(&self, region_id: &str) -> Result<Option<StoredRegionState>> {
        let row = sqlx::query(
            "SELECT region_id, state, mode, mode_state, updated_at_ms FROM region_states WHERE region_id = $1",
        )
        .bind(region_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(state_row).transpose()
    }

    /// Stores a region's state and, when its mode changed, the transition,
    /// in one transaction fenced on the control-loop lease.
    pub async fn put_region_state(
        &self,
        region_id: &str,
        state: &RegionState,
        mode: &ModeState,
        transition: Option<&ModeTransition>,
        fence: &Fence,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        check_fence(&mut tx, fence, now_ms, "").await?;
        sqlx::query(
            "INSERT INTO region_states (region_id, state, mode, mode_state, updated_at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (region_id) DO UPDATE SET state = excluded.state, mode = excluded.mode, \
             mode_state = excluded.mode_state, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(region_id)
        .bind(to_json(state))
        .bind(mode.mode.as_str())
        .bind(to_json(mode))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        if let Some(t) = transition {
            sqlx::query(
                "INSERT INTO region_mode_events (id, region_id, from_mode, to_mode, figures, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(new_id())
            .bind(region_id)
            .bind(t.from.as_str())
            .bind(t.to.as_str())
            .bind(to_json(t))
            .bind(t.at_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.view_changed();
        Ok(())
    }

    /// Mode transitions since `since_ms`, oldest first, of one region or of
    /// all of them (at most `limit`, the newest kept).
    pub async fn region_mode_events(
        &self,
        region_id: Option<&str>,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<RegionModeEvent>> {
        let rows = sqlx::query(
            "SELECT id, region_id, figures FROM region_mode_events \
             WHERE ($1 = '' OR region_id = $1) AND created_at_ms >= $2 \
             ORDER BY created_at_ms DESC, id DESC LIMIT $3",
        )
        .bind(region_id.unwrap_or(""))
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                let figures: String = r.try_get("figures")?;
                Ok(RegionModeEvent {
                    id: r.try_get("id")?,
                    region_id: r.try_get("region_id")?,
                    transition: serde_json::from_str(&figures).map_err(|e| {
                        StoreError::Corrupt(format!("region mode event figures: {e}"))
                    })?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    /// Pools that reached their max capacity at some point since
    /// `since_ms`: at max now, or a scaling event to or from max since then.
    pub async fn pools_at_max_since(&self, since_ms: i64) -> Result<HashSet<String>> {
        let rows = sqlx::query(
            "SELECT id AS pool_id FROM pools WHERE desired_capacity >= max_capacity \
             UNION SELECT e.pool_id AS pool_id FROM scaling_events e JOIN pools p ON p.id = e.pool_id \
             WHERE e.created_at_ms >= $1 AND (e.new_capacity >= p.max_capacity OR e.previous_capacity >= p.max_capacity)",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("pool_id")?)).collect()
    }
}

fn state_row(r: &AnyRow) -> Result<StoredRegionState> {
    let state: String = r.try_get("state")?;
    let mode_state: String = r.try_get("mode_state")?;
    let mode: ScalingMode = parse_text(r, "mode")?;
    let mut m: ModeState = serde_json::from_str(&mode_state)
        .map_err(|e| StoreError::Corrupt(format!("region mode state: {e}")))?;
    if m.mode != mode {
        return Err(StoreError::Corrupt(format!(
            "region mode {mode} disagrees with its mode state {}",
            m.mode
        )));
    }
    m.mode = mode;
    Ok(StoredRegionState {
        region_id: r.try_get("region_id")?,
        state: serde_json::from_str(&state)
            .map_err(|e| StoreError::Corrupt(format!("region state: {e}")))?,
        mode: m,
        updated_at_ms: r.try_get("updated_at_ms")?,
    })
}
