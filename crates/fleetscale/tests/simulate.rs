//! Black-box test of `fleetscale simulate` on every shared trace.
//!
//! Rate traces are limited to their first 168 hours (`--max-hours 168`) to
//! keep the debug-build runtime modest; the request trace runs whole. It checks
//! that every policy runs on every trace with sane figures and prints the
//! comparison; the acceptance criteria (SLO attainment ≥ HPA's and
//! KEDA's, over-provisioning ≤ 0.7 × HPA's) are not met yet on every trace:
//! docs/simulation.md, "Status", has the figures.

mod support;

use std::path::PathBuf;
use std::process::Command;

fn traces() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/traces");
    let mut v = Vec::new();
    for dir in ["rates", "requests"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            if e.path().extension().is_some_and(|x| x == "csv") {
                v.push(e.path());
            }
        }
    }
    v.sort();
    v
}

fn simulate(path: &PathBuf) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetscale"))
        .args(["simulate", "--output-json", "--max-hours", "168", "--trace"])
        .arg(path)
        .output()
        .expect("run fleetscale");
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json report")
}

fn figure(r: &serde_json::Value, policy: &str, key: &str) -> f64 {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["policy"] == policy)
        .unwrap_or_else(|| panic!("{policy} missing"))[key]
        .as_f64()
        .unwrap()
}

#[test]
fn simulates_every_shared_trace_with_all_policies() {
    let ts = traces();
    assert!(!ts.is_empty(), "no traces under ../shared/traces");
    for t in ts {
        let r = simulate(&t);
        let names: Vec<&str> = r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["policy"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["fleetscale", "hpa", "keda", "kpa", "step", "static"]
        );
        for p in names {
            let a = figure(&r, p, "slo_attainment");
            assert!((0.0..=1.0).contains(&a), "{}: {p} {a}", t.display());
            assert!(figure(&r, p, "instance_seconds") > 0.0);
        }
        eprintln!(
            "{}: slo fleetscale {:.4} hpa {:.4} keda {:.4}; over-prov ratio to hpa {:.3}",
            t.display(),
            figure(&r, "fleetscale", "slo_attainment"),
            figure(&r, "hpa", "slo_attainment"),
            figure(&r, "keda", "slo_attainment"),
            figure(&r, "fleetscale", "overprovision_instance_seconds")
                / figure(&r, "hpa", "overprovision_instance_seconds")
        );
    }
}

#[test]
fn malformed_trace_names_the_line() {
    let dir = support::Scratch::new("fs-sim");
    let p = dir.path("bad.csv");
    std::fs::write(&p, "timestamp,value\n2024-01-01 00:00:00,1\nnot-a-time,2\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fleetscale"))
        .args(["simulate", "--trace"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn a_closed_stdout_ends_quietly_and_a_pipe_gets_no_progress_bar() {
    use std::process::Stdio;
    let dir = support::Scratch::new("fs-sim-pipe");
    let p = dir.path("small.csv");
    let rows: String = (0..48)
        .map(|i| {
            format!(
                "2024-01-01 {:02}:{:02}:00,{}\n",
                i / 2,
                (i % 2) * 30,
                10 + i % 5
            )
        })
        .collect();
    std::fs::write(&p, format!("timestamp,value\n{rows}")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetscale"))
        .args(["simulate", "--output-json", "--trace"])
        .arg(&p)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the report is printed (`| head` that
    // already has its lines).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !err.contains("policy 1/"),
        "no progress bar into a pipe: {err}"
    );
}

/// A small rate trace (a day of 30-minute intervals) in `dir`.
fn small_trace(dir: &support::Scratch) -> PathBuf {
    let p = dir.path("small.csv");
    let rows: String = (0..48)
        .map(|i| {
            format!(
                "2024-01-01 {:02}:{:02}:00,{}\n",
                i / 2,
                (i % 2) * 30,
                10 + i % 5
            )
        })
        .collect();
    std::fs::write(&p, format!("timestamp,value\n{rows}")).unwrap();
    p
}

#[test]
fn the_plot_has_time_axes_a_legend_and_a_panel_per_policy() {
    let dir = support::Scratch::new("fs-sim-plot");
    let trace = small_trace(&dir);
    let svg = dir.path("plot.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetscale"))
        .args(["simulate", "--baselines", "hpa,static", "--trace"])
        .arg(&trace)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg"));
    for want in [
        "time since the trace&apos;s start (h:mm)",
        "instances",
        "ms (log scale)",
        "offered load (instances at 100%)",
        "fleetscale: ready capacity",
        "hpa: mean latency",
        "static ready capacity",
        "10:00",
        "SLO 360000 ms",
    ] {
        assert!(
            plot.contains(&format!("\n{want}\n</text>")),
            "the plot lacks {want}"
        );
    }
}

#[test]
fn output_paths_are_checked_before_the_run() {
    let dir = support::Scratch::new("fs-sim-paths");
    // A trace the run would reject: the path check must come first.
    let bad = dir.path("bad.csv");
    std::fs::write(&bad, "timestamp,value\nnot-a-time,2\n").unwrap();
    let missing = dir.path("no-such-folder").join("out.svg");
    for (flag, path, says) in [
        ("--plot", missing.clone(), "does not exist"),
        ("--json", missing.clone(), "does not exist"),
        ("--json", dir.dir().to_path_buf(), "is a folder"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_fleetscale"))
            .args(["simulate", "--trace"])
            .arg(&bad)
            .arg(flag)
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains(flag) && err.contains(says) && !err.contains("line 2"),
            "{flag} {}: {err}",
            path.display()
        );
        assert!(out.stdout.is_empty());
    }
    // A writable path is left as it was found: an existing file keeps its
    // content until the run succeeds, a new one is not left behind.
    let keep = dir.path("keep.json");
    std::fs::write(&keep, "old").unwrap();
    let fresh = dir.path("fresh.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetscale"))
        .args(["simulate", "--trace"])
        .arg(&bad)
        .arg("--json")
        .arg(&keep)
        .arg("--plot")
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "old");
    assert!(!fresh.exists());
}

#[test]
fn on_a_terminal_the_progress_bar_shows_an_eta_on_stderr_and_stdout_stays_json() {
    // `script` (util-linux, in every Debian) runs the command on a
    // pseudo-terminal; stdout goes to a file, stderr stays on the terminal.
    let dir = support::Scratch::new("fs-sim-tty");
    let trace = small_trace(&dir);
    let json = dir.path("out.json");
    let cmd = format!(
        "{} simulate --output-json --trace '{}' > '{}'",
        env!("CARGO_BIN_EXE_fleetscale"),
        trace.display(),
        json.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .expect("run script(1)");
    let term = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{term}");
    assert!(
        term.contains("ETA") && term.contains("policy 1/6"),
        "no progress bar on the terminal: {term:?}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("stdout is JSON");
    assert_eq!(report["results"].as_array().unwrap().len(), 6);
    // --sweep: the bar counts the knob runs too (8 goals of fleetscale,
    // 10 utilizations of HPA), never past its end.
    let cmd = format!(
        "{} simulate --sweep --baselines hpa --output-json --trace '{}' > '{}'",
        env!("CARGO_BIN_EXE_fleetscale"),
        trace.display(),
        json.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .expect("run script(1)");
    let term = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{term}");
    assert!(term.contains("knob run "), "{term:?}");
    assert!(!term.contains("knob run 19/"), "{term:?}");
}
