//! The job routing API without a socket: `POST /jobs/route` (home region,
//! requested region, fallback past a throttled, frozen, out-of-budget or
//! restricted region, each refusal code), the stable shard key, the
//! region's `jobs_in_queue` rising with a route and falling with
//! `POST /jobs/{id}/done`, tenant isolation and bad input naming its field.

mod support;

use serde_json::{json, Value};

use fleetscale_core::region::mode::ScalingMode;
use fleetscale_core::region::state::JobType;

use support::{fields, pool_body, set_state, App, ADMIN};

const ROUTE: &str = "/api/v1/jobs/route";

/// Regions `eu-central` (eu), `eu-west` (eu) and `us-east` (us), each with
/// a monthly budget of 100000 cents, and a tenant whose home region is
/// `eu-west`. No tick has run: every region is unmeasured (normal,
/// pressure 0, capacity 100). Returns the tenant id.
async fn world(app: &App, name: &str) -> String {
    for (r, j) in [("eu-central", "eu"), ("eu-west", "eu"), ("us-east", "us")] {
        let (s, _, _) = app
            .call("GET", &format!("/api/v1/regions/{r}"), Some(ADMIN), None)
            .await;
        if s.as_u16() == 404 {
            app.admin(
                "POST",
                "/api/v1/regions",
                json!({"name": r, "jurisdiction": j, "monthly_budget_cents": 100000}),
            )
            .await;
        }
    }
    let tid = app.tenant(name).await;
    policy(app, &tid, json!({"home_region": "eu-west"})).await;
    tid
}

async fn policy(app: &App, tid: &str, p: Value) {
    app.admin("PUT", &format!("/api/v1/tenants/{tid}/region-policy"), p)
        .await;
}

fn job(tid: &str, job_type: &str) -> Value {
    json!({"tenant_id": tid, "job_type": job_type})
}

/// Routed jobs still queued, over every region.
async fn queued(app: &App) -> u64 {
    let q = app
        .state
        .engine
        .store
        .queued_routed_jobs_by_region()
        .await
        .unwrap();
    q.values().sum()
}

async fn jobs_in_queue(app: &App, region: &str) -> u64 {
    app.admin(
        "GET",
        &format!("/api/v1/regions/{region}/state"),
        Value::Null,
    )
    .await["jobs_in_queue"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn the_home_region_takes_the_job_with_a_stable_shard_key() {
    let app = App::new().await;
    let tid = world(&app, "acme").await;
    let op = app.token(&tid, "operator").await;
    let a = app
        .expect("POST", ROUTE, &op, job(&tid, "creative"), 200)
        .await;
    assert_eq!(a["region"], "eu-west", "{a}");
    assert_eq!(a["fallback"], false);
    assert_eq!((&a["mode"], &a["delay_ms"]), (&json!("normal"), &json!(0)));
    assert_eq!(a["priority"], 5, "default priority, no pressure");
    assert_eq!(a["estimated_wait_ms"], 0, "empty queue");
    assert_eq!(a["estimated_cost_cents"], 100, "default cost");
    assert!(a["id"].as_str().unwrap().len() >= 32, "{a}");
    let key = a["shard_key"].as_str().unwrap().to_string();
    assert_eq!(
        key,
        fleetscale_core::region::jobs::shard_key(&tid, JobType::Creative, "eu-west")
    );
    assert!(a["reason"]
        .as_str()
        .unwrap()
        .contains("home region eu-west"));

    // Same tenant, job type and region: same shard key; the queue now holds
    // the first job: 1 job at the minimum throughput of 1 per minute.
    let mut body = job(&tid, "creative");
    body["priority"] = json!(9);
    body["estimated_cost_cents"] = json!(0);
    let b = app.expect("POST", ROUTE, &op, body, 200).await;
    assert_eq!(
        (&b["region"], &b["shard_key"]),
        (&a["region"], &a["shard_key"])
    );
    assert_eq!(b["priority"], 9);
    assert_eq!(b["estimated_wait_ms"], 60_000, "{b}");
    assert_ne!(b["id"], a["id"]);
    // Another job type or another region: another key.
    let c = app
        .expect("POST", ROUTE, &op, job(&tid, "intel"), 200)
        .await;
    assert_ne!(c["shard_key"], a["shard_key"]);
    // The requested region beats the home region.
    let mut body = job(&tid, "creative");
    body["region"] = json!("us-east");
    let d = app.expect("POST", ROUTE, &op, body, 200).await;
    assert_eq!(
        (&d["region"], &d["fallback"]),
        (&json!("us-east"), &json!(false))
    );
    assert_ne!(d["shard_key"], a["shard_key"]);
    // Without a home region: the best region for the kind, not a fallback.
    policy(&app, &tid, json!({})).await;
    let e = app
        .expect("POST", ROUTE, &op, job(&tid, "creative"), 200)
        .await;
    assert_eq!(
        (&e["region"], &e["fallback"]),
        (&json!("eu-central"), &json!(false)),
        "all unmeasured: by name"
    );
    assert_eq!(queued(&app).await, 5);
}

#[tokio::test]
async fn a_throttled_region_takes_small_jobs_and_a_big_one_falls_back() {
    let app = App::new().await;
    let tid = world(&app, "acme").await;
    set_state(&app, "eu-west", ScalingMode::Throttled, 80.0, 40.0).await;
    set_state(&app, "eu-central", ScalingMode::Normal, 30.0, 70.0).await;
    set_state(&app, "us-east", ScalingMode::Normal, 10.0, 90.0).await;
    let big = app
        .expect("POST", ROUTE, ADMIN, job(&tid, "creative"), 200)
        .await;
    assert_eq!(
        (&big["region"], &big["fallback"], &big["mode"]),
        (&json!("us-east"), &json!(true), &json!("normal")),
        "lowest creative pressure among the others: {big}"
    );
    assert!(big["reason"]
        .as_str()
        .unwrap()
        .contains("home region eu-west cannot take the job"));
    let mut small = job(&tid, "creative");
    small["estimated_cost_cents"] = json!(50);
    let s = app.expect("POST", ROUTE, ADMIN, small, 200).await;
    assert_eq!(
        (&s["region"], &s["fallback"], &s["mode"]),
        (&json!("eu-west"), &json!(false), &json!("throttled")),
        "{s}"
    );
    // Throttled: twice the cautious delay at pressure 80; priority 5 − 2.
    assert_eq!(s["delay_ms"], 2 * (1_000 + 50 * 80));
    assert_eq!(s["priority"], 3);
    assert_eq!(s["estimated_wait_ms"], 10_000, "delay, empty queue");
    // Compliance still comes first: eu only, and eu-central is throttled too.
    policy(
        &app,
        &tid,
        json!({"allowed_jurisdictions": ["eu"], "home_region": "eu-west"}),
    )
    .await;
    set_state(&app, "eu-central", ScalingMode::Throttled, 80.0, 40.0).await;
    let p = app
        .expect("POST", ROUTE, ADMIN, job(&tid, "creative"), 409)
        .await;
    assert_eq!(p["code"], "no_available_region", "{p}");
    assert_eq!(queued(&app).await, 2, "nothing recorded for the refusal");
}

#[tokio::test]
async fn a_frozen_region_is_never_given_a_job() {
    let app = App::new().await;
    let tid = world(&app, "acme").await;
    // Real load through pools and a tick: eu-west's posting pool carries 19
    // of 2 × 10 (pressure 95: frozen), eu-central's 2 of 20 (normal);
    // us-east has no pool (capacity score 0: frozen).
    let hot = app
        .admin("POST", "/api/v1/pools", pool_body(&tid, "posting"))
        .await;
    let mut cool = pool_body(&tid, "posting");
    cool["region"] = json!("eu-central");
    let cool = app.admin("POST", "/api/v1/pools", cool).await;
    app.admin(
        "POST",
        "/api/v1/metrics",
        json!({"samples": [
            {"pool_id": hot["id"], "metric": "throughput", "value": 19},
            {"pool_id": cool["id"], "metric": "throughput", "value": 2}
        ]}),
    )
    .await;
    app.tick().await;
    let st = app
        .admin("GET", "/api/v1/regions/eu-west/state", Value::Null)
        .await;
    assert_eq!(st["scaling_mode"], "frozen", "{st}");
    let mut small = job(&tid, "posting");
    small["estimated_cost_cents"] = json!(1);
    small["region"] = json!("eu-west");
    for _ in 0..3 {
        let a = app.expect("POST", ROUTE, ADMIN, small.clone(), 200).await;
        assert_eq!(
            (&a["region"], &a["fallback"]),
            (&json!("eu-central"), &json!(true)),
            "{a}"
        );
    }
    policy(
        &app,
        &tid,
        json!({"restricted_workloads": {"eu-central": ["posting"]}}),
    )
    .await;
    let p = app.expect("POST", ROUTE, ADMIN, small, 409).await;
    assert_eq!(p["code"], "no_available_region", "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("eu-west (frozen)"),
        "{p}"
    );
    assert_eq!(queued(&app).await, 3);
}

#[tokio::test]
async fn a_restricted_job_type_never_lands_in_its_restricted_region() {
    let app = App::new().await;
    let tid = world(&app, "acme").await;
    policy(
        &app,
        &tid,
        json!({"restricted_workloads": {"eu-west": ["intel"]}, "home_region": "eu-west"}),
    )
    .await;
    // eu-west would otherwise be the best region by far.
    set_state(&app, "eu-west", ScalingMode::Normal, 0.0, 100.0).await;
    set_state(&app, "eu-central", ScalingMode::Cautious, 65.0, 45.0).await;
    set_state(&app, "us-east", ScalingMode::Cautious, 70.0, 40.0).await;
    let mut body = job(&tid, "intel");
    body["region"] = json!("eu-west");
    for _ in 0..3 {
        let a = app.expect("POST", ROUTE, ADMIN, body.clone(), 200).await;
        assert_eq!(
            (&a["region"], &a["fallback"], &a["mode"]),
            (&json!("eu-central"), &json!(true), &json!("cautious")),
            "{a}"
        );
        assert_eq!(a["delay_ms"], 1_000 + 50 * 65);
        assert_eq!(a["priority"], 4, "intel pressure 65: − 1");
    }
    let other = app
        .expect("POST", ROUTE, ADMIN, job(&tid, "posting"), 200)
        .await;
    assert_eq!(other["region"], "eu-west", "other job types may");
    // With every other region out of the jurisdiction, the job is refused,
    // never placed in its restricted region.
    policy(
        &app,
        &tid,
        json!({"allowed_jurisdictions": ["eu"], "restricted_workloads": {"eu-west": ["intel"], "eu-central": ["intel"]}}),
    )
    .await;
    let p = app.expect("POST", ROUTE, ADMIN, body, 409).await;
    assert_eq!(p["code"], "no_compliant_region", "{p}");
    assert_eq!(queued(&app).await, 4);
}

#[tokio::test]
async fn a_job_no_budget_covers_is_409_insufficient_budget_and_charges_nothing() {
    let app = App::new().await;
    let tid = world(&app, "acme").await;
    let mut body = job(&tid, "orchestration");
    body["estimated_cost_cents"] = json!(100_001);
    let p = app.expect("POST", ROUTE, ADMIN, body.clone(), 409).await;
    assert_eq!(p["code"], "insufficient_budget", "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("eu-west: 100000 cents remaining"),
        "{p}"
    );
    assert_eq!(queued(&app).await, 0, "nothing recorded");
    let b = app
        .admin("GET", "/api/v1/regions/eu-west/budget", Value::Null)
        .await;
    assert_eq!(b["remaining_cents"], 100000, "nothing charged: {b}");
    // A home region whose budget cannot cover the job is passed over.
    app.admin(
        "POST",
        "/api/v1/regions/eu-west/budget/spend",
        json!({"amount_cents": 99_950, "job_type": "orchestration"}),
    )
    .await;
    let a = app
        .expect("POST", ROUTE, ADMIN, job(&tid, "orchestration"), 200)
        .await;
    assert_eq!(
        (&a["region"], &a["fallback"]),
        (&json!("eu-central"), &json!(true)),
        "{a}"
    );
    let mut cheap = job(&tid, "orchestration");
    cheap["estimated_cost_cents"] = json!(50);
    let c = app.expect("POST", ROUTE, ADMIN, cheap, 200).await;
    assert_eq!(
        (&c["region"], &c["fallback"]),
        (&json!("eu-west"), &json!(false))
    );
    let b = app
        .admin("GET", "/api/v1/regions/eu-west/budget", Value::Null)
        .await;
    assert_eq!(b["remaining_cents"], 50, "routing never charges: {b}");
}

#[tokio::test]
async fn jobs_in_queue_rises_with_a_route_and_falls_when_the_job_is_done() {
    let app = App::new().await;
    let tid = world(&app, "acme").await;
    let op = app.token(&tid, "operator").await;
    assert_eq!(jobs_in_queue(&app, "eu-west").await, 0);
    let a = app
        .expect("POST", ROUTE, &op, job(&tid, "posting"), 200)
        .await;
    let b = app
        .expect("POST", ROUTE, &op, job(&tid, "intel"), 200)
        .await;
    assert_eq!(
        jobs_in_queue(&app, "eu-west").await,
        2,
        "computed for the request"
    );
    app.tick().await;
    assert_eq!(
        jobs_in_queue(&app, "eu-west").await,
        2,
        "stored by the leader"
    );
    // A region-level queue_depth sample adds to the routed jobs.
    app.admin(
        "POST",
        "/api/v1/metrics",
        json!({"samples": [{"region": "eu-west", "metric": "queue_depth", "value": 5}]}),
    )
    .await;
    app.tick().await;
    assert_eq!(jobs_in_queue(&app, "eu-west").await, 7);

    let id = a["id"].as_str().unwrap();
    let done = app
        .expect(
            "POST",
            &format!("/api/v1/jobs/{id}/done"),
            &op,
            Value::Null,
            200,
        )
        .await;
    assert_eq!(
        (&done["status"], &done["region"], &done["job_type"]),
        (&json!("done"), &json!("eu-west"), &json!("posting")),
        "{done}"
    );
    assert!(done["done_at"].is_string());
    assert_eq!(done["shard_key"], a["shard_key"]);
    app.tick().await;
    assert_eq!(jobs_in_queue(&app, "eu-west").await, 6);
    // Done once: a repeat is a 409, an unknown job a 404.
    let p = app
        .expect(
            "POST",
            &format!("/api/v1/jobs/{id}/done"),
            &op,
            Value::Null,
            409,
        )
        .await;
    assert!(
        p["detail"].as_str().unwrap().contains("already done"),
        "{p}"
    );
    app.expect(
        "POST",
        "/api/v1/jobs/no-such-job/done",
        &op,
        Value::Null,
        404,
    )
    .await;
    // Another tenant's token sees neither the tenant nor its jobs.
    let other = app.tenant("other").await;
    let stranger = app.token(&other, "operator").await;
    let bid = b["id"].as_str().unwrap();
    app.expect(
        "POST",
        &format!("/api/v1/jobs/{bid}/done"),
        &stranger,
        Value::Null,
        404,
    )
    .await;
    app.expect("POST", ROUTE, &stranger, job(&tid, "posting"), 404)
        .await;
    // A viewer may not route or complete.
    let viewer = app.token(&tid, "viewer").await;
    app.expect("POST", ROUTE, &viewer, job(&tid, "posting"), 403)
        .await;
    app.expect(
        "POST",
        &format!("/api/v1/jobs/{bid}/done"),
        &viewer,
        Value::Null,
        403,
    )
    .await;
    assert_eq!(queued(&app).await, 1);
}

#[tokio::test]
async fn bad_input_is_a_4xx_naming_its_field_and_records_nothing() {
    let app = App::new().await;
    let tid = world(&app, "acme").await;
    let with = |k: &str, v: Value| {
        let mut b = job(&tid, "creative");
        b[k] = v;
        b
    };
    // (body, status, field named)
    let cases = [
        (with("tenant_id", json!("no-such-tenant")), 404, None),
        (with("tenant_id", json!("")), 422, Some("tenant_id")),
        (with("region", json!("mars")), 422, Some("region")),
        (with("region", json!("")), 422, Some("region")),
        (with("job_type", json!("dance")), 422, Some("job_type")),
        (with("job_type", json!("")), 422, Some("job_type")),
        (with("priority", json!(0)), 422, Some("priority")),
        (with("priority", json!(11)), 422, Some("priority")),
        (with("priority", json!(2.5)), 422, Some("priority")),
        (
            with("estimated_cost_cents", json!(-1)),
            422,
            Some("estimated_cost_cents"),
        ),
        (
            with("estimated_cost_cents", json!(1_000_000_000_001i64)),
            422,
            Some("estimated_cost_cents"),
        ),
        (
            with("estimated_cost_cents", json!("100")),
            422,
            Some("estimated_cost_cents"),
        ),
        (with("colour", json!("red")), 422, Some("colour")),
        (json!({"tenant_id": tid}), 422, Some("job_type")),
        (json!({"job_type": "intel"}), 422, Some("tenant_id")),
    ];
    for (body, want, field) in cases {
        let v = app.expect("POST", ROUTE, ADMIN, body.clone(), want).await;
        assert_eq!(v["status"], want, "problem JSON: {v}");
        if let Some(f) = field {
            let named =
                fields(&v).iter().any(|x| x == f) || v["detail"].as_str().unwrap_or("").contains(f);
            assert!(named, "{body} must name {f}: {v}");
        }
    }
    // Every violation at once.
    let v = app
        .expect(
            "POST",
            ROUTE,
            ADMIN,
            json!({"tenant_id": "", "job_type": "intel", "priority": 0, "estimated_cost_cents": -5, "region": ""}),
            422,
        )
        .await;
    assert_eq!(
        fields(&v),
        ["tenant_id", "region", "priority", "estimated_cost_cents"]
    );
    assert_eq!(queued(&app).await, 0, "nothing recorded");
    let (s, _, _) = app
        .call("POST", ROUTE, Some(ADMIN), Some("{not json"))
        .await;
    assert_eq!(s.as_u16(), 400);
}
