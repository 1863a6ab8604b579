//! `asyncscale run`: the in-cluster controller. Watches AsyncEndpointScaling resources, reconciles
//! them (optionally only while holding a leader Lease) and serves /metrics, /healthz and /readyz.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Args;
use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use tokio::sync::watch;

use asyncscale_api::AsyncEndpointScaling;
use asyncscale_engine::{CallCounter, Fence};

use crate::cli::{AwsArgs, shutdown_signal};
use crate::leader::{Leadership, LeaseConfig, run_elector};
use crate::metrics::Metrics;
use crate::reconciler::{Context, WatchedStore, error_policy, reconcile};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Namespace to watch (repeatable). Without it, every namespace.
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    namespaces: Vec<String>,
    #[command(flatten)]
    aws: AwsArgs,
    /// How often each resource is re-read from AWS to repair drift (e.g. 60s, 5m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
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
    /// Reconciles running at once. Bounds bursts of AWS calls (about six per reconcile) against
    /// CloudWatch's DescribeAlarms (9 a second) and Application Auto Scaling's limits.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Identity in Events and the Lease; defaults to the pod name (POD_NAME) or the hostname.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
}

/// `90s`, `5m`, `2h` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 60s, 5m or 1h"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use ms, s, m or h"
            ));
        }
    };
    if seconds <= 0.0 {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// What /healthz and /readyz report.
#[derive(Default)]
pub struct Health {
    /// The API server answered and the CRD is installed.
    api_reachable: AtomicBool,
    /// This replica runs the controllers (no leader election, or it holds the Lease).
    leading: AtomicBool,
    watches: AtomicUsize,
    watches_synced: AtomicUsize,
}

impl Health {
    /// Ready once the API server answered; a leader only once its watch caches have synced.
    pub fn ready(&self) -> bool {
        let synced =
            self.watches_synced.load(Ordering::SeqCst) >= self.watches.load(Ordering::SeqCst);
        self.api_reachable.load(Ordering::SeqCst)
            && (!self.leading.load(Ordering::SeqCst) || synced)
    }
}

struct Admin {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

pub fn admin_router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Arc<Admin>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    s.metrics.encode(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<Arc<Admin>>| async move {
                if s.health.ready() {
                    (StatusCode::OK, "ready").into_response()
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "waiting for the watch cache",
                    )
                        .into_response()
                }
            }),
        )
        .with_state(Arc::new(Admin { metrics, health }))
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

async fn run_controller(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    let calls = CallCounter::default();
    let metrics = Arc::new(Metrics::new(calls.clone()));
    let health = Arc::new(Health::default());
    let identity = args.pod_name.clone().unwrap_or_else(hostname);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "asyncscale".into(),
            instance: Some(identity.clone()),
        },
    );
    let (backends, _simulated) = args.aws.connect(calls).await?;
    let lease = LeaseConfig {
        name: args.lease_name.clone(),
        namespace: args.lease_namespace.clone(),
        identity: identity.clone(),
        duration: args.lease_duration.max(Duration::from_secs(2)),
    };
    let leadership = Arc::new(Leadership::new(lease.renew_deadline()));
    let mut context = Context::new(
        client.clone(),
        backends,
        recorder,
        metrics.clone(),
        args.resync,
    )
    .with_reconcile_timeout(args.reconcile_timeout);
    if args.leader_elect {
        let leadership = leadership.clone();
        context = context.with_fence(Fence::new(move || leadership.check()));
    }
    let ctx = Arc::new(context);

    // Fail fast, with the fix, when the CRD is missing or RBAC forbids listing.
    let probe: Api<AsyncEndpointScaling> = match args.namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    probe.list(&ListParams::default().limit(1)).await.map_err(|e| {
        format!("cannot list AsyncEndpointScaling resources: {e}. Is the CRD installed (kubectl apply -f crds/) and may the ServiceAccount list them?")
    })?;
    health.api_reachable.store(true, Ordering::SeqCst);

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.metrics_addr))?;
    let admin = admin_router(metrics.clone(), health.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, admin).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });

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
        tokio::spawn(run_controllers(
            client.clone(),
            namespaces.clone(),
            args.concurrency,
            ctx.clone(),
            health.clone(),
            stop_rx.clone(),
        ))
    })
    .await;
    let _ = release_tx.send(true);
    let _ = elector.await;
    followed?;
    Ok(())
}

/// Runs `lead` while `leader` says this replica holds the Lease. Losing the Lease aborts the task
/// at once, in-flight AWS calls included, so a former leader never writes after a standby took
/// over; regaining it starts a fresh one. Returns when `stop` turns true.
pub async fn follow_leadership<F>(
    mut leader: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    metrics: &Metrics,
    health: &Health,
    lead: F,
) -> Result<(), String>
where
    F: Fn() -> tokio::task::JoinHandle<()>,
{
    let gone = |_| "the leader election task stopped".to_string();
    loop {
        while !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => changed.map_err(gone)?,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
        tracing::info!("became leader: reconciling");
        metrics.leader.set(1);
        health.leading.store(true, Ordering::SeqCst);
        let task = lead();
        let lost = loop {
            tokio::select! {
                changed = leader.changed() => {
                    changed.map_err(gone)?;
                    if !*leader.borrow_and_update() { break true; }
                }
                _ = stop.wait_for(|s| *s) => break false,
            }
        };
        metrics.leader.set(0);
        health.leading.store(false, Ordering::SeqCst);
        if !lost {
            let _ = task.await;
            return Ok(());
        }
        task.abort();
        tracing::warn!("lost leadership: stopped reconciling");
    }
}

/// One kube-runtime Controller per watched namespace (or one for all), until `stop` says so.
async fn run_controllers(
    client: kube::Client,
    namespaces: Vec<String>,
    concurrency: u16,
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
        let controller = Controller::new(api, watcher::Config::default().any_semantic())
            .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
        let store = controller.store();
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

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "asyncscale".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl_flags() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
    }

    #[tokio::test]
    async fn only_the_lease_holder_works_and_losing_the_lease_stops_it_at_once() {
        use std::sync::atomic::AtomicU64;
        let (leader_tx, leader_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::new(CallCounter::default()));
        let health = Arc::new(Health::default());
        let writes = Arc::new(AtomicU64::new(0));
        let follower = {
            let (metrics, health, writes) = (metrics.clone(), health.clone(), writes.clone());
            tokio::spawn(async move {
                follow_leadership(leader_rx, stop_rx.clone(), &metrics, &health, || {
                    let writes = writes.clone();
                    let stop = stop_rx.clone();
                    // Like the controllers: work until told to stop.
                    tokio::spawn(async move {
                        while !*stop.borrow() {
                            writes.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    })
                })
                .await
            })
        };
        let settle = || tokio::time::sleep(Duration::from_millis(60));
        settle().await;
        assert_eq!(writes.load(Ordering::SeqCst), 0, "a standby does nothing");

        leader_tx.send(true).unwrap();
        settle().await;
        assert!(writes.load(Ordering::SeqCst) > 0, "the leader works");
        assert!(metrics.encode().contains("asyncscale_leader 1"));

        leader_tx.send(false).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let at_loss = writes.load(Ordering::SeqCst);
        settle().await;
        assert_eq!(
            writes.load(Ordering::SeqCst),
            at_loss,
            "no work after the lease is lost"
        );
        assert!(metrics.encode().contains("asyncscale_leader 0"));

        leader_tx.send(true).unwrap();
        settle().await;
        assert!(
            writes.load(Ordering::SeqCst) > at_loss,
            "regaining the lease resumes work"
        );

        stop_tx.send(true).unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(1), follower)
            .await
            .expect("stops on shutdown");
    }

    #[test]
    fn a_leader_is_ready_only_after_its_caches_sync() {
        let health = Health::default();
        assert!(!health.ready(), "API not reached yet");
        health.api_reachable.store(true, Ordering::SeqCst);
        assert!(health.ready(), "a standby is ready once the API answers");
        health.leading.store(true, Ordering::SeqCst);
        health.watches.store(2, Ordering::SeqCst);
        health.watches_synced.store(1, Ordering::SeqCst);
        assert!(!health.ready());
        health.watches_synced.store(2, Ordering::SeqCst);
        assert!(health.ready());
    }
}
