//! Black-box budget test against the built binary on embedded SQLite (the
//! default deployment): 16 concurrent clients send region spends and
//! hard-limited tenant provider usage records, both budgets run out mid-test,
//! the server is SIGKILLed mid-load and restarted on the same data directory.
//! Every acknowledged spend and usage record must be in its ledger, nothing
//! unacknowledged may be charged, remaining = allocation − charged, and both
//! ledger checks (API and CLI) must pass.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::{client, free_port, fresh_sqlite, get, post, region_with_budget, Replica, Rng};

const BIN: &str = env!("CARGO_BIN_EXE_fleetscale");

/// Operations in all: even ones are region spends, odd ones usage records.
const OPS: usize = 3_000;
const CLIENTS: usize = 16;
/// Region allocation, cents: spends of 1..=40 cents (~30,750 demanded).
const ALLOCATION_CENTS: i64 = 20_000;
/// Claude allocation of the tenant, tokens: records of 1..=40 tokens.
const ALLOCATION_TOKENS: i64 = 20_000;
const SEED: u64 = 0x0051_17e0_b0d6;

/// What the clients saw, per operation index: (id, amount) of acknowledged ones.
type Acked = Arc<Mutex<HashMap<usize, (String, i64)>>>;

async fn paged(http: &reqwest::Client, first: &str, mut take: impl FnMut(&Value)) {
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{first}&cursor={c}"),
            None => first.to_string(),
        };
        let page = get(http, &url).await;
        for item in page["items"].as_array().expect("a list page") {
            take(item);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_sigkill_mid_load_keeps_region_and_provider_budgets_exact() {
    let db = fresh_sqlite();
    let mut server = Replica::start(BIN, &db.url, free_port()).await;
    let url = server.url();
    let http = client();
    let region = region_with_budget(&http, &url, ALLOCATION_CENTS).await;
    let (s, t) = post(
        &http,
        &format!("{url}/api/v1/tenants"),
        &json!({"name": "sigkill"}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{t}");
    let tenant = t["id"].as_str().unwrap().to_string();
    let tb = format!("{url}/api/v1/budgets/tenants/{tenant}");
    let res = http
        .put(format!("{tb}/providers/claude"))
        .bearer_auth(support::TOKEN)
        .json(&json!({"allocation_units": ALLOCATION_TOKENS, "hard_limit": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);

    let mut rng = Rng(SEED);
    let amounts: Arc<Vec<i64>> = Arc::new((0..OPS).map(|_| rng.amount(40)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let spends: Acked = Arc::default();
    let usages: Acked = Arc::default();
    let refused = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (http, url, region, tenant) =
            (http.clone(), url.clone(), region.clone(), tenant.clone());
        let (amounts, next, spends, usages, refused) = (
            amounts.clone(),
            next.clone(),
            spends.clone(),
            usages.clone(),
            refused.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= OPS {
                    return;
                }
                let spend = i % 2 == 0;
                let (path, body) = if spend {
                    (
                        format!("{url}/api/v1/regions/{region}/budget/spend"),
                        json!({"amount_cents": amounts[i], "job_type": "creative", "idempotency_key": format!("op-{i}")}),
                    )
                } else {
                    (
                        format!("{url}/api/v1/budgets/tenants/{tenant}/usage"),
                        json!({"provider": "claude", "units": amounts[i], "job_type": "creative", "idempotency_key": format!("op-{i}")}),
                    )
                };
                let mut attempt = 0usize;
                loop {
                    attempt += 1;
                    match post(&http, &path, &body).await {
                        Ok((200, v)) => {
                            let (id, amount) = if spend {
                                (&v["transaction_id"], &v["charged_cents"])
                            } else {
                                (&v["usage_id"], &v["units"])
                            };
                            assert_eq!(amount, amounts[i], "seed {SEED:#x}: {v}");
                            let acked = if spend { &spends } else { &usages };
                            acked
                                .lock()
                                .unwrap()
                                .insert(i, (id.as_str().unwrap().to_string(), amounts[i]));
                            break;
                        }
                        Ok((409, v)) => {
                            let code = if spend { "insufficient_budget" } else { "provider_budget_exceeded" };
                            assert_eq!(v["code"], code, "seed {SEED:#x}: {v}");
                            refused[usize::from(!spend)].fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        // The killed server: connection errors, or 503 for a failed batch.
                        Ok((503, _)) | Err(_) => {
                            assert!(attempt < 1_500, "op {i} never got an answer");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Ok((s, v)) => panic!("seed {SEED:#x}: op {i}: unexpected {s}: {v}"),
                    }
                }
            }
        }));
    }
    while next.load(Ordering::Relaxed) < OPS / 3 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let before = (spends.lock().unwrap().len(), usages.lock().unwrap().len());
    server.kill9();
    server.restart().await;
    for t in tasks {
        t.await.unwrap();
    }
    let spends = spends.lock().unwrap().clone();
    let usages = usages.lock().unwrap().clone();
    let refused = [
        refused[0].load(Ordering::Relaxed),
        refused[1].load(Ordering::Relaxed),
    ];
    let charged: i64 = spends.values().map(|(_, c)| c).sum();
    let used: i64 = usages.values().map(|(_, u)| u).sum();
    eprintln!(
        "{OPS} operations in {:?}: {} spends ({charged} cents), {} usage records ({used} tokens), refused {refused:?}; acknowledged before the SIGKILL {before:?}",
        started.elapsed(),
        spends.len(),
        usages.len(),
    );
    assert_eq!(spends.len() + usages.len() + refused[0] + refused[1], OPS);
    assert!(
        refused[0] > 0 && refused[1] > 0,
        "both budgets must run out"
    );
    assert!(charged <= ALLOCATION_CENTS && used <= ALLOCATION_TOKENS);

    // Region budget: balance, ledger check, every acknowledged spend and nothing else.
    let b = get(&http, &format!("{url}/api/v1/regions/{region}/budget")).await;
    assert_eq!(b["remaining_cents"], ALLOCATION_CENTS - charged, "{b}");
    // The month's forecast at the rate so far: the whole month spends at
    // least what was spent; a budget that ran out has an exhaustion time
    // (one with cents left may last past the month's end if this runs in
    // its last minutes).
    let f = &b["forecast"];
    assert!(
        f["projected_month_spend_cents"].as_i64().unwrap()
            >= b["spent_this_month_cents"].as_i64().unwrap(),
        "{b}"
    );
    if b["remaining_cents"] == 0 {
        assert!(f["exhausted_at"].is_string(), "{b}");
    } else {
        assert!(
            f["exhausted_at"].is_string() || f["exhausted_at"].is_null(),
            "{b}"
        );
    }
    let report = get(
        &http,
        &format!("{url}/api/v1/regions/{region}/budget/ledger-check"),
    )
    .await;
    assert_eq!(report["ok"], true, "{report}");
    let mut ledger: HashMap<String, i64> = HashMap::new();
    paged(
        &http,
        &format!("{url}/api/v1/regions/{region}/budget/transactions?limit=1000"),
        |t| {
            if t["transaction_type"] == "spend" {
                ledger.insert(
                    t["id"].as_str().unwrap().into(),
                    t["amount_cents"].as_i64().unwrap(),
                );
            }
        },
    )
    .await;
    for (i, (id, c)) in &spends {
        assert_eq!(
            ledger.get(id),
            Some(c),
            "acknowledged spend {i} ({id}) lost"
        );
    }
    assert_eq!(
        ledger.len(),
        spends.len(),
        "a spend was charged without acknowledgement"
    );

    // Provider budget: usage, remaining, ledger check, every acknowledged record and nothing else.
    let p = get(&http, &format!("{tb}/providers/claude")).await;
    assert_eq!(p["used_units"], used, "{p}");
    assert_eq!(p["remaining_units"], ALLOCATION_TOKENS - used, "{p}");
    assert_eq!(p["entries"], usages.len());
    let mut records: HashMap<String, i64> = HashMap::new();
    paged(&http, &format!("{tb}/usage?limit=1000"), |u| {
        records.insert(
            u["id"].as_str().unwrap().into(),
            u["units"].as_i64().unwrap(),
        );
    })
    .await;
    for (i, (id, u)) in &usages {
        assert_eq!(
            records.get(id),
            Some(u),
            "acknowledged usage {i} ({id}) lost"
        );
    }
    assert_eq!(
        records.len(),
        usages.len(),
        "usage recorded without acknowledgement"
    );
    let ids: HashSet<&String> = usages.values().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), usages.len(), "one record per key");
    let check = get(&http, &format!("{tb}/ledger-check")).await;
    assert_eq!(check["ok"], true, "{check}");

    // The CLI agrees (exit 0 and the same figures).
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .args([
                "--server",
                &url,
                "--token",
                support::TOKEN,
                "--output",
                "json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(
        cli(&["budgets", "tenant", "check-ledger", &tenant])["ok"],
        true
    );
    let shown = cli(&["budgets", "tenant", "show", &tenant]);
    assert_eq!(shown["providers"][0]["used_units"], used);
    assert_eq!(cli(&["budgets", "check-ledger", &region])["ok"], true);
    // The table view ends with the month's forecast.
    let out = std::process::Command::new(BIN)
        .args(["budgets", "show", &region, "--server", &url])
        .args(["--token", support::TOKEN])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("forecast: ") && table.contains("cents this month at the rate so far"),
        "{table}"
    );
}
