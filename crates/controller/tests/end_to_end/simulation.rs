//! The two traps (see the README), as acceptance tests of the scaling model: in-process through
//! `simulate()`, through the real `asyncscale simulate` CLI, and over the wire against
//! `asyncscale sim serve` driven by the configuration `asyncscale apply` puts there.

use std::process::Command;

use asyncscale_controller::simulate::{SimulationOptions, Without, simulate};
use asyncscale_sim::model::assumptions::Assumptions;
use asyncscale_sim::model::load::LoadProfile;
use asyncscale_sim::model::report::Summary;
use serde_json::{Value, json};

use crate::support::{BIN, Process, http, start_sim_with};
const QUOTA_FAILURE: &str = "Failed to set desired instance count to 20. Reason: The account-level service limit 'ml.g4dn.xlarge for endpoint usage' is 4 Instances, with current utilization of 1 Instances and a request delta of 19 Instances. Please use AWS Service Quotas to request an increase for this quota. If AWS Service Quotas is not available, contact AWS support to request an increase for this quota.";

fn manifest(target: f64, quota_policy: &str) -> String {
    format!(
        "apiVersion: asyncscale.io/v1alpha1
kind: AsyncEndpointScaling
metadata: {{name: sdxl, namespace: ml}}
spec:
  endpointName: sdxl-async
  instanceType: ml.g4dn.xlarge
  minCapacity: 0
  maxCapacity: 20
  targetTracking: {{targetValue: {target}}}
  quota: {{policy: {quota_policy}}}
"
    )
}

async fn run(target: f64, load: &str, without: &[Without]) -> Summary {
    let resource = asyncscale_api::parse_manifests("t.yaml", &manifest(target, "Clamp"))
        .unwrap()
        .remove(0)
        .resource;
    let result = simulate(SimulationOptions {
        resources: vec![resource],
        load: LoadProfile::parse(load).unwrap(),
        duration_s: 2.0 * 3600.0,
        quotas: vec!["ml.g4dn.xlarge=4".into()],
        other_usage: vec![],
        without: without.to_vec(),
        throughput_per_minute: 6.0,
        initial_instances: None,
        assumptions: Assumptions::default(),
        resync_s: 60.0,
        record_timeline: true,
        start: k8s_openapi::jiff::Timestamp::now(),
    })
    .await
    .unwrap();
    result.summaries.into_iter().next().unwrap()
}

#[tokio::test]
async fn trap_1_target_tracking_alone_never_leaves_zero() {
    let s = run(180.0, "burst:5@1m", &[Without::ScaleFromZero]).await;
    assert_eq!(
        s.time_to_first_instance_s, None,
        "two hours and still no instance"
    );
    assert_eq!(s.peak_instances, 0);
    assert_eq!(s.drained_at_s, None);
    assert!(
        s.warnings.iter().any(|w| w.contains("trap 1")),
        "{:?}",
        s.warnings
    );
}

#[tokio::test]
async fn trap_1_asyncscale_requests_an_instance_within_three_minutes_and_drains() {
    let s = run(180.0, "burst:5@1m", &[]).await;
    let first = s
        .time_to_first_instance_s
        .expect("an instance is requested");
    assert!(
        first <= 180.0,
        "two one-minute alarm periods plus evaluation: {first} s"
    );
    assert!(s.drained_at_s.is_some(), "the queue drains");
    assert_eq!(s.requests_processed, 5.0);
    assert!(
        s.warnings.iter().all(|w| !w.contains("trap")),
        "{:?}",
        s.warnings
    );
}

#[tokio::test]
async fn trap_2_an_unclamped_max_above_the_quota_is_stuck_at_one_with_aws_failure() {
    let s = run(1.0, "burst:100@1m", &[Without::QuotaClamp]).await;
    assert_eq!(s.peak_instances, 1, "no partial scale-out");
    let first = &s
        .failed_activities
        .first()
        .expect("a Failed activity")
        .message;
    assert!(first.starts_with(QUOTA_FAILURE), "{first}");
    assert!(
        s.warnings.iter().any(|w| w.contains("trap 2")),
        "{:?}",
        s.warnings
    );
}

#[tokio::test]
async fn trap_2_asyncscale_clamps_to_the_quota_and_reaches_four_instances() {
    let s = run(1.0, "burst:100@1m", &[]).await;
    assert_eq!(s.peak_instances, 4);
    assert!(s.failed_activities.is_empty(), "{:?}", s.failed_activities);
    let unclamped = run(1.0, "burst:100@1m", &[Without::QuotaClamp]).await;
    assert!(
        s.drained_at_s.unwrap() < unclamped.drained_at_s.unwrap(),
        "four instances drain the queue sooner"
    );
}

/// Endpoints of one instance type in one account, each with 100 requests at minute 0.
async fn fleet(
    endpoints: &[&str],
    quota: u32,
    other_usage: u32,
    share_quota: bool,
) -> asyncscale_controller::simulate::SimulationResult {
    let resources = endpoints
        .iter()
        .map(|name| {
            let policy = if share_quota { "Share" } else { "Clamp" };
            let manifest = manifest(5.0, policy)
                .replace("name: sdxl", &format!("name: {name}"))
                .replace("sdxl-async", &format!("{name}-async"));
            asyncscale_api::parse_manifests("t.yaml", &manifest)
                .unwrap()
                .remove(0)
                .resource
        })
        .collect();
    simulate(SimulationOptions {
        resources,
        load: LoadProfile::parse("burst:100@0m").unwrap(),
        duration_s: 3.0 * 3600.0,
        quotas: vec![format!("ml.g4dn.xlarge={quota}")],
        other_usage: vec![format!("ml.g4dn.xlarge={other_usage}")],
        without: vec![],
        throughput_per_minute: 6.0,
        initial_instances: None,
        assumptions: Assumptions::default(),
        resync_s: 60.0,
        record_timeline: true,
        start: k8s_openapi::jiff::Timestamp::now(),
    })
    .await
    .unwrap()
}

fn failed(result: &asyncscale_controller::simulate::SimulationResult) -> usize {
    result
        .summaries
        .iter()
        .map(|s| s.failed_activity_count as usize)
        .sum()
}

/// Trap 2 one level up: clamped to the whole quota of 4, two endpoints both ask for the same
/// free instances and both fail, over and over; sharing it, neither ever fails, together they
/// reach the quota, and the queues drain sooner.
#[tokio::test]
async fn two_endpoints_sharing_a_quota_never_fail_and_drain_sooner_than_clamped() {
    let clamped = fleet(&["a", "b"], 4, 0, false).await;
    assert!(
        failed(&clamped) > 10,
        "the issue's 23 failed activities each"
    );
    let shared = fleet(&["a", "b"], 4, 0, true).await;
    assert_eq!(failed(&shared), 0);
    let in_service: u32 = shared.summaries.iter().map(|s| s.peak_instances).sum();
    assert_eq!(in_service, 4, "together at the quota");
    let drained = |r: &asyncscale_controller::simulate::SimulationResult| {
        r.summaries
            .iter()
            .map(|s| s.drained_at_s.expect("drains"))
            .fold(0.0, f64::max)
    };
    assert!(
        drained(&shared) < drained(&clamped),
        "{} < {}",
        drained(&shared),
        drained(&clamped)
    );
    assert!(
        shared.applied[0].iter().any(|c| c
            .contains("MaxCapacity 2 (0 of 4 in use by 2 endpoints; 2 more reserved by the other sharing endpoints' caps; this endpoint may grow to 2)")),
        "{:?}",
        shared.applied[0]
    );
}

/// Endpoints that start with more instances than the quota allows cannot be shared within it:
/// the simulation says so instead of quietly showing more instances than AWS would grant.
#[tokio::test]
async fn starting_above_a_shared_quota_is_a_warning() {
    let resources = ["a", "b"]
        .iter()
        .map(|name| {
            let manifest = manifest(5.0, "Share").replace("sdxl-async", &format!("{name}-async"));
            asyncscale_api::parse_manifests("t.yaml", &manifest)
                .unwrap()
                .remove(0)
                .resource
        })
        .collect();
    let result = simulate(SimulationOptions {
        resources,
        load: LoadProfile::parse("burst:10@0m").unwrap(),
        duration_s: 3600.0,
        quotas: vec!["ml.g4dn.xlarge=4".into()],
        other_usage: vec![],
        without: vec![],
        throughput_per_minute: 6.0,
        initial_instances: Some(3),
        assumptions: Assumptions::default(),
        resync_s: 60.0,
        record_timeline: false,
        start: k8s_openapi::jiff::Timestamp::now(),
    })
    .await
    .unwrap();
    for summary in &result.summaries {
        assert!(
            summary
                .warnings
                .iter()
                .any(|w| w.contains("held 6 instances of ml.g4dn.xlarge, above its quota of 4")),
            "{:?}",
            summary.warnings
        );
    }
}

/// Three endpoints and instances of another endpoint asyncscale does not manage: in no minute do
/// they all hold more than the quota, and no scale-out fails.
#[tokio::test]
async fn three_endpoints_and_an_unmanaged_one_stay_within_the_quota() {
    let shared = fleet(&["a", "b", "c"], 6, 2, true).await;
    assert_eq!(failed(&shared), 0);
    let minutes = shared.world.endpoints[0].timeline.len();
    for minute in 0..minutes {
        let held: u32 = shared
            .world
            .endpoints
            .iter()
            .map(|e| e.timeline[minute].desired)
            .sum();
        assert!(held + 2 <= 6, "minute {minute}: {held} + 2 unmanaged");
    }
    let peak: u32 = shared
        .summaries
        .iter()
        .map(|s| s.peak_desired_instances)
        .sum();
    assert_eq!(peak, 4, "what the quota leaves is used");
}

#[tokio::test]
async fn scale_in_returns_to_zero_after_the_alarm_low_window() {
    let s = run(1.0, "burst:100@1m", &[]).await;
    let drained = s.drained_at_s.unwrap();
    let zero = s.scaled_to_zero_at_s.expect("back to zero");
    // AlarmLow needs 15 of 15 one-minute datapoints below 0.9 × target after the queue empties.
    let after = zero - drained;
    assert!(
        (14.0 * 60.0..=16.0 * 60.0).contains(&after),
        "scale-in {after} s after draining"
    );
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn temp_file(name: &str, body: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("asyncscale-sim-{}-{name}", std::process::id()));
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn the_cli_reports_both_traps_as_json_and_draws_a_chart() {
    let trap1 = temp_file("trap1.yaml", &manifest(180.0, "Clamp"));
    let trap2 = temp_file("trap2.yaml", &manifest(1.0, "Clamp"));
    let chart =
        std::env::temp_dir().join(format!("asyncscale-sim-{}-chart.svg", std::process::id()));
    let json_of = |file: &std::path::Path, extra: &[&str]| -> Value {
        let mut args = vec![
            "simulate",
            "-f",
            file.to_str().unwrap(),
            "--quota",
            "ml.g4dn.xlarge=4",
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = cli(&args);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let hand_made = json_of(
        &trap1,
        &["--load", "burst:5@1m", "--without", "scale-from-zero"],
    );
    assert_eq!(hand_made["time_to_first_instance_s"], Value::Null);
    assert_eq!(hand_made["drained_at_s"], Value::Null);
    let ours = json_of(
        &trap1,
        &["--load", "burst:5@1m", "--chart", chart.to_str().unwrap()],
    );
    assert!(ours["time_to_first_instance_s"].as_f64().unwrap() <= 180.0);
    assert!(ours["drained_at_s"].is_number());
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(
        svg.starts_with("<svg")
            && svg.contains("in-service instances")
            && svg.contains("<polyline"),
        "an SVG chart"
    );

    let stuck = json_of(
        &trap2,
        &["--load", "burst:100@1m", "--without", "quota-clamp"],
    );
    assert_eq!(stuck["peak_instances"], 1);
    assert!(
        stuck["failed_activities"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with(QUOTA_FAILURE)
    );
    let clamped = json_of(&trap2, &["--load", "burst:100@1m"]);
    assert_eq!(clamped["peak_instances"], 4);
    for key in [
        "time_to_first_instance_s",
        "peak_instances",
        "drained_at_s",
        "instance_minutes",
        "failed_activities",
        "failed_activity_count",
        "warnings",
        "configuration_applied",
    ] {
        assert!(clamped.get(key).is_some(), "JSON summary has {key}");
    }

    let (code, out, _) = cli(&[
        "simulate",
        "-f",
        trap1.to_str().unwrap(),
        "--load",
        "burst:5@1m",
        "--duration",
        "30m",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("time to first instance requested: 120 s"),
        "{out}"
    );
    assert!(
        out.contains("provisioning_delay_s = 420"),
        "assumptions are listed"
    );

    let (code, _, err) = cli(&[
        "simulate",
        "-f",
        trap1.to_str().unwrap(),
        "--load",
        "burst:5",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--load") && err.contains("missing @TIME"),
        "{err}"
    );
    for f in [trap1, trap2, chart] {
        let _ = std::fs::remove_file(f);
    }
}

struct Serve {
    _process: Process,
    addr: String,
}

impl Serve {
    fn start() -> Self {
        // The account has the one endpoint the manifests name, so it is the first listed.
        let (process, addr) = start_sim_with(&["ml.g4dn.xlarge=4"], &["sdxl-async=ml.g4dn.xlarge"]);
        Serve {
            _process: process,
            addr,
        }
    }

    fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (status, text) = http(&self.addr, method, path, &[], &body);
        assert!((200..300).contains(&status), "{status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    fn endpoint(&self) -> Value {
        self.admin("GET", "/_sim/endpoints", Value::Null)["endpoints"][0].clone()
    }

    fn apply(&self, manifest: &str) -> String {
        let file = temp_file(
            &format!("wire-{}.yaml", self.addr.replace(':', "-")),
            manifest,
        );
        let out = Command::new(BIN)
            .args([
                "apply",
                "-f",
                file.to_str().unwrap(),
                "--aws-endpoint",
                &format!("http://{}", self.addr),
                "--region",
                "us-east-1",
            ])
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        let _ = std::fs::remove_file(file);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into()
    }
}

#[test]
fn over_the_wire_the_applied_configuration_scales_from_zero_and_back() {
    let sim = Serve::start();
    sim.apply(&manifest(180.0, "Clamp"));
    sim.admin("POST", "/_sim/advance", json!({"seconds": 60}));
    sim.admin(
        "POST",
        "/_sim/requests",
        json!({"endpoint": "sdxl-async", "count": 5}),
    );
    sim.admin("POST", "/_sim/advance", json!({"seconds": 180}));
    assert_eq!(
        sim.endpoint()["desired"],
        1,
        "the HasBacklogWithoutCapacity alarm asked for an instance: {}",
        sim.endpoint()
    );
    sim.admin("POST", "/_sim/advance", json!({"seconds": 600}));
    let e = sim.endpoint();
    assert_eq!(e["backlog"], 0.0, "drained: {e}");
    assert_eq!(e["processed"], 5.0);
    sim.admin("POST", "/_sim/advance", json!({"seconds": 1200}));
    assert_eq!(sim.endpoint()["desired"], 0, "back to zero");
}

#[test]
fn over_the_wire_an_ignored_quota_blocks_scale_out_and_apply_reports_it() {
    let sim = Serve::start();
    sim.apply(&manifest(1.0, "Ignore"));
    sim.admin(
        "POST",
        "/_sim/requests",
        json!({"endpoint": "sdxl-async", "count": 100}),
    );
    sim.admin("POST", "/_sim/advance", json!({"seconds": 900}));
    let e = sim.endpoint();
    assert_eq!(e["desired"], 1, "stuck at one: {e}");
    assert!(e["failedActivities"].as_u64().unwrap() > 0);
    // The scaling activity the model recorded is what asyncscale reads back into status.
    let out = sim.apply(&manifest(1.0, "Ignore"));
    assert!(
        out.contains("ScalingHealthy  False    QuotaExceeded"),
        "{out}"
    );

    // Clamping (the default) lets it reach the quota.
    let fixed = sim.apply(&manifest(1.0, "Clamp"));
    assert!(fixed.contains("maxCapacity 20 → 4"), "{fixed}");
    sim.admin("POST", "/_sim/advance", json!({"seconds": 180}));
    assert_eq!(sim.endpoint()["desired"], 4, "{}", sim.endpoint());
}

#[test]
fn over_the_wire_target_tracking_alone_leaves_a_few_requests_waiting() {
    let sim = Serve::start();
    let hand_made =
        manifest(180.0, "Clamp").replace("  quota:", "  scaleFromZero: {enabled: false}\n  quota:");
    sim.apply(&hand_made);
    sim.admin(
        "POST",
        "/_sim/requests",
        json!({"endpoint": "sdxl-async", "count": 5}),
    );
    sim.admin("POST", "/_sim/advance", json!({"seconds": 7200}));
    let e = sim.endpoint();
    assert_eq!(e["desired"], 0, "two hours at zero instances: {e}");
    assert_eq!(e["backlog"], 5.0);
}

/// Flags that cannot mean anything are refused before anything runs, naming the flag and the fix.
#[test]
fn contradictory_or_unbounded_simulation_flags_are_usage_errors() {
    let file = temp_file("flags.yaml", &manifest(5.0, "Clamp"));
    let file = file.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--load", "burst:5@3m", "--resync", "1s"],
            "a resync from 10s to 1h",
        ),
        (
            &["--load", "burst:5@3h", "--duration", "1h"],
            "at or after the end of --duration",
        ),
        (
            &["--load", "burst:5@3m", "--duration", "0s"],
            "simulate from 1m",
        ),
        (
            &["--load", "burst:5@3m", "--duration", "100000h"],
            "to 168h (7 days)",
        ),
        (
            &["--load", "burst:5@3m", "--aws-endpoint", "notaurl"],
            "unexpected argument",
        ),
    ];
    for (flags, says) in cases {
        let mut args = vec!["simulate", "-f", file];
        args.extend_from_slice(flags);
        let (code, stdout, stderr) = cli(&args);
        assert_eq!(code, 1, "{flags:?}: {stderr}");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
        assert!(stdout.is_empty(), "{flags:?}: nothing simulated: {stdout}");
    }
    for (flag, value) in [("--aws-endpoint", "notaurl"), ("--region", "us east")] {
        let (code, _, stderr) = cli(&["plan", "-f", file, flag, value]);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!("invalid value '{value}' for '{flag}")),
            "{stderr}"
        );
    }
}

/// AWS moves capacity into new bounds when RegisterScalableTarget returns (docs/aws-behaviour.md
/// §2.13), and a raise past the quota fails whole, leaving the capacity where it was (§5.4).
#[test]
fn over_the_wire_new_bounds_move_capacity_when_the_call_returns() {
    let sim = Serve::start();
    let register = |min: u32, max: u32| {
        let body = json!({"ServiceNamespace": "sagemaker", "ResourceId": "endpoint/sdxl-async/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "MinCapacity": min, "MaxCapacity": max});
        let headers = [
            (
                "X-Amz-Target",
                "AnyScaleFrontendService.RegisterScalableTarget",
            ),
            ("Content-Type", "application/x-amz-json-1.1"),
        ];
        let (status, text) = http(&sim.addr, "POST", "/", &headers, &body.to_string());
        assert_eq!(status, 200, "{text}");
    };
    register(2, 3);
    assert_eq!(sim.endpoint()["desired"], 2, "{}", sim.endpoint());
    register(6, 8);
    let e = sim.endpoint();
    assert_eq!(
        e["desired"], 2,
        "a raise past the quota of 4 fails whole: {e}"
    );
    assert_eq!(e["failedActivities"], 1, "{e}");
}

/// A scheduled pre-warm: a schedule raises minCapacity to 1 ten minutes before a nightly burst,
/// and the first request is served with no provisioning wait; without it, the burst waits for
/// an instance from zero. A second schedule lets the endpoint go back to zero after.
#[tokio::test]
async fn a_scheduled_pre_warm_serves_the_first_request_without_waiting() {
    let yaml = "apiVersion: asyncscale.io/v1alpha1
kind: AsyncEndpointScaling
metadata: {name: nightly, namespace: ml}
spec:
  endpointName: nightly-batch
  instanceType: ml.g4dn.xlarge
  maxCapacity: 4
  targetTracking: {targetValue: 5}
  schedules:
    - {name: prewarm, schedule: cron(50 1 * * ? *), timeZone: Europe/Berlin, minCapacity: 1}
    - {name: release, schedule: cron(0 3 * * ? *), timeZone: Europe/Berlin, minCapacity: 0}
";
    let resource = asyncscale_api::parse_manifests("t.yaml", yaml)
        .unwrap()
        .remove(0)
        .resource;
    let run = |without: Vec<Without>| {
        simulate(SimulationOptions {
            resources: vec![resource.clone()],
            // 01:00 in Berlin (UTC+1 in December); the burst comes at 02:00.
            load: LoadProfile::parse("burst:20@60m").unwrap(),
            duration_s: 3.0 * 3600.0,
            quotas: vec!["ml.g4dn.xlarge=4".into()],
            other_usage: vec![],
            without,
            throughput_per_minute: 6.0,
            initial_instances: None,
            assumptions: Assumptions::default(),
            resync_s: 60.0,
            record_timeline: true,
            start: "2026-12-01T00:00:00Z".parse().unwrap(),
        })
    };
    let with = run(vec![]).await.unwrap();
    let s = &with.summaries[0];
    assert!(
        with.applied[0]
            .iter()
            .any(|c| c.starts_with("+ create scheduled action asyncscale-prewarm")),
        "{:?}",
        with.applied[0]
    );
    let asked = s.time_to_first_instance_s.unwrap();
    // At 01:50 Berlin time, to within the model's tick.
    assert!((-610.0..=-600.0).contains(&asked), "{asked}");
    assert_eq!(s.time_to_first_in_service_s, Some(0.0), "no wait at all");
    assert_eq!(
        s.scaled_to_zero_at_s,
        Some(120.0 * 60.0),
        "released at 03:00"
    );
    let without = run(vec![Without::Schedules]).await.unwrap();
    let cold = without.summaries[0].time_to_first_in_service_s.unwrap();
    assert!(
        cold >= 420.0,
        "from zero it waits for provisioning: {cold} s"
    );
}
