//! fleetscale-store: one storage interface over two real backends, SQLite
//! (the embedded default, a file in the data directory) and PostgreSQL.
//!
//! Both run the same versioned migrations (`migrations/`, portable SQL) and
//! the same queries through sqlx's `Any` driver; the few dialect differences
//! (row locks) are chosen by [`Backend`]. Every mutation writes its audit
//! entry in the same transaction. SQLite runs in WAL mode; the store's
//! connection commits with `synchronous=FULL` and the budget writer answers
//! only after an fdatasync of the WAL (see `budget_sqlite`), so an
//! acknowledged write survives a crash. It has two
//! connections: the store's (one sqlx connection) and the budget writer's own
//! (rusqlite, on its thread; see `budget_sqlite`); both begin their write
//! transactions `IMMEDIATE`, so writers queue on SQLite's lock and never
//! deadlock. PostgreSQL uses a pool and row locks.

mod budget;
mod budget_sqlite;
mod bulk;
mod tenant_budget;
mod types;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use fleetscale_core::{ValidPool, WindowStats};

pub use budget::*;
pub use tenant_budget::*;
pub use types::*;

/// Errors of the store. Callers never see SQLSTATE codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The write conflicts with existing data (unique key, concurrent change).
    #[error("conflict: {what}")]
    Conflict {
        /// What conflicted.
        what: String,
    },
    /// A fenced write was attempted by a replica that no longer holds the lease.
    #[error("lease {name} is no longer held by this replica")]
    LeaseLost {
        /// Lease name.
        name: String,
    },
    /// The URL or data directory is not usable.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// Stored data could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// A migration failed.
    #[error("migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The budget writer's own SQLite connection failed.
    #[error("database error")]
    Embedded(#[source] rusqlite::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return StoreError::Conflict {
                    what: "an object with the same unique key exists".into(),
                };
            }
            if db.is_foreign_key_violation() {
                return StoreError::NotFound {
                    what: "referenced object".into(),
                };
            }
        }
        StoreError::Database(e)
    }
}

/// The budget writer's SQLite connection maps like sqlx's.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            match f.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    return StoreError::Conflict {
                        what: "an object with the same unique key exists".into(),
                    }
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                    return StoreError::NotFound {
                        what: "referenced object".into(),
                    }
                }
                _ => {}
            }
        }
        StoreError::Embedded(e)
    }
}

/// The database file of a `sqlite:` URL. In-memory databases are refused:
/// the budget writer opens the file a second time.
fn sqlite_file(url: &str) -> Result<std::path::PathBuf> {
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("invalid SQLite URL {url:?}: {e}")))?;
    let path = opts.get_filename();
    let name = path.to_string_lossy();
    if name.is_empty()
        || name == ":memory:"
        || url.contains(":memory:")
        || url.contains("mode=memory")
    {
        return Err(StoreError::Config(format!(
            "in-memory SQLite ({url:?}) is not supported: give a database file"
        )));
    }
    Ok(path.to_path_buf())
}

/// Shorthand for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The versioned migrations, portable SQL shared by both backends.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Migrations whose SQLite text differs (`migrations/sqlite/`): same version
/// and description, so each backend's history stays one sequence, and each
/// database records the checksum of the text it ran.
const SQLITE_VARIANTS: &[(i64, &str)] = &[(
    8,
    include_str!("../migrations/sqlite/0008_idempotency_keys_sqlite.sql"),
)];

/// The migrations of `backend` up to `version` (inclusive).
fn migrator(backend: Backend, version: i64) -> sqlx::migrate::Migrator {
    let migrations = MIGRATOR
        .migrations
        .iter()
        .filter(|m| m.version <= version)
        .map(|m| {
            let variant = SQLITE_VARIANTS
                .iter()
                .find(|(v, _)| *v == m.version && backend == Backend::Sqlite);
            match variant {
                Some((_, sql)) => sqlx::migrate::Migration::new(
                    m.version,
                    m.description.clone(),
                    m.migration_type,
                    std::borrow::Cow::Borrowed(sql),
                    m.no_tx,
                ),
                None => m.clone(),
            }
        })
        .collect();
    sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

/// How long a cached pool owner is trusted (see `Store::pool_tenants`).
const OWNER_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Rows per multi-row sample INSERT statement.
const SAMPLE_CHUNK: usize = 250;

/// Current wall-clock time in Unix milliseconds (the shell's clock).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A lease-holder's fence: fenced writes fail with [`StoreError::LeaseLost`]
/// unless the lease is still held.
#[derive(Debug, Clone)]
pub struct Fence {
    /// Lease name.
    pub name: String,
    /// This replica's id.
    pub holder: String,
}

/// A request to change a pool's desired capacity.
#[derive(Debug, Clone)]
pub struct ScaleRequest {
    /// Pool to change.
    pub pool_id: String,
    /// Requested capacity (clamped to the pool bounds).
    pub capacity: i64,
    /// Why.
    pub reason: String,
    /// `autoscaler`, `manual`, `rebalance`, `recommendation`, ...
    pub trigger_source: String,
    /// Extra event metadata (decision inputs, ...).
    pub metadata: serde_json::Value,
    /// Audit actor.
    pub actor: String,
    /// Apply only if the pool still has this desired capacity (optimistic check).
    pub expect_desired: Option<i64>,
    /// Refuse when the pool's safety lock is set (autoscaler writes).
    pub respect_safety_lock: bool,
    /// Initial actuation status of the event (`pending` or `none`).
    pub actuation_status: String,
    /// Fence for writes made by the control loop.
    pub fence: Option<Fence>,
    /// Time of the change, Unix ms.
    pub now_ms: i64,
}

/// The result of [`Store::scale`].
#[derive(Debug, Clone)]
pub struct ScaleOutcome {
    /// The pool after the change.
    pub pool: Pool,
    /// The event written, or `None` when the capacity did not change.
    pub event: Option<ScalingEvent>,
    /// True when `expect_desired` or the safety lock prevented the change.
    pub skipped: Option<String>,
}

/// The storage interface of fleetscale.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// pool id → metric → series id, for series known to exist.
    series: std::sync::Arc<std::sync::Mutex<HashMap<String, HashMap<String, i64>>>>,
    /// Pool id → (tenant id, when read): a pool never changes tenant, so
    /// ingestion checks ownership without a query; entries live
    /// [`OWNER_CACHE_TTL`] so a pool deleted through another replica is
    /// forgotten soon.
    owners: std::sync::Arc<std::sync::Mutex<HashMap<String, (String, std::time::Instant)>>>,
    /// SQLite: the database file (the budget writer opens its own connection).
    sqlite_path: Option<std::sync::Arc<std::path::PathBuf>>,
    /// The database URL (the budget writer opens its own connection).
    url: DbUrl,
}

/// A database URL, kept out of `Debug` output (it may hold a password).
#[derive(Clone)]
struct DbUrl(std::sync::Arc<str>);

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbUrl(..)")
    }
}

/// The columns [`token_row`] decodes.
const TOKEN_COLS: &str = "id, tenant_id, role, name, created_at_ms";
const POOL_COLS: &str = "id, tenant_id, region, agent_type, min_capacity, max_capacity, desired_capacity, capacity_per_instance, metric, mode, scaling_policy, safety_lock, last_scaled_at_ms, created_at_ms, updated_at_ms, policies";
const EVENT_COLS: &str = "id, pool_id, tenant_id, region, agent_type, previous_capacity, new_capacity, reason, trigger_source, metadata, actuation_status, actuation_attempts, actuation_error, actuated_at_ms, created_at_ms";
const PROPOSAL_COLS: &str = "id, pool_id, tenant_id, current_capacity, target_capacity, reason, decision, status, decided_by, note, event_id, created_at_ms, updated_at_ms, decided_at_ms";

impl Store {
    /// Opens (creating if needed) the SQLite database `fleetscale.db` in `data_dir`.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Config(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join("fleetscale.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Store::open(&url).await
    }

    /// Opens a database by URL (`sqlite://...` or `postgres://...`) and migrates it.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Config(
                "database URL must start with sqlite:, postgres:// or postgresql://".into(),
            ));
        };
        let sqlite_path = match backend {
            Backend::Sqlite => Some(std::sync::Arc::new(sqlite_file(url)?)),
            Backend::Postgres => None,
        };
        let opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        let pool = match backend {
            Backend::Sqlite => {
                opts.max_connections(1)
                    .min_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            for pragma in [
                                "PRAGMA journal_mode=WAL",
                                "PRAGMA synchronous=FULL",
                                "PRAGMA busy_timeout=5000",
                                "PRAGMA foreign_keys=ON",
                                // Keep statement journals in memory and give the
                                // page cache room, so large batches neither spill
                                // dirty pages mid-transaction nor write temp files.
                                "PRAGMA temp_store=MEMORY",
                                "PRAGMA cache_size=-65536",
                                // Checkpoint every ~40 MB of WAL instead of 4 MB:
                                // pages rewritten between checkpoints (index
                                // leaves) are copied once, not ten times.
                                "PRAGMA wal_autocheckpoint=10000",
                            ] {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
            Backend::Postgres => opts.max_connections(16).connect(url).await?,
        };
        let store = Store {
            pool,
            backend,
            series: Default::default(),
            owners: Default::default(),
            sqlite_path,
            url: DbUrl(url.into()),
        };
        migrator(backend, i64::MAX)
            .run(&store.pool)
            .await
            .map_err(StoreError::Migrate)?;
        Ok(store)
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A new connection of its own, outside the pool.
    pub(crate) async fn connect(&self) -> Result<sqlx::AnyConnection> {
        use sqlx::Connection;
        Ok(sqlx::AnyConnection::connect(&self.url.0).await?)
    }

    /// SQLite: the database file.
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.sqlite_path.as_deref().map(|p| p.as_path())
    }

    /// Begins a transaction. On SQLite it is `BEGIN IMMEDIATE`: it takes the
    /// write lock first, so it never has to upgrade a read snapshot that the
    /// budget writer's connection made stale (which SQLite refuses with
    /// `SQLITE_BUSY` instead of waiting).
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes all connections (waits for in-flight queries).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    // ---- tenants and regions -------------------------------------------------

    /// Creates a tenant; a duplicate name is a conflict.
    pub async fn create_tenant(&self, name: &str, actor: &str) -> Result<Tenant> {
        let t = Tenant {
            id: new_id(),
            name: name.to_string(),
            created_at_ms: now_ms(),
        };
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at_ms) VALUES ($1, $2, $3)")
            .bind(&t.id)
            .bind(&t.name)
            .bind(t.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_as(e, format!("tenant named {name:?} exists")))?;
        audit(
            &mut tx,
            actor,
            "tenant.create",
            Some(&t.id),
            "tenant",
            &t.id,
            serde_json::json!({"name": name}),
            t.created_at_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(t)
    }

    /// Fetches a tenant.
    pub async fn get_tenant(&self, id: &str) -> Result<Tenant> {
        let row = sqlx::query("SELECT id, name, created_at_ms FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("tenant"))?;
        tenant_row(&row)
    }

    /// Lists tenants by id; `only` restricts to one tenant.
    pub async fn list_tenants(&self, only: Option<&str>, page: &Page) -> Result<Listed<Tenant>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at_ms FROM tenants WHERE ($1 = '' OR id = $1) AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(only.unwrap_or(""))
        .bind(page.cursor.clone().unwrap_or_default())
        .bind(page.limit() + 1)
        .fetch_all(&self.pool)
        .await?;
        paginate(rows, page.limit(), tenant_row, |t| t.id.clone())
    }

    /// Creates a region; a duplicate name is a conflict.
    pub async fn create_region(
        &self,
        name: &str,
        jurisdiction: &str,
        actor: &str,
    ) -> Result<Region> {
        let r = Region {
            id: new_id(),
            name: name.to_string(),
            jurisdiction: jurisdiction.to_string(),
            created_at_ms: now_ms(),
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO regions (id, name, jurisdiction, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&r.id)
        .bind(&r.name)
        .bind(&r.jurisdiction)
        .bind(r.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_as(e, format!("region named {name:?} exists")))?;
        audit(
            &mut tx,
            actor,
            "region.create",
            None,
            "region",
            &r.id,
            serde_json::json!({"name": name, "jurisdiction": jurisdiction}),
            r.created_at_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(r)
    }

    /// Fetches a region by id or by name.
    pub async fn get_region(&self, id_or_name: &str) -> Result<Region> {
        let row = sqlx::query(
            "SELECT id, name, jurisdiction, created_at_ms FROM regions WHERE id = $1 OR name = $1",
        )
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found("region"))?;
        region_row(&row)
    }

    /// Lists regions by id.
    pub async fn list_regions(&self, page: &Page) -> Result<Listed<Region>> {
        let rows = sqlx::query("SELECT id, name, jurisdiction, created_at_ms FROM regions WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(page.cursor.clone().unwrap_or_default())
            .bind(page.limit() + 1)
            .fetch_all(&self.pool)
            .await?;
        paginate(rows, page.limit(), region_row, |r| r.id.clone())
    }

    // ---- pools -----------------------------------------------------------------

    /// Creates a pool. The tenant and region must exist; one pool per
    /// tenant × region × agent type.
    pub async fn create_pool(&self, p: &ValidPool, actor: &str) -> Result<Pool> {
        self.get_tenant(&p.tenant_id).await?;
        self.get_region(&p.region).await?;
        let now = now_ms();
        let id = new_id();
        let mut tx = self.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO pools ({POOL_COLS}, window_seconds) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,0,NULL,$12,$12,NULL,$13)"
        ))
        .bind(&id)
        .bind(&p.tenant_id)
        .bind(&p.region)
        .bind(&p.agent_type)
        .bind(p.bounds.min)
        .bind(p.bounds.max)
        .bind(p.bounds.desired)
        .bind(p.capacity_per_instance)
        .bind(&p.metric)
        .bind(p.mode.as_str())
        .bind(to_json(&p.policy))
        .bind(now)
        .bind(p.policy.window_seconds)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_as(e, format!("a pool for region {:?} and agent type {:?} exists", p.region, p.agent_type)))?;
        audit(
            &mut tx,
            actor,
            "pool.create",
            Some(&p.tenant_id),
            "pool",
            &id,
            serde_json::to_value(p).unwrap_or_default(),
            now,
        )
        .await?;
        tx.commit().await?;
        self.get_pool(&id).await
    }

    /// Replaces a pool's mutable fields with `p` (already validated).
    pub async fn update_pool(&self, id: &str, p: &ValidPool, actor: &str) -> Result<Pool> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let res = sqlx::query(
            "UPDATE pools SET min_capacity=$2, max_capacity=$3, desired_capacity=$4, capacity_per_instance=$5, metric=$6, mode=$7, scaling_policy=$8, window_seconds=$9, updated_at_ms=$10 WHERE id=$1",
        )
        .bind(id)
        .bind(p.bounds.min)
        .bind(p.bounds.max)
        .bind(p.bounds.desired)
        .bind(p.capacity_per_instance)
        .bind(&p.metric)
        .bind(p.mode.as_str())
        .bind(to_json(&p.policy))
        .bind(p.policy.window_seconds)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() == 0 {
            return Err(not_found("pool"));
        }
        audit(
            &mut tx,
            actor,
            "pool.update",
            Some(&p.tenant_id),
            "pool",
            id,
            serde_json::to_value(p).unwrap_or_default(),
            now,
        )
        .await?;
        tx.commit().await?;
        self.get_pool(id).await
    }

    /// Sets (or, with `None`, clears) a pool's combined policies.
    pub async fn set_pool_policies(
        &self,
        id: &str,
        policies: Option<&fleetscale_core::decision::PoolPolicies>,
        actor: &str,
    ) -> Result<Pool> {
        let pool = self.get_pool(id).await?;
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE pools SET policies=$2, updated_at_ms=$3 WHERE id=$1")
            .bind(id)
            .bind(policies.map(to_json))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({ "policies": policies });
        audit(
            &mut tx,
            actor,
            if policies.is_some() {
                "pool.policies.set"
            } else {
                "pool.policies.clear"
            },
            Some(&pool.tenant_id),
            "pool",
            id,
            detail,
            now,
        )
        .await?;
        tx.commit().await?;
        self.get_pool(id).await
    }

    /// All samples of a pool in `(from_ms, to_ms]`, grouped by metric, oldest
    /// first, at most `limit` in all (the newest are kept).
    pub async fn pool_samples(
        &self,
        pool_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<Sample>> {
        let rows = sqlx::query("SELECT ms.pool_id, ms.metric, p.ts_ms, p.value FROM metric_points p JOIN metric_series ms ON ms.id = p.series_id WHERE ms.pool_id = $1 AND p.ts_ms > $2 AND p.ts_ms <= $3 ORDER BY p.ts_ms DESC LIMIT $4")
            .bind(pool_id)
            .bind(from_ms)
            .bind(to_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<Sample> = rows
            .iter()
            .map(|r| {
                Ok(Sample {
                    pool_id: r.try_get(0)?,
                    metric: r.try_get(1)?,
                    ts_ms: r.try_get(2)?,
                    value: r.try_get(3)?,
                })
            })
            .collect::<Result<_>>()?;
        out.reverse();
        Ok(out)
    }

    /// Mean of one metric per `bucket_ms` interval in `[from_ms, to_ms)`:
    /// `(bucket start, mean)` for every bucket that has samples, in order.
    pub async fn bucketed_means(
        &self,
        pool_id: &str,
        metric: &str,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, f64)>> {
        let rows = sqlx::query(
            "SELECT (p.ts_ms / $4) * $4 AS bucket, AVG(p.value) FROM metric_points p JOIN metric_series ms ON ms.id = p.series_id WHERE ms.pool_id = $1 AND ms.metric = $2 AND p.ts_ms >= $3 AND p.ts_ms < $5 GROUP BY 1 ORDER BY 1",
        )
        .bind(pool_id)
        .bind(metric)
        .bind(from_ms)
        .bind(bucket_ms.max(1))
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Sets or clears a pool's safety lock.
    pub async fn set_safety_lock(&self, id: &str, locked: bool, actor: &str) -> Result<Pool> {
        let pool = self.get_pool(id).await?;
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE pools SET safety_lock=$2, updated_at_ms=$3 WHERE id=$1")
            .bind(id)
            .bind(i64::from(locked))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            actor,
            if locked { "pool.lock" } else { "pool.unlock" },
            Some(&pool.tenant_id),
            "pool",
            id,
            serde_json::json!({}),
            now,
        )
        .await?;
        tx.commit().await?;
        self.get_pool(id).await
    }

    /// Deletes a pool and its events, proposals and samples.
    pub async fn delete_pool(&self, id: &str, actor: &str) -> Result<()> {
        let pool = self.get_pool(id).await?;
        let now = now_ms();
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM metric_points WHERE series_id IN (SELECT id FROM metric_series WHERE pool_id = $1)",
            "DELETE FROM metric_series WHERE pool_id = $1",
            "DELETE FROM proposals WHERE pool_id = $1",
            "DELETE FROM scaling_events WHERE pool_id = $1",
            "DELETE FROM pools WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        audit(
            &mut tx,
            actor,
            "pool.delete",
            Some(&pool.tenant_id),
            "pool",
            id,
            serde_json::json!({}),
            now,
        )
        .await?;
        tx.commit().await?;
        if let Ok(mut known) = self.series.lock() {
            known.remove(id);
        }
        if let Ok(mut known) = self.owners.lock() {
            known.remove(id);
        }
        Ok(())
    }

    /// Fetches a pool.
    pub async fn get_pool(&self, id: &str) -> Result<Pool> {
        let row = sqlx::query(&format!("SELECT {POOL_COLS} FROM pools WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("pool"))?;
        pool_row(&row)
    }

    /// Lists pools by id, optionally of one tenant.
    pub async fn list_pools(&self, tenant_id: Option<&str>, page: &Page) -> Result<Listed<Pool>> {
        let rows = sqlx::query(&format!(
            "SELECT {POOL_COLS} FROM pools WHERE ($1 = '' OR tenant_id = $1) AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(tenant_id.unwrap_or(""))
        .bind(page.cursor.clone().unwrap_or_default())
        .bind(page.limit() + 1)
        .fetch_all(&self.pool)
        .await?;
        paginate(rows, page.limit(), pool_row, |p| p.id.clone())
    }

    /// Every pool (for the control loop), optionally of one tenant, in id order.
    pub async fn all_pools(&self, tenant_id: Option<&str>) -> Result<Vec<Pool>> {
        let rows = sqlx::query(&format!(
            "SELECT {POOL_COLS} FROM pools WHERE ($1 = '' OR tenant_id = $1) ORDER BY id"
        ))
        .bind(tenant_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pool_row).collect()
    }

    /// Maps pool ids to their tenant ids; unknown ids are absent.
    pub async fn pool_tenants(&self, ids: &[&str]) -> Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        if let Ok(known) = self.owners.lock() {
            for id in ids {
                match known.get(*id) {
                    Some((tenant, at)) if at.elapsed() < OWNER_CACHE_TTL => {
                        out.insert((*id).to_string(), tenant.clone());
                    }
                    _ => missing.push(*id),
                }
            }
        } else {
            missing.extend_from_slice(ids);
        }
        for chunk in missing.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, tenant_id FROM pools WHERE id IN ({})",
                placeholders.join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            let rows = q.fetch_all(&self.pool).await?;
            let now = std::time::Instant::now();
            let mut known = self.owners.lock().ok();
            for row in rows {
                let (id, tenant): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                if let Some(k) = known.as_mut() {
                    k.insert(id.clone(), (tenant.clone(), now));
                }
                out.insert(id, tenant);
            }
        }
        Ok(out)
    }

    // ---- scaling -------------------------------------------------------------

    /// Changes a pool's desired capacity (clamped to its bounds) and records the
    /// scaling event and audit entry in one transaction. Idempotent per
    /// `expect_desired`: a retried autoscaler write whose precondition no longer
    /// holds changes nothing.
    pub async fn scale(&self, req: &ScaleRequest) -> Result<ScaleOutcome> {
        let mut tx = self.begin().await?;
        if let Some(f) = &req.fence {
            let held = sqlx::query(&format!(
                "SELECT epoch FROM leases WHERE name = $1 AND holder = $2 AND expires_at_ms > $3{}",
                self.for_update()
            ))
            .bind(&f.name)
            .bind(&f.holder)
            .bind(req.now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            if held.is_none() {
                return Err(StoreError::LeaseLost {
                    name: f.name.clone(),
                });
            }
        }
        let row = sqlx::query(&format!(
            "SELECT {POOL_COLS} FROM pools WHERE id = $1{}",
            self.for_update()
        ))
        .bind(&req.pool_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found("pool"))?;
        let pool = pool_row(&row)?;
        let skip = |why: &str| ScaleOutcome {
            pool: pool.clone(),
            event: None,
            skipped: Some(why.to_string()),
        };
        if req.respect_safety_lock && pool.safety_lock {
            return Ok(skip("safety lock is set"));
        }
        if let Some(exp) = req.expect_desired {
            if exp != pool.desired_capacity {
                return Ok(skip("desired capacity changed since the decision"));
            }
        }
        let new = req.capacity.clamp(pool.min_capacity, pool.max_capacity);
        if new == pool.desired_capacity {
            return Ok(ScaleOutcome {
                pool,
                event: None,
                skipped: None,
            });
        }
        sqlx::query("UPDATE pools SET desired_capacity=$2, last_scaled_at_ms=$3, updated_at_ms=$3 WHERE id=$1")
            .bind(&pool.id)
            .bind(new)
            .bind(req.now_ms)
            .execute(&mut *tx)
            .await?;
        let mut metadata = req.metadata.clone();
        if let Some(m) = metadata.as_object_mut() {
            m.insert("min_capacity".into(), pool.min_capacity.into());
            m.insert("max_capacity".into(), pool.max_capacity.into());
            m.insert("requested_capacity".into(), req.capacity.into());
            m.insert("actor".into(), req.actor.clone().into());
        }
        let ev = ScalingEvent {
            id: new_id(),
            pool_id: pool.id.clone(),
            tenant_id: pool.tenant_id.clone(),
            region: pool.region.clone(),
            agent_type: pool.agent_type.clone(),
            previous_capacity: pool.desired_capacity,
            new_capacity: new,
            reason: req.reason.clone(),
            trigger_source: req.trigger_source.clone(),
            metadata,
            actuation: Actuation {
                status: req.actuation_status.clone(),
                attempts: 0,
                error: None,
                actuated_at_ms: None,
            },
            created_at_ms: req.now_ms,
        };
        sqlx::query(&format!("INSERT INTO scaling_events ({EVENT_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,0,NULL,NULL,$12)"))
            .bind(&ev.id)
            .bind(&ev.pool_id)
            .bind(&ev.tenant_id)
            .bind(&ev.region)
            .bind(&ev.agent_type)
            .bind(ev.previous_capacity)
            .bind(ev.new_capacity)
            .bind(&ev.reason)
            .bind(&ev.trigger_source)
            .bind(ev.metadata.to_string())
            .bind(&ev.actuation.status)
            .bind(ev.created_at_ms)
            .execute(&mut *tx)
            .await?;
        // An older undelivered event of the same pool is superseded by this one.
        sqlx::query("UPDATE scaling_events SET actuation_status='superseded' WHERE pool_id=$1 AND id <> $2 AND actuation_status IN ('pending','failed')")
            .bind(&pool.id)
            .bind(&ev.id)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            &req.actor,
            "pool.scale",
            Some(&pool.tenant_id),
            "pool",
            &pool.id,
            serde_json::json!({"previous": pool.desired_capacity, "new": new, "trigger_source": req.trigger_source, "event_id": ev.id}),
            req.now_ms,
        )
        .await?;
        tx.commit().await?;
        let mut pool = pool;
        pool.desired_capacity = new;
        pool.last_scaled_at_ms = Some(req.now_ms);
        pool.updated_at_ms = req.now_ms;
        Ok(ScaleOutcome {
            pool,
            event: Some(ev),
            skipped: None,
        })
    }

    /// Lists scaling events, newest first, filtered by pool and/or tenant.
    pub async fn list_events(
        &self,
        pool_id: Option<&str>,
        tenant_id: Option<&str>,
        page: &Page,
    ) -> Result<Listed<ScalingEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM scaling_events WHERE ($1 = '' OR pool_id = $1) AND ($2 = '' OR tenant_id = $2) AND ($3 = '' OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(pool_id.unwrap_or(""))
        .bind(tenant_id.unwrap_or(""))
        .bind(page.cursor.clone().unwrap_or_default())
        .bind(page.limit() + 1)
        .fetch_all(&self.pool)
        .await?;
        paginate(rows, page.limit(), event_row, |e| e.id.clone())
    }

    /// Fetches one scaling event.
    pub async fn get_event(&self, id: &str) -> Result<ScalingEvent> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM scaling_events WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found("scaling event"))?;
        event_row(&row)
    }

    /// Events awaiting actuation (`pending` or `failed`), oldest first, at most `limit`.
    pub async fn pending_actuations(&self, limit: i64) -> Result<Vec<ScalingEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM scaling_events WHERE actuation_status IN ('pending','failed') ORDER BY id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_row).collect()
    }

    /// Records the outcome of one delivery attempt series. Only an event still
    /// awaiting actuation is updated (a superseded one stays superseded).
    pub async fn record_actuation(
        &self,
        event_id: &str,
        delivered: bool,
        attempts: i64,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE scaling_events SET actuation_status=$2, actuation_attempts=actuation_attempts+$3, actuation_error=$4, actuated_at_ms=$5 WHERE id=$1 AND actuation_status IN ('pending','failed')",
        )
        .bind(event_id)
        .bind(if delivered { "delivered" } else { "failed" })
        .bind(attempts)
        .bind(error)
        .bind(if delivered { Some(now_ms) } else { None })
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- proposals -------------------------------------------------------------

    /// Creates or refreshes the pending proposal of a pool. Returns it.
    pub async fn upsert_proposal(
        &self,
        pool: &Pool,
        target: i64,
        reason: &str,
        decision: &serde_json::Value,
        fence: Option<&Fence>,
        now_ms: i64,
    ) -> Result<Proposal> {
        let mut tx = self.begin().await?;
        if let Some(f) = fence {
            let held = sqlx::query(
                "SELECT epoch FROM leases WHERE name = $1 AND holder = $2 AND expires_at_ms > $3",
            )
            .bind(&f.name)
            .bind(&f.holder)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            if held.is_none() {
                return Err(StoreError::LeaseLost {
                    name: f.name.clone(),
                });
            }
        }
        let existing =
            sqlx::query("SELECT id FROM proposals WHERE pool_id = $1 AND status = 'pending'")
                .bind(&pool.id)
                .fetch_optional(&mut *tx)
                .await?;
        let id = match existing {
            Some(row) => {
                let id: String = row.try_get(0)?;
                sqlx::query("UPDATE proposals SET current_capacity=$2, target_capacity=$3, reason=$4, decision=$5, updated_at_ms=$6 WHERE id=$1")
                    .bind(&id)
                    .bind(pool.desired_capacity)
                    .bind(target)
                    .bind(reason)
                    .bind(decision.to_string())
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                id
            }
            None => {
                let id = new_id();
                sqlx::query(&format!("INSERT INTO proposals ({PROPOSAL_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,'pending',NULL,NULL,NULL,$8,$8,NULL)"))
                    .bind(&id)
                    .bind(&pool.id)
                    .bind(&pool.tenant_id)
                    .bind(pool.desired_capacity)
                    .bind(target)
                    .bind(reason)
                    .bind(decision.to_string())
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                audit(
                    &mut tx,
                    "engine",
                    "proposal.create",
                    Some(&pool.tenant_id),
                    "proposal",
                    &id,
                    serde_json::json!({"pool_id": pool.id, "target": target}),
                    now_ms,
                )
                .await?;
                id
            }
        };
        tx.commit().await?;
        self.get_proposal(&id).await
    }

    /// Pool id → target capacity of every pending proposal.
    pub async fn pending_proposals(&self) -> Result<HashMap<String, i64>> {
        let rows =
            sqlx::query("SELECT pool_id, target_capacity FROM proposals WHERE status = 'pending'")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Withdraws a pool's pending proposal (the policy no longer wants a change).
    pub async fn withdraw_proposal(&self, pool_id: &str, now_ms: i64) -> Result<()> {
        sqlx::query("UPDATE proposals SET status='superseded', updated_at_ms=$2 WHERE pool_id=$1 AND status='pending'")
            .bind(pool_id)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Fetches a proposal.
    pub async fn get_proposal(&self, id: &str) -> Result<Proposal> {
        let row = sqlx::query(&format!(
            "SELECT {PROPOSAL_COLS} FROM proposals WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found("proposal"))?;
        proposal_row(&row)
    }

    /// Lists proposals, newest first, by tenant and/or status.
    pub async fn list_proposals(
        &self,
        tenant_id: Option<&str>,
        status: Option<&str>,
        page: &Page,
    ) -> Result<Listed<Proposal>> {
        let rows = sqlx::query(&format!(
            "SELECT {PROPOSAL_COLS} FROM proposals WHERE ($1 = '' OR tenant_id = $1) AND ($2 = '' OR status = $2) AND ($3 = '' OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(tenant_id.unwrap_or(""))
        .bind(status.unwrap_or(""))
        .bind(page.cursor.clone().unwrap_or_default())
        .bind(page.limit() + 1)
        .fetch_all(&self.pool)
        .await?;
        paginate(rows, page.limit(), proposal_row, |p| p.id.clone())
    }

    /// Marks a pending proposal settled; a proposal that is not pending is a conflict.
    pub async fn settle_proposal(
        &self,
        id: &str,
        approved: bool,
        actor: &str,
        note: Option<&str>,
        event_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Proposal> {
        let p = self.get_proposal(id).await?;
        let mut tx = self.begin().await?;
        let res = sqlx::query("UPDATE proposals SET status=$2, decided_by=$3, note=$4, event_id=$5, decided_at_ms=$6, updated_at_ms=$6 WHERE id=$1 AND status='pending'")
            .bind(id)
            .bind(if approved { "approved" } else { "rejected" })
            .bind(actor)
            .bind(note)
            .bind(event_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Conflict {
                what: format!("proposal is {}, not pending", p.status),
            });
        }
        audit(
            &mut tx,
            actor,
            if approved {
                "proposal.approve"
            } else {
                "proposal.reject"
            },
            Some(&p.tenant_id),
            "proposal",
            id,
            serde_json::json!({"note": note, "event_id": event_id}),
            now_ms,
        )
        .await?;
        tx.commit().await?;
        self.get_proposal(id).await
    }

    // ---- metrics ---------------------------------------------------------------

    /// Appends samples durably, in one transaction (their series are
    /// created first if new).
    pub async fn insert_samples(&self, samples: &[Sample]) -> Result<()> {
        static FULL_CHUNK_SQL: [std::sync::OnceLock<String>; 2] =
            [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
        let ids = self.series_ids(samples).await?;
        let b = self.backend;
        let mut tx = self.begin().await?;
        for (chunk, idc) in samples.chunks(SAMPLE_CHUNK).zip(ids.chunks(SAMPLE_CHUNK)) {
            let partial;
            let sql = if chunk.len() == SAMPLE_CHUNK {
                FULL_CHUNK_SQL[b as usize].get_or_init(|| points_insert_sql(b, SAMPLE_CHUNK))
            } else {
                partial = points_insert_sql(b, chunk.len());
                &partial
            };
            let mut q = sqlx::query(sql);
            for (s, id) in chunk.iter().zip(idc) {
                q = q.bind(*id).bind(s.ts_ms).bind(s.value);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The series id of every sample, creating missing series. A new series
    /// gets a stable id derived from its pool and metric (so replicas agree);
    /// a collision with another series moves to the next candidate.
    async fn series_ids(&self, samples: &[Sample]) -> Result<Vec<i64>> {
        let poisoned = || StoreError::Corrupt("series cache poisoned".into());
        let lookup = |known: &HashMap<String, HashMap<String, i64>>, s: &Sample| {
            known
                .get(s.pool_id.as_str())
                .and_then(|m| m.get(s.metric.as_str()))
                .copied()
        };
        let missing: Vec<(String, String)> = {
            let known = self.series.lock().map_err(|_| poisoned())?;
            let mut m: Vec<(String, String)> = samples
                .iter()
                .filter(|s| lookup(&known, s).is_none())
                .map(|s| (s.pool_id.clone(), s.metric.clone()))
                .collect();
            m.sort();
            m.dedup();
            m
        };
        for (pool_id, metric) in missing {
            let id = self.ensure_series(&pool_id, &metric).await?;
            self.series
                .lock()
                .map_err(|_| poisoned())?
                .entry(pool_id)
                .or_default()
                .insert(metric, id);
        }
        let known = self.series.lock().map_err(|_| poisoned())?;
        samples
            .iter()
            .map(|s| {
                lookup(&known, s)
                    .ok_or_else(|| StoreError::Corrupt("series vanished from the cache".into()))
            })
            .collect()
    }

    async fn ensure_series(&self, pool_id: &str, metric: &str) -> Result<i64> {
        let find = || async {
            sqlx::query("SELECT id FROM metric_series WHERE pool_id = $1 AND metric = $2")
                .bind(pool_id)
                .bind(metric)
                .fetch_optional(&self.pool)
                .await
                .map(|r| r.map(|r| r.try_get::<i64, _>(0)))
        };
        if let Some(id) = find().await? {
            return Ok(id?);
        }
        let base = series_hash(pool_id, metric);
        for attempt in 0..8 {
            sqlx::query("INSERT INTO metric_series (id, pool_id, metric) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(base + attempt)
                .bind(pool_id)
                .bind(metric)
                .execute(&self.pool)
                .await?;
            if let Some(id) = find().await? {
                return Ok(id?);
            }
        }
        Err(StoreError::Corrupt(format!(
            "no free series id for {pool_id}/{metric}"
        )))
    }

    /// Mean, count and newest timestamp of each pool's own metric over its own
    /// window `(now - window_seconds, now]`; pools without samples are absent.
    pub async fn window_stats(
        &self,
        tenant_id: Option<&str>,
        now_ms: i64,
    ) -> Result<HashMap<String, WindowStats>> {
        let windows: Vec<i64> = sqlx::query(
            "SELECT DISTINCT window_seconds FROM pools WHERE ($1 = '' OR tenant_id = $1)",
        )
        .bind(tenant_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
        let mut out = HashMap::new();
        for w in windows {
            let rows = sqlx::query(
                "SELECT ms.pool_id, AVG(s.value), COUNT(*), MAX(s.ts_ms) FROM pools p JOIN metric_series ms ON ms.pool_id = p.id AND ms.metric = p.metric JOIN metric_points s ON s.series_id = ms.id \
                 WHERE p.window_seconds = $1 AND ($2 = '' OR p.tenant_id = $2) AND s.ts_ms > $3 AND s.ts_ms <= $4 GROUP BY ms.pool_id",
            )
            .bind(w)
            .bind(tenant_id.unwrap_or(""))
            .bind(now_ms - w * 1000)
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                let count: i64 = r.try_get(2)?;
                out.insert(
                    r.try_get(0)?,
                    WindowStats {
                        mean: r.try_get(1)?,
                        count: count.max(0) as u64,
                        newest_ts_ms: r.try_get(3)?,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Deletes samples older than `before_ms`; returns how many. Works
    /// series by series (500 at a time) through the `(series_id, ts_ms)` index.
    pub async fn prune_samples(&self, before_ms: i64) -> Result<u64> {
        let ids: Vec<i64> = sqlx::query("SELECT id FROM metric_series ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
        let mut deleted = 0;
        for chunk in ids.chunks(500) {
            let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
            let sql = format!(
                "DELETE FROM metric_points WHERE series_id IN ({}) AND ts_ms < $1",
                list.join(",")
            );
            deleted += sqlx::query(&sql)
                .bind(before_ms)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(deleted)
    }

    /// Raw samples of one pool's metric in `[from_ms, to_ms]`, oldest first, at most `limit`.
    pub async fn samples(
        &self,
        pool_id: &str,
        metric: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<Sample>> {
        let rows = sqlx::query("SELECT ms.pool_id, ms.metric, p.ts_ms, p.value FROM metric_points p JOIN metric_series ms ON ms.id = p.series_id WHERE ms.pool_id=$1 AND ms.metric=$2 AND p.ts_ms >= $3 AND p.ts_ms <= $4 ORDER BY p.ts_ms LIMIT $5")
            .bind(pool_id)
            .bind(metric)
            .bind(from_ms)
            .bind(to_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Sample {
                    pool_id: r.try_get(0)?,
                    metric: r.try_get(1)?,
                    ts_ms: r.try_get(2)?,
                    value: r.try_get(3)?,
                })
            })
            .collect()
    }

    // ---- audit -------------------------------------------------------------------

    /// Lists audit entries, newest first, optionally of one tenant: the
    /// `audit_log` rows merged with the budget ledger's entries, which are
    /// the audit records of budget operations (see
    /// `budget::ledger_audit_row`). Both are ordered by their UUIDv7 ids,
    /// so one cursor pages through both. `audit_log` rows about ledger
    /// entries (a server older than migration 0009 may still write them
    /// during a rolling upgrade) are left out: the ledger speaks for them.
    pub async fn list_audit(
        &self,
        tenant_id: Option<&str>,
        page: &Page,
    ) -> Result<Listed<AuditEntry>> {
        // With a tenant the condition is `x = $1` alone, so that both
        // backends use the ledger's partial (agency_id, id) index. An empty
        // tenant means every tenant, as it always has.
        let tenant_id = tenant_id.filter(|t| !t.is_empty());
        let (log_where, ledger_where) = match tenant_id {
            Some(_) => ("tenant_id = $1", "agency_id = $1"),
            None => ("$1 = ''", "$1 = ''"),
        };
        let limit = page.limit();
        let cursor = page.cursor.clone().unwrap_or_default();
        let log = sqlx::query(&format!(
            "SELECT id, actor, action, tenant_id, object_type, object_id, detail, created_at_ms FROM audit_log WHERE {log_where} AND object_type <> 'budget_transaction' AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3",
        ))
        .bind(tenant_id.unwrap_or(""))
        .bind(&cursor)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let ledger = sqlx::query(&format!(
            "SELECT {} FROM region_budget_transactions WHERE {ledger_where} AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3",
            budget::LEDGER_AUDIT_COLS
        ))
        .bind(tenant_id.unwrap_or(""))
        .bind(&cursor)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items = log
            .iter()
            .map(audit_row)
            .chain(ledger.iter().map(budget::ledger_audit_row))
            .collect::<Result<Vec<_>>>()?;
        // Byte order, which for lowercase hyphenated UUIDs is the order both
        // databases sort `id` in (and the time order of UUIDv7).
        items.sort_unstable_by(|a, b| b.id.cmp(&a.id));
        Ok(listed(items, limit, |a| a.id.clone()))
    }

    /// Records an audit entry on its own (for mutations outside the store).
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        tenant_id: Option<&str>,
        object_type: &str,
        object_id: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        audit(
            &mut tx,
            actor,
            action,
            tenant_id,
            object_type,
            object_id,
            detail,
            now_ms(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- tokens --------------------------------------------------------------------

    /// Stores a token by its hash.
    pub async fn insert_token(
        &self,
        token_hash: &str,
        tenant_id: Option<&str>,
        role: &str,
        name: &str,
        actor: &str,
    ) -> Result<TokenGrant> {
        let id = new_id();
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO api_tokens (id, token_hash, tenant_id, role, name, created_at_ms) VALUES ($1,$2,$3,$4,$5,$6)")
            .bind(&id)
            .bind(token_hash)
            .bind(tenant_id)
            .bind(role)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            actor,
            "token.create",
            tenant_id,
            "token",
            &id,
            serde_json::json!({"role": role, "name": name}),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(TokenGrant {
            id,
            tenant_id: tenant_id.map(str::to_string),
            role: role.to_string(),
            name: name.to_string(),
        })
    }

    /// Ensures a global admin token with this hash exists (idempotent).
    pub async fn ensure_admin_token(&self, token_hash: &str, name: &str) -> Result<()> {
        sqlx::query("INSERT INTO api_tokens (id, token_hash, tenant_id, role, name, created_at_ms) VALUES ($1,$2,NULL,'admin',$3,$4) ON CONFLICT (token_hash) DO NOTHING")
            .bind(new_id())
            .bind(token_hash)
            .bind(name)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// True when any global admin token exists.
    pub async fn has_admin_token(&self) -> Result<bool> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM api_tokens WHERE tenant_id IS NULL AND role = 'admin'",
        )
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(n > 0)
    }

    /// Looks a token up by its hash.
    pub async fn find_token(&self, token_hash: &str) -> Result<Option<TokenGrant>> {
        let row =
            sqlx::query("SELECT id, tenant_id, role, name FROM api_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(TokenGrant {
                id: r.try_get(0)?,
                tenant_id: r.try_get(1)?,
                role: r.try_get(2)?,
                name: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Stored tokens, oldest first; `only` restricts to one tenant's.
    pub async fn list_tokens(&self, only: Option<&str>, page: &Page) -> Result<Listed<TokenInfo>> {
        let rows = sqlx::query(
            &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE ($1 = '' OR tenant_id = $1) AND id > $2 ORDER BY id LIMIT $3"),
        )
        .bind(only.unwrap_or(""))
        .bind(page.cursor.clone().unwrap_or_default())
        .bind(page.limit() + 1)
        .fetch_all(&self.pool)
        .await?;
        paginate(rows, page.limit(), token_row, |t| t.id.clone())
    }

    /// The stored token `id`.
    pub async fn get_token(&self, id: &str) -> Result<TokenInfo> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM api_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found("token"))?;
        token_row(&row)
    }

    /// Revokes (deletes) the stored token `id` and returns its hash, so the
    /// caller can forget any cached grant of it. With `keep_an_admin`, the
    /// last global admin token is not revoked: [`StoreError::Conflict`].
    pub async fn revoke_token(&self, id: &str, actor: &str, keep_an_admin: bool) -> Result<String> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let row =
            sqlx::query("SELECT token_hash, tenant_id, role, name FROM api_tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| not_found("token"))?;
        let hash: String = row.try_get(0)?;
        let tenant_id: Option<String> = row.try_get(1)?;
        let role: String = row.try_get(2)?;
        let name: String = row.try_get(3)?;
        if keep_an_admin && tenant_id.is_none() && role == "admin" {
            // Two admins revoking each other at once must not both pass:
            // PostgreSQL locks every global admin row until the commit
            // (SQLite's IMMEDIATE transaction already holds the write lock).
            let lock = match self.backend {
                Backend::Postgres => " FOR UPDATE",
                Backend::Sqlite => "",
            };
            let admins = sqlx::query(&format!(
                "SELECT id FROM api_tokens WHERE tenant_id IS NULL AND role = 'admin'{lock}"
            ))
            .fetch_all(&mut *tx)
            .await?
            .len();
            if admins <= 1 {
                return Err(StoreError::Conflict {
                    what: "this is the last global admin token and no admin token is set in the environment: revoking it would lock every administrator out".into(),
                });
            }
        }
        let deleted = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            // Revoked by a concurrent request since the read above.
            return Err(not_found("token"));
        }
        audit(
            &mut tx,
            actor,
            "token.revoke",
            tenant_id.as_deref(),
            "token",
            id,
            serde_json::json!({"role": role, "name": name}),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(hash)
    }

    // ---- leases --------------------------------------------------------------------

    /// Takes or renews the lease `name` for `holder` until `now + ttl`. Returns
    /// true when `holder` holds it afterwards. Another holder's lease is taken
    /// over only once it has expired.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool> {
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at_ms, epoch) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms, \
             epoch = CASE WHEN leases.holder = excluded.holder THEN leases.epoch ELSE leases.epoch + 1 END \
             WHERE leases.holder = excluded.holder OR leases.expires_at_ms <= $4 RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now_ms + ttl_ms)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Gives the lease up if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The current holder of a lease and its expiry, if any.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query("SELECT holder, expires_at_ms FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// True when `holder` holds `name` at `now_ms` (no renewal).
    pub async fn holds_lease(&self, name: &str, holder: &str, now_ms: i64) -> Result<bool> {
        Ok(matches!(self.lease_holder(name).await?, Some((h, exp)) if h == holder && exp > now_ms))
    }
}

#[allow(clippy::too_many_arguments)]
async fn audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    actor: &str,
    action: &str,
    tenant_id: Option<&str>,
    object_type: &str,
    object_id: &str,
    detail: serde_json::Value,
    now_ms: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO audit_log (id, actor, action, tenant_id, object_type, object_id, detail, created_at_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)")
        .bind(new_id())
        .bind(actor)
        .bind(action)
        .bind(tenant_id)
        .bind(object_type)
        .bind(object_id)
        .bind(detail.to_string())
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A stable series id in `[2^32, 2^62)` from FNV-1a of `pool_id \0 metric`
/// (ids below 2^32 are those numbered by migration 0004).
/// `INSERT` of `rows` metric points: `?` parameters on SQLite (bound by
/// position, where `$N` names cost a lookup each), `$N` on PostgreSQL.
fn points_insert_sql(backend: Backend, rows: usize) -> String {
    let mut sql = String::with_capacity(60 + rows * 16);
    sql.push_str("INSERT INTO metric_points (series_id, ts_ms, value) VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        match backend {
            Backend::Sqlite => sql.push_str("(?,?,?)"),
            Backend::Postgres => {
                let b = i * 3;
                sql.push_str(&format!("(${},${},${})", b + 1, b + 2, b + 3));
            }
        }
    }
    sql
}

fn series_hash(pool_id: &str, metric: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pool_id
        .bytes()
        .chain(std::iter::once(0))
        .chain(metric.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((h % ((1u64 << 62) - (1u64 << 32) - 16)) + (1u64 << 32)) as i64
}

fn not_found(what: &str) -> StoreError {
    StoreError::NotFound {
        what: what.to_string(),
    }
}

fn conflict_as(e: sqlx::Error, what: String) -> StoreError {
    match StoreError::from(e) {
        StoreError::Conflict { .. } => StoreError::Conflict { what },
        other => other,
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

fn parse_json(s: &str) -> Result<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad JSON column: {e}")))
}

fn paginate<T>(
    rows: Vec<AnyRow>,
    limit: i64,
    decode: fn(&AnyRow) -> Result<T>,
    key: fn(&T) -> String,
) -> Result<Listed<T>> {
    let more = rows.len() as i64 > limit;
    let items: Vec<T> = rows
        .iter()
        .take(limit as usize)
        .map(decode)
        .collect::<Result<_>>()?;
    Ok(listed_with(items, more, key))
}

/// A page of `items` fetched as up to `limit + 1`, in list order: the
/// extra item only says that there is more.
fn listed<T>(mut items: Vec<T>, limit: i64, key: fn(&T) -> String) -> Listed<T> {
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    listed_with(items, more, key)
}

/// A page of `items`, whose cursor is the last item's key when there is more.
fn listed_with<T>(items: Vec<T>, more: bool, key: fn(&T) -> String) -> Listed<T> {
    let next_cursor = if more { items.last().map(key) } else { None };
    Listed { items, next_cursor }
}

fn token_row(r: &AnyRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.try_get(0)?,
        tenant_id: r.try_get(1)?,
        role: r.try_get(2)?,
        name: r.try_get(3)?,
        created_at_ms: r.try_get(4)?,
    })
}

fn tenant_row(r: &AnyRow) -> Result<Tenant> {
    Ok(Tenant {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        created_at_ms: r.try_get(2)?,
    })
}

fn region_row(r: &AnyRow) -> Result<Region> {
    Ok(Region {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        jurisdiction: r.try_get(2)?,
        created_at_ms: r.try_get(3)?,
    })
}

fn pool_row(r: &AnyRow) -> Result<Pool> {
    let policy: String = r.try_get(10)?;
    let lock: i64 = r.try_get(11)?;
    Ok(Pool {
        id: r.try_get(0)?,
        tenant_id: r.try_get(1)?,
        region: r.try_get(2)?,
        agent_type: r.try_get(3)?,
        min_capacity: r.try_get(4)?,
        max_capacity: r.try_get(5)?,
        desired_capacity: r.try_get(6)?,
        capacity_per_instance: r.try_get(7)?,
        metric: r.try_get(8)?,
        mode: r.try_get(9)?,
        scaling_policy: serde_json::from_str(&policy)
            .map_err(|e| StoreError::Corrupt(format!("pool policy: {e}")))?,
        safety_lock: lock != 0,
        last_scaled_at_ms: r.try_get(12)?,
        created_at_ms: r.try_get(13)?,
        updated_at_ms: r.try_get(14)?,
        policies: r
            .try_get::<Option<String>, _>(15)?
            .map(|p| {
                serde_json::from_str(&p)
                    .map_err(|e| StoreError::Corrupt(format!("pool policies: {e}")))
            })
            .transpose()?,
    })
}

fn event_row(r: &AnyRow) -> Result<ScalingEvent> {
    let metadata: String = r.try_get(9)?;
    Ok(ScalingEvent {
        id: r.try_get(0)?,
        pool_id: r.try_get(1)?,
        tenant_id: r.try_get(2)?,
        region: r.try_get(3)?,
        agent_type: r.try_get(4)?,
        previous_capacity: r.try_get(5)?,
        new_capacity: r.try_get(6)?,
        reason: r.try_get(7)?,
        trigger_source: r.try_get(8)?,
        metadata: parse_json(&metadata)?,
        actuation: Actuation {
            status: r.try_get(10)?,
            attempts: r.try_get(11)?,
            error: r.try_get(12)?,
            actuated_at_ms: r.try_get(13)?,
        },
        created_at_ms: r.try_get(14)?,
    })
}

fn proposal_row(r: &AnyRow) -> Result<Proposal> {
    let decision: String = r.try_get(6)?;
    Ok(Proposal {
        id: r.try_get(0)?,
        pool_id: r.try_get(1)?,
        tenant_id: r.try_get(2)?,
        current_capacity: r.try_get(3)?,
        target_capacity: r.try_get(4)?,
        reason: r.try_get(5)?,
        decision: parse_json(&decision)?,
        status: r.try_get(7)?,
        decided_by: r.try_get(8)?,
        note: r.try_get(9)?,
        event_id: r.try_get(10)?,
        created_at_ms: r.try_get(11)?,
        updated_at_ms: r.try_get(12)?,
        decided_at_ms: r.try_get(13)?,
    })
}

fn audit_row(r: &AnyRow) -> Result<AuditEntry> {
    let detail: String = r.try_get(6)?;
    Ok(AuditEntry {
        id: r.try_get(0)?,
        actor: r.try_get(1)?,
        action: r.try_get(2)?,
        tenant_id: r.try_get(3)?,
        object_type: r.try_get(4)?,
        object_id: r.try_get(5)?,
        detail: parse_json(&detail)?,
        created_at_ms: r.try_get(7)?,
    })
}

impl FromStr for Backend {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" => Ok(Backend::Postgres),
            other => Err(StoreError::Config(format!("unknown backend {other}"))),
        }
    }
}

/// Creates database `name` in the PostgreSQL cluster of `admin_url` (without
/// migrating the admin database) and returns the new database's URL. Test
/// harnesses and benchmarks use it for a fresh database each.
pub async fn create_postgres_database(admin_url: &str, name: &str) -> Result<String> {
    use sqlx::Connection;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(StoreError::Config(format!(
            "database name {name:?} must be lowercase letters, digits and '_'"
        )));
    }
    let mut conn = sqlx::postgres::PgConnection::connect(admin_url).await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(admin_url);
    Ok(format!("{base}/{name}"))
}

/// Migrates the database at `url` only up to `version` (inclusive), without
/// opening a [`Store`]: upgrade tests seed an old schema with it.
#[doc(hidden)]
pub async fn migrate_to(url: &str, version: i64) -> Result<()> {
    sqlx::any::install_default_drivers();
    let backend = if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    let partial = migrator(backend, version);
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    partial.run(&pool).await.map_err(StoreError::Migrate)?;
    sqlx::raw_sql("SELECT 1").execute(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Runs statements on the database at `url` in one transaction, without
/// opening a [`Store`] (upgrade tests seed old schemas with it).
#[doc(hidden)]
pub async fn exec_raw(url: &str, statements: &[&str]) -> Result<()> {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let mut tx = pool.begin().await?;
    for st in statements {
        sqlx::query(st).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    pool.close().await;
    Ok(())
}

impl Store {
    /// Runs one administrative statement (tests create databases with it).
    #[doc(hidden)]
    pub async fn exec_admin(&self, sql: &str) -> Result<()> {
        sqlx::raw_sql(sql).execute(&self.pool).await?;
        Ok(())
    }
}
