//! Prints workload routing decisions per second in process, for 10 regions
//! and each routing policy (issue 15 target: ≥ 1,000,000/s on one core).
//! Run: `cargo bench -p fleetscale-core --bench routing`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use fleetscale_core::region::compliance::RegionPolicy;
use fleetscale_core::region::mode::ScalingMode;
use fleetscale_core::region::routing::{
    route, PoolCapacity, RegionView, RouteInput, RoutingPolicy,
};

const NOW: i64 = 1_714_550_400_000;

fn world(policy: RoutingPolicy) -> RouteInput {
    let regions = (0..10)
        .map(|i| RegionView {
            name: format!("region-{i}"),
            jurisdiction: ["eu", "us", "ap"][i % 3].into(),
            mode: [
                ScalingMode::Normal,
                ScalingMode::Cautious,
                ScalingMode::Frozen,
            ][i % 3],
            latency_samples_ms: (0..10).map(|k| 40 + 13 * i as u32 + k).collect(),
            pools: vec![PoolCapacity {
                pool: format!("p{i}"),
                agent_type: "chat".into(),
                spare: (i % 4) as u32,
                max: 10,
            }],
            ejected_until_ms: (i == 4).then_some(NOW + 1_000),
        })
        .collect();
    RouteInput {
        tenant_id: "t1".into(),
        region_policy: RegionPolicy {
            allowed_jurisdictions: Some(vec!["eu".into(), "us".into()]),
            restricted_workloads: BTreeMap::from([("region-0".into(), vec!["support".into()])]),
            ..RegionPolicy::default()
        },
        routing_policy: policy,
        workload_type: "support".into(),
        agent_type: "chat".into(),
        preferred_regions: vec!["region-3".into()],
        client_country: Some("DE".into()),
        request_id: "req-42".into(),
        now_ms: NOW,
        regions,
    }
}

fn rate(name: &str, min_time: Duration, mut f: impl FnMut()) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < min_time {
        for _ in 0..1_000 {
            f();
        }
        n += 1_000;
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "{name:<28} {:>12.0} decisions/s  ({n} in {s:.2}s)",
        n as f64 / s
    );
}

fn main() {
    let names = |v: &[usize]| v.iter().map(|i| format!("region-{i}")).collect::<Vec<_>>();
    let policies = [
        RoutingPolicy::default(),
        RoutingPolicy::Latency,
        RoutingPolicy::Geolocation {
            map: BTreeMap::from([
                ("DE".into(), names(&[2, 5])),
                ("default".into(), names(&[7])),
            ]),
        },
        RoutingPolicy::Weighted {
            weights: (0..10).map(|i| (format!("region-{i}"), i as u32)).collect(),
        },
        RoutingPolicy::Failover {
            order: names(&[2, 5, 8, 1]),
        },
    ];
    for p in policies {
        let input = world(p);
        let label = format!("route, 10 regions, {}", input.routing_policy.kind());
        rate(&label, Duration::from_secs(1), || {
            black_box(route(black_box(&input)).ok());
        });
    }
}
