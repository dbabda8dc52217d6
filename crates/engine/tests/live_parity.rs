//! The live engine decides exactly like the simulator: a live run of the
//! control loop's tick (over a real SQLite store, leadership moving from
//! one replica to another halfway) is recorded — each pool's observation
//! without its controller memory, and the decision — and replayed through
//! the simulator's pool controller, which keeps its own memory: the same
//! decisions, tick by tick. A memoryless decision on the same observations
//! differs, so the memory (target tracking's stabilization window, carried
//! over the change of leader through the store) is what the test checks.

use std::collections::BTreeMap;

use serde_json::json;

use fleetscale_core::decision::PoolPolicies;
use fleetscale_core::{decide_all, NewPool};
use fleetscale_engine::control::{restore_memory, tick_recorded};
use fleetscale_engine::{EngineCtx, LEASE};
use fleetscale_sim::controllers::Pool as SimPool;
use fleetscale_store::{Fence, Sample, Store};

mod support;
use support::db;

async fn pool(store: &Store, tenant: &str, agent: &str, spec: &PoolPolicies) -> String {
    let p = NewPool {
        tenant_id: tenant.into(),
        region: "eu-west".into(),
        agent_type: agent.into(),
        min_capacity: Some(1),
        max_capacity: Some(20),
        desired_capacity: Some(2),
        capacity_per_instance: Some(2.0),
        mode: Some("autonomous".into()),
        ..Default::default()
    }
    .validate()
    .unwrap();
    let id = store.create_pool(&p, "test").await.unwrap().id;
    store
        .set_pool_policies(&id, Some(spec), "test")
        .await
        .unwrap();
    id
}

fn fence(holder: &str) -> Fence {
    Fence {
        name: LEASE.into(),
        holder: holder.into(),
    }
}

const TICK_MS: i64 = 15_000;
const TICKS: i64 = 48;
/// The tick at which replica `b` takes over from `a`.
const SWITCH: i64 = 24;

/// The outstanding requests pushed before tick `i`: a rise, a plateau, a
/// drop at tick 20 (inside the 300 s scale-down stabilization window when
/// the leader changes at tick 24).
fn load(i: i64) -> f64 {
    match i {
        0..10 => 4.0 * (i + 1) as f64,
        10..20 => 40.0,
        _ => 4.0,
    }
}

#[tokio::test]
async fn a_live_run_across_a_leader_change_replays_tick_by_tick_through_the_simulator() {
    let db = db("replay").await;
    let s = &db.store;
    let t = s.create_tenant("acme", "test").await.unwrap();
    s.create_region("eu-west", "eu", "test").await.unwrap();
    // Target tracking with HPA's default behavior (scale-down stabilized
    // over 300 s) on in-flight work, gated by an availability goal.
    let tracking: PoolPolicies = serde_json::from_value(json!({
        "policies": [{"type": "target_tracking", "behavior": {},
            "metrics": [{"metric": "in_flight",
                         "target": {"type": "external_average_value", "average_value": 2.0}}]}],
        "performance_targets": {"min_availability_percent": 99.0, "cost_optimization_weight": 0.0}
    }))
    .unwrap();
    // The slo policy on the inputs a service reports.
    let slo: PoolPolicies = serde_json::from_value(json!({
        "policies": [{"type": "slo", "concurrency_per_instance": 2, "cold_start_seconds": 30}],
        "performance_targets": {"latency_ms": 20000, "attainment": 0.99, "cost_optimization_weight": 0.0}
    }))
    .unwrap();
    tracking.validate().unwrap();
    slo.validate().unwrap();
    let a_id = pool(s, &t.id, "tracker", &tracking).await;
    let b_id = pool(s, &t.id, "staffer", &slo).await;
    let mut sims: BTreeMap<String, (SimPool, PoolPolicies)> = BTreeMap::new();
    for (id, spec) in [(&a_id, &tracking), (&b_id, &slo)] {
        sims.insert(
            id.clone(),
            (
                SimPool::new(id, spec.clone(), 1, 20, TICK_MS * 1000),
                spec.clone(),
            ),
        );
    }
    let replica_a = EngineCtx::new(s.clone());
    let replica_b = EngineCtx::new(s.clone());
    let t0 = fleetscale_store::now_ms().div_euclid(TICK_MS) * TICK_MS;
    let (mut same, mut memory_mattered, mut scaled_down) = (0, 0, 0);
    for i in 0..TICKS {
        let now = t0 + i * TICK_MS;
        let ts = now - 1;
        let sample = |pool_id: &str, metric: &str, value: f64| Sample {
            pool_id: pool_id.into(),
            metric: metric.into(),
            ts_ms: ts,
            value,
        };
        let l = load(i);
        s.insert_samples(&[
            sample(&a_id, "in_flight", l),
            sample(&a_id, "availability_percent", 99.9),
            sample(&b_id, "arrival_rate", l / 2.0),
            sample(&b_id, "service_time_ms", 2000.0),
            sample(&b_id, "requests_completed", 7.5 * l),
            sample(&b_id, "requests_missed_slo", 0.0),
            sample(&b_id, "in_flight", l.min(8.0)),
            sample(&b_id, "queue_depth", 0.0),
        ])
        .await
        .unwrap();
        let (ctx, holder) = if i < SWITCH {
            (&replica_a, "a")
        } else {
            (&replica_b, "b")
        };
        if i == SWITCH {
            s.release_lease(LEASE, "a").await.unwrap();
            // What `control::run` does when this replica becomes leader.
            assert_eq!(
                restore_memory(ctx).await.unwrap(),
                2,
                "both pools' memory stored"
            );
        }
        assert!(s.try_lease(LEASE, holder, now, 20_000).await.unwrap());
        let (_, recorded) = tick_recorded(ctx, &fence(holder), now).await.unwrap();
        assert_eq!(recorded.len(), 2, "tick {i}");
        for r in recorded {
            let (sim, spec) = sims.get_mut(&r.pool_id).unwrap();
            let memoryless = decide_all(spec, &r.observation).target;
            let replayed = sim.decide_observation(r.observation).0.target;
            assert_eq!(
                r.decision.target, replayed,
                "tick {i} pool {}: live {} ({}), simulator {replayed}",
                r.pool_id, r.decision.target, r.decision.reason
            );
            assert!(
                r.applied || !r.decision.should_scale(),
                "tick {i}: autonomous, applied"
            );
            same += 1;
            memory_mattered += usize::from(memoryless != replayed);
            scaled_down += usize::from(r.pool_id == a_id && r.decision.target < r.decision.current);
        }
    }
    assert_eq!(same, 2 * TICKS as usize);
    assert!(
        memory_mattered > 0,
        "some decision depends on the controller memory"
    );
    assert!(
        scaled_down > 0,
        "availability is fed: min_availability_percent no longer blocks every scale-in"
    );
    let a = s.get_pool(&a_id).await.unwrap();
    assert!(a.desired_capacity < 20, "{}", a.desired_capacity);
}
