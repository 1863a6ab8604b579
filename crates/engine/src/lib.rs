//! The engine every caller runs: observe → plan → apply → status for one resource, against any
//! backend that implements the [`port`]. The CLI (`plan`/`apply`/`delete`), the controller and
//! `simulate` all run exactly this; the AWS SDK adapter (`asyncscale-aws`) and the simulated
//! account sit behind the port. Knows nothing of Kubernetes clients or the AWS SDK.
#![forbid(unsafe_code)]

pub mod calls;
pub mod converge;
pub mod endpoints;
pub mod error;
pub mod fleet;
pub mod port;
pub mod source;

pub use calls::{CallCounter, CallKey};
pub use converge::{
    ConvergeMode, ConvergeReport, Fence, Intent, OwnershipCheck, QuotaPeer, RemoveReport, converge,
    departing_quota_peers, observe, quota_peers, remove,
};
pub use error::{AwsError, ErrorClass, ErrorKind};
pub use fleet::{
    EndpointMemory, FleetChange, FleetConfig, FleetSource, FleetStats, FleetView, Held,
};
pub use port::{AutoscalingBackend, Holding, Page, QuotaReading, Sighting};
pub use source::{AssumedRole, BackendSource, Place, Placement, SingleBackend};
