//! The region monitor: every [`MONITOR_INTERVAL`] the control-loop leader
//! computes the global risk (`fleetscale_core::region::risk`); each
//! critical conflict, and a critical global risk without one, records an
//! alert (once per condition per [`REALERT_AFTER`]) and, with a webhook
//! configured, posts it signed like scaling changes.

use std::time::Duration;

use tokio::sync::watch;

use fleetscale_core::region::risk::{global_risk, Level};
use fleetscale_store::StoreError;

use crate::control::{EngineConfig, LEASE};
use crate::EngineCtx;

/// How often the leader checks the regions.
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(300);

/// A condition still present is alerted again after this long, ms.
pub const REALERT_AFTER: i64 = 3_600_000;

/// One monitor round at `now`: returns how many alerts it raised.
pub async fn monitor_once(ctx: &EngineCtx, now: i64) -> Result<u64, StoreError> {
    let rows = crate::regions::health(ctx, now).await?;
    let risks: Vec<_> = rows.iter().map(|r| r.risk.clone()).collect();
    let g = global_risk(&risks);
    let mut raised = Vec::new();
    for c in g.conflicts.iter().filter(|c| c.severity == Level::Critical) {
        let kind = serde_json::to_value(c.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        raised.push((kind, Some(c.region.clone()), c.message.clone()));
    }
    if raised.is_empty() && g.level == Level::Critical {
        raised.push((
            "global_risk".into(),
            None,
            format!("global risk {:.1} is critical", g.score),
        ));
    }
    let mut n = 0;
    for (kind, region, message) in raised {
        if ctx
            .store
            .alerted_since(&kind, region.as_deref(), now - REALERT_AFTER)
            .await?
        {
            continue;
        }
        let detail = serde_json::json!({
            "global_risk": g.score,
            "regions": g.regions,
            "recommendations": g.recommendations,
        });
        let alert = ctx
            .store
            .insert_alert("critical", &kind, region.as_deref(), &message, &detail, now)
            .await?;
        tracing::warn!(alert = %alert.id, kind = %kind, region = ?region, "{message}");
        n += 1;
        let body = serde_json::json!({
            "alert_id": alert.id,
            "level": alert.level,
            "kind": alert.kind,
            "region": alert.region,
            "message": alert.message,
            "detail": alert.detail,
            "created_at": fleetscale_store::rfc3339(now),
        });
        if let Some(d) = ctx.actuator.notify(&alert.id, &body).await {
            ctx.store
                .record_alert_delivery(&alert.id, d.delivered, d.error.as_deref())
                .await?;
        }
    }
    Ok(n)
}

/// Runs [`monitor_once`] every [`MONITOR_INTERVAL`] while this replica
/// holds the control-loop lease, until `shutdown` turns true.
pub async fn run(
    ctx: EngineCtx,
    cfg: EngineConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(MONITOR_INTERVAL) => {}
            _ = shutdown.changed() => return Ok(()),
        }
        let now = ctx.now_ms();
        match ctx.store.holds_lease(LEASE, &cfg.replica_id, now).await {
            Ok(true) => match monitor_once(&ctx, now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(alerts = n, "region monitor raised alerts"),
                Err(e) => tracing::warn!(error = %e, "region monitor failed; retrying next round"),
            },
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "region monitor cannot read the lease"),
        }
    }
}
