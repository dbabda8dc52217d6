//! Synthetic stress traces (issue 16 item 8): seeded rate series with the
//! events that throw forecasters and scalers — an incident spike followed by
//! a lasting drop, a level shift, long idle periods, a flash crowd and a slow
//! ramp — on a daily and weekly season. Pure: a function of the kind and the
//! seed (`ChaCha8Rng::seed_from_u64`), counts per 5-minute interval.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use fleetscale_core::trace::RateSeries;

/// Interval of every stress trace, ms (5 minutes).
pub const INTERVAL_MS: i64 = 300_000;
/// Intervals per day.
pub const PER_DAY: usize = 288;
/// Length of every stress trace, days (four training weeks and a holdout week).
pub const DAYS: usize = 35;
/// Start of every stress trace: 2026-01-05 00:00 UTC, a Monday.
pub const START_MS: i64 = 1_767_571_200_000;

/// Which event a stress trace carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StressKind {
    /// Day 20, 14:00: two intervals at 300 × the usual level (an incident),
    /// then the level drops to 40% for the rest of the trace.
    Incident,
    /// Day 30, 10:00 (inside the last week): the level doubles for good.
    LevelShift,
    /// Nights (22:00–07:00) and weekends at zero: long idle periods.
    Idle,
    /// Day 31, 12:00: a surge to 10 × within 15 minutes, decaying with a
    /// 2-hour half-life; the same on day 17 (one seen in training).
    FlashCrowd,
    /// The level grows linearly from 1 × to 3 × over the trace.
    SlowRamp,
}

impl StressKind {
    /// Every kind.
    pub const ALL: [StressKind; 5] = [
        StressKind::Incident,
        StressKind::LevelShift,
        StressKind::Idle,
        StressKind::FlashCrowd,
        StressKind::SlowRamp,
    ];

    /// File-friendly name.
    pub fn name(self) -> &'static str {
        match self {
            StressKind::Incident => "incident",
            StressKind::LevelShift => "level-shift",
            StressKind::Idle => "idle",
            StressKind::FlashCrowd => "flash-crowd",
            StressKind::SlowRamp => "slow-ramp",
        }
    }
}

/// A Poisson count of mean `mean` (Knuth below 30, a rounded normal above).
fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    if mean < 30.0 {
        let (limit, mut p, mut k) = ((-mean).exp(), 1.0, 0.0);
        loop {
            p *= rng.gen::<f64>();
            if p <= limit {
                return k;
            }
            k += 1.0;
        }
    }
    // Box-Muller.
    let (u1, u2): (f64, f64) = (rng.gen::<f64>().max(1e-300), rng.gen());
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (mean + z * mean.sqrt()).round().max(0.0)
}

/// The usual mean demand at interval `i`: 200 at the daily peak (15:00), 40
/// at night, weekends at 60%.
fn seasonal_mean(i: usize) -> f64 {
    let hour = (i % PER_DAY) as f64 / 12.0;
    let daily = 120.0 - 80.0 * (std::f64::consts::TAU * (hour - 3.0) / 24.0).cos();
    let weekend = (i / PER_DAY) % 7 >= 5;
    daily * if weekend { 0.6 } else { 1.0 }
}

/// The stress trace of `kind` for `seed`: [`DAYS`] days of 5-minute counts,
/// Poisson around the seasonal mean times the event's multiplier, with a
/// ±15% day-to-day level wobble.
pub fn generate(kind: StressKind, seed: u64) -> RateSeries {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = DAYS * PER_DAY;
    let wobble: Vec<f64> = (0..DAYS)
        .map(|_| 1.0 + 0.3 * (rng.gen::<f64>() - 0.5))
        .collect();
    let at = |day: usize, hour: usize| day * PER_DAY + hour * 12;
    let values = (0..n)
        .map(|i| {
            let hour = (i % PER_DAY) / 12;
            let weekend = (i / PER_DAY) % 7 >= 5;
            let factor = match kind {
                StressKind::Incident => {
                    let spike = at(20, 14);
                    if (spike..spike + 2).contains(&i) {
                        300.0
                    } else if i >= spike + 2 {
                        0.4
                    } else {
                        1.0
                    }
                }
                StressKind::LevelShift => {
                    if i >= at(30, 10) {
                        2.0
                    } else {
                        1.0
                    }
                }
                StressKind::Idle => {
                    if weekend || !(7..22).contains(&hour) {
                        0.0
                    } else {
                        1.0
                    }
                }
                StressKind::FlashCrowd => {
                    let surge = |start: usize| -> f64 {
                        if i < start {
                            return 0.0;
                        }
                        let since = (i - start) as f64;
                        // Ramp over 3 intervals, then halve every 24.
                        9.0 * (since / 3.0).min(1.0) * 0.5f64.powf((since - 3.0).max(0.0) / 24.0)
                    };
                    1.0 + surge(at(17, 12)) + surge(at(31, 12))
                }
                StressKind::SlowRamp => 1.0 + 2.0 * i as f64 / n as f64,
            };
            let mean = seasonal_mean(i) * wobble[i / PER_DAY] * factor;
            Some(poisson(&mut rng, mean))
        })
        .collect();
    RateSeries {
        start_ms: START_MS,
        interval_ms: INTERVAL_MS,
        values,
    }
}

/// The series as a rate trace CSV (`timestamp,value`, as `shared/traces`).
pub fn to_csv(s: &RateSeries) -> String {
    let mut out = String::from("timestamp,value\n");
    for (i, v) in s.values.iter().enumerate() {
        if let Some(v) = v {
            let t = chrono::DateTime::from_timestamp_millis(s.time_of(i)).unwrap_or_default();
            out.push_str(&format!("{},{v}\n", t.format("%Y-%m-%d %H:%M:%S")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_seeded_and_carry_their_event() {
        for kind in StressKind::ALL {
            let a = generate(kind, 7);
            assert_eq!(a, generate(kind, 7), "{kind:?}");
            assert_ne!(a, generate(kind, 8), "{kind:?}");
            assert_eq!(a.values.len(), DAYS * PER_DAY);
        }
        let v = |kind, i: usize| generate(kind, 1).values[i].unwrap();
        let spike = 20 * PER_DAY + 14 * 12;
        assert!(v(StressKind::Incident, spike) > 20_000.0);
        assert_eq!(v(StressKind::Idle, 5 * PER_DAY + 12 * 12), 0.0);
        assert!(v(StressKind::FlashCrowd, 31 * PER_DAY + 12 * 12 + 4) > 1000.0);
    }

    #[test]
    fn csv_round_trips_through_the_trace_parser() {
        let s = generate(StressKind::LevelShift, 3);
        let t = fleetscale_core::trace::parse_trace(&to_csv(&s)).unwrap();
        assert_eq!(t.to_rates(None), s);
    }
}
