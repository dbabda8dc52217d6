//! Diagnostic: where fleetscale loses SLO attainment to KEDA and where its
//! cost above the lower bound goes. Runs fleetscale, HPA and KEDA on one
//! trace with 5-minute timeline buckets and prints per-hour figures and the
//! worst 5-minute episodes (misses of fleetscale − KEDA).
//!
//! `cargo run --release -p fleetscale-sim --example diag -- TRACE [--max-hours H (168)] [--seed N] [--top N]`
//!
//! `DIAG_VS=kpa` puts Knative's KPA in KEDA's column.

use fleetscale_sim::{run_text, PolicyChoice, SimConfig};

fn main() {
    let mut cfg = SimConfig::default();
    let mut trace = None;
    let mut top = 25usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--max-hours" => cfg.max_hours = args.next().and_then(|v| v.parse().ok()),
            "--seed" => cfg.seed = args.next().and_then(|v| v.parse().ok()).unwrap_or(1),
            "--top" => top = args.next().and_then(|v| v.parse().ok()).unwrap_or(25),
            other => trace = Some(other.to_string()),
        }
    }
    let t = &mut cfg.tuning;
    let env = |n: &str| std::env::var(n).ok().and_then(|v| v.parse::<f64>().ok());
    if let Some(v) = env("FS_ATTAINMENT_GOAL") {
        t.attainment_goal = v;
    }
    if let Some(v) = env("FS_STAB_S") {
        t.scale_in_stabilization_s = v as i64;
    }
    let path = trace.expect("trace path");
    // The first week unless `--max-hours` says otherwise.
    let hours = *cfg.max_hours.get_or_insert(168.0);
    cfg.plot_points = (hours * 12.0).ceil() as u32; // 5-minute buckets
    let text = std::fs::read_to_string(&path).expect("read trace");
    let pol = [
        PolicyChoice::Fleetscale,
        PolicyChoice::Hpa,
        if std::env::var("DIAG_VS").is_ok_and(|v| v == "kpa") {
            PolicyChoice::Kpa
        } else {
            PolicyChoice::Keda
        },
    ];
    let mut r = run_text(&text, "diag", &cfg, &pol, &mut |_, _| {}).expect("simulate");
    // A trace shorter than `--max-hours` has a shorter horizon: size the
    // buckets from the horizon the run had, and run again.
    let horizon_s = r.bucket_s * f64::from(cfg.plot_points);
    let points = (horizon_s / 300.0).ceil().max(1.0) as u32;
    if points != cfg.plot_points {
        cfg.plot_points = points;
        r = run_text(&text, "diag", &cfg, &pol, &mut |_, _| {}).expect("simulate");
    }
    let [f, h, k] = [&r.results[0], &r.results[1], &r.results[2]];
    let n = f.timeline.len().min(k.timeline.len()).min(r.load.len());
    // r.load: offered work per instance-capacity (instances at 100%).
    println!(
        "bucket {} s; totals: missed fs {} hpa {} keda {}; requests {}",
        r.bucket_s,
        f.timeline.iter().map(|t| t.missed).sum::<u64>(),
        h.timeline.iter().map(|t| t.missed).sum::<u64>(),
        k.timeline.iter().map(|t| t.missed).sum::<u64>(),
        f.requests
    );
    println!("hour  load(inst)  cap fs  keda  hpa | over fs keda | miss fs keda hpa");
    let per_h = ((3600.0 / r.bucket_s).round() as usize).max(1);
    for hr in 0..n.div_ceil(per_h) {
        let s = hr * per_h..((hr + 1) * per_h).min(n);
        let len = s.len() as f64;
        let m = |v: &dyn Fn(usize) -> f64| s.clone().map(v).sum::<f64>() / len;
        let load = m(&|i| r.load[i]);
        let cf = m(&|i| f.timeline[i].capacity);
        let ck = m(&|i| k.timeline[i].capacity);
        let ch = m(&|i| h.timeline[i].capacity);
        let mi =
            |p: &fleetscale_sim::PolicyResult| s.clone().map(|i| p.timeline[i].missed).sum::<u64>();
        println!(
            "{hr:4} {load:8.2} {cf:8.2} {ck:6.2} {ch:6.2} | {:6.2} {:6.2} | {:4} {:4} {:4}",
            cf - load,
            ck - load,
            mi(f),
            mi(k),
            mi(h)
        );
    }
    // Worst buckets: fleetscale misses − KEDA misses.
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by_key(|&i| {
        std::cmp::Reverse(f.timeline[i].missed as i64 - k.timeline[i].missed as i64)
    });
    println!(
        "\nworst 5-min buckets (fs − keda misses); load and fs/keda capacity from 30 min before"
    );
    for &i in idx.iter().take(top) {
        let from = i.saturating_sub(6);
        let seq = |v: &dyn Fn(usize) -> f64| {
            (from..=(i + 2).min(n - 1))
                .map(|j| format!("{:5.1}", v(j)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "t {:6.2} h  miss fs {} keda {}\n   load {}\n   fs   {}\n   keda {}\n   lat  {}",
            i as f64 * r.bucket_s / 3600.0,
            f.timeline[i].missed,
            k.timeline[i].missed,
            seq(&|j| r.load[j]),
            seq(&|j| f.timeline[j].capacity),
            seq(&|j| k.timeline[j].capacity),
            seq(&|j| f.timeline[j].mean_latency_ms / 1000.0),
        );
    }
    // Where the over-provisioning goes: by load level.
    let mut bins = [(0.0f64, 0.0f64, 0.0f64, 0u64, 0u64); 8];
    for i in 0..n {
        let l = r.load[i];
        let b = ((l.max(1e-9)).log2().floor() as i64 + 2).clamp(0, 7) as usize;
        bins[b].0 += 1.0;
        bins[b].1 += f.timeline[i].capacity - l;
        bins[b].2 += k.timeline[i].capacity - l;
        bins[b].3 += f.timeline[i].missed;
        bins[b].4 += k.timeline[i].missed;
    }
    println!("\nby load level (instances at 100%): buckets, mean over fs/keda, misses fs/keda");
    for (b, x) in bins.iter().enumerate() {
        if x.0 > 0.0 {
            println!(
                "  [{:5.2},{:5.2}) {:5} over {:6.2} {:6.2}  miss {:5} {:5}",
                2f64.powi(b as i32 - 2),
                2f64.powi(b as i32 - 1),
                x.0,
                x.1 / x.0,
                x.2 / x.0,
                x.3,
                x.4
            );
        }
    }
}
