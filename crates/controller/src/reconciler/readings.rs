//! What the on-call metrics read from one reconcile (see `crate::metrics`).

use asyncscale_api::AsyncEndpointScaling;
use asyncscale_core::MaxSource;
use asyncscale_core::names::ResourceNames;
use asyncscale_engine::{AutoscalingBackend, ConvergeReport};

use crate::metrics::{InstanceTypeLabels, ResourceReading};

/// What the on-call metrics need from one reconcile. The usage and the firing AlarmHigh come
/// from the fleet view's picture as it is, so this reads nothing from AWS.
pub(super) fn metrics_reading(
    obj: &AsyncEndpointScaling,
    report: &ConvergeReport,
    backend: &dyn AutoscalingBackend,
) -> ResourceReading {
    let spec = &obj.spec;
    let resource_id = ResourceNames::new(&spec.endpoint_name, &spec.variant_name).resource_id;
    let sighting = backend.sighting(&spec.instance_type, &resource_id);
    let in_use = sighting.map(|s| i64::from(s.in_use));
    let quota = report.status.quota.as_ref().and_then(|q| q.value);
    let instances = report
        .status
        .endpoint
        .as_ref()
        .and_then(|e| e.current_instances.max(e.desired_instances).map(i64::from));
    let effective_max = report.status.effective_max_capacity.map(i64::from);
    let waiting_since = report
        .observed
        .as_ref()
        .and_then(|o| o.alarm.as_ref())
        .filter(|a| a.state.as_deref() == Some("ALARM"))
        .map(|a| {
            a.state_since
                .as_deref()
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(k8s_openapi::jiff::Timestamp::now)
        });
    let backlog =
        waiting_since.is_some() || sighting.is_some_and(|s| s.backlog_above_target == Some(true));
    let desired = report.desired.as_ref();
    let lowered_by_quota = desired.is_some_and(|d| {
        matches!(d.max_source, MaxSource::Quota | MaxSource::Share)
            && d.effective_max < spec.max_capacity
    });
    let at_cap = instances.zip(effective_max).is_some_and(|(i, m)| i >= m);
    let quota_full = in_use.zip(quota).is_some_and(|(u, q)| u >= q);
    // From the share itself: a minimum that waits decides nothing (no `desired`).
    let min_unmet = report.share.as_ref().is_some_and(|s| s.min_unmet);
    ResourceReading {
        scope: InstanceTypeLabels {
            account: backend.account().unwrap_or_default().to_string(),
            region: backend.region().to_string(),
            instance_type: spec.instance_type.clone(),
        },
        target: resource_id,
        clamped: desired.is_some_and(|d| d.clamped),
        quota,
        in_use,
        instances,
        effective_max,
        backlog,
        blocked_by_quota: (backlog && ((lowered_by_quota && at_cap) || quota_full)) || min_unmet,
        waiting_since,
    }
}
