//! What the policy kinds share: metric names, comparisons, amounts,
//! cooldowns and rounding to instances.

use serde::{Deserialize, Serialize};

use crate::observation::Observation;
use crate::validate::Violations;

/// Metric names the platform collects (SPEC §3). Any other metric must be
/// named `custom.<name>`.
pub const KNOWN_METRICS: &[&str] = &[
    "cpu",
    "memory",
    "utilization",
    "throughput",
    "latency_ms",
    "error_rate",
    "queue_depth",
    "in_flight",
    "tokens",
    "cost",
];

/// Records a violation unless `name` is a known metric or `custom.<name>`.
pub fn check_metric(v: &mut Violations, field: &str, name: &str) {
    let custom = name
        .strip_prefix("custom.")
        .is_some_and(|rest| !rest.is_empty());
    if !(KNOWN_METRICS.contains(&name) || custom) {
        v.push(
            field,
            format!(
                "unknown metric {name:?}: expected one of {} or custom.<name>",
                KNOWN_METRICS.join(", ")
            ),
        );
    } else {
        v.check_name(field, name);
    }
}

/// How a metric is compared with a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

impl Comparison {
    /// Whether `value <op> threshold` holds (never for NaN).
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Gt => value > threshold,
            Comparison::Ge => value >= threshold,
            Comparison::Lt => value < threshold,
            Comparison::Le => value <= threshold,
        }
    }

    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
        }
    }
}

/// How many instances one action adds or removes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Amount {
    /// A number of instances, `1..=1000000`.
    Absolute(i64),
    /// A percentage of the current capacity, `(0, 1000]`, rounded up, at least 1.
    Percent(f64),
}

impl Amount {
    /// Instances for a pool of `current`.
    pub fn instances(self, current: i64) -> i64 {
        match self {
            Amount::Absolute(n) => n.max(0),
            Amount::Percent(p) => {
                let x = (current.max(0) as f64 * p / 100.0).ceil();
                if x.is_finite() {
                    (x as i64).max(1)
                } else {
                    1
                }
            }
        }
    }

    /// Records violations under `field`.
    pub fn validate(self, field: &str, v: &mut Violations) {
        match self {
            Amount::Absolute(n) => v.check_i64(&format!("{field}.absolute"), n, 1, 1_000_000),
            Amount::Percent(p) => {
                let f = format!("{field}.percent");
                if !p.is_finite() || p <= 0.0 || p > 1000.0 {
                    v.push(f, "must be > 0 and <= 1000");
                }
            }
        }
    }
}

/// Milliseconds of cooldown left before a scale-up (`up`) or scale-down.
/// A scale-up waits `up_seconds` after the last scale-up; a scale-down waits
/// `down_seconds` after the last change in either direction. The last
/// change falls back to `last_scaled_at_ms`. An elapsed time equal to the
/// cooldown is over.
pub fn cooldown_left_ms(obs: &Observation, up: bool, up_seconds: i64, down_seconds: i64) -> i64 {
    let (last, cd) = if up {
        (
            obs.last_scale_up_at_ms.or(obs.last_scaled_at_ms),
            up_seconds,
        )
    } else {
        (
            [
                obs.last_scale_up_at_ms,
                obs.last_scale_down_at_ms,
                obs.last_scaled_at_ms,
            ]
            .into_iter()
            .flatten()
            .max(),
            down_seconds,
        )
    };
    match last {
        Some(l) => l
            .saturating_add(cd.saturating_mul(1000))
            .saturating_sub(obs.now_ms)
            .max(0),
        None => 0,
    }
}

/// `ceil(x)` that ignores floating-point noise just above a whole number
/// (`1000 / 100` computed as `10.000000000000002` gives 10).
pub fn ceil_tol(x: f64) -> f64 {
    let r = x.round();
    if (x - r).abs() <= 1e-9 * x.abs().max(1.0) {
        r
    } else {
        x.ceil()
    }
}

/// `x` as a whole number of instances, saturating (NaN gives 0).
pub fn to_instances(x: f64) -> i64 {
    if x.is_nan() {
        0
    } else {
        x.clamp(0.0, i64::MAX as f64 / 2.0) as i64
    }
}
