//! The backend port: what asyncscale needs from AWS, in asyncscale's own types. The SDK adapter
//! implements it against AWS (or any AWS-compatible endpoint); tests and the simulator can too.

use async_trait::async_trait;

use asyncscale_core::{
    MetricAlarm, ObservedAlarm, ObservedPolicy, ObservedTarget, QuotaLookup, ScalableTarget,
    ScalingActivity, ScalingPolicy, Tags,
};

use crate::error::AwsError;

/// One account and region. Every method is one logical AWS operation on the `sagemaker`
/// namespace and `sagemaker:variant:DesiredInstanceCount` dimension.
#[async_trait]
pub trait AutoscalingBackend: Send + Sync {
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
    async fn describe_alarm(&self, name: &str) -> Result<Option<ObservedAlarm>, AwsError>;
    /// PutMetricAlarm (a full overwrite; AWS ignores tags on update).
    async fn put_alarm(&self, alarm: &MetricAlarm, tags: &Tags) -> Result<(), AwsError>;
    async fn delete_alarm(&self, name: &str) -> Result<(), AwsError>;
    /// DescribeScalingActivities, newest first.
    async fn recent_activities(
        &self,
        resource_id: &str,
        max: i32,
    ) -> Result<Vec<ScalingActivity>, AwsError>;
    /// The quota `<instance type> for endpoint usage`. Never fails: an unreadable quota is
    /// reported as Unknown and the rest of the reconcile goes on.
    async fn instance_quota(&self, instance_type: &str) -> QuotaLookup;
}
