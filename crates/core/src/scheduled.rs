//! `spec.schedules` → scheduled actions, and the scalable target's MinCapacity/MaxCapacity while
//! they run.
//!
//! When a scheduled action runs, Application Auto Scaling rewrites the scalable target's
//! MinCapacity and/or MaxCapacity (Application Auto Scaling User Guide, "Scheduled scaling"). A
//! resync that put `spec.minCapacity` back would undo a pre-warm within a minute, so the target's
//! desired capacities follow the schedules:
//!
//! - A capacity no schedule sets is the spec's (after the quota), as without schedules.
//! - A capacity a schedule sets is left as AWS holds it when it equals the spec's or one of
//!   those schedules' values: a run just happened, or is about to (AWS runs an action within a
//!   minute or so of its time, and its clock is not ours).
//! - Any other value (set by hand, or a schedule's old value after an edit) is repaired to the
//!   value of the schedule that ran last on the clock (in its time zone, within its start and
//!   end times, and only since its action was created), or to the spec's if none has run.
//!
//! A scheduled MaxCapacity is held within the instance quota like maxCapacity, both in the action
//! and on the target; a shared quota bounds the target as always.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use asyncscale_api::schedule::Schedule;
use asyncscale_api::{AsyncEndpointScalingSpec, QuotaPolicy, ScheduleSpec};

use crate::desired::{Desired, DesiredSchedule, quota_instances};
use crate::model::{Observed, QuotaLookup, ScheduledAction};

/// Sets `desired.schedules` from the spec, and the target's MinCapacity/MaxCapacity from the
/// schedules (see the module documentation). `now` is the controller's clock.
pub fn follow_schedules(
    desired: &mut Desired,
    spec: &AsyncEndpointScalingSpec,
    quota: &QuotaLookup,
    observed: &Observed,
    now: Timestamp,
) {
    let bounded = spec.quota.policy != QuotaPolicy::Ignore;
    let allowed = quota
        .value()
        .filter(|_| bounded)
        .map(|q| quota_instances(q).clamp(0, i64::from(i32::MAX)) as i32);
    let quota_unknown = bounded && allowed.is_none();
    desired.schedules = spec
        .schedules
        .iter()
        .map(|s| desired_schedule(desired, s, allowed, quota_unknown))
        .collect();
    if desired.schedules.is_empty() {
        return;
    }
    let in_aws = observed.target.as_ref().map(|t| &t.target);
    // While spec.suspend suspends scheduled scaling, no action runs.
    let suspended = spec.suspend;
    let runs: Vec<Option<Timestamp>> = desired
        .schedules
        .iter()
        .map(|s| {
            let created = observed.scheduled_action_created(&s.action.name);
            created
                .filter(|_| !suspended)
                .and_then(|c| last_run(&s.action, c, now))
        })
        .collect();
    let follow = |spec_value: i32,
                  in_aws: Option<i32>,
                  value_of: &dyn Fn(&ScheduledAction) -> Option<i32>| {
        let setters: Vec<(i32, Option<Timestamp>)> = desired
            .schedules
            .iter()
            .zip(&runs)
            .filter_map(|(s, run)| value_of(&s.action).map(|v| (v, *run)))
            .collect();
        if setters.is_empty() {
            return spec_value;
        }
        if let Some(v) = in_aws
            && (v == spec_value || setters.iter().any(|(s, _)| *s == v))
        {
            return v;
        }
        setters
            .iter()
            .filter_map(|(v, run)| run.map(|r| (r, *v)))
            .max_by_key(|(run, _)| *run)
            .map_or(spec_value, |(_, v)| v)
    };
    let spec_max = desired.target.max_capacity;
    let followed = follow(spec_max, in_aws.map(|t| t.max_capacity), &|a| {
        a.max_capacity
    });
    // Never above the quota, nor (under Share) this endpoint's share of it; with the quota
    // unknown, never above what AWS holds (asyncscale raises MaxCapacity only on a known quota).
    let bound = match (&desired.share, allowed) {
        (_, None) if quota_unknown => {
            Some(in_aws.map_or(spec_max, |t| t.max_capacity.max(spec_max)))
        }
        (Some(share), allowed) => Some(allowed.map_or(share.cap, |a| a.min(share.cap))),
        (None, allowed) => allowed,
    };
    let max = bound.map_or(followed, |b| followed.min(b.max(0)));
    let spec_min = desired.target.min_capacity;
    let min = follow(spec_min, in_aws.map(|t| t.min_capacity), &|a| {
        a.min_capacity
    })
    .min(max);
    desired.target.max_capacity = max;
    desired.target.min_capacity = min;
    desired.effective_max = max;
}

fn desired_schedule(
    desired: &Desired,
    s: &ScheduleSpec,
    allowed: Option<i32>,
    quota_unknown: bool,
) -> DesiredSchedule {
    let name = desired.names.scheduled_action(&s.name);
    let mut max = s.max_capacity;
    let mut min = s.min_capacity;
    // The quota, and under Share this endpoint's share of it: an action that sets more would
    // fail in AWS when it runs (a minimum above the target's maximum), or let a scale-out fail on
    // the quota. The share moves with the fleet, and the action is rewritten with it.
    // With the quota unknown, no more than the target's MaxCapacity as desired now (what AWS
    // holds, or maxCapacity for a first registration): asyncscale never raises it on a guess,
    // nor lets an action do so.
    let cap = match (&desired.share, allowed) {
        (_, None) if quota_unknown => Some(desired.target.max_capacity),
        (Some(share), Some(allowed)) => Some(allowed.min(share.cap)),
        (Some(share), None) => Some(share.cap),
        (None, allowed) => allowed.map(|a| a.max(1)),
    };
    let (mut lowered_min, mut lowered_max) = (false, false);
    if let Some(cap) = cap {
        if max.is_some_and(|m| m > cap) {
            max = Some(cap);
            lowered_max = true;
        }
        if min.is_some_and(|m| m > cap) {
            min = Some(cap);
            lowered_min = true;
        }
    }
    if let (Some(lo), Some(hi)) = (min, max) {
        min = Some(lo.min(hi));
    }
    let (start_time, end_time) = s.window();
    DesiredSchedule {
        name: s.name.clone(),
        action: ScheduledAction {
            name,
            resource_id: desired.names.resource_id.clone(),
            schedule: s.schedule.clone(),
            // Always sent: an update that leaves the time zone out keeps the old one.
            timezone: Some(s.time_zone.clone().unwrap_or_else(|| "UTC".into())),
            start_time,
            end_time,
            min_capacity: min,
            max_capacity: max,
        },
        lowered_min,
        lowered_max,
    }
}

fn zone(action: &ScheduledAction) -> Option<TimeZone> {
    match action.timezone.as_deref() {
        None | Some("UTC") => Some(TimeZone::UTC),
        Some(name) => asyncscale_api::validate::time_zone(name).ok(),
    }
}

/// The instant of a civil time in `zone`. [GUESS] AWS does not document daylight saving
/// changes: a civil time the clocks skip never comes (None), and of one they repeat the first is
/// taken; the simulator runs a repeated time twice, which the tolerance for schedule values covers.
fn civil_to_instant(zone: &TimeZone, civil: DateTime) -> Option<Timestamp> {
    let ambiguous = zone.to_ambiguous_zoned(civil);
    if matches!(ambiguous.offset(), jiff::tz::AmbiguousOffset::Gap { .. }) {
        return None;
    }
    ambiguous.compatible().ok().map(|z| z.timestamp())
}

/// Every run of `action` in `[from, to]`, oldest first, at most `limit` of them.
fn runs_between(
    action: &ScheduledAction,
    created: Timestamp,
    from: Timestamp,
    to: Timestamp,
    limit: usize,
) -> Vec<Timestamp> {
    let from = from.max(created).max(action.start_time.unwrap_or(from));
    let to = action.end_time.map_or(to, |end| end.min(to));
    let (Ok(schedule), Some(zone)) = (Schedule::parse(&action.schedule), zone(action)) else {
        return Vec::new();
    };
    if from > to {
        return Vec::new();
    }
    match schedule {
        Schedule::At(civil) => civil_to_instant(&zone, civil)
            .filter(|t| (from..=to).contains(t))
            .into_iter()
            .collect(),
        // From its start time, or from its creation: every `minutes` after that. [GUESS] AWS's
        // documentation does not say whether the first run is at the start or one period later;
        // one period later is assumed.
        Schedule::Rate { minutes } => {
            let anchor = action.start_time.unwrap_or(created).as_second();
            let period = i64::from(minutes) * 60;
            let first_k = ((from.as_second() - anchor) as f64 / period as f64).ceil() as i64;
            (first_k.max(1)..)
                .map(|k| anchor + k * period)
                .take_while(|s| *s <= to.as_second())
                .take(limit)
                .filter_map(|s| Timestamp::from_second(s).ok())
                .collect()
        }
        Schedule::Cron(cron) => {
            let mut civil = zone.to_datetime(from) - jiff::Span::new().seconds(1);
            let mut runs = Vec::new();
            while runs.len() < limit {
                let Some(next) = cron.next_after(civil) else {
                    break;
                };
                civil = next;
                let Some(at) = civil_to_instant(&zone, next) else {
                    continue;
                };
                if at > to {
                    break;
                }
                if at >= from {
                    runs.push(at);
                }
            }
            runs
        }
    }
}

/// The latest run of `action` at or before `now` since it was `created`.
pub fn last_run(action: &ScheduledAction, created: Timestamp, now: Timestamp) -> Option<Timestamp> {
    // Look back a day, then further, so that a schedule that runs every minute costs a day's
    // runs and one that runs once a year a few dozen steps.
    let mut back = jiff::SignedDuration::from_hours(24);
    loop {
        let from = now.checked_sub(back).unwrap_or(Timestamp::MIN).max(created);
        if let Some(last) = runs_between(action, created, from, now, usize::MAX).pop() {
            return Some(last);
        }
        if from <= created {
            return None;
        }
        back = back.checked_mul(4).unwrap_or(jiff::SignedDuration::MAX);
    }
}

/// The next run of `action` strictly after `now` (None: it will not run again). `created` is
/// when its action was created (None: not yet; `now` stands in).
pub fn next_run(
    action: &ScheduledAction,
    created: Option<Timestamp>,
    now: Timestamp,
) -> Option<Timestamp> {
    let after = now.checked_add(jiff::SignedDuration::from_secs(1)).ok()?;
    let end = action.end_time.unwrap_or(Timestamp::MAX);
    runs_between(action, created.unwrap_or(now), after, end, 1)
        .into_iter()
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use asyncscale_api::AsyncEndpointScalingSpec;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn action(schedule: &str, zone: Option<&str>) -> ScheduledAction {
        ScheduledAction {
            name: "asyncscale-x".into(),
            resource_id: "endpoint/e/variant/v".into(),
            schedule: schedule.into(),
            timezone: zone.map(Into::into),
            start_time: None,
            end_time: None,
            min_capacity: Some(1),
            max_capacity: None,
        }
    }

    #[test]
    fn cron_runs_follow_the_time_zone_and_daylight_saving() {
        let weekdays = action("cron(50 7 ? * MON-FRI *)", Some("Europe/Berlin"));
        let created = ts("2026-01-01T00:00:00Z");
        // Winter: 07:50 in Berlin is 06:50 UTC. Saturday 2026-01-10 → last run Friday.
        assert_eq!(
            last_run(&weekdays, created, ts("2026-01-10T12:00:00Z")),
            Some(ts("2026-01-09T06:50:00Z"))
        );
        // Summer: 05:50 UTC.
        assert_eq!(
            next_run(&weekdays, Some(created), ts("2026-07-06T00:00:00Z")),
            Some(ts("2026-07-06T05:50:00Z"))
        );
        // Nothing before the action existed.
        assert_eq!(
            last_run(
                &weekdays,
                ts("2026-01-10T00:00:00Z"),
                ts("2026-01-10T12:00:00Z")
            ),
            None
        );
    }

    #[test]
    fn start_and_end_times_bound_the_runs() {
        let mut a = action("cron(0 8 * * ? *)", None);
        a.start_time = Some(ts("2026-03-05T00:00:00Z"));
        a.end_time = Some(ts("2026-03-07T00:00:00Z"));
        let created = ts("2026-01-01T00:00:00Z");
        assert_eq!(last_run(&a, created, ts("2026-03-04T12:00:00Z")), None);
        assert_eq!(
            last_run(&a, created, ts("2026-04-01T00:00:00Z")),
            Some(ts("2026-03-06T08:00:00Z"))
        );
        assert_eq!(
            next_run(&a, Some(created), ts("2026-03-06T09:00:00Z")),
            None
        );
    }

    #[test]
    fn once_and_rate_runs() {
        let once = action("at(2026-12-24T18:00:00)", Some("America/New_York"));
        let created = ts("2026-12-01T00:00:00Z");
        assert_eq!(
            next_run(&once, Some(created), ts("2026-12-01T00:00:00Z")),
            Some(ts("2026-12-24T23:00:00Z"))
        );
        assert_eq!(
            last_run(&once, created, ts("2027-06-01T00:00:00Z")),
            Some(ts("2026-12-24T23:00:00Z"))
        );
        let hourly = action("rate(1 hour)", None);
        assert_eq!(
            last_run(
                &hourly,
                ts("2026-12-01T00:10:00Z"),
                ts("2026-12-01T03:00:00Z")
            ),
            Some(ts("2026-12-01T02:10:00Z"))
        );
        let yearly = action("cron(0 0 1 1 ? *)", None);
        assert_eq!(
            last_run(
                &yearly,
                ts("2020-06-01T00:00:00Z"),
                ts("2026-06-01T00:00:00Z")
            ),
            Some(ts("2026-01-01T00:00:00Z"))
        );
    }

    fn with_schedules(schedules: Vec<ScheduleSpec>) -> AsyncEndpointScalingSpec {
        let mut spec = AsyncEndpointScalingSpec::sdxl();
        spec.max_capacity = 4;
        spec.schedules = schedules;
        spec
    }

    fn schedule(name: &str, expr: &str, min: Option<i32>, max: Option<i32>) -> ScheduleSpec {
        ScheduleSpec {
            min_capacity: min,
            max_capacity: max,
            ..ScheduleSpec::new(name, expr)
        }
    }

    fn quota(value: f64) -> QuotaLookup {
        QuotaLookup::Known(crate::model::Quota {
            name: "ml.g4dn.xlarge for endpoint usage".into(),
            code: "L-1".into(),
            value,
            source: crate::model::QuotaSource::Applied,
        })
    }

    fn observed(min: i32, max: i32, created: &[(&str, &str)]) -> Observed {
        let mut o = Observed::empty();
        o.target = Some(crate::model::ObservedTarget {
            target: crate::model::ScalableTarget {
                resource_id: "endpoint/sdxl-async/variant/AllTraffic".into(),
                min_capacity: min,
                max_capacity: max,
                suspended: Default::default(),
            },
            arn: None,
            tags: Default::default(),
        });
        o.scheduled_actions = created
            .iter()
            .map(|(name, at)| crate::model::ObservedScheduledAction {
                action: ScheduledAction {
                    name: format!("asyncscale-{name}"),
                    ..action("cron(0 8 * * ? *)", None)
                },
                arn: None,
                created: Some(ts(at)),
            })
            .collect();
        o
    }

    fn follow(
        spec: &AsyncEndpointScalingSpec,
        q: &QuotaLookup,
        o: &Observed,
        now: &str,
    ) -> Desired {
        let owner = crate::names::Owner {
            namespace: "ml".into(),
            name: "sdxl".into(),
            uid: None,
        };
        let mut d =
            crate::desire(spec, &owner, q, o.target.as_ref().map(|t| &t.target), None).unwrap();
        follow_schedules(&mut d, spec, q, o, ts(now));
        d
    }

    #[test]
    fn a_run_of_a_schedule_is_never_undone() {
        let spec = with_schedules(vec![
            schedule("up", "cron(50 7 * * ? *)", Some(1), None),
            schedule("down", "cron(0 19 * * ? *)", Some(0), None),
        ]);
        let created = [
            ("up", "2026-01-01T00:00:00Z"),
            ("down", "2026-01-01T00:00:00Z"),
        ];
        // AWS ran "up" at 07:50: MinCapacity 1 stays.
        let d = follow(
            &spec,
            &quota(10.0),
            &observed(1, 4, &created),
            "2026-02-01T08:00:00Z",
        );
        assert_eq!((d.target.min_capacity, d.target.max_capacity), (1, 4));
        // Before AWS ran it, MinCapacity 0 stays too (our clock is not AWS's).
        let d = follow(
            &spec,
            &quota(10.0),
            &observed(0, 4, &created),
            "2026-02-01T07:50:10Z",
        );
        assert_eq!(d.target.min_capacity, 0);
        // Set by hand to 3: repaired to the value of the schedule that ran last.
        let d = follow(
            &spec,
            &quota(10.0),
            &observed(3, 4, &created),
            "2026-02-01T12:00:00Z",
        );
        assert_eq!(d.target.min_capacity, 1);
        let d = follow(
            &spec,
            &quota(10.0),
            &observed(3, 4, &created),
            "2026-02-01T20:00:00Z",
        );
        assert_eq!(d.target.min_capacity, 0);
        // No action in AWS yet: nothing ran, the spec's value.
        let d = follow(
            &spec,
            &quota(10.0),
            &observed(3, 4, &[]),
            "2026-02-01T12:00:00Z",
        );
        assert_eq!(d.target.min_capacity, 0);
        assert_eq!(d.schedules.len(), 2);
        assert_eq!(d.schedules[0].action.name, "asyncscale-up");
        assert_eq!(d.schedules[0].action.timezone.as_deref(), Some("UTC"));
    }

    #[test]
    fn a_scheduled_max_is_held_to_the_quota() {
        let mut spec = with_schedules(vec![schedule(
            "peak",
            "cron(0 8 * * ? *)",
            Some(2),
            Some(12),
        )]);
        spec.quota.policy = QuotaPolicy::Clamp;
        let created = [("peak", "2026-01-01T00:00:00Z")];
        let d = follow(
            &spec,
            &quota(6.0),
            &observed(2, 12, &created),
            "2026-02-01T09:00:00Z",
        );
        assert_eq!(d.schedules[0].action.max_capacity, Some(6));
        assert!(d.schedules[0].lowered_max);
        assert_eq!((d.target.min_capacity, d.target.max_capacity), (2, 6));
        assert_eq!(d.effective_max, 6);
        // Ignore: as written.
        let mut ignoring = spec.clone();
        ignoring.quota.policy = QuotaPolicy::Ignore;
        let d = follow(
            &ignoring,
            &quota(6.0),
            &observed(2, 12, &created),
            "2026-02-01T09:00:00Z",
        );
        assert_eq!(d.schedules[0].action.max_capacity, Some(12));
        assert_eq!(d.target.max_capacity, 12);
    }

    #[test]
    fn under_share_a_run_never_lifts_the_target_past_the_share() {
        let spec = with_schedules(vec![schedule("peak", "cron(0 8 * * ? *)", None, Some(4))]);
        let created = [("peak", "2026-01-01T00:00:00Z")];
        let o = observed(0, 4, &created);
        let owner = crate::names::Owner {
            namespace: "ml".into(),
            name: "sdxl".into(),
            uid: None,
        };
        let share = crate::QuotaShare {
            cap: 2,
            in_use: 2,
            endpoints: 2,
            explanation: String::new(),
            min_unmet: false,
            awaiting: Vec::new(),
            held: false,
        };
        let q = quota(4.0);
        let mut d = crate::desire(
            &spec,
            &owner,
            &q,
            o.target.as_ref().map(|t| &t.target),
            Some(&share),
        )
        .unwrap();
        follow_schedules(&mut d, &spec, &q, &o, ts("2026-02-01T09:00:00Z"));
        assert_eq!(d.target.max_capacity, 2, "AWS's run set 4; the share is 2");
        // The action itself asks for no more than the share, so that it cannot fail in AWS.
        assert_eq!(d.schedules[0].action.max_capacity, Some(2));
        assert!(d.schedules[0].lowered_max);
        let pre_warm = with_schedules(vec![schedule("pre", "cron(0 8 * * ? *)", Some(3), None)]);
        let mut d = crate::desire(&pre_warm, &owner, &q, None, Some(&share)).unwrap();
        follow_schedules(&mut d, &pre_warm, &q, &o, ts("2026-02-01T07:00:00Z"));
        assert_eq!(d.schedules[0].action.min_capacity, Some(2));
    }

    #[test]
    fn with_the_quota_unknown_an_action_never_asks_for_more_than_the_target_holds() {
        let mut spec = with_schedules(vec![schedule("pre", "cron(0 8 * * ? *)", Some(3), Some(4))]);
        spec.quota.policy = QuotaPolicy::Clamp;
        let unknown = QuotaLookup::Unknown {
            name: "ml.g4dn.xlarge for endpoint usage".into(),
            reason: "AccessDenied".into(),
        };
        let d = follow(
            &spec,
            &unknown,
            &observed(0, 2, &[]),
            "2026-02-01T07:00:00Z",
        );
        assert_eq!(d.schedules[0].action.max_capacity, Some(2));
        assert_eq!(d.schedules[0].action.min_capacity, Some(2));
        assert!(d.schedules[0].lowered_min && d.schedules[0].lowered_max);
        assert_eq!(d.target.max_capacity, 2, "not raised on a guess");
    }
}
