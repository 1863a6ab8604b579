//! The controller crate's end-to-end tests, in one test binary (one link instead of five on a
//! two-core machine): the CLI against the local AWS endpoint, the controller against the API
//! emulator and the real kubectl, the reconciler against kube-rs's mocked API server, the
//! simulator's trap scenarios, and the deploy manifests.

mod accounts;
mod cli;
mod cluster;
mod deploy;
mod quota_sweep;
mod reconciler;
mod simulation;
mod support;
