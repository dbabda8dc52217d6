//! The `kubernetes` actuator: scales a pool's target workload (a
//! Deployment or StatefulSet, [`WorkloadTarget`]) through its `scale`
//! subresource with the kube client.
//!
//! One actuation, for a change to `M` replicas:
//!
//! 1. `GET .../{deployments|statefulsets}/{name}/scale` (its
//!    `resourceVersion`, `spec.replicas` = `N` and `status.selector`);
//! 2. on a scale-in (`M < N`) of a pool that reports per-instance load: list
//!    the pods (`GET /api/v1/namespaces/{ns}/pods?labelSelector=...`), rank
//!    them ([`instances_to_remove`]: no reading first, then least in-flight
//!    work) and JSON-merge-patch
//!    `metadata.annotations["controller.kubernetes.io/pod-deletion-cost"]`
//!    to [`REMOVE_DELETION_COST`] on the `N − M` first, and remove the
//!    annotation from any other pod an earlier scale-in marked; a patch that
//!    fails stops the actuation before the replicas change;
//! 3. `PUT .../scale` with `spec.replicas = M` and the `resourceVersion`
//!    read: a `409 Conflict` reads the scale again and retries (at most
//!    [`MAX_CONFLICTS`] times); a re-read that already shows `M` is done.
//!
//! Every request is retried on a 5xx, a 429 or a transport error, at most
//! `max_attempts` times with doubling backoff; what still fails is the
//! actuation's recorded error (retried on the next tick, as the webhook's).
//! Each step is idempotent: patching a cost again, or putting the same
//! replicas, changes nothing more.
//!
//! Each tick, the control loop has the actuator read the status of the
//! targets of the pools it is about to grow ([`KubernetesActuator::observe`]):
//! `spec.replicas`, `status.replicas` and `status.readyReplicas` become a
//! [`WorkloadStatus`], whose replicas not ready yet count as coming capacity
//! ([`fleetscale_core::workload::coming_capacity_hold`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use fleetscale_core::workload::{
    instances_to_remove, InstanceLoad, WorkloadKind, WorkloadStatus, WorkloadTarget,
    POD_DELETION_COST, REMOVE_DELETION_COST,
};

/// Most `409 Conflict` answers to a scale update before giving up.
pub const MAX_CONFLICTS: u32 = 5;

/// Most pods listed for a scale-in (a stated bound).
pub const MAX_PODS: u32 = 5_000;

/// Longest a tick waits for one workload's status (retries included): the
/// status only ever holds a scale-out, so a slow API server costs the hold,
/// not the tick (and the leader's lease).
pub const STATUS_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Workload status reads in flight at once (as many as the control loop's
/// concurrent deliveries).
pub const STATUS_READ_CONCURRENCY: usize = 16;

/// Kubernetes actuator settings.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// A kubeconfig file; without one, in-cluster config then the default
    /// kubeconfig (`kube::Config::infer`).
    pub kubeconfig: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts per request on 5xx, 429 or transport errors (1..=10).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub backoff: Duration,
}

impl KubernetesConfig {
    /// Checks the settings, naming the flag at fault.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10).contains(&self.max_attempts) {
            return Err("kubernetes attempts must be between 1 and 10".into());
        }
        if let Some(p) = &self.kubeconfig {
            if !p.is_file() {
                return Err(format!("--kubeconfig {}: no such file", p.display()));
            }
        }
        Ok(())
    }
}

/// The Kubernetes actuator: a kube client and the workload statuses it read
/// last, by pool id.
#[derive(Clone)]
pub struct KubernetesActuator {
    client: Client,
    config: KubernetesConfig,
    statuses: Arc<Mutex<HashMap<String, WorkloadStatus>>>,
}

impl std::fmt::Debug for KubernetesActuator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesActuator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The outcome of one actuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOutcome {
    /// Scale updates sent (1 plus one per conflict or retry).
    pub attempts: i64,
    /// The pods marked for removal, in removal order.
    pub marked: Vec<String>,
}

/// An actuation that failed, with the scale updates sent before it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleFailure {
    /// Scale updates sent.
    pub attempts: i64,
    /// What failed.
    pub error: String,
}

fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            format!("API server answered {} {}: {}", s.code, s.reason, s.message)
        }
        other => format!("request failed: {other}"),
    }
}

impl KubernetesActuator {
    /// Builds the actuator from a kubeconfig file, or the inferred config
    /// (in-cluster, then the default kubeconfig).
    pub async fn new(config: KubernetesConfig) -> Result<KubernetesActuator, String> {
        config.validate()?;
        let mut kube_config = match &config.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
                Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?
            }
            None => Config::infer()
                .await
                .map_err(|e| format!("no Kubernetes config (in-cluster or kubeconfig): {e}"))?,
        };
        kube_config.read_timeout = Some(config.timeout);
        kube_config.write_timeout = Some(config.timeout);
        kube_config.connect_timeout = Some(config.timeout);
        let client = Client::try_from(kube_config)
            .map_err(|e| format!("cannot build the Kubernetes client: {e}"))?;
        Ok(KubernetesActuator {
            client,
            config,
            statuses: Arc::default(),
        })
    }

    /// The workload status last read for `pool_id`.
    pub fn status(&self, pool_id: &str) -> Option<WorkloadStatus> {
        self.statuses
            .lock()
            .expect("workload status lock")
            .get(pool_id)
            .copied()
    }

    /// Runs `f` until it succeeds, fails for good, or `max_attempts` ran out
    /// (retrying 5xx, 429 and transport errors with doubling backoff).
    async fn retry<T, F, Fut>(&self, mut f: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        let mut delay = self.config.backoff;
        let mut attempt = 1;
        loop {
            match f().await {
                Err(e) if transient(&e) && attempt < self.config.max_attempts => {
                    tracing::debug!(error = %e, attempt, "Kubernetes request failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn get_scale(&self, t: &WorkloadTarget) -> Result<Scale, kube::Error> {
        match t.kind {
            WorkloadKind::Deployment => {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &t.namespace);
                self.retry(|| api.get_scale(&t.name)).await
            }
            WorkloadKind::StatefulSet => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &t.namespace);
                self.retry(|| api.get_scale(&t.name)).await
            }
        }
    }

    async fn replace_scale(&self, t: &WorkloadTarget, s: &Scale) -> Result<Scale, kube::Error> {
        let pp = PostParams::default();
        match t.kind {
            WorkloadKind::Deployment => {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &t.namespace);
                api.replace_scale(&t.name, &pp, s).await
            }
            WorkloadKind::StatefulSet => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &t.namespace);
                api.replace_scale(&t.name, &pp, s).await
            }
        }
    }

    /// Reads the workload's replicas: asked for, existing, ready.
    pub async fn read_status(
        &self,
        t: &WorkloadTarget,
        now_ms: i64,
    ) -> Result<WorkloadStatus, String> {
        let (desired, replicas, ready) = match t.kind {
            WorkloadKind::Deployment => {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &t.namespace);
                let d = self
                    .retry(|| api.get(&t.name))
                    .await
                    .map_err(|e| describe(&e))?;
                let st = d.status.unwrap_or_default();
                (
                    d.spec.and_then(|s| s.replicas).unwrap_or(1),
                    st.replicas.unwrap_or(0),
                    st.ready_replicas.unwrap_or(0),
                )
            }
            WorkloadKind::StatefulSet => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &t.namespace);
                let d = self
                    .retry(|| api.get(&t.name))
                    .await
                    .map_err(|e| describe(&e))?;
                let st = d.status.unwrap_or_default();
                (
                    d.spec.and_then(|s| s.replicas).unwrap_or(1),
                    st.replicas,
                    st.ready_replicas.unwrap_or(0),
                )
            }
        };
        Ok(WorkloadStatus {
            desired: i64::from(desired),
            replicas: i64::from(replicas),
            ready: i64::from(ready),
            observed_at_ms: now_ms,
        })
    }

    /// Reads the status of each `(pool id, target)` (each within
    /// [`STATUS_READ_TIMEOUT`], [`STATUS_READ_CONCURRENCY`] at a
    /// time) and keeps it for
    /// [`KubernetesActuator::status`]; a pool whose read fails (or that is
    /// not listed) loses its status, so nothing is held on stale news.
    /// Returns how many reads failed.
    pub async fn observe(&self, targets: &[(String, WorkloadTarget)], now_ms: i64) -> usize {
        use futures::StreamExt;
        let read: Vec<(String, Result<WorkloadStatus, String>)> =
            futures::stream::iter(targets.to_vec())
                .map(|(id, t)| async move {
                    let status =
                        tokio::time::timeout(STATUS_READ_TIMEOUT, self.read_status(&t, now_ms))
                            .await
                            .unwrap_or_else(|_| {
                                Err(format!("no answer within {STATUS_READ_TIMEOUT:?}"))
                            });
                    (id, status)
                })
                .buffer_unordered(STATUS_READ_CONCURRENCY)
                .collect()
                .await;
        let mut failed = 0;
        let mut fresh = HashMap::new();
        for (id, r) in read {
            match r {
                Ok(s) => {
                    fresh.insert(id, s);
                }
                Err(e) => {
                    failed += 1;
                    tracing::warn!(pool_id = %id, error = %e, "reading the workload status failed");
                }
            }
        }
        *self.statuses.lock().expect("workload status lock") = fresh;
        failed
    }

    /// Marks the `remove` pods (ranked from `instances`, the pool's
    /// per-instance loads) among the workload's pods with the removal
    /// deletion cost, and unmarks the other pods that carry it.
    async fn mark_pods(
        &self,
        t: &WorkloadTarget,
        selector: &str,
        remove: usize,
        instances: &[InstanceLoad],
    ) -> Result<Vec<String>, String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &t.namespace);
        let lp = ListParams::default().labels(selector).limit(MAX_PODS);
        let pods = self
            .retry(|| api.list(&lp))
            .await
            .map_err(|e| format!("listing the pods of {t}: {}", describe(&e)))?;
        let loads: HashMap<&str, Option<f64>> = instances
            .iter()
            .map(|i| (i.name.as_str(), i.load))
            .collect();
        let live: Vec<&Pod> = pods
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let candidates: Vec<InstanceLoad> = live
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .map(|name| InstanceLoad {
                load: loads.get(name.as_str()).copied().flatten(),
                name,
            })
            .collect();
        let chosen = instances_to_remove(&candidates, remove);
        let mark = REMOVE_DELETION_COST.to_string();
        let stale: Vec<String> = live
            .iter()
            .filter(|p| {
                p.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(POD_DELETION_COST))
                    == Some(&mark)
            })
            .filter_map(|p| p.metadata.name.clone())
            .filter(|n| !chosen.contains(n))
            .collect();
        let pp = PatchParams::default();
        for (names, value) in [
            (&chosen, serde_json::Value::String(mark.clone())),
            (&stale, serde_json::Value::Null),
        ] {
            for name in names {
                let body = serde_json::json!({
                    "metadata": { "annotations": { POD_DELETION_COST: value } }
                });
                let patch = Patch::Merge(&body);
                self.retry(|| api.patch(name, &pp, &patch))
                    .await
                    .map_err(|e| format!("annotating pod {name} of {t}: {}", describe(&e)))?;
            }
        }
        Ok(chosen)
    }

    /// Sets `target`'s replicas to `replicas`; on a scale-in, first marks
    /// the pods to remove when `instances` (the pool's per-instance loads)
    /// is not empty. Idempotent: a workload already at `replicas` is left
    /// as it is.
    pub async fn scale(
        &self,
        t: &WorkloadTarget,
        replicas: i64,
        instances: &[InstanceLoad],
    ) -> Result<ScaleOutcome, ScaleFailure> {
        let fail = |attempts, error| ScaleFailure { attempts, error };
        let want = i32::try_from(replicas).map_err(|_| {
            fail(
                0,
                format!("{replicas} replicas do not fit the scale subresource"),
            )
        })?;
        let mut scale = self
            .get_scale(t)
            .await
            .map_err(|e| fail(0, format!("reading the scale of {t}: {}", describe(&e))))?;
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let mut marked = Vec::new();
        if want < current && !instances.is_empty() {
            let selector = scale
                .status
                .as_ref()
                .and_then(|s| s.selector.clone())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| fail(0, format!("the scale of {t} has no status.selector")))?;
            marked = self
                .mark_pods(t, &selector, (current - want) as usize, instances)
                .await
                .map_err(|e| fail(0, e))?;
        }
        let (mut attempts, mut conflicts) = (0i64, 0u32);
        let mut delay = self.config.backoff;
        loop {
            if scale.spec.as_ref().and_then(|s| s.replicas) == Some(want) {
                return Ok(ScaleOutcome { attempts, marked });
            }
            let mut body = scale.clone();
            body.spec.get_or_insert_with(Default::default).replicas = Some(want);
            body.status = None;
            attempts += 1;
            match self.replace_scale(t, &body).await {
                Ok(_) => return Ok(ScaleOutcome { attempts, marked }),
                Err(e) if conflict(&e) && conflicts < MAX_CONFLICTS => conflicts += 1,
                Err(e) if transient(&e) && attempts < i64::from(self.config.max_attempts) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    return Err(fail(
                        attempts,
                        format!("updating the scale of {t}: {}", describe(&e)),
                    ))
                }
            }
            // Read again: a conflict means someone else wrote; after a
            // failed attempt the write may have landed all the same.
            scale = self.get_scale(t).await.map_err(|e| {
                fail(
                    attempts,
                    format!("reading the scale of {t}: {}", describe(&e)),
                )
            })?;
        }
    }
}
