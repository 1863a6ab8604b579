//! The fleet view over the SDK adapter and the local AWS endpoint: what a no-drift resync costs,
//! read-your-writes, drift found by a refresh, and a failed page. Calls are counted by the
//! adapter, as in production.

use std::sync::Arc;
use std::time::Duration;

use asyncscale_api::{AsyncEndpointScalingSpec, parse_manifests};
use asyncscale_aws::RequestBudget;
use asyncscale_core::status::SyncOutcome;
use asyncscale_core::*;
use asyncscale_engine::{
    AutoscalingBackend, BackendSource, CallCounter, ConvergeMode, Fence, FleetConfig, FleetView,
    Held, Intent, OwnershipCheck, QuotaReads, converge,
};
use asyncscale_sim::{Fault, SimServer};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

mod support;
use support::backend_at;

fn spec(i: usize) -> AsyncEndpointScalingSpec {
    let yaml = format!(
        "apiVersion: asyncscale.io/v1alpha1\nkind: AsyncEndpointScaling\nmetadata: {{name: ep-{i}, namespace: ml}}\nspec: {{endpointName: ep-{i:03}, instanceType: ml.g4dn.xlarge, maxCapacity: 4, targetTracking: {{targetValue: 5}}}}\n"
    );
    parse_manifests("t.yaml", &yaml)
        .unwrap()
        .remove(0)
        .resource
        .spec
}

fn owner(i: usize) -> Owner {
    Owner {
        namespace: "ml".into(),
        name: format!("ep-{i}"),
        uid: Some(format!("uid-{i}")),
    }
}

async fn setup(refresh_every: Duration) -> (SimServer, CallCounter, Arc<FleetView>) {
    setup_with(refresh_every, 12).await
}

async fn setup_with(
    refresh_every: Duration,
    endpoints: usize,
) -> (SimServer, CallCounter, Arc<FleetView>) {
    setup_view(refresh_every, endpoints, false).await
}

/// A fleet view on an account with `endpoints` SageMaker endpoints, ep-000 onwards.
async fn setup_view(
    refresh_every: Duration,
    endpoints: usize,
    read_backlog_alarms: bool,
) -> (SimServer, CallCounter, Arc<FleetView>) {
    // A known quota above maxCapacity: an unknown one would keep a lowered MaxCapacity as it is.
    let quotas = asyncscale_sim::quota_table(&["ml.g4dn.xlarge=8".to_string()], &[]).unwrap();
    let server = asyncscale_sim::start("127.0.0.1:0".parse().unwrap(), quotas)
        .await
        .unwrap();
    declare_endpoints(&server, endpoints);
    // AWS's rates would make the fleet's first pass take a minute (PutMetricAlarm: 3 a second).
    let backend = backend_at(&server.url())
        .await
        .with_budget(RequestBudget::unlimited());
    let calls = backend.calls().clone();
    let view = Arc::new(FleetView::new(
        Arc::new(backend),
        FleetConfig {
            refresh_every,
            policy_refresh_every: 1,
            read_backlog_alarms,
        },
    ));
    (server, calls, view)
}

/// The endpoints of [`spec`] 0 to n - 1 in the account.
fn declare_endpoints(server: &SimServer, n: usize) {
    for i in 0..n {
        server.declare_endpoint(&format!("ep-{i:03}"), "AllTraffic", "ml.g4dn.xlarge");
    }
}

async fn converge_all(view: &FleetView, n: usize) -> Vec<SyncOutcome> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut outcomes = Vec::new();
    for i in 0..n {
        let spec = spec(i);
        let intent = Intent {
            spec: &spec,
            owner: owner(i),
            adoption: Adoption::new(false),
            generation: Some(1),
            fence: Fence::open(),
            observation_stale: false,
            ownership_check: OwnershipCheck::Always,
            quota_peers: &[],
            peers_now: None,
            run_peers_lower_first: false,
        };
        let report = converge(view, &intent, ConvergeMode::Apply, None, &now).await;
        outcomes.push(report.outcome);
    }
    outcomes
}

fn count(calls: &CallCounter, operation: &str) -> u64 {
    calls.count(|op| op == operation)
}

#[tokio::test]
async fn a_no_drift_resync_of_a_fleet_costs_a_few_pages_whatever_its_size() {
    const N: usize = 120;
    // Long enough that the second pass, served from the picture, fits in one interval even on a
    // busy machine.
    let every = Duration::from_secs(4);
    let (_server, calls, view) = setup_with(every, N).await;
    let first = converge_all(&view, N).await;
    assert!(first.iter().all(|o| *o == SyncOutcome::InSync), "{first:?}");
    tokio::time::sleep(every + Duration::from_millis(100)).await;

    let before = calls.snapshot();
    let writes = calls.writes();
    let second = converge_all(&view, N).await;
    assert!(
        second.iter().all(|o| *o == SyncOutcome::InSync),
        "{second:?}"
    );
    let after = calls.snapshot();
    let spent = |op: &str| {
        after
            .iter()
            .filter(|(k, _)| k.operation == op)
            .map(|(_, n)| n)
            .sum::<u64>()
            - before
                .iter()
                .filter(|(k, _)| k.operation == op)
                .map(|(_, n)| n)
                .sum::<u64>()
    };
    // 120 targets: 3 pages of 50; 240 policies (two per endpoint): 24 pages of 10; 120 alarms: 2
    // pages of 100; no activity: 1 page; 120 SageMaker endpoints: 2 pages of 100, and no
    // endpoint described again (none changed); no scheduled action: 1 page. Tags and
    // configurations were read once, in the first pass.
    assert_eq!(spent("DescribeScalableTargets"), 3);
    assert_eq!(spent("DescribeScalingPolicies"), 24);
    assert_eq!(spent("DescribeAlarms"), 2);
    assert_eq!(spent("DescribeScalingActivities"), 1);
    assert_eq!(spent("DescribeScheduledActions"), 1);
    assert_eq!(spent("ListEndpoints"), 2);
    assert_eq!(spent("DescribeEndpoint"), 0);
    assert_eq!(spent("DescribeEndpointConfig"), 0);
    assert_eq!(spent("ListTagsForResource"), 0);
    let total: u64 = after.values().sum::<u64>() - before.values().sum::<u64>();
    let quota_reads = spent("GetServiceQuota") + spent("ListServiceQuotas");
    assert_eq!(total - quota_reads, 33, "{after:?}");
    assert_eq!(calls.writes(), writes, "no write");
}

#[tokio::test]
async fn a_write_is_read_back_directly_until_a_refresh_that_started_after_it() {
    let (_server, calls, view) = setup(Duration::from_secs(3600)).await;
    assert!(converge_all(&view, 1).await == [SyncOutcome::InSync]);
    let rid = ResourceNames::new("ep-000", "AllTraffic").resource_id;
    let seen = view.describe_target(&rid).await.unwrap().unwrap();
    assert_eq!(seen.target.max_capacity, 4);

    let reads = count(&calls, "DescribeScalableTargets");
    let mut changed = seen.target.clone();
    changed.max_capacity = 3;
    view.register_target(&changed, None).await.unwrap();
    let read_back = view.describe_target(&rid).await.unwrap().unwrap();
    assert_eq!(read_back.target.max_capacity, 3, "never the picture's 4");
    assert_eq!(
        count(&calls, "DescribeScalableTargets"),
        reads + 1,
        "one direct read, no refresh (the picture is an hour fresh)"
    );
}

#[tokio::test]
async fn drift_by_hand_is_found_by_the_next_refresh_and_reported_as_a_change() {
    let (_server, _calls, view) = setup(Duration::from_millis(200)).await;
    let mut changes = view.changes();
    converge_all(&view, 3).await;
    // Someone lowers MaxCapacity of ep-001 by hand, past the view.
    let rid = ResourceNames::new("ep-001", "AllTraffic").resource_id;
    let by_hand = backend_at(&_server.url()).await;
    let mut target = by_hand.describe_target(&rid).await.unwrap().unwrap().target;
    target.max_capacity = 1;
    by_hand.register_target(&target, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;

    let outcomes = converge_all(&view, 3).await;
    let change = changes.try_recv().expect("the refresh reports the drift");
    assert_eq!(change.resource_id, rid);
    assert_eq!(change.place.region, "us-east-1");
    assert!(changes.try_recv().is_err(), "and nothing else");
    assert_eq!(outcomes, vec![SyncOutcome::InSync; 3]);
    let repaired = by_hand.describe_target(&rid).await.unwrap().unwrap();
    assert_eq!(repaired.target.max_capacity, 4);
}

/// The view's own write, not read back yet when a refresh that started after it ends, is no
/// drift: the picture's entry predates the write, and the writer reads it back itself.
#[tokio::test]
async fn a_refresh_does_not_report_the_views_own_write_as_a_change() {
    let (_server, _calls, view) = setup(Duration::from_millis(100)).await;
    let mut changes = view.changes();
    let rid = ResourceNames::new("ep-000", "AllTraffic").resource_id;
    // The first refresh: no target yet.
    assert!(view.describe_target(&rid).await.unwrap().is_none());
    let spec = spec(0);
    let quota = QuotaLookup::Unknown {
        name: "q".into(),
        reason: "test".into(),
    };
    let d = desire(&spec, &owner(0), &quota, None, None).unwrap();
    view.register_target(&d.target, Some(&owner(0).tags()))
        .await
        .unwrap();
    view.put_policy(&d.target_tracking).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // A refresh that starts after the writes, before any read-back of them.
    view.list_endpoints(None).await.unwrap();
    assert_eq!(view.stats().refreshes, 2);
    assert!(changes.try_recv().is_err(), "no change reported");
    let seen = view.describe_target(&rid).await.unwrap().unwrap();
    assert_eq!(seen.target.max_capacity, d.target.max_capacity);
}

#[tokio::test]
async fn one_failed_page_is_retried_and_does_not_fail_the_refresh() {
    let (server, calls, view) = setup(Duration::from_millis(200)).await;
    converge_all(&view, 12).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    // The second page of policies fails once, past the SDK's own retries.
    server.account.lock().unwrap().faults.push(
        Fault::on("DescribeScalingPolicies")
            .failing("InternalServiceException", 500)
            .times(3),
    );
    let outcomes = converge_all(&view, 12).await;
    assert_eq!(outcomes, vec![SyncOutcome::InSync; 12]);
    assert!(
        server.account.lock().unwrap().faults.is_empty(),
        "all three answered"
    );
    assert!(
        calls
            .snapshot()
            .iter()
            .any(|(k, _)| k.operation == "DescribeScalingPolicies" && k.outcome == "recoverable"),
        "{:?}",
        calls.snapshot()
    );
}

/// Policies are swept every n-th refresh only: a refresh without a sweep, between a write and
/// its read-back, must not forget that the resource's policies were written after the last sweep.
#[tokio::test]
async fn a_refresh_without_a_policy_sweep_keeps_written_policies_read_directly() {
    let server = asyncscale_sim::start(
        "127.0.0.1:0".parse().unwrap(),
        asyncscale_sim::quota_table(&["ml.g4dn.xlarge=8".to_string()], &[]).unwrap(),
    )
    .await
    .unwrap();
    let backend = backend_at(&server.url())
        .await
        .with_budget(RequestBudget::unlimited());
    let view = FleetView::new(
        Arc::new(backend),
        FleetConfig {
            refresh_every: Duration::from_millis(100),
            policy_refresh_every: 1000,
            read_backlog_alarms: false,
        },
    );
    let rid = ResourceNames::new("ep-000", "AllTraffic").resource_id;
    // The first refresh sweeps the policies: none yet.
    assert_eq!(view.describe_policies(&rid).await.unwrap(), vec![]);
    let spec = spec(0);
    let d = desire(
        &spec,
        &owner(0),
        &QuotaLookup::Unknown {
            name: "q".into(),
            reason: "test".into(),
        },
        None,
        None,
    )
    .unwrap();
    view.register_target(&d.target, Some(&owner(0).tags()))
        .await
        .unwrap();
    view.put_policy(&d.target_tracking).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // A refresh without a policy sweep starts and ends after the write...
    assert!(view.describe_target(&rid).await.unwrap().is_some());
    // ...and the read-back of the policies still goes to AWS.
    let policies = view.describe_policies(&rid).await.unwrap();
    assert_eq!(policies.len(), 1, "{policies:?}");
}

/// A fleet view that swept the policies (none yet), then a policy written by another replica
/// that the view does not know of.
async fn a_policy_written_by_another_replica(
    policy_refresh_every: u32,
) -> (SimServer, FleetView, String) {
    let server = asyncscale_sim::start(
        "127.0.0.1:0".parse().unwrap(),
        asyncscale_sim::quota_table(&["ml.g4dn.xlarge=8".to_string()], &[]).unwrap(),
    )
    .await
    .unwrap();
    let view = FleetView::new(
        Arc::new(
            backend_at(&server.url())
                .await
                .with_budget(RequestBudget::unlimited()),
        ),
        FleetConfig {
            refresh_every: Duration::from_millis(100),
            policy_refresh_every,
            read_backlog_alarms: false,
        },
    );
    let rid = ResourceNames::new("ep-000", "AllTraffic").resource_id;
    assert_eq!(view.describe_policies(&rid).await.unwrap(), vec![]);
    let unknown = QuotaLookup::Unknown {
        name: "q".into(),
        reason: "test".into(),
    };
    let d = desire(&spec(0), &owner(0), &unknown, None, None).unwrap();
    // Another replica: writes this view does not know of.
    let other = backend_at(&server.url())
        .await
        .with_budget(RequestBudget::unlimited());
    other
        .register_target(&d.target, Some(&owner(0).tags()))
        .await
        .unwrap();
    other.put_policy(&d.target_tracking).await.unwrap();
    (server, view, rid)
}

/// Policies are swept every n-th refresh, and also whenever the last sweep is older than n
/// intervals: a view idle for long (a standby that leads again) does not serve the policies it
/// read before its idle spell as if they were current.
#[tokio::test]
async fn a_refresh_after_an_idle_spell_sweeps_the_policies_whatever_the_count() {
    // One sweep in 30 refreshes: 3 s apart, far more than a slow machine stretches the first
    // sleep by.
    let (_server, view, rid) = a_policy_written_by_another_replica(30).await;
    // The next refresh, soon after the sweep, does not sweep (by design: one in thirty)...
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(view.describe_policies(&rid).await.unwrap(), vec![]);
    // ...but after more than thirty intervals without one, the next refresh sweeps, whatever
    // the count (two refreshes so far).
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let policies = view.describe_policies(&rid).await.unwrap();
    assert_eq!(policies.len(), 1, "{policies:?}");
}

/// A view told to forget its policies (a new term of leadership) sweeps them at its next
/// refresh, however far the next scheduled sweep is.
#[tokio::test]
async fn forgotten_policies_are_swept_at_the_next_refresh() {
    let (_server, view, rid) = a_policy_written_by_another_replica(1000).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        view.describe_policies(&rid).await.unwrap(),
        vec![],
        "no sweep due"
    );
    view.forget_policies();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(view.describe_policies(&rid).await.unwrap().len(), 1);
}

/// A deletion reads AWS itself: a policy another tool added since the last policy sweep keeps
/// the target alive (only asyncscale's own policies and alarm go).
#[tokio::test]
async fn a_deletion_sees_a_foreign_policy_added_after_the_last_sweep() {
    let (server, _calls, view) = setup(Duration::from_secs(3600)).await;
    converge_all(&view, 1).await;
    let rid = ResourceNames::new("ep-000", "AllTraffic").resource_id;
    let by_hand = backend_at(&server.url()).await;
    let mut foreign = spec(0);
    foreign.target_tracking.target_value = 9.0;
    let d = desire(
        &foreign,
        &owner(0),
        &QuotaLookup::Unknown {
            name: "q".into(),
            reason: "t".into(),
        },
        None,
        None,
    )
    .unwrap();
    let mut policy = d.target_tracking.clone();
    policy.name = "other-tool".into();
    by_hand.put_policy(&policy).await.unwrap();

    let report = asyncscale_engine::remove(&*view, &spec(0), &owner(0), true, &Fence::open()).await;
    assert!(report.error.is_none(), "{report:?}");
    assert!(
        by_hand.describe_target(&rid).await.unwrap().is_some(),
        "the target stays for other-tool"
    );
    let left: Vec<String> = by_hand
        .describe_policies(&rid)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.policy.name)
        .collect();
    assert_eq!(left, vec!["other-tool".to_string()]);
}

/// Owner tags cached from an earlier read are checked against AWS before a write: a target
/// someone else took over (retagged) is reported as a conflict and not written.
#[tokio::test]
async fn a_target_retagged_by_someone_else_is_not_written_whatever_the_cache_says() {
    let (server, calls, view) = setup(Duration::from_millis(200)).await;
    converge_all(&view, 1).await;
    let rid = ResourceNames::new("ep-000", "AllTraffic").resource_id;
    let by_hand = backend_at(&server.url()).await;
    let mut target = by_hand.describe_target(&rid).await.unwrap().unwrap();
    let arn = target.arn.clone().unwrap();
    by_hand
        .untag_target(
            &arn,
            &asyncscale_core::names::OWNER_TAG_KEYS.map(String::from),
        )
        .await
        .unwrap();
    by_hand
        .tag_target(
            &arn,
            &Tags::from([("team".to_string(), "other".to_string())]),
        )
        .await
        .unwrap();
    target.target.max_capacity = 9;
    by_hand.register_target(&target.target, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;

    let writes = calls.writes();
    let outcomes = converge_all(&view, 1).await;
    assert!(
        matches!(outcomes[0], SyncOutcome::Conflict(_)),
        "{outcomes:?}"
    );
    assert_eq!(calls.writes(), writes, "nothing written to their target");
    let theirs = by_hand.describe_target(&rid).await.unwrap().unwrap();
    assert_eq!(theirs.target.max_capacity, 9);
}

/// Each bulk read failing alone, for good (throttled, or refused as AWS refuses a bad request): the reconcile reports ObserveFailed and writes nothing, so what is in AWS stays.
#[tokio::test]
async fn each_bulk_read_failing_alone_writes_nothing() {
    for operation in [
        "DescribeScalableTargets",
        "DescribeScalingPolicies",
        "DescribeAlarms",
        "DescribeScalingActivities",
    ] {
        // A 500 is retried like a throttle (both recoverable): one of them keeps the test short.
        for (code, status) in [("ThrottlingException", 400), ("ValidationException", 400)] {
            let (server, calls, view) = setup(Duration::from_millis(100)).await;
            converge_all(&view, 2).await;
            let before = server.account.lock().unwrap().snapshot("us-east-1");
            tokio::time::sleep(Duration::from_millis(150)).await;
            server
                .account
                .lock()
                .unwrap()
                .faults
                .push(Fault::on(operation).failing(code, status));
            let writes = calls.writes();
            let outcomes = converge_all(&view, 2).await;
            let what = format!("{operation} {code}");
            assert!(
                outcomes
                    .iter()
                    .all(|o| matches!(o, SyncOutcome::ObserveFailed(_))),
                "{what}: {outcomes:?}"
            );
            assert_eq!(calls.writes(), writes, "{what}: no write");
            assert_eq!(
                server.account.lock().unwrap().snapshot("us-east-1"),
                before,
                "{what}: AWS unchanged"
            );
        }
    }
}

/// Before a write, the owner tags are read from AWS past the cache (ListTagsForResource). When
/// only that read fails (throttled, a 500, access denied), the drift stays unrepaired for now and
/// nothing is written: a failed read never weakens what AWS holds.
#[tokio::test]
async fn the_owner_tag_read_before_a_write_failing_alone_writes_nothing() {
    for (code, status) in [
        ("ThrottlingException", 400),
        ("InternalServiceException", 500),
        ("AccessDeniedException", 400),
    ] {
        let (server, calls, view) = setup(Duration::from_millis(100)).await;
        converge_all(&view, 1).await;
        // Drift by hand: MaxCapacity 4 → 1, so the next pass plans a write.
        let rid = ResourceNames::new("ep-000", "AllTraffic").resource_id;
        let by_hand = backend_at(&server.url()).await;
        let mut target = by_hand.describe_target(&rid).await.unwrap().unwrap().target;
        target.max_capacity = 1;
        by_hand.register_target(&target, None).await.unwrap();
        let before = server.account.lock().unwrap().snapshot("us-east-1");
        tokio::time::sleep(Duration::from_millis(150)).await;
        server.account.lock().unwrap().faults.push(
            Fault::on("ListTagsForResource")
                .service("application-autoscaling")
                .failing(code, status),
        );
        let writes = calls.writes();
        let outcome = converge_all(&view, 1).await.remove(0);
        assert!(
            !matches!(outcome, SyncOutcome::InSync),
            "{code}: not reported in sync: {outcome:?}"
        );
        assert_eq!(calls.writes(), writes, "{code}: no write");
        assert_eq!(
            server.account.lock().unwrap().snapshot("us-east-1"),
            before,
            "{code}: AWS unchanged"
        );
        let tag_reads = server.account.lock().unwrap().calls["application-autoscaling"]
            .get("ListTagsForResource")
            .copied()
            .unwrap_or(0);
        assert!(tag_reads > 0, "{code}: the tags were read before the write");
    }
}

/// Puts the AlarmHigh that target tracking created for `endpoint` in ALARM, as CloudWatch does
/// when the backlog per instance stays above the target.
fn fire_alarm_high(server: &SimServer, endpoint: &str) {
    let mut account = server.account.lock().unwrap();
    let listed = account
        .handle(
            "cloudwatch",
            "DescribeAlarms",
            &serde_json::json!({ "AlarmNamePrefix": format!("TargetTracking-endpoint/{endpoint}/") }),
            "us-east-1",
        )
        .unwrap();
    let name = listed["MetricAlarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AlarmName"].as_str().unwrap().to_string())
        .find(|n| n.contains("-AlarmHigh-"))
        .expect("target tracking created its AlarmHigh");
    account
        .handle(
            "cloudwatch",
            "SetAlarmState",
            &serde_json::json!({ "AlarmName": name, "StateValue": "ALARM", "StateReason": "test" }),
            "us-east-1",
        )
        .unwrap();
}

/// The controller's view lists the firing AlarmHigh alarms with each refresh (one DescribeAlarms
/// filtered to ALARM), and hands them to the metrics without a read of its own. That read failing
/// alone (denied, throttled, a 500) or hanging fails and holds no refresh and writes nothing; the
/// answer is then unknown, not the previous one repeated. (A list read has no "not found".)
#[tokio::test]
async fn the_firing_alarm_high_comes_with_each_refresh_and_its_read_failing_alone_changes_nothing()
{
    let every = Duration::from_millis(300);
    let (server, calls, view) = setup_view(every, 2, true).await;
    let outcomes = converge_all(&view, 2).await;
    assert_eq!(outcomes, vec![SyncOutcome::InSync; 2]);
    let id = |i: usize| format!("endpoint/ep-{i:03}/variant/AllTraffic");
    let backlog = |i: usize| {
        view.sighting("ml.g4dn.xlarge", &id(i))
            .map(|s| s.backlog_above_target)
    };
    assert_eq!(backlog(0), Some(Some(false)));
    fire_alarm_high(&server, "ep-000");
    tokio::time::sleep(every + Duration::from_millis(50)).await;
    let firing_reads = || server.account.lock().unwrap().calls["cloudwatch"]["DescribeAlarms"];
    let (before, reads_before) = (calls.snapshot(), firing_reads());
    converge_all(&view, 2).await;
    assert_eq!(backlog(0), Some(Some(true)));
    assert_eq!(backlog(1), Some(Some(false)));
    // One refresh: asyncscale's alarms and the firing AlarmHigh, one page each.
    assert_eq!(firing_reads() - reads_before, 2, "{before:?}");

    let snapshot = server.account.lock().unwrap().snapshot("us-east-1");
    let writes = calls.writes();
    for (code, status, delay_seconds) in [
        (Some("AccessDenied"), 403, 0.0),
        // Retried by the SDK and the page retries, within the read's own bound.
        (Some("Throttling"), 400, 0.0),
        (Some("InternalServiceFault"), 500, 0.0),
        // Hung: past the read's own bound (1 s at this interval), well short of the hold.
        (None, 200, 3600.0),
    ] {
        server.account.lock().unwrap().faults.clear();
        let fault = Fault::on("DescribeAlarms")
            .message("not authorized to perform: cloudwatch:DescribeAlarms")
            .delayed(delay_seconds)
            .when("StateValue", serde_json::json!("ALARM"));
        server.account.lock().unwrap().faults.push(match code {
            Some(code) => fault.failing(code, status),
            None => fault,
        });
        tokio::time::sleep(every + Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let outcomes = converge_all(&view, 2).await;
        let what = format!("{code:?} after {delay_seconds} s");
        assert_eq!(
            outcomes,
            vec![SyncOutcome::InSync; 2],
            "{what}: the refresh stands"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: the refresh was held {:?}",
            started.elapsed()
        );
        assert_eq!(
            backlog(0),
            Some(None),
            "{what}: unknown, not the old answer"
        );
        assert!(view.stats().backlog_reads_failed >= 1, "{what}: counted");
        assert_eq!(calls.writes(), writes, "{what}: no write");
        assert_eq!(
            server.account.lock().unwrap().snapshot("us-east-1"),
            snapshot,
            "{what}"
        );
    }
    server.account.lock().unwrap().faults.clear();
}

/// Two roles in one account and region are two views (their credentials differ) but one place
/// in the metrics: counters summed, the freshest picture's age (a view whose resources are all
/// gone is no longer refreshed, and must not make the account look stale).
#[tokio::test]
async fn two_roles_in_one_account_are_one_place_in_the_stats() {
    let server = asyncscale_sim::start(
        "127.0.0.1:0".parse().unwrap(),
        asyncscale_sim::QuotaTable::default(),
    )
    .await
    .unwrap();
    let backend: Arc<dyn AutoscalingBackend> = Arc::new(backend_at(&server.url()).await);
    let fleet = asyncscale_engine::FleetSource::new(
        Arc::new(asyncscale_engine::SingleBackend(backend)),
        FleetConfig {
            refresh_every: Duration::from_millis(100),
            policy_refresh_every: 1,
            read_backlog_alarms: false,
        },
    );
    let in_role = |arn: &str| asyncscale_engine::Placement {
        region: None,
        role: Some(asyncscale_engine::AssumedRole::new(arn)),
    };
    let a = fleet
        .backend(&in_role("arn:aws:iam::123456789012:role/a"))
        .await
        .unwrap();
    let b = fleet
        .backend(&in_role("arn:aws:iam::123456789012:role/b"))
        .await
        .unwrap();
    assert!(!Arc::ptr_eq(&a, &b), "one view per role");
    let rid = "endpoint/e/variant/AllTraffic";
    a.describe_target(rid).await.unwrap();
    b.describe_target(rid).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.describe_target(rid).await.unwrap();
    let stats = fleet.stats();
    assert_eq!(stats.len(), 1, "{stats:?}");
    let (_, stats) = stats.into_iter().next().unwrap();
    assert_eq!(stats.refreshes, 3);
    assert!(stats.age.unwrap() < Duration::from_millis(300), "{stats:?}");
}

/// A listing paged while an item of an earlier page is removed can skip one: with a token that
/// counts items (the local endpoint's, and nothing AWS documents rules it out), the first item
/// of the next page moves back onto the page already read. A soak saw it: a target missing from
/// the picture counted as no cap, and a raise put the caps over the quota. The view reads what
/// vanished before taking it for gone: the skipped target keeps its MaxCapacity, the one really
/// deregistered is gone, and the skipped endpoint keeps its place in the instance count.
#[tokio::test]
async fn a_target_or_endpoint_a_paged_listing_skips_is_read_not_dropped() {
    let skipped = refresh_skipping(Vec::new()).await;
    let (view, rid) = (
        &skipped.view,
        ResourceNames::new("ep-051", "AllTraffic").resource_id,
    );
    skipped.refreshed.as_ref().unwrap();
    assert_eq!(
        view.stats().refreshes,
        skipped.refreshes_before + 1,
        "one refresh made the picture"
    );
    let gone = ResourceNames::new("ep-020", "AllTraffic").resource_id;
    let maxes = view.max_capacities(&[rid, gone.clone()]).await.unwrap();
    assert_eq!(
        maxes,
        vec![Some(4), None],
        "ep-051 skipped by the listing keeps its cap; ep-020 is gone"
    );
    let usage = view.instance_usage("ml.g4dn.xlarge").await.unwrap();
    let endpoint_0 = ResourceNames::new("ep-000", "AllTraffic").resource_id;
    assert!(
        usage.iter().any(|h| h.resource_id == endpoint_0),
        "ep-000 skipped by the listing"
    );
    assert!(!usage.iter().any(|h| h.resource_id == gone), "ep-020 gone");
    // Both pages, and one direct read for each target that vanished (ep-051, ep-020); ep-010,
    // gone since, was on the page read before it went (the next refresh drops it).
    let reads = count(&skipped.calls, "DescribeScalableTargets") - skipped.reads_before;
    assert_eq!(reads, 2 + 2, "{reads} reads");
}

/// Each way the direct read of a skipped target or endpoint can fail, alone: the refresh fails
/// (and the picture before it stands) or the last known entry is kept. Never is the skipped
/// target read as no cap, nor the skipped endpoint's instances as none, however the refresh
/// ended. A "not found" from SageMaker is its answer, not a failure: with the listing it says
/// the endpoint is gone.
#[tokio::test]
async fn a_failed_read_of_a_skipped_target_or_endpoint_never_drops_it() {
    use asyncscale_sim::failures::Failure;
    let target = ResourceNames::new("ep-051", "AllTraffic").resource_id;
    let endpoint = ResourceNames::new("ep-000", "AllTraffic").resource_id;
    for failure in Failure::all(2.5) {
        let skipped = refresh_skipping(vec![
            failure
                .fault("application-autoscaling", "DescribeScalableTargets", 0)
                .when("ResourceIds", serde_json::json!([target])),
            failure
                .fault("sagemaker", "DescribeEndpoint", 0)
                .when("EndpointName", serde_json::json!("ep-000")),
        ])
        .await;
        let label = failure.label();
        let view = &skipped.view;
        let unfired: Vec<String> = skipped
            .server
            .account
            .lock()
            .unwrap()
            .faults
            .iter()
            .map(|f| f.operation.clone())
            .collect();
        assert!(
            unfired.is_empty(),
            "{label}: the direct reads met their faults: {unfired:?}"
        );
        // Asked right away, and again once another refresh could have come.
        for _ in 0..2 {
            // An error is a failed refresh: nothing is read as gone.
            if let Ok(maxes) = view.max_capacities(std::slice::from_ref(&target)).await {
                assert_eq!(maxes, vec![Some(4)], "{label}: the cap stands");
            }
            if let Ok(usage) = view.instance_usage("ml.g4dn.xlarge").await {
                assert!(
                    usage.iter().any(|h| h.resource_id == endpoint) || failure == Failure::NotFound,
                    "{label}: the instances stand"
                );
            }
            tokio::time::sleep(Duration::from_millis(3100)).await;
        }
        eprintln!(
            "{label}: refresh {:?}",
            skipped.refreshed.as_ref().map(|_| ())
        );
    }
}

/// What [`refresh_skipping`] leaves.
struct Skipped {
    server: SimServer,
    calls: CallCounter,
    view: Arc<FleetView>,
    refreshes_before: u64,
    reads_before: u64,
    /// The skipping refresh's own outcome.
    refreshed: Result<(), asyncscale_engine::AwsError>,
}

/// A fleet view over 60 targets and 102 endpoints whose next refresh lists them while ep-010
/// is deleted between two pages, so that the listings skip ep-051's target and ep-000's
/// endpoint (token that counts items: targets 50 a page by resource id, endpoints 100 a page
/// newest first); ep-020 was deleted before that refresh. `faults` are armed for it.
async fn refresh_skipping(faults: Vec<Fault>) -> Skipped {
    // Refreshed every 3 s: the checks read the picture this refresh makes, not another.
    let (server, calls, view) = setup_with(Duration::from_secs(3), 102).await;
    converge_all(&view, 60).await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let delete_endpoint = |i: usize| {
        let rid = ResourceNames::new(&format!("ep-{i:03}"), "AllTraffic").resource_id;
        let removed = server
            .world
            .lock()
            .unwrap()
            .remove_endpoint(&format!("ep-{i:03}"));
        assert_eq!(removed, Some(rid.clone()));
        // AWS deregisters the target of a deleted endpoint.
        let _ = server.account.lock().unwrap().handle(
            "application-autoscaling",
            "DeregisterScalableTarget",
            &serde_json::json!({"ServiceNamespace": "sagemaker", "ResourceId": rid,
                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}),
            "us-east-1",
        );
    };
    delete_endpoint(20);
    let held = [
        ("DescribeScalableTargets", "50"),
        ("ListEndpoints", "sim-endpoints-100"),
    ];
    for (operation, token) in held {
        server.account.lock().unwrap().faults.push(
            Fault::on(operation)
                .when("NextToken", serde_json::json!(token))
                .delayed(2.0)
                .times(1),
        );
    }
    let refreshes_before = view.stats().refreshes;
    let reads_before = count(&calls, "DescribeScalableTargets");
    let refreshing = tokio::spawn({
        let view = view.clone();
        async move { view.list_endpoints(None).await.map(|_| ()) }
    });
    // Both second pages asked for (so both first pages read), and held.
    let asked = std::time::Instant::now();
    while server
        .account
        .lock()
        .unwrap()
        .faults
        .iter()
        .any(|f| f.delay_seconds == 2.0)
    {
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "the second pages were never asked for"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.account.lock().unwrap().faults.extend(faults);
    delete_endpoint(10);
    let refreshed = refreshing.await.unwrap();
    Skipped {
        server,
        calls,
        view,
        refreshes_before,
        reads_before,
        refreshed,
    }
}

/// A scaling activity of `endpoint`'s variant, as AWS lists it.
fn add_activity(server: &SimServer, endpoint: &str, description: &str) {
    let activity: asyncscale_sim::account::Activity = serde_json::from_value(serde_json::json!({
        "ResourceId": ResourceNames::new(endpoint, "AllTraffic").resource_id,
        "Description": description,
        "StatusCode": "Successful",
    }))
    .unwrap();
    let tenant = server.tenant(asyncscale_sim::account::ACCOUNT_ID);
    tenant.account.lock().unwrap().add_activity(activity);
}

/// DeleteEndpoint behind asyncscale's back: AWS deregisters the endpoint's scalable target.
async fn delete_endpoint(server: &SimServer, endpoint: &str) {
    let tenant = server.tenant(asyncscale_sim::account::ACCOUNT_ID);
    tenant.world.lock().unwrap().remove_endpoint(endpoint);
    let rid = ResourceNames::new(endpoint, "AllTraffic").resource_id;
    backend_at(&server.url())
        .await
        .deregister_target(&rid)
        .await
        .unwrap();
}

/// Someone registers `resource_id`'s scalable target by hand, as ep-000's is, behind the view.
async fn register_like_ep_000(server: &SimServer, view: &FleetView, resource_id: &str) {
    let mut target = view
        .describe_target(&ResourceNames::new("ep-000", "AllTraffic").resource_id)
        .await
        .unwrap()
        .unwrap()
        .target;
    target.resource_id = resource_id.to_string();
    backend_at(&server.url())
        .await
        .register_target(&target, None)
        .await
        .unwrap();
}

/// Waits for the view's next refresh (a reconcile's read is what starts one).
async fn next_refresh(view: &FleetView, every: Duration) {
    let from = view.stats().refreshes;
    while view.stats().refreshes < from + 1 {
        tokio::time::sleep(every / 4).await;
        let _ = view.describe_endpoint("ep-000").await;
    }
}

/// The direct reads of `resource_id`'s activities since `mark` (a refresh's sweep names no
/// resource).
fn direct_activity_reads(server: &SimServer, mark: u64, resource_id: &str) -> usize {
    server
        .log_since(mark)
        .iter()
        .filter(|e| e.operation == "DescribeScalingActivities")
        .filter(|e| e.names.contains(resource_id))
        .count()
}

/// A fleet that churns for days must not grow the picture: what belonged to targets and
/// endpoints gone from AWS (their activities, tags, configurations) is forgotten by the next
/// refreshes. A target registered again by someone else then has its older history read once,
/// as AWS still lists it.
#[tokio::test]
async fn what_deleted_endpoints_leave_is_forgotten_and_read_again_if_they_come_back() {
    let every = Duration::from_millis(200);
    let (server, _calls, view) = setup_with(every, 3).await;
    converge_all(&view, 3).await;
    for endpoint in ["ep-000", "ep-001", "ep-002"] {
        add_activity(&server, endpoint, "Setting desired instance count to 1.");
    }
    next_refresh(&view, every).await;
    let held = view.stats().held;
    assert_eq!(
        (
            held.targets,
            held.activity_histories,
            held.endpoints,
            held.configs
        ),
        (3, 3, 3, 3),
        "{held:?}"
    );
    assert_eq!(
        held.tags, 3,
        "the owner tags read by the first pass: {held:?}"
    );

    delete_endpoint(&server, "ep-001").await;
    delete_endpoint(&server, "ep-002").await;
    // ep-002's resource still reconciles (its status shows the last activity, which AWS still
    // lists); ep-001's is gone too. A configuration outlives its endpoint by one refresh (a
    // reconcile may have read it for an endpoint the refresh could not list yet), and a
    // history is kept while it is asked for.
    let ep2 = ResourceNames::new("ep-002", "AllTraffic").resource_id;
    let settled = Held {
        targets: 1,
        activity_histories: 2,
        tags: 1,
        endpoints: 1,
        configs: 1,
    };
    let mut refreshes = 0;
    while view.stats().held != settled {
        next_refresh(&view, every).await;
        let read = view.recent_activities(&ep2, 10).await.unwrap();
        assert_eq!(read.len(), 1, "still listed by AWS, still shown: {read:?}");
        refreshes += 1;
        assert!(refreshes < 30, "{:?}", view.stats().held);
    }
    // Once nothing asks for it, ep-002's history goes too.
    while view.stats().held.activity_histories > 1 {
        next_refresh(&view, every).await;
        refreshes += 1;
        assert!(refreshes < 60, "{:?}", view.stats().held);
    }

    // ep-001 comes back, and someone registers its target by hand: AWS still lists the old
    // activity, and so does the view, with one direct read, then from the picture.
    server.declare_endpoint("ep-001", "AllTraffic", "ml.g4dn.xlarge");
    let rid = ResourceNames::new("ep-001", "AllTraffic").resource_id;
    register_like_ep_000(&server, &view, &rid).await;
    next_refresh(&view, every).await;
    let mark = server.log_since(0).last().map_or(0, |e| e.seq);
    let direct_reads = || direct_activity_reads(&server, mark, &rid);
    let read = view.recent_activities(&rid, 10).await.unwrap();
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(direct_reads(), 1);
    assert_eq!(view.recent_activities(&rid, 10).await.unwrap(), read);
    assert_eq!(direct_reads(), 1, "then from the picture");
}

/// In an account with more history than a first sweep reads (it is never complete), a resource
/// without a target (its endpoint deleted, or its target not registered yet) asks for its
/// activities at every reconcile: one direct read, then the picture, for as long as it asks.
#[tokio::test]
async fn a_resource_without_a_target_reads_its_history_once_however_often_it_asks() {
    let every = Duration::from_millis(200);
    let (server, _calls, view) = setup_with(every, 1).await;
    // 22 pages of another resource's history: the first sweep stops at 20.
    for _ in 0..1100 {
        add_activity(&server, "busy", "Setting desired instance count to 2.");
    }
    let rid = ResourceNames::new("ep-000", "AllTraffic").resource_id;
    let mark = server.log_since(0).last().map_or(0, |e| e.seq);
    for _ in 0..6 {
        assert_eq!(view.recent_activities(&rid, 10).await.unwrap(), []);
        next_refresh(&view, every).await;
    }
    assert_eq!(direct_activity_reads(&server, mark, &rid), 1);
}

/// The direct read of a returning target's older history, failing alone in each way AWS fails
/// (throttled and internal errors past the SDK's retries, refused, not found, an answer held
/// past the call timeout): the reconcile that asked gets the error, nothing is taken as an
/// empty history, and the next one reads it directly again and then keeps it.
#[tokio::test]
async fn a_failed_read_of_a_returning_targets_history_is_read_again_not_taken_as_empty() {
    use asyncscale_sim::failures::Failure;

    const HELD: f64 = 2.5;
    let every = Duration::from_millis(200);
    for failure in Failure::all(HELD) {
        let (server, _calls, _) = setup_with(every, 2).await;
        let backend = support::backend_with_timeout(&server.url(), Duration::from_secs(1)).await;
        let view = FleetView::new(
            Arc::new(backend),
            FleetConfig {
                refresh_every: every,
                policy_refresh_every: 1,
                read_backlog_alarms: false,
            },
        );
        converge_all(&view, 1).await;
        // ep-001 scaled before (AWS lists it), then its target was registered by hand after
        // the view's first refresh: the sweeps, which read only what is newer, never bring it.
        add_activity(&server, "ep-001", "Setting desired instance count to 1.");
        next_refresh(&view, every).await;
        let rid = ResourceNames::new("ep-001", "AllTraffic").resource_id;
        register_like_ep_000(&server, &view, &rid).await;
        next_refresh(&view, every).await;

        let fault = failure
            .fault("application-autoscaling", "DescribeScalingActivities", 0)
            .when("ResourceId", serde_json::json!(rid));
        let times = fault.count;
        server.account.lock().unwrap().faults.push(fault);
        let mark = server.log_since(0).last().map_or(0, |e| e.seq);
        let failed = view.recent_activities(&rid, 10).await;
        assert!(failed.is_err(), "{}: {failed:?}", failure.label());
        assert!(
            support::first_fault_left(&server).is_none_or(|n| n < times),
            "{}: the direct read met its fault",
            failure.label()
        );
        server.account.lock().unwrap().faults.clear();
        if let Failure::Held(seconds) = failure {
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        }
        let reads_after_failure = direct_activity_reads(&server, mark, &rid);
        let read = view.recent_activities(&rid, 10).await.unwrap();
        assert_eq!(read.len(), 1, "{}: {read:?}", failure.label());
        assert_eq!(
            direct_activity_reads(&server, mark, &rid),
            reads_after_failure + 1,
            "{}: read directly again",
            failure.label()
        );
        assert_eq!(view.recent_activities(&rid, 10).await.unwrap(), read);
        assert_eq!(
            direct_activity_reads(&server, mark, &rid),
            reads_after_failure + 1,
            "{}: then from the picture",
            failure.label()
        );
    }
}
