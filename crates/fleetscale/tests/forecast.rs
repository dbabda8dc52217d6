//! Black-box tests of `fleetscale forecast` on the shared traces: the
//! acceptance checks (at least 20% better MAPE than seasonal naive on the NYC
//! taxi trace at a 1 h horizon over a 7 d holdout; on every rate trace sMAPE
//! at most 0.85 × seasonal naive's and 80% intervals covering 70–90% of the
//! holdout), the JSON shape (selected model, backtest scores, coverage), the
//! default window on a short request trace, and line-numbered errors for
//! malformed traces.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::Scratch;

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

fn run_json(trace: &str, extra: &[&str]) -> serde_json::Value {
    run_json_with(trace, &["--horizon", "1h", "--holdout", "7d"], extra)
}

fn run_json_with(trace: &str, window: &[&str], extra: &[&str]) -> serde_json::Value {
    let dir = Scratch::new("fs-forecast");
    let out = dir.path("forecast.json");
    let o = Command::new(env!("CARGO_BIN_EXE_fleetscale"))
        .args(["forecast", "--trace"])
        .arg(shared().join("traces").join(trace))
        .args(window)
        .arg("--json")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}

#[test]
fn nyc_taxi_beats_seasonal_naive_mape_by_a_fifth() {
    let dir = Scratch::new("fs-forecast");
    let svg = dir.path("nyc.svg");
    let v = run_json(
        "rates/nyc-taxi-30min.csv",
        &["--plot", svg.to_str().unwrap()],
    );
    let ours = v["mape"].as_f64().unwrap();
    let base = v["baseline"]["mape"].as_f64().unwrap();
    assert_eq!(v["baseline"]["name"], "seasonal_naive");
    assert_eq!(v["horizon_s"], 3600);
    // 7 days of 30-minute intervals.
    assert_eq!(v["points"], 336);
    assert!(ours <= 0.8 * base, "ours {ours} vs seasonal naive {base}");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("polyline"));
    // Axes with descriptions and UTC time ticks, and a legend naming the
    // interval at the level the report used (the default, 80%).
    let level = v["interval_level"].as_f64().unwrap();
    assert_eq!(level, 0.8);
    let band = format!("{:.0}% prediction interval", level * 100.0);
    for want in [
        "time (UTC)",
        "value per interval (the trace&apos;s unit)",
        "actual",
        "seasonal naive",
        band.as_str(),
    ] {
        assert!(
            plot.contains(&format!("\n{want}\n</text>")),
            "the plot lacks {want}"
        );
    }
    assert!(plot.contains("\nforecast ("), "the legend names the model");
    let ticks = plot.matches(":00\n</text>").count();
    assert!(ticks >= 4, "{ticks} time labels");
}

#[test]
fn every_rate_trace_meets_the_smape_and_coverage_criteria() {
    for t in [
        "rates/nyc-taxi-30min.csv",
        "rates/elb-request-count-5min.csv",
        "rates/twitter-amzn-5min.csv",
    ] {
        let v = run_json(t, &[]);
        for m in [&v, &v["baseline"]] {
            for k in ["mape", "smape"] {
                let x = m[k].as_f64().unwrap();
                assert!(x.is_finite() && x >= 0.0, "{t} {k} {x}");
            }
            assert!(m["smape"].as_f64().unwrap() <= 2.0);
        }
        assert!(v["points"].as_u64().unwrap() > 1000 / 5, "{t}");
        let (ours, base) = (
            v["smape"].as_f64().unwrap(),
            v["baseline"]["smape"].as_f64().unwrap(),
        );
        assert!(
            ours <= 0.85 * base,
            "{t}: sMAPE {ours} vs seasonal naive {base}"
        );
        assert!((v["smape_ratio"].as_f64().unwrap() - ours / base).abs() < 1e-9);
        assert_eq!(v["interval_level"], 0.8);
        let cov = v["interval_coverage"].as_f64().unwrap();
        assert!((0.7..=0.9).contains(&cov), "{t}: coverage {cov}");
        // The selection's scores name the chosen model, which scored best.
        let scores = v["backtest_scores"].as_array().unwrap();
        let chosen = v["selected_model"].as_str().unwrap();
        let best = scores
            .iter()
            .min_by(|a, b| {
                a["smape"]
                    .as_f64()
                    .unwrap()
                    .total_cmp(&b["smape"].as_f64().unwrap())
            })
            .unwrap();
        assert_eq!(best["model"], chosen, "{t}: {scores:?}");
        assert!(
            scores.iter().any(|s| s["model"] == "seasonal_naive_daily"),
            "{t}"
        );
        assert_eq!(v["model"], chosen);
    }
}

#[test]
fn request_trace_is_counted_per_interval() {
    let v = run_json_with(
        "requests/azure-llm-code-2023.csv",
        &["--holdout", "10m", "--horizon", "2m"],
        &["--interval", "1m"],
    );
    assert_eq!(v["horizon_s"], 120);
    assert_eq!(v["points"], 10);
}

#[test]
fn request_trace_gets_a_window_that_fits_it() {
    // One hour of requests: the 7 d default holdout cannot fit, so a quarter
    // of the trace is held out and the horizon is a quarter of that.
    let v = run_json_with("requests/azure-llm-code-2023.csv", &[], &[]);
    assert_eq!(v["interval_s"], 60.0);
    let hold = v["holdout_s"].as_i64().unwrap();
    assert!((600..=900).contains(&hold), "{hold}");
    assert_eq!(v["horizon_s"].as_i64().unwrap(), hold / 4 / 60 * 60);
    assert!(v["selected_model"].is_string());
    // A window that does not fit says which to use.
    let o = Command::new(env!("CARGO_BIN_EXE_fleetscale"))
        .args(["forecast", "--holdout", "7d", "--trace"])
        .arg(shared().join("traces/requests/azure-llm-code-2023.csv"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("try --holdout") && err.contains("--interval"),
        "{err}"
    );
}

#[test]
fn malformed_trace_fails_with_its_line() {
    let dir = Scratch::new("fs-forecast");
    let p = dir.path("bad.csv");
    std::fs::write(
        &p,
        "timestamp,value\n2014-07-01 00:00:00,1\n2014-07-01 00:30:00,-3\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_fleetscale"))
        .args(["forecast", "--trace"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 3") && err.contains("negative"), "{err}");
}
