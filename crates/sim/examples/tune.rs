//! Tuning harness: runs fleetscale, HPA and KEDA on every shared trace and
//! prints the acceptance figures (SLO attainment against HPA and KEDA,
//! over-provisioning as a share of HPA's).
//!
//! `cargo run --release -p fleetscale-sim --example tune -- [--max-hours H] [--seed N] [--stretch F] [--from-hour H] [--peak-instances N] [TRACE...]`
//!
//! Tunables come from the environment (`FS_<FIELD>` for each field of
//! `FleetscaleTuning`, e.g. `FS_ATTAINMENT_GOAL=0.995`), so a sweep
//! is a shell loop. Traces default to every file under `../shared/traces`.

use std::path::PathBuf;

use fleetscale_sim::{run_text, PolicyChoice, SimConfig};

fn env_f64(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let mut cfg = SimConfig::default();
    if let Some(n) = env_f64("TUNE_POINTS") {
        cfg.plot_points = n as u32;
    }
    let mut traces: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    let mut stretch = 1.0;
    let mut from_hour = 0.0;
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .and_then(|v| v.parse::<f64>().ok())
                .expect("number")
        };
        match a.as_str() {
            "--max-hours" => cfg.max_hours = Some(val()),
            "--seed" => cfg.seed = val() as u64,
            "--stretch" => stretch = val(),
            "--from-hour" => from_hour = val(),
            "--peak-instances" => cfg.peak_instances = val() as u32,
            other => traces.push(other.into()),
        }
    }
    if traces.is_empty() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/traces");
        for sub in ["requests", "rates"] {
            let mut v: Vec<_> = std::fs::read_dir(format!("{root}/{sub}"))
                .expect("shared traces")
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "csv"))
                .collect();
            v.sort();
            traces.extend(v);
        }
    }
    let t = &mut cfg.tuning;
    macro_rules! tune {
        ($($f:ident),*) => {$(
            if let Some(v) = env_f64(&format!("FS_{}", stringify!($f).to_uppercase())) {
                t.$f = v as _;
            }
        )*};
    }
    tune!(
        predictive_utilization_percent,
        prediction_level,
        attainment_goal
    );
    eprintln!("{:?}", cfg.tuning);
    let policies = [
        PolicyChoice::Fleetscale,
        PolicyChoice::Hpa,
        PolicyChoice::Keda,
    ];
    let (mut worst_keda, mut worst_over) = (f64::INFINITY, 0.0f64);
    for path in traces {
        let text = std::fs::read_to_string(&path).expect("read trace");
        let text = transform(&text, stretch, from_hour);
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let started = std::time::Instant::now();
        let r = run_text(&text, &name, &cfg, &policies, &mut |_, _| {}).expect("simulate");
        let [f, h, k] = [&r.results[0], &r.results[1], &r.results[2]];
        if let Ok(dir) = std::env::var("TUNE_DUMP") {
            let mut out =
                String::from("t_s,load,cap_fs,cap_hpa,cap_keda,lat_fs,lat_hpa,lat_keda\n");
            for (i, l) in r.load.iter().enumerate() {
                let p = |j: usize| r.results[j].timeline.get(i).copied();
                let (Some(a), Some(b), Some(c)) = (p(0), p(1), p(2)) else {
                    break;
                };
                out.push_str(&format!(
                    "{},{l:.3},{:.3},{:.3},{:.3},{:.0},{:.0},{:.0}\n",
                    a.t_s,
                    a.capacity,
                    b.capacity,
                    c.capacity,
                    a.mean_latency_ms,
                    b.mean_latency_ms,
                    c.mean_latency_ms
                ));
            }
            std::fs::write(format!("{dir}/{name}.csv"), out).expect("dump");
        }
        let over = f.overprovision_instance_seconds / h.overprovision_instance_seconds;
        let dk = f.slo_attainment - k.slo_attainment;
        worst_keda = worst_keda.min(dk);
        worst_over = worst_over.max(over);
        println!(
            "{name:32} slo fs {:.5} hpa {:.5} keda {:.5} (fs-keda {:+.5}{}) over fs/hpa {:.3}{} keda/hpa {:.3}  util fs {:.3} hpa {:.3}  acts {}  [{:.1}s]",
            f.slo_attainment,
            h.slo_attainment,
            k.slo_attainment,
            dk,
            if dk < 0.0 || f.slo_attainment < h.slo_attainment { " FAIL" } else { "" },
            over,
            if over > 0.7 { " FAIL" } else { "" },
            k.overprovision_instance_seconds / h.overprovision_instance_seconds,
            f.mean_utilization,
            h.mean_utilization,
            f.scaling_actions,
            started.elapsed().as_secs_f64(),
        );
    }
    println!("worst fs-keda {worst_keda:+.5}  worst over fs/hpa {worst_over:.3}");
}

/// Held-out variants: drop the first `from_hour` hours and stretch time by
/// `stretch` (timestamps only; both formats keep their header).
fn transform(text: &str, stretch: f64, from_hour: f64) -> String {
    if stretch == 1.0 && from_hour == 0.0 {
        return text.to_string();
    }
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let parse = |s: &str| {
        let s = s.trim();
        let s = &s[..s.len().min(26)];
        chrono_like(s)
    };
    let rows: Vec<(f64, &str)> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (ts, rest) = l.split_once(',').expect("comma");
            (parse(ts), rest)
        })
        .collect();
    let t0 = rows.first().map(|r| r.0).unwrap_or(0.0);
    let mut out = format!("{header}\n");
    for (t, rest) in rows {
        let rel = t - t0;
        if rel < from_hour * 3600.0 {
            continue;
        }
        let nt = t0 + (rel - from_hour * 3600.0) * stretch;
        out.push_str(&format!("{},{rest}\n", fmt_ts(nt)));
    }
    out
}

/// Seconds since 2000-01-01 of `YYYY-MM-DD HH:MM:SS[.fffffff]` (UTC, no zone).
fn chrono_like(s: &str) -> f64 {
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().expect("digits");
    let (y, mo, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (h, mi, se) = (n(11, 13), n(14, 16), n(17, 19));
    let frac = if s.len() > 20 {
        format!("0{}", &s[19..]).parse::<f64>().unwrap_or(0.0)
    } else {
        0.0
    };
    (days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se) as f64 + frac
}

fn fmt_ts(t: f64) -> String {
    let secs = t.floor() as i64;
    let frac = t - secs as f64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:07}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        (frac * 1e7).round() as i64 % 10_000_000
    )
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
