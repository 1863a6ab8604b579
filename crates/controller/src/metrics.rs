//! Prometheus metrics of the controller. No label names an object, so the series count stays
//! bounded however many resources exist.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use asyncscale_engine::{CallCounter, CallKey};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
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
    managed: Gauge,
    clamped: Gauge,
    pub leader: Gauge,
    /// AWS call counts already exported, to add only what is new at each scrape.
    exported_calls: Mutex<BTreeMap<CallKey, u64>>,
    calls: CallCounter,
    /// Resources asyncscale manages and those whose maximum the quota lowered, by namespace/name.
    managed_set: Mutex<BTreeSet<String>>,
    clamped_set: Mutex<BTreeSet<String>>,
}

impl Metrics {
    pub fn new(calls: CallCounter) -> Self {
        let mut registry = Registry::with_prefix("asyncscale");
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        let aws_calls = Family::<AwsCallLabels, Counter>::default();
        let managed = Gauge::default();
        let clamped = Gauge::default();
        let leader = Gauge::default();
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
            managed,
            clamped,
            leader,
            exported_calls: Mutex::new(BTreeMap::new()),
            calls,
            managed_set: Mutex::new(BTreeSet::new()),
            clamped_set: Mutex::new(BTreeSet::new()),
        }
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
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("metrics encode");
        text
    }
}
