//! Exact AI budgets (phase 92 region budgets, phase 66 provider budgets): the
//! rules of every ledger operation on integer cents, ledger replay and the
//! invariant check, reservation expiry, reset scheduling and the per-tier
//! provider allocations with their monthly projection.
//!
//! Everything is checked `i64` arithmetic on cents: an operation that would
//! overflow or break a rule returns a [`BudgetError`] and changes nothing.
//! The storage layer applies these functions under a row lock (or in its
//! single writer) and appends the returned [`Effect`] to the ledger; replaying
//! the ledger with [`replay`] gives back the stored balances exactly.

use serde::{Deserialize, Serialize};

use crate::Violations;

/// Money in integer cents.
pub type Cents = i64;

/// Largest amount accepted in one operation (10 billion dollars): sums of
/// many such amounts stay far from `i64::MAX`, and larger inputs are typos.
pub const MAX_AMOUNT_CENTS: Cents = 1_000_000_000_000;

/// A new region's monthly AI budget when its creator names none: phase 92's
/// `ai_budget_monthly DEFAULT 100000` (cents, i.e. $1,000).
pub const SEED_REGION_MONTHLY_CENTS: Cents = 100_000;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Default lifetime of a reservation, seconds.
pub const DEFAULT_RESERVATION_TTL_SECS: i64 = 300;

/// Longest lifetime of a reservation, seconds (a stated bound: one day).
pub const MAX_RESERVATION_TTL_SECS: i64 = 86_400;

/// Checks that `v` is a whole number of cents in `1..=MAX_AMOUNT_CENTS`.
pub fn check_amount(v: &mut Violations, field: &str, cents: i64) {
    if cents <= 0 {
        v.push(field, "must be a positive number of cents (>= 1)");
    } else if cents > MAX_AMOUNT_CENTS {
        v.push(
            field,
            format!("must be at most {MAX_AMOUNT_CENTS} cents (overflow guard)"),
        );
    }
}

/// Checks an idempotency key: 1..=128 printable ASCII characters.
pub fn check_idempotency_key(v: &mut Violations, field: &str, key: &str) {
    if key.is_empty() || key.len() > 128 {
        v.push(field, "must be 1 to 128 characters");
    } else if !key.chars().all(|c| c.is_ascii_graphic()) {
        v.push(field, "must be printable ASCII without spaces");
    }
}

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

/// Why an operation was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// Not enough budget left.
    #[error(
        "insufficient budget: {requested_cents} cents requested, {remaining_cents} cents remaining"
    )]
    Insufficient {
        /// Requested amount.
        requested_cents: Cents,
        /// Remaining balance.
        remaining_cents: Cents,
    },
    /// The refund exceeds what is left of the charge it refers to.
    #[error("refund of {requested_cents} cents exceeds the {refundable_cents} cents still refundable on that spend")]
    RefundTooLarge {
        /// Requested refund.
        requested_cents: Cents,
        /// Charged minus already refunded.
        refundable_cents: Cents,
    },
    /// The commit exceeds the held amount.
    #[error("commit of {requested_cents} cents exceeds the {held_cents} cents reserved")]
    CommitTooLarge {
        /// Requested actual cost.
        requested_cents: Cents,
        /// Held amount.
        held_cents: Cents,
    },
    /// An amount is outside `1..=MAX_AMOUNT_CENTS` (or negative where 0 is allowed).
    #[error("amount {0} cents is out of range")]
    BadAmount(Cents),
    /// A balance would overflow.
    #[error("the balance would overflow")]
    Overflow,
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

fn amount_ok(a: Cents) -> Result<(), BudgetError> {
    if (1..=MAX_AMOUNT_CENTS).contains(&a) {
        Ok(())
    } else {
        Err(BudgetError::BadAmount(a))
    }
}

fn add(a: Cents, b: Cents) -> Result<Cents, BudgetError> {
    a.checked_add(b).ok_or(BudgetError::Overflow)
}

fn sub(a: Cents, b: Cents) -> Result<Cents, BudgetError> {
    a.checked_sub(b).ok_or(BudgetError::Overflow)
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

/// Most violations listed in a report (a stated bound).
pub const MAX_REPORTED_VIOLATIONS: usize = 100;

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

/// UTC civil date (year, month 1..=12, day) of a Unix day number.
#[must_use]
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The UTC day number of a time (days since 1970-01-01).
#[must_use]
pub fn day_key(now_ms: i64) -> i64 {
    now_ms.div_euclid(DAY_MS)
}

/// The UTC month number of a time (`year * 12 + month - 1`).
#[must_use]
pub fn month_key(now_ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(day_key(now_ms));
    y * 12 + i64::from(m) - 1
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
/// measured over at least [`crate::provider_budget::MIN_PROJECTION_ELAPSED_MS`],
/// so a spend in the month's first minutes is not multiplied by thousands.
/// Negative inputs count as 0.
#[must_use]
pub fn forecast_month(spent_cents: Cents, remaining_cents: Cents, now_ms: i64) -> BudgetForecast {
    use crate::provider_budget::{ceil_div, month_bounds, sat, MIN_PROJECTION_ELAPSED_MS};
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

// ---- phase 66 provider budgets ----------------------------------------------------

/// Scaling tiers of phase 66.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// 1-5 clients.
    SoftLaunch,
    /// 5-50 clients.
    HardLaunch,
    /// 50-100 clients.
    Growth,
}

/// AI providers of phase 66.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Claude (primary AI), tokens.
    Claude,
    /// Gemini (Google tasks), tokens.
    Gemini,
    /// OpenAI (specialized), tokens.
    Openai,
    /// ElevenLabs (voice), characters.
    Elevenlabs,
    /// Perplexity (search), tokens.
    Perplexity,
}

impl Provider {
    /// Every provider, in the seed's order.
    pub const ALL: [Provider; 5] = [
        Provider::Claude,
        Provider::Gemini,
        Provider::Openai,
        Provider::Elevenlabs,
        Provider::Perplexity,
    ];

    /// The unit its budget is counted in.
    pub fn unit(self) -> &'static str {
        match self {
            Provider::Elevenlabs => "chars",
            _ => "tokens",
        }
    }
}

/// The phase 66 monthly allocation of `provider` at `tier`, in its unit.
#[must_use]
pub fn tier_allocation(tier: Tier, provider: Provider) -> i64 {
    use Provider::*;
    use Tier::*;
    match (provider, tier) {
        (Claude, SoftLaunch) => 50_000,
        (Claude, HardLaunch) => 300_000,
        (Claude, Growth) => 1_000_000,
        (Gemini, SoftLaunch) => 20_000,
        (Gemini, HardLaunch) => 100_000,
        (Gemini, Growth) => 500_000,
        (Openai, SoftLaunch) => 30_000,
        (Openai, HardLaunch) => 150_000,
        (Openai, Growth) => 600_000,
        (Elevenlabs, SoftLaunch) => 10_000,
        (Elevenlabs, HardLaunch) => 50_000,
        (Elevenlabs, Growth) => 200_000,
        (Perplexity, SoftLaunch) => 5_000,
        (Perplexity, HardLaunch) => 25_000,
        (Perplexity, Growth) => 100_000,
    }
}

/// A provider's usage so far this month and its projection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderProjection {
    /// Provider.
    pub provider: Provider,
    /// Unit of the figures.
    pub unit: &'static str,
    /// Monthly allocation.
    pub allocation: i64,
    /// Used so far this month.
    pub used: i64,
    /// Usage projected to the end of the month at the current rate (linear).
    pub projected: i64,
    /// Percent of the allocation used.
    pub utilization_pct: f64,
    /// Projected cost of the month in cents (`projected × price / 1000`).
    pub projected_cost_cents: Cents,
    /// True when the projection exceeds the allocation.
    pub over_budget: bool,
}

/// Projects `used` units at `elapsed_ms` into a month of `month_ms` to the
/// whole month, linearly, with integer rounding up; `price_cents_per_1k`
/// prices 1,000 units. Errors on negative input or overflow.
pub fn project_provider(
    provider: Provider,
    allocation: i64,
    used: i64,
    elapsed_ms: i64,
    month_ms: i64,
    price_cents_per_1k: Cents,
) -> Result<ProviderProjection, BudgetError> {
    if allocation < 0 || used < 0 || price_cents_per_1k < 0 || month_ms <= 0 {
        return Err(BudgetError::BadAmount(used.min(allocation)));
    }
    let elapsed = elapsed_ms.clamp(1, month_ms);
    let projected =
        (i128::from(used) * i128::from(month_ms) + i128::from(elapsed) - 1) / i128::from(elapsed);
    let projected = i64::try_from(projected).map_err(|_| BudgetError::Overflow)?;
    let cost = (i128::from(projected) * i128::from(price_cents_per_1k) + 999) / 1000;
    let cost = i64::try_from(cost).map_err(|_| BudgetError::Overflow)?;
    Ok(ProviderProjection {
        provider,
        unit: provider.unit(),
        allocation,
        used,
        projected,
        utilization_pct: if allocation == 0 {
            0.0
        } else {
            used as f64 / allocation as f64 * 100.0
        },
        projected_cost_cents: cost,
        over_budget: projected > allocation,
    })
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

    #[test]
    fn provider_defaults_and_projection() {
        assert_eq!(tier_allocation(Tier::HardLaunch, Provider::Claude), 300_000);
        assert_eq!(tier_allocation(Tier::Growth, Provider::Elevenlabs), 200_000);
        assert_eq!(Provider::Elevenlabs.unit(), "chars");
        // 10 days into a 30-day month, 100k used → 300k projected.
        let p = project_provider(
            Provider::Claude,
            300_000,
            100_000,
            10 * DAY_MS,
            30 * DAY_MS,
            300,
        )
        .unwrap();
        assert_eq!(p.projected, 300_000);
        assert_eq!(p.projected_cost_cents, 90_000);
        assert!(!p.over_budget);
        assert!(project_provider(Provider::Claude, 1, -1, 1, 1, 1).is_err());
    }
}
