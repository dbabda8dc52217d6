//! Runs `fleetscale_sim::sweep` on traces and prints, per trace, each
//! policy's default point, its frontier, and the comparison at equal
//! attainment (the issue-16 acceptance): the iteration tool behind
//! `fleetscale simulate --sweep`, without the binary.
//!
//! ```text
//! cargo run --release -p fleetscale-sim --example frontiers -- [--max-hours H] [--seed N] \
//!     [--tick-s S] [--scrape-s S] [--metrics-delay-s S] [--guard-baselines] TRACE...
//! ```
//! `--guard-baselines` puts the baselines under the live engine's flap
//! budget too (fleetscale always is).
//! `--tick-s`, `--scrape-s` and `--metrics-delay-s` set the decision period,
//! the scrape interval and the publication delay of every policy but KPA
//! (15, 15 and 5 s by default; KPA keeps Knative's 1 s readings and 2 s
//! ticks), to compare the policies on equal information.
//! `FS_ATTAINMENT_GOAL` sets fleetscale's default goal, `FS_STAB_S` its scale-in
//! stabilization (seconds), `FS_RATE_WINDOW_S` its rate window; `FS_PREDICTIVE_FLOOR=0`
//! drops its predictive floor.

use fleetscale_sim::{default_policies, PolicyChoice, SimConfig};

fn main() {
    let mut cfg = SimConfig::default();
    let mut traces = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--max-hours" => cfg.max_hours = args.next().and_then(|v| v.parse().ok()),
            "--guard-baselines" => cfg.guard_baselines = true,
            "--seed" => cfg.seed = args.next().and_then(|v| v.parse().ok()).unwrap_or(1),
            "--tick-s" => cfg.tick_s = args.next().and_then(|v| v.parse().ok()).unwrap_or(15.0),
            "--scrape-s" => cfg.scrape_s = args.next().and_then(|v| v.parse().ok()).unwrap_or(15.0),
            "--metrics-delay-s" => {
                cfg.metrics_delay_s = args.next().and_then(|v| v.parse().ok()).unwrap_or(5.0)
            }
            other => traces.push(other.to_string()),
        }
    }
    if let Some(g) = std::env::var("FS_ATTAINMENT_GOAL")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.tuning.attainment_goal = g;
    }
    if let Some(w) = std::env::var("FS_RATE_WINDOW_S")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.tuning.rate_window_s = w;
    }
    if let Some(w) = std::env::var("FS_STAB_S").ok().and_then(|v| v.parse().ok()) {
        cfg.tuning.scale_in_stabilization_s = w;
    }
    if std::env::var("FS_PREDICTIVE_FLOOR").is_ok_and(|v| v == "0") {
        cfg.tuning.predictive_floor = false;
    }
    let policies: Vec<PolicyChoice> = default_policies()
        .into_iter()
        .filter(|p| !matches!(p, PolicyChoice::Step | PolicyChoice::Static))
        .collect();
    let mut worst_ratio = 0.0f64;
    let mut worst_gap = f64::INFINITY;
    for path in traces {
        let text = std::fs::read_to_string(&path).expect("read trace");
        let name = std::path::Path::new(&path)
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let t = std::time::Instant::now();
        let trace = fleetscale_core::trace::parse_trace(&text).expect("parse");
        let r =
            fleetscale_sim::sweep(&trace, &name, &cfg, &policies, &mut |_, _| {}).expect("sweep");
        println!("{name} ({:.1} s wall)", t.elapsed().as_secs_f64());
        for p in &r.results {
            println!(
                "  {:<10} default {:.5} {:>12.0}",
                p.policy, p.slo_attainment, p.instance_seconds
            );
        }
        for (k, pts) in &r.frontiers {
            let s: Vec<String> = pts
                .iter()
                .map(|x| {
                    format!(
                        "{}:{:.4}/{:.0}",
                        x.knob, x.slo_attainment, x.instance_seconds
                    )
                })
                .collect();
            println!("  {k:<10} {}", s.join(" "));
        }
        for e in &r.equal_attainment {
            let ratio = e.ratio.map_or("falls short".into(), |x| format!("{x:.3}"));
            println!(
                "  vs {:<6} att {:.5} cost {:>12.0}: ratio {ratio}, default gap {:+.5}",
                e.baseline, e.slo_attainment, e.instance_seconds, e.default_attainment_gap
            );
            worst_ratio = worst_ratio.max(e.ratio.unwrap_or(f64::INFINITY));
            worst_gap = worst_gap.min(e.default_attainment_gap);
        }
    }
    println!("worst ratio {worst_ratio:.3} (need <= 0.9), worst default gap {worst_gap:+.5} (need >= -0.002)");
}
