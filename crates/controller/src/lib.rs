//! The `asyncscale` binary: the CLI and the Kubernetes controller. Business rules live in
//! `asyncscale-core`, the engine in `asyncscale-engine`; this crate wires them to Kubernetes, AWS
//! and the terminal.

pub mod admin;
pub mod cli;
pub mod commands;
pub mod endpoint_cache;
pub mod events;
pub mod identity;
pub mod leader;
pub mod manifests;
pub mod memory;
pub mod metrics;
pub mod reconciler;
pub mod shutdown;
pub mod simulate;
