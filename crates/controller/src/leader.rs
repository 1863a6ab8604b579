//! Leader election on a `coordination.k8s.io/v1` Lease, with a renew deadline, as client-go's
//! leaderelection package does it: a replica leads only while its last successful renewal is
//! younger than the renew deadline, which is shorter than the lease duration. A replica cut off
//! from the API server therefore stops writing (the [`Leadership`] fence closes) before any
//! standby may take the Lease over, whatever its connection does. (kube-lease-manager, used
//! before, reports errors but never "not leader" on a lost connection.)
//!
//! Expiry is judged by when this replica last *saw* the Lease change, on its own monotonic clock,
//! never by comparing another node's timestamps with ours: clock skew cannot shorten a term.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;

use crate::admin::Health;
use crate::metrics::Metrics;

/// How a replica holds its Lease.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a Lease holds without renewal; a standby takes over after it.
    pub duration: Duration,
}

impl LeaseConfig {
    /// Leading stops when no renewal succeeded for this long: two thirds of the duration
    /// (client-go's defaults are 15 s and 10 s), so the holder stops a third of the duration
    /// before any standby may take over.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// How often the holder renews and a standby tries to acquire (client-go: 2 s for 15 s).
    pub fn retry_period(&self) -> Duration {
        (self.duration * 2 / 15).max(Duration::from_millis(100))
    }
}

/// Whether this replica may write, shared with every AWS write (the fence) and the health page.
#[derive(Debug)]
pub struct Leadership {
    /// When the last successful acquire or renewal *started*, while this replica holds the Lease.
    renewed_at: Mutex<Option<Instant>>,
    renew_deadline: Duration,
}

/// Why this replica may not write to AWS.
#[derive(Debug, thiserror::Error)]
pub enum NotLeader {
    #[error(
        "this replica's leader Lease was last renewed {renewed_s:.1}s ago, past the renew deadline of {deadline_s:.1}s: it stops writing to AWS before a standby may take over"
    )]
    PastRenewDeadline { renewed_s: f64, deadline_s: f64 },
    #[error("this replica does not hold the leader Lease")]
    NotHeld,
}

impl Leadership {
    pub fn new(renew_deadline: Duration) -> Self {
        Self {
            renewed_at: Mutex::new(None),
            renew_deadline,
        }
    }

    /// Ok while the last renewal is younger than the renew deadline.
    pub fn check(&self) -> Result<(), NotLeader> {
        match *self.renewed_at.lock().expect("leadership lock") {
            Some(at) if at.elapsed() < self.renew_deadline => Ok(()),
            Some(at) => Err(NotLeader::PastRenewDeadline {
                renewed_s: at.elapsed().as_secs_f64(),
                deadline_s: self.renew_deadline.as_secs_f64(),
            }),
            None => Err(NotLeader::NotHeld),
        }
    }

    fn renewed(&self, at: Instant) {
        *self.renewed_at.lock().expect("leadership lock") = Some(at);
    }

    fn lost(&self) {
        *self.renewed_at.lock().expect("leadership lock") = None;
    }
}

/// What this replica last saw of the Lease: who held it, its renew time, and when (our clock).
#[derive(Debug, Default)]
struct Observation {
    record: Option<(Option<String>, Option<MicroTime>)>,
    seen_at: Option<Instant>,
}

impl Observation {
    fn see(&mut self, spec: &LeaseSpec) {
        let record = (spec.holder_identity.clone(), spec.renew_time.clone());
        if self.record.as_ref() != Some(&record) {
            self.record = Some(record);
            self.seen_at = Some(Instant::now());
        }
    }

    /// The holder has not renewed for longer than its own lease duration, as we saw it.
    fn expired(&self, spec: &LeaseSpec, default: Duration) -> bool {
        let duration = spec
            .lease_duration_seconds
            .map_or(default, |s| Duration::from_secs(s.max(1) as u64));
        self.seen_at.is_none_or(|seen| seen.elapsed() > duration)
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One acquire-or-renew attempt. Ok(true): this replica holds the Lease now.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Observation,
) -> Result<bool, kube::Error> {
    let duration_s = config.duration.as_secs().max(1) as i32;
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(duration_s),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let mut spec = lease.spec.take().unwrap_or_default();
    observed.see(&spec);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let ours = holder.as_deref() == Some(config.identity.as_str());
    if !ours {
        if holder.is_some() && !observed.expired(&spec, config.duration) {
            return Ok(false);
        }
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.holder_identity = Some(config.identity.clone());
    }
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(duration_s);
    lease.spec = Some(spec);
    // The resourceVersion read above makes this a compare-and-swap: of two replicas that both
    // saw the Lease expire, only one wins.
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Hands the Lease back so a standby need not wait for it to expire (client-go's
/// ReleaseOnCancel). Best effort.
async fn release(api: &Api<Lease>, config: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    if let Err(e) = api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        tracing::warn!(error = %e, "could not release the leader Lease");
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Holds the Lease until `stop` turns true: `leading` tells whether this replica leads, and
/// `leadership` fences every AWS write. Each API attempt is bounded, so a hung connection counts
/// as a failed renewal instead of stalling the loop.
pub async fn run_elector(
    api: Api<Lease>,
    config: LeaseConfig,
    leadership: std::sync::Arc<Leadership>,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut observed = Observation::default();
    let attempt_timeout = config.renew_deadline().min(config.duration / 2);
    let leading = std::sync::Arc::new(leading);
    // The fence closes by itself at the renew deadline; this tells the controllers at once too,
    // even while a renewal attempt hangs.
    let watchdog = {
        let (leadership, leading) = (leadership.clone(), leading.clone());
        let tick = (config.retry_period() / 4).max(Duration::from_millis(20));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                if *leading.borrow()
                    && let Err(why) = leadership.check()
                {
                    tracing::warn!(reason = %why, "lost leadership");
                    leading.send_replace(false);
                }
            }
        })
    };
    let _stop_watchdog = AbortOnDrop(watchdog);
    loop {
        let started = Instant::now();
        let attempt = tokio::time::timeout(
            attempt_timeout,
            try_acquire_or_renew(&api, &config, &mut observed),
        )
        .await;
        match attempt {
            Ok(Ok(true)) => leadership.renewed(started),
            Ok(Ok(false)) => leadership.lost(),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not renew or acquire the leader Lease"),
            Err(_) => tracing::warn!(
                timeout_s = attempt_timeout.as_secs_f64(),
                "the API server did not answer the leader Lease renewal in time"
            ),
        }
        let valid = leadership.check();
        if *leading.borrow() != valid.is_ok() {
            match &valid {
                Ok(()) => tracing::info!(identity = %config.identity, "acquired the leader Lease"),
                Err(why) => tracing::warn!(reason = %why, "lost leadership"),
            }
            let _ = leading.send(valid.is_ok());
        }
        // A standby waits a little longer than the holder, so that the holder renews first.
        let wait = if valid.is_ok() {
            config.retry_period()
        } else {
            config.retry_period() * 6 / 5
        };
        let next = started + wait;
        let stopping = tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopping {
            if valid.is_ok() {
                leadership.lost();
                let _ = leading.send(false);
                let _ = tokio::time::timeout(Duration::from_secs(2), release(&api, &config)).await;
            }
            return;
        }
    }
}

/// The task that holds the Lease ended while the controller still ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the leader election task stopped")]
pub struct ElectionStopped;

/// Runs `lead` while `leader` says this replica holds the Lease. Losing the Lease aborts the task
/// at once, in-flight AWS calls included, so a former leader never writes after a standby took
/// over; regaining it starts a fresh one. Returns when `stop` turns true.
pub async fn follow_leadership<F>(
    mut leader: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    metrics: &Metrics,
    health: &Health,
    lead: F,
) -> Result<(), ElectionStopped>
where
    F: Fn() -> tokio::task::JoinHandle<()>,
{
    let gone = |_| ElectionStopped;
    loop {
        while !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => changed.map_err(gone)?,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
        tracing::info!("became leader: reconciling");
        metrics.leader.set(1);
        metrics.began_leading();
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
        // Abort only asks: the term's futures are dropped when the runtime next gets to them.
        // The Lease can come back within milliseconds (a renewal that was merely late), and the
        // fence asks "do we lead now?", not "in which term": a new term must not start while a
        // reconcile of the old one can still pass the fence or record a visit after begin_term.
        let _ = task.await;
        // What this replica saw as leader goes stale from now on: the new leader reports it.
        metrics.forget_readings();
        tracing::warn!("lost leadership: stopped reconciling");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asyncscale_engine::CallCounter;
    use std::sync::Arc;

    #[test]
    fn the_holder_stops_a_third_of_the_duration_before_a_standby_may_take_over() {
        let config = LeaseConfig {
            name: "l".into(),
            namespace: "ns".into(),
            identity: "a".into(),
            duration: Duration::from_secs(15),
        };
        assert_eq!(config.renew_deadline(), Duration::from_secs(10));
        assert_eq!(config.retry_period(), Duration::from_secs(2));
    }

    #[test]
    fn leadership_expires_at_the_renew_deadline_without_any_news() {
        let leadership = Leadership::new(Duration::from_millis(50));
        assert!(leadership.check().is_err(), "not leading before acquiring");
        leadership.renewed(Instant::now());
        assert!(leadership.check().is_ok());
        std::thread::sleep(Duration::from_millis(60));
        let why = leadership.check().unwrap_err();
        assert!(why.to_string().contains("renew deadline"), "{why}");
        leadership.renewed(Instant::now());
        assert!(leadership.check().is_ok());
        leadership.lost();
        assert!(leadership.check().is_err());
    }

    #[test]
    fn a_lease_expires_by_our_clock_since_we_last_saw_it_change() {
        let spec = LeaseSpec {
            holder_identity: Some("b".into()),
            lease_duration_seconds: Some(1),
            renew_time: Some(now()),
            ..Default::default()
        };
        let mut seen = Observation::default();
        assert!(seen.expired(&spec, Duration::from_secs(1)), "never seen");
        seen.see(&spec);
        assert!(!seen.expired(&spec, Duration::from_secs(1)));
        std::thread::sleep(Duration::from_millis(1100));
        seen.see(&spec); // unchanged: the clock keeps running
        assert!(seen.expired(&spec, Duration::from_secs(1)));
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
        let reading = asyncscale_engine::OnCallReading {
            region: "us-east-1".into(),
            instance_type: "ml.g4dn.xlarge".into(),
            blocked_by_quota: true,
            clamped: true,
            ..Default::default()
        };
        metrics.resource_reading("ml/a", Some(reading), &[]);
        assert!(
            metrics
                .encode()
                .contains("asyncscale_endpoints_blocked_by_quota{")
        );
        assert!(metrics.encode().contains("asyncscale_managed_resources 1"));
        assert!(metrics.encode().contains("asyncscale_resources_clamped 1"));

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
        assert!(
            !metrics
                .encode()
                .contains("asyncscale_endpoints_blocked_by_quota{"),
            "a standby repeats no stale view of the quota"
        );
        assert!(
            metrics.encode().contains("asyncscale_managed_resources 0"),
            "nor counts the resources the leader manages"
        );

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
}
