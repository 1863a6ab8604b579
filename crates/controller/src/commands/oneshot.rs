//! `plan`, `apply` and `delete`: the engine run on each resource of the manifest files, and what
//! happened printed (text or JSON).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use asyncscale_api::{
    AsyncEndpointScaling, AsyncEndpointScalingStatus, DeletionPolicy, QuotaPolicy, validate_spec,
};
use asyncscale_aws::SdkBackend;
use asyncscale_core::conditions::{ConditionType, Reason};
use asyncscale_core::status::SyncOutcome;
use asyncscale_core::{Adoption, ResourceNames};
use asyncscale_engine::{
    AutoscalingBackend, AwsError, BackendSource, CallCounter, ConvergeMode, Fence, FleetConfig,
    FleetSource, Intent, OwnershipCheck, Placement, QuotaPeer, converge, quota_peers, remove,
    status_without_aws, unreachable_outcome,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::commands::args::{ManifestArgs, Output};
use crate::endpoint_cache::DiskEndpointCache;
use crate::identity::{display_name, owner_of, wants_adoption};
use crate::manifests::{duplicates, read_all};

/// What a manifest command does with each resource.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Plan,
    Apply,
    Delete,
}

/// `plan`, `apply` or `delete` of every resource in the files: all files are read and checked
/// before anything reaches AWS.
pub async fn run(args: ManifestArgs, verb: Verb) -> ExitCode {
    let resources = match read_all(&args.files) {
        Ok(r) => r,
        Err(problems) => {
            for p in problems {
                eprintln!("error: {p}");
            }
            return ExitCode::FAILURE;
        }
    };
    let calls = CallCounter::default();
    let (backends, simulated) = match args.aws.connect(calls.clone(), true, Fence::open()).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Two runs that write at once could each raise a cap against the other's old value: runs
    // of this machine that write to one AWS endpoint take turns. (Runs on other machines, or a
    // controller writing the same account, are not held by it: one writer per account.)
    let _turn = match (verb, &simulated) {
        (Verb::Apply | Verb::Delete, None) => take_turn(&args).await,
        _ => None,
    };
    // A simulated account has the endpoints the manifests name, as the spec describes them.
    if let Some(server) = &simulated {
        for (_, parsed) in &resources {
            let spec = &parsed.resource.spec;
            server.declare_endpoint(&spec.endpoint_name, &spec.variant_name, &spec.instance_type);
        }
    }
    // One refresh for the whole run: every resource is read from the same picture (its own
    // writes are read back directly).
    let bulk = resources.len() >= args.bulk_from as usize;
    // The simulated account is new each run: nothing of it is worth keeping.
    let cache_dir = (bulk && !args.no_cache && simulated.is_none())
        .then(|| {
            args.cache_dir
                .clone()
                .or_else(DiskEndpointCache::default_dir)
        })
        .flatten();
    let cache = match cache_dir {
        Some(dir) => {
            // The own credentials' account keys their cache: two profiles never share one. Without
            // it, only roles' accounts are cached.
            let own = match SdkBackend::caller_account(&args.aws.options(), &calls).await {
                Ok(account) => Some(account),
                Err(e) => {
                    eprintln!(
                        "warning: the endpoint cache is not used for the own credentials: their account is unknown ({e})"
                    );
                    None
                }
            };
            Some(Arc::new(DiskEndpointCache::new(
                dir,
                args.aws.endpoint_url().map(str::to_string),
                own,
            )))
        }
        None => None,
    };
    let backends: Arc<dyn BackendSource> = if bulk {
        let once = FleetConfig {
            refresh_every: Duration::from_secs(24 * 3600),
            policy_refresh_every: 1,
            read_backlog_alarms: false,
        };
        let source = FleetSource::new(backends, once);
        Arc::new(match &cache {
            Some(cache) => source.remembering(cache.clone()),
            None => source,
        })
    } else {
        backends
    };
    // None: every resource without spec.region reports the missing region below.
    let default_region = backends.default_region().await;
    let problems = duplicates(&resources, backends.as_ref(), default_region.as_deref());
    if !problems.is_empty() {
        for p in problems {
            eprintln!("error: {p}");
        }
        return ExitCode::FAILURE;
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut failed = false;
    let mut pending = false;
    let mut results: Vec<Option<Outcome>> = (0..resources.len()).map(|_| None).collect();
    // A raise waits until AWS holds the lowerings that pay for it: a resource whose raise is held
    // for another of this run is converged again once the others are, so a run writes every
    // lowering before the raises, whatever the order of the files.
    let mut todo: Vec<usize> = (0..resources.len()).collect();
    loop {
        let mut held = Vec::new();
        for &i in &todo {
            let resource = &resources[i].1.resource;
            let backend = match backends.backend(&Placement::of(&resource.spec)).await {
                Ok(b) => b,
                Err(e) => {
                    let result = unreachable_one(resource, verb, &e, &now);
                    if args.output == Output::Text {
                        print!("{}", result.text);
                    }
                    results[i] = Some(result);
                    continue;
                }
            };
            let result = match verb {
                Verb::Delete => delete_one(backend.as_ref(), resource).await,
                Verb::Plan | Verb::Apply => {
                    let others: Vec<_> = resources
                        .iter()
                        .map(|(_, other)| &other.resource.spec)
                        .filter(|spec| validate_spec(spec).is_ok())
                        .filter_map(|spec| {
                            Some((
                                spec,
                                backends
                                    .place_of(&Placement::of(spec), default_region.as_deref())?,
                            ))
                        })
                        .collect();
                    let peers = quota_peers(
                        &resource.spec,
                        &backend.place(),
                        others.iter().map(|(spec, place)| (*spec, place)),
                    );
                    converge_one(backend.as_ref(), resource, verb, &now, bulk, &peers).await
                }
            };
            // Printed once final: a raise held for a lowering of this run is tried again below.
            let in_this_run = |id: &String| {
                resources.iter().any(|(_, other)| {
                    let spec = &other.resource.spec;
                    ResourceNames::new(&spec.endpoint_name, &spec.variant_name).resource_id == *id
                })
            };
            if verb == Verb::Apply && result.awaiting.iter().any(in_this_run) {
                held.push(i);
            } else if args.output == Output::Text {
                print!("{}", result.text);
            }
            results[i] = Some(result);
        }
        // Again only while a lowering it waits for was written since (one of this run's
        // resources that is not held itself): a lowering that failed holds it for good.
        let progressed = held.len() < todo.len();
        if held.is_empty() || !progressed {
            for &i in &held {
                if args.output == Output::Text {
                    print!("{}", results[i].as_ref().expect("converged").text);
                }
            }
            break;
        }
        todo = held;
    }
    let mut reports = Vec::new();
    for result in results.into_iter().flatten() {
        failed |= result.failed;
        pending |= result.pending;
        reports.push(result.json);
    }
    if args.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "resources": reports })).expect("json")
        );
    }
    let writes = calls.writes();
    let calls = calls.total();
    eprintln!(
        "AWS calls: {calls} ({} reads, {writes} writes)",
        calls - writes
    );
    for recalled in cache.iter().flat_map(|c| c.recalled()) {
        eprintln!(
            "endpoint descriptions of {}: {} from the cache of {}s ago, only those changed since read again",
            recalled.place,
            recalled.endpoints,
            recalled.age.as_secs()
        );
    }
    if failed {
        ExitCode::FAILURE
    } else if pending && verb == Verb::Plan {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// Waits for this machine's other writing runs against the same AWS endpoint (AWS's own, or one
/// URL however spelt; any region, as resources may name theirs); the turn ends when the file is
/// dropped. None when no lock file can be had (said on stderr).
async fn take_turn(args: &ManifestArgs) -> Option<std::fs::File> {
    let dir = args
        .cache_dir
        .clone()
        .or_else(DiskEndpointCache::default_dir)?;
    let key = crate::endpoint_cache::file_key(
        &args.aws.endpoint_url().map_or("aws".to_string(), |url| {
            url.trim_end_matches('/').to_ascii_lowercase()
        }),
    );
    let path = dir.join(format!("apply-{key}.lock"));
    let file = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
    });
    let file = match file {
        Ok(file) => file,
        Err(e) => {
            eprintln!(
                "warning: {}: {e}; not waiting for other runs of this machine",
                path.display()
            );
            return None;
        }
    };
    if file.try_lock().is_err() {
        eprintln!(
            "waiting for another asyncscale run writing to the same account to finish (lock {})",
            path.display()
        );
        return tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .ok()?
            .ok();
    }
    Some(file)
}

struct Outcome {
    text: String,
    json: serde_json::Value,
    failed: bool,
    pending: bool,
    /// The resources whose lowering a held raise of this one waits for.
    awaiting: Vec<String>,
}

async fn converge_one(
    backend: &dyn AutoscalingBackend,
    resource: &AsyncEndpointScaling,
    verb: Verb,
    now: &Time,
    bulk: bool,
    quota_peers: &[QuotaPeer],
) -> Outcome {
    let intent = Intent {
        spec: &resource.spec,
        owner: owner_of(resource),
        adoption: Adoption::new(wants_adoption(resource)),
        generation: resource.metadata.generation,
        fence: Fence::open(),
        observation_stale: false,
        ownership_check: if bulk {
            OwnershipCheck::BeforeWrites
        } else {
            OwnershipCheck::Always
        },
        quota_peers,
        peers_now: None,
        run_peers_lower_first: true,
    };
    let mode = if verb == Verb::Plan {
        ConvergeMode::Plan
    } else {
        ConvergeMode::Apply
    };
    let report = converge(backend, &intent, mode, resource.status.as_ref(), now).await;
    // A quota that could not be read leaves MaxCapacity unconverged: that is a failure too, a
    // standing one (no permission, no such quota) included, which the controller reports
    // without retrying.
    let quota_unread = resource.spec.quota.policy != QuotaPolicy::Ignore
        && report.status.conditions.iter().any(|c| {
            c.type_ == ConditionType::QuotaClamped.as_str()
                && c.reason == Reason::QuotaUnknown.as_str()
        });
    // A cap held below its share (a lowering awaited, an endpoint unreadable) is not converged.
    let held = report
        .desired
        .as_ref()
        .and_then(|d| d.share.as_ref())
        .is_some_and(|s| s.held);
    let failed = report.error.is_some()
        || quota_unread
        || (held && verb == Verb::Apply)
        || !matches!(
            report.outcome,
            SyncOutcome::InSync | SyncOutcome::ChangesPending(_)
        );
    let pending = matches!(report.outcome, SyncOutcome::ChangesPending(_));
    let mut text = header(resource);
    let changes = report.plan.summaries();
    if changes.is_empty() && !failed {
        text.push_str("  in sync: no changes\n");
    } else if verb == Verb::Plan {
        changes
            .iter()
            .for_each(|c| text.push_str(&format!("  {c}\n")));
    } else {
        text.push_str(&progress(&changes, report.applied, report.error.is_some()));
    }
    text.push_str(&status_text(&report.status));
    let share = report.desired.as_ref().and_then(|d| d.share.as_ref());
    let awaiting = share.map(|s| s.awaiting.clone()).unwrap_or_default();
    // Unlike the controller, a one-shot run does not come back when instances are freed.
    if share.is_some_and(|s| s.held || s.cap == 0) {
        text.push_str("  note: this cap moves only at the next apply (the controller re-checks it by itself)\n");
    }
    let json = json!({
        "name": display_name(resource),
        "changes": changes,
        "applied": report.applied,
        "status": report.status,
        "awaitingLowerings": awaiting,
        "raiseHeld": share.is_some_and(|s| s.held),
    });
    Outcome {
        text,
        json,
        failed,
        pending,
        awaiting,
    }
}

async fn delete_one(backend: &dyn AutoscalingBackend, resource: &AsyncEndpointScaling) -> Outcome {
    let mut text = header(resource);
    let retained = resource.spec.deletion_policy == DeletionPolicy::Retain;
    if retained {
        text.push_str("  deletionPolicy is Retain: the configuration stays in AWS; asyncscale only removes its ownership tags, so that another resource may adopt it\n");
    }
    let report = remove(
        backend,
        &resource.spec,
        &owner_of(resource),
        true,
        &Fence::open(),
    )
    .await;
    let changes = report.plan.summaries();
    text.push_str(&progress(&changes, report.applied, report.error.is_some()));
    if report.plan.is_empty() && report.error.is_none() {
        text.push_str("  nothing of asyncscale's remains in AWS\n");
    }
    if let Some(e) = &report.error {
        text.push_str(&format!("  error: {e}\n"));
    }
    let json = json!({
        "name": display_name(resource),
        "retained": retained,
        "changes": changes,
        "applied": report.applied,
        "error": report.error.as_ref().map(ToString::to_string),
    });
    Outcome {
        text,
        json,
        failed: report.error.is_some(),
        pending: false,
        awaiting: Vec::new(),
    }
}

/// A resource whose account could not be reached (its role refused, no region): reported like
/// the others, with nothing read or written.
fn unreachable_one(
    resource: &AsyncEndpointScaling,
    verb: Verb,
    error: &AwsError,
    now: &Time,
) -> Outcome {
    let mut text = header(resource);
    text.push_str(&format!("  error: {}\n", error.message));
    let json = if verb == Verb::Delete {
        json!({
            "name": display_name(resource),
            "retained": resource.spec.deletion_policy == DeletionPolicy::Retain,
            "changes": [],
            "applied": 0,
            "error": error.message,
        })
    } else {
        let status = status_without_aws(
            &resource.spec,
            resource.metadata.generation,
            unreachable_outcome(error),
            true,
            resource.status.as_ref(),
            now,
        );
        text.push_str(&status_text(&status));
        json!({
            "name": display_name(resource),
            "changes": [],
            "applied": 0,
            "status": status,
        })
    };
    Outcome {
        text,
        json,
        failed: true,
        pending: false,
        awaiting: Vec::new(),
    }
}

fn header(resource: &AsyncEndpointScaling) -> String {
    let spec = &resource.spec;
    format!(
        "{} → endpoint {} variant {}\n",
        display_name(resource),
        spec.endpoint_name,
        spec.variant_name
    )
}

/// Each change with what became of it: done, FAILED (the first one not done, when an error
/// stopped the run) or skipped.
fn progress(changes: &[String], applied: usize, stopped_by_error: bool) -> String {
    let mut text = String::new();
    for (i, change) in changes.iter().enumerate() {
        let mark = match i.cmp(&applied) {
            std::cmp::Ordering::Less => "done",
            std::cmp::Ordering::Equal if stopped_by_error => "FAILED",
            _ => "skipped",
        };
        text.push_str(&format!("  {change}  [{mark}]\n"));
    }
    text
}

fn status_text(status: &AsyncEndpointScalingStatus) -> String {
    let mut text = String::from("  status:\n");
    for c in &status.conditions {
        text.push_str(&format!(
            "    {:<15} {:<8} {:<22} {}\n",
            c.type_, c.status, c.reason, c.message
        ));
    }
    if let Some(e) = &status.endpoint {
        let count = |n: Option<i32>| n.map_or("?".to_string(), |n| n.to_string());
        text.push_str(&format!(
            "    endpoint: {}, {}, instances {} in service, {} desired\n",
            e.status,
            e.instance_type
                .as_deref()
                .unwrap_or("instance type unknown"),
            count(e.current_instances),
            count(e.desired_instances),
        ));
    }
    if let Some(max) = status.effective_max_capacity {
        text.push_str(&format!("    effective max capacity: {max}\n"));
    }
    if let Some(q) = &status.quota {
        match (q.value, &q.unknown_reason) {
            (Some(v), _) => text.push_str(&format!(
                "    quota: {} ({}) = {v} ({}){}\n",
                q.name,
                q.code.as_deref().unwrap_or("?"),
                q.source.as_deref().unwrap_or("?"),
                match (q.in_use, q.sharing_endpoints) {
                    (Some(used), Some(n)) => format!(", {used} in use, shared by {n} endpoint(s)"),
                    _ => String::new(),
                }
            )),
            (None, Some(why)) => text.push_str(&format!("    quota: {} unknown: {why}\n", q.name)),
            _ => {}
        }
    }
    if let Some(alarm) = &status.scale_from_zero_alarm {
        text.push_str(&format!(
            "    scale-from-zero alarm: {} ({})\n",
            alarm.name,
            alarm.state.as_deref().unwrap_or("?")
        ));
    }
    for schedule in &status.schedules {
        text.push_str(&format!(
            "    schedule {} (scheduled action {}): next run {}{}{}{}\n",
            schedule.name,
            schedule.action_name,
            schedule
                .next_run
                .as_deref()
                .unwrap_or("none (it will not run again)"),
            schedule
                .last_run
                .as_deref()
                .map_or(String::new(), |at| format!(", last ran {at}")),
            schedule
                .effective_max_capacity
                .map_or(String::new(), |max| format!(
                    ", maxCapacity lowered to {max} (the quota, the endpoint's share, or while the quota is unknown the MaxCapacity held)"
                )),
            schedule
                .effective_min_capacity
                .map_or(String::new(), |min| format!(
                    ", minCapacity lowered to {min} (the quota, the endpoint's share, or while the quota is unknown the MaxCapacity held)"
                )),
        ));
    }
    if !status.foreign_scheduled_actions.is_empty() {
        text.push_str(&format!(
            "    other tools' scheduled actions on the target (left alone; the capacities they set are repaired): {}\n",
            status.foreign_scheduled_actions.join(", ")
        ));
    }
    if !status.foreign_policies.is_empty() {
        text.push_str(&format!(
            "    other tools' policies on the target (left alone): {}\n",
            status.foreign_policies.join(", ")
        ));
    }
    if let Some(a) = &status.last_scaling_activity {
        text.push_str(&format!(
            "    last scaling activity: {} {} {}\n",
            a.status_code,
            a.description,
            a.message.as_deref().unwrap_or("")
        ));
    }
    text
}
