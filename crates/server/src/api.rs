//! The REST API under `/api/v1`: thin handlers that extract, check the
//! caller's scope, call the core or the store, and answer.

use std::collections::HashSet;
use std::time::Instant;

use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::capacity::{self, Status, StatusThresholds};
use fleetscale_core::decision::{decide_all, validate_observation, PoolPolicies};
use fleetscale_core::policy::utilization_pct;
use fleetscale_core::pool::MAX_CAPACITY_LIMIT;
use fleetscale_core::rebalance::{self, RebalancePool, Strategy};
use fleetscale_core::{
    decide, ActuationStatus, NewPool, Observation, PolicySpec, PoolPatch, ProposalStatus,
    TriggerSource, Violations,
};
use fleetscale_store::{now_ms, rfc3339, Listed, Page, Pool, Sample, ScaleRequest};

use crate::auth::{generate_token, hash_token, Principal, Role};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::AppState;
use fleetscale_engine::metrics::{HttpLabels, SourceLabel};

/// Most samples accepted in one `POST /api/v1/metrics` batch.
pub const MAX_SAMPLES_PER_BATCH: usize = 10_000;

/// How far in the future a sample timestamp may lie (clock skew), ms.
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

type ApiResult<T> = Result<T, ApiError>;

/// The OpenAPI document's frame: info, the bearer scheme, shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "fleetscale",
        description = "Autonomous scaling and global load balancing for fleets of AI agents. Every endpoint takes `Authorization: Bearer <token>`; errors are RFC 9457 `application/problem+json`; lists answer `{items, next_cursor}`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(crate::error::Problem, crate::error::FieldProblem))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The REST API (relative to `/api/v1`) and its OpenAPI document, built
/// from the same handler declarations so the two cannot drift.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let api = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant))
        .routes(routes!(create_region, list_regions))
        .routes(routes!(get_region))
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(create_pool, list_pools))
        .routes(routes!(get_pool, patch_pool, delete_pool))
        .routes(routes!(plan_pool))
        .routes(routes!(get_policies, put_policies, delete_policies))
        .routes(routes!(evaluate_policies))
        .routes(routes!(set_lock))
        .routes(routes!(scale))
        .routes(routes!(capacity))
        .routes(routes!(list_events))
        .routes(routes!(get_event))
        .routes(routes!(rebalance))
        .routes(routes!(ingest))
        .routes(routes!(list_proposals))
        .routes(routes!(get_proposal))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(list_audit))
        .routes(routes!(engine_status))
        .merge(crate::budget_api::routes())
        .merge(crate::tenant_budget_api::routes());
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", api)
        .split_for_parts();
    describe_errors(&mut doc);
    (router, doc)
}

/// Error statuses an operation lists as bare `(status = N)`, described once.
const ERROR_RESPONSES: [(&str, &str); 6] = [
    ("400", "Malformed JSON or query"),
    ("401", "Missing or unknown bearer token"),
    ("403", "The token's role does not allow this"),
    ("404", "Not found, or not visible to this token"),
    ("409", "Conflicts with the current state (see `code`)"),
    (
        "422",
        "Fields break validation rules (`errors` names each field and rule)",
    ),
];

/// Gives every listed error status of every operation its description and
/// the `application/problem+json` body every error answers with.
fn describe_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in ops.into_iter().flatten() {
            for (status, description) in ERROR_RESPONSES {
                if let Some(r) = op.responses.responses.get_mut(status) {
                    *r = RefOr::T(
                        ResponseBuilder::new()
                            .description(description)
                            .content(
                                "application/problem+json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("Problem")))
                                    .build(),
                            )
                            .build(),
                    );
                }
            }
        }
    }
}

/// Builds the whole HTTP router: the API under `/api/v1` (its OpenAPI
/// document at `/api/v1/openapi.json`, no token needed), `/healthz`,
/// `/readyz` and Prometheus `/metrics`.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api();
    let doc = std::sync::Arc::new(doc);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .merge(api)
        .fallback(|| async { ApiError::NotFound("route".into()) })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::CONTENT_TYPE, "application/problem+json")],
                r#"{"type":"about:blank","title":"Method Not Allowed","status":405,"detail":"method not allowed on this route"}"#,
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(crate::error::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe_http))
        .with_state(state)
}

async fn observe_http(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let res = next.run(req).await;
    let status = res.status().as_u16();
    state
        .engine
        .metrics
        .http_seconds
        .get_or_create(&HttpLabels {
            method,
            route,
            status,
        })
        .observe(started.elapsed().as_secs_f64());
    res
}

async fn readyz(State(s): State<AppState>) -> ApiResult<&'static str> {
    s.engine
        .store
        .ping()
        .await
        .map_err(|_| ApiError::Unavailable("database is not reachable".into()))?;
    if let Some(why) = s.engine.budgets.stopped() {
        return Err(ApiError::Unavailable(why.into()));
    }
    if let Some(why) = s.supervisor.unready() {
        return Err(ApiError::Unavailable(why));
    }
    Ok("ready")
}

async fn prometheus(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.engine.metrics.encode(),
    )
}

// ---- query parameters -----------------------------------------------------------

/// Common list parameters; any other parameter is a 400 naming it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    tenant_id: Option<String>,
    pool_id: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

impl ListQuery {
    /// The `status` filter as a proposal status; anything else is a 400
    /// naming the parameter and the values allowed.
    pub fn proposal_status(&self) -> ApiResult<Option<ProposalStatus>> {
        self.status
            .as_deref()
            .map(str::parse::<ProposalStatus>)
            .transpose()
            .map_err(|e| ApiError::BadRequest(format!("bad query parameter: status: {e}")))
    }

    /// The page these parameters ask for (limit 1..=1000).
    pub fn page(&self) -> ApiResult<Page> {
        let limit = match self.limit {
            None => None,
            Some(l) if (1..=1000).contains(&l) => Some(l as u32),
            Some(_) => return Err(ApiError::field("limit", "must be between 1 and 1000")),
        };
        Ok(Page {
            limit,
            cursor: self.cursor.clone().filter(|c| !c.is_empty()),
        })
    }
}

fn created<T: Serialize>(v: T) -> (StatusCode, Json<T>) {
    (StatusCode::CREATED, Json(v))
}

// ---- tenants, regions, tokens -----------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

/// Create a tenant (global admin).
#[utoipa::path(post, path = "/tenants", tag = "tenants",
    request_body(content = Object, content_type = "application/json", example = json!({"name": "acme"})),
    responses((status = 201, description = "The tenant, with its id.", body = Object), (status = 400), (status = 401), (status = 403), (status = 409), (status = 422))
)]
async fn create_tenant(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<NameBody>,
) -> ApiResult<impl IntoResponse> {
    who.require_global_admin()?;
    let mut v = Violations::default();
    v.check_text("name", &b.name, 128);
    v.into_result(())?;
    Ok(created(
        s.engine
            .store
            .create_tenant(b.name.trim(), &who.name)
            .await?,
    ))
}

/// List the tenants visible to the token.
#[utoipa::path(get, path = "/tenants", tag = "tenants",
    params(("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "`{items, next_cursor}`.", body = Object), (status = 401), (status = 422))
)]
async fn list_tenants(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    let only = who.tenant_filter(q.tenant_id.as_deref())?;
    Ok(Json(
        s.engine
            .store
            .list_tenants(only.as_deref(), &q.page()?)
            .await?,
    ))
}

/// One tenant.
#[utoipa::path(get, path = "/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The tenant.", body = Object), (status = 401), (status = 404))
)]
async fn get_tenant(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    who.see(&id, "tenant")?;
    Ok(Json(s.engine.store.get_tenant(&id).await?))
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
        raw => crate::budget_api::cents(&mut v, "monthly_budget_cents", raw, true),
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    tenant_id: Option<String>,
    role: String,
    name: String,
}

/// Issue a tenant-scoped token (admin); the token is shown once.
#[utoipa::path(post, path = "/tokens", tag = "tokens",
    request_body(content = Object, content_type = "application/json", example = json!({"tenant_id": "TENANT_ID", "role": "operator", "name": "ci"})),
    responses((status = 201, description = "The token (shown once) and its metadata.", body = Object), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn create_token(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<TokenBody>,
) -> ApiResult<impl IntoResponse> {
    who.require(Role::Admin)?;
    let mut v = Violations::default();
    v.check_text("name", &b.name, 128);
    let role = Role::parse(&b.role);
    if role.is_none() {
        v.push("role", "must be one of admin, operator, viewer");
    }
    if b.tenant_id.is_none() && !who.is_global_admin() {
        v.push("tenant_id", "is required for a tenant admin");
    }
    if b.tenant_id.is_none() && role != Some(Role::Admin) {
        v.push(
            "tenant_id",
            "is required unless the role is admin (a global admin token)",
        );
    }
    v.into_result(())?;
    if let Some(t) = &b.tenant_id {
        who.see(t, "tenant")?;
        s.engine.store.get_tenant(t).await?;
    }
    let token = generate_token();
    let grant = s
        .engine
        .store
        .insert_token(
            &hash_token(&token),
            b.tenant_id.as_deref(),
            &b.role,
            &b.name,
            &who.name,
        )
        .await?;
    Ok(created(json!({
        "id": grant.id, "token": token, "tenant_id": grant.tenant_id, "role": grant.role, "name": grant.name,
    })))
}

/// List the stored tokens the caller administers (never the tokens
/// themselves): all for the global admin (`tenant_id` narrows), the tenant's
/// own for a tenant admin.
#[utoipa::path(get, path = "/tokens", tag = "tokens",
    params(("tenant_id" = Option<String>, Query, description = "Only this tenant's tokens"), ("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "`{items: [{id, tenant_id, role, name, created_at}], next_cursor}`.", body = Object), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn list_tokens(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    who.require(Role::Admin)?;
    let only = who.tenant_filter(q.tenant_id.as_deref())?;
    Ok(Json(
        s.engine
            .store
            .list_tokens(only.as_deref(), &q.page()?)
            .await?,
    ))
}

/// Revoke a stored token (audited). It stops working at once on this
/// replica and within 5 s on the others. The last global admin token is
/// kept (409 `last_admin_token`) unless `FLEETSCALE_ADMIN_TOKEN` is set.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "The token's id")),
    responses((status = 204, description = "Revoked."), (status = 401), (status = 403), (status = 404), (status = 409))
)]
async fn revoke_token(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    who.require(Role::Admin)?;
    let token = s.engine.store.get_token(&id).await?;
    match &token.tenant_id {
        Some(t) => who.see(t, "token")?,
        // A tenant admin does not see global tokens.
        None if !who.is_global_admin() => return Err(ApiError::NotFound("token".into())),
        None => {}
    }
    let hash = s
        .engine
        .store
        .revoke_token(&id, &who.name, s.admin_token_hash.is_none())
        .await
        .map_err(|e| match e {
            fleetscale_store::StoreError::Conflict { what } => ApiError::Conflict {
                code: "last_admin_token",
                detail: what,
            },
            other => other.into(),
        })?;
    s.tokens.forget(&hash, std::time::Instant::now());
    Ok(StatusCode::NO_CONTENT)
}

// ---- pools ----------------------------------------------------------------------

async fn visible_pool(s: &AppState, who: &Principal, id: &str) -> ApiResult<Pool> {
    let p = s.engine.store.get_pool(id).await?;
    who.see(&p.tenant_id, "pool")?;
    Ok(p)
}

/// Create an agent pool.
#[utoipa::path(post, path = "/pools", tag = "pools",
    request_body(content = Object, content_type = "application/json", example = json!({"tenant_id": "TENANT_ID", "region": "eu-west", "agent_type": "writer", "min_capacity": 1, "max_capacity": 10, "desired_capacity": 2, "capacity_per_instance": 10, "metric": "throughput", "mode": "autonomous", "scaling_policy": {"scale_up_threshold": 80, "scale_down_threshold": 30, "cooldown_seconds": 300, "increment": 1}})),
    responses((status = 201, description = "The pool, with its id.", body = Object), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422))
)]
async fn create_pool(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<NewPool>,
) -> ApiResult<impl IntoResponse> {
    who.require(Role::Admin)?;
    let valid = b.validate()?;
    who.see(&valid.tenant_id, "tenant")?;
    s.engine.store.get_tenant(&valid.tenant_id).await?;
    if s.engine.store.get_region(&valid.region).await.is_err() {
        return Err(ApiError::field("region", "must name an existing region"));
    }
    Ok(created(
        s.engine.store.create_pool(&valid, &who.name).await?,
    ))
}

/// List pools.
#[utoipa::path(get, path = "/pools", tag = "pools",
    params(("tenant_id" = Option<String>, Query, description = "Only this tenant"), ("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "`{items, next_cursor}`.", body = Object), (status = 401), (status = 422))
)]
async fn list_pools(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    let tenant = who.tenant_filter(q.tenant_id.as_deref())?;
    Ok(Json(
        s.engine
            .store
            .list_pools(tenant.as_deref(), &q.page()?)
            .await?,
    ))
}

/// One pool.
#[utoipa::path(get, path = "/pools/{id}", tag = "pools",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The pool.", body = Object), (status = 401), (status = 404))
)]
async fn get_pool(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(visible_pool(&s, &who, &id).await?))
}

/// Change a pool's bounds, mode or policy (audited).
#[utoipa::path(patch, path = "/pools/{id}", tag = "pools",
    params(("id" = String, Path, description = "The object's id")),
    request_body(content = Object, content_type = "application/json", example = json!({"max_capacity": 20, "mode": "recommend"})),
    responses((status = 200, description = "The pool after the change.", body = Object), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn patch_pool(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<PoolPatch>,
) -> ApiResult<impl IntoResponse> {
    who.require(Role::Admin)?;
    let pool = visible_pool(&s, &who, &id).await?;
    let valid = b.apply(&pool.to_valid())?;
    Ok(Json(
        s.engine.store.update_pool(&id, &valid, &who.name).await?,
    ))
}

/// Delete a pool (audited).
#[utoipa::path(delete, path = "/pools/{id}", tag = "pools",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 204, description = "Deleted."), (status = 401), (status = 403), (status = 404))
)]
async fn delete_pool(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    who.require(Role::Admin)?;
    visible_pool(&s, &who, &id).await?;
    s.engine.store.delete_pool(&id, &who.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockBody {
    locked: bool,
}

/// Set or clear the pool's safety lock (audited).
#[utoipa::path(put, path = "/pools/{id}/safety-lock", tag = "pools",
    params(("id" = String, Path, description = "The object's id")),
    request_body(content = Object, content_type = "application/json", example = json!({"locked": true})),
    responses((status = 200, description = "The pool.", body = Object), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn set_lock(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<LockBody>,
) -> ApiResult<impl IntoResponse> {
    who.require(Role::Admin)?;
    visible_pool(&s, &who, &id).await?;
    Ok(Json(
        s.engine
            .store
            .set_safety_lock(&id, b.locked, &who.name)
            .await?,
    ))
}

/// Dry run: what the engine would decide now, and why.
#[utoipa::path(post, path = "/pools/{id}/plan", tag = "pools",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "current, target, should_scale, reason, inputs (and the combined decision for pool policies).", body = Object), (status = 401), (status = 404))
)]
async fn plan_pool(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let pool = visible_pool(&s, &who, &id).await?;
    let now = now_ms();
    let obs = fleetscale_engine::control::observe_pool(&s.engine, &pool, now).await?;
    let (d, combined) = match &pool.policies {
        Some(spec) => {
            let c = decide_all(spec, &obs);
            (c.to_decision(), Some(c))
        }
        None => (
            decide(&PolicySpec::Threshold(pool.scaling_policy), &obs),
            None,
        ),
    };
    Ok(Json(json!({
        "pool_id": pool.id,
        "mode": pool.mode,
        "safety_lock": pool.safety_lock,
        "current_capacity": d.current,
        "target_capacity": d.target,
        "should_scale": d.should_scale(),
        "action": d.action,
        "reason": d.reason,
        "policy": d.policy,
        "confidence": d.confidence,
        "inputs": d.inputs,
        "combined": combined,
        "observation": obs,
        "evaluated_at": rfc3339(now),
    })))
}

/// A pool's effective policies: its combined policies, or its threshold policy alone.
fn effective_policies(pool: &Pool) -> PoolPolicies {
    pool.policies
        .clone()
        .unwrap_or_else(|| PoolPolicies::single(PolicySpec::Threshold(pool.scaling_policy)))
}

/// The pool's policies (its combined policies, or its threshold policy).
#[utoipa::path(get, path = "/pools/{id}/policies", tag = "policies",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "`{source, policies}`.", body = Object), (status = 401), (status = 404))
)]
async fn get_policies(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let pool = visible_pool(&s, &who, &id).await?;
    Ok(Json(json!({
        "pool_id": pool.id,
        "source": if pool.policies.is_some() { "policies" } else { "scaling_policy" },
        "policies": effective_policies(&pool),
    })))
}

/// Set the pool's combined policies (validated, audited).
#[utoipa::path(put, path = "/pools/{id}/policies", tag = "policies",
    params(("id" = String, Path, description = "The object's id")),
    request_body(content = Object, content_type = "application/json", example = json!({"policies": [{"type": "queue", "messages_per_instance": 10}]})),
    responses((status = 200, description = "The pool with its policies.", body = Object), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn put_policies(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<PoolPolicies>,
) -> ApiResult<impl IntoResponse> {
    who.require(Role::Admin)?;
    visible_pool(&s, &who, &id).await?;
    spec.validate()?;
    Ok(Json(
        s.engine
            .store
            .set_pool_policies(&id, Some(&spec), &who.name)
            .await?,
    ))
}

/// Return the pool to its threshold policy (audited).
#[utoipa::path(delete, path = "/pools/{id}/policies", tag = "policies",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The pool.", body = Object), (status = 401), (status = 403), (status = 404))
)]
async fn delete_policies(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    who.require(Role::Admin)?;
    visible_pool(&s, &who, &id).await?;
    Ok(Json(
        s.engine
            .store
            .set_pool_policies(&id, None, &who.name)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateBody {
    spec: PoolPolicies,
    observation: Observation,
}

/// Evaluate a policy spec on supplied inputs, touching no pool.
#[utoipa::path(post, path = "/policies/evaluate", tag = "policies",
    request_body(content = Object, content_type = "application/json", example = json!({"spec": {"policies": [{"type": "queue", "messages_per_instance": 10}]}, "observation": {"now_ms": 1_700_000_000_000_i64, "capacity_per_instance": 10, "bounds": {"min": 1, "max": 10, "desired": 2}, "queue": {"backlog": 35, "observed_at_ms": 1_700_000_000_000_i64}}})),
    responses((status = 200, description = "The combined decision.", body = Object), (status = 400), (status = 401), (status = 422))
)]
async fn evaluate_policies(
    _who: Principal,
    ApiJson(b): ApiJson<EvaluateBody>,
) -> ApiResult<impl IntoResponse> {
    let mut v = Violations::default();
    for (prefix, res) in [
        ("spec", b.spec.validate()),
        ("observation", validate_observation(&b.observation)),
    ] {
        if let Err(e) = res {
            for f in e.0 {
                v.push(format!("{prefix}.{}", f.field), f.rule);
            }
        }
    }
    v.into_result(())?;
    let c = decide_all(&b.spec, &b.observation);
    Ok(Json(json!({
        "action": c.action,
        "current_capacity": c.current,
        "target_capacity": c.target,
        "should_scale": c.target != c.current,
        "confidence": c.confidence,
        "reasons": c.reasons,
        "policies": c.policies,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    tenant_id: String,
    pool_id: String,
    capacity: i64,
    reason: String,
}

/// Set a pool's capacity by hand (clamped to its bounds, audited, actuated).
#[utoipa::path(post, path = "/scale", tag = "scaling",
    request_body(content = Object, content_type = "application/json", example = json!({"tenant_id": "TENANT_ID", "pool_id": "POOL_ID", "capacity": 5, "reason": "launch"})),
    responses((status = 200, description = "The scaling event.", body = Object), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422))
)]
async fn scale(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<ScaleBody>,
) -> ApiResult<impl IntoResponse> {
    who.require(Role::Operator)?;
    let mut v = Violations::default();
    v.check_i64("capacity", b.capacity, 0, MAX_CAPACITY_LIMIT);
    v.check_text("reason", &b.reason, 500);
    v.into_result(())?;
    who.see(&b.tenant_id, "pool")?;
    let pool = visible_pool(&s, &who, &b.pool_id).await?;
    if pool.tenant_id != b.tenant_id {
        return Err(ApiError::NotFound("pool".into()));
    }
    let out = s
        .engine
        .store
        .scale(&ScaleRequest {
            pool_id: pool.id.clone(),
            capacity: b.capacity,
            reason: b.reason.clone(),
            trigger_source: TriggerSource::Manual,
            metadata: json!({}),
            actor: who.name.clone(),
            expect_desired: None,
            respect_safety_lock: false,
            actuation_status: actuation_status(&s),
            fence: None,
            now_ms: now_ms(),
        })
        .await?;
    if out.event.is_some() {
        s.engine
            .metrics
            .scalings
            .get_or_create(&SourceLabel {
                trigger_source: TriggerSource::Manual.as_str().into(),
            })
            .inc();
    }
    Ok(Json(json!({
        "pool": out.pool,
        "event": out.event,
        "requested_capacity": b.capacity,
        "clamped": out.pool.desired_capacity != b.capacity,
    })))
}

fn actuation_status(s: &AppState) -> ActuationStatus {
    ActuationStatus::initial(s.engine.actuator.is_active())
}

/// Parameters of the capacity assessment.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapacityQuery {
    tenant_id: Option<String>,
    under_pct: Option<f64>,
    over_pct: Option<f64>,
}

impl CapacityQuery {
    /// The status thresholds asked for (seed defaults 30 / 80 for those
    /// not given): finite, `0 <= under_pct < over_pct`.
    fn thresholds(&self) -> ApiResult<StatusThresholds> {
        let d = StatusThresholds::default();
        let t = StatusThresholds {
            under_pct: self.under_pct.unwrap_or(d.under_pct),
            over_pct: self.over_pct.unwrap_or(d.over_pct),
        };
        let mut v = Violations::default();
        if !t.under_pct.is_finite() || t.under_pct < 0.0 {
            v.push("under_pct", "must be a number >= 0");
        }
        if !t.over_pct.is_finite() {
            v.push("over_pct", "must be a number");
        } else if t.over_pct <= t.under_pct {
            // Name the parameter the caller gave (over_pct when both).
            if self.over_pct.is_some() {
                v.push(
                    "over_pct",
                    format!("must be above under_pct ({})", t.under_pct),
                );
            } else {
                v.push(
                    "under_pct",
                    format!("must be below over_pct ({})", t.over_pct),
                );
            }
        }
        Ok(v.into_result(t)?)
    }
}

/// Capacity assessment of a tenant's pools: utilization and status per pool
/// (`under` below `under_pct`, `over` above `over_pct`; seed 30 / 80).
#[utoipa::path(get, path = "/capacity", tag = "scaling",
    params(("tenant_id" = Option<String>, Query, description = "Only this tenant"), ("under_pct" = Option<f64>, Query, description = "Utilization % below which a pool is under-used (default 30)"), ("over_pct" = Option<f64>, Query, description = "Utilization % above which a pool is over-loaded (default 80)")),
    responses((status = 200, description = "Per pool and overall status.", body = Object), (status = 401), (status = 404), (status = 422))
)]
async fn capacity(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<CapacityQuery>,
) -> ApiResult<impl IntoResponse> {
    let t = q.thresholds()?;
    let tenant = who.tenant_filter(q.tenant_id.as_deref())?;
    if let Some(t) = &tenant {
        s.engine.store.get_tenant(t).await?;
    }
    let now = now_ms();
    let pools = s.engine.store.all_pools(tenant.as_deref()).await?;
    let stats = s.engine.store.window_stats(tenant.as_deref(), now).await?;
    let mut statuses = Vec::with_capacity(pools.len());
    let items: Vec<Value> = pools
        .iter()
        .map(|p| {
            let fresh = stats
                .get(&p.id)
                .filter(|w| now - w.newest_ts_ms <= p.scaling_policy.window_seconds * 1000);
            let util = fresh
                .and_then(|w| utilization_pct(w.mean, p.desired_capacity, p.capacity_per_instance));
            let st = if fresh.is_some() && util.is_none() {
                Status::Over
            } else {
                capacity::status(util, t)
            };
            statuses.push(st);
            json!({
                "pool_id": p.id, "region": p.region, "agent_type": p.agent_type,
                "current": p.desired_capacity, "min": p.min_capacity, "max": p.max_capacity,
                "utilization": util, "status": st, "mean_load": fresh.map(|w| w.mean),
            })
        })
        .collect();
    Ok(Json(json!({
        "tenant_id": tenant,
        "pools": items,
        "overall_health": capacity::overall_health(&statuses),
        "thresholds": t,
        "evaluated_at": rfc3339(now),
    })))
}

/// List scaling events.
#[utoipa::path(get, path = "/scaling-events", tag = "scaling",
    params(("pool_id" = Option<String>, Query, description = "Only this pool"), ("tenant_id" = Option<String>, Query, description = "Only this tenant"), ("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "`{items, next_cursor}`; each event has previous_capacity, new_capacity, reason, trigger_source, metadata, created_at.", body = Object), (status = 401), (status = 422))
)]
async fn list_events(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    let tenant = who.tenant_filter(q.tenant_id.as_deref())?;
    if let Some(p) = &q.pool_id {
        visible_pool(&s, &who, p).await?;
    }
    Ok(Json(
        s.engine
            .store
            .list_events(q.pool_id.as_deref(), tenant.as_deref(), &q.page()?)
            .await?,
    ))
}

/// One scaling event, with its actuation outcome.
#[utoipa::path(get, path = "/scaling-events/{id}", tag = "scaling",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The event.", body = Object), (status = 401), (status = 404))
)]
async fn get_event(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let ev = s.engine.store.get_event(&id).await?;
    who.see(&ev.tenant_id, "scaling event")?;
    Ok(Json(ev))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebalanceBody {
    tenant_id: String,
    strategy: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// Rebalance a tenant's capacity across its pools (demand-proportional, or even).
#[utoipa::path(post, path = "/rebalance", tag = "scaling",
    request_body(content = Object, content_type = "application/json", example = json!({"tenant_id": "TENANT_ID", "strategy": "proportional"})),
    responses((status = 200, description = "The plan and the changes applied.", body = Object), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn rebalance(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<RebalanceBody>,
) -> ApiResult<impl IntoResponse> {
    who.require(Role::Operator)?;
    let strategy = match b.strategy.as_deref() {
        None | Some("proportional") => Strategy::Proportional,
        Some("even") => Strategy::Even,
        Some(_) => {
            return Err(ApiError::field(
                "strategy",
                "must be one of proportional, even",
            ))
        }
    };
    who.see(&b.tenant_id, "tenant")?;
    s.engine.store.get_tenant(&b.tenant_id).await?;
    let now = now_ms();
    let pools = s.engine.store.all_pools(Some(&b.tenant_id)).await?;
    let stats = s.engine.store.window_stats(Some(&b.tenant_id), now).await?;
    let input: Vec<RebalancePool> = pools
        .iter()
        .map(|p| RebalancePool {
            id: p.id.clone(),
            agent_type: p.agent_type.clone(),
            min: p.min_capacity,
            max: p.max_capacity,
            desired: p.desired_capacity,
            demand: stats.get(&p.id).map(|w| w.mean / p.capacity_per_instance),
        })
        .collect();
    let moves = rebalance::plan(&input, strategy);
    let mut actions = Vec::new();
    let mut applied = 0;
    for m in &moves {
        let p = pools
            .iter()
            .find(|p| p.id == m.pool_id)
            .ok_or_else(|| ApiError::NotFound("pool".into()))?;
        actions.push(format!(
            "{}/{}: {} → {}",
            p.region, p.agent_type, m.from, m.to
        ));
        if b.dry_run {
            continue;
        }
        let out = s
            .engine
            .store
            .scale(&ScaleRequest {
                pool_id: m.pool_id.clone(),
                capacity: m.to,
                reason: m.reason.clone(),
                trigger_source: TriggerSource::Rebalance,
                metadata: json!({"strategy": strategy}),
                actor: who.name.clone(),
                expect_desired: Some(m.from),
                respect_safety_lock: true,
                actuation_status: actuation_status(&s),
                fence: None,
                now_ms: now,
            })
            .await?;
        if out.event.is_some() {
            applied += 1;
            s.engine
                .metrics
                .scalings
                .get_or_create(&SourceLabel {
                    trigger_source: TriggerSource::Rebalance.as_str().into(),
                })
                .inc();
        }
    }
    if actions.is_empty() {
        actions.push("No pools to rebalance".into());
    }
    Ok(Json(json!({
        "rebalanced": applied, "actions": actions, "moves": moves, "strategy": strategy, "dry_run": b.dry_run,
    })))
}

// ---- metrics ingestion ------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsBody {
    samples: Vec<SampleIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleIn {
    pool_id: String,
    metric: String,
    value: f64,
    ts: Option<TsIn>,
}

/// A sample's `ts`: Unix milliseconds or RFC 3339 text. Deserialized by
/// hand rather than as an untagged enum, which buffers every value and is
/// the costliest part of parsing a large batch.
enum TsIn {
    Millis(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for TsIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = TsIn;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("RFC 3339 text or whole Unix milliseconds")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<TsIn, E> {
                Ok(TsIn::Millis(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<TsIn, E> {
                i64::try_from(v)
                    .map(TsIn::Millis)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TsIn, E> {
                Ok(TsIn::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses an RFC 3339 timestamp into Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Push metric samples (batch; `ts` defaults to now).
#[utoipa::path(post, path = "/metrics", tag = "metrics",
    request_body(content = Object, content_type = "application/json", example = json!({"samples": [{"pool_id": "POOL_ID", "metric": "throughput", "value": 42.5, "ts": "2026-11-25T12:00:00Z"}]})),
    responses((status = 200, description = "How many samples were stored (durably).", body = Object), (status = 400), (status = 401), (status = 403), (status = 422))
)]
async fn ingest(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<MetricsBody>,
) -> ApiResult<impl IntoResponse> {
    who.require(Role::Operator)?;
    if b.samples.is_empty() {
        return Err(ApiError::field("samples", "must not be empty"));
    }
    if b.samples.len() > MAX_SAMPLES_PER_BATCH {
        return Err(ApiError::field(
            "samples",
            format!("must hold at most {MAX_SAMPLES_PER_BATCH} samples"),
        ));
    }
    let now = now_ms();
    let oldest = now - s.retention_ms;
    let mut v = Violations::default();
    let mut out = Vec::with_capacity(b.samples.len());
    for (i, x) in b.samples.iter().enumerate() {
        if v.0.len() >= 20 {
            break;
        }
        let f = |name: &str| format!("samples[{i}].{name}");
        v.check_name(&f("metric"), &x.metric);
        if !x.value.is_finite() {
            v.push(f("value"), "must be a finite number");
        } else if x.value < 0.0 {
            v.push(f("value"), "must be >= 0");
        }
        let ts = match &x.ts {
            None => Some(now),
            Some(TsIn::Millis(ms)) => Some(*ms),
            Some(TsIn::Text(t)) => parse_rfc3339_ms(t),
        };
        match ts {
            None => v.push(f("ts"), "must be RFC 3339 or Unix milliseconds"),
            Some(t) if t > now + MAX_FUTURE_SKEW_MS => {
                v.push(f("ts"), "must not be more than 5 minutes in the future")
            }
            Some(t) if t < oldest => v.push(f("ts"), "is older than the retention period"),
            Some(t) => out.push(Sample {
                pool_id: x.pool_id.clone(),
                metric: x.metric.clone(),
                ts_ms: t,
                value: x.value,
            }),
        }
    }
    let ids: HashSet<&str> = b.samples.iter().map(|x| x.pool_id.as_str()).collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let owners = s.engine.store.pool_tenants(&ids).await?;
    for (i, x) in b.samples.iter().enumerate() {
        let visible = owners
            .get(&x.pool_id)
            .is_some_and(|t| who.see(t, "pool").is_ok());
        if !visible && v.0.len() < 20 {
            v.push(
                format!("samples[{i}].pool_id"),
                "must name an existing pool",
            );
        }
    }
    v.into_result(())?;
    let accepted = out.len();
    s.ingest
        .submit(out)
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    s.engine.metrics.samples_ingested.inc_by(accepted as u64);
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": accepted }))))
}

// ---- proposals ----------------------------------------------------------------------

/// List scaling proposals of recommend-mode pools.
#[utoipa::path(get, path = "/proposals", tag = "proposals",
    params(("tenant_id" = Option<String>, Query, description = "Only this tenant"), ("pool_id" = Option<String>, Query, description = "Only this pool"), ("status" = Option<String>, Query, description = "Only this status"), ("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "`{items, next_cursor}`.", body = Object), (status = 401), (status = 422))
)]
async fn list_proposals(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    let tenant = who.tenant_filter(q.tenant_id.as_deref())?;
    Ok(Json(
        s.engine
            .store
            .list_proposals(tenant.as_deref(), q.proposal_status()?, &q.page()?)
            .await?,
    ))
}

/// One proposal.
#[utoipa::path(get, path = "/proposals/{id}", tag = "proposals",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The proposal.", body = Object), (status = 401), (status = 404))
)]
async fn get_proposal(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let p = s.engine.store.get_proposal(&id).await?;
    who.see(&p.tenant_id, "proposal")?;
    Ok(Json(p))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SettleBody {
    note: Option<String>,
}

async fn settle_body(req: Request) -> ApiResult<SettleBody> {
    let bytes = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .map_err(|_| ApiError::BadRequest("body too large".into()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(SettleBody::default());
    }
    crate::error::parse_json(&bytes)
}

/// Approve a pending proposal: the change is applied and actuated.
#[utoipa::path(post, path = "/proposals/{id}/approve", tag = "proposals",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The settled proposal and its scaling event.", body = Object), (status = 401), (status = 403), (status = 404), (status = 409))
)]
async fn approve(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<impl IntoResponse> {
    settle(s, who, id, true, settle_body(req).await?).await
}

/// Reject a pending proposal.
#[utoipa::path(post, path = "/proposals/{id}/reject", tag = "proposals",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The settled proposal.", body = Object), (status = 401), (status = 403), (status = 404), (status = 409))
)]
async fn reject(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<impl IntoResponse> {
    settle(s, who, id, false, settle_body(req).await?).await
}

async fn settle(
    s: AppState,
    who: Principal,
    id: String,
    approved: bool,
    b: SettleBody,
) -> ApiResult<Json<Value>> {
    who.require(Role::Operator)?;
    let p = s.engine.store.get_proposal(&id).await?;
    who.see(&p.tenant_id, "proposal")?;
    if p.status != ProposalStatus::Pending {
        return Err(ApiError::Conflict {
            code: "not_pending",
            detail: format!("proposal is {}, not pending", p.status),
        });
    }
    let now = now_ms();
    let mut event = None;
    if approved {
        let out = s
            .engine
            .store
            .scale(&ScaleRequest {
                pool_id: p.pool_id.clone(),
                capacity: p.target_capacity,
                reason: p.reason.clone(),
                trigger_source: TriggerSource::Recommendation,
                metadata: json!({"proposal_id": p.id, "decision": p.decision}),
                actor: who.name.clone(),
                expect_desired: None,
                respect_safety_lock: true,
                actuation_status: actuation_status(&s),
                fence: None,
                now_ms: now,
            })
            .await?;
        if let Some(why) = out.skipped {
            return Err(ApiError::Conflict {
                code: "locked",
                detail: format!("cannot apply: {why}"),
            });
        }
        event = out.event;
    }
    let settled = s
        .engine
        .store
        .settle_proposal(
            &id,
            approved,
            &who.name,
            b.note.as_deref(),
            event.as_ref().map(|e| e.id.as_str()),
            now,
        )
        .await?;
    Ok(Json(json!({"proposal": settled, "event": event})))
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
