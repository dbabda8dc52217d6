//! The fleet document of `fleetscale apply` / `export`: its serde types
//! (every struct `deny_unknown_fields`, objects named by natural keys, never
//! by server ids), YAML parsing that reports the field path and line of an
//! error, and the line of any path in a parsed file. No I/O.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use fleetscale_core::decision::PoolPolicies;
use fleetscale_core::metric_source::RawMetricSource;
use fleetscale_core::region::compliance::RegionPolicy;
use fleetscale_core::region::routing::RoutingPolicy;
use fleetscale_core::RawThresholdPolicy;

/// The only `apiVersion` this CLI reads and writes.
pub const API_VERSION: &str = "fleetscale/v1";

/// A whole fleet (or the part a file manages): regions, then tenants with
/// their policies, budgets and pools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetDoc {
    /// `fleetscale/v1` (optional on input; export writes it).
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<String>,
    /// Regions, by name. Regions are never deleted (the API has none).
    #[serde(default)]
    pub regions: Vec<RegionSpec>,
    /// Tenants, by name. Tenants are never deleted (the API has none).
    #[serde(default)]
    pub tenants: Vec<TenantSpec>,
}

/// A region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// Unique name, e.g. `eu-west` (the key).
    pub name: String,
    /// Jurisdiction, e.g. `eu` (set at creation; the API cannot change it).
    pub jurisdiction: String,
    /// The region's monthly budget, cents. On creation, its first
    /// allocation (omitted: the server's default); on an existing region it
    /// may only grow (an allocation of the difference). Omitted: left as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_budget_cents: Option<i64>,
}

/// A tenant and what belongs to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Unique name (the key).
    pub name: String,
    /// Compliance rules (`PUT /tenants/{id}/region-policy`); omitted: left
    /// as is (the API cannot return a tenant to the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_policy: Option<RegionPolicy>,
    /// Region ranking (`PUT /tenants/{id}/routing-policy`); omitted: left as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_policy: Option<RoutingPolicy>,
    /// Provider budgets; omitted: left as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<TenantBudgetSpec>,
    /// The tenant's pools, by `(region, agent_type)`: when given (even
    /// empty), all of the tenant's pools (others are deleted with
    /// `--prune`); omitted: its pools are left as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<Vec<PoolSpec>>,
}

/// A tenant's provider budgets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBudgetSpec {
    /// `soft_launch`, `hard_launch` or `growth`; omitted: left as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Provider name → settings. A provider not listed returns to its
    /// defaults (the tier's allocation, unpriced, soft).
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSpec>,
}

/// One provider budget's settings (`PUT .../providers/{provider}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// Allocation override in the provider's unit; omitted: the tier's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_units: Option<i64>,
    /// Price, cents per million units; omitted: unpriced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_cents_per_million: Option<i64>,
    /// Refuse usage above the allocation.
    #[serde(default)]
    pub hard_limit: bool,
}

/// A pool: its key `(region, agent_type)` within its tenant, and its
/// settings. Every settings field is compared and applied by name (a
/// changed field is sent in `PATCH /pools/{id}` under the same name), so a
/// new pool field is one more `Option` field here, its default in
/// [`PoolSpec::normalized`], and nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// Region name (part of the key).
    pub region: String,
    /// Agent type (part of the key).
    pub agent_type: String,
    /// Lower capacity bound (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_capacity: Option<i64>,
    /// Upper capacity bound (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_capacity: Option<i64>,
    /// Work one instance handles, in metric units (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_per_instance: Option<f64>,
    /// Load metric (default `throughput`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// `autonomous`, `recommend` (default) or `frozen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `posting`, `orchestration`, `creative` or `intel`; omitted: left as
    /// is (the API cannot clear it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_kind: Option<String>,
    /// Threshold policy (missing fields take their defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_policy: Option<RawThresholdPolicy>,
    /// Combined policies (the body of `PUT /pools/{id}/policies`);
    /// omitted: the threshold policy alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<PoolPolicies>,
    /// Where the engine reads the pool's load from (a PromQL query);
    /// omitted: none (samples are pushed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_source: Option<RawMetricSource>,
    /// The Kubernetes workload the `kubernetes` actuator scales
    /// (`{kind: Deployment|StatefulSet, namespace, name}`); omitted: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<fleetscale_core::workload::RawWorkloadTarget>,
}

/// `m` as the server stores it (a trailing `/` of the URL dropped), or as
/// given when it is invalid (validation reports it).
fn normalized_source(m: &RawMetricSource) -> RawMetricSource {
    let mut v = fleetscale_core::Violations::default();
    let valid = m.validate("metric_source", &mut v);
    if v.is_empty() {
        valid.to_raw()
    } else {
        m.clone()
    }
}

/// The pool fields that are the key, not settings.
pub const POOL_KEY_FIELDS: &[&str] = &["region", "agent_type"];

/// Pool settings whose omission means "leave as is" rather than "none".
pub const POOL_KEEP_WHEN_OMITTED: &[&str] = &["job_kind"];

impl PoolSpec {
    /// The pool with every default filled in (what the server would store
    /// for it), so that comparing it with a read-back pool is exact. An
    /// invalid threshold policy is kept as given (validation reports it).
    #[must_use]
    pub fn normalized(&self) -> PoolSpec {
        let mut v = fleetscale_core::Violations::default();
        let raw = self.scaling_policy.clone().unwrap_or_default();
        let policy = raw.validate("scaling_policy", &mut v);
        PoolSpec {
            region: self.region.clone(),
            agent_type: self.agent_type.clone(),
            min_capacity: Some(self.min_capacity.unwrap_or(1)),
            max_capacity: Some(self.max_capacity.unwrap_or(10)),
            capacity_per_instance: Some(self.capacity_per_instance.unwrap_or(1.0)),
            metric: Some(self.metric.clone().unwrap_or_else(|| "throughput".into())),
            mode: Some(self.mode.clone().unwrap_or_else(|| "recommend".into())),
            job_kind: self.job_kind.clone(),
            scaling_policy: Some(if v.is_empty() { policy.to_raw() } else { raw }),
            policies: self.policies.clone(),
            metric_source: self.metric_source.as_ref().map(normalized_source),
            target: self.target.clone(),
        }
    }

    /// The key of the pool within its tenant.
    #[must_use]
    pub fn key(&self) -> (String, String) {
        (self.region.clone(), self.agent_type.clone())
    }
}

impl FleetDoc {
    /// The document in its canonical form: `apiVersion` set, regions,
    /// tenants, pools sorted by their keys, pool defaults filled in.
    #[must_use]
    pub fn canonical(&self) -> FleetDoc {
        let mut doc = self.clone();
        doc.api_version = Some(API_VERSION.into());
        doc.regions.sort_by(|a, b| a.name.cmp(&b.name));
        doc.tenants.sort_by(|a, b| a.name.cmp(&b.name));
        for t in &mut doc.tenants {
            if let Some(pools) = &mut t.pools {
                *pools = pools.iter().map(PoolSpec::normalized).collect();
                pools.sort_by_key(PoolSpec::key);
            }
        }
        doc
    }

    /// The document as YAML (export's output).
    pub fn to_yaml(&self) -> Result<String, serde_norway::Error> {
        serde_norway::to_string(self)
    }
}

/// One problem with a fleet file: where (field path and line) and which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path, e.g. `tenants[0].pools[2].min_capacity`.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// The rule broken, in words.
    pub rule: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() || self.path == "." {
            "(document)"
        } else {
            &self.path
        };
        match self.line {
            Some(l) => write!(f, "{path} (line {l}): {}", self.rule),
            None => write!(f, "{path}: {}", self.rule),
        }
    }
}

/// A fleet file that cannot be applied: every problem found, before any
/// change was made.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.file, .problems))]
pub struct Invalid {
    /// The file's name as given.
    pub file: String,
    /// The problems, in file order where known.
    pub problems: Vec<Problem>,
}

fn render(file: &str, problems: &[Problem]) -> String {
    let mut out: Vec<String> = problems.iter().map(|p| format!("{file}: {p}")).collect();
    out.push(format!(
        "{} problem(s) in {file}; nothing was changed",
        problems.len()
    ));
    out.join("\n")
}

/// Parses a fleet file: an unknown key, a value of the wrong type or bad
/// YAML is a [`Problem`] with the field path and line.
pub fn parse(text: &str) -> Result<FleetDoc, Problem> {
    let de = serde_norway::Deserializer::from_str(text);
    let parsed: Result<FleetDoc, _> = serde_path_to_error::deserialize(de);
    parsed.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.location().map(|l| l.line());
        // serde_norway prefixes its own path ("tenants[0].pools: ..."); keep
        // only the rule after it.
        let mut rule = inner.to_string();
        if let Some(l) = inner.location() {
            let suffix = format!(" at line {} column {}", l.line(), l.column());
            if let Some(stripped) = rule.strip_suffix(&suffix) {
                rule = stripped.to_string();
            }
        }
        if let Some((head, tail)) = rule.split_once(": ") {
            if !head.is_empty() && path.starts_with(head) {
                rule = tail.to_string();
            }
        }
        Problem { path, line, rule }
    })
}

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Splits `tenants[0].pools[2].min_capacity` into its steps.
fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            out.push(Step::Key(name.to_string()));
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Step::Index(i));
            }
        }
    }
    out
}

const HERE: &str = "fleetscale-locate-here";

/// The 1-based line of the node at `path` in `text` (or of the deepest
/// part of the path that exists there): the YAML deserializer is walked
/// down the path and stopped there with an error, whose location it fills in.
#[must_use]
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let steps = steps(path);
    let de = serde_norway::Deserializer::from_str(text);
    match (Locate { steps: &steps }).deserialize(de) {
        Ok(()) => None,
        Err(e) => e.location().map(|l| l.line()),
    }
}

/// Walks down `steps` and fails at the node they end on.
struct Locate<'s> {
    steps: &'s [Step],
}

impl<'de> DeserializeSeed<'de> for Locate<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Locate<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Step::Key(want), rest)) = self.steps.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        while let Some(k) = map.next_key::<String>()? {
            if &k == want {
                map.next_value_seed(Locate { steps: rest })?;
                return Err(de::Error::custom(HERE));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Err(de::Error::custom(HERE))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Step::Index(want), rest)) = self.steps.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        let mut i = 0;
        while i < *want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(HERE));
            }
            i += 1;
        }
        seq.next_element_seed(Locate { steps: rest })?;
        Err(de::Error::custom(HERE))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
apiVersion: fleetscale/v1
regions:
  - name: eu-west
    jurisdiction: eu
tenants:
  - name: acme
    pools:
      - region: eu-west
        agent_type: writer
        min_capacity: 1
      - region: eu-west
        agent_type: reader
        max_capacity: 7
";

    #[test]
    fn a_path_is_located_on_its_line() {
        assert_eq!(line_of(FILE, "regions[0].jurisdiction"), Some(4));
        assert_eq!(line_of(FILE, "tenants[0].pools[1].max_capacity"), Some(13));
        assert_eq!(line_of(FILE, "tenants[0].pools[0].min_capacity"), Some(10));
        // A field that is not in the file: the deepest node that is.
        assert_eq!(line_of(FILE, "tenants[0].pools[1].min_capacity"), Some(11));
        assert_eq!(line_of(FILE, "tenants[0].name"), Some(6));
    }

    #[test]
    fn an_unknown_key_names_its_path_and_line() {
        let bad = FILE.replace("max_capacity: 7", "max_capacty: 7");
        let p = parse(&bad).unwrap_err();
        assert_eq!(p.path, "tenants[0].pools[1].max_capacty");
        assert_eq!(p.line, Some(13));
        assert!(
            p.rule.starts_with("unknown field `max_capacty`"),
            "{}",
            p.rule
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_path_and_line() {
        let bad = FILE.replace("min_capacity: 1", "min_capacity: lots");
        let p = parse(&bad).unwrap_err();
        assert_eq!(p.path, "tenants[0].pools[0].min_capacity");
        assert_eq!(p.line, Some(10));
        assert!(p.rule.starts_with("invalid type"), "{}", p.rule);
    }

    #[test]
    fn the_canonical_document_round_trips_through_yaml() {
        let doc = parse(FILE).unwrap().canonical();
        let again = parse(&doc.to_yaml().unwrap()).unwrap();
        assert_eq!(again, doc);
        assert_eq!(again.canonical(), doc);
    }
}
