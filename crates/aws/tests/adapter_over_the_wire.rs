//! Every call of the SDK adapter, over HTTP against the local AWS endpoint (`asyncscale-sim`),
//! with the real AWS SDK clients and wire protocols (JSON 1.1, Smithy RPC v2 CBOR).

use asyncscale_aws::SdkBackend;
use asyncscale_core::*;
use asyncscale_engine::{AutoscalingBackend, CallCounter, ErrorClass, ErrorKind};

mod support;
use asyncscale_sim::{Activity, QuotaTable, SimServer};
use aws_config::BehaviorVersion;
use aws_sdk_applicationautoscaling::config::Credentials;
use support::{backend_at, backend_in, desired};

const RID: &str = "endpoint/sdxl-async/variant/AllTraffic";

async fn setup(quotas: QuotaTable) -> (SimServer, SdkBackend) {
    let server = asyncscale_sim::start("127.0.0.1:0".parse().unwrap(), quotas)
        .await
        .unwrap();
    let backend = backend_at(&server.url()).await;
    (server, backend)
}

fn target(min: i32, max: i32) -> ScalableTarget {
    ScalableTarget {
        resource_id: RID.into(),
        min_capacity: min,
        max_capacity: max,
        suspended: SuspendedState::default(),
    }
}

#[tokio::test]
async fn scalable_target_register_describe_tag_untag_deregister() {
    let (_server, aws) = setup(QuotaTable::default()).await;
    assert_eq!(aws.describe_target(RID).await.unwrap(), None);
    let tags = Owner {
        namespace: "ml".into(),
        name: "sdxl".into(),
        uid: Some("u1".into()),
    }
    .tags();
    let arn = aws
        .register_target(&target(0, 4), Some(&tags))
        .await
        .unwrap();
    assert!(
        arn.starts_with("arn:aws:application-autoscaling:us-east-1:"),
        "{arn}"
    );

    let mut suspended = target(1, 6);
    suspended.suspended = SuspendedState::all(true);
    assert_eq!(
        aws.register_target(&suspended, None).await.unwrap(),
        arn,
        "update keeps the ARN"
    );
    let seen = aws.describe_target(RID).await.unwrap().unwrap();
    assert_eq!(seen.target, suspended);
    assert_eq!(seen.arn.as_deref(), Some(arn.as_str()));
    assert_eq!(
        aws.target_tags(&arn).await.unwrap(),
        tags,
        "tags from creation survive the update"
    );

    let extra = Tags::from([("team".to_string(), "ml".to_string())]);
    aws.tag_target(&arn, &extra).await.unwrap();
    aws.untag_target(&arn, &["asyncscale.io/owner-uid".to_string()])
        .await
        .unwrap();
    let tags_now = aws.target_tags(&arn).await.unwrap();
    assert_eq!(tags_now.get("team").map(String::as_str), Some("ml"));
    assert!(!tags_now.contains_key("asyncscale.io/owner-uid"));

    let bad = aws.register_target(&target(5, 2), None).await.unwrap_err();
    assert_eq!(
        (bad.class, bad.kind),
        (
            ErrorClass::Terminal,
            ErrorKind::Aws("ValidationException".into())
        )
    );

    aws.deregister_target(RID).await.unwrap();
    assert_eq!(aws.describe_target(RID).await.unwrap(), None);
    let gone = aws.deregister_target(RID).await.unwrap_err();
    assert_eq!(
        (gone.class, gone.kind),
        (
            ErrorClass::NotFound,
            ErrorKind::Aws("ObjectNotFoundException".into())
        )
    );
}

#[tokio::test]
async fn policies_round_trip_exactly_and_keep_their_arn() {
    let (_server, aws) = setup(QuotaTable::default()).await;
    let d = desired("{targetValue: 7.5, disableScaleIn: true}");
    let orphan = aws.put_policy(&d.target_tracking).await.unwrap_err();
    assert_eq!(
        (orphan.class, orphan.kind),
        (
            ErrorClass::NotFound,
            ErrorKind::Aws("ObjectNotFoundException".into())
        )
    );
    assert!(
        orphan
            .message
            .starts_with("No scalable target registered for service namespace: sagemaker"),
        "{}",
        orphan.message
    );

    aws.register_target(&d.target, None).await.unwrap();
    let tt_arn = aws.put_policy(&d.target_tracking).await.unwrap();
    let step = &d.scale_from_zero.as_ref().unwrap().policy;
    let step_arn = aws.put_policy(step).await.unwrap();
    assert!(step_arn.contains(":resource/sagemaker/endpoint/sdxl-async/variant/AllTraffic:policyName/asyncscale-scale-from-zero"), "{step_arn}");

    let seen = aws.describe_policies(RID).await.unwrap();
    let by_name = |n: &str| seen.iter().find(|p| p.policy.name == n).unwrap().clone();
    assert_eq!(
        by_name(&d.target_tracking.name).policy,
        d.target_tracking,
        "what we read equals what we wrote"
    );
    assert_eq!(by_name(&step.name).policy, *step);
    assert_eq!(by_name(&step.name).arn, step_arn);

    let mut changed = d.target_tracking.clone();
    if let PolicyConfig::TargetTracking(tt) = &mut changed.config {
        tt.target_value = 12.0;
    }
    assert_eq!(
        aws.put_policy(&changed).await.unwrap(),
        tt_arn,
        "an update keeps the policy ARN"
    );

    aws.delete_policy(RID, &step.name).await.unwrap();
    let missing = aws.delete_policy(RID, &step.name).await.unwrap_err();
    assert_eq!(missing.class, ErrorClass::NotFound);
}

#[tokio::test]
async fn describe_policies_follows_every_page() {
    let (_server, aws) = setup(QuotaTable::default()).await;
    let d = desired("{targetValue: 7.5, disableScaleIn: true}");
    aws.register_target(&d.target, None).await.unwrap();
    for i in 0..23 {
        let mut p = d.scale_from_zero.as_ref().unwrap().policy.clone();
        p.name = format!("policy-{i:02}");
        aws.put_policy(&p).await.unwrap();
    }
    let before = aws.calls().count(|op| op == "DescribeScalingPolicies");
    assert_eq!(aws.describe_policies(RID).await.unwrap().len(), 23);
    let pages = aws.calls().count(|op| op == "DescribeScalingPolicies") - before;
    assert_eq!(pages, 3, "AWS pages policies ten at a time");
}

#[tokio::test]
async fn alarms_over_cbor_round_trip_keep_state_and_take_tags_only_on_create() {
    let (server, aws) = setup(QuotaTable::default()).await;
    let d = desired("{targetValue: 7.5, disableScaleIn: true}");
    let sfz = d.scale_from_zero.as_ref().unwrap();
    let alarm = sfz.alarm_with_action("arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:x");
    assert_eq!(aws.describe_alarm(&alarm.name).await.unwrap(), None);
    aws.put_alarm(&alarm, &d.owner.tags()).await.unwrap();
    let seen = aws.describe_alarm(&alarm.name).await.unwrap().unwrap();
    assert_eq!(seen.alarm, alarm, "what we read equals what we wrote");
    assert_eq!(seen.state.as_deref(), Some("INSUFFICIENT_DATA"));
    assert!(
        seen.arn
            .unwrap()
            .ends_with(&format!(":alarm:{}", alarm.name))
    );

    let mut updated = alarm.clone();
    updated.evaluation_periods = 3;
    aws.put_alarm(&updated, &Tags::from([("other".into(), "x".into())]))
        .await
        .unwrap();
    assert_eq!(
        aws.describe_alarm(&alarm.name)
            .await
            .unwrap()
            .unwrap()
            .alarm
            .evaluation_periods,
        3
    );
    let state = server.account.lock().unwrap().snapshot("us-east-1");
    let tags = &state["MetricAlarms"][0]["Tags"];
    assert_eq!(tags["asyncscale.io/owner"], "ml/sdxl");
    assert!(
        tags.get("other").is_none(),
        "CloudWatch ignores tags on update"
    );

    let mut bad = alarm.clone();
    bad.period = 45;
    let err = aws.put_alarm(&bad, &Tags::new()).await.unwrap_err();
    assert_eq!(
        (err.class, err.kind),
        (
            ErrorClass::Terminal,
            ErrorKind::Aws("InvalidParameterValue".into())
        )
    );

    aws.delete_alarm(&alarm.name).await.unwrap();
    assert_eq!(aws.describe_alarm(&alarm.name).await.unwrap(), None);
    let err = aws.delete_alarm(&alarm.name).await.unwrap_err();
    assert_eq!(
        (err.class, err.kind),
        (
            ErrorClass::NotFound,
            ErrorKind::Aws("ResourceNotFound".into())
        )
    );
}

#[tokio::test]
async fn activities_come_newest_first_with_aws_messages() {
    let (server, aws) = setup(QuotaTable::default()).await;
    let message = "Failed to set desired instance count to 20. Reason: The account-level service limit 'ml.g4dn.xlarge for endpoint usage' is 4 Instances, with current utilization of 1 Instances and a request delta of 19 Instances. Please contact AWS support to request an increase for this limit. (Service: AmazonSageMaker; Status Code: 400; Error Code: ResourceLimitExceeded; Request ID: r-1).";
    for (t, code, msg) in [
        (
            1_700_000_000.0,
            "Successful",
            "Successfully set desired instance count to 1. Change successfully fulfilled by sagemaker.",
        ),
        (1_700_000_600.0, "Failed", message),
    ] {
        server.account.lock().unwrap().add_activity(Activity {
            activity_id: String::new(),
            service_namespace: "sagemaker".into(),
            resource_id: RID.into(),
            scalable_dimension: "sagemaker:variant:DesiredInstanceCount".into(),
            description: "Setting desired instance count to 20.".into(),
            cause: "monitor alarm TargetTracking-x-AlarmHigh-1 in state ALARM triggered policy asyncscale-target-tracking".into(),
            start_time: t,
            end_time: None,
            status_code: code.into(),
            status_message: Some(msg.into()),
            not_scaled_reasons: None,
        });
    }
    let activities = aws.recent_activities(RID, 5).await.unwrap();
    assert_eq!(activities.len(), 2);
    assert_eq!(activities[0].status_code, "Failed");
    assert_eq!(activities[0].status_message.as_deref(), Some(message));
    assert_eq!(activities[0].start_time, "2023-11-14T22:23:20Z");
}

#[tokio::test]
async fn quota_applied_then_default_then_unknown_with_codes_found_by_name() {
    let quotas =
        asyncscale_sim::quota_table(&["ml.g4dn.xlarge=4".into()], &["ml.g5.xlarge=2".into()])
            .unwrap();
    let (_server, aws) = setup(quotas).await;
    let QuotaLookup::Known(applied) = aws.instance_quota("ml.g4dn.xlarge").await.lookup else {
        panic!("applied quota")
    };
    assert_eq!(
        (applied.code.as_str(), applied.value, applied.source),
        ("L-B67CFA0C", 4.0, QuotaSource::Applied)
    );
    let QuotaLookup::Known(default) = aws.instance_quota("ml.g5.xlarge").await.lookup else {
        panic!("default quota")
    };
    assert_eq!(
        (default.code.as_str(), default.value, default.source),
        ("L-1928E07B", 2.0, QuotaSource::Default)
    );
    // Every real type has an AWS default (often 0); a type SageMaker does not have has no quota.
    let QuotaLookup::Known(zero) = aws.instance_quota("ml.p4d.24xlarge").await.lookup else {
        panic!("a default exists")
    };
    assert_eq!((zero.value, zero.source), (0.0, QuotaSource::Default));
    let QuotaLookup::Unknown { name, reason } = aws.instance_quota("ml.zz9.xlarge").await.lookup
    else {
        panic!("unknown")
    };
    assert_eq!(name, "ml.zz9.xlarge for endpoint usage");
    assert!(reason.contains("no Service Quota named"), "{reason}");

    let gets_before = aws.calls().count(|op| op == "GetServiceQuota");
    aws.instance_quota("ml.g4dn.xlarge").await;
    let gets_after = aws.calls().count(|op| op == "GetServiceQuota");
    assert_eq!(
        gets_before, gets_after,
        "a quota value read moments ago is not read again"
    );

    let lists_before = aws.calls().count(|op| op.starts_with("List"));
    aws.instance_quota("ml.g4dn.xlarge").await;
    let lists_after = aws.calls().count(|op| op.starts_with("List"));
    assert_eq!(
        lists_before, lists_after,
        "the quota code is cached after the first lookup"
    );
}

#[tokio::test]
async fn quota_codes_are_found_across_pages() {
    let mut applied: Vec<String> = (0..180)
        .map(|i| format!("ml.fake{i:03}.xlarge=1"))
        .collect();
    applied.push("ml.zz.xlarge=3".into());
    let quotas = asyncscale_sim::quota_table(&applied, &[]).unwrap();
    let (_server, aws) = setup(quotas).await;
    let QuotaLookup::Known(q) = aws.instance_quota("ml.zz.xlarge").await.lookup else {
        panic!("found on a later page")
    };
    assert_eq!(q.value, 3.0);
    let pages: u64 = aws.calls().count(|op| op == "ListServiceQuotas");
    assert_eq!(pages, 2);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_recoverable() {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region("us-east-1")
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let aws = SdkBackend::from_config(&config, CallCounter::default()).unwrap();
    let err = aws.describe_target(RID).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Recoverable, "{err}");
    let QuotaLookup::Unknown { .. } = aws.instance_quota("ml.g4dn.xlarge").await.lookup else {
        panic!("quota cannot be read")
    };
}

#[tokio::test]
async fn the_newest_activity_is_chosen_by_time_not_by_its_text() {
    let (server, aws) = setup(QuotaTable::default()).await;
    // As text, "…:38.5Z" sorts after "…:38.52Z"; in time it is older.
    for (t, code) in [
        (1_700_000_018.5, "Successful"),
        (1_700_000_018.52, "Failed"),
    ] {
        server.account.lock().unwrap().add_activity(Activity {
            activity_id: String::new(),
            service_namespace: "sagemaker".into(),
            resource_id: RID.into(),
            scalable_dimension: "sagemaker:variant:DesiredInstanceCount".into(),
            description: "Setting desired instance count to 2.".into(),
            cause: String::new(),
            start_time: t,
            end_time: None,
            status_code: code.into(),
            status_message: None,
            not_scaled_reasons: None,
        });
    }
    let activities = aws.recent_activities(RID, 5).await.unwrap();
    assert_eq!(activities[0].status_code, "Failed", "{activities:#?}");
}

#[tokio::test]
async fn each_region_holds_its_own_configuration() {
    let (server, east) = setup(QuotaTable::default()).await;
    let west = backend_in(&server.url(), "eu-west-1").await;
    east.register_target(&target(0, 4), None).await.unwrap();
    assert!(east.describe_target(RID).await.unwrap().is_some());
    assert_eq!(
        west.describe_target(RID).await.unwrap(),
        None,
        "like AWS: per region"
    );
    west.register_target(&target(1, 2), None).await.unwrap();
    let east_max = east
        .describe_target(RID)
        .await
        .unwrap()
        .unwrap()
        .target
        .max_capacity;
    assert_eq!(east_max, 4);

    // ARNs carry the region's partition (GovCloud: aws-us-gov), and tag calls accept them.
    let gov = backend_in(&server.url(), "us-gov-west-1").await;
    let arn = gov.register_target(&target(0, 2), None).await.unwrap();
    assert!(
        arn.starts_with("arn:aws-us-gov:application-autoscaling:us-gov-west-1:"),
        "{arn}"
    );
    let tags = Tags::from([("k".to_string(), "v".to_string())]);
    gov.tag_target(&arn, &tags).await.unwrap();
    assert_eq!(gov.target_tags(&arn).await.unwrap(), tags);
}

#[tokio::test]
async fn a_failed_quota_refresh_serves_the_last_value_read() {
    let quotas = asyncscale_sim::quota_table(&["ml.g4dn.xlarge=4".into()], &[]).unwrap();
    let (server, aws) = setup(quotas).await;
    let aws = aws.with_quota_ttl(std::time::Duration::ZERO);
    assert!(matches!(
        aws.instance_quota("ml.g4dn.xlarge").await.lookup,
        QuotaLookup::Known(_)
    ));
    server.account.lock().unwrap().faults.push(
        asyncscale_sim::Fault::on("GetServiceQuota").failing("TooManyRequestsException", 400),
    );
    let reading = aws.instance_quota("ml.g4dn.xlarge").await;
    let QuotaLookup::Stale { quota, reason } = &reading.lookup else {
        panic!("the last value stays: {reading:?}")
    };
    assert_eq!(quota.value, 4.0);
    assert!(reason.contains("TooManyRequestsException"), "{reason}");
    assert_eq!(
        reading.error.map(|e| e.class),
        Some(ErrorClass::Recoverable)
    );
    // The failure is remembered for a moment: a fleet does not hammer Service Quotas.
    let gets = aws.calls().count(|op| op == "GetServiceQuota");
    aws.instance_quota("ml.g4dn.xlarge").await;
    assert_eq!(aws.calls().count(|op| op == "GetServiceQuota"), gets);
}

/// The quota is read once per instance type at each re-read, whoever asks: the reconciles that
/// find it expired together share one GetServiceQuota, and a quota at AWS's default (no applied
/// value, already answered twice) is not asked twice again. Counted by the local endpoint.
#[tokio::test]
async fn a_quota_re_read_is_one_call_per_quota_however_many_reconciles_ask() {
    let quotas =
        asyncscale_sim::quota_table(&["ml.g4dn.xlarge=4".into()], &["ml.g5.xlarge=2".into()])
            .unwrap();
    let (server, aws) = setup(quotas).await;
    let ttl = std::time::Duration::from_millis(300);
    let aws = aws.with_quota_ttl(ttl);
    let answered = |operation: &str| {
        server.account.lock().unwrap().calls["service-quotas"]
            .get(operation)
            .copied()
            .unwrap_or(0)
    };
    let (applied, default) = ("ml.g4dn.xlarge", "ml.g5.xlarge");
    for instance_type in [applied, default] {
        let reading = aws.instance_quota(instance_type).await;
        assert!(
            matches!(reading.lookup, QuotaLookup::Known(_)),
            "{reading:?}"
        );
    }
    // The first read of a quota without an applied value asks twice before taking the default.
    assert_eq!(answered("GetServiceQuota"), 1 + 2);
    assert_eq!(answered("GetAWSDefaultServiceQuota"), 1);

    tokio::time::sleep(ttl).await;
    // Each read takes a moment, as over a real network, so that the readers overlap.
    server.account.lock().unwrap().faults.push(
        asyncscale_sim::Fault::on("GetServiceQuota")
            .times(2)
            .delayed(0.2),
    );
    let readings = tokio::join!(
        aws.instance_quota(applied),
        aws.instance_quota(default),
        aws.instance_quota(applied),
        aws.instance_quota(default),
        aws.instance_quota(applied),
        aws.instance_quota(default),
    );
    let readings = [
        readings.0, readings.1, readings.2, readings.3, readings.4, readings.5,
    ];
    for reading in &readings {
        assert!(
            matches!(&reading.lookup, QuotaLookup::Known(q) if q.value == 4.0 || q.value == 2.0),
            "{reading:?}"
        );
        assert!(reading.error.is_none());
    }
    assert_eq!(
        answered("GetServiceQuota"),
        3 + 2,
        "one GetServiceQuota per quota at the re-read"
    );
    assert_eq!(answered("GetAWSDefaultServiceQuota"), 1 + 1);
}

/// The fleet view's bulk reads: every target, policy and alarm of the namespace across pages
/// (50, 10 and 100 a page), and activities newest first with their resource ids.
#[tokio::test]
async fn bulk_reads_cover_the_namespace_across_pages() {
    let (server, aws) = setup(QuotaTable::default()).await;
    let resource_ids: Vec<String> = (0..60)
        .map(|i| format!("endpoint/ep-{i:02}/variant/AllTraffic"))
        .collect();
    let d = desired("{targetValue: 5}");
    for id in &resource_ids {
        aws.register_target(
            &ScalableTarget {
                resource_id: id.clone(),
                ..target(0, 4)
            },
            None,
        )
        .await
        .unwrap();
    }
    for id in resource_ids.iter().take(12) {
        let mut policy = d.target_tracking.clone();
        policy.resource_id = id.clone();
        aws.put_policy(&policy).await.unwrap();
    }
    let mut targets = Vec::new();
    let mut next = None;
    let mut pages = 0;
    loop {
        let page = aws.list_targets(next).await.unwrap();
        pages += 1;
        targets.extend(page.items);
        match page.next {
            Some(token) => next = Some(token),
            None => break,
        }
    }
    assert_eq!(pages, 2, "50 a page");
    let mut seen: Vec<String> = targets.into_iter().map(|t| t.target.resource_id).collect();
    seen.sort();
    assert_eq!(seen, resource_ids);

    let first = aws.list_policies(None).await.unwrap();
    assert_eq!(first.items.len(), 10, "AWS allows 10 policies a page");
    let second = aws.list_policies(first.next).await.unwrap();
    assert_eq!(second.items.len(), 2);
    assert_eq!(second.next, None);

    let alarm_name = ResourceNames::new("ep-00", "AllTraffic").alarm;
    let mut alarm = d.scale_from_zero.as_ref().unwrap().alarm.clone();
    alarm.name = alarm_name.clone();
    aws.put_alarm(&alarm, &Tags::new()).await.unwrap();
    let alarms = aws
        .list_alarms(asyncscale_core::names::ALARM_PREFIX, None)
        .await
        .unwrap();
    assert_eq!(alarms.items.len(), 1);
    assert_eq!(alarms.items[0].alarm.name, alarm_name);

    server.account.lock().unwrap().add_activity(Activity {
        activity_id: String::new(),
        service_namespace: "sagemaker".into(),
        resource_id: resource_ids[3].clone(),
        scalable_dimension: "sagemaker:variant:DesiredInstanceCount".into(),
        description: "Setting desired instance count to 1.".into(),
        cause: "monitor alarm x in state ALARM triggered policy asyncscale-scale-from-zero".into(),
        start_time: 1_700_000_000.0,
        end_time: None,
        status_code: "Successful".into(),
        status_message: None,
        not_scaled_reasons: None,
    });
    let activities = aws.list_activities(None).await.unwrap();
    assert_eq!(activities.items.len(), 1);
    assert_eq!(activities.items[0].0, resource_ids[3]);
}

/// A credentials chain with no source configured, as on a laptop without a profile or a pod
/// without IRSA or Pod Identity.
#[derive(Debug)]
struct NothingConfigured;

impl aws_credential_types::provider::ProvideCredentials for NothingConfigured {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "no providers in chain provided credentials",
            ),
        ))
    }
}

/// Without credentials the SDK sends nothing: the error says so in one line (not the SDK's
/// five-line chain report), it is not counted as an AWS call, and nothing reaches the endpoint.
#[tokio::test]
async fn no_credentials_is_one_line_and_no_aws_call() {
    let server = asyncscale_sim::start("127.0.0.1:0".parse().unwrap(), QuotaTable::default())
        .await
        .unwrap();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region("us-east-1")
        .endpoint_url(server.url())
        .credentials_provider(NothingConfigured)
        .load()
        .await;
    let calls = CallCounter::default();
    let backend = SdkBackend::from_config(&config, calls.clone()).unwrap();
    let error = backend.describe_target(RID).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::NoCredentials);
    assert_eq!(error.class, ErrorClass::Terminal);
    assert!(!error.message.contains('\n'), "{}", error.message);
    assert!(
        error.message.contains("web identity (IRSA)"),
        "{}",
        error.message
    );
    assert_eq!(calls.total(), 0, "never sent, never counted");
    assert!(server.account.lock().unwrap().calls.is_empty());
}

/// The write fence is asked as each attempt is sent, not only before the call: a replica that
/// loses its leadership while AWS answers the first attempt with a 500 sends no retry (the
/// SDK's own retry, inside one call).
#[tokio::test]
async fn a_write_is_fenced_at_each_attempt_not_only_before_the_call() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let (server, plain) = setup(QuotaTable::default()).await;
    let leading = Arc::new(AtomicBool::new(true));
    let flag = leading.clone();
    let fence = asyncscale_engine::Fence::new(move || {
        if flag.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("this replica no longer leads")
        }
    });
    let backend = Arc::new(plain.with_write_fence(fence));
    let registers = || {
        server
            .log_since(0)
            .iter()
            .filter(|e| e.operation == "RegisterScalableTarget")
            .count()
    };
    // The first attempt is answered a second late with a 500, which the SDK retries.
    server
        .account
        .lock()
        .unwrap()
        .faults
        .push(asyncscale_sim::Fault {
            delay_seconds: 1.0,
            ..asyncscale_sim::Fault::on("RegisterScalableTarget")
                .failing("InternalServiceException", 500)
                .times(1)
        });
    let call = tokio::spawn({
        let backend = backend.clone();
        async move { backend.register_target(&target(0, 4), None).await }
    });
    // Leadership is lost once the first attempt has reached AWS (the fault is taken as the
    // request arrives), a second before its answer and the retry.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !server.account.lock().unwrap().faults.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first attempt never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    leading.store(false, Ordering::SeqCst);
    let error = call.await.unwrap().unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotLeader, "{error}");
    assert_eq!(registers(), 1, "the retry was not sent");
    assert!(
        server.account.lock().unwrap().snapshot("us-east-1")["ScalableTargets"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Reads are not fenced.
    assert!(backend.describe_target(RID).await.is_ok());

    // Leading again: the write goes through.
    leading.store(true, Ordering::SeqCst);
    backend.register_target(&target(0, 4), None).await.unwrap();
    assert_eq!(registers(), 2);
}
