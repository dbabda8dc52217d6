//! `fleetscale tenants ...`: create, list and show tenants, and show or set
//! their region and routing policies, over the REST API.

use std::path::PathBuf;

use clap::Subcommand;

use super::client::{self, Conn};
use super::routing::{tenant_policy, TenantPolicy};

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
    /// Show a tenant's region policy, or set it from a JSON file.
    RegionPolicy {
        /// Tenant id.
        id: String,
        /// JSON file with the policy (`{"allowed_jurisdictions": [..], ...}`); without it, show.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Show a tenant's routing policy, or set it from a JSON file.
    RoutingPolicy {
        /// Tenant id.
        id: String,
        /// JSON file with the policy (`{"type": "score", ...}`); without it, show.
        #[arg(long)]
        file: Option<PathBuf>,
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
        TenantsCmd::RegionPolicy { id, file } => {
            tenant_policy(&conn, TenantPolicy::Region, &id, file).await
        }
        TenantsCmd::RoutingPolicy { id, file } => {
            tenant_policy(&conn, TenantPolicy::Routing, &id, file).await
        }
    }
}
