//! What both budget writers share: a queued operation ([`Job`]), the
//! batch's in-memory state, the database side of a batch ([`BatchDb`]) and
//! the rows a batch writes.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use fleetscale_core::budget::{BudgetState, Cents, Effect, ResetPeriod};

use super::types::{BudgetOp, LedgerError, Reservation, TxOutcome, MAX_BATCH};
use crate::{AuditEntry, StoreError};

pub(crate) struct Job {
    pub(crate) region_id: String,
    pub(crate) op: BudgetOp,
    pub(crate) actor: String,
    pub(crate) now_ms: i64,
    pub(crate) reply: oneshot::Sender<Result<Option<TxOutcome>, LedgerError>>,
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
    /// The agency the first request charged (a reuse naming another is a
    /// mismatch).
    pub(crate) agency_id: Option<String>,
    /// The first request's description (likewise).
    pub(crate) description: Option<String>,
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

/// The ledger entry a refund refers to: (region, transaction type, amount,
/// agency, job type, ledger position).
pub(crate) type EntryRow = (String, String, Cents, Option<String>, Option<String>, i64);

/// The database side of one batch's transaction: the few reads the budget
/// rules need and the final write. The transaction itself (begin, commit)
/// belongs to the caller. Two implementations: PostgreSQL through sqlx
/// (`pg::PgBatch`) and SQLite through rusqlite on the writer thread
/// (`budget::sqlite`); [`run_batch`](super::rules::run_batch) is the one batch
/// logic over both.
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

/// Ledger positions of a region's latest reset of either period and of its
/// latest monthly reset (the partial index `region_budget_tx_resets` holds
/// only resets). SQLite reads `$1` as its first parameter too.
pub(crate) const PERIOD_STARTS_SQL: &str = "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT), CAST(COALESCE(MAX(CASE WHEN reset_period = 'monthly' THEN seq END), 0) AS BIGINT) FROM region_budget_transactions WHERE region_id = $1 AND transaction_type = 'reset'";

pub(super) const RES_COLS: &str =
    "id, region_id, amount_cents, job_type, agency_id, status, expires_at_ms, committed_cents";

pub(super) fn res_row(r: &AnyRow) -> Result<Reservation, StoreError> {
    Ok(Reservation {
        id: r.try_get("id")?,
        region_id: r.try_get("region_id")?,
        amount_cents: r.try_get("amount_cents")?,
        job_type: r.try_get("job_type")?,
        agency_id: r.try_get("agency_id")?,
        status: r.try_get("status")?,
        expires_at_ms: r.try_get("expires_at_ms")?,
        committed_cents: r.try_get("committed_cents")?,
    })
}

// ---- what a batch writes --------------------------------------------------------
//
// PostgreSQL: each table's rows travel as one JSON array bound to a single
// parameter and are read with `json_to_recordset`; ledger and region
// rows are written by one statement (one round trip while the region row is
// locked, one statement shape whatever the batch size). SQLite
// (`budget::sqlite`): one cached prepared INSERT per row, an in-process call.

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
    let id: String = r.try_get("id")?;
    let kind: String = r.try_get("transaction_type")?;
    let job_type: Option<String> = r.try_get("job_type")?;
    let refund_of: Option<String> = r.try_get("refund_of")?;
    let region_id: String = r.try_get("region_id")?;
    let reservation_id: Option<String> = r.try_get("reservation_id")?;
    let detail = serde_json::to_value(AuditDetail {
        amount_cents: r.try_get("amount_cents")?,
        balance_after_cents: r.try_get("balance_after_cents")?,
        job_type: job_type.as_deref(),
        refund_of: refund_of.as_deref(),
        region_id: &region_id,
        reservation_id: reservation_id.as_deref(),
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(AuditEntry {
        object_id: id.clone(),
        id,
        actor: r.try_get("actor")?,
        action: format!("budget.{kind}"),
        tenant_id: r.try_get("agency_id")?,
        object_type: "budget_transaction".into(),
        detail,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}
