//! The budget's public types: budgets, ledger entries, reservations,
//! operations and their errors, and the writer's stated bounds.

use fleetscale_core::budget::{BudgetError, BudgetState, Cents, ResetPeriod};

use crate::StoreError;

/// Most operations applied in one transaction (a stated bound).
pub const MAX_BATCH: usize = 512;

/// Capacity of the writer's queue (a stated bound; senders wait when full).
pub const QUEUE_CAPACITY: usize = 8192;

/// Why a budget operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A budget rule refused it; nothing was charged.
    #[error(transparent)]
    Refused(#[from] BudgetError),
    /// The idempotency key was used before for a different request.
    #[error("idempotency key {key:?} was already used for a different request")]
    IdempotencyMismatch {
        /// The key.
        key: String,
    },
    /// The reservation is no longer held (committed, released or expired).
    #[error("reservation {id} is {status}")]
    ReservationSettled {
        /// Reservation id.
        id: String,
        /// Its status.
        status: String,
    },
    /// The refunded transaction is not a spend of this region.
    #[error("transaction {0} is not a spend of this region")]
    NotASpend(String),
    /// The batch this operation was in failed; nothing of it was committed.
    #[error("the budget batch failed; nothing was committed")]
    BatchFailed,
    /// The connection to PostgreSQL failed while the batch's `COMMIT` was in
    /// flight, so whether it was applied is unknown.
    #[error("the connection to the database failed during the commit, so this operation may or may not have been applied; retry with the same idempotency key (an operation sent without one may be applied twice)")]
    CommitUnknown,
    /// The batch was committed but the disk refused to make it durable
    /// (`fdatasync` failed): the operation may or may not be there after a
    /// restart, and the writer refuses every later operation until then.
    #[error("the budget ledger could not be synced to disk (fdatasync failed), so this operation may or may not have been applied; the server refuses budget writes until it is restarted, then retry with the same idempotency key")]
    SyncFailed,
    /// Storage failed or the object does not exist.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        LedgerError::Store(e.into())
    }
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        LedgerError::Store(e.into())
    }
}

/// A region's budget balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionBudget {
    /// Region id.
    pub region_id: String,
    /// Monthly budget.
    pub monthly_cents: Cents,
    /// What may still be spent.
    pub remaining_cents: Cents,
    /// Charged since the last daily reset, net of refunds.
    pub spent_today_cents: Cents,
    /// Held by active reservations.
    pub reserved_cents: Cents,
    /// Ledger entries so far.
    pub transactions: i64,
}

impl RegionBudget {
    /// The balances as the core sees them.
    pub fn state(&self) -> BudgetState {
        BudgetState {
            monthly_cents: self.monthly_cents,
            remaining_cents: self.remaining_cents,
            spent_today_cents: self.spent_today_cents,
            reserved_cents: self.reserved_cents,
        }
    }
}

/// One ledger entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetTransaction {
    /// Id (UUIDv7).
    pub id: String,
    /// Region id.
    pub region_id: String,
    /// Position in the region's ledger.
    pub seq: i64,
    /// allocation, spend, refund, reset, reserve, release.
    pub transaction_type: String,
    /// Amount as stated.
    pub amount_cents: Cents,
    /// Signed change of the remaining balance.
    pub delta_cents: Cents,
    /// Remaining balance after this entry.
    pub balance_after_cents: Cents,
    /// Agency (tenant) charged.
    pub agency_id: Option<String>,
    /// Job type.
    pub job_type: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// daily or monthly, for resets.
    pub reset_period: Option<String>,
    /// The spend a refund refers to.
    pub refund_of: Option<String>,
    /// The reservation of a reserve, release or committed spend.
    pub reservation_id: Option<String>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Who.
    pub actor: String,
    /// When.
    pub created_at_ms: i64,
}

/// A reservation (hold) of the two-step protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Id (UUIDv7).
    pub id: String,
    /// Region id.
    pub region_id: String,
    /// Held amount.
    pub amount_cents: Cents,
    /// Job type.
    pub job_type: String,
    /// Agency.
    pub agency_id: Option<String>,
    /// held, committed, released, expired.
    pub status: String,
    /// Expiry.
    pub expires_at_ms: i64,
    /// Actual cost charged by the commit.
    pub committed_cents: Option<Cents>,
}

/// The answer to a budget mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutcome {
    /// The ledger entry (for a commit: the spend, or the release if the cost was 0).
    pub transaction_id: String,
    /// Amount of the entry.
    pub amount_cents: Cents,
    /// Remaining balance after the entry.
    pub balance_after_cents: Cents,
    /// True when an idempotency key matched an earlier request: nothing new happened.
    pub replayed: bool,
    /// The reservation, for reserve, commit and release.
    pub reservation: Option<Reservation>,
}

/// A budget mutation.
#[derive(Debug, Clone)]
pub enum BudgetOp {
    /// Adds to the monthly budget and the balance.
    Allocate {
        /// Amount.
        amount_cents: Cents,
        /// Description.
        description: Option<String>,
    },
    /// Atomic check-and-spend.
    Spend {
        /// Amount.
        amount_cents: Cents,
        /// Job type.
        job_type: String,
        /// Agency charged.
        agency_id: Option<String>,
        /// Idempotency key.
        idempotency_key: Option<String>,
        /// Description.
        description: Option<String>,
    },
    /// Refund of (part of) a spend.
    Refund {
        /// The spend.
        transaction_id: String,
        /// Amount.
        amount_cents: Cents,
        /// Idempotency key.
        idempotency_key: Option<String>,
        /// Description.
        description: Option<String>,
    },
    /// Hold an amount until `expires_at_ms`.
    Reserve {
        /// Amount.
        amount_cents: Cents,
        /// Job type.
        job_type: String,
        /// Agency.
        agency_id: Option<String>,
        /// Idempotency key.
        idempotency_key: Option<String>,
        /// Expiry, Unix ms.
        expires_at_ms: i64,
    },
    /// Charge the actual cost of a hold and release the rest.
    Commit {
        /// Reservation.
        reservation_id: String,
        /// Actual cost (0..=held).
        amount_cents: Cents,
    },
    /// Give a hold back.
    Release {
        /// Reservation.
        reservation_id: String,
        /// True when the engine releases an expired hold.
        expired: bool,
    },
    /// A reset: `None` applies whatever the schedule says is due (maybe nothing).
    Reset {
        /// Period.
        period: Option<ResetPeriod>,
    },
}
