//! The picture of AWS a fleet view serves from, and how what a refresh read is merged into it
//! (a pure function of the picture and the sweep: [`Picture::merge`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use asyncscale_core::{
    EndpointConfigState, EndpointState, ObservedAlarm, ObservedPolicy, ObservedScheduledAction,
    ObservedTarget, ResourceNames, ScalingActivity, Tags,
};

use crate::error::AwsError;
use crate::port::Holding;

use super::sweep::Sweep;
use super::{ACTIVITIES_KEPT, FleetConfig};

/// A resource's activities asked for within this many refresh intervals are kept even without
/// a target: its reconciles ask at every resync, and reading them again at each would cost one
/// call a resync (an account with more history than a sweep reads is never complete).
const ASKED_KEPT_REFRESHES: u32 = 3;

#[derive(Default)]
pub(super) struct Picture {
    /// When the refresh the picture comes from started; nothing later can be in it.
    pub(super) targets_at: Option<Instant>,
    pub(super) policies_at: Option<Instant>,
    pub(super) refreshes: u64,
    pub(super) targets: HashMap<String, ObservedTarget>,
    pub(super) policies: HashMap<String, Vec<ObservedPolicy>>,
    /// Scheduled actions by resource id, swept with the policies (they change only through
    /// writes, which mark their resource, never by themselves).
    pub(super) scheduled: HashMap<String, Vec<ObservedScheduledAction>>,
    pub(super) alarms: HashMap<String, ObservedAlarm>,
    /// Newest first; of resources with a target, or asked for lately (a resource whose target
    /// is gone or not registered yet still shows its last activity). AWS keeps a deregistered
    /// target's history, but a fleet that churns would keep it here for ever.
    pub(super) activities: HashMap<String, Vec<ScalingActivity>>,
    /// When each resource's activities were last asked for (see [`ASKED_KEPT_REFRESHES`]).
    pub(super) activities_asked: HashMap<String, Instant>,
    /// The newest activity read so far, of any resource: the next sweep reads back to it. Kept
    /// apart from `activities` so that forgetting a deregistered target's history does not send
    /// the sweep back over it.
    pub(super) activities_newest: Option<Timestamp>,
    /// A sweep reached the end of the history: a resource with no entry has no activity.
    pub(super) activities_complete: bool,
    /// Resources whose newest activities are known without the sweep being complete.
    pub(super) activities_known: HashSet<String>,
    /// Targets that appeared with no history in the picture: registered again by someone else
    /// after their history was forgotten, their older activities are read directly once.
    pub(super) activities_unknown: HashSet<String>,
    /// Writes not yet covered by a refresh, by resource id (target, policies) and by alarm name
    /// (the two never look alike: `endpoint/…` and `asyncscale-…`).
    pub(super) written: HashMap<String, Instant>,
    /// When the latest direct read of a part of a resource started.
    pub(super) read_directly: HashMap<(Part, String), Instant>,
    /// Target tags by ARN, with when they were kept (a target registered during a refresh is
    /// not in it, and its tags stay until the next one).
    pub(super) tags: HashMap<String, (Tags, Instant)>,
    /// Every SageMaker endpoint of the account and region, described, by name.
    pub(super) endpoints: HashMap<String, EndpointState>,
    /// Endpoint configurations by name (they never change once created), of the endpoints
    /// listed now or at the refresh before.
    pub(super) configs: HashMap<String, EndpointConfigState>,
    /// Configurations that came from an earlier run's memory, not read by this view: read again
    /// with any endpoint that moved (a name deleted and created again may mean another type).
    pub(super) recalled_configs: HashSet<String>,
    /// MaxCapacity of each target this view registered since the refresh that started before
    /// the write (None: deregistered).
    pub(super) written_max: HashMap<String, Option<i32>>,
    /// Endpoints the latest refresh listed but could not describe, with why: their last known
    /// description (if any) stays in `endpoints`, and no shared cap is raised on their count.
    pub(super) unreadable: Vec<(String, String)>,
    /// Each instance type's holdings, computed once per refresh.
    pub(super) usage: HashMap<String, Vec<Holding>>,
    /// The resources whose scale-from-zero alarm fires, computed once per refresh.
    pub(super) waiting: Option<Arc<HashSet<String>>>,
    /// The resources whose target-tracking AlarmHigh fires, as the latest refresh read them
    /// (None: that read failed, or none was made).
    pub(super) backlog_above_target: Option<Arc<HashSet<String>>>,
    pub(super) failed: Option<(Instant, AwsError)>,
    /// When the refresh under way took the single flight (None: no refresh is under way).
    pub(super) refresh_started: Option<Instant>,
    pub(super) failed_refreshes: u64,
    pub(super) backlog_reads_failed: u64,
    pub(super) last_refresh_took: Option<Duration>,
}

impl Picture {
    /// Merges what a refresh read into the picture; returns the resources whose part of AWS
    /// moved other than by this view's own writes (none on the first refresh: nothing was
    /// known to move from).
    pub(super) fn merge(&mut self, sweep: Sweep, config: &FleetConfig) -> Vec<String> {
        let mut changed: Vec<String> = Vec::new();
        let picture = self;
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
                .filter(|id| drift(picture, Part::Target, id)),
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
                    .filter(|id| drift(picture, Part::Policies, id)),
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
                    .filter(|id| drift(picture, Part::Scheduled, id)),
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
                .filter(|name| drift(picture, Part::Alarm, name))
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
        if config.read_backlog_alarms && sweep.backlog_above_target.is_none() {
            picture.backlog_reads_failed += 1;
        }
        picture.backlog_above_target = sweep.backlog_above_target;
        // Writes this refresh saw are in its targets; later ones stay.
        picture.written_max.retain(|id, _| pinned.contains(id));
        // What belongs to targets gone from AWS is forgotten with them, unless this view wrote
        // them since the refresh started (its own reads of them stand) or a reconcile still asks.
        let asked_since = started
            .checked_sub(config.refresh_every * ASKED_KEPT_REFRESHES)
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
        if first {
            return Vec::new();
        }
        changed.sort();
        changed.dedup();
        changed
    }

    pub(super) fn fresh(&self, every: Duration) -> bool {
        self.targets_at.is_some_and(|at| at.elapsed() < every)
    }

    /// Whether `key` (a resource id, or an alarm name for [`Part::Alarm`]) was written after
    /// the picture's data of `part` was read, by the last refresh and by any direct read since.
    pub(super) fn needs_direct_read(&self, part: Part, key: &str) -> bool {
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
    pub(super) fn usage_of(&mut self, instance_type: &str) -> &[Holding] {
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

    pub(super) fn read_directly_at(&mut self, part: Part, key: &str, started: Instant) {
        self.read_directly.insert((part, key.to_string()), started);
    }
}

/// The parts of the picture a write makes stale for one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Part {
    Target,
    Policies,
    Scheduled,
    Activities,
    Alarm,
}

/// The refreshed entries, except that `pinned` keys (written since the refresh started) keep
/// their current one; and the keys whose entry changed.
pub(super) fn merge_refresh<V: Clone + PartialEq>(
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

/// Adds what was read to a resource's known activities (replacing those whose status moved on),
/// newest first, at most [`ACTIVITIES_KEPT`]. Whether anything changed.
pub(super) fn merge_activities(
    list: &mut Vec<ScalingActivity>,
    read: Vec<ScalingActivity>,
) -> bool {
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

pub(super) fn start_time(activity: &ScalingActivity) -> Option<Timestamp> {
    activity.start_time.parse().ok()
}

pub(super) fn is_finished(activity: &ScalingActivity) -> bool {
    matches!(
        activity.status_code.as_str(),
        "Successful" | "Failed" | "Unfulfilled" | "Overridden"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use asyncscale_core::{ScalableTarget, SuspendedState};

    fn target(id: &str, max: i32) -> ObservedTarget {
        ObservedTarget {
            target: ScalableTarget {
                resource_id: id.into(),
                min_capacity: 0,
                max_capacity: max,
                suspended: SuspendedState::default(),
            },
            arn: Some(format!("arn:{id}")),
            tags: Tags::new(),
        }
    }

    fn activity(id: &str, at: &str) -> ScalingActivity {
        ScalingActivity {
            activity_id: id.into(),
            status_code: "Successful".into(),
            description: String::new(),
            cause: String::new(),
            status_message: None,
            start_time: at.into(),
            end_time: Some(at.into()),
        }
    }

    fn sweep(started: Instant, targets: Vec<ObservedTarget>) -> Sweep {
        Sweep {
            started,
            targets,
            // Policies and scheduled actions swept too (none), as every few refreshes.
            policies: Some(Vec::new()),
            scheduled: Some(Vec::new()),
            alarms: Vec::new(),
            activities: Vec::new(),
            activities_complete: true,
            activities_cut: false,
            endpoints: Vec::new(),
            configs: Vec::new(),
            unreadable: Vec::new(),
            backlog_above_target: None,
        }
    }

    const A: &str = "endpoint/a/variant/AllTraffic";
    const B: &str = "endpoint/b/variant/AllTraffic";
    const C: &str = "endpoint/c/variant/AllTraffic";

    /// The first refresh wakes nobody (nothing was known to move from); the next one wakes the
    /// resources whose target moved, appeared or went, and only those.
    #[test]
    fn a_refresh_wakes_the_resources_whose_targets_moved() {
        let config = FleetConfig::default();
        let mut picture = Picture::default();
        let t0 = Instant::now();
        let first = picture.merge(sweep(t0, vec![target(A, 4), target(B, 4)]), &config);
        assert!(first.is_empty(), "{first:?}");
        assert_eq!(picture.targets.len(), 2);
        assert_eq!(picture.targets_at, Some(t0));
        let changed = picture.merge(
            sweep(Instant::now(), vec![target(A, 4), target(C, 2)]),
            &config,
        );
        assert_eq!(changed, [B, C]);
        assert_eq!(picture.targets[C].target.max_capacity, 2);
        assert!(!picture.targets.contains_key(B));
        assert_eq!(picture.refreshes, 2);
    }

    /// Read-your-writes: a target this view wrote after the refresh started keeps what the
    /// view's own reads found (the sweep may predate the write); one written before the refresh
    /// started takes the sweep's value, without waking its resource (the writer reads it back).
    #[test]
    fn a_write_during_the_refresh_keeps_its_own_reading_and_a_write_before_wakes_nobody() {
        let config = FleetConfig::default();
        let mut picture = Picture::default();
        let before = Instant::now();
        picture.merge(sweep(before, vec![target(A, 4), target(B, 4)]), &config);
        let written_before = Instant::now();
        picture.written.insert(B.into(), written_before);
        let started = Instant::now();
        // A is written (as 6) after the refresh started, which still read the old 4.
        picture.targets.insert(A.into(), target(A, 6));
        picture.written.insert(A.into(), Instant::now());
        let changed = picture.merge(sweep(started, vec![target(A, 4), target(B, 8)]), &config);
        assert!(changed.is_empty(), "{changed:?}");
        assert_eq!(
            picture.targets[A].target.max_capacity, 6,
            "the write stands"
        );
        assert_eq!(
            picture.targets[B].target.max_capacity, 8,
            "the sweep covers it"
        );
        // B's write is covered by a refresh that started after it; A's is not yet.
        assert!(!picture.written.contains_key(B));
        assert!(picture.needs_direct_read(Part::Target, A));
    }

    /// A new activity wakes its resource; the history of a target gone from AWS is forgotten,
    /// unless a reconcile asked for it lately.
    #[test]
    fn activities_wake_their_resource_and_go_with_their_target_unless_asked_for() {
        let config = FleetConfig::default();
        let mut picture = Picture::default();
        let mut first = sweep(
            Instant::now(),
            vec![target(A, 4), target(B, 4), target(C, 4)],
        );
        first.activities = vec![
            (A.into(), activity("a1", "2026-12-01T00:00:00Z")),
            (B.into(), activity("b1", "2026-12-01T00:01:00Z")),
            (C.into(), activity("c1", "2026-12-01T00:02:00Z")),
        ];
        picture.merge(first, &config);
        let mut next = sweep(Instant::now(), vec![target(A, 4)]);
        next.activities = vec![(A.into(), activity("a2", "2026-12-01T00:03:00Z"))];
        picture.activities_asked.insert(C.into(), Instant::now());
        let changed = picture.merge(next, &config);
        assert_eq!(changed, [A, B, C]);
        let ids = |id: &str| {
            picture.activities.get(id).map(|list| {
                list.iter()
                    .map(|a| a.activity_id.clone())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(ids(A), Some(vec!["a2".to_string(), "a1".to_string()]));
        assert_eq!(ids(B), None, "gone with its target");
        assert_eq!(ids(C), Some(vec!["c1".to_string()]), "asked for lately");
        assert_eq!(
            picture.activities_newest,
            "2026-12-01T00:03:00Z".parse().ok()
        );
    }
}
