//! The install manifests: `kubectl kustomize deploy/` builds, every object parses as its
//! Kubernetes type, the Deployment and RBAC are as locked down as intended, and the copies of the
//! CRD and the Argo CD health check match their sources.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kustomize() -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", root().join("deploy").to_str().unwrap()])
        .output()
        .expect("kubectl is needed for this test (it ships with the machine image)");
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/ failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

#[test]
fn kustomize_builds_and_every_object_parses_as_its_type() {
    let objects = kustomize();
    let mut kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "Namespace",
            "Role",
            "RoleBinding",
            "ServiceAccount"
        ]
    );
    for object in &objects {
        let parsed = match object["kind"].as_str().unwrap() {
            "Namespace" => serde_json::from_value::<Namespace>(object.clone()).map(drop),
            "ServiceAccount" => serde_json::from_value::<ServiceAccount>(object.clone()).map(drop),
            "ClusterRole" => serde_json::from_value::<ClusterRole>(object.clone()).map(drop),
            "ClusterRoleBinding" => {
                serde_json::from_value::<ClusterRoleBinding>(object.clone()).map(drop)
            }
            "Role" => serde_json::from_value::<Role>(object.clone()).map(drop),
            "RoleBinding" => serde_json::from_value::<RoleBinding>(object.clone()).map(drop),
            "Deployment" => serde_json::from_value::<Deployment>(object.clone()).map(drop),
            "CustomResourceDefinition" => {
                serde_json::from_value::<CustomResourceDefinition>(object.clone()).map(drop)
            }
            other => panic!("unexpected kind {other}"),
        };
        parsed.unwrap_or_else(|e| panic!("{} does not parse: {e}", object["kind"]));
    }
    for object in objects.iter().filter(|o| {
        o["kind"] != "Namespace"
            && !o["kind"].as_str().unwrap().starts_with("Cluster")
            && o["kind"] != "CustomResourceDefinition"
    }) {
        assert_eq!(
            object["metadata"]["namespace"], "asyncscale-system",
            "{} is namespaced",
            object["kind"]
        );
    }
}

#[test]
fn the_deployment_runs_two_locked_down_replicas_with_leader_election_and_probes() {
    let objects = kustomize();
    let deployment: Deployment =
        serde_json::from_value(one(&objects, "Deployment").clone()).unwrap();
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("asyncscale"));
    let pod_security = pod.security_context.unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap();
    assert_eq!(args[0], "run");
    assert!(args.contains(&"--leader-elect".to_string()));
    assert!(args.contains(&"--log-format=json".to_string()));
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.unwrap().drop,
        Some(vec!["ALL".to_string()])
    );
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.clone().unwrap().http_get.unwrap().path.unwrap()
    };
    assert_eq!(probe_path(&container.liveness_probe), "/healthz");
    assert_eq!(probe_path(&container.readiness_probe), "/readyz");
    let resources = container.resources.clone().unwrap();
    assert!(resources.requests.is_some() && resources.limits.is_some());
    let env: Vec<String> = container
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(env.contains(&"POD_NAME".to_string()) && env.contains(&"POD_NAMESPACE".to_string()));
}

#[test]
fn rbac_grants_only_what_the_controller_uses() {
    let objects = kustomize();
    let role: ClusterRole = serde_json::from_value(one(&objects, "ClusterRole").clone()).unwrap();
    let rules: Vec<(String, String, Vec<String>)> = role
        .rules
        .unwrap()
        .into_iter()
        .flat_map(|r| {
            let verbs = r.verbs.clone();
            let group = r.api_groups.unwrap()[0].clone();
            r.resources
                .unwrap()
                .into_iter()
                .map(move |res| (group.clone(), res, verbs.clone()))
        })
        .collect();
    let expect = |g: &str, r: &str, v: &[&str]| {
        (
            g.to_string(),
            r.to_string(),
            v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        rules,
        [
            expect(
                "asyncscale.io",
                "asyncendpointscalings",
                &["get", "list", "watch", "patch"]
            ),
            expect("asyncscale.io", "asyncendpointscalings/status", &["patch"]),
            expect("events.k8s.io", "events", &["create", "patch"]),
        ]
    );
    let lease_role: Role = serde_json::from_value(one(&objects, "Role").clone()).unwrap();
    let lease_rule = &lease_role.rules.unwrap()[0];
    assert_eq!(
        lease_rule.resources.as_deref(),
        Some(&["leases".to_string()][..])
    );
}

#[test]
fn every_copy_of_the_crd_is_current() {
    let generated = asyncscale_api::crd_yaml();
    for copy in [
        "crds/asyncendpointscalings.asyncscale.io.yaml",
        "deploy/base/crd.yaml",
        "deploy/helm/asyncscale/crds/asyncendpointscalings.asyncscale.io.yaml",
    ] {
        let text = std::fs::read_to_string(root().join(copy)).unwrap();
        assert!(text == generated, "{copy} is stale: run `make crd`");
    }
}

#[test]
fn the_argocd_cm_snippet_carries_the_tested_health_check() {
    let script = std::fs::read_to_string(root().join("deploy/argocd/health.lua")).unwrap();
    let cm: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("deploy/argocd/argocd-cm.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        cm["data"]["resource.customizations.health.asyncscale.io_AsyncEndpointScaling"].as_str(),
        Some(script.as_str())
    );
}

#[test]
fn the_helm_chart_values_parse_and_name_every_setting_the_templates_use() {
    let values: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("deploy/helm/asyncscale/values.yaml")).unwrap(),
    )
    .unwrap();
    let templates = std::fs::read_dir(root().join("deploy/helm/asyncscale/templates")).unwrap();
    for entry in templates {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for use_site in text.split(".Values.").skip(1) {
            let path: String = use_site
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '.')
                .collect();
            let path = path.trim_end_matches('.');
            let found = path.split('.').try_fold(&values, |node, key| node.get(key));
            assert!(found.is_some(), "values.yaml has no {path}");
        }
    }
}
