//! Benchmarks (not tests) of the service: prints figures, asserts nothing.
//!
//! `cargo bench -p fleetscale-server --bench engine` prints
//! 1. the pure control-loop plan (`plan_tick`) for 10,000 and 100,000 pools,
//!    median of 7 runs, on one thread;
//! 2. a whole tick's observe + plan on SQLite for the same fleets (the
//!    database reads of the loop);
//! 3. metric ingestion over HTTP on SQLite (durable: WAL, synchronous=FULL),
//!    batches of 1,000 samples from 8 concurrent clients.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetscale_core::control::{plan_tick, PoolState};
use fleetscale_core::{Mode, Observation, PolicySpec, PoolBounds, ThresholdPolicy, WindowStats};
use fleetscale_server::auth::hash_token;
use fleetscale_server::{router, AppState};
use fleetscale_store::{now_ms, Store};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn synthetic_pools(n: usize, now: i64) -> Vec<PoolState> {
    (0..n)
        .map(|i| {
            let desired = 1 + (i % 10) as i64;
            PoolState {
                id: format!("pool-{i:06}"),
                mode: if i % 5 == 0 {
                    Mode::Recommend
                } else {
                    Mode::Autonomous
                },
                safety_lock: false,
                policy: PolicySpec::Threshold(ThresholdPolicy::default()),
                combined: None,
                observation: Observation {
                    now_ms: now,
                    bounds: PoolBounds {
                        min: 1,
                        max: 20,
                        desired,
                    },
                    capacity_per_instance: 10.0,
                    load: (i % 7 != 0).then(|| WindowStats {
                        mean: (i * 37 % 200) as f64,
                        count: 60,
                        newest_ts_ms: now - 1000,
                    }),
                    last_scaled_at_ms: (i % 3 == 0).then_some(now - 100_000),
                    ..Observation::new(
                        now,
                        PoolBounds {
                            min: 1,
                            max: 20,
                            desired,
                        },
                    )
                },
                pending_proposal: None,
                forecasts: Vec::new(),
                memory: Default::default(),
                tick_ms: 0,
                metrics_error: None,
            }
        })
        .collect()
}

/// The SQLite directory of the tick bench with `n` pools.
fn tick_dir(n: usize, now: i64) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("fs-bench-{n}-{now}"))
}

async fn seed_sqlite(n: usize, now: i64) -> AppState {
    let dir = tick_dir(n, now);
    let store = Store::open_sqlite(&dir).await.expect("open");
    let t = store.create_tenant("bench", "bench").await.expect("tenant");
    store
        .create_region("r1", "eu", "bench")
        .await
        .expect("region");
    let policy = serde_json::to_string(&ThresholdPolicy::default()).unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let mut pools = String::from("BEGIN; INSERT INTO pools (id, tenant_id, region, agent_type, min_capacity, max_capacity, desired_capacity, capacity_per_instance, metric, mode, scaling_policy, window_seconds, safety_lock, last_scaled_at_ms, created_at_ms, updated_at_ms) VALUES ");
        let mut series = String::from("INSERT INTO metric_series (id, pool_id, metric) VALUES ");
        let mut samples =
            String::from("INSERT INTO metric_points (series_id, ts_ms, value) VALUES ");
        for (k, i) in chunk.iter().enumerate() {
            let sep = if k == 0 { "" } else { "," };
            pools.push_str(&format!(
                "{sep}('p{i:07}', '{}', 'r1', 'a{i}', 1, 20, {}, 10, 'throughput', 'autonomous', '{policy}', 300, 0, NULL, {now}, {now})",
                t.id,
                1 + i % 10
            ));
            series.push_str(&format!("{sep}({}, 'p{i:07}', 'throughput')", i + 1));
            samples.push_str(&format!(
                "{sep}({}, {}, {})",
                i + 1,
                now - 1000,
                i * 37 % 200
            ));
        }
        pools.push_str("; ");
        pools.push_str(&series);
        pools.push_str("; ");
        pools.push_str(&samples);
        pools.push_str("; COMMIT;");
        store.exec_admin(&pools).await.expect("seed");
    }
    AppState::new(store)
}

async fn bench_ingest() {
    let now = now_ms();
    let dir = std::env::temp_dir().join(format!("fs-bench-ingest-{now}"));
    let store = Store::open_sqlite(&dir).await.expect("open");
    let t = store.create_tenant("bench", "bench").await.unwrap();
    store.create_region("r1", "eu", "bench").await.unwrap();
    let mut pool_ids = Vec::new();
    for i in 0..10 {
        let p = fleetscale_core::NewPool {
            tenant_id: t.id.clone(),
            region: "r1".into(),
            agent_type: format!("a{i}"),
            ..Default::default()
        }
        .validate()
        .unwrap();
        pool_ids.push(store.create_pool(&p, "bench").await.unwrap().id);
    }
    let direct: Vec<fleetscale_store::Sample> = (0..1000)
        .map(|i| fleetscale_store::Sample {
            pool_id: pool_ids[i % pool_ids.len()].clone(),
            metric: "throughput".into(),
            ts_ms: now + i as i64,
            value: 1.0,
        })
        .collect();
    let t = Instant::now();
    for _ in 0..50 {
        store.insert_samples(&direct).await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "ingest  sqlite durable, store only, batches of 1000: {:.0} samples/s ({:.1} ms per batch)",
        50_000.0 / secs,
        secs * 1000.0 / 50.0
    );
    let mut state = AppState::new(store);
    state.admin_token_hash = Some(Arc::from(hash_token("bench")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    let body = |k: usize| {
        let samples: Vec<serde_json::Value> = (0..1000)
            .map(|i| serde_json::json!({"pool_id": pool_ids[(k + i) % pool_ids.len()], "metric": "throughput", "value": (i % 100) as f64, "ts": now + i as i64}))
            .collect();
        serde_json::to_vec(&serde_json::json!({ "samples": samples })).unwrap()
    };
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new((0..16).map(body).collect());
    let clients = 8;
    let batches_per_client = 60;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let bodies = bodies.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for b in 0..batches_per_client {
                let res = http
                    .post(format!("http://{addr}/api/v1/metrics"))
                    .bearer_auth("bench")
                    .header("content-type", "application/json")
                    .body(bodies[(c + b) % bodies.len()].clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status().as_u16(), 202);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let n = clients * batches_per_client * 1000;
    println!("ingest  sqlite durable, HTTP, {clients} clients, batches of 1000: {n} samples in {secs:.2}s = {:.0} samples/s", n as f64 / secs);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn tick_bench(n: usize) {
    let now = now_ms();
    let state = seed_sqlite(n, now).await;
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let pools = fleetscale_engine::control::observe(&state.engine, now, None)
            .await
            .unwrap();
        let (steps, _) = plan_tick(&pools);
        std::hint::black_box(steps);
        runs.push(t.elapsed());
    }
    println!(
        "tick    observe (SQLite) + plan, {n:>6} pools: median {:?}",
        median(runs)
    );
    let t = Instant::now();
    let pools = state.engine.store.all_pools(None).await.unwrap();
    let t_pools = t.elapsed();
    let t = Instant::now();
    let stats = state.engine.store.window_stats(None, now).await.unwrap();
    let t_stats = t.elapsed();
    println!(
        "        of which: load {} pools {t_pools:?}, window stats of {} pools {t_stats:?}",
        pools.len(),
        stats.len()
    );
    drop(state);
    let _ = std::fs::remove_dir_all(tick_dir(n, now));
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let now = 1_700_000_000_000;
    for n in [10_000usize, 100_000] {
        let pools = synthetic_pools(n, now);
        let runs: Vec<Duration> = (0..7)
            .map(|_| {
                let t = Instant::now();
                let (steps, counts) = plan_tick(std::hint::black_box(&pools));
                std::hint::black_box((steps, counts));
                t.elapsed()
            })
            .collect();
        println!(
            "plan    pure plan_tick, {n:>6} pools, one thread: median {:?}",
            median(runs)
        );
    }
    if std::env::args().any(|a| a == "--tick-only") {
        for n in [10_000usize, 100_000] {
            tick_bench(n).await;
        }
        return;
    }
    if std::env::args().any(|a| a == "--ingest-only") {
        bench_ingest().await;
        return;
    }
    for n in [10_000usize, 100_000] {
        tick_bench(n).await;
    }
    bench_ingest().await;
}
