//! One file per command, as cargo lays out its own; [`args`] holds the argument types they share.

pub mod apply;
pub mod args;
pub mod crd;
pub mod delete;
pub mod oneshot;
pub mod plan;
pub mod run;
pub mod sim;
pub mod simulate;
