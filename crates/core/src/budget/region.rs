//! Region budgets (phase 92): the rules of every ledger operation on a
//! budget's balances, reservation expiry, reset scheduling and the month's
//! forecast.

use serde::{Deserialize, Serialize};

use super::calendar::{day_key, month_bounds, month_key, MIN_PROJECTION_ELAPSED_MS};
use super::money::{add, amount_ok, ceil_div, sat, sub, BudgetError, Cents, MAX_AMOUNT_CENTS};
use crate::validate::Violations;

/// A new region's monthly AI budget when its creator names none: phase 92's
/// `ai_budget_monthly DEFAULT 100000` (cents, i.e. $1,000).
pub const SEED_REGION_MONTHLY_CENTS: Cents = 100_000;

/// Default lifetime of a reservation, seconds.
pub const DEFAULT_RESERVATION_TTL_SECS: i64 = 300;

/// Longest lifetime of a reservation, seconds (a stated bound: one day).
pub const MAX_RESERVATION_TTL_SECS: i64 = 86_400;

/// The kind of a ledger entry (phase 92 `transaction_type`, plus the two
/// entries of the reservation protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxKind {
    /// Money added to the monthly budget and to the remaining balance.
    Allocation,
    /// Money charged.
    Spend,
    /// Money given back for an earlier spend.
    Refund,
    /// A daily or monthly reset.
    Reset,
    /// Money held for a long operation.
    Reserve,
    /// A hold given back (on commit, release or expiry).
    Release,
}

impl TxKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::Allocation => "allocation",
            TxKind::Spend => "spend",
            TxKind::Refund => "refund",
            TxKind::Reset => "reset",
            TxKind::Reserve => "reserve",
            TxKind::Release => "release",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<TxKind> {
        Some(match s {
            "allocation" => TxKind::Allocation,
            "spend" => TxKind::Spend,
            "refund" => TxKind::Refund,
            "reset" => TxKind::Reset,
            "reserve" => TxKind::Reserve,
            "release" => TxKind::Release,
            _ => return None,
        })
    }
}

/// Which counters a reset clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetPeriod {
    /// Clears `spent_today`.
    Daily,
    /// Refills `remaining` to the monthly budget (minus active holds) and clears `spent_today`.
    Monthly,
}

impl ResetPeriod {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetPeriod::Daily => "daily",
            ResetPeriod::Monthly => "monthly",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<ResetPeriod> {
        match s {
            "daily" => Some(ResetPeriod::Daily),
            "monthly" => Some(ResetPeriod::Monthly),
            _ => None,
        }
    }
}

/// The balances of one budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetState {
    /// The monthly budget (sum of allocations).
    pub monthly_cents: Cents,
    /// What may still be spent or held.
    pub remaining_cents: Cents,
    /// Charged since the last daily reset, net of refunds.
    pub spent_today_cents: Cents,
    /// Held by active reservations.
    pub reserved_cents: Cents,
}

/// One change to a budget, as it goes to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effect {
    /// Entry kind.
    pub kind: TxKind,
    /// Amount (non-negative) as the caller stated it.
    pub amount_cents: Cents,
    /// Signed change of `remaining`.
    pub delta_cents: Cents,
    /// `remaining` after the change.
    pub balance_after_cents: Cents,
    /// The period, for resets.
    pub period: Option<ResetPeriod>,
}

impl BudgetState {
    fn effect(&self, kind: TxKind, amount: Cents, before: Cents) -> Effect {
        Effect {
            kind,
            amount_cents: amount,
            delta_cents: self.remaining_cents - before,
            balance_after_cents: self.remaining_cents,
            period: None,
        }
    }

    /// True when `amount` could be spent now (the side-effect-free check).
    #[must_use]
    pub fn can_spend(&self, amount: Cents) -> bool {
        amount > 0 && amount <= self.remaining_cents
    }

    /// Adds `amount` to the monthly budget and to the remaining balance.
    pub fn allocate(&mut self, amount: Cents) -> Result<Effect, BudgetError> {
        amount_ok(amount)?;
        let before = self.remaining_cents;
        let monthly = add(self.monthly_cents, amount)?;
        let remaining = add(self.remaining_cents, amount)?;
        self.monthly_cents = monthly;
        self.remaining_cents = remaining;
        Ok(self.effect(TxKind::Allocation, amount, before))
    }

    /// Checks that `amount` is a valid amount the remaining budget covers
    /// (the one check of spends and reservations).
    fn covers(&self, amount: Cents) -> Result<(), BudgetError> {
        amount_ok(amount)?;
        if amount > self.remaining_cents {
            return Err(BudgetError::Insufficient {
                requested_cents: amount,
                remaining_cents: self.remaining_cents,
            });
        }
        Ok(())
    }

    /// Atomic check-and-decrement: charges `amount` or refuses, never below zero.
    pub fn spend(&mut self, amount: Cents) -> Result<Effect, BudgetError> {
        self.covers(amount)?;
        let before = self.remaining_cents;
        let today = add(self.spent_today_cents, amount)?;
        self.remaining_cents -= amount;
        self.spent_today_cents = today;
        Ok(self.effect(TxKind::Spend, amount, before))
    }

    /// Gives back `amount` of a spend that charged `charged`, has already
    /// been refunded `refunded` and was charged in period `charged_in`.
    /// The money goes back to the period that paid: a spend of today lowers
    /// `spent_today` too, one of an earlier day of this month only refills
    /// `remaining`, and one of a month already closed by a monthly reset
    /// changes no balance (that month's budget is gone; the entry records
    /// the refund).
    pub fn refund(
        &mut self,
        amount: Cents,
        charged: Cents,
        refunded: Cents,
        charged_in: ChargedIn,
    ) -> Result<Effect, BudgetError> {
        amount_ok(amount)?;
        let refundable = sub(charged, refunded)?.max(0);
        if amount > refundable {
            return Err(BudgetError::RefundTooLarge {
                requested_cents: amount,
                refundable_cents: refundable,
            });
        }
        let before = self.remaining_cents;
        if charged_in != ChargedIn::ClosedMonth {
            self.remaining_cents = add(self.remaining_cents, amount)?;
        }
        if charged_in == ChargedIn::Today {
            self.spent_today_cents -= amount.min(self.spent_today_cents);
        }
        Ok(self.effect(TxKind::Refund, amount, before))
    }

    /// Holds `amount` for a long operation (same check as a spend).
    pub fn reserve(&mut self, amount: Cents) -> Result<Effect, BudgetError> {
        self.covers(amount)?;
        let before = self.remaining_cents;
        let reserved = add(self.reserved_cents, amount)?;
        self.remaining_cents -= amount;
        self.reserved_cents = reserved;
        Ok(self.effect(TxKind::Reserve, amount, before))
    }

    /// Gives back a hold of `held` cents.
    pub fn release(&mut self, held: Cents) -> Result<Effect, BudgetError> {
        amount_ok(held)?;
        let before = self.remaining_cents;
        let remaining = add(self.remaining_cents, held)?;
        let reserved = sub(self.reserved_cents, held)?;
        if reserved < 0 {
            return Err(BudgetError::BadAmount(held));
        }
        self.remaining_cents = remaining;
        self.reserved_cents = reserved;
        Ok(self.effect(TxKind::Release, held, before))
    }

    /// Commits a hold of `held` cents at its actual cost `actual`
    /// (`0..=held`): the hold is released and `actual` spent, in that order,
    /// so the balance never dips. Returns the release and, unless `actual`
    /// is 0, the spend.
    pub fn commit(&mut self, held: Cents, actual: Cents) -> Result<Vec<Effect>, BudgetError> {
        if !(0..=MAX_AMOUNT_CENTS).contains(&actual) {
            return Err(BudgetError::BadAmount(actual));
        }
        if actual > held {
            return Err(BudgetError::CommitTooLarge {
                requested_cents: actual,
                held_cents: held,
            });
        }
        let mut next = *self;
        let mut out = vec![next.release(held)?];
        if actual > 0 {
            out.push(next.spend(actual)?);
        }
        *self = next;
        Ok(out)
    }

    /// A reset: daily clears `spent_today`; monthly also sets `remaining` to
    /// the monthly budget minus what active reservations hold.
    pub fn reset(&mut self, period: ResetPeriod) -> Effect {
        let before = self.remaining_cents;
        self.spent_today_cents = 0;
        if period == ResetPeriod::Monthly {
            self.remaining_cents = (self.monthly_cents - self.reserved_cents).max(0);
        }
        let mut e = self.effect(TxKind::Reset, 0, before);
        e.amount_cents = e.delta_cents.abs();
        e.period = Some(period);
        e
    }
}

/// The period a refunded spend was charged in, relative to the budget's
/// latest resets (see [`BudgetState::refund`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargedIn {
    /// Since the latest reset of either period.
    Today,
    /// Since the latest monthly reset, before a later daily one.
    EarlierThisMonth,
    /// Before the latest monthly reset.
    ClosedMonth,
}

impl ChargedIn {
    /// The period of the spend at ledger position `spend_seq`, given the
    /// positions of the latest reset of either period (`day_start_seq`) and
    /// of the latest monthly reset (`month_start_seq`); 0 for none.
    #[must_use]
    pub fn of(spend_seq: i64, day_start_seq: i64, month_start_seq: i64) -> ChargedIn {
        if spend_seq < month_start_seq {
            ChargedIn::ClosedMonth
        } else if spend_seq < day_start_seq {
            ChargedIn::EarlierThisMonth
        } else {
            ChargedIn::Today
        }
    }
}

/// True when a reservation expiring at `expires_at_ms` has expired at `now_ms`.
#[must_use]
pub fn reservation_expired(expires_at_ms: i64, now_ms: i64) -> bool {
    now_ms >= expires_at_ms
}

/// Expiry time of a reservation made at `now_ms` with `ttl_secs` (validated).
pub fn reservation_expiry(now_ms: i64, ttl_secs: Option<i64>) -> Result<i64, Violations> {
    let ttl = ttl_secs.unwrap_or(DEFAULT_RESERVATION_TTL_SECS);
    let mut v = Violations::default();
    v.check_i64("ttl_secs", ttl, 1, MAX_RESERVATION_TTL_SECS);
    v.into_result(now_ms.saturating_add(ttl.saturating_mul(1000)))
}

/// Which resets are due at `now_ms` for a budget last reset on day
/// `last_day_key` and in month `last_month_key`: a monthly reset when the UTC
/// month changed (it also clears the day), else a daily one when the UTC day
/// changed. Applying the result and storing the new keys is idempotent.
#[must_use]
pub fn due_reset(last_day_key: i64, last_month_key: i64, now_ms: i64) -> Option<ResetPeriod> {
    if month_key(now_ms) > last_month_key {
        Some(ResetPeriod::Monthly)
    } else if day_key(now_ms) > last_day_key {
        Some(ResetPeriod::Daily)
    } else {
        None
    }
}

/// Where a region budget's month is heading (phase 92's budget
/// forecasting): the month's net spend so far extrapolated linearly to the
/// month's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BudgetForecast {
    /// Net spend of the whole month at the rate so far (rounded up;
    /// saturates at `i64::MAX`).
    pub projected_month_spend_cents: Cents,
    /// When `remaining` reaches zero at that rate: `now_ms` when it already
    /// has, `None` when it lasts the month or nothing was spent.
    pub exhausted_at_ms: Option<i64>,
}

/// Forecasts a region budget at `now_ms` from `spent_cents` net spend since
/// the start of the UTC month and `remaining_cents` left. The rate is
/// measured over at least [`MIN_PROJECTION_ELAPSED_MS`],
/// so a spend in the month's first minutes is not multiplied by thousands.
/// Negative inputs count as 0.
#[must_use]
pub fn forecast_month(spent_cents: Cents, remaining_cents: Cents, now_ms: i64) -> BudgetForecast {
    let (spent, remaining) = (
        i128::from(spent_cents.max(0)),
        i128::from(remaining_cents.max(0)),
    );
    let (start, end) = month_bounds(now_ms);
    let month = i128::from(end - start);
    let elapsed = i128::from((now_ms - start).clamp(MIN_PROJECTION_ELAPSED_MS, end - start));
    let projected = sat(ceil_div(spent * month, elapsed));
    let exhausted_at_ms = if remaining == 0 {
        Some(now_ms)
    } else if spent == 0 {
        None
    } else {
        // remaining / (spent / elapsed), from now.
        let t = i128::from(now_ms) + remaining * elapsed / spent;
        (t < i128::from(end)).then(|| sat(t))
    };
    BudgetForecast {
        projected_month_spend_cents: projected,
        exhausted_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::calendar::{civil_from_days, DAY_MS};
    use crate::budget::money::check_amount;

    #[test]
    fn spend_never_goes_below_zero_and_changes_nothing_when_refused() {
        let mut s = BudgetState::default();
        s.allocate(100).unwrap();
        assert_eq!(s.spend(60).unwrap().balance_after_cents, 40);
        let before = s;
        assert_eq!(
            s.spend(41),
            Err(BudgetError::Insufficient {
                requested_cents: 41,
                remaining_cents: 40
            })
        );
        assert_eq!(s, before);
        assert_eq!(s.spend(40).unwrap().balance_after_cents, 0);
        assert!(!s.can_spend(1));
    }

    #[test]
    fn bad_amounts_and_overflow_are_refused() {
        let mut s = BudgetState::default();
        assert_eq!(s.allocate(0), Err(BudgetError::BadAmount(0)));
        assert_eq!(s.allocate(-5), Err(BudgetError::BadAmount(-5)));
        assert_eq!(
            s.allocate(MAX_AMOUNT_CENTS + 1),
            Err(BudgetError::BadAmount(MAX_AMOUNT_CENTS + 1))
        );
        s.remaining_cents = i64::MAX - 1;
        s.monthly_cents = i64::MAX - 1;
        let before = s;
        assert_eq!(s.allocate(2), Err(BudgetError::Overflow));
        assert_eq!(s, before);
        let mut v = Violations::default();
        check_amount(&mut v, "amount_cents", 0);
        check_amount(&mut v, "amount_cents", MAX_AMOUNT_CENTS);
        assert_eq!(v.0.len(), 1);
    }

    #[test]
    fn refund_is_bounded_by_the_spend() {
        let mut s = BudgetState::default();
        s.allocate(100).unwrap();
        s.spend(30).unwrap();
        assert_eq!(
            s.refund(20, 30, 0, ChargedIn::Today)
                .unwrap()
                .balance_after_cents,
            90
        );
        assert_eq!(
            s.refund(11, 30, 20, ChargedIn::Today),
            Err(BudgetError::RefundTooLarge {
                requested_cents: 11,
                refundable_cents: 10
            })
        );
        assert_eq!(s.spent_today_cents, 10);
    }

    #[test]
    fn a_refund_goes_back_to_the_period_that_paid() {
        // (charged in, remaining after, spent today after): a budget of 1,000
        // with 300 spent today; 100 of some spend refunded.
        let cases = [
            (ChargedIn::Today, 800, 200),
            (ChargedIn::EarlierThisMonth, 800, 300),
            (ChargedIn::ClosedMonth, 700, 300),
        ];
        for (charged_in, remaining, today) in cases {
            let mut s = BudgetState::default();
            s.allocate(1_000).unwrap();
            s.spend(300).unwrap();
            let e = s.refund(100, 300, 0, charged_in).unwrap();
            assert_eq!(
                (s.remaining_cents, s.spent_today_cents),
                (remaining, today),
                "{charged_in:?}"
            );
            assert_eq!(e.balance_after_cents, remaining, "{charged_in:?}");
            assert_eq!(e.delta_cents, remaining - 700, "{charged_in:?}");
            assert_eq!(e.amount_cents, 100, "{charged_in:?}");
        }
        // Still bounded by the spend in every period.
        let mut s = BudgetState::default();
        assert!(matches!(
            s.refund(301, 300, 0, ChargedIn::ClosedMonth),
            Err(BudgetError::RefundTooLarge { .. })
        ));
    }

    #[test]
    fn forecast_extrapolates_the_month_so_far() {
        // 2024-02-11T00:00:00Z: 10 of February's 29 days gone.
        let feb11 = 1_706_745_600_000 + 10 * DAY_MS;
        let feb_end = 1_706_745_600_000 + 29 * DAY_MS;
        // (spent, remaining, projected, exhausted at).
        let cases = [
            // 100 a day: 2,900 for the month; 1,000 left lasts 10 more days.
            (1_000, 1_000, 2_900, Some(feb11 + 10 * DAY_MS)),
            // 2,000 left lasts 20 days: past the month's end.
            (1_000, 2_000, 2_900, None),
            (0, 1_000, 0, None),
            (500, 0, 1_450, Some(feb11)),
            (-5, -5, 0, Some(feb11)),
        ];
        for (spent, remaining, projected, exhausted) in cases {
            let f = forecast_month(spent, remaining, feb11);
            assert_eq!(
                (f.projected_month_spend_cents, f.exhausted_at_ms),
                (projected, exhausted),
                "spent {spent}, remaining {remaining}"
            );
            if let Some(t) = f.exhausted_at_ms {
                assert!(t < feb_end);
            }
        }
        // The first minutes of a month count as an hour.
        let f = forecast_month(10, 1_000, 1_706_745_600_000 + 60_000);
        assert_eq!(f.projected_month_spend_cents, 10 * 29 * 24);
        // No overflow at the extremes.
        let f = forecast_month(i64::MAX, i64::MAX, feb11);
        assert_eq!(f.projected_month_spend_cents, i64::MAX);
    }

    #[test]
    fn charged_in_follows_the_latest_resets() {
        // (spend seq, latest reset of either period, latest monthly reset).
        let cases = [
            ((5, 0, 0), ChargedIn::Today),
            ((5, 4, 0), ChargedIn::Today),
            ((5, 6, 0), ChargedIn::EarlierThisMonth),
            ((5, 6, 3), ChargedIn::EarlierThisMonth),
            ((5, 6, 6), ChargedIn::ClosedMonth),
            ((5, 9, 7), ChargedIn::ClosedMonth),
        ];
        for ((spend, day, month), want) in cases {
            assert_eq!(
                ChargedIn::of(spend, day, month),
                want,
                "{spend} {day} {month}"
            );
        }
    }

    #[test]
    fn commit_releases_the_rest_and_never_dips() {
        let mut s = BudgetState::default();
        s.allocate(100).unwrap();
        s.reserve(70).unwrap();
        assert_eq!((s.remaining_cents, s.reserved_cents), (30, 70));
        assert!(matches!(
            s.commit(70, 71),
            Err(BudgetError::CommitTooLarge { .. })
        ));
        let fx = s.commit(70, 25).unwrap();
        assert_eq!(fx.len(), 2);
        assert_eq!(fx[0].balance_after_cents, 100);
        assert_eq!(fx[1].balance_after_cents, 75);
        assert_eq!(s.reserved_cents, 0);
        assert_eq!(s.spent_today_cents, 25);
        assert_eq!(s.commit(0, 0).unwrap_err(), BudgetError::BadAmount(0));
    }

    #[test]
    fn monthly_reset_keeps_active_holds() {
        let mut s = BudgetState::default();
        s.allocate(100).unwrap();
        s.spend(50).unwrap();
        s.reserve(20).unwrap();
        let e = s.reset(ResetPeriod::Monthly);
        assert_eq!(e.delta_cents, 50);
        assert_eq!(s.remaining_cents, 80);
        assert_eq!(s.spent_today_cents, 0);
        let e = s.reset(ResetPeriod::Daily);
        assert_eq!(e.delta_cents, 0);
    }

    #[test]
    fn reset_schedule_follows_utc_days_and_months() {
        // 2024-02-29T23:59:59Z and 2024-03-01T00:00:00Z.
        let feb29 = 1_709_251_199_000;
        let mar1 = feb29 + 1000;
        assert_eq!(civil_from_days(day_key(feb29)), (2024, 2, 29));
        assert_eq!(civil_from_days(day_key(mar1)), (2024, 3, 1));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        let (d, m) = (day_key(feb29), month_key(feb29));
        assert_eq!(due_reset(d, m, feb29), None);
        assert_eq!(due_reset(d, m, mar1), Some(ResetPeriod::Monthly));
        assert_eq!(
            due_reset(d - 1, m, feb29),
            Some(ResetPeriod::Daily),
            "a new day in the same month"
        );
    }

    #[test]
    fn reservations_expire_at_their_deadline() {
        let exp = reservation_expiry(1000, Some(2)).unwrap();
        assert_eq!(exp, 3000);
        assert!(!reservation_expired(exp, 2999));
        assert!(reservation_expired(exp, 3000));
        assert!(reservation_expiry(0, Some(0)).is_err());
        assert!(reservation_expiry(0, Some(MAX_RESERVATION_TTL_SECS + 1)).is_err());
        // Refused by the range check, not an overflow panic on the way.
        for ttl in [i64::MAX, i64::MIN] {
            let e = reservation_expiry(0, Some(ttl)).unwrap_err();
            assert!(format!("{e:?}").contains("ttl_secs"), "{e:?}");
        }
        assert_eq!(
            reservation_expiry(0, None).unwrap(),
            DEFAULT_RESERVATION_TTL_SECS * 1000
        );
    }
}
