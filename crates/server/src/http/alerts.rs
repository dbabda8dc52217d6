//! Alerts (`/alerts`): what the region monitor raised, newest first.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_store::{rfc3339, Alert, Listed};

use super::common::{ApiResult, ListQuery};
use crate::auth::Principal;
use crate::error::ApiQuery;
use crate::AppState;

/// The alert routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_alerts))
}

/// One alert.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    /// Id (UUIDv7); the webhook's idempotency key.
    pub id: String,
    /// `critical`.
    pub level: String,
    /// The conflict type (`frozen`, `low_capacity`, ...) or `global_risk`.
    pub kind: String,
    /// The region concerned, if one.
    pub region: Option<String>,
    /// In words.
    pub message: String,
    /// The global risk, per-region risks and recommendations at the time.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// `none` (no webhook), `delivered` or `failed`.
    pub delivery: String,
    /// Why the delivery failed.
    pub delivery_error: Option<String>,
    /// When it was raised (RFC 3339).
    pub created_at: String,
}

impl From<Alert> for AlertView {
    fn from(a: Alert) -> Self {
        AlertView {
            id: a.id,
            level: a.level,
            kind: a.kind,
            region: a.region,
            message: a.message,
            detail: a.detail,
            delivery: a.delivery,
            delivery_error: a.delivery_error,
            created_at: rfc3339(a.created_at_ms),
        }
    }
}

/// A page of alerts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    /// The alerts, newest first.
    pub items: Vec<AlertView>,
    /// Cursor of the next page, `null` at the end.
    pub next_cursor: Option<String>,
}

impl From<Listed<Alert>> for AlertPage {
    fn from(l: Listed<Alert>) -> Self {
        AlertPage {
            items: l.items.into_iter().map(AlertView::from).collect(),
            next_cursor: l.next_cursor,
        }
    }
}

/// The alerts the region monitor raised (every 5 minutes on the leader: a
/// critical conflict or global risk, once per condition per hour), newest
/// first.
#[utoipa::path(get, path = "/alerts", tag = "regions",
    params(("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "A page of alerts.", body = AlertPage), (status = 400), (status = 401), (status = 422))
)]
async fn list_alerts(
    State(s): State<AppState>,
    _who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<AlertPage>> {
    Ok(Json(s.engine.store.list_alerts(&q.page()?).await?.into()))
}
