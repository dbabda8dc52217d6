//! Demand forecasting for the predictive policy and `fleetscale forecast`:
//! robust exponential smoothing, a robust seasonal decomposition and the
//! naive forecasts, one of them chosen per series by a rolling-origin
//! backtest on the training window.
//!
//! Every model works on `z = ln(1 + y)` (seasonality multiplicative in `y`,
//! forecasts never negative). The candidates ([`ModelKind`]):
//!
//! * **naive** (last value), **seasonal naive** with a daily and a weekly
//!   period;
//! * **ETS(A,N,N)** (simple exponential smoothing of the level);
//! * **Holt-Winters**, single (daily) and double (daily and weekly) seasonal,
//!   with a first-order autoregressive adjustment of the residual (J. W.
//!   Taylor, "Short-term electricity demand forecasting using double seasonal
//!   exponential smoothing", JORS 54(8), 2003):
//!
//!   ```text
//!   r_t  = z_t - (l + d[t mod s1] + w[t mod s2])
//!   l   += α ψ(r_t) ;  d[t mod s1] += δ (1-α) ψ(r_t) ;  w[t mod s2] += ω (1-α) ψ(r_t)
//!   ẑ_{t+k} = l + d[(t+k) mod s1] + w[(t+k) mod s2] + φ^k ψ(r_t)
//!   ```
//! * **decomposition + ETS**: an MSTL-like decomposition of the whole window
//!   (daily profile = per-phase medians around each day's median, weekly
//!   profile = day-of-week medians plus per-phase medians of what is left),
//!   held fixed, with ETS(A,N,N) on the seasonally adjusted series.
//!
//! **Outliers.** Smoothing is robust in the manner of Gelper, Fried & Croux,
//! "Robust forecasting with exponential and Holt-Winters smoothing", Journal
//! of Forecasting 29(3), 2010: `ψ` clips a residual at ±3 σ̂, where σ̂ is an
//! online robust scale (an exponentially weighted mean of clipped absolute
//! residuals), so an isolated spike moves neither the level nor a season by
//! more than 3 σ̂ × the smoothing constant. Initial states and the
//! decomposition are per-phase medians of data first winsorized to
//! `median ± 4 MAD` of their daily phase ([`robust::winsorize_by_phase`]).
//!
//! **Level shifts.** When at least 3/4 of the last `W` residuals (`W` = two
//! hours of intervals, 3 to 24) lie beyond 2 σ̂ on the same side, the level is
//! re-anchored at the median of those intervals' seasonally adjusted values:
//! a lasting change is followed within `W` intervals, not at the pace of α.
//!
//! **Selection** ([`Model::fit_horizon`]). The last quarter of the window (at
//! most a week) is held out; every candidate the remaining history supports
//! is fitted on the rest (smoothing parameters by a coordinate search that
//! minimises the mean absolute `h`-step error on the `z` scale) and then run
//! over the held-out part, forecasting `h` steps ahead from every origin;
//! the candidate with the lowest sMAPE there is chosen (ties go to the
//! earlier of: weekly and daily seasonal naive, the smoothing models, naive),
//! so the choice never backtests worse than seasonal naive. The chosen kind
//! is then run over the whole window with those parameters.
//!
//! **Prediction intervals** are empirical: the quantiles of the chosen
//! candidate's standardised `h`-step errors `(z - ẑ) / (σ̂ g(h))` on the
//! held-out part, scaled by `σ̂ g(k)` at lead `k` (`g(k) = √(1 + (k-1)α²)`
//! for smoothing, `√⌈k/period⌉` for seasonal naive, `√k` for naive); with
//! fewer than 30 such errors, normal quantiles.
//!
//! Missing intervals (`None`) do not update a state. The `augurs` MSTL +
//! AutoETS stack was tried earlier: it builds offline, but a fit on 90 days
//! of 5-minute data took 23 s in a debug build, it pulls a random number
//! generator into this crate, and it cannot update a fitted model with new
//! observations, which a rolling backtest and the engine's cached model need
//! at every interval. This module fits and selects in well under a second and
//! updates in O(1).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::trace::RateSeries;

mod accuracy;
mod quantile;
pub mod robust;

pub use accuracy::{accuracy, Accuracy};
pub(crate) use quantile::acklam_quantile;
pub use quantile::normal_quantile;

/// Milliseconds in a day (the budget calendar's one day).
pub use crate::budget::calendar::DAY_MS;

/// Residuals are clipped at this many robust standard deviations.
const CLIP_K: f64 = 3.0;
/// A residual beyond this many robust standard deviations counts toward a level shift.
const SHIFT_K: f64 = 2.0;
/// Share of the shift window that must lie beyond [`SHIFT_K`] on one side.
const SHIFT_SHARE: f64 = 0.75;
/// Weight of a new residual in the online scale.
const SCALE_RATE: f64 = 0.02;
/// `E[min(|Z|, 3)]` for a standard normal `Z`: converts the mean clipped
/// absolute residual into a standard deviation.
const CLIPPED_ABS_MEAN: f64 = 0.781;
/// Smallest robust scale on the `ln(1+y)` scale (2%).
const SIGMA_FLOOR: f64 = 0.02;
/// Phase-wise winsorizing of initial windows, in MADs.
const WINSOR_K: f64 = 4.0;
/// Fewest held-out errors for empirical prediction intervals.
const MIN_EMPIRICAL: usize = 30;
/// Size of the stored error quantile table (probabilities 0, 1%, ..., 100%).
const QUANTILES: usize = 101;

/// A forecasting model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Holt-Winters with daily and weekly seasons.
    DoubleSeasonal,
    /// Holt-Winters with a daily season.
    DailySeasonal,
    /// Fixed robust decomposition (daily, and weekly with two weeks of data)
    /// plus ETS(A,N,N) on the adjusted series.
    Decomposition,
    /// ETS(A,N,N): simple exponential smoothing of the level, no season.
    Ses,
    /// Value one day earlier.
    SeasonalNaive,
    /// Value one week earlier.
    WeeklySeasonalNaive,
    /// Last value.
    Naive,
}

impl ModelKind {
    /// Wire name.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::DoubleSeasonal => "double_seasonal_hw",
            ModelKind::DailySeasonal => "seasonal_hw",
            ModelKind::Decomposition => "decomposition_ets",
            ModelKind::Ses => "ets_ann",
            ModelKind::SeasonalNaive => "seasonal_naive_daily",
            ModelKind::WeeklySeasonalNaive => "seasonal_naive_weekly",
            ModelKind::Naive => "naive",
        }
    }

    fn is_naive(self) -> bool {
        matches!(
            self,
            ModelKind::SeasonalNaive | ModelKind::WeeklySeasonalNaive | ModelKind::Naive
        )
    }

    /// Candidates in order of preference on a tie.
    const ORDER: [ModelKind; 7] = [
        ModelKind::WeeklySeasonalNaive,
        ModelKind::SeasonalNaive,
        ModelKind::DoubleSeasonal,
        ModelKind::DailySeasonal,
        ModelKind::Decomposition,
        ModelKind::Ses,
        ModelKind::Naive,
    ];

    /// Whether `n` intervals of history (`day` intervals a day, if known)
    /// support the kind.
    fn supported(self, n: usize, day: Option<usize>) -> bool {
        match (self, day) {
            (ModelKind::Naive, _) => n >= 1,
            (ModelKind::Ses, _) => n >= 3,
            (ModelKind::SeasonalNaive, Some(s)) => n >= s,
            (ModelKind::DailySeasonal | ModelKind::Decomposition, Some(s)) => n >= 2 * s,
            (ModelKind::WeeklySeasonalNaive, Some(s)) => n >= 7 * s,
            (ModelKind::DoubleSeasonal, Some(s)) => n >= 14 * s,
            (_, None) => false,
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

const P0: Params = Params {
    alpha: 0.1,
    delta: 0.05,
    omega: 0.05,
    phi: 0.5,
};

/// One candidate's score in the selection backtest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CandidateScore {
    /// The candidate.
    pub model: ModelKind,
    /// Its sMAPE over the held-out part of the training window, a fraction.
    pub smape: f64,
    /// Forecasts scored.
    pub points: usize,
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

/// Intervals in the level-shift window for `interval_ms`: two hours, 3 to 24.
fn shift_window(interval_ms: i64) -> usize {
    let iv = interval_ms.max(1);
    ((2 * 3_600_000 + iv - 1) / iv).clamp(3, 24) as usize
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

/// sMAPE term of one pair (0 when both are 0).
fn sape(a: f64, f: f64) -> f64 {
    let den = a.abs() + f.abs();
    if den > 0.0 {
        2.0 * (a - f).abs() / den
    } else {
        0.0
    }
}

/// Robust initial state of a seasonal window `z`: the level at its start,
/// a daily profile (`s1` phases) and a weekly one (`s2` phases; `[0]` when
/// `s2 == 1`), both centred, and the robust scale of what they leave.
fn decompose(z: &[Option<f64>], s1: usize, s2: usize) -> (f64, Vec<f64>, Vec<f64>, f64) {
    let n = z.len();
    let s1 = s1.max(1);
    let zc = robust::winsorize_by_phase(z, s1, WINSOR_K, SIGMA_FLOOR);
    let days = n.div_ceil(s1);
    let day_med: Vec<Option<f64>> = (0..days)
        .map(|k| robust::median(zc[k * s1..n.min((k + 1) * s1)].iter().flatten().copied()))
        .collect();
    let at = |t: usize| zc[t].zip(day_med[t / s1]);
    let center = |v: &mut Vec<f64>| {
        let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
        v.iter_mut().for_each(|x| *x -= m);
    };
    let mut daily: Vec<f64> = (0..s1)
        .map(|p| {
            robust::median((p..n).step_by(s1).filter_map(at).map(|(v, m)| v - m)).unwrap_or(0.0)
        })
        .collect();
    center(&mut daily);
    let mut weekly = vec![0.0];
    if s2 > s1 && s2.is_multiple_of(s1) {
        let per_week = s2 / s1;
        let rel: Vec<Option<f64>> = (0..days)
            .map(|k| {
                let wk = k / per_week * per_week;
                let week_med = robust::median(
                    day_med[wk..days.min(wk + per_week)]
                        .iter()
                        .flatten()
                        .copied(),
                )?;
                day_med[k].map(|m| m - week_med)
            })
            .collect();
        let dow: Vec<f64> = (0..per_week)
            .map(|r| {
                robust::median((r..days).step_by(per_week).filter_map(|k| rel[k])).unwrap_or(0.0)
            })
            .collect();
        weekly = (0..s2)
            .map(|j| {
                let rest = (j..n).step_by(s2).filter_map(|t| {
                    at(t).map(|(v, m)| v - m - daily[t % s1] - dow[(t / s1) % per_week])
                });
                dow[j / s1] + robust::median(rest).unwrap_or(0.0)
            })
            .collect();
        center(&mut weekly);
    }
    let adjusted = |t: usize| zc[t].map(|v| v - daily[t % s1] - weekly[t % weekly.len()]);
    let level = robust::median((0..n.min(s1)).filter_map(adjusted))
        .or_else(|| robust::median((0..n).filter_map(adjusted)))
        .unwrap_or(0.0);
    let resid =
        (0..n).filter_map(|t| at(t).map(|(v, m)| v - m - daily[t % s1] - weekly[t % weekly.len()]));
    let sigma = robust::median(resid.map(f64::abs)).map_or(SIGMA_FLOOR, |m| 1.4826 * m);
    (level, daily, weekly, sigma.max(SIGMA_FLOOR))
}

/// A fitted model and its state after the observations it has seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The model family.
    pub kind: ModelKind,
    /// Its parameters (unused by the naive kinds).
    pub params: Params,
    /// Lead, in intervals, of the backtest that chose the model.
    pub horizon_steps: usize,
    /// Every candidate's score in that backtest (empty when the history was
    /// too short to hold any out).
    pub scores: Vec<CandidateScore>,
    /// Quantiles of the standardised held-out errors (empty: normal).
    err_q: Vec<f64>,
    /// Season lengths of the state (for the naive kinds, `s1` is the lag).
    s1: usize,
    s2: usize,
    level: f64,
    d: Vec<f64>,
    w: Vec<f64>,
    resid: f64,
    t: usize,
    /// Mean clipped absolute one-step residual (online robust scale).
    abs_dev: f64,
    /// Recent transformed values, naive kinds only (a few lags).
    tail: VecDeque<Option<f64>>,
    /// Recent seasonally adjusted values and the side (±1, 0) of their
    /// residual beyond [`SHIFT_K`] σ̂: the level-shift detector.
    run: VecDeque<(f64, i8)>,
    run_len: usize,
}

impl Model {
    /// A model of `kind` initialised on `z` (its first season or two, or all
    /// of it for the decomposition), before consuming any of it.
    fn init(
        kind: ModelKind,
        params: Params,
        day: Option<usize>,
        z: &[Option<f64>],
        run_len: usize,
    ) -> Model {
        let s = day.unwrap_or(1);
        let (s1, s2, level, d, w, sigma) = match kind {
            ModelKind::Naive => (1, 1, 0.0, vec![], vec![], SIGMA_FLOOR),
            ModelKind::SeasonalNaive => (s, 1, 0.0, vec![], vec![], SIGMA_FLOOR),
            ModelKind::WeeklySeasonalNaive => (7 * s, 1, 0.0, vec![], vec![], SIGMA_FLOOR),
            ModelKind::Ses => {
                let (l, _, _, sg) = decompose(&z[..z.len().min(12)], 1, 1);
                (1, 1, l, vec![0.0], vec![0.0], sg)
            }
            ModelKind::DailySeasonal => {
                let (l, d, w, sg) = decompose(&z[..z.len().min(4 * s)], s, 1);
                (s, 1, l, d, w, sg)
            }
            ModelKind::DoubleSeasonal => {
                let (l, d, w, sg) = decompose(&z[..z.len().min(14 * s)], s, 7 * s);
                (s, 7 * s, l, d, w, sg)
            }
            ModelKind::Decomposition => {
                let s2 = if z.len() >= 14 * s { 7 * s } else { 1 };
                let (l, d, w, sg) = decompose(z, s, s2);
                (s, w.len(), l, d, w, sg)
            }
        };
        Model {
            kind,
            params,
            horizon_steps: 1,
            scores: Vec::new(),
            err_q: Vec::new(),
            s1,
            s2: s2.max(1),
            level,
            d,
            w,
            resid: 0.0,
            t: 0,
            abs_dev: CLIPPED_ABS_MEAN * sigma,
            tail: VecDeque::new(),
            run: VecDeque::new(),
            run_len,
        }
    }

    /// Fits a model to `values` (one per interval of `interval_ms`; `None` =
    /// missing), chosen by a backtest at a lead of one hour (at most an
    /// eighth of the history), and returns it with its state after the last
    /// value. See the module docs.
    pub fn fit(values: &[Option<f64>], interval_ms: i64) -> Model {
        let iv = interval_ms.max(1);
        let hour = ((3_600_000 + iv - 1) / iv) as usize;
        Model::fit_horizon(values, interval_ms, hour.min(values.len() / 8).max(1))
    }

    /// Fits a model to `values` chosen by a rolling-origin backtest of
    /// `horizon_steps`-ahead forecasts on the last quarter (at most a week)
    /// of `values` (see the module docs); its state is after the last value.
    pub fn fit_horizon(values: &[Option<f64>], interval_ms: i64, horizon_steps: usize) -> Model {
        let z: Vec<Option<f64>> = values
            .iter()
            .map(|v| v.filter(|x| x.is_finite()).map(tf))
            .collect();
        let n = z.len();
        let h = horizon_steps.max(1);
        let day = steps_per_day(interval_ms);
        let run_len = shift_window(interval_ms);
        let hold = match day {
            Some(s) => (n / 4).min(7 * s),
            None => n / 4,
        };
        let prefix = n - hold;
        if hold < h + 3 || prefix < 3 {
            let kind = match day {
                Some(s) if n >= s => ModelKind::SeasonalNaive,
                _ => ModelKind::Naive,
            };
            let mut m = Model::init(kind, P0, day, &z, run_len);
            m.horizon_steps = h;
            m.run(&z, h, usize::MAX, |_, _, _, _| {});
            return m;
        }
        let mut best: Option<(f64, ModelKind, Params, Vec<f64>)> = None;
        let mut scores = Vec::new();
        for kind in ModelKind::ORDER {
            if !kind.supported(prefix, day) {
                continue;
            }
            let mut m = Model::init(kind, P0, day, &z[..prefix], run_len);
            if !kind.is_naive() {
                m.params = m.search(&z[..prefix], h);
            }
            m.run(&z[..prefix], h, usize::MAX, |_, _, _, _| {});
            let (mut sum, mut cnt, mut errs) = (0.0, 0usize, Vec::new());
            let g = m.growth(h);
            m.run(&z[prefix..], h, 0, |_, actual, f, sigma| {
                sum += sape(inv(actual), inv(f));
                cnt += 1;
                errs.push((actual - f) / (sigma * g));
            });
            if cnt == 0 {
                continue;
            }
            let smape = sum / cnt as f64;
            scores.push(CandidateScore {
                model: kind,
                smape,
                points: cnt,
            });
            if best.as_ref().is_none_or(|b| smape < b.0 - 1e-12) {
                best = Some((smape, kind, m.params, errs));
            }
        }
        let Some((_, kind, params, mut errs)) = best else {
            let mut m = Model::init(ModelKind::Naive, P0, day, &z, run_len);
            m.run(&z, h, usize::MAX, |_, _, _, _| {});
            return m;
        };
        let mut m = Model::init(kind, params, day, &z, run_len);
        m.run(&z, h, usize::MAX, |_, _, _, _| {});
        m.horizon_steps = h;
        m.scores = scores;
        if errs.len() >= MIN_EMPIRICAL {
            m.err_q = robust::quantile_table(&mut errs, QUANTILES);
        }
        m
    }

    /// Coordinate search of the smoothing parameters minimising the mean
    /// absolute `h`-step error over `z` (after its first day or season).
    fn search(&self, z: &[Option<f64>], h: usize) -> Params {
        const ALPHA: [f64; 11] = [0.01, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 0.95];
        const SEASON: [f64; 7] = [0.0, 0.01, 0.03, 0.06, 0.1, 0.2, 0.4];
        const PHI: [f64; 6] = [0.0, 0.5, 0.7, 0.8, 0.9, 0.95];
        let burn = self.s1.min(z.len() / 4);
        let cost = |p: Params| -> f64 {
            let mut m = self.clone();
            m.params = p;
            let (mut sum, mut cnt) = (0.0, 0usize);
            m.run(z, h, burn, |_, a, f, _| {
                sum += (a - f).abs();
                cnt += 1;
            });
            if cnt > 0 {
                sum / cnt as f64
            } else {
                f64::INFINITY
            }
        };
        let mut p0 = self.params;
        if self.s1 == 1 {
            p0.delta = 0.0;
        }
        if self.s2 == 1 {
            p0.omega = 0.0;
        }
        let seasons_fixed = self.kind == ModelKind::Decomposition;
        if seasons_fixed {
            (p0.delta, p0.omega) = (0.0, 0.0);
        }
        let (mut best, mut best_cost) = (p0, cost(p0));
        for _pass in 0..3 {
            let before = best_cost;
            for which in 0..4 {
                let cands: &[f64] = match which {
                    0 => &ALPHA,
                    1 if self.s1 > 1 && !seasons_fixed => &SEASON,
                    2 if self.s2 > 1 && !seasons_fixed => &SEASON,
                    3 => &PHI,
                    _ => continue,
                };
                for &c in cands {
                    let mut p = best;
                    match which {
                        0 => p.alpha = c,
                        1 => p.delta = c,
                        2 => p.omega = c,
                        _ => p.phi = c,
                    }
                    if p == best {
                        continue;
                    }
                    let s = cost(p);
                    if s < best_cost {
                        (best, best_cost) = (p, s);
                    }
                }
            }
            if best_cost >= before {
                break;
            }
        }
        best
    }

    /// Consumes `z`; before each value at index `i >= from` (relative to
    /// `z`) that has a forecast made `h` intervals earlier within this run,
    /// calls `score(i, actual, forecast, σ̂ at the origin)` (transformed scale).
    fn run(
        &mut self,
        z: &[Option<f64>],
        h: usize,
        from: usize,
        mut score: impl FnMut(usize, f64, f64, f64),
    ) {
        let h = h.max(1);
        let mut ring: Vec<Option<(f64, f64)>> = vec![None; if from == usize::MAX { 0 } else { h }];
        for (i, v) in z.iter().enumerate() {
            if !ring.is_empty() {
                ring[(i + h - 1) % h] = Some((self.point_z(h), self.sigma()));
                if let (true, Some(a), Some((f, s))) = (i >= from, v, ring[i % h]) {
                    // The forecast for `i` was made at origin `i + 1 - h`.
                    if i + 1 >= h {
                        score(i, *a, f, s);
                    }
                }
            }
            self.push_z(*v);
        }
    }

    /// Consumes the next interval's observation (`None` = missing).
    pub fn update(&mut self, y: Option<f64>) {
        self.push_z(y.filter(|v| v.is_finite()).map(tf));
    }

    /// The current robust one-step standard deviation on the `ln(1+y)` scale.
    pub fn sigma(&self) -> f64 {
        (self.abs_dev / CLIPPED_ABS_MEAN).max(SIGMA_FLOOR)
    }

    fn push_z(&mut self, z: Option<f64>) {
        let sigma = self.sigma();
        let clip = CLIP_K * sigma;
        if self.kind.is_naive() {
            if let (Some(v), Some(p)) = (z, self.naive_z(1)) {
                let r = (v - p).abs().min(clip);
                self.abs_dev += SCALE_RATE * (r - self.abs_dev);
            }
            self.tail.push_back(z);
            if self.tail.len() > 4 * self.s1 {
                self.tail.pop_front();
            }
            self.t += 1;
            return;
        }
        let (i, j) = (self.t % self.s1, self.t % self.s2);
        let seasonal = self.d[i] + self.w[j];
        match z {
            Some(v) => {
                let Params {
                    alpha,
                    delta,
                    omega,
                    ..
                } = self.params;
                let r = v - (self.level + seasonal);
                let rc = r.clamp(-clip, clip);
                self.level += alpha * rc;
                self.d[i] += delta * (1.0 - alpha) * rc;
                self.w[j] += omega * (1.0 - alpha) * rc;
                self.resid = rc;
                self.abs_dev += SCALE_RATE * (r.abs().min(clip) - self.abs_dev);
                let side = if r > SHIFT_K * sigma {
                    1
                } else if r < -SHIFT_K * sigma {
                    -1
                } else {
                    0
                };
                self.run.push_back((v - seasonal, side));
                if self.run.len() > self.run_len {
                    self.run.pop_front();
                }
                if self.run.len() == self.run_len {
                    let up = self.run.iter().filter(|x| x.1 > 0).count();
                    let down = self.run.iter().filter(|x| x.1 < 0).count();
                    if up.max(down) as f64 >= SHIFT_SHARE * self.run_len as f64 {
                        if let Some(m) = robust::median(self.run.iter().map(|x| x.0)) {
                            self.level = m;
                        }
                        self.resid = 0.0;
                        self.run.clear();
                    }
                }
            }
            None => self.resid *= self.params.phi,
        }
        self.t += 1;
    }

    /// The latest value `k` intervals ahead's lag points at (or an earlier
    /// season's, if missing; else the last value seen).
    fn naive_z(&self, k: usize) -> Option<f64> {
        let period = self.s1.max(1);
        let len = self.tail.len();
        // tail[len - 1] is index t - 1; the target is index t + k - 1.
        let mut back = period * k.div_ceil(period);
        while back < len + k {
            let idx = (len + k - 1).checked_sub(back)?;
            if let Some(Some(v)) = self.tail.get(idx) {
                return Some(*v);
            }
            back += period;
        }
        self.tail.iter().rev().flatten().next().copied()
    }

    /// Point forecast on the transformed scale `k` intervals ahead.
    fn point_z(&self, k: usize) -> f64 {
        if self.kind.is_naive() {
            return self.naive_z(k).unwrap_or(0.0);
        }
        let idx = self.t + k - 1;
        self.level
            + self.d[idx % self.s1]
            + self.w[idx % self.s2]
            + self.params.phi.powi(k.min(1000) as i32) * self.resid
    }

    /// How the forecast error's spread grows with the lead `k`.
    fn growth(&self, k: usize) -> f64 {
        match self.kind {
            ModelKind::Naive => (k as f64).sqrt(),
            ModelKind::SeasonalNaive | ModelKind::WeeklySeasonalNaive => {
                (k.div_ceil(self.s1.max(1)) as f64).sqrt()
            }
            _ => (1.0 + (k as f64 - 1.0) * self.params.alpha.powi(2)).sqrt(),
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
        let (q_lo, q_hi) = if self.err_q.is_empty() {
            let q = normal_quantile(0.5 + level / 2.0);
            (-q, q)
        } else {
            (
                robust::interpolate(&self.err_q, 0.5 - level / 2.0).min(0.0),
                robust::interpolate(&self.err_q, 0.5 + level / 2.0).max(0.0),
            )
        };
        let sigma = self.sigma();
        let mut f = Forecast {
            point: Vec::with_capacity(horizon),
            lower: Vec::with_capacity(horizon),
            upper: Vec::with_capacity(horizon),
            level,
            model: self.kind,
        };
        for k in 1..=horizon {
            let z = self.point_z(k);
            // Held-out errors were standardised by σ̂ g(h) at lead h.
            let sk = sigma * self.growth(k);
            f.point.push(inv(z));
            f.lower.push(inv(z + q_lo * sk));
            f.upper.push(inv(z + q_hi * sk));
        }
        f
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
    /// Every candidate's sMAPE in the selection backtest on the training part.
    pub selection: Vec<CandidateScore>,
    /// Seasonal period of the seasonal-naive baseline, in intervals.
    pub baseline_period: usize,
    /// The model's accuracy.
    pub ours: Accuracy,
    /// The seasonal-naive accuracy on the same points.
    pub baseline: Accuracy,
    /// Nominal coverage of the prediction intervals.
    pub level: f64,
    /// Share of the evaluated points inside their prediction interval.
    pub coverage: f64,
    /// The evaluated points.
    pub points: Vec<BacktestPoint>,
}

/// Backtests the forecaster on `series`. The model is chosen and fitted
/// ([`Model::fit_horizon`], at a lead of `horizon_ms` rounded up to whole
/// intervals) on the training part only: everything before the last
/// `holdout_ms`, less the `h - 1` intervals before the first held-out
/// forecast's origin. Then every held-out interval with a value is forecast
/// `h` intervals ahead from the data known at that time (state updated,
/// model and parameters fixed), next to seasonal naive on the same points:
/// a week's lag when the training part holds two weeks, else a day's when
/// it holds a day, else the last value. Prediction intervals at `level`;
/// their measured coverage is reported.
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
    let season = match steps_per_day(iv) {
        Some(s) if train_end >= 14 * s => 7 * s,
        Some(s) if train_end >= s => s,
        _ => 1,
    };
    let period = season * h.div_ceil(season);
    let c0 = train_end + 1 - h;
    let mut m = Model::fit_horizon(&v[..c0], iv, h);
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
    let inside = points
        .iter()
        .filter(|p| p.lower <= p.actual && p.actual <= p.upper)
        .count();
    Ok(BacktestReport {
        interval_ms: iv,
        horizon_steps: h,
        holdout_steps: hold,
        model: m.kind,
        params: m.params,
        selection: m.scores.clone(),
        baseline_period: period,
        ours: accuracy(points.iter().map(|p| (p.actual, p.forecast))),
        baseline: accuracy(points.iter().map(|p| (p.actual, p.baseline))),
        level,
        coverage: if points.is_empty() {
            0.0
        } else {
            inside as f64 / points.len() as f64
        },
        points,
    })
}
#[cfg(test)]
mod tests;
