//! `fleetscale serve` and `fleetscale demo`: the server's flags, its log
//! setup and the `ServerConfig` each command runs the server with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use fleetscale_server::conn::HttpLimits;
use fleetscale_server::{Actuator, KubernetesConfig, ServerConfig, WebhookConfig};

/// The environment `serve` reads, shown after its flags in `serve --help`.
pub const SERVE_ENV_HELP: &str = "\
Environment:
  FLEETSCALE_ADMIN_TOKEN          The global admin token (kept in memory only: changing it retires
                                  the old one). Unset: the first start on a database generates an
                                  admin token, stores it hashed and prints it once; later starts
                                  print none (create another with `fleetscale tokens create`).
  FLEETSCALE_DATABASE_URL         As --database-url.
  FLEETSCALE_WEBHOOK_SECRET       As --webhook-secret.
  FLEETSCALE_PROMETHEUS_URL       As --prometheus-url.
  FLEETSCALE_HEADER_READ_TIMEOUT  As --header-read-timeout.
  FLEETSCALE_BODY_READ_TIMEOUT    As --body-read-timeout.
  FLEETSCALE_IDLE_TIMEOUT         As --idle-timeout.
  FLEETSCALE_MAX_CONNECTIONS      As --max-connections.
  FLEETSCALE_LOG                  Log filter (tracing EnvFilter syntax), default `info,sqlx=warn`.
Clients (the other commands) read FLEETSCALE_SERVER and FLEETSCALE_TOKEN.";

/// The environment `demo` reads, shown after its flags in `demo --help`.
pub const DEMO_ENV_HELP: &str = "\
Environment:
  FLEETSCALE_ADMIN_TOKEN          The admin token (unset: the first start on the data directory
                                  generates one and prints it once, with the commands to try).
  FLEETSCALE_HEADER_READ_TIMEOUT, FLEETSCALE_BODY_READ_TIMEOUT, FLEETSCALE_IDLE_TIMEOUT,
  FLEETSCALE_MAX_CONNECTIONS      As the flags of the same names.
  FLEETSCALE_LOG                  Log filter (tracing EnvFilter syntax), default `info,sqlx=warn`.";

/// The HTTP listener's limits, shared by `serve` and `demo`.
#[derive(Args, Debug)]
pub struct HttpArgs {
    /// Longest a client may take to send a request's line and headers, from
    /// the connection's start or the first byte of a following request; the
    /// connection is closed beyond (slow clients cannot hold it).
    #[arg(long, env = "FLEETSCALE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_read_timeout: Duration,
    /// Longest a request body may take to arrive once its headers have
    /// (a 408 problem beyond).
    #[arg(long, env = "FLEETSCALE_BODY_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    body_read_timeout: Duration,
    /// A keep-alive connection idle this long between requests is closed.
    #[arg(long, env = "FLEETSCALE_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Most client connections open at once; more wait to be accepted.
    /// Default: the process's open-file limit (RLIMIT_NOFILE) less 256
    /// descriptors kept for the database and the actuators, at most 8192.
    #[arg(long, env = "FLEETSCALE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
}

impl HttpArgs {
    fn limits(&self) -> HttpLimits {
        let mut l = HttpLimits::defaults();
        l.header_read_timeout = self.header_read_timeout;
        l.body_read_timeout = self.body_read_timeout;
        l.idle_timeout = self.idle_timeout;
        if let Some(n) = self.max_connections {
            l.max_connections = n;
        }
        l
    }
}

/// Arguments of `fleetscale serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
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
    /// Kubeconfig file (with --actuator kubernetes); without it, the
    /// in-cluster config, then the default kubeconfig (KUBECONFIG or
    /// ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Monthly AI budget in cents given to a region created without one
    /// (`monthly_budget_cents`); 0 gives none.
    #[arg(long, default_value_t = fleetscale_core::budget::SEED_REGION_MONTHLY_CENTS)]
    region_default_budget_cents: i64,
    /// How long metric samples are kept.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// Prometheus base URL (http:// or https://) queried for pools whose
    /// `metric_source` names no `url`.
    #[arg(long, env = "FLEETSCALE_PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    http: HttpArgs,
}

/// Arguments of `fleetscale demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
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
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ActuatorKind {
    None,
    Webhook,
    Kubernetes,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLEETSCALE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colour codes only on a terminal: a log file or a pipe gets plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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

/// How a new shell runs this binary: `fleetscale` when that name on the
/// PATH is this executable, its absolute path otherwise (for example when
/// it was started as `cargo run` or `target/release/fleetscale`).
fn client_command() -> String {
    let Ok(exe) = std::env::current_exe().and_then(|e| e.canonicalize()) else {
        return "fleetscale".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p)
            .filter_map(|d| d.join("fleetscale").canonicalize().ok())
            .next()
            .is_some_and(|first| first == exe)
    });
    if on_path {
        "fleetscale".into()
    } else {
        let s = exe.display().to_string();
        if s.contains(|c: char| c.is_whitespace() || c == '\'') {
            format!("'{}'", s.replace('\'', "'\\''"))
        } else {
            s
        }
    }
}

fn sqlite_url(dir: &std::path::Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    Ok(format!(
        "sqlite://{}?mode=rwc",
        dir.join("fleetscale.db").display()
    ))
}

/// Runs `fleetscale serve`: the server (API + control loop) until it stops.
pub async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    init_logs(a.log_format);
    if a.kubeconfig.is_some() && a.actuator != ActuatorKind::Kubernetes {
        bail!("--kubeconfig is for --actuator kubernetes");
    }
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
        ActuatorKind::Kubernetes => Actuator::kubernetes(KubernetesConfig {
            kubeconfig: a.kubeconfig.clone(),
            timeout: Duration::from_secs(10),
            max_attempts: 3,
            backoff: Duration::from_millis(200),
        })
        .await
        .map_err(anyhow::Error::msg)?,
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
        http: a.http.limits(),
        client_command: client_command(),
        prometheus_url: a.prometheus_url.clone(),
    })
    .await?;
    Ok(())
}

/// Runs `fleetscale demo`: the server with a demo tenant, regions, pools
/// and synthetic load, on its own SQLite database.
pub async fn demo(a: DemoArgs) -> anyhow::Result<()> {
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
        http: a.http.limits(),
        client_command: client_command(),
        prometheus_url: None,
    })
    .await?;
    Ok(())
}
