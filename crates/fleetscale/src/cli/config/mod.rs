//! Config as code: `fleetscale apply -f fleet.yaml [--dry-run] [--prune]`
//! and `fleetscale export [--tenant NAME]`, over the public REST API (so
//! every change is checked and audited by the server as usual). `doc` is
//! the file format and its parsing, `plan` the pure plan and the checks run
//! before any write; this module reads the current state, prints the plan
//! and carries it out.

pub mod doc;
pub mod plan;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

use self::doc::{
    line_of, parse, FleetDoc, Invalid, PoolSpec, Problem, ProviderSpec, RegionSpec,
    TenantBudgetSpec, TenantSpec,
};
use self::plan::{initial_desired, Action, Object, Op, Plan};
use super::client::{encode, with_query, Conn};
use super::output::{print_json, Output};

/// `fleetscale apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The fleet file (YAML; docs/config-as-code.md).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete the pools of the file's tenants that the file does not list
    /// (without it they are listed as "would delete").
    #[arg(long)]
    pub prune: bool,
    /// Server, token and output format.
    #[command(flatten)]
    pub conn: Conn,
}

/// `fleetscale export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Only this tenant (by name) and the regions.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Server and token.
    #[command(flatten)]
    pub conn: Conn,
}

/// The server's state as a fleet document, with the ids the writes need.
#[derive(Debug, Default)]
struct Live {
    /// The state, as `export` writes it.
    doc: FleetDoc,
    /// Region name → id.
    region_ids: BTreeMap<String, String>,
    /// Tenant name → id.
    tenant_ids: BTreeMap<String, String>,
    /// (tenant name, region, agent type) → (pool id, desired capacity).
    pools: BTreeMap<(String, String, String), (String, i64)>,
}

/// The pool fields of the API's pool view that are state, not settings.
const POOL_STATE_FIELDS: &[&str] = &[
    "id",
    "tenant_id",
    "desired_capacity",
    "safety_lock",
    "last_scaled_at",
    "created_at",
    "updated_at",
    "metrics_error",
    "metrics_stale",
];

/// Every item of a list endpoint, page after page.
async fn all_items(conn: &Conn, path: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = [("limit", Some("1000".to_string())), ("cursor", cursor)];
        let page = conn.get_json(&with_query(path, &q)).await?;
        out.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(out),
        }
    }
}

fn text(v: &Value, field: &str) -> anyhow::Result<String> {
    v[field]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("the server's answer has no `{field}`"))
}

/// A pool view of the API as a pool of the file: every field but the
/// state ones (a field the format lacks is an error, so that nothing is
/// silently left out of an export).
fn pool_spec(view: &Value) -> anyhow::Result<PoolSpec> {
    let mut fields = view.as_object().cloned().unwrap_or_default();
    for f in POOL_STATE_FIELDS {
        fields.remove(*f);
    }
    fields.retain(|_, v| !v.is_null());
    serde_json::from_value(Value::Object(fields)).context(
        "a pool of the server does not fit the fleet format (a pool field this CLI does not know?)",
    )
}

/// A tenant policy's stored value, `None` when the tenant never set it.
async fn tenant_policy<T: serde::de::DeserializeOwned>(
    conn: &Conn,
    id: &str,
    which: &str,
) -> anyhow::Result<Option<T>> {
    let v = conn
        .get_json(&format!("/api/v1/tenants/{}/{which}", encode(id)))
        .await?;
    if v["source"].as_str() != Some("tenant") {
        return Ok(None);
    }
    Ok(Some(
        serde_json::from_value(v["policy"].clone())
            .with_context(|| format!("the server's {which} does not fit the fleet format"))?,
    ))
}

/// A tenant's provider budgets, `None` when all are at their defaults.
async fn tenant_budget(conn: &Conn, id: &str) -> anyhow::Result<Option<TenantBudgetSpec>> {
    let v = conn
        .get_json(&format!("/api/v1/budgets/tenants/{}", encode(id)))
        .await?;
    let tier = v["tier_set"]
        .as_bool()
        .unwrap_or(false)
        .then(|| text(&v, "tier"))
        .transpose()?;
    let mut providers = BTreeMap::new();
    for p in v["providers"].as_array().into_iter().flatten() {
        let spec = ProviderSpec {
            allocation_units: p["allocation_override_units"].as_i64(),
            price_cents_per_million: p["price_cents_per_million"].as_i64(),
            hard_limit: p["hard_limit"].as_bool().unwrap_or(false),
        };
        if spec != ProviderSpec::default() {
            providers.insert(text(p, "provider")?, spec);
        }
    }
    Ok((tier.is_some() || !providers.is_empty()).then_some(TenantBudgetSpec { tier, providers }))
}

/// Reads the server's state (only `tenant`'s, by name, when given).
async fn read_live(conn: &Conn, tenant: Option<&str>) -> anyhow::Result<Live> {
    let mut live = Live::default();
    for r in all_items(conn, "/api/v1/regions").await? {
        let (id, name) = (text(&r, "id")?, text(&r, "name")?);
        let budget = conn
            .get_json(&format!("/api/v1/regions/{}/budget", encode(&id)))
            .await?;
        live.doc.regions.push(RegionSpec {
            name: name.clone(),
            jurisdiction: text(&r, "jurisdiction")?,
            monthly_budget_cents: budget["monthly_cents"].as_i64(),
        });
        live.region_ids.insert(name, id);
    }
    let mut tenants = all_items(conn, "/api/v1/tenants").await?;
    if let Some(only) = tenant {
        tenants.retain(|t| t["name"].as_str() == Some(only));
        anyhow::ensure!(!tenants.is_empty(), "no tenant is named {only:?}");
    }
    let mut names = BTreeMap::new();
    for t in &tenants {
        let (id, name) = (text(t, "id")?, text(t, "name")?);
        live.doc.tenants.push(TenantSpec {
            name: name.clone(),
            region_policy: tenant_policy(conn, &id, "region-policy").await?,
            routing_policy: tenant_policy(conn, &id, "routing-policy").await?,
            budget: tenant_budget(conn, &id).await?,
            pools: Some(Vec::new()),
        });
        names.insert(id.clone(), live.doc.tenants.len() - 1);
        live.tenant_ids.insert(name, id);
    }
    for p in all_items(conn, "/api/v1/pools").await? {
        let Some(&i) = p["tenant_id"].as_str().and_then(|t| names.get(t)) else {
            continue;
        };
        let spec = pool_spec(&p)?;
        let t = &mut live.doc.tenants[i];
        let desired = p["desired_capacity"].as_i64().unwrap_or(0);
        live.pools.insert(
            (t.name.clone(), spec.region.clone(), spec.agent_type.clone()),
            (text(&p, "id")?, desired),
        );
        t.pools.get_or_insert_with(Vec::new).push(spec);
    }
    live.doc = live.doc.canonical();
    Ok(live)
}

/// Runs `fleetscale export`: the current state as YAML on stdout.
pub async fn export(a: ExportArgs) -> anyhow::Result<()> {
    let live = read_live(&a.conn, a.tenant.as_deref()).await?;
    print!("{}", live.doc.to_yaml()?);
    Ok(())
}

/// Reads, parses and checks the file against `live`: the desired document,
/// or every problem with its path and line.
fn desired(file: &str, text: &str, live: &Live) -> Result<FleetDoc, Invalid> {
    let invalid = |problems| Invalid {
        file: file.to_string(),
        problems,
    };
    let doc = parse(text).map_err(|p| invalid(vec![p]))?;
    let mut problems: Vec<Problem> = plan::check(&doc, &live.doc)
        .into_iter()
        .map(|mut p| {
            p.line = line_of(text, &p.path);
            p
        })
        .collect();
    if problems.is_empty() {
        return Ok(doc);
    }
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    Err(invalid(problems))
}

/// Runs `fleetscale apply`: plan, print, and (unless `--dry-run`) apply.
pub async fn apply(a: ApplyArgs) -> anyhow::Result<()> {
    let name = a.file.display().to_string();
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("cannot read {name}"))?;
    let mut live = read_live(&a.conn, None).await?;
    let doc = desired(&name, &text, &live)?;
    let plan = plan::plan(&doc, &live.doc, a.prune);
    let json_out = a.conn.output == Output::Json;
    if !json_out {
        for action in &plan.actions {
            println!("{action}");
        }
        println!("Plan: {}.", plan.counts());
    }
    if a.dry_run || plan.is_noop() {
        if json_out {
            print_json(
                &json!({"dry_run": a.dry_run, "counts": plan.counts(), "actions": plan.actions, "applied": 0}),
            );
        } else if a.dry_run {
            println!("Dry run: nothing was changed.");
        } else {
            println!("Nothing to change.");
        }
        return Ok(());
    }
    let applied = execute(&a.conn, &plan, &mut live).await?;
    if json_out {
        print_json(
            &json!({"dry_run": false, "counts": plan.counts(), "actions": plan.actions, "applied": applied}),
        );
    } else {
        println!("Applied: {applied} change(s).");
    }
    Ok(())
}

/// Carries out the plan's writes in order; at the first failure stops and
/// says what was applied and what was not. Answers how many were applied.
async fn execute(conn: &Conn, plan: &Plan, live: &mut Live) -> anyhow::Result<usize> {
    let writes: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|a| !matches!(a.op, Op::Unchanged | Op::WouldDelete))
        .collect();
    for (i, action) in writes.iter().enumerate() {
        if let Err(e) = write(conn, action, live).await {
            let done: Vec<String> = writes[..i].iter().map(|a| format!("  {a}")).collect();
            let not: Vec<String> = writes[i..].iter().map(|a| format!("  {a}")).collect();
            eprintln!(
                "applied {i} of {} change(s):\n{}\nnot applied:\n{}",
                writes.len(),
                if done.is_empty() {
                    "  (none)".into()
                } else {
                    done.join("\n")
                },
                not.join("\n")
            );
            return Err(e.context(format!(
                "apply stopped at {} {} {}",
                op_word(&action.op),
                action.object.kind(),
                action.object.key()
            )));
        }
    }
    Ok(writes.len())
}

fn op_word(op: &Op) -> &'static str {
    match op {
        Op::Create => "create",
        Op::Update { .. } => "update",
        Op::Delete => "delete",
        Op::Unchanged | Op::WouldDelete => "(nothing)",
    }
}

fn tenant_id<'l>(live: &'l Live, name: &str) -> anyhow::Result<&'l str> {
    live.tenant_ids
        .get(name)
        .map(String::as_str)
        .with_context(|| format!("tenant {name:?} is not on the server"))
}

/// One write of the plan (idempotent in effect: each sets an object to
/// what the file says).
async fn write(conn: &Conn, action: &Action, live: &mut Live) -> anyhow::Result<()> {
    use reqwest::Method;
    match (&action.op, &action.object) {
        (Op::Create, Object::Region { spec }) => {
            let v = conn
                .post_json("/api/v1/regions", &serde_json::to_value(spec)?)
                .await?;
            if let Some(e) = v["initial_budget_error"].as_str() {
                anyhow::bail!("region {} was created, but {e}", spec.name);
            }
            live.region_ids.insert(spec.name.clone(), text(&v, "id")?);
        }
        (Op::Update { changes }, Object::Region { spec }) => {
            for c in changes {
                let (Some(from), Some(to)) = (c.from.as_i64(), c.to.as_i64()) else {
                    anyhow::bail!("the API cannot change a region's {}", c.field);
                };
                let id = live.region_ids.get(&spec.name).context("unknown region")?;
                let body = json!({"amount_cents": to - from, "description": "fleetscale apply"});
                conn.post_json(
                    &format!("/api/v1/regions/{}/budget/allocate", encode(id)),
                    &body,
                )
                .await?;
            }
        }
        (Op::Create, Object::Tenant { name }) => {
            let v = conn
                .post_json("/api/v1/tenants", &json!({"name": name}))
                .await?;
            live.tenant_ids.insert(name.clone(), text(&v, "id")?);
        }
        (Op::Create | Op::Update { .. }, Object::RegionPolicy { tenant, policy }) => {
            let path = format!(
                "/api/v1/tenants/{}/region-policy",
                encode(tenant_id(live, tenant)?)
            );
            conn.send_json(Method::PUT, &path, &serde_json::to_value(policy)?)
                .await?;
        }
        (Op::Create | Op::Update { .. }, Object::RoutingPolicy { tenant, policy }) => {
            let path = format!(
                "/api/v1/tenants/{}/routing-policy",
                encode(tenant_id(live, tenant)?)
            );
            conn.send_json(Method::PUT, &path, &serde_json::to_value(policy)?)
                .await?;
        }
        (Op::Create | Op::Update { .. }, Object::BudgetTier { tenant, tier }) => {
            let path = format!(
                "/api/v1/budgets/tenants/{}",
                encode(tenant_id(live, tenant)?)
            );
            conn.send_json(Method::PUT, &path, &json!({"tier": tier}))
                .await?;
        }
        (
            Op::Create | Op::Update { .. },
            Object::ProviderBudget {
                tenant,
                provider,
                spec,
            },
        ) => {
            let path = format!(
                "/api/v1/budgets/tenants/{}/providers/{}",
                encode(tenant_id(live, tenant)?),
                encode(provider)
            );
            conn.send_json(Method::PUT, &path, &serde_json::to_value(spec)?)
                .await?;
        }
        (Op::Create, Object::Pool { tenant, spec }) => {
            let mut body = serde_json::to_value(spec)?;
            let policies = body.as_object_mut().and_then(|o| o.remove("policies"));
            let (min, max) = (
                spec.min_capacity.unwrap_or(1),
                spec.max_capacity.unwrap_or(10),
            );
            body["tenant_id"] = json!(tenant_id(live, tenant)?);
            body["desired_capacity"] = json!(initial_desired(min, max));
            let v = conn.post_json("/api/v1/pools", &body).await?;
            let id = text(&v, "id")?;
            if let Some(p) = policies.filter(|p| !p.is_null()) {
                conn.send_json(
                    Method::PUT,
                    &format!("/api/v1/pools/{}/policies", encode(&id)),
                    &p,
                )
                .await?;
            }
        }
        (Op::Update { changes }, Object::Pool { tenant, spec }) => {
            let key = (tenant.clone(), spec.region.clone(), spec.agent_type.clone());
            let (id, desired) = live.pools.get(&key).cloned().context("unknown pool")?;
            let mut patch = serde_json::Map::new();
            let mut policies = None;
            for c in changes {
                if c.field == "policies" {
                    policies = Some(c.to.clone());
                } else {
                    patch.insert(c.field.clone(), c.to.clone());
                }
            }
            let (min, max) = (
                spec.min_capacity.unwrap_or(1),
                spec.max_capacity.unwrap_or(10),
            );
            if desired < min || desired > max {
                // The autoscaler's capacity must fit the new bounds.
                patch.insert("desired_capacity".into(), json!(desired.clamp(min, max)));
            }
            let path = format!("/api/v1/pools/{}", encode(&id));
            if !patch.is_empty() {
                conn.send_json(Method::PATCH, &path, &Value::Object(patch))
                    .await?;
            }
            match policies {
                None => {}
                Some(Value::Null) => {
                    conn.send_json(Method::DELETE, &format!("{path}/policies"), &Value::Null)
                        .await?;
                }
                Some(p) => {
                    conn.send_json(Method::PUT, &format!("{path}/policies"), &p)
                        .await?;
                }
            }
        }
        (Op::Delete, Object::Pool { tenant, spec }) => {
            let key = (tenant.clone(), spec.region.clone(), spec.agent_type.clone());
            let (id, _) = live.pools.get(&key).cloned().context("unknown pool")?;
            conn.send_json(
                Method::DELETE,
                &format!("/api/v1/pools/{}", encode(&id)),
                &Value::Null,
            )
            .await?;
        }
        (op, object) => anyhow::bail!("the API cannot {} a {}", op_word(op), object.kind()),
    }
    Ok(())
}
