//! Scaling policies and the one entry point the control loop, the plan
//! endpoint and the simulator call: [`decide`].
//!
//! A decision is a value: the action, the target, the policy that decided,
//! the figures it used, a human-readable reason and when to look again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hpa::{HpaState, Pod, PodMetric};
use crate::policies::{
    predictive::PredictivePolicy, queue::QueuePolicy, schedule::SchedulePolicy,
    target_tracking::TargetTrackingPolicy, triggers::TriggersPolicy,
};
use crate::pool::PoolBounds;
use crate::trace::RateSeries;
use crate::validate::Violations;

/// Default evaluation window of the threshold policy (the seed's 5 minutes).
pub const DEFAULT_WINDOW_SECONDS: i64 = 300;

/// The threshold policy as sent by a client; missing fields take the seed
/// defaults (80 / 30, cooldown 300 s, increment 1, window 300 s).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThresholdPolicy {
    /// Scale up when utilization (percent) is above this.
    pub scale_up_threshold: Option<f64>,
    /// Scale down when utilization (percent) is below this.
    pub scale_down_threshold: Option<f64>,
    /// Minimum seconds between two scaling actions of the pool.
    pub cooldown_seconds: Option<i64>,
    /// Instances added or removed by one action.
    pub increment: Option<i64>,
    /// Seconds of metric history whose mean is the load.
    pub window_seconds: Option<i64>,
}

/// The phase-93 threshold policy, validated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdPolicy {
    /// Scale up above this utilization, percent, in `(scale_down_threshold, 100]`.
    pub scale_up_threshold: f64,
    /// Scale down below this utilization, percent, in `[0, scale_up_threshold)`.
    pub scale_down_threshold: f64,
    /// Seconds between scaling actions, `0..=604800`.
    pub cooldown_seconds: i64,
    /// Instances per action, `1..=1000000`.
    pub increment: i64,
    /// Evaluation window in seconds, `1..=86400`.
    pub window_seconds: i64,
}

impl Default for ThresholdPolicy {
    fn default() -> Self {
        ThresholdPolicy {
            scale_up_threshold: 80.0,
            scale_down_threshold: 30.0,
            cooldown_seconds: 300,
            increment: 1,
            window_seconds: DEFAULT_WINDOW_SECONDS,
        }
    }
}

impl RawThresholdPolicy {
    /// Applies defaults and validates, recording violations under `prefix`.
    pub fn validate(&self, prefix: &str, v: &mut Violations) -> ThresholdPolicy {
        let d = ThresholdPolicy::default();
        let p = ThresholdPolicy {
            scale_up_threshold: self.scale_up_threshold.unwrap_or(d.scale_up_threshold),
            scale_down_threshold: self.scale_down_threshold.unwrap_or(d.scale_down_threshold),
            cooldown_seconds: self.cooldown_seconds.unwrap_or(d.cooldown_seconds),
            increment: self.increment.unwrap_or(d.increment),
            window_seconds: self.window_seconds.unwrap_or(d.window_seconds),
        };
        let f = |name: &str| format!("{prefix}.{name}");
        v.check_f64(&f("scale_up_threshold"), p.scale_up_threshold, 0.0, 100.0);
        v.check_f64(
            &f("scale_down_threshold"),
            p.scale_down_threshold,
            0.0,
            100.0,
        );
        if p.scale_down_threshold.is_finite()
            && p.scale_up_threshold.is_finite()
            && p.scale_down_threshold >= p.scale_up_threshold
        {
            v.push(f("scale_down_threshold"), "must be < scale_up_threshold");
        }
        v.check_i64(&f("cooldown_seconds"), p.cooldown_seconds, 0, 604_800);
        v.check_i64(&f("increment"), p.increment, 1, 1_000_000);
        v.check_i64(&f("window_seconds"), p.window_seconds, 1, 86_400);
        p
    }
}

impl ThresholdPolicy {
    /// The raw form of this policy (every field present).
    pub fn to_raw(&self) -> RawThresholdPolicy {
        RawThresholdPolicy {
            scale_up_threshold: Some(self.scale_up_threshold),
            scale_down_threshold: Some(self.scale_down_threshold),
            cooldown_seconds: Some(self.cooldown_seconds),
            increment: Some(self.increment),
            window_seconds: Some(self.window_seconds),
        }
    }
}

/// A pool's scaling policy. New policy kinds are new variants; the engine only
/// ever calls [`decide`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PolicySpec {
    /// The phase-93 threshold policy.
    Threshold(ThresholdPolicy),
    /// Kubernetes-HPA-compatible target tracking.
    TargetTracking(TargetTrackingPolicy),
    /// Metric triggers held for a duration ("cpu > 70 for 120 s").
    Triggers(TriggersPolicy),
    /// Queue backlog and maximum queue lag.
    Queue(QueuePolicy),
    /// Cron schedules setting a target or a floor.
    Schedule(SchedulePolicy),
    /// Forecast-driven pre-scaling.
    Predictive(PredictivePolicy),
}

impl PolicySpec {
    /// The policy's wire name.
    pub fn name(&self) -> &'static str {
        match self {
            PolicySpec::Threshold(_) => "threshold",
            PolicySpec::TargetTracking(_) => "target_tracking",
            PolicySpec::Triggers(_) => "triggers",
            PolicySpec::Queue(_) => "queue",
            PolicySpec::Schedule(_) => "schedule",
            PolicySpec::Predictive(_) => "predictive",
        }
    }

    /// Seconds of metric history the policy reads.
    pub fn window_seconds(&self) -> i64 {
        match self {
            PolicySpec::Threshold(p) => p.window_seconds,
            PolicySpec::TargetTracking(_) => DEFAULT_WINDOW_SECONDS,
            PolicySpec::Triggers(p) => p
                .triggers
                .iter()
                .map(|t| t.duration_seconds.saturating_add(p.max_sample_gap_seconds))
                .max()
                .unwrap_or(DEFAULT_WINDOW_SECONDS),
            PolicySpec::Queue(p) => p.max_observation_age_seconds,
            PolicySpec::Schedule(_) => 0,
            PolicySpec::Predictive(p) => p.history_seconds,
        }
    }

    /// Validates the policy, recording every violation under `prefix`.
    /// Metric names must be known (see [`crate::policies::KNOWN_METRICS`]).
    pub fn validate_into(&self, prefix: &str, v: &mut Violations) {
        match self {
            PolicySpec::Threshold(p) => {
                p.to_raw().validate(prefix, v);
            }
            PolicySpec::TargetTracking(p) => p.validate(prefix, v),
            PolicySpec::Triggers(p) => p.validate(prefix, v),
            PolicySpec::Queue(p) => p.validate(prefix, v),
            PolicySpec::Schedule(p) => p.validate(prefix, v),
            PolicySpec::Predictive(p) => p.validate(prefix, v),
        }
    }

    /// Every violation of the policy, or `Ok` when it is valid.
    pub fn validate(&self) -> Result<(), Violations> {
        let mut v = Violations::default();
        self.validate_into("policy", &mut v);
        v.into_result(())
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

/// Evaluates `spec` on `obs`. Pure and deterministic: the same inputs always
/// give the same decision. The target is always within the pool bounds; with
/// no (or stale) metrics the decision is to hold, never to scale down.
pub fn decide(spec: &PolicySpec, obs: &Observation) -> Decision {
    match spec {
        PolicySpec::Threshold(p) => decide_threshold(p, obs),
        PolicySpec::TargetTracking(p) => p.decide(obs),
        PolicySpec::Triggers(p) => p.decide(obs),
        PolicySpec::Queue(p) => p.decide(obs),
        PolicySpec::Schedule(p) => p.decide(obs),
        PolicySpec::Predictive(p) => p.decide(obs),
    }
}

fn decide_threshold(p: &ThresholdPolicy, obs: &Observation) -> Decision {
    const NAME: &str = "threshold";
    let b = obs.bounds;
    let current = b.desired;
    if let Some(last) = obs.last_scaled_at_ms {
        let left = last + p.cooldown_seconds * 1000 - obs.now_ms;
        if left > 0 {
            let mut d = Decision::hold(
                current,
                NAME,
                format!(
                    "In cooldown period ({:.0}s left)",
                    (left as f64 / 1000.0).ceil()
                ),
                1.0,
            );
            d.requeue_after_ms = Some(left);
            d.inputs.insert("cooldown_left_ms".into(), left as f64);
            return d;
        }
    }
    let window_ms = p.window_seconds * 1000;
    let load = match obs.load {
        Some(l)
            if l.count > 0 && l.mean.is_finite() && obs.now_ms - l.newest_ts_ms <= window_ms =>
        {
            l
        }
        Some(l) if l.count > 0 => {
            let mut d = Decision::no_data(
                current,
                NAME,
                format!(
                    "Metrics are stale (newest sample {}s old): holding",
                    (obs.now_ms - l.newest_ts_ms) / 1000
                ),
            );
            d.inputs.insert(
                "newest_sample_age_ms".into(),
                (obs.now_ms - l.newest_ts_ms) as f64,
            );
            return d;
        }
        _ => return Decision::no_data(current, NAME, "No metrics available: holding".into()),
    };
    let mut inputs = BTreeMap::new();
    inputs.insert("mean_load".into(), load.mean);
    inputs.insert("samples".into(), load.count as f64);
    inputs.insert("capacity_per_instance".into(), obs.capacity_per_instance);
    inputs.insert("scale_up_threshold".into(), p.scale_up_threshold);
    inputs.insert("scale_down_threshold".into(), p.scale_down_threshold);
    let util = utilization_pct(load.mean, current, obs.capacity_per_instance);
    if let Some(u) = util {
        inputs.insert("utilization_pct".into(), u);
    }
    let (action, target, reason) = match util {
        None => (
            Action::ScaleUp,
            b.clamp(current + p.increment),
            format!("Load {:.1} with zero capacity", load.mean),
        ),
        Some(u) if u > p.scale_up_threshold && current < b.max => (
            Action::ScaleUp,
            (current + p.increment).min(b.max),
            format!(
                "Utilization {u:.1}% exceeds threshold {}%",
                p.scale_up_threshold
            ),
        ),
        Some(u) if u < p.scale_down_threshold && current > b.min => (
            Action::ScaleDown,
            (current - p.increment).max(b.min),
            format!(
                "Utilization {u:.1}% below threshold {}%",
                p.scale_down_threshold
            ),
        ),
        Some(u) if u > p.scale_up_threshold => (
            Action::Hold,
            current,
            format!(
                "Utilization {u:.1}% exceeds threshold but pool is at max {}",
                b.max
            ),
        ),
        Some(u) if u < p.scale_down_threshold => (
            Action::Hold,
            current,
            format!(
                "Utilization {u:.1}% below threshold but pool is at min {}",
                b.min
            ),
        ),
        Some(u) => (
            Action::Hold,
            current,
            format!("No scaling needed (utilization {u:.1}%)"),
        ),
    };
    let (action, target) = if target == current {
        (Action::Hold, current)
    } else {
        (action, target)
    };
    Decision {
        action,
        current,
        target,
        policy: NAME.into(),
        reason,
        confidence: 1.0,
        inputs,
        requeue_after_ms: None,
        data_missing: false,
        hpa_state: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_000_000_000;

    fn obs(min: i64, max: i64, desired: i64, mean: Option<f64>, last: Option<i64>) -> Observation {
        Observation {
            capacity_per_instance: 10.0,
            load: mean.map(|m| WindowStats {
                mean: m,
                count: 3,
                newest_ts_ms: NOW - 1000,
            }),
            last_scaled_at_ms: last,
            ..Observation::new(NOW, PoolBounds { min, max, desired })
        }
    }

    fn spec() -> PolicySpec {
        PolicySpec::Threshold(ThresholdPolicy::default())
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn threshold_table() {
        // (min, max, desired, mean load, last scaled, expected target, action)
        use Action::*;
        let cases: &[(i64, i64, i64, Option<f64>, Option<i64>, i64, Action)] = &[
            (1, 10, 2, Some(16.1), None, 3, ScaleUp),  // 80.5% > 80
            (1, 10, 2, Some(16.0), None, 2, Hold),     // exactly 80%: not above
            (1, 10, 2, Some(6.0), None, 2, Hold),      // exactly 30%: not below
            (1, 10, 2, Some(5.9), None, 1, ScaleDown), // 29.5%
            (1, 10, 1, Some(0.0), None, 1, Hold),      // at min
            (1, 3, 3, Some(100.0), None, 3, Hold),     // at max
            (0, 5, 0, Some(1.0), None, 1, ScaleUp),    // load on zero capacity
            (0, 5, 0, Some(0.0), None, 0, Hold),       // idle at zero
            (1, 10, 5, None, None, 5, Hold),           // no metrics
            (1, 10, 5, Some(0.0), Some(NOW - 299_999), 5, Hold), // cooldown edge: 1 ms left
            (1, 10, 5, Some(0.0), Some(NOW - 300_000), 4, ScaleDown), // cooldown just over
        ];
        for &(min, max, desired, mean, last, want, action) in cases {
            let d = decide(&spec(), &obs(min, max, desired, mean, last));
            assert_eq!(
                (d.target, d.action),
                (want, action),
                "case {min} {max} {desired} {mean:?} {last:?}: {}",
                d.reason
            );
        }
    }

    #[test]
    fn increment_is_clamped_to_bounds() {
        let p = PolicySpec::Threshold(ThresholdPolicy {
            increment: 5,
            ..ThresholdPolicy::default()
        });
        assert_eq!(decide(&p, &obs(1, 7, 4, Some(40.0), None)).target, 7);
        assert_eq!(decide(&p, &obs(2, 7, 4, Some(0.0), None)).target, 2);
    }

    #[test]
    fn stale_metrics_hold() {
        let mut o = obs(1, 10, 5, Some(0.0), None);
        o.load = Some(WindowStats {
            mean: 0.0,
            count: 2,
            newest_ts_ms: NOW - 300_001,
        });
        let d = decide(&spec(), &o);
        assert_eq!(d.action, Action::Hold);
        assert!(d.reason.contains("stale"), "{}", d.reason);
    }

    #[test]
    fn seed_reason_texts() {
        let d = decide(&spec(), &obs(1, 10, 2, Some(18.0), None));
        assert_eq!(d.reason, "Utilization 90.0% exceeds threshold 80%");
        let d = decide(&spec(), &obs(1, 10, 5, None, Some(NOW - 1000)));
        assert_eq!(d.reason, "In cooldown period (299s left)");
    }

    proptest! {
        #[test]
        fn decision_invariants(
            min in 0i64..50, span in 0i64..50, off in 0i64..50,
            mean in proptest::option::of(0.0f64..1e6),
            up in 1.0f64..100.0, gap in 0.5f64..50.0, inc in 1i64..20,
            cooldown in 0i64..1000, last_ago in proptest::option::of(0i64..2_000_000),
            cpi in 0.01f64..1000.0,
        ) {
            let max = min + span;
            let desired = min + off.min(span);
            let p = PolicySpec::Threshold(ThresholdPolicy {
                scale_up_threshold: up,
                scale_down_threshold: (up - gap).max(0.0),
                cooldown_seconds: cooldown,
                increment: inc,
                window_seconds: 300,
            });
            let mut o = obs(min, max, desired, mean, last_ago.map(|a| NOW - a));
            o.capacity_per_instance = cpi;
            let d = decide(&p, &o);
            prop_assert!(d.target >= min && d.target <= max);
            prop_assert!(d.confidence >= 0.0 && d.confidence <= 1.0);
            prop_assert!(d.inputs.values().all(|v| !v.is_nan()));
            if mean.is_none() {
                prop_assert_eq!(d.target, desired);
            }
            prop_assert_eq!(&d, &decide(&p, &o));
        }
    }
}
