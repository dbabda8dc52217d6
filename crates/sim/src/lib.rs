//! fleetscale-sim: replays a workload trace against scaling policies in a
//! discrete-event simulation and reports SLO attainment, latency, cost and
//! over-provisioning per policy. Pure: takes the trace text or a parsed
//! trace and a config, returns a [`Report`]; no I/O, no clock, randomness
//! only from `ChaCha8Rng::seed_from_u64(seed)`.
//!
//! Every policy sees the same workload (the same arrivals and service
//! times), the same cold start, the same observation interval and the same
//! per-instance capacity. See `docs/simulation.md` for the model.

pub mod controllers;
pub mod frontier;
pub mod report;
pub mod stress;
pub mod view;
pub mod workload;
pub mod world;

use fleetscale_core::trace::{parse_trace, Trace, TraceError};
use fleetscale_core::PoolPolicies;

pub use controllers::FleetscaleTuning;
pub use frontier::{CostAt, EqualAttainment, FrontierPoint};
pub use report::{PolicyResult, Report, TimelinePoint};
pub use workload::ServiceModel;

use view::Controller;
use workload::{fill_missing, Arrivals, US};
use world::{World, WorldParams};

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The trace is malformed (the message names the line). The cause is
    /// in the message and deliberately not a `#[source]`: an error chain
    /// printed with `{:#}` would say it twice.
    #[error("trace: {0}")]
    Trace(TraceError),
    /// A configuration value is out of range.
    #[error("invalid config: {0}")]
    Config(String),
    /// A baseline name is unknown.
    #[error("unknown baseline {0:?}: expected hpa, keda, kpa, step or static")]
    UnknownBaseline(String),
    /// A pool policy is invalid.
    #[error("policy {name}: {message}")]
    Policy {
        /// The policy's name.
        name: String,
        /// Every violation.
        message: String,
    },
}

/// A policy to compare.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyChoice {
    /// fleetscale's default: the SLO policy (queueing model on the attainment goal).
    Fleetscale,
    /// Kubernetes HPA baseline.
    Hpa,
    /// KEDA baseline.
    Keda,
    /// Knative KPA baseline.
    Kpa,
    /// The threshold (step) policy baseline.
    Step,
    /// Static provisioning at the peak.
    Static,
    /// User pool policies.
    Pool {
        /// Name in the report.
        name: String,
        /// The policies.
        spec: PoolPolicies,
    },
}

impl PolicyChoice {
    /// Parses a comma-separated list of baselines (`hpa,keda,kpa,step,static`).
    pub fn parse_baselines(s: &str) -> Result<Vec<PolicyChoice>, SimError> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|x| match x {
                "hpa" => Ok(PolicyChoice::Hpa),
                "keda" => Ok(PolicyChoice::Keda),
                "kpa" => Ok(PolicyChoice::Kpa),
                "step" => Ok(PolicyChoice::Step),
                "static" => Ok(PolicyChoice::Static),
                other => Err(SimError::UnknownBaseline(other.into())),
            })
            .collect()
    }
}

/// Default latency SLO of rate traces, as a multiple of the mean service
/// time. At 2× about 5% of requests (`P(0.5 + 0.5·Exp(1) > 2) = e⁻³`) miss it
/// on service time alone, which caps every policy near 0.95 and leaves the
/// comparison to noise; at 3× that share is `e⁻⁵` ≈ 0.7%, so the SLO
/// measures queueing, i.e. the scaler.
pub const RATE_SLO_SERVICE_MULTIPLE: f64 = 3.0;

/// Simulation settings. `None` fields take the per-format defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// SLO on latency, ms (default: requests 20 000; rates 3 × the mean service time).
    pub slo_ms: Option<f64>,
    /// Provisioning delay of a new instance, seconds (default 60).
    pub cold_start_s: f64,
    /// Observation and decision interval of every policy, seconds (default 15).
    pub tick_s: f64,
    /// Rate traces: instances the peak interval needs at the planning utilization (default 40).
    pub peak_instances: u32,
    /// Seed of the arrival process (default 1).
    pub seed: u64,
    /// Concurrent slots per instance (default: requests 2, rates 4).
    pub slots_per_instance: Option<u32>,
    /// Service time model.
    pub service: ServiceModel,
    /// Metrics scrape interval and window, seconds (default 15).
    pub scrape_s: f64,
    /// Delay before a scrape is visible to policies, seconds (default 5).
    pub metrics_delay_s: f64,
    /// Demand history interval for forecasting, seconds (default 300).
    pub history_interval_s: f64,
    /// Planning utilization of the baselines (HPA, KEDA targets; static sizing), fraction (default 0.7).
    pub planning_utilization: f64,
    /// Simulate only the first hours of the trace.
    pub max_hours: Option<f64>,
    /// Queue bound (default 1 000 000).
    pub max_queue: usize,
    /// Timeline points for the plot (default 600).
    pub plot_points: u32,
    /// Tunables of the fleetscale default.
    pub tuning: FleetscaleTuning,
    /// Put the baselines (HPA, KEDA, KPA, step) under the live engine's
    /// flap budget too, as fleetscale always is: a comparison under equal
    /// constraints (default false: the baselines as their systems run
    /// them).
    pub guard_baselines: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            slo_ms: None,
            cold_start_s: 60.0,
            tick_s: 15.0,
            peak_instances: 40,
            seed: 1,
            slots_per_instance: None,
            service: ServiceModel {
                prefill_tokens_per_s: 1000.0,
                decode_ms_per_token: 40.0,
                rate_service_s: 120.0,
            },
            scrape_s: 15.0,
            metrics_delay_s: 5.0,
            history_interval_s: 300.0,
            planning_utilization: 0.7,
            max_hours: None,
            max_queue: 1_000_000,
            plot_points: 600,
            tuning: FleetscaleTuning::default(),
            guard_baselines: false,
        }
    }
}

impl SimConfig {
    fn validate(&self) -> Result<(), SimError> {
        let bad = |m: &str| Err(SimError::Config(m.into()));
        let pos = |x: f64| x.is_finite() && x > 0.0;
        if self.slo_ms.is_some_and(|s| !pos(s)) {
            return bad("slo_ms must be > 0");
        }
        if !(self.cold_start_s.is_finite() && (0.0..=86_400.0).contains(&self.cold_start_s)) {
            return bad("cold_start_s must be in [0, 86400]");
        }
        if !(pos(self.tick_s) && self.tick_s <= 3600.0) {
            return bad("tick_s must be in (0, 3600]");
        }
        if self.peak_instances == 0 || self.peak_instances > 100_000 {
            return bad("peak_instances must be in [1, 100000]");
        }
        if self
            .slots_per_instance
            .is_some_and(|s| s == 0 || s > 10_000)
        {
            return bad("slots_per_instance must be in [1, 10000]");
        }
        if !(pos(self.scrape_s) && pos(self.history_interval_s) && self.metrics_delay_s >= 0.0) {
            return bad("scrape_s and history_interval_s must be > 0, metrics_delay_s >= 0");
        }
        if !(self.planning_utilization > 0.0 && self.planning_utilization <= 1.0) {
            return bad("planning_utilization must be in (0, 1]");
        }
        let s = self.service;
        if !(pos(s.prefill_tokens_per_s) && s.decode_ms_per_token >= 0.0 && pos(s.rate_service_s)) {
            return bad("service model values must be > 0");
        }
        if self.max_hours.is_some_and(|h| !pos(h)) {
            return bad("max_hours must be > 0");
        }
        Ok(())
    }
}

/// Parses `text` (either trace format) and runs it; see [`run`].
pub fn run_text(
    text: &str,
    trace_name: &str,
    cfg: &SimConfig,
    policies: &[PolicyChoice],
    progress: &mut dyn FnMut(usize, f64),
) -> Result<Report, SimError> {
    let trace = parse_trace(text).map_err(SimError::Trace)?;
    run(&trace, trace_name, cfg, policies, progress)
}

/// Everything derived from the trace that every policy run shares.
struct Setup<'a> {
    trace: &'a Trace,
    format: &'static str,
    t0_ms: i64,
    horizon_us: i64,
    slots: u32,
    slo_ms: f64,
    rate_scale: f64,
    static_n: i64,
    initial: i64,
    bucket_us: i64,
    load: Vec<f64>,
}

impl Setup<'_> {
    fn arrivals(&self, cfg: &SimConfig) -> Arrivals<'_> {
        match self.trace {
            Trace::Requests { requests } => {
                Arrivals::requests(requests, cfg.service, self.horizon_us)
            }
            Trace::Rates(r) => {
                Arrivals::rates(r, self.rate_scale, cfg.service, cfg.seed, self.horizon_us)
            }
        }
    }
}

fn setup<'a>(trace: &'a Trace, cfg: &SimConfig) -> Setup<'a> {
    let cap_us = cfg
        .max_hours
        .map_or(i64::MAX, |h| (h * 3600.0 * US as f64) as i64);
    let u = cfg.planning_utilization;
    let (format, t0_ms, horizon_us, slots, slo_ms, rate_scale) = match trace {
        Trace::Requests { requests } => {
            let t0 = requests.first().map_or(0, |r| r.ts_ms);
            let last = requests.last().map_or(t0, |r| r.ts_ms);
            let slots = cfg.slots_per_instance.unwrap_or(2);
            let h = ((last - t0) * 1000 + US).min(cap_us);
            (
                "requests",
                t0,
                h,
                slots,
                cfg.slo_ms.unwrap_or(20_000.0),
                1.0,
            )
        }
        Trace::Rates(r) => {
            let slots = cfg.slots_per_instance.unwrap_or(4);
            let iv_s = r.interval_ms.max(1) as f64 / 1000.0;
            let peak = fill_missing(&r.values).into_iter().fold(0.0, f64::max);
            let scale = if peak > 0.0 {
                f64::from(cfg.peak_instances) * f64::from(slots) * u * iv_s
                    / (peak * cfg.service.rate_service_s)
            } else {
                0.0
            };
            let h = (r.values.len() as i64 * r.interval_ms.max(1) * 1000).min(cap_us);
            let slo = cfg
                .slo_ms
                .unwrap_or(RATE_SLO_SERVICE_MULTIPLE * cfg.service.rate_service_s * 1000.0);
            ("rates", r.start_ms, h, slots, slo, scale)
        }
    };
    let horizon_us = horizon_us.max(US);
    let bucket_us = (horizon_us / i64::from(cfg.plot_points.max(1))).max(US);
    let mut s = Setup {
        trace,
        format,
        t0_ms,
        horizon_us,
        slots,
        slo_ms,
        rate_scale,
        static_n: 1,
        initial: 1,
        bucket_us,
        load: Vec::new(),
    };
    // One pass over the workload: offered load per plot bucket and per
    // sizing window (the trace interval, or one minute for request traces).
    let size_us = match trace {
        Trace::Rates(r) => r.interval_ms.max(1) * 1000,
        Trace::Requests { .. } => 60 * US,
    };
    let mut load = vec![0.0; (horizon_us / bucket_us + 1) as usize];
    let mut win = vec![0.0f64; (horizon_us / size_us + 1) as usize];
    for (t, svc) in s.arrivals(cfg) {
        load[(t / bucket_us) as usize] += svc as f64;
        win[(t / size_us) as usize] += svc as f64;
    }
    let per_instance = |work: f64, span_us: i64| work / span_us as f64 / f64::from(slots);
    s.load = load.iter().map(|w| per_instance(*w, bucket_us)).collect();
    let need = |w: f64| (per_instance(w, size_us) / u - 1e-9).ceil().max(1.0) as i64;
    s.static_n = match trace {
        Trace::Rates(_) => i64::from(cfg.peak_instances),
        Trace::Requests { .. } => need(win.iter().copied().fold(0.0, f64::max)),
    };
    s.initial = need(win.first().copied().unwrap_or(0.0));
    s
}

/// Runs every policy in `policies` over `trace` and reports, in order.
/// `progress(policy_index, fraction)` is called now and then.
pub fn run(
    trace: &Trace,
    trace_name: &str,
    cfg: &SimConfig,
    policies: &[PolicyChoice],
    progress: &mut dyn FnMut(usize, f64),
) -> Result<Report, SimError> {
    cfg.validate()?;
    for p in policies {
        if let PolicyChoice::Pool { name, spec } = p {
            spec.validate().map_err(|v| SimError::Policy {
                name: name.clone(),
                message: v.to_string(),
            })?;
        }
    }
    let s = setup(trace, cfg);
    let params = world_params(&s, cfg);
    let mut results = Vec::with_capacity(policies.len());
    for (i, p) in policies.iter().enumerate() {
        results.push(run_policy(&s, cfg, &params, p, None, &mut |f| {
            progress(i, f)
        }));
        progress(i, 1.0);
    }
    Ok(Report {
        trace: trace_name.into(),
        format: s.format.into(),
        horizon_s: s.horizon_us as f64 / US as f64,
        slo_ms: s.slo_ms,
        cold_start_s: cfg.cold_start_s,
        tick_s: cfg.tick_s,
        seed: cfg.seed,
        slots_per_instance: s.slots,
        peak_instances: s.static_n,
        load: s.load,
        bucket_s: s.bucket_us as f64 / US as f64,
        results,
        frontiers: Default::default(),
        equal_attainment: Vec::new(),
    })
}

/// The knob values a sweep runs a policy at (`--sweep`): fleetscale its
/// attainment goal, HPA and KPA their target utilization, KEDA its target
/// outstanding requests per instance (the same utilizations × the slots).
/// Empty for policies without a knob (step, static, policy files).
pub fn knob_grid(p: &PolicyChoice, slots: u32) -> Vec<f64> {
    let utils: Vec<f64> = (10..=19).map(|k| f64::from(k) / 20.0).collect();
    match p {
        PolicyChoice::Fleetscale => FLEETSCALE_GOALS.to_vec(),
        PolicyChoice::Hpa | PolicyChoice::Kpa => utils,
        PolicyChoice::Keda => utils.iter().map(|u| u * f64::from(slots)).collect(),
        _ => Vec::new(),
    }
}

/// The attainment goals fleetscale's frontier is swept over.
pub const FLEETSCALE_GOALS: [f64; 8] = [0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999];

/// [`run`], then every policy with a knob ([`knob_grid`]) over its knob:
/// the report's `frontiers` (one point per knob value, in grid order) and,
/// when fleetscale is among the policies, `equal_attainment` (each other
/// knobbed policy's default point against fleetscale's frontier).
/// `progress(run_index, fraction)` counts the default runs first.
pub fn sweep(
    trace: &Trace,
    trace_name: &str,
    cfg: &SimConfig,
    policies: &[PolicyChoice],
    progress: &mut dyn FnMut(usize, f64),
) -> Result<Report, SimError> {
    let mut report = run(trace, trace_name, cfg, policies, progress)?;
    let s = setup(trace, cfg);
    let params = world_params(&s, cfg);
    let mut k = policies.len();
    for (p, r) in policies.iter().zip(&report.results) {
        let grid = knob_grid(p, s.slots);
        if grid.is_empty() {
            continue;
        }
        let mut pts = Vec::with_capacity(grid.len());
        for knob in grid {
            let x = run_policy(&s, cfg, &params, p, Some(knob), &mut |f| progress(k, f));
            k += 1;
            pts.push(FrontierPoint {
                knob,
                slo_attainment: x.slo_attainment,
                instance_seconds: x.instance_seconds,
            });
        }
        report.frontiers.insert(r.policy.clone(), pts);
    }
    if let (Some(f), Some(fs)) = (
        report.frontiers.get("fleetscale"),
        report.results.iter().find(|r| r.policy == "fleetscale"),
    ) {
        let baselines: Vec<(String, f64, f64)> = report
            .results
            .iter()
            .filter(|r| r.policy != "fleetscale" && report.frontiers.contains_key(&r.policy))
            .map(|r| (r.policy.clone(), r.slo_attainment, r.instance_seconds))
            .collect();
        report.equal_attainment = frontier::equal_attainment(f, fs.slo_attainment, &baselines);
    }
    Ok(report)
}

fn world_params(s: &Setup, cfg: &SimConfig) -> WorldParams {
    WorldParams {
        t0_ms: s.t0_ms,
        slots: s.slots,
        cold_start_us: (cfg.cold_start_s * US as f64) as i64,
        scrape_us: (cfg.scrape_s * US as f64) as i64,
        metrics_delay_us: (cfg.metrics_delay_s * US as f64) as i64,
        history_us: (cfg.history_interval_s * US as f64) as i64,
        horizon_us: s.horizon_us,
        slo_us: (s.slo_ms * 1000.0) as i64,
        max_queue: cfg.max_queue,
        bucket_us: s.bucket_us,
        initial: s.initial,
    }
}

/// One policy's run; `knob` replaces its default knob (see [`knob_grid`]).
fn run_policy(
    s: &Setup,
    cfg: &SimConfig,
    params: &WorldParams,
    p: &PolicyChoice,
    knob: Option<f64>,
    progress: &mut dyn FnMut(f64),
) -> PolicyResult {
    let period_us = (cfg.tick_s * US as f64) as i64;
    let max = s.static_n * 4 + 10;
    let u = cfg.planning_utilization;
    let slots = f64::from(s.slots);
    let mut ctl: Box<dyn Controller> = match p {
        PolicyChoice::Fleetscale => {
            let mut t = cfg.tuning;
            if let Some(k) = knob {
                t.attainment_goal = k;
            }
            Box::new(controllers::Pool::new(
                "fleetscale",
                controllers::fleetscale_default(s.slots, cfg.cold_start_s, s.slo_ms, t),
                0,
                max,
                period_us,
            ))
        }
        PolicyChoice::Hpa => Box::new(controllers::hpa(
            (knob.unwrap_or(u) * 100.0).round() as i32,
            max,
            period_us,
        )),
        PolicyChoice::Keda => Box::new(controllers::Keda::new(
            knob.unwrap_or(slots * u),
            max,
            period_us,
        )),
        PolicyChoice::Kpa => Box::new(controllers::Kpa::new(slots, knob.unwrap_or(u), max)),
        PolicyChoice::Step => Box::new(controllers::step(max, period_us)),
        PolicyChoice::Static => Box::new(controllers::Static {
            n: s.static_n,
            period_us,
        }),
        PolicyChoice::Pool { name, spec } => Box::new(controllers::Pool::new(
            name,
            spec.clone(),
            1,
            max,
            period_us,
        )),
    };
    if cfg.guard_baselines
        && matches!(
            p,
            PolicyChoice::Hpa | PolicyChoice::Keda | PolicyChoice::Kpa | PolicyChoice::Step
        )
    {
        ctl = Box::new(controllers::FlapBudgeted::new(ctl));
    }
    let mut params = *params;
    if matches!(p, PolicyChoice::Static) {
        params.initial = s.static_n;
    }
    World::new(params).run(s.arrivals(cfg), ctl.as_mut(), progress)
}

/// The default comparison: fleetscale and the five baselines.
pub fn default_policies() -> Vec<PolicyChoice> {
    vec![
        PolicyChoice::Fleetscale,
        PolicyChoice::Hpa,
        PolicyChoice::Keda,
        PolicyChoice::Kpa,
        PolicyChoice::Step,
        PolicyChoice::Static,
    ]
}
