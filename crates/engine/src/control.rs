//! The control loop: observe → decide → act → requeue.
//!
//! Every replica runs this task, but only the holder of the `control-loop`
//! lease in the database evaluates pools. The lease lives 1.5 ticks and every
//! replica polls it four times a tick, so a dead leader is replaced within
//! two ticks. Writes by the leader are fenced on the lease, so a replica that
//! lost it changes nothing; each change is applied only if the pool still has
//! the capacity the decision saw (idempotent), and its actuation is keyed by
//! the event id.
//!
//! Requeue: besides every tick, the leader evaluates again when the earliest
//! `requeue_after_ms` of a decision comes due (a cooldown ending mid-tick is
//! acted on when it ends, not up to a tick later), never sooner than
//! [`MIN_REQUEUE`]. A failed tick backs off: the next one waits
//! tick × 2^(failures − 1), at most [`MAX_TICK_BACKOFF`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::watch;

use fleetscale_core::control::{plan, PoolState, Step};
use fleetscale_core::memory::ControllerMemory;
use fleetscale_core::observe::{self};
use fleetscale_core::{ActuationStatus, Observation, TriggerSource};
use fleetscale_store::{Fence, ScaleRequest, StoreError};

use crate::actuator::{Actuator, Delivery, PoolContext};
use crate::metrics::{ActionLabel, GuardLabel, SourceLabel};
use crate::EngineCtx;

/// Name of the control-loop lease.
pub const LEASE: &str = "control-loop";

/// Most events delivered per tick (a stated bound).
pub const MAX_ACTUATIONS_PER_TICK: i64 = 512;

/// Concurrent webhook deliveries.
pub const ACTUATION_CONCURRENCY: usize = 16;

pub use crate::observe::ForecastCaches;

/// Moves every pool's controller memory (with its forecast models) out of
/// `pools` into the map kept for the next tick; pools no longer observed
/// (deleted) drop out.
pub fn keep_forecasts(pools: &mut [PoolState]) -> ForecastCaches {
    pools
        .iter_mut()
        .map(|p| {
            let mut m = std::mem::take(&mut p.memory);
            let models = std::mem::take(&mut p.forecasts);
            match &p.combined {
                Some(spec) => m.keep_forecasts(spec, models),
                None => {
                    m.forecasts.clear();
                    m.forecast_policies.clear();
                }
            }
            (p.id.clone(), m)
        })
        .collect()
}

/// What of a memory changes when it must be written again: the scale
/// times, target tracking's state and how far each model was fed.
type Fingerprint = (
    Option<i64>,
    Option<i64>,
    fleetscale_core::hpa::HpaState,
    Vec<Option<i64>>,
    Vec<i64>,
);

fn fingerprint(m: &ControllerMemory) -> Fingerprint {
    (
        m.last_scale_up_at_ms,
        m.last_scale_down_at_ms,
        m.hpa_state.clone(),
        m.forecasts
            .iter()
            .map(|f| f.as_ref().map(|c| c.end_ms))
            .collect(),
        m.reversals_at_ms.clone(),
    )
}

/// Replaces the leader's controller memory with the store's: called when
/// this replica becomes leader (the previous leader's memory, or this
/// replica's own from an earlier term, is what the store says now).
pub async fn restore_memory(ctx: &EngineCtx) -> Result<usize, StoreError> {
    let stored = ctx.store.controller_memories().await?;
    let n = stored.len();
    *ctx.forecasts.lock().expect("controller memory lock") = stored;
    Ok(n)
}

/// Soonest the loop evaluates again for a decision's requeue.
pub const MIN_REQUEUE: Duration = Duration::from_millis(100);

/// Longest wait after failed ticks (a stated bound; at least one tick).
pub const MAX_TICK_BACKOFF: Duration = Duration::from_secs(60);

/// Interval of the metric-retention pruning, ms.
pub const PRUNE_INTERVAL_MS: i64 = 60_000;

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
    /// Region scaling-mode transitions recorded.
    pub region_transitions: u64,
    /// Evaluated pools whose metrics were stale, missing or erroring (fail
    /// static held any scale-in of theirs).
    pub metrics_stale: u64,
    /// The earliest `requeue_after_ms` of the tick's decisions: when the
    /// loop should evaluate again before the next tick.
    pub requeue_after_ms: Option<i64>,
}

/// When the loop evaluates after a tick that ended at `now`: the next tick,
/// or sooner for a requeue (never sooner than [`MIN_REQUEUE`]); after
/// `failures` failed ticks in a row, tick × 2^(failures − 1) capped at
/// [`MAX_TICK_BACKOFF`] (or one tick when that is longer).
#[must_use]
pub fn next_evaluation(
    now: i64,
    tick_ms: i64,
    requeue_after_ms: Option<i64>,
    failures: u32,
) -> i64 {
    if failures > 0 {
        let cap = (MAX_TICK_BACKOFF.as_millis() as i64).max(tick_ms);
        let backoff = tick_ms
            .saturating_mul(1i64 << (failures - 1).min(20))
            .min(cap);
        return now + backoff;
    }
    let min = MIN_REQUEUE.as_millis() as i64;
    match requeue_after_ms {
        Some(r) => now + r.clamp(min, tick_ms.max(min)),
        None => now + tick_ms,
    }
}

/// Runs the loop until `shutdown` turns true; releases the lease on the way
/// out. Time is read from `ctx.clock` and waited with tokio's timers, so a
/// paused runtime drives it deterministically.
pub async fn run(
    ctx: EngineCtx,
    cfg: EngineConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let tick_ms = cfg.tick.as_millis().max(1) as i64;
    ctx.tick_ms.store(tick_ms, Ordering::SeqCst);
    let poll = (cfg.tick / 4).max(Duration::from_millis(25));
    let ttl_ms = tick_ms * 3 / 2;
    let fence = Fence {
        name: LEASE.into(),
        holder: cfg.replica_id.clone(),
    };
    let mut next_eval = 0i64;
    let mut next_prune = 0i64;
    let mut failures = 0u32;
    let mut was_leader = false;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = ctx.now_ms();
        let leader = match ctx
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
            failures = 0;
            if leader {
                match restore_memory(&ctx).await {
                    Ok(n) => tracing::info!(pools = n, "controller memory restored"),
                    Err(e) => {
                        // Evaluating without it would forget cooldowns and
                        // stabilization windows: retry at the next poll.
                        tracing::warn!(error = %e, "restoring controller memory failed");
                        was_leader = false;
                    }
                }
            } else {
                ctx.forecasts
                    .lock()
                    .expect("controller memory lock")
                    .clear();
            }
        }
        ctx.metrics.is_leader.set(i64::from(leader));
        if leader && now >= next_eval {
            let started = Instant::now();
            let requeue = match tick_once(&ctx, &fence, now).await {
                Ok(r) => {
                    tracing::debug!(?r, "tick");
                    failures = 0;
                    r.requeue_after_ms
                }
                Err(StoreError::LeaseLost { .. }) => {
                    tracing::warn!("lost the lease during a tick");
                    None
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    ctx.metrics.tick_failures.inc();
                    tracing::error!(error = %e, source = ?std::error::Error::source(&e), failures, "tick failed; backing off");
                    None
                }
            };
            next_eval = next_evaluation(ctx.now_ms(), tick_ms, requeue, failures);
            ctx.metrics
                .tick_seconds
                .observe(started.elapsed().as_secs_f64());
            ctx.metrics
                .record_last_tick(ctx.now_ms(), started.elapsed());
            if now >= next_prune {
                next_prune = now + PRUNE_INTERVAL_MS;
                let before = now - cfg.retention.as_millis() as i64;
                if let Err(e) = ctx.store.prune_samples(before).await {
                    tracing::warn!(error = %e, "pruning metric samples failed");
                }
                if let Err(e) = ctx.store.prune_instance_samples(before).await {
                    tracing::warn!(error = %e, "pruning instance samples failed");
                }
                if let Err(e) = ctx.store.prune_region_samples(before).await {
                    tracing::warn!(error = %e, "pruning region samples failed");
                }
            }
        }
        // Sleep a poll, or less when an evaluation is due sooner.
        let wait = if leader {
            let due = Duration::from_millis((next_eval - ctx.now_ms()).max(0) as u64);
            due.clamp(MIN_REQUEUE.min(poll), poll)
        } else {
            poll
        };
        ctx.loop_parked.store(true, Ordering::SeqCst);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // Work for a pool at zero: evaluate now.
            _ = ctx.wake.notified() => next_eval = 0,
            _ = shutdown.changed() => break,
        }
        ctx.loop_parked.store(false, Ordering::SeqCst);
    }
    ctx.loop_parked.store(false, Ordering::SeqCst);
    let _ = ctx.store.release_lease(LEASE, &cfg.replica_id).await;
    ctx.metrics.is_leader.set(0);
    ctx.loop_parked.store(true, Ordering::SeqCst);
    Ok(())
}

pub use crate::observe::{
    observe, observe_pool, COMBINED_LOOKBACK_MS, COMBINED_SAMPLE_LIMIT, HISTORY_INTERVAL_MS,
};
use crate::observe::{observe_all, Observed};

/// One pool's evaluation in a recorded tick ([`tick_recorded`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedDecision {
    /// Pool id.
    pub pool_id: String,
    /// What the loop observed, without the controller memory (no scale
    /// times, an empty target-tracking state): a replay keeps its own.
    pub observation: Observation,
    /// What the loop decided.
    pub decision: fleetscale_core::Decision,
    /// Whether the change was applied.
    pub applied: bool,
}

/// One tick as leader: observe, plan (pure), apply the steps, actuate.
pub async fn tick_once(ctx: &EngineCtx, fence: &Fence, now: i64) -> Result<TickReport, StoreError> {
    tick(ctx, fence, now, None).await
}

/// [`tick_once`], also returning every evaluated pool's observation and
/// decision, for a replay through another controller (the simulator's).
pub async fn tick_recorded(
    ctx: &EngineCtx,
    fence: &Fence,
    now: i64,
) -> Result<(TickReport, Vec<RecordedDecision>), StoreError> {
    let mut log = Vec::new();
    let r = tick(ctx, fence, now, Some(&mut log)).await?;
    Ok((r, log))
}

async fn tick(
    ctx: &EngineCtx,
    fence: &Fence,
    now: i64,
    record: Option<&mut Vec<RecordedDecision>>,
) -> Result<TickReport, StoreError> {
    let mut caches = std::mem::take(&mut *ctx.forecasts.lock().expect("controller memory lock"));
    let before: HashMap<String, Fingerprint> = caches
        .iter()
        .map(|(k, m)| (k.clone(), fingerprint(m)))
        .collect();
    let observed = observe_all(ctx, now, Some(&mut caches), Some(fence)).await;
    let Observed {
        states: mut pools,
        pools: stored_pools,
        stats,
    } = match observed {
        Ok(o) => o,
        Err(e) => {
            *ctx.forecasts.lock().expect("controller memory lock") = caches;
            return Err(e);
        }
    };
    let tick_plan = plan(&pools);
    let (steps, counts) = (tick_plan.steps, tick_plan.counts);
    if let Actuator::Kubernetes(k) = &*ctx.actuator {
        // Only a scale-out can be held: read the workloads of those pools.
        let growing: HashSet<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Apply {
                    pool_id, decision, ..
                } if decision.target > decision.current => Some(pool_id.as_str()),
                _ => None,
            })
            .collect();
        let targets: Vec<(String, fleetscale_core::workload::WorkloadTarget)> = stored_pools
            .iter()
            .filter(|p| growing.contains(p.id.as_str()))
            .filter_map(|p| p.target.clone().map(|t| (p.id.clone(), t)))
            .collect();
        k.observe(&targets, now).await;
    }
    let last_up: HashMap<&str, Option<i64>> = pools
        .iter()
        .map(|p| {
            let o = &p.observation;
            (p.id.as_str(), o.last_scale_up_at_ms.or(o.last_scaled_at_ms))
        })
        .collect();
    let mut applied: HashSet<String> = HashSet::new();
    let m = &ctx.metrics;
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
    let stale: BTreeSet<String> = pools
        .iter()
        .zip(&tick_plan.guards)
        .filter(|(_, g)| g.is_some_and(|g| g.metrics_stale))
        .map(|(p, _)| p.id.clone())
        .collect();
    let mut report = TickReport {
        evaluated: counts.evaluated,
        metrics_stale: stale.len() as u64,
        requeue_after_ms: counts.requeue_after_ms,
        ..TickReport::default()
    };
    for step in steps {
        match step {
            Step::Apply {
                pool_id,
                decision,
                combined,
            } => {
                if let Some(reason) = coming_capacity_hold(
                    ctx,
                    &pool_id,
                    &decision,
                    last_up.get(pool_id.as_str()).copied().flatten(),
                    now,
                ) {
                    m.guard_holds
                        .get_or_create(&GuardLabel {
                            guard: "coming_capacity".into(),
                        })
                        .inc();
                    tracing::info!(pool_id = %pool_id, guard = "coming_capacity", %reason, "capacity change held");
                    continue;
                }
                let trigger = combined
                    .as_ref()
                    .map_or(TriggerSource::Autoscaler, |c| c.trigger_source());
                let req = ScaleRequest {
                    pool_id: pool_id.clone(),
                    capacity: decision.target,
                    reason: decision.reason.clone(),
                    trigger_source: trigger,
                    metadata: serde_json::json!({
                        "policy": decision.policy,
                        "decision": decision,
                        "combined": combined,
                        "zero_transition": fleetscale_core::ZeroTransition::of(decision.current, decision.target).map(|z| z.as_str()),
                    }),
                    actor: "engine".into(),
                    expect_desired: Some(decision.current),
                    respect_safety_lock: true,
                    actuation_status: ActuationStatus::initial(ctx.actuator.is_active()),
                    fence: Some(fence.clone()),
                    now_ms: now,
                };
                match ctx.store.scale(&req).await {
                    Ok(out) if out.event.is_some() => {
                        applied.insert(pool_id.clone());
                        report.applied += 1;
                        m.scalings
                            .get_or_create(&SourceLabel {
                                trigger_source: trigger.as_str().into(),
                            })
                            .inc();
                    }
                    Ok(_) => {}
                    Err(StoreError::NotFound { .. }) => {} // deleted since observed
                    Err(e) => return Err(e),
                }
            }
            Step::Propose {
                pool_id,
                decision,
                combined,
            } => {
                let Ok(pool) = ctx.store.get_pool(&pool_id).await else {
                    continue;
                };
                let mut d = serde_json::to_value(&decision).unwrap_or_default();
                if let (Some(obj), Some(c)) = (d.as_object_mut(), combined) {
                    obj.insert(
                        "combined".into(),
                        serde_json::to_value(c).unwrap_or_default(),
                    );
                }
                ctx.store
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
            Step::Withdraw { pool_id } => ctx.store.withdraw_proposal(&pool_id, now).await?,
        }
    }
    if let Some(log) = record {
        for (p, d) in pools.iter().zip(&tick_plan.decisions) {
            if let Some(d) = d {
                let mut observation = p.observation.clone();
                ControllerMemory::default().recall(&mut observation);
                observation.last_scaled_at_ms = None;
                log.push(RecordedDecision {
                    pool_id: p.id.clone(),
                    observation,
                    decision: d.clone(),
                    applied: applied.contains(&p.id),
                });
            }
        }
    }
    remember_tick(
        ctx,
        fence,
        now,
        &mut pools,
        &tick_plan.decisions,
        &applied,
        &before,
    )
    .await?;
    m.metrics_stale_pools.set(stale.len() as i64);
    for ((p, g), d) in pools
        .iter()
        .zip(&tick_plan.guards)
        .zip(&tick_plan.decisions)
    {
        let (Some(g), Some(d)) = (g, d) else { continue };
        for (held, guard) in [
            (g.held_scale_in, "fail_static"),
            (g.held_reversal, "flap_budget"),
        ] {
            if held {
                m.guard_holds
                    .get_or_create(&GuardLabel {
                        guard: guard.into(),
                    })
                    .inc();
                tracing::info!(pool_id = %p.id, guard, reason = %d.reason, "capacity change held");
            }
        }
    }
    *ctx.metrics_stale.lock().expect("stale pools lock") = stale;
    *ctx.at_zero.lock().expect("pools at zero lock") = pools
        .iter()
        .zip(&tick_plan.decisions)
        .filter(|(p, d)| match d {
            Some(d) if applied.contains(&p.id) => d.target == 0,
            _ => p.observation.bounds.desired == 0,
        })
        .map(|(p, _)| p.id.clone())
        .collect();
    let (ok, failed) = actuate_pending(ctx, Some(fence)).await?;
    report.actuated = ok;
    report.actuation_failed = failed;
    let regions = crate::regions::refresh(ctx, fence, now, &stored_pools, &stats).await?;
    report.region_transitions = regions.transitions;
    Ok(report)
}

/// Remembers each evaluated pool's decision in its controller memory (the
/// change only when it was applied), keeps the memories on the leader and
/// writes the changed ones to the store, fenced.
async fn remember_tick(
    ctx: &EngineCtx,
    fence: &Fence,
    now: i64,
    pools: &mut [PoolState],
    decisions: &[Option<fleetscale_core::Decision>],
    applied: &HashSet<String>,
    before: &HashMap<String, Fingerprint>,
) -> Result<(), StoreError> {
    for (p, d) in pools.iter_mut().zip(decisions) {
        if let Some(d) = d {
            p.memory.remember(d, now, applied.contains(&p.id));
        }
    }
    let kept = keep_forecasts(pools);
    let default_fp = fingerprint(&ControllerMemory::default());
    let changed: Vec<(String, ControllerMemory)> = kept
        .iter()
        .filter(|(id, m)| before.get(*id).unwrap_or(&default_fp) != &fingerprint(m))
        .map(|(id, m)| (id.clone(), m.clone()))
        .collect();
    *ctx.forecasts.lock().expect("controller memory lock") = kept;
    ctx.store
        .put_controller_memories(&changed, Some(fence), now)
        .await
}

/// The reason a scale-out of `pool_id` waits for its workload's starting
/// replicas ([`fleetscale_core::workload::coming_capacity_hold`] on the
/// status the Kubernetes actuator read this tick); `None` for any other
/// actuator.
fn coming_capacity_hold(
    ctx: &EngineCtx,
    pool_id: &str,
    decision: &fleetscale_core::Decision,
    last_scale_up_at_ms: Option<i64>,
    now: i64,
) -> Option<String> {
    let Actuator::Kubernetes(k) = &*ctx.actuator else {
        return None;
    };
    fleetscale_core::workload::coming_capacity_hold(
        decision.current,
        decision.target,
        k.status(pool_id).as_ref(),
        last_scale_up_at_ms,
        now,
    )
}

/// What the actuator needs of an event's pool: its target and, on a
/// scale-in, its instances' in-flight work (the newest per-instance sample
/// of the pool's metric over [`observe::INSTANCE_LOOKBACK_MS`]; none when
/// no instance reports that metric).
async fn pool_context(
    ctx: &EngineCtx,
    ev: &fleetscale_store::ScalingEvent,
) -> Result<PoolContext, StoreError> {
    let pool = ctx.store.get_pool(&ev.pool_id).await?;
    let mut instances = Vec::new();
    if ev.new_capacity < ev.previous_capacity {
        let now = ctx.now_ms();
        instances = ctx
            .store
            .instance_loads(
                &pool.id,
                &pool.metric,
                now - observe::INSTANCE_LOOKBACK_MS,
                now,
            )
            .await?
            .into_iter()
            .map(|(name, load)| fleetscale_core::workload::InstanceLoad { name, load })
            .collect();
        if instances.iter().all(|i| i.load.is_none()) {
            instances.clear();
        }
    }
    Ok(PoolContext {
        target: pool.target,
        instances,
    })
}

/// Delivers events awaiting actuation (oldest first, bounded), recording each
/// outcome. With a fence, stops when the lease is no longer held.
pub async fn actuate_pending(
    ctx: &EngineCtx,
    fence: Option<&Fence>,
) -> Result<(u64, u64), StoreError> {
    if !ctx.actuator.is_active() {
        return Ok((0, 0));
    }
    let events = ctx
        .store
        .pending_actuations(MAX_ACTUATIONS_PER_TICK)
        .await?;
    if events.is_empty() {
        return Ok((0, 0));
    }
    if let Some(f) = fence {
        if !ctx
            .store
            .holds_lease(&f.name, &f.holder, ctx.now_ms())
            .await?
        {
            return Err(StoreError::LeaseLost {
                name: f.name.clone(),
            });
        }
    }
    let results: Vec<_> = futures::stream::iter(events)
        .map(|ev| async move {
            let d = match pool_context(ctx, &ev).await {
                Ok(pool) => ctx.actuator.deliver(&ev, &pool).await,
                Err(e) => Delivery {
                    delivered: false,
                    attempts: 0,
                    error: Some(format!("reading the pool to actuate: {e}")),
                },
            };
            (ev, d)
        })
        .buffer_unordered(ACTUATION_CONCURRENCY)
        .collect()
        .await;
    let (mut ok, mut failed) = (0, 0);
    for (ev, d) in results {
        if d.delivered {
            ok += 1;
            ctx.metrics.actuations.inc();
        } else {
            failed += 1;
            ctx.metrics.actuation_failures.inc();
            tracing::warn!(event_id = %ev.id, pool_id = %ev.pool_id, error = ?d.error, "actuation failed; will retry next tick");
        }
        ctx.store
            .record_actuation(
                &ev.id,
                d.delivered,
                d.attempts,
                d.error.as_deref(),
                ctx.now_ms(),
            )
            .await?;
    }
    Ok((ok, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_evaluation_table() {
        let now = 1_000_000;
        // (tick, requeue, failures, expected delay)
        let cases: &[(i64, Option<i64>, u32, i64)] = &[
            (5_000, None, 0, 5_000),
            (5_000, Some(1_200), 0, 1_200),
            (5_000, Some(30), 0, 100),
            (5_000, Some(300_000), 0, 5_000),
            (50, Some(30), 0, 100),
            (5_000, None, 1, 5_000),
            (5_000, Some(1_200), 1, 5_000),
            (5_000, None, 2, 10_000),
            (5_000, None, 4, 40_000),
            (5_000, None, 5, 60_000),
            (5_000, None, u32::MAX, 60_000),
            (120_000, None, 3, 120_000),
        ];
        for &(tick, requeue, failures, want) in cases {
            assert_eq!(
                next_evaluation(now, tick, requeue, failures) - now,
                want,
                "tick {tick} requeue {requeue:?} failures {failures}"
            );
        }
    }
}
