//! Workload routing (`POST /route`) and its recorded decisions
//! (`/routing`): read one, search them, replay one with today's code, and
//! report its outcome (which feeds the tenant's per-region ejection).
//!
//! A route reads everything it needs from this replica's in-memory routing
//! view ([`fleetscale_engine::routing_view`]: reloaded every tick on every
//! replica, and before the next route after any write through this
//! replica), decides with the core's pure [`route`] and records the
//! decision with its input, so that `POST /routing/{id}/replay` recomputes
//! it. The input is recorded as a shared context (the tenant's policies and
//! the regions read, stored once per content and hashed) plus the request's
//! own fields; the decision is made from exactly what a replay parses back.
//! Recording is a group commit ([`fleetscale_engine::recorder`]): a 200
//! is answered only after the transaction holding the decision committed;
//! when it fails the answer is a 503 problem and nothing was recorded. Compliance is the core's hard
//! filter: no answer names a non-compliant region. A refused request (409
//! `no_compliant_region` / `no_available_region`, the candidates listed in
//! `detail`) or an invalid one (4xx naming the field) records nothing.
//!
//! Roles: routing and reporting an outcome need the operator role (they
//! write); reading decisions any role. A tenant-scoped token routes and
//! sees only its own tenant (others are 404).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::region::routing::{
    latency_score, route, Candidate, Ejection, RouteError, LATENCY_SAMPLES,
};
use fleetscale_core::Violations;
use fleetscale_engine::RecordError;
use fleetscale_store::{
    now_ms, rfc3339, EjectionState, RecordedInput, RouteRequest, RoutingFilter, RoutingRecord,
};

use super::common::{page, tenant_scope, ApiResult};
use super::metrics::parse_rfc3339_ms;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::AppState;

/// The routing routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(route_workload))
        .routes(routes!(list_decisions))
        .routes(routes!(get_decision))
        .routes(routes!(replay))
        .routes(routes!(outcome))
}

/// The body of `POST /route`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteBody {
    /// Tenant asking (must exist).
    pub tenant_id: String,
    /// Workload type: the compliance key of the tenant's region policy.
    pub workload_type: String,
    /// Agent type that must have spare capacity in the chosen region.
    pub agent_type: String,
    /// Preferred region names (must exist), first preferred first; they
    /// get the score policy's bonus and win ties. Omitted or `null`: none.
    #[serde(default)]
    pub preferred_regions: Option<Vec<String>>,
    /// Client country code (e.g. `DE`, `US-CA`), for the `geolocation` policy.
    #[serde(default)]
    pub client_country: Option<String>,
}

/// One region as a decision saw it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandidateView {
    /// Region name.
    pub region: String,
    /// Passed the tenant's compliance filter.
    pub compliant: bool,
    /// Could take the work.
    pub eligible: bool,
    /// Why not, when not eligible: `non_compliant`, `frozen`, `ejected`
    /// or `no_spare_capacity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_by: Option<String>,
    /// When `excluded_by` is `ejected`: until when (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejected_until: Option<String>,
    /// Score (compliant regions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

impl From<&Candidate> for CandidateView {
    fn from(c: &Candidate) -> Self {
        use fleetscale_core::region::routing::ExcludedBy;
        CandidateView {
            region: c.region.clone(),
            compliant: c.compliant,
            eligible: c.eligible,
            excluded_by: c.excluded_by.map(|e| e.as_str().to_string()),
            ejected_until: match c.excluded_by {
                Some(ExcludedBy::Ejected { until_ms }) => Some(rfc3339(until_ms)),
                _ => None,
            },
            score: c.score,
        }
    }
}

/// The compliance and availability figures a decision read.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlaContext {
    /// Jurisdiction of the selected region.
    pub jurisdiction: String,
    /// Scaling mode of the selected region when decided (`normal`,
    /// `cautious`, `throttled`; a `frozen` region is never chosen).
    pub region_mode: String,
    /// The tenant's data residency, if any.
    pub data_residency: Option<String>,
    /// Regions that passed the compliance filter.
    pub compliant_regions: usize,
    /// Compliant regions that could take the work.
    pub eligible_regions: usize,
    /// Regions known when decided.
    pub regions: usize,
}

/// The performance figures of the selected region that the decision read.
#[derive(Debug, Serialize, ToSchema)]
pub struct PerformanceContext {
    /// Mean of the region's last 10 `latency_ms` samples (1000 when none).
    pub latency_ms: f64,
    /// Latency samples averaged (0–10).
    pub latency_samples: usize,
    /// `max(0, 100 − latency_ms ÷ 10)`.
    pub latency_score: f64,
    /// `100 × spare ÷ max` over the tenant's pools of the agent type there.
    pub capacity_score: f64,
    /// Spare instances of those pools.
    pub spare_instances: u64,
    /// Maximum instances of those pools.
    pub max_instances: u64,
    /// Routing policy type that decided (`score`, `latency`, ...).
    pub policy: String,
}

/// A routing decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteView {
    /// Decision id (UUIDv7): `GET /routing/{id}`.
    pub id: String,
    /// Tenant routed for.
    pub tenant_id: String,
    /// Workload type.
    pub workload_type: String,
    /// Agent type.
    pub agent_type: String,
    /// Chosen region name.
    pub selected_region: String,
    /// Why, in words (policy, rank, figures, regions spilled past).
    pub reason: String,
    /// The chosen region's score.
    pub score: f64,
    /// Compliance and availability figures read.
    pub sla_context: SlaContext,
    /// Performance figures of the chosen region read.
    pub performance_context: PerformanceContext,
    /// Every region, in name order.
    pub candidates: Vec<CandidateView>,
    /// When decided (RFC 3339).
    pub created_at: String,
}

impl From<&RoutingRecord> for RouteView {
    fn from(r: &RoutingRecord) -> Self {
        let d = &r.decision;
        let input = r.input.input();
        let selected = input.regions.iter().find(|v| v.name == d.selected_region);
        let pools = selected
            .map(|v| v.pools.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|p| p.agent_type == r.agent_type);
        let (spare, max) = pools.fold((0u64, 0u64), |(s, m), p| {
            (s + u64::from(p.spare), m + u64::from(p.max))
        });
        let samples = selected.map_or(0, |v| v.latency_samples_ms.len().min(LATENCY_SAMPLES));
        RouteView {
            id: r.id.clone(),
            tenant_id: r.tenant_id.clone(),
            workload_type: r.workload_type.clone(),
            agent_type: r.agent_type.clone(),
            selected_region: d.selected_region.clone(),
            reason: d.reason.clone(),
            score: d.score,
            sla_context: SlaContext {
                jurisdiction: selected.map(|v| v.jurisdiction.clone()).unwrap_or_default(),
                region_mode: selected.map(|v| v.mode.as_str()).unwrap_or("normal").into(),
                data_residency: input.region_policy.data_residency.clone(),
                compliant_regions: d.candidates.iter().filter(|c| c.compliant).count(),
                eligible_regions: d.candidates.iter().filter(|c| c.eligible).count(),
                regions: d.candidates.len(),
            },
            performance_context: PerformanceContext {
                latency_ms: d.latency_ms,
                latency_samples: samples,
                latency_score: latency_score(d.latency_ms),
                capacity_score: d.capacity_score,
                spare_instances: spare,
                max_instances: max,
                policy: d.policy.clone(),
            },
            candidates: d.candidates.iter().map(CandidateView::from).collect(),
            created_at: rfc3339(r.created_at_ms),
        }
    }
}

/// A recorded decision with the input that replays it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingDecisionView {
    /// The decision.
    #[serde(flatten)]
    pub decision: RouteView,
    /// Everything the decision read (`fleetscale_core`'s `RouteInput`: the
    /// tenant's policies, every region with its mode, latencies, the
    /// tenant's pools of the agent type and ejections, the request, the time).
    #[schema(value_type = Object)]
    pub input: Value,
}

/// A page of routing decisions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingDecisionPage {
    /// The items of this page.
    pub items: Vec<RouteView>,
    /// `next_cursor` of the next page (pass it as `cursor`), `null` at the end.
    pub next_cursor: Option<String>,
}

/// The 409 of a refused route: its code, and the candidates in the detail.
fn refused(e: &RouteError) -> ApiError {
    let candidates = match e {
        RouteError::NoCompliantRegion { candidates }
        | RouteError::NoAvailableRegion { candidates } => candidates.as_slice(),
        _ => &[],
    };
    let list: Vec<String> = candidates
        .iter()
        .map(|c| match c.excluded_by {
            Some(x) => format!("{} ({})", c.region, x.as_str()),
            None => format!("{} (eligible)", c.region),
        })
        .collect();
    let list = if list.is_empty() {
        "no regions exist".to_string()
    } else {
        list.join(", ")
    };
    ApiError::Conflict {
        code: e.code(),
        detail: format!("{e}; candidates: {list}; nothing was recorded"),
    }
}

/// Route a workload: the best compliant region that can take it.
///
/// Freshness: the decision reads this replica's in-memory routing view,
/// which is reloaded every tick on every replica, so a change made through
/// another replica is routed on within about one tick; a change made
/// through this replica (tenant, policy, region, pool, scaling, outcome,
/// metric or latency sample) is routed on at once by the next route.
/// Recording: a 200 is answered only after the decision is durably
/// committed (decisions of concurrent routes share one transaction); a 503
/// means it could not be recorded and nothing was, so retry; a 4xx or 409
/// records nothing.
#[utoipa::path(post, path = "/route", tag = "routing",
    request_body(content = RouteBody, content_type = "application/json", example = json!({"tenant_id": "TENANT_ID", "workload_type": "chat", "agent_type": "writer", "preferred_regions": ["eu-west"], "client_country": "DE"})),
    responses((status = 200, description = "The decision, durably recorded before this answer.", body = RouteView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422), (status = 503, description = "The decision could not be recorded durably; nothing was recorded: retry."))
)]
async fn route_workload(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<RouteBody>,
) -> ApiResult<Json<RouteView>> {
    who.require(Role::Operator)?;
    let mut v = Violations::default();
    v.check_name("tenant_id", &b.tenant_id);
    v.check_name("workload_type", &b.workload_type);
    v.check_name("agent_type", &b.agent_type);
    v.into_result(())?;
    who.see(&b.tenant_id, "tenant")?;
    let now = now_ms();
    let view = s.engine.routing_view.for_tenant(&b.tenant_id).await?;
    let context = view
        .context(&b.tenant_id, &b.agent_type)?
        .ok_or_else(|| ApiError::NotFound("tenant".into()))?;
    let id = uuid::Uuid::now_v7().to_string();
    let request = RouteRequest {
        tenant_id: b.tenant_id,
        workload_type: b.workload_type,
        agent_type: b.agent_type,
        preferred_regions: b.preferred_regions.unwrap_or_default(),
        client_country: b.client_country,
        request_id: id.clone(),
        now_ms: now,
    };
    // Decide on exactly what a replay will read (see `RecordedInput`).
    let recorded = RecordedInput::split(context, &request)?;
    fleetscale_core::region::routing::validate_route_input(recorded.input())?;
    let decision = route(recorded.input()).map_err(|e| refused(&e))?;
    let rec = RoutingRecord {
        id,
        tenant_id: request.tenant_id,
        workload_type: request.workload_type,
        agent_type: request.agent_type,
        selected_region: decision.selected_region.clone(),
        input: recorded,
        decision,
        created_at_ms: now,
    };
    let answer = RouteView::from(&rec);
    s.recorder.record(rec).await.map_err(|e| {
        ApiError::Unavailable(format!(
            "the decision could not be recorded durably ({}), so it is not answered; nothing was recorded; retry",
            match e {
                RecordError::Stopped => "the decision writer is restarting",
                _ => "the database refused the batch",
            }
        ))
    })?;
    Ok(Json(answer))
}

/// The query of `GET /routing`; any other parameter is a 400 naming it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionQuery {
    tenant_id: Option<String>,
    workload_type: Option<String>,
    selected_region: Option<String>,
    since: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `since` as Unix ms: RFC 3339 or a whole number of Unix ms.
fn since_ms(since: Option<&str>) -> ApiResult<Option<i64>> {
    since
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .ok()
                .or_else(|| parse_rfc3339_ms(s))
                .ok_or_else(|| {
                    ApiError::field("since", "must be an RFC 3339 time or Unix milliseconds")
                })
        })
        .transpose()
}

/// Search recorded routing decisions, newest first.
#[utoipa::path(get, path = "/routing", tag = "routing",
    params(("tenant_id" = Option<String>, Query, description = "Only this tenant"), ("workload_type" = Option<String>, Query, description = "Only this workload type"), ("selected_region" = Option<String>, Query, description = "Only decisions that chose this region (name)"), ("since" = Option<String>, Query, description = "Only decisions made at or after this time (RFC 3339 or Unix ms)"), ("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "A page of decisions.", body = RoutingDecisionPage), (status = 400), (status = 401), (status = 404), (status = 422))
)]
async fn list_decisions(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<DecisionQuery>,
) -> ApiResult<Json<RoutingDecisionPage>> {
    let filter = RoutingFilter {
        tenant_id: tenant_scope(&s, &who, q.tenant_id.as_deref()).await?,
        workload_type: q.workload_type.filter(|w| !w.is_empty()),
        selected_region: q.selected_region.filter(|r| !r.is_empty()),
        since_ms: since_ms(q.since.as_deref())?,
    };
    let page = page(q.limit, q.cursor)?;
    let l = s
        .engine
        .store
        .list_routing_decisions(&filter, &page)
        .await?;
    Ok(Json(RoutingDecisionPage {
        items: l.items.iter().map(RouteView::from).collect(),
        next_cursor: l.next_cursor,
    }))
}

/// The decision `id`, if the caller may see it (404 otherwise).
async fn visible_decision(s: &AppState, who: &Principal, id: &str) -> ApiResult<RoutingRecord> {
    let r = s.engine.store.get_routing_decision(id).await?;
    who.see(&r.tenant_id, "routing decision")?;
    Ok(r)
}

/// One recorded routing decision, with the input that replays it.
#[utoipa::path(get, path = "/routing/{id}", tag = "routing",
    params(("id" = String, Path, description = "The decision's id")),
    responses((status = 200, description = "The decision and its input.", body = RoutingDecisionView), (status = 401), (status = 404))
)]
async fn get_decision(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<RoutingDecisionView>> {
    let r = visible_decision(&s, &who, &id).await?;
    let input: Value = r.input.to_value()?;
    Ok(Json(RoutingDecisionView {
        decision: RouteView::from(&r),
        input,
    }))
}

/// What a replay of a recorded decision gives today.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayView {
    /// The decision replayed.
    pub id: String,
    /// The region today's code selects from the stored input; `null` when
    /// it refuses (see `code`).
    pub selected_region: Option<String>,
    /// The region recorded.
    pub recorded_region: String,
    /// True when today's code selects the recorded region.
    pub same: bool,
    /// When today's code refuses: `no_compliant_region` or `no_available_region`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Recompute a recorded decision from its stored input with today's code.
#[utoipa::path(post, path = "/routing/{id}/replay", tag = "routing",
    params(("id" = String, Path, description = "The decision's id")),
    responses((status = 200, description = "The region selected today and whether it is the recorded one.", body = ReplayView), (status = 401), (status = 404))
)]
async fn replay(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<ReplayView>> {
    let r = visible_decision(&s, &who, &id).await?;
    let (selected_region, code) = match route(r.input.input()) {
        Ok(d) => (Some(d.selected_region), None),
        Err(e) => (None, Some(e.code().to_string())),
    };
    Ok(Json(ReplayView {
        id: r.id,
        same: selected_region.as_deref() == Some(r.selected_region.as_str()),
        selected_region,
        recorded_region: r.selected_region,
        code,
    }))
}

/// The body of `POST /routing/{id}/outcome`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeBody {
    /// Whether the work succeeded in the selected region.
    pub success: bool,
    /// Observed latency to the region, ms (0–3,600,000); recorded as a
    /// `latency_ms` region sample that later scores read.
    #[serde(default)]
    pub latency_ms: Option<f64>,
}

/// Longest latency an outcome may report, ms (a stated bound).
const MAX_OUTCOME_LATENCY_MS: f64 = 3_600_000.0;

/// A tenant's ejection state for one region.
#[derive(Debug, Serialize, ToSchema)]
pub struct EjectionView {
    /// The tenant.
    pub tenant_id: String,
    /// The region (name).
    pub region: String,
    /// Failures since the last success or ejection (5 eject).
    pub consecutive_failures: u32,
    /// Ejections so far (each lasts 30 s × this count, at most 300 s).
    pub ejections: u32,
    /// True while the region is ejected for the tenant.
    pub ejected: bool,
    /// Ejected until (RFC 3339), if ever ejected.
    pub ejected_until: Option<String>,
}

impl EjectionView {
    fn new(tenant_id: String, region: String, st: EjectionState, now: i64) -> Self {
        let Ejection {
            consecutive_failures,
            ejections,
            ejected_until_ms,
        } = st.ejection;
        EjectionView {
            tenant_id,
            region,
            consecutive_failures,
            ejections,
            ejected: st.ejection.is_ejected(now),
            ejected_until: ejected_until_ms.map(rfc3339),
        }
    }
}

/// Report the outcome of a routed workload: 5 consecutive failures eject
/// the region for the tenant (30 s × ejections, at most 300 s; never
/// overriding compliance); a success resets the count. Not idempotent:
/// report each outcome once.
#[utoipa::path(post, path = "/routing/{id}/outcome", tag = "routing",
    params(("id" = String, Path, description = "The decision's id")),
    request_body(content = OutcomeBody, content_type = "application/json", example = json!({"success": false, "latency_ms": 240})),
    responses((status = 200, description = "The tenant's ejection state for the selected region.", body = EjectionView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn outcome(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<OutcomeBody>,
) -> ApiResult<Json<EjectionView>> {
    who.require(Role::Operator)?;
    if let Some(l) = b.latency_ms {
        if !(0.0..=MAX_OUTCOME_LATENCY_MS).contains(&l) {
            return Err(ApiError::field(
                "latency_ms",
                "must be between 0 and 3600000 ms",
            ));
        }
    }
    let r = visible_decision(&s, &who, &id).await?;
    let now = now_ms();
    let success = b.success;
    let st = s
        .engine
        .store
        .update_ejection(&r.tenant_id, &r.selected_region, b.latency_ms, now, |e| {
            e.record(success, now)
        })
        .await?;
    Ok(Json(EjectionView::new(
        r.tenant_id,
        r.selected_region,
        st,
        now,
    )))
}
