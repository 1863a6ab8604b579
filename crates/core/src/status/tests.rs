use super::*;
use crate::desired::desire;
use crate::model::{Quota, QuotaSource, ScalingActivity};
use crate::names::Owner;
use k8s_openapi::jiff::Timestamp;

const QUOTA_MESSAGE: &str = "Failed to set desired instance count to 20. Reason: The account-level service limit 'ml.g4dn.xlarge for endpoint usage' is 4 Instances, with current utilization of 1 Instances and a request delta of 19 Instances. Please contact AWS support to request an increase for this limit. (Service: AmazonSageMaker; Status Code: 400; Error Code: ResourceLimitExceeded; Request ID: r-1).";

fn spec() -> AsyncEndpointScalingSpec {
    AsyncEndpointScalingSpec::sdxl()
}

fn quota(value: f64) -> QuotaLookup {
    QuotaLookup::Known(Quota {
        name: "ml.g4dn.xlarge for endpoint usage".into(),
        code: "L-B67CFA0C".into(),
        value,
        source: QuotaSource::Applied,
    })
}

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).unwrap())
}

fn activity(code: &str, message: &str) -> ScalingActivity {
    ScalingActivity {
        activity_id: "a-1".into(),
        status_code: code.into(),
        description: "Setting desired instance count to 20.".into(),
        cause: "monitor alarm X in state ALARM triggered policy Y".into(),
        status_message: Some(message.into()),
        start_time: "2026-11-27T10:00:00Z".into(),
        end_time: Some("2026-11-27T10:00:00Z".into()),
    }
}

/// AWS with one successful scaling activity.
fn scaled_once() -> Observed {
    let mut observed = Observed::empty();
    observed.activities.push(activity(
        "Successful",
        "Successfully set desired instance count to 1.",
    ));
    observed
}

/// What the reconciler hands to `compute_status` after a visit that read AWS.
fn input_of<'a>(
    spec: &'a AsyncEndpointScalingSpec,
    quota: &'a QuotaLookup,
    desired: &'a Desired,
    observed: &'a Observed,
    outcome: SyncOutcome,
) -> StatusInput<'a> {
    StatusInput {
        generation: Some(3),
        spec,
        quota: Some(quota),
        desired: Some(desired),
        observed: Some(observed),
        endpoint: None,
        outcome,
        observation_stale: false,
    }
}

fn run(
    observed: &Observed,
    outcome: SyncOutcome,
    previous: Option<&AsyncEndpointScalingStatus>,
    now: i64,
) -> AsyncEndpointScalingStatus {
    let spec = spec();
    let q = quota(4.0);
    let owner = Owner {
        namespace: "ml".into(),
        name: "sdxl".into(),
        uid: None,
    };
    let desired = desire(&spec, &owner, &q, None, None).unwrap();
    let input = input_of(&spec, &q, &desired, observed, outcome);
    compute_status(&input, previous, &at(now))
}

/// AWS's newest wording (docs/aws-behaviour.md §5.4) and the documentation's
/// older example both say the quota stopped a scale-out.
#[test]
fn a_schedule_shows_only_its_own_successful_runs() {
    let mut spec = spec();
    spec.schedules = vec![asyncscale_api::ScheduleSpec {
        min_capacity: Some(1),
        ..asyncscale_api::ScheduleSpec::new("up", "rate(1 hour)")
    }];
    let q = quota(4.0);
    let owner = Owner {
        namespace: "ml".into(),
        name: "sdxl".into(),
        uid: None,
    };
    let mut observed = Observed::empty();
    observed
        .scheduled_actions
        .push(crate::ObservedScheduledAction {
            action: crate::ScheduledAction {
                name: "asyncscale-up".into(),
                resource_id: "endpoint/sdxl-async/variant/AllTraffic".into(),
                schedule: "rate(1 hour)".into(),
                timezone: None,
                start_time: None,
                end_time: None,
                min_capacity: Some(1),
                max_capacity: None,
            },
            arn: None,
            created: Some("2026-01-01T10:00:00Z".parse().unwrap()),
        });
    let ran = |status: &str, at: &str| ScalingActivity {
        activity_id: at.into(),
        status_code: status.into(),
        description: "Setting min capacity to 1".into(),
        cause: "scheduled action name asyncscale-up was triggered".into(),
        status_message: None,
        start_time: at.into(),
        end_time: Some(at.into()),
    };
    // Newest first: a failed run, a run of this action, a run of an older one of the name.
    observed.activities = vec![
        ran("Failed", "2026-01-01T13:00:00Z"),
        ran("Successful", "2026-01-01T12:00:00Z"),
        ran("Successful", "2026-01-01T09:00:00Z"),
    ];
    let mut desired = desire(&spec, &owner, &q, None, None).unwrap();
    crate::scheduled::follow_schedules(
        &mut desired,
        &spec,
        &q,
        &observed,
        "2026-01-01T13:30:00Z".parse().unwrap(),
    );
    let shown = |observed: &Observed| {
        let input = input_of(&spec, &q, &desired, observed, SyncOutcome::InSync);
        compute_status(&input, None, &at(0)).schedules[0].clone()
    };
    assert_eq!(
        shown(&observed).last_run.as_deref(),
        Some("2026-01-01T12:00:00Z")
    );
    observed.activities.remove(1);
    assert_eq!(
        shown(&observed).last_run,
        None,
        "the older action's run is not this one's"
    );
}

#[test]
fn both_wordings_of_a_quota_failure_are_recognised() {
    const NEWEST: &str = "Failed to set desired instance count to 20. Reason: The account-level service limit 'ml.g4dn.xlarge for endpoint usage' is 4 Instances, with current utilization of 1 Instances and a request delta of 19 Instances. Please use AWS Service Quotas to request an increase for this quota. If AWS Service Quotas is not available, contact AWS support to request an increase for this quota.";
    for message in [NEWEST, QUOTA_MESSAGE] {
        let mut observed = Observed::empty();
        observed.activities.push(activity("Failed", message));
        let status = run(&observed, SyncOutcome::InSync, None, 100);
        let healthy = find(&status, ConditionType::ScalingHealthy).unwrap();
        assert_eq!(healthy.reason, "QuotaExceeded", "{message}");
        assert_eq!(healthy.message, message);
    }
}

/// A quota failure is the endpoint's state while something still asks (Application Auto
/// Scaling retries every minute), and history once the longest scale-out cooldown and two
/// minutes have passed with no newer activity: Ready comes back without waiting for the next
/// burst, and the message keeps AWS's words.
#[test]
fn a_failure_nothing_followed_for_long_is_history_not_the_state() {
    let mut observed = Observed::empty();
    observed.activities.push(activity("Failed", QUOTA_MESSAGE));
    let failed_at = "2026-11-27T10:00:00Z"
        .parse::<Timestamp>()
        .unwrap()
        .as_second();
    // Default cooldowns: 300 s, so 420 s in all.
    let at = |after: i64| run(&observed, SyncOutcome::InSync, None, failed_at + after);
    for (after, ready, reason) in [
        (60, "False", "QuotaExceeded"),
        (420, "False", "QuotaExceeded"),
        (421, "True", "EarlierActivityFailed"),
    ] {
        let status = at(after);
        let healthy = find(&status, ConditionType::ScalingHealthy).unwrap();
        assert_eq!(
            healthy.reason, reason,
            "{after}s after: {}",
            healthy.message
        );
        let ready_now = find(&status, ConditionType::Ready).unwrap();
        assert_eq!(
            ready_now.status, ready,
            "{after}s after: {}",
            ready_now.message
        );
        if reason == "EarlierActivityFailed" {
            assert!(
                healthy.message.contains(QUOTA_MESSAGE),
                "{}",
                healthy.message
            );
            assert!(
                healthy.message.contains("more than 420s ago"),
                "{}",
                healthy.message
            );
        }
    }
    // Counted from when it ended: a scale-out that ran ten minutes before failing is news.
    let mut slow = activity("Failed", QUOTA_MESSAGE);
    slow.end_time = Some("2026-11-27T10:10:00Z".into());
    let mut observed = Observed::empty();
    observed.activities.push(slow);
    let status = run(&observed, SyncOutcome::InSync, None, failed_at + 600 + 60);
    assert_eq!(find(&status, ConditionType::Ready).unwrap().status, "False");
    // Not ended (or not said when), or not asked for by an alarm: nothing asks again, and
    // the failure stays the state until something newer.
    for change in [
        (|a: &mut ScalingActivity| a.end_time = None) as fn(&mut ScalingActivity),
        |a| a.end_time = Some("yesterday".into()),
        |a| a.cause = "scheduled action name asyncscale-up was triggered".into(),
        |a| a.cause = "minimum capacity was set to 2".into(),
    ] {
        let mut failed = activity("Failed", QUOTA_MESSAGE);
        change(&mut failed);
        let mut observed = Observed::empty();
        observed.activities.push(failed.clone());
        let status = run(&observed, SyncOutcome::InSync, None, failed_at + 3600);
        let healthy = find(&status, ConditionType::ScalingHealthy).unwrap();
        assert_eq!(healthy.reason, "QuotaExceeded", "{failed:?}");
    }
}

#[test]
fn clamp_and_quota_failure_are_reported_with_aws_words() {
    let mut observed = Observed::empty();
    observed.activities.push(activity("Failed", QUOTA_MESSAGE));
    let status = run(&observed, SyncOutcome::InSync, None, 100);
    assert_eq!(status.effective_max_capacity, Some(4));
    assert_eq!(status.observed_generation, Some(3));
    let clamped = find(&status, ConditionType::QuotaClamped).unwrap();
    assert_eq!(
        (clamped.status.as_str(), clamped.reason.as_str()),
        ("True", "Clamped")
    );
    assert!(clamped.message.contains(
        "'ml.g4dn.xlarge for endpoint usage' (L-B67CFA0C, applied value) of 4 instances"
    ));
    let healthy = find(&status, ConditionType::ScalingHealthy).unwrap();
    assert_eq!(
        (healthy.status.as_str(), healthy.reason.as_str()),
        ("False", "QuotaExceeded")
    );
    assert_eq!(healthy.message, QUOTA_MESSAGE);
    let ready = find(&status, ConditionType::Ready).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "QuotaExceeded")
    );
    assert_eq!(ready.observed_generation, Some(3));
}

#[test]
fn other_failures_are_scaling_activity_failed() {
    let mut observed = Observed::empty();
    observed
        .activities
        .push(activity("Failed", "Endpoint is being updated"));
    let status = run(&observed, SyncOutcome::InSync, None, 100);
    assert_eq!(
        find(&status, ConditionType::ScalingHealthy).unwrap().reason,
        "ScalingActivityFailed"
    );
}

#[test]
fn ready_when_synced_and_nothing_failed() {
    let observed = scaled_once();
    let status = run(&observed, SyncOutcome::InSync, None, 100);
    let ready = find(&status, ConditionType::Ready).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Ready")
    );
    assert_eq!(
        ready.message,
        "endpoint sdxl-async variant AllTraffic can scale between 0 and 4 instances"
    );
    let conflict = run(
        &observed,
        SyncOutcome::Conflict("owned by x/y".into()),
        None,
        100,
    );
    let ready = find(&conflict, ConditionType::Ready).unwrap();
    assert_eq!(
        (
            ready.status.as_str(),
            ready.reason.as_str(),
            ready.message.as_str()
        ),
        ("False", "Conflict", "owned by x/y")
    );
}

#[test]
fn transition_time_moves_only_when_status_flips() {
    let observed = Observed::empty();
    let first = run(&observed, SyncOutcome::InSync, None, 100);
    let second = run(&observed, SyncOutcome::InSync, Some(&first), 200);
    assert_eq!(first, second, "nothing changed, so nothing moves");
    assert!(same_ignoring_time(&first, &second));
    let failed = run(
        &observed,
        SyncOutcome::ApplyFailed("boom".into()),
        Some(&second),
        300,
    );
    let synced = find(&failed, ConditionType::Synced).unwrap();
    assert_eq!(synced.last_transition_time, at(300));
    let quota = find(&failed, ConditionType::QuotaClamped).unwrap();
    assert_eq!(
        quota.last_transition_time,
        at(100),
        "QuotaClamped did not flip"
    );
    assert!(!same_ignoring_time(&second, &failed));
}

#[test]
fn first_visit_sets_ready_unknown() {
    let status = initial_status(Some(1), &at(5));
    let ready = find(&status, ConditionType::Ready).unwrap();
    assert_eq!(ready.status, "Unknown");
    assert_eq!(status.observed_generation, Some(1));
}

#[test]
fn a_failed_refresh_keeps_the_last_observation_until_it_is_stale() {
    let observed = scaled_once();
    let good = run(&observed, SyncOutcome::InSync, None, 100);
    let failed = || {
        SyncOutcome::ObserveFailed("application-autoscaling DescribeScalableTargets failed: ThrottlingException: Rate exceeded".into())
    };
    let spec = spec();
    let input = |stale| StatusInput {
        generation: Some(4),
        spec: &spec,
        quota: None,
        desired: None,
        observed: None,
        endpoint: None,
        outcome: failed(),
        observation_stale: stale,
    };
    let kept = compute_status(&input(false), Some(&good), &at(200));
    let ready = find(&kept, ConditionType::Ready).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Ready")
    );
    assert_eq!(
        kept.observed_generation,
        Some(3),
        "the generation it was observed for"
    );
    let synced = find(&kept, ConditionType::Synced).unwrap();
    assert!(
        synced.message.contains("the latest refresh of AWS failed"),
        "{}",
        synced.message
    );
    let again = compute_status(&input(false), Some(&kept), &at(300));
    assert!(
        same_ignoring_time(&kept, &again),
        "a second failure writes nothing"
    );
    let stale = compute_status(&input(true), Some(&kept), &at(400));
    let ready = find(&stale, ConditionType::Ready).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("Unknown", "ObserveFailed")
    );
    let back = run(&observed, SyncOutcome::InSync, Some(&kept), 500);
    assert!(
        !find(&back, ConditionType::Synced)
            .unwrap()
            .message
            .contains("refresh")
    );
}

#[test]
fn the_clamp_stays_until_aws_takes_the_change_so_its_lifting_is_told_then() {
    let observed = Observed::empty();
    let clamped = run(&observed, SyncOutcome::InSync, None, 100);
    let mut spec = spec();
    spec.max_capacity = 3;
    let q = quota(4.0);
    let owner = Owner {
        namespace: "ml".into(),
        name: "sdxl".into(),
        uid: None,
    };
    let desired = desire(&spec, &owner, &q, None, None).unwrap();
    let status_for = |outcome, previous, now| {
        let input = StatusInput {
            generation: Some(4),
            spec: &spec,
            quota: Some(&q),
            desired: Some(&desired),
            observed: Some(&observed),
            endpoint: None,
            outcome,
            observation_stale: true,
        };
        compute_status(&input, Some(previous), &at(now))
    };
    let clamp_of = |status: &AsyncEndpointScalingStatus| {
        find(status, ConditionType::QuotaClamped)
            .unwrap()
            .reason
            .clone()
    };
    // The write of MaxCapacity 3 failed, then AWS could not be read: AWS still holds 4.
    let failed = status_for(
        SyncOutcome::ApplyFailed("RegisterScalableTarget failed: timeout".into()),
        &clamped,
        200,
    );
    assert_eq!(clamp_of(&failed), "Clamped");
    let unread = status_for(SyncOutcome::ObserveFailed("timeout".into()), &failed, 300);
    assert_eq!(clamp_of(&unread), "Clamped");
    let applied = status_for(SyncOutcome::InSync, &unread, 400);
    assert_eq!(clamp_of(&applied), "WithinQuota");
    let news = crate::notices::notices(Some(&unread), &applied, &SyncOutcome::InSync);
    assert!(
        news.iter().any(|n| n.reason == "QuotaClampLifted"),
        "{news:?}"
    );
}
