//! The reconciler: the same observe → plan → apply → status path as `asyncscale apply`, plus the
//! finalizer, server-side-applied status, Events, metrics and per-object backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asyncscale_api::{AsyncEndpointScaling, AsyncEndpointScalingStatus, DeletionPolicy, FINALIZER};
use asyncscale_aws::{AwsError, BackendSource, ConvergeMode, ErrorClass, Intent, converge, remove};
use asyncscale_core::names::TARGET_TRACKING_POLICY;
use asyncscale_core::plan::{Change, PlannedChange};
use asyncscale_core::status::{
    QUOTA_CLAMPED, SCALING_HEALTHY, SYNCED, SyncOutcome, deletion_failed_status, find,
    initial_status, same_ignoring_time,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::identity::{owner_of, wants_adoption};
use crate::metrics::Metrics;

/// The one field manager of every status asyncscale writes.
pub const FIELD_MANAGER: &str = "asyncscale";
/// Longest Event note the API server takes.
const MAX_NOTE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Aws(AwsError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("AsyncEndpointScaling without a namespace")]
    NoNamespace,
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_error",
            Error::Aws(_) => "aws_error",
            Error::Finalizer(_) => "finalizer_error",
            Error::NoNamespace => "no_namespace",
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub backends: Arc<dyn BackendSource>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// How often each resource is re-read from AWS to repair drift.
    pub resync: Duration,
    /// Consecutive failures per resource (namespace/name), for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        backends: Arc<dyn BackendSource>,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        resync: Duration,
    ) -> Self {
        Self {
            client,
            backends,
            recorder,
            metrics,
            resync,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn succeeded(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }

    fn failed(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().expect("backoff lock");
        let n = failures.entry(key.to_string()).or_default();
        *n += 1;
        *n
    }
}

fn key(obj: &AsyncEndpointScaling) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

pub async fn reconcile(obj: Arc<AsyncEndpointScaling>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = obj.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<AsyncEndpointScaling> = Api::namespaced(ctx.client.clone(), &namespace);
    // API conventions: conditions appear on the first visit, even as Unknown (kube-rs.md §5.1, §5.2).
    let first_visit = obj.status.as_ref().and_then(|s| find(s, "Ready")).is_none();
    if first_visit && obj.meta().deletion_timestamp.is_none() {
        patch_status(
            &api,
            &obj.name_any(),
            &initial_status(obj.meta().generation, &now()),
        )
        .await?;
    }
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(obj) => apply(obj, &ctx, &api).await,
            Finalizer::Cleanup(obj) => cleanup(obj, &ctx, &api).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_err() {
        ctx.metrics.reconciled("error", started);
    }
    result
}

async fn apply(
    obj: Arc<AsyncEndpointScaling>,
    ctx: &Context,
    api: &Api<AsyncEndpointScaling>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key(&obj);
    let previous = obj.status.clone();
    let backend = match ctx.backends.backend(obj.spec.region.as_deref()).await {
        Ok(b) => b,
        Err(e) => return Err(Error::Aws(e)),
    };
    let intent = Intent {
        spec: &obj.spec,
        owner: owner_of(&obj),
        adopt: wants_adoption(&obj),
        generation: obj.meta().generation,
    };
    let report = converge(
        backend.as_ref(),
        &intent,
        ConvergeMode::Apply,
        previous.as_ref(),
        &now(),
    )
    .await;
    let changes = &report.plan.changes[..report.applied];
    for change in changes {
        let (reason, type_) = change_event(change);
        publish(ctx, &obj, type_, reason, "Apply", &change.summary).await;
    }
    publish_status_events(
        ctx,
        &obj,
        previous.as_ref(),
        &report.status,
        &report.outcome,
    )
    .await;
    if previous
        .as_ref()
        .is_none_or(|p| !same_ignoring_time(p, &report.status))
    {
        patch_status(api, &obj.name_any(), &report.status).await?;
    }
    let clamped = report.desired.as_ref().is_some_and(|d| d.clamped);
    ctx.metrics.resource_state(&key, true, clamped);
    let outcome = outcome_label(&report.outcome);
    ctx.metrics.reconciled(outcome, started);
    match (&report.outcome, report.error) {
        (SyncOutcome::InSync, _) => {
            ctx.succeeded(&key);
            Ok(Action::requeue(ctx.resync))
        }
        // A bad spec waits for the user to change it.
        (SyncOutcome::InvalidSpec(_), _) => Ok(Action::await_change()),
        // Recoverable AWS errors back off; terminal ones (permissions, validation) wait for the resync.
        (_, Some(e)) if e.class == ErrorClass::Recoverable => Err(Error::Aws(e)),
        _ => Ok(Action::requeue(ctx.resync)),
    }
}

async fn cleanup(
    obj: Arc<AsyncEndpointScaling>,
    ctx: &Context,
    api: &Api<AsyncEndpointScaling>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key(&obj);
    if obj.spec.deletion_policy == DeletionPolicy::Retain {
        let note = "deletionPolicy is Retain: the scalable target, policies and alarm stay in AWS";
        publish(ctx, &obj, EventType::Normal, "Retained", "Delete", note).await;
        ctx.metrics.resource_state(&key, false, false);
        ctx.metrics.reconciled("deleted", started);
        return Ok(Action::await_change());
    }
    let backend = ctx
        .backends
        .backend(obj.spec.region.as_deref())
        .await
        .map_err(Error::Aws)?;
    let report = remove(backend.as_ref(), &obj.spec, &owner_of(&obj), true).await;
    for change in &report.plan.changes[..report.applied] {
        let (reason, type_) = change_event(change);
        publish(ctx, &obj, type_, reason, "Delete", &change.summary).await;
    }
    if let Some(error) = report.error {
        let what = report
            .failed_change
            .unwrap_or_else(|| "reading AWS".to_string());
        let message = format!(
            "could not remove what asyncscale created ({what}): {error}; retrying. The finalizer {FINALIZER} stays until AWS is clean (remove it by hand to abandon the AWS resources)"
        );
        publish(
            ctx,
            &obj,
            EventType::Warning,
            "DeleteFailed",
            "Delete",
            &message,
        )
        .await;
        let status =
            deletion_failed_status(obj.status.as_ref(), obj.meta().generation, &message, &now());
        if obj
            .status
            .as_ref()
            .is_none_or(|p| !same_ignoring_time(p, &status))
        {
            patch_status(api, &obj.name_any(), &status).await?;
        }
        ctx.metrics.reconciled("delete_failed", started);
        return Err(Error::Aws(error));
    }
    ctx.metrics.resource_state(&key, false, false);
    ctx.metrics.reconciled("deleted", started);
    ctx.succeeded(&key);
    Ok(Action::await_change())
}

/// Requeues a failed reconcile with capped, jittered exponential backoff per object.
pub fn error_policy(obj: Arc<AsyncEndpointScaling>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.failed(&key(&obj));
    let delay = backoff_delay(failures, jitter_fraction());
    tracing::warn!(resource = %key(&obj), error = %error, kind = error.metric_label(), failures, retry_in_s = delay.as_secs_f64(), "reconcile failed");
    Action::requeue(delay)
}

/// 5 s, 10 s, 20 s, … capped at 5 minutes, each scaled by a jitter in [0.5, 1.0).
pub fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let base = 5.0 * 2f64.powi(failures.saturating_sub(1).min(16) as i32);
    Duration::from_secs_f64(base.min(300.0) * (0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
}

fn jitter_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

async fn patch_status(
    api: &Api<AsyncEndpointScaling>,
    name: &str,
    status: &AsyncEndpointScalingStatus,
) -> Result<(), Error> {
    let patch = json!({
        "apiVersion": "asyncscale.io/v1alpha1",
        "kind": "AsyncEndpointScaling",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Events are best effort: a failure to publish one never fails the reconcile.
async fn publish(
    ctx: &Context,
    obj: &AsyncEndpointScaling,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let mut note = note.to_string();
    if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(resource = %key(obj), reason, error = %e, "could not publish an Event");
    }
}

fn change_event(change: &PlannedChange) -> (&'static str, EventType) {
    let reason = match &change.change {
        Change::RegisterTarget { create: true, .. } => "ScalableTargetRegistered",
        Change::RegisterTarget { create: false, .. } => "ScalableTargetUpdated",
        Change::DeregisterTarget { .. } => "ScalableTargetDeregistered",
        Change::TagTarget { .. } => "ScalableTargetAdopted",
        Change::UntagTarget { .. } => "ScalableTargetReleased",
        // Distinct reasons per policy, so that the Recorder does not fold them into one series.
        Change::PutPolicy { policy } if policy.name == TARGET_TRACKING_POLICY => {
            "TargetTrackingPolicyApplied"
        }
        Change::PutPolicy { .. } => "ScaleFromZeroPolicyApplied",
        Change::DeletePolicy { name, .. } if name == TARGET_TRACKING_POLICY => {
            "TargetTrackingPolicyDeleted"
        }
        Change::DeletePolicy { .. } => "ScaleFromZeroPolicyDeleted",
        Change::PutAlarm { .. } => "AlarmApplied",
        Change::DeleteAlarm { .. } => "AlarmDeleted",
    };
    (reason, EventType::Normal)
}

/// Events for what a user cares about in the new status: the quota clamp applied or lifted, a
/// failed scaling activity (once per activity: the previous status already holds it), a conflict,
/// a failed apply.
async fn publish_status_events(
    ctx: &Context,
    obj: &AsyncEndpointScaling,
    previous: Option<&AsyncEndpointScalingStatus>,
    status: &AsyncEndpointScalingStatus,
    outcome: &SyncOutcome,
) {
    let was = |kind: &str| {
        previous
            .and_then(|p| find(p, kind))
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    // The clamp is news only once AWS holds it.
    if let Some(clamp) = find(status, QUOTA_CLAMPED).filter(|_| *outcome == SyncOutcome::InSync) {
        let clamped_now = clamp.status == "True" && clamp.reason == "Clamped";
        let clamped_before = was(QUOTA_CLAMPED).is_some_and(|(s, r)| s == "True" && r == "Clamped");
        if clamped_now && !clamped_before {
            publish(
                ctx,
                obj,
                EventType::Normal,
                "QuotaClampApplied",
                "Apply",
                &clamp.message,
            )
            .await;
        } else if clamped_before && clamp.reason == "WithinQuota" {
            publish(
                ctx,
                obj,
                EventType::Normal,
                "QuotaClampLifted",
                "Apply",
                &clamp.message,
            )
            .await;
        }
    }
    if let (Some(activity), Some(healthy)) =
        (&status.last_scaling_activity, find(status, SCALING_HEALTHY))
        && activity.status_code == "Failed"
        && previous.and_then(|p| p.last_scaling_activity.as_ref()) != Some(activity)
    {
        publish(
            ctx,
            obj,
            EventType::Warning,
            &healthy.reason,
            "Scale",
            &healthy.message,
        )
        .await;
    }
    match outcome {
        SyncOutcome::Conflict(message) if was(SYNCED).is_none_or(|(_, r)| r != "Conflict") => {
            publish(ctx, obj, EventType::Warning, "Conflict", "Apply", message).await;
        }
        SyncOutcome::ApplyFailed(message) => {
            publish(
                ctx,
                obj,
                EventType::Warning,
                "ApplyFailed",
                "Apply",
                message,
            )
            .await;
        }
        SyncOutcome::QuotaTooLow(message)
            if was(SYNCED).is_none_or(|(_, r)| r != "QuotaTooLow") =>
        {
            publish(
                ctx,
                obj,
                EventType::Warning,
                "QuotaTooLow",
                "Apply",
                message,
            )
            .await;
        }
        _ => {}
    }
}

fn outcome_label(outcome: &SyncOutcome) -> &'static str {
    match outcome {
        SyncOutcome::InSync => "in_sync",
        SyncOutcome::ChangesPending(_) => "changes_pending",
        SyncOutcome::ApplyFailed(_) => "apply_failed",
        SyncOutcome::InvalidSpec(_) => "invalid_spec",
        SyncOutcome::Conflict(_) => "conflict",
        SyncOutcome::QuotaTooLow(_) => "quota_too_low",
        SyncOutcome::ObserveFailed(_) => "observe_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_a_five_minute_cap_with_jitter() {
        assert_eq!(backoff_delay(1, 1.0), Duration::from_secs(5));
        assert_eq!(backoff_delay(2, 1.0), Duration::from_secs(10));
        assert_eq!(backoff_delay(3, 1.0), Duration::from_secs(20));
        assert_eq!(backoff_delay(20, 1.0), Duration::from_secs(300));
        assert_eq!(backoff_delay(1, 0.0), Duration::from_secs_f64(2.5));
        assert!(backoff_delay(4, 0.3) < backoff_delay(4, 0.9));
    }
}
