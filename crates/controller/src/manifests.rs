//! Reading manifest files for the one-shot commands (`plan`, `apply`, `delete`, `simulate`, `sim
//! serve --endpoints-from`): every file checked before anything reaches AWS, and what is valid but
//! likely not meant said once.

use std::collections::BTreeMap;

use asyncscale_api::ParsedResource;
use asyncscale_core::ResourceNames;
use asyncscale_engine::{BackendSource, Place, Placement};

use crate::identity::display_name;

/// Reads every file, and only when all of them are valid does anything reach AWS. What is valid
/// but likely not meant is said on stderr once all are valid.
pub fn read_all(files: &[String]) -> Result<Vec<(String, ParsedResource)>, Vec<String>> {
    let mut resources = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let text = if file == "-" {
            std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())
        } else {
            std::fs::read_to_string(file).map_err(|e| e.to_string())
        };
        match text {
            Err(e) => problems.push(format!("{file}: cannot read: {e}")),
            Ok(text) => match asyncscale_api::parse_manifests(file, &text) {
                Ok(parsed) => resources.extend(parsed.into_iter().map(|p| (file.clone(), p))),
                Err(e) => problems.extend(e.problems),
            },
        }
    }
    if problems.is_empty() {
        for warning in warnings(&resources, k8s_openapi::jiff::Timestamp::now()) {
            eprintln!("warning: {warning}");
        }
        Ok(resources)
    } else {
        Err(problems)
    }
}

/// Schedules that will not run again. Whether a run is past depends on the day the command
/// runs, so it warns rather than refuses: the same file must not be valid one day and refused
/// the next, and the API server, which knows no clock, takes it.
fn warnings(
    resources: &[(String, ParsedResource)],
    now: k8s_openapi::jiff::Timestamp,
) -> Vec<String> {
    let mut out = Vec::new();
    for (file, parsed) in resources {
        for w in asyncscale_api::validate::schedule_warnings(&parsed.resource.spec, now) {
            out.push(format!(
                "{file}: document {} ({}): {w}",
                parsed.document,
                display_name(&parsed.resource)
            ));
        }
    }
    out
}

/// Two resources for one endpoint variant would fight over it. `default_region` is where a
/// resource without spec.region goes, so that it and an explicit `region:` of the same name are
/// seen as the same place.
pub(crate) fn duplicates(
    resources: &[(String, ParsedResource)],
    backends: &dyn BackendSource,
    default_region: Option<&str>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<(Option<Place>, String), String> = BTreeMap::new();
    for (file, parsed) in resources {
        let spec = &parsed.resource.spec;
        let place = backends.place_of(&Placement::of(spec), default_region);
        let key = (
            place,
            ResourceNames::new(&spec.endpoint_name, &spec.variant_name).resource_id,
        );
        let here = format!(
            "{file}: document {} ({})",
            parsed.document,
            display_name(&parsed.resource)
        );
        if let Some(first) = seen.insert(key.clone(), here.clone()) {
            problems.push(format!("{here}: spec.endpointName: {} is also managed by {first}; one resource per endpoint variant", key.1));
        }
    }
    problems
}
