//! `spec.behavior`: scaling rules with their defaults, stabilization windows,
//! rate limits per period, and the scale events and recommendations they
//! remember ([`HpaState`]).

use serde::{Deserialize, Serialize};

use super::{ceil_to_i32, clamp_i64_to_i32, within_window};

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

pub(super) fn store_recommendation(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpa::{DEFAULT_DOWNSCALE_STABILIZATION_S, VECTOR_NOW_MS};
    use proptest::prelude::*;

    const NOW: i64 = VECTOR_NOW_MS;

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

    proptest! {
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
