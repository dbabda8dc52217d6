//! Region budgets (`/regions/{id}/budget/...`, `/budgets`) and the tier
//! defaults (`/budgets/tiers`); scheduled resets and reservation expiry are
//! the engine's budget maintenance job.
//!
//! Amounts are integer cents; a fractional, string, negative, zero or
//! oversized amount is a 422 naming `amount_cents`. A spend that the budget
//! cannot cover is a 409 with code `insufficient_budget` and charges nothing.
//! Roles: viewer reads, operator spends/refunds/reserves, the global admin
//! allocates and resets (regions, and so their budgets, are shared by all
//! tenants). A tenant-scoped token always charges its own tenant as agency
//! and sees only its own agency's entries and spend.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::budget::{
    check_amount, check_idempotency_key, forecast_month, reservation_expiry, tier_allocation,
    BudgetError, Cents, Provider, ResetPeriod, Tier, MAX_AMOUNT_CENTS,
};
use fleetscale_core::Violations;
use fleetscale_store::{now_ms, BudgetOp, LedgerError, TxOutcome};

use super::budget_views::{
    AllocatedView, BudgetView, CheckView, CommittedView, LedgerReportView, RefundedView,
    RegionBudgetPage, ReleasedView, ReservedView, ResetView, SpentView, TierPage, TierProviderView,
    TierView, TransactionPage,
};
use super::common::{seq_page, ApiResult, ListQuery};
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::AppState;

/// The budget routes, relative to `/api/v1`, with their OpenAPI operations.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show))
        .routes(routes!(allocate))
        .routes(routes!(spend))
        .routes(routes!(refund))
        .routes(routes!(check))
        .routes(routes!(reset))
        .routes(routes!(reserve))
        .routes(routes!(commit))
        .routes(routes!(release))
        .routes(routes!(transactions))
        .routes(routes!(ledger_check))
        .routes(routes!(list))
        .routes(routes!(tiers))
}

/// Reads an amount of cents from JSON, with a message for each way it can be wrong.
pub fn cents(v: &mut Violations, field: &str, raw: &Value, allow_zero: bool) -> i64 {
    match raw {
        Value::Null => v.push(field, "is required (an integer number of cents)"),
        Value::Number(n) => match n.as_i64() {
            Some(0) if allow_zero => return 0,
            Some(i) => {
                check_amount(v, field, i);
                return i;
            }
            None if n.is_u64() => v.push(
                field,
                format!("is too large (overflow): at most {MAX_AMOUNT_CENTS} cents"),
            ),
            None => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() != 0.0 {
                    v.push(field, "must be a whole number of cents, not a fraction");
                } else {
                    v.push(
                        field,
                        format!("is out of range (overflow): must be between 1 and {MAX_AMOUNT_CENTS} cents"),
                    );
                }
            }
        },
        _ => v.push(
            field,
            "must be an integer number of cents (a JSON number, not a string)",
        ),
    }
    0
}

fn ledger_err(e: LedgerError) -> ApiError {
    match e {
        LedgerError::Refused(b @ BudgetError::Insufficient { .. }) => ApiError::Conflict {
            code: "insufficient_budget",
            detail: format!("{b}; nothing was charged"),
        },
        LedgerError::Refused(b @ BudgetError::Overflow) => {
            ApiError::field("amount_cents", format!("is refused: {b}"))
        }
        LedgerError::Refused(b) => ApiError::field("amount_cents", b.to_string()),
        e @ LedgerError::IdempotencyMismatch { .. } => ApiError::Conflict {
            code: "idempotency_key_reused",
            detail: e.to_string(),
        },
        e @ LedgerError::ReservationSettled { .. } => ApiError::Conflict {
            code: "reservation_settled",
            detail: e.to_string(),
        },
        LedgerError::NotASpend(_) => {
            ApiError::field("transaction_id", "must be a spend of this region")
        }
        LedgerError::BatchFailed => ApiError::Unavailable(
            "the budget write failed and nothing was committed; retry (with the same idempotency key)".into(),
        ),
        e @ (LedgerError::SyncFailed | LedgerError::CommitUnknown) => {
            ApiError::Unavailable(e.to_string())
        }
        LedgerError::Store(s) => s.into(),
        other => ApiError::Internal(Box::new(other)),
    }
}

fn opt_text(v: &mut Violations, field: &str, s: &Option<String>, max: usize) {
    if let Some(s) = s {
        v.check_text(field, s, max);
    }
}

fn key(v: &mut Violations, k: &Option<String>) {
    if let Some(k) = k {
        check_idempotency_key(v, "idempotency_key", k);
    }
}

/// Longest `agency_id` accepted, characters.
pub const MAX_AGENCY_ID_CHARS: usize = 128;

/// The agency charged: a scoped token charges its own tenant.
fn agency(who: &Principal, requested: Option<String>) -> ApiResult<Option<String>> {
    if let Some(a) = &requested {
        let mut v = Violations::default();
        v.check_text("agency_id", a, MAX_AGENCY_ID_CHARS);
        v.into_result(())?;
    }
    match (&who.tenant_id, requested) {
        (Some(own), Some(r)) if *own != r => Err(ApiError::field(
            "agency_id",
            "must be the token's own tenant",
        )),
        (Some(own), _) => Ok(Some(own.clone())),
        (None, r) => Ok(r),
    }
}

/// Applies one budget operation to region `rid` as `who`, mapping a
/// refusal to its problem.
async fn apply(
    s: &AppState,
    rid: &str,
    op: BudgetOp,
    who: &Principal,
    now: i64,
) -> ApiResult<TxOutcome> {
    let applied = s.engine.budgets.apply_one(rid, op, &who.name, now).await;
    applied.map_err(ledger_err)
}

/// The body of an allocation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocateBody {
    /// Cents to add, `1..=1000000000000`.
    #[serde(default)]
    #[schema(value_type = i64, required = true)]
    pub amount_cents: Value,
    /// Description, at most 500 characters.
    pub description: Option<String>,
}

/// Add to the region's monthly budget (global admin).
#[utoipa::path(post, path = "/regions/{id}/budget/allocate", tag = "region budgets",
    operation_id = "region_budget_allocate",
    params(("id" = String, Path, description = "The object's id")),
    request_body(content = AllocateBody, content_type = "application/json", example = json!({"amount_cents": 100000, "description": "November"})),
    responses((status = 200, description = "The ledger entry and the balance.", body = AllocatedView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn allocate(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<AllocateBody>,
) -> ApiResult<Json<AllocatedView>> {
    who.require_global_admin()?;
    let mut v = Violations::default();
    let amount_cents = cents(&mut v, "amount_cents", &b.amount_cents, false);
    opt_text(&mut v, "description", &b.description, 500);
    v.into_result(())?;
    let rid = s.engine.budgets.region_id(&id).await?;
    let description = b.description;
    let op = BudgetOp::Allocate {
        amount_cents,
        description,
    };
    Ok(Json(apply(&s, &rid, op, &who, now_ms()).await?.into()))
}

/// The body of a spend.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendBody {
    /// Cents to charge, `1..=1000000000000`.
    #[serde(default)]
    #[schema(value_type = i64, required = true)]
    pub amount_cents: Value,
    /// Job type, for the breakdown.
    pub job_type: String,
    /// Agency (tenant) charged, at most 128 characters; a tenant token
    /// always charges its own.
    pub agency_id: Option<String>,
    /// Idempotency key: a retry with it charges nothing more.
    pub idempotency_key: Option<String>,
    /// Description, at most 500 characters.
    pub description: Option<String>,
}

impl SpendBody {
    /// The amount, or every rule the body breaks.
    fn check(&self) -> Result<Cents, Violations> {
        let mut v = Violations::default();
        let amount = cents(&mut v, "amount_cents", &self.amount_cents, false);
        v.check_name("job_type", &self.job_type);
        key(&mut v, &self.idempotency_key);
        opt_text(&mut v, "description", &self.description, 500);
        v.into_result(amount)
    }
}

/// Spend atomically: charged in full or not at all (409 insufficient_budget); idempotent by key.
#[utoipa::path(post, path = "/regions/{id}/budget/spend", tag = "region budgets",
    operation_id = "region_budget_spend",
    params(("id" = String, Path, description = "The object's id")),
    request_body(content = SpendBody, content_type = "application/json", example = json!({"amount_cents": 250, "job_type": "creative", "agency_id": "AGENCY", "idempotency_key": "req-123"})),
    responses((status = 200, description = "The ledger entry and the balance.", body = SpentView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422))
)]
async fn spend(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<SpendBody>,
) -> ApiResult<Json<SpentView>> {
    who.require(Role::Operator)?;
    let amount = b.check()?;
    let agency_id = agency(&who, b.agency_id)?;
    let rid = s.engine.budgets.region_id(&id).await?;
    let op = BudgetOp::Spend {
        amount_cents: amount,
        job_type: b.job_type,
        agency_id,
        idempotency_key: b.idempotency_key,
        description: b.description,
    };
    Ok(Json(apply(&s, &rid, op, &who, now_ms()).await?.into()))
}

/// The body of a refund.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// The spend refunded.
    pub transaction_id: String,
    /// Cents to refund, never more than the spend charged.
    #[serde(default)]
    #[schema(value_type = i64, required = true)]
    pub amount_cents: Value,
    /// Idempotency key: a retry with it refunds nothing more.
    pub idempotency_key: Option<String>,
    /// Description, at most 500 characters.
    pub description: Option<String>,
}

impl RefundBody {
    /// The amount, or every rule the body breaks.
    fn check(&self) -> Result<Cents, Violations> {
        let mut v = Violations::default();
        let amount = cents(&mut v, "amount_cents", &self.amount_cents, false);
        v.check_text("transaction_id", &self.transaction_id, 64);
        key(&mut v, &self.idempotency_key);
        opt_text(&mut v, "description", &self.description, 500);
        v.into_result(amount)
    }
}

/// Refund (part of) a spend; never more than it charged; idempotent by key.
#[utoipa::path(post, path = "/regions/{id}/budget/refund", tag = "region budgets",
    operation_id = "region_budget_refund",
    params(("id" = String, Path, description = "The object's id")),
    request_body(content = RefundBody, content_type = "application/json", example = json!({"transaction_id": "TX", "amount_cents": 100, "idempotency_key": "refund-1"})),
    responses((status = 200, description = "The refund entry and the balance.", body = RefundedView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422))
)]
async fn refund(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<RefundBody>,
) -> ApiResult<Json<RefundedView>> {
    who.require(Role::Operator)?;
    let amount = b.check()?;
    let rid = s.engine.budgets.region_id(&id).await?;
    visible_spend(&s, &who, &b.transaction_id).await?;
    let op = BudgetOp::Refund {
        transaction_id: b.transaction_id,
        amount_cents: amount,
        idempotency_key: b.idempotency_key,
        description: b.description,
    };
    Ok(Json(apply(&s, &rid, op, &who, now_ms()).await?.into()))
}

/// A scoped token may refund only its own agency's spends (404 otherwise).
async fn visible_spend(s: &AppState, who: &Principal, transaction_id: &str) -> ApiResult<()> {
    if let Some(own) = &who.tenant_id {
        let t = s.engine.budgets.transaction(transaction_id).await?;
        if t.agency_id.as_deref() != Some(own) {
            return Err(ApiError::NotFound("transaction".into()));
        }
    }
    Ok(())
}

/// The body of a budget check.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// Cents that would be spent.
    #[serde(default)]
    #[schema(value_type = i64, required = true)]
    pub amount_cents: Value,
}

/// Would this amount be covered? No side effect.
#[utoipa::path(post, path = "/regions/{id}/budget/check", tag = "region budgets",
    operation_id = "region_budget_check",
    params(("id" = String, Path, description = "The object's id")),
    request_body(content = CheckBody, content_type = "application/json", example = json!({"amount_cents": 250})),
    responses((status = 200, description = "Whether it is covered, and what remains.", body = CheckView), (status = 400), (status = 401), (status = 404), (status = 422))
)]
async fn check(
    State(s): State<AppState>,
    _who: Principal,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<CheckBody>,
) -> ApiResult<Json<CheckView>> {
    let mut v = Violations::default();
    let amount = cents(&mut v, "amount_cents", &b.amount_cents, false);
    v.into_result(())?;
    let rid = s.engine.budgets.region_id(&id).await?;
    let budget = s.engine.budgets.budget(&rid).await?;
    Ok(Json(CheckView::of(&budget, amount)))
}

/// The body of a manual reset.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    /// `daily` or `monthly`.
    pub period: String,
}

/// Reset the daily or monthly period by hand (global admin).
#[utoipa::path(post, path = "/regions/{id}/budget/reset", tag = "region budgets",
    operation_id = "region_budget_reset",
    params(("id" = String, Path, description = "The object's id")),
    request_body(content = ResetBody, content_type = "application/json", example = json!({"period": "daily"})),
    responses((status = 200, description = "The reset entry.", body = ResetView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422))
)]
async fn reset(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ResetBody>,
) -> ApiResult<Json<ResetView>> {
    who.require_global_admin()?;
    let period = ResetPeriod::parse(&b.period)
        .ok_or_else(|| ApiError::field("period", "must be daily or monthly"))?;
    let rid = s.engine.budgets.region_id(&id).await?;
    let op = BudgetOp::Reset {
        period: Some(period),
    };
    let o = apply(&s, &rid, op, &who, now_ms()).await?;
    Ok(Json(ResetView {
        transaction_id: o.transaction_id,
        period,
        balance_after_cents: o.balance_after_cents,
    }))
}

/// The body of a reservation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    /// Cents to hold, `1..=1000000000000`.
    #[serde(default)]
    #[schema(value_type = i64, required = true)]
    pub amount_cents: Value,
    /// Job type, for the breakdown.
    pub job_type: String,
    /// Agency (tenant) charged, at most 128 characters; a tenant token
    /// always charges its own.
    pub agency_id: Option<String>,
    /// Idempotency key: a retry with it holds nothing more.
    pub idempotency_key: Option<String>,
    /// Seconds until the hold expires by itself (the server's default when omitted).
    pub ttl_secs: Option<i64>,
}

impl ReserveBody {
    /// The amount and the expiry, or every rule the body breaks.
    fn check(&self, now: i64) -> Result<(Cents, i64), Violations> {
        let mut v = Violations::default();
        let amount = cents(&mut v, "amount_cents", &self.amount_cents, false);
        v.check_name("job_type", &self.job_type);
        key(&mut v, &self.idempotency_key);
        let expires = match reservation_expiry(now, self.ttl_secs) {
            Ok(t) => t,
            Err(e) => {
                v.0.extend(e.0);
                0
            }
        };
        v.into_result((amount, expires))
    }
}

/// Hold an amount for a long operation (expires after its timeout).
#[utoipa::path(post, path = "/regions/{id}/budget/reserve", tag = "region budgets",
    operation_id = "region_budget_reserve",
    params(("id" = String, Path, description = "The object's id")),
    request_body(content = ReserveBody, content_type = "application/json", example = json!({"amount_cents": 1000, "job_type": "video", "ttl_secs": 600, "idempotency_key": "job-9"})),
    responses((status = 200, description = "The reservation.", body = ReservedView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422))
)]
async fn reserve(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ReserveBody>,
) -> ApiResult<Json<ReservedView>> {
    who.require(Role::Operator)?;
    let now = now_ms();
    let (amount, expires) = b.check(now)?;
    let agency_id = agency(&who, b.agency_id)?;
    let rid = s.engine.budgets.region_id(&id).await?;
    let op = BudgetOp::Reserve {
        amount_cents: amount,
        job_type: b.job_type,
        agency_id,
        idempotency_key: b.idempotency_key,
        expires_at_ms: expires,
    };
    Ok(Json(apply(&s, &rid, op, &who, now).await?.into()))
}

/// The body of a commit.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    /// The actual cost, cents (0 releases it all).
    #[serde(default)]
    #[schema(value_type = i64, required = true)]
    pub amount_cents: Value,
}

/// Charge a reservation's actual cost and release the rest.
#[utoipa::path(post, path = "/regions/{id}/budget/reservations/{rid}/commit", tag = "region budgets",
    operation_id = "region_budget_commit",
    params(("id" = String, Path, description = "The object's id"), ("rid" = String, Path, description = "Reservation id")),
    request_body(content = CommitBody, content_type = "application/json", example = json!({"amount_cents": 800})),
    responses((status = 200, description = "The charge.", body = CommittedView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422))
)]
async fn commit(
    State(s): State<AppState>,
    who: Principal,
    Path((id, res_id)): Path<(String, String)>,
    ApiJson(b): ApiJson<CommitBody>,
) -> ApiResult<Json<CommittedView>> {
    who.require(Role::Operator)?;
    let mut v = Violations::default();
    let amount = cents(&mut v, "amount_cents", &b.amount_cents, true);
    v.into_result(())?;
    let rid = s.engine.budgets.region_id(&id).await?;
    visible_reservation(&s, &who, &res_id).await?;
    let op = BudgetOp::Commit {
        reservation_id: res_id,
        amount_cents: amount,
    };
    Ok(Json(apply(&s, &rid, op, &who, now_ms()).await?.into()))
}

/// Release a reservation without charging.
#[utoipa::path(post, path = "/regions/{id}/budget/reservations/{rid}/release", tag = "region budgets",
    operation_id = "region_budget_release",
    params(("id" = String, Path, description = "The object's id"), ("rid" = String, Path, description = "Reservation id")),
    responses((status = 200, description = "The release.", body = ReleasedView), (status = 401), (status = 403), (status = 404), (status = 409))
)]
async fn release(
    State(s): State<AppState>,
    who: Principal,
    Path((id, res_id)): Path<(String, String)>,
) -> ApiResult<Json<ReleasedView>> {
    who.require(Role::Operator)?;
    let rid = s.engine.budgets.region_id(&id).await?;
    visible_reservation(&s, &who, &res_id).await?;
    let op = BudgetOp::Release {
        reservation_id: res_id,
        expired: false,
    };
    Ok(Json(apply(&s, &rid, op, &who, now_ms()).await?.into()))
}

async fn visible_reservation(s: &AppState, who: &Principal, id: &str) -> ApiResult<()> {
    let r = s.engine.budgets.reservation(id).await?;
    if let Some(t) = &who.tenant_id {
        if r.agency_id.as_deref() != Some(t) {
            return Err(ApiError::NotFound("reservation".into()));
        }
    }
    Ok(())
}

/// A region's budget: monthly, remaining, spent today, by job type and agency.
#[utoipa::path(get, path = "/regions/{id}/budget", tag = "region budgets",
    operation_id = "region_budget_show",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The balances, the month's spend and forecast, and the breakdowns.", body = BudgetView), (status = 401), (status = 404))
)]
async fn show(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<BudgetView>> {
    let rid = s.engine.budgets.region_id(&id).await?;
    let b = s.engine.budgets.budget(&rid).await?;
    let agency = who.tenant_id.as_deref();
    let (by_job, by_agency) = s.engine.budgets.spend_breakdown(&rid, agency).await?;
    // The region's month, also in a tenant's view: the region's balance runs out.
    let month_spent = match agency {
        Some(_) => region_month_spend(&s, &rid).await?,
        None => by_job.iter().map(|(_, c)| *c).sum(),
    };
    let forecast = forecast_month(month_spent, b.remaining_cents, now_ms());
    Ok(Json(BudgetView::new(b, by_job, by_agency, forecast)))
}

/// The region's net spend this month, every agency's.
async fn region_month_spend(s: &AppState, rid: &str) -> ApiResult<Cents> {
    let (by_job, _) = s.engine.budgets.spend_breakdown(rid, None).await?;
    Ok(by_job.iter().map(|(_, c)| *c).sum())
}

/// The region's append-only ledger, newest first.
#[utoipa::path(get, path = "/regions/{id}/budget/transactions", tag = "region budgets",
    operation_id = "region_budget_transactions",
    params(("id" = String, Path, description = "The object's id"), ("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "A page of ledger entries.", body = TransactionPage), (status = 401), (status = 404), (status = 422))
)]
async fn transactions(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<TransactionPage>> {
    let rid = s.engine.budgets.region_id(&id).await?;
    let page = seq_page(q.limit, q.cursor)?;
    let agency = who.tenant_id.as_deref();
    let list = s.engine.budgets.transactions(&rid, agency, &page).await?;
    Ok(Json(list.into()))
}

/// Replay the ledger and compare with the stored balance.
#[utoipa::path(get, path = "/regions/{id}/budget/ledger-check", tag = "region budgets",
    operation_id = "region_budget_ledger_check",
    params(("id" = String, Path, description = "The object's id")),
    responses((status = 200, description = "The replay and what is wrong.", body = LedgerReportView), (status = 401), (status = 403), (status = 404))
)]
async fn ledger_check(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<LedgerReportView>> {
    who.require(Role::Operator)?;
    let rid = s.engine.budgets.region_id(&id).await?;
    Ok(Json(s.engine.budgets.check_ledger(&rid).await?.into()))
}

/// Every region's budget.
#[utoipa::path(get, path = "/budgets", tag = "region budgets",
    operation_id = "region_budgets_list",
    params(("limit" = Option<i64>, Query, description = "Page size, 1-1000"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "A page of region budgets.", body = RegionBudgetPage), (status = 401), (status = 422))
)]
async fn list(
    State(s): State<AppState>,
    _who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<RegionBudgetPage>> {
    Ok(Json(s.engine.budgets.list(&q.page()?).await?.into()))
}

/// The parameters of `/budgets/tiers`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierQuery {
    tier: Option<String>,
}

impl TierView {
    /// The default allocations of `tier`, per provider.
    fn of(tier: Tier) -> TierView {
        let providers = Provider::ALL.iter().map(|&p| TierProviderView {
            provider: p,
            unit: p.unit().into(),
            monthly_allocation: tier_allocation(tier, p),
        });
        TierView {
            tier,
            providers: providers.collect(),
        }
    }
}

/// The default allocations per provider of each tier.
#[utoipa::path(get, path = "/budgets/tiers", tag = "tenant budgets",
    operation_id = "budget_tiers",
    params(("tier" = Option<String>, Query, description = "Only this tier: soft_launch, hard_launch or growth")),
    responses((status = 200, description = "The tier defaults.", body = TierPage), (status = 401), (status = 422))
)]
async fn tiers(_who: Principal, ApiQuery(q): ApiQuery<TierQuery>) -> ApiResult<Json<TierPage>> {
    let tiers: Vec<Tier> = match q.tier {
        None => vec![Tier::SoftLaunch, Tier::HardLaunch, Tier::Growth],
        Some(t) => vec![serde_json::from_value(Value::String(t)).map_err(|_| {
            ApiError::BadRequest(
                "bad query parameter: tier must be soft_launch, hard_launch or growth".into(),
            )
        })?],
    };
    Ok(Json(TierPage {
        items: tiers.into_iter().map(TierView::of).collect(),
        next_cursor: None,
    }))
}
