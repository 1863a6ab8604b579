//! `asyncscale sim serve`: the local AWS-compatible endpoint.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use asyncscale_sim::RandomFaults;
use asyncscale_sim::model::EndpointSpec;
use asyncscale_sim::rate_limits::{RateLimit, RateLimits};

use crate::commands::args::{ApiRateFlag, parse_api_rate, parse_role_arn};

use crate::shutdown::shutdown_signal;

#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Serve a local AWS-compatible endpoint (Application Auto Scaling, CloudWatch, Service Quotas,
    /// SageMaker's endpoint reads).
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
        /// A SageMaker asynchronous endpoint of the account, NAME=INSTANCE_TYPE (variant
        /// AllTraffic, no instances; repeatable). More with POST /_sim/endpoints.
        #[arg(long = "endpoint", value_name = "NAME=INSTANCE_TYPE", value_parser = endpoint_flag)]
        endpoints: Vec<(String, String)>,
        /// Declares the endpoint of every AsyncEndpointScaling in these manifest files (its
        /// variant and instance type, minCapacity instances), as if it had been created in
        /// SageMaker, in the account of its spec.roleArn if it names one (repeatable).
        #[arg(long = "endpoints-from", value_name = "FILE")]
        endpoints_from: Vec<String>,
        /// An IAM role STS AssumeRole grants (repeatable). Each role's account is a simulated
        /// account of its own, with the same quotas and rates, reached with the session's keys.
        /// Without any, every well-formed role ARN is granted; POST /_sim/roles declares more, with
        /// the external id a trust policy asks for.
        #[arg(long = "role", value_name = "ARN", value_parser = parse_role_arn)]
        roles: Vec<String>,
    },
}

fn endpoint_flag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, instance_type)) if !name.is_empty() && instance_type.starts_with("ml.") => {
            Ok((name.to_string(), instance_type.to_string()))
        }
        _ => Err(format!(
            "{text:?} must be NAME=INSTANCE_TYPE, e.g. sdxl-async=ml.g4dn.xlarge"
        )),
    }
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
            endpoints,
            endpoints_from,
            roles,
        } => {
            let own = asyncscale_sim::account::ACCOUNT_ID.to_string();
            let mut declared: Vec<(String, EndpointSpec)> = endpoints
                .iter()
                .map(|(name, instance_type)| {
                    (
                        own.clone(),
                        EndpointSpec::idle(name, "AllTraffic", instance_type),
                    )
                })
                .collect();
            match crate::manifests::read_all(&endpoints_from) {
                // Each in the account of its spec.roleArn.
                Ok(resources) => declared.extend(resources.into_iter().map(|(_, parsed)| {
                    let spec = parsed.resource.spec;
                    let account = spec
                        .role_arn
                        .as_deref()
                        .and_then(asyncscale_api::role_account)
                        .map_or_else(|| own.clone(), str::to_string);
                    let endpoint = EndpointSpec {
                        initial_instances: spec.min_capacity.max(0) as u32,
                        ..EndpointSpec::idle(
                            &spec.endpoint_name,
                            &spec.variant_name,
                            &spec.instance_type,
                        )
                    };
                    (account, endpoint)
                })),
                Err(problems) => {
                    for p in problems {
                        eprintln!("error: --endpoints-from: {p}");
                    }
                    return ExitCode::FAILURE;
                }
            }
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
            serve(
                listen,
                &quotas,
                &default_quotas,
                time_scale,
                limits,
                faults,
                Declared {
                    endpoints: declared,
                    roles,
                },
            )
            .await
        }
    }
}

/// What the accounts hold from the start.
struct Declared {
    /// SageMaker endpoints, each with its account's id.
    endpoints: Vec<(String, EndpointSpec)>,
    /// The roles STS grants (all when empty).
    roles: Vec<String>,
}

async fn serve(
    listen: SocketAddr,
    quotas: &[String],
    default_quotas: &[String],
    time_scale: f64,
    rate_limits: RateLimits,
    random_faults: Option<RandomFaults>,
    declared: Declared,
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
                let mut granted = server.roles.lock().expect("roles lock");
                for role in declared.roles {
                    granted.declare(role, None);
                }
            }
            // After the own account's rates are set: other accounts copy them.
            for (account, e) in declared.endpoints {
                let tenant = server.tenant(&account);
                let mut world = tenant.world.lock().expect("world lock");
                if world.endpoint_mut(&e.endpoint).is_none() {
                    world.add_endpoint(e);
                }
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
