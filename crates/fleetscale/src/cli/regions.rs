//! `fleetscale regions ...`: create, list and show regions and their live
//! state over the REST API.

use clap::Subcommand;

use super::client::{self, Conn};
use super::output::{print_json, print_table, Output};

/// Columns shown for regions.
const REGION_COLS: &[&str] = &["id", "name", "jurisdiction"];

/// Region subcommands.
#[derive(Subcommand, Debug)]
pub enum RegionsCmd {
    /// Create a region with its first monthly AI budget.
    Create {
        /// Name, e.g. eu-west.
        name: String,
        /// Jurisdiction, e.g. eu.
        #[arg(long)]
        jurisdiction: String,
        /// Its first monthly budget in cents (default: the server's,
        /// 100000 unless set; 0 for none).
        #[arg(long)]
        monthly_budget_cents: Option<i64>,
    },
    /// List regions.
    List(client::PageArgs),
    /// Show one region.
    Get {
        /// Region id or name.
        id: String,
    },
    /// Show a region's live state: pressures, capacity score, warning
    /// index, fatigue and scaling mode.
    State {
        /// Region id or name.
        id: String,
    },
    /// A region's newest snapshot and history; with --take, a snapshot of
    /// the current period so far first.
    Snapshot {
        /// Region id or name.
        id: String,
        /// hourly (default), daily or weekly.
        #[arg(long, default_value = "hourly")]
        period_type: String,
        /// Take a snapshot of the current period now (operator).
        #[arg(long)]
        take: bool,
        /// Show this many periods of history.
        #[arg(long)]
        history: Option<i64>,
    },
    /// Every region's state, budget and risk; with --include-risk the
    /// global risk, its conflicts and the recommended actions.
    Health {
        /// name (default), capacity or pressure.
        #[arg(long)]
        sort_by: Option<String>,
        /// asc (default) or desc.
        #[arg(long)]
        order: Option<String>,
        /// Add the global risk, conflicts and recommendations.
        #[arg(long)]
        include_risk: bool,
    },
}

/// Columns shown for a snapshot.
const SNAPSHOT_COLS: &[&str] = &[
    "period_type",
    "period_start",
    "period_end",
    "avg_capacity",
    "peak_pressure",
    "budget_used_cents",
    "scaling_mode",
    "taken_at",
];

/// Columns shown for the health list.
const HEALTH_COLS: &[&str] = &[
    "region",
    "jurisdiction",
    "scaling_mode",
    "pressure",
    "capacity_score",
    "warning_index",
    "fatigue_score",
    "budget_remaining_cents",
    "risk",
    "risk_level",
];

/// Columns shown for a region's state (pressures flattened).
const STATE_COLS: &[&str] = &[
    "region",
    "scaling_mode",
    "mode_since",
    "pressure",
    "posting",
    "orchestration",
    "creative",
    "intel",
    "capacity_score",
    "warning_index",
    "fatigue_score",
    "active_tenants",
    "jobs_in_queue",
    "updated_at",
];

/// Runs one regions subcommand.
pub async fn run(cmd: RegionsCmd, conn: Conn) -> anyhow::Result<()> {
    match cmd {
        RegionsCmd::Create {
            name,
            jurisdiction,
            monthly_budget_cents,
        } => {
            let mut body = serde_json::json!({"name": name, "jurisdiction": jurisdiction});
            if let Some(c) = monthly_budget_cents {
                body["monthly_budget_cents"] = c.into();
            }
            conn.post_show(
                "/api/v1/regions",
                &body,
                &["id", "name", "jurisdiction", "monthly_budget_cents"],
            )
            .await
        }
        RegionsCmd::List(page) => conn.list("/api/v1/regions", &[], &page, REGION_COLS).await,
        RegionsCmd::Get { id } => {
            conn.get_show(
                &format!("/api/v1/regions/{}", client::encode(&id)),
                REGION_COLS,
            )
            .await
        }
        RegionsCmd::Health {
            sort_by,
            order,
            include_risk,
        } => {
            let path = client::with_query(
                "/api/v1/regions/health",
                &[
                    ("sort_by", sort_by),
                    ("order", order),
                    ("include_risk", include_risk.then(|| "true".to_string())),
                ],
            );
            let v = conn.get_json(&path).await?;
            match conn.output {
                Output::Json => print_json(&v),
                Output::Table => {
                    let rows: Vec<_> = v["regions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| {
                            let mut row = r.clone();
                            row["pressure"] = r["pressure"]["overall"].clone();
                            row
                        })
                        .collect();
                    print_table(&rows, HEALTH_COLS);
                    let risk = &v["global_risk"];
                    if !risk.is_null() {
                        println!(
                            "global risk {:.1} ({})",
                            risk["score"].as_f64().unwrap_or(0.0),
                            risk["level"].as_str().unwrap_or("-")
                        );
                        let conflicts = risk["conflicts"].as_array().cloned().unwrap_or_default();
                        print_table(&conflicts, &["severity", "type", "region", "message"]);
                        for r in risk["recommendations"].as_array().into_iter().flatten() {
                            println!("- {}", r["message"].as_str().unwrap_or(""));
                        }
                    }
                }
            }
            Ok(())
        }
        RegionsCmd::Snapshot {
            id,
            period_type,
            take,
            history,
        } => {
            let base = format!("/api/v1/regions/{}/snapshot", client::encode(&id));
            if take {
                let body = serde_json::json!({"period_type": period_type});
                let v = conn.post_json(&base, &body).await?;
                if conn.output == Output::Table {
                    print_table(&[v], SNAPSHOT_COLS);
                    return Ok(());
                }
            }
            let path = client::with_query(
                &base,
                &[
                    ("period_type", Some(period_type)),
                    ("include_history", history.map(|_| "true".to_string())),
                    ("periods", history.map(|n| n.to_string())),
                ],
            );
            let v = conn.get_json(&path).await?;
            match conn.output {
                Output::Json => print_json(&v),
                Output::Table => {
                    let snap: Vec<_> = [v["snapshot"].clone()]
                        .into_iter()
                        .filter(|s| !s.is_null())
                        .collect();
                    print_table(&snap, SNAPSHOT_COLS);
                    if history.is_some() {
                        let rows = v["history"].as_array().cloned().unwrap_or_default();
                        print_table(
                            &rows,
                            &[
                                "period_start",
                                "avg_capacity",
                                "peak_pressure",
                                "budget_used_cents",
                            ],
                        );
                    }
                }
            }
            Ok(())
        }
        RegionsCmd::State { id } => {
            let path = format!("/api/v1/regions/{}/state", client::encode(&id));
            let v = conn.get_json(&path).await?;
            match conn.output {
                Output::Json => print_json(&v),
                Output::Table => {
                    let mut row = v.clone();
                    let p = &v["pressure"];
                    row["pressure"] = p["overall"].clone();
                    for kind in ["posting", "orchestration", "creative", "intel"] {
                        row[kind] = p[kind].clone();
                    }
                    print_table(&[row], STATE_COLS);
                }
            }
            Ok(())
        }
    }
}
