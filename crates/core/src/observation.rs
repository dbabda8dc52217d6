//! What a policy sees and what it answers: the [`Observation`] the shell
//! gathers (with its parts and the pool's [`PoolBounds`]), and the
//! [`Decision`] every policy returns. The shared vocabulary of
//! [`crate::policies`], [`crate::decision`] and [`crate::control`]; it imports
//! none of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hpa::{HpaState, Pod, PodMetric};
use crate::trace::RateSeries;

/// Capacity bounds and current size of a pool, in instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolBounds {
    /// Lower bound.
    pub min: i64,
    /// Upper bound.
    pub max: i64,
    /// Current desired capacity, within `[min, max]`.
    pub desired: i64,
}

impl PoolBounds {
    /// Clamps `target` into `[min, max]`.
    #[must_use]
    pub fn clamp(&self, target: i64) -> i64 {
        target.clamp(self.min, self.max)
    }
}

/// One timestamped sample of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// When it was taken, Unix ms.
    pub ts_ms: i64,
    /// Its value.
    pub value: f64,
}

/// A queue's state as observed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueObservation {
    /// Messages waiting.
    pub backlog: f64,
    /// Messages one instance completes per second, when measured.
    #[serde(default)]
    pub throughput_per_instance: Option<f64>,
    /// When the backlog was read, Unix ms.
    pub observed_at_ms: i64,
}

/// Service-level figures as observed, for the SLA margin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaObservation {
    /// Response time (e.g. p95), ms.
    #[serde(default)]
    pub response_time_ms: Option<f64>,
    /// Availability, percent.
    #[serde(default)]
    pub availability_percent: Option<f64>,
    /// Error rate, fraction of requests.
    #[serde(default)]
    pub error_rate: Option<f64>,
}

/// Aggregate of one metric's samples inside the evaluation window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// Arithmetic mean of the sample values.
    pub mean: f64,
    /// Number of samples.
    pub count: u64,
    /// Timestamp of the newest sample (Unix ms).
    pub newest_ts_ms: i64,
}

/// Everything a policy may look at, gathered by the shell. Fields after
/// `last_scaled_at_ms` are optional on the wire and default to "not observed".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Evaluation time (Unix ms).
    pub now_ms: i64,
    /// Bounds and current desired capacity.
    pub bounds: PoolBounds,
    /// Work one instance handles, in metric units.
    pub capacity_per_instance: f64,
    /// The pool metric over the policy window; `None` when there are no samples.
    pub load: Option<WindowStats>,
    /// When the pool last changed size (Unix ms), for cooldowns.
    pub last_scaled_at_ms: Option<i64>,
    /// When the pool last grew (Unix ms); falls back to `last_scaled_at_ms`.
    #[serde(default)]
    pub last_scale_up_at_ms: Option<i64>,
    /// When the pool last shrank (Unix ms); falls back to `last_scaled_at_ms`.
    #[serde(default)]
    pub last_scale_down_at_ms: Option<i64>,
    /// Recent samples per metric name, oldest first.
    #[serde(default)]
    pub metrics: BTreeMap<String, Vec<Sample>>,
    /// The pool's work queue.
    #[serde(default)]
    pub queue: Option<QueueObservation>,
    /// Demand history (one value per interval) for forecasting.
    #[serde(default)]
    pub history: Option<RateSeries>,
    /// The pool's instances, for target tracking's readiness rules.
    #[serde(default)]
    pub instances: Vec<Pod>,
    /// Per-instance samples per metric name, for target tracking.
    #[serde(default)]
    pub instance_metrics: BTreeMap<String, Vec<PodMetric>>,
    /// Target tracking's controller memory (recommendations, scale events).
    #[serde(default)]
    pub hpa_state: HpaState,
    /// Service-level figures.
    #[serde(default)]
    pub sla: Option<SlaObservation>,
    /// Instances the provider can still add (quota, stock), when known.
    #[serde(default)]
    pub available_instances: Option<i64>,
    /// An admin's safety lock: the autoscaler may not change the pool.
    #[serde(default)]
    pub safety_lock: bool,
}

impl Observation {
    /// An observation at `now_ms` of a pool with `bounds`, with nothing measured.
    pub fn new(now_ms: i64, bounds: PoolBounds) -> Observation {
        Observation {
            now_ms,
            bounds,
            capacity_per_instance: 1.0,
            load: None,
            last_scaled_at_ms: None,
            last_scale_up_at_ms: None,
            last_scale_down_at_ms: None,
            metrics: BTreeMap::new(),
            queue: None,
            history: None,
            instances: Vec::new(),
            instance_metrics: BTreeMap::new(),
            hpa_state: HpaState::default(),
            sla: None,
            available_instances: None,
            safety_lock: false,
        }
    }
}

/// What a decision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Add instances.
    ScaleUp,
    /// Remove instances.
    ScaleDown,
    /// Keep the current size.
    Hold,
}

/// The outcome of evaluating a policy: a plain value, recorded with the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Capacity before the decision.
    pub current: i64,
    /// Capacity after the decision, always within the pool bounds.
    pub target: i64,
    /// Name of the policy that decided.
    pub policy: String,
    /// Why, in words a person reads.
    pub reason: String,
    /// Confidence in `[0, 1]`: 1 when the load is measured, 0 when holding for lack of data.
    pub confidence: f64,
    /// The figures the decision used (utilization_pct, mean_load, ...).
    pub inputs: BTreeMap<String, f64>,
    /// When the policy wants to be asked again at the earliest, if it knows (ms).
    pub requeue_after_ms: Option<i64>,
    /// True when the policy held because its inputs were missing or stale.
    #[serde(default)]
    pub data_missing: bool,
    /// Target tracking's controller memory after this decision (assuming it
    /// is applied), for the caller to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpa_state: Option<HpaState>,
}

impl Decision {
    /// True when the decision changes the pool size.
    pub fn should_scale(&self) -> bool {
        self.target != self.current
    }

    /// A decision to keep `current`.
    pub fn hold(current: i64, policy: &str, reason: String, confidence: f64) -> Decision {
        Decision {
            action: Action::Hold,
            current,
            target: current,
            policy: policy.to_string(),
            reason,
            confidence,
            inputs: BTreeMap::new(),
            requeue_after_ms: None,
            data_missing: false,
            hpa_state: None,
        }
    }

    /// A hold for lack of (fresh) data: confidence 0, `data_missing`.
    pub fn no_data(current: i64, policy: &str, reason: String) -> Decision {
        let mut d = Decision::hold(current, policy, reason, 0.0);
        d.data_missing = true;
        d
    }

    /// A decision to move to `target` (clamped to `bounds`); the action
    /// follows from the clamped target.
    pub fn to_target(
        bounds: PoolBounds,
        target: i64,
        policy: &str,
        reason: String,
        confidence: f64,
        inputs: BTreeMap<String, f64>,
    ) -> Decision {
        let current = bounds.desired;
        let target = bounds.clamp(target);
        let action = match target.cmp(&current) {
            std::cmp::Ordering::Greater => Action::ScaleUp,
            std::cmp::Ordering::Less => Action::ScaleDown,
            std::cmp::Ordering::Equal => Action::Hold,
        };
        let confidence = if confidence.is_finite() {
            confidence.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Decision {
            action,
            current,
            target,
            policy: policy.to_string(),
            reason,
            confidence,
            inputs,
            requeue_after_ms: None,
            data_missing: false,
            hpa_state: None,
        }
    }
}

/// Utilization in percent of a load against `desired × capacity_per_instance`;
/// `None` when there is load but no capacity at all.
pub fn utilization_pct(mean_load: f64, desired: i64, capacity_per_instance: f64) -> Option<f64> {
    let capacity = desired as f64 * capacity_per_instance;
    if capacity > 0.0 {
        Some(mean_load / capacity * 100.0)
    } else if mean_load > 0.0 {
        None
    } else {
        Some(0.0)
    }
}
