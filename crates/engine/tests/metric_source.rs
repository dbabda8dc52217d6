//! The metric-source poller's bounds: many sources that never answer cost
//! a tick one query timeout, not one per query, and each is recorded as a
//! failure on its pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetscale_core::metric_source::RawMetricSource;
use fleetscale_core::NewPool;
use fleetscale_engine::metric_source::poll;
use fleetscale_engine::{EngineCtx, MetricSources};
use fleetscale_store::Store;

#[tokio::test]
async fn sources_that_never_answer_cost_one_timeout_per_tick() {
    // A server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let dir = std::env::temp_dir().join(format!(
        "fs-engine-sources-{}-{}",
        std::process::id(),
        fleetscale_store::now_ms()
    ));
    let store = Store::open_sqlite(&dir).await.unwrap();
    let mut ctx = EngineCtx::new(store.clone());
    let timeout = Duration::from_millis(300);
    ctx.metric_sources = Arc::new(MetricSources::new(None, timeout));
    let t = store.create_tenant("acme", "test").await.unwrap();
    store.create_region("eu-west", "eu", "test").await.unwrap();
    let n = 40;
    for i in 0..n {
        let p = NewPool {
            tenant_id: t.id.clone(),
            region: "eu-west".into(),
            agent_type: format!("a{i}"),
            mode: Some("autonomous".into()),
            metric_source: Some(RawMetricSource {
                kind: "prometheus".into(),
                url: Some(url.clone()),
                query: "up".into(),
                metric: None,
            }),
            ..NewPool::default()
        }
        .validate()
        .unwrap();
        store.create_pool(&p, "test").await.unwrap();
    }
    let mut pools = store.all_pools(None).await.unwrap();
    let started = Instant::now();
    let failures = poll(&ctx, None, &mut pools, fleetscale_store::now_ms())
        .await
        .unwrap();
    let took = started.elapsed();
    // One after another they would take 40 × 300 ms; 8 at a time 1.5 s.
    assert!(took < timeout * 3, "the poll took {took:?}");
    assert_eq!(failures.len(), n);
    assert!(
        failures.values().all(|e| e.starts_with("timed out")),
        "{failures:?}"
    );
    for p in store.all_pools(None).await.unwrap() {
        let e = p.metrics_error.expect("recorded on every pool");
        assert_eq!(e.consecutive_failures, 1);
    }
    assert_eq!(ctx.metrics.metric_source_failing_pools.get(), n as i64);
    let _ = std::fs::remove_dir_all(&dir);
}
