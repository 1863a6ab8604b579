//! The pure heart of asyncscale: no I/O, no async, no Kubernetes client, no AWS SDK.
//!
//! - [`desired`]: spec (+ quota) → the AWS configuration that avoids both traps.
//! - [`plan`]: (desired, observed) → an ordered list of changes; removal plans for delete.
//! - [`status`]: (observed, outcome) → status and conditions.
//! - [`share`]: one instance quota split between the endpoints that use its instance type.
//!
//! The AWS-shaped types in [`model`] are what the backend port speaks.
#![forbid(unsafe_code)]

pub mod conditions;
pub mod desired;
pub mod endpoint;
pub mod model;
pub mod names;
pub mod notices;
pub mod plan;
pub mod scheduled;
pub mod share;
pub mod status;

pub use desired::{DesireError, Desired, MaxSource, QuotaShare, desire};
pub use endpoint::{EndpointProblem, check_endpoint};
pub use model::*;
pub use names::{Owner, ResourceNames};
pub use plan::{
    Adoption, AlarmActionArn, Blocked, Change, Ownership, Plan, plan_apply, plan_delete,
};
