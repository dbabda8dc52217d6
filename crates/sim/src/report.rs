//! Results of a simulation: per policy figures, the latency histogram
//! behind the percentiles, and the timelines the plot draws.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::frontier::{EqualAttainment, FrontierPoint};

/// Buckets per natural-log unit of the latency histogram (0.5% resolution).
const PER_LN: f64 = 200.0;
/// Histogram size: covers latencies up to `e^(4400/200) µs` (about 100 h).
const BUCKETS: usize = 4400;

/// A log-bucketed latency histogram (µs), constant size.
#[derive(Debug, Clone)]
pub struct Hist {
    counts: Vec<u64>,
    n: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: vec![0; BUCKETS],
            n: 0,
        }
    }
}

impl Hist {
    /// Adds one latency, µs.
    pub fn add(&mut self, us: i64) {
        let b = ((us.max(0) as f64 + 1.0).ln() * PER_LN) as usize;
        self.counts[b.min(BUCKETS - 1)] += 1;
        self.n += 1;
    }

    /// The `q` quantile (µs, the bucket's midpoint; 0 when empty).
    pub fn quantile(&self, q: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return (((b as f64 + 0.5) / PER_LN).exp() - 1.0).max(0.0);
            }
        }
        0.0
    }
}

/// One bucket of a policy's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Start of the bucket, seconds from the origin.
    pub t_s: f64,
    /// Mean ready instances.
    pub capacity: f64,
    /// Mean latency of the requests started in the bucket, ms (NaN: none).
    pub mean_latency_ms: f64,
    /// Requests started in the bucket whose latency missed the SLO.
    #[serde(default)]
    pub missed: u64,
}

/// The figures of one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyResult {
    /// `fleetscale`, `hpa`, `keda`, `step`, `static` or a policy file's name.
    pub policy: String,
    /// Requests that arrived in the horizon.
    pub requests: u64,
    /// Share of requests with latency ≤ the SLO (dropped ones miss it).
    pub slo_attainment: f64,
    /// Median latency, ms.
    pub p50_latency_ms: f64,
    /// 95th percentile latency, ms.
    pub p95_latency_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_latency_ms: f64,
    /// Instance-seconds billed (launch to termination, within the horizon).
    pub instance_seconds: f64,
    /// Instance-seconds of a clairvoyant fleet at 100% utilization.
    pub lower_bound_instance_seconds: f64,
    /// `instance_seconds - lower_bound_instance_seconds`.
    pub overprovision_instance_seconds: f64,
    /// Busy slot-seconds over billed slot-seconds.
    pub mean_utilization: f64,
    /// Changes of the desired capacity.
    pub scaling_actions: u64,
    /// Requests dropped (queue full, or still waiting at the end).
    pub dropped: u64,
    /// Capacity and latency over time.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub timeline: Vec<TimelinePoint>,
}

/// The report of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The trace's name as given by the caller.
    pub trace: String,
    /// `requests` or `rates`.
    pub format: String,
    /// Simulated horizon, seconds.
    pub horizon_s: f64,
    /// SLO, ms.
    pub slo_ms: f64,
    /// Provisioning delay, seconds.
    pub cold_start_s: f64,
    /// Decision interval, seconds.
    pub tick_s: f64,
    /// Seed.
    pub seed: u64,
    /// Slots per instance.
    pub slots_per_instance: u32,
    /// Instances of the static baseline (the peak's need).
    pub peak_instances: i64,
    /// Offered load per timeline bucket, in instances at 100% (work / bucket / slots).
    pub load: Vec<f64>,
    /// Timeline bucket, seconds.
    pub bucket_s: f64,
    /// One entry per policy, in the order asked (each at its default).
    pub results: Vec<PolicyResult>,
    /// `--sweep`: per policy with a knob, one point per knob value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub frontiers: BTreeMap<String, Vec<FrontierPoint>>,
    /// `--sweep`: each baseline's default point against fleetscale's frontier.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub equal_attainment: Vec<EqualAttainment>,
}

impl Report {
    /// The report without timelines (for compact JSON and golden files).
    pub fn without_timelines(&self) -> Report {
        let mut r = self.clone();
        r.load.clear();
        for p in &mut r.results {
            p.timeline.clear();
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_within_half_a_percent() {
        let mut h = Hist::default();
        for ms in 1..=1000 {
            h.add(ms * 1000);
        }
        for (q, want) in [(0.5, 500_000.0), (0.95, 950_000.0), (0.99, 990_000.0)] {
            let got = h.quantile(q);
            assert!((got / want - 1.0).abs() < 0.005, "q{q}: {got}");
        }
        assert_eq!(Hist::default().quantile(0.5), 0.0);
    }
}
