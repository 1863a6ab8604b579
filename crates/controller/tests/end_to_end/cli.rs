//! The real `asyncscale` binary against the real local AWS endpoint (`asyncscale sim serve`),
//! both as separate processes, as a user would run them. AWS state and call counts are read from
//! the endpoint's admin routes.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::{BIN, Process, cli_against, declare_endpoint, http, start_sim};
const RID: &str = "endpoint/sdxl-async/variant/AllTraffic";
const ALARM: &str = "asyncscale-endpoint/sdxl-async/variant/AllTraffic-HasBacklogWithoutCapacity";

struct Sim {
    _process: Process,
    addr: String,
}

fn sim(quotas: &[&str]) -> Sim {
    let (process, addr) = start_sim(quotas);
    Sim {
        _process: process,
        addr,
    }
}

impl Sim {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        http(&self.addr, method, path, headers, body)
    }

    fn state(&self) -> Value {
        serde_json::from_str(&self.http("GET", "/_sim/state", &[], "").1).unwrap()
    }

    fn calls(&self) -> Value {
        serde_json::from_str(&self.http("GET", "/_sim/calls", &[], "").1).unwrap()
    }

    /// Another tool (or a person) changing AWS directly, over the AWS JSON protocols.
    fn aws(&self, target: &str, body: Value) -> (u16, String) {
        let json_version = if target.starts_with("GraniteServiceVersion20100801") {
            "1.0"
        } else {
            "1.1"
        };
        let content_type = format!("application/x-amz-json-{json_version}");
        self.http(
            "POST",
            "/",
            &[("X-Amz-Target", target), ("Content-Type", &content_type)],
            &body.to_string(),
        )
    }
}

fn writes(calls: &Value) -> u64 {
    let ops = calls
        .as_object()
        .unwrap()
        .values()
        .flat_map(|ops| ops.as_object().unwrap());
    ops.filter(|(op, _)| asyncscale_engine::calls::is_write(op))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum()
}

fn total_calls(calls: &Value) -> u64 {
    calls
        .as_object()
        .unwrap()
        .values()
        .flat_map(|ops| ops.as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum()
}

fn manifest(dir: &tempdir::Dir, name: &str, body: &str) -> PathBuf {
    let path = dir.0.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

mod tempdir {
    pub(crate) struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub(crate) fn new(tag: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("asyncscale-e2e-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

const SDXL: &str = "apiVersion: asyncscale.io/v1alpha1
kind: AsyncEndpointScaling
metadata: {name: sdxl, namespace: ml}
spec:
  endpointName: sdxl-async
  instanceType: ml.g4dn.xlarge
  maxCapacity: 20
  targetTracking: {targetValue: 5}
";

/// `manifest` with a pre-warm schedule whose maxCapacity (that of the manifest) is above the
/// quota of 4.
fn with_schedule(manifest: &str) -> String {
    format!(
        "{manifest}  schedules:\n    - {{name: prewarm, schedule: cron(50 7 ? * MON-FRI *), timeZone: Europe/Berlin, minCapacity: 1, maxCapacity: 20}}\n"
    )
}

fn scheduled_actions(state: &Value) -> Vec<&Value> {
    state["ScheduledActions"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn cli(sim: &Sim, args: &[&str]) -> Output {
    cli_against(&sim.url(), args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn policy<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["ScalingPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["PolicyName"] == name)
        .unwrap_or_else(|| panic!("no policy {name}"))
}

#[test]
fn apply_sets_up_exactly_the_configuration_that_avoids_both_traps_and_reapply_writes_nothing() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("apply");
    let file = manifest(&dir, "sdxl.yaml", SDXL);
    let file = file.to_str().unwrap();

    let plan = cli(&sim, &["plan", "-f", file]);
    assert_eq!(
        plan.status.code(),
        Some(2),
        "changes pending: {}",
        stderr(&plan)
    );
    assert_eq!(writes(&sim.calls()), 0, "plan never writes");

    let apply = cli(&sim, &["apply", "-f", file]);
    assert!(
        apply.status.success(),
        "{}{}",
        stdout(&apply),
        stderr(&apply)
    );
    let state = sim.state();

    let target = &state["ScalableTargets"][0];
    assert_eq!(target["ResourceId"], RID);
    assert_eq!(
        (
            target["MinCapacity"].as_i64(),
            target["MaxCapacity"].as_i64()
        ),
        (Some(0), Some(4)),
        "max clamped to the quota"
    );
    assert_eq!(target["Tags"]["asyncscale.io/owner"], "ml/sdxl");
    assert_eq!(target["Tags"]["asyncscale.io/managed-by"], "asyncscale");

    let tt = policy(&state, "asyncscale-target-tracking");
    assert_eq!(tt["PolicyType"], "TargetTrackingScaling");
    assert_eq!(
        tt["Configuration"],
        json!({
            "TargetValue": 5.0,
            "CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": "sdxl-async"}], "Statistic": "Average"
            },
            "ScaleInCooldown": 300, "ScaleOutCooldown": 300, "DisableScaleIn": false
        })
    );
    let step = policy(&state, "asyncscale-scale-from-zero");
    assert_eq!(step["PolicyType"], "StepScaling");
    assert_eq!(
        step["Configuration"],
        json!({
            "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average", "Cooldown": 300,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}]
        })
    );

    let alarm = state["MetricAlarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["AlarmName"] == ALARM)
        .expect("our alarm");
    for (field, want) in [
        ("Namespace", json!("AWS/SageMaker")),
        ("MetricName", json!("HasBacklogWithoutCapacity")),
        (
            "Dimensions",
            json!([{"Name": "EndpointName", "Value": "sdxl-async"}]),
        ),
        ("Statistic", json!("Average")),
        ("Period", json!(60)),
        ("EvaluationPeriods", json!(2)),
        ("DatapointsToAlarm", json!(2)),
        ("Threshold", json!(1.0)),
        ("ComparisonOperator", json!("GreaterThanOrEqualToThreshold")),
        ("TreatMissingData", json!("missing")),
        ("AlarmActions", json!([step["PolicyARN"]])),
    ] {
        assert_eq!(alarm[field], want, "alarm {field}");
    }
    assert_eq!(alarm["Tags"]["asyncscale.io/owner"], "ml/sdxl");
    // AWS's own target-tracking alarms exist and are left alone.
    assert_eq!(state["MetricAlarms"].as_array().unwrap().len(), 3);

    let out = stdout(&apply);
    assert!(out.contains("QuotaClamped    True     Clamped"), "{out}");
    assert!(out.contains("Ready           True     Ready"), "{out}");
    // The endpoint as SageMaker reports it, and the quota's share.
    assert!(
        out.contains("endpoint: InService, ml.g4dn.xlarge, instances 0 in service, 0 desired"),
        "{out}"
    );
    assert!(
        out.contains("0 of 4 in use by 1 endpoint; this endpoint may grow to 4"),
        "{out}"
    );
    assert!(out.contains("0 in use, shared by 1 endpoint(s)"), "{out}");

    let before = sim.calls();
    let again = cli(&sim, &["apply", "-f", file]);
    assert!(again.status.success());
    assert!(stdout(&again).contains("in sync: no changes"));
    let after = sim.calls();
    assert_eq!(
        writes(&after),
        writes(&before),
        "a second apply makes no AWS write"
    );
    assert!(stderr(&again).contains(" 0 writes)"), "{}", stderr(&again));
    eprintln!(
        "calls: first apply+plan {} ; no-op apply {}",
        total_calls(&before),
        total_calls(&after) - total_calls(&before)
    );

    let plan = cli(&sim, &["plan", "-f", file]);
    assert_eq!(plan.status.code(), Some(0), "in sync");
}

#[test]
fn apply_restores_out_of_band_drift() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("drift");
    let file = manifest(&dir, "sdxl.yaml", SDXL);
    let file = file.to_str().unwrap();
    assert!(cli(&sim, &["apply", "-f", file]).status.success());

    // Someone raises MaxCapacity back to 20 by hand and edits our alarm.
    let (status, _) = sim.aws(
        "AnyScaleFrontendService.RegisterScalableTarget",
        json!({"ServiceNamespace": "sagemaker", "ResourceId": RID, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "MaxCapacity": 20}),
    );
    assert_eq!(status, 200);
    let (status, body) = sim.aws(
        "GraniteServiceVersion20100801.PutMetricAlarm",
        json!({"AlarmName": ALARM, "Namespace": "AWS/SageMaker", "MetricName": "HasBacklogWithoutCapacity", "Statistic": "Average",
               "Period": 60, "EvaluationPeriods": 5, "Threshold": 1.0, "ComparisonOperator": "GreaterThanOrEqualToThreshold"}),
    );
    assert_eq!(status, 200, "{body}");

    let plan = cli(&sim, &["plan", "-f", file]);
    assert_eq!(plan.status.code(), Some(2));
    let out = stdout(&plan);
    assert!(
        out.contains(
            "~ update scalable target endpoint/sdxl-async/variant/AllTraffic: maxCapacity 20 → 4"
        ),
        "{out}"
    );
    assert!(out.contains("evaluationPeriods 5 → 2"), "{out}");

    assert!(cli(&sim, &["apply", "-f", file]).status.success());
    let state = sim.state();
    assert_eq!(state["ScalableTargets"][0]["MaxCapacity"], 4);
    let alarm = state["MetricAlarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["AlarmName"] == ALARM)
        .unwrap();
    assert_eq!(alarm["EvaluationPeriods"], 2);
    assert_eq!(
        alarm["AlarmActions"],
        json!([policy(&state, "asyncscale-scale-from-zero")["PolicyARN"]])
    );
    assert_eq!(cli(&sim, &["plan", "-f", file]).status.code(), Some(0));
}

#[test]
fn delete_removes_ours_and_spares_another_tools_policy() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("delete");
    let file = manifest(&dir, "sdxl.yaml", SDXL);
    let file = file.to_str().unwrap();
    assert!(cli(&sim, &["apply", "-f", file]).status.success());
    let (status, body) = sim.aws(
        "AnyScaleFrontendService.PutScalingPolicy",
        json!({"PolicyName": "team-nightly-floor", "ServiceNamespace": "sagemaker", "ResourceId": RID,
               "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "PolicyType": "StepScaling",
               "StepScalingPolicyConfiguration": {"AdjustmentType": "ExactCapacity", "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 2}]}}),
    );
    assert_eq!(status, 200, "{body}");
    let apply = cli(&sim, &["apply", "-f", file]);
    assert!(
        stdout(&apply)
            .contains("other tools' policies on the target (left alone): team-nightly-floor"),
        "{}",
        stdout(&apply)
    );

    let delete = cli(&sim, &["delete", "-f", file]);
    assert!(
        delete.status.success(),
        "{}{}",
        stdout(&delete),
        stderr(&delete)
    );
    let state = sim.state();
    let policies: Vec<&str> = state["ScalingPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["PolicyName"].as_str().unwrap())
        .collect();
    assert_eq!(policies, ["team-nightly-floor"]);
    assert!(
        state["MetricAlarms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["AlarmName"] != ALARM),
        "our alarm is gone"
    );
    let target = &state["ScalableTargets"][0];
    assert!(
        target["Tags"].get("asyncscale.io/owner").is_none(),
        "the target kept for the other tool is no longer tagged as ours"
    );

    let again = cli(&sim, &["delete", "-f", file]);
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("nothing of asyncscale's remains"),
        "{}",
        stdout(&again)
    );

    // Without foreign policies the target goes too.
    let other = manifest(
        &dir,
        "other.yaml",
        &SDXL.replace("sdxl-async", "other-async"),
    );
    let other = other.to_str().unwrap();
    assert!(cli(&sim, &["apply", "-f", other]).status.success());
    assert!(cli(&sim, &["delete", "-f", other]).status.success());
    let state = sim.state();
    assert!(
        state["ScalableTargets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["ResourceId"] != "endpoint/other-async/variant/AllTraffic")
    );
    assert_eq!(
        state["MetricAlarms"].as_array().unwrap().len(),
        0,
        "no alarms left, ours or AWS's"
    );
}

/// The example with `deletionPolicy: Retain`.
fn retained_sdxl() -> String {
    SDXL.replace(
        "  maxCapacity: 20\n",
        "  maxCapacity: 20\n  deletionPolicy: Retain\n",
    )
}

#[test]
fn retain_leaves_the_configuration_and_releases_it_for_adoption() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("retain");
    let file = manifest(&dir, "sdxl.yaml", &retained_sdxl());
    let file = file.to_str().unwrap();
    assert!(cli(&sim, &["apply", "-f", file]).status.success());
    let before = sim.state();
    let delete = cli(&sim, &["delete", "-f", file]);
    assert!(delete.status.success(), "{}", stderr(&delete));
    assert!(stdout(&delete).contains("deletionPolicy is Retain"));
    let after = sim.state();
    let without_tags = |mut state: Value| {
        for list in ["ScalableTargets", "MetricAlarms"] {
            for item in state[list].as_array_mut().unwrap() {
                item["Tags"] = json!({});
            }
        }
        state
    };
    assert_eq!(
        without_tags(after.clone()),
        without_tags(before),
        "configuration kept"
    );
    assert_eq!(
        after["ScalableTargets"][0]["Tags"],
        json!({}),
        "ownership released"
    );
    assert_eq!(
        after["MetricAlarms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["AlarmName"] == ALARM)
            .unwrap()["Tags"],
        json!({})
    );

    // A new resource may now take the variant over (with the adopt annotation), alarm included.
    let heir = manifest(
        &dir,
        "heir.yaml",
        &SDXL.replace("name: sdxl,", "name: heir,").replace(
            "metadata: {",
            "metadata: {annotations: {asyncscale.io/adopt: \"true\"}, ",
        ),
    );
    let adopt = cli(&sim, &["apply", "-f", heir.to_str().unwrap()]);
    assert!(
        adopt.status.success(),
        "{}\n{}",
        stdout(&adopt),
        stderr(&adopt)
    );
    assert!(
        stdout(&adopt).contains("~ adopt scalable target"),
        "{}",
        stdout(&adopt)
    );
    let state = sim.state();
    assert_eq!(
        state["ScalableTargets"][0]["Tags"]["asyncscale.io/owner"],
        "ml/heir"
    );
    let alarm = state["MetricAlarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["AlarmName"] == ALARM)
        .unwrap()
        .clone();
    assert_eq!(alarm["Tags"]["asyncscale.io/owner"], "ml/heir");
}

#[test]
fn invalid_manifests_fail_with_one_line_per_problem_and_no_aws_call() {
    let sim = sim(&[]);
    let dir = tempdir::Dir::new("invalid");
    let bad = manifest(
        &dir,
        "bad.yaml",
        &format!(
            "{SDXL}---\n{}",
            SDXL.replace(
                "maxCapacity: 20",
                "maxCapacity: 0\n  minCapacity: 2\n  scaleFromZero: {periodSeconds: 45}"
            )
            .replace("name: sdxl,", "name: two,")
        ),
    );
    let good = manifest(&dir, "good.yaml", &SDXL.replace("sdxl-async", "fine"));
    let out = cli(
        &sim,
        &[
            "apply",
            "-f",
            good.to_str().unwrap(),
            "-f",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    let at = format!("error: {}: document 2 (ml/two): ", bad.display());
    assert_eq!(
        lines,
        [
            format!("{at}spec.maxCapacity: must be at least 1 (got 0)"),
            format!("{at}spec: minCapacity must be less than or equal to maxCapacity"),
            format!(
                "{at}spec.scaleFromZero.periodSeconds: periodSeconds must be a multiple of 60: SageMaker publishes HasBacklogWithoutCapacity once a minute, so a shorter period sees mostly missing data"
            ),
        ]
    );
    assert_eq!(
        total_calls(&sim.calls()),
        0,
        "no AWS call for a bad manifest, not even for the good file"
    );

    let broken = manifest(&dir, "broken.yaml", "spec: [unclosed\n");
    let out = cli(&sim, &["plan", "-f", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("{}:1:7: invalid YAML: ", broken.display())),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_schedule_that_never_runs_is_refused_and_one_whose_runs_are_past_is_warned_about() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("never-runs");
    let with = |expression: &str| {
        format!("{SDXL}  schedules:\n    - {{name: s, schedule: {expression}, minCapacity: 1}}\n")
    };
    let february = manifest(&dir, "february.yaml", &with("cron(0 8 31 2 ? *)"));
    let out = cli(&sim, &["plan", "-f", february.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(
        lines,
        [format!(
            "error: {}: document 1 (ml/sdxl): spec.schedules[0].schedule: cron(0 8 31 2 ? *) never runs: February has no 31st",
            february.display()
        )]
    );
    assert_eq!(total_calls(&sim.calls()), 0);

    // Past only by the clock: said, and the plan goes on.
    let past = manifest(&dir, "past.yaml", &with("cron(0 8 1 1 ? 2020)"));
    let out = cli(&sim, &["plan", "-f", past.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "changes pending: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!(
            "warning: {}: document 1 (ml/sdxl): spec.schedules[0].schedule: cron(0 8 1 1 ? 2020) never runs again: every run is in the past",
            past.display()
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_failed_scale_out_past_the_quota_shows_in_status_with_aws_message() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("failed");
    let file = manifest(&dir, "sdxl.yaml", SDXL);
    let file = file.to_str().unwrap();
    let message = "Failed to set desired instance count to 20. Reason: The account-level service limit 'ml.g4dn.xlarge for endpoint usage' is 4 Instances, with current utilization of 1 Instances and a request delta of 19 Instances. Please contact AWS support to request an increase for this limit. (Service: AmazonSageMaker; Status Code: 400; Error Code: ResourceLimitExceeded; Request ID: 0d1f).";
    let (status, _) = sim.http(
        "POST",
        "/_sim/activities",
        &[("Content-Type", "application/json")],
        &json!({"ResourceId": RID, "Description": "Setting desired instance count to 20.", "StatusCode": "Failed", "StatusMessage": message,
                "Cause": "monitor alarm TargetTracking-endpoint/sdxl-async/variant/AllTraffic-AlarmHigh-1 in state ALARM triggered policy hand-made"}).to_string(),
    );
    assert_eq!(status, 204);
    let out = cli(&sim, &["apply", "-f", file, "-o", "json"]);
    assert!(
        out.status.success(),
        "apply itself succeeds: {}",
        stderr(&out)
    );
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let conditions = report["resources"][0]["status"]["conditions"]
        .as_array()
        .unwrap();
    let find = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap();
    assert_eq!(find("ScalingHealthy")["status"], "False");
    assert_eq!(find("ScalingHealthy")["reason"], "QuotaExceeded");
    assert_eq!(find("ScalingHealthy")["message"], message);
    assert_eq!(find("Ready")["status"], "False");
    assert_eq!(find("Synced")["status"], "True");
    assert_eq!(
        report["resources"][0]["status"]["lastScalingActivity"]["statusCode"],
        "Failed"
    );
}

#[test]
fn a_hand_made_target_is_a_conflict_until_adopted() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let (status, _) = sim.aws(
        "AnyScaleFrontendService.RegisterScalableTarget",
        json!({"ServiceNamespace": "sagemaker", "ResourceId": RID, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "MinCapacity": 0, "MaxCapacity": 20}),
    );
    assert_eq!(status, 200);
    let dir = tempdir::Dir::new("adopt");
    let file = manifest(&dir, "sdxl.yaml", SDXL);
    let before = writes(&sim.calls());
    let out = cli(&sim, &["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("Synced          False    Conflict"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        writes(&sim.calls()),
        before,
        "a conflict makes no AWS write"
    );

    let adopting = manifest(
        &dir,
        "adopt.yaml",
        &SDXL.replace(
            "namespace: ml}",
            "namespace: ml, annotations: {asyncscale.io/adopt: \"true\"}}",
        ),
    );
    let out = cli(&sim, &["apply", "-f", adopting.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        sim.state()["ScalableTargets"][0]["Tags"]["asyncscale.io/owner"],
        "ml/sdxl"
    );
}

#[test]
fn crd_command_prints_the_committed_crd() {
    let out = Command::new(BIN).arg("crd").output().unwrap();
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../crds/asyncendpointscalings.asyncscale.io.yaml"
    ))
    .unwrap();
    assert_eq!(stdout(&out), committed);
}

/// deploy/iam-policy.json grants exactly the Application Auto Scaling, CloudWatch and Service
/// Quotas actions that asyncscale calls, across every path: create, adopt, drop scale-from-zero,
/// delete next to a foreign policy, delete alone, applied and default quotas.
#[test]
fn iam_policy_grants_exactly_the_calls_asyncscale_makes() {
    let sim = sim(&[]);
    let (status, _) = sim.http(
        "POST",
        "/_sim/quotas",
        &[],
        &json!({"defaults": {"ml.g4dn.xlarge": 4}, "applied": {"ml.g5.xlarge": 2}}).to_string(),
    );
    assert_eq!(status, 204);
    // A hand-made target with another tool's policy, set up before asyncscale runs (not counted below).
    sim.aws(
        "AnyScaleFrontendService.RegisterScalableTarget",
        json!({"ServiceNamespace": "sagemaker", "ResourceId": RID, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "MinCapacity": 0, "MaxCapacity": 3}),
    );
    sim.aws(
        "AnyScaleFrontendService.PutScalingPolicy",
        json!({"PolicyName": "team-policy", "ServiceNamespace": "sagemaker", "ResourceId": RID, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
               "PolicyType": "StepScaling", "StepScalingPolicyConfiguration": {"AdjustmentType": "ExactCapacity", "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]}}),
    );
    let setup_calls = sim.calls();
    let dir = tempdir::Dir::new("iam");
    let adopt = SDXL.replace(
        "namespace: ml}",
        "namespace: ml, annotations: {asyncscale.io/adopt: \"true\"}}",
    );
    let file = manifest(&dir, "a.yaml", &with_schedule(&adopt));
    let min_one = manifest(
        &dir,
        "b.yaml",
        &adopt.replace("maxCapacity: 20", "maxCapacity: 20\n  minCapacity: 1"),
    );
    let other = manifest(
        &dir,
        "c.yaml",
        &SDXL
            .replace("sdxl-async", "g5-async")
            .replace("ml.g4dn.xlarge", "ml.g5.xlarge"),
    );
    // Released with Retain (untagging the alarm); an alarm whose target is gone (its tags read).
    let retained = manifest(
        &dir,
        "d.yaml",
        &SDXL.replace("sdxl-async", "kept-async").replace(
            "  maxCapacity: 20\n",
            "  maxCapacity: 20\n  deletionPolicy: Retain\n",
        ),
    );
    let orphaned = manifest(&dir, "e.yaml", &SDXL.replace("sdxl-async", "orphan-async"));
    // In another account, through its role (sts:AssumeRole).
    let role_account = "222222222222";
    let path = format!("/_sim/endpoints?account={role_account}");
    let endpoint = json!({"endpoint": "sdxl-async", "instanceType": "ml.g4dn.xlarge"});
    assert_eq!(sim.http("POST", &path, &[], &endpoint.to_string()).0, 204);
    let elsewhere = manifest(
        &dir,
        "f.yaml",
        &SDXL.replace(
            "  maxCapacity: 20\n",
            "  maxCapacity: 20\n  roleArn: arn:aws:iam::222222222222:role/asyncscale\n",
        ),
    );
    let run = |args: [&str; 2]| {
        let out = cli(&sim, &[args[0], "-f", args[1]]);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    };
    for args in [
        ["apply", file.to_str().unwrap()],
        ["apply", min_one.to_str().unwrap()],
        ["delete", file.to_str().unwrap()],
        ["apply", other.to_str().unwrap()],
        ["delete", other.to_str().unwrap()],
        ["apply", retained.to_str().unwrap()],
        ["delete", retained.to_str().unwrap()],
        ["apply", orphaned.to_str().unwrap()],
        ["apply", elsewhere.to_str().unwrap()],
        ["delete", elsewhere.to_str().unwrap()],
    ] {
        run(args);
    }
    sim.aws(
        "AnyScaleFrontendService.DeregisterScalableTarget",
        json!({"ServiceNamespace": "sagemaker", "ResourceId": "endpoint/orphan-async/variant/AllTraffic", "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}),
    );
    run(["delete", orphaned.to_str().unwrap()]);

    let mut used = std::collections::BTreeSet::new();
    let role_calls: Value = serde_json::from_str(
        &sim.http(
            "GET",
            &format!("/_sim/calls?account={role_account}"),
            &[],
            "",
        )
        .1,
    )
    .unwrap();
    // Less what the setup called (in the caller's own account only).
    let accounts = [(sim.calls(), setup_calls), (role_calls, Value::Null)];
    for (calls, setup_calls) in &accounts {
        for (service, ops) in calls.as_object().unwrap() {
            let prefix = if service == "service-quotas" {
                "servicequotas"
            } else {
                service.as_str()
            };
            for (op, n) in ops.as_object().unwrap() {
                let before = setup_calls[service][op].as_u64().unwrap_or(0);
                if n.as_u64().unwrap() > before {
                    used.insert(format!("{prefix}:{op}"));
                }
            }
        }
    }
    let policy: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/iam-policy.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut granted = std::collections::BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        match &statement["Action"] {
            Value::String(a) => {
                granted.insert(a.clone());
            }
            Value::Array(actions) => {
                granted.extend(actions.iter().map(|a| a.as_str().unwrap().to_string()));
            }
            _ => panic!("unexpected Action"),
        }
    }
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "calls the policy does not grant: {missing:?}"
    );
    // cloudwatch:TagResource authorises the tags PutMetricAlarm sets on creation, and
    // RegisterScalableTarget on a variant needs sagemaker:UpdateEndpointWeightsAndCapacities of
    // the caller; neither is a call of asyncscale's.
    let not_calls = [
        "cloudwatch:TagResource",
        "sagemaker:UpdateEndpointWeightsAndCapacities",
    ];
    let unused: Vec<_> = granted
        .iter()
        .filter(|a| {
            [
                "application-autoscaling:",
                "cloudwatch:",
                "servicequotas:",
                "sagemaker:",
                "sts:",
            ]
            .iter()
            .any(|p| a.starts_with(p))
        })
        .filter(|a| !used.contains(*a) && !not_calls.contains(&a.as_str()))
        .collect();
    assert!(unused.is_empty(), "granted but never called: {unused:?}");
}

// ---- When AWS fails, one call at a time, through POST /_sim/faults ----

impl Sim {
    /// Answers the next `count` requests for `operation` with `code` (0: until cleared).
    fn fault(&self, operation: &str, code: &str, count: u32) {
        let body = json!({"operation": operation, "code": code, "count": count}).to_string();
        let (status, text) = self.http("POST", "/_sim/faults", &[], &body);
        assert_eq!(status, 204, "{text}");
    }

    fn clear_faults(&self) {
        self.http("DELETE", "/_sim/faults", &[], "");
    }

    fn target_max(&self) -> i64 {
        self.state()["ScalableTargets"][0]["MaxCapacity"]
            .as_i64()
            .unwrap()
    }
}

#[test]
fn a_failed_quota_read_never_lifts_the_clamp() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("quota-fault");
    let file = manifest(&dir, "sdxl.yaml", SDXL);
    let file = file.to_str().unwrap();
    assert!(cli(&sim, &["apply", "-f", file]).status.success());
    assert_eq!(sim.target_max(), 4, "clamped 20 → 4");

    // Service Quotas throttles every attempt of this run (the SDK retries it twice).
    sim.fault("GetServiceQuota", "TooManyRequestsException", 0);
    let writes_before = writes(&sim.calls());
    let plan = cli(&sim, &["plan", "-f", file]);
    assert!(
        !stdout(&plan).contains("maxCapacity 4 → 20"),
        "{}",
        stdout(&plan)
    );
    let apply = cli(&sim, &["apply", "-f", file]);
    let out = stdout(&apply);
    assert_eq!(apply.status.code(), Some(1), "not converged: {out}");
    assert_eq!(sim.target_max(), 4, "the clamp holds: {out}");
    assert_eq!(writes(&sim.calls()), writes_before, "no AWS write: {out}");
    assert!(
        out.contains("QuotaClamped    Unknown  QuotaUnknown"),
        "{out}"
    );
    assert!(out.contains("MaxCapacity stays at 4"), "{out}");
    assert!(out.contains("TooManyRequestsException"), "{out}");

    sim.clear_faults();
    let apply = cli(&sim, &["apply", "-f", file]);
    assert!(apply.status.success(), "{}", stdout(&apply));
    assert!(stdout(&apply).contains("in sync: no changes"));
}

#[test]
fn with_the_quota_unknown_a_first_registration_under_share_takes_min_capacity_only() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("quota-first");
    let file = manifest(&dir, "sdxl.yaml", SDXL);
    sim.fault("GetServiceQuota", "TooManyRequestsException", 0);
    let apply = cli(&sim, &["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(
        apply.status.code(),
        Some(1),
        "the quota is still to be read"
    );
    // Its share of a quota it cannot read is unknown: no more than minCapacity (0) meanwhile.
    assert_eq!(sim.target_max(), 0);
    assert!(
        stdout(&apply)
            .contains("registered with MaxCapacity 0 (minCapacity) until the quota can be read"),
        "{}",
        stdout(&apply)
    );
    // Whether it can scale that far is not known: not Ready (a GitOps health check must not say Healthy).
    assert!(
        stdout(&apply).contains("Ready           Unknown  QuotaUnknown"),
        "{}",
        stdout(&apply)
    );
}

#[test]
fn a_policy_not_found_right_after_registering_is_retried() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("eventual");
    let file = manifest(&dir, "sdxl.yaml", SDXL);
    // AWS: "there might be a brief delay until the operation achieves eventual consistency".
    sim.fault("PutScalingPolicy", "ObjectNotFoundException", 1);
    let apply = cli(&sim, &["apply", "-f", file.to_str().unwrap()]);
    assert!(
        apply.status.success(),
        "{}{}",
        stdout(&apply),
        stderr(&apply)
    );
    assert_eq!(sim.state()["ScalingPolicies"].as_array().unwrap().len(), 2);
    assert_eq!(
        sim.calls()["application-autoscaling"]["PutScalingPolicy"],
        3
    );
}

#[test]
fn a_target_handed_back_to_another_tool_is_no_longer_suspended() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("handback");
    // Set up by hand: a target and the team's own policy.
    let (status, body) = sim.aws(
        "AnyScaleFrontendService.RegisterScalableTarget",
        json!({"ServiceNamespace": "sagemaker", "ResourceId": RID, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "MinCapacity": 0, "MaxCapacity": 3}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = sim.aws(
        "AnyScaleFrontendService.PutScalingPolicy",
        json!({"PolicyName": "team-policy", "ServiceNamespace": "sagemaker", "ResourceId": RID,
               "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "PolicyType": "StepScaling",
               "StepScalingPolicyConfiguration": {"AdjustmentType": "ExactCapacity", "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 2}]}}),
    );
    assert_eq!(status, 200, "{body}");
    let file = manifest(
        &dir,
        "sdxl.yaml",
        &SDXL
            .replace(
                "metadata: {",
                "metadata: {annotations: {asyncscale.io/adopt: \"true\"}, ",
            )
            .replace(
                "  maxCapacity: 20\n",
                "  maxCapacity: 20\n  suspend: true\n",
            ),
    );
    let file = file.to_str().unwrap();
    assert!(cli(&sim, &["apply", "-f", file]).status.success());
    assert_eq!(
        sim.state()["ScalableTargets"][0]["SuspendedState"]["DynamicScalingOutSuspended"],
        true
    );
    let delete = cli(&sim, &["delete", "-f", file]);
    assert!(delete.status.success(), "{}", stdout(&delete));
    let state = sim.state();
    assert_eq!(
        state["ScalableTargets"][0]["SuspendedState"],
        json!({"DynamicScalingInSuspended": false, "DynamicScalingOutSuspended": false, "ScheduledScalingSuspended": false}),
        "{}",
        stdout(&delete)
    );
    assert_eq!(state["ScalingPolicies"][0]["PolicyName"], "team-policy");
}

#[test]
fn deleting_a_resource_that_never_owned_the_variant_spares_the_owners_alarm() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("alarm-owner");
    let owner = manifest(&dir, "owner.yaml", SDXL);
    assert!(
        cli(&sim, &["apply", "-f", owner.to_str().unwrap()])
            .status
            .success()
    );
    // The target disappears (deregistered by hand); the owner's alarm stays.
    let (status, _) = sim.aws(
        "AnyScaleFrontendService.DeregisterScalableTarget",
        json!({"ServiceNamespace": "sagemaker", "ResourceId": RID, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}),
    );
    assert_eq!(status, 200);
    let stranger = manifest(
        &dir,
        "stranger.yaml",
        &SDXL.replace("name: sdxl,", "name: stranger,"),
    );
    let delete = cli(&sim, &["delete", "-f", stranger.to_str().unwrap()]);
    assert!(delete.status.success(), "{}", stdout(&delete));
    let alarms = sim.state()["MetricAlarms"].clone();
    assert!(
        alarms
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["AlarmName"] == ALARM),
        "the owner's alarm stays: {}",
        stdout(&delete)
    );
    // Its owner may still clean it up.
    assert!(
        cli(&sim, &["delete", "-f", owner.to_str().unwrap()])
            .status
            .success()
    );
    assert!(
        sim.state()["MetricAlarms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["AlarmName"] != ALARM)
    );
}

#[test]
fn the_longest_names_kubernetes_allows_fit_aws_tag_limits() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("long-names");
    let (namespace, name) = ("n".repeat(63), "a".repeat(253));
    let file = manifest(
        &dir,
        "long.yaml",
        &SDXL.replace(
            "metadata: {name: sdxl, namespace: ml}",
            &format!("metadata: {{name: {name}, namespace: {namespace}}}"),
        ),
    );
    let file = file.to_str().unwrap();
    let apply = cli(&sim, &["apply", "-f", file]);
    assert!(
        apply.status.success(),
        "{}{}",
        stdout(&apply),
        stderr(&apply)
    );
    let owner_tag = sim.state()["ScalableTargets"][0]["Tags"]["asyncscale.io/owner"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(owner_tag.len() <= 256, "{}", owner_tag.len());
    let again = cli(&sim, &["apply", "-f", file]);
    assert!(
        stdout(&again).contains("in sync: no changes"),
        "recognised as ours"
    );
    // The local endpoint refuses what AWS refuses.
    let (status, body) = sim.aws(
        "AnyScaleFrontendService.RegisterScalableTarget",
        json!({"ServiceNamespace": "sagemaker", "ResourceId": "endpoint/x/variant/y", "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
               "MinCapacity": 0, "MaxCapacity": 1, "Tags": {"k": "v".repeat(257)}}),
    );
    assert_eq!(status, 400);
    assert!(body.contains("ValidationException"), "{body}");
}

#[test]
fn an_unset_region_and_the_default_region_are_the_same_place() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("dup-region");
    let file = manifest(
        &dir,
        "two.yaml",
        &format!(
            "{SDXL}---\n{}",
            SDXL.replace("name: sdxl,", "name: twin,").replace(
                "  maxCapacity: 20\n",
                "  maxCapacity: 20\n  region: us-east-1\n"
            )
        ),
    );
    let apply = cli(&sim, &["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(apply.status.code(), Some(1));
    assert!(
        stderr(&apply).contains("is also managed by"),
        "{}",
        stderr(&apply)
    );
    assert_eq!(total_calls(&sim.calls()), 0, "nothing reached AWS");
}

#[test]
fn a_hung_aws_endpoint_times_out_instead_of_hanging() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("hang");
    let file = manifest(&dir, "sdxl.yaml", SDXL);
    let body = json!({"operation": "DescribeScalableTargets", "delaySeconds": 120, "count": 0})
        .to_string();
    assert_eq!(sim.http("POST", "/_sim/faults", &[], &body).0, 204);
    let started = std::time::Instant::now();
    let plan = cli(
        &sim,
        &[
            "plan",
            "-f",
            file.to_str().unwrap(),
            "--aws-attempt-timeout",
            "1s",
            "--aws-call-timeout",
            "3s",
        ],
    );
    let took = started.elapsed();
    assert_eq!(plan.status.code(), Some(1), "{}", stdout(&plan));
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    assert!(
        stdout(&plan).contains("did not answer within"),
        "{}",
        stdout(&plan)
    );
}

#[test]
fn with_the_quota_unknown_a_higher_min_capacity_never_raises_max_capacity() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("quota-min");
    let file = manifest(&dir, "sdxl.yaml", SDXL);
    assert!(
        cli(&sim, &["apply", "-f", file.to_str().unwrap()])
            .status
            .success()
    );
    sim.fault("GetServiceQuota", "TooManyRequestsException", 0);
    let raised = manifest(
        &dir,
        "min6.yaml",
        &SDXL.replace(
            "  maxCapacity: 20\n",
            "  maxCapacity: 30\n  minCapacity: 6\n",
        ),
    );
    let writes_before = writes(&sim.calls());
    let apply = cli(&sim, &["apply", "-f", raised.to_str().unwrap()]);
    let out = stdout(&apply);
    assert_eq!(apply.status.code(), Some(1), "{out}");
    assert_eq!(
        writes(&sim.calls()),
        writes_before,
        "nothing written: {out}"
    );
    assert_eq!(sim.target_max(), 4, "{out}");
    assert!(
        out.contains("Synced          False    WaitingForQuota"),
        "{out}"
    );
}

#[test]
fn an_alarm_left_without_its_target_is_adopted_only_when_asked() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("alarm-adopt");
    let retained = manifest(&dir, "retain.yaml", &retained_sdxl());
    assert!(
        cli(&sim, &["apply", "-f", retained.to_str().unwrap()])
            .status
            .success()
    );
    assert!(
        cli(&sim, &["delete", "-f", retained.to_str().unwrap()])
            .status
            .success()
    );
    // The released target goes; the released (untagged) alarm stays.
    sim.aws(
        "AnyScaleFrontendService.DeregisterScalableTarget",
        json!({"ServiceNamespace": "sagemaker", "ResourceId": RID, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}),
    );
    let fresh = manifest(&dir, "fresh.yaml", SDXL);
    let apply = cli(&sim, &["apply", "-f", fresh.to_str().unwrap()]);
    assert_eq!(apply.status.code(), Some(1), "{}", stdout(&apply));
    assert!(stdout(&apply).contains("Conflict"), "{}", stdout(&apply));
    let adopting = manifest(
        &dir,
        "adopt.yaml",
        &SDXL.replace(
            "metadata: {",
            "metadata: {annotations: {asyncscale.io/adopt: \"true\"}, ",
        ),
    );
    let apply = cli(&sim, &["apply", "-f", adopting.to_str().unwrap()]);
    assert!(apply.status.success(), "{}", stdout(&apply));
    let state = sim.state();
    let alarm = state["MetricAlarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["AlarmName"] == ALARM)
        .unwrap()
        .clone();
    assert_eq!(
        alarm["Tags"]["asyncscale.io/owner"], "ml/sdxl",
        "tagged, so delete finds it"
    );
}

#[test]
fn a_target_deregistered_while_applying_is_not_reported_in_sync() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("race");
    let file = manifest(&dir, "sdxl.yaml", SDXL);
    assert!(
        cli(&sim, &["apply", "-f", file.to_str().unwrap()])
            .status
            .success()
    );
    let min1 = manifest(
        &dir,
        "min1.yaml",
        &SDXL.replace(
            "  maxCapacity: 20\n",
            "  maxCapacity: 20\n  minCapacity: 1\n",
        ),
    );
    let body =
        json!({"operation": "RegisterScalableTarget", "delaySeconds": 2, "count": 1}).to_string();
    assert_eq!(sim.http("POST", "/_sim/faults", &[], &body).0, 204);
    let applying = {
        let url = sim.url();
        let path = min1.to_str().unwrap().to_string();
        std::thread::spawn(move || {
            Command::new(BIN)
                .args([
                    "apply",
                    "-f",
                    &path,
                    "--aws-endpoint",
                    &url,
                    "--region",
                    "us-east-1",
                ])
                .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
                .env("AWS_SECRET_ACCESS_KEY", "secret")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("AWS_CONFIG_FILE", "/nonexistent")
                .output()
                .unwrap()
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(700));
    sim.aws(
        "AnyScaleFrontendService.DeregisterScalableTarget",
        json!({"ServiceNamespace": "sagemaker", "ResourceId": RID, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}),
    );
    let first = applying.join().unwrap();
    assert_eq!(first.status.code(), Some(1), "{}", stdout(&first));
    assert!(stdout(&first).contains("still to do"), "{}", stdout(&first));
    assert_eq!(
        sim.state()["ScalableTargets"][0]["Tags"]["asyncscale.io/owner"],
        "ml/sdxl",
        "a target recreated by the update carries the owner tags"
    );
    let again = cli(&sim, &["apply", "-f", min1.to_str().unwrap()]);
    assert!(again.status.success(), "{}", stdout(&again));
}

/// Every read asyncscale makes, failing alone in each way AWS fails (throttled, a server error,
/// not found): a converged endpoint is left exactly as it was in AWS (no write, the clamp held),
/// and `apply` does not claim to be in sync.
fn each_read_failing_alone_leaves_aws_as_it_was(kind: &str, status: u16, codes: &[(&str, &str)]) {
    let reads: [(&str, &str); 8] = [
        ("application-autoscaling", "DescribeScalableTargets"),
        ("application-autoscaling", "ListTagsForResource"),
        ("application-autoscaling", "DescribeScalingPolicies"),
        ("application-autoscaling", "DescribeScheduledActions"),
        ("application-autoscaling", "DescribeScalingActivities"),
        ("cloudwatch", "DescribeAlarms"),
        ("service-quotas", "ListServiceQuotas"),
        ("service-quotas", "GetServiceQuota"),
    ];
    for (service, operation) in reads {
        let sim = sim(&["ml.g4dn.xlarge=4"]);
        let dir = tempdir::Dir::new(&format!("read-{kind}-{operation}"));
        let file = manifest(&dir, "sdxl.yaml", &with_schedule(SDXL));
        let file = file.to_str().unwrap();
        assert!(cli(&sim, &["apply", "-f", file]).status.success());
        assert_eq!(sim.target_max(), 4, "clamped 20 → 4");
        let before = sim.state();
        let writes_before = writes(&sim.calls());
        let code = codes
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, c)| *c)
            .unwrap();
        let body = json!({"service": service, "operation": operation, "code": code,
            "status": status, "count": 0})
        .to_string();
        assert_eq!(sim.http("POST", "/_sim/faults", &[], &body).0, 204);
        let apply = cli(&sim, &["apply", "-f", file, "--aws-call-timeout", "20s"]);
        let out = stdout(&apply);
        let what = format!("{operation} {kind} ({code} {status})");
        assert_eq!(
            writes(&sim.calls()),
            writes_before,
            "{what}: no AWS write\n{out}"
        );
        assert_eq!(sim.state(), before, "{what}: AWS unchanged\n{out}");
        assert_eq!(sim.target_max(), 4, "{what}: the clamp holds");
        assert!(
            !out.contains("MaxCapacity 4 → 20") && !out.contains("maxCapacity 4 → 20"),
            "{what}: {out}"
        );
        if service == "service-quotas" && kind == "not found" {
            // Not a passing failure: GetServiceQuota's means "no applied value" (the default is
            // read instead); ListServiceQuotas' leaves the quota unknown for good, said in status
            // while the clamp holds, and is no reason to retry.
            if operation == "ListServiceQuotas" {
                assert!(out.contains("QuotaUnknown"), "{what}: {out}");
            }
        } else {
            assert_ne!(apply.status.code(), Some(0), "{what}: not in sync\n{out}");
        }
    }
}

#[test]
fn each_read_throttled_alone_leaves_aws_as_it_was() {
    each_read_failing_alone_leaves_aws_as_it_was(
        "throttled",
        400,
        &[
            ("application-autoscaling", "ThrottlingException"),
            ("cloudwatch", "Throttling"),
            ("service-quotas", "TooManyRequestsException"),
        ],
    );
}

#[test]
fn each_read_failing_with_a_server_error_alone_leaves_aws_as_it_was() {
    each_read_failing_alone_leaves_aws_as_it_was(
        "server error",
        500,
        &[
            ("application-autoscaling", "InternalServiceException"),
            ("cloudwatch", "InternalServiceError"),
            ("service-quotas", "ServiceException"),
        ],
    );
}

#[test]
fn each_read_not_found_alone_leaves_aws_as_it_was() {
    each_read_failing_alone_leaves_aws_as_it_was(
        "not found",
        400,
        &[
            ("application-autoscaling", "ObjectNotFoundException"),
            ("cloudwatch", "ResourceNotFound"),
            ("service-quotas", "NoSuchResourceException"),
        ],
    );
}

/// Every write of a first apply, failing alone: apply says which change failed (ApplyFailed,
/// exit 1), nothing after it is attempted on a guess, and the next apply finishes the job.
#[test]
fn each_write_failing_alone_is_reported_and_the_next_apply_finishes() {
    let writes: [(&str, &str, &str); 4] = [
        (
            "application-autoscaling",
            "RegisterScalableTarget",
            "InternalServiceException",
        ),
        (
            "application-autoscaling",
            "PutScalingPolicy",
            "InternalServiceException",
        ),
        ("cloudwatch", "PutMetricAlarm", "InternalServiceError"),
        (
            "application-autoscaling",
            "PutScheduledAction",
            "InternalServiceException",
        ),
    ];
    for (service, operation, code) in writes {
        let sim = sim(&["ml.g4dn.xlarge=4"]);
        let dir = tempdir::Dir::new(&format!("write-{operation}"));
        let file = manifest(&dir, "sdxl.yaml", &with_schedule(SDXL));
        let file = file.to_str().unwrap();
        let body = json!({"service": service, "operation": operation, "code": code,
            "status": 500, "count": 0})
        .to_string();
        assert_eq!(sim.http("POST", "/_sim/faults", &[], &body).0, 204);
        let apply = cli(&sim, &["apply", "-f", file]);
        let out = stdout(&apply);
        assert_eq!(apply.status.code(), Some(1), "{operation}: {out}");
        assert!(out.contains("ApplyFailed"), "{operation}: {out}");
        assert!(out.contains(code), "{operation}: AWS's error named\n{out}");
        if operation == "RegisterScalableTarget" {
            let state = sim.state();
            assert!(
                state["ScalingPolicies"]
                    .as_array()
                    .is_none_or(Vec::is_empty)
                    && state["MetricAlarms"].as_array().is_none_or(Vec::is_empty),
                "nothing hangs on a target that is not there: {state}"
            );
        }
        sim.clear_faults();
        assert!(
            cli(&sim, &["apply", "-f", file]).status.success(),
            "{operation}"
        );
        let plan = cli(&sim, &["plan", "-f", file]);
        assert_eq!(
            plan.status.code(),
            Some(0),
            "{operation}: {}",
            stdout(&plan)
        );
        assert_eq!(sim.target_max(), 4, "{operation}: clamped");
    }
}

fn fleet_manifest(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "---\napiVersion: asyncscale.io/v1alpha1\nkind: AsyncEndpointScaling\nmetadata: {{name: e{i:02}, namespace: ml}}\nspec: {{endpointName: ep-{i:02}, instanceType: ml.g4dn.xlarge, maxCapacity: 4, targetTracking: {{targetValue: 5}}}}\n"
            )
        })
        .collect()
}

fn calls_of(calls: &Value, operation: &str) -> u64 {
    calls
        .as_object()
        .unwrap()
        .values()
        .filter_map(|ops| ops.get(operation))
        .map(|n| n.as_u64().unwrap())
        .sum()
}

/// From `--bulk-from` resources (10), `apply` reads the account in pages instead of per resource,
/// and a no-op apply reads no tags; drift made by hand is still found and repaired.
#[test]
fn a_no_op_apply_of_many_resources_reads_aws_in_pages() {
    // Room for every endpoint's maxCapacity of 4: the shared quota lowers none.
    let sim = sim(&["ml.g4dn.xlarge=120"]);
    for i in 0..30 {
        declare_endpoint(&sim.addr, &format!("ep-{i:02}"), "ml.g4dn.xlarge");
    }
    let dir = tempdir::Dir::new("bulk-apply");
    let file = manifest(&dir, "fleet.yaml", &fleet_manifest(30));
    let file = file.to_str().unwrap();
    let first = cli(&sim, &["apply", "-f", file]);
    assert!(first.status.success(), "{}", stderr(&first));
    let before = sim.calls();

    let again = cli(&sim, &["apply", "-f", file]);
    assert!(again.status.success(), "{}", stderr(&again));
    let after = sim.calls();
    let spent = |op: &str| calls_of(&after, op) - calls_of(&before, op);
    assert_eq!(writes(&after), writes(&before), "no write");
    // 30 targets: 1 page; 60 policies: 6 pages of 10; 30 alarms: 1 page; activities: 1 page.
    // SageMaker has no bulk read of instance counts or configurations: the first run described
    // each of the account's 36 endpoints (30 here and the 6 every test account has) and its
    // configuration; this one lists them (1 page) and finds every description in the cache the
    // first run left, unchanged since.
    assert_eq!(spent("DescribeScalableTargets"), 1);
    assert_eq!(spent("DescribeScalingPolicies"), 6);
    assert_eq!(spent("DescribeAlarms"), 1);
    assert_eq!(spent("DescribeScalingActivities"), 1);
    assert_eq!(spent("ListEndpoints"), 1);
    assert_eq!(spent("DescribeEndpoint"), 0);
    assert_eq!(spent("DescribeEndpointConfig"), 0);
    assert_eq!(
        spent("ListTagsForResource"),
        0,
        "nothing to write: no tags read"
    );
    assert!(
        stderr(&again).contains("36 from the cache of"),
        "{}",
        stderr(&again)
    );
    // An endpoint that moved (a new one, here) is described; the others are not.
    declare_endpoint(&sim.addr, "ep-new", "ml.g4dn.xlarge");
    let moved = cli(&sim, &["apply", "-f", file]);
    assert!(moved.status.success(), "{}", stderr(&moved));
    let after_moved = sim.calls();
    let spent = |op: &str| calls_of(&after_moved, op) - calls_of(&after, op);
    assert_eq!(spent("DescribeEndpoint"), 1);
    assert_eq!(spent("DescribeEndpointConfig"), 1);
    // Without the cache, every endpoint is described again.
    let uncached = cli(&sim, &["apply", "-f", file, "--no-cache"]);
    assert!(uncached.status.success(), "{}", stderr(&uncached));
    let after = sim.calls();
    let spent = |op: &str| calls_of(&after, op) - calls_of(&after_moved, op);
    assert_eq!(spent("DescribeEndpoint"), 37);
    assert_eq!(spent("DescribeEndpointConfig"), 37);

    // Per resource, the same no-op apply costs about four reads each.
    let per_resource = cli(&sim, &["apply", "-f", file, "--bulk-from", "1000"]);
    assert!(per_resource.status.success());
    let last = sim.calls();
    assert_eq!(
        calls_of(&last, "DescribeScalableTargets") - calls_of(&after, "DescribeScalableTargets"),
        30
    );

    // Someone lowers one endpoint's MaxCapacity by hand: the bulk apply finds and repairs it, and
    // reads that target's tags (ownership before the write).
    let (status, body) = sim.aws(
        "AnyScaleFrontendService.RegisterScalableTarget",
        json!({"ServiceNamespace": "sagemaker", "ResourceId": "endpoint/ep-07/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "MaxCapacity": 1}),
    );
    assert_eq!(status, 200, "{body}");
    let repair = cli(&sim, &["apply", "-f", file]);
    assert!(repair.status.success(), "{}", stderr(&repair));
    assert!(
        stdout(&repair).contains("maxCapacity 1 → 4"),
        "{}",
        stdout(&repair)
    );
    let repaired = sim.calls();
    assert_eq!(
        calls_of(&repaired, "ListTagsForResource") - calls_of(&last, "ListTagsForResource"),
        2,
        "the drifted target's tags, before the write and in the read-back"
    );
    let target = sim.state()["ScalableTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["ResourceId"] == "endpoint/ep-07/variant/AllTraffic")
        .unwrap()
        .clone();
    assert_eq!(target["MaxCapacity"], 4);
}

/// With no credentials source at all, `plan` says so once, in a paragraph that says what was
/// tried and how to fix it, exits 1, and sends nothing; a configured source that fails says why,
/// on one line; a profile that does not exist is named.
#[test]
fn without_credentials_plan_says_how_to_fix_it_once_and_sends_nothing() {
    let sim = sim(&[]);
    let dir = tempdir::Dir::new("nocreds");
    let file = manifest(&dir, "a.yaml", SDXL);
    // (environment added, what the one error line says)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 3] = [
        (
            &[],
            &[
                "no AWS credentials found",
                "AWS_PROFILE",
                "IRSA",
                "Pod Identity",
            ],
        ),
        (
            &[("AWS_PROFILE", "nope")],
            &["no AWS credentials found", "AWS_PROFILE is set to \"nope\""],
        ),
        (
            &[
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token"),
                ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/asyncscale"),
            ],
            &["AWS credentials could not be loaded: "],
        ),
    ];
    for (env, says) in cases {
        let mut command = Command::new(BIN);
        command
            .args(["plan", "-f", file.to_str().unwrap()])
            .args(["--aws-endpoint", &sim.url(), "--region", "us-east-1"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
            .env_remove("AWS_ROLE_ARN")
            .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        command.envs(env.iter().copied());
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{env:?}: {}", stderr(&out));
        let said = stderr(&out);
        let errors: Vec<&str> = said.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{env:?}: said once: {said}");
        for hint in says {
            assert!(errors[0].contains(hint), "{env:?}: {hint}: {said}");
        }
        assert!(stdout(&out).is_empty(), "no report: {}", stdout(&out));
    }
    assert_eq!(sim.calls(), json!({}), "nothing reached the endpoint");
}

/// Schedules over the wire: a schedule becomes asyncscale's scheduled action (its maxCapacity held
/// to the quota), a change updates it, a re-apply writes nothing, removing it deletes it, and
/// another tool's scheduled action on the same target is never touched (nor deleted with the
/// target: the target stays for it).
#[test]
fn schedules_are_created_changed_and_removed_and_another_tools_action_is_kept() {
    let sim = sim(&["ml.g4dn.xlarge=4"]);
    let dir = tempdir::Dir::new("schedules");
    let file = manifest(&dir, "sdxl.yaml", &with_schedule(SDXL));
    let file = file.to_str().unwrap();
    let apply = cli(&sim, &["apply", "-f", file]);
    assert!(
        apply.status.success(),
        "{}{}",
        stdout(&apply),
        stderr(&apply)
    );
    assert!(
        stdout(&apply).contains("+ create scheduled action asyncscale-prewarm (schedule cron(50 7 ? * MON-FRI *), timeZone Europe/Berlin, minCapacity 1, maxCapacity 4)"),
        "{}",
        stdout(&apply)
    );
    let state = sim.state();
    let ours = scheduled_actions(&state);
    assert_eq!(ours.len(), 1, "{state}");
    assert_eq!(ours[0]["ScheduledActionName"], "asyncscale-prewarm");
    assert_eq!(ours[0]["ResourceId"], RID);
    assert_eq!(ours[0]["Timezone"], "Europe/Berlin");
    assert_eq!(
        ours[0]["ScalableTargetAction"],
        json!({"MinCapacity": 1, "MaxCapacity": 4}),
        "maxCapacity 20 held to the quota"
    );

    let (status, body) = sim.aws(
        "AnyScaleFrontendService.PutScheduledAction",
        json!({"ServiceNamespace": "sagemaker", "ResourceId": RID, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
               "ScheduledActionName": "team-weekend", "Schedule": "cron(0 9 ? * SAT *)", "ScalableTargetAction": {"MinCapacity": 2}}),
    );
    assert_eq!(status, 200, "{body}");

    let writes_before = writes(&sim.calls());
    let again = cli(&sim, &["apply", "-f", file]);
    assert!(again.status.success(), "{}", stdout(&again));
    assert!(
        stdout(&again).contains("other tools' scheduled actions on the target (left alone; the capacities they set are repaired): team-weekend"),
        "{}",
        stdout(&again)
    );
    assert_eq!(
        writes(&sim.calls()),
        writes_before,
        "in sync: no write\n{}",
        stdout(&again)
    );

    let changed = manifest(
        &dir,
        "changed.yaml",
        &with_schedule(SDXL).replace("minCapacity: 1, maxCapacity: 20", "minCapacity: 2"),
    );
    let apply = cli(&sim, &["apply", "-f", changed.to_str().unwrap()]);
    let out = stdout(&apply);
    assert!(apply.status.success(), "{out}{}", stderr(&apply));
    // Leaving maxCapacity out recreates the action rather than trusting an update to drop it.
    assert!(
        out.contains("- delete scheduled action asyncscale-prewarm (to recreate it"),
        "{out}"
    );
    let state = sim.state();
    let prewarm = scheduled_actions(&state)
        .into_iter()
        .find(|a| a["ScheduledActionName"] == "asyncscale-prewarm")
        .cloned()
        .unwrap();
    assert_eq!(prewarm["ScalableTargetAction"], json!({"MinCapacity": 2}));

    let removed = manifest(&dir, "removed.yaml", SDXL);
    let apply = cli(&sim, &["apply", "-f", removed.to_str().unwrap()]);
    let out = stdout(&apply);
    assert!(
        out.contains(
            "- delete scheduled action asyncscale-prewarm (no schedule of that name in the spec"
        ),
        "{out}"
    );
    let state = sim.state();
    let names: Vec<&str> = scheduled_actions(&state)
        .iter()
        .map(|a| a["ScheduledActionName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["team-weekend"], "the other tool's action stays");

    assert!(cli(&sim, &["apply", "-f", file]).status.success());
    let delete = cli(&sim, &["delete", "-f", file]);
    assert!(delete.status.success(), "{}", stdout(&delete));
    let state = sim.state();
    let names: Vec<&str> = scheduled_actions(&state)
        .iter()
        .map(|a| a["ScheduledActionName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["team-weekend"],
        "ours deleted, theirs kept: {}",
        stdout(&delete)
    );
    assert_eq!(
        state["ScalableTargets"].as_array().unwrap().len(),
        1,
        "the target stays for the other tool's action"
    );
}

/// Removing a schedule when DeleteScheduledAction alone fails (throttled, or a 500): apply says
/// which change failed and exits 1, the action and the clamp stay as they were, and the next
/// apply finishes.
#[test]
fn a_failed_delete_of_a_scheduled_action_is_reported_and_the_next_apply_finishes() {
    for (code, status) in [
        ("ThrottlingException", 400),
        ("InternalServiceException", 500),
    ] {
        let sim = sim(&["ml.g4dn.xlarge=4"]);
        let dir = tempdir::Dir::new(&format!("delete-scheduled-{status}"));
        let with = manifest(&dir, "with.yaml", &with_schedule(SDXL));
        let without = manifest(&dir, "without.yaml", SDXL);
        assert!(
            cli(&sim, &["apply", "-f", with.to_str().unwrap()])
                .status
                .success()
        );
        let body =
            json!({"service": "application-autoscaling", "operation": "DeleteScheduledAction",
            "code": code, "status": status, "count": 0})
            .to_string();
        assert_eq!(sim.http("POST", "/_sim/faults", &[], &body).0, 204);
        let before = sim.state();
        let apply = cli(&sim, &["apply", "-f", without.to_str().unwrap()]);
        let out = stdout(&apply);
        assert_eq!(apply.status.code(), Some(1), "{code}: {out}");
        assert!(
            out.contains("ApplyFailed") && out.contains(code),
            "{code}: {out}"
        );
        assert_eq!(sim.state(), before, "{code}: AWS as it was");
        assert_eq!(sim.target_max(), 4, "{code}: the clamp holds");
        sim.clear_faults();
        let again = cli(&sim, &["apply", "-f", without.to_str().unwrap()]);
        assert!(again.status.success(), "{code}: {}", stdout(&again));
        assert!(scheduled_actions(&sim.state()).is_empty(), "{code}");
    }
}
