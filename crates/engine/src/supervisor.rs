//! Supervised background jobs: a job that panics or fails is logged,
//! counted (`fleetscale_task_restarts_total{task}`) and restarted after a
//! backoff that doubles from [`INITIAL_BACKOFF`] up to [`MAX_BACKOFF`];
//! `/readyz` reports a job waiting to restart. A job that ran
//! [`HEALTHY_AFTER`] without failing starts again from the initial backoff.
//! A job that returns `Ok` (it was told to stop, or its input closed) is not
//! restarted.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::{Metrics, TaskLabel};

/// Wait before the first restart of a failed job.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// Longest wait before a restart (a stated bound).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A job that ran this long without failing is healthy again: its next
/// failure waits only [`INITIAL_BACKOFF`].
pub const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Where a supervised job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Running.
    Running,
    /// Failed; waiting to be restarted.
    BackingOff,
    /// Finished (shut down, or its work ended); not restarted.
    Stopped,
}

/// One supervised job as `/readyz` and `/api/v1/engine` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    /// The job's name.
    pub name: String,
    /// Where it is.
    pub state: TaskState,
    /// Times it was restarted after a failure.
    pub restarts: u64,
    /// Why it last failed.
    pub last_error: Option<String>,
}

/// Spawns jobs and restarts them when they fail. Cloning shares the jobs.
#[derive(Clone)]
pub struct Supervisor {
    tasks: Arc<Mutex<BTreeMap<String, TaskStatus>>>,
    handles: Arc<Mutex<Vec<JoinHandle<()>>>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("tasks", &self.statuses())
            .finish()
    }
}

impl Supervisor {
    /// A supervisor counting restarts in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Supervisor {
        Supervisor {
            tasks: Arc::default(),
            handles: Arc::default(),
            metrics,
        }
    }

    /// Runs `make()`'s job on the runtime and makes it again after each
    /// failure (an `Err` or a panic), until it returns `Ok` or `shutdown`
    /// turns true (a dropped sender is no signal). The job itself must watch
    /// `shutdown` to stop. Needs a tokio runtime.
    pub fn spawn<F, Fut>(&self, name: &str, mut shutdown: watch::Receiver<bool>, mut make: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let name = name.to_string();
        self.set(&name, |t| t.state = TaskState::Running);
        let me = self.clone();
        let handle = tokio::spawn(async move {
            let mut backoff = INITIAL_BACKOFF;
            loop {
                let started = tokio::time::Instant::now();
                let failure = match tokio::spawn(make()).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(e) if e.is_panic() => Some(format!("panicked: {}", panic_text(e))),
                    Err(e) => Some(e.to_string()),
                };
                let Some(why) = failure else {
                    me.set(&name, |t| t.state = TaskState::Stopped);
                    return;
                };
                if *shutdown.borrow() {
                    me.set(&name, |t| t.state = TaskState::Stopped);
                    return;
                }
                if started.elapsed() >= HEALTHY_AFTER {
                    backoff = INITIAL_BACKOFF;
                }
                tracing::error!(task = %name, error = %why, backoff = ?backoff, "background job failed; restarting it");
                me.metrics
                    .task_restarts
                    .get_or_create(&TaskLabel { task: name.clone() })
                    .inc();
                me.set(&name, |t| {
                    t.state = TaskState::BackingOff;
                    t.restarts += 1;
                    t.last_error = Some(why);
                });
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut shutdown) => {
                        me.set(&name, |t| t.state = TaskState::Stopped);
                        return;
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                me.set(&name, |t| t.state = TaskState::Running);
            }
        });
        self.handles.lock().expect("supervisor lock").push(handle);
    }

    fn set(&self, name: &str, f: impl FnOnce(&mut TaskStatus)) {
        let mut tasks = self.tasks.lock().expect("supervisor lock");
        let t = tasks.entry(name.to_string()).or_insert_with(|| TaskStatus {
            name: name.to_string(),
            state: TaskState::Running,
            restarts: 0,
            last_error: None,
        });
        f(t);
    }

    /// Every job's status, by name.
    pub fn statuses(&self) -> Vec<TaskStatus> {
        self.tasks
            .lock()
            .expect("supervisor lock")
            .values()
            .cloned()
            .collect()
    }

    /// Why the engine is not ready: the jobs waiting to be restarted, or
    /// `None` when every job runs (or finished).
    pub fn unready(&self) -> Option<String> {
        let down: Vec<String> = self
            .statuses()
            .into_iter()
            .filter(|t| t.state == TaskState::BackingOff)
            .map(|t| match t.last_error {
                Some(e) => format!("{} ({e})", t.name),
                None => t.name,
            })
            .collect();
        (!down.is_empty()).then(|| format!("background job restarting: {}", down.join("; ")))
    }

    /// Waits for every job to finish (after their shutdown signal).
    pub async fn join(&self) {
        let handles = std::mem::take(&mut *self.handles.lock().expect("supervisor lock"));
        for h in handles {
            let _ = h.await;
        }
    }
}

/// Resolves when `shutdown` turns true; never, if its sender is gone (a
/// job without a shutdown signal ends on its own).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    let p = e.into_panic();
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn supervisor() -> Supervisor {
        Supervisor::new(Arc::new(Metrics::new()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_job_is_restarted_with_backoff_and_reported() {
        let sup = supervisor();
        let (tx, rx) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let stop = rx.clone();
        sup.spawn("flaky", rx, move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            let mut stop = stop.clone();
            async move {
                if n < 2 {
                    panic!("boom {n}");
                }
                let _ = stop.changed().await;
                Ok(())
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // First run panicked: backing off for 1 s.
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let st = &sup.statuses()[0];
        assert_eq!(st.state, TaskState::BackingOff);
        assert_eq!(st.restarts, 1);
        assert_eq!(st.last_error.as_deref(), Some("panicked: boom 0"));
        assert!(sup.unready().unwrap().contains("flaky (panicked: boom 0)"));
        // After 1 s it runs again, panics again, and waits 2 s.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(sup.statuses()[0].restarts, 2);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "second backoff is 2 s");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(sup.statuses()[0].state, TaskState::Running);
        assert_eq!(sup.unready(), None);
        assert!(sup
            .metrics
            .encode()
            .contains("fleetscale_task_restarts_total{task=\"flaky\"} 2"));
        tx.send(true).unwrap();
        sup.join().await;
        assert_eq!(sup.statuses()[0].state, TaskState::Stopped);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_erring_job_is_restarted_and_one_that_ends_is_not() {
        let sup = supervisor();
        let (_tx, rx) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        sup.spawn("once-failing", rx, move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err("store unreachable".to_string())
                } else {
                    Ok(())
                }
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        sup.join().await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let st = &sup.statuses()[0];
        assert_eq!((st.state, st.restarts), (TaskState::Stopped, 1));
        assert_eq!(st.last_error.as_deref(), Some("store unreachable"));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_is_bounded_and_shutdown_ends_a_backoff() {
        let sup = supervisor();
        let (tx, rx) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        sup.spawn("always-failing", rx, move || {
            r.fetch_add(1, Ordering::SeqCst);
            async { Err("no".to_string()) }
        });
        // 1+2+4+8+16+32 = 63 s for 7 runs, then every 60 s.
        tokio::time::sleep(Duration::from_secs(63 + 120) + Duration::from_millis(10)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 9);
        tx.send(true).unwrap();
        sup.join().await;
        assert_eq!(sup.statuses()[0].state, TaskState::Stopped);
    }
}
