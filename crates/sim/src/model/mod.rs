//! The scaling model: a virtual clock that replays load through SageMaker's queue metrics,
//! CloudWatch's alarm rules and Application Auto Scaling's policies, against the configuration
//! held in the simulated [`Account`]. Every rule cites docs/aws-behaviour.md; every guess is in
//! [`assumptions`].

pub mod alarm;
pub mod assumptions;
pub mod load;
pub mod policy;
pub mod report;
pub mod setup;

use std::collections::{BTreeMap, VecDeque};

use alarm::{AlarmState, evaluate};
use assumptions::Assumptions;
use load::LoadProfile;
use setup::{Action, Metric, Setup, Statistic};

use crate::account::{Account, Activity};

/// Queue entries from which arrivals of one minute share an entry.
const LONG_QUEUE: usize = 64;

/// Failed scaling activities each endpoint keeps the message of (all are counted).
pub const FAILED_ACTIVITIES_KEPT: usize = 20;

/// One endpoint variant whose queue and instances the model simulates.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub endpoint: String,
    pub variant: String,
    pub instance_type: String,
    /// Requests one instance finishes a minute.
    pub throughput_per_minute: f64,
    /// Instances in service at the start.
    pub initial_instances: u32,
    pub load: Option<LoadProfile>,
    /// Its endpoint configuration has an `AsyncInferenceConfig`; without it SageMaker never
    /// publishes the backlog metrics, so nothing would ever scale it.
    pub asynchronous: bool,
}

impl EndpointSpec {
    /// An asynchronous endpoint with no instances and no load (a test fixture, or `sim serve
    /// --endpoint`).
    pub fn idle(endpoint: &str, variant: &str, instance_type: &str) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            variant: variant.to_string(),
            instance_type: instance_type.to_string(),
            throughput_per_minute: 6.0,
            initial_instances: 0,
            load: None,
            asynchronous: true,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Accumulator {
    sum: f64,
    count: u32,
    min: f64,
    max: f64,
}

impl Accumulator {
    fn add(&mut self, v: f64) {
        if self.count == 0 {
            self.min = v;
            self.max = v;
        }
        self.sum += v;
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn take(&mut self, statistic: Statistic) -> Option<f64> {
        let value = (self.count > 0).then(|| match statistic {
            Statistic::Average => self.sum / f64::from(self.count),
            Statistic::Sum => self.sum,
            Statistic::Minimum => self.min,
            Statistic::Maximum => self.max,
            Statistic::SampleCount => f64::from(self.count),
        });
        *self = Accumulator::default();
        value
    }
}

#[derive(Debug, Clone)]
struct AlarmRuntime {
    accumulator: Accumulator,
    /// Datapoints, oldest first, as many as the evaluation range needs.
    points: VecDeque<Option<f64>>,
    state: AlarmState,
    period_s: f64,
}

#[derive(Debug, Clone, Copy, Default)]
struct PolicyRuntime {
    /// (when, capacity before, capacity after) of the last scale-out this policy made.
    last_scale_out: Option<(f64, u32, u32)>,
    last_scale_in: Option<f64>,
}

/// What happened to one endpoint, for the summary.
#[derive(Debug, Clone, Default)]
pub struct EndpointStats {
    pub first_arrival_s: Option<f64>,
    pub first_instance_requested_s: Option<f64>,
    pub first_instance_in_service_s: Option<f64>,
    pub drained_at_s: Option<f64>,
    pub peak_in_service: u32,
    pub peak_desired: u32,
    pub instance_seconds: f64,
    pub arrived: f64,
    pub processed: f64,
    /// (time, AWS status message) of the first [`FAILED_ACTIVITIES_KEPT`] Failed scaling
    /// activities: an endpoint stuck on a quota fails every minute, 1,440 times a day.
    pub failed_activities: Vec<(f64, String)>,
    /// Failed scaling activities in all.
    pub failed_activity_count: u64,
    /// (time, capacity) of each successful scale-in to zero.
    pub scaled_to_zero_s: Vec<f64>,
}

/// One minute of one endpoint, for the timeline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MinuteRecord {
    pub minute: u64,
    pub arrivals: f64,
    pub backlog: f64,
    pub backlog_per_instance: f64,
    pub desired: u32,
    pub in_service: u32,
    /// Alarm name → state, for the alarms on this endpoint.
    pub alarms: BTreeMap<String, &'static str>,
    /// Scaling activities that started or ended in this minute.
    pub activities: Vec<String>,
}

pub struct EndpointSim {
    pub spec: EndpointSpec,
    pub resource_id: String,
    /// FIFO of (arrival time, requests).
    queue: VecDeque<(f64, f64)>,
    pub backlog: f64,
    /// DesiredInstanceCount as Application Auto Scaling set it.
    pub desired: u32,
    pub in_service: u32,
    /// When each starting instance comes into service.
    starting: Vec<f64>,
    pub(crate) setup: Setup,
    alarms: BTreeMap<String, AlarmRuntime>,
    policies: BTreeMap<String, PolicyRuntime>,
    /// The scale-out activity still in progress: its index in the account, and the count it sets.
    open_activity: Option<(usize, u32)>,
    /// The scalable target's bounds when last seen, to act when they change (§2.13).
    bounds: Option<(u32, u32)>,
    /// The reason of the last not-scaled activity recorded, until the next scaling activity.
    last_not_scaled: Option<String>,
    minute_arrivals: f64,
    minute_activities: Vec<String>,
    pub stats: EndpointStats,
    pub timeline: Vec<MinuteRecord>,
    /// When the endpoint last changed (simulation seconds): a new desired count, or the last
    /// starting instance in service (SageMaker's `LastModifiedTime`).
    pub last_modified_s: f64,
}

impl EndpointSim {
    fn new(spec: EndpointSpec) -> Self {
        let resource_id = format!("endpoint/{}/variant/{}", spec.endpoint, spec.variant);
        let n = spec.initial_instances;
        Self {
            spec,
            resource_id,
            queue: VecDeque::new(),
            backlog: 0.0,
            desired: n,
            in_service: n,
            starting: Vec::new(),
            setup: Setup::default(),
            alarms: BTreeMap::new(),
            policies: BTreeMap::new(),
            open_activity: None,
            bounds: None,
            last_not_scaled: None,
            minute_arrivals: 0.0,
            minute_activities: Vec::new(),
            stats: EndpointStats::default(),
            timeline: Vec::new(),
            last_modified_s: 0.0,
        }
    }

    /// The endpoint as `GET /_sim/endpoints` shows it.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "endpoint": self.spec.endpoint,
            "resourceId": self.resource_id,
            "backlog": self.backlog,
            "desired": self.desired,
            "inService": self.in_service,
            "starting": self.starting.len(),
            "alarms": self.alarms.iter().map(|(n, r)| (n.clone(), r.state.as_str())).collect::<BTreeMap<_, _>>(),
            "failedActivities": self.stats.failed_activity_count,
            "arrived": self.stats.arrived,
            "processed": self.stats.processed,
        })
    }

    pub fn enqueue(&mut self, at: f64, count: f64) {
        if count <= 0.0 {
            return;
        }
        // A queue hours long (an endpoint that cannot scale) is kept a minute an entry, not a
        // tick: 1,000 such endpoints over a day held 260 MB of ten-second entries. Only the
        // newest entry grows, so the age of the oldest request stays exact.
        let long = self.queue.len() >= LONG_QUEUE;
        match self.queue.back_mut() {
            Some(newest) if long && at - newest.0 < 60.0 => newest.1 += count,
            _ => self.queue.push_back((at, count)),
        }
        self.backlog += count;
        self.minute_arrivals += count;
        self.stats.arrived += count;
        self.stats.first_arrival_s.get_or_insert(at);
        self.stats.drained_at_s = None;
    }

    fn metric(&self, metric: Metric, now: f64, a: &Assumptions) -> f64 {
        match metric {
            Metric::BacklogSize => self.backlog,
            Metric::BacklogPerInstance => {
                // §1.3 ASSUMPTION: divided by max(instances, 1).
                let divisor = if a.backlog_per_instance_divides_by_at_least_one {
                    self.in_service.max(1)
                } else {
                    self.in_service
                };
                if divisor == 0 {
                    self.backlog
                } else {
                    self.backlog / f64::from(divisor)
                }
            }
            // §1.1: 1 when requests are queued and no instance serves, else 0.
            Metric::HasBacklogWithoutCapacity => {
                f64::from(u8::from(self.backlog > 0.0 && self.in_service == 0))
            }
            Metric::AgeOfOldestRequest => self.queue.front().map_or(0.0, |(t, _)| now - t),
        }
    }

    fn refresh(&mut self, account: &Account, alarms: &[&str], a: &Assumptions) {
        self.setup = setup::extract(account, &self.resource_id, alarms);
        let keep: Vec<String> = self.setup.alarms.iter().map(|s| s.name.clone()).collect();
        self.alarms.retain(|name, _| keep.contains(name));
        for alarm in &self.setup.alarms {
            let capacity = alarm.rule.evaluation_periods + a.evaluation_range_extra;
            let runtime = self
                .alarms
                .entry(alarm.name.clone())
                .or_insert_with(|| AlarmRuntime {
                    accumulator: Accumulator::default(),
                    points: VecDeque::new(),
                    // §4.8: a new alarm starts in INSUFFICIENT_DATA.
                    state: AlarmState::InsufficientData,
                    period_s: alarm.period_s,
                });
            if runtime.period_s != alarm.period_s {
                runtime.points.clear();
                runtime.period_s = alarm.period_s;
            }
            while runtime.points.len() > capacity {
                runtime.points.pop_front();
            }
        }
    }
}

/// The simulated world: endpoints on a virtual clock against one account.
pub struct World {
    pub assumptions: Assumptions,
    /// Seconds since the simulation started.
    pub now: f64,
    /// Wall-clock epoch seconds at `now == 0`, for activity and alarm timestamps.
    pub epoch: f64,
    pub endpoints: Vec<EndpointSim>,
    /// Instances of each type that other endpoints of the account use (they count against quotas).
    pub other_usage: BTreeMap<String, u32>,
    /// Keep a per-minute timeline of every endpoint.
    pub record_timeline: bool,
    /// The region of the account whose configuration drives the endpoints.
    pub region: String,
    seen_config_version: u64,
}

impl World {
    pub fn new(assumptions: Assumptions, epoch: f64) -> Self {
        Self {
            assumptions,
            now: 0.0,
            epoch,
            endpoints: Vec::new(),
            other_usage: BTreeMap::new(),
            record_timeline: false,
            region: crate::account::DEFAULT_REGION.to_string(),
            seen_config_version: u64::MAX,
        }
    }

    pub fn add_endpoint(&mut self, spec: EndpointSpec) -> usize {
        self.endpoints.push(EndpointSim::new(spec));
        self.seen_config_version = u64::MAX;
        self.endpoints.len() - 1
    }

    /// MaxCapacity of each endpoint's scalable target as the model last read it, by resource id.
    pub fn max_capacities(&self) -> BTreeMap<&str, u32> {
        self.endpoints
            .iter()
            .filter_map(|e| Some((e.resource_id.as_str(), e.setup.target?.max)))
            .collect()
    }

    /// Removes an endpoint (DeleteEndpoint); its resource id, if it had one, for the caller to
    /// deregister (AWS deregisters a deleted endpoint's scalable targets).
    pub fn remove_endpoint(&mut self, name: &str) -> Option<String> {
        let index = self
            .endpoints
            .iter()
            .position(|e| e.spec.endpoint == name)?;
        let removed = self.endpoints.remove(index);
        self.seen_config_version = u64::MAX;
        Some(removed.resource_id)
    }

    pub fn endpoint_mut(&mut self, name: &str) -> Option<&mut EndpointSim> {
        self.endpoints.iter_mut().find(|e| e.spec.endpoint == name)
    }

    /// Advances the clock by `seconds`, in ticks.
    pub fn advance(&mut self, account: &mut Account, seconds: f64) {
        account.select_region(&self.region);
        let end = self.now + seconds;
        while self.now + 1e-9 < end {
            let dt = self.assumptions.tick_s.min(end - self.now);
            self.tick(account, dt);
        }
    }

    /// Takes in the configuration clients wrote since the last look, without moving the clock:
    /// the local endpoint calls it after each RegisterScalableTarget, so that capacity follows
    /// new bounds when the call returns, as in AWS (§2.13).
    pub fn follow_configuration(&mut self, account: &mut Account) {
        account.select_region(&self.region);
        if account.config_version != self.seen_config_version {
            // Only the endpoints whose configuration changed since the last look (all of them
            // the first time): a fleet's setup writes one endpoint at a time.
            let seen = self.seen_config_version;
            let stale: Vec<usize> = (0..self.endpoints.len())
                .filter(|&i| {
                    seen == u64::MAX
                        || account.changed_since(&self.endpoints[i].spec.endpoint, seen)
                })
                .collect();
            if !stale.is_empty() {
                let alarms = setup::alarms_by_endpoint(account);
                for i in stale {
                    let e = &mut self.endpoints[i];
                    let on_endpoint = alarms.get(e.spec.endpoint.as_str());
                    e.refresh(
                        account,
                        on_endpoint.map_or(&[], Vec::as_slice),
                        &self.assumptions,
                    );
                }
            }
            self.seen_config_version = account.config_version;
            self.follow_bounds(account);
        }
    }

    fn tick(&mut self, account: &mut Account, dt: f64) {
        account.virtual_now = Some(self.epoch + self.now);
        let runs = account.run_scheduled_actions(self.epoch + self.now, self.epoch + self.now + dt);
        for run in runs {
            let Some(e) = self
                .endpoints
                .iter_mut()
                .find(|e| e.resource_id == run.resource_id)
            else {
                continue;
            };
            match run.failure {
                None => e
                    .minute_activities
                    .push(format!("Successful: {}", run.what)),
                Some(message) => {
                    e.minute_activities
                        .push(format!("Failed: {}: {message}", run.what));
                    e.stats.failed_activity_count += 1;
                    if e.stats.failed_activities.len() < FAILED_ACTIVITIES_KEPT {
                        e.stats
                            .failed_activities
                            .push((run.at - self.epoch, message));
                    }
                }
            }
        }
        self.follow_configuration(account);
        let (t0, t1) = (self.now, self.now + dt);
        let a = &self.assumptions;
        for e in &mut self.endpoints {
            if let Some(load) = &e.spec.load {
                let arrivals = load.arrivals(t0, t1);
                e.enqueue(t0, arrivals);
            }
            // Instances whose provisioning finished serve from now on.
            let before = e.starting.len();
            e.starting.retain(|ready| *ready > t0);
            let ready = (before - e.starting.len()) as u32;
            if ready > 0 {
                e.in_service += ready;
                e.last_modified_s = t0;
                e.stats.first_instance_in_service_s.get_or_insert(t0);
                if e.starting.is_empty()
                    && let Some((id, count)) = e.open_activity.take()
                {
                    let message = format!(
                        "Successfully set desired instance count to {count}. Change successfully fulfilled by sagemaker."
                    );
                    account.finish_activity(id, "Successful", message, self.epoch + t0);
                    e.minute_activities
                        .push(format!("Successful: desired {count} in service"));
                }
            }
            // Process the queue in arrival order.
            let mut capacity = f64::from(e.in_service) * e.spec.throughput_per_minute * dt / 60.0;
            while capacity > 1e-9 {
                let Some(front) = e.queue.front_mut() else {
                    break;
                };
                let done = front.1.min(capacity);
                front.1 -= done;
                capacity -= done;
                e.backlog -= done;
                e.stats.processed += done;
                if front.1 <= 1e-9 {
                    e.queue.pop_front();
                }
            }
            if e.queue.is_empty() && e.backlog != 0.0 {
                e.backlog = 0.0;
            }
            if e.backlog <= 1e-9 && e.stats.arrived > 0.0 && e.stats.drained_at_s.is_none() {
                e.stats.drained_at_s = Some(t1);
            }
            // Metrics sampled into each alarm's current period (§1.2: per-minute publication).
            for alarm in &e.setup.alarms {
                let value = e.metric(alarm.metric, t1, a);
                if let Some(runtime) = e.alarms.get_mut(&alarm.name) {
                    runtime.accumulator.add(value);
                    if ends_period(t1, alarm.period_s) {
                        let point = runtime.accumulator.take(alarm.statistic);
                        runtime.points.push_back(point);
                        while runtime.points.len()
                            > alarm.rule.evaluation_periods + a.evaluation_range_extra
                        {
                            runtime.points.pop_front();
                        }
                    }
                }
            }
            e.stats.instance_seconds += f64::from(e.in_service + e.starting.len() as u32) * dt;
            e.stats.peak_in_service = e.stats.peak_in_service.max(e.in_service);
        }
        self.now = t1;
        if ends_period(t1, 60.0) {
            self.minute(account);
        }
    }

    /// Once a minute: alarms are evaluated (§4.10, a guess), and alarms in ALARM invoke their
    /// Auto Scaling actions again for as long as they stay in ALARM (§4.6).
    fn minute(&mut self, account: &mut Account) {
        let now = self.now;
        let a = self.assumptions.clone();
        let mut usage = self.usage_by_type();
        for e in &mut self.endpoints {
            let mut invocations: Vec<(Action, usize, Option<f64>)> = Vec::new();
            for (index, alarm) in e.setup.alarms.iter().enumerate() {
                let Some(runtime) = e.alarms.get_mut(&alarm.name) else {
                    continue;
                };
                let next = evaluate(&alarm.rule, &runtime.points, runtime.state);
                if next != runtime.state {
                    let reason = format!(
                        "Threshold Crossed: datapoints {:?} evaluated against {}",
                        runtime.points, alarm.rule.threshold
                    );
                    account.transition_alarm(&alarm.name, next.as_str(), reason, self.epoch + now);
                    runtime.state = next;
                }
                if runtime.state == AlarmState::Alarm {
                    let newest = runtime.points.iter().rev().flatten().next().copied();
                    for action in &alarm.actions {
                        invocations.push((*action, index, newest));
                    }
                }
            }
            let instance_type = e.spec.instance_type.clone();
            let used = usage.get(&instance_type).copied().unwrap_or(0);
            let quota = account.instance_quota(&instance_type);
            let before = e.desired;
            let at = Moment {
                now,
                epoch: self.epoch,
            };
            decide_and_scale(e, &invocations, &a, at, account, Headroom { used, quota });
            let entry = usage.entry(instance_type).or_default();
            *entry = (*entry + e.desired).saturating_sub(before);
            if self.record_timeline {
                let record = MinuteRecord {
                    minute: (now / 60.0).round() as u64,
                    arrivals: e.minute_arrivals,
                    backlog: e.backlog,
                    backlog_per_instance: e.metric(Metric::BacklogPerInstance, now, &a),
                    desired: e.desired,
                    in_service: e.in_service,
                    alarms: e
                        .alarms
                        .iter()
                        .map(|(n, r)| (n.clone(), r.state.as_str()))
                        .collect(),
                    activities: std::mem::take(&mut e.minute_activities),
                };
                e.timeline.push(record);
            } else {
                e.minute_activities.clear();
            }
            e.minute_arrivals = 0.0;
        }
    }

    /// §2.13: when MinCapacity or MaxCapacity changes (or the target is registered), Application
    /// Auto Scaling moves a capacity outside the new bounds inside them at once, with an activity
    /// whose cause says so ("minimum capacity was set to 110"). A raise past the instance quota
    /// fails whole, like any scale-out (§5.4, whose documented example is exactly this).
    fn follow_bounds(&mut self, account: &mut Account) {
        let at = Moment {
            now: self.now,
            epoch: self.epoch,
        };
        let a = self.assumptions.clone();
        let mut usage = self.usage_by_type();
        for e in &mut self.endpoints {
            let Some(target) = e.setup.target else {
                e.bounds = None;
                continue;
            };
            let bounds = (target.min, target.max.max(target.min));
            if e.bounds == Some(bounds) {
                continue;
            }
            e.bounds = Some(bounds);
            let used = usage.get(&e.spec.instance_type).copied().unwrap_or(0);
            let quota = account.instance_quota(&e.spec.instance_type);
            let before = e.desired;
            if e.desired < bounds.0 {
                let cause = format!("minimum capacity was set to {}", bounds.0);
                scale_out(
                    e,
                    bounds.0,
                    &cause,
                    None,
                    &a,
                    at,
                    account,
                    Headroom { used, quota },
                );
            } else if e.desired > bounds.1 {
                let cause = format!("maximum capacity was set to {}", bounds.1);
                scale_in(e, bounds.1, &cause, None, at, account);
            }
            let entry = usage.entry(e.spec.instance_type.clone()).or_default();
            *entry = (*entry + e.desired).saturating_sub(before);
        }
    }

    /// Instances of each type in use across the account (this world's endpoints plus others).
    fn usage_by_type(&self) -> BTreeMap<String, u32> {
        let mut usage = self.other_usage.clone();
        for e in &self.endpoints {
            *usage.entry(e.spec.instance_type.clone()).or_default() += e.desired;
        }
        usage
    }
}

/// Whether `t` (seconds) closes a period of `period` seconds, within float error.
fn ends_period(t: f64, period: f64) -> bool {
    let periods = t / period;
    (periods - periods.round()).abs() < 1e-9
}

/// Simulation seconds, and the wall-clock epoch they count from.
#[derive(Clone, Copy)]
struct Moment {
    now: f64,
    epoch: f64,
}

/// Instances of the endpoint's type in use across the account, and the quota (None: unlimited).
#[derive(Clone, Copy)]
struct Headroom {
    used: u32,
    quota: Option<f64>,
}

struct Candidate {
    capacity: u32,
    policy: String,
    alarm: usize,
    target_tracking: bool,
}

/// The policies the alarms invoked this minute each compute a capacity; the largest wins, for
/// scale-out and for scale-in alike (§2.11 "precedence to the policy that provides the largest
/// capacity"). A scale-out past the instance quota fails whole (§5.4).
fn decide_and_scale(
    e: &mut EndpointSim,
    invocations: &[(Action, usize, Option<f64>)],
    a: &Assumptions,
    at: Moment,
    account: &mut Account,
    headroom: Headroom,
) {
    let now = at.now;
    let Some(target) = e.setup.target else { return };
    let current = e.desired;
    let mut out: Vec<Candidate> = Vec::new();
    let mut inward: Vec<Candidate> = Vec::new();
    for &(action, alarm_index, newest) in invocations {
        let Some(value) = newest else { continue };
        let alarm = &e.setup.alarms[alarm_index];
        match action {
            Action::TargetTrackingOut(i) => {
                let tt = &e.setup.target_tracking[i];
                let capacity = policy::target_tracking_out(current, value, tt.target, a);
                out.push(Candidate {
                    capacity,
                    policy: tt.name.clone(),
                    alarm: alarm_index,
                    target_tracking: true,
                });
            }
            Action::TargetTrackingIn(i) => {
                let tt = &e.setup.target_tracking[i];
                if tt.disable_scale_in {
                    continue;
                }
                let runtime = e.policies.get(&tt.name).copied().unwrap_or_default();
                // §2.12: scale-in waits for its cooldown.
                if runtime
                    .last_scale_in
                    .is_some_and(|t| now - t < tt.scale_in_cooldown_s)
                {
                    continue;
                }
                let capacity = policy::target_tracking_in(current, value, tt.target, a);
                inward.push(Candidate {
                    capacity,
                    policy: tt.name.clone(),
                    alarm: alarm_index,
                    target_tracking: true,
                });
            }
            Action::Step(i) => {
                let step = &e.setup.steps[i];
                let runtime = e.policies.get(&step.name).copied().unwrap_or_default();
                let counted = if a.step_counts_desired_capacity {
                    current
                } else {
                    e.in_service
                };
                // §2.12: during the cooldown after a scale-out, the capacity that scale-out added
                // counts as current: the policy computes from the capacity before it.
                let in_cooldown = runtime
                    .last_scale_out
                    .filter(|(t, _, _)| now - t < step.cooldown_s);
                let base = in_cooldown.map_or(counted, |(_, before, _)| before);
                let Some(wanted) = policy::step_target(step, base, value - alarm.rule.threshold)
                else {
                    continue;
                };
                let capacity = wanted.max(0) as u32;
                if capacity > current {
                    out.push(Candidate {
                        capacity,
                        policy: step.name.clone(),
                        alarm: alarm_index,
                        target_tracking: false,
                    });
                } else if capacity < current
                    && runtime
                        .last_scale_in
                        .is_none_or(|t| now - t >= step.cooldown_s)
                {
                    inward.push(Candidate {
                        capacity,
                        policy: step.name.clone(),
                        alarm: alarm_index,
                        target_tracking: false,
                    });
                }
            }
        }
    }
    let clamp = |c: u32| c.clamp(target.min, target.max.max(target.min));
    let cause_of = |c: &Candidate| {
        format!(
            "monitor alarm {} in state ALARM triggered policy {}",
            e.setup.alarms[c.alarm].name, c.policy
        )
    };
    let best_out = out
        .iter()
        .filter(|c| clamp(c.capacity) > current)
        .max_by_key(|c| c.capacity);
    if let Some(best) = best_out.filter(|_| !target.scale_out_suspended) {
        let cause = cause_of(best);
        let policy = best.policy.clone();
        scale_out(
            e,
            clamp(best.capacity),
            &cause,
            Some(&policy),
            a,
            at,
            account,
            headroom,
        );
        return;
    }
    // §2.8: a policy that wants more than MaxCapacity does not scale; AWS records why.
    if let Some(wanting) = out
        .iter()
        .filter(|c| c.capacity > target.max && current >= target.max)
        .max_by_key(|c| c.capacity)
    {
        let cause = cause_of(wanting);
        not_scaled(e, "AlreadyAtMaxCapacity", target.max, &cause, at, account);
        return;
    }
    // §2.11, "Multiple scaling policies": target tracking scales in only when every
    // target-tracking policy with scale-in enabled is ready to; step policies are not held back.
    let scale_in_enabled: Vec<&str> = e
        .setup
        .target_tracking
        .iter()
        .filter(|t| !t.disable_scale_in)
        .map(|t| t.name.as_str())
        .collect();
    let all_ready = scale_in_enabled.iter().all(|name| {
        inward
            .iter()
            .any(|c| c.target_tracking && c.policy == *name)
    });
    let best_in = inward
        .iter()
        .filter(|c| !c.target_tracking || all_ready)
        .filter(|c| clamp(c.capacity) < current)
        .max_by_key(|c| c.capacity);
    if let Some(best) = best_in.filter(|_| !target.scale_in_suspended && out.is_empty()) {
        let cause = cause_of(best);
        let policy = best.policy.clone();
        scale_in(e, clamp(best.capacity), &cause, Some(&policy), at, account);
    }
}

/// Raises DesiredInstanceCount to `new` (the instances start after the provisioning delay), or
/// records the Failed activity when the account's instance quota refuses the whole request.
#[allow(clippy::too_many_arguments)]
fn scale_out(
    e: &mut EndpointSim,
    new: u32,
    cause: &str,
    policy: Option<&str>,
    a: &Assumptions,
    at: Moment,
    account: &mut Account,
    headroom: Headroom,
) {
    let Moment { now, epoch } = at;
    let Headroom { used, quota } = headroom;
    let current = e.desired;
    let description = format!("Setting desired instance count to {new}.");
    let delta = new - current;
    e.last_not_scaled = None;
    if let Some(limit) = quota
        && f64::from(used + delta) > limit
    {
        // §5.4: the whole request fails; capacity stays. AWS's newest observed wording (the field
        // report's, verbatim), not the documentation's older example.
        let message = format!(
            "Failed to set desired instance count to {new}. Reason: The account-level service limit '{} for endpoint usage' is {} Instances, with current utilization of {used} Instances and a request delta of {delta} Instances. Please use AWS Service Quotas to request an increase for this quota. If AWS Service Quotas is not available, contact AWS support to request an increase for this quota.",
            e.spec.instance_type, limit,
        );
        account.record_activity(activity(
            e,
            &description,
            cause,
            "Failed",
            Some(message.clone()),
            epoch + now,
            Some(epoch + now),
        ));
        e.minute_activities.push(format!("Failed: {message}"));
        e.stats.failed_activity_count += 1;
        if e.stats.failed_activities.len() < FAILED_ACTIVITIES_KEPT {
            e.stats.failed_activities.push((now, message));
        }
        return;
    }
    let id = account.record_activity(activity(
        e,
        &description,
        cause,
        "InProgress",
        None,
        epoch + now,
        None,
    ));
    e.minute_activities
        .push(format!("InProgress: {description} ({cause})"));
    if let Some((old, _)) = e.open_activity.replace((id, new)) {
        account.finish_activity(
            old,
            "Overridden",
            "The desired capacity was updated by a newer scaling event".into(),
            epoch + now,
        );
    }
    e.desired = new;
    e.last_modified_s = now;
    for _ in 0..delta {
        e.starting.push(now + a.provisioning_delay_s);
    }
    e.stats.first_instance_requested_s.get_or_insert(now);
    e.stats.peak_desired = e.stats.peak_desired.max(new);
    if let Some(policy) = policy {
        let runtime = e.policies.entry(policy.to_string()).or_default();
        runtime.last_scale_out = Some((now, current, new));
        // §2.12: a scale-out cuts every scale-in cooldown short.
        for r in e.policies.values_mut() {
            r.last_scale_in = None;
        }
    }
}

/// Lowers DesiredInstanceCount to `new`: starting instances are cancelled first.
fn scale_in(
    e: &mut EndpointSim,
    new: u32,
    cause: &str,
    policy: Option<&str>,
    at: Moment,
    account: &mut Account,
) {
    let Moment { now, epoch } = at;
    let current = e.desired;
    let description = format!("Setting desired instance count to {new}.");
    let message = format!(
        "Successfully set desired instance count to {new}. Change successfully fulfilled by sagemaker."
    );
    e.last_not_scaled = None;
    account.record_activity(activity(
        e,
        &description,
        cause,
        "Successful",
        Some(message),
        epoch + now,
        Some(epoch + now),
    ));
    e.minute_activities
        .push(format!("Successful: {description} ({cause})"));
    let mut remove = current - new;
    while remove > 0 && !e.starting.is_empty() {
        e.starting.pop();
        remove -= 1;
    }
    e.in_service -= remove.min(e.in_service);
    e.desired = new;
    e.last_modified_s = now;
    if new == 0 {
        e.stats.scaled_to_zero_s.push(now);
    }
    if let Some(policy) = policy {
        e.policies
            .entry(policy.to_string())
            .or_default()
            .last_scale_in = Some(now);
    }
}

/// §2.8: an invocation that did not scale, with AWS's reason. ASSUMPTION: AWS does not document
/// how often it records these while an alarm stays in ALARM; one is recorded per reason until the
/// next scaling activity, so they never crowd the real activities out of a page.
fn not_scaled(
    e: &mut EndpointSim,
    code: &str,
    max: u32,
    cause: &str,
    at: Moment,
    account: &mut Account,
) {
    if e.last_not_scaled.as_deref() == Some(code) {
        return;
    }
    e.last_not_scaled = Some(code.to_string());
    let mut record = activity(
        e,
        "Attempting to scale due to alarm triggered",
        cause,
        "Failed",
        None,
        at.epoch + at.now,
        Some(at.epoch + at.now),
    );
    record.not_scaled_reasons = Some(vec![serde_json::json!({
        "Code": code, "MaxCapacity": max, "CurrentCapacity": e.desired,
    })]);
    account.record_activity(record);
    e.minute_activities
        .push(format!("Not scaled: {code} ({cause})"));
}

fn activity(
    e: &EndpointSim,
    description: &str,
    cause: &str,
    status: &str,
    message: Option<String>,
    start: f64,
    end: Option<f64>,
) -> Activity {
    Activity {
        activity_id: String::new(),
        service_namespace: "sagemaker".into(),
        resource_id: e.resource_id.clone(),
        scalable_dimension: "sagemaker:variant:DesiredInstanceCount".into(),
        description: description.to_string(),
        cause: cause.to_string(),
        start_time: start,
        end_time: end,
        status_code: status.to_string(),
        status_message: message,
        not_scaled_reasons: None,
    }
}
