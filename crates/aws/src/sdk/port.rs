//! The SDK backend as the engine's port: each call is written in the file of its AWS service
//! (`autoscaling.rs`, `cloudwatch.rs`, …); the port only delegates.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use asyncscale_core::*;
use asyncscale_engine::{AutoscalingBackend, AwsError, Holding, Page, QuotaReading, QuotaReads};

use super::SdkBackend;

#[async_trait]
impl QuotaReads for SdkBackend {
    async fn instance_usage(&self, instance_type: &str) -> Result<Vec<Holding>, AwsError> {
        SdkBackend::instance_usage(self, instance_type).await
    }

    async fn waiting_without_capacity(&self) -> Result<Arc<HashSet<String>>, AwsError> {
        SdkBackend::waiting_without_capacity(self).await
    }

    /// One DescribeScalableTargets each: the CLI decides a raise from AWS as it is.
    async fn max_capacities(&self, resource_ids: &[String]) -> Result<Vec<Option<i32>>, AwsError> {
        let mut maxes = Vec::with_capacity(resource_ids.len());
        for id in resource_ids {
            maxes.push(
                SdkBackend::describe_target(self, id)
                    .await?
                    .map(|t| t.target.max_capacity),
            );
        }
        Ok(maxes)
    }
}

#[async_trait]
impl AutoscalingBackend for SdkBackend {
    // Each call is written in the file of its AWS service; the port only delegates.
    fn region(&self) -> &str {
        &self.region
    }

    fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    async fn describe_target(&self, resource_id: &str) -> Result<Option<ObservedTarget>, AwsError> {
        SdkBackend::describe_target(self, resource_id).await
    }

    async fn target_tags(&self, arn: &str) -> Result<Tags, AwsError> {
        SdkBackend::target_tags(self, arn).await
    }

    async fn register_target(
        &self,
        target: &ScalableTarget,
        tags: Option<&Tags>,
    ) -> Result<String, AwsError> {
        SdkBackend::register_target(self, target, tags).await
    }

    async fn deregister_target(&self, resource_id: &str) -> Result<(), AwsError> {
        SdkBackend::deregister_target(self, resource_id).await
    }

    async fn tag_target(&self, arn: &str, tags: &Tags) -> Result<(), AwsError> {
        SdkBackend::tag_target(self, arn, tags).await
    }

    async fn untag_target(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        SdkBackend::untag_target(self, arn, keys).await
    }

    async fn describe_policies(&self, resource_id: &str) -> Result<Vec<ObservedPolicy>, AwsError> {
        SdkBackend::describe_policies(self, resource_id).await
    }

    async fn put_policy(&self, policy: &ScalingPolicy) -> Result<String, AwsError> {
        SdkBackend::put_policy(self, policy).await
    }

    async fn delete_policy(&self, resource_id: &str, name: &str) -> Result<(), AwsError> {
        SdkBackend::delete_policy(self, resource_id, name).await
    }

    async fn describe_alarm(&self, name: &str) -> Result<Option<ObservedAlarm>, AwsError> {
        SdkBackend::describe_alarm(self, name).await
    }

    async fn put_alarm(&self, alarm: &MetricAlarm, tags: &Tags) -> Result<(), AwsError> {
        SdkBackend::put_alarm(self, alarm, tags).await
    }

    async fn delete_alarm(&self, name: &str) -> Result<(), AwsError> {
        SdkBackend::delete_alarm(self, name).await
    }

    async fn alarm_tags(&self, arn: &str) -> Result<Tags, AwsError> {
        SdkBackend::alarm_tags(self, arn).await
    }

    async fn tag_alarm(&self, arn: &str, tags: &Tags) -> Result<(), AwsError> {
        SdkBackend::tag_alarm(self, arn, tags).await
    }

    async fn untag_alarm(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        SdkBackend::untag_alarm(self, arn, keys).await
    }

    async fn recent_activities(
        &self,
        resource_id: &str,
        max: i32,
    ) -> Result<Vec<ScalingActivity>, AwsError> {
        SdkBackend::recent_activities(self, resource_id, max).await
    }

    async fn list_targets(&self, next: Option<String>) -> Result<Page<ObservedTarget>, AwsError> {
        SdkBackend::list_targets(self, next).await
    }

    async fn list_policies(&self, next: Option<String>) -> Result<Page<ObservedPolicy>, AwsError> {
        SdkBackend::list_policies(self, next).await
    }

    async fn describe_scheduled_actions(
        &self,
        resource_id: &str,
    ) -> Result<Vec<ObservedScheduledAction>, AwsError> {
        let mut actions = Vec::new();
        let mut next = None;
        loop {
            let page = self.scheduled_actions_page(Some(resource_id), next).await?;
            actions.extend(page.items);
            match page.next {
                Some(token) => next = Some(token),
                None => return Ok(actions),
            }
        }
    }

    async fn put_scheduled_action(&self, action: &ScheduledAction) -> Result<(), AwsError> {
        SdkBackend::put_scheduled_action(self, action).await
    }

    async fn delete_scheduled_action(&self, resource_id: &str, name: &str) -> Result<(), AwsError> {
        SdkBackend::delete_scheduled_action(self, resource_id, name).await
    }

    async fn list_scheduled_actions(
        &self,
        next: Option<String>,
    ) -> Result<Page<ObservedScheduledAction>, AwsError> {
        self.scheduled_actions_page(None, next).await
    }

    async fn list_alarms(
        &self,
        prefix: &str,
        next: Option<String>,
    ) -> Result<Page<ObservedAlarm>, AwsError> {
        SdkBackend::list_alarms(self, prefix, next).await
    }

    async fn list_activities(
        &self,
        next: Option<String>,
    ) -> Result<Page<(String, ScalingActivity)>, AwsError> {
        SdkBackend::list_activities(self, next).await
    }

    async fn instance_quota(&self, instance_type: &str) -> QuotaReading {
        SdkBackend::instance_quota(self, instance_type).await
    }

    async fn describe_endpoint(&self, name: &str) -> Result<Option<EndpointState>, AwsError> {
        SdkBackend::describe_endpoint(self, name).await
    }

    async fn describe_endpoint_config(
        &self,
        name: &str,
    ) -> Result<Option<EndpointConfigState>, AwsError> {
        SdkBackend::describe_endpoint_config(self, name).await
    }

    async fn list_endpoints(
        &self,
        next: Option<String>,
    ) -> Result<Page<EndpointSummary>, AwsError> {
        SdkBackend::list_endpoints(self, next).await
    }

    async fn backlog_above_target(&self) -> Result<Arc<HashSet<String>>, AwsError> {
        SdkBackend::backlog_above_target(self).await
    }
}
