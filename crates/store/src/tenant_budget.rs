//! Tenant provider budgets (phase 66): a tier per tenant, per provider an
//! allocation (the tier's default unless overridden), a price, a soft or hard
//! limit, the month's usage and an append-only usage ledger, on SQLite and on
//! PostgreSQL with several replicas.
//!
//! # How exactness is kept
//!
//! Recording usage is one database transaction: it locks the tenant's
//! `tenant_budgets` row (`SELECT ... FOR UPDATE` on PostgreSQL; on SQLite
//! the transaction begins `IMMEDIATE`, holding the database's single write
//! lock from the start), looks up the idempotency key,
//! applies [`fleetscale_core::provider_budget::record_usage`] with checked
//! arithmetic, appends the ledger row (`provider_usage`, numbered per tenant
//! and provider, with `used_after`), updates the counter and writes the
//! audit entry, then commits. The answer is sent only after the commit, so an
//! acknowledged record is durable. Because the lock serializes a tenant's
//! records across replicas and READ COMMITTED re-reads after the lock is
//! granted, a retry on another replica sees the first request's entry.
//! Setting a tier or a provider's settings takes the same lock, so a hard
//! limit is always checked against the allocation in force.
//!
//! Unlike region budgets there is no group commit here: usage is recorded
//! per provider call, not per job step, and one commit per record keeps the
//! code small. The region-budget writer would be the model if it ever needs to go faster.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use fleetscale_core::budget::{month_key, tier_allocation, Provider, Tier};
use fleetscale_core::provider_budget::{
    check_usage_ledger, cost_projection, effective_allocation, month_bounds, month_label,
    project_month, record_usage, usage_in_month, usage_status, CostProjection, ProviderMonth,
    UsageEntry, UsageError, UsageReport, UsageStatus, DEFAULT_TIER,
};

use crate::sql::{audit, new_id, not_found, paginate};
use crate::{rfc3339, Listed, Page, Result, Store, StoreError};

/// A provider budget of a tenant: its settings, this month's usage and the projection.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderBudget {
    /// The month so far and its projection (allocation in force, usage, cost).
    pub month: ProviderMonth,
    /// The phase 66 allocation of the tenant's tier.
    pub tier_default_units: i64,
    /// The allocation override, `None` when the tier's default applies.
    pub allocation_override_units: Option<i64>,
    /// True when recording refuses usage above the allocation.
    pub hard_limit: bool,
    /// Usage records so far (all months).
    pub entries: i64,
}

/// A tenant's budgets: tier, every provider, and the month's cost projection.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantBudget {
    /// Tenant id.
    pub tenant_id: String,
    /// The tenant's tier (default `soft_launch`).
    pub tier: Tier,
    /// False when the tier is the default, never set.
    pub tier_set: bool,
    /// The month the figures are of, `YYYY-MM` (UTC).
    pub month: String,
    /// First instant of the month.
    pub month_start: String,
    /// First instant of the next month.
    pub month_end: String,
    /// Every provider, in the seed's order.
    pub providers: Vec<ProviderBudget>,
    /// Cost so far and projected, over the priced providers.
    pub cost_projection: CostProjection,
}

/// The settings of one provider budget (a PUT replaces all of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderSettings {
    /// Allocation override in the provider's unit; `None` restores the tier's default.
    pub allocation_units: Option<i64>,
    /// Price in cents per million units; `None` leaves it unpriced.
    pub price_cents_per_million: Option<i64>,
    /// Refuse usage above the allocation.
    pub hard_limit: bool,
}

/// A usage to record.
#[derive(Debug, Clone)]
pub struct UsageRequest {
    /// Tenant charged.
    pub tenant_id: String,
    /// Provider used.
    pub provider: Provider,
    /// Units (tokens or characters), `1..=MAX_USAGE_UNITS`.
    pub units: i64,
    /// Job type, for the breakdown.
    pub job_type: Option<String>,
    /// Idempotency key, unique per tenant: a retry records nothing more.
    pub idempotency_key: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Audit actor.
    pub actor: String,
    /// Time of the record, Unix ms (decides the month).
    pub now_ms: i64,
}

/// The answer to a usage record.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageOutcome {
    /// The ledger entry.
    pub usage_id: String,
    /// Provider.
    pub provider: Provider,
    /// Its unit.
    pub unit: &'static str,
    /// Units recorded.
    pub units: i64,
    /// Month the usage counts in, `YYYY-MM`.
    pub month: String,
    /// The month's usage after this record.
    pub used_after_units: i64,
    /// The allocation in force.
    pub allocation_units: i64,
    /// Allocation minus usage after the record, never below zero.
    pub remaining_units: i64,
    /// True for a hard-limited budget.
    pub hard_limit: bool,
    /// True when the month's usage is above the allocation (soft budgets only).
    pub over_allocation: bool,
    /// 80 % / 90 % status after the record.
    pub status: UsageStatus,
    /// True when an idempotency key matched an earlier record: nothing new was recorded.
    pub replayed: bool,
}

/// One usage ledger entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// Id (UUIDv7).
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Provider name.
    pub provider: String,
    /// Position in the (tenant, provider) ledger.
    pub seq: i64,
    /// Month, `YYYY-MM`.
    pub month: String,
    /// Units recorded.
    pub units: i64,
    /// The month's usage after the record.
    pub used_after_units: i64,
    /// The allocation enforced (hard limit), `None` for a soft budget.
    pub limit_units: Option<i64>,
    /// Job type.
    pub job_type: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Who.
    pub actor: String,
    /// When.
    pub created_at_ms: i64,
}

/// The usage-ledger check of one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderLedgerReport {
    /// Provider.
    pub provider: Provider,
    /// The replay and its violations.
    pub report: UsageReport,
}

/// The usage-ledger check of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantLedgerReport {
    /// Tenant id.
    pub tenant_id: String,
    /// True when every provider's ledger is consistent.
    pub ok: bool,
    /// One report per provider with usage or settings.
    pub providers: Vec<ProviderLedgerReport>,
}

/// Why a usage record failed; nothing was recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsageRecordError {
    /// A rule refused it (hard limit, range, overflow).
    #[error(transparent)]
    Refused(#[from] UsageError),
    /// The idempotency key was used before for a different request.
    #[error("idempotency key {key:?} was already used for a different usage record")]
    IdempotencyMismatch {
        /// The key.
        key: String,
    },
    /// Storage failed or the tenant does not exist.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for UsageRecordError {
    fn from(e: sqlx::Error) -> Self {
        UsageRecordError::Store(e.into())
    }
}

/// A stored provider row.
struct Stored {
    allocation: Option<i64>,
    price: Option<i64>,
    hard: bool,
    month_key: i64,
    used: i64,
    next_seq: i64,
}

const PROVIDER_COLS: &str = "provider, allocation_units, price_cents_per_million, hard_limit, month_key, used_units, next_seq";
const USAGE_COLS: &str = "id, tenant_id, provider, seq, month_key, units, used_after, limit_units, job_type, description, idempotency_key, actor, created_at_ms";

fn provider_row(r: &AnyRow) -> Result<(Provider, Stored)> {
    let name: String = r.try_get("provider")?;
    let p = Provider::parse(&name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown provider {name:?}")))?;
    Ok((
        p,
        Stored {
            allocation: r.try_get("allocation_units")?,
            price: r.try_get("price_cents_per_million")?,
            hard: r.try_get::<i64, _>("hard_limit")? != 0,
            month_key: r.try_get("month_key")?,
            used: r.try_get("used_units")?,
            next_seq: r.try_get("next_seq")?,
        },
    ))
}

fn usage_row(r: &AnyRow) -> Result<UsageRecord> {
    Ok(UsageRecord {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        provider: r.try_get("provider")?,
        seq: r.try_get("seq")?,
        month: month_label(r.try_get("month_key")?),
        units: r.try_get("units")?,
        used_after_units: r.try_get("used_after")?,
        limit_units: r.try_get("limit_units")?,
        job_type: r.try_get("job_type")?,
        description: r.try_get("description")?,
        idempotency_key: r.try_get("idempotency_key")?,
        actor: r.try_get("actor")?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}

fn provider_budget(tier: Tier, p: Provider, row: Option<&Stored>, now_ms: i64) -> ProviderBudget {
    let allocation = effective_allocation(tier, p, row.and_then(|r| r.allocation));
    let used = row.map_or(0, |r| usage_in_month(r.month_key, r.used, now_ms).1);
    ProviderBudget {
        month: project_month(p, allocation, used, row.and_then(|r| r.price), now_ms),
        tier_default_units: tier_allocation(tier, p),
        allocation_override_units: row.and_then(|r| r.allocation),
        hard_limit: row.is_some_and(|r| r.hard),
        entries: row.map_or(0, |r| r.next_seq - 1),
    }
}

fn tenant_budget(
    tenant_id: &str,
    tier: Option<Tier>,
    rows: &HashMap<Provider, Stored>,
    now_ms: i64,
) -> TenantBudget {
    let t = tier.unwrap_or(DEFAULT_TIER);
    let providers: Vec<ProviderBudget> = Provider::ALL
        .iter()
        .map(|p| provider_budget(t, *p, rows.get(p), now_ms))
        .collect();
    let months: Vec<ProviderMonth> = providers.iter().map(|p| p.month.clone()).collect();
    let (start, end) = month_bounds(now_ms);
    TenantBudget {
        tenant_id: tenant_id.to_string(),
        tier: t,
        tier_set: tier.is_some(),
        month: month_label(month_key(now_ms)),
        month_start: rfc3339(start),
        month_end: rfc3339(end),
        providers,
        cost_projection: cost_projection(&months),
    }
}

fn parse_tier(s: &str) -> Result<Tier> {
    Tier::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown tier {s:?}")))
}

impl Store {
    /// A tenant's provider budgets at `now_ms`: tier, allocations, this
    /// month's usage, projections and cost.
    pub async fn tenant_budget(&self, tenant_id: &str, now_ms: i64) -> Result<TenantBudget> {
        self.get_tenant(tenant_id).await?;
        let tier = sqlx::query("SELECT tier FROM tenant_budgets WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| parse_tier(&r.try_get::<String, _>("tier")?))
            .transpose()?;
        let rows = sqlx::query(&format!(
            "SELECT {PROVIDER_COLS} FROM tenant_provider_budgets WHERE tenant_id = $1"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(provider_row)
        .collect::<Result<HashMap<_, _>>>()?;
        Ok(tenant_budget(tenant_id, tier, &rows, now_ms))
    }

    /// Budgets of every tenant (by tenant id; `only` restricts to one), in three queries.
    pub async fn list_tenant_budgets(
        &self,
        only: Option<&str>,
        page: &Page,
        now_ms: i64,
    ) -> Result<Listed<TenantBudget>> {
        let tenants = self.list_tenants(only, page).await?;
        let (Some(first), Some(last)) = (tenants.items.first(), tenants.items.last()) else {
            return Ok(Listed {
                items: Vec::new(),
                next_cursor: None,
            });
        };
        let mut tiers: HashMap<String, Tier> = HashMap::new();
        for r in sqlx::query(
            "SELECT tenant_id, tier FROM tenant_budgets WHERE tenant_id >= $1 AND tenant_id <= $2",
        )
        .bind(&first.id)
        .bind(&last.id)
        .fetch_all(&self.pool)
        .await?
        {
            tiers.insert(
                r.try_get("tenant_id")?,
                parse_tier(&r.try_get::<String, _>("tier")?)?,
            );
        }
        let mut rows: HashMap<String, HashMap<Provider, Stored>> = HashMap::new();
        for r in sqlx::query(&format!(
            "SELECT {PROVIDER_COLS}, tenant_id FROM tenant_provider_budgets WHERE tenant_id >= $1 AND tenant_id <= $2"
        ))
        .bind(&first.id)
        .bind(&last.id)
        .fetch_all(&self.pool)
        .await?
        {
            let (p, row) = provider_row(&r)?;
            rows.entry(r.try_get("tenant_id")?).or_default().insert(p, row);
        }
        let empty = HashMap::new();
        Ok(Listed {
            items: tenants
                .items
                .iter()
                .map(|t| {
                    tenant_budget(
                        &t.id,
                        tiers.get(&t.id).copied(),
                        rows.get(&t.id).unwrap_or(&empty),
                        now_ms,
                    )
                })
                .collect(),
            next_cursor: tenants.next_cursor,
        })
    }

    /// Locks the tenant's budget row (creating it with the default tier),
    /// failing with `tenant not found` when the tenant does not exist.
    /// Returns the tier.
    async fn lock_tenant_budget(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant_id: &str,
        now_ms: i64,
    ) -> Result<Tier> {
        sqlx::query("SELECT id FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| not_found("tenant"))?;
        sqlx::query("INSERT INTO tenant_budgets (tenant_id, tier, updated_at_ms) VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO NOTHING")
            .bind(tenant_id)
            .bind(DEFAULT_TIER.as_str())
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT tier FROM tenant_budgets WHERE tenant_id = $1{}",
            self.for_update()
        ))
        .bind(tenant_id)
        .fetch_one(&mut **tx)
        .await?;
        parse_tier(&row.try_get::<String, _>("tier")?)
    }

    /// Sets a tenant's tier (audited `budget.tier`); allocations without an
    /// override follow the new tier at once.
    pub async fn set_tenant_tier(
        &self,
        tenant_id: &str,
        tier: Tier,
        actor: &str,
        now_ms: i64,
    ) -> Result<TenantBudget> {
        let mut tx = self.begin().await?;
        let before = self.lock_tenant_budget(&mut tx, tenant_id, now_ms).await?;
        sqlx::query("UPDATE tenant_budgets SET tier = $1, updated_at_ms = $2 WHERE tenant_id = $3")
            .bind(tier.as_str())
            .bind(now_ms)
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            actor,
            "budget.tier",
            Some(tenant_id),
            "tenant_budget",
            tenant_id,
            serde_json::json!({"before": before, "after": tier}),
            now_ms,
        )
        .await?;
        tx.commit().await?;
        self.tenant_budget(tenant_id, now_ms).await
    }

    /// Replaces one provider's settings (audited `budget.provider`, with the
    /// settings before and after). Usage is kept.
    pub async fn set_provider_budget(
        &self,
        tenant_id: &str,
        provider: Provider,
        settings: &ProviderSettings,
        actor: &str,
        now_ms: i64,
    ) -> Result<ProviderBudget> {
        let mut tx = self.begin().await?;
        let tier = self.lock_tenant_budget(&mut tx, tenant_id, now_ms).await?;
        let before = self.provider_row_tx(&mut tx, tenant_id, provider).await?;
        sqlx::query("INSERT INTO tenant_provider_budgets (tenant_id, provider, allocation_units, price_cents_per_million, hard_limit, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id, provider) DO UPDATE SET allocation_units = $3, price_cents_per_million = $4, hard_limit = $5, updated_at_ms = $6")
            .bind(tenant_id)
            .bind(provider.as_str())
            .bind(settings.allocation_units)
            .bind(settings.price_cents_per_million)
            .bind(i64::from(settings.hard_limit))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        let settings_json = |a: Option<i64>, p: Option<i64>, h: bool| serde_json::json!({"allocation_units": a, "price_cents_per_million": p, "hard_limit": h});
        audit(
            &mut tx,
            actor,
            "budget.provider",
            Some(tenant_id),
            "tenant_provider_budget",
            &format!("{tenant_id}/{}", provider.as_str()),
            serde_json::json!({
                "provider": provider,
                "before": before.as_ref().map(|b| settings_json(b.allocation, b.price, b.hard)),
                "after": settings_json(settings.allocation_units, settings.price_cents_per_million, settings.hard_limit),
            }),
            now_ms,
        )
        .await?;
        let after = self
            .provider_row_tx(&mut tx, tenant_id, provider)
            .await?
            .ok_or_else(|| StoreError::Corrupt("provider budget row vanished".into()))?;
        tx.commit().await?;
        Ok(provider_budget(tier, provider, Some(&after), now_ms))
    }

    async fn provider_row_tx(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant_id: &str,
        provider: Provider,
    ) -> Result<Option<Stored>> {
        sqlx::query(&format!(
            "SELECT {PROVIDER_COLS} FROM tenant_provider_budgets WHERE tenant_id = $1 AND provider = $2"
        ))
        .bind(tenant_id)
        .bind(provider.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| provider_row(&r).map(|(_, row)| row))
        .transpose()
    }

    /// Records usage atomically (see the module docs): checks the hard limit
    /// if set, appends the ledger entry, updates the month's counter and
    /// audits (`budget.usage`), all in one transaction, durable before it
    /// returns. A retry with the same idempotency key returns the first
    /// record with `replayed` and records nothing; the same key with another
    /// provider, amount or job type is [`UsageRecordError::IdempotencyMismatch`].
    pub async fn record_usage(
        &self,
        req: &UsageRequest,
    ) -> std::result::Result<UsageOutcome, UsageRecordError> {
        let now = req.now_ms;
        let mut tx = self.begin().await?;
        let tier = self
            .lock_tenant_budget(&mut tx, &req.tenant_id, now)
            .await?;
        if let Some(key) = &req.idempotency_key {
            let prior = sqlx::query(&format!(
                "SELECT {USAGE_COLS} FROM provider_usage WHERE tenant_id = $1 AND idempotency_key = $2"
            ))
            .bind(&req.tenant_id)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(prior) = prior {
                let prior = usage_row(&prior)?;
                tx.commit().await?;
                if prior.provider != req.provider.as_str()
                    || prior.units != req.units
                    || prior.job_type != req.job_type
                {
                    return Err(UsageRecordError::IdempotencyMismatch { key: key.clone() });
                }
                return Ok(self.replayed(tier, req.provider, prior, now).await?);
            }
        }
        sqlx::query("INSERT INTO tenant_provider_budgets (tenant_id, provider, updated_at_ms) VALUES ($1, $2, $3) ON CONFLICT (tenant_id, provider) DO NOTHING")
            .bind(&req.tenant_id)
            .bind(req.provider.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let row = self
            .provider_row_tx(&mut tx, &req.tenant_id, req.provider)
            .await?
            .ok_or_else(|| StoreError::Corrupt("provider budget row vanished".into()))?;
        let (month, used) = usage_in_month(row.month_key, row.used, now);
        let allocation = effective_allocation(tier, req.provider, row.allocation);
        // On refusal the transaction is dropped: nothing, not even the default rows, is kept.
        let after = record_usage(used, req.units, allocation, row.hard, req.provider)?;
        let id = new_id();
        let limit = row.hard.then_some(allocation);
        sqlx::query(&format!(
            "INSERT INTO provider_usage ({USAGE_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)"
        ))
        .bind(&id)
        .bind(&req.tenant_id)
        .bind(req.provider.as_str())
        .bind(row.next_seq)
        .bind(month)
        .bind(req.units)
        .bind(after)
        .bind(limit)
        .bind(req.job_type.as_deref())
        .bind(req.description.as_deref())
        .bind(req.idempotency_key.as_deref())
        .bind(&req.actor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE tenant_provider_budgets SET month_key = $1, used_units = $2, next_seq = next_seq + 1, updated_at_ms = $3 WHERE tenant_id = $4 AND provider = $5")
            .bind(month)
            .bind(after)
            .bind(now)
            .bind(&req.tenant_id)
            .bind(req.provider.as_str())
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            &req.actor,
            "budget.usage",
            Some(&req.tenant_id),
            "provider_usage",
            &id,
            serde_json::json!({
                "provider": req.provider, "units": req.units, "used_after_units": after,
                "month": month_label(month), "job_type": req.job_type, "limit_units": limit,
            }),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(UsageOutcome {
            usage_id: id,
            provider: req.provider,
            unit: req.provider.unit(),
            units: req.units,
            month: month_label(month),
            used_after_units: after,
            allocation_units: allocation,
            remaining_units: (allocation - after).max(0),
            hard_limit: row.hard,
            over_allocation: after > allocation,
            status: usage_status(after, allocation),
            replayed: false,
        })
    }

    /// The answer to a replayed record: the first record's figures, with the
    /// allocation and limit in force now.
    async fn replayed(
        &self,
        tier: Tier,
        provider: Provider,
        prior: UsageRecord,
        _now_ms: i64,
    ) -> Result<UsageOutcome> {
        let row = sqlx::query(&format!(
            "SELECT {PROVIDER_COLS} FROM tenant_provider_budgets WHERE tenant_id = $1 AND provider = $2"
        ))
        .bind(&prior.tenant_id)
        .bind(provider.as_str())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| provider_row(&r).map(|(_, row)| row))
        .transpose()?;
        let allocation =
            effective_allocation(tier, provider, row.as_ref().and_then(|r| r.allocation));
        Ok(UsageOutcome {
            usage_id: prior.id,
            provider,
            unit: provider.unit(),
            units: prior.units,
            month: prior.month,
            used_after_units: prior.used_after_units,
            allocation_units: allocation,
            remaining_units: (allocation - prior.used_after_units).max(0),
            hard_limit: row.is_some_and(|r| r.hard),
            over_allocation: prior.used_after_units > allocation,
            status: usage_status(prior.used_after_units, allocation),
            replayed: true,
        })
    }

    /// A tenant's usage ledger, newest first; `provider` restricts to one provider.
    pub async fn usage_records(
        &self,
        tenant_id: &str,
        provider: Option<Provider>,
        page: &Page,
    ) -> Result<Listed<UsageRecord>> {
        self.get_tenant(tenant_id).await?;
        let rows = sqlx::query(&format!(
            "SELECT {USAGE_COLS} FROM provider_usage WHERE tenant_id = $1 AND ($2 = '' OR provider = $2) AND ($3 = '' OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(tenant_id)
        .bind(provider.map_or("", Provider::as_str))
        .bind(page.cursor.clone().unwrap_or_default())
        .bind(page.limit() + 1)
        .fetch_all(&self.pool)
        .await?;
        paginate(rows, page.limit(), usage_row, |u| u.id.clone())
    }

    /// Replays every provider's usage ledger of a tenant against its counters
    /// (under the tenant lock, so one consistent snapshot).
    pub async fn check_usage_ledgers(&self, tenant_id: &str) -> Result<TenantLedgerReport> {
        self.get_tenant(tenant_id).await?;
        let mut tx = self.begin().await?;
        sqlx::query(&format!(
            "SELECT tier FROM tenant_budgets WHERE tenant_id = $1{}",
            self.for_update()
        ))
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
        let rows = sqlx::query(&format!(
            "SELECT {PROVIDER_COLS} FROM tenant_provider_budgets WHERE tenant_id = $1"
        ))
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(provider_row)
        .collect::<Result<HashMap<_, _>>>()?;
        let mut entries: HashMap<Provider, Vec<UsageEntry>> = HashMap::new();
        for r in sqlx::query("SELECT provider, seq, month_key, units, used_after, limit_units FROM provider_usage WHERE tenant_id = $1 ORDER BY provider, seq")
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        {
            let name: String = r.try_get("provider")?;
            let p = Provider::parse(&name)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown provider {name:?}")))?;
            entries.entry(p).or_default().push(UsageEntry {
                seq: r.try_get("seq")?,
                month_key: r.try_get("month_key")?,
                units: r.try_get("units")?,
                used_after: r.try_get("used_after")?,
                limit_units: r.try_get("limit_units")?,
            });
        }
        tx.commit().await?;
        let providers: Vec<ProviderLedgerReport> = Provider::ALL
            .into_iter()
            .filter(|p| rows.contains_key(p) || entries.contains_key(p))
            .map(|p| {
                let (m, used, next_seq) = rows
                    .get(&p)
                    .map_or((0, 0, 1), |r| (r.month_key, r.used, r.next_seq));
                let list = entries.get(&p).map(Vec::as_slice).unwrap_or(&[]);
                let mut report = check_usage_ledger(list, m, used);
                if next_seq - 1 != list.len() as i64 {
                    report.ok = false;
                    report
                        .violations
                        .push(fleetscale_core::provider_budget::UsageViolation {
                            seq: 0,
                            problem: format!(
                                "the counter numbers {} entries but the ledger has {}",
                                next_seq - 1,
                                list.len()
                            ),
                        });
                }
                ProviderLedgerReport {
                    provider: p,
                    report,
                }
            })
            .collect();
        Ok(TenantLedgerReport {
            tenant_id: tenant_id.to_string(),
            ok: providers.iter().all(|p| p.report.ok),
            providers,
        })
    }
}
