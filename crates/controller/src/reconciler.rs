//! The reconciler: the same observe → plan → apply → status path as `asyncscale apply`, plus the
//! finalizer, server-side-applied status, Events, metrics and per-object backoff.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::events::{Event, EventPublisher, EventType};
use asyncscale_api::{AsyncEndpointScaling, AsyncEndpointScalingStatus, FINALIZER};
use asyncscale_core::MaxSource;
use asyncscale_core::names::{ResourceNames, TARGET_TRACKING_POLICY};
use asyncscale_core::notices::notices;
use asyncscale_core::plan::{Adoption, Change, PlannedChange};
use asyncscale_core::status::{
    ConditionType, StatusInput, SyncOutcome, compute_status, deletion_failed_status, find,
    initial_status, same_ignoring_time,
};
use asyncscale_engine::{
    AutoscalingBackend, AwsError, BackendSource, ConvergeMode, ConvergeReport, ErrorClass,
    ErrorKind, Fence, Intent, OwnershipCheck, Place, Placement, converge, remove,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::identity::{owner_of, wants_adoption};
use crate::metrics::{InstanceTypeLabels, Metrics, ResourceReading};

/// The one field manager of every status asyncscale writes.
pub const FIELD_MANAGER: &str = "asyncscale";
/// Longest Event note the API server takes.
const MAX_NOTE: usize = 1024;

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

/// The last status write (or full reconcile) of one object: the watch event it causes carries
/// nothing new and must not cost AWS reads (the echo of our own write).
#[derive(Debug, Clone)]
struct LastVisit {
    /// The resourceVersions of this controller's own recent writes (and of the object it last
    /// read in full): a watch event carrying any of them brings nothing new.
    resource_versions: Vec<String>,
    /// When the next full reconcile is due (the resync, or the backoff after a failure).
    next_due: Instant,
    /// When AWS was last read successfully for this object.
    last_good: Option<Instant>,
    /// When another resource's held raise last asked for this object's reconcile (see
    /// [`Context::awaited`]).
    nudged: Option<Instant>,
    /// A nudge not yet taken by a reconcile: the next one is a full one, even when a reconcile
    /// that was running as the nudge came has since set the next resync.
    nudge_pending: bool,
}

/// Own writes remembered per object: a reconcile writes at most two statuses (the first visit's
/// and its result), whose watch events may arrive after the reconcile ended.
const REMEMBERED_WRITES: usize = 4;

/// The watch caches of the controllers, to see every resource without asking the API server.
#[derive(Clone)]
pub struct WatchedStore {
    pub store: Store<AsyncEndpointScaling>,
    pub synced: Arc<AtomicBool>,
    /// True when the store holds every namespace (so the absence of an object means it is gone).
    pub all_namespaces: bool,
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

    /// Whether the last good observation of `obj` is older than `stale_after`.
    fn observation_stale(&self, obj: &AsyncEndpointScaling) -> bool {
        let last_good = obj.uid().and_then(|uid| {
            let visits = self.last_visits.lock().expect("visits lock");
            visits.get(&uid).and_then(|v| v.last_good)
        });
        last_good.unwrap_or(self.started).elapsed() > self.stale_after
    }

    /// Records a successful read of AWS for `obj`.
    fn observed_ok(&self, obj: &AsyncEndpointScaling) {
        self.remember(obj, None, None);
        if let Some(uid) = obj.uid()
            && let Some(visit) = self.last_visits.lock().expect("visits lock").get_mut(&uid)
        {
            visit.last_good = Some(Instant::now());
        }
    }

    /// Lets reconciles consult the controllers' watch caches (other resources, their UIDs).
    pub fn watch_stores(&self, stores: Vec<WatchedStore>) {
        *self.stores.lock().expect("stores lock") = stores;
    }

    fn succeeded(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }

    /// Counts a failure and says when to retry.
    fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let n = failures.entry(key.to_string()).or_default();
        *n += 1;
        backoff_delay(*n, jitter_fraction())
    }

    /// Remembers that `resource_version` is what this controller last saw or wrote of the object,
    /// and when it next needs AWS.
    fn visited(
        &self,
        obj: &AsyncEndpointScaling,
        resource_version: Option<String>,
        next_in: Duration,
    ) {
        self.remember(obj, resource_version, Some(next_in));
    }

    /// Remembers a status write made in the middle of a reconcile (its echo is not news either).
    fn wrote(&self, obj: &AsyncEndpointScaling, resource_version: Option<String>) {
        self.remember(obj, resource_version, None);
    }

    fn remember(
        &self,
        obj: &AsyncEndpointScaling,
        resource_version: Option<String>,
        next_in: Option<Duration>,
    ) {
        let Some(uid) = obj.uid() else { return };
        let mut visits = self.last_visits.lock().expect("visits lock");
        let visit = visits.entry(uid).or_insert_with(|| LastVisit {
            resource_versions: Vec::new(),
            // Not due before the reconcile in progress records its outcome.
            next_due: Instant::now() + self.reconcile_timeout,
            last_good: None,
            nudged: None,
            nudge_pending: false,
        });
        if let Some(next_in) = next_in {
            visit.next_due = Instant::now() + next_in;
        }
        if let Some(rv) = resource_version
            && !visit.resource_versions.contains(&rv)
        {
            visit.resource_versions.push(rv);
            let excess = visit
                .resource_versions
                .len()
                .saturating_sub(REMEMBERED_WRITES);
            visit.resource_versions.drain(..excess);
        }
    }

    /// When `obj` is what this controller last wrote or saw, and its next full reconcile is not
    /// due yet, how long until it is: the reconcile then makes no AWS call.
    fn not_due_for(&self, obj: &AsyncEndpointScaling) -> Option<Duration> {
        let uid = obj.uid()?;
        let mut visits = self.last_visits.lock().expect("visits lock");
        let last = visits.get_mut(&uid)?;
        // A nudge is taken by the reconcile starting now; one that comes during it is kept.
        if std::mem::take(&mut last.nudge_pending) {
            return None;
        }
        let same = obj
            .resource_version()
            .is_some_and(|rv| last.resource_versions.contains(&rv));
        let wait = last.next_due.saturating_duration_since(Instant::now());
        (same && obj.meta().deletion_timestamp.is_none() && wait > Duration::from_millis(50))
            .then_some(wait)
    }

    /// AWS changed under a resource (a refresh of the fleet view saw it): its next reconcile
    /// reads AWS at once instead of waiting for its resync.
    pub fn aws_changed(&self, uid: &str) {
        if let Some(visit) = self.last_visits.lock().expect("visits lock").get_mut(uid) {
            visit.next_due = Instant::now();
        }
    }

    /// The peers a held raise waits for: each lowers its MaxCapacity to its share at its next
    /// reconcile, and until then the raise, or a new endpoint's minCapacity, waits. Without a
    /// nudge that is the peer's resync away (a minute by default).
    pub fn awaited(&self) -> broadcast::Receiver<ObjectRef<AsyncEndpointScaling>> {
        self.awaited.subscribe()
    }

    /// Asks for the reconcile of each of `peers` that [`Context::nudge`] lets through.
    fn await_lowerings<'a>(&self, peers: impl Iterator<Item = &'a AsyncEndpointScaling>) {
        for peer in peers.filter(|peer| self.nudge(peer)) {
            // Without a receiver (no controller running yet) the resync does it.
            let _ = self.awaited.send(ObjectRef::from_obj(peer));
        }
    }

    /// Whether a raise's wait for `obj`'s lowering makes it due now. At most once a resync per
    /// object, and never within its backoff: a peer whose lowering keeps failing, or that has
    /// nothing to lower (its picture does not show the newcomer yet), costs at most one more
    /// reconcile a resync, however many raises wait for it and however often they look again.
    pub fn nudge(&self, obj: &AsyncEndpointScaling) -> bool {
        let Some(uid) = obj.uid() else { return false };
        if self
            .failures
            .lock()
            .expect("backoff lock")
            .contains_key(&key(obj))
        {
            return false;
        }
        let mut visits = self.last_visits.lock().expect("visits lock");
        let Some(visit) = visits.get_mut(&uid) else {
            // Never visited: its first reconcile is on its way anyway.
            return false;
        };
        let now = Instant::now();
        if visit
            .nudged
            .is_some_and(|at| now.duration_since(at) < self.resync)
        {
            return false;
        }
        visit.nudged = Some(now);
        visit.nudge_pending = true;
        true
    }

    /// A term of leadership starts: nothing remembered of the visits of an earlier term may make
    /// this one skip an object. A reconcile aborted with the Lease left its object looking
    /// visited (its status write remembered, not due before the reconcile timeout), and the
    /// readings of the metrics went with the Lease, so every object is reconciled afresh. When
    /// AWS was last read for an object is kept: it is about AWS, not about the term.
    pub fn begin_term(&self) {
        // Objects deleted while another replica led were never forgotten here: what none of
        // the watch caches holds is gone (or out of this controller's namespaces). The caches
        // are still the last term's (this term's start after), so an object deleted during
        // this standby goes at the next term: bounded, and never a live object on a guess.
        let watched: Option<(HashSet<String>, HashSet<String>)> = {
            let stores = self.stores.lock().expect("stores lock");
            (!stores.is_empty() && stores.iter().all(|s| s.synced.load(Ordering::SeqCst))).then(
                || {
                    let objects: Vec<_> = stores.iter().flat_map(|s| s.store.state()).collect();
                    (
                        objects.iter().filter_map(|o| o.uid()).collect(),
                        objects.iter().map(|o| key(o)).collect(),
                    )
                },
            )
        };
        let mut visits = self.last_visits.lock().expect("visits lock");
        visits_for_new_term(
            &mut visits,
            watched.as_ref().map(|(uids, _)| uids),
            Instant::now(),
        );
        if let Some((_, keys)) = &watched {
            self.failures
                .lock()
                .expect("backoff lock")
                .retain(|k, _| keys.contains(k));
        }
    }

    fn forget(&self, obj: &AsyncEndpointScaling) {
        if let Some(uid) = obj.uid() {
            self.last_visits.lock().expect("visits lock").remove(&uid);
        }
        self.failures
            .lock()
            .expect("backoff lock")
            .remove(&key(obj));
    }

    /// Every resource in the watch caches.
    fn watched(&self) -> Vec<Arc<AsyncEndpointScaling>> {
        let stores = self.stores.lock().expect("stores lock");
        stores.iter().flat_map(|s| s.store.state()).collect()
    }

    /// Whether no resource with `uid` exists: only answered yes when a synced cache of every
    /// namespace says so, never on a guess.
    pub fn departed(&self, uid: &str) -> bool {
        let stores = self.stores.lock().expect("stores lock").clone();
        let complete = stores
            .iter()
            .any(|s| s.all_namespaces && s.synced.load(Ordering::SeqCst));
        complete
            && !stores
                .iter()
                .flat_map(|s| s.store.state())
                .any(|o| o.uid().as_deref() == Some(uid))
    }
}

/// What a new term keeps of the visits (see [`Context::begin_term`]): when AWS was last read,
/// for the objects still watched (`watched`: their UIDs, None when a cache has not synced).
fn visits_for_new_term(
    visits: &mut HashMap<String, LastVisit>,
    watched: Option<&HashSet<String>>,
    now: Instant,
) {
    visits
        .retain(|uid, visit| visit.last_good.is_some() && watched.is_none_or(|w| w.contains(uid)));
    for visit in visits.values_mut() {
        visit.resource_versions.clear();
        visit.next_due = now;
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
                let outcome = SyncOutcome::RoleNotAssumed(error.message.clone());
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
        publish(
            ctx,
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
    let written = write_status_if_changed(api, &obj, &report.status).await?;
    if report.observed.is_some() && !matches!(report.outcome, SyncOutcome::ObserveFailed(_)) {
        ctx.observed_ok(&obj);
    }
    ctx.metrics.resource_reading(
        &key,
        Some(metrics_reading(&obj, &report, backend.as_ref())),
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

/// What the on-call metrics need from one reconcile. The usage and the firing AlarmHigh come
/// from the fleet view's picture as it is, so this reads nothing from AWS.
fn metrics_reading(
    obj: &AsyncEndpointScaling,
    report: &ConvergeReport,
    backend: &dyn AutoscalingBackend,
) -> ResourceReading {
    let spec = &obj.spec;
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
                .unwrap_or_else(k8s_openapi::jiff::Timestamp::now)
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
    ResourceReading {
        scope: InstanceTypeLabels {
            account: backend.account().unwrap_or_default().to_string(),
            region: backend.region().to_string(),
            instance_type: spec.instance_type.clone(),
        },
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

/// The resources that name the same endpoint variant in the same region (the account is the
/// controller's own): None when `obj` is the oldest of them, else a message naming the oldest.
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
    let status = compute_status(
        &StatusInput {
            generation: obj.meta().generation,
            spec: &obj.spec,
            quota: None,
            desired: None,
            observed: None,
            endpoint: None,
            outcome: outcome.clone(),
            observation_stale,
        },
        previous,
        &now(),
    );
    publish_status_events(ctx, obj, previous, &status, outcome).await;
    write_status_if_changed(api, obj, &status).await
}

/// How soon a younger duplicate checks again whether the older resource is gone.
const DUPLICATE_RECHECK: Duration = Duration::from_secs(5);
/// How soon a raise held for other endpoints' lowerings is tried again (each lowering is its own
/// resource's reconcile; a failed one keeps it held, and each try reads no more than the picture).
const RAISE_RECHECK: Duration = Duration::from_secs(5);

/// Awaited lowerings not yet turned into reconciles; more are dropped (the resync does them).
const AWAITED_BUFFERED: usize = 1024;

/// Where each watched resource's calls land (from the watch cache and the controller's
/// configuration; no AWS call): resources in one account and region share its quotas, and two
/// for one endpoint variant there would overwrite each other. `obj`'s own place is `obj_place`.
async fn watched_places(
    ctx: &Context,
    obj: &AsyncEndpointScaling,
    obj_place: &Place,
) -> (Vec<(Arc<AsyncEndpointScaling>, Place)>, Option<String>) {
    let default_region = match obj.spec.region {
        None => Some(obj_place.region.clone()),
        Some(_) => ctx.backends.default_region().await,
    };
    let others = watched_in(ctx, obj, default_region.as_deref());
    (others, default_region)
}

/// The other watched resources and where each writes, `default_region` standing for an unset
/// `region` (from the watch cache; no call).
fn watched_in(
    ctx: &Context,
    obj: &AsyncEndpointScaling,
    default_region: Option<&str>,
) -> Vec<(Arc<AsyncEndpointScaling>, Place)> {
    ctx.watched()
        .into_iter()
        .filter(|o| o.uid() != obj.uid())
        .filter_map(|o| {
            let place = ctx
                .backends
                .place_of(&Placement::of(&o.spec), default_region)?;
            Some((o, place))
        })
        .collect()
}

/// The watched resources that share `obj`'s instance quota (from the watch cache; no AWS call).
/// One with an invalid spec writes nothing: its endpoint's instances count as in use, not
/// shared. One being deleted no longer shares, but departs: until its cleanup deregisters its
/// target, that target's MaxCapacity stays reserved.
fn quota_peers_of(
    obj: &AsyncEndpointScaling,
    obj_place: &Place,
    others: &[(Arc<AsyncEndpointScaling>, Place)],
) -> Vec<asyncscale_engine::QuotaPeer> {
    if obj.spec.quota.policy != asyncscale_api::QuotaPolicy::Share {
        return Vec::new();
    }
    // Validated once, and only those of this quota: this runs on every reconcile (and again
    // on every raise), over every watched resource.
    let valid: Vec<&(Arc<AsyncEndpointScaling>, Place)> = others
        .iter()
        .filter(|(o, place)| {
            place == obj_place
                && o.spec.instance_type == obj.spec.instance_type
                && o.spec.quota.policy == asyncscale_api::QuotaPolicy::Share
        })
        .filter(|(o, _)| asyncscale_api::validate_spec(&o.spec).is_ok())
        .collect();
    let valid = || valid.iter().copied();
    let mut peers = asyncscale_engine::quota_peers(
        &obj.spec,
        obj_place,
        valid()
            .filter(|(o, _)| o.meta().deletion_timestamp.is_none())
            .map(|(o, place)| (&o.spec, place)),
    );
    peers.extend(asyncscale_engine::departing_quota_peers(
        &obj.spec,
        obj_place,
        valid()
            .filter(|(o, _)| o.meta().deletion_timestamp.is_some())
            .map(|(o, place)| (&o.spec, place)),
    ));
    // Which peers have been reconciled once (see QuotaPeer): their first reconcile read their
    // endpoint, into the picture when it exists; whatever their later outcomes (a failed read,
    // a role not assumed), they stay so, or a share kept for a missing endpoint would come and
    // go with them.
    let established: std::collections::HashSet<String> = valid()
        .filter(|(o, _)| reconciled_once(o))
        .map(|(o, _)| {
            asyncscale_core::ResourceNames::new(&o.spec.endpoint_name, &o.spec.variant_name)
                .resource_id
        })
        .collect();
    for peer in &mut peers {
        peer.established = established.contains(&peer.resource_id);
    }
    peers
}

/// Its status says a reconcile has run (Ready is there, and not the "reading AWS" of a
/// resource not reconciled yet).
fn reconciled_once(o: &AsyncEndpointScaling) -> bool {
    o.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason != "Reconciling")
    })
}

fn younger_duplicate(
    obj: &AsyncEndpointScaling,
    obj_place: &Place,
    others: &[(Arc<AsyncEndpointScaling>, Place)],
) -> Option<String> {
    let variant =
        |o: &AsyncEndpointScaling| (o.spec.endpoint_name.clone(), o.spec.variant_name.clone());
    // creationTimestamp has whole seconds. Two resources created in the same second have no
    // order here: AWS decides, as the first to tag the target owns it and the other one gets
    // Conflict from the ownership check. (Breaking the tie by name could name the other one
    // older than the owner AWS already has, and then both would be refused for good.)
    let created = |o: &AsyncEndpointScaling| o.meta().creation_timestamp.clone().map(|t| t.0);
    // One being deleted hands the endpoint over.
    let (oldest, _) = others
        .iter()
        .filter(|(o, _)| o.meta().deletion_timestamp.is_none())
        .filter(|(o, place)| place == obj_place && variant(o) == variant(obj))
        .min_by_key(|(o, _)| (created(o), o.namespace(), o.name_any()))?;
    (created(oldest) < created(obj)).then(|| {
        format!(
            "the AsyncEndpointScaling {}/{} (older) already manages {} in {}; only one resource may manage an endpoint variant: delete this one (endpointName cannot be changed; to manage another endpoint, create a new resource)",
            oldest.namespace().unwrap_or_default(),
            oldest.name_any(),
            ResourceNames::new(&obj.spec.endpoint_name, &obj.spec.variant_name).resource_id,
            obj_place,
        )
    })
}

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
    publish(
        ctx,
        obj,
        EventType::Warning,
        "DeleteFailed",
        "Delete",
        &message,
    )
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
        publish(ctx, &obj, type_, reason, "Delete", &change.summary).await;
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
        publish(ctx, &obj, EventType::Normal, "Retained", "Delete", note).await;
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

/// 5 s, 10 s, 20 s, … capped at 5 minutes, each scaled by a jitter in [0.5, 1.0).
pub fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let base = 5.0 * 2f64.powi(failures.saturating_sub(1).min(16) as i32);
    Duration::from_secs_f64(base.min(300.0) * (0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
}

/// How far one resync may move from `--resync`, as a fraction of it.
pub const RESYNC_SPREAD: f64 = 0.1;

/// The delay until a resource's next resync: `resync`, moved by at most [`RESYNC_SPREAD`]
/// towards the resource's own phase in the resync period.
///
/// Resources created or converged together would otherwise stay due together for ever: every
/// resync a herd of hundreds of reconciles at once, the last of them late. The phase comes from
/// a hash of the resource's UID on the wall clock, so it is the same in every replica (a new
/// leader keeps the spread) and the fleet spreads evenly over the period within five resyncs;
/// once there, each resource is visited exactly every `resync`, and the AWS calls per resource
/// per resync are what they were.
pub fn resync_delay(resync: Duration, uid: &str, wall_clock: Duration) -> Duration {
    let period = resync.as_secs_f64();
    if period <= 0.0 {
        return resync;
    }
    let phase = fnv1a(uid.as_bytes()) as f64 / u64::MAX as f64 * period;
    let due = wall_clock.as_secs_f64() + period;
    // From `due` to the nearest moment at the phase, in [-period/2, period/2).
    let mut error = (phase - due).rem_euclid(period);
    if error >= period / 2.0 {
        error -= period;
    }
    let most = RESYNC_SPREAD * period;
    Duration::from_secs_f64(period + error.clamp(-most, most))
}

/// FNV-1a: a hash that stays the same across builds and replicas (std's does not promise to).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn wall_clock() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

fn jitter_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

/// Server-side applies `status`; returns the resourceVersion the write produced.
///
/// `force`: the status is this controller's alone to state. Another manager that wrote one of
/// our fields (`kubectl patch --subresource=status`, an older asyncscale under another name) would
/// otherwise make every apply fail with a conflict; forcing takes the field back, and fields only
/// the other manager set are left to it.
async fn patch_status(
    api: &Api<AsyncEndpointScaling>,
    obj: &AsyncEndpointScaling,
    status: &AsyncEndpointScalingStatus,
) -> Result<Option<String>, Error> {
    let patch = json!({
        "apiVersion": "asyncscale.io/v1alpha1",
        "kind": "AsyncEndpointScaling",
        "status": status,
    });
    let written = api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(written.resource_version())
}

/// Writes `status` unless the status this controller last applied (its own managed fields, not
/// what other managers added) already says the same, timestamps aside. Comparing with the whole
/// stored status would patch forever when another manager owns a field we do not set: server-side
/// apply never removes it. Returns the resourceVersion the object now has.
async fn write_status_if_changed(
    api: &Api<AsyncEndpointScaling>,
    obj: &AsyncEndpointScaling,
    status: &AsyncEndpointScalingStatus,
) -> Result<Option<String>, Error> {
    let ours = last_applied_status(obj);
    if ours.is_some_and(|ours| same_ignoring_time(&ours, status)) {
        return Ok(obj.resource_version());
    }
    patch_status(api, obj, status).await
}

/// The status as this controller last applied it: the stored status cut down to the fields its
/// field manager owns (`metadata.managedFields`), or the whole stored status when no entry of
/// ours is there (an API server that does not track managed fields).
pub fn last_applied_status(obj: &AsyncEndpointScaling) -> Option<AsyncEndpointScalingStatus> {
    let stored = serde_json::to_value(obj.status.as_ref()?).ok()?;
    let ours = obj.meta().managed_fields.as_ref().and_then(|entries| {
        entries.iter().find(|m| {
            m.manager.as_deref() == Some(FIELD_MANAGER)
                && m.operation.as_deref() == Some("Apply")
                && m.subresource.as_deref() == Some("status")
        })
    });
    let projected = match ours.and_then(|m| m.fields_v1.as_ref()) {
        Some(fields) => project(&stored, fields.0.get("f:status")?),
        None => stored,
    };
    serde_json::from_value(projected).ok()
}

/// The parts of `value` that a managedFields `fieldsV1` tree names (`f:` fields, `k:` list-map
/// entries, `v:` set values, `i:` list indices); a leaf names the whole value.
fn project(value: &Value, fields: &Value) -> Value {
    let Some(fields) = fields.as_object().filter(|f| f.keys().any(|k| k != ".")) else {
        return value.clone();
    };
    match value {
        Value::Object(map) => Value::Object(
            fields
                .iter()
                .filter_map(|(k, sub)| {
                    let name = k.strip_prefix("f:")?;
                    Some((name.to_string(), project(map.get(name)?, sub)))
                })
                .collect(),
        ),
        // In the list's own order: a list-map's order is the server's, not the field set's.
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| {
                    let sub = fields.iter().find_map(|(k, sub)| {
                        let named = if let Some(key) = k.strip_prefix("k:") {
                            serde_json::from_str::<serde_json::Map<String, Value>>(key).is_ok_and(
                                |key| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)),
                            )
                        } else if let Some(v) = k.strip_prefix("v:") {
                            serde_json::from_str::<Value>(v).is_ok_and(|v| v == *item)
                        } else {
                            k.strip_prefix("i:").and_then(|i| i.parse::<usize>().ok())
                                == Some(index)
                        };
                        named.then_some(sub)
                    })?;
                    Some(project(item, sub))
                })
                .collect(),
        ),
        other => other.clone(),
    }
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
    if let Err(e) = ctx.events.publish(&event, &obj.object_ref(&())).await {
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
        Change::TagAlarm { .. } => "AlarmAdopted",
        Change::UntagAlarm { .. } => "AlarmReleased",
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
        Change::PutScheduledAction { .. } => "ScheduledActionApplied",
        Change::DeleteScheduledAction { .. } => "ScheduledActionDeleted",
    };
    (reason, EventType::Normal)
}

/// Events for what a user cares about in the new status ([`notices`] decides what is news).
async fn publish_status_events(
    ctx: &Context,
    obj: &AsyncEndpointScaling,
    previous: Option<&AsyncEndpointScalingStatus>,
    status: &AsyncEndpointScalingStatus,
    outcome: &SyncOutcome,
) {
    for notice in notices(previous, status, outcome) {
        let type_ = if notice.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, obj, type_, &notice.reason, notice.action, &notice.note).await;
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
        SyncOutcome::WaitingForQuota(_) => "waiting_for_quota",
        SyncOutcome::ObserveFailed(_) => "observe_failed",
        SyncOutcome::RoleNotAssumed(_) => "role_not_assumed",
        SyncOutcome::EndpointUnusable(_) => "endpoint_unusable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica that stood by while objects were deleted forgets them when it leads again; a
    /// cache not synced yet forgets nothing on a guess.
    #[test]
    fn a_new_term_keeps_the_last_good_reads_of_watched_objects_only() {
        let now = Instant::now();
        let visit = |good: bool| LastVisit {
            resource_versions: vec!["7".into()],
            next_due: now + Duration::from_secs(60),
            last_good: good.then_some(now),
            nudged: None,
            nudge_pending: false,
        };
        let visits = || {
            HashMap::from([
                ("watched".to_string(), visit(true)),
                ("never-read".to_string(), visit(false)),
                ("deleted-meanwhile".to_string(), visit(true)),
            ])
        };
        let mut kept = visits();
        let watched = HashSet::from(["watched".to_string(), "never-read".to_string()]);
        visits_for_new_term(&mut kept, Some(&watched), now);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["watched"]);
        assert!(kept["watched"].resource_versions.is_empty());
        assert_eq!(kept["watched"].next_due, now);
        let mut unsynced = visits();
        visits_for_new_term(&mut unsynced, None, now);
        assert_eq!(unsynced.len(), 2);
    }

    #[test]
    fn resyncs_stay_within_a_tenth_of_the_resync() {
        let resync = Duration::from_secs(60);
        for i in 0..2000u64 {
            let at = Duration::from_millis(1_796_000_000_000 + i * 7_919);
            let delay = resync_delay(resync, &format!("uid-{i}"), at);
            assert!(
                (Duration::from_secs(54)..=Duration::from_secs(66)).contains(&delay),
                "{delay:?}"
            );
        }
    }

    /// 300 resources converged in the same instant: within five resyncs no tenth of the period
    /// holds more than twice its share of their visits (a tenth either way drawn from the clock,
    /// tried first, left all 300 in one tenth); and each is then visited exactly once a resync.
    #[test]
    fn a_herd_spreads_over_the_period_within_five_resyncs_and_stays_spread() {
        let resync = Duration::from_secs(30);
        let start = Duration::from_secs(1_796_000_000);
        let mut next: Vec<(String, Duration)> = (0..300)
            .map(|i| (format!("{i:08x}-5ca1-4e00-9000-0000000000{i:02}"), start))
            .collect();
        let spread = |next: &[(String, Duration)]| {
            let mut tenths = [0usize; 10];
            for (_, at) in next {
                let into = at.as_secs_f64().rem_euclid(30.0);
                tenths[(into / 3.0) as usize % 10] += 1;
            }
            tenths
        };
        for _ in 0..5 {
            for (uid, at) in &mut next {
                *at += resync_delay(resync, uid, *at);
            }
        }
        let tenths = spread(&next);
        assert!(
            tenths.iter().all(|n| *n <= 60),
            "visits per tenth of the period: {tenths:?}"
        );
        for (uid, at) in &next {
            let delay = resync_delay(resync, uid, *at);
            assert!(
                delay.abs_diff(resync) < Duration::from_millis(1),
                "{uid}: on its phase, {delay:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_from_five_seconds_to_a_five_minute_cap_with_jitter() {
        assert_eq!(backoff_delay(1, 1.0), Duration::from_secs(5));
        assert_eq!(backoff_delay(2, 1.0), Duration::from_secs(10));
        assert_eq!(backoff_delay(3, 1.0), Duration::from_secs(20));
        assert_eq!(backoff_delay(20, 1.0), Duration::from_secs(300));
        assert_eq!(backoff_delay(1, 0.0), Duration::from_secs_f64(2.5));
        assert!(backoff_delay(4, 0.3) < backoff_delay(4, 0.9));
    }

    fn resource(
        name: &str,
        endpoint: &str,
        region: &str,
        ready: Option<&str>,
    ) -> AsyncEndpointScaling {
        let yaml = format!(
            "apiVersion: asyncscale.io/v1alpha1\nkind: AsyncEndpointScaling\nmetadata: {{name: {name}, namespace: ml, uid: uid-{name}}}\nspec: {{endpointName: {endpoint}, region: {region}, instanceType: ml.g4dn.xlarge, maxCapacity: 4, targetTracking: {{targetValue: 5}}}}\n"
        );
        let mut r = asyncscale_api::parse_manifests("t.yaml", &yaml)
            .unwrap()
            .remove(0)
            .resource;
        r.status = ready.map(|reason| asyncscale_api::AsyncEndpointScalingStatus {
            conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: "Ready".into(),
                status: if reason == "Ready" { "True" } else { "False" }.into(),
                reason: reason.into(),
                message: String::new(),
                observed_generation: None,
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
            }],
            ..Default::default()
        });
        r
    }

    /// A peer reconciled once is established (its missing endpoint keeps a share), whatever
    /// its outcome since; a brand-new one is not, nor one elsewhere.
    #[test]
    fn peers_reconciled_once_are_established() {
        let place = |region: &str| Place {
            account: None,
            region: region.into(),
        };
        let others: Vec<(Arc<AsyncEndpointScaling>, Place)> = [
            // Its role could not be assumed since: still established.
            (
                resource("b", "b", "us-east-1", Some("RoleNotAssumed")),
                "us-east-1",
            ),
            (
                resource("c", "c", "us-east-1", Some("Reconciling")),
                "us-east-1",
            ),
            (resource("d", "d", "us-east-1", None), "us-east-1"),
            // The same endpoint name in another region says nothing of d's.
            (
                resource("d-west", "d", "us-west-2", Some("Ready")),
                "us-west-2",
            ),
        ]
        .into_iter()
        .map(|(r, region)| (Arc::new(r), place(region)))
        .collect();
        let peers = quota_peers_of(
            &resource("a", "a", "us-east-1", None),
            &place("us-east-1"),
            &others,
        );
        let established: Vec<(&str, bool)> = peers
            .iter()
            .map(|p| (p.resource_id.as_str(), p.established))
            .collect();
        assert_eq!(
            established,
            [
                ("endpoint/b/variant/AllTraffic", true),
                ("endpoint/c/variant/AllTraffic", false),
                ("endpoint/d/variant/AllTraffic", false),
            ]
        );
    }
}
