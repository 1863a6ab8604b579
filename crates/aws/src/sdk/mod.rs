//! The AWS SDK adapter of the backend port.
//!
//! Credentials and region come from aws-config's default chain (environment, profile, web
//! identity for IRSA, EKS Pod Identity, instance metadata). `AWS_ENDPOINT_URL` (or the
//! per-service variables) and `--aws-endpoint` point every client at an AWS-compatible endpoint.
//! The SDK's standard retry mode retries throttling and transient errors; on top of that the
//! adapter retries what the SDK does not: ConcurrentUpdateException and CloudWatch throttling
//! wrapped in FailedResourceAccessException (docs/aws-behaviour.md §6.3, §6.4, §2.16).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::identity::IdentityCache;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_applicationautoscaling as aas;
use aws_sdk_cloudwatch as cw;
use aws_sdk_sagemaker as sm;
use aws_sdk_servicequotas as sq;

use asyncscale_core::*;

mod autoscaling;
mod cloudwatch;
mod fence;
mod port;
mod quotas;
mod role;
mod sagemaker;
mod scheduled;

use quotas::{CachedQuota, QUOTA_TTL};
use sagemaker::EndpointScan;

use asyncscale_engine::{
    AssumedRole, AutoscalingBackend, AwsError, CallCounter, ErrorClass, ErrorKind, Fence,
};

use crate::budget::RequestBudget;
use crate::classify::{classify, is_throttle};

const AAS: &str = "application-autoscaling";
const CW: &str = "cloudwatch";
const SQ: &str = "service-quotas";
const SM: &str = "sagemaker";
/// What a condition says when no credentials source is configured at all (the SDK's own report
/// lists every provider of its chain, five lines, in every condition and log line).
const NO_CREDENTIALS: &str = "no AWS credentials: none in the environment, the AWS profile, web identity (IRSA), the container endpoint (EKS Pod Identity) or instance metadata";

/// What to do about it, said once by the CLI and at the controller's start.
pub const NO_CREDENTIALS_HELP: &str = "no AWS credentials found. asyncscale looked, in this order, at the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), the AWS profile (AWS_PROFILE, ~/.aws/config and ~/.aws/credentials, SSO), web identity (AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN: IRSA), the container credentials endpoint (EKS Pod Identity, ECS) and EC2 instance metadata. On your machine: run `aws sso login` or `export AWS_PROFILE=<profile>`. In EKS: annotate the controller's service account with eks.amazonaws.com/role-arn (IRSA; the chart's serviceAccount.annotations) or create an EKS Pod Identity association for it.";

/// Why credentials could not be had before any call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsProblem {
    /// No source is configured at all.
    #[error("{}", not_configured())]
    NotConfigured,
    /// A configured source failed (an expired SSO session, a missing token file, an unreachable
    /// Pod Identity agent, a failing credential_process).
    #[error("AWS credentials could not be loaded: {0}")]
    Failed(String),
}

fn not_configured() -> String {
    match std::env::var("AWS_PROFILE") {
        Ok(profile) if !profile.is_empty() => format!(
            "{NO_CREDENTIALS_HELP} AWS_PROFILE is set to {profile:?}: that profile does not exist or holds no credentials in the AWS config and credentials files (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE)."
        ),
        _ => NO_CREDENTIALS_HELP.to_string(),
    }
}

/// Loads credentials once, as the first call would. [`CredentialsProblem::NotConfigured`] when no
/// source is configured; [`CredentialsProblem::Failed`] with the source's own words, on one line,
/// when a configured one fails.
pub async fn check_credentials(options: &AwsOptions) -> Result<(), CredentialsProblem> {
    use aws_credential_types::provider::ProvideCredentials;
    use aws_credential_types::provider::error::CredentialsError;
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let config = loader.load().await;
    let Some(provider) = config.credentials_provider() else {
        return Err(CredentialsProblem::NotConfigured);
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(CredentialsError::CredentialsNotLoaded(_)) => Err(CredentialsProblem::NotConfigured),
        Err(e) => Err(CredentialsProblem::Failed(
            source_chain(&e)
                .split('\n')
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

/// The call was not sent because its role could not be assumed (a renewal STS refused): STS's
/// error, as [`role::RoleSession`] reported it.
fn role_refused(err: &(dyn std::error::Error + 'static)) -> Option<AwsError> {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<AwsError>() {
            return Some(refused.clone());
        }
        source = e.source();
    }
    None
}

/// The SDK stopped the call before sending it because no credentials source is configured.
fn credentials_not_loaded(err: &(dyn std::error::Error + 'static)) -> bool {
    use aws_credential_types::provider::error::CredentialsError;
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(CredentialsError::CredentialsNotLoaded(_)) =
            e.downcast_ref::<CredentialsError>()
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Attempts for errors the SDK does not retry itself (see the module docs).
const EXTRA_ATTEMPTS: u32 = 3;

/// How to reach AWS.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// Overrides the region of the environment.
    pub region: Option<String>,
    /// Sends every call to this endpoint (an AWS-compatible local endpoint, say).
    pub endpoint_url: Option<String>,
    pub timeouts: AwsTimeouts,
    /// Shared by every backend built from these options (every account and region's buckets).
    pub budget: RequestBudget,
    /// The role of resources that name none (`--default-role-arn`); None: the environment's
    /// own credentials.
    pub default_role: Option<AssumedRole>,
    /// Fixed credentials instead of the default chain's (a local endpoint's).
    pub credentials: Option<aws_credential_types::Credentials>,
    /// Asked right before every attempt of every write is sent (see [`fence`]): a controller
    /// replica's leadership. Open for the CLI.
    pub write_fence: Fence,
}

/// Bounds on every AWS call, so that a hung endpoint or connection becomes a recoverable error
/// instead of a reconcile that never ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// One whole operation, the SDK's retries included.
    pub call: Duration,
    /// One attempt (one HTTP request and its response).
    pub attempt: Duration,
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        Self {
            call: Duration::from_secs(30),
            attempt: Duration::from_secs(10),
        }
    }
}

impl AwsTimeouts {
    fn sdk_config(&self) -> aws_config::timeout::TimeoutConfig {
        aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(self.call)
            .operation_attempt_timeout(self.attempt)
            // The SDK's own default (behavior version 2026-01-12), but never above an attempt.
            .connect_timeout(self.attempt.min(Duration::from_millis(3100)))
            .build()
    }
}

pub struct SdkBackend {
    autoscaling: aas::Client,
    cloudwatch: cw::Client,
    quotas: sq::Client,
    sagemaker: sm::Client,
    calls: CallCounter,
    write_fence: Fence,
    /// Quota codes by quota name, found once per process by listing (paginated).
    quota_codes: Mutex<BTreeMap<String, String>>,
    /// Quota values by quota name, re-read after [`QUOTA_TTL`]: every resource of an instance type
    /// shares one, and Service Quotas allows 5 GetServiceQuota calls a second (§5.3). A failed
    /// refresh keeps the last value: an unknown quota must never lift a clamp.
    quota_values: Mutex<BTreeMap<String, CachedQuota>>,
    /// One read of each quota at a time, by quota name.
    quota_reads: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Endpoint configurations by name: they never change once created.
    endpoint_configs: Mutex<BTreeMap<String, EndpointConfigState>>,
    /// The latest scan of every endpoint, for [`ENDPOINT_SCAN_TTL`]; one scan at a time.
    endpoint_scan: tokio::sync::Mutex<Option<EndpointScan>>,
    /// The latest list of the resources waiting without capacity, for as long.
    waiting: tokio::sync::Mutex<Option<(std::time::Instant, Arc<HashSet<String>>)>>,
    region: String,
    /// The account of the role the calls act as (None: the environment's credentials).
    account: Option<String>,
    /// The account and region, as the request budget keys its buckets.
    budget_place: String,
    timeouts: AwsTimeouts,
    quota_ttl: Duration,
    budget: RequestBudget,
}

impl SdkBackend {
    /// A backend with the environment's credentials, or, with `role`, with that role's: it is
    /// assumed here once, so that a role STS refuses fails this call with STS's words and
    /// nothing is built for it.
    pub async fn connect(
        options: &AwsOptions,
        role: Option<&AssumedRole>,
        calls: CallCounter,
    ) -> Result<Self, AwsError> {
        let mut config = sdk_config(options).await;
        if let Some(role) = role {
            let session =
                role::RoleSession::new(&config, role.clone(), calls.clone(), options.timeouts);
            session.credentials().await?;
            // The session is the one cache: it renews before expiry, for all four clients.
            config = config
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(session))
                .identity_cache(IdentityCache::no_cache())
                .build();
        }
        let mut backend = Self::from_config(&config, calls)?
            .with_budget(options.budget.clone())
            .with_write_fence(options.write_fence.clone());
        backend.timeouts = options.timeouts;
        backend.account = role.and_then(AssumedRole::account).map(str::to_string);
        backend.budget_place = backend.place().to_string();
        Ok(backend)
    }

    /// The account the environment's own credentials act in (STS GetCallerIdentity, one call):
    /// what tells two profiles apart where the account is otherwise unknown.
    pub async fn caller_account(
        options: &AwsOptions,
        calls: &CallCounter,
    ) -> Result<String, AwsError> {
        let config = sdk_config(options).await;
        let answer = aws_sdk_sts::Client::new(&config)
            .get_caller_identity()
            .send()
            .await;
        match answer {
            Ok(out) => {
                calls.record("sts", "GetCallerIdentity", "ok");
                out.account().map(str::to_string).ok_or_else(|| AwsError {
                    class: ErrorClass::Recoverable,
                    service: "sts",
                    operation: "GetCallerIdentity",
                    kind: ErrorKind::BadResponse,
                    message: "STS answered GetCallerIdentity without an account".into(),
                })
            }
            Err(err) => {
                let error = to_aws_error("sts", "GetCallerIdentity", &err, &options.timeouts);
                calls.record("sts", "GetCallerIdentity", error.class.as_str());
                Err(error)
            }
        }
    }

    /// A backend for a local AWS-compatible endpoint (such as `asyncscale sim serve`), signed with
    /// fixed credentials so that the environment's real ones never reach it.
    pub async fn for_local_endpoint(url: &str, calls: CallCounter) -> Result<Self, AwsError> {
        let options = AwsOptions {
            region: Some("us-east-1".into()),
            endpoint_url: Some(url.to_string()),
            credentials: Some(aws_credential_types::Credentials::new(
                "local",
                "local",
                None,
                None,
                "asyncscale-local-endpoint",
            )),
            ..AwsOptions::default()
        };
        Self::connect(&options, None, calls).await
    }

    pub fn from_config(config: &SdkConfig, calls: CallCounter) -> Result<Self, AwsError> {
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| AwsError {
                class: ErrorClass::Terminal,
                service: "aws-config",
                operation: "LoadConfig",
                kind: ErrorKind::NoRegion,
                message:
                    "no AWS region: set spec.region, AWS_REGION, or a region in the AWS profile"
                        .into(),
            })?;
        Ok(Self {
            autoscaling: aas::Client::new(config),
            cloudwatch: cw::Client::new(config),
            quotas: sq::Client::new(config),
            sagemaker: sm::Client::new(config),
            calls,
            write_fence: Fence::open(),
            quota_codes: Mutex::new(BTreeMap::new()),
            quota_values: Mutex::new(BTreeMap::new()),
            quota_reads: Mutex::new(BTreeMap::new()),
            endpoint_configs: Mutex::new(BTreeMap::new()),
            endpoint_scan: tokio::sync::Mutex::new(None),
            waiting: tokio::sync::Mutex::new(None),
            budget_place: region.clone(),
            region,
            account: None,
            quota_ttl: QUOTA_TTL,
            budget: RequestBudget::default(),
            timeouts: {
                let default = AwsTimeouts::default();
                let configured = config.timeout_config();
                let call = configured
                    .and_then(|t| t.operation_timeout())
                    .unwrap_or(default.call);
                let attempt = configured
                    .and_then(|t| t.operation_attempt_timeout())
                    .unwrap_or(default.attempt)
                    .min(call);
                AwsTimeouts { call, attempt }
            },
        })
    }

    pub fn calls(&self) -> &CallCounter {
        &self.calls
    }

    /// How long a quota value is used before it is read again (5 minutes unless changed).
    pub fn with_quota_ttl(mut self, ttl: Duration) -> Self {
        self.quota_ttl = ttl;
        self
    }

    /// Sends no write unless `fence` allows it, asked at every attempt right before it is sent
    /// (the writers are Application Auto Scaling and CloudWatch; the other two only read).
    pub fn with_write_fence(mut self, fence: Fence) -> Self {
        let at_transmit = || fence::FenceAtTransmit(fence.clone());
        self.autoscaling = aas::Client::from_conf(
            self.autoscaling
                .config()
                .to_builder()
                .interceptor(at_transmit())
                .build(),
        );
        self.cloudwatch = cw::Client::from_conf(
            self.cloudwatch
                .config()
                .to_builder()
                .interceptor(at_transmit())
                .build(),
        );
        self.write_fence = fence;
        self
    }

    /// Paces requests with `budget` (the default: AWS's rates, for this backend alone).
    pub fn with_budget(mut self, budget: RequestBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Waits for the request budget, sends one request, counts it, classifies its error, and retries the recoverable errors the
    /// SDK leaves alone (with jittered exponential backoff from 200 ms).
    async fn call<T, E, F, Fut>(
        &self,
        service: &'static str,
        operation: &'static str,
        send: F,
    ) -> Result<T, AwsError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, aas::error::SdkError<E>>>,
        E: aas::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The wait for the budget counts against the call's time bound: a command never
            // hangs on a budget slower than --aws-call-timeout allows.
            let budget = self
                .budget
                .acquire(&self.budget_place, service, operation, &self.calls);
            if tokio::time::timeout(self.timeouts.call, budget)
                .await
                .is_err()
            {
                return Err(AwsError {
                    class: ErrorClass::Recoverable,
                    service,
                    operation,
                    kind: ErrorKind::RequestBudget,
                    message: format!(
                        "waited {:?} (--aws-call-timeout) for the request budget of {service} {operation} (--aws-rate) without sending it",
                        self.timeouts.call
                    ),
                });
            }
            // The budget may have waited past the renew deadline: ask again (and the SDK's
            // interceptor asks once more at each attempt).
            let write = fence::is_write(operation);
            if write {
                self.write_fence.check()?;
            }
            match send().await {
                Ok(output) => {
                    self.calls.record(service, operation, "ok");
                    return Ok(output);
                }
                Err(err) => {
                    // Refused at transmit (or leadership lost meanwhile): that is the story.
                    if write {
                        self.write_fence.check()?;
                    }
                    let error = to_aws_error(service, operation, &err, &self.timeouts);
                    // Never sent: not an AWS call, and nothing to retry.
                    if *error.kind.cause() == ErrorKind::NoCredentials {
                        return Err(error);
                    }
                    let outcome = if is_throttle(error.code(), &error.message) {
                        "throttled"
                    } else {
                        error.class.as_str()
                    };
                    self.calls.record(service, operation, outcome);
                    let sdk_did_not_retry = matches!(
                        error.kind.aws_code(),
                        Some("ConcurrentUpdateException" | "FailedResourceAccessException")
                    );
                    if error.class == ErrorClass::Recoverable
                        && sdk_did_not_retry
                        && attempt < EXTRA_ATTEMPTS
                    {
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    return Err(error);
                }
            }
        }
    }
}

/// The token of the next page: "This value is null if there are no more results to return";
/// one AWS example shows `""`, which means the same.
/// AWS timestamps as asyncscale keeps them (RFC 3339); every SDK crate shares smithy's DateTime.
fn rfc3339(t: &aws_sdk_cloudwatch::primitives::DateTime) -> String {
    t.fmt(aws_sdk_cloudwatch::primitives::DateTimeFormat::DateTime)
        .unwrap_or_else(|_| t.secs().to_string())
}

fn next_token(token: Option<&str>) -> Option<String> {
    token.filter(|t| !t.is_empty()).map(str::to_string)
}

fn backoff(attempt: u32) -> Duration {
    let base = 200u64 << attempt.min(6);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    Duration::from_millis(base / 2 + u64::from(nanos) % (base / 2 + 1))
}

/// The SDK's configuration for `options`: the default chain, with the region, endpoint,
/// credentials and timeouts they set.
async fn sdk_config(options: &AwsOptions) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &options.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    if let Some(credentials) = &options.credentials {
        loader = loader.credentials_provider(credentials.clone());
    }
    loader
        .timeout_config(options.timeouts.sdk_config())
        .load()
        .await
}

fn to_aws_error<E>(
    service: &'static str,
    operation: &'static str,
    err: &aas::error::SdkError<E>,
    timeouts: &AwsTimeouts,
) -> AwsError
where
    E: aas::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aas::error::SdkError;
    if let Some(refused) = role_refused(err) {
        return refused;
    }
    if credentials_not_loaded(err) {
        return AwsError {
            class: ErrorClass::Terminal,
            service,
            operation,
            kind: ErrorKind::NoCredentials,
            message: NO_CREDENTIALS.into(),
        };
    }
    let (kind, message, class) = match err {
        SdkError::ServiceError(service_error) => {
            let inner = service_error.err();
            let code = inner.code().unwrap_or("Unknown");
            let message = inner.message().unwrap_or("").to_string();
            let class = classify(code, &message, Some(service_error.raw().status().as_u16()));
            (ErrorKind::Aws(code.to_string()), message, class)
        }
        SdkError::TimeoutError(_) => (
            ErrorKind::Timeout,
            format!(
                "AWS did not answer within the time allowed ({:?} an attempt, {:?} a call with retries; --aws-attempt-timeout, --aws-call-timeout)",
                timeouts.attempt, timeouts.call
            ),
            ErrorClass::Recoverable,
        ),
        SdkError::DispatchFailure(_) => (
            ErrorKind::Unreachable,
            format!("could not reach AWS: {}", source_chain(err)),
            ErrorClass::Recoverable,
        ),
        SdkError::ResponseError(_) => (
            ErrorKind::BadResponse,
            format!("unreadable response: {}", source_chain(err)),
            ErrorClass::Recoverable,
        ),
        _ => (
            ErrorKind::Construction,
            source_chain(err),
            ErrorClass::Terminal,
        ),
    };
    AwsError {
        class,
        service,
        operation,
        kind,
        message,
    }
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

fn build_error(operation: &'static str, e: impl std::fmt::Display) -> AwsError {
    AwsError {
        class: ErrorClass::Terminal,
        service: "asyncscale",
        operation,
        kind: ErrorKind::NotSent,
        message: e.to_string(),
    }
}
