//! observe → plan → apply → status, against any backend. The CLI's `plan`/`apply`/`delete` and
//! the in-cluster reconciler run exactly this.

use asyncscale_api::{AsyncEndpointScalingSpec, AsyncEndpointScalingStatus, validate_spec};
use asyncscale_core::status::{StatusInput, SyncOutcome, compute_status};
use asyncscale_core::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::error::{AwsError, ErrorClass, ErrorKind};
use crate::execute::execute;
use crate::fence::Fence;
use crate::intent::{ConvergeMode, Intent, OwnershipCheck};
use crate::port::AutoscalingBackend;
use crate::share::quota_share;

/// How many scaling activities to read; the newest decides ScalingHealthy.
const ACTIVITIES_TO_READ: i32 = 5;

#[derive(Debug, Clone)]
pub struct ConvergeReport {
    /// What apply changes (or would change).
    pub plan: Plan,
    /// How many changes of the plan were made, in order.
    pub applied: usize,
    pub outcome: SyncOutcome,
    pub status: AsyncEndpointScalingStatus,
    pub desired: Option<Desired>,
    /// This endpoint's share of its instance quota as worked out this reconcile, also when
    /// nothing was decided because minCapacity does not fit it (quota policy Share only).
    pub share: Option<QuotaShare>,
    /// AWS as last read (after the changes, when some were made).
    pub observed: Option<Observed>,
    /// The SageMaker endpoint as read before planning.
    pub endpoint: Option<EndpointReading>,
    /// The AWS error that stopped the reconcile, for backoff decisions.
    pub error: Option<AwsError>,
}

/// Reads everything asyncscale looks at for one endpoint variant, in parallel.
pub async fn observe(
    backend: &dyn AutoscalingBackend,
    names: &ResourceNames,
) -> Result<Observed, AwsError> {
    observe_parts(backend, names, TargetTags::Read).await
}

/// Whether `observe` reads the scalable target's tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetTags {
    Read,
    /// Left empty: read only when a plan would write (see `decide_and_apply`).
    WhenWriting,
}

async fn observe_parts(
    backend: &dyn AutoscalingBackend,
    names: &ResourceNames,
    target_tags: TargetTags,
) -> Result<Observed, AwsError> {
    let (target, policies, scheduled_actions, alarm, activities) = tokio::join!(
        backend.describe_target(&names.resource_id),
        backend.describe_policies(&names.resource_id),
        backend.describe_scheduled_actions(&names.resource_id),
        backend.describe_alarm(&names.alarm),
        backend.recent_activities(&names.resource_id, ACTIVITIES_TO_READ),
    );
    let mut target = target?;
    let mut alarm = alarm?;
    if target_tags == TargetTags::Read
        && let Some(t) = target.as_mut()
        && let Some(arn) = &t.arn
    {
        t.tags = backend.target_tags(arn).await?;
    }
    // Without a target, an alarm of our name proves nothing (a resource that never owned the
    // variant, or a released one, has the same names): its tags say whose it is. One more read,
    // on this path only.
    if target.is_none()
        && let Some(a) = alarm.as_mut()
        && let Some(arn) = a.arn.clone()
    {
        match backend.alarm_tags(&arn).await {
            Ok(tags) => a.tags = Some(tags),
            Err(e) if e.class == ErrorClass::NotFound => alarm = None,
            Err(e) => return Err(e),
        }
    }
    Ok(Observed {
        target,
        policies: policies?,
        scheduled_actions: scheduled_actions?,
        alarm,
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
        share: None,
        observed: None,
        endpoint: None,
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
        let (reading, observed, endpoint) = tokio::join!(
            backend.instance_quota(&spec.instance_type),
            observe_parts(
                backend,
                &names,
                match intent.ownership_check {
                    OwnershipCheck::Always => TargetTags::Read,
                    OwnershipCheck::BeforeWrites => TargetTags::WhenWriting,
                }
            ),
            crate::endpoints::read_endpoint(backend, &spec.endpoint_name),
        );
        quota = Some(reading.lookup);
        let observed = observed.and_then(|o| endpoint.map(|e| (o, e)));
        match observed {
            Err(e) => {
                report.outcome = SyncOutcome::ObserveFailed(e.to_string());
                report.error = Some(e);
            }
            Ok((observed, endpoint)) => {
                report.observed = Some(observed);
                let checked = check_endpoint(spec, backend.region(), &endpoint);
                let lookup = quota.as_ref().expect("set above");
                let in_aws = report
                    .observed
                    .as_ref()
                    .and_then(|o| o.target.as_ref())
                    .map(|t| t.target.max_capacity);
                let share = match checked {
                    Err(problem) => Err(SyncOutcome::EndpointUnusable(Box::new(problem))),
                    Ok(()) => quota_share(backend, intent, mode, &names, lookup, &endpoint, in_aws)
                        .await
                        .map_err(|e| {
                            let outcome = SyncOutcome::ObserveFailed(e.to_string());
                            report.error = Some(e);
                            outcome
                        }),
                };
                report.endpoint = Some(endpoint);
                if let Ok((share, _)) = &share {
                    report.share = share.clone();
                }
                match share {
                    Err(outcome) => report.outcome = outcome,
                    Ok((Some(share), _)) if share.min_unmet => {
                        report.outcome = SyncOutcome::WaitingForQuota(format!(
                            "minCapacity {} asks for more instances than this endpoint's share of the quota '{}': {}. Nothing is written until instances are released or the quota is raised (AWS would fail the scale-out)",
                            spec.min_capacity,
                            lookup.name(),
                            share.explanation
                        ));
                    }
                    Ok((share, _raising)) => {
                        decide_and_apply(
                            backend,
                            intent,
                            mode,
                            lookup,
                            share.as_ref(),
                            now.0,
                            &mut report,
                        )
                        .await;
                    }
                }
            }
        }
        // A quota never read because of a passing failure (throttling, a timeout) holds
        // MaxCapacity where it is: that is not converged, and the reconcile retries like any
        // failed read. A last known value still clamps, and a standing failure (no quota of that
        // name, no permission) is reported in QuotaClamped without a retry storm.
        let quota_matters = spec.quota.policy != asyncscale_api::QuotaPolicy::Ignore;
        if quota_matters
            && report.error.is_none()
            && quota.as_ref().is_some_and(|q| q.value().is_none())
        {
            report.error = reading.error.filter(|e| e.class == ErrorClass::Recoverable);
        }
    }
    let input = StatusInput {
        generation: intent.generation,
        spec,
        quota: quota.as_ref(),
        desired: report.desired.as_ref(),
        observed: report.observed.as_ref(),
        endpoint: report.endpoint.as_ref(),
        outcome: report.outcome.clone(),
        observation_stale: intent.observation_stale,
    };
    report.status = compute_status(&input, previous, now);
    report
}

async fn decide_and_apply(
    backend: &dyn AutoscalingBackend,
    intent: &Intent<'_>,
    mode: ConvergeMode,
    quota: &QuotaLookup,
    share: Option<&QuotaShare>,
    now: jiff::Timestamp,
    report: &mut ConvergeReport,
) {
    let observed = report.observed.as_ref().expect("observed before deciding");
    let existing = observed.target.as_ref().map(|t| &t.target);
    let desired = match desire(intent.spec, &intent.owner, quota, existing, share) {
        Ok(mut d) => {
            asyncscale_core::scheduled::follow_schedules(&mut d, intent.spec, quota, observed, now);
            d
        }
        Err(e) => {
            report.outcome = match e {
                DesireError::QuotaTooLow { .. } => SyncOutcome::QuotaTooLow(e.to_string()),
                DesireError::QuotaUnknownBelowMin { .. } => {
                    SyncOutcome::WaitingForQuota(e.to_string())
                }
            };
            return;
        }
    };
    // Ownership is proven from AWS before any write: a plan that would write (or conflict)
    // reads the tags, past any cache, and is made again with the truth. In BeforeWrites mode a
    // target that already matches the intent needs no tags at all.
    if let Some(arn) = observed.target.as_ref().and_then(|t| t.arn.clone()) {
        let mut assumed = observed.clone();
        if intent.ownership_check == OwnershipCheck::BeforeWrites
            && let Some(t) = assumed.target.as_mut()
        {
            t.tags = intent.owner.tags();
        }
        let writes_nothing =
            plan_apply(&desired, &assumed, &intent.adoption).is_ok_and(|plan| plan.is_empty());
        if writes_nothing {
            report.desired = Some(desired);
            return;
        }
        match backend.direct().unwrap_or(backend).target_tags(&arn).await {
            Ok(tags) => {
                if let Some(t) = report.observed.as_mut().and_then(|o| o.target.as_mut()) {
                    t.tags = tags;
                }
            }
            Err(e) => {
                report.outcome = SyncOutcome::ObserveFailed(e.to_string());
                report.error = Some(e);
                return;
            }
        }
    }
    let observed = report.observed.as_ref().expect("observed before deciding");
    let plan = match plan_apply(&desired, observed, &intent.adoption) {
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
    let (applied, result) = execute(backend, &report.plan.changes, &intent.fence).await;
    report.applied = applied;
    if let Err((change, e)) = result {
        report.outcome = SyncOutcome::ApplyFailed(format!("{}: {e}", change.summary));
        report.error = Some(e);
    }
    // Read back what AWS holds now, so status shows AWS's truth (ARNs, states), not our hopes:
    // someone may have changed AWS between observing and applying.
    let names = report
        .desired
        .as_ref()
        .map(|d| d.names.clone())
        .expect("desired before applying");
    match observe(backend, &names).await {
        Ok(after) => {
            if report.error.is_none() {
                let desired = report.desired.as_ref().expect("desired before applying");
                match plan_apply(desired, &after, &intent.adoption) {
                    Err(Blocked::Conflict(message)) => {
                        report.outcome = SyncOutcome::Conflict(message);
                    }
                    Ok(left) if !left.is_empty() => {
                        let message = format!(
                            "AWS does not show every change yet (someone changed it meanwhile, or it is not visible yet); still to do, retrying: {}",
                            left.summaries().join("; ")
                        );
                        report.error = Some(AwsError::local(
                            ErrorClass::Recoverable,
                            "ReadBack",
                            ErrorKind::ChangedDuringApply,
                            message.clone(),
                        ));
                        report.outcome = SyncOutcome::ApplyFailed(message);
                    }
                    Ok(_) => {}
                }
            }
            report.observed = Some(after);
        }
        Err(e) => {
            if report.error.is_none() {
                report.outcome = SyncOutcome::ObserveFailed(e.to_string());
                report.error = Some(e);
            }
        }
    }
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

/// Removes what asyncscale owns for this endpoint variant, or releases it under
/// `deletionPolicy: Retain` (`plan_delete`); with `execute_plan` false it only reports what it
/// would do.
pub async fn remove(
    backend: &dyn AutoscalingBackend,
    spec: &AsyncEndpointScalingSpec,
    owner: &Owner,
    execute_plan: bool,
    fence: &Fence,
) -> RemoveReport {
    let names = ResourceNames::new(&spec.endpoint_name, &spec.variant_name);
    let mut report = RemoveReport {
        plan: Plan::default(),
        applied: 0,
        error: None,
        failed_change: None,
    };
    // A failed read (the alarm's tags included, when the target is gone) removes nothing. Read
    // from AWS itself, not a picture: what is deleted depends on every policy on the target.
    let observed = match observe(backend.direct().unwrap_or(backend), &names).await {
        Ok(o) => o,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    report.plan = plan_delete(&names, owner, &observed, spec.deletion_policy);
    if execute_plan {
        let (applied, result) = execute(backend, &report.plan.changes, fence).await;
        report.applied = applied;
        if let Err((change, e)) = result {
            report.failed_change = Some(change.summary.clone());
            report.error = Some(e);
        }
    }
    report
}

/// The status of a resource whose AWS could not be read (no backend for its role, a duplicate
/// refused, the reconcile timed out): `outcome` says why; with nothing observed, each condition
/// keeps what `previous` said until the observation is stale, then turns Unknown.
pub fn status_without_aws(
    spec: &AsyncEndpointScalingSpec,
    generation: Option<i64>,
    outcome: SyncOutcome,
    observation_stale: bool,
    previous: Option<&AsyncEndpointScalingStatus>,
    now: &Time,
) -> AsyncEndpointScalingStatus {
    let input = StatusInput {
        generation,
        spec,
        quota: None,
        desired: None,
        observed: None,
        endpoint: None,
        outcome,
        observation_stale,
    };
    compute_status(&input, previous, now)
}

/// The outcome of a resource whose backend could not be had: its role refused, or AWS not read.
pub fn unreachable_outcome(error: &AwsError) -> SyncOutcome {
    if error.is_role_refusal() {
        SyncOutcome::RoleNotAssumed(error.message.clone())
    } else {
        SyncOutcome::ObserveFailed(error.message.clone())
    }
}
