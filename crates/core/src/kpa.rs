//! The Knative Pod Autoscaler (KPA): the decider of Knative Serving's
//! `pkg/autoscaler/scaling/autoscaler.go` (`autoscaler.Scale`), its metric
//! windows (`pkg/autoscaler/aggregation/bucketing.go`,
//! `TimedFloat64Buckets::WindowAverage`) and the scale-to-zero rules of its
//! reconciler (`pkg/reconciler/autoscaling/kpa/scaler.go`,
//! `scaler.handleScaleToZero`), as a pure state machine. Used by the
//! simulator's `kpa` baseline.
//!
//! Followed from the source, with the documented defaults of
//! `config-autoscaler` ([`KpaConfig::default`]):
//! * The observed concurrency (requests in flight and buffered, summed over
//!   the revision's pods and the activator) is recorded in 1 s buckets; the
//!   stable value is the average over the stable window (60 s), the panic
//!   value over the panic window (10 % of it: 6 s). Like `WindowAverage`, an
//!   average over a window not yet filled since the first write divides by
//!   the buckets written, gaps within the window count as 0, and a window
//!   without any write is "no data" (the decider then makes no decision).
//! * `readyPodsCount = max(1, ready)`; `maxScaleUp = ceil(maxScaleUpRate ×
//!   ready)`, `maxScaleDown = floor(ready / maxScaleDownRate)` (the revision
//!   is reachable); desired stable and panic counts are
//!   `ceil(value / target)` clamped into `[maxScaleDown, maxScaleUp]`, the
//!   target being `containerConcurrency × targetUtilization`.
//! * Panic starts (or is extended) when `ceil(panic / target) / ready ≥
//!   panicThreshold` (200 %); it ends once not over the threshold and the
//!   last extension is more than a stable window old. In panic the count
//!   never decreases (`maxPanicPods`). A decider created over more than one
//!   ready pod starts in panic.
//! * Scale to zero (reconciler): a desired 0 is applied only after the pod
//!   autoscaler has been active for a stable window (before that the scale
//!   is held at 1), has then been marked inactive (the activator put in the
//!   request path; the scale is left as it is), and has been inactive for
//!   `scale-to-zero-grace-period` (30 s). Without scale to zero a desired 0
//!   becomes 1. Any desired count above 0 reactivates.
//!
//! Not modelled: `ScaleDownDelay` (default 0), `activationScale` (default
//! 1), target burst capacity (it routes requests, it does not size the
//! fleet), RPS metrics.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::validate::Violations;

/// Knative's `config-autoscaler` settings the KPA reads.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpaConfig {
    /// `containerConcurrency`: requests one pod serves at once.
    pub container_concurrency: f64,
    /// `container-concurrency-target-percentage` as a fraction (default 0.7).
    pub target_utilization: f64,
    /// `stable-window`, ms (default 60 000).
    pub stable_window_ms: i64,
    /// `panic-window-percentage` (default 10: 10 % of the stable window).
    pub panic_window_percentage: f64,
    /// `panic-threshold-percentage` as a ratio (default 2.0 = 200 %).
    pub panic_threshold: f64,
    /// `max-scale-up-rate` (default 1000).
    pub max_scale_up_rate: f64,
    /// `max-scale-down-rate` (default 2).
    pub max_scale_down_rate: f64,
    /// `scale-to-zero-grace-period`, ms (default 30 000).
    pub scale_to_zero_grace_ms: i64,
    /// `enable-scale-to-zero` (default true).
    pub enable_scale_to_zero: bool,
    /// `min-scale` (default 0).
    pub min_scale: i64,
    /// `max-scale` (0: unbounded).
    pub max_scale: i64,
}

impl Default for KpaConfig {
    fn default() -> Self {
        KpaConfig {
            container_concurrency: 1.0,
            target_utilization: 0.7,
            stable_window_ms: 60_000,
            panic_window_percentage: 10.0,
            panic_threshold: 2.0,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            scale_to_zero_grace_ms: 30_000,
            enable_scale_to_zero: true,
            min_scale: 0,
            max_scale: 0,
        }
    }
}

/// Width of a metric bucket, ms (Knative scrapes and buckets per second).
pub const KPA_BUCKET_MS: i64 = 1_000;

impl KpaConfig {
    /// Concurrency one pod is sized for: `containerConcurrency × target`.
    pub fn target_value(&self) -> f64 {
        self.container_concurrency * self.target_utilization
    }

    /// The panic window, ms.
    pub fn panic_window_ms(&self) -> i64 {
        ((self.stable_window_ms as f64 * self.panic_window_percentage / 100.0) as i64)
            .max(KPA_BUCKET_MS)
    }

    /// Every violation, each with its field name.
    pub fn validate(&self) -> Result<(), Violations> {
        let mut v = Violations::default();
        let pos = |x: f64| x.is_finite() && x > 0.0;
        if !pos(self.container_concurrency) {
            v.push("container_concurrency", "must be a number > 0");
        }
        if !(pos(self.target_utilization) && self.target_utilization <= 1.0) {
            v.push("target_utilization", "must be > 0 and <= 1");
        }
        v.check_i64("stable_window_ms", self.stable_window_ms, 6_000, 3_600_000);
        if !(pos(self.panic_window_percentage) && self.panic_window_percentage <= 100.0) {
            v.push("panic_window_percentage", "must be > 0 and <= 100");
        }
        if !(self.panic_threshold.is_finite() && self.panic_threshold >= 1.1) {
            v.push("panic_threshold", "must be a number >= 1.1");
        }
        if !(self.max_scale_up_rate.is_finite() && self.max_scale_up_rate > 1.0) {
            v.push("max_scale_up_rate", "must be a number > 1");
        }
        if !(self.max_scale_down_rate.is_finite() && self.max_scale_down_rate > 1.0) {
            v.push("max_scale_down_rate", "must be a number > 1");
        }
        v.check_i64(
            "scale_to_zero_grace_ms",
            self.scale_to_zero_grace_ms,
            0,
            3_600_000,
        );
        if self.min_scale < 0 {
            v.push("min_scale", "must be >= 0");
        }
        if self.max_scale < 0 || (self.max_scale > 0 && self.max_scale < self.min_scale) {
            v.push("max_scale", "must be 0 (unbounded) or >= min_scale");
        }
        v.into_result(())
    }

    /// `applyBounds`: `x` into `[min_scale, max_scale]` (`max_scale` 0: no upper bound).
    fn bounds(&self, x: i64) -> i64 {
        let x = x.max(self.min_scale);
        if self.max_scale > 0 {
            x.min(self.max_scale)
        } else {
            x
        }
    }
}

/// The decider's and reconciler's memory between ticks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpaState {
    /// Per-second buckets `(second, sum of readings, readings)`, oldest
    /// first, at most a stable window of them.
    buckets: VecDeque<(i64, f64, u32)>,
    /// First bucket written since the window was last empty (second).
    first_write_s: Option<i64>,
    /// When panic mode began or was last extended, ms.
    panic_time_ms: Option<i64>,
    /// The highest count while panicking.
    max_panic_pods: i64,
    /// When the pod autoscaler last became active, ms.
    active_since_ms: Option<i64>,
    /// When it was marked inactive (activator in the path), ms.
    inactive_since_ms: Option<i64>,
}

/// One tick's result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[must_use]
pub struct KpaDecision {
    /// The scale to apply, or `None` to leave the current scale (no data
    /// yet, or the reconciler waiting to scale to zero).
    pub scale: Option<i64>,
    /// The decider's desired pod count (`None`: no data).
    pub desired: Option<i64>,
    /// Stable-window concurrency.
    pub stable: f64,
    /// Panic-window concurrency.
    pub panic: f64,
    /// Whether the decider is in panic mode after this tick.
    pub panicking: bool,
}

impl KpaState {
    /// A new autoscaler at `now_ms` over `ready` pods: in panic when more
    /// than one pod is ready (`newAutoscaler`), active when any is.
    pub fn new(now_ms: i64, ready: i64) -> KpaState {
        KpaState {
            buckets: VecDeque::new(),
            first_write_s: None,
            panic_time_ms: (ready > 1).then_some(now_ms),
            max_panic_pods: ready.max(0),
            active_since_ms: (ready > 0).then_some(now_ms),
            inactive_since_ms: None,
        }
    }

    /// Records one concurrency reading taken at `now_ms` (readings in the
    /// same second are averaged: one pod's report per second).
    pub fn record(&mut self, cfg: &KpaConfig, now_ms: i64, concurrency: f64) {
        let s = now_ms.div_euclid(KPA_BUCKET_MS);
        let keep = cfg.stable_window_ms / KPA_BUCKET_MS;
        let value = if concurrency.is_finite() {
            concurrency.max(0.0)
        } else {
            0.0
        };
        match self.buckets.back_mut() {
            Some(b) if b.0 == s => {
                b.1 += value;
                b.2 += 1;
            }
            Some(b) if b.0 > s => return, // older than the newest: ignored
            last => {
                if last.is_none_or(|b| s - b.0 >= keep) {
                    self.buckets.clear();
                    self.first_write_s = Some(s);
                }
                self.buckets.push_back((s, value, 1));
            }
        }
        while self.buckets.front().is_some_and(|b| s - b.0 >= keep) {
            self.buckets.pop_front();
        }
    }

    /// `WindowAverage` over the last `window_ms` at `now_ms`; `None` when no
    /// bucket lies within it.
    fn window_average(&self, window_ms: i64, now_ms: i64) -> Option<f64> {
        let now_s = now_ms.div_euclid(KPA_BUCKET_MS);
        let n = (window_ms / KPA_BUCKET_MS).max(1);
        let last = self.buckets.back()?.0;
        let d = now_s - last;
        if d >= n {
            return None;
        }
        let total: f64 = self
            .buckets
            .iter()
            .filter(|b| b.0 > now_s - n && b.0 <= now_s)
            .map(|b| b.1 / f64::from(b.2))
            .sum();
        let since_first = self.first_write_s.map_or(1, |f| last - f + 1);
        let denom = since_first.min(n - d.max(0)).max(1);
        Some(total / denom as f64)
    }

    /// The stable and panic concurrency at `now_ms` (`StableAndPanicConcurrency`).
    pub fn stable_and_panic(&self, cfg: &KpaConfig, now_ms: i64) -> Option<(f64, f64)> {
        let stable = self.window_average(cfg.stable_window_ms, now_ms)?;
        let panic = self
            .window_average(cfg.panic_window_ms(), now_ms)
            .unwrap_or(0.0);
        Some((stable, panic))
    }

    /// One tick at `now_ms` with `ready` pods ready and `current` the scale
    /// now set: the decider (`autoscaler.Scale`) and then the reconciler's
    /// bounds and scale-to-zero rules. Pure given `self`.
    pub fn tick(&mut self, cfg: &KpaConfig, now_ms: i64, ready: i64, current: i64) -> KpaDecision {
        let Some((stable, panic)) = self.stable_and_panic(cfg, now_ms) else {
            return KpaDecision {
                scale: None,
                desired: None,
                stable: 0.0,
                panic: 0.0,
                panicking: self.panic_time_ms.is_some(),
            };
        };
        let ready_f = (ready.max(0) as f64).max(1.0);
        let target = cfg.target_value();
        let max_up = (cfg.max_scale_up_rate * ready_f).ceil();
        let max_down = (ready_f / cfg.max_scale_down_rate).floor();
        let dspc = (stable / target).ceil();
        let dppc = (panic / target).ceil();
        let stable_pods = dspc.max(max_down).min(max_up) as i64;
        let panic_pods = dppc.max(max_down).min(max_up) as i64;
        let over = dppc / ready_f >= cfg.panic_threshold;
        if over {
            self.panic_time_ms = Some(now_ms);
        } else if self
            .panic_time_ms
            .is_some_and(|p| p + cfg.stable_window_ms < now_ms)
        {
            self.panic_time_ms = None;
            self.max_panic_pods = 0;
        }
        let mut desired = stable_pods;
        if self.panic_time_ms.is_some() {
            desired = desired.max(panic_pods);
            if desired > self.max_panic_pods {
                self.max_panic_pods = desired;
            }
            desired = self.max_panic_pods;
        }
        let scale = self.reconcile(cfg, now_ms, cfg.bounds(desired), current);
        KpaDecision {
            scale,
            desired: Some(desired),
            stable,
            panic,
            panicking: self.panic_time_ms.is_some(),
        }
    }

    /// `handleScaleToZero` and activation: what scale to apply for a
    /// bounded desired count.
    fn reconcile(
        &mut self,
        cfg: &KpaConfig,
        now_ms: i64,
        desired: i64,
        current: i64,
    ) -> Option<i64> {
        if desired != 0 {
            if self.active_since_ms.is_none() || self.inactive_since_ms.is_some() {
                self.active_since_ms = Some(now_ms);
            }
            self.inactive_since_ms = None;
            return Some(desired);
        }
        if !cfg.enable_scale_to_zero {
            return Some(1);
        }
        if current == 0 {
            return Some(0);
        }
        match (self.active_since_ms, self.inactive_since_ms) {
            (_, Some(since)) => (now_ms - since >= cfg.scale_to_zero_grace_ms).then_some(0),
            (Some(a), None) if now_ms - a < cfg.stable_window_ms => Some(1),
            _ => {
                self.inactive_since_ms = Some(now_ms);
                (cfg.scale_to_zero_grace_ms == 0).then_some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(cc: f64) -> KpaConfig {
        KpaConfig {
            container_concurrency: cc,
            ..KpaConfig::default()
        }
    }

    /// Feeds `conc` once a second over `[from_s, to_s)`.
    fn feed(s: &mut KpaState, c: &KpaConfig, from_s: i64, to_s: i64, conc: f64) {
        for t in from_s..to_s {
            s.record(c, t * 1000, conc);
        }
    }

    #[test]
    fn defaults_are_knatives() {
        let c = KpaConfig::default();
        assert_eq!(c.stable_window_ms, 60_000);
        assert_eq!(c.panic_window_ms(), 6_000);
        assert_eq!(c.panic_threshold, 2.0);
        assert_eq!(c.max_scale_up_rate, 1000.0);
        assert_eq!(c.max_scale_down_rate, 2.0);
        assert_eq!(c.scale_to_zero_grace_ms, 30_000);
        assert!((cfg(10.0).target_value() - 7.0).abs() < 1e-12);
        assert!(c.validate().is_ok());
        let bad = KpaConfig {
            target_utilization: 1.5,
            max_scale: -1,
            ..c
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.contains("target_utilization") && e.contains("max_scale"),
            "{e}"
        );
    }

    #[test]
    fn window_averages_table() {
        let c = cfg(1.0);
        // (name, readings (second, value), now s, stable, panic)
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, &[(i64, f64)], i64, Option<(f64, f64)>)] = &[
            ("no data", &[], 10, None),
            (
                "partial window divides by buckets written",
                &[(0, 4.0), (1, 2.0)],
                1,
                Some((3.0, 3.0)),
            ),
            (
                "gaps count as zero; panic is the last 6 s",
                &[(0, 60.0), (10, 6.0)],
                10,
                Some((6.0, 1.0)),
            ),
            (
                "a gap counts as zero",
                &[(0, 10.0), (2, 20.0)],
                2,
                Some((10.0, 10.0)),
            ),
            ("nothing for a window: no data", &[(0, 5.0)], 60, None),
        ];
        for (name, rs, now, want) in cases {
            let mut s = KpaState::new(0, 1);
            for (t, v) in *rs {
                s.record(&c, t * 1000, *v);
            }
            let got = s.stable_and_panic(&c, now * 1000);
            match (got, want) {
                (None, None) => {}
                (Some((a, b)), Some((x, y))) => {
                    assert!(
                        (a - x).abs() < 1e-9 && (b - y).abs() < 1e-9,
                        "{name}: {got:?}"
                    );
                }
                _ => panic!("{name}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn decider_table() {
        // containerConcurrency 10 → target 7 per pod.
        let c = cfg(10.0);
        // (name, ready, steady concurrency for 60 s, then last 6 s, want desired, panicking)
        let cases: &[(&str, i64, f64, f64, i64, bool)] = &[
            ("steady 35 needs 5", 5, 35.0, 35.0, 5, false),
            ("scale-down at most halves", 8, 7.0, 7.0, 4, false),
            ("a burst doubling the need panics", 2, 14.0, 70.0, 10, true),
            (
                "below the panic threshold stays stable",
                2,
                14.0,
                20.0,
                3,
                false,
            ),
            ("no pods ready counts as one", 0, 0.5, 0.5, 1, false),
        ];
        for (name, ready, steady, burst, want, panics) in cases {
            let mut s = KpaState::new(0, 1);
            s.panic_time_ms = None;
            feed(&mut s, &c, 0, 54, *steady);
            feed(&mut s, &c, 54, 60, *burst);
            let d = s.tick(&c, 59_000, *ready, *ready);
            assert_eq!(d.desired, Some(*want), "{name}: {d:?}");
            assert_eq!(d.panicking, *panics, "{name}");
        }
    }

    #[test]
    fn panic_holds_the_count_until_a_stable_window_passes() {
        let c = cfg(1.0);
        let mut s = KpaState::new(0, 1);
        feed(&mut s, &c, 0, 60, 0.7);
        feed(&mut s, &c, 60, 66, 14.0); // burst: 20 pods
        let d = s.tick(&c, 65_000, 1, 1);
        assert!(d.panicking);
        let peak = d.scale.unwrap();
        assert_eq!(peak, 20);
        // The burst is over; in panic the count does not drop.
        feed(&mut s, &c, 66, 100, 0.7);
        let d = s.tick(&c, 99_000, 20, 20);
        assert_eq!(d.scale, Some(peak), "{d:?}");
        // More than a stable window after the last extension: un-panic.
        feed(&mut s, &c, 100, 127, 0.7);
        let d = s.tick(&c, 126_000, 20, 20);
        assert!(!d.panicking);
        assert!(d.scale.unwrap() < peak, "{d:?}");
    }

    #[test]
    fn scale_to_zero_after_the_grace_period_and_activation() {
        let c = cfg(1.0);
        let mut s = KpaState::new(0, 1);
        feed(&mut s, &c, 0, 10, 1.0);
        feed(&mut s, &c, 10, 75, 0.0);
        // Stable window of zeros: desired 0, active > 60 s: marked inactive, scale held.
        assert_eq!(s.tick(&c, 74_000, 1, 1).scale, None);
        feed(&mut s, &c, 75, 104, 0.0);
        assert_eq!(s.tick(&c, 103_000, 1, 1).scale, None, "inside the grace");
        feed(&mut s, &c, 104, 105, 0.0);
        assert_eq!(s.tick(&c, 104_000, 1, 1).scale, Some(0), "grace over");
        // A request buffered at the activator activates it: ceil(1 / 0.7) = 2.
        s.record(&c, 200_000, 1.0);
        assert_eq!(s.tick(&c, 200_000, 0, 0).scale, Some(2));
        // Without scale to zero, desired 0 is 1.
        let c1 = KpaConfig {
            enable_scale_to_zero: false,
            ..c
        };
        let mut s = KpaState::new(0, 1);
        feed(&mut s, &c1, 0, 70, 0.0);
        assert_eq!(s.tick(&c1, 69_000, 1, 1).scale, Some(1));
    }

    proptest! {
        /// Whatever the readings, a decision respects the rate limits and
        /// bounds, and the panic count never falls while panicking.
        #[test]
        fn decisions_respect_rates_and_bounds(
            readings in proptest::collection::vec(0.0f64..200.0, 1..200),
            ready in 0i64..50,
            cc in 1.0f64..16.0,
            max_scale in 0i64..100,
        ) {
            let c = KpaConfig { container_concurrency: cc, max_scale, ..KpaConfig::default() };
            let mut s = KpaState::new(0, ready);
            let mut last_panic: Option<i64> = None;
            for (i, r) in readings.iter().enumerate() {
                let now = i as i64 * 1000;
                s.record(&c, now, *r);
                if i % 2 == 1 {
                    let d = s.tick(&c, now, ready, ready);
                    let rf = (ready as f64).max(1.0);
                    if let Some(x) = d.desired {
                        prop_assert!(x as f64 <= (1000.0 * rf).ceil());
                        prop_assert!(x as f64 >= (rf / 2.0).floor());
                        if d.panicking {
                            if let Some(p) = last_panic { prop_assert!(x >= p); }
                            last_panic = Some(x);
                        } else {
                            last_panic = None;
                        }
                    }
                    if let Some(sc) = d.scale {
                        prop_assert!(sc >= 0);
                        if max_scale > 0 { prop_assert!(sc <= max_scale); }
                    }
                }
            }
        }
    }
}
