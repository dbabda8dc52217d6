//! Predictive pre-scaling: fits [`crate::forecast::Model`] on the pool's
//! demand history (`Observation::history`, the last `history_seconds`),
//! forecasts the demand over `lookahead_seconds` with a prediction interval,
//! and asks now for the capacity that every interval starting within the
//! next `cold_start_seconds` needs — so instances started now are ready
//! `cold_start_seconds` before the load they serve arrives. Instances needed
//! for a demand `x`: `ceil(x / (capacity_per_instance × target_utilization))`.
//!
//! Confidence is `1 - (upper - lower) / (upper + lower)` of the decisive
//! interval's prediction interval; below `confidence_threshold` the policy
//! holds. `urgency` (in the inputs) is 1 when the first interval needing
//! more than the current capacity must be prepared for now (`needed` in the
//! inputs is the capacity asked for now), falling linearly
//! to 0 at `lookahead_seconds` of slack. With `forecast_only` the decision
//! holds and records the target it would have set (`would_target`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ceil_tol, to_instances};
use crate::forecast::Model;
use crate::policy::{Decision, Observation};
use crate::validate::Violations;

const NAME: &str = "predictive";

fn d_util() -> f64 {
    70.0
}
fn d_level() -> f64 {
    0.9
}
fn d_hist() -> i64 {
    90 * 86_400
}

/// The predictive policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictivePolicy {
    /// How far ahead to look, seconds, `60..=604800`.
    pub lookahead_seconds: i64,
    /// Minimum confidence to act, `[0, 1]`.
    pub confidence_threshold: f64,
    /// Time for a new instance to become ready, seconds, `0..=86400`.
    pub cold_start_seconds: i64,
    /// Utilization to plan for, percent, `(0, 100]` (default 70).
    #[serde(default = "d_util")]
    pub target_utilization_percent: f64,
    /// Record what would be done without doing it.
    #[serde(default)]
    pub forecast_only: bool,
    /// Coverage of the prediction interval, `(0, 1)` (default 0.9).
    #[serde(default = "d_level")]
    pub prediction_level: f64,
    /// History used for the fit, seconds, `3600..=31536000` (default 90 days).
    #[serde(default = "d_hist")]
    pub history_seconds: i64,
}

impl PredictivePolicy {
    /// Records every violation under `prefix`.
    pub fn validate(&self, prefix: &str, v: &mut Violations) {
        let f = |n: &str| format!("{prefix}.{n}");
        v.check_i64(&f("lookahead_seconds"), self.lookahead_seconds, 60, 604_800);
        v.check_f64(
            &f("confidence_threshold"),
            self.confidence_threshold,
            0.0,
            1.0,
        );
        v.check_i64(&f("cold_start_seconds"), self.cold_start_seconds, 0, 86_400);
        if !(self.target_utilization_percent.is_finite()
            && self.target_utilization_percent > 0.0
            && self.target_utilization_percent <= 100.0)
        {
            v.push(f("target_utilization_percent"), "must be > 0 and <= 100");
        }
        if !(self.prediction_level > 0.0 && self.prediction_level < 1.0) {
            v.push(f("prediction_level"), "must be > 0 and < 1");
        }
        v.check_i64(
            &f("history_seconds"),
            self.history_seconds,
            3600,
            31_536_000,
        );
    }

    /// Evaluates the policy (see the module docs).
    pub fn decide(&self, obs: &Observation) -> Decision {
        let b = obs.bounds;
        let current = b.desired;
        let Some(h) = obs.history.as_ref().filter(|h| h.present() >= 2) else {
            return Decision::no_data(current, NAME, "No demand history: holding".into());
        };
        let iv = h.interval_ms.max(1);
        let end = h.time_of(h.values.len());
        if end < obs.now_ms - 2 * iv || end > obs.now_ms + iv {
            return Decision::no_data(
                current,
                NAME,
                format!(
                    "Demand history ends {}s from now: stale, holding",
                    (obs.now_ms - end) / 1000
                ),
            );
        }
        let per_instance = obs.capacity_per_instance * self.target_utilization_percent / 100.0;
        if !(per_instance.is_finite() && per_instance > 0.0) {
            return Decision::no_data(current, NAME, "No capacity per instance: holding".into());
        }
        let keep = ((self.history_seconds.max(1) * 1000) / iv).max(2) as usize;
        let skip = h.values.len().saturating_sub(keep);
        let model = Model::fit(&h.values[skip..], iv);
        self.decide_with_model(obs, &model, end, iv)
    }

    /// Evaluates the policy with a model already fitted and updated up to
    /// the interval ending at `history_end_ms` (intervals of `interval_ms`),
    /// instead of refitting on `Observation::history`: the cheap path for a
    /// caller that keeps the model between decisions and feeds it each new
    /// interval with [`Model::update`] (the simulator; an engine may do the
    /// same). [`PredictivePolicy::decide`] fits and then calls this, so
    /// both paths decide identically for the same model.
    pub fn decide_with_model(
        &self,
        obs: &Observation,
        model: &Model,
        history_end_ms: i64,
        interval_ms: i64,
    ) -> Decision {
        let b = obs.bounds;
        let current = b.desired;
        let iv = interval_ms.max(1);
        let end = history_end_ms;
        if model.observed() < 2 {
            return Decision::no_data(current, NAME, "No demand history: holding".into());
        }
        if end < obs.now_ms - 2 * iv || end > obs.now_ms + iv {
            return Decision::no_data(
                current,
                NAME,
                format!(
                    "Demand history ends {}s from now: stale, holding",
                    (obs.now_ms - end) / 1000
                ),
            );
        }
        let per_instance = obs.capacity_per_instance * self.target_utilization_percent / 100.0;
        if !(per_instance.is_finite() && per_instance > 0.0) {
            return Decision::no_data(current, NAME, "No capacity per instance: holding".into());
        }
        // Forecast step k (1-based) covers [end + (k-1) iv, end + k iv).
        let look_ms = self.lookahead_seconds.max(1) * 1000;
        let cold_ms = self.cold_start_seconds.max(0) * 1000;
        let steps =
            (((obs.now_ms + look_ms - end).max(0) + iv - 1) / iv).clamp(1, 100_000) as usize;
        let f = model.forecast(steps, self.prediction_level);
        let need = |x: f64| to_instances(ceil_tol(x / per_instance));
        let (mut pre, mut pre_k, mut peak, mut first_over) = (0i64, 0usize, 0i64, None);
        for k in 0..steps {
            let (s, e) = (end + k as i64 * iv, end + (k as i64 + 1) * iv);
            if e <= obs.now_ms {
                continue;
            }
            let n = need(f.point[k]);
            if s <= obs.now_ms + cold_ms && n >= pre {
                pre = n;
                pre_k = k;
            }
            peak = peak.max(n);
            if n > current && first_over.is_none() {
                first_over = Some(s.max(obs.now_ms));
            }
        }
        let (lo, up) = (f.lower[pre_k], f.upper[pre_k]);
        let confidence = if lo + up > 0.0 {
            (1.0 - (up - lo) / (up + lo)).clamp(0.0, 1.0)
        } else {
            1.0
        };
        let urgency = first_over.map_or(0.0, |t| {
            let slack = (t - obs.now_ms - cold_ms) as f64;
            if slack <= 0.0 {
                1.0
            } else {
                (1.0 - slack / look_ms as f64).clamp(0.0, 1.0)
            }
        });
        let mut inputs = BTreeMap::new();
        inputs.insert("predicted_load".into(), f.point[pre_k]);
        inputs.insert("predicted_lower".into(), lo);
        inputs.insert("predicted_upper".into(), up);
        inputs.insert("needed".into(), pre as f64);
        inputs.insert("peak_needed".into(), peak as f64);
        inputs.insert("spike_expected".into(), f64::from(u8::from(peak > current)));
        inputs.insert("urgency".into(), urgency);
        inputs.insert("confidence_threshold".into(), self.confidence_threshold);
        let what = format!(
            "{} forecasts {:.1} (interval {:.1}..{:.1} at {:.0}%) within the {}s cold start: {} instance(s); peak {} within {}s",
            f.model.name(),
            f.point[pre_k],
            lo,
            up,
            self.prediction_level * 100.0,
            self.cold_start_seconds,
            pre,
            peak,
            self.lookahead_seconds
        );
        if confidence < self.confidence_threshold {
            let mut d = Decision::hold(
                current,
                NAME,
                format!(
                    "{what}; confidence {confidence:.2} below {}: holding",
                    self.confidence_threshold
                ),
                confidence,
            );
            d.inputs = inputs;
            return d;
        }
        if self.forecast_only {
            inputs.insert("would_target".into(), b.clamp(pre) as f64);
            let mut d = Decision::hold(
                current,
                NAME,
                format!("Forecast only: would scale to {}; {what}", b.clamp(pre)),
                confidence,
            );
            d.inputs = inputs;
            return d;
        }
        Decision::to_target(b, pre, NAME, what, confidence, inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Action;
    use crate::pool::PoolBounds;
    use crate::trace::RateSeries;

    const HOUR: i64 = 3_600_000;

    /// 21 days of hourly demand: 100 at night, 1000 from 09:00 to 17:00.
    fn history() -> RateSeries {
        RateSeries {
            start_ms: 0,
            interval_ms: HOUR,
            values: (0..21 * 24)
                .map(|i| {
                    Some(if (9..17).contains(&(i % 24)) {
                        1000.0
                    } else {
                        100.0
                    })
                })
                .collect(),
        }
    }

    fn policy(cold: i64) -> PredictivePolicy {
        PredictivePolicy {
            lookahead_seconds: 4 * 3600,
            confidence_threshold: 0.5,
            cold_start_seconds: cold,
            target_utilization_percent: 100.0,
            forecast_only: false,
            prediction_level: 0.9,
            history_seconds: 90 * 86_400,
        }
    }

    fn obs(now_h: i64, desired: i64) -> Observation {
        let mut h = history();
        h.values.truncate(now_h as usize);
        let mut o = Observation::new(
            now_h * HOUR,
            PoolBounds {
                min: 1,
                max: 100,
                desired,
            },
        );
        o.capacity_per_instance = 100.0;
        o.history = Some(h);
        o
    }

    #[test]
    fn prescales_cold_start_before_the_morning_peak() {
        // Day 20, 07:30: the 09:00 peak is 90 min away.
        let now = 20 * 24 + 7;
        let mut o = obs(now, 1);
        o.now_ms += HOUR / 2;
        // Cold start 1 h: 09:00 is not within reach yet.
        let d = policy(3600).decide(&o);
        assert_eq!(d.target, 1, "{}", d.reason);
        assert_eq!(d.inputs["spike_expected"], 1.0);
        let u1 = d.inputs["urgency"];
        // Cold start 90 min: the 09:00 interval must be prepared now.
        let d = policy(5400).decide(&o);
        assert_eq!((d.action, d.target), (Action::ScaleUp, 10), "{}", d.reason);
        assert_eq!(d.inputs["urgency"], 1.0);
        assert!(u1 < 1.0 && u1 > 0.8, "{u1}");
        assert!(d.confidence >= 0.5);
    }

    #[test]
    fn forecast_only_records_without_acting() {
        let mut p = policy(5400);
        p.forecast_only = true;
        let mut o = obs(20 * 24 + 7, 1);
        o.now_ms += HOUR / 2;
        let d = p.decide(&o);
        assert_eq!((d.action, d.target), (Action::Hold, 1));
        assert_eq!(d.inputs["would_target"], 10.0);
        assert!(d.reason.starts_with("Forecast only: would scale to 10"));
    }

    #[test]
    fn low_confidence_holds() {
        let p = policy(5400);
        let mut o = obs(20 * 24 + 7, 1);
        o.now_ms += HOUR / 2;
        // Erratic demand: ±60% around the same pattern.
        if let Some(h) = o.history.as_mut() {
            for (i, v) in h.values.iter_mut().enumerate() {
                *v = v.map(|x| x * if (i * i * 31 + 7) % 11 < 5 { 1.6 } else { 0.4 });
            }
        }
        let d = p.decide(&o);
        assert_eq!(d.action, Action::Hold);
        assert!(d.reason.contains("below 0.5"), "{}", d.reason);
    }

    #[test]
    fn stale_or_missing_history_holds() {
        let mut o = obs(20 * 24, 50);
        o.now_ms += 3 * HOUR;
        let d = policy(0).decide(&o);
        assert!(d.data_missing && d.target == 50, "{}", d.reason);
        o.history = None;
        assert!(policy(0).decide(&o).data_missing);
    }

    #[test]
    fn short_history_falls_back_to_seasonal_naive() {
        // 30 hours of history: seasonal naive from the day before.
        let mut o = obs(24 + 8, 1);
        o.now_ms += HOUR / 2;
        let d = policy(3600).decide(&o);
        assert!(d.reason.starts_with("seasonal_naive"), "{}", d.reason);
        assert_eq!(d.target, 10, "{}", d.reason);
    }

    #[test]
    fn cached_model_path_decides_like_a_refit() {
        let p = policy(7200);
        for now_h in [21 * 24 + 6, 21 * 24 + 12] {
            let o = obs(now_h, 2);
            let h = o.history.clone().expect("history");
            let model = Model::fit(&h.values, h.interval_ms);
            let end = h.time_of(h.values.len());
            assert_eq!(
                p.decide(&o),
                p.decide_with_model(&o, &model, end, h.interval_ms)
            );
        }
    }

    #[test]
    fn cached_model_path_holds_on_stale_end() {
        let p = policy(7200);
        let o = obs(21 * 24 + 6, 2);
        let h = o.history.clone().expect("history");
        let model = Model::fit(&h.values, h.interval_ms);
        let d = p.decide_with_model(&o, &model, 0, h.interval_ms);
        assert!(d.data_missing);
    }
}
