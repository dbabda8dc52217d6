//! `fleetscale engine`: the control loop's status over the REST API (which
//! replica leads, tick, actuator).

use super::client::Conn;

/// Runs `fleetscale engine`.
pub async fn run(conn: Conn) -> anyhow::Result<()> {
    conn.get_show(
        "/api/v1/engine",
        &[
            "replica_id",
            "leader",
            "lease_holder",
            "lease_expires_at",
            "tick_ms",
            "actuator",
        ],
    )
    .await
}
