//! fleetscale-core: the pure decision logic of fleetscale.
//!
//! Everything here is a function over plain data: no I/O, no clock reads, no
//! async, no ambient randomness. Time is always an argument (Unix
//! milliseconds). The storage layer, the HTTP server, the control loop and the
//! simulator are thin shells that call into this crate.

pub mod budget;
pub mod capacity;
pub mod control;
pub mod decision;
pub mod fail_static;
pub mod forecast;
pub mod hpa;
pub mod kpa;
pub mod lifecycle;
pub mod memory;
pub mod metric_source;
pub mod observation;
pub mod observe;
pub mod policies;
pub mod policy;
pub mod pool;
pub mod provider_budget;
pub mod rebalance;
pub mod region;
pub mod trace;
pub mod validate;
pub mod workload;

pub use decision::{
    decide_all, decide_all_cached, decide_all_with, CombinedDecision, PerformanceTargets,
    PoolPolicies, Reason,
};
pub use lifecycle::{ActuationStatus, ProposalStatus, TriggerSource, UnknownValue, ZeroTransition};
pub use observation::{
    Action, Decision, Observation, PoolBounds, QueueObservation, Sample, SlaObservation,
    WindowStats,
};
pub use policies::threshold::{RawThresholdPolicy, ThresholdPolicy};
pub use policies::{decide, PolicySpec};
pub use pool::{Mode, NewPool, PoolPatch, ValidPool};
pub use validate::{FieldError, Violations};
