//! The `fleetscale` binary: `serve` and `demo` run the server; every other
//! command is a client of its REST API (tables for people, `--output json`
//! for scripts), except `conformance`, `forecast`, `simulate` and `policy`,
//! which run locally. This file holds the command tree's top level, the
//! dispatch to one module per noun (`cli/`) and the exit codes.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::client::{self, Conn};
use cli::{
    alerts, audit, budgets, config, conformance, engine, forecast, jobs, metrics, output,
    policy_cmd, pools, proposals, regions, routing, scale, serve, simulate, tenants, tokens,
};

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
    #[command(after_help = serve::SERVE_ENV_HELP)]
    Serve(serve::ServeArgs),
    /// Run the server with a demo tenant, three regions, nine pools and synthetic load.
    #[command(after_help = serve::DEMO_ENV_HELP)]
    Demo(serve::DemoArgs),
    /// Tenants.
    Tenants {
        #[command(subcommand)]
        cmd: tenants::TenantsCmd,
        #[command(flatten)]
        conn: Conn,
    },
    /// Regions.
    Regions {
        #[command(subcommand)]
        cmd: regions::RegionsCmd,
        #[command(flatten)]
        conn: Conn,
    },
    /// Agent pools.
    Pools {
        #[command(subcommand)]
        cmd: pools::PoolsCmd,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set a pool's desired capacity by hand (clamped to its bounds).
    Scale(scale::ScaleArgs),
    /// Rebalance an agent type's capacity across regions.
    Rebalance(scale::RebalanceArgs),
    /// Capacity assessment of a tenant's pools.
    Capacity(scale::CapacityArgs),
    /// Scaling events, newest first; with an ID, that one event.
    Events(scale::EventsArgs),
    /// Proposals of pools in `recommend` mode.
    Proposals {
        #[command(subcommand)]
        cmd: proposals::ProposalsCmd,
        #[command(flatten)]
        conn: Conn,
    },
    /// Route a workload: the best compliant region that can take it (recorded).
    Route(routing::RouteArgs),
    /// Recorded routing decisions: inspect, search, replay, report an outcome.
    Routing {
        #[command(subcommand)]
        cmd: routing::RoutingCmd,
        #[command(flatten)]
        conn: Conn,
    },
    /// Job routing (shard router): route a job to a region, mark it done.
    Jobs {
        #[command(subcommand)]
        cmd: jobs::JobsCmd,
        #[command(flatten)]
        conn: Conn,
    },
    /// Push a metric sample.
    Metrics {
        #[command(subcommand)]
        cmd: metrics::MetricsCmd,
        #[command(flatten)]
        conn: Conn,
    },
    /// API tokens.
    Tokens {
        #[command(subcommand)]
        cmd: tokens::TokensCmd,
        #[command(flatten)]
        conn: Conn,
    },
    /// AI budgets: region budgets (allocate, spend, refund, reserve, reset, ledger) and tenant provider budgets.
    Budgets {
        #[command(subcommand)]
        cmd: budgets::BudgetsCmd,
        #[command(flatten)]
        conn: Conn,
    },
    /// The audit log, newest first (every mutation: who, what, when).
    Audit(audit::AuditArgs),
    /// Alerts the region monitor raised (critical conflicts), newest first.
    Alerts(alerts::AlertsArgs),
    /// Make the server's tenants, regions, pools, policies and budgets what a
    /// fleet file says: print the plan, then apply it (docs/config-as-code.md).
    Apply(config::ApplyArgs),
    /// Write the server's tenants, regions, pools, policies and budgets as a
    /// fleet file (YAML on stdout) that `apply` takes back as a no-op.
    Export(config::ExportArgs),
    /// The control loop's status: which replica leads, tick, actuator.
    Engine {
        #[command(flatten)]
        conn: Conn,
    },
    /// Run reference-system conformance vectors locally.
    Conformance {
        #[command(subcommand)]
        cmd: conformance::ConformanceCmd,
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

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(a) => serve::serve(a).await,
        Command::Demo(a) => serve::demo(a).await,
        Command::Tenants { cmd, conn } => tenants::run(cmd, conn).await,
        Command::Regions { cmd, conn } => regions::run(cmd, conn).await,
        Command::Pools { cmd, conn } => pools::run(cmd, conn).await,
        Command::Scale(a) => scale::scale(a).await,
        Command::Rebalance(a) => scale::rebalance(a).await,
        Command::Capacity(a) => scale::capacity(a).await,
        Command::Events(a) => scale::events(a).await,
        Command::Proposals { cmd, conn } => proposals::run(cmd, conn).await,
        Command::Route(a) => routing::route(a).await,
        Command::Routing { cmd, conn } => routing::run(cmd, conn).await,
        Command::Jobs { cmd, conn } => jobs::run(cmd, conn).await,
        Command::Metrics { cmd, conn } => metrics::run(cmd, conn).await,
        Command::Tokens { cmd, conn } => tokens::run(cmd, conn).await,
        Command::Budgets { cmd, conn } => budgets::run(cmd, conn).await,
        Command::Audit(a) => audit::run(a).await,
        Command::Alerts(a) => alerts::run(a).await,
        Command::Apply(a) => config::apply(a).await,
        Command::Export(a) => config::export(a).await,
        Command::Engine { conn } => engine::run(conn).await,
        Command::Conformance { cmd } => conformance::run(cmd),
        Command::Forecast(a) => forecast::run(&a),
        Command::Policy { cmd } => policy_cmd::run(&cmd),
        Command::Simulate(a) => simulate::run(&a),
    }
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

/// Exit codes: 0 success, 3 a ledger check found broken invariants, 2 the
/// API refused the request (4xx) or a fleet file is invalid, 1 anything else.
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
            eprintln!("error: {}", error_chain(&e));
            if e.downcast_ref::<output::LedgerBroken>().is_some() {
                return ExitCode::from(3);
            }
            if e.downcast_ref::<config::doc::Invalid>().is_some() {
                return ExitCode::from(2);
            }
            match e.downcast_ref::<client::ApiFailure>() {
                Some(f) if f.status < 500 => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

/// An error and its causes, `: `-separated, each said once: a cause whose
/// text its parent already ends with (as some libraries' errors both print
/// and return their source) is left out.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !last.is_empty() && last.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        last = text;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("returned from database: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn a_cause_that_its_parent_already_prints_is_said_once() {
        let io = std::io::Error::other("unable to open database file");
        let e = anyhow::Error::new(Repeats(io)).context("storage");
        assert_eq!(
            error_chain(&e),
            "storage: returned from database: unable to open database file"
        );
        let plain = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(error_chain(&plain), "outer: middle: inner");
    }
}
