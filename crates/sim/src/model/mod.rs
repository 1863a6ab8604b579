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

mod endpoint;
mod scaling;

use std::collections::BTreeMap;

use alarm::{AlarmState, evaluate};
use assumptions::Assumptions;
use scaling::{Headroom, Moment, decide_and_scale, scale_in, scale_out};
use setup::{Action, Metric};

use crate::account::Account;

pub use endpoint::{
    EndpointSim, EndpointSpec, EndpointStats, FAILED_ACTIVITIES_KEPT, MinuteRecord,
};

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
            let changed = (seen != u64::MAX)
                .then(|| account.endpoints_changed_since(seen))
                .flatten();
            let stale: Vec<usize> = (0..self.endpoints.len())
                .filter(|&i| {
                    changed
                        .as_ref()
                        .is_none_or(|c| c.contains(self.endpoints[i].spec.endpoint.as_str()))
                })
                .collect();
            if !stale.is_empty() {
                let names: std::collections::BTreeSet<&str> = stale
                    .iter()
                    .map(|&i| self.endpoints[i].spec.endpoint.as_str())
                    .collect();
                let alarms = setup::alarms_by_endpoint(account, &names);
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
