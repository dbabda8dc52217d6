//! Group commit for metric ingestion: concurrent `POST /api/v1/metrics`
//! batches are merged into one transaction by a single writer task, so one
//! commit (one WAL fsync on SQLite) covers many requests. Each request is
//! answered only after the commit that holds its samples: an acknowledged
//! sample is durable. The writer runs under the [`Supervisor`]: if it
//! panics, the requests of the batch in hand are answered
//! [`IngestError::Stopped`] (nothing acknowledged is lost) and a new writer
//! takes over the queue.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::supervisor::Supervisor;

use fleetscale_store::{Sample, Store, StoreError};

/// Requests waiting for the writer (a stated bound; senders wait when full).
pub const QUEUE_BOUND: usize = 256;

/// Most samples merged into one transaction.
pub const MAX_SAMPLES_PER_COMMIT: usize = 50_000;

struct Job {
    samples: Vec<Sample>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Handle to the ingestion writer.
#[derive(Clone, Debug)]
pub struct Ingestor {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Job({} samples)", self.samples.len())
    }
}

/// Why samples were not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The writer task is gone (shutting down).
    #[error("the ingestion writer has stopped")]
    Stopped,
    /// The transaction failed; nothing of the merged batch was stored.
    #[error("storing samples failed: {0}")]
    Store(String),
}

impl Ingestor {
    /// Starts the writer task over `store` under `supervisor` (needs a
    /// tokio runtime). The writer ends when every [`Ingestor`] handle is
    /// dropped, after answering what it already took.
    pub fn start(store: Store, supervisor: &Supervisor) -> Ingestor {
        let (tx, rx) = mpsc::channel(QUEUE_BOUND);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        // The writer stops when its queue closes, not on a signal.
        let (_never, no_shutdown) = watch::channel(false);
        supervisor.spawn("metric-ingestion", no_shutdown, move || {
            writer(store.clone(), rx.clone())
        });
        Ingestor { tx }
    }

    /// Stores `samples` durably; returns once they are committed.
    pub async fn submit(&self, samples: Vec<Sample>) -> Result<(), IngestError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { samples, done })
            .await
            .map_err(|_| IngestError::Stopped)?;
        wait.await
            .map_err(|_| IngestError::Stopped)?
            .map_err(IngestError::Store)
    }
}

async fn writer(
    store: Store,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
) -> Result<(), String> {
    let mut rx = rx.lock().await;
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut n = jobs[0].samples.len();
        while n < MAX_SAMPLES_PER_COMMIT {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.samples.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let result = if jobs.len() == 1 {
            store.insert_samples(&jobs[0].samples).await
        } else {
            let all: Vec<Sample> = jobs
                .iter()
                .flat_map(|j| j.samples.iter().cloned())
                .collect();
            store.insert_samples(&all).await
        };
        let result = result.map_err(|e: StoreError| {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), samples = n, "storing samples failed");
            e.to_string()
        });
        for j in jobs {
            let _ = j.done.send(result.clone());
        }
    }
    Ok(())
}
