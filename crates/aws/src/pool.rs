//! One AWS SDK backend per region, built on first use and shared.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;

use asyncscale_engine::{AutoscalingBackend, AwsError, BackendSource, CallCounter};

use crate::sdk::{AwsOptions, SdkBackend};

pub struct SdkBackendPool {
    options: AwsOptions,
    calls: CallCounter,
    by_region: Mutex<BTreeMap<Option<String>, Arc<SdkBackend>>>,
}

impl SdkBackendPool {
    pub fn new(options: AwsOptions, calls: CallCounter) -> Self {
        Self {
            options,
            calls,
            by_region: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn calls(&self) -> &CallCounter {
        &self.calls
    }
}

#[async_trait]
impl BackendSource for SdkBackendPool {
    async fn backend(&self, region: Option<&str>) -> Result<Arc<dyn AutoscalingBackend>, AwsError> {
        let key = region.map(str::to_string);
        let mut by_region = self.by_region.lock().await;
        if let Some(backend) = by_region.get(&key) {
            return Ok(backend.clone());
        }
        let mut options = self.options.clone();
        if let Some(region) = region {
            options.region = Some(region.to_string());
        }
        let connected = Arc::new(SdkBackend::connect(&options, self.calls.clone()).await?);
        // An unset region and the region it resolves to are one place: one backend, so one
        // quota cache per account, region and instance type.
        let resolved = Some(connected.region().to_string());
        let backend = by_region.entry(resolved).or_insert(connected).clone();
        by_region.insert(key, backend.clone());
        Ok(backend)
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
        let unset = pool.backend(None).await.unwrap();
        let explicit = pool.backend(Some("us-east-1")).await.unwrap();
        let other = pool.backend(Some("eu-west-1")).await.unwrap();
        assert!(Arc::ptr_eq(&unset, &explicit));
        assert!(!Arc::ptr_eq(&unset, &other));
        assert_eq!(other.region(), "eu-west-1");
    }
}
