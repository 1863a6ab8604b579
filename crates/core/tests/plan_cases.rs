//! Specific planner behaviours: order, ownership and conflicts.

use asyncscale_core::names::OWNER_TAG;
use asyncscale_core::plan::{Change, Ownership, ownership};
use asyncscale_core::*;

fn spec(yaml_spec: &str) -> asyncscale_api::AsyncEndpointScalingSpec {
    let doc = format!(
        "apiVersion: asyncscale.io/v1alpha1\nkind: AsyncEndpointScaling\nmetadata: {{name: sdxl, namespace: ml}}\nspec: {yaml_spec}\n"
    );
    asyncscale_api::parse_manifests("t.yaml", &doc)
        .unwrap()
        .remove(0)
        .resource
        .spec
}

fn owner() -> Owner {
    Owner {
        namespace: "ml".into(),
        name: "sdxl".into(),
        uid: Some("u-1".into()),
    }
}

const BASIC: &str = "{endpointName: sdxl-async, instanceType: ml.g4dn.xlarge, maxCapacity: 20, targetTracking: {targetValue: 5}}";

fn quota4() -> QuotaLookup {
    QuotaLookup::Known(Quota {
        name: "ml.g4dn.xlarge for endpoint usage".into(),
        code: "L-B67CFA0C".into(),
        value: 4.0,
        source: QuotaSource::Applied,
    })
}

fn kinds(plan: &Plan) -> Vec<&'static str> {
    plan.changes
        .iter()
        .map(|c| match &c.change {
            Change::RegisterTarget { create: true, .. } => "register",
            Change::RegisterTarget { create: false, .. } => "update-target",
            Change::DeregisterTarget { .. } => "deregister",
            Change::TagTarget { .. } => "tag",
            Change::UntagTarget { .. } => "untag",
            Change::PutPolicy { .. } => "put-policy",
            Change::DeletePolicy { .. } => "delete-policy",
            Change::PutAlarm { .. } => "put-alarm",
            Change::DeleteAlarm { .. } => "delete-alarm",
        })
        .collect()
}

fn hand_made_target(tags: Tags) -> Observed {
    let mut observed = Observed::empty();
    observed.target = Some(ObservedTarget {
        target: ScalableTarget {
            resource_id: "endpoint/sdxl-async/variant/AllTraffic".into(),
            min_capacity: 0,
            max_capacity: 20,
            suspended: SuspendedState::default(),
        },
        arn: Some("arn:aws:application-autoscaling:us-east-1:1:scalable-target/abc".into()),
        tags,
    });
    observed
}

#[test]
fn first_apply_creates_target_then_policies_then_alarm_with_the_clamped_max() {
    let desired = desire(&spec(BASIC), &owner(), &quota4()).unwrap();
    let plan = plan_apply(&desired, &Observed::empty(), false).unwrap();
    assert_eq!(
        kinds(&plan),
        ["register", "put-policy", "put-policy", "put-alarm"]
    );
    let Change::RegisterTarget { target, tags, .. } = &plan.changes[0].change else {
        unreachable!()
    };
    assert_eq!(target.max_capacity, 4);
    assert_eq!(tags.get(OWNER_TAG).map(String::as_str), Some("ml/sdxl"));
    let Change::PutAlarm { action, .. } = &plan.changes[3].change else {
        unreachable!()
    };
    assert_eq!(
        action,
        &AlarmActionArn::OfPolicy("asyncscale-scale-from-zero".into())
    );
    assert!(plan.changes[0].summary.starts_with("+ register scalable target endpoint/sdxl-async/variant/AllTraffic (minCapacity 0, maxCapacity 4"));
}

#[test]
fn raising_min_capacity_removes_alarm_before_its_policy() {
    let desired0 = desire(&spec(BASIC), &owner(), &quota4()).unwrap();
    let mut world = Observed::empty();
    world.target = Some(ObservedTarget {
        target: desired0.target.clone(),
        arn: Some("t".into()),
        tags: owner().tags(),
    });
    world.policies.push(ObservedPolicy {
        policy: desired0.target_tracking.clone(),
        arn: "p1".into(),
    });
    let sfz = desired0.scale_from_zero.clone().unwrap();
    world.policies.push(ObservedPolicy {
        policy: sfz.policy.clone(),
        arn: "p2".into(),
    });
    world.alarm = Some(ObservedAlarm {
        alarm: sfz.alarm_with_action("p2"),
        arn: None,
        state: Some("OK".into()),
    });
    assert!(
        plan_apply(&desired0, &world, false).unwrap().is_empty(),
        "in sync"
    );

    let desired1 = desire(
        &spec(&BASIC.replace("maxCapacity: 20", "maxCapacity: 20, minCapacity: 1")),
        &owner(),
        &quota4(),
    )
    .unwrap();
    let plan = plan_apply(&desired1, &world, false).unwrap();
    assert_eq!(
        kinds(&plan),
        ["delete-alarm", "update-target", "delete-policy"]
    );
    assert_eq!(
        plan.changes[1].summary,
        "~ update scalable target endpoint/sdxl-async/variant/AllTraffic: minCapacity 0 → 1"
    );
}

#[test]
fn a_target_of_another_resource_is_a_conflict_even_with_adopt() {
    let mut tags = Tags::new();
    tags.insert(OWNER_TAG.into(), "team-b/other".into());
    let world = hand_made_target(tags);
    assert_eq!(
        ownership(world.target.as_ref().unwrap(), &owner()),
        Ownership::Other("team-b/other".into())
    );
    let desired = desire(&spec(BASIC), &owner(), &quota4()).unwrap();
    let Err(Blocked::Conflict(message)) = plan_apply(&desired, &world, true) else {
        panic!("expected conflict")
    };
    assert!(
        message.contains("managed by the AsyncEndpointScaling team-b/other"),
        "{message}"
    );
    assert!(
        plan_delete(&desired.names, &owner(), &world).is_empty(),
        "delete never touches another's target"
    );
}

#[test]
fn a_hand_made_target_is_adopted_only_when_asked() {
    let world = hand_made_target(Tags::new());
    let desired = desire(&spec(BASIC), &owner(), &quota4()).unwrap();
    let Err(Blocked::Conflict(message)) = plan_apply(&desired, &world, false) else {
        panic!("expected conflict")
    };
    assert!(
        message.contains("asyncscale.io/adopt: \"true\""),
        "{message}"
    );
    let plan = plan_apply(&desired, &world, true).unwrap();
    assert_eq!(
        kinds(&plan),
        [
            "tag",
            "update-target",
            "put-policy",
            "put-policy",
            "put-alarm"
        ]
    );
}

#[test]
fn quota_below_min_capacity_is_an_error_naming_the_quota() {
    let spec = spec(&BASIC.replace("maxCapacity: 20", "maxCapacity: 20, minCapacity: 6"));
    let err = desire(&spec, &owner(), &quota4()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("'ml.g4dn.xlarge for endpoint usage' (L-B67CFA0C) is 4 instances"),
        "{text}"
    );
    assert!(text.contains("request a quota increase"), "{text}");
}

#[test]
fn unknown_quota_or_ignore_policy_keeps_max_capacity() {
    let unknown = QuotaLookup::Unknown {
        name: "q".into(),
        reason: "AccessDenied".into(),
    };
    assert_eq!(
        desire(&spec(BASIC), &owner(), &unknown)
            .unwrap()
            .effective_max,
        20
    );
    let ignoring = spec(&BASIC.replace(
        "maxCapacity: 20",
        "maxCapacity: 20, quota: {policy: Ignore}",
    ));
    let desired = desire(&ignoring, &owner(), &quota4()).unwrap();
    assert_eq!((desired.effective_max, desired.clamped), (20, false));
}
