//! Region budgets as the API shows them, with their OpenAPI schemas: the
//! balances, ledger entries, reservations, the ledger check, the answer of
//! each budget operation, and the phase 66 tier defaults.
//!
//! As in [`super::views`], each view of a store or core record destructures
//! it whole, and the tests check that it serializes as the record does.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use fleetscale_core::budget::{
    BudgetForecast, BudgetState, Cents, LedgerReport, LedgerViolation, Provider, ResetPeriod, Tier,
};
use fleetscale_store::{rfc3339, BudgetTransaction, Listed, RegionBudget, Reservation, TxOutcome};

use super::views::page;

/// A region's budget balances.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegionBudgetView {
    /// Region id.
    pub region_id: String,
    /// Monthly budget, cents.
    pub monthly_cents: Cents,
    /// What may still be spent, cents.
    pub remaining_cents: Cents,
    /// Charged since the last daily reset, net of refunds, cents.
    pub spent_today_cents: Cents,
    /// Held by active reservations, cents.
    pub reserved_cents: Cents,
    /// Ledger entries so far.
    pub transactions: i64,
}

impl From<RegionBudget> for RegionBudgetView {
    fn from(b: RegionBudget) -> Self {
        let RegionBudget {
            region_id,
            monthly_cents,
            remaining_cents,
            spent_today_cents,
            reserved_cents,
            transactions,
        } = b;
        RegionBudgetView {
            region_id,
            monthly_cents,
            remaining_cents,
            spent_today_cents,
            reserved_cents,
            transactions,
        }
    }
}

page!(/// A page of region budgets.
    RegionBudgetPage of RegionBudgetView from RegionBudget);

/// The month's forecast of a region's budget.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastView {
    /// The month's net spend extrapolated to its end, cents.
    pub projected_month_spend_cents: Cents,
    /// When the balance runs out at this rate (RFC 3339), `null` if it lasts the month.
    pub exhausted_at: Option<String>,
}

impl From<BudgetForecast> for ForecastView {
    fn from(f: BudgetForecast) -> Self {
        ForecastView {
            projected_month_spend_cents: f.projected_month_spend_cents,
            exhausted_at: f.exhausted_at_ms.map(rfc3339),
        }
    }
}

/// A region's budget: balances, the month's spend and forecast, and the
/// spend by job type and by agency (a tenant token sees its own agency's).
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetView {
    /// Region id.
    pub region_id: String,
    /// Monthly budget, cents.
    pub monthly_cents: Cents,
    /// What may still be spent, cents.
    pub remaining_cents: Cents,
    /// Charged since the last daily reset, net of refunds, cents.
    pub spent_today_cents: Cents,
    /// Held by active reservations, cents.
    pub reserved_cents: Cents,
    /// Net spend since the last monthly reset, cents.
    pub spent_this_month_cents: Cents,
    /// The month's forecast (of the region's balance, also for a tenant).
    pub forecast: ForecastView,
    /// Net spend this month per job type, cents.
    pub spend_by_job_type: BTreeMap<String, Cents>,
    /// Net spend this month per agency (tenant), cents.
    pub spend_by_agency: BTreeMap<String, Cents>,
    /// Ledger entries so far.
    pub transactions: i64,
}

impl BudgetView {
    /// The view of `b` with the month's spend breakdowns (net cents per job
    /// type and per agency) and the region's forecast.
    pub fn new(
        b: RegionBudget,
        by_job: Vec<(String, Cents)>,
        by_agency: Vec<(String, Cents)>,
        forecast: BudgetForecast,
    ) -> Self {
        BudgetView {
            spent_this_month_cents: by_job.iter().map(|(_, c)| *c).sum(),
            region_id: b.region_id,
            monthly_cents: b.monthly_cents,
            remaining_cents: b.remaining_cents,
            spent_today_cents: b.spent_today_cents,
            reserved_cents: b.reserved_cents,
            forecast: forecast.into(),
            spend_by_job_type: by_job.into_iter().collect(),
            spend_by_agency: by_agency.into_iter().collect(),
            transactions: b.transactions,
        }
    }
}

/// One ledger entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionView {
    /// Id (UUIDv7).
    pub id: String,
    /// Region id.
    pub region_id: String,
    /// Position in the region's ledger.
    pub seq: i64,
    /// `allocation`, `spend`, `refund`, `reset`, `reserve`, `release`.
    pub transaction_type: String,
    /// Amount as stated, cents.
    pub amount_cents: Cents,
    /// Signed change of the remaining balance, cents.
    pub delta_cents: Cents,
    /// Remaining balance after this entry, cents.
    pub balance_after_cents: Cents,
    /// Agency (tenant) charged.
    pub agency_id: Option<String>,
    /// Job type.
    pub job_type: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// `daily` or `monthly`, for resets.
    pub reset_period: Option<String>,
    /// The spend a refund refers to.
    pub refund_of: Option<String>,
    /// The reservation of a reserve, release or committed spend.
    pub reservation_id: Option<String>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Who.
    pub actor: String,
    /// When (RFC 3339).
    pub created_at: String,
}

impl From<BudgetTransaction> for TransactionView {
    fn from(t: BudgetTransaction) -> Self {
        let BudgetTransaction {
            id,
            region_id,
            seq,
            transaction_type,
            amount_cents,
            delta_cents,
            balance_after_cents,
            agency_id,
            job_type,
            description,
            reset_period,
            refund_of,
            reservation_id,
            idempotency_key,
            actor,
            created_at_ms,
        } = t;
        TransactionView {
            id,
            region_id,
            seq,
            transaction_type,
            amount_cents,
            delta_cents,
            balance_after_cents,
            agency_id,
            job_type,
            description,
            reset_period,
            refund_of,
            reservation_id,
            idempotency_key,
            actor,
            created_at: rfc3339(created_at_ms),
        }
    }
}

page!(/// A page of ledger entries, newest first.
    TransactionPage of TransactionView from BudgetTransaction);

/// A reservation (hold) of the two-step protocol.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationView {
    /// Id (UUIDv7).
    pub id: String,
    /// Region id.
    pub region_id: String,
    /// Held amount, cents.
    pub amount_cents: Cents,
    /// Job type.
    pub job_type: String,
    /// Agency.
    pub agency_id: Option<String>,
    /// `held`, `committed`, `released`, `expired`.
    pub status: String,
    /// Expiry (RFC 3339).
    pub expires_at: String,
    /// Actual cost charged by the commit, cents.
    pub committed_cents: Option<Cents>,
}

impl From<Reservation> for ReservationView {
    fn from(r: Reservation) -> Self {
        let Reservation {
            id,
            region_id,
            amount_cents,
            job_type,
            agency_id,
            status,
            expires_at_ms,
            committed_cents,
        } = r;
        ReservationView {
            id,
            region_id,
            amount_cents,
            job_type,
            agency_id,
            status,
            expires_at: rfc3339(expires_at_ms),
            committed_cents,
        }
    }
}

/// The balances of one budget.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetStateView {
    /// The monthly budget (sum of allocations), cents.
    pub monthly_cents: Cents,
    /// What may still be spent or held, cents.
    pub remaining_cents: Cents,
    /// Charged since the last daily reset, net of refunds, cents.
    pub spent_today_cents: Cents,
    /// Held by active reservations, cents.
    pub reserved_cents: Cents,
}

impl From<BudgetState> for BudgetStateView {
    fn from(b: BudgetState) -> Self {
        let BudgetState {
            monthly_cents,
            remaining_cents,
            spent_today_cents,
            reserved_cents,
        } = b;
        BudgetStateView {
            monthly_cents,
            remaining_cents,
            spent_today_cents,
            reserved_cents,
        }
    }
}

/// One inconsistency the ledger replay found.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerViolationView {
    /// The entry's position in the ledger.
    pub seq: i64,
    /// What is wrong.
    pub problem: String,
}

/// The ledger replayed and compared with the stored balances.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerReportView {
    /// True when the replay matches the stored balances and breaks no rule.
    pub ok: bool,
    /// Entries replayed.
    pub entries: u64,
    /// The balances the replay computes.
    pub recomputed: BudgetStateView,
    /// The balances stored.
    pub stored: BudgetStateView,
    /// What is wrong (at most 100).
    pub violations: Vec<LedgerViolationView>,
}

impl From<LedgerReport> for LedgerReportView {
    fn from(r: LedgerReport) -> Self {
        let LedgerReport {
            ok,
            entries,
            recomputed,
            stored,
            violations,
        } = r;
        LedgerReportView {
            ok,
            entries,
            recomputed: recomputed.into(),
            stored: stored.into(),
            violations: violations
                .into_iter()
                .map(|LedgerViolation { seq, problem }| LedgerViolationView { seq, problem })
                .collect(),
        }
    }
}

/// The answer to an allocation.
#[derive(Debug, Serialize, ToSchema)]
pub struct AllocatedView {
    /// The ledger entry.
    pub transaction_id: String,
    /// Cents added.
    pub allocated_cents: Cents,
    /// Remaining balance after the entry, cents.
    pub balance_after_cents: Cents,
}

impl From<TxOutcome> for AllocatedView {
    fn from(o: TxOutcome) -> Self {
        AllocatedView {
            transaction_id: o.transaction_id,
            allocated_cents: o.amount_cents,
            balance_after_cents: o.balance_after_cents,
        }
    }
}

/// The answer to a spend.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpentView {
    /// The ledger entry.
    pub transaction_id: String,
    /// Cents charged.
    pub charged_cents: Cents,
    /// Remaining balance after the entry, cents.
    pub balance_after_cents: Cents,
    /// True when the idempotency key matched an earlier spend: nothing new was charged.
    pub replayed: bool,
}

impl From<TxOutcome> for SpentView {
    fn from(o: TxOutcome) -> Self {
        SpentView {
            transaction_id: o.transaction_id,
            charged_cents: o.amount_cents,
            balance_after_cents: o.balance_after_cents,
            replayed: o.replayed,
        }
    }
}

/// The answer to a refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundedView {
    /// The ledger entry.
    pub transaction_id: String,
    /// Cents refunded.
    pub refunded_cents: Cents,
    /// Remaining balance after the entry, cents.
    pub balance_after_cents: Cents,
    /// True when the idempotency key matched an earlier refund: nothing new was refunded.
    pub replayed: bool,
}

impl From<TxOutcome> for RefundedView {
    fn from(o: TxOutcome) -> Self {
        RefundedView {
            transaction_id: o.transaction_id,
            refunded_cents: o.amount_cents,
            balance_after_cents: o.balance_after_cents,
            replayed: o.replayed,
        }
    }
}

/// Whether an amount would be covered.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckView {
    /// True when the budget covers the amount now.
    pub allowed: bool,
    /// The amount asked about, cents.
    pub amount_cents: Cents,
    /// What may still be spent, cents.
    pub remaining_cents: Cents,
    /// The answer in words.
    pub message: String,
}

impl CheckView {
    /// Whether `amount_cents` fits `budget` now.
    pub fn of(budget: &RegionBudget, amount_cents: Cents) -> Self {
        let allowed = budget.state().can_spend(amount_cents);
        let remaining_cents = budget.remaining_cents;
        let message = match allowed {
            true => "within budget".to_string(),
            false => format!(
                "insufficient budget: {amount_cents} cents requested, {remaining_cents} cents remaining"
            ),
        };
        CheckView {
            allowed,
            amount_cents,
            remaining_cents,
            message,
        }
    }
}

/// The answer to a manual reset.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResetView {
    /// The ledger entry.
    pub transaction_id: String,
    /// `daily` or `monthly`.
    #[schema(value_type = String)]
    pub period: ResetPeriod,
    /// Remaining balance after the entry, cents.
    pub balance_after_cents: Cents,
}

/// The answer to a reservation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReservedView {
    /// The reservation.
    pub reservation: Option<ReservationView>,
    /// The ledger entry.
    pub transaction_id: String,
    /// Cents held.
    pub held_cents: Cents,
    /// Remaining balance after the entry, cents.
    pub balance_after_cents: Cents,
    /// True when the idempotency key matched an earlier reservation: nothing new was held.
    pub replayed: bool,
}

impl From<TxOutcome> for ReservedView {
    fn from(o: TxOutcome) -> Self {
        ReservedView {
            reservation: o.reservation.map(ReservationView::from),
            transaction_id: o.transaction_id,
            held_cents: o.amount_cents,
            balance_after_cents: o.balance_after_cents,
            replayed: o.replayed,
        }
    }
}

/// The answer to a commit: the actual cost charged, the rest released.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommittedView {
    /// The reservation after the commit.
    pub reservation: Option<ReservationView>,
    /// The ledger entry: the spend, or the release if the cost was 0.
    pub transaction_id: String,
    /// Cents charged.
    pub charged_cents: Cents,
    /// Remaining balance after the entry, cents.
    pub balance_after_cents: Cents,
}

impl From<TxOutcome> for CommittedView {
    fn from(o: TxOutcome) -> Self {
        CommittedView {
            reservation: o.reservation.map(ReservationView::from),
            transaction_id: o.transaction_id,
            charged_cents: o.amount_cents,
            balance_after_cents: o.balance_after_cents,
        }
    }
}

/// The answer to a release: nothing charged.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleasedView {
    /// The reservation after the release.
    pub reservation: Option<ReservationView>,
    /// The ledger entry.
    pub transaction_id: String,
    /// Cents released.
    pub released_cents: Cents,
    /// Remaining balance after the entry, cents.
    pub balance_after_cents: Cents,
}

impl From<TxOutcome> for ReleasedView {
    fn from(o: TxOutcome) -> Self {
        ReleasedView {
            reservation: o.reservation.map(ReservationView::from),
            transaction_id: o.transaction_id,
            released_cents: o.amount_cents,
            balance_after_cents: o.balance_after_cents,
        }
    }
}

/// A provider's monthly allocation in a tier.
#[derive(Debug, Serialize, ToSchema)]
pub struct TierProviderView {
    /// `claude`, `gemini`, `openai`, `elevenlabs` or `perplexity`.
    #[schema(value_type = String)]
    pub provider: Provider,
    /// `tokens`, or `chars` for ElevenLabs.
    pub unit: String,
    /// Units allocated per month.
    pub monthly_allocation: i64,
}

/// A tier's default allocations.
#[derive(Debug, Serialize, ToSchema)]
pub struct TierView {
    /// `soft_launch`, `hard_launch` or `growth`.
    #[schema(value_type = String)]
    pub tier: Tier,
    /// Each provider's allocation.
    pub providers: Vec<TierProviderView>,
}

/// The tiers asked for (one page: `next_cursor` is always `null`).
#[derive(Debug, Serialize, ToSchema)]
pub struct TierPage {
    /// The tiers.
    pub items: Vec<TierView>,
    /// Always `null`.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetscale_core::budget::forecast_month;
    use serde_json::json;

    use crate::http::views::Golden;

    const T: i64 = 1_764_000_000_123;

    fn reservation(agency: Option<&str>, committed: Option<Cents>) -> Reservation {
        Reservation {
            id: "r".into(),
            region_id: "g".into(),
            amount_cents: 500,
            job_type: "video".into(),
            agency_id: agency.map(String::from),
            status: "held".into(),
            expires_at_ms: T,
            committed_cents: committed,
        }
    }

    fn tx(opt: Option<&str>) -> BudgetTransaction {
        let o = opt.map(String::from);
        BudgetTransaction {
            id: "x".into(),
            region_id: "g".into(),
            seq: 3,
            transaction_type: "spend".into(),
            amount_cents: 250,
            delta_cents: -250,
            balance_after_cents: 750,
            agency_id: o.clone(),
            job_type: o.clone(),
            description: o.clone(),
            reset_period: o.clone(),
            refund_of: o.clone(),
            reservation_id: o.clone(),
            idempotency_key: o,
            actor: "ops".into(),
            created_at_ms: T,
        }
    }

    #[test]
    fn views_serialize_as_the_golden_answers() {
        let mut g = Golden::new("budget_views");
        let budget = RegionBudget {
            region_id: "g".into(),
            monthly_cents: 1000,
            remaining_cents: 750,
            spent_today_cents: 250,
            reserved_cents: 0,
            transactions: 4,
        };
        g.view::<_, RegionBudgetView>(budget.clone());
        g.view::<_, RegionBudgetPage>(Listed {
            items: vec![budget],
            next_cursor: Some("g".into()),
        });
        g.view::<_, TransactionView>(tx(None));
        g.view::<_, TransactionView>(tx(Some("a")));
        g.view::<_, ReservationView>(reservation(None, None));
        g.view::<_, ReservationView>(reservation(Some("t"), Some(400)));
        let state = BudgetState {
            monthly_cents: 1,
            remaining_cents: 2,
            spent_today_cents: 3,
            reserved_cents: 4,
        };
        g.view::<_, LedgerReportView>(LedgerReport {
            ok: false,
            entries: 9,
            recomputed: state,
            stored: BudgetState::default(),
            violations: vec![LedgerViolation {
                seq: 2,
                problem: "balance".into(),
            }],
        });
        for spent in [0, 5_000] {
            let f = forecast_month(spent, 1_000, T);
            let want = json!({
                "projected_month_spend_cents": f.projected_month_spend_cents,
                "exhausted_at": f.exhausted_at_ms.map(rfc3339),
            });
            assert_eq!(serde_json::to_value(ForecastView::from(f)).unwrap(), want);
        }
    }
}
