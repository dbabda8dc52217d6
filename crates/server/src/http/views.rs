//! The store's records as the API shows them, with their OpenAPI schemas:
//! tenants, regions, tokens, pools, scaling events, proposals, audit
//! entries, and one page type per list.
//!
//! The store and the core do not know the OpenAPI document, so each view
//! here mirrors its record field by field: `From` destructures the record
//! whole (a field added to it does not compile until the view shows it),
//! and the tests check that a view serializes exactly as its record.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use fleetscale_core::decision::PoolPolicies;
use fleetscale_core::metric_source::{MetricSource, MetricsError};
use fleetscale_core::{ActuationStatus, Mode, ProposalStatus, ThresholdPolicy, TriggerSource};
use fleetscale_store::{
    rfc3339, Actuation, AuditEntry, Listed, Pool, Proposal, Region, ScalingEvent, Tenant, TokenInfo,
};

use super::core_schemas::{
    ActuationStatusSchema, PoolModeSchema, PoolPoliciesSchema, ProposalStatusSchema,
    TriggerSourceSchema,
};

/// An RFC 3339 UTC timestamp, as every record shows its Unix milliseconds.
fn ts(ms: i64) -> String {
    rfc3339(ms)
}

/// A page of a list: the items and the cursor of the next page.
macro_rules! page {
    ($(#[$doc:meta])* $page:ident of $view:ident from $record:ty) => {
        $(#[$doc])*
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $page {
            /// The items of this page.
            pub items: Vec<$view>,
            /// `next_cursor` of the next page (pass it as `cursor`), `null` at the end.
            pub next_cursor: Option<String>,
        }

        impl From<Listed<$record>> for $page {
            fn from(l: Listed<$record>) -> Self {
                $page {
                    items: l.items.into_iter().map(<$view>::from).collect(),
                    next_cursor: l.next_cursor,
                }
            }
        }
    };
}
pub(crate) use page;

/// A tenant (organization).
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    /// Id (UUIDv7).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        let Tenant {
            id,
            name,
            created_at_ms,
        } = t;
        TenantView {
            id,
            name,
            created_at: ts(created_at_ms),
        }
    }
}

page!(/// A page of tenants.
    TenantPage of TenantView from Tenant);

/// A region.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegionView {
    /// Id (UUIDv7).
    pub id: String,
    /// Unique name, e.g. `eu-west`.
    pub name: String,
    /// Jurisdiction, e.g. `eu`.
    pub jurisdiction: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

impl From<Region> for RegionView {
    fn from(r: Region) -> Self {
        let Region {
            id,
            name,
            jurisdiction,
            created_at_ms,
        } = r;
        RegionView {
            id,
            name,
            jurisdiction,
            created_at: ts(created_at_ms),
        }
    }
}

page!(/// A page of regions.
    RegionPage of RegionView from Region);

/// A stored API token as listed: never the token or its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// Token id.
    pub id: String,
    /// Tenant the token is scoped to; `null` for a global admin.
    pub tenant_id: Option<String>,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Human name, used as the audit actor.
    pub name: String,
    /// When it was issued (RFC 3339).
    pub created_at: String,
}

impl From<TokenInfo> for TokenView {
    fn from(t: TokenInfo) -> Self {
        let TokenInfo {
            id,
            tenant_id,
            role,
            name,
            created_at_ms,
        } = t;
        TokenView {
            id,
            tenant_id,
            role,
            name,
            created_at: ts(created_at_ms),
        }
    }
}

page!(/// A page of tokens.
    TokenPage of TokenView from TokenInfo);

/// A pool's threshold policy, validated.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThresholdPolicyView {
    /// Scale up above this utilization, percent, in `(scale_down_threshold, 100]`.
    pub scale_up_threshold: f64,
    /// Scale down below this utilization, percent, in `[0, scale_up_threshold)`.
    pub scale_down_threshold: f64,
    /// Seconds between scaling actions, `0..=604800`.
    pub cooldown_seconds: i64,
    /// Instances per action, `1..=1000000`.
    pub increment: i64,
    /// Evaluation window in seconds, `1..=86400`.
    pub window_seconds: i64,
}

impl From<ThresholdPolicy> for ThresholdPolicyView {
    fn from(p: ThresholdPolicy) -> Self {
        let ThresholdPolicy {
            scale_up_threshold,
            scale_down_threshold,
            cooldown_seconds,
            increment,
            window_seconds,
        } = p;
        ThresholdPolicyView {
            scale_up_threshold,
            scale_down_threshold,
            cooldown_seconds,
            increment,
            window_seconds,
        }
    }
}

/// An agent pool.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolView {
    /// Id (UUIDv7).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Region name.
    pub region: String,
    /// Agent type.
    pub agent_type: String,
    /// Lower bound.
    pub min_capacity: i64,
    /// Upper bound.
    pub max_capacity: i64,
    /// Desired capacity.
    pub desired_capacity: i64,
    /// Work per instance in metric units.
    pub capacity_per_instance: f64,
    /// Load metric.
    pub metric: String,
    /// How the control loop treats the pool.
    #[schema(value_type = PoolModeSchema)]
    pub mode: Mode,
    /// The job kind the pool serves for its region's pressure (`posting`,
    /// `orchestration`, `creative`, `intel`) when set; `null` takes its agent
    /// type when that is one of them.
    pub job_kind: Option<String>,
    /// Threshold policy.
    pub scaling_policy: ThresholdPolicyView,
    /// Set by an admin: the autoscaler may not change the pool.
    pub safety_lock: bool,
    /// Last size change (RFC 3339), `null` if never.
    pub last_scaled_at: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last update (RFC 3339).
    pub updated_at: String,
    /// Combined policies; `null` runs `scaling_policy` alone.
    #[schema(value_type = Option<PoolPoliciesSchema>)]
    pub policies: Option<PoolPolicies>,
    /// Where the engine pulls the load from each tick; `null`: pushed
    /// samples only.
    pub metric_source: Option<MetricSourceView>,
    /// The metric source's failure, kept until a query succeeds again;
    /// `null` when it answers (or there is none). While it fails the pool
    /// is held (fail static: no scale-in).
    pub metrics_error: Option<MetricsErrorView>,
    /// True when the leader's last tick found the pool's metrics stale,
    /// missing or erroring (fail static then holds any scale-in), or its
    /// source is failing.
    pub metrics_stale: bool,
    /// The Kubernetes workload the `kubernetes` actuator scales; `null`
    /// when none is set.
    #[schema(value_type = Option<super::core_schemas::WorkloadTargetSchema>)]
    pub target: Option<fleetscale_core::workload::WorkloadTarget>,
}

/// A pool's metric source: a PromQL query evaluated each tick.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricSourceView {
    /// The kind: `prometheus`.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: String,
    /// The Prometheus base URL; `null` uses the server's `--prometheus-url`.
    pub url: Option<String>,
    /// The PromQL expression (instant query).
    pub query: String,
    /// The metric the value is stored as; `null` is the pool's `metric`.
    pub metric: Option<String>,
}

impl From<MetricSource> for MetricSourceView {
    fn from(m: MetricSource) -> Self {
        MetricSourceView {
            kind: m.kind,
            url: m.url,
            query: m.query,
            metric: m.metric,
        }
    }
}

/// A failing metric source.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsErrorView {
    /// What the last failure said.
    pub message: String,
    /// When the source started failing (RFC 3339).
    pub since: String,
    /// Failed queries in a row.
    pub consecutive_failures: i64,
}

impl From<MetricsError> for MetricsErrorView {
    fn from(e: MetricsError) -> Self {
        MetricsErrorView {
            message: e.message,
            since: ts(e.since_ms),
            consecutive_failures: e.consecutive_failures,
        }
    }
}

impl From<Pool> for PoolView {
    fn from(p: Pool) -> Self {
        let Pool {
            id,
            tenant_id,
            region,
            agent_type,
            min_capacity,
            max_capacity,
            desired_capacity,
            capacity_per_instance,
            metric,
            mode,
            job_kind,
            scaling_policy,
            safety_lock,
            last_scaled_at_ms,
            created_at_ms,
            updated_at_ms,
            policies,
            metric_source,
            metrics_error,
            target,
        } = p;
        PoolView {
            id,
            tenant_id,
            region,
            agent_type,
            min_capacity,
            max_capacity,
            desired_capacity,
            capacity_per_instance,
            metric,
            mode,
            job_kind: job_kind.map(|k| k.as_str().to_string()),
            scaling_policy: scaling_policy.into(),
            safety_lock,
            last_scaled_at: last_scaled_at_ms.map(ts),
            created_at: ts(created_at_ms),
            updated_at: ts(updated_at_ms),
            policies,
            metric_source: metric_source.map(Into::into),
            metrics_stale: metrics_error.is_some(),
            metrics_error: metrics_error.map(Into::into),
            target,
        }
    }
}

page!(/// A page of pools.
    PoolPage of PoolView from Pool);

/// Delivery state of a scaling event to the actuator.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActuationView {
    /// Where the delivery is (`failed` is retried).
    #[schema(value_type = ActuationStatusSchema)]
    pub status: ActuationStatus,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// Last error, if any.
    pub error: Option<String>,
    /// When it was delivered (RFC 3339).
    pub actuated_at: Option<String>,
}

impl From<Actuation> for ActuationView {
    fn from(a: Actuation) -> Self {
        let Actuation {
            status,
            attempts,
            error,
            actuated_at_ms,
        } = a;
        ActuationView {
            status,
            attempts,
            error,
            actuated_at: actuated_at_ms.map(ts),
        }
    }
}

/// A recorded change of a pool's desired capacity.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// Id (UUIDv7); also the actuation idempotency key.
    pub id: String,
    /// Pool changed.
    pub pool_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Region of the pool.
    pub region: String,
    /// Agent type of the pool.
    pub agent_type: String,
    /// Capacity before.
    pub previous_capacity: i64,
    /// Capacity after.
    pub new_capacity: i64,
    /// Why.
    pub reason: String,
    /// What caused it.
    #[schema(value_type = TriggerSourceSchema)]
    pub trigger_source: TriggerSource,
    /// Decision inputs, bounds, actor: open-ended, by trigger source.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Actuation outcome.
    pub actuation: ActuationView,
    /// When it happened (RFC 3339).
    pub created_at: String,
}

impl From<ScalingEvent> for EventView {
    fn from(e: ScalingEvent) -> Self {
        let ScalingEvent {
            id,
            pool_id,
            tenant_id,
            region,
            agent_type,
            previous_capacity,
            new_capacity,
            reason,
            trigger_source,
            metadata,
            actuation,
            created_at_ms,
        } = e;
        EventView {
            id,
            pool_id,
            tenant_id,
            region,
            agent_type,
            previous_capacity,
            new_capacity,
            reason,
            trigger_source,
            metadata,
            actuation: actuation.into(),
            created_at: ts(created_at_ms),
        }
    }
}

page!(/// A page of scaling events.
    EventPage of EventView from ScalingEvent);

/// A proposed change awaiting an operator (pools in `recommend` mode).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProposalView {
    /// Id (UUIDv7).
    pub id: String,
    /// Pool concerned.
    pub pool_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Capacity when proposed.
    pub current_capacity: i64,
    /// Proposed capacity.
    pub target_capacity: i64,
    /// Why.
    pub reason: String,
    /// The full decision behind it, as the policy made it.
    #[schema(value_type = Object)]
    pub decision: Value,
    /// Where the proposal is.
    #[schema(value_type = ProposalStatusSchema)]
    pub status: ProposalStatus,
    /// Who settled it.
    pub decided_by: Option<String>,
    /// Operator note.
    pub note: Option<String>,
    /// Scaling event created on approval.
    pub event_id: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last refresh of a pending proposal (RFC 3339).
    pub updated_at: String,
    /// When settled (RFC 3339).
    pub decided_at: Option<String>,
}

impl From<Proposal> for ProposalView {
    fn from(p: Proposal) -> Self {
        let Proposal {
            id,
            pool_id,
            tenant_id,
            current_capacity,
            target_capacity,
            reason,
            decision,
            status,
            decided_by,
            note,
            event_id,
            created_at_ms,
            updated_at_ms,
            decided_at_ms,
        } = p;
        ProposalView {
            id,
            pool_id,
            tenant_id,
            current_capacity,
            target_capacity,
            reason,
            decision,
            status,
            decided_by,
            note,
            event_id,
            created_at: ts(created_at_ms),
            updated_at: ts(updated_at_ms),
            decided_at: decided_at_ms.map(ts),
        }
    }
}

page!(/// A page of proposals.
    ProposalPage of ProposalView from Proposal);

/// One audited mutation.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    /// Id (UUIDv7).
    pub id: String,
    /// Who did it (token name, `engine`, ...).
    pub actor: String,
    /// What, e.g. `pool.create`.
    pub action: String,
    /// Tenant concerned, if any.
    pub tenant_id: Option<String>,
    /// Kind of object.
    pub object_type: String,
    /// Its id.
    pub object_id: String,
    /// Details: open-ended, by action.
    #[schema(value_type = Object)]
    pub detail: Value,
    /// When (RFC 3339).
    pub created_at: String,
}

impl From<AuditEntry> for AuditView {
    fn from(a: AuditEntry) -> Self {
        let AuditEntry {
            id,
            actor,
            action,
            tenant_id,
            object_type,
            object_id,
            detail,
            created_at_ms,
        } = a;
        AuditView {
            id,
            actor,
            action,
            tenant_id,
            object_type,
            object_id,
            detail,
            created_at: ts(created_at_ms),
        }
    }
}

page!(/// A page of audit entries.
    AuditPage of AuditView from AuditEntry);

/// A golden-file check of views: the JSON of each view is kept in call
/// order, and when the check goes out of scope the list must equal
/// `tests/golden/{name}.json` (the API's answers as they were when the
/// store records were still the HTTP format). `UPDATE_GOLDEN=1` rewrites
/// the file instead.
#[cfg(test)]
pub(crate) struct Golden {
    name: &'static str,
    got: Vec<Value>,
}

#[cfg(test)]
impl Golden {
    /// A check against `tests/golden/{name}.json`.
    pub(crate) fn new(name: &'static str) -> Golden {
        Golden {
            name,
            got: Vec::new(),
        }
    }

    /// Adds the JSON of the view `V` of `record`.
    pub(crate) fn view<R, V: From<R> + Serialize>(&mut self, record: R) {
        self.got
            .push(serde_json::to_value(V::from(record)).unwrap());
    }
}

#[cfg(test)]
impl Drop for Golden {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let path = format!(
            "{}/tests/golden/{}.json",
            env!("CARGO_MANIFEST_DIR"),
            self.name
        );
        let got = Value::Array(std::mem::take(&mut self.got));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
            return;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (UPDATE_GOLDEN=1 writes it)"));
        let want: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(got, want, "the views' JSON differs from {path}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: i64 = 1_764_000_000_123;

    fn pool(last: Option<i64>, policies: Option<PoolPolicies>) -> Pool {
        Pool {
            id: "p".into(),
            tenant_id: "t".into(),
            region: "eu-west".into(),
            agent_type: "writer".into(),
            min_capacity: 1,
            max_capacity: 10,
            desired_capacity: 2,
            capacity_per_instance: 12.5,
            metric: "throughput".into(),
            mode: Mode::Autonomous,
            job_kind: last.map(|_| fleetscale_core::region::state::JobKind::Creative),
            scaling_policy: ThresholdPolicy::default(),
            safety_lock: true,
            last_scaled_at_ms: last,
            created_at_ms: T,
            updated_at_ms: T + 1,
            metric_source: last.map(|_| MetricSource {
                kind: "prometheus".into(),
                url: None,
                query: "sum(agent_load)".into(),
                metric: Some("load".into()),
            }),
            metrics_error: last.map(|at| MetricsError {
                message: "cannot connect".into(),
                since_ms: at,
                consecutive_failures: 3,
            }),
            policies,
            target: last.map(|_| fleetscale_core::workload::WorkloadTarget {
                kind: fleetscale_core::workload::WorkloadKind::Deployment,
                namespace: "agents".into(),
                name: "writer".into(),
            }),
        }
    }

    fn event(error: Option<&str>, actuated: Option<i64>) -> ScalingEvent {
        ScalingEvent {
            id: "e".into(),
            pool_id: "p".into(),
            tenant_id: "t".into(),
            region: "eu-west".into(),
            agent_type: "writer".into(),
            previous_capacity: 2,
            new_capacity: 3,
            reason: "load".into(),
            trigger_source: TriggerSource::Manual,
            metadata: json!({"a": [1, 2]}),
            actuation: Actuation {
                status: ActuationStatus::Failed,
                attempts: 2,
                error: error.map(String::from),
                actuated_at_ms: actuated,
            },
            created_at_ms: T,
        }
    }

    #[test]
    fn views_serialize_as_the_golden_answers() {
        let mut g = Golden::new("views");
        g.view::<_, TenantView>(Tenant {
            id: "t".into(),
            name: "acme".into(),
            created_at_ms: T,
        });
        g.view::<_, RegionView>(Region {
            id: "r".into(),
            name: "eu-west".into(),
            jurisdiction: "eu".into(),
            created_at_ms: T,
        });
        for tenant in [None, Some("t".to_string())] {
            g.view::<_, TokenView>(TokenInfo {
                id: "k".into(),
                tenant_id: tenant,
                role: "viewer".into(),
                name: "ci".into(),
                created_at_ms: T,
            });
        }
        let policies: PoolPolicies = serde_json::from_value(
            json!({"policies": [{"type": "queue", "messages_per_instance": 10}]}),
        )
        .unwrap();
        g.view::<_, PoolView>(pool(None, None));
        g.view::<_, PoolView>(pool(Some(T - 5), Some(policies)));
        g.view::<_, EventView>(event(None, None));
        g.view::<_, EventView>(event(Some("refused"), Some(T + 9)));
        for (by, at) in [(None, None), (Some("ops".to_string()), Some(T + 3))] {
            g.view::<_, ProposalView>(Proposal {
                id: "x".into(),
                pool_id: "p".into(),
                tenant_id: "t".into(),
                current_capacity: 2,
                target_capacity: 4,
                reason: "load".into(),
                decision: json!({"action": "scale_up"}),
                status: ProposalStatus::Pending,
                decided_by: by.clone(),
                note: by.clone(),
                event_id: by,
                created_at_ms: T,
                updated_at_ms: T,
                decided_at_ms: at,
            });
        }
        g.view::<_, AuditView>(AuditEntry {
            id: "a".into(),
            actor: "admin".into(),
            action: "pool.create".into(),
            tenant_id: None,
            object_type: "pool".into(),
            object_id: "p".into(),
            detail: json!({"k": "v"}),
            created_at_ms: T,
        });
        g.view::<_, PoolPage>(Listed {
            items: vec![pool(None, None)],
            next_cursor: Some("c".into()),
        });
        g.view::<_, EventPage>(Listed {
            items: vec![],
            next_cursor: None,
        });
    }
}
