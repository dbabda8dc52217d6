//! The in-memory routing view (issue 15, item 8): one consistent
//! [`RoutingSnapshot`] of tenants' policies, regions, pools' spare capacity,
//! latencies and ejections, shared by every route of this process, so that
//! a route reads memory instead of running queries.
//!
//! # Freshness
//!
//! - **Every tick, on every replica** (leader or not): the supervised
//!   `routing-view` job ([`run`]) reloads the snapshot once per tick, so a
//!   change made through another replica is routed on within about one tick
//!   (one tick plus the load's own time).
//! - **At once for this replica's own writes**: every store write that the
//!   view reads (tenant and policy puts, pool create/update/delete and
//!   scaling, region create, region states, ejection updates, metric and
//!   region samples) is counted by the store ([`Store::view_changes`]) after
//!   it commits. A snapshot holds every write counted before its load began;
//!   [`RoutingView::current`] reloads first when the store counted a write
//!   since, so a route that starts after a write through this replica was
//!   acknowledged reads it (read-your-writes).
//! - **Single flight**: concurrent routes that find the view stale wait for
//!   one reload and share it.
//! - **Bounded age**: a snapshot older than [`RoutingView::max_age_ms`]
//!   (two ticks) is reloaded by the route that finds it, so a stalled or
//!   restarting refresh job never leaves routing on an old view.
//! - A route for a tenant the snapshot does not know reloads once before it
//!   answers 404 (a tenant created through another replica this tick).
//!
//! # Contexts
//!
//! The heavy, shared part of a route's recorded input (the tenant's
//! policies and the regions as the tenant and agent type see them, a
//! [`RouteContext`]) is printed, hashed and parsed back once per snapshot
//! version per (tenant, agent type) ([`ViewState::context`]): every route
//! of that tenant and agent type until the next reload shares it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use fleetscale_store::{RecordedContext, RouteContext, RoutingSnapshot, Store, StoreError};

use crate::clock::Clock;

/// Age after which a route reloads the snapshot itself when no tick did,
/// until [`RoutingView::set_tick`] is called: two default ticks.
pub const DEFAULT_MAX_AGE_MS: i64 = 10_000;

/// Most (tenant, agent type) contexts memoized per snapshot version (a
/// stated bound; past it contexts are built per route, not kept).
pub const MAX_CONTEXTS_PER_VERSION: usize = 100_000;

/// One loaded snapshot and what is memoized for it.
#[derive(Debug)]
pub struct ViewState {
    /// Version: 1 for the first load, +1 for each reload; 0 before any.
    pub version: u64,
    /// The snapshot.
    pub snapshot: RoutingSnapshot,
    /// Sequence number of the load that made it (see `RoutingView::refresh`).
    load_seq: u64,
    /// tenant → agent type → recorded context, built on first use.
    contexts: Mutex<HashMap<String, HashMap<String, Arc<RecordedContext>>>>,
}

impl ViewState {
    fn new(version: u64, load_seq: u64, snapshot: RoutingSnapshot) -> ViewState {
        ViewState {
            version,
            snapshot,
            load_seq,
            contexts: Mutex::default(),
        }
    }

    /// The recorded context of a route for `tenant_id` and `agent_type`
    /// (the tenant's policies, defaults when never set, and the regions as
    /// they see them), built once per version; `None` for a tenant this
    /// snapshot does not know.
    pub fn context(
        &self,
        tenant_id: &str,
        agent_type: &str,
    ) -> Result<Option<Arc<RecordedContext>>, StoreError> {
        let poisoned = || StoreError::Corrupt("routing view context cache poisoned".into());
        if let Some(c) = self
            .contexts
            .lock()
            .map_err(|_| poisoned())?
            .get(tenant_id)
            .and_then(|m| m.get(agent_type))
        {
            return Ok(Some(c.clone()));
        }
        let Some(world) = self.snapshot.route_world(tenant_id, agent_type) else {
            return Ok(None);
        };
        let built = Arc::new(RecordedContext::new(&RouteContext {
            region_policy: world.region_policy.unwrap_or_default(),
            routing_policy: world.routing_policy.unwrap_or_default(),
            regions: world.regions,
        })?);
        let mut memo = self.contexts.lock().map_err(|_| poisoned())?;
        let kept: usize = memo.values().map(HashMap::len).sum();
        if kept >= MAX_CONTEXTS_PER_VERSION {
            return Ok(Some(built));
        }
        // Another route may have built the same one meanwhile: keep the first.
        let c = memo
            .entry(tenant_id.to_string())
            .or_default()
            .entry(agent_type.to_string())
            .or_insert(built)
            .clone();
        Ok(Some(c))
    }
}

/// What `GET /api/v1/engine` shows of the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViewStatus {
    /// Version of the snapshot in use (0 before the first load).
    pub version: u64,
    /// When it was loaded (Unix ms; 0 before the first load).
    pub loaded_at_ms: i64,
    /// Tenants it knows.
    pub tenants: usize,
    /// Regions it knows.
    pub regions: usize,
}

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    current: RwLock<Arc<ViewState>>,
    /// Held while a reload runs: concurrent reloads share one.
    reload: tokio::sync::Mutex<()>,
    /// Sequence numbers handed to loads as they start.
    next_load: AtomicU64,
    max_age_ms: AtomicI64,
}

/// The shared routing view of this process. Cloning shares it.
#[derive(Clone)]
pub struct RoutingView(Arc<Inner>);

impl std::fmt::Debug for RoutingView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutingView")
            .field("status", &self.status())
            .finish()
    }
}

impl RoutingView {
    /// A view over `store`, empty until first used (the first route loads it).
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> RoutingView {
        let empty = ViewState::new(0, 0, RoutingSnapshot::empty(0, 0));
        RoutingView(Arc::new(Inner {
            store,
            clock,
            current: RwLock::new(Arc::new(empty)),
            reload: tokio::sync::Mutex::new(()),
            next_load: AtomicU64::new(1),
            max_age_ms: AtomicI64::new(DEFAULT_MAX_AGE_MS),
        }))
    }

    /// Sets the tick the refresh job runs at: a route reloads a snapshot
    /// older than two ticks itself.
    pub fn set_tick(&self, tick: Duration) {
        let ms = i64::try_from(tick.as_millis()).unwrap_or(i64::MAX / 2);
        self.0
            .max_age_ms
            .store(ms.saturating_mul(2), Ordering::Relaxed);
    }

    /// Age (ms) past which a route reloads the snapshot itself.
    pub fn max_age_ms(&self) -> i64 {
        self.0.max_age_ms.load(Ordering::Relaxed)
    }

    /// The snapshot in use, whatever its freshness.
    pub fn peek(&self) -> Arc<ViewState> {
        self.0
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The view's version, load time and size.
    pub fn status(&self) -> ViewStatus {
        let v = self.peek();
        ViewStatus {
            version: v.version,
            loaded_at_ms: v.snapshot.loaded_at_ms,
            tenants: v.snapshot.tenant_count(),
            regions: v.snapshot.regions().len(),
        }
    }

    fn is_fresh(&self, v: &ViewState) -> bool {
        v.version > 0
            && v.snapshot.changes >= self.0.store.view_changes()
            && self.0.clock.now_ms() - v.snapshot.loaded_at_ms < self.max_age_ms()
    }

    /// The snapshot to route on: the current one when it holds every write
    /// this process made through the store and is younger than
    /// [`RoutingView::max_age_ms`]; otherwise a reload first (shared with
    /// concurrent callers).
    pub async fn current(&self) -> Result<Arc<ViewState>, StoreError> {
        let v = self.peek();
        if self.is_fresh(&v) {
            return Ok(v);
        }
        let _one = self.0.reload.lock().await;
        let v = self.peek();
        if self.is_fresh(&v) {
            return Ok(v);
        }
        self.load().await
    }

    /// The snapshot to route for `tenant_id` on: [`RoutingView::current`],
    /// reloaded once more when it does not know the tenant (created through
    /// another replica since the last load).
    pub async fn for_tenant(&self, tenant_id: &str) -> Result<Arc<ViewState>, StoreError> {
        let v = self.current().await?;
        if v.snapshot.tenant(tenant_id).is_some() {
            return Ok(v);
        }
        self.refresh().await
    }

    /// A snapshot whose load began after this call: a reload, or the one a
    /// concurrent reload that began after this call made.
    pub async fn refresh(&self) -> Result<Arc<ViewState>, StoreError> {
        let after = self.0.next_load.load(Ordering::Acquire);
        let _one = self.0.reload.lock().await;
        let v = self.peek();
        if v.load_seq >= after {
            return Ok(v);
        }
        self.load().await
    }

    /// Loads and installs a new snapshot; the caller holds `reload`.
    async fn load(&self) -> Result<Arc<ViewState>, StoreError> {
        let seq = self.0.next_load.fetch_add(1, Ordering::AcqRel);
        let snapshot = self
            .0
            .store
            .load_routing_snapshot(self.0.clock.now_ms())
            .await?;
        let mut cur = self.0.current.write().unwrap_or_else(|e| e.into_inner());
        let next = Arc::new(ViewState::new(cur.version + 1, seq, snapshot));
        *cur = next.clone();
        Ok(next)
    }
}

/// The `routing-view` job: reloads `view` every `tick` until `shutdown`
/// turns true. A failed load ends the job with the error (the supervisor
/// restarts it with backoff and `/readyz` reports it; routes meanwhile
/// reload on their own, see [`RoutingView::current`]).
pub async fn run(
    view: RoutingView,
    tick: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    view.set_tick(tick);
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        view.refresh().await.map_err(|e| {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "routing view reload failed");
            format!("routing view reload failed: {e}")
        })?;
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            r = shutdown.changed() => {
                if r.is_err() {
                    // No sender: no shutdown signal will come; keep ticking.
                    tokio::time::sleep(tick).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use fleetscale_core::region::routing::RoutingPolicy;

    /// A fresh SQLite store and its directory (removed when the guard drops).
    struct Db(std::path::PathBuf);

    impl Drop for Db {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn store(name: &str) -> (Store, Db) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("fs-view-{name}-{}-{nanos}", std::process::id()));
        (Store::open_sqlite(&dir).await.unwrap(), Db(dir))
    }

    fn view(s: &Store) -> RoutingView {
        RoutingView::new(s.clone(), Arc::new(SystemClock))
    }

    #[tokio::test]
    async fn a_write_through_this_store_is_read_by_the_next_route_and_nothing_else_reloads() {
        let (s, _db) = store("ryw").await;
        let t = s.create_tenant("acme", "test").await.unwrap().id;
        let v = view(&s);
        assert_eq!(v.status().version, 0, "empty until first used");
        let first = v.current().await.unwrap();
        assert_eq!(first.version, 1);
        assert_eq!(first.snapshot.tenant(&t).unwrap().routing_policy, None);
        assert_eq!(
            v.current().await.unwrap().version,
            1,
            "nothing written: kept"
        );
        s.put_routing_policy(&t, &RoutingPolicy::Latency, "x", 1)
            .await
            .unwrap();
        let next = v.current().await.unwrap();
        assert_eq!(next.version, 2);
        assert_eq!(
            next.snapshot.tenant(&t).unwrap().routing_policy,
            Some(RoutingPolicy::Latency)
        );
    }

    #[tokio::test]
    async fn concurrent_routes_on_a_stale_view_share_one_reload() {
        let (s, _db) = store("single-flight").await;
        let v = view(&s);
        assert_eq!(v.current().await.unwrap().version, 1);
        s.create_tenant("acme", "test").await.unwrap();
        let routes: Vec<_> = (0..8)
            .map(|_| {
                let v = v.clone();
                tokio::spawn(async move { v.current().await.unwrap().version })
            })
            .collect();
        for r in routes {
            assert_eq!(r.await.unwrap(), 2, "one reload for all eight");
        }
        assert_eq!(v.status().version, 2);
    }

    #[tokio::test]
    async fn a_tenant_created_through_another_replica_is_found_by_one_reload() {
        let (s, db) = store("other-replica").await;
        let v = view(&s);
        v.current().await.unwrap();
        // Another process's store: its writes are not counted by this one.
        let other = Store::open_sqlite(&db.0).await.unwrap();
        let t = other.create_tenant("elsewhere", "test").await.unwrap().id;
        assert_eq!(v.current().await.unwrap().version, 1, "not counted here");
        let found = v.for_tenant(&t).await.unwrap();
        assert_eq!(found.version, 2);
        assert!(found.snapshot.tenant(&t).is_some());
        // An unknown tenant costs one reload and stays unknown.
        let missing = v.for_tenant("nope").await.unwrap();
        assert!(missing.snapshot.tenant("nope").is_none());
        // `refresh` always answers a load begun after it was called.
        let before = v.status().version;
        assert_eq!(v.refresh().await.unwrap().version, before + 1);
    }

    #[tokio::test]
    async fn a_view_older_than_two_ticks_is_reloaded_by_the_route_that_finds_it() {
        let (s, _db) = store("age").await;
        let v = view(&s);
        v.set_tick(Duration::from_secs(5));
        assert_eq!(v.max_age_ms(), 10_000);
        v.current().await.unwrap();
        assert_eq!(v.current().await.unwrap().version, 1);
        v.set_tick(Duration::ZERO);
        assert_eq!(v.current().await.unwrap().version, 2, "every route reloads");
    }

    #[tokio::test]
    async fn a_context_is_built_once_per_version_and_tenant_and_agent_type() {
        let (s, _db) = store("contexts").await;
        s.create_region("eu-west", "eu", "test").await.unwrap();
        let t = s.create_tenant("acme", "test").await.unwrap().id;
        let v = view(&s);
        let state = v.current().await.unwrap();
        let a = state.context(&t, "writer").unwrap().unwrap();
        let b = state.context(&t, "writer").unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "memoized");
        let other = state.context(&t, "reader").unwrap().unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        assert_eq!(a.hash(), other.hash(), "same content, same hash");
        assert!(state.context("nope", "writer").unwrap().is_none());
        assert_eq!(a.context().routing_policy, RoutingPolicy::default());
        assert_eq!(a.context().regions[0].name, "eu-west");
        s.put_routing_policy(&t, &RoutingPolicy::Latency, "x", 1)
            .await
            .unwrap();
        let c = v
            .current()
            .await
            .unwrap()
            .context(&t, "writer")
            .unwrap()
            .unwrap();
        assert_eq!(c.context().routing_policy, RoutingPolicy::Latency);
        assert_ne!(c.hash(), a.hash());
    }
}
