//! The on-call view of each instance quota, read at scrape time from each resource's latest
//! reading (deploy/helm/asyncscale/templates/prometheusrule.yaml alerts on these;
//! docs/runbooks.md explains each), and the failed scaling activities counted once each.

use std::collections::BTreeMap;
use std::sync::Mutex;

use asyncscale_core::ScalingActivity;
use k8s_openapi::jiff::Timestamp;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use asyncscale_engine::OnCallReading;

use super::{InstanceTypeLabels, family, single};

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct FailedActivityLabels {
    account: String,
    region: String,
    instance_type: String,
    /// `quota` (the instance quota stopped it) or `other`.
    reason: String,
}

/// A scalable target whose failed activities are counted: account, region, resource id.
type CountedTarget = (String, String, String);

#[derive(Debug)]
pub(super) struct QuotaCollector {
    state: Mutex<QuotaState>,
}

#[derive(Debug)]
struct QuotaState {
    /// The latest reading of each resource, by namespace/name.
    readings: BTreeMap<String, OnCallReading>,
    /// The failed activities already counted, by scalable target (a resource deleted and created
    /// again finds its target's history counted), with their start times.
    counted: BTreeMap<CountedTarget, BTreeMap<String, Timestamp>>,
    /// Activities that started before this replica began to lead were counted (or not) by the
    /// replica that led then: a restart or a failover must not fire the alert again.
    counting_since: Timestamp,
    failures: BTreeMap<FailedActivityLabels, FailureSeries>,
}

/// One series of failed activities: a series first appears at 0 and shows its count from the
/// next scrape on, so that increase() sees the step (a series born at 1 has no earlier sample
/// to rise from).
#[derive(Debug, Default)]
struct FailureSeries {
    count: u64,
    shown: bool,
}

impl QuotaCollector {
    /// Counting failed activities from `since` (the process's start).
    pub(super) fn new(since: Timestamp) -> Self {
        Self {
            state: Mutex::new(QuotaState {
                readings: BTreeMap::new(),
                counted: BTreeMap::new(),
                counting_since: since,
                failures: BTreeMap::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QuotaState> {
        self.state.lock().expect("metrics lock")
    }

    pub(super) fn began_leading(&self, now: Timestamp) {
        self.state().counting_since = now;
    }

    pub(super) fn forget_readings(&self) {
        self.state().readings.clear();
    }

    /// Keeps `reading` as what `key` holds now (None: gone), and counts the Failed activities
    /// among `recent` (the target's newest activities, as read) not counted before.
    pub(super) fn record(
        &self,
        key: &str,
        reading: Option<OnCallReading>,
        recent: &[ScalingActivity],
    ) {
        let mut state = self.state();
        match reading {
            Some(reading) => {
                state.count_failures(&scope_of(&reading), &reading.target, recent);
                state.readings.insert(key.to_string(), reading);
            }
            None => {
                state.readings.remove(key);
            }
        }
    }

    #[cfg(test)]
    pub(super) fn counted_targets(&self) -> usize {
        self.state().counted.len()
    }
}

impl QuotaState {
    fn count_failures(
        &mut self,
        scope: &InstanceTypeLabels,
        target: &str,
        recent: &[ScalingActivity],
    ) {
        let labels = |reason: &str| FailedActivityLabels {
            account: scope.account.clone(),
            region: scope.region.clone(),
            instance_type: scope.instance_type.clone(),
            reason: reason.to_string(),
        };
        // Both reasons exist from the first reading of a type, at 0.
        for reason in ["quota", "other"] {
            self.failures.entry(labels(reason)).or_default();
        }
        let key = (
            scope.account.clone(),
            scope.region.clone(),
            target.to_string(),
        );
        let started = |a: &ScalingActivity| a.start_time.parse::<Timestamp>().ok();
        let seen = self.counted.entry(key.clone()).or_default();
        for activity in recent.iter().filter(|a| a.status_code == "Failed") {
            let Some(at) = started(activity) else {
                continue;
            };
            let since_leading = at >= self.counting_since;
            if since_leading && !seen.contains_key(&activity.activity_id) {
                seen.insert(activity.activity_id.clone(), at);
                let reason = if activity.failed_on_quota() {
                    "quota"
                } else {
                    "other"
                };
                self.failures.entry(labels(reason)).or_default().count += 1;
            }
        }
        // Only what has scrolled out of the history is forgotten (a history is read newest
        // first, never shorter than what it held before); a read that saw nothing forgets nothing.
        if let Some(oldest) = recent.iter().filter_map(started).min() {
            seen.retain(|_, at| *at >= oldest);
        }
        // A target with nothing counted holds no entry (a fleet that churns would keep one
        // for every target it ever had).
        if seen.is_empty() {
            self.counted.remove(&key);
        }
    }
}

/// The labels of the instance quota a reading counts in: account (empty: the controller's own),
/// region and instance type.
fn scope_of(reading: &OnCallReading) -> InstanceTypeLabels {
    InstanceTypeLabels {
        account: reading.account.clone().unwrap_or_default(),
        region: reading.region.clone(),
        instance_type: reading.instance_type.clone(),
    }
}

/// What the readings of one instance type add up to.
#[derive(Default)]
struct Sum {
    quota: Option<i64>,
    in_use: Option<i64>,
    grantable: i64,
    backlog: i64,
    blocked: i64,
    waiting: i64,
    longest_wait: Option<f64>,
}

impl Collector for QuotaCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut state = self.state();
        let now = Timestamp::now();
        let mut sums: BTreeMap<InstanceTypeLabels, Sum> = BTreeMap::new();
        for reading in state.readings.values() {
            let sum = sums.entry(scope_of(reading)).or_default();
            // Every resource of a type reads the same quota and usage; the highest is the newest
            // when a refresh lands between two reconciles.
            sum.quota = sum.quota.max(reading.quota);
            sum.in_use = sum.in_use.max(reading.in_use);
            if let (Some(max), Some(held)) = (reading.effective_max, reading.instances) {
                sum.grantable += (max - held).max(0);
            }
            sum.backlog += i64::from(reading.backlog);
            sum.blocked += i64::from(reading.blocked_by_quota);
            if let Some(since) = reading.waiting_since {
                sum.waiting += 1;
                let waited = now.duration_since(since).as_secs_f64().max(0.0);
                sum.longest_wait = Some(sum.longest_wait.map_or(waited, |w| w.max(waited)));
            }
        }
        let gauge = |pick: fn(&Sum) -> Option<i64>| {
            sums.iter()
                .filter_map(move |(scope, sum)| Some((scope.clone(), ConstGauge::new(pick(sum)?))))
        };
        let e = &mut encoder;
        family(
            e,
            "quota_instances",
            "The instance quota (<instance type> for endpoint usage), by region and instance type",
            None,
            gauge(|s| s.quota),
        )?;
        family(
            e,
            "quota_in_use_instances",
            "Instances of the type held by every endpoint of the account and region, managed by asyncscale or not",
            None,
            gauge(|s| s.in_use),
        )?;
        family(
            e,
            "quota_grantable_instances",
            "Instances asyncscale's endpoints may still add under the MaxCapacity it applied (the shared quota's room)",
            None,
            gauge(|s| Some(s.grantable)),
        )?;
        family(
            e,
            "endpoints_with_backlog",
            "Endpoints whose requests wait for more instances (scale-from-zero alarm or target tracking's AlarmHigh in ALARM)",
            None,
            gauge(|s| Some(s.backlog)),
        )?;
        family(
            e,
            "endpoints_blocked_by_quota",
            "Endpoints with backlog (scale-from-zero alarm or target tracking's AlarmHigh in ALARM) that the instance quota keeps from growing",
            None,
            gauge(|s| Some(s.blocked)),
        )?;
        family(
            e,
            "endpoints_waiting_without_capacity",
            "Endpoints whose scale-from-zero alarm is in ALARM: requests wait with no instance",
            None,
            gauge(|s| Some(s.waiting)),
        )?;
        family(
            e,
            "backlog_without_capacity_longest_wait",
            "How long the longest-waiting endpoint's requests have waited with no instance (its scale-from-zero alarm's time in ALARM)",
            Some(&Unit::Seconds),
            sums.iter().map(|(scope, sum)| {
                (
                    scope.clone(),
                    ConstGauge::new(sum.longest_wait.unwrap_or(0.0)),
                )
            }),
        )?;
        // Every resource with a reading is managed; its reading says whether it is clamped.
        let readings = state.readings.len() as i64;
        let clamped = state.readings.values().filter(|r| r.clamped).count() as i64;
        single(
            e,
            "managed_resources",
            "AsyncEndpointScaling resources asyncscale manages",
            ConstGauge::new(readings),
        )?;
        single(
            e,
            "resources_clamped",
            "Resources whose maxCapacity the instance quota lowered",
            ConstGauge::new(clamped),
        )?;
        let failed: Vec<_> = state
            .failures
            .iter_mut()
            .map(|(labels, series)| {
                let shown = if series.shown { series.count } else { 0 };
                series.shown = true;
                (labels.clone(), ConstCounter::new(shown))
            })
            .collect();
        family(
            e,
            "scaling_activities_failed",
            "Failed scaling activities seen since the controller started, by reason (quota: the instance quota stopped a scale-out; other)",
            None,
            failed,
        )
    }
}
