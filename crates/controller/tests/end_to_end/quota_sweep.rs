//! The shared quota under every single failure, through the real `asyncscale` binary (`apply`).
//!
//! For each scenario of `asyncscale_sim::sweep`, a run without faults is made first, to learn
//! which AWS operations the change makes and how often; then each of those operations is failed
//! in turn, at each position where it occurs, in each way AWS fails (`asyncscale_sim::failures`:
//! throttled past the SDK's retries, 500, AccessDenied, not found, held past the call timeout),
//! and:
//!
//! - every MaxCapacity write the local endpoint took during the run is replayed in order: no
//!   raise may leave the quota over-committed, at any moment;
//! - a run that exits 0 leaves the quota within bounds (an unconverged run says so);
//! - requests are then queued on every endpoint and the scaling model runs half an hour: no
//!   scaling activity fails on the quota where the run started within it.
//!
//! The table of what ran is written to `target/quota-sweep-cli.txt`.

use std::sync::Arc;

use asyncscale_sim::SimServer;
use asyncscale_sim::failures::Failure;
use asyncscale_sim::sweep::{
    Injected, SCENARIOS, Scenario, Start, cases_of, label, manifest, operations_between, run_cases,
    traffic,
};

use crate::support::cli_against;

/// Cases run at once: each is mostly waiting (on the SDK's backoff, or a held answer).
const PARALLEL: usize = 6;
/// The call timeout of the runs under test, and how long a held answer waits.
const CALL_TIMEOUT: &str = "1s";
const HELD_SECONDS: f64 = 2.5;
/// The runs without a fault may take their time on a busy machine.
const SETUP_TIMEOUT: &str = "30s";

/// A directory removed when dropped.
struct Dir(std::path::PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("asyncscale-sweep-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh account with the scenario's endpoints, after its first run.
async fn prepared(scenario: &Scenario, tag: &str) -> (SimServer, Dir) {
    let server = asyncscale_sim::start("127.0.0.1:0".parse().unwrap(), scenario.quotas())
        .await
        .unwrap();
    scenario.declare(&server);
    let dir = Dir::new(tag);
    std::fs::write(dir.0.join("before.yaml"), manifest(scenario.before)).unwrap();
    std::fs::write(dir.0.join("after.yaml"), manifest(scenario.after)).unwrap();
    let out = apply(&server, &dir, "before.yaml", SETUP_TIMEOUT).await;
    assert!(
        out.status.success(),
        "{}: the first run failed:\n{}{}",
        scenario.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    scenario.between_runs(&server);
    (server, dir)
}

async fn apply(
    server: &SimServer,
    dir: &Dir,
    file: &str,
    call_timeout: &str,
) -> std::process::Output {
    let url = server.url();
    let path = dir.0.join(file).display().to_string();
    let call_timeout = call_timeout.to_string();
    tokio::task::spawn_blocking(move || {
        cli_against(
            &url,
            &[
                "apply",
                "-f",
                &path,
                "--aws-call-timeout",
                &call_timeout,
                "--aws-attempt-timeout",
                &call_timeout,
            ],
        )
    })
    .await
    .unwrap()
}

/// One case: its line of the table, and the violations it found.
async fn case(
    scenario: &'static Scenario,
    fault: Option<Injected>,
    tag: String,
) -> (String, Vec<String>) {
    let (server, dir) = prepared(scenario, &tag).await;
    let quota = scenario.quota();
    let start = Start::read(&server);
    if let Some((service, operation, position, failure)) = &fault {
        let fault = failure.fault(service, operation, *position);
        server.account.lock().unwrap().faults.push(fault);
    }
    let out = apply(&server, &dir, "after.yaml", CALL_TIMEOUT).await;
    // A held answer is still served after the client gave up: let it land before judging.
    if let Some((_, _, _, Failure::Held(seconds))) = &fault {
        tokio::time::sleep(std::time::Duration::from_secs_f64(*seconds)).await;
    }
    let label = label(&fault);
    let (mut violations, allowed, writes) = start.judge(&server, quota);
    if out.status.success() && allowed > quota {
        violations.push(format!(
            "exit 0 with {allowed} allowed of a quota of {quota}"
        ));
    }
    let failed = traffic(&server, 200.0, 1800.0);
    if failed > 0 && start.allowed_at_start() <= quota {
        violations.push(format!("{failed} scaling activities failed on the quota"));
    }
    let line = format!(
        "| {} | {label} | {writes} | {} | {allowed}/{quota} | {failed} | {} |",
        scenario.name,
        out.status.code().unwrap_or(-1),
        if violations.is_empty() {
            "ok"
        } else {
            "VIOLATED"
        },
    );
    (line, violations)
}

/// The operations a change makes, by service, and how often (the local endpoint's count of the
/// requests it answered during a run without faults).
async fn operations(scenario: &Scenario, tag: &str) -> Vec<(String, String, u64)> {
    let (server, dir) = prepared(scenario, tag).await;
    let before = server.account.lock().unwrap().calls.clone();
    let out = apply(&server, &dir, "after.yaml", SETUP_TIMEOUT).await;
    assert!(out.status.success(), "{}", scenario.name);
    let after = server.account.lock().unwrap().calls.clone();
    operations_between(&before, &after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_share_holds_under_every_single_failure_of_a_cli_run() {
    let mut cases = Vec::new();
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        let operations = operations(scenario, &format!("{s}-ops")).await;
        cases.extend(cases_of(scenario, &operations, HELD_SECONDS));
    }
    let total = cases.len();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (table, violations) = run_cases(
        cases,
        PARALLEL,
        "| scenario | failure (operation, its n-th call, how) | MaxCapacity writes | exit | allowed/quota at the end | activities failed on the quota | invariant |\n|---|---|---|---|---|---|---|\n",
        move |(scenario, fault)| {
            let tag = format!(
                "case-{}",
                next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            case(scenario, fault, tag)
        },
    )
    .await;
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let _ = std::fs::write(target.join("quota-sweep-cli.txt"), &table);
    assert!(
        violations.is_empty(),
        "{} of {total} cases broke the quota share:\n{}\n\n{table}",
        violations.len(),
        violations.join("\n")
    );
}
