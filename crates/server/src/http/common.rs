//! What the resource modules share: list parameters and paging, the 201
//! answer, the pool a token may see, the actuation status of a new event.

use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use fleetscale_core::{ActuationStatus, ProposalStatus, TriggerSource};
use fleetscale_engine::metrics::SourceLabel;
use fleetscale_store::{Page, Pool};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

/// What a handler answers: a value, or an [`ApiError`] rendered as problem JSON.
pub type ApiResult<T> = Result<T, ApiError>;

/// Common list parameters; any other parameter is a 400 naming it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this tenant.
    pub tenant_id: Option<String>,
    /// Only this pool.
    pub pool_id: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Page size, 1..=1000.
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
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
        page(self.limit, self.cursor.clone())
    }
}

/// The page that `limit` (1..=1000) and `cursor` (empty: the first page) ask for.
/// A cursor is the `next_cursor` of a previous page, an item id (a UUID);
/// anything else is a 400 naming the parameter.
pub fn page(limit: Option<i64>, cursor: Option<String>) -> ApiResult<Page> {
    let p = seq_page(limit, None)?;
    let cursor = cursor.filter(|c| !c.is_empty());
    if let Some(c) = &cursor {
        let issued = uuid::Uuid::parse_str(c).is_ok_and(|u| u.hyphenated().to_string() == *c);
        if !issued {
            return Err(bad_cursor());
        }
    }
    Ok(Page { cursor, ..p })
}

/// As [`page`], for a list whose cursor is a ledger position (an integer).
pub fn seq_page(limit: Option<i64>, cursor: Option<String>) -> ApiResult<Page> {
    let limit = match limit {
        None => None,
        Some(l) if (1..=1000).contains(&l) => Some(l as u32),
        Some(_) => return Err(ApiError::field("limit", "must be between 1 and 1000")),
    };
    let cursor = cursor.filter(|c| !c.is_empty());
    if cursor.as_deref().is_some_and(|c| c.parse::<i64>().is_err()) {
        return Err(bad_cursor());
    }
    Ok(Page { limit, cursor })
}

fn bad_cursor() -> ApiError {
    ApiError::BadRequest(
        "bad query parameter: cursor: must be the next_cursor of a previous page".into(),
    )
}

/// The tenant a list is filtered to, one rule for every list: a tenant
/// token sees its own tenant (naming another is a 404); a global token the
/// `tenant_id` it names, which must exist (404 otherwise), or every tenant
/// without one (an empty `tenant_id=` names none).
pub async fn tenant_scope(
    s: &AppState,
    who: &Principal,
    requested: Option<&str>,
) -> ApiResult<Option<String>> {
    let t = who.tenant_filter(requested.filter(|t| !t.is_empty()))?;
    if let (Some(t), None) = (&t, &who.tenant_id) {
        s.engine.store.get_tenant(t).await?;
    }
    Ok(t)
}

/// A 201 answer and its body.
pub type Created<T> = (StatusCode, Json<T>);

/// A 201 answer with `v` as its body.
pub fn created<T: Serialize>(v: T) -> Created<T> {
    (StatusCode::CREATED, Json(v))
}

/// The pool `id`, if the caller may see it (404 otherwise).
pub async fn visible_pool(s: &AppState, who: &Principal, id: &str) -> ApiResult<Pool> {
    let p = s.engine.store.get_pool(id).await?;
    who.see(&p.tenant_id, "pool")?;
    Ok(p)
}

/// The actuation status a new scaling event starts with: `pending` when an
/// actuator will deliver it, `none` otherwise.
pub fn actuation_status(s: &AppState) -> ActuationStatus {
    ActuationStatus::initial(s.engine.actuator.is_active())
}

/// Counts one applied scaling of `trigger_source` in the Prometheus metrics.
pub fn count_scaling(s: &AppState, trigger_source: TriggerSource) {
    s.engine
        .metrics
        .scalings
        .get_or_create(&SourceLabel {
            trigger_source: trigger_source.as_str().into(),
        })
        .inc();
}
