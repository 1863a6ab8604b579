//! The engine every caller runs: observe → plan → apply → status for one resource, against any
//! backend that implements the [`port`]. The CLI (`plan`/`apply`/`delete`), the controller and
//! `simulate` all run exactly this; the AWS SDK adapter (`asyncscale-aws`) and the simulated
//! account sit behind the port. Knows nothing of Kubernetes clients or the AWS SDK.
#![forbid(unsafe_code)]

pub mod calls;
pub mod converge;
pub mod endpoints;
pub mod error;
mod execute;
pub mod fence;
pub mod fleet;
pub mod intent;
pub mod port;
pub mod reading;
pub mod share;
pub mod source;

pub use calls::{CallCounter, CallKey};
pub use converge::{
    ConvergeReport, RemoveReport, converge, observe, remove, status_without_aws,
    unreachable_outcome,
};
pub use error::{AwsError, ErrorClass, ErrorKind};
pub use fence::Fence;
pub use fleet::{
    EndpointMemory, FleetChange, FleetConfig, FleetSource, FleetStats, FleetView, Held,
};
pub use intent::{ConvergeMode, Intent, OwnershipCheck, QuotaPeer};
pub use port::{AutoscalingBackend, Holding, Page, Place, QuotaReading, QuotaReads, Sighting};
pub use reading::{OnCallReading, on_call_reading};
pub use share::{
    RaiseGuard, Sharer, SplitReading, as_peer, departing_quota_peers, quota_peers, read_split,
    share_of,
};
pub use source::{AssumedRole, BackendSource, Placement, SingleBackend};
