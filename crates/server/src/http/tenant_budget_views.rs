//! Tenant provider budgets as the API shows them, with their OpenAPI
//! schemas: a tenant's tier and providers, a provider budget, a usage
//! record's answer, the usage ledger and its check.
//!
//! As in [`super::views`], each view of a store or core record destructures
//! it whole, and the tests check that it serializes as the record does.

use serde::Serialize;
use utoipa::ToSchema;

use fleetscale_core::budget::{Cents, Provider, Tier};
use fleetscale_core::provider_budget::{
    CostProjection, ProviderMonth, UsageReport, UsageStatus, UsageViolation,
};
use fleetscale_store::{
    rfc3339, Listed, ProviderBudget, ProviderLedgerReport, TenantBudget, TenantLedgerReport,
    UsageOutcome, UsageRecord,
};

use super::views::page;

/// A provider budget of a tenant: settings, this month's usage and its projection.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderBudgetView {
    /// `claude`, `gemini`, `openai`, `elevenlabs` or `perplexity`.
    #[schema(value_type = String)]
    pub provider: Provider,
    /// Unit of every figure in units: `tokens`, or `chars` for ElevenLabs.
    pub unit: String,
    /// Allocation in force this month.
    pub allocation_units: i64,
    /// Used so far this month.
    pub used_units: i64,
    /// Allocation minus usage, never below zero.
    pub remaining_units: i64,
    /// Percent of the allocation used.
    pub utilization_pct: f64,
    /// `healthy`, `warning` (80 %) or `critical` (90 %), of the usage so far.
    #[schema(value_type = String)]
    pub status: UsageStatus,
    /// Usage at the month's end at the rate so far.
    pub projected_units: i64,
    /// Status of the projection.
    #[schema(value_type = String)]
    pub projected_status: UsageStatus,
    /// True when the projection exceeds the allocation.
    pub over_budget: bool,
    /// When the allocation runs out at the current rate (Unix ms), `null`
    /// when it lasts the month or nothing was used.
    pub exhausted_at_ms: Option<i64>,
    /// Price, cents per million units (`null`: not priced).
    pub price_cents_per_million: Option<Cents>,
    /// Cost of the usage so far, cents (`null` when not priced).
    pub cost_so_far_cents: Option<Cents>,
    /// Projected cost of the month, cents (`null` when not priced).
    pub projected_cost_cents: Option<Cents>,
    /// The default allocation of the tenant's tier.
    pub tier_default_units: i64,
    /// The allocation override, `null` when the tier's default applies.
    pub allocation_override_units: Option<i64>,
    /// True when recording refuses usage above the allocation.
    pub hard_limit: bool,
    /// Usage records so far (all months).
    pub entries: i64,
}

impl From<ProviderBudget> for ProviderBudgetView {
    fn from(b: ProviderBudget) -> Self {
        let ProviderBudget {
            month,
            tier_default_units,
            allocation_override_units,
            hard_limit,
            entries,
        } = b;
        let ProviderMonth {
            provider,
            unit,
            allocation_units,
            used_units,
            remaining_units,
            utilization_pct,
            status,
            projected_units,
            projected_status,
            over_budget,
            exhausted_at_ms,
            price_cents_per_million,
            cost_so_far_cents,
            projected_cost_cents,
        } = month;
        ProviderBudgetView {
            provider,
            unit: unit.into(),
            allocation_units,
            used_units,
            remaining_units,
            utilization_pct,
            status,
            projected_units,
            projected_status,
            over_budget,
            exhausted_at_ms,
            price_cents_per_million,
            cost_so_far_cents,
            projected_cost_cents,
            tier_default_units,
            allocation_override_units,
            hard_limit,
            entries,
        }
    }
}

/// The month's cost over a tenant's priced providers.
#[derive(Debug, Serialize, ToSchema)]
pub struct CostProjectionView {
    /// Cost so far, cents.
    pub cost_so_far_cents: Cents,
    /// Projected cost of the month, cents.
    pub projected_cost_cents: Cents,
    /// Providers without a price (not counted).
    #[schema(value_type = Vec<String>)]
    pub unpriced: Vec<Provider>,
}

impl From<CostProjection> for CostProjectionView {
    fn from(c: CostProjection) -> Self {
        let CostProjection {
            cost_so_far_cents,
            projected_cost_cents,
            unpriced,
        } = c;
        CostProjectionView {
            cost_so_far_cents,
            projected_cost_cents,
            unpriced,
        }
    }
}

/// A tenant's budgets: tier, every provider, and the month's cost projection.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantBudgetView {
    /// Tenant id.
    pub tenant_id: String,
    /// `soft_launch` (the default), `hard_launch` or `growth`.
    #[schema(value_type = String)]
    pub tier: Tier,
    /// False when the tier is the default, never set.
    pub tier_set: bool,
    /// The month the figures are of, `YYYY-MM` (UTC).
    pub month: String,
    /// First instant of the month.
    pub month_start: String,
    /// First instant of the next month.
    pub month_end: String,
    /// Every provider, in a fixed order.
    pub providers: Vec<ProviderBudgetView>,
    /// Cost so far and projected, over the priced providers.
    pub cost_projection: CostProjectionView,
}

impl From<TenantBudget> for TenantBudgetView {
    fn from(b: TenantBudget) -> Self {
        let TenantBudget {
            tenant_id,
            tier,
            tier_set,
            month,
            month_start,
            month_end,
            providers,
            cost_projection,
        } = b;
        TenantBudgetView {
            tenant_id,
            tier,
            tier_set,
            month,
            month_start,
            month_end,
            providers: providers.into_iter().map(Into::into).collect(),
            cost_projection: cost_projection.into(),
        }
    }
}

page!(/// A page of tenant budgets.
    TenantBudgetPage of TenantBudgetView from TenantBudget);

/// A tenant's provider budgets as a one-page list, with its tier and month.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProvidersView {
    /// The tenant's tier.
    #[schema(value_type = String)]
    pub tier: Tier,
    /// The month, `YYYY-MM` (UTC).
    pub month: String,
    /// Every provider budget.
    pub items: Vec<ProviderBudgetView>,
    /// Cost so far and projected, over the priced providers.
    pub cost_projection: CostProjectionView,
    /// Always `null`: one page.
    pub next_cursor: Option<String>,
}

impl From<TenantBudget> for ProvidersView {
    fn from(b: TenantBudget) -> Self {
        ProvidersView {
            tier: b.tier,
            month: b.month,
            items: b.providers.into_iter().map(Into::into).collect(),
            cost_projection: b.cost_projection.into(),
            next_cursor: None,
        }
    }
}

/// The answer to a usage record.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageOutcomeView {
    /// The ledger entry.
    pub usage_id: String,
    /// Provider.
    #[schema(value_type = String)]
    pub provider: Provider,
    /// Its unit.
    pub unit: String,
    /// Units recorded.
    pub units: i64,
    /// Month the usage counts in, `YYYY-MM`.
    pub month: String,
    /// The month's usage after this record.
    pub used_after_units: i64,
    /// The allocation in force.
    pub allocation_units: i64,
    /// Allocation minus usage after the record, never below zero.
    pub remaining_units: i64,
    /// True for a hard-limited budget.
    pub hard_limit: bool,
    /// True when the month's usage is above the allocation (soft budgets only).
    pub over_allocation: bool,
    /// `healthy`, `warning` (80 %) or `critical` (90 %) after the record.
    #[schema(value_type = String)]
    pub status: UsageStatus,
    /// True when the idempotency key matched an earlier record: nothing new was recorded.
    pub replayed: bool,
}

impl From<UsageOutcome> for UsageOutcomeView {
    fn from(o: UsageOutcome) -> Self {
        let UsageOutcome {
            usage_id,
            provider,
            unit,
            units,
            month,
            used_after_units,
            allocation_units,
            remaining_units,
            hard_limit,
            over_allocation,
            status,
            replayed,
        } = o;
        UsageOutcomeView {
            usage_id,
            provider,
            unit: unit.into(),
            units,
            month,
            used_after_units,
            allocation_units,
            remaining_units,
            hard_limit,
            over_allocation,
            status,
            replayed,
        }
    }
}

/// One usage ledger entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRecordView {
    /// Id (UUIDv7).
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Provider name.
    pub provider: String,
    /// Position in the (tenant, provider) ledger.
    pub seq: i64,
    /// Month, `YYYY-MM`.
    pub month: String,
    /// Units recorded.
    pub units: i64,
    /// The month's usage after the record.
    pub used_after_units: i64,
    /// The allocation enforced (hard limit), `null` for a soft budget.
    pub limit_units: Option<i64>,
    /// Job type.
    pub job_type: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Who.
    pub actor: String,
    /// When (RFC 3339).
    pub created_at: String,
}

impl From<UsageRecord> for UsageRecordView {
    fn from(r: UsageRecord) -> Self {
        let UsageRecord {
            id,
            tenant_id,
            provider,
            seq,
            month,
            units,
            used_after_units,
            limit_units,
            job_type,
            description,
            idempotency_key,
            actor,
            created_at_ms,
        } = r;
        UsageRecordView {
            id,
            tenant_id,
            provider,
            seq,
            month,
            units,
            used_after_units,
            limit_units,
            job_type,
            description,
            idempotency_key,
            actor,
            created_at: rfc3339(created_at_ms),
        }
    }
}

page!(/// A page of usage records, newest first.
    UsagePage of UsageRecordView from UsageRecord);

/// One inconsistency the usage-ledger replay found.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageViolationView {
    /// The entry's position in the ledger.
    pub seq: i64,
    /// What is wrong.
    pub problem: String,
}

/// The usage-ledger check of one provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderLedgerView {
    /// Provider.
    #[schema(value_type = String)]
    pub provider: Provider,
    /// True when the replay matches the stored usage and breaks no rule.
    pub ok: bool,
    /// Entries replayed.
    pub entries: u64,
    /// The month of the stored counter.
    pub month_key: Option<i64>,
    /// The month's usage the replay computes.
    pub recomputed_used: i64,
    /// The month's usage stored.
    pub stored_used: i64,
    /// What is wrong (at most 100).
    pub violations: Vec<UsageViolationView>,
}

impl From<ProviderLedgerReport> for ProviderLedgerView {
    fn from(r: ProviderLedgerReport) -> Self {
        let ProviderLedgerReport { provider, report } = r;
        let UsageReport {
            ok,
            entries,
            month_key,
            recomputed_used,
            stored_used,
            violations,
        } = report;
        ProviderLedgerView {
            provider,
            ok,
            entries,
            month_key,
            recomputed_used,
            stored_used,
            violations: violations
                .into_iter()
                .map(|UsageViolation { seq, problem }| UsageViolationView { seq, problem })
                .collect(),
        }
    }
}

/// The usage-ledger check of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantLedgerView {
    /// Tenant id.
    pub tenant_id: String,
    /// True when every provider's ledger is consistent.
    pub ok: bool,
    /// One report per provider with usage or settings.
    pub providers: Vec<ProviderLedgerView>,
}

impl From<TenantLedgerReport> for TenantLedgerView {
    fn from(r: TenantLedgerReport) -> Self {
        let TenantLedgerReport {
            tenant_id,
            ok,
            providers,
        } = r;
        TenantLedgerView {
            tenant_id,
            ok,
            providers: providers.into_iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetscale_core::budget::Tier;

    use crate::http::views::Golden;

    fn month(provider: Provider, priced: bool) -> ProviderMonth {
        let p = priced.then_some(300);
        ProviderMonth {
            provider,
            unit: provider.unit(),
            allocation_units: 1_000,
            used_units: 850,
            remaining_units: 150,
            utilization_pct: 85.0,
            status: UsageStatus::Warning,
            projected_units: 1_700,
            projected_status: UsageStatus::Critical,
            over_budget: true,
            exhausted_at_ms: p,
            price_cents_per_million: p,
            cost_so_far_cents: p,
            projected_cost_cents: p,
        }
    }

    fn budget() -> TenantBudget {
        TenantBudget {
            tenant_id: "t".into(),
            tier: Tier::Growth,
            tier_set: true,
            month: "2026-12".into(),
            month_start: "2026-12-01T00:00:00Z".into(),
            month_end: "2027-01-01T00:00:00Z".into(),
            providers: vec![
                ProviderBudget {
                    month: month(Provider::Claude, true),
                    tier_default_units: 1_000_000,
                    allocation_override_units: Some(1_000),
                    hard_limit: true,
                    entries: 3,
                },
                ProviderBudget {
                    month: month(Provider::Elevenlabs, false),
                    tier_default_units: 10,
                    allocation_override_units: None,
                    hard_limit: false,
                    entries: 0,
                },
            ],
            cost_projection: CostProjection {
                cost_so_far_cents: 3,
                projected_cost_cents: 6,
                unpriced: vec![Provider::Elevenlabs],
            },
        }
    }

    #[test]
    fn views_serialize_as_the_golden_answers() {
        let mut g = Golden::new("tenant_budget_views");
        g.view::<_, TenantBudgetView>(budget());
        g.view::<_, TenantBudgetPage>(Listed {
            items: vec![budget()],
            next_cursor: None,
        });
        g.view::<_, ProvidersView>(budget());
        g.view::<_, UsageOutcomeView>(UsageOutcome {
            usage_id: "u".into(),
            provider: Provider::Claude,
            unit: "tokens",
            units: 10,
            month: "2026-12".into(),
            used_after_units: 20,
            allocation_units: 100,
            remaining_units: 80,
            hard_limit: false,
            over_allocation: false,
            status: UsageStatus::Healthy,
            replayed: true,
        });
        for o in [None, Some("x".to_string())] {
            g.view::<_, UsageRecordView>(UsageRecord {
                id: "u".into(),
                tenant_id: "t".into(),
                provider: "claude".into(),
                seq: 1,
                month: "2026-12".into(),
                units: 5,
                used_after_units: 5,
                limit_units: o.as_ref().map(|_| 9),
                job_type: o.clone(),
                description: o.clone(),
                idempotency_key: o,
                actor: "ops".into(),
                created_at_ms: 1_764_000_000_123,
            });
        }
        g.view::<_, TenantLedgerView>(TenantLedgerReport {
            tenant_id: "t".into(),
            ok: false,
            providers: vec![ProviderLedgerReport {
                provider: Provider::Gemini,
                report: UsageReport {
                    ok: false,
                    entries: 2,
                    month_key: Some(24_323),
                    recomputed_used: 5,
                    stored_used: 6,
                    violations: vec![UsageViolation {
                        seq: 2,
                        problem: "used_after".into(),
                    }],
                },
            }],
        });
    }
}
