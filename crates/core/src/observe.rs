//! From what was scraped to what a policy sees: the one builder of an
//! [`Observation`] and the one bookkeeping of the demand history that feeds
//! predictive policies. The live control loop, the plan endpoint and the
//! simulator all call these; only where their data comes from differs (the
//! store, or the simulated world).
//!
//! Derived figures, defined once here:
//! - the **queue** is the newest `queue_depth` sample, and one instance's
//!   throughput is the mean `throughput` of the last [`THROUGHPUT_WINDOW_MS`]
//!   over the desired capacity (a source that measures per-instance
//!   throughput itself gives its own [`QueueObservation`] instead);
//! - the **SLA** figures are the means of `latency_ms`, `error_rate` and
//!   [`AVAILABILITY_METRIC`] over the last [`SLA_WINDOW_MS`];
//! - the **history** is the pool metric's mean per [`HISTORY_INTERVAL_MS`]
//!   interval over completed intervals.

use std::collections::BTreeMap;

use crate::decision::PoolPolicies;
use crate::hpa::{ConditionStatus, Pod, PodMetric, PodPhase, ReadyCondition};
use crate::policies::predictive::ModelCache;
use crate::policy::{
    Observation, PolicySpec, QueueObservation, Sample, SlaObservation, WindowStats,
};
use crate::pool::PoolBounds;
use crate::trace::RateSeries;

/// How far back combined policies see raw samples (triggers, queue, SLA), ms.
pub const COMBINED_LOOKBACK_MS: i64 = 3_600_000;

/// Most raw samples loaded for one pool's combined policies (a stated bound).
pub const COMBINED_SAMPLE_LIMIT: i64 = 20_000;

/// Interval of the demand history fed to predictive policies, ms.
pub const HISTORY_INTERVAL_MS: i64 = 300_000;

/// Window of the throughput that sizes one instance's share of a queue, ms.
pub const THROUGHPUT_WINDOW_MS: i64 = 60_000;

/// Window of the SLA figures (latency, error rate), ms.
pub const SLA_WINDOW_MS: i64 = 300_000;

/// Metric of the availability the pool reports, percent (0–100); its mean
/// over [`SLA_WINDOW_MS`] is the SLA figure `min_availability_percent` is
/// checked against.
pub const AVAILABILITY_METRIC: &str = "availability_percent";

/// Largest metric sample value accepted (10^15: far above any queue depth,
/// throughput or latency in ms); ingestion refuses a larger one with a 422.
/// With every value within it, the sums behind the window means (in the
/// store and in [`mean`]) stay finite for any number of samples.
pub const MAX_SAMPLE_VALUE: f64 = 1e15;

/// The arithmetic mean of `values`, `None` when empty. Overflow-safe: the
/// values are summed scaled by the largest magnitude, so the mean of any
/// finite values is finite (two samples of `f64::MAX` average to
/// `f64::MAX`, not infinity). A non-finite value gives a non-finite mean.
#[must_use]
pub fn mean(values: impl IntoIterator<Item = f64> + Clone) -> Option<f64> {
    let (mut n, mut scale) = (0u64, 0.0f64);
    for x in values.clone() {
        n += 1;
        scale = scale.max(x.abs());
        if x.is_nan() {
            return Some(f64::NAN);
        }
    }
    if n == 0 {
        return None;
    }
    if scale == 0.0 || !scale.is_finite() {
        // All zero, or an infinity: the plain sum says it.
        return Some(values.into_iter().sum::<f64>() / n as f64);
    }
    let scaled: f64 = values.into_iter().map(|x| x / scale).sum();
    Some(scale * (scaled / n as f64))
}

/// A pool's own facts at the time of an observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolFacts {
    /// Evaluation time, Unix ms.
    pub now_ms: i64,
    /// Bounds and current desired capacity.
    pub bounds: PoolBounds,
    /// Work one instance handles, in metric units.
    pub capacity_per_instance: f64,
    /// An admin's safety lock.
    pub safety_lock: bool,
    /// When the pool last changed size, Unix ms.
    pub last_scaled_at_ms: Option<i64>,
    /// When it last grew, Unix ms, if known apart from `last_scaled_at_ms`.
    pub last_scale_up_at_ms: Option<i64>,
    /// When it last shrank, Unix ms, if known apart from `last_scaled_at_ms`.
    pub last_scale_down_at_ms: Option<i64>,
}

/// What a metric source gathered for one pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// The pool metric over its policy window; `None` without samples.
    pub load: Option<WindowStats>,
    /// Recent samples per metric name, oldest first.
    pub metrics: BTreeMap<String, Vec<Sample>>,
    /// The queue as measured by the source itself; `None` derives it from
    /// the `queue_depth` and `throughput` samples.
    pub queue: Option<QueueObservation>,
}

/// The observation a policy gets of a pool with `facts` from `scrape`.
/// Pure: the same inputs give the same observation.
#[must_use]
pub fn observation(facts: &PoolFacts, scrape: Scrape) -> Observation {
    let mut o = Observation::new(facts.now_ms, facts.bounds);
    o.capacity_per_instance = facts.capacity_per_instance;
    o.safety_lock = facts.safety_lock;
    o.last_scaled_at_ms = facts.last_scaled_at_ms;
    o.last_scale_up_at_ms = facts.last_scale_up_at_ms;
    o.last_scale_down_at_ms = facts.last_scale_down_at_ms;
    o.load = scrape.load;
    o.metrics = scrape.metrics;
    o.queue = scrape.queue.or_else(|| queue_of(&o.metrics, facts));
    o.sla = sla_of(&o.metrics, facts.now_ms);
    o
}

/// Mean of `name`'s samples newer than `since`; `None` without any.
fn recent_mean(metrics: &BTreeMap<String, Vec<Sample>>, name: &str, since: i64) -> Option<f64> {
    mean(
        metrics
            .get(name)?
            .iter()
            .filter(|s| s.ts_ms > since)
            .map(|s| s.value),
    )
}

fn queue_of(
    metrics: &BTreeMap<String, Vec<Sample>>,
    facts: &PoolFacts,
) -> Option<QueueObservation> {
    let last = metrics.get("queue_depth")?.last().copied()?;
    let desired = facts.bounds.desired;
    let per_instance = recent_mean(metrics, "throughput", facts.now_ms - THROUGHPUT_WINDOW_MS)
        .filter(|_| desired > 0)
        .map(|t| t / desired as f64);
    Some(QueueObservation {
        backlog: last.value,
        throughput_per_instance: per_instance,
        observed_at_ms: last.ts_ms,
    })
}

fn sla_of(metrics: &BTreeMap<String, Vec<Sample>>, now_ms: i64) -> Option<SlaObservation> {
    let since = now_ms - SLA_WINDOW_MS;
    let latency = recent_mean(metrics, "latency_ms", since);
    let errors = recent_mean(metrics, "error_rate", since);
    let availability = recent_mean(metrics, AVAILABILITY_METRIC, since);
    (latency.is_some() || errors.is_some() || availability.is_some()).then_some(SlaObservation {
        response_time_ms: latency,
        availability_percent: availability,
        error_rate: errors,
    })
}

/// How far back a pool's per-instance samples are read, ms: an instance
/// not heard from for this long is gone.
pub const INSTANCE_LOOKBACK_MS: i64 = 300_000;

/// The window one per-instance sample stands for, ms (a reporter's usual
/// scrape interval; target tracking's readiness rules read it).
pub const INSTANCE_SAMPLE_WINDOW_MS: i64 = 15_000;

/// One labelled sample of one instance of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceReading {
    /// The instance's name.
    pub instance: String,
    /// Metric name.
    pub metric: String,
    /// When it was taken, Unix ms.
    pub ts_ms: i64,
    /// Its value, in the metric's units; for a resource `Utilization`
    /// target, the fraction of the instance's request (1.0 = 100 %).
    pub value: f64,
}

/// Target tracking's pods and per-pod metrics from `readings` (oldest
/// first) of the last [`INSTANCE_LOOKBACK_MS`] before `now_ms`: every
/// instance with a sample in the window is a running, ready pod, started
/// and ready at its first sample seen (so, as Kubernetes does for a new
/// pod, its first CPU sample counts as unready), with a request of 1000
/// milli-units (a value of 1.0 is 100 % utilization); each metric's newest
/// sample per instance is its pod metric. Pure.
#[must_use]
pub fn instances_of(
    readings: &[InstanceReading],
    now_ms: i64,
) -> (Vec<Pod>, BTreeMap<String, Vec<PodMetric>>) {
    let from = now_ms - INSTANCE_LOOKBACK_MS;
    let mut first: BTreeMap<&str, i64> = BTreeMap::new();
    let mut newest: BTreeMap<(&str, &str), &InstanceReading> = BTreeMap::new();
    for r in readings
        .iter()
        .filter(|r| r.ts_ms > from && r.ts_ms <= now_ms && r.value.is_finite())
    {
        first.entry(&r.instance).or_insert(r.ts_ms);
        let e = newest.entry((&r.metric, &r.instance)).or_insert(r);
        if r.ts_ms >= e.ts_ms {
            *e = r;
        }
    }
    let pods = first
        .iter()
        .map(|(name, &at)| Pod {
            name: (*name).to_string(),
            phase: PodPhase::Running,
            deleting: false,
            start_time_ms: Some(at),
            ready: Some(ReadyCondition {
                status: ConditionStatus::True,
                last_transition_ms: at,
            }),
            request_milli: Some(1000),
        })
        .collect();
    let mut metrics: BTreeMap<String, Vec<PodMetric>> = BTreeMap::new();
    for ((metric, instance), r) in newest {
        metrics
            .entry(metric.to_string())
            .or_default()
            .push(PodMetric {
                pod: instance.to_string(),
                value_milli: (r.value * 1000.0).round() as i64,
                timestamp_ms: r.ts_ms,
                window_ms: INSTANCE_SAMPLE_WINDOW_MS,
            });
    }
    (pods, metrics)
}

/// Window statistics of `samples` (oldest first) newer than `from_ms`.
#[must_use]
pub fn window_stats(samples: &[Sample], from_ms: i64) -> Option<WindowStats> {
    let win: Vec<&Sample> = samples.iter().filter(|s| s.ts_ms > from_ms).collect();
    let newest = win.last()?;
    Some(WindowStats {
        mean: mean(win.iter().map(|s| s.value))?,
        count: win.len() as u64,
        newest_ts_ms: newest.ts_ms,
    })
}

/// Whether `spec` has a target tracking metric that reads per-instance
/// samples (`Utilization`, `ResourceAverageValue`, `AverageValue`).
#[must_use]
pub fn needs_instances(spec: &PoolPolicies) -> bool {
    use crate::policies::target_tracking::MetricTarget;
    spec.policies.iter().any(|p| match p {
        PolicySpec::TargetTracking(t) => t.metrics.iter().any(|m| {
            matches!(
                m.target,
                MetricTarget::Utilization { .. }
                    | MetricTarget::ResourceAverageValue { .. }
                    | MetricTarget::AverageValue { .. }
            )
        }),
        _ => false,
    })
}

/// The longest `history_seconds` of `spec`'s predictive policies, if any.
#[must_use]
pub fn history_seconds(spec: &PoolPolicies) -> Option<i64> {
    spec.policies
        .iter()
        .filter_map(|s| match s {
            PolicySpec::Predictive(pp) => Some(pp.history_seconds),
            _ => None,
        })
        .max()
}

/// The demand history over `[from_ms, to_ms)` (both rounded down to an
/// interval) from `(interval start, mean)` buckets in order. With
/// `keep_start` the series starts at `from_ms` (leading intervals without
/// data are `None`); otherwise at the first bucket, and `None` without any.
#[must_use]
pub fn history_series(
    buckets: &[(i64, f64)],
    from_ms: i64,
    to_ms: i64,
    interval_ms: i64,
    keep_start: bool,
) -> Option<RateSeries> {
    let iv = interval_ms.max(1);
    let from = from_ms.div_euclid(iv) * iv;
    let to = to_ms.div_euclid(iv) * iv;
    let first = match buckets.first() {
        _ if keep_start => from,
        Some(b) => b.0,
        None => return None,
    };
    let n = ((to - first) / iv).max(0) as usize;
    let mut values = vec![None; n];
    for &(b, v) in buckets {
        let i = (b - first) / iv;
        if (0..n as i64).contains(&i) {
            values[i as usize] = Some(v);
        }
    }
    Some(RateSeries {
        start_ms: first,
        interval_ms: iv,
        values,
    })
}

/// What history the cached models of `spec`'s predictive policies need to
/// reach the interval ending at `end_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryNeed {
    /// Every model is up to date (or there is no predictive policy).
    Nothing,
    /// A model must be (re)fitted: load the whole window, back to at least
    /// `from_ms`.
    Full {
        /// Start of the longest window a refitting policy reads, Unix ms.
        from_ms: i64,
    },
    /// Only the intervals from `from_ms` on are new to the models.
    Since {
        /// End of the least advanced model, Unix ms.
        from_ms: i64,
    },
}

/// Which history `models` (by policy index of `spec`) need at `now_ms` to
/// reach `end_ms`, the end of the last completed interval of `interval_ms`
/// (the live engine's intervals fall on multiples of `interval_ms`, the
/// simulator's on its origin's grid). A full load reaches back
/// `history_seconds` from `now_ms` for the longest refitting policy.
#[must_use]
pub fn history_need(
    spec: &PoolPolicies,
    models: &[Option<ModelCache>],
    now_ms: i64,
    end_ms: i64,
    interval_ms: i64,
) -> HistoryNeed {
    let end = end_ms;
    let mut full: Option<i64> = None;
    let mut since: Option<i64> = None;
    for (s, m) in spec.policies.iter().zip(models.iter()) {
        let PolicySpec::Predictive(pp) = s else {
            continue;
        };
        if ModelCache::needs_full_history(m.as_ref(), end, interval_ms, pp.history_seconds) {
            let from = now_ms - pp.history_seconds * 1000;
            full = Some(full.map_or(from, |f| f.min(from)));
        } else if let Some(c) = m {
            since = Some(since.map_or(c.end_ms, |x| x.min(c.end_ms)));
        }
    }
    match (full, since) {
        (Some(from_ms), _) => HistoryNeed::Full { from_ms },
        (None, Some(from_ms)) if from_ms < end => HistoryNeed::Since { from_ms },
        _ => HistoryNeed::Nothing,
    }
}

/// Brings every predictive policy's model in `models` (by policy index of
/// `spec`) up to the end of `history` (see [`ModelCache::advance`]).
pub fn advance_models(
    spec: &PoolPolicies,
    models: &mut [Option<ModelCache>],
    history: &RateSeries,
) {
    for (s, m) in spec.policies.iter().zip(models.iter_mut()) {
        if let PolicySpec::Predictive(pp) = s {
            *m = ModelCache::advance(m.take(), history, pp.history_seconds);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn means_of_values_at_any_finite_magnitude_do_not_overflow() {
        let at = |v: f64, ts_ms: i64| Sample { ts_ms, value: v };
        let w = window_stats(&[at(f64::MAX, 1), at(f64::MAX, 2)], 0).unwrap();
        assert_eq!(w.mean, f64::MAX);
        let w = window_stats(&[at(1.7e308, 1), at(1.7e308, 2), at(0.0, 3)], 0).unwrap();
        assert!(w.mean.is_finite() && (w.mean - 1.7e308 / 3.0 * 2.0).abs() < 1e295);
        let b = MAX_SAMPLE_VALUE;
        assert_eq!(mean([b, b, b]), Some(b));
        assert_eq!(mean([0.0, 0.0]), Some(0.0));
        assert_eq!(mean(std::iter::empty::<f64>()), None);
        assert_eq!(mean([1.0, 2.0, 3.0, 4.0]), Some(2.5));
    }

    use super::*;

    fn facts(desired: i64) -> PoolFacts {
        PoolFacts {
            now_ms: 10_000_000,
            bounds: PoolBounds {
                min: 1,
                max: 10,
                desired,
            },
            capacity_per_instance: 10.0,
            safety_lock: false,
            last_scaled_at_ms: Some(9_000_000),
            last_scale_up_at_ms: None,
            last_scale_down_at_ms: None,
        }
    }

    fn series(points: &[(i64, f64)]) -> Vec<Sample> {
        points
            .iter()
            .map(|&(ts_ms, value)| Sample { ts_ms, value })
            .collect()
    }

    #[test]
    fn queue_and_sla_are_derived_from_their_metrics() {
        let now = 10_000_000;
        let mut metrics = BTreeMap::new();
        metrics.insert(
            "queue_depth".into(),
            series(&[(now - 5_000, 40.0), (now - 1_000, 120.0)]),
        );
        // Only the last minute's throughput counts: (30 + 50) / 2 over 4 instances.
        metrics.insert(
            "throughput".into(),
            series(&[
                (now - 120_000, 1_000.0),
                (now - 50_000, 30.0),
                (now - 10_000, 50.0),
            ]),
        );
        metrics.insert(
            "latency_ms".into(),
            series(&[(now - 400_000, 900.0), (now - 100, 200.0)]),
        );
        let o = observation(
            &facts(4),
            Scrape {
                metrics,
                ..Scrape::default()
            },
        );
        assert_eq!(
            o.queue,
            Some(QueueObservation {
                backlog: 120.0,
                throughput_per_instance: Some(10.0),
                observed_at_ms: now - 1_000,
            })
        );
        assert_eq!(
            o.sla,
            Some(SlaObservation {
                response_time_ms: Some(200.0),
                availability_percent: None,
                error_rate: None,
            })
        );
        assert_eq!(o.last_scaled_at_ms, Some(9_000_000));
        assert_eq!(o.capacity_per_instance, 10.0);
    }

    #[test]
    fn a_measured_queue_wins_and_no_capacity_means_no_share() {
        let now = 10_000_000;
        let mut metrics = BTreeMap::new();
        metrics.insert("queue_depth".into(), series(&[(now, 7.0)]));
        metrics.insert("throughput".into(), series(&[(now, 70.0)]));
        let o = observation(
            &facts(0),
            Scrape {
                metrics: metrics.clone(),
                ..Scrape::default()
            },
        );
        assert_eq!(o.queue.unwrap().throughput_per_instance, None);
        let measured = QueueObservation {
            backlog: 3.0,
            throughput_per_instance: Some(2.5),
            observed_at_ms: now - 10,
        };
        let o = observation(
            &facts(2),
            Scrape {
                metrics,
                queue: Some(measured),
                ..Scrape::default()
            },
        );
        assert_eq!(o.queue, Some(measured));
        assert_eq!(o.sla, None);
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn availability_is_fed_from_its_metric_over_the_sla_window() {
        let now = 10_000_000;
        // (samples as (age ms, value)) → the availability observed.
        let cases: &[(&[(i64, f64)], Option<f64>)] = &[
            (&[], None),
            (&[(1_000, 99.0), (2_000, 97.0)], Some(98.0)),
            (&[(SLA_WINDOW_MS + 1, 10.0), (5, 99.5)], Some(99.5)),
            (&[(SLA_WINDOW_MS + 1, 10.0)], None),
        ];
        for (points, want) in cases {
            let mut metrics = BTreeMap::new();
            if !points.is_empty() {
                let mut v: Vec<(i64, f64)> =
                    points.iter().map(|&(age, x)| (now - age, x)).collect();
                v.sort_by_key(|p| p.0);
                metrics.insert(AVAILABILITY_METRIC.to_string(), series(&v));
            }
            let o = observation(
                &facts(2),
                Scrape {
                    metrics,
                    ..Scrape::default()
                },
            );
            assert_eq!(
                o.sla.and_then(|s| s.availability_percent),
                *want,
                "{points:?}"
            );
        }
    }

    #[test]
    fn instances_are_the_pods_heard_from_and_their_newest_samples() {
        let now = 10_000_000;
        let r = |instance: &str, metric: &str, age: i64, value: f64| InstanceReading {
            instance: instance.into(),
            metric: metric.into(),
            ts_ms: now - age,
            value,
        };
        let readings = [
            r("gone", "cpu", INSTANCE_LOOKBACK_MS, 0.9),
            r("i1", "cpu", 60_000, 0.2),
            r("i2", "cpu", 50_000, 0.4),
            r("i1", "cpu", 30_000, 0.5),
            r("i1", "custom.jobs", 30_000, 3.0),
            r("future", "cpu", -1, 0.5),
        ];
        let (pods, metrics) = instances_of(&readings, now);
        let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["i1", "i2"],
            "an instance silent for the lookback is gone"
        );
        assert_eq!(pods[0].start_time_ms, Some(now - 60_000));
        let cpu: Vec<(String, i64)> = metrics["cpu"]
            .iter()
            .map(|m| (m.pod.clone(), m.value_milli))
            .collect();
        assert_eq!(cpu, [("i1".to_string(), 500), ("i2".to_string(), 400)]);
        assert_eq!(metrics["custom.jobs"][0].value_milli, 3000);
        assert_eq!(instances_of(&[], now), (Vec::new(), BTreeMap::new()));
    }

    #[test]
    fn window_stats_keep_the_window_only() {
        let s = series(&[(1, 100.0), (5, 2.0), (9, 4.0)]);
        assert_eq!(
            window_stats(&s, 1),
            Some(WindowStats {
                mean: 3.0,
                count: 2,
                newest_ts_ms: 9
            })
        );
        assert_eq!(window_stats(&s, 9), None);
    }

    #[test]
    fn history_series_places_buckets_on_their_intervals() {
        let iv = 100;
        let b = [(200, 2.0), (400, 4.0)];
        let s = history_series(&b, 150, 560, iv, false).unwrap();
        assert_eq!((s.start_ms, s.interval_ms), (200, 100));
        assert_eq!(s.values, vec![Some(2.0), None, Some(4.0)]);
        let s = history_series(&b, 50, 560, iv, true).unwrap();
        assert_eq!(s.start_ms, 0);
        assert_eq!(s.values, vec![None, None, Some(2.0), None, Some(4.0)]);
        assert_eq!(history_series(&[], 0, 560, iv, false), None);
        assert_eq!(
            history_series(&[], 0, 300, iv, true).unwrap().values,
            vec![None; 3]
        );
    }
}
