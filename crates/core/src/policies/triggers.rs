//! Metric triggers (agent-scalability-analytics §3.1): "cpu > 70 for 120 s →
//! scale up by 2". A trigger fires when every sample in the last
//! `duration_seconds` satisfies the comparison *and* the window is covered:
//! a satisfying sample at or before the window start (its value holds until
//! the next sample), no gap between samples — or between the newest sample
//! and now — longer than `max_sample_gap_seconds`.
//!
//! Scale-up triggers win over scale-down triggers; several scale-up triggers
//! take the largest step, several scale-down triggers the smallest. A
//! scale-up waits `scale_up_cooldown_seconds` after the last scale-up; a
//! scale-down waits `scale_down_cooldown_seconds` after any change, and never
//! happens while some trigger's metric is missing or has gaps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{check_metric, cooldown_left_ms, Amount, Comparison};
use crate::observation::{Action, Decision, Observation, Sample};
use crate::validate::Violations;

const NAME: &str = "triggers";

fn d_up_cd() -> i64 {
    60
}
fn d_down_cd() -> i64 {
    300
}
fn d_gap() -> i64 {
    60
}

/// Direction of a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerAction {
    /// Add instances.
    ScaleUp,
    /// Remove instances.
    ScaleDown,
}

/// One trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Metric name (a key of `Observation::metrics`).
    pub metric: String,
    /// Comparison of each sample with `threshold`.
    pub comparison: Comparison,
    /// The threshold, in the metric's unit.
    pub threshold: f64,
    /// How long the comparison must hold, seconds, `1..=86400`.
    pub duration_seconds: i64,
    /// What to do when it fires.
    pub action: TriggerAction,
    /// By how much.
    pub amount: Amount,
}

/// The triggers policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggersPolicy {
    /// The triggers, at least one.
    pub triggers: Vec<Trigger>,
    /// Seconds after a scale-up before the next scale-up (default 60).
    #[serde(default = "d_up_cd")]
    pub scale_up_cooldown_seconds: i64,
    /// Seconds after any change before a scale-down (default 300).
    #[serde(default = "d_down_cd")]
    pub scale_down_cooldown_seconds: i64,
    /// Longest tolerated gap between samples, seconds (default 60).
    #[serde(default = "d_gap")]
    pub max_sample_gap_seconds: i64,
}

/// How one trigger evaluated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TriggerState {
    /// Held over the whole window.
    Fired,
    /// A sample in the window does not satisfy it (the newest such value).
    NotMet(f64),
    /// No sample at or before the window start (oldest sample age, s).
    NotCovered(f64),
    /// Samples too far apart or too old (longest gap, s).
    Gap(f64),
    /// No samples at all.
    NoData,
}

/// Evaluates one trigger over `samples` at `now_ms`.
pub fn evaluate(t: &Trigger, samples: &[Sample], now_ms: i64, max_gap_s: i64) -> TriggerState {
    let mut s: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|x| x.ts_ms <= now_ms)
        .collect();
    if !s.is_sorted_by_key(|x| x.ts_ms) {
        s.sort_by_key(|x| x.ts_ms);
    }
    let Some(newest) = s.last() else {
        return TriggerState::NoData;
    };
    let gap_ms = max_gap_s.saturating_mul(1000);
    let start = now_ms.saturating_sub(t.duration_seconds.saturating_mul(1000));
    let first = s.partition_point(|x| x.ts_ms <= start);
    if first == 0 {
        return TriggerState::NotCovered((now_ms - s[0].ts_ms) as f64 / 1000.0);
    }
    let window = &s[first - 1..];
    if let Some(bad) = window
        .iter()
        .rev()
        .find(|x| !t.comparison.holds(x.value, t.threshold))
    {
        return TriggerState::NotMet(bad.value);
    }
    let longest = window
        .windows(2)
        .map(|w| w[1].ts_ms - w[0].ts_ms)
        .chain(std::iter::once(now_ms - newest.ts_ms))
        .max()
        .unwrap_or(0);
    if longest > gap_ms {
        return TriggerState::Gap(longest as f64 / 1000.0);
    }
    TriggerState::Fired
}

impl TriggersPolicy {
    /// Records every violation under `prefix`.
    pub fn validate(&self, prefix: &str, v: &mut Violations) {
        if self.triggers.is_empty() {
            v.push(format!("{prefix}.triggers"), "must not be empty");
        }
        for (i, t) in self.triggers.iter().enumerate() {
            let f = |n: &str| format!("{prefix}.triggers[{i}].{n}");
            check_metric(v, &f("metric"), &t.metric);
            if !t.threshold.is_finite() {
                v.push(f("threshold"), "must be a finite number");
            }
            v.check_i64(&f("duration_seconds"), t.duration_seconds, 1, 86_400);
            t.amount.validate(&f("amount"), v);
        }
        for (n, x) in [
            ("scale_up_cooldown_seconds", self.scale_up_cooldown_seconds),
            (
                "scale_down_cooldown_seconds",
                self.scale_down_cooldown_seconds,
            ),
        ] {
            v.check_i64(&format!("{prefix}.{n}"), x, 0, 604_800);
        }
        v.check_i64(
            &format!("{prefix}.max_sample_gap_seconds"),
            self.max_sample_gap_seconds,
            1,
            86_400,
        );
    }

    /// Evaluates the triggers (see the module docs).
    pub fn decide(&self, obs: &Observation) -> Decision {
        let b = obs.bounds;
        let current = b.desired;
        let mut inputs = BTreeMap::new();
        let mut up: Option<(i64, usize)> = None;
        let mut down: Option<(i64, usize)> = None;
        let mut missing = Vec::new();
        let mut notes = Vec::new();
        for (i, t) in self.triggers.iter().enumerate() {
            let samples = obs.metrics.get(&t.metric).map_or(&[][..], Vec::as_slice);
            let st = evaluate(t, samples, obs.now_ms, self.max_sample_gap_seconds);
            let key = format!("trigger_{i}_fired");
            inputs.insert(key, f64::from(u8::from(st == TriggerState::Fired)));
            let desc = format!(
                "{} {} {} for {}s",
                t.metric,
                t.comparison.symbol(),
                t.threshold,
                t.duration_seconds
            );
            match st {
                TriggerState::Fired => {
                    let n = t.amount.instances(current);
                    match t.action {
                        TriggerAction::ScaleUp => {
                            let tg = current.saturating_add(n);
                            if up.is_none_or(|(u, _)| tg > u) {
                                up = Some((tg, i));
                            }
                        }
                        TriggerAction::ScaleDown => {
                            let tg = current.saturating_sub(n);
                            if down.is_none_or(|(d, _)| tg > d) {
                                down = Some((tg, i));
                            }
                        }
                    }
                }
                TriggerState::NoData => missing.push(format!("{}: no samples", t.metric)),
                TriggerState::Gap(g) => {
                    missing.push(format!("{}: {g:.0}s without samples", t.metric))
                }
                TriggerState::NotCovered(age) => notes.push(format!(
                    "{desc}: samples cover only {age:.0}s of {}s",
                    t.duration_seconds
                )),
                TriggerState::NotMet(x) => notes.push(format!("{desc}: not met (saw {x})")),
            }
        }
        let with_data = self.triggers.len() - missing.len();
        let confidence = if self.triggers.is_empty() {
            0.0
        } else {
            with_data as f64 / self.triggers.len() as f64
        };
        let describe = |i: usize| {
            let t = &self.triggers[i];
            format!(
                "{} {} {} for {}s",
                t.metric,
                t.comparison.symbol(),
                t.threshold,
                t.duration_seconds
            )
        };
        let hold_for = |reason: String, left: i64| {
            let mut d = Decision::hold(current, NAME, reason, confidence);
            d.requeue_after_ms = Some(left);
            d.inputs.insert("cooldown_left_ms".into(), left as f64);
            d
        };
        // A fired trigger moves towards `tg` unless its direction's cooldown
        // runs; `want` is the action it asks for.
        let fire = |tg: i64, i: usize, want: Action, inputs: BTreeMap<String, f64>| {
            let up = want == Action::ScaleUp;
            let (dir, edge, bound) = if up {
                ("up", "max", b.max)
            } else {
                ("down", "min", b.min)
            };
            let left = cooldown_left_ms(
                obs,
                up,
                self.scale_up_cooldown_seconds,
                self.scale_down_cooldown_seconds,
            );
            if left > 0 {
                return hold_for(
                    format!(
                        "Trigger {} fired but scale-{dir} cooldown has {}s left",
                        describe(i),
                        (left + 999) / 1000
                    ),
                    left,
                );
            }
            let mut d = Decision::to_target(
                b,
                tg,
                NAME,
                format!("Trigger {} fired", describe(i)),
                confidence,
                inputs,
            );
            if d.action != want {
                d.reason = format!(
                    "Trigger {} fired but pool is at {edge} {bound}",
                    describe(i)
                );
            }
            d
        };
        if let Some((tg, i)) = up {
            return fire(tg, i, Action::ScaleUp, inputs);
        }
        if !missing.is_empty() {
            let mut d = Decision::no_data(
                current,
                NAME,
                format!("Metrics missing or stale ({}): holding", missing.join("; ")),
            );
            d.confidence = confidence;
            d.inputs = inputs;
            return d;
        }
        if let Some((tg, i)) = down {
            return fire(tg, i, Action::ScaleDown, inputs);
        }
        let mut d = Decision::hold(
            current,
            NAME,
            if notes.is_empty() {
                "No trigger fired".to_string()
            } else {
                format!("No trigger fired ({})", notes.join("; "))
            },
            confidence,
        );
        d.inputs = inputs;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::PoolBounds;

    const NOW: i64 = 2_000_000_000_000;

    fn policy(action: TriggerAction, cmp: Comparison, thr: f64) -> TriggersPolicy {
        TriggersPolicy {
            triggers: vec![Trigger {
                metric: "cpu".into(),
                comparison: cmp,
                threshold: thr,
                duration_seconds: 120,
                action,
                amount: Amount::Absolute(2),
            }],
            scale_up_cooldown_seconds: 60,
            scale_down_cooldown_seconds: 300,
            max_sample_gap_seconds: 30,
        }
    }

    /// Samples every 10 s from `NOW - oldest_s` to `NOW - newest_s`, skipping
    /// ages listed in `skip`, all with `value` except `odd` at age `odd_at`.
    fn obs(oldest_s: i64, newest_s: i64, value: f64, skip: &[i64]) -> Observation {
        let mut o = Observation::new(
            NOW,
            PoolBounds {
                min: 1,
                max: 10,
                desired: 4,
            },
        );
        let s = (newest_s..=oldest_s)
            .rev()
            .step_by(10)
            .filter(|a| !skip.contains(a))
            .map(|a| Sample {
                ts_ms: NOW - a * 1000,
                value,
            })
            .collect();
        o.metrics.insert("cpu".into(), s);
        o
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn duration_and_gap_boundaries() {
        use TriggerAction::*;
        let up = policy(ScaleUp, Comparison::Gt, 70.0);
        // (oldest sample age s, newest age s, value, skipped ages, want target)
        let cases: &[(i64, i64, f64, &[i64], i64, &str)] = &[
            (120, 0, 71.0, &[], 6, "duration exactly met"),
            (110, 0, 71.0, &[], 4, "one sample short of the window"),
            (300, 0, 71.0, &[], 6, "longer history"),
            (120, 0, 70.0, &[], 4, "at threshold: not above"),
            (
                120,
                0,
                71.0,
                &[60, 50],
                6,
                "30 s gap: exactly the allowed maximum",
            ),
            (120, 0, 71.0, &[60, 50, 40], 4, "40 s gap in the window"),
            (120, 30, 71.0, &[], 6, "newest sample exactly 30 s old"),
            (120, 40, 71.0, &[], 4, "newest sample 40 s old: stale"),
        ];
        for &(old, new, val, skip, want, what) in cases {
            let d = up.decide(&obs(old, new, val, skip));
            assert_eq!(d.target, want, "{what}: {}", d.reason);
        }
    }

    #[test]
    fn one_bad_sample_in_the_window_blocks() {
        let up = policy(TriggerAction::ScaleUp, Comparison::Gt, 70.0);
        let mut o = obs(120, 0, 71.0, &[]);
        o.metrics.get_mut("cpu").unwrap()[5].value = 69.0;
        let d = up.decide(&o);
        assert_eq!(d.action, Action::Hold);
        assert!(d.reason.contains("not met (saw 69)"), "{}", d.reason);
        // A bad sample before the window start does not count.
        let mut o = obs(200, 0, 71.0, &[]);
        o.metrics.get_mut("cpu").unwrap()[0].value = 10.0;
        assert_eq!(up.decide(&o).target, 6);
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn cooldown_edges() {
        let up = policy(TriggerAction::ScaleUp, Comparison::Gt, 70.0);
        let down = policy(TriggerAction::ScaleDown, Comparison::Lt, 30.0);
        let cases: &[(&TriggersPolicy, f64, Option<i64>, Option<i64>, i64)] = &[
            (&up, 90.0, Some(NOW - 59_999), None, 4),
            (&up, 90.0, Some(NOW - 60_000), None, 6),
            // A recent scale-down does not delay a scale-up.
            (&up, 90.0, None, Some(NOW - 1000), 6),
            (&down, 10.0, None, Some(NOW - 299_999), 4),
            (&down, 10.0, None, Some(NOW - 300_000), 2),
            // A scale-up 299.999 s ago still blocks a scale-down.
            (&down, 10.0, Some(NOW - 299_999), None, 4),
        ];
        for &(p, val, last_up, last_down, want) in cases {
            let mut o = obs(120, 0, val, &[]);
            o.last_scale_up_at_ms = last_up;
            o.last_scale_down_at_ms = last_down;
            let d = p.decide(&o);
            assert_eq!(d.target, want, "{last_up:?} {last_down:?}: {}", d.reason);
        }
    }

    #[test]
    fn percent_amount_and_bounds() {
        let mut p = policy(TriggerAction::ScaleUp, Comparison::Ge, 70.0);
        p.triggers[0].amount = Amount::Percent(50.0);
        let mut o = obs(120, 0, 70.0, &[]);
        assert_eq!(p.decide(&o).target, 6);
        o.bounds.desired = 9;
        let d = p.decide(&o);
        assert_eq!(d.target, 10, "clamped to max");
        o.bounds.desired = 10;
        let d = p.decide(&o);
        assert_eq!((d.action, d.target), (Action::Hold, 10));
        assert!(d.reason.contains("at max"));
    }

    #[test]
    fn missing_metric_never_scales_down() {
        let mut p = policy(TriggerAction::ScaleDown, Comparison::Lt, 30.0);
        p.triggers.push(Trigger {
            metric: "memory".into(),
            ..p.triggers[0].clone()
        });
        let d = p.decide(&obs(120, 0, 10.0, &[]));
        assert_eq!(d.action, Action::Hold);
        assert!(d.data_missing);
        assert!(d.reason.contains("memory: no samples"), "{}", d.reason);
    }

    #[test]
    fn validation_reports_everything() {
        let mut p = policy(TriggerAction::ScaleUp, Comparison::Gt, f64::NAN);
        p.triggers[0].metric = "gpu".into();
        p.triggers[0].duration_seconds = -5;
        p.triggers[0].amount = Amount::Percent(0.0);
        p.scale_down_cooldown_seconds = -1;
        let mut v = Violations::default();
        p.validate("policy", &mut v);
        let fields: Vec<&str> = v.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "policy.triggers[0].metric",
                "policy.triggers[0].threshold",
                "policy.triggers[0].duration_seconds",
                "policy.triggers[0].amount.percent",
                "policy.scale_down_cooldown_seconds",
            ]
        );
    }
}
