//! The admin routes under `/_sim/` (listed in the module documentation of [`super`]): what tests
//! read and set of an account, and how they drive its scaling model.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::tenants::{Shared, Tenant, advance_all};
use crate::account::{Activity, DEFAULT_REGION, Fault};
use crate::model::EndpointSpec;

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

pub(super) async fn admin_state(
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

pub(super) async fn admin_calls(Tenant { account, .. }: Tenant) -> Response {
    let calls = account.lock().expect("account lock").calls.clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!(calls).to_string(),
    )
        .into_response()
}

pub(super) async fn admin_injected(Tenant { account, .. }: Tenant) -> Response {
    let injected = account.lock().expect("account lock").injected.clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!(injected).to_string(),
    )
        .into_response()
}

pub(super) async fn admin_throttles(Tenant { account, .. }: Tenant) -> Response {
    let throttled = account.lock().expect("account lock").throttled.clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!(throttled).to_string(),
    )
        .into_response()
}

/// Into `?region=R` (default us-east-1), not whichever region the last request selected.
pub(super) async fn admin_add_activity(
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

pub(super) async fn admin_set_quotas(Tenant { account, .. }: Tenant, body: Bytes) -> Response {
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

pub(super) async fn admin_add_fault(Tenant { account, .. }: Tenant, body: Bytes) -> Response {
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
pub(super) async fn admin_fault_rate(Tenant { account, .. }: Tenant, body: Bytes) -> Response {
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

pub(super) async fn admin_faults(Tenant { account, .. }: Tenant) -> Response {
    let faults = account.lock().expect("account lock").faults.clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!(faults).to_string(),
    )
        .into_response()
}

pub(super) async fn admin_clear_faults(Tenant { account, .. }: Tenant) -> Response {
    account.lock().expect("account lock").faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}

pub(super) async fn admin_declare_endpoint(shared: Tenant, body: Bytes) -> Response {
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
pub(super) async fn admin_delete_endpoint(
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

pub(super) async fn admin_enqueue(shared: Tenant, body: Bytes) -> Response {
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

pub(super) async fn admin_advance(State(shared): State<Shared>, body: Bytes) -> Response {
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

pub(super) async fn admin_endpoints(shared: Tenant) -> Response {
    let world = shared.world.lock().expect("world lock");
    let endpoints: Vec<Value> = world.endpoints.iter().map(|e| e.snapshot()).collect();
    let body = json!({ "now": world.now, "endpoints": endpoints });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) async fn admin_declare_role(State(shared): State<Shared>, body: Bytes) -> Response {
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

pub(super) async fn admin_log(
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

pub(super) async fn admin_sessions(State(shared): State<Shared>) -> Response {
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
