//! `asyncscale apply`: Make AWS match the manifests, then print what changed and the resulting status.

use std::process::ExitCode;

use super::args::ManifestArgs;
use super::oneshot::{self, Verb};

pub async fn run(args: ManifestArgs) -> ExitCode {
    oneshot::run(args, Verb::Apply).await
}
