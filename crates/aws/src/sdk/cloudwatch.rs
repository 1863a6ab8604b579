//! CloudWatch through the SDK: asyncscale's alarm and its tags.

use std::collections::HashSet;
use std::sync::Arc;

use aws_sdk_cloudwatch as cw;

use asyncscale_core::names::TARGET_TRACKING_ALARM_PREFIX;
use asyncscale_core::*;

use super::{CW, SdkBackend, next_token, rfc3339};
use asyncscale_engine::{AwsError, Page};

impl SdkBackend {
    pub(super) async fn describe_alarm(
        &self,
        name: &str,
    ) -> Result<Option<ObservedAlarm>, AwsError> {
        let out = self
            .call(CW, "DescribeAlarms", || {
                self.cloudwatch.describe_alarms().alarm_names(name).send()
            })
            .await?;
        Ok(out
            .metric_alarms()
            .iter()
            .find(|a| a.alarm_name() == Some(name))
            .map(alarm_from_sdk))
    }

    pub(super) async fn list_alarms(
        &self,
        prefix: &str,
        next: Option<String>,
    ) -> Result<Page<ObservedAlarm>, AwsError> {
        let out = self
            .call(CW, "DescribeAlarms", || {
                self.cloudwatch
                    .describe_alarms()
                    .alarm_name_prefix(prefix)
                    .max_records(100)
                    .set_next_token(next.clone())
                    .send()
            })
            .await?;
        Ok(Page {
            items: out.metric_alarms().iter().map(alarm_from_sdk).collect(),
            next: next_token(out.next_token()),
        })
    }

    pub(super) async fn backlog_above_target(&self) -> Result<Arc<HashSet<String>>, AwsError> {
        let prefix = format!("{TARGET_TRACKING_ALARM_PREFIX}endpoint/");
        let mut firing = HashSet::new();
        let mut next = None;
        loop {
            let out = self
                .call(CW, "DescribeAlarms", || {
                    self.cloudwatch
                        .describe_alarms()
                        .alarm_name_prefix(&prefix)
                        .state_value(cw::types::StateValue::Alarm)
                        .max_records(100)
                        .set_next_token(next.clone())
                        .send()
                })
                .await?;
            firing.extend(
                out.metric_alarms()
                    .iter()
                    .filter_map(|a| a.alarm_name())
                    .filter_map(ResourceNames::resource_id_of_alarm_high)
                    .map(str::to_string),
            );
            match next_token(out.next_token()) {
                Some(token) => next = Some(token),
                None => return Ok(Arc::new(firing)),
            }
        }
    }

    pub(super) async fn put_alarm(&self, alarm: &MetricAlarm, tags: &Tags) -> Result<(), AwsError> {
        let dimensions: Vec<cw::types::Dimension> = alarm
            .dimensions
            .iter()
            .map(|d| {
                cw::types::Dimension::builder()
                    .name(&d.name)
                    .value(&d.value)
                    .build()
            })
            .collect();
        let tags = cw_tags(tags);
        self.call(CW, "PutMetricAlarm", || {
            self.cloudwatch
                .put_metric_alarm()
                .alarm_name(&alarm.name)
                .set_alarm_description(alarm.description.clone())
                .namespace(&alarm.namespace)
                .metric_name(&alarm.metric_name)
                .set_dimensions(Some(dimensions.clone()))
                .statistic(cw::types::Statistic::from(alarm.statistic.as_str()))
                .period(alarm.period)
                .evaluation_periods(alarm.evaluation_periods)
                .set_datapoints_to_alarm(alarm.datapoints_to_alarm)
                .threshold(alarm.threshold)
                .comparison_operator(cw::types::ComparisonOperator::from(
                    alarm.comparison_operator.as_str(),
                ))
                .set_treat_missing_data(alarm.treat_missing_data.clone())
                .actions_enabled(alarm.actions_enabled)
                .set_alarm_actions(Some(alarm.alarm_actions.clone()))
                .set_ok_actions(Some(alarm.ok_actions.clone()))
                .set_insufficient_data_actions(Some(alarm.insufficient_data_actions.clone()))
                .set_tags(Some(tags.clone()))
                .send()
        })
        .await?;
        Ok(())
    }

    pub(super) async fn delete_alarm(&self, name: &str) -> Result<(), AwsError> {
        self.call(CW, "DeleteAlarms", || {
            self.cloudwatch.delete_alarms().alarm_names(name).send()
        })
        .await?;
        Ok(())
    }

    pub(super) async fn alarm_tags(&self, arn: &str) -> Result<Tags, AwsError> {
        let out = self
            .call(CW, "ListTagsForResource", || {
                self.cloudwatch
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
            })
            .await?;
        Ok(out
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect())
    }

    pub(super) async fn tag_alarm(&self, arn: &str, tags: &Tags) -> Result<(), AwsError> {
        let tags = cw_tags(tags);
        self.call(CW, "TagResource", || {
            self.cloudwatch
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(tags.clone()))
                .send()
        })
        .await?;
        Ok(())
    }

    pub(super) async fn untag_alarm(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.call(CW, "UntagResource", || {
            self.cloudwatch
                .untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(keys.to_vec()))
                .send()
        })
        .await?;
        Ok(())
    }
}

/// A CloudWatch alarm's tags as a map.
fn cw_tags(tags: &Tags) -> Vec<cw::types::Tag> {
    tags.iter()
        .map(|(k, v)| cw::types::Tag::builder().key(k).value(v).build())
        .collect()
}

fn alarm_from_sdk(a: &cw::types::MetricAlarm) -> ObservedAlarm {
    ObservedAlarm {
        alarm: MetricAlarm {
            name: a.alarm_name().unwrap_or_default().to_string(),
            description: a.alarm_description().map(str::to_string),
            namespace: a.namespace().unwrap_or_default().to_string(),
            metric_name: a.metric_name().unwrap_or_default().to_string(),
            dimensions: a
                .dimensions()
                .iter()
                .map(|d| MetricDimension {
                    name: d.name().unwrap_or_default().to_string(),
                    value: d.value().unwrap_or_default().to_string(),
                })
                .collect(),
            statistic: a
                .statistic()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            period: a.period().unwrap_or_default(),
            evaluation_periods: a.evaluation_periods().unwrap_or_default(),
            datapoints_to_alarm: a.datapoints_to_alarm(),
            threshold: a.threshold().unwrap_or_default(),
            comparison_operator: a
                .comparison_operator()
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
            treat_missing_data: a.treat_missing_data().map(str::to_string),
            actions_enabled: a.actions_enabled().unwrap_or(true),
            alarm_actions: a.alarm_actions().to_vec(),
            ok_actions: a.ok_actions().to_vec(),
            insufficient_data_actions: a.insufficient_data_actions().to_vec(),
        },
        arn: a.alarm_arn().map(str::to_string),
        state: a.state_value().map(|s| s.as_str().to_string()),
        state_since: a
            .state_transitioned_timestamp()
            .or(a.state_updated_timestamp())
            .map(rfc3339),
        tags: None,
    }
}
