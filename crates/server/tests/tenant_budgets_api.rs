//! Router tests of the tenant provider budget API without a socket: bad
//! input (negative, zero, fractional, string, overflowing amounts, unknown
//! providers and tenants) is a 4xx problem naming the field and the rule;
//! scopes and roles; hard limits over HTTP; idempotency; audit.

mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};

use support::{fields, App, ADMIN};

#[tokio::test]
async fn bad_tenant_budget_input_is_a_named_4xx_never_a_500() {
    let app = App::new().await;
    let t = app.tenant("acme").await;
    let usage = format!("/api/v1/budgets/tenants/{t}/usage");
    let claude = format!("/api/v1/budgets/tenants/{t}/providers/claude");
    let tier = format!("/api/v1/budgets/tenants/{t}");
    // (method, path, body, status, field named, words the detail must contain)
    type Case<'a> = (&'a str, String, String, u16, Option<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "POST",
            usage.clone(),
            json!({"provider": "claude", "units": -5}).to_string(),
            422,
            Some("units"),
            "positive whole number of tokens",
        ),
        (
            "POST",
            usage.clone(),
            json!({"provider": "claude", "units": 0}).to_string(),
            422,
            Some("units"),
            "positive",
        ),
        (
            "POST",
            usage.clone(),
            json!({"provider": "elevenlabs", "units": 1.5}).to_string(),
            422,
            Some("units"),
            "whole number of chars, not a fraction",
        ),
        (
            "POST",
            usage.clone(),
            json!({"provider": "claude", "units": "10"}).to_string(),
            422,
            Some("units"),
            "not a string",
        ),
        (
            "POST",
            usage.clone(),
            json!({"provider": "claude", "units": 9_223_372_036_854_775_807i64}).to_string(),
            422,
            Some("units"),
            "overflow",
        ),
        (
            "POST",
            usage.clone(),
            json!({"provider": "claude", "units": 18_446_744_073_709_551_615u64}).to_string(),
            422,
            Some("units"),
            "overflow",
        ),
        (
            "POST",
            usage.clone(),
            r#"{"provider": "claude", "units": 100000000000000000000000000000}"#.into(),
            422,
            Some("units"),
            "overflow",
        ),
        (
            "POST",
            usage.clone(),
            json!({"provider": "claude"}).to_string(),
            422,
            Some("units"),
            "required",
        ),
        (
            "POST",
            usage.clone(),
            json!({"provider": "mistral", "units": 5}).to_string(),
            422,
            Some("provider"),
            "claude, gemini, openai, elevenlabs, perplexity",
        ),
        (
            "POST",
            usage.clone(),
            json!({"units": 5}).to_string(),
            422,
            Some("body"),
            "provider",
        ),
        (
            "POST",
            usage.clone(),
            json!({"provider": "claude", "units": 5, "idempotency_key": ""}).to_string(),
            422,
            Some("idempotency_key"),
            "1 to 128",
        ),
        (
            "POST",
            usage.clone(),
            json!({"provider": "claude", "units": 5, "job_type": "two words"}).to_string(),
            422,
            Some("job_type"),
            "letters",
        ),
        (
            "POST",
            usage.clone(),
            json!({"provider": "claude", "units": 5, "cost": 1}).to_string(),
            422,
            Some("cost"),
            "unknown field",
        ),
        (
            "POST",
            usage.clone(),
            "{\"provider\": ".into(),
            400,
            None,
            "malformed JSON",
        ),
        (
            "POST",
            "/api/v1/budgets/tenants/nobody/usage".into(),
            json!({"provider": "claude", "units": 5}).to_string(),
            404,
            None,
            "tenant not found",
        ),
        (
            "PUT",
            claude.clone(),
            json!({"allocation_units": -1}).to_string(),
            422,
            Some("allocation_units"),
            "at least 0 tokens",
        ),
        (
            "PUT",
            claude.clone(),
            json!({"allocation_units": 2.5}).to_string(),
            422,
            Some("allocation_units"),
            "not a fraction",
        ),
        (
            "PUT",
            claude.clone(),
            json!({"allocation_units": 1_000_000_000_000_000_001i64}).to_string(),
            422,
            Some("allocation_units"),
            "overflow",
        ),
        (
            "PUT",
            claude.clone(),
            json!({"price_cents_per_million": -3}).to_string(),
            422,
            Some("price_cents_per_million"),
            "at least 0",
        ),
        (
            "PUT",
            claude.clone(),
            json!({"hard_limit": "yes"}).to_string(),
            422,
            Some("hard_limit"),
            "boolean",
        ),
        (
            "PUT",
            format!("/api/v1/budgets/tenants/{t}/providers/mistral"),
            json!({}).to_string(),
            404,
            None,
            "provider \"mistral\" (known: claude",
        ),
        (
            "GET",
            format!("/api/v1/budgets/tenants/{t}/providers/mistral"),
            String::new(),
            404,
            None,
            "known: claude",
        ),
        (
            "PUT",
            "/api/v1/budgets/tenants/nobody/providers/claude".into(),
            json!({}).to_string(),
            404,
            None,
            "tenant not found",
        ),
        (
            "PUT",
            tier.clone(),
            json!({"tier": "platinum"}).to_string(),
            422,
            Some("tier"),
            "soft_launch, hard_launch or growth",
        ),
        (
            "PUT",
            "/api/v1/budgets/tenants/nobody".into(),
            json!({"tier": "growth"}).to_string(),
            404,
            None,
            "tenant not found",
        ),
        (
            "GET",
            "/api/v1/budgets/tenants/nobody".into(),
            String::new(),
            404,
            None,
            "tenant not found",
        ),
        (
            "GET",
            format!("/api/v1/budgets/tenants/{t}/usage?provider=mistral"),
            String::new(),
            400,
            None,
            "provider must be one of",
        ),
        (
            "GET",
            format!("/api/v1/budgets/tenants/{t}/usage?limit=0"),
            String::new(),
            422,
            Some("limit"),
            "between 1 and 1000",
        ),
        (
            "GET",
            "/api/v1/budgets/tenants?colour=red".into(),
            String::new(),
            400,
            None,
            "colour",
        ),
    ];
    for (method, path, body, want, field, words) in cases {
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
        let detail = v["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(words),
            "{method} {path} {body}: {words:?} not in {detail:?}"
        );
        if let Some(f) = field {
            assert!(
                fields(&v).iter().any(|x| x == f),
                "{method} {path} {body}: expected field {f} in {v}"
            );
        }
    }
    // Nothing was recorded or changed by the bad requests.
    let b = app.expect("GET", &tier, ADMIN, Value::Null, 200).await;
    assert_eq!(b["tier_set"], false);
    assert!(b["providers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["used_units"] == 0 && p["entries"] == 0));
}

#[tokio::test]
async fn hard_limits_idempotency_projection_and_ledger_over_http() {
    let app = App::new().await;
    let t = app.tenant("acme").await;
    let base = format!("/api/v1/budgets/tenants/{t}");
    let b = app.expect("GET", &base, ADMIN, Value::Null, 200).await;
    assert_eq!(b["tier"], "soft_launch");
    assert_eq!(b["providers"][0]["provider"], "claude");
    assert_eq!(b["providers"][0]["allocation_units"], 50_000);
    assert_eq!(b["providers"][3]["unit"], "chars");
    let b = app
        .expect("PUT", &base, ADMIN, json!({"tier": "hard_launch"}), 200)
        .await;
    assert_eq!(b["providers"][0]["allocation_units"], 300_000);
    let p = app
        .expect(
            "PUT",
            &format!("{base}/providers/openai"),
            ADMIN,
            json!({"allocation_units": 100, "price_cents_per_million": 1_000_000, "hard_limit": true}),
            200,
        )
        .await;
    assert_eq!(
        (
            &p["allocation_units"],
            &p["tier_default_units"],
            &p["hard_limit"]
        ),
        (&json!(100), &json!(150_000), &json!(true))
    );
    let usage = format!("{base}/usage");
    let ok = app
        .expect(
            "POST",
            &usage,
            ADMIN,
            json!({"provider": "openai", "units": 60, "idempotency_key": "k1", "job_type": "intel"}),
            200,
        )
        .await;
    assert_eq!(ok["used_after_units"], 60);
    assert_eq!(ok["replayed"], false);
    let over = app
        .expect(
            "POST",
            &usage,
            ADMIN,
            json!({"provider": "openai", "units": 41}),
            409,
        )
        .await;
    assert_eq!(over["code"], "provider_budget_exceeded");
    assert!(
        over["detail"].as_str().unwrap().contains(
            "41 tokens requested, 60 of 100 tokens used this month; nothing was recorded"
        ),
        "{over}"
    );
    let again = app
        .expect(
            "POST",
            &usage,
            ADMIN,
            json!({"provider": "openai", "units": 60, "idempotency_key": "k1", "job_type": "intel"}),
            200,
        )
        .await;
    assert_eq!(
        (&again["replayed"], &again["usage_id"]),
        (&json!(true), &ok["usage_id"])
    );
    let reused = app
        .expect(
            "POST",
            &usage,
            ADMIN,
            json!({"provider": "openai", "units": 61, "idempotency_key": "k1", "job_type": "intel"}),
            409,
        )
        .await;
    assert_eq!(reused["code"], "idempotency_key_reused");
    let p = app
        .expect(
            "GET",
            &format!("{base}/providers/openai"),
            ADMIN,
            Value::Null,
            200,
        )
        .await;
    assert_eq!((&p["used_units"], &p["entries"]), (&json!(60), &json!(1)));
    assert_eq!(
        p["cost_so_far_cents"], 60,
        "60 tokens at $10,000 per million"
    );
    assert!(p["projected_units"].as_i64().unwrap() >= 60);
    let providers = app
        .expect("GET", &format!("{base}/providers"), ADMIN, Value::Null, 200)
        .await;
    assert_eq!(providers["items"].as_array().unwrap().len(), 5);
    assert_eq!(providers["cost_projection"]["cost_so_far_cents"], 60);
    let list = app
        .expect(
            "GET",
            &format!("{usage}?provider=openai"),
            ADMIN,
            Value::Null,
            200,
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["limit_units"], 100);
    let check = app
        .expect(
            "GET",
            &format!("{base}/ledger-check"),
            ADMIN,
            Value::Null,
            200,
        )
        .await;
    assert_eq!(check["ok"], true, "{check}");
    // Every mutation is audited: tier, provider settings, one usage (not the refused or replayed ones).
    let audit = app
        .expect(
            "GET",
            &format!("/api/v1/audit?tenant_id={t}"),
            ADMIN,
            Value::Null,
            200,
        )
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["action"].as_str())
        .filter(|a| a.starts_with("budget."))
        .collect();
    assert_eq!(actions, ["budget.usage", "budget.provider", "budget.tier"]);
}

#[tokio::test]
async fn tenant_budgets_follow_scopes_and_roles() {
    let app = App::new().await;
    let a = app.tenant("a").await;
    let b = app.tenant("b").await;
    let viewer = app.token(&a, "viewer").await;
    let operator = app.token(&a, "operator").await;
    let admin_a = app.token(&a, "admin").await;
    let (pa, pb) = (
        format!("/api/v1/budgets/tenants/{a}"),
        format!("/api/v1/budgets/tenants/{b}"),
    );
    let rec = json!({"provider": "gemini", "units": 5});
    // Viewers read their own tenant only; another tenant does not exist for them.
    app.expect("GET", &pa, &viewer, Value::Null, 200).await;
    app.expect("GET", &pb, &viewer, Value::Null, 404).await;
    app.expect("POST", &format!("{pb}/usage"), &admin_a, rec.clone(), 404)
        .await;
    let listed = app
        .expect("GET", "/api/v1/budgets/tenants", &viewer, Value::Null, 200)
        .await;
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["tenant_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.as_str()]);
    let all = app
        .expect("GET", "/api/v1/budgets/tenants", ADMIN, Value::Null, 200)
        .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    // Recording needs an operator; settings need the global admin.
    app.expect("POST", &format!("{pa}/usage"), &viewer, rec.clone(), 403)
        .await;
    app.expect(
        "GET",
        &format!("{pa}/ledger-check"),
        &viewer,
        Value::Null,
        403,
    )
    .await;
    app.expect("POST", &format!("{pa}/usage"), &operator, rec.clone(), 200)
        .await;
    app.expect("PUT", &pa, &operator, json!({"tier": "growth"}), 403)
        .await;
    app.expect(
        "PUT",
        &format!("{pa}/providers/gemini"),
        &operator,
        json!({"allocation_units": 1}),
        403,
    )
    .await;
    // The tier and allocations are the platform's: a tenant admin may not
    // raise its own plan.
    app.expect("PUT", &pa, &admin_a, json!({"tier": "growth"}), 403)
        .await;
    app.expect(
        "PUT",
        &format!("{pa}/providers/gemini"),
        &admin_a,
        json!({"allocation_units": 1}),
        403,
    )
    .await;
    app.expect("PUT", &pa, ADMIN, json!({"tier": "growth"}), 200)
        .await;
    app.expect("PUT", &pb, &admin_a, json!({"tier": "growth"}), 404)
        .await;
    let usage = app
        .expect("GET", &format!("{pa}/usage"), &viewer, Value::Null, 200)
        .await;
    assert_eq!(usage["items"][0]["actor"], "operator-token");
    let (s, _, _) = app.call("GET", &pa, Some("not-a-token"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}
