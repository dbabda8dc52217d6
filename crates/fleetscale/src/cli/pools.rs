//! `fleetscale pools ...`: agent pools over the REST API (list, show,
//! create, update, delete, safety lock, plan, combined policies) and the
//! flags `pools create` and `pools update` take.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::{self, Conn};
use super::output::print_json;

/// Columns shown for pools.
const POOL_COLS: &[&str] = &[
    "id",
    "region",
    "agent_type",
    "min_capacity",
    "desired_capacity",
    "max_capacity",
    "metric",
    "mode",
    "target",
];

/// Columns shown for one pool (`pools get`): the list's and its metric
/// source's state.
const POOL_DETAIL_COLS: &[&str] = &[
    "id",
    "region",
    "agent_type",
    "min_capacity",
    "desired_capacity",
    "max_capacity",
    "metric",
    "mode",
    "target",
    "metrics_stale",
    "metric_source",
    "metrics_error",
];

/// Columns shown for a plan.
const PLAN_COLS: &[&str] = &[
    "pool_id",
    "current_capacity",
    "target_capacity",
    "should_scale",
    "policy",
    "confidence",
    "reason",
];

/// Pool subcommands.
#[derive(Subcommand, Debug)]
pub enum PoolsCmd {
    /// List pools.
    List {
        /// Tenant id.
        #[arg(long)]
        tenant_id: Option<String>,
        #[command(flatten)]
        page: client::PageArgs,
    },
    /// Show one pool.
    Get {
        /// Pool id.
        pool_id: String,
    },
    /// Create a pool.
    Create(Box<CreatePool>),
    /// Change a pool's bounds, capacity per instance, metric, mode, metric source or target (audited).
    Update(Box<UpdatePool>),
    /// Delete a pool with its metrics, events and proposals (audited).
    Delete {
        /// Pool id.
        pool_id: String,
    },
    /// Set the pool's safety lock: the control loop leaves the pool alone (a manual scale still applies).
    Lock {
        /// Pool id.
        pool_id: String,
    },
    /// Clear the pool's safety lock.
    Unlock {
        /// Pool id.
        pool_id: String,
    },
    /// Dry-run the pool's policy now.
    Plan {
        /// Pool id.
        pool_id: String,
    },
    /// Show a pool's effective policies.
    Policies {
        /// Pool id.
        pool_id: String,
    },
    /// Set a pool's combined policies from a JSON file (`{"policies": [...], ...}`).
    SetPolicies {
        /// Pool id.
        pool_id: String,
        /// JSON file with the policies.
        #[arg(long)]
        file: PathBuf,
    },
    /// Drop a pool's combined policies: back to its threshold policy.
    ClearPolicies {
        /// Pool id.
        pool_id: String,
    },
}

/// Runs one pools subcommand.
pub async fn run(cmd: PoolsCmd, conn: Conn) -> anyhow::Result<()> {
    match cmd {
        PoolsCmd::List { tenant_id, page } => {
            conn.list(
                "/api/v1/pools",
                &[("tenant_id", tenant_id)],
                &page,
                POOL_COLS,
            )
            .await
        }
        PoolsCmd::Get { pool_id } => {
            conn.get_show(&format!("/api/v1/pools/{pool_id}"), POOL_DETAIL_COLS)
                .await
        }
        PoolsCmd::Update(u) => {
            let v = conn
                .send_json(
                    reqwest::Method::PATCH,
                    &format!("/api/v1/pools/{}", client::encode(&u.pool_id)),
                    &u.body()?,
                )
                .await?;
            conn.show(&v, POOL_DETAIL_COLS);
            Ok(())
        }
        PoolsCmd::Delete { pool_id } => {
            let path = format!("/api/v1/pools/{}", client::encode(&pool_id));
            conn.delete_show(&path, "deleted", &pool_id).await
        }
        PoolsCmd::Lock { pool_id } => set_lock(&conn, &pool_id, true).await,
        PoolsCmd::Unlock { pool_id } => set_lock(&conn, &pool_id, false).await,
        PoolsCmd::Create(c) => {
            conn.post_show("/api/v1/pools", &c.body(), POOL_DETAIL_COLS)
                .await
        }
        PoolsCmd::Policies { pool_id } => {
            let v = conn
                .get_json(&format!("/api/v1/pools/{pool_id}/policies"))
                .await?;
            print_json(&v);
            Ok(())
        }
        PoolsCmd::SetPolicies { pool_id, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let body: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let v = conn
                .send_json(
                    reqwest::Method::PUT,
                    &format!("/api/v1/pools/{pool_id}/policies"),
                    &body,
                )
                .await?;
            conn.show(&v, POOL_COLS);
            Ok(())
        }
        PoolsCmd::ClearPolicies { pool_id } => {
            let v = conn
                .send_json(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/pools/{pool_id}/policies"),
                    &serde_json::Value::Null,
                )
                .await?;
            conn.show(&v, POOL_COLS);
            Ok(())
        }
        PoolsCmd::Plan { pool_id } => {
            conn.post_show(
                &format!("/api/v1/pools/{pool_id}/plan"),
                &serde_json::json!({}),
                PLAN_COLS,
            )
            .await
        }
    }
}

/// Sets or clears a pool's safety lock and shows the pool.
async fn set_lock(conn: &Conn, pool_id: &str, locked: bool) -> anyhow::Result<()> {
    let v = conn
        .send_json(
            reqwest::Method::PUT,
            &format!("/api/v1/pools/{}/safety-lock", client::encode(pool_id)),
            &serde_json::json!({ "locked": locked }),
        )
        .await?;
    conn.show(&v, POOL_COLS);
    Ok(())
}

/// `fleetscale pools create` flags.
#[derive(Args, Debug)]
pub struct CreatePool {
    /// Tenant id.
    #[arg(long)]
    tenant_id: String,
    /// Region name.
    #[arg(long)]
    region: String,
    /// Agent type.
    #[arg(long)]
    agent_type: String,
    #[command(flatten)]
    settings: PoolSettings,
    /// Scale-up threshold, percent.
    #[arg(long)]
    scale_up_threshold: Option<f64>,
    /// Scale-down threshold, percent.
    #[arg(long)]
    scale_down_threshold: Option<f64>,
    /// Cooldown, seconds.
    #[arg(long)]
    cooldown_seconds: Option<i64>,
    /// Instances per step.
    #[arg(long)]
    increment: Option<i64>,
    /// Evaluation window, seconds.
    #[arg(long)]
    window_seconds: Option<i64>,
}

/// The pool settings both `pools create` and `pools update` take.
#[derive(Args, Debug)]
pub struct PoolSettings {
    /// Lower bound.
    #[arg(long)]
    min: Option<i64>,
    /// Upper bound.
    #[arg(long)]
    max: Option<i64>,
    /// Desired capacity (must fit the bounds).
    #[arg(long)]
    desired: Option<i64>,
    /// Work per instance, in the metric's units.
    #[arg(long)]
    capacity_per_instance: Option<f64>,
    /// Load metric.
    #[arg(long)]
    metric: Option<String>,
    /// autonomous, recommend or frozen.
    #[arg(long)]
    mode: Option<String>,
    /// The job kind served, for the region's pressure: posting,
    /// orchestration, creative or intel (default: the agent type, when it
    /// is one of them).
    #[arg(long)]
    job_kind: Option<String>,
    /// PromQL query the engine evaluates each tick as the pool's load (a
    /// Prometheus metric source; replaces the pool's current one).
    #[arg(long)]
    metric_source_query: Option<String>,
    /// Prometheus base URL of the query (default: the server's
    /// --prometheus-url).
    #[arg(long, requires = "metric_source_query")]
    metric_source_url: Option<String>,
    /// Metric the query's value is stored as (default: the pool's metric).
    #[arg(long, requires = "metric_source_query")]
    metric_source_metric: Option<String>,
    /// Kubernetes workload kind the `kubernetes` actuator scales:
    /// Deployment or StatefulSet (with --target-namespace and --target-name).
    #[arg(long, requires_all = ["target_namespace", "target_name"])]
    target_kind: Option<String>,
    /// Namespace of the target workload.
    #[arg(long, requires = "target_kind")]
    target_namespace: Option<String>,
    /// Name of the target workload.
    #[arg(long, requires = "target_kind")]
    target_name: Option<String>,
}

impl PoolSettings {
    /// Adds the settings given to a request body (unset ones are left to
    /// the server: its defaults, or the pool's current values).
    fn fill(&self, body: &mut serde_json::Map<String, Value>) {
        for (k, v) in [
            ("min_capacity", self.min.map(Value::from)),
            ("max_capacity", self.max.map(Value::from)),
            ("desired_capacity", self.desired.map(Value::from)),
            (
                "capacity_per_instance",
                self.capacity_per_instance.map(Value::from),
            ),
            ("metric", self.metric.clone().map(Value::from)),
            ("mode", self.mode.clone().map(Value::from)),
            ("job_kind", self.job_kind.clone().map(Value::from)),
            (
                "target",
                self.target_kind.as_ref().map(|kind| {
                    serde_json::json!({
                        "kind": kind,
                        "namespace": self.target_namespace,
                        "name": self.target_name,
                    })
                }),
            ),
        ] {
            if let Some(v) = v {
                body.insert(k.into(), v);
            }
        }
        if let Some(query) = &self.metric_source_query {
            let mut src = serde_json::Map::new();
            src.insert("type".into(), "prometheus".into());
            src.insert("query".into(), query.clone().into());
            if let Some(u) = &self.metric_source_url {
                src.insert("url".into(), u.clone().into());
            }
            if let Some(m) = &self.metric_source_metric {
                src.insert("metric".into(), m.clone().into());
            }
            body.insert("metric_source".into(), Value::Object(src));
        }
    }
}

/// `pools update`: the fields to change (unset flags stay as they are).
#[derive(Args, Debug)]
pub struct UpdatePool {
    /// Pool id.
    pool_id: String,
    #[command(flatten)]
    settings: PoolSettings,
    /// Remove the pool's metric source (back to pushed samples only).
    #[arg(long, conflicts_with = "metric_source_query")]
    clear_metric_source: bool,
    /// Remove the pool's Kubernetes workload target.
    #[arg(long, conflicts_with = "target_kind")]
    clear_target: bool,
}

impl UpdatePool {
    /// The PATCH body: only the flags given; at least one is needed.
    pub fn body(&self) -> anyhow::Result<Value> {
        let mut m = serde_json::Map::new();
        self.settings.fill(&mut m);
        if self.clear_metric_source {
            m.insert("metric_source".into(), Value::Null);
        }
        if self.clear_target {
            m.insert("target".into(), Value::Null);
        }
        anyhow::ensure!(
            !m.is_empty(),
            "nothing to change: give at least one of --min, --max, --desired, --capacity-per-instance, --metric, --mode, --job-kind, --metric-source-query, --clear-metric-source, --target-kind (with --target-namespace and --target-name), --clear-target"
        );
        Ok(Value::Object(m))
    }
}

impl CreatePool {
    /// The request body (unset flags are omitted so server defaults apply).
    pub fn body(&self) -> Value {
        let mut policy = serde_json::Map::new();
        for (k, v) in [
            (
                "scale_up_threshold",
                self.scale_up_threshold.map(Value::from),
            ),
            (
                "scale_down_threshold",
                self.scale_down_threshold.map(Value::from),
            ),
            ("cooldown_seconds", self.cooldown_seconds.map(Value::from)),
            ("increment", self.increment.map(Value::from)),
            ("window_seconds", self.window_seconds.map(Value::from)),
        ] {
            if let Some(v) = v {
                policy.insert(k.into(), v);
            }
        }
        let mut b = serde_json::Map::new();
        b.insert("tenant_id".into(), self.tenant_id.clone().into());
        b.insert("region".into(), self.region.clone().into());
        b.insert("agent_type".into(), self.agent_type.clone().into());
        self.settings.fill(&mut b);
        if !policy.is_empty() {
            b.insert("scaling_policy".into(), Value::Object(policy));
        }
        Value::Object(b)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::PoolsCmd;

    #[derive(Parser)]
    struct T {
        #[command(subcommand)]
        cmd: PoolsCmd,
    }

    fn parse(args: &[&str]) -> Result<PoolsCmd, clap::Error> {
        T::try_parse_from(std::iter::once("pools").chain(args.iter().copied())).map(|t| t.cmd)
    }

    #[test]
    fn metric_source_flags_make_the_bodies() {
        let PoolsCmd::Create(c) = parse(&[
            "create",
            "--tenant-id",
            "t",
            "--region",
            "eu",
            "--agent-type",
            "w",
            "--metric-source-query",
            "sum(agent_load)",
            "--metric-source-url",
            "http://prom:9090",
            "--metric-source-metric",
            "load",
        ])
        .unwrap() else {
            panic!("not create")
        };
        assert_eq!(
            c.body()["metric_source"],
            json!({"type": "prometheus", "query": "sum(agent_load)",
                   "url": "http://prom:9090", "metric": "load"})
        );
        let PoolsCmd::Update(u) = parse(&["update", "p", "--metric-source-query", "up"]).unwrap()
        else {
            panic!("not update")
        };
        assert_eq!(
            u.body().unwrap(),
            json!({"metric_source": {"type": "prometheus", "query": "up"}})
        );
        let PoolsCmd::Update(u) = parse(&["update", "p", "--clear-metric-source"]).unwrap() else {
            panic!("not update")
        };
        assert_eq!(u.body().unwrap(), json!({"metric_source": null}));
        // A URL or metric without a query, or a query with a clear, is refused.
        assert!(parse(&["update", "p", "--metric-source-url", "http://x"]).is_err());
        assert!(parse(&[
            "update",
            "p",
            "--clear-metric-source",
            "--metric-source-query",
            "up"
        ])
        .is_err());
    }
}
