//! CloudWatch metric alarms (docs/aws-behaviour.md §4): create or overwrite, describe, delete, state
//! and tags.

use serde_json::{Map, Value, json};

use super::arn::alarm_arn;
use super::input::{CW, int, page, required, s, string_list, with_token};
use super::state::{Account, Alarm, now};
use super::tags::{check_tags, cw_tags};
use crate::aws_error::{ApiError, ApiResult};
use crate::validation;

impl Account {
    /// §4.1, §4.8: create (state INSUFFICIENT_DATA, tags applied) or overwrite the whole
    /// configuration (state kept, tags ignored).
    pub(super) fn put_metric_alarm(&mut self, input: &Value, region: &str) -> ApiResult {
        let name = required(input, "AlarmName")?.to_string();
        validation::length(CW, Some(&name), "alarmName", 1, 255)?;
        validation::length(
            CW,
            s(input, "AlarmDescription"),
            "alarmDescription",
            0,
            1024,
        )?;
        validation::one_of(
            CW,
            s(input, "Statistic"),
            "statistic",
            validation::CW_STATISTICS,
        )?;
        validation::one_of(CW, s(input, "Unit"), "unit", validation::CW_UNITS)?;
        let metrics = input.get("Metrics").is_some_and(|m| !m.is_null());
        let statistic = input.get("Statistic").is_some_and(|v| !v.is_null());
        let extended = input.get("ExtendedStatistic").is_some_and(|v| !v.is_null());
        if metrics {
            if statistic || extended || input.get("MetricName").is_some() {
                return Err(CW.error(
                    "Statistic, ExtendedStatistic and MetricName should not be set if list of Metrics is set.",
                ));
            }
        } else {
            if statistic == extended {
                return Err(CW.error(
                    "Exactly one of Statistic and ExtendedStatistic must be set for a metric alarm.",
                ));
            }
            for field in ["MetricName", "Namespace"] {
                if s(input, field).is_none_or(str::is_empty) {
                    return Err(CW.error(format!(
                        "1 validation error detected: Value null at '{}' failed to satisfy constraint: {field} is required for a metric alarm without Metrics",
                        validation::member(field)
                    )));
                }
            }
        }
        let dimensions = input
            .get("Dimensions")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if dimensions > 30 {
            return Err(CW.error(format!(
                "1 validation error detected: Value at 'dimensions' failed to satisfy constraint: Member must have length less than or equal to 30 (got {dimensions})"
            )));
        }
        if let Some(extended) = s(input, "ExtendedStatistic")
            && let Some(percentile) = extended.strip_prefix('p')
            && percentile
                .parse::<f64>()
                .is_ok_and(|p| !(0.0..=100.0).contains(&p))
        {
            return Err(invalid(
                "ExtendedStatistic",
                "must be a percentile between p0.0 and p100",
            ));
        }
        let valid_period = |p: i64| matches!(p, 10 | 20 | 30) || (p > 0 && p % 60 == 0);
        // A metric alarm has a Period; a metric-math or anomaly-detection alarm (Metrics) has one
        // in each MetricStat instead (PutMetricAlarm and MetricDataQuery API references).
        let period = if metrics {
            let mut longest = 60;
            for stat in input["Metrics"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.get("MetricStat"))
            {
                let p = int(stat, "Period").ok_or_else(|| {
                    invalid("Metrics.MetricStat.Period", "is required in a MetricStat")
                })?;
                if !valid_period(p) {
                    return Err(invalid(
                        "Metrics.MetricStat.Period",
                        "must be 10, 20, 30 or a multiple of 60",
                    ));
                }
                longest = longest.max(p);
            }
            longest
        } else {
            let period = int(input, "Period")
                .ok_or_else(|| invalid("Period", "is required for a metric alarm"))?;
            if !valid_period(period) {
                return Err(invalid("Period", "must be 10, 20, 30 or a multiple of 60"));
            }
            period
        };
        let evaluation = int(input, "EvaluationPeriods")
            .ok_or_else(|| invalid("EvaluationPeriods", "is required"))?;
        if evaluation < 1 {
            return Err(invalid("EvaluationPeriods", "must be at least 1"));
        }
        let window_limit = if period < 3600 { 86_400 } else { 604_800 };
        if period * evaluation > window_limit {
            return Err(invalid(
                "EvaluationPeriods",
                &format!("Period * EvaluationPeriods must be at most {window_limit} seconds"),
            ));
        }
        if let Some(datapoints) = int(input, "DatapointsToAlarm")
            && (datapoints < 1 || datapoints > evaluation)
        {
            return Err(invalid(
                "DatapointsToAlarm",
                "must be between 1 and EvaluationPeriods",
            ));
        }
        // An anomaly-detection alarm compares with a band (ThresholdMetricId), not a Threshold.
        if input.get("Threshold").is_none() && s(input, "ThresholdMetricId").is_none() {
            return Err(invalid(
                "Threshold",
                "is required for a metric alarm without ThresholdMetricId",
            ));
        }
        let operator = required(input, "ComparisonOperator")?;
        if ![
            "GreaterThanOrEqualToThreshold",
            "GreaterThanThreshold",
            "LessThanThreshold",
            "LessThanOrEqualToThreshold",
            "LessThanLowerOrGreaterThanUpperThreshold",
            "LessThanLowerThreshold",
            "GreaterThanUpperThreshold",
        ]
        .contains(&operator)
        {
            return Err(invalid(
                "ComparisonOperator",
                "is not a supported comparison operator",
            ));
        }
        if let Some(t) = s(input, "TreatMissingData")
            && !["breaching", "notBreaching", "ignore", "missing"].contains(&t)
        {
            return Err(invalid(
                "TreatMissingData",
                "must be breaching, notBreaching, ignore or missing",
            ));
        }
        for field in ["AlarmActions", "OKActions", "InsufficientDataActions"] {
            let actions = string_list(input, field);
            if actions.len() > 5 {
                return Err(CW.error(format!(
                    "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length less than or equal to 5",
                    validation::member(field)
                )));
            }
            if let Some(bad) = actions.iter().find(|a| !validation::is_arn(a)) {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    format!("Invalid arn syntax: {bad}"),
                ));
            }
        }
        let mut config = Map::new();
        for field in [
            "AlarmName",
            "AlarmDescription",
            "ActionsEnabled",
            "OKActions",
            "AlarmActions",
            "InsufficientDataActions",
            "MetricName",
            "Namespace",
            "Statistic",
            "ExtendedStatistic",
            "Dimensions",
            "Period",
            "Unit",
            "EvaluationPeriods",
            "DatapointsToAlarm",
            "Threshold",
            "ComparisonOperator",
            "TreatMissingData",
            "Metrics",
            "ThresholdMetricId",
            "EvaluateLowSampleCountPercentile",
        ] {
            if let Some(v) = input.get(field).filter(|v| !v.is_null()) {
                config.insert(field.to_string(), v.clone());
            }
        }
        config.entry("ActionsEnabled").or_insert(json!(true));
        let t = now();
        match self.here.alarms.get_mut(&name) {
            Some(alarm) => {
                alarm.config = config;
                alarm.config_updated = t;
            }
            None => {
                let arn = alarm_arn(&self.id, region, &name);
                let tags = cw_tags(input);
                check_tags(&tags, "Tags")
                    .map_err(|(_, m)| ApiError::new("InvalidParameterValue", m))?;
                if !tags.is_empty() {
                    self.here.tags.insert(arn, tags);
                }
                self.here.alarms.insert(
                    name,
                    Alarm {
                        config,
                        state: "INSUFFICIENT_DATA".into(),
                        state_reason: "Unchecked: Initial alarm creation".into(),
                        state_updated: t,
                        config_updated: t,
                    },
                );
            }
        }
        Ok(json!({}))
    }

    pub(super) fn describe_alarms(&mut self, input: &Value, region: &str) -> ApiResult {
        let names = string_list(input, "AlarmNames");
        let prefix = s(input, "AlarmNamePrefix");
        validation::one_of(
            CW,
            s(input, "StateValue"),
            "stateValue",
            validation::ALARM_STATES,
        )?;
        for kind in string_list(input, "AlarmTypes") {
            validation::one_of(CW, Some(&kind), "alarmTypes", validation::ALARM_TYPES)?;
        }
        validation::length(CW, prefix, "alarmNamePrefix", 1, 255)?;
        if names.len() > 100 {
            return Err(invalid("AlarmNames", "may list at most 100 names"));
        }
        if prefix.is_some() && !names.is_empty() {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                "AlarmNamePrefix and AlarmNames cannot be used together",
            ));
        }
        let state = s(input, "StateValue");
        let action_prefix = s(input, "ActionPrefix");
        // Only the types asked for (DescribeAlarms: "If you omit this parameter, only metric
        // alarms are returned"); this account holds no composite alarms.
        let types = string_list(input, "AlarmTypes");
        let metric_alarms_asked = types.is_empty() || types.iter().any(|t| t == "MetricAlarm");
        let items: Vec<Value> = self
            .here
            .alarms
            .iter()
            .filter(|(n, a)| {
                metric_alarms_asked
                    && (names.is_empty() || names.contains(n))
                    && prefix.is_none_or(|p| n.starts_with(p))
                    && state.is_none_or(|st| st == a.state)
                    && action_prefix.is_none_or(|p| {
                        a.config
                            .get("AlarmActions")
                            .and_then(Value::as_array)
                            .is_some_and(|acts| {
                                acts.iter()
                                    .any(|x| x.as_str().is_some_and(|x| x.starts_with(p)))
                            })
                    })
            })
            .map(|(n, a)| {
                let mut v = Value::Object(a.config.clone());
                v["AlarmArn"] = json!(alarm_arn(&self.id, region, n));
                v["StateValue"] = json!(a.state);
                v["StateReason"] = json!(a.state_reason);
                v["StateUpdatedTimestamp"] = json!(a.state_updated);
                v["StateTransitionedTimestamp"] = json!(a.state_updated);
                v["AlarmConfigurationUpdatedTimestamp"] = json!(a.config_updated);
                for list in [
                    "OKActions",
                    "AlarmActions",
                    "InsufficientDataActions",
                    "Dimensions",
                ] {
                    if v.get(list).is_none() {
                        v[list] = json!([]);
                    }
                }
                v
            })
            .collect();
        let (items, next) = page(items, input, "MaxRecords", 50, 100)?;
        Ok(with_token(
            json!({ "MetricAlarms": items, "CompositeAlarms": [] }),
            next,
        ))
    }

    /// §4.3: up to 100 names; the ones that exist are deleted even when others do not (ASSUMPTION:
    /// the API reference says that on an error no alarm is deleted).
    pub(super) fn delete_alarms(&mut self, input: &Value, region: &str) -> ApiResult {
        let names = string_list(input, "AlarmNames");
        if names.len() > 100 {
            return Err(invalid("AlarmNames", "may list at most 100 names"));
        }
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !self.here.alarms.contains_key(*n))
            .collect();
        let missing_text = missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        for name in &names {
            if self.here.alarms.remove(name).is_some() {
                self.here.tags.remove(&alarm_arn(&self.id, region, name));
            }
        }
        if missing.is_empty() {
            Ok(json!({}))
        } else {
            Err(ApiError::not_found_cw(format!(
                "Alarms not found: {missing_text}"
            )))
        }
    }

    pub(super) fn set_alarm_state(&mut self, input: &Value) -> ApiResult {
        let name = required(input, "AlarmName")?;
        let state = required(input, "StateValue")?.to_string();
        if !["OK", "ALARM", "INSUFFICIENT_DATA"].contains(&state.as_str()) {
            return Err(invalid(
                "StateValue",
                "must be OK, ALARM or INSUFFICIENT_DATA",
            ));
        }
        let reason = required(input, "StateReason")?.to_string();
        let alarm = self
            .here
            .alarms
            .get_mut(name)
            .ok_or_else(|| ApiError::not_found_cw(format!("Alarm {name} not found")))?;
        alarm.state = state;
        alarm.state_reason = reason;
        alarm.state_updated = now();
        Ok(json!({}))
    }

    /// The ResourceARN of a tag call, when it names an alarm of this account and region that
    /// exists (TagResource API reference: ResourceARN is an ARN, e.g.
    /// `arn:aws:cloudwatch:Region:account-id:alarm:alarm-name`).
    fn alarm_arn_of<'a>(&self, input: &'a Value, region: &str) -> Result<&'a str, ApiError> {
        let arn = required(input, "ResourceARN")?;
        if !validation::is_arn(arn) {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("Invalid arn syntax: {arn}"),
            ));
        }
        let name = arn
            .rsplit_once(":alarm:")
            .map(|(_, n)| n)
            .unwrap_or_default();
        if arn != alarm_arn(&self.id, region, name) || !self.here.alarms.contains_key(name) {
            return Err(ApiError::not_found_cw(format!("Alarm {arn} not found")));
        }
        Ok(arn)
    }

    pub(super) fn cw_list_tags(&mut self, input: &Value, region: &str) -> ApiResult {
        let arn = self.alarm_arn_of(input, region)?;
        let tags: Vec<Value> = self
            .here
            .tags
            .get(arn)
            .into_iter()
            .flatten()
            .map(|(k, v)| json!({ "Key": k, "Value": v }))
            .collect();
        Ok(json!({ "Tags": tags }))
    }

    pub(super) fn cw_tag_resource(&mut self, input: &Value, region: &str) -> ApiResult {
        let arn = self.alarm_arn_of(input, region)?;
        let given = cw_tags(input);
        // The request's own tags first: a bad key is named as such even on a full resource.
        check_tags(&given, "Tags").map_err(|(_, m)| ApiError::new("InvalidParameterValue", m))?;
        let mut merged = self.here.tags.get(arn).cloned().unwrap_or_default();
        merged.extend(given);
        check_tags(&merged, "Tags").map_err(|(_, m)| ApiError::new("InvalidParameterValue", m))?;
        self.here.tags.insert(arn.to_string(), merged);
        Ok(json!({}))
    }

    /// CloudWatch UntagResource: keys that are not there are ignored; each key is 1-128
    /// characters (UntagResource API reference, TagKeys).
    pub(super) fn cw_untag_resource(&mut self, input: &Value, region: &str) -> ApiResult {
        let arn = self.alarm_arn_of(input, region)?;
        let keys = string_list(input, "TagKeys");
        if let Some(bad) = keys
            .iter()
            .find(|k| k.is_empty() || k.chars().count() > 128)
        {
            let shown: String = bad.chars().take(64).collect();
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "1 validation error detected: Value at 'tagKeys' failed to satisfy constraint: Member must have length between 1 and 128 (tag key): {shown}"
                ),
            ));
        }
        if let Some(tags) = self.here.tags.get_mut(arn) {
            for key in keys {
                tags.remove(&key);
            }
        }
        Ok(json!({}))
    }
}

fn invalid(field: &str, what: &str) -> ApiError {
    ApiError::new(
        "InvalidParameterValue",
        format!("The parameter {field} {what}."),
    )
}
