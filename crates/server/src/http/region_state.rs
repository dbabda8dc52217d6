//! A region's live state (`/regions/{id}/state`): the phase 92 pressures,
//! capacity score, warning index, fatigue and scaling mode that the leader
//! recomputes every tick (see `fleetscale_engine::regions` for the inputs
//! and `fleetscale_core::region::state` for the definitions).

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::region::mode::{ModeState, ScalingMode};
use fleetscale_core::region::state::{Pressure, RegionState};
use fleetscale_store::{now_ms, rfc3339, Region};

use super::common::ApiResult;
use crate::auth::Principal;
use crate::AppState;

/// The region state routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_state))
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
    /// The newest region-level `queue_depth` sample.
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
    let store = &s.engine.store;
    let region = store.get_region(&id).await?;
    if let Some(st) = store.region_state(&region.id).await? {
        let view = RegionStateView::new(region, st.state, &st.mode, Some(st.updated_at_ms));
        return Ok(Json(view));
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
        .ok_or_else(|| crate::error::ApiError::NotFound("region".into()))?;
    Ok(Json(RegionStateView::new(
        c.region,
        c.state,
        &c.eval.state,
        None,
    )))
}
