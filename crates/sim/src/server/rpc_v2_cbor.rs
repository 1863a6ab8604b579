//! CloudWatch over Smithy RPC v2 CBOR
//! (`POST /service/GraniteServiceVersion20100801/operation/<Op>`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::json::insert_query_error;
use super::operation::run;
use super::tenants::{Shared, Tenant, region};
use crate::account::ApiError;
use crate::cbor;

pub(super) async fn cloudwatch_cbor(
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
