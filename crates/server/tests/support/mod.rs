//! The router test harness shared by the server's test files: an [`App`]
//! over a fresh SQLite database, called without a socket
//! (`router(..).oneshot(request)`), with helpers that create tenants,
//! regions, pools and tokens and run one control-loop tick.

// Each test file is its own crate and uses only some of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use fleetscale_server::auth::hash_token;
use fleetscale_server::{router, AppState};
use fleetscale_store::Store;

/// The admin token the environment gives every [`App::new`] server.
pub const ADMIN: &str = "admin-test-token";

/// A server under test and its database directory, removed when it drops.
pub struct App {
    /// The handlers' state (store, engine, tokens).
    pub state: AppState,
    /// The test's database directory, removed when the test ends.
    pub dir: PathBuf,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory name for a test database (not yet created).
pub fn fresh_dir() -> PathBuf {
    std::env::temp_dir().join(format!("fs-api-{}", uuid::Uuid::new_v4().simple()))
}

impl App {
    /// A server over a fresh SQLite database, with [`ADMIN`] as its
    /// environment admin token.
    pub async fn new() -> App {
        let dir = fresh_dir();
        let store = Store::open_sqlite(&dir).await.unwrap();
        let mut state = AppState::new(store);
        state.admin_token_hash = Some(Arc::from(hash_token(ADMIN)));
        App { state, dir }
    }

    /// One request with an optional bearer token and JSON body: the status,
    /// the body as JSON (`null` when it is not JSON) and the content type.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value, String) {
        let (status, bytes, ctype) = self.send(method, path, token, body).await;
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v, ctype)
    }

    /// `GET path` without a token: the status and the body as text.
    pub async fn text(&self, path: &str) -> (StatusCode, String) {
        let (status, bytes, _) = self.send("GET", path, None, None).await;
        (status, String::from_utf8(bytes).unwrap())
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Vec<u8>, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let res = router(self.state.clone())
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let ctype = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, bytes.to_vec(), ctype)
    }

    /// Calls with a JSON body (or none for `Value::Null`) and expects `want`.
    pub async fn expect(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Value,
        want: u16,
    ) -> Value {
        let b = body.to_string();
        let (s, v, _) = self
            .call(
                method,
                path,
                Some(token),
                if body.is_null() { None } else { Some(&b) },
            )
            .await;
        assert_eq!(s.as_u16(), want, "{method} {path} {b} -> {v}");
        v
    }

    /// Calls as [`ADMIN`] with a JSON body (or none for `Value::Null`) and
    /// expects a 2xx.
    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let b = body.to_string();
        let (status, v, _) = self
            .call(
                method,
                path,
                Some(ADMIN),
                if body.is_null() { None } else { Some(&b) },
            )
            .await;
        assert!(status.is_success(), "{method} {path} -> {status}: {v}");
        v
    }

    /// A new tenant's id.
    pub async fn tenant(&self, name: &str) -> String {
        let t = self
            .admin("POST", "/api/v1/tenants", json!({ "name": name }))
            .await;
        t["id"].as_str().unwrap().to_string()
    }

    /// A tenant with one autonomous pool; returns (tenant id, pool id).
    pub async fn fleet(&self, name: &str) -> (String, String) {
        let tid = self.tenant(name).await;
        let (s, _, _) = self
            .call("GET", "/api/v1/regions/eu-west", Some(ADMIN), None)
            .await;
        if s == StatusCode::NOT_FOUND {
            self.admin(
                "POST",
                "/api/v1/regions",
                json!({"name": "eu-west", "jurisdiction": "eu"}),
            )
            .await;
        }
        let p = self
            .admin("POST", "/api/v1/pools", pool_body(&tid, "writer"))
            .await;
        (tid, p["id"].as_str().unwrap().to_string())
    }

    /// One control-loop tick now, as the lease holder.
    pub async fn tick(&self) -> fleetscale_engine::control::TickReport {
        let fence = fleetscale_store::Fence {
            name: fleetscale_engine::control::LEASE.into(),
            holder: "t".into(),
        };
        let now = fleetscale_store::now_ms();
        assert!(self
            .state
            .engine
            .store
            .try_lease(&fence.name, &fence.holder, now, 60_000)
            .await
            .unwrap());
        fleetscale_engine::control::tick_once(&self.state.engine, &fence, now)
            .await
            .unwrap()
    }

    /// A new token of `role` scoped to `tenant`.
    pub async fn token(&self, tenant: &str, role: &str) -> String {
        let v = self
            .admin(
                "POST",
                "/api/v1/tokens",
                json!({"tenant_id": tenant, "role": role, "name": format!("{role}-token")}),
            )
            .await;
        v["token"].as_str().unwrap().to_string()
    }
}

/// The body of an autonomous pool in `eu-west` (1..=5, desired 2).
pub fn pool_body(tenant: &str, agent_type: &str) -> Value {
    json!({
        "tenant_id": tenant, "region": "eu-west", "agent_type": agent_type,
        "min_capacity": 1, "max_capacity": 5, "desired_capacity": 2,
        "capacity_per_instance": 10, "metric": "throughput", "mode": "autonomous",
        "scaling_policy": {"scale_up_threshold": 80, "scale_down_threshold": 30, "cooldown_seconds": 60, "increment": 1}
    })
}

/// The fields a problem's `errors` name, in order.
pub fn fields(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Stores `region`'s state as the leader would: `mode`, with `pressure`
/// for every kind and overall, and `capacity`.
pub async fn set_state(
    app: &App,
    region: &str,
    mode: fleetscale_core::region::mode::ScalingMode,
    pressure: f64,
    capacity: f64,
) {
    let store = &app.state.engine.store;
    let id = store.get_region(region).await.unwrap().id;
    let now = fleetscale_store::now_ms();
    let fence = fleetscale_store::Fence {
        name: fleetscale_engine::control::LEASE.into(),
        holder: "t".into(),
    };
    assert!(store
        .try_lease(&fence.name, &fence.holder, now, 60_000)
        .await
        .unwrap());
    let state = fleetscale_core::region::state::RegionState {
        pressure: fleetscale_core::region::state::Pressure {
            posting: pressure,
            orchestration: pressure,
            creative: pressure,
            intel: pressure,
            overall: pressure,
        },
        capacity_score: capacity,
        ..Default::default()
    };
    store
        .put_region_state(
            &id,
            &state,
            &fleetscale_core::region::mode::ModeState::new(mode, now),
            None,
            &fence,
            now,
        )
        .await
        .unwrap();
}
