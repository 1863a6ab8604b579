//! `asyncscale simulate`: applies the configuration asyncscale would apply for a manifest to an
//! in-process simulated account, over the same AWS wire protocols as real AWS, then replays a
//! load profile through the scaling model and reports what the endpoint would do.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use asyncscale_api::{AsyncEndpointScaling, QuotaPolicy};
use asyncscale_aws::SdkBackend;
use asyncscale_core::share::{self, Bounds, Holder};
use asyncscale_core::status::SyncOutcome;
use asyncscale_core::{Adoption, ResourceNames};
use asyncscale_engine::{ConvergeMode, Fence, Intent, OwnershipCheck, converge};
use asyncscale_sim::model::assumptions::Assumptions;
use asyncscale_sim::model::load::LoadProfile;
use asyncscale_sim::model::report::{Summary, summarize};
use asyncscale_sim::model::{EndpointSpec, World};
use asyncscale_sim::{Account, SimServer, TargetTrackingAlarms};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::identity::{display_name, owner_of, wants_adoption};

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The manifest files, one problem a line.
    #[error("{0}")]
    Manifests(String),
    /// A flag or file the simulator cannot use.
    #[error(transparent)]
    Input(#[from] asyncscale_sim::SimError),
    /// Flags that contradict each other.
    #[error("{0}")]
    Usage(String),
    #[error("cannot start the in-process AWS endpoint: {0}")]
    Start(#[source] std::io::Error),
    #[error("cannot reach the in-process AWS endpoint: {0}")]
    Backend(#[source] asyncscale_engine::AwsError),
    #[error(
        "{resource}: could not set up the simulated account: {}",
        setup_failure(outcome)
    )]
    Setup {
        resource: String,
        outcome: SyncOutcome,
    },
    #[error("--chart {path}: {source}")]
    Chart {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What stopped the setup, in the words `apply` uses.
fn setup_failure(outcome: &SyncOutcome) -> String {
    match outcome {
        SyncOutcome::InSync => "in sync".into(),
        SyncOutcome::ChangesPending(n) => format!("{n} changes pending"),
        SyncOutcome::ApplyFailed(m)
        | SyncOutcome::InvalidSpec(m)
        | SyncOutcome::Conflict(m)
        | SyncOutcome::QuotaTooLow(m)
        | SyncOutcome::WaitingForQuota(m)
        | SyncOutcome::ObserveFailed(m)
        | SyncOutcome::RoleNotAssumed(m) => m.clone(),
        SyncOutcome::EndpointUnusable(problem) => problem.to_string(),
    }
}

/// Setups made by hand that fall into the two traps (see the README), to compare with asyncscale's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Without {
    /// No step policy and alarm on HasBacklogWithoutCapacity (trap 1).
    ScaleFromZero,
    /// maxCapacity as written, above the quota if so (trap 2).
    QuotaClamp,
    /// No scheduled actions (spec.schedules left out): to compare a pre-warm with none.
    Schedules,
}

#[derive(Debug, Clone)]
pub struct SimulationOptions {
    pub resources: Vec<AsyncEndpointScaling>,
    pub load: LoadProfile,
    pub duration_s: f64,
    /// `TYPE=N`: the account's applied instance quotas.
    pub quotas: Vec<String>,
    /// `TYPE=N`: instances other endpoints of the account already use.
    pub other_usage: Vec<String>,
    pub without: Vec<Without>,
    pub throughput_per_minute: f64,
    /// Instances at the start; each resource's minCapacity when None.
    pub initial_instances: Option<u32>,
    pub assumptions: Assumptions,
    /// Seconds between two visits of the controller (the split of each quota shared under
    /// quota.policy Share is redone at each).
    pub resync_s: f64,
    /// Keep every endpoint's per-minute timeline (for the text output and the chart; 1,000
    /// endpoints over 24 h hold about 1.4 GB of it).
    pub record_timeline: bool,
    /// When the simulated clock starts: scheduled actions run on it.
    pub start: k8s_openapi::jiff::Timestamp,
}

pub struct SimulationResult {
    pub world: World,
    pub summaries: Vec<Summary>,
    /// What asyncscale changed in the simulated account, per resource.
    pub applied: Vec<Vec<String>>,
}

/// A local AWS endpoint in this process, and an SDK backend that talks to it over loopback.
pub async fn in_process_aws(
    quotas: &[String],
    calls: asyncscale_engine::CallCounter,
) -> Result<(SimServer, SdkBackend), SimulateError> {
    let table = asyncscale_sim::quota_table(quotas, &[])?;
    let server = asyncscale_sim::start(SocketAddr::from(([127, 0, 0, 1], 0)), table)
        .await
        .map_err(SimulateError::Start)?;
    let backend = SdkBackend::for_local_endpoint(&server.url(), calls)
        .await
        .map_err(SimulateError::Backend)?
        // An account of this process alone, with virtual time: no AWS rate to respect.
        .with_budget(asyncscale_aws::RequestBudget::unlimited());
    Ok((server, backend))
}

/// Instances held above a quota, at a visit of the split.
#[derive(Debug, Clone, Copy)]
struct OverQuota {
    at_s: f64,
    in_use: u32,
    quota: u32,
    /// Held by endpoints that do not share the quota (`--other-usage`).
    elsewhere: u32,
}

impl OverQuota {
    fn warning(&self, instance_type: &str) -> String {
        let OverQuota {
            at_s,
            in_use,
            quota,
            elsewhere,
        } = *self;
        let minute = at_s / 60.0;
        if elsewhere >= quota {
            format!(
                "at {minute:.0} min other endpoints held {elsewhere} instances of {instance_type}, all of its quota of {quota}: these endpoints could not grow past what they held, and AWS would have refused any scale-out"
            )
        } else {
            format!(
                "at {minute:.0} min the endpoints held {in_use} instances of {instance_type}, above its quota of {quota} (their starting instances or minCapacity), which AWS would not have granted; sharing never takes instances away: lower minCapacity or --initial-instances, or raise the quota"
            )
        }
    }
}

/// What one visit of the quota split did.
struct SharedQuotas {
    /// (resource id, the new MaxCapacity, why).
    written: Vec<(String, u32, String)>,
    /// Where more is held than the quota allows.
    over_quota: Vec<(String, OverQuota)>,
}

/// Splits each instance quota between the simulated endpoints (and `--other-usage`) and writes
/// each MaxCapacity that must change, as the controller does at a visit.
fn share_quotas(
    world: &World,
    account: &mut Account,
    bounds: &BTreeMap<String, Bounds>,
) -> Result<SharedQuotas, SimulateError> {
    let mut by_type: BTreeMap<&str, Vec<Holder>> = BTreeMap::new();
    for e in &world.endpoints {
        by_type
            .entry(e.spec.instance_type.as_str())
            .or_default()
            .push(Holder {
                resource_id: e.resource_id.clone(),
                instances: e.desired,
                shared: bounds.get(&e.resource_id).copied(),
                has_backlog: e.backlog > 0.0,
                prospective: false,
            });
    }
    for (instance_type, instances) in &world.other_usage {
        by_type
            .entry(instance_type.as_str())
            .or_default()
            .push(Holder {
                resource_id: format!("other endpoints using {instance_type}"),
                instances: *instances,
                shared: None,
                has_backlog: false,
                prospective: false,
            });
    }
    let held = world.max_capacities();
    let mut written = Vec::new();
    let mut over_quota = Vec::new();
    for (instance_type, holders) in by_type {
        // No quota known: nothing to share, as the controller keeps what AWS holds.
        let Some(quota) = account.instance_quota(instance_type) else {
            continue;
        };
        let split = share::split(quota.max(0.0) as u32, &holders);
        if split.in_use > split.quota || (split.elsewhere >= split.quota && split.quota > 0) {
            over_quota.push((
                instance_type.to_string(),
                OverQuota {
                    at_s: world.now,
                    in_use: split.in_use,
                    quota: split.quota,
                    elsewhere: split.elsewhere,
                },
            ));
        }
        for (resource_id, cap) in &split.caps {
            if held.get(resource_id.as_str()) == Some(cap) {
                continue;
            }
            let input = serde_json::json!({
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource_id,
                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                "MaxCapacity": cap,
            });
            account
                .handle(
                    "application-autoscaling",
                    "RegisterScalableTarget",
                    &input,
                    &world.region,
                )
                .map_err(|e| SimulateError::Usage(format!("{resource_id}: {}", e.message)))?;
            let why = split.explain(resource_id).unwrap_or_default();
            written.push((resource_id.clone(), *cap, why));
        }
    }
    Ok(SharedQuotas {
        written,
        over_quota,
    })
}

pub async fn simulate(options: SimulationOptions) -> Result<SimulationResult, SimulateError> {
    let (server, backend) =
        in_process_aws(&options.quotas, asyncscale_engine::CallCounter::default()).await?;
    let a = &options.assumptions;
    server
        .account
        .lock()
        .expect("account lock")
        .target_tracking_alarms = TargetTrackingAlarms {
        high_periods: a.alarm_high_periods,
        low_periods: a.alarm_low_periods,
        low_ratio: a.alarm_low_ratio,
    };
    let endpoints: Vec<EndpointSpec> = options
        .resources
        .iter()
        .map(|resource| EndpointSpec {
            endpoint: resource.spec.endpoint_name.clone(),
            variant: resource.spec.variant_name.clone(),
            instance_type: resource.spec.instance_type.clone(),
            throughput_per_minute: options.throughput_per_minute,
            initial_instances: options
                .initial_instances
                .unwrap_or(resource.spec.min_capacity.max(0) as u32),
            load: Some(options.load.clone()),
            asynchronous: true,
        })
        .collect();
    let mut other_usage = BTreeMap::new();
    for flag in &options.other_usage {
        let (quota, n) = asyncscale_sim::quotas::parse_quota_flag(flag)?;
        let instance_type = quota.trim_end_matches(" for endpoint usage");
        other_usage.insert(instance_type.to_string(), n as u32);
    }
    {
        // SageMaker, as the setup reads it: the simulated endpoints, and the other endpoints'
        // instances as one endpoint per type that asyncscale does not manage.
        let mut world = server.world.lock().expect("world lock");
        for e in &endpoints {
            world.add_endpoint(e.clone());
        }
        for (instance_type, n) in &other_usage {
            world.add_endpoint(EndpointSpec {
                endpoint: format!("other-{}", instance_type.replace('.', "-")),
                variant: "AllTraffic".into(),
                instance_type: instance_type.clone(),
                throughput_per_minute: options.throughput_per_minute,
                initial_instances: *n,
                load: None,
                asynchronous: true,
            });
        }
    }
    let now = Time(options.start);
    let epoch = options.start.as_millisecond() as f64 / 1000.0;
    // The scheduled actions asyncscale creates are stamped with the simulated clock.
    server.account.lock().expect("account lock").virtual_now = Some(epoch);
    let mut applied = Vec::new();
    let specs: Vec<_> = options
        .resources
        .iter()
        .map(|resource| {
            let mut spec = resource.spec.clone();
            if options.without.contains(&Without::ScaleFromZero) {
                spec.scale_from_zero.enabled = false;
            }
            if options.without.contains(&Without::QuotaClamp) {
                spec.quota.policy = QuotaPolicy::Ignore;
            }
            if options.without.contains(&Without::Schedules) {
                spec.schedules.clear();
            }
            spec
        })
        .collect();
    // Every resource lands in the one simulated account (roles are not assumed here).
    let place = asyncscale_engine::AutoscalingBackend::place(&backend);
    // Read in bulk, as `apply` does from 10 resources: one picture of the account for the whole
    // setup (each resource's own writes are read back directly).
    let backend = asyncscale_engine::FleetView::new(
        std::sync::Arc::new(backend),
        asyncscale_engine::FleetConfig {
            refresh_every: std::time::Duration::from_secs(24 * 3600),
            policy_refresh_every: 1,
            read_backlog_alarms: false,
        },
    );
    for (resource, spec) in options.resources.iter().zip(&specs) {
        let peers = asyncscale_engine::quota_peers(spec, &place, specs.iter().map(|s| (s, &place)));
        let intent = Intent {
            spec,
            owner: owner_of(resource),
            adoption: Adoption::new(wants_adoption(resource)),
            generation: None,
            fence: Fence::open(),
            observation_stale: false,
            ownership_check: OwnershipCheck::Always,
            quota_peers: &peers,
            peers_now: None,
            run_peers_lower_first: false,
        };
        let report = converge(&backend, &intent, ConvergeMode::Apply, None, &now).await;
        if report.outcome != SyncOutcome::InSync {
            return Err(SimulateError::Setup {
                resource: display_name(resource),
                outcome: report.outcome,
            });
        }
        applied.push(report.plan.summaries());
    }

    let mut world = World::new(options.assumptions.clone(), epoch);
    world.record_timeline = options.record_timeline;
    world.other_usage = other_usage;
    for e in endpoints {
        world.add_endpoint(e);
    }
    let mut account = server.account.lock().expect("account lock");
    // Instance types whose quota was already used up at a visit, the first time.
    let mut over_quota: BTreeMap<String, OverQuota> = BTreeMap::new();
    // The summaries come from the model's own records; of the account's history, a page per
    // endpoint is plenty.
    account.activity_retention = Some(50 * options.resources.len().max(1));
    // The endpoints whose quota is shared (quota.policy Share, the default).
    let bounds: BTreeMap<String, Bounds> = specs
        .iter()
        .filter(|spec| spec.quota.policy == QuotaPolicy::Share)
        .map(|spec| {
            let names = ResourceNames::new(&spec.endpoint_name, &spec.variant_name);
            let bounds = Bounds {
                min_capacity: spec.min_capacity.max(0) as u32,
                max_capacity: spec.max_capacity.max(0) as u32,
            };
            (names.resource_id, bounds)
        })
        .collect();
    if !bounds.is_empty() {
        // The controller's visits between the model's steps: the split is redone on what the
        // endpoints hold now, and only a MaxCapacity that must change is written.
        while world.now + 1e-9 < options.duration_s {
            let shared = share_quotas(&world, &mut account, &bounds)?;
            for (instance_type, over) in shared.over_quota {
                over_quota.entry(instance_type).or_insert(over);
            }
            for (resource_id, cap, why) in shared.written {
                let index = world
                    .endpoints
                    .iter()
                    .position(|e| e.resource_id == resource_id)
                    .expect("a shared endpoint is simulated");
                applied[index].push(format!(
                    "at {:.0} min: MaxCapacity {cap} ({why})",
                    world.now / 60.0
                ));
            }
            world.advance(
                &mut account,
                options.resync_s.min(options.duration_s - world.now),
            );
        }
    } else {
        world.advance(&mut account, options.duration_s);
    }
    let summaries = world
        .endpoints
        .iter()
        .map(|e| {
            let mut summary = summarize(&world, e, account.instance_quota(&e.spec.instance_type));
            if let Some(over) = over_quota.get(&e.spec.instance_type) {
                summary.warnings.push(over.warning(&e.spec.instance_type));
            }
            summary
        })
        .collect();
    drop(account);
    Ok(SimulationResult {
        world,
        summaries,
        applied,
    })
}
