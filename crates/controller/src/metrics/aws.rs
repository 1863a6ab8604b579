//! AWS as the controller uses it, read at scrape time: the requests sent (the engine's
//! `CallCounter`), the time they waited for the request budget, and the fleet views' refreshes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use asyncscale_engine::{CallCounter, FleetSource, Place};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Unit;

use super::family;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsApiLabels {
    service: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsCallLabels {
    service: String,
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegionLabels {
    /// The account of the role the calls act as (spec.roleArn, --default-role-arn); empty for
    /// the controller's own credentials.
    account: String,
    region: String,
}

impl RegionLabels {
    fn of(place: &Place) -> Self {
        Self {
            account: place.account.clone().unwrap_or_default(),
            region: place.region.clone(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    account: String,
    region: String,
    outcome: String,
}

pub(super) struct AwsCollector {
    calls: CallCounter,
    fleet: Mutex<Option<Arc<FleetSource>>>,
    /// Whether this replica leads: a standby's picture is not refreshed.
    leader: Gauge,
}

impl std::fmt::Debug for AwsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCollector").finish_non_exhaustive()
    }
}

impl AwsCollector {
    pub(super) fn new(calls: CallCounter, leader: Gauge) -> Self {
        Self {
            calls,
            fleet: Mutex::new(None),
            leader,
        }
    }

    pub(super) fn watch_fleet(&self, fleet: Arc<FleetSource>) {
        *self.fleet.lock().expect("metrics lock") = Some(fleet);
    }
}

impl Collector for AwsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let e = &mut encoder;
        let counts = self.calls.snapshot();
        family(
            e,
            "aws_calls",
            "AWS API requests by service, operation and outcome",
            None,
            counts.iter().map(|(key, total)| {
                let labels = AwsCallLabels {
                    service: key.service.to_string(),
                    operation: key.operation.to_string(),
                    outcome: key.outcome.to_string(),
                };
                (labels, ConstCounter::new(*total))
            }),
        )?;
        // Every API called has a budget-wait series, 0 until a call waits: rate() then reads 0
        // instead of nothing.
        let mut waits: BTreeMap<(&str, &str), f64> = counts
            .keys()
            .map(|key| ((key.service, key.operation), 0.0))
            .collect();
        for (api, waited) in self.calls.waited() {
            waits.insert(api, waited.as_secs_f64());
        }
        family(
            e,
            "aws_budget_wait",
            "Time AWS requests waited for the request budget (--aws-rate), by service and operation; the outcome label of aws_calls counts the throttles that still happened",
            Some(&Unit::Seconds),
            waits.into_iter().map(|((service, operation), waited)| {
                let labels = AwsApiLabels {
                    service: service.to_string(),
                    operation: operation.to_string(),
                };
                (labels, ConstCounter::new(waited))
            }),
        )?;
        let stats = self
            .fleet
            .lock()
            .expect("metrics lock")
            .as_ref()
            .map(|fleet| fleet.stats())
            .unwrap_or_default();
        family(
            e,
            "fleet_refreshes",
            "Bulk refreshes of the fleet view of AWS, by region and outcome (ok, failed)",
            None,
            stats.iter().flat_map(|(place, stats)| {
                let region = RegionLabels::of(place);
                [("ok", stats.refreshes), ("failed", stats.failed_refreshes)].map(
                    |(outcome, total)| {
                        let labels = RefreshLabels {
                            account: region.account.clone(),
                            region: region.region.clone(),
                            outcome: outcome.to_string(),
                        };
                        (labels, ConstCounter::new(total))
                    },
                )
            }),
        )?;
        family(
            e,
            "fleet_backlog_reads_failed",
            "Refreshes whose read of target tracking's firing AlarmHigh alarms failed or took too long, by region: endpoints_with_backlog and endpoints_blocked_by_quota then count scale-from-zero alarms only",
            None,
            stats.iter().map(|(place, stats)| {
                (
                    RegionLabels::of(place),
                    ConstCounter::new(stats.backlog_reads_failed),
                )
            }),
        )?;
        // A standby's picture is not refreshed (it reconciles nothing): its age would grow
        // beside the leader's and fire the staleness alert.
        let leading = self.leader.get() == 1;
        let led = || stats.iter().filter(move |_| leading);
        family(
            e,
            "fleet_observation_age",
            "Age of the fleet view's picture of AWS, by region (since its refresh started)",
            Some(&Unit::Seconds),
            led().filter_map(|(place, stats)| {
                Some((
                    RegionLabels::of(place),
                    ConstGauge::new(stats.age?.as_secs_f64()),
                ))
            }),
        )?;
        family(
            e,
            "fleet_refresh_duration",
            "How long the latest successful refresh of the fleet view took, by region",
            Some(&Unit::Seconds),
            led().filter_map(|(place, stats)| {
                Some((
                    RegionLabels::of(place),
                    ConstGauge::new(stats.last_refresh_took?.as_secs_f64()),
                ))
            }),
        )
    }
}
