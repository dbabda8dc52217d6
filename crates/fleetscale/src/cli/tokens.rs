//! `fleetscale tokens ...`: create, list and revoke API tokens over the REST API.

use clap::Subcommand;

use super::client::{self, Conn};

/// Token subcommands.
#[derive(Subcommand, Debug)]
pub enum TokensCmd {
    /// Create a token (printed once).
    Create {
        /// Tenant id (omit for a global admin token).
        #[arg(long)]
        tenant_id: Option<String>,
        /// admin, operator or viewer.
        #[arg(long)]
        role: String,
        /// Name (the audit actor).
        #[arg(long)]
        name: String,
    },
    /// List stored tokens (id, tenant, role, name, issued; never the token).
    List {
        /// Only this tenant's tokens.
        #[arg(long)]
        tenant_id: Option<String>,
        #[command(flatten)]
        page: client::PageArgs,
    },
    /// Revoke a token: it stops working at once on the server that revokes
    /// it and within 5 s on the others.
    Revoke {
        /// Token id (from `tokens list` or `tokens create`).
        id: String,
    },
}

/// Runs one tokens subcommand.
pub async fn run(cmd: TokensCmd, conn: Conn) -> anyhow::Result<()> {
    match cmd {
        TokensCmd::Create {
            tenant_id,
            role,
            name,
        } => {
            let body = serde_json::json!({"tenant_id": tenant_id, "role": role, "name": name});
            conn.post_show(
                "/api/v1/tokens",
                &body,
                &["id", "token", "tenant_id", "role", "name"],
            )
            .await
        }
        TokensCmd::List { tenant_id, page } => {
            conn.list(
                "/api/v1/tokens",
                &[("tenant_id", tenant_id)],
                &page,
                &["id", "tenant_id", "role", "name", "created_at"],
            )
            .await
        }
        TokensCmd::Revoke { id } => {
            let path = format!("/api/v1/tokens/{}", client::encode(&id));
            conn.delete_show(&path, "revoked", &id).await
        }
    }
}
