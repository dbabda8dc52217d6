//! Tenant provider budget conformance on both backends: tier defaults and
//! overrides, idempotent usage recording, hard limits that record nothing
//! when refused, months, audit, the usage ledger check — and concurrency.

use fleetscale_core::budget::{Provider, Tier, DAY_MS};
use fleetscale_core::provider_budget::{UsageError, UsageStatus};
use fleetscale_store::{
    now_ms, Page, ProviderSettings, Store, StoreError, UsageRecordError, UsageRequest,
};

#[macro_use]
mod common;

conformance!(
    defaults_follow_the_tier_and_overrides_win,
    usage_is_recorded_once_per_key_and_the_ledger_replays,
    hard_limits_refuse_and_record_nothing,
    a_new_month_starts_from_zero,
    unknown_tenants_are_not_found,
    concurrent_usage_never_exceeds_a_hard_limit,
    budgets_list_by_tenant,
);

/// 2024-02-10T00:00:00Z.
const FEB10: i64 = 1_707_523_200_000;

async fn tenant(s: &Store) -> String {
    s.create_tenant(&format!("t-{}", uuid::Uuid::new_v4().simple()), "test")
        .await
        .unwrap()
        .id
}

fn usage(tenant: &str, p: Provider, units: i64, key: Option<&str>, now: i64) -> UsageRequest {
    UsageRequest {
        tenant_id: tenant.to_string(),
        provider: p,
        units,
        job_type: Some("creative".into()),
        idempotency_key: key.map(str::to_string),
        description: None,
        actor: "op".into(),
        now_ms: now,
    }
}

fn hard(allocation: i64) -> ProviderSettings {
    ProviderSettings {
        allocation_units: Some(allocation),
        price_cents_per_million: None,
        hard_limit: true,
    }
}

async fn audit_actions(s: &Store, tenant: &str) -> Vec<String> {
    let page = Page {
        limit: Some(1000),
        cursor: None,
    };
    s.list_audit(Some(tenant), &page)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| a.action)
        .collect()
}

async fn defaults_follow_the_tier_and_overrides_win(s: Store) {
    let t = tenant(&s).await;
    let b = s.tenant_budget(&t, FEB10).await.unwrap();
    assert_eq!((b.tier, b.tier_set), (Tier::SoftLaunch, false));
    assert_eq!(b.month, "2024-02");
    let alloc = |b: &fleetscale_store::TenantBudget, p: Provider| {
        b.providers
            .iter()
            .find(|x| x.month.provider == p)
            .unwrap()
            .clone()
    };
    assert_eq!(b.providers.len(), 5);
    assert_eq!(alloc(&b, Provider::Claude).month.allocation_units, 50_000);
    assert_eq!(alloc(&b, Provider::Elevenlabs).month.unit, "chars");
    let b = s
        .set_tenant_tier(&t, Tier::Growth, "admin", FEB10)
        .await
        .unwrap();
    assert!(b.tier_set);
    assert_eq!(
        alloc(&b, Provider::Claude).month.allocation_units,
        1_000_000
    );
    let settings = ProviderSettings {
        allocation_units: Some(7_000),
        price_cents_per_million: Some(1_500),
        hard_limit: true,
    };
    let p = s
        .set_provider_budget(&t, Provider::Claude, &settings, "admin", FEB10)
        .await
        .unwrap();
    assert_eq!(p.month.allocation_units, 7_000);
    assert_eq!(p.allocation_override_units, Some(7_000));
    assert_eq!(p.tier_default_units, 1_000_000);
    assert!(p.hard_limit);
    assert_eq!(p.month.price_cents_per_million, Some(1_500));
    let b = s.tenant_budget(&t, FEB10).await.unwrap();
    assert_eq!(alloc(&b, Provider::Claude).month.allocation_units, 7_000);
    assert_eq!(alloc(&b, Provider::Gemini).month.allocation_units, 500_000);
    assert_eq!(b.cost_projection.unpriced.len(), 4);
    // A PUT without an allocation returns to the tier's default.
    let p = s
        .set_provider_budget(
            &t,
            Provider::Claude,
            &ProviderSettings::default(),
            "admin",
            FEB10,
        )
        .await
        .unwrap();
    assert_eq!(p.month.allocation_units, 1_000_000);
    assert!(!p.hard_limit);
    let actions = audit_actions(&s, &t).await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.starts_with("budget."))
            .collect::<Vec<_>>(),
        ["budget.provider", "budget.provider", "budget.tier"]
    );
}

async fn usage_is_recorded_once_per_key_and_the_ledger_replays(s: Store) {
    let t = tenant(&s).await;
    let now = now_ms();
    let a = s
        .record_usage(&usage(&t, Provider::Claude, 1_200, Some("k1"), now))
        .await
        .unwrap();
    assert_eq!(
        (a.units, a.used_after_units, a.replayed),
        (1_200, 1_200, false)
    );
    assert_eq!(a.allocation_units, 50_000);
    assert_eq!(a.remaining_units, 48_800);
    assert_eq!(a.status, UsageStatus::Healthy);
    let b = s
        .record_usage(&usage(&t, Provider::Claude, 800, None, now))
        .await
        .unwrap();
    assert_eq!(b.used_after_units, 2_000);
    // The retry returns the first answer and records nothing.
    let again = s
        .record_usage(&usage(&t, Provider::Claude, 1_200, Some("k1"), now))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(
        (again.usage_id.as_str(), again.used_after_units),
        (a.usage_id.as_str(), 1_200)
    );
    // The same key for something else is refused.
    for other in [
        usage(&t, Provider::Claude, 1_201, Some("k1"), now),
        usage(&t, Provider::Gemini, 1_200, Some("k1"), now),
    ] {
        assert!(matches!(
            s.record_usage(&other).await,
            Err(UsageRecordError::IdempotencyMismatch { .. })
        ));
    }
    s.record_usage(&usage(&t, Provider::Elevenlabs, 300, Some("k2"), now))
        .await
        .unwrap();
    let budget = s.tenant_budget(&t, now).await.unwrap();
    let claude = &budget.providers[0];
    assert_eq!(
        (claude.month.used_units, claude.entries),
        (2_000, 2),
        "{claude:?}"
    );
    assert_eq!(budget.providers[3].month.used_units, 300);
    let page = Page {
        limit: Some(2),
        cursor: None,
    };
    let l = s.usage_records(&t, None, &page).await.unwrap();
    assert_eq!(l.items.len(), 2);
    assert_eq!(l.items[0].provider, "elevenlabs", "newest first");
    let rest = s
        .usage_records(
            &t,
            None,
            &Page {
                limit: Some(2),
                cursor: l.next_cursor,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].id, a.usage_id);
    let only = s
        .usage_records(&t, Some(Provider::Claude), &Page::default())
        .await
        .unwrap();
    assert_eq!(only.items.len(), 2);
    let report = s.check_usage_ledgers(&t).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.providers.len(), 2);
    let actions = audit_actions(&s, &t).await;
    assert_eq!(actions.iter().filter(|a| *a == "budget.usage").count(), 3);
}

async fn hard_limits_refuse_and_record_nothing(s: Store) {
    let t = tenant(&s).await;
    let now = now_ms();
    s.set_provider_budget(&t, Provider::Openai, &hard(100), "admin", now)
        .await
        .unwrap();
    let ok = s
        .record_usage(&usage(&t, Provider::Openai, 60, None, now))
        .await
        .unwrap();
    assert!(ok.hard_limit);
    let err = s
        .record_usage(&usage(&t, Provider::Openai, 41, Some("over"), now))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UsageRecordError::Refused(UsageError::OverAllocation {
                requested: 41,
                used: 60,
                allocation: 100,
                ..
            })
        ),
        "{err}"
    );
    // The refused key left nothing behind: it may be used again.
    let last = s
        .record_usage(&usage(&t, Provider::Openai, 40, Some("over"), now))
        .await
        .unwrap();
    assert_eq!((last.used_after_units, last.remaining_units), (100, 0));
    assert_eq!(last.status, UsageStatus::Critical);
    // A soft budget records usage above its allocation and says so.
    s.set_provider_budget(
        &t,
        Provider::Perplexity,
        &ProviderSettings {
            allocation_units: Some(10),
            ..ProviderSettings::default()
        },
        "admin",
        now,
    )
    .await
    .unwrap();
    let soft = s
        .record_usage(&usage(&t, Provider::Perplexity, 15, None, now))
        .await
        .unwrap();
    assert!(soft.over_allocation && !soft.hard_limit);
    assert_eq!((soft.used_after_units, soft.remaining_units), (15, 0));
    // An allocation of 0 with a hard limit disables a provider.
    s.set_provider_budget(&t, Provider::Gemini, &hard(0), "admin", now)
        .await
        .unwrap();
    assert!(s
        .record_usage(&usage(&t, Provider::Gemini, 1, None, now))
        .await
        .is_err());
    let b = s.tenant_budget(&t, now).await.unwrap();
    assert_eq!(b.providers[2].month.used_units, 100);
    assert_eq!(b.providers[2].entries, 2);
    assert_eq!(b.providers[1].entries, 0);
    assert!(s.check_usage_ledgers(&t).await.unwrap().ok);
}

async fn a_new_month_starts_from_zero(s: Store) {
    let t = tenant(&s).await;
    let march = FEB10 + 25 * DAY_MS;
    s.record_usage(&usage(&t, Provider::Claude, 40_000, None, FEB10))
        .await
        .unwrap();
    let feb = s.tenant_budget(&t, FEB10).await.unwrap();
    assert_eq!(feb.providers[0].month.used_units, 40_000);
    assert_eq!(feb.providers[0].month.status, UsageStatus::Warning);
    let mar = s.tenant_budget(&t, march).await.unwrap();
    assert_eq!(mar.month, "2024-03");
    assert_eq!(mar.providers[0].month.used_units, 0);
    let r = s
        .record_usage(&usage(&t, Provider::Claude, 5, None, march))
        .await
        .unwrap();
    assert_eq!((r.month.as_str(), r.used_after_units), ("2024-03", 5));
    let report = s.check_usage_ledgers(&t).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.providers[0].report.recomputed_used, 5);
}

async fn unknown_tenants_are_not_found(s: Store) {
    let missing = "no-such-tenant";
    let nf = |e: &StoreError| matches!(e, StoreError::NotFound { what } if what == "tenant");
    assert!(nf(&s.tenant_budget(missing, FEB10).await.unwrap_err()));
    assert!(nf(&s
        .set_tenant_tier(missing, Tier::Growth, "a", FEB10)
        .await
        .unwrap_err()));
    assert!(nf(&s
        .set_provider_budget(missing, Provider::Claude, &hard(1), "a", FEB10)
        .await
        .unwrap_err()));
    match s
        .record_usage(&usage(missing, Provider::Claude, 1, None, FEB10))
        .await
    {
        Err(UsageRecordError::Store(e)) => assert!(nf(&e), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(nf(&s.check_usage_ledgers(missing).await.unwrap_err()));
    assert!(nf(&s
        .usage_records(missing, None, &Page::default())
        .await
        .unwrap_err()));
}

async fn concurrent_usage_never_exceeds_a_hard_limit(s: Store) {
    let t = tenant(&s).await;
    s.set_provider_budget(&t, Provider::Claude, &hard(2_000), "admin", now_ms())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let (s, t) = (s.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let mut recorded = 0i64;
            for k in 0..20u64 {
                let units = ((i * 31 + k * 17) % 23 + 1) as i64;
                // Every other request is retried once with the same key.
                let key = format!("c{i}-{k}");
                for _ in 0..(1 + k % 2) {
                    let req = usage(&t, Provider::Claude, units, Some(&key), now_ms());
                    match s.record_usage(&req).await {
                        Ok(o) if !o.replayed => recorded += o.units,
                        Ok(_) => {}
                        Err(UsageRecordError::Refused(UsageError::OverAllocation { .. })) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            recorded
        }));
    }
    let mut recorded = 0;
    for task in tasks {
        recorded += task.await.unwrap();
    }
    let b = s.tenant_budget(&t, now_ms()).await.unwrap();
    assert!(recorded <= 2_000, "{recorded}");
    assert!(
        recorded > 1_900,
        "the budget should be nearly used: {recorded}"
    );
    assert_eq!(b.providers[0].month.used_units, recorded);
    let report = s.check_usage_ledgers(&t).await.unwrap();
    assert!(report.ok, "{report:?}");
}

async fn budgets_list_by_tenant(s: Store) {
    let a = tenant(&s).await;
    let b = tenant(&s).await;
    s.set_tenant_tier(&b, Tier::HardLaunch, "admin", FEB10)
        .await
        .unwrap();
    s.record_usage(&usage(&b, Provider::Gemini, 9, None, FEB10))
        .await
        .unwrap();
    let all = s
        .list_tenant_budgets(None, &Page::default(), FEB10)
        .await
        .unwrap();
    let get = |id: &str| all.items.iter().find(|x| x.tenant_id == id).unwrap();
    assert_eq!(get(&a).tier, Tier::SoftLaunch);
    assert_eq!(get(&b).tier, Tier::HardLaunch);
    assert_eq!(get(&b).providers[1].month.used_units, 9);
    let one = s
        .list_tenant_budgets(Some(&a), &Page::default(), FEB10)
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    let first = s
        .list_tenant_budgets(
            None,
            &Page {
                limit: Some(1),
                cursor: None,
            },
            FEB10,
        )
        .await
        .unwrap();
    assert_eq!(first.items.len(), 1);
    assert!(first.next_cursor.is_some());
}
