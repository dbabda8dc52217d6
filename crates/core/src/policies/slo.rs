//! SLO staffing: the capacity that meets a latency goal for a share of
//! requests (`performance_targets.latency_ms` and `.attainment`), from a
//! queueing model of the measured arrival rate and service time, corrected
//! by the attainment observed. One knob, the attainment goal, moves it
//! along its cost-versus-SLO frontier; it also scales a pool to zero and
//! activates it. `docs/simulation.md` ("SLO staffing") documents the model.
//!
//! Inputs (samples in [`Observation::metrics`], newest last):
//! [`ARRIVAL_RATE`] (requests per second over each sample's window),
//! [`SERVICE_TIME_MS`] (mean service time of the requests completed in the
//! window), [`COMPLETED`] and [`MISSED`] (requests completed in the window,
//! and those of them over the latency goal), `in_flight` (requests being
//! served) and `queue_depth` (requests waiting).
//!
//! The model, per decision:
//! 1. Arrival rate `λ` = the mean over the rate window, or over the burst
//!    window when its arrivals exceed the rate window's prediction by more
//!    than `burst_significance` Poisson standard deviations (a rise, not
//!    noise); its standard error `σ = √(λ / rate window)`. Service time `S`
//!    the completion-weighted mean over the feedback window, offered load
//!    `a = λ·S` (busy slots).
//! 2. Peakedness `z` = the index of dispersion (variance ÷ mean) of the
//!    arrival counts per 15 s (shorter scrapes summed) over the feedback
//!    window, at least 1 (1 for Poisson arrivals). Hayward's approximation
//!    staffs peaked traffic as `a/z` Erlangs on `c/z` servers.
//! 3. Miss budget `ε = 1 − attainment`, corrected by what was observed over
//!    the feedback window: `ε' = ε · clamp(ε / m̂, 0.1, 10)` with
//!    `m̂ = (missed + 1) / (completed + 1/ε)` (one miss per `1/ε` requests
//!    as the prior, so without data `ε' = ε`).
//! 4. Slots `c`: the fewest with an Erlang-C probability of waiting longer
//!    than the slack `D = latency − S` at most `ε'`:
//!    `C(c/z, a/z) · exp(−(c − a)/z · D/S) ≤ ε'`, plus slots to drain the
//!    backlog new capacity can still help: of `q` waiting, what the current
//!    spare slots do not drain within a cold start `T` (`q' = q − spare·T/S`),
//!    drained in the slack left after it (`q'·S/(D − T)`; none when
//!    `T ≥ D`). Instances `ceil(c / slots)`.
//! 5. Hysteresis: a scale-out follows `λ`; a scale-in waits
//!    `scale_in_stabilization_seconds` after the last scale-out, and goes no
//!    lower than the staffing of the highest upper bound
//!    `λ + z(attainment)·σ` over that window, so the estimate's own noise
//!    does not turn into reversals (the control loop's flap budget holds a
//!    scale-in beyond four reversals an hour).
//! 6. Scale to zero: no arrivals, nothing in flight or waiting for the idle
//!    period → 0. When a request arriving at zero would miss the goal
//!    (`cold start T + S > latency L`) the idle period is `T / (1 −
//!    attainment)`: long enough that the cold starts paid on reactivation
//!    stay within the miss budget for an arrival process that was idle that
//!    long. When it still meets the goal, that period shrinks by
//!    `S / (L − T)`, the share of the room left after the cold start that
//!    the mean request uses: the closer the mean request comes to missing,
//!    the more of the slower ones miss after a cold start. Either way at
//!    most one hour, at least the cold start and the burst window. At
//!    zero, queued or in-flight work activates the pool.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{ceil_tol, to_instances};
use crate::observation::{Decision, Observation, Sample};
use crate::validate::Violations;

const NAME: &str = "slo";

/// Requests per second over a sample's window.
pub const ARRIVAL_RATE: &str = "arrival_rate";
/// Mean service time of the requests completed in a sample's window, ms.
pub const SERVICE_TIME_MS: &str = "service_time_ms";
/// Requests completed in a sample's window.
pub const COMPLETED: &str = "requests_completed";
/// Requests completed in a sample's window whose latency missed the goal.
pub const MISSED: &str = "requests_missed_slo";
/// Requests being served.
pub const IN_FLIGHT: &str = "in_flight";
/// Requests waiting.
pub const QUEUE_DEPTH: &str = "queue_depth";

/// Longest idle period before scaling to zero, seconds.
pub const MAX_IDLE_SECONDS: f64 = 3600.0;
/// Shortest counting interval of the peakedness estimate, ms (one default
/// scrape): shorter scrapes are summed up to it.
const PEAKEDNESS_BUCKET_MS: i64 = 15_000;
/// Highest number of slots the staffing search considers.
const MAX_SLOTS: f64 = 1.0e6;

/// A latency goal: `attainment` of requests within `latency_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SloGoal {
    /// Latency bound, ms.
    pub latency_ms: f64,
    /// Share of requests to meet it, `(0, 1)`.
    pub attainment: f64,
}

fn d_cold() -> f64 {
    60.0
}
fn d_rate() -> i64 {
    300
}
fn d_burst() -> i64 {
    60
}
fn d_feedback() -> i64 {
    1800
}
fn d_age() -> i64 {
    120
}
fn d_true() -> bool {
    true
}
fn d_stab() -> i64 {
    300
}
fn d_significance() -> f64 {
    4.0
}

/// The SLO staffing policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloPolicy {
    /// Requests one instance serves at once, `> 0`.
    pub concurrency_per_instance: f64,
    /// Time for a new instance to become ready, seconds (default 60).
    #[serde(default = "d_cold")]
    pub cold_start_seconds: f64,
    /// Window of the steady arrival rate, seconds (default 300).
    #[serde(default = "d_rate")]
    pub rate_window_seconds: i64,
    /// Short window that catches a rise, seconds (default 60).
    #[serde(default = "d_burst")]
    pub burst_window_seconds: i64,
    /// Window of the service time, peakedness and observed attainment,
    /// seconds (default 1800).
    #[serde(default = "d_feedback")]
    pub feedback_window_seconds: i64,
    /// Oldest usable arrival-rate sample, seconds (default 120).
    #[serde(default = "d_age")]
    pub max_observation_age_seconds: i64,
    /// Whether an idle pool goes to zero (default true; the pool's
    /// `min_capacity` must be 0 too).
    #[serde(default = "d_true")]
    pub scale_to_zero: bool,
    /// Scale-in stabilization, seconds (default 300; 0 looks at the
    /// current estimate alone): a scale-in goes no lower than the staffing
    /// of the highest upper bound of the arrival rate (`λ + z·σ`) over
    /// this window, so the pool seldom reverses (the flap budget allows
    /// four reversals an hour).
    #[serde(default = "d_stab")]
    pub scale_in_stabilization_seconds: i64,
    /// How many Poisson standard deviations the burst window's arrivals
    /// must exceed the rate window's prediction by before they count
    /// (default 4): below it a short window's excess is noise.
    #[serde(default = "d_significance")]
    pub burst_significance: f64,
}

impl SloPolicy {
    /// A policy with the defaults for `concurrency_per_instance` slots and
    /// a cold start of `cold_start_seconds`.
    pub fn new(concurrency_per_instance: f64, cold_start_seconds: f64) -> SloPolicy {
        SloPolicy {
            concurrency_per_instance,
            cold_start_seconds,
            rate_window_seconds: d_rate(),
            burst_window_seconds: d_burst(),
            feedback_window_seconds: d_feedback(),
            max_observation_age_seconds: d_age(),
            scale_to_zero: true,
            scale_in_stabilization_seconds: d_stab(),
            burst_significance: d_significance(),
        }
    }

    /// Records every violation under `prefix`.
    pub fn validate(&self, prefix: &str, v: &mut Violations) {
        let f = |n: &str| format!("{prefix}.{n}");
        if !(self.concurrency_per_instance.is_finite()
            && self.concurrency_per_instance > 0.0
            && self.concurrency_per_instance <= 10_000.0)
        {
            v.push(f("concurrency_per_instance"), "must be > 0 and <= 10000");
        }
        v.check_f64(
            &f("cold_start_seconds"),
            self.cold_start_seconds,
            0.0,
            86_400.0,
        );
        v.check_i64(
            &f("rate_window_seconds"),
            self.rate_window_seconds,
            15,
            86_400,
        );
        v.check_i64(
            &f("burst_window_seconds"),
            self.burst_window_seconds,
            15,
            86_400,
        );
        v.check_i64(
            &f("feedback_window_seconds"),
            self.feedback_window_seconds,
            60,
            86_400,
        );
        v.check_i64(
            &f("max_observation_age_seconds"),
            self.max_observation_age_seconds,
            1,
            86_400,
        );
        v.check_i64(
            &f("scale_in_stabilization_seconds"),
            self.scale_in_stabilization_seconds,
            0,
            86_400,
        );
        v.check_f64(
            &f("burst_significance"),
            self.burst_significance,
            0.0,
            100.0,
        );
    }

    /// Seconds of samples the policy reads.
    pub fn window_seconds(&self) -> i64 {
        self.rate_window_seconds
            .max(self.burst_window_seconds)
            .max(self.feedback_window_seconds)
            .max(self.scale_in_stabilization_seconds.max(0) + self.rate_window_seconds)
    }

    /// The arrival rate at `at_ms` from the rate samples up to it, and its
    /// standard error: the mean over the rate window, or the mean over the
    /// burst window when that window's arrivals exceed what the rate window
    /// predicts by more than `burst_significance` Poisson standard
    /// deviations (a real rise, not the noise of a few arrivals); the error
    /// is `√(λ / rate window)` (a Poisson count). `(0, 0)` without arrivals.
    ///
    /// `rates` are ordered by time, oldest first (as observations hold
    /// them): each window is found by binary search, so a decision that
    /// estimates at every sample of its stabilization window stays cheap.
    pub fn rate_estimate(&self, rates: &[Sample], at_ms: i64) -> (f64, f64) {
        let end = rates.partition_point(|s| s.ts_ms <= at_ms);
        let upto = &rates[..end];
        let mean_over = |w: i64| {
            let from = at_ms - w * 1000;
            let (n, sum) = upto[upto.partition_point(|s| s.ts_ms <= from)..]
                .iter()
                .filter(|s| s.value.is_finite())
                .fold((0usize, 0.0), |(n, sum), s| (n + 1, sum + s.value.max(0.0)));
            if n == 0 {
                0.0
            } else {
                sum / n as f64
            }
        };
        let steady = mean_over(self.rate_window_seconds);
        let burst = mean_over(self.burst_window_seconds);
        let window = self.burst_window_seconds as f64;
        let expected = steady * window;
        let mean = if burst * window > expected + self.burst_significance * expected.max(1.0).sqrt()
        {
            steady.max(burst)
        } else {
            steady
        };
        if mean > 0.0 {
            (mean, (mean / self.rate_window_seconds as f64).sqrt())
        } else {
            (0.0, 0.0)
        }
    }

    /// How long a pool must be idle before it goes to zero, seconds, for a
    /// goal and a service time `service_s` (see the module docs, step 6):
    /// `T / (1 − attainment)` when a request arriving at zero misses, else
    /// that times `S / (L − T)`; at most one hour, at least the cold start
    /// and the burst window. Continuous in `S` at `T + S = L`.
    pub fn idle_seconds(&self, goal: SloGoal, service_s: f64) -> f64 {
        let cold = self.cold_start_seconds;
        let latency_s = goal.latency_ms / 1000.0;
        let strict = cold / (1.0 - goal.attainment).max(1e-6);
        let share = if cold + service_s <= latency_s {
            (service_s.max(0.0) / (latency_s - cold).max(1e-3)).min(1.0)
        } else {
            1.0
        };
        (strict * share)
            .min(MAX_IDLE_SECONDS)
            .max(cold.max(self.burst_window_seconds as f64))
    }

    /// Evaluates the policy for `goal` (see the module docs); without a
    /// goal it holds for lack of one.
    pub fn decide(&self, obs: &Observation, goal: Option<SloGoal>) -> Decision {
        let current = obs.bounds.desired;
        let Some(goal) = goal else {
            return Decision::no_data(
                current,
                NAME,
                "No latency goal (performance_targets.latency_ms): holding".into(),
            );
        };
        let now = obs.now_ms;
        let since = |w: i64| now - w * 1000;
        let empty = Vec::new();
        let get = |n: &str| obs.metrics.get(n).unwrap_or(&empty);
        let rates = get(ARRIVAL_RATE);
        if rates
            .last()
            .is_none_or(|s| now - s.ts_ms > self.max_observation_age_seconds * 1000)
        {
            return Decision::no_data(current, NAME, "No recent arrival rate: holding".into());
        }
        // Scale out on the point estimate; scale in only to the staffing of
        // the upper bound `λ + z(attainment)·σ`, the highest it reached over
        // the stabilization window (a hysteresis band as wide as the
        // estimate's own uncertainty).
        let (lambda, sigma) = self.rate_estimate(rates, now);
        let z_goal = normal_quantile(goal.attainment).max(0.0);
        let stab_ms = self.scale_in_stabilization_seconds.max(0) * 1000;
        let lambda_stab = rates
            .iter()
            .filter(|s| s.ts_ms > now - stab_ms && s.ts_ms <= now)
            .map(|s| {
                let (l, e) = self.rate_estimate(rates, s.ts_ms);
                l + z_goal * e
            })
            .fold(lambda + z_goal * sigma, f64::max);
        let fb = since(self.feedback_window_seconds);
        let newest_of = |n: &str| {
            get(n)
                .last()
                .filter(|s| now - s.ts_ms <= self.max_observation_age_seconds * 1000)
                .map_or(0.0, |s| s.value.max(0.0))
        };
        let in_flight = newest_of(IN_FLIGHT);
        let queue = newest_of(QUEUE_DEPTH);
        // Completions and misses over the feedback window, matched by time.
        let completed = sum_since(get(COMPLETED), fb);
        let missed = sum_since(get(MISSED), fb);
        let service_s = weighted_service_s(get(SERVICE_TIME_MS), get(COMPLETED), fb);
        let slots = self.concurrency_per_instance;
        let mut inputs = BTreeMap::new();
        inputs.insert("arrival_rate".into(), lambda);
        inputs.insert("in_flight".into(), in_flight);
        inputs.insert("queue_depth".into(), queue);
        inputs.insert("latency_goal_ms".into(), goal.latency_ms);
        inputs.insert("attainment_goal".into(), goal.attainment);
        // Idle: no arrival over the idle period (and samples covering it),
        // nothing in flight or waiting.
        let idle_s = self.idle_seconds(goal, service_s.unwrap_or(0.0));
        let covered = rates
            .first()
            .is_some_and(|s| now - s.ts_ms >= (idle_s * 1000.0) as i64);
        let quiet = rates
            .iter()
            .filter(|s| s.ts_ms > now - (idle_s * 1000.0) as i64)
            .all(|s| s.value <= 0.0);
        inputs.insert("idle_seconds".into(), idle_s);
        if in_flight <= 0.0 && queue <= 0.0 && lambda <= 0.0 {
            if self.scale_to_zero && covered && quiet {
                return Decision::to_target(
                    obs.bounds,
                    0,
                    NAME,
                    format!("Idle for {idle_s:.0}s (no arrivals, nothing in flight or waiting): idle to zero"),
                    1.0,
                    inputs,
                );
            }
            return Decision::to_target(
                obs.bounds,
                current.min(1).max(i64::from(current > 0)),
                NAME,
                format!("No arrivals lately; zero after {idle_s:.0}s idle"),
                1.0,
                inputs,
            );
        }
        let Some(s) = service_s else {
            // Activation: work but no service time measured yet.
            let need = to_instances(ceil_tol((in_flight + queue).max(1.0) / slots)).max(1);
            inputs.insert("needed".into(), need as f64);
            return Decision::to_target(
                obs.bounds,
                need.max(current),
                NAME,
                format!("Activation: {in_flight} in flight, {queue} waiting, service time not measured yet"),
                0.5,
                inputs,
            );
        };
        let a = lambda * s;
        let z = peakedness(rates, fb);
        let eps = (1.0 - goal.attainment).clamp(1e-6, 0.5);
        let m_hat = (missed + 1.0) / (completed + 1.0 / eps);
        let corr = (eps / m_hat).clamp(0.1, 10.0);
        let eps_eff = (eps * corr).clamp(1e-9, 0.5);
        let slack = (goal.latency_ms / 1000.0 - s).max(0.1 * s).max(1e-3);
        let c_wait = erlang_c_staffing(a, z, eps_eff, slack / s);
        // The backlog new capacity can still help: what the current spare
        // slots will not have drained by the time it is ready (a cold start
        // from now), to be drained in the slack left after it; none when
        // the cold start eats the whole slack (the waiting requests miss or
        // are served before any new instance is up).
        let spare = (current as f64 * slots - a).max(0.0);
        let backlog = (queue - spare * self.cold_start_seconds / s).max(0.0);
        let drain_s = slack - self.cold_start_seconds;
        let c_backlog = if drain_s > 0.0 {
            backlog * s / drain_s
        } else {
            0.0
        };
        let c = (c_wait + c_backlog).max(in_flight.min(a.max(1.0)));
        let need = to_instances(ceil_tol(c / slots)).max(1);
        // Scale-in stabilization: none within the window after a scale-out
        // (that would reverse it), then no lower than the staffing of the
        // window's highest upper bound of the rate (the same miss budget,
        // service time and peakedness), and never above the current
        // capacity.
        let scaled_out_lately = obs.last_scale_up_at_ms.is_some_and(|t| now - t < stab_ms);
        let stabilized = if need < current && scaled_out_lately {
            Some(current)
        } else if need < current && lambda_stab > lambda {
            let c_stab = erlang_c_staffing(lambda_stab * s, z, eps_eff, slack / s) + c_backlog;
            let floor = to_instances(ceil_tol(c_stab.max(c) / slots)).min(current);
            (floor > need).then_some(floor)
        } else {
            None
        };
        inputs.insert("needed_unstabilized".into(), need as f64);
        let need = stabilized.unwrap_or(need);
        for (k, v) in [
            ("service_time_s", s),
            ("offered_load", a),
            ("peakedness", z),
            ("miss_budget", eps),
            ("miss_budget_corrected", eps_eff),
            (
                "observed_attainment",
                if completed > 0.0 {
                    1.0 - missed / completed
                } else {
                    f64::NAN
                },
            ),
            ("slots_needed", c),
            ("needed", need as f64),
        ] {
            if v.is_finite() {
                inputs.insert(k.into(), v);
            }
        }
        Decision::to_target(
            obs.bounds,
            need,
            NAME,
            format!(
                "Offered load {a:.2} (λ {lambda:.3}/s × S {s:.2}s, peakedness {z:.2}) needs {c:.1} slots for P(wait > {slack:.1}s) ≤ {eps_eff:.4} (goal {} within {} ms, corrected ×{corr:.2}): {need} instances{}",
                goal.attainment,
                goal.latency_ms,
                if stabilized.is_some() && scaled_out_lately {
                    format!(
                        " (scale-in held: scaled out less than {}s ago)",
                        self.scale_in_stabilization_seconds
                    )
                } else if stabilized.is_some() {
                    format!(
                        " (scale-in stabilized: the upper bound of λ reached {lambda_stab:.3}/s in the last {}s)",
                        self.scale_in_stabilization_seconds
                    )
                } else {
                    String::new()
                }
            ),
            1.0,
            inputs,
        )
    }
}

/// The standard normal quantile of `p` (Acklam's rational approximation,
/// relative error below 1.2·10⁻⁹), 0 outside `(0, 1)`.
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return 0.0;
    }
    crate::forecast::acklam_quantile(p)
}

fn sum_since(samples: &[Sample], from: i64) -> f64 {
    samples
        .iter()
        .filter(|s| s.ts_ms > from && s.value.is_finite())
        .map(|s| s.value.max(0.0))
        .sum()
}

/// Completion-weighted mean service time, seconds, over samples newer than
/// `from` (service time and completion samples matched by timestamp).
fn weighted_service_s(service_ms: &[Sample], completed: &[Sample], from: i64) -> Option<f64> {
    let mut num = 0.0;
    let mut den = 0.0;
    for s in service_ms
        .iter()
        .filter(|s| s.ts_ms > from && s.value.is_finite())
    {
        let w = completed
            .iter()
            .find(|c| c.ts_ms == s.ts_ms)
            .map_or(1.0, |c| c.value.max(0.0));
        num += w * s.value.max(0.0);
        den += w;
    }
    (den > 0.0 && num > 0.0).then(|| num / den / 1000.0)
}

/// Index of dispersion (variance ÷ mean) of the arrival counts newer than
/// `from` over buckets of at least 15 s (shorter scrapes are summed, so
/// the estimate does not change with the scrape interval), at least 1 (1
/// without enough data). A sample's count is its rate times the gap to the
/// previous sample.
pub fn peakedness(rates: &[Sample], from: i64) -> f64 {
    // Counts over buckets of at least PEAKEDNESS_BUCKET_MS, whatever the
    // scrape interval: the index of dispersion depends on the counting
    // interval, and the policy must not staff differently for the same
    // traffic because it is scraped more often.
    let mut counts: Vec<f64> = Vec::new();
    let (mut acc, mut span) = (0.0, 0i64);
    for w in rates
        .windows(2)
        .filter(|w| w[1].ts_ms > from && w[1].ts_ms > w[0].ts_ms && w[1].value.is_finite())
    {
        let gap = w[1].ts_ms - w[0].ts_ms;
        acc += w[1].value.max(0.0) * gap as f64 / 1000.0;
        span += gap;
        if span >= PEAKEDNESS_BUCKET_MS {
            counts.push(acc);
            (acc, span) = (0.0, 0);
        }
    }
    if counts.len() < 4 {
        return 1.0;
    }
    let n = counts.len() as f64;
    let mean = counts.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return 1.0;
    }
    let var = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (var / mean).clamp(1.0, 100.0)
}

/// Erlang C: the probability that an arrival waits, with offered load `a`
/// Erlangs on `c` servers (`c` may be fractional: the last server counts
/// for its fraction, by interpolating between `floor(c)` and `ceil(c)`).
/// 1 when `c <= a` (the queue grows without bound).
pub fn erlang_c(c: f64, a: f64) -> f64 {
    if a <= 0.0 {
        return 0.0;
    }
    if c <= a {
        return 1.0;
    }
    let k = c.floor();
    let frac = c - k;
    let at = |n: f64| -> f64 {
        if n <= a {
            return 1.0;
        }
        // Erlang B by recursion, then C = n·B / (n − a(1 − B)).
        let mut b = 1.0;
        let mut i = 1.0;
        while i <= n {
            b = a * b / (i + a * b);
            i += 1.0;
        }
        (n * b / (n - a * (1.0 - b))).clamp(0.0, 1.0)
    };
    let lo = at(k);
    if frac == 0.0 {
        lo
    } else {
        lo + frac * (at(k + 1.0) - lo)
    }
}

/// The fewest slots `c` (a whole number above `a`) for offered load `a`
/// Erlangs of peakedness `z` (Hayward: `a/z` Erlangs on `c/z` servers)
/// whose M/M/c probability of waiting longer than `slack_in_services` mean
/// service times is at most `eps`:
/// `C(c/z, a/z) · exp(−(c − a)/z · slack) ≤ eps`. 0 for no load. The
/// probability falls as `c` grows, so a binary search finds it.
pub fn erlang_c_staffing(a: f64, z: f64, eps: f64, slack_in_services: f64) -> f64 {
    if !(a.is_finite() && a > 0.0) {
        return 0.0;
    }
    let z = if z.is_finite() { z.max(1.0) } else { 1.0 };
    let slack = slack_in_services.max(0.0);
    let ok = |c: f64| erlang_c(c / z, a / z) * (-(c - a) / z * slack).exp() <= eps;
    let mut lo = a.floor(); // fails: c <= a waits with probability 1
    let mut step = 1.0;
    let mut hi = lo + step;
    while !ok(hi) {
        lo = hi;
        step *= 2.0;
        hi = (lo + step).min(MAX_SLOTS);
        if hi >= MAX_SLOTS {
            return MAX_SLOTS;
        }
    }
    while hi - lo > 1.0 {
        let mid = ((lo + hi) / 2.0).floor();
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests;
