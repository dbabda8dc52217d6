//! `fleetscale route`, `fleetscale routing ...` and the tenant policy
//! commands (`fleetscale tenants region-policy|routing-policy`): route a
//! workload, inspect, search and replay recorded decisions, report an
//! outcome, and show or set a tenant's region and routing policies over
//! the REST API.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{self, Conn};
use super::output::{print_json, print_table, Output};

/// Columns shown for a decision.
const DECISION_COLS: &[&str] = &[
    "id",
    "selected_region",
    "score",
    "workload_type",
    "agent_type",
    "created_at",
];

/// Columns shown for a decision's candidates.
const CANDIDATE_COLS: &[&str] = &["region", "compliant", "eligible", "excluded_by", "score"];

/// Columns shown for a replay.
const REPLAY_COLS: &[&str] = &["id", "recorded_region", "selected_region", "same", "code"];

/// Columns shown for an ejection state.
const EJECTION_COLS: &[&str] = &[
    "tenant_id",
    "region",
    "consecutive_failures",
    "ejections",
    "ejected",
    "ejected_until",
];

/// Columns shown for a tenant policy.
const POLICY_COLS: &[&str] = &["tenant_id", "source", "updated_at", "policy"];

/// Arguments of `fleetscale route`.
#[derive(Args, Debug)]
pub struct RouteArgs {
    /// Tenant id.
    #[arg(long)]
    tenant_id: String,
    /// Workload type (the compliance key of the tenant's region policy).
    #[arg(long)]
    workload_type: String,
    /// Agent type that must have spare capacity.
    #[arg(long)]
    agent_type: String,
    /// A preferred region name; repeat for more, first preferred first.
    #[arg(long = "preferred-region")]
    preferred_regions: Vec<String>,
    /// Client country code (e.g. DE, US-CA), for the geolocation policy.
    #[arg(long)]
    client_country: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

/// Routing decision subcommands.
#[derive(Subcommand, Debug)]
pub enum RoutingCmd {
    /// Show one recorded decision, its figures and candidates.
    Inspect {
        /// Decision id.
        id: String,
    },
    /// Search recorded decisions, newest first.
    Search {
        /// Only this tenant.
        #[arg(long)]
        tenant_id: Option<String>,
        /// Only this workload type.
        #[arg(long)]
        workload_type: Option<String>,
        /// Only decisions that chose this region (name).
        #[arg(long)]
        selected_region: Option<String>,
        /// Only decisions made at or after this time (RFC 3339 or Unix ms).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        page: client::PageArgs,
    },
    /// Recompute a recorded decision from its stored input with today's code.
    Replay {
        /// Decision id.
        id: String,
    },
    /// Report the outcome of a routed workload (5 failures in a row eject
    /// the region for the tenant).
    Outcome {
        /// Decision id.
        id: String,
        /// Whether the work succeeded: true or false.
        #[arg(long, action = clap::ArgAction::Set)]
        success: bool,
        /// Observed latency to the region, ms.
        #[arg(long)]
        latency_ms: Option<f64>,
    },
}

/// Prints a decision: a one-row table, its reason and its candidates (JSON: as answered).
fn show_decision(conn: &Conn, v: &Value) {
    match conn.output {
        Output::Json => print_json(v),
        Output::Table => {
            print_table(std::slice::from_ref(v), DECISION_COLS);
            println!("reason: {}", v["reason"].as_str().unwrap_or("-"));
            let (sla, perf) = (&v["sla_context"], &v["performance_context"]);
            println!(
                "region mode {}, jurisdiction {}, latency {} ms, capacity score {}, policy {}",
                sla["region_mode"].as_str().unwrap_or("-"),
                sla["jurisdiction"].as_str().unwrap_or("-"),
                perf["latency_ms"],
                perf["capacity_score"],
                perf["policy"].as_str().unwrap_or("-"),
            );
            print_table(
                v["candidates"].as_array().map(Vec::as_slice).unwrap_or(&[]),
                CANDIDATE_COLS,
            );
        }
    }
}

/// Runs `fleetscale route`.
pub async fn route(a: RouteArgs) -> anyhow::Result<()> {
    let mut body = json!({
        "tenant_id": a.tenant_id,
        "workload_type": a.workload_type,
        "agent_type": a.agent_type,
        "preferred_regions": a.preferred_regions,
    });
    if let Some(c) = a.client_country {
        body["client_country"] = json!(c);
    }
    let v = a.conn.post_json("/api/v1/route", &body).await?;
    show_decision(&a.conn, &v);
    Ok(())
}

/// Runs one routing subcommand.
pub async fn run(cmd: RoutingCmd, conn: Conn) -> anyhow::Result<()> {
    match cmd {
        RoutingCmd::Inspect { id } => {
            let v = conn
                .get_json(&format!("/api/v1/routing/{}", client::encode(&id)))
                .await?;
            show_decision(&conn, &v);
            Ok(())
        }
        RoutingCmd::Search {
            tenant_id,
            workload_type,
            selected_region,
            since,
            page,
        } => {
            conn.list(
                "/api/v1/routing",
                &[
                    ("tenant_id", tenant_id),
                    ("workload_type", workload_type),
                    ("selected_region", selected_region),
                    ("since", since),
                ],
                &page,
                DECISION_COLS,
            )
            .await
        }
        RoutingCmd::Replay { id } => {
            conn.post_show(
                &format!("/api/v1/routing/{}/replay", client::encode(&id)),
                &json!({}),
                REPLAY_COLS,
            )
            .await
        }
        RoutingCmd::Outcome {
            id,
            success,
            latency_ms,
        } => {
            let mut body = json!({ "success": success });
            if let Some(l) = latency_ms {
                body["latency_ms"] = json!(l);
            }
            conn.post_show(
                &format!("/api/v1/routing/{}/outcome", client::encode(&id)),
                &body,
                EJECTION_COLS,
            )
            .await
        }
    }
}

/// Which tenant policy a command shows or sets.
#[derive(Debug, Clone, Copy)]
pub enum TenantPolicy {
    /// `/tenants/{id}/region-policy`.
    Region,
    /// `/tenants/{id}/routing-policy`.
    Routing,
}

/// Shows a tenant's policy, or, with `file`, sets it from that JSON file
/// (the policy object itself, e.g. `{"type": "failover", "order": [...]}`).
pub async fn tenant_policy(
    conn: &Conn,
    which: TenantPolicy,
    tenant_id: &str,
    file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let path = format!(
        "/api/v1/tenants/{}/{}",
        client::encode(tenant_id),
        match which {
            TenantPolicy::Region => "region-policy",
            TenantPolicy::Routing => "routing-policy",
        }
    );
    let v = match file {
        None => conn.get_json(&path).await?,
        Some(file) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let body: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            conn.send_json(reqwest::Method::PUT, &path, &body).await?
        }
    };
    conn.show(&v, POLICY_COLS);
    Ok(())
}
