//! The engine test harness shared by the engine's test files: a scratch
//! SQLite store removed when the test ends, and a local webhook receiver.

// Each test file is its own crate and uses only some of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use fleetscale_engine::{Actuator, WebhookConfig};
use fleetscale_store::Store;

/// A scratch SQLite database removed when the test ends.
pub struct Db {
    /// The store over it.
    pub store: Store,
    dir: PathBuf,
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh SQLite store in a new temporary directory named after `name`.
pub async fn db(name: &str) -> Db {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("fs-engine-{name}-{}-{nanos}", std::process::id()));
    let store = Store::open_sqlite(&dir).await.unwrap();
    Db { store, dir }
}

/// A webhook receiver on a local port: every request's head (lower-cased)
/// and body, in order of arrival; each is answered 200.
pub async fn webhook_receiver() -> (String, tokio::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap_or(0));
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = buf[head_end..].to_vec();
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = tx.send((head, body)).await;
            });
        }
    });
    (url, rx)
}

/// A webhook actuator posting to `url`, signed with `secret`, one attempt.
pub fn webhook(url: String, secret: &str) -> Actuator {
    Actuator::webhook(WebhookConfig {
        url,
        secret: secret.into(),
        timeout: Duration::from_secs(5),
        max_attempts: 1,
        backoff: Duration::from_millis(10),
    })
    .unwrap()
}
