//! AWS JSON 1.1 (Application Auto Scaling, Service Quotas, SageMaker) and 1.0 (CloudWatch):
//! `POST /` with `X-Amz-Target`, and AWS's JSON error shape; a form without a target is STS's.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::operation::run;
use super::query::security_token_service;
use super::tenants::{Shared, Tenant, region};
use crate::account::ApiError;

pub(super) async fn json_protocols(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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

pub(super) fn insert_query_error(headers: &mut HeaderMap, error: &ApiError) {
    let fault = if error.is_sender_fault() {
        "Sender"
    } else {
        "Receiver"
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{};{fault}", error.code)) {
        headers.insert("x-amzn-query-error", v);
    }
}
