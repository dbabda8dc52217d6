//! Pools (`/pools`): their settings, safety lock, dry-run plan and
//! policies, and the evaluation of a policy spec on supplied inputs.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::control::{decide_pool, PoolState};
use fleetscale_core::decision::{decide_all, validate_observation, CombinedDecision, PoolPolicies};
use fleetscale_core::{
    Action, Decision, NewPool, Observation, PolicySpec, PoolPatch, Reason, Violations,
};
use fleetscale_store::{now_ms, rfc3339, Pool};

use super::common::{created, tenant_scope, visible_pool, ApiResult, Created, ListQuery};
use super::core_schemas::{NewPoolSchema, PoolPatchSchema, PoolPoliciesSchema};
use super::views::{PoolPage, PoolView};
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
        .routes(routes!(default_policies))
        .routes(routes!(set_lock))
}

/// Create an agent pool.
#[utoipa::path(post, path = "/pools", tag = "pools",
    request_body(content = NewPoolSchema, content_type = "application/json", example = json!({"tenant_id": "TENANT_ID", "region": "eu-west", "agent_type": "writer", "min_capacity": 1, "max_capacity": 10, "desired_capacity": 2, "capacity_per_instance": 10, "metric": "throughput", "mode": "autonomous", "scaling_policy": {"scale_up_threshold": 80, "scale_down_threshold": 30, "cooldown_seconds": 300, "increment": 1}})),
    responses((status = 201, description = "The pool, with its id.", body = PoolView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422))
)]
async fn create_pool(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<NewPool>,
) -> ApiResult<Created<PoolView>> {
    who.require(Role::Admin)?;
    let valid = b.validate()?;
    check_source_url(&s, &valid)?;
    who.see(&valid.tenant_id, "tenant")?;
    s.engine.store.get_tenant(&valid.tenant_id).await?;
    if s.engine.store.get_region(&valid.region).await.is_err() {
        return Err(ApiError::field("region", "must name an existing region"));
    }
    let mut pool = s.engine.store.create_pool(&valid, &who.name).await?;
    if b.scaling_policy.is_none() {
        // No threshold policy asked for: fleetscale's default (audited).
        let spec = fleetscale_core::decision::default::pool_default(pool.capacity_per_instance);
        pool = s
            .engine
            .store
            .set_pool_policies(&pool.id, Some(&spec), &who.name)
            .await?;
    }
    Ok(created(view(&s, pool)))
}

/// A pool whose `metric_source` names no URL needs the server's default
/// (`serve --prometheus-url`): a 422 naming `metric_source.url` without
/// one, when the source is created or changed (a patch of other fields
/// leaves it be). A replica started without the default that leads later
/// records the same as the pool's `metrics_error` and holds the pool.
fn check_source_url(s: &AppState, p: &fleetscale_core::ValidPool) -> ApiResult<()> {
    match &p.metric_source {
        Some(m) if m.url.is_none() && s.engine.metric_sources.default_url().is_none() => {
            Err(ApiError::field(
                "metric_source.url",
                "is required: the server has no default (serve --prometheus-url)",
            ))
        }
        _ => Ok(()),
    }
}

/// The pool as shown: `metrics_stale` also says whether the leader's last
/// tick (on this replica) found its metrics stale.
fn view(s: &AppState, pool: Pool) -> PoolView {
    let mut v = PoolView::from(pool);
    v.metrics_stale |= s
        .engine
        .metrics_stale
        .lock()
        .expect("stale pools lock")
        .contains(&v.id);
    v
}

/// List pools.
#[utoipa::path(get, path = "/pools", tag = "pools",
    params(("tenant_id" = Option<String>, Query, description = "Only this tenant"), ("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "A page of pools.", body = PoolPage), (status = 401), (status = 422))
)]
async fn list_pools(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<PoolPage>> {
    let tenant = tenant_scope(&s, &who, q.tenant_id.as_deref()).await?;
    let page = q.page()?;
    let pools = s.engine.store.list_pools(tenant.as_deref(), &page).await?;
    let mut page = PoolPage::from(pools);
    let stale = s.engine.metrics_stale.lock().expect("stale pools lock");
    for v in &mut page.items {
        v.metrics_stale |= stale.contains(&v.id);
    }
    drop(stale);
    Ok(Json(page))
}

/// One pool.
#[utoipa::path(get, path = "/pools/{id}", tag = "pools",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The pool.", body = PoolView), (status = 401), (status = 404))
)]
async fn get_pool(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<PoolView>> {
    Ok(Json(view(&s, visible_pool(&s, &who, &id).await?)))
}

/// Change a pool's bounds, mode or policy (audited).
#[utoipa::path(patch, path = "/pools/{id}", tag = "pools",
    params(("id" = String, Path, description = "The object's id")),
    request_body(content = PoolPatchSchema, content_type = "application/json", example = json!({"max_capacity": 20, "mode": "recommend"})),
    responses((status = 200, description = "The pool after the change.", body = PoolView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn patch_pool(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<PoolPatch>,
) -> ApiResult<Json<PoolView>> {
    who.require(Role::Admin)?;
    let pool = visible_pool(&s, &who, &id).await?;
    let valid = b.apply(&pool.to_valid())?;
    if b.metric_source.is_some() {
        check_source_url(&s, &valid)?;
    }
    let pool = s.engine.store.update_pool(&id, &valid, &who.name).await?;
    Ok(Json(view(&s, pool)))
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
) -> ApiResult<StatusCode> {
    who.require(Role::Admin)?;
    visible_pool(&s, &who, &id).await?;
    s.engine.store.delete_pool(&id, &who.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `PUT /pools/{id}/safety-lock`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockBody {
    /// True locks the pool: the autoscaler may not change it.
    pub locked: bool,
}

/// Set or clear the pool's safety lock (audited).
#[utoipa::path(put, path = "/pools/{id}/safety-lock", tag = "pools",
    params(("id" = String, Path, description = "The object's id")),
    request_body(content = LockBody, content_type = "application/json", example = json!({"locked": true})),
    responses((status = 200, description = "The pool.", body = PoolView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn set_lock(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<LockBody>,
) -> ApiResult<Json<PoolView>> {
    who.require(Role::Admin)?;
    visible_pool(&s, &who, &id).await?;
    let pool = s.engine.store.set_safety_lock(&id, b.locked, &who.name);
    Ok(Json(pool.await?.into()))
}

/// The observation of one pool now, as the control loop would see it.
async fn observation(s: &AppState, pool: &Pool, now: i64) -> ApiResult<Observation> {
    Ok(fleetscale_engine::control::observe_pool(&s.engine, pool, now).await?)
}

/// A dry run's answer: what the engine would decide for the pool now, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// The pool.
    pub pool_id: String,
    /// How the control loop treats the pool.
    #[schema(value_type = super::core_schemas::PoolModeSchema)]
    pub mode: fleetscale_core::Mode,
    /// The pool's safety lock.
    pub safety_lock: bool,
    /// Capacity now.
    pub current_capacity: i64,
    /// Capacity the decision asks for, within the bounds.
    pub target_capacity: i64,
    /// True when the target differs from the current capacity.
    pub should_scale: bool,
    /// `scale_up`, `scale_down` or `hold`.
    #[schema(value_type = String)]
    pub action: Action,
    /// Why, in words a person reads.
    pub reason: String,
    /// Name of the policy that decided.
    pub policy: String,
    /// Confidence in `[0, 1]`.
    pub confidence: f64,
    /// The figures the decision used (utilization_pct, mean_load, ...).
    pub inputs: BTreeMap<String, f64>,
    /// For combined policies: the combination (action, reasons, each
    /// policy's decision); `null` for a threshold policy alone.
    #[schema(value_type = Option<Object>)]
    pub combined: Option<CombinedDecision>,
    /// What the decision looked at (bounds, load, queue, history, ...).
    #[schema(value_type = Object)]
    pub observation: Observation,
    /// True when the pool's metrics are stale (newest sample older than
    /// three ticks or the policy's window), missing, or their source is
    /// failing (`metrics_error` on the pool): fail static then holds any
    /// scale-in, and `reason` says so.
    pub metrics_stale: bool,
    /// When it was evaluated (RFC 3339).
    pub evaluated_at: String,
}

/// Dry run: what the engine would decide now, and why.
#[utoipa::path(post, path = "/pools/{id}/plan", tag = "pools",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "current, target, should_scale, reason, inputs (and the combined decision for pool policies).", body = PlanView), (status = 401), (status = 404))
)]
async fn plan_pool(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<PlanView>> {
    let pool = visible_pool(&s, &who, &id).await?;
    let now = now_ms();
    let mut obs = observation(&s, &pool, now).await?;
    // The pool's controller memory, as the next tick would recall it: the
    // leader's own, else what the leader last stored.
    let held = s
        .engine
        .forecasts
        .lock()
        .expect("controller memory lock")
        .get(&pool.id)
        .cloned();
    let mut memory = match held {
        Some(m) => m,
        None => s
            .engine
            .store
            .controller_memory(&pool.id)
            .await?
            .unwrap_or_default(),
    };
    memory.recall(&mut obs);
    // Forecast models are refitted on the observation's history.
    if let Some(spec) = &pool.policies {
        memory.take_forecasts(spec);
    }
    let state = PoolState {
        id: pool.id.clone(),
        mode: pool.mode,
        safety_lock: pool.safety_lock,
        policy: PolicySpec::Threshold(pool.scaling_policy),
        combined: pool.policies.clone(),
        observation: obs,
        pending_proposal: None,
        forecasts: Vec::new(),
        memory,
        tick_ms: s.tick_ms,
        metrics_error: pool.metrics_error.as_ref().map(|e| e.message.clone()),
    };
    let (d, combined, g) = decide_pool(&state);
    let obs = state.observation;
    Ok(Json(PlanView::new(
        pool,
        d,
        combined,
        obs,
        now,
        g.metrics_stale,
    )))
}

impl PlanView {
    /// The dry run of `pool`: decision `d` (and its combination) on `obs` at `now`.
    fn new(
        pool: Pool,
        d: Decision,
        combined: Option<CombinedDecision>,
        obs: Observation,
        now: i64,
        metrics_stale: bool,
    ) -> Self {
        PlanView {
            should_scale: d.should_scale(),
            pool_id: pool.id,
            mode: pool.mode,
            safety_lock: pool.safety_lock,
            current_capacity: d.current,
            target_capacity: d.target,
            action: d.action,
            reason: d.reason,
            policy: d.policy,
            confidence: d.confidence,
            inputs: d.inputs,
            combined,
            observation: obs,
            metrics_stale,
            evaluated_at: rfc3339(now),
        }
    }
}

/// A pool's effective policies and where they come from.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoliciesView {
    /// The pool.
    pub pool_id: String,
    /// `policies` (combined policies set) or `scaling_policy` (its
    /// threshold policy alone, shown as a one-policy spec).
    pub source: String,
    /// The effective policies.
    #[schema(value_type = PoolPoliciesSchema)]
    pub policies: PoolPolicies,
}

impl From<Pool> for PoliciesView {
    fn from(pool: Pool) -> Self {
        let (source, policies) = match pool.policies {
            Some(p) => ("policies", p),
            None => (
                "scaling_policy",
                PoolPolicies::single(PolicySpec::Threshold(pool.scaling_policy)),
            ),
        };
        PoliciesView {
            pool_id: pool.id,
            source: source.into(),
            policies,
        }
    }
}

/// The pool's policies (its combined policies, or its threshold policy).
#[utoipa::path(get, path = "/pools/{id}/policies", tag = "policies",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "Where the policies come from, and the policies.", body = PoliciesView), (status = 401), (status = 404))
)]
async fn get_policies(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<PoliciesView>> {
    Ok(Json(visible_pool(&s, &who, &id).await?.into()))
}

/// Set the pool's combined policies (validated, audited).
#[utoipa::path(put, path = "/pools/{id}/policies", tag = "policies",
    params(("id" = String, Path, description = "The object's id")),
    request_body(content = PoolPoliciesSchema, content_type = "application/json", example = json!({"policies": [{"type": "queue", "messages_per_instance": 10}]})),
    responses((status = 200, description = "The pool with its policies.", body = PoolView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn put_policies(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<PoolPolicies>,
) -> ApiResult<Json<PoolView>> {
    who.require(Role::Admin)?;
    visible_pool(&s, &who, &id).await?;
    spec.validate()?;
    let pool = s
        .engine
        .store
        .set_pool_policies(&id, Some(&spec), &who.name);
    Ok(Json(pool.await?.into()))
}

/// Return the pool to its threshold policy (audited).
#[utoipa::path(delete, path = "/pools/{id}/policies", tag = "policies",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The pool.", body = PoolView), (status = 401), (status = 403), (status = 404))
)]
async fn delete_policies(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<PoolView>> {
    who.require(Role::Admin)?;
    visible_pool(&s, &who, &id).await?;
    let pool = s.engine.store.set_pool_policies(&id, None, &who.name);
    Ok(Json(pool.await?.into()))
}

/// The body of `POST /policies/evaluate`: a spec and the inputs to run it on.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateBody {
    /// The policies to evaluate.
    #[schema(value_type = PoolPoliciesSchema)]
    pub spec: PoolPolicies,
    /// What the policies look at: `now_ms`, `bounds` `{min, max, desired}`,
    /// `capacity_per_instance`, and optionally `load`, `queue`, `history`,
    /// `metrics`, `instances`, `sla`, ...
    #[schema(value_type = Object)]
    pub observation: Observation,
}

impl EvaluateBody {
    /// Every rule the spec and the observation break, each under its prefix.
    fn check(&self) -> Result<(), Violations> {
        let mut v = Violations::default();
        for (prefix, res) in [
            ("spec", self.spec.validate()),
            ("observation", validate_observation(&self.observation)),
        ] {
            if let Err(e) = res {
                for f in e.0 {
                    v.push(format!("{prefix}.{}", f.field), f.rule);
                }
            }
        }
        v.into_result(())
    }
}

/// The combined decision of a spec on supplied inputs.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluationView {
    /// `scale_up`, `scale_down` or `hold`.
    #[schema(value_type = String)]
    pub action: Action,
    /// Capacity before.
    pub current_capacity: i64,
    /// Capacity after, within the bounds.
    pub target_capacity: i64,
    /// True when the target differs from the current capacity.
    pub should_scale: bool,
    /// Confidence in `[0, 1]`.
    pub confidence: f64,
    /// The reasoning, in the order the rules applied: `{factor, message, figures}`.
    #[schema(value_type = Vec<Object>)]
    pub reasons: Vec<Reason>,
    /// Each policy's own decision, in spec order.
    #[schema(value_type = Vec<Object>)]
    pub policies: Vec<Decision>,
}

impl From<CombinedDecision> for EvaluationView {
    fn from(c: CombinedDecision) -> Self {
        EvaluationView {
            action: c.action,
            current_capacity: c.current,
            target_capacity: c.target,
            should_scale: c.target != c.current,
            confidence: c.confidence,
            reasons: c.reasons,
            policies: c.policies,
        }
    }
}

/// fleetscale's default pool policies: what a pool created without a
/// `scaling_policy` gets (shown for 2 requests at once per instance; a new
/// pool's `concurrency_per_instance` is its `capacity_per_instance`).
#[utoipa::path(get, path = "/policies/default", tag = "policies",
    responses((status = 200, description = "The default policies (as `fleetscale policy default` prints them).", body = PoolPoliciesSchema), (status = 401))
)]
async fn default_policies(_who: Principal) -> ApiResult<Json<fleetscale_core::PoolPolicies>> {
    Ok(Json(fleetscale_core::decision::default::pool_default(2.0)))
}

/// Evaluate a policy spec on supplied inputs, touching no pool.
#[utoipa::path(post, path = "/policies/evaluate", tag = "policies",
    request_body(content = EvaluateBody, content_type = "application/json", example = json!({"spec": {"policies": [{"type": "queue", "messages_per_instance": 10}]}, "observation": {"now_ms": 1_700_000_000_000_i64, "capacity_per_instance": 10, "bounds": {"min": 1, "max": 10, "desired": 2}, "queue": {"backlog": 35, "observed_at_ms": 1_700_000_000_000_i64}}})),
    responses((status = 200, description = "The combined decision.", body = EvaluationView), (status = 400), (status = 401), (status = 422))
)]
async fn evaluate_policies(
    _who: Principal,
    ApiJson(b): ApiJson<EvaluateBody>,
) -> ApiResult<Json<EvaluationView>> {
    b.check()?;
    Ok(Json(decide_all(&b.spec, &b.observation).into()))
}
