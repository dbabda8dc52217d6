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
//! `budget::sqlite`; PostgreSQL: `fsync=on`, synchronous commit).
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

mod batch;
mod pg;
mod rules;
mod sqlite;
mod types;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::any::AnyRow;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use fleetscale_core::budget::{
    check_ledger, Cents, LedgerEntry, LedgerReport, ResetPeriod, TxKind,
};

use crate::sql::{not_found, paginate};
use crate::{Backend, Listed, Page, Store, StoreError};
use batch::{res_row, Job, RES_COLS};

pub(crate) use batch::{ledger_audit_row, LEDGER_AUDIT_COLS};
pub use types::*;

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
    /// connection (on SQLite to the same file, see `budget/sqlite.rs`).
    pub fn start(store: Store) -> Budgets {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        match store.backend() {
            Backend::Postgres => pg::start_pg_writer(store.clone(), rx),
            Backend::Sqlite => sqlite::start_writer(&store, rx, stopped.clone()),
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
            .map(|r| Ok((r.try_get("region_id")?, r.try_get("id")?)))
            .collect()
    }

    /// Region ids that have a budget.
    pub async fn budget_regions(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT region_id FROM region_budgets ORDER BY region_id")
            .fetch_all(&self.store.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("region_id")?)).collect()
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
                let kind: String = r.try_get("transaction_type")?;
                let period: Option<String> = r.try_get("reset_period")?;
                Ok(LedgerEntry {
                    id: r.try_get("id")?,
                    seq: r.try_get("seq")?,
                    kind: TxKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("transaction type {kind}")))?,
                    amount_cents: r.try_get("amount_cents")?,
                    delta_cents: r.try_get("delta_cents")?,
                    balance_after_cents: r.try_get("balance_after_cents")?,
                    period: period.as_deref().and_then(ResetPeriod::parse),
                    refund_of: r.try_get("refund_of")?,
                    idempotency_key: r.try_get("idempotency_key")?,
                    reservation_id: r.try_get("reservation_id")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(check_ledger(&entries, stored))
    }
}

const TX_COLS: &str = "id, region_id, seq, transaction_type, amount_cents, delta_cents, balance_after_cents, agency_id, job_type, description, reset_period, refund_of, reservation_id, idempotency_key, actor, created_at_ms";

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
            monthly_cents: r.try_get("monthly_cents")?,
            remaining_cents: r.try_get("remaining_cents")?,
            spent_today_cents: r.try_get("spent_today_cents")?,
            reserved_cents: r.try_get("reserved_cents")?,
            transactions: r.try_get::<i64, _>("next_seq")? - 1,
        },
    })
}

fn list_row(r: &AnyRow) -> Result<RegionBudget, StoreError> {
    Ok(RegionBudget {
        region_id: r.try_get("region_id")?,
        monthly_cents: r.try_get("monthly_cents")?,
        remaining_cents: r.try_get("remaining_cents")?,
        spent_today_cents: r.try_get("spent_today_cents")?,
        reserved_cents: r.try_get("reserved_cents")?,
        transactions: r.try_get::<i64, _>("next_seq")? - 1,
    })
}

fn tx_row(r: &AnyRow) -> Result<BudgetTransaction, StoreError> {
    Ok(BudgetTransaction {
        id: r.try_get("id")?,
        region_id: r.try_get("region_id")?,
        seq: r.try_get("seq")?,
        transaction_type: r.try_get("transaction_type")?,
        amount_cents: r.try_get("amount_cents")?,
        delta_cents: r.try_get("delta_cents")?,
        balance_after_cents: r.try_get("balance_after_cents")?,
        agency_id: r.try_get("agency_id")?,
        job_type: r.try_get("job_type")?,
        description: r.try_get("description")?,
        reset_period: r.try_get("reset_period")?,
        refund_of: r.try_get("refund_of")?,
        reservation_id: r.try_get("reservation_id")?,
        idempotency_key: r.try_get("idempotency_key")?,
        actor: r.try_get("actor")?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}
