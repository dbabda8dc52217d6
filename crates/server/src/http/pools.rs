//! Pools (`/pools`): their settings, safety lock, dry-run plan and
//! policies, and the evaluation of a policy spec on supplied inputs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::decision::{decide_all, validate_observation, PoolPolicies};
use fleetscale_core::{decide, NewPool, Observation, PolicySpec, PoolPatch, Violations};
use fleetscale_store::{now_ms, rfc3339, Pool};

use super::common::{created, visible_pool, ApiResult, ListQuery};
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::AppState;

/// The pool and policy routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_pool, list_pools))
        .routes(routes!(get_pool, patch_pool, delete_pool))
        .routes(routes!(plan_pool))
        .routes(routes!(get_policies, put_policies, delete_policies))
        .routes(routes!(evaluate_policies))
        .routes(routes!(set_lock))
}

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

/// The observation of one pool now, as the control loop would see it.
async fn observation(s: &AppState, pool: &Pool, now: i64) -> ApiResult<Observation> {
    let stats = s
        .engine
        .store
        .window_stats(Some(&pool.tenant_id), now)
        .await?;
    let mut obs = Observation {
        capacity_per_instance: pool.capacity_per_instance,
        load: stats.get(&pool.id).copied(),
        last_scaled_at_ms: pool.last_scaled_at_ms,
        safety_lock: pool.safety_lock,
        ..Observation::new(now, pool.bounds())
    };
    if let Some(spec) = &pool.policies {
        fleetscale_engine::control::enrich(&s.engine, pool, spec, &mut obs).await?;
    }
    Ok(obs)
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
    let obs = observation(&s, &pool, now).await?;
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
