//! Properties of job routing over random worlds: the chosen region is
//! compliant, has budget and accepts the job in its mode; the errors come
//! exactly when their rule leaves nothing; the home region is kept whenever
//! it can take the job; the same input gives the same answer.

use fleetscale_core::region::compliance::{is_compliant, RegionPolicy};
use fleetscale_core::region::jobs::{route_job, JobRegion, JobRouteError, JobRouteInput};
use fleetscale_core::region::mode::{gate, Gate, ScalingMode};
use fleetscale_core::region::state::{JobType, Pressure};
use proptest::prelude::*;

const NAMES: [&str; 6] = ["r0", "r1", "r2", "r3", "r4", "r5"];
const JURISDICTIONS: [&str; 3] = ["eu", "us", "ap"];
const JOBS: [JobType; 5] = [
    JobType::Posting,
    JobType::Orchestration,
    JobType::Creative,
    JobType::Intel,
    JobType::Performance,
];

fn mode() -> impl Strategy<Value = ScalingMode> {
    prop::sample::select(vec![
        ScalingMode::Normal,
        ScalingMode::Cautious,
        ScalingMode::Throttled,
        ScalingMode::Frozen,
    ])
}

fn regions() -> impl Strategy<Value = Vec<JobRegion>> {
    prop::collection::vec(
        (
            prop::sample::select(JURISDICTIONS.to_vec()),
            mode(),
            prop::array::uniform5(0.0..=100.0f64),
            0.0..=100.0f64,
            0u64..100,
            0.0..50.0f64,
            any::<bool>(),
            0i64..200,
        ),
        1..6,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(
                |(i, (j, mode, p, cap, q, tp, budget_ok, small))| JobRegion {
                    name: NAMES[i].into(),
                    jurisdiction: j.into(),
                    mode,
                    pressure: Pressure {
                        posting: p[0],
                        orchestration: p[1],
                        creative: p[2],
                        intel: p[3],
                        overall: p[4],
                    },
                    capacity_score: cap,
                    jobs_in_queue: q,
                    throughput_per_min: tp,
                    budget_ok,
                    small_job_max_cents: small,
                },
            )
            .collect()
    })
}

fn job_input() -> impl Strategy<Value = JobRouteInput> {
    (
        regions(),
        prop::sample::select(JOBS.to_vec()),
        1u8..=10,
        0i64..300,
        prop::option::of(prop::sample::select(NAMES[..3].to_vec())),
        prop::option::of(prop::sample::select(NAMES.to_vec())),
        prop::option::of(prop::sample::select(JURISDICTIONS.to_vec())),
        prop::collection::btree_map(
            prop::sample::select(NAMES.to_vec()).prop_map(str::to_string),
            prop::collection::vec(
                prop::sample::select(JOBS.to_vec()).prop_map(|j| j.as_str().to_string()),
                0..3,
            ),
            0..4,
        ),
    )
        .prop_map(
            |(regions, job_type, priority, cost, region, home, residency, restricted)| {
                let region = region
                    .filter(|r| regions.iter().any(|x| x.name == *r))
                    .map(str::to_string);
                JobRouteInput {
                    tenant_id: "t".into(),
                    region,
                    job_type,
                    priority,
                    estimated_cost_cents: cost,
                    region_policy: RegionPolicy {
                        allowed_jurisdictions: None,
                        data_residency: residency.map(str::to_string),
                        restricted_workloads: restricted,
                        home_region: home.map(str::to_string),
                    },
                    regions,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn job_routing_invariants(i in job_input()) {
        let ok = |r: &JobRegion| is_compliant(&i.region_policy, &r.name, &r.jurisdiction, i.job_type.as_str());
        let accepts = |r: &JobRegion| matches!(
            gate(r.mode, r.pressure.overall, i.estimated_cost_cents, r.small_job_max_cents),
            Gate::Accept { .. }
        );
        let compliant: Vec<&JobRegion> = i.regions.iter().filter(|r| ok(r)).collect();
        let funded: Vec<&&JobRegion> = compliant.iter().filter(|r| r.budget_ok).collect();
        let open: Vec<&&&JobRegion> = funded.iter().filter(|r| accepts(r)).collect();
        let out = route_job(&i);
        prop_assert_eq!(&out, &route_job(&i));
        match &out {
            Ok(j) => {
                let r = i.regions.iter().find(|r| r.name == j.region).unwrap();
                prop_assert!(ok(r) && r.budget_ok && accepts(r));
                prop_assert!((1..=10).contains(&j.priority));
                prop_assert!(j.priority <= i.priority);
                let home = i.region.as_ref().or(i.region_policy.home_region.as_ref());
                let home_open = home.is_some_and(|h| open.iter().any(|r| r.name == *h));
                prop_assert_eq!(j.fallback, home.is_some() && !home_open);
                if home_open {
                    prop_assert_eq!(Some(&j.region), home);
                }
            }
            Err(JobRouteError::NoCompliantRegion) => prop_assert!(compliant.is_empty()),
            Err(JobRouteError::InsufficientBudget) => prop_assert!(!compliant.is_empty() && funded.is_empty()),
            Err(JobRouteError::NoAvailableRegion) => prop_assert!(!funded.is_empty() && open.is_empty()),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
        prop_assert_eq!(out.is_ok(), !open.is_empty());
    }
}
