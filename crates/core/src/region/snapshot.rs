//! Snapshot periods: the hour, day or week (UTC; weeks start on Monday)
//! that a region snapshot covers.

use serde::{Deserialize, Serialize};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;
/// 1970-01-01 was a Thursday: Monday-based weeks start 3 days later.
const MONDAY_OFFSET_MS: i64 = 4 * DAY_MS;

/// How long a snapshot's period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodType {
    /// An hour.
    Hourly,
    /// A UTC day.
    Daily,
    /// A UTC week, Monday to Sunday.
    Weekly,
}

impl PeriodType {
    /// Every period type.
    pub const ALL: [PeriodType; 3] = [PeriodType::Hourly, PeriodType::Daily, PeriodType::Weekly];

    /// The snake_case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodType::Hourly => "hourly",
            PeriodType::Daily => "daily",
            PeriodType::Weekly => "weekly",
        }
    }

    /// The period's length, ms.
    #[must_use]
    pub fn length_ms(self) -> i64 {
        match self {
            PeriodType::Hourly => HOUR_MS,
            PeriodType::Daily => DAY_MS,
            PeriodType::Weekly => WEEK_MS,
        }
    }

    /// `[start, end)` of the period holding `at_ms`.
    #[must_use]
    pub fn bounds(self, at_ms: i64) -> (i64, i64) {
        let len = self.length_ms();
        let offset = if self == PeriodType::Weekly {
            MONDAY_OFFSET_MS
        } else {
            0
        };
        let start = (at_ms - offset).div_euclid(len) * len + offset;
        (start, start + len)
    }

    /// `[start, end)` of the last period that ended at or before `at_ms`.
    #[must_use]
    pub fn last_completed(self, at_ms: i64) -> (i64, i64) {
        let (start, _) = self.bounds(at_ms);
        (start - self.length_ms(), start)
    }
}

impl std::str::FromStr for PeriodType {
    type Err = crate::lifecycle::UnknownValue;

    fn from_str(s: &str) -> Result<PeriodType, Self::Err> {
        PeriodType::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| crate::lifecycle::UnknownValue {
                kind: "period type",
                value: s.to_string(),
                expected: "hourly, daily, weekly, ",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-02T13:45:00Z, a Wednesday.
    const WED: i64 = 1_796_219_100_000;

    #[test]
    fn periods_fall_on_utc_hours_days_and_monday_weeks() {
        assert_eq!(
            PeriodType::Hourly.bounds(WED),
            (WED - 45 * 60_000, WED + 15 * 60_000)
        );
        let midnight = WED - (13 * HOUR_MS + 45 * 60_000);
        assert_eq!(PeriodType::Daily.bounds(WED), (midnight, midnight + DAY_MS));
        let monday = midnight - 2 * DAY_MS;
        assert_eq!(PeriodType::Weekly.bounds(WED), (monday, monday + WEEK_MS));
        // A period's start belongs to it; its end to the next.
        assert_eq!(PeriodType::Weekly.bounds(monday).0, monday);
        assert_eq!(PeriodType::Weekly.bounds(monday - 1).1, monday);
        assert_eq!(
            PeriodType::Daily.last_completed(WED),
            (midnight - DAY_MS, midnight)
        );
        assert_eq!("weekly".parse::<PeriodType>().unwrap(), PeriodType::Weekly);
        assert!("monthly".parse::<PeriodType>().is_err());
    }
}
