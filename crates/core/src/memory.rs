//! A pool's controller memory: what a control loop carries from one
//! decision to the next — when the pool last grew and last shrank (separate
//! cooldowns), target tracking's recommendation history and scale events
//! (its stabilization windows and rate limits), and each predictive
//! policy's cached forecast model. The `slo` policy keeps nothing of its
//! own: it reads its windows of samples at every decision.
//!
//! The live engine keeps one per pool on the leader and in the store (so a
//! new leader continues it); the simulator keeps one per controller. Both
//! use the same three steps: [`ControllerMemory::recall`] into the
//! observation, decide, [`ControllerMemory::remember`] the decision.

use serde::{Deserialize, Serialize};

use crate::decision::PoolPolicies;
use crate::hpa::HpaState;
use crate::observation::{Action, Decision, Observation};
use crate::policies::predictive::{ModelCache, PredictivePolicy};
use crate::policies::PolicySpec;

/// The rolling window of the flap budget (`fail_static`): one hour, in ms.
/// Reversals older than it are forgotten.
pub const FLAP_WINDOW_MS: i64 = 3_600_000;

/// One pool's controller memory (see the module docs). Serializable: the
/// engine stores it as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControllerMemory {
    /// When the controller last grew the pool, Unix ms.
    #[serde(default)]
    pub last_scale_up_at_ms: Option<i64>,
    /// When the controller last shrank the pool, Unix ms.
    #[serde(default)]
    pub last_scale_down_at_ms: Option<i64>,
    /// Target tracking's memory (recommendations, scale events).
    #[serde(default)]
    pub hpa_state: HpaState,
    /// The predictive policies the models were fitted for, by policy index.
    #[serde(default)]
    pub forecast_policies: Vec<Option<PredictivePolicy>>,
    /// The cached forecast models, by policy index.
    #[serde(default)]
    pub forecasts: Vec<Option<ModelCache>>,
    /// The direction of the last applied change (`scale_up` or
    /// `scale_down`), for the flap budget ([`crate::fail_static`]).
    #[serde(default)]
    pub last_direction: Option<Action>,
    /// When applied changes reversed direction, Unix ms, oldest first;
    /// only those inside the flap window are kept.
    #[serde(default)]
    pub reversals_at_ms: Vec<i64>,
}

/// The predictive policies of `spec`, by policy index.
#[must_use]
pub fn predictive_policies(spec: &PoolPolicies) -> Vec<Option<PredictivePolicy>> {
    spec.policies
        .iter()
        .map(|p| match p {
            PolicySpec::Predictive(pp) => Some(pp.clone()),
            _ => None,
        })
        .collect()
}

impl ControllerMemory {
    /// The later of the last scale-up and scale-down, Unix ms.
    #[must_use]
    pub fn last_scaled_at_ms(&self) -> Option<i64> {
        self.last_scale_up_at_ms.max(self.last_scale_down_at_ms)
    }

    /// Puts the memory a policy reads into `obs`: the last scale-up and
    /// scale-down times and target tracking's state.
    pub fn recall(&self, obs: &mut Observation) {
        obs.last_scale_up_at_ms = self.last_scale_up_at_ms;
        obs.last_scale_down_at_ms = self.last_scale_down_at_ms;
        obs.hpa_state = self.hpa_state.clone();
    }

    /// Records a change from `current` to `target` at `now_ms` (nothing for
    /// a hold): its time, its direction, and a reversal when the direction
    /// differs from the last change's (forgetting reversals older than the
    /// flap window).
    pub fn record(&mut self, now_ms: i64, current: i64, target: i64) {
        let dir = match target.cmp(&current) {
            std::cmp::Ordering::Greater => {
                self.last_scale_up_at_ms = Some(now_ms);
                Action::ScaleUp
            }
            std::cmp::Ordering::Less => {
                self.last_scale_down_at_ms = Some(now_ms);
                Action::ScaleDown
            }
            std::cmp::Ordering::Equal => return,
        };
        if self.last_direction.is_some_and(|l| l != dir) {
            self.reversals_at_ms
                .retain(|&t| t > now_ms - FLAP_WINDOW_MS);
            self.reversals_at_ms.push(now_ms);
        }
        self.last_direction = Some(dir);
    }

    /// Remembers `d`, made at `now_ms`: target tracking's state always (its
    /// recommendations are history whether or not the change is applied),
    /// the change only when `applied`.
    pub fn remember(&mut self, d: &Decision, now_ms: i64, applied: bool) {
        if let Some(s) = &d.hpa_state {
            self.hpa_state = s.clone();
        }
        if applied {
            self.record(now_ms, d.current, d.target);
        }
    }

    /// Takes the cached models out for `spec` (one slot per policy): kept
    /// when they were fitted for the same predictive policies, else none
    /// (a changed policy fits cold).
    pub fn take_forecasts(&mut self, spec: &PoolPolicies) -> Vec<Option<ModelCache>> {
        let same = self.forecast_policies == predictive_policies(spec);
        let mut models = if same {
            std::mem::take(&mut self.forecasts)
        } else {
            Vec::new()
        };
        models.resize(spec.policies.len(), None);
        models
    }

    /// Keeps `models`, fitted for `spec`'s predictive policies.
    pub fn keep_forecasts(&mut self, spec: &PoolPolicies, models: Vec<Option<ModelCache>>) {
        if models.iter().any(Option::is_some) {
            self.forecast_policies = predictive_policies(spec);
            self.forecasts = models;
        } else {
            self.forecast_policies.clear();
            self.forecasts.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::PoolBounds;

    fn decision(current: i64, target: i64) -> Decision {
        Decision::to_target(
            PoolBounds {
                min: 0,
                max: 10,
                desired: current,
            },
            target,
            "t",
            String::new(),
            1.0,
            Default::default(),
        )
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn scale_up_and_scale_down_are_remembered_apart() {
        // (current, target, applied) → (last up, last down) after one at t = 5.
        let cases: &[(i64, i64, bool, Option<i64>, Option<i64>)] = &[
            (2, 3, true, Some(5), Some(1)),
            (2, 1, true, Some(0), Some(5)),
            (2, 2, true, Some(0), Some(1)),
            (2, 3, false, Some(0), Some(1)),
            (2, 1, false, Some(0), Some(1)),
        ];
        for &(current, target, applied, up, down) in cases {
            let mut m = ControllerMemory {
                last_scale_up_at_ms: Some(0),
                last_scale_down_at_ms: Some(1),
                ..ControllerMemory::default()
            };
            m.remember(&decision(current, target), 5, applied);
            assert_eq!(
                (m.last_scale_up_at_ms, m.last_scale_down_at_ms),
                (up, down),
                "{current} → {target} applied={applied}"
            );
            assert_eq!(m.last_scaled_at_ms(), up.max(down));
        }
    }

    #[test]
    fn target_tracking_state_is_kept_even_when_not_applied() {
        let mut d = decision(2, 2);
        assert_eq!(d.action, Action::Hold);
        let mut st = HpaState::default();
        st.recommendations.push(crate::hpa::Recommendation {
            timestamp_ms: 7,
            replicas: 3,
        });
        d.hpa_state = Some(st.clone());
        let mut m = ControllerMemory::default();
        m.remember(&d, 7, false);
        assert_eq!(m.hpa_state, st);
        let mut o = Observation::new(
            9,
            PoolBounds {
                min: 0,
                max: 1,
                desired: 0,
            },
        );
        m.last_scale_down_at_ms = Some(3);
        m.recall(&mut o);
        assert_eq!(o.hpa_state, st);
        assert_eq!(
            (o.last_scale_up_at_ms, o.last_scale_down_at_ms),
            (None, Some(3))
        );
    }

    #[test]
    fn round_trips_as_json() {
        let m = ControllerMemory {
            last_scale_up_at_ms: Some(1),
            last_scale_down_at_ms: None,
            ..ControllerMemory::default()
        };
        let back: ControllerMemory =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        let empty: ControllerMemory = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, ControllerMemory::default());
    }

    proptest::proptest! {
        /// After any sequence of decisions, the scale-up time is that of the
        /// last applied increase and the scale-down time that of the last
        /// applied decrease: holds and unapplied changes never move them.
        #[test]
        fn scale_times_are_those_of_the_last_applied_change_each_way(
            steps in proptest::collection::vec((0i64..10, 0i64..10, proptest::bool::ANY), 0..40)
        ) {
            let mut m = ControllerMemory::default();
            let (mut up, mut down) = (None, None);
            for (i, &(current, target, applied)) in steps.iter().enumerate() {
                let now = i as i64 * 1000;
                m.remember(&decision(current, target), now, applied);
                if applied && target > current {
                    up = Some(now);
                }
                if applied && target < current {
                    down = Some(now);
                }
                proptest::prop_assert_eq!((m.last_scale_up_at_ms, m.last_scale_down_at_ms), (up, down));
            }
        }
    }
}
