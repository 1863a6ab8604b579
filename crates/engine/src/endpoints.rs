//! SageMaker's own state: the endpoint a resource scales, and the instances every endpoint of the
//! account holds of an instance type (what a shared quota is split against).

use std::collections::HashSet;
use std::sync::Arc;

use asyncscale_core::names::ALARM_PREFIX;
use asyncscale_core::{
    EndpointConfigState, EndpointReading, EndpointState, ObservedAlarm, ResourceNames,
};
use futures::StreamExt;

use crate::error::{AwsError, ErrorClass};
use crate::port::{AutoscalingBackend, Holding};

/// Endpoint descriptions read at once by a scan without a fleet view (the request budget paces
/// them further).
const SCAN_CONCURRENCY: usize = 8;

/// The endpoint and its configuration: DescribeEndpoint, then DescribeEndpointConfig (read once
/// per name by the fleet view and the SDK adapter).
pub async fn read_endpoint(
    backend: &dyn AutoscalingBackend,
    name: &str,
) -> Result<EndpointReading, AwsError> {
    let Some(endpoint) = backend.describe_endpoint(name).await? else {
        return Ok(EndpointReading::Missing);
    };
    let config = backend
        .describe_endpoint_config(&endpoint.config_name)
        .await?;
    Ok(EndpointReading::Found { endpoint, config })
}

/// Why an endpoint that ListEndpoints named counts as unreadable when DescribeEndpoint says it
/// does not exist.
pub const LISTED_NOT_FOUND: &str = "listed by ListEndpoints, then not found by DescribeEndpoint";

/// What a scan of every endpoint of the account and region read.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Each endpoint described, with its configuration (None: unreadable, or deleted).
    pub endpoints: Vec<(EndpointState, Option<EndpointConfigState>)>,
    /// Endpoints listed that could not be described for good (access denied to the name, say),
    /// with why: their instances are unknown.
    pub unreadable: Vec<(String, String)>,
}

/// Every endpoint of the account and region, described with its configuration: ListEndpoints,
/// then one DescribeEndpoint and one DescribeEndpointConfig per endpoint. One that cannot be
/// described (deleted while the scan runs included) is named in `unreadable`.
pub async fn scan_endpoints<B: AutoscalingBackend + ?Sized>(backend: &B) -> Result<Scan, AwsError> {
    let mut names = Vec::new();
    let mut next = None;
    loop {
        let page = backend.list_endpoints(next).await?;
        names.extend(page.items.into_iter().map(|s| s.name));
        match page.next {
            Some(token) => next = Some(token),
            None => break,
        }
    }
    type Described = Result<(EndpointState, Option<EndpointConfigState>), (String, String)>;
    let described: Vec<Result<Option<Described>, AwsError>> = futures::stream::iter(names)
        .map(|name| async move {
            // One that cannot be read for good (access denied to its name) is not a failure of
            // every resource's count, but its instances are unknown: named, so that no shared
            // cap is raised on a count that may be short.
            let endpoint = match backend.describe_endpoint(&name).await {
                Ok(Some(endpoint)) => endpoint,
                // Deleted since it was listed, or a wrong answer: which, only the next list
                // says. Until then its instances are unknown, not none.
                Ok(None) => {
                    tracing::warn!(endpoint = %name, "SageMaker endpoint listed but not found when described: its instances are unknown until the next scan, so no shared instance cap is raised");
                    return Ok(Some(Err((name, LISTED_NOT_FOUND.to_string()))));
                }
                Err(e) if e.class == ErrorClass::Recoverable => return Err(e),
                Err(e) => {
                    tracing::warn!(endpoint = %name, error = %e, "SageMaker endpoint unreadable: its instances are unknown, so no shared instance cap is raised until it can be read");
                    return Ok(Some(Err((name, e.to_string()))));
                }
            };
            let config = match backend.describe_endpoint_config(&endpoint.config_name).await {
                Ok(config) => config,
                Err(e) if e.class == ErrorClass::Recoverable => return Err(e),
                Err(e) => {
                    tracing::warn!(endpoint = %name, error = %e, "endpoint configuration unreadable: its instances count against every instance quota");
                    None
                }
            };
            Ok(Some(Ok((endpoint, config))))
        })
        .buffer_unordered(SCAN_CONCURRENCY)
        .collect()
        .await;
    let mut scan = Scan::default();
    for d in described {
        match d? {
            Some(Ok(endpoint)) => scan.endpoints.push(endpoint),
            Some(Err(unread)) => scan.unreadable.push(unread),
            None => {}
        }
    }
    scan.endpoints
        .sort_by(|a, b| a.0.summary.name.cmp(&b.0.summary.name));
    scan.unreadable.sort();
    Ok(scan)
}

/// The default [`AutoscalingBackend::instance_usage`]: a full scan.
pub async fn scan_usage<B: AutoscalingBackend + ?Sized>(
    backend: &B,
    instance_type: &str,
) -> Result<Vec<Holding>, AwsError> {
    let scan = scan_endpoints(backend).await?;
    Ok(scan_holdings(&scan, instance_type))
}

/// The holdings of `instance_type` in a scan, its unreadable endpoints included.
pub fn scan_holdings(scan: &Scan, instance_type: &str) -> Vec<Holding> {
    unreadable(
        holdings(
            scan.endpoints.iter().map(|(e, c)| (e, c.as_ref())),
            instance_type,
        ),
        scan.unreadable
            .iter()
            .map(|(n, why)| (n.as_str(), why.as_str())),
    )
}

/// Marks the holdings of endpoints that could not be described (`name`, why). Such an endpoint
/// may hold any type, so one without a last known holding of this type gets one of no known
/// instances: either way, the split knows a count may be short, and raises no cap on it.
pub fn unreadable<'a>(
    mut held: Vec<Holding>,
    endpoints: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<Holding> {
    for (name, why) in endpoints {
        let prefix = format!("endpoint/{name}/variant/");
        let mut known = false;
        for h in held
            .iter_mut()
            .filter(|h| h.resource_id.starts_with(&prefix))
        {
            h.unread = Some(why.to_string());
            known = true;
        }
        if !known {
            held.push(Holding {
                resource_id: format!("endpoint/{name}"),
                instances: 0,
                scaling_out: false,
                asynchronous: false,
                unread: Some(why.to_string()),
            });
        }
    }
    held
}

/// The variants of `endpoints` that run `instance_type`, and those whose configuration is unknown
/// (unreadable or deleted), which may; every other variant too, holding none of it.
pub fn holdings<'a>(
    endpoints: impl IntoIterator<Item = (&'a EndpointState, Option<&'a EndpointConfigState>)>,
    instance_type: &str,
) -> Vec<Holding> {
    let mut held = Vec::new();
    for (endpoint, config) in endpoints {
        for variant in &endpoint.variants {
            // An endpoint whose configuration cannot be read may use any type: its instances
            // count against every quota, never shared (counting them nowhere could let a share
            // exceed the quota).
            let resource_id = ResourceNames::new(&endpoint.summary.name, &variant.name).resource_id;
            if config.is_some_and(|c| c.instance_type(&variant.name) != Some(instance_type)) {
                // Of another type: it holds none of this one and can share none of it, but it
                // exists (a resource on a missing endpoint keeps a share; one on this variant
                // cannot scale it and takes none).
                held.push(Holding {
                    resource_id,
                    instances: 0,
                    scaling_out: false,
                    asynchronous: false,
                    unread: None,
                });
                continue;
            }
            let current = variant.current_instances.unwrap_or(0).max(0);
            let desired = variant.desired_instances.unwrap_or(current).max(0);
            held.push(Holding {
                resource_id,
                instances: current.max(desired) as u32,
                scaling_out: desired > current,
                // Unknown: it may be; a resource on it keeps its share (a real-time endpoint's
                // resource writes nothing and is known to be one).
                asynchronous: config.is_none_or(|c| c.asynchronous),
                unread: None,
            });
        }
    }
    held
}

/// The default [`AutoscalingBackend::waiting_without_capacity`]: asyncscale's alarms, listed.
pub async fn list_waiting<B: AutoscalingBackend + ?Sized>(
    backend: &B,
) -> Result<Arc<HashSet<String>>, AwsError> {
    let mut alarms = Vec::new();
    let mut next = None;
    loop {
        let page = backend.list_alarms(ALARM_PREFIX, next).await?;
        alarms.extend(page.items);
        match page.next {
            Some(token) => next = Some(token),
            None => return Ok(Arc::new(firing(&alarms))),
        }
    }
}

/// The resource ids of asyncscale's alarms among `alarms` that are in ALARM.
pub fn firing<'a>(alarms: impl IntoIterator<Item = &'a ObservedAlarm>) -> HashSet<String> {
    alarms
        .into_iter()
        .filter(|a| a.state.as_deref() == Some("ALARM"))
        .filter_map(|a| ResourceNames::resource_id_of_alarm(&a.alarm.name))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use asyncscale_core::{EndpointSummary, VariantState};

    fn endpoint(name: &str, current: i32, desired: i32) -> EndpointState {
        EndpointState {
            summary: EndpointSummary {
                name: name.into(),
                status: "InService".into(),
                last_modified: String::new(),
            },
            config_name: format!("{name}-config"),
            failure_reason: None,
            variants: vec![VariantState {
                name: "AllTraffic".into(),
                current_instances: Some(current),
                desired_instances: Some(desired),
            }],
        }
    }

    /// An endpoint whose configuration cannot be read counts against every type's quota and
    /// shares none; a known one only against its own type.
    #[test]
    fn an_unknown_configuration_counts_against_every_quota() {
        let known = endpoint("known", 1, 2);
        let config = EndpointConfigState {
            name: "known-config".into(),
            asynchronous: true,
            variants: vec![("AllTraffic".into(), Some("ml.g5.xlarge".into()))],
        };
        let unknown = endpoint("unknown", 3, 3);
        let all = [(&known, Some(&config)), (&unknown, None)];
        let g4dn = holdings(all, "ml.g4dn.xlarge");
        let of = |held: &[Holding]| -> Vec<(String, u32, bool)> {
            held.iter()
                .map(|h| (h.resource_id.clone(), h.instances, h.asynchronous))
                .collect()
        };
        // The known g5 endpoint is there, holding no g4dn and sharing none.
        assert_eq!(
            of(&g4dn),
            [
                ("endpoint/known/variant/AllTraffic".to_string(), 0, false),
                ("endpoint/unknown/variant/AllTraffic".to_string(), 3, true),
            ]
        );
        let g5 = holdings(all, "ml.g5.xlarge");
        assert_eq!(g5.len(), 2);
        assert!(g5[0].scaling_out && g5[0].asynchronous && g5[0].instances == 2);
    }
}
