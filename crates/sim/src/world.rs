//! The simulated world of one policy run: a FIFO queue in front of a fleet
//! of instances with `slots` concurrent slots each, instances that take
//! `cold_start` to become ready, draining on scale-in, a metrics pipeline
//! that scrapes every `scrape` and publishes `metrics_delay` later, and the
//! controller's decisions at its own period. Time is integer microseconds
//! from the trace's origin; every run is a pure function of its inputs.
//!
//! Bounds: the queue holds at most `max_queue` requests (later arrivals are
//! dropped and counted); the visible metrics ring keeps the last
//! [`SAMPLE_RING`] samples; the run stops `DRAIN_LIMIT_US` after the horizon
//! (requests still waiting then count as dropped).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::report::{Hist, PolicyResult, TimelinePoint};
use crate::workload::US;

use crate::view::Controller;
/// Kept at their old paths (`fleetscale_sim::world::View`, ...); they live in
/// [`crate::view`].
pub use crate::view::{InstState, Instance, Sample, View};

/// Visible metric samples kept (an hour and a minute at a 15 s scrape: the
/// longest idle period of the `slo` policy, and its feedback window).
pub const SAMPLE_RING: usize = 245;
/// Longest time simulated after the horizon to finish queued work.
pub const DRAIN_LIMIT_US: i64 = 6 * 3600 * US;

/// Fixed parameters of a world.
#[derive(Debug, Clone, Copy)]
pub struct WorldParams {
    /// Origin, Unix ms.
    pub t0_ms: i64,
    /// Slots per instance.
    pub slots: u32,
    /// Provisioning delay, µs.
    pub cold_start_us: i64,
    /// Scrape interval (and window), µs.
    pub scrape_us: i64,
    /// Publication delay of a scrape, µs.
    pub metrics_delay_us: i64,
    /// History interval for forecasting, µs.
    pub history_us: i64,
    /// Horizon (billing stops here), µs.
    pub horizon_us: i64,
    /// Requests meeting their SLO have latency at most this, µs.
    pub slo_us: i64,
    /// Queue bound.
    pub max_queue: usize,
    /// Timeline bucket, µs.
    pub bucket_us: i64,
    /// Instances ready at the start.
    pub initial: i64,
}

/// The simulation state of one policy run.
pub struct World {
    p: WorldParams,
    now: i64,
    insts: Vec<Instance>,
    active: Vec<u32>,
    free: Vec<u32>,
    queue: VecDeque<(i64, i64)>,
    completions: BinaryHeap<Reverse<(i64, u32, bool, i64)>>,
    readies: VecDeque<(i64, u32)>,
    desired: i64,
    busy_total: u32,
    alive: u32,
    ready_n: u32,
    inst_us: f64,
    busy_us: f64,
    work_us: f64,
    w_busy: f64,
    w_queue: f64,
    w_ready: f64,
    w_arrivals: u64,
    w_started: u64,
    w_completed: u64,
    w_missed: u64,
    w_service_us: f64,
    h_work: f64,
    history: Vec<f64>,
    pending: VecDeque<Sample>,
    visible: VecDeque<Sample>,
    hist: Hist,
    met: u64,
    total: u64,
    dropped: u64,
    actions: u64,
    timeline: Vec<TimelinePoint>,
    tb_ready: f64,
    tb_lat: f64,
    tb_n: u64,
    tb_missed: u64,
}

impl World {
    /// A world with `p.initial` ready instances at time 0.
    pub fn new(p: WorldParams) -> World {
        let mut w = World {
            p,
            now: 0,
            insts: Vec::new(),
            active: Vec::new(),
            free: Vec::new(),
            queue: VecDeque::new(),
            completions: BinaryHeap::new(),
            readies: VecDeque::new(),
            desired: 0,
            busy_total: 0,
            alive: 0,
            ready_n: 0,
            inst_us: 0.0,
            busy_us: 0.0,
            work_us: 0.0,
            w_busy: 0.0,
            w_queue: 0.0,
            w_ready: 0.0,
            w_arrivals: 0,
            w_started: 0,
            w_completed: 0,
            w_missed: 0,
            w_service_us: 0.0,
            h_work: 0.0,
            history: Vec::new(),
            pending: VecDeque::new(),
            visible: VecDeque::new(),
            hist: Hist::default(),
            met: 0,
            total: 0,
            dropped: 0,
            actions: 0,
            timeline: Vec::new(),
            tb_ready: 0.0,
            tb_lat: 0.0,
            tb_n: 0,
            tb_missed: 0,
        };
        for _ in 0..p.initial.max(0) {
            let id = w.launch(-p.cold_start_us);
            w.make_ready(id);
        }
        w.readies.clear();
        w.desired = p.initial.max(0);
        w
    }

    fn launch(&mut self, at: i64) -> u32 {
        let id = self.insts.len() as u32;
        self.insts.push(Instance {
            id,
            launched_us: at,
            ready_us: at + self.p.cold_start_us,
            state: InstState::Provisioning,
            busy: 0,
            busy_int: 0.0,
            last_us: at.max(0),
        });
        self.active.push(id);
        self.readies.push_back((at + self.p.cold_start_us, id));
        self.alive += 1;
        id
    }

    fn make_ready(&mut self, id: u32) {
        let inst = &mut self.insts[id as usize];
        if inst.state != InstState::Provisioning {
            return;
        }
        inst.state = InstState::Ready;
        inst.last_us = self.now;
        inst.busy_int = 0.0;
        self.ready_n += 1;
        for _ in 0..self.p.slots {
            self.free.push(id);
        }
    }

    fn set_busy(&mut self, id: u32, delta: i32) {
        let now = self.now;
        let inst = &mut self.insts[id as usize];
        inst.busy_int += f64::from(inst.busy) * (now - inst.last_us) as f64;
        inst.last_us = now;
        inst.busy = (inst.busy as i32 + delta) as u32;
        self.busy_total = (self.busy_total as i32 + delta) as u32;
    }

    /// Advances the clock to `t`, integrating every time-weighted figure.
    fn advance(&mut self, t: i64) {
        if t <= self.now {
            return;
        }
        // Timeline buckets and history intervals are closed at their ends.
        loop {
            let b_end = (self.now / self.p.bucket_us + 1) * self.p.bucket_us;
            let h_end = (self.now / self.p.history_us + 1) * self.p.history_us;
            let step_end = t.min(b_end).min(h_end);
            let dt = (step_end - self.now) as f64;
            let billed = step_end.min(self.p.horizon_us) - self.now.min(self.p.horizon_us);
            self.inst_us += f64::from(self.alive) * billed.max(0) as f64;
            self.busy_us += f64::from(self.busy_total) * billed.max(0) as f64;
            self.w_busy += f64::from(self.busy_total) * dt;
            self.w_queue += self.queue.len() as f64 * dt;
            self.w_ready += f64::from(self.ready_n) * dt;
            self.tb_ready += f64::from(self.ready_n) * dt;
            self.now = step_end;
            if step_end == b_end && step_end <= self.p.horizon_us {
                self.timeline.push(TimelinePoint {
                    t_s: (b_end - self.p.bucket_us) as f64 / US as f64,
                    capacity: self.tb_ready / self.p.bucket_us as f64,
                    mean_latency_ms: if self.tb_n > 0 {
                        self.tb_lat / self.tb_n as f64 / 1000.0
                    } else {
                        f64::NAN
                    },
                    missed: self.tb_missed,
                });
                self.tb_missed = 0;
                self.tb_ready = 0.0;
                self.tb_lat = 0.0;
                self.tb_n = 0;
            }
            if step_end == h_end {
                self.history.push(self.h_work / self.p.history_us as f64);
                self.h_work = 0.0;
            }
            if step_end >= t {
                break;
            }
        }
    }

    fn start_waiting(&mut self) {
        while !self.queue.is_empty() {
            let Some(id) = self.free.pop() else { return };
            let inst = &self.insts[id as usize];
            if inst.state != InstState::Ready || inst.busy >= self.p.slots {
                continue; // stale slot of a draining or gone instance
            }
            let (arrived, service) = self.queue.pop_front().expect("non-empty");
            self.set_busy(id, 1);
            let latency = self.now - arrived + service;
            self.completions.push(Reverse((
                self.now + service,
                id,
                latency <= self.p.slo_us,
                service,
            )));
            self.hist.add(latency);
            self.total += 1;
            self.w_started += 1;
            if latency <= self.p.slo_us {
                self.met += 1;
            } else {
                self.tb_missed += 1;
            }
            self.tb_lat += latency as f64;
            self.tb_n += 1;
        }
    }

    fn arrive(&mut self, service: i64) {
        self.w_arrivals += 1;
        self.h_work += service as f64;
        if self.now < self.p.horizon_us {
            self.work_us += service as f64;
        }
        if self.queue.len() >= self.p.max_queue {
            self.dropped += 1;
            return;
        }
        self.queue.push_back((self.now, service));
        self.start_waiting();
    }

    fn complete(&mut self, id: u32, met: bool, service: i64) {
        self.w_completed += 1;
        self.w_service_us += service as f64;
        if !met {
            self.w_missed += 1;
        }
        self.set_busy(id, -1);
        let inst = &mut self.insts[id as usize];
        match inst.state {
            InstState::Ready => {
                self.free.push(id);
                self.start_waiting();
            }
            InstState::Draining if inst.busy == 0 => self.terminate(id),
            _ => {}
        }
    }

    fn terminate(&mut self, id: u32) {
        let inst = &mut self.insts[id as usize];
        if inst.state == InstState::Ready {
            self.ready_n -= 1;
        }
        inst.state = InstState::Gone;
        self.alive -= 1;
        self.active.retain(|&a| a != id);
    }

    fn scrape(&mut self) {
        let win = self.p.scrape_us;
        let now = self.now;
        let mut per = Vec::with_capacity(self.active.len());
        for &id in &self.active {
            let inst = &mut self.insts[id as usize];
            inst.busy_int += f64::from(inst.busy) * (now - inst.last_us) as f64;
            inst.last_us = now;
            if inst.state == InstState::Ready {
                let span = (now - inst.ready_us.max(now - win)).max(1) as f64;
                per.push((
                    id,
                    (inst.busy_int / (span * f64::from(self.p.slots))).clamp(0.0, 1.0),
                ));
            }
            inst.busy_int = 0.0;
        }
        let s = Sample {
            ts_us: now,
            visible_us: now + self.p.metrics_delay_us,
            window_us: win,
            busy_mean: self.w_busy / win as f64,
            queue_mean: self.w_queue / win as f64,
            queue_now: self.queue.len() as f64,
            busy_now: f64::from(self.busy_total),
            arrivals: self.w_arrivals,
            started: self.w_started,
            completed: self.w_completed,
            missed: self.w_missed,
            service_us: self.w_service_us,
            ready_mean: self.w_ready / win as f64,
            per_instance: per,
        };
        self.w_busy = 0.0;
        self.w_queue = 0.0;
        self.w_ready = 0.0;
        self.w_arrivals = 0;
        self.w_started = 0;
        self.w_completed = 0;
        self.w_missed = 0;
        self.w_service_us = 0.0;
        self.pending.push_back(s);
    }

    fn publish(&mut self) {
        while self
            .pending
            .front()
            .is_some_and(|s| s.visible_us <= self.now)
        {
            let s = self.pending.pop_front().expect("non-empty");
            if self.visible.len() == SAMPLE_RING {
                self.visible.pop_front();
            }
            self.visible.push_back(s);
        }
    }

    /// Applies a controller's desired capacity: launches instances, or
    /// cancels provisioning ones (newest first) and then drains the least
    /// busy ready ones. Idempotent for an unchanged target.
    pub fn set_desired(&mut self, target: i64) {
        let target = target.max(0);
        if target == self.desired {
            return;
        }
        self.actions += 1;
        if target > self.desired {
            for _ in self.desired..target {
                let id = self.launch(self.now);
                let _ = id;
            }
        } else {
            let mut k = self.desired - target;
            while k > 0 {
                let prov = self
                    .active
                    .iter()
                    .rev()
                    .copied()
                    .find(|&id| self.insts[id as usize].state == InstState::Provisioning);
                let id = match prov {
                    Some(id) => id,
                    None => {
                        let Some(id) = self
                            .active
                            .iter()
                            .copied()
                            .filter(|&id| self.insts[id as usize].state == InstState::Ready)
                            .min_by_key(|&id| (self.insts[id as usize].busy, Reverse(id)))
                        else {
                            break;
                        };
                        id
                    }
                };
                let inst = &mut self.insts[id as usize];
                if inst.state == InstState::Ready && inst.busy > 0 {
                    inst.state = InstState::Draining;
                    self.ready_n -= 1;
                } else {
                    self.terminate(id);
                }
                k -= 1;
            }
        }
        self.desired = target;
    }

    fn view(&self) -> View<'_> {
        View {
            now_us: self.now,
            t0_ms: self.p.t0_ms,
            desired: self.desired,
            slots: self.p.slots,
            instances: self
                .active
                .iter()
                .map(|&id| &self.insts[id as usize])
                .collect(),
            samples: &self.visible,
            history: &self.history,
            history_interval_us: self.p.history_us,
            live_queue: self.queue.len() as f64,
            live_in_flight: f64::from(self.busy_total),
        }
    }

    /// Runs `arrivals` (in time order) against `ctl` and returns the result.
    /// `progress` is called now and then with the fraction of the horizon done.
    pub fn run(
        mut self,
        arrivals: impl Iterator<Item = (i64, i64)>,
        ctl: &mut dyn Controller,
        progress: &mut dyn FnMut(f64),
    ) -> PolicyResult {
        let mut arrivals = arrivals.peekable();
        let period = ctl.period_us().max(1);
        let mut next_tick = period;
        let mut next_scrape = self.p.scrape_us;
        let end = self.p.horizon_us;
        let mut events: u64 = 0;
        loop {
            let t_arr = arrivals.peek().map_or(i64::MAX, |a| a.0);
            let t_comp = self.completions.peek().map_or(i64::MAX, |c| (c.0).0);
            let t_ready = self.readies.front().map_or(i64::MAX, |r| r.0);
            let t_pub = self.pending.front().map_or(i64::MAX, |s| s.visible_us);
            let t_next = t_arr
                .min(t_comp)
                .min(t_ready)
                .min(next_scrape)
                .min(next_tick)
                .min(t_pub);
            let idle = t_arr == i64::MAX && self.queue.is_empty() && t_comp == i64::MAX;
            if (t_next >= end && idle) || t_next >= end + DRAIN_LIMIT_US {
                self.advance(end.max(self.now));
                break;
            }
            self.advance(t_next);
            events += 1;
            if events.is_multiple_of(65_536) {
                progress((self.now as f64 / end.max(1) as f64).min(1.0));
            }
            // Tie order: completions, readiness, arrivals, scrape, publish, tick.
            if t_comp == t_next {
                let Reverse((_, id, met, service)) = self.completions.pop().expect("peeked");
                self.complete(id, met, service);
            } else if t_ready == t_next {
                let (_, id) = self.readies.pop_front().expect("peeked");
                self.make_ready(id);
                self.start_waiting();
            } else if t_arr == t_next {
                let (_, s) = arrivals.next().expect("peeked");
                self.arrive(s);
            } else if next_scrape == t_next {
                self.scrape();
                next_scrape += self.p.scrape_us;
            } else if t_pub == t_next {
                self.publish();
            } else {
                let target = {
                    let v = self.view();
                    ctl.decide(&v)
                };
                self.set_desired(target);
                next_tick += period;
            }
        }
        self.dropped += self.queue.len() as u64;
        let total = self.total + self.dropped;
        let lower = self.work_us / f64::from(self.p.slots) / US as f64;
        let inst_s = self.inst_us / US as f64;
        PolicyResult {
            policy: ctl.name(),
            requests: total,
            slo_attainment: if total > 0 {
                self.met as f64 / total as f64
            } else {
                1.0
            },
            p50_latency_ms: self.hist.quantile(0.5) / 1000.0,
            p95_latency_ms: self.hist.quantile(0.95) / 1000.0,
            p99_latency_ms: self.hist.quantile(0.99) / 1000.0,
            instance_seconds: inst_s,
            lower_bound_instance_seconds: lower,
            overprovision_instance_seconds: inst_s - lower,
            mean_utilization: if self.inst_us > 0.0 {
                self.busy_us / (self.inst_us * f64::from(self.p.slots))
            } else {
                0.0
            },
            scaling_actions: self.actions,
            dropped: self.dropped,
            timeline: self.timeline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Holds the capacity at `n` (what `controllers::Static` does; local so
    /// that the world does not depend on the controllers).
    struct Fixed {
        n: i64,
        period_us: i64,
    }
    impl Controller for Fixed {
        fn name(&self) -> String {
            "fixed".into()
        }
        fn period_us(&self) -> i64 {
            self.period_us
        }
        fn decide(&mut self, _: &View) -> i64 {
            self.n
        }
    }

    fn params(initial: i64, slots: u32, cold_s: i64) -> WorldParams {
        WorldParams {
            t0_ms: 0,
            slots,
            cold_start_us: cold_s * US,
            scrape_us: 15 * US,
            metrics_delay_us: 5 * US,
            history_us: 300 * US,
            horizon_us: 600 * US,
            slo_us: 15 * US,
            max_queue: 1000,
            bucket_us: 60 * US,
            initial,
        }
    }

    fn run(p: WorldParams, n: i64, arrivals: &[(i64, i64)]) -> PolicyResult {
        let mut c = Fixed {
            n,
            period_us: 15 * US,
        };
        World::new(p).run(arrivals.iter().copied(), &mut c, &mut |_| {})
    }

    #[test]
    fn des_mechanics_table() {
        // (initial, slots, cold s, static n, arrivals (s, service s), met, p99 ≈ s, instance-s)
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, i64, u32, i64, i64, &[(i64, i64)], u64, f64, f64)] = &[
            (
                "one slot queues FIFO",
                1,
                1,
                0,
                1,
                &[(0, 10), (0, 10)],
                1,
                20.0,
                600.0,
            ),
            (
                "two slots serve in parallel",
                1,
                2,
                0,
                1,
                &[(0, 10), (0, 10)],
                2,
                10.0,
                600.0,
            ),
            // No instance at first: the first tick (15 s) launches one, ready 30 s later.
            (
                "provisioning delay",
                0,
                1,
                30,
                1,
                &[(0, 5)],
                0,
                50.0,
                600.0 - 15.0,
            ),
            // Scale-in to 0 at the first tick while busy: drains until 100 s.
            (
                "draining on scale-in",
                1,
                1,
                0,
                0,
                &[(0, 100)],
                0,
                100.0,
                100.0,
            ),
        ];
        for (name, init, slots, cold, n, arr, met, p99, inst_s) in cases {
            let a: Vec<(i64, i64)> = arr.iter().map(|(t, s)| (t * US, s * US)).collect();
            let r = run(params(*init, *slots, *cold), *n, &a);
            let met_got = (r.slo_attainment * r.requests as f64).round() as u64;
            assert_eq!(met_got, *met, "{name}: met");
            assert!(
                (r.p99_latency_ms / 1000.0 / p99 - 1.0).abs() < 0.01,
                "{name}: p99 {}",
                r.p99_latency_ms
            );
            assert!(
                (r.instance_seconds - inst_s).abs() < 1e-6,
                "{name}: instance-s {}",
                r.instance_seconds
            );
            assert_eq!(r.dropped, 0, "{name}");
        }
    }

    #[test]
    fn draining_instance_takes_no_new_requests() {
        // Two instances, one busy; scale to 1 drains the idle one at once,
        // so the second request waits for the busy one.
        let p = params(2, 1, 0);
        let r = run(p, 1, &[(0, 30 * US), (20 * US, 5 * US)]);
        assert!(
            (r.p50_latency_ms / 1000.0 - 15.0).abs() < 0.2,
            "{}",
            r.p50_latency_ms
        );
    }

    /// Records the newest sample a controller sees at each decision.
    struct Spy(Vec<(i64, Option<i64>)>);
    impl Controller for Spy {
        fn name(&self) -> String {
            "spy".into()
        }
        fn period_us(&self) -> i64 {
            15 * US
        }
        fn decide(&mut self, v: &View) -> i64 {
            self.0.push((v.now_us, v.samples.back().map(|s| s.ts_us)));
            v.desired
        }
    }

    #[test]
    fn metrics_are_stale_by_a_scrape_plus_the_delay() {
        let mut spy = Spy(Vec::new());
        let _ = World::new(params(1, 1, 0)).run([(0, 500 * US)].into_iter(), &mut spy, &mut |_| {});
        // At 15 s the 15 s scrape is not published yet (5 s delay).
        assert_eq!(spy.0[0], (15 * US, None));
        assert_eq!(spy.0[1], (30 * US, Some(15 * US)));
        assert!(spy
            .0
            .iter()
            .all(|(now, s)| s.is_none_or(|s| now - s >= 15 * US)));
    }
}
