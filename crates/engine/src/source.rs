//! Where backends come from: the backend for a resource's region.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::AwsError;
use crate::port::AutoscalingBackend;

/// Gives the backend for a resource's region (None: the environment's region).
#[async_trait]
pub trait BackendSource: Send + Sync {
    async fn backend(&self, region: Option<&str>) -> Result<Arc<dyn AutoscalingBackend>, AwsError>;
}

/// One backend for every region: a local endpoint, or a test double.
pub struct SingleBackend(pub Arc<dyn AutoscalingBackend>);

#[async_trait]
impl BackendSource for SingleBackend {
    async fn backend(
        &self,
        _region: Option<&str>,
    ) -> Result<Arc<dyn AutoscalingBackend>, AwsError> {
        Ok(self.0.clone())
    }
}
