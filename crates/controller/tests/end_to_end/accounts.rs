//! One process, many accounts: resources with spec.roleArn are applied in the account of their
//! role, through STS AssumeRole with the process's own credentials, against the real local AWS
//! endpoint (`asyncscale sim serve`), where each role's account is a simulated account of its own.

use std::process::Output;

use serde_json::{Value, json};

use crate::support::{Process, cli_against, http, start_sim_with};

const TEAM_A: &str = "111111111111";
const TEAM_B: &str = "222222222222";
const ROLE_A: &str = "arn:aws:iam::111111111111:role/asyncscale-team-a";
const ROLE_B: &str = "arn:aws:iam::222222222222:role/ml/asyncscale-team-b";
/// A role no trust policy lets the controller assume.
const ROLE_REFUSED: &str = "arn:aws:iam::333333333333:role/asyncscale";
const RID: &str = "endpoint/sdxl-async/variant/AllTraffic";

struct Sim {
    _process: Process,
    addr: String,
}

impl Sim {
    /// Two accounts besides the caller's own: team A's (instance quota 3) and team B's (7),
    /// each with an endpoint of the same name. Team B's role asks for an external id.
    fn start() -> Self {
        let (process, addr) = start_sim_with(&["ml.g4dn.xlarge=4"], &[]);
        let sim = Self {
            _process: process,
            addr,
        };
        for (account, quota) in [(TEAM_A, 3), (TEAM_B, 7)] {
            let quotas = json!({"applied": {"ml.g4dn.xlarge": quota}}).to_string();
            assert_eq!(
                sim.post(&format!("/_sim/quotas?account={account}"), &quotas),
                204
            );
            let endpoint = json!({"endpoint": "sdxl-async", "instanceType": "ml.g4dn.xlarge"});
            let path = format!("/_sim/endpoints?account={account}");
            assert_eq!(sim.post(&path, &endpoint.to_string()), 204);
        }
        let roles = [
            json!({"arn": ROLE_A}),
            json!({"arn": ROLE_B, "externalId": "team-b-7f3a"}),
        ];
        for role in roles {
            assert_eq!(sim.post("/_sim/roles", &role.to_string()), 204);
        }
        sim
    }

    fn post(&self, path: &str, body: &str) -> u16 {
        http(&self.addr, "POST", path, &[], body).0
    }

    fn get(&self, path: &str) -> Value {
        serde_json::from_str(&http(&self.addr, "GET", path, &[], "").1).unwrap()
    }

    fn state(&self, account: &str) -> Value {
        self.get(&format!("/_sim/state?account={account}"))
    }

    fn targets(&self, account: &str) -> Vec<Value> {
        self.state(account)["ScalableTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn calls(&self, account: &str) -> Value {
        self.get(&format!("/_sim/calls?account={account}"))
    }

    fn cli(&self, args: &[&str]) -> Output {
        cli_against(&format!("http://{}", self.addr), args)
    }
}

fn resource(name: &str, role: &str, external_id: Option<&str>) -> String {
    let external = external_id.map_or(String::new(), |id| format!("  externalId: {id}\n"));
    format!(
        "apiVersion: asyncscale.io/v1alpha1
kind: AsyncEndpointScaling
metadata: {{name: {name}, namespace: ml}}
spec:
  endpointName: sdxl-async
  instanceType: ml.g4dn.xlarge
  roleArn: {role}
{external}  maxCapacity: 20
  targetTracking: {{targetValue: 5}}
"
    )
}

struct Files {
    dir: std::path::PathBuf,
}

impl Files {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("asyncscale-e2e-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn write(&self, name: &str, body: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, body).unwrap();
        path.to_string_lossy().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn writes(calls: &Value) -> u64 {
    let ops = calls.as_object().unwrap().values();
    ops.flat_map(|ops| ops.as_object().unwrap())
        .filter(|(op, _)| asyncscale_engine::calls::is_write(op))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum()
}

fn count(calls: &Value, service: &str, operation: &str) -> u64 {
    calls[service][operation].as_u64().unwrap_or(0)
}

#[test]
fn two_roles_land_in_two_accounts_with_their_own_quotas_and_a_refused_role_holds_up_nothing() {
    let sim = Sim::start();
    let files = Files::new("accounts");
    let both = files.write(
        "teams.yaml",
        &format!(
            "{}---\n{}",
            resource("team-a", ROLE_A, None),
            resource("team-b", ROLE_B, Some("team-b-7f3a"))
        ),
    );
    let apply = sim.cli(&["apply", "-f", &both]);
    assert!(apply.status.success(), "{}", text(&apply));

    // The same endpoint variant in two accounts: two targets, each held to its account's quota.
    let a = sim.targets(TEAM_A);
    let b = sim.targets(TEAM_B);
    assert_eq!((a.len(), b.len()), (1, 1), "{a:?} {b:?}");
    assert_eq!(
        (a[0]["ResourceId"].as_str(), a[0]["MaxCapacity"].as_i64()),
        (Some(RID), Some(3))
    );
    assert_eq!(
        (b[0]["ResourceId"].as_str(), b[0]["MaxCapacity"].as_i64()),
        (Some(RID), Some(7))
    );
    for (target, account) in [(&a[0], TEAM_A), (&b[0], TEAM_B)] {
        let arn = target["ScalableTargetARN"].as_str().unwrap();
        assert!(arn.contains(&format!(":{account}:")), "{arn}");
    }
    assert!(
        sim.targets("123456789012").is_empty(),
        "nothing in the caller's own account"
    );

    // One session per role, with the external id its trust policy asks for; STS was called
    // with the process's own credentials (in its own account), once per role.
    let sessions = sim.get("/_sim/sessions");
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let of = |role: &str| {
        sessions
            .iter()
            .find(|s| s["roleArn"] == role)
            .unwrap()
            .clone()
    };
    assert_eq!(of(ROLE_A)["externalId"], Value::Null);
    assert_eq!(of(ROLE_B)["externalId"], "team-b-7f3a");
    assert_eq!(of(ROLE_B)["roleSessionName"], "asyncscale");
    let own = sim.calls("123456789012");
    assert_eq!(count(&own, "sts", "AssumeRole"), 2, "{own}");
    assert_eq!(
        count(&own, "application-autoscaling", "RegisterScalableTarget"),
        0
    );
    for account in [TEAM_A, TEAM_B] {
        let calls = sim.calls(account);
        assert_eq!(
            count(&calls, "application-autoscaling", "RegisterScalableTarget"),
            1,
            "{calls}"
        );
        assert_eq!(
            count(&calls, "service-quotas", "GetServiceQuota"),
            1,
            "{calls}"
        );
    }

    // A role STS refuses fails its resource alone, in STS's words; the others still converge
    // (team A's maxCapacity change is written).
    let refused = files.write(
        "refused.yaml",
        &format!(
            "{}---\n{}",
            resource("team-c", ROLE_REFUSED, None),
            resource("team-a", ROLE_A, None).replace("maxCapacity: 20", "maxCapacity: 2")
        ),
    );
    let apply = sim.cli(&["apply", "-f", &refused]);
    assert_eq!(apply.status.code(), Some(1), "{}", text(&apply));
    assert!(
        text(&apply).contains(&format!(
            "could not assume the role {ROLE_REFUSED} with asyncscale's own credentials: AccessDenied: User: arn:aws:iam::123456789012:user/asyncscale-local is not authorized to perform: sts:AssumeRole on resource: {ROLE_REFUSED}"
        )),
        "{}",
        text(&apply)
    );
    assert_eq!(
        sim.targets(TEAM_A)[0]["MaxCapacity"],
        2,
        "team A was not held up"
    );
    // -o json reports it with the others, in status as the controller would.
    let plan = sim.cli(&["plan", "-f", &refused, "-o", "json"]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    let report: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let team_c = &report["resources"][0];
    assert_eq!(team_c["name"], "ml/team-c", "{report}");
    let ready = team_c["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("RoleNotAssumed"))
    );
    assert!(sim.targets("333333333333").is_empty());

    // Back to the spec, then a re-apply writes nothing anywhere; delete cleans each account.
    let apply = sim.cli(&["apply", "-f", &both]);
    assert!(apply.status.success(), "{}", text(&apply));
    let written = || -> u64 { [TEAM_A, TEAM_B].iter().map(|a| writes(&sim.calls(a))).sum() };
    let before = written();
    let apply = sim.cli(&["apply", "-f", &both]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert_eq!(written(), before, "a re-apply writes nothing");
    let delete = sim.cli(&["delete", "-f", &both]);
    assert!(delete.status.success(), "{}", text(&delete));
    assert!(sim.targets(TEAM_A).is_empty() && sim.targets(TEAM_B).is_empty());
}

/// AssumeRole throttled, failing or hanging: the resource's apply fails with the reason,
/// nothing is written in its account, and the next apply finishes.
#[test]
fn assume_role_failing_alone_leaves_the_account_as_it_was() {
    let sim = Sim::start();
    let files = Files::new("assume-role-faults");
    let file = files.write("a.yaml", &resource("team-a", ROLE_A, None));
    for (fault, said) in [
        (
            json!({"service": "sts", "operation": "AssumeRole", "code": "Throttling", "message": "Rate exceeded", "count": 0}),
            "Throttling: Rate exceeded",
        ),
        (
            json!({"service": "sts", "operation": "AssumeRole", "code": "InternalFailure", "status": 500, "count": 0}),
            "InternalFailure",
        ),
        (
            json!({"service": "sts", "operation": "AssumeRole", "delaySeconds": 60, "count": 0}),
            "did not answer within",
        ),
    ] {
        assert_eq!(sim.post("/_sim/faults", &fault.to_string()), 204);
        let apply = sim.cli(&[
            "apply",
            "-f",
            &file,
            "--aws-attempt-timeout",
            "1s",
            "--aws-call-timeout",
            "3s",
        ]);
        assert_eq!(apply.status.code(), Some(1), "{}", text(&apply));
        assert!(text(&apply).contains(said), "{fault}: {}", text(&apply));
        assert!(sim.targets(TEAM_A).is_empty(), "{fault}: nothing written");
        assert_eq!(http(&sim.addr, "DELETE", "/_sim/faults", &[], "").0, 204);
    }
    let apply = sim.cli(&["apply", "-f", &file]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert_eq!(sim.targets(TEAM_A)[0]["MaxCapacity"], 3);
}

/// A hung AssumeRole costs a one-shot run one call timeout per role, not per resource: the
/// role's next resources get the same error at once (the failure is held from when it came,
/// so a call timeout longer than the hold does not start a new AssumeRole for each).
#[test]
fn a_hung_role_costs_one_call_timeout_per_run_not_per_resource() {
    let sim = Sim::start();
    let files = Files::new("hung-role");
    let three = (1..=3)
        .map(|i| {
            resource(&format!("team-a-{i}"), ROLE_A, None).replace("sdxl-async", &format!("e{i}"))
        })
        .collect::<Vec<_>>()
        .join("---\n");
    let file = files.write("three.yaml", &three);
    let hang = json!({"service": "sts", "operation": "AssumeRole", "delaySeconds": 60, "count": 0});
    assert_eq!(sim.post("/_sim/faults", &hang.to_string()), 204);
    let started = std::time::Instant::now();
    let plan = sim.cli(&[
        "plan",
        "-f",
        &file,
        "--aws-attempt-timeout",
        "6s",
        "--aws-call-timeout",
        "6s",
    ]);
    let took = started.elapsed();
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    assert_eq!(
        text(&plan)
            .matches("  error: could not assume the role")
            .count(),
        3,
        "{}",
        text(&plan)
    );
    assert!(
        text(&plan).contains("did not answer within"),
        "{}",
        text(&plan)
    );
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
}
