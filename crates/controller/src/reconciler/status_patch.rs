//! Writing status by server-side apply, and only when what this controller last applied says
//! something else (its own managed fields, projected from `metadata.managedFields`).

use asyncscale_api::{AsyncEndpointScaling, AsyncEndpointScalingStatus};
use asyncscale_core::status::same_ignoring_time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::Error;

/// The one field manager of every status asyncscale writes.
pub const FIELD_MANAGER: &str = "asyncscale";

/// Server-side applies `status`; returns the resourceVersion the write produced.
///
/// `force`: the status is this controller's alone to state. Another manager that wrote one of
/// our fields (`kubectl patch --subresource=status`, an older asyncscale under another name) would
/// otherwise make every apply fail with a conflict; forcing takes the field back, and fields only
/// the other manager set are left to it.
pub(super) async fn patch_status(
    api: &Api<AsyncEndpointScaling>,
    obj: &AsyncEndpointScaling,
    status: &AsyncEndpointScalingStatus,
) -> Result<Option<String>, Error> {
    let patch = json!({
        "apiVersion": "asyncscale.io/v1alpha1",
        "kind": "AsyncEndpointScaling",
        "status": status,
    });
    let written = api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(written.resource_version())
}

/// Writes `status` unless the status this controller last applied (its own managed fields, not
/// what other managers added) already says the same, timestamps aside. Comparing with the whole
/// stored status would patch forever when another manager owns a field we do not set: server-side
/// apply never removes it. Returns the resourceVersion the object now has.
pub(super) async fn write_status_if_changed(
    api: &Api<AsyncEndpointScaling>,
    obj: &AsyncEndpointScaling,
    status: &AsyncEndpointScalingStatus,
) -> Result<Option<String>, Error> {
    let ours = last_applied_status(obj);
    if ours.is_some_and(|ours| same_ignoring_time(&ours, status)) {
        return Ok(obj.resource_version());
    }
    patch_status(api, obj, status).await
}

/// The status as this controller last applied it: the stored status cut down to the fields its
/// field manager owns (`metadata.managedFields`), or the whole stored status when no entry of
/// ours is there (an API server that does not track managed fields).
pub fn last_applied_status(obj: &AsyncEndpointScaling) -> Option<AsyncEndpointScalingStatus> {
    let stored = serde_json::to_value(obj.status.as_ref()?).ok()?;
    let ours = obj.meta().managed_fields.as_ref().and_then(|entries| {
        entries.iter().find(|m| {
            m.manager.as_deref() == Some(FIELD_MANAGER)
                && m.operation.as_deref() == Some("Apply")
                && m.subresource.as_deref() == Some("status")
        })
    });
    let projected = match ours.and_then(|m| m.fields_v1.as_ref()) {
        Some(fields) => project(&stored, fields.0.get("f:status")?),
        None => stored,
    };
    serde_json::from_value(projected).ok()
}

/// The parts of `value` that a managedFields `fieldsV1` tree names (`f:` fields, `k:` list-map
/// entries, `v:` set values, `i:` list indices); a leaf names the whole value.
fn project(value: &Value, fields: &Value) -> Value {
    let Some(fields) = fields.as_object().filter(|f| f.keys().any(|k| k != ".")) else {
        return value.clone();
    };
    match value {
        Value::Object(map) => Value::Object(
            fields
                .iter()
                .filter_map(|(k, sub)| {
                    let name = k.strip_prefix("f:")?;
                    Some((name.to_string(), project(map.get(name)?, sub)))
                })
                .collect(),
        ),
        // In the list's own order: a list-map's order is the server's, not the field set's.
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| {
                    let sub = fields.iter().find_map(|(k, sub)| {
                        let named = if let Some(key) = k.strip_prefix("k:") {
                            serde_json::from_str::<serde_json::Map<String, Value>>(key).is_ok_and(
                                |key| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)),
                            )
                        } else if let Some(v) = k.strip_prefix("v:") {
                            serde_json::from_str::<Value>(v).is_ok_and(|v| v == *item)
                        } else {
                            k.strip_prefix("i:").and_then(|i| i.parse::<usize>().ok())
                                == Some(index)
                        };
                        named.then_some(sub)
                    })?;
                    Some(project(item, sub))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}
