//! The `fleetscale` binary: `serve` and `demo` run the server; every other
//! command is a client of its REST API (tables for people, `--output json`
//! for scripts), except `conformance`, which runs locally.

mod budgets;
mod client;
mod forecast;
mod policy_cmd;
mod simulate;
mod tenant_budgets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};

use fleetscale_server::{Actuator, ServerConfig, WebhookConfig};

/// mimalloc instead of glibc malloc: the server allocates per request and
/// per ledger entry on several threads (docs/benchmarks.md, "Allocator").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Autonomous scaling and global load balancing for fleets of AI agents.
#[derive(Parser, Debug)]
#[command(name = "fleetscale", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (API + control loop).
    Serve(ServeArgs),
    /// Run the server with a demo tenant, three regions, nine pools and synthetic load.
    Demo(DemoArgs),
    /// Tenants.
    Tenants {
        #[command(subcommand)]
        cmd: TenantsCmd,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// Regions.
    Regions {
        #[command(subcommand)]
        cmd: RegionsCmd,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// Agent pools.
    Pools {
        #[command(subcommand)]
        cmd: PoolsCmd,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// Set a pool's desired capacity by hand (clamped to its bounds).
    Scale {
        /// Pool id.
        pool_id: String,
        /// New capacity.
        #[arg(long)]
        capacity: i64,
        /// Why (recorded on the scaling event).
        #[arg(long)]
        reason: String,
        /// Tenant id (looked up from the pool when omitted).
        #[arg(long)]
        tenant_id: Option<String>,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// Rebalance an agent type's capacity across regions.
    Rebalance {
        /// Tenant id.
        #[arg(long)]
        tenant_id: String,
        /// `proportional` (to observed demand, default) or `even`.
        #[arg(long)]
        strategy: Option<String>,
        /// Show the moves without applying them.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// Capacity assessment of a tenant's pools.
    Capacity {
        /// Tenant id.
        #[arg(long)]
        tenant_id: Option<String>,
        /// Utilization % below which a pool is `under` (default 30).
        #[arg(long)]
        under_pct: Option<f64>,
        /// Utilization % above which a pool is `over` (default 80).
        #[arg(long)]
        over_pct: Option<f64>,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// Scaling events, newest first; with an ID, that one event.
    Events {
        /// Show only this event.
        #[arg(conflicts_with_all = ["pool_id", "tenant_id", "limit", "cursor"])]
        id: Option<String>,
        /// Only this pool.
        #[arg(long)]
        pool_id: Option<String>,
        /// Only this tenant.
        #[arg(long)]
        tenant_id: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The page after this one (`next_cursor` of the previous page).
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// Proposals of pools in `recommend` mode.
    Proposals {
        #[command(subcommand)]
        cmd: ProposalsCmd,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// Push a metric sample.
    Metrics {
        #[command(subcommand)]
        cmd: MetricsCmd,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// API tokens.
    Tokens {
        #[command(subcommand)]
        cmd: TokensCmd,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// AI budgets: region budgets (allocate, spend, refund, reserve, reset, ledger) and tenant provider budgets.
    Budgets {
        #[command(subcommand)]
        cmd: budgets::BudgetsCmd,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// The audit log, newest first (every mutation: who, what, when).
    Audit {
        /// Only this tenant's entries.
        #[arg(long)]
        tenant_id: Option<String>,
        #[command(flatten)]
        page: client::PageArgs,
        #[command(flatten)]
        conn: client::Conn,
    },
    /// The control loop's status: which replica leads, tick, actuator.
    Engine {
        #[command(flatten)]
        conn: client::Conn,
    },
    /// Run reference-system conformance vectors locally.
    Conformance {
        #[command(subcommand)]
        cmd: ConformanceCmd,
    },
    /// Backtest the forecaster on a trace against seasonal naive (runs locally).
    Forecast(forecast::ForecastArgs),
    /// Replay a trace against fleetscale and HPA/KEDA/step/static baselines (runs locally).
    Simulate(simulate::SimulateArgs),
    /// Evaluate scaling policies on supplied inputs (runs locally).
    Policy {
        #[command(subcommand)]
        cmd: policy_cmd::PolicyCmd,
    },
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Data directory of the embedded SQLite database.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// PostgreSQL URL (postgres://...); overrides --data-dir.
    #[arg(long, env = "FLEETSCALE_DATABASE_URL")]
    database_url: Option<String>,
    /// Control-loop interval (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    tick: Duration,
    /// Where scaling changes go.
    #[arg(long, value_enum, default_value_t = ActuatorKind::None)]
    actuator: ActuatorKind,
    /// Webhook URL (with --actuator webhook).
    #[arg(long)]
    webhook_url: Option<String>,
    /// Webhook HMAC secret (with --actuator webhook).
    #[arg(long, env = "FLEETSCALE_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Monthly AI budget in cents given to a region created without one
    /// (`monthly_budget_cents`); phase 92's default; 0 gives none.
    #[arg(long, default_value_t = fleetscale_core::budget::SEED_REGION_MONTHLY_CENTS)]
    region_default_budget_cents: i64,
    /// How long metric samples are kept.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Data directory of the embedded SQLite database.
    #[arg(long, default_value = "./demo-data")]
    data_dir: PathBuf,
    /// Control-loop interval.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    tick: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ActuatorKind {
    None,
    Webhook,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum TenantsCmd {
    /// Create a tenant.
    Create {
        /// Name.
        name: String,
    },
    /// List tenants.
    List(client::PageArgs),
    /// Show one tenant.
    Get {
        /// Tenant id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum RegionsCmd {
    /// Create a region with its first monthly AI budget.
    Create {
        /// Name, e.g. eu-west.
        name: String,
        /// Jurisdiction, e.g. eu.
        #[arg(long)]
        jurisdiction: String,
        /// Its first monthly budget in cents (default: the server's, phase
        /// 92's 100000; 0 for none).
        #[arg(long)]
        monthly_budget_cents: Option<i64>,
    },
    /// List regions.
    List(client::PageArgs),
    /// Show one region.
    Get {
        /// Region id or name.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum PoolsCmd {
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
    Create(Box<client::CreatePool>),
    /// Change a pool's bounds, capacity per instance, metric or mode (audited).
    Update(client::UpdatePool),
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

#[derive(Subcommand, Debug)]
enum ProposalsCmd {
    /// List proposals.
    List {
        /// Tenant id.
        #[arg(long)]
        tenant_id: Option<String>,
        /// pending, approved, rejected, superseded.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        page: client::PageArgs,
    },
    /// Show one proposal.
    Get {
        /// Proposal id.
        id: String,
    },
    /// Approve (apply) a proposal.
    Approve {
        /// Proposal id.
        id: String,
        /// Note.
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a proposal.
    Reject {
        /// Proposal id.
        id: String,
        /// Note.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum MetricsCmd {
    /// Push one sample (timestamp now).
    Push {
        /// Pool id.
        #[arg(long)]
        pool_id: String,
        /// Metric name.
        #[arg(long, default_value = "throughput")]
        metric: String,
        /// Value.
        #[arg(long)]
        value: f64,
    },
}

#[derive(Subcommand, Debug)]
enum TokensCmd {
    /// Create a token (printed once).
    Create {
        /// Tenant id (omit for a global admin token).
        #[arg(long)]
        tenant_id: Option<String>,
        /// admin, operator or viewer.
        #[arg(long)]
        role: String,
        /// Name (the audit actor).
        #[arg(long)]
        name: String,
    },
    /// List stored tokens (id, tenant, role, name, issued; never the token).
    List {
        /// Only this tenant's tokens.
        #[arg(long)]
        tenant_id: Option<String>,
        #[command(flatten)]
        page: client::PageArgs,
    },
    /// Revoke a token: it stops working at once on the server that revokes
    /// it and within 5 s on the others.
    Revoke {
        /// Token id (from `tokens list` or `tokens create`).
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum ConformanceCmd {
    /// Compute Kubernetes HPA vectors (the format of shared/conformance/hpa).
    Hpa {
        /// Vector file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = client::Output::Table)]
        output: client::Output,
    },
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLEETSCALE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

fn admin_token_env() -> Option<String> {
    std::env::var("FLEETSCALE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
}

fn sqlite_url(dir: &std::path::Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    Ok(format!(
        "sqlite://{}?mode=rwc",
        dir.join("fleetscale.db").display()
    ))
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    init_logs(a.log_format);
    let actuator = match a.actuator {
        ActuatorKind::None => Actuator::None,
        ActuatorKind::Webhook => {
            let (Some(url), Some(secret)) = (a.webhook_url.clone(), a.webhook_secret.clone())
            else {
                bail!("--actuator webhook needs --webhook-url and --webhook-secret (or FLEETSCALE_WEBHOOK_SECRET)");
            };
            Actuator::webhook(WebhookConfig {
                url,
                secret,
                timeout: Duration::from_secs(5),
                max_attempts: 3,
                backoff: Duration::from_millis(200),
            })
            .map_err(anyhow::Error::msg)?
        }
    };
    let database_url = match &a.database_url {
        Some(u) => u.clone(),
        None => sqlite_url(&a.data_dir)?,
    };
    fleetscale_server::run(ServerConfig {
        listen: a.listen,
        database_url,
        tick: a.tick,
        actuator,
        admin_token: admin_token_env(),
        retention: a.retention,
        demo: false,
        region_default_budget_cents: a.region_default_budget_cents,
    })
    .await?;
    Ok(())
}

async fn demo(a: DemoArgs) -> anyhow::Result<()> {
    init_logs(a.log_format);
    fleetscale_server::run(ServerConfig {
        listen: a.listen,
        database_url: sqlite_url(&a.data_dir)?,
        tick: a.tick,
        actuator: Actuator::None,
        admin_token: admin_token_env(),
        retention: Duration::from_secs(24 * 3600),
        demo: true,
        region_default_budget_cents: fleetscale_core::budget::SEED_REGION_MONTHLY_CENTS,
    })
    .await?;
    Ok(())
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    use client::Output;
    match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::Demo(a) => demo(a).await,
        Command::Tenants { cmd, conn } => match cmd {
            TenantsCmd::Create { name } => {
                conn.post_show(
                    "/api/v1/tenants",
                    &serde_json::json!({"name": name}),
                    client::TENANT_COLS,
                )
                .await
            }
            TenantsCmd::List(page) => {
                conn.list("/api/v1/tenants", &[], &page, client::TENANT_COLS)
                    .await
            }
            TenantsCmd::Get { id } => {
                conn.get_show(
                    &format!("/api/v1/tenants/{}", client::encode(&id)),
                    client::TENANT_COLS,
                )
                .await
            }
        },
        Command::Regions { cmd, conn } => match cmd {
            RegionsCmd::Create {
                name,
                jurisdiction,
                monthly_budget_cents,
            } => {
                let mut body = serde_json::json!({"name": name, "jurisdiction": jurisdiction});
                if let Some(c) = monthly_budget_cents {
                    body["monthly_budget_cents"] = c.into();
                }
                conn.post_show(
                    "/api/v1/regions",
                    &body,
                    &["id", "name", "jurisdiction", "monthly_budget_cents"],
                )
                .await
            }
            RegionsCmd::List(page) => {
                conn.list("/api/v1/regions", &[], &page, client::REGION_COLS)
                    .await
            }
            RegionsCmd::Get { id } => {
                conn.get_show(
                    &format!("/api/v1/regions/{}", client::encode(&id)),
                    client::REGION_COLS,
                )
                .await
            }
        },
        Command::Pools { cmd, conn } => match cmd {
            PoolsCmd::List { tenant_id, page } => {
                conn.list(
                    "/api/v1/pools",
                    &[("tenant_id", tenant_id)],
                    &page,
                    client::POOL_COLS,
                )
                .await
            }
            PoolsCmd::Get { pool_id } => {
                conn.get_show(&format!("/api/v1/pools/{pool_id}"), client::POOL_COLS)
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
                conn.show(&v, client::POOL_COLS);
                Ok(())
            }
            PoolsCmd::Delete { pool_id } => {
                let path = format!("/api/v1/pools/{}", client::encode(&pool_id));
                conn.delete_show(&path, "deleted", &pool_id).await
            }
            PoolsCmd::Lock { pool_id } => set_lock(&conn, &pool_id, true).await,
            PoolsCmd::Unlock { pool_id } => set_lock(&conn, &pool_id, false).await,
            PoolsCmd::Create(c) => {
                conn.post_show("/api/v1/pools", &c.body(), client::POOL_COLS)
                    .await
            }
            PoolsCmd::Policies { pool_id } => {
                let v = conn
                    .get_json(&format!("/api/v1/pools/{pool_id}/policies"))
                    .await?;
                client::print_json(&v);
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
                conn.show(&v, client::POOL_COLS);
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
                conn.show(&v, client::POOL_COLS);
                Ok(())
            }
            PoolsCmd::Plan { pool_id } => {
                conn.post_show(
                    &format!("/api/v1/pools/{pool_id}/plan"),
                    &serde_json::json!({}),
                    client::PLAN_COLS,
                )
                .await
            }
        },
        Command::Scale {
            pool_id,
            capacity,
            reason,
            tenant_id,
            conn,
        } => {
            let tenant_id = match tenant_id {
                Some(t) => t,
                None => conn.get_json(&format!("/api/v1/pools/{pool_id}")).await?["tenant_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            };
            let body = serde_json::json!({"tenant_id": tenant_id, "pool_id": pool_id, "capacity": capacity, "reason": reason});
            let v = conn.post_json("/api/v1/scale", &body).await?;
            match conn.output {
                Output::Json => client::print_json(&v),
                Output::Table => {
                    let p = &v["pool"];
                    println!(
                        "pool {} desired capacity {} (requested {}{})",
                        p["id"].as_str().unwrap_or_default(),
                        p["desired_capacity"],
                        capacity,
                        if v["clamped"] == true {
                            ", clamped to bounds"
                        } else {
                            ""
                        }
                    );
                    if v["event"].is_null() {
                        println!("no change: already at that capacity");
                    }
                }
            }
            Ok(())
        }
        Command::Rebalance {
            tenant_id,
            strategy,
            dry_run,
            conn,
        } => {
            let body = serde_json::json!({"tenant_id": tenant_id, "strategy": strategy, "dry_run": dry_run});
            let v = conn.post_json("/api/v1/rebalance", &body).await?;
            match conn.output {
                Output::Json => client::print_json(&v),
                Output::Table => {
                    println!(
                        "rebalanced {} pool(s){}",
                        v["rebalanced"],
                        if dry_run { " (dry run)" } else { "" }
                    );
                    for a in v["actions"].as_array().into_iter().flatten() {
                        println!("  {}", a.as_str().unwrap_or_default());
                    }
                }
            }
            Ok(())
        }
        Command::Capacity {
            tenant_id,
            under_pct,
            over_pct,
            conn,
        } => {
            let v = conn
                .get_json(&client::with_query(
                    "/api/v1/capacity",
                    &[
                        ("tenant_id", tenant_id),
                        ("under_pct", under_pct.map(|p| p.to_string())),
                        ("over_pct", over_pct.map(|p| p.to_string())),
                    ],
                ))
                .await?;
            match conn.output {
                Output::Json => client::print_json(&v),
                Output::Table => {
                    client::print_table(
                        v["pools"].as_array().map(Vec::as_slice).unwrap_or(&[]),
                        client::CAPACITY_COLS,
                    );
                    println!(
                        "overall health: {:.1}%",
                        v["overall_health"].as_f64().unwrap_or(0.0)
                    );
                }
            }
            Ok(())
        }
        Command::Events {
            id: Some(id), conn, ..
        } => {
            conn.get_show(
                &format!("/api/v1/scaling-events/{}", client::encode(&id)),
                client::EVENT_COLS,
            )
            .await
        }
        Command::Events {
            id: None,
            pool_id,
            tenant_id,
            limit,
            cursor,
            conn,
        } => {
            conn.list(
                "/api/v1/scaling-events",
                &[("pool_id", pool_id), ("tenant_id", tenant_id)],
                &client::PageArgs {
                    limit: Some(limit),
                    cursor,
                },
                client::EVENT_COLS,
            )
            .await
        }
        Command::Proposals { cmd, conn } => match cmd {
            ProposalsCmd::Get { id } => {
                conn.get_show(
                    &format!("/api/v1/proposals/{}", client::encode(&id)),
                    client::PROPOSAL_COLS,
                )
                .await
            }
            ProposalsCmd::List {
                tenant_id,
                status,
                page,
            } => {
                conn.list(
                    "/api/v1/proposals",
                    &[("tenant_id", tenant_id), ("status", status)],
                    &page,
                    client::PROPOSAL_COLS,
                )
                .await
            }
            ProposalsCmd::Approve { id, note } => {
                let v = conn
                    .post_json(
                        &format!("/api/v1/proposals/{id}/approve"),
                        &serde_json::json!({"note": note}),
                    )
                    .await?;
                conn.show(&v["proposal"], client::PROPOSAL_COLS);
                Ok(())
            }
            ProposalsCmd::Reject { id, note } => {
                let v = conn
                    .post_json(
                        &format!("/api/v1/proposals/{id}/reject"),
                        &serde_json::json!({"note": note}),
                    )
                    .await?;
                conn.show(&v["proposal"], client::PROPOSAL_COLS);
                Ok(())
            }
        },
        Command::Metrics {
            cmd:
                MetricsCmd::Push {
                    pool_id,
                    metric,
                    value,
                },
            conn,
        } => {
            let body = serde_json::json!({"samples": [{"pool_id": pool_id, "metric": metric, "value": value}]});
            let v = conn.post_json("/api/v1/metrics", &body).await?;
            match conn.output {
                Output::Json => client::print_json(&v),
                Output::Table => println!("accepted {}", v["accepted"]),
            }
            Ok(())
        }
        Command::Tokens { cmd, conn } => match cmd {
            TokensCmd::Create {
                tenant_id,
                role,
                name,
            } => {
                let body = serde_json::json!({"tenant_id": tenant_id, "role": role, "name": name});
                conn.post_show(
                    "/api/v1/tokens",
                    &body,
                    &["id", "token", "tenant_id", "role", "name"],
                )
                .await
            }
            TokensCmd::List { tenant_id, page } => {
                conn.list(
                    "/api/v1/tokens",
                    &[("tenant_id", tenant_id)],
                    &page,
                    &["id", "tenant_id", "role", "name", "created_at"],
                )
                .await
            }
            TokensCmd::Revoke { id } => {
                let path = format!("/api/v1/tokens/{}", client::encode(&id));
                conn.delete_show(&path, "revoked", &id).await
            }
        },
        Command::Budgets { cmd, conn } => budgets::run(cmd, conn).await,
        Command::Audit {
            tenant_id,
            page,
            conn,
        } => {
            conn.list(
                "/api/v1/audit",
                &[("tenant_id", tenant_id)],
                &page,
                client::AUDIT_COLS,
            )
            .await
        }
        Command::Engine { conn } => {
            conn.get_show(
                "/api/v1/engine",
                &[
                    "replica_id",
                    "leader",
                    "lease_holder",
                    "lease_expires_at",
                    "tick_ms",
                    "actuator",
                ],
            )
            .await
        }
        Command::Conformance {
            cmd: ConformanceCmd::Hpa { file, output },
        } => client::conformance_hpa(&file, output),
        Command::Forecast(a) => forecast::run(&a),
        Command::Policy { cmd } => policy_cmd::run(&cmd),
        Command::Simulate(a) => simulate::run(&a),
    }
}

/// Sets or clears a pool's safety lock and shows the pool.
async fn set_lock(conn: &client::Conn, pool_id: &str, locked: bool) -> anyhow::Result<()> {
    let v = conn
        .send_json(
            reqwest::Method::PUT,
            &format!("/api/v1/pools/{}/safety-lock", client::encode(pool_id)),
            &serde_json::json!({ "locked": locked }),
        )
        .await?;
    conn.show(&v, client::POOL_COLS);
    Ok(())
}

/// A closed stdout (`fleetscale ... | head`) ends the program quietly with
/// success, as ripgrep does, instead of a panic from `println!`.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<budgets::LedgerBroken>().is_some() {
                return ExitCode::from(3);
            }
            match e.downcast_ref::<client::ApiFailure>() {
                Some(f) if f.status < 500 => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}
