//! The reconciler against kube-rs's mocked API server (tower-test, as in kube-rs/controller-rs)
//! and the local AWS endpoint over the wire. The fake API server answers the requests the
//! reconciler makes the way the real one does (a JSON patch returns the patched object, an Event
//! POST returns the Event) and records them, so each test asserts exactly what reached Kubernetes
//! and AWS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use asyncscale_api::{AsyncEndpointScaling, AsyncEndpointScalingStatus};
use asyncscale_aws::SdkBackend;
use asyncscale_controller::events::{EventPublisher, Reporter};
use asyncscale_controller::metrics::Metrics;
use asyncscale_controller::reconciler::{Context, reconcile};
use asyncscale_engine::{BackendSource, CallCounter, FleetConfig, FleetSource, SingleBackend};
use asyncscale_sim::model::EndpointSpec;
use asyncscale_sim::{Activity, SimServer};
use aws_config::BehaviorVersion;
use aws_sdk_applicationautoscaling::config::Credentials;
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

const RID: &str = "endpoint/sdxl-async/variant/AllTraffic";

/// One request that reached the fake API server.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Value,
}

impl Seen {
    fn is_status_patch(&self) -> bool {
        self.method == "PATCH" && self.path.ends_with("/status")
    }
    fn is_finalizer_patch(&self) -> bool {
        self.method == "PATCH" && self.path.ends_with("/asyncendpointscalings/sdxl")
    }
    fn event_reason(&self) -> Option<&str> {
        (self.method == "POST" && self.path.ends_with("/events"))
            .then(|| self.body["reason"].as_str().unwrap_or(""))
    }
}

struct FakeApiServer {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeApiServer {
    fn start(object: &AsyncEndpointScaling) -> (kube::Client, Self) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let mut current = serde_json::to_value(object).unwrap();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap();
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap()
                };
                let path = parts.uri.path().to_string();
                let query = parts.uri.query().unwrap_or("").to_string();
                record.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    path: path.clone(),
                    query,
                    body: body.clone(),
                });
                // Every write makes a new resourceVersion, as on the real API server.
                let bump = |object: &mut Value| {
                    let rv: u64 = object["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    object["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
                };
                let answer = if path.ends_with("/status") {
                    current["status"] = body["status"].clone();
                    bump(&mut current);
                    current.clone()
                } else if path.contains("/asyncendpointscalings/") {
                    apply_json_patch(&mut current, &body);
                    bump(&mut current);
                    current.clone()
                } else {
                    // events.k8s.io: the created (or patched) Event, as the API server returns it.
                    let mut event = body.clone();
                    if event["metadata"]["name"].is_null() {
                        event["metadata"]["name"] = json!("event-1");
                    }
                    event
                };
                respond.send_response(
                    Response::builder()
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                );
            }
        });
        (kube::Client::new(service, "default"), Self { seen })
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

/// The two JSON patch shapes kube's finalizer helper sends (test + add, test + remove).
fn apply_json_patch(object: &mut Value, patch: &Value) {
    for op in patch.as_array().into_iter().flatten() {
        let path = op["path"].as_str().unwrap_or("");
        match op["op"].as_str() {
            Some("add") if path == "/metadata/finalizers" => {
                object["metadata"]["finalizers"] = op["value"].clone();
            }
            Some("add") if path == "/metadata/finalizers/-" => object["metadata"]["finalizers"]
                .as_array_mut()
                .unwrap()
                .push(op["value"].clone()),
            Some("remove") => {
                let index: usize = path.rsplit('/').next().unwrap().parse().unwrap();
                object["metadata"]["finalizers"]
                    .as_array_mut()
                    .unwrap()
                    .remove(index);
            }
            _ => {}
        }
    }
}

async fn aws_at(url: &str) -> Arc<SdkBackend> {
    aws_in(url, "us-east-1").await
}

async fn aws_in(url: &str, region: &'static str) -> Arc<SdkBackend> {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .endpoint_url(url)
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    Arc::new(SdkBackend::from_config(&config, CallCounter::default()).unwrap())
}

async fn sim() -> SimServer {
    let quotas = asyncscale_sim::quota_table(&["ml.g4dn.xlarge=4".into()], &[]).unwrap();
    let server = asyncscale_sim::start("127.0.0.1:0".parse().unwrap(), quotas)
        .await
        .unwrap();
    server.declare_endpoint("sdxl-async", "AllTraffic", "ml.g4dn.xlarge");
    server
}

fn context(client: kube::Client, aws: Arc<SdkBackend>) -> Arc<Context> {
    let calls = aws.calls().clone();
    context_over(client, Arc::new(SingleBackend(aws)), calls)
}

fn context_over(
    client: kube::Client,
    backends: Arc<dyn BackendSource>,
    calls: CallCounter,
) -> Arc<Context> {
    let metrics = Arc::new(Metrics::new(calls));
    let recorder = EventPublisher::new(
        client.clone(),
        Reporter {
            controller: "asyncscale".into(),
            instance: "asyncscale-0".into(),
        },
    );
    Arc::new(Context::new(
        client,
        backends,
        recorder,
        metrics,
        Duration::from_secs(60),
    ))
}

fn resource(
    extra_spec: Value,
    finalized: bool,
    status: Option<&AsyncEndpointScalingStatus>,
) -> AsyncEndpointScaling {
    let mut spec = json!({"endpointName": "sdxl-async", "instanceType": "ml.g4dn.xlarge", "maxCapacity": 20, "targetTracking": {"targetValue": 5}});
    for (k, v) in extra_spec.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let mut object = json!({
        "apiVersion": "asyncscale.io/v1alpha1", "kind": "AsyncEndpointScaling",
        "metadata": {"name": "sdxl", "namespace": "ml", "uid": "0a1b", "generation": 3, "resourceVersion": "7"},
        "spec": spec,
    });
    if finalized {
        object["metadata"]["finalizers"] = json!(["asyncscale.io/cleanup"]);
    }
    if let Some(status) = status {
        object["status"] = serde_json::to_value(status).unwrap();
    }
    let text = serde_json::to_string(&object).unwrap();
    asyncscale_api::parse_manifests("test", &text)
        .map(|mut p| p.remove(0).resource)
        .unwrap_or_else(|_| serde_json::from_value(object).unwrap())
}

fn deleting(mut object: AsyncEndpointScaling) -> AsyncEndpointScaling {
    object.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    object
}

fn aws_writes(server: &SimServer) -> u64 {
    let calls = server.account.lock().unwrap().calls.clone();
    calls
        .values()
        .flat_map(|ops| ops.iter())
        .filter(|(op, _)| asyncscale_engine::calls::is_write(op))
        .map(|(_, n)| n)
        .sum()
}

fn aws_calls(server: &SimServer) -> u64 {
    server
        .account
        .lock()
        .unwrap()
        .calls
        .values()
        .flat_map(|ops| ops.values())
        .sum()
}

/// The condition `kind` of the last status patch.
fn last_condition(api: &FakeApiServer, kind: &str) -> Value {
    let patch = api
        .seen()
        .into_iter()
        .rev()
        .find(Seen::is_status_patch)
        .expect("a status patch");
    condition(&patch.body["status"], kind).clone()
}

fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} condition"))
}

/// Applies a fresh resource the way the controller loop would: until it asks to wait.
async fn converge_once(aws: &SimServer) -> AsyncEndpointScalingStatus {
    let object = resource(json!({}), true, None);
    let (client, api) = FakeApiServer::start(&object);
    reconcile(Arc::new(object), context(client, aws_at(&aws.url()).await))
        .await
        .unwrap();
    let patch = api
        .seen()
        .into_iter()
        .rev()
        .find(Seen::is_status_patch)
        .unwrap();
    serde_json::from_value(patch.body["status"].clone()).unwrap()
}

#[tokio::test]
async fn the_finalizer_comes_first_and_nothing_reaches_aws_before_it() {
    let aws = sim().await;
    let object = resource(json!({}), false, None);
    let (client, api) = FakeApiServer::start(&object);
    reconcile(Arc::new(object), context(client, aws_at(&aws.url()).await))
        .await
        .unwrap();
    let seen = api.seen();
    // Before anything else, not even a status: a reconcile that ran on a cached copy without
    // the finalizer would otherwise fail kube's JSON patch test.
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert!(seen[0].is_finalizer_patch());
    assert_eq!(
        seen[0].body[1],
        json!({"op": "add", "path": "/metadata/finalizers", "value": ["asyncscale.io/cleanup"]})
    );
    assert_eq!(
        aws_calls(&aws),
        0,
        "no AWS call before the finalizer is in place"
    );
}

#[tokio::test]
async fn the_first_visit_after_the_finalizer_shows_ready_unknown_before_reading_aws() {
    let aws = sim().await;
    let object = resource(json!({}), true, None);
    let (client, api) = FakeApiServer::start(&object);
    reconcile(Arc::new(object), context(client, aws_at(&aws.url()).await))
        .await
        .unwrap();
    let seen = api.seen();
    assert!(seen[0].is_status_patch(), "first visit: Ready Unknown");
    assert_eq!(
        condition(&seen[0].body["status"], "Ready")["status"],
        "Unknown"
    );
}

#[tokio::test]
async fn apply_converges_aws_and_server_side_applies_status_with_events() {
    let aws = sim().await;
    let object = resource(json!({}), true, None);
    let (client, api) = FakeApiServer::start(&object);
    reconcile(Arc::new(object), context(client, aws_at(&aws.url()).await))
        .await
        .unwrap();

    let state = aws.account.lock().unwrap().snapshot("us-east-1");
    assert_eq!(state["ScalableTargets"][0]["MaxCapacity"], 4);
    assert_eq!(
        state["ScalableTargets"][0]["Tags"]["asyncscale.io/owner-uid"],
        "0a1b"
    );
    assert_eq!(state["ScalingPolicies"].as_array().unwrap().len(), 2);

    let seen = api.seen();
    let status_patches: Vec<&Seen> = seen.iter().filter(|s| s.is_status_patch()).collect();
    let last = status_patches.last().unwrap();
    assert!(
        last.query.contains("fieldManager=asyncscale") && last.query.contains("force=true"),
        "server-side apply: {}",
        last.query
    );
    assert_eq!(last.body["apiVersion"], "asyncscale.io/v1alpha1");
    let status = &last.body["status"];
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["effectiveMaxCapacity"], 4);
    assert_eq!(condition(status, "Ready")["status"], "True");
    assert_eq!(condition(status, "Ready")["observedGeneration"], 3);
    assert_eq!(condition(status, "QuotaClamped")["reason"], "Clamped");

    let reasons: Vec<&str> = seen.iter().filter_map(Seen::event_reason).collect();
    assert_eq!(
        reasons,
        [
            "ScalableTargetRegistered",
            "TargetTrackingPolicyApplied",
            "ScaleFromZeroPolicyApplied",
            "AlarmApplied",
            "QuotaClampApplied"
        ]
    );
    let event = seen
        .iter()
        .find(|s| s.event_reason() == Some("QuotaClampApplied"))
        .unwrap();
    assert_eq!(event.body["reportingInstance"], "asyncscale-0");
    assert_eq!(event.body["regarding"]["name"], "sdxl");
}

#[tokio::test]
async fn a_resync_without_drift_writes_nothing_anywhere() {
    let aws = sim().await;
    let status = converge_once(&aws).await;
    let writes = aws_writes(&aws);
    let object = resource(json!({}), true, Some(&status));
    let (client, api) = FakeApiServer::start(&object);
    reconcile(Arc::new(object), context(client, aws_at(&aws.url()).await))
        .await
        .unwrap();
    assert!(
        api.seen().is_empty(),
        "no status patch, no Event: {:#?}",
        api.seen()
    );
    assert_eq!(aws_writes(&aws), writes, "no AWS write");
}

#[tokio::test]
async fn deletion_cleans_aws_then_releases_the_finalizer() {
    let aws = sim().await;
    let status = converge_once(&aws).await;
    let object = deleting(resource(json!({}), true, Some(&status)));
    let (client, api) = FakeApiServer::start(&object);
    reconcile(Arc::new(object), context(client, aws_at(&aws.url()).await))
        .await
        .unwrap();
    let state = aws.account.lock().unwrap().snapshot("us-east-1");
    assert_eq!(state["ScalableTargets"], json!([]));
    assert_eq!(state["ScalingPolicies"], json!([]));
    assert_eq!(state["MetricAlarms"], json!([]));
    let seen = api.seen();
    let reasons: Vec<&str> = seen.iter().filter_map(Seen::event_reason).collect();
    assert_eq!(reasons, ["AlarmDeleted", "ScalableTargetDeregistered"]);
    let last = seen.last().unwrap();
    assert!(
        last.is_finalizer_patch(),
        "the finalizer goes last: {seen:#?}"
    );
    assert_eq!(
        last.body[1],
        json!({"op": "remove", "path": "/metadata/finalizers/0"})
    );
}

#[tokio::test]
async fn retain_leaves_aws_configured_releases_ownership_and_the_finalizer() {
    let aws = sim().await;
    let status = converge_once(&aws).await;
    let before = aws.account.lock().unwrap().snapshot("us-east-1");
    let object = deleting(resource(
        json!({"deletionPolicy": "Retain"}),
        true,
        Some(&status),
    ));
    let (client, api) = FakeApiServer::start(&object);
    reconcile(Arc::new(object), context(client, aws_at(&aws.url()).await))
        .await
        .unwrap();
    let after = aws.account.lock().unwrap().snapshot("us-east-1");
    for list in ["ScalableTargets", "ScalingPolicies"] {
        assert_eq!(
            after[list].as_array().unwrap().len(),
            before[list].as_array().unwrap().len()
        );
    }
    assert_eq!(
        after["ScalableTargets"][0]["MaxCapacity"], 4,
        "configuration kept"
    );
    assert_eq!(
        after["ScalableTargets"][0]["Tags"],
        json!({}),
        "ownership released"
    );
    let seen = api.seen();
    assert_eq!(
        seen.iter()
            .filter_map(Seen::event_reason)
            .collect::<Vec<_>>(),
        ["ScalableTargetReleased", "AlarmReleased", "Retained"]
    );
    assert!(seen.last().unwrap().is_finalizer_patch());
}

#[tokio::test]
async fn a_deletion_that_cannot_finish_keeps_the_finalizer_and_says_why() {
    let aws = sim().await;
    let status = converge_once(&aws).await;
    let object = deleting(resource(json!({}), true, Some(&status)));
    let (client, api) = FakeApiServer::start(&object);
    let unreachable = aws_at("http://127.0.0.1:9").await;
    let result = reconcile(Arc::new(object), context(client, unreachable)).await;
    assert!(
        result.is_err(),
        "a failed cleanup is an error, so it is retried with backoff"
    );
    let seen = api.seen();
    assert!(
        seen.iter().all(|s| !s.is_finalizer_patch()),
        "the finalizer stays"
    );
    assert_eq!(
        seen.iter()
            .filter_map(Seen::event_reason)
            .collect::<Vec<_>>(),
        ["DeleteFailed"]
    );
    let patch = seen.iter().find(|s| s.is_status_patch()).unwrap();
    assert_eq!(
        condition(&patch.body["status"], "Ready")["reason"],
        "DeleteFailed"
    );
    assert!(
        condition(&patch.body["status"], "Synced")["message"]
            .as_str()
            .unwrap()
            .contains("remove it by hand")
    );
}

#[tokio::test]
async fn a_conflict_makes_no_aws_write() {
    let aws = sim().await;
    let other = resource(json!({}), true, None);
    let (client, _api) = FakeApiServer::start(&other);
    let mut other_owner = other.clone();
    other_owner.metadata.namespace = Some("team-b".into());
    other_owner.metadata.uid = Some("other-uid".into());
    reconcile(
        Arc::new(other_owner),
        context(client, aws_at(&aws.url()).await),
    )
    .await
    .unwrap();
    let writes = aws_writes(&aws);

    let object = resource(json!({}), true, None);
    let (client, api) = FakeApiServer::start(&object);
    reconcile(Arc::new(object), context(client, aws_at(&aws.url()).await))
        .await
        .unwrap();
    assert_eq!(
        aws_writes(&aws),
        writes,
        "no AWS write for the second claimant"
    );
    let seen = api.seen();
    let patch = seen.iter().rev().find(|s| s.is_status_patch()).unwrap();
    let synced = condition(&patch.body["status"], "Synced");
    assert_eq!(synced["reason"], "Conflict");
    assert!(
        synced["message"].as_str().unwrap().contains("team-b/sdxl"),
        "{synced}"
    );
    assert_eq!(
        seen.iter()
            .filter_map(Seen::event_reason)
            .collect::<Vec<_>>(),
        ["Conflict"]
    );
}

#[tokio::test]
async fn a_failed_scaling_activity_is_published_once() {
    let aws = sim().await;
    let status = converge_once(&aws).await;
    let message = "Failed to set desired instance count to 20. Reason: The account-level service limit 'ml.g4dn.xlarge for endpoint usage' is 4 Instances, with current utilization of 1 Instances and a request delta of 19 Instances. Please contact AWS support to request an increase for this limit. (Service: AmazonSageMaker; Status Code: 400; Error Code: ResourceLimitExceeded; Request ID: 9).";
    aws.account.lock().unwrap().add_activity(Activity {
        activity_id: String::new(),
        service_namespace: "sagemaker".into(),
        resource_id: RID.into(),
        scalable_dimension: "sagemaker:variant:DesiredInstanceCount".into(),
        description: "Setting desired instance count to 20.".into(),
        cause: "monitor alarm x in state ALARM triggered policy y".into(),
        start_time: 0.0,
        end_time: None,
        status_code: "Failed".into(),
        status_message: Some(message.into()),
        not_scaled_reasons: None,
    });

    let object = resource(json!({}), true, Some(&status));
    let (client, api) = FakeApiServer::start(&object);
    let ctx = context(client, aws_at(&aws.url()).await);
    reconcile(Arc::new(object), ctx.clone()).await.unwrap();
    let seen = api.seen();
    let event = seen
        .iter()
        .find(|s| s.event_reason() == Some("QuotaExceeded"))
        .expect("a QuotaExceeded Event");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["note"], message);
    let patch = seen.iter().find(|s| s.is_status_patch()).unwrap();
    let status: AsyncEndpointScalingStatus =
        serde_json::from_value(patch.body["status"].clone()).unwrap();
    assert_eq!(
        condition(&patch.body["status"], "ScalingHealthy")["reason"],
        "QuotaExceeded"
    );

    // The next resync sees the same activity in status: no second Event, no patch.
    api.clear();
    let object = resource(json!({}), true, Some(&status));
    reconcile(Arc::new(object), ctx).await.unwrap();
    assert!(api.seen().is_empty(), "{:#?}", api.seen());
}

#[tokio::test]
async fn an_invalid_spec_is_reported_without_touching_aws() {
    let aws = sim().await;
    let mut object = resource(json!({}), true, None);
    object.spec.scale_from_zero.period_seconds = 45; // as if the API server had no CEL rules
    let (client, api) = FakeApiServer::start(&object);
    let action = reconcile(Arc::new(object), context(client, aws_at(&aws.url()).await))
        .await
        .unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::await_change(),
        "waits for a spec change"
    );
    assert_eq!(aws_calls(&aws), 0);
    let synced = &last_condition(&api, "Synced");
    assert_eq!(synced["reason"], "InvalidSpec");
    assert!(
        synced["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.scaleFromZero.periodSeconds: ")
    );
}

// ---- The controller under partitions and hangs ----

use asyncscale_controller::reconciler::{WatchedStore, error_policy};
use kube::runtime::controller::Action;
use kube::runtime::reflector;
use kube::runtime::watcher;

/// A watch cache holding `objects`, synced and covering every namespace.
fn store_of(objects: &[&AsyncEndpointScaling]) -> WatchedStore {
    let (store, mut writer) = reflector::store::<AsyncEndpointScaling>();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply((*o).clone()));
    }
    WatchedStore {
        store,
        synced: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        all_namespaces: true,
    }
}

fn created_at(
    mut object: AsyncEndpointScaling,
    seconds: i64,
    uid: &str,
    name: &str,
) -> AsyncEndpointScaling {
    object.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + seconds).unwrap(),
        ));
    object.metadata.uid = Some(uid.into());
    object.metadata.name = Some(name.into());
    object
}

#[tokio::test]
async fn the_younger_of_two_resources_for_one_variant_is_refused_before_any_aws_call() {
    let aws = sim().await;
    let older = created_at(resource(json!({}), true, None), 0, "uid-old", "first");
    let younger = created_at(
        resource(json!({"region": "us-east-1"}), true, None),
        60,
        "uid-young",
        "second",
    );
    let (client, api) = FakeApiServer::start(&younger);
    let ctx = context(client, aws_at(&aws.url()).await);
    ctx.watch_stores(vec![store_of(&[&older, &younger])]);
    let action = reconcile(Arc::new(younger), ctx).await.unwrap();
    assert_eq!(aws_calls(&aws), 0, "no AWS call at all");
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(5)),
        "checked again within seconds, not at the next resync"
    );
    let synced = &last_condition(&api, "Synced");
    assert_eq!(synced["reason"], "Conflict");
    assert!(
        synced["message"]
            .as_str()
            .unwrap()
            .contains("ml/first (older)"),
        "an unset region and the explicit default region are one place: {synced}"
    );
}

/// The controller's default region and one other, each its own backend (as `asyncscale run`
/// makes them per region).
struct TwoRegions {
    default: Arc<SdkBackend>,
    other: Arc<SdkBackend>,
}

#[async_trait::async_trait]
impl asyncscale_engine::BackendSource for TwoRegions {
    async fn backend(
        &self,
        placement: &asyncscale_engine::Placement,
    ) -> Result<Arc<dyn asyncscale_engine::AutoscalingBackend>, asyncscale_engine::AwsError> {
        Ok(match placement.region.as_deref() {
            Some("eu-west-1") => self.other.clone(),
            _ => self.default.clone(),
        })
    }
}

/// The same endpoint name in two regions is two endpoints: a resource without spec.region is in
/// the controller's default region, not in the region of the resource being checked.
#[tokio::test]
async fn one_endpoint_name_in_two_regions_is_not_a_duplicate() {
    let aws = sim().await;
    let older = created_at(resource(json!({}), true, None), 0, "uid-old", "first");
    let younger = created_at(
        resource(json!({"region": "eu-west-1"}), true, None),
        60,
        "uid-young",
        "second",
    );
    let (client, api) = FakeApiServer::start(&younger);
    let default = aws_at(&aws.url()).await;
    let metrics = Arc::new(Metrics::new(default.calls().clone()));
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(TwoRegions {
            default,
            other: aws_in(&aws.url(), "eu-west-1").await,
        }),
        EventPublisher::new(
            client,
            Reporter {
                controller: "asyncscale".into(),
                instance: "asyncscale-0".into(),
            },
        ),
        metrics,
        Duration::from_secs(60),
    ));
    ctx.watch_stores(vec![store_of(&[&older, &younger])]);
    reconcile(Arc::new(younger), ctx).await.unwrap();
    let synced = &last_condition(&api, "Synced");
    assert_ne!(synced["reason"], "Conflict", "{synced}");
    assert!(
        aws_calls(&aws) > 0,
        "the endpoint in eu-west-1 was reconciled"
    );
}

#[tokio::test]
async fn a_status_field_of_another_manager_does_not_make_the_controller_patch_forever() {
    let aws = sim().await;
    let mut status = converge_once(&aws).await;
    // `kubectl patch --subresource=status` by someone else: a condition asyncscale never sets.
    status
        .conditions
        .push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "ReviewedByOps".into(),
            status: "True".into(),
            reason: "Reviewed".into(),
            message: "looked fine".into(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        });
    let mut object = resource(json!({}), true, Some(&status));
    // What the API server records: asyncscale owns its four conditions, ops owns theirs.
    let ours: serde_json::Map<String, Value> = ["Ready", "Synced", "QuotaClamped", "ScalingHealthy"]
        .iter()
        .map(|t| {
            (
                format!("k:{{\"type\":\"{t}\"}}"),
                json!({".": {}, "f:type": {}, "f:status": {}, "f:reason": {}, "f:message": {}, "f:lastTransitionTime": {}, "f:observedGeneration": {}}),
            )
        })
        .collect();
    let fields = |status: Value| serde_json::from_value(json!({"f:status": status})).unwrap();
    object.metadata.managed_fields = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
            manager: Some("asyncscale".into()),
            operation: Some("Apply".into()),
            subresource: Some("status".into()),
            fields_v1: Some(fields(json!({
                "f:observedGeneration": {}, "f:effectiveMaxCapacity": {}, "f:quota": {"f:name": {}, "f:code": {}, "f:value": {}, "f:source": {}, "f:inUse": {}, "f:sharingEndpoints": {}},
                "f:instances": {},
                "f:endpoint": {"f:status": {}, "f:configName": {}, "f:instanceType": {}, "f:currentInstances": {}, "f:desiredInstances": {}},
                "f:scalableTarget": {"f:resourceId": {}, "f:arn": {}},
                "f:targetTrackingPolicy": {"f:name": {}, "f:arn": {}},
                "f:scaleFromZeroPolicy": {"f:name": {}, "f:arn": {}},
                "f:scaleFromZeroAlarm": {"f:name": {}, "f:arn": {}, "f:state": {}},
                "f:conditions": Value::Object(ours),
            }))),
            ..Default::default()
        },
        k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
            manager: Some("kubectl-patch".into()),
            operation: Some("Update".into()),
            subresource: Some("status".into()),
            fields_v1: Some(fields(
                json!({"f:conditions": {"k:{\"type\":\"ReviewedByOps\"}": {}}}),
            )),
            ..Default::default()
        },
    ]);
    let (client, api) = FakeApiServer::start(&object);
    reconcile(Arc::new(object), context(client, aws_at(&aws.url()).await))
        .await
        .unwrap();
    assert!(
        api.seen().iter().all(|s| !s.is_status_patch()),
        "nothing of ours changed: no patch, so no watch event, so no hot loop: {:#?}",
        api.seen()
    );
}

#[tokio::test]
async fn the_watch_event_of_our_own_status_write_makes_no_aws_call() {
    let aws = sim().await;
    let object = resource(json!({}), true, None);
    let (client, api) = FakeApiServer::start(&object);
    let ctx = context(client, aws_at(&aws.url()).await);
    reconcile(Arc::new(object), ctx.clone()).await.unwrap();
    let patch = api
        .seen()
        .into_iter()
        .rev()
        .find(Seen::is_status_patch)
        .unwrap();
    let calls = aws_calls(&aws);
    // The object as the watch now delivers it: our status, the resourceVersion of our write.
    let mut echo = resource(
        json!({}),
        true,
        Some(&serde_json::from_value(patch.body["status"].clone()).unwrap()),
    );
    // The fake bumped the version on each of the two status writes (initial, final): 7 → 9.
    echo.metadata.resource_version = Some("9".into());
    let action = reconcile(Arc::new(echo.clone()), ctx.clone())
        .await
        .unwrap();
    assert_eq!(aws_calls(&aws), calls, "no AWS read for our own echo");
    assert!(
        action != Action::await_change(),
        "the resync still comes: {action:?}"
    );
    // The echo of the first visit's status (written before the result) is no news either.
    echo.metadata.resource_version = Some("8".into());
    reconcile(Arc::new(echo.clone()), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        aws_calls(&aws),
        calls,
        "no AWS read for the first visit's echo"
    );
    // A spec change (a new resourceVersion) is read from AWS at once.
    echo.metadata.resource_version = Some("99".into());
    reconcile(Arc::new(echo), ctx).await.unwrap();
    assert!(aws_calls(&aws) > calls);
}

#[tokio::test]
async fn a_conflict_resets_the_backoff_so_the_next_failure_starts_short() {
    let object = created_at(resource(json!({}), true, None), 0, "0a1b", "sdxl");
    let (client, _api) = FakeApiServer::start(&object);
    let unreachable = context(client, aws_at("http://127.0.0.1:9").await);
    // Three recoverable failures: the delay grows.
    let mut last = std::time::Duration::ZERO;
    for _ in 0..3 {
        let mut fresh = object.clone();
        fresh.metadata.resource_version = None;
        let err = reconcile(Arc::new(fresh.clone()), unreachable.clone())
            .await
            .unwrap_err();
        error_policy(Arc::new(fresh), &err, unreachable.clone());
        last = err.retry_in().expect("an AWS failure chooses its retry");
    }
    assert!(
        last >= std::time::Duration::from_secs(10),
        "third failure: {last:?}"
    );
    // Then a conflict (the younger of two claimants), which is not a failure to back off from.
    let older = created_at(resource(json!({}), true, None), -60, "uid-old", "first");
    unreachable.watch_stores(vec![store_of(&[&older, &object])]);
    let mut fresh = object.clone();
    fresh.metadata.resource_version = None;
    reconcile(Arc::new(fresh.clone()), unreachable.clone())
        .await
        .unwrap();
    unreachable.watch_stores(vec![]);
    let err = reconcile(Arc::new(fresh), unreachable).await.unwrap_err();
    let retry_in = err.retry_in().expect("an AWS failure");
    assert!(
        retry_in <= std::time::Duration::from_secs(5),
        "starts afresh: {retry_in:?}"
    );
}

#[tokio::test]
async fn a_finalizer_patch_refused_for_a_stale_cache_is_retried_at_once_without_backoff() {
    let aws = sim().await;
    let object = resource(json!({}), false, None);
    let (client, _api) = FakeApiServer::start(&object);
    let ctx = context(client, aws_at(&aws.url()).await);
    let stale = kube::Error::Api(
        serde_json::from_value(json!({"status": "Failure", "message": "the server rejected our request due to an error in our request", "reason": "Invalid", "code": 422})).unwrap(),
    );
    let error = asyncscale_controller::reconciler::Error::Finalizer(Box::new(
        kube::runtime::finalizer::Error::AddFinalizer(stale),
    ));
    let action = error_policy(Arc::new(object), &error, ctx);
    assert_eq!(
        action,
        Action::requeue(std::time::Duration::from_millis(200))
    );
}

/// An API server that answers every request as etcd being down does (503).
fn api_server_without_etcd() -> kube::Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((_request, respond)) = handle.next_request().await {
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "etcdserver: request timed out", "reason": "ServiceUnavailable", "code": 503});
            respond.send_response(
                Response::builder()
                    .status(503)
                    .body(Body::from(serde_json::to_vec(&status).unwrap()))
                    .unwrap(),
            );
        }
    });
    kube::Client::new(service, "default")
}

/// A failed reconcile is labelled by its cause (in the log's error and its `kind`), not as a
/// finalizer error for going through kube's finalizer helper: an API outage is `kube_error`,
/// AWS `aws_error`; only the finalizer's own patch failing is `finalizer_error`.
#[tokio::test]
async fn a_failed_reconcile_is_labelled_by_its_cause_not_as_a_finalizer_error() {
    use asyncscale_controller::reconciler::Error;
    // The API server is down: the first visit's status write fails.
    let aws = sim().await;
    let outage = context(api_server_without_etcd(), aws_at(&aws.url()).await);
    let object = resource(json!({}), true, None);
    let err = reconcile(Arc::new(object), outage).await.unwrap_err();
    assert!(matches!(err, Error::Kube(_)), "{err:?}");
    assert_eq!(err.metric_label(), "kube_error");
    assert!(!err.to_string().contains("finalizer"), "{err}");
    assert!(err.to_string().contains("etcdserver"), "{err}");

    // AWS is unreachable: an AWS error, with the retry the reconcile chose.
    let status = converge_once(&aws).await;
    let object = resource(json!({}), true, Some(&status));
    let (client, _api) = FakeApiServer::start(&object);
    let unreachable = context(client, aws_at("http://127.0.0.1:9").await);
    let err = reconcile(Arc::new(object), unreachable).await.unwrap_err();
    assert_eq!(err.metric_label(), "aws_error", "{err}");
    assert!(!err.to_string().contains("finalizer"), "{err}");
    assert!(err.retry_in().is_some());

    // Adding the finalizer fails: that one is the finalizer's.
    let object = resource(json!({}), false, None);
    let outage = context(api_server_without_etcd(), aws_at(&aws.url()).await);
    let err = reconcile(Arc::new(object), outage).await.unwrap_err();
    assert_eq!(err.metric_label(), "finalizer_error", "{err}");
    assert!(err.to_string().contains("failed to add finalizer"), "{err}");
}

#[tokio::test]
async fn a_target_whose_owner_uid_no_longer_exists_is_adopted_when_asked() {
    let aws = sim().await;
    // Retained long ago by a resource of the same name, before Retain released ownership.
    let mut old = resource(json!({}), true, None);
    old.metadata.uid = Some("uid-gone".into());
    let (client, _api) = FakeApiServer::start(&old);
    reconcile(Arc::new(old), context(client, aws_at(&aws.url()).await))
        .await
        .unwrap();
    let mut object = resource(json!({}), true, None);
    object.metadata.uid = Some("uid-new".into());
    let (client, api) = FakeApiServer::start(&object);
    let ctx = context(client, aws_at(&aws.url()).await);
    ctx.watch_stores(vec![store_of(&[&object])]);
    reconcile(Arc::new(object.clone()), ctx.clone())
        .await
        .unwrap();
    let synced = &last_condition(&api, "Synced");
    assert_eq!(
        synced["reason"], "Conflict",
        "a different UID is another owner"
    );
    assert!(
        synced["message"]
            .as_str()
            .unwrap()
            .contains("no longer exists"),
        "{synced}"
    );

    object
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("asyncscale.io/adopt".into(), "true".into());
    object.metadata.resource_version = Some("100".into());
    api.clear();
    reconcile(Arc::new(object), ctx).await.unwrap();
    let state = aws.account.lock().unwrap().snapshot("us-east-1");
    assert_eq!(
        state["ScalableTargets"][0]["Tags"]["asyncscale.io/owner-uid"],
        "uid-new"
    );
    assert!(
        api.seen()
            .iter()
            .any(|s| s.event_reason() == Some("ScalableTargetAdopted")),
        "an Event says so"
    );
}

/// A passing failure to read AWS keeps the last observed conditions (one status write, no
/// Event); only when the last good observation is older than the staleness bound does Ready
/// become Unknown, with a Warning Event.
#[tokio::test]
async fn a_failed_refresh_keeps_ready_until_the_last_observation_is_stale() {
    let aws = sim().await;
    let status = converge_once(&aws).await;
    // Nothing listens on port 1 of loopback: every AWS call fails to connect.
    let unreachable = aws_at("http://127.0.0.1:1").await;
    let status_patch = |api: &FakeApiServer| -> Option<AsyncEndpointScalingStatus> {
        api.seen()
            .into_iter()
            .rev()
            .find(Seen::is_status_patch)
            .map(|p| serde_json::from_value(p.body["status"].clone()).unwrap())
    };
    let ready_of = |status: &AsyncEndpointScalingStatus| {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        (c.status.clone(), c.reason.clone())
    };

    let object = resource(json!({}), true, Some(&status));
    let (client, api) = FakeApiServer::start(&object);
    let ctx = context(client, unreachable.clone());
    let _ = reconcile(Arc::new(object), ctx.clone()).await;
    let kept = status_patch(&api).expect("one status write saying the refresh failed");
    assert_eq!(ready_of(&kept), ("True".to_string(), "Ready".to_string()));
    let synced = kept
        .conditions
        .iter()
        .find(|c| c.type_ == "Synced")
        .unwrap();
    assert!(
        synced.message.contains("the latest refresh of AWS failed"),
        "{}",
        synced.message
    );
    assert!(
        api.seen().iter().all(|s| s.event_reason().is_none()),
        "no Event for a passing failure: {:#?}",
        api.seen()
    );

    api.clear();
    let object = resource(json!({}), true, Some(&kept));
    let _ = reconcile(Arc::new(object), ctx).await;
    assert!(
        status_patch(&api).is_none(),
        "a second failure writes nothing"
    );

    // A controller whose staleness bound has passed without a good observation.
    let object = resource(json!({}), true, Some(&kept));
    let (client, api) = FakeApiServer::start(&object);
    let metrics = Arc::new(Metrics::new(unreachable.calls().clone()));
    let recorder = EventPublisher::new(
        client.clone(),
        Reporter {
            controller: "asyncscale".into(),
            instance: "asyncscale-0".into(),
        },
    );
    let ctx = Arc::new(
        Context::new(
            client,
            Arc::new(SingleBackend(unreachable)),
            recorder,
            metrics,
            Duration::from_millis(1),
        )
        .with_stale_after_resyncs(1),
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let _ = reconcile(Arc::new(object), ctx).await;
    let stale = status_patch(&api).expect("Ready turns Unknown");
    assert_eq!(
        ready_of(&stale),
        ("Unknown".to_string(), "ObserveFailed".to_string())
    );
    assert!(
        api.seen()
            .iter()
            .any(|s| s.event_reason() == Some("AWSUnreadable")),
        "{:#?}",
        api.seen()
    );
}

/// A reconcile cut short by --reconcile-timeout refreshed nothing: once the last good observation
/// is stale, Ready turns Unknown as for any failed read, and the names AWS last held stay.
#[tokio::test]
async fn a_timed_out_reconcile_counts_as_a_failed_refresh() {
    let aws = sim().await;
    let status = converge_once(&aws).await;
    aws.account
        .lock()
        .unwrap()
        .faults
        .push(asyncscale_sim::Fault::on("DescribeScalableTargets").delayed(5.0));
    let object = resource(json!({}), true, Some(&status));
    let (client, api) = FakeApiServer::start(&object);
    let backend = aws_at(&aws.url()).await;
    let metrics = Arc::new(Metrics::new(backend.calls().clone()));
    let recorder = EventPublisher::new(
        client.clone(),
        Reporter {
            controller: "asyncscale".into(),
            instance: "asyncscale-0".into(),
        },
    );
    let ctx = Arc::new(
        Context::new(
            client,
            Arc::new(SingleBackend(backend)),
            recorder,
            metrics,
            Duration::from_millis(1),
        )
        .with_stale_after_resyncs(1)
        .with_reconcile_timeout(Duration::from_millis(300)),
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(reconcile(Arc::new(object), ctx.clone()).await.is_err());
    assert!(
        ctx.metrics
            .encode()
            .contains(r#"asyncscale_reconciles_total{outcome="timeout"} 1"#),
        "the timeout shows in metrics"
    );
    let seen = api.seen();
    let patch = seen
        .iter()
        .rev()
        .find(|s| s.is_status_patch())
        .expect("status says the refresh failed");
    let ready = condition(&patch.body["status"], "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("Unknown"), Some("ObserveFailed"))
    );
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("--reconcile-timeout")
    );
    assert_eq!(
        patch.body["status"]["scalableTarget"],
        serde_json::to_value(&status.scalable_target).unwrap(),
        "what AWS last held stays in status"
    );
    let reasons: Vec<_> = seen.iter().filter_map(Seen::event_reason).collect();
    assert!(
        reasons.contains(&"ReconcileTimedOut") && reasons.contains(&"AWSUnreadable"),
        "{reasons:?}"
    );
}

/// A terminal AWS error (permissions) is retried at the resync, not backed off from: the next
/// recoverable failure starts its backoff afresh.
#[tokio::test]
async fn a_terminal_error_resets_the_backoff_so_the_next_failure_starts_short() {
    let aws = sim().await;
    let object = created_at(resource(json!({}), true, None), 0, "0a1b", "sdxl");
    let (client, _api) = FakeApiServer::start(&object);
    let ctx = context(client, aws_at(&aws.url()).await);
    let fail_with = |code: &str| {
        let mut account = aws.account.lock().unwrap();
        account.faults.clear();
        account
            .faults
            .push(asyncscale_sim::Fault::on("DescribeScalableTargets").failing(code, 400));
    };
    let fresh = || {
        let mut fresh = object.clone();
        fresh.metadata.resource_version = None;
        Arc::new(fresh)
    };
    fail_with("ThrottlingException");
    let mut last = Duration::ZERO;
    for _ in 0..3 {
        let err = reconcile(fresh(), ctx.clone()).await.unwrap_err();
        error_policy(fresh(), &err, ctx.clone());
        last = err.retry_in().expect("an AWS failure chooses its retry");
    }
    assert!(last >= Duration::from_secs(10), "third failure: {last:?}");
    fail_with("AccessDeniedException");
    let action = reconcile(fresh(), ctx.clone())
        .await
        .expect("terminal: no backoff");
    let resync = requeue_after(&action).expect("terminal: retried at the resync");
    assert!(
        (Duration::from_secs(54)..=Duration::from_secs(66)).contains(&resync),
        "retried at the resync (60 s, spread by a tenth): {resync:?}"
    );
    fail_with("ThrottlingException");
    let err = reconcile(fresh(), ctx).await.unwrap_err();
    let retry_in = err.retry_in().expect("an AWS failure");
    assert!(
        retry_in <= Duration::from_secs(5),
        "starts afresh: {retry_in:?}"
    );
}

/// A quota that cannot be read in the controller: nothing is written (the clamp holds in AWS),
/// status says so, and the reconcile backs off like any recoverable error.
#[tokio::test]
async fn a_failed_quota_read_backs_off_and_writes_nothing() {
    let aws = sim().await;
    let status = converge_once(&aws).await;
    let writes = aws_writes(&aws);
    aws.account.lock().unwrap().faults.push(
        asyncscale_sim::Fault::on("GetServiceQuota").failing("TooManyRequestsException", 400),
    );
    let object = resource(json!({}), true, Some(&status));
    let (client, api) = FakeApiServer::start(&object);
    // A new controller: no quota value cached yet.
    let err = reconcile(Arc::new(object), context(client, aws_at(&aws.url()).await))
        .await
        .unwrap_err();
    assert!(err.retry_in().is_some(), "backs off: {err}");
    assert_eq!(aws_writes(&aws), writes, "no AWS write");
    let max =
        aws.account.lock().unwrap().snapshot("us-east-1")["ScalableTargets"][0]["MaxCapacity"]
            .clone();
    assert_eq!(max, 4, "the clamp holds");
    // Status says the quota is unknown.
    assert_eq!(
        last_condition(&api, "QuotaClamped")["reason"],
        "QuotaUnknown"
    );
}

/// A repeat within six minutes extends the first Event's series (one PATCH of `series`, as
/// `kubectl describe` shows "x2"); the same reason with a new note is a new Event, so the note a
/// reader sees is never an older one.
#[tokio::test]
async fn a_repeated_event_extends_its_series_and_a_new_note_is_a_new_event() {
    use asyncscale_controller::events::{Event, EventType};
    use kube::Resource;
    let object = resource(json!({}), true, None);
    let (client, api) = FakeApiServer::start(&object);
    let events = EventPublisher::new(
        client,
        Reporter {
            controller: "asyncscale".into(),
            instance: "asyncscale-0".into(),
        },
    );
    let event = |note: &str| Event {
        type_: EventType::Warning,
        reason: "QuotaUnreadable".into(),
        note: Some(note.into()),
        action: "Observe".into(),
        secondary: None,
    };
    let regarding = object.object_ref(&());
    for note in ["throttled", "throttled", "throttled", "access denied"] {
        events.publish(&event(note), &regarding).await.unwrap();
    }
    let seen = api.seen();
    let requests: Vec<_> = seen
        .iter()
        .map(|s| {
            (
                s.method.as_str(),
                s.body["note"].as_str(),
                &s.body["series"]["count"],
            )
        })
        .collect();
    assert_eq!(
        requests,
        [
            ("POST", Some("throttled"), &json!(null)),
            ("PATCH", None, &json!(2)),
            ("PATCH", None, &json!(3)),
            ("POST", Some("access denied"), &json!(null)),
        ]
    );
    let created = &seen[0];
    assert!(
        seen[1]
            .path
            .ends_with(created.body["metadata"]["name"].as_str().unwrap())
    );
    assert_eq!(created.body["reportingController"], "asyncscale");
    assert_eq!(created.body["reportingInstance"], "asyncscale-0");
    assert_eq!(created.body["regarding"]["name"], "sdxl");
    assert_eq!(created.body["type"], "Warning");
    assert_eq!(events.remembered(), 2);
}

/// (method, Event name) of each request an API server saw.
type EventRequests = Arc<Mutex<Vec<(String, String)>>>;

/// An API server whose Events were all deleted: every PATCH of a series answers 404, as the real
/// one does for a missing object.
fn events_server_without_old_events() -> (kube::Client, EventRequests) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let method = parts.method.to_string();
            let name = match method.as_str() {
                "POST" => body["metadata"]["name"].as_str().unwrap_or("").to_string(),
                _ => parts
                    .uri
                    .path()
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_string(),
            };
            record.lock().unwrap().push((method.clone(), name.clone()));
            let response = if method == "PATCH" {
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                    "message": format!("events.events.k8s.io \"{name}\" not found")});
                Response::builder()
                    .status(404)
                    .body(Body::from(serde_json::to_vec(&status).unwrap()))
                    .unwrap()
            } else {
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap()
            };
            respond.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), seen)
}

/// A repeat whose first Event was deleted starts a new Event (and series) instead of patching a
/// missing one at every repeat; an object name too long for `<name>.<hex>` is cut to fit the
/// 253 characters of an Event name.
#[tokio::test]
async fn a_repeat_of_a_deleted_event_creates_it_again_and_long_names_fit() {
    use asyncscale_controller::events::{Event, EventType};
    use kube::Resource;
    let (client, seen) = events_server_without_old_events();
    let events = EventPublisher::new(
        client,
        Reporter {
            controller: "asyncscale".into(),
            instance: "asyncscale-0".into(),
        },
    );
    let mut object = resource(json!({}), true, None);
    object.metadata.name = Some(format!("{}-{}", "b".repeat(235), "c".repeat(14)));
    let regarding = object.object_ref(&());
    let event = Event {
        type_: EventType::Warning,
        reason: "ApplyFailed".into(),
        note: Some("AccessDenied".into()),
        action: "Apply".into(),
        secondary: None,
    };
    for _ in 0..3 {
        events.publish(&event, &regarding).await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let methods: Vec<&str> = seen.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(methods, ["POST", "PATCH", "POST", "PATCH", "POST"]);
    for (_, name) in &seen {
        assert!(name.len() <= 253, "{} characters", name.len());
        assert!(
            name.starts_with(&format!("{}.", "b".repeat(235))),
            "cut at 236 characters less the trailing dash: {name}"
        );
    }
}

/// Two resources for one variant created in the same second (creationTimestamp has whole
/// seconds): the one AWS already knows as owner keeps managing it, and the other is refused by
/// the ownership check, never both.
#[tokio::test]
async fn two_resources_created_in_the_same_second_leave_one_owner() {
    let aws = sim().await;
    let owner = created_at(resource(json!({}), true, None), 0, "uid-z", "zz");
    let other = created_at(resource(json!({}), true, None), 0, "uid-a", "aa");
    let synced_after_reconcile = |object: &AsyncEndpointScaling| {
        let object = object.clone();
        let url = aws.url();
        let both = [owner.clone(), other.clone()];
        async move {
            let (client, api) = FakeApiServer::start(&object);
            let ctx = context(client, aws_at(&url).await);
            ctx.watch_stores(vec![store_of(&[&both[0], &both[1]])]);
            reconcile(Arc::new(object), ctx).await.unwrap();
            last_condition(&api, "Synced")
        }
    };
    let first = synced_after_reconcile(&owner).await;
    assert_eq!(first["reason"], "InSync", "{first}");
    let refused = synced_after_reconcile(&other).await;
    assert_eq!(refused["reason"], "Conflict", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("ml/zz"),
        "refused by the owner AWS knows: {refused}"
    );
    let again = synced_after_reconcile(&owner).await;
    assert_eq!(
        again["reason"], "InSync",
        "the owner keeps its endpoint: {again}"
    );
}

/// How often the fleet views of [`quota_held_by_another`] refresh.
const FLEET_REFRESH: Duration = Duration::from_millis(200);

/// The local endpoint with another endpoint, not managed, holding all 4 instances of the quota,
/// and a fleet view over it (as the controller reconciles), with its call counter.
async fn quota_held_by_another() -> (SimServer, FleetSource, CallCounter) {
    let aws = sim().await;
    aws.world.lock().unwrap().add_endpoint(EndpointSpec {
        initial_instances: 4,
        ..EndpointSpec::idle("other-async", "AllTraffic", "ml.g4dn.xlarge")
    });
    let backend = aws_at(&aws.url()).await;
    let calls = backend.calls().clone();
    let fleet = FleetSource::new(
        Arc::new(SingleBackend(backend)),
        FleetConfig {
            refresh_every: FLEET_REFRESH,
            policy_refresh_every: 1,
            read_backlog_alarms: true,
        },
    );
    (aws, fleet, calls)
}

/// The on-call metrics of reconciles through the controller's fleet view. Another
/// endpoint holds all 4 instances of the quota, so this one's share is 0; its requests then wait
/// with no instance: it has backlog, the quota keeps it from growing, nothing is left to grant,
/// and the scale-out AWS refused on the quota is counted once however often it is seen.
#[tokio::test]
async fn the_quota_metrics_show_backlog_that_the_quota_keeps_from_growing() {
    let (aws, fleet, calls) = quota_held_by_another().await;
    let every = FLEET_REFRESH;
    let mut object = resource(json!({}), true, None);
    let (client, _api) = FakeApiServer::start(&object);
    let ctx = context_over(client, Arc::new(fleet), calls);
    reconcile(Arc::new(object.clone()), ctx.clone())
        .await
        .unwrap();
    let labels = r#"{account="",region="us-east-1",instance_type="ml.g4dn.xlarge"}"#;
    let text = ctx.metrics.encode();
    for line in [
        format!("asyncscale_quota_instances{labels} 4"),
        format!("asyncscale_quota_in_use_instances{labels} 4"),
        format!("asyncscale_quota_grantable_instances{labels} 0"),
        format!("asyncscale_endpoints_with_backlog{labels} 0"),
        format!("asyncscale_endpoints_blocked_by_quota{labels} 0"),
    ] {
        assert!(text.contains(&line), "{line} missing in\n{text}");
    }

    // Requests arrive: CloudWatch puts the scale-from-zero alarm in ALARM, and a scale-out of
    // the other endpoint's kind fails on the quota.
    {
        let mut account = aws.account.lock().unwrap();
        account
            .handle(
                "cloudwatch",
                "SetAlarmState",
                &json!({"AlarmName": "asyncscale-endpoint/sdxl-async/variant/AllTraffic-HasBacklogWithoutCapacity", "StateValue": "ALARM", "StateReason": "backlog"}),
                "us-east-1",
            )
            .unwrap();
        account.add_activity(Activity {
            activity_id: String::new(),
            service_namespace: "sagemaker".into(),
            resource_id: RID.into(),
            scalable_dimension: "sagemaker:variant:DesiredInstanceCount".into(),
            description: "Setting desired instance count to 1.".into(),
            cause: "monitor alarm asyncscale-endpoint/sdxl-async/variant/AllTraffic-HasBacklogWithoutCapacity in state ALARM triggered policy asyncscale-scale-from-zero".into(),
            start_time: asyncscale_sim::account::now(),
            end_time: None,
            status_code: "Failed".into(),
            status_message: Some("Failed to set desired instance count to 1. Reason: The account-level service limit 'ml.g4dn.xlarge for endpoint usage' is 4 Instances, with current utilization of 4 Instances and a request delta of 1 Instances.".into()),
            not_scaled_reasons: None,
        });
    }
    for version in ["1001", "1002"] {
        tokio::time::sleep(every + Duration::from_millis(50)).await;
        object.metadata.resource_version = Some(version.into());
        reconcile(Arc::new(object.clone()), ctx.clone())
            .await
            .unwrap();
    }
    let text = ctx.metrics.encode();
    for line in [
        format!("asyncscale_endpoints_with_backlog{labels} 1"),
        format!("asyncscale_endpoints_blocked_by_quota{labels} 1"),
        format!("asyncscale_endpoints_waiting_without_capacity{labels} 1"),
        format!("asyncscale_quota_grantable_instances{labels} 0"),
        r#"asyncscale_scaling_activities_failed_total{account="",region="us-east-1",instance_type="ml.g4dn.xlarge",reason="quota"} 1"#.to_string(),
        r#"asyncscale_scaling_activities_failed_total{account="",region="us-east-1",instance_type="ml.g4dn.xlarge",reason="other"} 0"#.to_string(),
    ] {
        assert!(text.contains(&line), "{line} missing in\n{text}");
    }
}

/// A raise's wait for a peer's lowering makes the peer due at once, but costs at most one more
/// reconcile of it a resync, and none within its backoff: many raises looking again every few
/// seconds, or a peer whose lowering keeps failing, add no load on AWS beyond that.
#[tokio::test]
async fn a_peer_awaited_by_a_raise_is_nudged_at_most_once_a_resync_and_never_in_backoff() {
    let aws = sim().await;
    let status = converge_once(&aws).await;
    let object = resource(json!({}), true, Some(&status));
    let (client, _api) = FakeApiServer::start(&object);
    let ctx = context(client, aws_at(&aws.url()).await);
    let visit = || reconcile(Arc::new(object.clone()), ctx.clone());
    assert!(
        !ctx.nudge(&object),
        "never visited: its first reconcile is coming anyway"
    );
    visit().await.unwrap();
    // The object as this controller last saw it: not due, no AWS call.
    let calls = aws_calls(&aws);
    visit().await.unwrap();
    assert_eq!(aws_calls(&aws), calls, "not due");
    assert!(ctx.nudge(&object), "visited, then awaited: due now");
    assert!(
        !ctx.nudge(&object),
        "a second wait within the resync adds nothing"
    );
    // The nudge makes the next reconcile a full one, and only the next.
    visit().await.unwrap();
    let nudged = aws_calls(&aws);
    assert!(nudged > calls, "the nudged reconcile reads AWS");
    visit().await.unwrap();
    assert_eq!(aws_calls(&aws), nudged, "taken once");

    // A peer in backoff is left to it.
    aws.account.lock().unwrap().faults.push(
        asyncscale_sim::Fault::on("GetServiceQuota").failing("TooManyRequestsException", 400),
    );
    let failing = resource(json!({}), true, Some(&status));
    let (client, _api) = FakeApiServer::start(&failing);
    let ctx = context(client, aws_at(&aws.url()).await);
    let err = reconcile(Arc::new(failing.clone()), ctx.clone())
        .await
        .unwrap_err();
    assert!(err.retry_in().is_some(), "backs off: {err}");
    assert!(!ctx.nudge(&failing), "in backoff: no nudge");
}

/// A nudge that comes while the peer's own reconcile is running is not lost: that reconcile
/// may have read the others before the newcomer came, and its end sets the next visit a resync
/// away; the reconcile the nudge queued must still be a full one.
#[tokio::test]
async fn a_nudge_during_a_running_reconcile_makes_the_next_one_full() {
    let aws = sim().await;
    let status = converge_once(&aws).await;
    let object = resource(json!({}), true, Some(&status));
    let (client, _api) = FakeApiServer::start(&object);
    let ctx = context(client, aws_at(&aws.url()).await);
    reconcile(Arc::new(object.clone()), ctx.clone())
        .await
        .unwrap();
    aws.account.lock().unwrap().faults.push(
        asyncscale_sim::Fault::on("DescribeScalableTargets")
            .delayed(1.0)
            .times(1),
    );
    ctx.aws_changed(object.metadata.uid.as_deref().unwrap());
    let running = tokio::spawn(reconcile(Arc::new(object.clone()), ctx.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!running.is_finished(), "held in AWS");
    assert!(ctx.nudge(&object), "awaited while running");
    running.await.unwrap().unwrap();
    let calls = aws_calls(&aws);
    reconcile(Arc::new(object.clone()), ctx.clone())
        .await
        .unwrap();
    assert!(aws_calls(&aws) > calls, "the queued reconcile reads AWS");
}

/// A minimum the quota cannot grant counts as blocked by the quota even with nothing decided
/// (Ready False `WaitingForQuota`): another endpoint holds all 4 instances, and this one asks
/// for minCapacity 1.
#[tokio::test]
async fn a_minimum_waiting_for_the_quota_counts_as_blocked() {
    let (_aws, fleet, calls) = quota_held_by_another().await;
    let object = resource(json!({"minCapacity": 1}), true, None);
    let (client, api) = FakeApiServer::start(&object);
    let ctx = context_over(client, Arc::new(fleet), calls);
    reconcile(Arc::new(object.clone()), ctx.clone())
        .await
        .unwrap();
    assert_eq!(last_condition(&api, "Ready")["reason"], "WaitingForQuota");
    let labels = r#"{account="",region="us-east-1",instance_type="ml.g4dn.xlarge"}"#;
    let text = ctx.metrics.encode();
    let line = format!("asyncscale_endpoints_blocked_by_quota{labels} 1");
    assert!(text.contains(&line), "{line} missing in\n{text}");
}

/// A resource created while another's reconcile runs, and raised meanwhile, is counted by that
/// reconcile's raise: the peers are read from the watch cache again when the raise holds the
/// quota's lock, not only at the start (a soak saw a reconcile read its peers 3 s before its
/// raise at a controller's start, and the caps stood two over the quota until the lowerings).
#[tokio::test]
async fn a_peer_created_during_a_reconcile_is_counted_by_its_raise() {
    use asyncscale_engine::AutoscalingBackend;
    let aws = sim().await;
    aws.declare_endpoint("late-async", "AllTraffic", "ml.g4dn.xlarge");
    let object = created_at(resource(json!({}), true, None), 0, "uid-b", "b");
    let late = created_at(
        resource(json!({"endpointName": "late-async"}), true, None),
        60,
        "uid-late",
        "late",
    );
    let (client, api) = FakeApiServer::start(&object);
    let backend = aws_at(&aws.url()).await;
    let ctx = context(client, backend.clone());
    let (store, mut writer) = reflector::store::<AsyncEndpointScaling>();
    writer.apply_watcher_event(&watcher::Event::Apply(object.clone()));
    ctx.watch_stores(vec![WatchedStore {
        store,
        synced: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        all_namespaces: true,
    }]);
    // b's reconcile reads its peers (none), then waits on AWS...
    aws.account.lock().unwrap().faults.push(
        asyncscale_sim::Fault::on("DescribeScalableTargets")
            .delayed(1.0)
            .times(1),
    );
    let running = tokio::spawn(reconcile(Arc::new(object.clone()), ctx.clone()));
    // Its first AWS calls come after it read the watch cache (the held one counts when answered).
    while aws_calls(&aws) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!running.is_finished(), "held in AWS");
    // ... while the newcomer comes into the watch cache and raises its target to 2 of the 4.
    writer.apply_watcher_event(&watcher::Event::Apply(late.clone()));
    backend
        .register_target(
            &asyncscale_core::ScalableTarget {
                resource_id: "endpoint/late-async/variant/AllTraffic".into(),
                min_capacity: 0,
                max_capacity: 2,
                suspended: Default::default(),
            },
            None,
        )
        .await
        .unwrap();
    running.await.unwrap().unwrap();
    let state = aws.account.lock().unwrap().snapshot("us-east-1");
    let max_of = |endpoint: &str| {
        state["ScalableTargets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["ResourceId"] == format!("endpoint/{endpoint}/variant/AllTraffic"))
            .map(|t| t["MaxCapacity"].as_i64().unwrap())
    };
    assert_eq!(max_of("late-async"), Some(2));
    assert_eq!(
        max_of("sdxl-async"),
        Some(2),
        "the newcomer's 2 are reserved: {state}"
    );
    let clamped = last_condition(&api, "QuotaClamped");
    assert!(
        clamped["message"].as_str().unwrap().contains(
            "endpoint/late-async/variant/AllTraffic (new to this quota during this reconcile"
        ),
        "{clamped}"
    );
}

/// When kube-runtime will call again after `action` (it keeps the delay to itself but for Debug).
fn requeue_after(action: &Action) -> Option<Duration> {
    if *action == Action::await_change() {
        return None;
    }
    let shown = format!("{action:?}");
    let seconds = shown
        .split("Some(")
        .nth(1)
        .and_then(|rest| rest.split("s)").next())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("a requeue in seconds: {shown}"));
    Some(Duration::from_secs_f64(seconds))
}
