//! Pools: their definitions, bounds, policies, safety lock and owners.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use fleetscale_core::region::state::JobKind;
use fleetscale_core::ValidPool;

use crate::sql::{audit, conflict_as, new_id, not_found, paginate, parse_text, to_json};
use crate::{now_ms, Listed, Page, Pool, Result, Sample, Store, StoreError};

impl Store {
    /// Creates a pool. The tenant and region must exist; one pool per
    /// tenant × region × agent type.
    pub async fn create_pool(&self, p: &ValidPool, actor: &str) -> Result<Pool> {
        self.get_tenant(&p.tenant_id).await?;
        self.get_region(&p.region).await?;
        let now = now_ms();
        let id = new_id();
        let mut tx = self.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO pools ({POOL_COLS}, window_seconds) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,0,NULL,$12,$12,NULL,$14,$15,NULL,$16,$13)"
        ))
        .bind(&id)
        .bind(&p.tenant_id)
        .bind(&p.region)
        .bind(&p.agent_type)
        .bind(p.bounds.min)
        .bind(p.bounds.max)
        .bind(p.bounds.desired)
        .bind(p.capacity_per_instance)
        .bind(&p.metric)
        .bind(p.mode.as_str())
        .bind(to_json(&p.policy))
        .bind(now)
        .bind(p.policy.window_seconds)
        .bind(p.job_kind.map(JobKind::as_str))
        .bind(p.metric_source.as_ref().map(to_json))
        .bind(p.target.as_ref().map(to_json))
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_as(e, format!("a pool for region {:?} and agent type {:?} exists", p.region, p.agent_type)))?;
        audit(
            &mut tx,
            actor,
            "pool.create",
            Some(&p.tenant_id),
            "pool",
            &id,
            serde_json::to_value(p).unwrap_or_default(),
            now,
        )
        .await?;
        tx.commit().await?;
        self.view_changed();
        self.get_pool(&id).await
    }

    /// Replaces a pool's mutable fields with `p` (already validated). A
    /// changed or removed metric source drops its failure record (a new
    /// source starts with a clean one).
    pub async fn update_pool(&self, id: &str, p: &ValidPool, actor: &str) -> Result<Pool> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let res = sqlx::query(
            "UPDATE pools SET min_capacity=$2, max_capacity=$3, desired_capacity=$4, capacity_per_instance=$5, metric=$6, mode=$7, scaling_policy=$8, window_seconds=$9, updated_at_ms=$10, job_kind=$11, metric_source=$12, metrics_error=CASE WHEN $12 IS NULL OR metric_source IS NULL OR metric_source <> $12 THEN NULL ELSE metrics_error END, target=$13 WHERE id=$1",
        )
        .bind(id)
        .bind(p.bounds.min)
        .bind(p.bounds.max)
        .bind(p.bounds.desired)
        .bind(p.capacity_per_instance)
        .bind(&p.metric)
        .bind(p.mode.as_str())
        .bind(to_json(&p.policy))
        .bind(p.policy.window_seconds)
        .bind(now)
        .bind(p.job_kind.map(JobKind::as_str))
        .bind(p.metric_source.as_ref().map(to_json))
        .bind(p.target.as_ref().map(to_json))
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() == 0 {
            return Err(not_found("pool"));
        }
        audit(
            &mut tx,
            actor,
            "pool.update",
            Some(&p.tenant_id),
            "pool",
            id,
            serde_json::to_value(p).unwrap_or_default(),
            now,
        )
        .await?;
        tx.commit().await?;
        self.view_changed();
        self.get_pool(id).await
    }

    /// Sets (or, with `None`, clears) a pool's combined policies.
    pub async fn set_pool_policies(
        &self,
        id: &str,
        policies: Option<&fleetscale_core::decision::PoolPolicies>,
        actor: &str,
    ) -> Result<Pool> {
        let pool = self.get_pool(id).await?;
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE pools SET policies=$2, updated_at_ms=$3 WHERE id=$1")
            .bind(id)
            .bind(policies.map(to_json))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({ "policies": policies });
        audit(
            &mut tx,
            actor,
            if policies.is_some() {
                "pool.policies.set"
            } else {
                "pool.policies.clear"
            },
            Some(&pool.tenant_id),
            "pool",
            id,
            detail,
            now,
        )
        .await?;
        tx.commit().await?;
        self.get_pool(id).await
    }

    /// All samples of a pool in `(from_ms, to_ms]`, grouped by metric, oldest
    /// first, at most `limit` in all (the newest are kept).
    pub async fn pool_samples(
        &self,
        pool_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<Sample>> {
        let rows = sqlx::query("SELECT ms.pool_id, ms.metric, p.ts_ms, p.value FROM metric_points p JOIN metric_series ms ON ms.id = p.series_id WHERE ms.pool_id = $1 AND p.ts_ms > $2 AND p.ts_ms <= $3 ORDER BY p.ts_ms DESC LIMIT $4")
            .bind(pool_id)
            .bind(from_ms)
            .bind(to_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<Sample> = rows
            .iter()
            .map(|r| {
                Ok(Sample {
                    pool_id: r.try_get("pool_id")?,
                    metric: r.try_get("metric")?,
                    ts_ms: r.try_get("ts_ms")?,
                    value: r.try_get("value")?,
                })
            })
            .collect::<Result<_>>()?;
        out.reverse();
        Ok(out)
    }

    /// The samples in `(from_ms, to_ms]` of every pool that has combined
    /// policies, by pool id, each pool's oldest first and at most
    /// `limit_per_pool` of them (its newest are kept): what
    /// [`Store::pool_samples`] gives for one pool, for all of them in one
    /// query.
    pub async fn policy_pool_samples(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit_per_pool: i64,
    ) -> Result<HashMap<String, Vec<Sample>>> {
        let rows = sqlx::query(
            "SELECT pool_id, metric, ts_ms, value FROM (\
               SELECT ms.pool_id AS pool_id, ms.metric AS metric, p.ts_ms AS ts_ms, p.value AS value, \
                 ROW_NUMBER() OVER (PARTITION BY ms.pool_id ORDER BY p.ts_ms DESC) AS rn \
               FROM metric_points p JOIN metric_series ms ON ms.id = p.series_id \
               WHERE ms.pool_id IN (SELECT id FROM pools WHERE policies IS NOT NULL) \
                 AND p.ts_ms > $1 AND p.ts_ms <= $2\
             ) newest WHERE rn <= $3 ORDER BY pool_id, rn DESC",
        )
        .bind(from_ms)
        .bind(to_ms)
        .bind(limit_per_pool)
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<String, Vec<Sample>> = HashMap::new();
        for r in &rows {
            let s = Sample {
                pool_id: r.try_get("pool_id")?,
                metric: r.try_get("metric")?,
                ts_ms: r.try_get("ts_ms")?,
                value: r.try_get("value")?,
            };
            match out.get_mut(&s.pool_id) {
                Some(v) => v.push(s),
                None => {
                    out.insert(s.pool_id.clone(), vec![s]);
                }
            }
        }
        Ok(out)
    }

    /// Mean of one metric per `bucket_ms` interval in `[from_ms, to_ms)`:
    /// `(bucket start, mean)` for every bucket that has samples, in order.
    pub async fn bucketed_means(
        &self,
        pool_id: &str,
        metric: &str,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, f64)>> {
        let rows = sqlx::query(
            "SELECT (p.ts_ms / $4) * $4 AS bucket, AVG(p.value) FROM metric_points p JOIN metric_series ms ON ms.id = p.series_id WHERE ms.pool_id = $1 AND ms.metric = $2 AND p.ts_ms >= $3 AND p.ts_ms < $5 GROUP BY 1 ORDER BY 1",
        )
        .bind(pool_id)
        .bind(metric)
        .bind(from_ms)
        .bind(bucket_ms.max(1))
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Records (or, with `None`, clears) the failure of a pool's metric
    /// source: engine state, not a setting, so neither audited nor counted
    /// as an update. Fenced on the lease when `fence` is given (only the
    /// leader polls sources). Idempotent; a deleted pool is not an error.
    pub async fn set_metrics_error(
        &self,
        id: &str,
        error: Option<&fleetscale_core::metric_source::MetricsError>,
        fence: Option<&crate::Fence>,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        if let Some(f) = fence {
            crate::leases::check_fence(&mut tx, f, now_ms, "").await?;
        }
        sqlx::query("UPDATE pools SET metrics_error=$2 WHERE id=$1")
            .bind(id)
            .bind(error.map(to_json))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets or clears a pool's safety lock.
    pub async fn set_safety_lock(&self, id: &str, locked: bool, actor: &str) -> Result<Pool> {
        let pool = self.get_pool(id).await?;
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE pools SET safety_lock=$2, updated_at_ms=$3 WHERE id=$1")
            .bind(id)
            .bind(i64::from(locked))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            actor,
            if locked { "pool.lock" } else { "pool.unlock" },
            Some(&pool.tenant_id),
            "pool",
            id,
            serde_json::json!({}),
            now,
        )
        .await?;
        tx.commit().await?;
        self.get_pool(id).await
    }

    /// Deletes a pool and its events, proposals and samples.
    pub async fn delete_pool(&self, id: &str, actor: &str) -> Result<()> {
        let pool = self.get_pool(id).await?;
        let now = now_ms();
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM metric_points WHERE series_id IN (SELECT id FROM metric_series WHERE pool_id = $1)",
            "DELETE FROM metric_series WHERE pool_id = $1",
            "DELETE FROM proposals WHERE pool_id = $1",
            "DELETE FROM scaling_events WHERE pool_id = $1",
            "DELETE FROM pools WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        audit(
            &mut tx,
            actor,
            "pool.delete",
            Some(&pool.tenant_id),
            "pool",
            id,
            serde_json::json!({}),
            now,
        )
        .await?;
        tx.commit().await?;
        self.view_changed();
        if let Ok(mut known) = self.series.lock() {
            known.remove_pool(id);
        }
        if let Ok(mut known) = self.owners.lock() {
            known.remove(id);
        }
        Ok(())
    }

    /// Fetches a pool.
    pub async fn get_pool(&self, id: &str) -> Result<Pool> {
        let row = sqlx::query(&format!("SELECT {POOL_COLS} FROM pools WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("pool"))?;
        pool_row(&row)
    }

    /// Lists pools by id, optionally of one tenant.
    pub async fn list_pools(&self, tenant_id: Option<&str>, page: &Page) -> Result<Listed<Pool>> {
        let rows = sqlx::query(&format!(
            "SELECT {POOL_COLS} FROM pools WHERE ($1 = '' OR tenant_id = $1) AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(tenant_id.unwrap_or(""))
        .bind(page.cursor.clone().unwrap_or_default())
        .bind(page.limit() + 1)
        .fetch_all(&self.pool)
        .await?;
        paginate(rows, page.limit(), pool_row, |p| p.id.clone())
    }

    /// Every pool (for the control loop), optionally of one tenant, in id order.
    pub async fn all_pools(&self, tenant_id: Option<&str>) -> Result<Vec<Pool>> {
        let rows = sqlx::query(&format!(
            "SELECT {POOL_COLS} FROM pools WHERE ($1 = '' OR tenant_id = $1) ORDER BY id"
        ))
        .bind(tenant_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pool_row).collect()
    }

    /// Maps pool ids to their tenant ids; unknown ids are absent.
    pub async fn pool_tenants(&self, ids: &[&str]) -> Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        if let Ok(known) = self.owners.lock() {
            for id in ids {
                match known.get(id) {
                    Some((tenant, at)) if at.elapsed() < OWNER_CACHE_TTL => {
                        out.insert((*id).to_string(), tenant.clone());
                    }
                    _ => missing.push(*id),
                }
            }
        } else {
            missing.extend_from_slice(ids);
        }
        for chunk in missing.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, tenant_id FROM pools WHERE id IN ({})",
                placeholders.join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            let rows = q.fetch_all(&self.pool).await?;
            let now = std::time::Instant::now();
            let mut known = self.owners.lock().ok();
            for row in rows {
                let (id, tenant): (String, String) =
                    (row.try_get("id")?, row.try_get("tenant_id")?);
                if let Some(k) = known.as_mut() {
                    k.insert(id.clone(), tenant.clone(), now);
                }
                out.insert(id, tenant);
            }
        }
        Ok(out)
    }
}

/// How long a cached pool owner is trusted (see `Store::pool_tenants`).
const OWNER_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// The columns [`pool_row`] decodes.
pub(crate) const POOL_COLS: &str = "id, tenant_id, region, agent_type, min_capacity, max_capacity, desired_capacity, capacity_per_instance, metric, mode, scaling_policy, safety_lock, last_scaled_at_ms, created_at_ms, updated_at_ms, policies, job_kind, metric_source, metrics_error, target";

pub(crate) fn pool_row(r: &AnyRow) -> Result<Pool> {
    let policy: String = r.try_get("scaling_policy")?;
    let lock: i64 = r.try_get("safety_lock")?;
    Ok(Pool {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        region: r.try_get("region")?,
        agent_type: r.try_get("agent_type")?,
        min_capacity: r.try_get("min_capacity")?,
        max_capacity: r.try_get("max_capacity")?,
        desired_capacity: r.try_get("desired_capacity")?,
        capacity_per_instance: r.try_get("capacity_per_instance")?,
        metric: r.try_get("metric")?,
        mode: parse_text(r, "mode")?,
        job_kind: r
            .try_get::<Option<String>, _>("job_kind")?
            .map(|k| {
                k.parse::<JobKind>()
                    .map_err(|e| StoreError::Corrupt(format!("column job_kind: {e}")))
            })
            .transpose()?,
        scaling_policy: serde_json::from_str(&policy)
            .map_err(|e| StoreError::Corrupt(format!("pool policy: {e}")))?,
        safety_lock: lock != 0,
        last_scaled_at_ms: r.try_get("last_scaled_at_ms")?,
        created_at_ms: r.try_get("created_at_ms")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
        policies: r
            .try_get::<Option<String>, _>("policies")?
            .map(|p| {
                serde_json::from_str(&p)
                    .map_err(|e| StoreError::Corrupt(format!("pool policies: {e}")))
            })
            .transpose()?,
        metric_source: json_column(r, "metric_source")?,
        metrics_error: json_column(r, "metrics_error")?,
        target: json_column(r, "target")?,
    })
}

/// A nullable JSON column, decoded.
fn json_column<T: serde::de::DeserializeOwned>(r: &AnyRow, col: &str) -> Result<Option<T>> {
    r.try_get::<Option<String>, _>(col)?
        .map(|s| {
            serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
        })
        .transpose()
}
