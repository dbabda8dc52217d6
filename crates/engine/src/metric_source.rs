//! Metric sources: each tick the leader evaluates every pool's PromQL query
//! (`metric_source`, see [`fleetscale_core::metric_source`]) as a Prometheus
//! instant query (`GET {url}/api/v1/query?query=..&time=..`) and stores
//! each value as a sample exactly as a pushed one (same store path, the
//! clock's time). One shared HTTP client (connections reused), a per-query
//! timeout, at most [`QUERY_CONCURRENCY`] queries at once, answers of at
//! most [`MAX_RESPONSE_BYTES`].
//!
//! An empty vector is no sample (the pool's metrics then age into stale as
//! pushed ones would); an error status, a non-200, a timeout, an unreadable
//! or non-finite answer is a failure: recorded on the pool
//! ([`MetricsError`], visible in the API), counted in
//! `fleetscale_metric_source_errors_total{pool}`, and handed to fail static,
//! which holds the pool (no scale-in) until a query succeeds again.
//! [`parse_response`] (the answer → a value or an error) is pure.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;

use fleetscale_core::metric_source::MetricsError;
use fleetscale_core::Mode;
use fleetscale_store::{Fence, Pool, Sample, StoreError};

use crate::metrics::PoolLabel;
use crate::EngineCtx;

/// Queries in flight at once (a stated bound).
pub const QUERY_CONCURRENCY: usize = 8;

/// Longest a query may take by default (connect, send, answer).
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer read, bytes (a stated bound); a longer one is a failure.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Largest magnitude of a value stored (as for a pushed sample).
pub const MAX_VALUE: f64 = 1e15;

/// The Prometheus client every query shares, and the server-wide default URL.
#[derive(Debug, Clone)]
pub struct MetricSources {
    client: reqwest::Client,
    default_url: Option<String>,
    timeout: Duration,
}

impl Default for MetricSources {
    fn default() -> Self {
        MetricSources::new(None, DEFAULT_QUERY_TIMEOUT)
    }
}

impl MetricSources {
    /// Sources queried with one client whose every query times out after
    /// `timeout`; `default_url` serves pools whose source names no URL.
    pub fn new(default_url: Option<String>, timeout: Duration) -> MetricSources {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(QUERY_CONCURRENCY)
            .build()
            .unwrap_or_default();
        MetricSources {
            client,
            default_url: default_url.map(|u| u.trim_end_matches('/').to_string()),
            timeout,
        }
    }

    /// How long one query, and one tick's queries together, may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The server-wide default Prometheus URL (`serve --prometheus-url`).
    pub fn default_url(&self) -> Option<&str> {
        self.default_url.as_deref()
    }

    /// Evaluates `query` at `now_ms` on the Prometheus server at `base`:
    /// its value, `None` for an empty vector, or what went wrong.
    pub async fn query(&self, base: &str, query: &str, now_ms: i64) -> Result<Option<f64>, String> {
        let time = format!("{:.3}", now_ms as f64 / 1000.0);
        let mut resp = self
            .client
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", query), ("time", time.as_str())])
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(format!(
                    "answer larger than {MAX_RESPONSE_BYTES} bytes (HTTP {status})"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        parse_response(status, &body)
    }
}

/// Words for a transport error, with its causes (no URL: it is on the pool).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// The value of a Prometheus HTTP API answer (`status` the HTTP status,
/// `body` the JSON): a scalar's value or the sum of a vector's elements,
/// `None` for an empty vector; an error for a non-200, `"status":
/// "error"`, another result type (matrix, string), a malformed body, or a
/// value that is not finite or beyond ±[`MAX_VALUE`]. Pure.
pub fn parse_response(status: u16, body: &[u8]) -> Result<Option<f64>, String> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let prom_error = json.as_ref().and_then(|j| {
        (j["status"] == "error").then(|| {
            format!(
                "{}: {}",
                j["errorType"].as_str().unwrap_or("error"),
                j["error"].as_str().unwrap_or("no message")
            )
        })
    });
    if status != 200 {
        return Err(match prom_error {
            Some(e) => format!("HTTP {status}: {e}"),
            None => format!("HTTP {status}"),
        });
    }
    let Some(json) = json else {
        return Err("answer is not JSON".into());
    };
    if let Some(e) = prom_error {
        return Err(e);
    }
    if json["status"] != "success" {
        return Err("answer has no status \"success\"".into());
    }
    let data = &json["data"];
    let value = match data["resultType"].as_str() {
        Some("scalar") => sample_value(&data["result"])?,
        Some("vector") => {
            let Some(items) = data["result"].as_array() else {
                return Err("vector result is not an array".into());
            };
            if items.is_empty() {
                return Ok(None);
            }
            let mut sum = 0.0;
            for item in items {
                sum += sample_value(&item["value"])?;
            }
            sum
        }
        Some(other) => {
            return Err(format!(
                "result type {other} (the query must give a scalar or a vector)"
            ))
        }
        None => return Err("answer has no data.resultType".into()),
    };
    if !value.is_finite() || value.abs() > MAX_VALUE {
        return Err(format!("value {value} is not a finite number within ±1e15"));
    }
    Ok(Some(value))
}

/// The number of a `[<unix seconds>, "<value>"]` pair.
fn sample_value(pair: &serde_json::Value) -> Result<f64, String> {
    let text = pair[1]
        .as_str()
        .ok_or_else(|| "a sample is not a [time, \"value\"] pair".to_string())?;
    // Prometheus writes NaN, +Inf and -Inf; Rust's parser takes them too.
    text.parse::<f64>()
        .map_err(|_| format!("sample value {text:?} is not a number"))
}

/// One pool's query and where its value goes.
struct Job {
    pool_id: String,
    url: Option<String>,
    query: String,
    metric: String,
}

/// Polls the sources of every evaluated (not frozen) pool in `pools` at
/// `now`, [`QUERY_CONCURRENCY`] at a time, all within one query timeout
/// (a query not answered by then, started or not, failed: so many slow
/// sources cannot stretch a tick beyond it): stores the values as samples, records each failure on its pool
/// (in the store, fenced on `fence`, and in `pools`), clears the record of
/// a source that answers again, and returns the failures by pool id, for
/// fail static. Idempotent within a tick (a repeated poll stores another
/// sample of the same value).
pub async fn poll(
    ctx: &EngineCtx,
    fence: Option<&Fence>,
    pools: &mut [Pool],
    now: i64,
) -> Result<HashMap<String, String>, StoreError> {
    let sources = &ctx.metric_sources;
    let jobs: Vec<Job> = pools
        .iter()
        .filter(|p| p.mode != Mode::Frozen)
        .filter_map(|p| {
            p.metric_source.as_ref().map(|s| Job {
                pool_id: p.id.clone(),
                url: s.url_or(sources.default_url()).map(str::to_string),
                query: s.query.clone(),
                metric: s.metric_or(&p.metric).to_string(),
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + sources.timeout();
    let results: Vec<(Job, Result<Option<f64>, String>)> = futures::stream::iter(jobs)
        .map(|j| async move {
            let r = match &j.url {
                Some(url) => {
                    tokio::time::timeout_at(deadline, sources.query(url, &j.query, now))
                        .await
                        .unwrap_or_else(|_| {
                            Err("timed out (this tick's queries took longer than the query timeout)"
                                .into())
                        })
                }
                None => Err(
                    "no Prometheus URL: the pool's metric_source has none and the server was started without --prometheus-url"
                        .into(),
                ),
            };
            (j, r)
        })
        .buffer_unordered(QUERY_CONCURRENCY)
        .collect()
        .await;
    let samples: Vec<Sample> = results
        .iter()
        .filter_map(|(j, r)| match r {
            Ok(Some(v)) => Some(Sample {
                pool_id: j.pool_id.clone(),
                metric: j.metric.clone(),
                ts_ms: now,
                value: *v,
            }),
            _ => None,
        })
        .collect();
    if !samples.is_empty() {
        ctx.store.insert_samples(&samples).await?;
    }
    let index: HashMap<String, usize> = pools
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.clone(), i))
        .collect();
    let mut failures = HashMap::new();
    for (j, r) in results {
        let Some(&i) = index.get(&j.pool_id) else {
            continue;
        };
        let pool = &mut pools[i];
        let next = match &r {
            Ok(_) => None,
            Err(message) => {
                ctx.metrics
                    .metric_source_errors
                    .get_or_create(&PoolLabel {
                        pool: j.pool_id.clone(),
                    })
                    .inc();
                tracing::warn!(pool_id = %j.pool_id, error = %message, "metric source query failed");
                failures.insert(j.pool_id.clone(), message.clone());
                Some(MetricsError::after(
                    pool.metrics_error.as_ref(),
                    message,
                    now,
                ))
            }
        };
        if next != pool.metrics_error {
            match ctx
                .store
                .set_metrics_error(&pool.id, next.as_ref(), fence, now)
                .await
            {
                Ok(()) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            if next.is_none() {
                tracing::info!(pool_id = %pool.id, "metric source answers again");
            }
            pool.metrics_error = next;
        }
    }
    ctx.metrics
        .metric_source_failing_pools
        .set(failures.len() as i64);
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value expected of an answer, or a part of its error.
    type Want = Result<Option<f64>, &'static str>;

    #[test]
    fn answers_table() {
        // (status, body, expected value or an error containing)
        let cases: &[(u16, &str, Want)] = &[
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.5,"42"]}]}}"#,
                Ok(Some(42.0)),
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1.5"]},{"metric":{"a":"2"},"value":[1,"2.5"]}]}}"#,
                Ok(Some(4.0)),
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
                Ok(None),
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"7"]}}"#,
                Ok(Some(7.0)),
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#,
                Err("not a finite number"),
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"+Inf"]}]}}"#,
                Err("not a finite number"),
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"scalar","result":[1,"2e15"]}}"#,
                Err("within"),
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                Err("result type matrix"),
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"x"]}]}}"#,
                Err("not a number"),
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,3]}]}}"#,
                Err("pair"),
            ),
            (
                400,
                r#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#,
                Err("HTTP 400: bad_data: parse error at char 5"),
            ),
            (
                422,
                r#"{"status":"error","errorType":"execution","error":"many-to-many matching"}"#,
                Err("execution: many-to-many"),
            ),
            (
                200,
                r#"{"status":"error","errorType":"timeout","error":"query timed out"}"#,
                Err("timeout: query timed out"),
            ),
            (503, "Service Unavailable", Err("HTTP 503")),
            (200, "<html>", Err("not JSON")),
            (200, r#"{"status":"success"}"#, Err("no data.resultType")),
            (200, r#"{"data":{}}"#, Err("no status")),
        ];
        for (status, body, want) in cases {
            let got = parse_response(*status, body.as_bytes());
            match (want, &got) {
                (Ok(v), Ok(g)) => assert_eq!(g, v, "{body}"),
                (Err(part), Err(e)) => assert!(e.contains(part), "{body}: {e}"),
                _ => panic!("{body}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_failure_naming_the_cause() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let s = MetricSources::new(None, Duration::from_secs(2));
        let err = s
            .query(&format!("http://127.0.0.1:{port}"), "up", 1_000)
            .await
            .unwrap_err();
        assert!(err.starts_with("cannot connect"), "{err}");
    }
}
