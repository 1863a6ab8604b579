//! `asyncscale`: autoscaling for SageMaker asynchronous inference endpoints.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use asyncscale_controller::cli;
use clap::Parser;
use clap::error::ErrorKind;

#[tokio::main]
async fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // A usage error is an error (exit 1): `plan` keeps exit 2 for "changes pending".
        Err(e) => {
            let _ = e.print();
            return ExitCode::FAILURE;
        }
    };
    cli::init_logging(&args);
    cli::run(args).await
}
