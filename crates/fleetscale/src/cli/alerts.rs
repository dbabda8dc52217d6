//! `fleetscale alerts`: what the region monitor raised, newest first.

use clap::Args;

use super::client::{self, Conn};

/// Columns shown for alerts.
const ALERT_COLS: &[&str] = &[
    "created_at",
    "level",
    "kind",
    "region",
    "message",
    "delivery",
];

/// Arguments of `fleetscale alerts`.
#[derive(Args, Debug)]
pub struct AlertsArgs {
    #[command(flatten)]
    page: client::PageArgs,
    #[command(flatten)]
    conn: Conn,
}

/// Runs `fleetscale alerts`.
pub async fn run(a: AlertsArgs) -> anyhow::Result<()> {
    a.conn
        .list("/api/v1/alerts", &[], &a.page, ALERT_COLS)
        .await
}
