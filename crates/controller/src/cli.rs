//! The command line: `crd`, `plan`, `apply`, `delete` and `sim serve`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use asyncscale_api::{
    AsyncEndpointScaling, AsyncEndpointScalingStatus, DeletionPolicy, ParsedResource,
};
use asyncscale_aws::{
    AutoscalingBackend, AwsOptions, BackendSource, CallCounter, ConvergeMode, Intent,
    SdkBackendPool, converge, remove,
};
use asyncscale_core::ResourceNames;
use asyncscale_core::status::SyncOutcome;

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
    },
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
}

impl AwsArgs {
    pub fn options(&self) -> AwsOptions {
        AwsOptions {
            region: self.region.clone(),
            endpoint_url: self.aws_endpoint.clone(),
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
        Command::Sim {
            command:
                SimCommand::Serve {
                    listen,
                    quotas,
                    default_quotas,
                },
        } => sim_serve(listen, &quotas, &default_quotas).await,
    }
}

async fn sim_serve(listen: SocketAddr, quotas: &[String], default_quotas: &[String]) -> ExitCode {
    let table = match asyncscale_sim::quota_table(quotas, default_quotas) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match asyncscale_sim::start(listen, table).await {
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
    // Two resources for one endpoint variant would fight over it.
    let mut seen: BTreeMap<(Option<String>, String), String> = BTreeMap::new();
    for (file, parsed) in &resources {
        let spec = &parsed.resource.spec;
        let key = (
            spec.region.clone(),
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
    if problems.is_empty() {
        Ok(resources)
    } else {
        Err(problems)
    }
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
    let backends = SdkBackendPool::new(args.aws.options(), CallCounter::default());
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
    let calls = backends.calls().total();
    let writes = backends.calls().writes();
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
        adopt: wants_adoption(resource),
        generation: resource.metadata.generation,
    };
    let mode = if verb == Verb::Plan {
        ConvergeMode::Plan
    } else {
        ConvergeMode::Apply
    };
    let report = converge(backend, &intent, mode, resource.status.as_ref(), now).await;
    let failed = !matches!(
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
    if resource.spec.deletion_policy == DeletionPolicy::Retain {
        text.push_str("  deletionPolicy is Retain: AWS is left as it is\n");
        return Outcome {
            text,
            json: json!({ "name": display_name(resource), "retained": true, "changes": [] }),
            failed: false,
            pending: false,
        };
    }
    let report = remove(backend, &resource.spec, &owner_of(resource), true).await;
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
