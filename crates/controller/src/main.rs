//! `asyncscale`: autoscaling for SageMaker asynchronous inference endpoints.

use std::process::ExitCode;

use asyncscale_controller::cli;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(&args.log_format);
    cli::run(args).await
}
