//! Properties of workload routing over thousands of random worlds: an
//! answer never names a non-compliant, frozen, ejected or full region;
//! `no_compliant_region` comes exactly when no region is compliant; a
//! request is never refused while a compliant, non-frozen, non-ejected
//! region has a pool of the agent type with spare capacity; the same input
//! (also after a serde round trip, as a stored decision is replayed) gives
//! the same decision. proptest prints the failing world when one breaks.

use std::collections::BTreeMap;

use fleetscale_core::region::compliance::{is_compliant, RegionPolicy};
use fleetscale_core::region::mode::ScalingMode;
use fleetscale_core::region::routing::{
    route, ExcludedBy, PoolCapacity, RegionView, RouteError, RouteInput, RoutingPolicy,
};
use proptest::prelude::*;

const NOW: i64 = 1_714_550_400_000;
const JURISDICTIONS: [&str; 4] = ["eu", "us", "ap", "in"];
const WORKLOADS: [&str; 3] = ["support", "voice", "batch"];
const AGENTS: [&str; 2] = ["chat", "voice"];
/// Names used by policies: more than there are regions, so policies also
/// name regions that do not exist in the world.
const NAMES: [&str; 8] = ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"];

fn mode() -> impl Strategy<Value = ScalingMode> {
    prop_oneof![
        Just(ScalingMode::Normal),
        Just(ScalingMode::Cautious),
        Just(ScalingMode::Throttled),
        Just(ScalingMode::Frozen),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES.to_vec()).prop_map(str::to_string)
}

fn names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(name(), 0..5)
}

fn pool() -> impl Strategy<Value = PoolCapacity> {
    (prop::sample::select(AGENTS.to_vec()), 0u32..6, 0u32..3).prop_map(|(a, max, spare_raw)| {
        PoolCapacity {
            pool: "p".into(),
            agent_type: a.into(),
            spare: spare_raw.min(max),
            max,
        }
    })
}

fn region_spec() -> impl Strategy<
    Value = (
        String,
        ScalingMode,
        Vec<u32>,
        Vec<PoolCapacity>,
        Option<i64>,
    ),
> {
    (
        prop::sample::select(JURISDICTIONS.to_vec()).prop_map(str::to_string),
        mode(),
        prop::collection::vec(0u32..2_000, 0..12),
        prop::collection::vec(pool(), 0..3),
        prop::option::of(-60_000i64..60_000).prop_map(|o| o.map(|d| NOW + d)),
    )
}

fn regions() -> impl Strategy<Value = Vec<RegionView>> {
    prop::collection::vec(region_spec(), 0..7).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (jurisdiction, mode, lat, pools, ej))| RegionView {
                name: NAMES[i].into(),
                jurisdiction,
                mode,
                latency_samples_ms: lat,
                pools,
                ejected_until_ms: ej,
            })
            .collect()
    })
}

fn region_policy() -> impl Strategy<Value = RegionPolicy> {
    (
        prop::option::of(prop::collection::vec(
            prop::sample::select(JURISDICTIONS.to_vec()).prop_map(str::to_string),
            1..4,
        )),
        prop::option::of(prop::sample::select(JURISDICTIONS.to_vec()).prop_map(str::to_string)),
        prop::collection::btree_map(
            name(),
            prop::collection::vec(
                prop::sample::select(WORKLOADS.to_vec()).prop_map(str::to_string),
                0..3,
            ),
            0..4,
        ),
    )
        .prop_map(
            |(allowed_jurisdictions, data_residency, restricted_workloads)| RegionPolicy {
                allowed_jurisdictions,
                data_residency,
                restricted_workloads,
                home_region: None,
            },
        )
}

fn routing_policy() -> impl Strategy<Value = RoutingPolicy> {
    let w = prop::sample::select(vec![0.0, 0.25, 0.4, 0.6, 1.0]);
    prop_oneof![
        (w.clone(), w, prop::sample::select(vec![0.0, 10.0, 50.0])).prop_map(|(l, c, b)| {
            RoutingPolicy::Score {
                latency_weight: l,
                capacity_weight: c,
                preferred_bonus: b,
            }
        }),
        Just(RoutingPolicy::Latency),
        prop::collection::btree_map(
            prop::sample::select(vec!["DE", "US", "US-CA", "default"]).prop_map(str::to_string),
            names(),
            0..4,
        )
        .prop_map(|map| RoutingPolicy::Geolocation { map }),
        prop::collection::btree_map(name(), 0u32..4, 0..6)
            .prop_map(|weights| RoutingPolicy::Weighted { weights }),
        names().prop_map(|order| RoutingPolicy::Failover { order }),
    ]
}

fn route_input() -> impl Strategy<Value = RouteInput> {
    (
        region_policy(),
        routing_policy(),
        prop::sample::select(WORKLOADS.to_vec()),
        prop::sample::select(AGENTS.to_vec()),
        names(),
        prop::option::of(prop::sample::select(vec!["DE", "US-CA", "us", "FR"])),
        "[a-z0-9-]{0,12}",
        regions(),
    )
        .prop_map(
            |(
                region_policy,
                routing_policy,
                w,
                a,
                preferred_regions,
                country,
                request_id,
                regions,
            )| {
                RouteInput {
                    tenant_id: "t".into(),
                    region_policy,
                    routing_policy,
                    workload_type: w.into(),
                    agent_type: a.into(),
                    preferred_regions,
                    client_country: country.map(str::to_string),
                    request_id,
                    now_ms: NOW,
                    regions,
                }
            },
        )
}

fn compliant(i: &RouteInput, r: &RegionView) -> bool {
    is_compliant(&i.region_policy, &r.name, &r.jurisdiction, &i.workload_type)
}

fn can_take(i: &RouteInput, r: &RegionView) -> bool {
    r.mode != ScalingMode::Frozen
        && r.ejected_until_ms.is_none_or(|u| u <= i.now_ms)
        && r.pools
            .iter()
            .any(|p| p.agent_type == i.agent_type && p.spare > 0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

    #[test]
    fn routing_respects_compliance_and_never_refuses_needlessly(i in route_input()) {
        let any_compliant = i.regions.iter().any(|r| compliant(&i, r));
        let any_available = i.regions.iter().any(|r| compliant(&i, r) && can_take(&i, r));
        let out = route(&i);
        match &out {
            Ok(d) => {
                let r = i.regions.iter().find(|r| r.name == d.selected_region).expect("a known region");
                prop_assert!(compliant(&i, r), "non-compliant {}", r.name);
                prop_assert!(can_take(&i, r), "unavailable {}", r.name);
                for c in &d.candidates {
                    let r = i.regions.iter().find(|r| r.name == c.region).unwrap();
                    prop_assert_eq!(c.compliant, compliant(&i, r));
                    prop_assert_eq!(c.eligible, compliant(&i, r) && can_take(&i, r));
                    prop_assert_eq!(c.eligible, c.excluded_by.is_none());
                    prop_assert_eq!(c.score.is_some(), c.compliant);
                    if !c.compliant {
                        prop_assert_eq!(c.excluded_by, Some(ExcludedBy::NonCompliant));
                    }
                }
            }
            Err(RouteError::NoCompliantRegion { .. }) => prop_assert!(!any_compliant),
            Err(RouteError::NoAvailableRegion { .. }) => {
                prop_assert!(any_compliant);
                prop_assert!(!any_available, "refused while a compliant region could take it");
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
        prop_assert_eq!(out.is_err() && !any_compliant, matches!(out, Err(RouteError::NoCompliantRegion { .. })));
        prop_assert_eq!(out.is_ok(), any_available);
    }

    #[test]
    fn routing_is_deterministic_and_replays_after_serde(i in route_input()) {
        let first = route(&i);
        prop_assert_eq!(&first, &route(&i));
        let stored = serde_json::to_string(&i).unwrap();
        let replayed: RouteInput = serde_json::from_str(&stored).unwrap();
        prop_assert_eq!(&replayed, &i);
        prop_assert_eq!(&first, &route(&replayed));
        // region order in the input does not matter
        let mut rev = i.clone();
        rev.regions.reverse();
        prop_assert_eq!(
            first.map(|d| d.selected_region),
            route(&rev).map(|d| d.selected_region)
        );
    }
}

/// The first eligible region among `names`, in order.
fn first_named(
    d: &fleetscale_core::region::routing::RouteDecision,
    names: &[String],
) -> Option<String> {
    names
        .iter()
        .find(|n| d.candidates.iter().any(|c| c.region == **n && c.eligible))
        .cloned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Each policy's own order: `score` picks a highest-scored eligible
    /// region; `failover` the first eligible named region when there is one;
    /// `geolocation` without a country the first eligible `default` region;
    /// `weighted` a positive-weight region whenever one is eligible.
    #[test]
    fn each_policy_follows_its_order(i in route_input()) {
        let Ok(d) = route(&i) else { return Ok(()) };
        let best = d
            .candidates
            .iter()
            .filter(|c| c.eligible)
            .filter_map(|c| c.score)
            .fold(f64::NEG_INFINITY, f64::max);
        match &i.routing_policy {
            RoutingPolicy::Score { .. } => prop_assert_eq!(d.score, best),
            RoutingPolicy::Failover { order } => {
                if let Some(f) = first_named(&d, order) {
                    prop_assert_eq!(&d.selected_region, &f);
                } else {
                    prop_assert_eq!(d.score, best);
                }
            }
            RoutingPolicy::Geolocation { map } if i.client_country.is_none() => {
                let default = map.get("default").cloned().unwrap_or_default();
                if let Some(f) = first_named(&d, &default) {
                    prop_assert_eq!(&d.selected_region, &f);
                } else {
                    prop_assert_eq!(d.score, best);
                }
            }
            RoutingPolicy::Weighted { weights } => {
                let positive: Vec<String> =
                    weights.iter().filter(|(_, w)| **w > 0).map(|(n, _)| n.clone()).collect();
                if first_named(&d, &positive).is_some() {
                    prop_assert!(positive.contains(&d.selected_region));
                }
            }
            _ => {}
        }
    }
}

#[test]
fn weighted_map_with_unknown_names_still_routes() {
    let i = RouteInput {
        tenant_id: "t".into(),
        region_policy: RegionPolicy::default(),
        routing_policy: RoutingPolicy::Weighted {
            weights: BTreeMap::from([("nowhere".to_string(), 5)]),
        },
        workload_type: "support".into(),
        agent_type: "chat".into(),
        preferred_regions: vec![],
        client_country: None,
        request_id: "r".into(),
        now_ms: NOW,
        regions: vec![RegionView {
            name: "r0".into(),
            jurisdiction: "eu".into(),
            mode: ScalingMode::Cautious,
            latency_samples_ms: vec![],
            pools: vec![PoolCapacity {
                pool: "p".into(),
                agent_type: "chat".into(),
                spare: 1,
                max: 1,
            }],
            ejected_until_ms: None,
        }],
    };
    assert_eq!(route(&i).unwrap().selected_region, "r0");
}
