//! Specific planner behaviours: order, ownership and conflicts.

use asyncscale_api::{AsyncEndpointScalingSpec, DeletionPolicy};
use asyncscale_core::names::{OWNER_TAG, OWNER_UID_TAG};
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

/// The desired state of the example resource with a quota of 4 and no target yet.
fn desired_sdxl() -> Desired {
    desire(
        &AsyncEndpointScalingSpec::sdxl(),
        &owner(),
        &quota4(),
        None,
        None,
    )
    .unwrap()
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
            Change::TagAlarm { .. } => "tag-alarm",
            Change::UntagAlarm { .. } => "untag-alarm",
            Change::PutPolicy { .. } => "put-policy",
            Change::DeletePolicy { .. } => "delete-policy",
            Change::PutAlarm { .. } => "put-alarm",
            Change::DeleteAlarm { .. } => "delete-alarm",
            Change::PutScheduledAction { .. } => "put-scheduled-action",
            Change::DeleteScheduledAction { .. } => "delete-scheduled-action",
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
    let desired = desired_sdxl();
    let plan = plan_apply(&desired, &Observed::empty(), &Adoption::new(false)).unwrap();
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
    let desired0 = desired_sdxl();
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
        state_since: None,
        tags: None,
    });
    assert!(
        plan_apply(&desired0, &world, &Adoption::new(false))
            .unwrap()
            .is_empty(),
        "in sync"
    );

    let desired1 = desire(
        &spec(&BASIC.replace("maxCapacity: 20", "maxCapacity: 20, minCapacity: 1")),
        &owner(),
        &quota4(),
        None,
        None,
    )
    .unwrap();
    let plan = plan_apply(&desired1, &world, &Adoption::new(false)).unwrap();
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
        ownership(&world.target.as_ref().unwrap().tags, &owner(), &|_| false),
        Ownership::Other {
            id: "team-b/other".into(),
            uid: None,
            departed: false
        }
    );
    let desired = desired_sdxl();
    let Err(Blocked::Conflict(message)) = plan_apply(&desired, &world, &Adoption::new(true)) else {
        panic!("expected conflict")
    };
    assert!(
        message.contains("managed by the AsyncEndpointScaling team-b/other"),
        "{message}"
    );
    assert!(
        plan_delete(&desired.names, &owner(), &world, DeletionPolicy::Delete).is_empty(),
        "delete never touches another's target"
    );
}

#[test]
fn a_hand_made_target_is_adopted_only_when_asked() {
    let world = hand_made_target(Tags::new());
    let desired = desired_sdxl();
    let Err(Blocked::Conflict(message)) = plan_apply(&desired, &world, &Adoption::new(false))
    else {
        panic!("expected conflict")
    };
    assert!(
        message.contains("asyncscale.io/adopt: \"true\""),
        "{message}"
    );
    let plan = plan_apply(&desired, &world, &Adoption::new(true)).unwrap();
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
    let six = spec(&BASIC.replace("maxCapacity: 20", "maxCapacity: 20, minCapacity: 6"));
    let err = desire(&six, &owner(), &quota4(), None, None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("'ml.g4dn.xlarge for endpoint usage' (L-B67CFA0C) is 4 instances"),
        "{text}"
    );
    assert!(text.contains("request a quota increase"), "{text}");
    assert!(text.contains("below minCapacity 6"), "{text}");

    // A quota of 0 stops every resource, minCapacity 0 included: no advice to lower it.
    let zero = QuotaLookup::Known(Quota {
        value: 0.0,
        ..match quota4() {
            QuotaLookup::Known(q) => q,
            _ => unreachable!(),
        }
    });
    let text = desire(&spec(BASIC), &owner(), &zero, None, None)
        .unwrap_err()
        .to_string();
    assert!(text.contains("no instance of this type can run"), "{text}");
    assert!(!text.contains("minCapacity"), "{text}");
}

#[test]
fn unknown_quota_or_ignore_policy_keeps_max_capacity() {
    let unknown = QuotaLookup::Unknown {
        name: "q".into(),
        reason: "AccessDenied".into(),
    };
    // Under Share (the default) a first registration takes minCapacity only: a share of an
    // unknown quota is unknown.
    let shared = desire(
        &AsyncEndpointScalingSpec::sdxl(),
        &owner(),
        &unknown,
        None,
        None,
    )
    .unwrap();
    assert_eq!(
        (shared.effective_max, shared.max_source),
        (0, MaxSource::MinWhileQuotaUnknown)
    );
    // Clamp promises no split: maxCapacity as written until the quota is read.
    let clamp = spec(&BASIC.replace("maxCapacity: 20", "maxCapacity: 20, quota: {policy: Clamp}"));
    assert_eq!(
        desire(&clamp, &owner(), &unknown, None, None)
            .unwrap()
            .effective_max,
        20
    );
    let ignoring = spec(&BASIC.replace(
        "maxCapacity: 20",
        "maxCapacity: 20, quota: {policy: Ignore}",
    ));
    let desired = desire(&ignoring, &owner(), &quota4(), None, None).unwrap();
    assert_eq!((desired.effective_max, desired.clamped), (20, false));
}

fn unknown_quota() -> QuotaLookup {
    QuotaLookup::Unknown {
        name: "ml.g4dn.xlarge for endpoint usage".into(),
        reason: "service-quotas GetServiceQuota failed: TooManyRequestsException: Rate exceeded"
            .into(),
    }
}

/// A world where asyncscale set everything up with the quota of 4 in place.
fn converged_with_clamp() -> (Desired, Observed) {
    let desired = desired_sdxl();
    let mut world = Observed::empty();
    world.target = Some(ObservedTarget {
        target: desired.target.clone(),
        arn: Some("arn:target".into()),
        tags: owner().tags(),
    });
    world.policies.push(ObservedPolicy {
        policy: desired.target_tracking.clone(),
        arn: "p1".into(),
    });
    let sfz = desired.scale_from_zero.clone().unwrap();
    world.policies.push(ObservedPolicy {
        policy: sfz.policy.clone(),
        arn: "p2".into(),
    });
    world.alarm = Some(ObservedAlarm {
        alarm: sfz.alarm_with_action("p2"),
        arn: Some("arn:alarm".into()),
        state: Some("OK".into()),
        state_since: None,
        tags: None,
    });
    (desired, world)
}

#[test]
fn an_unknown_quota_never_lifts_a_clamp_already_in_aws() {
    let (_, world) = converged_with_clamp();
    let existing = world.target.as_ref().map(|t| &t.target);
    let desired = desire(
        &AsyncEndpointScalingSpec::sdxl(),
        &owner(),
        &unknown_quota(),
        existing,
        None,
    )
    .unwrap();
    assert_eq!(
        desired.effective_max, 4,
        "MaxCapacity stays where AWS has it"
    );
    assert_eq!(desired.max_source, MaxSource::KeptWhileQuotaUnknown);
    assert!(
        plan_apply(&desired, &world, &Adoption::new(false))
            .unwrap()
            .is_empty(),
        "no write raises MaxCapacity 4 → 20"
    );
    // Lowering to maxCapacity is always safe, and happens.
    let lower = spec(&BASIC.replace("maxCapacity: 20", "maxCapacity: 3"));
    let desired = desire(&lower, &owner(), &unknown_quota(), existing, None).unwrap();
    assert_eq!(desired.effective_max, 3);
    // A last known value still clamps after a failed refresh.
    let stale = QuotaLookup::Stale {
        quota: match quota4() {
            QuotaLookup::Known(q) => q,
            _ => unreachable!(),
        },
        reason: "throttled".into(),
    };
    let desired = desire(
        &AsyncEndpointScalingSpec::sdxl(),
        &owner(),
        &stale,
        None,
        None,
    )
    .unwrap();
    assert_eq!((desired.effective_max, desired.clamped), (4, true));
}

#[test]
fn an_unknown_quota_says_what_it_holds_in_status() {
    use asyncscale_core::status::{ConditionType, StatusInput, SyncOutcome, compute_status, find};
    let (_, world) = converged_with_clamp();
    let spec = AsyncEndpointScalingSpec::sdxl();
    let quota = unknown_quota();
    let desired = desire(
        &spec,
        &owner(),
        &quota,
        world.target.as_ref().map(|t| &t.target),
        None,
    )
    .unwrap();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    );
    let status = compute_status(
        &StatusInput {
            generation: Some(1),
            spec: &spec,
            quota: Some(&quota),
            desired: Some(&desired),
            observed: Some(&world),
            endpoint: None,
            outcome: SyncOutcome::InSync,
            observation_stale: false,
        },
        None,
        &now,
    );
    let c = find(&status, ConditionType::QuotaClamped).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("Unknown", "QuotaUnknown")
    );
    assert!(
        c.message.contains("TooManyRequestsException"),
        "{}",
        c.message
    );
    assert!(
        c.message.contains("MaxCapacity stays at 4"),
        "{}",
        c.message
    );
    assert_eq!(status.effective_max_capacity, Some(4));
}

#[test]
fn a_target_handed_back_to_other_tools_is_resumed_first() {
    let (_, mut world) = converged_with_clamp();
    world.target.as_mut().unwrap().target.suspended = SuspendedState::all(true);
    world.policies.push(ObservedPolicy {
        policy: ScalingPolicy {
            name: "team-policy".into(),
            resource_id: "endpoint/sdxl-async/variant/AllTraffic".into(),
            config: PolicyConfig::Other("PredictiveScaling".into()),
        },
        arn: "p3".into(),
    });
    let names = ResourceNames::new("sdxl-async", "AllTraffic");
    let plan = plan_delete(&names, &owner(), &world, DeletionPolicy::Delete);
    assert_eq!(
        kinds(&plan),
        [
            "delete-alarm",
            "delete-policy",
            "delete-policy",
            "update-target",
            "untag"
        ]
    );
    let Change::RegisterTarget { target, .. } = &plan.changes[3].change else {
        unreachable!()
    };
    assert_eq!(target.suspended, SuspendedState::default());
    assert_eq!((target.min_capacity, target.max_capacity), (0, 4));
}

#[test]
fn retain_releases_ownership_so_another_resource_can_adopt() {
    let (_, world) = converged_with_clamp();
    let names = ResourceNames::new("sdxl-async", "AllTraffic");
    let plan = plan_delete(&names, &owner(), &world, DeletionPolicy::Retain);
    assert_eq!(kinds(&plan), ["untag", "untag-alarm"]);
    let Change::UntagTarget { keys, .. } = &plan.changes[0].change else {
        unreachable!()
    };
    assert!(keys.contains(&OWNER_TAG.to_string()) && keys.contains(&OWNER_UID_TAG.to_string()));
    // Once released, the target is unowned: a new resource adopts it when asked.
    let mut released = world.clone();
    released.target.as_mut().unwrap().tags.clear();
    let newcomer = Owner {
        namespace: "ml".into(),
        name: "sdxl-v2".into(),
        uid: Some("u-2".into()),
    };
    let desired = desire(
        &AsyncEndpointScalingSpec::sdxl(),
        &newcomer,
        &quota4(),
        None,
        None,
    )
    .unwrap();
    let plan = plan_apply(&desired, &released, &Adoption::new(true)).unwrap();
    assert_eq!(kinds(&plan)[..2], ["tag", "tag-alarm"]);
}

#[test]
fn without_its_target_an_alarm_is_deleted_only_when_its_tags_say_it_is_ours() {
    let (_, mut world) = converged_with_clamp();
    world.target = None;
    world.policies.clear();
    let names = ResourceNames::new("sdxl-async", "AllTraffic");
    let delete = |w: &Observed| kinds(&plan_delete(&names, &owner(), w, DeletionPolicy::Delete));
    assert!(
        delete(&world).is_empty(),
        "tags not read: never delete on a guess"
    );
    world.alarm.as_mut().unwrap().tags =
        Some(Tags::from([(OWNER_TAG.into(), "team-b/owner".into())]));
    assert!(delete(&world).is_empty(), "another resource's alarm");
    world.alarm.as_mut().unwrap().tags = Some(owner().tags());
    assert_eq!(delete(&world), ["delete-alarm"]);
}

#[test]
fn a_resource_of_the_same_name_but_another_uid_is_another_owner() {
    let (desired, mut world) = converged_with_clamp();
    let old_uid = Tags::from([
        (OWNER_TAG.to_string(), "ml/sdxl".to_string()),
        (OWNER_UID_TAG.to_string(), "u-old".to_string()),
    ]);
    world.target.as_mut().unwrap().tags = old_uid.clone();
    let alive = |_: &str| false;
    assert_eq!(
        ownership(&old_uid, &owner(), &alive),
        Ownership::Other {
            id: "ml/sdxl".into(),
            uid: Some("u-old".into()),
            departed: false
        }
    );
    assert!(matches!(
        plan_apply(&desired, &world, &Adoption::new(true)),
        Err(Blocked::Conflict(_))
    ));
    // The controller knows u-old is gone: adoption rules apply, and the tags get the new UID.
    let departed = |uid: &str| uid == "u-old";
    let gone = Adoption {
        requested: false,
        departed: &departed,
    };
    let Err(Blocked::Conflict(message)) = plan_apply(&desired, &world, &gone) else {
        panic!("adoption must be asked for")
    };
    assert!(message.contains("which no longer exists"), "{message}");
    let adopting = Adoption {
        requested: true,
        departed: &departed,
    };
    let plan = plan_apply(&desired, &world, &adopting).unwrap();
    assert_eq!(kinds(&plan), ["tag", "tag-alarm"]);
    let Change::TagTarget { tags, .. } = &plan.changes[0].change else {
        unreachable!()
    };
    assert_eq!(tags.get(OWNER_UID_TAG).map(String::as_str), Some("u-1"));
    assert!(
        plan.changes[0]
            .summary
            .contains("from ml/sdxl, which no longer exists")
    );
}

#[test]
fn a_target_tagged_by_name_only_gets_its_owners_uid() {
    let (desired, mut world) = converged_with_clamp();
    world.target.as_mut().unwrap().tags.remove(OWNER_UID_TAG);
    let plan = plan_apply(&desired, &world, &Adoption::new(false)).unwrap();
    assert_eq!(kinds(&plan), ["tag"]);
}
