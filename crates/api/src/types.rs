// kube's KubeSchema derive copies each struct, `pub` and all, into a private module of its own.
#![allow(unreachable_pub)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::rules::{
    ALARM_PERIOD, ALARM_WINDOW, DATAPOINTS_NOT_ABOVE_PERIODS, ENDPOINT_NAME_IMMUTABLE,
    EXTERNAL_ID_NEEDS_ROLE, MIN_NOT_ABOVE_MAX, REGION_IMMUTABLE, ROLE_ARN_IMMUTABLE,
    SCHEDULE_END_AFTER_START, SCHEDULE_MAX_NOT_BELOW_SPEC_MIN, SCHEDULE_MAX_WITHIN_SHARE,
    SCHEDULE_MIN_NOT_ABOVE_MAX, SCHEDULE_MIN_WITHIN_SPEC_MAX, SCHEDULE_SETS_CAPACITY,
    SCHEDULES_AGREE, VARIANT_NAME_IMMUTABLE,
};

/// Autoscaling for one variant of a SageMaker asynchronous inference endpoint.
///
/// asyncscale owns the variant's Application Auto Scaling scalable target, a target-tracking
/// policy on ApproximateBacklogSizePerInstance, and (while minCapacity is 0) a step policy with
/// a CloudWatch alarm on HasBacklogWithoutCapacity so that the endpoint scales out from zero.
/// maxCapacity is clamped to the account's instance quota.
// kube's typed printcolumn(...) repeats `type_ = ...`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "asyncscale.io",
    version = "v1alpha1",
    kind = "AsyncEndpointScaling",
    plural = "asyncendpointscalings",
    shortname = "aes",
    category = "sagemaker",
    namespaced,
    doc = "Autoscaling intent for one SageMaker asynchronous endpoint variant, converged by asyncscale.",
    status = "AsyncEndpointScalingStatus",
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".spec.endpointName"),
    printcolumn(name = "Min", type_ = "integer", json_path = ".spec.minCapacity"),
    printcolumn(name = "Max", type_ = "integer", json_path = ".spec.maxCapacity"),
    printcolumn(
        name = "Effective-Max",
        type_ = "integer",
        json_path = ".status.effectiveMaxCapacity"
    ),
    printcolumn(name = "Instances", type_ = "string", json_path = ".status.instances"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new(MIN_NOT_ABOVE_MAX.cel).message(MIN_NOT_ABOVE_MAX.message),
    validation = Rule::new(REGION_IMMUTABLE.cel).message(REGION_IMMUTABLE.message),
    validation = Rule::new(ROLE_ARN_IMMUTABLE.cel).message(ROLE_ARN_IMMUTABLE.message),
    validation = Rule::new(EXTERNAL_ID_NEEDS_ROLE.cel).message(EXTERNAL_ID_NEEDS_ROLE.message),
    validation = Rule::new(SCHEDULE_MIN_WITHIN_SPEC_MAX.cel).message(SCHEDULE_MIN_WITHIN_SPEC_MAX.message),
    validation = Rule::new(SCHEDULE_MAX_NOT_BELOW_SPEC_MIN.cel).message(SCHEDULE_MAX_NOT_BELOW_SPEC_MIN.message),
    validation = Rule::new(SCHEDULE_MAX_WITHIN_SHARE.cel).message(SCHEDULE_MAX_WITHIN_SHARE.message),
    validation = Rule::new(SCHEDULES_AGREE.cel).message(SCHEDULES_AGREE.message)
)]
#[serde(rename_all = "camelCase")]
pub struct AsyncEndpointScalingSpec {
    /// Name of the SageMaker endpoint (1-63 characters: letters, digits and hyphens). Immutable.
    #[schemars(length(min = 1, max = 63), regex(pattern = crate::rules::SAGEMAKER_NAME_PATTERN))]
    #[x_kube(validation = Rule::new(ENDPOINT_NAME_IMMUTABLE.cel).message(ENDPOINT_NAME_IMMUTABLE.message))]
    pub endpoint_name: String,

    /// Name of the production variant to scale. Immutable.
    #[serde(default = "default_variant_name")]
    #[schemars(length(min = 1, max = 63), regex(pattern = crate::rules::SAGEMAKER_NAME_PATTERN))]
    #[x_kube(validation = Rule::new(VARIANT_NAME_IMMUTABLE.cel).message(VARIANT_NAME_IMMUTABLE.message))]
    pub variant_name: String,

    /// Instance type of the variant, `ml.<family>.<size>`; selects the Service Quota
    /// `<instanceType> for endpoint usage` that caps maxCapacity.
    #[schemars(regex(pattern = crate::rules::INSTANCE_TYPE_PATTERN))]
    pub instance_type: String,

    /// AWS region of the endpoint. Defaults to the region of the environment (AWS_REGION, profile,
    /// or instance metadata). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = crate::rules::REGION_PATTERN))]
    pub region: Option<String>,

    /// IAM role to assume through STS for every AWS call of this resource, with the
    /// controller's own credentials (IRSA or EKS Pod Identity) as the source: how one controller
    /// manages endpoints in several accounts. Defaults to the controller's --default-role-arn, or
    /// its own credentials. The role's trust policy must allow the controller's role to assume
    /// it. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = crate::rules::ROLE_ARN_PATTERN))]
    pub role_arn: Option<String>,

    /// External id sent with the AssumeRole of roleArn, when the role's trust policy requires
    /// one (sts:ExternalId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224), regex(pattern = crate::rules::EXTERNAL_ID_PATTERN))]
    pub external_id: Option<String>,

    /// Fewest instances. 0 lets the endpoint scale to zero when its queue is empty.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub min_capacity: i32,

    /// Most instances. Held within the account's instance quota unless quota.policy is Ignore.
    #[schemars(range(min = 1))]
    pub max_capacity: i32,

    /// Target tracking on ApproximateBacklogSizePerInstance (queued requests per instance).
    pub target_tracking: TargetTrackingSpec,

    /// The step policy and CloudWatch alarm that scale the endpoint out from zero instances.
    #[serde(default)]
    pub scale_from_zero: ScaleFromZeroSpec,

    /// How the account's instance quota bounds maxCapacity.
    #[serde(default)]
    pub quota: QuotaSpec,

    /// Suspends dynamic scale-in, scale-out and scheduled scaling on the scalable target.
    #[serde(default)]
    pub suspend: bool,

    /// Scheduled actions: at known times, Application Auto Scaling sets the scalable target's
    /// MinCapacity and/or MaxCapacity, e.g. to pre-warm an instance before a nightly batch so
    /// that its first request does not wait for one to be provisioned. A capacity that a
    /// schedule sets follows the schedule that ran last; minCapacity and maxCapacity hold until a
    /// schedule sets them. A scheduled maxCapacity is held within the instance quota like
    /// maxCapacity, and under quota.policy Share within the endpoint's share (so it may only lower
    /// maxCapacity there).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    #[schemars(length(max = 50))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub schedules: Vec<ScheduleSpec>,

    /// What happens in AWS when this resource is deleted: Delete removes what asyncscale created,
    /// Retain leaves its configuration in AWS and releases it (asyncscale's tags removed), so
    /// that another resource may adopt it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// One scheduled action, created in AWS as `asyncscale-<name>` on the scalable target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new(SCHEDULE_SETS_CAPACITY.cel).message(SCHEDULE_SETS_CAPACITY.message),
    validation = Rule::new(SCHEDULE_MIN_NOT_ABOVE_MAX.cel).message(SCHEDULE_MIN_NOT_ABOVE_MAX.message),
    validation = Rule::new(SCHEDULE_END_AFTER_START.cel).message(SCHEDULE_END_AFTER_START.message)
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// Names the schedule within the resource (1-63 lowercase letters, digits and hyphens); the
    /// scheduled action in AWS is `asyncscale-<name>`.
    #[schemars(length(min = 1, max = 63), regex(pattern = crate::rules::SCHEDULE_NAME_PATTERN))]
    pub name: String,
    /// When the action runs: `at(yyyy-mm-ddThh:mm:ss)` once, `rate(value unit)` (unit minute(s),
    /// hour(s) or day(s)), or `cron(minutes hours day-of-month month day-of-week year)`, e.g.
    /// `cron(50 7 ? * MON-FRI *)` for 07:50 on weekdays. Times are in timeZone.
    #[schemars(length(min = 1, max = 256), regex(pattern = crate::rules::SCHEDULE_PATTERN))]
    pub schedule: String,
    /// IANA time zone of the schedule's times, e.g. `Europe/Berlin` (default UTC). Daylight
    /// saving time is followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = crate::rules::TIME_ZONE_PATTERN))]
    pub time_zone: Option<String>,
    /// The action does not run before this time (RFC 3339, between 1970 and 2199).
    // Text, not a typed time: a value the API server takes but a time type cannot hold (year
    // 9999, twelve fractional digits) must make this resource invalid, not stop the controller's
    // list of every resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub start_time: Option<String>,
    /// The action does not run after this time (RFC 3339, between 1970 and 2199).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub end_time: Option<String>,
    /// The MinCapacity the action sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_capacity: Option<i32>,
    /// The MaxCapacity the action sets (held within the instance quota).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_capacity: Option<i32>,
}

impl ScheduleSpec {
    /// `startTime` and `endTime` as times (None: not set, or not a time [`crate::validate`]
    /// accepts).
    pub fn window(&self) -> (Option<jiff::Timestamp>, Option<jiff::Timestamp>) {
        let time = |t: &Option<String>| t.as_deref().and_then(|t| crate::validate::rfc3339(t).ok());
        (time(&self.start_time), time(&self.end_time))
    }

    pub fn new(name: &str, schedule: &str) -> Self {
        Self {
            name: name.to_string(),
            schedule: schedule.to_string(),
            time_zone: None,
            start_time: None,
            end_time: None,
            min_capacity: None,
            max_capacity: None,
        }
    }
}

/// `schedules: null` (a template that renders no schedules), as the API server takes it.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

fn default_variant_name() -> String {
    "AllTraffic".to_string()
}

/// Target tracking on the endpoint's ApproximateBacklogSizePerInstance metric.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetTrackingSpec {
    /// Queued requests per instance to aim for. Must be greater than 0.
    #[schemars(extend("minimum" = 0, "exclusiveMinimum" = true))]
    pub target_value: f64,
    /// Seconds after a scale-in before the next scale-in.
    #[serde(default = "default_cooldown")]
    #[schemars(range(min = 0))]
    pub scale_in_cooldown_seconds: i32,
    /// Seconds after a scale-out before a scale-out of the same size.
    #[serde(default = "default_cooldown")]
    #[schemars(range(min = 0))]
    pub scale_out_cooldown_seconds: i32,
    /// When true, the target-tracking policy never removes instances.
    #[serde(default)]
    pub disable_scale_in: bool,
}

/// Scale out from zero instances: a step policy driven by an alarm on HasBacklogWithoutCapacity.
/// Only in effect while minCapacity is 0.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new(DATAPOINTS_NOT_ABOVE_PERIODS.cel).message(DATAPOINTS_NOT_ABOVE_PERIODS.message),
    validation = Rule::new(ALARM_WINDOW.cel).message(ALARM_WINDOW.message)
)]
#[serde(rename_all = "camelCase")]
pub struct ScaleFromZeroSpec {
    /// Whether to create the step policy and alarm while minCapacity is 0.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The alarm's period in seconds: a multiple of 60 (SageMaker publishes the metric once a
    /// minute).
    #[serde(default = "default_period")]
    #[schemars(range(min = 60, max = 86400))]
    #[x_kube(validation = Rule::new(ALARM_PERIOD.cel).message(ALARM_PERIOD.message))]
    pub period_seconds: i32,
    /// How many recent periods the alarm looks at.
    #[serde(default = "default_two")]
    #[schemars(range(min = 1, max = 1440))]
    pub evaluation_periods: i32,
    /// How many of those periods must show a backlog without capacity to scale out.
    #[serde(default = "default_two")]
    #[schemars(range(min = 1, max = 1440))]
    pub datapoints_to_alarm: i32,
    /// Seconds after a scale-out from zero before the policy adds capacity again.
    #[serde(default = "default_cooldown")]
    #[schemars(range(min = 0))]
    pub cooldown_seconds: i32,
    /// Instances to add when the alarm fires.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub scaling_adjustment: i32,
}

impl Default for ScaleFromZeroSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            period_seconds: default_period(),
            evaluation_periods: 2,
            datapoints_to_alarm: 2,
            cooldown_seconds: default_cooldown(),
            scaling_adjustment: 1,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_period() -> i32 {
    60
}
fn default_two() -> i32 {
    2
}
fn default_one() -> i32 {
    1
}
fn default_cooldown() -> i32 {
    300
}

/// How the account's Service Quota for the instance type bounds maxCapacity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaSpec {
    /// Share (the default): the quota is split between every endpoint of the instance type in
    /// the account and region, so that no scale-out asyncscale allows can fail on the quota; the
    /// effective maximum moves as the endpoints scale. Clamp: the effective maximum is
    /// min(maxCapacity, quota), whatever other endpoints hold. Ignore: maxCapacity is used as
    /// written, and scale-outs past the quota fail in AWS.
    #[serde(default)]
    pub policy: QuotaPolicy,
}

/// See `quota.policy`.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum QuotaPolicy {
    #[default]
    Share,
    Clamp,
    Ignore,
}

/// See `deletionPolicy`.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Retain,
}

/// What asyncscale observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AsyncEndpointScalingStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The MaxCapacity applied to the scalable target after the quota clamp or share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_max_capacity: Option<i32>,
    /// The variant's instances, current/desired (`kubectl get`'s Instances column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<String>,
    /// The SageMaker endpoint as SageMaker reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointStatus>,
    /// The instance quota that bounds maxCapacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaStatus>,
    /// The Application Auto Scaling scalable target asyncscale owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalable_target: Option<OwnedTargetStatus>,
    /// The target-tracking policy asyncscale owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_tracking_policy: Option<OwnedPolicyStatus>,
    /// The scale-from-zero step policy asyncscale owns, while minCapacity is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_from_zero_policy: Option<OwnedPolicyStatus>,
    /// The HasBacklogWithoutCapacity alarm asyncscale owns, while minCapacity is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_from_zero_alarm: Option<OwnedAlarmStatus>,
    /// Scaling policies on the same scalable target that another tool owns; asyncscale leaves them alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_policies: Vec<String>,
    /// Scheduled actions on the same scalable target that another tool owns; asyncscale leaves
    /// them alone, but repairs the target's capacities when they run (the bounds are its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_scheduled_actions: Vec<String>,
    /// Each schedule's scheduled action and its next run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub schedules: Vec<ScheduleStatus>,
    /// The newest scaling activity of the scalable target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scaling_activity: Option<ScalingActivityStatus>,
    /// Ready, Synced, QuotaClamped and ScalingHealthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// The Service Quota `<instanceType> for endpoint usage`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaStatus {
    /// Quota name, e.g. `ml.g4dn.xlarge for endpoint usage`.
    pub name: String,
    /// Quota code, e.g. `L-B67CFA0C`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Instances allowed across the account's endpoints in the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    /// Applied (the account's value) or Default (AWS's default; no applied value exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Instances of the type held by every endpoint of the account and region (quota.policy
    /// Share), managed by asyncscale or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_use: Option<i64>,
    /// Endpoints asyncscale splits the quota between (quota.policy Share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing_endpoints: Option<i64>,
    /// Why the latest read of the quota failed, when it did (value then holds the last value read,
    /// if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_reason: Option<String>,
}

/// A SageMaker endpoint and the scaled variant, as DescribeEndpoint and DescribeEndpointConfig
/// report them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    /// InService, Updating, Creating, Failed, ...
    pub status: String,
    /// The endpoint configuration in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_name: Option<String>,
    /// The variant's instance type, from the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Instances in service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_instances: Option<i32>,
    /// Instances asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_instances: Option<i32>,
}

/// An Application Auto Scaling scalable target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnedTargetStatus {
    /// `endpoint/<endpointName>/variant/<variantName>`.
    pub resource_id: String,
    /// The scalable target's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

/// An Application Auto Scaling scaling policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnedPolicyStatus {
    /// Policy name.
    pub name: String,
    /// Policy ARN; a step policy's alarm names it as its action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

/// A CloudWatch metric alarm.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnedAlarmStatus {
    /// Alarm name.
    pub name: String,
    /// Alarm ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// OK, ALARM or INSUFFICIENT_DATA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// An Application Auto Scaling scaling activity, as AWS reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingActivityStatus {
    /// Pending, InProgress, Successful, Overridden, Unfulfilled or Failed.
    pub status_code: String,
    /// What the activity did, e.g. `Setting desired instance count to 4.`
    pub description: String,
    /// AWS's status message, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339.
    pub start_time: String,
}

/// A schedule's scheduled action, as asyncscale applied it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// The schedule's name in the spec.
    pub name: String,
    /// The scheduled action's name in AWS.
    pub action_name: String,
    /// When it runs next (RFC 3339, UTC); absent when it will not run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// When it last ran, as a scaling activity showed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// The MaxCapacity the action sets, when the quota (or the endpoint's share of it) lowered
    /// the schedule's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_max_capacity: Option<i32>,
    /// The MinCapacity the action sets, when the quota (or the endpoint's share of it) lowered
    /// the schedule's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_min_capacity: Option<i32>,
}
