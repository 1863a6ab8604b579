//! A simulated AWS account for asyncscale: today the state and API of Application Auto Scaling,
//! CloudWatch alarms and Service Quotas behind a local AWS-compatible endpoint (`sim serve`).
#![forbid(unsafe_code)]

pub mod account;
pub mod aws_error;
pub mod call_log;
pub mod cbor;
pub mod error;
pub mod failures;
pub mod model;
pub mod quotas;
pub mod rate_limits;
pub mod sagemaker;
pub mod server;
pub mod sts;
pub mod sweep;
pub mod validation;

pub use account::{
    Account, Activity, ApiError, DEFAULT_REGION, Fault, QuotaTable, RandomFaults,
    TargetTrackingAlarms,
};
pub use error::SimError;
pub use server::{SimServer, start, start_with_clock};

/// Builds the quota table from `--quota TYPE=N` (applied values) and `--default-quota TYPE=N`.
pub fn quota_table(applied: &[String], defaults: &[String]) -> Result<QuotaTable, SimError> {
    let mut table = QuotaTable::default();
    table.defaults.extend(quotas::catalogue());
    for flag in applied {
        let (name, value) = quotas::parse_quota_flag(flag)?;
        table.applied.insert(name, value);
    }
    for flag in defaults {
        let (name, value) = quotas::parse_quota_flag(flag)?;
        table.defaults.insert(name, value);
    }
    Ok(table)
}
