//! fleetscale's default pool policies: the `slo` policy (Erlang-C staffing
//! for a latency goal at an attainment goal, with scale to zero) and its
//! goal, exactly what `fleetscale simulate` measures as "fleetscale". A pool
//! created without a `scaling_policy` gets them; one that gives a
//! `scaling_policy` asks for the threshold policy and runs it alone.
//!
//! The shipped file `fleetscale-default.json` (printed by
//! `fleetscale policy default`) is [`fleetscale_default`] for the defaults
//! below; a test keeps them equal.

use super::spec::{PerformanceTargets, PoolPolicies};
use crate::policies::slo::SloPolicy;
use crate::policies::PolicySpec;

/// The shipped default policies, as JSON (2 requests at once per instance,
/// a 60 s cold start, 99 % of requests within 20 s).
pub const DEFAULT_POLICIES_JSON: &str = include_str!("fleetscale-default.json");

/// Latency goal of the default, ms (the simulator's SLO for request traces).
pub const DEFAULT_LATENCY_MS: f64 = 20_000.0;
/// Attainment goal of the default.
pub const DEFAULT_ATTAINMENT: f64 = 0.99;
/// Cold start the default assumes, seconds.
pub const DEFAULT_COLD_START_SECONDS: f64 = 60.0;

/// fleetscale's default policies for instances serving
/// `concurrency_per_instance` requests at once with a cold start of
/// `cold_start_seconds`, for `attainment` of requests within `latency_ms`:
/// the `slo` policy alone, cost rule off (the policy sizes for cost itself).
#[must_use]
pub fn fleetscale_default(
    concurrency_per_instance: f64,
    cold_start_seconds: f64,
    latency_ms: f64,
    attainment: f64,
) -> PoolPolicies {
    PoolPolicies {
        policies: vec![PolicySpec::Slo(SloPolicy::new(
            concurrency_per_instance,
            cold_start_seconds,
        ))],
        performance_targets: PerformanceTargets {
            cost_optimization_weight: 0.0,
            latency_ms: Some(latency_ms),
            attainment: Some(attainment),
            ..PerformanceTargets::default()
        },
        spike_urgency_threshold: 0.8,
        scale_in_sla_margin: 0.2,
    }
}

/// The default for a new pool whose instances each serve
/// `capacity_per_instance` requests at once (the pool's
/// `capacity_per_instance`, at most the `slo` policy's 10,000), with the
/// default cold start and goal.
#[must_use]
pub fn pool_default(capacity_per_instance: f64) -> PoolPolicies {
    fleetscale_default(
        capacity_per_instance.min(10_000.0),
        DEFAULT_COLD_START_SECONDS,
        DEFAULT_LATENCY_MS,
        DEFAULT_ATTAINMENT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_is_the_default() {
        let shipped: PoolPolicies = serde_json::from_str(DEFAULT_POLICIES_JSON).unwrap();
        assert_eq!(shipped, pool_default(2.0));
        shipped.validate().unwrap();
    }

    #[test]
    fn a_pool_default_is_valid_for_every_capacity_a_pool_may_have() {
        for c in [0.001, 1.0, 2.0, 10.0, 10_000.0, 1e12] {
            pool_default(c).validate().unwrap();
        }
    }
}
