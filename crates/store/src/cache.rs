//! The store's in-memory caches, each bounded: series ids by pool and
//! metric, and pool owners. A full cache is cleared before a new entry goes
//! in (the next reads go to the database and fill it again).

use std::collections::HashMap;
use std::time::Instant;

/// Most series ids the store caches (a stated bound; the cache is cleared
/// when a new series would exceed it).
pub const SERIES_CACHE_MAX: usize = 100_000;

/// Most pool owners the store caches (a stated bound; the cache is cleared
/// when a new pool would exceed it).
pub const OWNER_CACHE_MAX: usize = 100_000;

/// Pool id → metric → series id, for series known to exist, at most
/// `max` series in all.
#[derive(Debug)]
pub(crate) struct SeriesCache {
    by_pool: HashMap<String, HashMap<String, i64>>,
    len: usize,
    max: usize,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache::with_max(SERIES_CACHE_MAX)
    }
}

impl SeriesCache {
    /// An empty cache of at most `max` series.
    pub(crate) fn with_max(max: usize) -> SeriesCache {
        SeriesCache {
            by_pool: HashMap::new(),
            len: 0,
            max,
        }
    }

    /// The series id of `metric` of pool `pool_id`, if cached.
    pub(crate) fn get(&self, pool_id: &str, metric: &str) -> Option<i64> {
        self.by_pool.get(pool_id)?.get(metric).copied()
    }

    /// Caches a series id; clears the cache first when it is full and the
    /// series is new.
    pub(crate) fn insert(&mut self, pool_id: String, metric: String, id: i64) {
        if self.get(&pool_id, &metric).is_none() && self.len >= self.max {
            self.by_pool.clear();
            self.len = 0;
        }
        if self
            .by_pool
            .entry(pool_id)
            .or_default()
            .insert(metric, id)
            .is_none()
        {
            self.len += 1;
        }
    }

    /// Forgets every series of pool `pool_id`.
    pub(crate) fn remove_pool(&mut self, pool_id: &str) {
        if let Some(metrics) = self.by_pool.remove(pool_id) {
            self.len -= metrics.len();
        }
    }

    /// How many series are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Pool id → (tenant id, when read), at most `max` pools.
#[derive(Debug)]
pub(crate) struct OwnerCache {
    owners: HashMap<String, (String, Instant)>,
    max: usize,
}

impl Default for OwnerCache {
    fn default() -> Self {
        OwnerCache::with_max(OWNER_CACHE_MAX)
    }
}

impl OwnerCache {
    /// An empty cache of at most `max` pools.
    pub(crate) fn with_max(max: usize) -> OwnerCache {
        OwnerCache {
            owners: HashMap::new(),
            max,
        }
    }

    /// The cached owner of pool `pool_id` and when it was read.
    pub(crate) fn get(&self, pool_id: &str) -> Option<&(String, Instant)> {
        self.owners.get(pool_id)
    }

    /// Caches a pool's owner; clears the cache first when it is full and
    /// the pool is new.
    pub(crate) fn insert(&mut self, pool_id: String, tenant_id: String, at: Instant) {
        if self.owners.len() >= self.max && !self.owners.contains_key(&pool_id) {
            self.owners.clear();
        }
        self.owners.insert(pool_id, (tenant_id, at));
    }

    /// Forgets pool `pool_id`.
    pub(crate) fn remove(&mut self, pool_id: &str) {
        self.owners.remove(pool_id);
    }

    /// How many pools are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.owners.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_cache_never_holds_more_than_its_bound() {
        let mut c = SeriesCache::with_max(3);
        for i in 0..10 {
            c.insert(format!("pool-{}", i % 4), format!("m{i}"), i);
            assert!(c.len() <= 3, "{} series cached", c.len());
        }
        // The newest entry survives the clearing it caused.
        assert_eq!(c.get("pool-1", "m9"), Some(9));
        // Refreshing a cached series neither grows nor clears the cache.
        let before = c.len();
        c.insert("pool-1".into(), "m9".into(), 9);
        assert_eq!((c.len(), c.get("pool-1", "m9")), (before, Some(9)));
        c.remove_pool("pool-1");
        assert_eq!(c.get("pool-1", "m9"), None);
        assert_eq!(c.len(), before - 1);
        assert_eq!(SeriesCache::default().max, SERIES_CACHE_MAX);
    }

    #[test]
    fn the_owner_cache_never_holds_more_than_its_bound() {
        let mut c = OwnerCache::with_max(3);
        let now = Instant::now();
        for i in 0..10 {
            c.insert(format!("pool-{i}"), format!("tenant-{i}"), now);
            assert!(c.len() <= 3, "{} owners cached", c.len());
        }
        assert_eq!(c.get("pool-9").map(|(t, _)| t.as_str()), Some("tenant-9"));
        let before = c.len();
        c.insert("pool-9".into(), "tenant-9".into(), now);
        assert_eq!(c.len(), before);
        c.remove("pool-9");
        assert!(c.get("pool-9").is_none());
        assert_eq!(OwnerCache::default().max, OWNER_CACHE_MAX);
    }
}
