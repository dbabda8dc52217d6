//! fleetscale-store: one storage interface over two real backends, SQLite
//! (the embedded default, a file in the data directory) and PostgreSQL.
//!
//! Both run the same versioned migrations (`migrations/`, portable SQL) and
//! the same queries through sqlx's `Any` driver; the few dialect differences
//! (row locks) are chosen by [`Backend`]. Every mutation writes its audit
//! entry in the same transaction. SQLite runs in WAL mode; the store's
//! connection commits with `synchronous=FULL` and the budget writer answers
//! only after an fdatasync of the WAL (see `budget::sqlite`), so an
//! acknowledged write survives a crash. It has two
//! connections: the store's (one sqlx connection) and the budget writer's own
//! (rusqlite, on its thread; see `budget::sqlite`); both begin their write
//! transactions `IMMEDIATE`, so writers queue on SQLite's lock and never
//! deadlock. PostgreSQL uses a pool and row locks.

mod alerts;
mod audit;
mod budget;
mod cache;
mod controller;
mod instances;
mod jobs;
mod leases;
mod pools;
mod proposals;
mod region_state;
mod routing;
mod routing_decisions;
mod routing_view;
mod samples;
mod scaling;
mod snapshots;
mod sql;
mod tenant_budget;
mod tenants;
mod tokens;
mod types;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

use cache::{OwnerCache, SeriesCache};

pub use alerts::Alert;
pub use budget::*;
pub use cache::{OWNER_CACHE_MAX, SERIES_CACHE_MAX};
pub use instances::InstanceSample;
pub use jobs::{
    budget_covers, jobs_in_queue, throughput_per_min, JobRegionFacts, JobStatus, JobWorld,
    RoutedJob, QUEUE_DEPTH_METRIC, THROUGHPUT_WINDOW_MS, UNMEASURED_CAPACITY_SCORE,
};
pub use leases::Fence;
pub use region_state::{RegionModeEvent, RegionSample, StoredRegionState};
pub use routing::{
    spare_instances, EjectionState, RouteWorld, TenantPolicy, REGION_LATENCY_METRIC,
};
pub use routing_decisions::{
    RecordedContext, RecordedInput, RouteContext, RouteRequest, RoutingFilter, RoutingRecord,
};
pub use routing_view::{RoutingSnapshot, SnapshotRegion, TenantRouting};
pub use scaling::{ScaleOutcome, ScaleRequest};
pub use snapshots::{RegionSnapshot, SnapshotRequest};
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

/// Current wall-clock time in Unix milliseconds (the shell's clock).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The storage interface of fleetscale.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// pool id → metric → series id, for series known to exist (at most
    /// [`SERIES_CACHE_MAX`]).
    series: std::sync::Arc<std::sync::Mutex<SeriesCache>>,
    /// Pool id → (tenant id, when read): a pool never changes tenant, so
    /// ingestion checks ownership without a query; entries live
    /// [`pools::OWNER_CACHE_TTL`] so a pool deleted through another replica is
    /// forgotten soon (at most [`OWNER_CACHE_MAX`] pools).
    owners: std::sync::Arc<std::sync::Mutex<OwnerCache>>,
    /// SQLite: the database file (the budget writer opens its own connection).
    sqlite_path: Option<std::sync::Arc<std::path::PathBuf>>,
    /// The database URL (the budget writer opens its own connection).
    url: DbUrl,
    /// Writes through this store that the routing view reads (see
    /// [`Store::view_changes`]).
    view_changes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// A database URL, kept out of `Debug` output (it may hold a password).
#[derive(Clone)]
struct DbUrl(std::sync::Arc<str>);

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbUrl(..)")
    }
}

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
            view_changes: Default::default(),
        };
        migrator(backend, i64::MAX)
            .run(&store.pool)
            .await
            .map_err(StoreError::Migrate)?;
        Ok(store)
    }

    /// How many writes this process made through this store (and its
    /// clones) to what the routing view reads: tenants, their region and
    /// routing policies, regions and their stored states, pools and their
    /// desired capacity, metric and region samples, ejections. Counted
    /// after each such write commits, so a view loaded after reading a
    /// count `n` (see `RoutingSnapshot`) holds every such write counted up
    /// to `n`. Writes made by other processes are not counted.
    pub fn view_changes(&self) -> u64 {
        self.view_changes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Counts one committed write that the routing view reads.
    pub(crate) fn view_changed(&self) {
        self.view_changes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
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
        self.view_changed();
        Ok(())
    }

    /// The number of rows of `table` (a table name; tests check storage
    /// layouts with it).
    #[doc(hidden)]
    pub async fn count_rows(&self, table: &str) -> Result<i64> {
        use sqlx::Row;
        if !table.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(StoreError::Config(format!("not a table name: {table:?}")));
        }
        let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}
