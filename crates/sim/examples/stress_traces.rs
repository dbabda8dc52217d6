//! Writes the synthetic stress traces (`fleetscale_sim::stress`) as rate
//! trace CSVs, so that `fleetscale forecast` and `fleetscale simulate` can
//! replay them:
//! `cargo run -p fleetscale-sim --example stress_traces -- OUTDIR [SEED]`.

use fleetscale_sim::stress::{generate, to_csv, StressKind};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "stress-traces".into()));
    let seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(1u64);
    std::fs::create_dir_all(&dir)?;
    for kind in StressKind::ALL {
        let path = dir.join(format!("{}.csv", kind.name()));
        std::fs::write(&path, to_csv(&generate(kind, seed)))?;
        println!("{}", path.display());
    }
    Ok(())
}
