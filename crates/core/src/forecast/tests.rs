//! Tests of the forecaster.

use super::*;

/// Deterministic noise in `[-0.5, 0.5)` (splitmix64).
fn noise(i: usize, seed: u64) -> f64 {
    let mut x = (i as u64).wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

/// Daily sine, weekends at 60%, ±10% noise.
fn synth(days: usize, per_day: usize, noisy: bool) -> Vec<Option<f64>> {
    (0..days * per_day)
        .map(|i| {
            let t = i as f64 / per_day as f64;
            let weekly = if (i / per_day) % 7 >= 5 { 0.6 } else { 1.0 };
            let n = if noisy { 0.2 * noise(i, 7) } else { 0.0 };
            Some(weekly * (100.0 + 60.0 * (t * std::f64::consts::TAU).sin()) * (1.0 + n))
        })
        .collect()
}

fn series(values: Vec<Option<f64>>, interval_ms: i64) -> RateSeries {
    RateSeries {
        start_ms: 0,
        interval_ms,
        values,
    }
}

#[test]
fn quantiles() {
    assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
    assert!((normal_quantile(0.5)).abs() < 1e-12);
    assert!((normal_quantile(0.01) + 2.326_348).abs() < 1e-5);
}

#[test]
fn candidates_follow_history_length() {
    use ModelKind::*;
    let iv = 3_600_000;
    // (days of hourly history, the candidates the selection scores)
    let table: [(usize, &[ModelKind]); 4] = [
        (1, &[Ses, Naive]),
        (2, &[SeasonalNaive, Ses, Naive]),
        (
            4,
            &[SeasonalNaive, DailySeasonal, Decomposition, Ses, Naive],
        ),
        (
            28,
            &[
                WeeklySeasonalNaive,
                SeasonalNaive,
                DoubleSeasonal,
                DailySeasonal,
                Decomposition,
                Ses,
                Naive,
            ],
        ),
    ];
    for (days, want) in table {
        let m = Model::fit(&synth(days, 24, true), iv);
        let got: Vec<ModelKind> = m.scores.iter().map(|s| s.model).collect();
        assert_eq!(got, want, "{days} days");
        assert!(m.scores.iter().any(|s| s.model == m.kind), "{days} days");
    }
    // Too short to hold anything out: naive; an interval that does not
    // divide a day: no seasonal candidate.
    let m = Model::fit(&synth(1, 24, false)[..5], iv);
    assert_eq!((m.kind, m.scores.len()), (Naive, 0));
    let m = Model::fit(&synth(20, 24, true), 7_000_000);
    assert!(m.scores.iter().all(|s| matches!(s.model, Ses | Naive)));
}

#[test]
fn learns_a_double_season_and_interval_covers() {
    let v = synth(28, 48, true);
    let m = Model::fit(&v[..27 * 48], 1_800_000);
    let f = m.forecast(48, 0.95);
    let mut covered = 0;
    for k in 0..48 {
        let a = v[27 * 48 + k].unwrap();
        assert!(
            (f.point[k] - a).abs() < 0.15 * a + 2.0,
            "k={k} {} vs {a}",
            f.point[k]
        );
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

/// Forecasts of every smoothing kind fitted on `v`, continued over `tail`.
fn smoothing_forecasts(v: &[Option<f64>], per_day: usize, k: usize) -> Vec<(ModelKind, Vec<f64>)> {
    let z: Vec<Option<f64>> = v.iter().map(|x| x.map(tf)).collect();
    [
        ModelKind::DoubleSeasonal,
        ModelKind::DailySeasonal,
        ModelKind::Decomposition,
        ModelKind::Ses,
    ]
    .into_iter()
    .map(|kind| {
        let mut m = Model::init(kind, P0, Some(per_day), &z, 6);
        m.params = m.search(&z, 1);
        m.run(&z, 1, usize::MAX, |_, _, _, _| {});
        (kind, m.forecast(k, 0.8).point)
    })
    .collect()
}

#[test]
fn an_isolated_spike_moves_neither_level_nor_season() {
    let per_day = 48;
    let clean = synth(21, per_day, true);
    // Spikes 300 times the usual level: in the initial window, in the
    // middle, and two intervals before the end.
    let mut spiked = clean.clone();
    for i in [3 * per_day + 10, 12 * per_day + 20, 21 * per_day - 2] {
        spiked[i] = spiked[i].map(|y| 300.0 * y);
    }
    let a = smoothing_forecasts(&clean, per_day, per_day);
    let b = smoothing_forecasts(&spiked, per_day, per_day);
    for ((kind, fa), (_, fb)) in a.iter().zip(&b) {
        for (k, (x, y)) in fa.iter().zip(fb).enumerate() {
            assert!((x - y).abs() <= 0.1 * x + 1.0, "{kind:?} k={k}: {x} vs {y}");
        }
    }
}

#[test]
fn a_level_shift_is_followed_within_the_window() {
    // Hourly, 21 days; the level drops to a fifth at day 20, 00:00 and
    // the model sees 6 hours of it (the shift window is 3 hours).
    let per_day = 24;
    let mut v = synth(21, per_day, true);
    for x in v.iter_mut().skip(20 * per_day) {
        *x = x.map(|y| y / 5.0);
    }
    let seen = 20 * per_day + 6;
    let z: Vec<Option<f64>> = v.iter().map(|x| x.map(tf)).collect();
    for kind in [
        ModelKind::DoubleSeasonal,
        ModelKind::DailySeasonal,
        ModelKind::Decomposition,
    ] {
        let mut m = Model::init(kind, P0, Some(per_day), &z[..seen], shift_window(3_600_000));
        // A slow level: without re-anchoring it would take days.
        m.params.alpha = 0.03;
        m.run(&z[..seen], 1, usize::MAX, |_, _, _, _| {});
        let f = m.forecast(12, 0.8);
        for k in 0..12 {
            let a = v[seen + k].unwrap();
            assert!(
                (f.point[k] - a).abs() < 0.35 * a + 2.0,
                "{kind:?} k={k}: {} vs {a}",
                f.point[k]
            );
        }
    }
}

#[test]
fn selection_never_scores_worse_than_seasonal_naive() {
    for (seed, days) in [(1, 10), (2, 16), (3, 30)] {
        let v: Vec<Option<f64>> = synth(days, 48, true)
            .into_iter()
            .enumerate()
            .map(|(i, x)| x.map(|y| y * (1.0 + 0.5 * noise(i, seed))))
            .collect();
        let m = Model::fit_horizon(&v, 1_800_000, 2);
        let chosen = m.scores.iter().find(|s| s.model == m.kind).unwrap().smape;
        for s in &m.scores {
            assert!(chosen <= s.smape + 1e-12, "seed {seed}: {m:?}");
        }
    }
}

#[test]
fn backtest_beats_seasonal_naive_on_a_level_shift() {
    let mut v = synth(35, 48, true);
    for x in v.iter_mut().skip(30 * 48 + 10) {
        *x = x.map(|y| y * 1.5);
    }
    let r = backtest(&series(v, 1_800_000), 3_600_000, 4 * DAY_MS, 0.8).unwrap();
    assert_eq!(r.horizon_steps, 2);
    assert_eq!(r.points.len(), 4 * 48);
    assert_eq!(r.baseline_period, 336);
    assert!(
        r.ours.smape < 0.8 * r.baseline.smape,
        "{:?} {:?}",
        r.ours,
        r.baseline
    );
    assert!((0.6..=0.97).contains(&r.coverage), "{}", r.coverage);
    assert!(!r.selection.is_empty());
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
    let s = series(vec![Some(1.0); 10], 60_000);
    assert!(matches!(
        backtest(&s, 60_000, 600_000, 0.9),
        Err(ForecastError::TooShort { .. })
    ));
    assert_eq!(
        backtest(&s, 0, 60_000, 0.9),
        Err(ForecastError::NotPositive("horizon"))
    );
}

proptest::proptest! {
    /// Any series: forecasts are finite, non-negative and ordered, and
    /// the chosen model scored no worse than any candidate.
    #[test]
    fn forecasts_are_sane(
        values in proptest::collection::vec(proptest::option::weighted(0.9, 0.0f64..1e6), 1..400),
        iv in proptest::sample::select(vec![300_000i64, 3_600_000, 7_000_000]),
        h in 1usize..20,
    ) {
        let m = Model::fit_horizon(&values, iv, h);
        let f = m.forecast(h + 5, 0.8);
        for k in 0..h + 5 {
            proptest::prop_assert!(f.point[k].is_finite() && f.lower[k] >= 0.0);
            proptest::prop_assert!(f.lower[k] <= f.point[k] && f.point[k] <= f.upper[k]);
        }
        if let Some(c) = m.scores.iter().find(|s| s.model == m.kind) {
            for s in &m.scores {
                proptest::prop_assert!(c.smape <= s.smape + 1e-12);
            }
        }
    }
}
