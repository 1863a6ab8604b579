//! Application Auto Scaling through the SDK: scalable targets, their tags, scaling policies and
//! scaling activities.

use std::collections::HashMap;

use aws_sdk_applicationautoscaling as aas;

use asyncscale_core::*;

use super::{AAS, SdkBackend, build_error, next_token, rfc3339};
use asyncscale_engine::{AwsError, Page};

impl SdkBackend {
    pub(super) async fn describe_target(
        &self,
        resource_id: &str,
    ) -> Result<Option<ObservedTarget>, AwsError> {
        let out = self
            .call(AAS, "DescribeScalableTargets", || {
                self.autoscaling
                    .describe_scalable_targets()
                    .service_namespace(aas::types::ServiceNamespace::Sagemaker)
                    .scalable_dimension(
                        aas::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                    )
                    .resource_ids(resource_id)
                    .send()
            })
            .await?;
        Ok(out
            .scalable_targets()
            .iter()
            .find(|t| t.resource_id() == resource_id)
            .map(target_from_sdk))
    }

    pub(super) async fn list_targets(
        &self,
        next: Option<String>,
    ) -> Result<Page<ObservedTarget>, AwsError> {
        let out = self
            .call(AAS, "DescribeScalableTargets", || {
                self.autoscaling
                    .describe_scalable_targets()
                    .service_namespace(aas::types::ServiceNamespace::Sagemaker)
                    .scalable_dimension(
                        aas::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                    )
                    .max_results(50)
                    .set_next_token(next.clone())
                    .send()
            })
            .await?;
        Ok(Page {
            items: out.scalable_targets().iter().map(target_from_sdk).collect(),
            next: next_token(out.next_token()),
        })
    }

    pub(super) async fn list_policies(
        &self,
        next: Option<String>,
    ) -> Result<Page<ObservedPolicy>, AwsError> {
        let out = self
            .call(AAS, "DescribeScalingPolicies", || {
                self.autoscaling
                    .describe_scaling_policies()
                    .service_namespace(aas::types::ServiceNamespace::Sagemaker)
                    .scalable_dimension(
                        aas::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                    )
                    .max_results(10)
                    .set_next_token(next.clone())
                    .send()
            })
            .await?;
        Ok(Page {
            items: out.scaling_policies().iter().map(policy_from_sdk).collect(),
            next: next_token(out.next_token()),
        })
    }

    pub(super) async fn list_activities(
        &self,
        next: Option<String>,
    ) -> Result<Page<(String, ScalingActivity)>, AwsError> {
        let out = self
            .call(AAS, "DescribeScalingActivities", || {
                self.autoscaling
                    .describe_scaling_activities()
                    .service_namespace(aas::types::ServiceNamespace::Sagemaker)
                    .scalable_dimension(
                        aas::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                    )
                    .max_results(50)
                    .set_next_token(next.clone())
                    .send()
            })
            .await?;
        Ok(Page {
            items: out
                .scaling_activities()
                .iter()
                .map(|a| (a.resource_id().to_string(), activity_from_sdk(a)))
                .collect(),
            next: next_token(out.next_token()),
        })
    }

    pub(super) async fn target_tags(&self, arn: &str) -> Result<Tags, AwsError> {
        let out = self
            .call(AAS, "ListTagsForResource", || {
                self.autoscaling
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
            })
            .await?;
        Ok(out
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    pub(super) async fn register_target(
        &self,
        target: &ScalableTarget,
        tags: Option<&Tags>,
    ) -> Result<String, AwsError> {
        let suspended = aas::types::SuspendedState::builder()
            .dynamic_scaling_in_suspended(target.suspended.dynamic_scaling_in)
            .dynamic_scaling_out_suspended(target.suspended.dynamic_scaling_out)
            .scheduled_scaling_suspended(target.suspended.scheduled_scaling)
            .build();
        let tags: Option<HashMap<String, String>> = tags.map(|t| t.clone().into_iter().collect());
        let out = self
            .call(AAS, "RegisterScalableTarget", || {
                self.autoscaling
                    .register_scalable_target()
                    .service_namespace(aas::types::ServiceNamespace::Sagemaker)
                    .scalable_dimension(
                        aas::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                    )
                    .resource_id(&target.resource_id)
                    .min_capacity(target.min_capacity)
                    .max_capacity(target.max_capacity)
                    .suspended_state(suspended.clone())
                    .set_tags(tags.clone())
                    .send()
            })
            .await?;
        Ok(out.scalable_target_arn().unwrap_or_default().to_string())
    }

    pub(super) async fn deregister_target(&self, resource_id: &str) -> Result<(), AwsError> {
        self.call(AAS, "DeregisterScalableTarget", || {
            self.autoscaling
                .deregister_scalable_target()
                .service_namespace(aas::types::ServiceNamespace::Sagemaker)
                .scalable_dimension(
                    aas::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                )
                .resource_id(resource_id)
                .send()
        })
        .await?;
        Ok(())
    }

    pub(super) async fn tag_target(&self, arn: &str, tags: &Tags) -> Result<(), AwsError> {
        let tags: HashMap<String, String> = tags.clone().into_iter().collect();
        self.call(AAS, "TagResource", || {
            self.autoscaling
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(tags.clone()))
                .send()
        })
        .await?;
        Ok(())
    }

    pub(super) async fn untag_target(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.call(AAS, "UntagResource", || {
            self.autoscaling
                .untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(keys.to_vec()))
                .send()
        })
        .await?;
        Ok(())
    }

    pub(super) async fn describe_policies(
        &self,
        resource_id: &str,
    ) -> Result<Vec<ObservedPolicy>, AwsError> {
        let mut policies = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .call(AAS, "DescribeScalingPolicies", || {
                    self.autoscaling
                        .describe_scaling_policies()
                        .service_namespace(aas::types::ServiceNamespace::Sagemaker)
                        .scalable_dimension(
                            aas::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                        )
                        .resource_id(resource_id)
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            policies.extend(out.scaling_policies().iter().map(policy_from_sdk));
            token = next_token(out.next_token());
            if token.is_none() {
                return Ok(policies);
            }
        }
    }

    pub(super) async fn put_policy(&self, policy: &ScalingPolicy) -> Result<String, AwsError> {
        // Build the configuration once, before anything is sent or counted.
        let (policy_type, target_tracking, step) = match &policy.config {
            PolicyConfig::TargetTracking(tt) => (
                aas::types::PolicyType::TargetTrackingScaling,
                Some(target_tracking_to_sdk(tt)?),
                None,
            ),
            PolicyConfig::Step(step) => (
                aas::types::PolicyType::StepScaling,
                None,
                Some(step_to_sdk(step)?),
            ),
            PolicyConfig::Other(kind) => {
                return Err(build_error(
                    "PutScalingPolicy",
                    format!("asyncscale never writes {kind} policies"),
                ));
            }
        };
        let out = self
            .call(AAS, "PutScalingPolicy", || {
                self.autoscaling
                    .put_scaling_policy()
                    .policy_name(&policy.name)
                    .service_namespace(aas::types::ServiceNamespace::Sagemaker)
                    .scalable_dimension(
                        aas::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                    )
                    .resource_id(&policy.resource_id)
                    .policy_type(policy_type.clone())
                    .set_target_tracking_scaling_policy_configuration(target_tracking.clone())
                    .set_step_scaling_policy_configuration(step.clone())
                    .send()
            })
            .await?;
        Ok(out.policy_arn().to_string())
    }

    pub(super) async fn delete_policy(
        &self,
        resource_id: &str,
        name: &str,
    ) -> Result<(), AwsError> {
        self.call(AAS, "DeleteScalingPolicy", || {
            self.autoscaling
                .delete_scaling_policy()
                .policy_name(name)
                .service_namespace(aas::types::ServiceNamespace::Sagemaker)
                .scalable_dimension(
                    aas::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                )
                .resource_id(resource_id)
                .send()
        })
        .await?;
        Ok(())
    }

    pub(super) async fn recent_activities(
        &self,
        resource_id: &str,
        max: i32,
    ) -> Result<Vec<ScalingActivity>, AwsError> {
        let out = self
            .call(AAS, "DescribeScalingActivities", || {
                self.autoscaling
                    .describe_scaling_activities()
                    .service_namespace(aas::types::ServiceNamespace::Sagemaker)
                    .scalable_dimension(
                        aas::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                    )
                    .resource_id(resource_id)
                    .max_results(max)
                    .send()
            })
            .await?;
        // AWS returns newest first; sort anyway, by time (not by its text, where `…:18.5Z` would
        // sort after `…:18.52Z`), so "newest" never depends on a server's order.
        let mut sorted: Vec<&aas::types::ScalingActivity> =
            out.scaling_activities().iter().collect();
        sorted.sort_by_key(|a| {
            std::cmp::Reverse((a.start_time().secs(), a.start_time().subsec_nanos()))
        });
        Ok(sorted.into_iter().map(activity_from_sdk).collect())
    }
}

fn target_from_sdk(found: &aas::types::ScalableTarget) -> ObservedTarget {
    let suspended = found.suspended_state();
    ObservedTarget {
        target: ScalableTarget {
            resource_id: found.resource_id().to_string(),
            min_capacity: found.min_capacity(),
            max_capacity: found.max_capacity(),
            suspended: SuspendedState {
                dynamic_scaling_in: suspended
                    .and_then(|s| s.dynamic_scaling_in_suspended())
                    .unwrap_or(false),
                dynamic_scaling_out: suspended
                    .and_then(|s| s.dynamic_scaling_out_suspended())
                    .unwrap_or(false),
                scheduled_scaling: suspended
                    .and_then(|s| s.scheduled_scaling_suspended())
                    .unwrap_or(false),
            },
        },
        arn: found.scalable_target_arn().map(str::to_string),
        tags: Tags::new(),
    }
}

fn activity_from_sdk(a: &aas::types::ScalingActivity) -> ScalingActivity {
    ScalingActivity {
        activity_id: a.activity_id().to_string(),
        status_code: a.status_code().as_str().to_string(),
        description: a.description().to_string(),
        cause: a.cause().to_string(),
        status_message: a.status_message().map(str::to_string),
        start_time: rfc3339(a.start_time()),
        end_time: a.end_time().map(rfc3339),
    }
}

fn dimensions_to_sdk(
    dims: &[MetricDimension],
) -> Result<Vec<aas::types::MetricDimension>, AwsError> {
    dims.iter()
        .map(|d| {
            aas::types::MetricDimension::builder()
                .name(&d.name)
                .value(&d.value)
                .build()
        })
        .collect::<Result<_, _>>()
        .map_err(|e| build_error("PutScalingPolicy", e))
}

fn target_tracking_to_sdk(
    tt: &TargetTrackingConfig,
) -> Result<aas::types::TargetTrackingScalingPolicyConfiguration, AwsError> {
    let mut builder = aas::types::TargetTrackingScalingPolicyConfiguration::builder()
        .target_value(tt.target_value)
        .set_scale_in_cooldown(tt.scale_in_cooldown)
        .set_scale_out_cooldown(tt.scale_out_cooldown)
        .disable_scale_in(tt.disable_scale_in);
    if let Some(m) = &tt.metric {
        builder = builder.customized_metric_specification(
            aas::types::CustomizedMetricSpecification::builder()
                .metric_name(&m.metric_name)
                .namespace(&m.namespace)
                .set_dimensions(Some(dimensions_to_sdk(&m.dimensions)?))
                .statistic(aas::types::MetricStatistic::from(m.statistic.as_str()))
                .build(),
        );
    }
    builder
        .build()
        .map_err(|e| build_error("PutScalingPolicy", e))
}

fn step_to_sdk(
    step: &StepScalingConfig,
) -> Result<aas::types::StepScalingPolicyConfiguration, AwsError> {
    let adjustments = step
        .step_adjustments
        .iter()
        .map(|s| {
            aas::types::StepAdjustment::builder()
                .set_metric_interval_lower_bound(s.lower_bound)
                .set_metric_interval_upper_bound(s.upper_bound)
                .scaling_adjustment(s.scaling_adjustment)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| build_error("PutScalingPolicy", e))?;
    Ok(aas::types::StepScalingPolicyConfiguration::builder()
        .set_adjustment_type(
            step.adjustment_type
                .as_deref()
                .map(aas::types::AdjustmentType::from),
        )
        .set_metric_aggregation_type(
            step.metric_aggregation_type
                .as_deref()
                .map(aas::types::MetricAggregationType::from),
        )
        .set_cooldown(step.cooldown)
        .set_min_adjustment_magnitude(step.min_adjustment_magnitude)
        .set_step_adjustments(Some(adjustments))
        .build())
}

fn policy_from_sdk(p: &aas::types::ScalingPolicy) -> ObservedPolicy {
    let config = if let Some(tt) = p.target_tracking_scaling_policy_configuration() {
        PolicyConfig::TargetTracking(TargetTrackingConfig {
            target_value: tt.target_value(),
            metric: tt.customized_metric_specification().and_then(|m| {
                Some(CustomizedMetric {
                    metric_name: m.metric_name()?.to_string(),
                    namespace: m.namespace()?.to_string(),
                    dimensions: m
                        .dimensions()
                        .iter()
                        .map(|d| MetricDimension {
                            name: d.name().to_string(),
                            value: d.value().to_string(),
                        })
                        .collect(),
                    statistic: m.statistic()?.as_str().to_string(),
                })
            }),
            scale_in_cooldown: tt.scale_in_cooldown(),
            scale_out_cooldown: tt.scale_out_cooldown(),
            disable_scale_in: tt.disable_scale_in().unwrap_or(false),
        })
    } else if let Some(step) = p.step_scaling_policy_configuration() {
        PolicyConfig::Step(StepScalingConfig {
            adjustment_type: step.adjustment_type().map(|a| a.as_str().to_string()),
            metric_aggregation_type: step
                .metric_aggregation_type()
                .map(|a| a.as_str().to_string()),
            cooldown: step.cooldown(),
            min_adjustment_magnitude: step.min_adjustment_magnitude(),
            step_adjustments: step
                .step_adjustments()
                .iter()
                .map(|s| StepAdjustment {
                    lower_bound: s.metric_interval_lower_bound(),
                    upper_bound: s.metric_interval_upper_bound(),
                    scaling_adjustment: s.scaling_adjustment(),
                })
                .collect(),
        })
    } else {
        PolicyConfig::Other(p.policy_type().as_str().to_string())
    };
    ObservedPolicy {
        policy: ScalingPolicy {
            name: p.policy_name().to_string(),
            resource_id: p.resource_id().to_string(),
            config,
        },
        arn: p.policy_arn().to_string(),
    }
}
