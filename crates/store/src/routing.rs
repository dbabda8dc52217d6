//! Global routing: tenants' region and routing policies, the set-based read
//! of everything one route needs and per-tenant region ejections. Recorded
//! routing decisions are in `routing_decisions`.
//!
//! # What a route reads
//!
//! [`Store::route_world`] reads, in five queries whatever the number of
//! regions: the tenant and its two policies; every region with its
//! jurisdiction and scaling mode (`region_states.mode`, written by the
//! engine; a region without a row is `normal`); the tenant's pools of the
//! agent type with their window-mean load; the last
//! [`LATENCY_SAMPLES`] `latency_ms` region samples of every region
//! (`region_points`); and the tenant's ejections.
//!
//! # Spare capacity
//!
//! A pool's spare capacity, in instances, is
//! `max_capacity − ceil(load ÷ capacity_per_instance)`, floored at 0, where
//! `load` is the mean of the pool's own metric over its own window
//! `(now − window_seconds, now]` (as the control loop measures it): the
//! instances the load does not need. A pool without a sample in its window
//! counts its unused instances, `max_capacity − desired_capacity` (floored
//! at 0). The core's capacity score is `100 × Σspare ÷ Σmax`.
//!
//! # Audit
//!
//! Policy writes are audited in their transaction (`tenant.region_policy`,
//! `tenant.routing_policy`). Routing decisions and outcomes are not: each
//! decision is itself a durable record with its input, and outcomes are
//! feedback at request rate, like metric samples.

use std::collections::HashMap;

use sqlx::Row;

use fleetscale_core::region::compliance::RegionPolicy;
use fleetscale_core::region::mode::ScalingMode;
use fleetscale_core::region::routing::{
    Ejection, PoolCapacity, RegionView, RoutingPolicy, LATENCY_SAMPLES,
};

use crate::sql::{audit, corrupt, decode, not_found, to_json};
use crate::{Result, Store, StoreError};

/// Region-level metric whose samples are the observed latency to a region.
pub const REGION_LATENCY_METRIC: &str = "latency_ms";

/// A tenant's stored policy and when it was last set.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantPolicy<P> {
    /// The tenant.
    pub tenant_id: String,
    /// The policy, as the core parses it.
    pub policy: P,
    /// When it was last set (Unix ms).
    pub updated_at_ms: i64,
}

/// Everything one route needs for a tenant and an agent type, read at once.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteWorld {
    /// The tenant's region policy, `None` when never set.
    pub region_policy: Option<RegionPolicy>,
    /// The tenant's routing policy, `None` when never set.
    pub routing_policy: Option<RoutingPolicy>,
    /// Every region, in name order, as routing sees it.
    pub regions: Vec<RegionView>,
}

/// A tenant's ejection state for one region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EjectionState {
    /// The bookkeeping (default when the region never failed).
    pub ejection: Ejection,
    /// When it last changed (Unix ms); `None` when never recorded.
    pub updated_at_ms: Option<i64>,
}

/// A pool's spare instances (see the module doc): `mean_load` is its
/// window-mean load, `None` without samples in the window.
#[must_use]
pub fn spare_instances(
    max_capacity: i64,
    desired_capacity: i64,
    capacity_per_instance: f64,
    mean_load: Option<f64>,
) -> u32 {
    let in_use = match mean_load {
        Some(load) if capacity_per_instance > 0.0 && load.is_finite() => {
            (load.max(0.0) / capacity_per_instance)
                .ceil()
                .min(i64::MAX as f64) as i64
        }
        _ => desired_capacity,
    };
    let spare = max_capacity.saturating_sub(in_use).max(0);
    u32::try_from(spare).unwrap_or(u32::MAX)
}

impl Store {
    /// The tenant's region policy, `None` when never set (404 for an unknown tenant).
    pub async fn get_region_policy(
        &self,
        tenant_id: &str,
    ) -> Result<Option<TenantPolicy<RegionPolicy>>> {
        self.get_tenant_policy("tenant_region_policies", tenant_id, "region policy")
            .await
    }

    /// The tenant's routing policy, `None` when never set (404 for an unknown tenant).
    pub async fn get_routing_policy(
        &self,
        tenant_id: &str,
    ) -> Result<Option<TenantPolicy<RoutingPolicy>>> {
        self.get_tenant_policy("tenant_routing_policies", tenant_id, "routing policy")
            .await
    }

    /// Sets the tenant's region policy (validated by the caller), audited
    /// as `tenant.region_policy` in the same transaction.
    pub async fn put_region_policy(
        &self,
        tenant_id: &str,
        policy: &RegionPolicy,
        actor: &str,
        now_ms: i64,
    ) -> Result<TenantPolicy<RegionPolicy>> {
        self.put_tenant_policy(
            "tenant_region_policies",
            "tenant.region_policy",
            tenant_id,
            policy,
            actor,
            now_ms,
        )
        .await
    }

    /// Sets the tenant's routing policy (validated by the caller), audited
    /// as `tenant.routing_policy` in the same transaction.
    pub async fn put_routing_policy(
        &self,
        tenant_id: &str,
        policy: &RoutingPolicy,
        actor: &str,
        now_ms: i64,
    ) -> Result<TenantPolicy<RoutingPolicy>> {
        self.put_tenant_policy(
            "tenant_routing_policies",
            "tenant.routing_policy",
            tenant_id,
            policy,
            actor,
            now_ms,
        )
        .await
    }

    async fn get_tenant_policy<P: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        tenant_id: &str,
        what: &str,
    ) -> Result<Option<TenantPolicy<P>>> {
        let row = sqlx::query(&format!(
            "SELECT t.id, p.policy, p.updated_at_ms FROM tenants t LEFT JOIN {table} p ON p.tenant_id = t.id WHERE t.id = $1"
        ))
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found("tenant"))?;
        let policy: Option<String> = row.try_get("policy")?;
        policy
            .map(|p| {
                Ok(TenantPolicy {
                    tenant_id: tenant_id.to_string(),
                    policy: decode(what, &p)?,
                    updated_at_ms: row.try_get("updated_at_ms")?,
                })
            })
            .transpose()
    }

    async fn put_tenant_policy<P: serde::Serialize + Clone>(
        &self,
        table: &'static str,
        action: &'static str,
        tenant_id: &str,
        policy: &P,
        actor: &str,
        now_ms: i64,
    ) -> Result<TenantPolicy<P>> {
        let json = to_json(policy);
        let mut tx = self.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO {table} (tenant_id, policy, updated_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy, updated_at_ms = excluded.updated_at_ms"
        ))
        .bind(tenant_id)
        .bind(&json)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::NotFound { .. } => not_found("tenant"),
            other => other,
        })?;
        audit(
            &mut tx,
            actor,
            action,
            Some(tenant_id),
            "tenant",
            tenant_id,
            serde_json::json!({ "policy": serde_json::to_value(policy).unwrap_or_default() }),
            now_ms,
        )
        .await?;
        tx.commit().await?;
        self.view_changed();
        Ok(TenantPolicy {
            tenant_id: tenant_id.to_string(),
            policy: policy.clone(),
            updated_at_ms: now_ms,
        })
    }

    /// Every region's name, in name order (policies are validated against them).
    pub async fn region_names(&self) -> Result<Vec<String>> {
        sqlx::query("SELECT name FROM regions ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok(r.try_get("name")?))
            .collect()
    }

    /// Everything a route for `tenant_id` and `agent_type` at `now_ms`
    /// reads (see the module doc), in five queries; 404 for an unknown tenant.
    pub async fn route_world(
        &self,
        tenant_id: &str,
        agent_type: &str,
        now_ms: i64,
    ) -> Result<RouteWorld> {
        let t = sqlx::query(
            "SELECT t.id, rp.policy AS region_policy, tp.policy AS routing_policy FROM tenants t \
             LEFT JOIN tenant_region_policies rp ON rp.tenant_id = t.id \
             LEFT JOIN tenant_routing_policies tp ON tp.tenant_id = t.id WHERE t.id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found("tenant"))?;
        let region_policy: Option<String> = t.try_get("region_policy")?;
        let routing_policy: Option<String> = t.try_get("routing_policy")?;

        let regions = sqlx::query(
            "SELECT r.id, r.name, r.jurisdiction, rs.mode FROM regions r \
             LEFT JOIN region_states rs ON rs.region_id = r.id ORDER BY r.name",
        )
        .fetch_all(&self.pool)
        .await?;

        let pools = sqlx::query(
            "SELECT p.id, p.region, p.agent_type, p.max_capacity, p.desired_capacity, p.capacity_per_instance, \
             (SELECT AVG(s.value) FROM metric_series ms JOIN metric_points s ON s.series_id = ms.id \
              WHERE ms.pool_id = p.id AND ms.metric = p.metric AND s.ts_ms > $3 - p.window_seconds * 1000 AND s.ts_ms <= $3) AS mean_load \
             FROM pools p WHERE p.tenant_id = $1 AND p.agent_type = $2 ORDER BY p.region, p.id",
        )
        .bind(tenant_id)
        .bind(agent_type)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;

        // The newest LATENCY_SAMPLES per region through the (region_id,
        // metric, ts_ms) index: everything at or after the region's 10th
        // newest timestamp (ties may add a few, trimmed below).
        let latencies = sqlx::query(
            "SELECT r.id AS region_id, p.ts_ms, p.value FROM regions r JOIN region_points p \
             ON p.region_id = r.id AND p.metric = $1 AND p.ts_ms >= COALESCE( \
               (SELECT q.ts_ms FROM region_points q WHERE q.region_id = r.id AND q.metric = $1 \
                ORDER BY q.ts_ms DESC LIMIT 1 OFFSET $2), $3) \
             ORDER BY r.id, p.ts_ms",
        )
        .bind(REGION_LATENCY_METRIC)
        .bind(LATENCY_SAMPLES as i64 - 1)
        .bind(i64::MIN)
        .fetch_all(&self.pool)
        .await?;

        let ejections =
            sqlx::query("SELECT region, state FROM routing_ejections WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await?;

        let mut pools_by_region: HashMap<String, Vec<PoolCapacity>> = HashMap::new();
        for r in &pools {
            let mean: Option<f64> = r.try_get("mean_load")?;
            let spare = spare_instances(
                r.try_get("max_capacity")?,
                r.try_get("desired_capacity")?,
                r.try_get("capacity_per_instance")?,
                mean,
            );
            let max: i64 = r.try_get("max_capacity")?;
            pools_by_region
                .entry(r.try_get("region")?)
                .or_default()
                .push(PoolCapacity {
                    pool: r.try_get("id")?,
                    agent_type: r.try_get("agent_type")?,
                    spare,
                    max: u32::try_from(max.max(0)).unwrap_or(u32::MAX),
                });
        }
        let mut latency_by_region: HashMap<String, Vec<u32>> = HashMap::new();
        for r in &latencies {
            let v: f64 = r.try_get("value")?;
            latency_by_region
                .entry(r.try_get("region_id")?)
                .or_default()
                .push(v.round().clamp(0.0, f64::from(u32::MAX)) as u32);
        }
        let mut ejected: HashMap<String, Ejection> = HashMap::new();
        for r in &ejections {
            let state: String = r.try_get("state")?;
            ejected.insert(r.try_get("region")?, decode("ejection state", &state)?);
        }
        let regions = regions
            .iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let name: String = r.try_get("name")?;
                let mode: Option<String> = r.try_get("mode")?;
                let mode = match mode {
                    None => ScalingMode::Normal,
                    Some(m) => serde_json::from_value(serde_json::Value::String(m))
                        .map_err(|e| corrupt("column region_states.mode", e))?,
                };
                let mut samples = latency_by_region.remove(&id).unwrap_or_default();
                let extra = samples.len().saturating_sub(LATENCY_SAMPLES);
                samples.drain(..extra);
                Ok(RegionView {
                    jurisdiction: r.try_get("jurisdiction")?,
                    mode,
                    latency_samples_ms: samples,
                    pools: pools_by_region.remove(&name).unwrap_or_default(),
                    ejected_until_ms: ejected.get(&name).and_then(|e| e.ejected_until_ms),
                    name,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RouteWorld {
            region_policy: region_policy
                .map(|p| decode("region policy", &p))
                .transpose()?,
            routing_policy: routing_policy
                .map(|p| decode("routing policy", &p))
                .transpose()?,
            regions,
        })
    }

    /// The tenant's ejection state for region `region` (by name); the
    /// default state when none was ever recorded.
    pub async fn get_ejection(&self, tenant_id: &str, region: &str) -> Result<EjectionState> {
        let row = sqlx::query(
            "SELECT state, updated_at_ms FROM routing_ejections WHERE tenant_id = $1 AND region = $2",
        )
        .bind(tenant_id)
        .bind(region)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(EjectionState {
                ejection: Ejection::default(),
                updated_at_ms: None,
            }),
            Some(r) => {
                let state: String = r.try_get("state")?;
                Ok(EjectionState {
                    ejection: decode("ejection state", &state)?,
                    updated_at_ms: Some(r.try_get("updated_at_ms")?),
                })
            }
        }
    }

    /// Applies `update` to the tenant's ejection state of region `region`
    /// (by name) under a row lock, and, when `latency_ms` is given, records
    /// it as a `latency_ms` region sample of that region at `now_ms`; one
    /// transaction. Returns the new state. Not idempotent: apply each
    /// outcome once.
    pub async fn update_ejection(
        &self,
        tenant_id: &str,
        region: &str,
        latency_ms: Option<f64>,
        now_ms: i64,
        update: impl FnOnce(Ejection) -> Ejection + Send,
    ) -> Result<EjectionState> {
        let mut tx = self.begin().await?;
        // Make sure the row exists, so that the lock below always holds one.
        sqlx::query("INSERT INTO routing_ejections (tenant_id, region, state, updated_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, region) DO NOTHING")
            .bind(tenant_id)
            .bind(region)
            .bind(to_json(&Ejection::default()))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT state FROM routing_ejections WHERE tenant_id = $1 AND region = $2{}",
            self.for_update()
        ))
        .bind(tenant_id)
        .bind(region)
        .fetch_one(&mut *tx)
        .await?;
        let state: String = row.try_get("state")?;
        let next = update(decode("ejection state", &state)?);
        sqlx::query("UPDATE routing_ejections SET state = $3, updated_at_ms = $4 WHERE tenant_id = $1 AND region = $2")
            .bind(tenant_id)
            .bind(region)
            .bind(to_json(&next))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        if let Some(ms) = latency_ms {
            let done = sqlx::query(
                "INSERT INTO region_points (region_id, metric, ts_ms, value) SELECT id, $2, $3, $4 FROM regions WHERE name = $1",
            )
            .bind(region)
            .bind(REGION_LATENCY_METRIC)
            .bind(now_ms)
            .bind(ms)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(not_found("region"));
            }
        }
        tx.commit().await?;
        self.view_changed();
        Ok(EjectionState {
            ejection: next,
            updated_at_ms: Some(now_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::spare_instances;

    #[test]
    fn spare_instances_table() {
        // (max, desired, per instance, mean load, spare)
        let table = [
            (10, 2, 10.0, Some(25.0), 7), // ceil(2.5) = 3 in use
            (10, 2, 10.0, Some(30.0), 7),
            (10, 2, 10.0, Some(0.0), 10),
            (5, 2, 10.0, Some(500.0), 0), // floored at 0
            (10, 4, 10.0, None, 6),       // no samples: max − desired
            (3, 5, 10.0, None, 0),
            (10, 2, 0.0, Some(5.0), 8), // no per-instance figure: as without samples
        ];
        for (max, desired, cpi, load, want) in table {
            assert_eq!(
                spare_instances(max, desired, cpi, load),
                want,
                "{max} {desired} {cpi} {load:?}"
            );
        }
    }
}
