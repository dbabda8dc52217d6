//! The HTTP layer: the REST API under `/api/v1`, assembled from one module
//! per resource, its OpenAPI document, `/healthz`, `/readyz`, Prometheus
//! `/metrics` and the middleware that times every request.
//!
//! Handlers are thin: they extract, check the caller's scope, call the core
//! or the store, and answer with a typed body, so the OpenAPI document
//! gives every request and response its schema. The store's records are
//! answered as the views of [`views`], [`budget_views`] and
//! [`tenant_budget_views`]; the core's request types are described in
//! [`core_schemas`]. What several resources share lives in [`common`], a
//! leaf that imports nothing back from here.

mod alerts;
mod audit;
mod budget_views;
mod budgets;
mod common;
mod core_schemas;
mod dashboard_api;
mod jobs;
mod metrics;
mod pools;
mod proposals;
mod region_state;
mod regions;
mod routing;
mod scaling;
mod stream;
mod tenant_budget_views;
mod tenant_budgets;
mod tenant_policies;
mod tenants;
mod views;

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use fleetscale_engine::metrics::HttpLabels;

use crate::error::ApiError;
use crate::AppState;
use common::ApiResult;

pub use metrics::{parse_rfc3339_ms, MAX_FUTURE_SKEW_MS, MAX_SAMPLES_PER_BATCH};

/// The OpenAPI document's frame: info, the bearer scheme, shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "fleetscale",
        description = "Autonomous scaling and global load balancing for fleets of AI agents. Every endpoint takes `Authorization: Bearer <token>`; errors are RFC 9457 `application/problem+json`; lists answer `{items, next_cursor}`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(crate::error::Problem, crate::error::FieldProblem))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The REST API (relative to `/api/v1`) and its OpenAPI document, built
/// from the same handler declarations so the two cannot drift.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let api = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(tenants::routes())
        .merge(regions::routes())
        .merge(region_state::routes())
        .merge(alerts::routes())
        .merge(pools::routes())
        .merge(scaling::routes())
        .merge(metrics::routes())
        .merge(proposals::routes())
        .merge(audit::routes())
        .merge(budgets::routes())
        .merge(tenant_budgets::routes())
        .merge(tenant_policies::routes())
        .merge(routing::routes())
        .merge(jobs::routes())
        .merge(dashboard_api::routes())
        .merge(stream::routes());
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", api)
        .split_for_parts();
    describe_errors(&mut doc);
    (router, doc)
}

/// Error statuses an operation lists as bare `(status = N)`, described once.
const ERROR_RESPONSES: [(&str, &str); 8] = [
    ("400", "Malformed JSON or query"),
    ("401", "Missing or unknown bearer token"),
    ("403", "The token's role does not allow this"),
    ("404", "Not found, or not visible to this token"),
    ("409", "Conflicts with the current state (see `code`)"),
    ("413", "The request body is larger than 8 MiB"),
    (
        "415",
        "The request body is not sent as `Content-Type: application/json`",
    ),
    (
        "422",
        "Fields break validation rules (`errors` names each field and rule)",
    ),
];

/// The error statuses every operation of a shape can answer, whatever its
/// handler: any token-checked operation a 401; one with a query a 400 (a
/// malformed or unknown parameter); one naming a `tenant_id` or `pool_id`
/// filter a 404 (the filter names nothing); one with a body a 400
/// (malformed JSON), 413 (too large) and 422 (not an object, a wrong
/// field), and a 415 when the body is required (its content type is
/// checked). Found missing from the annotations by Schemathesis
/// (`scripts/fuzz-api.sh`); added here once instead of per operation.
fn implied_errors(op: &utoipa::openapi::path::Operation) -> Vec<&'static str> {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::Required;
    let query: Vec<&str> = op
        .parameters
        .iter()
        .flatten()
        .filter(|p| p.parameter_in == ParameterIn::Query)
        .map(|p| p.name.as_str())
        .collect();
    let mut statuses = vec!["401"];
    if !query.is_empty() {
        statuses.push("400");
    }
    if query.iter().any(|q| matches!(*q, "tenant_id" | "pool_id")) {
        statuses.push("404");
    }
    if let Some(body) = &op.request_body {
        statuses.extend(["400", "413", "422"]);
        if body.required == Some(Required::True) {
            statuses.push("415");
        }
    }
    statuses
}

/// Gives every listed error status of every operation its description and
/// the `application/problem+json` body every error answers with, after
/// adding the statuses its shape implies ([`implied_errors`]).
fn describe_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in ops.into_iter().flatten() {
            for status in implied_errors(op) {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::T(ResponseBuilder::new().build()));
            }
            for (status, description) in ERROR_RESPONSES {
                if let Some(r) = op.responses.responses.get_mut(status) {
                    *r = RefOr::T(
                        ResponseBuilder::new()
                            .description(description)
                            .content(
                                "application/problem+json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("Problem")))
                                    .build(),
                            )
                            .build(),
                    );
                }
            }
        }
    }
}

/// Builds the whole HTTP router: the API under `/api/v1` (its OpenAPI
/// document at `/api/v1/openapi.json`, no token needed), `/healthz`,
/// `/readyz`, Prometheus `/metrics` and the web dashboard at `/`
/// ([`crate::dashboard`]).
pub fn router(state: AppState) -> Router {
    let (api, doc) = api();
    let doc = std::sync::Arc::new(doc);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .merge(api)
        .merge(crate::dashboard::routes())
        .fallback(|| async { ApiError::NotFound("route".into()) })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::CONTENT_TYPE, "application/problem+json")],
                r#"{"type":"about:blank","title":"Method Not Allowed","status":405,"detail":"method not allowed on this route"}"#,
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(crate::error::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), read_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe_http))
        .with_state(state)
}

async fn observe_http(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let res = next.run(req).await;
    let status = res.status().as_u16();
    state
        .engine
        .metrics
        .http_seconds
        .get_or_create(&HttpLabels {
            method,
            route,
            status,
        })
        .observe(started.elapsed().as_secs_f64());
    res
}

/// Reads the whole request body before the handler runs: at most
/// [`MAX_BODY_BYTES`](crate::error::MAX_BODY_BYTES) (a 413 beyond, at once
/// when `Content-Length` says so) within the state's `body_read_timeout`
/// (a 408 beyond), so a client that sends its body slowly cannot hold a
/// handler, and every body error is problem JSON.
async fn read_body(State(state): State<AppState>, req: Request, next: Next) -> Response {
    use futures::StreamExt;
    let max = crate::error::MAX_BODY_BYTES;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return ApiError::body_too_large().into_response();
    }
    let (parts, body) = req.into_parts();
    let read = async {
        let mut buf = Vec::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("cannot read body: {e}")))?;
            if buf.len() + chunk.len() > max {
                return Err(ApiError::body_too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    let limit = state.body_read_timeout;
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} ms",
            limit.as_millis()
        ))
        .into_response(),
    }
}

async fn readyz(State(s): State<AppState>) -> ApiResult<&'static str> {
    s.engine
        .store
        .ping()
        .await
        .map_err(|_| ApiError::Unavailable("database is not reachable".into()))?;
    if let Some(why) = s.engine.budgets.stopped() {
        return Err(ApiError::Unavailable(why.into()));
    }
    if let Some(why) = s.supervisor.unready() {
        return Err(ApiError::Unavailable(why));
    }
    Ok("ready")
}

async fn prometheus(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.engine.metrics.encode(),
    )
}
