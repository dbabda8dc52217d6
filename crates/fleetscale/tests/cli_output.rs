//! The CLI's tables, through the built binary against a real server:
//! `events` names each event's id, region and agent type; `capacity` says
//! overloaded / underused with units; `rebalance` takes `--agent-type` and
//! says why a run moves nothing; `serve` says a storage error's cause once.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Scratch;

const ADMIN: &str = "cli-output-admin-token";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleetscale")
}

/// A `serve` on a fresh data directory; killed when dropped.
struct Server {
    child: Child,
    base: String,
    _data: Scratch,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server (a tick of an hour: the control loop changes nothing
/// while the test runs) and waits until it is ready.
async fn start() -> Server {
    let data = Scratch::new("fs-cli-output");
    let port = support::free_port();
    let child = Command::new(bin())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tick",
            "1h",
            "--data-dir",
        ])
        .arg(data.dir())
        .env("FLEETSCALE_ADMIN_TOKEN", ADMIN)
        .env("FLEETSCALE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fleetscale");
    let s = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _data: data,
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{}/readyz", s.base)).send().await {
            if r.status().is_success() {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the CLI against `s`: its stdout, after checking it succeeded.
fn cli(s: &Server, args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .env("FLEETSCALE_SERVER", &s.base)
        .env("FLEETSCALE_TOKEN", ADMIN)
        .output()
        .expect("run CLI");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cli_json(s: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let out = cli(s, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
}

/// A frozen pool (nothing scales it but the test) of 2 instances of 10
/// units each, with a 10-minute window; its id.
fn pool(s: &Server, tenant: &str, region: &str, agent_type: &str) -> String {
    let p = cli_json(
        s,
        &[
            "pools",
            "create",
            "--tenant-id",
            tenant,
            "--region",
            region,
            "--agent-type",
            agent_type,
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
            "--window-seconds",
            "600",
        ],
    );
    p["id"].as_str().unwrap().to_string()
}

/// Two tenants: `busy` with writers in two regions (one overloaded, one
/// underused) and a reviewer in one; `quiet` with writers in two regions
/// and no metrics.
async fn seeded() -> (Server, String, String, [String; 3]) {
    let s = start().await;
    let busy = cli_json(&s, &["tenants", "create", "busy"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let quiet = cli_json(&s, &["tenants", "create", "quiet"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (r, j) in [("eu-west", "eu"), ("us-east", "us")] {
        cli_json(&s, &["regions", "create", r, "--jurisdiction", j]);
    }
    let hot = pool(&s, &busy, "eu-west", "writer");
    let cold = pool(&s, &busy, "us-east", "writer");
    let reviewer = pool(&s, &busy, "eu-west", "reviewer");
    pool(&s, &quiet, "eu-west", "writer");
    pool(&s, &quiet, "us-east", "writer");
    // 18 of 20 units (90%) and 2 of 20 (10%).
    cli(&s, &["metrics", "push", "--pool-id", &hot, "--value", "18"]);
    cli(&s, &["metrics", "push", "--pool-id", &cold, "--value", "2"]);
    (s, busy, quiet, [hot, cold, reviewer])
}

#[tokio::test]
async fn events_capacity_and_rebalance_tables_say_what_they_mean() {
    let (s, busy, quiet, [hot, _cold, _reviewer]) = seeded().await;

    // events: the id (to pass to `events ID`), region and agent type.
    cli(
        &s,
        &["scale", &hot, "--capacity", "3", "--reason", "by hand"],
    );
    let ev = cli_json(&s, &["events", "--pool-id", &hot]);
    let id = ev["items"][0]["id"].as_str().unwrap().to_string();
    let table = cli(&s, &["events", "--pool-id", &hot]);
    for want in [
        "ID",
        "REGION",
        "AGENT_TYPE",
        id.as_str(),
        "eu-west",
        "writer",
    ] {
        assert!(
            table.contains(want),
            "events table lacks {want:?}:\n{table}"
        );
    }
    let one = cli(&s, &["events", &id]);
    assert!(one.contains("eu-west") && one.contains("writer"), "{one}");
    cli(&s, &["scale", &hot, "--capacity", "2", "--reason", "back"]);

    // capacity: statuses in words, with the figure and the threshold.
    let table = cli(&s, &["capacity", "--tenant-id", &busy]);
    for want in [
        "overloaded (90.0% > 80%)",
        "underused (10.0% < 30%)",
        "unknown (no recent metrics)",
        "2 (min 1, max 8)",
        "1.8 instances",
        "within 30–80% utilization",
    ] {
        assert!(
            table.contains(want),
            "capacity table lacks {want:?}:\n{table}"
        );
    }
    let table = cli(&s, &["capacity", "--tenant-id", &busy, "--over-pct", "95"]);
    assert!(table.contains("ok (30–95%)"), "{table}");

    // rebalance --agent-type: only that type's pools are planned.
    let all = cli_json(&s, &["rebalance", "--tenant-id", &busy, "--dry-run"]);
    assert_eq!(all["moves"].as_array().unwrap().len(), 2, "{all}");
    let writers = cli_json(
        &s,
        &[
            "rebalance",
            "--tenant-id",
            &busy,
            "--agent-type",
            "writer",
            "--dry-run",
        ],
    );
    assert_eq!(writers["moves"], all["moves"]);
    let reviewers = cli_json(
        &s,
        &[
            "rebalance",
            "--tenant-id",
            &busy,
            "--agent-type",
            "reviewer",
            "--dry-run",
        ],
    );
    assert_eq!(
        reviewers["moves"].as_array().unwrap().len(),
        0,
        "{reviewers}"
    );
    let table = cli(
        &s,
        &[
            "rebalance",
            "--tenant-id",
            &busy,
            "--agent-type",
            "writer",
            "--dry-run",
        ],
    );
    assert!(
        table.contains("2 move(s) planned, nothing changed")
            && table.contains("eu-west/writer: 2 → 3"),
        "{table}"
    );

    // A proportional dry run that finds nothing to move says why.
    let table = cli(
        &s,
        &[
            "rebalance",
            "--tenant-id",
            &busy,
            "--agent-type",
            "reviewer",
            "--dry-run",
        ],
    );
    assert!(
        table.contains("reviewer: one pool only (in eu-west)"),
        "{table}"
    );
    let table = cli(&s, &["rebalance", "--tenant-id", &quiet, "--dry-run"]);
    assert!(
        table.contains("writer: demand is measured in 0 of 2 regions")
            && table.contains("--strategy even"),
        "{table}"
    );
    let table = cli(
        &s,
        &[
            "rebalance",
            "--tenant-id",
            &quiet,
            "--agent-type",
            "editor",
            "--dry-run",
        ],
    );
    assert!(table.contains("no pools of agent type editor"), "{table}");
    let table = cli(
        &s,
        &[
            "rebalance",
            "--tenant-id",
            &quiet,
            "--strategy",
            "even",
            "--dry-run",
        ],
    );
    assert!(
        table.contains("within 1 instance of the mean (2.0 instances"),
        "{table}"
    );
}

#[test]
fn a_storage_error_names_its_cause_once() {
    let data = Scratch::new("fs-cli-storage");
    // The database file is a folder: SQLite cannot open it.
    std::fs::create_dir(data.path("fleetscale.db")).unwrap();
    let out = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.dir())
        .env("FLEETSCALE_ADMIN_TOKEN", ADMIN)
        .env("FLEETSCALE_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(first.starts_with("error: storage: "), "{err}");
    let parts: Vec<&str> = first["error: ".len()..].split(": ").collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(p), "{p:?} said twice: {first}");
    }
}
