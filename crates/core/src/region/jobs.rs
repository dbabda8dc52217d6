//! Job routing (the phase 92 shard router): which region runs a job, under
//! which shard key, at what priority, after what wait.
//!
//! Order ([`route_job`]): input checks → **compliance** (workload type = the
//! job type's name, a hard filter) → **budget** (the caller checks each
//! region's budget without charging and passes `budget_ok`) → **mode
//! gating** ([`super::mode::gate`]) → the **home region** (the requested
//! one, else the tenant's `home_region`) when it passes all of these, else
//! the best compliant region for the job kind with `fallback: true`.
//!
//! *Best region for a job* (phase 92 `getBestRegionForJob`): among the
//! compliant regions whose budget is fine and whose mode accepts the job,
//! the lowest pressure of the job's kind (overall pressure for
//! `performance`), then the highest capacity score, then name.
//!
//! Documented formulas:
//! - **shard key** ([`shard_key`]): 16 lowercase hex digits of FNV-1a 64 of
//!   `tenant_id + "\x1f" + job_type + "\x1f" + region` (stable for the same
//!   tenant, job type and region, across releases and machines);
//! - **priority** ([`adjust_priority`]; 1 lowest … 10 highest): pressure of
//!   the job's kind < 50 keeps it, 50 ≤ p < 75 lowers it by 1, p ≥ 75 by 2,
//!   clamped to 1–10, so work already queued in a pressed region drains
//!   first;
//! - **estimated wait** ([`estimated_wait_ms`]): `delay_ms + ⌈jobs_in_queue
//!   × 60,000 ÷ throughput_per_min⌉`, a throughput ≤ 0 (or not finite)
//!   counting as [`MIN_THROUGHPUT_PER_MIN`] job per minute.

use serde::{Deserialize, Serialize};

use super::compliance::{is_compliant, RegionPolicy};
use super::fnv1a64;
use super::mode::{gate, Gate, ScalingMode, DEFAULT_SMALL_JOB_MAX_CENTS};
use super::state::{JobType, Pressure};
use crate::validate::Violations;

/// Default job priority.
pub const DEFAULT_PRIORITY: u8 = 5;
/// Default estimated cost of a job.
pub const DEFAULT_ESTIMATED_COST_CENTS: i64 = 100;
/// Throughput assumed when a region reports none.
pub const MIN_THROUGHPUT_PER_MIN: f64 = 1.0;

fn default_small_job_max_cents() -> i64 {
    DEFAULT_SMALL_JOB_MAX_CENTS
}

/// What job routing reads about one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRegion {
    /// Region name.
    pub name: String,
    /// Jurisdiction.
    pub jurisdiction: String,
    /// Current scaling mode.
    pub mode: ScalingMode,
    /// Current pressures.
    pub pressure: Pressure,
    /// Current capacity score.
    pub capacity_score: f64,
    /// Jobs waiting.
    pub jobs_in_queue: u64,
    /// Jobs the region completes per minute.
    pub throughput_per_min: f64,
    /// The region's budget covers the job's estimated cost (checked by the caller, no charge).
    pub budget_ok: bool,
    /// Largest cost a throttled region accepts.
    #[serde(default = "default_small_job_max_cents")]
    pub small_job_max_cents: i64,
}

/// A job routing request with everything it depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRouteInput {
    /// Tenant.
    pub tenant_id: String,
    /// Requested home region, else the policy's `home_region`.
    #[serde(default)]
    pub region: Option<String>,
    /// Job type.
    pub job_type: JobType,
    /// Priority 1–10.
    pub priority: u8,
    /// Estimated cost, ≥ 0.
    pub estimated_cost_cents: i64,
    /// The tenant's region policy.
    pub region_policy: RegionPolicy,
    /// Every known region.
    pub regions: Vec<JobRegion>,
}

/// Where a job goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[must_use]
pub struct JobRoute {
    /// Region name.
    pub region: String,
    /// Stable shard key ([`shard_key`]).
    pub shard_key: String,
    /// Priority adjusted by pressure ([`adjust_priority`]).
    pub priority: u8,
    /// Estimated wait ([`estimated_wait_ms`]).
    pub estimated_wait_ms: u64,
    /// The region's mode.
    pub mode: ScalingMode,
    /// Delay imposed by the mode.
    pub delay_ms: u64,
    /// True when the home region could not take the job.
    pub fallback: bool,
    /// Why, in words.
    pub reason: String,
}

/// Why a job was not routed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JobRouteError {
    /// The request breaks input rules (each naming its field).
    #[error(transparent)]
    Invalid(#[from] Violations),
    /// The compliance filter left no region.
    #[error("no region is compliant with the tenant's region policy for this job type")]
    NoCompliantRegion,
    /// No compliant region's budget covers the job.
    #[error("insufficient budget in every compliant region")]
    InsufficientBudget,
    /// Compliant regions with budget exist, but no mode accepts the job.
    #[error("no compliant region with budget accepts the job in its current mode")]
    NoAvailableRegion,
}

impl JobRouteError {
    /// Stable problem code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            JobRouteError::Invalid(_) => "validation_failed",
            JobRouteError::NoCompliantRegion => "no_compliant_region",
            JobRouteError::InsufficientBudget => "insufficient_budget",
            JobRouteError::NoAvailableRegion => "no_available_region",
        }
    }
}

/// FNV-1a shard key (see the module doc).
#[must_use]
pub fn shard_key(tenant_id: &str, job_type: JobType, region: &str) -> String {
    let text = format!("{tenant_id}\u{1f}{}\u{1f}{region}", job_type.as_str());
    format!("{:016x}", fnv1a64(text.as_bytes()))
}

/// Priority adjusted by pressure (see the module doc).
#[must_use]
pub fn adjust_priority(priority: u8, pressure: f64) -> u8 {
    let drop = if pressure.is_nan() || pressure >= 75.0 {
        2
    } else if pressure >= 50.0 {
        1
    } else {
        0
    };
    priority.saturating_sub(drop).clamp(1, 10)
}

/// Estimated wait (see the module doc).
#[must_use]
pub fn estimated_wait_ms(jobs_in_queue: u64, throughput_per_min: f64, delay_ms: u64) -> u64 {
    let t = if throughput_per_min.is_finite() && throughput_per_min > 0.0 {
        throughput_per_min
    } else {
        MIN_THROUGHPUT_PER_MIN
    };
    let queue = (jobs_in_queue as f64 * 60_000.0 / t).ceil();
    // `as` saturates for floats beyond u64.
    delay_ms.saturating_add(queue as u64)
}

fn validate(input: &JobRouteInput) -> Result<(), Violations> {
    let mut v = Violations::default();
    v.check_name("tenant_id", &input.tenant_id);
    v.check_i64("priority", i64::from(input.priority), 1, 10);
    if input.estimated_cost_cents < 0 {
        v.push("estimated_cost_cents", "must be >= 0");
    }
    if let Some(r) = &input.region {
        if !input.regions.iter().any(|x| x.name == *r) {
            v.push("region", "must name a known region");
        }
    }
    v.into_result(())
}

/// Routes a job (see the module doc). Pure and deterministic.
pub fn route_job(input: &JobRouteInput) -> Result<JobRoute, JobRouteError> {
    validate(input)?;
    let job = input.job_type;
    let mut compliant: Vec<&JobRegion> = input
        .regions
        .iter()
        .filter(|r| is_compliant(&input.region_policy, &r.name, &r.jurisdiction, job.as_str()))
        .collect();
    if compliant.is_empty() {
        return Err(JobRouteError::NoCompliantRegion);
    }
    compliant.retain(|r| r.budget_ok);
    if compliant.is_empty() {
        return Err(JobRouteError::InsufficientBudget);
    }
    let accepts = |r: &JobRegion| match gate(
        r.mode,
        r.pressure.overall,
        input.estimated_cost_cents,
        r.small_job_max_cents,
    ) {
        Gate::Accept { delay_ms } => Some(delay_ms),
        Gate::Refuse { .. } => None,
    };
    let home = input
        .region
        .as_ref()
        .or(input.region_policy.home_region.as_ref());
    let mut open: Vec<(&JobRegion, u64)> = compliant
        .iter()
        .filter_map(|r| accepts(r).map(|d| (*r, d)))
        .collect();
    let (chosen, delay_ms, fallback, why) = match home {
        Some(h) => match open.iter().find(|(r, _)| r.name == *h) {
            Some((r, d)) => (*r, *d, false, format!("home region {h}")),
            None => {
                let Some((r, d)) = best(&mut open, job) else {
                    return Err(JobRouteError::NoAvailableRegion);
                };
                (
                    r,
                    d,
                    true,
                    format!(
                        "home region {h} cannot take the job; best region for {}",
                        job.as_str()
                    ),
                )
            }
        },
        None => {
            let Some((r, d)) = best(&mut open, job) else {
                return Err(JobRouteError::NoAvailableRegion);
            };
            (
                r,
                d,
                false,
                format!("no home region; best region for {}", job.as_str()),
            )
        }
    };
    let pressure = chosen.pressure.for_job(job);
    Ok(JobRoute {
        region: chosen.name.clone(),
        shard_key: shard_key(&input.tenant_id, job, &chosen.name),
        priority: adjust_priority(input.priority, pressure),
        estimated_wait_ms: estimated_wait_ms(
            chosen.jobs_in_queue,
            chosen.throughput_per_min,
            delay_ms,
        ),
        mode: chosen.mode,
        delay_ms,
        fallback,
        reason: format!(
            "{why}: {} ({} mode, pressure {pressure:.1})",
            chosen.name, chosen.mode
        ),
    })
}

/// Lowest kind pressure, then highest capacity score, then name.
fn best<'a>(open: &mut [(&'a JobRegion, u64)], job: JobType) -> Option<(&'a JobRegion, u64)> {
    open.sort_by(|(a, _), (b, _)| {
        a.pressure
            .for_job(job)
            .total_cmp(&b.pressure.for_job(job))
            .then(b.capacity_score.total_cmp(&a.capacity_score))
            .then(a.name.cmp(&b.name))
    });
    open.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str, mode: ScalingMode, creative: f64, capacity: f64) -> JobRegion {
        JobRegion {
            name: name.into(),
            jurisdiction: "eu".into(),
            mode,
            pressure: Pressure {
                creative,
                overall: creative,
                ..Pressure::default()
            },
            capacity_score: capacity,
            jobs_in_queue: 10,
            throughput_per_min: 20.0,
            budget_ok: true,
            small_job_max_cents: 50,
        }
    }

    fn input(regions: Vec<JobRegion>) -> JobRouteInput {
        JobRouteInput {
            tenant_id: "t1".into(),
            region: None,
            job_type: JobType::Creative,
            priority: DEFAULT_PRIORITY,
            estimated_cost_cents: DEFAULT_ESTIMATED_COST_CENTS,
            region_policy: RegionPolicy {
                home_region: Some("home".into()),
                ..RegionPolicy::default()
            },
            regions,
        }
    }

    fn world() -> Vec<JobRegion> {
        vec![
            region("home", ScalingMode::Normal, 40.0, 60.0),
            region("b", ScalingMode::Normal, 20.0, 70.0),
            region("c", ScalingMode::Cautious, 10.0, 45.0),
        ]
    }

    #[test]
    fn home_region_when_it_accepts() {
        let r = route_job(&input(world())).unwrap();
        assert_eq!(
            (r.region.as_str(), r.fallback, r.delay_ms, r.priority),
            ("home", false, 0, 5)
        );
        assert_eq!(r.shard_key, shard_key("t1", JobType::Creative, "home"));
        assert_eq!(r.estimated_wait_ms, 30_000); // 10 jobs at 20/min
                                                 // the requested region beats the tenant's home
        let mut i = input(world());
        i.region = Some("b".into());
        assert_eq!(route_job(&i).unwrap().region, "b");
    }

    #[test]
    fn fallback_to_best_region_for_the_kind() {
        // (home mode, home budget, home restricted, cost, expected region, fallback)
        let table = [
            (ScalingMode::Frozen, true, false, 10, "c", true),
            (ScalingMode::Throttled, true, false, 51, "c", true),
            (ScalingMode::Throttled, true, false, 50, "home", false),
            (ScalingMode::Normal, false, false, 100, "c", true),
            (ScalingMode::Normal, true, true, 100, "c", true),
            (ScalingMode::Cautious, true, false, 100, "home", false),
        ];
        for (mode, budget, restricted, cost, want, fb) in table {
            let mut i = input(world());
            i.regions[0].mode = mode;
            i.regions[0].budget_ok = budget;
            i.estimated_cost_cents = cost;
            if restricted {
                i.region_policy
                    .restricted_workloads
                    .insert("home".into(), vec!["creative".into()]);
            }
            let r = route_job(&i).unwrap();
            assert_eq!(
                (r.region.as_str(), r.fallback),
                (want, fb),
                "{mode} budget={budget} restricted={restricted} cost={cost}"
            );
        }
    }

    #[test]
    fn best_region_ties_by_capacity_then_name() {
        let mut i = input(vec![
            region("z", ScalingMode::Normal, 10.0, 50.0),
            region("y", ScalingMode::Normal, 10.0, 80.0),
            region("x", ScalingMode::Normal, 10.0, 80.0),
        ]);
        i.region_policy.home_region = None;
        let r = route_job(&i).unwrap();
        assert_eq!((r.region.as_str(), r.fallback), ("x", false));
        // performance jobs use overall pressure
        i.job_type = JobType::Performance;
        i.regions[0].pressure.overall = 0.0;
        assert_eq!(route_job(&i).unwrap().region, "z");
    }

    #[test]
    fn errors_in_order_compliance_budget_mode() {
        let mut i = input(world());
        i.region_policy.data_residency = Some("us".into());
        assert_eq!(route_job(&i).unwrap_err().code(), "no_compliant_region");
        let mut i = input(world());
        for r in &mut i.regions {
            r.budget_ok = false;
        }
        assert_eq!(route_job(&i).unwrap_err().code(), "insufficient_budget");
        let mut i = input(world());
        for r in &mut i.regions {
            r.mode = ScalingMode::Frozen;
        }
        assert_eq!(route_job(&i).unwrap_err().code(), "no_available_region");
        let mut i = input(world());
        i.region_policy.home_region = None;
        i.regions[1].mode = ScalingMode::Frozen;
        i.regions[2].mode = ScalingMode::Frozen;
        i.regions[0].mode = ScalingMode::Throttled;
        assert_eq!(route_job(&i).unwrap_err().code(), "no_available_region");
    }

    #[test]
    fn bad_input_names_fields() {
        let mut i = input(world());
        i.priority = 0;
        i.estimated_cost_cents = -1;
        i.region = Some("mars".into());
        i.tenant_id = String::new();
        let JobRouteError::Invalid(v) = route_job(&i).unwrap_err() else {
            panic!("expected violations")
        };
        let fields: Vec<&str> = v.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["tenant_id", "priority", "estimated_cost_cents", "region"]
        );
        i = input(world());
        i.priority = 11;
        assert!(matches!(route_job(&i), Err(JobRouteError::Invalid(_))));
    }

    #[test]
    fn priority_adjustment_boundaries() {
        let table = [
            (5, 0.0, 5),
            (5, 49.9, 5),
            (5, 50.0, 4),
            (5, 74.9, 4),
            (5, 75.0, 3),
            (5, 100.0, 3),
            (1, 100.0, 1),
            (2, 80.0, 1),
            (10, 10.0, 10),
            (10, f64::NAN, 8),
        ];
        for (p, pressure, want) in table {
            assert_eq!(adjust_priority(p, pressure), want, "{p} at {pressure}");
        }
    }

    #[test]
    fn wait_estimate() {
        assert_eq!(estimated_wait_ms(0, 10.0, 0), 0);
        assert_eq!(estimated_wait_ms(3, 7.0, 0), 25_715); // ceil(25714.28)
        assert_eq!(estimated_wait_ms(2, 0.0, 1_000), 121_000);
        assert_eq!(estimated_wait_ms(2, f64::NAN, 0), 120_000);
        assert_eq!(estimated_wait_ms(u64::MAX, 1.0, u64::MAX), u64::MAX);
    }

    #[test]
    fn shard_key_is_stable_and_distinct() {
        let k = shard_key("t1", JobType::Posting, "eu-west");
        assert_eq!(k.len(), 16);
        assert_eq!(k, shard_key("t1", JobType::Posting, "eu-west"));
        assert_ne!(k, shard_key("t1", JobType::Intel, "eu-west"));
        assert_ne!(k, shard_key("t2", JobType::Posting, "eu-west"));
        assert_ne!(k, shard_key("t1", JobType::Posting, "us-east"));
        // fixed algorithm: pinned value
        assert_eq!(
            shard_key("", JobType::Posting, ""),
            format!("{:016x}", fnv1a64("\u{1f}posting\u{1f}".as_bytes()))
        );
    }

    #[test]
    fn input_round_trips_through_serde() {
        let i = input(world());
        let back: JobRouteInput =
            serde_json::from_str(&serde_json::to_string(&i).unwrap()).unwrap();
        assert_eq!(back, i);
        assert_eq!(route_job(&back), route_job(&i));
    }
}
