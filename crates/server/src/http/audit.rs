//! The audit log (`/audit`) and the control loop's status (`/engine`).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_engine::{TaskState, TaskStatus};
use fleetscale_store::{now_ms, rfc3339};

use super::common::{tenant_scope, ApiResult, ListQuery};
use super::views::AuditPage;
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
    responses((status = 200, description = "A page of audit entries, newest first.", body = AuditPage), (status = 401), (status = 403), (status = 422))
)]
async fn list_audit(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<AuditPage>> {
    who.require(Role::Admin)?;
    let tenant = tenant_scope(&s, &who, q.tenant_id.as_deref()).await?;
    let page = q.page()?;
    let entries = s.engine.store.list_audit(tenant.as_deref(), &page).await?;
    Ok(Json(entries.into()))
}

/// One supervised background job.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    /// The job's name.
    pub name: String,
    /// `running`, `backing_off` (failed; waiting to be restarted) or `stopped`.
    #[schema(value_type = String)]
    pub state: TaskState,
    /// Times it was restarted after a failure.
    pub restarts: u64,
    /// Why it last failed.
    pub last_error: Option<String>,
}

impl From<TaskStatus> for TaskView {
    fn from(t: TaskStatus) -> Self {
        let TaskStatus {
            name,
            state,
            restarts,
            last_error,
        } = t;
        TaskView {
            name,
            state,
            restarts,
            last_error,
        }
    }
}

/// The control loop's status on this replica.
#[derive(Debug, Serialize, ToSchema)]
pub struct EngineView {
    /// This replica's id.
    pub replica_id: String,
    /// True when this replica holds the control-loop lease.
    pub leader: bool,
    /// The replica holding the lease, `null` when none does.
    pub lease_holder: Option<String>,
    /// When that lease expires (RFC 3339).
    pub lease_expires_at: Option<String>,
    /// Control-loop interval, ms.
    pub tick_ms: i64,
    /// `none` or `webhook`.
    pub actuator: String,
    /// The background jobs.
    pub tasks: Vec<TaskView>,
    /// Control-loop ticks this replica evaluated as leader since it started.
    pub ticks: u64,
    /// Ticks that failed on this replica (each backs off the next one).
    pub tick_failures: u64,
    /// When this replica's last tick ended (RFC 3339; `null`: none yet).
    pub last_tick_at: Option<String>,
    /// How long that tick took, ms.
    pub last_tick_duration_ms: Option<f64>,
    /// Actuation delivery series that succeeded on this replica.
    pub actuations: u64,
    /// Actuation delivery series that failed on this replica (webhook failures).
    pub actuation_failures: u64,
    /// This replica's in-memory routing view.
    pub routing_view: RoutingViewStatus,
}

/// This replica's in-memory routing view: reloaded every tick, and before
/// the next route after a write through this replica.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingViewStatus {
    /// Version of the snapshot in use (0 before the first load).
    pub version: u64,
    /// When it was loaded (RFC 3339), `null` before the first load.
    pub loaded_at: Option<String>,
    /// Tenants it knows.
    pub tenants: usize,
    /// Regions it knows.
    pub regions: usize,
}

/// The control loop: leader, last tick, counts.
#[utoipa::path(get, path = "/engine", tag = "engine",
    responses((status = 200, description = "Engine status.", body = EngineView), (status = 401))
)]
async fn engine_status(State(s): State<AppState>, _who: Principal) -> ApiResult<Json<EngineView>> {
    Ok(Json(engine_view(&s).await?))
}

/// This replica's engine status, as `GET /engine` answers it (the live
/// stream sends it too).
pub(super) async fn engine_view(s: &AppState) -> ApiResult<EngineView> {
    let holder = s.engine.store.lease_holder(fleetscale_engine::LEASE);
    Ok(EngineView::new(s, holder.await?, now_ms()))
}

impl EngineView {
    /// This replica's status, given the control-loop lease's `holder` and
    /// its expiry (ignored once expired at `now`).
    fn new(s: &AppState, holder: Option<(String, i64)>, now: i64) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let live = holder.filter(|(_, exp)| *exp > now);
        let m = &s.engine.metrics;
        let last_at = m.last_tick_at_ms.load(Relaxed);
        EngineView {
            replica_id: s.replica_id.to_string(),
            leader: live.as_ref().is_some_and(|(h, _)| *h == *s.replica_id),
            lease_expires_at: live.as_ref().map(|(_, e)| rfc3339(*e)),
            lease_holder: live.map(|(h, _)| h),
            tick_ms: s.tick_ms,
            actuator: s.engine.actuator.kind().into(),
            tasks: s
                .supervisor
                .statuses()
                .into_iter()
                .map(TaskView::from)
                .collect(),
            ticks: m.ticks.get(),
            tick_failures: m.tick_failures.get(),
            last_tick_at: (last_at > 0).then(|| rfc3339(last_at)),
            last_tick_duration_ms: (last_at > 0)
                .then(|| m.last_tick_micros.load(Relaxed) as f64 / 1000.0),
            actuations: m.actuations.get(),
            actuation_failures: m.actuation_failures.get(),
            routing_view: {
                let v = s.engine.routing_view.status();
                RoutingViewStatus {
                    version: v.version,
                    loaded_at: (v.version > 0).then(|| rfc3339(v.loaded_at_ms)),
                    tenants: v.tenants,
                    regions: v.regions,
                }
            },
        }
    }
}
