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
        /// Value.
        #[arg(long)]
        value: f64,
    },
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
