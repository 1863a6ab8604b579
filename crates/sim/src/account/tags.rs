//! AWS's tag rules, shared by Application Auto Scaling and CloudWatch.

use std::collections::BTreeMap;

use serde_json::Value;

use super::input::s;
use crate::aws_error::ApiError;

/// Application Auto Scaling's tag map (`{"key": "value"}`).
pub(super) fn aas_tags(input: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let mut tags = BTreeMap::new();
    for (k, v) in input
        .get("Tags")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let v = v.as_str().ok_or_else(|| {
            ApiError::new(
                "ValidationException",
                format!("The value of tag {k} must be a string"),
            )
        })?;
        tags.insert(k.clone(), v.to_string());
    }
    Ok(tags)
}

/// CloudWatch's tag list (`[{"Key": k, "Value": v}]`).
pub(super) fn cw_tags(input: &Value) -> BTreeMap<String, String> {
    input
        .get("Tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| Some((s(t, "Key")?.to_string(), s(t, "Value")?.to_string())))
        .collect()
}

pub(super) enum TagProblem {
    TooMany,
    Invalid,
}

/// AWS's tag rules, the same for Application Auto Scaling and CloudWatch (API references of
/// TagResource and Tag): at most 50 tags a resource, keys of 1-128 characters and values of at
/// most 256, and no key starting with `aws:` (reserved for AWS).
pub(super) fn check_tags(
    tags: &BTreeMap<String, String>,
    field: &str,
) -> Result<(), (TagProblem, String)> {
    if tags.len() > 50 {
        return Err((
            TagProblem::TooMany,
            format!(
                "A resource can have at most 50 tags; this request would give it {}",
                tags.len()
            ),
        ));
    }
    for (key, value) in tags {
        let problem = if key.is_empty() || key.chars().count() > 128 {
            Some("Member must have length between 1 and 128 (tag key)")
        } else if value.chars().count() > 256 {
            Some("Member must have length less than or equal to 256 (tag value)")
        } else if key.to_ascii_lowercase().starts_with("aws:") {
            Some("Tag keys starting with 'aws:' are reserved for AWS use")
        } else {
            None
        };
        if let Some(problem) = problem {
            let shown: String = key.chars().take(64).collect();
            return Err((
                TagProblem::Invalid,
                format!(
                    "1 validation error detected: Value at '{field}' failed to satisfy constraint: {problem}: {shown}"
                ),
            ));
        }
    }
    Ok(())
}
