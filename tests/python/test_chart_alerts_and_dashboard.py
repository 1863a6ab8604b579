"""The Helm chart's on-call parts, rendered by the real Helm and checked by the real promtool (both
built from their Go modules by `make controlplane`): the PrometheusRule's rules pass `promtool
check rules`, and its alerts pass the unit tests of tests/alerts/alerts_test.yaml on made-up
series. The Grafana dashboard is valid JSON in a ConfigMap the sidecar loads. That every metric
both query exists in a running controller's /metrics is checked by
`kubectl_apply_reconciles_through_the_controller_and_delete_cleans_aws`
(crates/controller/tests/end_to_end/cluster.rs).
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "asyncscale"
BIN = ROOT / "tests" / "controlplane" / "bin"


def tool(name):
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: `make controlplane` builds it")
    return str(path)


def render(*values):
    args = [tool("helm"), "template", "asyncscale", str(CHART), "--namespace", "asyncscale"]
    for value in values:
        args += ["--set", value]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def of_kind(docs, kind):
    return [doc for doc in docs if doc["kind"] == kind]


def rules_file(tmp_path, *values):
    """The PrometheusRule's groups, as the rule file Prometheus would load."""
    (rule,) = of_kind(render("prometheusRule.enabled=true", *values), "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


def promtool(*args, cwd):
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, cwd=cwd)


def test_promtool_checks_the_rules_and_passes_each_alerts_unit_tests(tmp_path):
    rules_file(tmp_path)
    shutil.copy(ROOT / "tests" / "alerts" / "alerts_test.yaml", tmp_path)
    checked = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout
    tested = promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_unit_tests_fail_when_an_alert_is_changed(tmp_path):
    """So that a promtool that passed everything would fail here: the quota alert at 50% fires
    for an instance type the tests expect to stay quiet."""
    rules_file(tmp_path, "prometheusRule.quotaUsedRatio=0.5")
    shutil.copy(ROOT / "tests" / "alerts" / "alerts_test.yaml", tmp_path)
    tested = promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "AsyncscaleInstanceQuotaNearlyExhausted" in tested.stdout + tested.stderr


def test_alerts_and_dashboard_are_off_by_default_and_thresholds_follow_the_values(tmp_path):
    defaults = render()
    assert of_kind(defaults, "PrometheusRule") == []
    assert of_kind(defaults, "ConfigMap") == []
    assert of_kind(defaults, "PodMonitor") == []
    rules = yaml.safe_load(rules_file(tmp_path, "resyncSeconds=30", "prometheusRule.backlogWaitSeconds=600").read_text())
    exprs = {r["alert"]: r["expr"] for group in rules["groups"] for r in group["rules"]}
    # Three resyncs and a minute.
    assert exprs["AsyncscaleObservationsStale"].strip().endswith("> 150")
    assert exprs["AsyncscaleBacklogWithoutCapacity"].strip().endswith("> 600")
    (rule,) = of_kind(render("prometheusRule.enabled=true", "prometheusRule.labels.release=kube-prometheus-stack"), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_values_that_would_render_broken_rules_are_refused_by_name(tmp_path):
    for value, says in [
        ("env[0].name=AWS_USE_FIPS_ENDPOINT,env[0].value=true", "/env/0/value"),
        ("prometheusRule.quotaUsedRatio=90%", "quotaUsedRatio"),
        ("prometheusRule.staleSeconds=5m", "staleSeconds"),
        ("prometheusRule.staleSecond=300", "staleSecond"),
    ]:
        # --set turns `true` into a boolean, which an env value may not be; --set-string keeps
        # the others strings.
        flag = "--set" if value.startswith("env") else "--set-string"
        args = [tool("helm"), "template", "asyncscale", str(CHART), flag, value]
        out = subprocess.run(args, capture_output=True, text=True)
        assert out.returncode != 0, value
        assert says in out.stderr, (value, out.stderr)
    # `--set` passes a decimal as a string: taken.
    rules = yaml.safe_load(rules_file(tmp_path, "prometheusRule.quotaUsedRatio=0.8").read_text())
    (nearly,) = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == "AsyncscaleInstanceQuotaNearlyExhausted"]
    assert ") >= 0.8" in nearly["expr"]


def test_values_users_pass_are_taken_and_a_second_writer_is_refused(tmp_path):
    # As a subchart (Helm passes `global`), with the sidecar's label given by --set (a number).
    docs = render("global.imageRegistry=registry.example", "grafanaDashboard.enabled=true",
                  "grafanaDashboard.labels.grafana_dashboard=1", "podMonitor.enabled=true",
                  "podMonitor.interval=1m30s", "nodeSelector.role=controllers",
                  "imagePullSecrets[0].name=registry")
    (config_map,) = of_kind(docs, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (deployment,) = of_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"role": "controllers"}
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    # Two replicas without leader election would both write to AWS.
    args = [tool("helm"), "template", "asyncscale", str(CHART), "--set", "leaderElection.enabled=false"]
    refused = subprocess.run(args, capture_output=True, text=True)
    assert refused.returncode != 0 and "replicaCount" in refused.stderr, refused.stderr
    assert of_kind(render("leaderElection.enabled=false", "replicaCount=1"), "Deployment")


def test_an_extra_label_cannot_duplicate_the_charts_own():
    (rule,) = of_kind(
        render("prometheusRule.enabled=true", "prometheusRule.labels.app\\.kubernetes\\.io/name=other"),
        "PrometheusRule",
    )
    assert rule["metadata"]["labels"]["app.kubernetes.io/name"] == "asyncscale"


def test_every_alert_has_its_runbook_section(tmp_path):
    rules = yaml.safe_load(rules_file(tmp_path).read_text())
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    # GitHub's anchors: the heading, lower-cased.
    anchors = {line[3:].strip().lower() for line in runbooks.splitlines() if line.startswith("## ")}
    for group in rules["groups"]:
        for rule in group["rules"]:
            url = rule["annotations"]["runbook_url"]
            assert url.endswith("#" + rule["alert"].lower()), url
            assert rule["alert"].lower() in anchors, rule["alert"]
            assert rule["labels"]["severity"] in ("warning", "critical")


def test_the_dashboard_loads_from_a_configmap_the_grafana_sidecar_finds():
    (config_map,) = of_kind(render("grafanaDashboard.enabled=true"), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["asyncscale.json"])
    assert dashboard == json.loads((CHART / "files" / "dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            source = target["datasource"]["uid"]
            if "expr" in target:
                # PromQL: only asyncscale's metrics (the end-to-end test checks they exist).
                assert source == "${datasource}", panel["title"]
                assert re.findall(r"asyncscale_\w+", target["expr"]), target["expr"]
            elif source == "__expr__":
                assert target["type"] == "math", panel["title"]
            else:
                # SageMaker's own per-endpoint metrics (docs/aws-behaviour.md §1), through CloudWatch.
                assert source == "${cloudwatch}", panel["title"]
                assert target["namespace"] == "AWS/SageMaker"
                assert target["metricName"] in {
                    "ApproximateBacklogSize",
                    "ApproximateBacklogSizePerInstance",
                    "ApproximateAgeOfOldestRequest",
                    "HasBacklogWithoutCapacity",
                }, target["metricName"]
                assert target["dimensions"] == {"EndpointName": "$endpoint"}
        for used in re.findall(r"\$\{?(\w+)", json.dumps(panel)):
            assert used in variables | {"__rate_interval", "A", "B", "PROP"}, (panel["title"], used)
