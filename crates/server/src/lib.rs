//! fleetscale-server: the HTTP shell.
//!
//! It owns the HTTP API ([`http`]), authentication ([`auth`]), the web
//! dashboard ([`dashboard`]) and the demo fleet ([`demo`]); the background work (control loop, actuators, metric
//! ingestion, budget maintenance) is `fleetscale-engine`'s. [`run`] wires
//! them together for `fleetscale serve` and `fleetscale demo`.

pub mod auth;
pub mod conn;
pub mod dashboard;
pub mod demo;
pub mod error;
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use fleetscale_engine::{DecisionRecorder, EngineConfig, EngineCtx, Ingestor, Supervisor};
use fleetscale_store::{Store, StoreError};

pub use fleetscale_engine::{Actuator, KubernetesConfig, WebhookConfig};
pub use http::router;

/// Shared state of every handler: one allocation
/// behind an [`Arc`], so the clone axum makes for every extractor is one
/// atomic increment. Fields read through [`Deref`](std::ops::Deref); setting
/// one ([`DerefMut`](std::ops::DerefMut), as `serve` does before it starts)
/// changes this handle only, exactly as when every field was cloned.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut AppStateInner {
        Arc::make_mut(&mut self.0)
    }
}

/// The fields of [`AppState`].
#[derive(Clone)]
pub struct AppStateInner {
    /// What the engine works over: store, budgets, actuator, metrics, clock.
    pub engine: EngineCtx,
    /// The engine's background jobs (their health is part of `/readyz`).
    pub supervisor: Supervisor,
    /// Group-committing metric writer.
    pub ingest: Ingestor,
    /// Group-committing routing decision writer (`POST /route` answers
    /// after its decision's commit).
    pub recorder: DecisionRecorder,
    /// SHA-256 of the admin token given by `FLEETSCALE_ADMIN_TOKEN`, checked without a query.
    pub admin_token_hash: Option<Arc<str>>,
    /// Recently confirmed grants of stored tokens (see [`auth::TokenCache`]).
    pub tokens: Arc<auth::TokenCache>,
    /// This replica's id.
    pub replica_id: Arc<str>,
    /// Control-loop interval, ms.
    pub tick_ms: i64,
    /// Metric retention, ms.
    pub retention_ms: i64,
    /// Monthly AI budget (cents) allocated to a region created without one.
    pub region_default_budget_cents: i64,
    /// Longest a request body may take to arrive (a 408 beyond).
    pub body_read_timeout: Duration,
}

impl AppState {
    /// State over `store` with default metrics, no actuator and no env admin
    /// token. Starts the budget writer, the metric writer and the routing
    /// decision writer (supervised),
    /// so it needs a tokio runtime; the control loop is not started.
    pub fn new(store: Store) -> AppState {
        let engine = EngineCtx::new(store);
        let supervisor = Supervisor::new(engine.metrics.clone());
        AppState(Arc::new(AppStateInner {
            ingest: Ingestor::start(engine.store.clone(), &supervisor),
            recorder: DecisionRecorder::start(engine.store.clone(), &supervisor),
            engine,
            supervisor,
            admin_token_hash: None,
            tokens: Arc::default(),
            replica_id: Arc::from(format!("replica-{}", uuid::Uuid::new_v4().simple())),
            tick_ms: 5_000,
            retention_ms: 7 * 24 * 3600 * 1000,
            region_default_budget_cents: fleetscale_core::budget::SEED_REGION_MONTHLY_CENTS,
            body_read_timeout: conn::HttpLimits::DEFAULT_BODY_READ_TIMEOUT,
        }))
    }
}

/// Errors of the server shell.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The store failed to open or answer (the cause is the source, not
    /// repeated in the message: a chain printed with `{:#}` says it once).
    #[error("storage")]
    Store(#[from] StoreError),
    /// Binding or serving failed.
    #[error("cannot serve on {addr}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A setting is invalid.
    #[error("{0}")]
    Config(String),
    /// The demo fleet could not be set up.
    #[error("cannot set up the demo: {0}")]
    Demo(String),
}

/// Everything `serve` and `demo` need.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Database URL (`sqlite://...` or `postgres://...`).
    pub database_url: String,
    /// Control-loop tick.
    pub tick: Duration,
    /// Actuator.
    pub actuator: Actuator,
    /// Admin token from the environment, if set.
    pub admin_token: Option<String>,
    /// Metric retention.
    pub retention: Duration,
    /// Start the demo fleet and its synthetic load.
    pub demo: bool,
    /// Monthly AI budget (cents) allocated to a region created without one
    /// (0: none).
    pub region_default_budget_cents: i64,
    /// The HTTP listener's time limits and connection limit.
    pub http: conn::HttpLimits,
    /// How a shell runs the client (`fleetscale`, or its path when it is
    /// not on the PATH), for the demo's next steps.
    pub client_command: String,
    /// The Prometheus server of pools whose `metric_source` names no URL
    /// (`serve --prometheus-url`).
    pub prometheus_url: Option<String>,
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(cfg: ServerConfig) -> Result<(), ServerError> {
    if cfg.tick < Duration::from_millis(100) || cfg.tick > Duration::from_secs(3600) {
        return Err(ServerError::Config(
            "--tick must be between 100ms and 1h".into(),
        ));
    }
    let store = Store::open(&cfg.database_url).await?;
    let mut state = AppState::new(store.clone());
    state.engine.actuator = Arc::new(cfg.actuator.clone());
    state.tick_ms = cfg.tick.as_millis() as i64;
    state.retention_ms = cfg.retention.as_millis() as i64;
    if !(0..=fleetscale_core::budget::MAX_AMOUNT_CENTS).contains(&cfg.region_default_budget_cents) {
        return Err(ServerError::Config(format!(
            "--region-default-budget-cents must be between 0 and {}",
            fleetscale_core::budget::MAX_AMOUNT_CENTS
        )));
    }
    state.region_default_budget_cents = cfg.region_default_budget_cents;
    if let Some(url) = &cfg.prometheus_url {
        if !fleetscale_core::metric_source::is_http_url(url) {
            return Err(ServerError::Config(format!(
                "--prometheus-url must be an http:// or https:// URL with a host, not {url:?}"
            )));
        }
    }
    // A query may take a tick, at most the default timeout.
    let query_timeout = fleetscale_engine::metric_source::DEFAULT_QUERY_TIMEOUT.min(cfg.tick);
    state.engine.metric_sources = Arc::new(fleetscale_engine::MetricSources::new(
        cfg.prometheus_url.clone(),
        query_timeout,
    ));
    cfg.http
        .validate(conn::fd_limit())
        .map_err(ServerError::Config)?;
    state.body_read_timeout = cfg.http.body_read_timeout;
    // Bind before anything is written: a taken port must not cost a token
    // that later starts never show again.
    let listener = conn::bind(cfg.listen).map_err(|source| ServerError::Io {
        addr: cfg.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Io {
        addr: cfg.listen,
        source,
    })?;
    let token = match &cfg.admin_token {
        // Kept in memory only: rotating the variable retires the old token.
        Some(t) => {
            state.admin_token_hash = Some(Arc::from(auth::hash_token(t)));
            demo::TokenSource::Env
        }
        None if !store.has_admin_token().await? => {
            let t = auth::generate_token();
            store
                .ensure_admin_token(&auth::hash_token(&t), "admin")
                .await?;
            eprintln!("Generated admin token (shown once; set FLEETSCALE_ADMIN_TOKEN to choose your own):\n  {t}");
            demo::TokenSource::Generated(t)
        }
        None => demo::TokenSource::ShownBefore,
    };
    tracing::info!(%addr, replica = %state.replica_id, backend = ?store.backend(), "fleetscale listening");
    eprintln!("fleetscale listening on http://{addr}");
    let (stop_tx, stop_rx) = watch::channel(false);
    fleetscale_engine::spawn_jobs(
        &state.engine,
        EngineConfig {
            tick: cfg.tick,
            replica_id: state.replica_id.to_string(),
            retention: cfg.retention,
        },
        &state.supervisor,
        &stop_rx,
    );
    if cfg.demo {
        let tenant = demo::seed(
            &store,
            &state.engine.budgets,
            state.region_default_budget_cents,
        )
        .await?;
        eprintln!(
            "demo fleet ready: tenant {} ({}); pools scale within a minute.\n{}",
            tenant.name,
            tenant.id,
            demo::next_steps(addr, &tenant.id, &token, &cfg.client_command)
        );
        let (store, rx) = (store.clone(), stop_rx.clone());
        state
            .supervisor
            .spawn("demo-load", stop_rx.clone(), move || {
                let (store, tenant, rx) = (store.clone(), tenant.id.clone(), rx.clone());
                async move {
                    demo::load(store, tenant, rx).await;
                    Ok(())
                }
            });
    }
    let app = router(state.clone());
    let (http_stop_tx, http_stop_rx) = watch::channel(false);
    let http = tokio::spawn(conn::serve(
        listener,
        app,
        cfg.http,
        http_stop_rx,
        Duration::from_secs(10),
    ));
    shutdown_signal().await;
    let _ = http_stop_tx.send(true);
    let res = http.await.map_err(|e| ServerError::Io {
        addr,
        source: std::io::Error::other(e),
    });
    let _ = stop_tx.send(true);
    // The metric and decision writers end when the last handles to them go
    // with `state`.
    let supervisor = state.supervisor.clone();
    drop(state);
    supervisor.join().await;
    store.close().await;
    res
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
