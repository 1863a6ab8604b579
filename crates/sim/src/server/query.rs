//! STS over awsQuery: `POST /`, form-encoded, answered in XML.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::operation::admit;
use super::tenants::{Shared, access_key_id, region};
use crate::account::ApiError;

/// STS over awsQuery: the form's `Action` names the operation. Faults and calls are the
/// caller's account's (`/_sim/faults` with `"service": "sts"`).
pub(super) async fn security_token_service(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
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
