//! `asyncscale sim serve`: the local AWS-compatible endpoint.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Subcommand;

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
    },
}

pub async fn run(command: SimCommand) -> ExitCode {
    match command {
        SimCommand::Serve {
            listen,
            quotas,
            default_quotas,
            time_scale,
        } => serve(listen, &quotas, &default_quotas, time_scale).await,
    }
}

async fn serve(
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
