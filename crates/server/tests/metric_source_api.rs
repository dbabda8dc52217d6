//! A pool's Prometheus metric source through the API and the control loop,
//! against a fake Prometheus HTTP API (no Prometheus needed; the real one
//! runs in `crates/fleetscale/tests/prometheus.rs`): validation, the stored
//! samples, the failure record, fail static's hold, the engine metrics,
//! removal.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use fleetscale_engine::MetricSources;
use support::{fields, pool_body, App, ADMIN};

/// What the fake answers (status, body) and the request lines it saw.
#[derive(Default)]
struct Fake {
    answer: Mutex<(u16, String)>,
    requests: Mutex<Vec<String>>,
}

impl Fake {
    fn answer(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_string());
    }
}

/// A fake Prometheus on a loopback port.
async fn fake_prometheus() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let f = fake.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let f = f.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let line = head.lines().next().unwrap_or("").to_string();
                f.requests.lock().unwrap().push(line);
                let (status, body) = f.answer.lock().unwrap().clone();
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, fake)
}

fn vector(v: f64) -> String {
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1700000000,"{v}"]}}]}}}}"#
    )
}

#[tokio::test]
async fn a_prometheus_source_feeds_the_loop_and_its_failure_holds_the_pool() {
    let (url, fake) = fake_prometheus().await;
    let mut app = App::new().await;
    app.state.engine.metric_sources = Arc::new(MetricSources::new(None, Duration::from_secs(2)));
    let tid = app.tenant("acme").await;
    app.admin(
        "POST",
        "/api/v1/regions",
        json!({"name": "eu-west", "jurisdiction": "eu"}),
    )
    .await;

    // Validation: each broken rule named; no url needs a server default.
    let mut body = pool_body(&tid, "writer");
    body["metric_source"] =
        json!({"type": "graphite", "url": "file:///x", "query": "", "metric": "a b"});
    let err = app
        .expect("POST", "/api/v1/pools", ADMIN, body.clone(), 422)
        .await;
    assert_eq!(
        fields(&err),
        [
            "metric_source.type",
            "metric_source.url",
            "metric_source.query",
            "metric_source.metric"
        ],
        "{err}"
    );
    body["metric_source"] = json!({"type": "prometheus", "query": "sum(agent_load)"});
    let err = app
        .expect("POST", "/api/v1/pools", ADMIN, body.clone(), 422)
        .await;
    assert_eq!(fields(&err), ["metric_source.url"], "{err}");
    assert!(err["errors"][0]["rule"]
        .as_str()
        .unwrap()
        .contains("--prometheus-url"));
    body["metric_source"] = json!({"type": "prometheus", "url": url, "query": "sum(agent_load)"});
    let p = app.expect("POST", "/api/v1/pools", ADMIN, body, 201).await;
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(p["metric_source"]["type"], "prometheus");
    assert_eq!(p["metric_source"]["url"], url.as_str());
    assert_eq!(p["metrics_error"], Value::Null);

    // A value is stored as a sample of the pool's metric, at the tick's time
    // (10 on 2 × 10: 50 %, a hold).
    fake.answer(200, &vector(10.0));
    app.tick().await;
    let line = fake.requests.lock().unwrap().last().cloned().unwrap();
    assert!(
        line.starts_with("GET /api/v1/query?query=sum%28agent_load%29&time="),
        "{line}"
    );
    let s = app
        .admin(
            "GET",
            &format!("/api/v1/pools/{id}/samples?metric=throughput"),
            Value::Null,
        )
        .await;
    assert_eq!(s["points"][0]["value"], 10.0, "{s}");
    let p = app
        .admin("GET", &format!("/api/v1/pools/{id}"), Value::Null)
        .await;
    assert_eq!(p["desired_capacity"], 2, "{p}");
    // An empty vector is no sample and no failure.
    fake.answer(
        200,
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
    );
    app.tick().await;
    let p = app
        .admin("GET", &format!("/api/v1/pools/{id}"), Value::Null)
        .await;
    assert_eq!(p["metrics_error"], Value::Null, "{p}");

    // Low pushed load would scale in (2 → 1) but the source fails: held.
    app.admin(
        "POST",
        "/api/v1/metrics",
        json!({"samples": [{"pool_id": id, "metric": "throughput", "value": 0.5}]}),
    )
    .await;
    fake.answer(
        503,
        r#"{"status":"error","errorType":"unavailable","error":"overloaded"}"#,
    );
    let r = app.tick().await;
    assert_eq!(r.metrics_stale, 1, "{r:?}");
    app.tick().await;
    let p = app
        .admin("GET", &format!("/api/v1/pools/{id}"), Value::Null)
        .await;
    assert_eq!(p["desired_capacity"], 2, "held: {p}");
    assert_eq!(p["metrics_stale"], true, "{p}");
    let e = &p["metrics_error"];
    assert_eq!(e["consecutive_failures"], 2, "{e}");
    assert_eq!(e["message"], "HTTP 503: unavailable: overloaded", "{e}");
    assert!(e["since"].is_string(), "{e}");
    let plan = app
        .admin("POST", &format!("/api/v1/pools/{id}/plan"), json!({}))
        .await;
    assert_eq!(plan["metrics_stale"], true, "{plan}");
    assert!(
        plan["reason"]
            .as_str()
            .unwrap()
            .contains("fail static: metrics source error (HTTP 503"),
        "{plan}"
    );
    let (_, exposition) = app.text("/metrics").await;
    assert!(
        exposition.contains(&format!(
            "fleetscale_metric_source_errors_total{{pool=\"{id}\"}} 2"
        )),
        "{exposition}"
    );
    assert!(
        exposition.contains("fleetscale_metric_source_failing_pools 1"),
        "{exposition}"
    );

    // The source answers again (low): the record clears and the pool scales in.
    fake.answer(200, &vector(0.5));
    app.tick().await;
    let p = app
        .admin("GET", &format!("/api/v1/pools/{id}"), Value::Null)
        .await;
    assert_eq!(p["metrics_error"], Value::Null, "{p}");
    assert_eq!(p["desired_capacity"], 1, "{p}");
    let (_, exposition) = app.text("/metrics").await;
    assert!(exposition.contains("fleetscale_metric_source_failing_pools 0"));

    // A patch of another field keeps the source; null removes it (audited).
    let p = app
        .admin(
            "PATCH",
            &format!("/api/v1/pools/{id}"),
            json!({"max_capacity": 6}),
        )
        .await;
    assert_eq!(p["metric_source"]["query"], "sum(agent_load)", "{p}");
    let p = app
        .admin(
            "PATCH",
            &format!("/api/v1/pools/{id}"),
            json!({"metric_source": null}),
        )
        .await;
    assert_eq!(p["metric_source"], Value::Null, "{p}");
    let audit = app
        .admin(
            "GET",
            &format!("/api/v1/audit?tenant_id={tid}"),
            Value::Null,
        )
        .await;
    let updates = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "pool.update")
        .count();
    assert_eq!(updates, 2, "{audit}");
    let before = fake.requests.lock().unwrap().len();
    app.tick().await;
    assert_eq!(
        fake.requests.lock().unwrap().len(),
        before,
        "no query without a source"
    );
}

#[tokio::test]
async fn a_server_default_url_serves_sources_without_one() {
    let (url, fake) = fake_prometheus().await;
    fake.answer(
        200,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"12"]}}"#,
    );
    let mut app = App::new().await;
    app.state.engine.metric_sources = Arc::new(MetricSources::new(
        Some(format!("{url}/")),
        Duration::from_secs(2),
    ));
    let tid = app.tenant("acme").await;
    app.admin(
        "POST",
        "/api/v1/regions",
        json!({"name": "eu-west", "jurisdiction": "eu"}),
    )
    .await;
    let mut body = pool_body(&tid, "writer");
    body["metric_source"] =
        json!({"type": "prometheus", "query": "scalar(up)", "metric": "arrival_rate"});
    let p = app.expect("POST", "/api/v1/pools", ADMIN, body, 201).await;
    let id = p["id"].as_str().unwrap();
    app.tick().await;
    let s = app
        .admin(
            "GET",
            &format!("/api/v1/pools/{id}/samples?metric=arrival_rate"),
            Value::Null,
        )
        .await;
    assert_eq!(
        s["points"][0]["value"], 12.0,
        "stored as the named metric: {s}"
    );
    let line = fake.requests.lock().unwrap()[0].clone();
    assert!(
        line.starts_with("GET /api/v1/query?query=scalar%28up%29"),
        "{line}"
    );
}
