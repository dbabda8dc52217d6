//! fleetscale-engine: everything fleetscale does in the background, with no
//! HTTP in sight.
//!
//! It owns the control loop ([`control`]: observe → decide → act →
//! requeue), the actuators ([`actuator`]), the group-committing metric
//! writer ([`ingest`]), the metric-source poller ([`metric_source`]:
//! Prometheus queries each tick), budget maintenance ([`budget_jobs`]), the engine's
//! Prometheus metrics ([`metrics`]) and the [`supervisor`] that restarts a
//! failed job with backoff. Every job works over one [`EngineCtx`]: the
//! store, the budget service, the actuator, the metrics and an injectable
//! [`Clock`], so that tests drive the loop on tokio's paused clock. The
//! decisions themselves are `fleetscale-core`'s pure functions; this crate
//! only gathers their inputs and carries out their steps.

pub mod actuator;
pub mod budget_jobs;
pub mod clock;
pub mod control;
pub mod ingest;
pub mod metric_source;
pub mod metrics;
pub mod monitor;
pub mod observe;
pub mod recorder;
pub mod regions;
pub mod routing_view;
pub mod supervisor;

use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

use fleetscale_store::{Budgets, Store};

pub use actuator::{Actuator, KubernetesConfig, WebhookConfig};
pub use clock::{Clock, SystemClock, TokioClock};
pub use control::{EngineConfig, TickReport, LEASE};
pub use ingest::Ingestor;
pub use metric_source::MetricSources;
pub use metrics::Metrics;
pub use recorder::{DecisionRecorder, RecordError};
pub use routing_view::RoutingView;
pub use supervisor::{Supervisor, TaskState, TaskStatus};

/// What every engine job works over. Cloning is cheap (handles and `Arc`s).
#[derive(Clone)]
pub struct EngineCtx {
    /// The database.
    pub store: Store,
    /// The budget service (its writer group-commits budget mutations).
    pub budgets: Budgets,
    /// Where scaling changes are delivered.
    pub actuator: Arc<Actuator>,
    /// The engine's Prometheus metrics (the HTTP shell adds its own to them).
    pub metrics: Arc<Metrics>,
    /// Where the jobs read the time (Unix ms); the system clock in production.
    pub clock: Arc<dyn Clock>,
    /// The controller memory (cooldowns, target tracking's state, forecast
    /// models) the leader keeps between ticks (see
    /// [`observe::ForecastCaches`]).
    pub forecasts: Arc<Mutex<observe::ForecastCaches>>,
    /// The in-memory routing view of this process (see [`routing_view`]).
    pub routing_view: RoutingView,
    /// True while the control loop waits for its next poll (not while it
    /// evaluates or talks to the database): tests on a paused clock move
    /// time on only once the loop is parked.
    pub loop_parked: Arc<AtomicBool>,
    /// The control loop's tick, ms, which fail static's staleness limit
    /// counts in (three ticks); set by [`control::run`], 0 until then (the
    /// policy's window alone then decides staleness).
    pub tick_ms: Arc<AtomicI64>,
    /// The pools whose metrics the leader's last tick found stale, missing
    /// or erroring (see [`fleetscale_core::fail_static`]).
    pub metrics_stale: Arc<Mutex<std::collections::BTreeSet<String>>>,
    /// The pools the leader's last tick left at zero capacity: work
    /// reported for one of them ([`EngineCtx::work_for_pool_at_zero`]) wakes the
    /// loop at once instead of at its next tick.
    pub at_zero: Arc<Mutex<std::collections::BTreeSet<String>>>,
    /// Wakes the control loop for an evaluation now (see `at_zero`).
    pub wake: Arc<tokio::sync::Notify>,
    /// The Prometheus client the leader queries pools' metric sources with,
    /// and the server-wide default URL (see [`metric_source`]).
    pub metric_sources: Arc<MetricSources>,
}

impl std::fmt::Debug for EngineCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineCtx")
            .field("backend", &self.store.backend())
            .field("actuator", &self.actuator.kind())
            .finish_non_exhaustive()
    }
}

impl EngineCtx {
    /// Whether samples report work waiting or in flight (`queue_depth` or
    /// `in_flight` above 0) for a pool this replica's last tick left at
    /// zero. The ingestion calls it before storing them and, when true,
    /// [`EngineCtx::wake_loop`] once they are stored: the activation does
    /// not wait for the next tick.
    pub fn work_for_pool_at_zero<'a>(
        &self,
        samples: impl IntoIterator<Item = (&'a str, &'a str, f64)>,
    ) -> bool {
        use fleetscale_core::policies::slo::{IN_FLIGHT, QUEUE_DEPTH};
        let at_zero = self.at_zero.lock().expect("pools at zero lock");
        !at_zero.is_empty()
            && samples.into_iter().any(|(pool, metric, value)| {
                (metric == QUEUE_DEPTH || metric == IN_FLIGHT)
                    && value > 0.0
                    && at_zero.contains(pool)
            })
    }

    /// Makes the control loop evaluate now (a leader ticks at once; the
    /// wake is kept if the loop is busy, so it is not lost).
    pub fn wake_loop(&self) {
        self.wake.notify_one();
    }

    /// A context over `store` with the system clock, default metrics and no
    /// actuator. Starts the budget writer, so it needs a tokio runtime.
    pub fn new(store: Store) -> EngineCtx {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        EngineCtx {
            budgets: Budgets::start(store.clone()),
            routing_view: RoutingView::new(store.clone(), clock.clone()),
            store,
            actuator: Arc::new(Actuator::None),
            metrics: Arc::new(Metrics::new()),
            clock,
            forecasts: Arc::default(),
            loop_parked: Arc::default(),
            tick_ms: Arc::default(),
            metrics_stale: Arc::default(),
            at_zero: Arc::default(),
            wake: Arc::default(),
            metric_sources: Arc::default(),
        }
    }

    /// The time now, Unix ms, from the context's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// Spawns the engine's jobs under `supervisor`: the control loop (with its
/// retention pruning and the region state), the region monitor, budget
/// maintenance and the routing view's refresh (every tick, on every
/// replica). Each stops when `shutdown`
/// turns true; a job that panics is restarted with backoff.
pub fn spawn_jobs(
    ctx: &EngineCtx,
    cfg: EngineConfig,
    supervisor: &Supervisor,
    shutdown: &watch::Receiver<bool>,
) {
    let tick = cfg.tick;
    let (c, rx, conf) = (ctx.clone(), shutdown.clone(), cfg.clone());
    supervisor.spawn("region-monitor", shutdown.clone(), move || {
        monitor::run(c.clone(), conf.clone(), rx.clone())
    });
    let (c, rx) = (ctx.clone(), shutdown.clone());
    supervisor.spawn("control-loop", shutdown.clone(), move || {
        control::run(c.clone(), cfg.clone(), rx.clone())
    });
    let (view, rx) = (ctx.routing_view.clone(), shutdown.clone());
    supervisor.spawn("routing-view", shutdown.clone(), move || {
        routing_view::run(view.clone(), tick, rx.clone())
    });
    let (c, rx) = (ctx.clone(), shutdown.clone());
    supervisor.spawn("budget-maintenance", shutdown.clone(), move || {
        budget_jobs::maintain(c.clone(), rx.clone())
    });
}
