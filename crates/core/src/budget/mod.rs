//! Exact AI budgets (phase 92 region budgets, phase 66 provider budgets): the
//! rules of every ledger operation on integer cents, ledger replay and the
//! invariant check, reservation expiry, reset scheduling and the per-tier
//! provider allocations with their monthly projection.
//!
//! Everything is checked `i64` arithmetic on cents: an operation that would
//! overflow or break a rule returns a [`BudgetError`] and changes nothing.
//! The storage layer applies these functions under a row lock (or in its
//! single writer) and appends the returned [`Effect`] to the ledger; replaying
//! the ledger with [`check_ledger`] gives back the stored balances exactly.
//!
//! Cut along its seams, dependencies pointing one way: [`money`] and
//! [`calendar`] are leaves; [`region`] (phase 92) and [`provider`] (phase 66)
//! build on them and never on each other; [`ledger`] replays a region budget.
//! Every item is re-exported here, at its old path.

pub mod calendar;
pub mod ledger;
pub mod money;
pub mod provider;
pub mod region;

pub use calendar::*;
pub use ledger::*;
pub use money::*;
pub use provider::*;
pub use region::*;
