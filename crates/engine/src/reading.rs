//! What the on-call metrics read from one resource's converge: its quota, what its type holds,
//! whether requests wait and whether the quota keeps it from growing. Derived here, beside the
//! decisions it reports on; it reads nothing from AWS (the usage and the firing AlarmHigh come
//! from the fleet view's picture as it is).

use asyncscale_api::AsyncEndpointScalingSpec;
use asyncscale_core::MaxSource;
use asyncscale_core::names::ResourceNames;
use k8s_openapi::jiff::Timestamp;

use crate::converge::ConvergeReport;
use crate::port::AutoscalingBackend;

/// One resource's contribution to the per-instance-type metrics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OnCallReading {
    /// The account of the role the calls act as (None: the caller's own credentials').
    pub account: Option<String>,
    pub region: String,
    pub instance_type: String,
    /// The scalable target's resource id.
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
    /// It has backlog and the quota keeps it from growing (or its minimum waits for instances).
    pub blocked_by_quota: bool,
    /// Since when requests have waited with no instance (the scale-from-zero alarm's state
    /// change; None while it is not in ALARM).
    pub waiting_since: Option<Timestamp>,
}

/// The on-call reading of a converge of `spec` through `backend`.
pub fn on_call_reading(
    spec: &AsyncEndpointScalingSpec,
    report: &ConvergeReport,
    backend: &dyn AutoscalingBackend,
) -> OnCallReading {
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
                .unwrap_or_else(Timestamp::now)
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
    OnCallReading {
        account: backend.account().map(str::to_string),
        region: backend.region().to_string(),
        instance_type: spec.instance_type.clone(),
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
