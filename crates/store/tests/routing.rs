//! Conformance of the global-routing storage on both backends: tenant
//! region and routing policies, the set-based read a route needs, recorded
//! decisions (get, search, keyset pages) and ejection state.

use std::collections::BTreeMap;

use fleetscale_core::region::compliance::RegionPolicy;
use fleetscale_core::region::mode::ScalingMode;
use fleetscale_core::region::routing::{route, Ejection, RouteInput, RoutingPolicy};
use fleetscale_core::NewPool;
use std::sync::Arc;

use fleetscale_store::{
    Page, RecordedContext, RecordedInput, RouteContext, RouteRequest, RoutingFilter, RoutingRecord,
    Sample, Store, StoreError,
};

#[macro_use]
mod common;

conformance!(
    tenant_policies_roundtrip_replace_and_are_audited,
    route_world_reads_regions_pools_latencies_and_ejections_at_once,
    routing_decisions_are_recorded_found_and_searched_newest_first,
    a_recorded_input_replays_bit_for_bit_even_when_a_float_does_not_round_trip,
    ejection_updates_are_atomic_with_their_latency_sample,
    the_routing_snapshot_holds_what_a_route_reads_for_every_tenant_at_once,
    the_routing_snapshot_holds_every_counted_write,
    split_records_share_one_context_row_and_read_back_whole,
    a_batch_with_a_repeated_id_records_nothing,
);

async fn regions(s: &Store) {
    for (name, j) in [("ap-south", "in"), ("eu-west", "eu"), ("us-east", "us")] {
        s.create_region(name, j, "test").await.unwrap();
    }
}

async fn pool(s: &Store, tenant: &str, region: &str, agent: &str, desired: i64) -> String {
    let p = NewPool {
        tenant_id: tenant.into(),
        region: region.into(),
        agent_type: agent.into(),
        min_capacity: Some(1),
        max_capacity: Some(5),
        desired_capacity: Some(desired),
        capacity_per_instance: Some(10.0),
        metric: Some("throughput".into()),
        mode: Some("autonomous".into()),
        job_kind: None,
        scaling_policy: None,
        metric_source: None,
        target: None,
    }
    .validate()
    .unwrap();
    s.create_pool(&p, "test").await.unwrap().id
}

async fn tenant_policies_roundtrip_replace_and_are_audited(s: Store) {
    regions(&s).await;
    let t = s.create_tenant("acme", "test").await.unwrap().id;
    assert_eq!(s.get_region_policy(&t).await.unwrap(), None);
    assert_eq!(s.get_routing_policy(&t).await.unwrap(), None);
    let rp = RegionPolicy {
        allowed_jurisdictions: Some(vec!["eu".into(), "us".into()]),
        data_residency: None,
        restricted_workloads: BTreeMap::from([("eu-west".into(), vec!["voice".into()])]),
        home_region: Some("eu-west".into()),
    };
    let put = s.put_region_policy(&t, &rp, "alice", 1_000).await.unwrap();
    assert_eq!((put.policy.clone(), put.updated_at_ms), (rp.clone(), 1_000));
    assert_eq!(s.get_region_policy(&t).await.unwrap(), Some(put));
    let replaced = RegionPolicy {
        data_residency: Some("eu".into()),
        ..rp
    };
    s.put_region_policy(&t, &replaced, "alice", 2_000)
        .await
        .unwrap();
    let got = s.get_region_policy(&t).await.unwrap().unwrap();
    assert_eq!((got.policy, got.updated_at_ms), (replaced, 2_000));

    let failover = RoutingPolicy::Failover {
        order: vec!["us-east".into(), "eu-west".into()],
    };
    s.put_routing_policy(&t, &failover, "bob", 3_000)
        .await
        .unwrap();
    assert_eq!(
        s.get_routing_policy(&t).await.unwrap().unwrap().policy,
        failover
    );

    for r in [
        s.get_region_policy("nope").await.map(|_| ()),
        s.get_routing_policy("nope").await.map(|_| ()),
        s.put_region_policy("nope", &RegionPolicy::default(), "x", 1)
            .await
            .map(|_| ()),
        s.put_routing_policy("nope", &RoutingPolicy::default(), "x", 1)
            .await
            .map(|_| ()),
    ] {
        assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
    }
    let audit = s.list_audit(Some(&t), &Page::default()).await.unwrap();
    let actions: Vec<(&str, &str)> = audit
        .items
        .iter()
        .map(|a| (a.action.as_str(), a.actor.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("tenant.routing_policy", "bob"),
            ("tenant.region_policy", "alice"),
            ("tenant.region_policy", "alice"),
            ("tenant.create", "test"),
        ]
    );
    assert_eq!(audit.items[0].detail["policy"]["type"], "failover");
}

async fn route_world_reads_regions_pools_latencies_and_ejections_at_once(s: Store) {
    regions(&s).await;
    let t = s.create_tenant("acme", "test").await.unwrap().id;
    let other = s.create_tenant("other", "test").await.unwrap().id;
    let now = 50_000_000;
    // eu-west: no samples → max − desired = 5 − 2 = 3 spare.
    let eu = pool(&s, &t, "eu-west", "writer", 2).await;
    // us-east: window mean 25 at 10 per instance → 3 in use → 2 spare.
    let us = pool(&s, &t, "us-east", "writer", 4).await;
    pool(&s, &t, "us-east", "reader", 1).await;
    pool(&s, &other, "eu-west", "writer", 1).await;
    let sample = |ts_ms: i64, value: f64| Sample {
        pool_id: us.clone(),
        metric: "throughput".into(),
        ts_ms,
        value,
    };
    s.insert_samples(&[
        sample(now - 1_000, 20.0),
        sample(now - 2_000, 30.0),
        sample(now - 3_600_000, 900.0), // outside the 300 s window
    ])
    .await
    .unwrap();
    let us_id = s.get_region("us-east").await.unwrap().id;
    let eu_id = s.get_region("eu-west").await.unwrap().id;
    s.exec_admin(&format!(
        "INSERT INTO region_states (region_id, state, mode, mode_state, updated_at_ms) VALUES ('{us_id}', '{{}}', 'throttled', '{{}}', 1)"
    ))
    .await
    .unwrap();
    for i in 1..=12 {
        s.exec_admin(&format!(
            "INSERT INTO region_points (region_id, metric, ts_ms, value) VALUES ('{eu_id}', 'latency_ms', {}, {})",
            1_000 * i,
            10 * i
        ))
        .await
        .unwrap();
    }
    s.exec_admin(&format!(
        "INSERT INTO region_points (region_id, metric, ts_ms, value) VALUES ('{eu_id}', 'cpu', 99999, 1)"
    ))
    .await
    .unwrap();
    for _ in 0..5 {
        s.update_ejection(&t, "ap-south", None, now, |e| e.record(false, now))
            .await
            .unwrap();
    }

    let w = s.route_world(&t, "writer", now).await.unwrap();
    assert_eq!((w.region_policy, w.routing_policy), (None, None));
    let names: Vec<&str> = w.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["ap-south", "eu-west", "us-east"]);
    let (ap, euv, usv) = (&w.regions[0], &w.regions[1], &w.regions[2]);
    assert_eq!(ap.jurisdiction, "in");
    assert_eq!(ap.mode, ScalingMode::Normal, "no region_states row: normal");
    assert_eq!(usv.mode, ScalingMode::Throttled);
    assert_eq!(ap.ejected_until_ms, Some(now + 30_000));
    assert_eq!(euv.ejected_until_ms, None);
    assert_eq!(
        euv.latency_samples_ms,
        (3..=12).map(|i| 10 * i).collect::<Vec<u32>>(),
        "the last 10 latency_ms samples, oldest first"
    );
    assert!(usv.latency_samples_ms.is_empty());
    assert!(ap.pools.is_empty());
    assert_eq!(
        euv.pools.len(),
        1,
        "only the tenant's pools of the agent type"
    );
    assert_eq!(
        (
            euv.pools[0].pool.as_str(),
            euv.pools[0].spare,
            euv.pools[0].max
        ),
        (eu.as_str(), 3, 5)
    );
    assert_eq!(
        (usv.pools[0].spare, usv.pools[0].agent_type.as_str()),
        (2, "writer")
    );

    let rp = RegionPolicy {
        allowed_jurisdictions: Some(vec!["eu".into()]),
        ..Default::default()
    };
    s.put_region_policy(&t, &rp, "x", 1).await.unwrap();
    s.put_routing_policy(&t, &RoutingPolicy::Latency, "x", 1)
        .await
        .unwrap();
    let w = s.route_world(&t, "writer", now).await.unwrap();
    assert_eq!(w.region_policy, Some(rp));
    assert_eq!(w.routing_policy, Some(RoutingPolicy::Latency));
    assert!(matches!(
        s.route_world("nope", "writer", now).await,
        Err(StoreError::NotFound { .. })
    ));
}

fn record(id: &str, tenant: &str, workload: &str, region: &str, at: i64) -> RoutingRecord {
    let input: RouteInput = serde_json::from_value(serde_json::json!({
        "tenant_id": tenant,
        "region_policy": {},
        "routing_policy": {"type": "failover", "order": [region]},
        "workload_type": workload,
        "agent_type": "writer",
        "request_id": id,
        "now_ms": at,
        "regions": [
            {"name": "eu-west", "jurisdiction": "eu", "mode": "normal",
             "pools": [{"pool": "p1", "agent_type": "writer", "spare": 2, "max": 5}]},
            {"name": "us-east", "jurisdiction": "us", "mode": "normal",
             "pools": [{"pool": "p2", "agent_type": "writer", "spare": 1, "max": 5}]}
        ]
    }))
    .unwrap();
    let input = RecordedInput::new(&input).unwrap();
    let decision = route(input.input()).unwrap();
    assert_eq!(decision.selected_region, region);
    RoutingRecord {
        id: id.into(),
        tenant_id: tenant.into(),
        workload_type: workload.into(),
        agent_type: "writer".into(),
        selected_region: decision.selected_region.clone(),
        input,
        decision,
        created_at_ms: at,
    }
}

async fn a_recorded_input_replays_bit_for_bit_even_when_a_float_does_not_round_trip(s: Store) {
    // serde_json (without `float_roundtrip`) parses the shortest text of
    // this weight to its neighbour.
    let weight = 0.985_690_694_632_869_5_f64;
    let text = serde_json::to_string(&weight).unwrap();
    let back: f64 = serde_json::from_str(&text).unwrap();
    let mut r = record("d1", "t1", "chat", "eu-west", 1_000);
    let mut input = r.input.input().clone();
    input.routing_policy = RoutingPolicy::Score {
        latency_weight: weight,
        capacity_weight: 0.4,
        preferred_bonus: 10.0,
    };
    r.input = RecordedInput::new(&input).unwrap();
    r.decision = route(r.input.input()).unwrap();
    s.insert_routing_decision(&r).await.unwrap();
    let got = s.get_routing_decision("d1").await.unwrap();
    assert_eq!(got.input, r.input, "the text and the value decided on");
    let RoutingPolicy::Score { latency_weight, .. } = got.input.input().routing_policy else {
        panic!("score policy")
    };
    assert_eq!(latency_weight.to_bits(), back.to_bits());
    let replayed = route(got.input.input()).unwrap();
    assert_eq!(replayed, r.decision, "same decision, same score bits");
    assert_eq!(replayed.score.to_bits(), r.decision.score.to_bits());
}

async fn routing_decisions_are_recorded_found_and_searched_newest_first(s: Store) {
    // UUIDv7-like ids sort by creation; these sort the same way.
    let recs = [
        record("d1", "t1", "chat", "eu-west", 1_000),
        record("d2", "t1", "voice", "us-east", 2_000),
        record("d3", "t2", "chat", "eu-west", 3_000),
        record("d4", "t1", "chat", "us-east", 4_000),
        record("d5", "t1", "chat", "eu-west", 5_000),
    ];
    for r in &recs {
        s.insert_routing_decision(r).await.unwrap();
    }
    assert_eq!(s.get_routing_decision("d4").await.unwrap(), recs[3]);
    assert!(matches!(
        s.get_routing_decision("nope").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.insert_routing_decision(&recs[0]).await,
        Err(StoreError::Conflict { .. })
    ));
    let ids = |f: RoutingFilter| {
        let s = s.clone();
        async move {
            s.list_routing_decisions(&f, &Page::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids(RoutingFilter::default()).await,
        ["d5", "d4", "d3", "d2", "d1"]
    );
    let t1 = || RoutingFilter {
        tenant_id: Some("t1".into()),
        ..Default::default()
    };
    assert_eq!(ids(t1()).await, ["d5", "d4", "d2", "d1"]);
    assert_eq!(
        ids(RoutingFilter {
            workload_type: Some("chat".into()),
            ..t1()
        })
        .await,
        ["d5", "d4", "d1"]
    );
    assert_eq!(
        ids(RoutingFilter {
            selected_region: Some("us-east".into()),
            ..t1()
        })
        .await,
        ["d4", "d2"]
    );
    assert_eq!(
        ids(RoutingFilter {
            since_ms: Some(2_000),
            ..t1()
        })
        .await,
        ["d5", "d4", "d2"]
    );
    let mut page = Page {
        limit: Some(2),
        cursor: None,
    };
    let mut seen = Vec::new();
    loop {
        let l = s.list_routing_decisions(&t1(), &page).await.unwrap();
        assert!(l.items.len() <= 2);
        seen.extend(l.items.into_iter().map(|r| r.id));
        match l.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ["d5", "d4", "d2", "d1"]);
}

async fn ejection_updates_are_atomic_with_their_latency_sample(s: Store) {
    regions(&s).await;
    let t = s.create_tenant("acme", "test").await.unwrap().id;
    let fresh = s.get_ejection(&t, "eu-west").await.unwrap();
    assert_eq!(
        (fresh.ejection, fresh.updated_at_ms),
        (Ejection::default(), None)
    );
    let mut last = fresh;
    for i in 0..5 {
        last = s
            .update_ejection(
                &t,
                "eu-west",
                Some(40.0 + f64::from(i)),
                1_000 + i64::from(i),
                |e| e.record(false, 1_000 + i64::from(i)),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        last.ejection,
        Ejection {
            consecutive_failures: 0,
            ejections: 1,
            ejected_until_ms: Some(1_004 + 30_000)
        }
    );
    assert_eq!(s.get_ejection(&t, "eu-west").await.unwrap(), last);
    let ok = s
        .update_ejection(&t, "eu-west", None, 2_000, |e| e.record(true, 2_000))
        .await
        .unwrap();
    assert_eq!(
        ok.ejection.ejections, 1,
        "a success keeps the ejection count"
    );
    let w = s.route_world(&t, "writer", 2_000).await.unwrap();
    let eu = w.regions.iter().find(|r| r.name == "eu-west").unwrap();
    assert_eq!(eu.latency_samples_ms, [40, 41, 42, 43, 44]);
    assert_eq!(eu.ejected_until_ms, Some(31_004));
    // An unknown region with a latency records nothing at all.
    assert!(matches!(
        s.update_ejection(&t, "mars", Some(1.0), 3_000, |e| e.record(false, 3_000))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        s.get_ejection(&t, "mars").await.unwrap().updated_at_ms,
        None,
        "rolled back"
    );
}

/// The world of `route_world_reads_...`: two tenants, three regions (one
/// throttled with a valid stored state), pools with and without samples,
/// latencies and an ejection. Returns (tenant, other tenant, now).
async fn seeded_world(s: &Store) -> (String, String, i64) {
    regions(s).await;
    let t = s.create_tenant("acme", "test").await.unwrap().id;
    let other = s.create_tenant("other", "test").await.unwrap().id;
    let now = 50_000_000;
    pool(s, &t, "eu-west", "writer", 2).await;
    let us = pool(s, &t, "us-east", "writer", 4).await;
    pool(s, &t, "us-east", "reader", 1).await;
    pool(s, &other, "eu-west", "writer", 1).await;
    s.insert_samples(&[
        Sample {
            pool_id: us.clone(),
            metric: "throughput".into(),
            ts_ms: now - 1_000,
            value: 25.0,
        },
        Sample {
            pool_id: us,
            metric: "throughput".into(),
            ts_ms: now - 3_600_000,
            value: 900.0,
        },
    ])
    .await
    .unwrap();
    let us_id = s.get_region("us-east").await.unwrap().id;
    let eu_id = s.get_region("eu-west").await.unwrap().id;
    let state = serde_json::json!({
        "pressure": {"posting": 80.0, "orchestration": 0.0, "creative": 0.0, "intel": 0.0, "overall": 80.0},
        "capacity_score": 25.0, "warning_index": 0.0, "fatigue_score": 0.0,
        "active_tenants": 1, "jobs_in_queue": 0
    });
    s.exec_admin(&format!(
        "INSERT INTO region_states (region_id, state, mode, mode_state, updated_at_ms) VALUES ('{us_id}', '{state}', 'throttled', '{{}}', 1)"
    ))
    .await
    .unwrap();
    for i in 1..=12 {
        s.exec_admin(&format!(
            "INSERT INTO region_points (region_id, metric, ts_ms, value) VALUES ('{eu_id}', 'latency_ms', {}, {})",
            1_000 * i,
            10 * i
        ))
        .await
        .unwrap();
    }
    for _ in 0..5 {
        s.update_ejection(&t, "ap-south", None, now, |e| e.record(false, now))
            .await
            .unwrap();
    }
    s.put_routing_policy(&other, &RoutingPolicy::Latency, "x", 1)
        .await
        .unwrap();
    (t, other, now)
}

async fn the_routing_snapshot_holds_what_a_route_reads_for_every_tenant_at_once(s: Store) {
    let (t, other, now) = seeded_world(&s).await;
    let snap = s.load_routing_snapshot(now).await.unwrap();
    assert_eq!(snap.loaded_at_ms, now);
    assert_eq!(snap.tenant_count(), 2);
    for (tenant, agent) in [
        (&t, "writer"),
        (&t, "reader"),
        (&t, "painter"),
        (&other, "writer"),
    ] {
        assert_eq!(
            snap.route_world(tenant, agent),
            Some(s.route_world(tenant, agent, now).await.unwrap()),
            "{tenant} {agent}"
        );
    }
    assert_eq!(snap.route_world("nope", "writer"), None);
    let w = snap.route_world(&t, "writer").unwrap();
    assert_eq!(
        w.regions[2].pools[0].spare, 2,
        "window mean 25 at 10 per instance"
    );
    assert_eq!(w.regions[0].ejected_until_ms, Some(now + 30_000));
    // Job routing from the snapshot reads what it reads from the database.
    assert_eq!(
        s.job_world_from(&snap, &t, now).await.unwrap(),
        s.job_world(&t, now).await.unwrap()
    );
    let us = &snap.regions()[2];
    assert_eq!(
        (
            us.name.as_str(),
            us.mode,
            us.pressure.posting,
            us.capacity_score
        ),
        ("us-east", ScalingMode::Throttled, 80.0, 25.0)
    );
    assert!(matches!(
        s.job_world_from(&snap, "nope", now).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn the_routing_snapshot_holds_every_counted_write(s: Store) {
    regions(&s).await;
    let t = s.create_tenant("acme", "test").await.unwrap().id;
    let before = s.view_changes();
    let snap = s.load_routing_snapshot(1_000).await.unwrap();
    assert_eq!(snap.changes, before);
    assert_eq!(snap.tenant(&t).unwrap().routing_policy, None);
    // Each write the view reads is counted once it commits.
    s.put_routing_policy(&t, &RoutingPolicy::Latency, "x", 1)
        .await
        .unwrap();
    let after_policy = s.view_changes();
    assert!(after_policy > snap.changes, "a policy put is counted");
    let p = pool(&s, &t, "eu-west", "writer", 2).await;
    assert!(s.view_changes() > after_policy, "a pool create is counted");
    let n = s.view_changes();
    s.update_ejection(&t, "eu-west", Some(5.0), 2_000, |e| e.record(false, 2_000))
        .await
        .unwrap();
    assert!(s.view_changes() > n, "an ejection update is counted");
    let n = s.view_changes();
    s.insert_samples(&[Sample {
        pool_id: p,
        metric: "throughput".into(),
        ts_ms: 1_500,
        value: 1.0,
    }])
    .await
    .unwrap();
    assert!(s.view_changes() > n, "a metric sample is counted");
    // A routing decision is not something the view reads.
    let n = s.view_changes();
    s.insert_routing_decision(&record("d1", &t, "chat", "eu-west", 1_000))
        .await
        .unwrap();
    assert_eq!(s.view_changes(), n);
    let snap = s.load_routing_snapshot(2_000).await.unwrap();
    assert_eq!(snap.changes, n);
    let w = snap.route_world(&t, "writer").unwrap();
    assert_eq!(
        snap.tenant(&t).unwrap().routing_policy,
        Some(RoutingPolicy::Latency)
    );
    let eu = w.regions.iter().find(|r| r.name == "eu-west").unwrap();
    assert_eq!(
        (eu.pools.len(), eu.latency_samples_ms.as_slice()),
        (1, &[5][..])
    );
}

/// A split record over `context`: the request's own fields, decided on
/// what a replay parses back.
fn split(context: &Arc<RecordedContext>, id: &str, tenant: &str, at: i64) -> RoutingRecord {
    let request = RouteRequest {
        tenant_id: tenant.into(),
        workload_type: "chat".into(),
        agent_type: "writer".into(),
        preferred_regions: vec!["us-east".into()],
        client_country: Some("DE".into()),
        request_id: id.into(),
        now_ms: at,
    };
    let input = RecordedInput::split(context.clone(), &request).unwrap();
    let decision = route(input.input()).unwrap();
    RoutingRecord {
        id: id.into(),
        tenant_id: tenant.into(),
        workload_type: "chat".into(),
        agent_type: "writer".into(),
        selected_region: decision.selected_region.clone(),
        input,
        decision,
        created_at_ms: at,
    }
}

fn context(weight: f64) -> Arc<RecordedContext> {
    let regions = serde_json::from_value(serde_json::json!([
        {"name": "us-east", "jurisdiction": "us", "mode": "normal", "latency_samples_ms": [30, 50],
         "pools": [{"pool": "p2", "agent_type": "writer", "spare": 1, "max": 5}]},
        {"name": "ap-south", "jurisdiction": "in", "mode": "frozen",
         "pools": [{"pool": "p3", "agent_type": "writer", "spare": 4, "max": 5}]},
        {"name": "eu-west", "jurisdiction": "eu", "mode": "normal", "ejected_until_ms": 99_999_999,
         "pools": [{"pool": "p1", "agent_type": "writer", "spare": 2, "max": 5}]},
        {"name": "eu-north", "jurisdiction": "eu", "mode": "normal"}
    ]))
    .unwrap();
    Arc::new(
        RecordedContext::new(&RouteContext {
            region_policy: RegionPolicy {
                restricted_workloads: [("eu-north".to_string(), vec!["chat".to_string()])]
                    .into_iter()
                    .collect(),
                ..Default::default()
            },
            routing_policy: RoutingPolicy::Score {
                latency_weight: weight,
                capacity_weight: 0.4,
                preferred_bonus: 10.0,
            },
            regions,
        })
        .unwrap(),
    )
}

async fn split_records_share_one_context_row_and_read_back_whole(s: Store) {
    // A weight whose shortest text parses to its neighbour (see above).
    let c = context(0.985_690_694_632_869_5);
    assert_eq!(c.hash().len(), 64);
    let recs: Vec<RoutingRecord> = (1..=5)
        .map(|i| split(&c, &format!("d{i}"), "t1", 1_000 * i))
        .collect();
    // Every kind of candidate: eligible, non-compliant, frozen, ejected.
    let kinds: Vec<Option<&str>> = recs[0]
        .decision
        .candidates
        .iter()
        .map(|k| k.excluded_by.map(|e| e.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [Some("frozen"), Some("non_compliant"), Some("ejected"), None]
    );
    s.record_routing_decisions(&recs[..3]).await.unwrap();
    s.record_routing_decisions(&recs[3..]).await.unwrap();
    let other = split(&context(0.6), "d6", "t2", 6_000);
    s.record_routing_decisions(std::slice::from_ref(&other))
        .await
        .unwrap();
    assert_eq!(
        s.count_rows("routing_contexts").await.unwrap(),
        2,
        "one row per context"
    );
    for r in recs.iter().chain([&other]) {
        let got = s.get_routing_decision(&r.id).await.unwrap();
        assert_eq!(&got, r, "{}", r.id);
        let replayed = route(got.input.input()).unwrap();
        assert_eq!(replayed, r.decision);
        assert_eq!(replayed.score.to_bits(), r.decision.score.to_bits());
        // The whole input as JSON is the context's and the request's fields.
        let v = got.input.to_value().unwrap();
        let back: RouteInput = serde_json::from_value(v).unwrap();
        assert_eq!(back.request_id, r.id);
        assert_eq!(back.regions, r.input.input().regions);
    }
    // Old (whole) and new (split) layouts list together, newest first.
    s.insert_routing_decision(&record("d0", "t1", "chat", "eu-west", 500))
        .await
        .unwrap();
    let l = s
        .list_routing_decisions(
            &RoutingFilter {
                tenant_id: Some("t1".into()),
                ..Default::default()
            },
            &Page::default(),
        )
        .await
        .unwrap();
    let ids: Vec<&str> = l.items.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["d5", "d4", "d3", "d2", "d1", "d0"]);
    assert_eq!(l.items[0], recs[4]);
    assert!(l.items[5].input.context().is_none());
}

async fn a_batch_with_a_repeated_id_records_nothing(s: Store) {
    let c = context(0.6);
    s.record_routing_decisions(&[split(&c, "d1", "t1", 1_000)])
        .await
        .unwrap();
    let batch = [split(&c, "d2", "t1", 2_000), split(&c, "d1", "t1", 3_000)];
    assert!(matches!(
        s.record_routing_decisions(&batch).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        s.get_routing_decision("d2").await,
        Err(StoreError::NotFound { .. })
    ));
}
