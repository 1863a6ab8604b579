//! What the services share in reading a request and shaping its answer: fields read as AWS
//! validates them, and pages with a NextToken.

use serde_json::{Value, json};

use crate::aws_error::ApiError;
use crate::validation::Service;

pub(super) const AAS: Service = Service::ApplicationAutoScaling;
pub(super) const CW: Service = Service::CloudWatch;

pub(super) fn s<'a>(input: &'a Value, field: &str) -> Option<&'a str> {
    input.get(field).and_then(Value::as_str)
}

pub(crate) fn required<'a>(input: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    s(input, field).filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::new("ValidationException", format!("1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null", lower_first(field)))
    })
}

pub(super) fn lower_first(field: &str) -> String {
    let mut chars = field.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

pub(super) fn int(input: &Value, field: &str) -> Option<i64> {
    input
        .get(field)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

pub(super) fn string_list(input: &Value, field: &str) -> Vec<String> {
    input
        .get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Pages `items` with an opaque numeric NextToken.
pub(super) fn page(
    items: Vec<Value>,
    input: &Value,
    max_field: &str,
    default_max: usize,
    limit: usize,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    // CloudWatch's only paged call here uses MaxRecords; its constraint errors are ValidationError.
    let code = if max_field == "MaxRecords" {
        "ValidationError"
    } else {
        "ValidationException"
    };
    let max = match int(input, max_field) {
        Some(n) if n < 1 || n as usize > limit => {
            return Err(ApiError::new(
                code,
                format!(
                    "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: Member must have value between 1 and {limit}",
                    lower_first(max_field)
                ),
            ));
        }
        Some(n) => n as usize,
        None => default_max,
    };
    let start = match s(input, "NextToken") {
        None | Some("") => 0,
        Some(token) => token.parse::<usize>().map_err(|_| {
            ApiError::new(
                "InvalidNextTokenException",
                "The next token supplied was invalid.",
            )
        })?,
    };
    let end = (start + max).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items.into_iter().skip(start).take(max).collect(), next))
}

pub(super) fn with_token(mut v: Value, next: Option<String>) -> Value {
    if let Some(token) = next {
        v["NextToken"] = json!(token);
    }
    v
}
