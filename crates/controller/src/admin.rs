//! The admin server of `asyncscale run`: /metrics (Prometheus), /healthz and /readyz.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// What /healthz and /readyz report.
#[derive(Default)]
pub struct Health {
    /// The API server answered and the CRD is installed.
    pub api_reachable: AtomicBool,
    /// This replica runs the controllers (no leader election, or it holds the Lease).
    pub leading: AtomicBool,
    pub watches: AtomicUsize,
    pub watches_synced: AtomicUsize,
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

#[cfg(test)]
mod tests {
    use super::*;

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
