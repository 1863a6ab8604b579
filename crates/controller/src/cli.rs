//! The command line: the `asyncscale` binary's arguments, logging, and which command runs.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands::args::ManifestArgs;
use crate::commands::run::RunArgs;
use crate::commands::sim::SimCommand;
use crate::commands::simulate::SimulateArgs;
use crate::commands::{apply, crd, delete, plan, run, sim, simulate};

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
    pub command: Command,
}

#[derive(ValueEnum, Clone, Debug)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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

/// Logs to stderr. Without RUST_LOG: warnings only for the one-shot commands, whose output is the
/// report; the controller also says what it is doing (started, leader, cache synced, stopping),
/// a few lines in its life, so that `kubectl logs` of a healthy controller is not empty.
pub fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Run(_) => {
            "warn,asyncscale_controller=info,asyncscale_engine=info,asyncscale_aws=info"
        }
        // The SDK's own warnings about its credentials chain repeat, in Rust's debug notation,
        // what the one-shot commands say once in words.
        _ => "warn,aws_config=error",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    // Colours only for a person at a terminal, not in a file, a pipe or `kubectl logs`.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Crd => crd::run(),
        Command::Plan(args) => plan::run(args).await,
        Command::Apply(args) => apply::run(args).await,
        Command::Delete(args) => delete::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Simulate(args) => simulate::run(args).await,
        Command::Sim { command } => sim::run(command).await,
    }
}
