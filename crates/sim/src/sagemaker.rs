//! SageMaker's endpoint reads, answered from the scaling model's endpoints (declared with
//! `POST /_sim/endpoints`): DescribeEndpoint, DescribeEndpointConfig and ListEndpoints. AWS JSON
//! 1.1, `X-Amz-Target: SageMaker.<Operation>`, signing name `sagemaker` (botocore's service model;
//! the same header as aws-sdk-go-v2's `SageMaker.CreateEndpoint` in terraform-provider-aws#40080).
//!
//! Shapes follow the SageMaker API Reference:
//! - DescribeEndpoint: `EndpointName`, `EndpointArn`, `EndpointConfigName`, `EndpointStatus`,
//!   `CreationTime`, `LastModifiedTime`, `ProductionVariants[]` with `VariantName`,
//!   `CurrentInstanceCount`, `DesiredInstanceCount`, `CurrentWeight`, `DesiredWeight`, and
//!   `AsyncInferenceConfig` when the configuration has one.
//! - DescribeEndpointConfig: `EndpointConfigName`, `EndpointConfigArn`, `CreationTime`,
//!   `ProductionVariants[]` with `VariantName`, `ModelName`, `InstanceType`,
//!   `InitialInstanceCount`, `InitialVariantWeight`, and `AsyncInferenceConfig`.
//! - ListEndpoints: `Endpoints[]` of `EndpointName`, `EndpointArn`, `CreationTime`,
//!   `LastModifiedTime`, `EndpointStatus`; `MaxResults` 1–100 (default 10), `NextToken`,
//!   `SortBy` (`Name`, `CreationTime` default, `Status`), `SortOrder` (`Descending` default),
//!   `NameContains`, `StatusEquals`.
//!
//! A missing endpoint is a ValidationException `Could not find endpoint "<ARN>".`, the ARN with the
//! name lowercased (observed: aws/amazon-sagemaker-examples#2402 for the message, #293 for the
//! lowercased ARN next to the name as written).
//!
//! Status: `Updating` while instances the model asked for are still starting (Application Auto
//! Scaling changes the count through UpdateEndpointWeightsAndCapacities, which updates the
//! endpoint), otherwise `InService`. ASSUMPTION: the model has no creating, failed or deleting
//! endpoints.

use serde_json::{Value, json};

use crate::account::{partition, required};
use crate::aws_error::{ApiError, ApiResult};
use crate::model::{EndpointSim, World};

pub fn handle(
    world: &World,
    operation: &str,
    input: &Value,
    region: &str,
    account: &str,
) -> ApiResult {
    // Endpoints are regional: the model's live in the world's region.
    let endpoints: &[EndpointSim] = if region == world.region {
        &world.endpoints
    } else {
        &[]
    };
    match operation {
        "DescribeEndpoint" => {
            let name = required(input, "EndpointName")?;
            let e = find(endpoints, name)
                .ok_or_else(|| not_found("endpoint", &endpoint_arn(account, region, name)))?;
            Ok(describe_endpoint(world, e, region, account))
        }
        "DescribeEndpointConfig" => {
            let name = required(input, "EndpointConfigName")?;
            let e = endpoints
                .iter()
                .find(|e| config_name(e) == name)
                .ok_or_else(|| {
                    not_found("endpoint configuration", &config_arn(account, region, name))
                })?;
            Ok(describe_config(world, e, region, account))
        }
        "ListEndpoints" => list_endpoints(world, endpoints, input, region, account),
        _ => Err(ApiError::new(
            "UnknownOperationException",
            format!("sagemaker {operation} is not supported by the asyncscale simulator"),
        )),
    }
}

fn find<'a>(endpoints: &'a [EndpointSim], name: &str) -> Option<&'a EndpointSim> {
    endpoints.iter().find(|e| e.spec.endpoint == name)
}

fn not_found(what: &str, arn: &str) -> ApiError {
    ApiError::new(
        "ValidationException",
        format!("Could not find {what} \"{arn}\"."),
    )
}

fn endpoint_arn(account: &str, region: &str, name: &str) -> String {
    format!(
        "arn:{}:sagemaker:{region}:{account}:endpoint/{}",
        partition(region),
        name.to_lowercase()
    )
}

fn config_arn(account: &str, region: &str, name: &str) -> String {
    format!(
        "arn:{}:sagemaker:{region}:{account}:endpoint-config/{}",
        partition(region),
        name.to_lowercase()
    )
}

/// ASSUMPTION: each model endpoint has its own configuration, named after it.
fn config_name(e: &EndpointSim) -> String {
    format!("{}-config", e.spec.endpoint)
}

fn status(e: &EndpointSim) -> &'static str {
    if e.in_service < e.desired {
        "Updating"
    } else {
        "InService"
    }
}

fn async_config(e: &EndpointSim) -> Option<Value> {
    e.spec.asynchronous.then(|| {
        json!({ "OutputConfig": { "S3OutputPath": format!("s3://asyncscale-sim/{}/output", e.spec.endpoint) } })
    })
}

fn describe_endpoint(world: &World, e: &EndpointSim, region: &str, account: &str) -> Value {
    let mut out = json!({
        "EndpointName": e.spec.endpoint,
        "EndpointArn": endpoint_arn(account, region, &e.spec.endpoint),
        "EndpointConfigName": config_name(e),
        "EndpointStatus": status(e),
        "CreationTime": world.epoch,
        "LastModifiedTime": world.epoch + e.last_modified_s,
        "ProductionVariants": [{
            "VariantName": e.spec.variant,
            "CurrentWeight": 1.0,
            "DesiredWeight": 1.0,
            "CurrentInstanceCount": e.in_service,
            "DesiredInstanceCount": e.desired,
        }],
    });
    if let Some(config) = async_config(e) {
        out["AsyncInferenceConfig"] = config;
    }
    out
}

fn describe_config(world: &World, e: &EndpointSim, region: &str, account: &str) -> Value {
    let name = config_name(e);
    let mut out = json!({
        "EndpointConfigName": name,
        "EndpointConfigArn": config_arn(account, region, &name),
        "CreationTime": world.epoch,
        "ProductionVariants": [{
            "VariantName": e.spec.variant,
            "ModelName": format!("{}-model", e.spec.endpoint),
            "InstanceType": e.spec.instance_type,
            "InitialInstanceCount": e.spec.initial_instances.max(1),
            "InitialVariantWeight": 1.0,
        }],
    });
    if let Some(config) = async_config(e) {
        out["AsyncInferenceConfig"] = config;
    }
    out
}

fn list_endpoints(
    world: &World,
    endpoints: &[EndpointSim],
    input: &Value,
    region: &str,
    account: &str,
) -> ApiResult {
    let max = match input.get("MaxResults").and_then(Value::as_i64) {
        Some(n) if !(1..=100).contains(&n) => {
            return Err(ApiError::new(
                "ValidationException",
                format!(
                    "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 100"
                ),
            ));
        }
        Some(n) => n as usize,
        None => 10,
    };
    let contains = input.get("NameContains").and_then(Value::as_str);
    let status_equals = input.get("StatusEquals").and_then(Value::as_str);
    let mut listed: Vec<&EndpointSim> = endpoints
        .iter()
        .filter(|e| contains.is_none_or(|c| e.spec.endpoint.contains(c)))
        .filter(|e| status_equals.is_none_or(|s| status(e) == s))
        .collect();
    match input.get("SortBy").and_then(Value::as_str) {
        Some("Name") => listed.sort_by(|a, b| a.spec.endpoint.cmp(&b.spec.endpoint)),
        Some("Status") => listed.sort_by_key(|e| status(e)),
        // Every model endpoint was created at the start: creation order is declaration order.
        _ => {}
    }
    if input.get("SortOrder").and_then(Value::as_str) != Some("Ascending") {
        listed.reverse();
    }
    let start = match input.get("NextToken").and_then(Value::as_str) {
        Some(token) => token
            .strip_prefix("sim-endpoints-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= listed.len())
            .ok_or_else(|| ApiError::new("ValidationException", "Invalid pagination token"))?,
        None => 0,
    };
    let page: Vec<Value> = listed
        .iter()
        .skip(start)
        .take(max)
        .map(|e| {
            json!({
                "EndpointName": e.spec.endpoint,
                "EndpointArn": endpoint_arn(account, region, &e.spec.endpoint),
                "CreationTime": world.epoch,
                "LastModifiedTime": world.epoch + e.last_modified_s,
                "EndpointStatus": status(e),
            })
        })
        .collect();
    let mut out = json!({ "Endpoints": page });
    if start + max < listed.len() {
        out["NextToken"] = json!(format!("sim-endpoints-{}", start + max));
    }
    Ok(out)
}
