//! Leases: the control loop's leader lease and the fence of its writes.

use sqlx::Row;

use crate::{Result, Store, StoreError};

/// Fails with [`StoreError::LeaseLost`] unless `fence`'s holder still holds
/// its lease at `now_ms`, read inside `tx` (with `lock`, e.g. `FOR UPDATE`,
/// appended to the query) so the write that follows is fenced.
pub(crate) async fn check_fence(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    fence: &Fence,
    now_ms: i64,
    lock: &str,
) -> Result<()> {
    let held = sqlx::query(&format!(
        "SELECT epoch FROM leases WHERE name = $1 AND holder = $2 AND expires_at_ms > $3{lock}"
    ))
    .bind(&fence.name)
    .bind(&fence.holder)
    .bind(now_ms)
    .fetch_optional(&mut **tx)
    .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::LeaseLost {
            name: fence.name.clone(),
        }),
    }
}

impl Store {
    /// Takes or renews the lease `name` for `holder` until `now + ttl`. Returns
    /// true when `holder` holds it afterwards. Another holder's lease is taken
    /// over only once it has expired.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool> {
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at_ms, epoch) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms, \
             epoch = CASE WHEN leases.holder = excluded.holder THEN leases.epoch ELSE leases.epoch + 1 END \
             WHERE leases.holder = excluded.holder OR leases.expires_at_ms <= $4 RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now_ms + ttl_ms)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Gives the lease up if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The current holder of a lease and its expiry, if any.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query("SELECT holder, expires_at_ms FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("holder")?, r.try_get("expires_at_ms")?)))
            .transpose()
    }

    /// True when `holder` holds `name` at `now_ms` (no renewal).
    pub async fn holds_lease(&self, name: &str, holder: &str, now_ms: i64) -> Result<bool> {
        Ok(matches!(self.lease_holder(name).await?, Some((h, exp)) if h == holder && exp > now_ms))
    }
}

/// A lease-holder's fence: fenced writes fail with [`StoreError::LeaseLost`]
/// unless the lease is still held.
#[derive(Debug, Clone)]
pub struct Fence {
    /// Lease name.
    pub name: String,
    /// This replica's id.
    pub holder: String,
}
