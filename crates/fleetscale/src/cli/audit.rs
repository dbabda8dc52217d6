//! `fleetscale audit`: the audit log over the REST API, newest first.

use clap::Args;

use super::client::{self, Conn};

/// Columns shown for audit entries.
const AUDIT_COLS: &[&str] = &[
    "created_at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "tenant_id",
];

/// Arguments of `fleetscale audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only this tenant's entries.
    #[arg(long)]
    tenant_id: Option<String>,
    #[command(flatten)]
    page: client::PageArgs,
    #[command(flatten)]
    conn: Conn,
}

/// Runs `fleetscale audit`.
pub async fn run(a: AuditArgs) -> anyhow::Result<()> {
    let AuditArgs {
        tenant_id,
        page,
        conn,
    } = a;
    conn.list(
        "/api/v1/audit",
        &[("tenant_id", tenant_id)],
        &page,
        AUDIT_COLS,
    )
    .await
}
