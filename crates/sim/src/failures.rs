//! The ways one AWS call fails, in each service's own words: what a single-failure sweep injects
//! at each operation and position of a run (`Fault::after`). The codes are those the services'
//! API references list for their operations ("Errors" and "Common Errors" sections):
//! Application Auto Scaling (ThrottlingException is not listed per operation but is what its
//! rate limit answers), CloudWatch (Throttling, InternalServiceFault's code
//! InternalServiceError, ResourceNotFound), Service Quotas (TooManyRequestsException,
//! ServiceException, NoSuchResourceException, AccessDeniedException) and SageMaker (a missing
//! endpoint is a ValidationException "Could not find endpoint ...").

use crate::Fault;

/// How one call fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Failure {
    /// The service's throttling error on every attempt the SDK makes (ten in a row).
    Throttled,
    /// The service's internal error (500) on every attempt.
    Internal,
    /// Permission denied (400 or CloudWatch's 403), once.
    AccessDenied,
    /// The service's "not found" answer, once.
    NotFound,
    /// The answer held this many seconds, once: past a call timeout shorter than that, the
    /// client gives up while the request is still served, late.
    Held(f64),
}

impl Failure {
    /// Each way, with answers held `held_seconds`.
    pub fn all(held_seconds: f64) -> [Failure; 5] {
        [
            Failure::Throttled,
            Failure::Internal,
            Failure::AccessDenied,
            Failure::NotFound,
            Failure::Held(held_seconds),
        ]
    }

    pub fn label(self) -> &'static str {
        match self {
            Failure::Throttled => "throttled",
            Failure::Internal => "500",
            Failure::AccessDenied => "access denied",
            Failure::NotFound => "not found",
            Failure::Held(_) => "held past timeout",
        }
    }

    /// The fault for the call of `operation` (of `service`, as the local endpoint counts calls)
    /// after `position` calls of it were let through.
    pub fn fault(self, service: &str, operation: &str, position: u32) -> Fault {
        let on = Fault::on(operation).service(service).after(position);
        match self {
            Failure::Throttled => {
                let code = match service {
                    "cloudwatch" => "Throttling",
                    "service-quotas" => "TooManyRequestsException",
                    _ => "ThrottlingException",
                };
                on.failing(code, 400).times(10)
            }
            Failure::Internal => {
                let code = match service {
                    "cloudwatch" => "InternalServiceError",
                    "service-quotas" => "ServiceException",
                    "sagemaker" => "InternalFailure",
                    _ => "InternalServiceException",
                };
                on.failing(code, 500).times(10)
            }
            Failure::AccessDenied => match service {
                "cloudwatch" => on.failing("AccessDenied", 403).times(1),
                _ => on.failing("AccessDeniedException", 400).times(1),
            },
            Failure::NotFound => match service {
                "cloudwatch" => on.failing("ResourceNotFound", 404).times(1),
                "service-quotas" => on.failing("NoSuchResourceException", 400).times(1),
                "sagemaker" => on
                    .failing("ValidationException", 400)
                    .message("Could not find endpoint \"x\".")
                    .times(1),
                _ => on.failing("ObjectNotFoundException", 400).times(1),
            },
            Failure::Held(seconds) => on.delayed(seconds).times(1),
        }
    }
}
