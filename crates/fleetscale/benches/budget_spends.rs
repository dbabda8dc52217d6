//! Budget spend throughput over HTTP against the built binary (run with
//! `cargo bench -p fleetscale --bench budget_spends`, which builds it in
//! release): SQLite single node with 32 clients, PostgreSQL (from
//! `FLEETSCALE_TEST_PG_URL`) with two replicas. Every spend is exact and
//! durable when acknowledged; the budget never runs out during the run.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use support::{
    client, free_port, fresh_pg_url, fresh_sqlite_url, get, post, region_with_budget, Replica,
};

const BIN: &str = env!("CARGO_BIN_EXE_fleetscale");

async fn run(name: &str, urls: Vec<String>, clients: usize, duration: Duration) {
    let http = client();
    let region = region_with_budget(&http, &urls[0], 1_000_000_000_000).await;
    // Warm-up.
    for u in &urls {
        post(
            &http,
            &format!("{u}/api/v1/regions/{region}/budget/spend"),
            &json!({"amount_cents": 1, "job_type": "warmup"}),
        )
        .await
        .unwrap();
    }
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, done, region) = (http.clone(), done.clone(), region.clone());
        let url = format!(
            "{}/api/v1/regions/{region}/budget/spend",
            urls[c % urls.len()]
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while started.elapsed() < duration {
                i += 1;
                let body = json!({"amount_cents": (i % 97) + 1, "job_type": "creative", "idempotency_key": format!("c{c}-{i}")});
                let (s, v) = post(&http, &url, &body).await.unwrap();
                assert_eq!(s, 200, "{v}");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let report = get(
        &http,
        &format!("{}/api/v1/regions/{region}/budget/ledger-check", urls[0]),
    )
    .await;
    assert_eq!(report["ok"], true, "{report}");
    println!(
        "{name}: {n} exact spends in {secs:.1}s = {:.0} spends/s ({clients} clients over HTTP, ledger check ok)",
        n as f64 / secs
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let duration = Duration::from_secs(secs);
    {
        let db = fresh_sqlite_url();
        let r = Replica::start(BIN, &db, free_port()).await;
        run("sqlite, single node", vec![r.url()], 32, duration).await;
    }
    {
        let db = fresh_pg_url().await;
        let a = Replica::start(BIN, &db, free_port()).await;
        let b = Replica::start(BIN, &db, free_port()).await;
        run(
            "postgresql, two replicas",
            vec![a.url(), b.url()],
            64,
            duration,
        )
        .await;
    }
}
