//! The controllers compared: each turns what the world lets it see into an
//! [`Observation`] and asks the *live engine's* code for a decision —
//! [`fleetscale_core::decide`] for a single policy (HPA = target tracking
//! with HPA's defaults, step = the phase-93 threshold policy),
//! [`fleetscale_core::decide_all_cached`] for pool policies (the fleetscale
//! default), with the predictive policy on its cached-model path. No policy
//! is re-implemented here; KEDA adds only its operator's polling,
//! activation, cooldown and scale-to-zero around the same HPA calculator.

use std::collections::BTreeMap;

use fleetscale_core::control::{decide_pool, PoolState};
use fleetscale_core::fail_static::{guard, Guarded, MetricsHealth, DEFAULT_MAX_REVERSALS};
use fleetscale_core::hpa::{
    ConditionStatus, HpaBehavior, Pod, PodMetric, PodPhase, ReadyCondition,
};
use fleetscale_core::kpa::{KpaConfig, KpaState};
use fleetscale_core::memory::ControllerMemory;
use fleetscale_core::observe::{self, HistoryNeed, PoolFacts, Scrape};
use fleetscale_core::policies::predictive::{ModelCache, PredictivePolicy};
use fleetscale_core::policies::slo;
use fleetscale_core::policies::target_tracking::{
    MetricTarget, TargetTrackingPolicy, TrackedMetric,
};
use fleetscale_core::trace::RateSeries;
use fleetscale_core::{
    decide, CombinedDecision, Decision, Mode, Observation, PolicySpec, PoolBounds, PoolPolicies,
    QueueObservation, Sample as MetricSample, ThresholdPolicy,
};

use crate::view::{InstState, Sample, View};
use crate::workload::US;

/// Kept at its old path (`fleetscale_sim::controllers::Controller`); it lives
/// in [`crate::view`].
pub use crate::view::Controller;

/// Metric name of the mean outstanding requests (in flight + waiting).
pub const CONCURRENCY: &str = "concurrency";
/// Resource name of the per-instance busy fraction (HPA's "cpu").
pub const CPU: &str = "cpu";

/// Static provisioning.
#[derive(Debug, Clone)]
pub struct Static {
    /// Instances.
    pub n: i64,
    /// Decision interval, µs.
    pub period_us: i64,
}

impl Controller for Static {
    fn name(&self) -> String {
        "static".into()
    }
    fn period_us(&self) -> i64 {
        self.period_us
    }
    fn decide(&mut self, _: &View) -> i64 {
        self.n
    }
}

/// Controller memory carried between decisions: the live engine's type
/// ([`ControllerMemory`]), recalled and remembered the same way.
type Memory = ControllerMemory;

/// Builds the observation a policy gets at `v`: scraped metrics only
/// (already `metrics_delay` old when visible), never the live state.
fn observe(
    v: &View,
    bounds: PoolBounds,
    mem: &Memory,
    load_window_s: i64,
    with_pods: bool,
    slo_window_s: Option<i64>,
) -> Observation {
    let facts = PoolFacts {
        now_ms: v.now_ms(),
        bounds,
        capacity_per_instance: f64::from(v.slots),
        safety_lock: false,
        last_scaled_at_ms: mem.last_scaled_at_ms(),
        last_scale_up_at_ms: mem.last_scale_up_at_ms,
        last_scale_down_at_ms: mem.last_scale_down_at_ms,
    };
    let concurrency = |s: &Sample| MetricSample {
        ts_ms: v.ms(s.ts_us),
        value: s.busy_mean + s.queue_mean,
    };
    // The window is cut in µs, the world's own resolution.
    let from = v.now_us - load_window_s * US;
    let win: Vec<MetricSample> = v
        .samples
        .iter()
        .filter(|s| s.ts_us > from)
        .map(concurrency)
        .collect();
    let mut scrape = Scrape {
        load: observe::window_stats(&win, i64::MIN),
        ..Scrape::default()
    };
    if let Some(s) = v.samples.back() {
        scrape
            .metrics
            .insert(CONCURRENCY.into(), vec![concurrency(s)]);
        // The world counts starts per ready instance: a measured queue.
        let window_s = s.window_us as f64 / US as f64;
        scrape.queue = Some(QueueObservation {
            backlog: s.queue_now,
            throughput_per_instance: (s.ready_mean > 0.0 && s.started > 0)
                .then(|| s.started as f64 / window_s / s.ready_mean),
            observed_at_ms: v.ms(s.ts_us),
        });
    }
    if let Some(w) = slo_window_s {
        slo_metrics(v, w, &mut scrape.metrics);
    }
    let mut o = observe::observation(&facts, scrape);
    mem.recall(&mut o);
    if with_pods {
        o.instances = v
            .instances
            .iter()
            .map(|i| {
                let ready = i.state != InstState::Provisioning;
                Pod {
                    name: format!("i{}", i.id),
                    phase: if ready {
                        PodPhase::Running
                    } else {
                        PodPhase::Pending
                    },
                    deleting: i.state == InstState::Draining,
                    start_time_ms: Some(v.ms(i.launched_us)),
                    ready: Some(ReadyCondition {
                        status: if ready {
                            ConditionStatus::True
                        } else {
                            ConditionStatus::False
                        },
                        last_transition_ms: v.ms(if ready { i.ready_us } else { i.launched_us }),
                    }),
                    request_milli: Some(1000),
                }
            })
            .collect();
        if let Some(s) = v.samples.back() {
            o.instance_metrics.insert(
                CPU.into(),
                s.per_instance
                    .iter()
                    .map(|(id, u)| PodMetric {
                        pod: format!("i{id}"),
                        value_milli: (u * 1000.0).round() as i64,
                        timestamp_ms: v.ms(s.ts_us),
                        window_ms: s.window_us / 1000,
                    })
                    .collect(),
            );
        }
    }
    o
}

/// The samples the `slo` policy reads, over the last `window_s` (what a
/// service reports per scrape window: arrivals per second, the mean service
/// time of the requests completed, completions and SLO misses, requests in
/// flight and waiting).
fn slo_metrics(v: &View, window_s: i64, m: &mut BTreeMap<String, Vec<MetricSample>>) {
    let from = v.now_us - window_s * US;
    let mut put = |name: &str, ts_ms: i64, value: f64| {
        m.entry(name.to_string())
            .or_default()
            .push(MetricSample { ts_ms, value });
    };
    for s in v.samples.iter().filter(|s| s.ts_us > from) {
        let ts = v.ms(s.ts_us);
        let w = s.window_us as f64 / US as f64;
        put(slo::ARRIVAL_RATE, ts, s.arrivals as f64 / w);
        if s.completed > 0 {
            put(
                slo::SERVICE_TIME_MS,
                ts,
                s.service_us / s.completed as f64 / 1000.0,
            );
        }
        put(slo::COMPLETED, ts, s.completed as f64);
        put(slo::MISSED, ts, s.missed as f64);
        put(slo::IN_FLIGHT, ts, s.busy_now);
        put(slo::QUEUE_DEPTH, ts, s.queue_now);
    }
}

fn needs_pods(spec: &PolicySpec) -> bool {
    match spec {
        PolicySpec::TargetTracking(t) => t.metrics.iter().any(|m| {
            matches!(
                m.target,
                MetricTarget::Utilization { .. }
                    | MetricTarget::ResourceAverageValue { .. }
                    | MetricTarget::AverageValue { .. }
            )
        }),
        _ => false,
    }
}

/// One [`PolicySpec`] through [`fleetscale_core::decide`].
#[derive(Debug, Clone)]
pub struct Single {
    name: String,
    spec: PolicySpec,
    min: i64,
    max: i64,
    period_us: i64,
    load_window_s: i64,
    pods: bool,
    mem: Memory,
}

impl Single {
    /// `spec` under `name`, bounds `[min, max]`, deciding every `period_us`.
    pub fn new(name: &str, spec: PolicySpec, min: i64, max: i64, period_us: i64) -> Single {
        Single {
            name: name.into(),
            pods: needs_pods(&spec),
            load_window_s: spec.window_seconds().max(1),
            spec,
            min,
            max,
            period_us,
            mem: Memory::default(),
        }
    }

    fn step(&mut self, v: &View, extra: &BTreeMap<String, Vec<MetricSample>>) -> i64 {
        let bounds = PoolBounds {
            min: self.min,
            max: self.max,
            desired: v.desired.clamp(self.min, self.max),
        };
        let mut o = observe(v, bounds, &self.mem, self.load_window_s, self.pods, None);
        o.metrics.extend(extra.clone());
        let d = decide(&self.spec, &o);
        self.mem.remember(&d, o.now_ms, true);
        d.target
    }
}

impl Controller for Single {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn period_us(&self) -> i64 {
        self.period_us
    }
    fn decide(&mut self, v: &View) -> i64 {
        self.step(v, &BTreeMap::new())
    }
}

/// HPA behavior with every field defaulted: scale-up max(4 pods, 100%) per
/// 15 s without stabilization, scale-down 100% per 15 s after a 300 s
/// stabilization window.
pub fn hpa_default_behavior() -> HpaBehavior {
    HpaBehavior::default()
}

/// The Kubernetes HPA baseline: resource utilization target on the
/// instances' busy fraction ("cpu"), tolerance 0.1, default behavior.
pub fn hpa(target_percent: i32, max: i64, period_us: i64) -> Single {
    let spec = PolicySpec::TargetTracking(TargetTrackingPolicy {
        metrics: vec![TrackedMetric {
            metric: CPU.into(),
            target: MetricTarget::Utilization {
                average_utilization_percent: target_percent,
            },
        }],
        tolerance: None,
        behavior: Some(hpa_default_behavior()),
        downscale_stabilization_seconds: None,
        max_sample_age_seconds: 300,
    });
    Single::new("hpa", spec, 1, max, period_us)
}

/// The phase-93 step baseline: threshold 80/30, increment 1, cooldown 300 s.
pub fn step(max: i64, period_us: i64) -> Single {
    Single::new(
        "step",
        PolicySpec::Threshold(ThresholdPolicy::default()),
        1,
        max,
        period_us,
    )
}

/// Metric name of KEDA's scaler reading (queue length + in flight).
pub const KEDA_METRIC: &str = "keda_queue_and_in_flight";

/// The KEDA baseline: a ScaledObject whose scaler reports queue length +
/// in-flight requests as an external `AverageValue` target, fed to the same
/// HPA calculator (15 s sync, default behavior, minReplicas 1), and KEDA's
/// operator loop: the scaler is polled every `polling_us` (the HPA reads the
/// cached value), the workload is active while the reading exceeds the
/// activation threshold (0), a 0-replica workload is activated to 1 on an
/// active poll, and scaled to zero once inactive for `cooldown_us`.
#[derive(Debug, Clone)]
pub struct Keda {
    hpa: Single,
    polling_us: i64,
    cooldown_us: i64,
    activation: f64,
    next_poll_us: i64,
    last_active_us: i64,
    reading: Option<MetricSample>,
}

impl Keda {
    /// KEDA with `target` outstanding requests per instance.
    pub fn new(target: f64, max: i64, period_us: i64) -> Keda {
        let spec = PolicySpec::TargetTracking(TargetTrackingPolicy {
            metrics: vec![TrackedMetric {
                metric: KEDA_METRIC.into(),
                target: MetricTarget::ExternalAverageValue {
                    average_value: target,
                },
            }],
            tolerance: None,
            behavior: Some(hpa_default_behavior()),
            downscale_stabilization_seconds: None,
            max_sample_age_seconds: 300,
        });
        Keda {
            hpa: Single::new("keda", spec, 1, max, period_us),
            polling_us: 30 * US,
            cooldown_us: 300 * US,
            activation: 0.0,
            next_poll_us: 0,
            last_active_us: 0,
            reading: None,
        }
    }
}

impl Controller for Keda {
    fn name(&self) -> String {
        "keda".into()
    }
    fn period_us(&self) -> i64 {
        self.hpa.period_us
    }
    fn decide(&mut self, v: &View) -> i64 {
        if v.now_us >= self.next_poll_us {
            self.next_poll_us = v.now_us + self.polling_us;
            // The scaler asks the queue itself: a live reading.
            let value = v.live_queue + v.live_in_flight;
            self.reading = Some(MetricSample {
                ts_ms: v.now_ms(),
                value,
            });
            let active = value > self.activation;
            if active {
                self.last_active_us = v.now_us;
            }
            if v.desired == 0 {
                return i64::from(active);
            }
            if !active && v.now_us - self.last_active_us >= self.cooldown_us {
                self.hpa.mem.record(v.now_ms(), v.desired, 0);
                return 0;
            }
        }
        if v.desired == 0 {
            return 0; // the HPA is inactive at zero replicas
        }
        let mut extra = BTreeMap::new();
        if let Some(r) = self.reading {
            extra.insert(KEDA_METRIC.to_string(), vec![r]);
        }
        self.hpa.step(v, &extra)
    }
}

/// Pool policies through the live tick's [`decide_pool`] (their
/// combination, then fail static and the flap budget), each predictive
/// policy on its cached-model path (fitted on the observed demand history,
/// refitted on a schedule, updated every interval in between).
#[derive(Debug, Clone)]
pub struct Pool {
    name: String,
    spec: PoolPolicies,
    min: i64,
    max: i64,
    period_us: i64,
    load_window_s: i64,
    pods: bool,
    slo_window_s: Option<i64>,
    mem: Memory,
    models: Vec<Option<ModelCache>>,
}

impl Pool {
    /// `spec` under `name`.
    pub fn new(name: &str, spec: PoolPolicies, min: i64, max: i64, period_us: i64) -> Pool {
        let load_window_s = spec
            .policies
            .iter()
            .filter_map(|p| match p {
                PolicySpec::Threshold(t) => Some(t.window_seconds),
                _ => None,
            })
            .max()
            .unwrap_or(60);
        Pool {
            name: name.into(),
            pods: spec.policies.iter().any(needs_pods),
            slo_window_s: spec
                .policies
                .iter()
                .filter_map(|p| match p {
                    PolicySpec::Slo(s) => Some(s.window_seconds()),
                    _ => None,
                })
                .max(),
            models: vec![None; spec.policies.len()],
            spec,
            min,
            max,
            period_us,
            load_window_s,
            mem: Memory::default(),
        }
    }

    /// Brings each predictive policy's cached model up to the completed
    /// history intervals, as the live engine does ([`observe::history_need`],
    /// [`observe::advance_models`]). The world holds its whole history, so a
    /// refit is given all of it (a fit reads its own window's end).
    fn update_models(&mut self, v: &View) {
        let h = v.history;
        let iv_us = v.history_interval_us;
        let end_ms = v.ms(h.len() as i64 * iv_us);
        let need =
            observe::history_need(&self.spec, &self.models, v.now_ms(), end_ms, iv_us / 1000);
        let from = match need {
            HistoryNeed::Nothing => return,
            HistoryNeed::Full { .. } => 0,
            HistoryNeed::Since { from_ms } => ((from_ms - v.t0_ms) * 1000 / iv_us) as usize,
        };
        let series = RateSeries {
            start_ms: v.ms(from as i64 * iv_us),
            interval_ms: iv_us / 1000,
            values: h[from.min(h.len())..].iter().map(|x| Some(*x)).collect(),
        };
        observe::advance_models(&self.spec, &mut self.models, &series);
    }
}

impl Controller for Pool {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn period_us(&self) -> i64 {
        self.period_us
    }
    fn decide(&mut self, v: &View) -> i64 {
        self.update_models(v);
        let bounds = PoolBounds {
            min: self.min,
            max: self.max,
            desired: v.desired.clamp(self.min, self.max),
        };
        let o = observe(
            v,
            bounds,
            &self.mem,
            self.load_window_s,
            self.pods,
            self.slo_window_s,
        );
        self.decide_recalled(o).0.target
    }
}

impl Pool {
    /// Decides on `o` (its controller memory already recalled) and
    /// remembers the decision as applied.
    ///
    /// The decision is the live tick's ([`decide_pool`]): the pool
    /// policies, then fail static and the flap budget from this
    /// controller's memory, with the controller's period as the tick.
    fn decide_recalled(&mut self, o: Observation) -> (Decision, CombinedDecision, Guarded) {
        let now_ms = o.now_ms;
        let state = PoolState {
            id: self.name.clone(),
            mode: Mode::Autonomous,
            safety_lock: false,
            policy: PolicySpec::Threshold(ThresholdPolicy::default()),
            combined: Some(self.spec.clone()),
            observation: o,
            pending_proposal: None,
            forecasts: std::mem::take(&mut self.models),
            memory: std::mem::take(&mut self.mem),
            tick_ms: self.period_us / 1000,
            metrics_error: None,
        };
        let (d, c, g) = decide_pool(&state);
        self.models = state.forecasts;
        self.mem = state.memory;
        self.mem.remember(&d, now_ms, true);
        let c = c.expect("a pool with combined policies gets their combination");
        (d, c, g)
    }

    /// Decides on an observation gathered elsewhere — a live run's,
    /// recorded without its controller memory — with this controller's
    /// memory (scale times, target tracking's state), exactly as
    /// [`Controller::decide`] does on the world's view: for replaying a
    /// live run tick by tick. The observation's bounds are used as they
    /// are. Returns the guarded decision, the policies' combination and
    /// what the guards did.
    pub fn decide_observation(
        &mut self,
        mut o: Observation,
    ) -> (Decision, CombinedDecision, Guarded) {
        self.mem.recall(&mut o);
        o.last_scaled_at_ms = self.mem.last_scaled_at_ms();
        self.decide_recalled(o)
    }
}

/// Tunables of the fleetscale default policy (planning utilizations).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetscaleTuning {
    /// Utilization the predictive floor plans for, percent.
    pub predictive_utilization_percent: f64,
    /// Coverage of the forecast interval.
    pub prediction_level: f64,
    /// The attainment goal of the latency SLO (the `slo` policy's knob).
    pub attainment_goal: f64,
    /// Whether the predictive policy sets a floor.
    pub predictive_floor: bool,
    /// The `slo` policy's rate window, seconds.
    pub rate_window_s: i64,
    /// The `slo` policy's scale-in stabilization, seconds.
    pub scale_in_stabilization_s: i64,
}

impl Default for FleetscaleTuning {
    fn default() -> Self {
        FleetscaleTuning {
            predictive_utilization_percent: 90.0,
            prediction_level: 0.8,
            attainment_goal: 0.99,
            predictive_floor: false,
            rate_window_s: 300,
            scale_in_stabilization_s: fleetscale_core::policies::slo::SloPolicy::new(1.0, 0.0)
                .scale_in_stabilization_seconds,
        }
    }
}

/// fleetscale's default pool policies for the simulator: predictive
/// pre-scaling (a floor from the forecast of the next `cold_start`) plus the
/// `slo` policy (Erlang-C staffing for the latency goal `slo_ms` at
/// `t.attainment_goal`, corrected by the attainment observed, with scale to
/// zero).
pub fn fleetscale_default(
    slots: u32,
    cold_start_s: f64,
    slo_ms: f64,
    t: FleetscaleTuning,
) -> PoolPolicies {
    // The live default (`fleetscale_core::decision::default`), for this
    // workload's slots, cold start and SLO.
    let mut spec = fleetscale_core::decision::default::fleetscale_default(
        f64::from(slots),
        cold_start_s,
        slo_ms,
        t.attainment_goal,
    );
    for p in &mut spec.policies {
        if let PolicySpec::Slo(s) = p {
            s.rate_window_seconds = t.rate_window_s;
            s.scale_in_stabilization_seconds = t.scale_in_stabilization_s;
        }
    }
    if t.predictive_floor {
        spec.policies.insert(
            0,
            PolicySpec::Predictive(PredictivePolicy {
                lookahead_seconds: 3600,
                confidence_threshold: 0.0,
                cold_start_seconds: cold_start_s.ceil() as i64 + 60,
                target_utilization_percent: t.predictive_utilization_percent,
                forecast_only: false,
                prediction_level: t.prediction_level,
                history_seconds: 28 * 86_400,
            }),
        );
    }
    spec
}

/// Knative's metric reporting period: the queue-proxies and the activator
/// report concurrency every second.
pub const KPA_SCRAPE_US: i64 = US;
/// Knative's autoscaler tick (`tickInterval`, 2 s).
pub const KPA_TICK_US: i64 = 2 * US;

/// The Knative KPA baseline ([`fleetscale_core::kpa`]): every second it
/// records the concurrency the revision's queue-proxies and the activator
/// report (requests in flight plus buffered, read live like KEDA's scaler
/// reads its queue: Knative's metric path is 1 s, not a 15 s scrape), and
/// every 2 s it runs the decider and the reconciler's scale-to-zero rules
/// with `config-autoscaler`'s defaults.
#[derive(Debug, Clone)]
pub struct Kpa {
    cfg: KpaConfig,
    state: Option<KpaState>,
    next_tick_us: i64,
}

impl Kpa {
    /// KPA for pods of `container_concurrency` slots at `target_utilization`
    /// of them (Knative's default 0.7), at most `max` pods.
    pub fn new(container_concurrency: f64, target_utilization: f64, max: i64) -> Kpa {
        Kpa {
            cfg: KpaConfig {
                container_concurrency,
                target_utilization,
                max_scale: max,
                ..KpaConfig::default()
            },
            state: None,
            next_tick_us: 0,
        }
    }
}

impl Controller for Kpa {
    fn name(&self) -> String {
        "kpa".into()
    }
    fn period_us(&self) -> i64 {
        KPA_SCRAPE_US
    }
    fn decide(&mut self, v: &View) -> i64 {
        let ready = v
            .instances
            .iter()
            .filter(|i| i.state == InstState::Ready)
            .count() as i64;
        let now_ms = v.now_ms();
        let s = self
            .state
            .get_or_insert_with(|| KpaState::new(now_ms, ready));
        s.record(&self.cfg, now_ms, v.live_queue + v.live_in_flight);
        if v.now_us < self.next_tick_us {
            return v.desired;
        }
        self.next_tick_us = v.now_us + KPA_TICK_US;
        s.tick(&self.cfg, now_ms, ready, v.desired)
            .scale
            .unwrap_or(v.desired)
    }
}

/// A baseline under the live engine's flap budget: its targets pass
/// [`fleetscale_core::fail_static::guard`] with fresh metrics and the
/// default budget (a further scale-in reversal beyond four an hour is
/// held), as fleetscale's own decisions do ([`Pool`]). For comparing the
/// policies under equal constraints (`SimConfig::guard_baselines`); the
/// baselines themselves have no such guard.
pub struct FlapBudgeted {
    inner: Box<dyn Controller>,
    mem: Memory,
}

impl FlapBudgeted {
    /// `inner` under the flap budget.
    pub fn new(inner: Box<dyn Controller>) -> FlapBudgeted {
        FlapBudgeted {
            inner,
            mem: Memory::default(),
        }
    }
}

impl Controller for FlapBudgeted {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn period_us(&self) -> i64 {
        self.inner.period_us()
    }
    fn decide(&mut self, v: &View) -> i64 {
        let want = self.inner.decide(v);
        let now_ms = v.now_ms();
        let bounds = PoolBounds {
            min: 0,
            max: want.max(v.desired),
            desired: v.desired,
        };
        let mut d = Decision::to_target(
            bounds,
            want,
            &self.inner.name(),
            String::new(),
            1.0,
            BTreeMap::new(),
        );
        guard(
            &mut d,
            &MetricsHealth::Fresh,
            &self.mem,
            now_ms,
            DEFAULT_MAX_REVERSALS,
        );
        self.mem.record(now_ms, d.current, d.target);
        d.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Wants 2 and 5 instances in turn: a reversal at every decision.
    struct Flipper(i64);

    impl Controller for Flipper {
        fn name(&self) -> String {
            "flipper".into()
        }
        fn period_us(&self) -> i64 {
            15 * US
        }
        fn decide(&mut self, _: &View) -> i64 {
            self.0 += 1;
            if self.0 % 2 == 0 {
                2
            } else {
                5
            }
        }
    }

    #[test]
    fn a_budgeted_baseline_reverses_at_most_four_times_an_hour_and_always_scales_out() {
        let samples = VecDeque::new();
        let mut c = FlapBudgeted::new(Box::new(Flipper(0)));
        let mut desired = 2;
        let mut reversals_by_hour = [0usize; 3];
        let mut last_dir = 0i64;
        for i in 0..720 {
            let v = View {
                now_us: i * 15 * US,
                t0_ms: 0,
                desired,
                slots: 4,
                instances: Vec::new(),
                samples: &samples,
                history: &[],
                history_interval_us: 300 * US,
                live_queue: 0.0,
                live_in_flight: 0.0,
            };
            let next = c.decide(&v);
            if desired == 2 {
                assert_eq!(next, 5, "decision {i}: a scale-out is never held");
            }
            let dir = (next - desired).signum();
            if dir != 0 {
                if last_dir != 0 && dir != last_dir {
                    reversals_by_hour[(i / 240) as usize] += 1;
                }
                last_dir = dir;
            }
            desired = next;
        }
        // Four reversals, and at most the one scale-out that follows once
        // every further scale-in is held.
        for (h, n) in reversals_by_hour.iter().enumerate() {
            assert!((4..=5).contains(n), "hour {h}: {n} reversals");
        }
    }
}
