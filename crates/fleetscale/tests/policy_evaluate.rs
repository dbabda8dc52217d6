//! Black-box tests of `fleetscale policy evaluate`.

mod support;

use std::process::Command;

fn run(json: &str) -> std::process::Output {
    let dir = support::Scratch::new("fs-policy-eval");
    let p = dir.path("policy.json");
    std::fs::write(&p, json).unwrap();
    Command::new(env!("CARGO_BIN_EXE_fleetscale"))
        .args(["policy", "evaluate", "--file"])
        .arg(&p)
        .output()
        .unwrap()
}

#[test]
fn queue_and_schedule_decision_as_json() {
    let o = run(r#"{
      "spec": {"policies": [
        {"type": "queue", "messages_per_instance": 100, "max_queue_lag_seconds": 10},
        {"type": "schedule", "schedules": [{"cron": "0 9 * * *", "timezone": "Europe/Berlin",
          "duration_seconds": 7200, "capacity": 30, "mode": "floor", "description": "morning"}]}
      ]},
      "observation": {"now_ms": 1714550400000, "bounds": {"min": 1, "max": 50, "desired": 5},
        "capacity_per_instance": 10, "load": null, "last_scaled_at_ms": null,
        "queue": {"backlog": 1000, "throughput_per_instance": 5, "observed_at_ms": 1714550400000}}
    }"#);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // 1000 / (5 × 10) = 20 by the lag; 09:00 Berlin is 07:00 UTC, so at
    // 08:00 UTC the 2-hour floor of 30 applies.
    assert_eq!(v["target"], 30);
    assert_eq!(v["action"], "scale_up");
    assert_eq!(v["reasons"][0]["factor"], "current_load");
    assert_eq!(v["reasons"][1]["factor"], "schedule");
    assert_eq!(v["policies"][0]["target"], 20);
}

#[test]
fn every_violation_is_reported() {
    let o = run(r#"{
      "spec": {"policies": [{"type": "triggers", "triggers": [{"metric": "gpu", "comparison": "gt",
        "threshold": 70, "duration_seconds": -1, "action": "scale_up", "amount": {"percent": 120}}]}]},
      "observation": {"now_ms": 0, "bounds": {"min": 5, "max": 2, "desired": 3},
        "capacity_per_instance": 1, "load": null, "last_scaled_at_ms": null}
    }"#);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for want in [
        "spec.policies[0].triggers[0].metric unknown metric",
        "spec.policies[0].triggers[0].duration_seconds",
        "observation.bounds.min must be <= bounds.max",
        "observation.bounds.desired",
    ] {
        assert!(err.contains(want), "{want} not in {err}");
    }
    assert!(!err.contains("amount"), "120% is allowed: {err}");
}

#[test]
fn policy_default_prints_the_shipped_default_that_a_new_pool_gets() {
    let o = Command::new(env!("CARGO_BIN_EXE_fleetscale"))
        .args(["policy", "default"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let printed: fleetscale_core::PoolPolicies = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        printed,
        fleetscale_core::decision::default::pool_default(2.0)
    );
    assert_eq!(printed.policies[0].name(), "slo");
}
