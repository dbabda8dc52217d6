//! The routing API without a socket: tenant region and routing policies
//! (defaults, validation, audit), `POST /route` (happy path, each refusal
//! code, compliance never broken), outcomes and ejection, recorded
//! decisions (get, search, replay), tenant isolation and bad input.

mod support;

use serde_json::{json, Value};

use support::{fields, pool_body, App, ADMIN};

/// Regions `eu-west` (eu) and `us-east` (us), a tenant with a `writer`
/// pool in each: eu-west desired 2 of 5 (3 spare, capacity score 60),
/// us-east desired 4 of 5 (1 spare, 20). No latency samples anywhere, so
/// eu-west scores best. Returns the tenant id.
async fn world(app: &App, name: &str) -> String {
    for (r, j) in [("eu-west", "eu"), ("us-east", "us")] {
        let (s, _, _) = app
            .call("GET", &format!("/api/v1/regions/{r}"), Some(ADMIN), None)
            .await;
        if s.as_u16() == 404 {
            app.admin(
                "POST",
                "/api/v1/regions",
                json!({"name": r, "jurisdiction": j, "monthly_budget_cents": 0}),
            )
            .await;
        }
    }
    let tid = app.tenant(name).await;
    pool(app, &tid, "eu-west", "writer", 2).await;
    pool(app, &tid, "us-east", "writer", 4).await;
    tid
}

/// A `writer`-style pool of `agent` in `region` (max 5) at `desired`.
async fn pool(app: &App, tid: &str, region: &str, agent: &str, desired: i64) -> String {
    let mut b = pool_body(tid, agent);
    b["region"] = json!(region);
    b["desired_capacity"] = json!(desired);
    let p = app.admin("POST", "/api/v1/pools", b).await;
    p["id"].as_str().unwrap().to_string()
}

fn route_body(tid: &str, workload: &str) -> Value {
    json!({"tenant_id": tid, "workload_type": workload, "agent_type": "writer"})
}

async fn decisions(app: &App, tid: &str) -> Vec<Value> {
    let l = app
        .admin(
            "GET",
            &format!("/api/v1/routing?tenant_id={tid}"),
            Value::Null,
        )
        .await;
    l["items"].as_array().unwrap().clone()
}

fn candidate<'a>(v: &'a Value, region: &str) -> &'a Value {
    v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["region"] == region)
        .unwrap_or_else(|| panic!("no candidate {region} in {v}"))
}

#[tokio::test]
async fn a_route_is_answered_recorded_readable_and_replays_the_same() {
    let app = App::new().await;
    let tid = world(&app, "acme").await;
    let op = app.token(&tid, "operator").await;
    let mut body = route_body(&tid, "chat");
    body["preferred_regions"] = json!(["us-east"]);
    body["client_country"] = json!("DE");
    let d = app.expect("POST", "/api/v1/route", &op, body, 200).await;
    assert_eq!(d["selected_region"], "eu-west", "{d}");
    assert!(d["reason"]
        .as_str()
        .unwrap()
        .starts_with("score policy: eu-west"));
    // 0.6 × latency score 0 (no samples: 1000 ms) + 0.4 × capacity 60
    assert!((d["score"].as_f64().unwrap() - 24.0).abs() < 1e-9, "{d}");
    assert_eq!(d["sla_context"]["region_mode"], "normal");
    assert_eq!(d["sla_context"]["jurisdiction"], "eu");
    assert_eq!(d["sla_context"]["compliant_regions"], 2);
    assert_eq!(d["performance_context"]["latency_ms"], 1000.0);
    assert_eq!(d["performance_context"]["capacity_score"], 60.0);
    assert_eq!(d["performance_context"]["spare_instances"], 3);
    assert_eq!(d["performance_context"]["policy"], "score");
    // the preferred region got its bonus: 0.4 × 20 + 10
    assert_eq!(candidate(&d, "us-east")["score"], 18.0);
    assert_eq!(candidate(&d, "us-east")["eligible"], true);

    let id = d["id"].as_str().unwrap();
    let got = app
        .expect(
            "GET",
            &format!("/api/v1/routing/{id}"),
            &op,
            Value::Null,
            200,
        )
        .await;
    assert_eq!(got["selected_region"], "eu-west");
    assert_eq!(got["input"]["request_id"], id);
    assert_eq!(got["input"]["client_country"], "DE");
    assert_eq!(got["input"]["routing_policy"]["type"], "score");
    assert_eq!(got["candidates"], d["candidates"]);
    let r = app
        .expect(
            "POST",
            &format!("/api/v1/routing/{id}/replay"),
            &op,
            Value::Null,
            200,
        )
        .await;
    assert_eq!(
        (&r["selected_region"], &r["same"]),
        (&json!("eu-west"), &json!(true))
    );
    let l = decisions(&app, &tid).await;
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["id"], id);
    for q in ["selected_region=eu-west", "workload_type=chat", "since=0"] {
        let l = app
            .admin(
                "GET",
                &format!("/api/v1/routing?tenant_id={tid}&{q}"),
                Value::Null,
            )
            .await;
        assert_eq!(l["items"].as_array().unwrap().len(), 1, "{q}");
    }
    for q in [
        "selected_region=us-east",
        "workload_type=voice",
        "since=2999-01-01T00:00:00Z",
    ] {
        let l = app
            .admin(
                "GET",
                &format!("/api/v1/routing?tenant_id={tid}&{q}"),
                Value::Null,
            )
            .await;
        assert!(l["items"].as_array().unwrap().is_empty(), "{q}");
    }
}

#[tokio::test]
async fn refusals_are_409_with_their_code_and_record_nothing() {
    let app = App::new().await;
    let tid = world(&app, "acme").await;
    app.admin(
        "PUT",
        &format!("/api/v1/tenants/{tid}/region-policy"),
        json!({"allowed_jurisdictions": ["in"]}),
    )
    .await;
    let p = app
        .expect(
            "POST",
            "/api/v1/route",
            ADMIN,
            route_body(&tid, "chat"),
            409,
        )
        .await;
    assert_eq!(p["code"], "no_compliant_region", "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("eu-west (non_compliant)"), "{detail}");

    // A compliant region exists (eu-west), but the tenant has no pool of
    // that agent type with spare capacity there.
    app.admin(
        "PUT",
        &format!("/api/v1/tenants/{tid}/region-policy"),
        json!({"allowed_jurisdictions": ["eu"]}),
    )
    .await;
    let mut b = route_body(&tid, "chat");
    b["agent_type"] = json!("painter");
    let p = app.expect("POST", "/api/v1/route", ADMIN, b, 409).await;
    assert_eq!(p["code"], "no_available_region", "{p}");
    assert!(p["detail"]
        .as_str()
        .unwrap()
        .contains("eu-west (no_spare_capacity)"));
    assert!(decisions(&app, &tid).await.is_empty(), "nothing recorded");
}

#[tokio::test]
async fn a_restricted_workload_never_lands_where_it_is_restricted() {
    let app = App::new().await;
    let tid = world(&app, "acme").await;
    app.admin(
        "PUT",
        &format!("/api/v1/tenants/{tid}/region-policy"),
        json!({"restricted_workloads": {"eu-west": ["medical"]}}),
    )
    .await;
    // Even a failover policy and a preference naming eu-west first.
    app.admin(
        "PUT",
        &format!("/api/v1/tenants/{tid}/routing-policy"),
        json!({"type": "failover", "order": ["eu-west", "us-east"]}),
    )
    .await;
    let mut medical = route_body(&tid, "medical");
    medical["preferred_regions"] = json!(["eu-west"]);
    for _ in 0..3 {
        let d = app
            .expect("POST", "/api/v1/route", ADMIN, medical.clone(), 200)
            .await;
        assert_eq!(d["selected_region"], "us-east", "{d}");
        assert_eq!(candidate(&d, "eu-west")["compliant"], false);
        assert_eq!(candidate(&d, "eu-west")["excluded_by"], "non_compliant");
    }
    let d = app
        .expect(
            "POST",
            "/api/v1/route",
            ADMIN,
            route_body(&tid, "chat"),
            200,
        )
        .await;
    assert_eq!(d["selected_region"], "eu-west", "other workloads may");
    // With us-east full, the medical workload is refused, never spilled to eu-west.
    let us = app
        .admin(
            "GET",
            &format!("/api/v1/pools?tenant_id={tid}"),
            Value::Null,
        )
        .await["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["region"] == "us-east")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.admin(
        "POST",
        "/api/v1/scale",
        json!({"tenant_id": tid, "pool_id": us, "capacity": 5, "reason": "fill"}),
    )
    .await;
    let p = app
        .expect("POST", "/api/v1/route", ADMIN, medical, 409)
        .await;
    assert_eq!(p["code"], "no_available_region");
}

#[tokio::test]
async fn five_failures_eject_the_region_and_the_candidates_show_it() {
    let app = App::new().await;
    let tid = world(&app, "acme").await;
    let op = app.token(&tid, "operator").await;
    let d = app
        .expect("POST", "/api/v1/route", &op, route_body(&tid, "chat"), 200)
        .await;
    assert_eq!(d["selected_region"], "eu-west");
    let id = d["id"].as_str().unwrap();
    let path = format!("/api/v1/routing/{id}/outcome");
    for i in 1..=4 {
        let e = app
            .expect(
                "POST",
                &path,
                &op,
                json!({"success": false, "latency_ms": 300}),
                200,
            )
            .await;
        assert_eq!(
            (e["consecutive_failures"].as_u64(), &e["ejected"]),
            (Some(i), &json!(false))
        );
    }
    let e = app
        .expect("POST", &path, &op, json!({"success": false}), 200)
        .await;
    assert_eq!(e["ejected"], true, "{e}");
    assert_eq!(
        (e["ejections"].as_u64(), e["region"].as_str()),
        (Some(1), Some("eu-west"))
    );
    let d = app
        .expect("POST", "/api/v1/route", &op, route_body(&tid, "chat"), 200)
        .await;
    assert_eq!(d["selected_region"], "us-east", "{d}");
    let eu = candidate(&d, "eu-west");
    assert_eq!(
        (&eu["compliant"], &eu["eligible"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(eu["excluded_by"], "ejected");
    assert!(eu["ejected_until"].is_string());
    assert!(d["reason"]
        .as_str()
        .unwrap()
        .contains("spilled past eu-west (ejected)"));
    // The reported latencies became eu-west's samples: mean 300 ms.
    assert_eq!(eu["score"], 0.6 * 70.0 + 0.4 * 60.0);
    // The other tenant is not affected by this tenant's ejection.
    let other = app.tenant("other").await;
    pool(&app, &other, "eu-west", "writer", 2).await;
    let d = app
        .expect(
            "POST",
            "/api/v1/route",
            ADMIN,
            route_body(&other, "chat"),
            200,
        )
        .await;
    assert_eq!(d["selected_region"], "eu-west");
    // a success resets the count
    let e = app
        .expect("POST", &path, &op, json!({"success": true}), 200)
        .await;
    assert_eq!(e["consecutive_failures"], 0);
}

#[tokio::test]
async fn policies_answer_defaults_validate_and_are_audited() {
    let app = App::new().await;
    let tid = world(&app, "acme").await;
    let rp = app
        .admin(
            "GET",
            &format!("/api/v1/tenants/{tid}/region-policy"),
            Value::Null,
        )
        .await;
    assert_eq!(rp["source"], "default");
    assert!(rp["updated_at"].is_null());
    assert!(rp["policy"]["allowed_jurisdictions"].is_null());
    assert_eq!(rp["policy"]["restricted_workloads"], json!({}));
    let tp = app
        .admin(
            "GET",
            &format!("/api/v1/tenants/{tid}/routing-policy"),
            Value::Null,
        )
        .await;
    assert_eq!(tp["source"], "default");
    assert_eq!(
        tp["policy"],
        json!({"type": "score", "latency_weight": 0.6, "capacity_weight": 0.4, "preferred_bonus": 10.0})
    );

    let region_path = format!("/api/v1/tenants/{tid}/region-policy");
    let routing_path = format!("/api/v1/tenants/{tid}/routing-policy");
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            &region_path,
            json!({"restricted_workloads": {"mars-1": ["chat"]}}),
            422,
            "restricted_workloads.mars-1",
        ),
        (
            &region_path,
            json!({"home_region": "mars-1"}),
            422,
            "home_region",
        ),
        (
            &region_path,
            json!({"allowed_jurisdictions": []}),
            422,
            "allowed_jurisdictions",
        ),
        (&region_path, json!({"colour": "red"}), 422, "colour"),
        (
            &routing_path,
            json!({"type": "failover", "order": ["eu-west", "mars-1"]}),
            422,
            "order[1]",
        ),
        (
            &routing_path,
            json!({"type": "weighted", "weights": {"mars-1": 1}}),
            422,
            "weights.mars-1",
        ),
        (
            &routing_path,
            json!({"type": "geolocation", "map": {"DE": ["eu-west"]}}),
            422,
            "map.default",
        ),
        (
            &routing_path,
            json!({"type": "score", "latency_weight": 2}),
            422,
            "latency_weight",
        ),
    ];
    for (path, body, want, field) in cases {
        let v = app.expect("PUT", path, ADMIN, body.clone(), want).await;
        let named = fields(&v).iter().any(|f| f == field)
            || v["detail"].as_str().unwrap_or("").contains(field);
        assert!(named, "{body} must name {field}: {v}");
    }
    // an unknown field or policy type is a 4xx that names it
    for body in [
        json!({"type": "failover", "order": ["eu-west"], "colour": "red"}),
        json!({"type": "random"}),
    ] {
        let (s, v, _) = app
            .call("PUT", &routing_path, Some(ADMIN), Some(&body.to_string()))
            .await;
        assert!(s.is_client_error(), "{body}: {s}");
        let text = v.to_string();
        assert!(
            text.contains("colour") || text.contains("random"),
            "{body}: {v}"
        );
    }

    let set = app
        .admin(
            "PUT",
            &region_path,
            json!({"allowed_jurisdictions": ["eu"], "data_residency": "eu", "home_region": "eu-west"}),
        )
        .await;
    assert_eq!(set["source"], "tenant");
    assert!(set["updated_at"].is_string());
    let got = app.admin("GET", &region_path, Value::Null).await;
    assert_eq!(got["policy"]["data_residency"], "eu");
    assert_eq!(got["policy"], set["policy"]);
    let set = app
        .admin("PUT", &routing_path, json!({"type": "latency"}))
        .await;
    assert_eq!(set["policy"], json!({"type": "latency"}));
    let audit = app
        .admin(
            "GET",
            &format!("/api/v1/audit?tenant_id={tid}"),
            Value::Null,
        )
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..2],
        ["tenant.routing_policy", "tenant.region_policy"]
    );
    let d = app
        .expect(
            "POST",
            "/api/v1/route",
            ADMIN,
            route_body(&tid, "chat"),
            200,
        )
        .await;
    assert_eq!(d["selected_region"], "eu-west");
    assert_eq!(d["sla_context"]["data_residency"], "eu");
    assert_eq!(d["performance_context"]["policy"], "latency");
}

#[tokio::test]
async fn a_tenant_token_sees_and_routes_only_its_own_tenant() {
    let app = App::new().await;
    let a = world(&app, "a").await;
    let b = app.tenant("b").await;
    pool(&app, &b, "us-east", "writer", 1).await;
    let a_id = app
        .expect("POST", "/api/v1/route", ADMIN, route_body(&a, "chat"), 200)
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b_op = app.token(&b, "operator").await;
    let b_viewer = app.token(&b, "viewer").await;
    let not_found: Vec<(&str, String, Value)> = vec![
        ("POST", "/api/v1/route".into(), route_body(&a, "chat")),
        ("GET", format!("/api/v1/routing/{a_id}"), Value::Null),
        (
            "POST",
            format!("/api/v1/routing/{a_id}/replay"),
            Value::Null,
        ),
        (
            "POST",
            format!("/api/v1/routing/{a_id}/outcome"),
            json!({"success": false}),
        ),
        ("GET", format!("/api/v1/routing?tenant_id={a}"), Value::Null),
        (
            "GET",
            format!("/api/v1/tenants/{a}/region-policy"),
            Value::Null,
        ),
        (
            "PUT",
            format!("/api/v1/tenants/{a}/region-policy"),
            json!({}),
        ),
        (
            "GET",
            format!("/api/v1/tenants/{a}/routing-policy"),
            Value::Null,
        ),
        (
            "PUT",
            format!("/api/v1/tenants/{a}/routing-policy"),
            json!({"type": "latency"}),
        ),
    ];
    for (m, p, body) in not_found {
        app.expect(m, &p, &b_op, body, 404).await;
    }
    let mine = app
        .expect("POST", "/api/v1/route", &b_op, route_body(&b, "chat"), 200)
        .await;
    assert_eq!(mine["selected_region"], "us-east");
    let l = app
        .expect("GET", "/api/v1/routing", &b_op, Value::Null, 200)
        .await;
    let ids: Vec<&Value> = l["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["id"])
        .collect();
    assert_eq!(ids, [&mine["id"]], "only its own decisions");
    // A viewer reads but may not route or write policies.
    app.expect(
        "GET",
        &format!("/api/v1/routing/{}", mine["id"].as_str().unwrap()),
        &b_viewer,
        Value::Null,
        200,
    )
    .await;
    app.expect(
        "POST",
        "/api/v1/route",
        &b_viewer,
        route_body(&b, "chat"),
        403,
    )
    .await;
    app.expect(
        "PUT",
        &format!("/api/v1/tenants/{b}/routing-policy"),
        &b_viewer,
        json!({"type": "latency"}),
        403,
    )
    .await;
    // the other tenant's ejection state was never touched
    assert!(decisions(&app, &a).await.len() == 1);
}

#[tokio::test]
async fn bad_route_input_is_a_4xx_naming_the_field_and_records_nothing() {
    let app = App::new().await;
    let tid = world(&app, "acme").await;
    let with = |k: &str, v: Value| {
        let mut b = route_body(&tid, "chat");
        b[k] = v;
        b
    };
    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (with("tenant_id", json!("")), 422, Some("tenant_id")),
        (with("workload_type", json!("")), 422, Some("workload_type")),
        (with("agent_type", json!("")), 422, Some("agent_type")),
        (with("colour", json!("red")), 422, Some("colour")),
        (
            with("preferred_regions", json!(["eu-west", "mars-1"])),
            422,
            Some("preferred_regions[1]"),
        ),
        (
            with("client_country", json!("D E")),
            422,
            Some("client_country"),
        ),
        (with("workload_type", json!(7)), 422, Some("workload_type")),
        (
            json!({"tenant_id": tid, "agent_type": "writer"}),
            422,
            Some("body"),
        ),
        (with("tenant_id", json!("no-such-tenant")), 404, None),
    ];
    for (body, want, field) in cases {
        let v = app
            .expect("POST", "/api/v1/route", ADMIN, body.clone(), want)
            .await;
        if let Some(f) = field {
            let named = fields(&v).iter().any(|x| x == f)
                || (f == "body" && v["detail"].as_str().unwrap_or("").contains("workload_type"));
            assert!(named, "{body} must name {f}: {v}");
        }
    }
    assert!(decisions(&app, &tid).await.is_empty(), "nothing recorded");
    let d = app
        .expect(
            "POST",
            "/api/v1/route",
            ADMIN,
            with("preferred_regions", Value::Null),
            200,
        )
        .await;
    let id = d["id"].as_str().unwrap();
    let v = app
        .expect(
            "POST",
            &format!("/api/v1/routing/{id}/outcome"),
            ADMIN,
            json!({"success": true, "latency_ms": -1}),
            422,
        )
        .await;
    assert_eq!(fields(&v), ["latency_ms"]);
    let v = app
        .expect(
            "POST",
            &format!("/api/v1/routing/{id}/outcome"),
            ADMIN,
            json!({"latency_ms": 5}),
            422,
        )
        .await;
    assert!(v.to_string().contains("success"), "{v}");
    let v = app
        .expect(
            "GET",
            "/api/v1/routing?since=yesterday",
            ADMIN,
            Value::Null,
            422,
        )
        .await;
    assert_eq!(fields(&v), ["since"]);
    app.expect("GET", "/api/v1/routing?limit=0", ADMIN, Value::Null, 422)
        .await;
    let v = app
        .expect("GET", "/api/v1/routing?colour=red", ADMIN, Value::Null, 400)
        .await;
    assert!(v["detail"].as_str().unwrap().contains("colour"), "{v}");
    app.expect("GET", "/api/v1/routing/nope", ADMIN, Value::Null, 404)
        .await;
    app.expect(
        "POST",
        "/api/v1/routing/nope/replay",
        ADMIN,
        Value::Null,
        404,
    )
    .await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_routing_route_and_policy() {
    let app = App::new().await;
    let (_, doc, _) = app.call("GET", "/api/v1/openapi.json", None, None).await;
    for (path, method) in [
        ("/api/v1/route", "post"),
        ("/api/v1/routing", "get"),
        ("/api/v1/routing/{id}", "get"),
        ("/api/v1/routing/{id}/replay", "post"),
        ("/api/v1/routing/{id}/outcome", "post"),
        ("/api/v1/tenants/{id}/region-policy", "get"),
        ("/api/v1/tenants/{id}/region-policy", "put"),
        ("/api/v1/tenants/{id}/routing-policy", "get"),
        ("/api/v1/tenants/{id}/routing-policy", "put"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    let schemas = &doc["components"]["schemas"];
    for name in [
        "RegionPolicy",
        "RoutingPolicy",
        "RouteView",
        "RouteBody",
        "CandidateView",
    ] {
        assert!(schemas[name].is_object(), "schema {name} missing");
    }
    let variants = schemas["RoutingPolicy"]["oneOf"].as_array().unwrap();
    assert_eq!(variants.len(), 5);
    assert_eq!(
        doc["paths"]["/api/v1/tenants/{id}/routing-policy"]["put"]["requestBody"]["content"]
            ["application/json"]["schema"]["$ref"],
        "#/components/schemas/RoutingPolicy"
    );
}

/// A small deterministic generator (xorshift64*), so that a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Issue 15, "Done when": replaying every stored decision of a recorded
/// run gives the same region, while the world the run routed in kept
/// changing: ticks, region modes, ejections, region and routing policies,
/// latency samples, deleted, created, scaled and resized pools.
#[tokio::test]
async fn every_decision_of_a_run_in_a_changing_world_replays_to_its_region() {
    let seed = 0x5eed_0015_u64;
    let app = App::new().await;
    let regions = [
        ("eu-west", "eu"),
        ("eu-north", "eu"),
        ("us-east", "us"),
        ("us-west", "us"),
        ("ap-south", "ap"),
    ];
    for (r, j) in regions {
        app.admin(
            "POST",
            "/api/v1/regions",
            json!({"name": r, "jurisdiction": j, "monthly_budget_cents": 0}),
        )
        .await;
    }
    let tid = app.tenant("replayed").await;
    let mut pools = Vec::new();
    for (i, (r, _)) in regions.iter().enumerate() {
        pools.push(pool(&app, &tid, r, "writer", 1 + i as i64 % 4).await);
    }
    let routing_policies = [
        json!({"type": "score", "latency_weight": 0.7, "capacity_weight": 0.3, "preferred_bonus": 5}),
        json!({"type": "latency"}),
        json!({"type": "failover", "order": ["us-west", "eu-north", "eu-west"]}),
        json!({"type": "weighted", "weights": {"eu-west": 3, "us-east": 1, "ap-south": 2}}),
        json!({"type": "geolocation", "map": {"DE": ["eu-north"], "US-CA": ["us-west"], "default": ["us-east"]}}),
    ];
    let region_policies = [
        json!({}),
        json!({"allowed_jurisdictions": ["eu", "us"]}),
        json!({"restricted_workloads": {"eu-west": ["medical"], "us-east": ["chat"]}}),
        json!({"data_residency": "eu"}),
    ];
    let modes = [
        fleetscale_core::region::mode::ScalingMode::Normal,
        fleetscale_core::region::mode::ScalingMode::Cautious,
        fleetscale_core::region::mode::ScalingMode::Throttled,
        fleetscale_core::region::mode::ScalingMode::Frozen,
    ];
    let mut rng = Rng(seed);
    let mut answered: Vec<String> = Vec::new();
    let mut refused = 0;
    for step in 0..240 {
        let region = regions[rng.below(regions.len())].0;
        match step % 10 {
            0 => {
                let p = &routing_policies[rng.below(routing_policies.len())];
                app.admin(
                    "PUT",
                    &format!("/api/v1/tenants/{tid}/routing-policy"),
                    p.clone(),
                )
                .await;
            }
            1 => {
                let p = &region_policies[rng.below(region_policies.len())];
                app.admin(
                    "PUT",
                    &format!("/api/v1/tenants/{tid}/region-policy"),
                    p.clone(),
                )
                .await;
            }
            2 => {
                let samples: Vec<Value> = (0..3)
                    .map(|_| json!({"region": region, "metric": "latency_ms", "value": 5 + rng.below(400)}))
                    .collect();
                app.admin("POST", "/api/v1/metrics", json!({ "samples": samples }))
                    .await;
            }
            3 => {
                let mode = modes[rng.below(modes.len())];
                support::set_state(&app, region, mode, 50.0, 50.0).await;
            }
            4 => {
                app.tick().await;
            }
            5 => {
                // Outcomes of the last decision: failures eject its region.
                if let Some(id) = answered.last() {
                    for _ in 0..1 + rng.below(5) {
                        app.admin(
                            "POST",
                            &format!("/api/v1/routing/{id}/outcome"),
                            json!({"success": rng.below(4) == 0, "latency_ms": rng.below(900)}),
                        )
                        .await;
                    }
                }
            }
            6 => {
                let p = &pools[rng.below(pools.len())];
                app.admin(
                    "POST",
                    "/api/v1/scale",
                    json!({"tenant_id": tid, "pool_id": p, "capacity": 1 + rng.below(5), "reason": "replay test"}),
                )
                .await;
            }
            7 => {
                let p = &pools[rng.below(pools.len())];
                let b = app
                    .admin("GET", &format!("/api/v1/pools/{p}"), Value::Null)
                    .await;
                let max = 5 + rng.below(6) as i64;
                app.admin(
                    "PATCH",
                    &format!("/api/v1/pools/{p}"),
                    json!({"max_capacity": max.max(b["desired_capacity"].as_i64().unwrap())}),
                )
                .await;
            }
            8 => {
                // A pool deleted, then one created in its place.
                let i = rng.below(pools.len());
                app.admin(
                    "DELETE",
                    &format!("/api/v1/pools/{}", pools[i]),
                    Value::Null,
                )
                .await;
                // Desired 5 of max 5: no spare capacity.
                let desired = [1, 2, 3, 5][rng.below(4)];
                pools[i] = pool(&app, &tid, regions[i].0, "writer", desired).await;
            }
            _ => {}
        }
        for _ in 0..2 {
            let mut body = route_body(&tid, ["chat", "medical"][rng.below(2)]);
            if rng.below(3) == 0 {
                body["preferred_regions"] = json!([regions[rng.below(regions.len())].0]);
            }
            body["client_country"] = json!(["DE", "US-CA", "FR", "JP"][rng.below(4)]);
            let (s, v, _) = app
                .call(
                    "POST",
                    "/api/v1/route",
                    Some(ADMIN),
                    Some(&body.to_string()),
                )
                .await;
            match s.as_u16() {
                200 => answered.push(v["id"].as_str().unwrap().to_string()),
                409 => refused += 1,
                other => panic!("seed {seed:#x}, step {step}: {other} {v}"),
            }
        }
    }
    assert!(
        answered.len() >= 200 && refused > 0,
        "seed {seed:#x}: {} answered, {refused} refused: the run should see both",
        answered.len()
    );
    // Every answered decision, and nothing else, is stored.
    let mut stored = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .admin(
                "GET",
                &format!("/api/v1/routing?tenant_id={tid}&limit=100&cursor={cursor}"),
                Value::Null,
            )
            .await;
        for d in page["items"].as_array().unwrap() {
            stored.push(d["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    stored.reverse();
    assert_eq!(stored, answered, "seed {seed:#x}");
    // Every stored decision replays to the region it recorded.
    for id in &stored {
        let r = app
            .admin("POST", &format!("/api/v1/routing/{id}/replay"), Value::Null)
            .await;
        assert_eq!(r["same"], true, "seed {seed:#x}, decision {id}: {r}");
    }
}

/// When the decision's transaction fails the route is a 503 problem and
/// nothing is recorded; the writer goes on with the next decision.
#[tokio::test]
async fn a_decision_that_cannot_be_recorded_is_a_503_and_nothing_is_recorded() {
    let app = App::new().await;
    let tid = world(&app, "acme").await;
    let store = &app.state.engine.store;
    store
        .exec_admin(
            "CREATE TRIGGER refuse_decisions BEFORE INSERT ON routing_decisions \
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
        )
        .await
        .unwrap();
    let (s, p, ctype) = app
        .call(
            "POST",
            "/api/v1/route",
            Some(ADMIN),
            Some(&route_body(&tid, "chat").to_string()),
        )
        .await;
    assert_eq!(s.as_u16(), 503, "{p}");
    assert_eq!(ctype, "application/problem+json");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was recorded"),
        "{p}"
    );
    assert!(
        !p.to_string().contains("disk on fire"),
        "no database text: {p}"
    );
    store
        .exec_admin("DROP TRIGGER refuse_decisions")
        .await
        .unwrap();
    assert!(decisions(&app, &tid).await.is_empty(), "nothing recorded");
    let d = app
        .expect(
            "POST",
            "/api/v1/route",
            ADMIN,
            route_body(&tid, "chat"),
            200,
        )
        .await;
    assert_eq!(decisions(&app, &tid).await[0]["id"], d["id"]);
}
