//! Kubernetes Events (events.k8s.io/v1) about AsyncEndpointScaling resources, with repeats folded
//! into one Event's series as `kubectl describe` expects.
//!
//! Why not kube-runtime's `Recorder`: it keeps a clone of every Event published in the last six
//! minutes in a hash table that never shrinks. Creating 1,000 resources publishes about 5,000
//! Events, and that table alone then held 17.7 MiB for the life of the process (heaptrack,
//! `scripts/bench-fleet.sh 1000`). It also folds Events by reason alone, so a repeat with a new
//! note was shown with the old note. Here a series is keyed by everything a reader sees, note
//! included (as client-go's event correlator does), and only what a repeat needs is kept.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
pub use kube::runtime::events::{Event, EventType};

use asyncscale_api::{AsyncEndpointScaling, AsyncEndpointScalingStatus};
use asyncscale_core::names::TARGET_TRACKING_POLICY;
use asyncscale_core::notices::notices;
use asyncscale_core::plan::{Change, PlannedChange};
use asyncscale_core::status::SyncOutcome;
use kube::{Resource, ResourceExt};

/// How long a repeat still joins the earlier Event's series (kube-runtime's and client-go's
/// figure, so that `kubectl describe` reads the same as for other controllers).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Who publishes: `reportingController` and `reportingInstance` of every Event.
#[derive(Clone, Debug)]
pub struct Reporter {
    pub controller: String,
    pub instance: String,
}

/// An Event already published, as much as a repeat needs to extend its series.
struct Series {
    name: String,
    count: i32,
    last_observed: Instant,
}

pub struct EventPublisher {
    client: kube::Client,
    reporter: Reporter,
    /// By a hash of what the Event says and what it is about (a collision of 64-bit hashes among
    /// the few thousand Events of six minutes would only extend the wrong series).
    series: Mutex<HashMap<u64, Series>>,
}

impl EventPublisher {
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            series: Mutex::new(HashMap::new()),
        }
    }

    /// Creates the Event, or counts a repeat of one published within [`SERIES_WINDOW`].
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = series_key(event, regarding);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let repeat = {
            let mut series = self.series.lock().expect("series lock");
            series.retain(|_, s| s.last_observed.elapsed() < SERIES_WINDOW);
            if series.capacity() > 64 && series.len() < series.capacity() / 4 {
                series.shrink_to_fit();
            }
            series.get(&key).map(|s| (s.name.clone(), s.count + 1))
        };
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let now = Timestamp::now();
        let extended = match repeat {
            Some((name, count)) => {
                let series = serde_json::json!({
                    "series": EventSeries { count, last_observed_time: MicroTime(now) }
                });
                match events
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                    .await
                {
                    Ok(_) => Some((name, count)),
                    // The first Event is gone (deleted by hand, or expired): start a new series,
                    // as client-go does, instead of patching nothing at every repeat.
                    Err(kube::Error::Api(status)) if status.code == 404 => None,
                    Err(e) => return Err(e),
                }
            }
            None => None,
        };
        let (name, count) = match extended {
            Some(series) => series,
            None => {
                let created = self.new_event(event, regarding, now);
                events.create(&PostParams::default(), &created).await?;
                (created.metadata.name.unwrap_or_default(), 1)
            }
        };
        self.series.lock().expect("series lock").insert(
            key,
            Series {
                name,
                count,
                last_observed: Instant::now(),
            },
        );
        Ok(())
    }

    fn new_event(&self, event: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        let about = event_name_prefix(
            regarding
                .name
                .as_deref()
                .unwrap_or(&self.reporter.controller),
        );
        K8sEvent {
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            note: event.note.clone(),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!("{about}.{:x}", now.as_nanosecond())),
                ..Default::default()
            },
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(self.reporter.instance.clone()),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            ..Default::default()
        }
    }

    /// Series remembered now (for tests and the memory figures).
    pub fn remembered(&self) -> usize {
        self.series.lock().expect("series lock").len()
    }
}

/// The object's name, cut so that `<name>.<16 hex digits>` stays within the 253 characters of a
/// DNS subdomain, ending in a letter or digit as the API server requires.
fn event_name_prefix(name: &str) -> &str {
    const ROOM: usize = 253 - 1 - 16;
    let mut end = name.len().min(ROOM);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].trim_end_matches(['-', '.'])
}

fn series_key(event: &Event, regarding: &ObjectReference) -> u64 {
    let mut hasher = DefaultHasher::new();
    matches!(event.type_, EventType::Warning).hash(&mut hasher);
    event.reason.hash(&mut hasher);
    event.action.hash(&mut hasher);
    event.note.hash(&mut hasher);
    regarding.uid.hash(&mut hasher);
    regarding.namespace.hash(&mut hasher);
    regarding.name.hash(&mut hasher);
    event
        .secondary
        .as_ref()
        .map(|r| (&r.uid, &r.namespace, &r.name))
        .hash(&mut hasher);
    hasher.finish()
}

/// Longest Event note the API server takes.
const MAX_NOTE: usize = 1024;

impl EventPublisher {
    /// Events are best effort: a failure to publish one never fails the reconcile.
    pub async fn tell(
        &self,
        obj: &AsyncEndpointScaling,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let mut note = note.to_string();
        if note.len() > MAX_NOTE {
            let mut cut = MAX_NOTE - 3;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push_str("...");
        }
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.publish(&event, &obj.object_ref(&())).await {
            let resource = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
            tracing::warn!(%resource, reason, error = %e, "could not publish an Event");
        }
    }

    /// Events for what a user cares about in the new status ([`notices`] decides what is news).
    pub async fn tell_status(
        &self,
        obj: &AsyncEndpointScaling,
        previous: Option<&AsyncEndpointScalingStatus>,
        status: &AsyncEndpointScalingStatus,
        outcome: &SyncOutcome,
    ) {
        for notice in notices(previous, status, outcome) {
            let type_ = if notice.warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            self.tell(obj, type_, &notice.reason, notice.action, &notice.note)
                .await;
        }
    }
}

/// The Event that tells a change applied to AWS.
pub fn change_event(change: &PlannedChange) -> (&'static str, EventType) {
    let reason = match &change.change {
        Change::RegisterTarget { create: true, .. } => "ScalableTargetRegistered",
        Change::RegisterTarget { create: false, .. } => "ScalableTargetUpdated",
        Change::DeregisterTarget { .. } => "ScalableTargetDeregistered",
        Change::TagTarget { .. } => "ScalableTargetAdopted",
        Change::UntagTarget { .. } => "ScalableTargetReleased",
        Change::TagAlarm { .. } => "AlarmAdopted",
        Change::UntagAlarm { .. } => "AlarmReleased",
        // Distinct reasons per policy, so that the Recorder does not fold them into one series.
        Change::PutPolicy { policy } if policy.name == TARGET_TRACKING_POLICY => {
            "TargetTrackingPolicyApplied"
        }
        Change::PutPolicy { .. } => "ScaleFromZeroPolicyApplied",
        Change::DeletePolicy { name, .. } if name == TARGET_TRACKING_POLICY => {
            "TargetTrackingPolicyDeleted"
        }
        Change::DeletePolicy { .. } => "ScaleFromZeroPolicyDeleted",
        Change::PutAlarm { .. } => "AlarmApplied",
        Change::DeleteAlarm { .. } => "AlarmDeleted",
        Change::PutScheduledAction { .. } => "ScheduledActionApplied",
        Change::DeleteScheduledAction { .. } => "ScheduledActionDeleted",
    };
    (reason, EventType::Normal)
}
