//! Region state from plain inputs: pressure per job kind and overall,
//! capacity score, warning index, fatigue score (phase 92 fields).
//!
//! Definitions:
//! - a pool serves the job kind named by its `job_kind`, by default its agent
//!   type when that is one of the four kinds ([`job_kind_of`]);
//! - pressure of a kind = 100 × Σload ÷ Σ(desired × capacity_per_instance)
//!   over the region's pools of that kind, clamped to 0–100 (a kind whose
//!   pools have no desired capacity has pressure 100 when it carries load,
//!   else 0); a pool without a load figure counts as load 0;
//! - overall pressure = weighted mean of the kinds that have at least one
//!   pool, weights posting 30, orchestration 25, creative 25, intel 20,
//!   renormalised over the kinds present (0 when no kind is present);
//! - `capacity_score` = 100 × (1 − Σload ÷ Σ(max_capacity ×
//!   capacity_per_instance)) over all the region's pools, clamped to 0–100;
//!   0 without pools or without any maximum capacity;
//! - `warning_index` = 100 × the share of pools whose capacity status is
//!   `over` or that sat at `max_capacity` during the last hour;
//! - `fatigue_score` = 100 × the share of the last 24 h spent outside
//!   `normal`, from the mode history given as intervals.

use serde::{Deserialize, Serialize};

use super::mode::{ModeTransition, ScalingMode};

/// Milliseconds in the fatigue window (24 h).
pub const FATIGUE_WINDOW_MS: i64 = 24 * 3_600_000;

/// The four job kinds a region's pressure is broken into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Posting jobs (weight 30).
    Posting,
    /// Orchestration jobs (weight 25).
    Orchestration,
    /// Creative jobs (weight 25).
    Creative,
    /// Intelligence jobs (weight 20).
    Intel,
}

impl JobKind {
    /// All kinds, in the order of the weights.
    pub const ALL: [JobKind; 4] = [
        JobKind::Posting,
        JobKind::Orchestration,
        JobKind::Creative,
        JobKind::Intel,
    ];

    /// Weight of the kind in the overall pressure (30/25/25/20).
    #[must_use]
    pub fn weight(self) -> f64 {
        match self {
            JobKind::Posting => 30.0,
            JobKind::Orchestration | JobKind::Creative => 25.0,
            JobKind::Intel => 20.0,
        }
    }

    /// The snake_case name (`posting`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Posting => "posting",
            JobKind::Orchestration => "orchestration",
            JobKind::Creative => "creative",
            JobKind::Intel => "intel",
        }
    }
}

impl std::str::FromStr for JobKind {
    type Err = crate::lifecycle::UnknownValue;

    fn from_str(s: &str) -> Result<JobKind, Self::Err> {
        JobKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| crate::lifecycle::UnknownValue {
                kind: "job kind",
                value: s.to_string(),
                expected: "posting, orchestration, creative, intel, ",
            })
    }
}

/// Default job kind of a pool: its agent type when that is exactly one of
/// the four kind names (`posting`, `orchestration`, `creative`, `intel`),
/// else none.
#[must_use]
pub fn job_kind_of(agent_type: &str) -> Option<JobKind> {
    JobKind::ALL.into_iter().find(|k| k.as_str() == agent_type)
}

/// A job type for job routing: the four kinds plus `performance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    /// Posting job.
    Posting,
    /// Orchestration job.
    Orchestration,
    /// Creative job.
    Creative,
    /// Intelligence job.
    Intel,
    /// Performance job (no kind of its own: judged on overall pressure).
    Performance,
}

impl JobType {
    /// The job kind whose pressure applies, none for `performance`.
    #[must_use]
    pub fn kind(self) -> Option<JobKind> {
        match self {
            JobType::Posting => Some(JobKind::Posting),
            JobType::Orchestration => Some(JobKind::Orchestration),
            JobType::Creative => Some(JobKind::Creative),
            JobType::Intel => Some(JobKind::Intel),
            JobType::Performance => None,
        }
    }

    /// The snake_case name, also the workload type used for compliance.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Performance => "performance",
            other => other.kind().map_or("performance", JobKind::as_str),
        }
    }
}

/// One pool of a region, as plain figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolLoad {
    /// Explicit job kind; `None` falls back to [`job_kind_of`] of the agent type.
    pub job_kind: Option<JobKind>,
    /// Agent type the pool runs.
    pub agent_type: String,
    /// Desired instances.
    pub desired: u32,
    /// Maximum instances.
    pub max_capacity: u32,
    /// Work units one instance handles.
    pub capacity_per_instance: f64,
    /// Window-mean load in work units; `None` when no sample (counts as 0).
    pub load: Option<f64>,
    /// Capacity status is `over`.
    pub over_capacity: bool,
    /// The pool sat at `max_capacity` during the last hour.
    pub saturated_last_hour: bool,
}

impl PoolLoad {
    /// The kind this pool serves, if any.
    #[must_use]
    pub fn kind(&self) -> Option<JobKind> {
        self.job_kind.or_else(|| job_kind_of(&self.agent_type))
    }

    fn load(&self) -> f64 {
        self.load.filter(|l| l.is_finite()).unwrap_or(0.0).max(0.0)
    }

    fn cpi(&self) -> f64 {
        if self.capacity_per_instance.is_finite() {
            self.capacity_per_instance.max(0.0)
        } else {
            0.0
        }
    }
}

/// A span of time a region spent in one mode, `[from_ms, to_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeInterval {
    /// The mode held.
    pub mode: ScalingMode,
    /// Start (Unix ms, inclusive).
    pub from_ms: i64,
    /// End (Unix ms, exclusive).
    pub to_ms: i64,
}

/// Everything region state is computed from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionInput {
    /// The region's pools.
    pub pools: Vec<PoolLoad>,
    /// Mode history, non-overlapping intervals (the current mode up to now included).
    pub mode_history: Vec<ModeInterval>,
    /// Tenants with at least one pool in the region.
    pub active_tenants: u32,
    /// Jobs waiting in the region's queue.
    pub jobs_in_queue: u64,
}

/// Pressure per job kind and overall, each 0–100.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    /// Posting pressure.
    pub posting: f64,
    /// Orchestration pressure.
    pub orchestration: f64,
    /// Creative pressure.
    pub creative: f64,
    /// Intel pressure.
    pub intel: f64,
    /// Weighted overall pressure (30/25/25/20 over the kinds present).
    pub overall: f64,
}

impl Pressure {
    /// Pressure of one kind.
    #[must_use]
    pub fn of(&self, kind: JobKind) -> f64 {
        match kind {
            JobKind::Posting => self.posting,
            JobKind::Orchestration => self.orchestration,
            JobKind::Creative => self.creative,
            JobKind::Intel => self.intel,
        }
    }

    /// Pressure relevant to a job type (overall for `performance`).
    #[must_use]
    pub fn for_job(&self, job: JobType) -> f64 {
        job.kind().map_or(self.overall, |k| self.of(k))
    }
}

/// The phase 92 region state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionState {
    /// Pressure per kind and overall.
    pub pressure: Pressure,
    /// Headroom score 0–100.
    pub capacity_score: f64,
    /// Share of pools over capacity or saturated in the last hour, 0–100.
    pub warning_index: f64,
    /// Share of the last 24 h outside normal, 0–100.
    pub fatigue_score: f64,
    /// Tenants with pools in the region.
    pub active_tenants: u32,
    /// Jobs waiting.
    pub jobs_in_queue: u64,
}

fn clamp100(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 100.0)
    }
}

/// The modes a region was in over `[from_ms, now_ms)`, from its transitions
/// (oldest first; those outside the span are ignored) and its mode now: the
/// input of [`fatigue_score`]. Before the first
/// transition in the span the region was in that transition's `from` mode.
#[must_use]
pub fn mode_intervals(
    transitions: &[ModeTransition],
    current: ScalingMode,
    from_ms: i64,
    now_ms: i64,
) -> Vec<ModeInterval> {
    let inside: Vec<&ModeTransition> = transitions
        .iter()
        .filter(|t| t.at_ms >= from_ms && t.at_ms < now_ms)
        .collect();
    let mut out = Vec::with_capacity(inside.len() + 1);
    let mut mode = inside.first().map_or(current, |t| t.from);
    let mut start = from_ms;
    for t in inside {
        if t.at_ms > start {
            out.push(ModeInterval {
                mode,
                from_ms: start,
                to_ms: t.at_ms,
            });
        }
        mode = t.to;
        start = t.at_ms;
    }
    if now_ms > start {
        out.push(ModeInterval {
            mode,
            from_ms: start,
            to_ms: now_ms,
        });
    }
    out
}

/// Computes the region state at `now_ms` (see the module doc for definitions).
#[must_use]
pub fn region_state(input: &RegionInput, now_ms: i64) -> RegionState {
    let mut pressure = Pressure::default();
    let mut weighted = 0.0;
    let mut weights = 0.0;
    for kind in JobKind::ALL {
        let pools: Vec<&PoolLoad> = input
            .pools
            .iter()
            .filter(|p| p.kind() == Some(kind))
            .collect();
        if pools.is_empty() {
            continue;
        }
        let load: f64 = pools.iter().map(|p| p.load()).sum();
        let cap: f64 = pools.iter().map(|p| f64::from(p.desired) * p.cpi()).sum();
        let v = if cap > 0.0 {
            clamp100(100.0 * load / cap)
        } else if load > 0.0 {
            100.0
        } else {
            0.0
        };
        match kind {
            JobKind::Posting => pressure.posting = v,
            JobKind::Orchestration => pressure.orchestration = v,
            JobKind::Creative => pressure.creative = v,
            JobKind::Intel => pressure.intel = v,
        }
        weighted += kind.weight() * v;
        weights += kind.weight();
    }
    pressure.overall = if weights > 0.0 {
        clamp100(weighted / weights)
    } else {
        0.0
    };

    let total_load: f64 = input.pools.iter().map(PoolLoad::load).sum();
    let max_cap: f64 = input
        .pools
        .iter()
        .map(|p| f64::from(p.max_capacity) * p.cpi())
        .sum();
    let capacity_score = if max_cap > 0.0 {
        clamp100(100.0 * (1.0 - total_load / max_cap))
    } else {
        0.0
    };

    let warning_index = if input.pools.is_empty() {
        0.0
    } else {
        let warned = input
            .pools
            .iter()
            .filter(|p| p.over_capacity || p.saturated_last_hour)
            .count();
        100.0 * warned as f64 / input.pools.len() as f64
    };

    RegionState {
        pressure,
        capacity_score,
        warning_index,
        fatigue_score: fatigue_score(&input.mode_history, now_ms),
        active_tenants: input.active_tenants,
        jobs_in_queue: input.jobs_in_queue,
    }
}

/// 100 × the share of `[now − 24 h, now)` covered by intervals whose mode is
/// not `normal` (intervals are clipped to the window; time not covered by
/// any interval counts as normal).
#[must_use]
pub fn fatigue_score(history: &[ModeInterval], now_ms: i64) -> f64 {
    let start = now_ms.saturating_sub(FATIGUE_WINDOW_MS);
    let outside: i64 = history
        .iter()
        .filter(|i| i.mode != ScalingMode::Normal)
        .map(|i| {
            let from = i.from_ms.max(start);
            let to = i.to_ms.min(now_ms);
            (to - from).max(0)
        })
        .sum();
    clamp100(100.0 * outside as f64 / FATIGUE_WINDOW_MS as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(kind: &str, desired: u32, max: u32, load: Option<f64>) -> PoolLoad {
        PoolLoad {
            job_kind: None,
            agent_type: kind.into(),
            desired,
            max_capacity: max,
            capacity_per_instance: 10.0,
            load,
            over_capacity: false,
            saturated_last_hour: false,
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn job_kind_defaults_to_agent_type_name() {
        assert_eq!(job_kind_of("posting"), Some(JobKind::Posting));
        assert_eq!(job_kind_of("intel"), Some(JobKind::Intel));
        assert_eq!(job_kind_of("chat"), None);
        let mut p = pool("chat", 1, 1, None);
        assert_eq!(p.kind(), None);
        p.job_kind = Some(JobKind::Creative);
        assert_eq!(p.kind(), Some(JobKind::Creative));
        assert_eq!(JobType::Performance.kind(), None);
        assert_eq!(JobType::Creative.as_str(), "creative");
        assert_eq!(JobType::Performance.as_str(), "performance");
    }

    #[test]
    fn pressure_per_kind_and_renormalised_overall() {
        // posting: 50 / (10*10) = 50; intel: 100 / (5*10) = 200 → 100.
        let input = RegionInput {
            pools: vec![
                pool("posting", 10, 20, Some(50.0)),
                pool("intel", 5, 10, Some(100.0)),
            ],
            ..Default::default()
        };
        let s = region_state(&input, 0);
        close(s.pressure.posting, 50.0);
        close(s.pressure.intel, 100.0);
        close(s.pressure.creative, 0.0);
        close(s.pressure.overall, (30.0 * 50.0 + 20.0 * 100.0) / 50.0);
        // capacity: 1 - 150 / (200 + 100) = 0.5
        close(s.capacity_score, 50.0);
    }

    #[test]
    fn all_four_kinds_use_30_25_25_20() {
        let input = RegionInput {
            pools: vec![
                pool("posting", 10, 10, Some(100.0)),
                pool("orchestration", 10, 10, Some(0.0)),
                pool("creative", 10, 10, Some(50.0)),
                pool("intel", 10, 10, None),
            ],
            ..Default::default()
        };
        let s = region_state(&input, 0);
        close(s.pressure.overall, (30.0 * 100.0 + 25.0 * 50.0) / 100.0);
    }

    #[test]
    fn empty_region_scores_zero() {
        let s = region_state(&RegionInput::default(), 0);
        assert_eq!(s, RegionState::default());
    }

    #[test]
    fn zero_desired_with_load_is_full_pressure() {
        let input = RegionInput {
            pools: vec![pool("posting", 0, 10, Some(5.0))],
            ..Default::default()
        };
        close(region_state(&input, 0).pressure.posting, 100.0);
    }

    #[test]
    fn capacity_score_clamps_and_zero_without_max() {
        let over = RegionInput {
            pools: vec![pool("chat", 1, 1, Some(1_000.0))],
            ..Default::default()
        };
        close(region_state(&over, 0).capacity_score, 0.0);
        let nomax = RegionInput {
            pools: vec![pool("chat", 0, 0, None)],
            ..Default::default()
        };
        close(region_state(&nomax, 0).capacity_score, 0.0);
    }

    #[test]
    fn warning_index_counts_over_or_saturated() {
        let mut a = pool("chat", 1, 1, None);
        a.over_capacity = true;
        let mut b = pool("chat", 1, 1, None);
        b.saturated_last_hour = true;
        let input = RegionInput {
            pools: vec![a, b, pool("chat", 1, 1, None), pool("chat", 1, 1, None)],
            ..Default::default()
        };
        close(region_state(&input, 0).warning_index, 50.0);
    }

    #[test]
    fn fatigue_clips_to_last_24h() {
        let now = 10 * FATIGUE_WINDOW_MS;
        let h = 3_600_000;
        let hist = [
            // 2 h before the window, 1 h inside it: counts 1 h.
            ModeInterval {
                mode: ScalingMode::Throttled,
                from_ms: now - 27 * h,
                to_ms: now - 23 * h,
            },
            ModeInterval {
                mode: ScalingMode::Normal,
                from_ms: now - 23 * h,
                to_ms: now - 6 * h,
            },
            ModeInterval {
                mode: ScalingMode::Cautious,
                from_ms: now - 6 * h,
                to_ms: now,
            },
        ];
        close(fatigue_score(&hist, now), 100.0 * 7.0 / 24.0);
        close(fatigue_score(&[], now), 0.0);
    }
    #[test]
    fn mode_intervals_cover_the_span_from_the_transitions() {
        let t = |at_ms, from, to| ModeTransition {
            from,
            to,
            capacity_score: 0.0,
            pressure: 0.0,
            at_ms,
        };
        use ScalingMode::{Cautious, Frozen, Normal};
        let iv = mode_intervals(
            &[
                t(50, Normal, Frozen),
                t(130, Frozen, Cautious),
                t(170, Cautious, Normal),
            ],
            Normal,
            100,
            200,
        );
        let got: Vec<_> = iv.iter().map(|i| (i.mode, i.from_ms, i.to_ms)).collect();
        assert_eq!(
            got,
            [(Frozen, 100, 130), (Cautious, 130, 170), (Normal, 170, 200)]
        );
        let iv = mode_intervals(&[], Cautious, 100, 200);
        assert_eq!(
            iv.iter()
                .map(|i| (i.mode, i.from_ms, i.to_ms))
                .collect::<Vec<_>>(),
            [(Cautious, 100, 200)]
        );
        assert_eq!(
            "throttled".parse::<ScalingMode>().unwrap(),
            ScalingMode::Throttled
        );
    }
}
