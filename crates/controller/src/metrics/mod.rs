//! Prometheus metrics of the controller. No label names an object, so the series count stays
//! bounded however many resources exist: what concerns one endpoint is summed per region and
//! instance type (the scope of an instance quota).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use asyncscale_engine::Place;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use std::sync::Arc;

use asyncscale_core::ScalingActivity;
use asyncscale_engine::{CallCounter, FleetSource};
use k8s_openapi::jiff::Timestamp;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegionLabels {
    /// The account of the role the calls act as (spec.roleArn, --default-role-arn); empty for
    /// the controller's own credentials.
    pub account: String,
    pub region: String,
}

impl RegionLabels {
    pub fn of(place: &Place) -> Self {
        Self {
            account: place.account.clone().unwrap_or_default(),
            region: place.region.clone(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    pub account: String,
    pub region: String,
    pub outcome: String,
}

/// The scope of one instance quota: an account (empty: the controller's own), a region and an
/// instance type.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct InstanceTypeLabels {
    pub account: String,
    pub region: String,
    pub instance_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct FailedActivityLabels {
    pub account: String,
    pub region: String,
    pub instance_type: String,
    /// `quota` (the instance quota stopped it) or `other`.
    pub reason: String,
}

/// What one resource's latest reconcile saw, for the per-instance-type metrics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceReading {
    pub scope: InstanceTypeLabels,
    /// The scalable target's resource id (never a label: it keys what was counted).
    pub target: String,
    /// The quota lowered its maxCapacity.
    pub clamped: bool,
    /// The instance quota, when it was read.
    pub quota: Option<i64>,
    /// Instances of the type held in the account and region, by every endpoint.
    pub in_use: Option<i64>,
    /// Instances the variant holds (the larger of current and desired).
    pub instances: Option<i64>,
    /// The MaxCapacity asyncscale applied.
    pub effective_max: Option<i64>,
    /// Requests wait: the scale-from-zero alarm or target tracking's AlarmHigh fires.
    pub backlog: bool,
    /// It has backlog and the quota keeps it from growing.
    pub blocked_by_quota: bool,
    /// Since when requests have waited with no instance (the scale-from-zero alarm's state
    /// change; None while it is not in ALARM).
    pub waiting_since: Option<Timestamp>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsApiLabels {
    pub service: String,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsCallLabels {
    pub service: String,
    pub operation: String,
    pub outcome: String,
}

/// A scalable target whose failed activities are counted: account, region, resource id.
type CountedTarget = (String, String, String);

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<OutcomeLabels, Counter>,
    pub reconcile_duration: Histogram,
    aws_calls: Family<AwsCallLabels, Counter>,
    /// Seconds requests waited for the request budget.
    aws_budget_wait: Family<AwsApiLabels, Counter<f64, AtomicU64>>,
    /// Waits already exported, to add only what is new at each scrape.
    exported_waits: Mutex<BTreeMap<(&'static str, &'static str), f64>>,
    managed: Gauge,
    clamped: Gauge,
    pub leader: Gauge,
    /// AWS call counts already exported, to add only what is new at each scrape.
    calls: CallCounter,
    fleet: Mutex<Option<Arc<FleetSource>>>,
    fleet_refreshes: Family<RefreshLabels, Counter>,
    backlog_reads_failed: Family<RegionLabels, Counter>,
    /// What each counter kept elsewhere (AWS calls, refreshes) had reached at the last scrape.
    exported_counts: Mutex<HashMap<String, u64>>,
    fleet_age: Family<RegionLabels, Gauge<f64, AtomicU64>>,
    fleet_refresh_took: Family<RegionLabels, Gauge<f64, AtomicU64>>,
    quota: QuotaMetrics,
}

/// The on-call view of each instance quota (deploy/helm/asyncscale/templates/prometheusrule.yaml
/// alerts on them; docs/runbooks.md explains each).
struct QuotaMetrics {
    instances: Family<InstanceTypeLabels, Gauge>,
    in_use: Family<InstanceTypeLabels, Gauge>,
    grantable: Family<InstanceTypeLabels, Gauge>,
    backlog: Family<InstanceTypeLabels, Gauge>,
    blocked: Family<InstanceTypeLabels, Gauge>,
    waiting: Family<InstanceTypeLabels, Gauge>,
    longest_wait: Family<InstanceTypeLabels, Gauge<f64, AtomicU64>>,
    failed_activities: Family<FailedActivityLabels, Counter>,
    /// Failures counted for a series no scrape has shown yet: held until one has shown it at 0,
    /// so that increase() sees the step (a series born at 1 has no earlier sample to rise from).
    failures_held: Mutex<BTreeMap<FailedActivityLabels, u64>>,
    /// The failure series a scrape has shown, and those that exist.
    failures_shown: Mutex<BTreeSet<FailedActivityLabels>>,
    failures_created: Mutex<BTreeSet<FailedActivityLabels>>,
    /// The latest reading of each resource, by namespace/name.
    readings: Mutex<BTreeMap<String, ResourceReading>>,
    /// The failed activities already counted, by region and scalable target (a resource deleted
    /// and created again finds its target's history counted), with their start times.
    counted: Mutex<BTreeMap<CountedTarget, BTreeMap<String, Timestamp>>>,
    /// Activities that started before this replica began to lead were counted (or not) by the
    /// replica that led then: a restart or a failover must not fire the alert again.
    counting_since: Mutex<Timestamp>,
}

impl QuotaMetrics {
    fn new(registry: &mut Registry) -> Self {
        let quota = Self {
            instances: Family::default(),
            in_use: Family::default(),
            grantable: Family::default(),
            backlog: Family::default(),
            blocked: Family::default(),
            waiting: Family::default(),
            longest_wait: Family::default(),
            failed_activities: Family::default(),
            failures_held: Mutex::new(BTreeMap::new()),
            failures_shown: Mutex::new(BTreeSet::new()),
            failures_created: Mutex::new(BTreeSet::new()),
            readings: Mutex::new(BTreeMap::new()),
            counted: Mutex::new(BTreeMap::new()),
            counting_since: Mutex::new(Timestamp::now()),
        };
        for (name, help, family) in [
            (
                "quota_instances",
                "The instance quota (<instance type> for endpoint usage), by region and instance type",
                &quota.instances,
            ),
            (
                "quota_in_use_instances",
                "Instances of the type held by every endpoint of the account and region, managed by asyncscale or not",
                &quota.in_use,
            ),
            (
                "quota_grantable_instances",
                "Instances asyncscale's endpoints may still add under the MaxCapacity it applied (the shared quota's room)",
                &quota.grantable,
            ),
            (
                "endpoints_with_backlog",
                "Endpoints whose requests wait for more instances (scale-from-zero alarm or target tracking's AlarmHigh in ALARM)",
                &quota.backlog,
            ),
            (
                "endpoints_blocked_by_quota",
                "Endpoints with backlog (scale-from-zero alarm or target tracking's AlarmHigh in ALARM) that the instance quota keeps from growing",
                &quota.blocked,
            ),
            (
                "endpoints_waiting_without_capacity",
                "Endpoints whose scale-from-zero alarm is in ALARM: requests wait with no instance",
                &quota.waiting,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        registry.register_with_unit(
            "backlog_without_capacity_longest_wait",
            "How long the longest-waiting endpoint's requests have waited with no instance (its scale-from-zero alarm's time in ALARM)",
            prometheus_client::registry::Unit::Seconds,
            quota.longest_wait.clone(),
        );
        registry.register(
            "scaling_activities_failed",
            "Failed scaling activities seen since the controller started, by reason (quota: the instance quota stopped a scale-out; other)",
            quota.failed_activities.clone(),
        );
        quota
    }

    fn record(&self, key: &str, reading: Option<ResourceReading>) {
        let mut readings = self.readings.lock().expect("metrics lock");
        match reading {
            Some(reading) => readings.insert(key.to_string(), reading),
            None => readings.remove(key),
        };
    }

    /// Counts the Failed activities among `recent` (the target's newest activities, as read)
    /// not counted before.
    fn count_failures(&self, scope: &InstanceTypeLabels, target: &str, recent: &[ScalingActivity]) {
        // Both reasons exist from the first reading of a type, at 0.
        for reason in ["quota", "other"] {
            let labels = FailedActivityLabels {
                account: scope.account.clone(),
                region: scope.region.clone(),
                instance_type: scope.instance_type.clone(),
                reason: reason.to_string(),
            };
            self.failed_activities.get_or_create(&labels).inc_by(0);
            self.failures_created
                .lock()
                .expect("metrics lock")
                .insert(labels);
        }
        let since = *self.counting_since.lock().expect("metrics lock");
        let mut counted = self.counted.lock().expect("metrics lock");
        let seen = counted
            .entry((
                scope.account.clone(),
                scope.region.clone(),
                target.to_string(),
            ))
            .or_default();
        let started = |a: &ScalingActivity| a.start_time.parse::<Timestamp>().ok();
        for activity in recent.iter().filter(|a| a.status_code == "Failed") {
            let Some(at) = started(activity) else {
                continue;
            };
            if at >= since && !seen.contains_key(&activity.activity_id) {
                seen.insert(activity.activity_id.clone(), at);
                let reason = if activity.failed_on_quota() {
                    "quota"
                } else {
                    "other"
                };
                let labels = FailedActivityLabels {
                    account: scope.account.clone(),
                    region: scope.region.clone(),
                    instance_type: scope.instance_type.clone(),
                    reason: reason.to_string(),
                };
                if self
                    .failures_shown
                    .lock()
                    .expect("metrics lock")
                    .contains(&labels)
                {
                    self.failed_activities.get_or_create(&labels).inc();
                } else {
                    *self
                        .failures_held
                        .lock()
                        .expect("metrics lock")
                        .entry(labels)
                        .or_default() += 1;
                }
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
            counted.remove(&(
                scope.account.clone(),
                scope.region.clone(),
                target.to_string(),
            ));
        }
    }

    /// Before a scrape: failures held for a series an earlier scrape has shown now count.
    /// Returns the series that exist now, which this scrape shows.
    fn release_held_failures(&self) -> Vec<FailedActivityLabels> {
        let shown = self.failures_shown.lock().expect("metrics lock");
        self.failures_held
            .lock()
            .expect("metrics lock")
            .retain(|labels, held| {
                if !shown.contains(labels) {
                    return true;
                }
                self.failed_activities.get_or_create(labels).inc_by(*held);
                false
            });
        self.failures_created
            .lock()
            .expect("metrics lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Rebuilds the gauges from the readings (a type no resource uses any more disappears).
    fn export(&self) {
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
        let now = Timestamp::now();
        let mut sums: BTreeMap<InstanceTypeLabels, Sum> = BTreeMap::new();
        for reading in self.readings.lock().expect("metrics lock").values() {
            let sum = sums.entry(reading.scope.clone()).or_default();
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
        for family in [
            &self.instances,
            &self.in_use,
            &self.grantable,
            &self.backlog,
            &self.blocked,
            &self.waiting,
        ] {
            family.clear();
        }
        self.longest_wait.clear();
        for (scope, sum) in sums {
            if let Some(quota) = sum.quota {
                self.instances.get_or_create(&scope).set(quota);
            }
            if let Some(in_use) = sum.in_use {
                self.in_use.get_or_create(&scope).set(in_use);
            }
            self.grantable.get_or_create(&scope).set(sum.grantable);
            self.backlog.get_or_create(&scope).set(sum.backlog);
            self.blocked.get_or_create(&scope).set(sum.blocked);
            self.waiting.get_or_create(&scope).set(sum.waiting);
            self.longest_wait
                .get_or_create(&scope)
                .set(sum.longest_wait.unwrap_or(0.0));
        }
    }
}

impl Metrics {
    pub fn new(calls: CallCounter) -> Self {
        let mut registry = Registry::with_prefix("asyncscale");
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        let aws_calls = Family::<AwsCallLabels, Counter>::default();
        let aws_budget_wait = Family::<AwsApiLabels, Counter<f64, AtomicU64>>::default();
        let managed = Gauge::default();
        let clamped = Gauge::default();
        let leader = Gauge::default();
        let fleet_refreshes = Family::<RefreshLabels, Counter>::default();
        let backlog_reads_failed = Family::<RegionLabels, Counter>::default();
        registry.register(
            "fleet_backlog_reads_failed",
            "Refreshes whose read of target tracking's firing AlarmHigh alarms failed or took too long, by region: endpoints_with_backlog and endpoints_blocked_by_quota then count scale-from-zero alarms only",
            backlog_reads_failed.clone(),
        );
        let fleet_age = Family::<RegionLabels, Gauge<f64, AtomicU64>>::default();
        let fleet_refresh_took = Family::<RegionLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "fleet_refreshes",
            "Bulk refreshes of the fleet view of AWS, by region and outcome (ok, failed)",
            fleet_refreshes.clone(),
        );
        registry.register_with_unit(
            "fleet_observation_age",
            "Age of the fleet view's picture of AWS, by region (since its refresh started)",
            prometheus_client::registry::Unit::Seconds,
            fleet_age.clone(),
        );
        registry.register_with_unit(
            "fleet_refresh_duration",
            "How long the latest successful refresh of the fleet view took, by region",
            prometheus_client::registry::Unit::Seconds,
            fleet_refresh_took.clone(),
        );
        let quota = QuotaMetrics::new(&mut registry);
        registry.register("reconciles", "Reconciles by outcome", reconciles.clone());
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile takes, AWS calls included",
            prometheus_client::registry::Unit::Seconds,
            reconcile_duration.clone(),
        );
        registry.register(
            "aws_calls",
            "AWS API requests by service, operation and outcome",
            aws_calls.clone(),
        );
        registry.register_with_unit(
            "aws_budget_wait",
            "Time AWS requests waited for the request budget (--aws-rate), by service and operation; the outcome label of aws_calls counts the throttles that still happened",
            prometheus_client::registry::Unit::Seconds,
            aws_budget_wait.clone(),
        );
        registry.register(
            "managed_resources",
            "AsyncEndpointScaling resources asyncscale manages",
            managed.clone(),
        );
        registry.register(
            "resources_clamped",
            "Resources whose maxCapacity the instance quota lowered",
            clamped.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease (or runs without leader election)",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_duration,
            aws_calls,
            aws_budget_wait,
            exported_waits: Mutex::new(BTreeMap::new()),
            managed,
            clamped,
            leader,
            calls,
            fleet: Mutex::new(None),
            fleet_refreshes,
            backlog_reads_failed,
            exported_counts: Mutex::new(HashMap::new()),
            fleet_age,
            fleet_refresh_took,
            quota,
        }
    }

    /// On becoming leader: failed activities that started before now were the previous
    /// leader's to count.
    pub fn began_leading(&self) {
        *self.quota.counting_since.lock().expect("metrics lock") = Timestamp::now();
    }

    /// On losing leadership, drops what this replica saw of each resource: a standby would
    /// otherwise repeat the last leader's view (quota gauges, managed and clamped resources)
    /// forever beside the new leader's.
    pub fn forget_readings(&self) {
        self.quota.readings.lock().expect("metrics lock").clear();
    }

    /// Records what a reconcile of `key` saw (None: the resource is gone) and counts its
    /// target's newly failed scaling activities among `recent` (empty when AWS was not read).
    pub fn resource_reading(
        &self,
        key: &str,
        reading: Option<ResourceReading>,
        recent: &[ScalingActivity],
    ) {
        if let Some(reading) = &reading {
            self.quota
                .count_failures(&reading.scope, &reading.target, recent);
        }
        self.quota.record(key, reading);
    }

    /// Exports the fleet views' refreshes and ages at each scrape.
    pub fn watch_fleet(&self, fleet: Arc<FleetSource>) {
        *self.fleet.lock().expect("metrics lock") = Some(fleet);
    }

    pub fn reconciled(&self, outcome: &str, started: Instant) {
        self.reconciles
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
        self.reconcile_duration
            .observe(started.elapsed().as_secs_f64());
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut exported = self.exported_counts.lock().expect("metrics lock");
        for (key, total) in self.calls.snapshot() {
            let labels = AwsCallLabels {
                service: key.service.to_string(),
                operation: key.operation.to_string(),
                outcome: key.outcome.to_string(),
            };
            catch_up(&mut exported, &self.aws_calls, &labels, total);
            // Every API called has a budget-wait series, 0 until a call waits: rate() then
            // reads 0 instead of nothing.
            self.aws_budget_wait
                .get_or_create(&AwsApiLabels {
                    service: labels.service,
                    operation: labels.operation,
                })
                .inc_by(0.0);
        }
        {
            let mut exported = self.exported_waits.lock().expect("metrics lock");
            for (api, waited) in self.calls.waited() {
                let seen = exported.entry(api).or_default();
                let labels = AwsApiLabels {
                    service: api.0.to_string(),
                    operation: api.1.to_string(),
                };
                let total = waited.as_secs_f64();
                self.aws_budget_wait
                    .get_or_create(&labels)
                    .inc_by(total - *seen);
                *seen = total;
            }
        }
        if self.leader.get() != 1 {
            self.fleet_age.clear();
            self.fleet_refresh_took.clear();
        }
        if let Some(fleet) = self.fleet.lock().expect("metrics lock").as_ref() {
            for (place, stats) in fleet.stats() {
                let labels = RegionLabels::of(&place);
                for (outcome, total) in
                    [("ok", stats.refreshes), ("failed", stats.failed_refreshes)]
                {
                    let labels = RefreshLabels {
                        account: labels.account.clone(),
                        region: labels.region.clone(),
                        outcome: outcome.to_string(),
                    };
                    catch_up(&mut exported, &self.fleet_refreshes, &labels, total);
                }
                catch_up(
                    &mut exported,
                    &self.backlog_reads_failed,
                    &labels,
                    stats.backlog_reads_failed,
                );
                // A standby's picture is not refreshed (it reconciles nothing): its age would
                // grow beside the leader's and fire the staleness alert.
                if self.leader.get() != 1 {
                    continue;
                }
                if let Some(age) = stats.age {
                    self.fleet_age.get_or_create(&labels).set(age.as_secs_f64());
                }
                if let Some(took) = stats.last_refresh_took {
                    self.fleet_refresh_took
                        .get_or_create(&labels)
                        .set(took.as_secs_f64());
                }
            }
        }
        drop(exported);
        self.quota.export();
        {
            // Every resource with a reading is managed; its reading says whether it is clamped.
            let readings = self.quota.readings.lock().expect("metrics lock");
            self.managed.set(readings.len() as i64);
            self.clamped
                .set(readings.values().filter(|r| r.clamped).count() as i64);
        }
        let showing = self.quota.release_held_failures();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("metrics encode");
        self.quota
            .failures_shown
            .lock()
            .expect("metrics lock")
            .extend(showing);
        text
    }
}

/// Adds to `family`'s counter for `labels` what `total`, a count kept elsewhere, gained since the
/// last scrape (`exported`, keyed by the series as Debug prints it, type name included).
fn catch_up<L>(
    exported: &mut HashMap<String, u64>,
    family: &Family<L, Counter>,
    labels: &L,
    total: u64,
) where
    L: Clone + std::hash::Hash + Eq + fmt::Debug + EncodeLabelSet,
{
    let seen = exported.entry(format!("{labels:?}")).or_default();
    family.get_or_create(labels).inc_by(total - *seen);
    *seen = total;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn throttles_and_budget_waits_are_exported_by_api_and_only_added_once() {
        let calls = CallCounter::default();
        let metrics = Metrics::new(calls.clone());
        calls.record("cloudwatch", "PutMetricAlarm", "throttled");
        calls.record_wait("cloudwatch", "PutMetricAlarm", Duration::from_millis(1500));
        let text = metrics.encode();
        assert!(
            text.contains(r#"asyncscale_aws_calls_total{service="cloudwatch",operation="PutMetricAlarm",outcome="throttled"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"asyncscale_aws_budget_wait_seconds_total{service="cloudwatch",operation="PutMetricAlarm"} 1.5"#),
            "{text}"
        );
        calls.record_wait("cloudwatch", "PutMetricAlarm", Duration::from_millis(500));
        let text = metrics.encode();
        assert!(
            text.contains(r#"asyncscale_aws_budget_wait_seconds_total{service="cloudwatch",operation="PutMetricAlarm"} 2.0"#),
            "{text}"
        );
    }

    fn activity(id: &str, message: &str, start_time: &str) -> ScalingActivity {
        ScalingActivity {
            activity_id: id.into(),
            status_code: "Failed".into(),
            description: "Setting desired instance count to 3.".into(),
            cause: String::new(),
            status_message: Some(message.into()),
            start_time: start_time.into(),
            end_time: Some(start_time.into()),
        }
    }

    fn g4dn() -> InstanceTypeLabels {
        InstanceTypeLabels {
            account: String::new(),
            region: "us-east-1".into(),
            instance_type: "ml.g4dn.xlarge".into(),
        }
    }

    /// Two endpoints of one type: one series per type, sums over both, and nothing left once
    /// both are gone.
    #[test]
    fn readings_are_summed_per_instance_type_and_vanish_with_their_resources() {
        let metrics = Metrics::new(CallCounter::default());
        let waiting_since = Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(600);
        metrics.resource_reading(
            "ml/a",
            Some(ResourceReading {
                scope: g4dn(),
                target: "endpoint/a/variant/AllTraffic".into(),
                clamped: false,
                quota: Some(4),
                in_use: Some(4),
                instances: Some(1),
                effective_max: Some(2),
                backlog: false,
                blocked_by_quota: false,
                waiting_since: None,
            }),
            &[],
        );
        metrics.resource_reading(
            "ml/b",
            Some(ResourceReading {
                scope: g4dn(),
                target: "endpoint/b/variant/AllTraffic".into(),
                clamped: false,
                quota: Some(4),
                in_use: Some(4),
                instances: Some(0),
                effective_max: Some(0),
                backlog: true,
                blocked_by_quota: true,
                waiting_since: Some(waiting_since),
            }),
            &[],
        );
        let text = metrics.encode();
        let labels = r#"{account="",region="us-east-1",instance_type="ml.g4dn.xlarge"}"#;
        for expected in [
            format!("asyncscale_quota_instances{labels} 4"),
            format!("asyncscale_quota_in_use_instances{labels} 4"),
            format!("asyncscale_quota_grantable_instances{labels} 1"),
            format!("asyncscale_endpoints_with_backlog{labels} 1"),
            format!("asyncscale_endpoints_blocked_by_quota{labels} 1"),
            format!("asyncscale_endpoints_waiting_without_capacity{labels} 1"),
        ] {
            assert!(text.contains(&expected), "{expected} missing in\n{text}");
        }
        let waited: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "asyncscale_backlog_without_capacity_longest_wait_seconds{labels} "
                ))
            })
            .expect("longest wait")
            .parse()
            .unwrap();
        assert!((600.0..700.0).contains(&waited), "{waited}");
        metrics.resource_reading("ml/a", None, &[]);
        metrics.resource_reading("ml/b", None, &[]);
        assert!(!metrics.encode().contains(labels));
    }

    /// A churning fleet reads thousands of targets over days: only those with failures still in
    /// their read history keep an entry.
    #[test]
    fn targets_with_nothing_counted_keep_nothing() {
        let metrics = Metrics::new(CallCounter::default());
        let now = Timestamp::now().to_string();
        for i in 0..100 {
            let target = format!("endpoint/e{i}/variant/AllTraffic");
            metrics.quota.count_failures(&g4dn(), &target, &[]);
        }
        let failed = activity("f1", "account-level service limit", &now);
        metrics
            .quota
            .count_failures(&g4dn(), "endpoint/f/variant/AllTraffic", &[failed]);
        let kept = metrics.quota.counted.lock().unwrap();
        assert_eq!(kept.len(), 1, "{kept:?}");
    }

    /// A failed activity counts once however many reconciles see it, by reason (after its series
    /// was shown at 0), also across a
    /// reconcile that could not read AWS and a resource deleted and created again; one that
    /// started before this replica began to lead is the earlier leader's to count (a restart or a
    /// failover fires no alert).
    #[test]
    fn failed_activities_count_once_by_reason_and_not_from_before_leading() {
        let metrics = Metrics::new(CallCounter::default());
        let after =
            (Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(1)).to_string();
        let quota = activity(
            "a-1",
            "Failed to set desired instance count to 3. Reason: The account-level service limit 'ml.g4dn.xlarge for endpoint usage' is 2 Instances",
            &after,
        );
        let other = activity("a-2", "Internal failure", &after);
        let old = activity(
            "a-0",
            "The account-level service limit ...",
            "2026-01-01T00:00:00Z",
        );
        let reading = ResourceReading {
            scope: g4dn(),
            target: "endpoint/a/variant/AllTraffic".into(),
            ..ResourceReading::default()
        };
        let history = [other.clone(), quota.clone(), old.clone()];
        let count = |reason: &str| {
            let line = format!(
                r#"asyncscale_scaling_activities_failed_total{{account="",region="us-east-1",instance_type="ml.g4dn.xlarge",reason="{reason}"}} "#
            );
            let text = metrics.encode();
            text.lines()
                .find_map(|l| l.strip_prefix(&line))
                .unwrap_or_else(|| panic!("{line} missing in\n{text}"))
                .parse::<u64>()
                .unwrap()
        };
        metrics.resource_reading("ml/a", Some(reading.clone()), &history);
        // A new series is first shown at 0, the failures from the next scrape on: increase()
        // needs a sample to rise from.
        assert_eq!((count("quota"), count("other")), (0, 1));
        assert_eq!(count("quota"), 1);
        // AWS not read (the history empty), then read again; deleted, then created again.
        metrics.resource_reading("ml/a", Some(reading.clone()), &[]);
        metrics.resource_reading("ml/a", Some(reading.clone()), &history);
        metrics.resource_reading("ml/a", None, &[]);
        metrics.resource_reading("ml/a", Some(reading.clone()), &history);
        assert_eq!((count("quota"), count("other")), (1, 1));
        // Another replica led meanwhile: what started before this one leads again is not counted.
        let during_failover = activity(
            "a-3",
            "The account-level service limit",
            &Timestamp::now().to_string(),
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
        metrics.began_leading();
        let mut newer = vec![during_failover];
        newer.extend(history);
        metrics.resource_reading("ml/a", Some(reading), &newer);
        assert_eq!(count("quota"), 1);
    }
}
