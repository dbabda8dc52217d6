//! What a controller sees and the trait it implements: the leaf that the
//! world (which builds a [`View`] at every decision) and the controllers
//! (which read it) both depend on. Instances and their lifecycle, the
//! metric samples a scrape publishes, the [`View`] of a decision and the
//! [`Controller`] trait.

use std::collections::VecDeque;

/// Lifecycle of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstState {
    /// Launched, not ready yet (billed).
    Provisioning,
    /// Serving.
    Ready,
    /// Finishing its in-flight requests, taking no new ones (billed).
    Draining,
    /// Terminated.
    Gone,
}

/// One instance.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Stable id (never reused).
    pub id: u32,
    /// Launch time, µs.
    pub launched_us: i64,
    /// When it is (or was) ready, µs.
    pub ready_us: i64,
    /// State.
    pub state: InstState,
    /// Busy slots.
    pub busy: u32,
    /// Busy slot-µs integrated since `last_us` (the world's bookkeeping).
    pub(crate) busy_int: f64,
    /// When `busy_int` was last advanced, µs.
    pub(crate) last_us: i64,
}

/// What a scrape saw over its window, visible to controllers from `visible_us`.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// End of the window, µs.
    pub ts_us: i64,
    /// When controllers can see it, µs.
    pub visible_us: i64,
    /// Window length, µs.
    pub window_us: i64,
    /// Mean busy slots over the window.
    pub busy_mean: f64,
    /// Mean queue length over the window.
    pub queue_mean: f64,
    /// Queue length at the scrape.
    pub queue_now: f64,
    /// Busy slots at the scrape.
    pub busy_now: f64,
    /// Arrivals in the window.
    pub arrivals: u64,
    /// Requests started in the window.
    pub started: u64,
    /// Requests completed in the window.
    pub completed: u64,
    /// Of those, the ones whose latency missed the SLO (what a service
    /// knows when a request ends).
    pub missed: u64,
    /// Summed service time of the completed requests, µs.
    pub service_us: f64,
    /// Mean ready (serving) instances over the window.
    pub ready_mean: f64,
    /// Per ready instance: `(id, mean busy fraction over its part of the window)`.
    pub per_instance: Vec<(u32, f64)>,
}

/// What a controller sees at a decision.
pub struct View<'a> {
    /// Now, µs from the origin.
    pub now_us: i64,
    /// Origin, Unix ms (add to convert).
    pub t0_ms: i64,
    /// Desired capacity: provisioning + ready instances.
    pub desired: i64,
    /// Slots per instance.
    pub slots: u32,
    /// Every instance not yet gone.
    pub instances: Vec<&'a Instance>,
    /// Visible samples, oldest first.
    pub samples: &'a VecDeque<Sample>,
    /// Completed history intervals of offered load (busy-slot equivalents:
    /// work arrived / interval), oldest first, from the origin.
    pub history: &'a [f64],
    /// History interval, µs.
    pub history_interval_us: i64,
    /// Requests waiting right now (only a controller that queries the queue
    /// itself, like a KEDA scaler, may read it).
    pub live_queue: f64,
    /// Requests in flight right now (same caveat).
    pub live_in_flight: f64,
}

impl View<'_> {
    /// Now as Unix ms.
    pub fn now_ms(&self) -> i64 {
        self.t0_ms + self.now_us / 1000
    }
    /// A time in µs from the origin as Unix ms.
    pub fn ms(&self, us: i64) -> i64 {
        self.t0_ms + us / 1000
    }
}

/// A scaling controller under test.
pub trait Controller {
    /// Name in the report.
    fn name(&self) -> String;
    /// Decision interval, µs.
    fn period_us(&self) -> i64;
    /// The desired capacity after a decision at `v.now_us`.
    fn decide(&mut self, v: &View) -> i64;
}
