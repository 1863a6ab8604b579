//! Where backends come from: the backend for a resource's placement (its region, and the IAM
//! role its calls act as).

use std::sync::Arc;

use async_trait::async_trait;

use asyncscale_api::AsyncEndpointScalingSpec;

use crate::error::AwsError;
use crate::port::{AutoscalingBackend, Place};

/// An IAM role to act as, assumed through STS.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AssumedRole {
    pub arn: String,
    /// Sent with AssumeRole when the role's trust policy asks for one (sts:ExternalId).
    pub external_id: Option<String>,
}

impl AssumedRole {
    pub fn new(arn: impl Into<String>) -> Self {
        Self {
            arn: arn.into(),
            external_id: None,
        }
    }

    /// The account the role is in, which is where its calls land.
    pub fn account(&self) -> Option<&str> {
        asyncscale_api::role_account(&self.arn)
    }
}

/// Where a resource's AWS calls go, as its spec says.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Placement {
    /// None: the environment's region.
    pub region: Option<String>,
    /// None: the source's default role (`--default-role-arn`), or its own credentials.
    pub role: Option<AssumedRole>,
}

impl Placement {
    pub fn of(spec: &AsyncEndpointScalingSpec) -> Self {
        Self {
            region: spec.region.clone(),
            role: spec.role_arn.as_ref().map(|arn| AssumedRole {
                arn: arn.clone(),
                external_id: spec.external_id.clone(),
            }),
        }
    }

    pub fn in_region(region: Option<&str>) -> Self {
        Self {
            region: region.map(str::to_string),
            role: None,
        }
    }
}

/// Gives the backend for a resource's placement.
#[async_trait]
pub trait BackendSource: Send + Sync {
    async fn backend(&self, placement: &Placement)
    -> Result<Arc<dyn AutoscalingBackend>, AwsError>;

    /// The role `placement`'s calls act as once the source's default role applies (None: its
    /// own credentials). Known without any call.
    fn role_of(&self, placement: &Placement) -> Option<AssumedRole> {
        placement.role.clone()
    }

    /// The region of placements that name none (the environment's). None when it cannot be
    /// had; then every such placement's backend reports why.
    async fn default_region(&self) -> Option<String> {
        let backend = self.backend(&Placement::default()).await.ok()?;
        Some(backend.region().to_string())
    }

    /// The account and region `placement`'s calls land in, known without any call (None: it
    /// names no region, and there is no default).
    fn place_of(&self, placement: &Placement, default_region: Option<&str>) -> Option<Place> {
        let region = placement.region.as_deref().or(default_region)?;
        Some(Place {
            account: self
                .role_of(placement)
                .and_then(|role| role.account().map(str::to_string)),
            region: region.to_string(),
        })
    }
}

/// One backend for every placement: a local endpoint, or a test double.
pub struct SingleBackend(pub Arc<dyn AutoscalingBackend>);

#[async_trait]
impl BackendSource for SingleBackend {
    async fn backend(
        &self,
        _placement: &Placement,
    ) -> Result<Arc<dyn AutoscalingBackend>, AwsError> {
        Ok(self.0.clone())
    }
}
