//! SageMaker instance quotas: names, codes and the `TYPE=N` flags that set them.

/// Quota codes seen in real accounts (aws-semantics.md §5.2). Other names get a stable made-up
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
pub fn parse_quota_flag(flag: &str) -> Result<(String, f64), String> {
    let (instance_type, value) = flag
        .split_once('=')
        .ok_or_else(|| format!("{flag:?}: expected TYPE=N, e.g. ml.g4dn.xlarge=4"))?;
    let value: f64 = value
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("{flag:?}: the quota value must be a non-negative number"))?;
    let instance_type = instance_type.trim();
    if !instance_type.starts_with("ml.") {
        return Err(format!(
            "{flag:?}: the instance type must look like ml.g4dn.xlarge"
        ));
    }
    Ok((format!("{instance_type} for endpoint usage"), value))
}

/// The quotas that exist in every account whatever the flags say.
pub fn always_present_defaults() -> Vec<(String, f64)> {
    vec![
        ("Maximum number of instances per endpoint".to_string(), 40.0),
        (
            "Number of instances across active endpoints".to_string(),
            40.0,
        ),
    ]
}
