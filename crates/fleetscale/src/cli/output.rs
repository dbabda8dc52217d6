//! The CLI's output: tables for people, `--output json` for scripts, and
//! what the ledger checks print and exit with. A leaf: it imports nothing
//! else of the CLI.

use clap::ValueEnum;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde_json::Value;

/// Output format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// A table.
    Table,
    /// JSON, one document.
    Json,
}

/// Prints pretty JSON.
pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        // A pool's Kubernetes workload target: `Kind/namespace/name`.
        Value::Object(o)
            if o.len() == 3
                && ["kind", "namespace", "name"]
                    .iter()
                    .all(|k| o.get(*k).is_some_and(Value::is_string)) =>
        {
            let part = |k: &str| o[k].as_str().unwrap_or_default().to_string();
            format!("{}/{}/{}", part("kind"), part("namespace"), part("name"))
        }
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

/// Prints a ledger report's `violations` (`seq` and `problem` each), one a line.
pub fn print_violations(report: &Value) {
    for x in report["violations"].as_array().into_iter().flatten() {
        println!(
            "  seq {}: {}",
            x["seq"],
            x["problem"].as_str().unwrap_or("")
        );
    }
}

/// The ledger check found broken invariants (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("the ledger check found broken invariants")]
pub struct LedgerBroken;
