//! Tenant region policy (phase 93 GRH rules) and the compliance filter.
//!
//! A region is **compliant** for a request when (1) its jurisdiction is in
//! `allowed_jurisdictions` (or that is `None`, meaning any), (2) its
//! jurisdiction equals `data_residency` when one is set, and (3) the
//! workload type is not listed in `restricted_workloads[<region name>]`.
//! Jurisdictions compare ASCII-case-insensitively; region names and
//! workload types compare exactly. Compliance is a hard filter applied
//! before any score, weight, fallback, failover or ejection logic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::Violations;

/// A tenant's region policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegionPolicy {
    /// Jurisdictions the tenant's work may run in; `None` for any.
    pub allowed_jurisdictions: Option<Vec<String>>,
    /// The one jurisdiction the tenant's data must stay in, if any.
    pub data_residency: Option<String>,
    /// Per region name, the workload types that must not run there.
    pub restricted_workloads: BTreeMap<String, Vec<String>>,
    /// The tenant's home region name for job routing, if any.
    pub home_region: Option<String>,
}

/// Checks a policy against the known region names; reports every problem
/// at once, each naming its field (e.g. `restricted_workloads.eu-west`,
/// `allowed_jurisdictions[1]`, `home_region`).
pub fn validate_region_policy(
    policy: &RegionPolicy,
    known_regions: &[&str],
) -> Result<(), Violations> {
    let mut v = Violations::default();
    if let Some(list) = &policy.allowed_jurisdictions {
        if list.is_empty() {
            v.push(
                "allowed_jurisdictions",
                "must not be empty (use null for any)",
            );
        }
        for (i, j) in list.iter().enumerate() {
            v.check_name(&format!("allowed_jurisdictions[{i}]"), j);
        }
    }
    if let Some(r) = &policy.data_residency {
        v.check_name("data_residency", r);
        if let Some(list) = &policy.allowed_jurisdictions {
            if !list.iter().any(|j| j.eq_ignore_ascii_case(r)) {
                v.push("data_residency", "must be one of allowed_jurisdictions");
            }
        }
    }
    for (region, workloads) in &policy.restricted_workloads {
        let field = format!("restricted_workloads.{region}");
        if !known_regions.contains(&region.as_str()) {
            v.push(&field, "must name a known region");
        }
        for (i, w) in workloads.iter().enumerate() {
            v.check_name(&format!("{field}[{i}]"), w);
        }
    }
    if let Some(home) = &policy.home_region {
        if !known_regions.contains(&home.as_str()) {
            v.push("home_region", "must name a known region");
        }
    }
    v.into_result(())
}

/// True when `region` (with `jurisdiction`) is compliant for
/// `workload_type` under `policy` (see the module doc).
#[must_use]
pub fn is_compliant(
    policy: &RegionPolicy,
    region: &str,
    jurisdiction: &str,
    workload_type: &str,
) -> bool {
    let allowed = policy
        .allowed_jurisdictions
        .as_ref()
        .is_none_or(|l| l.iter().any(|j| j.eq_ignore_ascii_case(jurisdiction)));
    let resident = policy
        .data_residency
        .as_ref()
        .is_none_or(|r| r.eq_ignore_ascii_case(jurisdiction));
    let unrestricted = policy
        .restricted_workloads
        .get(region)
        .is_none_or(|l| !l.iter().any(|w| w == workload_type));
    allowed && resident && unrestricted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RegionPolicy {
        RegionPolicy {
            allowed_jurisdictions: Some(vec!["eu".into(), "us".into()]),
            data_residency: None,
            restricted_workloads: BTreeMap::from([("eu-west".into(), vec!["voice".into()])]),
            home_region: Some("eu-west".into()),
        }
    }

    #[test]
    fn compliance_table() {
        let p = policy();
        let resident = RegionPolicy {
            data_residency: Some("EU".into()),
            ..policy()
        };
        // (policy, region, jurisdiction, workload, compliant)
        let table = [
            (&p, "eu-west", "eu", "chat", true),
            (&p, "eu-west", "EU", "chat", true),
            (&p, "eu-west", "eu", "voice", false),
            (&p, "eu-central", "eu", "voice", true),
            (&p, "us-east", "us", "voice", true),
            (&p, "ap-south", "in", "chat", false),
            (&resident, "us-east", "us", "chat", false),
            (&resident, "eu-central", "eu", "chat", true),
            (&resident, "eu-west", "eu", "voice", false),
        ];
        for (pol, r, j, w, want) in table {
            assert_eq!(is_compliant(pol, r, j, w), want, "{r} {j} {w}");
        }
        assert!(is_compliant(&RegionPolicy::default(), "x", "anything", "w"));
    }

    #[test]
    fn validation_names_every_field() {
        let bad = RegionPolicy {
            allowed_jurisdictions: Some(vec!["eu".into(), String::new()]),
            data_residency: Some("us-x".into()),
            restricted_workloads: BTreeMap::from([
                ("mars-1".into(), vec!["chat".into()]),
                ("eu-west".into(), vec!["".into()]),
            ]),
            home_region: Some("nowhere".into()),
        };
        let err = validate_region_policy(&bad, &["eu-west", "us-east"]).unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "allowed_jurisdictions[1]",
                "data_residency",
                "restricted_workloads.eu-west[0]",
                "restricted_workloads.mars-1",
                "home_region"
            ]
        );
        assert!(validate_region_policy(&policy(), &["eu-west"]).is_ok());
        let empty = RegionPolicy {
            allowed_jurisdictions: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(
            validate_region_policy(&empty, &[]).unwrap_err().0[0].field,
            "allowed_jurisdictions"
        );
    }

    #[test]
    fn policy_json_shape_and_unknown_fields() {
        let p: RegionPolicy = serde_json::from_str(
            r#"{"allowed_jurisdictions":null,"data_residency":"eu","restricted_workloads":{"eu-west":["voice"]},"home_region":null}"#,
        )
        .unwrap();
        assert_eq!(p.data_residency.as_deref(), Some("eu"));
        assert!(serde_json::from_str::<RegionPolicy>(r#"{"bogus":1}"#).is_err());
        let d: RegionPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(d, RegionPolicy::default());
    }
}
