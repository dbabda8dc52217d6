//! What the decision engine is given: a pool's policies with their
//! combination settings and performance targets, the validation of those and
//! of an observation used as input, and the SLA margin of the targets.

use serde::{Deserialize, Serialize};

use crate::observation::Observation;
use crate::policies::slo::SloGoal;
use crate::policies::PolicySpec;
use crate::validate::Violations;

fn d_urgency() -> f64 {
    0.8
}
fn d_margin() -> f64 {
    0.2
}
fn d_weight() -> f64 {
    0.5
}
fn d_util() -> f64 {
    70.0
}

/// A pool's performance targets (SLA), feeding the SLA margin and cost rules.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceTargets {
    /// Maximum response time, ms.
    #[serde(default)]
    pub max_response_time_ms: Option<f64>,
    /// Latency goal of the `slo` policy, ms: `attainment` of requests
    /// within it (falls back to `max_response_time_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Share of requests to meet `latency_ms`, `(0, 1)` (default 0.99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attainment: Option<f64>,
    /// Minimum availability, percent.
    #[serde(default)]
    pub min_availability_percent: Option<f64>,
    /// Maximum error rate, fraction.
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// How much of the excess capacity cost-driven scale-in removes, `[0, 1]`
    /// (default 0.5; 0 disables it).
    #[serde(default = "d_weight")]
    pub cost_optimization_weight: f64,
    /// Utilization the cost rule plans for, percent (default 70).
    #[serde(default = "d_util")]
    pub target_utilization_percent: f64,
}

impl Default for PerformanceTargets {
    fn default() -> Self {
        PerformanceTargets {
            max_response_time_ms: None,
            latency_ms: None,
            attainment: None,
            min_availability_percent: None,
            max_error_rate: None,
            cost_optimization_weight: d_weight(),
            target_utilization_percent: d_util(),
        }
    }
}

/// Attainment goal of a latency goal given without one.
pub const DEFAULT_ATTAINMENT: f64 = 0.99;

impl PerformanceTargets {
    /// The latency goal of the `slo` policy: `latency_ms` (else
    /// `max_response_time_ms`) for `attainment` (default
    /// [`DEFAULT_ATTAINMENT`]); `None` without a latency.
    pub fn slo_goal(&self) -> Option<SloGoal> {
        let latency_ms = self.latency_ms.or(self.max_response_time_ms)?;
        Some(SloGoal {
            latency_ms,
            attainment: self.attainment.unwrap_or(DEFAULT_ATTAINMENT),
        })
    }
}

/// A pool's policies and how the engine combines them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolPolicies {
    /// The policies, 1..=20.
    pub policies: Vec<PolicySpec>,
    /// Performance targets.
    #[serde(default)]
    pub performance_targets: PerformanceTargets,
    /// Urgency above which a predicted spike overrides the current-load action.
    #[serde(default = "d_urgency")]
    pub spike_urgency_threshold: f64,
    /// SLA margin a scale-in needs.
    #[serde(default = "d_margin")]
    pub scale_in_sla_margin: f64,
}

impl PoolPolicies {
    /// Every violation of the spec, each with its field path.
    pub fn validate(&self) -> Result<(), Violations> {
        let mut v = Violations::default();
        if self.policies.is_empty() || self.policies.len() > 20 {
            v.push("policies", "must hold 1 to 20 policies");
        }
        for (i, p) in self.policies.iter().enumerate() {
            p.validate_into(&format!("policies[{i}]"), &mut v);
        }
        let t = &self.performance_targets;
        let f = |n: &str| format!("performance_targets.{n}");
        if let Some(x) = t.max_response_time_ms {
            if !(x.is_finite() && x > 0.0) {
                v.push(f("max_response_time_ms"), "must be a number > 0");
            }
        }
        if let Some(x) = t.latency_ms {
            if !(x.is_finite() && x > 0.0 && x <= 86_400_000.0) {
                v.push(f("latency_ms"), "must be a number > 0 and <= 86400000");
            }
        }
        if let Some(x) = t.attainment {
            if !(x.is_finite() && x > 0.0 && x < 1.0) {
                v.push(f("attainment"), "must be a number > 0 and < 1");
            }
            if t.latency_ms.is_none() && t.max_response_time_ms.is_none() {
                v.push(f("latency_ms"), "required with attainment");
            }
        }
        if self
            .policies
            .iter()
            .any(|p| matches!(p, PolicySpec::Slo(_)))
            && t.slo_goal().is_none()
        {
            v.push(f("latency_ms"), "required by an slo policy");
        }
        if let Some(x) = t.min_availability_percent {
            v.check_f64(&f("min_availability_percent"), x, 0.0, 100.0);
        }
        if let Some(x) = t.max_error_rate {
            v.check_f64(&f("max_error_rate"), x, 0.0, 1.0);
        }
        v.check_f64(
            &f("cost_optimization_weight"),
            t.cost_optimization_weight,
            0.0,
            1.0,
        );
        if !(t.target_utilization_percent > 0.0 && t.target_utilization_percent <= 100.0) {
            v.push(f("target_utilization_percent"), "must be > 0 and <= 100");
        }
        v.check_f64(
            "spike_urgency_threshold",
            self.spike_urgency_threshold,
            0.0,
            1.0,
        );
        v.check_f64("scale_in_sla_margin", self.scale_in_sla_margin, -1.0, 1.0);
        v.into_result(())
    }
}

/// Every violation of an observation used as evaluation input: bounds
/// (`min <= desired <= max`, `min >= 0`), capacity per instance, queue and SLA figures.
pub fn validate_observation(o: &Observation) -> Result<(), Violations> {
    let mut v = Violations::default();
    let b = o.bounds;
    if b.min < 0 {
        v.push("bounds.min", "must be >= 0");
    }
    if b.min > b.max {
        v.push("bounds.min", "must be <= bounds.max");
    }
    if b.desired < b.min || b.desired > b.max {
        v.push("bounds.desired", "must be within [bounds.min, bounds.max]");
    }
    if !(o.capacity_per_instance.is_finite() && o.capacity_per_instance >= 0.0) {
        v.push("capacity_per_instance", "must be a number >= 0");
    }
    let max = crate::observe::MAX_SAMPLE_VALUE;
    let mut bounded = |field: &str, x: f64| {
        if !(x.is_finite() && (0.0..=max).contains(&x)) {
            v.push(field, format!("must be a number between 0 and {max:e}"));
        }
    };
    if let Some(q) = o.queue {
        bounded("queue.backlog", q.backlog);
        if let Some(t) = q.throughput_per_instance {
            bounded("queue.throughput_per_instance", t);
        }
    }
    if let Some(l) = o.load {
        bounded("load.mean", l.mean);
    }
    if let Some(s) = o.sla {
        for (f, x) in [
            ("sla.response_time_ms", s.response_time_ms),
            ("sla.availability_percent", s.availability_percent),
            ("sla.error_rate", s.error_rate),
        ] {
            if let Some(x) = x {
                bounded(f, x);
            }
        }
    }
    for (name, samples) in &o.metrics {
        if let Some((i, s)) = samples
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.value.is_finite() && (0.0..=max).contains(&s.value)))
        {
            bounded(&format!("metrics.{name}[{i}].value"), s.value);
        }
    }
    if let Some(a) = o.available_instances {
        if a < 0 {
            v.push("available_instances", "must be >= 0");
        }
    }
    v.into_result(())
}

/// The SLA margin in `[-1, 1]`: `Ok(None)` when no target is set, `Err(())`
/// when a target is set but its figure is not observed.
pub fn sla_margin(t: &PerformanceTargets, o: &Observation) -> Result<Option<f64>, String> {
    let s = o.sla.unwrap_or_default();
    let mut m: Option<f64> = None;
    let mut take = |x: f64| m = Some(m.map_or(x, |y: f64| y.min(x)));
    if let Some(max) = t.max_response_time_ms {
        let rt = s.response_time_ms.ok_or("response time not observed")?;
        take((max - rt) / max);
    }
    if let Some(min) = t.min_availability_percent {
        let a = s.availability_percent.ok_or("availability not observed")?;
        take(if min >= 100.0 {
            if a >= 100.0 {
                1.0
            } else {
                -1.0
            }
        } else {
            (a - min) / (100.0 - min)
        });
    }
    if let Some(max) = t.max_error_rate {
        let e = s.error_rate.ok_or("error rate not observed")?;
        take(if max > 0.0 {
            (max - e) / max
        } else if e > 0.0 {
            -1.0
        } else {
            1.0
        });
    }
    Ok(m.map(|x| if x.is_nan() { -1.0 } else { x.clamp(-1.0, 1.0) }))
}

impl PoolPolicies {
    /// One policy with the seed's combination defaults.
    pub fn single(policy: PolicySpec) -> PoolPolicies {
        PoolPolicies {
            policies: vec![policy],
            performance_targets: PerformanceTargets::default(),
            spike_urgency_threshold: d_urgency(),
            scale_in_sla_margin: d_margin(),
        }
    }
}
