//! One control-loop tick as a pure function: given every pool's state and
//! observations, which steps to take. The live engine and the benchmarks call
//! this; the engine only performs the steps.

use serde::{Deserialize, Serialize};

use crate::decision::{decide_all_cached, CombinedDecision, PoolPolicies};
use crate::fail_static::{guard, metrics_health, Guarded, DEFAULT_MAX_REVERSALS};
use crate::memory::ControllerMemory;
use crate::observation::{Action, Decision, Observation};
use crate::policies::predictive::ModelCache;
use crate::policies::{decide, PolicySpec};
use crate::pool::Mode;

/// A pool as the control loop sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolState {
    /// Pool id.
    pub id: String,
    /// Mode.
    pub mode: Mode,
    /// Safety lock: the autoscaler may not change the pool.
    pub safety_lock: bool,
    /// The pool's policy (used alone when `combined` is `None`).
    pub policy: PolicySpec,
    /// The pool's combined policies, evaluated by the decision engine.
    #[serde(default)]
    pub combined: Option<PoolPolicies>,
    /// What was observed.
    pub observation: Observation,
    /// Target of the pool's pending proposal, if any.
    pub pending_proposal: Option<i64>,
    /// Cached forecast models of `combined`'s predictive policies (by
    /// policy index); a predictive policy without one refits on
    /// `observation.history`.
    #[serde(skip)]
    pub forecasts: Vec<Option<ModelCache>>,
    /// The pool's controller memory (without its forecast models, which
    /// are in `forecasts` while the tick runs); already recalled into
    /// `observation`. The loop remembers the tick's decision in it.
    #[serde(skip)]
    pub memory: ControllerMemory,
    /// The control loop's tick, ms, for fail static's staleness limit
    /// ([`crate::fail_static::stale_after_ms`]); 0 judges by the policy's
    /// window alone.
    #[serde(default)]
    pub tick_ms: i64,
    /// The error the pool's metrics source reported on this tick, if any
    /// (the pool is then treated as stale).
    #[serde(default)]
    pub metrics_error: Option<String>,
}

impl PoolState {
    /// The longest window of the pool's policies, ms.
    #[must_use]
    pub fn window_ms(&self) -> i64 {
        crate::fail_static::policy_window_ms(&self.policy, self.combined.as_ref())
    }
}

/// What to do for one pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Apply the decision (autonomous pool); idempotent through the store's
    /// expected-capacity check.
    Apply {
        /// Pool id.
        pool_id: String,
        /// The decision to apply.
        decision: Decision,
        /// The decision engine's full reasoning, for combined policies.
        combined: Option<Box<CombinedDecision>>,
    },
    /// Create or refresh the pending proposal (recommend pool).
    Propose {
        /// Pool id.
        pool_id: String,
        /// The decision proposed.
        decision: Decision,
        /// The decision engine's full reasoning, for combined policies.
        combined: Option<Box<CombinedDecision>>,
    },
    /// Withdraw the pending proposal: the policy no longer wants a change.
    Withdraw {
        /// Pool id.
        pool_id: String,
    },
}

/// Counts of one tick's decisions, for metrics, and when to look again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickCounts {
    /// Pools evaluated (not frozen).
    pub evaluated: u64,
    /// Decisions to scale up.
    pub scale_up: u64,
    /// Decisions to scale down.
    pub scale_down: u64,
    /// Decisions to hold.
    pub hold: u64,
    /// The earliest positive `requeue_after_ms` of the evaluated pools'
    /// decisions: when the loop should look again, if sooner than its tick.
    #[serde(default)]
    pub requeue_after_ms: Option<i64>,
}

/// One tick's plan: the steps, the counts, and every pool's decision (by
/// index of the pools planned; `None` for a frozen pool), which the loop
/// remembers in the pool's [`crate::memory::ControllerMemory`].
#[derive(Debug, Clone, PartialEq)]
pub struct TickPlan {
    /// The steps to take.
    pub steps: Vec<Step>,
    /// The counts.
    pub counts: TickCounts,
    /// Each pool's decision, by index; `None` when it was not evaluated.
    pub decisions: Vec<Option<Decision>>,
    /// What fail static and the flap budget did to each pool's decision, by
    /// index; `None` when it was not evaluated.
    pub guards: Vec<Option<Guarded>>,
}

/// Plans one tick. Frozen pools are skipped; every other pool's decision
/// passes fail static and the flap budget ([`crate::fail_static::guard`]:
/// no scale-in on stale, missing or erroring metrics, at most
/// [`DEFAULT_MAX_REVERSALS`] reversals an hour); a locked autonomous pool is
/// evaluated but not changed; a recommend pool's proposal is refreshed only
/// when its target changes. Deterministic for the same inputs.
#[must_use]
pub fn plan_tick(pools: &[PoolState]) -> (Vec<Step>, TickCounts) {
    let p = plan(pools);
    (p.steps, p.counts)
}

/// One pool's decision as a tick makes it: its combined policies' decision
/// (with the combination) or its own policy's, then fail static and the
/// flap budget from its memory. [`plan`] calls it for every pool that is
/// not frozen; the plan endpoint's dry run calls it for one.
pub fn decide_pool(p: &PoolState) -> (Decision, Option<CombinedDecision>, Guarded) {
    let (mut d, combined) = match &p.combined {
        Some(spec) => {
            let c = decide_all_cached(spec, &p.observation, &p.forecasts);
            (c.to_decision(), Some(c))
        }
        None => (decide(&p.policy, &p.observation), None),
    };
    let health = metrics_health(
        &p.observation,
        p.tick_ms,
        p.window_ms(),
        p.metrics_error.as_deref(),
    );
    let g = guard(
        &mut d,
        &health,
        &p.memory,
        p.observation.now_ms,
        DEFAULT_MAX_REVERSALS,
    );
    (d, combined, g)
}

/// [`plan_tick`] with every pool's decision.
#[must_use]
pub fn plan(pools: &[PoolState]) -> TickPlan {
    let mut steps = Vec::new();
    let mut counts = TickCounts::default();
    let mut decisions = Vec::with_capacity(pools.len());
    let mut guards = Vec::with_capacity(pools.len());
    for p in pools {
        if p.mode == Mode::Frozen {
            decisions.push(None);
            guards.push(None);
            continue;
        }
        counts.evaluated += 1;
        let (d, combined, g) = decide_pool(p);
        let combined = combined.map(Box::new);
        guards.push(Some(g));
        if let Some(r) = d.requeue_after_ms.filter(|&r| r > 0) {
            counts.requeue_after_ms = Some(counts.requeue_after_ms.map_or(r, |c| c.min(r)));
        }
        match d.action {
            Action::ScaleUp => counts.scale_up += 1,
            Action::ScaleDown => counts.scale_down += 1,
            Action::Hold => counts.hold += 1,
        }
        decisions.push(Some(d.clone()));
        match p.mode {
            Mode::Autonomous if d.should_scale() && !p.safety_lock => steps.push(Step::Apply {
                pool_id: p.id.clone(),
                decision: d,
                combined,
            }),
            Mode::Recommend if d.should_scale() && p.pending_proposal != Some(d.target) => steps
                .push(Step::Propose {
                    pool_id: p.id.clone(),
                    decision: d,
                    combined,
                }),
            // The same proposal is already pending.
            Mode::Recommend if d.should_scale() => {}
            // A hold with measured load withdraws a stale proposal; a hold for
            // lack of data or for a cooldown keeps it.
            Mode::Recommend
                if p.pending_proposal.is_some()
                    && !g.held_scale_in
                    && !g.held_reversal
                    && d.confidence > 0.0
                    && d.requeue_after_ms.is_none() =>
            {
                steps.push(Step::Withdraw {
                    pool_id: p.id.clone(),
                })
            }
            _ => {}
        }
    }
    TickPlan {
        steps,
        counts,
        decisions,
        guards,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::{PoolBounds, WindowStats};
    use crate::policies::threshold::ThresholdPolicy;

    fn state(mode: Mode, lock: bool, mean: Option<f64>, pending: Option<i64>) -> PoolState {
        PoolState {
            id: "p".into(),
            mode,
            safety_lock: lock,
            policy: PolicySpec::Threshold(ThresholdPolicy::default()),
            combined: None,
            observation: Observation {
                capacity_per_instance: 10.0,
                load: mean.map(|m| WindowStats {
                    mean: m,
                    count: 1,
                    newest_ts_ms: 999_000,
                }),
                last_scaled_at_ms: None,
                ..Observation::new(
                    1_000_000,
                    PoolBounds {
                        min: 1,
                        max: 10,
                        desired: 2,
                    },
                )
            },
            pending_proposal: pending,
            forecasts: Vec::new(),
            memory: ControllerMemory::default(),
            tick_ms: 0,
            metrics_error: None,
        }
    }

    fn kinds(steps: &[Step]) -> Vec<&'static str> {
        steps
            .iter()
            .map(|s| match s {
                Step::Apply { .. } => "apply",
                Step::Propose { .. } => "propose",
                Step::Withdraw { .. } => "withdraw",
            })
            .collect()
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn modes_table() {
        let cases: &[(Mode, bool, Option<f64>, Option<i64>, &[&str])] = &[
            (Mode::Autonomous, false, Some(50.0), None, &["apply"]),
            (Mode::Autonomous, true, Some(50.0), None, &[]),
            (Mode::Autonomous, false, None, None, &[]),
            (Mode::Frozen, false, Some(50.0), None, &[]),
            (Mode::Recommend, false, Some(50.0), None, &["propose"]),
            (Mode::Recommend, false, Some(50.0), Some(3), &[]),
            (Mode::Recommend, false, Some(50.0), Some(4), &["propose"]),
            (Mode::Recommend, false, Some(10.0), Some(3), &["withdraw"]),
            (Mode::Recommend, false, None, Some(3), &[]),
        ];
        for (mode, lock, mean, pending, want) in cases {
            let (steps, _) = plan_tick(&[state(*mode, *lock, *mean, *pending)]);
            assert_eq!(
                kinds(&steps),
                *want,
                "{mode:?} lock={lock} mean={mean:?} pending={pending:?}"
            );
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn fail_static_and_flap_budget_in_the_plan() {
        use crate::fail_static::FLAP_WINDOW_MS;
        // Load 5 on 2 instances of 10 (25%) asks to scale in to 1.
        // (tick, newest sample age, reversals in the last hour, last
        // direction, mode) → (steps, metrics_stale, reason contains)
        let up = Some(Action::ScaleUp);
        let cases: &[(i64, i64, usize, Option<Action>, Mode, &[&str], bool, &str)] = &[
            (
                10_000,
                30_000,
                0,
                None,
                Mode::Autonomous,
                &["apply"],
                false,
                "Utilization",
            ),
            (
                10_000,
                30_001,
                0,
                None,
                Mode::Autonomous,
                &[],
                true,
                "fail static",
            ),
            (
                0,
                30_001,
                0,
                None,
                Mode::Autonomous,
                &["apply"],
                false,
                "Utilization",
            ),
            (
                10_000,
                30_001,
                0,
                None,
                Mode::Recommend,
                &[],
                true,
                "fail static",
            ),
            (
                10_000,
                1_000,
                3,
                up,
                Mode::Autonomous,
                &["apply"],
                false,
                "Utilization",
            ),
            (
                10_000,
                1_000,
                4,
                up,
                Mode::Autonomous,
                &[],
                false,
                "flap budget",
            ),
            (
                10_000,
                1_000,
                4,
                up,
                Mode::Recommend,
                &[],
                false,
                "flap budget",
            ),
            (
                10_000,
                1_000,
                4,
                Some(Action::ScaleDown),
                Mode::Autonomous,
                &["apply"],
                false,
                "Utilization",
            ),
        ];
        for &(tick, age, reversals, last, mode, want, stale, says) in cases {
            let pending = (mode == Mode::Recommend).then_some(1);
            let mut p = state(mode, false, Some(5.0), pending);
            p.tick_ms = tick;
            if let Some(l) = p.observation.load.as_mut() {
                l.newest_ts_ms = p.observation.now_ms - age;
            }
            p.memory.last_direction = last;
            p.memory.reversals_at_ms = (0..reversals)
                .map(|i| p.observation.now_ms - FLAP_WINDOW_MS / 8 * (i as i64 + 1))
                .collect();
            let tp = plan(&[p]);
            // A recommend pool's pending proposal (for 1) is kept, not
            // withdrawn, while a guard holds.
            assert_eq!(
                kinds(&tp.steps),
                *want,
                "tick={tick} age={age} rev={reversals}"
            );
            let g = tp.guards[0].expect("evaluated");
            assert_eq!(g.metrics_stale, stale, "tick={tick} age={age}");
            let d = tp.decisions[0].as_ref().expect("evaluated");
            assert!(d.reason.contains(says), "{}", d.reason);
        }
    }

    #[test]
    fn counts_skip_frozen() {
        let pools = [
            state(Mode::Frozen, false, Some(50.0), None),
            state(Mode::Autonomous, false, Some(50.0), None),
            state(Mode::Autonomous, false, Some(10.0), None),
        ];
        let (_, c) = plan_tick(&pools);
        assert_eq!(
            c,
            TickCounts {
                evaluated: 2,
                scale_up: 1,
                scale_down: 0,
                hold: 1,
                requeue_after_ms: None,
            }
        );
    }

    #[test]
    fn requeue_is_the_earliest_cooldown_end_of_evaluated_pools() {
        let cooling = |mode, scaled_ago_ms: i64| {
            let mut p = state(mode, false, Some(50.0), None);
            p.observation.last_scaled_at_ms = Some(p.observation.now_ms - scaled_ago_ms);
            p
        };
        // Cooldown 300 s: scaled 299 s ago leaves 1 s, 200 s ago leaves 100 s.
        let pools = [
            cooling(Mode::Autonomous, 200_000),
            cooling(Mode::Recommend, 299_000),
            cooling(Mode::Frozen, 299_900),
        ];
        let (_, c) = plan_tick(&pools);
        assert_eq!(c.requeue_after_ms, Some(1_000));
        let (_, c) = plan_tick(&[state(Mode::Autonomous, false, Some(50.0), None)]);
        assert_eq!(c.requeue_after_ms, None, "no cooldown, no requeue");
    }
}
