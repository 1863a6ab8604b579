//! One AWS SDK backend per role and region, built on first use and shared.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;

use asyncscale_engine::{
    AssumedRole, AutoscalingBackend, AwsError, BackendSource, CallCounter, ErrorClass, ErrorKind,
    Placement,
};

use crate::sdk::{AwsOptions, SdkBackend};

type Key = (Option<AssumedRole>, Option<String>);
type Built = Option<Result<Arc<SdkBackend>, AwsError>>;

/// After a failed build (a role STS refused), the resources of that role and region get the
/// same error for this long instead of each asking STS again.
const FAILED_BUILD_HOLD: Duration = Duration::from_secs(5);

#[derive(Clone)]
enum Slot {
    Ready(Arc<SdkBackend>),
    Building(watch::Receiver<Built>),
    Failed(Instant, AwsError),
}

pub struct SdkBackendPool {
    options: AwsOptions,
    calls: CallCounter,
    /// One backend per key, built once, in a task of its own (one AssumeRole per role).
    slots: Arc<Mutex<BTreeMap<Key, Slot>>>,
    /// The longest a caller waits for a build before it is told to come back.
    build_wait: Duration,
}

impl SdkBackendPool {
    pub fn new(options: AwsOptions, calls: CallCounter) -> Self {
        Self {
            // The build's own error (a timeout included) comes first.
            build_wait: options.timeouts.call + Duration::from_secs(1),
            options,
            calls,
            slots: Arc::default(),
        }
    }

    /// Waits at most `wait` for a backend being built (an AssumeRole STS does not answer): the
    /// controller's reconciles of a hung role must not hold the reconcile slots other accounts
    /// need. The build goes on by itself, within the call timeout.
    pub fn with_build_wait(mut self, wait: Duration) -> Self {
        self.build_wait = wait;
        self
    }

    pub fn calls(&self) -> &CallCounter {
        &self.calls
    }

    async fn build(
        &self,
        role: Option<AssumedRole>,
        region: Option<String>,
    ) -> Result<Arc<SdkBackend>, AwsError> {
        let key = (role.clone(), region.clone());
        let mut built = {
            let mut slots = self.slots.lock().expect("pool lock");
            match slots.get(&key) {
                Some(Slot::Ready(backend)) => return Ok(backend.clone()),
                Some(Slot::Failed(at, error)) if at.elapsed() < FAILED_BUILD_HOLD => {
                    return Err(error.clone());
                }
                Some(Slot::Building(built)) => built.clone(),
                _ => {
                    let (done, built) = watch::channel(None);
                    slots.insert(key.clone(), Slot::Building(built.clone()));
                    let mut options = self.options.clone();
                    if let Some(region) = &region {
                        options.region = Some(region.clone());
                    }
                    let (slots, calls) = (self.slots.clone(), self.calls.clone());
                    tokio::spawn(async move {
                        let connected = SdkBackend::connect(&options, key.0.as_ref(), calls).await;
                        let result = settle(&slots, key, connected.map(Arc::new));
                        let _ = done.send(Some(result));
                    });
                    built
                }
            }
        };
        match tokio::time::timeout(self.build_wait, built.wait_for(Option::is_some)).await {
            Ok(Ok(result)) => result.clone().expect("waited for Some"),
            Ok(Err(_)) => Err(still_building(role.as_ref(), "stopped without an answer")),
            Err(_) => Err(still_building(
                role.as_ref(),
                &format!(
                    "no answer within {:?}; it is still being asked, and this resource retries",
                    self.build_wait
                ),
            )),
        }
    }
}

/// Records a finished build. An unset region and the region it resolves to are one place: one
/// backend, so one quota cache per account, region and instance type.
fn settle(
    slots: &Mutex<BTreeMap<Key, Slot>>,
    key: Key,
    connected: Result<Arc<SdkBackend>, AwsError>,
) -> Result<Arc<SdkBackend>, AwsError> {
    let mut slots = slots.lock().expect("pool lock");
    match connected {
        Ok(mut backend) => {
            let resolved = (key.0.clone(), Some(backend.region().to_string()));
            if let Some(Slot::Ready(existing)) = slots.get(&resolved) {
                backend = existing.clone();
            } else {
                slots.insert(resolved, Slot::Ready(backend.clone()));
            }
            slots.insert(key, Slot::Ready(backend.clone()));
            Ok(backend)
        }
        Err(error) => {
            // Held from the failure, not the start: a build that timed out is not retried at
            // once by the role's next resource (a one-shot run's included).
            slots.insert(key, Slot::Failed(Instant::now(), error.clone()));
            Err(error)
        }
    }
}

/// A caller that stopped waiting for a build that goes on.
fn still_building(role: Option<&AssumedRole>, why: &str) -> AwsError {
    match role {
        Some(role) => AwsError {
            class: ErrorClass::Recoverable,
            service: "sts",
            operation: "AssumeRole",
            kind: ErrorKind::RoleRefused(Box::new(ErrorKind::Timeout)),
            message: format!(
                "could not assume the role {} with asyncscale's own credentials: AssumeRole: {why}",
                role.arn
            ),
        },
        None => AwsError::local(
            ErrorClass::Recoverable,
            "LoadConfig",
            ErrorKind::Timeout,
            format!("loading the AWS configuration (credentials, region): {why}"),
        ),
    }
}

#[async_trait]
impl BackendSource for SdkBackendPool {
    async fn backend(
        &self,
        placement: &Placement,
    ) -> Result<Arc<dyn AutoscalingBackend>, AwsError> {
        let backend = self
            .build(self.role_of(placement), placement.region.clone())
            .await?;
        Ok(backend)
    }

    fn role_of(&self, placement: &Placement) -> Option<AssumedRole> {
        placement
            .role
            .clone()
            .or_else(|| self.options.default_role.clone())
    }

    /// From the environment's configuration: no role is assumed to learn it.
    async fn default_region(&self) -> Option<String> {
        let backend = self.build(None, None).await.ok()?;
        Some(backend.region().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unset_region_and_the_region_it_resolves_to_share_one_backend() {
        let options = AwsOptions {
            region: Some("us-east-1".into()),
            // Nothing is sent: backends are only built.
            endpoint_url: Some("http://127.0.0.1:9".into()),
            ..AwsOptions::default()
        };
        let pool = SdkBackendPool::new(options, CallCounter::default());
        let unset = pool.backend(&Placement::in_region(None)).await.unwrap();
        let explicit = pool
            .backend(&Placement::in_region(Some("us-east-1")))
            .await
            .unwrap();
        let other = pool
            .backend(&Placement::in_region(Some("eu-west-1")))
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&unset, &explicit));
        assert!(!Arc::ptr_eq(&unset, &other));
        assert_eq!(other.region(), "eu-west-1");
    }
}
