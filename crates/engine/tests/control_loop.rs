//! `control::run` on tokio's paused clock, over a real SQLite store:
//! leadership moves to a second replica when the leader dies, a leader that
//! loses its lease stops evaluating, retention pruning runs on its timer, and
//! a decision's requeue is honoured before the next tick. Time is virtual
//! (the engine reads a [`TokioClock`]), so no test waits for its ticks in
//! real time.
//!
//! The database answers in real time on its own thread, which tokio cannot
//! see: left to auto-advance, the paused clock would jump ahead (to a pool
//! acquire timeout, say) whenever every task waits for SQLite. So each test
//! holds auto-advance off ([`hold_clock`]) and moves time itself
//! ([`run_for`]) in small steps, giving the database a moment of real time
//! after each.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use fleetscale_core::{ActuationStatus, NewPool, TriggerSource};
use fleetscale_engine::{EngineConfig, EngineCtx, TokioClock, LEASE};
use fleetscale_store::{Sample, ScaleRequest, Store};

mod support;
use support::{db, webhook, webhook_receiver, Db};

const TICK: Duration = Duration::from_secs(1);

/// Keeps tokio's paused clock from auto-advancing while it lives: a
/// blocking task in flight inhibits auto-advance.
struct ClockHold(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

fn hold_clock() -> ClockHold {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = rx.recv();
    });
    ClockHold(tx)
}

/// Virtual time a step of [`run_for`].
const STEP: Duration = Duration::from_millis(25);

/// Longest real time a control loop may take to park again after a step.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

thread_local! {
    /// The parked flags of the control loops this test runs.
    static LOOPS: std::cell::RefCell<Vec<Arc<AtomicBool>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Makes [`run_for`] wait for `c`'s control loop to park after each step.
fn watch(c: &EngineCtx) {
    LOOPS.with(|l| l.borrow_mut().push(c.loop_parked.clone()));
}

/// Stops waiting for `c`'s loop (it was aborted).
fn unwatch(c: &EngineCtx) {
    LOOPS.with(|l| l.borrow_mut().retain(|f| !Arc::ptr_eq(f, &c.loop_parked)));
}

fn all_parked() -> bool {
    LOOPS.with(|l| l.borrow().iter().all(|f| f.load(Ordering::SeqCst)))
}

/// Moves the paused clock `d` ahead in [`STEP`]s. After each step, time
/// stands still until every watched control loop has finished what the step
/// woke it for (its database calls take real time) and waits on a timer
/// again, so a slow disk delays the test but never changes what it sees.
async fn run_for(d: Duration) {
    let mut left = d;
    while !left.is_zero() {
        let s = STEP.min(left);
        tokio::time::advance(s).await;
        let deadline = std::time::Instant::now() + SETTLE_LIMIT;
        loop {
            tokio::task::yield_now().await;
            if all_parked() {
                tokio::task::yield_now().await;
                if all_parked() {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "a control loop did not park within {SETTLE_LIMIT:?}"
            );
        }
        left -= s;
    }
}

/// An engine context over `store` reading a clock that starts at the real
/// time and then follows tokio's (paused) clock.
fn ctx(store: &Store) -> EngineCtx {
    let mut c = EngineCtx::new(store.clone());
    c.clock = Arc::new(TokioClock::starting_at(fleetscale_store::now_ms()));
    c
}

fn cfg(replica: &str) -> EngineConfig {
    EngineConfig {
        tick: TICK,
        replica_id: replica.into(),
        retention: Duration::from_secs(600),
    }
}

/// One autonomous pool (min 1, max 10, 10 per instance, threshold policy
/// with the given cooldown); returns its id.
async fn pool(store: &Store, cooldown_seconds: i64) -> String {
    let t = store.create_tenant("acme", "test").await.unwrap();
    store.create_region("eu-west", "eu", "test").await.unwrap();
    let p = NewPool {
        tenant_id: t.id,
        region: "eu-west".into(),
        agent_type: "writer".into(),
        capacity_per_instance: Some(10.0),
        mode: Some("autonomous".into()),
        scaling_policy: Some(fleetscale_core::RawThresholdPolicy {
            cooldown_seconds: Some(cooldown_seconds),
            ..Default::default()
        }),
        ..Default::default()
    }
    .validate()
    .unwrap();
    store.create_pool(&p, "test").await.unwrap().id
}

async fn push(store: &Store, pool_id: &str, ts_ms: i64, value: f64) {
    store
        .insert_samples(&[Sample {
            pool_id: pool_id.into(),
            metric: "throughput".into(),
            ts_ms,
            value,
        }])
        .await
        .unwrap();
}

async fn holder(store: &Store) -> Option<String> {
    store.lease_holder(LEASE).await.unwrap().map(|(h, _)| h)
}

fn ticks(c: &EngineCtx) -> u64 {
    c.metrics.ticks.get()
}

#[tokio::test(start_paused = true)]
async fn a_follower_takes_over_within_two_ticks_when_the_leader_dies() {
    let _hold = hold_clock();
    let db = db("takeover").await;
    let (a, b) = (ctx(&db.store), ctx(&db.store));
    let (_stop, rx) = watch::channel(false);
    let leader = tokio::spawn(fleetscale_engine::control::run(
        a.clone(),
        cfg("a"),
        rx.clone(),
    ));
    watch(&a);
    run_for(Duration::from_millis(10)).await;
    let follower = tokio::spawn(fleetscale_engine::control::run(
        b.clone(),
        cfg("b"),
        rx.clone(),
    ));
    watch(&b);
    run_for(3 * TICK).await;
    assert_eq!(holder(&db.store).await.as_deref(), Some("a"));
    assert!(ticks(&a) >= 3, "the leader ticks every tick: {}", ticks(&a));
    assert_eq!(ticks(&b), 0, "a follower never evaluates");
    assert_eq!(b.metrics.is_leader.get(), 0);

    // The leader dies without releasing its lease.
    unwatch(&a);
    leader.abort();
    let died = b.now_ms();
    while holder(&db.store).await.as_deref() != Some("b") {
        run_for(Duration::from_millis(50)).await;
        assert!(b.now_ms() - died < 10_000, "no takeover in 10 s");
    }
    let took = b.now_ms() - died;
    assert!(
        took <= 2 * TICK.as_millis() as i64,
        "takeover took {took} ms, more than two ticks"
    );
    run_for(2 * TICK).await;
    assert!(ticks(&b) >= 1, "the new leader evaluates");
    assert_eq!(b.metrics.is_leader.get(), 1);
    unwatch(&b);
    follower.abort();
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_loses_its_lease_stops_and_a_clean_stop_releases_it() {
    let _hold = hold_clock();
    let db = db("lease-loss").await;
    let a = ctx(&db.store);
    let (stop, rx) = watch::channel(false);
    let run = tokio::spawn(fleetscale_engine::control::run(a.clone(), cfg("a"), rx));
    watch(&a);
    run_for(2 * TICK).await;
    assert_eq!(a.metrics.is_leader.get(), 1);

    // Another replica takes the lease (say, after this one stalled).
    let now = a.now_ms();
    db.store.release_lease(LEASE, "a").await.unwrap();
    assert!(db
        .store
        .try_lease(LEASE, "intruder", now, 3_600_000)
        .await
        .unwrap());
    run_for(TICK / 2).await;
    assert_eq!(a.metrics.is_leader.get(), 0, "it notices within a poll");
    let before = ticks(&a);
    run_for(5 * TICK).await;
    assert_eq!(
        ticks(&a),
        before,
        "a replica without the lease never evaluates"
    );

    // The intruder goes away: the lease comes back within a poll or two.
    db.store.release_lease(LEASE, "intruder").await.unwrap();
    run_for(TICK).await;
    assert_eq!(holder(&db.store).await.as_deref(), Some("a"));
    run_for(TICK).await;
    assert!(ticks(&a) > before);

    // Shutdown releases the lease at once, so a successor need not wait.
    stop.send(true).unwrap();
    run.await.unwrap().unwrap();
    assert_eq!(holder(&db.store).await, None);
    assert_eq!(a.metrics.is_leader.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn retention_pruning_runs_on_its_one_minute_timer() {
    let _hold = hold_clock();
    let db = db("prune").await;
    let a = ctx(&db.store);
    let p = pool(&db.store, 300).await;
    let start = a.now_ms();
    let retention = cfg("a").retention.as_millis() as i64;
    // Already past retention: pruned at the first tick. Past it 30 s from
    // now: kept until the timer's next round, a minute after the first.
    push(&db.store, &p, start - retention - 1_000, 1.0).await;
    push(&db.store, &p, start - retention + 30_000, 1.0).await;
    push(&db.store, &p, start, 1.0).await;
    let count = |db: &Db, p: String| {
        let store = db.store.clone();
        async move {
            store
                .pool_samples(&p, 0, i64::MAX, 100)
                .await
                .unwrap()
                .len()
        }
    };
    let (stop, rx) = watch::channel(false);
    let run = tokio::spawn(fleetscale_engine::control::run(a.clone(), cfg("a"), rx));
    watch(&a);
    run_for(TICK / 2).await;
    assert_eq!(count(&db, p.clone()).await, 2, "the first tick prunes");
    run_for(Duration::from_secs(45)).await;
    assert_eq!(
        count(&db, p.clone()).await,
        2,
        "the next round is a minute later"
    );
    run_for(Duration::from_secs(16)).await;
    assert_eq!(count(&db, p.clone()).await, 1, "pruned at the minute");
    stop.send(true).unwrap();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_cooldown_ending_mid_tick_is_acted_on_when_it_ends() {
    let _hold = hold_clock();
    let db = db("requeue").await;
    let a = ctx(&db.store);
    let p = pool(&db.store, 60).await;
    let start = a.now_ms();
    // Scaled to 2 just under a minute ago: 300 ms of cooldown left.
    db.store
        .scale(&ScaleRequest {
            pool_id: p.clone(),
            capacity: 2,
            reason: "setup".into(),
            trigger_source: TriggerSource::Manual,
            metadata: serde_json::Value::Null,
            actor: "test".into(),
            expect_desired: None,
            respect_safety_lock: false,
            actuation_status: ActuationStatus::None,
            fence: None,
            now_ms: start - 59_700,
        })
        .await
        .unwrap();
    // 19 per instance-capacity of 10 on 2 instances: 95 % > 80 %: scale up.
    push(&db.store, &p, start - 1_000, 19.0).await;
    let mut cfg = cfg("a");
    cfg.tick = Duration::from_secs(10);
    let (stop, rx) = watch::channel(false);
    let run = tokio::spawn(fleetscale_engine::control::run(a.clone(), cfg, rx));
    watch(&a);
    run_for(Duration::from_millis(100)).await;
    assert_eq!(
        db.store.get_pool(&p).await.unwrap().desired_capacity,
        2,
        "in cooldown"
    );
    run_for(Duration::from_millis(900)).await;
    let pool = db.store.get_pool(&p).await.unwrap();
    assert_eq!(
        pool.desired_capacity, 3,
        "scaled when the cooldown ended, not at the next 10 s tick"
    );
    let waited = pool.last_scaled_at_ms.unwrap() - start;
    assert!(
        (300..1_000).contains(&waited),
        "acted {waited} ms after the start"
    );
    stop.send(true).unwrap();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn applied_scalings_are_counted_under_their_real_trigger_source() {
    let db = db("trigger").await;
    let c = EngineCtx::new(db.store.clone());
    let p = pool(&db.store, 0).await;
    // A schedule whose window is open now sets the pool to 5.
    let spec: fleetscale_core::PoolPolicies = serde_json::from_value(serde_json::json!({
        "policies": [{"type": "schedule", "schedules": [{"cron": "* * * * *", "timezone": "UTC",
            "duration_seconds": 3600, "capacity": 5, "mode": "target", "description": "batch"}]}]
    }))
    .unwrap();
    db.store
        .set_pool_policies(&p, Some(&spec), "test")
        .await
        .unwrap();
    let now = c.now_ms();
    assert!(db.store.try_lease(LEASE, "t", now, 60_000).await.unwrap());
    let fence = fleetscale_store::Fence {
        name: LEASE.into(),
        holder: "t".into(),
    };
    let r = fleetscale_engine::control::tick_once(&c, &fence, now)
        .await
        .unwrap();
    assert_eq!(r.applied, 1, "{r:?}");
    let events = db
        .store
        .list_events(Some(&p), None, &Default::default())
        .await
        .unwrap();
    assert_eq!(events.items[0].trigger_source, TriggerSource::Schedule);
    let text = c.metrics.encode();
    assert!(
        text.contains("fleetscale_scalings_total{trigger_source=\"schedule\"} 1"),
        "{text}"
    );
    assert!(!text.contains("trigger_source=\"autoscaler\""), "{text}");
}

#[tokio::test]
async fn each_tick_stores_region_state_and_modes_move_with_hysteresis() {
    use fleetscale_core::region::mode::ScalingMode;
    let db = db("regions").await;
    let c = EngineCtx::new(db.store.clone());
    let t = db.store.create_tenant("acme", "test").await.unwrap();
    db.store
        .create_region("eu-west", "eu", "test")
        .await
        .unwrap();
    let region = db.store.get_region("eu-west").await.unwrap();
    // A frozen pool (nothing scales it) serving posting jobs: 1 of max 10
    // instances of 10 each.
    let p = NewPool {
        tenant_id: t.id,
        region: "eu-west".into(),
        agent_type: "posting".into(),
        capacity_per_instance: Some(10.0),
        mode: Some("frozen".into()),
        ..Default::default()
    }
    .validate()
    .unwrap();
    let p = db.store.create_pool(&p, "test").await.unwrap().id;
    let fence = fleetscale_store::Fence {
        name: LEASE.into(),
        holder: "t".into(),
    };
    let t0 = fleetscale_store::now_ms();
    let tick = |now: i64| {
        let (c, fence) = (c.clone(), fence.clone());
        async move {
            assert!(c.store.try_lease(LEASE, "t", now, 3_600_000).await.unwrap());
            fleetscale_engine::control::tick_once(&c, &fence, now)
                .await
                .unwrap()
        }
    };
    // 95 of 10: pressure 100, capacity score 5: frozen at once.
    push(&db.store, &p, t0 - 1_000, 95.0).await;
    let r = tick(t0).await;
    assert_eq!(r.region_transitions, 1);
    let s = db.store.region_state(&region.id).await.unwrap().unwrap();
    assert_eq!(s.mode.mode, ScalingMode::Frozen);
    assert_eq!(s.state.pressure.posting, 100.0);
    assert!((s.state.capacity_score - 5.0).abs() < 1e-9);
    assert_eq!(s.state.active_tenants, 1);
    // The load drops to 1 (the old sample leaves the 5-minute window): the
    // better mode must hold for two evaluations before the region leaves.
    let later = t0 + 400_000;
    push(&db.store, &p, later - 1_000, 1.0).await;
    assert_eq!(tick(later).await.region_transitions, 0);
    let s = db.store.region_state(&region.id).await.unwrap().unwrap();
    assert_eq!(
        s.mode.mode,
        ScalingMode::Frozen,
        "one good evaluation is not enough"
    );
    assert_eq!(s.state.pressure.posting, 10.0);
    assert_eq!(tick(later + 5_000).await.region_transitions, 1);
    let s = db.store.region_state(&region.id).await.unwrap().unwrap();
    assert_eq!(s.mode.mode, ScalingMode::Normal);
    let events = db
        .store
        .region_mode_events(Some(&region.id), t0 - 1, 10)
        .await
        .unwrap();
    let moves: Vec<_> = events
        .iter()
        .map(|e| (e.transition.from, e.transition.to))
        .collect();
    assert_eq!(
        moves,
        [
            (ScalingMode::Normal, ScalingMode::Frozen),
            (ScalingMode::Frozen, ScalingMode::Normal)
        ]
    );
    // Fatigue: the region spent about 405 s of the last 24 h outside normal.
    let fatigue = s.state.fatigue_score;
    assert!(fatigue > 0.0 && fatigue < 1.0, "{fatigue}");
    assert!(c
        .metrics
        .encode()
        .contains("fleetscale_region_mode_transitions_total 2"));
}

#[tokio::test]
async fn the_monitor_alerts_critical_regions_once_and_posts_them_signed() {
    let db = db("monitor").await;
    let (url, mut hooks) = webhook_receiver().await;
    let mut c = EngineCtx::new(db.store.clone());
    c.actuator = Arc::new(webhook(url, "alert-secret"));
    let t = db.store.create_tenant("acme", "test").await.unwrap();
    db.store
        .create_region("eu-west", "eu", "test")
        .await
        .unwrap();
    let p = NewPool {
        tenant_id: t.id,
        region: "eu-west".into(),
        agent_type: "posting".into(),
        capacity_per_instance: Some(10.0),
        mode: Some("frozen".into()),
        ..Default::default()
    }
    .validate()
    .unwrap();
    let p = db.store.create_pool(&p, "test").await.unwrap().id;
    let now = fleetscale_store::now_ms();
    // Nothing critical yet: no alert.
    assert_eq!(
        fleetscale_engine::monitor::monitor_once(&c, now)
            .await
            .unwrap(),
        0
    );
    // 95 of 10: frozen, capacity score 5.
    push(&db.store, &p, now - 1_000, 95.0).await;
    assert!(db.store.try_lease(LEASE, "t", now, 60_000).await.unwrap());
    let fence = fleetscale_store::Fence {
        name: LEASE.into(),
        holder: "t".into(),
    };
    fleetscale_engine::control::tick_once(&c, &fence, now)
        .await
        .unwrap();
    let raised = fleetscale_engine::monitor::monitor_once(&c, now + 1)
        .await
        .unwrap();
    assert_eq!(raised, 2, "frozen and low capacity are critical");
    let alerts = db
        .store
        .list_alerts(&Default::default())
        .await
        .unwrap()
        .items;
    let mut kinds: Vec<&str> = alerts.iter().map(|a| a.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["frozen", "low_capacity"]);
    assert!(alerts
        .iter()
        .all(|a| a.delivery == "delivered" && a.region.as_deref() == Some("eu-west")));
    for _ in 0..2 {
        let (head, body) = hooks.recv().await.unwrap();
        let sig = fleetscale_engine::actuator::sign("alert-secret", &body);
        assert!(
            head.contains(&format!("x-fleetscale-signature: {sig}")),
            "{head}"
        );
        assert!(head.contains("x-fleetscale-event: alert"), "{head}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["level"], "critical");
        assert!(head.contains(&format!(
            "idempotency-key: {}",
            v["alert_id"].as_str().unwrap()
        )));
    }
    // The same conditions an hour later are alerted again, not sooner.
    assert_eq!(
        fleetscale_engine::monitor::monitor_once(&c, now + 600_000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        fleetscale_engine::monitor::monitor_once(&c, now + 3_600_002)
            .await
            .unwrap(),
        2
    );
}

/// Fail static, black box: a pool whose load asks for scale-in holds while
/// its metrics stop (marked stale), and scales in once samples return.
#[tokio::test(start_paused = true)]
async fn a_pool_holds_while_its_metrics_stop_and_resumes_when_they_return() {
    let _hold = hold_clock();
    let db = db("fail-static").await;
    let a = ctx(&db.store);
    // Cooldown 10 s; scaled to 4 now, so nothing changes for 10 s.
    let p = pool(&db.store, 10).await;
    let start = a.now_ms();
    db.store
        .scale(&ScaleRequest {
            pool_id: p.clone(),
            capacity: 4,
            reason: "setup".into(),
            trigger_source: TriggerSource::Manual,
            metadata: serde_json::Value::Null,
            actor: "test".into(),
            expect_desired: None,
            respect_safety_lock: false,
            actuation_status: ActuationStatus::None,
            fence: None,
            now_ms: start,
        })
        .await
        .unwrap();
    let desired =
        |s: Store, p: String| async move { s.get_pool(&p).await.unwrap().desired_capacity };
    let stale = |c: &EngineCtx, p: &str| c.metrics_stale.lock().unwrap().contains(p);
    // Load 5 on 4 instances of 10: 12.5 % < 30 %, which asks for scale-in.
    let (stop, rx) = watch::channel(false);
    let run = tokio::spawn(fleetscale_engine::control::run(a.clone(), cfg("a"), rx));
    watch(&a);
    for _ in 0..3 {
        push(&db.store, &p, a.now_ms(), 5.0).await;
        run_for(Duration::from_secs(1)).await;
    }
    assert!(!stale(&a, &p), "samples every tick are fresh");
    assert_eq!(desired(db.store.clone(), p.clone()).await, 4, "in cooldown");
    // The metrics stop. The cooldown ends at 10 s; the newest sample (at
    // 2 s) is then older than three 1 s ticks though inside the 300 s
    // window, which alone would let the threshold policy scale in.
    run_for(Duration::from_secs(10)).await;
    assert!(stale(&a, &p), "marked stale");
    assert_eq!(
        desired(db.store.clone(), p.clone()).await,
        4,
        "no scale-in while the metrics are stale"
    );
    let events = db
        .store
        .list_events(Some(&p), None, &Default::default())
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1, "only the setup: {:?}", events.items);
    let text = a.metrics.encode();
    assert!(text.contains("fleetscale_metrics_stale_pools 1"), "{text}");
    assert!(
        text.contains("fleetscale_guard_holds_total{guard=\"fail_static\"}"),
        "the held scale-in is counted: {text}"
    );
    // Samples return: the pool is fresh again and scales in.
    push(&db.store, &p, a.now_ms(), 5.0).await;
    run_for(Duration::from_millis(1_500)).await;
    assert!(!stale(&a, &p), "fresh again");
    assert!(a
        .metrics
        .encode()
        .contains("fleetscale_metrics_stale_pools 0"));
    assert_eq!(desired(db.store.clone(), p.clone()).await, 3, "resumed");
    stop.send(true).unwrap();
    run.await.unwrap().unwrap();
}

/// The flap budget, black box: a load swinging every tick reverses the
/// pool four times; the fifth reversal within the hour is held (and
/// counted), and allowed again once the first reversal is an hour old.
#[tokio::test]
async fn the_fifth_reversal_within_an_hour_is_held() {
    let db = db("flap").await;
    let c = EngineCtx::new(db.store.clone());
    let p = pool(&db.store, 0).await;
    let fence = fleetscale_store::Fence {
        name: LEASE.into(),
        holder: "t".into(),
    };
    let base = c.now_ms();
    // Ticks 301 s apart, so each window holds only that tick's sample.
    let step = 301_000;
    let tick = |i: i64, load: f64| {
        let (s, c, p, fence) = (db.store.clone(), c.clone(), p.clone(), fence.clone());
        async move {
            let now = base + i * step;
            assert!(s.try_lease(LEASE, "t", now, 3_600_000).await.unwrap());
            push(&s, &p, now, load).await;
            fleetscale_engine::control::tick_once(&c, &fence, now)
                .await
                .unwrap();
            s.get_pool(&p).await.unwrap().desired_capacity
        }
    };
    // 9 on 1 instance of 10 is 90 % (up); 2 on 2 is 10 % (down).
    let mut seen = Vec::new();
    for i in 0..6 {
        seen.push(tick(i, if i % 2 == 0 { 9.0 } else { 2.0 }).await);
    }
    assert_eq!(
        seen,
        [2, 1, 2, 1, 2, 2],
        "the 5th reversal (6th change) is held"
    );
    let text = c.metrics.encode();
    assert!(
        text.contains("fleetscale_guard_holds_total{guard=\"flap_budget\"} 1"),
        "{text}"
    );
    // The first reversal was at tick 1; an hour later the budget has room.
    let later = (3_600_000 + step) / step + 1;
    assert_eq!(tick(later, 2.0).await, 1, "allowed again after the hour");
}
