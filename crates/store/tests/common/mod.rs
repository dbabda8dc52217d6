//! Fresh-database helpers shared by the store's test suites: every test gets
//! a new migrated SQLite file or a new PostgreSQL database.
//!
//! PostgreSQL comes from `FLEETSCALE_TEST_PG_URL` (an admin URL of a throwaway
//! cluster; `scripts/test.sh` starts one). Without it the PostgreSQL tests
//! fail loudly: they are never skipped.

use fleetscale_store::Store;

/// A fresh SQLite database in a new temporary directory.
pub async fn sqlite() -> Store {
    let dir = std::env::temp_dir().join(format!("fs-conf-{}", uuid::Uuid::new_v4()));
    Store::open_sqlite(&dir).await.expect("open sqlite")
}

/// A fresh database in the throwaway PostgreSQL cluster.
pub async fn postgres() -> Store {
    let admin = std::env::var("FLEETSCALE_TEST_PG_URL").expect(
        "FLEETSCALE_TEST_PG_URL is not set: run the tests through scripts/test.sh, which starts a throwaway PostgreSQL",
    );
    let name = format!("fs_{}", uuid::Uuid::new_v4().simple());
    let url = fleetscale_store::create_postgres_database(&admin, &name)
        .await
        .expect("create database");
    Store::open(&url).await.expect("open fresh database")
}

/// Runs each named `async fn(Store)` as a test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::sqlite().await).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::postgres().await).await })*
        }
    };
}
