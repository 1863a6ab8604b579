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

/// What went wrong, as callers match it: AWS's own error code, or one of the ways a call fails
/// without an AWS answer. `code()` is its text in messages and logs; only the adapter reads AWS's
/// codes (`asyncscale_aws::classify`), everyone else matches the kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// AWS answered with this error code, e.g. `ValidationException`.
    Aws(String),
    /// AWS did not answer within the time allowed (`--aws-attempt-timeout`, `--aws-call-timeout`).
    Timeout,
    /// The request did not reach AWS (connection refused or reset, name not resolved).
    Unreachable,
    /// AWS's answer could not be read, or lacked what it must carry.
    BadResponse,
    /// The request could not be built, so it was never sent.
    NotSent,
    /// The SDK refused to construct or serialise the request (never sent).
    Construction,
    /// No credentials of the controller's own were found; nothing was sent.
    NoCredentials,
    /// No AWS region is configured.
    NoRegion,
    /// The request budget (`--aws-rate`) did not let the call go within `--aws-call-timeout`.
    RequestBudget,
    /// STS did not give the credentials of the resource's role; the inner kind says why.
    /// Nothing of the resource could be read or written.
    RoleRefused(Box<ErrorKind>),
    /// Service Quotas has no quota of that name.
    NoSuchQuota,
    /// Service Quotas answered without a value.
    NoQuotaValue,
    /// Service Quotas answered without an applied value after one was read (the old one is kept).
    AppliedValueMissing,
    /// The bulk refresh of AWS under way has run too long for its picture to stand for now.
    RefreshOverdue,
    /// AWS changed since the last refresh in a way that makes the planned write unsafe.
    ChangedSinceRefresh,
    /// This replica does not hold the Lease: the write fence refused the write.
    NotLeader,
    /// Read back after applying, AWS does not show every change yet.
    ChangedDuringApply,
    /// The reconcile did not finish within `--reconcile-timeout`.
    ReconcileTimeout,
}

impl ErrorKind {
    /// The kind's text: AWS's code, or the name asyncscale gives a failure of its own.
    pub fn code(&self) -> &str {
        match self {
            ErrorKind::Aws(code) => code,
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unreachable => "dispatch",
            ErrorKind::BadResponse => "response",
            ErrorKind::NotSent => "BuildError",
            ErrorKind::Construction => "construction",
            ErrorKind::NoCredentials => "NoCredentials",
            ErrorKind::NoRegion => "NoRegion",
            ErrorKind::RequestBudget => "RequestBudget",
            ErrorKind::RoleRefused(cause) => cause.code(),
            ErrorKind::NoSuchQuota => "NoSuchQuota",
            ErrorKind::NoQuotaValue => "NoValue",
            ErrorKind::AppliedValueMissing => "AppliedValueMissing",
            ErrorKind::RefreshOverdue => "RefreshOverdue",
            ErrorKind::ChangedSinceRefresh => "ChangedSinceRefresh",
            ErrorKind::NotLeader => "NotLeader",
            ErrorKind::ChangedDuringApply => "ChangedDuringApply",
            ErrorKind::ReconcileTimeout => "Timeout",
        }
    }

    /// What went wrong underneath a role refusal (the kind itself otherwise).
    pub fn cause(&self) -> &ErrorKind {
        match self {
            ErrorKind::RoleRefused(cause) => cause.cause(),
            other => other,
        }
    }

    /// AWS's error code, when AWS answered.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            ErrorKind::Aws(code) => Some(code),
            ErrorKind::RoleRefused(cause) => cause.aws_code(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct AwsError {
    pub class: ErrorClass,
    /// `application-autoscaling`, `cloudwatch`, `sagemaker`, `service-quotas`, `sts`, or
    /// `asyncscale` for a failure of its own before or instead of a request.
    pub service: &'static str,
    pub operation: &'static str,
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} failed: {}: {}",
            self.service,
            self.operation,
            self.kind.code(),
            self.message
        )
    }
}

impl AwsError {
    /// An error raised by asyncscale itself before or instead of a request (no AWS call made).
    pub fn local(
        class: ErrorClass,
        operation: &'static str,
        kind: ErrorKind,
        message: String,
    ) -> Self {
        Self {
            class,
            service: "asyncscale",
            operation,
            kind,
            message,
        }
    }

    /// The kind's text (see `ErrorKind::code`).
    pub fn code(&self) -> &str {
        self.kind.code()
    }

    /// STS did not give the credentials of the resource's role (refused, throttled, or did not
    /// answer): nothing of the resource could be read or written.
    pub fn is_role_refusal(&self) -> bool {
        matches!(self.kind, ErrorKind::RoleRefused(_))
    }
}
