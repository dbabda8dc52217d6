//! The control loop: observe → decide → act → requeue.
//!
//! Every replica runs this task, but only the holder of the `control-loop`
//! lease in the database evaluates pools. The lease lives 1.5 ticks and every
//! replica polls it four times a tick, so a dead leader is replaced within
//! two ticks. Writes by the leader are fenced on the lease, so a replica that
//! lost it changes nothing; each change is applied only if the pool still has
//! the capacity the decision saw (idempotent), and its actuation is keyed by
//! the event id.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::watch;

use fleetscale_core::control::{plan_tick, PoolState, Step};
use fleetscale_core::{Mode, Observation, PolicySpec};
use fleetscale_store::{now_ms, Fence, ScaleRequest, StoreError};

use crate::metrics::{ActionLabel, SourceLabel};
use crate::AppState;

/// Name of the control-loop lease.
pub const LEASE: &str = "control-loop";

/// Most events delivered per tick (a stated bound).
pub const MAX_ACTUATIONS_PER_TICK: i64 = 512;

/// Concurrent webhook deliveries.
pub const ACTUATION_CONCURRENCY: usize = 16;

/// Control-loop settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Evaluation interval.
    pub tick: Duration,
    /// This replica's id (lease holder name).
    pub replica_id: String,
    /// How long metric samples are kept.
    pub retention: Duration,
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Pools evaluated.
    pub evaluated: u64,
    /// Capacity changes applied.
    pub applied: u64,
    /// Proposals created or refreshed.
    pub proposed: u64,
    /// Events delivered to the actuator.
    pub actuated: u64,
    /// Delivery series that failed.
    pub actuation_failed: u64,
}

/// Runs the loop until `shutdown` turns true; releases the lease on the way out.
pub async fn run(state: AppState, cfg: EngineConfig, mut shutdown: watch::Receiver<bool>) {
    let tick_ms = cfg.tick.as_millis().max(1) as i64;
    let poll = (cfg.tick / 4).max(Duration::from_millis(25));
    let ttl_ms = tick_ms * 3 / 2;
    let fence = Fence {
        name: LEASE.into(),
        holder: cfg.replica_id.clone(),
    };
    let mut next_eval = 0i64;
    let mut next_prune = 0i64;
    let mut was_leader = false;
    loop {
        let now = now_ms();
        let leader = match state
            .store
            .try_lease(LEASE, &cfg.replica_id, now, ttl_ms)
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "lease check failed; acting as follower");
                false
            }
        };
        if leader != was_leader {
            tracing::info!(replica = %cfg.replica_id, leader, "control-loop leadership changed");
            was_leader = leader;
            next_eval = 0;
        }
        state.metrics.is_leader.set(i64::from(leader));
        if leader && now >= next_eval {
            next_eval = now + tick_ms;
            let started = Instant::now();
            match tick_once(&state, &fence, now).await {
                Ok(r) => tracing::debug!(?r, "tick"),
                Err(StoreError::LeaseLost { .. }) => tracing::warn!("lost the lease during a tick"),
                Err(e) => {
                    tracing::error!(error = %e, source = ?std::error::Error::source(&e), "tick failed; retrying next tick")
                }
            }
            state
                .metrics
                .tick_seconds
                .observe(started.elapsed().as_secs_f64());
            if now >= next_prune {
                next_prune = now + 60_000;
                let before = now - cfg.retention.as_millis() as i64;
                if let Err(e) = state.store.prune_samples(before).await {
                    tracing::warn!(error = %e, "pruning metric samples failed");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => break,
        }
    }
    let _ = state.store.release_lease(LEASE, &cfg.replica_id).await;
    state.metrics.is_leader.set(0);
}

/// Gathers every pool's state for the pure planner.
pub async fn observe(state: &AppState, now: i64) -> Result<Vec<PoolState>, StoreError> {
    let pools = state.store.all_pools(None).await?;
    let stats = state.store.window_stats(None, now).await?;
    let pending = state.store.pending_proposals().await?;
    Ok(pools
        .iter()
        .map(|p| PoolState {
            id: p.id.clone(),
            mode: Mode::parse(&p.mode).unwrap_or(Mode::Recommend),
            safety_lock: p.safety_lock,
            policy: PolicySpec::Threshold(p.scaling_policy),
            observation: Observation {
                now_ms: now,
                bounds: p.bounds(),
                capacity_per_instance: p.capacity_per_instance,
                load: stats.get(&p.id).copied(),
                last_scaled_at_ms: p.last_scaled_at_ms,
                ..Observation::new(now, p.bounds())
            },
            pending_proposal: pending.get(&p.id).copied(),
        })
        .collect())
}

/// One tick as leader: observe, plan (pure), apply the steps, actuate.
pub async fn tick_once(
    state: &AppState,
    fence: &Fence,
    now: i64,
) -> Result<TickReport, StoreError> {
    let pools = observe(state, now).await?;
    let (steps, counts) = plan_tick(&pools);
    let m = &state.metrics;
    m.ticks.inc();
    for (action, n) in [
        ("scale_up", counts.scale_up),
        ("scale_down", counts.scale_down),
        ("hold", counts.hold),
    ] {
        m.decisions
            .get_or_create(&ActionLabel {
                action: action.into(),
            })
            .inc_by(n);
    }
    let mut report = TickReport {
        evaluated: counts.evaluated,
        ..TickReport::default()
    };
    for step in steps {
        match step {
            Step::Apply { pool_id, decision } => {
                let req = ScaleRequest {
                    pool_id: pool_id.clone(),
                    capacity: decision.target,
                    reason: decision.reason.clone(),
                    trigger_source: "autoscaler".into(),
                    metadata: serde_json::json!({ "policy": decision.policy, "decision": decision }),
                    actor: "engine".into(),
                    expect_desired: Some(decision.current),
                    respect_safety_lock: true,
                    actuation_status: if state.actuator.is_active() {
                        "pending"
                    } else {
                        "none"
                    }
                    .into(),
                    fence: Some(fence.clone()),
                    now_ms: now,
                };
                match state.store.scale(&req).await {
                    Ok(out) if out.event.is_some() => {
                        report.applied += 1;
                        m.scalings
                            .get_or_create(&SourceLabel {
                                trigger_source: "autoscaler".into(),
                            })
                            .inc();
                    }
                    Ok(_) => {}
                    Err(StoreError::NotFound { .. }) => {} // deleted since observed
                    Err(e) => return Err(e),
                }
            }
            Step::Propose { pool_id, decision } => {
                let Ok(pool) = state.store.get_pool(&pool_id).await else {
                    continue;
                };
                let d = serde_json::to_value(&decision).unwrap_or_default();
                state
                    .store
                    .upsert_proposal(
                        &pool,
                        decision.target,
                        &decision.reason,
                        &d,
                        Some(fence),
                        now,
                    )
                    .await?;
                report.proposed += 1;
            }
            Step::Withdraw { pool_id } => state.store.withdraw_proposal(&pool_id, now).await?,
        }
    }
    let (ok, failed) = actuate_pending(state, Some(fence)).await?;
    report.actuated = ok;
    report.actuation_failed = failed;
    Ok(report)
}

/// Delivers events awaiting actuation (oldest first, bounded), recording each
/// outcome. With a fence, stops when the lease is no longer held.
pub async fn actuate_pending(
    state: &AppState,
    fence: Option<&Fence>,
) -> Result<(u64, u64), StoreError> {
    if !state.actuator.is_active() {
        return Ok((0, 0));
    }
    let events = state
        .store
        .pending_actuations(MAX_ACTUATIONS_PER_TICK)
        .await?;
    if events.is_empty() {
        return Ok((0, 0));
    }
    if let Some(f) = fence {
        if !state
            .store
            .holds_lease(&f.name, &f.holder, now_ms())
            .await?
        {
            return Err(StoreError::LeaseLost {
                name: f.name.clone(),
            });
        }
    }
    let results: Vec<_> = futures::stream::iter(events)
        .map(|ev| async move {
            let d = state.actuator.deliver(&ev).await;
            (ev, d)
        })
        .buffer_unordered(ACTUATION_CONCURRENCY)
        .collect()
        .await;
    let (mut ok, mut failed) = (0, 0);
    for (ev, d) in results {
        if d.delivered {
            ok += 1;
            state.metrics.actuations.inc();
        } else {
            failed += 1;
            state.metrics.actuation_failures.inc();
            tracing::warn!(event_id = %ev.id, pool_id = %ev.pool_id, error = ?d.error, "actuation failed; will retry next tick");
        }
        state
            .store
            .record_actuation(
                &ev.id,
                d.delivered,
                d.attempts,
                d.error.as_deref(),
                now_ms(),
            )
            .await?;
    }
    Ok((ok, failed))
}
