//! Black-box harness shared by the binary's tests and the budget benchmark:
//! scratch directories removed when dropped, fresh databases, server
//! replicas as child processes of the built binary, and a spend client.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The admin token the replicas are started with.
pub const TOKEN: &str = "e2e-admin-token";

/// A fresh database in the throwaway PostgreSQL cluster of `FLEETSCALE_TEST_PG_URL`.
pub async fn fresh_pg_url() -> String {
    let admin = std::env::var("FLEETSCALE_TEST_PG_URL").expect(
        "FLEETSCALE_TEST_PG_URL is not set: run the tests through scripts/test.sh, which starts a throwaway PostgreSQL",
    );
    let name = unique("fs_e2e", '_');
    fleetscale_store::create_postgres_database(&admin, &name)
        .await
        .expect("create database")
}

/// `prefix`, this process's id, a per-process counter and the time in ns,
/// joined by `sep`: a name no other test of any run has used (the counter
/// keeps two threads apart when they read the same clock value).
fn unique(prefix: &str, sep: char) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{sep}{}{sep}{n}{sep}{ns}", std::process::id())
}

/// A new temporary directory, removed with everything in it when dropped.
pub struct Scratch {
    dir: std::path::PathBuf,
}

impl Scratch {
    /// A new directory named after `prefix`, this process and the time.
    pub fn new(prefix: &str) -> Scratch {
        let dir = std::env::temp_dir().join(unique(prefix, '-'));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    /// The directory itself.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The path of `name` inside the directory.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh SQLite database in a new temporary directory, removed with it
/// when dropped (declare it before the replicas that use it, so they are
/// stopped first). A bench run leaves ~70 MB of database behind otherwise.
pub struct TempSqlite {
    /// The database URL to start replicas with.
    pub url: String,
    _dir: Scratch,
}

/// A fresh SQLite database (see [`TempSqlite`]).
pub fn fresh_sqlite() -> TempSqlite {
    let dir = Scratch::new("fs-e2e");
    TempSqlite {
        url: format!("sqlite://{}?mode=rwc", dir.path("fleetscale.db").display()),
        _dir: dir,
    }
}

/// A free local port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One server replica (a child process), killed with SIGKILL on drop.
pub struct Replica {
    /// Its port.
    pub port: u16,
    db: String,
    bin: String,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Replica {
    /// Starts `bin serve` on `port` against `db` and waits until it is ready.
    pub async fn start(bin: &str, db: &str, port: u16) -> Replica {
        Replica::start_with(bin, db, port, &[]).await
    }

    /// [`Replica::start`] with `extra` arguments to `serve` (an actuator,
    /// say).
    pub async fn start_with(bin: &str, db: &str, port: u16, extra: &[&str]) -> Replica {
        let mut r = Replica {
            port,
            db: db.to_string(),
            bin: bin.to_string(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        r.restart().await;
        r
    }

    /// The process id of the running server, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL (no graceful shutdown).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again on the same port and waits until it is ready.
    pub async fn restart(&mut self) {
        self.kill9();
        let child = Command::new(&self.bin)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--database-url",
                &self.db,
            ])
            // A 1 s tick unless the extra arguments name one.
            .args(if self.extra.iter().any(|a| a == "--tick") {
                &[][..]
            } else {
                &["--tick", "1s"][..]
            })
            .args(&self.extra)
            .env("FLEETSCALE_ADMIN_TOKEN", TOKEN)
            .env("FLEETSCALE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the fleetscale binary");
        self.child = Some(child);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.url())).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "replica on port {} did not become ready",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An HTTP client for the API with the admin token.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()
        .unwrap()
}

/// POST with the admin token; returns status and JSON body.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<(u16, Value), reqwest::Error> {
    let r = http.post(url).bearer_auth(TOKEN).json(body).send().await?;
    let status = r.status().as_u16();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, v))
}

/// GET with the admin token.
pub async fn get(http: &reqwest::Client, url: &str) -> Value {
    http.get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Creates a region whose first monthly budget is `cents` (allocated by the
/// region's creation); returns the region id.
pub async fn region_with_budget(http: &reqwest::Client, base: &str, cents: i64) -> String {
    let name = format!("bench-{}", free_port());
    let (s, r) = post(
        http,
        &format!("{base}/api/v1/regions"),
        &json!({"name": name, "jurisdiction": "eu", "monthly_budget_cents": cents}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["monthly_budget_cents"], cents, "{r}");
    r["id"].as_str().unwrap().to_string()
}

/// A small deterministic generator (xorshift64*), so failures replay from the seed.
pub struct Rng(pub u64);

impl Rng {
    /// The next value in `1..=max`.
    pub fn amount(&mut self, max: u64) -> i64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % max + 1) as i64
    }
}
