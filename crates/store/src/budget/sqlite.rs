//! The budget writer on SQLite: a thread of its own with its own connection
//! (rusqlite) to the database file.
//!
//! # Why not the store's sqlx connection
//!
//! Through sqlx every statement is a hop to sqlx's SQLite worker thread and
//! back to a tokio task. On a loaded machine each hop waits for the
//! scheduler (about 200 µs measured with 32 spending clients on 2 cores),
//! and a batch made about ten of them, so a batch took about 2.9 ms of which
//! the SQL itself was a small part (`docs/benchmarks.md`). Here the whole
//! batch (lock, idempotency lookups, the rules, the inserts, the commit) runs
//! as plain calls on one thread: one wake-up to start it and one commit;
//! the answers follow the WAL's fsync on a second thread (below).
//!
//! # Exactness
//!
//! Each batch is one `BEGIN IMMEDIATE` transaction: it takes SQLite's write
//! lock before it reads the balance, so no other connection (the store's
//! sqlx connection, which also begins its transactions `IMMEDIATE`) can
//! write in between, and the batch logic is the same [`run_batch`] the
//! PostgreSQL writer runs. Idempotency keys are looked up in memory, not in
//! a unique index; [`keys`] explains why that is exact.
//!
//! # Durability: the commit and its fsync are pipelined
//!
//! An answer is sent only after the batch's commit is on disk, as with
//! `synchronous=FULL`, but the fsync no longer holds up the next batch. The
//! writer's connection commits with `synchronous=NORMAL`: in WAL mode the
//! commit writes its frames to the WAL file and does not fsync it (a
//! checkpoint still syncs the WAL before it copies pages into the database
//! and syncs the database after). The writer hands the batch's answers to a
//! second thread, `budget-wal-sync`, and starts the next batch at once. That
//! thread takes every batch handed over so far, calls `fdatasync` on the WAL
//! file once for all of them and only then sends their answers. `fdatasync`
//! makes every write that reached the file before it durable, whichever file
//! descriptor made it, so each answered batch is on disk together with every
//! batch before it. A process crash (SIGKILL) loses nothing written anyway;
//! after a power loss the database holds a prefix of the committed batches
//! that includes every answered one.
//!
//! What changes: between its commit and the fsync a batch is visible to
//! readers (a `GET .../budget` may show a spend whose answer is still
//! waiting for the disk). If the machine loses power in that window, that
//! unanswered spend is gone after the restart and its client, having no
//! answer, retries it with the same idempotency key and is charged then.
//!
//! If `fdatasync` fails, the kernel may have dropped the pages it could not
//! write, so nothing after that point can be trusted to be on disk: the
//! waiting operations get [`LedgerError::SyncFailed`] (a 503 saying the
//! operation may or may not have been applied: it is committed, but may be
//! lost in a power failure), and the writer refuses every later one until
//! the server is restarted (PostgreSQL panics on a failed fsync for the
//! same reason). A client retries after the restart with the same
//! idempotency key and gets the original result or a fresh charge, never
//! two.
//!
//! Measured with the spend bench (`docs/benchmarks.md`): about 1.2× the
//! spends per second of committing with `synchronous=FULL`.

use std::fs::File;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use fleetscale_core::budget::{day_key, month_key, BudgetState, Cents};

use super::batch::{
    linger, BatchDb, BatchState, EntryRow, Job, Locked, Prior, TxJson, PERIOD_STARTS_SQL,
};
use super::rules::run_batch;
use super::types::{LedgerError, Reservation, TxOutcome, MAX_BATCH};
use crate::{Store, StoreError};

mod keys;

use keys::{KeyIndex, Staged};

/// Busy timeout of the writer's connection: how long a batch waits for the
/// store's connection to finish a write transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the writer thread for `store` (a SQLite store). If the database
/// file cannot be opened a second time, the failure is logged and every
/// operation is answered with it. `stopped` is set once the writer refuses
/// every operation (it could not open the database, or an fdatasync failed).
pub(crate) fn start_writer(store: &Store, rx: mpsc::Receiver<Job>, stopped: Arc<AtomicBool>) {
    let opened = match store.sqlite_path() {
        Some(path) => open(path),
        None => Err(StoreError::Config(
            "the budget writer needs the SQLite database file".into(),
        )),
    };
    let spawned = std::thread::Builder::new()
        .name("budget-writer".into())
        .spawn(move || match opened {
            Ok((conn, wal)) => run(conn, wal, rx, stopped),
            Err(e) => {
                stopped.store(true, Ordering::Release);
                refuse_all(e, rx)
            }
        });
    if let Err(e) = spawned {
        // The receiver went down with the closure: every operation is
        // answered "the budget writer has stopped".
        tracing::error!(error = %e, "cannot start the budget writer thread");
    }
}

/// Opens the writer's connection with the store's settings except
/// `synchronous=NORMAL` (see the module doc), and the WAL file it writes,
/// for `fdatasync`.
fn open(path: &Path) -> Result<(Connection, File), StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; \
         PRAGMA temp_store=MEMORY; PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=10000;",
    )?;
    // A read makes sure the WAL file exists; it stays (same file) while
    // this connection is open.
    conn.query_row("SELECT count(*) FROM region_budgets", [], |r| {
        r.get::<_, i64>(0)
    })?;
    conn.set_prepared_statement_cache_capacity(32);
    // The WAL is named after the database file as SQLite resolved it
    // (absolute, symlinks followed), not after the path we were given.
    let db = conn.path().filter(|p| !p.is_empty()).ok_or_else(|| {
        StoreError::Config(format!(
            "SQLite reports no file for the database {}",
            path.display()
        ))
    })?;
    let wal_path = format!("{db}-wal");
    let wal = File::open(&wal_path)
        .map_err(|e| StoreError::Config(format!("cannot open the WAL file {wal_path}: {e}")))?;
    Ok((conn, wal))
}

fn refuse_all(e: StoreError, mut rx: mpsc::Receiver<Job>) {
    let msg = e.to_string();
    tracing::error!(error = %msg, "the budget writer cannot open the database");
    while let Some(job) = rx.blocking_recv() {
        let _ = job
            .reply
            .send(Err(LedgerError::Store(StoreError::Config(format!(
                "the budget writer cannot open the database: {msg}"
            )))));
    }
}

/// The reply channel of an operation.
type Reply = oneshot::Sender<Answer>;

/// What an operation is answered.
type Answer = Result<Option<TxOutcome>, LedgerError>;

/// A committed batch's answers, waiting for the fsync of the WAL.
type Answers = Vec<(Reply, Answer)>;

fn run(mut conn: Connection, wal: File, mut rx: mpsc::Receiver<Job>, failed: Arc<AtomicBool>) {
    let (to_sync, committed) = std_mpsc::channel::<Answers>();
    let spawned = {
        let failed = failed.clone();
        std::thread::Builder::new()
            .name("budget-wal-sync".into())
            .spawn(move || sync_then_answer(|| wal.sync_data(), &committed, &failed))
    };
    if let Err(e) = spawned {
        failed.store(true, Ordering::Release);
        return refuse_all(
            StoreError::Config(format!("cannot start the WAL sync thread: {e}")),
            rx,
        );
    }
    let mut index = KeyIndex::new();
    let started = std::time::Instant::now();
    match index.load(&mut conn) {
        Ok(l) => tracing::info!(
            keys = l.keys,
            regions = l.regions,
            ms = started.elapsed().as_millis() as u64,
            "budget writer indexed the ledger's idempotency keys"
        ),
        // Each region is then read from the ledger when a batch first
        // touches it (KeyIndex::sync).
        Err(e) => tracing::warn!(error = %e, "cannot index the ledger's idempotency keys at start"),
    }
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(job) = rx.blocking_recv() {
        batch.push(job);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        linger(&mut rx, &mut batch);
        let jobs = std::mem::take(&mut batch);
        if failed.load(Ordering::Acquire) {
            for job in jobs {
                let _ = job.reply.send(Err(LedgerError::SyncFailed));
            }
            continue;
        }
        match apply_batch(&mut conn, &mut index, &jobs) {
            Ok(results) => {
                let answers: Answers = jobs.into_iter().map(|j| j.reply).zip(results).collect();
                if let Err(std_mpsc::SendError(answers)) = to_sync.send(answers) {
                    // The sync thread is gone: nothing can be confirmed.
                    failed.store(true, Ordering::Release);
                    for (reply, _) in answers {
                        let _ = reply.send(Err(LedgerError::SyncFailed));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), batch = jobs.len(), "budget batch failed; nothing committed");
                for job in jobs {
                    let _ = job.reply.send(Err(LedgerError::BatchFailed));
                }
            }
        }
    }
}

/// The WAL sync thread: takes every committed batch waiting, makes the WAL
/// durable with one `fdatasync` and answers them; on failure answers them
/// with an error and sets `failed`, after which it answers nothing else
/// with success.
fn sync_then_answer(
    sync: impl Fn() -> std::io::Result<()>,
    committed: &std_mpsc::Receiver<Answers>,
    failed: &AtomicBool,
) {
    while let Ok(first) = committed.recv() {
        let mut waiting = vec![first];
        waiting.extend(committed.try_iter());
        let synced = if failed.load(Ordering::Acquire) {
            false
        } else {
            match sync() {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, "fdatasync of the WAL failed; the budget writer refuses every later operation");
                    failed.store(true, Ordering::Release);
                    false
                }
            }
        };
        for (reply, answer) in waiting.into_iter().flatten() {
            let _ = reply.send(if synced {
                answer
            } else {
                Err(LedgerError::SyncFailed)
            });
        }
    }
}

type Results = Vec<Result<Option<TxOutcome>, LedgerError>>;

/// One batch in one `BEGIN IMMEDIATE` transaction; rolled back on error.
/// The idempotency keys are recorded in `index` only once the commit
/// succeeded.
fn apply_batch<S: BuildHasher>(
    conn: &mut Connection,
    index: &mut KeyIndex<S>,
    jobs: &[Job],
) -> Result<Results, LedgerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut db = LiteBatch {
        conn: &tx,
        index,
        staged: None,
    };
    // Every call of LiteBatch returns at once (no await ever pends), so this
    // runs the shared batch logic to completion as plain calls.
    let results = futures::executor::block_on(run_batch(&mut db, jobs))?;
    let staged = db.staged.take();
    tx.commit()?;
    if let Some(staged) = staged {
        index.committed(staged);
    }
    Ok(results)
}

/// [`BatchDb`] on SQLite: statements of the writer's open transaction,
/// prepared once and cached by the connection, and the ledger's idempotency
/// keys ([`keys`]).
struct LiteBatch<'c, S> {
    conn: &'c Connection,
    index: &'c mut KeyIndex<S>,
    /// The batch's keys, once written.
    staged: Option<Staged>,
}

const RES_SELECT: &str = "SELECT id, region_id, amount_cents, job_type, agency_id, status, expires_at_ms, committed_cents FROM budget_reservations";

fn res_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Reservation> {
    Ok(Reservation {
        id: r.get("id")?,
        region_id: r.get("region_id")?,
        amount_cents: r.get("amount_cents")?,
        job_type: r.get("job_type")?,
        agency_id: r.get("agency_id")?,
        status: r.get("status")?,
        expires_at_ms: r.get("expires_at_ms")?,
        committed_cents: r.get("committed_cents")?,
    })
}

impl<S: BuildHasher> BatchDb for LiteBatch<'_, S> {
    async fn region_row(&mut self, rid: &str) -> Result<Option<Locked>, LedgerError> {
        let locked = self
            .conn
            .prepare_cached("SELECT monthly_cents, remaining_cents, spent_today_cents, reserved_cents, next_seq, last_day_key, last_month_key FROM region_budgets WHERE region_id = ?1")
            .and_then(|mut s| {
                s.query_row([rid], |r| {
                    Ok(Locked {
                        state: BudgetState {
                            monthly_cents: r.get("monthly_cents")?,
                            remaining_cents: r.get("remaining_cents")?,
                            spent_today_cents: r.get("spent_today_cents")?,
                            reserved_cents: r.get("reserved_cents")?,
                        },
                        next_seq: r.get("next_seq")?,
                        last_day_key: r.get("last_day_key")?,
                        last_month_key: r.get("last_month_key")?,
                        dirty: false,
                        period_starts: None,
                        batch_period_starts: (0, 0),
                    })
                })
                .optional()
            })?;
        // Under the write lock: the keys now cover the region's ledger.
        match &locked {
            Some(l) => {
                self.index.sync(self.conn, rid, l.next_seq)?;
            }
            None => self.index.forget(rid),
        }
        Ok(locked)
    }

    async fn create_region_row(&mut self, rid: &str, now_ms: i64) -> Result<(), LedgerError> {
        self.conn
            .prepare_cached("INSERT INTO region_budgets (region_id, last_day_key, last_month_key, updated_at_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (region_id) DO NOTHING")
            .and_then(|mut s| s.execute(params![rid, day_key(now_ms), month_key(now_ms), now_ms]))
            .map(drop)
            .map_err(LedgerError::from)
    }

    async fn priors(
        &mut self,
        rid: &str,
        keys: &[(&str, &'static str)],
    ) -> Result<Vec<(String, String, Prior)>, LedgerError> {
        // In memory; an entry is read only for a key seen before.
        let mut out = Vec::new();
        for (key, kind) in keys {
            out.extend(self.index.prior(self.conn, rid, kind, key)?);
        }
        Ok(out)
    }

    async fn entry(&mut self, id: &str) -> Result<Option<EntryRow>, LedgerError> {
        self.conn
            .prepare_cached("SELECT region_id, transaction_type, amount_cents, agency_id, job_type, seq FROM region_budget_transactions WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([id], |r| {
                    Ok((r.get("region_id")?, r.get("transaction_type")?, r.get("amount_cents")?, r.get("agency_id")?, r.get("job_type")?, r.get("seq")?))
                })
                .optional()
            })
            .map_err(LedgerError::from)
    }

    async fn refunded(&mut self, id: &str) -> Result<Cents, LedgerError> {
        self.conn
            .prepare_cached("SELECT COALESCE(SUM(amount_cents), 0) FROM region_budget_transactions WHERE refund_of = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)))
            .map_err(LedgerError::from)
    }

    async fn period_starts(&mut self, rid: &str) -> Result<(i64, i64), LedgerError> {
        self.conn
            .prepare_cached(PERIOD_STARTS_SQL)
            .and_then(|mut s| s.query_row([rid], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(LedgerError::from)
    }

    async fn reservation_by_key(
        &mut self,
        rid: &str,
        key: &str,
    ) -> Result<Option<Reservation>, LedgerError> {
        self.conn
            .prepare_cached(&format!(
                "{RES_SELECT} WHERE region_id = ?1 AND idempotency_key = ?2"
            ))
            .and_then(|mut s| s.query_row([rid, key], res_row).optional())
            .map_err(LedgerError::from)
    }

    async fn reservation(&mut self, id: &str) -> Result<Option<Reservation>, LedgerError> {
        self.conn
            .prepare_cached(&format!("{RES_SELECT} WHERE id = ?1"))
            .and_then(|mut s| s.query_row([id], res_row).optional())
            .map_err(LedgerError::from)
    }

    async fn reserve_entry(&mut self, id: &str) -> Result<Option<(String, Cents)>, LedgerError> {
        self.conn
            .prepare_cached("SELECT id, balance_after_cents FROM region_budget_transactions WHERE reservation_id = ?1 AND transaction_type = 'reserve'")
            .and_then(|mut s| s.query_row([id], |r| Ok((r.get("id")?, r.get("balance_after_cents")?))).optional())
            .map_err(LedgerError::from)
    }

    async fn persist(&mut self, st: &BatchState) -> Result<(), LedgerError> {
        let c = self.conn;
        {
            let mut ins_tx = c
                .prepare_cached("INSERT INTO region_budget_transactions (id, region_id, seq, transaction_type, amount_cents, delta_cents, balance_after_cents, agency_id, job_type, description, reset_period, refund_of, reservation_id, idempotency_key, actor, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)")
                ?;
            for t in &st.txs {
                let r = TxJson::of(t);
                ins_tx.execute(params![
                    r.id,
                    r.region_id,
                    r.seq,
                    r.transaction_type,
                    r.amount_cents,
                    r.delta_cents,
                    r.balance_after_cents,
                    r.agency_id,
                    r.job_type,
                    r.description,
                    r.reset_period,
                    r.refund_of,
                    r.reservation_id,
                    r.idempotency_key,
                    r.actor,
                    r.created_at_ms,
                ])?;
            }
        }
        for r in &st.new_res {
            let (key, created) = st.reservation_origin(&r.id);
            c.prepare_cached("INSERT INTO budget_reservations (id, region_id, amount_cents, job_type, agency_id, status, expires_at_ms, committed_cents, idempotency_key, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, 'held', ?6, NULL, ?7, ?8)")
                .and_then(|mut s| {
                    s.execute(params![
                        r.id,
                        r.region_id,
                        r.amount_cents,
                        r.job_type,
                        r.agency_id,
                        r.expires_at_ms,
                        key,
                        created,
                    ])
                })
                ?;
        }
        for (id, status, committed) in &st.changed_res {
            c.prepare_cached("UPDATE budget_reservations SET status = ?2, committed_cents = ?3, settled_at_ms = ?4 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, status, committed, crate::now_ms()]))
                ?;
        }
        let now = crate::now_ms();
        for (rid, l) in st.regions.iter().filter(|(_, l)| l.dirty) {
            c.prepare_cached("UPDATE region_budgets SET monthly_cents = ?2, remaining_cents = ?3, spent_today_cents = ?4, reserved_cents = ?5, next_seq = ?6, last_day_key = ?7, last_month_key = ?8, updated_at_ms = ?9 WHERE region_id = ?1")
                .and_then(|mut s| {
                    s.execute(params![
                        rid,
                        l.state.monthly_cents,
                        l.state.remaining_cents,
                        l.state.spent_today_cents,
                        l.state.reserved_cents,
                        l.next_seq,
                        l.last_day_key,
                        l.last_month_key,
                        now,
                    ])
                })
                ?;
        }
        self.staged = Some(self.index.stage(
            &st.txs,
            st.regions.iter().map(|(rid, l)| (rid.as_str(), l.next_seq)),
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One committed batch of two answers, and the receivers of both.
    fn batch() -> (Answers, Vec<oneshot::Receiver<Answer>>) {
        let mut answers = Answers::new();
        let mut rxs = Vec::new();
        for answer in [Ok(None), Err(LedgerError::BatchFailed)] {
            let (tx, rx) = oneshot::channel();
            answers.push((tx, answer));
            rxs.push(rx);
        }
        (answers, rxs)
    }

    #[test]
    fn answers_wait_for_one_sync_that_covers_every_batch_committed_so_far() {
        let (to_sync, committed) = std_mpsc::channel();
        let (a, ra) = batch();
        let (b, rb) = batch();
        to_sync.send(a).unwrap();
        to_sync.send(b).unwrap();
        drop(to_sync);
        let waiting = std::cell::RefCell::new(ra.into_iter().chain(rb).collect::<Vec<_>>());
        let syncs = std::cell::Cell::new(0);
        let failed = AtomicBool::new(false);
        sync_then_answer(
            || {
                syncs.set(syncs.get() + 1);
                for rx in waiting.borrow_mut().iter_mut() {
                    assert!(
                        matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
                        "an answer went out before the fsync"
                    );
                }
                Ok(())
            },
            &committed,
            &failed,
        );
        assert_eq!(syncs.get(), 1, "one fsync for both waiting batches");
        assert!(!failed.load(Ordering::Acquire));
        for rxs in waiting.borrow_mut().chunks_mut(2) {
            assert!(matches!(rxs[0].try_recv(), Ok(Ok(None))));
            assert!(matches!(
                rxs[1].try_recv(),
                Ok(Err(LedgerError::BatchFailed))
            ));
        }
    }

    #[tokio::test]
    async fn after_a_failed_fdatasync_the_writer_applies_nothing_more() {
        let dir = std::env::temp_dir().join(format!("fs-walfail-{}", uuid::Uuid::new_v4()));
        let store = Store::open_sqlite(&dir).await.unwrap();
        let region = store.create_region("r", "EU", "test").await.unwrap();
        let (conn, _wal) = open(store.sqlite_path().unwrap()).unwrap();
        // fdatasync of a pipe fails, as a failing disk would.
        let (_reader, writer) = std::io::pipe().unwrap();
        let wal = File::from(std::os::fd::OwnedFd::from(writer));
        let (tx, rx) = mpsc::channel(8);
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        let thread = std::thread::spawn(move || run(conn, wal, rx, flag));
        let allocate = |reply| Job {
            region_id: region.id.clone(),
            op: crate::budget::types::BudgetOp::Allocate {
                amount_cents: 100,
                description: None,
            },
            actor: "test".into(),
            now_ms: crate::now_ms(),
            reply,
        };
        for _ in 0..2 {
            let (reply, answer) = oneshot::channel();
            tx.send(allocate(reply)).await.unwrap();
            let got = answer.await.unwrap();
            assert!(matches!(&got, Err(LedgerError::SyncFailed)), "{got:?}");
        }
        drop(tx);
        thread.join().unwrap();
        assert!(
            stopped.load(Ordering::Acquire),
            "readiness must see the stop"
        );
        // The first allocation was committed before its sync failed (it is
        // in the file, unconfirmed); the second was refused unapplied.
        let check = Connection::open(store.sqlite_path().unwrap()).unwrap();
        let rows: i64 = check
            .query_row(
                "SELECT count(*) FROM region_budget_transactions WHERE region_id = ?1",
                [&region.id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 1);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_wal_synced_is_sqlites_own_even_through_a_symlink() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("fs-walpath-{}", uuid::Uuid::new_v4()));
        let store = Store::open_sqlite(&dir.join("real")).await.unwrap();
        let real = store.sqlite_path().unwrap().to_path_buf();
        let link = dir.join("link.db");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let (_conn, wal) = open(&link).unwrap();
        let mut real_wal = real.into_os_string();
        real_wal.push("-wal");
        let expected = std::fs::metadata(&real_wal).unwrap();
        let got = wal.metadata().unwrap();
        assert_eq!((got.dev(), got.ino()), (expected.dev(), expected.ino()));
        assert!(!std::path::Path::new(&format!("{}-wal", link.display())).exists());
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_fdatasync_fails_every_waiting_and_later_answer() {
        let (to_sync, committed) = std_mpsc::channel();
        let (a, ra) = batch();
        let (b, rb) = batch();
        to_sync.send(a).unwrap();
        let failed = AtomicBool::new(false);
        let syncs = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            let (failed, syncs) = (&failed, &syncs);
            s.spawn(move || {
                sync_then_answer(
                    || {
                        syncs.fetch_add(1, Ordering::SeqCst);
                        Err(std::io::Error::other("EIO"))
                    },
                    &committed,
                    failed,
                )
            });
            for rx in ra {
                let got = rx.blocking_recv().unwrap();
                assert!(matches!(&got, Err(LedgerError::SyncFailed)), "{got:?}");
            }
            assert!(failed.load(Ordering::Acquire));
            // A batch that reaches the thread after the failure is not
            // confirmed either, and the disk is not asked again.
            to_sync.send(b).unwrap();
            drop(to_sync);
        });
        for mut rx in rb {
            assert!(matches!(rx.try_recv(), Ok(Err(LedgerError::SyncFailed))));
        }
        assert_eq!(syncs.load(Ordering::SeqCst), 1);
    }

    /// A hasher under which every key collides.
    #[derive(Clone, Copy)]
    struct OneHash;

    impl std::hash::BuildHasher for OneHash {
        type Hasher = Constant;
        fn build_hasher(&self) -> Constant {
            Constant
        }
    }

    struct Constant;

    impl std::hash::Hasher for Constant {
        fn finish(&self) -> u64 {
            7
        }
        fn write(&mut self, _: &[u8]) {}
    }

    #[tokio::test]
    async fn keys_that_share_a_hash_are_told_apart() {
        use crate::budget::types::BudgetOp;
        let dir = std::env::temp_dir().join(format!("fs-onehash-{}", uuid::Uuid::new_v4()));
        let store = Store::open_sqlite(&dir).await.unwrap();
        let region = store.create_region("r", "EU", "test").await.unwrap();
        let (mut conn, _wal) = open(store.sqlite_path().unwrap()).unwrap();
        let mut index = KeyIndex::with_hasher(OneHash);
        index.load(&mut conn).unwrap();
        let job = |op| Job {
            region_id: region.id.clone(),
            op,
            actor: "test".into(),
            now_ms: crate::now_ms(),
            reply: oneshot::channel().0,
        };
        let spend = |key: &str, amount| {
            job(BudgetOp::Spend {
                amount_cents: amount,
                job_type: "creative".into(),
                agency_id: None,
                idempotency_key: Some(key.into()),
                description: None,
            })
        };
        let mut run = |jobs: Vec<Job>| -> Vec<TxOutcome> {
            apply_batch(&mut conn, &mut index, &jobs)
                .unwrap()
                .into_iter()
                .map(|r| r.unwrap().unwrap())
                .collect()
        };
        run(vec![job(BudgetOp::Allocate {
            amount_cents: 1000,
            description: None,
        })]);
        // One key with the hash: a retry reads its entry and replays it.
        let a = run(vec![spend("a", 10)]).remove(0);
        let again = run(vec![spend("a", 10)]).remove(0);
        assert!(!a.replayed && again.replayed);
        assert_eq!(again.transaction_id, a.transaction_id);
        // A second key with the same hash is a new spend, not "a"'s replay;
        // from then on the hash is ambiguous and both are found by a scan.
        let b = run(vec![spend("b", 20)]).remove(0);
        assert!(
            !b.replayed,
            "a key that shares a hash was taken for a retry"
        );
        let got = run(vec![spend("b", 20), spend("a", 10), spend("c", 30)]);
        assert_eq!(
            got.iter()
                .map(|o| (o.transaction_id.as_str(), o.replayed))
                .collect::<Vec<_>>()[..2],
            [
                (b.transaction_id.as_str(), true),
                (a.transaction_id.as_str(), true)
            ]
        );
        assert!(!got[2].replayed);
        let (remaining, entries): (i64, i64) = conn
            .query_row(
                "SELECT remaining_cents, next_seq - 1 FROM region_budgets WHERE region_id = ?1",
                [&region.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((remaining, entries), (1000 - 10 - 20 - 30, 4));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_rolled_back_batch_leaves_the_keys_as_they_were_in_every_region() {
        use crate::budget::types::BudgetOp;
        let dir = std::env::temp_dir().join(format!("fs-keysrb-{}", uuid::Uuid::new_v4()));
        let store = Store::open_sqlite(&dir).await.unwrap();
        let r1 = store.create_region("r1", "EU", "test").await.unwrap().id;
        let r2 = store.create_region("r2", "EU", "test").await.unwrap().id;
        let (mut conn, _wal) = open(store.sqlite_path().unwrap()).unwrap();
        // A spend with key "boom" fails inside persist, after the batch's
        // earlier entries were inserted.
        conn.execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON region_budget_transactions \
             WHEN NEW.idempotency_key = 'boom' BEGIN SELECT RAISE(ABORT, 'injected'); END;",
        )
        .unwrap();
        let mut index = KeyIndex::new();
        index.load(&mut conn).unwrap();
        let job = |rid: &str, op| Job {
            region_id: rid.to_string(),
            op,
            actor: "test".into(),
            now_ms: crate::now_ms(),
            reply: oneshot::channel().0,
        };
        let spend = |rid: &str, key: &str| {
            job(
                rid,
                BudgetOp::Spend {
                    amount_cents: 10,
                    job_type: "creative".into(),
                    agency_id: None,
                    idempotency_key: Some(key.into()),
                    description: None,
                },
            )
        };
        let allocate = |rid: &str| {
            job(
                rid,
                BudgetOp::Allocate {
                    amount_cents: 1000,
                    description: None,
                },
            )
        };
        let mut run = |jobs: Vec<Job>| {
            apply_batch(&mut conn, &mut index, &jobs).map(|rs| {
                rs.into_iter()
                    .map(|r| r.unwrap().unwrap())
                    .collect::<Vec<_>>()
            })
        };
        run(vec![allocate(&r1), allocate(&r2)]).unwrap();
        // Rolled back: "a" in r1 and "b" in r2 were inserted, then "boom".
        let failed = run(vec![spend(&r1, "a"), spend(&r2, "b"), spend(&r1, "boom")]);
        assert!(failed.is_err());
        // Both regions charge afresh, then replay, within one batch each.
        let first = run(vec![spend(&r1, "a"), spend(&r2, "b")]).unwrap();
        assert!(first.iter().all(|o| !o.replayed), "{first:?}");
        let again = run(vec![spend(&r2, "b"), spend(&r1, "a"), spend(&r1, "c")]).unwrap();
        assert_eq!(
            again.iter().map(|o| o.replayed).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!(again[0].transaction_id, first[1].transaction_id);
        assert_eq!(again[1].transaction_id, first[0].transaction_id);
        // And "c", written after the rollback, is replayed too.
        let c = run(vec![spend(&r1, "c")]).unwrap().remove(0);
        assert!(c.replayed);
        assert_eq!(c.transaction_id, again[2].transaction_id);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
