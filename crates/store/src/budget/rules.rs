//! The one batch logic of both writers: [`run_batch`] applies queued
//! operations to a batch's state with the budget rules of
//! [`fleetscale_core::budget`].

use std::collections::BTreeSet;

use fleetscale_core::budget::{
    day_key, due_reset, month_key, Cents, ChargedIn, Effect, ResetPeriod, TxKind,
};

use super::batch::{BatchDb, BatchState, Job, Locked, NewTx, Prior};
use super::types::{BudgetOp, LedgerError, Reservation, TxOutcome};
use crate::sql::{new_id, not_found};

/// Applies a batch inside the caller's transaction: locks each touched
/// region (sorted, so replicas never deadlock), reads the batch's
/// idempotency keys at once, applies the jobs in order in memory and writes
/// the result. A refused job changes nothing; an `Err` means the caller must
/// roll the whole batch back.
pub(crate) async fn run_batch<D: BatchDb>(
    db: &mut D,
    jobs: &[Job],
) -> Result<Vec<Result<Option<TxOutcome>, LedgerError>>, LedgerError> {
    let mut st = BatchState::default();
    let regions: BTreeSet<&str> = jobs.iter().map(|j| j.region_id.as_str()).collect();
    for rid in &regions {
        let now = jobs
            .iter()
            .find(|j| j.region_id == *rid)
            .map(|j| j.now_ms)
            .unwrap_or(0);
        let locked = lock_region(db, rid, now).await?;
        st.regions.insert((*rid).to_string(), locked);
        let keys: Vec<(&str, &'static str)> = jobs
            .iter()
            .filter(|j| j.region_id == *rid)
            .filter_map(|j| match &j.op {
                BudgetOp::Spend {
                    idempotency_key: Some(k),
                    ..
                } => Some((k.as_str(), "spend")),
                BudgetOp::Refund {
                    idempotency_key: Some(k),
                    ..
                } => Some((k.as_str(), "refund")),
                _ => None,
            })
            .collect();
        if !keys.is_empty() {
            for (key, kind, prior) in db.priors(rid, &keys).await? {
                let kind = if kind == "spend" { "spend" } else { "refund" };
                st.priors.insert(((*rid).to_string(), kind, key), prior);
            }
        }
    }
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        if !matches!(job.op, BudgetOp::Reset { .. }) {
            // A day or month that has ended is closed before anything else
            // touches the region, with the entry the engine's scheduled reset
            // would write: otherwise a spend in the first seconds of a month
            // (before the maintenance round) is charged to the old month and
            // then forgotten by the late reset, and the new month can charge
            // its budget plus that spend.
            apply_reset(&mut st, &job.region_id, None, "engine", job.now_ms);
        }
        results.push(apply_job(db, &mut st, job).await);
    }
    db.persist(&st).await?;
    Ok(results)
}

async fn lock_region<D: BatchDb>(
    db: &mut D,
    rid: &str,
    now_ms: i64,
) -> Result<Locked, LedgerError> {
    for attempt in 0..2 {
        if let Some(l) = db.region_row(rid).await? {
            return Ok(l);
        }
        if attempt == 0 {
            db.create_region_row(rid, now_ms).await?;
        }
    }
    Err(LedgerError::Store(not_found("region")))
}

fn push_tx(st: &mut BatchState, job: &Job, effect: Effect, extra: TxExtra) -> (String, i64) {
    push_tx_as(st, &job.region_id, &job.actor, job.now_ms, effect, extra)
}

/// [`push_tx`] for an entry of region `rid` by `actor` at `now_ms`.
fn push_tx_as(
    st: &mut BatchState,
    rid: &str,
    actor: &str,
    now_ms: i64,
    effect: Effect,
    extra: TxExtra,
) -> (String, i64) {
    let l = st
        .regions
        .get_mut(rid)
        .expect("region locked at batch start");
    let seq = l.next_seq;
    l.next_seq += 1;
    l.dirty = true;
    let id = new_id();
    st.txs.push(NewTx {
        id: id.clone(),
        region_id: rid.to_string(),
        seq,
        effect,
        agency_id: extra.agency_id,
        job_type: extra.job_type,
        description: extra.description,
        refund_of: extra.refund_of,
        reservation_id: extra.reservation_id,
        idempotency_key: extra.idempotency_key,
        actor: actor.to_string(),
        now_ms,
    });
    (id, effect.balance_after_cents)
}

#[derive(Default)]
struct TxExtra {
    agency_id: Option<String>,
    job_type: Option<String>,
    description: Option<String>,
    refund_of: Option<String>,
    reservation_id: Option<String>,
    idempotency_key: Option<String>,
}

fn outcome(id: String, amount: Cents, balance: Cents) -> Option<TxOutcome> {
    Some(TxOutcome {
        transaction_id: id,
        amount_cents: amount,
        balance_after_cents: balance,
        replayed: false,
        reservation: None,
    })
}

/// Applies one job to the batch's in-memory state (with the few lookups a
/// refund or a reservation needs). A refused job changes nothing.
async fn apply_job<D: BatchDb>(
    db: &mut D,
    st: &mut BatchState,
    job: &Job,
) -> Result<Option<TxOutcome>, LedgerError> {
    let rid = job.region_id.clone();
    let mut state = st.regions[&rid].state;
    match &job.op {
        BudgetOp::Allocate {
            amount_cents,
            description,
        } => {
            let e = state.allocate(*amount_cents)?;
            st.regions.get_mut(&rid).expect("locked").state = state;
            let (id, bal) = push_tx(
                st,
                job,
                e,
                TxExtra {
                    description: description.clone(),
                    ..Default::default()
                },
            );
            Ok(outcome(id, *amount_cents, bal))
        }
        BudgetOp::Spend {
            amount_cents,
            job_type,
            agency_id,
            idempotency_key,
            description,
        } => {
            if let Some(k) = idempotency_key {
                if let Some(p) = st.priors.get(&(rid.clone(), "spend", k.clone())) {
                    // Any field that differs makes it another request.
                    if p.amount_cents != *amount_cents
                        || p.job_type.as_deref() != Some(job_type)
                        || p.agency_id != *agency_id
                        || p.description != *description
                    {
                        return Err(LedgerError::IdempotencyMismatch { key: k.clone() });
                    }
                    return Ok(Some(TxOutcome {
                        transaction_id: p.id.clone(),
                        amount_cents: p.amount_cents,
                        balance_after_cents: p.balance_after_cents,
                        replayed: true,
                        reservation: None,
                    }));
                }
            }
            let e = state.spend(*amount_cents)?;
            st.regions.get_mut(&rid).expect("locked").state = state;
            let (id, bal) = push_tx(
                st,
                job,
                e,
                TxExtra {
                    agency_id: agency_id.clone(),
                    job_type: Some(job_type.clone()),
                    description: description.clone(),
                    idempotency_key: idempotency_key.clone(),
                    ..Default::default()
                },
            );
            let seq = st.regions[&rid].next_seq - 1;
            st.spends.insert(
                id.clone(),
                (
                    rid.clone(),
                    *amount_cents,
                    0,
                    agency_id.clone(),
                    Some(job_type.clone()),
                    seq,
                ),
            );
            if let Some(k) = idempotency_key {
                st.priors.insert(
                    (rid.clone(), "spend", k.clone()),
                    Prior {
                        id: id.clone(),
                        amount_cents: *amount_cents,
                        balance_after_cents: bal,
                        job_type: Some(job_type.clone()),
                        refund_of: None,
                        agency_id: agency_id.clone(),
                        description: description.clone(),
                    },
                );
            }
            Ok(outcome(id, *amount_cents, bal))
        }
        BudgetOp::Refund {
            transaction_id,
            amount_cents,
            idempotency_key,
            description,
        } => {
            if let Some(k) = idempotency_key {
                if let Some(p) = st.priors.get(&(rid.clone(), "refund", k.clone())) {
                    if p.amount_cents != *amount_cents
                        || p.refund_of.as_deref() != Some(transaction_id)
                        || p.description != *description
                    {
                        return Err(LedgerError::IdempotencyMismatch { key: k.clone() });
                    }
                    return Ok(Some(TxOutcome {
                        transaction_id: p.id.clone(),
                        amount_cents: p.amount_cents,
                        balance_after_cents: p.balance_after_cents,
                        replayed: true,
                        reservation: None,
                    }));
                }
            }
            if !st.spends.contains_key(transaction_id) {
                let Some((region, kind, charged, agency, job_type, seq)) =
                    db.entry(transaction_id).await?
                else {
                    return Err(LedgerError::Store(not_found("transaction")));
                };
                if kind != "spend" || region != rid {
                    return Err(LedgerError::NotASpend(transaction_id.clone()));
                }
                let refunded = db.refunded(transaction_id).await?;
                st.spends.insert(
                    transaction_id.clone(),
                    (region, charged, refunded, agency, job_type, seq),
                );
            }
            let (region, charged, refunded, agency, job_type, spend_seq) =
                st.spends[transaction_id].clone();
            if region != rid {
                return Err(LedgerError::NotASpend(transaction_id.clone()));
            }
            let (day_start, month_start) = period_starts(db, st, &rid).await?;
            let charged_in = ChargedIn::of(spend_seq, day_start, month_start);
            let e = state.refund(*amount_cents, charged, refunded, charged_in)?;
            st.regions.get_mut(&rid).expect("locked").state = state;
            if let Some(s) = st.spends.get_mut(transaction_id) {
                s.2 += *amount_cents;
            }
            let (id, bal) = push_tx(
                st,
                job,
                e,
                TxExtra {
                    agency_id: agency,
                    job_type,
                    description: description.clone(),
                    refund_of: Some(transaction_id.clone()),
                    idempotency_key: idempotency_key.clone(),
                    ..Default::default()
                },
            );
            if let Some(k) = idempotency_key {
                st.priors.insert(
                    (rid.clone(), "refund", k.clone()),
                    Prior {
                        id: id.clone(),
                        amount_cents: *amount_cents,
                        balance_after_cents: bal,
                        job_type: None,
                        refund_of: Some(transaction_id.clone()),
                        agency_id: None,
                        description: description.clone(),
                    },
                );
            }
            Ok(outcome(id, *amount_cents, bal))
        }
        BudgetOp::Reserve {
            amount_cents,
            job_type,
            agency_id,
            idempotency_key,
            expires_at_ms,
        } => {
            if let Some(k) = idempotency_key {
                let prior = match st.res_keys.get(&(rid.clone(), k.clone())) {
                    Some(r) => Some(r.clone()),
                    None => db.reservation_by_key(&rid, k).await?,
                };
                if let Some(r) = prior {
                    if r.amount_cents != *amount_cents
                        || &r.job_type != job_type
                        || r.agency_id != *agency_id
                    {
                        return Err(LedgerError::IdempotencyMismatch { key: k.clone() });
                    }
                    let (tid, bal) = match db.reserve_entry(&r.id).await? {
                        Some(e) => e,
                        None => st
                            .txs
                            .iter()
                            .find(|t| {
                                t.reservation_id.as_deref() == Some(&r.id)
                                    && t.effect.kind == TxKind::Reserve
                            })
                            .map(|t| (t.id.clone(), t.effect.balance_after_cents))
                            .unwrap_or_default(),
                    };
                    return Ok(Some(TxOutcome {
                        transaction_id: tid,
                        amount_cents: r.amount_cents,
                        balance_after_cents: bal,
                        replayed: true,
                        reservation: Some(r),
                    }));
                }
            }
            let e = state.reserve(*amount_cents)?;
            st.regions.get_mut(&rid).expect("locked").state = state;
            let res = Reservation {
                id: new_id(),
                region_id: rid.clone(),
                amount_cents: *amount_cents,
                job_type: job_type.clone(),
                agency_id: agency_id.clone(),
                status: "held".into(),
                expires_at_ms: *expires_at_ms,
                committed_cents: None,
            };
            let (id, bal) = push_tx(
                st,
                job,
                e,
                TxExtra {
                    agency_id: agency_id.clone(),
                    job_type: Some(job_type.clone()),
                    reservation_id: Some(res.id.clone()),
                    idempotency_key: idempotency_key.clone(),
                    ..Default::default()
                },
            );
            st.reservations.insert(res.id.clone(), res.clone());
            if let Some(k) = idempotency_key {
                st.res_keys.insert((rid.clone(), k.clone()), res.clone());
            }
            st.new_res.push(res.clone());
            let mut o = outcome(id, *amount_cents, bal);
            if let Some(o) = o.as_mut() {
                o.reservation = Some(res);
            }
            Ok(o)
        }
        BudgetOp::Commit {
            reservation_id,
            amount_cents,
        } => {
            let mut res = held_reservation(db, st, &rid, reservation_id).await?;
            if fleetscale_core::budget::reservation_expired(res.expires_at_ms, job.now_ms) {
                return Err(LedgerError::ReservationSettled {
                    id: res.id,
                    status: "expired".into(),
                });
            }
            let effects = state.commit(res.amount_cents, *amount_cents)?;
            st.regions.get_mut(&rid).expect("locked").state = state;
            let mut last = (String::new(), 0);
            for e in effects {
                last = push_tx(
                    st,
                    job,
                    e,
                    TxExtra {
                        agency_id: res.agency_id.clone(),
                        job_type: Some(res.job_type.clone()),
                        reservation_id: Some(res.id.clone()),
                        description: Some(if e.kind == TxKind::Spend {
                            "reservation commit".into()
                        } else {
                            "reservation hold released on commit".into()
                        }),
                        ..Default::default()
                    },
                );
                if e.kind == TxKind::Spend {
                    let seq = st.regions[&rid].next_seq - 1;
                    st.spends.insert(
                        last.0.clone(),
                        (
                            rid.clone(),
                            *amount_cents,
                            0,
                            res.agency_id.clone(),
                            Some(res.job_type.clone()),
                            seq,
                        ),
                    );
                }
            }
            res.status = "committed".into();
            res.committed_cents = Some(*amount_cents);
            settle(st, &res);
            Ok(Some(TxOutcome {
                transaction_id: last.0,
                amount_cents: *amount_cents,
                balance_after_cents: last.1,
                replayed: false,
                reservation: Some(res),
            }))
        }
        BudgetOp::Release {
            reservation_id,
            expired,
        } => {
            let mut res = held_reservation(db, st, &rid, reservation_id).await?;
            if *expired
                && !fleetscale_core::budget::reservation_expired(res.expires_at_ms, job.now_ms)
            {
                return Ok(None);
            }
            let e = state.release(res.amount_cents)?;
            st.regions.get_mut(&rid).expect("locked").state = state;
            let (id, bal) = push_tx(
                st,
                job,
                e,
                TxExtra {
                    agency_id: res.agency_id.clone(),
                    job_type: Some(res.job_type.clone()),
                    reservation_id: Some(res.id.clone()),
                    description: Some(if *expired {
                        "reservation expired".into()
                    } else {
                        "reservation released".into()
                    }),
                    ..Default::default()
                },
            );
            res.status = if *expired { "expired" } else { "released" }.into();
            settle(st, &res);
            let amount = res.amount_cents;
            let mut o = outcome(id, amount, bal);
            if let Some(o) = o.as_mut() {
                o.reservation = Some(res);
            }
            Ok(o)
        }
        BudgetOp::Reset { period } => Ok(apply_reset(st, &rid, *period, &job.actor, job.now_ms)
            .and_then(|(id, amount, bal)| outcome(id, amount, bal))),
    }
}

/// Region `rid`'s period starts (see [`Locked::period_starts`]), read once
/// per batch; resets applied in the batch keep them current.
async fn period_starts<D: BatchDb>(
    db: &mut D,
    st: &mut BatchState,
    rid: &str,
) -> Result<(i64, i64), LedgerError> {
    let stored = match st.regions[rid].period_starts {
        Some(p) => p,
        None => {
            let p = db.period_starts(rid).await?;
            st.regions.get_mut(rid).expect("locked").period_starts = Some(p);
            p
        }
    };
    let batch = st.regions[rid].batch_period_starts;
    Ok((stored.0.max(batch.0), stored.1.max(batch.1)))
}

/// Resets region `rid` in the batch: `period`, or the reset due at `now_ms`
/// (none when the day and month have not changed). Returns the entry's id,
/// amount and balance after.
fn apply_reset(
    st: &mut BatchState,
    rid: &str,
    period: Option<ResetPeriod>,
    actor: &str,
    now_ms: i64,
) -> Option<(String, Cents, Cents)> {
    let l = st
        .regions
        .get_mut(rid)
        .expect("region locked at batch start");
    let period = period.or_else(|| due_reset(l.last_day_key, l.last_month_key, now_ms))?;
    let e = l.state.reset(period);
    l.last_day_key = l.last_day_key.max(day_key(now_ms));
    if period == ResetPeriod::Monthly {
        l.last_month_key = l.last_month_key.max(month_key(now_ms));
    }
    let (id, bal) = push_tx_as(
        st,
        rid,
        actor,
        now_ms,
        e,
        TxExtra {
            description: Some(format!("{} reset", period.as_str())),
            ..Default::default()
        },
    );
    let l = st
        .regions
        .get_mut(rid)
        .expect("region locked at batch start");
    let seq = l.next_seq - 1;
    l.batch_period_starts.0 = seq;
    if period == ResetPeriod::Monthly {
        l.batch_period_starts.1 = seq;
    }
    Some((id, e.amount_cents, bal))
}

fn settle(st: &mut BatchState, res: &Reservation) {
    st.reservations.insert(res.id.clone(), res.clone());
    st.changed_res
        .push((res.id.clone(), res.status.clone(), res.committed_cents));
}

async fn held_reservation<D: BatchDb>(
    db: &mut D,
    st: &mut BatchState,
    rid: &str,
    id: &str,
) -> Result<Reservation, LedgerError> {
    let res = match st.reservations.get(id) {
        Some(r) => r.clone(),
        None => {
            let r = db
                .reservation(id)
                .await?
                .ok_or_else(|| not_found("reservation"))?;
            st.reservations.insert(r.id.clone(), r.clone());
            r
        }
    };
    if res.region_id != rid {
        return Err(LedgerError::Store(not_found("reservation")));
    }
    if res.status != "held" {
        return Err(LedgerError::ReservationSettled {
            id: res.id,
            status: res.status,
        });
    }
    Ok(res)
}
