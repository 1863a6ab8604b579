//! How each condition is decided from what was observed and applied.

use asyncscale_api::{AsyncEndpointScalingSpec, QuotaPolicy};

use crate::desired::{MaxSource, quota_instances};

use super::*;

/// One condition before it gets its generation and time.
pub(super) struct Cond {
    pub(super) kind: ConditionType,
    pub(super) status: ConditionStatus,
    pub(super) reason: Reason,
    pub(super) message: String,
}

impl Cond {
    fn new(
        kind: ConditionType,
        status: ConditionStatus,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            status,
            reason,
            message: message.into(),
        }
    }

    /// The same cause, under another condition type.
    fn as_kind(&self, kind: ConditionType, status: ConditionStatus) -> Self {
        Self::new(kind, status, self.reason, self.message.clone())
    }
}

pub(super) fn synced_condition(outcome: &SyncOutcome) -> Cond {
    use ConditionStatus::{False, True, Unknown};
    let (status, reason, message) = match outcome {
        SyncOutcome::InSync => (
            True,
            Reason::InSync,
            "AWS matches the desired configuration".to_string(),
        ),
        SyncOutcome::ChangesPending(n) => (
            False,
            Reason::ChangesPending,
            format!("{n} change(s) to AWS are pending; run apply"),
        ),
        SyncOutcome::ApplyFailed(m) => (False, Reason::ApplyFailed, m.clone()),
        SyncOutcome::InvalidSpec(m) => (False, Reason::InvalidSpec, m.clone()),
        SyncOutcome::Conflict(m) => (False, Reason::Conflict, m.clone()),
        SyncOutcome::QuotaTooLow(m) => (False, Reason::QuotaTooLow, m.clone()),
        SyncOutcome::WaitingForQuota(m) => (False, Reason::WaitingForQuota, m.clone()),
        SyncOutcome::ObserveFailed(m) => (Unknown, Reason::ObserveFailed, m.clone()),
        SyncOutcome::RoleNotAssumed(m) => (False, Reason::RoleNotAssumed, m.clone()),
        SyncOutcome::EndpointUnusable(problem) => (False, problem.reason(), problem.to_string()),
    };
    Cond::new(ConditionType::Synced, status, reason, message)
}

pub(super) fn quota_condition(input: &StatusInput<'_>) -> Cond {
    let spec = input.spec;
    let max = spec.max_capacity;
    // QuotaClamped says what AWS holds, and nothing is written for an endpoint that cannot be
    // scaled (a previous value is kept by the caller).
    let not_applied = match &input.outcome {
        SyncOutcome::EndpointUnusable(problem) => Some(format!(
            "nothing is written while the endpoint cannot be scaled ({})",
            problem.reason()
        )),
        // The quota was read; the minimum does not fit this endpoint's share of it.
        SyncOutcome::WaitingForQuota(_) if input.quota.is_some_and(|q| q.value().is_some()) => {
            Some(
                "nothing is written until minCapacity fits this endpoint's share of the quota (see Synced)"
                    .to_string(),
            )
        }
        _ => None,
    };
    if let Some(message) = not_applied {
        return Cond::new(
            ConditionType::QuotaClamped,
            ConditionStatus::Unknown,
            Reason::NotApplied,
            message,
        );
    }
    let Some(lookup) = input.quota else {
        return Cond::new(
            ConditionType::QuotaClamped,
            ConditionStatus::Unknown,
            Reason::QuotaNotRead,
            "the instance quota has not been read",
        );
    };
    let Some(q) = lookup.value() else {
        let reason = lookup.refresh_error().unwrap_or_default();
        let name = lookup.name();
        let consequence = match input.desired.map(|d| (d.max_source, d.effective_max)) {
            Some((MaxSource::KeptWhileQuotaUnknown, kept)) => format!(
                "the scalable target's MaxCapacity stays at {kept} until the quota can be read (an unknown quota never raises it)"
            ),
            Some((MaxSource::SpecWhileQuotaUnknown, _)) => format!(
                "the scalable target is registered with maxCapacity {max} as written until the quota can be read"
            ),
            Some((MaxSource::MinWhileQuotaUnknown, min)) => format!(
                "the scalable target is registered with MaxCapacity {min} (minCapacity) until the quota can be read: its share of an unknown quota is unknown"
            ),
            _ => "nothing is changed on account of it".to_string(),
        };
        return Cond::new(
            ConditionType::QuotaClamped,
            ConditionStatus::Unknown,
            Reason::QuotaUnknown,
            format!("could not read the quota '{name}': {reason}; {consequence}"),
        );
    };
    let allowed = quota_instances(q);
    let what = format!(
        "the quota '{}' ({}, {} value) of {allowed} instances",
        q.name,
        q.code,
        q.source.as_str().to_lowercase()
    );
    // A failed refresh keeps the last value: the condition stays, and its message says so.
    let stale = match lookup {
        QuotaLookup::Stale { reason, .. } => {
            format!(" (the last value read; the latest refresh failed: {reason})")
        }
        _ => String::new(),
    };
    if matches!(input.outcome, SyncOutcome::QuotaTooLow(_)) {
        return Cond::new(
            ConditionType::QuotaClamped,
            ConditionStatus::True,
            Reason::QuotaTooLow,
            if allowed < 1 {
                format!("{what}{stale} allows no instance")
            } else {
                format!("{what}{stale} is below minCapacity {}", spec.min_capacity)
            },
        );
    }
    // While a write of MaxCapacity has not landed, AWS's value is the one that bounds scaling.
    let in_aws = input
        .observed
        .and_then(|o| o.target.as_ref())
        .map(|t| t.target.max_capacity);
    let registered = input.observed.is_none_or(|o| o.target.is_some());
    let target_max = |meant: i64| match in_aws {
        Some(held) if i64::from(held) != meant => format!(
            "the scalable target's MaxCapacity is to be {meant} (AWS holds {held} until that is written)"
        ),
        None if !registered => format!(
            "the scalable target's MaxCapacity is to be {meant} (it is not registered in AWS yet)"
        ),
        _ => format!("the scalable target's MaxCapacity is {meant}"),
    };
    if let Some(share) = input.desired.and_then(|d| d.share.as_ref()) {
        return if input
            .desired
            .is_some_and(|d| d.max_source == MaxSource::Share)
        {
            Cond::new(
                ConditionType::QuotaClamped,
                ConditionStatus::True,
                Reason::Shared,
                format!(
                    "{what}{stale} is shared: {}; {} (maxCapacity {max})",
                    share.explanation,
                    target_max(i64::from(share.cap))
                ),
            )
        } else if i64::from(max) > allowed {
            Cond::new(
                ConditionType::QuotaClamped,
                ConditionStatus::True,
                Reason::Clamped,
                format!(
                    "maxCapacity {max} is above {what}{stale}; {} ({})",
                    target_max(allowed),
                    share.explanation
                ),
            )
        } else {
            Cond::new(
                ConditionType::QuotaClamped,
                ConditionStatus::False,
                Reason::WithinQuota,
                format!(
                    "maxCapacity {max} is within this endpoint's share of {what}{stale}: {}{}",
                    share.explanation,
                    match in_aws {
                        Some(held) if held != max => {
                            format!(" (AWS holds MaxCapacity {held} until {max} is written)")
                        }
                        _ => String::new(),
                    }
                ),
            )
        };
    }
    match (spec.quota.policy, i64::from(max) > allowed) {
        (QuotaPolicy::Clamp | QuotaPolicy::Share, true) => Cond::new(
            ConditionType::QuotaClamped,
            ConditionStatus::True,
            Reason::Clamped,
            format!(
                "maxCapacity {max} is above {what}{stale}; {}",
                target_max(allowed)
            ),
        ),
        (QuotaPolicy::Ignore, true) => Cond::new(
            ConditionType::QuotaClamped,
            ConditionStatus::False,
            Reason::ClampDisabled,
            format!(
                "maxCapacity {max} is above {what}{stale} and quota.policy is Ignore: a scale-out past the quota fails whole in AWS"
            ),
        ),
        (_, false) => Cond::new(
            ConditionType::QuotaClamped,
            ConditionStatus::False,
            Reason::WithinQuota,
            format!("maxCapacity {max} is within {what}{stale}"),
        ),
    }
}

/// How long the newest activity, when it failed, still says an endpoint cannot scale. While
/// the alarm that asked for instances stays in ALARM, Application Auto Scaling is asked again
/// (docs/aws-behaviour.md §4.6: an alarm repeats Auto Scaling actions while it stays in the
/// state), and a retry adds a newer activity, failed or not. A failure with nothing newer after
/// the longest scale-out cooldown and two more minutes means nothing asks for instances any
/// more: it is history, not the endpoint's state, and keeping Ready False for it would last
/// until the next burst, however long after.
pub(super) fn failure_current_for(spec: &AsyncEndpointScalingSpec) -> i64 {
    let cooldown = spec
        .target_tracking
        .scale_out_cooldown_seconds
        .max(spec.scale_from_zero.cooldown_seconds);
    i64::from(cooldown.max(0)) + 120
}

pub(super) fn scaling_condition(
    observed: Option<&Observed>,
    spec: &AsyncEndpointScalingSpec,
    now: &Time,
) -> Cond {
    let Some(observed) = observed else {
        return Cond::new(
            ConditionType::ScalingHealthy,
            ConditionStatus::Unknown,
            Reason::NotObserved,
            "scaling activities have not been read",
        );
    };
    match observed.activities.first() {
        None => Cond::new(
            ConditionType::ScalingHealthy,
            ConditionStatus::True,
            Reason::NoActivity,
            "no scaling activity recorded yet",
        ),
        Some(a) if a.status_code == "Failed" => {
            let message = a
                .status_message
                .clone()
                .unwrap_or_else(|| a.description.clone());
            // Only an alarm's activity is asked for again; a scheduled action's or a minimum's
            // failure stays the state until something newer. Counted from when it ended (a
            // scale-out may run for minutes before it fails); not ended, or unreadable: current.
            let ended = a
                .end_time
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            let current_for = failure_current_for(spec);
            if a.alarm_triggered()
                && let Some(ended) = ended
                && now.0.as_second() - ended.as_second() > current_for
            {
                return Cond::new(
                    ConditionType::ScalingHealthy,
                    ConditionStatus::True,
                    Reason::EarlierActivityFailed,
                    format!(
                        "the newest scaling activity failed at {ended}, more than {current_for}s ago, and none followed: nothing asks for instances now (while an alarm asks, Application Auto Scaling tries again every minute). It failed with: {message}"
                    ),
                );
            }
            let reason = if a.failed_on_quota() {
                Reason::QuotaExceeded
            } else {
                Reason::ScalingActivityFailed
            };
            Cond::new(
                ConditionType::ScalingHealthy,
                ConditionStatus::False,
                reason,
                message,
            )
        }
        Some(a) => Cond::new(
            ConditionType::ScalingHealthy,
            ConditionStatus::True,
            Reason::LastActivityOk,
            format!(
                "newest scaling activity is {}: {}",
                a.status_code, a.description
            ),
        ),
    }
}

pub(super) fn ready_condition(
    synced: &Cond,
    healthy: &Cond,
    quota: &Cond,
    input: &StatusInput<'_>,
) -> Cond {
    if synced.status != ConditionStatus::True {
        return synced.as_kind(ConditionType::Ready, synced.status);
    }
    if healthy.status == ConditionStatus::False {
        return healthy.as_kind(ConditionType::Ready, ConditionStatus::False);
    }
    // A first registration with maxCapacity as written may be past the quota (trap 2): until the
    // quota is read, whether the endpoint can scale is not known.
    let unchecked = input.desired.is_some_and(|d| {
        matches!(
            d.max_source,
            MaxSource::SpecWhileQuotaUnknown | MaxSource::MinWhileQuotaUnknown
        )
    });
    if unchecked {
        return quota.as_kind(ConditionType::Ready, ConditionStatus::Unknown);
    }
    let spec = input.spec;
    let max = input.desired.map_or(spec.max_capacity, |d| d.effective_max);
    // While a schedule holds other capacities than the spec's, say so.
    let min = input
        .desired
        .map_or(spec.min_capacity, |d| d.target.min_capacity);
    // A share of 0 leaves the endpoint unable to take a request: not ready, and why.
    if max == 0
        && let Some(share) = input.desired.and_then(|d| d.share.as_ref())
    {
        return Cond::new(
            ConditionType::Ready,
            ConditionStatus::False,
            Reason::WaitingForQuota,
            format!(
                "endpoint {} variant {} may hold no instance for now, so its requests wait: {}; it gets one when another endpoint scales in or the quota is raised",
                spec.endpoint_name, spec.variant_name, share.explanation
            ),
        );
    }
    let mut note = String::new();
    if !spec.schedules.is_empty() {
        if spec.suspend {
            note.push_str(" (suspended: its schedules do not run)");
        } else if min != spec.min_capacity || max > spec.max_capacity {
            note.push_str(" (as its schedules set them now)");
        }
    }
    Cond::new(
        ConditionType::Ready,
        ConditionStatus::True,
        Reason::Ready,
        format!(
            "endpoint {} variant {} can scale between {min} and {max} instances{note}",
            spec.endpoint_name, spec.variant_name
        ),
    )
}
