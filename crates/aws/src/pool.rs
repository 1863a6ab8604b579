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
        let backend = Arc::new(SdkBackend::connect(&options, self.calls.clone()).await?);
        by_region.insert(key, backend.clone());
        Ok(backend)
    }
}
