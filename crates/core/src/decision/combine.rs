//! The combination rules of the decision engine (see [`crate::decision`]):
//! every policy's decision and the factors current load, predicted load,
//! cost efficiency, SLA margin, available capacity, schedules, bounds and the
//! safety lock, folded into one [`CombinedDecision`] with its reasons.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{sla_margin, PoolPolicies};
use crate::lifecycle::{text_enum, TriggerSource};
use crate::observation::{Action, Decision, Observation};
use crate::policies::predictive::ModelCache;
use crate::policies::{ceil_tol, decide, to_instances, PolicySpec};

text_enum!(
    /// A factor or rule of the decision engine, in the order they apply.
    Factor, "reason factor", {
        /// A policy's inputs were missing or stale.
        Data => "data",
        /// The load policies' proposals (rule 1).
        CurrentLoad => "current_load",
        /// A predictive policy's forecast (rule 2).
        PredictedLoad => "predicted_load",
        /// Scale-in for cost at the target utilization (rule 3).
        CostEfficiency => "cost_efficiency",
        /// The SLA margin a scale-in needs (rule 4).
        SlaMargin => "sla_margin",
        /// The instances the provider can still add (rule 5).
        ResourceAvailability => "resource_availability",
        /// A schedule's floor (rule 6).
        Schedule => "schedule",
        /// The pool's bounds (rule 7).
        Bounds => "bounds",
        /// An admin's safety lock (rule 7).
        SafetyLock => "safety_lock",
    }
);

/// One step of the reasoning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// The factor or rule.
    pub factor: Factor,
    /// What it concluded.
    pub message: String,
    /// The figures behind it.
    pub figures: BTreeMap<String, f64>,
}

/// The engine's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use]
pub struct CombinedDecision {
    /// What to do.
    pub action: Action,
    /// Capacity before.
    pub current: i64,
    /// Capacity after, within the bounds.
    pub target: i64,
    /// Confidence in `[0, 1]`.
    pub confidence: f64,
    /// The reasoning, in the order the rules applied.
    pub reasons: Vec<Reason>,
    /// Each policy's own decision, in spec order.
    pub policies: Vec<Decision>,
    /// The rule that set the target, when it differs from the current
    /// capacity (`None` on a hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<Factor>,
    /// The policy (index in spec order) whose proposal set the target, when
    /// one did (`None` on a hold, or when a rule of its own did, such as
    /// cost efficiency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting_policy: Option<usize>,
}

fn is_load(p: &PolicySpec) -> bool {
    !matches!(p, PolicySpec::Predictive(_) | PolicySpec::Schedule(_))
}

impl CombinedDecision {
    /// The combined decision as a single [`Decision`] (policy
    /// `decision_engine`): the reasons' messages joined in order, their
    /// figures as `factor.name` inputs.
    pub fn to_decision(&self) -> Decision {
        let mut inputs = BTreeMap::new();
        for r in &self.reasons {
            for (k, v) in &r.figures {
                inputs.insert(format!("{}.{k}", r.factor.as_str()), *v);
            }
        }
        Decision {
            action: self.action,
            current: self.current,
            target: self.target,
            policy: "decision_engine".into(),
            reason: self
                .reasons
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            confidence: self.confidence,
            inputs,
            requeue_after_ms: None,
            data_missing: !self.policies.is_empty() && self.policies.iter().all(|d| d.data_missing),
            hpa_state: self.policies.iter().find_map(|d| d.hpa_state.clone()),
        }
    }

    /// The trigger source of an applied change: `predictive` or `schedule`
    /// when that rule set the target ([`CombinedDecision::decided_by`]),
    /// else `autoscaler`.
    pub fn trigger_source(&self) -> TriggerSource {
        match self.decided_by {
            Some(Factor::PredictedLoad) if self.target != self.current => TriggerSource::Predictive,
            Some(Factor::Schedule) if self.target != self.current => TriggerSource::Schedule,
            _ => TriggerSource::Autoscaler,
        }
    }
}

/// Evaluates every policy of `spec` on `obs` and combines them (see the
/// module docs). Pure and deterministic.
pub fn decide_all(spec: &PoolPolicies, obs: &Observation) -> CombinedDecision {
    let ds: Vec<Decision> = spec
        .policies
        .iter()
        .map(|p| decide_one(spec, p, obs))
        .collect();
    decide_all_with(spec, obs, ds)
}

/// One policy of `spec` on `obs`: [`decide`], except that an `slo` policy
/// is given the pool's latency goal.
fn decide_one(spec: &PoolPolicies, p: &PolicySpec, obs: &Observation) -> Decision {
    match p {
        PolicySpec::Slo(s) => s.decide(obs, spec.performance_targets.slo_goal()),
        _ => decide(p, obs),
    }
}

/// [`decide_all`] with each predictive policy deciding on its cached model
/// (`models[i]` for `spec.policies[i]`; see
/// [`crate::policies::predictive::ModelCache`]) instead of refitting on
/// `obs.history`. A predictive policy without a cached model, and every
/// other policy, decides as in [`decide_all`].
pub fn decide_all_cached(
    spec: &PoolPolicies,
    obs: &Observation,
    models: &[Option<ModelCache>],
) -> CombinedDecision {
    let ds = spec
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| match (p, models.get(i).and_then(Option::as_ref)) {
            (PolicySpec::Predictive(pp), Some(c)) => {
                pp.decide_with_model(obs, &c.model, c.end_ms, c.interval_ms)
            }
            _ => decide_one(spec, p, obs),
        })
        .collect();
    decide_all_with(spec, obs, ds)
}

/// Combines decisions already made for `spec.policies` on `obs` (`ds[i]`
/// is the decision of `spec.policies[i]`), by the same rules as
/// [`decide_all`]. For callers that evaluate a policy through a cheaper
/// equivalent path, such as
/// [`crate::policies::predictive::PredictivePolicy::decide_with_model`].
///
/// # Panics
/// When `ds` and `spec.policies` differ in length.
pub fn decide_all_with(
    spec: &PoolPolicies,
    obs: &Observation,
    ds: Vec<Decision>,
) -> CombinedDecision {
    assert_eq!(ds.len(), spec.policies.len(), "one decision per policy");
    let b = obs.bounds;
    let current = b.desired;
    let mut reasons = Vec::new();
    let mut reason = |factor: Factor, message: String, figures: &[(&str, f64)]| {
        reasons.push(Reason {
            factor,
            message,
            figures: figures
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        });
    };
    let missing: Vec<&Decision> = ds.iter().filter(|d| d.data_missing).collect();
    for d in &missing {
        reason(Factor::Data, format!("{}: {}", d.policy, d.reason), &[]);
    }
    let load: Vec<(usize, &Decision)> = ds
        .iter()
        .enumerate()
        .filter(|(i, _)| is_load(&spec.policies[*i]))
        .collect();
    // `proposal`: Some(target) once a rule has chosen a change.
    let mut proposal: Option<i64> = None;
    // The rule (and policy) behind `proposal`, then behind the target.
    let mut decided: Option<(Factor, Option<usize>)> = None;
    let mut conf: f64 = 1.0;
    // 1. Current load.
    let up = load
        .iter()
        .filter(|(_, d)| d.target > current)
        .max_by_key(|(_, d)| d.target);
    if let Some((i, d)) = up {
        proposal = Some(d.target);
        decided = Some((Factor::CurrentLoad, Some(*i)));
        conf = d.confidence;
        reason(
            Factor::CurrentLoad,
            format!("{} proposes {}: {}", d.policy, d.target, d.reason),
            &[("target", d.target as f64)],
        );
    } else if !load.is_empty() && missing.is_empty() && load.iter().all(|(_, d)| d.target < current)
    {
        let (i, d) = load
            .iter()
            .max_by_key(|(_, d)| d.target)
            .copied()
            .unwrap_or((0, &ds[0]));
        proposal = Some(d.target);
        decided = Some((Factor::CurrentLoad, Some(i)));
        conf = load.iter().map(|(_, d)| d.confidence).fold(1.0, f64::min);
        reason(
            Factor::CurrentLoad,
            format!(
                "every load policy proposes less; least reduction {} by {}: {}",
                d.target, d.policy, d.reason
            ),
            &[("target", d.target as f64)],
        );
    } else if !load.is_empty() {
        reason(
            Factor::CurrentLoad,
            "no change agreed by the load policies".into(),
            &[("current", current as f64)],
        );
    }
    // 2. Predicted load.
    for (i, d) in ds.iter().enumerate() {
        if !matches!(spec.policies[i], PolicySpec::Predictive(_)) || d.data_missing {
            continue;
        }
        let urgency = d.inputs.get("urgency").copied().unwrap_or(0.0);
        let figs = [
            ("predicted_target", d.target as f64),
            ("urgency", urgency),
            ("confidence", d.confidence),
        ];
        if d.target > current {
            match proposal {
                None => {
                    proposal = Some(d.target);
                    decided = Some((Factor::PredictedLoad, Some(i)));
                    conf = d.confidence;
                    reason(Factor::PredictedLoad, format!("predicted spike: {}", d.reason), &figs);
                }
                Some(p) if urgency > spike_threshold(spec) => {
                    let t = p.max(d.target);
                    if p < current || d.target > p {
                        conf = d.confidence;
                        decided = Some((Factor::PredictedLoad, Some(i)));
                    }
                    proposal = Some(t);
                    reason(Factor::PredictedLoad,
                        format!(
                            "predicted spike with urgency {urgency:.2} > {}: overrides the current-load action, target {t}; {}",
                            spike_threshold(spec),
                            d.reason
                        ),
                        &figs,
                    );
                }
                Some(p) if p < current => {
                    proposal = None;
                    decided = None;
                    reason(Factor::PredictedLoad,
                        format!("predicted spike (urgency {urgency:.2}) vetoes the scale-in: {}", d.reason),
                        &figs,
                    );
                }
                Some(_) => reason(Factor::PredictedLoad,
                    format!("predicted spike noted (urgency {urgency:.2}); current-load scale-out stands: {}", d.reason),
                    &figs,
                ),
            }
        } else if let Some(p) = proposal.filter(|p| *p < current && d.target > *p) {
            proposal = Some(d.target.min(current));
            reason(
                Factor::PredictedLoad,
                format!(
                    "predicted demand needs {}: scale-in limited (from {p})",
                    d.target
                ),
                &figs,
            );
        } else if d.inputs.get("spike_expected") == Some(&1.0) {
            reason(
                Factor::PredictedLoad,
                format!(
                    "predicted spike later (urgency {urgency:.2} <= {}): not acted on yet; {}",
                    spike_threshold(spec),
                    d.reason
                ),
                &figs,
            );
        } else if d.action == Action::Hold && d.inputs.contains_key("would_target") {
            reason(Factor::PredictedLoad, d.reason.clone(), &figs);
        }
    }
    // 3. Cost efficiency.
    let t = &spec.performance_targets;
    if proposal.is_none() && missing.is_empty() && t.cost_optimization_weight > 0.0 {
        let fresh = obs.load.filter(|l| {
            l.count > 0
                && l.mean.is_finite()
                && obs.now_ms - l.newest_ts_ms
                    <= spec
                        .policies
                        .iter()
                        .map(PolicySpec::window_seconds)
                        .max()
                        .unwrap_or(300)
                        .max(1)
                        * 1000
        });
        let per = obs.capacity_per_instance * t.target_utilization_percent / 100.0;
        if let Some(l) = fresh.filter(|_| per > 0.0 && per.is_finite()) {
            let needed = to_instances(ceil_tol(l.mean / per));
            if needed < current {
                let cut =
                    to_instances((t.cost_optimization_weight * (current - needed) as f64).ceil());
                let target = current - cut.max(1);
                // Every policy's stated need (`inputs["needed"]`: queue,
                // target tracking, predictive) bounds the cut from below.
                let need = ds
                    .iter()
                    .filter_map(|d| d.inputs.get("needed"))
                    .map(|x| to_instances(*x))
                    .max()
                    .unwrap_or(0);
                let target = target.max(need);
                let highest = ds.iter().map(|d| d.target).max().unwrap_or(current);
                let figs = [
                    ("mean_load", l.mean),
                    ("needed_at_target_utilization", needed as f64),
                    ("cost_optimization_weight", t.cost_optimization_weight),
                    ("target", target as f64),
                ];
                if highest > current {
                    reason(
                        Factor::CostEfficiency,
                        format!("scale-in possible but a policy proposes {highest}"),
                        &figs,
                    );
                } else if target < current {
                    proposal = Some(target);
                    decided = Some((Factor::CostEfficiency, None));
                    conf = 1.0;
                    reason(Factor::CostEfficiency,
                        format!(
                            "load {:.1} fits in {needed} at {}% utilization: scale in to {target} (weight {})",
                            l.mean, t.target_utilization_percent, t.cost_optimization_weight
                        ),
                        &figs,
                    );
                }
            }
        }
    }
    // 4. SLA margin for any scale-in.
    if let Some(p) = proposal.filter(|p| *p < current) {
        let ok = match sla_margin(t, obs) {
            Ok(None) => {
                reason(
                    Factor::SlaMargin,
                    "no SLA targets set: scale-in allowed".into(),
                    &[],
                );
                true
            }
            Ok(Some(m)) if m > spec.scale_in_sla_margin => {
                reason(
                    Factor::SlaMargin,
                    format!(
                        "SLA margin {m:.2} > {}: scale-in to {p} allowed",
                        spec.scale_in_sla_margin
                    ),
                    &[("margin", m)],
                );
                true
            }
            Ok(Some(m)) => {
                reason(
                    Factor::SlaMargin,
                    format!(
                        "SLA margin {m:.2} <= {}: no scale-in",
                        spec.scale_in_sla_margin
                    ),
                    &[("margin", m)],
                );
                false
            }
            Err(e) => {
                reason(
                    Factor::SlaMargin,
                    format!("SLA margin unknown ({e}): no scale-in"),
                    &[],
                );
                false
            }
        };
        if !ok {
            proposal = None;
            decided = None;
        }
    }
    let mut target = proposal.unwrap_or(current);
    // 5. Available capacity.
    if let Some(a) = obs.available_instances {
        if target > current.saturating_add(a) {
            let capped = current.saturating_add(a);
            reason(
                Factor::ResourceAvailability,
                format!("only {a} more instance(s) available: {target} capped to {capped}"),
                &[("available_instances", a as f64)],
            );
            target = capped;
        }
    }
    // 6. Schedules as floors.
    for (i, p) in spec.policies.iter().enumerate() {
        if let PolicySpec::Schedule(s) = p {
            let (tg, fl, _) = s.levels(obs.now_ms);
            if let Some(floor) = tg.max(fl) {
                if target < floor {
                    decided = Some((Factor::Schedule, Some(i)));
                    reason(
                        Factor::Schedule,
                        format!("schedule floor {floor} raises {target}"),
                        &[("floor", floor as f64)],
                    );
                    target = floor;
                }
            }
        }
    }
    // 7. Bounds, then the safety lock.
    let clamped = b.clamp(target);
    if clamped != target {
        reason(
            Factor::Bounds,
            format!("{target} clamped to [{}, {}]: {clamped}", b.min, b.max),
            &[("min", b.min as f64), ("max", b.max as f64)],
        );
    }
    let mut target = clamped;
    if obs.safety_lock && target != current {
        reason(
            Factor::SafetyLock,
            format!("safety lock: stays at {current} (would be {target})"),
            &[],
        );
        target = current;
    }
    // Never scale in on missing data (belt and braces over rules 1-3).
    if target < current && !missing.is_empty() {
        target = current;
    }
    let action = match target.cmp(&current) {
        std::cmp::Ordering::Greater => Action::ScaleUp,
        std::cmp::Ordering::Less => Action::ScaleDown,
        std::cmp::Ordering::Equal => Action::Hold,
    };
    if action == Action::Hold {
        decided = None;
    }
    let coverage = if ds.is_empty() {
        0.0
    } else {
        (ds.len() - missing.len()) as f64 / ds.len() as f64
    };
    let base = if action == Action::Hold {
        if ds.is_empty() {
            0.0
        } else {
            ds.iter().map(|d| d.confidence).sum::<f64>() / ds.len() as f64
        }
    } else {
        conf
    };
    let confidence = (base * coverage).clamp(0.0, 1.0);
    CombinedDecision {
        action,
        current,
        target,
        confidence: if confidence.is_nan() { 0.0 } else { confidence },
        reasons,
        policies: ds,
        decided_by: decided.map(|(f, _)| f),
        acting_policy: decided.and_then(|(_, i)| i),
    }
}

fn spike_threshold(spec: &PoolPolicies) -> f64 {
    spec.spike_urgency_threshold
}
