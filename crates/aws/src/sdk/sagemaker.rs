//! SageMaker through the SDK: the endpoints' own state (status, instance counts) and their
//! configurations (instance type, asynchronous or not). Configurations never change once
//! created, so each is read once per name and kept.

use asyncscale_core::*;
use std::time::{Duration, Instant};

use asyncscale_engine::Holding;
use std::collections::HashSet;
use std::sync::Arc;

use asyncscale_engine::endpoints::{Scan, list_waiting, scan_endpoints, scan_holdings};

use super::{SM, SdkBackend, next_token, rfc3339};
use asyncscale_engine::{AwsError, ErrorClass, Page};

/// ListEndpoints' largest page.
const ENDPOINTS_PAGE: i32 = 100;
/// How long a scan of every endpoint serves the shared-quota split of other resources. A scan
/// costs one DescribeEndpoint per endpoint of the account (SageMaker has no bulk read of instance
/// counts), so the resources of one CLI run share one; the controller's fleet view keeps its
/// own picture and never comes here.
const ENDPOINT_SCAN_TTL: Duration = Duration::from_secs(30);

pub(super) type EndpointScan = (Instant, Scan);

impl SdkBackend {
    pub(super) async fn instance_usage(
        &self,
        instance_type: &str,
    ) -> Result<Vec<Holding>, AwsError> {
        let mut scan = self.endpoint_scan.lock().await;
        let endpoints = match &*scan {
            Some((at, endpoints)) if at.elapsed() < ENDPOINT_SCAN_TTL => endpoints,
            _ => {
                let endpoints = scan_endpoints(self).await?;
                &scan.insert((Instant::now(), endpoints)).1
            }
        };
        Ok(scan_holdings(endpoints, instance_type))
    }

    /// The resources whose scale-from-zero alarm fires, listed once per [`ENDPOINT_SCAN_TTL`]
    /// like the scan it goes with (the resources of one run share one list).
    pub(super) async fn waiting_without_capacity(&self) -> Result<Arc<HashSet<String>>, AwsError> {
        let mut waiting = self.waiting.lock().await;
        if let Some((at, known)) = &*waiting
            && at.elapsed() < ENDPOINT_SCAN_TTL
        {
            return Ok(known.clone());
        }
        let listed = list_waiting(self).await?;
        *waiting = Some((Instant::now(), listed.clone()));
        Ok(listed)
    }

    pub(super) async fn describe_endpoint(
        &self,
        name: &str,
    ) -> Result<Option<EndpointState>, AwsError> {
        let out = match self
            .call(SM, "DescribeEndpoint", || {
                self.sagemaker
                    .describe_endpoint()
                    .endpoint_name(name)
                    .send()
            })
            .await
        {
            Ok(out) => out,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(EndpointState {
            summary: EndpointSummary {
                name: out.endpoint_name().unwrap_or(name).to_string(),
                status: out
                    .endpoint_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                last_modified: out.last_modified_time().map(rfc3339).unwrap_or_default(),
            },
            config_name: out.endpoint_config_name().unwrap_or_default().to_string(),
            failure_reason: out.failure_reason().map(str::to_string),
            variants: out
                .production_variants()
                .iter()
                .map(|v| VariantState {
                    name: v.variant_name().unwrap_or_default().to_string(),
                    current_instances: v.current_instance_count(),
                    desired_instances: v.desired_instance_count(),
                })
                .collect(),
        }))
    }

    pub(super) async fn describe_endpoint_config(
        &self,
        name: &str,
    ) -> Result<Option<EndpointConfigState>, AwsError> {
        if let Some(known) = self
            .endpoint_configs
            .lock()
            .expect("endpoint config cache lock")
            .get(name)
        {
            return Ok(Some(known.clone()));
        }
        let out = match self
            .call(SM, "DescribeEndpointConfig", || {
                self.sagemaker
                    .describe_endpoint_config()
                    .endpoint_config_name(name)
                    .send()
            })
            .await
        {
            Ok(out) => out,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let config = EndpointConfigState {
            name: name.to_string(),
            asynchronous: out.async_inference_config().is_some(),
            variants: out
                .production_variants()
                .iter()
                .map(|v| {
                    (
                        v.variant_name().unwrap_or_default().to_string(),
                        v.instance_type().map(|t| t.as_str().to_string()),
                    )
                })
                .collect(),
        };
        self.endpoint_configs
            .lock()
            .expect("endpoint config cache lock")
            .insert(name.to_string(), config.clone());
        Ok(Some(config))
    }

    pub(super) async fn list_endpoints(
        &self,
        next: Option<String>,
    ) -> Result<Page<EndpointSummary>, AwsError> {
        let out = self
            .call(SM, "ListEndpoints", || {
                self.sagemaker
                    .list_endpoints()
                    .max_results(ENDPOINTS_PAGE)
                    .set_next_token(next.clone())
                    .send()
            })
            .await?;
        Ok(Page {
            items: out
                .endpoints()
                .iter()
                .map(|e| EndpointSummary {
                    name: e.endpoint_name().unwrap_or_default().to_string(),
                    status: e
                        .endpoint_status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    last_modified: e.last_modified_time().map(rfc3339).unwrap_or_default(),
                })
                .collect(),
            next: next_token(out.next_token()),
        })
    }
}

/// SageMaker's answer to a read of a missing endpoint or configuration: a ValidationException
/// "Could not find endpoint "<arn>"." (or "endpoint configuration"), not a 404.
fn is_missing(error: &AwsError) -> bool {
    error.class == ErrorClass::NotFound
        || (error.kind.aws_code() == Some("ValidationException")
            && error.message.starts_with("Could not find"))
}
