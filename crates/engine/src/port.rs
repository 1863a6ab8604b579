//! The backend port: what asyncscale needs from AWS, in asyncscale's own types. The SDK adapter
//! implements it against AWS (or any AWS-compatible endpoint); tests and the simulator can too.

use std::fmt;

use async_trait::async_trait;

use asyncscale_core::{
    EndpointConfigState, EndpointState, EndpointSummary, MetricAlarm, ObservedAlarm,
    ObservedPolicy, ObservedScheduledAction, ObservedTarget, QuotaLookup, ScalableTarget,
    ScalingActivity, ScalingPolicy, ScheduledAction, Tags,
};

use crate::error::AwsError;

/// An instance quota as the backend knows it, and the error of its latest read, if that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaReading {
    pub lookup: QuotaLookup,
    /// Set whenever the latest read failed, also when a last known value is still served.
    pub error: Option<AwsError>,
}

/// One page of a bulk read, and the token of the next (None: the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// What the quota share reads of one account and region: the part of the port that
/// [`crate::share`] decides from. The controller and the CLI answer it from AWS (every
/// [`AutoscalingBackend`] is one); `simulate` answers it from its scaling model between two steps,
/// so that a simulated fleet's caps are decided by the same code as the controller's.
#[async_trait]
pub trait QuotaReads: Send + Sync {
    /// The instances every endpoint variant of the account and region holds of `instance_type`
    /// (managed by asyncscale or not): what the shared quota is split against. Reads every
    /// endpoint and its configuration; the fleet view answers from its picture.
    /// The SDK adapter reads them with `endpoints::scan_endpoints` and `scan_holdings`.
    async fn instance_usage(&self, instance_type: &str) -> Result<Vec<Holding>, AwsError>;
    /// Each scalable target's MaxCapacity as AWS holds it (None: not registered). A fleet view
    /// answers from its picture and its own writes, without reading AWS: deciding how far a
    /// shared cap may rise reads every other sharing endpoint's.
    async fn max_capacities(&self, resource_ids: &[String]) -> Result<Vec<Option<i32>>, AwsError>;
    /// The resource ids whose scale-from-zero alarm (asyncscale's, on HasBacklogWithoutCapacity)
    /// is in ALARM: requests wait there with no instance. They come first, with the variants
    /// scaling out, for the instances a shared quota leaves over; without this an endpoint held
    /// at MaxCapacity 0 by its share could never show that it needs one. Lists asyncscale's
    /// alarms; the fleet view answers from its picture.
    /// The SDK adapter lists them with `endpoints::list_waiting`.
    async fn waiting_without_capacity(
        &self,
    ) -> Result<std::sync::Arc<std::collections::HashSet<String>>, AwsError>;
}

/// One account and region. Every method is one logical AWS operation on the `sagemaker`
/// namespace and `sagemaker:variant:DesiredInstanceCount` dimension.
#[async_trait]
pub trait AutoscalingBackend: QuotaReads {
    /// The region every call goes to (resources without `spec.region` land here).
    fn region(&self) -> &str;
    /// The account of the role every call acts as (None: the controller's own credentials).
    fn account(&self) -> Option<&str> {
        None
    }
    /// The account and region every call goes to.
    fn place(&self) -> Place {
        Place {
            account: self.account().map(str::to_string),
            region: self.region().to_string(),
        }
    }
    /// The same account read straight from AWS, when this backend serves reads from a picture
    /// (the fleet view): what decides a deletion or proves ownership before a write must not be
    /// older than the moment.
    fn direct(&self) -> Option<&dyn AutoscalingBackend> {
        None
    }
    /// DescribeScalableTargets. The tags are left empty: see [`Self::target_tags`].
    async fn describe_target(&self, resource_id: &str) -> Result<Option<ObservedTarget>, AwsError>;
    /// ListTagsForResource on a scalable target (its owner tags).
    async fn target_tags(&self, arn: &str) -> Result<Tags, AwsError>;
    /// RegisterScalableTarget; `tags` only on creation. Returns the target's ARN.
    async fn register_target(
        &self,
        target: &ScalableTarget,
        tags: Option<&Tags>,
    ) -> Result<String, AwsError>;
    async fn deregister_target(&self, resource_id: &str) -> Result<(), AwsError>;
    async fn tag_target(&self, arn: &str, tags: &Tags) -> Result<(), AwsError>;
    async fn untag_target(&self, arn: &str, keys: &[String]) -> Result<(), AwsError>;
    /// Every policy on the target (all pages).
    async fn describe_policies(&self, resource_id: &str) -> Result<Vec<ObservedPolicy>, AwsError>;
    /// PutScalingPolicy. Returns the policy's ARN.
    async fn put_policy(&self, policy: &ScalingPolicy) -> Result<String, AwsError>;
    async fn delete_policy(&self, resource_id: &str, name: &str) -> Result<(), AwsError>;
    /// Every scheduled action on the target (DescribeScheduledActions, all pages).
    async fn describe_scheduled_actions(
        &self,
        resource_id: &str,
    ) -> Result<Vec<ObservedScheduledAction>, AwsError>;
    /// PutScheduledAction (creates or updates).
    async fn put_scheduled_action(&self, action: &ScheduledAction) -> Result<(), AwsError>;
    async fn delete_scheduled_action(&self, resource_id: &str, name: &str) -> Result<(), AwsError>;
    /// One page of DescribeScheduledActions for the whole namespace (50 a page).
    async fn list_scheduled_actions(
        &self,
        next: Option<String>,
    ) -> Result<Page<ObservedScheduledAction>, AwsError>;
    /// DescribeAlarms for one name; the alarm's tags are left unread (None).
    async fn describe_alarm(&self, name: &str) -> Result<Option<ObservedAlarm>, AwsError>;
    /// CloudWatch ListTagsForResource on an alarm.
    async fn alarm_tags(&self, arn: &str) -> Result<Tags, AwsError>;
    /// PutMetricAlarm (a full overwrite; AWS ignores tags on update).
    async fn put_alarm(&self, alarm: &MetricAlarm, tags: &Tags) -> Result<(), AwsError>;
    async fn delete_alarm(&self, name: &str) -> Result<(), AwsError>;
    async fn tag_alarm(&self, arn: &str, tags: &Tags) -> Result<(), AwsError>;
    async fn untag_alarm(&self, arn: &str, keys: &[String]) -> Result<(), AwsError>;
    /// DescribeScalingActivities, newest first.
    async fn recent_activities(
        &self,
        resource_id: &str,
        max: i32,
    ) -> Result<Vec<ScalingActivity>, AwsError>;
    /// One page of DescribeScalableTargets for the whole `sagemaker` namespace (50 a page); tags
    /// left empty.
    async fn list_targets(&self, next: Option<String>) -> Result<Page<ObservedTarget>, AwsError>;
    /// One page of DescribeScalingPolicies for the whole namespace (AWS allows 10 a page).
    async fn list_policies(&self, next: Option<String>) -> Result<Page<ObservedPolicy>, AwsError>;
    /// One page of DescribeAlarms for the metric alarms whose names start with `prefix` (100 a
    /// page); tags left unread.
    async fn list_alarms(
        &self,
        prefix: &str,
        next: Option<String>,
    ) -> Result<Page<ObservedAlarm>, AwsError>;
    /// One page of DescribeScalingActivities for the whole namespace, newest first (50 a page),
    /// each with its resource id.
    async fn list_activities(
        &self,
        next: Option<String>,
    ) -> Result<Page<(String, ScalingActivity)>, AwsError>;
    /// The quota `<instance type> for endpoint usage`. Never fails the reconcile by itself: a
    /// failed read serves the last known value (Stale) or none (Unknown), with the error beside it.
    async fn instance_quota(&self, instance_type: &str) -> QuotaReading;
    /// SageMaker DescribeEndpoint. None: no endpoint of that name.
    async fn describe_endpoint(&self, name: &str) -> Result<Option<EndpointState>, AwsError>;
    /// SageMaker DescribeEndpointConfig. None: no configuration of that name. Configurations never
    /// change, so implementations may keep what they read.
    async fn describe_endpoint_config(
        &self,
        name: &str,
    ) -> Result<Option<EndpointConfigState>, AwsError>;
    /// One page of SageMaker ListEndpoints (100 a page).
    async fn list_endpoints(&self, next: Option<String>)
    -> Result<Page<EndpointSummary>, AwsError>;
    /// The resource ids whose target-tracking AlarmHigh (the alarm AWS creates for the policy,
    /// docs/aws-behaviour.md §2.7) is in ALARM: the backlog per instance is above the target and the
    /// policy asks for more instances. Only the on-call metrics use it (an endpoint held at a cap
    /// the quota lowered, with backlog, cannot grow). One DescribeAlarms filtered to the alarms
    /// in ALARM, so one page for the account in the usual case; the controller's fleet view reads
    /// it once per refresh.
    async fn backlog_above_target(
        &self,
    ) -> Result<std::sync::Arc<std::collections::HashSet<String>>, AwsError>;
    /// What the latest bulk read saw of an instance type and a resource, for the on-call metrics,
    /// without reading AWS. None from a backend that keeps no picture (then there are no such
    /// metrics rather than a read per reconcile).
    fn sighting(&self, _instance_type: &str, _resource_id: &str) -> Option<Sighting> {
        None
    }
}

/// See [`AutoscalingBackend::sighting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    /// Instances of the type held by every endpoint of the account and region.
    pub in_use: u32,
    /// Whether the resource's target-tracking AlarmHigh fires (None: not read).
    pub backlog_above_target: Option<bool>,
}

/// One endpoint variant holding instances of an instance type (none, for a variant of another
/// type: listed so that its endpoint is known to exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// `endpoint/<endpoint>/variant/<variant>`.
    pub resource_id: String,
    /// The larger of its current and desired instance counts: instances being provisioned count
    /// against the quota too.
    pub instances: u32,
    /// Desired above current: it is scaling out.
    pub scaling_out: bool,
    /// Its configuration is asynchronous, or could not be read, and it runs the instance type:
    /// only such a variant can be scaled by asyncscale within this quota, so only it can share
    /// it; a real-time one's instances are simply in use.
    pub asynchronous: bool,
    /// Why the endpoint could not be described (access denied to its name, say), when it could
    /// not: `instances` are then the last known (0 when never read), and what it holds may be
    /// more. No shared cap is raised while one is unread; see `endpoints::unreadable`.
    pub unread: Option<String>,
}

/// One account and region: what quotas, request rates and the fleet view are shared by.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// The account of the role the calls act as; None: the controller's own credentials' account.
    pub account: Option<String>,
    pub region: String,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.account {
            Some(account) => write!(f, "account {account}, {}", self.region),
            None => f.write_str(&self.region),
        }
    }
}
