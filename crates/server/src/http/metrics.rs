//! Metric ingestion (`POST /metrics`): batches of samples, checked and
//! handed to the group-committing writer. A sample names a pool, or a
//! region (a region-level sample: the observed latency to a region, its
//! queue), which only a global token may post.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_core::observe::MAX_SAMPLE_VALUE;
use fleetscale_core::Violations;
use fleetscale_store::{now_ms, InstanceSample, RegionSample, Sample, StoreError};

use super::common::ApiResult;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiJson};
use crate::AppState;

/// Most samples accepted in one `POST /api/v1/metrics` batch.
pub const MAX_SAMPLES_PER_BATCH: usize = 10_000;

/// How far in the future a sample timestamp may lie (clock skew), ms.
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

/// The ingestion route, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ingest))
}

/// The body of `POST /metrics`: a batch of samples.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsBody {
    /// 1 to 10000 samples.
    pub samples: Vec<SampleIn>,
}

/// One metric sample as sent.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleIn {
    /// The pool measured (one the token may see); exactly one of `pool_id`
    /// and `region` is given.
    #[serde(default)]
    pub pool_id: Option<String>,
    /// The region measured, by id or name (region-level samples such as
    /// `latency_ms`, the observed latency to the region, or `queue_depth`).
    #[serde(default)]
    pub region: Option<String>,
    /// The instance of the pool measured (a pool sample only; a name like
    /// a metric's: at most 64 letters, digits, `_-.:`): a per-instance sample, read by
    /// target tracking's `utilization`, `resource_average_value` and
    /// `average_value` targets (for `utilization`, the value is the
    /// fraction of the instance's request, 1.0 = 100 %); kept apart from
    /// the pool's own series.
    #[serde(default)]
    pub instance: Option<String>,
    /// Metric name, e.g. `throughput`.
    pub metric: String,
    /// Value, finite, between 0 and 1e15 (the sample bound).
    pub value: f64,
    /// When it was measured; now when omitted. At most 5 minutes ahead,
    /// and not older than the retention period.
    pub ts: Option<TsIn>,
}

/// A sample's `ts`: Unix milliseconds or RFC 3339 text. Deserialized by
/// hand rather than as an untagged enum, which buffers every value and is
/// the costliest part of parsing a large batch.
pub enum TsIn {
    /// Unix milliseconds.
    Millis(i64),
    /// RFC 3339 text.
    Text(String),
}

impl<'de> Deserialize<'de> for TsIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = TsIn;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("RFC 3339 text or whole Unix milliseconds")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<TsIn, E> {
                Ok(TsIn::Millis(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<TsIn, E> {
                i64::try_from(v)
                    .map(TsIn::Millis)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TsIn, E> {
                Ok(TsIn::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl utoipa::PartialSchema for TsIn {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
        let millis = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .description(Some("Unix milliseconds"));
        let text = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339"));
        OneOfBuilder::new().item(millis).item(text).into()
    }
}

impl ToSchema for TsIn {}

/// A region-level sample whose region is still to be resolved: its index in
/// the batch, the region as sent, metric, time and value.
type RegionSampleIn = (usize, String, String, i64, f64);

impl MetricsBody {
    /// The pool samples and the region-level samples to store, `now`
    /// standing for a missing `ts`; every rule a sample breaks goes into `v`
    /// (at most 20). An empty or oversized batch is refused at once.
    fn samples(
        &self,
        now: i64,
        oldest: i64,
        v: &mut Violations,
    ) -> ApiResult<(Vec<Sample>, Vec<InstanceSample>, Vec<RegionSampleIn>)> {
        if self.samples.is_empty() {
            return Err(ApiError::field("samples", "must not be empty"));
        }
        if self.samples.len() > MAX_SAMPLES_PER_BATCH {
            return Err(ApiError::field(
                "samples",
                format!("must hold at most {MAX_SAMPLES_PER_BATCH} samples"),
            ));
        }
        let mut out = Vec::with_capacity(self.samples.len());
        let mut per_instance = Vec::new();
        let mut regional = Vec::new();
        for (i, x) in self.samples.iter().enumerate() {
            if v.0.len() >= 20 {
                break;
            }
            let f = |name: &str| format!("samples[{i}].{name}");
            if x.pool_id.is_some() == x.region.is_some() {
                v.push(
                    f("pool_id"),
                    "exactly one of pool_id and region is required",
                );
            }
            v.check_name(&f("metric"), &x.metric);
            if let Some(name) = &x.instance {
                v.check_name(&f("instance"), name);
                if x.region.is_some() {
                    v.push(f("instance"), "only a pool sample names an instance");
                }
            }
            if !x.value.is_finite() {
                v.push(f("value"), "must be a finite number");
            } else if x.value < 0.0 {
                v.push(f("value"), "must be >= 0");
            } else if x.value > MAX_SAMPLE_VALUE {
                v.push(
                    f("value"),
                    format!("must be at most {MAX_SAMPLE_VALUE:e} (the sample bound)"),
                );
            }
            let ts = match &x.ts {
                None => Some(now),
                Some(TsIn::Millis(ms)) => Some(*ms),
                Some(TsIn::Text(t)) => parse_rfc3339_ms(t),
            };
            match ts {
                None => v.push(f("ts"), "must be RFC 3339 or Unix milliseconds"),
                Some(t) if t > now + MAX_FUTURE_SKEW_MS => {
                    v.push(f("ts"), "must not be more than 5 minutes in the future")
                }
                Some(t) if t < oldest => v.push(f("ts"), "is older than the retention period"),
                Some(t) => match (&x.pool_id, &x.region) {
                    (Some(pool_id), None) if x.instance.is_some() => {
                        per_instance.push(InstanceSample {
                            pool_id: pool_id.clone(),
                            instance: x.instance.clone().unwrap_or_default(),
                            metric: x.metric.clone(),
                            ts_ms: t,
                            value: x.value,
                        })
                    }
                    (Some(pool_id), None) => out.push(Sample {
                        pool_id: pool_id.clone(),
                        metric: x.metric.clone(),
                        ts_ms: t,
                        value: x.value,
                    }),
                    (None, Some(region)) => {
                        regional.push((i, region.clone(), x.metric.clone(), t, x.value))
                    }
                    _ => {}
                },
            }
        }
        Ok((out, per_instance, regional))
    }
}

/// Adds to `v` every sample whose pool does not exist or is not visible to
/// `who` (up to 20 violations in all).
async fn check_pools(
    s: &AppState,
    who: &Principal,
    samples: &[SampleIn],
    v: &mut Violations,
) -> ApiResult<()> {
    let ids: HashSet<&str> = samples
        .iter()
        .filter_map(|x| x.pool_id.as_deref())
        .collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let owners = s.engine.store.pool_tenants(&ids).await?;
    for (i, x) in samples.iter().enumerate() {
        let Some(pool_id) = &x.pool_id else {
            continue;
        };
        let visible = owners
            .get(pool_id)
            .is_some_and(|t| who.see(t, "pool").is_ok());
        if !visible && v.0.len() < 20 {
            v.push(
                format!("samples[{i}].pool_id"),
                "must name an existing pool",
            );
        }
    }
    Ok(())
}

/// Resolves the regions of region-level samples (by id or name), which only
/// a global token may post: they feed every tenant's routing.
async fn check_regions(
    s: &AppState,
    who: &Principal,
    regional: Vec<RegionSampleIn>,
    v: &mut Violations,
) -> ApiResult<Vec<RegionSample>> {
    let mut ids: HashMap<String, Option<String>> = HashMap::new();
    let mut out = Vec::with_capacity(regional.len());
    for (i, region, metric, ts_ms, value) in regional {
        let field = format!("samples[{i}].region");
        if who.tenant_id.is_some() {
            v.push(
                field,
                "region-level samples need a global token (they feed every tenant's routing)",
            );
            continue;
        }
        if !ids.contains_key(&region) {
            let id = match s.engine.store.get_region(&region).await {
                Ok(r) => Some(r.id),
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            ids.insert(region.clone(), id);
        }
        match &ids[&region] {
            Some(region_id) => out.push(RegionSample {
                region_id: region_id.clone(),
                metric,
                ts_ms,
                value,
            }),
            None => v.push(field, "must name an existing region (id or name)"),
        }
    }
    Ok(out)
}

/// Parses an RFC 3339 timestamp into Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// How many samples a batch stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestView {
    /// Samples stored, durably, when the answer is sent.
    pub accepted: usize,
}

/// Push metric samples (batch; `ts` defaults to now).
#[utoipa::path(post, path = "/metrics", tag = "metrics",
    request_body(content = MetricsBody, content_type = "application/json", example = json!({"samples": [{"pool_id": "POOL_ID", "metric": "throughput", "value": 42.5, "ts": "2026-11-25T12:00:00Z"}]})),
    responses((status = 202, description = "How many samples were stored (durably).", body = IngestView), (status = 400), (status = 401), (status = 403), (status = 422))
)]
async fn ingest(
    State(s): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<MetricsBody>,
) -> ApiResult<(StatusCode, Json<IngestView>)> {
    who.require(Role::Operator)?;
    let now = now_ms();
    let mut v = Violations::default();
    let (samples, per_instance, regional) = b.samples(now, now - s.retention_ms, &mut v)?;
    check_pools(&s, &who, &b.samples, &mut v).await?;
    let regional = check_regions(&s, &who, regional, &mut v).await?;
    v.into_result(())?;
    let accepted = samples.len() + per_instance.len() + regional.len();
    let wake = !samples.is_empty()
        && s.engine.work_for_pool_at_zero(
            samples
                .iter()
                .map(|x| (x.pool_id.as_str(), x.metric.as_str(), x.value)),
        );
    if !samples.is_empty() {
        s.ingest
            .submit(samples)
            .await
            .map_err(|e| ApiError::Internal(Box::new(e)))?;
    }
    if wake {
        // Stored: the loop's evaluation now sees them.
        s.engine.wake_loop();
    }
    s.engine
        .store
        .insert_instance_samples(&per_instance)
        .await?;
    s.engine.store.insert_region_samples(&regional).await?;
    s.engine.metrics.samples_ingested.inc_by(accepted as u64);
    Ok((StatusCode::ACCEPTED, Json(IngestView { accepted })))
}
