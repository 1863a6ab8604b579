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

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::account::{ACCOUNT_ID, Account, Activity, ApiError, DEFAULT_REGION, Fault, QuotaTable};
use crate::call_log::{CallLog, Entry};
use crate::cbor;
use crate::model::assumptions::Assumptions;
use crate::model::{EndpointSpec, World};
use crate::sts::Roles;

pub type SharedAccount = Arc<Mutex<Account>>;
pub type SharedWorld = Arc<Mutex<World>>;

/// One simulated account: its AWS state and its scaling model.
#[derive(Clone)]
pub struct Tenant {
    pub account: SharedAccount,
    pub world: SharedWorld,
}

#[derive(Clone)]
struct Shared {
    /// The caller's own account (requests signed with any key STS did not issue).
    own: Tenant,
    /// The accounts of assumed roles, by account id, created on first use.
    others: Arc<Mutex<BTreeMap<String, Tenant>>>,
    roles: Arc<Mutex<Roles>>,
    /// What a new account starts with.
    quotas: QuotaTable,
    log: Arc<Mutex<CallLog>>,
}

impl Shared {
    /// The account `id` (the caller's own for its id), created on first use with the own
    /// account's quotas and clock.
    fn tenant(&self, id: &str) -> Tenant {
        if id == ACCOUNT_ID {
            return self.own.clone();
        }
        let mut others = self.others.lock().expect("accounts lock");
        others
            .entry(id.to_string())
            .or_insert_with(|| {
                let world = self.own.world.lock().expect("world lock");
                let mut fresh = World::new(Assumptions::default(), world.epoch);
                fresh.now = world.now;
                // The request rates `sim serve` enforces hold in every account, each with its
                // own buckets.
                let own = self.own.account.lock().expect("account lock");
                let mut account = Account::with_id(id, self.quotas.clone());
                account.rate_limits = own.rate_limits.fresh();
                account.random_faults = own
                    .random_faults
                    .as_ref()
                    .map(|faults| crate::account::RandomFaults::new(faults.rate(), 1));
                Tenant {
                    account: Arc::new(Mutex::new(account)),
                    world: Arc::new(Mutex::new(fresh)),
                }
            })
            .clone()
    }

    /// The account a request acts in: the session's, when signed with keys STS issued.
    fn tenant_of(&self, headers: &HeaderMap) -> Tenant {
        let account = access_key_id(headers).and_then(|key| {
            let roles = self.roles.lock().expect("roles lock");
            roles.account_of(&key).map(str::to_string)
        });
        match account {
            Some(id) => self.tenant(&id),
            None => self.own.clone(),
        }
    }

    /// Logs one answered request (see [`crate::call_log`]).
    #[allow(clippy::too_many_arguments)]
    fn log_call(
        &self,
        headers: &HeaderMap,
        received_at: f64,
        account: &SharedAccount,
        service: &str,
        operation: &str,
        input: &Value,
        error: Option<&ApiError>,
    ) {
        let key = access_key_id(headers);
        let source_key = key.as_deref().and_then(|k| {
            let roles = self.roles.lock().expect("roles lock");
            roles.sessions.get(k).and_then(|s| s.source_key.clone())
        });
        let account = account.lock().expect("account lock").id.clone();
        self.log.lock().expect("log lock").push(Entry {
            seq: 0,
            received_at,
            answered_at: crate::account::now(),
            key,
            source_key,
            account,
            region: region(headers),
            service: service.to_string(),
            operation: operation.to_string(),
            write: !crate::call_log::is_read(operation),
            error: error.map(|e| e.code.clone()),
            names: crate::call_log::names_of(input),
        });
    }

    fn all_tenants(&self) -> Vec<Tenant> {
        let mut all = vec![self.own.clone()];
        all.extend(self.others.lock().expect("accounts lock").values().cloned());
        all
    }
}

/// Admin routes address `?account=ID` (twelve digits), or the caller's own account.
impl axum::extract::FromRequestParts<Shared> for Tenant {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        shared: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let query: BTreeMap<String, String> = parts
            .uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default();
        match query.get("account") {
            None => Ok(shared.own.clone()),
            Some(id) if id.len() == 12 && id.chars().all(|c| c.is_ascii_digit()) => {
                Ok(shared.tenant(id))
            }
            Some(id) => Err(bad_request(format!(
                "account {id:?} is not a twelve-digit AWS account id"
            ))),
        }
    }
}

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

    /// The simulated account `id` (twelve digits), created on first use; the caller's own is
    /// [`crate::account::ACCOUNT_ID`].
    /// The requests answered after `seq` ([`crate::call_log`]; `GET /_sim/log`).
    pub fn log_since(&self, seq: u64) -> Vec<Entry> {
        self.shared
            .log
            .lock()
            .expect("log lock")
            .since(seq, usize::MAX)
    }

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
        quotas,
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

/// Moves every account's clock (each account's scaling model) by `seconds`.
fn advance_all(shared: &Shared, seconds: f64) -> f64 {
    let mut now = 0.0;
    for tenant in shared.all_tenants() {
        let mut world = tenant.world.lock().expect("world lock");
        let mut account = tenant.account.lock().expect("account lock");
        world.advance(&mut account, seconds);
        now = f64::max(now, world.now);
    }
    now
}

/// The access key id of a SigV4 `Authorization` header's credential.
fn access_key_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split('/').next())
        .map(str::to_string)
}

/// The region from a SigV4 `Authorization` header's credential scope; us-east-1 when unsigned.
fn region(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split('/').nth(2))
        .unwrap_or("us-east-1")
        .to_string()
}

/// The rate limits and faults a request meets before it is served (a delay, an error, or both).
async fn admit(
    account: &SharedAccount,
    service: &str,
    operation: &str,
    input: &Value,
    region: &str,
) -> Result<(), ApiError> {
    let fault = {
        let mut account = account.lock().expect("account lock");
        if let Err(error) = account.rate_limits.admit(region, service, operation) {
            account.record_call(service, operation);
            *account
                .throttled
                .entry(service.to_string())
                .or_default()
                .entry(operation.to_string())
                .or_default() += 1;
            tracing::debug!(
                service,
                operation,
                "throttled: over the configured request rate"
            );
            return Err(error);
        }
        if let Some(error) = account
            .random_faults
            .as_mut()
            .and_then(|faults| faults.draw(service))
        {
            account.record_call(service, operation);
            *account
                .injected
                .entry(service.to_string())
                .or_default()
                .entry(operation.to_string())
                .or_default() += 1;
            return Err(error);
        }
        account.take_fault(service, operation, input)
    };
    if let Some(fault) = &fault {
        if fault.delay_seconds > 0.0 {
            tokio::time::sleep(std::time::Duration::from_secs_f64(fault.delay_seconds)).await;
        }
        if let Some(error) = fault.error() {
            account
                .lock()
                .expect("account lock")
                .record_call(service, operation);
            tracing::debug!(service, operation, code = %error.code, "injected AWS error");
            return Err(error);
        }
    }
    Ok(())
}

/// Serves one operation, after any fault injected for it.
async fn run(
    account: &SharedAccount,
    world: &SharedWorld,
    service: &str,
    operation: &str,
    input: &Value,
    region: &str,
) -> Result<Value, ApiError> {
    admit(account, service, operation, input, region).await?;
    let result = if service == "sagemaker" {
        // SageMaker's endpoints are the scaling model's.
        let world = world.lock().expect("world lock");
        let mut account = account.lock().expect("account lock");
        account.record_call(service, operation);
        crate::sagemaker::handle(&world, operation, input, region, &account.id)
    } else {
        account
            .lock()
            .expect("account lock")
            .handle(service, operation, input, region)
    };
    tracing::debug!(
        service,
        operation,
        ok = result.is_ok(),
        "simulated AWS call"
    );
    // AWS applies a new MinCapacity/MaxCapacity when the call returns, not at the next minute.
    if result.is_ok() && operation == "RegisterScalableTarget" {
        let mut world = world.lock().expect("world lock");
        let mut account = account.lock().expect("account lock");
        world.follow_configuration(&mut account);
    }
    result
}

async fn json_protocols(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if target.is_empty() && form {
        return security_token_service(&shared, &headers, &body).await;
    }
    let Tenant { account, world } = shared.tenant_of(&headers);
    let (service, json_version) = match target.split_once('.') {
        Some(("AnyScaleFrontendService", _)) => ("application-autoscaling", "1.1"),
        Some(("ServiceQuotasV20190624", _)) => ("service-quotas", "1.1"),
        Some(("SageMaker", _)) => ("sagemaker", "1.1"),
        Some(("GraniteServiceVersion20100801", _)) => ("cloudwatch", "1.0"),
        _ => {
            let error = ApiError::new(
                "UnknownOperationException",
                format!("unsupported X-Amz-Target {target:?}"),
            );
            return json_error(&error, "1.1", false);
        }
    };
    let operation = target.split_once('.').map(|(_, op)| op).unwrap_or_default();
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return json_error(
                    &ApiError::new("SerializationException", format!("invalid JSON body: {e}")),
                    json_version,
                    false,
                );
            }
        }
    };
    let received_at = crate::account::now();
    let result = run(
        &account,
        &world,
        service,
        operation,
        &input,
        &region(&headers),
    )
    .await;
    shared.log_call(
        &headers,
        received_at,
        &account,
        service,
        operation,
        &input,
        result.as_ref().err(),
    );
    match result {
        Ok(output) => {
            let content_type = format!("application/x-amz-json-{json_version}");
            ([(header::CONTENT_TYPE, content_type)], output.to_string()).into_response()
        }
        Err(error) => json_error(&error, json_version, service == "cloudwatch"),
    }
}

/// STS over awsQuery: the form's `Action` names the operation. Faults and calls are the
/// caller's account's (`/_sim/faults` with `"service": "sts"`).
async fn security_token_service(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let xml = |status: StatusCode, body: String| {
        (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
    };
    let error = |e: &ApiError| {
        xml(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            crate::sts::error_xml(e),
        )
    };
    let input: BTreeMap<String, String> = match serde_urlencoded::from_bytes(body) {
        Ok(input) => input,
        Err(e) => return error(&ApiError::new("MalformedQueryString", e.to_string())),
    };
    let operation = input.get("Action").cloned().unwrap_or_default();
    let caller = shared.tenant_of(headers);
    let as_json = json!(input);
    let received_at = crate::account::now();
    let admitted = admit(
        &caller.account,
        "sts",
        &operation,
        &as_json,
        &region(headers),
    )
    .await;
    let result = admitted.and_then(|()| {
        caller
            .account
            .lock()
            .expect("account lock")
            .record_call("sts", &operation);
        let now = crate::account::now() as i64;
        let key = access_key_id(headers);
        shared
            .roles
            .lock()
            .expect("roles lock")
            .handle(&operation, &input, key.as_deref(), now)
    });
    shared.log_call(
        headers,
        received_at,
        &caller.account,
        "sts",
        &operation,
        &as_json,
        result.as_ref().err(),
    );
    match result {
        Ok(body) => xml(StatusCode::OK, body),
        Err(e) => error(&e),
    }
}

async fn admin_declare_role(State(shared): State<Shared>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad_request(
            "expected JSON such as {\"arn\": \"arn:aws:iam::222222222222:role/x\"}".into(),
        );
    };
    let Some(arn) = v.get("arn").and_then(Value::as_str) else {
        return bad_request("arn is required".into());
    };
    let external_id = v
        .get("externalId")
        .and_then(Value::as_str)
        .map(str::to_string);
    shared
        .roles
        .lock()
        .expect("roles lock")
        .declare(arn.to_string(), external_id);
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_log(
    State(shared): State<Shared>,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    // A since= that does not parse must not read as 0 (the whole log, as if nothing was seen).
    let number = |field: &str, default: u64| {
        match query.get(field) {
        None => Ok(default),
        Some(text) => text.parse::<u64>().map_err(|_| {
            format!(
                "{field}={text:?}: expected a whole number of at least 0 (since: the last seq read, 0 for the start; limit: how many entries at most)"
            )
        }),
    }
    };
    let since = match number("since", 0) {
        Ok(since) => since,
        Err(refused) => return bad_request(refused),
    };
    let limit = match number("limit", 10_000) {
        Ok(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
        Err(refused) => return bad_request(refused),
    };
    let log = shared.log.lock().expect("log lock");
    let body = json!({"dropped": log.dropped, "entries": log.since(since, limit)});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn admin_sessions(State(shared): State<Shared>) -> Response {
    let roles = shared.roles.lock().expect("roles lock");
    let sessions: Vec<Value> = roles
        .sessions
        .iter()
        .map(|(key, session)| session.snapshot(key))
        .collect();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!(sessions).to_string(),
    )
        .into_response()
}

fn json_error(error: &ApiError, json_version: &str, query_compatible: bool) -> Response {
    let mut response = (
        StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST),
        [(
            header::CONTENT_TYPE,
            format!("application/x-amz-json-{json_version}"),
        )],
        json!({ "__type": error.code, "message": error.message }).to_string(),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&error.code) {
        headers.insert("x-amzn-errortype", v);
    }
    if query_compatible {
        insert_query_error(headers, error);
    }
    response
}

fn insert_query_error(headers: &mut HeaderMap, error: &ApiError) {
    let fault = if error.is_sender_fault() {
        "Sender"
    } else {
        "Receiver"
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{};{fault}", error.code)) {
        headers.insert("x-amzn-query-error", v);
    }
}

async fn cloudwatch_cbor(
    State(shared): State<Shared>,
    Path(operation): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Tenant { account, world } = shared.tenant_of(&headers);
    let received_at = crate::account::now();
    let result = match cbor::decode(&body) {
        Err(e) => Err(ApiError::new("SerializationException", e.to_string())),
        Ok(input) => {
            let result = run(
                &account,
                &world,
                "cloudwatch",
                &operation,
                &input,
                &region(&headers),
            )
            .await;
            shared.log_call(
                &headers,
                received_at,
                &account,
                "cloudwatch",
                &operation,
                &input,
                result.as_ref().err(),
            );
            result
        }
    };
    let (status, body, error) = match result {
        Ok(output) => (StatusCode::OK, cbor::encode(&output), None),
        Err(error) => (
            StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST),
            cbor::encode(&json!({ "__type": error.code, "message": error.message })),
            Some(error),
        ),
    };
    let mut response = (status, [(header::CONTENT_TYPE, "application/cbor")], body).into_response();
    let headers = response.headers_mut();
    headers.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    if let Some(error) = error {
        insert_query_error(headers, &error);
    }
    response
}

async fn admin_state(
    Tenant { account, .. }: Tenant,
    axum::extract::Query(query): axum::extract::Query<std::collections::BTreeMap<String, String>>,
) -> Response {
    let region = query.get("region").map_or(DEFAULT_REGION, String::as_str);
    let snapshot = account.lock().expect("account lock").snapshot(region);
    (
        [(header::CONTENT_TYPE, "application/json")],
        snapshot.to_string(),
    )
        .into_response()
}

async fn admin_calls(Tenant { account, .. }: Tenant) -> Response {
    let calls = account.lock().expect("account lock").calls.clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!(calls).to_string(),
    )
        .into_response()
}

async fn admin_injected(Tenant { account, .. }: Tenant) -> Response {
    let injected = account.lock().expect("account lock").injected.clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!(injected).to_string(),
    )
        .into_response()
}

async fn admin_throttles(Tenant { account, .. }: Tenant) -> Response {
    let throttled = account.lock().expect("account lock").throttled.clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!(throttled).to_string(),
    )
        .into_response()
}

/// Into `?region=R` (default us-east-1), not whichever region the last request selected.
async fn admin_add_activity(
    Tenant { account, .. }: Tenant,
    axum::extract::Query(query): axum::extract::Query<std::collections::BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let region = query.get("region").map_or(DEFAULT_REGION, String::as_str);
    match serde_json::from_slice::<Activity>(&body) {
        Ok(activity) => {
            let mut account = account.lock().expect("account lock");
            account.select_region(region);
            account.add_activity(activity);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid activity: {e}")).into_response(),
    }
}

async fn admin_set_quotas(Tenant { account, .. }: Tenant, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "expected JSON").into_response();
    };
    let mut account = account.lock().expect("account lock");
    let quotas = &mut account.quotas;
    for (field, table) in [
        ("applied", &mut quotas.applied),
        ("defaults", &mut quotas.defaults),
    ] {
        for (instance_type, value) in v
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let name = if instance_type.contains(' ') {
                instance_type.clone()
            } else {
                format!("{instance_type} for endpoint usage")
            };
            match value.as_f64() {
                Some(n) => table.insert(name, n),
                None => table.remove(&name),
            };
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_add_fault(Tenant { account, .. }: Tenant, body: Bytes) -> Response {
    let mut fault = match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => fault,
        Err(e) => return bad_request(format!("invalid fault: {e}")),
    };
    // Each bound named with the value given: "between 0 and 3600" alone leaves the reader to
    // guess which field was wrong.
    for (field, seconds) in [
        ("delaySeconds", fault.delay_seconds),
        ("holdSeconds", fault.hold_seconds),
    ] {
        if !(0.0..=3600.0).contains(&seconds) {
            return bad_request(format!(
                "{field} is {seconds}: it must be between 0 and 3600 (seconds)"
            ));
        }
    }
    if fault.code.is_none() && fault.delay_seconds == 0.0 && fault.hold_seconds == 0.0 {
        return bad_request(
            "a fault needs a code (an AWS error to answer), delaySeconds or holdSeconds".into(),
        );
    }
    // When a hold ends is the endpoint's to set, from holdSeconds: a holdUntil in the request
    // would make a hold without the 3600 s bound, or one that never lifts.
    fault.hold_until =
        (fault.hold_seconds > 0.0).then(|| crate::account::now() + fault.hold_seconds);
    account.lock().expect("account lock").faults.push(fault);
    StatusCode::NO_CONTENT.into_response()
}

/// `{"rate": 0.3, "seed": 1}`: answer that share of all requests with passing errors (0: none).
async fn admin_fault_rate(Tenant { account, .. }: Tenant, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("expected JSON such as {\"rate\": 0.3}".into());
    };
    let Some(rate) = v
        .get("rate")
        .and_then(Value::as_f64)
        .filter(|r| (0.0..=1.0).contains(r))
    else {
        return bad_request("rate must be a number from 0 to 1, e.g. {\"rate\": 0.3}".into());
    };
    let seed = v.get("seed").and_then(Value::as_u64).unwrap_or(1);
    account.lock().expect("account lock").random_faults =
        (rate > 0.0).then(|| crate::account::RandomFaults::new(rate, seed));
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_faults(Tenant { account, .. }: Tenant) -> Response {
    let faults = account.lock().expect("account lock").faults.clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!(faults).to_string(),
    )
        .into_response()
}

async fn admin_clear_faults(Tenant { account, .. }: Tenant) -> Response {
    account.lock().expect("account lock").faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}

async fn admin_declare_endpoint(shared: Tenant, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("expected JSON".into());
    };
    let Some(endpoint) = v.get("endpoint").and_then(Value::as_str) else {
        return bad_request("endpoint is required".into());
    };
    let Some(instance_type) = v.get("instanceType").and_then(Value::as_str) else {
        return bad_request("instanceType is required".into());
    };
    let spec = EndpointSpec {
        endpoint: endpoint.to_string(),
        variant: v
            .get("variant")
            .and_then(Value::as_str)
            .unwrap_or("AllTraffic")
            .to_string(),
        instance_type: instance_type.to_string(),
        throughput_per_minute: v
            .get("throughputPerMinute")
            .and_then(Value::as_f64)
            .unwrap_or(6.0),
        initial_instances: v.get("instances").and_then(Value::as_u64).unwrap_or(0) as u32,
        load: None,
        asynchronous: v
            .get("asynchronous")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    };
    let mut world = shared.world.lock().expect("world lock");
    if world.endpoint_mut(endpoint).is_some() {
        return bad_request(format!("endpoint {endpoint} is already declared"));
    }
    world.add_endpoint(spec);
    StatusCode::NO_CONTENT.into_response()
}

/// `DELETE /_sim/endpoints?endpoint=NAME`: the endpoint is deleted, as DeleteEndpoint does:
/// Application Auto Scaling deregisters its scalable target (with the target's policies and
/// scheduled actions) without telling anyone; CloudWatch alarms stay
/// (https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-delete-with-scaling.html).
async fn admin_delete_endpoint(
    shared: Tenant,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    let Some(endpoint) = query.get("endpoint") else {
        return bad_request("endpoint=NAME is required".into());
    };
    let mut world = shared.world.lock().expect("world lock");
    let Some(resource_id) = world.remove_endpoint(endpoint) else {
        return (StatusCode::NOT_FOUND, format!("no endpoint {endpoint:?}")).into_response();
    };
    let region = world.region.clone();
    let mut account = shared.account.lock().expect("account lock");
    // Not registered is fine: the endpoint had no scaling.
    let _ = account.handle(
        "application-autoscaling",
        "DeregisterScalableTarget",
        &json!({
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource_id,
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        }),
        &region,
    );
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_enqueue(shared: Tenant, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("expected JSON".into());
    };
    let endpoint = v
        .get("endpoint")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let count = v.get("count").and_then(Value::as_f64).unwrap_or(0.0);
    let mut world = shared.world.lock().expect("world lock");
    let now = world.now;
    match world.endpoint_mut(endpoint) {
        Some(e) => {
            e.enqueue(now, count.max(0.0).floor());
            StatusCode::NO_CONTENT.into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            format!("no endpoint {endpoint:?}; declare it with POST /_sim/endpoints"),
        )
            .into_response(),
    }
}

async fn admin_advance(State(shared): State<Shared>, body: Bytes) -> Response {
    let seconds = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("seconds").and_then(Value::as_f64));
    let Some(seconds) = seconds.filter(|s| *s >= 0.0 && *s <= 7.0 * 86_400.0) else {
        return bad_request("expected {\"seconds\": N} with 0 <= N <= 604800".into());
    };
    // One clock for every account.
    let now = advance_all(&shared, seconds);
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "now": now }).to_string(),
    )
        .into_response()
}

async fn admin_endpoints(shared: Tenant) -> Response {
    let world = shared.world.lock().expect("world lock");
    let endpoints: Vec<Value> = world.endpoints.iter().map(|e| e.snapshot()).collect();
    let body = json!({ "now": world.now, "endpoints": endpoints });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
