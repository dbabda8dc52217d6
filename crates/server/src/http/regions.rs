//! Regions (`/regions`): created with their first monthly AI budget.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::Violations;
use fleetscale_store::{now_ms, Region};

use super::budgets::cents;
use super::common::{created, ApiResult, Created, ListQuery};
use super::views::{RegionPage, RegionView};
use crate::auth::Principal;
use crate::error::{ApiJson, ApiQuery};
use crate::AppState;

/// The region routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_region, list_regions))
        .routes(routes!(get_region))
}

/// The body of `POST /regions`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionBody {
    /// Unique name, e.g. `eu-west`.
    pub name: String,
    /// Jurisdiction, e.g. `eu`.
    pub jurisdiction: String,
    /// The first monthly AI budget, whole cents (0: none); the server's
    /// default when omitted. Read as JSON so that each way it can be wrong
    /// has its own message.
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub monthly_budget_cents: Value,
}

/// A new region and the monthly budget it was given.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewRegionView {
    /// Id (UUIDv7).
    pub id: String,
    /// Unique name, e.g. `eu-west`.
    pub name: String,
    /// Jurisdiction, e.g. `eu`.
    pub jurisdiction: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// The monthly budget allocated, cents (0 when none was, or when the
    /// allocation failed).
    pub monthly_budget_cents: i64,
    /// Present only when the allocation failed: why, and how to allocate it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_budget_error: Option<String>,
}

impl NewRegionView {
    fn new(region: Region, monthly_budget_cents: i64, error: Option<String>) -> Self {
        let RegionView {
            id,
            name,
            jurisdiction,
            created_at,
        } = region.into();
        NewRegionView {
            id,
            name,
            jurisdiction,
            created_at,
            monthly_budget_cents,
            initial_budget_error: error,
        }
    }
}

/// Create a region (global admin) with its first monthly AI budget:
/// `monthly_budget_cents`, or the server's default (100000 cents;
/// `serve --region-default-budget-cents`), recorded as an `allocation` ledger
/// entry; 0 allocates nothing. The answer's `monthly_budget_cents` is what
/// was allocated; if the region was created but the allocation failed, it
/// is 0 and `initial_budget_error` says why and how to allocate it.
#[utoipa::path(post, path = "/regions", tag = "regions",
    request_body(content = RegionBody, content_type = "application/json", example = json!({"name": "eu-west", "jurisdiction": "eu", "monthly_budget_cents": 250000})),
    responses((status = 201, description = "The region, with its id and the budget allocated.", body = NewRegionView), (status = 400), (status = 401), (status = 403), (status = 409), (status = 422))
)]
async fn create_region(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<RegionBody>,
) -> ApiResult<Created<NewRegionView>> {
    who.require_global_admin()?;
    let mut v = Violations::default();
    v.check_name("name", &b.name);
    v.check_name("jurisdiction", &b.jurisdiction);
    let budget = match &b.monthly_budget_cents {
        Value::Null => s.region_default_budget_cents,
        raw => cents(&mut v, "monthly_budget_cents", raw, true),
    };
    v.into_result(())?;
    let store = &s.engine.store;
    let region = store
        .create_region(&b.name, &b.jurisdiction, &who.name)
        .await?;
    let error = allocate_initial(&s, &region.id, budget, &who.name).await;
    let allocated = if error.is_some() { 0 } else { budget };
    Ok(created(NewRegionView::new(region, allocated, error)))
}

/// Allocates a new region's first budget (nothing for 0 cents); `None` when
/// done, or why it failed and how to allocate it by hand. The region exists
/// either way (201): the answer says what is missing.
async fn allocate_initial(s: &AppState, region: &str, cents: i64, actor: &str) -> Option<String> {
    if cents <= 0 {
        return None;
    }
    // A task of its own: a client that hangs up cannot cancel it halfway.
    let (budgets, rid, actor) = (
        s.engine.budgets.clone(),
        region.to_owned(),
        actor.to_owned(),
    );
    let allocated = tokio::spawn(async move {
        budgets
            .allocate_initial(&rid, cents, &actor, now_ms())
            .await
    })
    .await;
    let cause = match allocated {
        Ok(Ok(_)) => return None,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::error!(region = %region, error = %cause, "initial region budget not allocated");
    Some(format!(
        "the initial budget of {cents} cents was not allocated ({cause}); allocate it with POST /api/v1/regions/{region}/budget/allocate"
    ))
}

/// List the regions.
#[utoipa::path(get, path = "/regions", tag = "regions",
    params(("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "A page of regions.", body = RegionPage), (status = 401), (status = 422))
)]
async fn list_regions(
    State(s): State<AppState>,
    _who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<RegionPage>> {
    Ok(Json(s.engine.store.list_regions(&q.page()?).await?.into()))
}

/// One region, by id or name.
#[utoipa::path(get, path = "/regions/{id}", tag = "regions",
    params(("id" = String, Path, description = "The object's id or name")),
    responses((status = 200, description = "The region.", body = RegionView), (status = 401), (status = 404))
)]
async fn get_region(
    State(s): State<AppState>,
    _who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<RegionView>> {
    Ok(Json(s.engine.store.get_region(&id).await?.into()))
}
