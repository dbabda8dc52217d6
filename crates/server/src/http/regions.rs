//! Regions (`/regions`): created with their first monthly AI budget.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::Violations;
use fleetscale_store::now_ms;

use super::budgets::cents;
use super::common::{created, ApiResult, ListQuery};
use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::AppState;

/// The region routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_region, list_regions))
        .routes(routes!(get_region))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionBody {
    name: String,
    jurisdiction: String,
    #[serde(default)]
    monthly_budget_cents: Value,
}

/// Create a region (global admin) with its first monthly AI budget:
/// `monthly_budget_cents`, or the server's default (phase 92: 100000 cents;
/// `serve --region-default-budget-cents`), recorded as an `allocation` ledger
/// entry; 0 allocates nothing. The answer's `monthly_budget_cents` is what
/// was allocated; if the region was created but the allocation failed, it
/// is 0 and `initial_budget_error` says why and how to allocate it.
#[utoipa::path(post, path = "/regions", tag = "regions",
    request_body(content = Object, content_type = "application/json", example = json!({"name": "eu-west", "jurisdiction": "eu", "monthly_budget_cents": 250000})),
    responses((status = 201, description = "The region, with its id.", body = Object), (status = 400), (status = 401), (status = 403), (status = 409), (status = 422))
)]
async fn create_region(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<RegionBody>,
) -> ApiResult<impl IntoResponse> {
    who.require_global_admin()?;
    let mut v = Violations::default();
    v.check_name("name", &b.name);
    v.check_name("jurisdiction", &b.jurisdiction);
    let budget = match &b.monthly_budget_cents {
        Value::Null => s.region_default_budget_cents,
        raw => cents(&mut v, "monthly_budget_cents", raw, true),
    };
    v.into_result(())?;
    let region = s
        .engine
        .store
        .create_region(&b.name, &b.jurisdiction, &who.name)
        .await?;
    let mut out = serde_json::to_value(&region).map_err(|e| ApiError::Internal(Box::new(e)))?;
    out["monthly_budget_cents"] = json!(0);
    if budget > 0 {
        // A task of its own: a client that hangs up cannot cancel it halfway.
        let (budgets, rid, actor) = (
            s.engine.budgets.clone(),
            region.id.clone(),
            who.name.clone(),
        );
        let allocated = tokio::spawn(async move {
            budgets
                .allocate_initial(&rid, budget, &actor, now_ms())
                .await
        })
        .await;
        let failed = match allocated {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        match failed {
            None => out["monthly_budget_cents"] = json!(budget),
            // The region exists either way (201); the answer says what is
            // missing and how to add it.
            Some(cause) => {
                tracing::error!(region = %region.id, error = %cause, "initial region budget not allocated");
                out["initial_budget_error"] = json!(format!(
                    "the initial budget of {budget} cents was not allocated ({cause}); allocate it with POST /api/v1/regions/{}/budget/allocate",
                    region.id
                ));
            }
        }
    }
    Ok(created(out))
}

/// List the regions.
#[utoipa::path(get, path = "/regions", tag = "regions",
    params(("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "`{items, next_cursor}`.", body = Object), (status = 401), (status = 422))
)]
async fn list_regions(
    State(s): State<AppState>,
    _who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.engine.store.list_regions(&q.page()?).await?))
}

/// One region, by id or name.
#[utoipa::path(get, path = "/regions/{id}", tag = "regions",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The region.", body = Object), (status = 401), (status = 404))
)]
async fn get_region(
    State(s): State<AppState>,
    _who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.engine.store.get_region(&id).await?))
}
