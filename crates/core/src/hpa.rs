//! Kubernetes HPA-compatible replica calculation (target tracking): the
//! per-metric replica calculator, `spec.behavior` stabilization and rate
//! limits, the legacy (behavior-less) normalization, and the conformance-vector
//! adapter that replays `shared/conformance/hpa/*.json`.
//!
//! Everything is a pure function over plain data. Time is an argument
//! (`now_ms`, Unix milliseconds); controller memory (past recommendations and
//! scale events) is a value ([`HpaState`]) the caller owns and persists.
//!
//! Fidelity notes:
//! * A record whose age equals a window or period is *outside* it: a
//!   timestamp `ts` counts for a window of `W` seconds iff
//!   `ts > now_ms - W * 1000`, and is outdated iff `ts <= now_ms - W * 1000`.
//!   This is what the Go code does on a real clock (time always advances
//!   between recording and evaluating), made deterministic.
//! * Integer sums over metric values use 128-bit arithmetic and then saturate,
//!   where Go would wrap silently on `int64` overflow. Float-to-int conversions
//!   saturate (NaN becomes 0) where Go's result is platform-defined.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------ constants

/// Default tolerance (`--horizontal-pod-autoscaler-tolerance`), both directions.
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// Default downscale stabilization window in seconds
/// (`--horizontal-pod-autoscaler-downscale-stabilization`).
pub const DEFAULT_DOWNSCALE_STABILIZATION_S: i32 = 300;
/// Default CPU initialization period in seconds
/// (`--horizontal-pod-autoscaler-cpu-initialization-period`, 5 minutes).
pub const DEFAULT_CPU_INITIALIZATION_PERIOD_S: i64 = 300;
/// Default initial readiness delay in seconds
/// (`--horizontal-pod-autoscaler-initial-readiness-delay`).
pub const DEFAULT_INITIAL_READINESS_DELAY_S: i64 = 30;
/// Go's zero `time.Time` (0001-01-01T00:00:00Z) as Unix milliseconds.
pub const GO_ZERO_TIME_UNIX_MS: i64 = -62_135_596_800_000;
/// The instant the conformance-vector adapter uses as "now" (Unix ms). Any
/// value far from [`GO_ZERO_TIME_UNIX_MS`] gives the same results.
pub const VECTOR_NOW_MS: i64 = 1_700_000_000_000;
/// Legacy scale-up limit factor (`scaleUpLimitFactor`).
pub const LEGACY_SCALE_UP_LIMIT_FACTOR: f64 = 2.0;
/// Legacy scale-up limit minimum (`scaleUpLimitMinimum`).
pub const LEGACY_SCALE_UP_LIMIT_MINIMUM: f64 = 4.0;

// ------------------------------------------------------------------ errors

/// Why a replica count could not be computed. Messages follow the Go
/// controller's wording so that substring checks against it work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpaError {
    /// The resource metrics API returned no samples at all.
    #[error("unable to get metrics for resource {resource}: no metrics returned from resource metrics API")]
    NoMetrics {
        /// The resource that was queried.
        resource: String,
    },
    /// The selector matched no pods.
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    /// Every sample belonged to an ignored or unready pod.
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoUsableMetrics,
    /// A listed pod has no request for the resource.
    #[error("missing request for {resource} in Pod {pod}")]
    MissingRequest {
        /// The resource.
        resource: String,
        /// The pod name.
        pod: String,
    },
    /// No sample belongs to a pod with a request.
    #[error("no metrics returned matched known pods")]
    NoMatchingMetrics,
    /// The target is not positive (the Kubernetes API rejects such specs).
    #[error("invalid target {0}: must be positive")]
    InvalidTarget(i64),
    /// No metric gave a proposal, or some failed while the rest would scale down.
    #[error("invalid metrics ({invalid} invalid out of {total}), first error is: {first}")]
    InvalidMetrics {
        /// Metrics that failed.
        invalid: usize,
        /// Metrics in the spec.
        total: usize,
        /// The first failure, rendered.
        first: String,
    },
    /// No metric specs were given.
    #[error("no metrics specified")]
    NoMetricSpecs,
}

// ------------------------------------------------------------------ helpers

fn ceil_to_i32(x: f64) -> i32 {
    // `as` saturates and maps NaN to 0.
    x.ceil() as i32
}

fn clamp_i128_to_i64(x: i128) -> i64 {
    x.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn clamp_i64_to_i32(x: i64) -> i32 {
    x.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// True when a record at `ts_ms` lies inside a window of `window_s` seconds
/// ending at `now_ms` (`age < window`).
pub fn within_window(ts_ms: i64, window_s: i64, now_ms: i64) -> bool {
    ts_ms > now_ms.saturating_sub(window_s.saturating_mul(1000))
}

// ------------------------------------------------------------------ tolerances

/// Scale-down and scale-up tolerances, as fractions of the target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerances {
    /// A ratio at or above `1 - scale_down` does not scale down.
    pub scale_down: f64,
    /// A ratio at or below `1 + scale_up` does not scale up.
    pub scale_up: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances::uniform(DEFAULT_TOLERANCE)
    }
}

impl Tolerances {
    /// The same tolerance in both directions.
    pub fn uniform(t: f64) -> Self {
        Tolerances {
            scale_down: t,
            scale_up: t,
        }
    }

    /// `1 - scale_down <= ratio <= 1 + scale_up`, evaluated in f64 as Go does.
    /// NaN is never within tolerance.
    pub fn is_within(&self, ratio: f64) -> bool {
        (1.0 - self.scale_down) <= ratio && ratio <= (1.0 + self.scale_up)
    }
}

// ------------------------------------------------------------------ pods

/// Pod lifecycle phase (`status.phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    /// Accepted but not all containers are running.
    Pending,
    /// Bound and running.
    Running,
    /// All containers terminated successfully.
    Succeeded,
    /// All containers terminated, at least one in failure.
    Failed,
    /// State could not be obtained.
    Unknown,
}

/// Status of a pod condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Unknown (treated as "not False" by the CPU readiness rules, like Go).
    Unknown,
}

/// The pod's `Ready` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyCondition {
    /// Condition status.
    pub status: ConditionStatus,
    /// `lastTransitionTime`, Unix ms ([`GO_ZERO_TIME_UNIX_MS`] for Go's zero time).
    pub last_transition_ms: i64,
}

/// A pod as the pod lister returns it, reduced to what the calculator reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// Pod name: the join key with [`PodMetric::pod`].
    pub name: String,
    /// Lifecycle phase.
    pub phase: PodPhase,
    /// The pod has a `deletionTimestamp`.
    pub deleting: bool,
    /// `status.startTime`, Unix ms; `None` when unset (CPU samples of such a
    /// pod count as unready).
    pub start_time_ms: Option<i64>,
    /// The Ready condition; `None` when the pod has none (CPU samples count as
    /// unready).
    pub ready: Option<ReadyCondition>,
    /// Request for the metric's resource in milli-units (sum over the
    /// containers, or the one named container); `None` when some container has
    /// no request. Only resource metrics read it.
    pub request_milli: Option<i64>,
}

/// One sample from a metrics API, per pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodMetric {
    /// Name of the pod the sample belongs to (may name a pod not in the list).
    pub pod: String,
    /// Value in milli-units.
    pub value_milli: i64,
    /// Sample timestamp, Unix ms.
    pub timestamp_ms: i64,
    /// Sample window in milliseconds.
    pub window_ms: i64,
}

/// CPU readiness tuning of the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessConfig {
    /// `--horizontal-pod-autoscaler-cpu-initialization-period`, seconds.
    pub cpu_initialization_period_s: i64,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay`, seconds.
    pub delay_of_initial_readiness_status_s: i64,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        ReadinessConfig {
            cpu_initialization_period_s: DEFAULT_CPU_INITIALIZATION_PERIOD_S,
            delay_of_initial_readiness_status_s: DEFAULT_INITIAL_READINESS_DELAY_S,
        }
    }
}

/// Everything the pod-based calculators need besides the metric itself.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalcContext {
    /// Tolerances.
    pub tolerances: Tolerances,
    /// CPU readiness tuning.
    pub readiness: ReadinessConfig,
    /// The evaluation instant, Unix ms.
    pub now_ms: i64,
}

/// How `groupPods` classified the listed pods.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodGroups {
    /// Pods whose samples count.
    pub ready_count: usize,
    /// Pending pods, and (CPU only) pods still initializing or never ready.
    pub unready: BTreeSet<String>,
    /// Pods without a sample.
    pub missing: BTreeSet<String>,
    /// Deleting or Failed pods.
    pub ignored: BTreeSet<String>,
}

/// Number of pods that are `Running` with `Ready=True` (`getReadyPodsCount`).
pub fn ready_pod_count(pods: &[Pod]) -> i64 {
    pods.iter()
        .filter(|p| {
            p.phase == PodPhase::Running
                && p.ready.is_some_and(|c| c.status == ConditionStatus::True)
        })
        .count() as i64
}

fn sample_map(metrics: &[PodMetric]) -> BTreeMap<&str, &PodMetric> {
    // Later samples for the same pod replace earlier ones.
    metrics.iter().map(|m| (m.pod.as_str(), m)).collect()
}

fn group_pods_in(
    pods: &[Pod],
    samples: &BTreeMap<&str, &PodMetric>,
    resource: &str,
    readiness: &ReadinessConfig,
    now_ms: i64,
) -> PodGroups {
    let mut g = PodGroups::default();
    for pod in pods {
        if pod.deleting || pod.phase == PodPhase::Failed {
            g.ignored.insert(pod.name.clone());
            continue;
        }
        if pod.phase == PodPhase::Pending {
            g.unready.insert(pod.name.clone());
            continue;
        }
        let Some(metric) = samples.get(pod.name.as_str()) else {
            g.missing.insert(pod.name.clone());
            continue;
        };
        if resource == "cpu" {
            let unready = match (pod.ready, pod.start_time_ms) {
                (Some(cond), Some(start)) => {
                    let init_ms = readiness.cpu_initialization_period_s.saturating_mul(1000);
                    let delay_ms = readiness
                        .delay_of_initial_readiness_status_s
                        .saturating_mul(1000);
                    let not_ready = cond.status == ConditionStatus::False;
                    if start.saturating_add(init_ms) > now_ms {
                        // Still initializing: ignore the sample if the pod is
                        // unready or a full metric window has not passed since
                        // the last readiness transition.
                        not_ready
                            || metric.timestamp_ms
                                < cond.last_transition_ms.saturating_add(metric.window_ms)
                    } else {
                        // Ignore the sample if the pod is unready and has never
                        // been ready.
                        not_ready && start.saturating_add(delay_ms) > cond.last_transition_ms
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.insert(pod.name.clone());
                continue;
            }
        }
        g.ready_count += 1;
    }
    g
}

/// Classifies pods as ready, unready, missing or ignored (`groupPods`).
///
/// The CPU readiness rules apply only when `resource == "cpu"`; pass `""` for
/// pods (custom) metrics.
pub fn group_pods(
    pods: &[Pod],
    metrics: &[PodMetric],
    resource: &str,
    readiness: &ReadinessConfig,
    now_ms: i64,
) -> PodGroups {
    group_pods_in(pods, &sample_map(metrics), resource, readiness, now_ms)
}

// ------------------------------------------------------------------ calculator

/// The calculator's answer for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaProposal {
    /// Proposed replica count.
    pub replicas: i32,
    /// The metric's current value in milli-units: for resource utilization the
    /// raw average usage per sampled pod; for pods/resource average value the
    /// integer average; for object/external `Value` the total; for
    /// object/external `AverageValue` the total divided by the status replicas,
    /// rounded up.
    pub usage_milli: i64,
    /// Current utilization in integer percent of request (resource utilization
    /// only).
    pub utilization: Option<i32>,
}

fn check_target(target: i64) -> Result<(), HpaError> {
    if target <= 0 {
        Err(HpaError::InvalidTarget(target))
    } else {
        Ok(())
    }
}

/// `GetResourceUtilizationRatio`: `(ratio, utilization percent, raw average)`.
fn utilization_ratio(
    samples: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
    target_utilization: i32,
) -> Result<(f64, i32, i64), HpaError> {
    let mut metrics_total: i128 = 0;
    let mut requests_total: i128 = 0;
    let mut entries: i128 = 0;
    for (name, value) in samples {
        let Some(req) = requests.get(name) else {
            continue; // extraneous sample
        };
        metrics_total += *value as i128;
        requests_total += *req as i128;
        entries += 1;
    }
    if requests_total == 0 {
        return Err(HpaError::NoMatchingMetrics);
    }
    let util = clamp_i64_to_i32(clamp_i128_to_i64(metrics_total * 100 / requests_total));
    let raw = clamp_i128_to_i64(metrics_total / entries);
    Ok((f64::from(util) / f64::from(target_utilization), util, raw))
}

/// `GetMetricUsageRatio`: `(ratio, integer average)`.
fn usage_ratio(samples: &BTreeMap<String, i64>, target: i64) -> (f64, i64) {
    let total: i128 = samples.values().map(|v| *v as i128).sum();
    let n = samples.len().max(1) as i128;
    let avg = clamp_i128_to_i64(total / n);
    (avg as f64 / target as f64, avg)
}

/// Recomputes a usage ratio over a sample set (pod name -> milli-units).
type RatioFn<'a> = dyn Fn(&BTreeMap<String, i64>) -> Result<f64, HpaError> + 'a;

/// Steps 5 and 6 of the algorithm, shared by resource and plain metrics.
/// `ratio_of` recomputes the ratio over a sample set; `fill_missing` gives the
/// value a missing pod gets on scale down.
fn finish_with_unready_and_missing(
    tol: &Tolerances,
    current: i32,
    ratio: f64,
    groups: &PodGroups,
    mut samples: BTreeMap<String, i64>,
    fill_missing: &dyn Fn(&str) -> i64,
    ratio_of: &RatioFn<'_>,
) -> Result<i32, HpaError> {
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if tol.is_within(ratio) {
            return Ok(current);
        }
        return Ok(ceil_to_i32(ratio * groups.ready_count as f64));
    }
    if !groups.missing.is_empty() {
        if ratio < 1.0 {
            for n in &groups.missing {
                samples.insert(n.clone(), fill_missing(n));
            }
        } else if ratio > 1.0 {
            for n in &groups.missing {
                samples.insert(n.clone(), 0);
            }
        }
    }
    if scale_up_with_unready {
        for n in &groups.unready {
            samples.insert(n.clone(), 0);
        }
    }
    let new_ratio = ratio_of(&samples)?;
    if tol.is_within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(current);
    }
    let new_replicas = ceil_to_i32(new_ratio * samples.len() as f64);
    if (new_ratio < 1.0 && new_replicas > current) || (new_ratio > 1.0 && new_replicas < current) {
        return Ok(current);
    }
    Ok(new_replicas)
}

/// Resource metric with a `Utilization` target (`GetResourceReplicas`).
///
/// `target_utilization` is percent of request. Samples of deleting/Failed pods
/// are ignored, Pending pods (and, for `cpu`, initializing or never-ready pods)
/// are unready, pods without samples are missing. Unready pods count as 0 %
/// when the ratio says scale up; missing pods count as 0 % on scale up and as
/// `max(100, target)` % of their request on scale down; the result then falls
/// back to `current_replicas` if it is within tolerance or would reverse the
/// direction. Samples for pods not in `pods` are ignored for utilization but
/// counted in that second pass, as in Go.
pub fn resource_utilization_replicas(
    ctx: &CalcContext,
    current_replicas: i32,
    target_utilization: i32,
    resource: &str,
    pods: &[Pod],
    metrics: &[PodMetric],
) -> Result<ReplicaProposal, HpaError> {
    check_target(i64::from(target_utilization))?;
    let by_pod = sample_map(metrics);
    if by_pod.is_empty() {
        return Err(HpaError::NoMetrics {
            resource: resource.to_string(),
        });
    }
    if pods.is_empty() {
        return Err(HpaError::NoPods);
    }
    let groups = group_pods_in(pods, &by_pod, resource, &ctx.readiness, ctx.now_ms);
    let mut samples: BTreeMap<String, i64> = by_pod
        .iter()
        .map(|(k, m)| (k.to_string(), m.value_milli))
        .collect();
    for n in groups.ignored.iter().chain(groups.unready.iter()) {
        samples.remove(n.as_str());
    }
    if samples.is_empty() {
        return Err(HpaError::NoUsableMetrics);
    }
    let mut requests: BTreeMap<String, i64> = BTreeMap::new();
    for p in pods {
        let Some(r) = p.request_milli else {
            return Err(HpaError::MissingRequest {
                resource: resource.to_string(),
                pod: p.name.clone(),
            });
        };
        requests.insert(p.name.clone(), r);
    }
    let (ratio, utilization, raw) = utilization_ratio(&samples, &requests, target_utilization)?;
    let fallback = i128::from(target_utilization.max(100));
    let fill = |name: &str| -> i64 {
        let req = requests.get(name).copied().unwrap_or(0);
        clamp_i128_to_i64(i128::from(req) * fallback / 100)
    };
    let ratio_of = |s: &BTreeMap<String, i64>| -> Result<f64, HpaError> {
        utilization_ratio(s, &requests, target_utilization).map(|(r, _, _)| r)
    };
    let replicas = finish_with_unready_and_missing(
        &ctx.tolerances,
        current_replicas,
        ratio,
        &groups,
        samples,
        &fill,
        &ratio_of,
    )?;
    Ok(ReplicaProposal {
        replicas,
        usage_milli: raw,
        utilization: Some(utilization),
    })
}

/// Per-pod average-value metric (`calcPlainMetricReplicas`): Pods metrics
/// (pass `resource = ""`) and Resource metrics with an `AverageValue` target
/// (pass the resource name; `cpu` enables the CPU readiness rules).
/// `target_milli` is the per-pod target.
pub fn plain_metric_replicas(
    ctx: &CalcContext,
    current_replicas: i32,
    target_milli: i64,
    resource: &str,
    pods: &[Pod],
    metrics: &[PodMetric],
) -> Result<ReplicaProposal, HpaError> {
    check_target(target_milli)?;
    let by_pod = sample_map(metrics);
    if pods.is_empty() {
        return Err(HpaError::NoPods);
    }
    let groups = group_pods_in(pods, &by_pod, resource, &ctx.readiness, ctx.now_ms);
    let mut samples: BTreeMap<String, i64> = by_pod
        .iter()
        .map(|(k, m)| (k.to_string(), m.value_milli))
        .collect();
    for n in groups.ignored.iter().chain(groups.unready.iter()) {
        samples.remove(n.as_str());
    }
    if samples.is_empty() {
        return Err(HpaError::NoUsableMetrics);
    }
    let (ratio, usage) = usage_ratio(&samples, target_milli);
    let fill = |_: &str| -> i64 { target_milli };
    let ratio_of =
        |s: &BTreeMap<String, i64>| -> Result<f64, HpaError> { Ok(usage_ratio(s, target_milli).0) };
    let replicas = finish_with_unready_and_missing(
        &ctx.tolerances,
        current_replicas,
        ratio,
        &groups,
        samples,
        &fill,
        &ratio_of,
    )?;
    Ok(ReplicaProposal {
        replicas,
        usage_milli: usage,
        utilization: None,
    })
}

/// Resource metric with an `AverageValue` target (`GetRawResourceReplicas`):
/// like [`plain_metric_replicas`] but an empty sample set is an error first.
pub fn resource_average_value_replicas(
    ctx: &CalcContext,
    current_replicas: i32,
    target_milli: i64,
    resource: &str,
    pods: &[Pod],
    metrics: &[PodMetric],
) -> Result<ReplicaProposal, HpaError> {
    check_target(target_milli)?;
    if metrics.is_empty() {
        return Err(HpaError::NoMetrics {
            resource: resource.to_string(),
        });
    }
    plain_metric_replicas(ctx, current_replicas, target_milli, resource, pods, metrics)
}

/// `getUsageRatioReplicaCount`: the object/external `Value` rule.
pub fn usage_ratio_replica_count(
    tol: &Tolerances,
    current_replicas: i32,
    usage_ratio: f64,
    ready_pod_count: i64,
) -> i32 {
    if current_replicas != 0 {
        if tol.is_within(usage_ratio) {
            return current_replicas;
        }
        ceil_to_i32(usage_ratio * ready_pod_count as f64)
    } else {
        ceil_to_i32(usage_ratio)
    }
}

/// Object metric with a `Value` target (`GetObjectMetricReplicas`).
/// `ready_pod_count` is [`ready_pod_count`] of the target's pods.
pub fn object_value_replicas(
    tol: &Tolerances,
    current_replicas: i32,
    target_milli: i64,
    value_milli: i64,
    ready_pod_count: i64,
) -> Result<ReplicaProposal, HpaError> {
    check_target(target_milli)?;
    let ratio = value_milli as f64 / target_milli as f64;
    Ok(ReplicaProposal {
        replicas: usage_ratio_replica_count(tol, current_replicas, ratio, ready_pod_count),
        usage_milli: value_milli,
        utilization: None,
    })
}

fn average_value_proposal(
    tol: &Tolerances,
    status_replicas: i32,
    target_milli: i64,
    usage: i64,
) -> ReplicaProposal {
    let ratio = usage as f64 / (target_milli as f64 * f64::from(status_replicas));
    let mut replicas = status_replicas;
    if !tol.is_within(ratio) {
        replicas = ceil_to_i32(usage as f64 / target_milli as f64);
    }
    // Saturating: a usage of MaxInt64 stays MaxInt64, as in Go master.
    let usage_milli = (usage as f64 / f64::from(status_replicas)).ceil() as i64;
    ReplicaProposal {
        replicas,
        usage_milli,
        utilization: None,
    }
}

/// Object metric with an `AverageValue` target (`GetObjectPerPodMetricReplicas`).
/// `status_replicas` is the HPA's `status.currentReplicas`.
pub fn object_average_value_replicas(
    tol: &Tolerances,
    status_replicas: i32,
    target_milli: i64,
    value_milli: i64,
) -> Result<ReplicaProposal, HpaError> {
    check_target(target_milli)?;
    Ok(average_value_proposal(
        tol,
        status_replicas,
        target_milli,
        value_milli,
    ))
}

/// External metric with a `Value` target (`GetExternalMetricReplicas`). The
/// series values are summed, capping at MaxInt64 on positive overflow.
pub fn external_value_replicas(
    tol: &Tolerances,
    current_replicas: i32,
    target_milli: i64,
    values_milli: &[i64],
    ready_pod_count: i64,
) -> Result<ReplicaProposal, HpaError> {
    check_target(target_milli)?;
    let mut usage: i64 = 0;
    for &v in values_milli {
        if v > 0 && usage > i64::MAX - v {
            usage = i64::MAX;
            break;
        }
        usage = usage.saturating_add(v);
    }
    object_value_replicas(tol, current_replicas, target_milli, usage, ready_pod_count)
}

/// External metric with an `AverageValue` target
/// (`GetExternalPerPodMetricReplicas`). The series values are summed in
/// wrapping int64; a sum that turns negative becomes MaxInt64 (Go's overflow
/// check). `status_replicas` is the HPA's `status.currentReplicas`.
pub fn external_average_value_replicas(
    tol: &Tolerances,
    status_replicas: i32,
    target_milli: i64,
    values_milli: &[i64],
) -> Result<ReplicaProposal, HpaError> {
    check_target(target_milli)?;
    let mut usage: i64 = 0;
    for &v in values_milli {
        usage = usage.wrapping_add(v);
        if usage < 0 {
            usage = i64::MAX;
            break;
        }
    }
    Ok(average_value_proposal(
        tol,
        status_replicas,
        target_milli,
        usage,
    ))
}

/// One metric of an HPA spec with its current readings, for
/// [`replicas_for_metrics`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricSource<'a> {
    /// Resource metric, `Utilization` target.
    ResourceUtilization {
        /// Resource name (`cpu` enables the CPU readiness rules).
        resource: &'a str,
        /// Target utilization, percent of request.
        target_percent: i32,
        /// Pods matched by the selector.
        pods: &'a [Pod],
        /// Samples from the resource metrics API.
        metrics: &'a [PodMetric],
    },
    /// Resource metric, `AverageValue` target.
    ResourceAverageValue {
        /// Resource name.
        resource: &'a str,
        /// Per-pod target, milli-units.
        target_milli: i64,
        /// Pods matched by the selector.
        pods: &'a [Pod],
        /// Samples from the resource metrics API.
        metrics: &'a [PodMetric],
    },
    /// Pods metric, `AverageValue` target.
    PodsAverageValue {
        /// Per-pod target, milli-units.
        target_milli: i64,
        /// Pods matched by the selector.
        pods: &'a [Pod],
        /// Samples from the custom metrics API.
        metrics: &'a [PodMetric],
    },
    /// Object metric, `Value` target.
    ObjectValue {
        /// Target, milli-units.
        target_milli: i64,
        /// The object's metric value, milli-units.
        value_milli: i64,
        /// [`ready_pod_count`] of the scale target's pods.
        ready_pod_count: i64,
    },
    /// Object metric, `AverageValue` target.
    ObjectAverageValue {
        /// Per-pod target, milli-units.
        target_milli: i64,
        /// The object's metric value, milli-units.
        value_milli: i64,
    },
    /// External metric, `Value` target.
    ExternalValue {
        /// Target, milli-units.
        target_milli: i64,
        /// All returned series values, milli-units.
        values_milli: &'a [i64],
        /// [`ready_pod_count`] of the scale target's pods.
        ready_pod_count: i64,
    },
    /// External metric, `AverageValue` target.
    ExternalAverageValue {
        /// Per-pod target, milli-units.
        target_milli: i64,
        /// All returned series values, milli-units.
        values_milli: &'a [i64],
    },
}

/// One metric's proposal (`computeReplicasForMetric`). `spec_replicas` is the
/// scale target's `spec.replicas`; `status_replicas` (HPA
/// `status.currentReplicas`) is used by the `AverageValue` object/external kinds.
pub fn replicas_for_metric(
    ctx: &CalcContext,
    spec_replicas: i32,
    status_replicas: i32,
    metric: &MetricSource<'_>,
) -> Result<ReplicaProposal, HpaError> {
    let tol = &ctx.tolerances;
    match *metric {
        MetricSource::ResourceUtilization {
            resource,
            target_percent,
            pods,
            metrics,
        } => resource_utilization_replicas(
            ctx,
            spec_replicas,
            target_percent,
            resource,
            pods,
            metrics,
        ),
        MetricSource::ResourceAverageValue {
            resource,
            target_milli,
            pods,
            metrics,
        } => resource_average_value_replicas(
            ctx,
            spec_replicas,
            target_milli,
            resource,
            pods,
            metrics,
        ),
        MetricSource::PodsAverageValue {
            target_milli,
            pods,
            metrics,
        } => plain_metric_replicas(ctx, spec_replicas, target_milli, "", pods, metrics),
        MetricSource::ObjectValue {
            target_milli,
            value_milli,
            ready_pod_count,
        } => object_value_replicas(
            tol,
            spec_replicas,
            target_milli,
            value_milli,
            ready_pod_count,
        ),
        MetricSource::ObjectAverageValue {
            target_milli,
            value_milli,
        } => object_average_value_replicas(tol, status_replicas, target_milli, value_milli),
        MetricSource::ExternalValue {
            target_milli,
            values_milli,
            ready_pod_count,
        } => external_value_replicas(
            tol,
            spec_replicas,
            target_milli,
            values_milli,
            ready_pod_count,
        ),
        MetricSource::ExternalAverageValue {
            target_milli,
            values_milli,
        } => external_average_value_replicas(tol, status_replicas, target_milli, values_milli),
    }
}

/// The winning proposal over several metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsProposal {
    /// Index of the metric whose proposal won.
    pub metric_index: usize,
    /// The winning proposal.
    pub proposal: ReplicaProposal,
}

/// Combines per-metric results like `computeReplicasForMetrics`: the largest
/// proposal wins (the first one on ties). It is an error when every metric
/// failed, or when some failed and the winner would scale below
/// `spec_replicas` (never scale down on partial information).
pub fn combine_metric_proposals(
    spec_replicas: i32,
    results: &[Result<ReplicaProposal, HpaError>],
) -> Result<MetricsProposal, HpaError> {
    if results.is_empty() {
        return Err(HpaError::NoMetricSpecs);
    }
    let mut best: Option<MetricsProposal> = None;
    let mut invalid = 0usize;
    let mut first_err: Option<&HpaError> = None;
    for (i, r) in results.iter().enumerate() {
        match r {
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                }
                invalid += 1;
            }
            Ok(p) => {
                let replace = match &best {
                    None => true,
                    // Go: `replicas == 0 || proposal > replicas`.
                    Some(b) => b.proposal.replicas == 0 || p.replicas > b.proposal.replicas,
                };
                if replace {
                    best = Some(MetricsProposal {
                        metric_index: i,
                        proposal: *p,
                    });
                }
            }
        }
    }
    let err = || HpaError::InvalidMetrics {
        invalid,
        total: results.len(),
        first: first_err.map(|e| e.to_string()).unwrap_or_default(),
    };
    match best {
        None => Err(err()),
        Some(b) if invalid > 0 && b.proposal.replicas < spec_replicas => Err(err()),
        Some(b) => Ok(b),
    }
}

/// Evaluates every metric and combines them (multiple metrics: the largest
/// proposal wins). See [`combine_metric_proposals`].
pub fn replicas_for_metrics(
    ctx: &CalcContext,
    spec_replicas: i32,
    status_replicas: i32,
    metrics: &[MetricSource<'_>],
) -> Result<MetricsProposal, HpaError> {
    let results: Vec<_> = metrics
        .iter()
        .map(|m| replicas_for_metric(ctx, spec_replicas, status_replicas, m))
        .collect();
    combine_metric_proposals(spec_replicas, &results)
}

// ------------------------------------------------------------------ behavior

/// Kind of a scaling policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyType {
    /// Absolute number of pods per period.
    Pods,
    /// Percentage of the replicas at the start of the period.
    Percent,
}

/// One scaling policy (`HPAScalingPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingPolicy {
    /// Pods or Percent.
    #[serde(rename = "type")]
    pub policy_type: PolicyType,
    /// Pods, or percent.
    pub value: i32,
    /// Length of the look-back period, seconds.
    pub period_s: i32,
}

/// How to choose among the policies' limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectPolicy {
    /// The policy allowing the largest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// Scaling rules as written in `spec.behavior.scaleUp/scaleDown`, before API
/// defaulting: every field may be unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HpaScalingRules {
    /// Stabilization window, seconds.
    #[serde(default)]
    pub stabilization_window_s: Option<i32>,
    /// Policy selection.
    #[serde(default)]
    pub select_policy: Option<SelectPolicy>,
    /// Policies.
    #[serde(default)]
    pub policies: Option<Vec<ScalingPolicy>>,
}

/// `spec.behavior` before defaulting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HpaBehavior {
    /// Scale-up rules.
    #[serde(default)]
    pub scale_up: Option<HpaScalingRules>,
    /// Scale-down rules.
    #[serde(default)]
    pub scale_down: Option<HpaScalingRules>,
}

/// Scaling rules with every field resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingRules {
    /// Stabilization window, seconds.
    pub stabilization_window_s: i32,
    /// Policy selection.
    pub select_policy: SelectPolicy,
    /// Policies.
    pub policies: Vec<ScalingPolicy>,
}

/// `spec.behavior` with every field resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Behavior {
    /// Scale-up rules.
    pub scale_up: ScalingRules,
    /// Scale-down rules.
    pub scale_down: ScalingRules,
}

/// `GenerateHPAScaleUpRules`: unset fields take window 0, `Max`, and
/// `[Pods 4 / 15 s, Percent 100 / 15 s]`.
pub fn scale_up_rules_with_defaults(spec: Option<&HpaScalingRules>) -> ScalingRules {
    let spec = spec.cloned().unwrap_or_default();
    ScalingRules {
        stabilization_window_s: spec.stabilization_window_s.unwrap_or(0),
        select_policy: spec.select_policy.unwrap_or(SelectPolicy::Max),
        policies: spec.policies.unwrap_or_else(|| {
            vec![
                ScalingPolicy {
                    policy_type: PolicyType::Pods,
                    value: 4,
                    period_s: 15,
                },
                ScalingPolicy {
                    policy_type: PolicyType::Percent,
                    value: 100,
                    period_s: 15,
                },
            ]
        }),
    }
}

/// `GenerateHPAScaleDownRules` plus `maybeInitScaleDownStabilizationWindow`:
/// unset fields take `downscale_stabilization_s` (the controller flag), `Max`,
/// and `[Percent 100 / 15 s]`.
pub fn scale_down_rules_with_defaults(
    spec: Option<&HpaScalingRules>,
    downscale_stabilization_s: i32,
) -> ScalingRules {
    let spec = spec.cloned().unwrap_or_default();
    ScalingRules {
        stabilization_window_s: spec
            .stabilization_window_s
            .unwrap_or(downscale_stabilization_s),
        select_policy: spec.select_policy.unwrap_or(SelectPolicy::Max),
        policies: spec.policies.unwrap_or_else(|| {
            vec![ScalingPolicy {
                policy_type: PolicyType::Percent,
                value: 100,
                period_s: 15,
            }]
        }),
    }
}

impl Behavior {
    /// Applies API defaulting to a `spec.behavior`.
    pub fn from_spec(spec: &HpaBehavior, downscale_stabilization_s: i32) -> Behavior {
        Behavior {
            scale_up: scale_up_rules_with_defaults(spec.scale_up.as_ref()),
            scale_down: scale_down_rules_with_defaults(
                spec.scale_down.as_ref(),
                downscale_stabilization_s,
            ),
        }
    }
}

/// A past unstabilized recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Recommended replicas.
    pub replicas: i32,
    /// When it was recorded, Unix ms.
    pub timestamp_ms: i64,
}

/// A past scaling event in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleEvent {
    /// Pods added (scale-up list) or removed (scale-down list), positive.
    pub replica_change: i32,
    /// When it happened, Unix ms.
    pub timestamp_ms: i64,
    /// Older than the longest policy period when last checked; its slot may be
    /// reused.
    pub outdated: bool,
}

/// The controller's memory for one HPA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HpaState {
    /// Past unstabilized recommendations, in stored order.
    pub recommendations: Vec<Recommendation>,
    /// Past scale-up events.
    pub scale_up_events: Vec<ScaleEvent>,
    /// Past scale-down events.
    pub scale_down_events: Vec<ScaleEvent>,
}

/// Reason of the `ScalingLimited` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitingReason {
    /// Not limited.
    DesiredWithinRange,
    /// Capped by the scale-up rate limit.
    ScaleUpLimit,
    /// Capped at `maxReplicas`.
    TooManyReplicas,
    /// Capped by the scale-down rate limit.
    ScaleDownLimit,
    /// Raised to `minReplicas`.
    TooFewReplicas,
}

/// Reason of the `AbleToScale` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AbleToScaleReason {
    /// Stabilization left the recommendation unchanged.
    ReadyForNewScale,
    /// Stabilization lowered a scale-up.
    ScaleUpStabilized,
    /// Stabilization raised a scale-down.
    ScaleDownStabilized,
}

/// Sum of `replica_change` over events inside the last `period_s` seconds
/// (`getReplicasChangePerPeriod`).
pub fn replicas_change_per_period(period_s: i32, events: &[ScaleEvent], now_ms: i64) -> i32 {
    let total: i64 = events
        .iter()
        .filter(|e| within_window(e.timestamp_ms, i64::from(period_s), now_ms))
        .map(|e| i64::from(e.replica_change))
        .sum();
    clamp_i64_to_i32(total)
}

fn period_start(
    current: i32,
    period_s: i32,
    up: &[ScaleEvent],
    down: &[ScaleEvent],
    now_ms: i64,
) -> i64 {
    i64::from(current) - i64::from(replicas_change_per_period(period_s, up, now_ms))
        + i64::from(replicas_change_per_period(period_s, down, now_ms))
}

/// `calculateScaleUpLimitWithScalingRules`: the highest replica count the
/// scale-up policies allow (may be below `current`; callers raise it).
pub fn scale_up_limit(
    current: i32,
    scale_up_events: &[ScaleEvent],
    scale_down_events: &[ScaleEvent],
    rules: &ScalingRules,
    now_ms: i64,
) -> i32 {
    let (mut result, pick): (i64, fn(i64, i64) -> i64) = match rules.select_policy {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i64::from(i32::MAX), i64::min),
        SelectPolicy::Max => (i64::from(i32::MIN), i64::max),
    };
    for p in &rules.policies {
        let start = period_start(
            current,
            p.period_s,
            scale_up_events,
            scale_down_events,
            now_ms,
        );
        let proposed = match p.policy_type {
            PolicyType::Pods => start + i64::from(p.value),
            PolicyType::Percent => i64::from(ceil_to_i32(
                start as f64 * (1.0 + f64::from(p.value) / 100.0),
            )),
        };
        result = pick(result, clamp_i64_to_i32(proposed).into());
    }
    clamp_i64_to_i32(result)
}

/// `calculateScaleDownLimitWithBehaviors`: the lowest replica count the
/// scale-down policies allow (may be above `current`; callers lower it).
pub fn scale_down_limit(
    current: i32,
    scale_up_events: &[ScaleEvent],
    scale_down_events: &[ScaleEvent],
    rules: &ScalingRules,
    now_ms: i64,
) -> i32 {
    let (mut result, pick): (i64, fn(i64, i64) -> i64) = match rules.select_policy {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i64::from(i32::MIN), i64::max),
        SelectPolicy::Max => (i64::from(i32::MAX), i64::min),
    };
    for p in &rules.policies {
        let start = period_start(
            current,
            p.period_s,
            scale_up_events,
            scale_down_events,
            now_ms,
        );
        let proposed = match p.policy_type {
            PolicyType::Pods => start - i64::from(p.value),
            // int32() truncates toward zero.
            PolicyType::Percent => {
                (start as f64 * (1.0 - f64::from(p.value) / 100.0)) as i32 as i64
            }
        };
        result = pick(result, clamp_i64_to_i32(proposed).into());
    }
    clamp_i64_to_i32(result)
}

/// Replica bounds and the proposal being normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NormalizationArgs {
    /// The scale target's current replicas.
    pub current_replicas: i32,
    /// The proposal (the metric recommendation, or the stabilized one).
    pub desired_replicas: i32,
    /// `spec.minReplicas`.
    pub min_replicas: i32,
    /// `spec.maxReplicas`.
    pub max_replicas: i32,
}

/// `convertDesiredReplicasWithBehaviorRate`: applies the rate limits and
/// min/max bounds to a (stabilized) proposal.
pub fn convert_desired_replicas_with_behavior_rate(
    args: &NormalizationArgs,
    behavior: &Behavior,
    state: &HpaState,
    now_ms: i64,
) -> (i32, LimitingReason) {
    let current = args.current_replicas;
    let desired = args.desired_replicas;
    if desired > current {
        let limit = scale_up_limit(
            current,
            &state.scale_up_events,
            &state.scale_down_events,
            &behavior.scale_up,
            now_ms,
        )
        .max(current);
        let (maximum, reason) = if args.max_replicas > limit {
            (limit, LimitingReason::ScaleUpLimit)
        } else {
            (args.max_replicas, LimitingReason::TooManyReplicas)
        };
        if desired > maximum {
            return (maximum, reason);
        }
    } else if desired < current {
        let limit = scale_down_limit(
            current,
            &state.scale_up_events,
            &state.scale_down_events,
            &behavior.scale_down,
            now_ms,
        )
        .min(current);
        let (minimum, reason) = if args.min_replicas < limit {
            (limit, LimitingReason::ScaleDownLimit)
        } else {
            (args.min_replicas, LimitingReason::TooFewReplicas)
        };
        if desired < minimum {
            return (minimum, reason);
        }
    }
    (desired, LimitingReason::DesiredWithinRange)
}

fn store_recommendation(
    recs: &mut Vec<Recommendation>,
    old_index: Option<usize>,
    replicas: i32,
    now_ms: i64,
) {
    let rec = Recommendation {
        replicas,
        timestamp_ms: now_ms,
    };
    match old_index {
        Some(i) => recs[i] = rec,
        None => recs.push(rec),
    }
}

/// `stabilizeRecommendationWithBehaviors`: bounds the move from `current` by the
/// lowest recommendation inside the scale-up window and the highest inside the
/// scale-down window, then records `desired` (reusing the last slot outdated
/// for both windows). Returns the stabilized count and the Go reason
/// (`ScaleUpStabilized` when `desired >= current`, else `ScaleDownStabilized`).
pub fn stabilize_recommendation_with_behaviors(
    current: i32,
    desired: i32,
    behavior: &Behavior,
    recommendations: &mut Vec<Recommendation>,
    now_ms: i64,
) -> (i32, AbleToScaleReason) {
    let up_w = i64::from(behavior.scale_up.stabilization_window_s);
    let down_w = i64::from(behavior.scale_down.stabilization_window_s);
    let mut up = desired;
    let mut down = desired;
    let mut old = None;
    for (i, r) in recommendations.iter().enumerate() {
        let in_up = within_window(r.timestamp_ms, up_w, now_ms);
        let in_down = within_window(r.timestamp_ms, down_w, now_ms);
        if in_up {
            up = up.min(r.replicas);
        }
        if in_down {
            down = down.max(r.replicas);
        }
        if !in_up && !in_down {
            old = Some(i);
        }
    }
    let mut rec = current;
    if rec < up {
        rec = up;
    }
    if rec > down {
        rec = down;
    }
    store_recommendation(recommendations, old, desired, now_ms);
    let reason = if desired >= current {
        AbleToScaleReason::ScaleUpStabilized
    } else {
        AbleToScaleReason::ScaleDownStabilized
    };
    (rec, reason)
}

/// Outcome of a normalization pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Normalized {
    /// Final desired replicas.
    pub desired_replicas: i32,
    /// The recommendation after stabilization, before rate limits and bounds.
    pub stabilized_replicas: i32,
    /// `AbleToScale` condition reason.
    pub able_to_scale_reason: AbleToScaleReason,
    /// `ScalingLimited` condition reason.
    pub limiting_reason: LimitingReason,
}

/// `normalizeDesiredReplicasWithBehaviors`: stabilize, then rate-limit and
/// bound. `args.desired_replicas` is the metric recommendation; the
/// recommendation is recorded in `state`.
pub fn normalize_desired_replicas_with_behaviors(
    args: &NormalizationArgs,
    behavior: &Behavior,
    state: &mut HpaState,
    now_ms: i64,
) -> Normalized {
    let (stabilized, reason) = stabilize_recommendation_with_behaviors(
        args.current_replicas,
        args.desired_replicas,
        behavior,
        &mut state.recommendations,
        now_ms,
    );
    let able = if stabilized != args.desired_replicas {
        reason
    } else {
        AbleToScaleReason::ReadyForNewScale
    };
    let rate_args = NormalizationArgs {
        desired_replicas: stabilized,
        ..*args
    };
    let (desired, limiting) =
        convert_desired_replicas_with_behavior_rate(&rate_args, behavior, state, now_ms);
    Normalized {
        desired_replicas: desired,
        stabilized_replicas: stabilized,
        able_to_scale_reason: able,
        limiting_reason: limiting,
    }
}

/// Longest policy period of a rule set, seconds (0 without policies).
pub fn longest_policy_period_s(rules: &ScalingRules) -> i32 {
    rules
        .policies
        .iter()
        .map(|p| p.period_s)
        .max()
        .unwrap_or(0)
        .max(0)
}

/// Marks events older than the longest policy period as outdated, then stores
/// a new event of `replica_change` in the last outdated slot or appends it
/// (one direction of `storeScaleEvent`).
pub fn record_scale_event(
    rules: &ScalingRules,
    events: &mut Vec<ScaleEvent>,
    replica_change: i32,
    now_ms: i64,
) {
    let longest = i64::from(longest_policy_period_s(rules));
    for e in events.iter_mut() {
        if !within_window(e.timestamp_ms, longest, now_ms) {
            e.outdated = true;
        }
    }
    let old = events.iter().rposition(|e| e.outdated);
    let ev = ScaleEvent {
        replica_change,
        timestamp_ms: now_ms,
        outdated: false,
    };
    match old {
        Some(i) => events[i] = ev,
        None => events.push(ev),
    }
}

/// `storeScaleEvent`: records a rescale from `prev` to `new` in the scale-up
/// list (when `new > prev`) or the scale-down list (otherwise). Nothing is
/// stored when the HPA has no `spec.behavior` (`behavior == None`).
pub fn store_scale_event(
    behavior: Option<&Behavior>,
    state: &mut HpaState,
    prev_replicas: i32,
    new_replicas: i32,
    now_ms: i64,
) {
    let Some(b) = behavior else {
        return;
    };
    let change = clamp_i64_to_i32((i64::from(new_replicas) - i64::from(prev_replicas)).abs());
    if new_replicas > prev_replicas {
        record_scale_event(&b.scale_up, &mut state.scale_up_events, change, now_ms);
    } else {
        record_scale_event(&b.scale_down, &mut state.scale_down_events, change, now_ms);
    }
}

// ------------------------------------------------------------------ legacy

/// Legacy scale-up limit `int32(max(2 × current, 4))` (`calculateScaleUpLimit`).
pub fn legacy_scale_up_limit(current: i32) -> i32 {
    (LEGACY_SCALE_UP_LIMIT_FACTOR * f64::from(current)).max(LEGACY_SCALE_UP_LIMIT_MINIMUM) as i32
}

/// `stabilizeRecommendation` (no `spec.behavior`): the highest recommendation
/// inside the downscale window (and `desired`); records `desired` in the last
/// outdated slot or appends it.
pub fn legacy_stabilize_recommendation(
    desired: i32,
    downscale_window_s: i32,
    recommendations: &mut Vec<Recommendation>,
    now_ms: i64,
) -> i32 {
    let mut max = desired;
    let mut old = None;
    for (i, r) in recommendations.iter().enumerate() {
        if !within_window(r.timestamp_ms, i64::from(downscale_window_s), now_ms) {
            old = Some(i);
        } else if r.replicas > max {
            max = r.replicas;
        }
    }
    store_recommendation(recommendations, old, desired, now_ms);
    max
}

/// `convertDesiredReplicasWithRules` (no `spec.behavior`): min bound first,
/// then the legacy scale-up limit and max bound.
pub fn convert_desired_replicas_with_rules(args: &NormalizationArgs) -> (i32, LimitingReason) {
    let limit = legacy_scale_up_limit(args.current_replicas);
    let (maximum, reason) = if args.max_replicas > limit {
        (limit, LimitingReason::ScaleUpLimit)
    } else {
        (args.max_replicas, LimitingReason::TooManyReplicas)
    };
    if args.desired_replicas < args.min_replicas {
        return (args.min_replicas, LimitingReason::TooFewReplicas);
    }
    if args.desired_replicas > maximum {
        return (maximum, reason);
    }
    (args.desired_replicas, LimitingReason::DesiredWithinRange)
}

/// `normalizeDesiredReplicas` (no `spec.behavior`): legacy stabilization, then
/// [`convert_desired_replicas_with_rules`].
pub fn normalize_desired_replicas(
    args: &NormalizationArgs,
    downscale_window_s: i32,
    recommendations: &mut Vec<Recommendation>,
    now_ms: i64,
) -> Normalized {
    let stabilized = legacy_stabilize_recommendation(
        args.desired_replicas,
        downscale_window_s,
        recommendations,
        now_ms,
    );
    let able = if stabilized != args.desired_replicas {
        AbleToScaleReason::ScaleDownStabilized
    } else {
        AbleToScaleReason::ReadyForNewScale
    };
    let (desired, limiting) = convert_desired_replicas_with_rules(&NormalizationArgs {
        desired_replicas: stabilized,
        ..*args
    });
    Normalized {
        desired_replicas: desired,
        stabilized_replicas: stabilized,
        able_to_scale_reason: able,
        limiting_reason: limiting,
    }
}

// ------------------------------------------------------------------ vectors

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
    /// Other kinds: usage (see [`ReplicaProposal::usage_milli`]).
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

// ------------------------------------------------------------------ tests

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = VECTOR_NOW_MS;

    fn pod(name: &str, request: i64) -> Pod {
        Pod {
            name: name.into(),
            phase: PodPhase::Running,
            deleting: false,
            start_time_ms: Some(GO_ZERO_TIME_UNIX_MS),
            ready: Some(ReadyCondition {
                status: ConditionStatus::True,
                last_transition_ms: GO_ZERO_TIME_UNIX_MS,
            }),
            request_milli: Some(request),
        }
    }

    fn sample(name: &str, v: i64) -> PodMetric {
        PodMetric {
            pod: name.into(),
            value_milli: v,
            timestamp_ms: NOW,
            window_ms: 60_000,
        }
    }

    fn ctx() -> CalcContext {
        CalcContext {
            tolerances: Tolerances::default(),
            readiness: ReadinessConfig::default(),
            now_ms: NOW,
        }
    }

    #[test]
    fn resource_utilization_table() {
        // (usages, request per pod, target %, current, want replicas, want util)
        type Case = (&'static [i64], i64, i32, i32, i32, i32);
        let cases: &[Case] = &[
            (&[600, 1000, 1400], 2000, 30, 3, 5, 50),
            (&[100, 300, 500, 250, 250], 1000, 50, 5, 3, 28),
            (&[900, 1000, 1100], 2000, 50, 3, 3, 50), // exactly on target
            (&[1100, 1100, 1100], 2000, 50, 3, 3, 55), // ratio 1.1: inside tolerance
            (&[1200, 1200, 1200], 2000, 50, 3, 4, 60),
        ];
        for &(usages, request, target, current, want, util) in cases {
            let pods: Vec<Pod> = (0..usages.len())
                .map(|i| pod(&format!("p{i}"), request))
                .collect();
            let metrics: Vec<PodMetric> = usages
                .iter()
                .enumerate()
                .map(|(i, u)| sample(&format!("p{i}"), *u))
                .collect();
            let got =
                resource_utilization_replicas(&ctx(), current, target, "cpu", &pods, &metrics)
                    .unwrap();
            assert_eq!(
                (got.replicas, got.utilization),
                (want, Some(util)),
                "case {usages:?}"
            );
        }
    }

    #[test]
    fn tolerance_boundaries_are_inclusive() {
        let t = Tolerances::uniform(0.1);
        assert!(t.is_within(1.0));
        assert!(t.is_within(0.9));
        assert!(!t.is_within(0.89));
        assert!(!t.is_within(f64::NAN));
        let split = Tolerances {
            scale_down: 0.36,
            scale_up: 0.08,
        };
        assert!(split.is_within(0.64) && split.is_within(1.08) && !split.is_within(1.09));
    }

    #[test]
    fn calculator_errors() {
        let c = ctx();
        assert_eq!(
            resource_utilization_replicas(&c, 1, 50, "cpu", &[pod("a", 100)], &[]),
            Err(HpaError::NoMetrics {
                resource: "cpu".into()
            })
        );
        let mut no_req = pod("a", 0);
        no_req.request_milli = None;
        let err = resource_utilization_replicas(&c, 1, 50, "cpu", &[no_req], &[sample("a", 1)])
            .unwrap_err();
        assert!(err.to_string().contains("missing request for"), "{err}");
        assert_eq!(
            object_value_replicas(&c.tolerances, 1, 0, 5, 1),
            Err(HpaError::InvalidTarget(0))
        );
    }

    #[test]
    fn multiple_metrics_take_the_largest_and_guard_scale_down() {
        let p = |r| {
            Ok(ReplicaProposal {
                replicas: r,
                usage_milli: 0,
                utilization: None,
            })
        };
        let got = combine_metric_proposals(4, &[p(3), p(7), p(7), p(5)]).unwrap();
        assert_eq!((got.metric_index, got.proposal.replicas), (1, 7));
        // One invalid metric: scaling up is fine, scaling down is not.
        assert!(combine_metric_proposals(4, &[p(6), Err(HpaError::NoPods)]).is_ok());
        let err = combine_metric_proposals(4, &[p(2), Err(HpaError::NoPods)]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid metrics (1 invalid out of 2)"),
            "{err}"
        );
        assert!(combine_metric_proposals(4, &[Err(HpaError::NoPods)]).is_err());
        assert_eq!(
            combine_metric_proposals(4, &[]),
            Err(HpaError::NoMetricSpecs)
        );
    }

    #[test]
    fn rate_limit_table() {
        let behavior =
            Behavior::from_spec(&HpaBehavior::default(), DEFAULT_DOWNSCALE_STABILIZATION_S);
        // (current, desired, min, max, want, reason)
        use LimitingReason::*;
        let cases = [
            (5, 7, 3, 8, 7, DesiredWithinRange),
            (5, 20, 1, 100, 10, ScaleUpLimit), // max(5 + 4, 5 * 2)
            (5, 20, 1, 8, 8, TooManyReplicas),
            (5, 1, 3, 8, 3, TooFewReplicas),
            (5, 0, 0, 8, 0, DesiredWithinRange), // 100 % down per 15 s
        ];
        for (current, desired, min, max, want, reason) in cases {
            let args = NormalizationArgs {
                current_replicas: current,
                desired_replicas: desired,
                min_replicas: min,
                max_replicas: max,
            };
            assert_eq!(
                convert_desired_replicas_with_behavior_rate(
                    &args,
                    &behavior,
                    &HpaState::default(),
                    NOW
                ),
                (want, reason),
                "{args:?}"
            );
        }
    }

    #[test]
    fn window_boundary_is_exclusive() {
        assert!(within_window(NOW - 59_999, 60, NOW));
        assert!(!within_window(NOW - 60_000, 60, NOW));
        let events = [ScaleEvent {
            replica_change: 3,
            timestamp_ms: NOW - 60_000,
            outdated: false,
        }];
        assert_eq!(replicas_change_per_period(60, &events, NOW), 0);
        assert_eq!(replicas_change_per_period(61, &events, NOW), 3);
    }

    #[test]
    fn legacy_table() {
        use LimitingReason::*;
        let cases = [
            (5, 7, 3, 8, 7, DesiredWithinRange),
            (1, 10, 1, 20, 4, ScaleUpLimit),
            (3, 10, 1, 5, 5, TooManyReplicas),
            (3, 0, 1, 5, 1, TooFewReplicas),
        ];
        for (current, desired, min, max, want, reason) in cases {
            let args = NormalizationArgs {
                current_replicas: current,
                desired_replicas: desired,
                min_replicas: min,
                max_replicas: max,
            };
            assert_eq!(convert_desired_replicas_with_rules(&args), (want, reason));
        }
    }

    fn arb_pod() -> impl Strategy<Value = (Pod, Option<i64>)> {
        (
            0u8..4,
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(0i64..400),
            proptest::option::of(0i64..400),
            proptest::option::of(1i64..5000),
            proptest::option::of(0i64..10_000),
        )
            .prop_map(
                |(phase, ready, deleting, start_age, ltt_age, request, usage)| {
                    let phase = [
                        PodPhase::Running,
                        PodPhase::Running,
                        PodPhase::Pending,
                        PodPhase::Failed,
                    ][phase as usize];
                    let ts = |a: Option<i64>| a.map_or(GO_ZERO_TIME_UNIX_MS, |a| NOW - a * 1000);
                    (
                        Pod {
                            name: String::new(),
                            phase,
                            deleting,
                            start_time_ms: Some(ts(start_age)),
                            ready: Some(ReadyCondition {
                                status: if ready {
                                    ConditionStatus::True
                                } else {
                                    ConditionStatus::False
                                },
                                last_transition_ms: ts(ltt_age),
                            }),
                            request_milli: request,
                        },
                        usage,
                    )
                },
            )
    }

    fn build(specs: Vec<(Pod, Option<i64>)>) -> (Vec<Pod>, Vec<PodMetric>) {
        let mut pods = Vec::new();
        let mut metrics = Vec::new();
        for (i, (mut p, usage)) in specs.into_iter().enumerate() {
            p.name = format!("pod-{i}");
            if let Some(u) = usage {
                metrics.push(sample(&p.name, u));
            }
            pods.push(p);
        }
        (pods, metrics)
    }

    proptest! {
        #[test]
        fn calculator_is_total_and_deterministic(
            specs in proptest::collection::vec(arb_pod(), 0..8),
            target in 1i32..300,
            current in 1i32..20,
            tol in 0.0f64..0.5,
        ) {
            let (pods, metrics) = build(specs);
            let c = CalcContext { tolerances: Tolerances::uniform(tol), ..ctx() };
            let a = resource_utilization_replicas(&c, current, target, "cpu", &pods, &metrics);
            prop_assert_eq!(&a, &resource_utilization_replicas(&c, current, target, "cpu", &pods, &metrics));
            if let Ok(p) = &a {
                prop_assert!(p.replicas >= 0);
                prop_assert!(p.utilization.unwrap() >= 0 && p.usage_milli >= 0);
            }
            let b = plain_metric_replicas(&c, current, i64::from(target) * 100, "", &pods, &metrics);
            prop_assert_eq!(&b, &plain_metric_replicas(&c, current, i64::from(target) * 100, "", &pods, &metrics));
            if let Ok(p) = b { prop_assert!(p.replicas >= 0 && p.usage_milli >= 0); }
        }

        #[test]
        fn within_tolerance_keeps_current(
            n in 1usize..10, cores in 1i64..50, target in 1i32..200, current in 1i32..50,
        ) {
            // Every pod exactly on target keeps the current count.
            let request = cores * 100;
            let usage = cores * i64::from(target);
            let pods: Vec<Pod> = (0..n).map(|i| pod(&format!("p{i}"), request)).collect();
            let metrics: Vec<PodMetric> = (0..n).map(|i| sample(&format!("p{i}"), usage)).collect();
            let got = resource_utilization_replicas(&ctx(), current, target, "cpu", &pods, &metrics).unwrap();
            prop_assert_eq!(got.replicas, current);
        }

        #[test]
        fn value_kinds_never_nan_or_panic(
            value in any::<i64>(), values in proptest::collection::vec(any::<i64>(), 0..4),
            target in 1i64..i64::MAX, current in 0i32..100, ready in 0i64..100,
        ) {
            let t = Tolerances::default();
            for r in [
                object_value_replicas(&t, current, target, value, ready),
                object_average_value_replicas(&t, current.max(1), target, value),
                external_value_replicas(&t, current, target, &values, ready),
                external_average_value_replicas(&t, current.max(1), target, &values),
            ] {
                let r = r.unwrap();
                prop_assert_eq!(r, r);
            }
        }

        #[test]
        fn normalization_stays_within_bounds(
            min in 0i32..20, span in 0i32..50, off in 0i32..50, desired in -5i32..200,
            history in proptest::collection::vec((0i32..200, 0i64..1000), 0..6),
            up_events in proptest::collection::vec((1i32..20, 0i64..200), 0..4),
            down_events in proptest::collection::vec((1i32..20, 0i64..200), 0..4),
            up_w in 0i32..400, down_w in 0i32..400,
            policies in proptest::collection::vec((any::<bool>(), 1i32..200, 1i32..120), 0..3),
            select in 0u8..3,
        ) {
            let max = min + span;
            let current = min + off.min(span);
            let select = [SelectPolicy::Max, SelectPolicy::Min, SelectPolicy::Disabled][select as usize];
            let policies: Vec<ScalingPolicy> = policies.into_iter().map(|(pods, value, period_s)| ScalingPolicy {
                policy_type: if pods { PolicyType::Pods } else { PolicyType::Percent }, value, period_s,
            }).collect();
            let rules = |w| ScalingRules { stabilization_window_s: w, select_policy: select, policies: policies.clone() };
            let behavior = Behavior { scale_up: rules(up_w), scale_down: rules(down_w) };
            let ev = |v: &Vec<(i32, i64)>| v.iter().map(|&(c, a)| ScaleEvent { replica_change: c, timestamp_ms: NOW - a * 1000, outdated: false }).collect();
            let mut state = HpaState {
                recommendations: history.iter().map(|&(r, a)| Recommendation { replicas: r, timestamp_ms: NOW - a * 1000 }).collect(),
                scale_up_events: ev(&up_events),
                scale_down_events: ev(&down_events),
            };
            let args = NormalizationArgs { current_replicas: current, desired_replicas: desired, min_replicas: min, max_replicas: max };
            let before = state.clone();
            let n = normalize_desired_replicas_with_behaviors(&args, &behavior, &mut state, NOW);
            prop_assert!(n.desired_replicas >= min && n.desired_replicas <= max, "{:?}", n);
            let mut again = before.clone();
            prop_assert_eq!(n, normalize_desired_replicas_with_behaviors(&args, &behavior, &mut again, NOW));
            prop_assert_eq!(&state, &again);
            prop_assert!(state.recommendations.len() <= before.recommendations.len() + 1);

            let mut recs = before.recommendations.clone();
            let l = normalize_desired_replicas(&args, down_w, &mut recs, NOW);
            prop_assert!(l.desired_replicas >= min && l.desired_replicas <= max, "{:?}", l);
        }

        #[test]
        fn zero_windows_make_stabilization_the_identity(
            current in 0i32..100, desired in 0i32..100,
            history in proptest::collection::vec((0i32..200, 0i64..1000), 0..6),
        ) {
            let behavior = Behavior {
                scale_up: scale_up_rules_with_defaults(None),
                scale_down: scale_down_rules_with_defaults(None, 0),
            };
            let mut recs: Vec<Recommendation> = history.iter().map(|&(r, a)| Recommendation { replicas: r, timestamp_ms: NOW - a * 1000 }).collect();
            let (got, _) = stabilize_recommendation_with_behaviors(current, desired, &behavior, &mut recs, NOW);
            prop_assert_eq!(got, desired);
        }

        #[test]
        fn stored_events_reuse_outdated_slots(
            events in proptest::collection::vec((1i32..20, 0i64..200), 0..6), period in 1i32..120, change in 0i32..20,
        ) {
            let rules = ScalingRules { stabilization_window_s: 0, select_policy: SelectPolicy::Max, policies: vec![ScalingPolicy { policy_type: PolicyType::Pods, value: 1, period_s: period }] };
            let mut evs: Vec<ScaleEvent> = events.iter().map(|&(c, a)| ScaleEvent { replica_change: c, timestamp_ms: NOW - a * 1000, outdated: false }).collect();
            let any_old = evs.iter().any(|e| !within_window(e.timestamp_ms, i64::from(period), NOW));
            let before = evs.len();
            record_scale_event(&rules, &mut evs, change, NOW);
            prop_assert_eq!(evs.len(), if any_old { before } else { before + 1 });
            prop_assert_eq!(evs.iter().filter(|e| e.timestamp_ms == NOW && e.replica_change == change && !e.outdated).count() >= 1, true);
        }
    }
}
