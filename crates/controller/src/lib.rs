//! The `asyncscale` binary: the CLI and the Kubernetes controller. Business rules live in
//! `asyncscale-core`; this crate wires them to Kubernetes, AWS and the terminal.

pub mod cli;
pub mod identity;
pub mod leader;
pub mod metrics;
pub mod reconciler;
pub mod run;
pub mod simulate;
