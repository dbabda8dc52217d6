//! `fleetscale regions ...`: create, list and show regions over the REST API.

use clap::Subcommand;

use super::client::{self, Conn};

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
        /// Its first monthly budget in cents (default: the server's, phase
        /// 92's 100000; 0 for none).
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
}

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
    }
}
