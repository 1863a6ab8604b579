//! AWS resources as asyncscale sees them: the fields it sets and compares, in AWS's terms.

use std::collections::BTreeMap;

pub const SERVICE_NAMESPACE: &str = "sagemaker";
pub const SCALABLE_DIMENSION: &str = "sagemaker:variant:DesiredInstanceCount";
pub const METRIC_NAMESPACE: &str = "AWS/SageMaker";
pub const BACKLOG_PER_INSTANCE_METRIC: &str = "ApproximateBacklogSizePerInstance";
pub const BACKLOG_WITHOUT_CAPACITY_METRIC: &str = "HasBacklogWithoutCapacity";
pub const ENDPOINT_DIMENSION: &str = "EndpointName";

pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SuspendedState {
    pub dynamic_scaling_in: bool,
    pub dynamic_scaling_out: bool,
    pub scheduled_scaling: bool,
}

impl SuspendedState {
    pub fn all(suspended: bool) -> Self {
        Self {
            dynamic_scaling_in: suspended,
            dynamic_scaling_out: suspended,
            scheduled_scaling: suspended,
        }
    }
}

/// An Application Auto Scaling scalable target (namespace `sagemaker`, dimension
/// `sagemaker:variant:DesiredInstanceCount`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScalableTarget {
    pub resource_id: String,
    pub min_capacity: i32,
    pub max_capacity: i32,
    pub suspended: SuspendedState,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservedTarget {
    pub target: ScalableTarget,
    pub arn: Option<String>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDimension {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CustomizedMetric {
    pub metric_name: String,
    pub namespace: String,
    pub dimensions: Vec<MetricDimension>,
    pub statistic: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetTrackingConfig {
    pub target_value: f64,
    /// None when the policy uses a predefined metric or metric math: not ours to describe.
    pub metric: Option<CustomizedMetric>,
    pub scale_in_cooldown: Option<i32>,
    pub scale_out_cooldown: Option<i32>,
    pub disable_scale_in: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepAdjustment {
    pub lower_bound: Option<f64>,
    pub upper_bound: Option<f64>,
    pub scaling_adjustment: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepScalingConfig {
    pub adjustment_type: Option<String>,
    pub metric_aggregation_type: Option<String>,
    pub cooldown: Option<i32>,
    pub min_adjustment_magnitude: Option<i32>,
    pub step_adjustments: Vec<StepAdjustment>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PolicyConfig {
    TargetTracking(TargetTrackingConfig),
    Step(StepScalingConfig),
    /// A policy type asyncscale never creates (e.g. PredictiveScaling), kept by name only.
    Other(String),
}

impl PolicyConfig {
    pub fn policy_type(&self) -> &str {
        match self {
            PolicyConfig::TargetTracking(_) => "TargetTrackingScaling",
            PolicyConfig::Step(_) => "StepScaling",
            PolicyConfig::Other(kind) => kind,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScalingPolicy {
    pub name: String,
    pub resource_id: String,
    pub config: PolicyConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservedPolicy {
    pub policy: ScalingPolicy,
    pub arn: String,
}

/// A CloudWatch metric alarm, with the fields PutMetricAlarm overwrites.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricAlarm {
    pub name: String,
    pub description: Option<String>,
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: Vec<MetricDimension>,
    pub statistic: String,
    pub period: i32,
    pub evaluation_periods: i32,
    pub datapoints_to_alarm: Option<i32>,
    pub threshold: f64,
    pub comparison_operator: String,
    pub treat_missing_data: Option<String>,
    pub actions_enabled: bool,
    pub alarm_actions: Vec<String>,
    pub ok_actions: Vec<String>,
    pub insufficient_data_actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservedAlarm {
    pub alarm: MetricAlarm,
    pub arn: Option<String>,
    /// OK, ALARM or INSUFFICIENT_DATA.
    pub state: Option<String>,
    /// When the state last changed (StateTransitionedTimestamp, RFC 3339): how long requests
    /// have waited, for the on-call metrics.
    pub state_since: Option<String>,
    /// The alarm's tags, when they were read (only to decide whether an alarm whose scalable
    /// target is gone is ours to delete; DescribeAlarms does not return tags).
    pub tags: Option<Tags>,
}

/// An Application Auto Scaling scheduled action on a scalable target: at the times `schedule`
/// names, AWS sets the target's MinCapacity and/or MaxCapacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledAction {
    pub name: String,
    pub resource_id: String,
    /// `at(...)`, `rate(...)` or `cron(...)`.
    pub schedule: String,
    /// IANA name; AWS uses UTC when none is given, so None and `UTC` mean the same.
    pub timezone: Option<String>,
    pub start_time: Option<jiff::Timestamp>,
    pub end_time: Option<jiff::Timestamp>,
    pub min_capacity: Option<i32>,
    pub max_capacity: Option<i32>,
}

impl ScheduledAction {
    /// Equal as AWS holds them: a missing time zone is UTC, times count in whole seconds.
    pub fn same_as(&self, other: &ScheduledAction) -> bool {
        let zone = |a: &ScheduledAction| a.timezone.clone().unwrap_or_else(|| "UTC".into());
        let second = |t: Option<jiff::Timestamp>| t.map(|t| t.as_second());
        self.name == other.name
            && self.resource_id == other.resource_id
            && self.schedule == other.schedule
            && zone(self) == zone(other)
            && second(self.start_time) == second(other.start_time)
            && second(self.end_time) == second(other.end_time)
            && self.min_capacity == other.min_capacity
            && self.max_capacity == other.max_capacity
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedScheduledAction {
    pub action: ScheduledAction,
    pub arn: Option<String>,
    /// CreationTime: a schedule runs only after its action exists.
    pub created: Option<jiff::Timestamp>,
}

/// One Application Auto Scaling scaling activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingActivity {
    pub activity_id: String,
    pub status_code: String,
    pub description: String,
    pub cause: String,
    pub status_message: Option<String>,
    /// RFC 3339.
    pub start_time: String,
    /// RFC 3339; set once the activity has finished (Successful, Failed, Cancelled).
    pub end_time: Option<String>,
}

/// The text AWS puts in a scaling activity that the instance quota blocked (docs/aws-behaviour.md §5.4).
const QUOTA_EXCEEDED_MARKER: &str = "account-level service limit";

/// AWS's cause of an activity a scheduled action started: `scheduled action name <name> was
/// triggered` (Application Auto Scaling User Guide, "Scheduled scaling", describe-scaling-activities).
const SCHEDULED_CAUSE: (&str, &str) = ("scheduled action name ", " was triggered");

/// AWS's cause of an activity an alarm started: `monitor alarm <alarm> in state ALARM triggered
/// policy <policy>` (Application Auto Scaling User Guide, describe-scaling-activities examples).
const ALARM_CAUSE: (&str, &str) = ("monitor alarm ", " in state ALARM triggered policy ");

impl ScalingActivity {
    /// The scheduled action that started this activity, if one did.
    pub fn scheduled_action(&self) -> Option<&str> {
        self.cause
            .strip_prefix(SCHEDULED_CAUSE.0)?
            .strip_suffix(SCHEDULED_CAUSE.1)
    }

    /// Whether an alarm started this activity (its policy asked for the change): the alarm asks
    /// again while it stays in ALARM.
    pub fn alarm_triggered(&self) -> bool {
        self.cause
            .strip_prefix(ALARM_CAUSE.0)
            .is_some_and(|rest| rest.contains(ALARM_CAUSE.1))
    }

    /// A Failed activity that the account's instance quota stopped (SageMaker's
    /// ResourceLimitExceeded, quoted in the status message).
    pub fn failed_on_quota(&self) -> bool {
        self.status_code == "Failed"
            && self
                .status_message
                .as_deref()
                .unwrap_or(&self.description)
                .contains(QUOTA_EXCEEDED_MARKER)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaSource {
    /// The account's applied value (GetServiceQuota).
    Applied,
    /// AWS's default; the account has no applied value (GetAWSDefaultServiceQuota).
    Default,
}

impl QuotaSource {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaSource::Applied => "Applied",
            QuotaSource::Default => "Default",
        }
    }
}

/// The Service Quota `<instance type> for endpoint usage`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    pub name: String,
    pub code: String,
    pub value: f64,
    pub source: QuotaSource,
}

/// What is known of an instance quota. An unknown quota never raises MaxCapacity: see
/// [`crate::desired::desire`].
#[derive(Debug, Clone, PartialEq)]
pub enum QuotaLookup {
    /// Read from Service Quotas just now (or within the cache's lifetime).
    Known(Quota),
    /// The last value read; the latest refresh failed for `reason`. Still bounds MaxCapacity.
    Stale { quota: Quota, reason: String },
    /// Never read successfully.
    Unknown { name: String, reason: String },
}

impl QuotaLookup {
    /// The value to clamp with: fresh or last known.
    pub fn value(&self) -> Option<&Quota> {
        match self {
            QuotaLookup::Known(q) | QuotaLookup::Stale { quota: q, .. } => Some(q),
            QuotaLookup::Unknown { .. } => None,
        }
    }

    /// Why the latest read failed, when it did.
    pub fn refresh_error(&self) -> Option<&str> {
        match self {
            QuotaLookup::Known(_) => None,
            QuotaLookup::Stale { reason, .. } | QuotaLookup::Unknown { reason, .. } => Some(reason),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            QuotaLookup::Known(q) | QuotaLookup::Stale { quota: q, .. } => &q.name,
            QuotaLookup::Unknown { name, .. } => name,
        }
    }
}

/// The quota name for an instance type, e.g. `ml.g4dn.xlarge for endpoint usage`.
pub fn quota_name(instance_type: &str) -> String {
    format!("{instance_type} for endpoint usage")
}

/// Everything read from AWS about one endpoint variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub target: Option<ObservedTarget>,
    /// All policies on the scalable target, ours and others'.
    pub policies: Vec<ObservedPolicy>,
    /// The alarm with our name, if it exists.
    pub alarm: Option<ObservedAlarm>,
    /// All scheduled actions on the scalable target, ours and others'.
    pub scheduled_actions: Vec<ObservedScheduledAction>,
    /// Newest first.
    pub activities: Vec<ScalingActivity>,
}

impl Observed {
    pub fn empty() -> Self {
        Self {
            target: None,
            policies: Vec::new(),
            alarm: None,
            scheduled_actions: Vec::new(),
            activities: Vec::new(),
        }
    }

    pub fn scheduled_action(&self, name: &str) -> Option<&ObservedScheduledAction> {
        self.scheduled_actions
            .iter()
            .find(|a| a.action.name == name)
    }

    /// When the scheduled action of that name was created (None: it does not exist): it runs
    /// only from then on.
    pub fn scheduled_action_created(&self, name: &str) -> Option<jiff::Timestamp> {
        self.scheduled_action(name).and_then(|a| a.created)
    }

    pub fn policy(&self, name: &str) -> Option<&ObservedPolicy> {
        self.policies.iter().find(|p| p.policy.name == name)
    }
}

/// One endpoint as ListEndpoints shows it: enough to tell whether its description changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndpointSummary {
    pub name: String,
    /// Creating, Updating, SystemUpdating, RollingBack, InService, OutOfService, Deleting,
    /// Failed, UpdateRollbackFailed.
    pub status: String,
    /// RFC 3339.
    pub last_modified: String,
}

/// One production variant of an endpoint (DescribeEndpoint's ProductionVariants).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VariantState {
    pub name: String,
    /// Instances in service; absent for serverless variants.
    pub current_instances: Option<i32>,
    /// Instances asked for (by Application Auto Scaling or an update); absent for serverless.
    pub desired_instances: Option<i32>,
}

/// DescribeEndpoint, as asyncscale uses it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndpointState {
    pub summary: EndpointSummary,
    pub config_name: String,
    /// Why the endpoint failed, when it did.
    pub failure_reason: Option<String>,
    pub variants: Vec<VariantState>,
}

impl EndpointState {
    pub fn variant(&self, name: &str) -> Option<&VariantState> {
        self.variants.iter().find(|v| v.name == name)
    }
}

/// DescribeEndpointConfig, as asyncscale uses it. A configuration never changes once created
/// (an endpoint is updated by pointing it at a new one), so it is read once per name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndpointConfigState {
    pub name: String,
    /// `AsyncInferenceConfig` is set: the endpoint publishes the backlog metrics asyncscale
    /// scales on.
    pub asynchronous: bool,
    /// Each production variant's instance type (None for a serverless variant).
    pub variants: Vec<(String, Option<String>)>,
}

impl EndpointConfigState {
    pub fn instance_type(&self, variant: &str) -> Option<&str> {
        self.variants
            .iter()
            .find(|(name, _)| name == variant)
            .and_then(|(_, t)| t.as_deref())
    }
}

/// What SageMaker says about the endpoint a resource scales.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointReading {
    /// No endpoint of that name in the account and region.
    Missing,
    /// The endpoint, and its configuration (None when the configuration was deleted: SageMaker
    /// allows deleting a configuration an endpoint still uses).
    Found {
        endpoint: EndpointState,
        config: Option<EndpointConfigState>,
    },
}
