//! A newcomer's first hour, through the built binary: `serve` never spends
//! its one-time admin token on a start that cannot bind.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Scratch;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleetscale")
}

/// Starts `serve` on a free port over `data_dir` and answers the generated
/// admin token it prints, if any, before it says it is listening.
fn generated_token(data_dir: &std::path::Path) -> Option<String> {
    let port = support::free_port();
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir)
        .env_remove("FLEETSCALE_ADMIN_TOKEN")
        .env("FLEETSCALE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut token = None;
    let mut lines = stderr.lines();
    let mut next_is_token = false;
    while let Some(Ok(line)) = lines.next() {
        if next_is_token {
            token = Some(line.trim().to_string());
            next_is_token = false;
        }
        if line.starts_with("Generated admin token") {
            next_is_token = true;
        }
        if line.contains("listening on") || Instant::now() > deadline {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    token
}

#[test]
fn serve_on_a_taken_port_prints_no_token_and_keeps_it_for_the_next_start() {
    let scratch = Scratch::new("first-hour");
    let data = scratch.path("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(bin())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data)
        .env_remove("FLEETSCALE_ADMIN_TOKEN")
        .env("FLEETSCALE_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot serve on"), "{stderr}");
    assert!(!stderr.contains("admin token"), "{stderr}");
    drop(taken);
    // No token was stored by the failed start: the next one generates and
    // shows it, and the one after that does not show it again.
    let first = generated_token(&data);
    assert!(first.as_deref().is_some_and(|t| t.len() >= 20), "{first:?}");
    assert_eq!(generated_token(&data), None);
}
