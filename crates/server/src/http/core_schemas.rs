//! OpenAPI schemas of the core's wire types that the API takes as they are
//! (the core depends on no OpenAPI crate): a new pool, a pool patch, a raw
//! threshold policy, a pool's combined policies, and a tenant's region and
//! routing policies.
//!
//! They document only: the core parses these bodies itself, so its messages
//! stay its own. The tests keep each schema's fields equal to the fields
//! the core accepts.

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::ToSchema;

/// The body of `POST /pools`. Missing fields take the defaults (min 1,
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
    /// Threshold policy settings. Giving them asks for the threshold policy
    /// alone; without them the pool gets fleetscale's default policies (the
    /// `slo` policy, its `concurrency_per_instance` the pool's
    /// `capacity_per_instance`, 99 % of requests within 20 s; printed by
    /// `fleetscale policy default`).
    scaling_policy: Option<RawThresholdPolicySchema>,
    /// Where the engine pulls the load from each tick (a PromQL query);
    /// without it the pool reads pushed samples only.
    metric_source: Option<RawMetricSourceSchema>,
    /// The Kubernetes workload the `kubernetes` actuator scales.
    target: Option<WorkloadTargetSchema>,
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
    /// New metric source (replaces the old one); `null` removes it.
    metric_source: Option<RawMetricSourceSchema>,
    /// New Kubernetes workload target; `null` removes it.
    target: Option<WorkloadTargetSchema>,
}

/// A pool's metric source as sent: a PromQL instant query the engine
/// evaluates each tick, its value stored as a sample of `metric`.
#[derive(ToSchema)]
#[schema(as = RawMetricSource)]
#[allow(dead_code)] // documentation only: fleetscale_core::metric_source::RawMetricSource parses it
pub struct RawMetricSourceSchema {
    /// The kind: must be `prometheus`.
    #[schema(rename = "type")]
    kind: String,
    /// The Prometheus base URL (`http://` or `https://`); omitted, the
    /// server's `--prometheus-url` (a 422 when it has none).
    url: Option<String>,
    /// The PromQL expression (1..=4096 bytes): a scalar, or a vector whose
    /// elements are summed; an empty vector is no sample.
    query: String,
    /// The metric the value is stored as; omitted, the pool's `metric`.
    metric: Option<String>,
}

/// The Kubernetes workload a pool scales under `serve --actuator
/// kubernetes` (`fleetscale_core::workload::RawWorkloadTarget`).
#[derive(ToSchema)]
#[schema(as = WorkloadTarget)]
#[allow(dead_code)] // documentation only: the core parses and shows it
pub struct WorkloadTargetSchema {
    /// `Deployment` or `StatefulSet`.
    kind: WorkloadKindSchema,
    /// Namespace: a DNS-1123 label (at most 63 characters).
    namespace: String,
    /// Workload name: a DNS-1123 subdomain (at most 253 characters).
    name: String,
}

/// A workload kind (`fleetscale_core::workload::WorkloadKind`).
#[derive(ToSchema)]
#[schema(as = WorkloadKind)]
#[allow(dead_code)] // documentation only
pub enum WorkloadKindSchema {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
}

/// The threshold policy as sent; missing fields take the defaults
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
/// `target_tracking`, `queue`, `schedule`, `predictive`, `triggers`, `slo`).
#[derive(ToSchema)]
#[schema(as = PoolPolicies)]
#[allow(dead_code)] // documentation only: fleetscale_core::decision::PoolPolicies parses and shows it
pub struct PoolPoliciesSchema {
    /// The policies, 1..=20, each `{"type": ..., settings...}`.
    #[schema(value_type = Vec<Object>)]
    policies: Vec<Value>,
    /// Performance targets (`max_response_time_ms`, `latency_ms` and
    /// `attainment` — the `slo` policy's goal —, ...), optional.
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

/// A tenant's region policy (compliance rules). A region is compliant
/// for a request when its jurisdiction is allowed, equals the residency if
/// one is set, and the workload type is not restricted there. Every field
/// may be omitted (the default allows everything).
#[derive(ToSchema)]
#[schema(as = RegionPolicy)]
#[allow(dead_code)] // documentation only: fleetscale_core::region::compliance::RegionPolicy parses it
pub struct RegionPolicySchema {
    /// Jurisdictions the tenant's work may run in (e.g. `["eu", "us"]`);
    /// `null` for any, never empty.
    allowed_jurisdictions: Option<Vec<String>>,
    /// The one jurisdiction the tenant's data must stay in, if any (one of
    /// `allowed_jurisdictions` when those are given).
    data_residency: Option<String>,
    /// Per region name (must exist), the workload types that must not run there.
    restricted_workloads: Option<BTreeMap<String, Vec<String>>>,
    /// The tenant's home region name for job routing (must exist), if any.
    home_region: Option<String>,
}

/// A tenant's routing policy: an object whose `type` names it. Every
/// policy spills like a waterfall: a region that cannot take the work is
/// skipped for the next, and regions the policy does not name come after
/// those it names, in score order. Region names must exist.
#[derive(Debug, ToSchema, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = RoutingPolicy)]
#[allow(dead_code)] // documentation only: fleetscale_core::region::routing::RoutingPolicy parses it
pub enum RoutingPolicySchema {
    /// Highest score first (the default): `latency_weight × max(0, 100 −
    /// latency_ms ÷ 10) + capacity_weight × 100 × spare ÷ max`, plus
    /// `preferred_bonus` for a preferred region.
    Score {
        /// Weight of the latency score, 0–1 (default 0.6).
        latency_weight: Option<f64>,
        /// Weight of the capacity score, 0–1 (default 0.4).
        capacity_weight: Option<f64>,
        /// Points added for a preferred region, 0–100 (default 10).
        preferred_bonus: Option<f64>,
    },
    /// Lowest EWMA latency first; regions without samples after, in score order.
    Latency,
    /// The list mapped to the client's country (most specific key first),
    /// then the `default` list (required), then the rest in score order.
    Geolocation {
        /// Country code (or `default`) → ordered region names.
        map: BTreeMap<String, Vec<String>>,
    },
    /// A pick with probability `w ÷ Σw` over the eligible named regions,
    /// deterministic by request id; weight 0 only when no other is eligible.
    Weighted {
        /// Region name → weight.
        weights: BTreeMap<String, u32>,
    },
    /// The listed order.
    Failover {
        /// Region names, first choice first.
        order: Vec<String>,
    },
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
        use fleetscale_core::workload::{RawWorkloadTarget, WorkloadKind};
        assert_eq!(
            documented::<WorkloadTargetSchema>(),
            accepted::<RawWorkloadTarget>()
        );
        assert_eq!(
            values::<WorkloadKindSchema>(),
            [WorkloadKind::Deployment, WorkloadKind::StatefulSet].map(|k| k.as_str().to_string())
        );
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
        assert_eq!(
            documented::<RawMetricSourceSchema>(),
            accepted::<fleetscale_core::metric_source::RawMetricSource>()
        );
        assert_eq!(
            documented::<RegionPolicySchema>(),
            accepted::<fleetscale_core::region::compliance::RegionPolicy>()
        );
    }

    /// The fields variant `kind` of a `type`-tagged enum `T` accepts, sorted.
    fn accepted_variant<T: DeserializeOwned + std::fmt::Debug>(kind: &str) -> Vec<String> {
        let body = format!(r#"{{"type": "{kind}", "no such field": 0}}"#);
        let msg = serde_json::from_str::<T>(&body).unwrap_err().to_string();
        // "expected one of `a`, `b`" or, for one field, "expected `a`"
        let list = msg.split("expected ").nth(1).unwrap_or("");
        let list = list.strip_prefix("one of ").unwrap_or(list);
        let mut names: Vec<String> = list
            .split(", ")
            .filter_map(|n| n.split('`').nth(1).map(str::to_string))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_routing_policy_schema_names_every_variant_and_field_the_core_accepts() {
        use fleetscale_core::region::routing::RoutingPolicy;
        let schema = serde_json::to_value(RoutingPolicySchema::schema()).unwrap();
        let variants = schema["oneOf"].as_array().expect("a oneOf per variant");
        let mut kinds = Vec::new();
        for v in variants {
            let kind = v["properties"]["type"]["enum"][0]
                .as_str()
                .unwrap_or_else(|| panic!("no type: {v}"))
                .to_string();
            let mut props: Vec<String> = v["properties"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "type")
                .cloned()
                .collect();
            props.sort();
            if kind != "latency" {
                assert_eq!(props, accepted_variant::<RoutingPolicy>(&kind), "{kind}");
                // the documentation type itself parses the same shape
                assert_eq!(
                    props,
                    accepted_variant::<RoutingPolicySchema>(&kind),
                    "{kind}"
                );
            }
            kinds.push(kind);
        }
        assert_eq!(
            kinds,
            ["score", "latency", "geolocation", "weighted", "failover"]
        );
        for k in &kinds {
            let default_ok = match k.as_str() {
                "score" | "latency" => format!(r#"{{"type": "{k}"}}"#),
                "geolocation" => r#"{"type": "geolocation", "map": {}}"#.into(),
                "weighted" => r#"{"type": "weighted", "weights": {}}"#.into(),
                _ => r#"{"type": "failover", "order": []}"#.into(),
            };
            let core = serde_json::from_str::<RoutingPolicy>(&default_ok).unwrap();
            assert_eq!(core.kind(), k);
        }
        assert!(serde_json::from_str::<RoutingPolicy>(r#"{"type": "random"}"#).is_err());
    }
}
