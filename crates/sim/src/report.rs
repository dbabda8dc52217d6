//! Results of a simulation: per policy figures, the latency histogram
//! behind the percentiles, and the timelines the plot draws.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::frontier::{EqualAttainment, FrontierPoint};

/// Highest latency the histogram tells apart, µs (100 h); longer ones count
/// as this.
const MAX_US: u64 = 100 * 3600 * 1_000_000;
/// Significant decimal digits kept (0.1% resolution).
const SIGFIG: u8 = 3;

/// A latency histogram (µs) over `hdrhistogram`: fixed bounds (1 µs to
/// 100 h, 3 significant digits), so its size is constant.
#[derive(Debug, Clone)]
pub struct Hist(hdrhistogram::Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Hist(
            hdrhistogram::Histogram::new_with_bounds(1, MAX_US, SIGFIG)
                .expect("constant bounds are valid"),
        )
    }
}

impl Hist {
    /// Adds one latency, µs (negative counts as 0, beyond 100 h as 100 h).
    pub fn add(&mut self, us: i64) {
        self.0.saturating_record(us.max(0) as u64);
    }

    /// The `q` quantile (µs, the middle of its bucket; 0 when empty).
    pub fn quantile(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0
            .median_equivalent(self.0.value_at_quantile(q.clamp(0.0, 1.0))) as f64
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
    fn histogram_quantiles_within_a_tenth_of_a_percent() {
        let mut h = Hist::default();
        for ms in 1..=1000 {
            h.add(ms * 1000);
        }
        for (q, want) in [(0.5, 500_000.0), (0.95, 950_000.0), (0.99, 990_000.0)] {
            let got = h.quantile(q);
            assert!((got / want - 1.0).abs() < 0.001, "q{q}: {got}");
        }
        assert_eq!(Hist::default().quantile(0.5), 0.0);
    }

    #[test]
    fn histogram_clamps_latencies_beyond_its_bounds() {
        let mut h = Hist::default();
        h.add(-5);
        h.add(i64::MAX);
        assert_eq!(h.quantile(0.0), 0.0);
        let top = h.quantile(1.0);
        assert!((top / MAX_US as f64 - 1.0).abs() < 0.001, "{top}");
    }
}
