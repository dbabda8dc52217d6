//! Group commit for routing decisions: every `POST /api/v1/route` hands its
//! decision to a writer task through a bounded queue (one writer on SQLite,
//! [`POSTGRES_WRITERS`] on PostgreSQL); a free writer takes what is waiting
//! (up to [`MAX_DECISIONS_PER_COMMIT`]), writes it in one
//! transaction ([`Store::record_routing_decisions`]: the shared contexts
//! once, multi-row inserts), commits, and only then answers each request.
//! So a decision is acknowledged only once it is durable (a crash loses no
//! acknowledged decision), and the commit's fsync is paid per batch, not
//! per decision. When the transaction fails, every request of the batch is
//! answered [`RecordError::Store`] and none of its decisions is stored; the
//! writer goes on with the next batch. The writer runs under the
//! [`Supervisor`]: if it panics, the requests of the batch in hand are
//! answered [`RecordError::Stopped`] and a new writer takes over the queue.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use fleetscale_store::{Backend, RoutingRecord, Store, StoreError};

use crate::supervisor::Supervisor;

/// Decisions waiting for the writer (a stated bound; senders wait when full).
pub const QUEUE_BOUND: usize = 4_096;

/// Most decisions written in one transaction.
pub const MAX_DECISIONS_PER_COMMIT: usize = 512;

/// Writer tasks on PostgreSQL: batches in flight at once.
pub const POSTGRES_WRITERS: usize = 4;

struct Job {
    rec: RoutingRecord,
    done: oneshot::Sender<Result<(), String>>,
}

/// Why a decision was not recorded. Either way nothing of it is stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The writer task is gone (shutting down, or it panicked with the
    /// decision in hand).
    #[error("the routing decision writer has stopped")]
    Stopped,
    /// The batch's transaction failed.
    #[error("recording routing decisions failed: {0}")]
    Store(String),
}

/// What writes a batch: the store in production, a stand-in in tests.
pub trait BatchWriter: Send + Sync + 'static {
    /// Writes `recs` durably in one transaction, all or nothing.
    fn write<'a>(
        &'a self,
        recs: &'a [RoutingRecord],
    ) -> futures::future::BoxFuture<'a, Result<(), StoreError>>;
}

impl BatchWriter for Store {
    fn write<'a>(
        &'a self,
        recs: &'a [RoutingRecord],
    ) -> futures::future::BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.record_routing_decisions(recs))
    }
}

/// Handle to the decision writer. Cloning shares it.
#[derive(Clone, Debug)]
pub struct DecisionRecorder {
    tx: mpsc::Sender<Job>,
}

impl DecisionRecorder {
    /// Starts the writer tasks over `store` under `supervisor` (needs a
    /// tokio runtime): one on SQLite (one writer at a time holds its lock
    /// anyway), [`POSTGRES_WRITERS`] on PostgreSQL, whose commits of
    /// concurrent transactions share WAL flushes. They end when every
    /// handle is dropped, after answering what they already took.
    pub fn start(store: Store, supervisor: &Supervisor) -> DecisionRecorder {
        let writers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => POSTGRES_WRITERS,
        };
        DecisionRecorder::start_with(Arc::new(store), writers, supervisor)
    }

    /// As [`DecisionRecorder::start`], with `writers` tasks (at least one)
    /// writing through `writer`. Each takes what is waiting when it is free,
    /// so up to `writers` batches are in flight at once.
    pub fn start_with(
        writer: Arc<dyn BatchWriter>,
        writers: usize,
        supervisor: &Supervisor,
    ) -> DecisionRecorder {
        let (tx, rx) = mpsc::channel(QUEUE_BOUND);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        // The writers stop when their queue closes, not on a signal.
        let (_never, no_shutdown) = watch::channel(false);
        for i in 1..=writers.max(1) {
            let (writer, rx) = (writer.clone(), rx.clone());
            supervisor.spawn(
                &format!("routing-recorder-{i}"),
                no_shutdown.clone(),
                move || run(writer.clone(), rx.clone()),
            );
        }
        DecisionRecorder { tx }
    }

    /// Records `rec` durably; returns once the transaction holding it has
    /// committed.
    pub async fn record(&self, rec: RoutingRecord) -> Result<(), RecordError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { rec, done })
            .await
            .map_err(|_| RecordError::Stopped)?;
        wait.await
            .map_err(|_| RecordError::Stopped)?
            .map_err(RecordError::Store)
    }
}

async fn run(
    writer: Arc<dyn BatchWriter>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
) -> Result<(), String> {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_DECISIONS_PER_COMMIT);
    loop {
        // The queue is held only while taking a batch: another writer takes
        // the next one while this one writes.
        if rx
            .lock()
            .await
            .recv_many(&mut jobs, MAX_DECISIONS_PER_COMMIT)
            .await
            == 0
        {
            return Ok(());
        }
        let (recs, dones): (Vec<RoutingRecord>, Vec<_>) =
            jobs.drain(..).map(|j| (j.rec, j.done)).unzip();
        let result = writer.write(&recs).await.map_err(|e| {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), decisions = recs.len(), "recording routing decisions failed");
            e.to_string()
        });
        for done in dones {
            let _ = done.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use fleetscale_core::region::routing::{route, RouteInput};
    use fleetscale_store::RecordedInput;

    use crate::metrics::Metrics;

    /// A writer that holds each batch until the test lets it commit (or fail).
    struct Gate {
        started: Mutex<Vec<Vec<String>>>,
        batches: Mutex<Vec<Vec<String>>>,
        commit: tokio::sync::Mutex<mpsc::Receiver<bool>>,
    }

    impl BatchWriter for Gate {
        fn write<'a>(
            &'a self,
            recs: &'a [RoutingRecord],
        ) -> futures::future::BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(async move {
                let ids: Vec<String> = recs.iter().map(|r| r.id.clone()).collect();
                self.started.lock().unwrap().push(ids.clone());
                let ok = self.commit.lock().await.recv().await.unwrap_or(false);
                if !ok {
                    return Err(StoreError::Corrupt("disk on fire".into()));
                }
                self.batches.lock().unwrap().push(ids);
                Ok(())
            })
        }
    }

    async fn until(what: impl Fn() -> bool) {
        while !what() {
            tokio::task::yield_now().await;
        }
    }

    fn record(id: &str) -> RoutingRecord {
        let input: RouteInput = serde_json::from_value(serde_json::json!({
            "tenant_id": "t", "region_policy": {}, "routing_policy": {"type": "score"},
            "workload_type": "chat", "agent_type": "writer", "request_id": id, "now_ms": 1,
            "regions": [{"name": "eu-west", "jurisdiction": "eu", "mode": "normal",
                "pools": [{"pool": "p", "agent_type": "writer", "spare": 1, "max": 2}]}]
        }))
        .unwrap();
        let input = RecordedInput::new(&input).unwrap();
        let decision = route(input.input()).unwrap();
        RoutingRecord {
            id: id.into(),
            tenant_id: "t".into(),
            workload_type: "chat".into(),
            agent_type: "writer".into(),
            selected_region: decision.selected_region.clone(),
            input,
            decision,
            created_at_ms: 1,
        }
    }

    fn gated() -> (DecisionRecorder, Arc<Gate>, mpsc::Sender<bool>) {
        gated_with(1)
    }

    fn gated_with(writers: usize) -> (DecisionRecorder, Arc<Gate>, mpsc::Sender<bool>) {
        let (go, commit) = mpsc::channel(16);
        let gate = Arc::new(Gate {
            started: Mutex::default(),
            batches: Mutex::default(),
            commit: tokio::sync::Mutex::new(commit),
        });
        let sup = Supervisor::new(Arc::new(Metrics::new()));
        (
            DecisionRecorder::start_with(gate.clone(), writers, &sup),
            gate,
            go,
        )
    }

    #[tokio::test]
    async fn waiting_decisions_are_written_in_one_batch_and_answered_only_after_it_commits() {
        let (rec, gate, go) = gated();
        let send = |id: &str| {
            let (rec, id) = (rec.clone(), id.to_string());
            tokio::spawn(async move { rec.record(record(&id)).await })
        };
        // The first decision is taken alone; while its commit is held the
        // next three queue up behind it.
        let first = send("d0");
        until(|| gate.started.lock().unwrap().len() == 1).await;
        let rest: Vec<_> = ["d1", "d2", "d3"].into_iter().map(send).collect();
        until(|| rec.tx.capacity() == QUEUE_BOUND - 3).await;
        assert!(!first.is_finished(), "not answered before its commit");
        assert!(gate.batches.lock().unwrap().is_empty());
        go.send(true).await.unwrap();
        first.await.unwrap().unwrap();
        until(|| gate.started.lock().unwrap().len() == 2).await;
        assert!(
            rest.iter().all(|h| !h.is_finished()),
            "not answered before their commit"
        );
        go.send(true).await.unwrap();
        for h in rest {
            h.await.unwrap().unwrap();
        }
        let one_batch = vec!["d1".to_string(), "d2".into(), "d3".into()];
        assert_eq!(
            *gate.batches.lock().unwrap(),
            vec![vec!["d0".to_string()], one_batch]
        );
    }

    #[tokio::test]
    async fn a_failed_commit_answers_every_decision_of_its_batch_with_the_error_and_the_writer_goes_on(
    ) {
        let (rec, gate, go) = gated();
        go.send(false).await.unwrap();
        let err = rec.record(record("lost")).await.unwrap_err();
        assert!(
            matches!(err, RecordError::Store(ref m) if m.contains("disk on fire")),
            "{err}"
        );
        go.send(true).await.unwrap();
        rec.record(record("kept")).await.unwrap();
        assert_eq!(
            *gate.batches.lock().unwrap(),
            vec![vec!["kept".to_string()]]
        );
    }

    #[tokio::test]
    async fn with_two_writers_a_second_batch_is_written_while_the_first_waits_for_its_commit() {
        let (rec, gate, go) = gated_with(2);
        let send = |id: &str| {
            let (rec, id) = (rec.clone(), id.to_string());
            tokio::spawn(async move { rec.record(record(&id)).await })
        };
        let first = send("d0");
        until(|| gate.started.lock().unwrap().len() == 1).await;
        let second = send("d1");
        until(|| gate.started.lock().unwrap().len() == 2).await;
        assert!(!first.is_finished() && !second.is_finished());
        go.send(true).await.unwrap();
        go.send(true).await.unwrap();
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        let mut batches = gate.batches.lock().unwrap().clone();
        batches.sort();
        assert_eq!(
            batches,
            vec![vec!["d0".to_string()], vec!["d1".to_string()]]
        );
    }
}
