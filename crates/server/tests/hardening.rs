//! Hostile input through the router: oversized and slow bodies, sample
//! values at and beyond their bound, unbounded free text, idempotency keys
//! reused with other fields, non-object bodies, and list filters naming
//! unknown objects or invalid values.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use fleetscale_server::router;
use support::{App, ADMIN};

/// Sends `req` through the router: status, content type and JSON body.
async fn raw(app: &App, req: Request<Body>) -> (StatusCode, String, Value) {
    let res = router(app.state.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        ctype,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn an_oversized_body_is_a_413_problem() {
    let app = App::new().await;
    let big = format!(
        "{{\"name\": \"{}\"}}",
        "a".repeat(fleetscale_server::error::MAX_BODY_BYTES)
    );
    // Streamed without a length, and declared by Content-Length.
    for declared in [false, true] {
        let mut req = Request::post("/api/v1/tenants")
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", "application/json");
        if declared {
            req = req.header("content-length", big.len().to_string());
        }
        let body = if declared {
            Body::from(big.clone())
        } else {
            let chunks: Vec<Result<String, std::io::Error>> = big
                .as_bytes()
                .chunks(1 << 20)
                .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
                .collect();
            Body::from_stream(futures::stream::iter(chunks))
        };
        let (s, ctype, v) = raw(&app, req.body(body).unwrap()).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
        assert_eq!(ctype, "application/problem+json");
        assert_eq!(v["status"], 413);
        assert!(
            v["detail"].as_str().unwrap().contains("8388608 bytes"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408_problem() {
    let mut app = App::new().await;
    app.state.body_read_timeout = Duration::from_millis(300);
    let first: Vec<Result<&'static str, std::io::Error>> = vec![Ok("{\"name\": ")];
    let stalled =
        futures::StreamExt::chain(futures::stream::iter(first), futures::stream::pending());
    let req = Request::post("/api/v1/tenants")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(Body::from_stream(stalled))
        .unwrap();
    let (s, ctype, v) = tokio::time::timeout(Duration::from_secs(20), raw(&app, req))
        .await
        .expect("the stalled body was waited for without end");
    assert_eq!(s, StatusCode::REQUEST_TIMEOUT, "{v}");
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(v["status"], 408);
}

#[tokio::test]
async fn sample_values_at_the_bound_decide_and_beyond_it_are_refused() {
    use fleetscale_core::observe::MAX_SAMPLE_VALUE;
    let app = App::new().await;
    let (tid, pool) = app.fleet("acme").await;
    // Beyond the bound, up to the largest double: a 422 naming the value.
    for value in [MAX_SAMPLE_VALUE * (1.0 + f64::EPSILON), 1.7e308, f64::MAX] {
        let v = app
            .expect(
                "POST",
                "/api/v1/metrics",
                ADMIN,
                json!({"samples": [{"pool_id": pool, "metric": "throughput", "value": value}]}),
                422,
            )
            .await;
        assert_eq!(support::fields(&v), ["samples[0].value"], "{v}");
        assert!(
            v["errors"][0]["rule"].as_str().unwrap().contains("1e15"),
            "{v}"
        );
    }
    // Two samples at the bound: a finite utilization, a scale-up decision.
    app.admin(
        "POST",
        "/api/v1/metrics",
        json!({"samples": [
            {"pool_id": pool, "metric": "throughput", "value": MAX_SAMPLE_VALUE},
            {"pool_id": pool, "metric": "throughput", "value": MAX_SAMPLE_VALUE}
        ]}),
    )
    .await;
    let plan = app
        .admin("POST", &format!("/api/v1/pools/{pool}/plan"), Value::Null)
        .await;
    assert_eq!(plan["should_scale"], true, "{plan}");
    assert_eq!(plan["target_capacity"], 3, "{plan}");
    let util = plan["inputs"]["utilization_pct"].as_f64().unwrap();
    assert!(util.is_finite() && util > 80.0, "{plan}");
    let cap = app
        .admin(
            "GET",
            &format!("/api/v1/capacity?tenant_id={tid}"),
            Value::Null,
        )
        .await;
    assert!(
        cap["pools"][0]["utilization"]
            .as_f64()
            .is_some_and(f64::is_finite),
        "{cap}"
    );
    assert_eq!(cap["pools"][0]["status"], "over", "{cap}");
}

#[tokio::test]
async fn an_evaluated_observation_beyond_the_sample_bound_is_refused() {
    let app = App::new().await;
    let body = json!({
        "spec": {"policies": [{"type": "queue", "messages_per_instance": 100, "max_queue_lag_seconds": 10}]},
        "observation": {"now_ms": 1714550400000_i64, "bounds": {"min": 1, "max": 50, "desired": 5},
            "capacity_per_instance": 10, "last_scaled_at_ms": null,
            "load": {"mean": 1.7e308, "count": 2, "newest_ts_ms": 1714550400000_i64},
            "queue": {"backlog": 1.7e308, "throughput_per_instance": 5, "observed_at_ms": 1714550400000_i64}}
    });
    let v = app
        .expect("POST", "/api/v1/policies/evaluate", ADMIN, body, 422)
        .await;
    let f = support::fields(&v);
    assert!(f.iter().any(|x| x == "observation.load.mean"), "{f:?}");
    assert!(f.iter().any(|x| x == "observation.queue.backlog"), "{f:?}");
}

/// A pending proposal of a recommend-mode pool of tenant `tid`'s fleet.
async fn pending_proposal(app: &App, pool: &str) -> String {
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
    app.tick().await;
    let props = app
        .admin("GET", "/api/v1/proposals?status=pending", Value::Null)
        .await;
    props["items"][0]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn every_free_text_field_is_capped() {
    let app = App::new().await;
    let (tid, pool) = app.fleet("acme").await;
    app.admin(
        "POST",
        "/api/v1/regions/eu-west/budget/allocate",
        json!({"amount_cents": 100000}),
    )
    .await;
    let spend = app
        .admin(
            "POST",
            "/api/v1/regions/eu-west/budget/spend",
            json!({"amount_cents": 100, "job_type": "creative"}),
        )
        .await;
    let tx = spend["transaction_id"].as_str().unwrap().to_string();
    let proposal = pending_proposal(&app, &pool).await;
    let long = "x".repeat(100_000);
    let pool_with = |field: &str| {
        let mut b = support::pool_body(&tid, "writer");
        b[field] = json!(long);
        b
    };
    let pool_agent = pool_with("agent_type");
    let pool_metric = pool_with("metric");
    let cases: Vec<(&str, String, Value, &str)> = vec![
        (
            "POST",
            "/api/v1/tenants".into(),
            json!({"name": long}),
            "name",
        ),
        (
            "POST",
            "/api/v1/regions".into(),
            json!({"name": long, "jurisdiction": "eu"}),
            "name",
        ),
        (
            "POST",
            "/api/v1/regions".into(),
            json!({"name": "r2", "jurisdiction": long}),
            "jurisdiction",
        ),
        (
            "POST",
            "/api/v1/tokens".into(),
            json!({"tenant_id": tid, "role": "viewer", "name": long}),
            "name",
        ),
        ("POST", "/api/v1/pools".into(), pool_agent, "agent_type"),
        ("POST", "/api/v1/pools".into(), pool_metric, "metric"),
        (
            "POST",
            "/api/v1/scale".into(),
            json!({"tenant_id": tid, "pool_id": pool, "capacity": 3, "reason": long}),
            "reason",
        ),
        (
            "POST",
            "/api/v1/metrics".into(),
            json!({"samples": [{"pool_id": pool, "metric": long, "value": 1}]}),
            "samples[0].metric",
        ),
        (
            "POST",
            "/api/v1/regions/eu-west/budget/allocate".into(),
            json!({"amount_cents": 1, "description": long}),
            "description",
        ),
        (
            "POST",
            "/api/v1/regions/eu-west/budget/spend".into(),
            json!({"amount_cents": 1, "job_type": long}),
            "job_type",
        ),
        (
            "POST",
            "/api/v1/regions/eu-west/budget/spend".into(),
            json!({"amount_cents": 1, "job_type": "creative", "agency_id": long}),
            "agency_id",
        ),
        (
            "POST",
            "/api/v1/regions/eu-west/budget/spend".into(),
            json!({"amount_cents": 1, "job_type": "creative", "idempotency_key": long}),
            "idempotency_key",
        ),
        (
            "POST",
            "/api/v1/regions/eu-west/budget/spend".into(),
            json!({"amount_cents": 1, "job_type": "creative", "description": long}),
            "description",
        ),
        (
            "POST",
            "/api/v1/regions/eu-west/budget/refund".into(),
            json!({"transaction_id": tx, "amount_cents": 1, "description": long}),
            "description",
        ),
        (
            "POST",
            "/api/v1/regions/eu-west/budget/refund".into(),
            json!({"transaction_id": long, "amount_cents": 1}),
            "transaction_id",
        ),
        (
            "POST",
            "/api/v1/regions/eu-west/budget/reserve".into(),
            json!({"amount_cents": 1, "job_type": "creative", "agency_id": long}),
            "agency_id",
        ),
        (
            "POST",
            "/api/v1/regions/eu-west/budget/reserve".into(),
            json!({"amount_cents": 1, "job_type": long}),
            "job_type",
        ),
        (
            "POST",
            format!("/api/v1/budgets/tenants/{tid}/usage"),
            json!({"provider": "claude", "units": 1, "description": long}),
            "description",
        ),
        (
            "POST",
            format!("/api/v1/budgets/tenants/{tid}/usage"),
            json!({"provider": "claude", "units": 1, "job_type": long}),
            "job_type",
        ),
        (
            "POST",
            format!("/api/v1/proposals/{proposal}/approve"),
            json!({"note": long}),
            "note",
        ),
        (
            "POST",
            format!("/api/v1/proposals/{proposal}/reject"),
            json!({"note": long}),
            "note",
        ),
        (
            "POST",
            "/api/v1/route".into(),
            json!({"tenant_id": tid, "workload_type": long, "agent_type": "writer"}),
            "workload_type",
        ),
        (
            "POST",
            "/api/v1/route".into(),
            json!({"tenant_id": tid, "workload_type": "chat", "agent_type": long}),
            "agent_type",
        ),
        (
            "POST",
            "/api/v1/route".into(),
            json!({"tenant_id": tid, "workload_type": "chat", "agent_type": "writer", "client_country": long}),
            "client_country",
        ),
        (
            "POST",
            "/api/v1/route".into(),
            json!({"tenant_id": tid, "workload_type": "chat", "agent_type": "writer", "preferred_regions": [long]}),
            "preferred_regions[0]",
        ),
        (
            "PUT",
            format!("/api/v1/tenants/{tid}/region-policy"),
            json!({"restricted_workloads": {"eu-west": [long]}}),
            "restricted_workloads.eu-west[0]",
        ),
        (
            "PUT",
            format!("/api/v1/tenants/{tid}/region-policy"),
            json!({"allowed_jurisdictions": [long]}),
            "allowed_jurisdictions[0]",
        ),
        (
            "PUT",
            format!("/api/v1/tenants/{tid}/region-policy"),
            json!({"data_residency": long}),
            "data_residency",
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body, field) in cases {
        let (s, v, _) = app
            .call(method, &path, Some(ADMIN), Some(&body.to_string()))
            .await;
        // A 422 naming the field: a length cap, or a format or reference
        // rule that bounds it as well.
        let named = support::fields(&v).iter().any(|f| f == field);
        if s != StatusCode::UNPROCESSABLE_ENTITY || !named {
            failures.push(format!(
                "{method} {path} {field}: {s} {}",
                v.to_string().chars().take(300).collect::<String>()
            ));
        }
    }
    assert!(failures.is_empty(), "uncapped:\n{}", failures.join("\n"));
    // Nothing of it was stored: the budget reads stay small.
    let b = app
        .admin(
            "GET",
            "/api/v1/regions/eu-west/budget/transactions",
            Value::Null,
        )
        .await;
    assert!(b.to_string().len() < 10_000, "{}", b.to_string().len());
}

#[tokio::test]
async fn an_idempotency_key_reused_with_any_other_field_is_a_409() {
    let app = App::new().await;
    app.fleet("acme").await;
    app.admin(
        "POST",
        "/api/v1/regions/eu-west/budget/allocate",
        json!({"amount_cents": 100000}),
    )
    .await;
    let first = json!({"amount_cents": 100, "job_type": "creative", "agency_id": "a1",
        "description": "first", "idempotency_key": "k1"});
    app.admin(
        "POST",
        "/api/v1/regions/eu-west/budget/spend",
        first.clone(),
    )
    .await;
    let same = app
        .admin(
            "POST",
            "/api/v1/regions/eu-west/budget/spend",
            first.clone(),
        )
        .await;
    assert_eq!(same["replayed"], true, "{same}");
    for (field, other) in [
        ("agency_id", json!("a2")),
        ("agency_id", Value::Null),
        ("description", json!("second")),
        ("amount_cents", json!(101)),
        ("job_type", json!("posting")),
    ] {
        let mut b = first.clone();
        b[field] = other;
        let v = app
            .expect(
                "POST",
                "/api/v1/regions/eu-west/budget/spend",
                ADMIN,
                b,
                409,
            )
            .await;
        assert_eq!(v["code"], "idempotency_key_reused", "{field}: {v}");
    }
    // Reservations likewise: another agency is another request.
    let r = json!({"amount_cents": 50, "job_type": "creative", "agency_id": "a1", "idempotency_key": "r1"});
    app.admin("POST", "/api/v1/regions/eu-west/budget/reserve", r.clone())
        .await;
    let mut other = r.clone();
    other["agency_id"] = json!("a2");
    let v = app
        .expect(
            "POST",
            "/api/v1/regions/eu-west/budget/reserve",
            ADMIN,
            other,
            409,
        )
        .await;
    assert_eq!(v["code"], "idempotency_key_reused", "{v}");
    // The ledger kept the first agency only.
    let t = app
        .admin(
            "GET",
            "/api/v1/regions/eu-west/budget/transactions",
            Value::Null,
        )
        .await;
    assert!(!t.to_string().contains("\"a2\""), "{t}");
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_refused_and_changes_nothing() {
    let app = App::new().await;
    let tid = app.tenant("acme").await;
    let path = format!("/api/v1/budgets/tenants/{tid}/providers/claude");
    app.admin(
        "PUT",
        &path,
        json!({"allocation_units": 5000000, "price_cents_per_million": 300, "hard_limit": true}),
    )
    .await;
    let before = app.admin("GET", &path, Value::Null).await;
    for body in ["[]", "[5000, 300, false]", "\"x\"", "5", "null", "true"] {
        let (s, v, _) = app.call("PUT", &path, Some(ADMIN), Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(support::fields(&v), ["body"], "{body}: {v}");
    }
    assert_eq!(app.admin("GET", &path, Value::Null).await, before);
    // The same rule on every body, e.g. a tenant or a pool.
    for path in ["/api/v1/tenants", "/api/v1/pools", "/api/v1/metrics"] {
        let (s, v, _) = app.call("POST", path, Some(ADMIN), Some("[]")).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {v}");
    }
    // Malformed JSON stays a 400.
    let (s, _, _) = app.call("PUT", &path, Some(ADMIN), Some("[1,")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn list_filters_follow_one_rule_unknown_objects_404_invalid_values_400() {
    let app = App::new().await;
    let (tid, _pool) = app.fleet("acme").await;
    let unknown = "01900000-0000-7000-8000-000000000000";
    for list in [
        "/api/v1/pools",
        "/api/v1/audit",
        "/api/v1/tokens",
        "/api/v1/capacity",
        "/api/v1/scaling-events",
        "/api/v1/proposals",
        "/api/v1/tenants",
        "/api/v1/budgets/tenants",
        "/api/v1/routing",
    ] {
        let path = format!("{list}?tenant_id={unknown}");
        let (s, v, _) = app.call("GET", &path, Some(ADMIN), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
        assert!(
            v["detail"].as_str().unwrap().contains("tenant"),
            "{path}: {v}"
        );
        // A known tenant still filters.
        let path = format!("{list}?tenant_id={tid}");
        let (s, v, _) = app.call("GET", &path, Some(ADMIN), None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
    }
    for list in [
        "/api/v1/pools",
        "/api/v1/audit",
        "/api/v1/tokens",
        "/api/v1/scaling-events",
        "/api/v1/proposals",
        "/api/v1/tenants",
        "/api/v1/regions",
        "/api/v1/alerts",
        "/api/v1/budgets",
        "/api/v1/budgets/tenants",
        "/api/v1/routing",
        "/api/v1/regions/eu-west/budget/transactions",
        &format!("/api/v1/budgets/tenants/{tid}/usage"),
    ] {
        for cursor in [
            "garbage",
            "zzzz-not-a-cursor",
            "01900000-0000-7000-8000-00000000000G",
        ] {
            let path = format!("{list}?cursor={cursor}");
            let (s, v, _) = app.call("GET", &path, Some(ADMIN), None).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
            assert!(
                v["detail"].as_str().unwrap().contains("cursor"),
                "{path}: {v}"
            );
        }
    }
    // A cursor from a page pages on.
    for _ in 0..3 {
        app.tenant(&format!("t{}", uuid::Uuid::new_v4().simple()))
            .await;
    }
    let first = app
        .admin("GET", "/api/v1/tenants?limit=2", Value::Null)
        .await;
    let next = first["next_cursor"].as_str().unwrap();
    let second = app
        .admin(
            "GET",
            &format!("/api/v1/tenants?limit=2&cursor={next}"),
            Value::Null,
        )
        .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 2, "{second}");
    for status in ["maybe", "PENDING"] {
        let path = format!("/api/v1/proposals?status={status}");
        let (s, v, _) = app.call("GET", &path, Some(ADMIN), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert!(
            v["detail"].as_str().unwrap().contains("status"),
            "{path}: {v}"
        );
    }
}
