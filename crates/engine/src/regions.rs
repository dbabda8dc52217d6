//! Region state, recomputed by the leader every tick: each region's
//! pressures, capacity score, warning index and fatigue from its pools and
//! their loads (the pure [`region_state`]), then its scaling mode through
//! the hysteresis of [`evaluate_mode`]; the state is stored, and a mode
//! change is recorded as a transition. Inputs are read in a few set-based
//! queries for all regions at once.
//!
//! Definitions of the inputs (the figures themselves are defined in
//! `fleetscale_core::region::state`):
//! - a pool's load is its metric's window mean; a pool is `over` when its
//!   utilization exceeds the capacity status threshold (80 %);
//! - it sat at max during the last hour when it is at `max_capacity` now or
//!   a scaling event of the last hour went to or from `max_capacity`;
//! - `active_tenants` counts the tenants with a measured pool in the region;
//! - `jobs_in_queue` is the newest region-level `queue_depth` sample (the
//!   queue outside fleetscale, 0 without one) plus the region's routed jobs
//!   still queued (`POST /jobs/route` accepted them, `POST /jobs/{id}/done`
//!   has not finished them), as [`fleetscale_store::jobs_in_queue`] adds
//!   them (one query for all regions, `jobs_in_queue_by_region`); job
//!   routing reads the same figure.

use std::collections::{BTreeSet, HashMap};

use fleetscale_core::capacity::{self, Status, StatusThresholds};
use fleetscale_core::policy::utilization_pct;
use fleetscale_core::region::mode::{evaluate_mode, ModeEvaluation, ModeState, ScalingMode};
use fleetscale_core::region::risk::RiskRegion;
use fleetscale_core::region::snapshot::PeriodType;
use fleetscale_core::region::state::{
    job_kind_of, mode_intervals, region_state, PoolLoad, RegionInput, RegionState,
    FATIGUE_WINDOW_MS,
};
use fleetscale_core::WindowStats;
use fleetscale_store::{Fence, Page, Pool, Region, RegionSample, SnapshotRequest, StoreError};

use crate::EngineCtx;

/// How far back a pool at max counts toward the warning index, ms.
pub const AT_MAX_WINDOW_MS: i64 = 3_600_000;

/// Most mode transitions read for the fatigue window (a stated bound).
pub const MAX_MODE_EVENTS: i64 = 100_000;

/// What one refresh did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionReport {
    /// Regions whose state was stored.
    pub regions: u64,
    /// Mode transitions recorded.
    pub transitions: u64,
    /// Period-end snapshots taken.
    pub snapshots: u64,
}

/// One region's freshly computed state and mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    /// The region.
    pub region: Region,
    /// Its figures now.
    pub state: RegionState,
    /// Its mode after this evaluation, and the transition if it changed.
    pub eval: ModeEvaluation,
}

/// Computes every region's state at `now` (or only region id `only`) from
/// `pools` and their window statistics, and evaluates its mode against the
/// stored one; stores nothing.
pub async fn compute(
    ctx: &EngineCtx,
    now: i64,
    pools: &[Pool],
    stats: &HashMap<String, WindowStats>,
    only: Option<&str>,
) -> Result<Vec<Computed>, StoreError> {
    let regions: Vec<Region> = ctx
        .store
        .all_regions()
        .await?
        .into_iter()
        .filter(|r| only.is_none_or(|id| r.id == id))
        .collect();
    if regions.is_empty() {
        return Ok(Vec::new());
    }
    let stored = ctx.store.region_states().await?;
    let events = ctx
        .store
        .region_mode_events(only, now - FATIGUE_WINDOW_MS, MAX_MODE_EVENTS)
        .await?;
    let at_max = ctx.store.pools_at_max_since(now - AT_MAX_WINDOW_MS).await?;
    let queues = ctx.store.jobs_in_queue_by_region(now).await?;
    let mut out = Vec::with_capacity(regions.len());
    for region in regions {
        let mut tenants = BTreeSet::new();
        let loads: Vec<PoolLoad> = pools
            .iter()
            .filter(|p| p.region == region.name)
            .map(|p| {
                let load = stats.get(&p.id).map(|w| w.mean);
                if load.is_some() {
                    tenants.insert(p.tenant_id.as_str());
                }
                let util = load
                    .and_then(|l| utilization_pct(l, p.desired_capacity, p.capacity_per_instance));
                PoolLoad {
                    job_kind: p.job_kind.or_else(|| job_kind_of(&p.agent_type)),
                    agent_type: p.agent_type.clone(),
                    desired: to_u32(p.desired_capacity),
                    max_capacity: to_u32(p.max_capacity),
                    capacity_per_instance: p.capacity_per_instance,
                    load,
                    over_capacity: capacity::status(util, StatusThresholds::default())
                        == Status::Over,
                    saturated_last_hour: at_max.contains(&p.id),
                }
            })
            .collect();
        let previous = stored
            .get(&region.id)
            .map(|s| s.mode)
            .unwrap_or_else(|| ModeState::new(ScalingMode::Normal, now));
        let transitions: Vec<_> = events
            .iter()
            .filter(|e| e.region_id == region.id)
            .map(|e| e.transition)
            .collect();
        let input = RegionInput {
            pools: loads,
            mode_history: mode_intervals(&transitions, previous.mode, now - FATIGUE_WINDOW_MS, now),
            active_tenants: tenants.len() as u32,
            jobs_in_queue: queues.get(&region.id).copied().unwrap_or(0),
        };
        let state = region_state(&input, now);
        let eval = evaluate_mode(&previous, state.capacity_score, state.pressure.overall, now);
        out.push(Computed {
            region,
            state,
            eval,
        });
    }
    Ok(out)
}

/// Recomputes and stores every region's state at `now` from `pools` and
/// their window statistics, fenced on the control-loop lease; a mode change
/// is stored with the state, in one transaction.
pub async fn refresh(
    ctx: &EngineCtx,
    fence: &Fence,
    now: i64,
    pools: &[Pool],
    stats: &HashMap<String, WindowStats>,
) -> Result<RegionReport, StoreError> {
    let mut report = RegionReport::default();
    let computed = compute(ctx, now, pools, stats, None).await?;
    for c in &computed {
        if let Some(t) = &c.eval.transition {
            tracing::info!(region = %c.region.name, from = %t.from, to = %t.to, capacity_score = t.capacity_score, pressure = t.pressure, "region scaling mode changed");
            ctx.metrics.region_mode_transitions.inc();
            report.transitions += 1;
        }
        ctx.store
            .put_region_state(
                &c.region.id,
                &c.state,
                &c.eval.state,
                c.eval.transition.as_ref(),
                fence,
                now,
            )
            .await?;
        report.regions += 1;
    }
    // The figures snapshots average, as region-level samples.
    let samples: Vec<RegionSample> = computed
        .iter()
        .flat_map(|c| {
            [
                ("capacity_score", c.state.capacity_score),
                ("pressure", c.state.pressure.overall),
            ]
            .map(|(metric, value)| RegionSample {
                region_id: c.region.id.clone(),
                metric: metric.into(),
                ts_ms: now,
                value,
            })
        })
        .collect();
    ctx.store.insert_region_samples(&samples).await?;
    report.snapshots = snapshot_ended_periods(ctx, now, &computed).await?;
    Ok(report)
}

/// Takes the snapshot of every period (hourly, daily, weekly) that ended
/// since the last one, for each region that lacks it; returns how many.
async fn snapshot_ended_periods(
    ctx: &EngineCtx,
    now: i64,
    computed: &[Computed],
) -> Result<u64, StoreError> {
    let mut taken = 0;
    for period_type in PeriodType::ALL {
        let period = period_type.last_completed(now);
        let done = ctx
            .store
            .regions_with_snapshot(period_type, period.0)
            .await?;
        for c in computed.iter().filter(|c| !done.contains(&c.region.id)) {
            ctx.store
                .take_region_snapshot(&SnapshotRequest {
                    region_id: &c.region.id,
                    period_type,
                    period,
                    state: &c.state,
                    mode: c.eval.state.mode,
                    actor: None,
                    now_ms: now,
                })
                .await?;
            taken += 1;
        }
    }
    Ok(taken)
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// One region as the health list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthRow {
    /// The region.
    pub region: Region,
    /// Its state: as the leader stored it, else computed now.
    pub state: RegionState,
    /// Its mode.
    pub mode: ModeState,
    /// When the leader stored the state; `None` when computed now.
    pub updated_at_ms: Option<i64>,
    /// The risk inputs: the figures above, the month's budget, the peers
    /// (other regions of the same jurisdiction, where the region's work may
    /// move without crossing a border) and the busiest pool.
    pub risk: RiskRegion,
}

/// Every region's state, budget and risk inputs at `now`, by name.
pub async fn health(ctx: &EngineCtx, now: i64) -> Result<Vec<HealthRow>, StoreError> {
    let pools = ctx.store.all_pools(None).await?;
    let stats = ctx.store.window_stats(None, now).await?;
    let stored = ctx.store.region_states().await?;
    let computed = compute(ctx, now, &pools, &stats, None).await?;
    let mut budgets: HashMap<String, (i64, i64)> = HashMap::new();
    let mut page = Page {
        limit: Some(1000),
        cursor: None,
    };
    loop {
        let listed = ctx.budgets.list(&page).await?;
        for b in &listed.items {
            budgets.insert(b.region_id.clone(), (b.monthly_cents, b.remaining_cents));
        }
        match listed.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    let regions: Vec<Region> = computed.iter().map(|c| c.region.clone()).collect();
    Ok(computed
        .into_iter()
        .map(|c| {
            let (state, mode, updated_at_ms) = match stored.get(&c.region.id) {
                Some(s) => (s.state, s.mode, Some(s.updated_at_ms)),
                None => (c.state, c.eval.state, None),
            };
            let (allocated, remaining) = budgets.get(&c.region.id).copied().unwrap_or((0, 0));
            let busiest_pool = pools
                .iter()
                .filter(|p| p.region == c.region.name)
                .filter_map(|p| {
                    let load = stats.get(&p.id)?.mean;
                    let u = utilization_pct(load, p.desired_capacity, p.capacity_per_instance)?;
                    Some((u, p))
                })
                .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.id.cmp(&a.1.id)))
                .map(|(_, p)| p.id.clone());
            let risk = RiskRegion {
                name: c.region.name.clone(),
                mode: mode.mode,
                pressure: state.pressure.overall,
                capacity_score: state.capacity_score,
                fatigue_score: state.fatigue_score,
                budget_allocated_cents: allocated,
                budget_remaining_cents: remaining,
                compliant_peers: regions
                    .iter()
                    .filter(|r| r.id != c.region.id && r.jurisdiction == c.region.jurisdiction)
                    .map(|r| r.name.clone())
                    .collect(),
                busiest_pool,
            };
            HealthRow {
                region: c.region,
                state,
                mode,
                updated_at_ms,
                risk,
            }
        })
        .collect())
}
