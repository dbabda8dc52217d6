//! Fresh-database helpers shared by the store's test suites: every test gets
//! a new migrated SQLite file or a new PostgreSQL database.
//!
//! PostgreSQL comes from `FLEETSCALE_TEST_PG_URL` (an admin URL of a throwaway
//! cluster; `scripts/test.sh` starts one). Without it the PostgreSQL tests
//! fail loudly: they are never skipped.

use fleetscale_store::Store;

/// A temporary directory, removed with its contents when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh SQLite database in a new temporary directory; keep the directory
/// guard alive for as long as the store is used.
pub async fn sqlite() -> (Store, TempDir) {
    let dir = TempDir(std::env::temp_dir().join(format!("fs-conf-{}", uuid::Uuid::new_v4())));
    let store = Store::open_sqlite(&dir.0).await.expect("open sqlite");
    (store, dir)
}

/// The admin URL of the throwaway PostgreSQL cluster.
pub fn pg_admin_url() -> String {
    std::env::var("FLEETSCALE_TEST_PG_URL").expect(
        "FLEETSCALE_TEST_PG_URL is not set: run the tests through scripts/test.sh, which starts a throwaway PostgreSQL",
    )
}

/// A fresh, empty database in the throwaway PostgreSQL cluster: (name, URL).
pub async fn fresh_pg_database() -> (String, String) {
    let name = format!("fs_{}", uuid::Uuid::new_v4().simple());
    let url = fleetscale_store::create_postgres_database(&pg_admin_url(), &name)
        .await
        .expect("create database");
    (name, url)
}

/// A fresh database in the throwaway PostgreSQL cluster.
pub async fn postgres() -> Store {
    let (_, url) = fresh_pg_database().await;
    Store::open(&url).await.expect("open fresh database")
}

/// Runs each named `async fn(Store)` as a test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() {
                let (store, _dir) = $crate::common::sqlite().await;
                super::$name(store).await
            })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::postgres().await).await })*
        }
    };
}
