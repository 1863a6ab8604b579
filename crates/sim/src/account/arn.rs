//! ARNs: the partition of a region, the region of an ARN, and the ARN of an alarm.

pub(super) fn alarm_arn(account: &str, region: &str, name: &str) -> String {
    let partition = partition(region);
    format!("arn:{partition}:cloudwatch:{region}:{account}:alarm:{name}")
}

/// The ARN partition of a region: `aws-cn` for China, `aws-us-gov` for GovCloud, else `aws`
/// (ARN reference, "partition").
pub(crate) fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

pub(super) fn region_of(arn: &str) -> &str {
    arn.split(':').nth(3).unwrap_or("us-east-1")
}
