//! The decision engine (agent-scalability-analytics §3.2): combines a pool's
//! policies and the factors current load, predicted load, cost efficiency,
//! SLA margin and available capacity into one [`CombinedDecision`] with a
//! confidence and an ordered list of reasons carrying their figures.
//!
//! Rules, applied in this order (each one that acts adds a reason):
//! 1. **Current load** — the load policies (threshold, target tracking,
//!    triggers, queue): scale-out proposals take the maximum; scale-in needs
//!    every load policy to propose a lower capacity (the least reduction is
//!    taken) and no policy missing data.
//! 2. **Predicted load** — a predictive policy proposing more than the
//!    current capacity acts when there is no current-load action, or when
//!    its urgency exceeds `spike_urgency_threshold` (seed: 0.8) — then it
//!    overrides a scale-in, or raises a scale-out to the maximum. Otherwise
//!    it is noted and vetoes any scale-in below its proposal.
//! 3. **Cost efficiency** — with no action yet, when the measured load fits
//!    in fewer instances at `target_utilization_percent`, scale in by
//!    `cost_optimization_weight` of the excess, if no policy proposes more
//!    than the current capacity and not below any policy's stated need
//!    (`inputs["needed"]` of queue, target tracking and predictive).
//! 4. **SLA margin** — any scale-in (rule 1 or 3) needs the SLA margin to
//!    exceed `scale_in_sla_margin` (seed: 0.2). The margin is the smallest
//!    relative headroom of response time, availability and error rate
//!    against the performance targets; 1 when no target is set, unknown
//!    (blocking scale-in) when a target is set but not observed.
//! 5. **Available capacity** — a scale-out is capped at what the provider
//!    can still add.
//! 6. **Schedules** act as floors (target or floor entries alike).
//! 7. **Bounds** `[min, max]`, then the **safety lock** (no change), last.
//!
//! Missing or stale data never leads to a scale-in.
//!
//! [`spec`] holds what the engine is given (a pool's policies and
//! performance targets, their validation, the observation's, and the SLA
//! margin); [`combine`] applies the rules above. Both are re-exported here.

pub mod combine;
pub mod default;
pub mod spec;

pub use combine::*;
pub use spec::*;
