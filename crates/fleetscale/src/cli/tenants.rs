//! `fleetscale tenants ...`: create, list and show tenants over the REST API.

use clap::Subcommand;

use super::client::{self, Conn};

/// Columns shown for tenants.
const TENANT_COLS: &[&str] = &["id", "name", "created_at"];

/// Tenant subcommands.
#[derive(Subcommand, Debug)]
pub enum TenantsCmd {
    /// Create a tenant.
    Create {
        /// Name.
        name: String,
    },
    /// List tenants.
    List(client::PageArgs),
    /// Show one tenant.
    Get {
        /// Tenant id.
        id: String,
    },
}

/// Runs one tenants subcommand.
pub async fn run(cmd: TenantsCmd, conn: Conn) -> anyhow::Result<()> {
    match cmd {
        TenantsCmd::Create { name } => {
            conn.post_show(
                "/api/v1/tenants",
                &serde_json::json!({"name": name}),
                TENANT_COLS,
            )
            .await
        }
        TenantsCmd::List(page) => conn.list("/api/v1/tenants", &[], &page, TENANT_COLS).await,
        TenantsCmd::Get { id } => {
            conn.get_show(
                &format!("/api/v1/tenants/{}", client::encode(&id)),
                TENANT_COLS,
            )
            .await
        }
    }
}
