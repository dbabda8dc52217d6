//! `fleetscale scale`, `rebalance`, `capacity` and `events`: changing and
//! assessing pool capacity over the REST API, and the scaling events that
//! record every change.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::{json, Value};

use super::client::{self, Conn};
use super::output::{print_json, print_table, Output};

/// Columns shown for capacity (the rows [`capacity_row`] makes).
const CAPACITY_COLS: &[&str] = &[
    "pool_id",
    "region",
    "agent_type",
    "instances",
    "load",
    "utilization",
    "status",
];

/// Columns shown for scaling events.
const EVENT_COLS: &[&str] = &[
    "id",
    "created_at",
    "region",
    "agent_type",
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
    /// Only the pools of this agent type (default: every agent type, each
    /// rebalanced across its regions on its own).
    #[arg(long)]
    agent_type: Option<String>,
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
        agent_type,
        strategy,
        dry_run,
        conn,
    } = a;
    let mut body = json!({"tenant_id": tenant_id, "strategy": strategy, "dry_run": dry_run});
    if let Some(t) = &agent_type {
        body["agent_type"] = json!(t);
    }
    let v = conn.post_json("/api/v1/rebalance", &body).await?;
    match conn.output {
        Output::Json => print_json(&v),
        Output::Table => {
            let moves = v["moves"].as_array().map_or(0, Vec::len);
            if dry_run {
                println!("dry run: {moves} move(s) planned, nothing changed");
            } else {
                println!("rebalanced {} pool(s)", v["rebalanced"]);
            }
            if moves == 0 {
                // Why nothing moves, from the same pools and demand the
                // planner saw (the capacity assessment).
                let cap = conn
                    .get_json(&client::with_query(
                        "/api/v1/capacity",
                        &[("tenant_id", Some(tenant_id))],
                    ))
                    .await?;
                let pools = cap["pools"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                let even = v["strategy"] == "even";
                for line in why_nothing_moves(pools, agent_type.as_deref(), even) {
                    println!("  {line}");
                }
            } else {
                for a in v["actions"].as_array().into_iter().flatten() {
                    println!("  {}", a.as_str().unwrap_or_default());
                }
            }
        }
    }
    Ok(())
}

/// Why a rebalancing of `pools` (capacity-assessment rows: `agent_type`,
/// `region`, `current`, `mean_load`) planned no move, one line per agent
/// type (only `agent_type` when given): proportional rebalancing moves
/// capacity between at least two pools of a type whose demand was measured
/// recently; even rebalancing moves pools more than one instance from
/// their type's mean.
pub fn why_nothing_moves(pools: &[Value], agent_type: Option<&str>, even: bool) -> Vec<String> {
    let mut groups: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for p in pools {
        let t = p["agent_type"].as_str().unwrap_or_default();
        if agent_type.is_none_or(|a| a == t) {
            groups.entry(t).or_default().push(p);
        }
    }
    if groups.is_empty() {
        return vec![match agent_type {
            Some(t) => format!("no pools of agent type {t}: nothing to rebalance"),
            None => "the tenant has no pools: nothing to rebalance".into(),
        }];
    }
    groups
        .into_iter()
        .map(|(t, g)| {
            if g.len() < 2 {
                let region = g[0]["region"].as_str().unwrap_or_default();
                return format!(
                    "{t}: one pool only (in {region}): there is no other region to move capacity to"
                );
            }
            if even {
                let total: i64 = g.iter().map(|p| p["current"].as_i64().unwrap_or(0)).sum();
                return format!(
                    "{t}: every pool is within 1 instance of the mean ({:.1} instances over {} regions), or at its bounds",
                    total as f64 / g.len() as f64,
                    g.len()
                );
            }
            let measured = g.iter().filter(|p| p["mean_load"].is_number()).count();
            if measured < 2 {
                let unmeasured: Vec<&str> = g
                    .iter()
                    .filter(|p| !p["mean_load"].is_number())
                    .map(|p| p["region"].as_str().unwrap_or_default())
                    .collect();
                format!(
                    "{t}: demand is measured in {measured} of {} regions (no recent metric samples in {}); proportional rebalancing needs it in at least 2 (push metrics, or use --strategy even)",
                    g.len(),
                    unmeasured.join(", ")
                )
            } else {
                format!(
                    "{t}: capacity is already in proportion to the measured demand of its {measured} regions (within each pool's bounds)"
                )
            }
        })
        .collect()
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
            let (under, over) = (
                v["thresholds"]["under_pct"].as_f64().unwrap_or(30.0),
                v["thresholds"]["over_pct"].as_f64().unwrap_or(80.0),
            );
            let rows: Vec<Value> = v["pools"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| capacity_row(p, under, over))
                .collect();
            print_table(&rows, CAPACITY_COLS);
            println!(
                "overall health: {:.1}% of the pools with recent metrics are within {under}–{over}% utilization",
                v["overall_health"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

/// One pool's capacity assessment as a table row in words and units:
/// instances with their bounds, utilization in %, and the status as
/// `overloaded` / `underused` / `ok` with the threshold it crossed, and
/// the load in instances (utilization × desired capacity).
pub fn capacity_row(p: &Value, under_pct: f64, over_pct: f64) -> Value {
    let util = p["utilization"].as_f64();
    let status = match (p["status"].as_str().unwrap_or_default(), util) {
        ("over", Some(u)) => format!("overloaded ({u:.1}% > {over_pct}%)"),
        ("over", None) => "overloaded (load beyond measure)".into(),
        ("under", Some(u)) => format!("underused ({u:.1}% < {under_pct}%)"),
        ("under", None) => "underused".into(),
        ("optimal", _) => format!("ok ({under_pct}–{over_pct}%)"),
        ("unknown", _) => "unknown (no recent metrics)".into(),
        (other, _) => other.to_string(),
    };
    json!({
        "pool_id": p["pool_id"],
        "region": p["region"],
        "agent_type": p["agent_type"],
        "instances": format!("{} (min {}, max {})", p["current"], p["min"], p["max"]),
        "utilization": util.map_or_else(|| "-".to_string(), |u| format!("{u:.1}%")),
        "load": match (util, p["current"].as_f64()) {
            (Some(u), Some(c)) => format!("{:.1} instances", u / 100.0 * c),
            _ => "-".to_string(),
        },
        "status": status,
    })
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
