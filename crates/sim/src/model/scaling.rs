//! What the alarms' invocations do to an endpoint: Application Auto Scaling's choice among the
//! policies, its scale-out and scale-in, and the scaling activities it records for them.

use super::assumptions::Assumptions;
use super::endpoint::{EndpointSim, FAILED_ACTIVITIES_KEPT};
use super::policy;
use super::setup::Action;
use crate::account::{Account, Activity};

/// Simulation seconds, and the wall-clock epoch they count from.
#[derive(Clone, Copy)]
pub(super) struct Moment {
    pub(super) now: f64,
    pub(super) epoch: f64,
}

/// Instances of the endpoint's type in use across the account, and the quota (None: unlimited).
#[derive(Clone, Copy)]
pub(super) struct Headroom {
    pub(super) used: u32,
    pub(super) quota: Option<f64>,
}

struct Candidate {
    capacity: u32,
    policy: String,
    alarm: usize,
    target_tracking: bool,
}

/// The policies the alarms invoked this minute each compute a capacity; the largest wins, for
/// scale-out and for scale-in alike (§2.11 "precedence to the policy that provides the largest
/// capacity"). A scale-out past the instance quota fails whole (§5.4).
pub(super) fn decide_and_scale(
    e: &mut EndpointSim,
    invocations: &[(Action, usize, Option<f64>)],
    a: &Assumptions,
    at: Moment,
    account: &mut Account,
    headroom: Headroom,
) {
    let now = at.now;
    let Some(target) = e.setup.target else { return };
    let current = e.desired;
    let mut out: Vec<Candidate> = Vec::new();
    let mut inward: Vec<Candidate> = Vec::new();
    for &(action, alarm_index, newest) in invocations {
        let Some(value) = newest else { continue };
        let alarm = &e.setup.alarms[alarm_index];
        match action {
            Action::TargetTrackingOut(i) => {
                let tt = &e.setup.target_tracking[i];
                let capacity = policy::target_tracking_out(current, value, tt.target, a);
                out.push(Candidate {
                    capacity,
                    policy: tt.name.clone(),
                    alarm: alarm_index,
                    target_tracking: true,
                });
            }
            Action::TargetTrackingIn(i) => {
                let tt = &e.setup.target_tracking[i];
                if tt.disable_scale_in {
                    continue;
                }
                let runtime = e.policies.get(&tt.name).copied().unwrap_or_default();
                // §2.12: scale-in waits for its cooldown.
                if runtime
                    .last_scale_in
                    .is_some_and(|t| now - t < tt.scale_in_cooldown_s)
                {
                    continue;
                }
                let capacity = policy::target_tracking_in(current, value, tt.target, a);
                inward.push(Candidate {
                    capacity,
                    policy: tt.name.clone(),
                    alarm: alarm_index,
                    target_tracking: true,
                });
            }
            Action::Step(i) => {
                let step = &e.setup.steps[i];
                let runtime = e.policies.get(&step.name).copied().unwrap_or_default();
                let counted = if a.step_counts_desired_capacity {
                    current
                } else {
                    e.in_service
                };
                // §2.12: during the cooldown after a scale-out, the capacity that scale-out added
                // counts as current: the policy computes from the capacity before it.
                let in_cooldown = runtime
                    .last_scale_out
                    .filter(|(t, _, _)| now - t < step.cooldown_s);
                let base = in_cooldown.map_or(counted, |(_, before, _)| before);
                let Some(wanted) = policy::step_target(step, base, value - alarm.rule.threshold)
                else {
                    continue;
                };
                let capacity = wanted.max(0) as u32;
                if capacity > current {
                    out.push(Candidate {
                        capacity,
                        policy: step.name.clone(),
                        alarm: alarm_index,
                        target_tracking: false,
                    });
                } else if capacity < current
                    && runtime
                        .last_scale_in
                        .is_none_or(|t| now - t >= step.cooldown_s)
                {
                    inward.push(Candidate {
                        capacity,
                        policy: step.name.clone(),
                        alarm: alarm_index,
                        target_tracking: false,
                    });
                }
            }
        }
    }
    let clamp = |c: u32| c.clamp(target.min, target.max.max(target.min));
    let cause_of = |c: &Candidate| {
        format!(
            "monitor alarm {} in state ALARM triggered policy {}",
            e.setup.alarms[c.alarm].name, c.policy
        )
    };
    let best_out = out
        .iter()
        .filter(|c| clamp(c.capacity) > current)
        .max_by_key(|c| c.capacity);
    if let Some(best) = best_out.filter(|_| !target.scale_out_suspended) {
        let cause = cause_of(best);
        let policy = best.policy.clone();
        scale_out(
            e,
            clamp(best.capacity),
            &cause,
            Some(&policy),
            a,
            at,
            account,
            headroom,
        );
        return;
    }
    // §2.8: a policy that wants more than MaxCapacity does not scale; AWS records why.
    if let Some(wanting) = out
        .iter()
        .filter(|c| c.capacity > target.max && current >= target.max)
        .max_by_key(|c| c.capacity)
    {
        let cause = cause_of(wanting);
        not_scaled(e, "AlreadyAtMaxCapacity", target.max, &cause, at, account);
        return;
    }
    // §2.11, "Multiple scaling policies": target tracking scales in only when every
    // target-tracking policy with scale-in enabled is ready to; step policies are not held back.
    let scale_in_enabled: Vec<&str> = e
        .setup
        .target_tracking
        .iter()
        .filter(|t| !t.disable_scale_in)
        .map(|t| t.name.as_str())
        .collect();
    let all_ready = scale_in_enabled.iter().all(|name| {
        inward
            .iter()
            .any(|c| c.target_tracking && c.policy == *name)
    });
    let best_in = inward
        .iter()
        .filter(|c| !c.target_tracking || all_ready)
        .filter(|c| clamp(c.capacity) < current)
        .max_by_key(|c| c.capacity);
    if let Some(best) = best_in.filter(|_| !target.scale_in_suspended && out.is_empty()) {
        let cause = cause_of(best);
        let policy = best.policy.clone();
        scale_in(e, clamp(best.capacity), &cause, Some(&policy), at, account);
    }
}

/// Raises DesiredInstanceCount to `new` (the instances start after the provisioning delay), or
/// records the Failed activity when the account's instance quota refuses the whole request.
#[allow(clippy::too_many_arguments)]
pub(super) fn scale_out(
    e: &mut EndpointSim,
    new: u32,
    cause: &str,
    policy: Option<&str>,
    a: &Assumptions,
    at: Moment,
    account: &mut Account,
    headroom: Headroom,
) {
    let Moment { now, epoch } = at;
    let Headroom { used, quota } = headroom;
    let current = e.desired;
    let description = format!("Setting desired instance count to {new}.");
    let delta = new - current;
    e.last_not_scaled = None;
    if let Some(limit) = quota
        && f64::from(used + delta) > limit
    {
        // §5.4: the whole request fails; capacity stays. AWS's newest observed wording (the field
        // report's, verbatim), not the documentation's older example.
        let message = format!(
            "Failed to set desired instance count to {new}. Reason: The account-level service limit '{} for endpoint usage' is {} Instances, with current utilization of {used} Instances and a request delta of {delta} Instances. Please use AWS Service Quotas to request an increase for this quota. If AWS Service Quotas is not available, contact AWS support to request an increase for this quota.",
            e.spec.instance_type, limit,
        );
        account.record_activity(activity(
            e,
            &description,
            cause,
            "Failed",
            Some(message.clone()),
            epoch + now,
            Some(epoch + now),
        ));
        e.minute_activities.push(format!("Failed: {message}"));
        e.stats.failed_activity_count += 1;
        if e.stats.failed_activities.len() < FAILED_ACTIVITIES_KEPT {
            e.stats.failed_activities.push((now, message));
        }
        return;
    }
    let id = account.record_activity(activity(
        e,
        &description,
        cause,
        "InProgress",
        None,
        epoch + now,
        None,
    ));
    e.minute_activities
        .push(format!("InProgress: {description} ({cause})"));
    if let Some((old, _)) = e.open_activity.replace((id, new)) {
        account.finish_activity(
            old,
            "Overridden",
            "The desired capacity was updated by a newer scaling event".into(),
            epoch + now,
        );
    }
    e.desired = new;
    e.last_modified_s = now;
    for _ in 0..delta {
        e.starting.push(now + a.provisioning_delay_s);
    }
    e.stats.first_instance_requested_s.get_or_insert(now);
    e.stats.peak_desired = e.stats.peak_desired.max(new);
    if let Some(policy) = policy {
        let runtime = e.policies.entry(policy.to_string()).or_default();
        runtime.last_scale_out = Some((now, current, new));
        // §2.12: a scale-out cuts every scale-in cooldown short.
        for r in e.policies.values_mut() {
            r.last_scale_in = None;
        }
    }
}

/// Lowers DesiredInstanceCount to `new`: starting instances are cancelled first.
pub(super) fn scale_in(
    e: &mut EndpointSim,
    new: u32,
    cause: &str,
    policy: Option<&str>,
    at: Moment,
    account: &mut Account,
) {
    let Moment { now, epoch } = at;
    let current = e.desired;
    let description = format!("Setting desired instance count to {new}.");
    let message = format!(
        "Successfully set desired instance count to {new}. Change successfully fulfilled by sagemaker."
    );
    e.last_not_scaled = None;
    account.record_activity(activity(
        e,
        &description,
        cause,
        "Successful",
        Some(message),
        epoch + now,
        Some(epoch + now),
    ));
    e.minute_activities
        .push(format!("Successful: {description} ({cause})"));
    let mut remove = current - new;
    while remove > 0 && !e.starting.is_empty() {
        e.starting.pop();
        remove -= 1;
    }
    e.in_service -= remove.min(e.in_service);
    e.desired = new;
    e.last_modified_s = now;
    if new == 0 {
        e.stats.scaled_to_zero_s.push(now);
    }
    if let Some(policy) = policy {
        e.policies
            .entry(policy.to_string())
            .or_default()
            .last_scale_in = Some(now);
    }
}

/// §2.8: an invocation that did not scale, with AWS's reason. ASSUMPTION: AWS does not document
/// how often it records these while an alarm stays in ALARM; one is recorded per reason until the
/// next scaling activity, so they never crowd the real activities out of a page.
fn not_scaled(
    e: &mut EndpointSim,
    code: &str,
    max: u32,
    cause: &str,
    at: Moment,
    account: &mut Account,
) {
    if e.last_not_scaled.as_deref() == Some(code) {
        return;
    }
    e.last_not_scaled = Some(code.to_string());
    let mut record = activity(
        e,
        "Attempting to scale due to alarm triggered",
        cause,
        "Failed",
        None,
        at.epoch + at.now,
        Some(at.epoch + at.now),
    );
    record.not_scaled_reasons = Some(vec![serde_json::json!({
        "Code": code, "MaxCapacity": max, "CurrentCapacity": e.desired,
    })]);
    account.record_activity(record);
    e.minute_activities
        .push(format!("Not scaled: {code} ({cause})"));
}

fn activity(
    e: &EndpointSim,
    description: &str,
    cause: &str,
    status: &str,
    message: Option<String>,
    start: f64,
    end: Option<f64>,
) -> Activity {
    Activity {
        activity_id: String::new(),
        service_namespace: "sagemaker".into(),
        resource_id: e.resource_id.clone(),
        scalable_dimension: "sagemaker:variant:DesiredInstanceCount".into(),
        description: description.to_string(),
        cause: cause.to_string(),
        start_time: start,
        end_time: end,
        status_code: status.to_string(),
        status_message: message,
        not_scaled_reasons: None,
    }
}
