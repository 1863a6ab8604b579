//! The planner against a model of AWS: for any valid spec and any observed state, applying the
//! plan reaches the desired state, a second plan is empty, and nothing foreign is touched.

use std::collections::BTreeMap;

use asyncscale_api::{
    AsyncEndpointScalingSpec, DeletionPolicy, QuotaPolicy, QuotaSpec, ScaleFromZeroSpec,
    ScheduleSpec, TargetTrackingSpec,
};
use asyncscale_core::names::OWNER_TAG;
use asyncscale_core::plan::{Change, foreign_policies};
use asyncscale_core::*;
use proptest::prelude::*;

/// A model of the AWS semantics the plan relies on (docs/aws-behaviour.md §2.1-2.4, §2.14, §2.15,
/// §2.18, §4.1, §4.8):
/// policies need a registered target; deregistering a target deletes its policies; deleting a
/// step policy removes it from alarm actions but keeps the alarm; PutScalingPolicy keeps the ARN
/// of an existing policy; PutMetricAlarm overwrites the configuration and keeps the state.
#[derive(Debug, Clone)]
struct ModelAws {
    world: Observed,
    next_arn: u32,
}

impl ModelAws {
    fn new(world: Observed) -> Self {
        Self {
            world,
            next_arn: 1000,
        }
    }

    fn arn(&mut self, kind: &str) -> String {
        self.next_arn += 1;
        format!("arn:model:{kind}:{}", self.next_arn)
    }

    fn apply(&mut self, plan: &Plan) {
        let mut put_arns: BTreeMap<String, String> = BTreeMap::new();
        for planned in &plan.changes {
            match &planned.change {
                Change::RegisterTarget {
                    target,
                    tags,
                    create,
                } => match &mut self.world.target {
                    Some(existing) => {
                        assert!(!create, "create of an existing target");
                        existing.target = target.clone();
                    }
                    None => {
                        assert!(create, "update of a missing target");
                        let arn = self.arn("target");
                        self.world.target = Some(ObservedTarget {
                            target: target.clone(),
                            arn: Some(arn),
                            tags: tags.clone(),
                        });
                    }
                },
                Change::DeregisterTarget { .. } => {
                    self.world.target = None;
                    self.world.policies.clear();
                    self.world.scheduled_actions.clear();
                }
                // PutScheduledAction replaces what it is given (asyncscale gives every field)
                // and keeps the creation time; it needs the target, like a policy.
                Change::PutScheduledAction { action } => {
                    assert!(
                        self.world.target.is_some(),
                        "ObjectNotFoundException: scheduled action before its target"
                    );
                    match self
                        .world
                        .scheduled_actions
                        .iter_mut()
                        .find(|a| a.action.name == action.name)
                    {
                        Some(existing) => existing.action = action.clone(),
                        None => self.world.scheduled_actions.push(ObservedScheduledAction {
                            action: action.clone(),
                            arn: None,
                            created: Some("2026-01-01T00:00:00Z".parse().unwrap()),
                        }),
                    }
                }
                Change::DeleteScheduledAction { name, .. } => {
                    let before = self.world.scheduled_actions.len();
                    self.world
                        .scheduled_actions
                        .retain(|a| &a.action.name != name);
                    assert_eq!(
                        before,
                        self.world.scheduled_actions.len() + 1,
                        "ObjectNotFoundException: delete of a missing scheduled action"
                    );
                }
                Change::TagTarget { tags, .. } => self
                    .world
                    .target
                    .as_mut()
                    .unwrap()
                    .tags
                    .extend(tags.clone()),
                Change::UntagTarget { keys, .. } => {
                    let target = self.world.target.as_mut().unwrap();
                    keys.iter().for_each(|k| {
                        target.tags.remove(k);
                    });
                }
                Change::TagAlarm { tags, .. } => {
                    let alarm = self.world.alarm.as_mut().expect("tag of a missing alarm");
                    alarm.tags.get_or_insert_default().extend(tags.clone());
                }
                Change::UntagAlarm { keys, .. } => {
                    let alarm = self.world.alarm.as_mut().expect("untag of a missing alarm");
                    if let Some(tags) = alarm.tags.as_mut() {
                        keys.iter().for_each(|k| {
                            tags.remove(k);
                        });
                    }
                }
                Change::PutPolicy { policy } => {
                    assert!(
                        self.world.target.is_some(),
                        "ObjectNotFoundException: policy before its target"
                    );
                    let arn = match self
                        .world
                        .policies
                        .iter_mut()
                        .find(|p| p.policy.name == policy.name)
                    {
                        Some(existing) => {
                            existing.policy = policy.clone();
                            existing.arn.clone()
                        }
                        None => {
                            let arn = self.arn("policy");
                            self.world.policies.push(ObservedPolicy {
                                policy: policy.clone(),
                                arn: arn.clone(),
                            });
                            arn
                        }
                    };
                    put_arns.insert(policy.name.clone(), arn);
                }
                Change::DeletePolicy { name, .. } => {
                    let before = self.world.policies.len();
                    let arn = self
                        .world
                        .policies
                        .iter()
                        .find(|p| &p.policy.name == name)
                        .map(|p| p.arn.clone());
                    self.world.policies.retain(|p| &p.policy.name != name);
                    assert_eq!(
                        before,
                        self.world.policies.len() + 1,
                        "ObjectNotFoundException: delete of a missing policy"
                    );
                    if let (Some(alarm), Some(arn)) = (self.world.alarm.as_mut(), arn) {
                        alarm.alarm.alarm_actions.retain(|a| *a != arn);
                    }
                }
                Change::PutAlarm { alarm, action, .. } => {
                    let arn = match action {
                        AlarmActionArn::Known(arn) => arn.clone(),
                        AlarmActionArn::OfPolicy(name) => put_arns
                            .get(name)
                            .expect("alarm before its step policy")
                            .clone(),
                    };
                    assert!(
                        self.world.policies.iter().any(|p| p.arn == arn),
                        "alarm action names no policy"
                    );
                    let alarm = MetricAlarm {
                        alarm_actions: vec![arn],
                        ..alarm.clone()
                    };
                    let state = self.world.alarm.as_ref().and_then(|a| a.state.clone());
                    self.world.alarm = Some(ObservedAlarm {
                        alarm,
                        arn: Some("arn:model:alarm".into()),
                        state,
                        state_since: None,
                        tags: None,
                    });
                }
                Change::DeleteAlarm { .. } => {
                    assert!(
                        self.world.alarm.take().is_some(),
                        "delete of a missing alarm"
                    );
                }
            }
        }
    }
}

fn owner() -> Owner {
    Owner {
        namespace: "ml".into(),
        name: "sdxl".into(),
        uid: None,
    }
}

prop_compose! {
    fn specs()(
        min in 0..3i32,
        extra in 0..30i32,
        target in 0.5f64..500.0,
        cooldowns in (0..900i32, 0..900i32, 0..900i32),
        disable_scale_in in any::<bool>(),
        enabled in any::<bool>(),
        period in prop::sample::select(vec![60, 120, 300]),
        eval in 1..5i32,
        datapoints_seed in 0..5i32,
        adjustment in 1..3i32,
        suspend in any::<bool>(),
        ignore_quota in any::<bool>(),
        schedules in prop::collection::vec((0..2i32, prop::option::of(0..40i32), 0..3usize, any::<bool>()), 0..3),
    ) -> AsyncEndpointScalingSpec {
        AsyncEndpointScalingSpec {
            endpoint_name: "sdxl-async".into(),
            variant_name: "AllTraffic".into(),
            instance_type: "ml.g4dn.xlarge".into(),
            region: None,
            role_arn: None,
            external_id: None,
            min_capacity: min,
            max_capacity: min.max(1) + extra,
            target_tracking: TargetTrackingSpec {
                target_value: target,
                scale_in_cooldown_seconds: cooldowns.0,
                scale_out_cooldown_seconds: cooldowns.1,
                disable_scale_in,
            },
            scale_from_zero: ScaleFromZeroSpec {
                enabled,
                period_seconds: period,
                evaluation_periods: eval,
                datapoints_to_alarm: 1 + datapoints_seed % eval,
                cooldown_seconds: cooldowns.2,
                scaling_adjustment: adjustment,
            },
            quota: QuotaSpec { policy: if ignore_quota { QuotaPolicy::Ignore } else { QuotaPolicy::Clamp } },
            suspend,
            schedules: schedules.into_iter().enumerate().map(|(i, (min, max, expr, zoned))| {
                ScheduleSpec {
                    time_zone: zoned.then(|| "Europe/Berlin".to_string()),
                    min_capacity: Some(min),
                    max_capacity: max.map(|extra| min.max(1) + extra),
                    ..ScheduleSpec::new(&format!("s{i}"), ["cron(50 7 ? * MON-FRI *)", "rate(2 hours)", "at(2026-12-24T18:00:00)"][expr])
                }
            }).collect(),
            deletion_policy: DeletionPolicy::Delete,
        }
    }
}

fn quotas() -> impl Strategy<Value = QuotaLookup> {
    prop_oneof![
        (0.0f64..40.0).prop_map(|value| QuotaLookup::Known(Quota {
            name: "ml.g4dn.xlarge for endpoint usage".into(),
            code: "L-B67CFA0C".into(),
            value,
            source: QuotaSource::Applied,
        })),
        Just(QuotaLookup::Unknown {
            name: "ml.g4dn.xlarge for endpoint usage".into(),
            reason: "AccessDenied".into()
        }),
    ]
}

fn random_policy(name: String, kind: u8, n: i32) -> ScalingPolicy {
    let config = match kind {
        0 => PolicyConfig::TargetTracking(TargetTrackingConfig {
            target_value: f64::from(n),
            metric: None,
            scale_in_cooldown: Some(n),
            scale_out_cooldown: None,
            disable_scale_in: n % 2 == 0,
        }),
        1 => PolicyConfig::Step(StepScalingConfig {
            adjustment_type: Some("ExactCapacity".into()),
            metric_aggregation_type: None,
            cooldown: Some(n),
            min_adjustment_magnitude: None,
            step_adjustments: vec![StepAdjustment {
                lower_bound: Some(0.0),
                upper_bound: None,
                scaling_adjustment: n,
            }],
        }),
        _ => PolicyConfig::Other("PredictiveScaling".into()),
    };
    ScalingPolicy {
        name,
        resource_id: "endpoint/sdxl-async/variant/AllTraffic".into(),
        config,
    }
}

prop_compose! {
    fn worlds()(
        target in prop::option::of((0..5i32, 1..50i32, any::<bool>())),
        ours in prop::collection::vec((0..2usize, 0..3u8, 1..100i32), 0..3),
        foreign in prop::collection::vec((0..3u8, 1..100i32), 0..3),
        alarm in prop::option::of((1..5i32, 0.0f64..3.0, any::<bool>(), prop::option::of(any::<bool>()))),
        actions in prop::collection::vec((any::<bool>(), 0..3usize, 0..4i32), 0..4),
    ) -> Observed {
        let names = ResourceNames::new("sdxl-async", "AllTraffic");
        let mut world = Observed::empty();
        let mut next = 0;
        if let Some((min, max, suspended)) = target {
            let tags = owner().tags();
            world.target = Some(ObservedTarget {
                target: ScalableTarget {
                    resource_id: names.resource_id.clone(),
                    min_capacity: min,
                    max_capacity: max,
                    suspended: SuspendedState::all(suspended),
                },
                arn: Some("arn:model:target:1".into()),
                tags,
            });
            for (which, kind, n) in ours {
                let name = [&names.target_tracking_policy, &names.scale_from_zero_policy][which].clone();
                if world.policy(&name).is_none() {
                    next += 1;
                    world.policies.push(ObservedPolicy { policy: random_policy(name, kind, n), arn: format!("arn:model:policy:{next}") });
                }
            }
            for (i, (kind, n)) in foreign.into_iter().enumerate() {
                next += 1;
                world.policies.push(ObservedPolicy { policy: random_policy(format!("team-policy-{i}"), kind, n), arn: format!("arn:model:policy:{next}") });
            }
            // Scheduled actions: asyncscale's (named like a schedule the spec may have) and others'.
            for (i, (ours, which, n)) in actions.into_iter().enumerate() {
                let name = if ours { format!("asyncscale-s{which}") } else { format!("team-action-{i}") };
                if world.scheduled_action(&name).is_none() {
                    world.scheduled_actions.push(ObservedScheduledAction {
                        action: ScheduledAction {
                            name,
                            resource_id: names.resource_id.clone(),
                            schedule: "cron(0 9 ? * SAT *)".into(),
                            timezone: None,
                            start_time: None,
                            end_time: None,
                            min_capacity: Some(n),
                            max_capacity: (n % 2 == 0).then_some(n + 1),
                        },
                        arn: None,
                        created: Some("2026-01-01T00:00:00Z".parse().unwrap()),
                    });
                }
            }
        }
        if let Some((periods, threshold, enabled, tagged_ours)) = alarm {
            // The alarm's tags, when read: ours, or another resource's.
            // Observe reads an alarm's tags whenever the target is missing.
            let tagged_ours = if world.target.is_none() { Some(tagged_ours.unwrap_or(true)) } else { tagged_ours };
            let tags = tagged_ours.map(|ours| {
                if ours {
                    owner().tags()
                } else {
                    Tags::from([(OWNER_TAG.to_string(), "team-b/other".to_string())])
                }
            });
            world.alarm = Some(ObservedAlarm {
                alarm: MetricAlarm {
                    name: names.alarm.clone(),
                    description: None,
                    namespace: "AWS/SageMaker".into(),
                    metric_name: "HasBacklogWithoutCapacity".into(),
                    dimensions: vec![],
                    statistic: "Average".into(),
                    period: 60,
                    evaluation_periods: periods,
                    datapoints_to_alarm: None,
                    threshold,
                    comparison_operator: "GreaterThanThreshold".into(),
                    treat_missing_data: None,
                    actions_enabled: enabled,
                    alarm_actions: vec!["arn:model:policy:gone".into()],
                    ok_actions: vec![],
                    insufficient_data_actions: vec![],
                },
                arn: Some("arn:model:alarm".into()),
                state: Some("ALARM".into()),
                state_since: None,
                tags,
            });
        }
        world
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn applying_a_plan_converges_and_spares_foreign_policies(spec in specs(), quota in quotas(), world in worlds(), hours in 0..2000i64) {
        let now = jiff::Timestamp::from_second(1_790_000_000 + hours * 3600).unwrap();
        let desired = match desire(&spec, &owner(), &quota, world.target.as_ref().map(|t| &t.target), None) {
            Ok(mut d) => {
                asyncscale_core::scheduled::follow_schedules(&mut d, &spec, &quota, &world, now);
                d
            }
            Err(DesireError::QuotaTooLow { quota, .. }) => {
                prop_assert!(quota.value.floor() < f64::from(spec.min_capacity.max(1)));
                return Ok(());
            }
            // With the quota unknown, MaxCapacity is never raised, not even to minCapacity.
            Err(DesireError::QuotaUnknownBelowMin { max_in_aws, min_capacity, .. }) => {
                prop_assert!(quota.value().is_none() && min_capacity > max_in_aws);
                return Ok(());
            }
        };
        let plan = match plan_apply(&desired, &world, &Adoption::new(false)) {
            Ok(plan) => plan,
            Err(Blocked::Conflict(message)) => {
                // Only another resource's alarm, seen without a target, may stop the plan.
                prop_assert!(world.target.is_none() && message.contains("is managed by"), "{message}");
                return Ok(());
            }
        };
        let foreign_before: Vec<_> = world.policies.iter().filter(|p| !desired.names.is_ours(&p.policy.name)).cloned().collect();
        let foreign_actions_before = asyncscale_core::plan::foreign_scheduled_actions(&world);
        let mut aws = ModelAws::new(world);
        aws.apply(&plan);
        let after = &aws.world;

        let target = after.target.as_ref().expect("target registered");
        prop_assert_eq!(&target.target, &desired.target);
        prop_assert_eq!(target.tags.get(OWNER_TAG), Some(&"ml/sdxl".to_string()));
        let highest = spec.schedules.iter().filter_map(|s| s.max_capacity).fold(spec.max_capacity, i32::max);
        prop_assert!(desired.target.max_capacity <= highest);
        prop_assert!(desired.target.min_capacity <= desired.target.max_capacity);
        if let Some(q) = quota.value().filter(|_| spec.quota.policy != QuotaPolicy::Ignore) {
            prop_assert!(f64::from(desired.target.max_capacity) <= q.value.floor().max(1.0));
        }
        // Every schedule's action as desired, no other action of ours, others' untouched.
        for d in &desired.schedules {
            let have = after.scheduled_action(&d.action.name).expect("scheduled action created");
            prop_assert!(have.action.same_as(&d.action), "{:?} != {:?}", have.action, d.action);
        }
        prop_assert_eq!(
            after.scheduled_actions.iter().filter(|a| a.action.name.starts_with("asyncscale-")).count(),
            desired.schedules.len()
        );
        prop_assert_eq!(asyncscale_core::plan::foreign_scheduled_actions(after), foreign_actions_before);
        prop_assert_eq!(&after.policy(&desired.names.target_tracking_policy).unwrap().policy, &desired.target_tracking);
        match &desired.scale_from_zero {
            Some(sfz) => {
                let step = after.policy(&sfz.policy.name).expect("step policy");
                prop_assert_eq!(&step.policy, &sfz.policy);
                prop_assert_eq!(&after.alarm.as_ref().unwrap().alarm, &sfz.alarm_with_action(&step.arn));
            }
            None => {
                prop_assert!(after.policy(&desired.names.scale_from_zero_policy).is_none());
                prop_assert!(after.alarm.is_none());
            }
        }
        let foreign_after: Vec<_> = after.policies.iter().filter(|p| !desired.names.is_ours(&p.policy.name)).cloned().collect();
        prop_assert_eq!(foreign_before, foreign_after);

        let again = plan_apply(&desired, after, &Adoption::new(false)).unwrap();
        prop_assert!(again.is_empty(), "second plan not empty: {:?}", again.changes);
    }

    #[test]
    fn delete_removes_everything_of_ours_and_nothing_else(spec in specs(), world in worlds()) {
        let names = ResourceNames::new(&spec.endpoint_name, &spec.variant_name);
        let foreign = foreign_policies(&names, &world);
        let foreign_actions = asyncscale_core::plan::foreign_scheduled_actions(&world);
        let plan = plan_delete(&names, &owner(), &world, DeletionPolicy::Delete);
        // Without its target, the alarm is ours only when its tags say so.
        let alarm_is_ours = world.target.is_some()
            || world.alarm.as_ref().and_then(|a| a.tags.as_ref()).is_some_and(|t| t.get(OWNER_TAG) == Some(&"ml/sdxl".to_string()));
        let alarm_before = world.alarm.clone();
        let mut aws = ModelAws::new(world);
        aws.apply(&plan);
        let after = &aws.world;
        if alarm_is_ours {
            prop_assert!(after.alarm.is_none());
        } else {
            prop_assert_eq!(&after.alarm, &alarm_before, "another resource's alarm was touched");
        }
        prop_assert!(after.policies.iter().all(|p| !names.is_ours(&p.policy.name)));
        prop_assert_eq!(foreign_policies(&names, after), foreign.clone());
        prop_assert_eq!(asyncscale_core::plan::foreign_scheduled_actions(after), foreign_actions.clone());
        prop_assert!(after.scheduled_actions.iter().all(|a| !a.action.name.starts_with("asyncscale-")));
        match &after.target {
            Some(t) => {
                prop_assert!(!foreign.is_empty() || !foreign_actions.is_empty(), "target kept without a reason");
                prop_assert!(!t.tags.contains_key(OWNER_TAG), "target still tagged as ours");
                prop_assert_eq!(t.target.suspended, SuspendedState::default(), "handed back suspended");
            }
            None => prop_assert!(foreign.is_empty() && foreign_actions.is_empty(), "deregistered a target that other tools' policies or scheduled actions need"),
        }
        prop_assert!(plan_delete(&names, &owner(), after, DeletionPolicy::Delete).is_empty());
    }
}
