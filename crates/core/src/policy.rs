//! Scaling policies at their old path: the dispatcher lives in
//! [`crate::policies`], the threshold policy in [`crate::policies::threshold`],
//! and the observation and decision vocabulary in [`crate::observation`]; this
//! module only re-exports them.

pub use crate::observation::{
    utilization_pct, Action, Decision, Observation, QueueObservation, Sample, SlaObservation,
    WindowStats,
};
pub use crate::policies::threshold::{RawThresholdPolicy, ThresholdPolicy, DEFAULT_WINDOW_SECONDS};
pub use crate::policies::{decide, PolicySpec};
