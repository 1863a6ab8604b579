//! What the adapter tests share.

use asyncscale_core::*;

/// The configuration asyncscale wants for a resource with this `targetTracking` (YAML flow map),
/// with the quota unknown so maxCapacity applies as written.
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
    )
    .unwrap()
}
