//! Black-box tests of the built binary: a pool scales up and down by itself
//! within its bounds, survives `kill -9` with nothing lost (SQLite and
//! PostgreSQL), and two replicas on PostgreSQL elect one leader, fail over
//! within two ticks and deliver each webhook once (counted by a real HTTP
//! receiver).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod support;

use support::{free_port, fresh_pg_url, Scratch};

const ADMIN: &str = "blackbox-admin-token";
const SECRET: &str = "blackbox-webhook-secret";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleetscale")
}

/// Where a server keeps its data: a data directory (removed when the test
/// is done with it) or a PostgreSQL database.
enum Db {
    Dir(Scratch),
    Url(String),
}

struct Server {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Server {
    async fn start(db: &Db, tick: &str, extra: &[&str]) -> Server {
        Server::start_with_token(db, tick, extra, ADMIN).await
    }

    async fn start_with_token(db: &Db, tick: &str, extra: &[&str], token: &str) -> Server {
        let port = free_port();
        let mut cmd = Command::new(bin());
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tick",
            tick,
        ]);
        match db {
            Db::Dir(d) => cmd.args(["--data-dir", d.dir().to_str().unwrap()]),
            Db::Url(u) => cmd.args(["--database-url", u]),
        };
        cmd.args(extra)
            .env("FLEETSCALE_ADMIN_TOKEN", token)
            .env("FLEETSCALE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("start fleetscale");
        let s = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = s.http.get(format!("{}/readyz", s.base)).send().await {
                if r.status().is_success() {
                    return s;
                }
            }
            assert!(Instant::now() < deadline, "server did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (s, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!(s == 200 || s == 201 || s == 202, "POST {path} -> {s}: {v}");
        v
    }

    async fn push(&self, pool: &str, value: f64) {
        self.post(
            "/api/v1/metrics",
            json!({"samples": [{"pool_id": pool, "metric": "throughput", "value": value}]}),
        )
        .await;
    }

    async fn desired(&self, pool: &str) -> i64 {
        self.get(&format!("/api/v1/pools/{pool}")).await["desired_capacity"]
            .as_i64()
            .unwrap()
    }

    fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn fresh_postgres() -> Db {
    Db::Url(fresh_pg_url().await)
}

fn temp_dir() -> Db {
    Db::Dir(Scratch::new("fs-bb"))
}

/// Creates a tenant, a region and the issue's pool; returns (tenant, pool).
async fn setup(s: &Server, max: i64, cooldown: i64) -> (String, String) {
    let t = s
        .post(
            "/api/v1/tenants",
            json!({"name": format!("bb-{}", fleetscale_store::now_ms())}),
        )
        .await;
    let tid = t["id"].as_str().unwrap().to_string();
    let (st, _) = s
        .call(reqwest::Method::GET, "/api/v1/regions/eu-west", None)
        .await;
    if st == 404 {
        s.post(
            "/api/v1/regions",
            json!({"name": "eu-west", "jurisdiction": "eu"}),
        )
        .await;
    }
    let p = s
        .post(
            "/api/v1/pools",
            json!({
                "tenant_id": tid, "region": "eu-west", "agent_type": "writer",
                "min_capacity": 1, "max_capacity": max, "desired_capacity": 1,
                "capacity_per_instance": 10, "metric": "throughput", "mode": "autonomous",
                "scaling_policy": {"scale_up_threshold": 80, "scale_down_threshold": 30,
                                   "cooldown_seconds": cooldown, "increment": 1, "window_seconds": 2}
            }),
        )
        .await;
    (tid, p["id"].as_str().unwrap().to_string())
}

/// Pushes `value` every 200 ms until `pool` has `want` instances or `limit` passes.
async fn push_until(s: &Server, pool: &str, value: f64, want: i64, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        s.push(pool, value).await;
        if s.desired(pool).await == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "pool did not reach {want} within {limit:?} (at {})",
            s.desired(pool).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn scales_and_survives_kill9(db: Db) {
    let tick = Duration::from_millis(500);
    let mut s = Server::start(&db, "500ms", &[]).await;
    let (_, pool) = setup(&s, 3, 3).await;
    // 9.5 on 1 × 10 is 95% > 80%: up by the increment within two ticks.
    let took = push_until(&s, &pool, 9.5, 2, Duration::from_secs(10)).await;
    assert!(
        took <= tick * 2 + Duration::from_secs(1),
        "scale-up took {took:?}"
    );
    let events = s
        .get(&format!("/api/v1/scaling-events?pool_id={pool}"))
        .await;
    let up = &events["items"][0];
    assert_eq!(
        (
            up["previous_capacity"].as_i64(),
            up["new_capacity"].as_i64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(up["trigger_source"], "autoscaler");
    assert!(
        up["reason"].as_str().unwrap().contains("exceeds threshold"),
        "{up}"
    );
    // Low load: down after the 3 s cooldown, never below min.
    push_until(&s, &pool, 1.0, 1, Duration::from_secs(15)).await;
    for _ in 0..10 {
        s.push(&pool, 0.0).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.desired(&pool).await, 1, "never below min");
    let events = s
        .get(&format!("/api/v1/scaling-events?pool_id={pool}"))
        .await;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{events}");
    let down = &items[0];
    assert_eq!(
        (
            down["previous_capacity"].as_i64(),
            down["new_capacity"].as_i64()
        ),
        (Some(2), Some(1))
    );
    let ts = |e: &Value| {
        fleetscale_server::http::parse_rfc3339_ms(e["created_at"].as_str().unwrap()).unwrap()
    };
    assert!(
        ts(down) - ts(up) >= 3000,
        "scale-down respected the cooldown"
    );
    // kill -9, restart on the same data: every pool and event as it was.
    let pools_before = s.get("/api/v1/pools").await;
    let events_before = s
        .get(&format!("/api/v1/scaling-events?pool_id={pool}"))
        .await;
    let audit_before = s.get("/api/v1/audit").await;
    s.kill9();
    let s2 = Server::start(&db, "500ms", &[]).await;
    assert_eq!(s2.get("/api/v1/pools").await, pools_before);
    assert_eq!(
        s2.get(&format!("/api/v1/scaling-events?pool_id={pool}"))
            .await,
        events_before
    );
    assert_eq!(s2.get("/api/v1/audit").await, audit_before);
}

#[tokio::test]
async fn sqlite_pool_scales_and_survives_kill9() {
    scales_and_survives_kill9(temp_dir()).await;
}

#[tokio::test]
async fn postgres_pool_scales_and_survives_kill9() {
    scales_and_survives_kill9(fresh_postgres().await).await;
}

#[derive(Default)]
struct Receiver {
    /// Idempotency key → deliveries received.
    seen: HashMap<String, u32>,
    bad_signatures: u32,
}

async fn start_receiver() -> (String, Arc<Mutex<Receiver>>) {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    let state = Arc::new(Mutex::new(Receiver::default()));
    let st = state.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let st = st.clone();
            async move {
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let sig = headers
                    .get("x-fleetscale-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let mut r = st.lock().unwrap();
                if sig != fleetscale_engine::actuator::sign(SECRET, &body) {
                    r.bad_signatures += 1;
                }
                *r.seen.entry(key).or_default() += 1;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), state)
}

/// Pushes overload until `pool` has grown by `n` instances.
async fn grow(s: &Server, pool: &str, n: i64) {
    let start = s.desired(pool).await;
    let started = Instant::now();
    while s.desired(pool).await < start + n {
        s.push(pool, 1000.0).await;
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pool stopped growing"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn engine(s: &Server) -> Value {
    s.get("/api/v1/engine").await
}

/// Events of `pool` whose actuation is still pending or failed.
async fn undelivered(s: &Server, pool: &str) -> usize {
    let evs = s
        .get(&format!("/api/v1/scaling-events?pool_id={pool}&limit=1000"))
        .await;
    evs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e["actuation"]["status"].as_str(),
                Some("pending" | "failed")
            )
        })
        .count()
}

#[tokio::test]
async fn two_replicas_one_leader_failover_and_no_duplicate_webhooks() {
    let db = fresh_postgres().await;
    let (hook, received) = start_receiver().await;
    let tick = Duration::from_secs(1);
    let args = [
        "--actuator",
        "webhook",
        "--webhook-url",
        &hook,
        "--webhook-secret",
        SECRET,
    ];
    let a = Server::start(&db, "1s", &args).await;
    let b = Server::start(&db, "1s", &args).await;
    // Exactly one leader.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (leader_is_a, _) = loop {
        let (ea, eb) = (engine(&a).await, engine(&b).await);
        let (la, lb) = (ea["leader"] == true, eb["leader"] == true);
        assert!(!(la && lb), "two leaders: {ea} {eb}");
        assert_eq!(
            ea["lease_holder"], eb["lease_holder"],
            "replicas disagree on the leader"
        );
        if la || lb {
            break (la, ea);
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (mut leader, follower) = if leader_is_a { (a, b) } else { (b, a) };
    let (_, pool) = setup(&follower, 20, 0).await;
    // Sustained overload: one scale-up per tick, each delivered by webhook.
    grow(&follower, &pool, 3).await;
    // Quiesce: no load (metrics go stale → hold), every event delivered.
    let started = Instant::now();
    while undelivered(&follower, &pool).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "events not delivered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    leader.kill9();
    let killed = Instant::now();
    loop {
        if engine(&follower).await["leader"] == true {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(15), "no failover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = killed.elapsed();
    assert!(
        took <= tick * 2 + Duration::from_millis(500),
        "failover took {took:?}, more than two ticks"
    );
    grow(&follower, &pool, 3).await;
    let started = Instant::now();
    while undelivered(&follower, &pool).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "events not delivered after failover"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let evs = follower
        .get(&format!("/api/v1/scaling-events?pool_id={pool}&limit=1000"))
        .await;
    let delivered: Vec<String> = evs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actuation"]["status"] == "delivered")
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert!(delivered.len() >= 6, "{evs}");
    let r = received.lock().unwrap();
    assert_eq!(r.bad_signatures, 0);
    for id in &delivered {
        assert_eq!(
            r.seen.get(id),
            Some(&1),
            "event {id} delivered {:?} times",
            r.seen.get(id)
        );
    }
    let dups: Vec<_> = r.seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicate deliveries: {dups:?}");
    assert_eq!(
        r.seen.len(),
        delivered.len(),
        "every delivery is a recorded event"
    );
}

/// Runs the CLI against `s`; returns (exit code, stdout, stderr).
fn cli(s: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env("FLEETSCALE_SERVER", &s.base)
        .env("FLEETSCALE_TOKEN", ADMIN)
        .output()
        .expect("run CLI");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn cli_json(s: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let (code, out, err) = cli(s, &all);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
}

#[tokio::test]
async fn cli_mirrors_the_seed_commands() {
    let db = temp_dir();
    let s = Server::start(&db, "1s", &[]).await;
    let t = cli_json(&s, &["tenants", "create", "acme"]);
    let tid = t["id"].as_str().unwrap().to_string();
    cli_json(
        &s,
        &["regions", "create", "eu-west", "--jurisdiction", "eu"],
    );
    let p = cli_json(
        &s,
        &[
            "pools",
            "create",
            "--tenant-id",
            &tid,
            "--region",
            "eu-west",
            "--agent-type",
            "writer",
            "--min",
            "1",
            "--max",
            "8",
            "--desired",
            "2",
            "--capacity-per-instance",
            "10",
            "--mode",
            "frozen",
        ],
    );
    let pid = p["id"].as_str().unwrap().to_string();
    assert_eq!(p["mode"], "frozen");
    let l = cli_json(&s, &["pools", "list", "--tenant-id", &tid]);
    assert_eq!(l["items"][0]["id"], pid.as_str());
    let scaled = cli_json(
        &s,
        &["scale", &pid, "--capacity", "5", "--reason", "Manual scale"],
    );
    assert_eq!(scaled["pool"]["desired_capacity"], 5);
    let ev = cli_json(&s, &["events", "--pool-id", &pid]);
    assert_eq!(
        (
            ev["items"][0]["new_capacity"].as_i64(),
            ev["items"][0]["trigger_source"].as_str()
        ),
        (Some(5), Some("manual"))
    );
    let r = cli_json(&s, &["rebalance", "--tenant-id", &tid]);
    assert_eq!(r["rebalanced"], 0);
    // Lists page with --limit, and the table's "more: --cursor C" hint is
    // a flag the command takes.
    cli_json(&s, &["tenants", "create", "beta"]);
    let (code, table, err) = cli(&s, &["tenants", "list", "--limit", "1"]);
    assert_eq!(code, 0, "{err}");
    let hint = table
        .lines()
        .find_map(|l| l.strip_prefix("more: "))
        .unwrap_or_else(|| panic!("no paging hint: {table}"))
        .to_string();
    let hint: Vec<&str> = hint.split_whitespace().collect();
    let mut next = vec!["tenants", "list", "--limit", "1"];
    next.extend(&hint);
    let second = cli_json(&s, &next);
    let first = cli_json(&s, &["tenants", "list", "--limit", "1"]);
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_ne!(first["items"][0]["id"], second["items"][0]["id"]);
    // Budget spend and refund from the CLI carry their reason to the ledger.
    cli_json(
        &s,
        &["budgets", "allocate", "eu-west", "--amount-cents", "1000"],
    );
    let spent = cli_json(
        &s,
        &[
            "budgets",
            "spend",
            "eu-west",
            "--amount-cents",
            "100",
            "--job-type",
            "creative",
            "--description",
            "render",
        ],
    );
    let spend_id = spent["transaction_id"].as_str().unwrap().to_string();
    cli_json(
        &s,
        &[
            "budgets",
            "refund",
            "eu-west",
            "--transaction-id",
            &spend_id,
            "--amount-cents",
            "40",
            "--description",
            "Operation cancelled",
        ],
    );
    let txs = cli_json(&s, &["budgets", "transactions", "eu-west", "--limit", "2"]);
    let described: Vec<(&str, &str)> = txs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["transaction_type"].as_str().unwrap(),
                t["description"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        described,
        [("refund", "Operation cancelled"), ("spend", "render")]
    );
    // Tokens: created (shown once), listed without the secret, revoked.
    let tok = cli_json(
        &s,
        &[
            "tokens",
            "create",
            "--tenant-id",
            &tid,
            "--role",
            "viewer",
            "--name",
            "dash",
        ],
    );
    let (tok_id, secret) = (
        tok["id"].as_str().unwrap().to_string(),
        tok["token"].as_str().unwrap().to_string(),
    );
    let listed = cli_json(&s, &["tokens", "list", "--tenant-id", &tid]);
    assert_eq!(listed["items"][0]["id"], tok_id.as_str());
    assert!(!listed.to_string().contains(&secret));
    let (code, out, err) = cli(&s, &["tokens", "revoke", &tok_id]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("revoked {tok_id}").as_str()),
        "{err}"
    );
    let (code, _, err) = cli(&s, &["tokens", "revoke", &tok_id]);
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
    let (code, table, _) = cli(&s, &["pools", "list", "--tenant-id", &tid]);
    assert_eq!(code, 0);
    assert!(
        table.contains("DESIRED_CAPACITY") && table.contains(&pid),
        "{table}"
    );
    // Combined policies from a file, shown, cleared.
    let scratch = Scratch::new("fs-policies");
    let f = scratch.path("policies.json");
    std::fs::write(
        &f,
        r#"{"policies": [{"type": "queue", "messages_per_instance": 50}]}"#,
    )
    .unwrap();
    let set = cli_json(
        &s,
        &["pools", "set-policies", &pid, "--file", f.to_str().unwrap()],
    );
    assert_eq!(set["policies"]["policies"][0]["type"], "queue");
    let shown = cli_json(&s, &["pools", "policies", &pid]);
    assert_eq!(shown["source"], "policies");
    let cleared = cli_json(&s, &["pools", "clear-policies", &pid]);
    assert!(cleared["policies"].is_null());
    // Bad input: the API's problem, named, and exit code 2.
    let (code, _, err) = cli(&s, &["scale", &pid, "--capacity=-3", "--reason", "x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("422") && err.contains("capacity"), "{err}");
    let (code, _, err) = cli(&s, &["pools", "get", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("404"), "{err}");
    // One object by id, for every kind the API lists.
    assert_eq!(cli_json(&s, &["tenants", "get", &tid])["name"], "acme");
    assert_eq!(
        cli_json(&s, &["regions", "get", "eu-west"])["jurisdiction"],
        "eu"
    );
    let event_id = ev["items"][0]["id"].as_str().unwrap().to_string();
    let (code, _, err) = cli(&s, &["events", &event_id, "--pool-id", &pid]);
    assert_ne!(
        code, 0,
        "an id with list filters is refused, not half-ignored"
    );
    assert!(err.contains("cannot be used with"), "{err}");
    assert_eq!(cli_json(&s, &["events", &event_id])["new_capacity"], 5);
    // Pool update, safety lock, delete: each changes the pool and is audited.
    let updated = cli_json(
        &s,
        &[
            "pools",
            "update",
            &pid,
            "--max",
            "12",
            "--mode",
            "recommend",
        ],
    );
    assert_eq!(
        (updated["max_capacity"].as_i64(), updated["mode"].as_str()),
        (Some(12), Some("recommend"))
    );
    let (code, _, err) = cli(&s, &["pools", "update", &pid]);
    assert_ne!(code, 0);
    assert!(err.contains("nothing to change"), "{err}");
    let targeted = cli_json(
        &s,
        &[
            "pools",
            "update",
            &pid,
            "--target-kind",
            "StatefulSet",
            "--target-namespace",
            "agents",
            "--target-name",
            "writer",
        ],
    );
    assert_eq!(
        targeted["target"],
        json!({"kind": "StatefulSet", "namespace": "agents", "name": "writer"})
    );
    let (code, out, err) = cli(&s, &["pools", "get", &pid]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("StatefulSet/agents/writer"), "{out}");
    let (code, _, err) = cli(
        &s,
        &["pools", "update", &pid, "--target-kind", "Deployment"],
    );
    assert_eq!(code, 2, "the three target flags go together: {err}");
    let cleared = cli_json(&s, &["pools", "update", &pid, "--clear-target"]);
    assert_eq!(cleared["target"], Value::Null);
    assert_eq!(cli_json(&s, &["pools", "lock", &pid])["safety_lock"], true);
    assert_eq!(
        cli_json(&s, &["pools", "unlock", &pid])["safety_lock"],
        false
    );
    let (code, out, err) = cli(&s, &["pools", "delete", &pid]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("deleted {pid}").as_str()),
        "{err}"
    );
    let (code, _, _) = cli(&s, &["pools", "get", &pid]);
    assert_eq!(code, 2);
    let audit = cli_json(&s, &["audit", "--tenant-id", &tid, "--limit", "5"]);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions[..4],
        ["pool.delete", "pool.unlock", "pool.lock", "pool.update"],
        "{actions:?}"
    );
    let engine = cli_json(&s, &["engine"]);
    assert!(
        engine["replica_id"]
            .as_str()
            .unwrap()
            .starts_with("replica-"),
        "{engine}"
    );
    let state = cli_json(&s, &["regions", "state", "eu-west"]);
    assert_eq!(state["region"], "eu-west", "{state}");
    assert!(
        ["normal", "cautious", "throttled", "frozen"]
            .contains(&state["scaling_mode"].as_str().unwrap()),
        "{state}"
    );
    assert!(state["pressure"]["overall"].is_number(), "{state}");
    let health = cli_json(
        &s,
        &[
            "regions",
            "health",
            "--include-risk",
            "--sort-by",
            "pressure",
        ],
    );
    assert!(
        health["regions"].as_array().is_some_and(|r| !r.is_empty()),
        "{health}"
    );
    assert!(health["global_risk"]["level"].is_string(), "{health}");
}

#[tokio::test]
async fn rotating_the_admin_token_retires_the_old_one() {
    let db = temp_dir();
    let mut old = Server::start_with_token(&db, "1s", &[], "old-admin-token").await;
    let ok = old
        .http
        .get(format!("{}/api/v1/tenants", old.base))
        .bearer_auth("old-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    old.kill9();
    let new = Server::start_with_token(&db, "1s", &[], "new-admin-token").await;
    let url = format!("{}/api/v1/tenants", new.base);
    let stale = new
        .http
        .get(&url)
        .bearer_auth("old-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        stale.status().as_u16(),
        401,
        "the rotated-out token must stop working"
    );
    let fresh = new
        .http
        .get(&url)
        .bearer_auth("new-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status().as_u16(), 200);
}

#[tokio::test]
async fn cli_routes_inspects_searches_and_replays_decisions() {
    let db = temp_dir();
    let s = Server::start(&db, "1s", &[]).await;
    let tid = cli_json(&s, &["tenants", "create", "router"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (name, j) in [("eu-west", "eu"), ("us-east", "us")] {
        cli_json(&s, &["regions", "create", name, "--jurisdiction", j]);
        cli_json(
            &s,
            &[
                "pools",
                "create",
                "--tenant-id",
                &tid,
                "--region",
                name,
                "--agent-type",
                "writer",
                "--min",
                "1",
                "--max",
                "5",
                "--desired",
                "2",
            ],
        );
    }
    // Policies: the defaults are shown as such; a file sets them.
    let rp = cli_json(&s, &["tenants", "region-policy", &tid]);
    assert_eq!(rp["source"], "default");
    let file = db_file(&db, "routing.json");
    std::fs::write(
        &file,
        r#"{"type": "failover", "order": ["us-east", "eu-west"]}"#,
    )
    .unwrap();
    let set = cli_json(
        &s,
        &[
            "tenants",
            "routing-policy",
            &tid,
            "--file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(
        (&set["source"], &set["policy"]["type"]),
        (&json!("tenant"), &json!("failover"))
    );
    let file = db_file(&db, "region.json");
    std::fs::write(
        &file,
        r#"{"restricted_workloads": {"us-east": ["medical"]}}"#,
    )
    .unwrap();
    cli_json(
        &s,
        &[
            "tenants",
            "region-policy",
            &tid,
            "--file",
            file.to_str().unwrap(),
        ],
    );

    let d = cli_json(
        &s,
        &[
            "route",
            "--tenant-id",
            &tid,
            "--workload-type",
            "medical",
            "--agent-type",
            "writer",
            "--preferred-region",
            "us-east",
            "--client-country",
            "DE",
        ],
    );
    assert_eq!(
        d["selected_region"], "eu-west",
        "never the restricted region: {d}"
    );
    let id = d["id"].as_str().unwrap().to_string();
    let got = cli_json(&s, &["routing", "inspect", &id]);
    assert_eq!(got["selected_region"], "eu-west");
    assert_eq!(got["input"]["routing_policy"]["type"], "failover");
    let r = cli_json(&s, &["routing", "replay", &id]);
    assert_eq!(
        (&r["selected_region"], &r["same"]),
        (&json!("eu-west"), &json!(true))
    );
    let found = cli_json(
        &s,
        &[
            "routing",
            "search",
            "--tenant-id",
            &tid,
            "--selected-region",
            "eu-west",
        ],
    );
    assert_eq!(found["items"][0]["id"], id.as_str());

    // Tables for people.
    let (code, table, err) = cli(
        &s,
        &[
            "route",
            "--tenant-id",
            &tid,
            "--workload-type",
            "chat",
            "--agent-type",
            "writer",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("us-east") && table.contains("reason: failover policy"),
        "{table}"
    );
    let (code, table, err) = cli(&s, &["routing", "replay", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("true"), "{table}");
    // A refused route is a 4xx: exit code 2, the code in the message.
    let (code, _, err) = cli(
        &s,
        &[
            "route",
            "--tenant-id",
            &tid,
            "--workload-type",
            "chat",
            "--agent-type",
            "painter",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no compliant region can take the work"),
        "{err}"
    );
}

/// A file named `name` in the server's data directory.
fn db_file(db: &Db, name: &str) -> std::path::PathBuf {
    match db {
        Db::Dir(d) => d.dir().join(name),
        Db::Url(_) => {
            std::env::temp_dir().join(format!("fs-bb-{}-{name}", fleetscale_store::now_ms()))
        }
    }
}

/// Issue 15: a decision made on one replica is readable and replayable on
/// another (PostgreSQL, two servers).
#[tokio::test]
async fn a_decision_made_on_one_replica_is_read_and_replayed_on_the_other() {
    let db = fresh_postgres().await;
    let a = Server::start(&db, "1s", &[]).await;
    let b = Server::start(&db, "1s", &[]).await;
    let (tid, _) = setup(&a, 5, 60).await;
    let d = a
        .post(
            "/api/v1/route",
            json!({"tenant_id": tid, "workload_type": "chat", "agent_type": "writer"}),
        )
        .await;
    assert_eq!(d["selected_region"], "eu-west", "{d}");
    let id = d["id"].as_str().unwrap();
    let got = cli_json(&b, &["routing", "inspect", id]);
    assert_eq!(got["candidates"], d["candidates"]);
    let r = cli_json(&b, &["routing", "replay", id]);
    assert_eq!(
        (&r["selected_region"], &r["same"]),
        (&json!("eu-west"), &json!(true))
    );
}

/// Waits until `s`'s routing view was loaded after `after_ms` (Unix ms, the
/// same host's clock): a reload that began after a write made elsewhere
/// holds it. Fails after `limit` (a guard, not a measurement).
async fn view_loaded_after(s: &Server, after_ms: i64, limit: Duration) {
    let started = Instant::now();
    loop {
        let e = s.get("/api/v1/engine").await;
        let loaded = e["routing_view"]["loaded_at"]
            .as_str()
            .and_then(fleetscale_server::http::parse_rfc3339_ms);
        if loaded.is_some_and(|l| l > after_ms) {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "the routing view was not reloaded within {limit:?}: {e}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 15, item 8: each replica routes from its own in-memory view. A
/// policy change made through replica A is routed on by replica B once B
/// reloaded its view (every tick), and a decision made on B is readable
/// and replayable on A; job routing reads the view the same way.
#[tokio::test]
async fn a_policy_changed_on_one_replica_is_routed_on_by_the_other_after_its_next_reload() {
    let db = fresh_postgres().await;
    let a = Server::start(&db, "1s", &[]).await;
    let b = Server::start(&db, "1s", &[]).await;
    let (tid, _) = setup(&a, 5, 60).await;
    a.post(
        "/api/v1/regions",
        json!({"name": "us-east", "jurisdiction": "us"}),
    )
    .await;
    a.post(
        "/api/v1/pools",
        json!({
            "tenant_id": tid, "region": "us-east", "agent_type": "writer",
            "min_capacity": 1, "max_capacity": 5, "desired_capacity": 1,
            "capacity_per_instance": 10, "metric": "throughput", "mode": "recommend",
            "scaling_policy": {"scale_up_threshold": 80, "scale_down_threshold": 30,
                               "cooldown_seconds": 60, "increment": 1}
        }),
    )
    .await;
    let route = json!({"tenant_id": tid, "workload_type": "chat", "agent_type": "writer"});
    let put = |s: &Server, path: String, body: Value| {
        let req = s
            .http
            .put(format!("{}{path}", s.base))
            .bearer_auth(ADMIN)
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status().as_u16(), 200, "PUT {path}");
        }
    };
    // B routes once (its view now holds the tenant) with failover eu-west first.
    put(
        &a,
        format!("/api/v1/tenants/{tid}/routing-policy"),
        json!({"type": "failover", "order": ["eu-west", "us-east"]}),
    )
    .await;
    let written = fleetscale_store::now_ms();
    view_loaded_after(&b, written, Duration::from_secs(30)).await;
    let d = b.post("/api/v1/route", route.clone()).await;
    assert_eq!(d["selected_region"], "eu-west", "{d}");
    // The policy changes through A; B routes on it after its next reload.
    put(
        &a,
        format!("/api/v1/tenants/{tid}/routing-policy"),
        json!({"type": "failover", "order": ["us-east", "eu-west"]}),
    )
    .await;
    let written = fleetscale_store::now_ms();
    view_loaded_after(&b, written, Duration::from_secs(30)).await;
    let d = b.post("/api/v1/route", route.clone()).await;
    assert_eq!(d["selected_region"], "us-east", "{d}");
    assert!(
        d["reason"].as_str().unwrap().starts_with("failover policy"),
        "{d}"
    );
    // A decision made on B reads and replays on A, with the same input.
    let id = d["id"].as_str().unwrap();
    let got = a.get(&format!("/api/v1/routing/{id}")).await;
    assert_eq!(got["candidates"], d["candidates"]);
    assert_eq!(got["input"]["routing_policy"]["order"][0], "us-east");
    let r = a
        .post(&format!("/api/v1/routing/{id}/replay"), json!({}))
        .await;
    assert_eq!(
        (&r["selected_region"], &r["same"]),
        (&json!("us-east"), &json!(true))
    );
    // Job routing: the home region set through A is where B sends the job
    // after its next reload.
    put(
        &a,
        format!("/api/v1/tenants/{tid}/region-policy"),
        json!({"home_region": "us-east"}),
    )
    .await;
    let written = fleetscale_store::now_ms();
    view_loaded_after(&b, written, Duration::from_secs(30)).await;
    let job = b
        .post(
            "/api/v1/jobs/route",
            json!({"tenant_id": tid, "job_type": "creative", "estimated_cost_cents": 0}),
        )
        .await;
    assert_eq!(
        (&job["region"], &job["fallback"]),
        (&json!("us-east"), &json!(false)),
        "{job}"
    );
    // And A, which made the write, routes on it at once.
    let job = a
        .post(
            "/api/v1/jobs/route",
            json!({"tenant_id": tid, "job_type": "creative", "estimated_cost_cents": 0}),
        )
        .await;
    assert_eq!(job["region"], "us-east", "{job}");
}

#[tokio::test]
async fn cli_routes_a_job_and_marks_it_done() {
    let db = temp_dir();
    let s = Server::start(&db, "1h", &[]).await;
    let tid = cli_json(&s, &["tenants", "create", "shards"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A pool in each region, so that a tick (if one runs) measures them
    // as idle (capacity score 100, normal) rather than as empty (frozen).
    for (name, j) in [("eu-west", "eu"), ("us-east", "us")] {
        cli_json(&s, &["regions", "create", name, "--jurisdiction", j]);
        cli_json(
            &s,
            &[
                "pools",
                "create",
                "--tenant-id",
                &tid,
                "--region",
                name,
                "--agent-type",
                "creative",
                "--min",
                "1",
                "--max",
                "5",
                "--desired",
                "2",
            ],
        );
    }
    let file = db_file(&db, "jobs-region.json");
    std::fs::write(
        &file,
        r#"{"home_region": "eu-west", "restricted_workloads": {"eu-west": ["intel"]}}"#,
    )
    .unwrap();
    cli_json(
        &s,
        &[
            "tenants",
            "region-policy",
            &tid,
            "--file",
            file.to_str().unwrap(),
        ],
    );
    let a = cli_json(
        &s,
        &[
            "jobs",
            "route",
            "--tenant-id",
            &tid,
            "--job-type",
            "creative",
            "--priority",
            "7",
            "--estimated-cost-cents",
            "40",
        ],
    );
    assert_eq!(
        (&a["region"], &a["fallback"], &a["priority"]),
        (&json!("eu-west"), &json!(false), &json!(7)),
        "{a}"
    );
    assert_eq!(a["shard_key"].as_str().unwrap().len(), 16);
    let again = cli_json(
        &s,
        &[
            "jobs",
            "route",
            "--tenant-id",
            &tid,
            "--job-type",
            "creative",
        ],
    );
    assert_eq!(again["shard_key"], a["shard_key"], "stable shard key");
    // The restricted job type falls back, never to its restricted region.
    let intel = cli_json(
        &s,
        &[
            "jobs",
            "route",
            "--tenant-id",
            &tid,
            "--job-type",
            "intel",
            "--region",
            "eu-west",
        ],
    );
    assert_eq!(
        (&intel["region"], &intel["fallback"]),
        (&json!("us-east"), &json!(true)),
        "{intel}"
    );
    let state = cli_json(&s, &["regions", "state", "eu-west"]);
    assert_eq!(state["jobs_in_queue"], 2, "{state}");
    // Tables for people; done once.
    let id = a["id"].as_str().unwrap();
    let (code, table, err) = cli(&s, &["jobs", "done", id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("done") && table.contains("eu-west"),
        "{table}"
    );
    let state = cli_json(&s, &["regions", "state", "eu-west"]);
    assert_eq!(state["jobs_in_queue"], 1, "{state}");
    let (code, _, err) = cli(&s, &["jobs", "done", id]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already done"), "{err}");
    // Bad input is a 4xx naming the field: exit code 2.
    let (code, _, err) = cli(
        &s,
        &[
            "jobs",
            "route",
            "--tenant-id",
            &tid,
            "--job-type",
            "creative",
            "--priority",
            "11",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("priority"), "{err}");
    let (code, table, err) = cli(
        &s,
        &[
            "jobs",
            "route",
            "--tenant-id",
            &tid,
            "--job-type",
            "posting",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("SHARD_KEY") && table.contains("reason: home region eu-west"),
        "{table}"
    );
}

#[test]
fn serve_refuses_a_kubernetes_actuator_without_a_usable_kubeconfig() {
    let run = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("HOME", std::env::temp_dir().join("fs-no-home"))
            .output()
            .expect("run serve");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--actuator",
        "kubernetes",
        "--kubeconfig",
        "/nonexistent/kubeconfig",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--kubeconfig /nonexistent/kubeconfig"),
        "{err}"
    );
    let (code, err) = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--actuator",
        "kubernetes",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("no Kubernetes config"), "{err}");
    let (code, err) = run(&["serve", "--listen", "127.0.0.1:0", "--kubeconfig", "/x"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--kubeconfig is for --actuator kubernetes"),
        "{err}"
    );
}
