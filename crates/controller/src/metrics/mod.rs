//! Prometheus metrics of the controller. No label names an object, so the series count stays
//! bounded however many resources exist: what concerns one endpoint is summed per account, region
//! and instance type (the scope of an instance quota).
//!
//! Counters of what happens here (reconciles) are the registry's own. What is kept elsewhere (AWS
//! calls and budget waits in the engine's `CallCounter`, the fleet views' refreshes) and what is
//! derived from the resources' latest readings (the quota gauges, failed activities) is read at
//! scrape time by collectors ([`aws`], [`quota`]): nothing is copied between scrapes.

mod aws;
mod quota;

use std::sync::Arc;
use std::time::Instant;

use asyncscale_core::ScalingActivity;
use asyncscale_engine::{CallCounter, FleetSource, OnCallReading};
use k8s_openapi::jiff::Timestamp;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
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

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<OutcomeLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub leader: Gauge,
    quota: Arc<quota::QuotaCollector>,
    aws: Arc<aws::AwsCollector>,
}

impl Metrics {
    pub fn new(calls: CallCounter) -> Self {
        let mut registry = Registry::with_prefix("asyncscale");
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciles by outcome", reconciles.clone());
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile takes, AWS calls included",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease (or runs without leader election)",
            leader.clone(),
        );
        let quota = Arc::new(quota::QuotaCollector::new(Timestamp::now()));
        let aws = Arc::new(aws::AwsCollector::new(calls, leader.clone()));
        registry.register_collector(Box::new(quota.clone()));
        registry.register_collector(Box::new(aws.clone()));
        Self {
            registry,
            reconciles,
            reconcile_duration,
            leader,
            quota,
            aws,
        }
    }

    /// On becoming leader: failed activities that started before now were the previous
    /// leader's to count.
    pub fn began_leading(&self) {
        self.quota.began_leading(Timestamp::now());
    }

    /// On losing leadership, drops what this replica saw of each resource: a standby would
    /// otherwise repeat the last leader's view (quota gauges, managed and clamped resources)
    /// forever beside the new leader's.
    pub fn forget_readings(&self) {
        self.quota.forget_readings();
    }

    /// Records what a reconcile of `key` saw (None: the resource is gone) and counts its
    /// target's newly failed scaling activities among `recent` (empty when AWS was not read).
    pub fn resource_reading(
        &self,
        key: &str,
        reading: Option<OnCallReading>,
        recent: &[ScalingActivity],
    ) {
        self.quota.record(key, reading, recent);
    }

    /// Exports the fleet views' refreshes and ages at each scrape.
    pub fn watch_fleet(&self, fleet: Arc<FleetSource>) {
        self.aws.watch_fleet(fleet);
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
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("metrics encode");
        text
    }
}

/// One metric family read at scrape time, described as the registry describes its own (help
/// ending in "."); a family without series is left out, as the registry leaves out an empty one.
fn family<L, M>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &'static str,
    help: &str,
    unit: Option<&'static Unit>,
    series: impl IntoIterator<Item = (L, M)>,
) -> std::fmt::Result
where
    L: EncodeLabelSet,
    M: EncodeMetric + Default,
{
    let series: Vec<(L, M)> = series.into_iter().collect();
    if series.is_empty() {
        return Ok(());
    }
    let help = format!("{help}.");
    let mut metric = encoder.encode_descriptor(name, &help, unit, M::default().metric_type())?;
    for (labels, value) in series {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One metric without labels, read at scrape time.
fn single<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &'static str,
    help: &str,
    metric: M,
) -> std::fmt::Result {
    let metric_type = metric.metric_type();
    let help = format!("{help}.");
    metric.encode(encoder.encode_descriptor(name, &help, None, metric_type)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Read at scrape time, a family reads as the registry's own do: its help ends in ".", and a
    /// family without series is left out.
    #[test]
    fn collected_families_are_described_as_registered_ones_and_empty_ones_left_out() {
        let calls = CallCounter::default();
        let metrics = Metrics::new(calls.clone());
        let text = metrics.encode();
        assert!(!text.contains("asyncscale_aws_calls"), "{text}");
        assert!(text.contains("# HELP asyncscale_leader 1 while"), "{text}");
        calls.record("sagemaker", "ListEndpoints", "ok");
        let text = metrics.encode();
        assert!(
            text.contains(
                "# HELP asyncscale_aws_calls AWS API requests by service, operation and outcome.\n"
            ),
            "{text}"
        );
        for help in text.lines().filter(|l| l.starts_with("# HELP ")) {
            assert!(help.ends_with('.'), "{help}");
        }
    }

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

    /// A reading of an ml.g4dn.xlarge endpoint in us-east-1, the controller's own account.
    fn g4dn(target: &str) -> OnCallReading {
        OnCallReading {
            region: "us-east-1".into(),
            instance_type: "ml.g4dn.xlarge".into(),
            target: target.into(),
            ..OnCallReading::default()
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
            Some(OnCallReading {
                clamped: false,
                quota: Some(4),
                in_use: Some(4),
                instances: Some(1),
                effective_max: Some(2),
                backlog: false,
                blocked_by_quota: false,
                waiting_since: None,
                ..g4dn("endpoint/a/variant/AllTraffic")
            }),
            &[],
        );
        metrics.resource_reading(
            "ml/b",
            Some(OnCallReading {
                clamped: false,
                quota: Some(4),
                in_use: Some(4),
                instances: Some(0),
                effective_max: Some(0),
                backlog: true,
                blocked_by_quota: true,
                waiting_since: Some(waiting_since),
                ..g4dn("endpoint/b/variant/AllTraffic")
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
        let reading = |target: String| g4dn(&target);
        for i in 0..100 {
            let target = format!("endpoint/e{i}/variant/AllTraffic");
            metrics.resource_reading(&format!("ml/e{i}"), Some(reading(target)), &[]);
        }
        let failed = activity("f1", "account-level service limit", &now);
        let target = "endpoint/f/variant/AllTraffic".to_string();
        metrics.resource_reading("ml/f", Some(reading(target)), &[failed]);
        assert_eq!(metrics.quota.counted_targets(), 1);
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
        let reading = g4dn("endpoint/a/variant/AllTraffic");
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
