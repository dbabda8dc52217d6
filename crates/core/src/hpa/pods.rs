//! Pods and their samples: readiness, and the grouping of pods into ready,
//! unready, missing and ignored that the replica calculator starts from.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use super::{Tolerances, DEFAULT_CPU_INITIALIZATION_PERIOD_S, DEFAULT_INITIAL_READINESS_DELAY_S};

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
    /// `lastTransitionTime`, Unix ms ([`GO_ZERO_TIME_UNIX_MS`](super::GO_ZERO_TIME_UNIX_MS) for Go's zero time).
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

pub(super) fn sample_map(metrics: &[PodMetric]) -> BTreeMap<&str, &PodMetric> {
    // Later samples for the same pod replace earlier ones.
    metrics.iter().map(|m| (m.pod.as_str(), m)).collect()
}

pub(super) fn group_pods_in(
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
