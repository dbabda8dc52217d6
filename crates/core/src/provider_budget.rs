//! Tenant provider budgets (phase 66), at their old path: everything now
//! lives in [`crate::budget::provider`] and, for the UTC calendar month, in
//! [`crate::budget::calendar`]; this module only re-exports it.

pub use crate::budget::calendar::{
    days_from_civil, month_bounds, month_label, MIN_PROJECTION_ELAPSED_MS,
};
pub use crate::budget::provider::*;
