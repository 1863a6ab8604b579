//! AWS errors as the engine sees them: classified, so callers know whether to retry (back off) or
//! wait for a spec change. Which AWS codes fall in which class is the adapter's knowledge
//! (`asyncscale_aws::classify`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Bad input or a real limit: retrying the same request cannot succeed.
    Terminal,
    /// Throttling, concurrent updates, 5xx, timeouts, connection failures: retry with backoff.
    Recoverable,
    /// The resource does not exist.
    NotFound,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Terminal => "terminal",
            ErrorClass::Recoverable => "recoverable",
            ErrorClass::NotFound => "not_found",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct AwsError {
    pub class: ErrorClass,
    /// `application-autoscaling`, `cloudwatch` or `service-quotas`.
    pub service: &'static str,
    pub operation: &'static str,
    /// AWS's error code, e.g. `ValidationException`, or `dispatch`/`timeout` for transport failures.
    pub code: String,
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} failed: {}: {}",
            self.service, self.operation, self.code, self.message
        )
    }
}

impl AwsError {
    /// An error raised by asyncscale itself before or instead of a request (no AWS call made).
    pub fn local(class: ErrorClass, operation: &'static str, code: &str, message: String) -> Self {
        Self {
            class,
            service: "asyncscale",
            operation,
            code: code.to_string(),
            message,
        }
    }

    /// STS did not give the credentials of the resource's role (refused, throttled, or did not
    /// answer): nothing of the resource could be read or written.
    pub fn is_role_refusal(&self) -> bool {
        self.service == "sts" && self.operation == "AssumeRole"
    }
}
