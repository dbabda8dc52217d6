//! A region's live state (`/regions/{id}/state`) and every region's health
//! and risk (`/regions/health`): the phase 92 pressures,
//! capacity score, warning index, fatigue and scaling mode that the leader
//! recomputes every tick (see `fleetscale_engine::regions` for the inputs
//! and `fleetscale_core::region::state` for the definitions).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::region::mode::{ModeState, ScalingMode};
use fleetscale_core::region::risk::{global_risk, Conflict};
use fleetscale_core::region::snapshot::PeriodType;
use fleetscale_core::region::state::{Pressure, RegionState};
use fleetscale_store::{now_ms, rfc3339, Region, RegionSnapshot, SnapshotRequest};

use super::common::{created, ApiResult, Created};
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::AppState;

/// The region state routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_state))
        .routes(routes!(health))
        .routes(routes!(take_snapshot, get_snapshot))
}

/// A region's scaling mode (`fleetscale_core::region::mode::ScalingMode`).
#[derive(ToSchema)]
#[schema(as = ScalingMode)]
#[allow(dead_code, non_camel_case_types)] // documentation only
pub enum ScalingModeSchema {
    /// All jobs, no delay.
    normal,
    /// All jobs, with a delay.
    cautious,
    /// Small jobs only.
    throttled,
    /// Nothing.
    frozen,
}

/// Pressure per job kind and overall, 0–100.
#[derive(Debug, Serialize, ToSchema)]
pub struct PressureView {
    /// 100 × load ÷ (desired × capacity per instance) over the region's
    /// posting pools, clamped to 0–100; 0 without such a pool.
    pub posting: f64,
    /// The same over orchestration pools.
    pub orchestration: f64,
    /// The same over creative pools.
    pub creative: f64,
    /// The same over intel pools.
    pub intel: f64,
    /// Weighted 30 / 25 / 25 / 20 over the kinds that have a pool.
    pub overall: f64,
}

impl From<Pressure> for PressureView {
    fn from(p: Pressure) -> Self {
        PressureView {
            posting: p.posting,
            orchestration: p.orchestration,
            creative: p.creative,
            intel: p.intel,
            overall: p.overall,
        }
    }
}

/// A region's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegionStateView {
    /// Region id.
    pub region_id: String,
    /// Region name.
    pub region: String,
    /// Pressure per job kind and overall.
    pub pressure: PressureView,
    /// 100 × (1 − load ÷ Σ(max capacity × capacity per instance)) over the
    /// region's pools, clamped; 0 without pools.
    pub capacity_score: f64,
    /// 100 × the share of the region's pools that are over capacity or sat
    /// at their max during the last hour.
    pub warning_index: f64,
    /// 100 × the share of the last 24 h the region spent outside `normal`.
    pub fatigue_score: f64,
    /// Tenants with a measured pool in the region.
    pub active_tenants: u32,
    /// The newest region-level `queue_depth` sample plus the region's
    /// routed jobs still queued (`POST /jobs/route` until `POST /jobs/{id}/done`).
    pub jobs_in_queue: u64,
    /// The scaling mode (thresholds with hysteresis).
    #[schema(value_type = ScalingModeSchema)]
    pub scaling_mode: ScalingMode,
    /// Since when the region is in that mode (RFC 3339).
    pub mode_since: String,
    /// When the leader last stored this state (RFC 3339); `null` when it has
    /// not yet and the state was computed for this request.
    pub updated_at: Option<String>,
}

impl RegionStateView {
    fn new(region: Region, state: RegionState, mode: &ModeState, updated_at: Option<i64>) -> Self {
        RegionStateView {
            region_id: region.id,
            region: region.name,
            pressure: state.pressure.into(),
            capacity_score: state.capacity_score,
            warning_index: state.warning_index,
            fatigue_score: state.fatigue_score,
            active_tenants: state.active_tenants,
            jobs_in_queue: state.jobs_in_queue,
            scaling_mode: mode.mode,
            mode_since: rfc3339(mode.since_ms),
            updated_at: updated_at.map(rfc3339),
        }
    }
}

/// A region's state and scaling mode, by id or name: as the leader stored it
/// at its last tick, or computed now if it has not yet.
#[utoipa::path(get, path = "/regions/{id}/state", tag = "regions",
    params(("id" = String, Path, description = "The region's id or name")),
    responses((status = 200, description = "The region's state.", body = RegionStateView), (status = 401), (status = 404))
)]
async fn get_state(
    State(s): State<AppState>,
    _who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<RegionStateView>> {
    let region = s.engine.store.get_region(&id).await?;
    Ok(Json(summary(&s, region).await?))
}

/// The parameters of `GET /regions/health`; any other is a 400 naming it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthQuery {
    /// `name` (default), `capacity` or `pressure`.
    pub sort_by: Option<String>,
    /// `asc` (default) or `desc`.
    pub order: Option<String>,
    /// `true` adds the global risk, its conflicts and recommendations.
    pub include_risk: Option<bool>,
}

/// One region in the health list.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegionHealthView {
    /// The region's state.
    #[serde(flatten)]
    pub state: RegionStateView,
    /// Its jurisdiction.
    pub jurisdiction: String,
    /// Its AI budget remaining this month, cents (0 without a budget).
    pub budget_remaining_cents: i64,
    /// Budget used this month, 0–100 % of the allocation.
    pub budget_used_pct: f64,
    /// Region risk 0–100: 0.4 × pressure + 0.3 × (100 − capacity score) +
    /// 0.2 × budget used % + 0.1 × fatigue (with `include_risk`).
    pub risk: Option<f64>,
    /// Its level: low < 25 ≤ medium < 50 ≤ high < 75 ≤ critical (with
    /// `include_risk`).
    pub risk_level: Option<String>,
}

/// A rule a region breaks.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictView {
    /// `low_capacity`, `high_pressure`, `low_budget`, `frozen`, `fatigue` or
    /// `imbalance`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The region.
    pub region: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// In words.
    pub message: String,
}

/// The global risk: the highest region risk, every conflict and what to do.
#[derive(Debug, Serialize, ToSchema)]
pub struct GlobalRiskView {
    /// The highest region risk, 0–100.
    pub score: f64,
    /// Its level.
    pub level: String,
    /// Every conflict, by region then rule.
    pub conflicts: Vec<ConflictView>,
    /// Each names its `action` (`rebalance` with `from` and `to`,
    /// `raise_pool_max` with `region` and `pool`, `allocate_budget` or
    /// `review_capacity_plan` with `region`) and a `message`.
    #[schema(value_type = Vec<Object>)]
    pub recommendations: Vec<serde_json::Value>,
}

/// The regions' health, sorted as asked, and the global risk if asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegionsHealthView {
    /// The regions.
    pub regions: Vec<RegionHealthView>,
    /// With `include_risk=true`.
    pub global_risk: Option<GlobalRiskView>,
}

/// Every region's state, budget and (with `include_risk=true`) risk, the
/// conflicts found from thresholds (capacity score < 10 critical; pressure >
/// 75 high; budget remaining < 10 % high, < 20 % medium; frozen critical;
/// fatigue > 50 medium; imbalance: a region above 80 pressure while a peer
/// of the same jurisdiction is below 30, medium) and recommendations naming
/// the action and its target.
#[utoipa::path(get, path = "/regions/health", tag = "regions",
    params(
        ("sort_by" = Option<String>, Query, description = "name (default), capacity or pressure"),
        ("order" = Option<String>, Query, description = "asc (default) or desc"),
        ("include_risk" = Option<bool>, Query, description = "Add the global risk, conflicts and recommendations")),
    responses((status = 200, description = "The regions' health.", body = RegionsHealthView), (status = 400), (status = 401))
)]
async fn health(
    State(s): State<AppState>,
    _who: Principal,
    ApiQuery(q): ApiQuery<HealthQuery>,
) -> ApiResult<Json<RegionsHealthView>> {
    let (sort, desc) = q.sorting()?;
    let now = now_ms();
    let rows = fleetscale_engine::regions::health(&s.engine, now).await?;
    let risk = q.include_risk.unwrap_or(false).then(|| {
        let g = global_risk(&rows.iter().map(|r| r.risk.clone()).collect::<Vec<_>>());
        (
            g.regions
                .iter()
                .map(|r| (r.score, r.level))
                .collect::<Vec<_>>(),
            GlobalRiskView {
                score: g.score,
                level: wire_name(g.level),
                conflicts: g.conflicts.into_iter().map(conflict_view).collect(),
                recommendations: g
                    .recommendations
                    .iter()
                    .map(|r| serde_json::to_value(r).unwrap_or_default())
                    .collect(),
            },
        )
    });
    let mut regions: Vec<RegionHealthView> = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let per = risk.as_ref().map(|(per, _)| per[i]);
            RegionHealthView {
                jurisdiction: r.region.jurisdiction.clone(),
                budget_remaining_cents: r.risk.budget_remaining_cents,
                budget_used_pct: r.risk.budget_used_pct(),
                risk: per.map(|(score, _)| score),
                risk_level: per.map(|(_, level)| wire_name(level)),
                state: RegionStateView::new(r.region, r.state, &r.mode, r.updated_at_ms),
            }
        })
        .collect();
    regions.sort_by(|a, b| {
        let o = match sort {
            HealthSort::Name => a.state.region.cmp(&b.state.region),
            HealthSort::Capacity => a.state.capacity_score.total_cmp(&b.state.capacity_score),
            HealthSort::Pressure => a
                .state
                .pressure
                .overall
                .total_cmp(&b.state.pressure.overall),
        };
        let o = o.then_with(|| a.state.region.cmp(&b.state.region));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    let global_risk = risk.map(|(_, g)| g);
    Ok(Json(RegionsHealthView {
        regions,
        global_risk,
    }))
}

/// What the health list is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HealthSort {
    Name,
    Capacity,
    Pressure,
}

impl HealthQuery {
    /// The sort key and whether it is descending; a bad value is a 400
    /// naming the parameter.
    fn sorting(&self) -> ApiResult<(HealthSort, bool)> {
        let sort = match self.sort_by.as_deref() {
            None | Some("name") => HealthSort::Name,
            Some("capacity") => HealthSort::Capacity,
            Some("pressure") => HealthSort::Pressure,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "bad query parameter: sort_by must be name, capacity or pressure, not {other:?}"
                )))
            }
        };
        let desc = match self.order.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "bad query parameter: order must be asc or desc, not {other:?}"
                )))
            }
        };
        Ok((sort, desc))
    }
}

/// A core enum's wire name (its snake_case serde name).
fn wire_name<T: Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn conflict_view(c: Conflict) -> ConflictView {
    ConflictView {
        kind: wire_name(c.kind),
        region: c.region,
        severity: wire_name(c.severity),
        message: c.message,
    }
}

/// The body of `POST /regions/{id}/snapshot`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotBody {
    /// `hourly`, `daily` or `weekly`.
    pub period_type: String,
}

/// A region's figures over one period.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotView {
    /// Id (UUIDv7).
    pub id: String,
    /// `hourly`, `daily` or `weekly`.
    pub period_type: String,
    /// Start of the period (RFC 3339).
    pub period_start: String,
    /// End of the period, or of the part covered so far (RFC 3339).
    pub period_end: String,
    /// Mean capacity score over the period (`null` without data).
    pub avg_capacity: Option<f64>,
    /// Highest overall pressure over the period (`null` without data).
    pub peak_pressure: Option<f64>,
    /// Net spend of the region's budget in the period, cents.
    pub budget_used_cents: i64,
    /// The region's scaling mode when the snapshot was taken.
    #[schema(value_type = ScalingModeSchema)]
    pub scaling_mode: ScalingMode,
    /// Its capacity score then.
    pub capacity_score: f64,
    /// Its overall pressure then.
    pub pressure: f64,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
}

impl From<RegionSnapshot> for SnapshotView {
    fn from(s: RegionSnapshot) -> Self {
        SnapshotView {
            id: s.id,
            period_type: s.period_type.as_str().into(),
            period_start: rfc3339(s.period_start_ms),
            period_end: rfc3339(s.period_end_ms),
            avg_capacity: s.avg_capacity,
            peak_pressure: s.peak_pressure,
            budget_used_cents: s.budget_used_cents,
            scaling_mode: s.mode,
            capacity_score: s.state.capacity_score,
            pressure: s.state.pressure.overall,
            taken_at: rfc3339(s.created_at_ms),
        }
    }
}

/// One period of a region's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotHistoryView {
    /// Start of the period (RFC 3339).
    pub period_start: String,
    /// Mean capacity score (`null` without data).
    pub avg_capacity: Option<f64>,
    /// Highest overall pressure (`null` without data).
    pub peak_pressure: Option<f64>,
    /// Net budget spend, cents.
    pub budget_used_cents: i64,
}

/// A region's current summary, its newest snapshot and its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegionSnapshotsView {
    /// The region's state now.
    pub summary: RegionStateView,
    /// The newest snapshot of the asked period type (`null` if none yet).
    pub snapshot: Option<SnapshotView>,
    /// The newest `periods` snapshots, newest first (with
    /// `include_history=true`).
    pub history: Vec<SnapshotHistoryView>,
}

/// The parameters of `GET /regions/{id}/snapshot`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotQuery {
    /// `hourly` (default), `daily` or `weekly`.
    pub period_type: Option<String>,
    /// `true` adds the history.
    pub include_history: Option<bool>,
    /// How many periods of history, 1–1000 (default 24).
    pub periods: Option<i64>,
}

fn period_type(raw: &str, field: &str) -> ApiResult<PeriodType> {
    raw.parse()
        .map_err(|e: fleetscale_core::UnknownValue| ApiError::field(field, e.to_string()))
}

/// The region's state and mode now: as the leader stored them, else
/// computed for the request (then without an update time).
async fn current(
    s: &AppState,
    region: &Region,
) -> ApiResult<(RegionState, ModeState, Option<i64>)> {
    let store = &s.engine.store;
    if let Some(st) = store.region_state(&region.id).await? {
        return Ok((st.state, st.mode, Some(st.updated_at_ms)));
    }
    let now = now_ms();
    let (pools, stats) = (
        store.all_pools(None).await?,
        store.window_stats(None, now).await?,
    );
    let computed =
        fleetscale_engine::regions::compute(&s.engine, now, &pools, &stats, Some(&region.id));
    let c = computed
        .await?
        .pop()
        .ok_or_else(|| ApiError::NotFound("region".into()))?;
    Ok((c.state, c.eval.state, None))
}

/// The region's state now, as the state endpoint shows it.
async fn summary(s: &AppState, region: Region) -> ApiResult<RegionStateView> {
    let (state, mode, updated) = current(s, &region).await?;
    Ok(RegionStateView::new(region, state, &mode, updated))
}

/// Take a snapshot of a region's current period so far (operator; audited):
/// its average capacity score and peak pressure from the leader's
/// per-tick figures and its net budget spend. The leader takes the final
/// one when the period ends.
#[utoipa::path(post, path = "/regions/{id}/snapshot", tag = "regions",
    params(("id" = String, Path, description = "The region's id or name")),
    request_body(content = SnapshotBody, content_type = "application/json", example = json!({"period_type": "hourly"})),
    responses((status = 201, description = "The snapshot.", body = SnapshotView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn take_snapshot(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<SnapshotBody>,
) -> ApiResult<Created<SnapshotView>> {
    who.require(Role::Operator)?;
    let pt = period_type(&b.period_type, "period_type")?;
    let region = s.engine.store.get_region(&id).await?;
    let now = now_ms();
    let (st, mode, _) = current(&s, &region).await?;
    let mode = mode.mode;
    let req = SnapshotRequest {
        region_id: &region.id,
        period_type: pt,
        period: (pt.bounds(now).0, now),
        state: &st,
        mode,
        actor: Some(&who.name),
        now_ms: now,
    };
    let taken = s.engine.store.take_region_snapshot(&req);
    Ok(created(taken.await?.into()))
}

/// A region's summary, newest snapshot and (with `include_history=true`)
/// the newest `periods` snapshots of `period_type`.
#[utoipa::path(get, path = "/regions/{id}/snapshot", tag = "regions",
    params(("id" = String, Path, description = "The region's id or name"),
        ("period_type" = Option<String>, Query, description = "hourly (default), daily or weekly"),
        ("include_history" = Option<bool>, Query, description = "Add the history"),
        ("periods" = Option<i64>, Query, description = "Periods of history, 1-1000 (default 24)")),
    responses((status = 200, description = "Summary, snapshot and history.", body = RegionSnapshotsView), (status = 400), (status = 401), (status = 404), (status = 422))
)]
async fn get_snapshot(
    State(s): State<AppState>,
    _who: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SnapshotQuery>,
) -> ApiResult<Json<RegionSnapshotsView>> {
    let pt = period_type(q.period_type.as_deref().unwrap_or("hourly"), "period_type")?;
    let periods = q.periods.unwrap_or(24);
    if !(1..=1000).contains(&periods) {
        return Err(ApiError::field("periods", "must be between 1 and 1000"));
    }
    let region = s.engine.store.get_region(&id).await?;
    let region_id = region.id.clone();
    let summary = summary(&s, region).await?;
    let history = q.include_history.unwrap_or(false);
    let limit = if history { periods } else { 1 };
    let mut snaps = s
        .engine
        .store
        .region_snapshots(&region_id, pt, limit)
        .await?;
    let history = if history {
        snaps
            .iter()
            .map(|x| SnapshotHistoryView {
                period_start: rfc3339(x.period_start_ms),
                avg_capacity: x.avg_capacity,
                peak_pressure: x.peak_pressure,
                budget_used_cents: x.budget_used_cents,
            })
            .collect()
    } else {
        Vec::new()
    };
    let snapshot = (!snaps.is_empty()).then(|| snaps.swap_remove(0).into());
    Ok(Json(RegionSnapshotsView {
        summary,
        snapshot,
        history,
    }))
}
