//! Job routing (the phase 92 shard router): the set-based read of
//! everything one job route needs, the jobs the router accepted, and their
//! completion.
//!
//! # What a job route reads
//!
//! [`Store::job_world`] reads, in four queries whatever the number of
//! regions: the tenant and its region policy; every region with its
//! jurisdiction, its state as the leader last stored it (`region_states`:
//! mode, pressure per job kind, capacity score) and its budget balances
//! (`region_budgets`); each region's jobs in queue (its newest region-level
//! `queue_depth` sample and its queued routed jobs, in one query); and the
//! routed jobs each region finished during the last
//! [`THROUGHPUT_WINDOW_MS`].
//!
//! A region the leader has not computed a state for yet (no
//! `region_states` row) reads as `normal`, with every pressure 0 and a
//! capacity score of 100: it has never been measured as busy, and refusing
//! work there before the first tick would make a fresh installation route
//! nothing. A region without a budget row has no budget (0 remaining), as
//! the budget API answers.
//!
//! # Figures
//!
//! - **jobs in queue** ([`jobs_in_queue`]): the region's newest
//!   region-level `queue_depth` sample (rounded; missing, negative or not
//!   finite counts 0) plus its routed jobs still `queued`. The engine's
//!   region state uses the same function, so an accepted job counts 1 in
//!   its region's `jobs_in_queue` until it is marked done.
//! - **throughput** ([`throughput_per_min`]): the routed jobs of the region
//!   marked done during the last 15 minutes `(now − 15 min, now]`, divided
//!   by 15: jobs per minute, at least the core's
//!   `MIN_THROUGHPUT_PER_MIN` (1 per minute), the rate the wait estimate
//!   assumes without data, so that a few completions never make the
//!   estimate worse than none.
//! - **budget**: a region's budget covers a job when the budget check of
//!   the budget API (`POST /regions/{id}/budget/check`, the core's
//!   `BudgetState::can_spend`) accepts its estimated cost; a job of cost 0
//!   needs no budget. Nothing is charged.
//!
//! # Lifecycle
//!
//! A routed job is recorded `queued` ([`Store::record_routed_job`]) and
//! becomes `done` once ([`Store::mark_routed_job_done`]: 404 for an unknown
//! job, 409 when it is already done). Nothing is audited: a routed job is
//! itself a durable record, written at request rate like routing decisions.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use fleetscale_core::region::compliance::RegionPolicy;
use fleetscale_core::region::jobs::{JobRegion, MIN_THROUGHPUT_PER_MIN};
use fleetscale_core::region::mode::{ScalingMode, DEFAULT_SMALL_JOB_MAX_CENTS};
use fleetscale_core::region::state::{JobType, Pressure, RegionState};

use crate::sql::not_found;
use crate::{RegionBudget, Result, RoutingSnapshot, Store, StoreError};

/// Window over which a region's throughput is measured, ms (15 minutes).
pub const THROUGHPUT_WINDOW_MS: i64 = 15 * 60_000;

/// Region-level metric whose newest sample is a region's external queue.
pub const QUEUE_DEPTH_METRIC: &str = "queue_depth";

/// Capacity score of a region the leader has not computed a state for yet.
pub const UNMEASURED_CAPACITY_SCORE: f64 = 100.0;

/// A region's jobs in queue (see the module doc): its newest `queue_depth`
/// sample, if any, plus its queued routed jobs.
#[must_use]
pub fn jobs_in_queue(queue_depth: Option<f64>, queued_routed: u64) -> u64 {
    let sampled = queue_depth
        .filter(|q| q.is_finite() && *q > 0.0)
        .map_or(0, |q| q.round() as u64);
    sampled.saturating_add(queued_routed)
}

/// Jobs per minute from the jobs done during [`THROUGHPUT_WINDOW_MS`], at
/// least [`MIN_THROUGHPUT_PER_MIN`] (see the module doc).
#[must_use]
pub fn throughput_per_min(done_in_window: u64) -> f64 {
    (done_in_window as f64 / (THROUGHPUT_WINDOW_MS as f64 / 60_000.0)).max(MIN_THROUGHPUT_PER_MIN)
}

/// True when `budget` covers a job of `estimated_cost_cents` (see the module doc).
#[must_use]
pub fn budget_covers(budget: &RegionBudget, estimated_cost_cents: i64) -> bool {
    estimated_cost_cents == 0 || budget.state().can_spend(estimated_cost_cents)
}

/// Where a routed job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobStatus {
    /// Accepted and waiting in its region (counts in `jobs_in_queue`).
    Queued,
    /// Finished.
    Done,
}

impl JobStatus {
    /// The stored name (`queued`, `done`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Done => "done",
        }
    }

    fn parse(s: &str) -> Result<JobStatus> {
        match s {
            "queued" => Ok(JobStatus::Queued),
            "done" => Ok(JobStatus::Done),
            other => Err(StoreError::Corrupt(format!(
                "column routed_jobs.status: unknown value {other:?}"
            ))),
        }
    }
}

/// A job the router accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedJob {
    /// Id (UUIDv7).
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Region id.
    pub region_id: String,
    /// Region name (read back; [`Store::record_routed_job`] writes `region_id` only).
    pub region: String,
    /// Job type.
    pub job_type: JobType,
    /// Priority as answered (adjusted by pressure), 1–10.
    pub priority: u8,
    /// Estimated cost, cents.
    pub estimated_cost_cents: i64,
    /// Shard key as answered.
    pub shard_key: String,
    /// Queued or done.
    pub status: JobStatus,
    /// When accepted (Unix ms).
    pub created_at_ms: i64,
    /// When marked done (Unix ms).
    pub done_at_ms: Option<i64>,
}

/// One region as a job route reads it (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRegionFacts {
    /// Region id.
    pub region_id: String,
    /// Region name.
    pub name: String,
    /// Jurisdiction.
    pub jurisdiction: String,
    /// Scaling mode as the leader last stored it (`normal` without a state).
    pub mode: ScalingMode,
    /// Pressures as the leader last stored them (0 without a state).
    pub pressure: Pressure,
    /// Capacity score as the leader last stored it (100 without a state).
    pub capacity_score: f64,
    /// Newest `queue_depth` sample plus the queued routed jobs.
    pub jobs_in_queue: u64,
    /// Routed jobs done per minute over the last 15 minutes (at least 1).
    pub throughput_per_min: f64,
    /// Budget balances (zero without a budget).
    pub budget: RegionBudget,
}

impl JobRegionFacts {
    /// The core's view of this region for a job of `estimated_cost_cents`:
    /// `budget_ok` is the budget check without charge ([`budget_covers`]).
    #[must_use]
    pub fn job_region(&self, estimated_cost_cents: i64) -> JobRegion {
        JobRegion {
            name: self.name.clone(),
            jurisdiction: self.jurisdiction.clone(),
            mode: self.mode,
            pressure: self.pressure,
            capacity_score: self.capacity_score,
            jobs_in_queue: self.jobs_in_queue,
            throughput_per_min: self.throughput_per_min,
            budget_ok: budget_covers(&self.budget, estimated_cost_cents),
            small_job_max_cents: DEFAULT_SMALL_JOB_MAX_CENTS,
        }
    }
}

/// Everything one job route needs for a tenant, read at once.
#[derive(Debug, Clone, PartialEq)]
pub struct JobWorld {
    /// The tenant's region policy, `None` when never set.
    pub region_policy: Option<RegionPolicy>,
    /// Every region, in name order.
    pub regions: Vec<JobRegionFacts>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// Counts per region id of a `SELECT region_id, COUNT(*) AS n ... GROUP BY region_id`.
fn counts(rows: &[AnyRow]) -> Result<HashMap<String, u64>> {
    rows.iter()
        .map(|r| {
            let n: i64 = r.try_get("n")?;
            Ok((r.try_get("region_id")?, u64::try_from(n).unwrap_or(0)))
        })
        .collect()
}

impl Store {
    /// Everything a job route for `tenant_id` at `now_ms` reads (see the
    /// module doc), in four queries; 404 for an unknown tenant.
    pub async fn job_world(&self, tenant_id: &str, now_ms: i64) -> Result<JobWorld> {
        let t = sqlx::query(
            "SELECT t.id, rp.policy AS region_policy FROM tenants t \
             LEFT JOIN tenant_region_policies rp ON rp.tenant_id = t.id WHERE t.id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found("tenant"))?;
        let region_policy: Option<String> = t.try_get("region_policy")?;

        let regions = sqlx::query(
            "SELECT r.id, r.name, r.jurisdiction, rs.mode, rs.state, \
             rb.monthly_cents, rb.remaining_cents, rb.spent_today_cents, rb.reserved_cents, rb.next_seq \
             FROM regions r LEFT JOIN region_states rs ON rs.region_id = r.id \
             LEFT JOIN region_budgets rb ON rb.region_id = r.id ORDER BY r.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut queues = self.jobs_in_queue_by_region(now_ms).await?;
        let mut done = self.jobs_done_by_region(now_ms).await?;

        let regions = regions
            .iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let mode: Option<String> = r.try_get("mode")?;
                let state: Option<String> = r.try_get("state")?;
                let (mode, pressure, capacity_score) = match (mode, state) {
                    (Some(m), Some(s)) => {
                        let mode: ScalingMode = m
                            .parse()
                            .map_err(|e| corrupt("column region_states.mode", e))?;
                        let st: RegionState = serde_json::from_str(&s)
                            .map_err(|e| corrupt("column region_states.state", e))?;
                        (mode, st.pressure, st.capacity_score)
                    }
                    _ => (
                        ScalingMode::Normal,
                        Pressure::default(),
                        UNMEASURED_CAPACITY_SCORE,
                    ),
                };
                let next_seq: Option<i64> = r.try_get("next_seq")?;
                let cents = |col: &str| -> Result<i64> {
                    Ok(r.try_get::<Option<i64>, _>(col)?.unwrap_or(0))
                };
                let budget = RegionBudget {
                    region_id: id.clone(),
                    monthly_cents: cents("monthly_cents")?,
                    remaining_cents: cents("remaining_cents")?,
                    spent_today_cents: cents("spent_today_cents")?,
                    reserved_cents: cents("reserved_cents")?,
                    transactions: next_seq.map_or(0, |n| n - 1),
                };
                Ok(JobRegionFacts {
                    name: r.try_get("name")?,
                    jurisdiction: r.try_get("jurisdiction")?,
                    mode,
                    pressure,
                    capacity_score,
                    jobs_in_queue: queues.remove(&id).unwrap_or(0),
                    throughput_per_min: throughput_per_min(done.remove(&id).unwrap_or(0)),
                    budget,
                    region_id: id,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(JobWorld {
            region_policy: region_policy
                .map(|p| serde_json::from_str(&p).map_err(|e| corrupt("region policy", e)))
                .transpose()?,
            regions,
        })
    }

    /// What [`Store::job_world`] reads, with the tenant's region policy and
    /// the regions (names, jurisdictions, stored modes, pressures and
    /// capacity scores) taken from the routing snapshot `view` instead of
    /// the database; only what changes per job (budgets, jobs in queue,
    /// throughput) is read, in three queries. 404 for a tenant `view` does
    /// not know.
    pub async fn job_world_from(
        &self,
        view: &RoutingSnapshot,
        tenant_id: &str,
        now_ms: i64,
    ) -> Result<JobWorld> {
        let tenant = view.tenant(tenant_id).ok_or_else(|| not_found("tenant"))?;
        let budgets = sqlx::query(
            "SELECT region_id, monthly_cents, remaining_cents, spent_today_cents, reserved_cents, next_seq \
             FROM region_budgets",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut budgets = budgets
            .iter()
            .map(|r| {
                let id: String = r.try_get("region_id")?;
                let next_seq: i64 = r.try_get("next_seq")?;
                Ok((
                    id.clone(),
                    RegionBudget {
                        region_id: id,
                        monthly_cents: r.try_get("monthly_cents")?,
                        remaining_cents: r.try_get("remaining_cents")?,
                        spent_today_cents: r.try_get("spent_today_cents")?,
                        reserved_cents: r.try_get("reserved_cents")?,
                        transactions: next_seq - 1,
                    },
                ))
            })
            .collect::<Result<HashMap<String, RegionBudget>>>()?;
        let mut queues = self.jobs_in_queue_by_region(now_ms).await?;
        let mut done = self.jobs_done_by_region(now_ms).await?;
        let regions = view
            .regions()
            .iter()
            .map(|r| JobRegionFacts {
                region_id: r.id.clone(),
                name: r.name.clone(),
                jurisdiction: r.jurisdiction.clone(),
                mode: r.mode,
                pressure: r.pressure,
                capacity_score: r.capacity_score,
                jobs_in_queue: queues.remove(&r.id).unwrap_or(0),
                throughput_per_min: throughput_per_min(done.remove(&r.id).unwrap_or(0)),
                budget: budgets.remove(&r.id).unwrap_or_else(|| RegionBudget {
                    region_id: r.id.clone(),
                    monthly_cents: 0,
                    remaining_cents: 0,
                    spent_today_cents: 0,
                    reserved_cents: 0,
                    transactions: 0,
                }),
            })
            .collect();
        Ok(JobWorld {
            region_policy: tenant.region_policy.clone(),
            regions,
        })
    }

    /// Routed jobs done per region id during the last
    /// [`THROUGHPUT_WINDOW_MS`] before `now_ms`.
    async fn jobs_done_by_region(&self, now_ms: i64) -> Result<HashMap<String, u64>> {
        counts(
            &sqlx::query(
                "SELECT region_id, COUNT(*) AS n FROM routed_jobs \
                 WHERE status = 'done' AND done_at_ms > $1 AND done_at_ms <= $2 GROUP BY region_id",
            )
            .bind(now_ms - THROUGHPUT_WINDOW_MS)
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// Every region's jobs in queue at `now_ms` ([`jobs_in_queue`]: the
    /// newest `queue_depth` sample up to `now_ms` plus the routed jobs still
    /// queued), by region id; regions with neither are absent. One query:
    /// the engine reads it every tick.
    pub async fn jobs_in_queue_by_region(&self, now_ms: i64) -> Result<HashMap<String, u64>> {
        let rows = sqlx::query(
            "SELECT p.region_id AS region_id, p.value AS sampled, CAST(0 AS BIGINT) AS queued \
             FROM region_points p \
             JOIN (SELECT region_id, MAX(ts_ms) AS ts_ms FROM region_points \
                   WHERE metric = $1 AND ts_ms <= $2 GROUP BY region_id) newest \
               ON newest.region_id = p.region_id AND newest.ts_ms = p.ts_ms \
             WHERE p.metric = $1 \
             UNION ALL \
             SELECT region_id, NULL, COUNT(*) FROM routed_jobs WHERE status = 'queued' GROUP BY region_id",
        )
        .bind(QUEUE_DEPTH_METRIC)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut sampled: HashMap<String, f64> = HashMap::new();
        let mut queued: HashMap<String, u64> = HashMap::new();
        for r in &rows {
            let id: String = r.try_get("region_id")?;
            match r.try_get::<Option<f64>, _>("sampled")? {
                Some(v) => {
                    sampled.insert(id, v);
                }
                None => {
                    let n: i64 = r.try_get("queued")?;
                    queued.insert(id, u64::try_from(n).unwrap_or(0));
                }
            }
        }
        let mut out: HashMap<String, u64> = queued
            .iter()
            .map(|(id, n)| (id.clone(), jobs_in_queue(sampled.get(id).copied(), *n)))
            .collect();
        for (id, v) in sampled {
            out.entry(id).or_insert_with(|| jobs_in_queue(Some(v), 0));
        }
        Ok(out)
    }

    /// The routed jobs still queued, per region id (regions without any are absent).
    pub async fn queued_routed_jobs_by_region(&self) -> Result<HashMap<String, u64>> {
        counts(
            &sqlx::query(
                "SELECT region_id, COUNT(*) AS n FROM routed_jobs WHERE status = 'queued' GROUP BY region_id",
            )
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// Records an accepted job (its `region_id`; `region` is not written).
    /// A repeated id is a conflict; an unknown tenant or region is a 404.
    pub async fn record_routed_job(&self, job: &RoutedJob) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO routed_jobs ({JOB_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
        ))
        .bind(&job.id)
        .bind(&job.tenant_id)
        .bind(&job.region_id)
        .bind(job.job_type.as_str())
        .bind(i64::from(job.priority))
        .bind(job.estimated_cost_cents)
        .bind(&job.shard_key)
        .bind(job.status.as_str())
        .bind(job.created_at_ms)
        .bind(job.done_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One routed job, with its region's name.
    pub async fn get_routed_job(&self, id: &str) -> Result<RoutedJob> {
        let row = sqlx::query(&format!("{SELECT_JOB} WHERE j.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("job"))?;
        job_row(&row)
    }

    /// Marks a queued job done at `now_ms` and returns it: it leaves its
    /// region's queue and counts toward its throughput. 404 for an unknown
    /// job, 409 when it is already done (its first completion stands).
    /// Idempotent in effect: a repeat changes nothing.
    pub async fn mark_routed_job_done(&self, id: &str, now_ms: i64) -> Result<RoutedJob> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE routed_jobs SET status = 'done', done_at_ms = $2 WHERE id = $1 AND status = 'queued'",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!("{SELECT_JOB} WHERE j.id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found("job"))?;
        let job = job_row(&row)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict {
                what: format!(
                    "job {id} is already done (since {})",
                    job.done_at_ms
                        .map_or_else(|| "an unknown time".into(), crate::rfc3339)
                ),
            });
        }
        tx.commit().await?;
        Ok(job)
    }
}

/// The columns [`Store::record_routed_job`] writes.
const JOB_COLS: &str = "id, tenant_id, region_id, job_type, priority, estimated_cost_cents, \
                        shard_key, status, created_at_ms, done_at_ms";

/// A routed job with its region's name, for [`job_row`].
const SELECT_JOB: &str = "SELECT j.id, j.tenant_id, j.region_id, r.name AS region, j.job_type, \
     j.priority, j.estimated_cost_cents, j.shard_key, j.status, j.created_at_ms, j.done_at_ms \
     FROM routed_jobs j JOIN regions r ON r.id = j.region_id";

fn job_row(r: &AnyRow) -> Result<RoutedJob> {
    let job_type: String = r.try_get("job_type")?;
    let priority: i64 = r.try_get("priority")?;
    let status: String = r.try_get("status")?;
    Ok(RoutedJob {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        region_id: r.try_get("region_id")?,
        region: r.try_get("region")?,
        job_type: serde_json::from_value(serde_json::Value::String(job_type))
            .map_err(|e| corrupt("column routed_jobs.job_type", e))?,
        priority: u8::try_from(priority).map_err(|e| corrupt("column routed_jobs.priority", e))?,
        estimated_cost_cents: r.try_get("estimated_cost_cents")?,
        shard_key: r.try_get("shard_key")?,
        status: JobStatus::parse(&status)?,
        created_at_ms: r.try_get("created_at_ms")?,
        done_at_ms: r.try_get("done_at_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_in_queue_adds_the_sample_and_the_queued_jobs() {
        // (sample, queued, jobs in queue)
        let table = [
            (None, 0, 0),
            (None, 3, 3),
            (Some(4.4), 0, 4),
            (Some(4.5), 2, 7),
            (Some(-3.0), 2, 2),
            (Some(f64::NAN), 1, 1),
            (Some(f64::INFINITY), 1, 1),
            (Some(1e30), 5, u64::MAX),
        ];
        for (sample, queued, want) in table {
            assert_eq!(jobs_in_queue(sample, queued), want, "{sample:?} + {queued}");
        }
    }

    #[test]
    fn throughput_is_jobs_per_minute_over_the_window() {
        assert_eq!(throughput_per_min(0), 1.0, "no data: the core's minimum");
        assert_eq!(throughput_per_min(1), 1.0, "never worse than no data");
        assert_eq!(throughput_per_min(15), 1.0);
        assert_eq!(throughput_per_min(45), 3.0);
        assert_eq!(throughput_per_min(50), 50.0 / 15.0);
    }

    #[test]
    fn budget_check_is_the_budget_apis_and_free_jobs_need_none() {
        let mut b = RegionBudget {
            region_id: "r".into(),
            monthly_cents: 1_000,
            remaining_cents: 100,
            spent_today_cents: 0,
            reserved_cents: 0,
            transactions: 1,
        };
        assert!(budget_covers(&b, 100));
        assert!(!budget_covers(&b, 101));
        assert!(budget_covers(&b, 0));
        b.remaining_cents = 0;
        assert!(budget_covers(&b, 0));
        assert!(!budget_covers(&b, 1));
    }
}
