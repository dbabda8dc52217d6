//! Upgrades keep data: a database at schema version 3 (samples keyed by
//! pool id and metric) is migrated to the current schema by `Store::open`,
//! and every sample reads back the same, on SQLite and on PostgreSQL; a
//! tenant of schema v4 gets default provider budgets after migration 0005.

use fleetscale_store::{migrate_to, Store};

// Only the fresh-database helpers are used here, not the conformance macro.
#[allow(dead_code)]
mod common;

async fn samples_survive_the_series_migration(url: String) {
    migrate_to(&url, 3).await.expect("migrate to v3");
    // Seed the v3 schema by hand: a tenant, a region, a pool, raw samples.
    sqlx_seed(&url).await;
    let store = Store::open(&url)
        .await
        .expect("open migrates to the current schema");
    let pool = store.get_pool("p-old").await.expect("pool kept");
    let rows = store
        .samples(&pool.id, "throughput", 0, 10_000, 100)
        .await
        .unwrap();
    let got: Vec<(i64, f64)> = rows.iter().map(|s| (s.ts_ms, s.value)).collect();
    assert_eq!(got, [(1_000, 1.5), (2_000, 2.5)]);
    let cpu = store
        .samples(&pool.id, "cpu", 0, 10_000, 100)
        .await
        .unwrap();
    assert_eq!(cpu.len(), 1);
    // New samples of an old series land in the same series.
    store
        .insert_samples(&[fleetscale_store::Sample {
            pool_id: pool.id.clone(),
            metric: "throughput".into(),
            ts_ms: 3_000,
            value: 3.5,
        }])
        .await
        .unwrap();
    assert_eq!(
        store
            .samples(&pool.id, "throughput", 0, 10_000, 100)
            .await
            .unwrap()
            .len(),
        3
    );
}

/// Inserts v3 rows with plain SQL through a store-less connection.
async fn sqlx_seed(url: &str) {
    let stmts = [
        "INSERT INTO tenants (id, name, created_at_ms) VALUES ('t-old', 'old', 0)",
        "INSERT INTO regions (id, name, jurisdiction, created_at_ms) VALUES ('r-old', 'eu-old', 'eu', 0)",
        "INSERT INTO pools (id, tenant_id, region, agent_type, min_capacity, max_capacity, desired_capacity, capacity_per_instance, metric, mode, scaling_policy, window_seconds, safety_lock, last_scaled_at_ms, created_at_ms, updated_at_ms) \
         VALUES ('p-old', 't-old', 'eu-old', 'writer', 1, 5, 1, 10, 'throughput', 'autonomous', '{\"scale_up_threshold\":80.0,\"scale_down_threshold\":30.0,\"cooldown_seconds\":300,\"increment\":1,\"window_seconds\":300}', 300, 0, NULL, 0, 0)",
        "INSERT INTO metric_samples (pool_id, metric, ts_ms, value) VALUES ('p-old', 'throughput', 1000, 1.5), ('p-old', 'throughput', 2000, 2.5), ('p-old', 'cpu', 1500, 40)",
    ];
    fleetscale_store::exec_raw(url, &stmts)
        .await
        .expect("seed v3 rows");
}

/// Runs `test` on a SQLite database in a new directory, removed afterwards.
async fn on_sqlite<F: std::future::Future<Output = ()>>(test: impl FnOnce(String) -> F) {
    let dir =
        common::TempDir(std::env::temp_dir().join(format!("fs-upgrade-{}", uuid::Uuid::new_v4())));
    std::fs::create_dir_all(&dir.0).unwrap();
    test(format!(
        "sqlite://{}?mode=rwc",
        dir.0.join("fleetscale.db").display()
    ))
    .await;
}

#[tokio::test]
async fn sqlite_samples_survive_the_series_migration() {
    on_sqlite(samples_survive_the_series_migration).await;
}

#[tokio::test]
async fn postgres_samples_survive_the_series_migration() {
    samples_survive_the_series_migration(common::fresh_pg_database().await.1).await;
}

/// A tenant created under schema v4 (before tenant budgets) gets the default
/// tier's provider budgets after migration 0005 and can record usage.
async fn tenants_get_default_budgets_after_the_budget_migration(url: String) {
    migrate_to(&url, 4).await.expect("migrate to v4");
    fleetscale_store::exec_raw(
        &url,
        &["INSERT INTO tenants (id, name, created_at_ms) VALUES ('t-v4', 'v4', 0)"],
    )
    .await
    .expect("seed a v4 tenant");
    let store = Store::open(&url).await.expect("open migrates to 0005");
    let now = fleetscale_store::now_ms();
    let b = store.tenant_budget("t-v4", now).await.unwrap();
    assert_eq!(b.tier, fleetscale_core::budget::Tier::SoftLaunch);
    assert_eq!(b.providers[0].month.allocation_units, 50_000);
    let o = store
        .record_usage(&fleetscale_store::UsageRequest {
            tenant_id: "t-v4".into(),
            provider: fleetscale_core::budget::Provider::Claude,
            units: 10,
            job_type: None,
            idempotency_key: None,
            description: None,
            actor: "test".into(),
            now_ms: now,
        })
        .await
        .unwrap();
    assert_eq!(o.used_after_units, 10);
}

#[tokio::test]
async fn sqlite_tenants_get_default_budgets_after_the_budget_migration() {
    on_sqlite(tenants_get_default_budgets_after_the_budget_migration).await;
}

#[tokio::test]
async fn postgres_tenants_get_default_budgets_after_the_budget_migration() {
    tenants_get_default_budgets_after_the_budget_migration(common::fresh_pg_database().await.1)
        .await;
}

/// A budget ledger written before migrations 0008 (SQLite: idempotency keys
/// in memory) and 0009 (the ledger is the budget audit log): after the
/// upgrade each budget operation is audited once, under its entry's id and
/// with the detail its old audit row held, and a retry of a key written
/// before the upgrade is replayed, not charged.
async fn budget_history_survives_the_key_and_audit_migrations(url: String) {
    use fleetscale_core::budget::{day_key, month_key};
    migrate_to(&url, 7).await.expect("migrate to v7");
    let now = fleetscale_store::now_ms();
    let (tx_a, tx_s) = (
        "01900000-0000-7000-8000-00000000000a",
        "01900000-0000-7000-8000-00000000000b",
    );
    let spend_detail = r#"{"amount_cents":250,"balance_after_cents":750,"job_type":"creative","refund_of":null,"region_id":"r-v7","reservation_id":null}"#;
    let rows = [
        "INSERT INTO tenants (id, name, created_at_ms) VALUES ('t-v7', 'v7', 0)".to_string(),
        "INSERT INTO regions (id, name, jurisdiction, created_at_ms) VALUES ('r-v7', 'eu-v7', 'eu', 0)".to_string(),
        format!(
            "INSERT INTO region_budgets (region_id, monthly_cents, remaining_cents, spent_today_cents, reserved_cents, next_seq, last_day_key, last_month_key, updated_at_ms) VALUES ('r-v7', 1000, 750, 250, 0, 3, {}, {}, {now})",
            day_key(now),
            month_key(now)
        ),
        format!("INSERT INTO region_budget_transactions (id, region_id, seq, transaction_type, amount_cents, delta_cents, balance_after_cents, actor, created_at_ms) VALUES ('{tx_a}', 'r-v7', 1, 'allocation', 1000, 1000, 1000, 'admin', {now})"),
        format!("INSERT INTO region_budget_transactions (id, region_id, seq, transaction_type, amount_cents, delta_cents, balance_after_cents, agency_id, job_type, idempotency_key, actor, created_at_ms) VALUES ('{tx_s}', 'r-v7', 2, 'spend', 250, -250, 750, 't-v7', 'creative', 'k1', 'op', {now})"),
        format!("INSERT INTO audit_log (id, actor, action, tenant_id, object_type, object_id, detail, created_at_ms) VALUES ('01900000-0000-7000-8000-0000000000a1', 'admin', 'budget.allocation', NULL, 'budget_transaction', '{tx_a}', '{{}}', {now})"),
        format!("INSERT INTO audit_log (id, actor, action, tenant_id, object_type, object_id, detail, created_at_ms) VALUES ('01900000-0000-7000-8000-0000000000b1', 'op', 'budget.spend', 't-v7', 'budget_transaction', '{tx_s}', '{spend_detail}', {now})"),
        format!("INSERT INTO audit_log (id, actor, action, tenant_id, object_type, object_id, detail, created_at_ms) VALUES ('01900000-0000-7000-8000-0000000000c1', 'admin', 'tenant.create', 't-v7', 'tenant', 't-v7', '{{}}', {now})"),
    ];
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    fleetscale_store::exec_raw(&url, &rows)
        .await
        .expect("seed a v7 ledger");
    let store = Store::open(&url).await.expect("open migrates to 0009");
    let page = fleetscale_store::Page::default();
    let audit = store.list_audit(None, &page).await.unwrap();
    let got: Vec<(&str, &str)> = audit
        .items
        .iter()
        .map(|a| (a.id.as_str(), a.action.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("01900000-0000-7000-8000-0000000000c1", "tenant.create"),
            (tx_s, "budget.spend"),
            (tx_a, "budget.allocation"),
        ]
    );
    let spend = &audit.items[1];
    assert_eq!(
        spend.detail,
        serde_json::from_str::<serde_json::Value>(spend_detail).unwrap()
    );
    assert_eq!(
        (spend.tenant_id.as_deref(), spend.object_id.as_str()),
        (Some("t-v7"), tx_s)
    );
    let mine = store.list_audit(Some("t-v7"), &page).await.unwrap();
    assert_eq!(mine.items.len(), 2, "{:?}", mine.items);
    let budgets = fleetscale_store::Budgets::start(store.clone());
    let retry = budgets
        .apply_one(
            "r-v7",
            fleetscale_store::BudgetOp::Spend {
                amount_cents: 250,
                job_type: "creative".into(),
                agency_id: Some("t-v7".into()),
                idempotency_key: Some("k1".into()),
                description: None,
            },
            "op",
            now,
        )
        .await
        .unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.transaction_id, tx_s);
    assert_eq!(budgets.budget("r-v7").await.unwrap().remaining_cents, 750);
}

#[tokio::test]
async fn sqlite_budget_history_survives_the_key_and_audit_migrations() {
    on_sqlite(budget_history_survives_the_key_and_audit_migrations).await;
}

#[tokio::test]
async fn postgres_budget_history_survives_the_key_and_audit_migrations() {
    budget_history_survives_the_key_and_audit_migrations(common::fresh_pg_database().await.1).await;
}

/// A routing decision recorded before migration 0015 (its whole input and
/// decision in the row) reads back, lists and replays the same after it,
/// next to one recorded in the new layout.
async fn routing_decisions_of_the_old_layout_survive_the_context_migration(url: String) {
    use fleetscale_core::region::routing::{route, RouteInput};
    migrate_to(&url, 14).await.expect("migrate to v14");
    let input = serde_json::json!({
        "tenant_id": "t-old", "region_policy": {}, "routing_policy": {"type": "score", "latency_weight": 0.7, "capacity_weight": 0.3, "preferred_bonus": 10.0},
        "workload_type": "chat", "agent_type": "writer", "preferred_regions": [], "client_country": null,
        "request_id": "d-old", "now_ms": 1000,
        "regions": [
            {"name": "eu-west", "jurisdiction": "eu", "mode": "normal", "latency_samples_ms": [100],
             "pools": [{"pool": "p1", "agent_type": "writer", "spare": 2, "max": 5}], "ejected_until_ms": null},
            {"name": "us-east", "jurisdiction": "us", "mode": "frozen", "latency_samples_ms": [],
             "pools": [{"pool": "p2", "agent_type": "writer", "spare": 5, "max": 5}], "ejected_until_ms": null}
        ]
    });
    let parsed: RouteInput = serde_json::from_value(input.clone()).unwrap();
    let decision = route(&parsed).unwrap();
    let row = format!(
        "INSERT INTO routing_decisions (id, tenant_id, workload_type, agent_type, selected_region, input, decision, created_at_ms) \
         VALUES ('d-old', 't-old', 'chat', 'writer', 'eu-west', '{}', '{}', 1000)",
        input,
        serde_json::to_string(&decision).unwrap()
    );
    fleetscale_store::exec_raw(&url, &[row.as_str()])
        .await
        .expect("seed a v14 decision");
    let store = Store::open(&url).await.expect("open migrates");
    let got = store.get_routing_decision("d-old").await.unwrap();
    assert_eq!(got.input.input(), &parsed);
    assert!(got.input.context().is_none(), "kept whole");
    assert_eq!(got.decision, decision);
    assert_eq!(
        route(got.input.input()).unwrap(),
        decision,
        "replays the same"
    );
    assert_eq!(got.input.to_value().unwrap(), input);
    let listed = store
        .list_routing_decisions(&Default::default(), &Default::default())
        .await
        .unwrap();
    assert_eq!(listed.items, [got]);
}

#[tokio::test]
async fn sqlite_routing_decisions_of_the_old_layout_survive_the_context_migration() {
    on_sqlite(routing_decisions_of_the_old_layout_survive_the_context_migration).await;
}

#[tokio::test]
async fn postgres_routing_decisions_of_the_old_layout_survive_the_context_migration() {
    routing_decisions_of_the_old_layout_survive_the_context_migration(
        common::fresh_pg_database().await.1,
    )
    .await;
}
