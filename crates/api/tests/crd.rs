//! The CRD is generated from the Rust types; these tests keep the committed copy, the schema's
//! rules and the Rust validator in step.

use asyncscale_api::{crd_yaml, rules};
use serde_json::Value;

fn committed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crds/asyncendpointscalings.asyncscale.io.yaml")
}

#[test]
fn committed_crd_is_current() {
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    if committed != crd_yaml() {
        panic!(
            "crds/asyncendpointscalings.asyncscale.io.yaml is stale: run `cargo run -p asyncscale -- crd > crds/asyncendpointscalings.asyncscale.io.yaml` (or `make crd`)"
        );
    }
}

fn schema() -> Value {
    let crd = asyncscale_api::crd();
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
        .unwrap()
        .clone()
}

fn at<'a>(schema: &'a Value, dotted: &str) -> &'a Value {
    // `list[]` stands for the list's items.
    dotted
        .split('.')
        .fold(schema, |node, key| match key.strip_suffix("[]") {
            Some(list) => &node["properties"][list]["items"],
            None => &node["properties"][key],
        })
}

#[test]
fn names_and_scope_are_as_documented() {
    let crd = asyncscale_api::crd();
    assert_eq!(
        crd["metadata"]["name"],
        "asyncendpointscalings.asyncscale.io"
    );
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "aes");
    assert_eq!(crd["spec"]["names"]["categories"][0], "sagemaker");
    let columns: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Endpoint",
            "Min",
            "Max",
            "Effective-Max",
            "Instances",
            "Ready",
            "Reason",
            "Age"
        ]
    );
    assert!(crd["spec"]["versions"][0]["subresources"]["status"].is_object());
}

#[test]
fn every_cel_rule_is_in_the_schema_where_the_validator_reports_it() {
    let schema = schema();
    for rule in rules::ALL {
        let node = at(&schema, rule.path);
        let found = node["x-kubernetes-validations"]
            .as_array()
            .is_some_and(|v| {
                v.iter()
                    .any(|r| r["rule"] == rule.cel && r["message"] == rule.message)
            });
        assert!(found, "rule {:?} missing at {}", rule.cel, rule.path);
    }
}

#[test]
fn bounds_and_patterns_are_in_the_schema() {
    let schema = schema();
    assert_eq!(
        at(&schema, "spec.endpointName")["pattern"],
        rules::SAGEMAKER_NAME_PATTERN
    );
    assert_eq!(at(&schema, "spec.endpointName")["maxLength"], 63);
    assert_eq!(
        at(&schema, "spec.instanceType")["pattern"],
        rules::INSTANCE_TYPE_PATTERN
    );
    assert_eq!(
        at(&schema, "spec.minCapacity")["minimum"].as_f64(),
        Some(0.0)
    );
    assert_eq!(
        at(&schema, "spec.maxCapacity")["minimum"].as_f64(),
        Some(1.0)
    );
    assert_eq!(
        at(&schema, "spec.targetTracking.targetValue")["exclusiveMinimum"],
        true
    );
    assert_eq!(
        at(&schema, "spec.scaleFromZero.scalingAdjustment")["minimum"].as_f64(),
        Some(1.0)
    );
    assert_eq!(at(&schema, "spec.variantName")["default"], "AllTraffic");
    let required: Vec<&str> = at(&schema, "spec")["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        [
            "endpointName",
            "instanceType",
            "maxCapacity",
            "targetTracking"
        ]
    );
    let quota_policy = at(&schema, "spec.quota.policy");
    assert_eq!(
        quota_policy["enum"],
        serde_json::json!(["Share", "Clamp", "Ignore"])
    );
}

#[test]
fn conditions_are_a_list_map_keyed_by_type() {
    let conditions = at(&schema(), "status.conditions").clone();
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
}

/// `kubectl explain` shows descriptions; every spec and status field must have one.
#[test]
fn every_field_has_a_description() {
    fn walk(node: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = node["properties"].as_object() {
            for (key, child) in props {
                let child_path = format!("{path}.{key}");
                if child["description"].as_str().is_none_or(str::is_empty) {
                    missing.push(child_path.clone());
                }
                walk(child, &child_path, missing);
            }
        }
        if node["items"].is_object() {
            walk(&node["items"], path, missing);
        }
    }
    let schema = schema();
    let mut missing = Vec::new();
    walk(&schema["properties"]["spec"], "spec", &mut missing);
    walk(&schema["properties"]["status"], "status", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

#[test]
fn descriptions_break_only_between_paragraphs() {
    let crd = asyncscale_api::crd();
    let quota = crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/quota/properties/policy/description").unwrap();
    let text = quota.as_str().unwrap();
    assert!(!text.contains('\n'), "{text}");
    assert!(
        text.contains("Ignore: maxCapacity is used as written"),
        "{text}"
    );
}
