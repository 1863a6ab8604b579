//! (observed, outcome) → status and conditions.
//!
//! Conditions (all positive polarity):
//! - `Ready`: the summary. True only when AWS matches the desired state and nothing blocks scaling.
//! - `Synced`: AWS matches the desired state.
//! - `QuotaClamped`: True when the quota lowered maxCapacity; Unknown when it could not be read.
//! - `ScalingHealthy`: False when the newest scaling activity failed (AWS's message verbatim).
//!
//! `lastTransitionTime` moves only when a condition's status flips, so a status computed twice
//! from the same world is equal, and callers can skip the patch ([`same_ignoring_time`]).

use asyncscale_api::{
    AsyncEndpointScalingSpec, AsyncEndpointScalingStatus, EndpointStatus, OwnedAlarmStatus,
    OwnedPolicyStatus, OwnedTargetStatus, QuotaPolicy, QuotaStatus, ScalingActivityStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::desired::{Desired, MaxSource, quota_instances};
use crate::endpoint::EndpointProblem;
use crate::model::{EndpointReading, Observed, QuotaLookup};
use crate::names::ResourceNames;
use crate::plan::foreign_policies;

pub use crate::conditions::{ConditionStatus, ConditionType, Reason};

/// How the attempt to converge ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncOutcome {
    /// AWS matches the desired state (nothing to do, or every change succeeded).
    InSync,
    /// `plan` only: this many changes would be made.
    ChangesPending(usize),
    /// A change failed; the message says which and why.
    ApplyFailed(String),
    /// The spec is invalid; nothing was written.
    InvalidSpec(String),
    /// The scalable target belongs to someone else; nothing was written.
    Conflict(String),
    /// The instance quota leaves no room for minCapacity; nothing was written.
    QuotaTooLow(String),
    /// The change needs the instance quota, which could not be read; nothing was written.
    WaitingForQuota(String),
    /// AWS could not be read.
    ObserveFailed(String),
    /// The resource's IAM role could not be assumed (STS's words); nothing was read or written.
    RoleNotAssumed(String),
    /// The SageMaker endpoint cannot be scaled as the spec says; nothing was written.
    EndpointUnusable(Box<EndpointProblem>),
}

/// Everything a status is computed from.
#[derive(Debug, Clone)]
pub struct StatusInput<'a> {
    pub generation: Option<i64>,
    pub spec: &'a AsyncEndpointScalingSpec,
    pub quota: Option<&'a QuotaLookup>,
    pub desired: Option<&'a Desired>,
    /// AWS as read after applying (or before, when only planning).
    pub observed: Option<&'a Observed>,
    /// The SageMaker endpoint as read with `observed`.
    pub endpoint: Option<&'a EndpointReading>,
    pub outcome: SyncOutcome,
    /// The last good observation of AWS is too old to stand for the present: a failed refresh
    /// then makes Ready Unknown instead of keeping the last observed conditions.
    pub observation_stale: bool,
}

/// What Synced's message says while the conditions show the last good observation.
const LAST_GOOD_NOTE: &str =
    "(the latest refresh of AWS failed; the conditions show the last good observation)";

/// The status a resource gets on its first visit, before anything is known.
pub fn initial_status(generation: Option<i64>, now: &Time) -> AsyncEndpointScalingStatus {
    AsyncEndpointScalingStatus {
        observed_generation: generation,
        conditions: vec![condition(
            ConditionType::Ready,
            ConditionStatus::Unknown,
            Reason::Reconciling,
            "asyncscale is reading AWS",
            generation,
            now,
        )],
        ..Default::default()
    }
}

pub fn compute_status(
    input: &StatusInput<'_>,
    previous: Option<&AsyncEndpointScalingStatus>,
    now: &Time,
) -> AsyncEndpointScalingStatus {
    // A failed read says nothing new about AWS: keep what was last observed (the generation it
    // was observed for included), and say in Synced that the refresh failed, in words that do not
    // change from one failure to the next, so a hiccup costs one status write, not one each.
    if let (SyncOutcome::ObserveFailed(_), Some(previous)) = (&input.outcome, previous)
        && !input.observation_stale
        && find(previous, ConditionType::Ready).is_some()
    {
        let mut kept = previous.clone();
        for c in &mut kept.conditions {
            if c.type_ == ConditionType::Synced.as_str() && !c.message.ends_with(LAST_GOOD_NOTE) {
                c.message = format!("{} {LAST_GOOD_NOTE}", c.message);
            }
        }
        return kept;
    }
    let spec = input.spec;
    let names = ResourceNames::new(&spec.endpoint_name, &spec.variant_name);
    let generation = input.generation;
    let mut status = AsyncEndpointScalingStatus {
        observed_generation: generation,
        // What AWS holds, when it was read: while a write fails (or waits), that is what bounds
        // scaling, not what asyncscale means to write.
        // None after a first registration that failed: AWS was read and holds no target.
        effective_max_capacity: match (input.observed, &input.outcome) {
            (Some(o), _) if o.target.is_some() => o.target.as_ref().map(|t| t.target.max_capacity),
            (Some(_), SyncOutcome::ApplyFailed(_)) => None,
            _ => input.desired.map(|d| d.effective_max),
        },
        quota: input.quota.map(|q| quota_status(q, input.desired)),
        ..Default::default()
    };
    // Nothing read: what AWS last held (names, ARNs, MaxCapacity, the last activity) still
    // stands; only the conditions say it could not be refreshed.
    if let (SyncOutcome::ObserveFailed(_) | SyncOutcome::RoleNotAssumed(_), None, Some(previous)) =
        (&input.outcome, input.observed, previous)
    {
        status = AsyncEndpointScalingStatus {
            observed_generation: previous.observed_generation,
            conditions: Vec::new(),
            ..previous.clone()
        };
    }
    if let Some(observed) = input.observed {
        status.scalable_target = observed.target.as_ref().map(|t| OwnedTargetStatus {
            resource_id: t.target.resource_id.clone(),
            arn: t.arn.clone(),
        });
        let policy = |name: &str| {
            observed.policy(name).map(|p| OwnedPolicyStatus {
                name: p.policy.name.clone(),
                arn: Some(p.arn.clone()),
            })
        };
        status.target_tracking_policy = policy(&names.target_tracking_policy);
        status.scale_from_zero_policy = policy(&names.scale_from_zero_policy);
        status.scale_from_zero_alarm = observed.alarm.as_ref().map(|a| OwnedAlarmStatus {
            name: a.alarm.name.clone(),
            arn: a.arn.clone(),
            state: a.state.clone(),
        });
        status.foreign_policies = foreign_policies(&names, observed);
        status.foreign_scheduled_actions = crate::plan::foreign_scheduled_actions(observed);
        status.last_scaling_activity = observed.activities.first().map(|a| ScalingActivityStatus {
            status_code: a.status_code.clone(),
            description: a.description.clone(),
            message: a.status_message.clone(),
            start_time: a.start_time.clone(),
        });
        if let Some(desired) = input.desired {
            status.schedules = schedule_statuses(desired, observed, previous, now);
        }
    }

    if let Some(EndpointReading::Found { endpoint, config }) = input.endpoint {
        let variant = endpoint.variant(&spec.variant_name);
        let (current, desired) = (
            variant.and_then(|v| v.current_instances),
            variant.and_then(|v| v.desired_instances),
        );
        status.instances = variant.map(|_| {
            let shown = |n: Option<i32>| n.map_or("-".to_string(), |n| n.to_string());
            format!("{}/{}", shown(current), shown(desired))
        });
        status.endpoint = Some(EndpointStatus {
            status: endpoint.summary.status.clone(),
            config_name: Some(endpoint.config_name.clone()),
            instance_type: config
                .as_ref()
                .and_then(|c| c.instance_type(&spec.variant_name))
                .map(str::to_string),
            current_instances: current,
            desired_instances: desired,
        });
    }
    let synced = synced_condition(&input.outcome);
    let quota = quota_condition(input);
    let healthy = scaling_condition(input.observed, input.spec, now);
    let ready = ready_condition(&synced, &healthy, &quota, input);
    let fresh = [ready, synced, quota, healthy]
        .into_iter()
        .map(|c| condition(c.kind, c.status, c.reason, &c.message, generation, now))
        .collect();
    status.conditions = keep_transition_times(previous.map_or(&[][..], |p| &p.conditions), fresh);
    // QuotaClamped says what AWS holds. When AWS could not be read or the change not written, it
    // holds what it held: keep the condition, so that the clamp's change is told (and its Event
    // published) when AWS really takes it.
    if matches!(
        input.outcome,
        SyncOutcome::ObserveFailed(_)
            | SyncOutcome::RoleNotAssumed(_)
            | SyncOutcome::ApplyFailed(_)
            | SyncOutcome::EndpointUnusable(_)
            | SyncOutcome::WaitingForQuota(_)
    ) && let Some(kept) = previous.and_then(|p| find(p, ConditionType::QuotaClamped))
    {
        for c in &mut status.conditions {
            if c.type_ == ConditionType::QuotaClamped.as_str() {
                *c = kept.clone();
            }
        }
    }
    status
}

/// One condition before it gets its generation and time.
struct Cond {
    kind: ConditionType,
    status: ConditionStatus,
    reason: Reason,
    message: String,
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

fn synced_condition(outcome: &SyncOutcome) -> Cond {
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

fn quota_condition(input: &StatusInput<'_>) -> Cond {
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
fn failure_current_for(spec: &AsyncEndpointScalingSpec) -> i64 {
    let cooldown = spec
        .target_tracking
        .scale_out_cooldown_seconds
        .max(spec.scale_from_zero.cooldown_seconds);
    i64::from(cooldown.max(0)) + 120
}

fn scaling_condition(
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

fn ready_condition(synced: &Cond, healthy: &Cond, quota: &Cond, input: &StatusInput<'_>) -> Cond {
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

fn quota_status(lookup: &QuotaLookup, desired: Option<&Desired>) -> QuotaStatus {
    let unknown_reason = lookup.refresh_error().map(str::to_string);
    let share = desired.and_then(|d| d.share.as_ref());
    match lookup.value() {
        Some(q) => QuotaStatus {
            name: q.name.clone(),
            code: Some(q.code.clone()),
            value: Some(quota_instances(q)),
            source: Some(q.source.as_str().to_string()),
            in_use: share.map(|s| i64::from(s.in_use)),
            sharing_endpoints: share.map(|s| s.endpoints as i64),
            unknown_reason,
        },
        None => QuotaStatus {
            name: lookup.name().to_string(),
            unknown_reason,
            ..Default::default()
        },
    }
}

fn condition(
    kind: ConditionType,
    status: ConditionStatus,
    reason: Reason,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: kind.as_str().to_string(),
        status: status.as_str().to_string(),
        reason: reason.as_str().to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// The status of a resource whose AWS resources could not be removed: the previous status with
/// Ready and Synced False, reason `DeleteFailed`.
/// Each schedule's action: its next run on the clock, its last run as the newest scaling
/// activity it caused shows (or as the previous status showed it, once the activity is no longer
/// among the newest read), and the MaxCapacity it sets when the quota lowered it.
fn schedule_statuses(
    desired: &crate::Desired,
    observed: &Observed,
    previous: Option<&AsyncEndpointScalingStatus>,
    now: &Time,
) -> Vec<asyncscale_api::ScheduleStatus> {
    // Only runs of this action: one of the same name deleted before it was created (a schedule
    // removed and added again, a resource recreated) does not count, nor does a run that failed.
    let since = |created: Option<jiff::Timestamp>, at: &str| {
        created.is_some_and(|c| at.parse::<jiff::Timestamp>().is_ok_and(|t| t >= c))
    };
    let previously = |action: &str, created: Option<jiff::Timestamp>| {
        previous?
            .schedules
            .iter()
            .find(|s| s.action_name == action)?
            .last_run
            .clone()
            .filter(|at| since(created, at))
    };
    desired
        .schedules
        .iter()
        .map(|s| {
            let created = observed.scheduled_action_created(&s.action.name);
            let last_run = observed
                .activities
                .iter()
                .find(|a| {
                    a.scheduled_action() == Some(s.action.name.as_str())
                        && a.status_code != "Failed"
                        && since(created, &a.start_time)
                })
                .map(|a| a.start_time.clone())
                .or_else(|| previously(&s.action.name, created));
            // After the last run too: AWS's clock may be ahead of ours.
            let after = last_run
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map_or(now.0, |ran| ran.max(now.0));
            asyncscale_api::ScheduleStatus {
                name: s.name.clone(),
                action_name: s.action.name.clone(),
                next_run: crate::scheduled::next_run(&s.action, created, after)
                    .map(|t| t.to_string()),
                last_run,
                effective_max_capacity: s.action.max_capacity.filter(|_| s.lowered_max),
                effective_min_capacity: s.action.min_capacity.filter(|_| s.lowered_min),
            }
        })
        .collect()
}

pub fn deletion_failed_status(
    previous: Option<&AsyncEndpointScalingStatus>,
    generation: Option<i64>,
    message: &str,
    now: &Time,
) -> AsyncEndpointScalingStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    let replaced = [ConditionType::Ready, ConditionType::Synced];
    let mut fresh: Vec<Condition> = replaced
        .into_iter()
        .map(|kind| {
            let failed = (ConditionStatus::False, Reason::DeleteFailed);
            condition(kind, failed.0, failed.1, message, generation, now)
        })
        .collect();
    fresh.extend(
        status
            .conditions
            .iter()
            .filter(|c| !replaced.iter().any(|k| c.type_ == k.as_str()))
            .cloned(),
    );
    status.conditions = keep_transition_times(&status.conditions, fresh);
    status
}

/// Keeps each condition's previous `lastTransitionTime` unless its status flipped.
pub fn keep_transition_times(previous: &[Condition], fresh: Vec<Condition>) -> Vec<Condition> {
    fresh
        .into_iter()
        .map(|mut c| {
            if let Some(old) = previous
                .iter()
                .find(|o| o.type_ == c.type_ && o.status == c.status)
            {
                c.last_transition_time = old.last_transition_time.clone();
            }
            c
        })
        .collect()
}

/// True when two statuses differ only in condition timestamps (or in the order of conditions,
/// a list keyed by type): no patch is needed.
pub fn same_ignoring_time(a: &AsyncEndpointScalingStatus, b: &AsyncEndpointScalingStatus) -> bool {
    let strip = |s: &AsyncEndpointScalingStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        }
        s.conditions.sort_by(|x, y| x.type_.cmp(&y.type_));
        s
    };
    strip(a) == strip(b)
}

/// Looks a condition up by type.
pub fn find(status: &AsyncEndpointScalingStatus, kind: ConditionType) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == kind.as_str())
}

/// Whether a condition has this status and reason.
pub fn is(condition: &Condition, status: ConditionStatus, reason: Reason) -> bool {
    condition.status == status.as_str() && condition.reason == reason.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::desire;
    use crate::model::{Quota, QuotaSource, ScalingActivity};
    use crate::names::Owner;
    use k8s_openapi::jiff::Timestamp;

    const QUOTA_MESSAGE: &str = "Failed to set desired instance count to 20. Reason: The account-level service limit 'ml.g4dn.xlarge for endpoint usage' is 4 Instances, with current utilization of 1 Instances and a request delta of 19 Instances. Please contact AWS support to request an increase for this limit. (Service: AmazonSageMaker; Status Code: 400; Error Code: ResourceLimitExceeded; Request ID: r-1).";

    fn spec() -> AsyncEndpointScalingSpec {
        AsyncEndpointScalingSpec::sdxl()
    }

    fn quota(value: f64) -> QuotaLookup {
        QuotaLookup::Known(Quota {
            name: "ml.g4dn.xlarge for endpoint usage".into(),
            code: "L-B67CFA0C".into(),
            value,
            source: QuotaSource::Applied,
        })
    }

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn activity(code: &str, message: &str) -> ScalingActivity {
        ScalingActivity {
            activity_id: "a-1".into(),
            status_code: code.into(),
            description: "Setting desired instance count to 20.".into(),
            cause: "monitor alarm X in state ALARM triggered policy Y".into(),
            status_message: Some(message.into()),
            start_time: "2026-11-27T10:00:00Z".into(),
            end_time: Some("2026-11-27T10:00:00Z".into()),
        }
    }

    /// AWS with one successful scaling activity.
    fn scaled_once() -> Observed {
        let mut observed = Observed::empty();
        observed.activities.push(activity(
            "Successful",
            "Successfully set desired instance count to 1.",
        ));
        observed
    }

    /// What the reconciler hands to `compute_status` after a visit that read AWS.
    fn input_of<'a>(
        spec: &'a AsyncEndpointScalingSpec,
        quota: &'a QuotaLookup,
        desired: &'a Desired,
        observed: &'a Observed,
        outcome: SyncOutcome,
    ) -> StatusInput<'a> {
        StatusInput {
            generation: Some(3),
            spec,
            quota: Some(quota),
            desired: Some(desired),
            observed: Some(observed),
            endpoint: None,
            outcome,
            observation_stale: false,
        }
    }

    fn run(
        observed: &Observed,
        outcome: SyncOutcome,
        previous: Option<&AsyncEndpointScalingStatus>,
        now: i64,
    ) -> AsyncEndpointScalingStatus {
        let spec = spec();
        let q = quota(4.0);
        let owner = Owner {
            namespace: "ml".into(),
            name: "sdxl".into(),
            uid: None,
        };
        let desired = desire(&spec, &owner, &q, None, None).unwrap();
        let input = input_of(&spec, &q, &desired, observed, outcome);
        compute_status(&input, previous, &at(now))
    }

    /// AWS's newest wording (docs/aws-behaviour.md §5.4) and the documentation's
    /// older example both say the quota stopped a scale-out.
    #[test]
    fn a_schedule_shows_only_its_own_successful_runs() {
        let mut spec = spec();
        spec.schedules = vec![asyncscale_api::ScheduleSpec {
            min_capacity: Some(1),
            ..asyncscale_api::ScheduleSpec::new("up", "rate(1 hour)")
        }];
        let q = quota(4.0);
        let owner = Owner {
            namespace: "ml".into(),
            name: "sdxl".into(),
            uid: None,
        };
        let mut observed = Observed::empty();
        observed
            .scheduled_actions
            .push(crate::ObservedScheduledAction {
                action: crate::ScheduledAction {
                    name: "asyncscale-up".into(),
                    resource_id: "endpoint/sdxl-async/variant/AllTraffic".into(),
                    schedule: "rate(1 hour)".into(),
                    timezone: None,
                    start_time: None,
                    end_time: None,
                    min_capacity: Some(1),
                    max_capacity: None,
                },
                arn: None,
                created: Some("2026-01-01T10:00:00Z".parse().unwrap()),
            });
        let ran = |status: &str, at: &str| ScalingActivity {
            activity_id: at.into(),
            status_code: status.into(),
            description: "Setting min capacity to 1".into(),
            cause: "scheduled action name asyncscale-up was triggered".into(),
            status_message: None,
            start_time: at.into(),
            end_time: Some(at.into()),
        };
        // Newest first: a failed run, a run of this action, a run of an older one of the name.
        observed.activities = vec![
            ran("Failed", "2026-01-01T13:00:00Z"),
            ran("Successful", "2026-01-01T12:00:00Z"),
            ran("Successful", "2026-01-01T09:00:00Z"),
        ];
        let mut desired = desire(&spec, &owner, &q, None, None).unwrap();
        crate::scheduled::follow_schedules(
            &mut desired,
            &spec,
            &q,
            &observed,
            "2026-01-01T13:30:00Z".parse().unwrap(),
        );
        let shown = |observed: &Observed| {
            let input = input_of(&spec, &q, &desired, observed, SyncOutcome::InSync);
            compute_status(&input, None, &at(0)).schedules[0].clone()
        };
        assert_eq!(
            shown(&observed).last_run.as_deref(),
            Some("2026-01-01T12:00:00Z")
        );
        observed.activities.remove(1);
        assert_eq!(
            shown(&observed).last_run,
            None,
            "the older action's run is not this one's"
        );
    }

    #[test]
    fn both_wordings_of_a_quota_failure_are_recognised() {
        const NEWEST: &str = "Failed to set desired instance count to 20. Reason: The account-level service limit 'ml.g4dn.xlarge for endpoint usage' is 4 Instances, with current utilization of 1 Instances and a request delta of 19 Instances. Please use AWS Service Quotas to request an increase for this quota. If AWS Service Quotas is not available, contact AWS support to request an increase for this quota.";
        for message in [NEWEST, QUOTA_MESSAGE] {
            let mut observed = Observed::empty();
            observed.activities.push(activity("Failed", message));
            let status = run(&observed, SyncOutcome::InSync, None, 100);
            let healthy = find(&status, ConditionType::ScalingHealthy).unwrap();
            assert_eq!(healthy.reason, "QuotaExceeded", "{message}");
            assert_eq!(healthy.message, message);
        }
    }

    /// A quota failure is the endpoint's state while something still asks (Application Auto
    /// Scaling retries every minute), and history once the longest scale-out cooldown and two
    /// minutes have passed with no newer activity: Ready comes back without waiting for the next
    /// burst, and the message keeps AWS's words.
    #[test]
    fn a_failure_nothing_followed_for_long_is_history_not_the_state() {
        let mut observed = Observed::empty();
        observed.activities.push(activity("Failed", QUOTA_MESSAGE));
        let failed_at = "2026-11-27T10:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_second();
        // Default cooldowns: 300 s, so 420 s in all.
        let at = |after: i64| run(&observed, SyncOutcome::InSync, None, failed_at + after);
        for (after, ready, reason) in [
            (60, "False", "QuotaExceeded"),
            (420, "False", "QuotaExceeded"),
            (421, "True", "EarlierActivityFailed"),
        ] {
            let status = at(after);
            let healthy = find(&status, ConditionType::ScalingHealthy).unwrap();
            assert_eq!(
                healthy.reason, reason,
                "{after}s after: {}",
                healthy.message
            );
            let ready_now = find(&status, ConditionType::Ready).unwrap();
            assert_eq!(
                ready_now.status, ready,
                "{after}s after: {}",
                ready_now.message
            );
            if reason == "EarlierActivityFailed" {
                assert!(
                    healthy.message.contains(QUOTA_MESSAGE),
                    "{}",
                    healthy.message
                );
                assert!(
                    healthy.message.contains("more than 420s ago"),
                    "{}",
                    healthy.message
                );
            }
        }
        // Counted from when it ended: a scale-out that ran ten minutes before failing is news.
        let mut slow = activity("Failed", QUOTA_MESSAGE);
        slow.end_time = Some("2026-11-27T10:10:00Z".into());
        let mut observed = Observed::empty();
        observed.activities.push(slow);
        let status = run(&observed, SyncOutcome::InSync, None, failed_at + 600 + 60);
        assert_eq!(find(&status, ConditionType::Ready).unwrap().status, "False");
        // Not ended (or not said when), or not asked for by an alarm: nothing asks again, and
        // the failure stays the state until something newer.
        for change in [
            (|a: &mut ScalingActivity| a.end_time = None) as fn(&mut ScalingActivity),
            |a| a.end_time = Some("yesterday".into()),
            |a| a.cause = "scheduled action name asyncscale-up was triggered".into(),
            |a| a.cause = "minimum capacity was set to 2".into(),
        ] {
            let mut failed = activity("Failed", QUOTA_MESSAGE);
            change(&mut failed);
            let mut observed = Observed::empty();
            observed.activities.push(failed.clone());
            let status = run(&observed, SyncOutcome::InSync, None, failed_at + 3600);
            let healthy = find(&status, ConditionType::ScalingHealthy).unwrap();
            assert_eq!(healthy.reason, "QuotaExceeded", "{failed:?}");
        }
    }

    #[test]
    fn clamp_and_quota_failure_are_reported_with_aws_words() {
        let mut observed = Observed::empty();
        observed.activities.push(activity("Failed", QUOTA_MESSAGE));
        let status = run(&observed, SyncOutcome::InSync, None, 100);
        assert_eq!(status.effective_max_capacity, Some(4));
        assert_eq!(status.observed_generation, Some(3));
        let clamped = find(&status, ConditionType::QuotaClamped).unwrap();
        assert_eq!(
            (clamped.status.as_str(), clamped.reason.as_str()),
            ("True", "Clamped")
        );
        assert!(clamped.message.contains(
            "'ml.g4dn.xlarge for endpoint usage' (L-B67CFA0C, applied value) of 4 instances"
        ));
        let healthy = find(&status, ConditionType::ScalingHealthy).unwrap();
        assert_eq!(
            (healthy.status.as_str(), healthy.reason.as_str()),
            ("False", "QuotaExceeded")
        );
        assert_eq!(healthy.message, QUOTA_MESSAGE);
        let ready = find(&status, ConditionType::Ready).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "QuotaExceeded")
        );
        assert_eq!(ready.observed_generation, Some(3));
    }

    #[test]
    fn other_failures_are_scaling_activity_failed() {
        let mut observed = Observed::empty();
        observed
            .activities
            .push(activity("Failed", "Endpoint is being updated"));
        let status = run(&observed, SyncOutcome::InSync, None, 100);
        assert_eq!(
            find(&status, ConditionType::ScalingHealthy).unwrap().reason,
            "ScalingActivityFailed"
        );
    }

    #[test]
    fn ready_when_synced_and_nothing_failed() {
        let observed = scaled_once();
        let status = run(&observed, SyncOutcome::InSync, None, 100);
        let ready = find(&status, ConditionType::Ready).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Ready")
        );
        assert_eq!(
            ready.message,
            "endpoint sdxl-async variant AllTraffic can scale between 0 and 4 instances"
        );
        let conflict = run(
            &observed,
            SyncOutcome::Conflict("owned by x/y".into()),
            None,
            100,
        );
        let ready = find(&conflict, ConditionType::Ready).unwrap();
        assert_eq!(
            (
                ready.status.as_str(),
                ready.reason.as_str(),
                ready.message.as_str()
            ),
            ("False", "Conflict", "owned by x/y")
        );
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let observed = Observed::empty();
        let first = run(&observed, SyncOutcome::InSync, None, 100);
        let second = run(&observed, SyncOutcome::InSync, Some(&first), 200);
        assert_eq!(first, second, "nothing changed, so nothing moves");
        assert!(same_ignoring_time(&first, &second));
        let failed = run(
            &observed,
            SyncOutcome::ApplyFailed("boom".into()),
            Some(&second),
            300,
        );
        let synced = find(&failed, ConditionType::Synced).unwrap();
        assert_eq!(synced.last_transition_time, at(300));
        let quota = find(&failed, ConditionType::QuotaClamped).unwrap();
        assert_eq!(
            quota.last_transition_time,
            at(100),
            "QuotaClamped did not flip"
        );
        assert!(!same_ignoring_time(&second, &failed));
    }

    #[test]
    fn first_visit_sets_ready_unknown() {
        let status = initial_status(Some(1), &at(5));
        let ready = find(&status, ConditionType::Ready).unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(status.observed_generation, Some(1));
    }

    #[test]
    fn a_failed_refresh_keeps_the_last_observation_until_it_is_stale() {
        let observed = scaled_once();
        let good = run(&observed, SyncOutcome::InSync, None, 100);
        let failed = || {
            SyncOutcome::ObserveFailed("application-autoscaling DescribeScalableTargets failed: ThrottlingException: Rate exceeded".into())
        };
        let spec = spec();
        let input = |stale| StatusInput {
            generation: Some(4),
            spec: &spec,
            quota: None,
            desired: None,
            observed: None,
            endpoint: None,
            outcome: failed(),
            observation_stale: stale,
        };
        let kept = compute_status(&input(false), Some(&good), &at(200));
        let ready = find(&kept, ConditionType::Ready).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Ready")
        );
        assert_eq!(
            kept.observed_generation,
            Some(3),
            "the generation it was observed for"
        );
        let synced = find(&kept, ConditionType::Synced).unwrap();
        assert!(
            synced.message.contains("the latest refresh of AWS failed"),
            "{}",
            synced.message
        );
        let again = compute_status(&input(false), Some(&kept), &at(300));
        assert!(
            same_ignoring_time(&kept, &again),
            "a second failure writes nothing"
        );
        let stale = compute_status(&input(true), Some(&kept), &at(400));
        let ready = find(&stale, ConditionType::Ready).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("Unknown", "ObserveFailed")
        );
        let back = run(&observed, SyncOutcome::InSync, Some(&kept), 500);
        assert!(
            !find(&back, ConditionType::Synced)
                .unwrap()
                .message
                .contains("refresh")
        );
    }

    #[test]
    fn the_clamp_stays_until_aws_takes_the_change_so_its_lifting_is_told_then() {
        let observed = Observed::empty();
        let clamped = run(&observed, SyncOutcome::InSync, None, 100);
        let mut spec = spec();
        spec.max_capacity = 3;
        let q = quota(4.0);
        let owner = Owner {
            namespace: "ml".into(),
            name: "sdxl".into(),
            uid: None,
        };
        let desired = desire(&spec, &owner, &q, None, None).unwrap();
        let status_for = |outcome, previous, now| {
            let input = StatusInput {
                generation: Some(4),
                spec: &spec,
                quota: Some(&q),
                desired: Some(&desired),
                observed: Some(&observed),
                endpoint: None,
                outcome,
                observation_stale: true,
            };
            compute_status(&input, Some(previous), &at(now))
        };
        let clamp_of = |status: &AsyncEndpointScalingStatus| {
            find(status, ConditionType::QuotaClamped)
                .unwrap()
                .reason
                .clone()
        };
        // The write of MaxCapacity 3 failed, then AWS could not be read: AWS still holds 4.
        let failed = status_for(
            SyncOutcome::ApplyFailed("RegisterScalableTarget failed: timeout".into()),
            &clamped,
            200,
        );
        assert_eq!(clamp_of(&failed), "Clamped");
        let unread = status_for(SyncOutcome::ObserveFailed("timeout".into()), &failed, 300);
        assert_eq!(clamp_of(&unread), "Clamped");
        let applied = status_for(SyncOutcome::InSync, &unread, 400);
        assert_eq!(clamp_of(&applied), "WithinQuota");
        let news = crate::notices::notices(Some(&unread), &applied, &SyncOutcome::InSync);
        assert!(
            news.iter().any(|n| n.reason == "QuotaClampLifted"),
            "{news:?}"
        );
    }
}
