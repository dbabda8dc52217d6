//! Capacity assessment of a tenant's pools (phase 93 `assessCapacity`), with
//! per-pool utilization in consistent units.

use serde::{Deserialize, Serialize};

/// Thresholds of the capacity status, in percent utilization.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StatusThresholds {
    /// Below this a pool is `under` (seed: 30).
    pub under_pct: f64,
    /// Above this a pool is `over` (seed: 80).
    pub over_pct: f64,
}

impl Default for StatusThresholds {
    fn default() -> Self {
        StatusThresholds {
            under_pct: 30.0,
            over_pct: 80.0,
        }
    }
}

/// Capacity status of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Utilization below the `under` threshold.
    Under,
    /// Between the thresholds.
    Optimal,
    /// Above the `over` threshold.
    Over,
    /// No metric samples in the window: not counted in the health figure.
    Unknown,
}

/// Classifies a utilization (percent); `None` means no data.
pub fn status(utilization_pct: Option<f64>, t: StatusThresholds) -> Status {
    match utilization_pct {
        None => Status::Unknown,
        Some(u) if u > t.over_pct => Status::Over,
        Some(u) if u < t.under_pct => Status::Under,
        Some(_) => Status::Optimal,
    }
}

/// Overall health: the percentage of measured pools that are optimal; 100
/// when no pool is measured (nothing is known to be wrong).
pub fn overall_health(statuses: &[Status]) -> f64 {
    let measured = statuses.iter().filter(|s| **s != Status::Unknown).count();
    if measured == 0 {
        return 100.0;
    }
    let optimal = statuses.iter().filter(|s| **s == Status::Optimal).count();
    optimal as f64 / measured as f64 * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_boundaries() {
        let t = StatusThresholds::default();
        assert_eq!(status(Some(80.0), t), Status::Optimal);
        assert_eq!(status(Some(80.01), t), Status::Over);
        assert_eq!(status(Some(30.0), t), Status::Optimal);
        assert_eq!(status(Some(29.99), t), Status::Under);
        assert_eq!(status(None, t), Status::Unknown);
    }

    #[test]
    fn health_counts_measured_pools_only() {
        use Status::*;
        assert_eq!(overall_health(&[]), 100.0);
        assert_eq!(overall_health(&[Unknown]), 100.0);
        assert!((overall_health(&[Optimal, Over, Unknown, Under]) - 100.0 / 3.0).abs() < 1e-9);
    }
}
