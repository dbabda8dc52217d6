//! Black-box budget tests against the built binary on PostgreSQL (from
//! `FLEETSCALE_TEST_PG_URL`; without it these tests fail, never skip):
//! two replicas, 64 concurrent clients, 50,000 random spends against a
//! budget that runs out mid-test, both replicas SIGKILLed mid-load and
//! restarted; 1,000 concurrent retries of one idempotency key; bad input.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::{client, free_port, fresh_pg_url, get, post, region_with_budget, Replica, Rng};

const BIN: &str = env!("CARGO_BIN_EXE_fleetscale");

const SPENDS: usize = 50_000;
const CLIENTS: usize = 64;
const ALLOCATION: i64 = 1_500_000;
const SEED: u64 = 0x005e_edb0_d6e7;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_sigkill_mid_load_keep_budgets_exact() {
    let db = fresh_pg_url().await;
    let mut replicas = vec![
        Replica::start(BIN, &db, free_port()).await,
        Replica::start(BIN, &db, free_port()).await,
    ];
    let urls: Vec<String> = replicas.iter().map(Replica::url).collect();
    let http = client();
    let region = region_with_budget(&http, &urls[0], ALLOCATION).await;
    // Amounts 1..=100 cents: ~2.5M cents of demand against 1.5M allocated.
    let mut rng = Rng(SEED);
    let amounts: Arc<Vec<i64>> = Arc::new((0..SPENDS).map(|_| rng.amount(100)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    // key index → (transaction id, charged) for every acknowledged spend.
    let charged: Arc<Mutex<HashMap<usize, (String, i64)>>> = Arc::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, urls, region) = (http.clone(), urls.clone(), region.clone());
        let (amounts, next, acked, charged, refused) = (
            amounts.clone(),
            next.clone(),
            acked.clone(),
            charged.clone(),
            refused.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= SPENDS {
                    return;
                }
                let body = json!({"amount_cents": amounts[i], "job_type": "creative", "idempotency_key": format!("spend-{i}")});
                let mut attempt = 0usize;
                loop {
                    // Retries go to the other replica too: the key makes that safe.
                    let url = &urls[(c + attempt) % urls.len()];
                    attempt += 1;
                    match post(&http, &format!("{url}/api/v1/regions/{region}/budget/spend"), &body).await {
                        Ok((200, v)) => {
                            assert_eq!(v["charged_cents"], amounts[i], "seed {SEED:#x}");
                            charged.lock().unwrap().insert(
                                i,
                                (v["transaction_id"].as_str().unwrap().to_string(), amounts[i]),
                            );
                            acked.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Ok((409, v)) => {
                            assert_eq!(v["code"], "insufficient_budget", "seed {SEED:#x}: {v}");
                            refused.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        // A killed replica: connection errors, or 503 for a failed batch.
                        Ok((503, _)) | Err(_) => {
                            assert!(attempt < 2_000, "spend {i} never got an answer");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Ok((s, v)) => panic!("seed {SEED:#x}: unexpected {s}: {v}"),
                    }
                }
            }
        }));
    }
    // SIGKILL both replicas mid-load (after a third of the spends), then restart them.
    while next.load(Ordering::Relaxed) < SPENDS / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before_kill = acked.load(Ordering::Relaxed);
    for r in &mut replicas {
        r.kill9();
    }
    for r in &mut replicas {
        r.restart().await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let charged = charged.lock().unwrap().clone();
    let total: i64 = charged.values().map(|(_, c)| c).sum();
    eprintln!(
        "{} spends in {elapsed:?}: {} charged ({total} cents), {} refused, {before_kill} acknowledged before the SIGKILL",
        SPENDS,
        charged.len(),
        refused.load(Ordering::Relaxed)
    );
    assert_eq!(charged.len() + refused.load(Ordering::Relaxed), SPENDS);
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the budget must run out mid-test"
    );
    assert!(
        total <= ALLOCATION,
        "charged {total} > allocation {ALLOCATION}"
    );

    // The balances, on both replicas.
    for url in &urls {
        let b = get(&http, &format!("{url}/api/v1/regions/{region}/budget")).await;
        assert_eq!(b["remaining_cents"], ALLOCATION - total, "{b}");
        assert_eq!(b["monthly_cents"], ALLOCATION);
    }
    // The ledger recomputes to the stored balance.
    let report = get(
        &http,
        &format!("{}/api/v1/regions/{region}/budget/ledger-check", urls[1]),
    )
    .await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["recomputed"]["remaining_cents"], ALLOCATION - total);
    // Every acknowledged spend is in the ledger, and nothing else was charged.
    let mut ledger: HashMap<String, i64> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!(
            "{}/api/v1/regions/{region}/budget/transactions?limit=1000",
            urls[0]
        );
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = get(&http, &url).await;
        for t in page["items"].as_array().unwrap() {
            if t["transaction_type"] == "spend" {
                ledger.insert(
                    t["id"].as_str().unwrap().into(),
                    t["amount_cents"].as_i64().unwrap(),
                );
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let acked_ids: HashSet<&String> = charged.values().map(|(id, _)| id).collect();
    assert_eq!(acked_ids.len(), charged.len(), "one transaction per key");
    for (i, (id, c)) in &charged {
        assert_eq!(
            ledger.get(id),
            Some(c),
            "acknowledged spend {i} ({id}) lost"
        );
    }
    assert_eq!(
        ledger.len(),
        charged.len(),
        "a spend was charged without acknowledgement"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_retried_1000_times_concurrently_charges_once() {
    let db = fresh_pg_url().await;
    let replicas = [
        Replica::start(BIN, &db, free_port()).await,
        Replica::start(BIN, &db, free_port()).await,
    ];
    let http = client();
    let region = region_with_budget(&http, &replicas[0].url(), 100_000).await;
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let url = format!(
            "{}/api/v1/regions/{region}/budget/spend",
            replicas[i % 2].url()
        );
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            post(
                &http,
                &url,
                &json!({"amount_cents": 777, "job_type": "intel", "idempotency_key": "the-one"}),
            )
            .await
            .unwrap()
        }));
    }
    let mut ids = HashSet::new();
    let mut fresh = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["charged_cents"], 777);
        assert_eq!(v["balance_after_cents"], 100_000 - 777);
        ids.insert(v["transaction_id"].as_str().unwrap().to_string());
        if v["replayed"] == false {
            fresh += 1;
        }
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(fresh, 1);
    let b = get(
        &http,
        &format!("{}/api/v1/regions/{region}/budget", replicas[1].url()),
    )
    .await;
    assert_eq!(b["remaining_cents"], 100_000 - 777);
    assert_eq!(b["transactions"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_budget_input_is_a_clear_4xx() {
    let db = fresh_pg_url().await;
    let r = Replica::start(BIN, &db, free_port()).await;
    let http = client();
    let base = r.url();
    let region = region_with_budget(&http, &base, 1_000).await;
    let spend_url = format!("{base}/api/v1/regions/{region}/budget/spend");
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"amount_cents": -5, "job_type": "x"}),
            422,
            "positive",
        ),
        (json!({"amount_cents": 0, "job_type": "x"}), 422, "positive"),
        (
            json!({"amount_cents": 1.5, "job_type": "x"}),
            422,
            "whole number",
        ),
        (
            json!({"amount_cents": "10", "job_type": "x"}),
            422,
            "not a string",
        ),
        (
            json!({"amount_cents": 9223372036854775807i64, "job_type": "x"}),
            422,
            "overflow",
        ),
        (
            json!({"amount_cents": 18446744073709551615u64, "job_type": "x"}),
            422,
            "overflow",
        ),
        (json!({"job_type": "x"}), 422, "required"),
        (
            json!({"amount_cents": 5, "job_type": "x", "idempotency_key": ""}),
            422,
            "idempotency_key",
        ),
        (
            json!({"amount_cents": 5000, "job_type": "x"}),
            409,
            "insufficient budget",
        ),
    ];
    for (body, status, needle) in cases {
        let (s, v) = post(&http, &spend_url, &body).await.unwrap();
        assert_eq!(s, status, "{body} → {v}");
        assert!(
            v["detail"].as_str().unwrap().contains(needle),
            "{body} → {v}"
        );
    }
    // Huge literals that do not fit any integer type, or any number type.
    for body in [
        r#"{"amount_cents": 100000000000000000000000000000, "job_type": "x"}"#,
        r#"{"amount_cents": 1e400, "job_type": "x"}"#,
    ] {
        let res = http
            .post(&spend_url)
            .bearer_auth(support::TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 422, "{body}");
        let v: serde_json::Value = res.json().await.unwrap();
        assert!(v.to_string().contains("amount_cents"), "{body}: {v}");
    }
    let (s, v) = post(
        &http,
        &format!("{base}/api/v1/regions/nowhere/budget/spend"),
        &json!({"amount_cents": 1, "job_type": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(
        (s, v["detail"].as_str().unwrap()),
        (404, "region not found")
    );
    // A refund above the original spend.
    let (_, sp) = post(
        &http,
        &spend_url,
        &json!({"amount_cents": 300, "job_type": "x"}),
    )
    .await
    .unwrap();
    let refund_url = format!("{base}/api/v1/regions/{region}/budget/refund");
    let (s, v) = post(
        &http,
        &refund_url,
        &json!({"transaction_id": sp["transaction_id"], "amount_cents": 301}),
    )
    .await
    .unwrap();
    assert_eq!(s, 422, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("exceeds the 300 cents"),
        "{v}"
    );
    let (s, _) = post(
        &http,
        &refund_url,
        &json!({"transaction_id": "missing", "amount_cents": 1}),
    )
    .await
    .unwrap();
    assert_eq!(s, 404);
    // An allocation that would overflow the balance.
    let alloc_url = format!("{base}/api/v1/regions/{region}/budget/allocate");
    let (s, v) = post(
        &http,
        &alloc_url,
        &json!({"amount_cents": 1_000_000_000_001i64}),
    )
    .await
    .unwrap();
    assert_eq!(s, 422, "{v}");
    let b = get(&http, &format!("{base}/api/v1/regions/{region}/budget")).await;
    assert_eq!(b["remaining_cents"], 700, "bad input charged nothing");
}
