//! The audit log (`/audit`) and the control loop's status (`/engine`).

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_store::{now_ms, rfc3339, Listed};

use super::common::{ApiResult, ListQuery};
use crate::auth::{Principal, Role};
use crate::error::ApiQuery;
use crate::AppState;

/// The audit and engine routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(engine_status))
}

/// The audit log: every mutation, who and when.
#[utoipa::path(get, path = "/audit", tag = "audit",
    params(("tenant_id" = Option<String>, Query, description = "Only this tenant"), ("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "`{items, next_cursor}`.", body = Object), (status = 401), (status = 403), (status = 422))
)]
async fn list_audit(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    who.require(Role::Admin)?;
    let tenant = who.tenant_filter(q.tenant_id.as_deref())?;
    let l: Listed<_> = s
        .engine
        .store
        .list_audit(tenant.as_deref(), &q.page()?)
        .await?;
    Ok(Json(l))
}

/// The control loop: leader, last tick, counts.
#[utoipa::path(get, path = "/engine", tag = "engine",
    responses((status = 200, description = "Engine status.", body = Object), (status = 401))
)]
async fn engine_status(State(s): State<AppState>, _who: Principal) -> ApiResult<impl IntoResponse> {
    let holder = s
        .engine
        .store
        .lease_holder(fleetscale_engine::LEASE)
        .await?;
    let now = now_ms();
    let live = holder.as_ref().filter(|(_, exp)| *exp > now);
    Ok(Json(json!({
        "replica_id": s.replica_id,
        "leader": live.is_some_and(|(h, _)| *h == *s.replica_id),
        "lease_holder": live.map(|(h, _)| h),
        "lease_expires_at": live.map(|(_, e)| rfc3339(*e)),
        "tick_ms": s.tick_ms,
        "actuator": s.engine.actuator.kind(),
        "tasks": s.supervisor.statuses(),
    })))
}
