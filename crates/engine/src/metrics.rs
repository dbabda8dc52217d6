//! The engine's own Prometheus metrics, served at `/metrics` by the HTTP
//! shell (which records its request durations in [`Metrics::http_seconds`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label of a decision counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    /// `scale_up`, `scale_down` or `hold`.
    pub action: String,
}

/// Label of an applied scaling counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// Trigger source.
    pub trigger_source: String,
}

/// Label of the counter of changes a guard held.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardLabel {
    /// `fail_static`, `flap_budget` or `coming_capacity`.
    pub guard: String,
}

/// Label of a per-pool counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    /// The pool's id.
    pub pool: String,
}

/// Label of a supervised job's restart counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabel {
    /// The job's name.
    pub task: String,
}

/// Labels of the HTTP request histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// HTTP method.
    pub method: String,
    /// Matched route template.
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// All engine metrics.
pub struct Metrics {
    registry: Registry,
    /// Control-loop ticks evaluated as leader.
    pub ticks: Counter,
    /// Decisions by action.
    pub decisions: Family<ActionLabel, Counter>,
    /// Scaling changes applied, by trigger source.
    pub scalings: Family<SourceLabel, Counter>,
    /// Failed actuation delivery series.
    pub actuation_failures: Counter,
    /// Successful actuations.
    pub actuations: Counter,
    /// Metric samples ingested.
    pub samples_ingested: Counter,
    /// 1 when this replica holds the control-loop lease.
    pub is_leader: Gauge,
    /// Pools whose metrics the last tick found stale, missing or erroring.
    pub metrics_stale_pools: Gauge,
    /// Changes held by fail static or the flap budget, by guard.
    pub guard_holds: Family<GuardLabel, Counter>,
    /// Failed metric-source queries, by pool.
    pub metric_source_errors: Family<PoolLabel, Counter>,
    /// Pools whose metric source failed on the last tick.
    pub metric_source_failing_pools: Gauge,
    /// Duration of one control-loop tick.
    pub tick_seconds: Histogram,
    /// Duration of HTTP requests.
    pub http_seconds: Family<HttpLabels, Histogram>,
    /// Control-loop ticks that failed (each backs off the next one).
    pub tick_failures: Counter,
    /// Restarts of supervised background jobs, by job.
    pub task_restarts: Family<TaskLabel, Counter>,
    /// Region scaling-mode transitions recorded.
    pub region_mode_transitions: Counter,
    /// When this replica's last control-loop tick ended, Unix ms (0: none
    /// yet). Read by the dashboard's engine view.
    pub last_tick_at_ms: std::sync::atomic::AtomicI64,
    /// How long this replica's last control-loop tick took, microseconds.
    pub last_tick_micros: std::sync::atomic::AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("fleetscale");
        let ticks = Counter::default();
        let decisions = Family::<ActionLabel, Counter>::default();
        let scalings = Family::<SourceLabel, Counter>::default();
        let actuation_failures = Counter::default();
        let actuations = Counter::default();
        let samples_ingested = Counter::default();
        let is_leader = Gauge::default();
        let tick_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let http_seconds = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "ticks",
            "Control-loop ticks evaluated as leader",
            ticks.clone(),
        );
        registry.register("decisions", "Policy decisions by action", decisions.clone());
        registry.register(
            "scalings",
            "Applied capacity changes by trigger source",
            scalings.clone(),
        );
        registry.register(
            "actuation_failures",
            "Actuation delivery failures",
            actuation_failures.clone(),
        );
        registry.register("actuations", "Actuations delivered", actuations.clone());
        registry.register(
            "samples_ingested",
            "Metric samples ingested",
            samples_ingested.clone(),
        );
        registry.register(
            "is_leader",
            "1 when this replica runs the control loop",
            is_leader.clone(),
        );
        registry.register(
            "tick_duration_seconds",
            "Duration of one control-loop tick",
            tick_seconds.clone(),
        );
        let metrics_stale_pools = Gauge::default();
        registry.register(
            "metrics_stale_pools",
            "Pools whose metrics the last tick found stale, missing or erroring (fail static)",
            metrics_stale_pools.clone(),
        );
        let guard_holds = Family::<GuardLabel, Counter>::default();
        registry.register(
            "guard_holds",
            "Capacity changes held by fail static, the flap budget or capacity still coming",
            guard_holds.clone(),
        );
        let metric_source_errors = Family::<PoolLabel, Counter>::default();
        registry.register(
            "metric_source_errors",
            "Failed metric-source (Prometheus) queries, by pool",
            metric_source_errors.clone(),
        );
        let metric_source_failing_pools = Gauge::default();
        registry.register(
            "metric_source_failing_pools",
            "Pools whose metric source failed on the last tick",
            metric_source_failing_pools.clone(),
        );
        let tick_failures = Counter::default();
        registry.register(
            "tick_failures",
            "Control-loop ticks that failed and backed off",
            tick_failures.clone(),
        );
        let task_restarts = Family::<TaskLabel, Counter>::default();
        registry.register(
            "task_restarts",
            "Restarts of supervised background jobs after a failure or panic",
            task_restarts.clone(),
        );
        let region_mode_transitions = Counter::default();
        registry.register(
            "region_mode_transitions",
            "Region scaling-mode transitions recorded by the leader",
            region_mode_transitions.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http_seconds.clone(),
        );
        Metrics {
            registry,
            ticks,
            decisions,
            scalings,
            actuation_failures,
            actuations,
            samples_ingested,
            is_leader,
            metrics_stale_pools,
            guard_holds,
            metric_source_errors,
            metric_source_failing_pools,
            tick_seconds,
            http_seconds,
            tick_failures,
            task_restarts,
            region_mode_transitions,
            last_tick_at_ms: Default::default(),
            last_tick_micros: Default::default(),
        }
    }

    /// Records that a tick ended at `at_ms` (Unix ms) after `took`.
    pub fn record_last_tick(&self, at_ms: i64, took: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        self.last_tick_at_ms.store(at_ms, Relaxed);
        self.last_tick_micros
            .store(i64::try_from(took.as_micros()).unwrap_or(i64::MAX), Relaxed);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
