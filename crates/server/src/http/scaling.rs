//! Scaling by hand (`/scale`), the capacity assessment (`/capacity`), the
//! scaling events (`/scaling-events`) and rebalancing (`/rebalance`).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::capacity::{self, Status, StatusThresholds};
use fleetscale_core::policy::{utilization_pct, WindowStats};
use fleetscale_core::pool::MAX_CAPACITY_LIMIT;
use fleetscale_core::rebalance::{self, Move, RebalancePool, Strategy};
use fleetscale_core::{TriggerSource, Violations};
use fleetscale_store::{now_ms, rfc3339, Pool, ScaleOutcome, ScaleRequest};

use super::common::{
    actuation_status, count_scaling, tenant_scope, visible_pool, ApiResult, ListQuery,
};
use super::views::{EventPage, EventView, PoolView};
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::AppState;

/// The scaling routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(scale))
        .routes(routes!(capacity))
        .routes(routes!(list_events))
        .routes(routes!(get_event))
        .routes(routes!(rebalance))
}

/// The body of `POST /scale`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleBody {
    /// The pool's tenant.
    pub tenant_id: String,
    /// The pool.
    pub pool_id: String,
    /// Capacity asked for, `0..=1000000` (clamped to the pool's bounds).
    pub capacity: i64,
    /// Why (recorded with the event), at most 500 characters.
    pub reason: String,
}

/// A manual scaling's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScaleView {
    /// The pool after the change.
    pub pool: PoolView,
    /// The event written, `null` when the capacity did not change.
    pub event: Option<EventView>,
    /// The capacity asked for.
    pub requested_capacity: i64,
    /// True when the bounds changed what was asked for.
    pub clamped: bool,
}

/// Set a pool's capacity by hand (clamped to its bounds, audited, actuated).
#[utoipa::path(post, path = "/scale", tag = "scaling",
    request_body(content = ScaleBody, content_type = "application/json", example = json!({"tenant_id": "TENANT_ID", "pool_id": "POOL_ID", "capacity": 5, "reason": "launch"})),
    responses((status = 200, description = "The pool and the scaling event.", body = ScaleView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422))
)]
async fn scale(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<ScaleBody>,
) -> ApiResult<Json<ScaleView>> {
    who.require(Role::Operator)?;
    b.check()?;
    let pool = scaled_pool(&s, &who, &b).await?;
    let out = s
        .engine
        .store
        .scale(&manual_scaling(&s, &who, pool, &b))
        .await?;
    if out.event.is_some() {
        count_scaling(&s, TriggerSource::Manual);
    }
    Ok(Json(ScaleView::new(out, b.capacity)))
}

impl ScaleBody {
    /// Every rule the body breaks.
    fn check(&self) -> Result<(), Violations> {
        let mut v = Violations::default();
        v.check_i64("capacity", self.capacity, 0, MAX_CAPACITY_LIMIT);
        v.check_text("reason", &self.reason, 500);
        v.into_result(())
    }
}

impl ScaleView {
    /// The answer to a manual scaling that asked for `requested`.
    fn new(out: ScaleOutcome, requested: i64) -> Self {
        ScaleView {
            clamped: out.pool.desired_capacity != requested,
            pool: out.pool.into(),
            event: out.event.map(EventView::from),
            requested_capacity: requested,
        }
    }
}

/// The pool `b` names, if `who` sees it and it is the named tenant's (404 otherwise).
async fn scaled_pool(s: &AppState, who: &Principal, b: &ScaleBody) -> ApiResult<Pool> {
    who.see(&b.tenant_id, "pool")?;
    let pool = visible_pool(s, who, &b.pool_id).await?;
    if pool.tenant_id != b.tenant_id {
        return Err(ApiError::NotFound("pool".into()));
    }
    Ok(pool)
}

/// The scaling `b` asks of `pool` by hand: not held back by the safety lock.
fn manual_scaling(s: &AppState, who: &Principal, pool: Pool, b: &ScaleBody) -> ScaleRequest {
    ScaleRequest {
        pool_id: pool.id,
        capacity: b.capacity,
        reason: b.reason.clone(),
        trigger_source: TriggerSource::Manual,
        metadata: json!({}),
        actor: who.name.clone(),
        expect_desired: None,
        respect_safety_lock: false,
        actuation_status: actuation_status(s),
        fence: None,
        now_ms: now_ms(),
    }
}

/// Parameters of the capacity assessment.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityQuery {
    tenant_id: Option<String>,
    under_pct: Option<f64>,
    over_pct: Option<f64>,
}

impl CapacityQuery {
    /// The status thresholds asked for (defaults 30 / 80 for those
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

/// The status thresholds of a capacity assessment, percent utilization.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThresholdsView {
    /// Below this a pool is under-used.
    pub under_pct: f64,
    /// Above this a pool is over-loaded.
    pub over_pct: f64,
}

impl From<StatusThresholds> for ThresholdsView {
    fn from(t: StatusThresholds) -> Self {
        let StatusThresholds {
            under_pct,
            over_pct,
        } = t;
        ThresholdsView {
            under_pct,
            over_pct,
        }
    }
}

/// One pool's capacity: its size, bounds, load and status.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolCapacityView {
    /// The pool.
    pub pool_id: String,
    /// Its region.
    pub region: String,
    /// Its agent type.
    pub agent_type: String,
    /// Desired capacity now.
    pub current: i64,
    /// Lower bound.
    pub min: i64,
    /// Upper bound.
    pub max: i64,
    /// Percent utilization over the policy window, `null` without fresh samples.
    pub utilization: Option<f64>,
    /// `under`, `optimal`, `over` or `unknown`.
    #[schema(value_type = String)]
    pub status: Status,
    /// Mean load over the policy window, `null` without fresh samples.
    pub mean_load: Option<f64>,
}

impl PoolCapacityView {
    /// The assessment of `p` from its window statistics, at `now`.
    fn assess(p: &Pool, stats: Option<&WindowStats>, t: StatusThresholds, now: i64) -> Self {
        let fresh =
            stats.filter(|w| now - w.newest_ts_ms <= p.scaling_policy.window_seconds * 1000);
        let util = fresh
            .and_then(|w| utilization_pct(w.mean, p.desired_capacity, p.capacity_per_instance));
        let status = if fresh.is_some() && util.is_none() {
            Status::Over
        } else {
            capacity::status(util, t)
        };
        PoolCapacityView {
            pool_id: p.id.clone(),
            region: p.region.clone(),
            agent_type: p.agent_type.clone(),
            current: p.desired_capacity,
            min: p.min_capacity,
            max: p.max_capacity,
            utilization: util,
            status,
            mean_load: fresh.map(|w| w.mean),
        }
    }
}

/// A capacity assessment: per pool, and overall.
#[derive(Debug, Serialize, ToSchema)]
pub struct CapacityView {
    /// The tenant assessed, `null` for every tenant.
    pub tenant_id: Option<String>,
    /// Each pool's assessment.
    pub pools: Vec<PoolCapacityView>,
    /// Percent of the measured pools whose status is optimal (100 when none is measured).
    pub overall_health: f64,
    /// The thresholds used.
    pub thresholds: ThresholdsView,
    /// When it was evaluated (RFC 3339).
    pub evaluated_at: String,
}

/// Capacity assessment of a tenant's pools: utilization and status per pool
/// (`under` below `under_pct`, `over` above `over_pct`; seed 30 / 80).
#[utoipa::path(get, path = "/capacity", tag = "scaling",
    params(("tenant_id" = Option<String>, Query, description = "Only this tenant"), ("under_pct" = Option<f64>, Query, description = "Utilization % below which a pool is under-used (default 30)"), ("over_pct" = Option<f64>, Query, description = "Utilization % above which a pool is over-loaded (default 80)")),
    responses((status = 200, description = "Per pool and overall status.", body = CapacityView), (status = 401), (status = 404), (status = 422))
)]
async fn capacity(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<CapacityQuery>,
) -> ApiResult<Json<CapacityView>> {
    let t = q.thresholds()?;
    let tenant = tenant_scope(&s, &who, q.tenant_id.as_deref()).await?;
    let now = now_ms();
    let pools = s.engine.store.all_pools(tenant.as_deref()).await?;
    let stats = s.engine.store.window_stats(tenant.as_deref(), now).await?;
    Ok(Json(CapacityView::assess(tenant, &pools, &stats, t, now)))
}

impl CapacityView {
    /// The assessment of `pools` (of `tenant`, or every tenant's) from
    /// their window statistics, at `now`.
    fn assess(
        tenant: Option<String>,
        pools: &[Pool],
        stats: &HashMap<String, WindowStats>,
        t: StatusThresholds,
        now: i64,
    ) -> Self {
        let pools: Vec<PoolCapacityView> = pools
            .iter()
            .map(|p| PoolCapacityView::assess(p, stats.get(&p.id), t, now))
            .collect();
        let statuses: Vec<Status> = pools.iter().map(|p| p.status).collect();
        CapacityView {
            tenant_id: tenant,
            pools,
            overall_health: capacity::overall_health(&statuses),
            thresholds: t.into(),
            evaluated_at: rfc3339(now),
        }
    }
}

/// List scaling events.
#[utoipa::path(get, path = "/scaling-events", tag = "scaling",
    params(("pool_id" = Option<String>, Query, description = "Only this pool"), ("tenant_id" = Option<String>, Query, description = "Only this tenant"), ("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "A page of scaling events, newest first.", body = EventPage), (status = 401), (status = 422))
)]
async fn list_events(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<EventPage>> {
    let tenant = tenant_scope(&s, &who, q.tenant_id.as_deref()).await?;
    if let Some(p) = &q.pool_id {
        visible_pool(&s, &who, p).await?;
    }
    let (pool, page) = (q.pool_id.as_deref(), q.page()?);
    let events = s.engine.store.list_events(pool, tenant.as_deref(), &page);
    Ok(Json(events.await?.into()))
}

/// One scaling event, with its actuation outcome.
#[utoipa::path(get, path = "/scaling-events/{id}", tag = "scaling",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The event.", body = EventView), (status = 401), (status = 404))
)]
async fn get_event(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<EventView>> {
    let ev = s.engine.store.get_event(&id).await?;
    who.see(&ev.tenant_id, "scaling event")?;
    Ok(Json(ev.into()))
}

/// The body of `POST /rebalance`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebalanceBody {
    /// The tenant whose pools are rebalanced.
    pub tenant_id: String,
    /// `proportional` (to demand; the default) or `even`.
    pub strategy: Option<String>,
    /// Only the pools of this agent type (default: every agent type, each
    /// rebalanced on its own).
    #[serde(default)]
    pub agent_type: Option<String>,
    /// Plan only: change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A change the rebalancer makes (or would make, in a dry run).
#[derive(Debug, Serialize, ToSchema)]
pub struct MoveView {
    /// The pool.
    pub pool_id: String,
    /// Capacity before.
    pub from: i64,
    /// Capacity after.
    pub to: i64,
    /// Why.
    pub reason: String,
}

impl From<Move> for MoveView {
    fn from(m: Move) -> Self {
        let Move {
            pool_id,
            from,
            to,
            reason,
        } = m;
        MoveView {
            pool_id,
            from,
            to,
            reason,
        }
    }
}

/// A rebalancing's plan and what was applied.
#[derive(Debug, Serialize, ToSchema)]
pub struct RebalanceView {
    /// Moves applied (0 in a dry run).
    pub rebalanced: u64,
    /// Each move in words (`region/agent_type: from → to`).
    pub actions: Vec<String>,
    /// The plan.
    pub moves: Vec<MoveView>,
    /// `proportional` or `even`.
    #[schema(value_type = String)]
    pub strategy: Strategy,
    /// True when nothing was changed.
    pub dry_run: bool,
}

/// Rebalance a tenant's capacity across its pools (demand-proportional, or even).
#[utoipa::path(post, path = "/rebalance", tag = "scaling",
    request_body(content = RebalanceBody, content_type = "application/json", example = json!({"tenant_id": "TENANT_ID", "strategy": "proportional"})),
    responses((status = 200, description = "The plan and the changes applied.", body = RebalanceView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn rebalance(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<RebalanceBody>,
) -> ApiResult<Json<RebalanceView>> {
    who.require(Role::Operator)?;
    let strategy = b.strategy()?;
    who.see(&b.tenant_id, "tenant")?;
    s.engine.store.get_tenant(&b.tenant_id).await?;
    let now = now_ms();
    let mut pools = s.engine.store.all_pools(Some(&b.tenant_id)).await?;
    if let Some(t) = &b.agent_type {
        pools.retain(|p| &p.agent_type == t);
    }
    let stats = s.engine.store.window_stats(Some(&b.tenant_id), now).await?;
    let moves = rebalance::plan(&rebalance_inputs(&pools, &stats), strategy);
    let (actions, rebalanced) =
        apply_moves(&s, &who, &pools, &moves, strategy, b.dry_run, now).await?;
    let moves = moves.into_iter().map(MoveView::from).collect();
    let dry_run = b.dry_run;
    Ok(Json(RebalanceView {
        rebalanced,
        actions,
        moves,
        strategy,
        dry_run,
    }))
}

impl RebalanceBody {
    /// The strategy asked for (`proportional` when none is).
    fn strategy(&self) -> ApiResult<Strategy> {
        match self.strategy.as_deref() {
            None | Some("proportional") => Ok(Strategy::Proportional),
            Some("even") => Ok(Strategy::Even),
            Some(_) => Err(ApiError::field(
                "strategy",
                "must be one of proportional, even",
            )),
        }
    }
}

/// The rebalancer's view of `pools`: bounds, size and demand in instances.
fn rebalance_inputs(pools: &[Pool], stats: &HashMap<String, WindowStats>) -> Vec<RebalancePool> {
    pools
        .iter()
        .map(|p| RebalancePool {
            id: p.id.clone(),
            agent_type: p.agent_type.clone(),
            min: p.min_capacity,
            max: p.max_capacity,
            desired: p.desired_capacity,
            demand: stats.get(&p.id).map(|w| w.mean / p.capacity_per_instance),
        })
        .collect()
}

/// Applies `moves` (unless `dry_run`), each only if its pool still has the
/// size planned from: each move in words, and how many were applied.
async fn apply_moves(
    s: &AppState,
    who: &Principal,
    pools: &[Pool],
    moves: &[Move],
    strategy: Strategy,
    dry_run: bool,
    now: i64,
) -> ApiResult<(Vec<String>, u64)> {
    let mut actions = Vec::new();
    let mut applied = 0;
    for m in moves {
        let p = pools
            .iter()
            .find(|p| p.id == m.pool_id)
            .ok_or_else(|| ApiError::NotFound("pool".into()))?;
        actions.push(format!(
            "{}/{}: {} → {}",
            p.region, p.agent_type, m.from, m.to
        ));
        if dry_run {
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
                actuation_status: actuation_status(s),
                fence: None,
                now_ms: now,
            })
            .await?;
        if out.event.is_some() {
            applied += 1;
            count_scaling(s, TriggerSource::Rebalance);
        }
    }
    if actions.is_empty() {
        actions.push("No pools to rebalance".into());
    }
    Ok((actions, applied))
}
