//! The shared quota under every single failure, along the controller's path: the resources are
//! reconciled the way the controller does it (each converged on its own, through one fleet view
//! over the SDK adapter, again and again as resyncs and requeues would), against the local
//! endpoint. The scenarios, the failures and the judge are `asyncscale_sim::sweep`'s and
//! `asyncscale_sim::failures`' (the CLI's sweep runs the same through the real binary).
//!
//! Each operation the first round of reconciles makes is failed in turn, at each position where
//! it occurs, in each way AWS fails; the rounds go on with the fault in place and then without
//! it, and every MaxCapacity write is replayed: no raise may over-commit the quota at any
//! moment; once settled the quota is within bounds, and status says what AWS holds. Then traffic
//! is queued and the scaling model runs: no activity fails on the quota. The table is written to
//! `target/quota-sweep-controller.txt`.

use std::sync::Arc;
use std::time::Duration;

use asyncscale_api::{AsyncEndpointScalingSpec, parse_manifests};
use asyncscale_core::Adoption;
use asyncscale_core::Owner;
use asyncscale_core::status::SyncOutcome;
use asyncscale_engine::{
    ConvergeMode, ConvergeReport, Fence, FleetConfig, FleetView, Intent, OwnershipCheck, Place,
    converge, quota_peers,
};
use asyncscale_sim::SimServer;
use asyncscale_sim::failures::Failure;
use asyncscale_sim::sweep::{
    Injected, SCENARIOS, Scenario, Start, cases_of, label, manifest, operations_between, run_cases,
    traffic,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

mod support;

const PARALLEL: usize = 32;
const HELD_SECONDS: f64 = 2.5;
/// The call timeout of the runs under test (shorter than a held answer), and of the first run,
/// which may take its time on a busy machine.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The fleet view's refresh interval: each round of reconciles starts with a refresh.
const REFRESH: Duration = Duration::from_millis(50);
/// Rounds with the fault in place; then rounds without it until every resource is in sync
/// (the controller's retries and requeues), for at most this long: a failed refresh is held
/// 5 s before it is tried again, a failed quota read 10 s.
const ROUNDS_FAULTY: usize = 3;
const SETTLE_WITHIN: Duration = Duration::from_secs(25);

fn specs(resources: &[(&str, u32)]) -> Vec<AsyncEndpointScalingSpec> {
    parse_manifests("t.yaml", &manifest(resources))
        .unwrap()
        .into_iter()
        .map(|p| p.resource.spec)
        .collect()
}

/// One reconcile of each resource, in order, through `view`.
async fn round(view: &FleetView, specs: &[AsyncEndpointScalingSpec]) -> Vec<ConvergeReport> {
    let here = Place {
        account: None,
        region: "us-east-1".into(),
    };
    let mut reports = Vec::new();
    for spec in specs {
        let peers = quota_peers(spec, &here, specs.iter().map(|s| (s, &here)));
        let intent = Intent {
            spec,
            owner: Owner {
                namespace: "ml".into(),
                name: spec.endpoint_name.clone(),
                uid: Some(format!("uid-{}", spec.endpoint_name)),
            },
            adoption: Adoption::new(false),
            generation: Some(1),
            fence: Fence::open(),
            observation_stale: false,
            ownership_check: OwnershipCheck::Always,
            quota_peers: &peers,
            peers_now: None,
            run_peers_lower_first: false,
        };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        reports.push(converge(view, &intent, ConvergeMode::Apply, None, &now).await);
    }
    reports
}

/// A controller's fleet view over the local endpoint, with a call timeout shorter than a held
/// answer.
async fn view(server: &SimServer, call_timeout: Duration) -> FleetView {
    let backend = support::backend_with_timeout(&server.url(), call_timeout).await;
    FleetView::new(
        Arc::new(backend),
        FleetConfig {
            refresh_every: REFRESH,
            policy_refresh_every: 1,
            read_backlog_alarms: true,
        },
    )
}

/// A fresh account after the first run (its own fleet view: a controller that started before).
async fn prepared(scenario: &Scenario) -> SimServer {
    let server = asyncscale_sim::start("127.0.0.1:0".parse().unwrap(), scenario.quotas())
        .await
        .unwrap();
    scenario.declare(&server);
    let first = view(&server, SETUP_TIMEOUT).await;
    for report in round(&first, &specs(scenario.before)).await {
        assert_eq!(report.outcome, SyncOutcome::InSync, "{}", scenario.name);
    }
    scenario.between_runs(&server);
    server
}

async fn case(scenario: &'static Scenario, fault: Option<Injected>) -> (String, Vec<String>) {
    let server = prepared(scenario).await;
    let quota = scenario.quota();
    let start = Start::read(&server);
    let view = view(&server, CALL_TIMEOUT).await;
    let after = specs(scenario.after);
    if let Some((service, operation, position, failure)) = &fault {
        let fault = failure.fault(service, operation, *position);
        server.account.lock().unwrap().faults.push(fault);
    }
    for _ in 0..ROUNDS_FAULTY {
        tokio::time::sleep(REFRESH).await;
        round(&view, &after).await;
    }
    server.account.lock().unwrap().faults.clear();
    if let Some((_, _, _, Failure::Held(seconds))) = &fault {
        tokio::time::sleep(Duration::from_secs_f64(*seconds)).await;
    }
    let settling = std::time::Instant::now();
    let last = loop {
        tokio::time::sleep(REFRESH * 4).await;
        let reports = round(&view, &after).await;
        let settled = reports.iter().all(|r| {
            r.outcome == SyncOutcome::InSync
                && r.error.is_none()
                && r.status
                    .conditions
                    .iter()
                    .all(|c| c.reason != "QuotaUnknown")
                && r.desired
                    .as_ref()
                    .and_then(|d| d.share.as_ref())
                    .is_none_or(|s| s.awaiting.is_empty())
        });
        if settled || settling.elapsed() > SETTLE_WITHIN {
            break reports;
        }
    };
    let label = label(&fault);
    let (mut violations, allowed, writes) = start.judge(&server, quota);
    if allowed > quota {
        violations.push(format!(
            "settled with {allowed} allowed of a quota of {quota}"
        ));
    }
    // Status says what AWS holds.
    let state = server.account.lock().unwrap().snapshot("us-east-1");
    for (spec, report) in after.iter().zip(&last) {
        let id = format!("endpoint/{}/variant/AllTraffic", spec.endpoint_name);
        let held = state["ScalableTargets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["ResourceId"] == id.as_str())
            .and_then(|t| t["MaxCapacity"].as_i64())
            .map(|m| m as i32);
        if report.status.effective_max_capacity != held {
            violations.push(format!(
                "{id}: status says effectiveMaxCapacity {:?}, AWS holds {held:?}",
                report.status.effective_max_capacity
            ));
        }
        if report.outcome != SyncOutcome::InSync {
            violations.push(format!("{id}: not settled: {:?}", report.outcome));
        }
    }
    let failed = traffic(&server, 200.0, 1800.0);
    if failed > 0 {
        violations.push(format!("{failed} scaling activities failed on the quota"));
    }
    let line = format!(
        "| {} | {label} | {writes} | {allowed}/{quota} | {failed} | {:.1} s | {} |",
        scenario.name,
        settling.elapsed().as_secs_f64(),
        if violations.is_empty() {
            "ok"
        } else {
            "VIOLATED"
        },
    );
    (line, violations)
}

/// The operations the first round of reconciles makes, by service, and how often.
async fn operations(scenario: &Scenario) -> Vec<(String, String, u64)> {
    let server = prepared(scenario).await;
    let view = view(&server, CALL_TIMEOUT).await;
    let before = server.account.lock().unwrap().calls.clone();
    tokio::time::sleep(REFRESH).await;
    round(&view, &specs(scenario.after)).await;
    let after = server.account.lock().unwrap().calls.clone();
    operations_between(&before, &after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_share_holds_under_every_single_failure_of_the_controllers_reconciles() {
    let mut cases = Vec::new();
    for scenario in SCENARIOS {
        cases.extend(cases_of(
            scenario,
            &operations(scenario).await,
            HELD_SECONDS,
        ));
    }
    let total = cases.len();
    let (table, violations) = run_cases(
        cases,
        PARALLEL,
        "| scenario | failure (operation, its n-th call in the first round, how) | MaxCapacity writes | allowed/quota settled | activities failed on the quota | settled in | invariant |\n|---|---|---|---|---|---|---|\n",
        |(scenario, fault)| case(scenario, fault),
    )
    .await;
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let _ = std::fs::write(target.join("quota-sweep-controller.txt"), &table);
    assert!(
        violations.is_empty(),
        "{} of {total} cases broke the quota share:\n{}\n\n{table}",
        violations.len(),
        violations.join("\n")
    );
}
