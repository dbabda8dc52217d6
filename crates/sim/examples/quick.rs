//! Scratch runner: prints the summary table for a trace.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let text = std::fs::read_to_string(&args[1]).expect("read");
    let mut cfg = fleetscale_sim::SimConfig::default();
    if let Some(h) = args.get(2) {
        cfg.max_hours = Some(h.parse().expect("hours"));
    }
    let t = std::time::Instant::now();
    let r = fleetscale_sim::run_text(
        &text,
        &args[1],
        &cfg,
        &fleetscale_sim::default_policies(),
        &mut |_, _| {},
    )
    .expect("run");
    for p in &r.results {
        println!("{:<11} slo {:.4} p95 {:>9.0} inst_s {:>12.0} lb {:>12.0} over {:>12.0} util {:.3} act {} drop {} n {}",
            p.policy, p.slo_attainment, p.p95_latency_ms, p.instance_seconds, p.lower_bound_instance_seconds,
            p.overprovision_instance_seconds, p.mean_utilization, p.scaling_actions, p.dropped, p.requests);
    }
    if std::env::var("TL").is_ok() {
        for (i, pt) in r.results[0].timeline.iter().enumerate().step_by(10) {
            println!(
                "{:>8.0} load {:>6.2} cap {:>6.2} lat {:>8.0} | hpa cap {:>6.2} lat {:>8.0}",
                pt.t_s,
                r.load[i],
                pt.capacity,
                pt.mean_latency_ms,
                r.results[1].timeline[i].capacity,
                r.results[1].timeline[i].mean_latency_ms
            );
        }
    }
    println!(
        "{:.2}s static={}",
        t.elapsed().as_secs_f64(),
        r.peak_instances
    );
}
#[allow(dead_code)]
fn unused() {}
