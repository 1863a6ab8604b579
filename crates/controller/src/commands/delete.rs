//! `asyncscale delete`: Remove (or, with deletionPolicy Retain, release) what asyncscale created for the manifests.

use std::process::ExitCode;

use super::args::ManifestArgs;
use super::oneshot::{self, Verb};

pub async fn run(args: ManifestArgs) -> ExitCode {
    oneshot::run(args, Verb::Delete).await
}
