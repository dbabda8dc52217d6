//! The workload: a deterministic stream of `(arrival, service time)` pairs
//! built from a parsed trace, identical for every policy of a run.
//!
//! * request traces: arrivals as recorded; service time from the tokens,
//!   `context / prefill_tokens_per_s + generated × decode_ms_per_token`;
//! * rate traces: a homogeneous Poisson process inside each interval (seeded
//!   `ChaCha8Rng`), its rate the interval's count scaled by one factor so
//!   that the peak interval's offered load fills `peak_instances` at the
//!   planning utilization; service time `mean × (0.5 + 0.5 · Exp(1))`.
//!   Missing intervals are filled by linear interpolation between the
//!   neighbouring present ones (they are missing measurements, not idle time).

use fleetscale_core::trace::{RateSeries, Request};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Microseconds per second.
pub const US: i64 = 1_000_000;

/// Service model parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceModel {
    /// Prefill speed of one slot, tokens per second (request traces).
    pub prefill_tokens_per_s: f64,
    /// Decode time of one generated token in one slot, ms (request traces).
    pub decode_ms_per_token: f64,
    /// Mean service time of one request of a rate trace, seconds.
    pub rate_service_s: f64,
}

impl ServiceModel {
    /// Service time of a request, microseconds (at least 1 ms).
    pub fn of_request(&self, r: &Request) -> i64 {
        let s = r.context_tokens as f64 / self.prefill_tokens_per_s
            + r.generated_tokens as f64 * self.decode_ms_per_token / 1000.0;
        ((s * US as f64) as i64).max(1000)
    }
}

/// Present values with missing ones linearly interpolated (leading and
/// trailing gaps take the nearest present value).
pub fn fill_missing(values: &[Option<f64>]) -> Vec<f64> {
    let present: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.filter(|x| x.is_finite()).map(|x| (i, x.max(0.0))))
        .collect();
    let mut out = vec![0.0; values.len()];
    if present.is_empty() {
        return out;
    }
    let mut k = 0;
    for (i, o) in out.iter_mut().enumerate() {
        while k + 1 < present.len() && present[k + 1].0 <= i {
            k += 1;
        }
        let (i0, v0) = present[k];
        *o = if i <= i0 || k + 1 == present.len() {
            v0
        } else {
            let (i1, v1) = present[k + 1];
            v0 + (v1 - v0) * (i - i0) as f64 / (i1 - i0) as f64
        };
    }
    out
}

/// The arrival stream.
#[derive(Debug, Clone)]
pub enum Arrivals<'a> {
    /// Replay of a request trace.
    Requests {
        /// The requests.
        reqs: &'a [Request],
        /// Next index.
        next: usize,
        /// Time origin, Unix ms.
        t0_ms: i64,
        /// Service model.
        service: ServiceModel,
        /// Arrivals at or after this time (µs from the origin) are not generated.
        end_us: i64,
    },
    /// Poisson arrivals from a rate trace.
    Rates {
        /// Requests per µs in each interval.
        rate_per_us: Vec<f64>,
        /// Interval length, µs.
        interval_us: i64,
        /// Current interval.
        i: usize,
        /// Current time, µs from the origin.
        t: f64,
        /// Seeded generator.
        rng: Box<ChaCha8Rng>,
        /// Mean service time, µs.
        mean_service_us: f64,
        /// Arrivals at or after this time are not generated.
        end_us: i64,
    },
}

impl<'a> Arrivals<'a> {
    /// Replay of `reqs` from `t0_ms`.
    pub fn requests(reqs: &'a [Request], service: ServiceModel, end_us: i64) -> Self {
        Arrivals::Requests {
            reqs,
            next: 0,
            t0_ms: reqs.first().map_or(0, |r| r.ts_ms),
            service,
            end_us,
        }
    }

    /// Poisson arrivals for `series`, each count multiplied by `scale`.
    pub fn rates(
        series: &RateSeries,
        scale: f64,
        service: ServiceModel,
        seed: u64,
        end_us: i64,
    ) -> Self {
        let interval_us = series.interval_ms.max(1) * 1000;
        let rate_per_us = fill_missing(&series.values)
            .into_iter()
            .map(|v| v * scale / interval_us as f64)
            .collect();
        Arrivals::Rates {
            rate_per_us,
            interval_us,
            i: 0,
            t: 0.0,
            rng: Box::new(ChaCha8Rng::seed_from_u64(seed)),
            mean_service_us: service.rate_service_s * US as f64,
            end_us,
        }
    }
}

impl Iterator for Arrivals<'_> {
    /// `(arrival µs from the origin, service µs)`.
    type Item = (i64, i64);

    fn next(&mut self) -> Option<(i64, i64)> {
        match self {
            Arrivals::Requests {
                reqs,
                next,
                t0_ms,
                service,
                end_us,
            } => {
                let r = reqs.get(*next)?;
                let t = (r.ts_ms - *t0_ms) * 1000;
                if t >= *end_us {
                    return None;
                }
                *next += 1;
                Some((t, service.of_request(r)))
            }
            Arrivals::Rates {
                rate_per_us,
                interval_us,
                i,
                t,
                rng,
                mean_service_us,
                end_us,
            } => loop {
                let lambda = *rate_per_us.get(*i)?;
                let iv_end = (*i as i64 + 1) * *interval_us;
                if lambda > 0.0 {
                    let u: f64 = rng.gen();
                    let gap = -(1.0 - u).ln() / lambda;
                    if *t + gap < iv_end as f64 {
                        *t += gap;
                        let at = *t as i64;
                        if at >= *end_us {
                            return None;
                        }
                        let e: f64 = rng.gen();
                        let s = *mean_service_us * (0.5 + 0.5 * -(1.0 - e).ln());
                        return Some((at, (s as i64).max(1000)));
                    }
                }
                // Memoryless: restart at the next interval's start.
                *i += 1;
                *t = iv_end as f64;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_intervals_are_interpolated_not_zero() {
        let v = [None, Some(2.0), None, None, Some(8.0), None];
        assert_eq!(fill_missing(&v), vec![2.0, 2.0, 4.0, 6.0, 8.0, 8.0]);
        assert_eq!(fill_missing(&[None, None]), vec![0.0, 0.0]);
    }

    #[test]
    fn poisson_counts_follow_the_rates_and_replay_for_a_seed() {
        let s = RateSeries {
            start_ms: 0,
            interval_ms: 100_000,
            values: vec![Some(1000.0), Some(0.0), None, Some(3000.0)],
        };
        let m = ServiceModel {
            prefill_tokens_per_s: 1000.0,
            decode_ms_per_token: 40.0,
            rate_service_s: 10.0,
        };
        let a: Vec<_> = Arrivals::rates(&s, 1.0, m, 7, i64::MAX).collect();
        let b: Vec<_> = Arrivals::rates(&s, 1.0, m, 7, i64::MAX).collect();
        assert_eq!(a, b, "same seed, same arrivals");
        let count = |lo: i64, hi: i64| a.iter().filter(|(t, _)| *t >= lo && *t < hi).count();
        let iv = 100 * US;
        assert!((900..1100).contains(&count(0, iv)), "{}", count(0, iv));
        assert_eq!(count(iv, 2 * iv), 0);
        // The missing interval is interpolated: (0 + 3000) / 2.
        assert!((1350..1650).contains(&count(2 * iv, 3 * iv)));
        assert!((2800..3200).contains(&count(3 * iv, 4 * iv)));
        assert!(a.windows(2).all(|w| w[0].0 <= w[1].0));
        let mean = a.iter().map(|x| x.1 as f64).sum::<f64>() / a.len() as f64;
        assert!((mean / (10.0 * US as f64) - 1.0).abs() < 0.05, "{mean}");
    }
}
