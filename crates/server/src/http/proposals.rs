//! Scaling proposals of recommend-mode pools (`/proposals`): listed, and
//! approved (applied and actuated) or rejected by an operator.

use axum::extract::{Path, Request, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::{ProposalStatus, TriggerSource};
use fleetscale_store::{now_ms, Proposal, ScaleRequest, ScalingEvent};

use super::common::{actuation_status, tenant_scope, ApiResult, ListQuery};
use super::views::{EventView, ProposalPage, ProposalView};
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiQuery};
use crate::AppState;

/// The proposal routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_proposals))
        .routes(routes!(get_proposal))
        .routes(routes!(approve))
        .routes(routes!(reject))
}

/// List scaling proposals of recommend-mode pools.
#[utoipa::path(get, path = "/proposals", tag = "proposals",
    params(("tenant_id" = Option<String>, Query, description = "Only this tenant"), ("pool_id" = Option<String>, Query, description = "Only this pool"), ("status" = Option<String>, Query, description = "Only this status"), ("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "A page of proposals.", body = ProposalPage), (status = 401), (status = 422))
)]
async fn list_proposals(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ProposalPage>> {
    let tenant = tenant_scope(&s, &who, q.tenant_id.as_deref()).await?;
    let (status, page) = (q.proposal_status()?, q.page()?);
    let proposals = s
        .engine
        .store
        .list_proposals(tenant.as_deref(), status, &page);
    Ok(Json(proposals.await?.into()))
}

/// One proposal.
#[utoipa::path(get, path = "/proposals/{id}", tag = "proposals",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The proposal.", body = ProposalView), (status = 401), (status = 404))
)]
async fn get_proposal(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<ProposalView>> {
    let p = s.engine.store.get_proposal(&id).await?;
    who.see(&p.tenant_id, "proposal")?;
    Ok(Json(p.into()))
}

/// The optional body of an approval or a rejection (an empty body is none).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleBody {
    /// Operator note, kept with the proposal: at most 1000 characters.
    pub note: Option<String>,
}

async fn settle_body(req: Request) -> ApiResult<SettleBody> {
    let bytes = axum::body::to_bytes(req.into_body(), crate::error::MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::body_too_large())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(SettleBody::default());
    }
    let b: SettleBody = crate::error::parse_json(&bytes)?;
    if let Some(note) = &b.note {
        let mut v = fleetscale_core::Violations::default();
        v.check_text("note", note, MAX_NOTE_CHARS);
        v.into_result(())?;
    }
    Ok(b)
}

/// Longest operator note kept with a settled proposal, characters.
pub const MAX_NOTE_CHARS: usize = 1000;

/// A settled proposal and, for an approval, its scaling event.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettledView {
    /// The proposal, now approved or rejected.
    pub proposal: ProposalView,
    /// The scaling event an approval made; `null` for a rejection, or when
    /// the capacity did not change.
    pub event: Option<EventView>,
}

/// Approve a pending proposal: the change is applied and actuated.
#[utoipa::path(post, path = "/proposals/{id}/approve", tag = "proposals",
    params(("id" = String, Path, description = "The object's id")),
    request_body(content = Option<SettleBody>, content_type = "application/json", description = "Optional."),
    responses((status = 200, description = "The settled proposal and its scaling event.", body = SettledView), (status = 401), (status = 403), (status = 404), (status = 409))
)]
async fn approve(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Json<SettledView>> {
    settle(s, who, id, true, settle_body(req).await?).await
}

/// Reject a pending proposal.
#[utoipa::path(post, path = "/proposals/{id}/reject", tag = "proposals",
    params(("id" = String, Path, description = "The object's id")),
    request_body(content = Option<SettleBody>, content_type = "application/json", description = "Optional."),
    responses((status = 200, description = "The settled proposal.", body = SettledView), (status = 401), (status = 403), (status = 404), (status = 409))
)]
async fn reject(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Json<SettledView>> {
    settle(s, who, id, false, settle_body(req).await?).await
}

/// Approves (applies) or rejects the pending proposal `id`.
async fn settle(
    s: AppState,
    who: Principal,
    id: String,
    approved: bool,
    b: SettleBody,
) -> ApiResult<Json<SettledView>> {
    who.require(Role::Operator)?;
    let p = pending_proposal(&s, &who, &id).await?;
    let now = now_ms();
    let event = match approved {
        true => apply(&s, &who, &p, now).await?,
        false => None,
    };
    let event_id = event.as_ref().map(|e| e.id.as_str());
    let settled = s
        .engine
        .store
        .settle_proposal(&id, approved, &who.name, b.note.as_deref(), event_id, now)
        .await?;
    Ok(Json(SettledView {
        proposal: settled.into(),
        event: event.map(EventView::from),
    }))
}

/// The proposal `id` if `who` may see it (404) and it is pending (409 `not_pending`).
async fn pending_proposal(s: &AppState, who: &Principal, id: &str) -> ApiResult<Proposal> {
    let p = s.engine.store.get_proposal(id).await?;
    who.see(&p.tenant_id, "proposal")?;
    if p.status != ProposalStatus::Pending {
        return Err(ApiError::Conflict {
            code: "not_pending",
            detail: format!("proposal is {}, not pending", p.status),
        });
    }
    Ok(p)
}

/// Applies an approved proposal's change (409 `locked` when the safety
/// lock holds the pool): the event, or `None` if the size did not change.
async fn apply(
    s: &AppState,
    who: &Principal,
    p: &Proposal,
    now: i64,
) -> ApiResult<Option<ScalingEvent>> {
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
            actuation_status: actuation_status(s),
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
    Ok(out.event)
}
