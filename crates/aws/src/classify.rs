//! Which AWS error codes mean what: the adapter's knowledge of AWS, mapped onto the engine's
//! [`ErrorClass`].

use asyncscale_engine::ErrorClass;

/// Codes that mean "slow down" (docs/aws-behaviour.md §6.4's throttling list, the ones these APIs use).
const THROTTLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
];

/// Whether AWS refused a request for its rate, directly or (Application Auto Scaling reading
/// CloudWatch) wrapped in FailedResourceAccessException "Rate exceeded".
pub fn is_throttle(code: &str, message: &str) -> bool {
    THROTTLE_CODES.contains(&code)
        || (code == "FailedResourceAccessException" && wraps_throttle(message))
}

fn wraps_throttle(message: &str) -> bool {
    message.contains("Rate exceeded") || message.contains("Throttling")
}

/// Codes that mean "try again later" (docs/aws-behaviour.md §2.5, §4.9, §5.5, §6.4).
const RECOVERABLE_CODES: &[&str] = &[
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
/// "... Rate exceeded ..." (docs/aws-behaviour.md §2.16), which the SDK does not retry (§6.4):
/// recoverable.
/// Any other FailedResourceAccessException (e.g. a missing cloudwatch:DescribeAlarms permission)
/// needs a person: terminal. Application Auto Scaling's LimitExceededException is a real limit.
pub fn classify(code: &str, message: &str, http_status: Option<u16>) -> ErrorClass {
    if NOT_FOUND_CODES.contains(&code) {
        return ErrorClass::NotFound;
    }
    if THROTTLE_CODES.contains(&code) || RECOVERABLE_CODES.contains(&code) {
        return ErrorClass::Recoverable;
    }
    if code == "FailedResourceAccessException" {
        return if wraps_throttle(message) {
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
