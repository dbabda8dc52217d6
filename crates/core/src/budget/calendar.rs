//! The UTC calendar of budgets: day and month numbers of a time, civil
//! dates, and the bounds of the month a time falls in (the one calendar of
//! the crate).

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Shortest elapsed time a projection extrapolates from (one hour), so a
/// record in the first seconds of a month is not multiplied a million times.
pub const MIN_PROJECTION_ELAPSED_MS: i64 = 3_600_000;

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

/// Unix ms of the first instant of the UTC day number `days`.
fn days_to_ms(days: i64) -> i64 {
    days.saturating_mul(crate::budget::DAY_MS)
}

/// Day number of a UTC civil date (Howard Hinnant's `days_from_civil`).
#[must_use]
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days in month `m` (1..=12) of the proleptic Gregorian year `y`.
pub(crate) fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// The UTC calendar month containing `now_ms`: `[start_ms, end_ms)`.
#[must_use]
pub fn month_bounds(now_ms: i64) -> (i64, i64) {
    let (y, m, _) = civil_from_days(day_key(now_ms));
    let start = days_to_ms(days_from_civil(y, m, 1));
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (start, days_to_ms(days_from_civil(ny, nm, 1)))
}

/// A month key ([`month_key`]) as `YYYY-MM`.
#[must_use]
pub fn month_label(month_key: i64) -> String {
    format!(
        "{:04}-{:02}",
        month_key.div_euclid(12),
        month_key.rem_euclid(12) + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-02-10T00:00:00Z (February 2024 has 29 days).
    const FEB10: i64 = 1_707_523_200_000;

    #[test]
    fn month_bounds_follow_the_utc_calendar() {
        let (s, e) = month_bounds(FEB10);
        assert_eq!(s, 1_706_745_600_000, "2024-02-01");
        assert_eq!(e - s, 29 * DAY_MS, "leap February");
        assert_eq!(month_bounds(s), (s, e));
        assert_eq!(month_bounds(e - 1), (s, e));
        assert_eq!(month_bounds(e).0, e);
        // December rolls into the next year; dates before 1970 work too.
        let (ds, de) = month_bounds(1_703_980_800_000); // 2023-12-31
        assert_eq!(de - ds, 31 * DAY_MS);
        assert_eq!(de, 1_704_067_200_000, "2024-01-01");
        assert_eq!(month_bounds(-1), (-31 * DAY_MS, 0));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(month_label(month_key(FEB10)), "2024-02");
        assert_eq!(month_label(month_key(1_703_980_800_000)), "2023-12");
    }
}
