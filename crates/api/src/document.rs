//! Reading `AsyncEndpointScaling` manifests from (multi-document) YAML, with the checks the API
//! server would make: apiVersion/kind, unknown fields, types, bounds and CEL rules.

use serde_json::Value;

use crate::shown::{quoted, shortened};
use crate::{AsyncEndpointScaling, validate_spec};

/// A resource read from a manifest, with where it came from.
#[derive(Debug, Clone)]
pub struct ParsedResource {
    /// 1-based index of the YAML document in its file.
    pub document: usize,
    pub resource: AsyncEndpointScaling,
}

/// Everything wrong with one manifest file; each line names the document and the field.
#[derive(Debug, thiserror::Error)]
#[error("{}", problems.join("\n"))]
pub struct ManifestError {
    pub problems: Vec<String>,
}

const API_VERSION: &str = "asyncscale.io/v1alpha1";
const KIND: &str = "AsyncEndpointScaling";

/// Parses every document of `yaml`. `source` (a file name) prefixes each problem line.
/// Either every document is valid and all are returned, or nothing is.
pub fn parse_manifests(source: &str, yaml: &str) -> Result<Vec<ParsedResource>, ManifestError> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml).map_err(|e| ManifestError {
        problems: vec![format!(
            "{source}: invalid YAML: {}",
            shortened(&one_line(&e.to_string()))
        )],
    })?;
    let mut parsed = Vec::new();
    let mut problems = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        if document.is_null() {
            continue; // an empty document, e.g. a trailing `---`
        }
        let number = index + 1;
        match parse_document(document) {
            Ok(resource) => parsed.push(ParsedResource {
                document: number,
                resource,
            }),
            Err((name, errors)) => {
                let at = match name {
                    Some(name) => format!("{source}: document {number} ({name})"),
                    None => format!("{source}: document {number}"),
                };
                problems.extend(errors.into_iter().map(|e| format!("{at}: {e}")));
            }
        }
    }
    if parsed.is_empty() && problems.is_empty() {
        problems.push(format!("{source}: no {KIND} documents found"));
    }
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(ManifestError { problems })
    }
}

type DocumentProblems = (Option<String>, Vec<String>);

fn parse_document(document: Value) -> Result<AsyncEndpointScaling, DocumentProblems> {
    let name = document
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let namespace = document
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    let label = match (namespace, &name) {
        (Some(ns), Some(n)) => Some(format!("{ns}/{n}")),
        _ => name.clone(),
    }
    .map(|l| shorten(&l));
    let fail = |errors: Vec<String>| (label.clone(), errors);
    let api_version = document
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = document.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != API_VERSION || kind != KIND {
        return Err(fail(vec![format!(
            "expected apiVersion {API_VERSION} and kind {KIND}, found apiVersion {} and kind {}",
            quoted(api_version),
            quoted(kind)
        )]));
    }
    if name.as_deref().unwrap_or("").is_empty() {
        return Err(fail(vec![
            "metadata.name: required: give the resource a name".into(),
        ]));
    }
    // What the API server refuses, refused here too (Kubernetes' DNS-1123 rules).
    let mut meta_errors = Vec::new();
    if let Some(n) = name.as_deref()
        && !is_dns_subdomain(n)
    {
        meta_errors.push(format!(
            "metadata.name: {:?} is not a valid name: at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
            shorten(n)
        ));
    }
    if let Some(ns) = namespace
        && !is_dns_label(ns)
    {
        meta_errors.push(format!(
            "metadata.namespace: {:?} is not a valid namespace: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
            shorten(ns)
        ));
    }
    if !meta_errors.is_empty() {
        return Err(fail(meta_errors));
    }
    let resource: AsyncEndpointScaling = serde_path_to_error::deserialize(document.clone())
        .map_err(|e| fail(vec![describe_type_error(&e)]))?;
    let mut errors = Vec::new();
    let round_trip = serde_json::to_value(&resource).expect("resources always serialise");
    unknown_fields(&document, &round_trip, "", &mut errors);
    if let Err(field_errors) = validate_spec(&resource.spec) {
        errors.extend(field_errors.iter().map(ToString::to_string));
    }
    if errors.is_empty() {
        Ok(resource)
    } else {
        Err(fail(errors))
    }
}

fn describe_type_error(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    if let Some(field) = inner.strip_prefix("missing field ") {
        let field = field.trim_matches('`');
        let at = if path == "." {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return format!("{at}: required field is missing");
    }
    format!("{path}: {}", shortened(&inner))
}

/// Fields present in the input but not in the typed round trip are unknown to the schema (the
/// API server prunes or, under `kubectl --validate=strict`, rejects them). `status` and server-set
/// metadata are not the author's to give, so only spec and the author's metadata are compared.
fn unknown_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    // A list's items, each against its typed twin (`spec.schedules[0].timezone`).
    if let (Value::Array(items), Value::Array(typed_items)) = (input, typed) {
        for (i, (item, typed_item)) in items.iter().zip(typed_items).enumerate() {
            unknown_fields(item, typed_item, &format!("{path}[{i}]"), out);
        }
        return;
    }
    let (Value::Object(input), Value::Object(typed)) = (input, typed) else {
        return;
    };
    for (key, value) in input {
        // A key that could be a field name is shown as written; anything else (huge, with
        // spaces or line breaks) quoted and cut, and without a `kubectl explain` hint.
        let plain =
            key.chars().count() <= 64 && !key.chars().any(|c| c.is_whitespace() || c.is_control());
        let shown_key = if plain { key.clone() } else { quoted(key) };
        let child = if path.is_empty() {
            shown_key
        } else {
            format!("{path}.{shown_key}")
        };
        if path.is_empty() && !matches!(key.as_str(), "spec" | "apiVersion" | "kind" | "metadata") {
            if key != "status" {
                out.push(format!(
                    "{child}: unknown field; an {KIND} has apiVersion, kind, metadata and spec"
                ));
            }
            continue;
        }
        if path == "metadata" {
            continue; // ObjectMeta is Kubernetes' own; kube's type keeps every field it knows.
        }
        match typed.get(key) {
            Some(typed_value) => unknown_fields(value, typed_value, &child, out),
            None if value.is_null() => {}
            // A list the typed form leaves out when empty.
            None if OMITTED_WHEN_EMPTY.contains(&child.as_str())
                && value.as_array().is_some_and(Vec::is_empty) => {}
            None if plain => out.push(format!(
                "{child}: unknown field; check its spelling against `kubectl explain aes.{}`",
                explain_path(path)
            )),
            None => out.push(format!("{child}: unknown field")),
        }
    }
}

/// Fields the typed form does not write when they are empty lists.
const OMITTED_WHEN_EMPTY: [&str; 1] = ["spec.schedules"];

/// `spec.schedules[0]` as `kubectl explain` takes it: `spec.schedules`.
fn explain_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => out.push(c),
            _ => {}
        }
    }
    out
}

/// Letters, digits and '-', starting and ending with a letter or digit (one part of a DNS-1123 name).
fn is_dns_part(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.chars().all(|c| alnum(c) || c == '-') && s.starts_with(alnum) && s.ends_with(alnum)
}

/// Kubernetes' DNS-1123 label: namespaces.
fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_dns_part(s)
}

/// Kubernetes' DNS-1123 subdomain: names of custom resources (k8s.io/apimachinery
/// `IsDNS1123Subdomain`: at most 253 characters, parts joined by '.').
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_part)
}

/// A value as it appears in an error message: cut to a readable length.
fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}… ({} characters)", &s[..cut], s.chars().count()),
        None => s.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: asyncscale.io/v1alpha1
kind: AsyncEndpointScaling
metadata: {name: sdxl, namespace: ml}
spec:
  endpointName: sdxl-async
  instanceType: ml.g4dn.xlarge
  maxCapacity: 20
  targetTracking: {targetValue: 5}
"#;

    #[test]
    fn defaults_fill_in_every_optional_field() {
        let parsed = parse_manifests("x.yaml", GOOD).unwrap();
        let spec = &parsed[0].resource.spec;
        assert_eq!(spec.variant_name, "AllTraffic");
        assert_eq!(spec.min_capacity, 0);
        assert_eq!(spec.target_tracking.scale_in_cooldown_seconds, 300);
        assert_eq!(spec.target_tracking.scale_out_cooldown_seconds, 300);
        assert!(spec.scale_from_zero.enabled);
        assert_eq!(spec.scale_from_zero.period_seconds, 60);
        assert_eq!(spec.scale_from_zero.evaluation_periods, 2);
        assert_eq!(spec.scale_from_zero.datapoints_to_alarm, 2);
        assert_eq!(spec.scale_from_zero.scaling_adjustment, 1);
        assert_eq!(spec.quota.policy, crate::QuotaPolicy::Share);
        assert_eq!(spec.deletion_policy, crate::DeletionPolicy::Delete);
    }

    #[test]
    fn a_misspelt_field_of_a_schedule_is_refused_and_an_empty_list_is_not() {
        let typo = format!(
            "{GOOD}  schedules:\n    - {{name: up, schedule: 'rate(1 hour)', minCapacity: 1, timezone: Europe/Berlin}}\n"
        );
        let problems = parse_manifests("x.yaml", &typo).unwrap_err().to_string();
        assert!(
            problems.contains("spec.schedules[0].timezone: unknown field"),
            "{problems}"
        );
        // Only a field the type has may be empty and absent from the typed form.
        let misspelt_empty = format!("{GOOD}  schedulez: []\n");
        let problems = parse_manifests("x.yaml", &misspelt_empty)
            .unwrap_err()
            .to_string();
        assert!(
            problems.contains("spec.schedulez: unknown field; check its spelling against `kubectl explain aes.spec`"),
            "{problems}"
        );
        for empty in ["[]", "null", ""] {
            let text = format!("{GOOD}  schedules: {empty}\n");
            let parsed = parse_manifests("x.yaml", &text).unwrap();
            assert!(parsed[0].resource.spec.schedules.is_empty(), "{empty:?}");
        }
    }

    #[test]
    fn multi_document_files_yield_each_resource() {
        let two = format!("{GOOD}---\n{}\n---\n", GOOD.replace("sdxl", "other"));
        let parsed = parse_manifests("x.yaml", &two).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].document, 2);
    }

    #[test]
    fn every_problem_gets_a_line_naming_file_document_and_field() {
        let bad = GOOD
            .replace(
                "maxCapacity: 20",
                "maxCapacity: 0\n  minCapacity: 3\n  maxCapcity: 4",
            )
            .replace("targetValue: 5", "targetValue: 0");
        let err = parse_manifests("bad.yaml", &bad).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("bad.yaml: document 1 (ml/sdxl): spec.maxCapcity: unknown field"),
            "{text}"
        );
        assert!(
            text.contains("spec.maxCapacity: must be at least 1 (got 0)"),
            "{text}"
        );
        assert!(
            text.contains("spec: minCapacity must be less than or equal to maxCapacity"),
            "{text}"
        );
        assert!(
            text.contains("spec.targetTracking.targetValue: must be greater than 0"),
            "{text}"
        );
        assert_eq!(err.problems.len(), 4, "{text}");
    }

    #[test]
    fn missing_required_field_is_named() {
        let bad = GOOD.replace("  instanceType: ml.g4dn.xlarge\n", "");
        let text = parse_manifests("f.yaml", &bad).unwrap_err().to_string();
        assert!(
            text.contains("spec.instanceType: required field is missing"),
            "{text}"
        );
    }

    /// A huge value is named, not echoed: the error stays a few lines whatever the input.
    #[test]
    fn a_huge_value_is_cut_in_every_error_that_names_it() {
        let huge = "x".repeat(5_000_000);
        let cases = [
            GOOD.replace("endpointName: sdxl-async", &format!("endpointName: {huge}")),
            GOOD.replace("maxCapacity: 20", &format!("maxCapacity: {huge}")),
            format!("{GOOD}\n  {huge}: [unclosed"),
            GOOD.replace("kind: AsyncEndpointScaling", &format!("kind: {huge}")),
            GOOD.replace(
                "  maxCapacity: 20",
                &format!("  maxCapacity: 20\n  \"{huge} with space\": 1"),
            ),
            format!("{GOOD}{huge}: 1\n"),
        ];
        for bad in cases {
            let text = parse_manifests("f.yaml", &bad).unwrap_err().to_string();
            assert!(text.len() < 1_000, "{} bytes: {}", text.len(), &text[..200]);
        }
    }

    #[test]
    fn wrong_type_is_named_with_its_path() {
        let bad = GOOD.replace("maxCapacity: 20", "maxCapacity: lots");
        let text = parse_manifests("f.yaml", &bad).unwrap_err().to_string();
        assert!(
            text.starts_with("f.yaml: document 1 (ml/sdxl): spec.maxCapacity: invalid type"),
            "{text}"
        );
    }

    #[test]
    fn other_kinds_and_broken_yaml_are_rejected() {
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n";
        assert!(
            parse_manifests("f.yaml", cm)
                .unwrap_err()
                .to_string()
                .contains("expected apiVersion")
        );
        let broken = "spec: [unclosed";
        assert!(
            parse_manifests("f.yaml", broken)
                .unwrap_err()
                .to_string()
                .starts_with("f.yaml: invalid YAML")
        );
        assert!(
            parse_manifests("f.yaml", "")
                .unwrap_err()
                .to_string()
                .contains("no AsyncEndpointScaling")
        );
    }

    #[test]
    fn names_and_namespaces_follow_kubernetes_rules() {
        for (bad, field) in [
            ("name: Bad_Name, namespace: ml", "metadata.name"),
            (
                &*format!("name: {}, namespace: ml", "a".repeat(254)),
                "metadata.name",
            ),
            (
                &*format!("name: sdxl, namespace: {}", "n".repeat(64)),
                "metadata.namespace",
            ),
        ] {
            let doc = GOOD.replace("name: sdxl, namespace: ml", bad);
            let text = parse_manifests("f.yaml", &doc).unwrap_err().to_string();
            assert!(text.contains(&format!("{field}: ")), "{text}");
            assert!(text.len() < 400, "long values are cut: {text}");
        }
        let longest = GOOD.replace(
            "name: sdxl, namespace: ml",
            &format!("name: {}, namespace: {}", "a".repeat(253), "n".repeat(63)),
        );
        assert!(parse_manifests("f.yaml", &longest).is_ok());
    }

    #[test]
    fn one_bad_document_rejects_the_whole_file() {
        let mixed = format!("{GOOD}---\n{}", GOOD.replace("sdxl-async", "-bad-"));
        let err = parse_manifests("f.yaml", &mixed).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(
            err.problems[0].contains("document 2 (ml/sdxl): spec.endpointName"),
            "{err}"
        );
    }
}
