//! When each resource is next due, and its backoff: the per-object memory that lets the echo of
//! our own status write, or a relist, cost no AWS call, and spreads resyncs over the period.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use asyncscale_api::AsyncEndpointScaling;
use kube::{Resource, ResourceExt};

use super::{Context, key};

/// The last status write (or full reconcile) of one object: the watch event it causes carries
/// nothing new and must not cost AWS reads (the echo of our own write).
#[derive(Debug, Clone)]
pub(super) struct LastVisit {
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
pub(super) const REMEMBERED_WRITES: usize = 4;

impl Context {
    /// Whether the last good observation of `obj` is older than `stale_after`.
    pub(super) fn observation_stale(&self, obj: &AsyncEndpointScaling) -> bool {
        let last_good = obj.uid().and_then(|uid| {
            let visits = self.last_visits.lock().expect("visits lock");
            visits.get(&uid).and_then(|v| v.last_good)
        });
        last_good.unwrap_or(self.started).elapsed() > self.stale_after
    }

    /// Records a successful read of AWS for `obj`.
    pub(super) fn observed_ok(&self, obj: &AsyncEndpointScaling) {
        self.remember(obj, None, None);
        if let Some(uid) = obj.uid()
            && let Some(visit) = self.last_visits.lock().expect("visits lock").get_mut(&uid)
        {
            visit.last_good = Some(Instant::now());
        }
    }

    pub(super) fn succeeded(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }

    /// Counts a failure and says when to retry.
    pub(super) fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let n = failures.entry(key.to_string()).or_default();
        *n += 1;
        backoff_delay(*n, jitter_fraction())
    }

    /// Remembers that `resource_version` is what this controller last saw or wrote of the object,
    /// and when it next needs AWS.
    pub(super) fn visited(
        &self,
        obj: &AsyncEndpointScaling,
        resource_version: Option<String>,
        next_in: Duration,
    ) {
        self.remember(obj, resource_version, Some(next_in));
    }

    /// Remembers a status write made in the middle of a reconcile (its echo is not news either).
    pub(super) fn wrote(&self, obj: &AsyncEndpointScaling, resource_version: Option<String>) {
        self.remember(obj, resource_version, None);
    }

    pub(super) fn remember(
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
    pub(super) fn not_due_for(&self, obj: &AsyncEndpointScaling) -> Option<Duration> {
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

    pub(super) fn forget(&self, obj: &AsyncEndpointScaling) {
        if let Some(uid) = obj.uid() {
            self.last_visits.lock().expect("visits lock").remove(&uid);
        }
        self.failures
            .lock()
            .expect("backoff lock")
            .remove(&key(obj));
    }
}

/// What a new term keeps of the visits (see [`Context::begin_term`]): when AWS was last read,
/// for the objects still watched (`watched`: their UIDs, None when a cache has not synced).
pub(super) fn visits_for_new_term(
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

pub(super) fn wall_clock() -> Duration {
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
}
