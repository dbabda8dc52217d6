//! What the control loop reads for every pool at once: one set-based query
//! instead of one per pool.

use std::collections::HashMap;

use sqlx::Row;

use crate::{Result, Sample, Store};

impl Store {
    /// The samples in `(from_ms, to_ms]` of every pool that has combined
    /// policies, by pool id, each pool's oldest first and at most
    /// `limit_per_pool` of them (its newest are kept): what
    /// [`Store::pool_samples`] gives for one pool, for all of them in one
    /// query.
    pub async fn policy_pool_samples(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit_per_pool: i64,
    ) -> Result<HashMap<String, Vec<Sample>>> {
        let rows = sqlx::query(
            "SELECT pool_id, metric, ts_ms, value FROM (\
               SELECT ms.pool_id AS pool_id, ms.metric AS metric, p.ts_ms AS ts_ms, p.value AS value, \
                 ROW_NUMBER() OVER (PARTITION BY ms.pool_id ORDER BY p.ts_ms DESC) AS rn \
               FROM metric_points p JOIN metric_series ms ON ms.id = p.series_id \
               WHERE ms.pool_id IN (SELECT id FROM pools WHERE policies IS NOT NULL) \
                 AND p.ts_ms > $1 AND p.ts_ms <= $2\
             ) newest WHERE rn <= $3 ORDER BY pool_id, rn DESC",
        )
        .bind(from_ms)
        .bind(to_ms)
        .bind(limit_per_pool)
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<String, Vec<Sample>> = HashMap::new();
        for r in &rows {
            let s = Sample {
                pool_id: r.try_get("pool_id")?,
                metric: r.try_get("metric")?,
                ts_ms: r.try_get("ts_ms")?,
                value: r.try_get("value")?,
            };
            match out.get_mut(&s.pool_id) {
                Some(v) => v.push(s),
                None => {
                    out.insert(s.pool_id.clone(), vec![s]);
                }
            }
        }
        Ok(out)
    }
}
