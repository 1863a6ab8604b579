//! The reconciler: the same observe → plan → apply → status path as `asyncscale apply` (the
//! engine's `converge`), plus what only Kubernetes needs: the finalizer, status by server-side
//! apply (`status_patch`), Events, metrics, when each object is due and its backoff
//! (`visits`), and what the watch caches say of the other resources (`peers`).

mod peers;
mod status_patch;
mod visits;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asyncscale_api::{AsyncEndpointScaling, AsyncEndpointScalingStatus, FINALIZER};
use asyncscale_core::names::ResourceNames;
use asyncscale_core::plan::Adoption;
use asyncscale_core::status::{
    ConditionType, SyncOutcome, deletion_failed_status, find, initial_status,
};
use asyncscale_engine::{
    AwsError, BackendSource, ConvergeMode, ErrorClass, ErrorKind, Fence, Intent, OwnershipCheck,
    Placement, converge, on_call_reading, remove, status_without_aws, unreachable_outcome,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tokio::sync::broadcast;

use crate::events::{EventPublisher, EventType, change_event};
use crate::identity::{owner_of, wants_adoption};
use crate::metrics::Metrics;

pub use peers::WatchedStore;
pub use status_patch::{FIELD_MANAGER, last_applied_status};
pub use visits::{RESYNC_SPREAD, backoff_delay, resync_delay};

use peers::{AWAITED_BUFFERED, quota_peers_of, watched_in, watched_places, younger_duplicate};
use status_patch::{patch_status, write_status_if_changed};
use visits::{LastVisit, wall_clock};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A recoverable AWS error; the reconcile already counted the failure and chose when to retry.
    #[error("{error}")]
    Aws { error: AwsError, retry_in: Duration },
    /// Adding or removing the finalizer failed (kube's helper); what apply and cleanup fail
    /// with is unwrapped to its own kind by [`reconcile`].
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("AsyncEndpointScaling without a namespace")]
    NoNamespace,
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_error",
            Error::Aws { .. } => "aws_error",
            Error::Finalizer(_) => "finalizer_error",
            Error::NoNamespace => "no_namespace",
        }
    }

    /// When the reconcile already counted this failure and chose its retry (an AWS error).
    pub fn retry_in(&self) -> Option<Duration> {
        match self {
            Error::Aws { retry_in, .. } => Some(*retry_in),
            _ => None,
        }
    }

    /// kube's finalizer helper wraps what apply and cleanup return: the log and the `kind` label
    /// name that cause (an API outage, AWS), not the finalizer, which only its own patch failing
    /// is about.
    fn from_finalizer(error: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match error {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            other => Error::Finalizer(Box::new(other)),
        }
    }

    /// kube's finalizer helper adds the finalizer with a JSON patch that tests the list it saw in
    /// the watch cache; a cache older than the server fails that test (422) or the write (409).
    /// That is an ordinary conflict, not a failure: retry at once, no warning, no backoff step.
    fn is_stale_cache_conflict(&self) -> bool {
        use kube::runtime::finalizer::Error as F;
        matches!(self, Error::Finalizer(inner)
            if matches!(inner.as_ref(),
                F::AddFinalizer(kube::Error::Api(e)) | F::RemoveFinalizer(kube::Error::Api(e))
                    if e.code == 422 || e.code == 409))
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub backends: Arc<dyn BackendSource>,
    pub events: EventPublisher,
    pub metrics: Arc<Metrics>,
    /// How often each resource is re-read from AWS to repair drift.
    pub resync: Duration,
    /// Checked before every AWS write (the leader Lease, when electing).
    pub fence: Fence,
    /// The longest one reconcile may take, AWS calls included.
    pub reconcile_timeout: Duration,
    /// How old the last good observation may be before a failed refresh makes Ready Unknown.
    pub stale_after: Duration,
    /// When this controller started: before a first good observation, staleness counts from here.
    started: Instant,
    /// Consecutive failures per resource (namespace/name), for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// By object UID.
    last_visits: Mutex<HashMap<String, LastVisit>>,
    stores: Mutex<Vec<WatchedStore>>,
    /// Peers whose lowering a held raise waits for, nudged (see [`Context::awaited`]).
    awaited: broadcast::Sender<ObjectRef<AsyncEndpointScaling>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        backends: Arc<dyn BackendSource>,
        events: EventPublisher,
        metrics: Arc<Metrics>,
        resync: Duration,
    ) -> Self {
        Self {
            client,
            backends,
            events,
            metrics,
            resync,
            fence: Fence::open(),
            reconcile_timeout: Duration::from_secs(120),
            stale_after: resync * 3,
            started: Instant::now(),
            failures: Mutex::new(HashMap::new()),
            last_visits: Mutex::new(HashMap::new()),
            stores: Mutex::new(Vec::new()),
            awaited: broadcast::channel(AWAITED_BUFFERED).0,
        }
    }

    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    pub fn with_reconcile_timeout(mut self, timeout: Duration) -> Self {
        self.reconcile_timeout = timeout;
        self
    }

    /// A failed refresh keeps the last observed conditions for `resyncs` resyncs.
    pub fn with_stale_after_resyncs(mut self, resyncs: u32) -> Self {
        self.stale_after = self.resync * resyncs;
        self
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
    // The watch event of our own status write (or a relist) shows nothing new: no AWS call.
    if let Some(wait) = ctx.not_due_for(&obj) {
        ctx.metrics.reconciled("unchanged", started);
        return Ok(Action::requeue(wait));
    }
    let api: Api<AsyncEndpointScaling> = Api::namespaced(ctx.client.clone(), &namespace);
    let resource = key(&obj);
    // The finalizer comes first: nothing is created in AWS, nor written to status, before it is
    // there (kube's helper adds it and waits for the change to come back through the watch).
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(obj) => apply(obj, &ctx, &api).await,
            Finalizer::Cleanup(obj) => cleanup(obj, &ctx, &api).await,
        }
    })
    .await
    .map_err(Error::from_finalizer);
    if result.is_err() {
        ctx.metrics.reconciled("error", started);
    }
    // With "reconciling" (in apply), at debug: how long each visit took (a soak reads both).
    tracing::debug!(
        resource = %resource,
        ok = result.is_ok(),
        seconds = started.elapsed().as_secs_f64(),
        "reconciled"
    );
    result
}

async fn apply(
    obj: Arc<AsyncEndpointScaling>,
    ctx: &Context,
    api: &Api<AsyncEndpointScaling>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key(&obj);
    // At debug: a soak checks from it that no resource goes a resync (and its tenth of spread)
    // without a visit.
    tracing::debug!(resource = %key, "reconciling");
    let previous = obj.status.clone();
    // Kubernetes' API conventions: conditions appear on the first visit, even as Unknown
    // (https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#typical-status-properties).
    if previous
        .as_ref()
        .and_then(|s| find(s, ConditionType::Ready))
        .is_none()
    {
        let written =
            patch_status(api, &obj, &initial_status(obj.meta().generation, &now())).await?;
        ctx.wrote(&obj, written);
    }
    let backend = match ctx.backends.backend(&Placement::of(&obj.spec)).await {
        Ok(b) => b,
        Err(error) => {
            // A role STS refuses is this resource's problem alone: say so in its status, and
            // retry with backoff (the trust policy may be fixed at any time).
            if error.is_role_refusal() {
                let outcome = unreachable_outcome(&error);
                let written =
                    report_without_aws(ctx, api, &obj, previous.as_ref(), &outcome, false).await?;
                ctx.wrote(&obj, written);
            }
            return Err(ctx.retry_later(&obj, &key, error, started));
        }
    };
    // Two resources for one endpoint variant would overwrite each other: the younger waits.
    let place = backend.place();
    // Read from the watch cache once for both checks.
    let (others, default_region) = watched_places(ctx, &obj, &place).await;
    if let Some(message) = younger_duplicate(&obj, &place, &others) {
        let outcome = SyncOutcome::Conflict(message);
        let written =
            report_without_aws(ctx, api, &obj, previous.as_ref(), &outcome, false).await?;
        ctx.succeeded(&key);
        // Looked up in the watch cache only (no AWS call, no write when unchanged): look again
        // soon, so that deleting the older resource hands over within seconds, not a resync.
        let recheck = DUPLICATE_RECHECK.min(ctx.resync);
        ctx.visited(&obj, written, recheck);
        ctx.metrics.reconciled("conflict", started);
        return Ok(Action::requeue(recheck));
    }
    let departed = |uid: &str| ctx.departed(uid);
    let peers = quota_peers_of(&obj, &place, &others);
    let peers_now = || {
        quota_peers_of(
            &obj,
            &place,
            &watched_in(ctx, &obj, default_region.as_deref()),
        )
    };
    let intent = Intent {
        spec: &obj.spec,
        owner: owner_of(&obj),
        adoption: Adoption {
            requested: wants_adoption(&obj),
            departed: &departed,
        },
        generation: obj.meta().generation,
        fence: ctx.fence.clone(),
        observation_stale: ctx.observation_stale(&obj),
        ownership_check: OwnershipCheck::Always,
        quota_peers: &peers,
        peers_now: Some(&peers_now),
        run_peers_lower_first: false,
    };
    let started_at = now();
    let converging = converge(
        backend.as_ref(),
        &intent,
        ConvergeMode::Apply,
        previous.as_ref(),
        &started_at,
    );
    let Ok(report) = tokio::time::timeout(ctx.reconcile_timeout, converging).await else {
        let error = timed_out(ctx.reconcile_timeout);
        ctx.events
            .tell(
                &obj,
                EventType::Warning,
                "ReconcileTimedOut",
                "Apply",
                &error.message,
            )
            .await;
        // A reconcile that timed out refreshed nothing: status says so as for any failed read
        // (the last observation kept until it is stale, then Ready Unknown).
        let outcome = SyncOutcome::ObserveFailed(error.message.clone());
        let stale = intent.observation_stale;
        let written =
            report_without_aws(ctx, api, &obj, previous.as_ref(), &outcome, stale).await?;
        ctx.wrote(&obj, written);
        return Err(ctx.retry_later(&obj, &key, error, started));
    };
    let changes = &report.plan.changes[..report.applied];
    for change in changes {
        let (reason, type_) = change_event(change);
        ctx.events
            .tell(&obj, type_, reason, "Apply", &change.summary)
            .await;
    }
    ctx.events
        .tell_status(&obj, previous.as_ref(), &report.status, &report.outcome)
        .await;
    let written = write_status_if_changed(api, &obj, &report.status).await?;
    if report.observed.is_some() && !matches!(report.outcome, SyncOutcome::ObserveFailed(_)) {
        ctx.observed_ok(&obj);
    }
    ctx.metrics.resource_reading(
        &key,
        Some(on_call_reading(&obj.spec, &report, backend.as_ref())),
        report
            .observed
            .as_ref()
            .map_or(&[][..], |o| &o.activities[..]),
    );
    let outcome = outcome_label(&report.outcome);
    ctx.metrics.reconciled(outcome, started);
    // An Event alone is easy to miss, and fades: a failed write is in the log too.
    if let SyncOutcome::ApplyFailed(message) = &report.outcome {
        tracing::warn!(resource = %key, %message, "AWS write failed; what AWS holds is in status");
    }
    // A raise held until the others' lowerings show in AWS is tried again soon, not at the
    // resync: those lowerings are other resources' reconciles, seconds away.
    // A minimum that waits (nothing decided) looks again soon only when lowerings are awaited.
    let awaiting = report
        .share
        .as_ref()
        .is_some_and(|s| s.held && (report.desired.is_some() || !s.awaiting.is_empty()));
    if let Some(share) = report.share.as_ref().filter(|s| !s.awaiting.is_empty()) {
        // The awaited peers, found in the watch cache as read for this reconcile, in its place.
        ctx.await_lowerings(
            others
                .iter()
                .filter(|(o, p)| {
                    *p == place
                        && share.awaiting.contains(
                            &ResourceNames::new(&o.spec.endpoint_name, &o.spec.variant_name)
                                .resource_id,
                        )
                })
                .map(|(o, _)| o.as_ref()),
        );
    }
    match (&report.outcome, report.error) {
        // Recoverable AWS errors (and a quota never read) back off.
        (SyncOutcome::InvalidSpec(_), _) => {
            ctx.succeeded(&key);
            ctx.visited(&obj, written, ctx.resync);
            // A bad spec waits for the user to change it.
            Ok(Action::await_change())
        }
        (_, Some(error)) if error.class == ErrorClass::Recoverable => {
            let retry_in = ctx.failed(&key);
            ctx.visited(&obj, written, retry_in);
            Err(Error::Aws { error, retry_in })
        }
        // In sync, a conflict, or a terminal AWS error (permissions, validation): the resync
        // retries, and the next recoverable error starts its backoff afresh.
        _ if awaiting => {
            ctx.succeeded(&key);
            let recheck = RAISE_RECHECK.min(ctx.resync);
            ctx.visited(&obj, written, recheck);
            Ok(Action::requeue(recheck))
        }
        _ => {
            ctx.succeeded(&key);
            let uid = obj.uid().unwrap_or_else(|| key.clone());
            let resync = resync_delay(ctx.resync, &uid, wall_clock());
            ctx.visited(&obj, written, resync);
            Ok(Action::requeue(resync))
        }
    }
}

impl Context {
    /// Counts a failure of `obj` for which no status is written, and returns the error to back off.
    fn retry_later(
        &self,
        obj: &AsyncEndpointScaling,
        key: &str,
        error: AwsError,
        started: Instant,
    ) -> Error {
        let retry_in = self.failed(key);
        self.visited(obj, obj.resource_version(), retry_in);
        self.metrics.reconciled(
            if error.kind == ErrorKind::ReconcileTimeout {
                "timeout"
            } else {
                "error"
            },
            started,
        );
        Error::Aws { error, retry_in }
    }
}

fn timed_out(limit: Duration) -> AwsError {
    AwsError::local(
        ErrorClass::Recoverable,
        "Reconcile",
        ErrorKind::ReconcileTimeout,
        format!(
            "the reconcile did not finish within {:?} (--reconcile-timeout); AWS may be slow or unreachable; retrying with backoff",
            limit
        ),
    )
}

/// Status and Events for an outcome reached without reading AWS (a duplicate refused, a
/// reconcile timed out); returns the resourceVersion of the status written, if one was.
async fn report_without_aws(
    ctx: &Context,
    api: &Api<AsyncEndpointScaling>,
    obj: &AsyncEndpointScaling,
    previous: Option<&AsyncEndpointScalingStatus>,
    outcome: &SyncOutcome,
    observation_stale: bool,
) -> Result<Option<String>, Error> {
    let status = status_without_aws(
        &obj.spec,
        obj.meta().generation,
        outcome.clone(),
        observation_stale,
        previous,
        &now(),
    );
    ctx.events
        .tell_status(obj, previous, &status, outcome)
        .await;
    write_status_if_changed(api, obj, &status).await
}

/// How soon a younger duplicate checks again whether the older resource is gone.
const DUPLICATE_RECHECK: Duration = Duration::from_secs(5);

/// How soon a raise held for other endpoints' lowerings is tried again (each lowering is its own
/// resource's reconcile; a failed one keeps it held, and each try reads no more than the picture).
const RAISE_RECHECK: Duration = Duration::from_secs(5);

/// A deletion that could not finish: a Warning Event and status say what failed, and that the
/// finalizer stays.
async fn report_delete_failed(
    ctx: &Context,
    api: &Api<AsyncEndpointScaling>,
    obj: &AsyncEndpointScaling,
    what: &str,
    error: &str,
) -> Result<(), Error> {
    let message = format!(
        "could not remove what asyncscale created ({what}): {error}; retrying. The finalizer {FINALIZER} stays until AWS is clean (remove it by hand to abandon the AWS resources)"
    );
    ctx.events
        .tell(obj, EventType::Warning, "DeleteFailed", "Delete", &message)
        .await;
    let status =
        deletion_failed_status(obj.status.as_ref(), obj.meta().generation, &message, &now());
    write_status_if_changed(api, obj, &status).await?;
    Ok(())
}

async fn cleanup(
    obj: Arc<AsyncEndpointScaling>,
    ctx: &Context,
    api: &Api<AsyncEndpointScaling>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key(&obj);
    let backend = match ctx.backends.backend(&Placement::of(&obj.spec)).await {
        Ok(b) => b,
        Err(error) => {
            if error.is_role_refusal() {
                report_delete_failed(ctx, api, &obj, "assuming its role", &error.message).await?;
            }
            return Err(ctx.retry_later(&obj, &key, error, started));
        }
    };
    let owner = owner_of(&obj);
    let removing = remove(backend.as_ref(), &obj.spec, &owner, true, &ctx.fence);
    let Ok(report) = tokio::time::timeout(ctx.reconcile_timeout, removing).await else {
        return Err(ctx.retry_later(&obj, &key, timed_out(ctx.reconcile_timeout), started));
    };
    for change in &report.plan.changes[..report.applied] {
        let (reason, type_) = change_event(change);
        ctx.events
            .tell(&obj, type_, reason, "Delete", &change.summary)
            .await;
    }
    if let Some(error) = report.error {
        let what = report
            .failed_change
            .unwrap_or_else(|| "reading AWS".to_string());
        report_delete_failed(ctx, api, &obj, &what, &error.to_string()).await?;
        ctx.metrics.reconciled("delete_failed", started);
        let retry_in = ctx.failed(&key);
        return Err(Error::Aws { error, retry_in });
    }
    if obj.spec.deletion_policy == asyncscale_api::DeletionPolicy::Retain {
        let note = "deletionPolicy is Retain: the scalable target, policies and alarm stay in AWS, released (untagged) so that another resource may adopt them";
        ctx.events
            .tell(&obj, EventType::Normal, "Retained", "Delete", note)
            .await;
    }
    ctx.metrics.resource_reading(&key, None, &[]);
    ctx.metrics.reconciled("deleted", started);
    ctx.succeeded(&key);
    ctx.forget(&obj);
    Ok(Action::await_change())
}

/// Requeues a failed reconcile with capped, jittered exponential backoff per object.
pub fn error_policy(obj: Arc<AsyncEndpointScaling>, error: &Error, ctx: Arc<Context>) -> Action {
    if error.is_stale_cache_conflict() {
        tracing::debug!(resource = %key(&obj), error = %error, "the watch cache was behind the API server; retrying");
        return Action::requeue(Duration::from_millis(200));
    }
    let delay = error.retry_in().unwrap_or_else(|| ctx.failed(&key(&obj)));
    // Not due before the backoff, whatever echoes of this reconcile's writes arrive first.
    ctx.visited(&obj, None, delay);
    tracing::warn!(resource = %key(&obj), error = %error, kind = error.metric_label(), retry_in_s = delay.as_secs_f64(), "reconcile failed");
    Action::requeue(delay)
}

fn outcome_label(outcome: &SyncOutcome) -> &'static str {
    match outcome {
        SyncOutcome::InSync => "in_sync",
        SyncOutcome::ChangesPending(_) => "changes_pending",
        SyncOutcome::ApplyFailed(_) => "apply_failed",
        SyncOutcome::InvalidSpec(_) => "invalid_spec",
        SyncOutcome::Conflict(_) => "conflict",
        SyncOutcome::QuotaTooLow(_) => "quota_too_low",
        SyncOutcome::WaitingForQuota(_) => "waiting_for_quota",
        SyncOutcome::ObserveFailed(_) => "observe_failed",
        SyncOutcome::RoleNotAssumed(_) => "role_not_assumed",
        SyncOutcome::EndpointUnusable(_) => "endpoint_unusable",
    }
}
