//! The Kubernetes workload a pool scales (its `target`), and the pure rules
//! the Kubernetes actuator and the webhook follow: which instances a
//! scale-in removes ([`instances_to_remove`]) and when replicas still
//! starting hold a scale-out ([`coming_capacity_hold`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::Violations;

/// The workload kinds whose scale subresource the actuator drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
}

impl WorkloadKind {
    /// The kind as the Kubernetes API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
        }
    }

    /// Parses a kind name (exactly as the API spells it).
    pub fn parse(s: &str) -> Option<WorkloadKind> {
        match s {
            "Deployment" => Some(WorkloadKind::Deployment),
            "StatefulSet" => Some(WorkloadKind::StatefulSet),
            _ => None,
        }
    }
}

/// A pool's `target` as sent: which workload the Kubernetes actuator scales.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkloadTarget {
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    /// Namespace (a DNS-1123 label).
    pub namespace: String,
    /// Workload name (a DNS-1123 subdomain).
    pub name: String,
}

/// A validated workload target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadTarget {
    /// Workload kind.
    pub kind: WorkloadKind,
    /// Namespace (a DNS-1123 label, at most 63 characters).
    pub namespace: String,
    /// Name (a DNS-1123 subdomain, at most 253 characters).
    pub name: String,
}

impl WorkloadTarget {
    /// The raw form (what the API answers and a patch starts from).
    pub fn to_raw(&self) -> RawWorkloadTarget {
        RawWorkloadTarget {
            kind: self.kind.as_str().into(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

impl std::fmt::Display for WorkloadTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// Whether `s` is a DNS-1123 label: 1..=63 lowercase alphanumerics or `-`,
/// starting and ending with an alphanumeric.
#[must_use]
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| alnum(c) || *c == b'-')
        && alnum(&b[0])
        && alnum(&b[b.len() - 1])
}

/// Whether `s` is a DNS-1123 subdomain: at most 253 characters of
/// dot-separated DNS-1123 labels.
#[must_use]
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

impl RawWorkloadTarget {
    /// Checks every rule, pushing violations under `field` (`target.kind`,
    /// `target.namespace`, `target.name`).
    pub fn validate(&self, field: &str, v: &mut Violations) -> Option<WorkloadTarget> {
        let kind = WorkloadKind::parse(&self.kind);
        if kind.is_none() {
            v.push(
                format!("{field}.kind"),
                "must be one of Deployment, StatefulSet",
            );
        }
        let ns_ok = is_dns1123_label(&self.namespace);
        if !ns_ok {
            v.push(
                format!("{field}.namespace"),
                "must be a DNS-1123 label: 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit",
            );
        }
        let name_ok = is_dns1123_subdomain(&self.name);
        if !name_ok {
            v.push(
                format!("{field}.name"),
                "must be a DNS-1123 subdomain: at most 253 characters of '.'-separated DNS-1123 labels (lowercase letters, digits, '-')",
            );
        }
        match (kind, ns_ok && name_ok) {
            (Some(kind), true) => Some(WorkloadTarget {
                kind,
                namespace: self.namespace.clone(),
                name: self.name.clone(),
            }),
            _ => None,
        }
    }
}

/// The Kubernetes annotation the ReplicaSet and StatefulSet controllers
/// read: among pods of equal readiness, the lower cost is deleted first.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The deletion cost put on the pods a scale-in removes. Pods without the
/// annotation cost 0, so these go first; a pod the actuator marked earlier
/// but keeps this time has the annotation removed again.
pub const REMOVE_DELETION_COST: i32 = -100;

/// One instance that a scale-in may remove, with its in-flight work.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceLoad {
    /// The instance (pod) name.
    pub name: String,
    /// Its newest in-flight work reading, when it reports one.
    pub load: Option<f64>,
}

/// The `n` instances a scale-in removes, in removal order: those without a
/// load reading first (an instance that reports nothing is starting or
/// silent, the cheapest to lose, as Kubernetes itself removes not-ready pods
/// first), then by least in-flight work; ties by name, so the choice is
/// deterministic. Non-finite readings count as unknown. At most
/// `instances.len()` names; duplicates are taken once. Pure.
#[must_use]
pub fn instances_to_remove(instances: &[InstanceLoad], n: usize) -> Vec<String> {
    let mut unique: BTreeMap<&str, Option<f64>> = BTreeMap::new();
    for i in instances {
        let load = i.load.filter(|l| l.is_finite());
        unique
            .entry(i.name.as_str())
            .and_modify(|l| {
                if l.is_none() {
                    *l = load;
                }
            })
            .or_insert(load);
    }
    let mut ranked: Vec<(&str, Option<f64>)> = unique.into_iter().collect();
    ranked.sort_by(|a, b| match (a.1, b.1) {
        (None, None) => a.0.cmp(b.0),
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => x.total_cmp(&y).then_with(|| a.0.cmp(b.0)),
    });
    ranked
        .into_iter()
        .take(n)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// What the actuator last read of a pool's workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadStatus {
    /// `spec.replicas` of the scale subresource: the replicas asked for.
    pub desired: i64,
    /// `status.replicas`: the replicas that exist.
    pub replicas: i64,
    /// `status.readyReplicas`: the replicas ready to take work.
    pub ready: i64,
    /// When it was read, Unix ms.
    pub observed_at_ms: i64,
}

impl WorkloadStatus {
    /// Replicas asked for but not ready yet (starting or still being
    /// created): capacity that is coming.
    #[must_use]
    pub fn coming(&self) -> i64 {
        (self.desired - self.ready).max(0)
    }
}

/// How long replicas may take to become ready and still count as coming,
/// ms, from the pool's last scale-out. A replica not ready by then is
/// assumed broken: further scale-outs are no longer held for it.
pub const STARTUP_GRACE_MS: i64 = 600_000;

/// How old a workload status may be and still hold a scale-out, ms.
pub const STATUS_MAX_AGE_MS: i64 = 120_000;

/// Whether a scale-out from `current` to `target` is held because capacity
/// is still coming: the workload (read at most [`STATUS_MAX_AGE_MS`] ago)
/// has replicas asked for but not ready, it already asks for at least
/// `current` (the starting replicas are ours), and the last scale-out was
/// less than [`STARTUP_GRACE_MS`] ago. The measured load is what the ready
/// replicas carry; the starting ones will take their share once ready, so
/// the scale-out waits for them instead of adding more for the same load.
/// Returns the reason of the hold; `None` lets the change through (and
/// always for scale-in or no change). Pure.
#[must_use]
pub fn coming_capacity_hold(
    current: i64,
    target: i64,
    status: Option<&WorkloadStatus>,
    last_scale_up_at_ms: Option<i64>,
    now_ms: i64,
) -> Option<String> {
    if target <= current {
        return None;
    }
    let s = status?;
    if now_ms - s.observed_at_ms > STATUS_MAX_AGE_MS || s.desired < current {
        return None;
    }
    let coming = s.coming();
    if coming == 0 {
        return None;
    }
    let since = last_scale_up_at_ms?;
    if now_ms - since >= STARTUP_GRACE_MS {
        return None;
    }
    Some(format!(
        "scale-out to {target} held: {coming} of {} replicas still starting count as coming capacity ({} ready)",
        s.desired, s.ready
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: &str, ns: &str, name: &str) -> RawWorkloadTarget {
        RawWorkloadTarget {
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn target_rules_table() {
        let long_label = "a".repeat(64);
        let long_name = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62)
        );
        let ok_name = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        // (kind, namespace, name, violated fields)
        let cases: &[(&str, &str, &str, &[&str])] = &[
            ("Deployment", "agents", "writer", &[]),
            ("StatefulSet", "a-1", "writer.v2", &[]),
            ("Deployment", "agents", &ok_name, &[]),
            ("deployment", "agents", "writer", &["target.kind"]),
            ("DaemonSet", "agents", "writer", &["target.kind"]),
            ("Deployment", "Agents", "writer", &["target.namespace"]),
            ("Deployment", "agents.x", "writer", &["target.namespace"]),
            ("Deployment", "-agents", "writer", &["target.namespace"]),
            ("Deployment", &long_label, "writer", &["target.namespace"]),
            ("Deployment", "", "", &["target.namespace", "target.name"]),
            ("Deployment", "agents", "writer.", &["target.name"]),
            ("Deployment", "agents", "wri_ter", &["target.name"]),
            ("Deployment", "agents", &long_name, &["target.name"]),
            (
                "",
                "A",
                "B",
                &["target.kind", "target.namespace", "target.name"],
            ),
        ];
        for &(kind, ns, name, want) in cases {
            let mut v = Violations::default();
            let got = raw(kind, ns, name).validate("target", &mut v);
            let fields: Vec<&str> = v.0.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, want, "{kind:?} {ns:?} {name:?}");
            assert_eq!(got.is_some(), want.is_empty());
        }
    }

    #[test]
    fn target_round_trips_through_raw() {
        let mut v = Violations::default();
        let t = raw("StatefulSet", "agents", "writer")
            .validate("target", &mut v)
            .unwrap();
        assert_eq!(t.to_string(), "StatefulSet/agents/writer");
        assert_eq!(t.to_raw(), raw("StatefulSet", "agents", "writer"));
    }

    fn il(name: &str, load: Option<f64>) -> InstanceLoad {
        InstanceLoad {
            name: name.into(),
            load,
        }
    }

    #[test]
    fn removal_order_table() {
        let pods = [
            il("p-a", Some(5.0)),
            il("p-b", Some(0.0)),
            il("p-c", None),
            il("p-d", Some(2.0)),
            il("p-e", Some(0.0)),
            il("p-f", Some(f64::NAN)),
        ];
        // (n, expected removal)
        let cases: &[(usize, &[&str])] = &[
            (0, &[]),
            (1, &["p-c"]),
            (2, &["p-c", "p-f"]),
            (4, &["p-c", "p-f", "p-b", "p-e"]),
            (5, &["p-c", "p-f", "p-b", "p-e", "p-d"]),
            (9, &["p-c", "p-f", "p-b", "p-e", "p-d", "p-a"]),
        ];
        for &(n, want) in cases {
            assert_eq!(instances_to_remove(&pods, n), want, "n={n}");
        }
        assert!(instances_to_remove(&[], 3).is_empty());
        // A duplicate name is one instance, with its known reading.
        assert_eq!(
            instances_to_remove(&[il("x", None), il("x", Some(9.0)), il("y", Some(1.0))], 1),
            ["y"]
        );
    }

    fn st(desired: i64, ready: i64, at: i64) -> WorkloadStatus {
        WorkloadStatus {
            desired,
            replicas: desired,
            ready,
            observed_at_ms: at,
        }
    }

    #[test]
    fn coming_capacity_table() {
        let now = 10_000_000;
        let fresh = now - 1_000;
        let recent_up = Some(now - 60_000);
        // (current, target, status, last scale-up, held)
        type Case = (i64, i64, Option<WorkloadStatus>, Option<i64>, bool);
        let cases: &[Case] = &[
            (5, 8, Some(st(5, 3, fresh)), recent_up, true),
            (5, 8, Some(st(5, 5, fresh)), recent_up, false),
            (5, 8, Some(st(6, 5, fresh)), recent_up, true),
            (5, 8, Some(st(4, 2, fresh)), recent_up, false), // not ours: someone shrank it
            (5, 3, Some(st(5, 3, fresh)), recent_up, false), // scale-in never held
            (5, 5, Some(st(5, 3, fresh)), recent_up, false),
            (5, 8, None, recent_up, false),
            (
                5,
                8,
                Some(st(5, 3, now - STATUS_MAX_AGE_MS - 1)),
                recent_up,
                false,
            ),
            (5, 8, Some(st(5, 3, fresh)), None, false),
            (
                5,
                8,
                Some(st(5, 3, fresh)),
                Some(now - STARTUP_GRACE_MS),
                false,
            ),
            (
                5,
                8,
                Some(st(5, 3, fresh)),
                Some(now - STARTUP_GRACE_MS + 1),
                true,
            ),
            (0, 1, Some(st(0, 0, fresh)), recent_up, false),
        ];
        for (i, (current, target, status, up, held)) in cases.iter().enumerate() {
            let got = coming_capacity_hold(*current, *target, status.as_ref(), *up, now);
            assert_eq!(got.is_some(), *held, "case {i}: {got:?}");
        }
        let reason = coming_capacity_hold(5, 8, Some(&st(5, 3, fresh)), recent_up, now).unwrap();
        assert!(
            reason.contains("2 of 5 replicas still starting"),
            "{reason}"
        );
    }
}
