//! `fleetscale apply` / `export` through the built binary against a real
//! server: export → apply is a no-op (same export, byte for byte, and no
//! audit record); a changed file's dry run lists exactly its changes and
//! changes nothing; applying it (with `--prune`) makes a fresh export equal
//! the file; a bad file names the YAML path and line, exits 2 and changes
//! nothing; a write the server refuses stops the apply and says what was
//! and was not applied.

mod support;

use std::process::{Command, Output};

use serde_json::{json, Value};
use support::{free_port, fresh_sqlite, Replica, Scratch, TempSqlite, TOKEN};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleetscale")
}

/// A `serve` (the shared harness's [`Replica`], with a tick of an hour:
/// the control loop changes nothing while the test runs) on a fresh SQLite
/// database, and a scratch directory for the fleet files.
struct Server {
    _replica: Replica,
    base: String,
    data: Scratch,
    _db: TempSqlite,
}

/// Starts a server and waits until it is ready.
async fn start() -> Server {
    let db = fresh_sqlite();
    let replica = Replica::start_with(bin(), &db.url, free_port(), &["--tick", "1h"]).await;
    Server {
        base: replica.url(),
        _replica: replica,
        data: Scratch::new("fs-config-as-code"),
        _db: db,
    }
}

/// Runs the CLI against `s` with `token`.
fn run(s: &Server, token: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("FLEETSCALE_SERVER", &s.base)
        .env("FLEETSCALE_TOKEN", token)
        .output()
        .expect("run CLI")
}

/// Runs the CLI as admin: its stdout, after checking it succeeded.
fn cli(s: &Server, args: &[&str]) -> String {
    let out = run(s, TOKEN, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `apply -f <yaml>` (plus `extra`) as `token`: the process output.
fn apply(s: &Server, token: &str, name: &str, yaml: &str, extra: &[&str]) -> Output {
    let path = s.data.path(name);
    std::fs::write(&path, yaml).unwrap();
    let path = path.display().to_string();
    let mut args = vec!["apply", "-f", path.as_str()];
    args.extend(extra);
    run(s, token, &args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn send(http: &reqwest::Client, method: reqwest::Method, url: String, body: Value) -> Value {
    let r = http
        .request(method, &url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

/// How many audit records the server holds.
async fn audit_count(s: &Server) -> usize {
    let http = reqwest::Client::new();
    let v = support::get(&http, &format!("{}/api/v1/audit?limit=1000", s.base)).await;
    v["items"].as_array().map_or(0, Vec::len)
}

/// Two regions and two tenants, made through the API (not by `apply`):
/// `acme` with a threshold-policy writer pool and a default-policies reader
/// pool, region and routing policies, a tier and a provider budget;
/// `globex` with one pool.
async fn seed(s: &Server) {
    use reqwest::Method;
    let http = reqwest::Client::new();
    let api = |p: &str| format!("{}/api/v1{p}", s.base);
    send(
        &http,
        Method::POST,
        api("/regions"),
        json!({"name": "eu-west", "jurisdiction": "eu", "monthly_budget_cents": 50000}),
    )
    .await;
    send(
        &http,
        Method::POST,
        api("/regions"),
        json!({"name": "us-east", "jurisdiction": "us"}),
    )
    .await;
    let acme = send(
        &http,
        Method::POST,
        api("/tenants"),
        json!({"name": "acme"}),
    )
    .await;
    let acme = acme["id"].as_str().unwrap().to_string();
    let globex = send(
        &http,
        Method::POST,
        api("/tenants"),
        json!({"name": "globex"}),
    )
    .await;
    let globex = globex["id"].as_str().unwrap().to_string();
    send(&http, Method::POST, api("/pools"), json!({"tenant_id": acme, "region": "eu-west", "agent_type": "writer", "min_capacity": 1, "max_capacity": 8, "desired_capacity": 2, "capacity_per_instance": 10, "mode": "frozen", "job_kind": "creative", "scaling_policy": {"window_seconds": 600}, "metric_source": {"type": "prometheus", "url": "http://127.0.0.1:9/", "query": "sum(rate(agent_runs_total[1m]))"}, "target": {"kind": "Deployment", "namespace": "agents", "name": "writer"}})).await;
    send(&http, Method::POST, api("/pools"), json!({"tenant_id": acme, "region": "us-east", "agent_type": "reader", "min_capacity": 0, "max_capacity": 4})).await;
    send(
        &http,
        Method::POST,
        api("/pools"),
        json!({"tenant_id": globex, "region": "us-east", "agent_type": "intel", "max_capacity": 3}),
    )
    .await;
    send(
        &http,
        Method::PUT,
        api(&format!("/tenants/{acme}/region-policy")),
        json!({"allowed_jurisdictions": ["eu", "us"], "home_region": "eu-west"}),
    )
    .await;
    send(
        &http,
        Method::PUT,
        api(&format!("/tenants/{acme}/routing-policy")),
        json!({"type": "failover", "order": ["eu-west", "us-east"]}),
    )
    .await;
    send(
        &http,
        Method::PUT,
        api(&format!("/budgets/tenants/{acme}")),
        json!({"tier": "growth"}),
    )
    .await;
    send(
        &http,
        Method::PUT,
        api(&format!("/budgets/tenants/{acme}/providers/claude")),
        json!({"allocation_units": 5_000_000, "price_cents_per_million": 300, "hard_limit": true}),
    )
    .await;
}

fn yaml_to_json(yaml: &str) -> Value {
    serde_norway::from_str(yaml).expect("valid YAML")
}

fn json_to_yaml(v: &Value) -> String {
    serde_norway::to_string(v).unwrap()
}

/// The 1-based line of the first line of `yaml` containing `needle`.
fn line_with(yaml: &str, needle: &str) -> usize {
    yaml.lines().position(|l| l.contains(needle)).expect(needle) + 1
}

/// The plan lines that change something (`+`, `~`, `-` and their field lines).
fn changes(plan: &str) -> Vec<String> {
    plan.lines()
        .filter(|l| {
            !l.starts_with("= ")
                && !l.starts_with("Plan:")
                && !l.starts_with("Dry run")
                && !l.starts_with("Applied")
                && !l.starts_with("Nothing")
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn export_then_apply_round_trips_and_a_changed_file_applies_exactly_its_plan() {
    let s = start().await;
    seed(&s).await;
    let exported = cli(&s, &["export"]);
    assert!(
        exported.starts_with("apiVersion: fleetscale/v1\n"),
        "{exported}"
    );
    for needle in [
        "name: acme",
        "home_region: eu-west",
        "type: failover",
        "tier: growth",
        "claude:",
        "job_kind: creative",
        "window_seconds: 600",
        "monthly_budget_cents: 50000",
        "policies:",
    ] {
        assert!(exported.contains(needle), "{needle} missing in\n{exported}");
    }

    // Export → apply is a no-op: nothing written, nothing audited.
    let audited = audit_count(&s).await;
    let out = apply(&s, TOKEN, "exported.yaml", &exported, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    assert!(changes(&plan).is_empty(), "{plan}");
    assert!(plan.contains("Nothing to change."), "{plan}");
    assert!(
        plan.contains("= unchanged pool acme/eu-west/writer"),
        "{plan}"
    );
    assert_eq!(cli(&s, &["export"]), exported);
    assert_eq!(audit_count(&s).await, audited);

    // Edit: a pool's max, a new pool, a pool left out.
    let mut doc = yaml_to_json(&exported);
    let acme = &mut doc["tenants"][0];
    assert_eq!(acme["name"], "acme");
    let pools = acme["pools"].as_array_mut().unwrap();
    assert_eq!(pools[0]["agent_type"], "writer");
    pools[0]["max_capacity"] = json!(20);
    pools.remove(1);
    pools.push(json!({
        "region": "us-east", "agent_type": "intel", "min_capacity": 1, "max_capacity": 3,
        "capacity_per_instance": 1.0, "metric": "throughput", "mode": "recommend",
        "scaling_policy": {"scale_up_threshold": 80.0, "scale_down_threshold": 30.0,
            "cooldown_seconds": 300, "increment": 1, "window_seconds": 300}
    }));
    let edited = json_to_yaml(&doc);

    let out = apply(&s, TOKEN, "edited.yaml", &edited, &["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        changes(&stdout(&out)),
        [
            "~ update pool acme/eu-west/writer",
            "    max_capacity: 8 -> 20",
            "+ create pool acme/us-east/intel",
            "- would delete pool acme/us-east/reader (with --prune)",
        ],
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("Dry run: nothing was changed."));
    let out = apply(&s, TOKEN, "edited.yaml", &edited, &["--dry-run", "--prune"]);
    assert!(
        stdout(&out).contains("- delete pool acme/us-east/reader\n"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        cli(&s, &["export"]),
        exported,
        "a dry run changed something"
    );
    assert_eq!(audit_count(&s).await, audited);

    let out = apply(&s, TOKEN, "edited.yaml", &edited, &["--prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Applied: 3 change(s)."),
        "{}",
        stdout(&out)
    );
    let after = cli(&s, &["export"]);
    assert_eq!(
        yaml_to_json(&after),
        doc,
        "the export differs from the applied file:\n{after}"
    );
    // Applying it again changes nothing.
    let out = apply(&s, TOKEN, "edited.yaml", &edited, &["--prune"]);
    assert!(
        stdout(&out).contains("Nothing to change."),
        "{}",
        stdout(&out)
    );

    // Bad files: path and line, exit 2, nothing changed.
    let audited = audit_count(&s).await;
    let cases: Vec<(Value, &str, &str, &str)> = vec![
        {
            let mut d = doc.clone();
            d["tenants"][0]["pools"][0]["max_capacityy"] = json!(20);
            (
                d,
                "max_capacityy",
                "tenants[0].pools[0].max_capacityy",
                "unknown field",
            )
        },
        {
            let mut d = doc.clone();
            d["tenants"][0]["pools"][0]["min_capacity"] = json!(30);
            d["tenants"][1]["name"] = json!("initech");
            (
                d,
                "min_capacity: 30",
                "tenants[0].pools[0].min_capacity",
                "must be <= max_capacity",
            )
        },
        {
            let mut d = doc.clone();
            d["tenants"][0]["pools"][1]["region"] = json!("mars-1");
            (
                d,
                "region: mars-1",
                "tenants[0].pools[1].region",
                "neither in the file nor on the server",
            )
        },
        {
            let mut d = doc.clone();
            d["regions"][0]["jurisdiction"] = json!("moon");
            (
                d,
                "jurisdiction: moon",
                "regions[0].jurisdiction",
                "cannot change a region's jurisdiction",
            )
        },
        {
            let mut d = doc.clone();
            d["tenants"][0]["budget"]["tier"] = json!("platinum");
            (
                d,
                "tier: platinum",
                "tenants[0].budget.tier",
                "must be soft_launch, hard_launch or growth",
            )
        },
    ];
    for (bad, needle, path, rule) in cases {
        let yaml = json_to_yaml(&bad);
        let out = apply(&s, TOKEN, "bad.yaml", &yaml, &[]);
        assert_eq!(out.status.code(), Some(2), "{needle}: {}", stderr(&out));
        let err = stderr(&out);
        let want = format!("bad.yaml: {path} (line {}): ", line_with(&yaml, needle));
        assert!(err.contains(&want), "wanted {want:?} in:\n{err}\n{yaml}");
        assert!(err.contains(rule), "wanted {rule:?} in:\n{err}");
        assert!(err.contains("nothing was changed"), "{err}");
        assert!(
            stdout(&out).is_empty(),
            "a bad file printed a plan: {}",
            stdout(&out)
        );
    }
    assert_eq!(cli(&s, &["export"]), after);
    assert_eq!(audit_count(&s).await, audited);
}

#[tokio::test]
async fn a_write_the_server_refuses_stops_the_apply_and_says_what_was_not_applied() {
    let s = start().await;
    seed(&s).await;
    let exported = cli(&s, &["export"]);
    let http = reqwest::Client::new();
    let tenants = support::get(&http, &format!("{}/api/v1/tenants", s.base)).await;
    let acme = tenants["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "acme")
        .unwrap()["id"]
        .clone();
    let token = send(
        &http,
        reqwest::Method::POST,
        format!("{}/api/v1/tokens", s.base),
        json!({"tenant_id": acme, "role": "operator", "name": "ops"}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    // An operator may set routing policies but not change pools.
    let mut doc = yaml_to_json(&cli(&s, &["export", "--tenant", "acme"]));
    doc["tenants"][0]["routing_policy"] =
        json!({"type": "failover", "order": ["us-east", "eu-west"]});
    doc["tenants"][0]["pools"][0]["max_capacity"] = json!(9);
    let out = apply(&s, &token, "ops.yaml", &json_to_yaml(&doc), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("applied 1 of 2 change(s):\n  ~ update routing-policy acme"),
        "{err}"
    );
    assert!(
        err.contains("not applied:\n  ~ update pool acme/eu-west/writer"),
        "{err}"
    );
    assert!(
        err.contains("apply stopped at update pool acme/eu-west/writer"),
        "{err}"
    );
    let now = yaml_to_json(&cli(&s, &["export"]));
    let before = yaml_to_json(&exported);
    assert_eq!(now["tenants"][0]["pools"], before["tenants"][0]["pools"]);
    assert_eq!(
        now["tenants"][0]["routing_policy"]["order"],
        json!(["us-east", "eu-west"])
    );
}
