//! The command line: `crd`, `plan`, `apply`, `delete` and `sim serve`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use asyncscale_api::{
    AsyncEndpointScaling, AsyncEndpointScalingStatus, DeletionPolicy, ParsedResource,
};
use std::sync::Arc;

use asyncscale_aws::{AwsOptions, AwsTimeouts, SdkBackendPool};
use asyncscale_core::status::SyncOutcome;
use asyncscale_core::{Adoption, ResourceNames};
use asyncscale_engine::{
    AutoscalingBackend, BackendSource, CallCounter, ConvergeMode, Fence, Intent, SingleBackend,
    converge, remove,
};
use asyncscale_sim::SimServer;

use crate::identity::{display_name, owner_of, wants_adoption};
use crate::run::RunArgs;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

#[derive(Parser, Debug)]
#[command(
    name = "asyncscale",
    version,
    about = "Autoscaling that works for SageMaker asynchronous inference endpoints"
)]
pub struct Cli {
    /// Log format on stderr: text for terminals, json for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(ValueEnum, Clone, Debug)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the AsyncEndpointScaling CustomResourceDefinition as YAML.
    Crd,
    /// Show what apply would change in AWS. Exit code 0: in sync; 2: changes pending; 1: error.
    Plan(ManifestArgs),
    /// Make AWS match the manifests, then print what changed and the resulting status.
    Apply(ManifestArgs),
    /// Remove what asyncscale created for the manifests (honours spec.deletionPolicy).
    Delete(ManifestArgs),
    /// Run the Kubernetes controller: watch AsyncEndpointScaling resources and converge AWS.
    Run(RunArgs),
    /// Replay a load through AWS's scaling rules against the configuration asyncscale would apply.
    Simulate(SimulateArgs),
    /// The simulated AWS account.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
}

#[derive(Subcommand, Debug)]
enum SimCommand {
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
    },
}

#[derive(Args, Debug)]
struct SimulateArgs {
    /// Manifest file(s); every resource becomes an endpoint of one simulated account.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    files: Vec<String>,
    /// Requests to replay: burst:N@T and rate:R/m@T1-T2, comma-separated (times: 90s, 5m, 2h).
    #[arg(long)]
    load: String,
    /// How much time to simulate.
    #[arg(long, default_value = "2h")]
    duration: String,
    /// The account's instance quota, e.g. ml.g4dn.xlarge=4 (repeatable). Without it nothing is enforced.
    #[arg(long = "quota", value_name = "TYPE=N")]
    quotas: Vec<String>,
    /// Instances of a type that other endpoints already use, counted against the quota (repeatable).
    #[arg(long = "other-usage", value_name = "TYPE=N")]
    other_usage: Vec<String>,
    /// Run the hand-made configuration of the field report instead (repeatable).
    #[arg(long, value_enum)]
    without: Vec<crate::simulate::Without>,
    /// Requests one instance finishes a minute.
    #[arg(long, default_value = "6/m")]
    throughput: String,
    /// Instances in service at the start (default: minCapacity).
    #[arg(long)]
    initial_instances: Option<u32>,
    /// Time from a scale-out until the instance serves (an assumption; default 7m).
    #[arg(long)]
    provisioning: Option<String>,
    /// Change a modelling assumption, NAME=VALUE (repeatable; listed in text output).
    #[arg(long = "assume", value_name = "NAME=VALUE")]
    assume: Vec<String>,
    /// Write an SVG chart of backlog and instances over time.
    #[arg(long, value_name = "FILE")]
    chart: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Args, Debug)]
struct ManifestArgs {
    /// Manifest files (YAML, several documents per file allowed); `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    files: Vec<String>,
    #[command(flatten)]
    aws: AwsArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
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
    #[arg(long, default_value = "30s", value_parser = crate::run::parse_duration)]
    aws_call_timeout: std::time::Duration,
    /// The longest one attempt of an AWS call may take before it is retried (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = crate::run::parse_duration)]
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
    ) -> Result<(Arc<dyn BackendSource>, Option<SimServer>), String> {
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
enum Output {
    Text,
    Json,
}

pub fn init_logging(format: &LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Crd => {
            print!("{}", asyncscale_api::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Plan(args) => manifests(args, Verb::Plan).await,
        Command::Apply(args) => manifests(args, Verb::Apply).await,
        Command::Delete(args) => manifests(args, Verb::Delete).await,
        Command::Run(args) => crate::run::run(args).await,
        Command::Simulate(args) => simulate_command(args).await,
        Command::Sim {
            command:
                SimCommand::Serve {
                    listen,
                    quotas,
                    default_quotas,
                    time_scale,
                },
        } => sim_serve(listen, &quotas, &default_quotas, time_scale).await,
    }
}

async fn sim_serve(
    listen: SocketAddr,
    quotas: &[String],
    default_quotas: &[String],
    time_scale: f64,
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

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Plan,
    Apply,
    Delete,
}

/// Reads every file, and only when all of them are valid does anything reach AWS.
fn read_all(files: &[String]) -> Result<Vec<(String, ParsedResource)>, Vec<String>> {
    let mut resources = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let text = if file == "-" {
            std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())
        } else {
            std::fs::read_to_string(file).map_err(|e| e.to_string())
        };
        match text {
            Err(e) => problems.push(format!("{file}: cannot read: {e}")),
            Ok(text) => match asyncscale_api::parse_manifests(file, &text) {
                Ok(parsed) => resources.extend(parsed.into_iter().map(|p| (file.clone(), p))),
                Err(e) => problems.extend(e.problems),
            },
        }
    }
    if problems.is_empty() {
        Ok(resources)
    } else {
        Err(problems)
    }
}

/// Two resources for one endpoint variant would fight over it. `default_region` is where a
/// resource without spec.region goes, so that it and an explicit `region:` of the same name are
/// seen as the same place.
fn duplicates(resources: &[(String, ParsedResource)], default_region: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<(Option<String>, String), String> = BTreeMap::new();
    for (file, parsed) in resources {
        let spec = &parsed.resource.spec;
        let region = spec
            .region
            .clone()
            .or_else(|| default_region.map(str::to_string));
        let key = (
            region,
            ResourceNames::new(&spec.endpoint_name, &spec.variant_name).resource_id,
        );
        let here = format!(
            "{file}: document {} ({})",
            parsed.document,
            display_name(&parsed.resource)
        );
        if let Some(first) = seen.insert(key.clone(), here.clone()) {
            problems.push(format!("{here}: spec.endpointName: {} is also managed by {first}; one resource per endpoint variant", key.1));
        }
    }
    problems
}

async fn manifests(args: ManifestArgs, verb: Verb) -> ExitCode {
    let resources = match read_all(&args.files) {
        Ok(r) => r,
        Err(problems) => {
            for p in problems {
                eprintln!("error: {p}");
            }
            return ExitCode::FAILURE;
        }
    };
    let calls = CallCounter::default();
    let (backends, _simulated) = match args.aws.connect(calls.clone()).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let default_region = match backends.backend(None).await {
        Ok(b) => Some(b.region().to_string()),
        Err(_) => None, // every resource without spec.region reports the missing region below
    };
    let problems = duplicates(&resources, default_region.as_deref());
    if !problems.is_empty() {
        for p in problems {
            eprintln!("error: {p}");
        }
        return ExitCode::FAILURE;
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut failed = false;
    let mut pending = false;
    let mut reports = Vec::new();
    for (_, parsed) in &resources {
        let resource = &parsed.resource;
        let backend = match backends.backend(resource.spec.region.as_deref()).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {}: {}", display_name(resource), e.message);
                failed = true;
                continue;
            }
        };
        let result = match verb {
            Verb::Delete => delete_one(backend.as_ref(), resource).await,
            Verb::Plan | Verb::Apply => converge_one(backend.as_ref(), resource, verb, &now).await,
        };
        failed |= result.failed;
        pending |= result.pending;
        if args.output == Output::Text {
            print!("{}", result.text);
        }
        reports.push(result.json);
    }
    if args.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "resources": reports })).expect("json")
        );
    }
    let writes = calls.writes();
    let calls = calls.total();
    eprintln!(
        "AWS calls: {calls} ({} reads, {writes} writes)",
        calls - writes
    );
    if failed {
        ExitCode::FAILURE
    } else if pending && verb == Verb::Plan {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

struct Outcome {
    text: String,
    json: serde_json::Value,
    failed: bool,
    pending: bool,
}

async fn converge_one(
    backend: &dyn AutoscalingBackend,
    resource: &AsyncEndpointScaling,
    verb: Verb,
    now: &Time,
) -> Outcome {
    let intent = Intent {
        spec: &resource.spec,
        owner: owner_of(resource),
        adoption: Adoption::new(wants_adoption(resource)),
        generation: resource.metadata.generation,
        fence: Fence::open(),
    };
    let mode = if verb == Verb::Plan {
        ConvergeMode::Plan
    } else {
        ConvergeMode::Apply
    };
    let report = converge(backend, &intent, mode, resource.status.as_ref(), now).await;
    // A quota that could not be read leaves MaxCapacity unconverged: that is a failure too.
    let failed = report.error.is_some()
        || !matches!(
            report.outcome,
            SyncOutcome::InSync | SyncOutcome::ChangesPending(_)
        );
    let pending = matches!(report.outcome, SyncOutcome::ChangesPending(_));
    let mut text = header(resource);
    let changes = report.plan.summaries();
    if changes.is_empty() && !failed {
        text.push_str("  in sync: no changes\n");
    } else if verb == Verb::Plan {
        changes
            .iter()
            .for_each(|c| text.push_str(&format!("  {c}\n")));
    } else {
        text.push_str(&progress(&changes, report.applied, report.error.is_some()));
    }
    text.push_str(&status_text(&report.status));
    let json = json!({
        "name": display_name(resource),
        "changes": changes,
        "applied": report.applied,
        "status": report.status,
    });
    Outcome {
        text,
        json,
        failed,
        pending,
    }
}

async fn delete_one(backend: &dyn AutoscalingBackend, resource: &AsyncEndpointScaling) -> Outcome {
    let mut text = header(resource);
    let retained = resource.spec.deletion_policy == DeletionPolicy::Retain;
    if retained {
        text.push_str("  deletionPolicy is Retain: the configuration stays in AWS; asyncscale only removes its ownership tags, so that another resource may adopt it\n");
    }
    let report = remove(
        backend,
        &resource.spec,
        &owner_of(resource),
        true,
        &Fence::open(),
    )
    .await;
    let changes = report.plan.summaries();
    text.push_str(&progress(&changes, report.applied, report.error.is_some()));
    if report.plan.is_empty() && report.error.is_none() {
        text.push_str("  nothing of asyncscale's remains in AWS\n");
    }
    if let Some(e) = &report.error {
        text.push_str(&format!("  error: {e}\n"));
    }
    let json = json!({
        "name": display_name(resource),
        "retained": retained,
        "changes": changes,
        "applied": report.applied,
        "error": report.error.as_ref().map(ToString::to_string),
    });
    Outcome {
        text,
        json,
        failed: report.error.is_some(),
        pending: false,
    }
}

fn header(resource: &AsyncEndpointScaling) -> String {
    let spec = &resource.spec;
    format!(
        "{} → endpoint {} variant {}\n",
        display_name(resource),
        spec.endpoint_name,
        spec.variant_name
    )
}

/// Each change with what became of it: done, FAILED (the first one not done, when an error
/// stopped the run) or skipped.
fn progress(changes: &[String], applied: usize, stopped_by_error: bool) -> String {
    let mut text = String::new();
    for (i, change) in changes.iter().enumerate() {
        let mark = match i.cmp(&applied) {
            std::cmp::Ordering::Less => "done",
            std::cmp::Ordering::Equal if stopped_by_error => "FAILED",
            _ => "skipped",
        };
        text.push_str(&format!("  {change}  [{mark}]\n"));
    }
    text
}

fn status_text(status: &AsyncEndpointScalingStatus) -> String {
    let mut text = String::from("  status:\n");
    for c in &status.conditions {
        text.push_str(&format!(
            "    {:<15} {:<8} {:<22} {}\n",
            c.type_, c.status, c.reason, c.message
        ));
    }
    if let Some(max) = status.effective_max_capacity {
        text.push_str(&format!("    effective max capacity: {max}\n"));
    }
    if let Some(q) = &status.quota {
        match (q.value, &q.unknown_reason) {
            (Some(v), _) => text.push_str(&format!(
                "    quota: {} ({}) = {v} ({})\n",
                q.name,
                q.code.as_deref().unwrap_or("?"),
                q.source.as_deref().unwrap_or("?")
            )),
            (None, Some(why)) => text.push_str(&format!("    quota: {} unknown: {why}\n", q.name)),
            _ => {}
        }
    }
    if let Some(alarm) = &status.scale_from_zero_alarm {
        text.push_str(&format!(
            "    scale-from-zero alarm: {} ({})\n",
            alarm.name,
            alarm.state.as_deref().unwrap_or("?")
        ));
    }
    if !status.foreign_policies.is_empty() {
        text.push_str(&format!(
            "    other tools' policies on the target (left alone): {}\n",
            status.foreign_policies.join(", ")
        ));
    }
    if let Some(a) = &status.last_scaling_activity {
        text.push_str(&format!(
            "    last scaling activity: {} {} {}\n",
            a.status_code,
            a.description,
            a.message.as_deref().unwrap_or("")
        ));
    }
    text
}

async fn simulate_command(args: SimulateArgs) -> ExitCode {
    match simulate_inner(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn simulate_inner(args: SimulateArgs) -> Result<ExitCode, String> {
    use asyncscale_sim::model::{assumptions::Assumptions, load, report};
    let resources = read_all(&args.files).map_err(|problems| problems.join("\nerror: "))?;
    let load = load::LoadProfile::parse(&args.load).map_err(|e| format!("--load: {e}"))?;
    let duration_s = load::parse_time(&args.duration).map_err(|e| format!("--duration: {e}"))?;
    let throughput_per_minute: f64 = args
        .throughput
        .strip_suffix("/m")
        .and_then(|r| r.parse().ok())
        .filter(|r: &f64| *r > 0.0)
        .ok_or_else(|| {
            format!(
                "--throughput {:?}: expected requests a minute, e.g. 6/m",
                args.throughput
            )
        })?;
    let mut assumptions = Assumptions::default();
    if let Some(p) = &args.provisioning {
        assumptions.provisioning_delay_s =
            load::parse_time(p).map_err(|e| format!("--provisioning: {e}"))?;
    }
    for a in &args.assume {
        assumptions.set(a).map_err(|e| format!("--assume: {e}"))?;
    }
    for q in args.quotas.iter().chain(&args.other_usage) {
        asyncscale_sim::quotas::parse_quota_flag(q)?;
    }
    let options = crate::simulate::SimulationOptions {
        resources: resources.into_iter().map(|(_, p)| p.resource).collect(),
        load,
        duration_s,
        quotas: args.quotas.clone(),
        other_usage: args.other_usage.clone(),
        without: args.without.clone(),
        throughput_per_minute,
        initial_instances: args.initial_instances,
        assumptions,
    };
    let result = crate::simulate::simulate(options).await?;
    if let Some(path) = &args.chart {
        let svg = report::chart_svg(&result.world.endpoints[0])?;
        std::fs::write(path, svg).map_err(|e| format!("--chart {path}: {e}"))?;
    }
    if args.output == Output::Json {
        let mut top = serde_json::to_value(&result.summaries[0]).expect("json");
        top["endpoints"] = serde_json::to_value(&result.summaries).expect("json");
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
                format!("{s:.0} s ({:.1} min)", s / 60.0)
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
            summary.failed_activities.len()
        );
        for w in &summary.warnings {
            println!("  warning: {w}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
