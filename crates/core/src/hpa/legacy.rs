//! The legacy (behavior-less) normalization: the fixed scale-up limit and the
//! downscale stabilization window of controllers without `spec.behavior`.

use super::behavior::{
    store_recommendation, AbleToScaleReason, LimitingReason, NormalizationArgs, Normalized,
    Recommendation,
};
use super::{within_window, LEGACY_SCALE_UP_LIMIT_FACTOR, LEGACY_SCALE_UP_LIMIT_MINIMUM};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpa::behavior::{
        normalize_desired_replicas_with_behaviors, Behavior, HpaState, PolicyType, ScaleEvent,
        ScalingPolicy, ScalingRules, SelectPolicy,
    };
    use crate::hpa::VECTOR_NOW_MS;
    use proptest::prelude::*;

    const NOW: i64 = VECTOR_NOW_MS;

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

    proptest! {
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
    }
}
