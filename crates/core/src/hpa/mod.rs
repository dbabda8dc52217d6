//! Kubernetes HPA-compatible replica calculation (target tracking): the
//! per-metric replica calculator, `spec.behavior` stabilization and rate
//! limits, the legacy (behavior-less) normalization, and the conformance-vector
//! adapter that replays `shared/conformance/hpa/*.json`.
//!
//! Everything is a pure function over plain data. Time is an argument
//! (`now_ms`, Unix milliseconds); controller memory (past recommendations and
//! scale events) is a value ([`HpaState`]) the caller owns and persists.
//!
//! Fidelity notes:
//! * A record whose age equals a window or period is *outside* it: a
//!   timestamp `ts` counts for a window of `W` seconds iff
//!   `ts > now_ms - W * 1000`, and is outdated iff `ts <= now_ms - W * 1000`.
//!   This is what the Go code does on a real clock (time always advances
//!   between recording and evaluating), made deterministic.
//! * Integer sums over metric values use 128-bit arithmetic and then saturate,
//!   where Go would wrap silently on `int64` overflow. Float-to-int conversions
//!   saturate (NaN becomes 0) where Go's result is platform-defined.

use serde::{Deserialize, Serialize};

mod behavior;
mod calculator;
mod legacy;
mod pods;
mod vectors;

pub use behavior::*;
pub use calculator::*;
pub use legacy::*;
pub use pods::*;
pub use vectors::*;

/// Default tolerance (`--horizontal-pod-autoscaler-tolerance`), both directions.
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// Default downscale stabilization window in seconds
/// (`--horizontal-pod-autoscaler-downscale-stabilization`).
pub const DEFAULT_DOWNSCALE_STABILIZATION_S: i32 = 300;
/// Default CPU initialization period in seconds
/// (`--horizontal-pod-autoscaler-cpu-initialization-period`, 5 minutes).
pub const DEFAULT_CPU_INITIALIZATION_PERIOD_S: i64 = 300;
/// Default initial readiness delay in seconds
/// (`--horizontal-pod-autoscaler-initial-readiness-delay`).
pub const DEFAULT_INITIAL_READINESS_DELAY_S: i64 = 30;
/// Go's zero `time.Time` (0001-01-01T00:00:00Z) as Unix milliseconds.
pub const GO_ZERO_TIME_UNIX_MS: i64 = -62_135_596_800_000;
/// The instant the conformance-vector adapter uses as "now" (Unix ms). Any
/// value far from [`GO_ZERO_TIME_UNIX_MS`] gives the same results.
pub const VECTOR_NOW_MS: i64 = 1_700_000_000_000;
/// Legacy scale-up limit factor (`scaleUpLimitFactor`).
pub const LEGACY_SCALE_UP_LIMIT_FACTOR: f64 = 2.0;
/// Legacy scale-up limit minimum (`scaleUpLimitMinimum`).
pub const LEGACY_SCALE_UP_LIMIT_MINIMUM: f64 = 4.0;

// ------------------------------------------------------------------ errors

/// Why a replica count could not be computed. Messages follow the Go
/// controller's wording so that substring checks against it work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpaError {
    /// The resource metrics API returned no samples at all.
    #[error("unable to get metrics for resource {resource}: no metrics returned from resource metrics API")]
    NoMetrics {
        /// The resource that was queried.
        resource: String,
    },
    /// The selector matched no pods.
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    /// Every sample belonged to an ignored or unready pod.
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoUsableMetrics,
    /// A listed pod has no request for the resource.
    #[error("missing request for {resource} in Pod {pod}")]
    MissingRequest {
        /// The resource.
        resource: String,
        /// The pod name.
        pod: String,
    },
    /// No sample belongs to a pod with a request.
    #[error("no metrics returned matched known pods")]
    NoMatchingMetrics,
    /// The target is not positive (the Kubernetes API rejects such specs).
    #[error("invalid target {0}: must be positive")]
    InvalidTarget(i64),
    /// No metric gave a proposal, or some failed while the rest would scale down.
    #[error("invalid metrics ({invalid} invalid out of {total}), first error is: {first}")]
    InvalidMetrics {
        /// Metrics that failed.
        invalid: usize,
        /// Metrics in the spec.
        total: usize,
        /// The first failure, rendered.
        first: String,
    },
    /// No metric specs were given.
    #[error("no metrics specified")]
    NoMetricSpecs,
}

// ------------------------------------------------------------------ helpers

fn ceil_to_i32(x: f64) -> i32 {
    // `as` saturates and maps NaN to 0.
    x.ceil() as i32
}

fn clamp_i128_to_i64(x: i128) -> i64 {
    x.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn clamp_i64_to_i32(x: i64) -> i32 {
    x.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// True when a record at `ts_ms` lies inside a window of `window_s` seconds
/// ending at `now_ms` (`age < window`).
pub fn within_window(ts_ms: i64, window_s: i64, now_ms: i64) -> bool {
    ts_ms > now_ms.saturating_sub(window_s.saturating_mul(1000))
}

// ------------------------------------------------------------------ tolerances

/// Scale-down and scale-up tolerances, as fractions of the target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerances {
    /// A ratio at or above `1 - scale_down` does not scale down.
    pub scale_down: f64,
    /// A ratio at or below `1 + scale_up` does not scale up.
    pub scale_up: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances::uniform(DEFAULT_TOLERANCE)
    }
}

impl Tolerances {
    /// The same tolerance in both directions.
    pub fn uniform(t: f64) -> Self {
        Tolerances {
            scale_down: t,
            scale_up: t,
        }
    }

    /// `1 - scale_down <= ratio <= 1 + scale_up`, evaluated in f64 as Go does.
    /// NaN is never within tolerance.
    pub fn is_within(&self, ratio: f64) -> bool {
        (1.0 - self.scale_down) <= ratio && ratio <= (1.0 + self.scale_up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_boundaries_are_inclusive() {
        let t = Tolerances::uniform(0.1);
        assert!(t.is_within(1.0));
        assert!(t.is_within(0.9));
        assert!(!t.is_within(0.89));
        assert!(!t.is_within(f64::NAN));
        let split = Tolerances {
            scale_down: 0.36,
            scale_up: 0.08,
        };
        assert!(split.is_within(0.64) && split.is_within(1.08) && !split.is_within(1.09));
    }
}
