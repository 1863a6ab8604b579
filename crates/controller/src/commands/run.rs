//! `asyncscale run`: the in-cluster controller. Watches AsyncEndpointScaling resources, reconciles
//! them (optionally only while holding a leader Lease) and serves /metrics, /healthz and /readyz.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use tokio::sync::watch;

use asyncscale_api::AsyncEndpointScaling;
use asyncscale_core::ResourceNames;
use asyncscale_engine::{CallCounter, Fence, FleetChange, FleetConfig, FleetSource};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::broadcast;

use super::args::{AwsArgs, parse_duration, parse_resync};
use crate::admin::{Health, admin_router};
use crate::events::{EventPublisher, Reporter};
use crate::identity::hostname;
use crate::leader::{Leadership, LeaseConfig, follow_leadership, run_elector};
use crate::metrics::Metrics;
use crate::reconciler::{Context, FIELD_MANAGER, WatchedStore, error_policy, reconcile};
use crate::shutdown::shutdown_signal;

/// Why the controller could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the Kubernetes API: {0}")]
    NoApiServer(#[source] kube::Error),
    #[error(
        "cannot list AsyncEndpointScaling resources: {0}. Is the CRD installed (kubectl apply -f crds/) and may the ServiceAccount list them?"
    )]
    CannotList(#[source] kube::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, #[source] std::io::Error),
    #[error("{0}")]
    Aws(#[source] crate::simulate::SimulateError),
    #[error("{0}")]
    Leadership(#[source] crate::leader::ElectionStopped),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Namespace to watch (repeatable). Without it, every namespace.
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    namespaces: Vec<String>,
    #[command(flatten)]
    aws: AwsArgs,
    /// How often each resource is re-read from AWS to repair drift (e.g. 60s, 5m). A resync
    /// moves by up to a tenth of it, so that resources created together spread over the period.
    #[arg(long, default_value = "60s", value_parser = parse_resync)]
    resync: Duration,
    /// Reconcile only while holding the leader Lease, so that several replicas can run.
    #[arg(long)]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "asyncscale-leader")]
    lease_name: String,
    /// Namespace of the leader Lease; defaults to the pod's namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// How long a Lease holds without renewal; a standby takes over within this time. The holder
    /// stops writing to AWS when it could not renew for two thirds of it (a lost API connection
    /// included), before any standby may take over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// The longest one reconcile may take, AWS calls included; past it the reconcile stops and
    /// retries with backoff.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    reconcile_timeout: Duration,
    /// Resyncs for which a failed refresh of AWS keeps the last observed conditions (Synced's
    /// message says the refresh failed) before Ready becomes Unknown, so that a passing hiccup
    /// of AWS does not flip every resource of the account.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    stale_after_resyncs: u32,
    /// Scaling policies are read in bulk every this many resyncs (targets, alarms and activities
    /// every resync). AWS returns at most 10 policies a page, so reading them every resync
    /// would cost 0.2 calls per endpoint alone; policy drift is repaired within this many
    /// resyncs (a deleted step policy shows in its alarm at once).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    policy_refresh_resyncs: u32,
    /// Reconciles running at once. The request budget (--aws-rate) keeps them within AWS's
    /// rates; enough of them must be in flight to keep the slowest API busy (CloudWatch's
    /// PutMetricAlarm, 3 a second, while a fleet is created).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Identity in Events and the Lease; defaults to the pod name (POD_NAME) or the hostname.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
}

pub async fn run(args: RunArgs) -> ExitCode {
    match run_controller(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "asyncscale stopped");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_controller(args: RunArgs) -> Result<(), RunError> {
    let client = kube::Client::try_default()
        .await
        .map_err(RunError::NoApiServer)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        resync = ?args.resync,
        namespaces = ?args.namespaces,
        "starting the controller"
    );
    let calls = CallCounter::default();
    let metrics = Arc::new(Metrics::new(calls.clone()));
    let health = Arc::new(Health::default());
    let identity = args.pod_name.clone().unwrap_or_else(hostname);
    let events = EventPublisher::new(
        client.clone(),
        Reporter {
            controller: "asyncscale".into(),
            instance: identity.clone(),
        },
    );
    let lease = LeaseConfig {
        name: args.lease_name.clone(),
        namespace: args.lease_namespace.clone(),
        identity: identity.clone(),
        duration: args.lease_duration.max(Duration::from_secs(2)),
    };
    let leadership = Arc::new(Leadership::new(lease.renew_deadline()));
    // With leader election, no write leaves this process unless this replica leads: checked
    // before each change of a plan (the engine) and again as each attempt is sent (the SDK).
    let fence = if args.leader_elect {
        let leadership = leadership.clone();
        Fence::new(move || leadership.check())
    } else {
        Fence::open()
    };
    let (backends, _simulated) = args
        .aws
        .connect(calls, false, fence.clone())
        .await
        .map_err(RunError::Aws)?;
    // One bulk-read picture of AWS per account and region, refreshed once per resync.
    let fleet = Arc::new(FleetSource::new(
        backends,
        FleetConfig {
            refresh_every: args.resync,
            policy_refresh_every: args.policy_refresh_resyncs,
            read_backlog_alarms: true,
        },
    ));
    metrics.watch_fleet(fleet.clone());
    let mut context = Context::new(
        client.clone(),
        fleet.clone(),
        events,
        metrics.clone(),
        args.resync,
    )
    .with_reconcile_timeout(args.reconcile_timeout)
    .with_stale_after_resyncs(args.stale_after_resyncs);
    if args.leader_elect {
        context = context.with_fence(fence);
    }
    let ctx = Arc::new(context);

    // Fail fast, with the fix, when the CRD is missing or RBAC forbids listing.
    let probe: Api<AsyncEndpointScaling> = match args.namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    probe
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|e| match e {
            // The API server answered: the CRD or RBAC is the matter.
            kube::Error::Api(_) => RunError::CannotList(e),
            // It did not (refused, unresolvable, TLS): the CRD hint would mislead.
            _ => RunError::NoApiServer(e),
        })?;
    health.api_reachable.store(true, Ordering::SeqCst);

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| RunError::Listen(args.metrics_addr, e))?;
    let admin = admin_router(metrics.clone(), health.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, admin).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });

    tokio::spawn(crate::memory::trim_periodically(crate::memory::TRIM_EVERY));

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });

    if !args.leader_elect {
        metrics.leader.set(1);
        health.leading.store(true, Ordering::SeqCst);
        run_controllers(
            client,
            args.namespaces.clone(),
            args.concurrency,
            fleet,
            ctx,
            health,
            stop_rx,
        )
        .await;
        return Ok(());
    }

    let (leading_tx, leading_rx) = watch::channel(false);
    // The Lease is released only after the controllers have stopped, so no write follows it.
    let (release_tx, release_rx) = watch::channel(false);
    let elector = tokio::spawn(run_elector(
        Api::namespaced(client.clone(), &lease.namespace),
        lease,
        leadership,
        leading_tx,
        release_rx,
    ));
    let namespaces = args.namespaces.clone();
    let followed = follow_leadership(leading_rx, stop_rx.clone(), &metrics, &health, || {
        ctx.begin_term();
        fleet.forget_policies();
        tokio::spawn(run_controllers(
            client.clone(),
            namespaces.clone(),
            args.concurrency,
            fleet.clone(),
            ctx.clone(),
            health.clone(),
            stop_rx.clone(),
        ))
    })
    .await;
    let _ = release_tx.send(true);
    let _ = elector.await;
    followed.map_err(RunError::Leadership)
}

/// One kube-runtime Controller per watched namespace (or one for all), until `stop` says so.
async fn run_controllers(
    client: kube::Client,
    namespaces: Vec<String>,
    concurrency: u16,
    fleet: Arc<FleetSource>,
    ctx: Arc<Context>,
    health: Arc<Health>,
    stop: watch::Receiver<bool>,
) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    };
    health.watches.store(scopes.len(), Ordering::SeqCst);
    health.watches_synced.store(0, Ordering::SeqCst);
    let mut stores = Vec::new();
    let runs: Vec<_> = scopes.into_iter().map(|scope| {
        let api: Api<AsyncEndpointScaling> = match &scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let (store, writer) = reflector::store();
        let objects = watcher(api, watcher::Config::default().any_semantic())
            .modify(forget_unread_metadata)
            .reflect(writer)
            .applied_objects();
        let controller = Controller::for_stream(objects, store.clone())
            .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
        // Drift a refresh of the fleet view finds is repaired now, not at the next resync.
        let controller = controller
            .reconcile_on(changed_resources(fleet.changes(), store.clone(), ctx.clone()))
            // A raise held for others' lowerings has them made now (see Context::awaited).
            .reconcile_on(awaited_resources(ctx.awaited(), store.clone()));
        let synced = Arc::new(AtomicBool::new(false));
        stores.push(WatchedStore {
            store: store.clone(),
            synced: synced.clone(),
            all_namespaces: scope.is_none(),
        });
        let health = health.clone();
        tokio::spawn(async move {
            // kube-runtime's readiness signal wakes only its most recent waiter, and the
            // controller itself waits on it too; asking again each second sees the flag anyway.
            loop {
                match tokio::time::timeout(Duration::from_secs(1), store.wait_until_ready()).await {
                    Ok(Ok(())) => {
                        synced.store(true, Ordering::SeqCst);
                        health.watches_synced.fetch_add(1, Ordering::SeqCst);
                        tracing::info!("watch cache synced");
                        return;
                    }
                    Ok(Err(e)) => return tracing::warn!(error = %e, "the watch stopped before its cache synced"),
                    Err(_) => continue,
                }
            }
        });
        let mut stop = stop.clone();
        controller
            .graceful_shutdown_on(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            })
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "reconcile error");
                }
            })
    }).collect();
    ctx.watch_stores(stores);
    futures::future::join_all(runs).await;
}

/// Drops from the watch cache what no reconcile reads: other managers' managedFields entries and
/// kubectl's last-applied-configuration copy of the spec: about 1 KB of the 2 KB JSON of a resource
/// applied with kubectl, and more in memory, where managedFields are a tree of JSON values. The
/// cache holds every resource for the life of the process.
fn forget_unread_metadata(obj: &mut AsyncEndpointScaling) {
    if let Some(entries) = obj.metadata.managed_fields.as_mut() {
        entries.retain(|entry| entry.manager.as_deref() == Some(FIELD_MANAGER));
    }
    if let Some(annotations) = obj.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The resources managing each endpoint variant whose AWS state a refresh found changed.
fn changed_resources(
    changes: broadcast::Receiver<FleetChange>,
    store: Store<AsyncEndpointScaling>,
    ctx: Arc<Context>,
) -> impl futures::Stream<Item = ObjectRef<AsyncEndpointScaling>> + Send + 'static {
    received(changes).flat_map(move |change| {
        let refs: Vec<_> = store
            .state()
            .iter()
            .filter(|obj| {
                ResourceNames::new(&obj.spec.endpoint_name, &obj.spec.variant_name).resource_id
                    == change.resource_id
                    && obj
                        .spec
                        .region
                        .as_deref()
                        .is_none_or(|region| region == change.place.region)
                    && obj.spec.role_arn.as_deref().is_none_or(|role| {
                        asyncscale_api::role_account(role) == change.place.account.as_deref()
                    })
            })
            .map(|obj| {
                if let Some(uid) = &obj.metadata.uid {
                    ctx.aws_changed(uid);
                }
                ObjectRef::from_obj(obj.as_ref())
            })
            .collect();
        futures::stream::iter(refs)
    })
}

/// The resources another resource's held raise waits for, already let through by
/// `Context::nudge`; those of this controller's watch only.
fn awaited_resources(
    awaited: broadcast::Receiver<ObjectRef<AsyncEndpointScaling>>,
    store: Store<AsyncEndpointScaling>,
) -> impl futures::Stream<Item = ObjectRef<AsyncEndpointScaling>> + Send + 'static {
    received(awaited).filter(move |object| futures::future::ready(store.get(object).is_some()))
}

/// What a broadcast channel carries, as a stream; what a slow reader missed is left to the
/// resync.
fn received<T: Clone + Send + 'static>(
    receiver: broadcast::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(item) => return Some((item, receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
