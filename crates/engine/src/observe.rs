//! The observe phase of the control loop: every pool's state for the pure
//! planner, read in set-based queries and put together by the core's one
//! observation builder (`fleetscale_core::observe`), with the predictive
//! policies' models brought up to date; and one pool's observation for the
//! plan endpoint's dry run.

use std::collections::{BTreeMap, HashMap};

use fleetscale_core::control::PoolState;
use fleetscale_core::decision::PoolPolicies;
use fleetscale_core::memory::ControllerMemory;
use fleetscale_core::observe::{self, HistoryNeed, PoolFacts, Scrape};
use fleetscale_core::policies::predictive::ModelCache;
use fleetscale_core::trace::RateSeries;
use fleetscale_core::{Observation, PolicySpec, Sample as CoreSample, WindowStats};
use std::sync::atomic::Ordering;

use fleetscale_store::{Fence, Pool, Sample, StoreError};

use crate::EngineCtx;

/// The controller memory the leader keeps between ticks, by pool id
/// ([`ControllerMemory`]: last scale-up and scale-down, target tracking's
/// recommendations and scale events, the predictive policies' forecast
/// models, fed each new 5-minute interval and refitted on the
/// [`fleetscale_core::policies::predictive::ModelCache`] schedule). Each
/// change is also written to the store (fenced), and a replica that becomes
/// leader reads it back ([`restore_memory`]), so a new leader continues
/// where the last one stopped. A pool whose predictive policies change fits
/// cold.
pub type ForecastCaches = HashMap<String, ControllerMemory>;

pub use fleetscale_core::observe::{
    COMBINED_LOOKBACK_MS, COMBINED_SAMPLE_LIMIT, HISTORY_INTERVAL_MS,
};

/// Gathers every pool's state for the pure planner: the pools, their window
/// statistics, their pending proposals and the recent samples of every pool
/// with combined policies, each in one set-based query, put together by
/// [`observe::observation`]. With `caches`, each predictive policy's model
/// is taken from it and brought up to date (loading only the new history
/// intervals when no refit is due) and left in [`PoolState::forecasts`];
/// without, predictive policies refit on the whole history.
pub async fn observe(
    ctx: &EngineCtx,
    now: i64,
    caches: Option<&mut ForecastCaches>,
) -> Result<Vec<PoolState>, StoreError> {
    Ok(observe_all(ctx, now, caches, None).await?.states)
}

/// What the observe phase read: the planner's pool states, and the stored
/// pools with their window statistics (which the region refresh reuses).
pub(crate) struct Observed {
    pub(crate) states: Vec<PoolState>,
    pub(crate) pools: Vec<Pool>,
    pub(crate) stats: HashMap<String, WindowStats>,
}

/// With `poll` (the leader's tick, fenced on it), the pools' metric
/// sources are queried first ([`crate::metric_source::poll`]): their values
/// are in the statistics read next, and their failures reach fail static
/// as [`PoolState::metrics_error`].
pub(crate) async fn observe_all(
    ctx: &EngineCtx,
    now: i64,
    mut caches: Option<&mut ForecastCaches>,
    poll: Option<&Fence>,
) -> Result<Observed, StoreError> {
    let mut pools = ctx.store.all_pools(None).await?;
    let source_failures = match poll {
        Some(fence) if pools.iter().any(|p| p.metric_source.is_some()) => {
            crate::metric_source::poll(ctx, Some(fence), &mut pools, now).await?
        }
        Some(_) => {
            ctx.metrics.metric_source_failing_pools.set(0);
            HashMap::new()
        }
        None => HashMap::new(),
    };
    let stats = ctx.store.window_stats(None, now).await?;
    let pending = ctx.store.pending_proposals().await?;
    let mut samples = if pools.iter().any(|p| p.policies.is_some()) {
        ctx.store
            .policy_pool_samples(now - COMBINED_LOOKBACK_MS, now, COMBINED_SAMPLE_LIMIT)
            .await?
    } else {
        HashMap::new()
    };
    let mut per_instance = if pools
        .iter()
        .any(|p| p.policies.as_ref().is_some_and(observe::needs_instances))
    {
        ctx.store
            .policy_instance_samples(
                now - observe::INSTANCE_LOOKBACK_MS,
                now,
                COMBINED_SAMPLE_LIMIT,
            )
            .await?
    } else {
        HashMap::new()
    };
    let tick_ms = ctx.tick_ms.load(Ordering::SeqCst);
    let mut out = Vec::with_capacity(pools.len());
    for p in &pools {
        let mut observation = observation_of(
            p,
            now,
            stats.get(&p.id).copied(),
            samples.remove(&p.id).unwrap_or_default(),
        );
        if let Some(readings) = per_instance.remove(&p.id) {
            add_instances(&mut observation, readings);
        }
        let mut forecasts = Vec::new();
        let mut memory = caches
            .as_deref_mut()
            .and_then(|c| c.remove(&p.id))
            .unwrap_or_default();
        memory.recall(&mut observation);
        if let Some(spec) = &p.policies {
            match caches.is_some() {
                true => {
                    forecasts = memory.take_forecasts(spec);
                    advance_forecasts(ctx, p, spec, &mut observation, &mut forecasts).await?;
                }
                false => add_history(ctx, p, spec, &mut observation).await?,
            }
        }
        out.push(PoolState {
            id: p.id.clone(),
            mode: p.mode,
            safety_lock: p.safety_lock,
            policy: PolicySpec::Threshold(p.scaling_policy),
            combined: p.policies.clone(),
            observation,
            pending_proposal: pending.get(&p.id).copied(),
            forecasts,
            memory,
            tick_ms,
            metrics_error: source_failures.get(&p.id).cloned(),
        });
    }
    Ok(Observed {
        states: out,
        pools,
        stats,
    })
}

/// One pool's observation now, as the control loop would see it (the plan
/// endpoint's dry run): its window statistics, its recent samples and, for
/// a predictive policy, its whole demand history.
pub async fn observe_pool(ctx: &EngineCtx, p: &Pool, now: i64) -> Result<Observation, StoreError> {
    let stats = ctx.store.window_stats(Some(&p.tenant_id), now).await?;
    let samples = match &p.policies {
        Some(_) => {
            ctx.store
                .pool_samples(
                    &p.id,
                    now - COMBINED_LOOKBACK_MS,
                    now,
                    COMBINED_SAMPLE_LIMIT,
                )
                .await?
        }
        None => Vec::new(),
    };
    let mut obs = observation_of(p, now, stats.get(&p.id).copied(), samples);
    if p.policies.as_ref().is_some_and(observe::needs_instances) {
        let mut all = ctx
            .store
            .policy_instance_samples(
                now - observe::INSTANCE_LOOKBACK_MS,
                now,
                COMBINED_SAMPLE_LIMIT,
            )
            .await?;
        if let Some(readings) = all.remove(&p.id) {
            add_instances(&mut obs, readings);
        }
    }
    if let Some(spec) = &p.policies {
        add_history(ctx, p, spec, &mut obs).await?;
    }
    Ok(obs)
}

/// A stored pool and its scraped samples, through the one pure builder.
fn observation_of(
    p: &Pool,
    now: i64,
    load: Option<WindowStats>,
    samples: Vec<Sample>,
) -> Observation {
    let facts = PoolFacts {
        now_ms: now,
        bounds: p.bounds(),
        capacity_per_instance: p.capacity_per_instance,
        safety_lock: p.safety_lock,
        last_scaled_at_ms: p.last_scaled_at_ms,
        last_scale_up_at_ms: None,
        last_scale_down_at_ms: None,
    };
    let mut metrics: BTreeMap<String, Vec<CoreSample>> = BTreeMap::new();
    for s in samples {
        metrics.entry(s.metric).or_default().push(CoreSample {
            ts_ms: s.ts_ms,
            value: s.value,
        });
    }
    observe::observation(
        &facts,
        Scrape {
            load,
            metrics,
            queue: None,
        },
    )
}

/// Puts a pool's per-instance samples into `obs` as target tracking's pods
/// and per-pod metrics ([`observe::instances_of`]).
fn add_instances(obs: &mut Observation, readings: Vec<fleetscale_store::InstanceSample>) {
    let readings: Vec<observe::InstanceReading> = readings
        .into_iter()
        .map(|r| observe::InstanceReading {
            instance: r.instance,
            metric: r.metric,
            ts_ms: r.ts_ms,
            value: r.value,
        })
        .collect();
    let (pods, metrics) = observe::instances_of(&readings, obs.now_ms);
    obs.instances = pods;
    obs.instance_metrics = metrics;
}

/// Sets `obs.history` to the whole window the pool's predictive policies
/// read (nothing without one).
async fn add_history(
    ctx: &EngineCtx,
    p: &Pool,
    spec: &PoolPolicies,
    obs: &mut Observation,
) -> Result<(), StoreError> {
    if let Some(h) = observe::history_seconds(spec) {
        let now = obs.now_ms;
        obs.history = load_history(ctx, p, now - h * 1000, now, false).await?;
    }
    Ok(())
}

/// The pool's demand history over the completed intervals from `from_ms`
/// to `now` (see [`observe::history_series`]).
async fn load_history(
    ctx: &EngineCtx,
    p: &Pool,
    from_ms: i64,
    now: i64,
    keep_start: bool,
) -> Result<Option<RateSeries>, StoreError> {
    let iv = HISTORY_INTERVAL_MS;
    let (from, to) = (from_ms.div_euclid(iv) * iv, now.div_euclid(iv) * iv);
    let buckets = ctx
        .store
        .bucketed_means(&p.id, &p.metric, from, to, iv)
        .await?;
    Ok(observe::history_series(&buckets, from, to, iv, keep_start))
}

/// Brings each predictive policy's model in `models` (by policy index) up
/// to the last completed interval, loading only the intervals after the
/// cached ones unless a model is (re)fitted ([`observe::history_need`]).
/// `obs.history` is set only when the whole window was loaded.
async fn advance_forecasts(
    ctx: &EngineCtx,
    p: &Pool,
    spec: &PoolPolicies,
    obs: &mut Observation,
    models: &mut [Option<ModelCache>],
) -> Result<(), StoreError> {
    let now = obs.now_ms;
    let end = now.div_euclid(HISTORY_INTERVAL_MS) * HISTORY_INTERVAL_MS;
    let (from, full) = match observe::history_need(spec, models, now, end, HISTORY_INTERVAL_MS) {
        HistoryNeed::Nothing => return Ok(()),
        HistoryNeed::Full { from_ms } => (from_ms, true),
        HistoryNeed::Since { from_ms } => (from_ms, false),
    };
    let Some(history) = load_history(ctx, p, from, now, !full).await? else {
        return Ok(());
    };
    observe::advance_models(spec, models, &history);
    if full {
        obs.history = Some(history);
    }
    Ok(())
}
