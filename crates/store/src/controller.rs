//! Each pool's controller memory ([`ControllerMemory`]): written by the
//! control-loop leader (fenced on its lease) when it changes, read by a new
//! leader so that cooldowns, target tracking's stabilization windows and
//! rate limits, and the forecast models carry over a change of leader.

use std::collections::HashMap;

use sqlx::Row;

use fleetscale_core::memory::ControllerMemory;

use crate::leases::check_fence;
use crate::sql::to_json;
use crate::{Fence, Result, Store, StoreError};

impl Store {
    /// Every existing pool's stored controller memory, by pool id (a
    /// deleted pool's is not returned).
    pub async fn controller_memories(&self) -> Result<HashMap<String, ControllerMemory>> {
        let rows = sqlx::query(
            "SELECT m.pool_id AS pool_id, m.memory AS memory FROM pool_controller_memory m \
             JOIN pools p ON p.id = m.pool_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("pool_id")?;
                let m = memory_column(r, &id)?;
                Ok((id, m))
            })
            .collect()
    }

    /// One pool's stored controller memory, `None` when none was stored or
    /// the pool is gone (the plan endpoint's dry run on a replica that is
    /// not the leader).
    pub async fn controller_memory(&self, pool_id: &str) -> Result<Option<ControllerMemory>> {
        let row = sqlx::query(
            "SELECT m.memory AS memory FROM pool_controller_memory m \
             JOIN pools p ON p.id = m.pool_id WHERE m.pool_id = $1",
        )
        .bind(pool_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| memory_column(&r, pool_id)).transpose()
    }

    /// Stores the controller memory of each pool in `memories` (replacing
    /// what was stored), in one transaction, fenced on `fence` when given;
    /// drops the memory of pools deleted since. Idempotent.
    pub async fn put_controller_memories(
        &self,
        memories: &[(String, ControllerMemory)],
        fence: Option<&Fence>,
        now_ms: i64,
    ) -> Result<()> {
        if memories.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        if let Some(f) = fence {
            check_fence(&mut tx, f, now_ms, "").await?;
        }
        for (pool_id, m) in memories {
            sqlx::query(
                "INSERT INTO pool_controller_memory (pool_id, memory, updated_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (pool_id) DO UPDATE SET memory = excluded.memory, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(pool_id)
            .bind(to_json(m))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "DELETE FROM pool_controller_memory WHERE pool_id NOT IN (SELECT id FROM pools)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The `memory` column of `pool_id`'s row, decoded; a row that does not
/// decode is [`StoreError::Corrupt`] naming the pool.
fn memory_column(r: &sqlx::any::AnyRow, pool_id: &str) -> Result<ControllerMemory> {
    let text: String = r.try_get("memory")?;
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("controller memory of pool {pool_id}: {e}")))
}
