//! `fleetscale simulate`: the shell around `fleetscale-sim` — reads the
//! trace and policy files, draws a progress bar on stderr, prints the
//! table, writes the JSON report and the SVG plot.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use fleetscale_core::{PolicySpec, PoolPolicies};
use fleetscale_sim::{PolicyChoice, Report, SimConfig};

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

/// Runs the command.
pub fn run(a: &SimulateArgs) -> anyhow::Result<()> {
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
        ..SimConfig::default()
    };
    let name = a
        .trace
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let n = policies.len();
    let mut last = usize::MAX;
    // Only on a terminal: a log file or a pipe gets no carriage returns.
    let tty = std::io::stderr().is_terminal();
    let mut bar = |i: usize, f: f64| {
        let done = ((i as f64 + f) / n as f64 * 40.0) as usize;
        if tty && done != last {
            last = done;
            eprint!(
                "\r[{}{}] policy {}/{n}",
                "#".repeat(done.min(40)),
                " ".repeat(40 - done.min(40)),
                (i + 1).min(n)
            );
            let _ = std::io::stderr().flush();
        }
    };
    let trace = fleetscale_core::trace::parse_trace(&text)
        .map_err(fleetscale_sim::SimError::Trace)
        .with_context(|| format!("{}", a.trace.display()))?;
    let report = if a.sweep {
        fleetscale_sim::sweep(&trace, &name, &cfg, &policies, &mut bar)
    } else {
        fleetscale_sim::run(&trace, &name, &cfg, &policies, &mut bar)
    }
    .with_context(|| format!("{}", a.trace.display()))?;
    if tty {
        eprintln!();
    }
    if let Some(p) = &a.json {
        let json = serde_json::to_string_pretty(&report.without_timelines())?;
        std::fs::write(p, json + "\n").with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &a.plot {
        let plot = if a.sweep {
            frontier_svg(&report)
        } else {
            svg(&report)
        };
        std::fs::write(p, plot).with_context(|| format!("cannot write {}", p.display()))?;
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

/// The frontiers as an SVG: SLO attainment on x, instance-seconds on y,
/// one line per policy over its knob, its default point marked (a ring).
pub fn frontier_svg(r: &Report) -> String {
    let (w, h, pad) = (900.0, 560.0, 70.0);
    let pts: Vec<(f64, f64)> = r
        .frontiers
        .values()
        .flatten()
        .map(|p| (p.slo_attainment, p.instance_seconds))
        .chain(
            r.results
                .iter()
                .map(|p| (p.slo_attainment, p.instance_seconds)),
        )
        .filter(|(a, c)| a.is_finite() && c.is_finite())
        .collect();
    // The x range covers the points above the lowest default attainment
    // minus a margin (a knob that collapses would squash the rest).
    let lowest_default = r
        .results
        .iter()
        .map(|p| p.slo_attainment)
        .fold(1.0, f64::min);
    let x0 = (lowest_default - 0.05).max(0.0);
    let x1 = pts.iter().map(|p| p.0).fold(x0 + 1e-4, f64::max);
    let shown: Vec<&(f64, f64)> = pts.iter().filter(|p| p.0 >= x0).collect();
    let y0 = 0.0;
    let y1 = shown.iter().map(|p| p.1).fold(1.0, f64::max) * 1.05;
    let x = |a: f64| pad + (w - 2.0 * pad) * (a - x0) / (x1 - x0).max(1e-9);
    let y = |c: f64| h - pad - (h - 2.0 * pad) * (c - y0) / (y1 - y0).max(1e-9);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(s, "<text x=\"{pad}\" y=\"25\">{}: SLO attainment (x) vs instance-seconds (y) per knob setting; rings: defaults</text>", r.trace);
    let _ = writeln!(
        s,
        "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#000\"/>",
        h - pad,
        w - pad,
        h - pad
    );
    let _ = writeln!(
        s,
        "<line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"#000\"/>",
        h - pad
    );
    for i in 0..=4 {
        let a = x0 + (x1 - x0) * f64::from(i) / 4.0;
        let c = y0 + (y1 - y0) * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{a:.4}</text>",
            x(a),
            h - pad + 18.0
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{c:.0}</text>",
            pad - 5.0,
            y(c) + 4.0
        );
    }
    for (k, (name, f)) in r.frontiers.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let mut f: Vec<_> = f.iter().filter(|p| p.slo_attainment >= x0).collect();
        f.sort_by(|a, b| a.slo_attainment.total_cmp(&b.slo_attainment));
        let d: Vec<String> = f
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.slo_attainment), y(p.instance_seconds)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\" points=\"{}\"/>",
            d.join(" ")
        );
        for p in &f {
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{c}\"/>",
                x(p.slo_attainment),
                y(p.instance_seconds)
            );
        }
        if let Some(d) = r.results.iter().find(|p| &p.policy == name) {
            if d.slo_attainment >= x0 {
                let _ = writeln!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"7\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"/>", x(d.slo_attainment), y(d.instance_seconds));
            }
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{name}</text>",
            pad + 10.0,
            pad + 15.0 * k as f64
        );
    }
    s.push_str("</svg>\n");
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

const COLORS: [&str; 8] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A two-panel SVG: offered load and capacity per policy; mean latency per policy (log).
pub fn svg(r: &Report) -> String {
    let (w, h, pad) = (1000.0, 300.0, 50.0);
    let n = r.load.len().max(2);
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (n - 1) as f64;
    let cap_max = r
        .results
        .iter()
        .flat_map(|p| p.timeline.iter().map(|t| t.capacity))
        .chain(r.load.iter().copied())
        .fold(1.0, f64::max);
    let lat: Vec<f64> = r
        .results
        .iter()
        .flat_map(|p| p.timeline.iter().map(|t| t.mean_latency_ms))
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let (lmin, lmax) = (
        lat.iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .max(1.0)
            .log10(),
        lat.iter().copied().fold(1.0, f64::max).log10() + 0.1,
    );
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        2.0 * h + 40.0
    );
    let _ = writeln!(s, "<text x=\"{pad}\" y=\"20\">{}: offered load (grey, instances at 100%) and ready capacity per policy</text>", r.trace);
    let _ = writeln!(s, "<text x=\"{pad}\" y=\"{}\">mean latency per policy, ms (log scale {:.0}..{:.0}); dashed: SLO</text>", h + 35.0, 10f64.powf(lmin), 10f64.powf(lmax));
    let poly = |pts: Vec<(f64, f64)>, color: &str, width: f64, dash: bool| {
        let d: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\"{} points=\"{}\"/>\n",
            if dash { " stroke-dasharray=\"4 3\"" } else { "" },
            d.join(" ")
        )
    };
    let y1 = |v: f64| 30.0 + (h - 40.0) * (1.0 - v / cap_max);
    let y2 = |v: f64| {
        h + 45.0 + (h - 40.0) * (1.0 - (v.max(1.0).log10() - lmin) / (lmax - lmin).max(1e-9))
    };
    s.push_str(&poly(
        r.load
            .iter()
            .enumerate()
            .map(|(i, v)| (x(i), y1(*v)))
            .collect(),
        "#999",
        1.0,
        false,
    ));
    for (k, p) in r.results.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        s.push_str(&poly(
            p.timeline
                .iter()
                .enumerate()
                .map(|(i, t)| (x(i), y1(t.capacity)))
                .collect(),
            c,
            1.2,
            false,
        ));
        s.push_str(&poly(
            p.timeline
                .iter()
                .enumerate()
                .filter(|(_, t)| t.mean_latency_ms.is_finite())
                .map(|(i, t)| (x(i), y2(t.mean_latency_ms)))
                .collect(),
            c,
            1.0,
            false,
        ));
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{}</text>",
            w - pad - 90.0,
            45.0 + 15.0 * k as f64,
            p.policy
        );
    }
    s.push_str(&poly(
        vec![(pad, y2(r.slo_ms)), (w - pad, y2(r.slo_ms))],
        "#000",
        1.0,
        true,
    ));
    s.push_str("</svg>\n");
    s
}
