//! AWS errors, classified so callers know whether to retry (back off) or wait for a spec change.

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
}

/// Codes that mean "try again later" (aws-semantics.md §2.5, §4.5, §5.1, §6.3).
const RECOVERABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ConcurrentUpdateException",
    "ConcurrentModificationException",
    "InternalServiceException",
    "InternalServiceFault",
    "InternalFailure",
    "ServiceException",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "ResourceConflict",
];

const NOT_FOUND_CODES: &[&str] = &[
    "ObjectNotFoundException",
    "ResourceNotFound",
    "ResourceNotFoundException",
    "NoSuchResourceException",
];

/// Classifies an AWS error by code, HTTP status and message.
///
/// CloudWatch throttling reaches Application Auto Scaling callers as FailedResourceAccessException
/// "... Rate exceeded ..." (aws-semantics.md §2.5), which the SDK does not retry: recoverable.
/// Any other FailedResourceAccessException (e.g. a missing cloudwatch:DescribeAlarms permission)
/// needs a person: terminal. Application Auto Scaling's LimitExceededException is a real limit.
pub fn classify(code: &str, message: &str, http_status: Option<u16>) -> ErrorClass {
    if NOT_FOUND_CODES.contains(&code) {
        return ErrorClass::NotFound;
    }
    if RECOVERABLE_CODES.contains(&code) {
        return ErrorClass::Recoverable;
    }
    if code == "FailedResourceAccessException" {
        let throttled = message.contains("Rate exceeded") || message.contains("Throttling");
        return if throttled {
            ErrorClass::Recoverable
        } else {
            ErrorClass::Terminal
        };
    }
    match http_status {
        Some(status) if status >= 500 || status == 429 => ErrorClass::Recoverable,
        _ => ErrorClass::Terminal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudwatch_throttling_behind_application_auto_scaling_is_recoverable() {
        let message = "Unable to retrieve alarms for scaling policy arn:x due to reason: Rate exceeded (Service: AmazonCloudWatch; Status Code: 400; Error Code: Throttling; Request ID: 1)";
        assert_eq!(
            classify("FailedResourceAccessException", message, Some(400)),
            ErrorClass::Recoverable
        );
        assert_eq!(
            classify(
                "FailedResourceAccessException",
                "not authorized to perform cloudwatch:DescribeAlarms",
                Some(400)
            ),
            ErrorClass::Terminal
        );
    }

    #[test]
    fn codes_and_statuses_are_classified() {
        assert_eq!(
            classify("ValidationException", "bad", Some(400)),
            ErrorClass::Terminal
        );
        assert_eq!(
            classify("LimitExceededException", "500 targets", Some(400)),
            ErrorClass::Terminal
        );
        assert_eq!(
            classify("ConcurrentUpdateException", "pending", Some(400)),
            ErrorClass::Recoverable
        );
        assert_eq!(
            classify("Throttling", "Rate exceeded", Some(400)),
            ErrorClass::Recoverable
        );
        assert_eq!(
            classify("TooManyRequestsException", "", Some(400)),
            ErrorClass::Recoverable
        );
        assert_eq!(classify("Whatever", "", Some(503)), ErrorClass::Recoverable);
        assert_eq!(
            classify("ObjectNotFoundException", "", Some(400)),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify("NoSuchResourceException", "", Some(400)),
            ErrorClass::NotFound
        );
    }
}
