//! Scaling policies, one file each, and the one entry point the control
//! loop, the plan endpoint and the simulator call: [`decide`] over a
//! [`PolicySpec`].
//!
//! Every policy is a serde config struct (`deny_unknown_fields`, unit-suffixed
//! names) with a `validate` that records every violation with its field
//! path, and a pure `decide(&Observation) -> Decision`. What they see and
//! answer is [`crate::observation`]; what they share is re-exported here
//! from `common`. Dependencies point one way: this dispatcher names the
//! policies, the policies name `common` and the observation, never this module.

use serde::{Deserialize, Serialize};

use crate::observation::{Decision, Observation};
use crate::validate::Violations;

mod common;
pub mod predictive;
pub mod queue;
pub mod schedule;
pub mod slo;
pub mod target_tracking;
pub mod threshold;
pub mod triggers;

pub use common::{
    ceil_tol, check_metric, cooldown_left_ms, to_instances, Amount, Comparison, KNOWN_METRICS,
};
use predictive::PredictivePolicy;
use queue::QueuePolicy;
use schedule::SchedulePolicy;
use slo::SloPolicy;
use target_tracking::TargetTrackingPolicy;
use threshold::{ThresholdPolicy, DEFAULT_WINDOW_SECONDS};
use triggers::TriggersPolicy;

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
    /// Capacity for a latency goal from a queueing model (the pool's
    /// `performance_targets.latency_ms` and `.attainment`), with scale to zero.
    Slo(SloPolicy),
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
            PolicySpec::Slo(_) => "slo",
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
            PolicySpec::Slo(p) => p.window_seconds(),
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
            PolicySpec::Slo(p) => p.validate(prefix, v),
        }
    }

    /// Every violation of the policy, or `Ok` when it is valid.
    pub fn validate(&self) -> Result<(), Violations> {
        let mut v = Violations::default();
        self.validate_into("policy", &mut v);
        v.into_result(())
    }
}

/// Evaluates `spec` on `obs`. Pure and deterministic: the same inputs always
/// give the same decision. The target is always within the pool bounds; with
/// no (or stale) metrics the decision is to hold, never to scale down. An
/// `slo` policy needs its pool's goal: here it holds for lack of one
/// ([`crate::decision::decide_all`] passes the goal).
pub fn decide(spec: &PolicySpec, obs: &Observation) -> Decision {
    match spec {
        PolicySpec::Threshold(p) => p.decide(obs),
        PolicySpec::TargetTracking(p) => p.decide(obs),
        PolicySpec::Triggers(p) => p.decide(obs),
        PolicySpec::Queue(p) => p.decide(obs),
        PolicySpec::Schedule(p) => p.decide(obs),
        PolicySpec::Predictive(p) => p.decide(obs),
        PolicySpec::Slo(p) => p.decide(obs, None),
    }
}
