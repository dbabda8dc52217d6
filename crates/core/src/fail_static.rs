//! Fail static and the flap budget: two guards the control loop applies to
//! every pool's decision after the policies have spoken.
//!
//! **Fail static.** A pool's metrics are *stale* when the newest sample of
//! its load is older than [`STALE_AFTER_TICKS`] control-loop ticks or older
//! than the policy's window, whichever comes first; *missing* when there is
//! no sample at all; and *erroring* when their source reported a failure.
//! In any of these states the pool never scales in (and so never to zero):
//! the decision is held at the current capacity, which is what the last
//! applied decision left. A scale-out is still allowed, because only a
//! policy that read a fresh signal (a queue, a per-instance metric, a
//! schedule) can propose one: more capacity is the safe side of an outage.
//! The decision's reason says the metrics are stale.
//!
//! **Flap budget.** A reversal is an applied change whose direction (up or
//! down) differs from the previous applied change's. At most
//! [`DEFAULT_MAX_REVERSALS`] reversals are allowed per rolling
//! [`FLAP_WINDOW_MS`]; a further scale-in reversal is held with a reason.
//! A scale-out is never held by the budget: as with fail static, more
//! capacity is the safe side, and with every further scale-in held the
//! pool can only grow or hold, so no further reversal follows until the
//! window frees one (at most one more per window). Holding scale-outs too
//! would keep a pool at its low point through a rise for up to an hour:
//! replayed through the simulator with the default `slo` policy, that
//! dropped the attainment on the elb trace from 0.993 to 0.727. The history
//! is kept in the pool's persisted [`ControllerMemory`]; time is always an
//! argument.

use serde::{Deserialize, Serialize};

use crate::decision::PoolPolicies;
use crate::memory::ControllerMemory;
use crate::observation::{Action, Decision, Observation};
use crate::policies::PolicySpec;

/// Ticks after which the newest sample is stale.
pub const STALE_AFTER_TICKS: i64 = 3;

/// Reversals allowed per [`FLAP_WINDOW_MS`] by default.
pub const DEFAULT_MAX_REVERSALS: usize = 4;

pub use crate::memory::FLAP_WINDOW_MS;

/// The state of a pool's metrics as fail static judges them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MetricsHealth {
    /// The newest sample is recent enough.
    Fresh,
    /// The newest sample is older than the limit.
    Stale {
        /// Age of the newest sample, ms.
        age_ms: i64,
        /// The age beyond which samples are stale, ms.
        limit_ms: i64,
    },
    /// There is no sample at all.
    Missing,
    /// The metrics source reported an error.
    SourceError {
        /// What it said.
        message: String,
    },
}

impl MetricsHealth {
    /// True for every state but [`MetricsHealth::Fresh`].
    #[must_use]
    pub fn is_stale(&self) -> bool {
        !matches!(self, MetricsHealth::Fresh)
    }

    /// Words for a reason.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            MetricsHealth::Fresh => "metrics fresh".into(),
            MetricsHealth::Stale { age_ms, limit_ms } => format!(
                "metrics stale (newest sample {}s old, limit {}s)",
                age_ms / 1000,
                limit_ms / 1000
            ),
            MetricsHealth::Missing => "metrics missing (no sample)".into(),
            MetricsHealth::SourceError { message } => {
                format!("metrics source error ({message})")
            }
        }
    }
}

/// The window of a pool's policies, ms: the longest of `combined`'s when
/// set (300 s for an empty spec), else `policy`'s.
#[must_use]
pub fn policy_window_ms(policy: &PolicySpec, combined: Option<&PoolPolicies>) -> i64 {
    let s = match combined {
        Some(spec) => spec
            .policies
            .iter()
            .map(PolicySpec::window_seconds)
            .max()
            .unwrap_or(300),
        None => policy.window_seconds(),
    };
    s.max(1).saturating_mul(1000)
}

/// The age beyond which a sample is stale: the smaller of
/// [`STALE_AFTER_TICKS`] ticks and the window; the window alone when the
/// tick is not positive.
#[must_use]
pub fn stale_after_ms(tick_ms: i64, window_ms: i64) -> i64 {
    let window_ms = window_ms.max(1);
    if tick_ms > 0 {
        tick_ms.saturating_mul(STALE_AFTER_TICKS).min(window_ms)
    } else {
        window_ms
    }
}

/// The newest sample `obs` holds, Unix ms: of the pool's load, of any
/// named metric, of the queue reading or of any per-instance metric (a
/// pool whose policies read other metrics than its load is judged by
/// those). `None` when there is none.
#[must_use]
pub fn newest_sample_ms(obs: &Observation) -> Option<i64> {
    let load = obs
        .load
        .filter(|l| l.count > 0 && l.mean.is_finite())
        .map(|l| l.newest_ts_ms);
    let metrics = obs
        .metrics
        .values()
        .flat_map(|v| v.iter().map(|s| s.ts_ms))
        .max();
    let queue = obs.queue.map(|q| q.observed_at_ms);
    let instances = obs
        .instance_metrics
        .values()
        .flat_map(|v| v.iter().map(|m| m.timestamp_ms))
        .max();
    [load, metrics, queue, instances]
        .into_iter()
        .flatten()
        .max()
}

/// Judges the pool's metrics at `obs.now_ms` (see the module docs): a
/// source error wins, then no sample at all ([`newest_sample_ms`]), then
/// the newest sample's age against [`stale_after_ms`]`(tick_ms,
/// window_ms)`. A sample exactly at the limit is fresh.
#[must_use]
pub fn metrics_health(
    obs: &Observation,
    tick_ms: i64,
    window_ms: i64,
    source_error: Option<&str>,
) -> MetricsHealth {
    if let Some(e) = source_error {
        return MetricsHealth::SourceError {
            message: e.to_string(),
        };
    }
    let Some(newest) = newest_sample_ms(obs) else {
        return MetricsHealth::Missing;
    };
    let age_ms = obs.now_ms - newest;
    let limit_ms = stale_after_ms(tick_ms, window_ms);
    if age_ms > limit_ms {
        MetricsHealth::Stale { age_ms, limit_ms }
    } else {
        MetricsHealth::Fresh
    }
}

/// The reversals of `memory` inside the flap window ending at `now_ms`.
#[must_use]
pub fn reversals_in_window(memory: &ControllerMemory, now_ms: i64) -> usize {
    memory
        .reversals_at_ms
        .iter()
        .filter(|&&t| t > now_ms - FLAP_WINDOW_MS && t <= now_ms)
        .count()
}

/// True when a change in `action`'s direction would reverse the last
/// applied change.
#[must_use]
pub fn is_reversal(memory: &ControllerMemory, action: Action) -> bool {
    action != Action::Hold && memory.last_direction.is_some_and(|l| l != action)
}

/// What [`guard`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Guarded {
    /// The pool's metrics were stale, missing or erroring.
    pub metrics_stale: bool,
    /// Fail static turned a scale-in into a hold.
    pub held_scale_in: bool,
    /// The flap budget turned a reversal into a hold.
    pub held_reversal: bool,
}

/// Applies fail static (`health`) and the flap budget (`max_reversals` per
/// hour, from `memory`) to `d` at `now_ms`; a held decision keeps
/// `d.current` and says why in its reason and inputs (`metrics_stale`,
/// `flap_reversals`).
pub fn guard(
    d: &mut Decision,
    health: &MetricsHealth,
    memory: &ControllerMemory,
    now_ms: i64,
    max_reversals: usize,
) -> Guarded {
    let mut g = Guarded::default();
    if health.is_stale() {
        g.metrics_stale = true;
        d.inputs.insert("metrics_stale".into(), 1.0);
        if d.target < d.current {
            g.held_scale_in = true;
            append(
                d,
                format!(
                    "fail static: {}; no scale-in, holding at {} (would be {})",
                    health.describe(),
                    d.current,
                    d.target
                ),
            );
            hold(d);
        } else {
            append(
                d,
                format!("fail static: {}; no scale-in", health.describe()),
            );
        }
    }
    if is_reversal(memory, d.action) {
        let n = reversals_in_window(memory, now_ms);
        d.inputs.insert("flap_reversals".into(), n as f64);
        if n >= max_reversals && d.target < d.current {
            g.held_reversal = true;
            append(
                d,
                format!(
                    "flap budget: {n} reversal(s) in the last hour (at most {max_reversals}); holding at {} (would be {})",
                    d.current, d.target
                ),
            );
            hold(d);
        }
    }
    g
}

fn append(d: &mut Decision, s: String) {
    if d.reason.is_empty() {
        d.reason = s;
    } else {
        d.reason = format!("{}; {s}", d.reason);
    }
}

fn hold(d: &mut Decision) {
    d.target = d.current;
    d.action = Action::Hold;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::{PoolBounds, WindowStats};

    const TICK: i64 = 10_000;
    const NOW: i64 = 10_000_000;

    fn obs(newest_age_ms: Option<i64>) -> Observation {
        let mut o = Observation::new(
            NOW,
            PoolBounds {
                min: 0,
                max: 10,
                desired: 4,
            },
        );
        o.load = newest_age_ms.map(|a| WindowStats {
            mean: 1.0,
            count: 3,
            newest_ts_ms: NOW - a,
        });
        o
    }

    fn decision(target: i64) -> Decision {
        Decision::to_target(
            PoolBounds {
                min: 0,
                max: 10,
                desired: 4,
            },
            target,
            "t",
            "policy says so".into(),
            1.0,
            Default::default(),
        )
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn staleness_table() {
        // (tick, window, newest age, source error) → stale?
        let cases: &[(i64, i64, Option<i64>, Option<&str>, bool)] = &[
            (TICK, 300_000, Some(0), None, false),
            (TICK, 300_000, Some(3 * TICK - 1), None, false),
            (TICK, 300_000, Some(3 * TICK), None, false), // exactly 3 ticks: fresh
            (TICK, 300_000, Some(3 * TICK + 1), None, true),
            (TICK, 20_000, Some(20_000), None, false), // exactly the window
            (TICK, 20_000, Some(20_001), None, true),  // window before 3 ticks
            (0, 60_000, Some(60_000), None, false),    // no tick: window alone
            (0, 60_000, Some(60_001), None, true),
            (TICK, 300_000, None, None, true), // missing
            (TICK, 300_000, Some(0), Some("timeout"), true),
        ];
        for &(tick, window, age, err, stale) in cases {
            let h = metrics_health(&obs(age), tick, window, err);
            assert_eq!(
                h.is_stale(),
                stale,
                "tick={tick} window={window} age={age:?} err={err:?}: {h:?}"
            );
        }
        assert_eq!(
            metrics_health(&obs(None), TICK, 1, None),
            MetricsHealth::Missing
        );
        assert_eq!(
            metrics_health(&obs(Some(31_000)), TICK, 300_000, None),
            MetricsHealth::Stale {
                age_ms: 31_000,
                limit_ms: 30_000
            }
        );
    }

    #[test]
    fn the_newest_of_every_signal_counts() {
        use crate::observation::{QueueObservation, Sample};
        // No load, but a named metric 5 s old: fresh.
        let mut o = obs(None);
        o.metrics.insert(
            "arrival_rate".into(),
            vec![
                Sample {
                    ts_ms: NOW - 50_000,
                    value: 1.0,
                },
                Sample {
                    ts_ms: NOW - 5_000,
                    value: 1.0,
                },
            ],
        );
        assert_eq!(newest_sample_ms(&o), Some(NOW - 5_000));
        assert!(!metrics_health(&o, TICK, 300_000, None).is_stale());
        // A stale load with a fresh queue reading: fresh.
        let mut o = obs(Some(100_000));
        o.queue = Some(QueueObservation {
            backlog: 3.0,
            throughput_per_instance: None,
            observed_at_ms: NOW - 1_000,
        });
        assert!(!metrics_health(&o, TICK, 300_000, None).is_stale());
        o.queue = None;
        assert!(metrics_health(&o, TICK, 300_000, None).is_stale());
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn fail_static_table() {
        let stale = MetricsHealth::Stale {
            age_ms: 40_000,
            limit_ms: 30_000,
        };
        let err = MetricsHealth::SourceError {
            message: "connection refused".into(),
        };
        // (health, proposed target) → (target, held scale-in)
        let cases: &[(&MetricsHealth, i64, i64, bool)] = &[
            (&MetricsHealth::Fresh, 2, 2, false),
            (&MetricsHealth::Fresh, 0, 0, false),
            (&stale, 3, 4, true),
            (&stale, 0, 4, true), // never to zero
            (&MetricsHealth::Missing, 0, 4, true),
            (&err, 1, 4, true),
            (&stale, 4, 4, false),
            (&stale, 6, 6, false), // scale-out allowed
            (&MetricsHealth::Missing, 5, 5, false),
        ];
        for (h, proposed, want, held) in cases {
            let mut d = decision(*proposed);
            let g = guard(&mut d, h, &ControllerMemory::default(), NOW, 4);
            assert_eq!(d.target, *want, "{h:?} {proposed}");
            assert_eq!(g.held_scale_in, *held, "{h:?} {proposed}");
            assert_eq!(g.metrics_stale, h.is_stale());
            assert_eq!(d.inputs.contains_key("metrics_stale"), h.is_stale());
            assert_eq!(
                d.reason.contains("fail static"),
                h.is_stale(),
                "{}",
                d.reason
            );
            let want_action = match want.cmp(&4) {
                std::cmp::Ordering::Less => Action::ScaleDown,
                std::cmp::Ordering::Equal => Action::Hold,
                std::cmp::Ordering::Greater => Action::ScaleUp,
            };
            assert_eq!(d.action, want_action);
        }
    }

    /// A memory whose last change went `last` with reversals at `ages`
    /// (ms before [`NOW`]).
    fn history(last: Action, ages: &[i64]) -> ControllerMemory {
        ControllerMemory {
            last_direction: Some(last),
            reversals_at_ms: ages.iter().map(|a| NOW - a).collect(),
            ..ControllerMemory::default()
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn flap_budget_table() {
        let min = 60_000;
        // (last direction, reversal ages, proposed target) → held?
        let cases: &[(Action, &[i64], i64, bool)] = &[
            (Action::ScaleUp, &[], 2, false),
            (Action::ScaleUp, &[min, 2 * min, 3 * min], 2, false), // 4th reversal
            (Action::ScaleUp, &[min, 2 * min, 3 * min, 4 * min], 2, true), // 5th
            // A scale-out is never held by the budget (the safe side).
            (
                Action::ScaleDown,
                &[min, 2 * min, 3 * min, 4 * min],
                6,
                false,
            ),
            // Not a reversal: the same direction as the last change.
            (
                Action::ScaleDown,
                &[min, 2 * min, 3 * min, 4 * min],
                2,
                false,
            ),
            // Holds are never reversals.
            (
                Action::ScaleDown,
                &[min, 2 * min, 3 * min, 4 * min],
                4,
                false,
            ),
            // One of the four is exactly an hour old: outside the window.
            (
                Action::ScaleUp,
                &[min, 2 * min, 3 * min, FLAP_WINDOW_MS],
                2,
                false,
            ),
            (
                Action::ScaleUp,
                &[min, 2 * min, 3 * min, FLAP_WINDOW_MS - 1],
                2,
                true,
            ),
            (Action::ScaleUp, &[FLAP_WINDOW_MS + min; 9], 2, false),
        ];
        for (last, ages, proposed, held) in cases {
            let mut d = decision(*proposed);
            let g = guard(&mut d, &MetricsHealth::Fresh, &history(*last, ages), NOW, 4);
            assert_eq!(g.held_reversal, *held, "{last:?} {ages:?} {proposed}");
            assert_eq!(d.target, if *held { 4 } else { *proposed });
            assert_eq!(d.reason.contains("flap budget"), *held, "{}", d.reason);
        }
    }

    #[test]
    fn memory_counts_reversals_of_applied_changes_only() {
        let mut m = ControllerMemory::default();
        // up, up, down, up, down, down: reversals at 3, 4, 5 (t in s).
        for (t, cur, tgt) in [
            (1, 1, 2),
            (2, 2, 3),
            (3, 3, 2),
            (4, 2, 3),
            (5, 3, 2),
            (6, 2, 1),
        ] {
            m.record(t * 1000, cur, tgt);
        }
        assert_eq!(m.reversals_at_ms, vec![3000, 4000, 5000]);
        assert_eq!(m.last_direction, Some(Action::ScaleDown));
        m.record(7000, 1, 1);
        assert_eq!(m.reversals_at_ms.len(), 3, "a hold is no change");
        // Reversals older than the window are forgotten on the next one.
        m.record(5000 + FLAP_WINDOW_MS + 1, 1, 2);
        assert_eq!(m.reversals_at_ms, vec![5000 + FLAP_WINDOW_MS + 1]);
    }

    proptest::proptest! {
        /// Whatever the policies propose and however old the newest sample,
        /// a stale pool never ends below its current capacity.
        #[test]
        fn never_scales_in_while_stale(
            current in 0i64..10,
            proposed in 0i64..10,
            age in proptest::option::of(0i64..1_000_000),
            tick in 0i64..60_000,
            window in 1i64..600_000,
            flips in proptest::collection::vec(0i64..(2 * FLAP_WINDOW_MS), 0..8),
            last_up in proptest::bool::ANY,
        ) {
            let mut o = obs(age);
            o.bounds.desired = current;
            let h = metrics_health(&o, tick, window, None);
            let mut d = Decision::to_target(
                PoolBounds { min: 0, max: 10, desired: current },
                proposed, "t", String::new(), 1.0, Default::default(),
            );
            let last = if last_up { Action::ScaleUp } else { Action::ScaleDown };
            let m = history(last, &flips);
            let g = guard(&mut d, &h, &m, NOW, DEFAULT_MAX_REVERSALS);
            if h.is_stale() {
                proptest::prop_assert!(d.target >= current);
                proptest::prop_assert!(g.metrics_stale);
            }
            proptest::prop_assert!(d.target == current || d.target == proposed);
            // Neither guard ever holds a scale-out.
            if proposed > current {
                proptest::prop_assert_eq!(d.target, proposed);
                proptest::prop_assert!(!g.held_reversal);
            }
        }
    }
}
