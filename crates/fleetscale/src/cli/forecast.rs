//! `fleetscale forecast`: backtests the predictive policy's forecaster on a
//! trace (either format of `shared/traces/README.md`; a request trace is
//! counted per `--interval` into a rate series) and reports the model the
//! selection chose, its MAPE and sMAPE next to seasonal naive, and the
//! measured coverage of its prediction intervals; optionally writes JSON and
//! an SVG plot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use fleetscale_core::forecast::DAY_MS;
use fleetscale_core::forecast::{backtest, Accuracy, BacktestReport, CandidateScore};
use fleetscale_core::trace::parse_trace;

/// Arguments of `fleetscale forecast`.
#[derive(Args, Debug)]
pub struct ForecastArgs {
    /// Trace file (rates or requests CSV).
    #[arg(long)]
    trace: PathBuf,
    /// Lead of every forecast (e.g. 1h, 30m). Default: 1h, or a quarter of
    /// the holdout when that is shorter.
    #[arg(long, value_parser = humantime::parse_duration)]
    horizon: Option<Duration>,
    /// Held-out tail of the trace the forecasts are scored on (e.g. 7d).
    /// Default: 7d, or a quarter of the trace when it is shorter than 28 days.
    #[arg(long, value_parser = humantime::parse_duration)]
    holdout: Option<Duration>,
    /// Interval that a request trace is counted in (rate traces keep theirs).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1m")]
    interval: Duration,
    /// Coverage of the prediction interval, in (0, 1).
    #[arg(long, default_value_t = 0.8)]
    level: f64,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG plot of the holdout to this file.
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(Serialize)]
struct Figures {
    mape: f64,
    smape: f64,
    mape_skipped_zero: usize,
}

impl From<Accuracy> for Figures {
    fn from(a: Accuracy) -> Self {
        Figures {
            mape: a.mape,
            smape: a.smape,
            mape_skipped_zero: a.mape_skipped_zero,
        }
    }
}

#[derive(Serialize)]
struct Baseline {
    name: &'static str,
    period_s: i64,
    #[serde(flatten)]
    figures: Figures,
}

#[derive(Serialize)]
struct Score {
    model: &'static str,
    smape: f64,
    points: usize,
}

#[derive(Serialize)]
struct Output {
    trace: String,
    horizon_s: i64,
    holdout_s: i64,
    interval_s: f64,
    points: usize,
    /// The model the selection chose (also under its former key `model`).
    selected_model: &'static str,
    model: &'static str,
    /// Every candidate's sMAPE in the rolling-origin backtest on the training part.
    backtest_scores: Vec<Score>,
    /// Horizon of that backtest, seconds (the `--horizon`).
    backtest_horizon_s: i64,
    mape: f64,
    smape: f64,
    mape_skipped_zero: usize,
    baseline: Baseline,
    mape_improvement: f64,
    /// sMAPE over the seasonal-naive sMAPE on the holdout.
    smape_ratio: f64,
    /// Nominal coverage of the prediction intervals.
    interval_level: f64,
    /// Share of the holdout inside its prediction interval.
    interval_coverage: f64,
}

/// The holdout and horizon to use on a trace spanning `span_ms`: the given
/// ones, else 7 days (a quarter of the trace when it is shorter than 28
/// days, at least one interval) and one hour (a quarter of the holdout when
/// that is shorter, at least one interval).
fn window(
    span_ms: i64,
    interval_ms: i64,
    holdout: Option<Duration>,
    horizon: Option<Duration>,
) -> (i64, i64) {
    let iv = interval_ms.max(1);
    let hold = holdout.map_or_else(
        || (7 * DAY_MS).min(span_ms / 4 / iv * iv).max(iv),
        |d| d.as_millis() as i64,
    );
    let hor = horizon.map_or_else(
        || 3_600_000.min(hold / 4 / iv * iv).max(iv),
        |d| d.as_millis() as i64,
    );
    (hold, hor)
}

fn score(s: &CandidateScore) -> Score {
    Score {
        model: s.model.name(),
        smape: s.smape,
        points: s.points,
    }
}

/// Runs the command.
pub fn run(a: &ForecastArgs) -> anyhow::Result<()> {
    if !(a.level > 0.0 && a.level < 1.0) {
        anyhow::bail!("--level must be in (0, 1)");
    }
    let text = std::fs::read_to_string(&a.trace)
        .with_context(|| format!("cannot read {}", a.trace.display()))?;
    let trace = parse_trace(&text).with_context(|| format!("{}", a.trace.display()))?;
    let series = trace.to_rates(Some(a.interval.as_millis() as i64));
    let span_ms = series.values.len() as i64 * series.interval_ms;
    let (holdout_ms, horizon_ms) = window(span_ms, series.interval_ms, a.holdout, a.horizon);
    let r = backtest(&series, horizon_ms, holdout_ms, a.level).map_err(|e| {
        let (h, z) = window(span_ms, series.interval_ms, None, None);
        anyhow::anyhow!(
            "{e}: the trace holds {} interval(s) of {}s; try --holdout {}s --horizon {}s{}",
            series.values.len(),
            series.interval_ms / 1000,
            h / 1000,
            z / 1000,
            if matches!(trace, fleetscale_core::trace::Trace::Requests { .. }) {
                " (or a shorter --interval to count the requests in)"
            } else {
                ""
            }
        )
    })?;
    let out = Output {
        trace: a.trace.display().to_string(),
        horizon_s: horizon_ms / 1000,
        holdout_s: holdout_ms / 1000,
        interval_s: r.interval_ms as f64 / 1000.0,
        points: r.points.len(),
        selected_model: r.model.name(),
        model: r.model.name(),
        backtest_scores: r.selection.iter().map(score).collect(),
        backtest_horizon_s: r.horizon_steps as i64 * r.interval_ms / 1000,
        mape: r.ours.mape,
        smape: r.ours.smape,
        mape_skipped_zero: r.ours.mape_skipped_zero,
        baseline: Baseline {
            name: "seasonal_naive",
            period_s: r.baseline_period as i64 * r.interval_ms / 1000,
            figures: r.baseline.into(),
        },
        mape_improvement: if r.baseline.mape > 0.0 {
            1.0 - r.ours.mape / r.baseline.mape
        } else {
            0.0
        },
        smape_ratio: if r.baseline.smape > 0.0 {
            r.ours.smape / r.baseline.smape
        } else {
            1.0
        },
        interval_level: r.level,
        interval_coverage: r.coverage,
    };
    println!(
        "trace {}: {} points, interval {}s, horizon {}s ({} steps), holdout {}s",
        out.trace, out.points, out.interval_s, out.horizon_s, r.horizon_steps, out.holdout_s
    );
    println!(
        "{:<16} {:>8} {:>8}  skipped(actual=0)",
        "model", "MAPE", "sMAPE"
    );
    println!(
        "{:<16} {:>7.2}% {:>7.2}%  {}",
        out.model,
        out.mape * 100.0,
        out.smape * 100.0,
        out.mape_skipped_zero
    );
    println!(
        "{:<16} {:>7.2}% {:>7.2}%  {}",
        "seasonal_naive",
        r.baseline.mape * 100.0,
        r.baseline.smape * 100.0,
        r.baseline.mape_skipped_zero
    );
    println!(
        "MAPE improvement over seasonal naive: {:.1}%; sMAPE ratio {:.3}",
        out.mape_improvement * 100.0,
        out.smape_ratio
    );
    println!(
        "{:.0}% prediction interval: coverage {:.1}% on the holdout",
        out.interval_level * 100.0,
        out.interval_coverage * 100.0
    );
    let scores: Vec<String> = out
        .backtest_scores
        .iter()
        .map(|s| format!("{} {:.2}%", s.model, s.smape * 100.0))
        .collect();
    println!(
        "selected {} by a backtest on the training part (sMAPE): {}",
        out.selected_model,
        if scores.is_empty() {
            "too short to hold out, default".to_string()
        } else {
            scores.join(", ")
        }
    );
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&out)? + "\n")
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &a.plot {
        write_svg(p, &r, a.level)?;
    }
    Ok(())
}

fn write_svg(p: &Path, r: &BacktestReport, level: f64) -> anyhow::Result<()> {
    let svg = super::plot::forecast_svg(r, level)?;
    std::fs::write(p, svg).with_context(|| format!("cannot write {}", p.display()))
}
