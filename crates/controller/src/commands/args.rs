//! Argument types the commands share: where AWS is, manifest files, output format, durations.

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use asyncscale_aws::{
    ApiRate, ApiSelector, AwsOptions, AwsTimeouts, RequestBudget, SdkBackendPool,
};
use asyncscale_engine::{AssumedRole, BackendSource, CallCounter, Fence, SingleBackend};
use asyncscale_sim::SimServer;

#[derive(Args, Debug)]
pub struct ManifestArgs {
    /// Manifest files (YAML, several documents per file allowed); `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<String>,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Read AWS in bulk (a few pages per region for the whole account) when the manifests hold at
    /// least this many resources; below it, per resource (five reads each), which is cheaper
    /// for a few.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub bulk_from: u32,
    /// Where a bulk run keeps SageMaker's endpoint descriptions for the next (default
    /// `$XDG_CACHE_HOME/asyncscale`, else `~/.cache/asyncscale`): a run then describes only the
    /// endpoints that changed since. Losing it only costs reads.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<std::path::PathBuf>,
    /// Describe every endpoint again, and keep nothing for the next run.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Args, Debug, Clone)]
pub struct AwsArgs {
    /// Send every AWS call to this endpoint (an AWS-compatible local endpoint, say). Overrides AWS_ENDPOINT_URL.
    #[arg(long, value_name = "URL", value_parser = parse_endpoint_url)]
    aws_endpoint: Option<String>,
    /// AWS region for resources without spec.region. Defaults to the environment's (AWS_REGION, profile).
    #[arg(long, value_parser = parse_region)]
    region: Option<String>,
    /// `simulated` talks to an in-process simulated account instead of AWS.
    #[arg(long = "aws", value_enum, default_value_t = AwsTarget::Aws)]
    target: AwsTarget,
    /// The longest one AWS call may take, the SDK's retries included (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    aws_call_timeout: std::time::Duration,
    /// The longest one attempt of an AWS call may take before it is retried (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    aws_attempt_timeout: std::time::Duration,
    /// The request budget of one API, as SERVICE:OPERATION=RATE[/BURST] (requests a second; BURST
    /// defaults to one second's worth; RATE 0 sends without waiting), repeatable. OPERATION `*`
    /// sets each operation of the service without a rate of its own. Defaults: AWS's documented
    /// rates (cloudwatch:DescribeAlarms=9, cloudwatch:PutMetricAlarm=3, cloudwatch:DeleteAlarms=3,
    /// cloudwatch:*=3, service-quotas:GetServiceQuota=5, service-quotas:ListServiceQuotas=10,
    /// service-quotas:*=5) and, where AWS publishes none, application-autoscaling:*=10. The
    /// budget is per process: lower it when other tools share the account.
    #[arg(long = "aws-rate", value_name = "SERVICE:OPERATION=RATE[/BURST]", value_parser = parse_api_rate)]
    aws_rates: Vec<ApiRateFlag>,
    /// IAM role to assume through STS (with this process's credentials) for resources without
    /// spec.roleArn. Changing it moves those resources to the role's account: set it before they
    /// are created, or give each a spec.roleArn.
    #[arg(long, value_name = "ARN", value_parser = parse_role_arn)]
    default_role_arn: Option<String>,
}

pub(crate) fn parse_role_arn(text: &str) -> Result<String, String> {
    if asyncscale_api::validate::is_role_arn(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not an IAM role ARN such as arn:aws:iam::123456789012:role/asyncscale"
        ))
    }
}

/// One `--aws-rate` (or `sim serve --rate-limit`) value.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRateFlag {
    pub service: String,
    pub operation: String,
    pub per_second: f64,
    pub burst: u32,
}

/// The operations asyncscale calls (and the local endpoint serves), by service: a rate for any
/// other name would never apply, so a typo is refused rather than ignored.
const RATE_OPERATIONS: &[(&str, &[&str])] = &[
    (
        "application-autoscaling",
        &[
            "RegisterScalableTarget",
            "DescribeScalableTargets",
            "DeregisterScalableTarget",
            "PutScalingPolicy",
            "DescribeScalingPolicies",
            "DeleteScalingPolicy",
            "DescribeScalingActivities",
            "TagResource",
            "UntagResource",
            "ListTagsForResource",
        ],
    ),
    (
        "cloudwatch",
        &[
            "PutMetricAlarm",
            "DescribeAlarms",
            "DeleteAlarms",
            "SetAlarmState",
            "TagResource",
            "UntagResource",
            "ListTagsForResource",
        ],
    ),
    (
        "service-quotas",
        &[
            "GetServiceQuota",
            "GetAWSDefaultServiceQuota",
            "ListServiceQuotas",
            "ListAWSDefaultServiceQuotas",
        ],
    ),
    (
        "sagemaker",
        &[
            "DescribeEndpoint",
            "DescribeEndpointConfig",
            "ListEndpoints",
        ],
    ),
];

/// The slowest rate accepted: one request in 100 seconds (0 means no limit).
const SLOWEST_RATE: f64 = 0.01;

/// `cloudwatch:DescribeAlarms=9`, `application-autoscaling:*=10/20`.
pub fn parse_api_rate(text: &str) -> Result<ApiRateFlag, String> {
    let usage = "use SERVICE:OPERATION=RATE[/BURST], e.g. cloudwatch:DescribeAlarms=9 or application-autoscaling:*=10/20";
    let (selector, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: no '='; {usage}"))?;
    let (service, operation) = selector
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: no ':' between service and operation; {usage}"))?;
    let Some((_, operations)) = RATE_OPERATIONS.iter().find(|(s, _)| *s == service) else {
        let services: Vec<&str> = RATE_OPERATIONS.iter().map(|(s, _)| *s).collect();
        return Err(format!(
            "{text:?}: unknown service {service:?}; use one of {}",
            services.join(", ")
        ));
    };
    if operation != "*" && !operations.contains(&operation) {
        return Err(format!(
            "{text:?}: {operation:?} is not an operation name of {service} that asyncscale calls; use '*' or one of {}",
            operations.join(", ")
        ));
    }
    let (rate, burst) = match value.split_once('/') {
        Some((rate, burst)) => (rate, Some(burst)),
        None => (value, None),
    };
    let per_second: f64 = rate
        .parse()
        .ok()
        .filter(|r: &f64| *r == 0.0 || (SLOWEST_RATE..=100_000.0).contains(r))
        .ok_or_else(|| {
            format!(
                "{text:?}: the rate {rate:?} must be 0 (no limit) or a number of requests a second from {SLOWEST_RATE} to 100000"
            )
        })?;
    let burst = match burst {
        Some(b) => b
            .parse::<u32>()
            .ok()
            .filter(|b| (1..=100_000).contains(b))
            .ok_or_else(|| {
                format!("{text:?}: the burst {b:?} must be a whole number from 1 to 100000")
            })?,
        None => (per_second.ceil() as u32).max(1),
    };
    Ok(ApiRateFlag {
        service: service.to_string(),
        operation: operation.to_string(),
        per_second,
        burst,
    })
}

/// How long a reconcile waits for its role's AssumeRole before it backs off: a normal one takes
/// well under a second.
const CONTROLLER_BUILD_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AwsTarget {
    Aws,
    Simulated,
}

impl AwsArgs {
    /// The AWS endpoint URL every call goes to, when one is given.
    pub fn endpoint_url(&self) -> Option<&str> {
        self.aws_endpoint.as_deref()
    }

    /// Where backends come from, and the in-process account to keep alive when simulated.
    /// With `strict_credentials` (one-shot commands), a configured credentials source that fails
    /// stops the command too; the controller only warns, as the source may recover (a Pod
    /// Identity agent still starting). Every write any backend sends passes `fence` first, asked
    /// right before it is sent (a replica's leadership; open for one-shot commands).
    pub async fn connect(
        &self,
        calls: CallCounter,
        strict_credentials: bool,
        fence: Fence,
    ) -> Result<(Arc<dyn BackendSource>, Option<SimServer>), crate::simulate::SimulateError> {
        match self.target {
            AwsTarget::Aws => {
                // Said once, before anything is read, instead of in every condition.
                match asyncscale_aws::check_credentials(&self.options()).await {
                    Ok(()) => {}
                    Err(problem @ asyncscale_aws::CredentialsProblem::Failed(_))
                        if !strict_credentials =>
                    {
                        tracing::warn!(%problem, "AWS calls will fail until credentials load");
                    }
                    Err(problem) => {
                        return Err(crate::simulate::SimulateError::Usage(problem.to_string()));
                    }
                }
                let options = AwsOptions {
                    write_fence: fence,
                    ..self.options()
                };
                let mut pool = SdkBackendPool::new(options, calls);
                if !strict_credentials {
                    // The controller: a hung role must not hold reconcile slots.
                    pool = pool.with_build_wait(CONTROLLER_BUILD_WAIT);
                }
                Ok((Arc::new(pool), None))
            }
            AwsTarget::Simulated => {
                let (server, backend) = crate::simulate::in_process_aws(&[], calls).await?;
                let backend = backend.with_write_fence(fence);
                tracing::info!(endpoint = %server.url(), "using an in-process simulated AWS account");
                Ok((Arc::new(SingleBackend(Arc::new(backend))), Some(server)))
            }
        }
    }

    pub fn options(&self) -> AwsOptions {
        AwsOptions {
            default_role: self.default_role_arn.clone().map(AssumedRole::new),
            credentials: None,
            write_fence: Fence::open(),
            region: self.region.clone(),
            endpoint_url: self.aws_endpoint.clone(),
            timeouts: AwsTimeouts {
                call: self.aws_call_timeout,
                attempt: self.aws_attempt_timeout.min(self.aws_call_timeout),
            },
            budget: RequestBudget::with_overrides(
                &self
                    .aws_rates
                    .iter()
                    .map(|flag| {
                        (
                            ApiSelector {
                                service: flag.service.clone(),
                                operation: flag.operation.clone(),
                            },
                            ApiRate::new(flag.per_second, flag.burst),
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// `http://127.0.0.1:4566` or `https://host[:port][/path]`: what the SDK can send to.
pub fn parse_endpoint_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("{text:?} is not a URL ({e}); use e.g. http://127.0.0.1:4566"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(format!(
            "{text:?} needs http:// or https:// and a host, e.g. http://127.0.0.1:4566"
        ));
    }
    Ok(text.to_string())
}

/// A region name as AWS spells them (us-east-1, eu-central-2, us-gov-west-1).
pub fn parse_region(text: &str) -> Result<String, String> {
    if asyncscale_api::validate::is_region(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not an AWS region name; use one such as us-east-1 or eu-west-1"
        ))
    }
}

/// `90s`, `5m`, `2h` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 60s, 5m or 1h"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use ms, s, m or h"
            ));
        }
    };
    if seconds <= 0.0 {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A `--resync`: each one reads AWS for every resource of the account, so at least a second.
pub fn parse_resync(text: &str) -> Result<Duration, String> {
    let resync = parse_duration(text)?;
    if resync < Duration::from_secs(1) {
        return Err(format!(
            "{text:?} is too short: each resync reads AWS for every resource; use 1s or more (60s by default)"
        ));
    }
    Ok(resync)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resync_is_at_least_a_second() {
        assert_eq!(parse_resync("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_resync("1ms").unwrap_err().contains("use 1s or more"));
        assert!(parse_resync("0.5s").is_err());
    }

    #[test]
    fn durations_read_like_kubectl_flags() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn endpoints_and_regions_are_checked_before_any_call() {
        assert!(parse_endpoint_url("http://127.0.0.1:4566").is_ok());
        assert!(parse_endpoint_url("https://monitoring.us-east-1.amazonaws.com").is_ok());
        assert!(
            parse_endpoint_url("notaurl")
                .unwrap_err()
                .contains("http://")
        );
        assert!(parse_endpoint_url("ftp://host").is_err());
        assert!(parse_endpoint_url("").is_err());
        assert!(parse_region("us-gov-west-1").is_ok());
        assert!(parse_region("").unwrap_err().contains("not an AWS region"));
        assert!(parse_region("us east").is_err());
    }

    #[test]
    fn api_rates_name_the_service_the_operation_and_the_fix() {
        let flag = parse_api_rate("cloudwatch:DescribeAlarms=9").unwrap();
        assert_eq!((flag.per_second, flag.burst), (9.0, 9));
        let flag = parse_api_rate("application-autoscaling:*=2.5/20").unwrap();
        assert_eq!(
            (flag.operation.as_str(), flag.per_second, flag.burst),
            ("*", 2.5, 20)
        );
        assert_eq!(
            parse_api_rate("cloudwatch:PutMetricAlarm=0.5")
                .unwrap()
                .burst,
            1
        );
        assert!(
            parse_api_rate("ec2:DescribeInstances=5")
                .unwrap_err()
                .contains("unknown service")
        );
        assert!(
            parse_api_rate("cloudwatch=5")
                .unwrap_err()
                .contains("no ':'")
        );
        assert!(
            parse_api_rate("cloudwatch:Bogus=3")
                .unwrap_err()
                .contains("DescribeAlarms")
        );
        assert!(
            parse_api_rate("cloudwatch:DescribeAlarms=1e-300")
                .unwrap_err()
                .contains("from 0.01")
        );
        assert!(parse_api_rate("cloudwatch:DescribeAlarms=NaN").is_err());
        assert!(
            parse_api_rate("cloudwatch:Describe-Alarms=5")
                .unwrap_err()
                .contains("operation name")
        );
        assert!(
            parse_api_rate("cloudwatch:DescribeAlarms=-1")
                .unwrap_err()
                .contains("the rate")
        );
        assert!(
            parse_api_rate("cloudwatch:DescribeAlarms=5/0")
                .unwrap_err()
                .contains("the burst")
        );
        assert!(
            parse_api_rate("cloudwatch:DescribeAlarms")
                .unwrap_err()
                .contains("no '='")
        );
    }
}
