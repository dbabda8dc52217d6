//! `fleetscale proposals ...`: list, show, approve and reject the proposals
//! of pools in `recommend` mode over the REST API.

use clap::Subcommand;

use super::client::{self, Conn};

/// Columns shown for proposals.
const PROPOSAL_COLS: &[&str] = &[
    "id",
    "pool_id",
    "current_capacity",
    "target_capacity",
    "status",
    "reason",
];

/// Proposal subcommands.
#[derive(Subcommand, Debug)]
pub enum ProposalsCmd {
    /// List proposals.
    List {
        /// Tenant id.
        #[arg(long)]
        tenant_id: Option<String>,
        /// pending, approved, rejected, superseded.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        page: client::PageArgs,
    },
    /// Show one proposal.
    Get {
        /// Proposal id.
        id: String,
    },
    /// Approve (apply) a proposal.
    Approve {
        /// Proposal id.
        id: String,
        /// Note.
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a proposal.
    Reject {
        /// Proposal id.
        id: String,
        /// Note.
        #[arg(long)]
        note: Option<String>,
    },
}

/// Runs one proposals subcommand.
pub async fn run(cmd: ProposalsCmd, conn: Conn) -> anyhow::Result<()> {
    match cmd {
        ProposalsCmd::Get { id } => {
            conn.get_show(
                &format!("/api/v1/proposals/{}", client::encode(&id)),
                PROPOSAL_COLS,
            )
            .await
        }
        ProposalsCmd::List {
            tenant_id,
            status,
            page,
        } => {
            conn.list(
                "/api/v1/proposals",
                &[("tenant_id", tenant_id), ("status", status)],
                &page,
                PROPOSAL_COLS,
            )
            .await
        }
        ProposalsCmd::Approve { id, note } => {
            let v = conn
                .post_json(
                    &format!("/api/v1/proposals/{id}/approve"),
                    &serde_json::json!({"note": note}),
                )
                .await?;
            conn.show(&v["proposal"], PROPOSAL_COLS);
            Ok(())
        }
        ProposalsCmd::Reject { id, note } => {
            let v = conn
                .post_json(
                    &format!("/api/v1/proposals/{id}/reject"),
                    &serde_json::json!({"note": note}),
                )
                .await?;
            conn.show(&v["proposal"], PROPOSAL_COLS);
            Ok(())
        }
    }
}
