//! Tenant provider budgets (phase 66 "AI Provider Budgets"): the rules of
//! recording usage in a provider's own unit (tokens, or characters for
//! ElevenLabs), the UTC calendar month a usage belongs to, the monthly
//! projection and its cost, the usage ledger check, and the 80 % / 90 %
//! status of the seed.
//!
//! Everything is checked `i64` arithmetic on whole units; time is always an
//! argument (Unix milliseconds). A tenant's allocation of a provider is its
//! override when one is set, else [`tier_allocation`] of the tenant's tier.
//!
//! # Soft and hard limits
//!
//! The seed's allocations are planning figures (utilization bars, warning at
//! 80 %, critical at 90 %, `raise_token_budgets` / `lower_token_budgets`
//! recommendations); it never says a provider call is refused. Usage is
//! usually reported *after* the provider answered, and refusing to record it
//! would make the figures wrong. So by default a provider budget is **soft**:
//! every valid usage is recorded and an over-allocation is reported
//! (`over_allocation`, status `critical`). A provider budget may be made
//! **hard** (`hard_limit`): then recording is an atomic check-and-record that
//! refuses ([`UsageError::OverAllocation`]) any usage that would take the
//! month's usage above the allocation, so callers can use it to authorize a
//! call before making it, and usage never exceeds the allocation.

use serde::{Deserialize, Serialize};

use super::calendar::{month_bounds, month_key, MIN_PROJECTION_ELAPSED_MS};
use super::money::{ceil_div, sat, BudgetError, Cents};
use crate::validate::Violations;

/// Largest usage accepted in one record (a trillion units): larger inputs are typos.
pub const MAX_USAGE_UNITS: i64 = 1_000_000_000_000;

/// Largest allocation accepted (a quadrillion units a month); sums of records
/// up to it stay far from `i64::MAX`.
pub const MAX_ALLOCATION_UNITS: i64 = 1_000_000_000_000_000;

/// Largest price accepted, cents per million units (a million dollars).
pub const MAX_PRICE_CENTS_PER_MILLION: i64 = 100_000_000;

/// The tier of a tenant that never chose one.
pub const DEFAULT_TIER: Tier = Tier::SoftLaunch;

/// Utilization (percent of the allocation) from which a provider is `warning` (seed: 80 %).
pub const WARNING_PCT: f64 = 80.0;

/// Utilization from which a provider is `critical` (seed: 90 %).
pub const CRITICAL_PCT: f64 = 90.0;

/// Scaling tiers of phase 66.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// 1-5 clients.
    SoftLaunch,
    /// 5-50 clients.
    HardLaunch,
    /// 50-100 clients.
    Growth,
}

/// AI providers of phase 66.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Claude (primary AI), tokens.
    Claude,
    /// Gemini (Google tasks), tokens.
    Gemini,
    /// OpenAI (specialized), tokens.
    Openai,
    /// ElevenLabs (voice), characters.
    Elevenlabs,
    /// Perplexity (search), tokens.
    Perplexity,
}

impl Provider {
    /// Every provider, in the seed's order.
    pub const ALL: [Provider; 5] = [
        Provider::Claude,
        Provider::Gemini,
        Provider::Openai,
        Provider::Elevenlabs,
        Provider::Perplexity,
    ];

    /// The unit its budget is counted in.
    pub fn unit(self) -> &'static str {
        match self {
            Provider::Elevenlabs => "chars",
            _ => "tokens",
        }
    }
}

/// The phase 66 monthly allocation of `provider` at `tier`, in its unit.
#[must_use]
pub fn tier_allocation(tier: Tier, provider: Provider) -> i64 {
    use Provider::*;
    use Tier::*;
    match (provider, tier) {
        (Claude, SoftLaunch) => 50_000,
        (Claude, HardLaunch) => 300_000,
        (Claude, Growth) => 1_000_000,
        (Gemini, SoftLaunch) => 20_000,
        (Gemini, HardLaunch) => 100_000,
        (Gemini, Growth) => 500_000,
        (Openai, SoftLaunch) => 30_000,
        (Openai, HardLaunch) => 150_000,
        (Openai, Growth) => 600_000,
        (Elevenlabs, SoftLaunch) => 10_000,
        (Elevenlabs, HardLaunch) => 50_000,
        (Elevenlabs, Growth) => 200_000,
        (Perplexity, SoftLaunch) => 5_000,
        (Perplexity, HardLaunch) => 25_000,
        (Perplexity, Growth) => 100_000,
    }
}

impl Tier {
    /// Every tier, smallest first.
    pub const ALL: [Tier; 3] = [Tier::SoftLaunch, Tier::HardLaunch, Tier::Growth];

    /// The wire and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::SoftLaunch => "soft_launch",
            Tier::HardLaunch => "hard_launch",
            Tier::Growth => "growth",
        }
    }

    /// Parses a wire or stored name.
    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl Provider {
    /// The wire and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Claude => "claude",
            Provider::Gemini => "gemini",
            Provider::Openai => "openai",
            Provider::Elevenlabs => "elevenlabs",
            Provider::Perplexity => "perplexity",
        }
    }

    /// Parses a wire or stored name.
    pub fn parse(s: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The allocation in force: the override when set, else the tier default.
#[must_use]
pub fn effective_allocation(
    tier: Tier,
    provider: Provider,
    allocation_override: Option<i64>,
) -> i64 {
    allocation_override.unwrap_or_else(|| tier_allocation(tier, provider))
}

/// Checks a usage amount: a whole number of units in `1..=MAX_USAGE_UNITS`.
pub fn check_units(v: &mut Violations, field: &str, units: i64) {
    if units <= 0 {
        v.push(field, "must be a positive whole number of units (>= 1)");
    } else if units > MAX_USAGE_UNITS {
        v.push(
            field,
            format!("must be at most {MAX_USAGE_UNITS} units (overflow guard)"),
        );
    }
}

/// Checks an allocation override: `0..=MAX_ALLOCATION_UNITS` (0 disables a
/// hard-limited provider).
pub fn check_allocation(v: &mut Violations, field: &str, units: i64) {
    v.check_i64(field, units, 0, MAX_ALLOCATION_UNITS);
}

/// Checks a price: `0..=MAX_PRICE_CENTS_PER_MILLION` cents per million units.
pub fn check_price(v: &mut Violations, field: &str, cents: i64) {
    v.check_i64(field, cents, 0, MAX_PRICE_CENTS_PER_MILLION);
}

/// Why a usage was refused; nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The amount is outside `1..=MAX_USAGE_UNITS`.
    #[error("usage of {0} units is out of range (1..={MAX_USAGE_UNITS})")]
    BadUnits(i64),
    /// A hard-limited provider budget does not cover the usage.
    #[error("provider budget exceeded: {requested} {unit} requested, {used} of {allocation} {unit} used this month")]
    OverAllocation {
        /// Requested units.
        requested: i64,
        /// Used this month before the request.
        used: i64,
        /// The allocation in force.
        allocation: i64,
        /// The provider's unit.
        unit: &'static str,
    },
    /// The month's usage would overflow.
    #[error("the month's usage would overflow")]
    Overflow,
}

/// The usage of the month a record at `now_ms` lands in, given the stored
/// counter (`stored_used` units in month `stored_month`): the stored figure
/// when the month is the same, else 0 (a new month starts from nothing). A
/// clock that went back keeps counting in the stored (later) month.
#[must_use]
pub fn usage_in_month(stored_month: i64, stored_used: i64, now_ms: i64) -> (i64, i64) {
    let month = month_key(now_ms).max(stored_month);
    if month == stored_month {
        (month, stored_used)
    } else {
        (month, 0)
    }
}

/// Records `units` on a month's usage `used`: the new usage, or the reason
/// it is refused (nothing changes). With `hard_limit` the result never
/// exceeds `allocation`.
pub fn record_usage(
    used: i64,
    units: i64,
    allocation: i64,
    hard_limit: bool,
    provider: Provider,
) -> Result<i64, UsageError> {
    if !(1..=MAX_USAGE_UNITS).contains(&units) {
        return Err(UsageError::BadUnits(units));
    }
    let after = used.checked_add(units).ok_or(UsageError::Overflow)?;
    if hard_limit && after > allocation {
        return Err(UsageError::OverAllocation {
            requested: units,
            used,
            allocation,
            unit: provider.unit(),
        });
    }
    Ok(after)
}

/// The seed's capacity status of a provider budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageStatus {
    /// Below 80 % of the allocation.
    Healthy,
    /// 80 % to below 90 %.
    Warning,
    /// 90 % or more (including over the allocation, and any use of a zero allocation).
    Critical,
}

/// The status of `used` against `allocation` (exact integer comparison).
#[must_use]
pub fn usage_status(used: i64, allocation: i64) -> UsageStatus {
    let (u, a) = (i128::from(used.max(0)), i128::from(allocation.max(0)));
    if a == 0 {
        return if u == 0 {
            UsageStatus::Healthy
        } else {
            UsageStatus::Critical
        };
    }
    if u * 100 >= a * 90 {
        UsageStatus::Critical
    } else if u * 100 >= a * 80 {
        UsageStatus::Warning
    } else {
        UsageStatus::Healthy
    }
}

/// A provider budget's month so far and its projection to the month's end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderMonth {
    /// Provider.
    pub provider: Provider,
    /// Unit of every figure in units.
    pub unit: &'static str,
    /// Allocation in force this month.
    pub allocation_units: i64,
    /// Used so far this month.
    pub used_units: i64,
    /// Allocation minus usage, never below zero.
    pub remaining_units: i64,
    /// Percent of the allocation used (0 when the allocation is 0 and nothing was used).
    pub utilization_pct: f64,
    /// 80 % / 90 % status of the usage so far.
    pub status: UsageStatus,
    /// Usage at the month's end if the month goes on at its rate so far
    /// (linear, rounded up; saturates at `i64::MAX`).
    pub projected_units: i64,
    /// Status of the projection.
    pub projected_status: UsageStatus,
    /// True when the projection exceeds the allocation.
    pub over_budget: bool,
    /// When the allocation runs out at the current rate (already passed when
    /// the usage reached it; `None` when it lasts the month or nothing was used).
    pub exhausted_at_ms: Option<i64>,
    /// Price, cents per million units (`None`: not priced).
    pub price_cents_per_million: Option<Cents>,
    /// Cost of the usage so far, cents rounded up (`None` when not priced).
    pub cost_so_far_cents: Option<Cents>,
    /// Projected cost of the month, cents rounded up (`None` when not priced).
    pub projected_cost_cents: Option<Cents>,
}

/// Cost in cents (rounded up) of `units` at `price` cents per million.
#[must_use]
pub fn cost_cents(units: i64, price_cents_per_million: i64) -> Cents {
    sat(ceil_div(
        i128::from(units.max(0)) * i128::from(price_cents_per_million.max(0)),
        1_000_000,
    ))
}

/// Projects `used` units of the month containing `now_ms` to the whole
/// month, linearly from the month's start (at least
/// [`MIN_PROJECTION_ELAPSED_MS`] elapsed), and prices it. Negative inputs
/// count as 0; results saturate instead of overflowing.
#[must_use]
pub fn project_month(
    provider: Provider,
    allocation: i64,
    used: i64,
    price_cents_per_million: Option<Cents>,
    now_ms: i64,
) -> ProviderMonth {
    let (allocation, used) = (allocation.max(0), used.max(0));
    let (start, end) = month_bounds(now_ms);
    let month = i128::from(end - start);
    let elapsed = i128::from((now_ms - start).clamp(MIN_PROJECTION_ELAPSED_MS, end - start));
    let projected = sat(ceil_div(i128::from(used) * month, elapsed));
    let exhausted_at_ms = if used == 0 {
        None
    } else {
        // The instant the linear rate used/elapsed reaches the allocation.
        let t = i128::from(start) + i128::from(allocation) * elapsed / i128::from(used);
        (t < i128::from(end)).then(|| sat(t))
    };
    ProviderMonth {
        provider,
        unit: provider.unit(),
        allocation_units: allocation,
        used_units: used,
        remaining_units: (allocation - used).max(0),
        utilization_pct: if allocation == 0 {
            if used == 0 {
                0.0
            } else {
                100.0
            }
        } else {
            used as f64 / allocation as f64 * 100.0
        },
        status: usage_status(used, allocation),
        projected_units: projected,
        projected_status: usage_status(projected, allocation),
        over_budget: projected > allocation,
        exhausted_at_ms,
        price_cents_per_million,
        cost_so_far_cents: price_cents_per_million.map(|p| cost_cents(used, p)),
        projected_cost_cents: price_cents_per_million.map(|p| cost_cents(projected, p)),
    }
}

/// The month's cost projection over a tenant's providers (phase 66
/// `cost_projection`): units of different providers are not added, cents are.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostProjection {
    /// Cost so far this month of the priced providers, cents.
    pub cost_so_far_cents: Cents,
    /// Projected cost of the month of the priced providers, cents.
    pub projected_cost_cents: Cents,
    /// Providers without a price (not in the sums).
    pub unpriced: Vec<Provider>,
}

/// Sums the priced providers' costs (saturating).
#[must_use]
pub fn cost_projection(months: &[ProviderMonth]) -> CostProjection {
    let mut out = CostProjection {
        cost_so_far_cents: 0,
        projected_cost_cents: 0,
        unpriced: Vec::new(),
    };
    for m in months {
        match (m.cost_so_far_cents, m.projected_cost_cents) {
            (Some(c), Some(p)) => {
                out.cost_so_far_cents = out.cost_so_far_cents.saturating_add(c);
                out.projected_cost_cents = out.projected_cost_cents.saturating_add(p);
            }
            _ => out.unpriced.push(m.provider),
        }
    }
    out
}

/// One stored usage record, as the ledger check needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEntry {
    /// Position in the (tenant, provider) ledger: 1, 2, 3, ...
    pub seq: i64,
    /// Month the usage was counted in ([`month_key`]).
    pub month_key: i64,
    /// Units recorded.
    pub units: i64,
    /// The month's usage after the record.
    pub used_after: i64,
    /// The allocation enforced when the budget was hard-limited, else `None`.
    pub limit_units: Option<i64>,
}

/// A broken usage-ledger invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageViolation {
    /// The entry's sequence number (0 for the stored counter).
    pub seq: i64,
    /// What is wrong.
    pub problem: String,
}

/// The result of checking one provider's usage ledger against its counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// True when no invariant is broken.
    pub ok: bool,
    /// Entries replayed.
    pub entries: u64,
    /// Month of the last entry (the counter's month), `None` when empty.
    pub month_key: Option<i64>,
    /// That month's usage recomputed from the ledger.
    pub recomputed_used: i64,
    /// The stored counter.
    pub stored_used: i64,
    /// Every broken invariant (at most [`crate::budget::MAX_REPORTED_VIOLATIONS`]).
    pub violations: Vec<UsageViolation>,
}

/// Replays a provider's usage ledger (in `seq` order) and checks: contiguous
/// sequence numbers from 1, months never going back, each record's units in
/// range, `used_after` equal to the running usage of its month, hard limits
/// respected, and the stored counter (`stored_month`, `stored_used`) equal to
/// the last month's usage.
#[must_use]
pub fn check_usage_ledger(
    entries: &[UsageEntry],
    stored_month: i64,
    stored_used: i64,
) -> UsageReport {
    let mut violations = Vec::new();
    let mut bad = |seq: i64, problem: String| {
        if violations.len() < crate::budget::MAX_REPORTED_VIOLATIONS {
            violations.push(UsageViolation { seq, problem });
        }
    };
    let mut month: Option<i64> = None;
    let mut running: i64 = 0;
    for (i, e) in entries.iter().enumerate() {
        let expected = i as i64 + 1;
        if e.seq != expected {
            bad(
                e.seq,
                format!("sequence gap: expected {expected}, found {}", e.seq),
            );
        }
        match month {
            Some(m) if e.month_key < m => bad(
                e.seq,
                format!("month {} after month {m}: months went back", e.month_key),
            ),
            Some(m) if e.month_key == m => {}
            _ => running = 0,
        }
        month = Some(month.map_or(e.month_key, |m| m.max(e.month_key)));
        if !(1..=MAX_USAGE_UNITS).contains(&e.units) {
            bad(e.seq, format!("units {} out of range", e.units));
        }
        running = running.saturating_add(e.units);
        if e.used_after != running {
            bad(
                e.seq,
                format!(
                    "used_after {} but the month's running usage is {running}",
                    e.used_after
                ),
            );
        }
        if let Some(l) = e.limit_units {
            if e.used_after > l {
                bad(
                    e.seq,
                    format!("used_after {} exceeds the hard limit {l}", e.used_after),
                );
            }
        }
    }
    let recomputed = if month == Some(stored_month) || month.is_none() {
        running
    } else {
        0
    };
    if month.is_some() && month != Some(stored_month) {
        bad(
            0,
            format!(
                "stored month {stored_month} differs from the ledger's last month {}",
                month.unwrap_or_default()
            ),
        );
    }
    if recomputed != stored_used {
        bad(
            0,
            format!("stored usage {stored_used} differs from the ledger's {recomputed}"),
        );
    }
    UsageReport {
        ok: violations.is_empty(),
        entries: entries.len() as u64,
        month_key: month,
        recomputed_used: recomputed,
        stored_used,
        violations,
    }
}

/// A provider's usage so far this month and its projection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderProjection {
    /// Provider.
    pub provider: Provider,
    /// Unit of the figures.
    pub unit: &'static str,
    /// Monthly allocation.
    pub allocation: i64,
    /// Used so far this month.
    pub used: i64,
    /// Usage projected to the end of the month at the current rate (linear).
    pub projected: i64,
    /// Percent of the allocation used.
    pub utilization_pct: f64,
    /// Projected cost of the month in cents (`projected × price / 1000`).
    pub projected_cost_cents: Cents,
    /// True when the projection exceeds the allocation.
    pub over_budget: bool,
}

/// Projects `used` units at `elapsed_ms` into a month of `month_ms` to the
/// whole month, linearly, with integer rounding up; `price_cents_per_1k`
/// prices 1,000 units. Errors on negative input or overflow.
pub fn project_provider(
    provider: Provider,
    allocation: i64,
    used: i64,
    elapsed_ms: i64,
    month_ms: i64,
    price_cents_per_1k: Cents,
) -> Result<ProviderProjection, BudgetError> {
    if allocation < 0 || used < 0 || price_cents_per_1k < 0 || month_ms <= 0 {
        return Err(BudgetError::BadAmount(used.min(allocation)));
    }
    let elapsed = elapsed_ms.clamp(1, month_ms);
    let projected =
        (i128::from(used) * i128::from(month_ms) + i128::from(elapsed) - 1) / i128::from(elapsed);
    let projected = i64::try_from(projected).map_err(|_| BudgetError::Overflow)?;
    let cost = (i128::from(projected) * i128::from(price_cents_per_1k) + 999) / 1000;
    let cost = i64::try_from(cost).map_err(|_| BudgetError::Overflow)?;
    Ok(ProviderProjection {
        provider,
        unit: provider.unit(),
        allocation,
        used,
        projected,
        utilization_pct: if allocation == 0 {
            0.0
        } else {
            used as f64 / allocation as f64 * 100.0
        },
        projected_cost_cents: cost,
        over_budget: projected > allocation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::calendar::{days_from_civil, DAY_MS};
    use proptest::prelude::*;

    /// 2024-02-10T00:00:00Z (February 2024 has 29 days).
    const FEB10: i64 = 1_707_523_200_000;

    #[test]
    fn names_round_trip_and_match_serde() {
        for t in Tier::ALL {
            assert_eq!(Tier::parse(t.as_str()), Some(t));
            assert_eq!(serde_json_name(&t), t.as_str());
        }
        for p in Provider::ALL {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
            assert_eq!(serde_json_name(&p), p.as_str());
        }
        assert_eq!(Provider::parse("Claude"), None);
        assert_eq!(Tier::parse(""), None);
    }

    fn serde_json_name<T: Serialize>(v: &T) -> String {
        serde_json::to_value(v)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn defaults_come_from_the_tier_and_an_override_wins() {
        assert_eq!(
            effective_allocation(Tier::Growth, Provider::Claude, None),
            1_000_000
        );
        assert_eq!(
            effective_allocation(Tier::SoftLaunch, Provider::Perplexity, None),
            5_000
        );
        assert_eq!(
            effective_allocation(Tier::Growth, Provider::Claude, Some(7)),
            7
        );
    }

    #[test]
    fn usage_rules_table() {
        use UsageError::*;
        let p = Provider::Claude;
        // (used, units, allocation, hard) -> result
        type Case = (i64, i64, i64, bool, Result<i64, UsageError>);
        let cases: &[Case] = &[
            (0, 1, 10, true, Ok(1)),
            (9, 1, 10, true, Ok(10)),
            (
                10,
                1,
                10,
                true,
                Err(OverAllocation {
                    requested: 1,
                    used: 10,
                    allocation: 10,
                    unit: "tokens",
                }),
            ),
            (10, 1, 10, false, Ok(11)),
            (0, 0, 10, false, Err(BadUnits(0))),
            (0, -3, 10, false, Err(BadUnits(-3))),
            (
                0,
                MAX_USAGE_UNITS + 1,
                i64::MAX,
                false,
                Err(BadUnits(MAX_USAGE_UNITS + 1)),
            ),
            (i64::MAX, 1, i64::MAX, false, Err(Overflow)),
            (
                0,
                1,
                0,
                true,
                Err(OverAllocation {
                    requested: 1,
                    used: 0,
                    allocation: 0,
                    unit: "tokens",
                }),
            ),
        ];
        for (used, units, alloc, hard, want) in cases {
            assert_eq!(
                &record_usage(*used, *units, *alloc, *hard, p),
                want,
                "{used} + {units} of {alloc} (hard {hard})"
            );
        }
        let e = record_usage(5, 6, 10, true, Provider::Elevenlabs).unwrap_err();
        assert_eq!(
            e.to_string(),
            "provider budget exceeded: 6 chars requested, 5 of 10 chars used this month"
        );
    }

    #[test]
    fn status_thresholds_are_the_seeds() {
        assert_eq!(usage_status(79, 100), UsageStatus::Healthy);
        assert_eq!(usage_status(80, 100), UsageStatus::Warning);
        assert_eq!(usage_status(89, 100), UsageStatus::Warning);
        assert_eq!(usage_status(90, 100), UsageStatus::Critical);
        assert_eq!(usage_status(500, 100), UsageStatus::Critical);
        assert_eq!(usage_status(0, 0), UsageStatus::Healthy);
        assert_eq!(usage_status(1, 0), UsageStatus::Critical);
        assert_eq!(usage_status(i64::MAX, i64::MAX), UsageStatus::Critical);
    }

    #[test]
    fn a_new_month_starts_from_zero_and_the_clock_never_goes_back() {
        let feb = month_key(FEB10);
        let mar = month_key(FEB10 + 30 * DAY_MS);
        assert_eq!(usage_in_month(feb, 500, FEB10), (feb, 500));
        assert_eq!(usage_in_month(feb, 500, FEB10 + 30 * DAY_MS), (mar, 0));
        assert_eq!(usage_in_month(mar, 7, FEB10), (mar, 7), "clock went back");
    }

    #[test]
    fn projection_example() {
        // Nine days into February 2024 (29 days): 90k tokens → 290k projected.
        let p = project_month(Provider::Claude, 300_000, 90_000, Some(1_500), FEB10);
        assert_eq!(p.projected_units, 290_000);
        assert_eq!(p.remaining_units, 210_000);
        assert!(!p.over_budget);
        assert_eq!(p.status, UsageStatus::Healthy);
        assert_eq!(p.projected_status, UsageStatus::Critical);
        assert_eq!(p.cost_so_far_cents, Some(135));
        assert_eq!(p.projected_cost_cents, Some(435));
        assert_eq!(p.exhausted_at_ms, None, "300k lasts the month");
        // At the same rate a 200k allocation runs out on day 20.
        let p = project_month(Provider::Claude, 200_000, 90_000, None, FEB10);
        assert!(p.over_budget);
        assert_eq!(p.exhausted_at_ms, Some(1_706_745_600_000 + 20 * DAY_MS));
        assert_eq!(p.projected_cost_cents, None);
        // The first hour is extrapolated as one hour.
        let (start, end) = month_bounds(FEB10);
        let p = project_month(Provider::Gemini, 10, 1, None, start);
        assert_eq!(p.projected_units, (end - start) / MIN_PROJECTION_ELAPSED_MS);
        let c = cost_projection(&[
            project_month(Provider::Claude, 1, 1_000_000, Some(300), FEB10),
            project_month(Provider::Gemini, 1, 0, Some(100), FEB10),
            project_month(Provider::Openai, 1, 5, None, FEB10),
        ]);
        assert_eq!(c.cost_so_far_cents, 300);
        assert_eq!(c.unpriced, vec![Provider::Openai]);
    }

    #[test]
    fn ledger_check_replays_months_and_finds_tampering() {
        let e = |seq, month_key, units, used_after, limit_units| UsageEntry {
            seq,
            month_key,
            units,
            used_after,
            limit_units,
        };
        let good = vec![
            e(1, 5, 10, 10, None),
            e(2, 5, 5, 15, Some(20)),
            e(3, 6, 7, 7, Some(7)),
        ];
        let r = check_usage_ledger(&good, 6, 7);
        assert!(r.ok, "{r:?}");
        assert_eq!((r.recomputed_used, r.month_key), (7, Some(6)));
        assert!(check_usage_ledger(&[], 0, 0).ok);
        assert!(!check_usage_ledger(&[], 0, 1).ok);
        assert!(
            !check_usage_ledger(&good, 6, 8).ok,
            "stored counter differs"
        );
        assert!(!check_usage_ledger(&good, 5, 15).ok, "stored month differs");
        let mut t = good.clone();
        t[1].used_after = 16;
        assert!(!check_usage_ledger(&t, 6, 7).ok);
        let mut t = good.clone();
        t[2].limit_units = Some(6);
        assert!(!check_usage_ledger(&t, 6, 7).ok, "hard limit broken");
        let mut t = good.clone();
        t.remove(0);
        assert!(!check_usage_ledger(&t, 6, 7).ok, "gap");
        let mut t = good;
        t[2].month_key = 4;
        assert!(!check_usage_ledger(&t, 4, 7).ok, "month went back");
    }

    proptest! {
        /// Any sequence of records keeps a hard budget within its allocation,
        /// refused records change nothing, and the ledger of the accepted
        /// ones replays to the counter.
        #[test]
        fn hard_budgets_never_exceed_and_the_ledger_replays(
            allocation in 0i64..10_000,
            records in proptest::collection::vec((1i64..3_000, 0i64..3), 0..60),
        ) {
            let mut used = 0;
            let mut month = 0;
            let mut log = Vec::new();
            for (units, month_step) in records {
                let m = month + month_step / 2; // sometimes a new month
                let (m, base) = usage_in_month(month, used, month_start(m));
                match record_usage(base, units, allocation, true, Provider::Openai) {
                    Ok(after) => {
                        prop_assert!(after <= allocation);
                        used = after;
                        month = m;
                        log.push(UsageEntry { seq: log.len() as i64 + 1, month_key: m, units, used_after: after, limit_units: Some(allocation) });
                    }
                    Err(UsageError::OverAllocation { .. }) => prop_assert!(base + units > allocation),
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
            let r = check_usage_ledger(&log, month, used);
            prop_assert!(r.ok, "{r:?}");
        }

        /// The projection is at least the usage, grows with the usage, and
        /// is at most the usage of a whole month at the first hour's rate.
        #[test]
        fn projection_is_monotone_and_bounded(
            used in 0i64..MAX_ALLOCATION_UNITS,
            extra in 0i64..1_000_000,
            offset in 0i64..(31 * DAY_MS),
        ) {
            let now = FEB10 + offset;
            let a = project_month(Provider::Claude, 1_000, used, Some(1), now);
            let b = project_month(Provider::Claude, 1_000, used + extra, Some(1), now);
            prop_assert!(a.projected_units >= used);
            prop_assert!(b.projected_units >= a.projected_units);
            prop_assert!(b.projected_cost_cents >= a.projected_cost_cents);
            prop_assert!(a.projected_units <= used * (31 * 24) + 1);
        }
    }

    /// Unix ms of the start of month key `m` (months since year 0).
    fn month_start(m: i64) -> i64 {
        days_from_civil(m.div_euclid(12), (m.rem_euclid(12) + 1) as u32, 1) * DAY_MS
    }

    #[test]
    fn provider_defaults_and_projection() {
        assert_eq!(tier_allocation(Tier::HardLaunch, Provider::Claude), 300_000);
        assert_eq!(tier_allocation(Tier::Growth, Provider::Elevenlabs), 200_000);
        assert_eq!(Provider::Elevenlabs.unit(), "chars");
        // 10 days into a 30-day month, 100k used → 300k projected.
        let p = project_provider(
            Provider::Claude,
            300_000,
            100_000,
            10 * DAY_MS,
            30 * DAY_MS,
            300,
        )
        .unwrap();
        assert_eq!(p.projected, 300_000);
        assert_eq!(p.projected_cost_cents, 90_000);
        assert!(!p.over_budget);
        assert!(project_provider(Provider::Claude, 1, -1, 1, 1, 1).is_err());
    }
}
