//! A simulated AWS account: the state behind Application Auto Scaling, CloudWatch alarms and
//! Service Quotas, with AWS's validation and error shapes. Each operation takes and returns the
//! JSON shapes of the AWS API (botocore service models), so every wire protocol shares it.
//!
//! Behaviour follows ../shared/reference/aws-semantics.md; the section is cited at each rule.
//! Where AWS does not document a behaviour the choice is marked ASSUMPTION.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::quotas::known_quota_code;
use crate::validation::{self, Service};

const AAS: Service = Service::ApplicationAutoScaling;
const CW: Service = Service::CloudWatch;

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

pub const ACCOUNT_ID: &str = "123456789012";
const SAGEMAKER_DIMENSION: &str = "sagemaker:variant:DesiredInstanceCount";

/// An AWS error: code, message and HTTP status, as AWS sends them.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub status: u16,
}

impl ApiError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            status: 400,
        }
    }
    fn not_found_cw(message: impl Into<String>) -> Self {
        Self {
            code: "ResourceNotFound".into(),
            message: message.into(),
            status: 404,
        }
    }
    /// Whether the client caused it (for awsQuery-compatible error headers).
    pub fn is_sender_fault(&self) -> bool {
        self.status < 500
    }
}

pub type ApiResult = Result<Value, ApiError>;

pub(crate) type TargetKey = (String, String, String); // namespace, resource id, dimension

#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) min: i64,
    pub(crate) max: i64,
    pub(crate) suspended: Value,
    arn: String,
    created: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) target: TargetKey,
    pub(crate) name: String,
    pub(crate) arn: String,
    pub(crate) policy_type: String,
    pub(crate) config: Value,
    created: f64,
    /// Alarms AWS created for a target-tracking policy (AlarmHigh, AlarmLow).
    owned_alarms: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Alarm {
    pub(crate) config: Map<String, Value>,
    pub(crate) state: String,
    state_reason: String,
    state_updated: f64,
    config_updated: f64,
}

/// A scaling activity, settable by tests through the admin routes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Activity {
    #[serde(default)]
    pub activity_id: String,
    #[serde(default = "sagemaker")]
    pub service_namespace: String,
    pub resource_id: String,
    #[serde(default = "sagemaker_dimension")]
    pub scalable_dimension: String,
    pub description: String,
    #[serde(default)]
    pub cause: String,
    #[serde(default)]
    pub start_time: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<f64>,
    pub status_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Why an alarm's invocation did not scale (`{"Code": "AlreadyAtMaxCapacity", "MaxCapacity":
    /// 4}`); such activities are listed only with IncludeNotScaledActivities (§2.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_scaled_reasons: Option<Vec<Value>>,
}

fn sagemaker() -> String {
    "sagemaker".into()
}
fn sagemaker_dimension() -> String {
    SAGEMAKER_DIMENSION.into()
}

/// Service Quotas for SageMaker, by quota name.
#[derive(Debug, Clone, Default)]
pub struct QuotaTable {
    /// The account's applied values (GetServiceQuota).
    pub applied: BTreeMap<String, f64>,
    /// AWS's defaults (GetAWSDefaultServiceQuota).
    pub defaults: BTreeMap<String, f64>,
}

/// What one region of the account holds: AWS keeps scalable targets, policies, alarms and
/// activities per region, so a client that changes region sees none of the old region's.
#[derive(Debug, Default)]
pub(crate) struct RegionState {
    pub(crate) targets: BTreeMap<TargetKey, Target>,
    pub(crate) policies: BTreeMap<(TargetKey, String), Policy>,
    pub(crate) alarms: BTreeMap<String, Alarm>,
    /// Tags by ARN, for both Application Auto Scaling and CloudWatch resources.
    tags: BTreeMap<String, BTreeMap<String, String>>,
    activities: Vec<Activity>,
}

/// An AWS error to answer instead of (or after) serving a request: `POST /_sim/faults`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// `application-autoscaling`, `cloudwatch` or `service-quotas`; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub operation: String,
    /// The AWS error code to answer, e.g. `ThrottlingException`; none: only delay the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default = "default_fault_status")]
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How many requests it applies to; 0 means every request until cleared.
    #[serde(default = "default_fault_count")]
    pub count: u32,
    /// Hold the answer this long first (a hung or slow endpoint).
    #[serde(default)]
    pub delay_seconds: f64,
}

fn default_fault_status() -> u16 {
    400
}
fn default_fault_count() -> u32 {
    1
}

impl Fault {
    pub fn error(&self) -> Option<ApiError> {
        let code = self.code.clone()?;
        Some(ApiError {
            message: self
                .message
                .clone()
                .unwrap_or_else(|| format!("{code} (injected by POST /_sim/faults)")),
            code,
            status: self.status,
        })
    }
}

/// The whole simulated account. One per `sim serve`; thread safety is the server's job.
#[derive(Debug, Default)]
pub struct Account {
    /// The region the current request addresses, and its state; the other regions wait in
    /// `other_regions` (see [`Self::select_region`]).
    region: String,
    pub(crate) here: RegionState,
    other_regions: BTreeMap<String, RegionState>,
    /// Injected errors and delays, in the order they were added.
    pub faults: Vec<Fault>,
    pub quotas: QuotaTable,
    next_id: u64,
    /// Requests answered, by service and operation.
    pub calls: BTreeMap<String, BTreeMap<String, u64>>,
    /// Bumped by every request that may change configuration, so the scaling model re-reads it.
    pub(crate) config_version: u64,
    /// The shape of the alarms target tracking creates (an assumption of the model, §2.7).
    pub target_tracking_alarms: TargetTrackingAlarms,
}

/// Target tracking's AWS-created alarms, as observed (aws-semantics.md §2.7).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetTrackingAlarms {
    pub high_periods: u32,
    pub low_periods: u32,
    pub low_ratio: f64,
}

impl Default for TargetTrackingAlarms {
    fn default() -> Self {
        let a = crate::model::assumptions::Assumptions::default();
        Self {
            high_periods: a.alarm_high_periods,
            low_periods: a.alarm_low_periods,
            low_ratio: a.alarm_low_ratio,
        }
    }
}

pub fn now() -> f64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() as f64) / 1000.0
}

fn s<'a>(input: &'a Value, field: &str) -> Option<&'a str> {
    input.get(field).and_then(Value::as_str)
}

fn required<'a>(input: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    s(input, field).filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::new("ValidationException", format!("1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null", lower_first(field)))
    })
}

fn lower_first(field: &str) -> String {
    let mut chars = field.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

fn int(input: &Value, field: &str) -> Option<i64> {
    input
        .get(field)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

fn string_list(input: &Value, field: &str) -> Vec<String> {
    input
        .get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Pages `items` with an opaque numeric NextToken.
fn page(
    items: Vec<Value>,
    input: &Value,
    max_field: &str,
    default_max: usize,
    limit: usize,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    // CloudWatch's only paged call here uses MaxRecords; its constraint errors are ValidationError.
    let code = if max_field == "MaxRecords" {
        "ValidationError"
    } else {
        "ValidationException"
    };
    let max = match int(input, max_field) {
        Some(n) if n < 1 || n as usize > limit => {
            return Err(ApiError::new(
                code,
                format!(
                    "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: Member must have value between 1 and {limit}",
                    lower_first(max_field)
                ),
            ));
        }
        Some(n) => n as usize,
        None => default_max,
    };
    let start = match s(input, "NextToken") {
        None | Some("") => 0,
        Some(token) => token.parse::<usize>().map_err(|_| {
            ApiError::new(
                "InvalidNextTokenException",
                "The next token supplied was invalid.",
            )
        })?,
    };
    let end = (start + max).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items.into_iter().skip(start).take(max).collect(), next))
}

/// The region of a fresh account, and of unsigned requests.
pub const DEFAULT_REGION: &str = "us-east-1";

impl Account {
    pub fn new(quotas: QuotaTable) -> Self {
        Self {
            region: DEFAULT_REGION.to_string(),
            quotas,
            ..Default::default()
        }
    }

    /// Makes `region` the one `here` holds.
    pub fn select_region(&mut self, region: &str) {
        if self.region == region {
            return;
        }
        let incoming = self.other_regions.remove(region).unwrap_or_default();
        let outgoing = std::mem::replace(&mut self.here, incoming);
        self.other_regions.insert(
            std::mem::replace(&mut self.region, region.to_string()),
            outgoing,
        );
    }

    /// The fault that applies to this request, if any (and counts it down).
    pub fn take_fault(&mut self, service: &str, operation: &str) -> Option<Fault> {
        let index = self.faults.iter().position(|f| {
            f.operation == operation && f.service.as_deref().is_none_or(|s| s == service)
        })?;
        let fault = self.faults[index].clone();
        if fault.count == 1 {
            self.faults.remove(index);
        } else if fault.count > 1 {
            self.faults[index].count -= 1;
        }
        Some(fault)
    }

    fn uuid(&mut self) -> String {
        self.next_id += 1;
        format!(
            "{:08x}-5a5a-4000-8000-{:012x}",
            self.next_id * 2_654_435_761 % 0xffff_ffff,
            self.next_id
        )
    }

    pub fn record_call(&mut self, service: &str, operation: &str) {
        *self
            .calls
            .entry(service.to_string())
            .or_default()
            .entry(operation.to_string())
            .or_default() += 1;
    }

    pub fn add_activity(&mut self, mut activity: Activity) {
        if activity.activity_id.is_empty() {
            activity.activity_id = self.uuid();
        }
        if activity.start_time == 0.0 {
            activity.start_time = now();
        }
        self.here.activities.push(activity);
    }

    /// The instance quota enforced at scale-out: the applied value, else AWS's default; None when
    /// the account has neither (then nothing is enforced).
    pub fn instance_quota(&self, instance_type: &str) -> Option<f64> {
        let name = format!("{instance_type} for endpoint usage");
        self.quotas
            .applied
            .get(&name)
            .or_else(|| self.quotas.defaults.get(&name))
            .copied()
    }

    /// The scaling model moves alarms between states as CloudWatch would.
    pub(crate) fn transition_alarm(&mut self, name: &str, state: &str, reason: String, at: f64) {
        if let Some(alarm) = self.here.alarms.get_mut(name) {
            alarm.state = state.to_string();
            alarm.state_reason = reason;
            alarm.state_updated = at;
        }
    }

    /// Completes an activity the scaling model started (`index` from [`Self::record_activity`]).
    pub(crate) fn finish_activity(&mut self, index: usize, status: &str, message: String, at: f64) {
        if let Some(a) = self.here.activities.get_mut(index) {
            a.status_code = status.to_string();
            a.status_message = Some(message);
            a.end_time = Some(at);
        }
    }

    /// Records an activity and returns its index (activities are never removed).
    pub(crate) fn record_activity(&mut self, activity: Activity) -> usize {
        self.add_activity(activity);
        self.here.activities.len() - 1
    }

    pub fn activities(&self) -> &[Activity] {
        &self.here.activities
    }

    /// Dispatches one operation of one service. `region` comes from the request's signature.
    pub fn handle(
        &mut self,
        service: &str,
        operation: &str,
        input: &Value,
        region: &str,
    ) -> ApiResult {
        self.record_call(service, operation);
        self.select_region(region);
        if !["Describe", "List", "Get"]
            .iter()
            .any(|read| operation.starts_with(read))
        {
            self.config_version += 1;
        }
        match (service, operation) {
            ("application-autoscaling", "RegisterScalableTarget") => {
                self.register_scalable_target(input, region)
            }
            ("application-autoscaling", "DescribeScalableTargets") => {
                self.describe_scalable_targets(input)
            }
            ("application-autoscaling", "DeregisterScalableTarget") => {
                self.deregister_scalable_target(input)
            }
            ("application-autoscaling", "PutScalingPolicy") => {
                self.put_scaling_policy(input, region)
            }
            ("application-autoscaling", "DescribeScalingPolicies") => {
                self.describe_scaling_policies(input)
            }
            ("application-autoscaling", "DeleteScalingPolicy") => self.delete_scaling_policy(input),
            ("application-autoscaling", "DescribeScalingActivities") => {
                self.describe_scaling_activities(input)
            }
            ("application-autoscaling", "TagResource") => self.aas_tag_resource(input),
            ("application-autoscaling", "UntagResource") => self.aas_untag_resource(input),
            ("application-autoscaling", "ListTagsForResource") => self.aas_list_tags(input),
            ("cloudwatch", "PutMetricAlarm") => self.put_metric_alarm(input, region),
            ("cloudwatch", "DescribeAlarms") => self.describe_alarms(input, region),
            ("cloudwatch", "DeleteAlarms") => self.delete_alarms(input, region),
            ("cloudwatch", "SetAlarmState") => self.set_alarm_state(input),
            ("cloudwatch", "ListTagsForResource") => self.cw_list_tags(input),
            ("cloudwatch", "TagResource") => self.cw_tag_resource(input),
            ("cloudwatch", "UntagResource") => self.cw_untag_resource(input),
            ("service-quotas", "GetServiceQuota") => self.get_service_quota(input, region, false),
            ("service-quotas", "GetAWSDefaultServiceQuota") => {
                self.get_service_quota(input, region, true)
            }
            ("service-quotas", "ListServiceQuotas") => {
                self.list_service_quotas(input, region, false)
            }
            ("service-quotas", "ListAWSDefaultServiceQuotas") => {
                self.list_service_quotas(input, region, true)
            }
            _ => Err(ApiError::new(
                "UnknownOperationException",
                format!("{service} {operation} is not supported by the asyncscale simulator"),
            )),
        }
    }

    // ---- Application Auto Scaling (aws-semantics.md §2) ----

    fn target_key(input: &Value) -> Result<TargetKey, ApiError> {
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

    fn no_target(key: &TargetKey) -> ApiError {
        // [OBS] message from aws-semantics.md §2.2.
        ApiError::new(
            "ObjectNotFoundException",
            format!(
                "No scalable target registered for service namespace: {}, resource ID: {}, scalable dimension: {}",
                key.0, key.1, key.2
            ),
        )
    }

    /// §2.1: idempotent upsert, partial update; min and max are required on creation.
    fn register_scalable_target(&mut self, input: &Value, region: &str) -> ApiResult {
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
                    "arn:aws:application-autoscaling:{region}:{ACCOUNT_ID}:scalable-target/{id}"
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

    fn describe_scalable_targets(&mut self, input: &Value) -> ApiResult {
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
                    "RoleARN": format!("arn:aws:iam::{ACCOUNT_ID}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"),
                })
            })
            .collect();
        let (items, next) = page(items, input, "MaxResults", 50, 50)?;
        Ok(with_token(json!({ "ScalableTargets": items }), next))
    }

    /// §2.4: deregistering deletes the target's policies (and so their AWS-created alarms);
    /// user-created alarms stay.
    fn deregister_scalable_target(&mut self, input: &Value) -> ApiResult {
        let key = Self::target_key(input)?;
        let target = self
            .here
            .targets
            .remove(&key)
            .ok_or_else(|| Self::no_target(&key))?;
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
        self.here.tags.remove(&target.arn);
        Ok(json!({}))
    }

    /// §2.2: create or update by name; the ARN stays the same across updates (ASSUMPTION, as the
    /// semantics file recommends). Target tracking creates AlarmHigh/AlarmLow (§2.7).
    fn put_scaling_policy(&mut self, input: &Value, region: &str) -> ApiResult {
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
                    "arn:aws:autoscaling:{region}:{ACCOUNT_ID}:scalingPolicy:{uuid}:resource/{}/{}:policyName/{name}",
                    key.0, key.1
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
            .map(|n| json!({ "AlarmName": n, "AlarmARN": alarm_arn(region, n) }))
            .collect();
        Ok(json!({ "PolicyARN": arn, "Alarms": alarms }))
    }

    /// The alarms AWS creates for a target-tracking policy, as observed (§2.7): AlarmHigh with
    /// GreaterThanThreshold at the target over 3 of 3 minutes, AlarmLow with LessThanThreshold at
    /// 0.9 × target over 15 of 15 minutes. ASSUMPTION (§7.6): AlarmLow exists even with DisableScaleIn.
    fn create_target_tracking_alarms(
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

    /// §2.4: deleting a step policy removes it from alarm actions but keeps the alarm; deleting a
    /// target-tracking policy deletes the alarms AWS created for it.
    fn remove_policy(&mut self, key: &TargetKey, name: &str) -> Option<Policy> {
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

    fn delete_scaling_policy(&mut self, input: &Value) -> ApiResult {
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

    fn describe_scaling_policies(&mut self, input: &Value) -> ApiResult {
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
                // §2.3: a step policy lists the alarms whose actions name it (ASSUMPTION).
                let alarms: Vec<Value> = if p.policy_type == "StepScaling" {
                    self.here.alarms
                        .iter()
                        .filter(|(_, a)| a.config.get("AlarmActions").and_then(Value::as_array).is_some_and(|acts| acts.iter().any(|x| x.as_str() == Some(&p.arn))))
                        .map(|(n, _)| json!({ "AlarmName": n, "AlarmARN": alarm_arn(region_of(&p.arn), n) }))
                        .collect()
                } else {
                    p.owned_alarms.iter().map(|n| json!({ "AlarmName": n, "AlarmARN": alarm_arn(region_of(&p.arn), n) })).collect()
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

    fn describe_scaling_activities(&mut self, input: &Value) -> ApiResult {
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

    fn aas_tag_resource(&mut self, input: &Value) -> ApiResult {
        let arn = required(input, "ResourceARN")?;
        if !self.here.targets.values().any(|t| t.arn == arn) {
            return Err(ApiError::new(
                "ResourceNotFoundException",
                format!("Scalable target with ARN {arn} not found"),
            ));
        }
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

    fn aas_untag_resource(&mut self, input: &Value) -> ApiResult {
        let arn = required(input, "ResourceARN")?;
        if !self.here.targets.values().any(|t| t.arn == arn) {
            return Err(ApiError::new(
                "ResourceNotFoundException",
                format!("Scalable target with ARN {arn} not found"),
            ));
        }
        if let Some(tags) = self.here.tags.get_mut(arn) {
            for key in string_list(input, "TagKeys") {
                tags.remove(&key);
            }
        }
        Ok(json!({}))
    }

    fn aas_list_tags(&mut self, input: &Value) -> ApiResult {
        let arn = required(input, "ResourceARN")?;
        if !self.here.targets.values().any(|t| t.arn == arn) {
            return Err(ApiError::new(
                "ResourceNotFoundException",
                format!("Scalable target with ARN {arn} not found"),
            ));
        }
        Ok(json!({ "Tags": self.here.tags.get(arn).cloned().unwrap_or_default() }))
    }

    // ---- CloudWatch (aws-semantics.md §4) ----

    /// §4.1: create (state INSUFFICIENT_DATA, tags applied) or overwrite the whole configuration
    /// (state kept, tags ignored).
    fn put_metric_alarm(&mut self, input: &Value, region: &str) -> ApiResult {
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
        let period = int(input, "Period")
            .ok_or_else(|| invalid("Period", "is required for a metric alarm"))?;
        if !(matches!(period, 10 | 20 | 30) || (period > 0 && period % 60 == 0)) {
            return Err(invalid("Period", "must be 10, 20, 30 or a multiple of 60"));
        }
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
        if input.get("Threshold").is_none() {
            return Err(invalid("Threshold", "is required for a metric alarm"));
        }
        let operator = required(input, "ComparisonOperator")?;
        if ![
            "GreaterThanOrEqualToThreshold",
            "GreaterThanThreshold",
            "LessThanThreshold",
            "LessThanOrEqualToThreshold",
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
                let arn = alarm_arn(region, &name);
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

    fn describe_alarms(&mut self, input: &Value, region: &str) -> ApiResult {
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
        let items: Vec<Value> = self
            .here
            .alarms
            .iter()
            .filter(|(n, a)| {
                (names.is_empty() || names.contains(n))
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
                v["AlarmArn"] = json!(alarm_arn(region, n));
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

    /// §4.3: up to 100 names; the ones that exist are deleted even when others do not.
    fn delete_alarms(&mut self, input: &Value, region: &str) -> ApiResult {
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
                self.here.tags.remove(&alarm_arn(region, name));
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

    fn set_alarm_state(&mut self, input: &Value) -> ApiResult {
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

    fn cw_list_tags(&mut self, input: &Value) -> ApiResult {
        let arn = required(input, "ResourceARN")?;
        let name = arn
            .rsplit_once(":alarm:")
            .map(|(_, n)| n)
            .unwrap_or_default();
        if !self.here.alarms.contains_key(name) {
            return Err(ApiError::not_found_cw(format!("Alarm {arn} not found")));
        }
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

    fn cw_tag_resource(&mut self, input: &Value) -> ApiResult {
        let arn = required(input, "ResourceARN")?;
        let name = arn
            .rsplit_once(":alarm:")
            .map(|(_, n)| n)
            .unwrap_or_default();
        if !self.here.alarms.contains_key(name) {
            return Err(ApiError::not_found_cw(format!("Alarm {arn} not found")));
        }
        let mut merged = self.here.tags.get(arn).cloned().unwrap_or_default();
        merged.extend(cw_tags(input));
        check_tags(&merged, "Tags").map_err(|(_, m)| ApiError::new("InvalidParameterValue", m))?;
        self.here.tags.insert(arn.to_string(), merged);
        Ok(json!({}))
    }

    /// CloudWatch UntagResource: keys that are not there are ignored.
    fn cw_untag_resource(&mut self, input: &Value) -> ApiResult {
        let arn = required(input, "ResourceARN")?;
        let name = arn
            .rsplit_once(":alarm:")
            .map(|(_, n)| n)
            .unwrap_or_default();
        if !self.here.alarms.contains_key(name) {
            return Err(ApiError::not_found_cw(format!("Alarm {arn} not found")));
        }
        if let Some(tags) = self.here.tags.get_mut(arn) {
            for key in string_list(input, "TagKeys") {
                tags.remove(&key);
            }
        }
        Ok(json!({}))
    }

    // ---- Service Quotas (aws-semantics.md §5) ----

    fn quota_json(&self, region: &str, name: &str, code: &str, value: f64) -> Value {
        json!({
            "ServiceCode": "sagemaker", "ServiceName": "Amazon SageMaker",
            "QuotaArn": format!("arn:aws:servicequotas:{region}:{ACCOUNT_ID}:sagemaker/{code}"),
            "QuotaCode": code, "QuotaName": name, "Value": value, "Unit": "None",
            "Adjustable": true, "GlobalQuota": false, "QuotaAppliedAtLevel": "ACCOUNT",
        })
    }

    /// The applied or default quotas of the requested service; only SageMaker's exist here.
    fn quota_table(
        &self,
        input: &Value,
        default: bool,
    ) -> Result<&BTreeMap<String, f64>, ApiError> {
        let service = required(input, "ServiceCode")?;
        if service != "sagemaker" {
            let message = format!(
                "The request failed because the specified service {service} does not exist."
            );
            return Err(ApiError::new("NoSuchResourceException", message));
        }
        Ok(if default {
            &self.quotas.defaults
        } else {
            &self.quotas.applied
        })
    }

    /// §5.1: an applied value that does not exist answers NoSuchResourceException; the caller
    /// falls back to the AWS default.
    fn get_service_quota(&mut self, input: &Value, region: &str, default: bool) -> ApiResult {
        let table = self.quota_table(input, default)?;
        let code = required(input, "QuotaCode")?;
        check_quota_code(code)?;
        let found = table.iter().find(|(name, _)| quota_code(name) == code);
        match found {
            Some((name, value)) => {
                Ok(json!({ "Quota": self.quota_json(region, name, code, *value) }))
            }
            None => Err(ApiError::new(
                "NoSuchResourceException",
                format!("The request failed because the specified quota {code} does not exist."),
            )),
        }
    }

    fn list_service_quotas(&mut self, input: &Value, region: &str, default: bool) -> ApiResult {
        let table = self.quota_table(input, default)?;
        // ListServiceQuotas filters by QuotaCode; ListAWSDefaultServiceQuotas has no such member.
        let only = if default { None } else { s(input, "QuotaCode") };
        if let Some(code) = only {
            check_quota_code(code)?;
        }
        let items: Vec<Value> = table
            .iter()
            .map(|(name, value)| (name, value, quota_code(name)))
            .filter(|(_, _, code)| only.is_none_or(|o| o == code))
            .map(|(name, value, code)| self.quota_json(region, name, &code, *value))
            .collect();
        // §5.1: MaxResults 1-100. ASSUMPTION: AWS's default page size is not documented; 100.
        let (items, next) = page(items, input, "MaxResults", 100, 100)?;
        Ok(with_token(json!({ "Quotas": items }), next))
    }

    /// A summary of one region of the account, for tests and `GET /_sim/state`.
    pub fn snapshot(&mut self, region: &str) -> Value {
        self.select_region(region);
        let targets: Vec<Value> = self.here.targets.iter().map(|(k, t)| json!({ "ResourceId": k.1, "MinCapacity": t.min, "MaxCapacity": t.max, "SuspendedState": t.suspended, "ScalableTargetARN": t.arn, "Tags": self.here.tags.get(&t.arn).cloned().unwrap_or_default() })).collect();
        let policies: Vec<Value> = self.here.policies.values().map(|p| json!({ "ResourceId": p.target.1, "PolicyName": p.name, "PolicyType": p.policy_type, "PolicyARN": p.arn, "Configuration": p.config })).collect();
        let alarms: Vec<Value> = self
            .here
            .alarms
            .iter()
            .map(|(n, a)| {
                let mut v = Value::Object(a.config.clone());
                v["StateValue"] = json!(a.state);
                v["Tags"] = json!(
                    self.here
                        .tags
                        .get(&alarm_arn(region, n))
                        .cloned()
                        .unwrap_or_default()
                );
                v
            })
            .collect();
        json!({ "ScalableTargets": targets, "ScalingPolicies": policies, "MetricAlarms": alarms })
    }
}

/// The QuotaCode pattern of the Service Quotas API model.
fn check_quota_code(code: &str) -> Result<(), ApiError> {
    if crate::quotas::is_quota_code(code) {
        return Ok(());
    }
    Err(ApiError::new(
        "ValidationException",
        format!(
            "1 validation error detected: Value '{code}' at 'quotaCode' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][a-zA-Z0-9-]{{1,128}}"
        ),
    ))
}

/// Application Auto Scaling's tag map (`{"key": "value"}`).
fn aas_tags(input: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let mut tags = BTreeMap::new();
    for (k, v) in input
        .get("Tags")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let v = v.as_str().ok_or_else(|| {
            ApiError::new(
                "ValidationException",
                format!("The value of tag {k} must be a string"),
            )
        })?;
        tags.insert(k.clone(), v.to_string());
    }
    Ok(tags)
}

/// CloudWatch's tag list (`[{"Key": k, "Value": v}]`).
fn cw_tags(input: &Value) -> BTreeMap<String, String> {
    input
        .get("Tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| Some((s(t, "Key")?.to_string(), s(t, "Value")?.to_string())))
        .collect()
}

enum TagProblem {
    TooMany,
    Invalid,
}

/// AWS's tag rules, the same for Application Auto Scaling and CloudWatch (API references of
/// TagResource and Tag): at most 50 tags a resource, keys of 1-128 characters and values of at
/// most 256, and no key starting with `aws:` (reserved for AWS).
fn check_tags(tags: &BTreeMap<String, String>, field: &str) -> Result<(), (TagProblem, String)> {
    if tags.len() > 50 {
        return Err((
            TagProblem::TooMany,
            format!(
                "A resource can have at most 50 tags; this request would give it {}",
                tags.len()
            ),
        ));
    }
    for (key, value) in tags {
        let problem = if key.is_empty() || key.chars().count() > 128 {
            Some("Member must have length between 1 and 128 (tag key)")
        } else if value.chars().count() > 256 {
            Some("Member must have length less than or equal to 256 (tag value)")
        } else if key.to_ascii_lowercase().starts_with("aws:") {
            Some("Tag keys starting with 'aws:' are reserved for AWS use")
        } else {
            None
        };
        if let Some(problem) = problem {
            let shown: String = key.chars().take(64).collect();
            return Err((
                TagProblem::Invalid,
                format!(
                    "1 validation error detected: Value at '{field}' failed to satisfy constraint: {problem}: {shown}"
                ),
            ));
        }
    }
    Ok(())
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

fn invalid(field: &str, what: &str) -> ApiError {
    ApiError::new(
        "InvalidParameterValue",
        format!("The parameter {field} {what}."),
    )
}

fn alarm_arn(region: &str, name: &str) -> String {
    format!("arn:aws:cloudwatch:{region}:{ACCOUNT_ID}:alarm:{name}")
}

fn region_of(arn: &str) -> &str {
    arn.split(':').nth(3).unwrap_or("us-east-1")
}

fn with_token(mut v: Value, next: Option<String>) -> Value {
    if let Some(token) = next {
        v["NextToken"] = json!(token);
    }
    v
}

fn quota_code(name: &str) -> String {
    known_quota_code(name)
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

/// §3: bounds may not overlap or leave gaps, at most one null bound each side, AdjustmentType
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
