//! The commands of the `fleetscale` binary, one module per noun. `output`
//! (tables vs `--output json`, ledger-check results) is the leaf every
//! other module may use; `client` is the REST client the server's nouns
//! share; `serve`, `conformance`, `forecast`, `simulate` and `policy_cmd`
//! run locally.

pub mod alerts;
pub mod audit;
pub mod budgets;
pub mod client;
pub mod config;
pub mod conformance;
pub mod engine;
pub mod forecast;
pub mod jobs;
pub mod metrics;
pub mod output;
pub mod plot;
pub mod policy_cmd;
pub mod pools;
pub mod proposals;
pub mod regions;
pub mod routing;
pub mod scale;
pub mod serve;
pub mod simulate;
pub mod tenant_budgets;
pub mod tenants;
pub mod tokens;
