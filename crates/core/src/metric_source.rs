//! A pool's metric source: where the engine pulls its load from each tick
//! instead of (or besides) pushed samples. One kind today, `prometheus`:
//! an instant PromQL query whose value is stored as one sample of a named
//! metric, exactly as a pushed sample. Parse, then validate: the raw body
//! ([`RawMetricSource`]) becomes a [`MetricSource`] or every broken rule.
//! Also the record of a failing source ([`MetricsError`]) and its pure
//! bookkeeping ([`MetricsError::after`]).

use serde::{Deserialize, Serialize};

use crate::validate::Violations;

/// The only source kind.
pub const PROMETHEUS: &str = "prometheus";

/// Longest PromQL query accepted, in bytes (a stated bound).
pub const MAX_QUERY_LEN: usize = 4096;

/// Longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Longest failure message kept on a pool, in characters.
pub const MAX_ERROR_LEN: usize = 512;

/// `metric_source` as sent in a pool body (and as a fleet file writes it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetricSource {
    /// The source kind: must be `prometheus`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The Prometheus server's base URL (`http://` or `https://`); omitted,
    /// the server's default (`serve --prometheus-url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The PromQL expression, evaluated as an instant query each tick; its
    /// value (a scalar or a one-element vector; several elements are summed)
    /// is the sample.
    pub query: String,
    /// The metric name the value is stored as; omitted, the pool's `metric`
    /// (the load its threshold policy reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
}

/// A validated metric source, as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricSource {
    /// Always `prometheus`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The base URL; `None` uses the server's default.
    pub url: Option<String>,
    /// The PromQL expression.
    pub query: String,
    /// The metric the value is stored as; `None` is the pool's `metric`.
    pub metric: Option<String>,
}

impl MetricSource {
    /// The metric name a value is stored as, for a pool whose load metric
    /// is `pool_metric`.
    #[must_use]
    pub fn metric_or<'a>(&'a self, pool_metric: &'a str) -> &'a str {
        self.metric.as_deref().unwrap_or(pool_metric)
    }

    /// The URL queried: the source's own, else `default_url`; `None` when
    /// neither is set.
    #[must_use]
    pub fn url_or<'a>(&'a self, default_url: Option<&'a str>) -> Option<&'a str> {
        self.url.as_deref().or(default_url)
    }

    /// The source as a raw body (what a patch starts from).
    #[must_use]
    pub fn to_raw(&self) -> RawMetricSource {
        RawMetricSource {
            kind: self.kind.clone(),
            url: self.url.clone(),
            query: self.query.clone(),
            metric: self.metric.clone(),
        }
    }
}

/// True when `url` is an absolute `http://` or `https://` URL with a host
/// and no whitespace or control characters.
#[must_use]
pub fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty()
                && !host.starts_with(':')
                && !url.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

impl RawMetricSource {
    /// Checks every rule, each violation under `prefix` (e.g.
    /// `metric_source.url`).
    pub fn validate(&self, prefix: &str, v: &mut Violations) -> MetricSource {
        if self.kind != PROMETHEUS {
            v.push(format!("{prefix}.type"), "must be prometheus");
        }
        if let Some(url) = &self.url {
            if url.len() > MAX_URL_LEN {
                v.push(
                    format!("{prefix}.url"),
                    format!("must be at most {MAX_URL_LEN} bytes"),
                );
            } else if !is_http_url(url) {
                v.push(
                    format!("{prefix}.url"),
                    "must be an http:// or https:// URL with a host",
                );
            }
        }
        if self.query.trim().is_empty() {
            v.push(format!("{prefix}.query"), "must not be empty");
        } else if self.query.len() > MAX_QUERY_LEN {
            v.push(
                format!("{prefix}.query"),
                format!("must be at most {MAX_QUERY_LEN} bytes"),
            );
        } else if self
            .query
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            v.push(
                format!("{prefix}.query"),
                "must not contain control characters",
            );
        }
        if let Some(m) = &self.metric {
            v.check_name(&format!("{prefix}.metric"), m);
        }
        MetricSource {
            kind: PROMETHEUS.into(),
            url: self
                .url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
            query: self.query.clone(),
            metric: self.metric.clone(),
        }
    }
}

/// A pool's failing metric source, kept on the pool until a query
/// succeeds again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsError {
    /// What the last failure said (at most [`MAX_ERROR_LEN`] characters).
    pub message: String,
    /// When the source started failing (the first failure of the run), Unix ms.
    pub since_ms: i64,
    /// Failed queries in a row.
    pub consecutive_failures: i64,
}

impl MetricsError {
    /// The record after one more failure saying `message` at `now_ms`:
    /// `previous` continued (same `since_ms`, one more failure), or a new
    /// run of one.
    #[must_use]
    pub fn after(previous: Option<&MetricsError>, message: &str, now_ms: i64) -> MetricsError {
        let message: String = message.chars().take(MAX_ERROR_LEN).collect();
        match previous {
            Some(p) => MetricsError {
                message,
                since_ms: p.since_ms,
                consecutive_failures: p.consecutive_failures.saturating_add(1),
            },
            None => MetricsError {
                message,
                since_ms: now_ms,
                consecutive_failures: 1,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: &str, url: Option<&str>, query: &str, metric: Option<&str>) -> RawMetricSource {
        RawMetricSource {
            kind: kind.into(),
            url: url.map(str::to_string),
            query: query.into(),
            metric: metric.map(str::to_string),
        }
    }

    #[test]
    fn rules_table() {
        let long = "x".repeat(MAX_QUERY_LEN + 1);
        let long_url = format!("http://h/{}", "p".repeat(MAX_URL_LEN));
        // (source, violated fields)
        let cases: Vec<(RawMetricSource, &[&str])> = vec![
            (raw("prometheus", Some("http://prom:9090"), "up", None), &[]),
            (
                raw("prometheus", None, "sum(rate(x[1m]))", Some("load")),
                &[],
            ),
            (
                raw("prometheus", Some("https://p.example/prom/"), "up", None),
                &[],
            ),
            (raw("graphite", None, "up", None), &["m.type"]),
            (
                raw("prometheus", Some("ftp://prom"), "up", None),
                &["m.url"],
            ),
            (raw("prometheus", Some("http://"), "up", None), &["m.url"]),
            (
                raw("prometheus", Some("http://a b"), "up", None),
                &["m.url"],
            ),
            (raw("prometheus", Some("prom:9090"), "up", None), &["m.url"]),
            (raw("prometheus", Some(&long_url), "up", None), &["m.url"]),
            (raw("prometheus", None, "  ", None), &["m.query"]),
            (raw("prometheus", None, &long, None), &["m.query"]),
            (raw("prometheus", None, "up\u{7}", None), &["m.query"]),
            (
                raw("prometheus", None, "up", Some("bad metric")),
                &["m.metric"],
            ),
            (
                raw("x", Some("x"), "", Some("")),
                &["m.type", "m.url", "m.query", "m.metric"],
            ),
        ];
        for (src, want) in cases {
            let mut v = Violations::default();
            src.validate("m", &mut v);
            let got: Vec<&str> = v.0.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(got, want, "{src:?}");
        }
    }

    #[test]
    fn a_trailing_slash_is_dropped_and_defaults_apply() {
        let mut v = Violations::default();
        let s = raw("prometheus", Some("http://prom:9090/"), "up", None).validate("m", &mut v);
        assert!(v.is_empty());
        assert_eq!(s.url.as_deref(), Some("http://prom:9090"));
        assert_eq!(s.metric_or("throughput"), "throughput");
        assert_eq!(s.url_or(Some("http://default")), Some("http://prom:9090"));
        let s = raw("prometheus", None, "up", Some("load")).validate("m", &mut v);
        assert_eq!(s.metric_or("throughput"), "load");
        assert_eq!(s.url_or(Some("http://default")), Some("http://default"));
        assert_eq!(s.url_or(None), None);
        assert_eq!(s.to_raw().validate("m", &mut v), s);
    }

    #[test]
    fn a_failure_run_counts_from_its_first_failure() {
        let first = MetricsError::after(None, "connection refused", 1_000);
        assert_eq!(first.since_ms, 1_000);
        assert_eq!(first.consecutive_failures, 1);
        let second = MetricsError::after(Some(&first), "timed out", 2_000);
        assert_eq!(second.since_ms, 1_000);
        assert_eq!(second.consecutive_failures, 2);
        assert_eq!(second.message, "timed out");
        let long = MetricsError::after(None, &"e".repeat(2 * MAX_ERROR_LEN), 0);
        assert_eq!(long.message.chars().count(), MAX_ERROR_LEN);
    }
}
