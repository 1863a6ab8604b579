//! SageMaker's own state in a reconcile, over the wire against the local endpoint:
//! what a missing, misnamed or real-time endpoint does (nothing written, a clear reason), what
//! status shows of the endpoint, and one instance quota shared between endpoints.

use std::sync::Arc;
use std::time::Duration;

use asyncscale_api::{AsyncEndpointScalingSpec, parse_manifests};
use asyncscale_aws::{RequestBudget, SdkBackend};
use asyncscale_core::conditions::Reason;
use asyncscale_core::status::SyncOutcome;
use asyncscale_core::{Adoption, Owner, ResourceNames};
use asyncscale_engine::{
    AutoscalingBackend, ConvergeMode, ConvergeReport, ErrorKind, Fence, FleetConfig, FleetView,
    Intent, OwnershipCheck, QuotaPeer, QuotaReads, converge, quota_peers,
};
use asyncscale_sim::SimServer;
use asyncscale_sim::model::EndpointSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

mod support;
use support::backend_at;

fn spec(endpoint: &str, extra: &str) -> AsyncEndpointScalingSpec {
    let yaml = format!(
        "apiVersion: asyncscale.io/v1alpha1\nkind: AsyncEndpointScaling\nmetadata: {{name: {endpoint}, namespace: ml}}\nspec: {{endpointName: {endpoint}, instanceType: ml.g4dn.xlarge, maxCapacity: 4, targetTracking: {{targetValue: 5}}{extra}}}\n"
    );
    parse_manifests("t.yaml", &yaml)
        .unwrap()
        .remove(0)
        .resource
        .spec
}

async fn account(quota: u32) -> (SimServer, SdkBackend) {
    let quotas = asyncscale_sim::quota_table(&[format!("ml.g4dn.xlarge={quota}")], &[]).unwrap();
    let server = asyncscale_sim::start("127.0.0.1:0".parse().unwrap(), quotas)
        .await
        .unwrap();
    let backend = backend_at(&server.url())
        .await
        .with_budget(RequestBudget::unlimited());
    (server, backend)
}

/// Asynchronous endpoints of the test's type, each holding this many instances.
fn declare(server: &SimServer, endpoints: &[(&str, u32)]) {
    let mut world = server.world.lock().unwrap();
    for (name, instances) in endpoints {
        world.add_endpoint(EndpointSpec {
            initial_instances: *instances,
            ..EndpointSpec::idle(name, "AllTraffic", "ml.g4dn.xlarge")
        });
    }
}

async fn apply(
    backend: &dyn AutoscalingBackend,
    spec: &AsyncEndpointScalingSpec,
    peers: &[QuotaPeer],
) -> ConvergeReport {
    apply_with(backend, spec, peers, None).await
}

/// As `apply`, with the peers as they are when a raise holds the quota's lock.
async fn apply_with(
    backend: &dyn AutoscalingBackend,
    spec: &AsyncEndpointScalingSpec,
    peers: &[QuotaPeer],
    peers_now: Option<&(dyn Fn() -> Vec<QuotaPeer> + Send + Sync)>,
) -> ConvergeReport {
    let intent = Intent {
        spec,
        owner: Owner {
            namespace: "ml".into(),
            name: spec.endpoint_name.clone(),
            uid: Some(format!("uid-{}", spec.endpoint_name)),
        },
        adoption: Adoption::new(false),
        generation: Some(1),
        fence: Fence::open(),
        observation_stale: false,
        ownership_check: OwnershipCheck::Always,
        quota_peers: peers,
        peers_now,
        run_peers_lower_first: false,
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    converge(backend, &intent, ConvergeMode::Apply, None, &now).await
}

fn condition<'a>(report: &'a ConvergeReport, kind: &str) -> (&'a str, &'a str) {
    let c = report
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .unwrap_or_else(|| panic!("no {kind}: {:?}", report.status.conditions));
    (c.reason.as_str(), c.message.as_str())
}

/// Each endpoint problem stops the reconcile before any write and says what to fix.
#[tokio::test]
async fn an_endpoint_that_cannot_be_scaled_gets_a_reason_and_no_aws_write() {
    let (server, backend) = account(4).await;
    {
        let mut world = server.world.lock().unwrap();
        world.add_endpoint(EndpointSpec {
            asynchronous: false,
            ..EndpointSpec::idle("realtime", "AllTraffic", "ml.g4dn.xlarge")
        });
        world.add_endpoint(EndpointSpec::idle("two-variants", "Blue", "ml.g4dn.xlarge"));
        world.add_endpoint(EndpointSpec::idle("gpu", "AllTraffic", "ml.g5.xlarge"));
    }
    let cases = [
        (
            spec("nowhere", ""),
            Reason::EndpointNotFound,
            "does not exist in this account in us-east-1",
        ),
        (
            spec("two-variants", ""),
            Reason::VariantNotFound,
            "no production variant AllTraffic (it has: Blue)",
        ),
        (
            spec("realtime", ""),
            Reason::NotAsynchronous,
            "has no AsyncInferenceConfig",
        ),
        (
            spec("gpu", ""),
            Reason::InstanceTypeMismatch,
            "set spec.instanceType to ml.g5.xlarge",
        ),
    ];
    for (spec, reason, words) in cases {
        let report = apply(&backend, &spec, &[]).await;
        assert!(
            matches!(&report.outcome, SyncOutcome::EndpointUnusable(p) if p.reason() == reason),
            "{}: {:?}",
            spec.endpoint_name,
            report.outcome
        );
        let (ready, message) = condition(&report, "Ready");
        assert_eq!(ready, reason.as_str());
        assert!(message.contains(words), "{message}");
        assert!(
            report.error.is_none(),
            "a standing problem, not a failed call to retry fast"
        );
    }
    assert_eq!(
        backend.calls().writes(),
        0,
        "nothing written for any of them"
    );
}

/// Status shows the endpoint as SageMaker reports it: status, instance type, instances.
#[tokio::test]
async fn status_shows_the_endpoint_and_its_instances() {
    let (server, backend) = account(8).await;
    declare(&server, &[("sdxl-async", 2)]);
    let report = apply(&backend, &spec("sdxl-async", ", minCapacity: 1"), &[]).await;
    assert_eq!(report.outcome, SyncOutcome::InSync);
    assert_eq!(report.status.instances.as_deref(), Some("2/2"));
    let endpoint = report.status.endpoint.as_ref().unwrap();
    assert_eq!(endpoint.status, "InService");
    assert_eq!(endpoint.instance_type.as_deref(), Some("ml.g4dn.xlarge"));
    assert_eq!(endpoint.config_name.as_deref(), Some("sdxl-async-config"));
    assert_eq!(report.status.quota.as_ref().unwrap().in_use, Some(2));
}

/// The scenario over the wire: two endpoints of one type, quota 4, plus an endpoint
/// asyncscale does not manage holding 1. Each shared endpoint may grow to what is left, split
/// fairly; the caps never add up past the quota.
#[tokio::test]
async fn two_endpoints_share_what_the_quota_leaves_and_say_so() {
    let (server, backend) = account(4).await;
    declare(&server, &[("a", 0), ("b", 0), ("unmanaged", 1)]);
    let specs = [spec("a", ""), spec("b", "")];
    let mut caps = Vec::new();
    for s in &specs {
        let peers = peers_in_one_place(s, &specs);
        assert_eq!(peers.len(), 1);
        let report = apply(&backend, s, &peers).await;
        assert_eq!(report.outcome, SyncOutcome::InSync, "{:?}", report.status);
        let cap = report.status.effective_max_capacity.unwrap();
        let (reason, message) = condition(&report, "QuotaClamped");
        assert_eq!(reason, "Shared");
        // What the other's cap reserves is said too.
        let reserved = 3 - cap;
        assert!(
            message.contains(&format!(
                "1 of 4 in use (0 by the 2 endpoints sharing it, 1 by other endpoints); {reserved} more reserved by the other sharing endpoints' caps; this endpoint may grow to {cap}"
            )),
            "{message}"
        );
        let quota = report.status.quota.as_ref().unwrap();
        assert_eq!((quota.in_use, quota.sharing_endpoints), (Some(1), Some(2)));
        caps.push(cap);
    }
    // 3 free instances: 2 and 1 (the leftover by resource id, no endpoint having a backlog).
    assert_eq!(caps, [2, 1]);
    let unmanaged = 1;
    assert!(
        caps.iter().sum::<i32>() + unmanaged <= 4,
        "the caps fit the quota"
    );

    // Converging again changes nothing: no churn.
    let writes = backend.calls().writes();
    for s in &specs {
        let peers = peers_in_one_place(s, &specs);
        apply(&backend, s, &peers).await;
    }
    assert_eq!(
        backend.calls().writes(),
        writes,
        "no write when no cap must change"
    );
}

/// Four sharing endpoints and one instance held elsewhere, quota 4: the fourth gets MaxCapacity
/// 0. Its status says that 1 of 4 is in use and 3 are reserved by the others' caps (it said
/// "every instance its quota allows is in use by other endpoints"), and it is not Ready: its
/// requests would wait.
#[tokio::test]
async fn a_share_of_zero_says_what_is_reserved_and_is_not_ready() {
    let (server, backend) = account(4).await;
    declare(
        &server,
        &[("a", 0), ("b", 0), ("c", 0), ("d", 0), ("unmanaged", 1)],
    );
    let specs = [spec("a", ""), spec("b", ""), spec("c", ""), spec("d", "")];
    let mut last = None;
    for s in &specs {
        last = Some(apply(&backend, s, &peers_in_one_place(s, &specs)).await);
    }
    let d = last.unwrap();
    assert_eq!(d.status.effective_max_capacity, Some(0));
    let (reason, message) = condition(&d, "Ready");
    assert_eq!(reason, "WaitingForQuota", "{message}");
    assert!(
        message.contains("may hold no instance for now, so its requests wait")
            && message.contains("1 of 4 in use (0 by the 4 endpoints sharing it, 1 by other endpoints); 3 more reserved by the other sharing endpoints' caps"),
        "{message}"
    );
    let ready = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
}

/// A peer's DescribeEndpoint denied once (and a "not found" for an endpoint just listed) does
/// not make its instances vanish: no cap is raised on the short count, and QuotaClamped names
/// the endpoint that could not be read. Before, its 2 instances were left out and the caps went
/// 1 → 2 on both: 2 + 2 + 2 = 6 over 4.
#[tokio::test]
async fn an_unreadable_endpoint_holds_every_raise() {
    for (code, message) in [
        ("AccessDeniedException", None),
        (
            "ValidationException",
            Some("Could not find endpoint \"held\"."),
        ),
    ] {
        let (server, backend) = account(4).await;
        declare(&server, &[("s1", 0), ("s2", 0), ("held", 2)]);
        let specs = [spec("s1", ""), spec("s2", "")];
        for s in &specs {
            let report = apply(&backend, s, &peers_in_one_place(s, &specs)).await;
            assert_eq!(report.status.effective_max_capacity, Some(1));
        }
        // A new run, one denied read of the unmanaged endpoint.
        let fresh = backend_at(&server.url())
            .await
            .with_budget(RequestBudget::unlimited());
        let mut fault = asyncscale_sim::Fault::on("DescribeEndpoint")
            .failing(code, 400)
            .when("EndpointName", serde_json::json!("held"))
            .times(1);
        fault.message = message.map(str::to_string);
        server.account.lock().unwrap().faults.push(fault);
        let writes = fresh.calls().writes();
        let s1 = apply(&fresh, &specs[0], &peers_in_one_place(&specs[0], &specs)).await;
        assert_eq!(fresh.calls().writes(), writes, "{code}: nothing raised");
        assert_eq!(s1.status.effective_max_capacity, Some(1));
        let (_, clamp) = condition(&s1, "QuotaClamped");
        assert!(
            clamp.contains("held at 1 for now: the instances of endpoint held"),
            "{code}: {clamp}"
        );
    }
}

/// An endpoint whose share is 0 and whose requests wait with no instance (its scale-from-zero
/// alarm fires) is first for the instance left over.
#[tokio::test]
async fn an_endpoint_waiting_at_zero_gets_the_leftover_instance() {
    let (server, backend) = account(1).await;
    declare(&server, &[("a", 0), ("b", 0)]);
    let specs = [spec("a", ""), spec("b", "")];
    let peers_of = |s: &AsyncEndpointScalingSpec| peers_in_one_place(s, &specs);
    let a = apply(&backend, &specs[0], &peers_of(&specs[0])).await;
    let b = apply(&backend, &specs[1], &peers_of(&specs[1])).await;
    assert_eq!(a.status.effective_max_capacity, Some(1), "a first by id");
    assert_eq!(b.status.effective_max_capacity, Some(0));

    // Requests queue on b: its HasBacklogWithoutCapacity alarm fires.
    let alarm = ResourceNames::new("b", "AllTraffic").alarm;
    server
        .account
        .lock()
        .unwrap()
        .handle(
            "cloudwatch",
            "SetAlarmState",
            &serde_json::json!({"AlarmName": alarm, "StateValue": "ALARM", "StateReason": "test"}),
            "us-east-1",
        )
        .unwrap();
    // The next run (a one-shot run keeps what it listed for 30 s).
    let backend = backend_at(&server.url())
        .await
        .with_budget(RequestBudget::unlimited());
    // b's raise waits until a's MaxCapacity in AWS is lowered: the targets never add up past
    // the quota, not even between two reconciles.
    let b = apply(&backend, &specs[1], &peers_of(&specs[1])).await;
    assert_eq!(b.status.effective_max_capacity, Some(0), "{:?}", b.status);
    let a = apply(&backend, &specs[0], &peers_of(&specs[0])).await;
    assert_eq!(a.status.effective_max_capacity, Some(0));
    let b = apply(&backend, &specs[1], &peers_of(&specs[1])).await;
    assert_eq!(b.status.effective_max_capacity, Some(1), "{:?}", b.status);
}

/// The fleet view reads SageMaker in bulk: a resync with no change costs one ListEndpoints page
/// and no DescribeEndpoint; an endpoint that changed is described again, once.
#[tokio::test]
async fn the_fleet_view_describes_only_endpoints_that_changed() {
    let (server, backend) = account(8).await;
    for i in 0..5 {
        server.declare_endpoint(&format!("e{i}"), "AllTraffic", "ml.g4dn.xlarge");
    }
    let calls = backend.calls().clone();
    let every = Duration::from_millis(300);
    let view = FleetView::new(
        Arc::new(backend),
        FleetConfig {
            refresh_every: every,
            policy_refresh_every: 1,
            read_backlog_alarms: false,
        },
    );
    let mut changes = view.changes();
    let specs: Vec<_> = (0..5).map(|i| spec(&format!("e{i}"), "")).collect();
    for s in &specs {
        assert_eq!(apply(&view, s, &[]).await.outcome, SyncOutcome::InSync);
    }
    tokio::time::sleep(every).await;
    view.describe_endpoint("e0").await.unwrap();
    while changes.try_recv().is_ok() {}
    let count = |op: &str| calls.count(|o| o == op);
    let (listed, described) = (count("ListEndpoints"), count("DescribeEndpoint"));

    tokio::time::sleep(every).await;
    for s in &specs {
        apply(&view, s, &[]).await;
    }
    assert_eq!(count("ListEndpoints"), listed + 1);
    assert_eq!(count("DescribeEndpoint"), described, "nothing changed");

    // e3 scales (AWS changes its desired count): one description, and its resource wakes.
    server
        .world
        .lock()
        .unwrap()
        .endpoint_mut("e3")
        .unwrap()
        .last_modified_s += 60.0;
    tokio::time::sleep(every).await;
    let report = apply(&view, &specs[3], &[]).await;
    assert_eq!(report.outcome, SyncOutcome::InSync);
    assert_eq!(count("DescribeEndpoint"), described + 1);
    let change = changes.try_recv().expect("the change is reported");
    assert_eq!(change.resource_id, "endpoint/e3/variant/AllTraffic");
    assert_eq!(
        count("DescribeEndpointConfig"),
        5,
        "each configuration read once"
    );
}

/// Two minimums of 3 in a quota of 4 (the break-test's repro): the first by id is granted, the
/// second waits with nothing written, and no scale-out can fail.
#[tokio::test]
async fn a_minimum_that_does_not_fit_the_share_waits_and_writes_nothing() {
    let (server, backend) = account(4).await;
    for name in ["m1", "m2"] {
        server.declare_endpoint(name, "AllTraffic", "ml.g4dn.xlarge");
    }
    let specs = [
        spec("m1", ", minCapacity: 3"),
        spec("m2", ", minCapacity: 3"),
    ];
    let peers_of = |s: &AsyncEndpointScalingSpec| peers_in_one_place(s, &specs);
    let m1 = apply(&backend, &specs[0], &peers_of(&specs[0])).await;
    assert_eq!(m1.outcome, SyncOutcome::InSync, "{:?}", m1.status);
    let writes = backend.calls().writes();
    let m2 = apply(&backend, &specs[1], &peers_of(&specs[1])).await;
    let SyncOutcome::WaitingForQuota(message) = &m2.outcome else {
        panic!("{:?}", m2.outcome)
    };
    assert!(
        message.contains("minCapacity 3 asks for more instances"),
        "{message}"
    );
    assert_eq!(backend.calls().writes(), writes, "nothing written for m2");
    // No MaxCapacity is in AWS for m2: QuotaClamped says nothing was applied.
    assert_eq!(condition(&m2, "QuotaClamped").0, "NotApplied");
}

/// A resource on a real-time endpoint writes nothing, so it takes no share: the other keeps
/// the whole quota (the break-test's repro).
#[tokio::test]
async fn a_resource_that_cannot_scale_its_endpoint_takes_no_share() {
    let (server, backend) = account(4).await;
    server.declare_endpoint("sdxl", "AllTraffic", "ml.g4dn.xlarge");
    server.world.lock().unwrap().add_endpoint(EndpointSpec {
        asynchronous: false,
        ..EndpointSpec::idle("rt", "AllTraffic", "ml.g4dn.xlarge")
    });
    let specs = [spec("sdxl", ""), spec("rt", "")];
    let peers = peers_in_one_place(&specs[0], &specs);
    takes_the_whole_quota(apply(&backend, &specs[0], &peers).await);
}

fn takes_the_whole_quota(report: ConvergeReport) {
    assert_eq!(
        report.status.effective_max_capacity,
        Some(4),
        "{:?}",
        report.status
    );
}

/// Nor does one on an endpoint of another instance type, or on a variant the endpoint does not
/// have: their endpoints exist, so they keep no share for a return either.
#[tokio::test]
async fn a_resource_on_another_type_or_a_missing_variant_takes_no_share() {
    let (server, backend) = account(4).await;
    server.declare_endpoint("sdxl", "AllTraffic", "ml.g4dn.xlarge");
    server.declare_endpoint("big", "AllTraffic", "ml.g5.xlarge");
    let specs = [
        spec("sdxl", ""),
        spec("big", ""),
        spec("sdxl", ", variantName: Nope"),
    ];
    let mut peers = peers_in_one_place(&specs[0], &specs);
    assert_eq!(peers.len(), 2);
    // Both reconciled before: a missing endpoint of theirs would keep a share.
    for peer in &mut peers {
        peer.established = true;
    }
    takes_the_whole_quota(apply(&backend, &specs[0], &peers).await);
}

/// An endpoint created after the last refresh is read directly, not reported missing; an
/// unrelated endpoint whose configuration cannot be read is left out of the picture instead of
/// failing every resource (both from the break-test).
#[tokio::test]
async fn the_fleet_view_reads_a_new_endpoint_and_skips_an_unreadable_one() {
    let (server, backend) = account(8).await;
    server.declare_endpoint("e0", "AllTraffic", "ml.g4dn.xlarge");
    let view = unrefreshed_view(backend);
    assert_eq!(
        apply(&view, &spec("e0", ""), &[]).await.outcome,
        SyncOutcome::InSync
    );
    server.declare_endpoint("late", "AllTraffic", "ml.g4dn.xlarge");
    let report = apply(&view, &spec("late", ""), &[]).await;
    assert_eq!(report.outcome, SyncOutcome::InSync, "{:?}", report.status);

    // A new refresh, with another endpoint's configuration denied.
    let view = FleetView::new(
        Arc::new(
            backend_at(&server.url())
                .await
                .with_budget(RequestBudget::unlimited()),
        ),
        FleetConfig::default(),
    );
    server.declare_endpoint("private", "AllTraffic", "ml.g4dn.xlarge");
    server.account.lock().unwrap().faults.push(
        asyncscale_sim::Fault::on("DescribeEndpointConfig").failing("AccessDeniedException", 400),
    );
    // e0's configuration is denied too, so its resource fails on its own read...
    let e0 = apply(&view, &spec("e0", ""), &[]).await;
    assert!(
        matches!(&e0.outcome, SyncOutcome::ObserveFailed(m) if m.contains("AccessDenied")),
        "{:?}",
        e0.outcome
    );
    // ...but the refresh itself stood: the endpoints are in the picture.
    assert!(view.describe_endpoint("late").await.unwrap().is_some());
}

/// A fleet view of `backend` that refreshes (and sweeps the policies) every `every`.
fn refreshing_every(backend: SdkBackend, every: Duration) -> Arc<FleetView> {
    Arc::new(FleetView::new(
        Arc::new(backend),
        FleetConfig {
            refresh_every: every,
            policy_refresh_every: 1,
            read_backlog_alarms: false,
        },
    ))
}

/// A refresh that hangs (a slow ListEndpoints) does not let the old picture pass for a fresh one:
/// once it has run an interval and a grace, reads fail until it ends (the break-test's repro kept
/// Ready on a picture 146 s old).
#[tokio::test]
async fn a_hung_refresh_makes_reads_fail_once_the_picture_is_overdue() {
    let (server, backend) = account(8).await;
    server.declare_endpoint("e0", "AllTraffic", "ml.g4dn.xlarge");
    let every = Duration::from_millis(200);
    let view = refreshing_every(backend, every);
    assert!(view.describe_endpoint("e0").await.unwrap().is_some());
    server.account.lock().unwrap().faults.push(
        asyncscale_sim::Fault::on("ListEndpoints")
            .times(1)
            .delayed(8.0),
    );
    tokio::time::sleep(every).await;
    // This read starts the refresh, which hangs on ListEndpoints.
    let refreshing = tokio::spawn({
        let view = view.clone();
        async move { view.describe_endpoint("e0").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Within the bound the old picture serves...
    assert!(view.describe_endpoint("e0").await.is_ok());
    // ...past it (2 × 200 ms and the least grace, 5 s), reads fail.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let error = view.describe_endpoint("e0").await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::RefreshOverdue, "{error}");
    assert!(
        refreshing.await.unwrap().is_ok(),
        "the refresh ends and serves"
    );
}

/// After an idle spell longer than the overdue bound (a standby that takes the Lease back), the
/// first refresh has just started when the other reconciles read: they wait for it, and AWS is
/// not reported unreachable for a picture that is old only because nobody asked.
#[tokio::test]
async fn a_refresh_that_just_started_after_an_idle_spell_is_waited_for_not_overdue() {
    let (server, backend) = account(8).await;
    server.declare_endpoint("e0", "AllTraffic", "ml.g4dn.xlarge");
    let every = Duration::from_millis(200);
    let view = refreshing_every(backend, every);
    assert!(view.describe_endpoint("e0").await.unwrap().is_some());
    // Idle past two intervals and the least grace (5.4 s): no read, no refresh.
    tokio::time::sleep(Duration::from_millis(5600)).await;
    // The refresh the next read starts takes a second (a slow ListEndpoints, not a hung one).
    server.account.lock().unwrap().faults.push(
        asyncscale_sim::Fault::on("ListEndpoints")
            .times(1)
            .delayed(1.0),
    );
    let refreshing = tokio::spawn({
        let view = view.clone();
        async move { view.describe_endpoint("e0").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let read = view.describe_endpoint("e0").await;
    assert!(
        matches!(read, Ok(Some(_))),
        "waits for the refresh that just started: {read:?}"
    );
    assert_eq!(view.stats().refreshes, 2, "and reads what it found");
    assert!(refreshing.await.unwrap().is_ok());
}

/// Raising one endpoint's minimum moves the split, but its raise waits for the other's
/// MaxCapacity to be lowered first (the second break-test's repro: 1 + 2 held and (3,3) written
/// before (1,2) was lowered made 5 of 4 for a few seconds, and scale-outs failed).
#[tokio::test]
async fn a_raise_waits_until_the_others_are_lowered() {
    let (server, backend) = account(4).await;
    raise_waits(&server, &backend).await;
    // The same through a fleet view, which knows the others' MaxCapacity from its picture and
    // its own writes, without reading AWS.
    let (server, backend) = account(4).await;
    let view = unrefreshed_view(backend);
    raise_waits(&server, &view).await;
}

/// A resource being deleted no longer shares, but its target stays until its cleanup
/// deregisters it: the share it frees is raised into only once that target is gone (a soak saw
/// a raise 1.4 s before the deleted one's deregistration, one over the quota meanwhile).
#[tokio::test]
async fn a_raise_into_a_deleted_resources_share_waits_for_its_target_to_go() {
    let (server, backend) = account(4).await;
    declare(&server, &[("a", 0), ("b", 0)]);
    let specs = vec![spec("a", ""), spec("b", "")];
    for i in 0..2 {
        let report = apply(&backend, &specs[i], &peers_in_one_place(&specs[i], &specs)).await;
        assert_eq!(report.status.effective_max_capacity, Some(2));
    }
    // b is being deleted: a's share is now the whole quota, but b's MaxCapacity 2 is in AWS.
    let here = asyncscale_engine::Place {
        account: None,
        region: "us-east-1".into(),
    };
    let departing =
        asyncscale_engine::departing_quota_peers(&specs[0], &here, [(&specs[1], &here)]);
    let a = apply(&backend, &specs[0], &departing).await;
    let (_, clamped) = condition(&a, "QuotaClamped");
    assert!(
        clamped.contains("held at 2 for now, until AWS holds the lowering of endpoint/b/variant/AllTraffic (being deleted: MaxCapacity 2 in AWS until its target is deregistered)"),
        "{clamped}"
    );
    assert_eq!(a.status.effective_max_capacity, Some(2));
    // b's cleanup deregisters its target: a may take the whole quota.
    backend
        .deregister_target("endpoint/b/variant/AllTraffic")
        .await
        .unwrap();
    let a = apply(&backend, &specs[0], &departing).await;
    assert_eq!(a.outcome, SyncOutcome::InSync, "{:?}", a.status);
    assert_eq!(a.status.effective_max_capacity, Some(4));
}

/// The read of a departing peer's MaxCapacity failing in each way AWS fails, once or on every
/// attempt: the raise into its share waits (or the reconcile fails), and never lands while the
/// peer's target still reserves.
#[tokio::test]
async fn a_failed_read_of_a_departing_peers_target_raises_nothing() {
    for failure in asyncscale_sim::failures::Failure::all(2.5) {
        let (server, backend) = account(4).await;
        declare(&server, &[("a", 0), ("b", 0)]);
        let specs = vec![spec("a", ""), spec("b", "")];
        for s in &specs {
            apply(&backend, s, &peers_in_one_place(s, &specs)).await;
        }
        let here = asyncscale_engine::Place {
            account: None,
            region: "us-east-1".into(),
        };
        let departing =
            asyncscale_engine::departing_quota_peers(&specs[0], &here, [(&specs[1], &here)]);
        // Only the read of b's target fails; a's own reads go through.
        server.account.lock().unwrap().faults.push(
            failure
                .fault("application-autoscaling", "DescribeScalableTargets", 0)
                .when(
                    "ResourceIds",
                    serde_json::json!(["endpoint/b/variant/AllTraffic"]),
                ),
        );
        let a = apply(&backend, &specs[0], &departing).await;
        server.account.lock().unwrap().faults.clear();
        let held = backend_at(&server.url())
            .await
            .max_capacities(&[
                "endpoint/a/variant/AllTraffic".to_string(),
                "endpoint/b/variant/AllTraffic".to_string(),
            ])
            .await
            .unwrap();
        assert_eq!(
            held,
            [Some(2), Some(2)],
            "{}: a raised past b's reservation: {:?}",
            failure.label(),
            a.status
        );
    }
}

/// An endpoint deleted behind asyncscale's back (its target goes with it, as in AWS) keeps its
/// share while its resource lives. It comes back holding an instance (SageMaker creates none with
/// fewer), so a raise of the others into its room put the caps over the quota once it returned,
/// for as long as reading it took (the soak found it while SageMaker reads hung).
#[tokio::test]
async fn an_endpoint_deleted_by_hand_keeps_its_share_while_its_resource_lives() {
    let (server, backend) = account(4).await;
    declare(&server, &[("a", 0), ("b", 0)]);
    let specs = vec![spec("a", ""), spec("b", "")];
    for s in &specs {
        let report = apply(&backend, s, &peers_in_one_place(s, &specs)).await;
        assert_eq!(report.status.effective_max_capacity, Some(2));
    }
    server.world.lock().unwrap().remove_endpoint("b");
    backend
        .deregister_target("endpoint/b/variant/AllTraffic")
        .await
        .unwrap();
    // A later run, past the endpoint scan's cache.
    let backend = backend_at(&server.url())
        .await
        .with_budget(RequestBudget::unlimited());
    // b had its target (its status says so): established, it keeps its part.
    let mut peers = peers_in_one_place(&specs[0], &specs);
    peers[0].established = true;
    let a = apply(&backend, &specs[0], &peers).await;
    assert_eq!(a.outcome, SyncOutcome::InSync, "{:?}", a.status);
    assert_eq!(
        a.status.effective_max_capacity,
        Some(2),
        "b's part stays b's: {:?}",
        a.status
    );
    let held = backend
        .max_capacities(&["endpoint/a/variant/AllTraffic".to_string()])
        .await
        .unwrap();
    assert_eq!(held, [Some(2)], "no raise reached AWS");

    // b is created again with an instance: a's cap and b's instance fit the quota, and b's
    // resource takes its part back without waiting for anyone.
    declare(&server, &[("b", 1)]);
    let backend = backend_at(&server.url())
        .await
        .with_budget(RequestBudget::unlimited());
    let b = apply(&backend, &specs[1], &peers_in_one_place(&specs[1], &specs)).await;
    assert_eq!(b.outcome, SyncOutcome::InSync, "{:?}", b.status);
    assert_eq!(b.status.effective_max_capacity, Some(2));
}

/// A brand-new resource whose endpoint is not in the picture yet keeps nothing: its own
/// reconcile reads the endpoint soon, and keeping a share for every creation would move every
/// cap of the quota twice (the soak saw a new resource starve while they moved).
#[tokio::test]
async fn a_new_resource_whose_endpoint_was_never_read_keeps_nothing() {
    let (server, backend) = account(4).await;
    declare(&server, &[("a", 0)]);
    let specs = vec![spec("a", ""), spec("b", "")];
    let peers = peers_in_one_place(&specs[0], &specs);
    assert!(!peers[0].established);
    let a = apply(&backend, &specs[0], &peers).await;
    assert_eq!(a.status.effective_max_capacity, Some(4), "{:?}", a.status);
}

/// A peer that takes no share (its endpoint not read yet) still reserves what its target in AWS
/// holds: a raise waits for that target, whatever the split says.
#[tokio::test]
async fn a_peer_without_a_share_still_reserves_its_targets_max_capacity() {
    let (server, backend) = account(4).await;
    declare(&server, &[("a", 0), ("b", 0)]);
    let specs = vec![spec("a", ""), spec("b", "")];
    for s in &specs {
        apply(&backend, s, &peers_in_one_place(s, &specs)).await;
    }
    // b's endpoint is gone from the listing, its target (MaxCapacity 2) is not.
    server.world.lock().unwrap().remove_endpoint("b");
    let backend = backend_at(&server.url())
        .await
        .with_budget(RequestBudget::unlimited());
    let a = apply(&backend, &specs[0], &peers_in_one_place(&specs[0], &specs)).await;
    assert_eq!(a.status.effective_max_capacity, Some(2), "{:?}", a.status);
}

/// A resource created while another's reconcile ran (after that reconcile read its peers) and
/// raised its target since: the other's raise counts its MaxCapacity, read again under the
/// quota's lock. A soak saw the peers read 3 s before the raise, at a controller's start: the
/// later resource's 2 were not reserved, and the caps stood at 15 of 13 until the next lowerings.
#[tokio::test]
async fn a_peer_created_during_a_reconcile_is_counted_by_its_raise() {
    let (server, backend) = account(6).await;
    late_peer_is_counted(&server, &backend).await;
    // The same through a fleet view, which knows c's MaxCapacity from its own write.
    let (server, backend) = account(6).await;
    let view = unrefreshed_view(backend);
    late_peer_is_counted(&server, &view).await;
}

async fn late_peer_is_counted(server: &SimServer, backend: &dyn AutoscalingBackend) {
    declare(server, &[("a", 0), ("b", 0), ("c", 0)]);
    let specs = vec![spec("a", ""), spec("b", ""), spec("c", "")];
    // a and b are the resources there are; c's endpoint exists, its resource does not yet.
    let first = &specs[..2];
    let a = apply(backend, &specs[0], &peers_in_one_place(&specs[0], first)).await;
    assert_eq!(a.status.effective_max_capacity, Some(3));
    // b's reconcile reads its peers (a alone), then c is created and raised (into what is left
    // beside a's 3: 2, its share of three)...
    let b_peers = peers_in_one_place(&specs[1], first);
    let c = apply(backend, &specs[2], &peers_in_one_place(&specs[2], &specs)).await;
    assert_eq!(c.status.effective_max_capacity, Some(2));
    // ... and b's raise comes: only 1 is left, and the reason names c.
    let now = || peers_in_one_place(&specs[1], &specs);
    let b = apply_with(backend, &specs[1], &b_peers, Some(&now)).await;
    assert_eq!(b.status.effective_max_capacity, Some(1), "{:?}", b.status);
    let (_, clamped) = condition(&b, "QuotaClamped");
    assert!(
        clamped.contains("endpoint/c/variant/AllTraffic (new to this quota during this reconcile: MaxCapacity 2 in AWS"),
        "{clamped}"
    );
    let (sum, state) = caps_sum(server);
    assert_eq!(sum, 6, "{state}");
}

/// The read of a late peer's MaxCapacity failing in each way AWS fails (throttled, 500, access
/// denied, not found, held past the call timeout): the raise that needs it goes no further than
/// what is known to be free, and never over the quota.
#[tokio::test]
async fn a_failed_read_of_a_late_peers_target_raises_nothing() {
    for failure in asyncscale_sim::failures::Failure::all(2.5) {
        let (server, backend) = account(6).await;
        declare(&server, &[("a", 0), ("b", 0), ("c", 0)]);
        let specs = vec![spec("a", ""), spec("b", ""), spec("c", "")];
        let first = &specs[..2];
        apply(&backend, &specs[0], &peers_in_one_place(&specs[0], first)).await;
        let b_peers = peers_in_one_place(&specs[1], first);
        apply(&backend, &specs[2], &peers_in_one_place(&specs[2], &specs)).await;
        let fault = failure
            .fault("application-autoscaling", "DescribeScalableTargets", 0)
            .when(
                "ResourceIds",
                serde_json::json!(["endpoint/c/variant/AllTraffic"]),
            );
        let count = fault.count;
        server.account.lock().unwrap().faults.push(fault);
        let now = || peers_in_one_place(&specs[1], &specs);
        let b = apply_with(&backend, &specs[1], &b_peers, Some(&now)).await;
        let left = support::first_fault_left(&server);
        server.account.lock().unwrap().faults.clear();
        assert!(
            left.is_none_or(|left| left < count),
            "{}: the late read met its fault",
            failure.label()
        );
        let (sum, _) = caps_sum(&server);
        assert!(
            sum <= 6,
            "{}: caps {sum} of 6: {:?}",
            failure.label(),
            b.status
        );
    }
}

/// A fleet view that refreshes once: it knows the others' MaxCapacity from that picture and its
/// own writes, without reading AWS again.
fn unrefreshed_view(backend: SdkBackend) -> FleetView {
    FleetView::new(
        Arc::new(backend),
        FleetConfig {
            refresh_every: Duration::from_secs(3600),
            policy_refresh_every: 1,
            read_backlog_alarms: false,
        },
    )
}

/// The peers of `spec` among `specs`, all in one account and region.
fn peers_in_one_place(
    spec: &AsyncEndpointScalingSpec,
    specs: &[AsyncEndpointScalingSpec],
) -> Vec<QuotaPeer> {
    let here = asyncscale_engine::Place {
        account: None,
        region: "us-east-1".into(),
    };
    quota_peers(spec, &here, specs.iter().map(|o| (o, &here)))
}

async fn raise_waits(server: &SimServer, backend: &dyn AutoscalingBackend) {
    declare(server, &[("a", 1), ("b", 1)]);
    let mut specs = vec![spec("a", ", minCapacity: 1"), spec("b", ", minCapacity: 1")];
    let peers_of =
        |specs: &[AsyncEndpointScalingSpec], i: usize| peers_in_one_place(&specs[i], specs);
    for i in 0..2 {
        let report = apply(backend, &specs[i], &peers_of(&specs, i)).await;
        assert_eq!(report.status.effective_max_capacity, Some(2));
    }
    specs[1] = spec("b", ", minCapacity: 3");
    let max_sum = |server: &SimServer| -> i64 {
        let state = server.account.lock().unwrap().snapshot("us-east-1");
        ["a", "b"]
            .iter()
            .map(|n| {
                state["ScalableTargets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|t| t["ResourceId"] == format!("endpoint/{n}/variant/AllTraffic"))
                    .map_or(0, |t| t["MaxCapacity"].as_i64().unwrap())
            })
            .sum()
    };
    let b = apply(backend, &specs[1], &peers_of(&specs, 1)).await;
    assert!(
        matches!(&b.outcome, SyncOutcome::WaitingForQuota(m) if m.contains("until AWS holds the lowering of endpoint/a/variant/AllTraffic")),
        "{:?}",
        b.outcome
    );
    assert!(max_sum(server) <= 4);
    let a = apply(backend, &specs[0], &peers_of(&specs, 0)).await;
    assert_eq!(a.status.effective_max_capacity, Some(1));
    let b = apply(backend, &specs[1], &peers_of(&specs, 1)).await;
    assert_eq!(b.outcome, SyncOutcome::InSync, "{:?}", b.status);
    assert_eq!(b.status.effective_max_capacity, Some(3));
    assert!(max_sum(server) <= 4);
}

/// Each SageMaker read failing alone (throttled past the SDK's retries, 500, not found) never
/// weakens what is in AWS: no cap is raised on a guess, nothing is written.
#[tokio::test]
async fn each_sagemaker_read_failing_alone_writes_nothing() {
    let cases = [
        ("DescribeEndpoint", "ThrottlingException", 400, None),
        ("DescribeEndpoint", "InternalFailure", 500, None),
        ("DescribeEndpointConfig", "ThrottlingException", 400, None),
        ("DescribeEndpointConfig", "InternalFailure", 500, None),
        (
            "DescribeEndpointConfig",
            "ValidationException",
            400,
            Some("Could not find endpoint configuration \"x\"."),
        ),
        ("ListEndpoints", "ThrottlingException", 400, None),
        ("ListEndpoints", "InternalFailure", 500, None),
    ];
    for (operation, code, status, message) in cases {
        let (server, backend) = account(4).await;
        declare(&server, &[("a", 0), ("b", 0)]);
        let specs = [spec("a", ""), spec("b", "")];
        let peers_of = |s: &AsyncEndpointScalingSpec| peers_in_one_place(s, &specs);
        for s in &specs {
            assert_eq!(
                apply(&backend, s, &peers_of(s)).await.outcome,
                SyncOutcome::InSync
            );
        }
        let before =
            server.account.lock().unwrap().snapshot("us-east-1")["ScalableTargets"].clone();
        server
            .account
            .lock()
            .unwrap()
            .faults
            .push(asyncscale_sim::Fault {
                message: message.map(str::to_string),
                ..asyncscale_sim::Fault::on(operation).failing(code, status)
            });
        // A new run: nothing cached.
        let fresh = backend_at(&server.url())
            .await
            .with_budget(RequestBudget::unlimited());
        let writes = fresh.calls().writes();
        for s in &specs {
            let report = apply(&fresh, s, &peers_of(s)).await;
            assert_ne!(
                report.outcome,
                SyncOutcome::ChangesPending(0),
                "{operation}"
            );
        }
        assert_eq!(
            fresh.calls().writes(),
            writes,
            "{operation} {code}: nothing written"
        );
        let after = server.account.lock().unwrap().snapshot("us-east-1")["ScalableTargets"].clone();
        assert_eq!(before, after, "{operation} {code}: AWS unchanged");
    }
}

/// The sum of every target's MaxCapacity in AWS, with the account's state for the message.
fn caps_sum(server: &asyncscale_sim::SimServer) -> (i64, serde_json::Value) {
    let state = server.account.lock().unwrap().snapshot("us-east-1");
    let sum = state["ScalableTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["MaxCapacity"].as_i64().unwrap())
        .sum();
    (sum, state)
}
