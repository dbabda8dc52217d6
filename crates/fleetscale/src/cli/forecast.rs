//! `fleetscale forecast`: backtests the predictive policy's forecaster on a
//! trace (either format of `shared/traces/README.md`) and reports MAPE and
//! sMAPE next to seasonal naive; optionally writes JSON and an SVG plot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use fleetscale_core::forecast::{backtest, Accuracy, BacktestReport};
use fleetscale_core::trace::parse_trace;

/// Arguments of `fleetscale forecast`.
#[derive(Args, Debug)]
pub struct ForecastArgs {
    /// Trace file (rates or requests CSV).
    #[arg(long)]
    trace: PathBuf,
    /// Lead of every forecast (e.g. 1h, 30m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    horizon: Duration,
    /// Held-out tail of the trace the forecasts are scored on (e.g. 7d).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "7d")]
    holdout: Duration,
    /// Interval that a request trace is counted in (rate traces keep theirs).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1m")]
    interval: Duration,
    /// Coverage of the prediction interval, in (0, 1).
    #[arg(long, default_value_t = 0.9)]
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
struct Output {
    trace: String,
    horizon_s: i64,
    holdout_s: i64,
    interval_s: f64,
    points: usize,
    model: &'static str,
    mape: f64,
    smape: f64,
    mape_skipped_zero: usize,
    baseline: Baseline,
    mape_improvement: f64,
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
    let r = backtest(
        &series,
        a.horizon.as_millis() as i64,
        a.holdout.as_millis() as i64,
        a.level,
    )?;
    let out = Output {
        trace: a.trace.display().to_string(),
        horizon_s: a.horizon.as_secs() as i64,
        holdout_s: a.holdout.as_secs() as i64,
        interval_s: r.interval_ms as f64 / 1000.0,
        points: r.points.len(),
        model: r.model.name(),
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
        "MAPE improvement over seasonal naive: {:.1}%",
        out.mape_improvement * 100.0
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
