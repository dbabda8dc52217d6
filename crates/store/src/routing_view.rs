//! The routing snapshot: everything workload and job routing read about
//! tenants, regions, pools, latencies and ejections, loaded at once so that
//! a route reads memory instead of the database (issue 15, item 8).
//!
//! # What a snapshot holds
//!
//! [`Store::load_routing_snapshot`] reads, in five set-based queries inside
//! one read transaction (one consistent database snapshot; PostgreSQL
//! `REPEATABLE READ READ ONLY`) whatever the number of tenants, regions or
//! pools: every tenant with its region and routing policies; every region
//! with its jurisdiction and its state as the leader last stored it (mode,
//! pressure, capacity score); every pool with its spare instances, computed
//! by [`spare_instances`] from its window-mean load at the load time; the
//! newest [`LATENCY_SAMPLES`] `latency_ms` samples of every region; and
//! every tenant's ejections. [`RoutingSnapshot::route_world`] then answers
//! what [`Store::route_world`] answers for a tenant and agent type, except
//! that pools' spare capacity is as of the load time instead of the request
//! time.
//!
//! # Freshness
//!
//! A snapshot records [`Store::view_changes`] as read *before* its queries
//! ([`RoutingSnapshot::changes`]): every write this process made through the
//! store and counted up to that number is in the snapshot. A holder compares
//! it with the store's current count to know whether this process wrote
//! something the snapshot may not hold (see `fleetscale_engine::routing_view`).

use std::collections::HashMap;

use sqlx::Row;

use fleetscale_core::region::compliance::RegionPolicy;
use fleetscale_core::region::mode::ScalingMode;
use fleetscale_core::region::routing::{
    Ejection, PoolCapacity, RegionView, RoutingPolicy, LATENCY_SAMPLES,
};
use fleetscale_core::region::state::{Pressure, RegionState};

use crate::jobs::UNMEASURED_CAPACITY_SCORE;
use crate::routing::{spare_instances, RouteWorld, REGION_LATENCY_METRIC};
use crate::{Backend, Result, Store, StoreError};

/// A tenant's routing policies in a snapshot (`None`: never set).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRouting {
    /// The tenant's region policy, `None` when never set.
    pub region_policy: Option<RegionPolicy>,
    /// The tenant's routing policy, `None` when never set.
    pub routing_policy: Option<RoutingPolicy>,
}

/// A region in a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRegion {
    /// Region id.
    pub id: String,
    /// Region name.
    pub name: String,
    /// Jurisdiction.
    pub jurisdiction: String,
    /// Scaling mode as the leader last stored it (`normal` without a state).
    pub mode: ScalingMode,
    /// Pressures as the leader last stored them (0 without a state).
    pub pressure: Pressure,
    /// Capacity score as the leader last stored it
    /// ([`UNMEASURED_CAPACITY_SCORE`] without a state).
    pub capacity_score: f64,
    /// The newest `latency_ms` samples (at most [`LATENCY_SAMPLES`]), oldest first.
    pub latency_samples_ms: Vec<u32>,
}

/// Everything routing reads, as of one load (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingSnapshot {
    /// [`Store::view_changes`] read before the load's queries.
    pub changes: u64,
    /// When loaded (Unix ms): pools' spare capacity is as of this time.
    pub loaded_at_ms: i64,
    tenants: HashMap<String, TenantRouting>,
    regions: Vec<SnapshotRegion>,
    /// (tenant, agent type) → (region name, pool), in region then pool id order.
    pools: HashMap<(String, String), Vec<(String, PoolCapacity)>>,
    /// tenant → region name → ejection.
    ejections: HashMap<String, HashMap<String, Ejection>>,
}

impl RoutingSnapshot {
    /// An empty snapshot (no tenant, no region), as of `changes` and `loaded_at_ms`.
    #[must_use]
    pub fn empty(changes: u64, loaded_at_ms: i64) -> RoutingSnapshot {
        RoutingSnapshot {
            changes,
            loaded_at_ms,
            tenants: HashMap::new(),
            regions: Vec::new(),
            pools: HashMap::new(),
            ejections: HashMap::new(),
        }
    }

    /// The tenant's policies, `None` for a tenant the snapshot does not know.
    #[must_use]
    pub fn tenant(&self, tenant_id: &str) -> Option<&TenantRouting> {
        self.tenants.get(tenant_id)
    }

    /// Tenants known.
    #[must_use]
    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// Every region, in name order.
    #[must_use]
    pub fn regions(&self) -> &[SnapshotRegion] {
        &self.regions
    }

    /// What a route for `tenant_id` and `agent_type` reads (as
    /// [`Store::route_world`], with spare capacity as of
    /// [`RoutingSnapshot::loaded_at_ms`]); `None` for an unknown tenant.
    #[must_use]
    pub fn route_world(&self, tenant_id: &str, agent_type: &str) -> Option<RouteWorld> {
        let t = self.tenants.get(tenant_id)?;
        let pools = self
            .pools
            .get(&(tenant_id.to_string(), agent_type.to_string()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let ejections = self.ejections.get(tenant_id);
        let regions = self
            .regions
            .iter()
            .map(|r| RegionView {
                name: r.name.clone(),
                jurisdiction: r.jurisdiction.clone(),
                mode: r.mode,
                latency_samples_ms: r.latency_samples_ms.clone(),
                pools: pools
                    .iter()
                    .filter(|(region, _)| *region == r.name)
                    .map(|(_, p)| p.clone())
                    .collect(),
                ejected_until_ms: ejections
                    .and_then(|e| e.get(&r.name))
                    .and_then(|e| e.ejected_until_ms),
            })
            .collect();
        Some(RouteWorld {
            region_policy: t.region_policy.clone(),
            routing_policy: t.routing_policy.clone(),
            regions,
        })
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

impl Store {
    /// Loads everything routing reads at `now_ms` (see the module doc), in
    /// five queries in one read transaction.
    pub async fn load_routing_snapshot(&self, now_ms: i64) -> Result<RoutingSnapshot> {
        let changes = self.view_changes();
        let mut tx = match self.backend {
            // A deferred transaction: one read snapshot, no write lock.
            Backend::Sqlite => self.pool.begin().await?,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
        };
        let tenants = sqlx::query(
            "SELECT t.id, rp.policy AS region_policy, tp.policy AS routing_policy FROM tenants t \
             LEFT JOIN tenant_region_policies rp ON rp.tenant_id = t.id \
             LEFT JOIN tenant_routing_policies tp ON tp.tenant_id = t.id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let regions = sqlx::query(
            "SELECT r.id, r.name, r.jurisdiction, rs.mode, rs.state FROM regions r \
             LEFT JOIN region_states rs ON rs.region_id = r.id ORDER BY r.name",
        )
        .fetch_all(&mut *tx)
        .await?;
        let pools = sqlx::query(
            "SELECT p.id, p.tenant_id, p.region, p.agent_type, p.max_capacity, p.desired_capacity, p.capacity_per_instance, \
             (SELECT AVG(s.value) FROM metric_series ms JOIN metric_points s ON s.series_id = ms.id \
              WHERE ms.pool_id = p.id AND ms.metric = p.metric AND s.ts_ms > $1 - p.window_seconds * 1000 AND s.ts_ms <= $1) AS mean_load \
             FROM pools p ORDER BY p.tenant_id, p.agent_type, p.region, p.id",
        )
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        // As in `route_world`: everything at or after each region's 10th
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
        .fetch_all(&mut *tx)
        .await?;
        let ejections = sqlx::query("SELECT tenant_id, region, state FROM routing_ejections")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;

        let tenants = tenants
            .iter()
            .map(|r| {
                let rp: Option<String> = r.try_get("region_policy")?;
                let tp: Option<String> = r.try_get("routing_policy")?;
                Ok((
                    r.try_get("id")?,
                    TenantRouting {
                        region_policy: rp.map(|p| decode("region policy", &p)).transpose()?,
                        routing_policy: tp.map(|p| decode("routing policy", &p)).transpose()?,
                    },
                ))
            })
            .collect::<Result<HashMap<String, TenantRouting>>>()?;
        let mut latency_by_region: HashMap<String, Vec<u32>> = HashMap::new();
        for r in &latencies {
            let v: f64 = r.try_get("value")?;
            latency_by_region
                .entry(r.try_get("region_id")?)
                .or_default()
                .push(v.round().clamp(0.0, f64::from(u32::MAX)) as u32);
        }
        let regions = regions
            .iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let mode: Option<String> = r.try_get("mode")?;
                let state: Option<String> = r.try_get("state")?;
                let mode = match mode {
                    None => ScalingMode::Normal,
                    Some(m) => m
                        .parse()
                        .map_err(|e| corrupt("column region_states.mode", e))?,
                };
                let (pressure, capacity_score) = match state {
                    Some(s) => {
                        let st: RegionState = decode("column region_states.state", &s)?;
                        (st.pressure, st.capacity_score)
                    }
                    None => (Pressure::default(), UNMEASURED_CAPACITY_SCORE),
                };
                let mut samples = latency_by_region.remove(&id).unwrap_or_default();
                let extra = samples.len().saturating_sub(LATENCY_SAMPLES);
                samples.drain(..extra);
                Ok(SnapshotRegion {
                    id,
                    name: r.try_get("name")?,
                    jurisdiction: r.try_get("jurisdiction")?,
                    mode,
                    pressure,
                    capacity_score,
                    latency_samples_ms: samples,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut by_key: HashMap<(String, String), Vec<(String, PoolCapacity)>> = HashMap::new();
        for r in &pools {
            let max: i64 = r.try_get("max_capacity")?;
            let spare = spare_instances(
                max,
                r.try_get("desired_capacity")?,
                r.try_get("capacity_per_instance")?,
                r.try_get("mean_load")?,
            );
            let agent_type: String = r.try_get("agent_type")?;
            by_key
                .entry((r.try_get("tenant_id")?, agent_type.clone()))
                .or_default()
                .push((
                    r.try_get("region")?,
                    PoolCapacity {
                        pool: r.try_get("id")?,
                        agent_type,
                        spare,
                        max: u32::try_from(max.max(0)).unwrap_or(u32::MAX),
                    },
                ));
        }
        let mut ejected: HashMap<String, HashMap<String, Ejection>> = HashMap::new();
        for r in &ejections {
            let state: String = r.try_get("state")?;
            ejected
                .entry(r.try_get("tenant_id")?)
                .or_default()
                .insert(r.try_get("region")?, decode("ejection state", &state)?);
        }
        Ok(RoutingSnapshot {
            changes,
            loaded_at_ms: now_ms,
            tenants,
            regions,
            pools: by_key,
            ejections: ejected,
        })
    }
}
