//! The `kubernetes` actuator against a stand-in API server: an axum server
//! in the test that speaks the parts of the Kubernetes API the actuator
//! uses, with the shapes of the API reference (`autoscaling/v1` Scale,
//! `apps/v1` Deployment and StatefulSet, `v1` PodList and Pod, `v1` Status
//! errors), and records every request (method, path, query, content type,
//! body). The kube client reaches it through a kubeconfig file the test
//! writes (a plain-http cluster and a token user), so `--kubeconfig` is the
//! path exercised. Conflicts and server errors are injected per request.
//!
//! What this does not show (a real API server's admission, RBAC, TLS, and
//! the controllers' actual use of the deletion cost) is listed in the
//! README's "Kubernetes actuator" section.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use fleetscale_core::workload::{InstanceLoad, RawWorkloadTarget, WorkloadKind, WorkloadTarget};
use fleetscale_core::{ActuationStatus, NewPool, TriggerSource};
use fleetscale_engine::actuator::{KubernetesConfig, PoolContext};
use fleetscale_engine::{Actuator, EngineCtx, LEASE};
use fleetscale_store::{InstanceSample, Page, Sample, ScaleRequest, ScalingEvent, Store};

const COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// One request the stand-in received.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    query: String,
    content_type: String,
    authorization: String,
    body: Value,
}

/// A Deployment or StatefulSet in the stand-in.
#[derive(Debug, Clone)]
struct Workload {
    replicas: i32,
    ready: i32,
    resource_version: u64,
}

/// An injected failure: the next `times` requests with this method whose
/// path ends with `suffix` get `status` (409 also bumps the workload's
/// resourceVersion first, as a concurrent writer would).
#[derive(Debug, Clone)]
struct Fault {
    method: Method,
    suffix: String,
    status: u16,
    times: u32,
}

#[derive(Default)]
struct World {
    workloads: BTreeMap<(String, String, String), Workload>,
    pods: BTreeMap<String, BTreeMap<String, String>>,
    log: Vec<Req>,
    faults: Vec<Fault>,
}

type Shared = Arc<Mutex<World>>;

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn scale_json(ns: &str, name: &str, w: &Workload) -> Value {
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": w.resource_version.to_string(),
        },
        "spec": { "replicas": w.replicas },
        "status": { "replicas": w.replicas, "selector": format!("app={name}") },
    })
}

fn workload_json(resource: &str, ns: &str, name: &str, w: &Workload) -> Value {
    let kind = if resource == "deployments" {
        "Deployment"
    } else {
        "StatefulSet"
    };
    let mut spec = json!({
        "replicas": w.replicas,
        "selector": { "matchLabels": { "app": name } },
        "template": {
            "metadata": { "labels": { "app": name } },
            "spec": { "containers": [ { "name": "agent", "image": "agent:1" } ] },
        },
    });
    if kind == "StatefulSet" {
        spec["serviceName"] = json!(name);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": w.resource_version.to_string(),
        },
        "spec": spec,
        "status": { "replicas": w.replicas, "readyReplicas": w.ready },
    })
}

fn pod_json(ns: &str, name: &str, annotations: &BTreeMap<String, String>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": { "app": "writer" },
            "annotations": annotations,
        },
    })
}

async fn handle(
    state: axum::extract::State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let path = uri.path().to_string();
    let mut w = state.0.lock().unwrap();
    w.log.push(Req {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or("").to_string(),
        content_type: header("content-type"),
        authorization: header("authorization"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let Some(f) = w
        .faults
        .iter_mut()
        .find(|f| f.times > 0 && f.method == method && path.ends_with(&f.suffix))
    {
        f.times -= 1;
        let code = f.status;
        if code == 409 {
            if let ["apis", "apps", "v1", "namespaces", ns, res, name, "scale"] = segs[..] {
                let key = (ns.to_string(), res.to_string(), name.to_string());
                if let Some(wl) = w.workloads.get_mut(&key) {
                    wl.resource_version += 1;
                }
            }
        } else {
            return status(code, "InternalError", "stand-in failure");
        }
    }
    match (method.as_str(), &segs[..]) {
        ("GET", ["apis", "apps", "v1", "namespaces", ns, res, name, "scale"]) => {
            let key = (ns.to_string(), res.to_string(), name.to_string());
            match w.workloads.get(&key) {
                Some(wl) => ok(scale_json(ns, name, wl)),
                None => status(404, "NotFound", "not found"),
            }
        }
        ("PUT", ["apis", "apps", "v1", "namespaces", ns, res, name, "scale"]) => {
            let key = (ns.to_string(), res.to_string(), name.to_string());
            let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let Some(wl) = w.workloads.get_mut(&key) else {
                return status(404, "NotFound", "not found");
            };
            let rv = sent["metadata"]["resourceVersion"].as_str().unwrap_or("");
            if rv != wl.resource_version.to_string() {
                return status(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            wl.replicas = sent["spec"]["replicas"].as_i64().unwrap() as i32;
            wl.ready = wl.ready.min(wl.replicas);
            wl.resource_version += 1;
            let v = scale_json(ns, name, wl);
            ok(v)
        }
        ("GET", ["apis", "apps", "v1", "namespaces", ns, res, name]) => {
            let key = (ns.to_string(), res.to_string(), name.to_string());
            match w.workloads.get(&key) {
                Some(wl) => ok(workload_json(res, ns, name, wl)),
                None => status(404, "NotFound", "not found"),
            }
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods"]) => {
            let items: Vec<Value> = w.pods.iter().map(|(n, a)| pod_json(ns, n, a)).collect();
            ok(json!({
                "apiVersion": "v1",
                "kind": "PodList",
                "metadata": { "resourceVersion": "7" },
                "items": items,
            }))
        }
        ("PATCH", ["api", "v1", "namespaces", ns, "pods", name]) => {
            if header("content-type") != "application/merge-patch+json" {
                return status(415, "UnsupportedMediaType", "merge patch only");
            }
            let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let Some(ann) = w.pods.get_mut(*name) else {
                return status(404, "NotFound", "no such pod");
            };
            if let Some(obj) = sent["metadata"]["annotations"].as_object() {
                for (k, v) in obj {
                    match v.as_str() {
                        Some(s) => {
                            ann.insert(k.clone(), s.to_string());
                        }
                        None => {
                            ann.remove(k);
                        }
                    }
                }
            }
            let v = pod_json(ns, name, ann);
            ok(v)
        }
        _ => status(404, "NotFound", "the stand-in does not serve this"),
    }
}

/// A running stand-in and the kubeconfig that points at it.
struct StandIn {
    world: Shared,
    kubeconfig: PathBuf,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

impl StandIn {
    async fn start() -> StandIn {
        let world: Shared = Arc::default();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(world.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        // One file per stand-in: the tests run in parallel threads of one
        // process, and a name from the clock alone was once shared by two
        // of them (each actuator then reached the other's server).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let kubeconfig = std::env::temp_dir().join(format!(
            "fs-kubeconfig-{}-{n}-{port}.yaml",
            std::process::id()
        ));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1
kind: Config
clusters:
- name: standin
  cluster:
    server: http://127.0.0.1:{port}
contexts:
- name: standin
  context:
    cluster: standin
    user: tester
    namespace: default
current-context: standin
users:
- name: tester
  user:
    token: standin-token
"
            ),
        )
        .unwrap();
        StandIn { world, kubeconfig }
    }

    fn workload(&self, resource: &str, name: &str, replicas: i32, ready: i32) {
        self.world.lock().unwrap().workloads.insert(
            ("agents".into(), resource.into(), name.into()),
            Workload {
                replicas,
                ready,
                resource_version: 100,
            },
        );
    }

    fn replicas(&self, resource: &str, name: &str) -> i32 {
        self.world.lock().unwrap().workloads[&("agents".into(), resource.into(), name.into())]
            .replicas
    }

    fn pod(&self, name: &str, annotations: &[(&str, &str)]) {
        self.world.lock().unwrap().pods.insert(
            name.into(),
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }

    fn annotation(&self, pod: &str) -> Option<String> {
        self.world.lock().unwrap().pods[pod].get(COST).cloned()
    }

    fn fault(&self, method: Method, suffix: &str, status: u16, times: u32) {
        self.world.lock().unwrap().faults.push(Fault {
            method,
            suffix: suffix.into(),
            status,
            times,
        });
    }

    fn log(&self) -> Vec<Req> {
        self.world.lock().unwrap().log.clone()
    }

    /// `METHOD path` of every request so far.
    fn calls(&self) -> Vec<String> {
        self.log()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    fn clear_log(&self) {
        self.world.lock().unwrap().log.clear();
    }

    async fn actuator(&self, max_attempts: u32) -> Actuator {
        Actuator::kubernetes(KubernetesConfig {
            kubeconfig: Some(self.kubeconfig.clone()),
            timeout: Duration::from_secs(5),
            max_attempts,
            backoff: Duration::from_millis(5),
        })
        .await
        .unwrap()
    }
}

fn target(kind: WorkloadKind, name: &str) -> WorkloadTarget {
    WorkloadTarget {
        kind,
        namespace: "agents".into(),
        name: name.into(),
    }
}

/// A pool scaling `kind` `agents/writer` that reports no per-instance load.
fn writer_pool(kind: WorkloadKind) -> PoolContext {
    PoolContext {
        target: Some(target(kind, "writer")),
        instances: vec![],
    }
}

fn event(previous: i64, new: i64) -> ScalingEvent {
    ScalingEvent {
        id: "ev-1".into(),
        pool_id: "pool-1".into(),
        tenant_id: "t".into(),
        region: "eu-west".into(),
        agent_type: "writer".into(),
        previous_capacity: previous,
        new_capacity: new,
        reason: "test".into(),
        trigger_source: TriggerSource::Autoscaler,
        metadata: json!({}),
        actuation: fleetscale_store::Actuation {
            status: ActuationStatus::Pending,
            attempts: 0,
            error: None,
            actuated_at_ms: None,
        },
        created_at_ms: 0,
    }
}

const DEPLOY_SCALE: &str = "/apis/apps/v1/namespaces/agents/deployments/writer/scale";

#[tokio::test]
async fn scale_out_puts_the_scale_with_the_resource_version_read() {
    let k = StandIn::start().await;
    k.workload("deployments", "writer", 2, 2);
    let a = k.actuator(3).await;
    assert_eq!(a.kind(), "kubernetes");
    let pool = writer_pool(WorkloadKind::Deployment);
    let d = a.deliver(&event(2, 4), &pool).await;
    assert!(d.delivered, "{d:?}");
    assert_eq!(d.attempts, 1);
    assert_eq!(
        k.calls(),
        [format!("GET {DEPLOY_SCALE}"), format!("PUT {DEPLOY_SCALE}")]
    );
    let log = k.log();
    let put = &log[1];
    assert_eq!(put.content_type, "application/json");
    assert_eq!(put.authorization, "Bearer standin-token");
    assert_eq!(put.body["apiVersion"], "autoscaling/v1");
    assert_eq!(put.body["kind"], "Scale");
    assert_eq!(put.body["metadata"]["name"], "writer");
    assert_eq!(put.body["metadata"]["namespace"], "agents");
    assert_eq!(put.body["metadata"]["resourceVersion"], "100");
    assert_eq!(put.body["spec"]["replicas"], 4);
    assert_eq!(k.replicas("deployments", "writer"), 4);

    // Delivered again (at least once): already there, nothing is written.
    k.clear_log();
    let d = a.deliver(&event(2, 4), &pool).await;
    assert!(d.delivered);
    assert_eq!(k.calls(), [format!("GET {DEPLOY_SCALE}")]);
}

#[tokio::test]
async fn scale_in_marks_the_least_loaded_pods_before_lowering_the_replicas() {
    let k = StandIn::start().await;
    k.workload("deployments", "writer", 5, 5);
    k.pod("writer-a", &[]);
    k.pod("writer-b", &[]);
    k.pod("writer-c", &[("team", "x")]);
    k.pod("writer-d", &[]);
    // Marked by an earlier scale-in that did not happen; busy now.
    k.pod("writer-e", &[(COST, "-100")]);
    let a = k.actuator(3).await;
    let load = |name: &str, l: Option<f64>| InstanceLoad {
        name: name.into(),
        load: l,
    };
    let pool = PoolContext {
        target: Some(target(WorkloadKind::Deployment, "writer")),
        // writer-c reports no in-flight reading: it goes first.
        instances: vec![
            load("writer-a", Some(5.0)),
            load("writer-b", Some(0.0)),
            load("writer-d", Some(2.0)),
            load("writer-e", Some(9.0)),
            load("gone-pod", Some(0.0)),
        ],
    };
    let d = a.deliver(&event(5, 3), &pool).await;
    assert!(d.delivered, "{d:?}");
    let pods = "/api/v1/namespaces/agents/pods";
    assert_eq!(
        k.calls(),
        [
            format!("GET {DEPLOY_SCALE}"),
            format!("GET {pods}"),
            format!("PATCH {pods}/writer-c"),
            format!("PATCH {pods}/writer-b"),
            format!("PATCH {pods}/writer-e"),
            format!("PUT {DEPLOY_SCALE}"),
        ],
        "every deletion cost is set before the replicas are lowered"
    );
    let log = k.log();
    assert!(
        log[1].query.contains("labelSelector=app%3Dwriter"),
        "{}",
        log[1].query
    );
    for r in &log[2..5] {
        assert_eq!(r.content_type, "application/merge-patch+json");
    }
    assert_eq!(
        log[2].body,
        json!({"metadata": {"annotations": {COST: "-100"}}})
    );
    assert_eq!(
        log[4].body,
        json!({"metadata": {"annotations": {COST: null}}})
    );
    assert_eq!(log[5].body["spec"]["replicas"], 3);
    assert_eq!(k.annotation("writer-c").as_deref(), Some("-100"));
    assert_eq!(k.annotation("writer-b").as_deref(), Some("-100"));
    assert_eq!(k.annotation("writer-e"), None);
    assert_eq!(k.annotation("writer-a"), None);
    assert_eq!(k.replicas("deployments", "writer"), 3);
}

#[tokio::test]
async fn a_failed_pod_patch_leaves_the_replicas_alone() {
    let k = StandIn::start().await;
    k.workload("deployments", "writer", 3, 3);
    k.pod("writer-a", &[]);
    k.pod("writer-b", &[]);
    k.fault(Method::PATCH, "/pods/writer-a", 500, 10);
    let a = k.actuator(2).await;
    let pool = PoolContext {
        target: Some(target(WorkloadKind::Deployment, "writer")),
        instances: vec![
            InstanceLoad {
                name: "writer-a".into(),
                load: Some(0.0),
            },
            InstanceLoad {
                name: "writer-b".into(),
                load: Some(5.0),
            },
        ],
    };
    let d = a.deliver(&event(3, 2), &pool).await;
    assert!(!d.delivered);
    assert!(d.error.as_deref().unwrap().contains("writer-a"), "{d:?}");
    let patches = k.calls().iter().filter(|c| c.starts_with("PATCH")).count();
    assert_eq!(patches, 2, "retried once (2 attempts), then given up");
    assert!(!k.calls().iter().any(|c| c.starts_with("PUT")));
    assert_eq!(k.replicas("deployments", "writer"), 3);
}

#[tokio::test]
async fn a_conflict_is_read_again_and_retried_with_the_new_resource_version() {
    let k = StandIn::start().await;
    k.workload("deployments", "writer", 2, 2);
    k.fault(Method::PUT, "/writer/scale", 409, 1);
    let a = k.actuator(3).await;
    let pool = writer_pool(WorkloadKind::Deployment);
    let d = a.deliver(&event(2, 3), &pool).await;
    assert!(d.delivered, "{d:?}");
    assert_eq!(d.attempts, 2);
    assert_eq!(
        k.calls(),
        [
            format!("GET {DEPLOY_SCALE}"),
            format!("PUT {DEPLOY_SCALE}"),
            format!("GET {DEPLOY_SCALE}"),
            format!("PUT {DEPLOY_SCALE}"),
        ]
    );
    let log = k.log();
    assert_eq!(log[1].body["metadata"]["resourceVersion"], "100");
    assert_eq!(log[3].body["metadata"]["resourceVersion"], "101");
    assert_eq!(k.replicas("deployments", "writer"), 3);
}

#[tokio::test]
async fn conflicts_without_end_give_up_after_a_bound() {
    let k = StandIn::start().await;
    k.workload("deployments", "writer", 2, 2);
    k.fault(Method::PUT, "/writer/scale", 409, 100);
    let a = k.actuator(3).await;
    let pool = writer_pool(WorkloadKind::Deployment);
    let d = a.deliver(&event(2, 3), &pool).await;
    assert!(!d.delivered);
    assert!(d.error.as_deref().unwrap().contains("409"), "{d:?}");
    let max = i64::from(fleetscale_engine::actuator::kubernetes::MAX_CONFLICTS);
    assert_eq!(d.attempts, max + 1, "the first try and one per conflict");
    assert_eq!(k.replicas("deployments", "writer"), 2);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let k = StandIn::start().await;
    k.workload("deployments", "writer", 2, 2);
    k.fault(Method::GET, "/writer/scale", 503, 1);
    k.fault(Method::PUT, "/writer/scale", 500, 1);
    let a = k.actuator(3).await;
    let pool = writer_pool(WorkloadKind::Deployment);
    let d = a.deliver(&event(2, 5), &pool).await;
    assert!(d.delivered, "{d:?}");
    assert_eq!(
        k.calls(),
        [
            format!("GET {DEPLOY_SCALE}"),
            format!("GET {DEPLOY_SCALE}"),
            format!("PUT {DEPLOY_SCALE}"),
            format!("GET {DEPLOY_SCALE}"),
            format!("PUT {DEPLOY_SCALE}"),
        ]
    );
    assert_eq!(k.replicas("deployments", "writer"), 5);
}

#[tokio::test]
async fn statefulsets_are_scaled_through_their_own_paths() {
    let k = StandIn::start().await;
    k.workload("statefulsets", "writer", 1, 1);
    let a = k.actuator(1).await;
    let pool = writer_pool(WorkloadKind::StatefulSet);
    assert!(a.deliver(&event(1, 2), &pool).await.delivered);
    let sts = "/apis/apps/v1/namespaces/agents/statefulsets/writer/scale";
    assert_eq!(k.calls(), [format!("GET {sts}"), format!("PUT {sts}")]);
    assert_eq!(k.replicas("statefulsets", "writer"), 2);
    let Actuator::Kubernetes(kube) = &a else {
        unreachable!()
    };
    k.workload("statefulsets", "writer", 4, 1);
    let st = kube
        .read_status(&target(WorkloadKind::StatefulSet, "writer"), 7)
        .await
        .unwrap();
    assert_eq!(
        (st.desired, st.replicas, st.ready, st.coming()),
        (4, 4, 1, 3)
    );
    assert_eq!(
        k.calls().last().unwrap(),
        "GET /apis/apps/v1/namespaces/agents/statefulsets/writer"
    );
}

#[tokio::test]
async fn a_pool_without_a_target_fails_with_a_reason() {
    let k = StandIn::start().await;
    let a = k.actuator(1).await;
    let d = a.deliver(&event(1, 2), &PoolContext::default()).await;
    assert!(!d.delivered);
    assert!(d.error.unwrap().contains("no target workload"));
    assert!(k.calls().is_empty());
}

// End to end through the control loop's tick, over a SQLite store.

struct Db {
    store: Store,
    dir: PathBuf,
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn db(name: &str) -> Db {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("fs-k8s-{name}-{}-{nanos}", std::process::id()));
    let store = Store::open_sqlite(&dir).await.unwrap();
    Db { store, dir }
}

/// An autonomous pool (min 1, max 10, 10 per instance, no cooldown) with a
/// Deployment target `agents/writer`, desired `desired`.
async fn k8s_pool(store: &Store, desired: i64) -> String {
    let t = store.create_tenant("acme", "test").await.unwrap();
    store.create_region("eu-west", "eu", "test").await.unwrap();
    let p = NewPool {
        tenant_id: t.id,
        region: "eu-west".into(),
        agent_type: "writer".into(),
        desired_capacity: Some(desired),
        capacity_per_instance: Some(10.0),
        mode: Some("autonomous".into()),
        scaling_policy: Some(fleetscale_core::RawThresholdPolicy {
            cooldown_seconds: Some(0),
            ..Default::default()
        }),
        target: Some(RawWorkloadTarget {
            kind: "Deployment".into(),
            namespace: "agents".into(),
            name: "writer".into(),
        }),
        ..Default::default()
    }
    .validate()
    .unwrap();
    store.create_pool(&p, "test").await.unwrap().id
}

async fn push(store: &Store, pool_id: &str, ts_ms: i64, value: f64) {
    store
        .insert_samples(&[Sample {
            pool_id: pool_id.into(),
            metric: "throughput".into(),
            ts_ms,
            value,
        }])
        .await
        .unwrap();
}

async fn events(store: &Store, pool_id: &str) -> Vec<ScalingEvent> {
    store
        .list_events(Some(pool_id), None, &Page::default())
        .await
        .unwrap()
        .items
}

fn fence() -> fleetscale_store::Fence {
    fleetscale_store::Fence {
        name: LEASE.into(),
        holder: "t".into(),
    }
}

#[tokio::test]
async fn starting_replicas_count_as_coming_capacity_and_hold_the_next_scale_out() {
    let k = StandIn::start().await;
    k.workload("deployments", "writer", 2, 2);
    let db = db("coming").await;
    let mut c = EngineCtx::new(db.store.clone());
    c.actuator = Arc::new(k.actuator(2).await);
    let p = k8s_pool(&db.store, 2).await;
    let now = fleetscale_store::now_ms();
    assert!(db.store.try_lease(LEASE, "t", now, 600_000).await.unwrap());
    // No samples: nothing to grow, so no Kubernetes request at all.
    let r = fleetscale_engine::control::tick_once(&c, &fence(), now - 500)
        .await
        .unwrap();
    assert_eq!(r.applied, 0, "{r:?}");
    assert!(k.calls().is_empty(), "{:?}", k.calls());
    // 95 of 20: the threshold policy adds one.
    push(&db.store, &p, now - 1_000, 95.0).await;
    let r = fleetscale_engine::control::tick_once(&c, &fence(), now)
        .await
        .unwrap();
    assert_eq!((r.applied, r.actuated), (1, 1), "{r:?}");
    assert_eq!(k.replicas("deployments", "writer"), 3);
    // The new replica is not ready yet (the stand-in keeps 2 ready): the
    // same load does not scale out again while it starts.
    push(&db.store, &p, now + 1_000, 95.0).await;
    let r = fleetscale_engine::control::tick_once(&c, &fence(), now + 2_000)
        .await
        .unwrap();
    assert_eq!(r.applied, 0, "{r:?}");
    assert_eq!(events(&db.store, &p).await.len(), 1);
    let Actuator::Kubernetes(kube) = &*c.actuator else {
        unreachable!()
    };
    let st = kube.status(&p).unwrap();
    assert_eq!((st.desired, st.ready, st.coming()), (3, 2, 1));
    assert_eq!(
        c.metrics
            .guard_holds
            .get_or_create(&fleetscale_engine::metrics::GuardLabel {
                guard: "coming_capacity".into()
            })
            .get(),
        1
    );
    // Ready now: the load still there scales out again.
    k.workload("deployments", "writer", 3, 3);
    push(&db.store, &p, now + 3_000, 95.0).await;
    let r = fleetscale_engine::control::tick_once(&c, &fence(), now + 4_000)
        .await
        .unwrap();
    assert_eq!(r.applied, 1, "{r:?}");
    assert_eq!(k.replicas("deployments", "writer"), 4);
}

#[tokio::test]
async fn persistent_server_errors_are_recorded_as_a_failed_actuation() {
    let k = StandIn::start().await;
    k.workload("deployments", "writer", 2, 2);
    k.fault(Method::PUT, "/writer/scale", 500, 100);
    let db = db("fail").await;
    let mut c = EngineCtx::new(db.store.clone());
    c.actuator = Arc::new(k.actuator(3).await);
    let p = k8s_pool(&db.store, 2).await;
    db.store
        .scale(&ScaleRequest {
            pool_id: p.clone(),
            capacity: 4,
            reason: "manual".into(),
            trigger_source: TriggerSource::Manual,
            metadata: json!({}),
            actor: "test".into(),
            expect_desired: None,
            respect_safety_lock: false,
            actuation_status: ActuationStatus::Pending,
            fence: None,
            now_ms: fleetscale_store::now_ms(),
        })
        .await
        .unwrap();
    let (ok, failed) = fleetscale_engine::control::actuate_pending(&c, None)
        .await
        .unwrap();
    assert_eq!((ok, failed), (0, 1));
    let ev = &events(&db.store, &p).await[0];
    assert_eq!(ev.actuation.status, ActuationStatus::Failed, "{ev:?}");
    assert_eq!(ev.actuation.attempts, 3);
    let err = ev.actuation.error.as_deref().unwrap();
    assert!(err.contains("500"), "{err}");
    assert_eq!(k.replicas("deployments", "writer"), 2);
    let puts = k.calls().iter().filter(|c| c.starts_with("PUT")).count();
    assert_eq!(puts, 3, "bounded retries");
}

#[tokio::test]
async fn a_scale_in_marks_pods_by_the_pools_per_instance_samples() {
    let k = StandIn::start().await;
    k.workload("deployments", "writer", 3, 3);
    for p in ["writer-a", "writer-b", "writer-c"] {
        k.pod(p, &[]);
    }
    let db = db("instances").await;
    let mut c = EngineCtx::new(db.store.clone());
    c.actuator = Arc::new(k.actuator(2).await);
    let p = k8s_pool(&db.store, 3).await;
    let now = fleetscale_store::now_ms();
    let s = |instance: &str, value: f64| InstanceSample {
        pool_id: p.clone(),
        instance: instance.into(),
        metric: "throughput".into(),
        ts_ms: now - 1_000,
        value,
    };
    db.store
        .insert_instance_samples(&[s("writer-a", 4.0), s("writer-b", 7.0), s("writer-c", 1.0)])
        .await
        .unwrap();
    let mut req = ScaleRequest {
        pool_id: p.clone(),
        capacity: 1,
        reason: "manual".into(),
        trigger_source: TriggerSource::Manual,
        metadata: json!({}),
        actor: "test".into(),
        expect_desired: None,
        respect_safety_lock: false,
        actuation_status: ActuationStatus::Pending,
        fence: None,
        now_ms: now,
    };
    db.store.scale(&req).await.unwrap();
    assert_eq!(
        fleetscale_engine::control::actuate_pending(&c, None)
            .await
            .unwrap(),
        (1, 0)
    );
    assert_eq!(k.annotation("writer-c").as_deref(), Some("-100"));
    assert_eq!(k.annotation("writer-a").as_deref(), Some("-100"));
    assert_eq!(k.annotation("writer-b"), None);
    assert_eq!(k.replicas("deployments", "writer"), 1);
    // Without a target the actuation fails with the reason recorded.
    let patch = fleetscale_core::PoolPatch {
        target: Some(None),
        ..Default::default()
    };
    let pool = db.store.get_pool(&p).await.unwrap();
    db.store
        .update_pool(&p, &patch.apply(&pool.to_valid()).unwrap(), "test")
        .await
        .unwrap();
    req.capacity = 2;
    db.store.scale(&req).await.unwrap();
    assert_eq!(
        fleetscale_engine::control::actuate_pending(&c, None)
            .await
            .unwrap(),
        (0, 1)
    );
    let ev = &events(&db.store, &p).await[0];
    assert!(ev
        .actuation
        .error
        .as_deref()
        .unwrap()
        .contains("no target workload"));
}

/// The webhook gets the same ranking: its scale-in payload names the
/// instances to remove when the pool reports per-instance load.
#[tokio::test]
async fn the_webhook_scale_in_payload_names_the_instances_to_remove() {
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let got = bodies.clone();
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let got = got.clone();
        async move {
            got.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let db = db("webhook").await;
    let mut c = EngineCtx::new(db.store.clone());
    c.actuator = Arc::new(
        Actuator::webhook(fleetscale_engine::WebhookConfig {
            url,
            secret: "hook-secret".into(),
            timeout: Duration::from_secs(5),
            max_attempts: 1,
            backoff: Duration::from_millis(5),
        })
        .unwrap(),
    );
    let p = k8s_pool(&db.store, 4).await;
    let now = fleetscale_store::now_ms();
    let s = |instance: &str, metric: &str, value: f64| InstanceSample {
        pool_id: p.clone(),
        instance: instance.into(),
        metric: metric.into(),
        ts_ms: now - 1_000,
        value,
    };
    db.store
        .insert_instance_samples(&[
            s("i-1", "throughput", 6.0),
            s("i-2", "throughput", 0.5),
            s("i-3", "cpu", 0.2),
            s("i-4", "throughput", 3.0),
        ])
        .await
        .unwrap();
    let req = |capacity| ScaleRequest {
        pool_id: p.clone(),
        capacity,
        reason: "manual".into(),
        trigger_source: TriggerSource::Manual,
        metadata: json!({}),
        actor: "test".into(),
        expect_desired: None,
        respect_safety_lock: false,
        actuation_status: ActuationStatus::Pending,
        fence: None,
        now_ms: now,
    };
    db.store.scale(&req(2)).await.unwrap();
    assert_eq!(
        fleetscale_engine::control::actuate_pending(&c, None)
            .await
            .unwrap(),
        (1, 0)
    );
    db.store.scale(&req(5)).await.unwrap();
    fleetscale_engine::control::actuate_pending(&c, None)
        .await
        .unwrap();
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    // i-3 reports no throughput: first; then the least in-flight work.
    assert_eq!(bodies[0]["remove_instances"], json!(["i-3", "i-2"]));
    assert_eq!(bodies[0]["previous_capacity"], 4);
    assert_eq!(bodies[0]["capacity"], 2);
    assert!(
        bodies[1].get("remove_instances").is_none(),
        "scale-out: none"
    );
}
