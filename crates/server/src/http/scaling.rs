//! Scaling by hand (`/scale`), the capacity assessment (`/capacity`), the
//! scaling events (`/scaling-events`) and rebalancing (`/rebalance`).

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::capacity::{self, Status, StatusThresholds};
use fleetscale_core::policy::utilization_pct;
use fleetscale_core::pool::MAX_CAPACITY_LIMIT;
use fleetscale_core::rebalance::{self, RebalancePool, Strategy};
use fleetscale_core::Violations;
use fleetscale_engine::metrics::SourceLabel;
use fleetscale_store::{now_ms, rfc3339, ScaleRequest};

use super::common::{actuation_status, visible_pool, ApiResult, ListQuery};
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
            trigger_source: "manual".into(),
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
                trigger_source: "manual".into(),
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
                trigger_source: "rebalance".into(),
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
                    trigger_source: "rebalance".into(),
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
