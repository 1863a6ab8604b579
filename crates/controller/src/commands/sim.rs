//! `asyncscale sim serve`: the local AWS-compatible endpoint.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use asyncscale_sim::RandomFaults;
use asyncscale_sim::rate_limits::{RateLimit, RateLimits};

use crate::commands::args::{ApiRateFlag, parse_api_rate};

use crate::shutdown::shutdown_signal;

#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Serve a local AWS-compatible endpoint (Application Auto Scaling, CloudWatch, Service Quotas).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4566")]
        listen: SocketAddr,
        /// The account's applied instance quota, e.g. ml.g4dn.xlarge=4 (repeatable).
        #[arg(long = "quota", value_name = "TYPE=N")]
        quotas: Vec<String>,
        /// AWS's default instance quota, used when no applied value exists (repeatable).
        #[arg(long = "default-quota", value_name = "TYPE=N")]
        default_quotas: Vec<String>,
        /// Simulated seconds per real second for the scaling model's clock; 0 moves it only
        /// through POST /_sim/advance.
        #[arg(long, default_value_t = 0.0)]
        time_scale: f64,
        /// `aws` enforces AWS's published per-API request rates (CloudWatch DescribeAlarms 9 a
        /// second, PutMetricAlarm and DeleteAlarms 3; Service Quotas GetServiceQuota 5,
        /// ListServiceQuotas 10), answering each service's throttling error; `none` (the default)
        /// enforces none.
        #[arg(long, value_enum, default_value_t = RateLimitPreset::None)]
        rate_limits: RateLimitPreset,
        /// Enforces one more rate, or replaces one, as SERVICE:OPERATION=RATE[/BURST] (repeatable;
        /// OPERATION `*`: each operation of the service without its own; RATE 0 lifts it).
        /// Application Auto Scaling publishes no rates, so it has none unless set here.
        #[arg(long = "rate-limit", value_name = "SERVICE:OPERATION=RATE[/BURST]", value_parser = parse_api_rate)]
        rate_limit: Vec<ApiRateFlag>,
        /// Answers this share of all requests (0 to 1) with a passing error, in turn the
        /// service's throttling error, its internal error (500) and 503, as AWS does on a bad
        /// day; for testing that retries and status hold up.
        #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
        fault_rate: f64,
        /// Seed of the --fault-rate draw, so that a run can be repeated.
        #[arg(long, default_value_t = 1)]
        fault_seed: u64,
    },
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|f| (0.0..=1.0).contains(f))
        .ok_or_else(|| format!("{text:?} must be a number from 0 to 1, e.g. 0.3 for 30 %"))
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimitPreset {
    None,
    Aws,
}

pub async fn run(command: SimCommand) -> ExitCode {
    match command {
        SimCommand::Serve {
            listen,
            quotas,
            default_quotas,
            time_scale,
            rate_limits,
            rate_limit,
            fault_rate,
            fault_seed,
        } => {
            let mut limits = match rate_limits {
                RateLimitPreset::None => RateLimits::default(),
                RateLimitPreset::Aws => RateLimits::aws_published(),
            };
            for flag in &rate_limit {
                let limit = RateLimit {
                    per_second: flag.per_second,
                    burst: flag.burst,
                };
                limits.set(&flag.service, &flag.operation, limit);
            }
            let faults = (fault_rate > 0.0).then(|| RandomFaults::new(fault_rate, fault_seed));
            serve(listen, &quotas, &default_quotas, time_scale, limits, faults).await
        }
    }
}

async fn serve(
    listen: SocketAddr,
    quotas: &[String],
    default_quotas: &[String],
    time_scale: f64,
    rate_limits: RateLimits,
    random_faults: Option<RandomFaults>,
) -> ExitCode {
    if !(0.0..=86_400.0).contains(&time_scale) {
        eprintln!("error: --time-scale must be between 0 and 86400");
        return ExitCode::FAILURE;
    }
    let table = match asyncscale_sim::quota_table(quotas, default_quotas) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match asyncscale_sim::start_with_clock(listen, table, time_scale).await {
        Ok(server) => {
            if !rate_limits.is_empty() {
                eprintln!("enforcing request rates (a second/burst): {rate_limits}");
            }
            if let Some(faults) = &random_faults {
                eprintln!(
                    "answering {:.0} % of requests with passing errors (throttling, 500, 503)",
                    faults.rate() * 100.0
                );
            }
            {
                let mut account = server.account.lock().expect("account lock");
                account.rate_limits = rate_limits;
                account.random_faults = random_faults;
            }
            eprintln!(
                "asyncscale local AWS endpoint listening on {}",
                server.url()
            );
            tokio::select! {
                _ = server.wait() => {}
                _ = shutdown_signal() => {}
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            ExitCode::FAILURE
        }
    }
}
