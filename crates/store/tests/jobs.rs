//! Conformance of the job-routing storage on both backends: the set-based
//! read a job route needs (regions with their stored state or the
//! unmeasured default, budgets, queues, throughput, the tenant's region
//! policy) and routed jobs (record, read, done once).

use fleetscale_core::region::compliance::RegionPolicy;
use fleetscale_core::region::mode::{ModeState, ScalingMode};
use fleetscale_core::region::state::{JobType, Pressure, RegionState};
use fleetscale_store::{
    Budgets, Fence, JobStatus, RegionSample, RoutedJob, Store, StoreError, THROUGHPUT_WINDOW_MS,
};

#[macro_use]
mod common;

conformance!(
    job_world_reads_states_budgets_queues_and_throughput_at_once,
    routed_jobs_are_recorded_read_and_done_once,
);

const NOW: i64 = 1_800_000_000_000;

async fn regions(s: &Store) {
    for (name, j) in [("ap-south", "in"), ("eu-west", "eu"), ("us-east", "us")] {
        s.create_region(name, j, "test").await.unwrap();
    }
}

fn job(id: &str, tenant: &str, region_id: &str, created_at_ms: i64) -> RoutedJob {
    RoutedJob {
        id: id.into(),
        tenant_id: tenant.into(),
        region_id: region_id.into(),
        region: String::new(),
        job_type: JobType::Creative,
        priority: 4,
        estimated_cost_cents: 120,
        shard_key: "00112233aabbccdd".into(),
        status: JobStatus::Queued,
        created_at_ms,
        done_at_ms: None,
    }
}

async fn job_world_reads_states_budgets_queues_and_throughput_at_once(s: Store) {
    regions(&s).await;
    let t = s.create_tenant("acme", "test").await.unwrap().id;
    let other = s.create_tenant("other", "test").await.unwrap().id;
    let eu = s.get_region("eu-west").await.unwrap().id;
    let us = s.get_region("us-east").await.unwrap().id;
    let ap_id = s.get_region("ap-south").await.unwrap().id;

    // Without a policy, without states, budgets, queues or jobs.
    let w = s.job_world(&t, NOW).await.unwrap();
    assert_eq!(w.region_policy, None);
    let names: Vec<&str> = w.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["ap-south", "eu-west", "us-east"]);
    for r in &w.regions {
        assert_eq!(
            (r.mode, r.pressure, r.capacity_score, r.jobs_in_queue),
            (ScalingMode::Normal, Pressure::default(), 100.0, 0),
            "unmeasured region: {}",
            r.name
        );
        assert_eq!(r.throughput_per_min, 1.0, "no data: 1 per minute");
        assert_eq!(r.budget.remaining_cents, 0);
        assert!(!r.job_region(1).budget_ok, "no budget covers nothing");
        assert!(r.job_region(0).budget_ok, "a free job needs no budget");
    }

    let policy = RegionPolicy {
        home_region: Some("eu-west".into()),
        ..RegionPolicy::default()
    };
    s.put_region_policy(&t, &policy, "alice", NOW - 10)
        .await
        .unwrap();
    // us-east: throttled, as the leader stores it.
    let fence = Fence {
        name: "control-loop".into(),
        holder: "r1".into(),
    };
    assert!(s
        .try_lease("control-loop", "r1", NOW, 60_000)
        .await
        .unwrap());
    let state = RegionState {
        pressure: Pressure {
            creative: 80.0,
            overall: 70.0,
            ..Pressure::default()
        },
        capacity_score: 25.0,
        jobs_in_queue: 999, // the stored figure is not what a route reads
        ..RegionState::default()
    };
    let mode = ModeState::new(ScalingMode::Throttled, NOW - 5);
    s.put_region_state(&us, &state, &mode, None, &fence, NOW)
        .await
        .unwrap();
    // eu-west: a budget, an external queue of 4 and two queued jobs.
    let budgets = Budgets::start(s.clone());
    budgets
        .allocate_initial(&eu, 1_000, "admin", NOW - 10)
        .await
        .unwrap();
    s.insert_region_samples(&[
        RegionSample {
            region_id: eu.clone(),
            metric: "queue_depth".into(),
            ts_ms: NOW - 2_000,
            value: 9.0,
        },
        RegionSample {
            region_id: eu.clone(),
            metric: "queue_depth".into(),
            ts_ms: NOW - 1_000,
            value: 4.0,
        },
        RegionSample {
            region_id: eu.clone(),
            metric: "queue_depth".into(),
            ts_ms: NOW + 1_000, // not yet
            value: 50.0,
        },
        RegionSample {
            region_id: ap_id.clone(),
            metric: "queue_depth".into(),
            ts_ms: NOW - 1_000,
            value: 3.0,
        },
    ])
    .await
    .unwrap();
    s.record_routed_job(&job("j1", &t, &eu, NOW - 3))
        .await
        .unwrap();
    s.record_routed_job(&job("j2", &other, &eu, NOW - 2))
        .await
        .unwrap();
    // us-east: 30 jobs done inside the window (its bounds: 1 ms after its
    // start, now), one at its start, one after now.
    let inside = (0..28).map(|i| NOW - 1_000 * i);
    let bounds = [NOW - THROUGHPUT_WINDOW_MS + 1, NOW - 1];
    let outside = [NOW - THROUGHPUT_WINDOW_MS, NOW + 1];
    for (i, done_at) in inside.chain(bounds).chain(outside).enumerate() {
        let id = format!("u{i}");
        s.record_routed_job(&job(&id, &t, &us, NOW - THROUGHPUT_WINDOW_MS - 10))
            .await
            .unwrap();
        s.mark_routed_job_done(&id, done_at).await.unwrap();
    }

    let w = s.job_world(&t, NOW).await.unwrap();
    assert_eq!(w.region_policy, Some(policy));
    let (ap, euw, usw) = (&w.regions[0], &w.regions[1], &w.regions[2]);
    assert_eq!((ap.mode, ap.capacity_score), (ScalingMode::Normal, 100.0));
    assert_eq!(ap.jobs_in_queue, 3, "a sample without routed jobs");
    assert_eq!(
        euw.jobs_in_queue,
        4 + 2,
        "newest sample up to now + queued jobs"
    );
    assert_eq!(euw.budget.remaining_cents, 1_000);
    assert!(euw.job_region(1_000).budget_ok);
    assert!(!euw.job_region(1_001).budget_ok);
    assert_eq!(usw.mode, ScalingMode::Throttled);
    assert_eq!(usw.pressure, state.pressure);
    assert_eq!(usw.capacity_score, 25.0);
    assert_eq!(usw.jobs_in_queue, 0, "done jobs leave the queue");
    assert!((usw.throughput_per_min - 2.0).abs() < 1e-12, "30 in 15 min");
    let r = usw.job_region(10);
    assert_eq!(
        (
            r.name.as_str(),
            r.jurisdiction.as_str(),
            r.small_job_max_cents
        ),
        ("us-east", "us", 50)
    );
    assert!(!r.budget_ok);

    let all = s.jobs_in_queue_by_region(NOW).await.unwrap();
    assert_eq!(all.len(), 2, "us-east has neither: {all:?}");
    assert_eq!((all.get(&eu), all.get(&ap_id)), (Some(&6), Some(&3)));
    let queued = s.queued_routed_jobs_by_region().await.unwrap();
    assert_eq!(queued.get(&eu), Some(&2));
    assert_eq!(queued.get(&us), None);
    assert!(matches!(
        s.job_world("nobody", NOW).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn routed_jobs_are_recorded_read_and_done_once(s: Store) {
    regions(&s).await;
    let t = s.create_tenant("acme", "test").await.unwrap().id;
    let eu = s.get_region("eu-west").await.unwrap().id;
    let j = job("0190aaaa-0000-7000-8000-000000000001", &t, &eu, NOW);
    s.record_routed_job(&j).await.unwrap();
    let got = s.get_routed_job(&j.id).await.unwrap();
    assert_eq!(
        got,
        RoutedJob {
            region: "eu-west".into(),
            ..j.clone()
        }
    );
    assert!(matches!(
        s.record_routed_job(&j).await,
        Err(StoreError::Conflict { .. })
    ));
    let mut bad = job("x1", &t, "no-such-region", NOW);
    assert!(matches!(
        s.record_routed_job(&bad).await,
        Err(StoreError::NotFound { .. })
    ));
    bad.region_id = eu.clone();
    bad.tenant_id = "no-such-tenant".into();
    assert!(matches!(
        s.record_routed_job(&bad).await,
        Err(StoreError::NotFound { .. })
    ));

    let done = s.mark_routed_job_done(&j.id, NOW + 500).await.unwrap();
    assert_eq!(
        (done.status, done.done_at_ms, done.region.as_str()),
        (JobStatus::Done, Some(NOW + 500), "eu-west")
    );
    let again = s.mark_routed_job_done(&j.id, NOW + 900).await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    assert_eq!(
        s.get_routed_job(&j.id).await.unwrap().done_at_ms,
        Some(NOW + 500),
        "the first completion stands"
    );
    assert!(matches!(
        s.mark_routed_job_done("nope", NOW).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.get_routed_job("nope").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(s.queued_routed_jobs_by_region().await.unwrap().is_empty());
}
