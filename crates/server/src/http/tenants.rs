//! Tenants (`/tenants`) and the API tokens that act on them (`/tokens`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::Violations;

use super::common::{created, ApiResult, ListQuery};
use crate::auth::{generate_token, hash_token, Principal, Role};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::AppState;

/// The tenant and token routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant))
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
}

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
