//! `fleetscale simulate`: the shell around `fleetscale-sim` — checks that
//! its output files can be written, reads the trace and policy files, draws
//! a progress bar on stderr (a terminal only), prints the table, writes the
//! JSON report and the SVG plot (`super::plot`).

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use fleetscale_core::{PolicySpec, PoolPolicies};
use fleetscale_sim::{PolicyChoice, Report, SimConfig};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::plot;

/// Arguments of `fleetscale simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Trace file (requests or rates format, detected from the header).
    #[arg(long)]
    trace: PathBuf,
    /// Policy to compare: `fleetscale` (the default) or a JSON file of pool
    /// policies or of one policy. Repeatable.
    #[arg(long = "policy")]
    policies: Vec<String>,
    /// Baselines, comma-separated, from hpa, keda, kpa, step, static.
    #[arg(long, default_value = "hpa,keda,kpa,step,static")]
    baselines: String,
    /// Latency SLO, ms (default: requests 20000; rates 3 × the mean service time).
    #[arg(long)]
    slo_ms: Option<f64>,
    /// Provisioning delay of a new instance, seconds.
    #[arg(long, default_value_t = 60.0)]
    cold_start_s: f64,
    /// Observation and decision interval of every policy, seconds.
    #[arg(long, default_value_t = 15.0)]
    tick_s: f64,
    /// Rate traces: instances the peak interval needs at 70% utilization.
    #[arg(long, default_value_t = 40)]
    peak_instances: u32,
    /// Seed of the arrival process.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulate only the first hours of the trace.
    #[arg(long)]
    max_hours: Option<f64>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG plot (load, capacity per policy, latency) here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    output_json: bool,
    /// Also run each policy over its knob (fleetscale: attainment goal;
    /// HPA, KPA: target utilization; KEDA: target per instance): the
    /// frontiers in the JSON, the comparison at equal attainment in the
    /// table, and `--plot` draws the frontiers.
    #[arg(long)]
    sweep: bool,
    /// Put the baselines under the live engine's flap budget too (at most
    /// four reversals an hour, a further scale-in held), as fleetscale's
    /// own decisions always are: a comparison under equal constraints.
    #[arg(long)]
    guard_baselines: bool,
}

fn load_policy(arg: &str) -> anyhow::Result<PolicyChoice> {
    if arg == "fleetscale" {
        return Ok(PolicyChoice::Fleetscale);
    }
    let path = Path::new(arg);
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--policy {arg}: not `fleetscale` and not a readable file"))?;
    let name = path
        .file_stem()
        .map_or_else(|| arg.to_string(), |s| s.to_string_lossy().into_owned());
    let spec = match serde_json::from_str::<PoolPolicies>(&text) {
        Ok(p) => p,
        Err(e1) => {
            let one: PolicySpec = serde_json::from_str(&text).map_err(|e2| {
                anyhow::anyhow!("{arg}: neither pool policies ({e1}) nor one policy ({e2})")
            })?;
            serde_json::from_value(serde_json::json!({ "policies": [one] }))?
        }
    };
    Ok(PolicyChoice::Pool { name, spec })
}

/// Checks, before a run, that `path` (the file of `flag`) can be written:
/// its folder exists and takes a new file, or the file exists, is not a
/// folder and opens for writing. Leaves an existing file as it is and
/// removes the probe it created.
pub fn check_writable(flag: &str, path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    if path.is_dir() {
        anyhow::bail!("{flag} {shown}: is a folder, not a file");
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        anyhow::bail!(
            "{flag} {shown}: the folder {} does not exist",
            parent.display()
        );
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("{flag} {shown}: cannot be written"))?;
    if !existed {
        std::fs::remove_file(path)
            .with_context(|| format!("{flag} {shown}: cannot remove the probe file"))?;
    }
    Ok(())
}

/// A progress bar over `n` runs on stderr, with the elapsed time and
/// an ETA; hidden when stderr is not a terminal (a log or a pipe gets
/// nothing), and never on stdout.
fn progress(n: usize) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(n as u64 * 1000), target);
    bar.set_style(
        ProgressStyle::with_template("[{elapsed_precise}] [{bar:40}] {msg} (ETA {eta})")
            .expect("a valid template")
            .progress_chars("#>-"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Runs the command.
pub fn run(a: &SimulateArgs) -> anyhow::Result<()> {
    if let Some(p) = &a.json {
        check_writable("--json", p)?;
    }
    if let Some(p) = &a.plot {
        check_writable("--plot", p)?;
    }
    let text = std::fs::read_to_string(&a.trace)
        .with_context(|| format!("cannot read {}", a.trace.display()))?;
    let mut policies = Vec::new();
    if a.policies.is_empty() {
        policies.push(PolicyChoice::Fleetscale);
    }
    for p in &a.policies {
        policies.push(load_policy(p)?);
    }
    policies.extend(PolicyChoice::parse_baselines(&a.baselines)?);
    let cfg = SimConfig {
        slo_ms: a.slo_ms,
        cold_start_s: a.cold_start_s,
        tick_s: a.tick_s,
        peak_instances: a.peak_instances,
        seed: a.seed,
        max_hours: a.max_hours,
        guard_baselines: a.guard_baselines,
        ..SimConfig::default()
    };
    let name = a
        .trace
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    // Runs: one per policy, and with --sweep one per knob value of each
    // policy that has a knob (the grid's length does not depend on slots).
    let n = policies.len();
    let runs = if a.sweep {
        n + policies
            .iter()
            .map(|p| fleetscale_sim::knob_grid(p, 1).len())
            .sum::<usize>()
    } else {
        n
    };
    let trace = fleetscale_core::trace::parse_trace(&text)
        .map_err(fleetscale_sim::SimError::Trace)
        .with_context(|| format!("{}", a.trace.display()))?;
    let pb = progress(runs);
    let mut bar = |i: usize, f: f64| {
        let i = i.min(runs.saturating_sub(1));
        pb.set_position(((i as f64 + f.clamp(0.0, 1.0)) * 1000.0) as u64);
        pb.set_message(if i < n {
            format!("policy {}/{n}", i + 1)
        } else {
            format!("knob run {}/{}", i + 1 - n, runs - n)
        });
    };
    let report = if a.sweep {
        fleetscale_sim::sweep(&trace, &name, &cfg, &policies, &mut bar)
    } else {
        fleetscale_sim::run(&trace, &name, &cfg, &policies, &mut bar)
    };
    pb.finish_and_clear();
    let report = report.with_context(|| format!("{}", a.trace.display()))?;
    if let Some(p) = &a.json {
        let json = serde_json::to_string_pretty(&report.without_timelines())?;
        std::fs::write(p, json + "\n").with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &a.plot {
        let svg = if a.sweep {
            plot::frontier_svg(&report)?
        } else {
            plot::timeline_svg(&report)?
        };
        std::fs::write(p, svg).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if a.output_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.without_timelines())?
        );
    } else {
        print!("{}", table(&report));
        if !report.equal_attainment.is_empty() {
            print!("\n{}", equal_attainment_table(&report));
        }
    }
    Ok(())
}

/// "Instance-seconds at equal attainment, fleetscale ÷ baseline" as a
/// Markdown table (`--sweep`).
pub fn equal_attainment_table(r: &Report) -> String {
    let mut s = String::from(
        "instance-seconds at equal attainment, fleetscale ÷ baseline (fleetscale's frontier at each baseline's default attainment)\n\n",
    );
    s.push_str("| baseline | default att. | instance-s | fleetscale instance-s | fleetscale ÷ baseline | fleetscale default att. − baseline's |\n");
    s.push_str("|---|---|---|---|---|---|\n");
    for e in &r.equal_attainment {
        let (fs, ratio) = match (e.fleetscale, e.ratio) {
            (fleetscale_sim::CostAt::FallsShort { best_attainment }, _) => (
                format!("falls short (best {best_attainment:.5})"),
                "—".to_string(),
            ),
            (c, Some(x)) => (
                format!(
                    "{:.0}{}",
                    c.instance_seconds().unwrap_or(f64::NAN),
                    if matches!(c, fleetscale_sim::CostAt::Cheapest { .. }) {
                        " (cheapest point)"
                    } else {
                        ""
                    }
                ),
                format!("{x:.3}"),
            ),
            (c, None) => (format!("{:?}", c.instance_seconds()), "—".to_string()),
        };
        let _ = writeln!(
            s,
            "| {} | {:.5} | {:.0} | {fs} | {ratio} | {:+.5} |",
            e.baseline, e.slo_attainment, e.instance_seconds, e.default_attainment_gap
        );
    }
    s
}

/// The results as a Markdown table.
pub fn table(r: &Report) -> String {
    let mut s = format!(
        "trace {} ({}, {:.1} h, SLO {} ms, cold start {} s, {} slots/instance, static {})\n\n",
        r.trace,
        r.format,
        r.horizon_s / 3600.0,
        r.slo_ms,
        r.cold_start_s,
        r.slots_per_instance,
        r.peak_instances
    );
    s.push_str("| policy | SLO att. | p50 ms | p95 ms | p99 ms | instance-s | lower bound | over-prov. | util | actions | dropped |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for p in &r.results {
        let _ = writeln!(
            s,
            "| {} | {:.4} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} | {} | {} |",
            p.policy,
            p.slo_attainment,
            p.p50_latency_ms,
            p.p95_latency_ms,
            p.p99_latency_ms,
            p.instance_seconds,
            p.lower_bound_instance_seconds,
            p.overprovision_instance_seconds,
            p.mean_utilization,
            p.scaling_actions,
            p.dropped
        );
    }
    s
}
