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
    OwnedPolicyStatus, OwnedTargetStatus, QuotaStatus, ScalingActivityStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::desired::{Desired, quota_instances};
use crate::endpoint::EndpointProblem;
use crate::model::{EndpointReading, Observed, QuotaLookup};
use crate::names::ResourceNames;
use crate::plan::foreign_policies;

pub use crate::conditions::{ConditionStatus, ConditionType, Reason};

mod decide;

use decide::{quota_condition, ready_condition, scaling_condition, synced_condition};

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
mod tests;
