//! `fleetscale conformance ...`: runs reference-system conformance vectors
//! locally (today Kubernetes HPA's, in the format of shared/conformance/hpa).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};

use fleetscale_core::hpa;

use super::output::{print_json, print_table, Output};

/// Conformance subcommands.
#[derive(Subcommand, Debug)]
pub enum ConformanceCmd {
    /// Compute Kubernetes HPA vectors (the format of shared/conformance/hpa).
    Hpa {
        /// Vector file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// Runs one conformance subcommand.
pub fn run(cmd: ConformanceCmd) -> anyhow::Result<()> {
    match cmd {
        ConformanceCmd::Hpa { file, output } => hpa_vectors(&file, output),
    }
}

/// `fleetscale conformance hpa FILE`: computes every vector of the file.
fn hpa_vectors(file: &Path, output: Output) -> anyhow::Result<()> {
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
