//! The CLI's REST client and its output: tables for people, JSON for scripts.

use std::path::Path;

use anyhow::Context;
use clap::{Args, ValueEnum};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde_json::{json, Value};

use fleetscale_core::hpa;

/// Output format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// A table.
    Table,
    /// JSON, one document.
    Json,
}

/// Which page of a list to fetch: the server's default size (100) and the
/// first page unless given.
#[derive(Args, Debug, Clone, Default)]
pub struct PageArgs {
    /// At most this many items (1-1000).
    #[arg(long)]
    pub limit: Option<u32>,
    /// The page after this one: the `next_cursor` of the previous page (a
    /// table prints it as `more: --cursor ...`).
    #[arg(long)]
    pub cursor: Option<String>,
}

impl PageArgs {
    /// These arguments as query parameters.
    pub fn params(&self) -> [(&'static str, Option<String>); 2] {
        [
            ("limit", self.limit.map(|l| l.to_string())),
            ("cursor", self.cursor.clone()),
        ]
    }
}

/// Columns shown for audit entries.
pub const AUDIT_COLS: &[&str] = &[
    "created_at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "tenant_id",
];
/// Columns shown for tenants.
pub const TENANT_COLS: &[&str] = &["id", "name", "created_at"];
/// Columns shown for regions.
pub const REGION_COLS: &[&str] = &["id", "name", "jurisdiction"];
/// Columns shown for pools.
pub const POOL_COLS: &[&str] = &[
    "id",
    "region",
    "agent_type",
    "min_capacity",
    "desired_capacity",
    "max_capacity",
    "metric",
    "mode",
];
/// Columns shown for a plan.
pub const PLAN_COLS: &[&str] = &[
    "pool_id",
    "current_capacity",
    "target_capacity",
    "should_scale",
    "policy",
    "confidence",
    "reason",
];
/// Columns shown for capacity.
pub const CAPACITY_COLS: &[&str] = &[
    "pool_id",
    "region",
    "agent_type",
    "current",
    "min",
    "max",
    "utilization",
    "status",
];
/// Columns shown for scaling events.
pub const EVENT_COLS: &[&str] = &[
    "created_at",
    "pool_id",
    "previous_capacity",
    "new_capacity",
    "trigger_source",
    "reason",
];
/// Columns shown for proposals.
pub const PROPOSAL_COLS: &[&str] = &[
    "id",
    "pool_id",
    "current_capacity",
    "target_capacity",
    "status",
    "reason",
];

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
#[error("{status} {title}: {detail}{fields}")]
pub struct ApiFailure {
    /// HTTP status.
    pub status: u16,
    /// Problem title.
    pub title: String,
    /// Problem detail.
    pub detail: String,
    /// Field errors, formatted.
    pub fields: String,
}

/// Where the server is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Server URL.
    #[arg(
        long,
        global = true,
        env = "FLEETSCALE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// Bearer token (else FLEETSCALE_TOKEN, else FLEETSCALE_ADMIN_TOKEN).
    #[arg(long, global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `path?k=v&...` for the parameters that are set.
pub fn with_query(path: &str, params: &[(&str, Option<String>)]) -> String {
    let set: Vec<(&str, &str)> = params
        .iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
        .collect();
    if set.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = set
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Conn {
    fn token(&self) -> Option<String> {
        self.token
            .clone()
            .or_else(|| std::env::var("FLEETSCALE_TOKEN").ok())
            .or_else(|| std::env::var("FLEETSCALE_ADMIN_TOKEN").ok())
            .filter(|t| !t.is_empty())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let req = match self.token() {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.server))?;
        let status = res.status();
        let text = res.text().await.context("cannot read the answer")?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).context("the server answered with invalid JSON");
        }
        let p: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({"detail": text}));
        let fields = p["errors"]
            .as_array()
            .map(|errs| {
                errs.iter()
                    .map(|e| {
                        format!(
                            "\n  {}: {}",
                            e["field"].as_str().unwrap_or("?"),
                            e["rule"].as_str().unwrap_or("?")
                        )
                    })
                    .collect::<String>()
            })
            .unwrap_or_default();
        Err(ApiFailure {
            status: status.as_u16(),
            title: p["title"]
                .as_str()
                .unwrap_or(status.canonical_reason().unwrap_or("error"))
                .to_string(),
            detail: p["detail"].as_str().unwrap_or_default().to_string(),
            fields,
        }
        .into())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.trim_end_matches('/'), path)
    }

    /// GET a JSON document.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Client::new().get(self.url(path))).await
    }

    /// POST a JSON body, returning the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(reqwest::Client::new().post(self.url(path)).json(body))
            .await
    }

    /// Sends `body` (unless null) with any method, returning the JSON answer.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<Value> {
        let req = reqwest::Client::new().request(method, self.url(path));
        let req = if body.is_null() { req } else { req.json(body) };
        self.send(req).await
    }

    /// DELETEs `path` and reports it: `{"<done>": id}` as JSON, `<done> id`
    /// as text (e.g. done = "deleted").
    pub async fn delete_show(&self, path: &str, done: &str, id: &str) -> anyhow::Result<()> {
        self.send_json(reqwest::Method::DELETE, path, &Value::Null)
            .await?;
        match self.output {
            Output::Json => print_json(&json!({ done: id })),
            Output::Table => println!("{done} {id}"),
        }
        Ok(())
    }

    /// Prints one object as a one-row table or as JSON.
    pub fn show(&self, v: &Value, cols: &[&str]) {
        match self.output {
            Output::Json => print_json(v),
            Output::Table => print_table(std::slice::from_ref(v), cols),
        }
    }

    /// POSTs and shows the answer.
    pub async fn post_show(&self, path: &str, body: &Value, cols: &[&str]) -> anyhow::Result<()> {
        let v = self.post_json(path, body).await?;
        self.show(&v, cols);
        Ok(())
    }

    /// GETs and shows the answer.
    pub async fn get_show(&self, path: &str, cols: &[&str]) -> anyhow::Result<()> {
        let v = self.get_json(path).await?;
        self.show(&v, cols);
        Ok(())
    }

    /// GETs the list page `page` asks for and shows its items (JSON: the
    /// whole page, with `next_cursor`).
    pub async fn list(
        &self,
        path: &str,
        params: &[(&str, Option<String>)],
        page: &PageArgs,
        cols: &[&str],
    ) -> anyhow::Result<()> {
        let mut all = params.to_vec();
        all.extend(page.params());
        let v = self.get_json(&with_query(path, &all)).await?;
        match self.output {
            Output::Json => print_json(&v),
            Output::Table => {
                print_table(
                    v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]),
                    cols,
                );
                if let Some(c) = v["next_cursor"].as_str() {
                    println!("more: --cursor {c}");
                }
            }
        }
        Ok(())
    }
}

/// Prints pretty JSON.
pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Prints rows as a table of the given columns.
pub fn print_table(rows: &[Value], cols: &[&str]) {
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(cols.iter().map(|c| c.to_uppercase()));
    for r in rows {
        t.add_row(cols.iter().map(|c| cell(&r[*c])));
    }
    println!("{t}");
}

/// `fleetscale pools create` flags.
#[derive(Args, Debug)]
pub struct CreatePool {
    /// Tenant id.
    #[arg(long)]
    pub tenant_id: String,
    /// Region name.
    #[arg(long)]
    pub region: String,
    /// Agent type.
    #[arg(long)]
    pub agent_type: String,
    #[command(flatten)]
    pub settings: PoolSettings,
    /// Scale-up threshold, percent.
    #[arg(long)]
    pub scale_up_threshold: Option<f64>,
    /// Scale-down threshold, percent.
    #[arg(long)]
    pub scale_down_threshold: Option<f64>,
    /// Cooldown, seconds.
    #[arg(long)]
    pub cooldown_seconds: Option<i64>,
    /// Instances per step.
    #[arg(long)]
    pub increment: Option<i64>,
    /// Evaluation window, seconds.
    #[arg(long)]
    pub window_seconds: Option<i64>,
}

/// The pool settings both `pools create` and `pools update` take.
#[derive(Args, Debug)]
pub struct PoolSettings {
    /// Lower bound.
    #[arg(long)]
    pub min: Option<i64>,
    /// Upper bound.
    #[arg(long)]
    pub max: Option<i64>,
    /// Desired capacity (must fit the bounds).
    #[arg(long)]
    pub desired: Option<i64>,
    /// Work per instance, in the metric's units.
    #[arg(long)]
    pub capacity_per_instance: Option<f64>,
    /// Load metric.
    #[arg(long)]
    pub metric: Option<String>,
    /// autonomous, recommend or frozen.
    #[arg(long)]
    pub mode: Option<String>,
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
        ] {
            if let Some(v) = v {
                body.insert(k.into(), v);
            }
        }
    }
}

/// `pools update`: the fields to change (unset flags stay as they are).
#[derive(Args, Debug)]
pub struct UpdatePool {
    /// Pool id.
    pub pool_id: String,
    #[command(flatten)]
    pub settings: PoolSettings,
}

impl UpdatePool {
    /// The PATCH body: only the flags given; at least one is needed.
    pub fn body(&self) -> anyhow::Result<Value> {
        let mut m = serde_json::Map::new();
        self.settings.fill(&mut m);
        anyhow::ensure!(
            !m.is_empty(),
            "nothing to change: give at least one of --min, --max, --desired, --capacity-per-instance, --metric, --mode"
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

/// `fleetscale conformance hpa FILE`: computes every vector of the file.
pub fn conformance_hpa(file: &Path, output: Output) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let vectors: Vec<hpa::Vector> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a vector file (a JSON array of vectors)",
            file.display()
        )
    })?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let mut outputs = Vec::with_capacity(vectors.len());
    for v in &vectors {
        let family = hpa::Family::from_file_name(name)
            .or_else(|| hpa::Family::infer(&v.input))
            .with_context(|| {
                format!("vector {:?}: cannot tell which HPA stage it tests", v.name)
            })?;
        outputs
            .push(hpa::evaluate_vector(family, v).with_context(|| format!("vector {:?}", v.name))?);
    }
    match output {
        Output::Json => {
            let results: Vec<Value> = vectors
                .iter()
                .zip(&outputs)
                .map(|(v, o)| json!({"name": v.name, "output": o}))
                .collect();
            print_json(&Value::Array(results));
        }
        Output::Table => {
            let rows: Vec<Value> = vectors
                .iter()
                .zip(&outputs)
                .map(|(v, o)| {
                    let ok = v.expected.as_ref().map(|e| o.mismatches(e).is_empty());
                    json!({"name": v.name, "output": serde_json::to_string(o).unwrap_or_default(), "matches_expected": ok})
                })
                .collect();
            print_table(&rows, &["name", "output", "matches_expected"]);
        }
    }
    Ok(())
}
