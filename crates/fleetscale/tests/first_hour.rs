//! A newcomer's first hour, through the built binary: `serve` never spends
//! its one-time admin token on a start that cannot bind; its help documents
//! every environment variable; no user-facing text (help, README, docs, the
//! API document) names a seed document.

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

/// `fleetscale ARGS --help`, as text.
fn help(args: &[String]) -> String {
    let out = Command::new(bin())
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommand names listed in a help text's `Commands:` section.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Where `text` names a seed document ("phase 66", "phase-93", "GRH", "the
/// seed's ..."): the offending lines.
fn seed_names(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            let phase = lower.match_indices("phase").any(|(i, _)| {
                let rest = lower[i + 5..].trim_start_matches([' ', '-', '_']);
                rest.starts_with(|c: char| c.is_ascii_digit())
            });
            phase || l.contains("GRH") || lower.contains("seed's") || lower.contains("seed default")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn no_user_facing_text_names_a_seed_document() {
    let mut offending = Vec::new();
    // Every command's help, recursively.
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        let h = help(&path);
        seen += 1;
        offending.extend(seed_names(&h).into_iter().map(|l| format!("{path:?}: {l}")));
        for c in subcommands(&h) {
            let mut p = path.clone();
            p.push(c);
            queue.push(p);
        }
    }
    assert!(seen > 30, "only {seen} help texts found");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut docs = vec![root.join("README.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        docs.push(e.unwrap().path());
    }
    for d in docs
        .iter()
        .filter(|d| d.extension().is_some_and(|x| x == "md"))
    {
        let text = std::fs::read_to_string(d).unwrap();
        offending.extend(
            seed_names(&text)
                .into_iter()
                .map(|l| format!("{}: {l}", d.display())),
        );
    }
    let (_, doc) = fleetscale_server::http::api();
    let doc = serde_json::to_string_pretty(&doc).unwrap();
    offending.extend(
        seed_names(&doc)
            .into_iter()
            .map(|l| format!("openapi: {l}")),
    );
    assert!(offending.is_empty(), "{}", offending.join("\n"));
}

#[test]
fn serve_help_documents_every_environment_variable() {
    let h = help(&["serve".to_string()]);
    for var in [
        "FLEETSCALE_ADMIN_TOKEN",
        "FLEETSCALE_DATABASE_URL",
        "FLEETSCALE_WEBHOOK_SECRET",
        "FLEETSCALE_HEADER_READ_TIMEOUT",
        "FLEETSCALE_BODY_READ_TIMEOUT",
        "FLEETSCALE_IDLE_TIMEOUT",
        "FLEETSCALE_MAX_CONNECTIONS",
        "FLEETSCALE_LOG",
    ] {
        assert!(h.contains(var), "serve --help does not name {var}:\n{h}");
    }
    let h = help(&["demo".to_string()]);
    for var in [
        "FLEETSCALE_ADMIN_TOKEN",
        "FLEETSCALE_LOG",
        "FLEETSCALE_MAX_CONNECTIONS",
    ] {
        assert!(h.contains(var), "demo --help does not name {var}:\n{h}");
    }
}

/// Starts `demo` over `data_dir` and answers the block it prints after
/// "Next, in another shell:" (the lines to paste), then stops it.
fn demo_next_steps(data_dir: &std::path::Path, run: impl FnOnce(&[String])) -> Vec<String> {
    let port = support::free_port();
    let mut child = Command::new(bin())
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tick",
            "1s",
            "--data-dir",
        ])
        .arg(data_dir)
        .env_remove("FLEETSCALE_ADMIN_TOKEN")
        .env("FLEETSCALE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut block = Vec::new();
        let mut inside = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("Next, in another shell:") {
                inside = true;
            } else if inside && line.starts_with("  ") {
                block.push(line.trim().to_string());
            } else if inside {
                break;
            }
        }
        let _ = tx.send(block);
    });
    let block = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("the demo printed no next steps");
    run(&block);
    let _ = child.kill();
    let _ = child.wait();
    block
}

#[test]
fn the_demos_printed_next_steps_work_pasted_into_a_new_shell() {
    let scratch = Scratch::new("first-hour-demo");
    let data = scratch.path("demo-data");
    let block = demo_next_steps(&data, |block| {
        assert!(
            block.iter().any(
                |l| l.starts_with("export FLEETSCALE_SERVER=http://127.0.0.1:")
                    && l.contains(" FLEETSCALE_TOKEN=")
            ),
            "{block:?}"
        );
        let commands: Vec<&String> = block.iter().filter(|l| !l.starts_with('#')).collect();
        assert!(commands.len() >= 4, "{block:?}");
        // A new shell: nothing of this process's environment but the PATH.
        let script = format!(
            "set -e\n{}\n",
            commands
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{script}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("chat"),
            "the pools list shows the demo's agent types: {stdout}"
        );
    });
    assert!(!block.is_empty());
    // A restart on the same data directory cannot show the token again: it
    // says how to get one.
    let again = demo_next_steps(&data, |_| {});
    assert!(
        again.iter().any(|l| l.contains("FLEETSCALE_ADMIN_TOKEN=")),
        "{again:?}"
    );
    assert!(
        again.iter().any(|l| l.contains("fresh --data-dir")),
        "{again:?}"
    );
}

#[test]
fn metrics_push_refuses_nan_locally_and_parses_negative_numbers() {
    // No server listens here: a value that parses fails only on connecting.
    let server = format!("http://127.0.0.1:{}", support::free_port());
    let push = |value: &str| {
        let out = Command::new(bin())
            .args(["metrics", "push", "--pool-id", "p1", "--value", value])
            .env("FLEETSCALE_SERVER", &server)
            .env("FLEETSCALE_TOKEN", "t")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    for bad in ["NaN", "inf", "-inf"] {
        let e = push(bad);
        assert!(e.contains("finite"), "{bad}: {e}");
    }
    let e = push("-1");
    assert!(
        !e.contains("unexpected argument") && !e.contains("finite"),
        "{e}"
    );
}
