use super::*;
use crate::AsyncEndpointScalingSpec;

pub(crate) fn spec() -> AsyncEndpointScalingSpec {
    AsyncEndpointScalingSpec::sdxl()
}

fn messages(spec: &AsyncEndpointScalingSpec) -> Vec<String> {
    validate_spec(spec)
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_example_spec_is_valid() {
    assert_eq!(validate_spec(&spec()), Ok(()));
}

#[test]
fn names_follow_sagemaker_patterns() {
    for bad in ["", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
        let mut s = spec();
        s.endpoint_name = bad.to_string();
        assert!(
            messages(&s)[0].starts_with("spec.endpointName: "),
            "{bad:?}"
        );
    }
    for good in ["a", "a--b", "A1", &"a".repeat(63)] {
        let mut s = spec();
        s.variant_name = good.to_string();
        assert_eq!(validate_spec(&s), Ok(()), "{good:?}");
    }
}

#[test]
fn instance_types_and_regions_are_checked() {
    for bad in [
        "g4dn.xlarge",
        "ml.g4dn",
        "ml..xlarge",
        "ml.G4dn.xlarge",
        "ml.g4dn.x.large",
    ] {
        let mut s = spec();
        s.instance_type = bad.into();
        assert!(
            messages(&s)[0].starts_with("spec.instanceType: "),
            "{bad:?}"
        );
    }
    let mut s = spec();
    s.region = Some("us-gov-west-1".into());
    assert_eq!(validate_spec(&s), Ok(()));
    s.region = Some("useast1".into());
    assert!(messages(&s)[0].starts_with("spec.region: "));
}

#[test]
fn role_arns_and_external_ids_are_checked() {
    let mut s = spec();
    for good in [
        "arn:aws:iam::123456789012:role/asyncscale",
        "arn:aws-us-gov:iam::123456789012:role/team/ml/asyncscale@prod",
        "arn:aws-cn:iam::123456789012:role/a",
    ] {
        s.role_arn = Some(good.into());
        assert_eq!(validate_spec(&s), Ok(()), "{good}");
    }
    let long_path = format!("arn:aws:iam::123456789012:role/{}/x", "p".repeat(511));
    s.role_arn = Some(long_path);
    assert!(
        messages(&s)[0].starts_with("spec.roleArn: "),
        "path over 512"
    );
    s.role_arn = Some(format!(
        "arn:aws:iam::123456789012:role/{}/x",
        "p".repeat(509)
    ));
    assert_eq!(validate_spec(&s), Ok(()), "a path of 512 with its slashes");
    assert_eq!(
        role_account("arn:aws:iam::123456789012:role/x"),
        Some("123456789012")
    );
    for bad in [
        "arn:aws:iam::12345678901:role/short-account",
        "arn:aws:iam::123456789012:user/not-a-role",
        "arn:aws:sts::123456789012:assumed-role/x/y",
        "asyncscale",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/has space",
        "arn:awsfoo:iam::123456789012:role/x",
        "arn:aws-:iam::123456789012:role/x",
    ] {
        s.role_arn = Some(bad.into());
        assert!(
            messages(&s)[0].starts_with("spec.roleArn: "),
            "{bad:?}: {:?}",
            messages(&s)
        );
    }
    s.role_arn = None;
    s.external_id = Some("tenant-42".into());
    assert_eq!(
        messages(&s),
        vec![format!("spec: {}", rules::EXTERNAL_ID_NEEDS_ROLE.message)]
    );
    s.role_arn = Some("arn:aws:iam::123456789012:role/asyncscale".into());
    assert_eq!(validate_spec(&s), Ok(()));
    s.external_id = Some("x".into());
    assert!(messages(&s)[0].starts_with("spec.externalId: "));
    s.external_id = Some("no spaces".into());
    assert!(messages(&s)[0].starts_with("spec.externalId: "));

    let old = spec();
    let mut new = spec();
    new.role_arn = Some("arn:aws:iam::123456789012:role/asyncscale".into());
    let errors = validate_update(&old, &new).unwrap_err();
    assert_eq!(errors[0].message, rules::ROLE_ARN_IMMUTABLE.message);
}

#[test]
fn alarm_settings_follow_cloudwatch_rules() {
    let mut s = spec();
    s.scale_from_zero.period_seconds = 90;
    assert_eq!(
        messages(&s),
        vec![format!(
            "spec.scaleFromZero.periodSeconds: {}",
            rules::ALARM_PERIOD.message
        )]
    );
    // CloudWatch takes these, but the metric comes once a minute: refused, saying why.
    for short in [10, 20, 30] {
        s.scale_from_zero.period_seconds = short;
        let m = messages(&s);
        assert!(
            m.contains(&format!(
                "spec.scaleFromZero.periodSeconds: {}",
                rules::ALARM_PERIOD.message
            )),
            "{short}: {m:?}"
        );
    }
    for ok in [60, 120, 3600] {
        s.scale_from_zero.period_seconds = ok;
        assert_eq!(validate_spec(&s), Ok(()), "{ok}");
    }
    let mut s = spec();
    s.scale_from_zero.datapoints_to_alarm = 3;
    assert_eq!(
        messages(&s),
        vec![format!(
            "spec.scaleFromZero: {}",
            rules::DATAPOINTS_NOT_ABOVE_PERIODS.message
        )]
    );
    let mut s = spec();
    s.scale_from_zero.period_seconds = 600;
    s.scale_from_zero.evaluation_periods = 145;
    assert_eq!(
        messages(&s),
        vec![format!(
            "spec.scaleFromZero: {}",
            rules::ALARM_WINDOW.message
        )]
    );
}

fn prewarm() -> crate::ScheduleSpec {
    crate::ScheduleSpec {
        time_zone: Some("Europe/Berlin".into()),
        min_capacity: Some(1),
        ..crate::ScheduleSpec::new("office-hours", "cron(50 7 ? * MON-FRI *)")
    }
}

#[test]
fn schedules_are_checked_before_any_aws_call() {
    let mut s = spec();
    s.schedules = vec![prewarm()];
    assert_eq!(validate_spec(&s), Ok(()));

    type Change = fn(&mut crate::ScheduleSpec);
    let cases: Vec<(Change, &str)> = vec![
        (
            |x| x.schedule = "cron(60 7 ? * MON-FRI *)".into(),
            "spec.schedules[0].schedule: cron(60 7 ? * MON-FRI *): minutes: \"60\" is not 0-59",
        ),
        (
            |x| x.schedule = "cron(50  7 ? * MON-FRI *)".into(),
            "spec.schedules[0].schedule: \"cron(50  7 ? * MON-FRI *)\": separate the fields with single spaces",
        ),
        (
            |x| x.time_zone = Some("Mars/Olympus".into()),
            "spec.schedules[0].timeZone: \"Mars/Olympus\" is not an IANA time zone name such as UTC, Europe/Berlin or America/New_York",
        ),
        (
            |x| x.time_zone = Some("europe/berlin".into()),
            "spec.schedules[0].timeZone: \"europe/berlin\" is spelled \"Europe/Berlin\" in the IANA database (AWS matches the name exactly)",
        ),
        (
            |x| x.time_zone = Some("localtime".into()),
            "spec.schedules[0].timeZone: \"localtime\" is not an IANA time zone name such as UTC, Europe/Berlin or America/New_York",
        ),
        (
            |x| x.start_time = Some("9999-12-31T23:59:59Z".into()),
            "spec.schedules[0].startTime: \"9999-12-31T23:59:59Z\" is not an RFC 3339 time between 1970 and 2199 (to the nanosecond at most), e.g. 2026-12-01T00:00:00Z",
        ),
        (
            |x| x.end_time = Some("2026-12-01 00:00:00Z".into()),
            "spec.schedules[0].endTime: \"2026-12-01 00:00:00Z\" is not an RFC 3339 time between 1970 and 2199 (to the nanosecond at most), e.g. 2026-12-01T00:00:00Z",
        ),
        (
            |x| x.end_time = Some("2026-12-31T23:59:60Z".into()),
            "spec.schedules[0].endTime: \"2026-12-31T23:59:60Z\" is not an RFC 3339 time between 1970 and 2199 (to the nanosecond at most), e.g. 2026-12-01T00:00:00Z",
        ),
        (
            |x| x.name = "Office_Hours".into(),
            "spec.schedules[0].name: \"Office_Hours\" is not a schedule name: 1-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit",
        ),
        (
            |x| x.min_capacity = None,
            "spec.schedules[0]: a schedule must set minCapacity, maxCapacity or both",
        ),
        (
            |x| x.max_capacity = Some(0),
            "spec.schedules[0].maxCapacity: must be at least 1 (got 0)",
        ),
        (
            |x| x.min_capacity = Some(21),
            "spec.schedules[0].minCapacity: a schedule that sets only minCapacity must keep it at or below spec.maxCapacity, or its action fails in AWS (MinCapacity above MaxCapacity): lower the schedule's minCapacity to at most spec.maxCapacity, or raise spec.maxCapacity",
        ),
        (
            |x| x.max_capacity = Some(21),
            "spec.schedules[0].maxCapacity: with quota.policy Share a schedule's maxCapacity must be at most maxCapacity (an endpoint's share never exceeds maxCapacity): raise maxCapacity and let a schedule lower it, or use quota.policy Clamp",
        ),
        (
            |x| x.schedule = "cron(0 8 31 2 ? *)".into(),
            "spec.schedules[0].schedule: cron(0 8 31 2 ? *) never runs: February has no 31st",
        ),
    ];
    for (change, want) in cases {
        let mut s = spec();
        let mut schedule = prewarm();
        change(&mut schedule);
        s.schedules = vec![schedule];
        assert!(
            messages(&s).contains(&want.to_string()),
            "{want}: {:?}",
            messages(&s)
        );
    }

    let mut s = spec();
    s.schedules = vec![
        prewarm(),
        crate::ScheduleSpec {
            min_capacity: None,
            max_capacity: Some(0),
            ..crate::ScheduleSpec::new("night", "cron(0 22 * * ? *)")
        },
    ];
    s.schedules[1].max_capacity = Some(1);
    s.schedules[0].min_capacity = Some(2);
    assert!(
        messages(&s).contains(&format!("spec: {}", rules::SCHEDULES_AGREE.message)),
        "{:?}",
        messages(&s)
    );
    s.schedules[1].min_capacity = Some(0);
    s.schedules[0].max_capacity = Some(2);
    assert_eq!(validate_spec(&s), Ok(()), "both set both: no conflict");

    let mut s = spec();
    let mut window = prewarm();
    window.min_capacity = Some(3);
    window.max_capacity = Some(2);
    window.start_time = Some("2026-12-02T00:00:00Z".into());
    window.end_time = Some("2026-12-01T00:00:00Z".into());
    s.schedules = vec![window, prewarm(), prewarm()];
    let m = messages(&s);
    for want in [
        format!(
            "spec.schedules[0]: {}",
            rules::SCHEDULE_MIN_NOT_ABOVE_MAX.message
        ),
        format!(
            "spec.schedules[0]: {}",
            rules::SCHEDULE_END_AFTER_START.message
        ),
        "spec.schedules[1].name: \"office-hours\" is used by two schedules: names must be unique"
            .to_string(),
    ] {
        assert!(m.contains(&want), "{want}: {m:?}");
    }
}

#[test]
fn a_scheduled_minimum_above_max_capacity_names_the_field_and_a_fix_that_works() {
    let mut s = spec();
    assert_eq!(s.quota.policy, crate::QuotaPolicy::Share);
    s.schedules = vec![
        prewarm(),
        crate::ScheduleSpec {
            min_capacity: Some(21),
            ..crate::ScheduleSpec::new("batch", "cron(0 22 * * ? *)")
        },
    ];
    assert_eq!(
        messages(&s),
        vec![format!(
            "spec.schedules[1].minCapacity: {}",
            rules::SCHEDULE_MIN_WITHIN_SPEC_MAX.message
        )]
    );
    // Either fix the message names is accepted under quota.policy Share...
    let mut lowered = s.clone();
    lowered.schedules[1].min_capacity = Some(20);
    assert_eq!(validate_spec(&lowered), Ok(()));
    let mut raised = s.clone();
    raised.max_capacity = 21;
    assert_eq!(validate_spec(&raised), Ok(()));
    // ...where giving the schedule a maxCapacity too is refused in turn.
    let mut capped = s.clone();
    capped.schedules[1].max_capacity = Some(21);
    assert!(validate_spec(&capped).is_err());
}

#[test]
fn schedules_that_never_run_again_are_warned_about_not_refused() {
    let now: jiff::Timestamp = "2026-12-07T00:00:00Z".parse().unwrap();
    let schedule = |name: &str, expression: &str| crate::ScheduleSpec {
        min_capacity: Some(1),
        ..crate::ScheduleSpec::new(name, expression)
    };
    let mut s = spec();
    s.schedules = vec![
        schedule("old-year", "cron(0 8 1 1 ? 2020)"),
        schedule("once", "at(2026-12-06T08:00:00)"),
        crate::ScheduleSpec {
            end_time: Some("2026-12-01T00:00:00Z".into()),
            ..schedule("ended", "rate(1 day)")
        },
        // 00:30 in Berlin is already past at 00:00 UTC.
        crate::ScheduleSpec {
            time_zone: Some("Europe/Berlin".into()),
            ..schedule("berlin", "at(2026-12-07T00:30:00)")
        },
        // Still to come.
        schedule("this-year", "cron(0 8 ? * MON-FRI 2026)"),
        schedule("until-2030", "cron(0 8 1 1 ? 2020-2030)"),
        schedule("later", "at(2026-12-07T00:30:00)"),
        schedule("open", "rate(1 hour)"),
    ];
    assert_eq!(
        validate_spec(&s),
        Ok(()),
        "the clock never makes a spec invalid"
    );
    let warnings: Vec<String> = schedule_warnings(&s, now)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        warnings,
        [
            "spec.schedules[0].schedule: cron(0 8 1 1 ? 2020) never runs again: every run is in the past",
            "spec.schedules[1].schedule: at(2026-12-06T08:00:00) never runs again: its one run is in the past",
            "spec.schedules[2].endTime: \"2026-12-01T00:00:00Z\" is past: the schedule never runs again",
            "spec.schedules[3].schedule: at(2026-12-07T00:30:00) never runs again: its one run is in the past",
        ]
    );
}

#[test]
fn updates_may_not_move_the_resource_to_another_endpoint() {
    let old = spec();
    let mut new = spec();
    new.endpoint_name = "other".into();
    new.variant_name = "Blue".into();
    let errors = validate_update(&old, &new).unwrap_err();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].message, rules::ENDPOINT_NAME_IMMUTABLE.message);
    // A region change would orphan everything in the old region; unset ≠ set.
    let mut moved = spec();
    moved.region = Some("eu-west-1".into());
    let errors = validate_update(&old, &moved).unwrap_err();
    assert_eq!(errors[0].message, rules::REGION_IMMUTABLE.message);
    let mut bigger = spec();
    bigger.max_capacity = 40;
    assert_eq!(validate_update(&old, &bigger), Ok(()));
}
