//! Budget maintenance: releases expired reservations and applies the daily
//! and monthly resets that are due, every [`MAINTENANCE_INTERVAL`]. Every
//! replica may run it: each step re-checks under the budget row lock, so it
//! is idempotent.

use std::time::Duration;

use tokio::sync::watch;

use fleetscale_store::{BudgetOp, LedgerError};

use crate::EngineCtx;

/// Interval of the budget maintenance job.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(5);

/// Most expired reservations released per round (a stated bound).
pub const MAX_EXPIRIES_PER_ROUND: i64 = 500;

/// One maintenance round at `now_ms`: releases expired reservations and
/// applies the daily/monthly resets that are due. Returns how many
/// reservations expired and how many resets were applied.
pub async fn maintain_once(ctx: &EngineCtx, now_ms: i64) -> Result<(u64, u64), LedgerError> {
    let mut expired = 0;
    for (region, id) in ctx
        .budgets
        .expired_reservations(now_ms, MAX_EXPIRIES_PER_ROUND)
        .await?
    {
        let op = BudgetOp::Release {
            reservation_id: id,
            expired: true,
        };
        match ctx.budgets.apply(&region, op, "engine", now_ms).await {
            Ok(Some(_)) => expired += 1,
            Ok(None) | Err(LedgerError::ReservationSettled { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let mut resets = 0;
    for region in ctx.budgets.budget_regions().await? {
        let op = BudgetOp::Reset { period: None };
        if ctx
            .budgets
            .apply(&region, op, "engine", now_ms)
            .await?
            .is_some()
        {
            resets += 1;
        }
    }
    Ok((expired, resets))
}

/// Runs [`maintain_once`] every [`MAINTENANCE_INTERVAL`] until `shutdown`
/// turns true. A failed round is logged and retried at the next interval.
pub async fn maintain(ctx: EngineCtx, mut shutdown: watch::Receiver<bool>) -> Result<(), String> {
    loop {
        match maintain_once(&ctx, ctx.now_ms()).await {
            Ok((0, 0)) => {}
            Ok((expired, resets)) => {
                tracing::info!(expired, resets, "budget maintenance")
            }
            Err(e) => tracing::warn!(error = %e, "budget maintenance failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(MAINTENANCE_INTERVAL) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}
