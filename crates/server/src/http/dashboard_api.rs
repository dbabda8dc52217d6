//! What the web dashboard needs that no other resource answered: who the
//! caller is (`/me`) and a pool's metric series over time
//! (`/pools/{id}/samples`).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_store::now_ms;

use super::common::{visible_pool, ApiResult};
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiQuery};
use crate::AppState;

/// The dashboard routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(pool_samples))
}

/// The caller, as its token grants.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// The token's name (the audit actor).
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// The tenant the token is scoped to; `null` for a global token.
    pub tenant_id: Option<String>,
    /// True for the global admin (every tenant; creates tenants, regions, tokens).
    pub global_admin: bool,
    /// May push metrics, scale, plan, rebalance and settle proposals (operator or admin).
    pub can_operate: bool,
    /// May lock and unlock pools and change their settings (admin).
    pub can_administer: bool,
}

/// Who the bearer token is: its role and tenant scope (any valid token).
#[utoipa::path(get, path = "/me", tag = "dashboard",
    responses((status = 200, description = "The caller.", body = MeView), (status = 401))
)]
async fn me(who: Principal) -> Json<MeView> {
    Json(MeView {
        global_admin: who.is_global_admin(),
        can_operate: who.role >= Role::Operator,
        can_administer: who.role >= Role::Admin,
        role: who.role.as_str().into(),
        tenant_id: who.tenant_id,
        name: who.name,
    })
}

/// Longest window of `/pools/{id}/samples`, seconds (7 days, the default retention).
pub const MAX_SAMPLE_WINDOW_SECS: i64 = 7 * 24 * 3600;
/// Most points one `/pools/{id}/samples` answer holds.
pub const MAX_SAMPLE_POINTS: i64 = 10_000;

/// Query of `/pools/{id}/samples`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplesQuery {
    /// The metric (default: the pool's scaling metric).
    pub metric: Option<String>,
    /// How far back from now, seconds (1..=604800, default 3600).
    pub window_seconds: Option<i64>,
    /// Most points, oldest first (1..=10000, default 2000).
    pub limit: Option<i64>,
}

/// One point of a series.
#[derive(Debug, Serialize, ToSchema)]
pub struct PointView {
    /// When, Unix ms.
    pub ts_ms: i64,
    /// The value.
    pub value: f64,
}

/// A pool's metric over a window.
#[derive(Debug, Serialize, ToSchema)]
pub struct SamplesView {
    /// The pool.
    pub pool_id: String,
    /// The metric.
    pub metric: String,
    /// Window start, Unix ms.
    pub from_ms: i64,
    /// Window end (now), Unix ms.
    pub to_ms: i64,
    /// The points, oldest first.
    pub points: Vec<PointView>,
    /// True when `limit` cut the window short (the newest points are missing).
    pub truncated: bool,
}

/// A pool's metric samples over the last `window_seconds`.
#[utoipa::path(get, path = "/pools/{id}/samples", tag = "pools",
    params(("id" = String, Path, description = "Pool id"),
        ("metric" = Option<String>, Query, description = "Metric (default: the pool's)"),
        ("window_seconds" = Option<i64>, Query, description = "How far back, seconds (1-604800, default 3600)"),
        ("limit" = Option<i64>, Query, description = "Most points (1-10000, default 2000)")),
    responses((status = 200, description = "The series.", body = SamplesView), (status = 401), (status = 404), (status = 422))
)]
async fn pool_samples(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SamplesQuery>,
) -> ApiResult<Json<SamplesView>> {
    let window = q.window_seconds.unwrap_or(3600);
    if !(1..=MAX_SAMPLE_WINDOW_SECS).contains(&window) {
        return Err(ApiError::field(
            "window_seconds",
            "must be between 1 and 604800",
        ));
    }
    let limit = q.limit.unwrap_or(2000);
    if !(1..=MAX_SAMPLE_POINTS).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 10000"));
    }
    if q.metric
        .as_deref()
        .is_some_and(|m| m.is_empty() || m.len() > 64)
    {
        return Err(ApiError::field("metric", "must be 1 to 64 characters"));
    }
    let pool = visible_pool(&s, &who, &id).await?;
    let metric = q.metric.unwrap_or_else(|| pool.metric.clone());
    let to = now_ms();
    let from = to - window * 1000;
    let mut samples = s
        .engine
        .store
        .samples(&pool.id, &metric, from, to, limit + 1)
        .await?;
    let truncated = samples.len() as i64 > limit;
    samples.truncate(limit as usize);
    Ok(Json(SamplesView {
        pool_id: pool.id,
        metric,
        from_ms: from,
        to_ms: to,
        points: samples
            .into_iter()
            .map(|p| PointView {
                ts_ms: p.ts_ms,
                value: p.value,
            })
            .collect(),
        truncated,
    }))
}
