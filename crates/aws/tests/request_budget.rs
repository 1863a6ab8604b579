//! The request budget against the local AWS endpoint enforcing AWS's published rates (`sim serve
//! --rate-limits aws`): a burst of concurrent calls waits for its turn and AWS throttles none of
//! them; the same burst sent without a budget is throttled.

use std::sync::Arc;

use asyncscale_aws::{RequestBudget, SdkBackend};
use asyncscale_engine::{AutoscalingBackend, ErrorKind};
use asyncscale_sim::rate_limits::{RateLimit, RateLimits};
use asyncscale_sim::{QuotaTable, SimServer};

mod support;
use support::{backend_at, desired};

async fn rate_limited_endpoint() -> SimServer {
    let server = asyncscale_sim::start("127.0.0.1:0".parse().unwrap(), QuotaTable::default())
        .await
        .unwrap();
    let mut limits = RateLimits::aws_published();
    // AWS publishes none for Application Auto Scaling; as strict as the budget's guess.
    limits.set(
        "application-autoscaling",
        "*",
        RateLimit {
            per_second: 10.0,
            burst: 10,
        },
    );
    server.account.lock().unwrap().rate_limits = limits;
    server
}

async fn backend(server: &SimServer, budget: RequestBudget) -> Arc<SdkBackend> {
    Arc::new(backend_at(&server.url()).await.with_budget(budget))
}

/// `n` scale-from-zero alarms with distinct names, and their owner tags.
fn numbered_alarms(n: usize) -> Vec<(asyncscale_core::MetricAlarm, asyncscale_core::Tags)> {
    let d = desired("{targetValue: 5}");
    (0..n)
        .map(|i| {
            let mut alarm =
                d.scale_from_zero.as_ref().unwrap().alarm_with_action(
                    "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:x",
                );
            alarm.name = format!("{}-{i}", alarm.name);
            (alarm, d.owner.tags())
        })
        .collect()
}

/// Eight endpoints' alarms written and read back, and their targets read, all at once. Returns
/// the calls that failed (after the SDK's own retries).
async fn burst(aws: Arc<SdkBackend>) -> u64 {
    let mut tasks = Vec::new();
    for (i, (alarm, tags)) in numbered_alarms(8).into_iter().enumerate() {
        let aws = aws.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = u64::from(aws.put_alarm(&alarm, &tags).await.is_err());
            failed += u64::from(aws.describe_alarm(&alarm.name).await.is_err());
            for _ in 0..3 {
                let rid = format!("endpoint/e{i}/variant/AllTraffic");
                failed += u64::from(aws.describe_target(&rid).await.is_err());
            }
            failed
        }));
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await.unwrap();
    }
    failed
}

fn throttled(server: &SimServer) -> u64 {
    let account = server.account.lock().unwrap();
    account
        .throttled
        .values()
        .flat_map(|ops| ops.values())
        .sum()
}

#[tokio::test]
async fn a_burst_within_the_budget_is_never_throttled_and_waits_instead() {
    let server = rate_limited_endpoint().await;
    let aws = backend(&server, RequestBudget::default()).await;
    assert_eq!(burst(aws.clone()).await, 0, "no call failed");
    assert_eq!(
        throttled(&server),
        0,
        "{:?}",
        server.account.lock().unwrap().throttled
    );
    let waited = aws.calls().waited();
    assert!(
        waited.contains_key(&("cloudwatch", "PutMetricAlarm")),
        "eight alarm writes at 3 a second wait: {waited:?}"
    );
    assert_eq!(aws.calls().count(|op| op == "PutMetricAlarm"), 8);
}

#[tokio::test]
async fn the_same_burst_without_a_budget_is_throttled_and_counted() {
    let server = rate_limited_endpoint().await;
    let aws = backend(&server, RequestBudget::unlimited()).await;
    let failed = burst(aws.clone()).await;
    assert!(
        throttled(&server) > 0,
        "AWS's rates refuse an unpaced burst"
    );
    let throttles: u64 = aws
        .calls()
        .snapshot()
        .iter()
        .filter(|(k, _)| k.outcome == "throttled")
        .map(|(_, n)| n)
        .sum();
    // The SDK retries throttled requests (standard retry mode); a call still throttled after
    // its attempts fails and is counted with the outcome `throttled`.
    assert_eq!(throttles, failed);
    assert!(aws.calls().waited().is_empty(), "nothing waited");
}

#[tokio::test]
async fn a_budget_slower_than_the_call_timeout_fails_the_call_instead_of_hanging() {
    let server = rate_limited_endpoint().await;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region("us-east-1")
        .endpoint_url(server.url())
        .credentials_provider(aws_sdk_applicationautoscaling::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(std::time::Duration::from_millis(300))
                .build(),
        )
        .load()
        .await;
    let slow = RequestBudget::with_overrides(&[(
        asyncscale_aws::ApiSelector {
            service: "application-autoscaling".into(),
            operation: "DescribeScalableTargets".into(),
        },
        asyncscale_aws::ApiRate::new(0.01, 1),
    )]);
    let aws = SdkBackend::from_config(&config, asyncscale_engine::CallCounter::default())
        .unwrap()
        .with_budget(slow);
    let rid = "endpoint/e/variant/AllTraffic";
    aws.describe_target(rid).await.unwrap();
    let error = aws.describe_target(rid).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::RequestBudget);
    assert_eq!(error.class, asyncscale_engine::ErrorClass::Recoverable);
    assert!(
        error.message.contains("--aws-call-timeout"),
        "{}",
        error.message
    );
    assert_eq!(aws.calls().total(), 1, "the second request was never sent");
}

/// Sixteen writers queued on PutMetricAlarm (3 a second, a burst of 2) get through at that rate,
/// not slower: the first two at once, then one every third of a second.
#[tokio::test]
async fn queued_writers_get_the_whole_rate() {
    let server = rate_limited_endpoint().await;
    let aws = backend(&server, RequestBudget::default()).await;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for (alarm, tags) in numbered_alarms(32) {
        let aws = aws.clone();
        tasks.push(tokio::spawn(async move {
            aws.put_alarm(&alarm, &tags).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let took = started.elapsed().as_secs_f64();
    // (32 - 2) / 3 = 10 s at the full rate.
    assert!((9.0..11.5).contains(&took), "{took:.1} s for 32 alarms");
}
