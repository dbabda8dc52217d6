//! Agent pools: the raw input an operator sends, and the validated pool the
//! engine works with. Parse, then validate: one function turns raw input into
//! a [`ValidPool`] or reports every violated rule at once.

use serde::{Deserialize, Serialize};

use crate::metric_source::{MetricSource, RawMetricSource};
/// Capacity bounds and current size of a pool (defined with the observation
/// a policy sees).
pub use crate::observation::PoolBounds;
use crate::policies::threshold::{RawThresholdPolicy, ThresholdPolicy};
use crate::region::state::JobKind;
use crate::validate::Violations;
use crate::workload::{RawWorkloadTarget, WorkloadTarget};

/// Largest capacity a pool may declare: a stated bound on everything.
pub const MAX_CAPACITY_LIMIT: i64 = 1_000_000;

/// How the control loop treats a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Decisions are applied and actuated.
    Autonomous,
    /// Decisions become proposals an operator approves or rejects (the
    /// phase-66 opt-in rule). The default where no mode is given.
    Recommend,
    /// Nothing changes.
    Frozen,
}

impl Mode {
    /// Every mode.
    pub const ALL: &'static [Mode] = &[Mode::Autonomous, Mode::Recommend, Mode::Frozen];

    /// The wire name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Autonomous => "autonomous",
            Mode::Recommend => "recommend",
            Mode::Frozen => "frozen",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "autonomous" => Some(Mode::Autonomous),
            "recommend" => Some(Mode::Recommend),
            "frozen" => Some(Mode::Frozen),
            _ => None,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = crate::lifecycle::UnknownValue;

    fn from_str(s: &str) -> Result<Mode, Self::Err> {
        Mode::parse(s).ok_or_else(|| crate::lifecycle::UnknownValue {
            kind: "pool mode",
            value: s.to_string(),
            expected: "autonomous, recommend, frozen, ",
        })
    }
}

/// The body of `POST /api/v1/pools`, as sent. Missing fields take the seed
/// defaults (min 1, max 10, desired 1, metric `throughput`, mode `recommend`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPool {
    /// Owning tenant's id.
    pub tenant_id: String,
    /// Region name (must exist).
    pub region: String,
    /// Agent type served by the pool.
    pub agent_type: String,
    /// Lower capacity bound (instances); 0 allows scale to zero.
    pub min_capacity: Option<i64>,
    /// Upper capacity bound (instances).
    pub max_capacity: Option<i64>,
    /// Current desired capacity (instances).
    pub desired_capacity: Option<i64>,
    /// Work one instance handles, in the pool metric's units.
    pub capacity_per_instance: Option<f64>,
    /// Name of the metric whose window mean measures load.
    pub metric: Option<String>,
    /// Control-loop mode.
    pub mode: Option<String>,
    /// The job kind the pool serves (`posting`, `orchestration`, `creative`
    /// or `intel`), for its region's pressure; by default its agent type when
    /// that is one of them.
    pub job_kind: Option<String>,
    /// Threshold policy settings. Giving them asks for the threshold policy
    /// alone; without them the pool gets fleetscale's default policies
    /// (`crate::decision::default`, `fleetscale policy default`).
    pub scaling_policy: Option<RawThresholdPolicy>,
    /// Where the engine pulls the pool's load from each tick (a PromQL
    /// query); without it the pool reads pushed samples only.
    pub metric_source: Option<RawMetricSource>,
    /// The Kubernetes workload the `kubernetes` actuator scales.
    pub target: Option<RawWorkloadTarget>,
}

/// The body of `PATCH /api/v1/pools/{id}`: any subset of the mutable fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolPatch {
    /// New lower bound.
    pub min_capacity: Option<i64>,
    /// New upper bound.
    pub max_capacity: Option<i64>,
    /// New desired capacity (a manual change; clamped by nothing: it must fit the bounds).
    pub desired_capacity: Option<i64>,
    /// New capacity per instance.
    pub capacity_per_instance: Option<f64>,
    /// New metric name.
    pub metric: Option<String>,
    /// New mode.
    pub mode: Option<String>,
    /// New job kind (`posting`, `orchestration`, `creative` or `intel`).
    pub job_kind: Option<String>,
    /// New threshold policy (replaces the old one; missing fields take defaults).
    pub scaling_policy: Option<RawThresholdPolicy>,
    /// New metric source (replaces the old one); `null` removes it, absent
    /// keeps it.
    #[serde(default, deserialize_with = "present")]
    pub metric_source: Option<Option<RawMetricSource>>,
    /// New Kubernetes workload target; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    pub target: Option<Option<RawWorkloadTarget>>,
}

/// A field that is present (even `null`) deserializes to `Some`, so that a
/// patch tells "remove" (`null`) from "keep" (absent).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A pool whose every field has passed validation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidPool {
    /// Owning tenant's id.
    pub tenant_id: String,
    /// Region name.
    pub region: String,
    /// Agent type.
    pub agent_type: String,
    /// Capacity bounds and desired size.
    pub bounds: PoolBounds,
    /// Work one instance handles, in metric units (> 0).
    pub capacity_per_instance: f64,
    /// Load metric name.
    pub metric: String,
    /// Control-loop mode.
    pub mode: Mode,
    /// The job kind it serves, when set explicitly (else its agent type's,
    /// see [`crate::region::state::job_kind_of`]).
    pub job_kind: Option<JobKind>,
    /// Threshold policy.
    pub policy: ThresholdPolicy,
    /// Where the engine pulls the load from, if anywhere but pushes.
    pub metric_source: Option<MetricSource>,
    /// The Kubernetes workload the `kubernetes` actuator scales, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<WorkloadTarget>,
}

impl NewPool {
    /// Applies defaults and checks every rule, reporting all violations.
    pub fn validate(&self) -> Result<ValidPool, Violations> {
        let mut v = Violations::default();
        v.check_text("tenant_id", &self.tenant_id, 64);
        v.check_name("region", &self.region);
        v.check_name("agent_type", &self.agent_type);
        let pool = build(
            &mut v,
            self.tenant_id.clone(),
            self.region.clone(),
            self.agent_type.clone(),
            Fields {
                min: self.min_capacity.unwrap_or(1),
                max: self.max_capacity.unwrap_or(10),
                desired: self.desired_capacity.unwrap_or(1),
                cpi: self.capacity_per_instance.unwrap_or(1.0),
                metric: self.metric.clone().unwrap_or_else(|| "throughput".into()),
                mode: self.mode.clone(),
                job_kind: self.job_kind.clone(),
                policy: self.scaling_policy.clone().unwrap_or_default(),
                metric_source: self.metric_source.clone(),
                target: self.target.clone(),
            },
        );
        v.into_result(pool)
    }
}

impl PoolPatch {
    /// Merges the patch onto `current` and validates the result as a whole.
    pub fn apply(&self, current: &ValidPool) -> Result<ValidPool, Violations> {
        let mut v = Violations::default();
        let pool = build(
            &mut v,
            current.tenant_id.clone(),
            current.region.clone(),
            current.agent_type.clone(),
            Fields {
                min: self.min_capacity.unwrap_or(current.bounds.min),
                max: self.max_capacity.unwrap_or(current.bounds.max),
                desired: self.desired_capacity.unwrap_or(current.bounds.desired),
                cpi: self
                    .capacity_per_instance
                    .unwrap_or(current.capacity_per_instance),
                metric: self
                    .metric
                    .clone()
                    .unwrap_or_else(|| current.metric.clone()),
                mode: Some(
                    self.mode
                        .clone()
                        .unwrap_or_else(|| current.mode.as_str().to_string()),
                ),
                job_kind: self
                    .job_kind
                    .clone()
                    .or_else(|| current.job_kind.map(|k| k.as_str().to_string())),
                policy: self
                    .scaling_policy
                    .clone()
                    .unwrap_or_else(|| current.policy.to_raw()),
                metric_source: match &self.metric_source {
                    Some(new) => new.clone(),
                    None => current.metric_source.as_ref().map(MetricSource::to_raw),
                },
                target: match &self.target {
                    Some(t) => t.clone(),
                    None => current.target.as_ref().map(WorkloadTarget::to_raw),
                },
            },
        );
        v.into_result(pool)
    }
}

struct Fields {
    min: i64,
    max: i64,
    desired: i64,
    cpi: f64,
    metric: String,
    mode: Option<String>,
    job_kind: Option<String>,
    policy: RawThresholdPolicy,
    metric_source: Option<RawMetricSource>,
    target: Option<RawWorkloadTarget>,
}

fn build(
    v: &mut Violations,
    tenant_id: String,
    region: String,
    agent_type: String,
    f: Fields,
) -> ValidPool {
    v.check_i64("min_capacity", f.min, 0, MAX_CAPACITY_LIMIT);
    v.check_i64("max_capacity", f.max, 0, MAX_CAPACITY_LIMIT);
    v.check_i64("desired_capacity", f.desired, 0, MAX_CAPACITY_LIMIT);
    if f.min > f.max {
        v.push("min_capacity", "must be <= max_capacity");
    }
    if f.desired < f.min {
        v.push("desired_capacity", "must be >= min_capacity");
    }
    if f.desired > f.max {
        v.push("desired_capacity", "must be <= max_capacity");
    }
    if !f.cpi.is_finite() {
        v.push("capacity_per_instance", "must be a finite number");
    } else if f.cpi <= 0.0 || f.cpi > 1e12 {
        v.push("capacity_per_instance", "must be > 0 and <= 1e12");
    }
    v.check_name("metric", &f.metric);
    let mode = match f.mode.as_deref() {
        None => Mode::Recommend,
        Some(s) => Mode::parse(s).unwrap_or_else(|| {
            v.push("mode", "must be one of autonomous, recommend, frozen");
            Mode::Recommend
        }),
    };
    let job_kind = f.job_kind.as_deref().and_then(|s| {
        s.parse::<JobKind>()
            .map_err(|_| {
                v.push(
                    "job_kind",
                    "must be one of posting, orchestration, creative, intel",
                )
            })
            .ok()
    });
    let policy = f.policy.validate("scaling_policy", v);
    let metric_source = f
        .metric_source
        .as_ref()
        .map(|m| m.validate("metric_source", v));
    let target = f.target.as_ref().and_then(|t| t.validate("target", v));
    ValidPool {
        tenant_id,
        region,
        agent_type,
        bounds: PoolBounds {
            min: f.min,
            max: f.max,
            desired: f.desired,
        },
        capacity_per_instance: f.cpi,
        metric: f.metric,
        mode,
        job_kind,
        policy,
        metric_source,
        target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> NewPool {
        NewPool {
            tenant_id: "t1".into(),
            region: "eu-west".into(),
            agent_type: "writer".into(),
            ..NewPool::default()
        }
    }

    fn fields(p: NewPool) -> Vec<(String, String)> {
        match p.validate() {
            Ok(_) => vec![],
            Err(v) => v.0.into_iter().map(|e| (e.field, e.rule)).collect(),
        }
    }

    #[test]
    fn defaults_follow_the_seed() {
        let p = base().validate().unwrap();
        assert_eq!(
            p.bounds,
            PoolBounds {
                min: 1,
                max: 10,
                desired: 1
            }
        );
        assert_eq!(p.mode, Mode::Recommend);
        assert_eq!(p.metric, "throughput");
        assert_eq!(p.policy.scale_up_threshold, 80.0);
        assert_eq!(p.policy.scale_down_threshold, 30.0);
        assert_eq!(p.policy.cooldown_seconds, 300);
        assert_eq!(p.policy.increment, 1);
    }

    #[test]
    fn bound_rules_table() {
        // (min, max, desired, expected violated fields)
        let cases: &[(i64, i64, i64, &[&str])] = &[
            (0, 0, 0, &[]),
            (0, 10, 0, &[]),
            (1, 10, 10, &[]),
            (5, 4, 4, &["min_capacity", "desired_capacity"]),
            (2, 10, 1, &["desired_capacity"]),
            (1, 10, 11, &["desired_capacity"]),
            (-1, 10, 1, &["min_capacity"]),
            (0, MAX_CAPACITY_LIMIT + 1, 1, &["max_capacity"]),
        ];
        for &(min, max, desired, want) in cases {
            let mut p = base();
            p.min_capacity = Some(min);
            p.max_capacity = Some(max);
            p.desired_capacity = Some(desired);
            let got: Vec<String> = fields(p).into_iter().map(|(f, _)| f).collect();
            assert_eq!(got, want, "min={min} max={max} desired={desired}");
        }
    }

    #[test]
    fn nan_and_bad_names_are_named() {
        let mut p = base();
        p.capacity_per_instance = Some(f64::NAN);
        p.mode = Some("wild".into());
        p.metric = Some("bad metric".into());
        p.region = String::new();
        let got: Vec<String> = fields(p).into_iter().map(|(f, _)| f).collect();
        assert_eq!(got, ["region", "capacity_per_instance", "metric", "mode"]);
    }

    #[test]
    fn patch_is_validated_as_a_whole() {
        let p = base().validate().unwrap();
        let patch = PoolPatch {
            max_capacity: Some(0),
            ..PoolPatch::default()
        };
        let err = patch.apply(&p).unwrap_err();
        assert!(err.0.iter().any(|e| e.field == "min_capacity"));
        let ok = PoolPatch {
            mode: Some("frozen".into()),
            ..PoolPatch::default()
        }
        .apply(&p)
        .unwrap();
        assert_eq!(ok.mode, Mode::Frozen);
        assert_eq!(ok.policy, p.policy);
    }

    #[test]
    fn a_metric_source_is_validated_kept_and_removed_by_patches() {
        let mut p = base();
        p.metric_source = Some(RawMetricSource {
            kind: "prometheus".into(),
            url: Some("ftp://x".into()),
            query: String::new(),
            metric: None,
        });
        let got: Vec<String> = fields(p.clone()).into_iter().map(|(f, _)| f).collect();
        assert_eq!(got, ["metric_source.url", "metric_source.query"]);
        p.metric_source = Some(RawMetricSource {
            kind: "prometheus".into(),
            url: None,
            query: "sum(agent_load)".into(),
            metric: Some("load".into()),
        });
        let valid = p.validate().unwrap();
        let src = valid.metric_source.clone().unwrap();
        assert_eq!(src.query, "sum(agent_load)");
        // absent keeps it, null removes it
        let kept: PoolPatch = parse(r#"{"max_capacity": 12}"#);
        assert_eq!(kept.apply(&valid).unwrap().metric_source, Some(src));
        let removed: PoolPatch = parse(r#"{"metric_source": null}"#);
        assert_eq!(removed.apply(&valid).unwrap().metric_source, None);
        let bad: PoolPatch = parse(r#"{"metric_source": {"type": "x", "query": "up"}}"#);
        let err = bad.apply(&valid).unwrap_err();
        assert_eq!(err.0[0].field, "metric_source.type");
    }

    #[test]
    fn target_is_validated_kept_by_patches_and_cleared_by_null() {
        let mut p = base();
        p.target = Some(RawWorkloadTarget {
            kind: "Deployment".into(),
            namespace: "Bad_NS".into(),
            name: "writer".into(),
        });
        assert_eq!(fields(p.clone())[0].0, "target.namespace");
        p.target.as_mut().unwrap().namespace = "agents".into();
        let valid = p.validate().unwrap();
        assert_eq!(
            valid.target.as_ref().unwrap().to_string(),
            "Deployment/agents/writer"
        );
        let kept = PoolPatch::default().apply(&valid).unwrap();
        assert_eq!(kept.target, valid.target);
        let patch: PoolPatch = serde_json::from_str(r#"{"target": null}"#).unwrap();
        assert_eq!(patch.apply(&valid).unwrap().target, None);
        let patch: PoolPatch = serde_json::from_str(
            r#"{"target": {"kind": "StatefulSet", "namespace": "agents", "name": "w"}}"#,
        )
        .unwrap();
        let t = patch.apply(&valid).unwrap().target.unwrap();
        assert_eq!(t.kind, crate::workload::WorkloadKind::StatefulSet);
    }

    fn parse(s: &str) -> PoolPatch {
        serde_json::from_str(s).unwrap()
    }
}
