//! Scheduled capacity: each entry is a cron expression read in an IANA time
//! zone, a duration, a capacity and a description. An entry is active from
//! each occurrence for `duration_seconds` of real (UTC) time. Daylight-saving
//! changes follow the cron library (croner, OCPS rules): an occurrence whose
//! local time is skipped by a spring-forward runs at the first instant after
//! the gap, and one in a repeated fall-back hour runs once.
//!
//! Overlapping entries take the largest: active `target` entries set the
//! capacity to their largest value, active `floor` entries only raise it.
//! With no active entry the policy holds.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::observation::{Decision, Observation};
use crate::validate::Violations;

const NAME: &str = "schedule";

/// What an active entry does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleMode {
    /// Sets the capacity (the largest active target wins).
    #[default]
    Target,
    /// Keeps the capacity at least this high.
    Floor,
}

/// One scheduled capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntry {
    /// Cron expression (5 fields, or 6 with seconds).
    pub cron: String,
    /// IANA time zone the expression is read in, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// How long each occurrence stays active, seconds, `1..=2678400`.
    pub duration_seconds: i64,
    /// Capacity while active, `0..=1000000`.
    pub capacity: i64,
    /// Target or floor.
    #[serde(default)]
    pub mode: ScheduleMode,
    /// What it is for, 1..=200 characters.
    pub description: String,
}

/// The schedule policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulePolicy {
    /// The entries, at least one.
    pub schedules: Vec<ScheduleEntry>,
}

/// An entry active at some instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveEntry {
    /// Index in `schedules`.
    pub index: usize,
    /// The occurrence that started it, Unix ms.
    pub started_ms: i64,
    /// When it ends, Unix ms.
    pub ends_ms: i64,
}

fn parse_tz(s: &str) -> Option<Tz> {
    Tz::from_str(s).ok()
}

impl ScheduleEntry {
    /// The occurrence in effect at `now_ms`, if any: the latest occurrence
    /// `o` with `o <= now_ms < o + duration`. `None` when the cron or the
    /// time zone does not parse (validation reports those).
    pub fn active_at(&self, now_ms: i64) -> Option<(i64, i64)> {
        let tz = parse_tz(&self.timezone)?;
        let cron = Cron::from_str(&self.cron).ok()?;
        let dur = self.duration_seconds.max(0).saturating_mul(1000);
        let from: DateTime<Utc> = Utc
            .timestamp_millis_opt(now_ms.saturating_sub(dur))
            .single()?;
        let next = cron
            .find_next_occurrence(&from.with_timezone(&tz), false)
            .ok()?;
        let start = next.timestamp_millis();
        (start <= now_ms).then_some((start, start.saturating_add(dur)))
    }
}

impl SchedulePolicy {
    /// Records every violation under `prefix`.
    pub fn validate(&self, prefix: &str, v: &mut Violations) {
        if self.schedules.is_empty() {
            v.push(format!("{prefix}.schedules"), "must not be empty");
        }
        for (i, e) in self.schedules.iter().enumerate() {
            let f = |n: &str| format!("{prefix}.schedules[{i}].{n}");
            if let Err(err) = Cron::from_str(&e.cron) {
                v.push(f("cron"), format!("invalid cron expression: {err}"));
            }
            if parse_tz(&e.timezone).is_none() {
                v.push(f("timezone"), "must be an IANA time zone name");
            }
            v.check_i64(&f("duration_seconds"), e.duration_seconds, 1, 2_678_400);
            v.check_i64(&f("capacity"), e.capacity, 0, 1_000_000);
            v.check_text(&f("description"), &e.description, 200);
        }
    }

    /// Entries active at `now_ms`.
    pub fn active(&self, now_ms: i64) -> Vec<ActiveEntry> {
        self.schedules
            .iter()
            .enumerate()
            .filter_map(|(index, e)| {
                e.active_at(now_ms)
                    .map(|(started_ms, ends_ms)| ActiveEntry {
                        index,
                        started_ms,
                        ends_ms,
                    })
            })
            .collect()
    }

    /// The largest active target and the largest active floor at `now_ms`.
    pub fn levels(&self, now_ms: i64) -> (Option<i64>, Option<i64>, Vec<ActiveEntry>) {
        let act = self.active(now_ms);
        let pick = |m: ScheduleMode| {
            act.iter()
                .filter(|a| self.schedules[a.index].mode == m)
                .map(|a| self.schedules[a.index].capacity)
                .max()
        };
        (pick(ScheduleMode::Target), pick(ScheduleMode::Floor), act)
    }

    /// Evaluates the policy (see the module docs).
    pub fn decide(&self, obs: &Observation) -> Decision {
        let b = obs.bounds;
        let current = b.desired;
        let (target, floor, act) = self.levels(obs.now_ms);
        if act.is_empty() {
            return Decision::hold(current, NAME, "No schedule active".into(), 1.0);
        }
        let names: Vec<String> = act
            .iter()
            .map(|a| {
                let e = &self.schedules[a.index];
                format!(
                    "{} ({:?} {}, until {})",
                    e.description,
                    e.mode,
                    e.capacity,
                    a.ends_ms / 1000
                )
            })
            .collect();
        let mut inputs = BTreeMap::new();
        if let Some(t) = target {
            inputs.insert("schedule_target".into(), t as f64);
        }
        if let Some(f) = floor {
            inputs.insert("schedule_floor".into(), f as f64);
        }
        let want = match (target, floor) {
            (Some(t), f) => t.max(f.unwrap_or(0)),
            (None, Some(f)) => current.max(f),
            (None, None) => current,
        };
        let mut d = Decision::to_target(
            b,
            want,
            NAME,
            format!("Schedule active: {}", names.join("; ")),
            1.0,
            inputs,
        );
        d.requeue_after_ms = act.iter().map(|a| a.ends_ms - obs.now_ms).min();
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::{Action, PoolBounds};

    fn ms(s: &str) -> i64 {
        crate::trace::parse_timestamp(s).unwrap()
    }

    fn entry(cron: &str, tz: &str, dur: i64, cap: i64, mode: ScheduleMode) -> ScheduleEntry {
        ScheduleEntry {
            cron: cron.into(),
            timezone: tz.into(),
            duration_seconds: dur,
            capacity: cap,
            mode,
            description: format!("{cron} {tz}"),
        }
    }

    fn active(e: &ScheduleEntry, utc: &str) -> bool {
        e.active_at(ms(utc)).is_some()
    }

    #[test]
    fn weekday_morning_in_berlin_across_spring_forward() {
        // 09:00 Berlin for an hour: 08:00 UTC in winter (CET), 07:00 UTC in summer (CEST).
        let e = entry(
            "0 9 * * 1-5",
            "Europe/Berlin",
            3600,
            8,
            ScheduleMode::Target,
        );
        let cases = [
            ("2024-03-29 07:59:59", false), // Friday, CET
            ("2024-03-29 08:00:00", true),
            ("2024-03-29 08:59:59", true),
            ("2024-03-29 09:00:00", false), // the hour is over
            ("2024-04-01 06:59:59", false), // Monday after the change, CEST
            ("2024-04-01 07:00:00", true),
            ("2024-04-01 08:00:00", false),
            ("2024-03-30 08:30:00", false), // Saturday
        ];
        for (t, want) in cases {
            assert_eq!(active(&e, t), want, "{t}");
        }
    }

    #[test]
    fn skipped_and_repeated_local_times() {
        // 02:30 does not exist in Berlin on 2024-03-31: runs at the first instant after the gap
        // (03:00 CEST = 01:00 UTC), once.
        let e = entry("30 2 * * *", "Europe/Berlin", 600, 5, ScheduleMode::Target);
        assert!(!active(&e, "2024-03-31 00:59:59"));
        assert!(active(&e, "2024-03-31 01:00:00"));
        assert!(!active(&e, "2024-03-31 01:10:00"));
        // The day before, 02:30 CET = 01:30 UTC; the day after 02:30 CEST = 00:30 UTC.
        assert!(active(&e, "2024-03-30 01:30:00"));
        assert!(active(&e, "2024-04-01 00:30:00"));
        // 02:30 happens twice on 2024-10-27 (00:30 UTC CEST, 01:30 UTC CET): once only.
        assert!(active(&e, "2024-10-27 00:35:00"));
        assert!(!active(&e, "2024-10-27 01:35:00"));
    }

    #[test]
    fn new_york_across_both_changes() {
        // 08:00 New York for 2 h: 13:00 UTC under EST, 12:00 UTC under EDT.
        let e = entry(
            "0 8 * * *",
            "America/New_York",
            7200,
            4,
            ScheduleMode::Floor,
        );
        let cases = [
            ("2024-03-09 13:00:00", true), // EST
            ("2024-03-09 12:59:00", false),
            ("2024-03-10 12:00:00", true), // EDT from 2024-03-10 02:00 local
            ("2024-03-10 11:59:59", false),
            ("2024-03-10 13:59:59", true),
            ("2024-03-10 14:00:00", false),
            ("2024-11-02 12:00:00", true),  // last EDT day
            ("2024-11-03 12:00:00", false), // EST again
            ("2024-11-03 13:00:00", true),
        ];
        for (t, want) in cases {
            assert_eq!(active(&e, t), want, "{t}");
        }
        // 01:30 happens twice on 2024-11-03 (05:30 UTC EDT, 06:30 UTC EST): runs once.
        let e = entry(
            "30 1 * * *",
            "America/New_York",
            1800,
            4,
            ScheduleMode::Floor,
        );
        assert!(active(&e, "2024-11-03 05:30:00"));
        assert!(!active(&e, "2024-11-03 06:45:00"));
    }

    #[test]
    fn overlaps_take_the_largest() {
        let p = SchedulePolicy {
            schedules: vec![
                entry("0 8 * * *", "UTC", 7200, 6, ScheduleMode::Target),
                entry("0 9 * * *", "UTC", 3600, 9, ScheduleMode::Target),
                entry("0 0 * * *", "UTC", 86_400, 7, ScheduleMode::Floor),
            ],
        };
        let obs = |t: &str, desired: i64| {
            Observation::new(
                ms(t),
                PoolBounds {
                    min: 1,
                    max: 20,
                    desired,
                },
            )
        };
        // Floor 7 beats target 6.
        assert_eq!(p.decide(&obs("2024-05-01 08:30:00", 3)).target, 7);
        // Target 9 wins while both targets overlap.
        assert_eq!(p.decide(&obs("2024-05-01 09:30:00", 3)).target, 9);
        // Only the floor: raises, never lowers.
        assert_eq!(p.decide(&obs("2024-05-01 12:00:00", 3)).target, 7);
        let d = p.decide(&obs("2024-05-01 12:00:00", 12));
        assert_eq!((d.action, d.target), (Action::Hold, 12));
        // A target may lower the capacity.
        assert_eq!(p.decide(&obs("2024-05-01 09:30:00", 15)).target, 9);
    }

    #[test]
    fn validation_reports_everything() {
        let p = SchedulePolicy {
            schedules: vec![entry(
                "61 * * *",
                "Mars/Olympus",
                0,
                -1,
                ScheduleMode::Target,
            )],
        };
        let mut v = Violations::default();
        p.validate("policy", &mut v);
        let fields: Vec<&str> = v.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "policy.schedules[0].cron",
                "policy.schedules[0].timezone",
                "policy.schedules[0].duration_seconds",
                "policy.schedules[0].capacity",
            ]
        );
    }
}
