//! Tenants (`/tenants`) and the API tokens that act on them (`/tokens`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::Violations;
use fleetscale_store::{StoreError, TokenGrant, TokenInfo};

use super::common::{created, tenant_scope, ApiResult, Created, ListQuery};
use super::views::{TenantPage, TenantView, TokenPage};
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

/// The body of `POST /tenants`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    /// Unique name, at most 128 characters.
    pub name: String,
}

/// Create a tenant (global admin).
#[utoipa::path(post, path = "/tenants", tag = "tenants",
    request_body(content = TenantBody, content_type = "application/json", example = json!({"name": "acme"})),
    responses((status = 201, description = "The tenant, with its id.", body = TenantView), (status = 400), (status = 401), (status = 403), (status = 409), (status = 422))
)]
async fn create_tenant(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<TenantBody>,
) -> ApiResult<Created<TenantView>> {
    who.require_global_admin()?;
    let mut v = Violations::default();
    v.check_text("name", &b.name, 128);
    v.into_result(())?;
    let tenant = s
        .engine
        .store
        .create_tenant(b.name.trim(), &who.name)
        .await?;
    Ok(created(tenant.into()))
}

/// List the tenants visible to the token.
#[utoipa::path(get, path = "/tenants", tag = "tenants",
    params(("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "A page of tenants.", body = TenantPage), (status = 401), (status = 422))
)]
async fn list_tenants(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<TenantPage>> {
    let only = tenant_scope(&s, &who, q.tenant_id.as_deref()).await?;
    let page = q.page()?;
    let tenants = s.engine.store.list_tenants(only.as_deref(), &page).await?;
    Ok(Json(tenants.into()))
}

/// One tenant.
#[utoipa::path(get, path = "/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The tenant.", body = TenantView), (status = 401), (status = 404))
)]
async fn get_tenant(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<TenantView>> {
    who.see(&id, "tenant")?;
    Ok(Json(s.engine.store.get_tenant(&id).await?.into()))
}

/// The body of `POST /tokens`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// Tenant the token acts for; omitted only for a global admin token.
    pub tenant_id: Option<String>,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Human name, used as the audit actor (at most 128 characters).
    pub name: String,
}

impl TokenBody {
    /// Every rule the body breaks for a token issued by `who`.
    fn check(&self, who: &Principal) -> Result<(), Violations> {
        let mut v = Violations::default();
        v.check_text("name", &self.name, 128);
        let role = Role::parse(&self.role);
        if role.is_none() {
            v.push("role", "must be one of admin, operator, viewer");
        }
        if self.tenant_id.is_none() && !who.is_global_admin() {
            v.push("tenant_id", "is required for a tenant admin");
        }
        if self.tenant_id.is_none() && role != Some(Role::Admin) {
            v.push(
                "tenant_id",
                "is required unless the role is admin (a global admin token)",
            );
        }
        v.into_result(())
    }
}

/// A new token: the secret (shown this once) and its grant.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewTokenView {
    /// Token id.
    pub id: String,
    /// The bearer token itself; only its hash is kept.
    pub token: String,
    /// Tenant the token is scoped to; `null` for a global admin.
    pub tenant_id: Option<String>,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Human name, used as the audit actor.
    pub name: String,
}

/// Issue a tenant-scoped token (admin); the token is shown once.
#[utoipa::path(post, path = "/tokens", tag = "tokens",
    request_body(content = TokenBody, content_type = "application/json", example = json!({"tenant_id": "TENANT_ID", "role": "operator", "name": "ci"})),
    responses((status = 201, description = "The token (shown once) and its metadata.", body = NewTokenView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn create_token(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<TokenBody>,
) -> ApiResult<Created<NewTokenView>> {
    who.require(Role::Admin)?;
    b.check(&who)?;
    if let Some(t) = &b.tenant_id {
        who.see(t, "tenant")?;
        s.engine.store.get_tenant(t).await?;
    }
    let token = generate_token();
    let (hash, tenant) = (hash_token(&token), b.tenant_id.as_deref());
    let store = &s.engine.store;
    let grant = store
        .insert_token(&hash, tenant, &b.role, &b.name, &who.name)
        .await?;
    Ok(created(NewTokenView::new(grant, token)))
}

impl NewTokenView {
    /// The answer for `grant`, issued as `token`.
    fn new(grant: TokenGrant, token: String) -> Self {
        let TokenGrant {
            id,
            tenant_id,
            role,
            name,
        } = grant;
        NewTokenView {
            id,
            token,
            tenant_id,
            role,
            name,
        }
    }
}

/// List the stored tokens the caller administers (never the tokens
/// themselves): all for the global admin (`tenant_id` narrows), the tenant's
/// own for a tenant admin.
#[utoipa::path(get, path = "/tokens", tag = "tokens",
    params(("tenant_id" = Option<String>, Query, description = "Only this tenant's tokens"), ("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "A page of tokens (never the secrets).", body = TokenPage), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn list_tokens(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<TokenPage>> {
    who.require(Role::Admin)?;
    let only = tenant_scope(&s, &who, q.tenant_id.as_deref()).await?;
    let page = q.page()?;
    let tokens = s.engine.store.list_tokens(only.as_deref(), &page).await?;
    Ok(Json(tokens.into()))
}

/// The stored token `id`, if the caller administers it (404 otherwise: a
/// tenant admin does not see global tokens).
async fn visible_token(s: &AppState, who: &Principal, id: &str) -> ApiResult<TokenInfo> {
    let token = s.engine.store.get_token(id).await?;
    match &token.tenant_id {
        Some(t) => who.see(t, "token")?,
        None if !who.is_global_admin() => return Err(ApiError::NotFound("token".into())),
        None => {}
    }
    Ok(token)
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
) -> ApiResult<StatusCode> {
    who.require(Role::Admin)?;
    visible_token(&s, &who, &id).await?;
    let keep_last = s.admin_token_hash.is_none();
    let revoked = s.engine.store.revoke_token(&id, &who.name, keep_last).await;
    let hash = revoked.map_err(|e| match e {
        StoreError::Conflict { what } => ApiError::Conflict {
            code: "last_admin_token",
            detail: what,
        },
        other => other.into(),
    })?;
    s.tokens.forget(&hash, std::time::Instant::now());
    Ok(StatusCode::NO_CONTENT)
}
