//! Properties of the scale-in removal ranking
//! ([`fleetscale_core::workload::instances_to_remove`]), shared by the
//! Kubernetes actuator's deletion costs and the webhook's `remove_instances`.

use std::collections::BTreeSet;

use fleetscale_core::workload::{instances_to_remove, InstanceLoad};
use proptest::prelude::*;

fn instances() -> impl Strategy<Value = Vec<InstanceLoad>> {
    prop::collection::vec(
        (
            "[a-e][0-9]",
            prop::option::of(prop_oneof![0.0..100.0f64, Just(f64::NAN), Just(0.0)]),
        ),
        0..24,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(name, load)| InstanceLoad { name, load })
            .collect()
    })
}

proptest! {
    /// min(n, distinct instances) distinct names, each one of the inputs.
    #[test]
    fn removes_n_distinct_known_instances(pods in instances(), n in 0usize..30) {
        let out = instances_to_remove(&pods, n);
        let names: BTreeSet<&str> = pods.iter().map(|p| p.name.as_str()).collect();
        prop_assert_eq!(out.len(), n.min(names.len()));
        let distinct: BTreeSet<&str> = out.iter().map(String::as_str).collect();
        prop_assert_eq!(distinct.len(), out.len());
        prop_assert!(out.iter().all(|o| names.contains(o.as_str())));
    }

    /// No kept instance has less work than a removed one (unknown counts as
    /// least), and removing more extends the removal of fewer (a prefix).
    #[test]
    fn never_keeps_an_idler_instance(pods in instances(), n in 0usize..30) {
        let out = instances_to_remove(&pods, n);
        let load = |name: &str| -> f64 {
            let known = pods
                .iter()
                .filter(|p| p.name == name)
                .filter_map(|p| p.load.filter(|l| l.is_finite()))
                .next();
            known.unwrap_or(f64::NEG_INFINITY)
        };
        let removed: BTreeSet<&str> = out.iter().map(String::as_str).collect();
        let worst_removed = out.iter().map(|o| load(o)).fold(f64::NEG_INFINITY, f64::max);
        for p in &pods {
            if !removed.contains(p.name.as_str()) {
                prop_assert!(load(&p.name) >= worst_removed, "kept {} ({}) over a removed one ({})", p.name, load(&p.name), worst_removed);
            }
        }
        let more = instances_to_remove(&pods, n + 1);
        prop_assert_eq!(&more[..out.len()], &out[..]);
    }
}
