//! Actuators: how a decided capacity reaches the infrastructure.
//!
//! `none` leaves the desired capacity in the API for someone to read.
//! `webhook` POSTs the change as JSON with an `Idempotency-Key` (the event id)
//! and an `X-Fleetscale-Signature: sha256=<hex HMAC-SHA256(secret, body)>`
//! header, retrying with exponential backoff; a failure is recorded on the
//! event and retried on the next tick. Delivery is at least once; the
//! idempotency key lets the receiver drop a repeat. On a scale-in of a pool
//! that reports per-instance load, the payload's `remove_instances` names
//! the instances to remove (least in-flight work first,
//! [`fleetscale_core::workload::instances_to_remove`]).
//! `kubernetes` scales the pool's target workload ([`kubernetes`]).

pub mod kubernetes;

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use fleetscale_core::workload::{instances_to_remove, InstanceLoad, WorkloadTarget};
use fleetscale_store::{rfc3339, ScalingEvent};

pub use kubernetes::{KubernetesActuator, KubernetesConfig};

/// Webhook actuator settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// HMAC key.
    pub secret: String,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Attempts per delivery series (1..=10).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub backoff: Duration,
}

impl WebhookConfig {
    /// Checks the settings, naming the flag at fault.
    pub fn validate(&self) -> Result<(), String> {
        let u = self.url.as_str();
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err("--webhook-url must be an http:// or https:// URL".into());
        }
        if self.secret.len() < 8 {
            return Err("--webhook-secret must be at least 8 characters".into());
        }
        if !(1..=10).contains(&self.max_attempts) {
            return Err("webhook attempts must be between 1 and 10".into());
        }
        Ok(())
    }
}

/// The configured actuator.
#[derive(Debug, Clone)]
pub enum Actuator {
    /// Nothing is called.
    None,
    /// Signed webhook.
    Webhook {
        /// Settings.
        config: WebhookConfig,
        /// HTTP client (connection pool).
        client: reqwest::Client,
    },
    /// The scale subresource of each pool's target workload.
    Kubernetes(KubernetesActuator),
}

/// What the engine knows of an event's pool when it actuates the event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolContext {
    /// The pool's Kubernetes workload, if it has one.
    pub target: Option<WorkloadTarget>,
    /// The pool's instances with their in-flight work (newest per-instance
    /// sample of the pool's metric); empty when the pool reports no
    /// per-instance load (or the change is not a scale-in).
    pub instances: Vec<InstanceLoad>,
}

/// What a delivery series achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// True when the receiver answered 2xx.
    pub delivered: bool,
    /// Attempts made.
    pub attempts: i64,
    /// Last error, if not delivered.
    pub error: Option<String>,
}

/// The JSON body of a webhook call.
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    /// Scaling event id.
    pub event_id: &'a str,
    /// Same as the event id: receivers deduplicate on it.
    pub idempotency_key: &'a str,
    /// Pool id.
    pub pool_id: &'a str,
    /// Tenant id.
    pub tenant_id: &'a str,
    /// Region.
    pub region: &'a str,
    /// Agent type.
    pub agent_type: &'a str,
    /// The new desired capacity.
    pub capacity: i64,
    /// The capacity before.
    pub previous_capacity: i64,
    /// Why.
    pub reason: &'a str,
    /// Trigger source.
    pub trigger_source: &'a str,
    /// `activate` (from zero) or `idle_to_zero` (to zero) when the change
    /// crosses zero; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero_transition: Option<&'static str>,
    /// When decided.
    pub created_at: String,
    /// On a scale-in of a pool that reports per-instance load: the
    /// `previous_capacity − capacity` instances to remove, least in-flight
    /// work first (instances without a reading before all others); absent
    /// otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_instances: Option<Vec<String>>,
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Actuator {
    /// Builds the webhook actuator.
    pub fn webhook(config: WebhookConfig) -> Result<Actuator, String> {
        config.validate()?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(Actuator::Webhook { config, client })
    }

    /// The actuator's name as `serve --actuator` spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Actuator::None => "none",
            Actuator::Webhook { .. } => "webhook",
            Actuator::Kubernetes(_) => "kubernetes",
        }
    }

    /// True when events must be delivered.
    pub fn is_active(&self) -> bool {
        !matches!(self, Actuator::None)
    }

    /// Builds the Kubernetes actuator (see [`KubernetesActuator::new`]).
    pub async fn kubernetes(config: KubernetesConfig) -> Result<Actuator, String> {
        Ok(Actuator::Kubernetes(KubernetesActuator::new(config).await?))
    }

    /// Delivers one event of the pool described by `pool`: idempotent on the
    /// webhook receiver's side by its key; for Kubernetes, setting the same
    /// replicas (and deletion costs) again changes nothing.
    pub async fn deliver(&self, ev: &ScalingEvent, pool: &PoolContext) -> Delivery {
        let remove = usize::try_from(ev.previous_capacity - ev.new_capacity).unwrap_or(0);
        let (config, client) = match self {
            Actuator::None => {
                return Delivery {
                    delivered: true,
                    attempts: 0,
                    error: None,
                }
            }
            Actuator::Webhook { config, client } => (config, client),
            Actuator::Kubernetes(k) => {
                let Some(target) = &pool.target else {
                    return Delivery {
                        delivered: false,
                        attempts: 0,
                        error: Some(
                            "pool has no target workload: set its target (kind, namespace, name) for the kubernetes actuator".into(),
                        ),
                    };
                };
                return match k.scale(target, ev.new_capacity, &pool.instances).await {
                    Ok(o) => {
                        if !o.marked.is_empty() {
                            tracing::info!(event_id = %ev.id, pool_id = %ev.pool_id, target = %target, pods = ?o.marked, "pods marked for removal");
                        }
                        Delivery {
                            delivered: true,
                            attempts: o.attempts,
                            error: None,
                        }
                    }
                    Err(f) => Delivery {
                        delivered: false,
                        attempts: f.attempts,
                        error: Some(f.error),
                    },
                };
            }
        };
        let remove_instances = (remove > 0 && !pool.instances.is_empty())
            .then(|| instances_to_remove(&pool.instances, remove));
        let body = WebhookBody {
            event_id: &ev.id,
            idempotency_key: &ev.id,
            pool_id: &ev.pool_id,
            tenant_id: &ev.tenant_id,
            region: &ev.region,
            agent_type: &ev.agent_type,
            capacity: ev.new_capacity,
            previous_capacity: ev.previous_capacity,
            reason: &ev.reason,
            trigger_source: ev.trigger_source.as_str(),
            zero_transition: fleetscale_core::ZeroTransition::of(
                ev.previous_capacity,
                ev.new_capacity,
            )
            .map(|z| z.as_str()),
            created_at: rfc3339(ev.created_at_ms),
            remove_instances,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        post_signed(config, client, &ev.id, "scaling", bytes).await
    }

    /// Posts a region alert to the webhook, signed like scaling changes,
    /// with `X-Fleetscale-Event: alert` and the alert id as idempotency key;
    /// `None` without a webhook.
    pub async fn notify(&self, alert_id: &str, body: &serde_json::Value) -> Option<Delivery> {
        let Actuator::Webhook { config, client } = self else {
            return None;
        };
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        Some(post_signed(config, client, alert_id, "alert", bytes).await)
    }
}

/// POSTs `bytes` to the webhook with its signature, retrying with backoff.
async fn post_signed(
    config: &WebhookConfig,
    client: &reqwest::Client,
    key: &str,
    event: &str,
    bytes: Vec<u8>,
) -> Delivery {
    let signature = sign(&config.secret, &bytes);
    let mut delay = config.backoff;
    let mut last_error = None;
    for attempt in 1..=config.max_attempts {
        let res = client
            .post(&config.url)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .header("x-fleetscale-event", event)
            .header("x-fleetscale-signature", &signature)
            .body(bytes.clone())
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => {
                return Delivery {
                    delivered: true,
                    attempts: i64::from(attempt),
                    error: None,
                }
            }
            Ok(r) => last_error = Some(format!("receiver answered {}", r.status())),
            Err(e) => last_error = Some(format!("request failed: {e}")),
        }
        if attempt < config.max_attempts {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    Delivery {
        delivered: false,
        attempts: i64::from(config.max_attempts),
        error: last_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn config_validation_names_the_flag() {
        let ok = WebhookConfig {
            url: "http://127.0.0.1:9/hook".into(),
            secret: "s3cret-key".into(),
            timeout: Duration::from_secs(2),
            max_attempts: 3,
            backoff: Duration::from_millis(100),
        };
        assert!(ok.validate().is_ok());
        let bad_url = WebhookConfig {
            url: "ftp://x".into(),
            ..ok.clone()
        };
        assert!(bad_url.validate().unwrap_err().contains("--webhook-url"));
        let bad_secret = WebhookConfig {
            secret: "short".into(),
            ..ok
        };
        assert!(bad_secret
            .validate()
            .unwrap_err()
            .contains("--webhook-secret"));
    }
}
