//! Application Auto Scaling's scheduled actions (PutScheduledAction, DescribeScheduledActions,
//! DeleteScheduledAction; Application Auto Scaling API Reference and User Guide, "Scheduled
//! scaling"). Stored, served, and run on the scaling model's clock ([`Account::run_scheduled_actions`]).
//!
//! Schedules are checked for their documented shape (`at(yyyy-mm-ddThh:mm:ss)`,
//! `rate(value unit)`, `cron(fields)` with six fields, one of day-of-month and day-of-week `?`),
//! independently of asyncscale's own parser, so that the two can disagree in a test.

use serde_json::{Value, json};

use super::arn::partition;
use super::input::{AAS, page, required, s, string_list, with_token};
use super::state::{Account, Activity, ScheduledAction, TargetKey};
use crate::aws_error::{ApiError, ApiResult};
use crate::validation;

/// The Application Auto Scaling quotas page: 200 scheduled actions per scalable target
/// (docs/aws-behaviour.md §2.17).
const PER_TARGET: usize = 200;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new("ValidationException", message)
}

/// The ScheduledActionName pattern of the API reference: no `:`, `/` or `|`, no control
/// characters, no leading or trailing space.
fn check_name(name: &str) -> Result<(), ApiError> {
    validation::length(AAS, Some(name), "scheduledActionName", 1, 256)?;
    validation::printable(AAS, Some(name), "scheduledActionName")?;
    if name.contains([':', '/', '|']) || name.starts_with(' ') || name.ends_with(' ') {
        return Err(invalid(format!(
            "1 validation error detected: Value '{name}' at 'scheduledActionName' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!((^[ ]+.*)|(.*([\\u0000-\\u001f]|[\\u007f-\\u009f]|[:/|])+.*)|(.*[ ]+$))).+"
        )));
    }
    Ok(())
}

/// The documented forms; the content of a cron field is not checked beyond its count.
fn check_schedule(schedule: &str) -> Result<(), ApiError> {
    validation::length(AAS, Some(schedule), "schedule", 1, 1600)?;
    let inner = |prefix: &str| {
        schedule
            .strip_prefix(prefix)
            .and_then(|s| s.strip_suffix(')'))
    };
    let ok = if let Some(at) = inner("at(") {
        at.len() == 19
            && at.char_indices().all(|(i, c)| match i {
                4 | 7 => c == '-',
                10 => c == 'T',
                13 | 16 => c == ':',
                _ => c.is_ascii_digit(),
            })
    } else if let Some(rate) = inner("rate(") {
        matches!(
            rate.split(' ').collect::<Vec<_>>()[..],
            [value, "minute" | "minutes" | "hour" | "hours" | "day" | "days"]
                if value.parse::<u32>().is_ok_and(|v| v > 0)
        )
    } else if let Some(cron) = inner("cron(") {
        let fields: Vec<&str> = cron.split(' ').collect();
        fields.len() == 6 && ((fields[2] == "?") != (fields[4] == "?"))
    } else {
        false
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "Schedule '{schedule}' is not a valid expression: use at(yyyy-mm-ddThh:mm:ss), rate(value unit) or cron(minutes hours day-of-month month day-of-week year)"
        )))
    }
}

fn number(input: &Value, field: &str) -> Option<f64> {
    input.get(field).and_then(Value::as_f64)
}

impl Account {
    pub(super) fn put_scheduled_action(&mut self, input: &Value, region: &str) -> ApiResult {
        let key = Self::target_key(input)?;
        let name = required(input, "ScheduledActionName")?.to_string();
        check_name(&name)?;
        if let Some(schedule) = s(input, "Schedule") {
            check_schedule(schedule)?;
        }
        if let Some(timezone) = s(input, "Timezone") {
            validation::length(AAS, Some(timezone), "timezone", 1, 1600)?;
        }
        let action = input.get("ScalableTargetAction");
        let min = action
            .and_then(|a| a.get("MinCapacity"))
            .and_then(Value::as_i64);
        let max = action
            .and_then(|a| a.get("MaxCapacity"))
            .and_then(Value::as_i64);
        let (start, end) = (number(input, "StartTime"), number(input, "EndTime"));
        if !self.here.targets.contains_key(&key) {
            return Err(Self::no_target(&key));
        }
        let id = (key.clone(), name.clone());
        let existing = self.here.scheduled.get(&id).cloned();
        let schedule = match (s(input, "Schedule"), &existing) {
            (Some(schedule), _) => schedule.to_string(),
            (None, Some(old)) => old.schedule.clone(),
            // [GUESS] The API marks Schedule optional (an update may omit it); a new action could
            // never run without one, so its creation is refused.
            (None, None) => {
                return Err(invalid(
                    "Schedule is required when creating a scheduled action",
                ));
            }
        };
        if existing.is_none()
            && self
                .here
                .scheduled
                .keys()
                .filter(|(k, _)| *k == key)
                .count()
                >= PER_TARGET
        {
            return Err(ApiError::new(
                "LimitExceededException",
                format!("A scalable target can have at most {PER_TARGET} scheduled actions"),
            ));
        }
        let uuid = self.uuid();
        let partition = partition(region);
        let account = self.id.clone();
        let updated = ScheduledAction {
            arn: existing.as_ref().map_or_else(
                || {
                    format!(
                        "arn:{partition}:autoscaling:{region}:{account}:scheduledAction:{uuid}:resource/{}/{}:scheduledActionName/{name}",
                        key.0, key.1
                    )
                },
                |old| old.arn.clone(),
            ),
            target: key,
            schedule,
            timezone: s(input, "Timezone")
                .map(str::to_string)
                .or_else(|| existing.as_ref().and_then(|old| old.timezone.clone())),
            // "If you don't specify start and end times, the old values are deleted."
            start,
            end,
            // "To update a scheduled action, specify the parameters that you want to change":
            // ScalableTargetAction is one parameter, replaced whole when given (as moto does).
            min: if action.is_some() {
                min
            } else {
                existing.as_ref().and_then(|old| old.min)
            },
            max: if action.is_some() {
                max
            } else {
                existing.as_ref().and_then(|old| old.max)
            },
            created: existing
                .as_ref()
                .map_or_else(|| self.clock(), |old| old.created),
            name,
        };
        self.here.scheduled.insert(id, updated);
        Ok(json!({}))
    }

    pub(super) fn describe_scheduled_actions(&mut self, input: &Value) -> ApiResult {
        let namespace = required(input, "ServiceNamespace")?;
        validation::one_of(
            AAS,
            Some(namespace),
            "serviceNamespace",
            validation::SERVICE_NAMESPACES,
        )?;
        let names = string_list(input, "ScheduledActionNames");
        if names.len() > 50 {
            return Err(invalid(
                "1 validation error detected: Value at 'scheduledActionNames' failed to satisfy constraint: Member must have length less than or equal to 50",
            ));
        }
        let resource = s(input, "ResourceId");
        let dimension = s(input, "ScalableDimension");
        let items: Vec<Value> = self
            .here
            .scheduled
            .values()
            .filter(|a| {
                a.target.0 == namespace
                    && resource.is_none_or(|r| r == a.target.1)
                    && dimension.is_none_or(|d| d == a.target.2)
                    && (names.is_empty() || names.contains(&a.name))
            })
            .map(ScheduledAction::described)
            .collect();
        // MaxResults 1-50, default 50.
        let (items, next) = page(items, input, "MaxResults", 50, 50)?;
        Ok(with_token(json!({ "ScheduledActions": items }), next))
    }

    pub(super) fn delete_scheduled_action(&mut self, input: &Value) -> ApiResult {
        let key = Self::target_key(input)?;
        let name = required(input, "ScheduledActionName")?;
        match self.here.scheduled.remove(&(key.clone(), name.to_string())) {
            Some(_) => Ok(json!({})),
            None => Err(ApiError::new(
                "ObjectNotFoundException",
                format!(
                    "No scheduled action found for service namespace: {}, resource ID: {}, scalable dimension: {}, scheduled action name: {name}",
                    key.0, key.1, key.2
                ),
            )),
        }
    }

    /// Runs every scheduled action of the selected region due in `(from, to]` (epoch seconds):
    /// the scalable target takes the MinCapacity and/or MaxCapacity the action names, with a
    /// scaling activity whose cause names the action (User Guide, "Scheduled scaling"); the model
    /// then moves capacity into the new bounds as for any change of them (§2.13). Not while the
    /// target's ScheduledScalingSuspended is set. Returns the runs, for the model's records.
    pub fn run_scheduled_actions(&mut self, from: f64, to: f64) -> Vec<ScheduledRun> {
        let mut due: Vec<(f64, ScheduledAction)> = self
            .here
            .scheduled
            .values()
            .filter_map(|a| first_run_in(a, from, to).map(|at| (at, a.clone())))
            .collect();
        due.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
        let mut runs = Vec::new();
        for (at, action) in due {
            let Some(target) = self.here.targets.get(&action.target) else {
                continue;
            };
            if target.suspended["ScheduledScalingSuspended"] == json!(true) {
                continue;
            }
            let min = action.min.unwrap_or(target.min);
            let max = action.max.unwrap_or(target.max);
            let describe = |what: &str| match (action.min, action.max) {
                (Some(lo), Some(hi)) => {
                    format!("{what} min capacity to {lo} and max capacity to {hi}")
                }
                (Some(lo), None) => format!("{what} min capacity to {lo}"),
                (None, Some(hi)) => format!("{what} max capacity to {hi}"),
                (None, None) => format!("{what} nothing"),
            };
            // [GUESS] AWS does not document an action that would put MinCapacity above
            // MaxCapacity; it fails here, changing nothing, as RegisterScalableTarget would.
            let (status, message) = if min > max {
                (
                    "Failed",
                    Some(format!(
                        "Minimum capacity cannot be greater than maximum capacity (min {min}, max {max})"
                    )),
                )
            } else {
                let target = self.here.targets.get_mut(&action.target).expect("checked");
                target.min = min;
                target.max = max;
                ("Successful", None)
            };
            runs.push(ScheduledRun {
                resource_id: action.target.1.clone(),
                at,
                what: format!("scheduled action {}: {}", action.name, describe("Setting")),
                failure: message.clone(),
            });
            let activity_id = self.uuid();
            self.record_activity(Activity {
                activity_id,
                service_namespace: action.target.0.clone(),
                resource_id: action.target.1.clone(),
                scalable_dimension: action.target.2.clone(),
                description: describe("Setting"),
                cause: format!("scheduled action name {} was triggered", action.name),
                start_time: at,
                end_time: Some(at),
                status_code: status.to_string(),
                status_message: message,
                not_scaled_reasons: None,
            });
            self.config_version += 1;
            self.mark_changed(
                "application-autoscaling",
                "PutScheduledAction",
                &json!({ "ResourceId": action.target.1 }),
            );
        }
        runs
    }

    /// "Deregistering a scalable target deletes the scaling policies and the scheduled actions
    /// that are associated with it" (docs/aws-behaviour.md §2.4).
    pub(super) fn delete_scheduled_actions_of(&mut self, key: &TargetKey) {
        self.here.scheduled.retain(|(k, _), _| k != key);
    }
}

/// One run of a scheduled action, as the model records it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledRun {
    pub resource_id: String,
    /// Epoch seconds.
    pub at: f64,
    /// `scheduled action NAME: Setting min capacity to 1`.
    pub what: String,
    /// AWS's message when the run failed.
    pub failure: Option<String>,
}

/// The first run of `action` in `(from, to]`, on the clock AWS runs it by: whole minutes of its
/// time zone for `cron`, the civil second for `at`, every period from the start (or the
/// creation) for `rate`; never before its creation or start, nor after its end. A civil time that
/// a daylight saving change skips does not run; one it repeats runs twice. [GUESS] AWS does not
/// document either case.
fn first_run_in(action: &ScheduledAction, from: f64, to: f64) -> Option<f64> {
    use asyncscale_api::schedule::Schedule;
    let from = from
        .max(action.created)
        .max(action.start.unwrap_or(f64::MIN));
    let to = to.min(action.end.unwrap_or(f64::MAX));
    if from >= to {
        return None;
    }
    let zone = match action.timezone.as_deref() {
        None | Some("UTC") => jiff::tz::TimeZone::UTC,
        Some(name) => jiff::tz::db().get(name).ok()?,
    };
    let civil = |t: f64| {
        jiff::Timestamp::from_second(t as i64)
            .ok()
            .map(|ts| zone.to_datetime(ts))
    };
    match Schedule::parse(&action.schedule).ok()? {
        Schedule::At(at) => {
            let ambiguous = zone.to_ambiguous_zoned(at);
            if matches!(ambiguous.offset(), jiff::tz::AmbiguousOffset::Gap { .. }) {
                return None;
            }
            let instant = ambiguous.compatible().ok()?.timestamp();
            let t = instant.as_second() as f64;
            (t > from && t <= to).then_some(t)
        }
        Schedule::Rate { minutes } => {
            let anchor = action.start.unwrap_or(action.created);
            let period = f64::from(minutes) * 60.0;
            let k = ((from - anchor) / period).floor() + 1.0;
            let t = anchor + k.max(1.0) * period;
            (t > from && t <= to).then_some(t)
        }
        Schedule::Cron(cron) => {
            let mut minute = (from / 60.0).floor() * 60.0 + 60.0;
            while minute <= to {
                if cron.matches(civil(minute)?) {
                    return Some(minute);
                }
                minute += 60.0;
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::state::QuotaTable;

    #[test]
    fn schedules_take_the_documented_forms_only() {
        for good in [
            "at(2026-12-01T08:00:00)",
            "rate(5 minutes)",
            "rate(1 day)",
            "cron(50 7 ? * MON-FRI *)",
            "cron(0 8 1 * ? *)",
        ] {
            assert!(check_schedule(good).is_ok(), "{good}");
        }
        for bad in [
            "at(2026-12-01 08:00:00)",
            "rate(0 minutes)",
            "rate(5 weeks)",
            "cron(0 8 * * *)",
            "cron(0 8 * * MON *)",
            "every day",
        ] {
            assert!(check_schedule(bad).is_err(), "{bad}");
        }
        assert!(check_name("prewarm").is_ok());
        for bad in ["a:b", "a/b", " lead", "trail ", ""] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_action_runs_on_the_clock_and_one_that_cannot_fails_with_aws_words() {
        let mut account = Account::new(QuotaTable::default());
        let target = json!({"ServiceNamespace": "sagemaker", "ResourceId": "endpoint/e/variant/v",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"});
        let mut register = target.clone();
        register["MinCapacity"] = json!(0);
        register["MaxCapacity"] = json!(2);
        account
            .handle(
                "application-autoscaling",
                "RegisterScalableTarget",
                &register,
                "us-east-1",
            )
            .unwrap();
        account.virtual_now = Some(0.0);
        for (name, schedule, capacities) in [
            ("up", "rate(1 minute)", json!({"MinCapacity": 1})),
            ("too-high", "rate(2 minutes)", json!({"MinCapacity": 3})),
        ] {
            let mut put = target.clone();
            put["ScheduledActionName"] = json!(name);
            put["Schedule"] = json!(schedule);
            put["ScalableTargetAction"] = capacities;
            account
                .handle(
                    "application-autoscaling",
                    "PutScheduledAction",
                    &put,
                    "us-east-1",
                )
                .unwrap();
        }
        let first = account.run_scheduled_actions(0.0, 60.0);
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(
            first[0].what,
            "scheduled action up: Setting min capacity to 1"
        );
        assert_eq!(first[0].failure, None);
        let second = account.run_scheduled_actions(60.0, 120.0);
        let failed = second.iter().find(|r| r.what.contains("too-high")).unwrap();
        assert_eq!(
            failed.failure.as_deref(),
            Some("Minimum capacity cannot be greater than maximum capacity (min 3, max 2)")
        );
        let newest = account.activities().back().unwrap();
        assert!(
            newest.cause.starts_with("scheduled action name "),
            "{newest:?}"
        );
    }
}
