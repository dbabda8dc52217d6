//! Validation results: every violated rule, each naming its field path.

use serde::Serialize;

/// One violated rule on one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Dotted path of the offending field, e.g. `scaling_policy.increment`.
    pub field: String,
    /// The rule it breaks, in words, e.g. `must be >= 1`.
    pub rule: String,
}

/// All the rules an input breaks, collected at once (never just the first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{} validation error(s): {}", .0.len(), summary(.0))]
pub struct Violations(pub Vec<FieldError>);

fn summary(errs: &[FieldError]) -> String {
    errs.iter()
        .map(|e| format!("{} {}", e.field, e.rule))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Violations {
    /// Records that `field` breaks `rule`.
    pub fn push(&mut self, field: impl Into<String>, rule: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            rule: rule.into(),
        });
    }

    /// `Ok(value)` when nothing was recorded, else `Err(self)`.
    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// True when no rule was broken.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks that `v` is finite and within `[lo, hi]`.
    pub fn check_f64(&mut self, field: &str, v: f64, lo: f64, hi: f64) {
        if !v.is_finite() {
            self.push(field, "must be a finite number");
        } else if v < lo || v > hi {
            self.push(field, format!("must be between {lo} and {hi}"));
        }
    }

    /// Checks that `v` is within `[lo, hi]`.
    pub fn check_i64(&mut self, field: &str, v: i64, lo: i64, hi: i64) {
        if v < lo || v > hi {
            self.push(field, format!("must be between {lo} and {hi}"));
        }
    }

    /// Checks a short identifier-like name: 1..=64 chars of `[A-Za-z0-9_.:-]`.
    pub fn check_name(&mut self, field: &str, v: &str) {
        if v.is_empty() {
            self.push(field, "must not be empty");
        } else if v.len() > 64 {
            self.push(field, "must be at most 64 characters");
        } else if !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
        {
            self.push(field, "must use only letters, digits, '_', '-', '.', ':'");
        }
    }

    /// Checks a free-text label: 1..=`max` characters, no control characters.
    pub fn check_text(&mut self, field: &str, v: &str, max: usize) {
        if v.trim().is_empty() {
            self.push(field, "must not be empty");
        } else if v.chars().count() > max {
            self.push(field, format!("must be at most {max} characters"));
        } else if v.chars().any(char::is_control) {
            self.push(field, "must not contain control characters");
        }
    }
}
