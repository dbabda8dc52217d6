//! The web dashboard: static files embedded in the binary at build time
//! (`assets/`, listed by `build.rs`) and served at `/` and `/assets/...`.
//!
//! The page is plain ES modules with no build step (`assets/app.js` is the
//! shell; each file under `assets/views/` is one view, found through
//! `/assets/views.json`) and the vendored uPlot for charts. Every answer
//! carries a strict Content-Security-Policy: scripts, styles, images and
//! connections only from the serving host, no inline script, no framing,
//! so no request from the page can go anywhere else. Files are revalidated
//! with their ETag (`Cache-Control: no-cache`), so an upgrade shows at once
//! and an unchanged file costs a 304.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));
}

pub use embedded::ASSETS;

/// The Content-Security-Policy of every dashboard answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file, ready to serve.
struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
    etag: String,
}

fn assets() -> &'static HashMap<&'static str, Asset> {
    static A: OnceLock<HashMap<&'static str, Asset>> = OnceLock::new();
    A.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(path, bytes)| {
                let etag = format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..32]);
                (
                    *path,
                    Asset {
                        bytes,
                        content_type: content_type(path),
                        etag,
                    },
                )
            })
            .collect()
    })
}

/// The content type of a file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        _ => "text/plain; charset=utf-8",
    }
}

/// The view modules under `assets/views/`, as `/assets/views.json` lists them.
pub fn view_files() -> Vec<&'static str> {
    ASSETS
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| p.starts_with("views/") && p.ends_with(".js"))
        .collect()
}

/// The dashboard's routes: `/`, `/index.html`, `/assets/{*path}` and the
/// view list `/assets/views.json`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/views.json", get(views))
        .route("/assets/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    if path == "index.html" {
        return ApiError::NotFound("asset".into()).into_response();
    }
    serve(&path, &headers)
}

async fn views() -> Response {
    let body = serde_json::to_vec(&view_files()).unwrap_or_default();
    with_headers(
        (StatusCode::OK, body).into_response(),
        "application/json",
        None,
    )
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(a) = assets().get(path) else {
        return ApiError::NotFound("asset".into()).into_response();
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag));
    let res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, a.bytes).into_response()
    };
    with_headers(res, a.content_type, Some(&a.etag))
}

fn with_headers(mut res: Response, content_type: &'static str, etag: Option<&str>) -> Response {
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(Ok(v)) = etag.map(HeaderValue::from_str) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_its_views_and_uplot_with_its_licence_are_embedded() {
        let paths: Vec<_> = ASSETS.iter().map(|(p, _)| *p).collect();
        for p in [
            "index.html",
            "app.js",
            "style.css",
            "vendor/uplot/uPlot.esm.js",
            "vendor/uplot/LICENSE",
        ] {
            assert!(paths.contains(&p), "{p} is not embedded: {paths:?}");
        }
        assert!(view_files().contains(&"views/pools.js"));
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("a/b.css"), "text/css; charset=utf-8");
    }

    #[test]
    fn no_asset_names_another_host() {
        // The CSP forbids it; this keeps the sources honest too (uPlot's
        // licence and comments aside).
        for (path, bytes) in ASSETS {
            if path.starts_with("vendor/") {
                continue;
            }
            let text = String::from_utf8_lossy(bytes);
            for needle in ["http://", "https://", "//cdn", "ws://", "wss://"] {
                assert!(!text.contains(needle), "{path} names {needle}");
            }
        }
    }
}
