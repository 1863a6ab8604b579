//! Whether the SageMaker endpoint a resource names can be scaled as the spec says. Each problem
//! stops every AWS write: a scalable target on a missing variant is refused by AWS, and policies on
//! an endpoint that is not asynchronous would never act (its backlog metrics never exist).

use asyncscale_api::AsyncEndpointScalingSpec;

use crate::conditions::Reason;
use crate::model::EndpointReading;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointProblem {
    NotFound {
        endpoint: String,
        /// Where it was looked for.
        region: String,
    },
    VariantNotFound {
        endpoint: String,
        variant: String,
        variants: Vec<String>,
    },
    NotAsynchronous {
        endpoint: String,
        config: String,
    },
    InstanceTypeMismatch {
        endpoint: String,
        variant: String,
        config: String,
        in_spec: String,
        in_config: String,
    },
}

impl EndpointProblem {
    pub fn reason(&self) -> Reason {
        match self {
            EndpointProblem::NotFound { .. } => Reason::EndpointNotFound,
            EndpointProblem::VariantNotFound { .. } => Reason::VariantNotFound,
            EndpointProblem::NotAsynchronous { .. } => Reason::NotAsynchronous,
            EndpointProblem::InstanceTypeMismatch { .. } => Reason::InstanceTypeMismatch,
        }
    }
}

impl std::fmt::Display for EndpointProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointProblem::NotFound { endpoint, region } => write!(
                f,
                "SageMaker endpoint {endpoint} does not exist in this account in {region}: nothing is written to AWS, and asyncscale looks again at every resync. Create the endpoint, or correct spec.endpointName (or spec.region)"
            ),
            EndpointProblem::VariantNotFound {
                endpoint,
                variant,
                variants,
            } => write!(
                f,
                "endpoint {endpoint} has no production variant {variant} (it has: {}): nothing is written to AWS. Correct spec.variantName",
                variants.join(", ")
            ),
            EndpointProblem::NotAsynchronous { endpoint, config } => write!(
                f,
                "endpoint {endpoint} is not an asynchronous endpoint (its configuration {config} has no AsyncInferenceConfig): it never publishes ApproximateBacklogSizePerInstance or HasBacklogWithoutCapacity, so scaling policies on them would never act. Nothing is written to AWS; point spec.endpointName at an asynchronous endpoint"
            ),
            EndpointProblem::InstanceTypeMismatch {
                endpoint,
                variant,
                config,
                in_spec,
                in_config,
            } => write!(
                f,
                "spec.instanceType is {in_spec}, but variant {variant} of endpoint {endpoint} runs {in_config} (configuration {config}): the quota of {in_spec} says nothing about {in_config}. Nothing is written to AWS; set spec.instanceType to {in_config}"
            ),
        }
    }
}

/// Checks the endpoint (read in `region`) against the spec. A configuration that cannot be read (SageMaker lets one
/// be deleted while an endpoint uses it) leaves the asynchronous setting and the instance type as
/// the spec says.
pub fn check_endpoint(
    spec: &AsyncEndpointScalingSpec,
    region: &str,
    reading: &EndpointReading,
) -> Result<(), EndpointProblem> {
    let endpoint = spec.endpoint_name.clone();
    let EndpointReading::Found {
        endpoint: state,
        config,
    } = reading
    else {
        return Err(EndpointProblem::NotFound {
            endpoint,
            region: region.to_string(),
        });
    };
    if state.variant(&spec.variant_name).is_none() {
        return Err(EndpointProblem::VariantNotFound {
            endpoint,
            variant: spec.variant_name.clone(),
            variants: state.variants.iter().map(|v| v.name.clone()).collect(),
        });
    }
    let Some(config) = config else {
        return Ok(());
    };
    if !config.asynchronous {
        return Err(EndpointProblem::NotAsynchronous {
            endpoint,
            config: config.name.clone(),
        });
    }
    match config.instance_type(&spec.variant_name) {
        Some(in_config) if in_config != spec.instance_type => {
            Err(EndpointProblem::InstanceTypeMismatch {
                endpoint,
                variant: spec.variant_name.clone(),
                config: config.name.clone(),
                in_spec: spec.instance_type.clone(),
                in_config: in_config.to_string(),
            })
        }
        _ => Ok(()),
    }
}
