//! The demo fleet: a tenant, three regions, nine autonomous pools and a
//! seeded synthetic load (a compressed daily wave plus random bursts), so a
//! newcomer sees pools scale within a minute.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

use fleetscale_core::{NewPool, RawThresholdPolicy};
use fleetscale_store::{now_ms, Budgets, Page, Sample, Store, StoreError, Tenant};

/// Regions of the demo: (name, jurisdiction, load factor).
pub const REGIONS: [(&str, &str, f64); 3] = [
    ("us-east", "us", 1.0),
    ("eu-west", "eu", 0.7),
    ("ap-southeast", "apac", 0.4),
];

/// Agent types of the demo: (name, base load in requests/s).
pub const AGENT_TYPES: [(&str, f64); 3] = [("chat", 60.0), ("research", 35.0), ("voice", 20.0)];

/// Length of the compressed "day", seconds.
pub const DAY_SECONDS: f64 = 600.0;

/// Creates the demo tenant, regions (each new one with `region_budget_cents`
/// allocated on its ledger, as `POST /regions` does) and pools (idempotent).
pub async fn seed(
    store: &Store,
    budgets: &Budgets,
    region_budget_cents: i64,
) -> Result<Tenant, crate::ServerError> {
    let existing = store
        .list_tenants(
            None,
            &Page {
                limit: Some(1000),
                cursor: None,
            },
        )
        .await?;
    let tenant = match existing.items.into_iter().find(|t| t.name == "demo") {
        Some(t) => t,
        None => store.create_tenant("demo", "demo").await?,
    };
    for (name, jurisdiction, _) in REGIONS {
        let region = match store.get_region(name).await {
            Ok(r) => r,
            Err(_) => store.create_region(name, jurisdiction, "demo").await?,
        };
        // Also on a later start if the first one stopped before allocating.
        if region_budget_cents > 0 && budgets.budget(&region.id).await?.transactions == 0 {
            budgets
                .allocate_initial(&region.id, region_budget_cents, "demo", now_ms())
                .await
                .map_err(|e| {
                    crate::ServerError::Demo(format!(
                        "region {name}: its initial budget was not allocated: {e}"
                    ))
                })?;
        }
    }
    let have = store.all_pools(Some(&tenant.id)).await?;
    for (region, _, _) in REGIONS {
        for (agent_type, _) in AGENT_TYPES {
            if have
                .iter()
                .any(|p| p.region == region && p.agent_type == agent_type)
            {
                continue;
            }
            let pool = NewPool {
                tenant_id: tenant.id.clone(),
                region: region.into(),
                agent_type: agent_type.into(),
                min_capacity: Some(1),
                max_capacity: Some(20),
                desired_capacity: Some(1),
                capacity_per_instance: Some(10.0),
                metric: Some("throughput".into()),
                mode: Some("autonomous".into()),
                job_kind: None,
                scaling_policy: Some(RawThresholdPolicy {
                    scale_up_threshold: Some(80.0),
                    scale_down_threshold: Some(30.0),
                    cooldown_seconds: Some(8),
                    increment: Some(1),
                    window_seconds: Some(20),
                }),
            }
            .validate()
            .map_err(|v| StoreError::Config(v.to_string()))?;
            store.create_pool(&pool, "demo").await?;
        }
    }
    Ok(tenant)
}

/// The demo load at `t` seconds for a pool with `base` load: a daily wave
/// between 10% and 100% of base, plus `burst` (a fraction of base).
pub fn wave(base: f64, t: f64, burst: f64) -> f64 {
    let phase = (t / DAY_SECONDS) * std::f64::consts::TAU;
    base * (0.55 - 0.45 * phase.cos() + burst)
}

/// Pushes synthetic samples for every demo pool every 2 s until `stop`.
pub async fn load(store: Store, tenant_id: String, mut stop: watch::Receiver<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let started = now_ms();
    let mut bursts: Vec<(String, i64, f64)> = Vec::new();
    loop {
        let pools = match store.all_pools(Some(&tenant_id)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "demo load: cannot list pools");
                Vec::new()
            }
        };
        let now = now_ms();
        // Start t at a quarter day so the first minute already has real load.
        let t = (now - started) as f64 / 1000.0 + DAY_SECONDS / 4.0;
        bursts.retain(|(_, until, _)| *until > now);
        let mut samples = Vec::with_capacity(pools.len());
        for p in &pools {
            let region_f = REGIONS
                .iter()
                .find(|r| r.0 == p.region)
                .map_or(0.5, |r| r.2);
            let base = AGENT_TYPES
                .iter()
                .find(|a| a.0 == p.agent_type)
                .map_or(20.0, |a| a.1)
                * region_f;
            if rng.gen_bool(0.01) {
                bursts.push((p.id.clone(), now + 30_000, rng.gen_range(0.3..0.9)));
            }
            let burst: f64 = bursts.iter().filter(|b| b.0 == p.id).map(|b| b.2).sum();
            let noise = rng.gen_range(-0.05..0.05);
            let value = (wave(base, t, burst) * (1.0 + noise)).max(0.0);
            samples.push(Sample {
                pool_id: p.id.clone(),
                metric: p.metric.clone(),
                ts_ms: now,
                value,
            });
        }
        if let Err(e) = store.insert_samples(&samples).await {
            tracing::warn!(error = %e, "demo load: cannot store samples");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wave_spans_ten_to_hundred_percent() {
        assert!((wave(100.0, 0.0, 0.0) - 10.0).abs() < 1e-9);
        assert!((wave(100.0, DAY_SECONDS / 2.0, 0.0) - 100.0).abs() < 1e-9);
        assert!((wave(100.0, DAY_SECONDS / 2.0, 0.5) - 150.0).abs() < 1e-9);
    }
}
