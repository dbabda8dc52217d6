//! Budget spend throughput over HTTP against the built binary (run with
//! `cargo bench -p fleetscale --bench budget_spends`, which builds it in
//! release): SQLite single node with 32 clients, PostgreSQL (from
//! `FLEETSCALE_TEST_PG_URL`; skipped when it is unset) with two replicas.
//! Every spend is exact and durable when acknowledged; the budget never runs
//! out during the run.
//!
//! The load generator shares the machine with the servers, so it is kept
//! lean: each client owns one keep-alive HTTP/1.1 connection (written to
//! directly, answers parsed with httparse), sends one spend
//! with its own idempotency key, waits for the answer and checks it (status
//! 200, charged the amount, not a replay) before sending the next. No
//! pipelining: at most one request per client is in flight. Each run prints
//! the rate, the latency percentiles the clients saw and the CPU per spend
//! by thread.
//!
//! `BENCH_SECS` sets each run's length (15 s); `BENCH_CLIENTS` the SQLite
//! run's clients (32, the target's figure; more clients show how much of
//! the rate is the closed loop's latency rather than CPU); `BENCH_ROUNDS`
//! how many runs of each backend, each on a fresh database and server (1),
//! followed by their median, since on a shared machine one run's rate can
//! be ±30% off; `BENCH_CEILING=0` skips the HTTP ceiling run.
//!
//! The client, the ceiling run and the CPU accounting are `common`'s,
//! shared with `routing_http`.

/// The load generator allocates with mimalloc too, like the server.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use sqlx::Connection;

use common::{
    bin, ceiling_enabled, cpu_by_thread, env_count, http_ceiling, sum_threads, summary, HttpClient,
    AUTH,
};
use support::{
    client, free_port, fresh_pg_url, fresh_sqlite, get, post, region_with_budget, Replica,
};

/// The fields of a spend answer the bench checks.
#[derive(Deserialize)]
struct Spent {
    charged_cents: i64,
    replayed: bool,
}

/// One client spending in one region over `common`'s lean connection.
struct SpendClient {
    http: HttpClient,
    path: String,
}

impl SpendClient {
    async fn connect(base: &str, region: &str) -> SpendClient {
        SpendClient {
            http: HttpClient::connect(base).await,
            path: format!("/api/v1/regions/{region}/budget/spend"),
        }
    }

    /// One spend; panics unless it was charged exactly once.
    async fn spend(&mut self, amount: i64, key: &str) {
        let body = format!(
            r#"{{"amount_cents":{amount},"job_type":"creative","idempotency_key":"{key}"}}"#
        );
        let (status, bytes) = self.http.post_json(&self.path, &body).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        let s: Spent = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(s.charged_cents, amount);
        assert!(!s.replayed, "a fresh key was replayed");
    }
}

/// What the server and this load generator spent on CPU per spend between
/// two [`cpu_by_thread`] readings, and, when the database runs inside the
/// server (`in_process`: SQLite), the rate two fully busy cores would allow
/// at that cost: figures far less sensitive to the host's other load than
/// the rate itself. PostgreSQL's own processes are not counted.
fn spend_cpu_report(
    server: (&BTreeMap<String, u64>, &BTreeMap<String, u64>),
    loadgen: (&BTreeMap<String, u64>, &BTreeMap<String, u64>),
    (n, unit): (usize, &str),
    in_process: bool,
) -> String {
    let per =
        |before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, name: Option<&str>| {
            let ns: u64 = after
                .iter()
                .filter(|(k, _)| name.is_none_or(|n| k.as_str() == n))
                .map(|(k, v)| v.saturating_sub(before.get(k).copied().unwrap_or(0)))
                .sum();
            ns as f64 / 1000.0 / n.max(1) as f64
        };
    let total = per(server.0, server.1, None);
    let writer = per(server.0, server.1, Some("budget-writer"));
    let sync = per(server.0, server.1, Some("budget-wal-sync"));
    let gen = per(loadgen.0, loadgen.1, None);
    let ceiling = if in_process {
        format!(
            "; two busy cores at that cost: {:.0} {unit}s/s",
            2e6 / (total + gen)
        )
    } else {
        " (PostgreSQL's processes not counted)".to_string()
    };
    format!(
        "CPU per {unit}: server {total:.1} µs (budget writer {writer:.1}, WAL sync {sync:.1}, other threads {:.1}), load generator {gen:.1} µs{ceiling}",
        total - writer - sync,
    )
}

async fn run(
    name: &str,
    urls: Vec<String>,
    pids: &[u32],
    clients: usize,
    duration: Duration,
    pg_url: Option<&str>,
) -> f64 {
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
    if let Some(url) = pg_url {
        // Steady state: planner statistics as autovacuum keeps them in a
        // running system. On a brand-new database autovacuum first analyzes
        // the ledger while it holds one or two rows and does not look again
        // for a minute; meanwhile the idempotency lookup may probe the
        // (region_id, created_at_ms) index and filter the whole region
        // (docs/benchmarks.md).
        let mut conn = sqlx::postgres::PgConnection::connect(url).await.unwrap();
        sqlx::query("ANALYZE region_budget_transactions")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(AUTH, format!("Bearer {}", support::TOKEN));
    let mut conns = Vec::new();
    for c in 0..clients {
        conns.push(SpendClient::connect(&urls[c % urls.len()], &region).await);
    }
    let done = Arc::new(AtomicUsize::new(0));
    let charged = Arc::new(AtomicI64::new(0));
    let cpu = |pids: &[u32]| -> Vec<BTreeMap<String, u64>> {
        pids.iter().map(|p| cpu_by_thread(&p.to_string())).collect()
    };
    let server_before = cpu(pids);
    let gen_before = cpu_by_thread("self");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut client) in conns.into_iter().enumerate() {
        let (done, charged) = (done.clone(), charged.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0i64;
            let mut latencies_us = Vec::new();
            while started.elapsed() < duration {
                i += 1;
                let amount = (i % 97) + 1;
                let sent = Instant::now();
                client.spend(amount, &format!("c{c}-{i}")).await;
                latencies_us.push(sent.elapsed().as_micros() as u64);
                done.fetch_add(1, Ordering::Relaxed);
                charged.fetch_add(amount, Ordering::Relaxed);
            }
            latencies_us
        }));
    }
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let (server_after, gen_after) = (cpu(pids), cpu_by_thread("self"));
    let report = get(
        &http,
        &format!("{}/api/v1/regions/{region}/budget/ledger-check", urls[0]),
    )
    .await;
    assert_eq!(report["ok"], true, "{report}");
    // Every acknowledged spend was charged exactly once (plus the warm-ups).
    let budget = get(
        &http,
        &format!("{}/api/v1/regions/{region}/budget", urls[0]),
    )
    .await;
    assert_eq!(
        budget["spent_this_month_cents"].as_i64(),
        Some(charged.load(Ordering::Relaxed) + urls.len() as i64),
        "{budget}"
    );
    let rate = n as f64 / secs;
    println!(
        "{name}: {n} exact spends in {secs:.1}s = {rate:.0} spends/s ({clients} clients over HTTP, ledger check ok, charged once each)"
    );
    latencies_us.sort_unstable();
    let at = |q: f64| {
        latencies_us[((latencies_us.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
    };
    println!(
        "{name}: latency as the client saw it: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    );
    // The replicas' threads summed by name.
    let (sb, sa) = (sum_threads(server_before), sum_threads(server_after));
    println!(
        "{name}: {}",
        spend_cpu_report(
            (&sb, &sa),
            (&gen_before, &gen_after),
            (n, "spend"),
            pg_url.is_none()
        )
    );
    rate
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let duration = Duration::from_secs(env_count("BENCH_SECS", 15));
    let rounds = env_count("BENCH_ROUNDS", 1);
    let sqlite_clients = env_count("BENCH_CLIENTS", 32) as usize;
    let ceiling = ceiling_enabled();
    let bin = bin();
    println!("server binary: {bin}");
    let mut rates = Vec::new();
    for round in 0..rounds {
        // A fresh database and server each run, as in a single run.
        let db = fresh_sqlite();
        let r = Replica::start(&bin, &db.url, free_port()).await;
        if round == 0 && ceiling {
            http_ceiling(&r.url(), r.pid(), 32, duration).await;
        }
        let pids: Vec<u32> = r.pid().into_iter().collect();
        rates.push(
            run(
                "sqlite, single node",
                vec![r.url()],
                &pids,
                sqlite_clients,
                duration,
                None,
            )
            .await,
        );
    }
    summary("sqlite, single node", "spends", &mut rates);
    if std::env::var_os("FLEETSCALE_TEST_PG_URL").is_none() {
        println!(
            "postgresql, two replicas: skipped, FLEETSCALE_TEST_PG_URL is not set (`scripts/pg-throwaway.sh start DIR` starts a throwaway cluster and prints its URL)"
        );
        return;
    }
    let mut rates = Vec::new();
    for _ in 0..rounds {
        let db = fresh_pg_url().await;
        let a = Replica::start(&bin, &db, free_port()).await;
        let b = Replica::start(&bin, &db, free_port()).await;
        let pids: Vec<u32> = a.pid().into_iter().chain(b.pid()).collect();
        rates.push(
            run(
                "postgresql, two replicas",
                vec![a.url(), b.url()],
                &pids,
                64,
                duration,
                Some(&db),
            )
            .await,
        );
    }
    summary("postgresql, two replicas", "spends", &mut rates);
}
