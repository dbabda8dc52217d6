//! `fleetscale scale`, `rebalance`, `capacity` and `events`: changing and
//! assessing pool capacity over the REST API, and the scaling events that
//! record every change.

use clap::Args;

use super::client::{self, Conn};
use super::output::{print_json, print_table, Output};

/// Columns shown for capacity.
const CAPACITY_COLS: &[&str] = &[
    "pool_id",
    "region",
    "agent_type",
    "current",
    "min",
    "max",
    "utilization",
    "status",
];

/// Columns shown for scaling events.
const EVENT_COLS: &[&str] = &[
    "created_at",
    "pool_id",
    "previous_capacity",
    "new_capacity",
    "trigger_source",
    "reason",
];

/// Arguments of `fleetscale scale`.
#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// Pool id.
    pool_id: String,
    /// New capacity.
    #[arg(long)]
    capacity: i64,
    /// Why (recorded on the scaling event).
    #[arg(long)]
    reason: String,
    /// Tenant id (looked up from the pool when omitted).
    #[arg(long)]
    tenant_id: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

/// Arguments of `fleetscale rebalance`.
#[derive(Args, Debug)]
pub struct RebalanceArgs {
    /// Tenant id.
    #[arg(long)]
    tenant_id: String,
    /// `proportional` (to observed demand, default) or `even`.
    #[arg(long)]
    strategy: Option<String>,
    /// Show the moves without applying them.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    conn: Conn,
}

/// Arguments of `fleetscale capacity`.
#[derive(Args, Debug)]
pub struct CapacityArgs {
    /// Tenant id.
    #[arg(long)]
    tenant_id: Option<String>,
    /// Utilization % below which a pool is `under` (default 30).
    #[arg(long)]
    under_pct: Option<f64>,
    /// Utilization % above which a pool is `over` (default 80).
    #[arg(long)]
    over_pct: Option<f64>,
    #[command(flatten)]
    conn: Conn,
}

/// Arguments of `fleetscale events`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Show only this event.
    #[arg(conflicts_with_all = ["pool_id", "tenant_id", "limit", "cursor"])]
    id: Option<String>,
    /// Only this pool.
    #[arg(long)]
    pool_id: Option<String>,
    /// Only this tenant.
    #[arg(long)]
    tenant_id: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// The page after this one (`next_cursor` of the previous page).
    #[arg(long)]
    cursor: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

/// Runs `fleetscale scale`: sets a pool's desired capacity by hand.
pub async fn scale(a: ScaleArgs) -> anyhow::Result<()> {
    let ScaleArgs {
        pool_id,
        capacity,
        reason,
        tenant_id,
        conn,
    } = a;
    let tenant_id = match tenant_id {
        Some(t) => t,
        None => conn.get_json(&format!("/api/v1/pools/{pool_id}")).await?["tenant_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    let body = serde_json::json!({"tenant_id": tenant_id, "pool_id": pool_id, "capacity": capacity, "reason": reason});
    let v = conn.post_json("/api/v1/scale", &body).await?;
    match conn.output {
        Output::Json => print_json(&v),
        Output::Table => {
            let p = &v["pool"];
            println!(
                "pool {} desired capacity {} (requested {}{})",
                p["id"].as_str().unwrap_or_default(),
                p["desired_capacity"],
                capacity,
                if v["clamped"] == true {
                    ", clamped to bounds"
                } else {
                    ""
                }
            );
            if v["event"].is_null() {
                println!("no change: already at that capacity");
            }
        }
    }
    Ok(())
}

/// Runs `fleetscale rebalance`: moves an agent type's capacity across regions.
pub async fn rebalance(a: RebalanceArgs) -> anyhow::Result<()> {
    let RebalanceArgs {
        tenant_id,
        strategy,
        dry_run,
        conn,
    } = a;
    let body =
        serde_json::json!({"tenant_id": tenant_id, "strategy": strategy, "dry_run": dry_run});
    let v = conn.post_json("/api/v1/rebalance", &body).await?;
    match conn.output {
        Output::Json => print_json(&v),
        Output::Table => {
            println!(
                "rebalanced {} pool(s){}",
                v["rebalanced"],
                if dry_run { " (dry run)" } else { "" }
            );
            for a in v["actions"].as_array().into_iter().flatten() {
                println!("  {}", a.as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}

/// Runs `fleetscale capacity`: the capacity assessment of a tenant's pools.
pub async fn capacity(a: CapacityArgs) -> anyhow::Result<()> {
    let CapacityArgs {
        tenant_id,
        under_pct,
        over_pct,
        conn,
    } = a;
    let v = conn
        .get_json(&client::with_query(
            "/api/v1/capacity",
            &[
                ("tenant_id", tenant_id),
                ("under_pct", under_pct.map(|p| p.to_string())),
                ("over_pct", over_pct.map(|p| p.to_string())),
            ],
        ))
        .await?;
    match conn.output {
        Output::Json => print_json(&v),
        Output::Table => {
            print_table(
                v["pools"].as_array().map(Vec::as_slice).unwrap_or(&[]),
                CAPACITY_COLS,
            );
            println!(
                "overall health: {:.1}%",
                v["overall_health"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

/// Runs `fleetscale events`: one scaling event, or a page of them.
pub async fn events(a: EventsArgs) -> anyhow::Result<()> {
    match a {
        EventsArgs {
            id: Some(id), conn, ..
        } => {
            conn.get_show(
                &format!("/api/v1/scaling-events/{}", client::encode(&id)),
                EVENT_COLS,
            )
            .await
        }
        EventsArgs {
            id: None,
            pool_id,
            tenant_id,
            limit,
            cursor,
            conn,
        } => {
            conn.list(
                "/api/v1/scaling-events",
                &[("pool_id", pool_id), ("tenant_id", tenant_id)],
                &client::PageArgs {
                    limit: Some(limit),
                    cursor,
                },
                EVENT_COLS,
            )
            .await
        }
    }
}
