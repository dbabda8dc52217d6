//! Bearer-token authentication and role checks.
//!
//! Tokens are random 256-bit strings shown once; only their SHA-256 is
//! stored. A global admin token (no tenant) may do everything; a tenant token
//! has a role (`admin` > `operator` > `viewer`) and never sees another
//! tenant's objects: those answer 404, as if they did not exist.
//!
//! # Token cache
//!
//! A stored token's grant is cached in memory per replica for
//! [`TOKEN_CACHE_TTL`] after a successful lookup, so a busy client does not
//! cost a database query per request (on SQLite that query would share the
//! single connection with the budget writer). Consequence: a token revoked
//! with `DELETE /api/v1/tokens/{id}` stops working at once on the replica
//! that revoked it (which drops its cached grant and refuses to cache it
//! again for one TTL, in case a lookup read the row just before), and keeps
//! working on another replica for at most [`TOKEN_CACHE_TTL`] after that
//! replica last looked it up; so does a token whose row disappears any
//! other way (its tenant deleted), on every replica. Unknown tokens are never cached, so a new
//! token works at once on every replica. The environment admin token is
//! compared by hash, without a query, and cannot be revoked through the API
//! (change the environment and restart).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::AppState;

/// A role, ordered by power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read only.
    Viewer,
    /// Read, push metrics, scale, plan, rebalance, settle proposals.
    Operator,
    /// Everything within its scope.
    Admin,
}

impl Role {
    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Name used as the audit actor.
    pub name: String,
    /// Tenant scope; `None` for a global admin.
    pub tenant_id: Option<String>,
    /// Role.
    pub role: Role,
}

impl Principal {
    /// True for a global (unscoped) admin.
    pub fn is_global_admin(&self) -> bool {
        self.tenant_id.is_none() && self.role == Role::Admin
    }

    /// Fails with 403 unless the role is at least `min`.
    pub fn require(&self, min: Role) -> Result<(), ApiError> {
        if self.role >= min {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this action needs the {} role; the token has {}",
                min.as_str(),
                self.role.as_str()
            )))
        }
    }

    /// Fails with 403 unless the caller is a global admin.
    pub fn require_global_admin(&self) -> Result<(), ApiError> {
        if self.is_global_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this action needs the global admin token".into(),
            ))
        }
    }

    /// Fails with 404 (`what` not found) unless the caller may see `tenant_id`.
    pub fn see(&self, tenant_id: &str, what: &str) -> Result<(), ApiError> {
        match &self.tenant_id {
            Some(t) if t != tenant_id => Err(ApiError::NotFound(what.to_string())),
            _ => Ok(()),
        }
    }

    /// The tenant filter for a list: a scoped token sees only its own tenant
    /// (asking for another is a 404); a global admin may filter or not.
    pub fn tenant_filter(&self, requested: Option<&str>) -> Result<Option<String>, ApiError> {
        match (&self.tenant_id, requested) {
            (Some(own), Some(r)) if own != r => Err(ApiError::NotFound("tenant".into())),
            (Some(own), _) => Ok(Some(own.clone())),
            (None, r) => Ok(r.map(str::to_string)),
        }
    }
}

/// How long a stored token's grant is trusted without asking the database
/// again (see the module docs for what this means for revocation).
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);

/// Most cached grants (a stated bound; the cache is cleared when full).
const TOKEN_CACHE_MAX: usize = 10_000;

/// Grants of stored tokens by token hash, each trusted until its deadline,
/// and tombstones of tokens this replica revoked.
#[derive(Debug, Default)]
pub struct TokenCache {
    grants: Mutex<HashMap<String, Cached>>,
}

/// What the cache knows of one token hash, until a deadline.
#[derive(Debug)]
enum Cached {
    /// The database confirmed this grant.
    Grant(Principal, Instant),
    /// This replica revoked the token: a lookup that read the row before
    /// the revocation committed must not cache it again.
    Revoked(Instant),
}

impl TokenCache {
    /// The cached grant of `hash`, unless it is older than [`TOKEN_CACHE_TTL`] at `now`.
    pub fn get(&self, hash: &str, now: Instant) -> Option<Principal> {
        let mut m = self.grants.lock().ok()?;
        match m.get(hash) {
            Some(Cached::Grant(p, until)) if now < *until => Some(p.clone()),
            Some(Cached::Revoked(until)) if now < *until => None,
            Some(_) => {
                m.remove(hash);
                None
            }
            None => None,
        }
    }

    /// Forgets the grant of `hash` (the token was revoked at `now`) and
    /// refuses to cache it again for [`TOKEN_CACHE_TTL`], longer than any
    /// lookup that started before the revocation can take to finish.
    pub fn forget(&self, hash: &str, now: Instant) {
        if let Ok(mut m) = self.grants.lock() {
            m.insert(hash.to_string(), Cached::Revoked(now + TOKEN_CACHE_TTL));
        }
    }

    /// Remembers a grant the database just confirmed at `now` (not for a
    /// token this replica has just revoked).
    pub fn put(&self, hash: String, principal: Principal, now: Instant) {
        if let Ok(mut m) = self.grants.lock() {
            if matches!(m.get(&hash), Some(Cached::Revoked(until)) if now < *until) {
                return;
            }
            if m.len() >= TOKEN_CACHE_MAX {
                // Tombstones go too: at worst a lookup that was in flight
                // when its token was revoked caches it for one TTL.
                m.clear();
            }
            m.insert(hash, Cached::Grant(principal, now + TOKEN_CACHE_TTL));
        }
    }
}

/// SHA-256 of a token, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token: `fs_` and 64 hex digits.
pub fn generate_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("fs_{}", hex::encode(b))
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let h = hash_token(token);
        if state.admin_token_hash.as_deref() == Some(h.as_str()) {
            return Ok(Principal {
                name: "admin".into(),
                tenant_id: None,
                role: Role::Admin,
            });
        }
        if let Some(p) = state.tokens.get(&h, Instant::now()) {
            return Ok(p);
        }
        let grant = state
            .engine
            .store
            .find_token(&h)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let p = Principal {
            name: grant.name,
            tenant_id: grant.tenant_id,
            role: Role::parse(&grant.role).unwrap_or(Role::Viewer),
        };
        state.tokens.put(h, p.clone(), Instant::now());
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_scopes() {
        let viewer = Principal {
            name: "v".into(),
            tenant_id: Some("t1".into()),
            role: Role::Viewer,
        };
        assert!(viewer.require(Role::Viewer).is_ok());
        assert!(matches!(
            viewer.require(Role::Operator),
            Err(ApiError::Forbidden(_))
        ));
        assert!(viewer.see("t1", "pool").is_ok());
        assert!(matches!(
            viewer.see("t2", "pool"),
            Err(ApiError::NotFound(_))
        ));
        assert_eq!(viewer.tenant_filter(None).unwrap(), Some("t1".into()));
        assert!(viewer.tenant_filter(Some("t2")).is_err());
        let admin = Principal {
            name: "a".into(),
            tenant_id: None,
            role: Role::Admin,
        };
        assert!(admin.is_global_admin());
        assert_eq!(admin.tenant_filter(None).unwrap(), None);
        assert!(admin.see("anything", "pool").is_ok());
    }

    #[test]
    fn token_cache_expires_grants() {
        let c = TokenCache::default();
        let t0 = Instant::now();
        let p = Principal {
            name: "ci".into(),
            tenant_id: Some("t1".into()),
            role: Role::Operator,
        };
        assert_eq!(c.get("h", t0), None);
        c.put("h".into(), p.clone(), t0);
        assert_eq!(c.get("h", t0 + Duration::from_secs(1)), Some(p));
        assert_eq!(c.get("h", t0 + TOKEN_CACHE_TTL), None);
        assert_eq!(c.get("h", t0), None, "an expired grant is dropped");
    }

    #[test]
    fn a_revoked_token_is_not_cached_again_by_a_lookup_in_flight() {
        let c = TokenCache::default();
        let t0 = Instant::now();
        let p = Principal {
            name: "ci".into(),
            tenant_id: None,
            role: Role::Admin,
        };
        c.put("h".into(), p.clone(), t0);
        c.forget("h", t0 + Duration::from_secs(1));
        assert_eq!(c.get("h", t0 + Duration::from_secs(1)), None);
        // A lookup that read the row before the revocation committed.
        c.put("h".into(), p.clone(), t0 + Duration::from_secs(2));
        assert_eq!(c.get("h", t0 + Duration::from_secs(2)), None);
        // Once the tombstone is older than any lookup can be, a grant the
        // database confirms again (a token re-created with the same
        // secret) is cached as usual.
        let later = t0 + Duration::from_secs(1) + TOKEN_CACHE_TTL;
        c.put("h".into(), p.clone(), later);
        assert_eq!(c.get("h", later), Some(p));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = generate_token();
        assert_ne!(a, generate_token());
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), a);
    }
}
