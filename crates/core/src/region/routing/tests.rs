//! Table tests for workload routing, one group per policy.

use super::*;

fn region(name: &str, jur: &str, lat: &[u32], spare: u32, max: u32) -> RegionView {
    RegionView {
        name: name.into(),
        jurisdiction: jur.into(),
        mode: ScalingMode::Normal,
        latency_samples_ms: lat.to_vec(),
        pools: vec![PoolCapacity {
            pool: format!("{name}-p"),
            agent_type: "chat".into(),
            spare,
            max,
        }],
        ejected_until_ms: None,
    }
}

fn input(policy: RoutingPolicy, regions: Vec<RegionView>) -> RouteInput {
    RouteInput {
        tenant_id: "t1".into(),
        region_policy: RegionPolicy::default(),
        routing_policy: policy,
        workload_type: "support".into(),
        agent_type: "chat".into(),
        preferred_regions: vec![],
        client_country: None,
        request_id: "req-1".into(),
        now_ms: 1_000_000,
        regions,
    }
}

fn world() -> Vec<RegionView> {
    vec![
        region("eu-west", "eu", &[100], 5, 10), // 0.6*90 + 0.4*50 = 74
        region("us-east", "us", &[300], 10, 10), // 0.6*70 + 0.4*100 = 82
        region("ap-south", "ap", &[], 10, 10),  // 0.6*0 + 40 = 40
    ]
}

fn selected(i: &RouteInput) -> String {
    route(i).expect("routed").selected_region
}

#[test]
fn score_formula_and_default_weights() {
    let d = route(&input(RoutingPolicy::default(), world())).unwrap();
    assert_eq!(d.selected_region, "us-east");
    assert!((d.score - 82.0).abs() < 1e-9);
    let eu = d.candidates.iter().find(|c| c.region == "eu-west").unwrap();
    assert!((eu.score.unwrap() - 74.0).abs() < 1e-9);
    assert_eq!(
        d.candidates
            .iter()
            .map(|c| c.region.as_str())
            .collect::<Vec<_>>(),
        ["ap-south", "eu-west", "us-east"]
    );
    // latency weight only: eu-west wins
    let p = RoutingPolicy::Score {
        latency_weight: 1.0,
        capacity_weight: 0.0,
        preferred_bonus: 10.0,
    };
    assert_eq!(selected(&input(p, world())), "eu-west");
}

#[test]
fn score_latency_mean_of_last_ten_and_default() {
    assert_eq!(mean_latency_ms(&[]), 1_000.0);
    let mut s = vec![10_000; 5];
    s.extend([100; 10]);
    assert_eq!(mean_latency_ms(&s), 100.0);
    assert_eq!(latency_score(1_500.0), 0.0);
    assert_eq!(latency_score(250.0), 75.0);
    assert_eq!(ewma_latency_ms(&[]), None);
    assert!((ewma_latency_ms(&[100, 200]).unwrap() - 130.0).abs() < 1e-9);
}

#[test]
fn score_preferred_bonus_and_ties() {
    let mut i = input(RoutingPolicy::default(), world());
    i.preferred_regions = vec!["eu-west".into()];
    // 74 + 10 = 84 > 82
    assert_eq!(selected(&i), "eu-west");
    // ties: preference order, then name
    let same = vec![
        region("b", "eu", &[100], 1, 1),
        region("a", "eu", &[100], 1, 1),
        region("c", "eu", &[100], 1, 1),
    ];
    let mut i = input(
        RoutingPolicy::Score {
            latency_weight: 0.6,
            capacity_weight: 0.4,
            preferred_bonus: 0.0,
        },
        same,
    );
    assert_eq!(selected(&i), "a");
    i.preferred_regions = vec!["c".into(), "b".into()];
    assert_eq!(selected(&i), "c");
}

#[test]
fn score_spills_past_unavailable_regions() {
    let mut w = world();
    w[1].mode = ScalingMode::Frozen; // us-east
    let d = route(&input(RoutingPolicy::default(), w.clone())).unwrap();
    assert_eq!(d.selected_region, "eu-west");
    assert!(
        d.reason.contains("spilled past us-east (frozen)"),
        "{}",
        d.reason
    );
    w[0].ejected_until_ms = Some(1_000_001); // eu-west ejected
    assert_eq!(
        selected(&input(RoutingPolicy::default(), w.clone())),
        "ap-south"
    );
    w[0].ejected_until_ms = Some(1_000_000); // ejection over exactly now
    assert_eq!(
        selected(&input(RoutingPolicy::default(), w.clone())),
        "eu-west"
    );
    w[0].pools[0].spare = 0;
    let d = route(&input(RoutingPolicy::default(), w)).unwrap();
    assert_eq!(d.selected_region, "ap-south");
    let eu = d.candidates.iter().find(|c| c.region == "eu-west").unwrap();
    assert_eq!(
        (eu.eligible, eu.excluded_by),
        (false, Some(ExcludedBy::NoSpareCapacity))
    );
}

#[test]
fn other_agent_types_do_not_count() {
    let mut w = world();
    for r in &mut w {
        r.pools[0].agent_type = "voice".into();
    }
    let err = route(&input(RoutingPolicy::default(), w)).unwrap_err();
    assert_eq!(err.code(), "no_available_region");
}

#[test]
fn compliance_comes_first_and_errors_are_distinct() {
    let mut i = input(
        RoutingPolicy::Failover {
            order: vec!["us-east".into(), "eu-west".into()],
        },
        world(),
    );
    i.region_policy.data_residency = Some("eu".into());
    let d = route(&i).unwrap();
    assert_eq!(d.selected_region, "eu-west");
    let us = d.candidates.iter().find(|c| c.region == "us-east").unwrap();
    assert_eq!(
        (us.compliant, us.excluded_by, us.score),
        (false, Some(ExcludedBy::NonCompliant), None)
    );
    // restricted there too: nothing compliant
    i.region_policy
        .restricted_workloads
        .insert("eu-west".into(), vec!["support".into()]);
    let e = route(&i).unwrap_err();
    assert_eq!(e.code(), "no_compliant_region");
    // compliant but frozen: no available region
    i.region_policy.restricted_workloads.clear();
    i.regions[0].mode = ScalingMode::Frozen;
    assert_eq!(route(&i).unwrap_err().code(), "no_available_region");
    // no regions at all
    assert_eq!(
        route(&input(RoutingPolicy::default(), vec![]))
            .unwrap_err()
            .code(),
        "no_compliant_region"
    );
}

#[test]
fn latency_policy_uses_ewma_then_score_order() {
    let w = vec![
        region("a", "eu", &[50, 500], 1, 10),  // ewma 185
        region("b", "eu", &[200, 150], 1, 10), // ewma 0.3*150 + 0.7*200 = 185
        region("c", "eu", &[180], 1, 10),
        region("d", "eu", &[], 10, 10),
    ];
    assert_eq!(selected(&input(RoutingPolicy::Latency, w.clone())), "c");
    let mut w2 = w.clone();
    w2[2].mode = ScalingMode::Frozen;
    // a and b tie on EWMA: score order decides (b has the lower mean latency)
    assert_eq!(selected(&input(RoutingPolicy::Latency, w2.clone())), "b");
    for r in w2.iter_mut().take(3) {
        r.pools[0].spare = 0;
    }
    // only the region without data is left
    assert_eq!(selected(&input(RoutingPolicy::Latency, w2)), "d");
}

#[test]
fn geolocation_most_specific_then_default_then_rest() {
    let map = BTreeMap::from([
        ("DE".to_string(), vec!["eu-west".to_string()]),
        ("US-CA".to_string(), vec!["ap-south".to_string()]),
        ("default".to_string(), vec!["ap-south".to_string()]),
    ]);
    let p = RoutingPolicy::Geolocation { map };
    let mut i = input(p, world());
    let table = [
        (Some("DE"), "eu-west"),
        (Some("de"), "eu-west"),
        (Some("DE-BY"), "eu-west"),
        (Some("US-CA"), "ap-south"),
        (Some("FR"), "ap-south"),
        (None, "ap-south"),
    ];
    for (country, want) in table {
        i.client_country = country.map(str::to_string);
        assert_eq!(selected(&i), want, "{country:?}");
    }
    // mapped and default regions full: spill to the rest in score order
    i.client_country = Some("DE".into());
    i.regions[0].pools[0].spare = 0;
    assert_eq!(selected(&i), "ap-south");
    i.regions[2].pools[0].spare = 0;
    assert_eq!(selected(&i), "us-east");
}

#[test]
fn weighted_shares_are_deterministic_and_proportional() {
    let weights = BTreeMap::from([
        ("eu-west".to_string(), 3),
        ("us-east".to_string(), 1),
        ("ap-south".to_string(), 0),
    ]);
    let mut i = input(RoutingPolicy::Weighted { weights }, world());
    let mut counts = BTreeMap::<String, u32>::new();
    for n in 0..4_000 {
        i.request_id = format!("req-{n}");
        let a = selected(&i);
        assert_eq!(a, selected(&i), "deterministic");
        *counts.entry(a).or_default() += 1;
    }
    let eu = f64::from(counts["eu-west"]) / 4_000.0;
    assert!((0.70..0.80).contains(&eu), "{counts:?}");
    assert!(
        !counts.contains_key("ap-south"),
        "weight 0 unused while others are in"
    );
    // all positive-weight regions out: weight 0 region is used
    i.regions[0].mode = ScalingMode::Frozen;
    i.regions[1].pools[0].spare = 0;
    assert_eq!(selected(&i), "ap-south");
    // only one positive region eligible: it takes everything
    let mut i2 = i.clone();
    i2.regions[1].pools[0].spare = 3;
    for n in 0..50 {
        i2.request_id = format!("x{n}");
        assert_eq!(selected(&i2), "us-east");
    }
}

#[test]
fn failover_order_then_unnamed_in_score_order() {
    let p = RoutingPolicy::Failover {
        order: vec!["ap-south".into(), "eu-west".into()],
    };
    let mut i = input(p, world());
    assert_eq!(selected(&i), "ap-south");
    i.regions[2].ejected_until_ms = Some(i.now_ms + 1);
    assert_eq!(selected(&i), "eu-west");
    i.regions[0].mode = ScalingMode::Frozen;
    assert_eq!(selected(&i), "us-east");
    // cautious and throttled regions still take work
    i.regions[1].mode = ScalingMode::Throttled;
    assert_eq!(selected(&i), "us-east");
}

#[test]
fn policy_validation_names_fields() {
    let known = ["eu-west", "us-east"];
    let fields = |p: &RoutingPolicy| -> Vec<String> {
        validate_routing_policy(p, &known)
            .err()
            .map(|v| v.0.into_iter().map(|e| e.field).collect())
            .unwrap_or_default()
    };
    assert!(fields(&RoutingPolicy::default()).is_empty());
    assert!(fields(&RoutingPolicy::Latency).is_empty());
    let geo = RoutingPolicy::Geolocation {
        map: BTreeMap::from([("DE".into(), vec!["eu-west".into(), "mars".into()])]),
    };
    assert_eq!(fields(&geo), ["map.default", "map.DE[1]"]);
    let w = RoutingPolicy::Weighted {
        weights: BTreeMap::from([("mars".into(), 1)]),
    };
    assert_eq!(fields(&w), ["weights.mars"]);
    let f = RoutingPolicy::Failover {
        order: vec!["eu-west".into(), "eu-west".into(), "x".into()],
    };
    assert_eq!(fields(&f), ["order[1]", "order[2]"]);
    let s = RoutingPolicy::Score {
        latency_weight: 1.5,
        capacity_weight: f64::NAN,
        preferred_bonus: 0.0,
    };
    assert_eq!(fields(&s), ["latency_weight", "capacity_weight"]);
}

#[test]
fn policy_json_shapes() {
    let p: RoutingPolicy = serde_json::from_str(r#"{"type":"score"}"#).unwrap();
    assert_eq!(p, RoutingPolicy::default());
    let p: RoutingPolicy =
        serde_json::from_str(r#"{"type":"weighted","weights":{"eu-west":3,"us-east":1}}"#).unwrap();
    assert_eq!(p.kind(), "weighted");
    let p: RoutingPolicy = serde_json::from_str(
        r#"{"type":"geolocation","map":{"DE":["eu-west"],"default":["us-east"]}}"#,
    )
    .unwrap();
    assert_eq!(p.kind(), "geolocation");
    let p: RoutingPolicy =
        serde_json::from_str(r#"{"type":"failover","order":["eu-west","us-east"]}"#).unwrap();
    assert_eq!(p.kind(), "failover");
    assert!(serde_json::from_str::<RoutingPolicy>(r#"{"type":"score","bogus":1}"#).is_err());
    assert!(serde_json::from_str::<RoutingPolicy>(r#"{"type":"nope"}"#).is_err());
}

#[test]
fn serde_round_trip_replays_the_same_decision() {
    let mut i = input(RoutingPolicy::default(), world());
    i.preferred_regions = vec!["ap-south".into()];
    i.client_country = Some("DE".into());
    let json = serde_json::to_string(&i).unwrap();
    let back: RouteInput = serde_json::from_str(&json).unwrap();
    assert_eq!(back, i);
    assert_eq!(route(&back), route(&i));
    let d = route(&i).unwrap();
    let dj: RouteDecision = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
    assert_eq!(dj, d);
}

#[test]
fn ejection_after_five_failures_growing_to_300s() {
    let mut e = Ejection::default();
    let mut now = 0;
    for k in 1..=12_i64 {
        for f in 1..=5 {
            assert!(!e.is_ejected(now));
            e = e.record(false, now);
            if f < 5 {
                assert_eq!(e.consecutive_failures, f);
            }
        }
        let want = (30_000 * k).min(300_000);
        assert_eq!(e.ejected_until_ms, Some(now + want), "ejection {k}");
        assert!(e.is_ejected(now + want - 1));
        assert!(!e.is_ejected(now + want));
        now += want;
    }
    // a success resets the consecutive count
    let mut e = Ejection::default();
    for _ in 0..4 {
        e = e.record(false, 0);
    }
    e = e.record(true, 0);
    assert_eq!(e.consecutive_failures, 0);
    e = e.record(false, 0);
    assert!(!e.is_ejected(0));
}

#[test]
fn reason_text_names_policy_choice_and_figures() {
    let d = route(&input(RoutingPolicy::default(), world())).unwrap();
    assert_eq!(
        d.reason,
        "score policy: us-east is choice 1 of 3 compliant regions (score 82.0, latency 300.0 ms, capacity 100.0)"
    );
    let mut w = world();
    w[1].mode = ScalingMode::Frozen;
    w[0].pools[0].spare = 0;
    let d = route(&input(RoutingPolicy::default(), w)).unwrap();
    assert!(
        d.reason
            .ends_with("; spilled past us-east (frozen), eu-west (no_spare_capacity)"),
        "{}",
        d.reason
    );
}

#[test]
fn tenths_formatting() {
    let table = [
        (0.0, "0.0"),
        (82.0, "82.0"),
        (1.25, "1.3"),
        (-0.04, "0.0"),
        (-2.5, "-2.5"),
        (99.96, "100.0"),
        (f64::NAN, "NaN"),
        (1e20, "100000000000000000000"),
    ];
    for (v, want) in table {
        assert_eq!(Tenths(v).to_string(), want, "{v}");
    }
}

#[test]
fn route_input_validation_names_fields() {
    let mut i = input(RoutingPolicy::default(), world());
    i.client_country = Some("US-CA".into());
    i.preferred_regions = vec!["eu-west".into()];
    assert!(validate_route_input(&i).is_ok());
    i.workload_type = String::new();
    i.agent_type = "bad type".into();
    i.request_id = " ".into();
    i.preferred_regions = vec!["eu-west".into(), "mars".into()];
    i.client_country = Some("D E".into());
    let fields: Vec<String> = validate_route_input(&i)
        .unwrap_err()
        .0
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(
        fields,
        [
            "workload_type",
            "agent_type",
            "request_id",
            "preferred_regions[1]",
            "client_country"
        ]
    );
}
