//! Scaling modes (normal / cautious / throttled / frozen) with the phase 92
//! thresholds, hysteresis, and mode gating of jobs.
//!
//! Raw thresholds on `capacity_score` and overall `pressure`:
//! frozen when capacity < 10 or pressure > 90; throttled when capacity < 30
//! or pressure > 75; cautious when capacity < 50 or pressure > 60; else
//! normal.
//!
//! Hysteresis ([`evaluate_mode`]): a worse mode applies at once. A region
//! leaves its mode for a better one only when its figures are
//! [`HYSTERESIS_POINTS`] (5) inside the better mode's bounds (e.g. leaving
//! frozen for throttled needs capacity ≥ 15 and pressure ≤ 85; reaching
//! normal needs capacity ≥ 55 and pressure ≤ 55) and have stayed so for
//! [`CONSECUTIVE_EVALUATIONS`] (2) consecutive evaluations; it then moves to
//! the best mode it qualified for in both of them.

use serde::{Deserialize, Serialize};

/// Points inside a better mode's bounds needed to move to it.
pub const HYSTERESIS_POINTS: f64 = 5.0;
/// Consecutive evaluations inside the better bounds needed to move to it.
pub const CONSECUTIVE_EVALUATIONS: u32 = 2;
/// Default largest `estimated_cost_cents` a throttled region accepts.
pub const DEFAULT_SMALL_JOB_MAX_CENTS: i64 = 50;
/// Fixed part of the cautious delay.
pub const CAUTIOUS_BASE_DELAY_MS: u64 = 1_000;
/// Cautious delay per point of overall pressure.
pub const CAUTIOUS_DELAY_PER_PRESSURE_POINT_MS: f64 = 50.0;

/// A region's scaling mode, ordered from best to worst.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ScalingMode {
    /// All jobs, no delay.
    #[default]
    Normal,
    /// All jobs, with a delay.
    Cautious,
    /// Small jobs only.
    Throttled,
    /// Nothing.
    Frozen,
}

impl ScalingMode {
    /// The snake_case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ScalingMode::Normal => "normal",
            ScalingMode::Cautious => "cautious",
            ScalingMode::Throttled => "throttled",
            ScalingMode::Frozen => "frozen",
        }
    }

    /// Lowest capacity score and highest pressure that still fit this mode
    /// (or a better one); `None` for frozen, which has no bounds.
    fn bounds(self) -> Option<(f64, f64)> {
        match self {
            ScalingMode::Normal => Some((50.0, 60.0)),
            ScalingMode::Cautious => Some((30.0, 75.0)),
            ScalingMode::Throttled => Some((10.0, 90.0)),
            ScalingMode::Frozen => None,
        }
    }

    /// True when the figures are `margin` points inside this mode's bounds.
    fn holds_with_margin(self, capacity: f64, pressure: f64, margin: f64) -> bool {
        match self.bounds() {
            None => true,
            Some((cap, press)) => capacity >= cap + margin && pressure <= press - margin,
        }
    }
}

impl std::str::FromStr for ScalingMode {
    type Err = crate::lifecycle::UnknownValue;

    fn from_str(s: &str) -> Result<ScalingMode, Self::Err> {
        [
            ScalingMode::Normal,
            ScalingMode::Cautious,
            ScalingMode::Throttled,
            ScalingMode::Frozen,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
        .ok_or_else(|| crate::lifecycle::UnknownValue {
            kind: "scaling mode",
            value: s.to_string(),
            expected: "normal, cautious, throttled, frozen, ",
        })
    }
}

impl std::fmt::Display for ScalingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mode the thresholds give, without hysteresis. A NaN figure counts as
/// the worst case.
#[must_use]
pub fn raw_mode(capacity_score: f64, pressure: f64) -> ScalingMode {
    let c = if capacity_score.is_nan() {
        0.0
    } else {
        capacity_score
    };
    let p = if pressure.is_nan() { 100.0 } else { pressure };
    if c < 10.0 || p > 90.0 {
        ScalingMode::Frozen
    } else if c < 30.0 || p > 75.0 {
        ScalingMode::Throttled
    } else if c < 50.0 || p > 60.0 {
        ScalingMode::Cautious
    } else {
        ScalingMode::Normal
    }
}

/// What hysteresis remembers between evaluations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeState {
    /// Current mode.
    pub mode: ScalingMode,
    /// When the current mode began (Unix ms).
    pub since_ms: i64,
    /// Best better mode qualified for at the last evaluation, if any.
    pub pending: Option<ScalingMode>,
    /// Consecutive evaluations (up to the last) inside a better mode's bounds.
    pub streak: u32,
}

impl ModeState {
    /// A region starting in `mode` at `since_ms`.
    #[must_use]
    pub fn new(mode: ScalingMode, since_ms: i64) -> Self {
        ModeState {
            mode,
            since_ms,
            pending: None,
            streak: 0,
        }
    }
}

/// A recorded mode change.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModeTransition {
    /// Mode before.
    pub from: ScalingMode,
    /// Mode after.
    pub to: ScalingMode,
    /// Capacity score at the change.
    pub capacity_score: f64,
    /// Overall pressure at the change.
    pub pressure: f64,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// Result of one evaluation: the next state and the transition, if any.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[must_use]
pub struct ModeEvaluation {
    /// State to keep for the next evaluation.
    pub state: ModeState,
    /// The change made now, if the mode changed.
    pub transition: Option<ModeTransition>,
}

/// One hysteretic evaluation of a region's mode (see the module doc).
pub fn evaluate_mode(
    prev: &ModeState,
    capacity_score: f64,
    pressure: f64,
    now_ms: i64,
) -> ModeEvaluation {
    let raw = raw_mode(capacity_score, pressure);
    let change = |to: ScalingMode| ModeEvaluation {
        state: ModeState::new(to, now_ms),
        transition: Some(ModeTransition {
            from: prev.mode,
            to,
            capacity_score,
            pressure,
            at_ms: now_ms,
        }),
    };
    let stay = |pending: Option<ScalingMode>, streak: u32| ModeEvaluation {
        state: ModeState {
            pending,
            streak,
            ..*prev
        },
        transition: None,
    };
    if raw > prev.mode {
        return change(raw);
    }
    // Best mode strictly better than the current one whose bounds hold with margin.
    let target = [
        ScalingMode::Normal,
        ScalingMode::Cautious,
        ScalingMode::Throttled,
    ]
    .into_iter()
    .filter(|m| *m < prev.mode)
    .find(|m| m.holds_with_margin(capacity_score, pressure, HYSTERESIS_POINTS));
    let Some(target) = target else {
        return stay(None, 0);
    };
    // Qualifying for a better mode implies qualifying for every worse one,
    // so the worse of the two targets held in both evaluations.
    let held = prev.pending.map_or(target, |p| p.max(target));
    let streak = if prev.pending.is_some() {
        prev.streak + 1
    } else {
        1
    };
    if streak >= CONSECUTIVE_EVALUATIONS {
        change(held)
    } else {
        stay(Some(held), streak)
    }
}

/// Why a mode refuses a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefuseReason {
    /// The region is frozen and accepts nothing.
    #[error("region is frozen")]
    Frozen,
    /// The region is throttled and the job is not small.
    #[error("region is throttled: estimated cost {cost_cents} cents exceeds the small-job limit of {max_cents}")]
    NotSmallJob {
        /// Estimated cost of the job.
        cost_cents: i64,
        /// The region's small-job limit.
        max_cents: i64,
    },
}

/// Outcome of mode gating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[must_use]
pub enum Gate {
    /// Accepted, to start after `delay_ms`.
    Accept {
        /// Delay before the job runs.
        delay_ms: u64,
    },
    /// Refused.
    Refuse {
        /// Why.
        reason: RefuseReason,
    },
}

/// The cautious delay: `1,000 ms + 50 ms × overall pressure` (pressure
/// clamped to 0–100, so 1–6 s; e.g. 3,500 ms at pressure 50).
#[must_use]
pub fn cautious_delay_ms(pressure: f64) -> u64 {
    let p = if pressure.is_nan() {
        100.0
    } else {
        pressure.clamp(0.0, 100.0)
    };
    CAUTIOUS_BASE_DELAY_MS + (CAUTIOUS_DELAY_PER_PRESSURE_POINT_MS * p).round() as u64
}

/// Mode gating: normal accepts with no delay; cautious accepts with
/// [`cautious_delay_ms`]; throttled accepts only jobs with
/// `estimated_cost_cents ≤ small_job_max_cents`, with twice the cautious
/// delay; frozen refuses everything.
pub fn gate(
    mode: ScalingMode,
    pressure: f64,
    estimated_cost_cents: i64,
    small_job_max_cents: i64,
) -> Gate {
    match mode {
        ScalingMode::Normal => Gate::Accept { delay_ms: 0 },
        ScalingMode::Cautious => Gate::Accept {
            delay_ms: cautious_delay_ms(pressure),
        },
        ScalingMode::Throttled if estimated_cost_cents <= small_job_max_cents => Gate::Accept {
            delay_ms: 2 * cautious_delay_ms(pressure),
        },
        ScalingMode::Throttled => Gate::Refuse {
            reason: RefuseReason::NotSmallJob {
                cost_cents: estimated_cost_cents,
                max_cents: small_job_max_cents,
            },
        },
        ScalingMode::Frozen => Gate::Refuse {
            reason: RefuseReason::Frozen,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::ScalingMode::{Cautious, Frozen, Normal, Throttled};
    use super::*;

    #[test]
    fn raw_thresholds_at_and_around_every_boundary() {
        // (capacity, pressure, expected)
        let table = [
            (9.9, 0.0, Frozen),
            (10.0, 0.0, Throttled),
            (10.1, 0.0, Throttled),
            (29.9, 0.0, Throttled),
            (30.0, 0.0, Cautious),
            (30.1, 0.0, Cautious),
            (49.9, 0.0, Cautious),
            (50.0, 0.0, Normal),
            (50.1, 0.0, Normal),
            (100.0, 60.0, Normal),
            (100.0, 60.1, Cautious),
            (100.0, 75.0, Cautious),
            (100.0, 75.1, Throttled),
            (100.0, 90.0, Throttled),
            (100.0, 90.1, Frozen),
            (100.0, 100.0, Frozen),
            // the worse of the two figures wins
            (45.0, 80.0, Throttled),
            (5.0, 10.0, Frozen),
            (f64::NAN, 0.0, Frozen),
            (100.0, f64::NAN, Frozen),
        ];
        for (c, p, want) in table {
            assert_eq!(raw_mode(c, p), want, "capacity {c} pressure {p}");
        }
    }

    #[test]
    fn worse_modes_apply_at_once() {
        let table = [
            (Normal, 49.9, 0.0, Cautious),
            (Normal, 29.9, 0.0, Throttled),
            (Normal, 9.9, 0.0, Frozen),
            (Normal, 100.0, 90.1, Frozen),
            (Cautious, 100.0, 75.1, Throttled),
            (Throttled, 9.9, 0.0, Frozen),
        ];
        for (from, c, p, to) in table {
            let e = evaluate_mode(&ModeState::new(from, 0), c, p, 7);
            assert_eq!(e.state.mode, to, "{from} c={c} p={p}");
            let t = e.transition.expect("transition");
            assert_eq!((t.from, t.to, t.at_ms), (from, to, 7));
            assert_eq!((t.capacity_score, t.pressure), (c, p));
            assert_eq!(e.state.since_ms, 7);
        }
    }

    /// Evaluates twice with the same figures; returns the mode after each.
    fn twice(from: ScalingMode, c: f64, p: f64) -> (ScalingMode, ScalingMode) {
        let s0 = ModeState::new(from, 0);
        let e1 = evaluate_mode(&s0, c, p, 1);
        let e2 = evaluate_mode(&e1.state, c, p, 2);
        (e1.state.mode, e2.state.mode)
    }

    #[test]
    fn leaving_a_mode_needs_five_points_and_two_evaluations() {
        // (from, capacity, pressure, mode after the 2nd evaluation)
        let table = [
            // leaving frozen: capacity ≥ 15 and pressure ≤ 85
            (Frozen, 9.9, 0.0, Frozen),
            (Frozen, 10.0, 0.0, Frozen),
            (Frozen, 10.1, 0.0, Frozen),
            (Frozen, 14.9, 0.0, Frozen),
            (Frozen, 15.0, 0.0, Throttled),
            (Frozen, 15.1, 0.0, Throttled),
            (Frozen, 100.0, 85.1, Frozen),
            (Frozen, 100.0, 85.0, Throttled),
            (Frozen, 100.0, 84.9, Throttled),
            // leaving throttled: capacity ≥ 35 and pressure ≤ 70
            (Throttled, 30.0, 0.0, Throttled),
            (Throttled, 34.9, 0.0, Throttled),
            (Throttled, 35.0, 0.0, Cautious),
            (Throttled, 35.1, 0.0, Cautious),
            (Throttled, 100.0, 75.0, Throttled),
            (Throttled, 100.0, 70.1, Throttled),
            (Throttled, 100.0, 70.0, Cautious),
            // leaving cautious: capacity ≥ 55 and pressure ≤ 55
            (Cautious, 50.0, 0.0, Cautious),
            (Cautious, 54.9, 0.0, Cautious),
            (Cautious, 55.0, 0.0, Normal),
            (Cautious, 55.1, 0.0, Normal),
            (Cautious, 100.0, 60.0, Cautious),
            (Cautious, 100.0, 55.1, Cautious),
            (Cautious, 100.0, 55.0, Normal),
            // several steps at once when the figures allow it
            (Frozen, 55.0, 55.0, Normal),
            (Frozen, 35.0, 70.0, Cautious),
            (Throttled, 60.0, 10.0, Normal),
        ];
        for (from, c, p, want) in table {
            let (first, second) = twice(from, c, p);
            assert_eq!(
                first, from,
                "one evaluation never improves: {from} c={c} p={p}"
            );
            assert_eq!(second, want, "{from} c={c} p={p}");
        }
    }

    #[test]
    fn a_dip_resets_the_two_evaluation_rule() {
        let s = ModeState::new(Frozen, 0);
        let e1 = evaluate_mode(&s, 20.0, 0.0, 1);
        assert_eq!((e1.state.mode, e1.state.streak), (Frozen, 1));
        let e2 = evaluate_mode(&e1.state, 14.0, 0.0, 2); // still frozen-side of the margin
        assert_eq!(
            (e2.state.mode, e2.state.streak, e2.state.pending),
            (Frozen, 0, None)
        );
        let e3 = evaluate_mode(&e2.state, 20.0, 0.0, 3);
        assert_eq!(e3.state.mode, Frozen);
        let e4 = evaluate_mode(&e3.state, 20.0, 0.0, 4);
        assert_eq!(e4.state.mode, Throttled);
        assert_eq!(
            e4.transition.map(|t| (t.from, t.to, t.at_ms)),
            Some((Frozen, Throttled, 4))
        );
        assert_eq!(e4.state.since_ms, 4);
    }

    #[test]
    fn two_evaluations_move_to_the_mode_held_in_both() {
        let s = ModeState::new(Frozen, 0);
        let e1 = evaluate_mode(&s, 80.0, 10.0, 1); // qualifies for normal
        let e2 = evaluate_mode(&e1.state, 20.0, 10.0, 2); // only throttled
        assert_eq!(e2.state.mode, Throttled);
        let s = ModeState::new(Frozen, 0);
        let e1 = evaluate_mode(&s, 20.0, 10.0, 1);
        let e2 = evaluate_mode(&e1.state, 80.0, 10.0, 2);
        assert_eq!(e2.state.mode, Throttled);
    }

    #[test]
    fn staying_put_has_no_transition() {
        let e = evaluate_mode(&ModeState::new(Normal, 3), 80.0, 10.0, 9);
        assert_eq!(e.transition, None);
        assert_eq!(e.state, ModeState::new(Normal, 3));
        // a worse mode mid-streak applies at once and clears the streak
        let s = ModeState {
            mode: Cautious,
            since_ms: 0,
            pending: Some(Normal),
            streak: 1,
        };
        let e = evaluate_mode(&s, 5.0, 0.0, 9);
        assert_eq!(e.state, ModeState::new(Frozen, 9));
    }

    fn figure() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::prelude::*;
        prop_oneof![
            0.0..=100.0f64,
            proptest::sample::select(vec![
                9.9, 10.0, 15.0, 29.9, 30.0, 35.0, 49.9, 50.0, 55.0, 60.0, 70.0, 75.0, 85.0, 90.0
            ])
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 1_000, ..Default::default() })]

        /// Never better than the raw thresholds; improves only after two
        /// evaluations inside the better bounds; constant figures change the
        /// mode at most twice (one worsening, one improvement).
        #[test]
        fn hysteresis_invariants(
            start in 0usize..4,
            figures in proptest::collection::vec((figure(), figure()), 1..30),
        ) {
            let modes = [Normal, Cautious, Throttled, Frozen];
            let mut s = ModeState::new(modes[start], 0);
            let mut prev_fig: Option<(f64, f64)> = None;
            for (t, (c, p)) in figures.iter().copied().enumerate() {
                let e = evaluate_mode(&s, c, p, t as i64);
                proptest::prop_assert!(e.state.mode >= raw_mode(c, p));
                if e.state.mode < s.mode {
                    let (pc, pp) = prev_fig.expect("an improvement needs a previous evaluation");
                    proptest::prop_assert!(e.state.mode.holds_with_margin(c, p, HYSTERESIS_POINTS));
                    proptest::prop_assert!(e.state.mode.holds_with_margin(pc, pp, HYSTERESIS_POINTS));
                }
                proptest::prop_assert_eq!(e.transition.is_some(), e.state.mode != s.mode);
                s = e.state;
                prev_fig = Some((c, p));
            }
            let (c, p) = figures[0];
            let mut s = ModeState::new(modes[start], 0);
            let mut changes = 0;
            for t in 0..10 {
                let e = evaluate_mode(&s, c, p, t);
                changes += usize::from(e.transition.is_some());
                s = e.state;
            }
            proptest::prop_assert!(changes <= 2);
        }

        /// Figures wandering less than 5 points either side of a capacity
        /// boundary change the mode at most once (no flapping).
        #[test]
        fn no_flapping_within_the_margin(
            b in proptest::sample::select(vec![10.0, 30.0, 50.0]),
            offsets in proptest::collection::vec(-4.99..4.99f64, 1..40),
        ) {
            let mut s = ModeState::new(raw_mode(b + offsets[0], 0.0), 0);
            let mut changes = 0;
            for (t, o) in offsets.iter().enumerate() {
                let e = evaluate_mode(&s, b + o, 0.0, t as i64);
                changes += usize::from(e.transition.is_some());
                s = e.state;
            }
            proptest::prop_assert!(changes <= 1, "{changes} changes");
        }
    }

    #[test]
    fn gating_per_mode() {
        assert_eq!(gate(Normal, 99.0, 10_000, 50), Gate::Accept { delay_ms: 0 });
        assert_eq!(
            gate(Cautious, 50.0, 10_000, 50),
            Gate::Accept { delay_ms: 3_500 }
        );
        assert_eq!(gate(Cautious, 0.0, 1, 50), Gate::Accept { delay_ms: 1_000 });
        assert_eq!(
            gate(Cautious, 150.0, 1, 50),
            Gate::Accept { delay_ms: 6_000 }
        );
        assert_eq!(
            gate(Throttled, 80.0, 50, 50),
            Gate::Accept { delay_ms: 10_000 }
        );
        assert_eq!(
            gate(Throttled, 80.0, 51, 50),
            Gate::Refuse {
                reason: RefuseReason::NotSmallJob {
                    cost_cents: 51,
                    max_cents: 50
                }
            }
        );
        assert_eq!(
            gate(Frozen, 0.0, 0, 50),
            Gate::Refuse {
                reason: RefuseReason::Frozen
            }
        );
    }

    #[test]
    fn modes_parse_from_their_names_only() {
        assert_eq!(
            "throttled".parse::<ScalingMode>().unwrap(),
            ScalingMode::Throttled
        );
        assert!("Frozen".parse::<ScalingMode>().is_err());
    }
}
