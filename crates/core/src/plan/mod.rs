//! (desired, observed) → an ordered plan of AWS changes.
//!
//! Order matters to AWS: the scalable target exists before its policies (PutScalingPolicy on an
//! unregistered target fails with ObjectNotFoundException), and the step policy exists before the
//! alarm that names its ARN. On removal our alarm goes first: AWS deletes a step policy's alarm
//! action but never the alarm itself (docs/aws-behaviour.md §2.15, §2.4). An in-sync world gives
//! an empty plan, and only resources asyncscale owns ever appear in a plan.

use std::fmt;

use crate::desired::Desired;
use crate::model::*;
use asyncscale_api::DeletionPolicy;

use crate::names::{OWNER_TAG_KEYS, Owner, ResourceNames};

mod fields;
mod ownership;

use fields::*;
use ownership::conflict;
use ownership::nobody_departs;
pub use ownership::{Adoption, Ownership, ownership};

/// Where a PutAlarm gets the ARN of the step policy it invokes.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmActionArn {
    /// The step policy already exists; its ARN is stable across updates.
    Known(String),
    /// The ARN that an earlier PutPolicy in the same plan returns for this policy name.
    OfPolicy(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// RegisterScalableTarget. `tags` are applied when the target is created: sent on an update as
    /// well, they tag a target that disappeared between observing and updating and is recreated.
    RegisterTarget {
        target: ScalableTarget,
        tags: Tags,
        create: bool,
    },
    DeregisterTarget {
        resource_id: String,
    },
    /// Application Auto Scaling TagResource on the scalable target (adoption).
    TagTarget {
        arn: String,
        tags: Tags,
    },
    /// Application Auto Scaling UntagResource (giving a target back on delete).
    UntagTarget {
        arn: String,
        keys: Vec<String>,
    },
    /// CloudWatch TagResource on our alarm (adoption: PutMetricAlarm ignores tags on update).
    TagAlarm {
        arn: String,
        tags: Tags,
    },
    /// CloudWatch UntagResource on our alarm (releasing it with deletionPolicy Retain).
    UntagAlarm {
        arn: String,
        keys: Vec<String>,
    },
    PutPolicy {
        policy: ScalingPolicy,
    },
    DeletePolicy {
        resource_id: String,
        name: String,
    },
    /// PutMetricAlarm; `alarm.alarm_actions` is replaced by the resolved `action`.
    PutAlarm {
        alarm: MetricAlarm,
        tags: Tags,
        action: AlarmActionArn,
    },
    DeleteAlarm {
        name: String,
    },
    /// PutScheduledAction (create or update; every field is sent).
    PutScheduledAction {
        action: ScheduledAction,
    },
    DeleteScheduledAction {
        resource_id: String,
        name: String,
    },
}

/// One change and a line a person can read, e.g. `~ scalable target ...: maxCapacity 20 → 4`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedChange {
    pub change: Change,
    pub summary: String,
}

impl fmt::Display for PlannedChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub changes: Vec<PlannedChange>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
    /// One readable line per change.
    pub fn summaries(&self) -> Vec<String> {
        self.changes.iter().map(|c| c.summary.clone()).collect()
    }
    fn push(&mut self, change: Change, summary: String) {
        self.changes.push(PlannedChange { change, summary });
    }
}

/// Why asyncscale will not touch AWS for this resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Blocked {
    /// The scalable target belongs to someone else; the message names them.
    Conflict(String),
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocked::Conflict(message) => f.write_str(message),
        }
    }
}

/// The changes that make AWS match `desired`. `adoption` says whether a target that is not ours
/// may be taken over.
pub fn plan_apply(
    desired: &Desired,
    observed: &Observed,
    adoption: &Adoption<'_>,
) -> Result<Plan, Blocked> {
    let names = &desired.names;
    let mut plan = Plan::default();
    let owner_tags = desired.owner.tags();

    let existing = observed.target.as_ref();
    if let Some(target) = existing {
        let arn = target.arn.clone().unwrap_or_default();
        let owned = ownership(&target.tags, &desired.owner, adoption.departed);
        let from = match &owned {
            Ownership::Ours => None,
            Ownership::OursWithoutUid => {
                plan.push(
                    Change::TagTarget {
                        arn: arn.clone(),
                        tags: owner_tags.clone(),
                    },
                    format!(
                        "~ tag scalable target {} with the UID of its owner {}",
                        names.resource_id,
                        desired.owner.id()
                    ),
                );
                None
            }
            Ownership::Unowned if adoption.requested => Some(String::new()),
            Ownership::Other {
                id, departed: true, ..
            } if adoption.requested => Some(format!(" from {id}, which no longer exists")),
            other => return Err(conflict(names, other)),
        };
        if let Some(from) = from {
            plan.push(
                Change::TagTarget {
                    arn,
                    tags: owner_tags.clone(),
                },
                format!(
                    "~ adopt scalable target {}{from} (tag it as owned by {})",
                    names.resource_id,
                    desired.owner.id()
                ),
            );
            // PutMetricAlarm ignores tags on update (docs/aws-behaviour.md §4.1): tag an existing alarm.
            if let Some(alarm) = &observed.alarm {
                push_alarm_adoption(&mut plan, alarm, &desired.owner);
            }
        }
    }

    // Without a target, an existing alarm of our name is ours only if its tags say so (observe
    // reads them on this path): the alarm of a released or foreign setup is adopted like a target.
    if existing.is_none()
        && let Some(alarm) = &observed.alarm
    {
        let owned = match &alarm.tags {
            Some(tags) => ownership(tags, &desired.owner, adoption.departed),
            None => Ownership::Other {
                id: "(unknown: its tags were not read)".into(),
                uid: None,
                departed: false,
            },
        };
        match owned {
            Ownership::Ours | Ownership::OursWithoutUid => {}
            Ownership::Unowned | Ownership::Other { departed: true, .. } if adoption.requested => {
                push_alarm_adoption(&mut plan, alarm, &desired.owner);
            }
            other => {
                let who = match other {
                    Ownership::Other { id, .. } => format!("is managed by {id}"),
                    _ => "exists and is not managed by asyncscale".to_string(),
                };
                return Err(Blocked::Conflict(format!(
                    "alarm {} {who}; to let this resource take it over, annotate it with {}: \"true\"",
                    alarm.alarm.name,
                    asyncscale_api::ADOPT_ANNOTATION
                )));
            }
        }
    }

    // Removal of an alarm that is no longer wanted comes first.
    let sfz = desired.scale_from_zero.as_ref();
    if sfz.is_none()
        && let Some(alarm) = &observed.alarm
    {
        let name = alarm.alarm.name.clone();
        let summary = format!("- delete alarm {name} (scale-from-zero is not in effect)");
        plan.push(Change::DeleteAlarm { name }, summary);
    }

    match existing {
        None => plan.push(
            Change::RegisterTarget {
                target: desired.target.clone(),
                tags: owner_tags.clone(),
                create: true,
            },
            format!(
                "+ register scalable target {} ({})",
                names.resource_id,
                describe(&target_fields(&desired.target))
            ),
        ),
        Some(current) if current.target != desired.target => plan.push(
            Change::RegisterTarget {
                target: desired.target.clone(),
                tags: owner_tags.clone(),
                create: false,
            },
            format!(
                "~ update scalable target {}: {}",
                names.resource_id,
                diff(
                    &target_fields(&current.target),
                    &target_fields(&desired.target)
                )
            ),
        ),
        Some(_) => {}
    }

    put_policy_if_needed(
        &mut plan,
        &desired.target_tracking,
        observed,
        "target-tracking policy",
    );
    if let Some(sfz) = sfz {
        let step_put_fresh = put_policy_if_needed(
            &mut plan,
            &sfz.policy,
            observed,
            "scale-from-zero step policy",
        );
        let known_arn = observed.policy(&sfz.policy.name).map(|p| p.arn.clone());
        match (step_put_fresh, known_arn) {
            (false, Some(arn)) => {
                let want = sfz.alarm_with_action(&arn);
                match &observed.alarm {
                    Some(have) if have.alarm == want => {}
                    Some(have) => plan.push(
                        Change::PutAlarm {
                            alarm: want.clone(),
                            tags: owner_tags.clone(),
                            action: AlarmActionArn::Known(arn),
                        },
                        format!(
                            "~ update alarm {}: {}",
                            want.name,
                            diff(&alarm_fields(&have.alarm), &alarm_fields(&want))
                        ),
                    ),
                    None => plan.push(
                        Change::PutAlarm {
                            alarm: want.clone(),
                            tags: owner_tags.clone(),
                            action: AlarmActionArn::Known(arn),
                        },
                        format!(
                            "+ create alarm {} ({})",
                            want.name,
                            describe(&alarm_fields(&want))
                        ),
                    ),
                }
            }
            _ => {
                let verb = if observed.alarm.is_some() {
                    "~ update"
                } else {
                    "+ create"
                };
                plan.push(
                    Change::PutAlarm {
                        alarm: sfz.alarm.clone(),
                        tags: owner_tags.clone(),
                        action: AlarmActionArn::OfPolicy(sfz.policy.name.clone()),
                    },
                    format!(
                        "{verb} alarm {} ({}, action: the ARN of policy {})",
                        sfz.alarm.name,
                        describe(&alarm_fields(&sfz.alarm)),
                        sfz.policy.name
                    ),
                );
            }
        }
    } else if let Some(step) = observed.policy(&names.scale_from_zero_policy) {
        plan.push(
            Change::DeletePolicy { resource_id: names.resource_id.clone(), name: step.policy.name.clone() },
            format!("- delete scale-from-zero step policy {} (minCapacity > 0 or scale-from-zero disabled)", step.policy.name),
        );
    }
    plan_scheduled_actions(&mut plan, desired, observed);
    Ok(plan)
}

/// Creates, updates and deletes asyncscale's scheduled actions (`asyncscale-<schedule>`) after
/// the target exists; other tools' actions on the target are left alone.
fn plan_scheduled_actions(plan: &mut Plan, desired: &Desired, observed: &Observed) {
    for have in &observed.scheduled_actions {
        let name = &have.action.name;
        let ours = ResourceNames::schedule_of_action(name).is_some();
        if ours && !desired.schedules.iter().any(|d| d.action.name == *name) {
            plan.push(
                Change::DeleteScheduledAction {
                    resource_id: have.action.resource_id.clone(),
                    name: name.clone(),
                },
                format!(
                    "- delete scheduled action {name} (no schedule of that name in the spec; asyncscale owns the asyncscale- actions of its targets)"
                ),
            );
        }
    }
    for want in desired.schedules.iter().map(|d| &d.action) {
        match observed.scheduled_action(&want.name) {
            Some(have) if have.action.same_as(want) => {}
            Some(have) => {
                // An update that leaves MinCapacity or MaxCapacity out may keep the old value
                // (the API reference allows either reading): such a change recreates the action.
                let drops = (have.action.min_capacity.is_some() && want.min_capacity.is_none())
                    || (have.action.max_capacity.is_some() && want.max_capacity.is_none());
                if drops {
                    plan.push(
                        Change::DeleteScheduledAction {
                            resource_id: want.resource_id.clone(),
                            name: want.name.clone(),
                        },
                        format!(
                            "- delete scheduled action {} (to recreate it without a capacity it no longer sets)",
                            want.name
                        ),
                    );
                }
                plan.push(
                    Change::PutScheduledAction {
                        action: want.clone(),
                    },
                    format!(
                        "{} scheduled action {}: {}",
                        if drops { "+ create" } else { "~ update" },
                        want.name,
                        diff(&scheduled_fields(&have.action), &scheduled_fields(want))
                    ),
                );
            }
            None => plan.push(
                Change::PutScheduledAction {
                    action: want.clone(),
                },
                format!(
                    "+ create scheduled action {} ({})",
                    want.name,
                    describe(&scheduled_fields(want))
                ),
            ),
        }
    }
}

fn scheduled_fields(a: &ScheduledAction) -> Fields {
    let time =
        |t: Option<jiff::Timestamp>| t.map_or_else(|| "(unset)".to_string(), |t| t.to_string());
    let number = |n: Option<i32>| n.map_or_else(|| "(unset)".to_string(), |n| n.to_string());
    vec![
        ("schedule", a.schedule.clone()),
        (
            "timeZone",
            a.timezone.clone().unwrap_or_else(|| "UTC".into()),
        ),
        ("startTime", time(a.start_time)),
        ("endTime", time(a.end_time)),
        ("minCapacity", number(a.min_capacity)),
        ("maxCapacity", number(a.max_capacity)),
    ]
}

/// Scheduled actions on the scalable target that asyncscale does not own.
pub fn foreign_scheduled_actions(observed: &Observed) -> Vec<String> {
    observed
        .scheduled_actions
        .iter()
        .filter(|a| ResourceNames::schedule_of_action(&a.action.name).is_none())
        .map(|a| a.action.name.clone())
        .collect()
}

/// Tags an existing alarm as `owner`'s (taking it over with its target, or alone).
fn push_alarm_adoption(plan: &mut Plan, alarm: &ObservedAlarm, owner: &Owner) {
    if let Some(arn) = &alarm.arn {
        plan.push(
            Change::TagAlarm {
                arn: arn.clone(),
                tags: owner.tags(),
            },
            format!(
                "~ adopt alarm {} (tag it as owned by {})",
                alarm.alarm.name,
                owner.id()
            ),
        );
    }
}

/// Adds a PutPolicy (after a DeletePolicy when the policy type changed) when the observed policy
/// differs. Returns true when the policy gets a new ARN (it did not exist, or was recreated).
fn put_policy_if_needed(
    plan: &mut Plan,
    want: &ScalingPolicy,
    observed: &Observed,
    what: &str,
) -> bool {
    match observed.policy(&want.name) {
        Some(have) if have.policy == *want => false,
        Some(have) if have.policy.config.policy_type() == want.config.policy_type() => {
            plan.push(
                Change::PutPolicy {
                    policy: want.clone(),
                },
                format!(
                    "~ update {what} {}: {}",
                    want.name,
                    diff(&policy_fields(&have.policy), &policy_fields(want))
                ),
            );
            false
        }
        Some(have) => {
            plan.push(
                Change::DeletePolicy {
                    resource_id: want.resource_id.clone(),
                    name: want.name.clone(),
                },
                format!(
                    "- delete policy {} (it is a {}, asyncscale needs a {})",
                    want.name,
                    have.policy.config.policy_type(),
                    want.config.policy_type()
                ),
            );
            push_create_policy(plan, want, what);
            true
        }
        None => {
            push_create_policy(plan, want, what);
            true
        }
    }
}

fn push_create_policy(plan: &mut Plan, want: &ScalingPolicy, what: &str) {
    let summary = format!(
        "+ create {what} {} ({})",
        want.name,
        describe(&policy_fields(want))
    );
    plan.push(
        Change::PutPolicy {
            policy: want.clone(),
        },
        summary,
    );
}

/// The changes that remove what asyncscale owns for this endpoint variant, or, with
/// `deletionPolicy: Retain`, that release it (asyncscale's tags removed, configuration left) so
/// that another resource may adopt it. Deregistering the target would also delete other tools'
/// policies on it (docs/aws-behaviour.md §2.4), so when foreign policies exist asyncscale deletes only
/// its own policies and hands the target back untagged and no longer suspended.
pub fn plan_delete(
    names: &ResourceNames,
    owner: &Owner,
    observed: &Observed,
    policy: DeletionPolicy,
) -> Plan {
    let mut plan = Plan::default();
    let retain = policy == DeletionPolicy::Retain;
    let Some(target) = &observed.target else {
        // No target: the alarm's name proves nothing (a resource that never owned the variant has
        // the same names); only its owner tags do.
        if let Some(alarm) = &observed.alarm
            && alarm
                .tags
                .as_ref()
                .is_some_and(|tags| ownership(tags, owner, &nobody_departs).is_ours())
        {
            push_alarm_removal(&mut plan, alarm, retain);
        }
        return plan;
    };
    if !ownership(&target.tags, owner, &nobody_departs).is_ours() {
        return plan; // Nothing here is ours, not even the alarm: its name belongs to the variant's owner.
    }
    let target_arn = target.arn.clone().unwrap_or_default();
    if retain {
        plan.push(
            Change::UntagTarget {
                arn: target_arn,
                keys: present_owner_keys(&target.tags),
            },
            format!(
                "~ release scalable target {} (remove asyncscale's tags; its configuration, policies and alarm stay, and another resource may adopt them)",
                names.resource_id
            ),
        );
        if let Some(alarm) = &observed.alarm {
            push_alarm_removal(&mut plan, alarm, true);
        }
        return plan;
    }
    if let Some(alarm) = &observed.alarm {
        push_alarm_removal(&mut plan, alarm, false);
    }
    let mut foreign = foreign_policies(names, observed);
    foreign.extend(
        foreign_scheduled_actions(observed)
            .into_iter()
            .map(|a| format!("scheduled action {a}")),
    );
    if foreign.is_empty() {
        plan.push(
            Change::DeregisterTarget {
                resource_id: names.resource_id.clone(),
            },
            format!(
                "- deregister scalable target {} (AWS deletes its policies and scheduled actions with it)",
                names.resource_id
            ),
        );
        return plan;
    }
    for action in observed
        .scheduled_actions
        .iter()
        .filter(|a| ResourceNames::schedule_of_action(&a.action.name).is_some())
    {
        plan.push(
            Change::DeleteScheduledAction {
                resource_id: names.resource_id.clone(),
                name: action.action.name.clone(),
            },
            format!("- delete scheduled action {}", action.action.name),
        );
    }
    for policy in observed
        .policies
        .iter()
        .filter(|p| names.is_ours(&p.policy.name))
    {
        plan.push(
            Change::DeletePolicy {
                resource_id: names.resource_id.clone(),
                name: policy.policy.name.clone(),
            },
            format!("- delete policy {}", policy.policy.name),
        );
    }
    // A suspended target would keep the other tools' policies from ever acting again.
    if target.target.suspended != SuspendedState::default() {
        plan.push(
            Change::RegisterTarget {
                target: ScalableTarget {
                    suspended: SuspendedState::all(false),
                    ..target.target.clone()
                },
                tags: Tags::new(),
                create: false,
            },
            format!(
                "~ resume scaling of scalable target {} (spec.suspend suspended it; the policies of other tools act again)",
                names.resource_id
            ),
        );
    }
    plan.push(
        Change::UntagTarget { arn: target_arn, keys: present_owner_keys(&target.tags) },
        format!(
            "~ keep scalable target {} for the policies of other tools ({}), and remove asyncscale's tags from it",
            names.resource_id,
            foreign.join(", ")
        ),
    );
    plan
}

fn present_owner_keys(tags: &Tags) -> Vec<String> {
    OWNER_TAG_KEYS
        .into_iter()
        .filter(|k| tags.contains_key(*k))
        .map(str::to_string)
        .collect()
}

/// Deletes our alarm, or, when retaining, removes asyncscale's tags from it.
fn push_alarm_removal(plan: &mut Plan, alarm: &ObservedAlarm, retain: bool) {
    let name = alarm.alarm.name.clone();
    if !retain {
        plan.push(
            Change::DeleteAlarm { name: name.clone() },
            format!("- delete alarm {name}"),
        );
        return;
    }
    if let Some(arn) = &alarm.arn {
        plan.push(
            Change::UntagAlarm {
                arn: arn.clone(),
                keys: OWNER_TAG_KEYS.iter().map(|k| k.to_string()).collect(),
            },
            format!("~ release alarm {name} (remove asyncscale's tags)"),
        );
    }
}

/// Policies on the scalable target that asyncscale does not own.
pub fn foreign_policies(names: &ResourceNames, observed: &Observed) -> Vec<String> {
    observed
        .policies
        .iter()
        .filter(|p| !names.is_ours(&p.policy.name))
        .map(|p| p.policy.name.clone())
        .collect()
}
