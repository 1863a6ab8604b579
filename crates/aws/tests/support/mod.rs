//! What the adapter tests share.

use asyncscale_aws::SdkBackend;
use asyncscale_core::*;
use asyncscale_engine::CallCounter;
use aws_config::BehaviorVersion;
use aws_sdk_applicationautoscaling::config::Credentials;

/// The SDK adapter pointed at a local AWS-compatible endpoint, in us-east-1, with test credentials.
#[allow(dead_code)] // not every test binary uses it
pub(crate) async fn backend_at(url: &str) -> SdkBackend {
    backend_in(url, "us-east-1").await
}

/// The same in another region.
#[allow(dead_code)] // not every test binary uses it
pub(crate) async fn backend_in(url: &str, region: &str) -> SdkBackend {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .load()
        .await;
    SdkBackend::from_config(&config, CallCounter::default()).unwrap()
}

/// The adapter as the controller builds it, with a call timeout (each attempt's too) shorter
/// than a held answer, and no request budget.
#[allow(dead_code)] // not every test binary uses it
pub(crate) async fn backend_with_timeout(
    url: &str,
    call_timeout: std::time::Duration,
) -> SdkBackend {
    use asyncscale_aws::RequestBudget;
    use asyncscale_aws::sdk::{AwsOptions, AwsTimeouts};
    let options = AwsOptions {
        region: Some("us-east-1".into()),
        endpoint_url: Some(url.to_string()),
        credentials: Some(Credentials::new("AKIDTEST", "secret", None, None, "test")),
        timeouts: AwsTimeouts {
            call: call_timeout,
            attempt: call_timeout,
        },
        budget: RequestBudget::unlimited(),
        ..AwsOptions::default()
    };
    SdkBackend::connect(&options, None, CallCounter::default())
        .await
        .unwrap()
}

/// The configuration asyncscale wants for a resource with this `targetTracking` (YAML flow map),
/// with the quota unknown so maxCapacity applies as written.
#[allow(dead_code)] // not every test binary uses it
pub(crate) fn desired(target_tracking: &str) -> Desired {
    let yaml = format!(
        "apiVersion: asyncscale.io/v1alpha1\nkind: AsyncEndpointScaling\nmetadata: {{name: sdxl, namespace: ml}}\nspec: {{endpointName: sdxl-async, instanceType: ml.g4dn.xlarge, maxCapacity: 20, targetTracking: {target_tracking}}}\n"
    );
    let spec = asyncscale_api::parse_manifests("t.yaml", &yaml)
        .unwrap()
        .remove(0)
        .resource
        .spec;
    let owner = Owner {
        namespace: "ml".into(),
        name: "sdxl".into(),
        uid: None,
    };
    desire(
        &spec,
        &owner,
        &QuotaLookup::Unknown {
            name: "q".into(),
            reason: "test".into(),
        },
        None,
        None,
    )
    .unwrap()
}

/// How many more requests the first injected fault still fails (None: it was used up).
#[allow(dead_code)] // not every test binary uses it
pub(crate) fn first_fault_left(server: &asyncscale_sim::SimServer) -> Option<u32> {
    server
        .account
        .lock()
        .unwrap()
        .faults
        .first()
        .map(|f| f.count)
}
