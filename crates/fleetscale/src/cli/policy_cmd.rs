//! `fleetscale policy evaluate --file SPEC.json`: evaluates a pool's
//! policies on supplied inputs locally, without a server or a pool, and
//! prints the combined decision as JSON. `fleetscale policy default` prints
//! the policies a pool created without a `scaling_policy` gets (the ones
//! `fleetscale simulate` measures as "fleetscale"), for 2 requests at once
//! per instance (a new pool's are its `capacity_per_instance`).
//!
//! The file holds `{"spec": <PoolPolicies>, "observation": <Observation>}`;
//! both are validated first and every violation is reported at once.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde::Deserialize;

use fleetscale_core::decision::{decide_all, validate_observation, PoolPolicies};
use fleetscale_core::Observation;

/// `fleetscale policy ...`
#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Evaluate policies on inputs from a JSON file; prints the decision as JSON.
    Evaluate {
        /// `{"spec": {...}, "observation": {...}}`.
        #[arg(long)]
        file: PathBuf,
    },
    /// Print fleetscale's default pool policies (the shipped JSON file).
    Default,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    spec: PoolPolicies,
    observation: Observation,
}

/// Runs the command.
pub fn run(cmd: &PolicyCmd) -> anyhow::Result<()> {
    let file = match cmd {
        PolicyCmd::Evaluate { file } => file,
        PolicyCmd::Default => {
            print!(
                "{}",
                fleetscale_core::decision::default::DEFAULT_POLICIES_JSON
            );
            return Ok(());
        }
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let input: Input = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid input", file.display()))?;
    let mut errs = Vec::new();
    if let Err(v) = input.spec.validate() {
        errs.extend(
            v.0.into_iter()
                .map(|e| format!("spec.{} {}", e.field, e.rule)),
        );
    }
    if let Err(v) = validate_observation(&input.observation) {
        errs.extend(
            v.0.into_iter()
                .map(|e| format!("observation.{} {}", e.field, e.rule)),
        );
    }
    if !errs.is_empty() {
        anyhow::bail!(
            "{} validation error(s):\n  {}",
            errs.len(),
            errs.join("\n  ")
        );
    }
    let d = decide_all(&input.spec, &input.observation);
    println!("{}", serde_json::to_string_pretty(&d)?);
    Ok(())
}
