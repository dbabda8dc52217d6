//! The dashboard's server side through the router: the embedded page and
//! its headers (CSP, ETag revalidation), `/me`, a pool's samples, and the
//! live stream (`/stream`): tenant scope, resume with `Last-Event-ID`,
//! bad input.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use fleetscale_server::router;
use support::{fields, App, ADMIN};

/// One server-sent event: its `event`, `id` and parsed `data`.
#[derive(Debug)]
struct Sse {
    event: String,
    id: Option<String>,
    data: Value,
}

/// An open stream, read event by event.
struct Stream {
    body: Body,
    buf: String,
}

impl Stream {
    async fn open(app: &App, token: &str, last_event_id: Option<&str>) -> Stream {
        let mut req =
            Request::get("/api/v1/stream").header("authorization", format!("Bearer {token}"));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = router(app.state.clone())
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Stream {
            body: res.into_body(),
            buf: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped), or `None` after `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some(Sse {
                    event,
                    id,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??;
            if let Ok(bytes) = frame.unwrap().into_data() {
                self.buf.push_str(std::str::from_utf8(&bytes).unwrap());
            }
        }
    }

    /// The next event of kind `event`, skipping others (engine status).
    async fn next_of(&mut self, event: &str, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let e = self.next(left).await?;
            if e.event == event {
                return Some(e);
            }
        }
    }
}

const WAIT: Duration = Duration::from_secs(5);

async fn scale(app: &App, tenant: &str, pool: &str, capacity: i64) -> String {
    let v = app
        .admin(
            "POST",
            "/api/v1/scale",
            json!({"tenant_id": tenant, "pool_id": pool, "capacity": capacity, "reason": format!("to {capacity}")}),
        )
        .await;
    v["event"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_stream_carries_only_the_tokens_tenant() {
    let app = App::new().await;
    let (ta, pa) = app.fleet("a").await;
    let (tb, pb) = app.fleet("b").await;
    let viewer_a = app.token(&ta, "viewer").await;
    let mut s = Stream::open(&app, &viewer_a, None).await;
    let hello = s.next(WAIT).await.unwrap();
    assert_eq!(hello.event, "hello");
    assert!(
        hello.data["engine"]["replica_id"].is_string(),
        "{:?}",
        hello.data
    );
    let eb = scale(&app, &tb, &pb, 3).await;
    let ea = scale(&app, &ta, &pa, 4).await;
    let got = s.next_of("scaling", WAIT).await.expect("A's scaling event");
    assert_eq!(
        got.data["event"]["id"], ea,
        "B's event {eb} must not reach A"
    );
    assert_eq!(got.data["tenant_id"], ta);
    assert_eq!(got.data["event"]["new_capacity"], 4);
    assert_eq!(got.id.as_deref(), got.data["id"].as_str());
    // A global admin sees both tenants' changes, in journal order.
    let mut all = Stream::open(&app, ADMIN, None).await;
    assert_eq!(all.next(WAIT).await.unwrap().event, "hello");
    let e1 = scale(&app, &tb, &pb, 2).await;
    let e2 = scale(&app, &ta, &pa, 3).await;
    let first = all.next_of("scaling", WAIT).await.unwrap();
    let second = all.next_of("scaling", WAIT).await.unwrap();
    assert_eq!(first.data["event"]["id"], e1);
    assert_eq!(second.data["event"]["id"], e2);
    assert!(first.id < second.id, "ids follow the journal's order");
    // A's viewer got A's second change and still nothing of B's.
    let next = s.next_of("scaling", WAIT).await.unwrap();
    assert_eq!(next.data["event"]["id"], e2);
}

#[tokio::test]
async fn the_stream_resumes_after_last_event_id_with_what_was_missed() {
    let app = App::new().await;
    let (t, p) = app.fleet("a").await;
    let mut s = Stream::open(&app, ADMIN, None).await;
    let e1 = scale(&app, &t, &p, 3).await;
    let got = s.next_of("scaling", WAIT).await.unwrap();
    assert_eq!(got.data["event"]["id"], e1);
    let last = got.id.unwrap();
    drop(s);
    // Missed while disconnected: two scalings and a pool lock.
    let e2 = scale(&app, &t, &p, 4).await;
    app.admin(
        "PUT",
        &format!("/api/v1/pools/{p}/safety-lock"),
        json!({"locked": true}),
    )
    .await;
    let e3 = scale(&app, &t, &p, 5).await;
    let mut s = Stream::open(&app, ADMIN, Some(&last)).await;
    assert_eq!(s.next(WAIT).await.unwrap().event, "hello");
    let a = s.next_of("scaling", WAIT).await.unwrap();
    assert_eq!(
        a.data["event"]["id"], e2,
        "the first missed change, not {e1}"
    );
    let lock = s.next_of("pool", WAIT).await.unwrap();
    assert_eq!(lock.data["action"], "pool.lock");
    assert_eq!(lock.data["object_id"], p);
    let b = s.next_of("scaling", WAIT).await.unwrap();
    assert_eq!(b.data["event"]["id"], e3);
    assert!(
        s.next_of("scaling", Duration::from_millis(1500))
            .await
            .is_none(),
        "nothing is sent twice"
    );
}

#[tokio::test]
async fn proposals_and_budget_changes_reach_the_stream() {
    let app = App::new().await;
    let (t, _) = app.fleet("a").await;
    let mut body = support::pool_body(&t, "reviewer");
    body["mode"] = json!("recommend");
    let pool = app.admin("POST", "/api/v1/pools", body).await;
    let pid = pool["id"].as_str().unwrap();
    let mut s = Stream::open(&app, ADMIN, None).await;
    app.admin(
        "POST",
        "/api/v1/metrics",
        json!({"samples": [{"pool_id": pid, "metric": "throughput", "value": 100.0}]}),
    )
    .await;
    // Metrics are group-committed: tick until the proposal is made.
    let mut proposal = None;
    for _ in 0..50 {
        app.tick().await;
        let v = app
            .admin(
                "GET",
                &format!("/api/v1/proposals?pool_id={pid}&status=pending"),
                Value::Null,
            )
            .await;
        if let Some(id) = v["items"][0]["id"].as_str() {
            proposal = Some(id.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let proposal = proposal.expect("a proposal");
    let made = s.next_of("proposal", WAIT).await.unwrap();
    assert_eq!(made.data["action"], "proposal.create");
    assert_eq!(made.data["proposal"]["id"], proposal.as_str());
    app.admin(
        "POST",
        &format!("/api/v1/proposals/{proposal}/approve"),
        json!({}),
    )
    .await;
    let approved = s.next_of("proposal", WAIT).await.unwrap();
    assert_eq!(approved.data["action"], "proposal.approve");
    assert_eq!(approved.data["proposal"]["status"], "approved");
    let region = app
        .admin("GET", "/api/v1/regions/eu-west", Value::Null)
        .await;
    let rid = region["id"].as_str().unwrap();
    app.admin(
        "POST",
        &format!("/api/v1/regions/{rid}/budget/allocate"),
        json!({"amount_cents": 500}),
    )
    .await;
    let budget = s.next_of("budget", WAIT).await.unwrap();
    assert_eq!(budget.data["action"], "budget.allocation");
    assert_eq!(budget.data["detail"]["amount_cents"], 500);
}

#[tokio::test]
async fn the_stream_refuses_bad_input_and_unknown_tokens() {
    let app = App::new().await;
    let (s, v, _) = app.call("GET", "/api/v1/stream", None, None).await;
    assert_eq!(s, 401, "{v}");
    let (s, _, _) = app
        .call("GET", "/api/v1/stream", Some("fs_wrong"), None)
        .await;
    assert_eq!(s, 401);
    let (s, v, ctype) = app
        .call("GET", "/api/v1/stream?last_event_id=42", Some(ADMIN), None)
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(fields(&v), ["Last-Event-ID"]);
    let (s, v, _) = app
        .call("GET", "/api/v1/stream?since=1", Some(ADMIN), None)
        .await;
    assert_eq!(s, 400, "an unknown parameter is named: {v}");
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_csp_and_revalidated_by_etag() {
    let app = App::new().await;
    let res = router(app.state.clone())
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    for rule in [
        "default-src 'self'",
        "connect-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(rule), "{csp} lacks {rule}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("http"),
        "{csp}"
    );
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let html = res.into_body().collect().await.unwrap().to_bytes();
    assert!(std::str::from_utf8(&html)
        .unwrap()
        .contains("/assets/app.js"));
    let etag = h["etag"].to_str().unwrap();
    let res = router(app.state.clone())
        .oneshot(
            Request::get("/")
                .header("if-none-match", etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    let (s, body) = app.text("/assets/app.js").await;
    assert_eq!(s, 200);
    assert!(body.contains("/api/v1/stream"));
    let (s, body) = app.text("/assets/views.json").await;
    assert_eq!(s, 200);
    let views: Vec<String> = serde_json::from_str(&body).unwrap();
    for v in [
        "views/pools.js",
        "views/timeline.js",
        "views/proposals.js",
        "views/routing.js",
    ] {
        assert!(views.iter().any(|x| x == v), "{v} not in {views:?}");
    }
    let (s, body) = app.text("/assets/vendor/uplot/LICENSE").await;
    assert_eq!(s, 200);
    assert!(body.contains("MIT"));
    let (s, _) = app.text("/assets/nope.js").await;
    assert_eq!(s, 404);
    let (s, _) = app.text("/assets/../Cargo.toml").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn me_names_the_role_and_scope() {
    let app = App::new().await;
    let (t, _) = app.fleet("a").await;
    let viewer = app.token(&t, "viewer").await;
    let me = app
        .expect("GET", "/api/v1/me", &viewer, Value::Null, 200)
        .await;
    assert_eq!(me["role"], "viewer");
    assert_eq!(me["tenant_id"], t);
    assert_eq!(me["can_operate"], false);
    assert_eq!(me["global_admin"], false);
    let me = app
        .expect("GET", "/api/v1/me", ADMIN, Value::Null, 200)
        .await;
    assert_eq!(me["global_admin"], true);
    assert_eq!(me["can_administer"], true);
    let (s, _, _) = app.call("GET", "/api/v1/me", Some("nope"), None).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn a_pools_samples_are_its_metric_over_the_window_in_scope() {
    let app = App::new().await;
    let (t, p) = app.fleet("a").await;
    let (_, other) = app.fleet("b").await;
    let now = fleetscale_store::now_ms();
    app.state
        .engine
        .store
        .insert_samples(&[
            fleetscale_store::Sample {
                pool_id: p.clone(),
                metric: "throughput".into(),
                ts_ms: now - 120_000,
                value: 5.0,
            },
            fleetscale_store::Sample {
                pool_id: p.clone(),
                metric: "throughput".into(),
                ts_ms: now - 60_000,
                value: 7.0,
            },
            fleetscale_store::Sample {
                pool_id: p.clone(),
                metric: "throughput".into(),
                ts_ms: now - 7_200_000,
                value: 1.0,
            },
            fleetscale_store::Sample {
                pool_id: p.clone(),
                metric: "cpu".into(),
                ts_ms: now - 60_000,
                value: 50.0,
            },
        ])
        .await
        .unwrap();
    let viewer = app.token(&t, "viewer").await;
    let v = app
        .expect(
            "GET",
            &format!("/api/v1/pools/{p}/samples"),
            &viewer,
            Value::Null,
            200,
        )
        .await;
    assert_eq!(v["metric"], "throughput");
    let values: Vec<f64> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, [5.0, 7.0], "the last hour, oldest first");
    assert_eq!(v["truncated"], false);
    let v = app
        .expect(
            "GET",
            &format!("/api/v1/pools/{p}/samples?metric=cpu&limit=1"),
            &viewer,
            Value::Null,
            200,
        )
        .await;
    assert_eq!(v["points"][0]["value"], 50.0);
    let v = app
        .expect(
            "GET",
            &format!("/api/v1/pools/{p}/samples?window_seconds=10800&limit=1"),
            &viewer,
            Value::Null,
            200,
        )
        .await;
    assert_eq!(v["truncated"], true);
    assert_eq!(v["points"][0]["value"], 1.0);
    let v = app
        .expect(
            "GET",
            &format!("/api/v1/pools/{p}/samples?window_seconds=0"),
            &viewer,
            Value::Null,
            422,
        )
        .await;
    assert_eq!(fields(&v), ["window_seconds"]);
    let v = app
        .expect(
            "GET",
            &format!("/api/v1/pools/{p}/samples?limit=10001"),
            &viewer,
            Value::Null,
            422,
        )
        .await;
    assert_eq!(fields(&v), ["limit"]);
    app.expect(
        "GET",
        &format!("/api/v1/pools/{other}/samples"),
        &viewer,
        Value::Null,
        404,
    )
    .await;
}

#[tokio::test]
async fn the_openapi_document_types_the_dashboards_endpoints() {
    let app = App::new().await;
    let (_, doc) = app.text("/api/v1/openapi.json").await;
    let doc: Value = serde_json::from_str(&doc).unwrap();
    for path in ["/api/v1/me", "/api/v1/stream", "/api/v1/pools/{id}/samples"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} missing");
    }
    for schema in ["MeView", "StreamMessage", "SamplesView", "EngineView"] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    assert!(
        doc["paths"]["/api/v1/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"]
            .is_object()
    );
    let engine = &doc["components"]["schemas"]["EngineView"]["properties"];
    for f in [
        "last_tick_at",
        "last_tick_duration_ms",
        "actuation_failures",
        "ticks",
    ] {
        assert!(engine[f].is_object(), "EngineView.{f} missing");
    }
}
