//! The AWS side of asyncscale: the backend port, its AWS SDK adapter, and the engine that runs
//! observe → plan → apply → status against any backend. Knows nothing of Kubernetes.

pub mod calls;
pub mod engine;
pub mod error;
pub mod pool;
pub mod port;
pub mod sdk;

pub use calls::{CallCounter, CallKey};
pub use engine::{
    ConvergeMode, ConvergeReport, Fence, Intent, RemoveReport, converge, observe, remove,
};
pub use error::{AwsError, ErrorClass};
pub use pool::{BackendSource, SdkBackendPool, SingleBackend};
pub use port::{AutoscalingBackend, QuotaReading};
pub use sdk::{AwsOptions, AwsTimeouts, SdkBackend};
