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

mod backend;
mod picture;
mod source;
mod sweep;

pub use source::FleetSource;

use picture::{Part, Picture};
use sweep::Sweep;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use asyncscale_core::{EndpointConfigState, EndpointState};

use crate::error::{AwsError, ErrorClass, ErrorKind};
use crate::port::AutoscalingBackend;
use crate::port::Place;

/// Activities kept per resource (the engine reads the newest five).
pub(super) const ACTIVITIES_KEPT: usize = 10;

/// Changes a slow listener may fall behind by before it misses some (and waits for resyncs).
pub(super) const CHANGES_BUFFERED: usize = 4096;

/// How much longer than a refresh interval (one more, within these bounds) a refresh may run
/// before reads stop waiting for it or serving the picture it would replace. The least leaves
/// room for a failed page's retries (0.5 + 1 + 2 s).
const REFRESH_GRACE: Duration = Duration::from_secs(30);

const REFRESH_GRACE_MIN: Duration = Duration::from_secs(5);

/// After a failed refresh, reads fail at once for this long instead of every reconcile
/// retrying the whole refresh.
const FAILED_REFRESH_HOLD: Duration = Duration::from_secs(5);

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

    /// Takes in what a refresh read, and wakes the resources whose part of AWS moved.
    fn install(&self, sweep: Sweep) {
        let changed = self.picture().merge(sweep, &self.config);
        for resource_id in changed {
            // Nobody listening (the CLI) is fine.
            let _ = self.changes.send(FleetChange {
                place: self.inner.place(),
                resource_id,
            });
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
