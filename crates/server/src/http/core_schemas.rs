//! OpenAPI schemas of the core's wire types that the API takes as they are
//! (the core depends on no OpenAPI crate): a new pool, a pool patch, a raw
//! threshold policy and a pool's combined policies.
//!
//! They document only: the core parses these bodies itself, so its messages
//! stay its own. The tests keep each schema's fields equal to the fields
//! the core accepts.

use serde_json::Value;
use utoipa::ToSchema;

/// The body of `POST /pools`. Missing fields take the seed defaults (min 1,
/// max 10, desired 1, metric `throughput`, mode `recommend`).
#[derive(ToSchema)]
#[schema(as = NewPool)]
#[allow(dead_code)] // documentation only: fleetscale_core::NewPool parses it
pub struct NewPoolSchema {
    /// Owning tenant's id.
    tenant_id: String,
    /// Region name (must exist).
    region: String,
    /// Agent type served by the pool.
    agent_type: String,
    /// Lower capacity bound (instances); 0 allows scale to zero.
    min_capacity: Option<i64>,
    /// Upper capacity bound (instances).
    max_capacity: Option<i64>,
    /// Current desired capacity (instances).
    desired_capacity: Option<i64>,
    /// Work one instance handles, in the pool metric's units.
    capacity_per_instance: Option<f64>,
    /// Name of the metric whose window mean measures load.
    metric: Option<String>,
    /// `autonomous`, `recommend` (the default) or `frozen`.
    mode: Option<String>,
    /// The job kind served (`posting`, `orchestration`, `creative`, `intel`)
    /// for the region's pressure; by default the agent type when it is one.
    job_kind: Option<String>,
    /// Threshold policy settings.
    scaling_policy: Option<RawThresholdPolicySchema>,
}

/// The body of `PATCH /pools/{id}`: any subset of the mutable fields.
#[derive(ToSchema)]
#[schema(as = PoolPatch)]
#[allow(dead_code)] // documentation only: fleetscale_core::PoolPatch parses it
pub struct PoolPatchSchema {
    /// New lower bound.
    min_capacity: Option<i64>,
    /// New upper bound.
    max_capacity: Option<i64>,
    /// New desired capacity (it must fit the bounds).
    desired_capacity: Option<i64>,
    /// New capacity per instance.
    capacity_per_instance: Option<f64>,
    /// New metric name.
    metric: Option<String>,
    /// New mode: `autonomous`, `recommend` or `frozen`.
    mode: Option<String>,
    /// New job kind: `posting`, `orchestration`, `creative` or `intel`.
    job_kind: Option<String>,
    /// New threshold policy (replaces the old one; missing fields take defaults).
    scaling_policy: Option<RawThresholdPolicySchema>,
}

/// The threshold policy as sent; missing fields take the seed defaults
/// (80 / 30, cooldown 300 s, increment 1, window 300 s).
#[derive(ToSchema)]
#[schema(as = RawThresholdPolicy)]
#[allow(dead_code)] // documentation only: fleetscale_core::policy::RawThresholdPolicy parses it
pub struct RawThresholdPolicySchema {
    /// Scale up when utilization (percent) is above this.
    scale_up_threshold: Option<f64>,
    /// Scale down when utilization (percent) is below this.
    scale_down_threshold: Option<f64>,
    /// Minimum seconds between two scaling actions of the pool.
    cooldown_seconds: Option<i64>,
    /// Instances added or removed by one action.
    increment: Option<i64>,
    /// Seconds of metric history whose mean is the load.
    window_seconds: Option<i64>,
}

/// A pool's combined policies and how the engine combines them; each
/// policy is an object whose `type` names it (`threshold`,
/// `target_tracking`, `queue`, `schedule`, `predictive`, `triggers`).
#[derive(ToSchema)]
#[schema(as = PoolPolicies)]
#[allow(dead_code)] // documentation only: fleetscale_core::decision::PoolPolicies parses and shows it
pub struct PoolPoliciesSchema {
    /// The policies, 1..=20, each `{"type": ..., settings...}`.
    #[schema(value_type = Vec<Object>)]
    policies: Vec<Value>,
    /// Performance targets (`max_response_time_ms`, ...), optional.
    #[schema(value_type = Option<Object>)]
    performance_targets: Option<Value>,
    /// Urgency above which a predicted spike overrides the current-load action (default 0.8).
    spike_urgency_threshold: Option<f64>,
    /// SLA margin a scale-in needs (default 0.2).
    scale_in_sla_margin: Option<f64>,
}

/// A pool's mode (`fleetscale_core::Mode`).
#[derive(ToSchema)]
#[schema(as = PoolMode)]
#[allow(dead_code, non_camel_case_types)] // documentation only
pub enum PoolModeSchema {
    /// Decisions are applied and actuated.
    autonomous,
    /// Decisions become proposals an operator approves or rejects.
    recommend,
    /// Nothing changes.
    frozen,
}

/// What caused a scaling event (`fleetscale_core::TriggerSource`).
#[derive(ToSchema)]
#[schema(as = TriggerSource)]
#[allow(dead_code, non_camel_case_types)] // documentation only
pub enum TriggerSourceSchema {
    /// The control loop on current load.
    autoscaler,
    /// A predicted spike.
    predictive,
    /// A schedule's floor or target.
    schedule,
    /// An operator's `POST /scale`.
    manual,
    /// A cross-region rebalance.
    rebalance,
    /// An approved proposal.
    recommendation,
}

/// Where a scaling event's delivery is (`fleetscale_core::ActuationStatus`).
#[derive(ToSchema)]
#[schema(as = ActuationStatus)]
#[allow(dead_code, non_camel_case_types)] // documentation only
pub enum ActuationStatusSchema {
    /// No actuator: nothing to deliver.
    none,
    /// Waiting to be delivered.
    pending,
    /// Delivered.
    delivered,
    /// The last delivery series failed; retried next tick.
    failed,
    /// A newer event replaced it before delivery.
    superseded,
}

/// Where a proposal is (`fleetscale_core::ProposalStatus`).
#[derive(ToSchema)]
#[schema(as = ProposalStatus)]
#[allow(dead_code, non_camel_case_types)] // documentation only
pub enum ProposalStatusSchema {
    /// Waiting for an operator.
    pending,
    /// Approved and applied.
    approved,
    /// Rejected.
    rejected,
    /// Replaced or withdrawn.
    superseded,
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetscale_core::decision::PoolPolicies;
    use fleetscale_core::policy::RawThresholdPolicy;
    use fleetscale_core::{NewPool, PoolPatch};
    use serde::de::DeserializeOwned;
    use utoipa::PartialSchema;

    /// The property names of schema `S`, sorted.
    fn documented<S: PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(S::schema()).unwrap();
        let mut names: Vec<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The fields `T` accepts, sorted, as serde lists them when it refuses
    /// an unknown one.
    fn accepted<T: DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
        let e = serde_json::from_str::<T>(r#"{"no such field": 0}"#).unwrap_err();
        let msg = e.to_string();
        let list = msg.split("expected one of ").nth(1).unwrap();
        let mut names: Vec<String> = list
            .split(", ")
            .map(|n| n.split('`').nth(1).unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    /// The values of enum schema `S`.
    fn values<S: PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(S::schema()).unwrap();
        schema["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("not an enum: {schema}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn each_state_schema_lists_exactly_the_core_values() {
        use fleetscale_core::{ActuationStatus, Mode, ProposalStatus, TriggerSource};
        let names = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            values::<PoolModeSchema>(),
            names(Mode::ALL.iter().map(|m| m.as_str()).collect())
        );
        assert_eq!(
            values::<TriggerSourceSchema>(),
            names(TriggerSource::ALL.iter().map(|m| m.as_str()).collect())
        );
        assert_eq!(
            values::<ActuationStatusSchema>(),
            names(ActuationStatus::ALL.iter().map(|m| m.as_str()).collect())
        );
        assert_eq!(
            values::<ProposalStatusSchema>(),
            names(ProposalStatus::ALL.iter().map(|m| m.as_str()).collect())
        );
    }

    #[test]
    fn each_schema_names_every_field_the_core_accepts() {
        assert_eq!(documented::<NewPoolSchema>(), accepted::<NewPool>());
        assert_eq!(documented::<PoolPatchSchema>(), accepted::<PoolPatch>());
        assert_eq!(
            documented::<RawThresholdPolicySchema>(),
            accepted::<RawThresholdPolicy>()
        );
        assert_eq!(
            documented::<PoolPoliciesSchema>(),
            accepted::<PoolPolicies>()
        );
    }
}
