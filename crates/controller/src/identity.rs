//! Who a resource is, to AWS tags and to people.

use asyncscale_api::{ADOPT_ANNOTATION, AsyncEndpointScaling};
use asyncscale_core::Owner;

/// `namespace/name`, or just the name when the manifest has no namespace.
pub fn display_name(resource: &AsyncEndpointScaling) -> String {
    let name = resource.metadata.name.clone().unwrap_or_default();
    match &resource.metadata.namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name,
    }
}

/// The owner recorded in AWS tags; a manifest without a namespace is in `default`, as kubectl would put it.
pub fn owner_of(resource: &AsyncEndpointScaling) -> Owner {
    Owner {
        namespace: resource
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        name: resource.metadata.name.clone().unwrap_or_default(),
        uid: resource.metadata.uid.clone(),
    }
}

/// `asyncscale.io/adopt: "true"`: take over a scalable target that nobody owns.
pub fn wants_adoption(resource: &AsyncEndpointScaling) -> bool {
    resource
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ADOPT_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// This process's name in Events and the Lease when POD_NAME is not set.
pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "asyncscale".to_string())
}
