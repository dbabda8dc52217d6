//! Tests of the plan and the pre-write checks.

use super::*;
use crate::cli::config::doc::{TenantBudgetSpec, TenantSpec};
use proptest::prelude::*;

fn pool(region: &str, agent: &str, max: i64) -> PoolSpec {
    PoolSpec {
        region: region.into(),
        agent_type: agent.into(),
        min_capacity: Some(1),
        max_capacity: Some(max),
        capacity_per_instance: None,
        metric: None,
        mode: None,
        job_kind: None,
        scaling_policy: None,
        policies: None,
        metric_source: None,
        target: None,
    }
    .normalized()
}

fn region(name: &str, cents: Option<i64>) -> RegionSpec {
    RegionSpec {
        name: name.into(),
        jurisdiction: "eu".into(),
        monthly_budget_cents: cents,
    }
}

fn tenant(name: &str, pools: Vec<PoolSpec>) -> TenantSpec {
    TenantSpec {
        name: name.into(),
        region_policy: None,
        routing_policy: None,
        budget: None,
        pools: Some(pools),
    }
}

fn base() -> FleetDoc {
    FleetDoc {
        api_version: None,
        regions: vec![region("eu-west", Some(100_000)), region("us-east", Some(5))],
        tenants: vec![tenant(
            "acme",
            vec![pool("eu-west", "writer", 10), pool("us-east", "reader", 4)],
        )],
    }
}

fn lines(p: &Plan) -> Vec<String> {
    p.actions.iter().map(ToString::to_string).collect()
}

#[test]
fn the_state_itself_plans_all_unchanged() {
    let p = plan(&base(), &base(), true);
    assert!(p.is_noop());
    assert_eq!(p.counts().unchanged, 5);
}

#[test]
fn a_changed_file_plans_create_update_and_would_delete_in_dependency_order() {
    let mut want = base();
    want.regions.push(region("ap-south", None));
    let pools = want.tenants[0].pools.as_mut().unwrap();
    pools[0].max_capacity = Some(20);
    pools.remove(1);
    pools.push(pool("ap-south", "writer", 3));
    want.tenants.push(tenant("globex", vec![]));
    assert_eq!(
        lines(&plan(&want, &base(), false)),
        [
            "+ create region ap-south",
            "= unchanged region eu-west",
            "= unchanged region us-east",
            "= unchanged tenant acme",
            "+ create tenant globex",
            "+ create pool acme/ap-south/writer",
            "~ update pool acme/eu-west/writer\n    max_capacity: 10 -> 20",
            "- would delete pool acme/us-east/reader (with --prune)",
        ]
    );
    let pruned = plan(&want, &base(), true);
    assert_eq!(pruned.counts().delete, 1);
    assert_eq!(pruned.counts().would_delete, 0);
}

#[test]
fn a_plan_serializes_as_json_with_op_and_kind() {
    let mut want = base();
    want.tenants[0].pools.as_mut().unwrap()[0].max_capacity = Some(20);
    want.tenants[0].pools.as_mut().unwrap().remove(1);
    want.regions.push(region("ap-south", None));
    let v = serde_json::to_value(plan(&want, &base(), false)).unwrap();
    let ops: Vec<(&str, &str)> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["op"].as_str().unwrap(),
                a["object"]["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("create", "region"),
            ("unchanged", "region"),
            ("unchanged", "region"),
            ("unchanged", "tenant"),
            ("update", "pool"),
            ("would_delete", "pool"),
        ]
    );
    assert_eq!(v["actions"][4]["changes"][0]["field"], "max_capacity");
    assert_eq!(v["actions"][4]["changes"][0]["to"], 20);
}

#[test]
fn omitted_optional_sections_are_left_as_they_are() {
    let mut now = base();
    now.tenants[0].region_policy = Some(RegionPolicy {
        home_region: Some("eu-west".into()),
        ..RegionPolicy::default()
    });
    now.tenants[0].pools.as_mut().unwrap()[0].job_kind = Some("creative".into());
    now.tenants[0].budget = Some(TenantBudgetSpec {
        tier: Some("growth".into()),
        providers: BTreeMap::new(),
    });
    let mut want = now.clone();
    want.regions[0].monthly_budget_cents = None;
    want.tenants[0].region_policy = None;
    want.tenants[0].pools.as_mut().unwrap()[0].job_kind = None;
    want.tenants[0].budget = None;
    assert!(plan(&want, &now, true).is_noop());
    // Pools omitted: none listed, none deleted; `pools: []`: all deleted.
    want.tenants[0].pools = None;
    let p = plan(&want, &now, true);
    assert!(p.is_noop());
    assert!(!p.actions.iter().any(|a| a.object.kind() == "pool"));
    want.tenants[0].pools = Some(vec![]);
    assert_eq!(plan(&want, &now, true).counts().delete, 2);
}

#[test]
fn provider_budgets_not_listed_return_to_their_defaults() {
    let mut now = base();
    let mut providers = BTreeMap::new();
    providers.insert(
        "claude".to_string(),
        ProviderSpec {
            allocation_units: Some(5),
            price_cents_per_million: None,
            hard_limit: true,
        },
    );
    now.tenants[0].budget = Some(TenantBudgetSpec {
        tier: None,
        providers,
    });
    let mut want = base();
    want.tenants[0].budget = Some(TenantBudgetSpec::default());
    let l = lines(&plan(&want, &now, false));
    assert!(
        l.contains(
            &"~ update provider-budget acme/claude\n    allocation_units: 5 -> (none)\n    hard_limit: true -> false"
                .to_string()
        ),
        "{l:?}"
    );
}

#[test]
fn check_names_every_problem_before_anything_is_written() {
    let mut want = base();
    let pools = want.tenants[0].pools.as_mut().unwrap();
    pools[0].min_capacity = Some(12);
    pools.push(pool("mars-1", "writer", 3));
    want.regions[1].jurisdiction = "us".into();
    want.regions[0].monthly_budget_cents = Some(10);
    let problems: Vec<String> = check(&want, &base())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            "regions[0].monthly_budget_cents: is 100000 on the server and can only grow (allocations add to it)",
            "regions[1].jurisdiction: is eu on the server, and the API cannot change a region's jurisdiction",
            "tenants[0].pools[0].min_capacity: must be <= max_capacity",
            "tenants[0].pools[2].region: names region \"mars-1\", which is neither in the file nor on the server",
        ]
    );
    assert!(check(&base(), &base()).is_empty());
}

/// Applies a plan's writes to a state the way the server would (the
/// model the property test checks the plan against).
fn apply_model(state: &FleetDoc, p: &Plan) -> FleetDoc {
    let mut s = state.clone();
    for a in &p.actions {
        let t_of =
            |s: &mut FleetDoc, name: &str| s.tenants.iter().position(|t| t.name == name).unwrap();
        match (&a.op, &a.object) {
            (Op::Unchanged | Op::WouldDelete, _) => {}
            (Op::Create, Object::Region { spec }) => s.regions.push(spec.clone()),
            (Op::Update { .. }, Object::Region { spec }) => {
                let r = s.regions.iter_mut().find(|r| r.name == spec.name).unwrap();
                r.monthly_budget_cents = spec.monthly_budget_cents;
            }
            (Op::Create, Object::Tenant { name }) => s.tenants.push(tenant(name, vec![])),
            (_, Object::Pool { tenant, spec }) => {
                let i = t_of(&mut s, tenant);
                let pools = s.tenants[i].pools.get_or_insert_with(Vec::new);
                let old = pools.iter().position(|p| p.key() == spec.key());
                let kept_kind = old.and_then(|o| pools[o].job_kind.clone());
                if let Some(o) = old {
                    pools.remove(o);
                }
                if a.op != Op::Delete {
                    let mut spec = (**spec).clone();
                    spec.job_kind = spec.job_kind.or(kept_kind);
                    pools.push(spec);
                }
            }
            (op, other) => panic!("the model has no {op:?} of {other:?}"),
        }
    }
    s
}

fn arb_pool() -> impl Strategy<Value = PoolSpec> {
    (
        prop::sample::select(vec!["eu-west", "us-east", "ap-south"]),
        prop::sample::select(vec!["writer", "reader", "intel"]),
        0i64..5,
        5i64..50,
        prop::option::of(prop::sample::select(vec!["creative", "intel"])),
        prop::sample::select(vec!["autonomous", "recommend", "frozen"]),
    )
        .prop_map(|(r, a, min, max, kind, mode)| {
            let mut p = pool(r, a, max);
            p.min_capacity = Some(min);
            p.job_kind = kind.map(Into::into);
            p.mode = Some(mode.into());
            p.normalized()
        })
}

fn arb_doc() -> impl Strategy<Value = FleetDoc> {
    (
        prop::collection::vec(
            (
                prop::sample::select(vec!["eu-west", "us-east", "ap-south"]),
                prop::option::of(0i64..1000),
            ),
            0..3,
        ),
        prop::collection::vec(
            (
                prop::sample::select(vec!["acme", "globex"]),
                prop::collection::vec(arb_pool(), 0..5),
            ),
            0..3,
        ),
    )
        .prop_map(|(regions, tenants)| {
            let mut doc = FleetDoc::default();
            for (r, c) in regions {
                if !doc.regions.iter().any(|x| x.name == r) {
                    doc.regions.push(region(r, c));
                }
            }
            for (t, pools) in tenants {
                if doc.tenants.iter().any(|x| x.name == t) {
                    continue;
                }
                let mut unique: Vec<PoolSpec> = Vec::new();
                for p in pools {
                    if !unique.iter().any(|u| u.key() == p.key()) {
                        unique.push(p);
                    }
                }
                doc.tenants.push(tenant(t, unique));
            }
            doc
        })
}

proptest! {
    #[test]
    fn a_state_planned_against_itself_is_all_unchanged(state in arb_doc()) {
        let p = plan(&state, &state, true);
        prop_assert!(p.is_noop(), "{:?}", p);
    }

    #[test]
    fn applying_a_plan_yields_the_desired_state(desired in arb_doc(), current in arb_doc()) {
        // Regions only grow, as `check` demands.
        let mut desired = desired;
        for r in &mut desired.regions {
            if let Some(c) = current.regions.iter().find(|c| c.name == r.name) {
                r.jurisdiction.clone_from(&c.jurisdiction);
                r.monthly_budget_cents = r.monthly_budget_cents.max(c.monthly_budget_cents);
            }
        }
        let p = plan(&desired, &current, true);
        let after = apply_model(&current, &p);
        let again = plan(&desired, &after, true);
        prop_assert!(again.is_noop(), "{:?}", again);
        // Every desired pool is there, as the file says it.
        for t in &desired.canonical().tenants {
            let now = after.canonical();
            let got = now.tenants.iter().find(|x| x.name == t.name).unwrap();
            prop_assert_eq!(
                got.pools.as_ref().map_or(0, Vec::len),
                t.pools.as_ref().map_or(0, Vec::len)
            );
        }
    }
}
