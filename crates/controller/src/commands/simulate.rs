//! `asyncscale simulate`: replay a load through AWS's scaling rules against the configuration
//! asyncscale would apply for a manifest, and report what the endpoint would do.

use std::process::ExitCode;

use clap::Args;

use asyncscale_sim::model::assumptions::Assumptions;
use asyncscale_sim::model::load::{LoadPart, LoadProfile, parse_time};
use asyncscale_sim::model::report;
use asyncscale_sim::{SimError, quotas::parse_quota_flag};

use super::args::Output;
use crate::manifests::read_all;
use crate::simulate::{SimulateError, SimulationOptions, Without, simulate};

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Manifest file(s); every resource becomes an endpoint of one simulated account.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    files: Vec<String>,
    /// Requests to replay: burst:N@T and rate:R/m@T1-T2, comma-separated (times: 90s, 5m, 2h).
    #[arg(long, value_parser = LoadProfile::parse)]
    load: LoadProfile,
    /// How much time to simulate (1m to 7 days).
    #[arg(long, default_value = "2h", value_parser = simulated_duration)]
    duration: f64,
    /// The account's instance quota, e.g. ml.g4dn.xlarge=4 (repeatable). Without it, AWS's default
    /// for the type is enforced, as in a new account (ml.g4dn.xlarge: 4; most GPU types: 0).
    #[arg(long = "quota", value_name = "TYPE=N", value_parser = quota_flag)]
    quotas: Vec<String>,
    /// Instances of a type that other endpoints already use, counted against the quota (repeatable).
    #[arg(long = "other-usage", value_name = "TYPE=N", value_parser = quota_flag)]
    other_usage: Vec<String>,
    /// Leave out a part of asyncscale's setup, as a setup made by hand often does (repeatable).
    #[arg(long, value_enum)]
    without: Vec<Without>,
    /// Time between two visits of the controller: the quota of the endpoints with quota.policy
    /// Share (the default) is split again at each.
    #[arg(long, default_value = "60s", value_parser = visit_interval)]
    resync: f64,
    /// Requests one instance finishes a minute.
    #[arg(long, default_value = "6/m", value_parser = per_minute)]
    throughput: f64,
    /// Instances in service at the start (default: minCapacity).
    #[arg(long)]
    initial_instances: Option<u32>,
    /// Time from a scale-out until the instance serves (an assumption; default 7m).
    #[arg(long, value_parser = parse_time)]
    provisioning: Option<f64>,
    /// Change a modelling assumption, NAME=VALUE (repeatable; listed in text output).
    #[arg(long = "assume", value_name = "NAME=VALUE", value_parser = assumption)]
    assume: Vec<String>,
    /// When the simulated clock starts (RFC 3339, e.g. 2026-12-01T07:00:00Z; default: now). The
    /// load's times count from it, and spec.schedules run on it.
    #[arg(long, value_parser = start_time)]
    start: Option<k8s_openapi::jiff::Timestamp>,
    /// Write an SVG chart of backlog and instances over time.
    #[arg(long, value_name = "FILE")]
    chart: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// `--start`: an RFC 3339 time.
fn start_time(text: &str) -> Result<k8s_openapi::jiff::Timestamp, String> {
    text.parse()
        .map_err(|_| format!("{text:?}: expected an RFC 3339 time, e.g. 2026-12-01T07:00:00Z"))
}

/// `ml.g4dn.xlarge=4`, checked and kept as written.
fn quota_flag(text: &str) -> Result<String, SimError> {
    parse_quota_flag(text).map(|_| text.to_string())
}

/// `NAME=VALUE` of a known assumption, checked and kept as written.
fn assumption(text: &str) -> Result<String, SimError> {
    Assumptions::default().set(text).map(|()| text.to_string())
}

/// The longest simulation: a week of simulated minutes takes seconds, a longer one says nothing
/// a week does not.
const LONGEST_SIMULATION_S: f64 = 7.0 * 24.0 * 3600.0;

/// A `--duration` from one minute (one CloudWatch period) to a week.
fn simulated_duration(text: &str) -> Result<f64, String> {
    let seconds = parse_time(text).map_err(|e| e.to_string())?;
    if !(60.0..=LONGEST_SIMULATION_S).contains(&seconds) {
        return Err(format!(
            "{text:?}: simulate from 1m (one CloudWatch period) to 168h (7 days)"
        ));
    }
    Ok(seconds)
}

/// A `--resync` from 10 s to an hour: the controller's visits, each a full split of the quota.
fn visit_interval(text: &str) -> Result<f64, String> {
    let seconds = parse_time(text).map_err(|e| e.to_string())?;
    if !(10.0..=3600.0).contains(&seconds) {
        return Err(format!("{text:?}: a resync from 10s to 1h"));
    }
    Ok(seconds)
}

/// `6/m`: requests a minute.
fn per_minute(text: &str) -> Result<f64, String> {
    text.strip_suffix("/m")
        .and_then(|r| r.parse().ok())
        .filter(|r: &f64| r.is_finite() && *r > 0.0)
        .ok_or_else(|| format!("{text:?}: expected requests a minute, e.g. 6/m"))
}

pub async fn run(args: SimulateArgs) -> ExitCode {
    match simulate_and_report(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn simulate_and_report(args: SimulateArgs) -> Result<ExitCode, SimulateError> {
    if let Some(start) = args
        .load
        .parts
        .iter()
        .map(|p| match p {
            LoadPart::Burst { at_s, .. } => *at_s,
            LoadPart::Rate { from_s, .. } => *from_s,
        })
        .find(|start| *start >= args.duration)
    {
        return Err(SimulateError::Usage(format!(
            "--load starts a part at {start}s, at or after the end of --duration ({}s): lengthen --duration or move the load",
            args.duration
        )));
    }
    let resources = read_all(&args.files)
        .map_err(|problems| SimulateError::Manifests(problems.join("\nerror: ")))?;
    let mut assumptions = Assumptions::default();
    if let Some(p) = args.provisioning {
        assumptions.provisioning_delay_s = p;
    }
    for a in &args.assume {
        assumptions.set(a)?;
    }
    let options = SimulationOptions {
        resources: resources.into_iter().map(|(_, p)| p.resource).collect(),
        load: args.load.clone(),
        duration_s: args.duration,
        quotas: args.quotas.clone(),
        other_usage: args.other_usage.clone(),
        without: args.without.clone(),
        throughput_per_minute: args.throughput,
        initial_instances: args.initial_instances,
        assumptions,
        resync_s: args.resync,
        record_timeline: args.output == Output::Text || args.chart.is_some(),
        start: args.start.unwrap_or_else(k8s_openapi::jiff::Timestamp::now),
    };
    let result = simulate(options).await?;
    if let Some(path) = &args.chart {
        let svg = report::chart_svg(&result.world.endpoints[0])?;
        std::fs::write(path, svg).map_err(|source| SimulateError::Chart {
            path: path.clone(),
            source,
        })?;
    }
    if args.output == Output::Json {
        // Each endpoint with what asyncscale wrote for it (the quota share's MaxCapacity changes
        // included); the top level is the first endpoint, as before there were several.
        let endpoints: Vec<serde_json::Value> = result
            .summaries
            .iter()
            .zip(&result.applied)
            .map(|(summary, applied)| {
                let mut endpoint = serde_json::to_value(summary).expect("json");
                endpoint["configuration_applied"] = serde_json::json!(applied);
                endpoint
            })
            .collect();
        let mut top = endpoints[0].clone();
        top["endpoints"] = serde_json::json!(endpoints);
        println!("{}", serde_json::to_string_pretty(&top).expect("json"));
        return Ok(ExitCode::SUCCESS);
    }
    println!("Assumptions (change with --assume NAME=VALUE):");
    for (name, value, source) in result.world.assumptions.describe() {
        println!("  {name} = {value}  ({source})");
    }
    for ((endpoint, summary), applied) in result
        .world
        .endpoints
        .iter()
        .zip(&result.summaries)
        .zip(&result.applied)
    {
        println!("\n== {} ({})", summary.endpoint, endpoint.resource_id);
        println!("configuration applied to the simulated account:");
        for change in applied {
            println!("  {change}");
        }
        println!("\n{}", report::timeline_text(endpoint));
        let secs = |v: Option<f64>| {
            v.map_or("never".to_string(), |s| {
                if s < 0.0 {
                    // A scheduled pre-warm asked for it before anyone did.
                    format!(
                        "{:.0} s ({:.1} min) before the first request",
                        -s,
                        -s / 60.0
                    )
                } else {
                    format!("{s:.0} s ({:.1} min)", s / 60.0)
                }
            })
        };
        println!("summary:");
        println!(
            "  time to first instance requested: {}",
            secs(summary.time_to_first_instance_s)
        );
        println!(
            "  time to first instance in service: {}",
            secs(summary.time_to_first_in_service_s)
        );
        println!(
            "  peak instances in service: {} (desired: {})",
            summary.peak_instances, summary.peak_desired_instances
        );
        println!("  queue drained at: {}", secs(summary.drained_at_s));
        println!(
            "  back to zero instances at: {}",
            secs(summary.scaled_to_zero_at_s)
        );
        println!("  instance-minutes: {}", summary.instance_minutes);
        println!(
            "  requests arrived / processed: {} / {}",
            summary.requests_arrived, summary.requests_processed
        );
        println!(
            "  failed scaling activities: {}",
            summary.failed_activity_count
        );
        for w in &summary.warnings {
            println!("  warning: {w}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
