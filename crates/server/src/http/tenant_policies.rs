//! A tenant's region policy (`/tenants/{id}/region-policy`, the compliance
//! rules routing never breaks) and routing policy
//! (`/tenants/{id}/routing-policy`, how compliant regions are ranked).
//!
//! Both are parsed and validated by the core: an unknown field is a 422
//! naming it, a region name that does not exist is a 422 naming the field
//! that holds it. Reading needs any role on the tenant; writing needs the
//! operator role and is audited (`tenant.region_policy`,
//! `tenant.routing_policy`). A tenant-scoped token sees only its own tenant
//! (others are 404). A policy never set answers the default with
//! `"source": "default"`: the region policy allows everything, the routing
//! policy is `score` with weights 0.6 / 0.4 and a preferred bonus of 10.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::region::compliance::{validate_region_policy, RegionPolicy};
use fleetscale_core::region::routing::{validate_routing_policy, RoutingPolicy};
use fleetscale_store::{now_ms, rfc3339, TenantPolicy};

use super::common::ApiResult;
use super::core_schemas::{RegionPolicySchema, RoutingPolicySchema};
use crate::auth::{Principal, Role};
use crate::error::ApiJson;
use crate::AppState;

/// The tenant policy routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_region_policy, put_region_policy))
        .routes(routes!(get_routing_policy, put_routing_policy))
}

/// Where a policy answer comes from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    /// The tenant set it.
    Tenant,
    /// The tenant never set one: this is the default.
    Default,
}

/// A tenant's region policy and where it comes from.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegionPolicyView {
    /// The tenant.
    pub tenant_id: String,
    /// `tenant` when set, `default` when never set.
    pub source: PolicySource,
    /// When it was last set (RFC 3339); `null` for the default.
    pub updated_at: Option<String>,
    /// The policy.
    #[schema(value_type = RegionPolicySchema)]
    pub policy: RegionPolicy,
}

/// A tenant's routing policy and where it comes from.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingPolicyView {
    /// The tenant.
    pub tenant_id: String,
    /// `tenant` when set, `default` when never set.
    pub source: PolicySource,
    /// When it was last set (RFC 3339); `null` for the default.
    pub updated_at: Option<String>,
    /// The policy.
    #[schema(value_type = RoutingPolicySchema)]
    pub policy: RoutingPolicy,
}

/// The view of a stored policy, or of the default `P` when none is stored.
fn view<P: Default>(
    tenant_id: &str,
    stored: Option<TenantPolicy<P>>,
) -> (String, PolicySource, Option<String>, P) {
    match stored {
        Some(p) => (
            p.tenant_id,
            PolicySource::Tenant,
            Some(rfc3339(p.updated_at_ms)),
            p.policy,
        ),
        None => (
            tenant_id.to_string(),
            PolicySource::Default,
            None,
            P::default(),
        ),
    }
}

impl RegionPolicyView {
    fn new(tenant_id: &str, stored: Option<TenantPolicy<RegionPolicy>>) -> Self {
        let (tenant_id, source, updated_at, policy) = view(tenant_id, stored);
        RegionPolicyView {
            tenant_id,
            source,
            updated_at,
            policy,
        }
    }
}

impl RoutingPolicyView {
    fn new(tenant_id: &str, stored: Option<TenantPolicy<RoutingPolicy>>) -> Self {
        let (tenant_id, source, updated_at, policy) = view(tenant_id, stored);
        RoutingPolicyView {
            tenant_id,
            source,
            updated_at,
            policy,
        }
    }
}

/// Every region's name, for validation.
async fn known_regions(s: &AppState) -> ApiResult<Vec<String>> {
    Ok(s.engine.store.region_names().await?)
}

/// A tenant's region policy (the default, which allows everything, when never set).
#[utoipa::path(get, path = "/tenants/{id}/region-policy", tag = "routing",
    params(("id" = String, Path, description = "The tenant's id")),
    responses((status = 200, description = "The policy and its source.", body = RegionPolicyView), (status = 401), (status = 404))
)]
async fn get_region_policy(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<RegionPolicyView>> {
    who.see(&id, "tenant")?;
    let stored = s.engine.store.get_region_policy(&id).await?;
    Ok(Json(RegionPolicyView::new(&id, stored)))
}

/// Set a tenant's region policy (operator; audited as `tenant.region_policy`).
#[utoipa::path(put, path = "/tenants/{id}/region-policy", tag = "routing",
    params(("id" = String, Path, description = "The tenant's id")),
    request_body(content = RegionPolicySchema, content_type = "application/json", example = json!({"allowed_jurisdictions": ["eu", "us"], "data_residency": null, "restricted_workloads": {"us-east": ["medical"]}, "home_region": "eu-west"})),
    responses((status = 200, description = "The policy as stored.", body = RegionPolicyView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn put_region_policy(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(policy): ApiJson<RegionPolicy>,
) -> ApiResult<Json<RegionPolicyView>> {
    who.require(Role::Operator)?;
    who.see(&id, "tenant")?;
    let known = known_regions(&s).await?;
    let names: Vec<&str> = known.iter().map(String::as_str).collect();
    validate_region_policy(&policy, &names)?;
    let put = s
        .engine
        .store
        .put_region_policy(&id, &policy, &who.name, now_ms());
    Ok(Json(RegionPolicyView::new(&id, Some(put.await?))))
}

/// A tenant's routing policy (the default `score` policy when never set).
#[utoipa::path(get, path = "/tenants/{id}/routing-policy", tag = "routing",
    params(("id" = String, Path, description = "The tenant's id")),
    responses((status = 200, description = "The policy and its source.", body = RoutingPolicyView), (status = 401), (status = 404))
)]
async fn get_routing_policy(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<RoutingPolicyView>> {
    who.see(&id, "tenant")?;
    let stored = s.engine.store.get_routing_policy(&id).await?;
    Ok(Json(RoutingPolicyView::new(&id, stored)))
}

/// Set a tenant's routing policy (operator; audited as `tenant.routing_policy`).
#[utoipa::path(put, path = "/tenants/{id}/routing-policy", tag = "routing",
    params(("id" = String, Path, description = "The tenant's id")),
    request_body(content = RoutingPolicySchema, content_type = "application/json", example = json!({"type": "failover", "order": ["eu-west", "us-east"]})),
    responses((status = 200, description = "The policy as stored.", body = RoutingPolicyView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn put_routing_policy(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(policy): ApiJson<RoutingPolicy>,
) -> ApiResult<Json<RoutingPolicyView>> {
    who.require(Role::Operator)?;
    who.see(&id, "tenant")?;
    let known = known_regions(&s).await?;
    let names: Vec<&str> = known.iter().map(String::as_str).collect();
    validate_routing_policy(&policy, &names)?;
    let put = s
        .engine
        .store
        .put_routing_policy(&id, &policy, &who.name, now_ms());
    Ok(Json(RoutingPolicyView::new(&id, Some(put.await?))))
}
