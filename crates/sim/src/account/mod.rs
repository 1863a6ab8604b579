//! A simulated AWS account: the state behind Application Auto Scaling, CloudWatch alarms and
//! Service Quotas, with AWS's validation and error shapes. Each operation takes and returns the
//! JSON shapes of the AWS API (botocore service models), so every wire protocol shares it.
//!
//! Behaviour follows docs/aws-behaviour.md; the section is cited at each rule.
//! Where AWS does not document a behaviour the choice is marked ASSUMPTION.
//!
//! One file per service, as the API references group the calls: [`autoscaling`] (Application
//! Auto Scaling), [`cloudwatch`], [`service_quotas`]; `state` holds the account and its
//! regions, `faults` the injected faults, `input` and `arn` what the services share; this
//! file holds the dispatch.

use serde_json::Value;

mod arn;
mod autoscaling;
mod cloudwatch;
mod faults;
mod input;
mod scheduled;
mod service_quotas;
mod state;
mod tags;

pub(crate) use arn::partition;
pub use faults::{Fault, RandomFaults};
pub(crate) use input::required;
pub use scheduled::ScheduledRun;
pub use state::{
    ACCOUNT_ID, Account, Activity, DEFAULT_REGION, QuotaTable, TargetTrackingAlarms, now,
};

pub use crate::aws_error::{ApiError, ApiResult};

use state::Alarm;

impl Account {
    /// Records which endpoints a write changes the configuration of (before it runs: a deleted
    /// alarm's endpoint is read from the alarm). Tags change nothing the model reads.
    fn mark_changed(&mut self, service: &str, operation: &str, input: &Value) {
        if operation.contains("Tag") {
            return;
        }
        let of_alarm = |alarm: &Alarm| -> Vec<String> {
            alarm
                .config
                .get("Dimensions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|d| d["Name"] == "EndpointName")
                .filter_map(|d| d["Value"].as_str().map(str::to_string))
                .collect()
        };
        let alarm_names: Vec<&str> = match input.get("AlarmNames").and_then(Value::as_array) {
            Some(names) => names.iter().filter_map(Value::as_str).collect(),
            None => input
                .get("AlarmName")
                .and_then(Value::as_str)
                .into_iter()
                .collect(),
        };
        let endpoints: Option<Vec<String>> = match service {
            "application-autoscaling" => input
                .get("ResourceId")
                .and_then(Value::as_str)
                .and_then(|id| id.strip_prefix("endpoint/"))
                .and_then(|rest| rest.split('/').next())
                .map(|name| vec![name.to_string()]),
            "cloudwatch" if !alarm_names.is_empty() => {
                let mut names: Vec<String> = alarm_names
                    .iter()
                    .filter_map(|n| self.here.alarms.get(*n))
                    .flat_map(of_alarm)
                    .collect();
                // A new or changed alarm's own dimensions.
                names.extend(
                    input
                        .get("Dimensions")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter(|d| d["Name"] == "EndpointName")
                        .filter_map(|d| d["Value"].as_str().map(str::to_string)),
                );
                Some(names)
            }
            _ => None,
        };
        match endpoints {
            Some(names) => {
                for name in names {
                    self.changed_endpoints
                        .insert((self.region.clone(), name), self.config_version);
                }
            }
            None => self.changed_unattributed = self.config_version,
        }
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
            self.mark_changed(service, operation, input);
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
            ("application-autoscaling", "PutScheduledAction") => {
                self.put_scheduled_action(input, region)
            }
            ("application-autoscaling", "DescribeScheduledActions") => {
                self.describe_scheduled_actions(input)
            }
            ("application-autoscaling", "DeleteScheduledAction") => {
                self.delete_scheduled_action(input)
            }
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
            ("cloudwatch", "ListTagsForResource") => self.cw_list_tags(input, region),
            ("cloudwatch", "TagResource") => self.cw_tag_resource(input, region),
            ("cloudwatch", "UntagResource") => self.cw_untag_resource(input, region),
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
}

#[cfg(test)]
mod changed_endpoint_tests {
    use super::{Account, QuotaTable};
    use serde_json::json;

    /// The model re-reads only the endpoints a write changed: each write must name the right
    /// ones, a deleted alarm's endpoint included (read from the alarm before it goes).
    #[test]
    fn writes_mark_the_endpoints_whose_configuration_they_change() {
        let mut account = Account::new(QuotaTable::default());
        let target = json!({"ServiceNamespace": "sagemaker", "ResourceId": "endpoint/a/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "MinCapacity": 0, "MaxCapacity": 2});
        let register = |account: &mut Account| {
            account
                .handle(
                    "application-autoscaling",
                    "RegisterScalableTarget",
                    &target,
                    "us-east-1",
                )
                .unwrap();
        };
        register(&mut account);
        let seen = account.config_version;
        assert!(!account.changed_since("a", seen) && !account.changed_since("b", seen));
        let alarm = json!({"AlarmName": "x", "Namespace": "AWS/SageMaker", "MetricName": "HasBacklogWithoutCapacity",
            "Dimensions": [{"Name": "EndpointName", "Value": "b"}], "Statistic": "Average", "Period": 60,
            "EvaluationPeriods": 1, "Threshold": 1.0, "ComparisonOperator": "GreaterThanOrEqualToThreshold"});
        account
            .handle("cloudwatch", "PutMetricAlarm", &alarm, "us-east-1")
            .unwrap();
        assert!(account.changed_since("b", seen) && !account.changed_since("a", seen));
        let seen = account.config_version;
        account
            .handle(
                "cloudwatch",
                "DeleteAlarms",
                &json!({"AlarmNames": ["x"]}),
                "us-east-1",
            )
            .unwrap();
        assert!(
            account.changed_since("b", seen),
            "the deleted alarm's endpoint"
        );
        let seen = account.config_version;
        register(&mut account);
        assert!(account.changed_since("a", seen) && !account.changed_since("b", seen));
    }
}
