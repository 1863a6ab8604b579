//! One endpoint variant in the scaling model: its queue, its instances, the datapoints its alarms
//! gather, and what happened to it, for the summary and the timeline.

use std::collections::{BTreeMap, VecDeque};

use super::alarm::AlarmState;
use super::assumptions::Assumptions;
use super::load::LoadProfile;
use super::setup::{self, Metric, Setup, Statistic};
use crate::account::Account;

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
pub(super) struct Accumulator {
    sum: f64,
    count: u32,
    min: f64,
    max: f64,
}

impl Accumulator {
    pub(super) fn add(&mut self, v: f64) {
        if self.count == 0 {
            self.min = v;
            self.max = v;
        }
        self.sum += v;
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub(super) fn take(&mut self, statistic: Statistic) -> Option<f64> {
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
pub(super) struct AlarmRuntime {
    pub(super) accumulator: Accumulator,
    /// Datapoints, oldest first, as many as the evaluation range needs.
    pub(super) points: VecDeque<Option<f64>>,
    pub(super) state: AlarmState,
    period_s: f64,
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PolicyRuntime {
    /// (when, capacity before, capacity after) of the last scale-out this policy made.
    pub(super) last_scale_out: Option<(f64, u32, u32)>,
    pub(super) last_scale_in: Option<f64>,
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
    pub(super) queue: VecDeque<(f64, f64)>,
    pub backlog: f64,
    /// DesiredInstanceCount as Application Auto Scaling set it.
    pub desired: u32,
    pub in_service: u32,
    /// When each starting instance comes into service.
    pub(super) starting: Vec<f64>,
    pub(crate) setup: Setup,
    pub(super) alarms: BTreeMap<String, AlarmRuntime>,
    pub(super) policies: BTreeMap<String, PolicyRuntime>,
    /// The scale-out activity still in progress: its index in the account, and the count it sets.
    pub(super) open_activity: Option<(usize, u32)>,
    /// The scalable target's bounds when last seen, to act when they change (§2.13).
    pub(super) bounds: Option<(u32, u32)>,
    /// The reason of the last not-scaled activity recorded, until the next scaling activity.
    pub(super) last_not_scaled: Option<String>,
    pub(super) minute_arrivals: f64,
    pub(super) minute_activities: Vec<String>,
    pub stats: EndpointStats,
    pub timeline: Vec<MinuteRecord>,
    /// When the endpoint last changed (simulation seconds): a new desired count, or the last
    /// starting instance in service (SageMaker's `LastModifiedTime`).
    pub last_modified_s: f64,
}

impl EndpointSim {
    pub(super) fn new(spec: EndpointSpec) -> Self {
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

    pub(super) fn metric(&self, metric: Metric, now: f64, a: &Assumptions) -> f64 {
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

    pub(super) fn refresh(&mut self, account: &Account, alarms: &[&str], a: &Assumptions) {
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
