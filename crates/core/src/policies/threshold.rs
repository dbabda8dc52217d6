//! The phase-93 threshold policy: step the pool by a fixed increment when
//! the mean utilization over a window leaves the scale-up / scale-down
//! thresholds, with a cooldown between actions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::observation::{utilization_pct, Action, Decision, Observation};
use crate::validate::Violations;

/// Default evaluation window of the threshold policy (the seed's 5 minutes).
pub const DEFAULT_WINDOW_SECONDS: i64 = 300;

/// The threshold policy as sent by a client; missing fields take the seed
/// defaults (80 / 30, cooldown 300 s, increment 1, window 300 s).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThresholdPolicy {
    /// Scale up when utilization (percent) is above this.
    pub scale_up_threshold: Option<f64>,
    /// Scale down when utilization (percent) is below this.
    pub scale_down_threshold: Option<f64>,
    /// Minimum seconds between two scaling actions of the pool.
    pub cooldown_seconds: Option<i64>,
    /// Instances added or removed by one action.
    pub increment: Option<i64>,
    /// Seconds of metric history whose mean is the load.
    pub window_seconds: Option<i64>,
}

/// The phase-93 threshold policy, validated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdPolicy {
    /// Scale up above this utilization, percent, in `(scale_down_threshold, 100]`.
    pub scale_up_threshold: f64,
    /// Scale down below this utilization, percent, in `[0, scale_up_threshold)`.
    pub scale_down_threshold: f64,
    /// Seconds between scaling actions, `0..=604800`.
    pub cooldown_seconds: i64,
    /// Instances per action, `1..=1000000`.
    pub increment: i64,
    /// Evaluation window in seconds, `1..=86400`.
    pub window_seconds: i64,
}

impl Default for ThresholdPolicy {
    fn default() -> Self {
        ThresholdPolicy {
            scale_up_threshold: 80.0,
            scale_down_threshold: 30.0,
            cooldown_seconds: 300,
            increment: 1,
            window_seconds: DEFAULT_WINDOW_SECONDS,
        }
    }
}

impl RawThresholdPolicy {
    /// Applies defaults and validates, recording violations under `prefix`.
    pub fn validate(&self, prefix: &str, v: &mut Violations) -> ThresholdPolicy {
        let d = ThresholdPolicy::default();
        let p = ThresholdPolicy {
            scale_up_threshold: self.scale_up_threshold.unwrap_or(d.scale_up_threshold),
            scale_down_threshold: self.scale_down_threshold.unwrap_or(d.scale_down_threshold),
            cooldown_seconds: self.cooldown_seconds.unwrap_or(d.cooldown_seconds),
            increment: self.increment.unwrap_or(d.increment),
            window_seconds: self.window_seconds.unwrap_or(d.window_seconds),
        };
        let f = |name: &str| format!("{prefix}.{name}");
        v.check_f64(&f("scale_up_threshold"), p.scale_up_threshold, 0.0, 100.0);
        v.check_f64(
            &f("scale_down_threshold"),
            p.scale_down_threshold,
            0.0,
            100.0,
        );
        if p.scale_down_threshold.is_finite()
            && p.scale_up_threshold.is_finite()
            && p.scale_down_threshold >= p.scale_up_threshold
        {
            v.push(f("scale_down_threshold"), "must be < scale_up_threshold");
        }
        v.check_i64(&f("cooldown_seconds"), p.cooldown_seconds, 0, 604_800);
        v.check_i64(&f("increment"), p.increment, 1, 1_000_000);
        v.check_i64(&f("window_seconds"), p.window_seconds, 1, 86_400);
        p
    }
}

impl ThresholdPolicy {
    /// The raw form of this policy (every field present).
    pub fn to_raw(&self) -> RawThresholdPolicy {
        RawThresholdPolicy {
            scale_up_threshold: Some(self.scale_up_threshold),
            scale_down_threshold: Some(self.scale_down_threshold),
            cooldown_seconds: Some(self.cooldown_seconds),
            increment: Some(self.increment),
            window_seconds: Some(self.window_seconds),
        }
    }

    /// Evaluates the policy on `obs`: hold in cooldown or without fresh
    /// metrics, else step by `increment` when utilization leaves the
    /// thresholds (within the pool bounds).
    pub fn decide(&self, obs: &Observation) -> Decision {
        let p = self;
        const NAME: &str = "threshold";
        let b = obs.bounds;
        let current = b.desired;
        if let Some(last) = obs.last_scaled_at_ms {
            let left = last + p.cooldown_seconds * 1000 - obs.now_ms;
            if left > 0 {
                let mut d = Decision::hold(
                    current,
                    NAME,
                    format!(
                        "In cooldown period ({:.0}s left)",
                        (left as f64 / 1000.0).ceil()
                    ),
                    1.0,
                );
                d.requeue_after_ms = Some(left);
                d.inputs.insert("cooldown_left_ms".into(), left as f64);
                return d;
            }
        }
        let window_ms = p.window_seconds * 1000;
        let load = match obs.load {
            Some(l)
                if l.count > 0
                    && l.mean.is_finite()
                    && obs.now_ms - l.newest_ts_ms <= window_ms =>
            {
                l
            }
            Some(l) if l.count > 0 => {
                let mut d = Decision::no_data(
                    current,
                    NAME,
                    format!(
                        "Metrics are stale (newest sample {}s old): holding",
                        (obs.now_ms - l.newest_ts_ms) / 1000
                    ),
                );
                d.inputs.insert(
                    "newest_sample_age_ms".into(),
                    (obs.now_ms - l.newest_ts_ms) as f64,
                );
                return d;
            }
            _ => return Decision::no_data(current, NAME, "No metrics available: holding".into()),
        };
        let mut inputs = BTreeMap::new();
        inputs.insert("mean_load".into(), load.mean);
        inputs.insert("samples".into(), load.count as f64);
        inputs.insert("capacity_per_instance".into(), obs.capacity_per_instance);
        inputs.insert("scale_up_threshold".into(), p.scale_up_threshold);
        inputs.insert("scale_down_threshold".into(), p.scale_down_threshold);
        let util = utilization_pct(load.mean, current, obs.capacity_per_instance);
        if let Some(u) = util {
            inputs.insert("utilization_pct".into(), u);
        }
        let (action, target, reason) = match util {
            None => (
                Action::ScaleUp,
                b.clamp(current + p.increment),
                format!("Load {:.1} with zero capacity", load.mean),
            ),
            Some(u) if u > p.scale_up_threshold && current < b.max => (
                Action::ScaleUp,
                (current + p.increment).min(b.max),
                format!(
                    "Utilization {u:.1}% exceeds threshold {}%",
                    p.scale_up_threshold
                ),
            ),
            Some(u) if u < p.scale_down_threshold && current > b.min => (
                Action::ScaleDown,
                (current - p.increment).max(b.min),
                format!(
                    "Utilization {u:.1}% below threshold {}%",
                    p.scale_down_threshold
                ),
            ),
            Some(u) if u > p.scale_up_threshold => (
                Action::Hold,
                current,
                format!(
                    "Utilization {u:.1}% exceeds threshold but pool is at max {}",
                    b.max
                ),
            ),
            Some(u) if u < p.scale_down_threshold => (
                Action::Hold,
                current,
                format!(
                    "Utilization {u:.1}% below threshold but pool is at min {}",
                    b.min
                ),
            ),
            Some(u) => (
                Action::Hold,
                current,
                format!("No scaling needed (utilization {u:.1}%)"),
            ),
        };
        let (action, target) = if target == current {
            (Action::Hold, current)
        } else {
            (action, target)
        };
        Decision {
            action,
            current,
            target,
            policy: NAME.into(),
            reason,
            confidence: 1.0,
            inputs,
            requeue_after_ms: None,
            data_missing: false,
            hpa_state: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::{Action, PoolBounds, WindowStats};
    use proptest::prelude::*;

    const NOW: i64 = 1_000_000_000;

    fn obs(min: i64, max: i64, desired: i64, mean: Option<f64>, last: Option<i64>) -> Observation {
        Observation {
            capacity_per_instance: 10.0,
            load: mean.map(|m| WindowStats {
                mean: m,
                count: 3,
                newest_ts_ms: NOW - 1000,
            }),
            last_scaled_at_ms: last,
            ..Observation::new(NOW, PoolBounds { min, max, desired })
        }
    }

    fn spec() -> ThresholdPolicy {
        ThresholdPolicy::default()
    }

    fn decide(p: &ThresholdPolicy, o: &Observation) -> Decision {
        p.decide(o)
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn threshold_table() {
        // (min, max, desired, mean load, last scaled, expected target, action)
        use Action::*;
        let cases: &[(i64, i64, i64, Option<f64>, Option<i64>, i64, Action)] = &[
            (1, 10, 2, Some(16.1), None, 3, ScaleUp),  // 80.5% > 80
            (1, 10, 2, Some(16.0), None, 2, Hold),     // exactly 80%: not above
            (1, 10, 2, Some(6.0), None, 2, Hold),      // exactly 30%: not below
            (1, 10, 2, Some(5.9), None, 1, ScaleDown), // 29.5%
            (1, 10, 1, Some(0.0), None, 1, Hold),      // at min
            (1, 3, 3, Some(100.0), None, 3, Hold),     // at max
            (0, 5, 0, Some(1.0), None, 1, ScaleUp),    // load on zero capacity
            (0, 5, 0, Some(0.0), None, 0, Hold),       // idle at zero
            (1, 10, 5, None, None, 5, Hold),           // no metrics
            (1, 10, 5, Some(0.0), Some(NOW - 299_999), 5, Hold), // cooldown edge: 1 ms left
            (1, 10, 5, Some(0.0), Some(NOW - 300_000), 4, ScaleDown), // cooldown just over
        ];
        for &(min, max, desired, mean, last, want, action) in cases {
            let d = decide(&spec(), &obs(min, max, desired, mean, last));
            assert_eq!(
                (d.target, d.action),
                (want, action),
                "case {min} {max} {desired} {mean:?} {last:?}: {}",
                d.reason
            );
        }
    }

    #[test]
    fn increment_is_clamped_to_bounds() {
        let p = ThresholdPolicy {
            increment: 5,
            ..ThresholdPolicy::default()
        };
        assert_eq!(decide(&p, &obs(1, 7, 4, Some(40.0), None)).target, 7);
        assert_eq!(decide(&p, &obs(2, 7, 4, Some(0.0), None)).target, 2);
    }

    #[test]
    fn stale_metrics_hold() {
        let mut o = obs(1, 10, 5, Some(0.0), None);
        o.load = Some(WindowStats {
            mean: 0.0,
            count: 2,
            newest_ts_ms: NOW - 300_001,
        });
        let d = decide(&spec(), &o);
        assert_eq!(d.action, Action::Hold);
        assert!(d.reason.contains("stale"), "{}", d.reason);
    }

    #[test]
    fn seed_reason_texts() {
        let d = decide(&spec(), &obs(1, 10, 2, Some(18.0), None));
        assert_eq!(d.reason, "Utilization 90.0% exceeds threshold 80%");
        let d = decide(&spec(), &obs(1, 10, 5, None, Some(NOW - 1000)));
        assert_eq!(d.reason, "In cooldown period (299s left)");
    }

    proptest! {
        #[test]
        fn decision_invariants(
            min in 0i64..50, span in 0i64..50, off in 0i64..50,
            mean in proptest::option::of(0.0f64..1e6),
            up in 1.0f64..100.0, gap in 0.5f64..50.0, inc in 1i64..20,
            cooldown in 0i64..1000, last_ago in proptest::option::of(0i64..2_000_000),
            cpi in 0.01f64..1000.0,
        ) {
            let max = min + span;
            let desired = min + off.min(span);
            let p = ThresholdPolicy {
                scale_up_threshold: up,
                scale_down_threshold: (up - gap).max(0.0),
                cooldown_seconds: cooldown,
                increment: inc,
                window_seconds: 300,
            };
            let mut o = obs(min, max, desired, mean, last_ago.map(|a| NOW - a));
            o.capacity_per_instance = cpi;
            let d = decide(&p, &o);
            prop_assert!(d.target >= min && d.target <= max);
            prop_assert!(d.confidence >= 0.0 && d.confidence <= 1.0);
            prop_assert!(d.inputs.values().all(|v| !v.is_nan()));
            if mean.is_none() {
                prop_assert_eq!(d.target, desired);
            }
            prop_assert_eq!(&d, &decide(&p, &o));
        }
    }
}
