//! `asyncscale plan`: Show what apply would change in AWS: exit 0 in sync, 2 changes pending, 1 error.

use std::process::ExitCode;

use super::args::ManifestArgs;
use super::oneshot::{self, Verb};

pub async fn run(args: ManifestArgs) -> ExitCode {
    oneshot::run(args, Verb::Plan).await
}
