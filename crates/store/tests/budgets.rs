//! Budget conformance on both backends: allocation, atomic spend, refunds
//! bounded by their spend, idempotency, reservations with expiry, resets,
//! stats, and ledger recomputation — including under concurrency.

use fleetscale_core::budget::{BudgetError, Provider, ResetPeriod, DAY_MS};
use fleetscale_store::{
    now_ms, BudgetOp, Budgets, LedgerError, Page, Store, StoreError, TxOutcome, UsageRequest,
};

#[macro_use]
mod common;

conformance!(
    allocate_spend_refund_and_ledger_recomputes,
    spend_is_refused_without_budget_and_charges_nothing,
    idempotent_retries_charge_once,
    a_retry_through_another_writer_replays,
    refund_never_exceeds_its_spend,
    reservations_commit_release_and_expire,
    resets_follow_the_schedule_and_are_idempotent,
    an_operation_in_a_new_period_resets_first,
    a_refund_goes_back_to_the_period_that_paid,
    concurrent_spends_never_overdraw,
    budget_batches_interleave_with_other_store_writes,
    budget_reads_decode_their_columns_by_name,
);

async fn region(s: &Store) -> (Budgets, String) {
    let r = s
        .create_region(
            &format!("r-{}", uuid::Uuid::new_v4().simple()),
            "eu",
            "test",
        )
        .await
        .unwrap();
    (Budgets::start(s.clone()), r.id)
}

/// 2024-01-31T12:00:00Z.
const JAN31: i64 = 1_706_702_400_000;

/// A new region allocated 1,000 cents on [`JAN31`] and charged `spent` by
/// one spend that day; returns the spend too.
async fn january_region(s: &Store, spent: i64) -> (Budgets, String, TxOutcome) {
    let (b, r) = region(s).await;
    b.apply_one(&r, allocate(1_000), "admin", JAN31)
        .await
        .unwrap();
    let o = b
        .apply_one(&r, spend(spent, None), "op", JAN31)
        .await
        .unwrap();
    (b, r, o)
}

fn spend(amount: i64, key: Option<&str>) -> BudgetOp {
    BudgetOp::Spend {
        amount_cents: amount,
        job_type: "creative".into(),
        agency_id: Some("agency-1".into()),
        idempotency_key: key.map(str::to_string),
        description: None,
    }
}

fn allocate(amount: i64) -> BudgetOp {
    BudgetOp::Allocate {
        amount_cents: amount,
        description: Some("test".into()),
    }
}

async fn allocate_spend_refund_and_ledger_recomputes(s: Store) {
    let (b, r) = region(&s).await;
    let now = now_ms();
    let a = b
        .apply_one(&r, allocate(10_000), "admin", now)
        .await
        .unwrap();
    assert_eq!(a.balance_after_cents, 10_000);
    let sp = b
        .apply_one(&r, spend(2_500, None), "op", now)
        .await
        .unwrap();
    assert_eq!(sp.balance_after_cents, 7_500);
    // An audit_log record between two ledger entries: the audit listing
    // interleaves both sources.
    s.audit(
        "op",
        "test.note",
        Some("agency-1"),
        "note",
        "n1",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    let rf = b
        .apply_one(
            &r,
            BudgetOp::Refund {
                transaction_id: sp.transaction_id.clone(),
                amount_cents: 500,
                idempotency_key: None,
                description: None,
            },
            "op",
            now,
        )
        .await
        .unwrap();
    assert_eq!(rf.balance_after_cents, 8_000);
    let budget = b.budget(&r).await.unwrap();
    assert_eq!(
        (
            budget.monthly_cents,
            budget.remaining_cents,
            budget.spent_today_cents,
            budget.transactions
        ),
        (10_000, 8_000, 2_000, 3)
    );
    let (by_job, by_agency) = b.spend_breakdown(&r, None).await.unwrap();
    assert_eq!(by_job, vec![("creative".to_string(), 2_000)]);
    assert_eq!(by_agency, vec![("agency-1".to_string(), 2_000)]);
    let report = b.check_ledger(&r).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries, 3);
    // Pagination, newest first.
    let p1 = b
        .transactions(
            &r,
            None,
            &Page {
                limit: Some(2),
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        p1.items.iter().map(|t| t.seq).collect::<Vec<_>>(),
        vec![3, 2]
    );
    let p2 = b
        .transactions(
            &r,
            None,
            &Page {
                limit: Some(2),
                cursor: p1.next_cursor,
            },
        )
        .await
        .unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_eq!(p2.items[0].transaction_type, "allocation");
    assert!(p2.next_cursor.is_none());
    // Every mutation is audited.
    let audit = s.list_audit(None, &Page::default()).await.unwrap();
    assert_eq!(
        audit
            .items
            .iter()
            .filter(|a| a.action.starts_with("budget."))
            .count(),
        3
    );
    // The audit log and the ledger page as one list, newest first, with and
    // without a tenant.
    let actions: Vec<&str> = audit.items.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions[..4],
        [
            "budget.refund",
            "test.note",
            "budget.spend",
            "budget.allocation"
        ]
    );
    for tenant in [None, Some("agency-1")] {
        let all: Vec<String> = s
            .list_audit(tenant, &Page::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|a| a.id)
            .collect();
        let mut paged = Vec::new();
        let mut cursor = None;
        loop {
            let p = s
                .list_audit(
                    tenant,
                    &Page {
                        limit: Some(2),
                        cursor,
                    },
                )
                .await
                .unwrap();
            paged.extend(p.items.into_iter().map(|a| a.id));
            cursor = p.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(paged, all, "{tenant:?}");
        assert!(all.windows(2).all(|w| w[0] > w[1]), "{all:?}");
        if tenant.is_some() {
            assert_eq!(all.len(), 3, "the note, the spend and its refund");
        }
    }
}

async fn spend_is_refused_without_budget_and_charges_nothing(s: Store) {
    let (b, r) = region(&s).await;
    let err = b
        .apply_one(&r, spend(1, None), "op", now_ms())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        LedgerError::Refused(BudgetError::Insufficient {
            requested_cents: 1,
            remaining_cents: 0
        })
    ));
    b.apply_one(&r, allocate(100), "admin", now_ms())
        .await
        .unwrap();
    assert!(b.check(&r, 100).await.unwrap());
    assert!(!b.check(&r, 101).await.unwrap());
    assert!(b
        .apply_one(&r, spend(101, None), "op", now_ms())
        .await
        .is_err());
    let budget = b.budget(&r).await.unwrap();
    assert_eq!((budget.remaining_cents, budget.transactions), (100, 1));
    assert!(matches!(
        b.apply_one(&r, allocate(i64::MAX), "admin", now_ms()).await,
        Err(LedgerError::Refused(BudgetError::BadAmount(_)))
    ));
    assert!(b.check_ledger(&r).await.unwrap().ok);
}

async fn idempotent_retries_charge_once(s: Store) {
    let (b, r) = region(&s).await;
    b.apply_one(&r, allocate(1_000), "admin", now_ms())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let b = b.clone();
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            b.apply_one(&r, spend(70, Some("job-42")), "op", now_ms())
                .await
                .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let first = &outcomes[0].transaction_id;
    assert!(outcomes
        .iter()
        .all(|o| &o.transaction_id == first && o.balance_after_cents == 930));
    assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1);
    assert_eq!(b.budget(&r).await.unwrap().remaining_cents, 930);
    // The same key with another amount is refused.
    assert!(matches!(
        b.apply_one(&r, spend(71, Some("job-42")), "op", now_ms())
            .await,
        Err(LedgerError::IdempotencyMismatch { .. })
    ));
    // Refund keys too.
    let refund = BudgetOp::Refund {
        transaction_id: first.clone(),
        amount_cents: 30,
        idempotency_key: Some("refund-1".into()),
        description: None,
    };
    let r1 = b
        .apply_one(&r, refund.clone(), "op", now_ms())
        .await
        .unwrap();
    let r2 = b.apply_one(&r, refund, "op", now_ms()).await.unwrap();
    assert_eq!(r1.transaction_id, r2.transaction_id);
    assert!(r2.replayed);
    assert_eq!(b.budget(&r).await.unwrap().remaining_cents, 960);
    assert!(b.check_ledger(&r).await.unwrap().ok);
}

/// Two writers on one database (two replicas on PostgreSQL, two writer
/// threads on one SQLite file) and a third started afterwards: a key charged
/// through one is replayed through the others.
async fn a_retry_through_another_writer_replays(s: Store) {
    let (one, r) = region(&s).await;
    let two = Budgets::start(s.clone());
    let now = now_ms();
    one.apply_one(&r, allocate(1_000), "admin", now)
        .await
        .unwrap();
    let mut first = Vec::new();
    for (i, (charge, retry)) in [(&one, &two), (&two, &one), (&one, &two)]
        .into_iter()
        .enumerate()
    {
        let key = format!("k{i}");
        let amount = 10 * (i as i64 + 1);
        let a = charge
            .apply_one(&r, spend(amount, Some(&key)), "op", now)
            .await
            .unwrap();
        let b = retry
            .apply_one(&r, spend(amount, Some(&key)), "op", now)
            .await
            .unwrap();
        assert!(!a.replayed && b.replayed, "{key}: {a:?} then {b:?}");
        assert_eq!(a.transaction_id, b.transaction_id);
        first.push(a);
    }
    // A refund under a spend's key is another request: charged once too.
    let refund = || BudgetOp::Refund {
        transaction_id: first[0].transaction_id.clone(),
        amount_cents: 5,
        idempotency_key: Some("k0".into()),
        description: None,
    };
    let a = two.apply_one(&r, refund(), "op", now).await.unwrap();
    let b = one.apply_one(&r, refund(), "op", now).await.unwrap();
    assert!(!a.replayed && b.replayed);
    let three = Budgets::start(s.clone());
    for (i, f) in first.iter().enumerate() {
        let o = three
            .apply_one(&r, spend(f.amount_cents, Some(&format!("k{i}"))), "op", now)
            .await
            .unwrap();
        assert!(o.replayed);
        assert_eq!(o.transaction_id, f.transaction_id);
    }
    let budget = one.budget(&r).await.unwrap();
    assert_eq!(budget.remaining_cents, 1_000 - 10 - 20 - 30 + 5);
    let report = one.check_ledger(&r).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries, 5);
}

async fn refund_never_exceeds_its_spend(s: Store) {
    let (b, r) = region(&s).await;
    b.apply_one(&r, allocate(1_000), "admin", now_ms())
        .await
        .unwrap();
    let sp = b
        .apply_one(&r, spend(100, None), "op", now_ms())
        .await
        .unwrap();
    let refund = |amount| BudgetOp::Refund {
        transaction_id: sp.transaction_id.clone(),
        amount_cents: amount,
        idempotency_key: None,
        description: None,
    };
    assert!(matches!(
        b.apply_one(&r, refund(101), "op", now_ms()).await,
        Err(LedgerError::Refused(BudgetError::RefundTooLarge {
            refundable_cents: 100,
            ..
        }))
    ));
    b.apply_one(&r, refund(60), "op", now_ms()).await.unwrap();
    assert!(matches!(
        b.apply_one(&r, refund(41), "op", now_ms()).await,
        Err(LedgerError::Refused(BudgetError::RefundTooLarge {
            refundable_cents: 40,
            ..
        }))
    ));
    b.apply_one(&r, refund(40), "op", now_ms()).await.unwrap();
    // Refunding a refund, or an unknown transaction, is refused.
    let alloc_tx = b
        .transactions(&r, None, &Page::default())
        .await
        .unwrap()
        .items
        .last()
        .unwrap()
        .id
        .clone();
    assert!(matches!(
        b.apply_one(
            &r,
            BudgetOp::Refund {
                transaction_id: alloc_tx,
                amount_cents: 1,
                idempotency_key: None,
                description: None
            },
            "op",
            now_ms()
        )
        .await,
        Err(LedgerError::NotASpend(_))
    ));
    assert!(matches!(
        b.apply_one(
            &r,
            BudgetOp::Refund {
                transaction_id: "nope".into(),
                amount_cents: 1,
                idempotency_key: None,
                description: None
            },
            "op",
            now_ms()
        )
        .await,
        Err(LedgerError::Store(StoreError::NotFound { .. }))
    ));
    assert_eq!(b.budget(&r).await.unwrap().remaining_cents, 1_000);
    assert!(b.check_ledger(&r).await.unwrap().ok);
}

async fn reservations_commit_release_and_expire(s: Store) {
    let (b, r) = region(&s).await;
    let now = now_ms();
    b.apply_one(&r, allocate(1_000), "admin", now)
        .await
        .unwrap();
    let reserve = |amount, key: Option<&str>, ttl_ms| BudgetOp::Reserve {
        amount_cents: amount,
        job_type: "orchestration".into(),
        agency_id: None,
        idempotency_key: key.map(str::to_string),
        expires_at_ms: now + ttl_ms,
    };
    let h1 = b
        .apply_one(&r, reserve(400, Some("h1"), 60_000), "op", now)
        .await
        .unwrap();
    let again = b
        .apply_one(&r, reserve(400, Some("h1"), 60_000), "op", now)
        .await
        .unwrap();
    assert!(again.replayed);
    let res1 = h1.reservation.clone().unwrap();
    assert_eq!(again.reservation.unwrap().id, res1.id);
    let budget = b.budget(&r).await.unwrap();
    assert_eq!((budget.remaining_cents, budget.reserved_cents), (600, 400));
    // A hold above the balance is refused.
    assert!(b
        .apply_one(&r, reserve(601, None, 60_000), "op", now)
        .await
        .is_err());
    // Commit charges the actual cost and releases the rest.
    let c = b
        .apply_one(
            &r,
            BudgetOp::Commit {
                reservation_id: res1.id.clone(),
                amount_cents: 150,
            },
            "op",
            now,
        )
        .await
        .unwrap();
    assert_eq!(c.balance_after_cents, 850);
    assert!(matches!(
        b.apply_one(
            &r,
            BudgetOp::Release {
                reservation_id: res1.id.clone(),
                expired: false
            },
            "op",
            now
        )
        .await,
        Err(LedgerError::ReservationSettled { .. })
    ));
    // A second hold expires.
    let h2 = b
        .apply_one(&r, reserve(300, None, 1_000), "op", now)
        .await
        .unwrap();
    let res2 = h2.reservation.unwrap();
    assert_eq!(b.budget(&r).await.unwrap().remaining_cents, 550);
    assert!(b.expired_reservations(now, 10).await.unwrap().is_empty());
    let expired = b.expired_reservations(now + 1_000, 10).await.unwrap();
    assert_eq!(expired, vec![(r.clone(), res2.id.clone())]);
    assert!(matches!(
        b.apply_one(
            &r,
            BudgetOp::Commit {
                reservation_id: res2.id.clone(),
                amount_cents: 10
            },
            "op",
            now + 1_000
        )
        .await,
        Err(LedgerError::ReservationSettled { .. })
    ));
    b.apply_one(
        &r,
        BudgetOp::Release {
            reservation_id: res2.id.clone(),
            expired: true,
        },
        "engine",
        now + 1_000,
    )
    .await
    .unwrap();
    assert_eq!(b.reservation(&res2.id).await.unwrap().status, "expired");
    let budget = b.budget(&r).await.unwrap();
    assert_eq!(
        (
            budget.remaining_cents,
            budget.reserved_cents,
            budget.spent_today_cents
        ),
        (850, 0, 150)
    );
    let report = b.check_ledger(&r).await.unwrap();
    assert!(report.ok, "{report:?}");
}

async fn resets_follow_the_schedule_and_are_idempotent(s: Store) {
    let (b, r, _) = january_region(&s, 300).await;
    let jan31 = JAN31;
    assert!(b
        .apply(&r, BudgetOp::Reset { period: None }, "engine", jan31)
        .await
        .unwrap()
        .is_none());
    // Next day, same month: daily reset, once.
    let feb1 = jan31 + DAY_MS;
    let jan_next = jan31 + DAY_MS / 4; // still Jan 31
    assert!(b
        .apply(&r, BudgetOp::Reset { period: None }, "engine", jan_next)
        .await
        .unwrap()
        .is_none());
    let m = b
        .apply(&r, BudgetOp::Reset { period: None }, "engine", feb1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m.balance_after_cents, 1_000,
        "a new month refills the balance"
    );
    assert!(b
        .apply(&r, BudgetOp::Reset { period: None }, "engine", feb1)
        .await
        .unwrap()
        .is_none());
    b.apply_one(&r, spend(200, None), "op", feb1).await.unwrap();
    let feb2 = feb1 + DAY_MS;
    b.apply_one(&r, BudgetOp::Reset { period: None }, "engine", feb2)
        .await
        .unwrap();
    let budget = b.budget(&r).await.unwrap();
    assert_eq!((budget.remaining_cents, budget.spent_today_cents), (800, 0));
    // By hand.
    b.apply_one(
        &r,
        BudgetOp::Reset {
            period: Some(ResetPeriod::Monthly),
        },
        "admin",
        feb2,
    )
    .await
    .unwrap();
    assert_eq!(b.budget(&r).await.unwrap().remaining_cents, 1_000);
    let (by_job, _) = b.spend_breakdown(&r, None).await.unwrap();
    assert!(
        by_job.is_empty(),
        "stats cover the month since the last monthly reset"
    );
    assert!(b.check_ledger(&r).await.unwrap().ok);
}

/// Before the engine's maintenance round gets to it, the first operation
/// of a new day or month closes the old one itself: the spend is charged to
/// the new period, and the late scheduled reset finds nothing due (it used
/// to reset afterwards and forget the spend).
async fn an_operation_in_a_new_period_resets_first(s: Store) {
    let (b, r, _) = january_region(&s, 300).await;
    let jan31 = JAN31;
    // 2024-02-01T00:00:01Z, no maintenance round since January.
    let feb1 = jan31 + DAY_MS / 2 + 1_000;
    let o = b.apply_one(&r, spend(100, None), "op", feb1).await.unwrap();
    assert_eq!(o.balance_after_cents, 900, "charged to February's 1,000");
    assert!(b
        .apply(&r, BudgetOp::Reset { period: None }, "engine", feb1 + 4_000)
        .await
        .unwrap()
        .is_none());
    let budget = b.budget(&r).await.unwrap();
    assert_eq!(
        (budget.remaining_cents, budget.spent_today_cents),
        (900, 100)
    );
    // The next day: a refused spend still closes the old day first.
    let feb2 = feb1 + DAY_MS;
    let refused = b.apply_one(&r, spend(5_000, None), "op", feb2).await;
    assert!(
        matches!(
            refused,
            Err(LedgerError::Refused(BudgetError::Insufficient { .. }))
        ),
        "{refused:?}"
    );
    let budget = b.budget(&r).await.unwrap();
    assert_eq!((budget.remaining_cents, budget.spent_today_cents), (900, 0));
    let page = Page {
        limit: Some(10),
        cursor: None,
    };
    let entries: Vec<(String, Option<String>, String)> = b
        .transactions(&r, None, &page)
        .await
        .unwrap()
        .items
        .into_iter()
        .rev()
        .map(|t| (t.transaction_type, t.reset_period, t.actor))
        .collect();
    let e = |kind: &str, period: Option<&str>, actor: &str| {
        (
            kind.to_string(),
            period.map(str::to_string),
            actor.to_string(),
        )
    };
    assert_eq!(
        entries,
        vec![
            e("allocation", None, "admin"),
            e("spend", None, "op"),
            e("reset", Some("monthly"), "engine"),
            e("spend", None, "op"),
            e("reset", Some("daily"), "engine"),
        ]
    );
    assert!(b.check_ledger(&r).await.unwrap().ok);
}

fn refund(id: &str, amount: i64) -> BudgetOp {
    BudgetOp::Refund {
        transaction_id: id.to_string(),
        amount_cents: amount,
        idempotency_key: None,
        description: None,
    }
}

/// A refund of a spend charged in a month already closed by a monthly reset
/// is recorded but gives the new month nothing (it used to refill it, so a
/// month could charge its budget plus last month's refunds); one of an
/// earlier day of this month refills `remaining` but not `spent_today`.
async fn a_refund_goes_back_to_the_period_that_paid(s: Store) {
    let (b, r, january) = january_region(&s, 1_000).await;
    let jan31 = JAN31;
    // January's spend, refunded as the first operation of February: the
    // monthly reset applied in that same batch closes January before it.
    let feb1 = jan31 + DAY_MS;
    let o = b
        .apply_one(&r, refund(&january.transaction_id, 600), "op", feb1)
        .await
        .unwrap();
    assert_eq!(o.balance_after_cents, 1_000, "February is not refilled");
    let february = b.apply_one(&r, spend(300, None), "op", feb1).await.unwrap();
    assert_eq!(february.balance_after_cents, 700);
    // Again, now that the reset is stored.
    let o = b
        .apply_one(&r, refund(&january.transaction_id, 400), "op", feb1)
        .await
        .unwrap();
    assert_eq!(o.balance_after_cents, 700, "February is not refilled");
    let refused = b.apply_one(&r, spend(701, None), "op", feb1).await;
    assert!(
        matches!(
            refused,
            Err(LedgerError::Refused(BudgetError::Insufficient { .. }))
        ),
        "{refused:?}"
    );
    // Still bounded by what it charged.
    assert!(b
        .apply_one(&r, refund(&january.transaction_id, 1), "op", feb1)
        .await
        .is_err());
    // February 1's spend refunded on February 2: the balance, not today's.
    let feb2 = feb1 + DAY_MS;
    b.apply_one(&r, spend(50, None), "op", feb2).await.unwrap();
    let o = b
        .apply_one(&r, refund(&february.transaction_id, 100), "op", feb2)
        .await
        .unwrap();
    assert_eq!(o.balance_after_cents, 750);
    let budget = b.budget(&r).await.unwrap();
    assert_eq!(
        (budget.remaining_cents, budget.spent_today_cents),
        (750, 50)
    );
    // The month's statistics: 300 + 50 − 100; January's refund counts 0.
    let (by_job, _) = b.spend_breakdown(&r, None).await.unwrap();
    assert_eq!(by_job, vec![("creative".to_string(), 250)]);
    assert!(b.check_ledger(&r).await.unwrap().ok);
}

async fn concurrent_spends_never_overdraw(s: Store) {
    let (b, r) = region(&s).await;
    b.apply_one(&r, allocate(10_000), "admin", now_ms())
        .await
        .unwrap();
    // Two handles = two writers (as two replicas would have).
    let b2 = Budgets::start(s.clone());
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let b = if i % 2 == 0 { b.clone() } else { b2.clone() };
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let mut charged = 0i64;
            for k in 0..40u64 {
                let amount = ((i * 31 + k * 17) % 23 + 1) as i64;
                match b.apply_one(&r, spend(amount, None), "op", now_ms()).await {
                    Ok(o) => charged += o.amount_cents,
                    Err(LedgerError::Refused(BudgetError::Insufficient { .. })) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            charged
        }));
    }
    let mut charged = 0;
    for t in tasks {
        charged += t.await.unwrap();
    }
    let budget = b.budget(&r).await.unwrap();
    assert!(charged <= 10_000);
    assert_eq!(budget.remaining_cents, 10_000 - charged);
    let report = b.check_ledger(&r).await.unwrap();
    assert!(report.ok, "{report:?}");
}

/// On SQLite the budget writer has its own connection: the store's
/// transactions that read before they write (usage records lock and read the
/// tenant's counters first) must wait for the writer's batches, never fail
/// on a snapshot a batch made stale, and vice versa.
async fn budget_batches_interleave_with_other_store_writes(s: Store) {
    let (b, r) = region(&s).await;
    b.apply_one(&r, allocate(1_000_000), "admin", now_ms())
        .await
        .unwrap();
    let tenant = s
        .create_tenant(&format!("t-{}", uuid::Uuid::new_v4().simple()), "test")
        .await
        .unwrap()
        .id;
    let mut spends = Vec::new();
    for i in 0..8u64 {
        let (b, r) = (b.clone(), r.clone());
        spends.push(tokio::spawn(async move {
            let mut charged = 0;
            for k in 0..60u64 {
                let key = format!("k-{i}-{k}");
                charged += b
                    .apply_one(&r, spend(3, Some(&key)), "op", now_ms())
                    .await
                    .unwrap()
                    .amount_cents;
            }
            charged
        }));
    }
    let mut usages = Vec::new();
    for i in 0..4u64 {
        let (s, tenant) = (s.clone(), tenant.clone());
        usages.push(tokio::spawn(async move {
            for k in 0..60u64 {
                let req = UsageRequest {
                    tenant_id: tenant.clone(),
                    provider: Provider::Claude,
                    units: 5,
                    job_type: Some("creative".into()),
                    idempotency_key: Some(format!("u-{i}-{k}")),
                    description: None,
                    actor: "op".into(),
                    now_ms: now_ms(),
                };
                s.record_usage(&req).await.unwrap();
            }
        }));
    }
    let mut charged = 0;
    for t in spends {
        charged += t.await.unwrap();
    }
    for t in usages {
        t.await.unwrap();
    }
    assert_eq!(charged, 8 * 60 * 3);
    assert_eq!(
        b.budget(&r).await.unwrap().remaining_cents,
        1_000_000 - charged
    );
    assert!(b.check_ledger(&r).await.unwrap().ok);
    let report = s.check_usage_ledgers(&tenant).await.unwrap();
    assert!(report.ok, "{report:?}");
    let used: i64 = s
        .usage_records(
            &tenant,
            None,
            &Page {
                limit: Some(1000),
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items
        .iter()
        .map(|u| u.units)
        .sum();
    assert_eq!(used, 4 * 60 * 5, "every usage record is there");
}

/// The PostgreSQL writer keeps one connection of its own. When the server
/// kills it, the batch in flight fails with nothing charged, and the next
/// batch runs on a fresh connection: a retry with the same idempotency key
/// is charged exactly once.
#[tokio::test]
async fn postgres_writer_reconnects_after_its_connection_dies() {
    let (name, url) = common::fresh_pg_database().await;
    let s = Store::open(&url).await.unwrap();
    let (b, r) = region(&s).await;
    b.apply_one(&r, allocate(1_000), "admin", now_ms())
        .await
        .unwrap();
    b.apply_one(&r, spend(10, Some("before")), "op", now_ms())
        .await
        .unwrap();
    // Every connection to this database, the pool's and the writer's; waits
    // until those backends have exited.
    fleetscale_store::exec_raw(
        &common::pg_admin_url(),
        &[&format!(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )],
    )
    .await
    .unwrap();
    let mut failures = 0;
    let outcome = loop {
        match b
            .apply_one(&r, spend(25, Some("after")), "op", now_ms())
            .await
        {
            Ok(o) => break o,
            Err(LedgerError::BatchFailed) if failures < 2 => failures += 1,
            Err(e) => panic!("after {failures} failed batches: {e}"),
        }
    };
    assert_eq!(failures, 1, "the batch on the killed connection failed");
    assert!(!outcome.replayed, "the failed batch charged nothing");
    assert_eq!(outcome.amount_cents, 25);
    let replay = b
        .apply_one(&r, spend(25, Some("after")), "op", now_ms())
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(b.budget(&r).await.unwrap().remaining_cents, 1_000 - 10 - 25);
    assert!(b.check_ledger(&r).await.unwrap().ok);
}

/// The budget reads not covered elsewhere decode each column by its name:
/// the budgets list, the ledger, a reservation and the budgeted regions.
async fn budget_reads_decode_their_columns_by_name(s: Store) {
    let (b, r) = region(&s).await;
    let now = now_ms();
    b.apply_one(&r, allocate(1_000), "admin", now)
        .await
        .unwrap();
    let held = b
        .apply_one(
            &r,
            BudgetOp::Reserve {
                amount_cents: 300,
                job_type: "orchestration".into(),
                agency_id: Some("agency-1".into()),
                idempotency_key: Some("k1".into()),
                expires_at_ms: now + 60_000,
            },
            "op",
            now,
        )
        .await
        .unwrap();
    let res = b.reservation(&held.reservation.unwrap().id).await.unwrap();
    assert_eq!(
        (
            res.region_id.as_str(),
            res.amount_cents,
            res.job_type.as_str(),
            res.agency_id.as_deref(),
            res.status.as_str(),
            res.expires_at_ms,
            res.committed_cents
        ),
        (
            r.as_str(),
            300,
            "orchestration",
            Some("agency-1"),
            "held",
            now + 60_000,
            None
        )
    );
    let listed = b.list(&Page::default()).await.unwrap();
    let mine = listed.items.iter().find(|x| x.region_id == r).unwrap();
    assert_eq!(
        (
            mine.monthly_cents,
            mine.remaining_cents,
            mine.reserved_cents,
            mine.transactions
        ),
        (1_000, 700, 300, 2)
    );
    let txs = b.transactions(&r, None, &Page::default()).await.unwrap();
    assert_eq!(txs.items.len(), 2);
    assert_eq!(
        (
            txs.items[0].transaction_type.as_str(),
            txs.items[0].amount_cents,
            txs.items[0].balance_after_cents,
            txs.items[0].agency_id.as_deref(),
            txs.items[0].actor.as_str()
        ),
        ("reserve", 300, 700, Some("agency-1"), "op")
    );
    assert!(b.budget_regions().await.unwrap().contains(&r));
}
