//! A region budget's ledger: its stored entries, and their replay from an
//! empty budget that checks every invariant against the stored balances.

use serde::{Deserialize, Serialize};

use super::money::{BudgetError, Cents, MAX_REPORTED_VIOLATIONS};
use super::region::{BudgetState, ChargedIn, Effect, ResetPeriod, TxKind};

/// One stored ledger entry, as replay needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Transaction id.
    pub id: String,
    /// Position in the budget's ledger (1, 2, 3, ...).
    pub seq: i64,
    /// Kind.
    pub kind: TxKind,
    /// Amount as stated.
    pub amount_cents: Cents,
    /// Signed change of `remaining`.
    pub delta_cents: Cents,
    /// `remaining` after the entry.
    pub balance_after_cents: Cents,
    /// The reset period, for resets.
    pub period: Option<ResetPeriod>,
    /// For refunds: the spend refunded.
    pub refund_of: Option<String>,
    /// The idempotency key the entry was written under, if any.
    pub idempotency_key: Option<String>,
    /// For reserve and release entries (and a commit's spend): the
    /// reservation.
    #[serde(default)]
    pub reservation_id: Option<String>,
}

/// A broken ledger invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerViolation {
    /// The entry's sequence number (0 for the stored balances).
    pub seq: i64,
    /// What is wrong.
    pub problem: String,
}

/// The result of checking a ledger against the stored balances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerReport {
    /// True when no invariant is broken.
    pub ok: bool,
    /// Entries replayed.
    pub entries: u64,
    /// Balances recomputed from the ledger.
    pub recomputed: BudgetState,
    /// Balances stored.
    pub stored: BudgetState,
    /// Every broken invariant (at most [`MAX_REPORTED_VIOLATIONS`]).
    pub violations: Vec<LedgerViolation>,
}

/// Replays `entries` (in `seq` order) from an empty budget and checks every
/// invariant: contiguous sequence numbers, each entry's effect follows the
/// rules of its kind, `balance_after` is the running balance, the balance is
/// never negative, refunds never exceed their spend, no idempotency key was
/// used twice by one kind of entry (a request charged twice), every release
/// gives back exactly a hold that is still held (none twice), and the
/// result equals `stored`.
#[must_use]
pub fn check_ledger(entries: &[LedgerEntry], stored: BudgetState) -> LedgerReport {
    use std::collections::HashMap;
    let mut st = BudgetState::default();
    let mut violations = Vec::new();
    // Spend id -> (charged, refunded, seq).
    let mut spends: HashMap<&str, (Cents, Cents, i64)> = HashMap::new();
    // Positions of the latest reset of either period and of the latest
    // monthly one.
    let (mut day_start, mut month_start) = (0, 0);
    // Reservation id -> amount held, while held.
    let mut holds: HashMap<&str, Cents> = HashMap::new();
    let mut keys: HashMap<(&str, &str), i64> = HashMap::new();
    let mut bad = |seq: i64, problem: String| {
        if violations.len() < MAX_REPORTED_VIOLATIONS {
            violations.push(LedgerViolation { seq, problem });
        }
    };
    for (i, e) in entries.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        if e.seq != expected_seq {
            bad(
                e.seq,
                format!("sequence gap: expected {expected_seq}, found {}", e.seq),
            );
        }
        if let Some(key) = e.idempotency_key.as_deref() {
            if let Some(first) = keys.insert((e.kind.as_str(), key), e.seq) {
                bad(
                    e.seq,
                    format!(
                        "idempotency key {key:?} of a {} was already used by entry {first}: one request applied twice",
                        e.kind.as_str()
                    ),
                );
            }
        }
        let result: Result<Vec<Effect>, BudgetError> = match e.kind {
            TxKind::Allocation => st.allocate(e.amount_cents).map(|x| vec![x]),
            TxKind::Spend => {
                spends.insert(&e.id, (e.amount_cents, 0, e.seq));
                // Replay trusts the order; a spend recorded is re-checked against the running balance.
                st.spend(e.amount_cents).map(|x| vec![x])
            }
            TxKind::Refund => {
                let (charged, refunded, spend_seq) = e
                    .refund_of
                    .as_deref()
                    .and_then(|id| spends.get(id).copied())
                    .unwrap_or((0, 0, 0));
                let charged_in = ChargedIn::of(spend_seq, day_start, month_start);
                let r = st.refund(e.amount_cents, charged, refunded, charged_in);
                if r.is_ok() {
                    if let Some(s) = e.refund_of.as_deref().and_then(|id| spends.get_mut(id)) {
                        s.1 += e.amount_cents;
                    }
                }
                r.map(|x| vec![x])
            }
            TxKind::Reserve => {
                if let Some(r) = e.reservation_id.as_deref() {
                    if holds.insert(r, e.amount_cents).is_some() {
                        bad(e.seq, format!("reservation {r} is held a second time"));
                    }
                }
                st.reserve(e.amount_cents).map(|x| vec![x])
            }
            TxKind::Release => {
                if let Some(r) = e.reservation_id.as_deref() {
                    match holds.remove(r) {
                        None => bad(
                            e.seq,
                            format!("reservation {r} is released but not held (released twice, or never reserved)"),
                        ),
                        Some(held) if held != e.amount_cents => bad(
                            e.seq,
                            format!(
                                "reservation {r} held {held} cents but {} were released",
                                e.amount_cents
                            ),
                        ),
                        Some(_) => {}
                    }
                }
                st.release(e.amount_cents).map(|x| vec![x])
            }
            TxKind::Reset => match e.period {
                Some(p) => {
                    day_start = e.seq;
                    if p == ResetPeriod::Monthly {
                        month_start = e.seq;
                    }
                    Ok(vec![st.reset(p)])
                }
                None => Err(BudgetError::BadAmount(e.amount_cents)),
            },
        };
        match result {
            Err(err) => bad(e.seq, format!("{} does not replay: {err}", e.kind.as_str())),
            Ok(effects) => {
                let eff = effects[0];
                if eff.delta_cents != e.delta_cents {
                    bad(
                        e.seq,
                        format!(
                            "delta {} but the rules give {}",
                            e.delta_cents, eff.delta_cents
                        ),
                    );
                }
                if eff.balance_after_cents != e.balance_after_cents {
                    bad(
                        e.seq,
                        format!(
                            "balance_after {} but the running balance is {}",
                            e.balance_after_cents, eff.balance_after_cents
                        ),
                    );
                }
            }
        }
        if e.balance_after_cents < 0 {
            bad(e.seq, "balance below zero".into());
        }
    }
    if st != stored {
        bad(
            0,
            format!("stored balances {stored:?} differ from the ledger's {st:?}"),
        );
    }
    LedgerReport {
        ok: violations.is_empty(),
        entries: entries.len() as u64,
        recomputed: st,
        stored,
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, id: &str, e: Effect, refund_of: Option<&str>) -> LedgerEntry {
        LedgerEntry {
            id: id.into(),
            seq,
            kind: e.kind,
            amount_cents: e.amount_cents,
            delta_cents: e.delta_cents,
            balance_after_cents: e.balance_after_cents,
            period: e.period,
            refund_of: refund_of.map(str::to_string),
            idempotency_key: None,
            reservation_id: None,
        }
    }

    #[test]
    fn replay_catches_a_hold_released_twice() {
        let held = |seq: i64, id: &str, e: Effect, r: &str| LedgerEntry {
            reservation_id: Some(r.to_string()),
            ..entry(seq, id, e, None)
        };
        let mut s = BudgetState::default();
        let mut entries = vec![entry(1, "a1", s.allocate(1_000).unwrap(), None)];
        entries.push(held(2, "h1", s.reserve(300).unwrap(), "res-1"));
        entries.push(held(3, "h2", s.reserve(200).unwrap(), "res-2"));
        // res-1 committed at 100: its hold released, then the spend.
        let c = s.commit(300, 100).unwrap();
        entries.push(held(4, "c1", c[0], "res-1"));
        entries.push(held(5, "c2", c[1], "res-1"));
        let report = check_ledger(&entries, s);
        assert!(report.ok, "{report:?}");
        // A second release of res-1: the balances still replay (res-2's
        // hold covers it), but the ledger check names it.
        let mut twice = entries.clone();
        let mut t = s;
        twice.push(held(6, "x1", t.release(200).unwrap(), "res-1"));
        let report = check_ledger(&twice, t);
        assert!(!report.ok);
        assert!(
            report.violations[0]
                .problem
                .contains("res-1 is released but not held"),
            "{report:?}"
        );
        // A release of another amount than was held.
        let mut wrong = entries;
        let mut w = s;
        wrong.push(held(6, "x2", w.release(150).unwrap(), "res-2"));
        let report = check_ledger(&wrong, w);
        assert!(!report.ok);
        assert!(
            report.violations[0]
                .problem
                .contains("held 200 cents but 150"),
            "{report:?}"
        );
    }

    #[test]
    fn replay_refills_only_the_period_that_paid() {
        // Spend in January, monthly reset, refund in February: February's
        // balance stays at its budget, and the replay agrees.
        let mut s = BudgetState::default();
        let mut entries = Vec::new();
        let mut push = |e: Effect, id: &str, refund_of: Option<&str>| {
            let seq = entries.len() as i64 + 1;
            entries.push(entry(seq, id, e, refund_of));
        };
        push(s.allocate(1_000).unwrap(), "a1", None);
        push(s.spend(400).unwrap(), "s1", None);
        push(s.reset(ResetPeriod::Monthly), "m1", None);
        push(s.spend(100).unwrap(), "s2", None);
        push(
            s.refund(400, 400, 0, ChargedIn::ClosedMonth).unwrap(),
            "r1",
            Some("s1"),
        );
        push(
            s.refund(50, 100, 0, ChargedIn::Today).unwrap(),
            "r2",
            Some("s2"),
        );
        assert_eq!((s.remaining_cents, s.spent_today_cents), (950, 50));
        let report = check_ledger(&entries, s);
        assert!(report.ok, "{report:?}");
        // A replay that refilled February for January's refund would differ.
        let mut wrong = s;
        wrong.remaining_cents += 400;
        assert!(!check_ledger(&entries, wrong).ok);
    }

    #[test]
    fn ledger_replays_to_the_stored_balances_and_finds_tampering() {
        let mut s = BudgetState::default();
        let mut log = Vec::new();
        let mut seq = 0;
        let mut push = |e: Effect, id: &str, r: Option<&str>| {
            seq += 1;
            log.push(entry(seq, id, e, r));
        };
        push(s.allocate(1000).unwrap(), "a", None);
        push(s.spend(300).unwrap(), "s1", None);
        push(
            s.refund(100, 300, 0, ChargedIn::Today).unwrap(),
            "r1",
            Some("s1"),
        );
        push(s.reserve(200).unwrap(), "h", None);
        for e in s.commit(200, 150).unwrap() {
            push(e, "c", None);
        }
        push(s.reset(ResetPeriod::Monthly), "m", None);
        let report = check_ledger(&log, s);
        assert!(report.ok, "{report:?}");
        assert_eq!(report.recomputed, s);

        let mut tampered = log.clone();
        tampered[1].balance_after_cents += 1;
        assert!(!check_ledger(&tampered, s).ok);
        let mut over_refund = log.clone();
        over_refund[2].amount_cents = 301;
        over_refund[2].delta_cents = 301;
        assert!(!check_ledger(&over_refund, s).ok);
        let mut wrong_stored = s;
        wrong_stored.remaining_cents -= 1;
        assert!(!check_ledger(&log, wrong_stored).ok);
        let mut gap = log.clone();
        gap.remove(3);
        assert!(!check_ledger(&gap, s).ok);
    }

    #[test]
    fn ledger_check_finds_a_key_used_twice_by_one_kind_of_entry() {
        let mut s = BudgetState::default();
        let mut log = vec![entry(1, "a", s.allocate(1000).unwrap(), None)];
        for (seq, id, key) in [(2, "s1", "k"), (3, "s2", "other")] {
            let mut e = entry(seq, id, s.spend(10).unwrap(), None);
            e.idempotency_key = Some(key.into());
            log.push(e);
        }
        // A refund may reuse a spend's key: the kinds differ.
        let mut r = entry(
            4,
            "r1",
            s.refund(5, 10, 0, ChargedIn::Today).unwrap(),
            Some("s1"),
        );
        r.idempotency_key = Some("k".into());
        log.push(r);
        assert!(check_ledger(&log, s).ok, "{:?}", check_ledger(&log, s));

        log[2].idempotency_key = Some("k".into());
        let report = check_ledger(&log, s);
        assert!(!report.ok);
        assert_eq!(report.violations.len(), 1, "{report:?}");
        assert_eq!(report.violations[0].seq, 3);
        assert!(
            report.violations[0]
                .problem
                .contains("already used by entry 2"),
            "{report:?}"
        );
    }
}
