//! Target tracking, Kubernetes-HPA compatible: a thin adapter from the
//! policy config and the [`Observation`] to [`crate::hpa`], which owns the
//! replica calculation (utilization / average-value / value targets,
//! tolerance, missing-metric and not-ready rules, largest proposal over
//! metrics), `behavior` (stabilization windows, rate policies, selectPolicy)
//! and the legacy normalization when no `behavior` is given.
//!
//! Inputs: resource and pods metrics read `Observation::instances` and
//! `Observation::instance_metrics[metric]`; object and external metrics read
//! the newest sample of `Observation::metrics[metric]` (stale after
//! `max_sample_age_seconds`). Values are converted to milli-units. When no
//! instances are listed, object/external `Value` targets count every current
//! instance as ready. The controller memory comes from
//! `Observation::hpa_state` and the updated memory is returned in
//! `Decision::hpa_state` (recording the scale event, as the HPA controller
//! does once it has rescaled).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::check_metric;
use crate::hpa::{
    self, Behavior, CalcContext, HpaBehavior, MetricSource, NormalizationArgs, ReadinessConfig,
    Tolerances,
};
use crate::observation::{Decision, Observation};
use crate::validate::Violations;

const NAME: &str = "target_tracking";

fn d_age() -> i64 {
    300
}

/// What a metric is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetricTarget {
    /// Resource metric, average utilization in percent of the request.
    Utilization {
        /// Target percent, `1..=1000`.
        average_utilization_percent: i32,
    },
    /// Resource metric, average value per instance.
    ResourceAverageValue {
        /// Target per instance, `> 0`.
        average_value: f64,
    },
    /// Pods metric, average value per instance.
    AverageValue {
        /// Target per instance, `> 0`.
        average_value: f64,
    },
    /// Object metric, total value.
    ObjectValue {
        /// Target, `> 0`.
        value: f64,
    },
    /// Object metric, value per instance.
    ObjectAverageValue {
        /// Target per instance, `> 0`.
        average_value: f64,
    },
    /// External metric, total value.
    ExternalValue {
        /// Target, `> 0`.
        value: f64,
    },
    /// External metric, value per instance.
    ExternalAverageValue {
        /// Target per instance, `> 0`.
        average_value: f64,
    },
}

/// One tracked metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackedMetric {
    /// Metric name (resource name for resource metrics).
    pub metric: String,
    /// Its target.
    pub target: MetricTarget,
}

/// The target tracking policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetTrackingPolicy {
    /// Metrics, at least one; the largest proposal wins.
    pub metrics: Vec<TrackedMetric>,
    /// Tolerance as a fraction, both directions (default 0.1).
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// HPA `spec.behavior`; `None` uses the legacy normalization.
    #[serde(default)]
    pub behavior: Option<HpaBehavior>,
    /// Downscale stabilization of the legacy path and the default of
    /// `behavior.scale_down`, seconds (default 300).
    #[serde(default)]
    pub downscale_stabilization_seconds: Option<i32>,
    /// Oldest usable object/external sample, seconds (default 300).
    #[serde(default = "d_age")]
    pub max_sample_age_seconds: i64,
}

fn milli(x: f64) -> i64 {
    let m = (x * 1000.0).round();
    if m.is_nan() {
        0
    } else {
        m.clamp(i64::MIN as f64, i64::MAX as f64) as i64
    }
}

impl TargetTrackingPolicy {
    /// Records every violation under `prefix`.
    pub fn validate(&self, prefix: &str, v: &mut Violations) {
        if self.metrics.is_empty() {
            v.push(format!("{prefix}.metrics"), "must not be empty");
        }
        for (i, m) in self.metrics.iter().enumerate() {
            let f = |n: &str| format!("{prefix}.metrics[{i}].{n}");
            check_metric(v, &f("metric"), &m.metric);
            match m.target {
                MetricTarget::Utilization {
                    average_utilization_percent: p,
                } => v.check_i64(
                    &f("target.average_utilization_percent"),
                    i64::from(p),
                    1,
                    1000,
                ),
                MetricTarget::ObjectValue { value } | MetricTarget::ExternalValue { value } => {
                    if !(value.is_finite() && value > 0.0) {
                        v.push(f("target.value"), "must be a number > 0");
                    }
                }
                MetricTarget::ResourceAverageValue { average_value }
                | MetricTarget::AverageValue { average_value }
                | MetricTarget::ObjectAverageValue { average_value }
                | MetricTarget::ExternalAverageValue { average_value } => {
                    if !(average_value.is_finite() && average_value > 0.0) {
                        v.push(f("target.average_value"), "must be a number > 0");
                    }
                }
            }
        }
        if let Some(t) = self.tolerance {
            v.check_f64(&format!("{prefix}.tolerance"), t, 0.0, 1.0);
        }
        if let Some(s) = self.downscale_stabilization_seconds {
            v.check_i64(
                &format!("{prefix}.downscale_stabilization_seconds"),
                i64::from(s),
                0,
                3600,
            );
        }
        if let Some(b) = &self.behavior {
            for (dir, r) in [("scale_up", &b.scale_up), ("scale_down", &b.scale_down)] {
                let Some(r) = r else { continue };
                let f = |n: &str| format!("{prefix}.behavior.{dir}.{n}");
                if let Some(w) = r.stabilization_window_s {
                    v.check_i64(&f("stabilization_window_s"), i64::from(w), 0, 3600);
                }
                for (j, p) in r.policies.iter().flatten().enumerate() {
                    v.check_i64(
                        &f(&format!("policies[{j}].value")),
                        i64::from(p.value),
                        1,
                        i64::from(i32::MAX),
                    );
                    v.check_i64(
                        &f(&format!("policies[{j}].period_s")),
                        i64::from(p.period_s),
                        1,
                        1800,
                    );
                }
            }
        }
        v.check_i64(
            &format!("{prefix}.max_sample_age_seconds"),
            self.max_sample_age_seconds,
            1,
            86_400,
        );
    }

    /// Evaluates the policy (see the module docs).
    pub fn decide(&self, obs: &Observation) -> Decision {
        let b = obs.bounds;
        let current = b.desired;
        let cur32 = current.clamp(0, i64::from(i32::MAX)) as i32;
        let ctx = CalcContext {
            tolerances: Tolerances::uniform(self.tolerance.unwrap_or(hpa::DEFAULT_TOLERANCE)),
            readiness: ReadinessConfig::default(),
            now_ms: obs.now_ms,
        };
        let ready = if obs.instances.is_empty() {
            current
        } else {
            hpa::ready_pod_count(&obs.instances)
        };
        let empty = Vec::new();
        // Newest fresh sample values (milli) per object/external metric.
        let latest: Vec<Option<i64>> = self
            .metrics
            .iter()
            .map(|m| {
                obs.metrics
                    .get(&m.metric)
                    .and_then(|s| s.iter().max_by_key(|x| x.ts_ms))
                    .filter(|x| {
                        x.value.is_finite()
                            && obs.now_ms - x.ts_ms <= self.max_sample_age_seconds * 1000
                    })
                    .map(|x| milli(x.value))
            })
            .collect();
        let singles: Vec<[i64; 1]> = latest.iter().map(|l| [l.unwrap_or(0)]).collect();
        let mut results = Vec::with_capacity(self.metrics.len());
        for (i, m) in self.metrics.iter().enumerate() {
            let pm = obs.instance_metrics.get(&m.metric).unwrap_or(&empty);
            let pods = obs.instances.as_slice();
            let src = match m.target {
                MetricTarget::Utilization {
                    average_utilization_percent,
                } => MetricSource::ResourceUtilization {
                    resource: &m.metric,
                    target_percent: average_utilization_percent,
                    pods,
                    metrics: pm,
                },
                MetricTarget::ResourceAverageValue { average_value } => {
                    MetricSource::ResourceAverageValue {
                        resource: &m.metric,
                        target_milli: milli(average_value),
                        pods,
                        metrics: pm,
                    }
                }
                MetricTarget::AverageValue { average_value } => MetricSource::PodsAverageValue {
                    target_milli: milli(average_value),
                    pods,
                    metrics: pm,
                },
                _ if latest[i].is_none() => {
                    results.push(Err(hpa::HpaError::NoMetrics {
                        resource: m.metric.clone(),
                    }));
                    continue;
                }
                MetricTarget::ObjectValue { value } => MetricSource::ObjectValue {
                    target_milli: milli(value),
                    value_milli: singles[i][0],
                    ready_pod_count: ready,
                },
                MetricTarget::ObjectAverageValue { average_value } => {
                    MetricSource::ObjectAverageValue {
                        target_milli: milli(average_value),
                        value_milli: singles[i][0],
                    }
                }
                MetricTarget::ExternalValue { value } => MetricSource::ExternalValue {
                    target_milli: milli(value),
                    values_milli: &singles[i],
                    ready_pod_count: ready,
                },
                MetricTarget::ExternalAverageValue { average_value } => {
                    MetricSource::ExternalAverageValue {
                        target_milli: milli(average_value),
                        values_milli: &singles[i],
                    }
                }
            };
            results.push(hpa::replicas_for_metric(&ctx, cur32, cur32, &src));
        }
        let best = match hpa::combine_metric_proposals(cur32, &results) {
            Ok(b) => b,
            Err(e) => {
                return Decision::no_data(
                    current,
                    NAME,
                    format!("Cannot compute replicas ({e}): holding"),
                )
            }
        };
        let mut state = obs.hpa_state.clone();
        let args = NormalizationArgs {
            current_replicas: cur32,
            desired_replicas: best.proposal.replicas,
            min_replicas: b.min.clamp(0, i64::from(i32::MAX)) as i32,
            max_replicas: b.max.clamp(0, i64::from(i32::MAX)) as i32,
        };
        let window = self
            .downscale_stabilization_seconds
            .unwrap_or(hpa::DEFAULT_DOWNSCALE_STABILIZATION_S);
        let behavior = self
            .behavior
            .as_ref()
            .map(|bh| Behavior::from_spec(bh, window));
        let n = match &behavior {
            Some(bh) => {
                hpa::normalize_desired_replicas_with_behaviors(&args, bh, &mut state, obs.now_ms)
            }
            None => hpa::normalize_desired_replicas(
                &args,
                window,
                &mut state.recommendations,
                obs.now_ms,
            ),
        };
        if n.desired_replicas != cur32 {
            hpa::store_scale_event(
                behavior.as_ref(),
                &mut state,
                cur32,
                n.desired_replicas,
                obs.now_ms,
            );
        }
        let mut inputs = BTreeMap::new();
        inputs.insert("metric_index".into(), best.metric_index as f64);
        inputs.insert("recommended".into(), f64::from(best.proposal.replicas));
        inputs.insert("stabilized".into(), f64::from(n.stabilized_replicas));
        inputs.insert("needed".into(), f64::from(n.desired_replicas));
        inputs.insert("usage".into(), best.proposal.usage_milli as f64 / 1000.0);
        if let Some(u) = best.proposal.utilization {
            inputs.insert("utilization_pct".into(), f64::from(u));
        }
        let metric = &self.metrics[best.metric_index].metric;
        let mut d = Decision::to_target(
            b,
            i64::from(n.desired_replicas),
            NAME,
            format!(
                "Metric {metric} recommends {} replicas (stabilized {}, {:?}, {:?})",
                best.proposal.replicas,
                n.stabilized_replicas,
                n.able_to_scale_reason,
                n.limiting_reason
            ),
            1.0,
            inputs,
        );
        d.hpa_state = Some(state);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpa::{HpaScalingRules, PolicyType, ScalingPolicy, SelectPolicy};
    use crate::observation::{Action, PoolBounds, Sample};

    const NOW: i64 = 1_700_000_000_000;

    fn policy(target: MetricTarget) -> TargetTrackingPolicy {
        TargetTrackingPolicy {
            metrics: vec![TrackedMetric {
                metric: "custom.requests".into(),
                target,
            }],
            tolerance: None,
            behavior: None,
            downscale_stabilization_seconds: None,
            max_sample_age_seconds: 300,
        }
    }

    fn obs(desired: i64, value: Option<f64>) -> Observation {
        let mut o = Observation::new(
            NOW,
            PoolBounds {
                min: 1,
                max: 100,
                desired,
            },
        );
        if let Some(v) = value {
            o.metrics.insert(
                "custom.requests".into(),
                vec![Sample {
                    ts_ms: NOW - 1000,
                    value: v,
                }],
            );
        }
        o
    }

    #[test]
    fn external_value_tolerance_boundaries() {
        let p = policy(MetricTarget::ExternalValue { value: 100.0 });
        // (current, value, want): ratio within [0.9, 1.1] holds.
        let cases = [
            (10, 110.0, 10),
            (10, 110.1, 12), // ratio 1.101 × 10 ready → ceil(11.01)
            (10, 90.0, 10),
            // Scale-down is stabilized by the 300 s legacy window: the
            // recommendation is recorded, the highest in the window (this
            // one) is used on the first call.
            (10, 50.0, 5),
        ];
        for (cur, v, want) in cases {
            let d = p.decide(&obs(cur, Some(v)));
            assert_eq!(d.target, want, "{cur} {v}: {}", d.reason);
            assert!(d.hpa_state.is_some());
        }
    }

    #[test]
    fn average_value_and_legacy_scale_up_limit() {
        let p = policy(MetricTarget::ExternalAverageValue {
            average_value: 10.0,
        });
        // 1000 / 10 = 100 replicas, but legacy limits a step to max(2 × 3, 4) = 6.
        let d = p.decide(&obs(3, Some(1000.0)));
        assert_eq!((d.action, d.target), (Action::ScaleUp, 6));
    }

    #[test]
    fn downscale_is_stabilized_by_remembered_recommendations() {
        let p = policy(MetricTarget::ExternalValue { value: 100.0 });
        let mut o = obs(10, Some(200.0));
        o.bounds.desired = 10;
        let first = p.decide(&o);
        assert_eq!(first.target, 20);
        // 60 s later the load is gone, but 20 was recommended within 300 s.
        let mut o2 = obs(20, Some(10.0));
        o2.now_ms = NOW + 60_000;
        o2.metrics.get_mut("custom.requests").unwrap()[0].ts_ms = NOW + 59_000;
        o2.hpa_state = first.hpa_state.unwrap();
        assert_eq!(p.decide(&o2).target, 20);
        // After the window only the low recommendation is left.
        let mut o3 = o2.clone();
        o3.now_ms = NOW + 60_000 + 300_000;
        o3.metrics.get_mut("custom.requests").unwrap()[0].ts_ms = o3.now_ms - 1000;
        let d = p.decide(&o3);
        assert_eq!(d.target, 2, "{}", d.reason);
    }

    #[test]
    fn behavior_rate_policy_limits_scale_up() {
        let mut p = policy(MetricTarget::ExternalValue { value: 100.0 });
        p.behavior = Some(HpaBehavior {
            scale_up: Some(HpaScalingRules {
                stabilization_window_s: Some(0),
                select_policy: Some(SelectPolicy::Max),
                policies: Some(vec![ScalingPolicy {
                    policy_type: PolicyType::Pods,
                    value: 2,
                    period_s: 60,
                }]),
            }),
            scale_down: None,
        });
        let d = p.decide(&obs(10, Some(1000.0)));
        assert_eq!(d.target, 12);
        let ev = &d.hpa_state.as_ref().unwrap().scale_up_events;
        assert_eq!(ev.len(), 1);
        // 30 s later the period still holds the +2: no further growth.
        let mut o = obs(12, Some(1000.0));
        o.now_ms += 30_000;
        o.metrics.get_mut("custom.requests").unwrap()[0].ts_ms = o.now_ms;
        o.hpa_state = d.hpa_state.unwrap();
        assert_eq!(p.decide(&o).target, 12);
    }

    #[test]
    fn missing_or_stale_metric_holds() {
        let p = policy(MetricTarget::ExternalValue { value: 100.0 });
        let d = p.decide(&obs(10, None));
        assert!(d.data_missing && d.target == 10, "{}", d.reason);
        let mut o = obs(10, Some(1.0));
        o.metrics.get_mut("custom.requests").unwrap()[0].ts_ms = NOW - 300_001;
        assert!(p.decide(&o).data_missing);
    }

    #[test]
    fn validation_reports_everything() {
        let mut p = policy(MetricTarget::Utilization {
            average_utilization_percent: 0,
        });
        p.metrics[0].metric = "bogus".into();
        p.tolerance = Some(-0.1);
        let mut v = Violations::default();
        p.validate("policy", &mut v);
        let fields: Vec<&str> = v.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "policy.metrics[0].metric",
                "policy.metrics[0].target.average_utilization_percent",
                "policy.tolerance",
            ]
        );
    }

    fn rules() -> impl proptest::strategy::Strategy<Value = Option<HpaScalingRules>> {
        use proptest::prelude::*;
        let policy = (
            prop_oneof![Just(PolicyType::Pods), Just(PolicyType::Percent)],
            1i32..300,
            1i32..1800,
        )
            .prop_map(|(policy_type, value, period_s)| ScalingPolicy {
                policy_type,
                value,
                period_s,
            });
        proptest::option::of(
            (
                proptest::option::of(0i32..3600),
                proptest::option::of(prop_oneof![
                    Just(SelectPolicy::Max),
                    Just(SelectPolicy::Min)
                ]),
                proptest::option::of(proptest::collection::vec(policy, 1..3)),
            )
                .prop_map(|(w, select_policy, policies)| HpaScalingRules {
                    stabilization_window_s: w,
                    select_policy,
                    policies,
                }),
        )
    }

    fn spec() -> impl proptest::strategy::Strategy<Value = TargetTrackingPolicy> {
        use proptest::prelude::*;
        let target = prop_oneof![
            (0.1f64..1000.0).prop_map(|value| MetricTarget::ExternalValue { value }),
            (0.1f64..1000.0).prop_map(|v| MetricTarget::ExternalAverageValue { average_value: v }),
            (0.1f64..1000.0).prop_map(|value| MetricTarget::ObjectValue { value }),
            (0.1f64..1000.0).prop_map(|v| MetricTarget::ObjectAverageValue { average_value: v }),
        ];
        (
            target,
            proptest::option::of(0.0f64..0.5),
            proptest::option::of((rules(), rules()).prop_map(|(scale_up, scale_down)| {
                HpaBehavior {
                    scale_up,
                    scale_down,
                }
            })),
            proptest::option::of(0i32..3600),
        )
            .prop_map(
                |(target, tolerance, behavior, window)| TargetTrackingPolicy {
                    metrics: vec![TrackedMetric {
                        metric: "custom.requests".into(),
                        target,
                    }],
                    tolerance,
                    behavior,
                    downscale_stabilization_seconds: window,
                    max_sample_age_seconds: 300,
                },
            )
    }

    proptest::proptest! {
        /// For any valid spec and observation: the target stays within the
        /// pool's bounds, a larger metric never asks for fewer instances,
        /// and a metric inside the tolerance band changes nothing.
        #[test]
        fn bounded_monotone_and_tolerant(
            p in spec(),
            min in 1i64..20,
            span in 0i64..80,
            desired in 1i64..120,
            a in 0.0f64..100_000.0,
            b in 0.0f64..100_000.0,
        ) {
            let mut v = Violations::default();
            p.validate("p", &mut v);
            proptest::prop_assume!(v.0.is_empty());
            let bounds = PoolBounds { min, max: min + span, desired: desired.clamp(min, min + span) };
            let at = |value: f64| {
                let mut o = obs(bounds.desired, Some(value));
                o.bounds = bounds;
                p.decide(&o)
            };
            let (lo, hi) = (at(a.min(b)), at(a.max(b)));
            for d in [&lo, &hi] {
                proptest::prop_assert!((bounds.min..=bounds.max).contains(&d.target), "{} outside bounds: {}", d.target, d.reason);
            }
            proptest::prop_assert!(lo.target <= hi.target, "{} > {}: {} / {}", lo.target, hi.target, lo.reason, hi.reason);
            // The value the current fleet is sized for holds it.
            let per_fleet = match p.metrics[0].target {
                MetricTarget::ExternalAverageValue { average_value }
                | MetricTarget::ObjectAverageValue { average_value } => average_value * bounds.desired as f64,
                MetricTarget::ExternalValue { value } | MetricTarget::ObjectValue { value } => value,
                _ => unreachable!(),
            };
            let d = at(per_fleet);
            proptest::prop_assert_eq!(d.target, bounds.desired, "{}", d.reason);
        }
    }
}
