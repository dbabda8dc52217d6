//! `fleetscale metrics push`: pushes one metric sample over the REST API.

use clap::Subcommand;

use super::client::Conn;
use super::output::{print_json, Output};

/// Metric subcommands.
#[derive(Subcommand, Debug)]
pub enum MetricsCmd {
    /// Push one sample (timestamp now).
    Push {
        /// Pool id.
        #[arg(long)]
        pool_id: String,
        /// Metric name.
        #[arg(long, default_value = "throughput")]
        metric: String,
        /// Value: a finite number (negative ones parse, and the server
        /// names the rule they break).
        #[arg(long, allow_hyphen_values = true, value_parser = finite)]
        value: f64,
    },
}

/// Parses a finite number: `NaN` and infinities are refused before any
/// request is sent.
fn finite(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err("must be a finite number (not NaN or infinity)".into()),
        Err(e) => Err(format!("must be a number: {e}")),
    }
}

/// Runs one metrics subcommand.
pub async fn run(cmd: MetricsCmd, conn: Conn) -> anyhow::Result<()> {
    let MetricsCmd::Push {
        pool_id,
        metric,
        value,
    } = cmd;
    let body =
        serde_json::json!({"samples": [{"pool_id": pool_id, "metric": metric, "value": value}]});
    let v = conn.post_json("/api/v1/metrics", &body).await?;
    match conn.output {
        Output::Json => print_json(&v),
        Output::Table => println!("accepted {}", v["accepted"]),
    }
    Ok(())
}
