//! The Prometheus metric source end to end: a real Prometheus (Debian's
//! `prometheus`, `/usr/bin/prometheus`) scrapes a tiny exporter this test
//! runs, and the real `fleetscale serve` (1 s tick, `--prometheus-url`)
//! scales a pool whose load is `sum(agent_load)`: out when the exporter's
//! value rises, in when it falls; with Prometheus stopped the pool is held
//! (no scale-in) and shows `metrics_error` and `metrics_stale`; started
//! again, it resumes and scales in.
//!
//! Without `/usr/bin/prometheus` the test skips with a message, unless
//! `CI` is set (then it fails: `.ci/run` installs it).

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::{free_port, Scratch, TOKEN};

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A child process killed (SIGKILL) and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The exporter: `agent_load <value>` in the text format, on a loopback
/// port; the value is set through the returned handle.
async fn exporter() -> (u16, Arc<AtomicU64>) {
    let value = Arc::new(AtomicU64::new(0f64.to_bits()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let v = value.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let v = v.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let load = f64::from_bits(v.load(Ordering::SeqCst));
                let body = format!("# TYPE agent_load gauge\nagent_load {load}\n");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (port, value)
}

fn set(value: &AtomicU64, v: f64) {
    value.store(v.to_bits(), Ordering::SeqCst);
}

/// Starts Prometheus on `port` scraping the exporter every second, with a
/// fresh TSDB under `dir`, and waits until it is ready.
async fn start_prometheus(dir: &Scratch, run: u32, port: u16, exporter_port: u16) -> Proc {
    let config = dir.path(&format!("prometheus-{run}.yml"));
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: agents\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
        ),
    )
    .unwrap();
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path(&format!("tsdb-{run}")).display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let proc = Proc(child);
    let http = reqwest::Client::new();
    wait_for("prometheus ready", Duration::from_secs(30), || {
        let http = http.clone();
        async move {
            http.get(format!("http://127.0.0.1:{port}/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    proc
}

/// Polls `cond` every 100 ms until it holds; panics after `limit`.
async fn wait_for<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn text(&self, path: &str) -> String {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn pool(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/pools/{id}")).await
    }

    async fn desired(&self, id: &str) -> i64 {
        self.pool(id).await["desired_capacity"].as_i64().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_scales_from_promql_and_holds_while_prometheus_is_down() {
    if !std::path::Path::new(PROMETHEUS).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{PROMETHEUS} is missing: CI must install Debian's prometheus package"
        );
        eprintln!("skipping: {PROMETHEUS} not installed (apt-get install prometheus)");
        return;
    }
    let dir = Scratch::new("fs-prom");
    let (exporter_port, load) = exporter().await;
    let prom_port = free_port();
    let mut prometheus = Some(start_prometheus(&dir, 1, prom_port, exporter_port).await);

    let port = free_port();
    let _server = Proc(
        Command::new(env!("CARGO_BIN_EXE_fleetscale"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path("data"))
            .args(["--tick", "1s", "--prometheus-url"])
            .arg(format!("http://127.0.0.1:{prom_port}"))
            .env("FLEETSCALE_ADMIN_TOKEN", TOKEN)
            .env("FLEETSCALE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fleetscale"),
    );
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    wait_for("fleetscale ready", Duration::from_secs(30), || async {
        api.http
            .get(format!("{}/readyz", api.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;

    let (status, tenant) = api.post("/api/v1/tenants", &json!({"name": "acme"})).await;
    assert_eq!(status, 201, "{tenant}");
    let (status, region) = api
        .post(
            "/api/v1/regions",
            &json!({"name": "eu-west", "jurisdiction": "eu"}),
        )
        .await;
    assert_eq!(status, 201, "{region}");
    let mut body = json!({
        "tenant_id": tenant["id"],
        "region": "eu-west",
        "agent_type": "writer",
        "min_capacity": 1,
        "max_capacity": 9,
        "desired_capacity": 1,
        "capacity_per_instance": 10,
        "metric": "agent_load",
        "mode": "autonomous",
        "scaling_policy": {"scale_up_threshold": 80, "scale_down_threshold": 30,
            "cooldown_seconds": 3, "increment": 2, "window_seconds": 10},
        "metric_source": {"type": "prometheus", "url": "ftp://prom", "query": ""}
    });
    // Bad input: a 422 naming each field and its rule.
    let (status, err) = api.post("/api/v1/pools", &body).await;
    assert_eq!(status, 422, "{err}");
    let fields: Vec<&str> = err["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        ["metric_source.url", "metric_source.query"],
        "{err}"
    );
    // No url: the server's --prometheus-url.
    set(&load, 42.0);
    body["metric_source"] = json!({"type": "prometheus", "query": "sum(agent_load)"});
    let (status, pool) = api.post("/api/v1/pools", &body).await;
    assert_eq!(status, 201, "{pool}");
    let id = pool["id"].as_str().unwrap().to_string();
    assert_eq!(pool["metric_source"]["query"], "sum(agent_load)");
    assert_eq!(pool["metric_source"]["url"], Value::Null);

    // Load is high: 42 on 10-unit instances → scale out, 2 at a time, to 7.
    wait_for(
        "scale-out from the PromQL source",
        Duration::from_secs(30),
        || async { api.desired(&id).await >= 5 },
    )
    .await;
    let samples = api
        .get(&format!(
            "/api/v1/pools/{id}/samples?metric=agent_load&window_seconds=60"
        ))
        .await;
    assert!(
        samples["points"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x["value"] == 42.0)),
        "the query's values are stored as samples: {samples}"
    );
    wait_for("scale-out to its peak", Duration::from_secs(20), || async {
        api.desired(&id).await >= 7
    })
    .await;
    let peak = api.desired(&id).await;

    // Load falls: the first scale-in step, then Prometheus dies.
    set(&load, 2.0);
    wait_for(
        "the first scale-in step",
        Duration::from_secs(30),
        || async { api.desired(&id).await < peak },
    )
    .await;
    drop(prometheus.take());
    wait_for(
        "the source failure on the pool",
        Duration::from_secs(10),
        || async {
            let p = api.pool(&id).await;
            p["metrics_error"].is_object() && p["metrics_stale"] == true
        },
    )
    .await;
    let held = api.desired(&id).await;
    assert!(held > 1, "the hold is tested above the minimum: {held}");
    let p = api.pool(&id).await;
    let e = &p["metrics_error"];
    assert!(
        e["message"].as_str().unwrap().contains("cannot connect"),
        "{e}"
    );
    assert!(e["consecutive_failures"].as_i64().unwrap() >= 1, "{e}");
    assert!(e["since"].is_string(), "{e}");
    // Held through several ticks (the window still holds low samples, which
    // would scale in without fail static): observed, not slept on.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_eq!(
            api.desired(&id).await,
            held,
            "no scale-in while the source fails"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let p = api.pool(&id).await;
    assert!(
        p["metrics_error"]["consecutive_failures"].as_i64().unwrap() >= 3,
        "{p}"
    );
    let (status, plan) = api
        .post(&format!("/api/v1/pools/{id}/plan"), &json!({}))
        .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["metrics_stale"], true, "{plan}");
    let exposition = api.text("/metrics").await;
    assert!(
        exposition.lines().any(|l| l.starts_with(&format!(
            "fleetscale_metric_source_errors_total{{pool=\"{id}\"}}"
        ))),
        "{exposition}"
    );
    assert!(
        exposition
            .lines()
            .any(|l| l == "fleetscale_metric_source_failing_pools 1"),
        "{exposition}"
    );

    // Prometheus is back (same port): the error clears and the pool scales in.
    let _prometheus = start_prometheus(&dir, 2, prom_port, exporter_port).await;
    wait_for(
        "the source to answer again",
        Duration::from_secs(15),
        || async { api.pool(&id).await["metrics_error"].is_null() },
    )
    .await;
    wait_for(
        "scale-in after the restart",
        Duration::from_secs(30),
        || async { api.desired(&id).await == 1 },
    )
    .await;
    let p = api.pool(&id).await;
    assert_eq!(p["metrics_stale"], false, "{p}");
}
