//! Application Auto Scaling's scheduled actions through the SDK.

use aws_sdk_applicationautoscaling as aas;
use aws_sdk_applicationautoscaling::primitives::DateTime;

use asyncscale_core::{ObservedScheduledAction, ScheduledAction};

use super::{AAS, SdkBackend, next_token};
use asyncscale_engine::{AwsError, Page};

impl SdkBackend {
    /// One page of DescribeScheduledActions (AWS allows 50 a page), for one target or, with
    /// `resource_id` None, the whole namespace.
    pub(super) async fn scheduled_actions_page(
        &self,
        resource_id: Option<&str>,
        next: Option<String>,
    ) -> Result<Page<ObservedScheduledAction>, AwsError> {
        let out = self
            .call(AAS, "DescribeScheduledActions", || {
                self.autoscaling
                    .describe_scheduled_actions()
                    .service_namespace(aas::types::ServiceNamespace::Sagemaker)
                    .scalable_dimension(
                        aas::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                    )
                    .set_resource_id(resource_id.map(str::to_string))
                    .max_results(50)
                    .set_next_token(next.clone())
                    .send()
            })
            .await?;
        Ok(Page {
            items: out
                .scheduled_actions()
                .iter()
                .filter(|a| resource_id.is_none_or(|id| a.resource_id() == id))
                .map(scheduled_from_sdk)
                .collect(),
            next: next_token(out.next_token()),
        })
    }

    pub(super) async fn put_scheduled_action(
        &self,
        action: &ScheduledAction,
    ) -> Result<(), AwsError> {
        let capacities = aas::types::ScalableTargetAction::builder()
            .set_min_capacity(action.min_capacity)
            .set_max_capacity(action.max_capacity)
            .build();
        self.call(AAS, "PutScheduledAction", || {
            self.autoscaling
                .put_scheduled_action()
                .service_namespace(aas::types::ServiceNamespace::Sagemaker)
                .scalable_dimension(
                    aas::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                )
                .resource_id(&action.resource_id)
                .scheduled_action_name(&action.name)
                .schedule(&action.schedule)
                .set_timezone(action.timezone.clone())
                .set_start_time(action.start_time.map(to_sdk_time))
                .set_end_time(action.end_time.map(to_sdk_time))
                .scalable_target_action(capacities.clone())
                .send()
        })
        .await?;
        Ok(())
    }

    pub(super) async fn delete_scheduled_action(
        &self,
        resource_id: &str,
        name: &str,
    ) -> Result<(), AwsError> {
        self.call(AAS, "DeleteScheduledAction", || {
            self.autoscaling
                .delete_scheduled_action()
                .service_namespace(aas::types::ServiceNamespace::Sagemaker)
                .scalable_dimension(
                    aas::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                )
                .resource_id(resource_id)
                .scheduled_action_name(name)
                .send()
        })
        .await?;
        Ok(())
    }
}

fn to_sdk_time(t: jiff::Timestamp) -> DateTime {
    DateTime::from_secs(t.as_second())
}

fn from_sdk_time(t: &DateTime) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok()
}

fn scheduled_from_sdk(a: &aas::types::ScheduledAction) -> ObservedScheduledAction {
    let capacities = a.scalable_target_action();
    ObservedScheduledAction {
        action: ScheduledAction {
            name: a.scheduled_action_name().to_string(),
            resource_id: a.resource_id().to_string(),
            schedule: a.schedule().to_string(),
            timezone: a.timezone().map(str::to_string),
            start_time: a.start_time().and_then(from_sdk_time),
            end_time: a.end_time().and_then(from_sdk_time),
            min_capacity: capacities.and_then(|c| c.min_capacity()),
            max_capacity: capacities.and_then(|c| c.max_capacity()),
        },
        arn: Some(a.scheduled_action_arn().to_string()),
        created: from_sdk_time(a.creation_time()),
    }
}
