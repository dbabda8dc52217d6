//! Per-instance metric samples (a sample with an `instance` label): what
//! target tracking's per-instance targets (`Utilization`,
//! `ResourceAverageValue`, `AverageValue`) read, kept apart from the pool's
//! own series.

use std::collections::HashMap;

use sqlx::Row;

use crate::{Result, Store};

/// One sample of one instance of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSample {
    /// Pool id.
    pub pool_id: String,
    /// The instance's name, as its reporter labels it.
    pub instance: String,
    /// Metric name.
    pub metric: String,
    /// Timestamp, Unix ms.
    pub ts_ms: i64,
    /// Value.
    pub value: f64,
}

impl Store {
    /// Appends per-instance samples durably, in one transaction.
    pub async fn insert_instance_samples(&self, samples: &[InstanceSample]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for s in samples {
            sqlx::query(
                "INSERT INTO instance_points (pool_id, instance, metric, ts_ms, value) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&s.pool_id)
            .bind(&s.instance)
            .bind(&s.metric)
            .bind(s.ts_ms)
            .bind(s.value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The per-instance samples in `(from_ms, to_ms]` of every pool that
    /// has combined policies, by pool id, oldest first, at most
    /// `limit_per_pool` (the newest) per pool.
    pub async fn policy_instance_samples(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit_per_pool: i64,
    ) -> Result<HashMap<String, Vec<InstanceSample>>> {
        let rows = sqlx::query(
            "SELECT pool_id, instance, metric, ts_ms, value FROM (\
               SELECT i.pool_id AS pool_id, i.instance AS instance, i.metric AS metric, \
                 i.ts_ms AS ts_ms, i.value AS value, \
                 ROW_NUMBER() OVER (PARTITION BY i.pool_id ORDER BY i.ts_ms DESC, i.instance DESC) AS rn \
               FROM instance_points i \
               WHERE i.pool_id IN (SELECT id FROM pools WHERE policies IS NOT NULL) \
                 AND i.ts_ms > $1 AND i.ts_ms <= $2\
             ) newest WHERE rn <= $3 ORDER BY pool_id, rn DESC",
        )
        .bind(from_ms)
        .bind(to_ms)
        .bind(limit_per_pool)
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<String, Vec<InstanceSample>> = HashMap::new();
        for r in &rows {
            let s = InstanceSample {
                pool_id: r.try_get("pool_id")?,
                instance: r.try_get("instance")?,
                metric: r.try_get("metric")?,
                ts_ms: r.try_get("ts_ms")?,
                value: r.try_get("value")?,
            };
            out.entry(s.pool_id.clone()).or_default().push(s);
        }
        Ok(out)
    }

    /// The newest `metric` reading in `(from_ms, to_ms]` of each instance
    /// of `pool_id` that reported any sample in that window, by instance
    /// name (`None` when the instance reported other metrics only): what a
    /// scale-in ranks its instances by (the in-flight work per instance).
    pub async fn instance_loads(
        &self,
        pool_id: &str,
        metric: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(String, Option<f64>)>> {
        let rows = sqlx::query(
            "SELECT instance, metric, ts_ms, value FROM instance_points \
             WHERE pool_id = $1 AND ts_ms > $2 AND ts_ms <= $3 ORDER BY instance, ts_ms",
        )
        .bind(pool_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut out: std::collections::BTreeMap<String, Option<f64>> = Default::default();
        for r in &rows {
            let instance: String = r.try_get("instance")?;
            let m: String = r.try_get("metric")?;
            let value: f64 = r.try_get("value")?;
            let e = out.entry(instance).or_insert(None);
            if m == metric {
                *e = Some(value);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Deletes per-instance samples older than `before_ms`; returns how many.
    pub async fn prune_instance_samples(&self, before_ms: i64) -> Result<u64> {
        let res = sqlx::query("DELETE FROM instance_points WHERE ts_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected())
    }
}
