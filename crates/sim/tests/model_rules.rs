//! Application Auto Scaling rules of the scaling model that asyncscale's later work relies on
//! (docs/aws-behaviour.md): capacity follows a change of MinCapacity or MaxCapacity at once
//! (§2.13), several target-tracking policies scale in only together (§2.11), and an invocation
//! that cannot scale leaves a not-scaled activity that only IncludeNotScaledActivities shows
//! (§2.8).

use asyncscale_sim::model::assumptions::Assumptions;
use asyncscale_sim::model::{EndpointSpec, World};
use asyncscale_sim::{Account, QuotaTable};
use serde_json::{Value, json};

const RID: &str = "endpoint/e/variant/AllTraffic";

fn aas(account: &mut Account, op: &str, extra: Value) -> Value {
    let mut input = json!({"ServiceNamespace": "sagemaker", "ResourceId": RID, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"});
    input
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    account
        .handle("application-autoscaling", op, &input, "us-east-1")
        .unwrap()
}

fn target_tracking(account: &mut Account, name: &str, metric: &str, target: f64) {
    aas(
        account,
        "PutScalingPolicy",
        json!({"PolicyName": name, "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {"TargetValue": target, "ScaleInCooldown": 0,
                "CustomizedMetricSpecification": {"MetricName": metric, "Namespace": "AWS/SageMaker",
                    "Dimensions": [{"Name": "EndpointName", "Value": "e"}], "Statistic": "Average"}}}),
    );
}

/// One endpoint `e` with `instances` in service that finishes `throughput` requests a minute.
fn world(instances: u32, throughput: f64) -> World {
    let mut world = World::new(Assumptions::default(), 1_700_000_000.0);
    world.add_endpoint(EndpointSpec {
        endpoint: "e".into(),
        variant: "AllTraffic".into(),
        instance_type: "ml.g4dn.xlarge".into(),
        throughput_per_minute: throughput,
        initial_instances: instances,
        load: None,
        asynchronous: true,
    });
    world
}

fn activities(account: &mut Account, include_not_scaled: bool) -> Vec<Value> {
    aas(
        account,
        "DescribeScalingActivities",
        json!({"IncludeNotScaledActivities": include_not_scaled}),
    )["ScalingActivities"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn raising_min_capacity_scales_out_at_once_and_lowering_max_scales_in() {
    let mut account = Account::new(QuotaTable::default());
    let mut world = world(0, 6.0);
    aas(
        &mut account,
        "RegisterScalableTarget",
        json!({"MinCapacity": 0, "MaxCapacity": 4}),
    );
    world.advance(&mut account, 60.0);
    assert_eq!(world.endpoints[0].desired, 0);

    aas(
        &mut account,
        "RegisterScalableTarget",
        json!({"MinCapacity": 2}),
    );
    world.advance(&mut account, 1.0);
    assert_eq!(
        world.endpoints[0].desired, 2,
        "pre-warmed without any alarm"
    );
    let newest = &activities(&mut account, false)[0];
    assert_eq!(newest["Cause"], "minimum capacity was set to 2");
    assert_eq!(
        newest["Description"],
        "Setting desired instance count to 2."
    );
    world.advance(&mut account, 8.0 * 60.0);
    assert_eq!(world.endpoints[0].in_service, 2, "after provisioning");

    aas(
        &mut account,
        "RegisterScalableTarget",
        json!({"MinCapacity": 0, "MaxCapacity": 1}),
    );
    world.advance(&mut account, 1.0);
    assert_eq!(
        (world.endpoints[0].desired, world.endpoints[0].in_service),
        (1, 1)
    );
    let newest = &activities(&mut account, false)[0];
    assert_eq!(newest["Cause"], "maximum capacity was set to 1");
    assert_eq!(newest["StatusCode"], "Successful");
}

#[test]
fn raising_min_capacity_past_the_quota_fails_whole_with_aws_words() {
    let quotas = asyncscale_sim::quota_table(&["ml.g4dn.xlarge=1".into()], &[]).unwrap();
    let mut account = Account::new(quotas);
    let mut world = world(0, 6.0);
    aas(
        &mut account,
        "RegisterScalableTarget",
        json!({"MinCapacity": 3, "MaxCapacity": 4}),
    );
    world.advance(&mut account, 1.0);
    assert_eq!(world.endpoints[0].desired, 0);
    let newest = &activities(&mut account, false)[0];
    assert_eq!(newest["StatusCode"], "Failed");
    assert_eq!(newest["Cause"], "minimum capacity was set to 3");
    assert!(
        newest["StatusMessage"]
            .as_str()
            .unwrap()
            .contains("is 1 Instances, with current utilization of 0 Instances and a request delta of 3 Instances"),
        "{newest}"
    );
}

/// 4 instances, 40 queued requests that nobody processes: 10 a instance, 40 in all.
fn idle_backlog(account: &mut Account, world: &mut World) {
    aas(
        account,
        "RegisterScalableTarget",
        json!({"MinCapacity": 0, "MaxCapacity": 8}),
    );
    let now = world.now;
    world.endpoints[0].enqueue(now, 40.0);
}

#[test]
fn target_tracking_scales_in_only_when_every_policy_is_ready() {
    // Backlog per instance 10 is far below a target of 100: this policy alone scales in.
    let mut account = Account::new(QuotaTable::default());
    let mut alone = world(4, 0.0);
    idle_backlog(&mut account, &mut alone);
    target_tracking(
        &mut account,
        "per-instance",
        "ApproximateBacklogSizePerInstance",
        100.0,
    );
    alone.advance(&mut account, 30.0 * 60.0);
    assert!(alone.endpoints[0].desired < 4, "one ready policy scales in");

    // A second policy on the whole backlog (40, between 0.9 × 42 and 42) is not ready: no scale-in.
    let mut account = Account::new(QuotaTable::default());
    let mut both = world(4, 0.0);
    idle_backlog(&mut account, &mut both);
    target_tracking(
        &mut account,
        "per-instance",
        "ApproximateBacklogSizePerInstance",
        100.0,
    );
    target_tracking(&mut account, "whole-queue", "ApproximateBacklogSize", 42.0);
    both.advance(&mut account, 30.0 * 60.0);
    assert_eq!(
        both.endpoints[0].desired, 4,
        "AWS scales in only when all target-tracking policies with scale-in are ready"
    );
}

#[test]
fn a_policy_that_wants_more_than_max_capacity_leaves_a_not_scaled_activity() {
    let mut account = Account::new(QuotaTable::default());
    let mut world = world(2, 0.0);
    aas(
        &mut account,
        "RegisterScalableTarget",
        json!({"MinCapacity": 0, "MaxCapacity": 2}),
    );
    target_tracking(&mut account, "tt", "ApproximateBacklogSizePerInstance", 5.0);
    let now = world.now;
    world.endpoints[0].enqueue(now, 100.0);
    world.advance(&mut account, 20.0 * 60.0);
    assert_eq!(world.endpoints[0].desired, 2);
    assert!(
        activities(&mut account, false).is_empty(),
        "not-scaled activities only when asked for"
    );
    let all = activities(&mut account, true);
    assert_eq!(all.len(), 1, "one per reason, not one a minute: {all:#?}");
    assert_eq!(
        all[0]["NotScaledReasons"],
        json!([{"Code": "AlreadyAtMaxCapacity", "MaxCapacity": 2, "CurrentCapacity": 2}])
    );
    assert_eq!(all[0]["StatusCode"], "Failed");
}
