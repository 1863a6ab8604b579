//! The request budget: a token bucket per AWS API, region and account, shared by every backend
//! of a process, so that bursts of reconciles wait for their turn instead of being throttled.
//!
//! AWS's request limits are per account, region and API (docs/aws-behaviour.md §2.6, §4.5, §5.3), so
//! there is one bucket per (region, service, operation). A read never takes a write's token: the
//! writes of CloudWatch and Service Quotas have buckets of their own, as in AWS. A throttle that
//! still happens (another client of the account spent the budget) is retried by the SDK with
//! backoff, as before.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use asyncscale_engine::CallCounter;

/// A sustained rate and the burst allowed on top of an idle second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApiRate {
    pub per_second: f64,
    pub burst: u32,
}

impl ApiRate {
    pub const fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }
}

/// Which calls a rate applies to: one operation of a service, or (operation `*`) each operation
/// of the service that has no rate of its own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiSelector {
    pub service: String,
    pub operation: String,
}

/// AWS's documented limits where there are some, and cautious guesses where there are none.
/// Each bucket is per operation, as AWS's limits are, and holds one token less than AWS's: a
/// request the network delays then cannot arrive in the same instant as the next one and push
/// AWS's bucket over.
pub const DEFAULT_RATES: &[(&str, &str, ApiRate)] = &[
    // CloudWatch, per Region (docs/aws-behaviour.md §4.5): DescribeAlarms 9 TPS, PutMetricAlarm and
    // DeleteAlarms 3 TPS. The tag calls have no published figure: the lowest documented rate.
    ("cloudwatch", "DescribeAlarms", ApiRate::new(9.0, 8)),
    ("cloudwatch", "PutMetricAlarm", ApiRate::new(3.0, 2)),
    ("cloudwatch", "DeleteAlarms", ApiRate::new(3.0, 2)),
    ("cloudwatch", "*", ApiRate::new(3.0, 2)),
    // Service Quotas (§5.3): "5 rps, plus a burst of 5", "10 rps, plus a burst of 10"; read as a
    // bucket of that size, the cautious reading.
    ("service-quotas", "GetServiceQuota", ApiRate::new(5.0, 4)),
    (
        "service-quotas",
        "GetAWSDefaultServiceQuota",
        ApiRate::new(5.0, 4),
    ),
    ("service-quotas", "ListServiceQuotas", ApiRate::new(10.0, 9)),
    (
        "service-quotas",
        "ListAWSDefaultServiceQuotas",
        ApiRate::new(10.0, 9),
    ),
    ("service-quotas", "*", ApiRate::new(5.0, 4)),
    // Application Auto Scaling publishes no per-API rate (§2.6): a guess, override with
    // --aws-rate when AWS throttles below it.
    ("application-autoscaling", "*", ApiRate::new(10.0, 9)),
    // SageMaker publishes no per-API rate either (its quotas page lists none for Describe* or
    // List*): the same guess.
    ("sagemaker", "*", ApiRate::new(10.0, 9)),
];

/// Cheap to clone; clones share the buckets.
#[derive(Clone)]
pub struct RequestBudget {
    inner: Arc<Inner>,
}

/// One API's token bucket, and the queue of requests waiting for it.
struct Bucket {
    limiter: DefaultDirectRateLimiter,
    queue: tokio::sync::Mutex<()>,
}

/// Region, service, operation.
type BucketKey = (String, &'static str, &'static str);

struct Inner {
    rates: BTreeMap<ApiSelector, ApiRate>,
    buckets: Mutex<BTreeMap<BucketKey, Arc<Bucket>>>,
    /// No bucket at all (tests of other things).
    unlimited: bool,
}

impl std::fmt::Debug for RequestBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBudget")
            .field("rates", &self.inner.rates)
            .field("unlimited", &self.inner.unlimited)
            .finish()
    }
}

impl Default for RequestBudget {
    fn default() -> Self {
        Self::with_overrides(&[])
    }
}

impl RequestBudget {
    /// The default rates, each replaced by the override for the same selector.
    pub fn with_overrides(overrides: &[(ApiSelector, ApiRate)]) -> Self {
        let mut rates: BTreeMap<ApiSelector, ApiRate> = DEFAULT_RATES
            .iter()
            .map(|(service, operation, rate)| {
                (
                    ApiSelector {
                        service: (*service).into(),
                        operation: (*operation).into(),
                    },
                    *rate,
                )
            })
            .collect();
        rates.extend(overrides.iter().cloned());
        Self::from_rates(rates, false)
    }

    /// Sends every request at once.
    pub fn unlimited() -> Self {
        Self::from_rates(BTreeMap::new(), true)
    }

    fn from_rates(rates: BTreeMap<ApiSelector, ApiRate>, unlimited: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                rates,
                buckets: Mutex::new(BTreeMap::new()),
                unlimited,
            }),
        }
    }

    /// The rate that applies to one operation: its own, else its service's `*`; none when the
    /// rate is 0 (unlimited) or nothing matches.
    pub fn rate(&self, service: &str, operation: &str) -> Option<ApiRate> {
        if self.inner.unlimited {
            return None;
        }
        let lookup = |operation: &str| {
            self.inner.rates.get(&ApiSelector {
                service: service.into(),
                operation: operation.into(),
            })
        };
        lookup(operation)
            .or_else(|| lookup("*"))
            .copied()
            .filter(|r| r.per_second > 0.0)
    }

    /// Waits until one request to `operation` of `service` in `place` (an account and region:
    /// AWS's rates are per account and region) fits the budget, and records the wait in `calls`.
    pub async fn acquire(
        &self,
        place: &str,
        service: &'static str,
        operation: &'static str,
        calls: &CallCounter,
    ) {
        let Some(bucket) = self.bucket(place, service, operation) else {
            return;
        };
        let started = Instant::now();
        // First come, first served: tokio's Mutex queues its waiters in order, so under a burst
        // no request waits much longer than its place in the queue (governor alone wakes every
        // waiter at once and lets a lucky one through, which can starve another past
        // --aws-call-timeout).
        let _turn = bucket.queue.lock().await;
        if bucket.limiter.check().is_ok() {
            return;
        }
        bucket.limiter.until_ready().await;
        calls.record_wait(service, operation, started.elapsed());
    }

    fn bucket(
        &self,
        place: &str,
        service: &'static str,
        operation: &'static str,
    ) -> Option<Arc<Bucket>> {
        let rate = self.rate(service, operation)?;
        let mut buckets = self.inner.buckets.lock().expect("budget lock");
        let bucket = buckets
            .entry((place.to_string(), service, operation))
            .or_insert_with(|| {
                let period = Duration::from_secs_f64(1.0 / rate.per_second);
                let burst = NonZeroU32::new(rate.burst.max(1)).expect("burst at least 1");
                let quota = Quota::with_period(period)
                    .expect("a positive rate has a positive period")
                    .allow_burst(burst);
                Arc::new(Bucket {
                    limiter: RateLimiter::direct(quota),
                    queue: tokio::sync::Mutex::new(()),
                })
            });
        Some(bucket.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_uses_its_own_rate_then_its_services_then_none() {
        let budget = RequestBudget::with_overrides(&[(
            ApiSelector {
                service: "application-autoscaling".into(),
                operation: "DescribeScalingPolicies".into(),
            },
            ApiRate::new(2.0, 1),
        )]);
        assert_eq!(
            budget.rate("cloudwatch", "DescribeAlarms"),
            Some(ApiRate::new(9.0, 8))
        );
        assert_eq!(
            budget.rate("cloudwatch", "TagResource"),
            Some(ApiRate::new(3.0, 2))
        );
        assert_eq!(
            budget.rate("application-autoscaling", "DescribeScalingPolicies"),
            Some(ApiRate::new(2.0, 1))
        );
        assert_eq!(
            budget.rate("application-autoscaling", "PutScalingPolicy"),
            Some(ApiRate::new(10.0, 9))
        );
        assert_eq!(budget.rate("sts", "GetCallerIdentity"), None);
        assert_eq!(
            RequestBudget::unlimited().rate("cloudwatch", "DescribeAlarms"),
            None
        );
    }

    #[tokio::test]
    async fn a_burst_past_the_bucket_waits_at_the_rate_and_the_wait_is_counted() {
        let calls = CallCounter::default();
        let budget = RequestBudget::with_overrides(&[(
            ApiSelector {
                service: "cloudwatch".into(),
                operation: "PutMetricAlarm".into(),
            },
            ApiRate::new(20.0, 2),
        )]);
        let started = Instant::now();
        for _ in 0..6 {
            budget
                .acquire("us-east-1", "cloudwatch", "PutMetricAlarm", &calls)
                .await;
        }
        // Two at once, then four at 20 a second: at least 200 ms.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
        let waited = calls.waited()[&("cloudwatch", "PutMetricAlarm")];
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        // Another region has a bucket of its own: its first request does not wait.
        budget
            .acquire("eu-west-1", "cloudwatch", "PutMetricAlarm", &calls)
            .await;
        assert_eq!(calls.waited()[&("cloudwatch", "PutMetricAlarm")], waited);
    }
}
