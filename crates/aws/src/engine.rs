//! observe → plan → apply → status, against any backend. The CLI's `plan`/`apply`/`delete` and
//! the in-cluster reconciler run exactly this.

use std::collections::BTreeMap;

use asyncscale_api::{AsyncEndpointScalingSpec, AsyncEndpointScalingStatus, validate_spec};
use asyncscale_core::plan::{Change, PlannedChange};
use asyncscale_core::status::{StatusInput, SyncOutcome, compute_status};
use asyncscale_core::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::error::AwsError;
use crate::port::AutoscalingBackend;

/// How many scaling activities to read; the newest decides ScalingHealthy.
const ACTIVITIES_TO_READ: i32 = 5;

/// One resource's intent.
#[derive(Debug, Clone)]
pub struct Intent<'a> {
    pub spec: &'a AsyncEndpointScalingSpec,
    pub owner: Owner,
    /// Take over a scalable target that nobody owns.
    pub adopt: bool,
    pub generation: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvergeMode {
    /// Read only: report what apply would change.
    Plan,
    Apply,
}

#[derive(Debug, Clone)]
pub struct ConvergeReport {
    /// What apply changes (or would change).
    pub plan: Plan,
    /// How many changes of the plan were made, in order.
    pub applied: usize,
    pub outcome: SyncOutcome,
    pub status: AsyncEndpointScalingStatus,
    pub desired: Option<Desired>,
    /// AWS as last read (after the changes, when some were made).
    pub observed: Option<Observed>,
    /// The AWS error that stopped the reconcile, for backoff decisions.
    pub error: Option<AwsError>,
}

/// Reads everything asyncscale looks at for one endpoint variant, in parallel.
pub async fn observe(
    backend: &dyn AutoscalingBackend,
    names: &ResourceNames,
) -> Result<Observed, AwsError> {
    let (target, policies, alarm, activities) = tokio::join!(
        backend.describe_target(&names.resource_id),
        backend.describe_policies(&names.resource_id),
        backend.describe_alarm(&names.alarm),
        backend.recent_activities(&names.resource_id, ACTIVITIES_TO_READ),
    );
    let mut target = target?;
    if let Some(t) = target.as_mut()
        && let Some(arn) = &t.arn
    {
        t.tags = backend.target_tags(arn).await?;
    }
    Ok(Observed {
        target,
        policies: policies?,
        alarm: alarm?,
        activities: activities?,
    })
}

pub async fn converge(
    backend: &dyn AutoscalingBackend,
    intent: &Intent<'_>,
    mode: ConvergeMode,
    previous: Option<&AsyncEndpointScalingStatus>,
    now: &Time,
) -> ConvergeReport {
    let spec = intent.spec;
    let mut report = ConvergeReport {
        plan: Plan::default(),
        applied: 0,
        outcome: SyncOutcome::InSync,
        status: AsyncEndpointScalingStatus::default(),
        desired: None,
        observed: None,
        error: None,
    };
    let mut quota = None;
    if let Err(errors) = validate_spec(spec) {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        report.outcome = SyncOutcome::InvalidSpec(message);
    } else {
        let names = ResourceNames::new(&spec.endpoint_name, &spec.variant_name);
        let (lookup, observed) = tokio::join!(
            backend.instance_quota(&spec.instance_type),
            observe(backend, &names)
        );
        quota = Some(lookup);
        match observed {
            Err(e) => {
                report.outcome = SyncOutcome::ObserveFailed(e.to_string());
                report.error = Some(e);
            }
            Ok(observed) => {
                report.observed = Some(observed);
                decide_and_apply(
                    backend,
                    intent,
                    mode,
                    quota.as_ref().expect("set above"),
                    &names,
                    &mut report,
                )
                .await;
            }
        }
    }
    let input = StatusInput {
        generation: intent.generation,
        spec,
        quota: quota.as_ref(),
        desired: report.desired.as_ref(),
        observed: report.observed.as_ref(),
        outcome: report.outcome.clone(),
    };
    report.status = compute_status(&input, previous, now);
    report
}

async fn decide_and_apply(
    backend: &dyn AutoscalingBackend,
    intent: &Intent<'_>,
    mode: ConvergeMode,
    quota: &QuotaLookup,
    names: &ResourceNames,
    report: &mut ConvergeReport,
) {
    let observed = report.observed.as_ref().expect("observed before deciding");
    let desired = match desire(intent.spec, &intent.owner, quota) {
        Ok(d) => d,
        Err(e) => {
            report.outcome = SyncOutcome::QuotaTooLow(e.to_string());
            return;
        }
    };
    let plan = match plan_apply(&desired, observed, intent.adopt) {
        Ok(plan) => plan,
        Err(Blocked::Conflict(message)) => {
            report.desired = Some(desired);
            report.outcome = SyncOutcome::Conflict(message);
            return;
        }
    };
    report.desired = Some(desired);
    report.plan = plan;
    if report.plan.is_empty() {
        return;
    }
    if mode == ConvergeMode::Plan {
        report.outcome = SyncOutcome::ChangesPending(report.plan.changes.len());
        return;
    }
    let (applied, result) = execute(backend, &report.plan.changes).await;
    report.applied = applied;
    if let Err((change, e)) = result {
        report.outcome = SyncOutcome::ApplyFailed(format!("{}: {e}", change.summary));
        report.error = Some(e);
    }
    // Read back what AWS holds now, so status shows AWS's truth (ARNs, states), not our hopes.
    match observe(backend, names).await {
        Ok(after) => report.observed = Some(after),
        Err(e) => {
            if report.error.is_none() {
                report.outcome = SyncOutcome::ObserveFailed(e.to_string());
                report.error = Some(e);
            }
        }
    }
}

/// Runs the changes in order and stops at the first failure, which it returns with its change.
pub async fn execute<'p>(
    backend: &dyn AutoscalingBackend,
    changes: &'p [PlannedChange],
) -> (usize, Result<(), (&'p PlannedChange, AwsError)>) {
    let mut policy_arns: BTreeMap<String, String> = BTreeMap::new();
    for (done, planned) in changes.iter().enumerate() {
        let result = match &planned.change {
            Change::RegisterTarget {
                target,
                tags,
                create,
            } => backend
                .register_target(target, create.then_some(tags))
                .await
                .map(drop),
            Change::DeregisterTarget { resource_id } => {
                backend.deregister_target(resource_id).await
            }
            Change::TagTarget { arn, tags } => backend.tag_target(arn, tags).await,
            Change::UntagTarget { arn, keys } => backend.untag_target(arn, keys).await,
            Change::PutPolicy { policy } => backend.put_policy(policy).await.map(|arn| {
                policy_arns.insert(policy.name.clone(), arn);
            }),
            Change::DeletePolicy { resource_id, name } => {
                backend.delete_policy(resource_id, name).await
            }
            Change::PutAlarm {
                alarm,
                tags,
                action,
            } => {
                let arn = match action {
                    AlarmActionArn::Known(arn) => arn.clone(),
                    AlarmActionArn::OfPolicy(name) => {
                        policy_arns.get(name).cloned().unwrap_or_default()
                    }
                };
                let alarm = MetricAlarm {
                    alarm_actions: vec![arn],
                    ..alarm.clone()
                };
                backend.put_alarm(&alarm, tags).await
            }
            Change::DeleteAlarm { name } => backend.delete_alarm(name).await,
        };
        let removal = matches!(
            planned.change,
            Change::DeregisterTarget { .. }
                | Change::DeletePolicy { .. }
                | Change::DeleteAlarm { .. }
        );
        match result {
            // Removing what is already gone is done, not failed (deletes must be idempotent).
            Err(e) if removal && e.class == crate::error::ErrorClass::NotFound => {}
            Err(e) => return (done, Err((planned, e))),
            Ok(()) => {}
        }
    }
    (changes.len(), Ok(()))
}

#[derive(Debug, Clone)]
pub struct RemoveReport {
    pub plan: Plan,
    pub applied: usize,
    /// What stopped the removal, if anything.
    pub error: Option<AwsError>,
    /// The summary of the change that failed.
    pub failed_change: Option<String>,
}

/// Removes what asyncscale owns for this endpoint variant (`plan_delete`); with `execute_plan`
/// false it only reports what it would remove.
pub async fn remove(
    backend: &dyn AutoscalingBackend,
    spec: &AsyncEndpointScalingSpec,
    owner: &Owner,
    execute_plan: bool,
) -> RemoveReport {
    let names = ResourceNames::new(&spec.endpoint_name, &spec.variant_name);
    let mut report = RemoveReport {
        plan: Plan::default(),
        applied: 0,
        error: None,
        failed_change: None,
    };
    let observed = match observe(backend, &names).await {
        Ok(o) => o,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    report.plan = plan_delete(&names, owner, &observed);
    if execute_plan {
        let (applied, result) = execute(backend, &report.plan.changes).await;
        report.applied = applied;
        if let Err((change, e)) = result {
            report.failed_change = Some(change.summary.clone());
            report.error = Some(e);
        }
    }
    report
}
