//! The `slo` policy's tests: staffing tables, decisions, the burst
//! window, stabilization, and properties.

use super::*;
use crate::observation::PoolBounds;
use proptest::prelude::*;

#[test]
fn erlang_c_table() {
    // Known values: C(2, 1) = 1/3; C(1, 0.5) = 0.5; C(10, 8) ≈ 0.4092.
    let cases = [
        (2.0, 1.0, 1.0 / 3.0),
        (1.0, 0.5, 0.5),
        (10.0, 8.0, 0.40918),
        (3.0, 3.0, 1.0),
        (5.0, 0.0, 0.0),
    ];
    for (c, a, want) in cases {
        let got = erlang_c(c, a);
        assert!(
            (got - want).abs() < 1e-4,
            "C({c}, {a}) = {got}, want {want}"
        );
    }
}

#[test]
fn normal_quantile_table() {
    for (p, want) in [
        (0.5, 0.0),
        (0.8, 0.841_621),
        (0.99, 2.326_348),
        (0.999, 3.090_232),
        (0.01, -2.326_348),
        (0.0, 0.0),
    ] {
        assert!(
            (normal_quantile(p) - want).abs() < 1e-5,
            "{p}: {}",
            normal_quantile(p)
        );
    }
}

#[test]
fn staffing_table() {
    // (a, eps, slack, want c)
    let cases = [
        (0.0, 0.01, 1.0, 0.0),
        // C(2,1)·e^{-1·1} = 0.123 > 0.1; C(3,1)·e^{-2} = 0.045·0.135 < 0.1.
        (1.0, 0.1, 1.0, 3.0),
        (1.0, 0.2, 1.0, 2.0),
        // A long slack needs only c > a.
        (8.0, 0.01, 50.0, 9.0),
    ];
    for (a, eps, slack, want) in cases {
        assert_eq!(
            erlang_c_staffing(a, 1.0, eps, slack),
            want,
            "a {a} eps {eps} slack {slack}"
        );
    }
}

fn obs(
    now: i64,
    desired: i64,
    rates: &[f64],
    service_ms: f64,
    missed_per: f64,
    queue: f64,
) -> Observation {
    let mut o = Observation::new(
        now,
        PoolBounds {
            min: 0,
            max: 100,
            desired,
        },
    );
    let n = rates.len() as i64;
    let ts = |i: i64| now - (n - 1 - i) * 15_000 - 5_000;
    let mk = |f: &dyn Fn(i64, f64) -> f64| -> Vec<Sample> {
        rates
            .iter()
            .enumerate()
            .map(|(i, r)| Sample {
                ts_ms: ts(i as i64),
                value: f(i as i64, *r),
            })
            .collect()
    };
    o.metrics.insert(ARRIVAL_RATE.into(), mk(&|_, r| r));
    o.metrics
        .insert(SERVICE_TIME_MS.into(), mk(&|_, _| service_ms));
    o.metrics.insert(COMPLETED.into(), mk(&|_, r| r * 15.0));
    o.metrics
        .insert(MISSED.into(), mk(&|_, r| r * 15.0 * missed_per));
    o.metrics
        .insert(IN_FLIGHT.into(), mk(&|_, r| r * service_ms / 1000.0));
    o.metrics.insert(QUEUE_DEPTH.into(), mk(&|_, _| queue));
    o
}

const GOAL: SloGoal = SloGoal {
    latency_ms: 20_000.0,
    attainment: 0.99,
};

#[test]
fn decisions_table() {
    let p = SloPolicy::new(2.0, 60.0);
    let steady = vec![2.0; 120];
    let mut bursty = vec![0.5; 120];
    for i in (0..120).step_by(8) {
        bursty[i] = 8.0;
    }
    let idle = vec![0.0; 120];
    // (name, obs, goal, want target range)
    let cases: Vec<(
        &str,
        Observation,
        Option<SloGoal>,
        std::ops::RangeInclusive<i64>,
    )> = vec![
        (
            "no goal holds",
            obs(2_000_000, 3, &steady, 2000.0, 0.0, 0.0),
            None,
            3..=3,
        ),
        // a = 4 Erlangs, slack 9 services: c = 5..7 slots → 3..4 instances.
        (
            "steady Poisson load",
            obs(2_000_000, 3, &steady, 2000.0, 0.0, 0.0),
            Some(GOAL),
            3..=4,
        ),
        (
            "misses above the budget tighten",
            obs(2_000_000, 3, &steady, 2000.0, 0.05, 0.0),
            Some(GOAL),
            3..=5,
        ),
        // A 60 s cold start against an 18 s slack: new instances come too
        // late for the 40 waiting (they are served or missed by then).
        (
            "a backlog new capacity cannot reach adds nothing",
            obs(2_000_000, 3, &steady, 2000.0, 0.0, 40.0),
            Some(GOAL),
            3..=4,
        ),
        (
            "idle for the idle period goes to zero (cold + S ≤ latency? no: 1 h)",
            obs(2_000_000, 1, &idle, 2000.0, 0.0, 0.0),
            Some(GOAL),
            1..=1,
        ),
        (
            "idle with a lax latency goes to zero",
            obs(2_000_000, 1, &idle, 2000.0, 0.0, 0.0),
            Some(SloGoal {
                latency_ms: 90_000.0,
                attainment: 0.99,
            }),
            0..=0,
        ),
        (
            "queued work at zero activates",
            obs(
                2_000_000,
                0,
                &{
                    let mut r = idle.clone();
                    r[119] = 0.1;
                    r
                },
                2000.0,
                0.0,
                3.0,
            ),
            Some(GOAL),
            1..=4,
        ),
    ];
    for (name, o, goal, want) in cases {
        let d = p.decide(&o, goal);
        assert!(
            want.contains(&d.target),
            "{name}: {} ({})",
            d.target,
            d.reason
        );
    }
    // Peaked staffing: more slots for peaked traffic of the same load.
    assert!(erlang_c_staffing(4.0, 8.0, 0.01, 2.0) > erlang_c_staffing(4.0, 1.0, 0.01, 2.0));
    // Peaked arrivals need more than Poisson ones of the same mean.
    let mean_bursty = bursty.iter().sum::<f64>() / 120.0;
    let flat = vec![mean_bursty; 120];
    let a = p.decide(&obs(2_000_000, 3, &bursty, 2000.0, 0.0, 0.0), Some(GOAL));
    let b = p.decide(&obs(2_000_000, 3, &flat, 2000.0, 0.0, 0.0), Some(GOAL));
    assert!(
        a.target > b.target,
        "peaked {} vs flat {}",
        a.target,
        b.target
    );
}

/// The rate samples of `obs` (15 s apart, newest 5 s old) for a run of
/// per-sample rates.
fn rates_only(now: i64, desired: i64, rates: &[f64]) -> Observation {
    obs(now, desired, rates, 120_000.0, 0.0, 0.0)
}

const LAX: SloGoal = SloGoal {
    latency_ms: 360_000.0,
    attainment: 0.99,
};

#[test]
fn idle_period_table() {
    // (cold start s, service s, latency s, attainment) → idle period s
    let cases: &[(f64, f64, f64, f64, f64)] = &[
        // A request at zero misses: T / (1 − attainment), at most 1 h.
        (60.0, 3.0, 20.0, 0.99, 3600.0),
        (60.0, 3.0, 20.0, 0.9, 600.0),
        (0.0, 3.0, 2.0, 0.99, 60.0), // no cold start: the burst window
        // It meets the goal: shrunk by S / (L − T).
        (60.0, 120.0, 360.0, 0.99, 6000.0 * 120.0 / 300.0),
        (60.0, 200.0, 360.0, 0.99, 3600.0), // 4,000 s, at most 1 h
        (60.0, 120.0, 360.0, 0.9, 600.0 * 120.0 / 300.0),
        (2.0, 1.0, 10.0, 0.999, 2000.0 / 8.0),
        (2.0, 1.0, 10.0, 0.99, 60.0), // 25 s, floored by the burst window
        // Continuous at T + S = L.
        (60.0, 300.0, 360.0, 0.99, 3600.0),
        // At least the cold start and the burst window (60 s).
        (60.0, 1.0, 360.0, 0.9, 60.0),
        (120.0, 1.0, 3600.0, 0.5, 120.0),
        // No service time measured: the floor.
        (30.0, 0.0, 60.0, 0.99, 60.0),
    ];
    for &(cold, service, latency, attainment, want) in cases {
        let p = SloPolicy::new(4.0, cold);
        let got = p.idle_seconds(
            SloGoal {
                latency_ms: latency * 1000.0,
                attainment,
            },
            service,
        );
        assert!(
            (got - want).abs() < 1e-6,
            "T {cold} S {service} L {latency} att {attainment}: {got}, want {want}"
        );
    }
}

proptest! {
    /// The idle period grows with the attainment goal and with the
    /// service time, and never falls below the cold start.
    #[test]
    fn idle_period_is_monotone(
        cold in 0.0f64..600.0,
        s1 in 0.0f64..600.0,
        ds in 0.0f64..600.0,
        latency in 1.0f64..3600.0,
        g1 in 0.5f64..0.999,
        dg in 0.0f64..0.2,
    ) {
        let p = SloPolicy::new(4.0, cold);
        let at = |s: f64, g: f64| p.idle_seconds(SloGoal { latency_ms: latency * 1000.0, attainment: g }, s);
        let g2 = (g1 + dg).min(0.9999);
        prop_assert!(at(s1, g2) >= at(s1, g1) - 1e-9);
        prop_assert!(at(s1 + ds, g1) >= at(s1, g1) - 1e-9);
        prop_assert!(at(s1, g1) >= cold.min(MAX_IDLE_SECONDS));
    }
}

#[test]
fn backlog_counts_what_new_capacity_can_still_drain() {
    // 2 s service, 20 s goal (18 s slack), 5 s cold start: of 40 waiting,
    // the 2 spare slots of 3 instances drain 5 within the cold start; 35
    // remain to drain in the 13 s left: 5.4 more slots.
    let p = SloPolicy::new(2.0, 5.0);
    let steady = vec![2.0; 120];
    let base = p.decide(&obs(2_000_000, 3, &steady, 2000.0, 0.0, 0.0), Some(GOAL));
    let d = p.decide(&obs(2_000_000, 3, &steady, 2000.0, 0.0, 40.0), Some(GOAL));
    assert!((5..=6).contains(&d.target), "{}", d.reason);
    assert!(
        d.target >= base.target + 2,
        "{} vs {}",
        d.target,
        base.target
    );
    // A backlog the spare slots drain within the cold start adds nothing.
    let d = p.decide(&obs(2_000_000, 3, &steady, 2000.0, 0.0, 4.0), Some(GOAL));
    assert_eq!(d.target, base.target, "{}", d.reason);
}

#[test]
fn no_scale_in_within_the_window_after_a_scale_out() {
    let p = SloPolicy::new(4.0, 60.0);
    let now = 10_000_000;
    let low = rates_only(now, 10, &[0.2; 120]);
    assert!(p.decide(&low, Some(LAX)).target < 10);
    // (seconds since the last scale-out, scale-in allowed?)
    for (ago_s, allowed) in [(15, false), (299, false), (300, true), (900, true)] {
        let mut o = low.clone();
        o.last_scale_up_at_ms = Some(now - ago_s * 1000);
        let d = p.decide(&o, Some(LAX));
        assert_eq!(d.target < 10, allowed, "{ago_s}s: {}", d.reason);
    }
    // A scale-out is never held back.
    let mut o = rates_only(now, 1, &[1.0; 120]);
    o.last_scale_up_at_ms = Some(now - 15_000);
    assert!(p.decide(&o, Some(LAX)).target > 1);
}

#[test]
fn burst_window_counts_only_a_significant_rise() {
    let p = SloPolicy::new(4.0, 60.0);
    let now = 10_000_000;
    // 0.04/s before predicts about 2.4 arrivals in the 60 s burst
    // window (the rate window's mean includes the burst's 4 samples).
    // (burst window mean) → counted?
    let cases: &[(f64, bool)] = &[
        (0.04, false), // as predicted
        (0.08, false), // 4.8 arrivals: the noise of a few arrivals
        (0.15, false), // 9 against 3.7 predicted: 2.8 σ
        (0.25, true),  // 15 against 4.9 predicted: 4.5 σ
        (0.5, true),
    ];
    for &(burst, counted) in cases {
        let mut r = vec![0.04; 120];
        for x in r.iter_mut().rev().take(4) {
            *x = burst;
        }
        let (lambda, sigma) = p.rate_estimate(&r_samples(now, &r), now);
        let steady = (0.04 * 16.0 + burst * 4.0) / 20.0;
        let want = if counted { burst } else { steady };
        assert!(
            (lambda - want).abs() < 1e-9,
            "burst {burst}: λ {lambda}, want {want}"
        );
        assert!((sigma - (lambda / 300.0).sqrt()).abs() < 1e-12);
    }
    // With significance 0 any excess counts (the old max of the two).
    let eager = SloPolicy {
        burst_significance: 0.0,
        ..p.clone()
    };
    let mut r = vec![0.04; 120];
    for x in r.iter_mut().rev().take(4) {
        *x = 0.08;
    }
    assert!((eager.rate_estimate(&r_samples(now, &r), now).0 - 0.08).abs() < 1e-9);
}

fn r_samples(now: i64, rates: &[f64]) -> Vec<Sample> {
    rates_only(now, 1, rates).metrics[ARRIVAL_RATE].clone()
}

#[test]
fn scale_in_waits_for_the_stabilization_window() {
    let p = SloPolicy::new(4.0, 60.0);
    let now = 10_000_000;
    // A high rate that ended `ago` samples (15 s each) before now; the
    // pool sits at the high rate's staffing.
    let high = vec![1.0; 120];
    let at_high = p.decide(&rates_only(now, 1, &high), Some(LAX)).target;
    let low_target = p.decide(&rates_only(now, at_high, &vec![0.2; 120]), Some(LAX));
    assert!(low_target.target < at_high, "{}", low_target.reason);
    // (samples since the drop, scale-in allowed?)
    for (ago, allowed) in [(4, false), (20, false), (39, true), (60, true)] {
        let mut r = vec![1.0; 120];
        for x in r.iter_mut().rev().take(ago) {
            *x = 0.2;
        }
        let d = p.decide(&rates_only(now, at_high, &r), Some(LAX));
        assert_eq!(
            d.target < at_high,
            allowed,
            "{ago} samples after the drop: {} → {} ({})",
            at_high,
            d.target,
            d.reason
        );
    }
    // Without stabilization the drop is followed once the rate window
    // has seen it.
    let eager = SloPolicy {
        scale_in_stabilization_seconds: 0,
        ..p.clone()
    };
    let mut r = vec![1.0; 120];
    for x in r.iter_mut().rev().take(21) {
        *x = 0.2;
    }
    assert!(
        eager
            .decide(&rates_only(now, at_high, &r), Some(LAX))
            .target
            < at_high
    );
}

#[test]
fn noise_of_a_few_arrivals_does_not_reverse() {
    // A low, noisy Poisson-like rate: the pool at the point estimate's
    // staffing is not scaled in by the next dip.
    let p = SloPolicy::new(4.0, 60.0);
    let now = 10_000_000;
    let pattern = [0.0, 0.067, 0.0, 0.133, 0.0, 0.0, 0.067, 0.0, 0.067, 0.0];
    let noisy: Vec<f64> = (0..120).map(|i| pattern[i % pattern.len()]).collect();
    let at = p.decide(&rates_only(now, 1, &noisy), Some(LAX)).target;
    let mut dip = noisy.clone();
    for x in dip.iter_mut().rev().take(8) {
        *x = 0.0;
    }
    let d = p.decide(&rates_only(now, at, &dip), Some(LAX));
    assert_eq!(d.target, at, "{}", d.reason);
}

proptest! {
    /// Stabilization never changes a scale-out or a hold, and never
    /// scales in below what the policy without it would.
    #[test]
    fn stabilization_only_slows_scale_in(
        rates in proptest::collection::vec(0.0f64..5.0, 10..120),
        desired in 1i64..40,
        stab in 0i64..1200,
    ) {
        let p = SloPolicy { scale_in_stabilization_seconds: stab, ..SloPolicy::new(4.0, 60.0) };
        let off = SloPolicy { scale_in_stabilization_seconds: 0, ..p.clone() };
        let o = rates_only(10_000_000, desired, &rates);
        let a = p.decide(&o, Some(LAX)).target;
        let b = off.decide(&o, Some(LAX)).target;
        if b >= desired {
            prop_assert_eq!(a, b);
        } else {
            prop_assert!(a >= b && a <= desired, "{} vs {} at {}", a, b, desired);
        }
    }

    /// A higher attainment goal never asks for fewer instances.
    #[test]
    fn higher_goal_never_needs_less(
        rates in proptest::collection::vec(0.0f64..20.0, 10..120),
        service_ms in 100.0f64..60_000.0,
        missed in 0.0f64..0.2,
        queue in 0.0f64..50.0,
        g1 in 0.5f64..0.999,
        dg in 0.0f64..0.2,
    ) {
        let p = SloPolicy::new(4.0, 60.0);
        let o = obs(10_000_000, 5, &rates, service_ms, missed, queue);
        let lo = p.decide(&o, Some(SloGoal { latency_ms: 3.0 * service_ms, attainment: g1 }));
        let hi = p.decide(&o, Some(SloGoal { latency_ms: 3.0 * service_ms, attainment: (g1 + dg).min(0.9999) }));
        prop_assert!(hi.target >= lo.target, "{} < {}", hi.target, lo.target);
        prop_assert!((0..=100).contains(&lo.target));
    }
}

#[test]
fn new_fields_are_validated_by_name() {
    // (stabilization s, burst significance) → the fields named
    let cases: &[(i64, f64, &[&str])] = &[
        (300, 4.0, &[]),
        (0, 0.0, &[]),
        (86_400, 100.0, &[]),
        (-1, 4.0, &["p.scale_in_stabilization_seconds"]),
        (86_401, 4.0, &["p.scale_in_stabilization_seconds"]),
        (300, -0.5, &["p.burst_significance"]),
        (300, f64::NAN, &["p.burst_significance"]),
        (
            -5,
            101.0,
            &["p.scale_in_stabilization_seconds", "p.burst_significance"],
        ),
    ];
    for &(stab, sig, want) in cases {
        let p = SloPolicy {
            scale_in_stabilization_seconds: stab,
            burst_significance: sig,
            ..SloPolicy::new(4.0, 60.0)
        };
        let mut v = crate::validate::Violations::default();
        p.validate("p", &mut v);
        let got: Vec<&str> = v.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(got, want, "stab {stab} sig {sig}");
    }
    // Both default when absent from stored JSON.
    let p: SloPolicy = serde_json::from_str(r#"{"concurrency_per_instance": 2}"#).unwrap();
    assert_eq!(
        (p.scale_in_stabilization_seconds, p.burst_significance),
        (300, 4.0)
    );
}

#[test]
fn peakedness_does_not_change_with_the_scrape_interval() {
    // Arrivals per second: 40 in every fourth 15 s bucket, 2 otherwise.
    let per_s = |t: i64| if (t / 15) % 4 == 0 { 40.0 } else { 2.0 };
    let t0 = 1_000_000_000;
    let seconds = 1800;
    // Scraped every second: each sample's rate is that second's count.
    let fine: Vec<Sample> = (0..=seconds)
        .map(|t| Sample {
            ts_ms: t0 + t * 1000,
            value: per_s(t - 1),
        })
        .collect();
    // Scraped every 15 s: each sample's rate is the mean of its 15 s.
    let coarse: Vec<Sample> = (0..=seconds / 15)
        .map(|k| Sample {
            ts_ms: t0 + k * 15_000,
            value: (0..15).map(|i| per_s(k * 15 - 15 + i)).sum::<f64>() / 15.0,
        })
        .collect();
    let (zf, zc) = (peakedness(&fine, t0), peakedness(&coarse, t0));
    assert!(zc > 50.0, "peaked traffic: {zc}");
    assert!(
        (zf / zc - 1.0).abs() < 0.15,
        "1 s scrapes {zf}, 15 s scrapes {zc}"
    );
}
