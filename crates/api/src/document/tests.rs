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
        problems.contains("spec.schedulez: unknown field; did you mean schedules?"),
        "{problems}"
    );
    // A key like no field at all: where to look the fields up.
    let unlike = format!("{GOOD}  pleaseScale: []\n");
    let problems = parse_manifests("x.yaml", &unlike).unwrap_err().to_string();
    assert!(
        problems.contains(
            "spec.pleaseScale: unknown field; check its spelling against `kubectl explain aes.spec`"
        ),
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

#[test]
fn a_misspelt_required_field_is_named_beside_the_one_it_leaves_missing() {
    let at = "f.yaml: document 1 (ml/sdxl): ";
    let bad = GOOD.replace("maxCapacity: 20", "maxCapacty: 4");
    let err = parse_manifests("f.yaml", &bad).unwrap_err();
    assert_eq!(
        err.problems,
        [
            format!("{at}spec.maxCapacity: required field is missing"),
            format!("{at}spec.maxCapacty: unknown field; did you mean maxCapacity?"),
        ]
    );
    // Deeper, in a list, in case only, and in metadata, which the CRD leaves to Kubernetes.
    for (from, to, want) in [
        (
            "targetTracking: {targetValue: 5}",
            "targetTracking: {targetVaule: 5}",
            "spec.targetTracking.targetVaule: unknown field; did you mean targetValue?",
        ),
        (
            "targetValue: 5}",
            "targetValue: 5}\n  schedules: [{name: a, schedule: 'rate(1 hour)', minCapacity: 1, timezone: UTC}]",
            "spec.schedules[0].timezone: unknown field; did you mean timeZone?",
        ),
        (
            "namespace: ml",
            "namespase: ml",
            "metadata.namespase: unknown field; did you mean namespace?",
        ),
        ("spec:", "sepc:", "sepc: unknown field; did you mean spec?"),
    ] {
        let text = parse_manifests("f.yaml", &GOOD.replace(from, to))
            .unwrap_err()
            .to_string();
        assert!(text.contains(want), "{want}: {text}");
    }
    // A misspelt name leaves the resource without one: both are said.
    let text = parse_manifests("f.yaml", &GOOD.replace("{name: sdxl", "{nmae: sdxl"))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("metadata.name: required: give the resource a name")
            && text.contains("metadata.nmae: unknown field; did you mean name?"),
        "{text}"
    );
    // As close to two fields as to one: neither is guessed.
    assert_eq!(
        misspelling_of("mCapacity", ["maxCapacity", "minCapacity"]),
        None
    );
    assert_eq!(misspelling_of("regoin", ["region"]), Some("region"));
    assert_eq!(misspelling_of("roles", ["region", "roleArn"]), None);
}

#[test]
fn a_value_read_as_a_boolean_or_number_says_to_quote_it() {
    for (spelt, read_as) in [
        ("y", "the boolean true"),
        ("yes", "the boolean true"),
        ("On", "the boolean true"),
        ("no", "the boolean false"),
        ("true", "the boolean true"),
        ("0123", "the number 123.0"),
        ("42", "the number 42"),
    ] {
        let bad = GOOD.replace("name: sdxl,", &format!("name: {spelt},"));
        let err = parse_manifests("f.yaml", &bad).unwrap_err();
        assert_eq!(
            err.problems,
            [format!(
                "f.yaml: document 1: metadata.name: the unquoted {spelt} is read as {read_as}, not as text; quote it: name: \"{spelt}\""
            )]
        );
    }
    // Any field that takes text, through the type check.
    for (from, to, want) in [
        (
            "endpointName: sdxl-async",
            "endpointName: 1e3",
            "spec.endpointName: an unquoted value is read as the number 1000.0, not as text; quote it as you wrote it",
        ),
        (
            "namespace: ml",
            "namespace: off",
            "metadata.namespace: the unquoted off is read as the boolean false, not as text; quote it: namespace: \"off\"",
        ),
        (
            "targetValue: 5}",
            "targetValue: 5}\n  schedules: [{name: n, schedule: 'rate(1 hour)', minCapacity: 1}]",
            "spec.schedules[0].name: the unquoted n is read as the boolean false, not as text; quote it: name: \"n\"",
        ),
    ] {
        let text = parse_manifests("f.yaml", &GOOD.replace(from, to))
            .unwrap_err()
            .to_string();
        assert!(text.contains(want), "{want}: {text}");
    }
    // Quoted, each is the text it reads as.
    let quoted = GOOD.replace("name: sdxl,", "name: \"y\",");
    assert_eq!(
        parse_manifests("f.yaml", &quoted).unwrap()[0]
            .resource
            .metadata
            .name
            .as_deref(),
        Some("y")
    );
}

#[test]
fn yaml_errors_name_the_file_and_one_position_in_our_words() {
    let duplicate = GOOD.replace(
        "  maxCapacity: 20\n",
        "  maxCapacity: 20\n  maxCapacity: 30\n",
    );
    let err = parse_manifests("dup.yaml", &duplicate).unwrap_err();
    assert_eq!(
        err.problems,
        [
            "dup.yaml:9:3: invalid YAML: the key `maxCapacity` appears twice in one mapping; keep one"
        ]
    );
    let not_finite = GOOD.replace("targetValue: 5", "targetValue: .nan");
    let err = parse_manifests("nan.yaml", &not_finite).unwrap_err();
    assert_eq!(
        err.problems,
        [
            "nan.yaml:9:33: invalid YAML: .nan is not a finite number, which no field takes; quote it if it is text"
        ]
    );
    for broken in [
        "spec: [unclosed",
        "a: b\n c: d\n",
        "a: *nowhere\n",
        "a: 'open\n",
    ] {
        let text = parse_manifests("broken.yaml", broken)
            .unwrap_err()
            .to_string();
        assert!(text.starts_with("broken.yaml:"), "{text}");
        for leak in ["<input>", "Options", "policy", "\n"] {
            assert!(!text.contains(leak), "{leak}: {text}");
        }
        // One position: file, line and column, and no second one.
        let position = text.split(": ").next().unwrap();
        assert_eq!(position.split(':').count(), 3, "{text}");
        assert!(!text.contains("line") && !text.contains("column"), "{text}");
    }
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
    let text = parse_manifests("f.yaml", broken).unwrap_err().to_string();
    assert!(text.starts_with("f.yaml:1:"), "{text}");
    assert!(text.contains(": invalid YAML: "), "{text}");
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
