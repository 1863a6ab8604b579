//! The AWS SDK adapter of the backend port.
//!
//! Credentials and region come from aws-config's default chain (environment, profile, web
//! identity for IRSA, EKS Pod Identity, instance metadata). `AWS_ENDPOINT_URL` (or the
//! per-service variables) and `--aws-endpoint` point every client at an AWS-compatible endpoint.
//! The SDK's standard retry mode retries throttling and transient errors; on top of that the
//! adapter retries what the SDK does not: ConcurrentUpdateException and CloudWatch throttling
//! wrapped in FailedResourceAccessException (aws-semantics.md §6.3).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_applicationautoscaling as aas;
use aws_sdk_cloudwatch as cw;
use aws_sdk_servicequotas as sq;

use asyncscale_core::*;

use crate::calls::CallCounter;
use crate::error::{AwsError, ErrorClass, classify};
use crate::port::{AutoscalingBackend, QuotaReading};

const AAS: &str = "application-autoscaling";
const CW: &str = "cloudwatch";
const SQ: &str = "service-quotas";
const QUOTA_SERVICE_CODE: &str = "sagemaker";
/// How long a quota value read from Service Quotas is used before it is read again. A raised
/// quota shows within this time.
const QUOTA_TTL: Duration = Duration::from_secs(300);
/// After a failed quota read, how long the failure is served before Service Quotas is asked again
/// (every resource of an instance type shares the reading; GetServiceQuota allows 5 calls a second).
const QUOTA_RETRY_AFTER: Duration = Duration::from_secs(10);
/// Attempts for errors the SDK does not retry itself (see the module docs).
const EXTRA_ATTEMPTS: u32 = 3;

/// How to reach AWS.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// Overrides the region of the environment.
    pub region: Option<String>,
    /// Sends every call to this endpoint (an AWS-compatible local endpoint, say).
    pub endpoint_url: Option<String>,
    pub timeouts: AwsTimeouts,
}

/// Bounds on every AWS call, so that a hung endpoint or connection becomes a recoverable error
/// instead of a reconcile that never ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// One whole operation, the SDK's retries included.
    pub call: Duration,
    /// One attempt (one HTTP request and its response).
    pub attempt: Duration,
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        Self {
            call: Duration::from_secs(30),
            attempt: Duration::from_secs(10),
        }
    }
}

impl AwsTimeouts {
    fn sdk_config(&self) -> aws_config::timeout::TimeoutConfig {
        aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(self.call)
            .operation_attempt_timeout(self.attempt)
            // The SDK's own default (behavior version 2026-01-12), but never above an attempt.
            .connect_timeout(self.attempt.min(Duration::from_millis(3100)))
            .build()
    }
}

/// A quota as last read, and the latest failure to read it.
#[derive(Debug, Clone, Default)]
struct CachedQuota {
    value: Option<(std::time::Instant, Quota)>,
    failure: Option<(std::time::Instant, AwsError)>,
}

pub struct SdkBackend {
    autoscaling: aas::Client,
    cloudwatch: cw::Client,
    quotas: sq::Client,
    calls: CallCounter,
    /// Quota codes by quota name, found once per process by listing (paginated).
    quota_codes: Mutex<BTreeMap<String, String>>,
    /// Quota values by quota name, re-read after [`QUOTA_TTL`]: every resource of an instance type
    /// shares one, and Service Quotas allows 5 GetServiceQuota calls a second (§5.3). A failed
    /// refresh keeps the last value: an unknown quota must never lift a clamp.
    quota_values: Mutex<BTreeMap<String, CachedQuota>>,
    region: String,
    timeouts: AwsTimeouts,
    quota_ttl: Duration,
}

impl SdkBackend {
    pub async fn connect(options: &AwsOptions, calls: CallCounter) -> Result<Self, AwsError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &options.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        let config = loader
            .timeout_config(options.timeouts.sdk_config())
            .load()
            .await;
        let mut backend = Self::from_config(&config, calls)?;
        backend.timeouts = options.timeouts;
        Ok(backend)
    }

    /// A backend for a local AWS-compatible endpoint (such as `asyncscale sim serve`), signed with
    /// fixed credentials so that the environment's real ones never reach it.
    pub async fn for_local_endpoint(url: &str, calls: CallCounter) -> Result<Self, AwsError> {
        let credentials = aws_sdk_applicationautoscaling::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "asyncscale-local-endpoint",
        );
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(credentials)
            .timeout_config(AwsTimeouts::default().sdk_config())
            .load()
            .await;
        Self::from_config(&config, calls)
    }

    pub fn from_config(config: &SdkConfig, calls: CallCounter) -> Result<Self, AwsError> {
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| AwsError {
                class: ErrorClass::Terminal,
                service: "aws-config",
                operation: "LoadConfig",
                code: "NoRegion".into(),
                message:
                    "no AWS region: set spec.region, AWS_REGION, or a region in the AWS profile"
                        .into(),
            })?;
        Ok(Self {
            autoscaling: aas::Client::new(config),
            cloudwatch: cw::Client::new(config),
            quotas: sq::Client::new(config),
            calls,
            quota_codes: Mutex::new(BTreeMap::new()),
            quota_values: Mutex::new(BTreeMap::new()),
            region,
            quota_ttl: QUOTA_TTL,
            timeouts: config
                .timeout_config()
                .and_then(|t| {
                    Some(AwsTimeouts {
                        call: t.operation_timeout()?,
                        attempt: t.operation_attempt_timeout()?,
                    })
                })
                .unwrap_or_default(),
        })
    }

    pub fn calls(&self) -> &CallCounter {
        &self.calls
    }

    /// How long a quota value is used before it is read again (5 minutes unless changed).
    pub fn with_quota_ttl(mut self, ttl: Duration) -> Self {
        self.quota_ttl = ttl;
        self
    }

    /// Sends one request, counts it, classifies its error, and retries the recoverable errors the
    /// SDK leaves alone (with jittered exponential backoff from 200 ms).
    async fn call<T, E, F, Fut>(
        &self,
        service: &'static str,
        operation: &'static str,
        send: F,
    ) -> Result<T, AwsError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, aas::error::SdkError<E>>>,
        E: aas::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match send().await {
                Ok(output) => {
                    self.calls.record(service, operation, "ok");
                    return Ok(output);
                }
                Err(err) => {
                    let error = to_aws_error(service, operation, &err, &self.timeouts);
                    self.calls.record(service, operation, error.class.as_str());
                    let sdk_did_not_retry = matches!(
                        error.code.as_str(),
                        "ConcurrentUpdateException" | "FailedResourceAccessException"
                    );
                    if error.class == ErrorClass::Recoverable
                        && sdk_did_not_retry
                        && attempt < EXTRA_ATTEMPTS
                    {
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    return Err(error);
                }
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    let base = 200u64 << attempt.min(6);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    Duration::from_millis(base / 2 + u64::from(nanos) % (base / 2 + 1))
}

fn to_aws_error<E>(
    service: &'static str,
    operation: &'static str,
    err: &aas::error::SdkError<E>,
    timeouts: &AwsTimeouts,
) -> AwsError
where
    E: aas::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aas::error::SdkError;
    let (code, message, status) = match err {
        SdkError::ServiceError(service_error) => {
            let inner = service_error.err();
            (
                inner.code().unwrap_or("Unknown").to_string(),
                inner.message().unwrap_or("").to_string(),
                Some(service_error.raw().status().as_u16()),
            )
        }
        SdkError::TimeoutError(_) => (
            "timeout".into(),
            format!(
                "AWS did not answer within the time allowed ({:?} an attempt, {:?} a call with retries; --aws-attempt-timeout, --aws-call-timeout)",
                timeouts.attempt, timeouts.call
            ),
            None,
        ),
        SdkError::DispatchFailure(failure) => (
            "dispatch".into(),
            format!("could not reach AWS: {}", source_chain(err)),
            failure.is_io().then_some(503),
        ),
        SdkError::ResponseError(_) => (
            "response".into(),
            format!("unreadable response: {}", source_chain(err)),
            Some(502),
        ),
        _ => ("construction".into(), source_chain(err), None),
    };
    let class = match code.as_str() {
        "timeout" | "dispatch" | "response" => ErrorClass::Recoverable,
        _ => classify(&code, &message, status),
    };
    AwsError {
        class,
        service,
        operation,
        code,
        message,
    }
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

fn build_error(operation: &'static str, e: impl std::fmt::Display) -> AwsError {
    AwsError {
        class: ErrorClass::Terminal,
        service: "asyncscale",
        operation,
        code: "BuildError".into(),
        message: e.to_string(),
    }
}

/// A CloudWatch alarm's tags as a map.
fn cw_tags(tags: &Tags) -> Vec<cw::types::Tag> {
    tags.iter()
        .map(|(k, v)| cw::types::Tag::builder().key(k).value(v).build())
        .collect()
}

fn rfc3339(t: &aas::primitives::DateTime) -> String {
    t.fmt(aas::primitives::DateTimeFormat::DateTime)
        .unwrap_or_else(|_| t.secs().to_string())
}

#[async_trait]
impl AutoscalingBackend for SdkBackend {
    fn region(&self) -> &str {
        &self.region
    }

    async fn describe_target(&self, resource_id: &str) -> Result<Option<ObservedTarget>, AwsError> {
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
        let Some(found) = out
            .scalable_targets()
            .iter()
            .find(|t| t.resource_id() == resource_id)
        else {
            return Ok(None);
        };
        let suspended = found.suspended_state();
        let target = ScalableTarget {
            resource_id: resource_id.to_string(),
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
        };
        let arn = found.scalable_target_arn().map(str::to_string);
        Ok(Some(ObservedTarget {
            target,
            arn,
            tags: Tags::new(),
        }))
    }

    async fn target_tags(&self, arn: &str) -> Result<Tags, AwsError> {
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

    async fn register_target(
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

    async fn deregister_target(&self, resource_id: &str) -> Result<(), AwsError> {
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

    async fn tag_target(&self, arn: &str, tags: &Tags) -> Result<(), AwsError> {
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

    async fn untag_target(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
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

    async fn describe_policies(&self, resource_id: &str) -> Result<Vec<ObservedPolicy>, AwsError> {
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
            token = out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(policies);
            }
        }
    }

    async fn put_policy(&self, policy: &ScalingPolicy) -> Result<String, AwsError> {
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

    async fn delete_policy(&self, resource_id: &str, name: &str) -> Result<(), AwsError> {
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

    async fn describe_alarm(&self, name: &str) -> Result<Option<ObservedAlarm>, AwsError> {
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

    async fn put_alarm(&self, alarm: &MetricAlarm, tags: &Tags) -> Result<(), AwsError> {
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

    async fn delete_alarm(&self, name: &str) -> Result<(), AwsError> {
        self.call(CW, "DeleteAlarms", || {
            self.cloudwatch.delete_alarms().alarm_names(name).send()
        })
        .await?;
        Ok(())
    }

    async fn alarm_tags(&self, arn: &str) -> Result<Tags, AwsError> {
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

    async fn tag_alarm(&self, arn: &str, tags: &Tags) -> Result<(), AwsError> {
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

    async fn untag_alarm(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
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

    async fn recent_activities(
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
        let activities = sorted
            .into_iter()
            .map(|a| ScalingActivity {
                activity_id: a.activity_id().to_string(),
                status_code: a.status_code().as_str().to_string(),
                description: a.description().to_string(),
                cause: a.cause().to_string(),
                status_message: a.status_message().map(str::to_string),
                start_time: rfc3339(a.start_time()),
            })
            .collect();
        Ok(activities)
    }

    async fn instance_quota(&self, instance_type: &str) -> QuotaReading {
        let name = quota_name(instance_type);
        let cached = self
            .quota_values
            .lock()
            .expect("quota cache lock")
            .get(&name)
            .cloned()
            .unwrap_or_default();
        if let Some((read_at, quota)) = &cached.value
            && read_at.elapsed() < self.quota_ttl
        {
            return QuotaReading {
                lookup: QuotaLookup::Known(quota.clone()),
                error: None,
            };
        }
        let failure = match &cached.failure {
            Some((failed_at, error)) if failed_at.elapsed() < QUOTA_RETRY_AFTER => error.clone(),
            _ => match self.resolve_quota(&name).await {
                Ok(quota) => {
                    let mut cache = self.quota_values.lock().expect("quota cache lock");
                    let entry = cache.entry(name).or_default();
                    entry.value = Some((std::time::Instant::now(), quota.clone()));
                    entry.failure = None;
                    return QuotaReading {
                        lookup: QuotaLookup::Known(quota),
                        error: None,
                    };
                }
                Err(error) => {
                    let mut cache = self.quota_values.lock().expect("quota cache lock");
                    let entry = cache.entry(name.clone()).or_default();
                    entry.failure = Some((std::time::Instant::now(), error.clone()));
                    error
                }
            },
        };
        let reason = failure.to_string();
        let lookup = match cached.value {
            Some((_, quota)) => QuotaLookup::Stale { quota, reason },
            None => QuotaLookup::Unknown { name, reason },
        };
        QuotaReading {
            lookup,
            error: Some(failure),
        }
    }
}

impl SdkBackend {
    /// GetServiceQuota; on NoSuchResourceException, GetAWSDefaultServiceQuota (aws-semantics.md §5.1).
    /// The quota code is found by name through ListServiceQuotas, then ListAWSDefaultServiceQuotas.
    async fn resolve_quota(&self, name: &str) -> Result<Quota, AwsError> {
        let code = self.quota_code(name).await?;
        let applied = self
            .call(SQ, "GetServiceQuota", || {
                self.quotas
                    .get_service_quota()
                    .service_code(QUOTA_SERVICE_CODE)
                    .quota_code(&code)
                    .send()
            })
            .await;
        let (value, source) = match applied {
            Ok(out) => (out.quota().and_then(|q| q.value()), QuotaSource::Applied),
            Err(e) if e.class == ErrorClass::NotFound => {
                let out = self
                    .call(SQ, "GetAWSDefaultServiceQuota", || {
                        self.quotas
                            .get_aws_default_service_quota()
                            .service_code(QUOTA_SERVICE_CODE)
                            .quota_code(&code)
                            .send()
                    })
                    .await?;
                (out.quota().and_then(|q| q.value()), QuotaSource::Default)
            }
            Err(e) => return Err(e),
        };
        let value = value.ok_or_else(|| {
            AwsError::local(
                ErrorClass::Recoverable,
                "GetServiceQuota",
                "NoValue",
                format!("Service Quotas returned no value for {name} ({code})"),
            )
        })?;
        Ok(Quota {
            name: name.to_string(),
            code,
            value,
            source,
        })
    }

    async fn quota_code(&self, name: &str) -> Result<String, AwsError> {
        if let Some(code) = self.quota_codes.lock().expect("quota cache lock").get(name) {
            return Ok(code.clone());
        }
        let found = match self.find_code(name, false).await? {
            Some(code) => Some(code),
            None => self.find_code(name, true).await?,
        };
        let code = found.ok_or_else(|| {
            AwsError::local(
                ErrorClass::Terminal,
                "ListServiceQuotas",
                "NoSuchQuota",
                format!("no Service Quota named '{name}' in service {QUOTA_SERVICE_CODE}: check spec.instanceType"),
            )
        })?;
        self.quota_codes
            .lock()
            .expect("quota cache lock")
            .insert(name.to_string(), code.clone());
        Ok(code)
    }

    /// Pages through ListServiceQuotas (or ListAWSDefaultServiceQuotas); caches every code seen.
    async fn find_code(&self, name: &str, defaults: bool) -> Result<Option<String>, AwsError> {
        let mut token: Option<String> = None;
        loop {
            // The two list operations differ only in their request and output types.
            macro_rules! page {
                ($operation:literal, $method:ident) => {{
                    let out = self
                        .call(SQ, $operation, || {
                            self.quotas
                                .$method()
                                .service_code(QUOTA_SERVICE_CODE)
                                .max_results(100)
                                .set_next_token(token.clone())
                                .send()
                        })
                        .await?;
                    (out.quotas().to_vec(), out.next_token().map(str::to_string))
                }};
            }
            let (quotas, next) = if defaults {
                page!(
                    "ListAWSDefaultServiceQuotas",
                    list_aws_default_service_quotas
                )
            } else {
                page!("ListServiceQuotas", list_service_quotas)
            };
            let mut cache = self.quota_codes.lock().expect("quota cache lock");
            for q in &quotas {
                if let (Some(n), Some(c)) = (q.quota_name(), q.quota_code()) {
                    cache.insert(n.to_string(), c.to_string());
                }
            }
            if let Some(code) = cache.get(name) {
                return Ok(Some(code.clone()));
            }
            drop(cache);
            token = next.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(None);
            }
        }
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
        tags: None,
    }
}
