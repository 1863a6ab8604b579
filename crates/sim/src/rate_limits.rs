//! Per-API request rate limits, enforced the way AWS enforces them: per account, region and
//! operation, a request over the rate is refused at once with the service's throttling error
//! (docs/aws-behaviour.md §2.5, §4.5, §4.9, §5.3, §5.5), never queued.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::aws_error::ApiError;

/// A sustained rate (requests a second) and the bucket size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// AWS's published limits for the operations asyncscale uses, per Region:
/// - CloudWatch (cloudwatch_limits, §4.5): DescribeAlarms 9 TPS; PutMetricAlarm 3 TPS;
///   DeleteAlarms 3 TPS. No figure is published for TagResource, UntagResource or
///   ListTagsForResource: not limited here.
/// - Service Quotas (reference_limits, §5.3): GetServiceQuota and GetAWSDefaultServiceQuota
///   "5 rps, plus a burst of 5"; ListServiceQuotas and ListAWSDefaultServiceQuotas 10 and 10.
///   The burst is read as the bucket's size, the stricter reading.
/// - Application Auto Scaling publishes no per-API rate (§2.6): not limited unless configured.
pub const AWS_PUBLISHED: &[(&str, &str, RateLimit)] = &[
    (
        "cloudwatch",
        "DescribeAlarms",
        RateLimit {
            per_second: 9.0,
            burst: 9,
        },
    ),
    (
        "cloudwatch",
        "PutMetricAlarm",
        RateLimit {
            per_second: 3.0,
            burst: 3,
        },
    ),
    (
        "cloudwatch",
        "DeleteAlarms",
        RateLimit {
            per_second: 3.0,
            burst: 3,
        },
    ),
    (
        "service-quotas",
        "GetServiceQuota",
        RateLimit {
            per_second: 5.0,
            burst: 5,
        },
    ),
    (
        "service-quotas",
        "GetAWSDefaultServiceQuota",
        RateLimit {
            per_second: 5.0,
            burst: 5,
        },
    ),
    (
        "service-quotas",
        "ListServiceQuotas",
        RateLimit {
            per_second: 10.0,
            burst: 10,
        },
    ),
    (
        "service-quotas",
        "ListAWSDefaultServiceQuotas",
        RateLimit {
            per_second: 10.0,
            burst: 10,
        },
    ),
];

/// Limits by (service, operation), where operation `*` stands for every operation of the
/// service without a limit of its own; one bucket per region, service and operation.
#[derive(Default)]
pub struct RateLimits {
    limits: BTreeMap<(String, String), RateLimit>,
    buckets: BTreeMap<(String, String, String), DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.limits.iter()).finish()
    }
}

/// `cloudwatch:DescribeAlarms=9/9, ...`, as the flags write them.
impl std::fmt::Display for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for ((service, operation), limit) in &self.limits {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(
                f,
                "{service}:{operation}={}/{}",
                limit.per_second, limit.burst
            )?;
        }
        Ok(())
    }
}

impl RateLimits {
    /// AWS's published limits.
    pub fn aws_published() -> Self {
        let mut limits = Self::default();
        for (service, operation, limit) in AWS_PUBLISHED {
            limits.set(service, operation, *limit);
        }
        limits
    }

    /// Sets (or with a rate of 0, lifts) the limit of one operation, or of a service's `*`.
    pub fn set(&mut self, service: &str, operation: &str, limit: RateLimit) {
        let key = (service.to_string(), operation.to_string());
        if limit.per_second > 0.0 {
            self.limits.insert(key, limit);
        } else {
            self.limits.remove(&key);
        }
        self.buckets.clear();
    }

    /// The same limits with full buckets: another account's (AWS's rates are per account).
    pub fn fresh(&self) -> Self {
        Self {
            limits: self.limits.clone(),
            buckets: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// Takes a token for one request, or answers the service's throttling error.
    pub fn admit(&mut self, region: &str, service: &str, operation: &str) -> Result<(), ApiError> {
        let limit = self
            .limits
            .get(&(service.to_string(), operation.to_string()))
            .or_else(|| self.limits.get(&(service.to_string(), "*".to_string())));
        let Some(limit) = limit.copied() else {
            return Ok(());
        };
        let bucket = self
            .buckets
            .entry((region.into(), service.into(), operation.into()))
            .or_insert_with(|| {
                let period = Duration::from_secs_f64(1.0 / limit.per_second);
                let burst = NonZeroU32::new(limit.burst.max(1)).expect("burst at least 1");
                let quota = Quota::with_period(period)
                    .expect("a positive rate has a positive period")
                    .allow_burst(burst);
                RateLimiter::direct(quota)
            });
        bucket.check().map_err(|_| throttled(service))
    }
}

/// Each service's own throttling error: Application Auto Scaling's ThrottlingException "Rate
/// exceeded" (§2.5), CloudWatch's Throttling "Rate exceeded" (§4.9, as AAS quotes it, §2.16),
/// Service Quotas' TooManyRequestsException "Due to throttling, the request was denied." (§5.5),
/// and SageMaker's ThrottlingException (the error AWS's knowledge center names for SageMaker API
/// calls, "sagemaker-python-throttlingexception"); all 400.
pub(crate) fn throttled(service: &str) -> ApiError {
    let (code, message) = match service {
        "cloudwatch" => ("Throttling", "Rate exceeded"),
        "service-quotas" => (
            "TooManyRequestsException",
            "Due to throttling, the request was denied.",
        ),
        _ => ("ThrottlingException", "Rate exceeded"),
    };
    ApiError {
        code: code.into(),
        message: message.into(),
        status: 400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_the_bucket_is_throttled_per_region_and_operation() {
        let mut limits = RateLimits::aws_published();
        let admitted = (0..20)
            .filter(|_| {
                limits
                    .admit("us-east-1", "cloudwatch", "PutMetricAlarm")
                    .is_ok()
            })
            .count();
        assert_eq!(admitted, 3, "a bucket of three, refilled at 3 a second");
        let error = limits
            .admit("us-east-1", "cloudwatch", "PutMetricAlarm")
            .unwrap_err();
        assert_eq!((error.code.as_str(), error.status), ("Throttling", 400));
        assert!(
            limits
                .admit("eu-west-1", "cloudwatch", "PutMetricAlarm")
                .is_ok()
        );
        assert!(
            limits
                .admit("us-east-1", "cloudwatch", "DescribeAlarms")
                .is_ok()
        );
        assert!(
            (0..100).all(|_| limits
                .admit(
                    "us-east-1",
                    "application-autoscaling",
                    "DescribeScalableTargets"
                )
                .is_ok()),
            "no published limit, none enforced"
        );
        limits.set(
            "application-autoscaling",
            "*",
            RateLimit {
                per_second: 1.0,
                burst: 1,
            },
        );
        assert!(
            limits
                .admit("us-east-1", "application-autoscaling", "PutScalingPolicy")
                .is_ok()
        );
        let error = limits
            .admit("us-east-1", "application-autoscaling", "PutScalingPolicy")
            .unwrap_err();
        assert_eq!(error.code, "ThrottlingException");
        let sq = (0..10)
            .filter_map(|_| {
                limits
                    .admit("us-east-1", "service-quotas", "GetServiceQuota")
                    .err()
            })
            .next()
            .unwrap();
        assert_eq!(sq.code, "TooManyRequestsException");
    }
}
