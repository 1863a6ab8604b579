//! The AWS SDK adapter of the engine's backend port: Application Auto Scaling, CloudWatch and
//! Service Quotas through the official SDK crates, with call counting, retries of what the SDK
//! does not retry, timeouts and the classification of AWS's error codes. Knows nothing of
//! Kubernetes.
#![forbid(unsafe_code)]

pub mod budget;
pub mod classify;
pub mod pool;
pub mod sdk;

pub use budget::{ApiRate, ApiSelector, RequestBudget};
pub use classify::classify;
pub use pool::SdkBackendPool;
pub use sdk::{
    AwsOptions, AwsTimeouts, CredentialsProblem, NO_CREDENTIALS_HELP, SdkBackend, check_credentials,
};
