//! Application Auto Scaling (docs/aws-behaviour.md §2): scalable targets, scaling policies (with the
//! alarms target tracking creates), scaling activities and target tags.

use serde_json::{Map, Value, json};

use super::arn::{alarm_arn, partition, region_of};
use super::input::{AAS, int, lower_first, page, required, s, string_list, with_token};
use super::state::{Account, Activity, Alarm, Policy, Target, TargetKey, now};
use super::tags::{TagProblem, aas_tags, check_tags};
use crate::aws_error::{ApiError, ApiResult};
use crate::validation;

/// ServiceNamespace and (when given) ScalableDimension against their enums: a typo is refused,
/// never answered with an empty list.
fn check_namespace_and_dimension(input: &Value) -> Result<(), ApiError> {
    validation::one_of(
        AAS,
        s(input, "ServiceNamespace"),
        "serviceNamespace",
        validation::SERVICE_NAMESPACES,
    )?;
    validation::one_of(
        AAS,
        s(input, "ScalableDimension"),
        "scalableDimension",
        validation::SCALABLE_DIMENSIONS,
    )
}

impl Account {
    pub(super) fn target_key(input: &Value) -> Result<TargetKey, ApiError> {
        let namespace = required(input, "ServiceNamespace")?;
        let resource_id = required(input, "ResourceId")?;
        let dimension = required(input, "ScalableDimension")?;
        check_namespace_and_dimension(input)?;
        validation::length(AAS, Some(resource_id), "resourceId", 1, 1600)?;
        validation::resource_id_chars(AAS, resource_id, "resourceId")?;
        validation::dimension_belongs(namespace, dimension)?;
        if namespace == "sagemaker" {
            let parts: Vec<&str> = resource_id.split('/').collect();
            let variant_ok = parts.len() == 4
                && parts[0] == "endpoint"
                && parts[2] == "variant"
                && !parts[1].is_empty()
                && !parts[3].is_empty();
            if dimension.starts_with("sagemaker:variant:") && !variant_ok {
                return Err(ApiError::new(
                    "ValidationException",
                    format!(
                        "Unsupported resource ID '{resource_id}': a SageMaker variant resource ID looks like endpoint/<endpoint-name>/variant/<variant-name>"
                    ),
                ));
            }
        }
        Ok((
            namespace.to_string(),
            resource_id.to_string(),
            dimension.to_string(),
        ))
    }

    pub(super) fn no_target(key: &TargetKey) -> ApiError {
        // [OBS] message from docs/aws-behaviour.md §2.14.
        ApiError::new(
            "ObjectNotFoundException",
            format!(
                "No scalable target registered for service namespace: {}, resource ID: {}, scalable dimension: {}",
                key.0, key.1, key.2
            ),
        )
    }

    /// §2.1, §2.13: idempotent upsert, partial update; min and max are required on creation.
    pub(super) fn register_scalable_target(&mut self, input: &Value, region: &str) -> ApiResult {
        let key = Self::target_key(input)?;
        let min = int(input, "MinCapacity");
        let max = int(input, "MaxCapacity");
        for (field, value) in [("MinCapacity", min), ("MaxCapacity", max)] {
            if value.is_some_and(|v| v < 0) {
                return Err(ApiError::new(
                    "ValidationException",
                    format!("{field} must be a non-negative integer"),
                ));
            }
        }
        let existing = self.here.targets.get(&key).cloned();
        let (new_min, new_max) = match &existing {
            Some(t) => (min.unwrap_or(t.min), max.unwrap_or(t.max)),
            None => match (min, max) {
                (Some(a), Some(b)) => (a, b),
                _ => {
                    return Err(ApiError::new(
                        "ValidationException",
                        "MinCapacity and MaxCapacity are required when registering a new scalable target",
                    ));
                }
            },
        };
        if new_min > new_max {
            return Err(ApiError::new(
                "ValidationException",
                format!(
                    "Minimum capacity cannot be greater than maximum capacity (min {new_min}, max {new_max})"
                ),
            ));
        }
        let suspended = merge_suspended(
            existing.as_ref().map(|t| &t.suspended),
            input.get("SuspendedState"),
        );
        let arn = match existing {
            Some(t) => t.arn,
            None => {
                let id = self.uuid().replace('-', "");
                let arn = format!(
                    "arn:{}:application-autoscaling:{region}:{}:scalable-target/{id}",
                    partition(region),
                    self.id
                );
                // §2.1: tags are assigned on creation.
                let tags = aas_tags(input)?;
                check_tags(&tags, "tags")
                    .map_err(|(_, m)| ApiError::new("ValidationException", m))?;
                if !tags.is_empty() {
                    self.here.tags.insert(arn.clone(), tags);
                }
                arn
            }
        };
        let created = self.here.targets.get(&key).map_or_else(now, |t| t.created);
        self.max_capacity_writes
            .push((region.to_string(), key.1.clone(), Some(new_max)));
        self.here.targets.insert(
            key,
            Target {
                min: new_min,
                max: new_max,
                suspended,
                arn: arn.clone(),
                created,
            },
        );
        Ok(json!({ "ScalableTargetARN": arn }))
    }

    pub(super) fn describe_scalable_targets(&mut self, input: &Value) -> ApiResult {
        let namespace = required(input, "ServiceNamespace")?;
        check_namespace_and_dimension(input)?;
        let ids = string_list(input, "ResourceIds");
        at_most(&ids, "ResourceIds", 50)?;
        let dimension = s(input, "ScalableDimension");
        let items: Vec<Value> = self
            .here
            .targets
            .iter()
            .filter(|(k, _)| k.0 == namespace && (ids.is_empty() || ids.contains(&k.1)) && dimension.is_none_or(|d| d == k.2))
            .map(|(k, t)| {
                json!({
                    "ServiceNamespace": k.0, "ResourceId": k.1, "ScalableDimension": k.2,
                    "MinCapacity": t.min, "MaxCapacity": t.max, "SuspendedState": t.suspended,
                    "CreationTime": t.created, "ScalableTargetARN": t.arn,
                    "RoleARN": format!("arn:{}:iam::{}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint", t.arn.split(':').nth(1).unwrap_or("aws"), self.id),
                })
            })
            .collect();
        let (items, next) = page(items, input, "MaxResults", 50, 50)?;
        Ok(with_token(json!({ "ScalableTargets": items }), next))
    }

    /// §2.4: deregistering deletes the target's policies (and so their AWS-created alarms) and
    /// scheduled actions; user-created alarms stay.
    pub(super) fn deregister_scalable_target(&mut self, input: &Value) -> ApiResult {
        let key = Self::target_key(input)?;
        let target = self
            .here
            .targets
            .remove(&key)
            .ok_or_else(|| Self::no_target(&key))?;
        self.max_capacity_writes
            .push((self.region.clone(), key.1.clone(), None));
        let names: Vec<String> = self
            .here
            .policies
            .keys()
            .filter(|(k, _)| *k == key)
            .map(|(_, n)| n.clone())
            .collect();
        for name in names {
            self.remove_policy(&key, &name);
        }
        self.delete_scheduled_actions_of(&key);
        self.here.tags.remove(&target.arn);
        Ok(json!({}))
    }

    /// §2.2: create or update by name; the ARN stays the same across updates (ASSUMPTION, §2.18).
    /// Target tracking creates AlarmHigh/AlarmLow (§2.7).
    pub(super) fn put_scaling_policy(&mut self, input: &Value, region: &str) -> ApiResult {
        let key = Self::target_key(input)?;
        let name = required(input, "PolicyName")?.to_string();
        validation::length(AAS, Some(&name), "policyName", 1, 256)?;
        validation::printable(AAS, Some(&name), "policyName")?;
        validation::one_of(
            AAS,
            s(input, "PolicyType"),
            "policyType",
            validation::POLICY_TYPES,
        )?;
        if !self.here.targets.contains_key(&key) {
            return Err(Self::no_target(&key));
        }
        let existing = self
            .here
            .policies
            .get(&(key.clone(), name.clone()))
            .cloned();
        // "This parameter is required if you are creating a scaling policy" (PutScalingPolicy).
        let policy_type = s(input, "PolicyType")
            .map(str::to_string)
            .or_else(|| existing.as_ref().map(|p| p.policy_type.clone()))
            .ok_or_else(|| {
                ApiError::new(
                    "ValidationException",
                    "1 validation error detected: Value null at 'policyType' failed to satisfy constraint: PolicyType is required when creating a scaling policy",
                )
            })?;
        if let Some(old) = &existing
            && old.policy_type != policy_type
        {
            return Err(ApiError::new(
                "ValidationException",
                format!(
                    "Cannot change the policy type of policy {name} from {} to {policy_type}",
                    old.policy_type
                ),
            ));
        }
        let config = match policy_type.as_str() {
            "TargetTrackingScaling" => {
                let c = input.get("TargetTrackingScalingPolicyConfiguration").cloned().ok_or_else(|| {
                    ApiError::new("ValidationException", "TargetTrackingScalingPolicyConfiguration is required for a TargetTrackingScaling policy")
                })?;
                if !c.get("TargetValue").is_some_and(Value::is_number) {
                    return Err(ApiError::new(
                        "ValidationException",
                        "TargetValue is required",
                    ));
                }
                validation::target_tracking(&key.0, &c)?;
                c
            }
            "StepScaling" => {
                let c = input
                    .get("StepScalingPolicyConfiguration")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                validation::one_of(
                    AAS,
                    s(&c, "MetricAggregationType"),
                    "stepScalingPolicyConfiguration.metricAggregationType",
                    validation::AGGREGATION_TYPES,
                )?;
                validate_step_configuration(&c)?;
                c
            }
            other => {
                return Err(ApiError::new(
                    "ValidationException",
                    format!("Unsupported policy type {other} for service namespace sagemaker"),
                ));
            }
        };
        let arn = match &existing {
            Some(p) => p.arn.clone(),
            None => {
                let uuid = self.uuid();
                format!(
                    "arn:{}:autoscaling:{region}:{}:scalingPolicy:{uuid}:resource/{}/{}:policyName/{name}",
                    partition(region),
                    self.id,
                    key.0,
                    key.1
                )
            }
        };
        // ASSUMPTION (§7.3): an update re-creates the AWS-managed alarms with new names.
        if let Some(old) = &existing {
            for alarm in &old.owned_alarms {
                self.here.alarms.remove(alarm);
            }
        }
        let owned_alarms = if policy_type == "TargetTrackingScaling" {
            self.create_target_tracking_alarms(&key, &arn, &config, region)
        } else {
            Vec::new()
        };
        let created = existing.as_ref().map_or_else(now, |p| p.created);
        self.here.policies.insert(
            (key.clone(), name.clone()),
            Policy {
                target: key,
                name,
                arn: arn.clone(),
                policy_type,
                config,
                created,
                owned_alarms: owned_alarms.clone(),
            },
        );
        let alarms: Vec<Value> = owned_alarms
            .iter()
            .map(|n| json!({ "AlarmName": n, "AlarmARN": alarm_arn(&self.id, region, n) }))
            .collect();
        Ok(json!({ "PolicyARN": arn, "Alarms": alarms }))
    }

    /// The alarms AWS creates for a target-tracking policy, as observed (§2.7): AlarmHigh with
    /// GreaterThanThreshold at the target over 3 of 3 minutes, AlarmLow with LessThanThreshold at
    /// 0.9 × target over 15 of 15 minutes. ASSUMPTION (§2.7, §7.11): AlarmLow exists even with
    /// DisableScaleIn.
    pub(super) fn create_target_tracking_alarms(
        &mut self,
        key: &TargetKey,
        policy_arn: &str,
        config: &Value,
        region: &str,
    ) -> Vec<String> {
        let target = config
            .get("TargetValue")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let metric = config
            .get("CustomizedMetricSpecification")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut names = Vec::new();
        for (kind, operator, threshold, periods) in [
            (
                "AlarmHigh",
                "GreaterThanThreshold",
                target,
                self.target_tracking_alarms.high_periods,
            ),
            (
                "AlarmLow",
                "LessThanThreshold",
                target * self.target_tracking_alarms.low_ratio,
                self.target_tracking_alarms.low_periods,
            ),
        ] {
            let uuid = self.uuid();
            let name = format!("TargetTracking-{}-{kind}-{uuid}", key.1);
            let created_by = format!("{policy_arn}:createdBy/{}", self.uuid());
            let mut c = Map::new();
            c.insert("AlarmName".into(), json!(name));
            c.insert(
                "AlarmDescription".into(),
                json!(format!(
                    "DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {created_by}."
                )),
            );
            c.insert(
                "Namespace".into(),
                metric.get("Namespace").cloned().unwrap_or(Value::Null),
            );
            c.insert(
                "MetricName".into(),
                metric.get("MetricName").cloned().unwrap_or(Value::Null),
            );
            c.insert(
                "Dimensions".into(),
                metric
                    .get("Dimensions")
                    .cloned()
                    .unwrap_or_else(|| json!([])),
            );
            c.insert(
                "Statistic".into(),
                metric.get("Statistic").cloned().unwrap_or(json!("Average")),
            );
            c.insert("Period".into(), json!(60));
            c.insert("EvaluationPeriods".into(), json!(periods));
            c.insert("DatapointsToAlarm".into(), json!(periods));
            c.insert("Threshold".into(), json!(threshold));
            c.insert("ComparisonOperator".into(), json!(operator));
            c.insert("TreatMissingData".into(), json!("missing"));
            c.insert("ActionsEnabled".into(), json!(true));
            c.insert("AlarmActions".into(), json!([created_by]));
            let t = now();
            self.here.alarms.insert(
                name.clone(),
                Alarm {
                    config: c,
                    state: "INSUFFICIENT_DATA".into(),
                    state_reason: "Unchecked: Initial alarm creation".into(),
                    state_updated: t,
                    config_updated: t,
                },
            );
            let _ = region;
            names.push(name);
        }
        names
    }

    /// §2.15: deleting a step policy removes it from alarm actions but keeps the alarm; deleting a
    /// target-tracking policy deletes the alarms AWS created for it.
    pub(super) fn remove_policy(&mut self, key: &TargetKey, name: &str) -> Option<Policy> {
        let policy = self
            .here
            .policies
            .remove(&(key.clone(), name.to_string()))?;
        for alarm in &policy.owned_alarms {
            self.here.alarms.remove(alarm);
        }
        for alarm in self.here.alarms.values_mut() {
            if let Some(Value::Array(actions)) = alarm.config.get_mut("AlarmActions") {
                actions.retain(|a| a.as_str() != Some(policy.arn.as_str()));
            }
        }
        Some(policy)
    }

    pub(super) fn delete_scaling_policy(&mut self, input: &Value) -> ApiResult {
        let key = Self::target_key(input)?;
        let name = required(input, "PolicyName")?;
        match self.remove_policy(&key, name) {
            Some(_) => Ok(json!({})),
            None => Err(ApiError::new(
                "ObjectNotFoundException",
                format!(
                    "No scaling policy found for service namespace: {}, resource ID: {}, scalable dimension: {}, policy name: {name}",
                    key.0, key.1, key.2
                ),
            )),
        }
    }

    pub(super) fn describe_scaling_policies(&mut self, input: &Value) -> ApiResult {
        let namespace = required(input, "ServiceNamespace")?;
        check_namespace_and_dimension(input)?;
        let names = string_list(input, "PolicyNames");
        at_most(&names, "PolicyNames", 50)?;
        let resource = s(input, "ResourceId");
        let dimension = s(input, "ScalableDimension");
        let items: Vec<Value> = self
            .here
            .policies
            .values()
            .filter(|p| p.target.0 == namespace && resource.is_none_or(|r| r == p.target.1) && dimension.is_none_or(|d| d == p.target.2) && (names.is_empty() || names.contains(&p.name)))
            .map(|p| {
                // §2.19: a step policy lists the alarms whose actions name it (ASSUMPTION).
                let alarms: Vec<Value> = if p.policy_type == "StepScaling" {
                    self.here.alarms
                        .iter()
                        .filter(|(_, a)| a.config.get("AlarmActions").and_then(Value::as_array).is_some_and(|acts| acts.iter().any(|x| x.as_str() == Some(&p.arn))))
                        .map(|(n, _)| json!({ "AlarmName": n, "AlarmARN": alarm_arn(&self.id, region_of(&p.arn), n) }))
                        .collect()
                } else {
                    p.owned_alarms.iter().map(|n| json!({ "AlarmName": n, "AlarmARN": alarm_arn(&self.id, region_of(&p.arn), n) })).collect()
                };
                let mut v = json!({
                    "PolicyARN": p.arn, "PolicyName": p.name, "ServiceNamespace": p.target.0,
                    "ResourceId": p.target.1, "ScalableDimension": p.target.2, "PolicyType": p.policy_type,
                    "Alarms": alarms, "CreationTime": p.created,
                });
                let field = if p.policy_type == "StepScaling" { "StepScalingPolicyConfiguration" } else { "TargetTrackingScalingPolicyConfiguration" };
                v[field] = p.config.clone();
                v
            })
            .collect();
        // §2.3: MaxResults 1-10, default 10.
        let (items, next) = page(items, input, "MaxResults", 10, 10)?;
        Ok(with_token(json!({ "ScalingPolicies": items }), next))
    }

    pub(super) fn describe_scaling_activities(&mut self, input: &Value) -> ApiResult {
        let namespace = required(input, "ServiceNamespace")?;
        check_namespace_and_dimension(input)?;
        let resource = s(input, "ResourceId");
        let dimension = s(input, "ScalableDimension");
        let not_scaled = input
            .get("IncludeNotScaledActivities")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut matching: Vec<&Activity> = self
            .here
            .activities
            .iter()
            .filter(|a| {
                a.service_namespace == namespace
                    && resource.is_none_or(|r| r == a.resource_id)
                    && dimension.is_none_or(|d| d == a.scalable_dimension)
                    && (not_scaled || a.not_scaled_reasons.is_none())
            })
            .collect();
        matching.sort_by(|a, b| b.start_time.total_cmp(&a.start_time));
        let items = matching
            .into_iter()
            .map(|a| serde_json::to_value(a).expect("activities serialise"))
            .collect();
        let (items, next) = page(items, input, "MaxResults", 50, 50)?;
        Ok(with_token(json!({ "ScalingActivities": items }), next))
    }

    /// The ResourceARN of a tag call, when it names a scalable target that exists. Its pattern
    /// (TagResource API reference): `^arn:.+:application-autoscaling:.+:[0-9]+:scalable-target\/[a-zA-Z0-9-]+$`.
    fn target_arn_of<'a>(&self, input: &'a Value) -> Result<&'a str, ApiError> {
        let arn = required(input, "ResourceARN")?;
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let well_formed = arn.len() <= 1011
            && parts.len() == 6
            && parts[0] == "arn"
            && !parts[1].is_empty()
            && parts[2] == "application-autoscaling"
            && !parts[3].is_empty()
            && !parts[4].is_empty()
            && parts[4].chars().all(|c| c.is_ascii_digit())
            && parts[5].strip_prefix("scalable-target/").is_some_and(|id| {
                !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !well_formed {
            return Err(ApiError::new(
                "ValidationException",
                format!(
                    "1 validation error detected: Value '{arn}' at 'resourceARN' failed to satisfy constraint: Member must satisfy regular expression pattern: ^arn:.+:application-autoscaling:.+:[0-9]+:scalable-target\\/[a-zA-Z0-9-]+$"
                ),
            ));
        }
        if !self.here.targets.values().any(|t| t.arn == arn) {
            return Err(ApiError::new(
                "ResourceNotFoundException",
                format!("Scalable target with ARN {arn} not found"),
            ));
        }
        Ok(arn)
    }

    pub(super) fn aas_tag_resource(&mut self, input: &Value) -> ApiResult {
        let arn = self.target_arn_of(input)?;
        // Checked before anything is written: a refused request changes nothing.
        let mut merged = self.here.tags.get(arn).cloned().unwrap_or_default();
        merged.extend(aas_tags(input)?);
        check_tags(&merged, "tags").map_err(|(kind, m)| match kind {
            TagProblem::TooMany => ApiError::new("TooManyTagsException", m),
            TagProblem::Invalid => ApiError::new("ValidationException", m),
        })?;
        self.here.tags.insert(arn.to_string(), merged);
        Ok(json!({}))
    }

    pub(super) fn aas_untag_resource(&mut self, input: &Value) -> ApiResult {
        let arn = self.target_arn_of(input)?;
        if let Some(tags) = self.here.tags.get_mut(arn) {
            for key in string_list(input, "TagKeys") {
                tags.remove(&key);
            }
        }
        Ok(json!({}))
    }

    pub(super) fn aas_list_tags(&mut self, input: &Value) -> ApiResult {
        let arn = self.target_arn_of(input)?;
        Ok(json!({ "Tags": self.here.tags.get(arn).cloned().unwrap_or_default() }))
    }
}

/// Application Auto Scaling's answer to a list longer than its model allows.
fn at_most(list: &[String], field: &str, max: usize) -> Result<(), ApiError> {
    if list.len() <= max {
        return Ok(());
    }
    Err(ApiError::new(
        "ValidationException",
        format!(
            "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length less than or equal to {max}",
            lower_first(field)
        ),
    ))
}

fn merge_suspended(existing: Option<&Value>, given: Option<&Value>) -> Value {
    let mut merged = existing.cloned().unwrap_or_else(|| json!({ "DynamicScalingInSuspended": false, "DynamicScalingOutSuspended": false, "ScheduledScalingSuspended": false }));
    if let Some(Value::Object(given)) = given {
        for (k, v) in given {
            if v.is_boolean() {
                merged[k] = v.clone();
            }
        }
    }
    merged
}

/// §3.1: bounds may not overlap or leave gaps, at most one null bound each side, AdjustmentType
/// and StepAdjustments are required.
fn validate_step_configuration(c: &Value) -> Result<(), ApiError> {
    let kind = s(c, "AdjustmentType").ok_or_else(|| {
        ApiError::new(
            "ValidationException",
            "AdjustmentType is required for a step scaling policy",
        )
    })?;
    if ![
        "ChangeInCapacity",
        "PercentChangeInCapacity",
        "ExactCapacity",
    ]
    .contains(&kind)
    {
        return Err(ApiError::new(
            "ValidationException",
            format!("Unsupported AdjustmentType {kind}"),
        ));
    }
    let steps = c
        .get("StepAdjustments")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                "ValidationException",
                "StepAdjustments must contain at least one step adjustment",
            )
        })?;
    let mut ranges: Vec<(f64, f64)> = Vec::new();
    for step in steps {
        let lower = step.get("MetricIntervalLowerBound").and_then(Value::as_f64);
        let upper = step.get("MetricIntervalUpperBound").and_then(Value::as_f64);
        if step
            .get("ScalingAdjustment")
            .and_then(Value::as_i64)
            .is_none()
        {
            return Err(ApiError::new(
                "ValidationException",
                "ScalingAdjustment is required for each step adjustment",
            ));
        }
        if lower.is_none() && upper.is_none() {
            return Err(ApiError::new(
                "ValidationException",
                "A step adjustment cannot have both bounds null",
            ));
        }
        let (lo, hi) = (
            lower.unwrap_or(f64::NEG_INFINITY),
            upper.unwrap_or(f64::INFINITY),
        );
        if hi <= lo {
            return Err(ApiError::new(
                "ValidationException",
                "The upper bound of a step adjustment must be greater than its lower bound",
            ));
        }
        ranges.push((lo, hi));
    }
    validation::step_bounds_reach_infinity(steps)?;
    ranges.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in ranges.windows(2) {
        if pair[0].1 != pair[1].0 {
            return Err(ApiError::new(
                "ValidationException",
                "Step adjustment intervals cannot overlap or have gaps",
            ));
        }
    }
    if kind == "ExactCapacity"
        && steps.iter().any(|s| {
            s.get("ScalingAdjustment")
                .and_then(Value::as_i64)
                .is_some_and(|n| n < 0)
        })
    {
        return Err(ApiError::new(
            "ValidationException",
            "ExactCapacity scaling adjustments must be non-negative",
        ));
    }
    Ok(())
}
