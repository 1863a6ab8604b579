//! One AWS SDK backend per role and region, built on first use and shared.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::OnceCell;

use asyncscale_engine::{
    AssumedRole, AutoscalingBackend, AwsError, BackendSource, CallCounter, Placement,
};

use crate::sdk::{AwsOptions, SdkBackend};

type Key = (Option<AssumedRole>, Option<String>);

/// After a failed build (a role STS refused), the resources of that role and region get the
/// same error for this long instead of each asking STS again.
const FAILED_BUILD_HOLD: Duration = Duration::from_secs(5);

pub struct SdkBackendPool {
    options: AwsOptions,
    calls: CallCounter,
    /// A backend is built once per key; while one is being built (a role being assumed), only
    /// the resources of that role and region wait for it. A failed build leaves its cell empty,
    /// so the next reconcile tries again.
    backends: Mutex<BTreeMap<Key, Arc<OnceCell<Arc<SdkBackend>>>>>,
    failed: Mutex<BTreeMap<Key, (Instant, AwsError)>>,
}

impl SdkBackendPool {
    pub fn new(options: AwsOptions, calls: CallCounter) -> Self {
        Self {
            options,
            calls,
            backends: Mutex::new(BTreeMap::new()),
            failed: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn calls(&self) -> &CallCounter {
        &self.calls
    }

    fn recently_failed(&self, key: &Key) -> Option<AwsError> {
        let failed = self.failed.lock().expect("failed lock");
        let (at, error) = failed.get(key)?;
        (at.elapsed() < FAILED_BUILD_HOLD).then(|| error.clone())
    }

    fn cell(&self, key: Key) -> Arc<OnceCell<Arc<SdkBackend>>> {
        self.backends
            .lock()
            .expect("backends lock")
            .entry(key)
            .or_default()
            .clone()
    }

    async fn build(
        &self,
        role: Option<AssumedRole>,
        region: Option<String>,
    ) -> Result<Arc<SdkBackend>, AwsError> {
        let key = (role.clone(), region.clone());
        let cell = self.cell(key.clone());
        let started = Instant::now();
        let built = cell
            .get_or_try_init(|| async {
                // Also for callers that queued behind the build that just failed.
                if let Some(error) = self.recently_failed(&key) {
                    return Err(error);
                }
                let mut options = self.options.clone();
                if let Some(region) = &region {
                    options.region = Some(region.clone());
                }
                let connected = SdkBackend::connect(&options, role.as_ref(), self.calls.clone());
                let connected = Arc::new(connected.await?);
                if region.is_some() {
                    return Ok(connected);
                }
                // An unset region and the region it resolves to are one place: one backend, so
                // one quota cache per account, region and instance type.
                let resolved = self.cell((role.clone(), Some(connected.region().to_string())));
                Ok::<_, AwsError>(resolved.get_or_init(|| async { connected }).await.clone())
            })
            .await;
        let mut failed = self.failed.lock().expect("failed lock");
        match built {
            Ok(backend) => {
                failed.remove(&key);
                Ok(backend.clone())
            }
            Err(error) => {
                // A held error keeps the time of the build that failed.
                let held = failed
                    .get(&key)
                    .is_some_and(|(at, _)| at.elapsed() < FAILED_BUILD_HOLD);
                if !held {
                    failed.insert(key, (started, error.clone()));
                }
                Err(error)
            }
        }
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
