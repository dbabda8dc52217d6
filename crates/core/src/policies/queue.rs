//! Queue-based scaling (scaling-strategy): enough instances that each has at
//! most `messages_per_instance` waiting, `ceil(backlog / messages_per_instance)`,
//! and — with `max_queue_lag_seconds` and a measured per-instance throughput —
//! enough that the backlog drains within the lag:
//! `ceil(backlog / (throughput_per_instance × max_queue_lag_seconds))`.
//! The larger wins. Separate scale-up and scale-down cooldowns; a missing or
//! stale queue reading holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{ceil_tol, cooldown_left_ms, to_instances};
use crate::observation::{Action, Decision, Observation};
use crate::validate::Violations;

const NAME: &str = "queue";

fn d_up_cd() -> i64 {
    60
}
fn d_down_cd() -> i64 {
    300
}
fn d_age() -> i64 {
    120
}

/// The queue policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuePolicy {
    /// Messages one instance may have waiting, `> 0`.
    pub messages_per_instance: f64,
    /// Longest acceptable queue lag, seconds, `> 0`, when bounded.
    #[serde(default)]
    pub max_queue_lag_seconds: Option<f64>,
    /// Seconds after a scale-up before the next scale-up (default 60).
    #[serde(default = "d_up_cd")]
    pub scale_up_cooldown_seconds: i64,
    /// Seconds after any change before a scale-down (default 300).
    #[serde(default = "d_down_cd")]
    pub scale_down_cooldown_seconds: i64,
    /// Oldest usable queue reading, seconds (default 120).
    #[serde(default = "d_age")]
    pub max_observation_age_seconds: i64,
}

impl QueuePolicy {
    /// Records every violation under `prefix`.
    pub fn validate(&self, prefix: &str, v: &mut Violations) {
        let f = |n: &str| format!("{prefix}.{n}");
        if !(self.messages_per_instance.is_finite() && self.messages_per_instance > 0.0) {
            v.push(f("messages_per_instance"), "must be a number > 0");
        }
        if let Some(l) = self.max_queue_lag_seconds {
            if !(l.is_finite() && l > 0.0 && l <= 86_400.0) {
                v.push(f("max_queue_lag_seconds"), "must be > 0 and <= 86400");
            }
        }
        v.check_i64(
            &f("scale_up_cooldown_seconds"),
            self.scale_up_cooldown_seconds,
            0,
            604_800,
        );
        v.check_i64(
            &f("scale_down_cooldown_seconds"),
            self.scale_down_cooldown_seconds,
            0,
            604_800,
        );
        v.check_i64(
            &f("max_observation_age_seconds"),
            self.max_observation_age_seconds,
            1,
            86_400,
        );
    }

    /// Instances wanted for `backlog` (and `throughput`, when the lag is bounded).
    pub fn desired(&self, backlog: f64, throughput: Option<f64>) -> (i64, Option<i64>) {
        let by_backlog = to_instances(ceil_tol(backlog.max(0.0) / self.messages_per_instance));
        let by_lag = match (self.max_queue_lag_seconds, throughput) {
            (Some(lag), Some(t)) if t > 0.0 && t.is_finite() => {
                Some(to_instances(ceil_tol(backlog.max(0.0) / (t * lag))))
            }
            _ => None,
        };
        (by_backlog, by_lag)
    }

    /// Evaluates the policy (see the module docs).
    pub fn decide(&self, obs: &Observation) -> Decision {
        let b = obs.bounds;
        let current = b.desired;
        let Some(q) = obs.queue else {
            return Decision::no_data(current, NAME, "No queue reading: holding".into());
        };
        let age = obs.now_ms - q.observed_at_ms;
        if !q.backlog.is_finite() || q.backlog < 0.0 {
            return Decision::no_data(
                current,
                NAME,
                "Queue backlog is not a number: holding".into(),
            );
        }
        if age > self.max_observation_age_seconds * 1000 {
            let mut d = Decision::no_data(
                current,
                NAME,
                format!("Queue reading is stale ({}s old): holding", age / 1000),
            );
            d.inputs.insert("reading_age_ms".into(), age as f64);
            return d;
        }
        let (by_backlog, by_lag) = self.desired(q.backlog, q.throughput_per_instance);
        let want = by_lag.map_or(by_backlog, |l| l.max(by_backlog));
        let mut inputs = BTreeMap::new();
        inputs.insert("backlog".into(), q.backlog);
        inputs.insert("messages_per_instance".into(), self.messages_per_instance);
        inputs.insert("desired_by_backlog".into(), by_backlog as f64);
        inputs.insert("needed".into(), want as f64);
        if let Some(t) = q.throughput_per_instance.filter(|t| t.is_finite()) {
            inputs.insert("throughput_per_instance".into(), t);
        }
        if let Some(l) = by_lag {
            inputs.insert("desired_by_lag".into(), l as f64);
        }
        if let Some(l) = self.max_queue_lag_seconds {
            inputs.insert("max_queue_lag_seconds".into(), l);
            if current > 0 {
                if let Some(t) = q.throughput_per_instance.filter(|t| *t > 0.0) {
                    inputs.insert("drain_seconds".into(), q.backlog / (t * current as f64));
                }
            }
        }
        let mut reason = format!(
            "Backlog {} at {} per instance needs {by_backlog}",
            q.backlog, self.messages_per_instance
        );
        if let (Some(l), Some(lag)) = (by_lag, self.max_queue_lag_seconds) {
            reason.push_str(&format!("; draining within {lag}s needs {l}"));
        } else if self.max_queue_lag_seconds.is_some() {
            reason.push_str("; throughput unknown, lag bound not applied");
        }
        let up = want > current;
        if want != current {
            let left = cooldown_left_ms(
                obs,
                up,
                self.scale_up_cooldown_seconds,
                self.scale_down_cooldown_seconds,
            );
            if left > 0 {
                let mut d = Decision::hold(
                    current,
                    NAME,
                    format!(
                        "{reason}; {} cooldown has {}s left",
                        if up { "scale-up" } else { "scale-down" },
                        (left + 999) / 1000
                    ),
                    1.0,
                );
                inputs.insert("cooldown_left_ms".into(), left as f64);
                d.inputs = inputs;
                d.requeue_after_ms = Some(left);
                return d;
            }
        }
        let d = Decision::to_target(b, want, NAME, reason, 1.0, inputs);
        debug_assert!(d.action != Action::ScaleDown || !up);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::{PoolBounds, QueueObservation};
    use crate::policies::common::ceil_tol;

    const NOW: i64 = 2_000_000_000_000;

    fn p(lag: Option<f64>) -> QueuePolicy {
        QueuePolicy {
            messages_per_instance: 100.0,
            max_queue_lag_seconds: lag,
            scale_up_cooldown_seconds: 60,
            scale_down_cooldown_seconds: 300,
            max_observation_age_seconds: 120,
        }
    }

    fn obs(desired: i64, backlog: f64, thr: Option<f64>, age_s: i64) -> Observation {
        let mut o = Observation::new(
            NOW,
            PoolBounds {
                min: 1,
                max: 50,
                desired,
            },
        );
        o.queue = Some(QueueObservation {
            backlog,
            throughput_per_instance: thr,
            observed_at_ms: NOW - age_s * 1000,
        });
        o
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn backlog_and_lag_table() {
        // (lag, current, backlog, throughput/s, want)
        let cases: &[(Option<f64>, i64, f64, Option<f64>, i64)] = &[
            (None, 5, 1000.0, None, 10), // seed: 1000 messages → 10 workers
            (None, 5, 100.0, None, 1),   // seed: 100 → 1 (after the down cooldown: none recorded)
            (None, 5, 1001.0, None, 11),
            (None, 5, 0.0, None, 1), // clamped to min
            // Lag 10 s at 5 msg/s per instance: 1000 / 50 = 20 exactly at the limit.
            (Some(10.0), 5, 1000.0, Some(5.0), 20),
            (Some(10.0), 5, 1000.5, Some(5.0), 21),
            (Some(10.0), 5, 999.5, Some(5.0), 20),
            // Fast workers: the backlog rule dominates.
            (Some(10.0), 5, 1000.0, Some(50.0), 10),
            // Throughput unknown or zero: backlog rule only.
            (Some(10.0), 5, 1000.0, None, 10),
            (Some(10.0), 5, 1000.0, Some(0.0), 10),
            // Rounding noise: 0.7 / 0.1 = 6.999999999999999 msg/s·s → 7 instances.
            (Some(0.1), 5, 0.7, Some(1.0), 7),
            (None, 5, 1e9, None, 50),
        ];
        for &(lag, cur, backlog, thr, want) in cases {
            let d = p(lag).decide(&obs(cur, backlog, thr, 0));
            assert_eq!(d.target, want, "{lag:?} {backlog} {thr:?}: {}", d.reason);
        }
    }

    #[test]
    fn ceil_ignores_float_noise() {
        assert_eq!(ceil_tol(10.000_000_000_000_002), 10.0);
        assert_eq!(ceil_tol(10.001), 11.0);
        assert_eq!(ceil_tol(0.0), 0.0);
    }

    #[test]
    fn drain_at_the_lag_limit_is_met() {
        // With the proposed 20 instances the backlog drains in exactly 10 s.
        let d = p(Some(10.0)).decide(&obs(20, 1000.0, Some(5.0), 0));
        assert_eq!(d.action, Action::Hold);
        assert_eq!(d.inputs["drain_seconds"], 10.0);
    }

    #[test]
    fn stale_or_missing_reading_holds() {
        let d = p(None).decide(&obs(5, 0.0, None, 121));
        assert!(d.data_missing && d.target == 5, "{}", d.reason);
        let d = p(None).decide(&obs(5, 0.0, None, 120));
        assert_eq!(d.target, 1);
        let mut o = obs(5, 0.0, None, 0);
        o.queue = None;
        assert!(p(None).decide(&o).data_missing);
    }

    #[test]
    fn cooldowns() {
        let mut o = obs(5, 2000.0, None, 0);
        o.last_scale_up_at_ms = Some(NOW - 59_999);
        assert_eq!(p(None).decide(&o).target, 5);
        o.last_scale_up_at_ms = Some(NOW - 60_000);
        assert_eq!(p(None).decide(&o).target, 20);
        let mut o = obs(5, 0.0, None, 0);
        o.last_scale_down_at_ms = Some(NOW - 299_999);
        assert_eq!(p(None).decide(&o).target, 5);
        o.last_scale_down_at_ms = Some(NOW - 300_000);
        assert_eq!(p(None).decide(&o).target, 1);
    }
}
