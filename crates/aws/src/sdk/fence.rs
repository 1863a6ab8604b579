//! The write fence at the last moment: every attempt of an AWS write (the SDK's own retries
//! included) asks the fence right before it is sent.
//!
//! The engine asks the fence before each change of a plan, but a write can wait a long time
//! between that check and the wire: for the request budget, in the SDK's retry backoff, or in a
//! process that was paused (SIGSTOP, a stalled VM) and resumes past its renew deadline. A soak
//! caught the last: a leader stopped for 20 s sent a PutMetricAlarm the moment it resumed, 23 s
//! after its last renewal, when a standby could already have taken over. Asked at transmit, a
//! replica past its deadline sends nothing; what is left is the time one request takes on the
//! wire, within the third of the Lease between the renew deadline and expiry.

use aws_sdk_applicationautoscaling::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_applicationautoscaling::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_applicationautoscaling::error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

use asyncscale_engine::Fence;

/// Whether `operation` changes anything (AWS names its reads Describe, List, Get).
pub(crate) fn is_write(operation: &str) -> bool {
    !["Describe", "List", "Get"]
        .iter()
        .any(|read| operation.starts_with(read))
}

#[derive(Debug)]
pub(crate) struct FenceAtTransmit(pub Fence);

impl Intercept for FenceAtTransmit {
    fn name(&self) -> &'static str {
        "WriteFenceAtTransmit"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Unknown operation: fenced, as a write.
        let write = cfg
            .load::<Metadata>()
            .is_none_or(|metadata| is_write(metadata.name()));
        if !write {
            return Ok(());
        }
        self.0.check().map_err(|e| e.message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::is_write;

    #[test]
    fn reads_pass_and_everything_else_is_a_write() {
        for read in ["DescribeAlarms", "ListEndpoints", "GetServiceQuota"] {
            assert!(!is_write(read), "{read}");
        }
        for write in [
            "PutMetricAlarm",
            "RegisterScalableTarget",
            "DeleteAlarms",
            "TagResource",
        ] {
            assert!(is_write(write), "{write}");
        }
    }
}
