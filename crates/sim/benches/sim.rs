//! Benchmark: one simulated hour of the Azure LLM trace with every policy,
//! then `--sweep` of it (every knobbed policy over its knob; target < 5 s).
//! Run with `cargo bench -p fleetscale-sim` (release).

use std::time::Instant;

fn main() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/traces/requests/azure-llm-code-2023.csv"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("skipped: {path} not found");
        return;
    };
    let cfg = fleetscale_sim::SimConfig::default();
    let t = Instant::now();
    let r = fleetscale_sim::run_text(
        &text,
        "azure-llm-code-2023",
        &cfg,
        &fleetscale_sim::default_policies(),
        &mut |_, _| {},
    )
    .expect("simulate");
    let el = t.elapsed();
    println!(
        "azure-llm-code-2023: {:.0} s simulated, {} policies, {} requests each: {:.3} s wall",
        r.horizon_s,
        r.results.len(),
        r.results[0].requests,
        el.as_secs_f64()
    );
    let trace = fleetscale_core::trace::parse_trace(&text).expect("parse");
    let t = Instant::now();
    let r = fleetscale_sim::sweep(
        &trace,
        "azure-llm-code-2023",
        &cfg,
        &fleetscale_sim::default_policies(),
        &mut |_, _| {},
    )
    .expect("sweep");
    let runs: usize = r.results.len() + r.frontiers.values().map(Vec::len).sum::<usize>();
    println!(
        "azure-llm-code-2023 --sweep: {runs} runs: {:.3} s wall (target < 5 s)",
        t.elapsed().as_secs_f64()
    );
}
