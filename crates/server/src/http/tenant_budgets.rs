//! The tenant provider budget API (`/api/v1/budgets/tenants/...`): a
//! tenant's tier, per-provider allocations (phase 66 tier defaults, or an
//! override), prices and hard/soft limits, usage recording, the usage ledger
//! and its check, and the month's projection and cost.
//!
//! Units are whole tokens (characters for ElevenLabs); a fractional,
//! string, negative, zero or oversized amount is a 422 naming the field. A
//! usage a hard-limited budget cannot cover is a 409 with code
//! `provider_budget_exceeded` and records nothing. A viewer reads, an
//! operator records usage and checks the ledger; the tier and the provider
//! settings are the platform's (global admin only: a tenant may not raise
//! its own plan); a tenant-scoped token sees only its own tenant (others
//! are 404). Every mutation is audited.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::budget::{check_idempotency_key, Provider, Tier};
use fleetscale_core::provider_budget::{
    check_allocation, check_price, check_units, UsageError, MAX_ALLOCATION_UNITS,
    MAX_PRICE_CENTS_PER_MILLION, MAX_USAGE_UNITS,
};
use fleetscale_core::Violations;
use fleetscale_store::{now_ms, ProviderSettings, UsageRecordError, UsageRequest};

use super::common::{page, tenant_scope, ApiResult};
use super::tenant_budget_views::{
    ProviderBudgetView, ProvidersView, TenantBudgetPage, TenantBudgetView, TenantLedgerView,
    UsageOutcomeView, UsagePage,
};

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::AppState;

/// The tenant budget routes, relative to `/api/v1`, with their OpenAPI operations.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, set_tier))
        .routes(routes!(providers))
        .routes(routes!(provider, set_provider))
        .routes(routes!(record, usage_list))
        .routes(routes!(ledger_check))
}

const PROVIDER_NAMES: &str = "claude, gemini, openai, elevenlabs, perplexity";

/// Reads a whole number in `lo..=hi` from JSON, with a message for each way
/// it can be wrong; `what` names the unit ("tokens", "cents per million units").
fn whole(v: &mut Violations, field: &str, raw: &Value, what: &str, lo: i64, hi: i64) -> i64 {
    match raw {
        Value::Null => v.push(field, format!("is required (a whole number of {what})")),
        Value::Number(n) => match n.as_i64() {
            Some(i) if i < lo => v.push(
                field,
                if lo == 1 {
                    format!("must be a positive whole number of {what} (>= 1)")
                } else {
                    format!("must be at least {lo} {what}")
                },
            ),
            Some(i) if i > hi => v.push(
                field,
                format!("is too large (overflow guard): at most {hi} {what}"),
            ),
            Some(i) => return i,
            None if n.is_u64() => v.push(
                field,
                format!("is too large (overflow): at most {hi} {what}"),
            ),
            None => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() != 0.0 {
                    v.push(
                        field,
                        format!("must be a whole number of {what}, not a fraction"),
                    );
                } else {
                    v.push(
                        field,
                        format!("is out of range (overflow): must be between {lo} and {hi} {what}"),
                    );
                }
            }
        },
        _ => v.push(
            field,
            format!("must be a whole number of {what} (a JSON number, not a string)"),
        ),
    }
    0
}

fn parse_provider(v: &mut Violations, field: &str, name: &str) -> Option<Provider> {
    let p = Provider::parse(name);
    if p.is_none() {
        v.push(field, format!("must be one of {PROVIDER_NAMES}"));
    }
    p
}

fn path_provider(name: &str) -> ApiResult<Provider> {
    Provider::parse(name)
        .ok_or_else(|| ApiError::NotFound(format!("provider {name:?} (known: {PROVIDER_NAMES})")))
}

fn usage_err(e: UsageRecordError) -> ApiError {
    match e {
        UsageRecordError::Refused(u @ UsageError::OverAllocation { .. }) => ApiError::Conflict {
            code: "provider_budget_exceeded",
            detail: format!("{u}; nothing was recorded"),
        },
        UsageRecordError::Refused(u) => ApiError::field("units", format!("is refused: {u}")),
        e @ UsageRecordError::IdempotencyMismatch { .. } => ApiError::Conflict {
            code: "idempotency_key_reused",
            detail: e.to_string(),
        },
        UsageRecordError::Store(s) => s.into(),
        other => ApiError::Internal(Box::new(other)),
    }
}

/// The list parameters of `/budgets/tenants`; any other is a 400 naming it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantListQuery {
    tenant_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Every visible tenant's provider budgets.
#[utoipa::path(get, path = "/budgets/tenants", tag = "tenant budgets",
    operation_id = "tenant_budgets_list",
    params(("tenant_id" = Option<String>, Query, description = "Only this tenant"), ("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "A page of tenant budgets.", body = TenantBudgetPage), (status = 401), (status = 422))
)]
async fn list(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<TenantListQuery>,
) -> ApiResult<Json<TenantBudgetPage>> {
    let only = tenant_scope(&s, &who, q.tenant_id.as_deref()).await?;
    let page = page(q.limit, q.cursor)?;
    let store = &s.engine.store;
    let budgets = store.list_tenant_budgets(only.as_deref(), &page, now_ms());
    Ok(Json(budgets.await?.into()))
}

/// A tenant's tier, providers, usage and monthly projection.
#[utoipa::path(get, path = "/budgets/tenants/{tenant}", tag = "tenant budgets",
    operation_id = "tenant_budget_show",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's budgets.", body = TenantBudgetView), (status = 401), (status = 404))
)]
async fn show(
    State(s): State<AppState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> ApiResult<Json<TenantBudgetView>> {
    who.see(&tenant, "tenant")?;
    let budget = s.engine.store.tenant_budget(&tenant, now_ms()).await?;
    Ok(Json(budget.into()))
}

/// The body of `PUT /budgets/tenants/{tenant}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierBody {
    /// `soft_launch`, `hard_launch` or `growth`.
    pub tier: String,
}

/// Set a tenant's tier (global admin).
#[utoipa::path(put, path = "/budgets/tenants/{tenant}", tag = "tenant budgets",
    operation_id = "tenant_budget_set_tier",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body(content = TierBody, content_type = "application/json", example = json!({"tier": "growth"})),
    responses((status = 200, description = "The tenant's budgets.", body = TenantBudgetView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn set_tier(
    State(s): State<AppState>,
    who: Principal,
    Path(tenant): Path<String>,
    ApiJson(b): ApiJson<TierBody>,
) -> ApiResult<Json<TenantBudgetView>> {
    who.see(&tenant, "tenant")?;
    // A tenant's plan and provider allocations are the platform's to set.
    who.require_global_admin()?;
    let tier = Tier::parse(&b.tier)
        .ok_or_else(|| ApiError::field("tier", "must be soft_launch, hard_launch or growth"))?;
    let store = &s.engine.store;
    let budget = store.set_tenant_tier(&tenant, tier, &who.name, now_ms());
    Ok(Json(budget.await?.into()))
}

/// A tenant's provider budgets.
#[utoipa::path(get, path = "/budgets/tenants/{tenant}/providers", tag = "tenant budgets",
    operation_id = "tenant_budget_providers",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The providers, with the tier, month and cost projection.", body = ProvidersView), (status = 401), (status = 404))
)]
async fn providers(
    State(s): State<AppState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> ApiResult<Json<ProvidersView>> {
    who.see(&tenant, "tenant")?;
    let budget = s.engine.store.tenant_budget(&tenant, now_ms()).await?;
    Ok(Json(budget.into()))
}

/// One provider budget of a tenant.
#[utoipa::path(get, path = "/budgets/tenants/{tenant}/providers/{provider}", tag = "tenant budgets",
    operation_id = "tenant_budget_provider",
    params(("tenant" = String, Path, description = "Tenant id"), ("provider" = String, Path, description = "claude, gemini, openai, elevenlabs or perplexity")),
    responses((status = 200, description = "The provider budget.", body = ProviderBudgetView), (status = 401), (status = 404))
)]
async fn provider(
    State(s): State<AppState>,
    who: Principal,
    Path((tenant, provider)): Path<(String, String)>,
) -> ApiResult<Json<ProviderBudgetView>> {
    who.see(&tenant, "tenant")?;
    let p = path_provider(&provider)?;
    let b = s.engine.store.tenant_budget(&tenant, now_ms()).await?;
    let one = b
        .providers
        .into_iter()
        .find(|x| x.month.provider == p)
        .ok_or_else(|| ApiError::NotFound("provider".into()))?;
    Ok(Json(one.into()))
}

/// The body of `PUT /budgets/tenants/{tenant}/providers/{provider}`: every
/// setting (omitted ones return to their defaults).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderBody {
    /// Allocation override in the provider's unit; omitted or `null`
    /// restores the tier's default.
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub allocation_units: Value,
    /// Price in cents per million units; omitted or `null` leaves it unpriced.
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub price_cents_per_million: Value,
    /// Refuse usage above the allocation (409 `provider_budget_exceeded`).
    #[serde(default)]
    pub hard_limit: bool,
}

impl ProviderBody {
    /// The settings for provider `p`, or every rule the body breaks.
    fn settings(&self, p: Provider) -> Result<ProviderSettings, Violations> {
        let mut v = Violations::default();
        let allocation = (!self.allocation_units.is_null()).then(|| {
            let a = whole(
                &mut v,
                "allocation_units",
                &self.allocation_units,
                p.unit(),
                0,
                MAX_ALLOCATION_UNITS,
            );
            check_allocation(&mut v, "allocation_units", a);
            a
        });
        let price = (!self.price_cents_per_million.is_null()).then(|| {
            let c = whole(
                &mut v,
                "price_cents_per_million",
                &self.price_cents_per_million,
                "cents per million units",
                0,
                MAX_PRICE_CENTS_PER_MILLION,
            );
            check_price(&mut v, "price_cents_per_million", c);
            c
        });
        v.into_result(ProviderSettings {
            allocation_units: allocation,
            price_cents_per_million: price,
            hard_limit: self.hard_limit,
        })
    }
}

/// Set a provider's allocation, price and hard limit (global admin).
#[utoipa::path(put, path = "/budgets/tenants/{tenant}/providers/{provider}", tag = "tenant budgets",
    operation_id = "tenant_budget_set_provider",
    params(("tenant" = String, Path, description = "Tenant id"), ("provider" = String, Path, description = "claude, gemini, openai, elevenlabs or perplexity")),
    request_body(content = ProviderBody, content_type = "application/json", example = json!({"allocation_units": 5000000, "price_cents_per_million": 300, "hard_limit": true})),
    responses((status = 200, description = "The provider budget.", body = ProviderBudgetView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn set_provider(
    State(s): State<AppState>,
    who: Principal,
    Path((tenant, provider)): Path<(String, String)>,
    ApiJson(b): ApiJson<ProviderBody>,
) -> ApiResult<Json<ProviderBudgetView>> {
    who.see(&tenant, "tenant")?;
    // A tenant's plan and provider allocations are the platform's to set.
    who.require_global_admin()?;
    let p = path_provider(&provider)?;
    let settings = b.settings(p)?;
    let store = &s.engine.store;
    let budget = store.set_provider_budget(&tenant, p, &settings, &who.name, now_ms());
    Ok(Json(budget.await?.into()))
}

/// The body of a usage record.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageBody {
    /// `claude`, `gemini`, `openai`, `elevenlabs` or `perplexity`.
    pub provider: String,
    /// Units used (tokens, or characters for ElevenLabs), a positive whole number.
    #[serde(default)]
    #[schema(value_type = i64, required = true)]
    pub units: Value,
    /// Job type, for the breakdown.
    pub job_type: Option<String>,
    /// Idempotency key: a retry with it records nothing more.
    pub idempotency_key: Option<String>,
    /// Description, at most 500 characters.
    pub description: Option<String>,
}

impl UsageBody {
    /// The provider and the units, or every rule the body breaks.
    fn check(&self) -> Result<(Provider, i64), ApiError> {
        let mut v = Violations::default();
        let p = parse_provider(&mut v, "provider", &self.provider);
        let unit = p.map_or("units", Provider::unit);
        let units = whole(&mut v, "units", &self.units, unit, 1, MAX_USAGE_UNITS);
        if v.is_empty() {
            check_units(&mut v, "units", units);
        }
        if let Some(j) = &self.job_type {
            v.check_name("job_type", j);
        }
        if let Some(k) = &self.idempotency_key {
            check_idempotency_key(&mut v, "idempotency_key", k);
        }
        if let Some(d) = &self.description {
            v.check_text("description", d, 500);
        }
        match (p, v.is_empty()) {
            (Some(provider), true) => Ok((provider, units)),
            _ => Err(ApiError::Validation(v)),
        }
    }
}

/// Record provider usage (idempotent; a hard limit refuses with 409).
#[utoipa::path(post, path = "/budgets/tenants/{tenant}/usage", tag = "tenant budgets",
    operation_id = "tenant_budget_record_usage",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body(content = UsageBody, content_type = "application/json", example = json!({"provider": "claude", "units": 1200, "job_type": "creative", "idempotency_key": "call-77"})),
    responses((status = 200, description = "The usage entry, remaining and status.", body = UsageOutcomeView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422))
)]
async fn record(
    State(s): State<AppState>,
    who: Principal,
    Path(tenant): Path<String>,
    ApiJson(b): ApiJson<UsageBody>,
) -> ApiResult<Json<UsageOutcomeView>> {
    who.see(&tenant, "tenant")?;
    who.require(Role::Operator)?;
    let (provider, units) = b.check()?;
    let req = UsageRequest {
        tenant_id: tenant,
        provider,
        units,
        job_type: b.job_type,
        idempotency_key: b.idempotency_key,
        description: b.description,
        actor: who.name.clone(),
        now_ms: now_ms(),
    };
    let recorded = s.engine.store.record_usage(&req).await.map_err(usage_err)?;
    Ok(Json(recorded.into()))
}

/// The parameters of the usage ledger.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    provider: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// The usage ledger, newest first.
#[utoipa::path(get, path = "/budgets/tenants/{tenant}/usage", tag = "tenant budgets",
    operation_id = "tenant_budget_usage",
    params(("tenant" = String, Path, description = "Tenant id"), ("provider" = Option<String>, Query, description = "Only this provider: claude, gemini, openai, elevenlabs or perplexity"), ("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "A page of usage records.", body = UsagePage), (status = 401), (status = 404), (status = 422))
)]
async fn usage_list(
    State(s): State<AppState>,
    who: Principal,
    Path(tenant): Path<String>,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> ApiResult<Json<UsagePage>> {
    who.see(&tenant, "tenant")?;
    let provider = q.provider()?;
    let page = page(q.limit, q.cursor)?;
    let store = &s.engine.store;
    Ok(Json(
        store.usage_records(&tenant, provider, &page).await?.into(),
    ))
}

impl UsageQuery {
    /// The provider asked for, `None` for every provider (400 when unknown).
    fn provider(&self) -> ApiResult<Option<Provider>> {
        match self.provider.as_deref() {
            None | Some("") => Ok(None),
            Some(n) => Provider::parse(n).map(Some).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "bad query parameter: provider must be one of {PROVIDER_NAMES}"
                ))
            }),
        }
    }
}

/// Replay the usage ledger per provider.
#[utoipa::path(get, path = "/budgets/tenants/{tenant}/ledger-check", tag = "tenant budgets",
    operation_id = "tenant_budget_ledger_check",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The replay report.", body = TenantLedgerView), (status = 401), (status = 403), (status = 404))
)]
async fn ledger_check(
    State(s): State<AppState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> ApiResult<Json<TenantLedgerView>> {
    who.see(&tenant, "tenant")?;
    who.require(Role::Operator)?;
    let report = s.engine.store.check_usage_ledgers(&tenant).await?;
    Ok(Json(report.into()))
}
