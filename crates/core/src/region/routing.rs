//! Workload routing: which region should run a tenant's workload.
//!
//! [`route`] works in three steps, every one a pure function of the
//! [`RouteInput`] (so a stored input replays to the same decision):
//!
//! 1. **Compliance** ([`super::compliance::is_compliant`]) is a hard filter
//!    applied first. When it leaves no region the answer is
//!    [`RouteError::NoCompliantRegion`]; a non-compliant region is never
//!    named by any policy, fallback, failover or spill.
//! 2. **Eligibility**: a compliant region is excluded when it is `frozen`,
//!    ejected for the tenant (`ejected_until_ms > now_ms`), or has no pool of
//!    the agent type with spare capacity (checked in that order).
//! 3. **Order** ([`RoutingPolicy`]): the policy ranks the compliant regions
//!    and the first eligible one wins; the regions a policy does not name
//!    come after those it names, in *score order*. This is the waterfall
//!    spill: a request is refused ([`RouteError::NoAvailableRegion`]) only
//!    when no compliant region can take it. Like Envoy's priority-level
//!    degradation, traffic moves to the next level only as a whole region
//!    becomes unavailable, never partially.
//!
//! **Score** of a compliant region (phase 93):
//! `latency_score = max(0, 100 − latency_ms ÷ 10)` where `latency_ms` is the
//! mean of the region's last [`LATENCY_SAMPLES`] samples ([`NO_LATENCY_MS`]
//! when none); `capacity_score = 100 × Σspare ÷ Σmax` over the tenant's pools
//! of the agent type in the region (0 when none);
//! `score = latency_weight × latency_score + capacity_weight ×
//! capacity_score + bonus`, where `bonus = preferred_bonus` (default
//! [`DEFAULT_PREFERRED_BONUS`] points) when the region is among the
//! request's `preferred_regions`, else 0. Weights default to 0.6 / 0.4 and
//! come from the `score` policy when that is the tenant's policy. *Score
//! order* is score descending, then position in `preferred_regions`
//! (preferred first), then name.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::compliance::{is_compliant, RegionPolicy};
use super::fnv1a64;
use super::mode::ScalingMode;
use crate::validate::Violations;

/// Latency samples averaged for the score.
pub const LATENCY_SAMPLES: usize = 10;
/// Latency assumed for a region with no sample.
pub const NO_LATENCY_MS: f64 = 1_000.0;
/// Smoothing factor of the EWMA used by the `latency` policy (oldest sample
/// first, seeded with the oldest sample).
pub const EWMA_ALPHA: f64 = 0.3;
/// Default latency weight of the score.
pub const DEFAULT_LATENCY_WEIGHT: f64 = 0.6;
/// Default capacity weight of the score.
pub const DEFAULT_CAPACITY_WEIGHT: f64 = 0.4;
/// Default bonus points for a preferred region.
pub const DEFAULT_PREFERRED_BONUS: f64 = 10.0;
/// Consecutive failures that eject a region for a tenant.
pub const EJECT_AFTER_FAILURES: u32 = 5;
/// Ejection time per ejection so far.
pub const EJECTION_BASE_MS: i64 = 30_000;
/// Longest ejection.
pub const EJECTION_MAX_MS: i64 = 300_000;

fn default_latency_weight() -> f64 {
    DEFAULT_LATENCY_WEIGHT
}
fn default_capacity_weight() -> f64 {
    DEFAULT_CAPACITY_WEIGHT
}
fn default_preferred_bonus() -> f64 {
    DEFAULT_PREFERRED_BONUS
}

/// A tenant's routing policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RoutingPolicy {
    /// Highest score first (the default).
    Score {
        /// Weight of the latency score.
        #[serde(default = "default_latency_weight")]
        latency_weight: f64,
        /// Weight of the capacity score.
        #[serde(default = "default_capacity_weight")]
        capacity_weight: f64,
        /// Points added for a preferred region.
        #[serde(default = "default_preferred_bonus")]
        preferred_bonus: f64,
    },
    /// Lowest EWMA latency first; regions without samples after, in score order.
    Latency,
    /// The list mapped to the client's country (most specific key: the full
    /// code, then with its last `-part` removed, ...), then the `default`
    /// list, then the rest in score order.
    Geolocation {
        /// Country code (or `default`) → ordered region names.
        map: BTreeMap<String, Vec<String>>,
    },
    /// A pick with probability `w ÷ Σw` over the eligible named regions of
    /// positive weight, deterministic from the request id (FNV-1a of the id
    /// modulo Σw over those regions in name order); weight-0 regions only
    /// when no positive-weight region is eligible, in score order.
    Weighted {
        /// Region name → weight.
        weights: BTreeMap<String, u32>,
    },
    /// The listed order.
    Failover {
        /// Region names, first choice first.
        order: Vec<String>,
    },
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        RoutingPolicy::Score {
            latency_weight: DEFAULT_LATENCY_WEIGHT,
            capacity_weight: DEFAULT_CAPACITY_WEIGHT,
            preferred_bonus: DEFAULT_PREFERRED_BONUS,
        }
    }
}

impl RoutingPolicy {
    /// The policy's `type` name.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            RoutingPolicy::Score { .. } => "score",
            RoutingPolicy::Latency => "latency",
            RoutingPolicy::Geolocation { .. } => "geolocation",
            RoutingPolicy::Weighted { .. } => "weighted",
            RoutingPolicy::Failover { .. } => "failover",
        }
    }
}

/// Checks a routing policy against the known region names; every problem
/// at once, each naming its field (`map.DE[0]`, `map.default`,
/// `weights.mars-1`, `order[1]`, `latency_weight`).
pub fn validate_routing_policy(
    policy: &RoutingPolicy,
    known_regions: &[&str],
) -> Result<(), Violations> {
    let mut v = Violations::default();
    let known = |v: &mut Violations, field: &str, name: &str| {
        if !known_regions.contains(&name) {
            v.push(field, "must name a known region");
        }
    };
    match policy {
        RoutingPolicy::Score {
            latency_weight,
            capacity_weight,
            preferred_bonus,
        } => {
            v.check_f64("latency_weight", *latency_weight, 0.0, 1.0);
            v.check_f64("capacity_weight", *capacity_weight, 0.0, 1.0);
            v.check_f64("preferred_bonus", *preferred_bonus, 0.0, 100.0);
        }
        RoutingPolicy::Latency => {}
        RoutingPolicy::Geolocation { map } => {
            if !map.contains_key("default") {
                v.push("map.default", "is required");
            }
            for (country, regions) in map {
                if regions.is_empty() {
                    v.push(format!("map.{country}"), "must not be empty");
                }
                for (i, r) in regions.iter().enumerate() {
                    known(&mut v, &format!("map.{country}[{i}]"), r);
                }
            }
        }
        RoutingPolicy::Weighted { weights } => {
            if weights.is_empty() {
                v.push("weights", "must not be empty");
            }
            for r in weights.keys() {
                known(&mut v, &format!("weights.{r}"), r);
            }
        }
        RoutingPolicy::Failover { order } => {
            if order.is_empty() {
                v.push("order", "must not be empty");
            }
            for (i, r) in order.iter().enumerate() {
                known(&mut v, &format!("order[{i}]"), r);
                if order[..i].contains(r) {
                    v.push(format!("order[{i}]"), "must not repeat a region");
                }
            }
        }
    }
    v.into_result(())
}

/// One of the tenant's pools in a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolCapacity {
    /// Pool id or name.
    pub pool: String,
    /// Agent type the pool runs.
    pub agent_type: String,
    /// Instances it can still add or take work on (max − in use).
    pub spare: u32,
    /// Maximum instances.
    pub max: u32,
}

/// What routing reads about one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionView {
    /// Region name.
    pub name: String,
    /// Jurisdiction (e.g. `eu`).
    pub jurisdiction: String,
    /// Current scaling mode.
    pub mode: ScalingMode,
    /// Observed latencies to the region in ms, oldest first.
    #[serde(default)]
    pub latency_samples_ms: Vec<u32>,
    /// The tenant's pools in the region (other agent types are ignored).
    #[serde(default)]
    pub pools: Vec<PoolCapacity>,
    /// The region is ejected for the tenant until this time (Unix ms).
    #[serde(default)]
    pub ejected_until_ms: Option<i64>,
}

/// Everything a routing decision depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteInput {
    /// Tenant asking.
    pub tenant_id: String,
    /// The tenant's region policy.
    pub region_policy: RegionPolicy,
    /// The tenant's routing policy.
    pub routing_policy: RoutingPolicy,
    /// Workload type (compliance key).
    pub workload_type: String,
    /// Agent type that must have spare capacity.
    pub agent_type: String,
    /// Preferred region names, first preferred first.
    #[serde(default)]
    pub preferred_regions: Vec<String>,
    /// Client country code, for `geolocation`.
    #[serde(default)]
    pub client_country: Option<String>,
    /// Request id (drives `weighted`).
    pub request_id: String,
    /// Decision time (Unix ms).
    pub now_ms: i64,
    /// Every known region.
    pub regions: Vec<RegionView>,
}

/// Why a region was not eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ExcludedBy {
    /// Fails the tenant's region policy.
    NonCompliant,
    /// The region is frozen.
    Frozen,
    /// Ejected for the tenant after failures.
    Ejected {
        /// Until when.
        until_ms: i64,
    },
    /// No pool of the agent type with spare capacity.
    NoSpareCapacity,
}

impl ExcludedBy {
    /// Short snake_case label.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            ExcludedBy::NonCompliant => "non_compliant",
            ExcludedBy::Frozen => "frozen",
            ExcludedBy::Ejected { .. } => "ejected",
            ExcludedBy::NoSpareCapacity => "no_spare_capacity",
        }
    }
}

/// One region as the decision saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Region name.
    pub region: String,
    /// Passed the compliance filter.
    pub compliant: bool,
    /// Could take the work.
    pub eligible: bool,
    /// Why not, when not eligible.
    pub excluded_by: Option<ExcludedBy>,
    /// Score (compliant regions only).
    pub score: Option<f64>,
}

/// A routing decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use]
pub struct RouteDecision {
    /// Chosen region name.
    pub selected_region: String,
    /// Why, in words.
    pub reason: String,
    /// The chosen region's score.
    pub score: f64,
    /// Mean latency (ms) used for the chosen region's score.
    pub latency_ms: f64,
    /// Capacity score of the chosen region.
    pub capacity_score: f64,
    /// Policy type that decided.
    pub policy: String,
    /// Every region, in name order.
    pub candidates: Vec<Candidate>,
}

/// Why no region was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RouteError {
    /// The compliance filter left no region.
    #[error("no region is compliant with the tenant's region policy for this workload")]
    NoCompliantRegion {
        /// Every region, in name order.
        candidates: Vec<Candidate>,
    },
    /// Compliant regions exist but none can take the work.
    #[error("no compliant region can take the work (frozen, ejected or without spare capacity)")]
    NoAvailableRegion {
        /// Every region, in name order.
        candidates: Vec<Candidate>,
    },
}

impl RouteError {
    /// Stable problem code (`no_compliant_region`, `no_available_region`).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            RouteError::NoCompliantRegion { .. } => "no_compliant_region",
            RouteError::NoAvailableRegion { .. } => "no_available_region",
        }
    }
}

/// Checks a route request's own fields before routing; every problem at
/// once, each naming its field (`workload_type`, `agent_type`,
/// `request_id`, `preferred_regions[1]`, `client_country`). Preferred
/// regions must be among `input.regions`.
pub fn validate_route_input(input: &RouteInput) -> Result<(), Violations> {
    let mut v = Violations::default();
    v.check_name("tenant_id", &input.tenant_id);
    v.check_name("workload_type", &input.workload_type);
    v.check_name("agent_type", &input.agent_type);
    v.check_text("request_id", &input.request_id, 128);
    for (i, p) in input.preferred_regions.iter().enumerate() {
        if !input.regions.iter().any(|r| r.name == *p) {
            v.push(
                format!("preferred_regions[{i}]"),
                "must name a known region",
            );
        }
    }
    if let Some(c) = &input.client_country {
        let ok = !c.is_empty()
            && c.len() <= 16
            && c.split('-')
                .all(|part| !part.is_empty() && part.chars().all(|ch| ch.is_ascii_alphanumeric()));
        if !ok {
            v.push(
                "client_country",
                "must be a country code such as DE or US-CA",
            );
        }
    }
    v.into_result(())
}

/// Mean of the last [`LATENCY_SAMPLES`] samples, [`NO_LATENCY_MS`] when none.
#[must_use]
pub fn mean_latency_ms(samples: &[u32]) -> f64 {
    let tail = &samples[samples.len().saturating_sub(LATENCY_SAMPLES)..];
    if tail.is_empty() {
        NO_LATENCY_MS
    } else {
        tail.iter().map(|s| f64::from(*s)).sum::<f64>() / tail.len() as f64
    }
}

/// EWMA of all samples (oldest first, seeded with the oldest), `None` when none.
#[must_use]
pub fn ewma_latency_ms(samples: &[u32]) -> Option<f64> {
    let (first, rest) = samples.split_first()?;
    Some(rest.iter().fold(f64::from(*first), |acc, s| {
        EWMA_ALPHA * f64::from(*s) + (1.0 - EWMA_ALPHA) * acc
    }))
}

/// `max(0, 100 − latency_ms ÷ 10)`.
#[must_use]
pub fn latency_score(latency_ms: f64) -> f64 {
    (100.0 - latency_ms / 10.0).max(0.0)
}

/// Displays a number with one decimal using integer formatting (much
/// cheaper than `{:.1}`); non-finite or huge values fall back to `{}`.
struct Tenths(f64);

impl std::fmt::Display for Tenths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        if !v.is_finite() || v.abs() >= 1e15 {
            return write!(f, "{v}");
        }
        let t = (v * 10.0).round() as i64;
        let sign = if t < 0 { "-" } else { "" };
        write!(
            f,
            "{sign}{}.{}",
            t.unsigned_abs() / 10,
            t.unsigned_abs() % 10
        )
    }
}

struct Eval<'a> {
    view: &'a RegionView,
    compliant: bool,
    excluded: Option<ExcludedBy>,
    score: f64,
    latency_ms: f64,
    capacity: f64,
    pref: usize,
    /// Weight under the `weighted` policy, when the policy names the region.
    weight: Option<u32>,
}

impl Eval<'_> {
    fn name(&self) -> &str {
        &self.view.name
    }
}

fn evaluate<'a>(input: &'a RouteInput, view: &'a RegionView) -> Eval<'a> {
    let (lw, cw, bonus) = match input.routing_policy {
        RoutingPolicy::Score {
            latency_weight,
            capacity_weight,
            preferred_bonus,
        } => (latency_weight, capacity_weight, preferred_bonus),
        _ => (
            DEFAULT_LATENCY_WEIGHT,
            DEFAULT_CAPACITY_WEIGHT,
            DEFAULT_PREFERRED_BONUS,
        ),
    };
    let compliant = is_compliant(
        &input.region_policy,
        &view.name,
        &view.jurisdiction,
        &input.workload_type,
    );
    let pools = view
        .pools
        .iter()
        .filter(|p| p.agent_type == input.agent_type);
    let (spare, max) = pools.fold((0u64, 0u64), |(s, m), p| {
        (s + u64::from(p.spare), m + u64::from(p.max))
    });
    let capacity = if max == 0 {
        0.0
    } else {
        (100.0 * spare as f64 / max as f64).clamp(0.0, 100.0)
    };
    let latency_ms = mean_latency_ms(&view.latency_samples_ms);
    let pref = input
        .preferred_regions
        .iter()
        .position(|p| *p == view.name)
        .unwrap_or(usize::MAX);
    let weight = match &input.routing_policy {
        RoutingPolicy::Weighted { weights } => weights.get(&view.name).copied(),
        _ => None,
    };
    let b = if pref == usize::MAX { 0.0 } else { bonus };
    let score = lw * latency_score(latency_ms) + cw * capacity + b;
    let excluded = if !compliant {
        Some(ExcludedBy::NonCompliant)
    } else if view.mode == ScalingMode::Frozen {
        Some(ExcludedBy::Frozen)
    } else if let Some(until_ms) = view.ejected_until_ms.filter(|u| *u > input.now_ms) {
        Some(ExcludedBy::Ejected { until_ms })
    } else if spare == 0 {
        Some(ExcludedBy::NoSpareCapacity)
    } else {
        None
    };
    Eval {
        view,
        compliant,
        excluded,
        score,
        latency_ms,
        capacity,
        pref,
        weight,
    }
}

fn score_cmp(a: &Eval<'_>, b: &Eval<'_>) -> std::cmp::Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.pref.cmp(&b.pref))
        .then(a.name().cmp(b.name()))
}

/// Appends to `out` (once each) the compliant regions named in `names`.
fn push_named<'e, 'a>(out: &mut Vec<&'e Eval<'a>>, evals: &'e [Eval<'a>], names: &[String]) {
    for n in names {
        if let Some(e) = evals.iter().find(|e| e.name() == n.as_str()) {
            if !out.iter().any(|o| std::ptr::eq(*o, e)) {
                out.push(e);
            }
        }
    }
}

/// The waterfall: compliant regions, most wanted first.
fn waterfall<'e, 'a>(input: &RouteInput, compliant: &'e [Eval<'a>]) -> Vec<&'e Eval<'a>> {
    let mut by_score: Vec<&Eval<'a>> = compliant.iter().collect();
    by_score.sort_by(|a, b| score_cmp(a, b));
    let mut out: Vec<&Eval<'a>> = Vec::with_capacity(compliant.len());
    match &input.routing_policy {
        RoutingPolicy::Score { .. } => {}
        RoutingPolicy::Latency => {
            let mut with: Vec<(&Eval<'a>, f64)> = by_score
                .iter()
                .filter_map(|e| ewma_latency_ms(&e.view.latency_samples_ms).map(|l| (*e, l)))
                .collect();
            // stable sort keeps score order among equal latencies
            with.sort_by(|a, b| a.1.total_cmp(&b.1));
            out.extend(with.into_iter().map(|(e, _)| e));
        }
        RoutingPolicy::Geolocation { map } => {
            let mut key = input.client_country.clone().unwrap_or_default();
            loop {
                if key.is_empty() {
                    break;
                }
                if let Some((_, list)) = map.iter().find(|(k, _)| k.eq_ignore_ascii_case(&key)) {
                    push_named(&mut out, compliant, list);
                    break;
                }
                match key.rfind('-') {
                    Some(i) => key.truncate(i),
                    None => break,
                }
            }
            if let Some(list) = map.get("default") {
                push_named(&mut out, compliant, list);
            }
        }
        RoutingPolicy::Weighted { .. } => {
            let positive = compliant
                .iter()
                .filter(|e| e.excluded.is_none())
                .filter_map(|e| e.weight.filter(|w| *w > 0).map(|w| (e, u64::from(w))));
            let total: u64 = positive.clone().map(|(_, w)| w).sum();
            if total > 0 {
                let mut ticket = fnv1a64(input.request_id.as_bytes()) % total;
                for (e, w) in positive {
                    if ticket < w {
                        out.push(e);
                        break;
                    }
                    ticket -= w;
                }
            }
            // then every named region, positive weights first, in score order
            for zero in [false, true] {
                for e in &by_score {
                    if e.weight.is_some_and(|w| (w == 0) == zero)
                        && !out.iter().any(|o| std::ptr::eq(*o, *e))
                    {
                        out.push(e);
                    }
                }
            }
        }
        RoutingPolicy::Failover { order } => push_named(&mut out, compliant, order),
    }
    // every reference points into `compliant`, so identity is address equality
    for e in by_score {
        if !out.iter().any(|o| std::ptr::eq(*o, e)) {
            out.push(e);
        }
    }
    out
}

/// Routes a workload (see the module doc). Pure and deterministic: the same
/// input always gives the same answer.
pub fn route(input: &RouteInput) -> Result<RouteDecision, RouteError> {
    let mut evals: Vec<Eval<'_>> = input.regions.iter().map(|v| evaluate(input, v)).collect();
    evals.sort_by(|a, b| a.name().cmp(b.name()));
    evals.dedup_by(|a, b| a.name() == b.name());
    let candidates: Vec<Candidate> = evals
        .iter()
        .map(|e| Candidate {
            region: e.view.name.clone(),
            compliant: e.compliant,
            eligible: e.excluded.is_none(),
            excluded_by: e.excluded,
            score: e.compliant.then_some(e.score),
        })
        .collect();
    let compliant: Vec<Eval<'_>> = evals.into_iter().filter(|e| e.compliant).collect();
    if compliant.is_empty() {
        return Err(RouteError::NoCompliantRegion { candidates });
    }
    let order = waterfall(input, &compliant);
    let Some(pos) = order.iter().position(|e| e.excluded.is_none()) else {
        return Err(RouteError::NoAvailableRegion { candidates });
    };
    let chosen = order[pos];
    let mut reason = String::with_capacity(160);
    // `write!` into a String cannot fail; numbers go through `Tenths`
    // (integer formatting), which halves the cost of a decision.
    let _ = write!(
        reason,
        "{} policy: {} is choice {} of {} compliant regions (score {}, latency {} ms, capacity {})",
        input.routing_policy.kind(),
        chosen.name(),
        pos + 1,
        order.len(),
        Tenths(chosen.score),
        Tenths(chosen.latency_ms),
        Tenths(chosen.capacity)
    );
    for (k, e) in order[..pos].iter().enumerate() {
        let sep = if k == 0 { "; spilled past " } else { ", " };
        let why = e.excluded.map_or("", |x| x.as_str());
        let _ = write!(reason, "{sep}{} ({why})", e.name());
    }
    Ok(RouteDecision {
        selected_region: chosen.view.name.clone(),
        reason,
        score: chosen.score,
        latency_ms: chosen.latency_ms,
        capacity_score: chosen.capacity,
        policy: input.routing_policy.kind().to_string(),
        candidates,
    })
}

/// Outlier-ejection bookkeeping for one (tenant, region).
///
/// [`EJECT_AFTER_FAILURES`] consecutive failures eject the region for
/// `min(EJECTION_BASE_MS × ejections, EJECTION_MAX_MS)` (30 s, 60 s, ...,
/// at most 300 s), counting this ejection; a success resets the consecutive
/// count (the ejection count is kept, so a flapping region stays out longer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ejection {
    /// Failures since the last success or ejection.
    pub consecutive_failures: u32,
    /// Ejections so far.
    pub ejections: u32,
    /// Ejected until (Unix ms), if ever ejected.
    pub ejected_until_ms: Option<i64>,
}

impl Ejection {
    /// The state after one outcome at `now_ms`. Idempotent only per outcome:
    /// record each outcome once.
    #[must_use]
    pub fn record(self, success: bool, now_ms: i64) -> Ejection {
        if success {
            return Ejection {
                consecutive_failures: 0,
                ..self
            };
        }
        let failures = self.consecutive_failures + 1;
        if failures < EJECT_AFTER_FAILURES {
            return Ejection {
                consecutive_failures: failures,
                ..self
            };
        }
        let ejections = self.ejections.saturating_add(1);
        let ms = (EJECTION_BASE_MS * i64::from(ejections)).min(EJECTION_MAX_MS);
        Ejection {
            consecutive_failures: 0,
            ejections,
            ejected_until_ms: Some(now_ms.saturating_add(ms)),
        }
    }

    /// True while the region is ejected.
    #[must_use]
    pub fn is_ejected(&self, now_ms: i64) -> bool {
        self.ejected_until_ms.is_some_and(|u| u > now_ms)
    }
}

#[cfg(test)]
mod tests;
