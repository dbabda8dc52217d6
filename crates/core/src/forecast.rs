//! Demand forecasting for the predictive policy and `fleetscale forecast`.
//!
//! The model is double seasonal Holt-Winters exponential smoothing with a
//! first-order autoregressive adjustment of the residual, as in
//! J. W. Taylor, "Short-term electricity demand forecasting using double
//! seasonal exponential smoothing", Journal of the Operational Research
//! Society 54(8), 799–805, 2003 — additive, on `ln(1 + y)` (so seasonality is
//! multiplicative in `y` and forecasts are never negative):
//!
//! ```text
//! r_t  = z_t - (l + d[t mod s1] + w[t mod s2])          (Holt-Winters error)
//! l   += α r_t ;  d[t mod s1] += δ (1-α) r_t ;  w[t mod s2] += ω (1-α) r_t
//! ẑ_{t+k} = l + d[(t+k) mod s1] + w[(t+k) mod s2] + φ^k r_t
//! ```
//!
//! with `s1` one day and `s2` one week of intervals. Parameters minimise the
//! in-sample one-step squared error (coordinate search over a fixed grid, a
//! bounded number of passes). The prediction interval uses the one-step
//! residual deviation `σ` widened as for simple exponential smoothing,
//! `σ_k² = σ² (1 + (k-1) α²)` (Hyndman et al., *Forecasting with Exponential
//! Smoothing*, 2008, table 6.1, class 1), and is back-transformed.
//!
//! Short histories fall back: less than two weeks → daily season only; less
//! than two days → seasonal naive (one day) or naive (last value). Missing
//! intervals (`None`) do not update the state.
//!
//! The `augurs` MSTL + AutoETS stack was tried first: it builds offline, but
//! a fit on 90 days of 5-minute data took 23 s in a debug build, it pulls a
//! random number generator into this crate, and it cannot update a fitted
//! model with new observations, which a rolling backtest needs at every
//! origin. This module fits the same data in milliseconds and updates in O(1).

use serde::{Deserialize, Serialize};

use crate::trace::RateSeries;

/// Milliseconds in a day (the budget calendar's one day).
pub use crate::budget::calendar::DAY_MS;

/// Which model a fit chose (by the history available).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Daily and weekly seasons (at least two weeks of history).
    DoubleSeasonal,
    /// Daily season only (at least two days of history).
    DailySeasonal,
    /// Value one day earlier (at least one day of history).
    SeasonalNaive,
    /// Last value.
    Naive,
}

impl ModelKind {
    /// Wire name.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::DoubleSeasonal => "double_seasonal_hw",
            ModelKind::DailySeasonal => "seasonal_hw",
            ModelKind::SeasonalNaive => "seasonal_naive",
            ModelKind::Naive => "naive",
        }
    }
}

/// Smoothing parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Level smoothing, `[0, 1]`.
    pub alpha: f64,
    /// Daily season smoothing, `[0, 1]`.
    pub delta: f64,
    /// Weekly season smoothing, `[0, 1]`.
    pub omega: f64,
    /// Residual autoregression, `[0, 1)`.
    pub phi: f64,
}

/// A forecast over consecutive future intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// Point forecasts (the median), one per interval.
    pub point: Vec<f64>,
    /// Lower bounds of the prediction interval.
    pub lower: Vec<f64>,
    /// Upper bounds of the prediction interval.
    pub upper: Vec<f64>,
    /// Nominal coverage of the interval, `(0, 1)`.
    pub level: f64,
    /// The model that produced it.
    pub model: ModelKind,
}

/// Why a forecast or backtest could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForecastError {
    /// Not enough intervals.
    #[error("series too short: {have} interval(s), need at least {needed}")]
    TooShort {
        /// Intervals available.
        have: usize,
        /// Intervals needed.
        needed: usize,
    },
    /// Horizon or holdout not positive.
    #[error("{0} must be positive")]
    NotPositive(&'static str),
}

/// Intervals per day for `interval_ms`, when a day is a whole number (≥ 2) of them.
pub fn steps_per_day(interval_ms: i64) -> Option<usize> {
    (interval_ms > 0 && DAY_MS % interval_ms == 0 && DAY_MS / interval_ms >= 2)
        .then(|| (DAY_MS / interval_ms) as usize)
}

/// A fitted model and its state after the observations it has seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The model.
    pub kind: ModelKind,
    /// Its parameters (unused by the naive kinds).
    pub params: Params,
    /// One-step residual standard deviation on the `ln(1+y)` scale.
    pub sigma: f64,
    s1: usize,
    s2: usize,
    level: f64,
    d: Vec<f64>,
    w: Vec<f64>,
    resid: f64,
    t: usize,
    /// Transformed history, kept only by the naive kinds.
    tail: Vec<Option<f64>>,
}

fn tf(y: f64) -> f64 {
    y.max(0.0).ln_1p()
}

fn inv(z: f64) -> f64 {
    let y = z.exp_m1();
    if y.is_finite() {
        y.max(0.0)
    } else if z > 0.0 {
        f64::MAX
    } else {
        0.0
    }
}

/// Standard normal quantile (P. J. Acklam's rational approximation, relative
/// error below 1.2e-9). `p` is clamped into `(0, 1)`.
pub fn normal_quantile(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let pl = 0.02425;
    if p < pl {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - pl {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// Initial level and seasons from the first `min(n, 2 s2, ...)` intervals:
/// the mean, the mean deviation per slot of the day, then per slot of the week.
fn initial_state(z: &[Option<f64>], s1: usize, s2: usize) -> (f64, Vec<f64>, Vec<f64>) {
    let win = &z[..z.len().min((2 * s2).max(2 * s1))];
    let (sum, cnt) = win
        .iter()
        .flatten()
        .fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    let m = if cnt > 0 { sum / cnt as f64 } else { 0.0 };
    let slot_means = |p: usize, f: &dyn Fn(usize, f64) -> f64| -> Vec<f64> {
        let mut s = vec![0.0; p];
        let mut c = vec![0usize; p];
        for (i, v) in win.iter().enumerate() {
            if let Some(v) = v {
                s[i % p] += f(i, *v);
                c[i % p] += 1;
            }
        }
        s.iter()
            .zip(&c)
            .map(|(s, &c)| if c > 0 { s / c as f64 } else { 0.0 })
            .collect()
    };
    let d = slot_means(s1, &|_, v| v - m);
    let w = if s2 > 1 {
        slot_means(s2, &|i, v| v - m - d[i % s1])
    } else {
        vec![0.0]
    };
    (m, d, w)
}

impl Model {
    fn fresh(kind: ModelKind, params: Params, s1: usize, s2: usize, z: &[Option<f64>]) -> Model {
        let (level, d, w) = match kind {
            ModelKind::DoubleSeasonal | ModelKind::DailySeasonal => initial_state(z, s1, s2),
            _ => (0.0, Vec::new(), Vec::new()),
        };
        Model {
            kind,
            params,
            sigma: 0.0,
            s1,
            s2,
            level,
            d,
            w,
            resid: 0.0,
            t: 0,
            tail: Vec::new(),
        }
    }

    /// Fits a model to `values` (one per interval of `interval_ms`; `None` =
    /// missing) and returns it with its state after the last value.
    pub fn fit(values: &[Option<f64>], interval_ms: i64) -> Model {
        let z: Vec<Option<f64>> = values.iter().map(|v| v.map(tf)).collect();
        let n = z.len();
        let day = steps_per_day(interval_ms);
        let p0 = Params {
            alpha: 0.1,
            delta: 0.05,
            omega: 0.05,
            phi: 0.5,
        };
        let (kind, s1, s2) = match day {
            Some(s) if n >= 14 * s => (ModelKind::DoubleSeasonal, s, 7 * s),
            Some(s) if n >= 2 * s => (ModelKind::DailySeasonal, s, 1),
            Some(s) if n >= s => (ModelKind::SeasonalNaive, s, 1),
            _ => (ModelKind::Naive, 1, 1),
        };
        if matches!(kind, ModelKind::SeasonalNaive | ModelKind::Naive) {
            let mut m = Model::fresh(kind, p0, s1, s2, &z);
            let (mut sse, mut cnt) = (0.0, 0usize);
            for v in &z {
                // Only residuals of a real (seasonal) lag count.
                let lag_known = m.t >= s1;
                if let (true, Some(v), Some(f)) = (lag_known, v, m.naive_z(1)) {
                    sse += (v - f).powi(2);
                    cnt += 1;
                }
                m.push_z(*v);
            }
            m.sigma = if cnt > 0 {
                (sse / cnt as f64).sqrt()
            } else {
                1.0
            };
            return m;
        }
        const ALPHA: [f64; 11] = [0.01, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 0.95];
        const SEASON: [f64; 8] = [0.0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.25, 0.4];
        const PHI: [f64; 7] = [0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95];
        let base = Model::fresh(kind, p0, s1, s2, &z);
        let sse_of = |p: Params| -> f64 {
            let mut m = base.clone();
            m.params = p;
            m.run(&z, s1).0
        };
        let mut best = p0;
        let mut best_sse = sse_of(best);
        for _pass in 0..3 {
            let before = best_sse;
            for which in 0..4 {
                let cands: &[f64] = match which {
                    0 => &ALPHA,
                    1 => &SEASON,
                    2 if s2 > 1 => &SEASON,
                    2 => &[0.0],
                    _ => &PHI,
                };
                for &c in cands {
                    let mut p = best;
                    match which {
                        0 => p.alpha = c,
                        1 => p.delta = c,
                        2 => p.omega = c,
                        _ => p.phi = c,
                    }
                    let s = sse_of(p);
                    if s < best_sse {
                        best_sse = s;
                        best = p;
                    }
                }
            }
            if best_sse >= before {
                break;
            }
        }
        let mut m = base;
        m.params = best;
        let (sse, cnt) = m.run(&z, s1);
        m.sigma = if cnt > 0 {
            (sse / cnt as f64).sqrt()
        } else {
            1.0
        };
        m
    }

    /// A model with the same kind, parameters and σ, re-initialised and run
    /// over `values` (for rolling-origin evaluation).
    pub fn refilter(&self, values: &[Option<f64>]) -> Model {
        let z: Vec<Option<f64>> = values.iter().map(|v| v.map(tf)).collect();
        let mut m = Model::fresh(self.kind, self.params, self.s1, self.s2, &z);
        m.sigma = self.sigma;
        m.run(&z, usize::MAX);
        m
    }

    /// Runs the filter over `z`; returns the one-step SSE and count over
    /// indices `>= burn_in`.
    fn run(&mut self, z: &[Option<f64>], burn_in: usize) -> (f64, usize) {
        let (mut sse, mut cnt) = (0.0, 0usize);
        for (i, v) in z.iter().enumerate() {
            if let Some(v) = v {
                let pred = self.point_z(1);
                if i >= burn_in {
                    sse += (v - pred).powi(2);
                    cnt += 1;
                }
            }
            self.push_z(*v);
        }
        (sse, cnt)
    }

    /// Consumes the next interval's observation (`None` = missing).
    pub fn update(&mut self, y: Option<f64>) {
        self.push_z(y.filter(|v| v.is_finite()).map(tf));
    }

    fn push_z(&mut self, z: Option<f64>) {
        match self.kind {
            ModelKind::SeasonalNaive | ModelKind::Naive => self.tail.push(z),
            _ => {
                let (i, j) = (self.t % self.s1, self.t % self.s2);
                match z {
                    Some(z) => {
                        let Params {
                            alpha,
                            delta,
                            omega,
                            ..
                        } = self.params;
                        let r = z - (self.level + self.d[i] + self.w[j]);
                        self.level += alpha * r;
                        self.d[i] += delta * (1.0 - alpha) * r;
                        if self.s2 > 1 {
                            self.w[j] += omega * (1.0 - alpha) * r;
                        }
                        self.resid = r;
                    }
                    None => self.resid *= self.params.phi,
                }
            }
        }
        self.t += 1;
    }

    /// Level plus seasons for the interval `k` steps ahead (`k >= 1`).
    fn seasonal_z(&self, k: usize) -> f64 {
        let idx = self.t + k - 1;
        self.level + self.d[idx % self.s1] + self.w[idx % self.s2]
    }

    fn naive_z(&self, k: usize) -> Option<f64> {
        let period = if self.kind == ModelKind::SeasonalNaive {
            self.s1
        } else {
            1
        };
        let target = self.t + k - 1;
        let mut back = period * k.div_ceil(period);
        while back <= target {
            if let Some(v) = self.tail[target - back] {
                return Some(v);
            }
            back += period;
        }
        self.tail.iter().rev().flatten().next().copied()
    }

    /// Point forecast on the transformed scale `k` intervals ahead.
    fn point_z(&self, k: usize) -> f64 {
        match self.kind {
            ModelKind::SeasonalNaive | ModelKind::Naive => self.naive_z(k).unwrap_or(0.0),
            _ => self.seasonal_z(k) + self.params.phi.powi(k as i32) * self.resid,
        }
    }

    /// Number of observations consumed.
    pub fn observed(&self) -> usize {
        self.t
    }

    /// Forecast of the next `horizon` intervals with a `level` prediction interval.
    pub fn forecast(&self, horizon: usize, level: f64) -> Forecast {
        let level = if level.is_finite() {
            level.clamp(0.01, 0.999)
        } else {
            0.9
        };
        let q = normal_quantile(0.5 + level / 2.0);
        let a2 = match self.kind {
            ModelKind::SeasonalNaive | ModelKind::Naive => 1.0,
            _ => self.params.alpha.powi(2),
        };
        let mut f = Forecast {
            point: Vec::with_capacity(horizon),
            lower: Vec::with_capacity(horizon),
            upper: Vec::with_capacity(horizon),
            level,
            model: self.kind,
        };
        for k in 1..=horizon {
            let z = self.point_z(k);
            let sk = self.sigma * (1.0 + (k as f64 - 1.0) * a2).sqrt();
            f.point.push(inv(z));
            f.lower.push(inv(z - q * sk));
            f.upper.push(inv(z + q * sk));
        }
        f
    }
}

/// Forecast accuracy over a set of points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Mean absolute percentage error, a fraction, over points whose actual is not 0.
    pub mape: f64,
    /// Symmetric MAPE `2|a-f|/(|a|+|f|)`, a fraction (a term is 0 when both are 0).
    pub smape: f64,
    /// Points left out of the MAPE because their actual value is 0.
    pub mape_skipped_zero: usize,
}

/// Accuracy of `forecasts` against `actuals` (pairs).
pub fn accuracy(pairs: impl Iterator<Item = (f64, f64)>) -> Accuracy {
    let (mut ape, mut n_ape, mut sape, mut n, mut zero) = (0.0, 0usize, 0.0, 0usize, 0usize);
    for (a, f) in pairs {
        n += 1;
        if a == 0.0 {
            zero += 1;
        } else {
            ape += ((a - f) / a).abs();
            n_ape += 1;
        }
        let den = a.abs() + f.abs();
        if den > 0.0 {
            sape += 2.0 * (a - f).abs() / den;
        }
    }
    let mean = |s: f64, c: usize| if c > 0 { s / c as f64 } else { 0.0 };
    Accuracy {
        mape: mean(ape, n_ape),
        smape: mean(sape, n),
        mape_skipped_zero: zero,
    }
}

/// One evaluated interval of a backtest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BacktestPoint {
    /// Start of the interval, Unix ms.
    pub ts_ms: i64,
    /// What happened.
    pub actual: f64,
    /// The model's forecast, made `horizon` earlier.
    pub forecast: f64,
    /// Lower bound of its prediction interval.
    pub lower: f64,
    /// Upper bound of its prediction interval.
    pub upper: f64,
    /// The seasonal-naive forecast.
    pub baseline: f64,
}

/// Result of a rolling-origin backtest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestReport {
    /// Interval of the series, ms.
    pub interval_ms: i64,
    /// Lead of every evaluated forecast, in intervals.
    pub horizon_steps: usize,
    /// Intervals held out (the last ones of the series).
    pub holdout_steps: usize,
    /// Model chosen on the training part.
    pub model: ModelKind,
    /// Its parameters.
    pub params: Params,
    /// Seasonal period of the seasonal-naive baseline, in intervals.
    pub baseline_period: usize,
    /// The model's accuracy.
    pub ours: Accuracy,
    /// The seasonal-naive accuracy on the same points.
    pub baseline: Accuracy,
    /// The evaluated points.
    pub points: Vec<BacktestPoint>,
}

/// Backtests the forecaster on `series`: parameters are fitted on all but
/// the last `holdout_ms`; then every held-out interval with a value is
/// forecast `horizon_ms` (rounded up to whole intervals) ahead from the data
/// known at that time (state updated, parameters fixed), next to seasonal
/// naive with the model's longest season (a week with ≥ 2 weeks of training
/// data, else a day), on the same points. Prediction intervals at `level`.
pub fn backtest(
    series: &RateSeries,
    horizon_ms: i64,
    holdout_ms: i64,
    level: f64,
) -> Result<BacktestReport, ForecastError> {
    if horizon_ms <= 0 {
        return Err(ForecastError::NotPositive("horizon"));
    }
    if holdout_ms <= 0 {
        return Err(ForecastError::NotPositive("holdout"));
    }
    let iv = series.interval_ms.max(1);
    let h = ((horizon_ms + iv - 1) / iv) as usize;
    let hold = ((holdout_ms / iv) as usize).max(1);
    let v = &series.values;
    let n = v.len();
    let needed = hold + h + 2;
    if n < needed {
        return Err(ForecastError::TooShort { have: n, needed });
    }
    let train_end = n - hold;
    let fitted = Model::fit(&v[..train_end], iv);
    let season = match fitted.kind {
        ModelKind::DoubleSeasonal => fitted.s2,
        ModelKind::DailySeasonal | ModelKind::SeasonalNaive => fitted.s1,
        ModelKind::Naive => 1,
    };
    let period = season * h.div_ceil(season);
    let c0 = train_end + 1 - h;
    let mut m = fitted.refilter(&v[..c0]);
    let mut points = Vec::new();
    for (c, obs) in v.iter().enumerate().take(n + 1 - h).skip(c0) {
        let tau = c + h - 1;
        if let Some(actual) = v[tau] {
            // Seasonal naive: the latest same-season value known at origin c.
            let mut back = period;
            let mut base = None;
            while back <= tau {
                if let Some(b) = v[tau - back] {
                    base = Some(b);
                    break;
                }
                back += season;
            }
            if let Some(baseline) = base {
                let f = m.forecast(h, level);
                points.push(BacktestPoint {
                    ts_ms: series.time_of(tau),
                    actual,
                    forecast: f.point[h - 1],
                    lower: f.lower[h - 1],
                    upper: f.upper[h - 1],
                    baseline,
                });
            }
        }
        m.update(*obs);
    }
    Ok(BacktestReport {
        interval_ms: iv,
        horizon_steps: h,
        holdout_steps: hold,
        model: fitted.kind,
        params: fitted.params,
        baseline_period: period,
        ours: accuracy(points.iter().map(|p| (p.actual, p.forecast))),
        baseline: accuracy(points.iter().map(|p| (p.actual, p.baseline))),
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synth(days: usize, per_day: usize, noise: bool) -> Vec<Option<f64>> {
        (0..days * per_day)
            .map(|i| {
                let t = i as f64 / per_day as f64;
                let dow = (i / per_day) % 7;
                let weekly = if dow >= 5 { 0.6 } else { 1.0 };
                let n = if noise {
                    ((i * 7919) % 17) as f64 / 17.0 - 0.5
                } else {
                    0.0
                };
                Some(weekly * (100.0 + 60.0 * (t * std::f64::consts::TAU).sin()) + 5.0 * n)
            })
            .collect()
    }

    #[test]
    fn quantiles() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.01) + 2.326_348).abs() < 1e-5);
    }

    #[test]
    fn kind_follows_history_length() {
        let iv = 3_600_000;
        assert_eq!(
            Model::fit(&synth(1, 24, false)[..5], iv).kind,
            ModelKind::Naive
        );
        assert_eq!(
            Model::fit(&synth(1, 24, false), iv).kind,
            ModelKind::SeasonalNaive
        );
        assert_eq!(
            Model::fit(&synth(3, 24, false), iv).kind,
            ModelKind::DailySeasonal
        );
        assert_eq!(
            Model::fit(&synth(14, 24, false), iv).kind,
            ModelKind::DoubleSeasonal
        );
        // An interval that does not divide a day: no season.
        assert_eq!(
            Model::fit(&synth(20, 24, false), 7_000_000).kind,
            ModelKind::Naive
        );
    }

    #[test]
    fn learns_a_double_season_and_interval_covers() {
        let v = synth(28, 48, true);
        let m = Model::fit(&v[..27 * 48], 1_800_000);
        let f = m.forecast(48, 0.95);
        let mut covered = 0;
        for k in 0..48 {
            let a = v[27 * 48 + k].unwrap();
            // Noise is ±2.5 around values of 24..160.
            assert!((f.point[k] - a).abs() < 6.0, "k={k} {} vs {a}", f.point[k]);
            assert!(f.lower[k] <= f.point[k] && f.point[k] <= f.upper[k]);
            if f.lower[k] <= a && a <= f.upper[k] {
                covered += 1;
            }
        }
        assert!(covered >= 40, "{covered}");
    }

    #[test]
    fn missing_values_do_not_break_the_fit() {
        let mut v = synth(21, 24, true);
        for i in (0..v.len()).step_by(5) {
            v[i] = None;
        }
        let m = Model::fit(&v, 3_600_000);
        let f = m.forecast(24, 0.9);
        assert!(f.point.iter().all(|x| x.is_finite() && *x >= 0.0));
    }

    #[test]
    fn backtest_beats_seasonal_naive_on_a_level_shift() {
        let mut v = synth(35, 48, true);
        for x in v.iter_mut().skip(30 * 48 + 10) {
            *x = x.map(|y| y * 1.5);
        }
        let s = RateSeries {
            start_ms: 0,
            interval_ms: 1_800_000,
            values: v,
        };
        let r = backtest(&s, 3_600_000, 4 * DAY_MS, 0.9).unwrap();
        assert_eq!(r.horizon_steps, 2);
        assert_eq!(r.points.len(), 4 * 48);
        assert_eq!(r.baseline_period, 336);
        assert!(r.ours.mape < 0.8 * r.baseline.mape, "{r:?}");
    }

    #[test]
    fn accuracy_skips_zero_actuals() {
        let a = accuracy([(0.0, 1.0), (2.0, 1.0), (0.0, 0.0)].into_iter());
        assert_eq!(a.mape_skipped_zero, 2);
        assert!((a.mape - 0.5).abs() < 1e-12);
        assert!((a.smape - (2.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn backtest_rejects_short_series() {
        let s = RateSeries {
            start_ms: 0,
            interval_ms: 60_000,
            values: vec![Some(1.0); 10],
        };
        assert!(matches!(
            backtest(&s, 60_000, 600_000, 0.9),
            Err(ForecastError::TooShort { .. })
        ));
        assert_eq!(
            backtest(&s, 0, 60_000, 0.9),
            Err(ForecastError::NotPositive("horizon"))
        );
    }
}
