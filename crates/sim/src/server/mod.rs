//! The local AWS endpoint: one HTTP listener that speaks
//! - Application Auto Scaling and Service Quotas over AWS JSON 1.1 (`POST /`, `X-Amz-Target`),
//! - STS AssumeRole and GetCallerIdentity over awsQuery (`POST /`, form-encoded; see [`crate::sts`]):
//!   each role's account is a simulated account of its own, reached with the session's keys,
//! - CloudWatch over Smithy RPC v2 CBOR (`POST /service/GraniteServiceVersion20100801/operation/<Op>`),
//!   as aws-sdk-cloudwatch 1.140 and botocore 1.43 send it, and over AWS JSON 1.0,
//!
//! with AWS's error shapes (docs/aws-behaviour.md §6.2), plus admin routes under `/_sim/` for tests:
//! - `GET /_sim/state`: every scalable target, policy (with configuration), alarm (with tags),
//!   scheduled action, and the failed scaling activities;
//! - `GET /_sim/calls`: requests answered, by service and operation;
//! - `GET /_sim/throttles`: of those, the ones refused for the request rate (`sim serve
//!   --rate-limits aws`, `--rate-limit`), by service and operation;
//! - `GET /_sim/injected`: of those, the ones answered with a random fault (`--fault-rate`);
//! - `POST /_sim/fault-rate`: `{"rate": 0.3, "seed": 1}` sets that share of random faults (0: off);
//! - `POST /_sim/activities?region=R`: record a scaling activity (JSON in DescribeScalingActivities'
//!   shape) in region R (default us-east-1);
//! - `POST /_sim/quotas`: `{"applied": {"ml.g4dn.xlarge": 4}, "defaults": {...}}` sets quotas;
//! - `POST /_sim/faults`: answer the next request(s) for an operation with an AWS error, or hold
//!   them first: `{"operation": "GetServiceQuota", "code": "TooManyRequestsException",
//!   "status": 400, "count": 1, "delaySeconds": 0, "service": "service-quotas"}` (`count` 0: until
//!   cleared; no `code`: only the delay; `"inputHas": ["StateValue", "ALARM"]`: only requests
//!   with that input field; `"holdSeconds": 120`: every request for the operation in the next
//!   120 s is answered when they are over); `GET` lists them, `DELETE` clears them;
//! - `GET /_sim/log?since=SEQ&limit=N`: every request answered after SEQ, with the access key
//!   (and, for assumed-role sessions, the key that assumed the role) that signed it, when it
//!   arrived and was answered, and what it named ([`crate::call_log`]);
//! - `GET /_sim/state?region=R`: the state of one region (default us-east-1);
//! - `POST /_sim/roles`: `{"arn": "arn:aws:iam::222222222222:role/x", "externalId": "id"}`
//!   declares a role that AssumeRole grants (from then on only declared ones; `externalId`
//!   optional); `GET /_sim/sessions` lists the sessions AssumeRole issued;
//!
//! every admin route takes `?account=ID` to address another simulated account than the
//! caller's own (123456789012), created on first use;
//!
//! and, to drive the scaling model with the configuration real clients put there:
//! - `POST /_sim/endpoints`: declare an endpoint, `{"endpoint": "sdxl-async", "variant": "AllTraffic",
//!   "instanceType": "ml.g4dn.xlarge", "throughputPerMinute": 6, "instances": 0}`;
//! - `DELETE /_sim/endpoints?endpoint=NAME`: delete an endpoint (its scalable target is
//!   deregistered, as AWS does);
//! - `POST /_sim/requests`: queue requests now, `{"endpoint": "sdxl-async", "count": 5}`;
//! - `POST /_sim/advance`: move the virtual clock, `{"seconds": 600}`;
//! - `GET /_sim/endpoints`: each endpoint's backlog, desired and in-service instances, alarm states.
//!
//! With `--time-scale X` the clock also moves by itself, X simulated seconds per real second.
//!
//! Each protocol has its file (`json`, `query`, `rpc_v2_cbor`), as do the admin routes
//! (`admin`), what a request meets whichever protocol carried it (`operation`), and the
//! simulated accounts the endpoint holds (`tenants`); this file starts the endpoint and routes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{get, post};

use crate::account::{Account, QuotaTable};
use crate::call_log::Entry;
use crate::model::assumptions::Assumptions;
use crate::model::{EndpointSpec, World};
use crate::sts::Roles;

mod admin;
mod json;
mod operation;
mod query;
mod rpc_v2_cbor;
mod tenants;

use admin::{
    admin_add_activity, admin_add_fault, admin_advance, admin_calls, admin_clear_faults,
    admin_declare_endpoint, admin_declare_role, admin_delete_endpoint, admin_endpoints,
    admin_enqueue, admin_fault_rate, admin_faults, admin_injected, admin_log, admin_sessions,
    admin_set_quotas, admin_state, admin_throttles,
};
use json::json_protocols;
use rpc_v2_cbor::cloudwatch_cbor;
use tenants::{Shared, advance_all};
pub use tenants::{SharedAccount, SharedWorld, Tenant};

/// A running local endpoint.
pub struct SimServer {
    pub addr: SocketAddr,
    pub account: SharedAccount,
    /// The scaling model over `account`; lock it before the account, never after.
    pub world: SharedWorld,
    /// The roles AssumeRole grants and the sessions it issued.
    pub roles: Arc<Mutex<Roles>>,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl SimServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Declares an asynchronous endpoint with no instances (see [`EndpointSpec::idle`]), unless
    /// one of that name exists. Returns whether it was added.
    pub fn declare_endpoint(&self, endpoint: &str, variant: &str, instance_type: &str) -> bool {
        let mut world = self.world.lock().expect("world lock");
        if world.endpoint_mut(endpoint).is_some() {
            return false;
        }
        world.add_endpoint(EndpointSpec::idle(endpoint, variant, instance_type));
        true
    }

    /// The requests answered after `seq` ([`crate::call_log`]; `GET /_sim/log`).
    pub fn log_since(&self, seq: u64) -> Vec<Entry> {
        self.shared
            .log
            .lock()
            .expect("log lock")
            .since(seq, usize::MAX)
    }

    /// The simulated account `id` (twelve digits), created on first use; the caller's own is
    /// [`crate::account::ACCOUNT_ID`].
    pub fn tenant(&self, id: &str) -> Tenant {
        self.shared.tenant(id)
    }

    /// Serves until the process ends.
    pub async fn wait(mut self) {
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(listen: SocketAddr, quotas: QuotaTable) -> std::io::Result<SimServer> {
    start_with_clock(listen, quotas, 0.0).await
}

/// Starts the endpoint; with `time_scale` > 0 the virtual clock advances that many simulated
/// seconds per real second.
pub async fn start_with_clock(
    listen: SocketAddr,
    quotas: QuotaTable,
    time_scale: f64,
) -> std::io::Result<SimServer> {
    let account: SharedAccount = Arc::new(Mutex::new(Account::new(quotas.clone())));
    let epoch = crate::account::now();
    let world: SharedWorld = Arc::new(Mutex::new(World::new(Assumptions::default(), epoch)));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let shared = Shared {
        own: Tenant {
            account: account.clone(),
            world: world.clone(),
        },
        others: Arc::default(),
        roles: Arc::default(),
        quotas: Arc::new(quotas),
        log: Arc::default(),
    };
    let roles = shared.roles.clone();
    let app_shared = shared.clone();
    let app = router(shared.clone());
    let clock = (time_scale > 0.0).then(|| {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                interval.tick().await;
                advance_all(&shared, time_scale);
            }
        })
    });
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).await;
        if let Some(clock) = clock {
            clock.abort();
        }
        if let Err(e) = served {
            tracing::error!(error = %e, "local AWS endpoint stopped");
        }
    });
    Ok(SimServer {
        addr,
        account,
        world,
        roles,
        shared: app_shared,
        task,
    })
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", post(json_protocols))
        .route(
            "/service/GraniteServiceVersion20100801/operation/{operation}",
            post(cloudwatch_cbor),
        )
        .route("/_sim/state", get(admin_state))
        .route("/_sim/calls", get(admin_calls))
        .route("/_sim/throttles", get(admin_throttles))
        .route("/_sim/injected", get(admin_injected))
        .route("/_sim/fault-rate", post(admin_fault_rate))
        .route("/_sim/activities", post(admin_add_activity))
        .route("/_sim/quotas", post(admin_set_quotas))
        .route(
            "/_sim/faults",
            post(admin_add_fault)
                .get(admin_faults)
                .delete(admin_clear_faults),
        )
        .route(
            "/_sim/endpoints",
            post(admin_declare_endpoint)
                .get(admin_endpoints)
                .delete(admin_delete_endpoint),
        )
        .route("/_sim/requests", post(admin_enqueue))
        .route("/_sim/advance", post(admin_advance))
        .route("/_sim/roles", post(admin_declare_role))
        .route("/_sim/sessions", get(admin_sessions))
        .route("/_sim/log", get(admin_log))
        .with_state(shared)
}
