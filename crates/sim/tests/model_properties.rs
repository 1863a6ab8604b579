//! Invariants of the scaling model for any configuration and load: capacity stays within the
//! scalable target's bounds, never past the account's instance quota across endpoints, starting
//! plus serving instances are what was asked for, and no request is lost or invented.

use asyncscale_sim::model::assumptions::Assumptions;
use asyncscale_sim::model::load::{LoadPart, LoadProfile};
use asyncscale_sim::model::{EndpointSpec, World};
use asyncscale_sim::{Account, QuotaTable};
use proptest::prelude::*;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Config {
    min: u32,
    max: u32,
    target: f64,
    step_cooldown: u32,
    with_step: bool,
    adjustment_type: &'static str,
    adjustment: i64,
}

fn configure(account: &mut Account, endpoint: &str, c: &Config) {
    let rid = format!("endpoint/{endpoint}/variant/AllTraffic");
    let base = json!({"ServiceNamespace": "sagemaker", "ResourceId": rid, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"});
    let with = |extra: Value| {
        let mut v = base.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let call = |account: &mut Account, service: &str, op: &str, input: Value| {
        account.handle(service, op, &input, "us-east-1").unwrap()
    };
    call(
        account,
        "application-autoscaling",
        "RegisterScalableTarget",
        with(json!({"MinCapacity": c.min, "MaxCapacity": c.max})),
    );
    let dims = json!([{"Name": "EndpointName", "Value": endpoint}]);
    call(
        account,
        "application-autoscaling",
        "PutScalingPolicy",
        with(json!({
            "PolicyName": "tt", "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {"TargetValue": c.target,
                "CustomizedMetricSpecification": {"MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker", "Dimensions": dims, "Statistic": "Average"}}
        })),
    );
    if c.with_step {
        let step = call(
            account,
            "application-autoscaling",
            "PutScalingPolicy",
            with(json!({
                "PolicyName": "step", "PolicyType": "StepScaling",
                "StepScalingPolicyConfiguration": {"AdjustmentType": c.adjustment_type, "Cooldown": c.step_cooldown,
                    "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": c.adjustment}]}
            })),
        );
        call(
            account,
            "cloudwatch",
            "PutMetricAlarm",
            json!({
                "AlarmName": format!("{endpoint}-from-zero"), "Namespace": "AWS/SageMaker", "MetricName": "HasBacklogWithoutCapacity",
                "Dimensions": dims, "Statistic": "Average", "Period": 60, "EvaluationPeriods": 2, "DatapointsToAlarm": 2,
                "Threshold": 1.0, "ComparisonOperator": "GreaterThanOrEqualToThreshold", "AlarmActions": [step["PolicyARN"]]
            }),
        );
    }
}

prop_compose! {
    fn configs()(
        min in 0..3u32,
        extra in 0..12u32,
        target in 0.5f64..50.0,
        step_cooldown in prop::sample::select(vec![0u32, 60, 300, 900]),
        with_step in any::<bool>(),
        kind in 0..3usize,
        adjustment in 1..5i64,
    ) -> Config {
        let adjustment_type = ["ChangeInCapacity", "PercentChangeInCapacity", "ExactCapacity"][kind];
        Config { min, max: min.max(1) + extra, target, step_cooldown, with_step, adjustment_type, adjustment }
    }
}

fn loads() -> impl Strategy<Value = LoadProfile> {
    let part = prop_oneof![
        (0.0f64..300.0, 0.0f64..7200.0).prop_map(|(count, at_s)| LoadPart::Burst {
            count: count.floor(),
            at_s
        }),
        (0.0f64..60.0, 0.0f64..7200.0, 60.0f64..3600.0).prop_map(|(per_minute, from_s, len)| {
            LoadPart::Rate {
                per_minute,
                from_s,
                to_s: from_s + len,
            }
        }),
    ];
    prop::collection::vec(part, 1..4).prop_map(|parts| LoadProfile { parts })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn capacity_stays_within_bounds_and_quota_and_requests_are_conserved(
        configs in prop::collection::vec(configs(), 1..4),
        load in loads(),
        quota in prop::option::of(1u32..20),
        provisioning in prop::sample::select(vec![0.0f64, 60.0, 420.0, 900.0]),
        throughput in 0.5f64..20.0,
    ) {
        let mut table = QuotaTable::default();
        if let Some(q) = quota {
            table.applied.insert("ml.g4dn.xlarge for endpoint usage".into(), f64::from(q));
        }
        let mut account = Account::new(table);
        let assumptions = Assumptions { provisioning_delay_s: provisioning, ..Assumptions::default() };
        let mut world = World::new(assumptions, 1_700_000_000.0);
        world.record_timeline = true;
        for (i, c) in configs.iter().enumerate() {
            let name = format!("ep-{i}");
            configure(&mut account, &name, c);
            world.add_endpoint(EndpointSpec {
                endpoint: name,
                variant: "AllTraffic".into(),
                instance_type: "ml.g4dn.xlarge".into(),
                throughput_per_minute: throughput,
                initial_instances: 0,
                load: Some(load.clone()),
                asynchronous: true,
            });
        }
        world.advance(&mut account, 3.0 * 3600.0);

        let minutes = world.endpoints[0].timeline.len();
        for m in 0..minutes {
            let mut used = 0;
            for (e, c) in world.endpoints.iter().zip(&configs) {
                let r = &e.timeline[m];
                // Starting from zero, capacity only moves through policies, which clamp to the bounds.
                prop_assert!(r.desired <= c.max, "minute {m}: desired {} above max {}", r.desired, c.max);
                prop_assert!(r.desired == 0 || r.desired >= c.min, "minute {m}: desired {} below min {}", r.desired, c.min);
                prop_assert!(r.in_service <= r.desired, "minute {m}: {} in service but {} desired", r.in_service, r.desired);
                prop_assert!(r.backlog >= -1e-6);
                used += r.desired;
            }
            if let Some(q) = quota {
                prop_assert!(used <= q, "minute {m}: {used} instances across endpoints, quota {q}");
            }
        }
        for e in &world.endpoints {
            let stats = &e.stats;
            prop_assert!((stats.arrived - stats.processed - e.backlog).abs() < 1e-6, "requests lost or invented");
            if quota.is_none() {
                prop_assert!(stats.failed_activities.is_empty(), "no quota, no quota failure");
            }
            for (_, message) in &stats.failed_activities {
                prop_assert!(message.contains("account-level service limit 'ml.g4dn.xlarge for endpoint usage'"), "{message}");
            }
        }
    }
}
