//! The conformance-vector adapter: the JSON shapes of
//! `shared/conformance/hpa/*.json` and their replay through the calculator,
//! the behavior normalization and the legacy normalization.

use serde::{Deserialize, Serialize};

use super::behavior::{
    convert_desired_replicas_with_behavior_rate, normalize_desired_replicas_with_behaviors,
    record_scale_event, replicas_change_per_period, scale_down_limit,
    scale_down_rules_with_defaults, scale_up_limit, stabilize_recommendation_with_behaviors,
    AbleToScaleReason, Behavior, HpaBehavior, HpaScalingRules, HpaState, LimitingReason,
    NormalizationArgs, Recommendation, ScaleEvent,
};
use super::calculator::{
    external_average_value_replicas, external_value_replicas, object_average_value_replicas,
    object_value_replicas, plain_metric_replicas, resource_average_value_replicas,
    resource_utilization_replicas,
};
use super::legacy::{
    convert_desired_replicas_with_rules, legacy_stabilize_recommendation,
    normalize_desired_replicas,
};
use super::pods::{
    CalcContext, ConditionStatus, Pod, PodMetric, PodPhase, ReadinessConfig, ReadyCondition,
};
use super::{
    clamp_i64_to_i32, Tolerances, DEFAULT_DOWNSCALE_STABILIZATION_S, GO_ZERO_TIME_UNIX_MS,
    VECTOR_NOW_MS,
};

/// Which vector file family a vector belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// `replica_calculator*.json`.
    ReplicaCalculator,
    /// `behavior*.json`.
    Behavior,
    /// `legacy*.json`.
    Legacy,
}

impl Family {
    /// The family from a vector file's base name prefix, as `validate.py` does.
    pub fn from_file_name(file_name: &str) -> Option<Family> {
        let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
        if base.starts_with("replica_calculator") {
            Some(Family::ReplicaCalculator)
        } else if base.starts_with("behavior") {
            Some(Family::Behavior)
        } else if base.starts_with("legacy") {
            Some(Family::Legacy)
        } else {
            None
        }
    }

    /// The family from a vector's input alone: its `family` field, else
    /// `metric_kind` means replica calculator, `convert` or a stabilize/full
    /// stage without `behavior` means legacy, any other stage means behavior.
    pub fn infer(input: &VectorInput) -> Option<Family> {
        if let Some(f) = input.family {
            return Some(f);
        }
        if input.metric_kind.is_some() {
            return Some(Family::ReplicaCalculator);
        }
        match input.stage? {
            Stage::Convert => Some(Family::Legacy),
            Stage::Stabilize | Stage::Full if input.behavior.is_none() => Some(Family::Legacy),
            _ => Some(Family::Behavior),
        }
    }
}

/// `metric_kind` of a replica-calculator vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Resource metric, Utilization target.
    ResourceUtilization,
    /// Resource metric, AverageValue target.
    ResourceAverageValue,
    /// Pods metric, AverageValue target.
    PodsAverageValue,
    /// Object metric, Value target.
    ObjectValue,
    /// Object metric, AverageValue target.
    ObjectAverageValue,
    /// External metric, Value target.
    ExternalValue,
    /// External metric, AverageValue target.
    ExternalAverageValue,
}

/// `stage` of a behavior or legacy vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Behavior: rate limits and bounds only.
    Rate,
    /// Stabilization only (behavior or legacy).
    Stabilize,
    /// Stabilize then rate/convert.
    Full,
    /// Behavior: `calculateScaleUpLimitWithScalingRules`.
    ScaleUpLimit,
    /// Behavior: `calculateScaleDownLimitWithBehaviors`.
    ScaleDownLimit,
    /// Behavior: `getReplicasChangePerPeriod` + `storeScaleEvent`.
    StoreScaleEvent,
    /// Legacy: `convertDesiredReplicasWithRules`.
    Convert,
}

/// A vector's `tolerance`: one number for both directions, or split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToleranceSpec {
    /// The same tolerance both ways.
    Uniform(f64),
    /// Separate tolerances.
    Split {
        /// Scale-down tolerance.
        scale_down: f64,
        /// Scale-up tolerance.
        scale_up: f64,
    },
}

impl ToleranceSpec {
    /// As [`Tolerances`].
    pub fn tolerances(&self) -> Tolerances {
        match *self {
            ToleranceSpec::Uniform(t) => Tolerances::uniform(t),
            ToleranceSpec::Split {
                scale_down,
                scale_up,
            } => Tolerances {
                scale_down,
                scale_up,
            },
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_window_s() -> f64 {
    60.0
}

/// `pods[]` of a replica-calculator vector. Ages are seconds before "now";
/// `null` means Go's zero time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorPod {
    /// Pod name.
    pub name: String,
    /// Phase.
    pub phase: PodPhase,
    /// Ready condition status (default true).
    #[serde(default = "default_true")]
    pub ready: bool,
    /// Has a deletion timestamp (default false).
    #[serde(default)]
    pub deleting: bool,
    /// Request, milli-units; `null` = some container has none.
    #[serde(default)]
    pub request_milli: Option<i64>,
    /// Metric value, milli-units; `null` = no sample.
    #[serde(default)]
    pub usage_milli: Option<i64>,
    /// Age of `status.startTime`.
    #[serde(default)]
    pub start_time_age_s: Option<f64>,
    /// Age of the Ready condition's `lastTransitionTime`.
    #[serde(default)]
    pub ready_transition_age_s: Option<f64>,
    /// Age of the sample timestamp.
    #[serde(default)]
    pub metric_timestamp_age_s: Option<f64>,
    /// Sample window, seconds (default 60).
    #[serde(default = "default_window_s")]
    pub metric_window_s: f64,
}

/// `extra_metrics[]`: a sample for a pod name not in `pods`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraMetric {
    /// Pod name.
    pub name: String,
    /// Value, milli-units.
    pub usage_milli: i64,
}

/// A recorded event in a vector (`{replica_change, age_s}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorEvent {
    /// Pods added or removed.
    pub replica_change: i32,
    /// Age, seconds.
    pub age_s: f64,
    /// Already marked outdated (default false).
    #[serde(default)]
    pub outdated: bool,
}

/// A recorded recommendation in a vector (`{replicas, age_s}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorRecommendation {
    /// Recommended replicas.
    pub replicas: i32,
    /// Age, seconds.
    pub age_s: f64,
}

/// The `input` object of any vector family, field for field (see the vector
/// README). Which fields are required depends on the family and the
/// `metric_kind` / `stage`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorInput {
    /// Explicit family (optional; otherwise from the file name).
    #[serde(default)]
    pub family: Option<Family>,
    // --- replica calculator
    /// Metric kind (replica calculator).
    #[serde(default)]
    pub metric_kind: Option<MetricKind>,
    /// Resource name; `null` for pods metrics. Resource kinds default to `cpu`.
    #[serde(default)]
    pub resource: Option<String>,
    /// Informational: the container the metric was scoped to.
    #[serde(default)]
    pub container: Option<String>,
    /// Tolerance (default 0.1 both ways).
    #[serde(default)]
    pub tolerance: Option<ToleranceSpec>,
    /// Target: percent for utilization, milli-units otherwise.
    #[serde(default)]
    pub target: Option<i64>,
    /// CPU initialization period, seconds (default 120).
    #[serde(default)]
    pub cpu_initialization_period_s: Option<f64>,
    /// Initial readiness delay, seconds (default 10).
    #[serde(default)]
    pub delay_of_initial_readiness_status_s: Option<f64>,
    /// Pods the lister returns.
    #[serde(default)]
    pub pods: Vec<VectorPod>,
    /// Samples for pods not in `pods`.
    #[serde(default)]
    pub extra_metrics: Vec<ExtraMetric>,
    /// Object kinds: the metric value.
    #[serde(default)]
    pub metric_value_milli: Option<i64>,
    /// External kinds: all series values.
    #[serde(default)]
    pub metric_values_milli: Option<Vec<i64>>,
    /// `*_value` object/external kinds: Running and Ready pods.
    #[serde(default)]
    pub ready_pod_count: Option<i64>,
    // --- behavior / legacy
    /// Stage.
    #[serde(default)]
    pub stage: Option<Stage>,
    /// Current replicas (also the calculator's current replicas).
    #[serde(default)]
    pub current_replicas: Option<i32>,
    /// Metric recommendation before normalization.
    #[serde(default)]
    pub prenormalized_desired_replicas: Option<i32>,
    /// `spec.minReplicas`.
    #[serde(default)]
    pub min_replicas: Option<i32>,
    /// `spec.maxReplicas`.
    #[serde(default)]
    pub max_replicas: Option<i32>,
    /// `spec.behavior` (after API defaulting in the vectors).
    #[serde(default)]
    pub behavior: Option<HpaBehavior>,
    /// Past scale-up events.
    #[serde(default)]
    pub scale_up_events: Vec<VectorEvent>,
    /// Past scale-down events.
    #[serde(default)]
    pub scale_down_events: Vec<VectorEvent>,
    /// Past recommendations, in stored order.
    #[serde(default)]
    pub recommendations: Vec<VectorRecommendation>,
    /// Controller downscale stabilization flag, seconds (default 300).
    #[serde(default)]
    pub downscale_stabilization_window_s: Option<i32>,
    /// `store_scale_event`: query period, seconds.
    #[serde(default)]
    pub query_period_s: Option<i32>,
    /// `store_scale_event`: the event list.
    #[serde(default)]
    pub events: Vec<VectorEvent>,
    /// `store_scale_event`: rules of that direction; `null` = no behavior.
    #[serde(default)]
    pub rules: Option<HpaScalingRules>,
    /// `store_scale_event`: replicas before.
    #[serde(default)]
    pub prev_replicas: Option<i32>,
    /// `store_scale_event`: replicas after.
    #[serde(default)]
    pub new_replicas: Option<i32>,
}

/// One event in `events_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSummary {
    /// Pods added or removed.
    pub replica_change: i32,
    /// Outdated flag.
    pub outdated: bool,
}

/// The computed (or `expected`) output of a vector. Only the fields of the
/// vector's family and stage are set; `expected` objects carry a subset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorOutput {
    /// Replica calculator: proposed replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Resource utilization: integer percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization: Option<i32>,
    /// Resource utilization: average usage per sampled pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_value_milli: Option<i64>,
    /// Other kinds: usage (see [`ReplicaProposal::usage_milli`](super::calculator::ReplicaProposal::usage_milli)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_milli: Option<i64>,
    /// Calculator error message (expected: a substring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Normalized desired replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// `ScalingLimited` reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limiting_reason: Option<LimitingReason>,
    /// Behavior stabilize: the recommendation log after the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_recommendations: Option<Vec<i32>>,
    /// Behavior stabilize: reason when stabilization changed the proposal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_reason: Option<AbleToScaleReason>,
    /// Full stages: the stabilized recommendation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilized_replicas: Option<i32>,
    /// Full stages: `AbleToScale` reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub able_to_scale_reason: Option<AbleToScaleReason>,
    /// Limit stages: the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i32>,
    /// `store_scale_event`: change inside the query period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_change_in_period: Option<i32>,
    /// `store_scale_event`: the events after storing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_after: Option<Vec<EventSummary>>,
    /// Legacy stabilize: recommendation log length after the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation_log_length: Option<usize>,
}

impl VectorOutput {
    /// Fields of `expected` that this output does not match, as
    /// `"field: expected X, got Y"`. Only fields set in `expected` are
    /// compared; `error` matches as a substring. Empty means a pass.
    pub fn mismatches(&self, expected: &VectorOutput) -> Vec<String> {
        let mut out = Vec::new();
        fn cmp<T: PartialEq + std::fmt::Debug>(
            out: &mut Vec<String>,
            name: &str,
            want: &Option<T>,
            got: &Option<T>,
        ) {
            if want.is_some() && want != got {
                out.push(format!("{name}: expected {want:?}, got {got:?}"));
            }
        }
        cmp(&mut out, "replicas", &expected.replicas, &self.replicas);
        cmp(
            &mut out,
            "utilization",
            &expected.utilization,
            &self.utilization,
        );
        cmp(
            &mut out,
            "raw_value_milli",
            &expected.raw_value_milli,
            &self.raw_value_milli,
        );
        cmp(
            &mut out,
            "usage_milli",
            &expected.usage_milli,
            &self.usage_milli,
        );
        if let Some(want) = &expected.error {
            if !self
                .error
                .as_deref()
                .is_some_and(|g| g.contains(want.as_str()))
            {
                out.push(format!(
                    "error: expected substring {want:?}, got {:?}",
                    self.error
                ));
            }
        }
        cmp(
            &mut out,
            "desired_replicas",
            &expected.desired_replicas,
            &self.desired_replicas,
        );
        cmp(
            &mut out,
            "limiting_reason",
            &expected.limiting_reason,
            &self.limiting_reason,
        );
        cmp(
            &mut out,
            "stored_recommendations",
            &expected.stored_recommendations,
            &self.stored_recommendations,
        );
        cmp(
            &mut out,
            "stabilization_reason",
            &expected.stabilization_reason,
            &self.stabilization_reason,
        );
        cmp(
            &mut out,
            "stabilized_replicas",
            &expected.stabilized_replicas,
            &self.stabilized_replicas,
        );
        cmp(
            &mut out,
            "able_to_scale_reason",
            &expected.able_to_scale_reason,
            &self.able_to_scale_reason,
        );
        cmp(&mut out, "limit", &expected.limit, &self.limit);
        cmp(
            &mut out,
            "replicas_change_in_period",
            &expected.replicas_change_in_period,
            &self.replicas_change_in_period,
        );
        cmp(
            &mut out,
            "events_after",
            &expected.events_after,
            &self.events_after,
        );
        cmp(
            &mut out,
            "recommendation_log_length",
            &expected.recommendation_log_length,
            &self.recommendation_log_length,
        );
        out
    }
}

/// One conformance vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vector {
    /// Vector name.
    pub name: String,
    /// `"<Go test function> / <table case name>"`.
    #[serde(default)]
    pub source: Option<String>,
    /// Caveat about the case.
    #[serde(default)]
    pub note: Option<String>,
    /// Inputs.
    pub input: VectorInput,
    /// Expected output (absent when only computing).
    #[serde(default)]
    pub expected: Option<VectorOutput>,
}

/// `{"name": ..., "output": {...}}`: one line of `conformance hpa` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorResult {
    /// Vector name.
    pub name: String,
    /// Computed output.
    pub output: VectorOutput,
}

/// A vector that cannot be evaluated (malformed input, not a calculator error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VectorError {
    /// A field the family/stage needs is absent.
    #[error("vector input is missing `{0}`")]
    MissingField(&'static str),
    /// The stage does not exist in this family.
    #[error("stage {stage:?} is not valid for family {family:?}")]
    BadStage {
        /// The family.
        family: Family,
        /// The stage.
        stage: Stage,
    },
    /// A value is out of range.
    #[error("vector field `{0}` is out of range")]
    OutOfRange(&'static str),
}

fn req<T: Clone>(v: &Option<T>, name: &'static str) -> Result<T, VectorError> {
    v.clone().ok_or(VectorError::MissingField(name))
}

fn age_to_ts(now_ms: i64, age_s: Option<f64>) -> i64 {
    match age_s {
        None => GO_ZERO_TIME_UNIX_MS,
        Some(a) => now_ms.saturating_sub((a * 1000.0).round() as i64),
    }
}

fn secs_to_i64(s: f64) -> i64 {
    s.round() as i64
}

fn vector_pods(input: &VectorInput, now_ms: i64) -> (Vec<Pod>, Vec<PodMetric>) {
    let mut pods = Vec::with_capacity(input.pods.len());
    let mut metrics = Vec::new();
    for p in &input.pods {
        pods.push(Pod {
            name: p.name.clone(),
            phase: p.phase,
            deleting: p.deleting,
            start_time_ms: Some(age_to_ts(now_ms, p.start_time_age_s)),
            ready: Some(ReadyCondition {
                status: if p.ready {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                },
                last_transition_ms: age_to_ts(now_ms, p.ready_transition_age_s),
            }),
            request_milli: p.request_milli,
        });
        if let Some(u) = p.usage_milli {
            metrics.push(PodMetric {
                pod: p.name.clone(),
                value_milli: u,
                timestamp_ms: age_to_ts(now_ms, p.metric_timestamp_age_s),
                window_ms: (p.metric_window_s * 1000.0).round() as i64,
            });
        }
    }
    for e in &input.extra_metrics {
        metrics.push(PodMetric {
            pod: e.name.clone(),
            value_milli: e.usage_milli,
            timestamp_ms: now_ms,
            window_ms: 60_000,
        });
    }
    (pods, metrics)
}

fn vector_events(events: &[VectorEvent], now_ms: i64) -> Vec<ScaleEvent> {
    events
        .iter()
        .map(|e| ScaleEvent {
            replica_change: e.replica_change,
            timestamp_ms: age_to_ts(now_ms, Some(e.age_s)),
            outdated: e.outdated,
        })
        .collect()
}

fn vector_recommendations(recs: &[VectorRecommendation], now_ms: i64) -> Vec<Recommendation> {
    recs.iter()
        .map(|r| Recommendation {
            replicas: r.replicas,
            timestamp_ms: age_to_ts(now_ms, Some(r.age_s)),
        })
        .collect()
}

fn eval_replica_calculator(input: &VectorInput, now_ms: i64) -> Result<VectorOutput, VectorError> {
    let kind = req(&input.metric_kind, "metric_kind")?;
    let current = req(&input.current_replicas, "current_replicas")?;
    let target = req(&input.target, "target")?;
    let tolerances = input.tolerance.map(|t| t.tolerances()).unwrap_or_default();
    let ctx = CalcContext {
        tolerances,
        readiness: ReadinessConfig {
            cpu_initialization_period_s: secs_to_i64(
                input.cpu_initialization_period_s.unwrap_or(120.0),
            ),
            delay_of_initial_readiness_status_s: secs_to_i64(
                input.delay_of_initial_readiness_status_s.unwrap_or(10.0),
            ),
        },
        now_ms,
    };
    let (pods, metrics) = vector_pods(input, now_ms);
    let resource = input.resource.as_deref().unwrap_or("cpu");
    let values = || req(&input.metric_values_milli, "metric_values_milli");
    let result = match kind {
        MetricKind::ResourceUtilization => {
            let t = i32::try_from(target).map_err(|_| VectorError::OutOfRange("target"))?;
            resource_utilization_replicas(&ctx, current, t, resource, &pods, &metrics)
        }
        MetricKind::ResourceAverageValue => {
            resource_average_value_replicas(&ctx, current, target, resource, &pods, &metrics)
        }
        MetricKind::PodsAverageValue => {
            plain_metric_replicas(&ctx, current, target, "", &pods, &metrics)
        }
        MetricKind::ObjectValue => object_value_replicas(
            &tolerances,
            current,
            target,
            req(&input.metric_value_milli, "metric_value_milli")?,
            req(&input.ready_pod_count, "ready_pod_count")?,
        ),
        MetricKind::ObjectAverageValue => object_average_value_replicas(
            &tolerances,
            current,
            target,
            req(&input.metric_value_milli, "metric_value_milli")?,
        ),
        MetricKind::ExternalValue => external_value_replicas(
            &tolerances,
            current,
            target,
            &values()?,
            req(&input.ready_pod_count, "ready_pod_count")?,
        ),
        MetricKind::ExternalAverageValue => {
            external_average_value_replicas(&tolerances, current, target, &values()?)
        }
    };
    Ok(match result {
        Err(e) => VectorOutput {
            error: Some(e.to_string()),
            ..VectorOutput::default()
        },
        Ok(p) if kind == MetricKind::ResourceUtilization => VectorOutput {
            replicas: Some(p.replicas),
            utilization: p.utilization,
            raw_value_milli: Some(p.usage_milli),
            ..VectorOutput::default()
        },
        Ok(p) => VectorOutput {
            replicas: Some(p.replicas),
            usage_milli: Some(p.usage_milli),
            ..VectorOutput::default()
        },
    })
}

fn normalization_args(input: &VectorInput, desired: i32) -> Result<NormalizationArgs, VectorError> {
    Ok(NormalizationArgs {
        current_replicas: req(&input.current_replicas, "current_replicas")?,
        desired_replicas: desired,
        min_replicas: req(&input.min_replicas, "min_replicas")?,
        max_replicas: req(&input.max_replicas, "max_replicas")?,
    })
}

fn eval_behavior(input: &VectorInput, now_ms: i64) -> Result<VectorOutput, VectorError> {
    let stage = req(&input.stage, "stage")?;
    let downscale = input
        .downscale_stabilization_window_s
        .unwrap_or(DEFAULT_DOWNSCALE_STABILIZATION_S);
    let behavior = || {
        input
            .behavior
            .as_ref()
            .map(|b| Behavior::from_spec(b, downscale))
            .ok_or(VectorError::MissingField("behavior"))
    };
    let mut state = HpaState {
        recommendations: vector_recommendations(&input.recommendations, now_ms),
        scale_up_events: vector_events(&input.scale_up_events, now_ms),
        scale_down_events: vector_events(&input.scale_down_events, now_ms),
    };
    let desired = || {
        req(
            &input.prenormalized_desired_replicas,
            "prenormalized_desired_replicas",
        )
    };
    let current = || req(&input.current_replicas, "current_replicas");
    let out = match stage {
        Stage::Rate => {
            let args = normalization_args(input, desired()?)?;
            let (d, reason) =
                convert_desired_replicas_with_behavior_rate(&args, &behavior()?, &state, now_ms);
            VectorOutput {
                desired_replicas: Some(d),
                limiting_reason: Some(reason),
                ..VectorOutput::default()
            }
        }
        Stage::Stabilize => {
            let desired = desired()?;
            let (rec, reason) = stabilize_recommendation_with_behaviors(
                current()?,
                desired,
                &behavior()?,
                &mut state.recommendations,
                now_ms,
            );
            VectorOutput {
                desired_replicas: Some(rec),
                stored_recommendations: Some(
                    state.recommendations.iter().map(|r| r.replicas).collect(),
                ),
                stabilization_reason: (rec != desired).then_some(reason),
                ..VectorOutput::default()
            }
        }
        Stage::Full => {
            let args = normalization_args(input, desired()?)?;
            let n =
                normalize_desired_replicas_with_behaviors(&args, &behavior()?, &mut state, now_ms);
            VectorOutput {
                desired_replicas: Some(n.desired_replicas),
                limiting_reason: Some(n.limiting_reason),
                stabilized_replicas: Some(n.stabilized_replicas),
                able_to_scale_reason: Some(n.able_to_scale_reason),
                ..VectorOutput::default()
            }
        }
        Stage::ScaleUpLimit => VectorOutput {
            limit: Some(scale_up_limit(
                current()?,
                &state.scale_up_events,
                &state.scale_down_events,
                &behavior()?.scale_up,
                now_ms,
            )),
            ..VectorOutput::default()
        },
        Stage::ScaleDownLimit => VectorOutput {
            limit: Some(scale_down_limit(
                current()?,
                &state.scale_up_events,
                &state.scale_down_events,
                &behavior()?.scale_down,
                now_ms,
            )),
            ..VectorOutput::default()
        },
        Stage::StoreScaleEvent => {
            let mut events = vector_events(&input.events, now_ms);
            let change = replicas_change_per_period(
                req(&input.query_period_s, "query_period_s")?,
                &events,
                now_ms,
            );
            let prev = req(&input.prev_replicas, "prev_replicas")?;
            let new = req(&input.new_replicas, "new_replicas")?;
            if let Some(rules) = &input.rules {
                // The vector gives the rules of the direction being stored; the
                // window default does not matter here.
                let rules = scale_down_rules_with_defaults(Some(rules), downscale);
                let delta = clamp_i64_to_i32((i64::from(new) - i64::from(prev)).abs());
                record_scale_event(&rules, &mut events, delta, now_ms);
            }
            VectorOutput {
                replicas_change_in_period: Some(change),
                events_after: Some(
                    events
                        .iter()
                        .map(|e| EventSummary {
                            replica_change: e.replica_change,
                            outdated: e.outdated,
                        })
                        .collect(),
                ),
                ..VectorOutput::default()
            }
        }
        Stage::Convert => {
            return Err(VectorError::BadStage {
                family: Family::Behavior,
                stage,
            })
        }
    };
    Ok(out)
}

fn eval_legacy(input: &VectorInput, now_ms: i64) -> Result<VectorOutput, VectorError> {
    let stage = req(&input.stage, "stage")?;
    let desired = req(
        &input.prenormalized_desired_replicas,
        "prenormalized_desired_replicas",
    )?;
    let window = input
        .downscale_stabilization_window_s
        .unwrap_or(DEFAULT_DOWNSCALE_STABILIZATION_S);
    let mut recs = vector_recommendations(&input.recommendations, now_ms);
    match stage {
        Stage::Stabilize => {
            let s = legacy_stabilize_recommendation(desired, window, &mut recs, now_ms);
            Ok(VectorOutput {
                desired_replicas: Some(s),
                recommendation_log_length: Some(recs.len()),
                ..VectorOutput::default()
            })
        }
        Stage::Convert => {
            let (d, reason) =
                convert_desired_replicas_with_rules(&normalization_args(input, desired)?);
            Ok(VectorOutput {
                desired_replicas: Some(d),
                limiting_reason: Some(reason),
                ..VectorOutput::default()
            })
        }
        Stage::Full => {
            let n = normalize_desired_replicas(
                &normalization_args(input, desired)?,
                window,
                &mut recs,
                now_ms,
            );
            Ok(VectorOutput {
                desired_replicas: Some(n.desired_replicas),
                limiting_reason: Some(n.limiting_reason),
                stabilized_replicas: Some(n.stabilized_replicas),
                able_to_scale_reason: Some(n.able_to_scale_reason),
                ..VectorOutput::default()
            })
        }
        _ => Err(VectorError::BadStage {
            family: Family::Legacy,
            stage,
        }),
    }
}

/// Evaluates a vector's input at an explicit "now" (Unix ms). Ages in the
/// vector are taken relative to `now_ms`; the result does not depend on it.
pub fn evaluate_vector_at(
    family: Family,
    vector: &Vector,
    now_ms: i64,
) -> Result<VectorOutput, VectorError> {
    match family {
        Family::ReplicaCalculator => eval_replica_calculator(&vector.input, now_ms),
        Family::Behavior => eval_behavior(&vector.input, now_ms),
        Family::Legacy => eval_legacy(&vector.input, now_ms),
    }
}

/// Evaluates a vector of the given family (see [`Family::from_file_name`] and
/// [`Family::infer`]) at [`VECTOR_NOW_MS`], returning the same fields as its
/// `expected` object. Calculator errors are reported in
/// [`VectorOutput::error`]; `Err` means the vector itself is malformed.
pub fn evaluate_vector(family: Family, vector: &Vector) -> Result<VectorOutput, VectorError> {
    evaluate_vector_at(family, vector, VECTOR_NOW_MS)
}
