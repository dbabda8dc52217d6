//! The per-metric replica calculator (`ReplicaCalculator`) and the combination
//! of several metrics' proposals into one.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::pods::{group_pods_in, sample_map, CalcContext, Pod, PodGroups, PodMetric};
use super::{ceil_to_i32, clamp_i128_to_i64, clamp_i64_to_i32, HpaError, Tolerances};

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
/// `ready_pod_count` is [`ready_pod_count`](super::pods::ready_pod_count) of the target's pods.
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
        /// [`ready_pod_count`](super::pods::ready_pod_count) of the scale target's pods.
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
        /// [`ready_pod_count`](super::pods::ready_pod_count) of the scale target's pods.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpa::pods::{ConditionStatus, PodPhase, ReadinessConfig, ReadyCondition};
    use crate::hpa::{GO_ZERO_TIME_UNIX_MS, VECTOR_NOW_MS};
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
    }
}
