//! Argument types the commands share: where AWS is, manifest files, output format, durations.

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use asyncscale_aws::{AwsOptions, AwsTimeouts, SdkBackendPool};
use asyncscale_engine::{BackendSource, CallCounter, SingleBackend};
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
}

#[derive(Args, Debug, Clone)]
pub struct AwsArgs {
    /// Send every AWS call to this endpoint (an AWS-compatible local endpoint, say). Overrides AWS_ENDPOINT_URL.
    #[arg(long, value_name = "URL")]
    aws_endpoint: Option<String>,
    /// AWS region for resources without spec.region. Defaults to the environment's (AWS_REGION, profile).
    #[arg(long)]
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
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AwsTarget {
    Aws,
    Simulated,
}

impl AwsArgs {
    /// Where backends come from, and the in-process account to keep alive when simulated.
    pub async fn connect(
        &self,
        calls: CallCounter,
    ) -> Result<(Arc<dyn BackendSource>, Option<SimServer>), crate::simulate::SimulateError> {
        match self.target {
            AwsTarget::Aws => Ok((Arc::new(SdkBackendPool::new(self.options(), calls)), None)),
            AwsTarget::Simulated => {
                let (server, backend) = crate::simulate::in_process_aws(&[], calls).await?;
                tracing::info!(endpoint = %server.url(), "using an in-process simulated AWS account");
                Ok((Arc::new(SingleBackend(Arc::new(backend))), Some(server)))
            }
        }
    }

    pub fn options(&self) -> AwsOptions {
        AwsOptions {
            region: self.region.clone(),
            endpoint_url: self.aws_endpoint.clone(),
            timeouts: AwsTimeouts {
                call: self.aws_call_timeout,
                attempt: self.aws_attempt_timeout.min(self.aws_call_timeout),
            },
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
