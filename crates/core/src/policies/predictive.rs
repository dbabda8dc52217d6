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

use super::common::{ceil_tol, to_instances};
use crate::forecast::Model;
use crate::observation::{Decision, Observation};
use crate::trace::RateSeries;
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
        // Checked before the fit, which is the costly part.
        if let Err(why) = self.per_instance(obs, end, iv) {
            return Decision::no_data(current, NAME, why);
        }
        let skip = h
            .values
            .len()
            .saturating_sub(keep_intervals(self.history_seconds, iv));
        let model = Model::fit(&h.values[skip..], iv);
        self.decide_with_model(obs, &model, end, iv)
    }

    /// The demand one instance serves at the planning utilization, or why
    /// the policy holds: the history ending at `end` (intervals of `iv`) is
    /// stale, or there is no capacity per instance.
    fn per_instance(&self, obs: &Observation, end: i64, iv: i64) -> Result<f64, String> {
        if end < obs.now_ms - 2 * iv || end > obs.now_ms + iv {
            return Err(format!(
                "Demand history ends {}s from now: stale, holding",
                (obs.now_ms - end) / 1000
            ));
        }
        let per_instance = obs.capacity_per_instance * self.target_utilization_percent / 100.0;
        if !(per_instance.is_finite() && per_instance > 0.0) {
            return Err("No capacity per instance: holding".into());
        }
        Ok(per_instance)
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
        let per_instance = match self.per_instance(obs, end, iv) {
            Ok(p) => p,
            Err(why) => return Decision::no_data(current, NAME, why),
        };
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

/// History intervals seen after which a cached model is refitted, in order;
/// past the last, it is refitted every [`REFIT_EVERY`] intervals.
pub const REFIT_AT: [usize; 5] = [2, 12, 48, 144, 288];
/// Refit period of a cached model once [`REFIT_AT`] is past, in intervals
/// (a day of 5-minute intervals).
pub const REFIT_EVERY: usize = 288;

/// A predictive policy's model kept between decisions, so a control loop
/// does not refit on the whole history at every tick: fitted on the history
/// window, fed each new interval with [`Model::update`], refitted on the
/// window after [`REFIT_AT`] intervals and then every [`REFIT_EVERY`].
/// [`PredictivePolicy::decide_with_model`] decides with it exactly as
/// [`PredictivePolicy::decide`] does with a fresh fit of the same model.
/// Serializable, so a control loop can keep it in its store and a new
/// leader continues it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCache {
    /// The model, fed up to `end_ms`.
    pub model: Model,
    /// End of the last interval fed, Unix ms.
    pub end_ms: i64,
    /// Interval length, ms.
    pub interval_ms: i64,
    /// Intervals seen: the window at the last cold fit plus every interval fed since.
    seen: usize,
    /// `seen` at which the next refit is due.
    next_refit: usize,
}

/// Intervals of a `history_seconds` window (at least two).
fn keep_intervals(history_seconds: i64, interval_ms: i64) -> usize {
    ((history_seconds.max(1) * 1000) / interval_ms.max(1)).max(2) as usize
}

fn next_refit_after(seen: usize) -> usize {
    REFIT_AT
        .iter()
        .copied()
        .find(|&n| n > seen)
        .unwrap_or(seen + REFIT_EVERY)
}

impl ModelCache {
    /// Whether bringing `cache` to a history ending at `end_ms` (intervals of
    /// `interval_ms`, a window of `history_seconds`) fits a model — no
    /// cache, a refit due, or the window no longer reaching back to
    /// `cache.end_ms` — so the caller must pass [`ModelCache::advance`] the
    /// whole window; otherwise the intervals from `cache.end_ms` on suffice.
    pub fn needs_full_history(
        cache: Option<&ModelCache>,
        end_ms: i64,
        interval_ms: i64,
        history_seconds: i64,
    ) -> bool {
        let Some(c) = cache else { return true };
        let iv = interval_ms.max(1);
        if c.interval_ms != iv || end_ms < c.end_ms {
            return true;
        }
        let new = ((end_ms - c.end_ms) / iv) as usize;
        new > keep_intervals(history_seconds, iv) || c.seen.saturating_add(new) >= c.next_refit
    }

    /// Brings `cache` up to the end of `history`. When `history` continues
    /// the cache (same interval, starting at or before `cache.end_ms` on the
    /// same grid, ending at or after it) the new intervals are fed to the
    /// model, and it is refitted when due; otherwise (no cache, or a
    /// history that does not continue it) a model is fitted cold. Fits use
    /// the last `history_seconds` of `history`, which must then be the whole
    /// window (see [`ModelCache::needs_full_history`]). `None` when there is
    /// no cache and fewer than two intervals have a value.
    pub fn advance(
        cache: Option<ModelCache>,
        history: &RateSeries,
        history_seconds: i64,
    ) -> Option<ModelCache> {
        let iv = history.interval_ms.max(1);
        let end = history.time_of(history.values.len());
        let keep = keep_intervals(history_seconds, iv);
        let fit =
            |values: &[Option<f64>]| Model::fit(&values[values.len().saturating_sub(keep)..], iv);
        let continued = cache.filter(|c| {
            c.interval_ms == iv
                && history.start_ms <= c.end_ms
                && c.end_ms <= end
                && (c.end_ms - history.start_ms) % iv == 0
        });
        match continued {
            Some(mut c) => {
                let from = ((c.end_ms - history.start_ms) / iv) as usize;
                for v in &history.values[from..] {
                    c.model.update(*v);
                }
                c.seen += history.values.len() - from;
                c.end_ms = end;
                if c.seen >= c.next_refit {
                    c.model = fit(&history.values);
                    c.next_refit = next_refit_after(c.seen);
                }
                Some(c)
            }
            None => {
                if history.present() < 2 {
                    return None;
                }
                let seen = history.values.len();
                Some(ModelCache {
                    model: fit(&history.values),
                    end_ms: end,
                    interval_ms: iv,
                    seen,
                    next_refit: next_refit_after(seen),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::{Action, PoolBounds};
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

    fn slice(h: &RateSeries, from: usize, to: usize) -> RateSeries {
        RateSeries {
            start_ms: h.time_of(from),
            interval_ms: h.interval_ms,
            values: h.values[from..to].to_vec(),
        }
    }

    #[test]
    fn cached_model_decides_as_a_fresh_fit() {
        let p = policy(2 * 3600);
        for now_h in [48, 200, 21 * 24] {
            let o = obs(now_h, 3);
            let c = ModelCache::advance(None, o.history.as_ref().unwrap(), p.history_seconds)
                .expect("enough history");
            assert_eq!(c.end_ms, now_h * HOUR);
            let cached = p.decide_with_model(&o, &c.model, c.end_ms, c.interval_ms);
            assert_eq!(cached, p.decide(&o), "at hour {now_h}");
        }
    }

    #[test]
    fn refit_schedule_and_cold_fits() {
        let h = history();
        let long = 90 * 86_400;
        assert!(ModelCache::advance(None, &slice(&h, 0, 1), long).is_none());
        let mut c = ModelCache::advance(None, &slice(&h, 0, 2), long).unwrap();
        assert_eq!((c.seen, c.next_refit), (2, 12));
        for n in 3..=12 {
            let full = ModelCache::needs_full_history(Some(&c), h.time_of(n), HOUR, long);
            assert_eq!(full, n == 12, "interval {n}");
            let from = if full { 0 } else { n - 1 };
            c = ModelCache::advance(Some(c), &slice(&h, from, n), long).unwrap();
        }
        assert_eq!((c.seen, c.next_refit), (12, 48));
        assert_eq!(c.model, Model::fit(&h.values[..12], HOUR), "refitted at 12");
        // A history that does not continue the cache (a gap) fits cold.
        let gap = slice(&h, 100, 200);
        let cold = ModelCache::advance(Some(c.clone()), &gap, long).unwrap();
        assert_eq!(cold.model, Model::fit(&gap.values, HOUR));
        assert_eq!((cold.seen, cold.end_ms), (100, h.time_of(200)));
        // So does a different interval, or a history ending before the cache.
        assert!(ModelCache::needs_full_history(
            Some(&c),
            c.end_ms,
            HOUR / 2,
            long
        ));
        assert!(ModelCache::needs_full_history(
            Some(&c),
            c.end_ms - HOUR,
            HOUR,
            long
        ));
        assert!(ModelCache::needs_full_history(
            Some(&c),
            c.end_ms + 25 * HOUR,
            HOUR,
            24 * 3600
        ));
        assert!(!ModelCache::needs_full_history(
            Some(&c),
            c.end_ms + 24 * HOUR,
            HOUR,
            25 * 3600
        ));
        assert!(ModelCache::needs_full_history(None, c.end_ms, HOUR, long));
        // Past the schedule it refits every REFIT_EVERY intervals.
        assert_eq!(next_refit_after(288), 288 + REFIT_EVERY);
        assert_eq!(next_refit_after(1000), 1000 + REFIT_EVERY);
    }

    #[test]
    fn fits_use_the_last_history_seconds() {
        let h = history();
        let c = ModelCache::advance(None, &h, 7 * 86_400).unwrap();
        assert_eq!(
            c.model,
            Model::fit(&h.values[h.values.len() - 7 * 24..], HOUR)
        );
    }

    proptest::proptest! {
        /// Loading only the intervals after the cache (when no fit is due)
        /// gives exactly the cache that loading the whole window gives.
        #[test]
        fn partial_loads_equal_full_loads(
            values in proptest::collection::vec(proptest::option::weighted(0.9, 0.0f64..1000.0), 2..160),
            steps in proptest::collection::vec(1usize..20, 1..30),
            window_h in 2i64..200,
        ) {
            let h = RateSeries { start_ms: 0, interval_ms: HOUR, values };
            let n = h.values.len();
            let secs = window_h * 3600;
            let w = window_h as usize;
            let (mut full, mut partial): (Option<ModelCache>, Option<ModelCache>) = (None, None);
            let mut end = 0usize;
            for s in steps {
                end = (end + s).min(n);
                let start = end.saturating_sub(w);
                full = ModelCache::advance(full, &slice(&h, start, end), secs);
                let from = match partial.as_ref() {
                    Some(c) if !ModelCache::needs_full_history(Some(c), h.time_of(end), HOUR, secs) => {
                        (c.end_ms / HOUR) as usize
                    }
                    _ => start,
                };
                partial = ModelCache::advance(partial, &slice(&h, from, end), secs);
                proptest::prop_assert_eq!(&full, &partial);
            }
        }
    }
}
