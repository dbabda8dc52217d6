//! Prints decisions per second for each policy kind and the decision engine,
//! and the forecaster's fit time on 90 days of 5-minute history.
//! Run: `cargo bench -p fleetscale-core --bench policies`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use fleetscale_core::decision::{decide_all, PerformanceTargets, PoolPolicies};
use fleetscale_core::forecast::Model;
use fleetscale_core::policies::predictive::{ModelCache, PredictivePolicy};
use fleetscale_core::policies::queue::QueuePolicy;
use fleetscale_core::policies::schedule::{ScheduleEntry, ScheduleMode, SchedulePolicy};
use fleetscale_core::policies::target_tracking::{
    MetricTarget, TargetTrackingPolicy, TrackedMetric,
};
use fleetscale_core::policies::triggers::{Trigger, TriggerAction, TriggersPolicy};
use fleetscale_core::policies::{Amount, Comparison};
use fleetscale_core::pool::PoolBounds;
use fleetscale_core::trace::RateSeries;
use fleetscale_core::{
    decide, Observation, PolicySpec, QueueObservation, Sample, ThresholdPolicy, WindowStats,
};

const NOW: i64 = 1_714_550_400_000;
const FIVE_MIN: i64 = 300_000;

fn history(days: usize) -> RateSeries {
    let n = days * 288;
    RateSeries {
        start_ms: NOW - n as i64 * FIVE_MIN,
        interval_ms: FIVE_MIN,
        values: (0..n)
            .map(|i| {
                let t = i as f64 / 288.0;
                let weekly = if (i / 288) % 7 >= 5 { 0.6 } else { 1.0 };
                let noise = ((i * 7919) % 17) as f64 / 17.0 - 0.5;
                Some(weekly * (500.0 + 300.0 * (t * std::f64::consts::TAU).sin()) + 20.0 * noise)
            })
            .collect(),
    }
}

fn observation(hist: &RateSeries) -> Observation {
    let mut o = Observation::new(
        NOW,
        PoolBounds {
            min: 1,
            max: 100,
            desired: 10,
        },
    );
    o.capacity_per_instance = 50.0;
    o.load = Some(WindowStats {
        mean: 300.0,
        count: 30,
        newest_ts_ms: NOW - 5000,
    });
    o.metrics.insert(
        "cpu".into(),
        (0..30)
            .map(|i| Sample {
                ts_ms: NOW - i * 10_000,
                value: 75.0,
            })
            .rev()
            .collect(),
    );
    o.metrics.insert(
        "custom.requests".into(),
        vec![Sample {
            ts_ms: NOW - 1000,
            value: 1200.0,
        }],
    );
    o.queue = Some(QueueObservation {
        backlog: 1500.0,
        throughput_per_instance: Some(5.0),
        observed_at_ms: NOW,
    });
    o.history = Some(hist.clone());
    o
}

fn rate(name: &str, min_time: Duration, mut f: impl FnMut()) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < min_time {
        f();
        n += 1;
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "{name:<28} {:>12.0} decisions/s  ({n} in {s:.2}s)",
        n as f64 / s
    );
}

fn main() {
    let hist90 = history(90);
    // The fit includes the model selection (every candidate fitted and
    // backtested on the window's last week); median of five fits.
    let mut fits: Vec<(Duration, Model)> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let m = Model::fit(black_box(&hist90.values), FIVE_MIN);
            (t.elapsed(), m)
        })
        .collect();
    fits.sort_by_key(|f| f.0);
    let (fit, m) = &fits[2];
    println!(
        "forecaster fit on 90 days of 5-minute history ({} points): {:.1} ms median of 5, {:.1}..{:.1} ms (selected {}, {:?}; target < 1 s)",
        hist90.values.len(),
        fit.as_secs_f64() * 1000.0,
        fits[0].0.as_secs_f64() * 1000.0,
        fits[4].0.as_secs_f64() * 1000.0,
        m.kind.name(),
        m.params
    );
    let obs = observation(&history(14));
    let policies = [
        PolicySpec::Threshold(ThresholdPolicy::default()),
        PolicySpec::TargetTracking(TargetTrackingPolicy {
            metrics: vec![TrackedMetric {
                metric: "custom.requests".into(),
                target: MetricTarget::ExternalAverageValue {
                    average_value: 100.0,
                },
            }],
            tolerance: None,
            behavior: None,
            downscale_stabilization_seconds: None,
            max_sample_age_seconds: 300,
        }),
        PolicySpec::Triggers(TriggersPolicy {
            triggers: vec![Trigger {
                metric: "cpu".into(),
                comparison: Comparison::Gt,
                threshold: 70.0,
                duration_seconds: 120,
                action: TriggerAction::ScaleUp,
                amount: Amount::Absolute(2),
            }],
            scale_up_cooldown_seconds: 60,
            scale_down_cooldown_seconds: 300,
            max_sample_gap_seconds: 30,
        }),
        PolicySpec::Queue(QueuePolicy {
            messages_per_instance: 100.0,
            max_queue_lag_seconds: Some(10.0),
            scale_up_cooldown_seconds: 60,
            scale_down_cooldown_seconds: 300,
            max_observation_age_seconds: 120,
        }),
        PolicySpec::Schedule(SchedulePolicy {
            schedules: vec![ScheduleEntry {
                cron: "0 9 * * 1-5".into(),
                timezone: "Europe/Berlin".into(),
                duration_seconds: 8 * 3600,
                capacity: 20,
                mode: ScheduleMode::Floor,
                description: "office hours".into(),
            }],
        }),
        PolicySpec::Predictive(PredictivePolicy {
            lookahead_seconds: 3600,
            confidence_threshold: 0.5,
            cold_start_seconds: 600,
            target_utilization_percent: 70.0,
            forecast_only: false,
            prediction_level: 0.9,
            history_seconds: 14 * 86_400,
        }),
    ];
    for p in &policies {
        let name = if matches!(p, PolicySpec::Predictive(_)) {
            "predictive (14 d, 5-min)"
        } else {
            p.name()
        };
        rate(name, Duration::from_millis(700), || {
            let _ = black_box(decide(black_box(p), black_box(&obs)));
        });
    }
    // The control loop's path: the cached model fed one new interval per
    // decision, refitted on the whole window when due (once a day of
    // intervals after the first ones), then the decision.
    if let Some(PolicySpec::Predictive(pp)) = policies.last() {
        let h = obs.history.clone().expect("history");
        let n = h.values.len();
        // The history continued by repeating itself.
        let at = |j: usize| h.values[j % n];
        let window = |end: usize| {
            let from = end.saturating_sub(n);
            RateSeries {
                start_ms: h.time_of(from),
                interval_ms: FIVE_MIN,
                values: (from..end).map(at).collect(),
            }
        };
        let mut cache = ModelCache::advance(None, &h, pp.history_seconds);
        let mut end = n;
        rate(
            "predictive, cached (+1 interval)",
            Duration::from_millis(700),
            || {
                end += 1;
                let end_ms = h.time_of(end);
                let series = if ModelCache::needs_full_history(
                    cache.as_ref(),
                    end_ms,
                    FIVE_MIN,
                    pp.history_seconds,
                ) {
                    window(end)
                } else {
                    RateSeries {
                        start_ms: h.time_of(end - 1),
                        interval_ms: FIVE_MIN,
                        values: vec![at(end - 1)],
                    }
                };
                cache = ModelCache::advance(cache.take(), &series, pp.history_seconds);
                let c = cache.as_ref().expect("model");
                let mut o = obs.clone();
                o.now_ms = c.end_ms;
                let _ = black_box(pp.decide_with_model(&o, &c.model, c.end_ms, c.interval_ms));
            },
        );
    }
    let all = PoolPolicies {
        policies: policies[..5].to_vec(),
        performance_targets: PerformanceTargets::default(),
        spike_urgency_threshold: 0.8,
        scale_in_sla_margin: 0.2,
    };
    rate(
        "decide_all (5 non-predictive)",
        Duration::from_millis(700),
        || {
            let _ = black_box(decide_all(black_box(&all), black_box(&obs)));
        },
    );
}
