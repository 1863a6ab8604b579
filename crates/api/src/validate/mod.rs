//! The Rust twin of the CRD schema: the same bounds, patterns and CEL rules, with messages that
//! name the field and the fix, so the CLI rejects what the API server would.

use std::fmt;

use crate::rules::{self, CelRule};
use crate::shown::quoted;
use crate::{AsyncEndpointScalingSpec, ScaleFromZeroSpec};

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.maxCapacity`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.to_string(),
            message: message.into(),
        });
    }
    fn rule(&mut self, rule: CelRule) {
        self.add(rule.path, rule.message);
    }
    fn at_least(&mut self, path: &str, value: i32, min: i32) {
        if value < min {
            self.add(path, format!("must be at least {min} (got {value})"));
        }
    }
    fn at_most(&mut self, path: &str, value: i32, max: i32) {
        if value > max {
            self.add(path, format!("must be at most {max} (got {value})"));
        }
    }
}

/// Checks a spec as the API server would on create. Returns every problem, not just the first.
pub fn validate_spec(spec: &AsyncEndpointScalingSpec) -> Result<(), Vec<FieldError>> {
    let mut p = Problems::default();
    check_sagemaker_name(&mut p, "spec.endpointName", &spec.endpoint_name, "endpoint");
    check_sagemaker_name(&mut p, "spec.variantName", &spec.variant_name, "variant");
    if !is_instance_type(&spec.instance_type) {
        p.add(
            "spec.instanceType",
            format!(
                "{} is not an instance type of the form ml.<family>.<size>, e.g. ml.g4dn.xlarge",
                quoted(&spec.instance_type)
            ),
        );
    }
    if let Some(region) = &spec.region
        && !is_region(region)
    {
        let message = format!(
            "{} is not an AWS region name such as us-east-1",
            quoted(region)
        );
        p.add("spec.region", message);
    }
    if let Some(role) = &spec.role_arn
        && !is_role_arn(role)
    {
        let message = format!(
            "{} is not an IAM role ARN such as arn:aws:iam::123456789012:role/asyncscale",
            quoted(role)
        );
        p.add("spec.roleArn", message);
    }
    if let Some(id) = &spec.external_id
        && !is_external_id(id)
    {
        let message = format!(
            "{} is not an STS external id: 2-1224 letters, digits and _+=,.@:/-",
            quoted(id)
        );
        p.add("spec.externalId", message);
    }
    if spec.external_id.is_some() && spec.role_arn.is_none() {
        p.rule(rules::EXTERNAL_ID_NEEDS_ROLE);
    }
    p.at_least("spec.minCapacity", spec.min_capacity, 0);
    p.at_least("spec.maxCapacity", spec.max_capacity, 1);
    if spec.min_capacity > spec.max_capacity {
        p.rule(rules::MIN_NOT_ABOVE_MAX);
    }
    let tt = &spec.target_tracking;
    if !(tt.target_value.is_finite() && tt.target_value > 0.0) {
        p.add(
            "spec.targetTracking.targetValue",
            format!("must be greater than 0 (got {})", tt.target_value),
        );
    }
    p.at_least(
        "spec.targetTracking.scaleInCooldownSeconds",
        tt.scale_in_cooldown_seconds,
        0,
    );
    p.at_least(
        "spec.targetTracking.scaleOutCooldownSeconds",
        tt.scale_out_cooldown_seconds,
        0,
    );
    check_scale_from_zero(&mut p, &spec.scale_from_zero);
    check_schedules(&mut p, spec);
    if p.0.is_empty() { Ok(()) } else { Err(p.0) }
}

/// Checks the immutability rules of an update, as the API server's transition rules do.
pub fn validate_update(
    old: &AsyncEndpointScalingSpec,
    new: &AsyncEndpointScalingSpec,
) -> Result<(), Vec<FieldError>> {
    let mut p = Problems::default();
    if old.endpoint_name != new.endpoint_name {
        p.rule(rules::ENDPOINT_NAME_IMMUTABLE);
    }
    if old.variant_name != new.variant_name {
        p.rule(rules::VARIANT_NAME_IMMUTABLE);
    }
    if old.region != new.region {
        p.rule(rules::REGION_IMMUTABLE);
    }
    if old.role_arn != new.role_arn {
        p.rule(rules::ROLE_ARN_IMMUTABLE);
    }
    let mut all = validate_spec(new).err().unwrap_or_default();
    all.extend(p.0);
    if all.is_empty() { Ok(()) } else { Err(all) }
}

fn check_scale_from_zero(p: &mut Problems, s: &ScaleFromZeroSpec) {
    let period_path = "spec.scaleFromZero.periodSeconds";
    if s.period_seconds % 60 != 0 {
        p.rule(rules::ALARM_PERIOD); // says why, which "at least 60" alone would not
    } else {
        p.at_least(period_path, s.period_seconds, 60);
        p.at_most(period_path, s.period_seconds, 86400);
    }
    for (path, value) in [
        ("spec.scaleFromZero.evaluationPeriods", s.evaluation_periods),
        (
            "spec.scaleFromZero.datapointsToAlarm",
            s.datapoints_to_alarm,
        ),
    ] {
        p.at_least(path, value, 1);
        p.at_most(path, value, 1440);
    }
    if s.datapoints_to_alarm > s.evaluation_periods {
        p.rule(rules::DATAPOINTS_NOT_ABOVE_PERIODS);
    }
    let window = i64::from(s.period_seconds) * i64::from(s.evaluation_periods);
    let limit = if s.period_seconds < 3600 {
        86_400
    } else {
        604_800
    };
    if window > limit {
        p.rule(rules::ALARM_WINDOW);
    }
    p.at_least("spec.scaleFromZero.cooldownSeconds", s.cooldown_seconds, 0);
    p.at_least(
        "spec.scaleFromZero.scalingAdjustment",
        s.scaling_adjustment,
        1,
    );
}

/// The schema's bounds and rules for `spec.schedules`, and what the schema cannot say: that
/// each expression names real times and each time zone exists.
fn check_schedules(p: &mut Problems, spec: &AsyncEndpointScalingSpec) {
    if spec.schedules.len() > MAX_SCHEDULES {
        p.add(
            "spec.schedules",
            format!(
                "at most {MAX_SCHEDULES} schedules (got {})",
                spec.schedules.len()
            ),
        );
    }
    if !schedules_agree(&spec.schedules) {
        p.rule(rules::SCHEDULES_AGREE);
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in spec.schedules.iter().enumerate() {
        let at = |field: &str| format!("spec.schedules[{i}].{field}");
        let item = format!("spec.schedules[{i}]");
        if !seen.insert(s.name.as_str()) {
            p.add(
                &at("name"),
                format!(
                    "{} is used by two schedules: names must be unique",
                    quoted(&s.name)
                ),
            );
        }
        if !is_schedule_name(&s.name) {
            p.add(
                &at("name"),
                format!(
                    "{} is not a schedule name: 1-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit",
                    quoted(&s.name)
                ),
            );
        }
        if let Err(e) = check_expression(&s.schedule) {
            p.add(&at("schedule"), e);
        }
        if let Some(zone) = &s.time_zone
            && let Err(e) = time_zone(zone)
        {
            p.add(&at("timeZone"), e);
        }
        if let Some(min) = s.min_capacity {
            p.at_least(&at("minCapacity"), min, 0);
        }
        if let Some(max) = s.max_capacity {
            p.at_least(&at("maxCapacity"), max, 1);
        }
        let rule = |p: &mut Problems, rule: CelRule| p.add(&item, rule.message);
        match (s.min_capacity, s.max_capacity) {
            (None, None) => rule(p, rules::SCHEDULE_SETS_CAPACITY),
            (Some(min), Some(max)) if min > max => rule(p, rules::SCHEDULE_MIN_NOT_ABOVE_MAX),
            // These rules sit on spec in the schema, as they read spec's capacities too; here
            // the message can name the schedule's field that breaks them.
            (Some(min), None) if min > spec.max_capacity => {
                p.add(
                    &at("minCapacity"),
                    rules::SCHEDULE_MIN_WITHIN_SPEC_MAX.message,
                );
            }
            (None, Some(max)) if max < spec.min_capacity => {
                p.add(
                    &at("maxCapacity"),
                    rules::SCHEDULE_MAX_NOT_BELOW_SPEC_MIN.message,
                );
            }
            _ => {}
        }
        if spec.quota.policy == crate::QuotaPolicy::Share
            && s.max_capacity.is_some_and(|max| max > spec.max_capacity)
        {
            p.add(&at("maxCapacity"), rules::SCHEDULE_MAX_WITHIN_SHARE.message);
        }
        for (field, text) in [("startTime", &s.start_time), ("endTime", &s.end_time)] {
            if let Some(text) = text
                && let Err(e) = rfc3339(text)
            {
                p.add(&at(field), e);
            }
        }
        if let (Some(start), Some(end)) = s.window()
            && end <= start
        {
            rule(p, rules::SCHEDULE_END_AFTER_START);
        }
    }
}

/// An RFC 3339 time as the API server's `date-time` format takes it (`T` between date and time,
/// seconds, an offset `Z` or `±hh:mm`), within the years a schedule can name (1970-2199).
pub fn rfc3339(text: &str) -> Result<jiff::Timestamp, String> {
    let bad = || {
        format!(
            "{} is not an RFC 3339 time between 1970 and 2199 (to the nanosecond at most), e.g. 2026-12-01T00:00:00Z",
            quoted(text)
        )
    };
    let b = text.as_bytes();
    let shape = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':'
        // No leap second: the API server's date-time format refuses :60.
        && text.get(17..19).is_some_and(|sec| sec < "60")
        && {
            let offset = &text[19..];
            let offset = offset.strip_prefix('.').map_or(offset, |f| {
                f.trim_start_matches(|c: char| c.is_ascii_digit())
            });
            matches!(offset, "Z" | "z")
                || (offset.len() == 6
                    && matches!(&offset[..1], "+" | "-")
                    && offset.as_bytes()[3] == b':'
                    && offset[1..3] < *"24"
                    && offset[4..6] < *"60")
        };
    if !shape {
        return Err(bad());
    }
    let time: jiff::Timestamp = text.parse().map_err(|_| bad())?;
    let year = time.to_zoned(jiff::tz::TimeZone::UTC).year();
    if !(1970..=2199).contains(&year) {
        return Err(bad());
    }
    Ok(time)
}

/// [`rules::SCHEDULES_AGREE`]: no schedule's minimum above another's maximum when either leaves
/// the other capacity as it is.
fn schedules_agree(schedules: &[crate::ScheduleSpec]) -> bool {
    schedules.iter().all(|a| {
        schedules
            .iter()
            .all(|b| match (a.min_capacity, b.max_capacity) {
                (Some(min), Some(max)) => {
                    min <= max || (a.max_capacity.is_some() && b.min_capacity.is_some())
                }
                _ => true,
            })
    })
}

/// Application Auto Scaling allows 200 scheduled actions per scalable target; 50 per resource
/// keeps the schema's CEL rules within the API server's cost budget.
pub const MAX_SCHEDULES: usize = 50;

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, at most 63 characters.
fn is_schedule_name(name: &str) -> bool {
    let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&name.len())
        && name.chars().all(|c| lower_alnum(c) || c == '-')
        && name.starts_with(lower_alnum)
        && name.ends_with(lower_alnum)
}

/// The expression parses, in the exact shape the schema's pattern allows (single spaces).
fn check_expression(expression: &str) -> Result<(), String> {
    if expression.len() > 256 {
        return Err(format!(
            "must be at most 256 characters (got {})",
            expression.len()
        ));
    }
    let schedule = crate::schedule::Schedule::parse(expression).map_err(|e| e.to_string())?;
    if expression.contains("  ") || expression.contains("( ") || expression.contains(" )") {
        return Err(format!(
            "{}: separate the fields with single spaces",
            quoted(expression)
        ));
    }
    // AWS takes it, and the action never runs. Whether every run is already past depends on the
    // clock: that is [`schedule_warnings`]'s to say.
    if let Some(why) = schedule.never_runs() {
        return Err(format!("{expression} never runs: {why}"));
    }
    Ok(())
}

/// What [`validate_spec`] leaves alone because it depends on the clock: a schedule that will
/// not run again, its endTime or every run of its expression already past. A warning, not an
/// error: a file valid yesterday stays valid today, and a resource in a cluster does not turn
/// invalid the day its last run passes.
pub fn schedule_warnings(spec: &AsyncEndpointScalingSpec, now: jiff::Timestamp) -> Vec<FieldError> {
    use crate::schedule::Schedule;
    let mut p = Problems::default();
    for (i, s) in spec.schedules.iter().enumerate() {
        let at = |field: &str| format!("spec.schedules[{i}].{field}");
        if let (_, Some(end)) = s.window()
            && end <= now
        {
            let end = s.end_time.as_deref().unwrap_or_default();
            p.add(
                &at("endTime"),
                format!("{} is past: the schedule never runs again", quoted(end)),
            );
            continue;
        }
        // An invalid expression or zone is validate_spec's to report.
        let (Ok(schedule), Ok(zone)) = (
            Schedule::parse(&s.schedule),
            time_zone(s.time_zone.as_deref().unwrap_or("UTC")),
        ) else {
            continue;
        };
        let now = now.to_zoned(zone).datetime();
        let message = match &schedule {
            Schedule::At(time) if *time <= now => "its one run is in the past",
            Schedule::Cron(cron)
                if schedule.never_runs().is_none() && cron.next_after(now).is_none() =>
            {
                "every run is in the past"
            }
            _ => continue,
        };
        p.add(
            &at("schedule"),
            format!("{} never runs again: {message}", s.schedule),
        );
    }
    p.0
}

/// The IANA time zone of that name. AWS takes the canonical IANA names, spelled exactly; the
/// zone database matches names without regard to case and also holds files that are no zone of
/// their own (`localtime`, `posixrules`, `Factory`).
pub fn time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    let not_a_zone = || {
        format!(
            "{} is not an IANA time zone name such as UTC, Europe/Berlin or America/New_York",
            quoted(name)
        )
    };
    if matches!(name, "localtime" | "posixrules" | "Factory") {
        return Err(not_a_zone());
    }
    let zone = jiff::tz::db().get(name).map_err(|_| not_a_zone())?;
    match zone.iana_name() {
        Some(canonical) if canonical != name => Err(format!(
            "{} is spelled {canonical:?} in the IANA database (AWS matches the name exactly)",
            quoted(name)
        )),
        _ => Ok(zone),
    }
}

/// `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$` without a regex engine.
fn check_sagemaker_name(p: &mut Problems, path: &str, name: &str, what: &str) {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let ok = (1..=63).contains(&name.len())
        && name.chars().all(|c| alnum(c) || c == '-')
        && name.starts_with(alnum)
        && name.ends_with(alnum);
    if !ok {
        p.add(
            path,
            format!(
                "{} is not a SageMaker {what} name: 1-63 letters, digits and hyphens, starting and ending with a letter or digit",
                quoted(name)
            ),
        );
    }
}

fn is_instance_type(s: &str) -> bool {
    let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut parts = s.splitn(3, '.');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some("ml"), Some(family), Some(size))
            if !family.is_empty() && family.chars().all(|c| lower_alnum(c) || c == '-')
                && !size.is_empty() && size.chars().all(lower_alnum)
    )
}

/// An AWS region name such as us-east-1 or us-gov-west-1 (the spec's rule, also for `--region`).
/// The CRD's ROLE_ARN_PATTERN and maxLength.
pub fn is_role_arn(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("arn:aws") else {
        return false;
    };
    let Some((partition_suffix, rest)) = rest.split_once(":iam::") else {
        return false;
    };
    let Some((account, role)) = rest.split_once(":role/") else {
        return false;
    };
    let name = role.rsplit('/').next().unwrap_or_default();
    let path = &role[..role.len() - name.len()];
    s.len() <= 2048
        && [
            "", "-cn", "-us-gov", "-iso", "-iso-b", "-iso-e", "-iso-f", "-eusc",
        ]
        .contains(&partition_suffix)
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        && (path.is_empty() || (2..=511).contains(&path.len()))
        && path.chars().all(|c| ('!'..='~').contains(&c))
}

/// The account a role ARN names (the twelve digits after `iam::`).
pub fn role_account(role_arn: &str) -> Option<&str> {
    role_arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// The CRD's EXTERNAL_ID_PATTERN.
pub fn is_external_id(s: &str) -> bool {
    (2..=1224).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
}

pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    // The CRD's maxLength (32) as well as its pattern: the CLI refuses what the server refuses.
    s.len() <= 32
        && parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests;
