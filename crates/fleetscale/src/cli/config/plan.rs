//! The plan of `fleetscale apply`: a pure function from the desired fleet
//! document and the current one (as `export` reads it) to the ordered
//! actions that turn one into the other, with field-level changes; and the
//! checks a desired document must pass against the current state before
//! anything is written. No I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use fleetscale_core::budget::{check_allocation, check_amount, check_price, Provider, Tier};
use fleetscale_core::region::compliance::{validate_region_policy, RegionPolicy};
use fleetscale_core::region::routing::{validate_routing_policy, RoutingPolicy};
use fleetscale_core::{NewPool, Violations};

use super::doc::{
    FleetDoc, PoolSpec, Problem, ProviderSpec, RegionSpec, POOL_KEEP_WHEN_OMITTED, POOL_KEY_FIELDS,
};

/// What an action does to its object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// The object does not exist (or is at its default) and is created.
    Create,
    /// The object exists and these fields change.
    Update {
        /// The changed fields.
        changes: Vec<FieldChange>,
    },
    /// The object already is as the file says.
    Unchanged,
    /// The object is not in the file and `--prune` deletes it.
    Delete,
    /// The object is not in the file; `--prune` would delete it.
    WouldDelete,
}

/// One changed field of an update.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// Field name (top-level field of the object).
    pub field: String,
    /// The value now (`null`: none).
    pub from: Value,
    /// The value the file asks for (`null`: none).
    pub to: Value,
}

/// The object an action is about, with the desired settings (for a
/// delete, the current ones).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Object {
    /// A region.
    Region {
        /// The region as the file says.
        spec: RegionSpec,
    },
    /// A tenant.
    Tenant {
        /// Its name.
        name: String,
    },
    /// A tenant's region policy.
    RegionPolicy {
        /// The tenant's name.
        tenant: String,
        /// The policy.
        policy: RegionPolicy,
    },
    /// A tenant's routing policy.
    RoutingPolicy {
        /// The tenant's name.
        tenant: String,
        /// The policy.
        policy: RoutingPolicy,
    },
    /// A pool.
    Pool {
        /// The tenant's name.
        tenant: String,
        /// The pool (normalized).
        spec: Box<PoolSpec>,
    },
    /// A tenant's budget tier.
    BudgetTier {
        /// The tenant's name.
        tenant: String,
        /// The tier.
        tier: String,
    },
    /// One provider budget of a tenant.
    ProviderBudget {
        /// The tenant's name.
        tenant: String,
        /// The provider's name.
        provider: String,
        /// Its settings.
        spec: ProviderSpec,
    },
}

impl Object {
    /// The kind, as printed (`region`, `pool`, ...).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Region { .. } => "region",
            Object::Tenant { .. } => "tenant",
            Object::RegionPolicy { .. } => "region-policy",
            Object::RoutingPolicy { .. } => "routing-policy",
            Object::Pool { .. } => "pool",
            Object::BudgetTier { .. } => "budget-tier",
            Object::ProviderBudget { .. } => "provider-budget",
        }
    }

    /// The natural key, as printed (`acme/eu-west/writer` for a pool).
    #[must_use]
    pub fn key(&self) -> String {
        match self {
            Object::Region { spec } => spec.name.clone(),
            Object::Tenant { name } => name.clone(),
            Object::RegionPolicy { tenant, .. }
            | Object::RoutingPolicy { tenant, .. }
            | Object::BudgetTier { tenant, .. } => tenant.clone(),
            Object::Pool { tenant, spec } => {
                format!("{tenant}/{}/{}", spec.region, spec.agent_type)
            }
            Object::ProviderBudget {
                tenant, provider, ..
            } => format!("{tenant}/{provider}"),
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    /// What is done.
    #[serde(flatten)]
    pub op: Op,
    /// To what.
    pub object: Object,
}

/// The ordered actions of an apply: creates and updates in dependency order
/// (regions, tenants, tenant policies, pools, budgets), then deletes in
/// reverse order. Unchanged objects are listed too.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// The actions, in the order they are applied.
    pub actions: Vec<Action>,
}

/// How many actions of each op a plan holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Creates.
    pub create: usize,
    /// Updates.
    pub update: usize,
    /// Unchanged objects.
    pub unchanged: usize,
    /// Deletes.
    pub delete: usize,
    /// Objects `--prune` would delete.
    pub would_delete: usize,
}

impl Plan {
    /// The counts per op.
    #[must_use]
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for a in &self.actions {
            match a.op {
                Op::Create => c.create += 1,
                Op::Update { .. } => c.update += 1,
                Op::Unchanged => c.unchanged += 1,
                Op::Delete => c.delete += 1,
                Op::WouldDelete => c.would_delete += 1,
            }
        }
        c
    }

    /// True when applying the plan writes nothing.
    #[must_use]
    pub fn is_noop(&self) -> bool {
        self.actions
            .iter()
            .all(|a| matches!(a.op, Op::Unchanged | Op::WouldDelete))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sign, word) = match self.op {
            Op::Create => ("+", "create"),
            Op::Update { .. } => ("~", "update"),
            Op::Unchanged => ("=", "unchanged"),
            Op::Delete => ("-", "delete"),
            Op::WouldDelete => ("-", "would delete"),
        };
        write!(
            f,
            "{sign} {word} {} {}",
            self.object.kind(),
            self.object.key()
        )?;
        if matches!(self.op, Op::WouldDelete) {
            write!(f, " (with --prune)")?;
        }
        if let Op::Update { changes } = &self.op {
            for c in changes {
                write!(
                    f,
                    "\n    {}: {} -> {}",
                    c.field,
                    compact(&c.from),
                    compact(&c.to)
                )?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} to create, {} to update, {} unchanged, {} to delete",
            self.create, self.update, self.unchanged, self.delete
        )?;
        if self.would_delete > 0 {
            write!(f, ", {} would be deleted with --prune", self.would_delete)?;
        }
        Ok(())
    }
}

/// A value on one line (strings without quotes).
fn compact(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The top-level fields whose values differ between `from` and `to` (both
/// objects), in name order, leaving out `skip` and, for the names in
/// `keep_when_null`, a `to` of null (omitted: left as is).
fn diff(from: &Value, to: &Value, skip: &[&str], keep_when_null: &[&str]) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let (f, t) = (
        from.as_object().unwrap_or(&empty),
        to.as_object().unwrap_or(&empty),
    );
    let keys: BTreeSet<&String> = f.keys().chain(t.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let (a, b) = (
            f.get(k).unwrap_or(&Value::Null),
            t.get(k).unwrap_or(&Value::Null),
        );
        if b.is_null() && keep_when_null.contains(&k.as_str()) {
            continue;
        }
        if a != b {
            out.push(FieldChange {
                field: k.clone(),
                from: a.clone(),
                to: b.clone(),
            });
        }
    }
    out
}

fn settle(object: Object, changes: Vec<FieldChange>) -> Action {
    let op = if changes.is_empty() {
        Op::Unchanged
    } else {
        Op::Update { changes }
    };
    Action { op, object }
}

/// The plan that makes `current` what `desired` says. Both documents are
/// taken in canonical form ([`FleetDoc::canonical`]); `desired` should have
/// passed [`check`]. Objects the file omits: regions and tenants are left
/// alone (the API cannot delete them), a listed tenant's pools are deleted
/// with `prune` (else listed as would-delete), omitted optional sections
/// (`region_policy`, `routing_policy`, `budget`, `tier`,
/// `monthly_budget_cents`, a pool's `job_kind`) are left as they are.
#[must_use]
pub fn plan(desired: &FleetDoc, current: &FleetDoc, prune: bool) -> Plan {
    let desired = desired.canonical();
    let current = current.canonical();
    let (mut regions, mut tenants, mut policies, mut pools, mut budgets, mut deletes) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let cur_regions: BTreeMap<&str, &RegionSpec> = current
        .regions
        .iter()
        .map(|r| (r.name.as_str(), r))
        .collect();
    for r in &desired.regions {
        let object = Object::Region { spec: r.clone() };
        regions.push(match cur_regions.get(r.name.as_str()) {
            None => Action {
                op: Op::Create,
                object,
            },
            Some(c) => {
                let keep = ["monthly_budget_cents"];
                settle(object, diff(&json(c), &json(r), &["name"], &keep))
            }
        });
    }
    let cur_tenants: BTreeMap<&str, _> = current
        .tenants
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    for t in &desired.tenants {
        let cur = cur_tenants.get(t.name.as_str());
        let name = t.name.clone();
        tenants.push(Action {
            op: if cur.is_some() {
                Op::Unchanged
            } else {
                Op::Create
            },
            object: Object::Tenant { name: name.clone() },
        });
        if let Some(p) = &t.region_policy {
            let now = cur.and_then(|c| c.region_policy.as_ref());
            let object = Object::RegionPolicy {
                tenant: name.clone(),
                policy: p.clone(),
            };
            policies.push(setting(object, now.map(json), json(p)));
        }
        if let Some(p) = &t.routing_policy {
            let now = cur.and_then(|c| c.routing_policy.as_ref());
            let object = Object::RoutingPolicy {
                tenant: name.clone(),
                policy: p.clone(),
            };
            policies.push(setting(object, now.map(json), json(p)));
        }
        let cur_pools: BTreeMap<(String, String), &PoolSpec> = cur
            .map(|c| c.pools.iter().flatten().map(|p| (p.key(), p)).collect())
            .unwrap_or_default();
        // Pools omitted: left as they are (nothing listed, nothing deleted).
        let managed = t.pools.is_some();
        let t_pools = t.pools.as_deref().unwrap_or_default();
        let want: BTreeSet<(String, String)> = t_pools.iter().map(PoolSpec::key).collect();
        for p in t_pools {
            let object = Object::Pool {
                tenant: name.clone(),
                spec: Box::new(p.clone()),
            };
            pools.push(match cur_pools.get(&p.key()) {
                None => Action {
                    op: Op::Create,
                    object,
                },
                Some(c) => settle(
                    object,
                    diff(&json(c), &json(p), POOL_KEY_FIELDS, POOL_KEEP_WHEN_OMITTED),
                ),
            });
        }
        for (k, c) in &cur_pools {
            if managed && !want.contains(k) {
                deletes.push(Action {
                    op: if prune { Op::Delete } else { Op::WouldDelete },
                    object: Object::Pool {
                        tenant: name.clone(),
                        spec: Box::new((*c).clone()),
                    },
                });
            }
        }
        if let Some(b) = &t.budget {
            let now = cur.and_then(|c| c.budget.clone()).unwrap_or_default();
            if let Some(tier) = &b.tier {
                let object = Object::BudgetTier {
                    tenant: name.clone(),
                    tier: tier.clone(),
                };
                let from = now
                    .tier
                    .as_ref()
                    .map(|t| json(&serde_json::json!({"tier": t})));
                budgets.push(setting(object, from, serde_json::json!({"tier": tier})));
            }
            let names: BTreeSet<&String> = b.providers.keys().chain(now.providers.keys()).collect();
            for p in names {
                let spec = b.providers.get(p).cloned().unwrap_or_default();
                let from = now.providers.get(p).map(json);
                let object = Object::ProviderBudget {
                    tenant: name.clone(),
                    provider: p.clone(),
                    spec: spec.clone(),
                };
                let from = from.or_else(|| {
                    // At its defaults: listed only when the file names it.
                    b.providers
                        .contains_key(p)
                        .then(|| json(&ProviderSpec::default()))
                });
                let action = match from {
                    Some(f) if f == json(&ProviderSpec::default()) && f != json(&spec) => Action {
                        op: Op::Create,
                        object,
                    },
                    Some(f) => settle(object, diff(&f, &json(&spec), &[], &[])),
                    None => continue,
                };
                budgets.push(action);
            }
        }
    }
    deletes.reverse();
    let mut actions = Vec::new();
    for part in [regions, tenants, policies, pools, budgets, deletes] {
        actions.extend(part);
    }
    Plan { actions }
}

/// A setting that is either at its default (`now` is `None`: created) or
/// set (compared field by field).
fn setting(object: Object, now: Option<Value>, want: Value) -> Action {
    match now {
        None => Action {
            op: Op::Create,
            object,
        },
        Some(now) => settle(object, diff(&now, &want, &[], &[])),
    }
}

/// Every problem of `desired` (as parsed, not canonical: paths index the
/// file's own order) against `current`, found before anything is written:
/// the values the server would refuse (the same core validation it runs),
/// names used twice, references to regions neither in the file nor on the
/// server, and region changes the API cannot make. Lines are not filled in.
#[must_use]
pub fn check(desired: &FleetDoc, current: &FleetDoc) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut push = |path: String, rule: String| {
        out.push(Problem {
            path,
            line: None,
            rule,
        })
    };
    if let Some(v) = &desired.api_version {
        if v != super::doc::API_VERSION {
            push(
                "apiVersion".into(),
                format!("must be {}", super::doc::API_VERSION),
            );
        }
    }
    let cur_regions: BTreeMap<&str, &RegionSpec> = current
        .regions
        .iter()
        .map(|r| (r.name.as_str(), r))
        .collect();
    let mut seen = BTreeSet::new();
    for (i, r) in desired.regions.iter().enumerate() {
        let at = format!("regions[{i}]");
        let mut v = Violations::default();
        v.check_name("name", &r.name);
        v.check_name("jurisdiction", &r.jurisdiction);
        if let Some(c) = r.monthly_budget_cents.filter(|c| *c != 0) {
            check_amount(&mut v, "monthly_budget_cents", c);
        }
        for e in v.0 {
            push(format!("{at}.{}", e.field), e.rule);
        }
        if !seen.insert(r.name.as_str()) {
            push(format!("{at}.name"), "names a region listed before".into());
        }
        if let Some(c) = cur_regions.get(r.name.as_str()) {
            if c.jurisdiction != r.jurisdiction {
                push(
                    format!("{at}.jurisdiction"),
                    format!(
                        "is {} on the server, and the API cannot change a region's jurisdiction",
                        c.jurisdiction
                    ),
                );
            }
            if let (Some(want), Some(now)) = (r.monthly_budget_cents, c.monthly_budget_cents) {
                if want < now {
                    push(
                        format!("{at}.monthly_budget_cents"),
                        format!("is {now} on the server and can only grow (allocations add to it)"),
                    );
                }
            }
        }
    }
    let known: BTreeSet<&str> = cur_regions
        .keys()
        .copied()
        .chain(desired.regions.iter().map(|r| r.name.as_str()))
        .collect();
    let known_list: Vec<&str> = known.iter().copied().collect();
    let mut seen = BTreeSet::new();
    for (i, t) in desired.tenants.iter().enumerate() {
        let at = format!("tenants[{i}]");
        let mut v = Violations::default();
        v.check_text("name", &t.name, 128);
        if t.name.trim() != t.name {
            v.push("name", "must not start or end with whitespace");
        }
        for e in v.0 {
            push(format!("{at}.{}", e.field), e.rule);
        }
        if !seen.insert(t.name.as_str()) {
            push(format!("{at}.name"), "names a tenant listed before".into());
        }
        if let Some(p) = &t.region_policy {
            if let Err(v) = validate_region_policy(p, &known_list) {
                for e in v.0 {
                    push(format!("{at}.region_policy.{}", e.field), e.rule);
                }
            }
        }
        if let Some(p) = &t.routing_policy {
            if let Err(v) = validate_routing_policy(p, &known_list) {
                for e in v.0 {
                    push(format!("{at}.routing_policy.{}", e.field), e.rule);
                }
            }
        }
        if let Some(b) = &t.budget {
            if let Some(tier) = &b.tier {
                if Tier::parse(tier).is_none() {
                    push(
                        format!("{at}.budget.tier"),
                        "must be soft_launch, hard_launch or growth".into(),
                    );
                }
            }
            for (name, p) in &b.providers {
                let pat = format!("{at}.budget.providers.{name}");
                if Provider::parse(name).is_none() {
                    push(
                        pat.clone(),
                        "must be one of claude, gemini, openai, elevenlabs, perplexity".into(),
                    );
                }
                let mut v = Violations::default();
                if let Some(a) = p.allocation_units {
                    check_allocation(&mut v, "allocation_units", a);
                }
                if let Some(c) = p.price_cents_per_million {
                    check_price(&mut v, "price_cents_per_million", c);
                }
                for e in v.0 {
                    push(format!("{pat}.{}", e.field), e.rule);
                }
            }
        }
        let mut seen_pools = BTreeSet::new();
        for (j, p) in t.pools.iter().flatten().enumerate() {
            let pat = format!("{at}.pools[{j}]");
            for e in pool_violations(p) {
                push(format!("{pat}.{}", e.field), e.rule);
            }
            if !known.contains(p.region.as_str()) {
                push(
                    format!("{pat}.region"),
                    format!(
                        "names region {:?}, which is neither in the file nor on the server",
                        p.region
                    ),
                );
            }
            if !seen_pools.insert(p.key()) {
                push(
                    format!("{pat}.agent_type"),
                    "names a pool (region, agent_type) listed before for this tenant".into(),
                );
            }
        }
    }
    out
}

/// The rules the server's own pool validation finds in a pool (the same
/// `NewPool::validate` and `PoolPolicies::validate`), field names as in
/// the file.
fn pool_violations(p: &PoolSpec) -> Vec<fleetscale_core::FieldError> {
    let n = p.normalized();
    let (min, max) = (n.min_capacity.unwrap_or(1), n.max_capacity.unwrap_or(10));
    let raw = NewPool {
        tenant_id: "tenant".into(),
        region: p.region.clone(),
        agent_type: p.agent_type.clone(),
        min_capacity: n.min_capacity,
        max_capacity: n.max_capacity,
        // Not part of the file: a new pool starts at `initial_desired`.
        desired_capacity: Some(initial_desired(min, max)),
        capacity_per_instance: n.capacity_per_instance,
        metric: n.metric.clone(),
        mode: n.mode.clone(),
        job_kind: n.job_kind.clone(),
        scaling_policy: p.scaling_policy.clone(),
        metric_source: p.metric_source.clone(),
        target: p.target.clone(),
    };
    let mut errs = match raw.validate() {
        Ok(_) => vec![],
        Err(v) => v.0,
    };
    if let Some(spec) = &p.policies {
        if let Err(v) = spec.validate() {
            errs.extend(v.0.into_iter().map(|e| fleetscale_core::FieldError {
                field: format!("policies.{}", e.field),
                rule: e.rule,
            }));
        }
    }
    // A broken bound is reported once, on the bound, not also on the
    // desired capacity that is not in the file.
    errs.retain(|e| e.field != "desired_capacity");
    errs
}

/// The desired capacity a pool is created with (the file has none: it is
/// the autoscaler's): 1 within the pool's bounds.
#[must_use]
pub fn initial_desired(min: i64, max: i64) -> i64 {
    1.max(min).min(max.max(min))
}

#[cfg(test)]
mod tests;
