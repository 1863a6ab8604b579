//! How fast the scaling model runs: 24 simulated hours of one endpoint, and of 1,000 endpoints
//! sharing one account, each configured as asyncscale configures it (target tracking, the
//! scale-from-zero step policy and alarm, max clamped to the quota), under a day of varied load.
//!
//! `cargo bench -p asyncscale-sim --bench simulation` prints wall time and peak memory.

use std::time::Instant;

use asyncscale_sim::model::assumptions::Assumptions;
use asyncscale_sim::model::load::LoadProfile;
use asyncscale_sim::model::{EndpointSpec, World};
use asyncscale_sim::{Account, QuotaTable};
use serde_json::{Value, json};

const DAY: f64 = 86_400.0;
const LOAD: &str = "burst:5@10m, rate:30/m@1h-3h, burst:200@6h, rate:8/m@9h-17h, burst:3@20h";

fn call(account: &mut Account, service: &str, operation: &str, input: Value) -> Value {
    account
        .handle(service, operation, &input, "us-east-1")
        .unwrap_or_else(|e| panic!("{operation}: {e:?}"))
}

/// What `asyncscale apply` puts into the account for one endpoint, as the AWS API requests.
fn configure(account: &mut Account, endpoint: &str) {
    let rid = format!("endpoint/{endpoint}/variant/AllTraffic");
    let target = json!({"ServiceNamespace": "sagemaker", "ResourceId": rid, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"});
    let with = |extra: Value| {
        let mut v = target.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    call(
        account,
        "application-autoscaling",
        "RegisterScalableTarget",
        with(json!({"MinCapacity": 0, "MaxCapacity": 4})),
    );
    let dims = json!([{"Name": "EndpointName", "Value": endpoint}]);
    call(
        account,
        "application-autoscaling",
        "PutScalingPolicy",
        with(json!({
            "PolicyName": "asyncscale-target-tracking", "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 5.0, "ScaleInCooldown": 300, "ScaleOutCooldown": 300,
                "CustomizedMetricSpecification": {"MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker", "Dimensions": dims, "Statistic": "Average"}}
        })),
    );
    let step = call(
        account,
        "application-autoscaling",
        "PutScalingPolicy",
        with(json!({
            "PolicyName": "asyncscale-scale-from-zero", "PolicyType": "StepScaling",
            "StepScalingPolicyConfiguration": {"AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average", "Cooldown": 300,
                "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}]}
        })),
    );
    call(
        account,
        "cloudwatch",
        "PutMetricAlarm",
        json!({
            "AlarmName": format!("asyncscale-{rid}-HasBacklogWithoutCapacity"), "Namespace": "AWS/SageMaker",
            "MetricName": "HasBacklogWithoutCapacity", "Dimensions": dims, "Statistic": "Average", "Period": 60,
            "EvaluationPeriods": 2, "DatapointsToAlarm": 2, "Threshold": 1.0, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "missing", "AlarmActions": [step["PolicyARN"]]
        }),
    );
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn day_of(endpoints: usize) -> (f64, f64, usize) {
    let mut quotas = QuotaTable::default();
    quotas.applied.insert(
        "ml.g4dn.xlarge for endpoint usage".into(),
        (endpoints * 4) as f64,
    );
    let mut account = Account::new(quotas);
    let mut world = World::new(Assumptions::default(), 1_700_000_000.0);
    let load = LoadProfile::parse(LOAD).unwrap();
    let setup = Instant::now();
    for i in 0..endpoints {
        let name = format!("ep-{i:04}");
        configure(&mut account, &name);
        world.add_endpoint(EndpointSpec {
            endpoint: name,
            variant: "AllTraffic".into(),
            instance_type: "ml.g4dn.xlarge".into(),
            throughput_per_minute: 6.0,
            initial_instances: 0,
            load: Some(load.clone()),
            asynchronous: true,
        });
    }
    let setup_s = setup.elapsed().as_secs_f64();
    let run = Instant::now();
    world.advance(&mut account, DAY);
    let run_s = run.elapsed().as_secs_f64();
    let activities = account.activities().len();
    (setup_s, run_s, activities)
}

fn main() {
    for endpoints in [1, 1000] {
        let (setup_s, run_s, activities) = day_of(endpoints);
        println!(
            "{endpoints:>5} endpoint(s), 24 h simulated: {run_s:.3} s to run ({:.1} simulated days per second per endpoint), {setup_s:.3} s to configure, {activities} scaling activities, peak RSS so far {:.0} MiB",
            endpoints as f64 / run_s,
            peak_rss_mib()
        );
    }
}
