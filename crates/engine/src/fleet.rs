//! The fleet view: one picture of an account and region's scalable targets, scaling policies,
//! asyncscale's alarms and scaling activities, read in bulk and shared by every resource's
//! reconcile. It is how observation happens at scale, not a second engine: it implements the
//! same [`AutoscalingBackend`] port, serving single-resource reads from the picture and passing
//! writes through.
//!
//! Costs (docs/aws-behaviour.md §2.3, §4.2): DescribeScalableTargets 50 a page, DescribeAlarms 100 a
//! page (by asyncscale's name prefix), DescribeScalingActivities 50 a page, newest first, read
//! only back to what the previous refresh saw; DescribeScalingPolicies allows only 10 a page,
//! which at two policies per endpoint would cost 0.2 calls per endpoint by itself, so policies
//! are swept every `policy_refresh_every`-th refresh. A deleted step policy also shows at once
//! in the alarm's actions ("Deleting a step scaling policy deletes the underlying alarm action").
//!
//! Read-your-writes: a write marks its resource; until a refresh that started after the write
//! completes, that resource's reads go to AWS directly, so a plan never acts on a picture older
//! than its own writes. Target tags are read once per ARN and kept (they change only through
//! asyncscale's writes, which drop the cached entry).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::broadcast;

use asyncscale_core::names::ALARM_PREFIX;
use asyncscale_core::{
    EndpointConfigState, EndpointState, EndpointSummary, MetricAlarm, ObservedAlarm,
    ObservedPolicy, ObservedScheduledAction, ObservedTarget, ResourceNames, ScalableTarget,
    ScalingActivity, ScalingPolicy, ScheduledAction, Tags,
};

use crate::error::{AwsError, ErrorClass, ErrorKind};
use crate::port::{AutoscalingBackend, Holding, Page, QuotaReading, Sighting};
use crate::source::{AssumedRole, BackendSource, Place, Placement};

/// Activities kept per resource (the engine reads the newest five).
const ACTIVITIES_KEPT: usize = 10;
/// Pages of activities the first refresh reads (50 each) before it stops and leaves the
/// resources it did not reach to a direct read; later refreshes read only what is new.
const FIRST_SWEEP_PAGES: usize = 20;
/// A resource's activities asked for within this many refresh intervals are kept even without
/// a target: its reconciles ask at every resync, and reading them again at each would cost one
/// call a resync (an account with more history than a sweep reads is never complete).
const ASKED_KEPT_REFRESHES: u32 = 3;

/// Pages of new activities one refresh reads at most (2,500 activities since the last refresh).
const SWEEP_PAGES: usize = 50;
/// Extra attempts for a page that failed recoverably (after the SDK's own retries): one failed
/// page must not fail a whole account's refresh.
const PAGE_WAITS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];
/// Changes a slow listener may fall behind by before it misses some (and waits for resyncs).
const CHANGES_BUFFERED: usize = 4096;
/// How much longer than a refresh interval (one more, within these bounds) a refresh may run
/// before reads stop waiting for it or serving the picture it would replace. The least leaves
/// room for a failed page's retries (0.5 + 1 + 2 s).
const REFRESH_GRACE: Duration = Duration::from_secs(30);
const REFRESH_GRACE_MIN: Duration = Duration::from_secs(5);
/// Endpoint and configuration descriptions a refresh reads at once (the request budget paces
/// them further).
const DESCRIBE_CONCURRENCY: usize = 16;
/// After a failed refresh, reads fail at once for this long instead of every reconcile
/// retrying the whole refresh.
const FAILED_REFRESH_HOLD: Duration = Duration::from_secs(5);
/// The longest the read of target tracking's firing alarms may take within a refresh.
const BACKLOG_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetConfig {
    /// One refresh per interval, whatever the number of resources (the controller's resync).
    pub refresh_every: Duration,
    /// Policies are swept on the first and then every n-th refresh.
    pub policy_refresh_every: u32,
    /// Each refresh also lists the target-tracking AlarmHigh alarms in ALARM (one call, for the
    /// controller's on-call metrics; a one-shot run has none).
    pub read_backlog_alarms: bool,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            refresh_every: Duration::from_secs(60),
            policy_refresh_every: 1,
            read_backlog_alarms: false,
        }
    }
}

/// How a fleet view is doing, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetStats {
    pub refreshes: u64,
    pub failed_refreshes: u64,
    /// Refreshes whose read of target tracking's firing alarms failed or took too long.
    pub backlog_reads_failed: u64,
    pub last_refresh_took: Option<Duration>,
    /// Since the start of the refresh the picture comes from (None: never refreshed).
    pub age: Option<Duration>,
    pub held: Held,
}

/// How much the picture holds: what churn must not grow (each is bounded by what AWS holds now).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub targets: usize,
    /// Resources whose newest activities are kept.
    pub activity_histories: usize,
    pub tags: usize,
    pub endpoints: usize,
    pub configs: usize,
}

/// A resource whose AWS state changed between two refreshes (by hand, by another tool, by a
/// scaling activity): the controller reconciles it at once instead of at its next resync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetChange {
    pub place: Place,
    pub resource_id: String,
}

#[derive(Default)]
struct Picture {
    /// When the refresh the picture comes from started; nothing later can be in it.
    targets_at: Option<Instant>,
    policies_at: Option<Instant>,
    refreshes: u64,
    targets: HashMap<String, ObservedTarget>,
    policies: HashMap<String, Vec<ObservedPolicy>>,
    /// Scheduled actions by resource id, swept with the policies (they change only through
    /// writes, which mark their resource, never by themselves).
    scheduled: HashMap<String, Vec<ObservedScheduledAction>>,
    alarms: HashMap<String, ObservedAlarm>,
    /// Newest first; of resources with a target, or asked for lately (a resource whose target
    /// is gone or not registered yet still shows its last activity). AWS keeps a deregistered
    /// target's history, but a fleet that churns would keep it here for ever.
    activities: HashMap<String, Vec<ScalingActivity>>,
    /// When each resource's activities were last asked for (see [`ASKED_KEPT_REFRESHES`]).
    activities_asked: HashMap<String, Instant>,
    /// The newest activity read so far, of any resource: the next sweep reads back to it. Kept
    /// apart from `activities` so that forgetting a deregistered target's history does not send
    /// the sweep back over it.
    activities_newest: Option<Timestamp>,
    /// A sweep reached the end of the history: a resource with no entry has no activity.
    activities_complete: bool,
    /// Resources whose newest activities are known without the sweep being complete.
    activities_known: HashSet<String>,
    /// Targets that appeared with no history in the picture: registered again by someone else
    /// after their history was forgotten, their older activities are read directly once.
    activities_unknown: HashSet<String>,
    /// Writes not yet covered by a refresh, by resource id (target, policies) and by alarm name
    /// (the two never look alike: `endpoint/…` and `asyncscale-…`).
    written: HashMap<String, Instant>,
    /// When the latest direct read of a part of a resource started.
    read_directly: HashMap<(Part, String), Instant>,
    /// Target tags by ARN, with when they were kept (a target registered during a refresh is
    /// not in it, and its tags stay until the next one).
    tags: HashMap<String, (Tags, Instant)>,
    /// Every SageMaker endpoint of the account and region, described, by name.
    endpoints: HashMap<String, EndpointState>,
    /// Endpoint configurations by name (they never change once created), of the endpoints
    /// listed now or at the refresh before.
    configs: HashMap<String, EndpointConfigState>,
    /// Configurations that came from an earlier run's memory, not read by this view: read again
    /// with any endpoint that moved (a name deleted and created again may mean another type).
    recalled_configs: HashSet<String>,
    /// MaxCapacity of each target this view registered since the refresh that started before
    /// the write (None: deregistered).
    written_max: HashMap<String, Option<i32>>,
    /// Endpoints the latest refresh listed but could not describe, with why: their last known
    /// description (if any) stays in `endpoints`, and no shared cap is raised on their count.
    unreadable: Vec<(String, String)>,
    /// Each instance type's holdings, computed once per refresh.
    usage: HashMap<String, Vec<Holding>>,
    /// The resources whose scale-from-zero alarm fires, computed once per refresh.
    waiting: Option<Arc<HashSet<String>>>,
    /// The resources whose target-tracking AlarmHigh fires, as the latest refresh read them
    /// (None: that read failed, or none was made).
    backlog_above_target: Option<Arc<HashSet<String>>>,
    failed: Option<(Instant, AwsError)>,
    /// When the refresh under way took the single flight (None: no refresh is under way).
    refresh_started: Option<Instant>,
    failed_refreshes: u64,
    backlog_reads_failed: u64,
    last_refresh_took: Option<Duration>,
}

impl Picture {
    fn fresh(&self, every: Duration) -> bool {
        self.targets_at.is_some_and(|at| at.elapsed() < every)
    }

    /// Whether `key` (a resource id, or an alarm name for [`Part::Alarm`]) was written after
    /// the picture's data of `part` was read, by the last refresh and by any direct read since.
    fn needs_direct_read(&self, part: Part, key: &str) -> bool {
        let Some(written) = self.written.get(key) else {
            return false;
        };
        let refreshed = match part {
            // Scheduled actions are swept with the policies.
            Part::Policies | Part::Scheduled => self.policies_at,
            _ => self.targets_at,
        };
        let covered = refreshed.is_some_and(|at| at > *written)
            || self
                .read_directly
                .get(&(part, key.to_string()))
                .is_some_and(|at| at > written);
        !covered
    }

    /// Each instance type's holdings, computed once per refresh.
    fn usage_of(&mut self, instance_type: &str) -> &[Holding] {
        if !self.usage.contains_key(instance_type) {
            let usage = crate::endpoints::unreadable(
                crate::endpoints::holdings(
                    self.endpoints
                        .values()
                        .map(|e| (e, self.configs.get(&e.config_name))),
                    instance_type,
                ),
                self.unreadable
                    .iter()
                    .map(|(name, why)| (name.as_str(), why.as_str())),
            );
            self.usage.insert(instance_type.to_string(), usage);
        }
        &self.usage[instance_type]
    }

    fn read_directly_at(&mut self, part: Part, key: &str, started: Instant) {
        self.read_directly.insert((part, key.to_string()), started);
    }
}

/// The parts of the picture a write makes stale for one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    Target,
    Policies,
    Scheduled,
    Activities,
    Alarm,
}

/// The endpoints a refresh described, the configurations it read, and the endpoints it could
/// not describe (with why).
type SweptEndpoints = (
    Vec<EndpointState>,
    Vec<EndpointConfigState>,
    Vec<(String, String)>,
);

/// What one refresh read.
struct Sweep {
    started: Instant,
    targets: Vec<ObservedTarget>,
    policies: Option<Vec<ObservedPolicy>>,
    scheduled: Option<Vec<ObservedScheduledAction>>,
    alarms: Vec<ObservedAlarm>,
    activities: Vec<(String, ScalingActivity)>,
    /// The activity sweep reached the end of the history.
    activities_complete: bool,
    /// The activity sweep stopped at its page limit before reaching what was known.
    activities_cut: bool,
    endpoints: Vec<EndpointState>,
    configs: Vec<EndpointConfigState>,
    /// Endpoints listed that could not be described, with why.
    unreadable: Vec<(String, String)>,
    /// None when the read failed or took too long: it serves only the on-call metrics, so it
    /// never fails or holds a refresh.
    backlog_above_target: Option<Arc<HashSet<String>>>,
}

/// What a view read of SageMaker's endpoints, kept between one-shot runs (the CLI's cache on
/// disk): a run then describes only the endpoints whose ListEndpoints summary (status, last
/// modified) moved, as the controller's refreshes do. Configurations never change under a name.
/// A run may lose it at any time; it only saves reads.
pub trait EndpointMemory: Send + Sync {
    /// What was kept for `place`, if anything.
    fn recall(&self, place: &Place) -> Option<(Vec<EndpointState>, Vec<EndpointConfigState>)>;
    /// Keeps what a refresh of `place` read.
    fn keep(&self, place: &Place, endpoints: &[&EndpointState], configs: &[&EndpointConfigState]);
}

/// The single flight of refreshes, held: readers that find it taken judge the refresh under way
/// by when it was taken; the mark goes with the guard, also when the holder is cancelled.
struct InFlight<'a> {
    view: &'a FleetView,
    _guard: tokio::sync::MutexGuard<'a, ()>,
}

impl<'a> InFlight<'a> {
    fn take(view: &'a FleetView, guard: tokio::sync::MutexGuard<'a, ()>) -> Self {
        view.picture().refresh_started = Some(Instant::now());
        Self {
            view,
            _guard: guard,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.view.picture().refresh_started = None;
    }
}

pub struct FleetView {
    inner: Arc<dyn AutoscalingBackend>,
    config: FleetConfig,
    memory: Option<Arc<dyn EndpointMemory>>,
    picture: Mutex<Picture>,
    /// Single flight: one refresh at a time; the others wait for it and use its result.
    refreshing: tokio::sync::Mutex<()>,
    changes: broadcast::Sender<FleetChange>,
}

impl FleetView {
    pub fn new(inner: Arc<dyn AutoscalingBackend>, config: FleetConfig) -> Self {
        Self::reporting_to(inner, config, broadcast::channel(CHANGES_BUFFERED).0)
    }

    /// A view that sends the changes it finds to `changes` (shared by several views).
    pub fn reporting_to(
        inner: Arc<dyn AutoscalingBackend>,
        config: FleetConfig,
        changes: broadcast::Sender<FleetChange>,
    ) -> Self {
        Self {
            inner,
            config,
            memory: None,
            picture: Mutex::new(Picture::default()),
            refreshing: tokio::sync::Mutex::new(()),
            changes,
        }
    }

    /// Resources whose AWS state a refresh found changed.
    pub fn changes(&self) -> broadcast::Receiver<FleetChange> {
        self.changes.subscribe()
    }

    /// A view that starts from what `memory` kept of its endpoints, and keeps what it reads.
    pub fn remembering(mut self, memory: Arc<dyn EndpointMemory>) -> Self {
        self.memory = Some(memory);
        self
    }

    fn picture(&self) -> std::sync::MutexGuard<'_, Picture> {
        self.picture.lock().expect("fleet view lock")
    }

    /// How long a refresh may run before the picture it would replace no longer stands for the
    /// present (a refresh starts once the picture is one interval old).
    fn refresh_overdue_after(&self) -> Duration {
        let every = self.config.refresh_every;
        every + every.clamp(REFRESH_GRACE_MIN, REFRESH_GRACE)
    }

    /// Refreshes the picture when it is older than the refresh interval (once, whoever asks).
    async fn ensure_fresh(&self) -> Result<(), AwsError> {
        let refreshes_seen = {
            let picture = self.picture();
            if picture.fresh(self.config.refresh_every) {
                return Ok(());
            }
            picture.refreshes
        };
        // While another reconcile refreshes, the others go on with the picture there is (a
        // policy sweep of a large fleet takes seconds at AWS's rates); only the first refresh,
        // with no picture yet, is waited for.
        let guard = match self.refreshing.try_lock() {
            Ok(guard) => guard,
            // After a failed refresh the old picture is no good observation: wait for the retry.
            Err(_) if self.picture().targets_at.is_some() && self.picture().failed.is_none() => {
                let (age, running) = {
                    let picture = self.picture();
                    (
                        picture.targets_at.map_or(Duration::MAX, |at| at.elapsed()),
                        // Between taking the flight and saying so: it just started.
                        picture
                            .refresh_started
                            .map_or(Duration::ZERO, |at| at.elapsed()),
                    )
                };
                let bound = self.refresh_overdue_after();
                if age <= self.config.refresh_every + bound {
                    return Ok(());
                }
                // Too old to stand for the present (after an idle spell, a standby's turn, or a
                // refresh that hangs): wait for the refresh under way, but only as long as a
                // refresh may run. Its running time judges it, not the picture's age: one that
                // just started after a long idle spell is not overdue.
                let left = bound.saturating_sub(running);
                match tokio::time::timeout(left, self.refreshing.lock()).await {
                    Ok(guard) => guard,
                    Err(_) => {
                        return Err(AwsError::local(
                            ErrorClass::Recoverable,
                            "FleetRefresh",
                            ErrorKind::RefreshOverdue,
                            format!(
                                "the refresh of AWS under way has run for {}s without finishing, and the picture of AWS is {}s old (an AWS API is slow or unreachable)",
                                (running + left).as_secs(),
                                age.as_secs()
                            ),
                        ));
                    }
                }
            }
            Err(_) => self.refreshing.lock().await,
        };
        let _single_flight = InFlight::take(self, guard);
        {
            let picture = self.picture();
            // A refresh that ended while this read waited for it serves, even if it took longer
            // than an interval.
            if picture.fresh(self.config.refresh_every) || picture.refreshes > refreshes_seen {
                return Ok(());
            }
            // Waited behind a refresh that failed: its error, not another attempt.
            if let Some((at, error)) = &picture.failed
                && at.elapsed() < FAILED_REFRESH_HOLD
            {
                return Err(error.clone());
            }
        }
        if let Some(memory) = &self.memory {
            let mut picture = self.picture();
            if picture.targets_at.is_none()
                && picture.endpoints.is_empty()
                && let Some((endpoints, configs)) = memory.recall(&self.place())
            {
                picture.endpoints = endpoints
                    .into_iter()
                    .map(|e| (e.summary.name.clone(), e))
                    .collect();
                picture.recalled_configs = configs.iter().map(|c| c.name.clone()).collect();
                picture.configs = configs.into_iter().map(|c| (c.name.clone(), c)).collect();
            }
        }
        match self.sweep().await {
            Ok(sweep) => {
                self.install(sweep);
                if let Some(memory) = &self.memory {
                    let picture = self.picture();
                    // An unreadable endpoint's last description is not kept as if read.
                    let endpoints: Vec<&EndpointState> = picture
                        .endpoints
                        .values()
                        .filter(|e| !picture.unreadable.iter().any(|(n, _)| *n == e.summary.name))
                        .collect();
                    let configs: Vec<&EndpointConfigState> = picture.configs.values().collect();
                    memory.keep(&self.place(), &endpoints, &configs);
                }
                Ok(())
            }
            Err(error) => {
                let mut picture = self.picture();
                picture.failed = Some((Instant::now(), error.clone()));
                picture.failed_refreshes += 1;
                Err(error)
            }
        }
    }

    async fn sweep(&self) -> Result<Sweep, AwsError> {
        let started = Instant::now();
        let (refreshes, policies_at, newest_known, oldest_open) = {
            let picture = self.picture();
            (
                picture.refreshes,
                picture.policies_at,
                picture.activities_newest,
                picture
                    .activities
                    .values()
                    .flatten()
                    .filter(|a| !is_finished(a))
                    .filter_map(start_time)
                    .min(),
            )
        };
        // Every n-th refresh; and whenever the policies read last are older than n intervals:
        // after a long idle spell (a standby that leads again) the count says nothing of age,
        // and a soak saw a replica take the Lease back after 15 minutes of standby and rewrite
        // the policies of every resource created meanwhile, missing from its old picture.
        let every = self.config.policy_refresh_every.max(1);
        let policies_old = policies_at
            .is_none_or(|at| started.duration_since(at) > self.config.refresh_every * every);
        let sweep_policies = refreshes % u64::from(every) == 0 || policies_old;
        let inner = &self.inner;
        let (targets, policies, scheduled, alarms, activities, endpoints, backlog) = tokio::join!(
            all_pages(|next| inner.list_targets(next)),
            async {
                if sweep_policies {
                    all_pages(|next| inner.list_policies(next)).await.map(Some)
                } else {
                    Ok(None)
                }
            },
            async {
                if sweep_policies {
                    all_pages(|next| inner.list_scheduled_actions(next))
                        .await
                        .map(Some)
                } else {
                    Ok(None)
                }
            },
            all_pages(|next| inner.list_alarms(ALARM_PREFIX, next)),
            // Back to the newest activity seen before, and to the oldest one still in
            // progress then (its status may have changed since).
            self.sweep_activities(match (newest_known, oldest_open) {
                (Some(newest), Some(open)) => Some(newest.min(open)),
                (newest, _) => newest,
            }),
            self.sweep_endpoints(),
            async {
                if !self.config.read_backlog_alarms {
                    return None;
                }
                // Bounded on its own: a hung read of what only the metrics use must not hold
                // the refresh that every reconcile waits for.
                let bound = (self.config.refresh_every / 2)
                    .clamp(Duration::from_secs(1), BACKLOG_READ_TIMEOUT);
                match tokio::time::timeout(
                    bound,
                    with_page_retries(|| inner.backlog_above_target()),
                )
                .await
                {
                    Ok(Ok(firing)) => Some(firing),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "target-tracking alarms unread: which endpoints have backlog above their target is unknown until the next refresh");
                        None
                    }
                    Err(_) => {
                        tracing::warn!(timeout = ?bound, "target-tracking alarms unread (no answer in time): which endpoints have backlog above their target is unknown until the next refresh");
                        None
                    }
                }
            },
        );
        let (activities, activities_complete, activities_cut) = activities?;
        let (endpoints, configs, unreadable) = endpoints?;
        let mut targets = targets?;
        self.confirm_vanished_targets(&mut targets).await?;
        Ok(Sweep {
            started,
            targets,
            policies: policies?,
            scheduled: scheduled?,
            alarms: alarms?,
            activities,
            activities_complete,
            activities_cut,
            endpoints,
            configs,
            unreadable,
            backlog_above_target: backlog,
        })
    }

    /// Targets the picture had that the listing did not show, unless this view deregistered
    /// them, are read one by one before they are taken for gone. A listing is paged, and what
    /// a page token means when items are removed meanwhile is not documented: with a token
    /// that counts items, a target deregistered from an earlier page moves the next page's
    /// first one back onto the page already read, and it is listed nowhere. A soak saw exactly
    /// that: a target missing from the picture counted as no cap, and a raise put the caps one
    /// over the quota. Usually none vanish, so this costs nothing; an endpoint deleted behind
    /// asyncscale's back costs one DescribeScalableTargets.
    async fn confirm_vanished_targets(
        &self,
        targets: &mut Vec<ObservedTarget>,
    ) -> Result<(), AwsError> {
        let (vanished, known): (Vec<String>, HashMap<String, ObservedTarget>) = {
            let picture = self.picture();
            let listed: HashSet<&str> = targets
                .iter()
                .map(|t| t.target.resource_id.as_str())
                .collect();
            // What the picture had, and what this view registered that no read has brought
            // into it yet (its cap is only in `written_max`); not what this view deregistered.
            let ids: HashSet<&String> = picture
                .targets
                .keys()
                .chain(
                    picture
                        .written_max
                        .iter()
                        .filter(|(_, max)| max.is_some())
                        .map(|(id, _)| id),
                )
                .filter(|id| !listed.contains(id.as_str()))
                .filter(|id| picture.written_max.get(*id) != Some(&None))
                .collect();
            let known = ids
                .iter()
                .filter_map(|id| picture.targets.get(*id).map(|t| ((*id).clone(), t.clone())))
                .collect();
            (ids.into_iter().cloned().collect(), known)
        };
        let inner = &self.inner;
        let read = read_each(
            vanished,
            |id| async move { inner.describe_target(&id).await },
        )
        .await;
        for (id, found) in read {
            match found {
                Ok(Some(found)) => {
                    tracing::debug!(resource = %id, "a target the listing skipped is still registered");
                    targets.push(found);
                }
                Ok(None) => {}
                Err(e) if e.class == ErrorClass::Recoverable => return Err(e),
                // Unreadable for good: what was known stands (its cap stays reserved).
                Err(_) => targets.extend(known.get(&id).cloned()),
            }
        }
        Ok(())
    }

    /// ListEndpoints (100 a page); DescribeEndpoint only for the endpoints whose status or
    /// LastModifiedTime moved since the last refresh (an instance count changes only through an
    /// update, which moves both); DescribeEndpointConfig only for names not read before. A
    /// no-drift refresh of N endpoints costs ceil(N/100) calls.
    async fn sweep_endpoints(&self) -> Result<SweptEndpoints, AwsError> {
        let mut listed = all_pages(|next| self.inner.list_endpoints(next)).await?;
        // As for targets (see `confirm_vanished_targets`): an endpoint the picture had that the
        // listing skipped would take its instances out of every quota's count. Each is read
        // before it is taken for gone; one still there is listed as its description says.
        let vanished: Vec<String> = {
            let picture = self.picture();
            let names: HashSet<&str> = listed.iter().map(|s| s.name.as_str()).collect();
            picture
                .endpoints
                .keys()
                .filter(|name| !names.contains(name.as_str()))
                .cloned()
                .collect()
        };
        let inner = &self.inner;
        let read = read_each(vanished, |name| async move {
            inner.describe_endpoint(&name).await
        })
        .await;
        let mut vanished_unreadable = Vec::new();
        for (name, found) in read {
            match found {
                Ok(Some(endpoint)) => listed.push(endpoint.summary),
                Ok(None) => {}
                Err(e) if e.class == ErrorClass::Recoverable => return Err(e),
                // Unreadable for good: its last description stands for it, and it is named
                // unreadable, so that no shared cap is raised on its count.
                Err(e) => {
                    if let Some(old) = self.picture().endpoints.get(&name) {
                        listed.push(old.summary.clone());
                    }
                    vanished_unreadable.push((name, e.to_string()));
                }
            }
        }
        let (known, known_configs): (HashMap<String, EndpointState>, HashSet<String>) = {
            let picture = self.picture();
            (
                listed
                    .iter()
                    .filter_map(|s| picture.endpoints.get(&s.name).filter(|e| e.summary == *s))
                    .map(|e| (e.summary.name.clone(), e.clone()))
                    .collect(),
                picture
                    .configs
                    .keys()
                    .filter(|name| !picture.recalled_configs.contains(*name))
                    .cloned()
                    .collect(),
            )
        };
        let to_describe: Vec<String> = listed
            .iter()
            .filter(|s| !known.contains_key(&s.name))
            .map(|s| s.name.clone())
            .collect();
        // Each endpoint with its configuration right after it, so that both APIs' budgets are
        // spent at once (a first refresh of N endpoints takes N reads of each).
        let known_configs = Arc::new(known_configs);
        let described = describe_all(to_describe, {
            let inner = self.inner.clone();
            move |name| {
                let (inner, known_configs) = (inner.clone(), known_configs.clone());
                async move {
                    // An endpoint or configuration that cannot be read for good (access denied
                    // to its name, say) does not fail every resource of the account; the
                    // resource that scales it gets the error from its own read. Its instances
                    // are unknown, though: it is named, its last description kept, and no
                    // shared cap is raised until it can be read.
                    let endpoint = match with_page_retries(|| inner.describe_endpoint(&name)).await
                    {
                        Ok(Some(endpoint)) => endpoint,
                        // Deleted since it was listed, or a wrong answer: the next refresh's
                        // list says which. Until then its instances are unknown, not none.
                        Ok(None) => {
                            return Ok(Some(Err((
                                name,
                                crate::endpoints::LISTED_NOT_FOUND.to_string(),
                            ))));
                        }
                        Err(e) if e.class == ErrorClass::Recoverable => return Err(e),
                        Err(e) => {
                            tracing::warn!(endpoint = %name, error = %e, "SageMaker endpoint unreadable: its instances are unknown, so no shared instance cap is raised until it can be read");
                            return Ok(Some(Err((name, e.to_string()))));
                        }
                    };
                    let config = if known_configs.contains(&endpoint.config_name) {
                        None
                    } else {
                        match with_page_retries(|| {
                            inner.describe_endpoint_config(&endpoint.config_name)
                        })
                        .await
                        {
                            Ok(config) => config,
                            Err(e) if e.class == ErrorClass::Recoverable => return Err(e),
                            Err(e) => {
                                tracing::warn!(endpoint = %name, config = %endpoint.config_name, error = %e, "endpoint configuration unreadable: the endpoint's instances count against every instance quota");
                                None
                            }
                        }
                    };
                    Ok(Some(Ok((endpoint, config))))
                }
            }
        })
        .await?;
        let mut endpoints: Vec<EndpointState> = known.into_values().collect();
        let mut configs = Vec::new();
        let mut unreadable = Vec::new();
        for described in described.into_iter().flatten() {
            match described {
                Ok((endpoint, config)) => {
                    endpoints.push(endpoint);
                    configs.extend(config);
                }
                Err((name, why)) => {
                    // The last description read stands for it: a failed read never lowers
                    // the count of instances in use.
                    endpoints.extend(self.picture().endpoints.get(&name).cloned());
                    unreadable.push((name, why));
                }
            }
        }
        unreadable.extend(vanished_unreadable);
        unreadable.sort();
        Ok((endpoints, configs, unreadable))
    }

    /// Newest first, until `back_to` (inclusive), the end of the history or the page limit.
    /// Returns the activities, whether the history ended, and whether the page limit cut it.
    async fn sweep_activities(
        &self,
        back_to: Option<Timestamp>,
    ) -> Result<(Vec<(String, ScalingActivity)>, bool, bool), AwsError> {
        let limit = if back_to.is_some() {
            SWEEP_PAGES
        } else {
            FIRST_SWEEP_PAGES
        };
        let mut read = Vec::new();
        let mut next = None;
        for _ in 0..limit {
            let page = with_page_retries(|| self.inner.list_activities(next.clone())).await?;
            let reached = back_to.is_some_and(|back_to| {
                page.items
                    .iter()
                    .filter_map(|(_, a)| start_time(a))
                    .any(|t| t <= back_to)
            });
            read.extend(page.items);
            match page.next {
                None => return Ok((read, true, false)),
                Some(_) if reached => return Ok((read, false, false)),
                Some(token) => next = Some(token),
            }
        }
        Ok((read, false, true))
    }

    fn install(&self, sweep: Sweep) {
        let mut changed: Vec<String> = Vec::new();
        let mut picture = self.picture();
        let first = picture.targets_at.is_none();
        let started = sweep.started;
        // Resources written since this refresh started keep what their direct reads found.
        let pinned: HashSet<String> = picture
            .written
            .iter()
            .filter(|(_, w)| **w >= started)
            .map(|(key, _)| key.clone())
            .collect();
        // Not drift: a part this view wrote before the refresh started and has not read since
        // (the writer's read-back is still to come). The picture's entry predates the write, so
        // the difference is that write; the reconcile that made it reads it back and acts on
        // whatever else AWS shows, and waking it again would be for nothing.
        let drift =
            |picture: &Picture, part: Part, key: &String| !picture.needs_direct_read(part, key);

        let (targets, changed_targets) = merge_refresh(
            &picture.targets,
            sweep
                .targets
                .into_iter()
                .map(|t| (t.target.resource_id.clone(), t))
                .collect(),
            &pinned,
        );
        changed.extend(
            changed_targets
                .into_iter()
                .filter(|id| drift(&picture, Part::Target, id)),
        );
        // Targets new to the picture whose history it forgot (or never had): whatever this
        // sweep brings of it is only what is new.
        let new_without_history: Vec<String> = if first {
            Vec::new()
        } else {
            targets
                .keys()
                .filter(|id| {
                    !picture.targets.contains_key(*id) && !picture.activities.contains_key(*id)
                })
                .cloned()
                .collect()
        };

        let swept_policies = sweep.policies.is_some();
        if let Some(policies) = sweep.policies {
            let mut by_target: HashMap<String, Vec<ObservedPolicy>> = HashMap::new();
            for p in policies {
                by_target
                    .entry(p.policy.resource_id.clone())
                    .or_default()
                    .push(p);
            }
            let (policies, changed_policies) = merge_refresh(&picture.policies, by_target, &pinned);
            changed.extend(
                changed_policies
                    .into_iter()
                    .filter(|id| drift(&picture, Part::Policies, id)),
            );
            picture.policies = policies;
        }
        if let Some(scheduled) = sweep.scheduled {
            let mut by_target: HashMap<String, Vec<ObservedScheduledAction>> = HashMap::new();
            for a in scheduled {
                by_target
                    .entry(a.action.resource_id.clone())
                    .or_default()
                    .push(a);
            }
            let (scheduled, changed_scheduled) =
                merge_refresh(&picture.scheduled, by_target, &pinned);
            changed.extend(
                changed_scheduled
                    .into_iter()
                    .filter(|id| drift(&picture, Part::Scheduled, id)),
            );
            picture.scheduled = scheduled;
        }
        // Only now: the scheduled actions' changes are judged by when policies were swept before.
        if swept_policies {
            picture.policies_at = Some(started);
        }

        let (alarms, changed_alarms) = merge_refresh(
            &picture.alarms,
            sweep
                .alarms
                .into_iter()
                .map(|a| (a.alarm.name.clone(), a))
                .collect(),
            &pinned,
        );
        changed.extend(
            changed_alarms
                .iter()
                .filter(|name| drift(&picture, Part::Alarm, name))
                .filter_map(|name| ResourceNames::resource_id_of_alarm(name))
                .map(str::to_string),
        );

        let mut by_resource: HashMap<String, Vec<ScalingActivity>> = HashMap::new();
        for (id, activity) in sweep.activities {
            by_resource.entry(id).or_default().push(activity);
        }
        let mut with_new_activity = HashSet::new();
        for (id, read) in by_resource {
            let list = picture.activities.entry(id.clone()).or_default();
            if merge_activities(list, read) {
                let newest = list.first().and_then(start_time);
                picture.activities_newest = picture.activities_newest.max(newest);
                with_new_activity.insert(id);
            }
        }
        if sweep.activities_complete {
            picture.activities_complete = true;
        } else if sweep.activities_cut {
            // Newer activities than the sweep could read may exist for anyone it did not reach.
            picture.activities_complete = false;
            picture.activities_known = with_new_activity.clone();
        }
        changed.extend(with_new_activity);

        // An endpoint whose description moved wakes the resources of its variants, before and after.
        let endpoints: HashMap<String, EndpointState> = sweep
            .endpoints
            .into_iter()
            .map(|e| (e.summary.name.clone(), e))
            .collect();
        for name in endpoints.keys().chain(picture.endpoints.keys()) {
            let (before, after) = (picture.endpoints.get(name), endpoints.get(name));
            if before != after {
                for e in before.into_iter().chain(after) {
                    changed.extend(
                        e.variants
                            .iter()
                            .map(|v| ResourceNames::new(name, &v.name).resource_id),
                    );
                }
            }
        }
        // Configurations of the endpoints listed now or before (a reconcile may have read one
        // for an endpoint created after this refresh listed): the others' are forgotten.
        let referenced: HashSet<String> = endpoints
            .values()
            .chain(picture.endpoints.values())
            .map(|e| e.config_name.clone())
            .chain(sweep.configs.iter().map(|c| c.name.clone()))
            .collect();
        picture.configs.retain(|name, _| referenced.contains(name));
        picture
            .recalled_configs
            .retain(|name| referenced.contains(name));
        picture.endpoints = endpoints;
        picture.unreadable = sweep.unreadable;
        for config in &sweep.configs {
            picture.recalled_configs.remove(&config.name);
        }
        picture
            .configs
            .extend(sweep.configs.into_iter().map(|c| (c.name.clone(), c)));
        picture.usage.clear();
        picture.waiting = None;
        // Unknown when unread: the metrics then count the scale-from-zero alarms alone rather
        // than repeat an old answer.
        if self.config.read_backlog_alarms && sweep.backlog_above_target.is_none() {
            picture.backlog_reads_failed += 1;
        }
        picture.backlog_above_target = sweep.backlog_above_target;
        // Writes this refresh saw are in its targets; later ones stay.
        picture.written_max.retain(|id, _| pinned.contains(id));
        // What belongs to targets gone from AWS is forgotten with them, unless this view wrote
        // them since the refresh started (its own reads of them stand) or a reconcile still asks.
        let asked_since = started
            .checked_sub(self.config.refresh_every * ASKED_KEPT_REFRESHES)
            .unwrap_or(started);
        picture.activities_asked.retain(|_, at| *at >= asked_since);
        let asked: HashSet<String> = picture.activities_asked.keys().cloned().collect();
        let present =
            |id: &String| targets.contains_key(id) || pinned.contains(id) || asked.contains(id);
        picture.activities_unknown.extend(new_without_history);
        picture.activities.retain(|id, _| present(id));
        picture.activities_known.retain(|id| present(id));
        picture.activities_unknown.retain(|id| present(id));
        let arns: HashSet<&String> = targets.values().filter_map(|t| t.arn.as_ref()).collect();
        picture
            .tags
            .retain(|arn, (_, kept)| arns.contains(arn) || *kept >= started);
        picture.targets = targets;
        picture.alarms = alarms;
        picture.targets_at = Some(started);
        picture.refreshes += 1;
        picture.last_refresh_took = Some(started.elapsed());
        picture.failed = None;
        // Forget a write, or a direct read, once refreshes that started after it cover it: the
        // policies only when a policy sweep did.
        let policies_at = picture.policies_at;
        let covered = move |part: Part, at: Instant| match part {
            Part::Policies | Part::Scheduled => policies_at.is_some_and(|p| p > at),
            _ => started > at,
        };
        picture
            .written
            .retain(|_, w| !(covered(Part::Target, *w) && covered(Part::Policies, *w)));
        picture
            .read_directly
            .retain(|(part, _), at| !covered(*part, *at));
        drop(picture);

        if !first {
            changed.sort();
            changed.dedup();
            for resource_id in changed {
                // Nobody listening (the CLI) is fine.
                let _ = self.changes.send(FleetChange {
                    place: self.inner.place(),
                    resource_id,
                });
            }
        }
    }

    /// The policies (and scheduled actions) read so far are not to be trusted: the next refresh
    /// sweeps them. For a replica that leads again after a standby, whose picture is as old as
    /// its last term (a soak saw one point an alarm at a step policy re-created meanwhile).
    pub fn forget_policies(&self) {
        self.picture().policies_at = None;
    }

    pub fn stats(&self) -> FleetStats {
        let picture = self.picture();
        FleetStats {
            refreshes: picture.refreshes,
            failed_refreshes: picture.failed_refreshes,
            backlog_reads_failed: picture.backlog_reads_failed,
            last_refresh_took: picture.last_refresh_took,
            age: picture.targets_at.map(|at| at.elapsed()),
            held: Held {
                targets: picture.targets.len(),
                activity_histories: picture.activities.len(),
                tags: picture.tags.len(),
                endpoints: picture.endpoints.len(),
                configs: picture.configs.len(),
            },
        }
    }

    /// Marks a resource (or an alarm, by name) as written: read directly until a refresh or a
    /// direct read that started after now.
    fn wrote(&self, key: &str) {
        self.picture()
            .written
            .insert(key.to_string(), Instant::now());
    }

    /// A per-resource part of the picture (policies, scheduled actions): served from it unless
    /// this view wrote the resource since the part was read; then read directly and kept. An
    /// empty read is kept as no entry, as a sweep leaves it, so that the next refresh sees no
    /// change where there is none.
    async fn per_resource<T, Read, Reading>(
        &self,
        part: Part,
        resource_id: &str,
        of: fn(&mut Picture) -> &mut HashMap<String, Vec<T>>,
        read: Read,
    ) -> Result<Vec<T>, AwsError>
    where
        T: Clone + Send,
        Read: FnOnce() -> Reading + Send,
        Reading: Future<Output = Result<Vec<T>, AwsError>> + Send,
    {
        self.ensure_fresh().await?;
        {
            let mut picture = self.picture();
            if !picture.needs_direct_read(part, resource_id) {
                return Ok(of(&mut picture)
                    .get(resource_id)
                    .cloned()
                    .unwrap_or_default());
            }
        }
        let started = Instant::now();
        let read = read().await?;
        let mut picture = self.picture();
        picture.read_directly_at(part, resource_id, started);
        let kept = of(&mut picture);
        if read.is_empty() {
            kept.remove(resource_id);
        } else {
            kept.insert(resource_id.to_string(), read.clone());
        }
        Ok(read)
    }

    fn forget_tags(&self, arn: &str) {
        self.picture().tags.remove(arn);
    }
}

/// The refreshed entries, except that `pinned` keys (written since the refresh started) keep
/// their current one; and the keys whose entry changed.
fn merge_refresh<V: Clone + PartialEq>(
    current: &HashMap<String, V>,
    mut refreshed: HashMap<String, V>,
    pinned: &HashSet<String>,
) -> (HashMap<String, V>, Vec<String>) {
    for key in pinned {
        match current.get(key) {
            Some(kept) => refreshed.insert(key.clone(), kept.clone()),
            None => refreshed.remove(key),
        };
    }
    let keys: HashSet<&String> = refreshed.keys().chain(current.keys()).collect();
    let changed = keys
        .into_iter()
        .filter(|key| refreshed.get(*key) != current.get(*key))
        .cloned()
        .collect();
    (refreshed, changed)
}

/// `describe` of each name, a few at a time; the first error fails them all.
async fn describe_all<T, F, Fut>(names: Vec<String>, describe: F) -> Result<Vec<T>, AwsError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    use futures::StreamExt;
    futures::stream::iter(names)
        .map(describe)
        .buffer_unordered(DESCRIBE_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Reads each of `names` on its own, [`DESCRIBE_CONCURRENCY`] at a time, each retried as a page
/// is; every answer comes back with its name, a failure included, for the caller to weigh.
async fn read_each<T, F, Fut>(names: Vec<String>, read: F) -> Vec<(String, Result<T, AwsError>)>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    use futures::StreamExt;
    let read = &read;
    futures::stream::iter(names)
        .map(|name| async move {
            let answer = with_page_retries(|| read(name.clone())).await;
            (name, answer)
        })
        .buffer_unordered(DESCRIBE_CONCURRENCY)
        .collect()
        .await
}

/// Every page, each retried on its own when it fails recoverably.
async fn all_pages<T, F, Fut>(fetch: F) -> Result<Vec<T>, AwsError>
where
    F: Fn(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, AwsError>>,
{
    let mut items = Vec::new();
    let mut next = None;
    loop {
        let page = with_page_retries(|| fetch(next.clone())).await?;
        items.extend(page.items);
        match page.next {
            Some(token) => next = Some(token),
            None => return Ok(items),
        }
    }
}

async fn with_page_retries<T, F, Fut>(fetch: F) -> Result<T, AwsError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let mut waits = PAGE_WAITS.iter();
    loop {
        match fetch().await {
            Err(e) if e.class == ErrorClass::Recoverable => match waits.next() {
                Some(wait) => tokio::time::sleep(*wait).await,
                None => return Err(e),
            },
            result => return result,
        }
    }
}

/// Adds what was read to a resource's known activities (replacing those whose status moved on),
/// newest first, at most [`ACTIVITIES_KEPT`]. Whether anything changed.
fn merge_activities(list: &mut Vec<ScalingActivity>, read: Vec<ScalingActivity>) -> bool {
    let mut changed = false;
    for activity in read {
        match list
            .iter_mut()
            .find(|a| a.activity_id == activity.activity_id)
        {
            Some(known) if *known == activity => continue,
            Some(known) => *known = activity,
            None => list.push(activity),
        }
        changed = true;
    }
    if changed {
        list.sort_by_key(|a| std::cmp::Reverse(start_time(a)));
        list.truncate(ACTIVITIES_KEPT);
    }
    changed
}

fn start_time(activity: &ScalingActivity) -> Option<Timestamp> {
    activity.start_time.parse().ok()
}

fn is_finished(activity: &ScalingActivity) -> bool {
    matches!(
        activity.status_code.as_str(),
        "Successful" | "Failed" | "Unfulfilled" | "Overridden"
    )
}

#[async_trait]
impl AutoscalingBackend for FleetView {
    fn region(&self) -> &str {
        self.inner.region()
    }

    fn account(&self) -> Option<&str> {
        self.inner.account()
    }

    fn direct(&self) -> Option<&dyn AutoscalingBackend> {
        Some(self.inner.as_ref())
    }

    async fn describe_target(&self, resource_id: &str) -> Result<Option<ObservedTarget>, AwsError> {
        self.ensure_fresh().await?;
        {
            let picture = self.picture();
            if !picture.needs_direct_read(Part::Target, resource_id) {
                return Ok(picture.targets.get(resource_id).cloned());
            }
        }
        let started = Instant::now();
        let read = self.inner.describe_target(resource_id).await?;
        let mut picture = self.picture();
        picture.read_directly_at(Part::Target, resource_id, started);
        match &read {
            Some(t) => picture.targets.insert(resource_id.to_string(), t.clone()),
            None => picture.targets.remove(resource_id),
        };
        Ok(read)
    }

    async fn target_tags(&self, arn: &str) -> Result<Tags, AwsError> {
        if let Some((tags, _)) = self.picture().tags.get(arn) {
            return Ok(tags.clone());
        }
        let tags = self.inner.target_tags(arn).await?;
        self.picture()
            .tags
            .insert(arn.to_string(), (tags.clone(), Instant::now()));
        Ok(tags)
    }

    async fn register_target(
        &self,
        target: &ScalableTarget,
        tags: Option<&Tags>,
    ) -> Result<String, AwsError> {
        // A creation planned from the picture: someone may have registered the target since the
        // last refresh, and registering again would overwrite their capacities before anyone
        // could see whose it is. One direct read per creation rules that out.
        let absent_in_picture = {
            let picture = self.picture();
            picture.targets_at.is_some()
                && !picture.needs_direct_read(Part::Target, &target.resource_id)
                && !picture.targets.contains_key(&target.resource_id)
        };
        let mut confirmed_new = false;
        if absent_in_picture {
            let existing = self.inner.describe_target(&target.resource_id).await?;
            confirmed_new = existing.is_none();
            if existing.is_some() {
                self.wrote(&target.resource_id);
                return Err(AwsError::local(
                    ErrorClass::Recoverable,
                    "RegisterScalableTarget",
                    ErrorKind::ChangedSinceRefresh,
                    format!(
                        "scalable target {} was registered by someone else since the last refresh of AWS; reading it again before any change",
                        target.resource_id
                    ),
                ));
            }
        }
        let result = self.inner.register_target(target, tags).await;
        self.wrote(&target.resource_id);
        {
            let mut picture = self.picture();
            let max = if result.is_ok() {
                target.max_capacity
            } else {
                // A failed write may still have landed (a timeout, a 500 after AWS acted): for
                // the quota share it holds the higher of the two until a read says which.
                let known = match picture.written_max.get(&target.resource_id) {
                    Some(written) => *written,
                    None => picture
                        .targets
                        .get(&target.resource_id)
                        .map(|t| t.target.max_capacity),
                };
                known.map_or(target.max_capacity, |k| k.max(target.max_capacity))
            };
            picture
                .written_max
                .insert(target.resource_id.clone(), Some(max));
        }
        if let Ok(arn) = &result {
            let mut picture = self.picture();
            match tags {
                // A target that did not exist has exactly the tags it was created with.
                Some(tags) if confirmed_new => picture
                    .tags
                    .insert(arn.clone(), (tags.clone(), Instant::now())),
                _ => picture.tags.remove(arn),
            };
        }
        result
    }

    async fn deregister_target(&self, resource_id: &str) -> Result<(), AwsError> {
        let arn = self
            .picture()
            .targets
            .get(resource_id)
            .and_then(|t| t.arn.clone());
        let result = self.inner.deregister_target(resource_id).await;
        self.wrote(resource_id);
        if result.is_ok() {
            self.picture()
                .written_max
                .insert(resource_id.to_string(), None);
        }
        if let Some(arn) = arn {
            self.forget_tags(&arn);
        }
        result
    }

    async fn tag_target(&self, arn: &str, tags: &Tags) -> Result<(), AwsError> {
        let result = self.inner.tag_target(arn, tags).await;
        self.forget_tags(arn);
        result
    }

    async fn untag_target(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        let result = self.inner.untag_target(arn, keys).await;
        self.forget_tags(arn);
        result
    }

    async fn describe_policies(&self, resource_id: &str) -> Result<Vec<ObservedPolicy>, AwsError> {
        self.per_resource(
            Part::Policies,
            resource_id,
            |p| &mut p.policies,
            || self.inner.describe_policies(resource_id),
        )
        .await
    }

    async fn describe_scheduled_actions(
        &self,
        resource_id: &str,
    ) -> Result<Vec<ObservedScheduledAction>, AwsError> {
        self.per_resource(
            Part::Scheduled,
            resource_id,
            |p| &mut p.scheduled,
            || self.inner.describe_scheduled_actions(resource_id),
        )
        .await
    }

    async fn put_scheduled_action(&self, action: &ScheduledAction) -> Result<(), AwsError> {
        let result = self.inner.put_scheduled_action(action).await;
        self.wrote(&action.resource_id);
        result
    }

    async fn delete_scheduled_action(&self, resource_id: &str, name: &str) -> Result<(), AwsError> {
        let result = self.inner.delete_scheduled_action(resource_id, name).await;
        self.wrote(resource_id);
        result
    }

    async fn list_scheduled_actions(
        &self,
        next: Option<String>,
    ) -> Result<Page<ObservedScheduledAction>, AwsError> {
        self.inner.list_scheduled_actions(next).await
    }

    async fn put_policy(&self, policy: &ScalingPolicy) -> Result<String, AwsError> {
        let result = self.inner.put_policy(policy).await;
        self.wrote(&policy.resource_id);
        result
    }

    async fn delete_policy(&self, resource_id: &str, name: &str) -> Result<(), AwsError> {
        let result = self.inner.delete_policy(resource_id, name).await;
        self.wrote(resource_id);
        result
    }

    async fn describe_alarm(&self, name: &str) -> Result<Option<ObservedAlarm>, AwsError> {
        let in_picture = name.starts_with(ALARM_PREFIX);
        if in_picture {
            self.ensure_fresh().await?;
            let picture = self.picture();
            if !picture.needs_direct_read(Part::Alarm, name) {
                return Ok(picture.alarms.get(name).cloned());
            }
        }
        let started = Instant::now();
        let read = self.inner.describe_alarm(name).await?;
        if in_picture {
            let mut picture = self.picture();
            picture.read_directly_at(Part::Alarm, name, started);
            match &read {
                Some(a) => picture.alarms.insert(name.to_string(), a.clone()),
                None => picture.alarms.remove(name),
            };
        }
        Ok(read)
    }

    async fn alarm_tags(&self, arn: &str) -> Result<Tags, AwsError> {
        // Read only when a target is missing (adoption): rare, and not worth a cache.
        self.inner.alarm_tags(arn).await
    }

    async fn put_alarm(&self, alarm: &MetricAlarm, tags: &Tags) -> Result<(), AwsError> {
        let result = self.inner.put_alarm(alarm, tags).await;
        self.wrote(&alarm.name);
        result
    }

    async fn delete_alarm(&self, name: &str) -> Result<(), AwsError> {
        let result = self.inner.delete_alarm(name).await;
        self.wrote(name);
        result
    }

    async fn tag_alarm(&self, arn: &str, tags: &Tags) -> Result<(), AwsError> {
        self.inner.tag_alarm(arn, tags).await
    }

    async fn untag_alarm(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        self.inner.untag_alarm(arn, keys).await
    }

    async fn recent_activities(
        &self,
        resource_id: &str,
        max: i32,
    ) -> Result<Vec<ScalingActivity>, AwsError> {
        let keep = usize::try_from(max).unwrap_or(0).min(ACTIVITIES_KEPT);
        self.ensure_fresh().await?;
        {
            let mut picture = self.picture();
            picture
                .activities_asked
                .insert(resource_id.to_string(), Instant::now());
            let known = (picture.activities_complete
                || picture.activities_known.contains(resource_id))
                && !picture.activities_unknown.contains(resource_id);
            if known && !picture.needs_direct_read(Part::Activities, resource_id) {
                let mut list = picture
                    .activities
                    .get(resource_id)
                    .cloned()
                    .unwrap_or_default();
                list.truncate(keep);
                return Ok(list);
            }
        }
        let started = Instant::now();
        let read = self.inner.recent_activities(resource_id, max).await?;
        let mut picture = self.picture();
        picture.read_directly_at(Part::Activities, resource_id, started);
        let list = picture
            .activities
            .entry(resource_id.to_string())
            .or_default();
        merge_activities(list, read.clone());
        let newest = list.first().and_then(start_time);
        picture.activities_newest = picture.activities_newest.max(newest);
        picture.activities_known.insert(resource_id.to_string());
        picture.activities_unknown.remove(resource_id);
        Ok(read)
    }

    async fn list_targets(&self, next: Option<String>) -> Result<Page<ObservedTarget>, AwsError> {
        self.inner.list_targets(next).await
    }

    async fn list_policies(&self, next: Option<String>) -> Result<Page<ObservedPolicy>, AwsError> {
        self.inner.list_policies(next).await
    }

    async fn list_alarms(
        &self,
        prefix: &str,
        next: Option<String>,
    ) -> Result<Page<ObservedAlarm>, AwsError> {
        self.inner.list_alarms(prefix, next).await
    }

    async fn list_activities(
        &self,
        next: Option<String>,
    ) -> Result<Page<(String, ScalingActivity)>, AwsError> {
        self.inner.list_activities(next).await
    }

    async fn instance_quota(&self, instance_type: &str) -> QuotaReading {
        self.inner.instance_quota(instance_type).await
    }

    /// From the picture; an endpoint the picture lacks is read directly (it may have been
    /// created since the last refresh), so a missing endpoint costs one read per reconcile.
    async fn describe_endpoint(&self, name: &str) -> Result<Option<EndpointState>, AwsError> {
        self.ensure_fresh().await?;
        if let Some(endpoint) = self.picture().endpoints.get(name) {
            return Ok(Some(endpoint.clone()));
        }
        let read = self.inner.describe_endpoint(name).await?;
        if let Some(endpoint) = &read {
            let mut picture = self.picture();
            picture.endpoints.insert(name.to_string(), endpoint.clone());
            // What each type's endpoints hold now includes this one.
            picture.usage.clear();
        }
        Ok(read)
    }

    async fn describe_endpoint_config(
        &self,
        name: &str,
    ) -> Result<Option<EndpointConfigState>, AwsError> {
        if let Some(config) = self.picture().configs.get(name) {
            return Ok(Some(config.clone()));
        }
        let read = self.inner.describe_endpoint_config(name).await?;
        if let Some(config) = &read {
            self.picture()
                .configs
                .insert(name.to_string(), config.clone());
        }
        Ok(read)
    }

    /// Every endpoint of the picture, in one page.
    async fn list_endpoints(
        &self,
        _next: Option<String>,
    ) -> Result<Page<EndpointSummary>, AwsError> {
        self.ensure_fresh().await?;
        let picture = self.picture();
        let mut items: Vec<EndpointSummary> = picture
            .endpoints
            .values()
            .map(|e| e.summary.clone())
            .collect();
        items.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Page { items, next: None })
    }

    async fn max_capacities(&self, resource_ids: &[String]) -> Result<Vec<Option<i32>>, AwsError> {
        self.ensure_fresh().await?;
        let picture = self.picture();
        Ok(resource_ids
            .iter()
            .map(|id| match picture.written_max.get(id) {
                Some(written) => *written,
                None => picture.targets.get(id).map(|t| t.target.max_capacity),
            })
            .collect())
    }

    async fn waiting_without_capacity(&self) -> Result<Arc<HashSet<String>>, AwsError> {
        self.ensure_fresh().await?;
        let mut picture = self.picture();
        if let Some(waiting) = &picture.waiting {
            return Ok(waiting.clone());
        }
        let waiting = Arc::new(crate::endpoints::firing(picture.alarms.values()));
        picture.waiting = Some(waiting.clone());
        Ok(waiting)
    }

    async fn backlog_above_target(&self) -> Result<Arc<HashSet<String>>, AwsError> {
        self.inner.backlog_above_target().await
    }

    /// From the picture as it is: never a refresh, never a read.
    fn sighting(&self, instance_type: &str, resource_id: &str) -> Option<Sighting> {
        let mut picture = self.picture();
        picture.targets_at?;
        let in_use = picture
            .usage_of(instance_type)
            .iter()
            .map(|h| h.instances)
            .sum();
        Some(Sighting {
            in_use,
            backlog_above_target: picture
                .backlog_above_target
                .as_ref()
                .map(|firing| firing.contains(resource_id)),
        })
    }

    async fn instance_usage(&self, instance_type: &str) -> Result<Vec<Holding>, AwsError> {
        self.ensure_fresh().await?;
        Ok(self.picture().usage_of(instance_type).to_vec())
    }
}

/// The role a view's calls act as (None: the source's own credentials), and its region.
type ViewKey = (Option<AssumedRole>, String);

/// Fleet views over another source's backends: one per role and region, shared by every
/// resource whose calls act as that role there.
pub struct FleetSource {
    inner: Arc<dyn BackendSource>,
    config: FleetConfig,
    memory: Option<Arc<dyn EndpointMemory>>,
    views: Mutex<BTreeMap<ViewKey, Arc<FleetView>>>,
    changes: broadcast::Sender<FleetChange>,
}

impl FleetSource {
    pub fn new(inner: Arc<dyn BackendSource>, config: FleetConfig) -> Self {
        Self {
            inner,
            config,
            memory: None,
            views: Mutex::new(BTreeMap::new()),
            changes: broadcast::channel(CHANGES_BUFFERED).0,
        }
    }

    /// The stats of each account and region's views (one per role there): counters summed, and
    /// the freshest picture's age and refresh time (a view whose role's resources are all gone
    /// is no longer refreshed, and must not look stale; a hung role shows in its resources'
    /// status instead).
    pub fn stats(&self) -> BTreeMap<Place, FleetStats> {
        let mut by_place: BTreeMap<Place, FleetStats> = BTreeMap::new();
        for view in self.views.lock().expect("fleet views lock").values() {
            let stats = view.stats();
            let sum = by_place.entry(view.place()).or_default();
            sum.refreshes += stats.refreshes;
            sum.failed_refreshes += stats.failed_refreshes;
            sum.backlog_reads_failed += stats.backlog_reads_failed;
            sum.held = Held {
                targets: sum.held.targets + stats.held.targets,
                activity_histories: sum.held.activity_histories + stats.held.activity_histories,
                tags: sum.held.tags + stats.held.tags,
                endpoints: sum.held.endpoints + stats.held.endpoints,
                configs: sum.held.configs + stats.held.configs,
            };
            if stats.age.is_some() && sum.age.is_none_or(|age| stats.age < Some(age)) {
                sum.age = stats.age;
                sum.last_refresh_took = stats.last_refresh_took;
            }
        }
        by_place
    }

    /// [`FleetView::forget_policies`] for every view: a new term of leadership starts.
    pub fn forget_policies(&self) {
        for view in self.views.lock().expect("fleet views lock").values() {
            view.forget_policies();
        }
    }

    /// Changes found by any view's refresh.
    pub fn changes(&self) -> broadcast::Receiver<FleetChange> {
        self.changes.subscribe()
    }

    /// Views that start from what `memory` kept and keep what they read (see [`EndpointMemory`]).
    pub fn remembering(mut self, memory: Arc<dyn EndpointMemory>) -> Self {
        self.memory = Some(memory);
        self
    }
}

#[async_trait]
impl BackendSource for FleetSource {
    async fn backend(
        &self,
        placement: &Placement,
    ) -> Result<Arc<dyn AutoscalingBackend>, AwsError> {
        let backend = self.inner.backend(placement).await?;
        let key = (self.inner.role_of(placement), backend.region().to_string());
        let mut views = self.views.lock().expect("fleet views lock");
        let view = views
            .entry(key)
            .or_insert_with(|| {
                let view = FleetView::reporting_to(backend, self.config, self.changes.clone());
                Arc::new(match &self.memory {
                    Some(memory) => view.remembering(memory.clone()),
                    None => view,
                })
            })
            .clone();
        Ok(view)
    }

    fn role_of(&self, placement: &Placement) -> Option<AssumedRole> {
        self.inner.role_of(placement)
    }

    async fn default_region(&self) -> Option<String> {
        self.inner.default_region().await
    }
}
