//! One conformance suite for both backends: every test runs on a fresh,
//! migrated SQLite database and on a fresh PostgreSQL database.
//!
//! PostgreSQL comes from `FLEETSCALE_TEST_PG_URL` (an admin URL of a throwaway
//! cluster; `scripts/test.sh` starts one). Without it the PostgreSQL tests
//! fail loudly: they are never skipped.

use fleetscale_core::{
    ActuationStatus, NewPool, ProposalStatus, RawThresholdPolicy, TriggerSource,
};
use fleetscale_store::{now_ms, Fence, Page, Sample, ScaleRequest, Store, StoreError};

#[macro_use]
mod common;

conformance!(
    tenants_regions_and_conflicts,
    pools_roundtrip_and_pagination,
    scale_clamps_records_event_and_audit,
    scale_respects_lock_and_precondition,
    window_stats_use_each_pools_metric_and_window,
    lease_is_exclusive_until_expiry,
    fenced_write_fails_without_lease,
    proposals_lifecycle,
    actuation_bookkeeping,
    tokens_by_hash,
    tokens_listed_and_revoked,
    two_admins_revoking_each_other_leave_one,
    pool_policies_and_sample_reads,
    policy_pool_samples_read_every_pool_at_once,
    reads_decode_their_columns_by_name,
    an_unknown_stored_state_is_an_error_not_a_default,
    region_state_samples_and_mode_events,
    region_snapshots_figures_and_overwrite_rules,
    controller_memory_is_fenced_replaced_and_dropped_with_its_pool,
    metric_source_and_its_error_roundtrip_fenced_and_audited,
    pool_target_round_trips_and_instance_loads_are_the_newest,
);

async fn tenant_and_pool(s: &Store, window: i64) -> (String, fleetscale_store::Pool) {
    let t = s
        .create_tenant(&format!("t-{}", uuid::Uuid::new_v4()), "test")
        .await
        .unwrap();
    if s.get_region("eu-west").await.is_err() {
        s.create_region("eu-west", "eu", "test").await.unwrap();
    }
    let p = NewPool {
        tenant_id: t.id.clone(),
        region: "eu-west".into(),
        agent_type: format!("a{}", uuid::Uuid::new_v4().simple()),
        min_capacity: Some(1),
        max_capacity: Some(5),
        desired_capacity: Some(2),
        capacity_per_instance: Some(10.0),
        metric: Some("throughput".into()),
        mode: Some("autonomous".into()),
        job_kind: None,
        scaling_policy: Some(RawThresholdPolicy {
            window_seconds: Some(window),
            ..Default::default()
        }),
        metric_source: None,
        target: None,
    }
    .validate()
    .unwrap();
    let pool = s.create_pool(&p, "test").await.unwrap();
    (t.id, pool)
}

fn req(pool_id: &str, capacity: i64) -> ScaleRequest {
    ScaleRequest {
        pool_id: pool_id.into(),
        capacity,
        reason: "test".into(),
        trigger_source: TriggerSource::Manual,
        metadata: serde_json::json!({}),
        actor: "tester".into(),
        expect_desired: None,
        respect_safety_lock: false,
        actuation_status: ActuationStatus::Pending,
        fence: None,
        now_ms: now_ms(),
    }
}

async fn tenants_regions_and_conflicts(s: Store) {
    let t = s.create_tenant("acme", "test").await.unwrap();
    assert_eq!(s.get_tenant(&t.id).await.unwrap().name, "acme");
    assert!(matches!(
        s.create_tenant("acme", "test").await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        s.get_tenant("nope").await,
        Err(StoreError::NotFound { .. })
    ));
    let r = s.create_region("us-east", "us", "test").await.unwrap();
    assert_eq!(s.get_region("us-east").await.unwrap().id, r.id);
    assert_eq!(s.get_region(&r.id).await.unwrap().jurisdiction, "us");
    assert!(matches!(
        s.create_region("us-east", "us", "test").await,
        Err(StoreError::Conflict { .. })
    ));
    let audit = s.list_audit(None, &Page::default()).await.unwrap();
    assert_eq!(
        audit.items.len(),
        2,
        "each successful mutation is audited once"
    );
}

async fn pools_roundtrip_and_pagination(s: Store) {
    let (tenant, pool) = tenant_and_pool(&s, 300).await;
    let got = s.get_pool(&pool.id).await.unwrap();
    assert_eq!(got, pool);
    assert_eq!(got.scaling_policy.scale_up_threshold, 80.0);
    for i in 0..4 {
        let p = NewPool {
            tenant_id: tenant.clone(),
            region: "eu-west".into(),
            agent_type: format!("extra{i}"),
            ..Default::default()
        }
        .validate()
        .unwrap();
        s.create_pool(&p, "test").await.unwrap();
    }
    let mut seen = Vec::new();
    let mut page = Page {
        limit: Some(2),
        cursor: None,
    };
    loop {
        let l = s.list_pools(Some(&tenant), &page).await.unwrap();
        assert!(l.items.len() <= 2);
        seen.extend(l.items.into_iter().map(|p| p.id));
        match l.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "ids are unique and in order");
    let dup = NewPool {
        tenant_id: tenant.clone(),
        region: "eu-west".into(),
        agent_type: "extra0".into(),
        ..Default::default()
    }
    .validate()
    .unwrap();
    assert!(matches!(
        s.create_pool(&dup, "test").await,
        Err(StoreError::Conflict { .. })
    ));
    let missing_region = NewPool {
        tenant_id: tenant,
        region: "mars".into(),
        agent_type: "x".into(),
        ..Default::default()
    }
    .validate()
    .unwrap();
    assert!(matches!(
        s.create_pool(&missing_region, "test").await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn scale_clamps_records_event_and_audit(s: Store) {
    let (tenant, pool) = tenant_and_pool(&s, 300).await;
    let out = s.scale(&req(&pool.id, 99)).await.unwrap();
    assert_eq!(out.pool.desired_capacity, 5, "clamped to max");
    let ev = out.event.expect("an event");
    assert_eq!((ev.previous_capacity, ev.new_capacity), (2, 5));
    assert_eq!(ev.metadata["requested_capacity"], 99);
    assert_eq!(ev.actuation.status, ActuationStatus::Pending);
    let again = s.scale(&req(&pool.id, 5)).await.unwrap();
    assert!(again.event.is_none(), "no change, no event");
    let out = s.scale(&req(&pool.id, -3)).await.unwrap();
    assert_eq!(out.pool.desired_capacity, 1, "clamped to min");
    let evs = s
        .list_events(Some(&pool.id), None, &Page::default())
        .await
        .unwrap();
    assert_eq!(evs.items.len(), 2);
    assert_eq!(evs.items[0].new_capacity, 1, "newest first");
    assert_eq!(evs.items[1].actuation.status, ActuationStatus::Superseded);
    assert_eq!(s.get_event(&ev.id).await.unwrap().new_capacity, 5);
    let stored = s.get_pool(&pool.id).await.unwrap();
    assert_eq!(stored.desired_capacity, 1);
    assert!(stored.last_scaled_at_ms.is_some());
    let audit = s.list_audit(Some(&tenant), &Page::default()).await.unwrap();
    assert_eq!(
        audit
            .items
            .iter()
            .filter(|a| a.action == "pool.scale")
            .count(),
        2
    );
}

async fn scale_respects_lock_and_precondition(s: Store) {
    let (_, pool) = tenant_and_pool(&s, 300).await;
    let mut r = req(&pool.id, 4);
    r.expect_desired = Some(3);
    let out = s.scale(&r).await.unwrap();
    assert!(out.skipped.is_some() && out.event.is_none());
    s.set_safety_lock(&pool.id, true, "admin").await.unwrap();
    let mut r = req(&pool.id, 4);
    r.respect_safety_lock = true;
    assert!(s.scale(&r).await.unwrap().skipped.is_some());
    let manual = s.scale(&req(&pool.id, 4)).await.unwrap();
    assert_eq!(
        manual.pool.desired_capacity, 4,
        "a manual change by an admin passes the lock"
    );
}

async fn window_stats_use_each_pools_metric_and_window(s: Store) {
    let (tenant, a) = tenant_and_pool(&s, 60).await;
    let (_, b) = tenant_and_pool(&s, 300).await;
    let now = 10_000_000;
    let samples = vec![
        Sample {
            pool_id: a.id.clone(),
            metric: "throughput".into(),
            ts_ms: now - 1_000,
            value: 10.0,
        },
        Sample {
            pool_id: a.id.clone(),
            metric: "throughput".into(),
            ts_ms: now - 2_000,
            value: 20.0,
        },
        Sample {
            pool_id: a.id.clone(),
            metric: "throughput".into(),
            ts_ms: now - 120_000,
            value: 1000.0,
        },
        Sample {
            pool_id: a.id.clone(),
            metric: "latency".into(),
            ts_ms: now - 1_000,
            value: 5000.0,
        },
        Sample {
            pool_id: b.id.clone(),
            metric: "throughput".into(),
            ts_ms: now - 120_000,
            value: 7.0,
        },
        Sample {
            pool_id: b.id.clone(),
            metric: "throughput".into(),
            ts_ms: now + 1,
            value: 99.0,
        },
    ];
    s.insert_samples(&samples).await.unwrap();
    let stats = s.window_stats(None, now).await.unwrap();
    let sa = stats[&a.id];
    assert_eq!((sa.mean, sa.count, sa.newest_ts_ms), (15.0, 2, now - 1_000));
    let sb = stats[&b.id];
    assert_eq!(
        (sb.mean, sb.count),
        (7.0, 1),
        "b's 300 s window includes the older sample, not the future one"
    );
    assert_eq!(s.window_stats(Some(&tenant), now).await.unwrap().len(), 1);
    assert_eq!(s.prune_samples(now - 60_000).await.unwrap(), 2);
    let raw = s.samples(&a.id, "throughput", 0, now, 10).await.unwrap();
    assert_eq!(raw.len(), 2);
    // A big batch goes in whole.
    let big: Vec<Sample> = (0..2500)
        .map(|i| Sample {
            pool_id: a.id.clone(),
            metric: "throughput".into(),
            ts_ms: now - 10_000 + i,
            value: 1.0,
        })
        .collect();
    s.insert_samples(&big).await.unwrap();
    assert_eq!(s.window_stats(None, now).await.unwrap()[&a.id].count, 2502);
}

async fn lease_is_exclusive_until_expiry(s: Store) {
    assert!(s.try_lease("loop", "r1", 1_000, 500).await.unwrap());
    assert!(!s.try_lease("loop", "r2", 1_200, 500).await.unwrap());
    assert!(
        s.try_lease("loop", "r1", 1_400, 500).await.unwrap(),
        "renewal"
    );
    assert!(!s.try_lease("loop", "r2", 1_899, 500).await.unwrap());
    assert!(
        s.try_lease("loop", "r2", 1_900, 500).await.unwrap(),
        "takeover after expiry"
    );
    assert_eq!(
        s.lease_holder("loop").await.unwrap(),
        Some(("r2".into(), 2_400))
    );
    assert!(s.holds_lease("loop", "r2", 2_000).await.unwrap());
    assert!(!s.holds_lease("loop", "r1", 2_000).await.unwrap());
    s.release_lease("loop", "r2").await.unwrap();
    assert!(s.try_lease("loop", "r1", 2_000, 500).await.unwrap());
}

async fn fenced_write_fails_without_lease(s: Store) {
    let (_, pool) = tenant_and_pool(&s, 300).await;
    let now = now_ms();
    let mut r = req(&pool.id, 3);
    r.fence = Some(Fence {
        name: "loop".into(),
        holder: "r1".into(),
    });
    r.now_ms = now;
    assert!(matches!(
        s.scale(&r).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(s.try_lease("loop", "r1", now, 10_000).await.unwrap());
    assert_eq!(s.scale(&r).await.unwrap().pool.desired_capacity, 3);
    assert!(s
        .try_lease("loop", "r2", now + 10_001, 10_000)
        .await
        .unwrap());
    let mut r2 = req(&pool.id, 4);
    r2.fence = Some(Fence {
        name: "loop".into(),
        holder: "r1".into(),
    });
    r2.now_ms = now + 10_002;
    assert!(matches!(
        s.scale(&r2).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert_eq!(
        s.get_pool(&pool.id).await.unwrap().desired_capacity,
        3,
        "the stale leader changed nothing"
    );
}

async fn proposals_lifecycle(s: Store) {
    let (tenant, pool) = tenant_and_pool(&s, 300).await;
    let d = serde_json::json!({"action": "scale_up"});
    let p1 = s
        .upsert_proposal(&pool, 3, "busy", &d, None, 1_000)
        .await
        .unwrap();
    let p2 = s
        .upsert_proposal(&pool, 4, "busier", &d, None, 2_000)
        .await
        .unwrap();
    assert_eq!(p1.id, p2.id, "one pending proposal per pool, refreshed");
    assert_eq!(p2.target_capacity, 4);
    let settled = s
        .settle_proposal(&p1.id, false, "op", Some("not now"), None, 3_000)
        .await
        .unwrap();
    assert_eq!(settled.status, ProposalStatus::Rejected);
    assert!(matches!(
        s.settle_proposal(&p1.id, true, "op", None, None, 4_000)
            .await,
        Err(StoreError::Conflict { .. })
    ));
    let p3 = s
        .upsert_proposal(&pool, 3, "again", &d, None, 5_000)
        .await
        .unwrap();
    assert_ne!(p3.id, p1.id);
    s.withdraw_proposal(&pool.id, 6_000).await.unwrap();
    assert_eq!(
        s.get_proposal(&p3.id).await.unwrap().status,
        ProposalStatus::Superseded
    );
    let l = s
        .list_proposals(
            Some(&tenant),
            Some(ProposalStatus::Rejected),
            &Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(l.items.len(), 1);
}

async fn actuation_bookkeeping(s: Store) {
    let (_, pool) = tenant_and_pool(&s, 300).await;
    let ev = s.scale(&req(&pool.id, 3)).await.unwrap().event.unwrap();
    assert_eq!(s.pending_actuations(10).await.unwrap().len(), 1);
    s.record_actuation(&ev.id, false, 3, Some("connection refused"), 1)
        .await
        .unwrap();
    let e = s.get_event(&ev.id).await.unwrap();
    assert_eq!(
        (e.actuation.status.as_str(), e.actuation.attempts),
        ("failed", 3)
    );
    assert_eq!(
        s.pending_actuations(10).await.unwrap().len(),
        1,
        "failed events are retried"
    );
    s.record_actuation(&ev.id, true, 1, None, 2).await.unwrap();
    let e = s.get_event(&ev.id).await.unwrap();
    assert_eq!(
        (
            e.actuation.status.as_str(),
            e.actuation.attempts,
            e.actuation.actuated_at_ms
        ),
        ("delivered", 4, Some(2))
    );
    assert!(s.pending_actuations(10).await.unwrap().is_empty());
}

async fn tokens_by_hash(s: Store) {
    let t = s.create_tenant("tok", "test").await.unwrap();
    assert!(!s.has_admin_token().await.unwrap());
    s.ensure_admin_token("h-admin", "admin").await.unwrap();
    s.ensure_admin_token("h-admin", "admin").await.unwrap();
    assert!(s.has_admin_token().await.unwrap());
    let g = s
        .insert_token("h-view", Some(&t.id), "viewer", "ci viewer", "admin")
        .await
        .unwrap();
    let found = s.find_token("h-view").await.unwrap().unwrap();
    assert_eq!(found, g);
    assert_eq!(
        s.find_token("h-admin").await.unwrap().unwrap().tenant_id,
        None
    );
    assert!(s.find_token("nope").await.unwrap().is_none());
}

async fn tokens_listed_and_revoked(s: Store) {
    let t = s.create_tenant("tok", "test").await.unwrap();
    s.ensure_admin_token("h-admin", "admin").await.unwrap();
    let view = s
        .insert_token("h-view", Some(&t.id), "viewer", "ci viewer", "admin")
        .await
        .unwrap();
    let all = s.list_tokens(None, &Page::default()).await.unwrap();
    assert_eq!(all.items.len(), 2);
    let own = s.list_tokens(Some(&t.id), &Page::default()).await.unwrap();
    assert_eq!(own.items.len(), 1);
    assert_eq!(own.items[0].id, view.id);
    assert_eq!(own.items[0].name, "ci viewer");
    assert!(own.items[0].created_at_ms > 0);
    // Pages of one, by id.
    let first = s
        .list_tokens(
            None,
            &Page {
                limit: Some(1),
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(first.items.len(), 1);
    let second = s
        .list_tokens(
            None,
            &Page {
                limit: Some(1),
                cursor: first.next_cursor.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert_ne!(first.items[0].id, second.items[0].id);
    // Revoking returns the hash, removes the token and audits it.
    assert_eq!(
        s.revoke_token(&view.id, "root", true).await.unwrap(),
        "h-view"
    );
    assert!(s.find_token("h-view").await.unwrap().is_none());
    assert!(matches!(
        s.get_token(&view.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.revoke_token(&view.id, "root", true).await,
        Err(StoreError::NotFound { .. })
    ));
    let audit = s.list_audit(Some(&t.id), &Page::default()).await.unwrap();
    assert!(audit
        .items
        .iter()
        .any(|a| a.action == "token.revoke" && a.object_id == view.id && a.actor == "root"));
    // The last global admin token is kept when asked to, revoked otherwise.
    let admin = s.list_tokens(None, &Page::default()).await.unwrap().items[0].clone();
    assert!(matches!(
        s.revoke_token(&admin.id, "root", true).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(s.has_admin_token().await.unwrap());
    s.revoke_token(&admin.id, "root", false).await.unwrap();
    assert!(!s.has_admin_token().await.unwrap());
}

async fn two_admins_revoking_each_other_leave_one(s: Store) {
    for round in 0..5 {
        let a = s
            .insert_token(&format!("a{round}"), None, "admin", "a", "root")
            .await
            .unwrap();
        let b = s
            .insert_token(&format!("b{round}"), None, "admin", "b", "root")
            .await
            .unwrap();
        let (ra, rb) = tokio::join!(
            s.revoke_token(&b.id, "a", true),
            s.revoke_token(&a.id, "b", true)
        );
        let revoked = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(revoked, 1, "round {round}: {ra:?} {rb:?}");
        assert!(s.has_admin_token().await.unwrap());
        // The survivor goes next round (keep_an_admin off), so every
        // round starts with no global admin.
        let left = if ra.is_ok() { &a.id } else { &b.id };
        s.revoke_token(left, "root", false).await.unwrap();
        assert!(!s.has_admin_token().await.unwrap());
    }
}

async fn pool_policies_and_sample_reads(s: Store) {
    let (_, pool) = tenant_and_pool(&s, 300).await;
    assert!(pool.policies.is_none());
    let spec: fleetscale_core::decision::PoolPolicies = serde_json::from_value(
        serde_json::json!({"policies": [{"type": "queue", "messages_per_instance": 10}]}),
    )
    .unwrap();
    let p = s
        .set_pool_policies(&pool.id, Some(&spec), "admin")
        .await
        .unwrap();
    assert_eq!(p.policies.as_ref(), Some(&spec));
    assert_eq!(s.get_pool(&pool.id).await.unwrap().policies, Some(spec));
    assert!(s
        .set_pool_policies(&pool.id, None, "admin")
        .await
        .unwrap()
        .policies
        .is_none());
    let base = 999_900_000; // a multiple of the 5-minute bucket
    let samples: Vec<Sample> = [(0, 1.0), (100_000, 3.0), (300_000, 10.0), (900_000, 7.0)]
        .iter()
        .map(|&(dt, v)| Sample {
            pool_id: pool.id.clone(),
            metric: "throughput".into(),
            ts_ms: base + dt,
            value: v,
        })
        .chain(std::iter::once(Sample {
            pool_id: pool.id.clone(),
            metric: "queue_depth".into(),
            ts_ms: base + 5,
            value: 42.0,
        }))
        .collect();
    s.insert_samples(&samples).await.unwrap();
    let buckets = s
        .bucketed_means(&pool.id, "throughput", base, base + 1_200_000, 300_000)
        .await
        .unwrap();
    assert_eq!(
        buckets,
        [(base, 2.0), (base + 300_000, 10.0), (base + 900_000, 7.0)]
    );
    let all = s
        .pool_samples(&pool.id, base - 1, base + 900_000, 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    assert!(
        all.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms),
        "oldest first"
    );
    let newest = s
        .pool_samples(&pool.id, base - 1, base + 900_000, 2)
        .await
        .unwrap();
    assert_eq!(
        newest.iter().map(|x| x.ts_ms).collect::<Vec<_>>(),
        [base + 300_000, base + 900_000],
        "the limit keeps the newest"
    );
}

async fn policy_pool_samples_read_every_pool_at_once(s: Store) {
    let spec: fleetscale_core::PoolPolicies = serde_json::from_value(
        serde_json::json!({"policies": [{"type": "queue", "messages_per_instance": 10}]}),
    )
    .unwrap();
    let (_, a) = tenant_and_pool(&s, 60).await;
    let (_, b) = tenant_and_pool(&s, 60).await;
    let (_, plain) = tenant_and_pool(&s, 60).await;
    for p in [&a, &b] {
        s.set_pool_policies(&p.id, Some(&spec), "admin")
            .await
            .unwrap();
    }
    let base = 1_000_000_000;
    let mut samples = Vec::new();
    for (i, p) in [&a, &b, &plain].iter().enumerate() {
        for k in 0..(3 + i as i64) {
            for metric in ["throughput", "queue_depth"] {
                samples.push(Sample {
                    pool_id: p.id.clone(),
                    metric: metric.into(),
                    ts_ms: base + k * 1_000,
                    value: (i as i64 * 100 + k) as f64,
                });
            }
        }
    }
    s.insert_samples(&samples).await.unwrap();
    let (from, to) = (base, base + 10_000);
    let all = s.policy_pool_samples(from, to, 100).await.unwrap();
    assert_eq!(all.len(), 2, "only pools with policies");
    assert!(!all.contains_key(&plain.id));
    for p in [&a, &b] {
        let one = s.pool_samples(&p.id, from, to, 100).await.unwrap();
        let key = |v: &[Sample]| {
            let mut k: Vec<(String, i64, u64)> = v
                .iter()
                .map(|x| (x.metric.clone(), x.ts_ms, x.value.to_bits()))
                .collect();
            k.sort();
            k
        };
        assert_eq!(
            key(&all[&p.id]),
            key(&one),
            "same samples as the per-pool read"
        );
        assert!(
            all[&p.id].windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms),
            "oldest first"
        );
    }
    // The limit is per pool and keeps each pool's newest.
    let few = s.policy_pool_samples(from, to, 2).await.unwrap();
    for p in [&a, &b] {
        assert_eq!(few[&p.id].len(), 2);
        let newest = s
            .pool_samples(&p.id, from, to, 100)
            .await
            .unwrap()
            .last()
            .unwrap()
            .ts_ms;
        assert!(
            few[&p.id].iter().all(|x| x.ts_ms == newest),
            "{:?}",
            few[&p.id]
        );
    }
}

/// A mode, trigger source or status the code does not know (a corrupt row,
/// or one written by a newer version) is refused when read, naming the
/// column and the values allowed; it never silently becomes `recommend`.
async fn an_unknown_stored_state_is_an_error_not_a_default(s: Store) {
    let (_, pool) = tenant_and_pool(&s, 60).await;
    let ev = s.scale(&req(&pool.id, 3)).await.unwrap().event.unwrap();
    s.exec_admin(&format!(
        "UPDATE pools SET mode = 'turbo' WHERE id = '{}'",
        pool.id
    ))
    .await
    .unwrap();
    match s.get_pool(&pool.id).await {
        Err(StoreError::Corrupt(m)) => {
            assert!(m.contains("column mode") && m.contains("\"turbo\""), "{m}");
            assert!(m.contains("autonomous, recommend, frozen"), "{m}");
        }
        other => panic!("a corrupt mode was read as {other:?}"),
    }
    s.exec_admin(&format!(
        "UPDATE scaling_events SET trigger_source = 'cosmic-ray' WHERE id = '{}'",
        ev.id
    ))
    .await
    .unwrap();
    match s.get_event(&ev.id).await {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("trigger_source"), "{m}"),
        other => panic!("a corrupt trigger source was read as {other:?}"),
    }
}

async fn region_state_samples_and_mode_events(s: Store) {
    use fleetscale_core::region::mode::{ModeState, ModeTransition, ScalingMode};
    use fleetscale_core::region::state::RegionState;
    use fleetscale_store::RegionSample;
    let (_, pool) = tenant_and_pool(&s, 60).await;
    let region = s.get_region("eu-west").await.unwrap();
    let sample = |ts_ms, value| RegionSample {
        region_id: region.id.clone(),
        metric: "latency_ms".into(),
        ts_ms,
        value,
    };
    s.insert_region_samples(&[
        sample(1_000, 80.0),
        sample(3_000, 120.0),
        sample(2_000, 90.0),
    ])
    .await
    .unwrap();
    let newest = s.newest_region_samples("latency_ms", 10_000).await.unwrap();
    assert_eq!(newest.get(&region.id), Some(&120.0));
    let before = s.newest_region_samples("latency_ms", 2_500).await.unwrap();
    assert_eq!(
        before.get(&region.id),
        Some(&90.0),
        "only samples up to now"
    );
    assert_eq!(s.prune_region_samples(2_000).await.unwrap(), 1);

    // Fenced: without the lease nothing is written.
    let fence = Fence {
        name: "control-loop".into(),
        holder: "r1".into(),
    };
    let now = now_ms();
    let state = RegionState {
        capacity_score: 42.5,
        warning_index: 50.0,
        ..RegionState::default()
    };
    let t = ModeTransition {
        from: ScalingMode::Normal,
        to: ScalingMode::Throttled,
        capacity_score: 42.5,
        pressure: 80.0,
        at_ms: now,
    };
    let mut mode = ModeState::new(ScalingMode::Throttled, now);
    assert!(matches!(
        s.put_region_state(&region.id, &state, &mode, Some(&t), &fence, now)
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(s.region_state(&region.id).await.unwrap().is_none());
    assert!(s
        .try_lease("control-loop", "r1", now, 60_000)
        .await
        .unwrap());
    s.put_region_state(&region.id, &state, &mode, Some(&t), &fence, now)
        .await
        .unwrap();
    mode.streak = 1;
    s.put_region_state(&region.id, &state, &mode, None, &fence, now + 1)
        .await
        .unwrap();
    let got = s.region_state(&region.id).await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.mode, got.updated_at_ms),
        (state, mode, now + 1)
    );
    assert_eq!(s.region_states().await.unwrap().len(), 1);
    let events = s
        .region_mode_events(Some(&region.id), now - 1, 10)
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        1,
        "one transition recorded, not one per write"
    );
    assert_eq!(events[0].transition, t);
    assert!(s
        .region_mode_events(None, now + 1, 10)
        .await
        .unwrap()
        .is_empty());

    // A pool scaled to its max within the window counts as at max.
    assert!(s.pools_at_max_since(now - 1).await.unwrap().is_empty());
    s.scale(&req(&pool.id, 5)).await.unwrap();
    assert!(s
        .pools_at_max_since(now - 1)
        .await
        .unwrap()
        .contains(&pool.id));
    s.scale(&req(&pool.id, 2)).await.unwrap();
    assert!(
        s.pools_at_max_since(now - 1)
            .await
            .unwrap()
            .contains(&pool.id),
        "left max within the window"
    );
    assert!(!s
        .pools_at_max_since(now_ms() + 1_000)
        .await
        .unwrap()
        .contains(&pool.id));
}

async fn region_snapshots_figures_and_overwrite_rules(s: Store) {
    use fleetscale_core::region::mode::ScalingMode;
    use fleetscale_core::region::snapshot::PeriodType;
    use fleetscale_core::region::state::RegionState;
    use fleetscale_store::{RegionSample, SnapshotRequest};
    let _ = tenant_and_pool(&s, 60).await;
    let region = s.get_region("eu-west").await.unwrap();
    let point = |metric: &str, ts_ms, value| RegionSample {
        region_id: region.id.clone(),
        metric: metric.into(),
        ts_ms,
        value,
    };
    s.insert_region_samples(&[
        point("capacity_score", 1_000, 40.0),
        point("capacity_score", 2_000, 60.0),
        point("pressure", 1_000, 70.0),
        point("pressure", 2_000, 90.0),
        point("pressure", 9_000, 99.0), // after the period
    ])
    .await
    .unwrap();
    let state = RegionState {
        capacity_score: 55.0,
        ..RegionState::default()
    };
    let mut req = SnapshotRequest {
        region_id: &region.id,
        period_type: PeriodType::Hourly,
        period: (0, 5_000),
        state: &state,
        mode: ScalingMode::Cautious,
        actor: None,
        now_ms: 5_000,
    };
    let first = s.take_region_snapshot(&req).await.unwrap();
    assert_eq!(first.avg_capacity, Some(50.0));
    assert_eq!(first.peak_pressure, Some(90.0));
    assert_eq!(first.budget_used_cents, 0);
    assert_eq!((first.mode, first.state), (ScalingMode::Cautious, state));
    // The leader never replaces a snapshot; an operator does.
    req.period = (0, 9_500);
    let again = s.take_region_snapshot(&req).await.unwrap();
    assert_eq!(again, first);
    req.actor = Some("ops");
    let replaced = s.take_region_snapshot(&req).await.unwrap();
    assert_eq!(replaced.peak_pressure, Some(99.0));
    assert_eq!(replaced.period_end_ms, 9_500);
    assert_eq!(
        s.regions_with_snapshot(PeriodType::Hourly, 0)
            .await
            .unwrap(),
        [region.id.clone()].into_iter().collect()
    );
    assert!(s
        .regions_with_snapshot(PeriodType::Daily, 0)
        .await
        .unwrap()
        .is_empty());
    // No samples: no averages, yet a snapshot.
    req.period = (3_600_000, 7_200_000);
    let empty = s.take_region_snapshot(&req).await.unwrap();
    assert_eq!((empty.avg_capacity, empty.peak_pressure), (None, None));
    let history = s
        .region_snapshots(&region.id, PeriodType::Hourly, 10)
        .await
        .unwrap();
    let starts: Vec<i64> = history.iter().map(|h| h.period_start_ms).collect();
    assert_eq!(starts, [3_600_000, 0], "newest first");
}

/// Database URLs the store cannot serve are refused at open with a message
/// naming the problem: an unknown scheme, and in-memory SQLite (the budget
/// writer opens the database file a second time, which a memory database
/// does not have).
#[tokio::test]
async fn unusable_database_urls_are_refused_at_open() {
    for (url, says) in [
        ("mysql://localhost/x", "must start with sqlite:"),
        ("sqlite::memory:", "in-memory SQLite"),
        ("sqlite://x.db?mode=memory", "in-memory SQLite"),
    ] {
        match Store::open(url).await {
            Err(StoreError::Config(msg)) => assert!(msg.contains(says), "{url}: {msg}"),
            Err(e) => panic!("{url}: wrong error {e}"),
            Ok(_) => panic!("{url}: opened"),
        }
    }
}

/// Reads not covered elsewhere decode each column by its name: samples,
/// pool owners and pending proposals come back field for field.
async fn reads_decode_their_columns_by_name(s: Store) {
    let (tenant, pool) = tenant_and_pool(&s, 60).await;
    let now = now_ms();
    let sample = |ts_ms, value| Sample {
        pool_id: pool.id.clone(),
        metric: "throughput".into(),
        ts_ms,
        value,
    };
    s.insert_samples(&[sample(now - 2_000, 1.5), sample(now - 1_000, 2.5)])
        .await
        .unwrap();
    let read = s
        .samples(&pool.id, "throughput", now - 10_000, now, 10)
        .await
        .unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(
        (
            read[1].pool_id.as_str(),
            read[1].metric.as_str(),
            read[1].ts_ms,
            read[1].value
        ),
        (pool.id.as_str(), "throughput", now - 1_000, 2.5)
    );
    let owners = s.pool_tenants(&[pool.id.as_str()]).await.unwrap();
    assert_eq!(owners.get(&pool.id), Some(&tenant));
    s.upsert_proposal(&pool, 4, "test", &serde_json::json!({}), None, now)
        .await
        .unwrap();
    let pending = s.pending_proposals().await.unwrap();
    assert_eq!(pending.get(&pool.id), Some(&4));
}

async fn controller_memory_is_fenced_replaced_and_dropped_with_its_pool(s: Store) {
    use fleetscale_core::memory::ControllerMemory;
    let (_, a) = tenant_and_pool(&s, 300).await;
    let (_, b) = tenant_and_pool(&s, 300).await;
    assert!(s.controller_memories().await.unwrap().is_empty());
    let now = now_ms();
    let fence = Fence {
        name: "loop".into(),
        holder: "r1".into(),
    };
    let mem = |up: i64| ControllerMemory {
        last_scale_up_at_ms: Some(up),
        last_scale_down_at_ms: Some(up - 1),
        ..ControllerMemory::default()
    };
    let both = vec![(a.id.clone(), mem(10)), (b.id.clone(), mem(20))];
    assert!(matches!(
        s.put_controller_memories(&both, Some(&fence), now).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(
        s.controller_memories().await.unwrap().is_empty(),
        "nothing written without the lease"
    );
    assert!(s.try_lease("loop", "r1", now, 10_000).await.unwrap());
    s.put_controller_memories(&both, Some(&fence), now)
        .await
        .unwrap();
    s.put_controller_memories(&[(a.id.clone(), mem(30))], Some(&fence), now)
        .await
        .unwrap();
    let got = s.controller_memories().await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[&a.id], mem(30), "replaced");
    assert_eq!(got[&b.id], mem(20));
    assert_eq!(s.controller_memory(&a.id).await.unwrap(), Some(mem(30)));
    s.delete_pool(&b.id, "test").await.unwrap();
    assert_eq!(s.controller_memory(&b.id).await.unwrap(), None, "pool gone");
    assert_eq!(
        s.controller_memories().await.unwrap().len(),
        1,
        "a deleted pool's memory is not read"
    );
    s.put_controller_memories(&[(a.id.clone(), mem(40))], None, now)
        .await
        .unwrap();
    assert_eq!(s.controller_memories().await.unwrap()[&a.id], mem(40));
}

async fn metric_source_and_its_error_roundtrip_fenced_and_audited(s: Store) {
    use fleetscale_core::metric_source::{MetricsError, RawMetricSource};
    use fleetscale_core::PoolPatch;
    let (tenant, pool) = tenant_and_pool(&s, 300).await;
    assert_eq!(pool.metric_source, None);
    assert_eq!(pool.metrics_error, None);
    let patch = PoolPatch {
        metric_source: Some(Some(RawMetricSource {
            kind: "prometheus".into(),
            url: Some("http://prom:9090".into()),
            query: r#"sum(rate(agent_runs_total{pool="writer"}[1m]))"#.into(),
            metric: Some("throughput".into()),
        })),
        ..PoolPatch::default()
    };
    let valid = patch.apply(&pool.to_valid()).unwrap();
    let updated = s.update_pool(&pool.id, &valid, "admin-x").await.unwrap();
    let src = updated.metric_source.clone().expect("stored");
    assert_eq!(src.url.as_deref(), Some("http://prom:9090"));
    assert_eq!(src.metric.as_deref(), Some("throughput"));
    assert!(src.query.contains(r#"pool="writer""#));
    assert_eq!(
        updated.to_valid(),
        valid,
        "what was validated is what is read"
    );
    let audit = s.list_audit(Some(&tenant), &Page::default()).await.unwrap();
    assert!(
        audit.items.iter().any(|a| a.action == "pool.update"
            && a.actor == "admin-x"
            && a.detail["metric_source"]["query"] == src.query.as_str()),
        "the change is audited with the source"
    );

    // The error record: fenced, replaced, cleared.
    let now = now_ms();
    let fence = Fence {
        name: "loop".into(),
        holder: "r1".into(),
    };
    let e1 = MetricsError::after(None, "connection refused", now);
    assert!(matches!(
        s.set_metrics_error(&pool.id, Some(&e1), Some(&fence), now)
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert_eq!(s.get_pool(&pool.id).await.unwrap().metrics_error, None);
    assert!(s.try_lease("loop", "r1", now, 10_000).await.unwrap());
    s.set_metrics_error(&pool.id, Some(&e1), Some(&fence), now)
        .await
        .unwrap();
    let e2 = MetricsError::after(Some(&e1), "timed out", now + 1000);
    s.set_metrics_error(&pool.id, Some(&e2), Some(&fence), now + 1000)
        .await
        .unwrap();
    let got = s.get_pool(&pool.id).await.unwrap();
    assert_eq!(got.metrics_error, Some(e2.clone()));
    assert_eq!(got.updated_at_ms, updated.updated_at_ms, "not an update");
    let listed = s.all_pools(None).await.unwrap();
    let same = listed.iter().find(|p| p.id == pool.id).unwrap();
    assert_eq!(same.metrics_error, Some(e2.clone()));
    assert_eq!(same.metric_source, Some(src));
    s.set_metrics_error(&pool.id, None, None, now)
        .await
        .unwrap();
    assert_eq!(s.get_pool(&pool.id).await.unwrap().metrics_error, None);

    // An update that keeps the source keeps its error; changing the
    // source or removing it drops the error.
    s.set_metrics_error(&pool.id, Some(&e2), None, now)
        .await
        .unwrap();
    let same = PoolPatch {
        max_capacity: Some(4),
        ..PoolPatch::default()
    }
    .apply(&got.to_valid())
    .unwrap();
    let p = s.update_pool(&pool.id, &same, "admin-x").await.unwrap();
    assert_eq!(p.metrics_error, Some(e2.clone()));
    let mut other = p.to_valid();
    other.metric_source.as_mut().unwrap().query = "sum(up)".into();
    let p = s.update_pool(&pool.id, &other, "admin-x").await.unwrap();
    assert_eq!(p.metrics_error, None, "a new query starts clean");
    s.set_metrics_error(&pool.id, Some(&e2), None, now)
        .await
        .unwrap();
    let removed = PoolPatch {
        metric_source: Some(None),
        ..PoolPatch::default()
    }
    .apply(&got.to_valid())
    .unwrap();
    let p = s.update_pool(&pool.id, &removed, "admin-x").await.unwrap();
    assert_eq!(p.metric_source, None);
    assert_eq!(p.metrics_error, None);
    s.set_metrics_error("no-such-pool", None, None, now)
        .await
        .unwrap();
}

async fn pool_target_round_trips_and_instance_loads_are_the_newest(s: Store) {
    use fleetscale_core::workload::{RawWorkloadTarget, WorkloadKind};
    use fleetscale_core::PoolPatch;
    use fleetscale_store::InstanceSample;
    let (_, pool) = tenant_and_pool(&s, 300).await;
    assert_eq!(pool.target, None);
    let patch = PoolPatch {
        target: Some(Some(RawWorkloadTarget {
            kind: "StatefulSet".into(),
            namespace: "agents".into(),
            name: "writer-v2".into(),
        })),
        ..Default::default()
    };
    let updated = s
        .update_pool(&pool.id, &patch.apply(&pool.to_valid()).unwrap(), "test")
        .await
        .unwrap();
    let t = updated.target.clone().unwrap();
    assert_eq!(
        (t.kind, t.namespace.as_str(), t.name.as_str()),
        (WorkloadKind::StatefulSet, "agents", "writer-v2")
    );
    assert_eq!(s.get_pool(&pool.id).await.unwrap(), updated);
    assert!(s
        .all_pools(None)
        .await
        .unwrap()
        .iter()
        .any(|p| p.target == updated.target));
    let cleared = PoolPatch {
        target: Some(None),
        ..Default::default()
    };
    let updated = s
        .update_pool(
            &pool.id,
            &cleared.apply(&updated.to_valid()).unwrap(),
            "test",
        )
        .await
        .unwrap();
    assert_eq!(updated.target, None);

    let sample = |instance: &str, metric: &str, ts_ms: i64, value: f64| InstanceSample {
        pool_id: pool.id.clone(),
        instance: instance.into(),
        metric: metric.into(),
        ts_ms,
        value,
    };
    s.insert_instance_samples(&[
        sample("pod-b", "in_flight", 1_000, 9.0),
        sample("pod-b", "in_flight", 2_000, 4.0),
        sample("pod-a", "in_flight", 1_500, 1.0),
        sample("pod-c", "cpu", 1_500, 0.5),
        sample("pod-d", "in_flight", 10, 0.0),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.instance_loads(&pool.id, "in_flight", 100, 5_000)
            .await
            .unwrap(),
        vec![
            ("pod-a".to_string(), Some(1.0)),
            ("pod-b".to_string(), Some(4.0)),
            ("pod-c".to_string(), None),
        ]
    );
    assert!(s
        .instance_loads("other", "in_flight", 0, 5_000)
        .await
        .unwrap()
        .is_empty());
}
