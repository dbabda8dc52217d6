//! `fleetscale jobs ...`: route a job through the shard router (compliance,
//! budget checked without charge, mode gating, home region or the best
//! region for its kind) and mark a routed job done, over the REST API.

use clap::Subcommand;
use serde_json::json;

use super::client::{self, Conn};
use super::output::Output;

/// Columns shown for a routed job.
const ROUTE_COLS: &[&str] = &[
    "id",
    "region",
    "shard_key",
    "priority",
    "estimated_wait_ms",
    "mode",
    "delay_ms",
    "fallback",
];

/// Columns shown for a job marked done.
const JOB_COLS: &[&str] = &[
    "id",
    "region",
    "job_type",
    "priority",
    "status",
    "created_at",
    "done_at",
];

/// Job subcommands.
#[derive(Subcommand, Debug)]
pub enum JobsCmd {
    /// Route a job: the requested or home region if it can take it, else
    /// the best compliant region for its kind (queued there until done).
    Route {
        /// Tenant id.
        #[arg(long)]
        tenant_id: String,
        /// Job type: posting, orchestration, creative, intel or performance.
        #[arg(long)]
        job_type: String,
        /// Region name to run it in (default: the tenant's home region).
        #[arg(long)]
        region: Option<String>,
        /// Priority, 1 (lowest) to 10 (highest); the server's default is 5.
        #[arg(long)]
        priority: Option<i64>,
        /// Estimated cost in cents (checked against budgets, never charged);
        /// the server's default is 100.
        #[arg(long)]
        estimated_cost_cents: Option<i64>,
    },
    /// Mark a routed job done: it leaves its region's queue.
    Done {
        /// Job id.
        id: String,
    },
}

/// Runs one job subcommand.
pub async fn run(cmd: JobsCmd, conn: Conn) -> anyhow::Result<()> {
    match cmd {
        JobsCmd::Route {
            tenant_id,
            job_type,
            region,
            priority,
            estimated_cost_cents,
        } => {
            let mut body = json!({ "tenant_id": tenant_id, "job_type": job_type });
            if let Some(r) = region {
                body["region"] = json!(r);
            }
            if let Some(p) = priority {
                body["priority"] = json!(p);
            }
            if let Some(c) = estimated_cost_cents {
                body["estimated_cost_cents"] = json!(c);
            }
            let v = conn.post_json("/api/v1/jobs/route", &body).await?;
            conn.show(&v, ROUTE_COLS);
            if matches!(conn.output, Output::Table) {
                println!("reason: {}", v["reason"].as_str().unwrap_or("-"));
            }
            Ok(())
        }
        JobsCmd::Done { id } => {
            let path = format!("/api/v1/jobs/{}/done", client::encode(&id));
            let v = conn
                .send_json(reqwest::Method::POST, &path, &serde_json::Value::Null)
                .await?;
            conn.show(&v, JOB_COLS);
            Ok(())
        }
    }
}
