//! Credentials of an assumed IAM role: STS AssumeRole with the controller's own credentials as
//! the source, kept until shortly before they expire.
//!
//! aws-config's `AssumeRoleProvider` does the same call; asyncscale sends it itself with the
//! official STS client so that a refusal keeps STS's error code and message (for status), the
//! call is counted like every other, and one session serves all four service clients.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials};
use aws_sdk_sts as sts;

use asyncscale_engine::{AssumedRole, AwsError, CallCounter, ErrorKind};

use super::{AwsTimeouts, to_aws_error};
use crate::classify::is_throttle;

/// Seen in CloudTrail as `assumed-role/<role>/asyncscale`.
const SESSION_NAME: &str = "asyncscale";
/// STS's default and the least every role allows (MaxSessionDuration is 1 to 12 hours).
const SESSION_LENGTH: Duration = Duration::from_secs(3600);
/// A session is renewed this long before it expires, so that no call is signed with
/// credentials that expire on the way.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

pub(crate) struct RoleSession {
    sts: sts::Client,
    role: AssumedRole,
    calls: CallCounter,
    timeouts: AwsTimeouts,
    /// One AssumeRole at a time per role; the latest credentials.
    current: tokio::sync::Mutex<Option<Credentials>>,
}

impl fmt::Debug for RoleSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleSession")
            .field("role", &self.role.arn)
            .finish_non_exhaustive()
    }
}

impl RoleSession {
    /// `source` holds the credentials that assume the role (the pod's own), the region and any
    /// endpoint override.
    pub(crate) fn new(
        source: &SdkConfig,
        role: AssumedRole,
        calls: CallCounter,
        timeouts: AwsTimeouts,
    ) -> Self {
        Self {
            sts: sts::Client::new(source),
            role,
            calls,
            timeouts,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The role's credentials: the current session's, or a new session's when it nears expiry.
    pub(crate) async fn credentials(&self) -> Result<Credentials, AwsError> {
        let mut current = self.current.lock().await;
        if let Some(credentials) = current.as_ref()
            && !near_expiry(credentials)
        {
            return Ok(credentials.clone());
        }
        let assumed = self
            .sts
            .assume_role()
            .role_arn(&self.role.arn)
            .role_session_name(SESSION_NAME)
            .set_external_id(self.role.external_id.clone())
            .duration_seconds(SESSION_LENGTH.as_secs() as i32)
            .send()
            .await;
        let result = match assumed {
            Ok(output) => output.credentials.map(|c| {
                Credentials::new(
                    c.access_key_id,
                    c.secret_access_key,
                    Some(c.session_token),
                    SystemTime::try_from(c.expiration).ok(),
                    "asyncscale-assume-role",
                )
            }),
            Err(err) => {
                let error = to_aws_error("sts", "AssumeRole", &err, &self.timeouts);
                let outcome = if is_throttle(error.code(), &error.message) {
                    "throttled"
                } else {
                    error.class.as_str()
                };
                self.calls.record("sts", "AssumeRole", outcome);
                return Err(self.refused(error));
            }
        };
        let Some(credentials) = result else {
            self.calls.record("sts", "AssumeRole", "terminal");
            return Err(self.refused(AwsError {
                class: asyncscale_engine::ErrorClass::Recoverable,
                service: "sts",
                operation: "AssumeRole",
                kind: ErrorKind::BadResponse,
                message: "STS answered AssumeRole without credentials".into(),
            }));
        };
        self.calls.record("sts", "AssumeRole", "ok");
        *current = Some(credentials.clone());
        Ok(credentials)
    }

    /// STS's own words, with the role they are about.
    fn refused(&self, error: AwsError) -> AwsError {
        AwsError {
            message: format!(
                "could not assume the role {} with asyncscale's own credentials: {}: {}",
                self.role.arn,
                error.code(),
                error.message
            ),
            kind: match error.kind {
                refused @ ErrorKind::RoleRefused(_) => refused,
                cause => ErrorKind::RoleRefused(Box::new(cause)),
            },
            ..error
        }
    }
}

fn near_expiry(credentials: &Credentials) -> bool {
    credentials
        .expiry()
        .is_some_and(|expiry| SystemTime::now() + RENEW_BEFORE >= expiry)
}

impl ProvideCredentials for RoleSession {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            self.credentials()
                .await
                .map_err(CredentialsError::provider_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiring_in(seconds: u64) -> Credentials {
        let expiry = SystemTime::now() + Duration::from_secs(seconds);
        Credentials::new("ASIA", "secret", Some("token".into()), Some(expiry), "test")
    }

    #[test]
    fn a_session_is_renewed_five_minutes_before_it_expires() {
        assert!(!near_expiry(&expiring_in(3600)));
        assert!(!near_expiry(&expiring_in(301)));
        assert!(near_expiry(&expiring_in(299)));
        assert!(near_expiry(&expiring_in(0)));
    }
}
