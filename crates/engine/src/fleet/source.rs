//! Fleet views over another source's backends: one view per role and region.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{
    CHANGES_BUFFERED, EndpointMemory, FleetChange, FleetConfig, FleetStats, FleetView, Held,
};
use crate::error::AwsError;
use crate::port::AutoscalingBackend;
use crate::port::Place;
use crate::source::{AssumedRole, BackendSource, Placement};

/// The role a view's calls act as (None: the source's own credentials), and its region.
type ViewKey = (Option<AssumedRole>, String);

/// Fleet views over another source's backends: one per role and region, shared by every
/// resource whose calls act as that role there.
pub struct FleetSource {
    inner: Arc<dyn BackendSource>,
    config: FleetConfig,
    memory: Option<Arc<dyn EndpointMemory>>,
    views: Mutex<BTreeMap<ViewKey, Arc<FleetView>>>,
    changes: broadcast::Sender<FleetChange>,
}

impl FleetSource {
    pub fn new(inner: Arc<dyn BackendSource>, config: FleetConfig) -> Self {
        Self {
            inner,
            config,
            memory: None,
            views: Mutex::new(BTreeMap::new()),
            changes: broadcast::channel(CHANGES_BUFFERED).0,
        }
    }

    /// The stats of each account and region's views (one per role there): counters summed, and
    /// the freshest picture's age and refresh time (a view whose role's resources are all gone
    /// is no longer refreshed, and must not look stale; a hung role shows in its resources'
    /// status instead).
    pub fn stats(&self) -> BTreeMap<Place, FleetStats> {
        let mut by_place: BTreeMap<Place, FleetStats> = BTreeMap::new();
        for view in self.views.lock().expect("fleet views lock").values() {
            let stats = view.stats();
            let sum = by_place.entry(view.place()).or_default();
            sum.refreshes += stats.refreshes;
            sum.failed_refreshes += stats.failed_refreshes;
            sum.backlog_reads_failed += stats.backlog_reads_failed;
            sum.held = Held {
                targets: sum.held.targets + stats.held.targets,
                activity_histories: sum.held.activity_histories + stats.held.activity_histories,
                tags: sum.held.tags + stats.held.tags,
                endpoints: sum.held.endpoints + stats.held.endpoints,
                configs: sum.held.configs + stats.held.configs,
            };
            if stats.age.is_some() && sum.age.is_none_or(|age| stats.age < Some(age)) {
                sum.age = stats.age;
                sum.last_refresh_took = stats.last_refresh_took;
            }
        }
        by_place
    }

    /// [`FleetView::forget_policies`] for every view: a new term of leadership starts.
    pub fn forget_policies(&self) {
        for view in self.views.lock().expect("fleet views lock").values() {
            view.forget_policies();
        }
    }

    /// Changes found by any view's refresh.
    pub fn changes(&self) -> broadcast::Receiver<FleetChange> {
        self.changes.subscribe()
    }

    /// Views that start from what `memory` kept and keep what they read (see [`EndpointMemory`]).
    pub fn remembering(mut self, memory: Arc<dyn EndpointMemory>) -> Self {
        self.memory = Some(memory);
        self
    }
}

#[async_trait]
impl BackendSource for FleetSource {
    async fn backend(
        &self,
        placement: &Placement,
    ) -> Result<Arc<dyn AutoscalingBackend>, AwsError> {
        let backend = self.inner.backend(placement).await?;
        let key = (self.inner.role_of(placement), backend.region().to_string());
        let mut views = self.views.lock().expect("fleet views lock");
        let view = views
            .entry(key)
            .or_insert_with(|| {
                let view = FleetView::reporting_to(backend, self.config, self.changes.clone());
                Arc::new(match &self.memory {
                    Some(memory) => view.remembering(memory.clone()),
                    None => view,
                })
            })
            .clone();
        Ok(view)
    }

    fn role_of(&self, placement: &Placement) -> Option<AssumedRole> {
        self.inner.role_of(placement)
    }

    async fn default_region(&self) -> Option<String> {
        self.inner.default_region().await
    }
}
