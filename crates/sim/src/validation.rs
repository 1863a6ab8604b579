//! The input validation AWS applies before it looks at any state, for the calls the local endpoint
//! serves. Enum sets and length limits are those of the API models (botocore `service-2.json` of
//! application-autoscaling 2016-02-06 and cloudwatch 2010-08-01, docs/aws-behaviour.md §2, §4); the
//! messages follow the shape AWS gives its model constraint errors ("1 validation error detected:
//! Value 'x' at 'field' failed to satisfy constraint: ...").
//!
//! Application Auto Scaling answers `ValidationException`; CloudWatch answers `ValidationError`
//! for model constraints (the query protocol's code: "Statistic should not be set if list of
//! Metrics is set. (Service: AmazonCloudWatch; Status Code: 400; Error Code: ValidationError)",
//! observed in aws-cloudformation/cfn-lint#766) and `InvalidParameterValue` for values out of a
//! documented range.

use serde_json::Value;

use crate::aws_error::ApiError;

pub const SERVICE_NAMESPACES: &[&str] = &[
    "ecs",
    "elasticmapreduce",
    "ec2",
    "appstream",
    "dynamodb",
    "rds",
    "sagemaker",
    "custom-resource",
    "comprehend",
    "lambda",
    "cassandra",
    "kafka",
    "elasticache",
    "neptune",
    "workspaces",
];

pub const SCALABLE_DIMENSIONS: &[&str] = &[
    "ecs:service:DesiredCount",
    "ec2:spot-fleet-request:TargetCapacity",
    "elasticmapreduce:instancegroup:InstanceCount",
    "appstream:fleet:DesiredCapacity",
    "dynamodb:table:ReadCapacityUnits",
    "dynamodb:table:WriteCapacityUnits",
    "dynamodb:index:ReadCapacityUnits",
    "dynamodb:index:WriteCapacityUnits",
    "rds:cluster:ReadReplicaCount",
    "sagemaker:variant:DesiredInstanceCount",
    "custom-resource:ResourceType:Property",
    "comprehend:document-classifier-endpoint:DesiredInferenceUnits",
    "comprehend:entity-recognizer-endpoint:DesiredInferenceUnits",
    "lambda:function:ProvisionedConcurrency",
    "cassandra:table:ReadCapacityUnits",
    "cassandra:table:WriteCapacityUnits",
    "kafka:broker-storage:VolumeSize",
    "elasticache:replication-group:NodeGroups",
    "elasticache:replication-group:Replicas",
    "neptune:cluster:ReadReplicaCount",
    "sagemaker:variant:DesiredProvisionedConcurrency",
    "sagemaker:inference-component:DesiredCopyCount",
    "workspaces:workspacespool:DesiredUserSessions",
];

/// The predefined metrics of target tracking, and which of them SageMaker variants may use.
pub const PREDEFINED_METRICS: &[&str] = &[
    "DynamoDBReadCapacityUtilization",
    "DynamoDBWriteCapacityUtilization",
    "ALBRequestCountPerTarget",
    "RDSReaderAverageCPUUtilization",
    "RDSReaderAverageDatabaseConnections",
    "EC2SpotFleetRequestAverageCPUUtilization",
    "EC2SpotFleetRequestAverageNetworkIn",
    "EC2SpotFleetRequestAverageNetworkOut",
    "SageMakerVariantInvocationsPerInstance",
    "ECSServiceAverageCPUUtilization",
    "ECSServiceAverageMemoryUtilization",
    "AppStreamAverageCapacityUtilization",
    "ComprehendInferenceUtilization",
    "LambdaProvisionedConcurrencyUtilization",
    "CassandraReadCapacityUtilization",
    "CassandraWriteCapacityUtilization",
    "KafkaBrokerStorageUtilization",
    "ElastiCachePrimaryEngineCPUUtilization",
    "ElastiCacheReplicaEngineCPUUtilization",
    "ElastiCacheDatabaseMemoryUsageCountedForEvictPercentage",
    "NeptuneReaderAverageCPUUtilization",
    "SageMakerVariantProvisionedConcurrencyUtilization",
    "ElastiCacheDatabaseCapacityUsageCountedForEvictPercentage",
    "SageMakerInferenceComponentInvocationsPerCopy",
    "WorkSpacesAverageUserSessionsCapacityUtilization",
    "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution",
    "SageMakerVariantConcurrentRequestsPerModelHighResolution",
];

pub const POLICY_TYPES: &[&str] = &["StepScaling", "TargetTrackingScaling", "PredictiveScaling"];
pub const METRIC_STATISTICS: &[&str] = &["Average", "Minimum", "Maximum", "SampleCount", "Sum"];
pub const AGGREGATION_TYPES: &[&str] = &["Average", "Minimum", "Maximum"];
pub const ADJUSTMENT_TYPES: &[&str] = &[
    "ChangeInCapacity",
    "PercentChangeInCapacity",
    "ExactCapacity",
];
pub const CW_STATISTICS: &[&str] = &["SampleCount", "Average", "Sum", "Minimum", "Maximum"];
pub const CW_UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];
pub const ALARM_STATES: &[&str] = &["OK", "ALARM", "INSUFFICIENT_DATA"];
pub const ALARM_TYPES: &[&str] = &["CompositeAlarm", "MetricAlarm"];
/// Service Quotas' AppliedLevelEnum (ListServiceQuotas QuotaAppliedAtLevel).
pub const QUOTA_APPLIED_LEVELS: &[&str] = &["ACCOUNT", "RESOURCE", "ALL"];

/// Which service answers, for its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    ApplicationAutoScaling,
    CloudWatch,
    ServiceQuotas,
}

impl Service {
    fn code(self) -> &'static str {
        match self {
            Service::ApplicationAutoScaling | Service::ServiceQuotas => "ValidationException",
            Service::CloudWatch => "ValidationError",
        }
    }

    pub fn error(self, message: impl Into<String>) -> ApiError {
        ApiError::new(self.code(), message)
    }

    fn constraint(self, value: &str, field: &str, constraint: &str) -> ApiError {
        let shown: String = value.chars().take(256).collect();
        self.error(format!(
            "1 validation error detected: Value '{shown}' at '{field}' failed to satisfy constraint: {constraint}"
        ))
    }
}

/// The field name as AWS's constraint messages write it (first letter lower-cased).
pub fn member(field: &str) -> String {
    let mut chars = field.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `value`, if present, must be one of `allowed` (case matters, as in AWS).
pub fn one_of(
    service: Service,
    value: Option<&str>,
    field: &str,
    allowed: &[&str],
) -> Result<(), ApiError> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(service.constraint(
            v,
            field,
            &format!(
                "Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

/// `value`, if present, must have between `min` and `max` characters.
pub fn length(
    service: Service,
    value: Option<&str>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<(), ApiError> {
    match value {
        Some(v) if !(min..=max).contains(&v.chars().count()) => Err(service.constraint(
            v,
            field,
            &format!("Member must have length between {min} and {max}"),
        )),
        _ => Ok(()),
    }
}

/// Application Auto Scaling's name pattern for PolicyName, `\p{Print}+`.
pub fn printable(service: Service, value: Option<&str>, field: &str) -> Result<(), ApiError> {
    match value {
        Some(v) if v.chars().any(char::is_control) => Err(service.constraint(
            v,
            field,
            "Member must satisfy regular expression pattern: \\p{Print}+",
        )),
        _ => Ok(()),
    }
}

/// The ResourceId pattern `[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\r\n\t]*`: any
/// character except the other control characters.
pub fn resource_id_chars(service: Service, value: &str, field: &str) -> Result<(), ApiError> {
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t'))
    {
        return Err(service.constraint(
            value,
            field,
            "Member must satisfy regular expression pattern: [\\u0020-\\uD7FF\\uE000-\\uFFFD\\uD800\\uDC00-\\uDBFF\\uDFFF\\r\\n\\t]*",
        ));
    }
    Ok(())
}

/// The dimensions a namespace's resources have (a dimension of another service is refused with
/// AWS's own words).
pub fn dimension_belongs(namespace: &str, dimension: &str) -> Result<(), ApiError> {
    if dimension.split(':').next() == Some(namespace) {
        return Ok(());
    }
    Err(Service::ApplicationAutoScaling
        .error("Unsupported service namespace, resource type or scalable dimension"))
}

/// A target-tracking configuration: exactly one metric specification, a predefined metric that
/// applies to the namespace, and valid statistics.
pub fn target_tracking(namespace: &str, c: &Value) -> Result<(), ApiError> {
    let aas = Service::ApplicationAutoScaling;
    let predefined = c.get("PredefinedMetricSpecification");
    let customized = c.get("CustomizedMetricSpecification");
    match (predefined, customized) {
        (Some(_), Some(_)) => {
            return Err(aas.error(
                "Only one of PredefinedMetricSpecification or CustomizedMetricSpecification can be specified",
            ));
        }
        (None, None) => {
            return Err(aas.error(
                "Either PredefinedMetricSpecification or CustomizedMetricSpecification is required",
            ));
        }
        _ => {}
    }
    if let Some(p) = predefined {
        let kind = p.get("PredefinedMetricType").and_then(Value::as_str);
        let Some(kind) = kind else {
            return Err(aas.error("PredefinedMetricType is required"));
        };
        one_of(
            aas,
            Some(kind),
            "targetTrackingScalingPolicyConfiguration.predefinedMetricSpecification.predefinedMetricType",
            PREDEFINED_METRICS,
        )?;
        let applies = match namespace {
            "sagemaker" => kind.starts_with("SageMaker"),
            "ecs" => kind.starts_with("ECSService") || kind == "ALBRequestCountPerTarget",
            "ec2" => kind.starts_with("EC2SpotFleet") || kind == "ALBRequestCountPerTarget",
            "dynamodb" => kind.starts_with("DynamoDB"),
            "rds" => kind.starts_with("RDS"),
            "appstream" => kind.starts_with("AppStream"),
            "comprehend" => kind.starts_with("Comprehend"),
            "lambda" => kind.starts_with("Lambda"),
            "cassandra" => kind.starts_with("Cassandra"),
            "kafka" => kind.starts_with("Kafka"),
            "elasticache" => kind.starts_with("ElastiCache"),
            "neptune" => kind.starts_with("Neptune"),
            "workspaces" => kind.starts_with("WorkSpaces"),
            _ => true,
        };
        if !applies {
            return Err(aas.error(format!(
                "Unsupported metric type {kind} for service namespace {namespace}"
            )));
        }
    }
    if let Some(m) = customized {
        let statistic = m.get("Statistic").and_then(Value::as_str);
        one_of(
            aas,
            statistic,
            "targetTrackingScalingPolicyConfiguration.customizedMetricSpecification.statistic",
            METRIC_STATISTICS,
        )?;
        if m.get("Metrics").is_none()
            && (m.get("MetricName").is_none()
                || m.get("Namespace").is_none()
                || statistic.is_none())
        {
            return Err(aas.error(
                "A customized metric specification needs MetricName, Namespace and Statistic, or Metrics",
            ));
        }
    }
    Ok(())
}

/// Step bounds beyond what the interval checks in the account cover (docs/aws-behaviour.md §3.1): a
/// positive upper bound needs a step with a null upper bound, a negative lower bound one with a
/// null lower bound.
pub fn step_bounds_reach_infinity(steps: &[Value]) -> Result<(), ApiError> {
    let aas = Service::ApplicationAutoScaling;
    let bound = |s: &Value, k: &str| s.get(k).and_then(Value::as_f64);
    let positive_upper = steps
        .iter()
        .any(|s| bound(s, "MetricIntervalUpperBound").is_some_and(|u| u > 0.0));
    let open_upper = steps
        .iter()
        .any(|s| bound(s, "MetricIntervalUpperBound").is_none());
    if positive_upper && !open_upper {
        return Err(aas.error(
            "There must be a step adjustment with an unspecified upper bound when one step adjustment has a positive upper bound",
        ));
    }
    let negative_lower = steps
        .iter()
        .any(|s| bound(s, "MetricIntervalLowerBound").is_some_and(|l| l < 0.0));
    let open_lower = steps
        .iter()
        .any(|s| bound(s, "MetricIntervalLowerBound").is_none());
    if negative_lower && !open_lower {
        return Err(aas.error(
            "There must be a step adjustment with an unspecified lower bound when one step adjustment has a negative lower bound",
        ));
    }
    Ok(())
}

/// An alarm action is an ARN (`arn:partition:service:...`).
pub fn is_arn(action: &str) -> bool {
    let parts: Vec<&str> = action.splitn(6, ':').collect();
    parts.len() == 6 && parts[0] == "arn" && !parts[1].is_empty() && !parts[2].is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enums_are_case_sensitive_and_name_the_set() {
        let err = one_of(
            Service::ApplicationAutoScaling,
            Some("SageMaker"),
            "serviceNamespace",
            SERVICE_NAMESPACES,
        )
        .unwrap_err();
        assert_eq!(err.code, "ValidationException");
        assert!(
            err.message
                .contains("Value 'SageMaker' at 'serviceNamespace'")
        );
        assert!(
            one_of(
                Service::CloudWatch,
                Some("Average"),
                "statistic",
                CW_STATISTICS
            )
            .is_ok()
        );
        assert_eq!(
            one_of(Service::CloudWatch, Some("Avg"), "statistic", CW_STATISTICS)
                .unwrap_err()
                .code,
            "ValidationError"
        );
    }

    #[test]
    fn target_tracking_takes_one_metric_that_fits_the_namespace() {
        let both = json!({"TargetValue": 1, "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}, "CustomizedMetricSpecification": {"MetricName": "m", "Namespace": "n", "Statistic": "Average"}});
        assert!(target_tracking("sagemaker", &both).is_err());
        let ecs = json!({"TargetValue": 1, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}});
        assert!(
            target_tracking("sagemaker", &ecs)
                .unwrap_err()
                .message
                .contains("Unsupported metric type")
        );
        let bad_stat = json!({"TargetValue": 1, "CustomizedMetricSpecification": {"MetricName": "m", "Namespace": "n", "Statistic": "Avg"}});
        assert!(target_tracking("sagemaker", &bad_stat).is_err());
    }

    #[test]
    fn open_ended_steps_are_required_where_bounds_point_outward() {
        let no_open_upper = [
            json!({"MetricIntervalLowerBound": 0, "MetricIntervalUpperBound": 10, "ScalingAdjustment": 1}),
        ];
        assert!(step_bounds_reach_infinity(&no_open_upper).is_err());
        let ok = [
            json!({"MetricIntervalLowerBound": 0, "MetricIntervalUpperBound": 10, "ScalingAdjustment": 1}),
            json!({"MetricIntervalLowerBound": 10, "ScalingAdjustment": 2}),
        ];
        assert!(step_bounds_reach_infinity(&ok).is_ok());
        let no_open_lower = [
            json!({"MetricIntervalLowerBound": -5, "MetricIntervalUpperBound": 0, "ScalingAdjustment": -1}),
        ];
        assert!(step_bounds_reach_infinity(&no_open_lower).is_err());
    }
}
