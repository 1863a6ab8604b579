//! SageMaker instance quotas: names, codes and the `TYPE=N` flags that set them.

use crate::error::SimError;

/// Quota codes seen in real accounts (docs/aws-behaviour.md §5.2). Other names get a stable made-up
/// code of the same form, so clients must look codes up by name, as asyncscale does.
const KNOWN_CODES: &[(&str, &str)] = &[
    ("ml.g4dn.xlarge for endpoint usage", "L-B67CFA0C"),
    ("ml.g4dn.2xlarge for endpoint usage", "L-EA346344"),
    ("ml.g4dn.4xlarge for endpoint usage", "L-31522FA6"),
    ("ml.g4dn.8xlarge for endpoint usage", "L-7D28AD75"),
    ("ml.g4dn.12xlarge for endpoint usage", "L-07BEB181"),
    ("ml.g4dn.16xlarge for endpoint usage", "L-8679F6F3"),
    ("ml.g5.xlarge for endpoint usage", "L-1928E07B"),
    ("ml.g5.2xlarge for endpoint usage", "L-9614C779"),
    ("ml.g5.4xlarge for endpoint usage", "L-C1B9A48D"),
    ("ml.g5.8xlarge for endpoint usage", "L-065D610E"),
    ("ml.g5.12xlarge for endpoint usage", "L-65C4BD00"),
    ("ml.g5.16xlarge for endpoint usage", "L-962705EA"),
    ("ml.g5.24xlarge for endpoint usage", "L-6821867B"),
    ("ml.g5.48xlarge for endpoint usage", "L-0100B823"),
    ("ml.g6.xlarge for endpoint usage", "L-D470D954"),
    ("ml.g6e.xlarge for endpoint usage", "L-B0729CB4"),
    ("ml.p3.2xlarge for endpoint usage", "L-1623D0BE"),
    ("ml.p4d.24xlarge for endpoint usage", "L-09F79647"),
    ("ml.m5.large for endpoint usage", "L-614B09FD"),
    ("ml.m5.xlarge for endpoint usage", "L-2F737F8D"),
    ("ml.c5.xlarge for endpoint usage", "L-E9EE5599"),
    ("ml.inf2.xlarge for endpoint usage", "L-C8AB7CDA"),
    ("Maximum number of instances per endpoint", "L-ED8DEE9B"),
    ("Number of instances across active endpoints", "L-7A3DF611"),
];

pub fn known_quota_code(name: &str) -> String {
    if let Some((_, code)) = KNOWN_CODES.iter().find(|(n, _)| *n == name) {
        return (*code).to_string();
    }
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("L-{:08X}", hash as u32)
}

/// Parses `ml.g4dn.xlarge=4` into the quota name and value.
pub fn parse_quota_flag(flag: &str) -> Result<(String, f64), SimError> {
    let (instance_type, value) = flag.split_once('=').ok_or_else(|| {
        SimError::QuotaFlag(format!("{flag:?}: expected TYPE=N, e.g. ml.g4dn.xlarge=4"))
    })?;
    let value: f64 = value
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| {
            SimError::QuotaFlag(format!(
                "{flag:?}: the quota value must be a non-negative number"
            ))
        })?;
    let instance_type = instance_type.trim();
    if !instance_type.starts_with("ml.") {
        return Err(SimError::QuotaFlag(format!(
            "{flag:?}: the instance type must look like ml.g4dn.xlarge"
        )));
    }
    Ok((format!("{instance_type} for endpoint usage"), value))
}

/// Instance types by family, as SageMaker lists them (a representative catalogue, not every type).
const FAMILIES: &[(&str, &[&str])] = &[
    ("t2", &["medium", "large", "xlarge", "2xlarge"]),
    ("t3", &["medium", "large", "xlarge", "2xlarge"]),
    (
        "m4",
        &["xlarge", "2xlarge", "4xlarge", "10xlarge", "16xlarge"],
    ),
    (
        "m5",
        &[
            "large", "xlarge", "2xlarge", "4xlarge", "12xlarge", "24xlarge",
        ],
    ),
    (
        "m5d",
        &[
            "large", "xlarge", "2xlarge", "4xlarge", "12xlarge", "24xlarge",
        ],
    ),
    (
        "m6i",
        &[
            "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge",
            "32xlarge",
        ],
    ),
    ("c4", &["large", "xlarge", "2xlarge", "4xlarge", "8xlarge"]),
    (
        "c5",
        &[
            "large", "xlarge", "2xlarge", "4xlarge", "9xlarge", "18xlarge",
        ],
    ),
    (
        "c6i",
        &[
            "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge",
            "32xlarge",
        ],
    ),
    (
        "r5",
        &[
            "large", "xlarge", "2xlarge", "4xlarge", "12xlarge", "24xlarge",
        ],
    ),
    (
        "g4dn",
        &[
            "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge",
        ],
    ),
    (
        "g5",
        &[
            "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge",
            "48xlarge",
        ],
    ),
    (
        "g6",
        &[
            "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge",
            "48xlarge",
        ],
    ),
    (
        "g6e",
        &[
            "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge",
            "48xlarge",
        ],
    ),
    ("p3", &["2xlarge", "8xlarge", "16xlarge"]),
    ("p4d", &["24xlarge"]),
    ("p5", &["48xlarge"]),
    ("inf1", &["xlarge", "2xlarge", "6xlarge", "24xlarge"]),
    ("inf2", &["xlarge", "8xlarge", "24xlarge", "48xlarge"]),
];

/// What a SageMaker instance quota can be for; each usage has its own quota per instance type.
const USAGES: &[&str] = &[
    "endpoint usage",
    "training job usage",
    "spot training job usage",
    "processing job usage",
    "transform job usage",
    "notebook instance usage",
    "cluster usage",
];

/// AWS's default for a quota. ASSUMPTION: defaults differ by account and region, whatever the
/// published table says; many are 0 (docs/aws-behaviour.md §5.6). Here: `ml.g4dn.xlarge for endpoint
/// usage` is 4 (the quota the quick start's endpoint needs), small CPU types 2, everything else 0, so that a
/// client cannot assume a usable default.
fn default_value(instance_type: &str, usage: &str) -> f64 {
    let cpu = ["ml.t2.", "ml.t3.", "ml.m5.", "ml.c5."]
        .iter()
        .any(|f| instance_type.starts_with(f));
    let small = instance_type.ends_with(".medium")
        || instance_type.ends_with(".large") && !instance_type.contains("xlarge")
        || instance_type.ends_with(".xlarge") && !instance_type.contains("2xlarge");
    match (instance_type, usage) {
        ("ml.g4dn.xlarge", "endpoint usage") => 4.0,
        _ if cpu && small => 2.0,
        _ => 0.0,
    }
}

/// Every SageMaker quota this endpoint knows, with AWS's default value: one per instance type and
/// usage (as real accounts list them: hundreds), plus the scalar ones. Each has a default, so
/// GetAWSDefaultServiceQuota never answers NoSuchResourceException for a code of this list.
pub fn catalogue() -> Vec<(String, f64)> {
    let mut quotas = vec![
        ("Maximum number of instances per endpoint".to_string(), 40.0),
        (
            "Number of instances across active endpoints".to_string(),
            40.0,
        ),
        ("Number of endpoints".to_string(), 100.0),
        ("Number of endpoint configurations".to_string(), 1000.0),
        ("Number of models".to_string(), 1000.0),
    ];
    for (family, sizes) in FAMILIES {
        for size in *sizes {
            let instance_type = format!("ml.{family}.{size}");
            for usage in USAGES {
                quotas.push((
                    format!("{instance_type} for {usage}"),
                    default_value(&instance_type, usage),
                ));
            }
        }
    }
    quotas
}

/// A quota code as Service Quotas writes them: `L-` and 8 hex digits, or any
/// `[a-zA-Z][a-zA-Z0-9-]{1,128}` (the API's pattern).
pub fn is_quota_code(code: &str) -> bool {
    let mut chars = code.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && (2..=129).contains(&code.len())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_as_large_as_a_real_accounts_and_keeps_known_codes() {
        let all = catalogue();
        assert!(all.len() > 500, "{}", all.len());
        let names: std::collections::BTreeSet<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), all.len(), "no duplicate names");
        let codes: std::collections::BTreeSet<String> =
            all.iter().map(|(n, _)| known_quota_code(n)).collect();
        assert_eq!(codes.len(), all.len(), "no two quotas share a code");
        assert_eq!(
            known_quota_code("ml.g4dn.xlarge for endpoint usage"),
            "L-B67CFA0C"
        );
        assert!(is_quota_code("L-B67CFA0C"));
        assert!(!is_quota_code("1-bad"));
        assert!(!is_quota_code("L_B67CFA0C"));
    }
}
