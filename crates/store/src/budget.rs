//! Exact region budgets: the ledger, atomic spends, idempotency and
//! reservations, on SQLite and on PostgreSQL with several replicas.
//!
//! # How exactness is kept
//!
//! Every budget mutation goes through one **writer** per [`Budgets`]
//! handle (one per server replica). The writer drains a bounded channel of
//! operations, applies up to [`MAX_BATCH`] of them in **one database
//! transaction** and commits once, then answers each caller (group commit).
//! An operation is acknowledged only after its transaction is committed and
//! on disk, so an acknowledged spend is durable (SQLite: the WAL is
//! fdatasynced after the commit and before the answers, see
//! `budget_sqlite`; PostgreSQL: `fsync=on`, synchronous commit).
//!
//! Inside the transaction the writer locks each touched region's
//! `region_budgets` row with `SELECT ... FOR UPDATE` (PostgreSQL; regions in
//! sorted order, so two replicas never deadlock), reads the idempotency keys
//! of the batch and then applies the pure rules of
//! [`fleetscale_core::budget`] in memory with checked arithmetic. Because the
//! row lock serializes all writers of a region across replicas and READ
//! COMMITTED re-reads after the lock is granted, a replica always sees the
//! balance and keys its peer committed. On SQLite the writer is a thread
//! with its own connection whose batches begin `IMMEDIATE` (SQLite's write
//! lock, a single writer anyway); both writers run the same `run_batch`.
//! We chose row locks over SERIALIZABLE + retry: a hot
//! budget row would make serializable transactions abort constantly, while a
//! lock held for one batch costs one commit per batch.
//!
//! The ledger (`region_budget_transactions`) is append-only, numbered per
//! region (`seq`) and carries `delta` and `balance_after`, so
//! [`Budgets::check_ledger`] recomputes every balance from it. Spends,
//! refunds and reservations may carry an idempotency key, unique per region
//! and kind: a retry returns the first result and charges nothing more.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use fleetscale_core::budget::{
    check_ledger, day_key, due_reset, month_key, BudgetError, BudgetState, Cents, ChargedIn,
    Effect, LedgerEntry, LedgerReport, ResetPeriod, TxKind,
};

use crate::sql::{new_id, not_found, paginate};
use crate::types::ser_ms;
use crate::{AuditEntry, Backend, Listed, Page, Store, StoreError};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    #[serde(rename = "created_at", serialize_with = "ser_ms")]
    pub created_at_ms: i64,
}

/// A reservation (hold) of the two-step protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    #[serde(rename = "expires_at", serialize_with = "ser_ms")]
    pub expires_at_ms: i64,
    /// Actual cost charged by the commit.
    pub committed_cents: Option<Cents>,
}

/// The answer to a budget mutation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
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

pub(crate) struct Job {
    pub(crate) region_id: String,
    pub(crate) op: BudgetOp,
    pub(crate) actor: String,
    pub(crate) now_ms: i64,
    pub(crate) reply: oneshot::Sender<Result<Option<TxOutcome>, LedgerError>>,
}

/// The budget service of one replica: reads go straight to the store,
/// mutations through its group-committing writer.
#[derive(Clone, Debug)]
pub struct Budgets {
    store: Store,
    tx: mpsc::Sender<Job>,
    regions: Arc<Mutex<HashMap<String, String>>>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

/// Most cached region ids (a stated bound; the cache is cleared when full).
const REGION_CACHE_MAX: usize = 10_000;

impl Budgets {
    /// Starts the writer: a thread of its own with its own database
    /// connection (on SQLite to the same file, see `budget_sqlite.rs`).
    pub fn start(store: Store) -> Budgets {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        match store.backend() {
            Backend::Postgres => start_pg_writer(store.clone(), rx),
            Backend::Sqlite => crate::budget_sqlite::start_writer(&store, rx, stopped.clone()),
        }
        Budgets {
            store,
            tx,
            regions: Arc::new(Mutex::new(HashMap::new())),
            stopped,
        }
    }

    /// Why the writer refuses every mutation, if it does (SQLite: it could
    /// not open the database, or the disk failed an fdatasync; only a
    /// restart clears it). `/readyz` reports it.
    pub fn stopped(&self) -> Option<&'static str> {
        if self.tx.is_closed() {
            Some("the budget writer has stopped")
        } else if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            Some("the budget writer refuses writes (the database could not be opened or synced); restart the server")
        } else {
            None
        }
    }

    /// Resolves a region id or name to its id (cached: regions are never renamed).
    pub async fn region_id(&self, id_or_name: &str) -> Result<String, StoreError> {
        if let Some(id) = self
            .regions
            .lock()
            .ok()
            .and_then(|m| m.get(id_or_name).cloned())
        {
            return Ok(id);
        }
        let r = self.store.get_region(id_or_name).await?;
        if let Ok(mut m) = self.regions.lock() {
            if m.len() >= REGION_CACHE_MAX {
                m.clear();
            }
            m.insert(id_or_name.to_string(), r.id.clone());
        }
        Ok(r.id)
    }

    /// Applies one mutation to region `region_id` (an id, see
    /// [`Budgets::region_id`]) and waits until it is durable. `Ok(None)` only
    /// for a scheduled reset that was not due.
    pub async fn apply(
        &self,
        region_id: &str,
        op: BudgetOp,
        actor: &str,
        now_ms: i64,
    ) -> Result<Option<TxOutcome>, LedgerError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            region_id: region_id.to_string(),
            op,
            actor: actor.to_string(),
            now_ms,
            reply,
        };
        let closed =
            || LedgerError::Store(StoreError::Config("the budget writer has stopped".into()));
        self.tx.send(job).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Like [`Budgets::apply`] for operations that always produce an entry.
    pub async fn apply_one(
        &self,
        region_id: &str,
        op: BudgetOp,
        actor: &str,
        now_ms: i64,
    ) -> Result<TxOutcome, LedgerError> {
        self.apply(region_id, op, actor, now_ms)
            .await?
            .ok_or_else(|| LedgerError::Store(StoreError::Corrupt("no ledger entry".into())))
    }

    /// Allocates a new region's first monthly budget (an `allocation` entry
    /// described as such), as region creation and the demo do.
    pub async fn allocate_initial(
        &self,
        region_id: &str,
        amount_cents: Cents,
        actor: &str,
        now_ms: i64,
    ) -> Result<TxOutcome, LedgerError> {
        let op = BudgetOp::Allocate {
            amount_cents,
            description: Some("initial monthly budget".into()),
        };
        self.apply_one(region_id, op, actor, now_ms).await
    }

    /// A region's balances (zero when it never had a budget).
    pub async fn budget(&self, region_id: &str) -> Result<RegionBudget, StoreError> {
        let row = sqlx::query("SELECT monthly_cents, remaining_cents, spent_today_cents, reserved_cents, next_seq FROM region_budgets WHERE region_id = $1")
            .bind(region_id)
            .fetch_optional(&self.store.pool)
            .await?;
        budget_from(region_id, row.as_ref())
    }

    /// Budgets of every region that has one.
    pub async fn list(&self, page: &Page) -> Result<Listed<RegionBudget>, StoreError> {
        let rows = sqlx::query("SELECT region_id, monthly_cents, remaining_cents, spent_today_cents, reserved_cents, next_seq FROM region_budgets WHERE region_id > $1 ORDER BY region_id LIMIT $2")
            .bind(page.cursor.clone().unwrap_or_default())
            .bind(page.limit() + 1)
            .fetch_all(&self.store.pool)
            .await?;
        paginate(rows, page.limit(), list_row, |b| b.region_id.clone())
    }

    /// The side-effect-free check: would `amount_cents` be accepted now?
    pub async fn check(&self, region_id: &str, amount_cents: Cents) -> Result<bool, StoreError> {
        Ok(self
            .budget(region_id)
            .await?
            .state()
            .can_spend(amount_cents))
    }

    /// Net spend (spends − refunds) since the last monthly reset, by job
    /// type and by agency; `agency` restricts to one agency. A refund counts
    /// by what it gave back to the balance (`delta_cents`): nothing for a
    /// spend of a month already closed.
    pub async fn spend_breakdown(
        &self,
        region_id: &str,
        agency: Option<&str>,
    ) -> Result<(Vec<(String, Cents)>, Vec<(String, Cents)>), StoreError> {
        let since: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM region_budget_transactions WHERE region_id = $1 AND transaction_type = 'reset' AND reset_period = 'monthly'")
            .bind(region_id)
            .fetch_one(&self.store.pool)
            .await?
            .try_get(0)?;
        let mut out = Vec::new();
        for col in ["job_type", "agency_id"] {
            let rows = sqlx::query(&format!(
                "SELECT COALESCE({col}, ''), CAST(SUM(CASE WHEN transaction_type = 'spend' THEN amount_cents ELSE -delta_cents END) AS BIGINT) \
                 FROM region_budget_transactions WHERE region_id = $1 AND seq > $2 AND transaction_type IN ('spend', 'refund') \
                 AND ($3 = '' OR agency_id = $3) GROUP BY COALESCE({col}, '') ORDER BY 1"
            ))
            .bind(region_id)
            .bind(since)
            .bind(agency.unwrap_or(""))
            .fetch_all(&self.store.pool)
            .await?;
            out.push(
                rows.iter()
                    .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
                    .collect::<Result<Vec<_>, StoreError>>()?,
            );
        }
        let by_agency = out.pop().unwrap_or_default();
        let by_job = out.pop().unwrap_or_default();
        Ok((by_job, by_agency))
    }

    /// Ledger entries, newest first; `agency` restricts to one agency.
    pub async fn transactions(
        &self,
        region_id: &str,
        agency: Option<&str>,
        page: &Page,
    ) -> Result<Listed<BudgetTransaction>, StoreError> {
        let cursor = match page.cursor.as_deref() {
            None => i64::MAX,
            Some(c) => c.parse::<i64>().map_err(|_| StoreError::NotFound {
                what: "cursor".into(),
            })?,
        };
        let rows = sqlx::query(&format!(
            "SELECT {TX_COLS} FROM region_budget_transactions WHERE region_id = $1 AND seq < $2 AND ($3 = '' OR agency_id = $3) ORDER BY seq DESC LIMIT $4"
        ))
        .bind(region_id)
        .bind(cursor)
        .bind(agency.unwrap_or(""))
        .bind(page.limit() + 1)
        .fetch_all(&self.store.pool)
        .await?;
        paginate(rows, page.limit(), tx_row, |t| t.seq.to_string())
    }

    /// One ledger entry.
    pub async fn transaction(&self, id: &str) -> Result<BudgetTransaction, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TX_COLS} FROM region_budget_transactions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.store.pool)
        .await?
        .ok_or_else(|| not_found("transaction"))?;
        tx_row(&row)
    }

    /// A reservation.
    pub async fn reservation(&self, id: &str) -> Result<Reservation, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RES_COLS} FROM budget_reservations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.store.pool)
        .await?
        .ok_or_else(|| not_found("reservation"))?;
        res_row(&row)
    }

    /// Held reservations whose deadline passed at `now_ms`, at most `limit`: (region, id).
    pub async fn expired_reservations(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT region_id, id FROM budget_reservations WHERE status = 'held' AND expires_at_ms <= $1 ORDER BY expires_at_ms LIMIT $2")
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&self.store.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Region ids that have a budget.
    pub async fn budget_regions(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT region_id FROM region_budgets ORDER BY region_id")
            .fetch_all(&self.store.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Recomputes the region's balances from its ledger and checks every
    /// invariant. The budget row is locked meanwhile, so the ledger and the
    /// balances are one consistent snapshot.
    pub async fn check_ledger(&self, region_id: &str) -> Result<LedgerReport, StoreError> {
        let mut tx = self.store.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT monthly_cents, remaining_cents, spent_today_cents, reserved_cents, next_seq FROM region_budgets WHERE region_id = $1{}",
            self.store.for_update()
        ))
        .bind(region_id)
        .fetch_optional(&mut *tx)
        .await?;
        let stored = budget_from(region_id, row.as_ref())?.state();
        let rows = sqlx::query("SELECT id, seq, transaction_type, amount_cents, delta_cents, balance_after_cents, reset_period, refund_of, idempotency_key, reservation_id FROM region_budget_transactions WHERE region_id = $1 ORDER BY seq")
            .bind(region_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let entries = rows
            .iter()
            .map(|r| {
                let kind: String = r.try_get(2)?;
                let period: Option<String> = r.try_get(6)?;
                Ok(LedgerEntry {
                    id: r.try_get(0)?,
                    seq: r.try_get(1)?,
                    kind: TxKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("transaction type {kind}")))?,
                    amount_cents: r.try_get(3)?,
                    delta_cents: r.try_get(4)?,
                    balance_after_cents: r.try_get(5)?,
                    period: period.as_deref().and_then(ResetPeriod::parse),
                    refund_of: r.try_get(7)?,
                    idempotency_key: r.try_get(8)?,
                    reservation_id: r.try_get(9)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(check_ledger(&entries, stored))
    }
}

const TX_COLS: &str = "id, region_id, seq, transaction_type, amount_cents, delta_cents, balance_after_cents, agency_id, job_type, description, reset_period, refund_of, reservation_id, idempotency_key, actor, created_at_ms";
const RES_COLS: &str =
    "id, region_id, amount_cents, job_type, agency_id, status, expires_at_ms, committed_cents";

fn budget_from(region_id: &str, row: Option<&AnyRow>) -> Result<RegionBudget, StoreError> {
    Ok(match row {
        None => RegionBudget {
            region_id: region_id.to_string(),
            monthly_cents: 0,
            remaining_cents: 0,
            spent_today_cents: 0,
            reserved_cents: 0,
            transactions: 0,
        },
        Some(r) => RegionBudget {
            region_id: region_id.to_string(),
            monthly_cents: r.try_get(0)?,
            remaining_cents: r.try_get(1)?,
            spent_today_cents: r.try_get(2)?,
            reserved_cents: r.try_get(3)?,
            transactions: r.try_get::<i64, _>(4)? - 1,
        },
    })
}

fn list_row(r: &AnyRow) -> Result<RegionBudget, StoreError> {
    Ok(RegionBudget {
        region_id: r.try_get(0)?,
        monthly_cents: r.try_get(1)?,
        remaining_cents: r.try_get(2)?,
        spent_today_cents: r.try_get(3)?,
        reserved_cents: r.try_get(4)?,
        transactions: r.try_get::<i64, _>(5)? - 1,
    })
}

fn tx_row(r: &AnyRow) -> Result<BudgetTransaction, StoreError> {
    Ok(BudgetTransaction {
        id: r.try_get(0)?,
        region_id: r.try_get(1)?,
        seq: r.try_get(2)?,
        transaction_type: r.try_get(3)?,
        amount_cents: r.try_get(4)?,
        delta_cents: r.try_get(5)?,
        balance_after_cents: r.try_get(6)?,
        agency_id: r.try_get(7)?,
        job_type: r.try_get(8)?,
        description: r.try_get(9)?,
        reset_period: r.try_get(10)?,
        refund_of: r.try_get(11)?,
        reservation_id: r.try_get(12)?,
        idempotency_key: r.try_get(13)?,
        actor: r.try_get(14)?,
        created_at_ms: r.try_get(15)?,
    })
}

fn res_row(r: &AnyRow) -> Result<Reservation, StoreError> {
    Ok(Reservation {
        id: r.try_get(0)?,
        region_id: r.try_get(1)?,
        amount_cents: r.try_get(2)?,
        job_type: r.try_get(3)?,
        agency_id: r.try_get(4)?,
        status: r.try_get(5)?,
        expires_at_ms: r.try_get(6)?,
        committed_cents: r.try_get(7)?,
    })
}

// ---- the writer -------------------------------------------------------------------

/// Starts the PostgreSQL writer: a thread running a single-threaded tokio
/// runtime with its own connection, like the SQLite writer. A batch makes
/// four round trips while it holds the region row lock (lock, key lookup,
/// write, commit); here each answer is handled as soon as it arrives instead
/// of waiting for a turn among the server's HTTP tasks. Measured alone the
/// thread changed little (1.04× in an A/B of four runs each, within the
/// noise); its own connection is what lets the writer set its planner mode
/// (see [`writer_connection`]) and start afresh after a failed batch.
fn start_pg_writer(store: Store, rx: mpsc::Receiver<Job>) {
    let spawned = std::thread::Builder::new()
        .name("budget-writer".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(writer(store, rx)),
                Err(e) => tracing::error!(error = %e, "cannot start the budget writer runtime"),
            }
        });
    if let Err(e) = spawned {
        // The receiver went down with the closure: every operation is
        // answered "the budget writer has stopped".
        tracing::error!(error = %e, "cannot start the budget writer thread");
    }
}

async fn writer(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut conn: Option<sqlx::AnyConnection> = None;
    loop {
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        linger(&mut rx, &mut batch);
        let jobs = std::mem::take(&mut batch);
        let n = jobs.len();
        let res = match conn.as_mut() {
            Some(c) => apply_batch(c, &jobs).await,
            None => match writer_connection(&store).await {
                Ok(c) => apply_batch(conn.insert(c), &jobs).await,
                Err(e) => Err(e),
            },
        };
        match res {
            Ok(results) => {
                for (job, res) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(res);
                }
            }
            Err(e) => {
                let unknown = matches!(e, LedgerError::CommitUnknown);
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), batch = n, "budget batch failed");
                // The next batch starts on a fresh connection: whatever state
                // this one was left in (broken socket, aborted transaction)
                // goes with it.
                conn = None;
                for job in jobs {
                    let _ = job.reply.send(Err(if unknown {
                        LedgerError::CommitUnknown
                    } else {
                        LedgerError::BatchFailed
                    }));
                }
            }
        }
    }
}

/// The PostgreSQL writer's connection. Its statements are planned for their
/// actual parameters every time (`plan_cache_mode = force_custom_plan`): the
/// idempotency lookup runs thousands of times a second on this one
/// connection, and after five runs PostgreSQL may switch a prepared
/// statement to a generic plan, which for the JSON array of keys scanned the
/// whole region's ledger under the row lock (spends fell from ~5,000/s to
/// ~850/s in the bench). Planning it costs well under a millisecond.
async fn writer_connection(store: &Store) -> Result<sqlx::AnyConnection, LedgerError> {
    let mut conn = store.connect().await?;
    sqlx::query("SET plan_cache_mode = force_custom_plan")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// Most times the writer gives up its CPU before it starts a batch (a stated
/// bound; see [`linger`]).
pub(crate) const LINGER_ROUNDS: usize = 64;

/// The writer stops lingering after this many rounds in a row that brought
/// no new operation.
pub(crate) const LINGER_IDLE_ROUNDS: usize = 8;

/// Lets request handlers that are already running enqueue their operations
/// before the batch starts: the writer thread gives up its CPU
/// (`sched_yield`: the server's tokio workers run) and drains the queue
/// again, until [`LINGER_IDLE_ROUNDS`] rounds in a row add nothing, the batch
/// is full or [`LINGER_ROUNDS`] passed. When nothing else wants the CPU a
/// round returns at once, so an idle server answers a lone request a few µs
/// later. Without lingering the first request after a commit got a
/// transaction of its own while the rest of the clients queued behind it
/// (batch sizes alternated 1, 31, 1, 31 with 32 clients); stopping at the
/// first empty round (the earlier rule) left batches of ~13 of 32 clients on
/// SQLite. Measured with the spend bench, two runs each, same hour, stopping
/// after 1 / 3 / 9 / 33 / 129 empty rounds (at most 4 / 16 / 64 / 256 / 1024
/// rounds): SQLite 8.5k and 10.9k / 10.2k and 10.2k / 10.9k and 11.9k /
/// 11.6k and 11.2k / 10.4k and 9.6k spends/s; PostgreSQL 4.2k and 4.7k at the
/// first, 5.0–5.5k from the third on. The bounds here sit on that plateau.
pub(crate) fn linger(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    let mut idle = 0;
    for _ in 0..LINGER_ROUNDS {
        if batch.len() >= MAX_BATCH {
            return;
        }
        let before = batch.len();
        std::thread::yield_now();
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if batch.len() == before {
            idle += 1;
            if idle >= LINGER_IDLE_ROUNDS {
                return;
            }
        } else {
            idle = 0;
        }
    }
}

/// A region's locked budget row, changed in memory during the batch.
pub(crate) struct Locked {
    pub(crate) state: BudgetState,
    pub(crate) next_seq: i64,
    pub(crate) last_day_key: i64,
    pub(crate) last_month_key: i64,
    pub(crate) dirty: bool,
    /// Ledger positions of the latest stored reset of either period and of
    /// the latest stored monthly reset (0: none), read when a refund first
    /// needs them.
    pub(crate) period_starts: Option<(i64, i64)>,
    /// The same for resets applied in this batch (0: none).
    pub(crate) batch_period_starts: (i64, i64),
}

/// A ledger row to insert.
pub(crate) struct NewTx {
    pub(crate) id: String,
    pub(crate) region_id: String,
    pub(crate) seq: i64,
    pub(crate) effect: Effect,
    pub(crate) agency_id: Option<String>,
    pub(crate) job_type: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) refund_of: Option<String>,
    pub(crate) reservation_id: Option<String>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) actor: String,
    pub(crate) now_ms: i64,
}

/// What an idempotency key maps to: the first request's entry.
#[derive(Clone)]
pub(crate) struct Prior {
    pub(crate) id: String,
    pub(crate) amount_cents: Cents,
    pub(crate) balance_after_cents: Cents,
    pub(crate) job_type: Option<String>,
    pub(crate) refund_of: Option<String>,
}

/// A spend's refund bookkeeping: (region, charged, refunded so far, agency,
/// job type, ledger position).
type SpendInfo = (String, Cents, Cents, Option<String>, Option<String>, i64);

#[derive(Default)]
pub(crate) struct BatchState {
    pub(crate) regions: HashMap<String, Locked>,
    pub(crate) priors: HashMap<(String, &'static str, String), Prior>,
    pub(crate) spends: HashMap<String, SpendInfo>,
    pub(crate) reservations: HashMap<String, Reservation>,
    pub(crate) res_keys: HashMap<(String, String), Reservation>,
    pub(crate) new_res: Vec<Reservation>,
    pub(crate) changed_res: Vec<(String, String, Option<Cents>)>,
    pub(crate) txs: Vec<NewTx>,
}

impl BatchState {
    /// A new reservation's idempotency key and creation time (from its
    /// reserve entry in this batch).
    pub(crate) fn reservation_origin(&self, id: &str) -> (Option<String>, i64) {
        self.txs
            .iter()
            .find(|t| t.reservation_id.as_deref() == Some(id))
            .map(|t| (t.idempotency_key.clone(), t.now_ms))
            .unwrap_or((None, 0))
    }
}

async fn apply_batch(
    conn: &mut sqlx::AnyConnection,
    jobs: &[Job],
) -> Result<Vec<Result<Option<TxOutcome>, LedgerError>>, LedgerError> {
    use sqlx::Connection;
    let mut db = PgBatch {
        tx: conn.begin().await?,
    };
    let results = run_batch(&mut db, jobs).await?;
    // An error before this point means nothing was committed; one from the
    // commit itself may come after PostgreSQL applied it (the reply was lost).
    db.tx.commit().await.map_err(|e| {
        tracing::error!(error = %e, "COMMIT of a budget batch failed; its outcome is unknown");
        LedgerError::CommitUnknown
    })?;
    Ok(results)
}

/// The ledger entry a refund refers to: (region, transaction type, amount,
/// agency, job type, ledger position).
pub(crate) type EntryRow = (String, String, Cents, Option<String>, Option<String>, i64);

/// The database side of one batch's transaction: the few reads the budget
/// rules need and the final write. The transaction itself (begin, commit)
/// belongs to the caller. Two implementations: PostgreSQL through sqlx
/// ([`PgBatch`]) and SQLite through rusqlite on the writer thread
/// (`budget_sqlite`); [`run_batch`] is the one batch logic over both.
pub(crate) trait BatchDb {
    /// The region's budget row, locked for the rest of the transaction
    /// (PostgreSQL `FOR UPDATE`; SQLite holds the write lock already).
    async fn region_row(&mut self, rid: &str) -> Result<Option<Locked>, LedgerError>;
    /// Creates the region's budget row if it has none.
    async fn create_region_row(&mut self, rid: &str, now_ms: i64) -> Result<(), LedgerError>;
    /// The entries of region `rid` with these (idempotency key, transaction
    /// type) pairs: (key, transaction type, what the first request got).
    /// May also return the other type's entry of a key (the caller looks
    /// them up by both).
    async fn priors(
        &mut self,
        rid: &str,
        keys: &[(&str, &'static str)],
    ) -> Result<Vec<(String, String, Prior)>, LedgerError>;
    /// The ledger entry `id`, if any.
    async fn entry(&mut self, id: &str) -> Result<Option<EntryRow>, LedgerError>;
    /// The sum refunded so far against spend `id`.
    async fn refunded(&mut self, id: &str) -> Result<Cents, LedgerError>;
    /// Ledger positions of region `rid`'s latest reset of either period and
    /// of its latest monthly reset (0 for none).
    async fn period_starts(&mut self, rid: &str) -> Result<(i64, i64), LedgerError>;
    /// Region `rid`'s reservation with idempotency key `key`.
    async fn reservation_by_key(
        &mut self,
        rid: &str,
        key: &str,
    ) -> Result<Option<Reservation>, LedgerError>;
    /// Reservation `id`.
    async fn reservation(&mut self, id: &str) -> Result<Option<Reservation>, LedgerError>;
    /// The `reserve` entry of reservation `id`: (entry id, balance after).
    async fn reserve_entry(&mut self, id: &str) -> Result<Option<(String, Cents)>, LedgerError>;
    /// Writes the batch: ledger entries (also the audit record of each
    /// operation), new and settled reservations, changed region rows.
    async fn persist(&mut self, st: &BatchState) -> Result<(), LedgerError>;
}

/// Applies a batch inside the caller's transaction: locks each touched
/// region (sorted, so replicas never deadlock), reads the batch's
/// idempotency keys at once, applies the jobs in order in memory and writes
/// the result. A refused job changes nothing; an `Err` means the caller must
/// roll the whole batch back.
pub(crate) async fn run_batch<D: BatchDb>(
    db: &mut D,
    jobs: &[Job],
) -> Result<Vec<Result<Option<TxOutcome>, LedgerError>>, LedgerError> {
    let mut st = BatchState::default();
    let regions: BTreeSet<&str> = jobs.iter().map(|j| j.region_id.as_str()).collect();
    for rid in &regions {
        let now = jobs
            .iter()
            .find(|j| j.region_id == *rid)
            .map(|j| j.now_ms)
            .unwrap_or(0);
        let locked = lock_region(db, rid, now).await?;
        st.regions.insert((*rid).to_string(), locked);
        let keys: Vec<(&str, &'static str)> = jobs
            .iter()
            .filter(|j| j.region_id == *rid)
            .filter_map(|j| match &j.op {
                BudgetOp::Spend {
                    idempotency_key: Some(k),
                    ..
                } => Some((k.as_str(), "spend")),
                BudgetOp::Refund {
                    idempotency_key: Some(k),
                    ..
                } => Some((k.as_str(), "refund")),
                _ => None,
            })
            .collect();
        if !keys.is_empty() {
            for (key, kind, prior) in db.priors(rid, &keys).await? {
                let kind = if kind == "spend" { "spend" } else { "refund" };
                st.priors.insert(((*rid).to_string(), kind, key), prior);
            }
        }
    }
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        if !matches!(job.op, BudgetOp::Reset { .. }) {
            // A day or month that has ended is closed before anything else
            // touches the region, with the entry the engine's scheduled reset
            // would write: otherwise a spend in the first seconds of a month
            // (before the maintenance round) is charged to the old month and
            // then forgotten by the late reset, and the new month can charge
            // its budget plus that spend.
            apply_reset(&mut st, &job.region_id, None, "engine", job.now_ms);
        }
        results.push(apply_job(db, &mut st, job).await);
    }
    db.persist(&st).await?;
    Ok(results)
}

async fn lock_region<D: BatchDb>(
    db: &mut D,
    rid: &str,
    now_ms: i64,
) -> Result<Locked, LedgerError> {
    for attempt in 0..2 {
        if let Some(l) = db.region_row(rid).await? {
            return Ok(l);
        }
        if attempt == 0 {
            db.create_region_row(rid, now_ms).await?;
        }
    }
    Err(LedgerError::Store(not_found("region")))
}

/// [`BatchDb`] on PostgreSQL: a sqlx transaction.
struct PgBatch<'c> {
    tx: sqlx::Transaction<'c, sqlx::Any>,
}

impl BatchDb for PgBatch<'_> {
    async fn region_row(&mut self, rid: &str) -> Result<Option<Locked>, LedgerError> {
        let r = sqlx::query("SELECT monthly_cents, remaining_cents, spent_today_cents, reserved_cents, next_seq, last_day_key, last_month_key FROM region_budgets WHERE region_id = $1 FOR UPDATE")
            .bind(rid)
            .fetch_optional(&mut *self.tx)
            .await?;
        let Some(r) = r else { return Ok(None) };
        Ok(Some(Locked {
            state: BudgetState {
                monthly_cents: r.try_get(0)?,
                remaining_cents: r.try_get(1)?,
                spent_today_cents: r.try_get(2)?,
                reserved_cents: r.try_get(3)?,
            },
            next_seq: r.try_get(4)?,
            last_day_key: r.try_get(5)?,
            last_month_key: r.try_get(6)?,
            dirty: false,
            period_starts: None,
            batch_period_starts: (0, 0),
        }))
    }

    async fn create_region_row(&mut self, rid: &str, now_ms: i64) -> Result<(), LedgerError> {
        sqlx::query(CREATE_REGION_ROW)
            .bind(rid)
            .bind(day_key(now_ms))
            .bind(month_key(now_ms))
            .bind(now_ms)
            .execute(&mut *self.tx)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }

    async fn priors(
        &mut self,
        rid: &str,
        keys: &[(&str, &'static str)],
    ) -> Result<Vec<(String, String, Prior)>, LedgerError> {
        // One lookup for all keys of the batch, whatever their number: the
        // keys travel as one JSON array, so the statement has a fixed shape
        // (prepared once) and two bind parameters. It reads both types of
        // each key.
        let keys: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
        let keys = to_json(&keys)?;
        let rows = sqlx::query(IDEM_LOOKUP_PG)
            .bind(rid)
            .bind(keys)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    Prior {
                        id: r.try_get(2)?,
                        amount_cents: r.try_get(3)?,
                        balance_after_cents: r.try_get(4)?,
                        job_type: r.try_get(5)?,
                        refund_of: r.try_get(6)?,
                    },
                ))
            })
            .collect()
    }

    async fn entry(&mut self, id: &str) -> Result<Option<EntryRow>, LedgerError> {
        let row = sqlx::query(ENTRY_SQL)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| {
            Ok((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
            ))
        })
        .transpose()
    }

    async fn refunded(&mut self, id: &str) -> Result<Cents, LedgerError> {
        Ok(sqlx::query(REFUNDED_SQL)
            .bind(id)
            .fetch_one(&mut *self.tx)
            .await?
            .try_get(0)?)
    }

    async fn period_starts(&mut self, rid: &str) -> Result<(i64, i64), LedgerError> {
        let r = sqlx::query(PERIOD_STARTS_SQL)
            .bind(rid)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok((r.try_get(0)?, r.try_get(1)?))
    }

    async fn reservation_by_key(
        &mut self,
        rid: &str,
        key: &str,
    ) -> Result<Option<Reservation>, LedgerError> {
        let row = sqlx::query(&format!(
            "SELECT {RES_COLS} FROM budget_reservations WHERE region_id = $1 AND idempotency_key = $2"
        ))
        .bind(rid)
        .bind(key)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.as_ref().map(res_row).transpose()?)
    }

    async fn reservation(&mut self, id: &str) -> Result<Option<Reservation>, LedgerError> {
        let row = sqlx::query(&format!(
            "SELECT {RES_COLS} FROM budget_reservations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.as_ref().map(res_row).transpose()?)
    }

    async fn reserve_entry(&mut self, id: &str) -> Result<Option<(String, Cents)>, LedgerError> {
        let row = sqlx::query(RESERVE_ENTRY_SQL)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|e| Ok((e.try_get(0)?, e.try_get(1)?))).transpose()
    }

    async fn persist(&mut self, st: &BatchState) -> Result<(), LedgerError> {
        // Ledger and region rows in one statement (a data-modifying CTE;
        // each region row is updated once): one round trip while the
        // region rows are locked instead of two.
        if !st.txs.is_empty() {
            let now = crate::now_ms();
            let changed: Vec<RegionJson<'_>> = st
                .regions
                .iter()
                .filter(|(_, l)| l.dirty)
                .map(|(rid, l)| RegionJson {
                    region_id: rid,
                    monthly_cents: l.state.monthly_cents,
                    remaining_cents: l.state.remaining_cents,
                    spent_today_cents: l.state.spent_today_cents,
                    reserved_cents: l.state.reserved_cents,
                    next_seq: l.next_seq,
                    last_day_key: l.last_day_key,
                    last_month_key: l.last_month_key,
                    updated_at_ms: now,
                })
                .collect();
            let txs: Vec<TxJson<'_>> = st.txs.iter().map(TxJson::of).collect();
            let sql = format!(
                "WITH regions AS ({REGION_UPDATE_PG}) {}",
                json_insert_sql("region_budget_transactions", &TX_TYPES, 1)
            );
            sqlx::query(&sql)
                .bind(to_json(&txs)?)
                .bind(to_json(&changed)?)
                .execute(&mut *self.tx)
                .await
                .map_err(StoreError::from)?;
        }
        for r in &st.new_res {
            let (key, created) = st.reservation_origin(&r.id);
            sqlx::query(&format!("INSERT INTO budget_reservations ({RES_COLS}, idempotency_key, created_at_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"))
                .bind(&r.id)
                .bind(&r.region_id)
                .bind(r.amount_cents)
                .bind(&r.job_type)
                .bind(r.agency_id.as_deref())
                .bind("held")
                .bind(r.expires_at_ms)
                .bind(None::<i64>)
                .bind(key)
                .bind(created)
                .execute(&mut *self.tx)
                .await?;
        }
        for (id, status, committed) in &st.changed_res {
            sqlx::query(SETTLE_RES_SQL)
                .bind(id)
                .bind(status)
                .bind(*committed)
                .bind(crate::now_ms())
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }
}

/// Creates a region's budget row if missing (`$1` region, `$2` day key,
/// `$3` month key, `$4` now).
const CREATE_REGION_ROW: &str = "INSERT INTO region_budgets (region_id, last_day_key, last_month_key, updated_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (region_id) DO NOTHING";
/// Ledger positions of a region's latest reset of either period and of its
/// latest monthly reset (the partial index `region_budget_tx_resets` holds
/// only resets). SQLite reads `$1` as its first parameter too.
pub(crate) const PERIOD_STARTS_SQL: &str = "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT), CAST(COALESCE(MAX(CASE WHEN reset_period = 'monthly' THEN seq END), 0) AS BIGINT) FROM region_budget_transactions WHERE region_id = $1 AND transaction_type = 'reset'";
/// A ledger entry by id, as [`EntryRow`].
const ENTRY_SQL: &str = "SELECT region_id, transaction_type, amount_cents, agency_id, job_type, seq FROM region_budget_transactions WHERE id = $1";
/// Sum refunded against spend `$1`.
const REFUNDED_SQL: &str = "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM region_budget_transactions WHERE refund_of = $1";
/// The reserve entry of reservation `$1`.
const RESERVE_ENTRY_SQL: &str = "SELECT id, balance_after_cents FROM region_budget_transactions WHERE reservation_id = $1 AND transaction_type = 'reserve'";
/// Settles reservation `$1`: status, committed cents, settled at.
const SETTLE_RES_SQL: &str = "UPDATE budget_reservations SET status = $2, committed_cents = $3, settled_at_ms = $4 WHERE id = $1";

fn push_tx(st: &mut BatchState, job: &Job, effect: Effect, extra: TxExtra) -> (String, i64) {
    push_tx_as(st, &job.region_id, &job.actor, job.now_ms, effect, extra)
}

/// [`push_tx`] for an entry of region `rid` by `actor` at `now_ms`.
fn push_tx_as(
    st: &mut BatchState,
    rid: &str,
    actor: &str,
    now_ms: i64,
    effect: Effect,
    extra: TxExtra,
) -> (String, i64) {
    let l = st
        .regions
        .get_mut(rid)
        .expect("region locked at batch start");
    let seq = l.next_seq;
    l.next_seq += 1;
    l.dirty = true;
    let id = new_id();
    st.txs.push(NewTx {
        id: id.clone(),
        region_id: rid.to_string(),
        seq,
        effect,
        agency_id: extra.agency_id,
        job_type: extra.job_type,
        description: extra.description,
        refund_of: extra.refund_of,
        reservation_id: extra.reservation_id,
        idempotency_key: extra.idempotency_key,
        actor: actor.to_string(),
        now_ms,
    });
    (id, effect.balance_after_cents)
}

#[derive(Default)]
struct TxExtra {
    agency_id: Option<String>,
    job_type: Option<String>,
    description: Option<String>,
    refund_of: Option<String>,
    reservation_id: Option<String>,
    idempotency_key: Option<String>,
}

fn outcome(id: String, amount: Cents, balance: Cents) -> Option<TxOutcome> {
    Some(TxOutcome {
        transaction_id: id,
        amount_cents: amount,
        balance_after_cents: balance,
        replayed: false,
        reservation: None,
    })
}

/// Applies one job to the batch's in-memory state (with the few lookups a
/// refund or a reservation needs). A refused job changes nothing.
async fn apply_job<D: BatchDb>(
    db: &mut D,
    st: &mut BatchState,
    job: &Job,
) -> Result<Option<TxOutcome>, LedgerError> {
    let rid = job.region_id.clone();
    let mut state = st.regions[&rid].state;
    match &job.op {
        BudgetOp::Allocate {
            amount_cents,
            description,
        } => {
            let e = state.allocate(*amount_cents)?;
            st.regions.get_mut(&rid).expect("locked").state = state;
            let (id, bal) = push_tx(
                st,
                job,
                e,
                TxExtra {
                    description: description.clone(),
                    ..Default::default()
                },
            );
            Ok(outcome(id, *amount_cents, bal))
        }
        BudgetOp::Spend {
            amount_cents,
            job_type,
            agency_id,
            idempotency_key,
            description,
        } => {
            if let Some(k) = idempotency_key {
                if let Some(p) = st.priors.get(&(rid.clone(), "spend", k.clone())) {
                    if p.amount_cents != *amount_cents || p.job_type.as_deref() != Some(job_type) {
                        return Err(LedgerError::IdempotencyMismatch { key: k.clone() });
                    }
                    return Ok(Some(TxOutcome {
                        transaction_id: p.id.clone(),
                        amount_cents: p.amount_cents,
                        balance_after_cents: p.balance_after_cents,
                        replayed: true,
                        reservation: None,
                    }));
                }
            }
            let e = state.spend(*amount_cents)?;
            st.regions.get_mut(&rid).expect("locked").state = state;
            let (id, bal) = push_tx(
                st,
                job,
                e,
                TxExtra {
                    agency_id: agency_id.clone(),
                    job_type: Some(job_type.clone()),
                    description: description.clone(),
                    idempotency_key: idempotency_key.clone(),
                    ..Default::default()
                },
            );
            let seq = st.regions[&rid].next_seq - 1;
            st.spends.insert(
                id.clone(),
                (
                    rid.clone(),
                    *amount_cents,
                    0,
                    agency_id.clone(),
                    Some(job_type.clone()),
                    seq,
                ),
            );
            if let Some(k) = idempotency_key {
                st.priors.insert(
                    (rid.clone(), "spend", k.clone()),
                    Prior {
                        id: id.clone(),
                        amount_cents: *amount_cents,
                        balance_after_cents: bal,
                        job_type: Some(job_type.clone()),
                        refund_of: None,
                    },
                );
            }
            Ok(outcome(id, *amount_cents, bal))
        }
        BudgetOp::Refund {
            transaction_id,
            amount_cents,
            idempotency_key,
            description,
        } => {
            if let Some(k) = idempotency_key {
                if let Some(p) = st.priors.get(&(rid.clone(), "refund", k.clone())) {
                    if p.amount_cents != *amount_cents
                        || p.refund_of.as_deref() != Some(transaction_id)
                    {
                        return Err(LedgerError::IdempotencyMismatch { key: k.clone() });
                    }
                    return Ok(Some(TxOutcome {
                        transaction_id: p.id.clone(),
                        amount_cents: p.amount_cents,
                        balance_after_cents: p.balance_after_cents,
                        replayed: true,
                        reservation: None,
                    }));
                }
            }
            if !st.spends.contains_key(transaction_id) {
                let Some((region, kind, charged, agency, job_type, seq)) =
                    db.entry(transaction_id).await?
                else {
                    return Err(LedgerError::Store(not_found("transaction")));
                };
                if kind != "spend" || region != rid {
                    return Err(LedgerError::NotASpend(transaction_id.clone()));
                }
                let refunded = db.refunded(transaction_id).await?;
                st.spends.insert(
                    transaction_id.clone(),
                    (region, charged, refunded, agency, job_type, seq),
                );
            }
            let (region, charged, refunded, agency, job_type, spend_seq) =
                st.spends[transaction_id].clone();
            if region != rid {
                return Err(LedgerError::NotASpend(transaction_id.clone()));
            }
            let (day_start, month_start) = period_starts(db, st, &rid).await?;
            let charged_in = ChargedIn::of(spend_seq, day_start, month_start);
            let e = state.refund(*amount_cents, charged, refunded, charged_in)?;
            st.regions.get_mut(&rid).expect("locked").state = state;
            if let Some(s) = st.spends.get_mut(transaction_id) {
                s.2 += *amount_cents;
            }
            let (id, bal) = push_tx(
                st,
                job,
                e,
                TxExtra {
                    agency_id: agency,
                    job_type,
                    description: description.clone(),
                    refund_of: Some(transaction_id.clone()),
                    idempotency_key: idempotency_key.clone(),
                    ..Default::default()
                },
            );
            if let Some(k) = idempotency_key {
                st.priors.insert(
                    (rid.clone(), "refund", k.clone()),
                    Prior {
                        id: id.clone(),
                        amount_cents: *amount_cents,
                        balance_after_cents: bal,
                        job_type: None,
                        refund_of: Some(transaction_id.clone()),
                    },
                );
            }
            Ok(outcome(id, *amount_cents, bal))
        }
        BudgetOp::Reserve {
            amount_cents,
            job_type,
            agency_id,
            idempotency_key,
            expires_at_ms,
        } => {
            if let Some(k) = idempotency_key {
                let prior = match st.res_keys.get(&(rid.clone(), k.clone())) {
                    Some(r) => Some(r.clone()),
                    None => db.reservation_by_key(&rid, k).await?,
                };
                if let Some(r) = prior {
                    if r.amount_cents != *amount_cents || &r.job_type != job_type {
                        return Err(LedgerError::IdempotencyMismatch { key: k.clone() });
                    }
                    let (tid, bal) = match db.reserve_entry(&r.id).await? {
                        Some(e) => e,
                        None => st
                            .txs
                            .iter()
                            .find(|t| {
                                t.reservation_id.as_deref() == Some(&r.id)
                                    && t.effect.kind == TxKind::Reserve
                            })
                            .map(|t| (t.id.clone(), t.effect.balance_after_cents))
                            .unwrap_or_default(),
                    };
                    return Ok(Some(TxOutcome {
                        transaction_id: tid,
                        amount_cents: r.amount_cents,
                        balance_after_cents: bal,
                        replayed: true,
                        reservation: Some(r),
                    }));
                }
            }
            let e = state.reserve(*amount_cents)?;
            st.regions.get_mut(&rid).expect("locked").state = state;
            let res = Reservation {
                id: new_id(),
                region_id: rid.clone(),
                amount_cents: *amount_cents,
                job_type: job_type.clone(),
                agency_id: agency_id.clone(),
                status: "held".into(),
                expires_at_ms: *expires_at_ms,
                committed_cents: None,
            };
            let (id, bal) = push_tx(
                st,
                job,
                e,
                TxExtra {
                    agency_id: agency_id.clone(),
                    job_type: Some(job_type.clone()),
                    reservation_id: Some(res.id.clone()),
                    idempotency_key: idempotency_key.clone(),
                    ..Default::default()
                },
            );
            st.reservations.insert(res.id.clone(), res.clone());
            if let Some(k) = idempotency_key {
                st.res_keys.insert((rid.clone(), k.clone()), res.clone());
            }
            st.new_res.push(res.clone());
            let mut o = outcome(id, *amount_cents, bal);
            if let Some(o) = o.as_mut() {
                o.reservation = Some(res);
            }
            Ok(o)
        }
        BudgetOp::Commit {
            reservation_id,
            amount_cents,
        } => {
            let mut res = held_reservation(db, st, &rid, reservation_id).await?;
            if fleetscale_core::budget::reservation_expired(res.expires_at_ms, job.now_ms) {
                return Err(LedgerError::ReservationSettled {
                    id: res.id,
                    status: "expired".into(),
                });
            }
            let effects = state.commit(res.amount_cents, *amount_cents)?;
            st.regions.get_mut(&rid).expect("locked").state = state;
            let mut last = (String::new(), 0);
            for e in effects {
                last = push_tx(
                    st,
                    job,
                    e,
                    TxExtra {
                        agency_id: res.agency_id.clone(),
                        job_type: Some(res.job_type.clone()),
                        reservation_id: Some(res.id.clone()),
                        description: Some(if e.kind == TxKind::Spend {
                            "reservation commit".into()
                        } else {
                            "reservation hold released on commit".into()
                        }),
                        ..Default::default()
                    },
                );
                if e.kind == TxKind::Spend {
                    let seq = st.regions[&rid].next_seq - 1;
                    st.spends.insert(
                        last.0.clone(),
                        (
                            rid.clone(),
                            *amount_cents,
                            0,
                            res.agency_id.clone(),
                            Some(res.job_type.clone()),
                            seq,
                        ),
                    );
                }
            }
            res.status = "committed".into();
            res.committed_cents = Some(*amount_cents);
            settle(st, &res);
            Ok(Some(TxOutcome {
                transaction_id: last.0,
                amount_cents: *amount_cents,
                balance_after_cents: last.1,
                replayed: false,
                reservation: Some(res),
            }))
        }
        BudgetOp::Release {
            reservation_id,
            expired,
        } => {
            let mut res = held_reservation(db, st, &rid, reservation_id).await?;
            if *expired
                && !fleetscale_core::budget::reservation_expired(res.expires_at_ms, job.now_ms)
            {
                return Ok(None);
            }
            let e = state.release(res.amount_cents)?;
            st.regions.get_mut(&rid).expect("locked").state = state;
            let (id, bal) = push_tx(
                st,
                job,
                e,
                TxExtra {
                    agency_id: res.agency_id.clone(),
                    job_type: Some(res.job_type.clone()),
                    reservation_id: Some(res.id.clone()),
                    description: Some(if *expired {
                        "reservation expired".into()
                    } else {
                        "reservation released".into()
                    }),
                    ..Default::default()
                },
            );
            res.status = if *expired { "expired" } else { "released" }.into();
            settle(st, &res);
            let amount = res.amount_cents;
            let mut o = outcome(id, amount, bal);
            if let Some(o) = o.as_mut() {
                o.reservation = Some(res);
            }
            Ok(o)
        }
        BudgetOp::Reset { period } => Ok(apply_reset(st, &rid, *period, &job.actor, job.now_ms)
            .and_then(|(id, amount, bal)| outcome(id, amount, bal))),
    }
}

/// Region `rid`'s period starts (see [`Locked::period_starts`]), read once
/// per batch; resets applied in the batch keep them current.
async fn period_starts<D: BatchDb>(
    db: &mut D,
    st: &mut BatchState,
    rid: &str,
) -> Result<(i64, i64), LedgerError> {
    let stored = match st.regions[rid].period_starts {
        Some(p) => p,
        None => {
            let p = db.period_starts(rid).await?;
            st.regions.get_mut(rid).expect("locked").period_starts = Some(p);
            p
        }
    };
    let batch = st.regions[rid].batch_period_starts;
    Ok((stored.0.max(batch.0), stored.1.max(batch.1)))
}

/// Resets region `rid` in the batch: `period`, or the reset due at `now_ms`
/// (none when the day and month have not changed). Returns the entry's id,
/// amount and balance after.
fn apply_reset(
    st: &mut BatchState,
    rid: &str,
    period: Option<ResetPeriod>,
    actor: &str,
    now_ms: i64,
) -> Option<(String, Cents, Cents)> {
    let l = st
        .regions
        .get_mut(rid)
        .expect("region locked at batch start");
    let period = period.or_else(|| due_reset(l.last_day_key, l.last_month_key, now_ms))?;
    let e = l.state.reset(period);
    l.last_day_key = l.last_day_key.max(day_key(now_ms));
    if period == ResetPeriod::Monthly {
        l.last_month_key = l.last_month_key.max(month_key(now_ms));
    }
    let (id, bal) = push_tx_as(
        st,
        rid,
        actor,
        now_ms,
        e,
        TxExtra {
            description: Some(format!("{} reset", period.as_str())),
            ..Default::default()
        },
    );
    let l = st
        .regions
        .get_mut(rid)
        .expect("region locked at batch start");
    let seq = l.next_seq - 1;
    l.batch_period_starts.0 = seq;
    if period == ResetPeriod::Monthly {
        l.batch_period_starts.1 = seq;
    }
    Some((id, e.amount_cents, bal))
}

fn settle(st: &mut BatchState, res: &Reservation) {
    st.reservations.insert(res.id.clone(), res.clone());
    st.changed_res
        .push((res.id.clone(), res.status.clone(), res.committed_cents));
}

async fn held_reservation<D: BatchDb>(
    db: &mut D,
    st: &mut BatchState,
    rid: &str,
    id: &str,
) -> Result<Reservation, LedgerError> {
    let res = match st.reservations.get(id) {
        Some(r) => r.clone(),
        None => {
            let r = db
                .reservation(id)
                .await?
                .ok_or_else(|| not_found("reservation"))?;
            st.reservations.insert(r.id.clone(), r.clone());
            r
        }
    };
    if res.region_id != rid {
        return Err(LedgerError::Store(not_found("reservation")));
    }
    if res.status != "held" {
        return Err(LedgerError::ReservationSettled {
            id: res.id,
            status: res.status,
        });
    }
    Ok(res)
}

// ---- what a batch writes --------------------------------------------------------
//
// PostgreSQL: each table's rows travel as one JSON array bound to a single
// parameter and are read with `json_to_recordset`; ledger and region
// rows are written by one statement (one round trip while the region row is
// locked, one statement shape whatever the batch size). SQLite
// (`budget_sqlite`): one cached prepared INSERT per row, an in-process call.

/// Columns of the ledger with their PostgreSQL types, in [`TX_COLS`] order.
const TX_TYPES: [(&str, &str); 16] = [
    ("id", "TEXT"),
    ("region_id", "TEXT"),
    ("seq", "BIGINT"),
    ("transaction_type", "TEXT"),
    ("amount_cents", "BIGINT"),
    ("delta_cents", "BIGINT"),
    ("balance_after_cents", "BIGINT"),
    ("agency_id", "TEXT"),
    ("job_type", "TEXT"),
    ("description", "TEXT"),
    ("reset_period", "TEXT"),
    ("refund_of", "TEXT"),
    ("reservation_id", "TEXT"),
    ("idempotency_key", "TEXT"),
    ("actor", "TEXT"),
    ("created_at_ms", "BIGINT"),
];

/// PostgreSQL: `INSERT INTO table (cols) SELECT ... FROM <the JSON array of objects in $param>`.
fn json_insert_sql(table: &str, cols: &[(&str, &str)], param: usize) -> String {
    let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
    let names = names.join(", ");
    let typed: Vec<String> = cols.iter().map(|(n, t)| format!("{n} {t}")).collect();
    format!(
        "INSERT INTO {table} ({names}) SELECT {names} FROM json_to_recordset(${param}::json) AS x({})",
        typed.join(", ")
    )
}

/// PostgreSQL: the batch's idempotency lookup, region `$1`, keys the JSON
/// array `$2`. One unique-index probe per (kind, key): the LATERAL subquery
/// with OFFSET 0 is not flattened, and naming the kind keeps all three index
/// columns in the probe. With `IN (SELECT ...)` the planner scanned the whole
/// region's ledger instead (26 ms at 7.5k rows, growing).
const IDEM_LOOKUP_PG: &str = "SELECT t.idempotency_key, t.transaction_type, t.id, t.amount_cents, t.balance_after_cents, t.job_type, t.refund_of FROM json_array_elements_text($2::json) AS k(key) CROSS JOIN (VALUES ('spend'), ('refund')) AS y(kind), LATERAL (SELECT * FROM region_budget_transactions WHERE region_id = $1 AND transaction_type = y.kind AND idempotency_key = k.key OFFSET 0) AS t";

/// A ledger row to insert (as JSON for PostgreSQL: keys are the column names).
#[derive(Serialize)]
pub(crate) struct TxJson<'a> {
    pub(crate) id: &'a str,
    pub(crate) region_id: &'a str,
    pub(crate) seq: i64,
    pub(crate) transaction_type: &'static str,
    pub(crate) amount_cents: Cents,
    pub(crate) delta_cents: Cents,
    pub(crate) balance_after_cents: Cents,
    pub(crate) agency_id: Option<&'a str>,
    pub(crate) job_type: Option<&'a str>,
    pub(crate) description: Option<&'a str>,
    pub(crate) reset_period: Option<&'static str>,
    pub(crate) refund_of: Option<&'a str>,
    pub(crate) reservation_id: Option<&'a str>,
    pub(crate) idempotency_key: Option<&'a str>,
    pub(crate) actor: &'a str,
    pub(crate) created_at_ms: i64,
}

/// The `detail` of a ledger entry's audit record (fields in alphabetical
/// order, as `serde_json::json!` wrote them before).
#[derive(Serialize)]
struct AuditDetail<'a> {
    amount_cents: Cents,
    balance_after_cents: Cents,
    job_type: Option<&'a str>,
    refund_of: Option<&'a str>,
    region_id: &'a str,
    reservation_id: Option<&'a str>,
}

impl<'a> TxJson<'a> {
    /// The row of a new entry.
    pub(crate) fn of(t: &'a NewTx) -> TxJson<'a> {
        TxJson {
            id: &t.id,
            region_id: &t.region_id,
            seq: t.seq,
            transaction_type: t.effect.kind.as_str(),
            amount_cents: t.effect.amount_cents,
            delta_cents: t.effect.delta_cents,
            balance_after_cents: t.effect.balance_after_cents,
            agency_id: t.agency_id.as_deref(),
            job_type: t.job_type.as_deref(),
            description: t.description.as_deref(),
            reset_period: t.effect.period.map(ResetPeriod::as_str),
            refund_of: t.refund_of.as_deref(),
            reservation_id: t.reservation_id.as_deref(),
            idempotency_key: t.idempotency_key.as_deref(),
            actor: &t.actor,
            created_at_ms: t.now_ms,
        }
    }
}

/// The columns of a ledger entry that make its audit record
/// ([`ledger_audit_row`]).
pub(crate) const LEDGER_AUDIT_COLS: &str = "id, actor, transaction_type, agency_id, amount_cents, balance_after_cents, job_type, refund_of, region_id, reservation_id, created_at_ms";

/// The audit record of a ledger entry (selected as [`LEDGER_AUDIT_COLS`]):
/// the ledger is the audit log of budget operations, so an entry has no
/// separate `audit_log` row. The record is the one that row held (migration
/// 0009), with the entry's id as its own.
pub(crate) fn ledger_audit_row(r: &AnyRow) -> Result<AuditEntry, StoreError> {
    let id: String = r.try_get(0)?;
    let kind: String = r.try_get(2)?;
    let job_type: Option<String> = r.try_get(6)?;
    let refund_of: Option<String> = r.try_get(7)?;
    let region_id: String = r.try_get(8)?;
    let reservation_id: Option<String> = r.try_get(9)?;
    let detail = serde_json::to_value(AuditDetail {
        amount_cents: r.try_get(4)?,
        balance_after_cents: r.try_get(5)?,
        job_type: job_type.as_deref(),
        refund_of: refund_of.as_deref(),
        region_id: &region_id,
        reservation_id: reservation_id.as_deref(),
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(AuditEntry {
        object_id: id.clone(),
        id,
        actor: r.try_get(1)?,
        action: format!("budget.{kind}"),
        tenant_id: r.try_get(3)?,
        object_type: "budget_transaction".into(),
        detail,
        created_at_ms: r.try_get(10)?,
    })
}

fn to_json<T: Serialize>(v: &T) -> Result<String, LedgerError> {
    serde_json::to_string(v).map_err(|e| LedgerError::Store(StoreError::Corrupt(e.to_string())))
}

/// PostgreSQL: the batch's changed region rows, from the JSON array in `$2`.
const REGION_UPDATE_PG: &str = "UPDATE region_budgets AS b SET monthly_cents = x.monthly_cents, remaining_cents = x.remaining_cents, spent_today_cents = x.spent_today_cents, reserved_cents = x.reserved_cents, next_seq = x.next_seq, last_day_key = x.last_day_key, last_month_key = x.last_month_key, updated_at_ms = x.updated_at_ms FROM json_to_recordset($2::json) AS x(region_id TEXT, monthly_cents BIGINT, remaining_cents BIGINT, spent_today_cents BIGINT, reserved_cents BIGINT, next_seq BIGINT, last_day_key BIGINT, last_month_key BIGINT, updated_at_ms BIGINT) WHERE b.region_id = x.region_id";

/// A changed region row (PostgreSQL: as JSON).
#[derive(Serialize)]
struct RegionJson<'a> {
    region_id: &'a str,
    monthly_cents: Cents,
    remaining_cents: Cents,
    spent_today_cents: Cents,
    reserved_cents: Cents,
    next_seq: i64,
    last_day_key: i64,
    last_month_key: i64,
    updated_at_ms: i64,
}
