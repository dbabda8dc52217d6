//! Money in integer cents: the amount and key checks every budget request
//! passes, checked arithmetic on cents with the [`BudgetError`] it refuses
//! with, and the saturating helpers of the projections.

use crate::validate::Violations;

/// Money in integer cents.
pub type Cents = i64;

/// Largest amount accepted in one operation (10 billion dollars): sums of
/// many such amounts stay far from `i64::MAX`, and larger inputs are typos.
pub const MAX_AMOUNT_CENTS: Cents = 1_000_000_000_000;

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

pub(super) fn amount_ok(a: Cents) -> Result<(), BudgetError> {
    if (1..=MAX_AMOUNT_CENTS).contains(&a) {
        Ok(())
    } else {
        Err(BudgetError::BadAmount(a))
    }
}

pub(super) fn add(a: Cents, b: Cents) -> Result<Cents, BudgetError> {
    a.checked_add(b).ok_or(BudgetError::Overflow)
}

pub(super) fn sub(a: Cents, b: Cents) -> Result<Cents, BudgetError> {
    a.checked_sub(b).ok_or(BudgetError::Overflow)
}

/// `v` as an `i64`, saturating at its bounds.
pub(crate) fn sat(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// `a / b` rounded up (`a >= 0`, `b > 0`).
pub(crate) fn ceil_div(a: i128, b: i128) -> i128 {
    (a + b - 1) / b
}

/// Most violations listed in a report (a stated bound).
pub const MAX_REPORTED_VIOLATIONS: usize = 100;
