//! Prometheus metrics of the controller. No label names an object, so the series count stays
//! bounded however many resources exist.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use std::sync::Arc;

use asyncscale_engine::{CallCounter, CallKey, FleetSource};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegionLabels {
    pub region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    pub region: String,
    pub outcome: String,
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
    exported_calls: Mutex<BTreeMap<CallKey, u64>>,
    calls: CallCounter,
    /// Resources asyncscale manages and those whose maximum the quota lowered, by namespace/name.
    managed_set: Mutex<BTreeSet<String>>,
    clamped_set: Mutex<BTreeSet<String>>,
    fleet: Mutex<Option<Arc<FleetSource>>>,
    fleet_refreshes: Family<RefreshLabels, Counter>,
    exported_refreshes: Mutex<BTreeMap<(String, &'static str), u64>>,
    fleet_age: Family<RegionLabels, Gauge<f64, AtomicU64>>,
    fleet_refresh_took: Family<RegionLabels, Gauge<f64, AtomicU64>>,
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
            exported_calls: Mutex::new(BTreeMap::new()),
            calls,
            managed_set: Mutex::new(BTreeSet::new()),
            clamped_set: Mutex::new(BTreeSet::new()),
            fleet: Mutex::new(None),
            fleet_refreshes,
            exported_refreshes: Mutex::new(BTreeMap::new()),
            fleet_age,
            fleet_refresh_took,
        }
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

    /// Records whether a resource is managed and clamped (false, false when it is gone).
    pub fn resource_state(&self, key: &str, managed: bool, clamped: bool) {
        for (set, gauge, member) in [
            (&self.managed_set, &self.managed, managed),
            (&self.clamped_set, &self.clamped, clamped),
        ] {
            let mut set = set.lock().expect("metrics lock");
            if member {
                set.insert(key.to_string());
            } else {
                set.remove(key);
            }
            gauge.set(set.len() as i64);
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        {
            let mut exported = self.exported_calls.lock().expect("metrics lock");
            for (key, total) in self.calls.snapshot() {
                let seen = exported.entry(key.clone()).or_default();
                let labels = AwsCallLabels {
                    service: key.service.to_string(),
                    operation: key.operation.to_string(),
                    outcome: key.outcome.to_string(),
                };
                self.aws_calls.get_or_create(&labels).inc_by(total - *seen);
                *seen = total;
            }
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
        if let Some(fleet) = self.fleet.lock().expect("metrics lock").as_ref() {
            let mut exported = self.exported_refreshes.lock().expect("metrics lock");
            for (region, stats) in fleet.stats() {
                for (outcome, total) in
                    [("ok", stats.refreshes), ("failed", stats.failed_refreshes)]
                {
                    let seen = exported.entry((region.clone(), outcome)).or_default();
                    self.fleet_refreshes
                        .get_or_create(&RefreshLabels {
                            region: region.clone(),
                            outcome: outcome.to_string(),
                        })
                        .inc_by(total - *seen);
                    *seen = total;
                }
                let labels = RegionLabels { region };
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
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("metrics encode");
        text
    }
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
}
