//! The records the store keeps, as domain types: the HTTP shell decides how
//! they are shown (its views), the store only how they are kept.

use fleetscale_core::region::state::JobKind;
use fleetscale_core::{ActuationStatus, Mode, ProposalStatus, ThresholdPolicy, TriggerSource};

/// Renders Unix milliseconds as an RFC 3339 UTC timestamp.
pub fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// A tenant (organization).
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// Id (UUIDv7).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Creation time.
    pub created_at_ms: i64,
}

/// A region.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// Id (UUIDv7).
    pub id: String,
    /// Unique name, e.g. `eu-west`.
    pub name: String,
    /// Jurisdiction, e.g. `eu`.
    pub jurisdiction: String,
    /// Creation time.
    pub created_at_ms: i64,
}

/// An agent pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
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
    pub mode: Mode,
    /// The job kind it serves when set explicitly (else its agent type's).
    pub job_kind: Option<JobKind>,
    /// Threshold policy.
    pub scaling_policy: ThresholdPolicy,
    /// Set by an admin: the autoscaler may not change the pool.
    pub safety_lock: bool,
    /// Last size change.
    pub last_scaled_at_ms: Option<i64>,
    /// Creation time.
    pub created_at_ms: i64,
    /// Last update.
    pub updated_at_ms: i64,
    /// Combined policies; `None` runs `scaling_policy` alone.
    pub policies: Option<fleetscale_core::decision::PoolPolicies>,
    /// Where the engine pulls the load from each tick; `None`: pushed
    /// samples only.
    pub metric_source: Option<fleetscale_core::metric_source::MetricSource>,
    /// The failing source's record, kept by the leader until a query
    /// succeeds again; `None` when the source is fine (or there is none).
    pub metrics_error: Option<fleetscale_core::metric_source::MetricsError>,
    /// The Kubernetes workload the `kubernetes` actuator scales.
    pub target: Option<fleetscale_core::workload::WorkloadTarget>,
}

impl Pool {
    /// The pool as the core's validated type (for patches and decisions).
    pub fn to_valid(&self) -> fleetscale_core::ValidPool {
        fleetscale_core::ValidPool {
            tenant_id: self.tenant_id.clone(),
            region: self.region.clone(),
            agent_type: self.agent_type.clone(),
            bounds: self.bounds(),
            capacity_per_instance: self.capacity_per_instance,
            metric: self.metric.clone(),
            mode: self.mode,
            job_kind: self.job_kind,
            policy: self.scaling_policy,
            metric_source: self.metric_source.clone(),
            target: self.target.clone(),
        }
    }

    /// Bounds and desired capacity.
    pub fn bounds(&self) -> fleetscale_core::PoolBounds {
        fleetscale_core::PoolBounds {
            min: self.min_capacity,
            max: self.max_capacity,
            desired: self.desired_capacity,
        }
    }
}

/// Delivery state of a scaling event to the actuator.
#[derive(Debug, Clone, PartialEq)]
pub struct Actuation {
    /// Where the delivery is.
    pub status: ActuationStatus,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// Last error, if any.
    pub error: Option<String>,
    /// When it was delivered.
    pub actuated_at_ms: Option<i64>,
}

/// A recorded change of a pool's desired capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingEvent {
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
    pub trigger_source: TriggerSource,
    /// Decision inputs, bounds, actor.
    pub metadata: serde_json::Value,
    /// Actuation outcome.
    pub actuation: Actuation,
    /// When it happened.
    pub created_at_ms: i64,
}

/// A proposed change awaiting an operator (pools in `recommend` mode).
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
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
    /// The full decision behind it.
    pub decision: serde_json::Value,
    /// Where the proposal is.
    pub status: ProposalStatus,
    /// Who settled it.
    pub decided_by: Option<String>,
    /// Operator note.
    pub note: Option<String>,
    /// Scaling event created on approval.
    pub event_id: Option<String>,
    /// Creation time.
    pub created_at_ms: i64,
    /// Last refresh of a pending proposal.
    pub updated_at_ms: i64,
    /// When settled.
    pub decided_at_ms: Option<i64>,
}

/// One audited mutation.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
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
    /// Details.
    pub detail: serde_json::Value,
    /// When.
    pub created_at_ms: i64,
}

/// An API token's grant (the token itself is only stored hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// Token id.
    pub id: String,
    /// Tenant the token is scoped to; `None` for a global admin.
    pub tenant_id: Option<String>,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Human name, used as the audit actor.
    pub name: String,
}

/// A stored API token as listed: its grant and when it was issued (never the
/// token or its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Token id.
    pub id: String,
    /// Tenant the token is scoped to; `None` for a global admin.
    pub tenant_id: Option<String>,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Human name, used as the audit actor.
    pub name: String,
    /// When it was issued.
    pub created_at_ms: i64,
}

/// A metric sample to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Pool id.
    pub pool_id: String,
    /// Metric name.
    pub metric: String,
    /// Timestamp, Unix ms.
    pub ts_ms: i64,
    /// Value.
    pub value: f64,
}

/// Keyset pagination request.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// At most this many items (1..=1000; default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl Page {
    /// The effective limit.
    pub fn limit(&self) -> i64 {
        i64::from(self.limit.unwrap_or(100).clamp(1, 1000))
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed<T> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor of the next page, `null` at the end.
    pub next_cursor: Option<String>,
}
