//! The states a change to a pool goes through, as types: what triggered a
//! scaling event, where its actuation is, and where a proposal is. Each is
//! stored and sent as its snake_case name; parsing anything else is an
//! [`UnknownValue`] error, never a silent default.

#[cfg(test)]
use std::{fmt, str::FromStr};

#[cfg(test)]
use serde::{Deserialize, Serialize};

/// A text value that names none of a type's variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?} (expected one of: {})", .expected.trim_end_matches(", "))]
pub struct UnknownValue {
    /// What was parsed (`trigger source`, `pool mode`, ...).
    pub kind: &'static str,
    /// The text found.
    pub value: String,
    /// The names allowed, each followed by `", "`.
    pub expected: &'static str,
}

/// Defines a snake_case text enum with `as_str`, `ALL`, `Display` and a
/// `FromStr` that names the allowed values.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stored and wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::lifecycle::UnknownValue;

            fn from_str(s: &str) -> Result<$name, $crate::lifecycle::UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::lifecycle::UnknownValue {
                        kind: $kind,
                        value: s.to_string(),
                        expected: concat!($($text, ", ",)+),
                    }),
                }
            }
        }
    };
}

pub(crate) use text_enum;

text_enum!(
    /// What caused a scaling event.
    TriggerSource, "trigger source", {
        /// The control loop on current load (threshold, target tracking,
        /// triggers, queue, cost efficiency).
        Autoscaler => "autoscaler",
        /// A predicted spike raised the capacity ahead of demand.
        Predictive => "predictive",
        /// A schedule's floor or target.
        Schedule => "schedule",
        /// An operator's `POST /scale`.
        Manual => "manual",
        /// A cross-region rebalance.
        Rebalance => "rebalance",
        /// An approved proposal (recommend mode).
        Recommendation => "recommendation",
    }
);

text_enum!(
    /// Where a scaling event's delivery to the actuator is.
    ActuationStatus, "actuation status", {
        /// No actuator is configured: nothing to deliver.
        None => "none",
        /// Waiting to be delivered (or retried).
        Pending => "pending",
        /// Delivered.
        Delivered => "delivered",
        /// The last delivery series failed; retried next tick.
        Failed => "failed",
        /// A newer event of the pool replaced it before delivery.
        Superseded => "superseded",
    }
);

text_enum!(
    /// Where a proposal (recommend mode) is.
    ProposalStatus, "proposal status", {
        /// Waiting for an operator.
        Pending => "pending",
        /// Approved and applied.
        Approved => "approved",
        /// Rejected by an operator.
        Rejected => "rejected",
        /// Replaced by a newer proposal or withdrawn by the control loop.
        Superseded => "superseded",
    }
);

text_enum!(
    /// A change that takes a pool to or from zero instances (scale to
    /// zero), as events and the webhook actuator report it.
    ZeroTransition, "zero transition", {
        /// From zero to at least one instance: the pool activates.
        Activate => "activate",
        /// From at least one instance to zero: the pool idles to zero.
        IdleToZero => "idle_to_zero",
    }
);

impl ZeroTransition {
    /// The transition of a change from `previous` to `new` instances, if
    /// it crosses zero.
    #[must_use]
    pub fn of(previous: i64, new: i64) -> Option<ZeroTransition> {
        match (previous, new) {
            (0, n) if n > 0 => Some(ZeroTransition::Activate),
            (p, 0) if p > 0 => Some(ZeroTransition::IdleToZero),
            _ => None,
        }
    }
}

impl ActuationStatus {
    /// The status of a new event: `pending` when an actuator must deliver
    /// it, else `none`.
    pub fn initial(actuator_active: bool) -> ActuationStatus {
        if actuator_active {
            ActuationStatus::Pending
        } else {
            ActuationStatus::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips_through_text_and_json() {
        fn check<T>(all: &[T])
        where
            T: Copy + PartialEq + fmt::Debug + fmt::Display + FromStr<Err = UnknownValue>,
            T: Serialize + for<'de> Deserialize<'de>,
        {
            for v in all {
                let text = v.to_string();
                assert_eq!(text.parse::<T>().unwrap(), *v);
                assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(text));
                assert_eq!(
                    serde_json::from_value::<T>(serde_json::json!(text)).unwrap(),
                    *v
                );
            }
        }
        check(TriggerSource::ALL);
        check(ActuationStatus::ALL);
        check(ProposalStatus::ALL);
    }

    #[test]
    fn an_unknown_value_is_an_error_naming_the_allowed_ones() {
        let e = "autoscaled".parse::<TriggerSource>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown trigger source \"autoscaled\" (expected one of: autoscaler, predictive, schedule, manual, rebalance, recommendation)"
        );
        assert!("Pending".parse::<ProposalStatus>().is_err(), "case matters");
        assert!("".parse::<ActuationStatus>().is_err());
    }

    #[test]
    fn a_zero_transition_is_a_change_that_crosses_zero() {
        let cases = [
            (0, 1, Some(ZeroTransition::Activate)),
            (0, 5, Some(ZeroTransition::Activate)),
            (3, 0, Some(ZeroTransition::IdleToZero)),
            (0, 0, None),
            (1, 2, None),
            (2, 1, None),
        ];
        for (p, n, want) in cases {
            assert_eq!(ZeroTransition::of(p, n), want, "{p} → {n}");
        }
    }
}
