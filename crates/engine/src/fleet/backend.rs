//! The fleet view as the engine's port: reads served from the picture (or read directly after
//! this view's own writes), writes passed through and marked.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use asyncscale_core::names::ALARM_PREFIX;
use asyncscale_core::{
    EndpointConfigState, EndpointState, EndpointSummary, MetricAlarm, ObservedAlarm,
    ObservedPolicy, ObservedScheduledAction, ObservedTarget, ScalableTarget, ScalingActivity,
    ScalingPolicy, ScheduledAction, Tags,
};

use crate::error::{AwsError, ErrorClass, ErrorKind};
use crate::port::{AutoscalingBackend, Holding, Page, QuotaReading, QuotaReads, Sighting};

use super::picture::{Part, merge_activities, start_time};
use super::{ACTIVITIES_KEPT, FleetView};

#[async_trait]
impl QuotaReads for FleetView {
    async fn instance_usage(&self, instance_type: &str) -> Result<Vec<Holding>, AwsError> {
        self.ensure_fresh().await?;
        Ok(self.picture().usage_of(instance_type).to_vec())
    }

    async fn max_capacities(&self, resource_ids: &[String]) -> Result<Vec<Option<i32>>, AwsError> {
        self.ensure_fresh().await?;
        let picture = self.picture();
        Ok(resource_ids
            .iter()
            .map(|id| match picture.written_max.get(id) {
                Some(written) => *written,
                None => picture.targets.get(id).map(|t| t.target.max_capacity),
            })
            .collect())
    }

    async fn waiting_without_capacity(&self) -> Result<Arc<HashSet<String>>, AwsError> {
        self.ensure_fresh().await?;
        let mut picture = self.picture();
        if let Some(waiting) = &picture.waiting {
            return Ok(waiting.clone());
        }
        let waiting = Arc::new(crate::endpoints::firing(picture.alarms.values()));
        picture.waiting = Some(waiting.clone());
        Ok(waiting)
    }
}

#[async_trait]
impl AutoscalingBackend for FleetView {
    fn region(&self) -> &str {
        self.inner.region()
    }

    fn account(&self) -> Option<&str> {
        self.inner.account()
    }

    fn direct(&self) -> Option<&dyn AutoscalingBackend> {
        Some(self.inner.as_ref())
    }

    async fn describe_target(&self, resource_id: &str) -> Result<Option<ObservedTarget>, AwsError> {
        self.ensure_fresh().await?;
        {
            let picture = self.picture();
            if !picture.needs_direct_read(Part::Target, resource_id) {
                return Ok(picture.targets.get(resource_id).cloned());
            }
        }
        let started = Instant::now();
        let read = self.inner.describe_target(resource_id).await?;
        let mut picture = self.picture();
        picture.read_directly_at(Part::Target, resource_id, started);
        match &read {
            Some(t) => picture.targets.insert(resource_id.to_string(), t.clone()),
            None => picture.targets.remove(resource_id),
        };
        Ok(read)
    }

    async fn target_tags(&self, arn: &str) -> Result<Tags, AwsError> {
        if let Some((tags, _)) = self.picture().tags.get(arn) {
            return Ok(tags.clone());
        }
        let tags = self.inner.target_tags(arn).await?;
        self.picture()
            .tags
            .insert(arn.to_string(), (tags.clone(), Instant::now()));
        Ok(tags)
    }

    async fn register_target(
        &self,
        target: &ScalableTarget,
        tags: Option<&Tags>,
    ) -> Result<String, AwsError> {
        // A creation planned from the picture: someone may have registered the target since the
        // last refresh, and registering again would overwrite their capacities before anyone
        // could see whose it is. One direct read per creation rules that out.
        let absent_in_picture = {
            let picture = self.picture();
            picture.targets_at.is_some()
                && !picture.needs_direct_read(Part::Target, &target.resource_id)
                && !picture.targets.contains_key(&target.resource_id)
        };
        let mut confirmed_new = false;
        if absent_in_picture {
            let existing = self.inner.describe_target(&target.resource_id).await?;
            confirmed_new = existing.is_none();
            if existing.is_some() {
                self.wrote(&target.resource_id);
                return Err(AwsError::local(
                    ErrorClass::Recoverable,
                    "RegisterScalableTarget",
                    ErrorKind::ChangedSinceRefresh,
                    format!(
                        "scalable target {} was registered by someone else since the last refresh of AWS; reading it again before any change",
                        target.resource_id
                    ),
                ));
            }
        }
        let result = self.inner.register_target(target, tags).await;
        self.wrote(&target.resource_id);
        {
            let mut picture = self.picture();
            let max = if result.is_ok() {
                target.max_capacity
            } else {
                // A failed write may still have landed (a timeout, a 500 after AWS acted): for
                // the quota share it holds the higher of the two until a read says which.
                let known = match picture.written_max.get(&target.resource_id) {
                    Some(written) => *written,
                    None => picture
                        .targets
                        .get(&target.resource_id)
                        .map(|t| t.target.max_capacity),
                };
                known.map_or(target.max_capacity, |k| k.max(target.max_capacity))
            };
            picture
                .written_max
                .insert(target.resource_id.clone(), Some(max));
        }
        if let Ok(arn) = &result {
            let mut picture = self.picture();
            match tags {
                // A target that did not exist has exactly the tags it was created with.
                Some(tags) if confirmed_new => picture
                    .tags
                    .insert(arn.clone(), (tags.clone(), Instant::now())),
                _ => picture.tags.remove(arn),
            };
        }
        result
    }

    async fn deregister_target(&self, resource_id: &str) -> Result<(), AwsError> {
        let arn = self
            .picture()
            .targets
            .get(resource_id)
            .and_then(|t| t.arn.clone());
        let result = self.inner.deregister_target(resource_id).await;
        self.wrote(resource_id);
        if result.is_ok() {
            self.picture()
                .written_max
                .insert(resource_id.to_string(), None);
        }
        if let Some(arn) = arn {
            self.forget_tags(&arn);
        }
        result
    }

    async fn tag_target(&self, arn: &str, tags: &Tags) -> Result<(), AwsError> {
        let result = self.inner.tag_target(arn, tags).await;
        self.forget_tags(arn);
        result
    }

    async fn untag_target(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        let result = self.inner.untag_target(arn, keys).await;
        self.forget_tags(arn);
        result
    }

    async fn describe_policies(&self, resource_id: &str) -> Result<Vec<ObservedPolicy>, AwsError> {
        self.per_resource(
            Part::Policies,
            resource_id,
            |p| &mut p.policies,
            || self.inner.describe_policies(resource_id),
        )
        .await
    }

    async fn describe_scheduled_actions(
        &self,
        resource_id: &str,
    ) -> Result<Vec<ObservedScheduledAction>, AwsError> {
        self.per_resource(
            Part::Scheduled,
            resource_id,
            |p| &mut p.scheduled,
            || self.inner.describe_scheduled_actions(resource_id),
        )
        .await
    }

    async fn put_scheduled_action(&self, action: &ScheduledAction) -> Result<(), AwsError> {
        let result = self.inner.put_scheduled_action(action).await;
        self.wrote(&action.resource_id);
        result
    }

    async fn delete_scheduled_action(&self, resource_id: &str, name: &str) -> Result<(), AwsError> {
        let result = self.inner.delete_scheduled_action(resource_id, name).await;
        self.wrote(resource_id);
        result
    }

    async fn list_scheduled_actions(
        &self,
        next: Option<String>,
    ) -> Result<Page<ObservedScheduledAction>, AwsError> {
        self.inner.list_scheduled_actions(next).await
    }

    async fn put_policy(&self, policy: &ScalingPolicy) -> Result<String, AwsError> {
        let result = self.inner.put_policy(policy).await;
        self.wrote(&policy.resource_id);
        result
    }

    async fn delete_policy(&self, resource_id: &str, name: &str) -> Result<(), AwsError> {
        let result = self.inner.delete_policy(resource_id, name).await;
        self.wrote(resource_id);
        result
    }

    async fn describe_alarm(&self, name: &str) -> Result<Option<ObservedAlarm>, AwsError> {
        let in_picture = name.starts_with(ALARM_PREFIX);
        if in_picture {
            self.ensure_fresh().await?;
            let picture = self.picture();
            if !picture.needs_direct_read(Part::Alarm, name) {
                return Ok(picture.alarms.get(name).cloned());
            }
        }
        let started = Instant::now();
        let read = self.inner.describe_alarm(name).await?;
        if in_picture {
            let mut picture = self.picture();
            picture.read_directly_at(Part::Alarm, name, started);
            match &read {
                Some(a) => picture.alarms.insert(name.to_string(), a.clone()),
                None => picture.alarms.remove(name),
            };
        }
        Ok(read)
    }

    async fn alarm_tags(&self, arn: &str) -> Result<Tags, AwsError> {
        // Read only when a target is missing (adoption): rare, and not worth a cache.
        self.inner.alarm_tags(arn).await
    }

    async fn put_alarm(&self, alarm: &MetricAlarm, tags: &Tags) -> Result<(), AwsError> {
        let result = self.inner.put_alarm(alarm, tags).await;
        self.wrote(&alarm.name);
        result
    }

    async fn delete_alarm(&self, name: &str) -> Result<(), AwsError> {
        let result = self.inner.delete_alarm(name).await;
        self.wrote(name);
        result
    }

    async fn tag_alarm(&self, arn: &str, tags: &Tags) -> Result<(), AwsError> {
        self.inner.tag_alarm(arn, tags).await
    }

    async fn untag_alarm(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        self.inner.untag_alarm(arn, keys).await
    }

    async fn recent_activities(
        &self,
        resource_id: &str,
        max: i32,
    ) -> Result<Vec<ScalingActivity>, AwsError> {
        let keep = usize::try_from(max).unwrap_or(0).min(ACTIVITIES_KEPT);
        self.ensure_fresh().await?;
        {
            let mut picture = self.picture();
            picture
                .activities_asked
                .insert(resource_id.to_string(), Instant::now());
            let known = (picture.activities_complete
                || picture.activities_known.contains(resource_id))
                && !picture.activities_unknown.contains(resource_id);
            if known && !picture.needs_direct_read(Part::Activities, resource_id) {
                let mut list = picture
                    .activities
                    .get(resource_id)
                    .cloned()
                    .unwrap_or_default();
                list.truncate(keep);
                return Ok(list);
            }
        }
        let started = Instant::now();
        let read = self.inner.recent_activities(resource_id, max).await?;
        let mut picture = self.picture();
        picture.read_directly_at(Part::Activities, resource_id, started);
        let list = picture
            .activities
            .entry(resource_id.to_string())
            .or_default();
        merge_activities(list, read.clone());
        let newest = list.first().and_then(start_time);
        picture.activities_newest = picture.activities_newest.max(newest);
        picture.activities_known.insert(resource_id.to_string());
        picture.activities_unknown.remove(resource_id);
        Ok(read)
    }

    async fn list_targets(&self, next: Option<String>) -> Result<Page<ObservedTarget>, AwsError> {
        self.inner.list_targets(next).await
    }

    async fn list_policies(&self, next: Option<String>) -> Result<Page<ObservedPolicy>, AwsError> {
        self.inner.list_policies(next).await
    }

    async fn list_alarms(
        &self,
        prefix: &str,
        next: Option<String>,
    ) -> Result<Page<ObservedAlarm>, AwsError> {
        self.inner.list_alarms(prefix, next).await
    }

    async fn list_activities(
        &self,
        next: Option<String>,
    ) -> Result<Page<(String, ScalingActivity)>, AwsError> {
        self.inner.list_activities(next).await
    }

    async fn instance_quota(&self, instance_type: &str) -> QuotaReading {
        self.inner.instance_quota(instance_type).await
    }

    /// From the picture; an endpoint the picture lacks is read directly (it may have been
    /// created since the last refresh), so a missing endpoint costs one read per reconcile.
    async fn describe_endpoint(&self, name: &str) -> Result<Option<EndpointState>, AwsError> {
        self.ensure_fresh().await?;
        if let Some(endpoint) = self.picture().endpoints.get(name) {
            return Ok(Some(endpoint.clone()));
        }
        let read = self.inner.describe_endpoint(name).await?;
        if let Some(endpoint) = &read {
            let mut picture = self.picture();
            picture.endpoints.insert(name.to_string(), endpoint.clone());
            // What each type's endpoints hold now includes this one.
            picture.usage.clear();
        }
        Ok(read)
    }

    async fn describe_endpoint_config(
        &self,
        name: &str,
    ) -> Result<Option<EndpointConfigState>, AwsError> {
        if let Some(config) = self.picture().configs.get(name) {
            return Ok(Some(config.clone()));
        }
        let read = self.inner.describe_endpoint_config(name).await?;
        if let Some(config) = &read {
            self.picture()
                .configs
                .insert(name.to_string(), config.clone());
        }
        Ok(read)
    }

    /// Every endpoint of the picture, in one page.
    async fn list_endpoints(
        &self,
        _next: Option<String>,
    ) -> Result<Page<EndpointSummary>, AwsError> {
        self.ensure_fresh().await?;
        let picture = self.picture();
        let mut items: Vec<EndpointSummary> = picture
            .endpoints
            .values()
            .map(|e| e.summary.clone())
            .collect();
        items.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Page { items, next: None })
    }

    async fn backlog_above_target(&self) -> Result<Arc<HashSet<String>>, AwsError> {
        self.inner.backlog_above_target().await
    }

    /// From the picture as it is: never a refresh, never a read.
    fn sighting(&self, instance_type: &str, resource_id: &str) -> Option<Sighting> {
        let mut picture = self.picture();
        picture.targets_at?;
        let in_use = picture
            .usage_of(instance_type)
            .iter()
            .map(|h| h.instances)
            .sum();
        Some(Sighting {
            in_use,
            backlog_above_target: picture
                .backlog_above_target
                .as_ref()
                .map(|firing| firing.contains(resource_id)),
        })
    }
}
