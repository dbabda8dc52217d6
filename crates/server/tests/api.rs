//! Router tests without a socket: auth and tenant scopes, bad input (every
//! case a 4xx problem naming the field, never a 500), plan, scale, capacity,
//! proposals and rebalance, on a fresh SQLite database per test.

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};

use fleetscale_server::auth::hash_token;
use fleetscale_server::AppState;
use fleetscale_store::Store;

use support::{fields, fresh_dir, pool_body, App, ADMIN};

#[tokio::test]
async fn create_pool_returns_201_with_id_and_defaults() {
    let app = App::new().await;
    let t = app
        .admin("POST", "/api/v1/tenants", json!({"name": "acme"}))
        .await;
    app.admin(
        "POST",
        "/api/v1/regions",
        json!({"name": "us-east", "jurisdiction": "us"}),
    )
    .await;
    let tid = t["id"].as_str().unwrap();
    let (s, p, _) = app
        .call(
            "POST",
            "/api/v1/pools",
            Some(ADMIN),
            Some(&json!({"tenant_id": tid, "region": "us-east", "agent_type": "chat"}).to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(p["id"].is_string());
    assert_eq!(
        p["mode"], "recommend",
        "phase-66 opt-in: recommend unless asked"
    );
    // No scaling_policy: fleetscale's default policies (the slo policy for
    // its capacity per instance, 1 by default); one that gives a
    // scaling_policy asks for the threshold policy alone.
    assert_eq!(
        p["policies"],
        serde_json::to_value(fleetscale_core::decision::default::pool_default(1.0)).unwrap(),
        "{p}"
    );
    assert_eq!(p["policies"]["policies"][0]["type"], "slo");
    let thr = app
        .admin(
            "POST",
            "/api/v1/pools",
            json!({"tenant_id": tid, "region": "us-east", "agent_type": "thr",
                   "scaling_policy": {"cooldown_seconds": 60}}),
        )
        .await;
    assert_eq!(thr["policies"], Value::Null, "{thr}");
    let d = app
        .admin("GET", "/api/v1/policies/default", Value::Null)
        .await;
    let shipped: fleetscale_core::PoolPolicies =
        serde_json::from_str(fleetscale_core::decision::default::DEFAULT_POLICIES_JSON).unwrap();
    assert_eq!(d, serde_json::to_value(shipped).unwrap());
    assert_eq!(
        (
            p["min_capacity"].as_i64(),
            p["max_capacity"].as_i64(),
            p["desired_capacity"].as_i64()
        ),
        (Some(1), Some(10), Some(1))
    );
    let l = app
        .admin(
            "GET",
            &format!("/api/v1/pools?tenant_id={tid}"),
            Value::Null,
        )
        .await;
    assert_eq!(l["items"].as_array().unwrap().len(), 2, "chat and thr");
    assert!(l["next_cursor"].is_null());
}

#[tokio::test]
async fn bad_input_is_a_named_4xx_never_a_500() {
    let app = App::new().await;
    let (tid, pool) = app.fleet("acme").await;
    // (method, path, body, expected status, field that must be named)
    let out_of_range = {
        let mut b = pool_body(&tid, "x1");
        b["min_capacity"] = json!(6);
        b.to_string()
    };
    let nan_string = {
        let mut b = pool_body(&tid, "x2");
        b["capacity_per_instance"] = json!("NaN");
        b.to_string()
    };
    let bad_threshold = {
        let mut b = pool_body(&tid, "x3");
        b["scaling_policy"]["scale_up_threshold"] = json!(150);
        b["scaling_policy"]["increment"] = json!(0);
        b.to_string()
    };
    let cases: Vec<(&str, String, String, u16, Option<&str>)> = vec![
        ("POST", "/api/v1/pools".into(), "{\"tenant_id\": ".into(), 400, None),
        ("POST", "/api/v1/pools".into(), "[1,2".into(), 400, None),
        ("POST", "/api/v1/tenants".into(), json!({"name": "x", "colour": "red"}).to_string(), 422, Some("colour")),
        ("POST", "/api/v1/pools".into(), out_of_range, 422, Some("min_capacity")),
        ("POST", "/api/v1/pools".into(), nan_string, 422, Some("capacity_per_instance")),
        ("POST", "/api/v1/pools".into(), bad_threshold, 422, Some("scaling_policy.scale_up_threshold")),
        ("POST", "/api/v1/pools".into(), json!({"tenant_id": tid, "region": "mars", "agent_type": "a"}).to_string(), 422, Some("region")),
        ("POST", "/api/v1/scale".into(), json!({"tenant_id": tid, "pool_id": pool, "capacity": -1, "reason": "x"}).to_string(), 422, Some("capacity")),
        ("POST", "/api/v1/scale".into(), json!({"tenant_id": tid, "pool_id": pool, "capacity": 1.5, "reason": "x"}).to_string(), 422, Some("capacity")),
        ("POST", "/api/v1/scale".into(), json!({"tenant_id": tid, "pool_id": pool, "capacity": 3, "reason": ""}).to_string(), 422, Some("reason")),
        ("POST", "/api/v1/metrics".into(), json!({"samples": []}).to_string(), 422, Some("samples")),
        ("POST", "/api/v1/metrics".into(), json!({"samples": [{"pool_id": pool, "metric": "throughput", "value": -1}]}).to_string(), 422, Some("samples[0].value")),
        ("POST", "/api/v1/metrics".into(), json!({"samples": [{"pool_id": pool, "metric": "throughput", "value": 1, "ts": "yesterday"}]}).to_string(), 422, Some("samples[0].ts")),
        ("POST", "/api/v1/metrics".into(), json!({"samples": [{"pool_id": pool, "metric": "throughput", "value": 1, "ts": 1.5}]}).to_string(), 422, Some("samples[0].ts")),
        ("POST", "/api/v1/metrics".into(), json!({"samples": [{"pool_id": pool, "metric": "throughput", "value": 1, "ts": [1]}]}).to_string(), 422, Some("samples[0].ts")),
        ("POST", "/api/v1/metrics".into(), json!({"samples": [{"pool_id": "nope", "metric": "throughput", "value": 1}]}).to_string(), 422, Some("samples[0].pool_id")),
        ("POST", "/api/v1/metrics".into(), json!({"samples": [{"pool_id": pool, "instance": "pod 1", "metric": "cpu", "value": 1}]}).to_string(), 422, Some("samples[0].instance")),
        ("POST", "/api/v1/metrics".into(), json!({"samples": [{"pool_id": pool, "instance": "", "metric": "cpu", "value": 1}]}).to_string(), 422, Some("samples[0].instance")),
        ("POST", "/api/v1/metrics".into(), json!({"samples": [{"region": "eu-west", "instance": "i1", "metric": "latency_ms", "value": 1}]}).to_string(), 422, Some("samples[0].instance")),
        ("POST", "/api/v1/metrics".into(), "{\"samples\":[{\"pool_id\":\"p\",\"metric\":\"m\",\"value\":1e999}]}".into(), 422, Some("samples[0].value")),
        ("POST", "/api/v1/rebalance".into(), json!({"tenant_id": tid, "strategy": "random"}).to_string(), 422, Some("strategy")),
        ("PATCH", format!("/api/v1/pools/{pool}"), json!({"max_capacity": 0}).to_string(), 422, Some("min_capacity")),
        ("GET", "/api/v1/pools?limit=0".into(), String::new(), 422, Some("limit")),
        ("GET", "/api/v1/pools?limit=abc".into(), String::new(), 400, None),
        ("GET", "/api/v1/pools/does-not-exist".into(), String::new(), 404, None),
        ("GET", "/api/v1/no-such-route".into(), String::new(), 404, None),
    ];
    for (method, path, body, want, field) in cases {
        let (s, v, ctype) = app
            .call(
                method,
                &path,
                Some(ADMIN),
                if body.is_empty() { None } else { Some(&body) },
            )
            .await;
        assert_eq!(s.as_u16(), want, "{method} {path} {body}: {v}");
        assert_eq!(ctype, "application/problem+json", "{method} {path}");
        assert_eq!(v["status"].as_u64(), Some(u64::from(want)));
        assert!(
            v["title"].is_string() && v["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{v}"
        );
        if let Some(f) = field {
            assert!(
                fields(&v).iter().any(|x| x == f),
                "{method} {path}: expected field {f} in {v}"
            );
        }
    }
    let (s, _, _) = app.call("POST", "/api/v1/tenants", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn tokens_scope_tenants_and_roles() {
    let app = App::new().await;
    let (t1, p1) = app.fleet("one").await;
    let (t2, p2) = app.fleet("two").await;
    let viewer1 = app.token(&t1, "viewer").await;
    let operator1 = app.token(&t1, "operator").await;
    // Missing or wrong token.
    assert_eq!(
        app.call("GET", "/api/v1/pools", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call("GET", "/api/v1/pools", Some("fs_wrong"), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // A tenant token sees its own pools only; the other tenant's are 404.
    let (s, l, _) = app.call("GET", "/api/v1/pools", Some(&viewer1), None).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = l["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [p1.as_str()]);
    assert_eq!(
        app.call("GET", &format!("/api/v1/pools/{p2}"), Some(&viewer1), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(
            "GET",
            &format!("/api/v1/pools?tenant_id={t2}"),
            Some(&viewer1),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(
            "GET",
            &format!("/api/v1/scaling-events?pool_id={p2}"),
            Some(&viewer1),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(
            "GET",
            &format!("/api/v1/capacity?tenant_id={t2}"),
            Some(&viewer1),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let scale_other =
        json!({"tenant_id": t2, "pool_id": p2, "capacity": 3, "reason": "x"}).to_string();
    assert_eq!(
        app.call(
            "POST",
            "/api/v1/scale",
            Some(&operator1),
            Some(&scale_other)
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let push_other =
        json!({"samples": [{"pool_id": p2, "metric": "throughput", "value": 1}]}).to_string();
    assert_eq!(
        app.call(
            "POST",
            "/api/v1/metrics",
            Some(&operator1),
            Some(&push_other)
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Roles.
    let scale_own =
        json!({"tenant_id": t1, "pool_id": p1, "capacity": 3, "reason": "x"}).to_string();
    assert_eq!(
        app.call("POST", "/api/v1/scale", Some(&viewer1), Some(&scale_own))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call("POST", "/api/v1/scale", Some(&operator1), Some(&scale_own))
            .await
            .0,
        StatusCode::OK
    );
    let new_pool = pool_body(&t1, "other").to_string();
    assert_eq!(
        app.call("POST", "/api/v1/pools", Some(&operator1), Some(&new_pool))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call(
            "POST",
            "/api/v1/tenants",
            Some(&operator1),
            Some(r#"{"name":"x"}"#)
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    // Every mutation is audited with its actor.
    let audit = app
        .admin("GET", &format!("/api/v1/audit?tenant_id={t1}"), Value::Null)
        .await;
    let scale = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "pool.scale")
        .unwrap();
    assert_eq!(scale["actor"], "operator-token");
}

/// The dry run decides like the next tick: on a replica that is not the
/// leader (no memory in this process), it recalls the pool's stored
/// controller memory, so a scale-in reversal beyond the flap budget is held
/// there too.
#[tokio::test]
async fn the_plan_recalls_the_stored_controller_memory() {
    use fleetscale_core::memory::ControllerMemory;
    use fleetscale_core::Action;
    let app = App::new().await;
    let (_, pool) = app.fleet("acme").await;
    // 10% utilization: the threshold policy wants 1 (a scale-in).
    app.admin(
        "POST",
        "/api/v1/metrics",
        json!({"samples": [
            {"pool_id": pool, "metric": "throughput", "value": 1},
            {"pool_id": pool, "metric": "throughput", "value": 3}
        ]}),
    )
    .await;
    let plan = app
        .admin("POST", &format!("/api/v1/pools/{pool}/plan"), Value::Null)
        .await;
    assert_eq!(
        (
            plan["target_capacity"].as_i64(),
            plan["should_scale"].as_bool()
        ),
        (Some(1), Some(true)),
        "{plan}"
    );
    // The leader stored: last change up, four reversals in the last hour.
    let now = fleetscale_store::now_ms();
    let memory = ControllerMemory {
        last_direction: Some(Action::ScaleUp),
        reversals_at_ms: (1..=4).map(|k| now - k * 60_000).collect(),
        ..Default::default()
    };
    app.state
        .engine
        .store
        .put_controller_memories(&[(pool.clone(), memory)], None, now)
        .await
        .unwrap();
    let plan = app
        .admin("POST", &format!("/api/v1/pools/{pool}/plan"), Value::Null)
        .await;
    assert_eq!(
        (
            plan["target_capacity"].as_i64(),
            plan["should_scale"].as_bool()
        ),
        (Some(2), Some(false)),
        "{plan}"
    );
    assert_eq!(plan["inputs"]["flap_reversals"], 4.0, "{plan}");
    assert!(
        plan["reason"]
            .as_str()
            .unwrap()
            .contains("flap budget: 4 reversal(s)"),
        "{plan}"
    );
}

#[tokio::test]
async fn plan_scale_capacity_and_events() {
    let app = App::new().await;
    let (tid, pool) = app.fleet("acme").await;
    let plan = app
        .admin("POST", &format!("/api/v1/pools/{pool}/plan"), Value::Null)
        .await;
    assert_eq!(
        (plan["should_scale"].as_bool(), plan["reason"].as_str()),
        (
            Some(false),
            Some("No metrics available: holding; fail static: metrics missing (no sample); no scale-in")
        )
    );
    assert_eq!(plan["metrics_stale"], true, "no sample: stale");
    assert_eq!(plan["inputs"]["metrics_stale"], 1.0);
    // 2 instances × 10 = 20; a mean of 18 is 90% > 80%.
    app.admin(
        "POST",
        "/api/v1/metrics",
        json!({"samples": [
            {"pool_id": pool, "metric": "throughput", "value": 17},
            {"pool_id": pool, "metric": "throughput", "value": 19},
            {"pool_id": pool, "metric": "latency_ms", "value": 9000}
        ]}),
    )
    .await;
    let plan = app
        .admin("POST", &format!("/api/v1/pools/{pool}/plan"), Value::Null)
        .await;
    assert_eq!(plan["target_capacity"], 3);
    assert_eq!(plan["should_scale"], true);
    assert_eq!(plan["metrics_stale"], false, "fresh samples");
    assert_eq!(plan["policy"], "threshold");
    assert_eq!(plan["inputs"]["utilization_pct"], 90.0);
    let cap = app
        .admin(
            "GET",
            &format!("/api/v1/capacity?tenant_id={tid}"),
            Value::Null,
        )
        .await;
    assert_eq!(cap["pools"][0]["status"], "over");
    assert_eq!(cap["overall_health"], 0.0);
    // The thresholds are the caller's: at 95% "over", 90% is optimal.
    let cap = app
        .admin(
            "GET",
            &format!("/api/v1/capacity?tenant_id={tid}&over_pct=95&under_pct=20"),
            Value::Null,
        )
        .await;
    assert_eq!(cap["pools"][0]["status"], "optimal");
    assert_eq!(
        cap["thresholds"],
        json!({"under_pct": 20.0, "over_pct": 95.0})
    );
    for (query, field) in [
        ("over_pct=20", "over_pct"),
        ("under_pct=-1", "under_pct"),
        ("under_pct=50&over_pct=50", "over_pct"),
        ("under_pct=85", "under_pct"),
    ] {
        let (s, v, _) = app
            .call(
                "GET",
                &format!("/api/v1/capacity?{query}"),
                Some(ADMIN),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {v}");
        assert_eq!(v["errors"][0]["field"], field, "{query}: {v}");
    }
    let (s, v, _) = app
        .call("GET", "/api/v1/capacity?over=95", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "an unknown parameter: {v}");
    let s = app
        .admin(
            "POST",
            "/api/v1/scale",
            json!({"tenant_id": tid, "pool_id": pool, "capacity": 50, "reason": "launch"}),
        )
        .await;
    assert_eq!(
        (
            s["pool"]["desired_capacity"].as_i64(),
            s["clamped"].as_bool()
        ),
        (Some(5), Some(true))
    );
    let evs = app
        .admin(
            "GET",
            &format!("/api/v1/scaling-events?pool_id={pool}"),
            Value::Null,
        )
        .await;
    let e = &evs["items"][0];
    assert_eq!(
        (e["previous_capacity"].as_i64(), e["new_capacity"].as_i64()),
        (Some(2), Some(5))
    );
    assert_eq!(
        (e["trigger_source"].as_str(), e["reason"].as_str()),
        (Some("manual"), Some("launch"))
    );
    assert!(e["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(e["metadata"]["requested_capacity"], 50);
}

#[tokio::test]
async fn recommend_mode_proposal_is_approved_by_an_operator() {
    let app = App::new().await;
    let (tid, pool) = app.fleet("acme").await;
    app.admin(
        "PATCH",
        &format!("/api/v1/pools/{pool}"),
        json!({"mode": "recommend"}),
    )
    .await;
    app.admin(
        "POST",
        "/api/v1/metrics",
        json!({"samples": [{"pool_id": pool, "metric": "throughput", "value": 19}]}),
    )
    .await;
    let report = app.tick().await;
    assert_eq!((report.applied, report.proposed), (0, 1));
    let pool_now = app
        .admin("GET", &format!("/api/v1/pools/{pool}"), Value::Null)
        .await;
    assert_eq!(
        pool_now["desired_capacity"], 2,
        "recommend mode changes nothing by itself"
    );
    let props = app
        .admin(
            "GET",
            &format!("/api/v1/proposals?tenant_id={tid}&status=pending"),
            Value::Null,
        )
        .await;
    let id = props["items"][0]["id"].as_str().unwrap().to_string();
    let op = app.token(&tid, "operator").await;
    let (s, v, _) = app
        .call(
            "POST",
            &format!("/api/v1/proposals/{id}/approve"),
            Some(&op),
            Some(r#"{"note":"ok"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["proposal"]["status"], "approved");
    assert_eq!(v["event"]["trigger_source"], "recommendation");
    assert_eq!(v["event"]["new_capacity"], 3);
    let (s, v, _) = app
        .call(
            "POST",
            &format!("/api/v1/proposals/{id}/reject"),
            Some(&op),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
}

#[tokio::test]
async fn frozen_and_locked_pools_are_untouched_by_the_loop() {
    let app = App::new().await;
    let (_, frozen) = app.fleet("a").await;
    app.admin(
        "PATCH",
        &format!("/api/v1/pools/{frozen}"),
        json!({"mode": "frozen"}),
    )
    .await;
    let (_, locked) = app.fleet("b").await;
    app.admin(
        "PUT",
        &format!("/api/v1/pools/{locked}/safety-lock"),
        json!({"locked": true}),
    )
    .await;
    for p in [&frozen, &locked] {
        app.admin(
            "POST",
            "/api/v1/metrics",
            json!({"samples": [{"pool_id": p, "metric": "throughput", "value": 19}]}),
        )
        .await;
    }
    let r = app.tick().await;
    assert_eq!(
        (r.evaluated, r.applied),
        (1, 0),
        "frozen skipped, locked evaluated but not changed"
    );
    for p in [&frozen, &locked] {
        assert_eq!(
            app.admin("GET", &format!("/api/v1/pools/{p}"), Value::Null)
                .await["desired_capacity"],
            2
        );
    }
}

#[tokio::test]
async fn rebalance_follows_demand_or_averages() {
    let app = App::new().await;
    let t = app
        .admin("POST", "/api/v1/tenants", json!({"name": "acme"}))
        .await;
    let tid = t["id"].as_str().unwrap();
    let mut pools = Vec::new();
    for (region, desired) in [("r1", 4), ("r2", 4)] {
        app.admin(
            "POST",
            "/api/v1/regions",
            json!({"name": region, "jurisdiction": "eu"}),
        )
        .await;
        let mut b = pool_body(tid, "writer");
        b["region"] = json!(region);
        b["max_capacity"] = json!(10);
        b["desired_capacity"] = json!(desired);
        pools.push(
            app.admin("POST", "/api/v1/pools", b).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    app.admin(
        "POST",
        "/api/v1/metrics",
        json!({"samples": [
            {"pool_id": pools[0], "metric": "throughput", "value": 10},
            {"pool_id": pools[1], "metric": "throughput", "value": 30}
        ]}),
    )
    .await;
    let dry = app
        .admin(
            "POST",
            "/api/v1/rebalance",
            json!({"tenant_id": tid, "dry_run": true}),
        )
        .await;
    assert_eq!(dry["rebalanced"], 0);
    assert_eq!(dry["moves"].as_array().unwrap().len(), 2);
    let r = app
        .admin("POST", "/api/v1/rebalance", json!({"tenant_id": tid}))
        .await;
    assert_eq!(r["rebalanced"], 2);
    let sizes: Vec<i64> = {
        let mut v = Vec::new();
        for p in &pools {
            v.push(
                app.admin("GET", &format!("/api/v1/pools/{p}"), Value::Null)
                    .await["desired_capacity"]
                    .as_i64()
                    .unwrap(),
            );
        }
        v
    };
    assert_eq!(sizes, [2, 6], "8 instances split 1:3 by demand");
    let ev = app
        .admin(
            "GET",
            &format!("/api/v1/scaling-events?pool_id={}", pools[1]),
            Value::Null,
        )
        .await;
    assert_eq!(ev["items"][0]["trigger_source"], "rebalance");
}

#[tokio::test]
async fn health_ready_and_prometheus() {
    let app = App::new().await;
    assert_eq!(
        app.call("GET", "/healthz", None, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.call("GET", "/readyz", None, None).await.0,
        StatusCode::OK
    );
    app.fleet("acme").await;
    let (_, text) = app.text("/metrics").await;
    for name in [
        "fleetscale_ticks_total",
        "fleetscale_is_leader",
        "fleetscale_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
}

#[tokio::test]
async fn webhook_failures_are_recorded_counted_and_retried() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;
    // A receiver that fails its first 4 requests, then accepts.
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let c = c.clone();
                async move {
                    let sig = headers["x-fleetscale-signature"]
                        .to_str()
                        .unwrap()
                        .to_string();
                    assert_eq!(sig, fleetscale_engine::actuator::sign("hook-secret", &body));
                    assert!(headers.contains_key("idempotency-key"));
                    if c.fetch_add(1, Ordering::SeqCst) < 4 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });

    let mut app = App::new().await;
    app.state.engine.actuator = Arc::new(
        fleetscale_server::Actuator::webhook(fleetscale_server::WebhookConfig {
            url: format!("http://{addr}/hook"),
            secret: "hook-secret".into(),
            timeout: Duration::from_secs(2),
            max_attempts: 3,
            backoff: Duration::from_millis(10),
        })
        .unwrap(),
    );
    let (tid, pool) = app.fleet("acme").await;
    let s = app
        .admin(
            "POST",
            "/api/v1/scale",
            json!({"tenant_id": tid, "pool_id": pool, "capacity": 4, "reason": "x"}),
        )
        .await;
    let id = s["event"]["id"].as_str().unwrap().to_string();
    assert_eq!(s["event"]["actuation"]["status"], "pending");
    // First tick: 3 attempts, all refused → failed, counted.
    let (ok, failed) = fleetscale_engine::control::actuate_pending(&app.state.engine, None)
        .await
        .unwrap();
    assert_eq!((ok, failed), (0, 1));
    let e = app
        .admin("GET", &format!("/api/v1/scaling-events/{id}"), Value::Null)
        .await;
    assert_eq!(
        (
            e["actuation"]["status"].as_str(),
            e["actuation"]["attempts"].as_i64()
        ),
        (Some("failed"), Some(3))
    );
    assert!(
        e["actuation"]["error"].as_str().unwrap().contains("503"),
        "{e}"
    );
    assert_eq!(app.state.engine.metrics.actuation_failures.get(), 1);
    // Next tick: attempt 4 fails, attempt 5 succeeds.
    let (ok, failed) = fleetscale_engine::control::actuate_pending(&app.state.engine, None)
        .await
        .unwrap();
    assert_eq!((ok, failed), (1, 0));
    let e = app
        .admin("GET", &format!("/api/v1/scaling-events/{id}"), Value::Null)
        .await;
    assert_eq!(
        (
            e["actuation"]["status"].as_str(),
            e["actuation"]["attempts"].as_i64()
        ),
        (Some("delivered"), Some(5))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    // Nothing left to deliver.
    assert_eq!(
        fleetscale_engine::control::actuate_pending(&app.state.engine, None)
            .await
            .unwrap(),
        (0, 0)
    );
}

#[tokio::test]
async fn pool_policies_are_validated_stored_audited_and_run_by_the_loop() {
    let app = App::new().await;
    let (tid, pool) = app.fleet("acme").await;
    // Bad specs: every violation named with its path.
    let bad = json!({"policies": [
        {"type": "triggers", "triggers": [{"metric": "gpu", "comparison": "gt", "threshold": 70,
          "duration_seconds": -1, "action": "scale_up", "amount": {"absolute": 1}}]},
        {"type": "schedule", "schedules": [{"cron": "61 * * * *", "timezone": "Europe/Berlin",
          "duration_seconds": 60, "capacity": 3, "description": "bad minute"}]}
    ]});
    let (s, v, _) = app
        .call(
            "PUT",
            &format!("/api/v1/pools/{pool}/policies"),
            Some(ADMIN),
            Some(&bad.to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let f = fields(&v);
    for want in [
        "policies[0].triggers[0].metric",
        "policies[0].triggers[0].duration_seconds",
        "policies[1].schedules[0].cron",
    ] {
        assert!(f.iter().any(|x| x == want), "{want} not in {f:?}");
    }
    let (s, v, _) = app
        .call(
            "PUT",
            &format!("/api/v1/pools/{pool}/policies"),
            Some(ADMIN),
            Some(r#"{"policies":[{"type":"queue","messages_per_instance":10,"colour":1}]}"#),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields are rejected: {v}"
    );
    // Before: the threshold policy alone.
    let g = app
        .admin(
            "GET",
            &format!("/api/v1/pools/{pool}/policies"),
            Value::Null,
        )
        .await;
    assert_eq!(
        (
            g["source"].as_str(),
            g["policies"]["policies"][0]["type"].as_str()
        ),
        (Some("scaling_policy"), Some("threshold"))
    );
    // A queue policy: 35 messages at 10 per instance → 4 instances.
    let spec = json!({"policies": [{"type": "queue", "messages_per_instance": 10, "scale_up_cooldown_seconds": 0}]});
    let p = app
        .admin("PUT", &format!("/api/v1/pools/{pool}/policies"), spec)
        .await;
    assert_eq!(p["policies"]["policies"][0]["type"], "queue");
    app.admin(
        "POST",
        "/api/v1/metrics",
        json!({"samples": [{"pool_id": pool, "metric": "queue_depth", "value": 35}]}),
    )
    .await;
    let plan = app
        .admin("POST", &format!("/api/v1/pools/{pool}/plan"), Value::Null)
        .await;
    assert_eq!(
        (plan["policy"].as_str(), plan["target_capacity"].as_i64()),
        (Some("decision_engine"), Some(4)),
        "{plan}"
    );
    assert_eq!(plan["combined"]["reasons"][0]["factor"], "current_load");
    let r = app.tick().await;
    assert_eq!(r.applied, 1);
    let ev = app
        .admin(
            "GET",
            &format!("/api/v1/scaling-events?pool_id={pool}"),
            Value::Null,
        )
        .await;
    let e = &ev["items"][0];
    assert_eq!(
        (e["new_capacity"].as_i64(), e["trigger_source"].as_str()),
        (Some(4), Some("autoscaler"))
    );
    assert_eq!(e["metadata"]["policy"], "decision_engine");
    assert_eq!(
        e["metadata"]["combined"]["policies"][0]["policy"], "queue",
        "the event records which policy decided: {e}"
    );
    let audit = app
        .admin(
            "GET",
            &format!("/api/v1/audit?tenant_id={tid}"),
            Value::Null,
        )
        .await;
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "pool.policies.set"));
    // Back to the threshold policy.
    let p = app
        .admin(
            "DELETE",
            &format!("/api/v1/pools/{pool}/policies"),
            Value::Null,
        )
        .await;
    assert!(p["policies"].is_null());
}

#[tokio::test]
async fn policies_evaluate_answers_without_touching_a_pool() {
    let app = App::new().await;
    let body = json!({
        "spec": {"policies": [
            {"type": "queue", "messages_per_instance": 100, "max_queue_lag_seconds": 10},
            {"type": "schedule", "schedules": [{"cron": "0 9 * * *", "timezone": "Europe/Berlin",
              "duration_seconds": 7200, "capacity": 30, "mode": "floor", "description": "morning"}]}
        ]},
        "observation": {"now_ms": 1714550400000_i64, "bounds": {"min": 1, "max": 50, "desired": 5},
            "capacity_per_instance": 10, "load": null, "last_scaled_at_ms": null,
            "queue": {"backlog": 1000, "throughput_per_instance": 5, "observed_at_ms": 1714550400000_i64}}
    });
    let v = app.admin("POST", "/api/v1/policies/evaluate", body).await;
    assert_eq!(
        (v["target_capacity"].as_i64(), v["action"].as_str()),
        (Some(30), Some("scale_up")),
        "{v}"
    );
    assert_eq!(v["reasons"][1]["factor"], "schedule");
    let bad = json!({"spec": {"policies": []}, "observation": {"now_ms": 0, "bounds": {"min": 5, "max": 2, "desired": 3},
        "capacity_per_instance": 1, "load": null, "last_scaled_at_ms": null}});
    let (s, v, _) = app
        .call(
            "POST",
            "/api/v1/policies/evaluate",
            Some(ADMIN),
            Some(&bad.to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let f = fields(&v);
    assert!(f.iter().any(|x| x.starts_with("spec.policies")), "{f:?}");
    assert!(f.iter().any(|x| x == "observation.bounds.min"), "{f:?}");
}

#[tokio::test]
async fn per_instance_samples_drive_a_utilization_target() {
    let app = App::new().await;
    let (_, pool) = app.fleet("acme").await;
    let spec = json!({"policies": [{"type": "target_tracking", "behavior": {},
        "metrics": [{"metric": "cpu", "target": {"type": "utilization", "average_utilization_percent": 50}}]}]});
    app.admin("PUT", &format!("/api/v1/pools/{pool}/policies"), spec)
        .await;
    let plan = app
        .admin("POST", &format!("/api/v1/pools/{pool}/plan"), Value::Null)
        .await;
    assert_eq!(
        plan["should_scale"],
        json!(false),
        "no instance samples: {plan}"
    );
    // Two instances at 90 % of their request, each heard from twice (a
    // first sample counts as unready, as for a new pod): 2 × 90 / 50 → 4.
    let now = fleetscale_store::now_ms();
    let mut samples = Vec::new();
    for i in ["i1", "i2"] {
        for age in [40_000, 20_000] {
            samples.push(json!({"pool_id": pool, "instance": i, "metric": "cpu", "value": 0.9, "ts": now - age}));
        }
    }
    let r = app
        .admin("POST", "/api/v1/metrics", json!({ "samples": samples }))
        .await;
    assert_eq!(r["accepted"], json!(4));
    let plan = app
        .admin("POST", &format!("/api/v1/pools/{pool}/plan"), Value::Null)
        .await;
    assert_eq!(plan["target_capacity"], json!(4), "{plan}");
    // The pool's own series did not get them.
    let own = app
        .admin(
            "GET",
            &format!("/api/v1/pools/{pool}/samples?metric=cpu"),
            Value::Null,
        )
        .await;
    assert_eq!(own["points"], json!([]), "{own}");
}

#[tokio::test]
async fn the_loop_keeps_forecast_models_between_ticks() {
    use fleetscale_core::{decide_all, decide_all_cached};
    use fleetscale_engine::control::{
        keep_forecasts, observe, ForecastCaches, HISTORY_INTERVAL_MS,
    };
    let app = App::new().await;
    let (_, pool) = app.fleet("acme").await;
    let spec = json!({"policies": [{"type": "predictive", "lookahead_seconds": 3600,
        "cold_start_seconds": 600, "target_utilization_percent": 100, "confidence_threshold": 0,
        "history_seconds": 86400}]});
    app.admin("PUT", &format!("/api/v1/pools/{pool}/policies"), spec)
        .await;
    // Twelve hours of demand, one sample per 5 minutes, ending at `now`.
    let now = fleetscale_store::now_ms();
    let end = now.div_euclid(HISTORY_INTERVAL_MS) * HISTORY_INTERVAL_MS;
    let push = |from: i64, to: i64| {
        let samples: Vec<Value> = (from..to)
            .map(|i| {
                let ts = end - HISTORY_INTERVAL_MS * i + 1;
                json!({"pool_id": pool, "metric": "throughput", "value": 30 + i % 7, "ts": ts})
            })
            .collect();
        json!({ "samples": samples })
    };
    app.admin("POST", "/api/v1/metrics", push(1, 145)).await;
    let mut caches = ForecastCaches::new();
    // First tick: a cold fit on the whole window, deciding as a fresh fit does.
    let cached = observe(&app.state.engine, now, Some(&mut caches))
        .await
        .unwrap();
    let plain = observe(&app.state.engine, now, None).await.unwrap();
    let (c, p) = (&cached[0], &plain[0]);
    let model = c.forecasts[0]
        .as_ref()
        .expect("a model after the first tick");
    assert_eq!(model.end_ms, end);
    let spec = c.combined.as_ref().unwrap();
    assert_eq!(
        decide_all_cached(spec, &c.observation, &c.forecasts),
        decide_all(spec, &p.observation)
    );
    let observed = model.model.observed();
    // Next interval: only the new interval is loaded and fed to the model.
    app.admin("POST", "/api/v1/metrics", push(0, 1)).await;
    let later = now + HISTORY_INTERVAL_MS;
    let mut cached = cached;
    caches = keep_forecasts(&mut cached);
    assert!(caches.contains_key(&pool));
    let next = observe(&app.state.engine, later, Some(&mut caches))
        .await
        .unwrap();
    let m = next[0].forecasts[0].as_ref().unwrap();
    assert_eq!(m.end_ms, end + HISTORY_INTERVAL_MS);
    assert_eq!(m.model.observed(), observed + 1, "fed, not refitted");
    assert!(
        next[0].observation.history.is_none(),
        "the whole window was not loaded again"
    );
    // A tick through the loop leaves the pool's models in the state.
    app.tick().await;
    assert!(app
        .state
        .engine
        .forecasts
        .lock()
        .unwrap()
        .contains_key(&pool));
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_needs_no_token() {
    let app = App::new().await;
    let (s, doc, ctype) = app.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    // The interface contracts' endpoints are there, with their methods.
    for (path, method) in [
        ("/api/v1/tenants", "post"),
        ("/api/v1/pools", "post"),
        ("/api/v1/pools/{id}", "patch"),
        ("/api/v1/metrics", "post"),
        ("/api/v1/scale", "post"),
        ("/api/v1/scaling-events", "get"),
        ("/api/v1/regions/{id}/budget/spend", "post"),
        ("/api/v1/regions/{id}/budget/refund", "post"),
        ("/api/v1/regions/{id}/budget", "get"),
        ("/api/v1/regions/{id}/budget/transactions", "get"),
        ("/api/v1/budgets/tenants/{tenant}/usage", "post"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }
    let spend = &paths["/api/v1/regions/{id}/budget/spend"]["post"];
    assert!(
        spend["requestBody"]["content"]["application/json"]["example"]["amount_cents"].is_number()
    );
    assert!(spend["responses"]["409"]["content"]["application/problem+json"].is_object());
    // Every documented operation is routed: a call never falls through to
    // the router's "route not found" or to 405.
    let mut operations = std::collections::HashSet::new();
    let (mut n, mut examples) = (0, 0);
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            n += 1;
            let id = op["operationId"].as_str().unwrap().to_string();
            assert!(operations.insert(id.clone()), "duplicate operationId {id}");
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path}: no 401"
            );
            let concrete = path
                .replace("{id}", "nope")
                .replace("{rid}", "nope")
                .replace("{tenant}", "nope")
                .replace("{provider}", "claude");
            let body = (method != "get" && method != "delete").then_some("{}");
            // The live stream answers 200 and never ends on its own; its
            // authorized answers are tested in dashboard_api.rs.
            if path != "/api/v1/stream" {
                let (s, v, _) = app
                    .call(&method.to_uppercase(), &concrete, Some(ADMIN), body)
                    .await;
                assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_ne!(v["detail"], "route not found", "{method} {path}");
                assert!(s.as_u16() < 500, "{method} {path}: {s} {v}");
            }
            let (s, _, _) = app
                .call(&method.to_uppercase(), &concrete, None, body)
                .await;
            assert_eq!(
                s,
                StatusCode::UNAUTHORIZED,
                "{method} {path} without a token"
            );
            // A documented example body has the shape the server accepts:
            // with placeholder ids it may meet a missing object (404, or 422
            // "must name an existing pool") or a state conflict (409), never
            // a malformed body or an unknown, missing or mistyped field.
            let example = &op["requestBody"]["content"]["application/json"]["example"];
            if !example.is_null() {
                let (s, v, _) = app
                    .call(
                        &method.to_uppercase(),
                        &concrete,
                        Some(ADMIN),
                        Some(&example.to_string()),
                    )
                    .await;
                let shape_errors = v["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| {
                        let rule = e["rule"].as_str().unwrap_or("");
                        [
                            "unknown field",
                            "missing field",
                            "invalid type",
                            "unknown variant",
                        ]
                        .iter()
                        .any(|shape| rule.contains(shape))
                    })
                    .count();
                assert!(
                    s != StatusCode::BAD_REQUEST && shape_errors == 0,
                    "{method} {path}: its example {example} is refused: {s} {v}"
                );
                examples += 1;
            }
        }
    }
    assert!(n >= 52, "{n} operations documented");
    assert!(examples >= 20, "{examples} request examples checked");
}

#[tokio::test]
async fn samples_for_a_deleted_pool_are_refused() {
    let app = App::new().await;
    let (_, pool) = app.fleet("acme").await;
    let push =
        json!({"samples": [{"pool_id": pool, "metric": "throughput", "value": 1}]}).to_string();
    let (s, v, _) = app
        .call("POST", "/api/v1/metrics", Some(ADMIN), Some(&push))
        .await;
    assert!(s.is_success(), "{s} {v}");
    // The pool's owner is now cached; deleting the pool forgets it.
    let (s, _, _) = app
        .call(
            "DELETE",
            &format!("/api/v1/pools/{pool}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert!(s.is_success());
    let (s, v, _) = app
        .call("POST", "/api/v1/metrics", Some(ADMIN), Some(&push))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(fields(&v), ["samples[0].pool_id"]);
}

#[tokio::test]
async fn tokens_are_listed_without_secrets_and_revoked_at_once() {
    let app = App::new().await;
    let (t1, _) = app.fleet("one").await;
    let (t2, _) = app.fleet("two").await;
    let admin1 = app.token(&t1, "admin").await;
    let viewer1 = app.token(&t1, "viewer").await;
    let operator2 = app.token(&t2, "operator").await;
    // The global admin lists every stored token; never a secret or hash.
    let all = app.admin("GET", "/api/v1/tokens", Value::Null).await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{all}");
    for t in items {
        let keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["created_at", "id", "name", "role", "tenant_id"],
            "{t}"
        );
    }
    // A tenant admin sees its own tenant's tokens only; asking for another
    // tenant is a 404; a viewer may not list tokens.
    let (s, own, _) = app.call("GET", "/api/v1/tokens", Some(&admin1), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(own["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["tenant_id"] == t1.as_str()));
    assert_eq!(own["items"].as_array().unwrap().len(), 2);
    let other = format!("/api/v1/tokens?tenant_id={t2}");
    assert_eq!(
        app.call("GET", &other, Some(&admin1), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call("GET", "/api/v1/tokens", Some(&viewer1), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let id_of = |name: &str, tenant: &str| {
        items
            .iter()
            .find(|t| t["name"] == name && t["tenant_id"] == tenant)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let viewer1_id = id_of("viewer-token", &t1);
    let operator2_id = id_of("operator-token", &t2);
    // The viewer works (and its grant is now cached) until it is revoked,
    // then fails at once on this replica.
    assert_eq!(
        app.call("GET", "/api/v1/pools", Some(&viewer1), None)
            .await
            .0,
        StatusCode::OK
    );
    // A tenant admin cannot revoke another tenant's token (404, as if it
    // did not exist), and nobody can revoke an unknown one.
    let revoke2 = format!("/api/v1/tokens/{operator2_id}");
    assert_eq!(
        app.call("DELETE", &revoke2, Some(&admin1), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call("DELETE", "/api/v1/tokens/nope", Some(ADMIN), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let revoke1 = format!("/api/v1/tokens/{viewer1_id}");
    assert_eq!(
        app.call("DELETE", &revoke1, Some(&admin1), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call("GET", "/api/v1/pools", Some(&viewer1), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call("DELETE", &revoke1, Some(&admin1), None).await.0,
        StatusCode::NOT_FOUND
    );
    // The other tenant's operator still works; the revocation is audited
    // with the revoking admin as the actor.
    assert_eq!(
        app.call("GET", "/api/v1/pools", Some(&operator2), None)
            .await
            .0,
        StatusCode::OK
    );
    let audit = app.admin("GET", "/api/v1/audit", Value::Null).await;
    let revoked = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "token.revoke")
        .unwrap();
    assert_eq!(revoked["object_id"], viewer1_id.as_str());
    assert_eq!(revoked["actor"], "admin-token");
    assert_eq!(revoked["tenant_id"], t1.as_str());
}

#[tokio::test]
async fn the_last_global_admin_token_is_kept_without_an_environment_token() {
    let dir = fresh_dir();
    let store = Store::open_sqlite(&dir).await.unwrap();
    // A server with no FLEETSCALE_ADMIN_TOKEN: one stored global admin.
    let state = AppState::new(store.clone());
    store
        .ensure_admin_token(&hash_token("stored-admin"), "bootstrap")
        .await
        .unwrap();
    let app = App {
        state,
        dir: dir.clone(),
    };
    let list = app
        .call("GET", "/api/v1/tokens", Some("stored-admin"), None)
        .await
        .1;
    let id = list["items"][0]["id"].as_str().unwrap().to_string();
    let (s, v, ctype) = app
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{id}"),
            Some("stored-admin"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "last_admin_token");
    assert_eq!(ctype, "application/problem+json");
    // With a second global admin, the first one can go.
    let second = app
        .call(
            "POST",
            "/api/v1/tokens",
            Some("stored-admin"),
            Some(r#"{"role": "admin", "name": "second"}"#),
        )
        .await
        .1;
    let second = second["token"].as_str().unwrap().to_string();
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/api/v1/tokens/{id}"),
            Some(&second),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call("GET", "/api/v1/tokens", Some("stored-admin"), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_new_region_starts_with_the_seed_monthly_budget_on_its_ledger() {
    let app = App::new().await;
    let r = app
        .admin(
            "POST",
            "/api/v1/regions",
            json!({"name": "eu-west", "jurisdiction": "eu"}),
        )
        .await;
    assert_eq!(r["monthly_budget_cents"], 100_000);
    let b = app
        .admin("GET", "/api/v1/regions/eu-west/budget", Value::Null)
        .await;
    assert_eq!(
        (b["monthly_cents"].as_i64(), b["remaining_cents"].as_i64()),
        (Some(100_000), Some(100_000)),
        "{b}"
    );
    let txs = app
        .admin(
            "GET",
            "/api/v1/regions/eu-west/budget/transactions",
            Value::Null,
        )
        .await;
    let items = txs["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{txs}");
    assert_eq!(items[0]["transaction_type"], "allocation");
    assert_eq!(items[0]["amount_cents"], 100_000);
    assert_eq!(items[0]["description"], "initial monthly budget");
    let check = app
        .admin(
            "GET",
            "/api/v1/regions/eu-west/budget/ledger-check",
            Value::Null,
        )
        .await;
    assert_eq!(check["ok"], true, "{check}");
    // The creator names the budget, or none with 0.
    app.admin(
        "POST",
        "/api/v1/regions",
        json!({"name": "us-east", "jurisdiction": "us", "monthly_budget_cents": 250_000}),
    )
    .await;
    let b = app
        .admin("GET", "/api/v1/regions/us-east/budget", Value::Null)
        .await;
    assert_eq!(b["monthly_cents"], 250_000);
    app.admin(
        "POST",
        "/api/v1/regions",
        json!({"name": "ap-south", "jurisdiction": "in", "monthly_budget_cents": 0}),
    )
    .await;
    let b = app
        .admin("GET", "/api/v1/regions/ap-south/budget", Value::Null)
        .await;
    assert_eq!(b["monthly_cents"], 0);
    // Bad budgets are refused before the region is created.
    for bad in [
        json!(-5),
        json!(1.5),
        json!("100"),
        json!(10_000_000_000_000_i64),
    ] {
        let body = json!({"name": "bad", "jurisdiction": "eu", "monthly_budget_cents": bad});
        let (s, v, _) = app
            .call(
                "POST",
                "/api/v1/regions",
                Some(ADMIN),
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert_eq!(v["errors"][0]["field"], "monthly_budget_cents", "{v}");
    }
    assert_eq!(
        app.call("GET", "/api/v1/regions/bad", Some(ADMIN), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn readiness_and_region_creation_while_the_budget_writer_refuses_writes() {
    let dir = fresh_dir();
    let store = Store::open_sqlite(&dir).await.unwrap();
    // The budget writer opens the file a second time: take it away first,
    // so the writer finds a database without the budget tables and stops.
    let db = store.sqlite_path().unwrap().to_path_buf();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(&p);
    }
    let mut state = AppState::new(store);
    state.admin_token_hash = Some(Arc::from(hash_token(ADMIN)));
    let app = App {
        state,
        dir: dir.clone(),
    };
    for _ in 0..100 {
        if app.state.engine.budgets.stopped().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (s, v, _) = app.call("GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("budget writer"),
        "{v}"
    );
    // A region created meanwhile exists (201), and its answer says that its
    // first budget was not allocated and how to allocate it.
    let body = json!({"name": "eu-west", "jurisdiction": "eu"}).to_string();
    let (s, r, _) = app
        .call("POST", "/api/v1/regions", Some(ADMIN), Some(&body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["monthly_budget_cents"], 0, "{r}");
    let why = r["initial_budget_error"].as_str().unwrap();
    assert!(
        why.contains("100000 cents was not allocated") && why.contains("/budget/allocate"),
        "{why}"
    );
}

#[tokio::test]
async fn an_unknown_list_parameter_is_refused_by_name() {
    let app = App::new().await;
    for path in [
        "/api/v1/pools?tenant=x",
        "/api/v1/scaling-events?pool=x",
        "/api/v1/tenants?page=2",
        "/api/v1/audit?since=yesterday",
    ] {
        let (s, v, _) = app.call("GET", path, Some(ADMIN), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        let detail = v["detail"].as_str().unwrap();
        let name = path.split('?').nth(1).unwrap().split('=').next().unwrap();
        assert!(detail.contains(name), "{path}: {detail}");
    }
}

#[tokio::test]
async fn readyz_reports_a_background_job_waiting_to_restart() {
    let app = App::new().await;
    let (_stop, rx) = tokio::sync::watch::channel(false);
    app.state
        .supervisor
        .spawn("doomed", rx, || async { panic!("invariant broken") });
    let mut seen = None;
    for _ in 0..1000 {
        let (s, v, _) = app.call("GET", "/readyz", None, None).await;
        if s == StatusCode::SERVICE_UNAVAILABLE {
            seen = Some(v);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let v = seen.expect("readyz stays 200 while a job is down");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("doomed (panicked: invariant broken)"),
        "{detail}"
    );
    let engine = app.admin("GET", "/api/v1/engine", Value::Null).await;
    let task = engine["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "doomed")
        .unwrap();
    assert_eq!(task["state"], "backing_off", "{engine}");
    assert_eq!(task["restarts"], 1, "{engine}");
}

#[tokio::test]
async fn an_unknown_proposal_status_filter_is_refused_by_name() {
    let app = App::new().await;
    let (s, v, _) = app
        .call("GET", "/api/v1/proposals?status=maybe", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("status") && detail.contains("pending, approved, rejected, superseded"),
        "{detail}"
    );
    let (s, v, _) = app
        .call("GET", "/api/v1/proposals?status=pending", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn region_state_is_readable_before_and_after_the_leader_stores_it() {
    let app = App::new().await;
    let (tid, _) = app.fleet("acme").await;
    let posting = app
        .admin("POST", "/api/v1/pools", pool_body(&tid, "posting"))
        .await;
    // Before any tick: computed for the request, not yet stored.
    let s = app
        .admin("GET", "/api/v1/regions/eu-west/state", Value::Null)
        .await;
    assert_eq!(s["region"], "eu-west");
    assert_eq!(s["scaling_mode"], "normal");
    assert_eq!(s["updated_at"], Value::Null, "{s}");
    // 18 of 2 × 10 on the posting pool: pressure 90; the tick stores it.
    app.admin(
        "POST",
        "/api/v1/metrics",
        json!({"samples": [{"pool_id": posting["id"], "metric": "throughput", "value": 18}]}),
    )
    .await;
    app.tick().await;
    let s = app
        .admin("GET", "/api/v1/regions/eu-west/state", Value::Null)
        .await;
    assert!(s["updated_at"].is_string(), "{s}");
    assert_eq!(s["pressure"]["posting"], 90.0, "{s}");
    assert_eq!(s["pressure"]["overall"], 90.0, "only posting has a pool");
    assert_eq!(s["scaling_mode"], "throttled", "pressure 90 > 75: {s}");
    assert_eq!(s["active_tenants"], 1);
    let (st, v, _) = app
        .call("GET", "/api/v1/regions/mars-1/state", Some(ADMIN), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test]
async fn region_level_samples_need_a_global_token_and_a_known_region() {
    let app = App::new().await;
    let (tid, _) = app.fleet("acme").await;
    let ok = app
        .admin(
            "POST",
            "/api/v1/metrics",
            json!({"samples": [
                {"region": "eu-west", "metric": "latency_ms", "value": 42},
                {"region": "eu-west", "metric": "queue_depth", "value": 7}
            ]}),
        )
        .await;
    assert_eq!(ok["accepted"], 2);
    let operator = app.token(&tid, "operator").await;
    for (body, token, field) in [
        (
            json!({"samples": [{"region": "eu-west", "metric": "latency_ms", "value": 1}]}),
            operator.as_str(),
            "samples[0].region",
        ),
        (
            json!({"samples": [{"region": "mars-1", "metric": "latency_ms", "value": 1}]}),
            ADMIN,
            "samples[0].region",
        ),
        (
            json!({"samples": [{"metric": "latency_ms", "value": 1}]}),
            ADMIN,
            "samples[0].pool_id",
        ),
    ] {
        let (st, v, _) = app
            .call(
                "POST",
                "/api/v1/metrics",
                Some(token),
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(fields(&v), [field], "{v}");
    }
    // The newest region-level queue depth is the region's jobs in queue.
    app.tick().await;
    let s = app
        .admin("GET", "/api/v1/regions/eu-west/state", Value::Null)
        .await;
    assert_eq!(s["jobs_in_queue"], 7, "{s}");
}

#[tokio::test]
async fn a_pools_job_kind_sets_the_pressure_it_counts_toward() {
    let app = App::new().await;
    let (tid, _) = app.fleet("acme").await;
    let mut body = pool_body(&tid, "illustrator");
    body["job_kind"] = json!("painting");
    let (st, v, _) = app
        .call(
            "POST",
            "/api/v1/pools",
            Some(ADMIN),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(fields(&v), ["job_kind"], "{v}");
    body["job_kind"] = json!("creative");
    let p = app.admin("POST", "/api/v1/pools", body).await;
    assert_eq!(p["job_kind"], "creative");
    app.admin(
        "POST",
        "/api/v1/metrics",
        json!({"samples": [{"pool_id": p["id"], "metric": "throughput", "value": 10}]}),
    )
    .await;
    app.tick().await;
    let s = app
        .admin("GET", "/api/v1/regions/eu-west/state", Value::Null)
        .await;
    assert_eq!(s["pressure"]["creative"], 50.0, "10 of 2 × 10: {s}");
    // A patch keeps the kind unless it names another.
    let pid = p["id"].as_str().unwrap();
    let p = app
        .admin(
            "PATCH",
            &format!("/api/v1/pools/{pid}"),
            json!({"max_capacity": 8}),
        )
        .await;
    assert_eq!(p["job_kind"], "creative");
    let p = app
        .admin(
            "PATCH",
            &format!("/api/v1/pools/{pid}"),
            json!({"job_kind": "intel"}),
        )
        .await;
    assert_eq!(p["job_kind"], "intel");
}

#[tokio::test]
async fn a_pools_kubernetes_target_is_validated_shown_and_cleared() {
    let app = App::new().await;
    let (tid, _) = app.fleet("acme").await;
    let mut body = pool_body(&tid, "illustrator");
    body["target"] = json!({"kind": "DaemonSet", "namespace": "Agents", "name": "w"});
    let (st, v, _) = app
        .call(
            "POST",
            "/api/v1/pools",
            Some(ADMIN),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(fields(&v), ["target.kind", "target.namespace"], "{v}");
    assert!(v.to_string().contains("DNS-1123 label"), "{v}");
    body["target"] = json!({"kind": "Deployment", "namespace": "agents", "name": "illustrator"});
    let p = app.admin("POST", "/api/v1/pools", body).await;
    assert_eq!(
        p["target"],
        json!({"kind": "Deployment", "namespace": "agents", "name": "illustrator"})
    );
    let pid = p["id"].as_str().unwrap();
    let p = app
        .admin(
            "PATCH",
            &format!("/api/v1/pools/{pid}"),
            json!({"max_capacity": 8}),
        )
        .await;
    assert_eq!(p["target"]["kind"], "Deployment", "a patch keeps it");
    let p = app
        .admin(
            "PATCH",
            &format!("/api/v1/pools/{pid}"),
            json!({"target": null}),
        )
        .await;
    assert_eq!(p["target"], Value::Null);
}

#[tokio::test]
async fn regions_health_sorts_and_names_conflicts_with_their_remedy() {
    let app = App::new().await;
    let (tid, _) = app.fleet("acme").await;
    app.admin(
        "POST",
        "/api/v1/regions",
        json!({"name": "eu-central", "jurisdiction": "eu"}),
    )
    .await;
    let hot = app
        .admin("POST", "/api/v1/pools", pool_body(&tid, "posting"))
        .await;
    let mut cool = pool_body(&tid, "posting");
    cool["region"] = json!("eu-central");
    let cool = app.admin("POST", "/api/v1/pools", cool).await;
    // eu-west: 19 of 2 × 10 = pressure 95; eu-central: 2 of 20 = 10.
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
    let h = app
        .admin(
            "GET",
            "/api/v1/regions/health?sort_by=pressure&order=desc&include_risk=true",
            Value::Null,
        )
        .await;
    let names: Vec<&str> = h["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["region"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eu-west", "eu-central"], "{h}");
    assert_eq!(
        h["regions"][0]["scaling_mode"], "frozen",
        "pressure 95 > 90: {h}"
    );
    assert!(h["regions"][0]["risk"].is_number(), "{h}");
    let risk = &h["global_risk"];
    let kinds: Vec<(&str, &str)> = risk["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["region"].as_str().unwrap()))
        .collect();
    for want in [
        ("frozen", "eu-west"),
        ("high_pressure", "eu-west"),
        ("imbalance", "eu-west"),
    ] {
        assert!(kinds.contains(&want), "{want:?} missing: {risk}");
    }
    let rebalance = risk["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "rebalance")
        .unwrap_or_else(|| panic!("no rebalance: {risk}"));
    assert_eq!(
        (rebalance["from"].as_str(), rebalance["to"].as_str()),
        (Some("eu-west"), Some("eu-central"))
    );
    // Without include_risk there is no risk; bad parameters are 400s by name.
    let h = app
        .admin("GET", "/api/v1/regions/health", Value::Null)
        .await;
    assert_eq!(h["global_risk"], Value::Null);
    assert_eq!(
        h["regions"][0]["region"], "eu-central",
        "by name by default"
    );
    for (q, name) in [
        ("sort_by=size", "sort_by"),
        ("order=up", "order"),
        ("verbose=1", "verbose"),
    ] {
        let (st, v, _) = app
            .call(
                "GET",
                &format!("/api/v1/regions/health?{q}"),
                Some(ADMIN),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(name), "{q}: {v}");
    }
}

#[tokio::test]
async fn region_snapshots_average_the_period_and_keep_history() {
    let app = App::new().await;
    let (tid, _) = app.fleet("acme").await;
    let posting = app
        .admin("POST", "/api/v1/pools", pool_body(&tid, "posting"))
        .await;
    app.admin(
        "POST",
        "/api/v1/metrics",
        json!({"samples": [{"pool_id": posting["id"], "metric": "throughput", "value": 10}]}),
    )
    .await;
    app.tick().await;
    app.admin(
        "POST",
        "/api/v1/regions/eu-west/budget/spend",
        json!({"amount_cents": 250, "job_type": "posting"}),
    )
    .await;
    let snap = app
        .admin(
            "POST",
            "/api/v1/regions/eu-west/snapshot",
            json!({"period_type": "daily"}),
        )
        .await;
    assert_eq!(snap["period_type"], "daily");
    assert_eq!(snap["budget_used_cents"], 250, "{snap}");
    assert_eq!(
        snap["peak_pressure"], 50.0,
        "10 of 2 × 10 at the tick: {snap}"
    );
    assert!(snap["avg_capacity"].is_number(), "{snap}");
    let got = app
        .admin(
            "GET",
            "/api/v1/regions/eu-west/snapshot?period_type=daily&include_history=true&periods=5",
            Value::Null,
        )
        .await;
    assert_eq!(got["snapshot"]["id"], snap["id"], "{got}");
    assert_eq!(got["summary"]["region"], "eu-west");
    assert!(!got["history"].as_array().unwrap().is_empty(), "{got}");
    // Bad input is a 4xx naming the field.
    for (method, path, body, want, field) in [
        (
            "POST",
            "/api/v1/regions/eu-west/snapshot",
            json!({"period_type": "monthly"}),
            422,
            "period_type",
        ),
        (
            "POST",
            "/api/v1/regions/eu-west/snapshot",
            json!({"period": "daily"}),
            422,
            "period",
        ),
        (
            "GET",
            "/api/v1/regions/eu-west/snapshot?periods=0",
            Value::Null,
            422,
            "periods",
        ),
    ] {
        let b = body.to_string();
        let (st, v, _) = app
            .call(
                method,
                path,
                Some(ADMIN),
                (!body.is_null()).then_some(b.as_str()),
            )
            .await;
        assert_eq!(st.as_u16(), want, "{path} {body}: {v}");
        assert!(v.to_string().contains(field), "{path}: {v}");
    }
    let viewer = app.token(&tid, "viewer").await;
    let (st, _, _) = app
        .call(
            "POST",
            "/api/v1/regions/eu-west/snapshot",
            Some(&viewer),
            Some(r#"{"period_type": "hourly"}"#),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn alerts_are_listed_newest_first() {
    let app = App::new().await;
    let store = &app.state.engine.store;
    let detail = json!({"global_risk": 80.0});
    store
        .insert_alert(
            "critical",
            "frozen",
            Some("eu-west"),
            "eu-west is frozen",
            &detail,
            1_000,
        )
        .await
        .unwrap();
    store
        .insert_alert(
            "critical",
            "global_risk",
            None,
            "global risk 80.0 is critical",
            &detail,
            2_000,
        )
        .await
        .unwrap();
    let page = app
        .admin("GET", "/api/v1/alerts?limit=1", Value::Null)
        .await;
    assert_eq!(page["items"][0]["kind"], "global_risk", "{page}");
    assert_eq!(page["items"][0]["region"], Value::Null);
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = app
        .admin(
            "GET",
            &format!("/api/v1/alerts?limit=1&cursor={cursor}"),
            Value::Null,
        )
        .await;
    assert_eq!(next["items"][0]["kind"], "frozen", "{next}");
    assert_eq!(next["items"][0]["delivery"], "none");
}
