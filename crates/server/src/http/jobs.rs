//! Job routing (the phase 92 shard router): `POST /jobs/route` places a job
//! in a region and queues it there; `POST /jobs/{id}/done` takes it out of
//! the queue.
//!
//! A route reads the tenant's region policy and the regions (jurisdiction,
//! stored mode, pressures, capacity score) from this replica's in-memory
//! routing view ([`fleetscale_engine::routing_view`]; fresh within a tick,
//! at once for this replica's own writes) and what changes per job
//! (budgets, jobs in queue, throughput) from the database
//! ([`fleetscale_store::Store::job_world_from`]), and decides with the
//! core's pure [`route_job`], in this order: **compliance** (the job type is the
//! workload type of the tenant's region policy; a hard filter) → **budget**
//! (each compliant region's budget is checked against
//! `estimated_cost_cents` without charging, as `POST
//! /regions/{id}/budget/check` does; a region it does not cover is not
//! eligible) → **mode gating** (frozen takes nothing, throttled only jobs
//! of at most 50 cents, cautious with a delay) → the requested `region`,
//! else the tenant's `home_region`, when it can take the job; else (or
//! without either) the best eligible region for the job's kind (lowest
//! pressure of the kind, then highest capacity score, then name), with
//! `fallback: true` when a home region was passed over.
//!
//! Refusals are 409 problems: `no_compliant_region` (the compliance filter
//! leaves nothing), `insufficient_budget` (compliant regions exist but no
//! budget covers the job), `no_available_region` (compliant regions with
//! budget exist but none accepts the job in its mode). A refused or invalid
//! request records nothing and charges nothing.
//!
//! An accepted job is recorded `queued` and counts 1 in its region's
//! `jobs_in_queue` (in the answer's wait estimates and in the region
//! state) until `POST /jobs/{id}/done`.
//!
//! Roles: both routes need the operator role (they write). A
//! tenant-scoped token routes and completes only its own tenant's jobs
//! (others are 404).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::budget::MAX_AMOUNT_CENTS;
use fleetscale_core::region::jobs::{
    route_job, JobRouteError, JobRouteInput, DEFAULT_ESTIMATED_COST_CENTS, DEFAULT_PRIORITY,
};
use fleetscale_core::region::mode::ScalingMode;
use fleetscale_core::region::state::JobType;
use fleetscale_core::Violations;
use fleetscale_store::{now_ms, rfc3339, JobStatus, JobWorld, RoutedJob};

use super::common::ApiResult;
use super::region_state::ScalingModeSchema;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiJson};
use crate::AppState;

/// The job routing routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(route))
        .routes(routes!(done))
}

/// A job type (`fleetscale_core::region::state::JobType`).
#[derive(ToSchema)]
#[schema(as = JobType)]
#[allow(dead_code, non_camel_case_types)] // documentation only
pub enum JobTypeSchema {
    /// Posting job (posting pressure).
    posting,
    /// Orchestration job (orchestration pressure).
    orchestration,
    /// Creative job (creative pressure).
    creative,
    /// Intelligence job (intel pressure).
    intel,
    /// Performance job (overall pressure).
    performance,
}

/// The body of `POST /jobs/route`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRouteBody {
    /// Tenant whose job it is (must exist).
    pub tenant_id: String,
    /// Region name to run it in if it can take the job; omitted or `null`:
    /// the tenant's `home_region`, if any.
    #[serde(default)]
    pub region: Option<String>,
    /// Job type; also the workload type of the tenant's region policy.
    #[schema(value_type = JobTypeSchema)]
    pub job_type: JobType,
    /// Priority, 1 (lowest) to 10 (highest); default 5.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10)]
    pub priority: Option<i64>,
    /// Estimated cost in cents, 0 to 1000000000000; default 100. Checked
    /// against each region's budget, never charged.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub estimated_cost_cents: Option<i64>,
}

/// Where a job was placed.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobRouteView {
    /// Job id (UUIDv7): `POST /jobs/{id}/done` when it is finished.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Job type.
    #[schema(value_type = JobTypeSchema)]
    pub job_type: JobType,
    /// Region name.
    pub region: String,
    /// Stable shard key: 16 hex digits of FNV-1a 64 of tenant, job type
    /// and region (the same for the same three).
    pub shard_key: String,
    /// Priority adjusted by the region's pressure of the job's kind
    /// (overall for `performance`): kept below 50, lowered by 1 from 50,
    /// by 2 from 75, within 1–10.
    pub priority: u8,
    /// `delay_ms` + ⌈jobs in queue × 60000 ÷ throughput per minute⌉ (jobs
    /// in queue: the newest `queue_depth` sample plus the queued routed
    /// jobs; throughput: routed jobs done in the last 15 min ÷ 15, at
    /// least 1 per minute).
    pub estimated_wait_ms: u64,
    /// The region's scaling mode.
    #[schema(value_type = ScalingModeSchema)]
    pub mode: ScalingMode,
    /// Delay the mode imposes, ms: cautious 1000 + 50 × overall pressure,
    /// throttled twice that, normal 0.
    pub delay_ms: u64,
    /// True when the requested or home region could not take the job.
    pub fallback: bool,
    /// Why, in words.
    pub reason: String,
    /// Estimated cost, cents.
    pub estimated_cost_cents: i64,
    /// When accepted (RFC 3339).
    pub created_at: String,
}

/// A routed job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// Job id.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Region name.
    pub region: String,
    /// Job type.
    #[schema(value_type = JobTypeSchema)]
    pub job_type: JobType,
    /// Priority as answered when routed.
    pub priority: u8,
    /// Estimated cost, cents.
    pub estimated_cost_cents: i64,
    /// Shard key as answered when routed.
    pub shard_key: String,
    /// `queued` or `done`.
    pub status: String,
    /// When accepted (RFC 3339).
    pub created_at: String,
    /// When marked done (RFC 3339), `null` while queued.
    pub done_at: Option<String>,
}

impl From<RoutedJob> for JobView {
    fn from(j: RoutedJob) -> Self {
        JobView {
            id: j.id,
            tenant_id: j.tenant_id,
            region: j.region,
            job_type: j.job_type,
            priority: j.priority,
            estimated_cost_cents: j.estimated_cost_cents,
            shard_key: j.shard_key,
            status: j.status.as_str().into(),
            created_at: rfc3339(j.created_at_ms),
            done_at: j.done_at_ms.map(rfc3339),
        }
    }
}

/// Checks the body's own fields (each naming its field), before any read;
/// returns (priority, estimated cost).
fn validate(b: &JobRouteBody) -> Result<(u8, i64), Violations> {
    let mut v = Violations::default();
    v.check_name("tenant_id", &b.tenant_id);
    if let Some(r) = &b.region {
        v.check_name("region", r);
    }
    let priority = b.priority.unwrap_or(i64::from(DEFAULT_PRIORITY));
    v.check_i64("priority", priority, 1, 10);
    let cost = b
        .estimated_cost_cents
        .unwrap_or(DEFAULT_ESTIMATED_COST_CENTS);
    v.check_i64("estimated_cost_cents", cost, 0, MAX_AMOUNT_CENTS);
    v.into_result((u8::try_from(priority).unwrap_or(0), cost))
}

/// The 409 of a refused job, or the 422 of an invalid one.
fn refused(e: JobRouteError, world: &JobWorld, cost: i64) -> ApiError {
    let detail = match &e {
        JobRouteError::Invalid(v) => return ApiError::Validation(v.clone()),
        JobRouteError::InsufficientBudget => {
            let list: Vec<String> = world
                .regions
                .iter()
                .map(|r| format!("{}: {} cents remaining", r.name, r.budget.remaining_cents))
                .collect();
            format!(
                "{e} ({cost} cents estimated; {}); nothing was charged or recorded",
                list.join(", ")
            )
        }
        _ => {
            let list: Vec<String> = world
                .regions
                .iter()
                .map(|r| format!("{} ({})", r.name, r.mode))
                .collect();
            format!("{e}; regions: {}; nothing was recorded", list.join(", "))
        }
    };
    ApiError::Conflict {
        code: e.code(),
        detail,
    }
}

/// Route a job: compliance, budget (checked, not charged), mode gating, then
/// the requested or home region, else the best region for the job's kind.
///
/// Policies and region states are read from this replica's in-memory
/// routing view (reloaded every tick on every replica; at once after a
/// change made through this replica); budgets, queues and throughput are
/// read from the database for each job.
#[utoipa::path(post, path = "/jobs/route", tag = "jobs",
    request_body(content = JobRouteBody, content_type = "application/json", example = json!({"tenant_id": "TENANT_ID", "region": "eu-west", "job_type": "creative", "priority": 5, "estimated_cost_cents": 100})),
    responses((status = 200, description = "Where the job goes; it is queued there until done.", body = JobRouteView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422))
)]
async fn route(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<JobRouteBody>,
) -> ApiResult<Json<JobRouteView>> {
    who.require(Role::Operator)?;
    let (priority, cost) = validate(&b)?;
    who.see(&b.tenant_id, "tenant")?;
    let now = now_ms();
    let view = s.engine.routing_view.for_tenant(&b.tenant_id).await?;
    let world = s
        .engine
        .store
        .job_world_from(&view.snapshot, &b.tenant_id, now)
        .await?;
    let input = JobRouteInput {
        tenant_id: b.tenant_id,
        region: b.region,
        job_type: b.job_type,
        priority,
        estimated_cost_cents: cost,
        region_policy: world.region_policy.clone().unwrap_or_default(),
        regions: world.regions.iter().map(|r| r.job_region(cost)).collect(),
    };
    let r = route_job(&input).map_err(|e| refused(e, &world, cost))?;
    let region_id = world
        .regions
        .iter()
        .find(|x| x.name == r.region)
        .map(|x| x.region_id.clone())
        .ok_or_else(|| ApiError::NotFound("region".into()))?;
    let job = RoutedJob {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: input.tenant_id,
        region_id,
        region: r.region.clone(),
        job_type: input.job_type,
        priority: r.priority,
        estimated_cost_cents: cost,
        shard_key: r.shard_key.clone(),
        status: JobStatus::Queued,
        created_at_ms: now,
        done_at_ms: None,
    };
    s.engine.store.record_routed_job(&job).await?;
    Ok(Json(JobRouteView {
        id: job.id,
        tenant_id: job.tenant_id,
        job_type: job.job_type,
        region: r.region,
        shard_key: r.shard_key,
        priority: r.priority,
        estimated_wait_ms: r.estimated_wait_ms,
        mode: r.mode,
        delay_ms: r.delay_ms,
        fallback: r.fallback,
        reason: r.reason,
        estimated_cost_cents: cost,
        created_at: rfc3339(now),
    }))
}

/// Mark a routed job done: it leaves its region's queue. 409
/// `conflict` when it is already done.
#[utoipa::path(post, path = "/jobs/{id}/done", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, description = "The job, done.", body = JobView), (status = 401), (status = 403), (status = 404), (status = 409))
)]
async fn done(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    who.require(Role::Operator)?;
    let job = s.engine.store.get_routed_job(&id).await?;
    who.see(&job.tenant_id, "job")?;
    let job = s.engine.store.mark_routed_job_done(&id, now_ms()).await?;
    Ok(Json(job.into()))
}
