//! Metric samples: their series, ingestion, window statistics and pruning.

use std::collections::HashMap;

use sqlx::Row;

use fleetscale_core::WindowStats;

use crate::{Backend, Result, Sample, Store, StoreError};

impl Store {
    /// Appends samples durably, in one transaction (their series are
    /// created first if new).
    pub async fn insert_samples(&self, samples: &[Sample]) -> Result<()> {
        static FULL_CHUNK_SQL: [std::sync::OnceLock<String>; 2] =
            [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
        let ids = self.series_ids(samples).await?;
        let b = self.backend;
        let mut tx = self.begin().await?;
        for (chunk, idc) in samples.chunks(SAMPLE_CHUNK).zip(ids.chunks(SAMPLE_CHUNK)) {
            let partial;
            let sql = if chunk.len() == SAMPLE_CHUNK {
                FULL_CHUNK_SQL[b as usize].get_or_init(|| points_insert_sql(b, SAMPLE_CHUNK))
            } else {
                partial = points_insert_sql(b, chunk.len());
                &partial
            };
            let mut q = sqlx::query(sql);
            for (s, id) in chunk.iter().zip(idc) {
                q = q.bind(*id).bind(s.ts_ms).bind(s.value);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.view_changed();
        Ok(())
    }

    /// The series id of every sample, creating missing series. A new series
    /// gets a stable id derived from its pool and metric (so replicas agree);
    /// a collision with another series moves to the next candidate.
    async fn series_ids(&self, samples: &[Sample]) -> Result<Vec<i64>> {
        let poisoned = || StoreError::Corrupt("series cache poisoned".into());
        // The ids found in the cache are kept here: the bounded cache may be
        // cleared (by this call's inserts or another's) before they are used.
        let (mut ids, missing): (Vec<Option<i64>>, Vec<(String, String)>) = {
            let known = self.series.lock().map_err(|_| poisoned())?;
            let ids: Vec<Option<i64>> = samples
                .iter()
                .map(|s| known.get(&s.pool_id, &s.metric))
                .collect();
            let mut m: Vec<(String, String)> = samples
                .iter()
                .zip(&ids)
                .filter(|(_, id)| id.is_none())
                .map(|(s, _)| (s.pool_id.clone(), s.metric.clone()))
                .collect();
            m.sort();
            m.dedup();
            (ids, m)
        };
        let mut created: HashMap<&str, HashMap<&str, i64>> = HashMap::new();
        for (pool_id, metric) in &missing {
            let id = self.ensure_series(pool_id, metric).await?;
            self.series
                .lock()
                .map_err(|_| poisoned())?
                .insert(pool_id.clone(), metric.clone(), id);
            created
                .entry(pool_id.as_str())
                .or_default()
                .insert(metric.as_str(), id);
        }
        for (s, id) in samples.iter().zip(ids.iter_mut()) {
            if id.is_none() {
                *id = created
                    .get(s.pool_id.as_str())
                    .and_then(|m| m.get(s.metric.as_str()))
                    .copied();
            }
        }
        ids.into_iter()
            .map(|id| {
                id.ok_or_else(|| StoreError::Corrupt("series vanished from the cache".into()))
            })
            .collect()
    }

    async fn ensure_series(&self, pool_id: &str, metric: &str) -> Result<i64> {
        let find = || async {
            sqlx::query("SELECT id FROM metric_series WHERE pool_id = $1 AND metric = $2")
                .bind(pool_id)
                .bind(metric)
                .fetch_optional(&self.pool)
                .await
                .map(|r| r.map(|r| r.try_get::<i64, _>("id")))
        };
        if let Some(id) = find().await? {
            return Ok(id?);
        }
        let base = series_hash(pool_id, metric);
        for attempt in 0..8 {
            sqlx::query("INSERT INTO metric_series (id, pool_id, metric) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(base + attempt)
                .bind(pool_id)
                .bind(metric)
                .execute(&self.pool)
                .await?;
            if let Some(id) = find().await? {
                return Ok(id?);
            }
        }
        Err(StoreError::Corrupt(format!(
            "no free series id for {pool_id}/{metric}"
        )))
    }

    /// Mean, count and newest timestamp of each pool's own metric over its own
    /// window `(now - window_seconds, now]`; pools without samples are absent.
    pub async fn window_stats(
        &self,
        tenant_id: Option<&str>,
        now_ms: i64,
    ) -> Result<HashMap<String, WindowStats>> {
        let windows: Vec<i64> = sqlx::query(
            "SELECT DISTINCT window_seconds FROM pools WHERE ($1 = '' OR tenant_id = $1)",
        )
        .bind(tenant_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>("window_seconds"))
        .collect::<Result<_, _>>()?;
        let mut out = HashMap::new();
        for w in windows {
            let rows = sqlx::query(
                "SELECT ms.pool_id, AVG(s.value), COUNT(*), MAX(s.ts_ms) FROM pools p JOIN metric_series ms ON ms.pool_id = p.id AND ms.metric = p.metric JOIN metric_points s ON s.series_id = ms.id \
                 WHERE p.window_seconds = $1 AND ($2 = '' OR p.tenant_id = $2) AND s.ts_ms > $3 AND s.ts_ms <= $4 GROUP BY ms.pool_id",
            )
            .bind(w)
            .bind(tenant_id.unwrap_or(""))
            .bind(now_ms - w * 1000)
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                let count: i64 = r.try_get(2)?;
                out.insert(
                    r.try_get(0)?,
                    WindowStats {
                        mean: r.try_get(1)?,
                        count: count.max(0) as u64,
                        newest_ts_ms: r.try_get(3)?,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Deletes samples older than `before_ms`; returns how many. Works
    /// series by series (500 at a time) through the `(series_id, ts_ms)` index.
    pub async fn prune_samples(&self, before_ms: i64) -> Result<u64> {
        let ids: Vec<i64> = sqlx::query("SELECT id FROM metric_series ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>("id"))
            .collect::<Result<_, _>>()?;
        let mut deleted = 0;
        for chunk in ids.chunks(500) {
            let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
            let sql = format!(
                "DELETE FROM metric_points WHERE series_id IN ({}) AND ts_ms < $1",
                list.join(",")
            );
            deleted += sqlx::query(&sql)
                .bind(before_ms)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(deleted)
    }

    /// Raw samples of one pool's metric in `[from_ms, to_ms]`, oldest first, at most `limit`.
    pub async fn samples(
        &self,
        pool_id: &str,
        metric: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<Sample>> {
        let rows = sqlx::query("SELECT ms.pool_id, ms.metric, p.ts_ms, p.value FROM metric_points p JOIN metric_series ms ON ms.id = p.series_id WHERE ms.pool_id=$1 AND ms.metric=$2 AND p.ts_ms >= $3 AND p.ts_ms <= $4 ORDER BY p.ts_ms LIMIT $5")
            .bind(pool_id)
            .bind(metric)
            .bind(from_ms)
            .bind(to_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Sample {
                    pool_id: r.try_get("pool_id")?,
                    metric: r.try_get("metric")?,
                    ts_ms: r.try_get("ts_ms")?,
                    value: r.try_get("value")?,
                })
            })
            .collect()
    }
}

/// Rows per multi-row sample INSERT statement.
const SAMPLE_CHUNK: usize = 250;

/// `INSERT` of `rows` metric points: `?` parameters on SQLite (bound by
/// position, where `$N` names cost a lookup each), `$N` on PostgreSQL.
fn points_insert_sql(backend: Backend, rows: usize) -> String {
    let mut sql = String::with_capacity(60 + rows * 16);
    sql.push_str("INSERT INTO metric_points (series_id, ts_ms, value) VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        match backend {
            Backend::Sqlite => sql.push_str("(?,?,?)"),
            Backend::Postgres => {
                let b = i * 3;
                sql.push_str(&format!("(${},${},${})", b + 1, b + 2, b + 3));
            }
        }
    }
    sql
}

/// A stable series id in `[2^32, 2^62)` from FNV-1a of `pool_id \0 metric`
/// (ids below 2^32 are those numbered by migration 0004).
fn series_hash(pool_id: &str, metric: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pool_id
        .bytes()
        .chain(std::iter::once(0))
        .chain(metric.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((h % ((1u64 << 62) - (1u64 << 32) - 16)) + (1u64 << 32)) as i64
}
