//! How asyncscale names and tags what it creates, so it can recognise its own resources and never
//! touch another tool's.
//!
//! Scheme (SageMaker endpoint and variant names cannot contain `/`, so every name is injective):
//! - scalable target: `endpoint/<endpoint>/variant/<variant>` (AWS's own resource id);
//! - policies, which AWS scopes to their scalable target: `asyncscale-target-tracking` and
//!   `asyncscale-scale-from-zero`;
//! - the alarm, whose name is unique per account and region:
//!   `asyncscale-endpoint/<endpoint>/variant/<variant>-HasBacklogWithoutCapacity`, mirroring the
//!   `TargetTracking-endpoint/<endpoint>/variant/<variant>-AlarmHigh-<uuid>` names AWS gives its own.
//!
//! The scalable target and the alarm carry the tags [`MANAGED_BY_TAG`] and [`OWNER_TAG`]
//! (`<namespace>/<name>` of the resource), plus [`OWNER_UID_TAG`] when running in a cluster.

use std::collections::BTreeMap;

pub const TARGET_TRACKING_POLICY: &str = "asyncscale-target-tracking";
pub const SCALE_FROM_ZERO_POLICY: &str = "asyncscale-scale-from-zero";
/// Prefix of every policy and alarm asyncscale creates.
pub const NAME_PREFIX: &str = "asyncscale-";

pub const MANAGED_BY_TAG: &str = "asyncscale.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "asyncscale";
pub const OWNER_TAG: &str = "asyncscale.io/owner";
pub const OWNER_UID_TAG: &str = "asyncscale.io/owner-uid";
/// Every tag key asyncscale sets, for removal when it lets a resource go.
pub const OWNER_TAG_KEYS: [&str; 3] = [MANAGED_BY_TAG, OWNER_TAG, OWNER_UID_TAG];
/// AWS's limit on a tag value (Application Auto Scaling and CloudWatch alike).
pub const MAX_TAG_VALUE_LEN: usize = 256;

/// The resource that states the intent: namespace/name (and uid in a cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

impl Owner {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The value of the [`OWNER_TAG`]: `namespace/name`, or, when that is longer than AWS allows
    /// (a 63-character namespace and a 253-character name make 317), its first characters and a
    /// hash of the whole, so that it stays distinct and within the limit. In a cluster the
    /// [`OWNER_UID_TAG`] is what ownership rests on.
    pub fn tag_value(&self) -> String {
        let id = self.id();
        if id.len() <= MAX_TAG_VALUE_LEN {
            return id;
        }
        // FNV-1a: stable across runs, platforms and Rust versions, unlike std's hasher.
        let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let suffix = format!("~{hash:016x}");
        let mut cut = MAX_TAG_VALUE_LEN - suffix.len();
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}{suffix}", &id[..cut])
    }

    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::from([
            (MANAGED_BY_TAG.to_string(), MANAGED_BY_VALUE.to_string()),
            (OWNER_TAG.to_string(), self.tag_value()),
        ]);
        if let Some(uid) = &self.uid {
            tags.insert(OWNER_UID_TAG.to_string(), uid.clone());
        }
        tags
    }
}

/// Every alarm asyncscale creates starts with this (bulk reads use it as AlarmNamePrefix).
pub const ALARM_PREFIX: &str = "asyncscale-endpoint/";
const ALARM_SUFFIX: &str = "-HasBacklogWithoutCapacity";
/// The alarms AWS creates for target tracking on a SageMaker variant start with this.
pub const TARGET_TRACKING_ALARM_PREFIX: &str = "TargetTracking-";
const ALARM_HIGH_INFIX: &str = "-AlarmHigh-";

/// The names of everything asyncscale owns for one endpoint variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceNames {
    pub resource_id: String,
    pub target_tracking_policy: String,
    pub scale_from_zero_policy: String,
    pub alarm: String,
}

impl ResourceNames {
    pub fn new(endpoint: &str, variant: &str) -> Self {
        let resource_id = format!("endpoint/{endpoint}/variant/{variant}");
        Self {
            alarm: format!("{NAME_PREFIX}{resource_id}{ALARM_SUFFIX}"),
            resource_id,
            target_tracking_policy: TARGET_TRACKING_POLICY.to_string(),
            scale_from_zero_policy: SCALE_FROM_ZERO_POLICY.to_string(),
        }
    }

    /// The scalable target's resource id that an alarm of asyncscale's name belongs to.
    pub fn resource_id_of_alarm(alarm: &str) -> Option<&str> {
        alarm
            .strip_prefix(NAME_PREFIX)?
            .strip_suffix(ALARM_SUFFIX)
            .filter(|id| id.starts_with("endpoint/"))
    }

    /// The resource id of the AlarmHigh that AWS creates for a target-tracking policy
    /// (`TargetTracking-<resource id>-AlarmHigh-<uuid>`, docs/aws-behaviour.md §2.7): in ALARM, the
    /// backlog per instance is above the target and the policy asks for more instances.
    pub fn resource_id_of_alarm_high(alarm: &str) -> Option<&str> {
        let (id, _uuid) = alarm
            .strip_prefix(TARGET_TRACKING_ALARM_PREFIX)?
            .rsplit_once(ALARM_HIGH_INFIX)?;
        id.starts_with("endpoint/").then_some(id)
    }

    /// The scheduled action of the schedule `name` in the spec. Scheduled actions carry no tags:
    /// on a target asyncscale owns, the prefix marks them as asyncscale's.
    pub fn scheduled_action(&self, schedule: &str) -> String {
        format!("{NAME_PREFIX}{schedule}")
    }

    /// The schedule's name in the spec, for a scheduled action of asyncscale's.
    pub fn schedule_of_action(action: &str) -> Option<&str> {
        action.strip_prefix(NAME_PREFIX)
    }

    pub fn is_ours(&self, policy_name: &str) -> bool {
        policy_name == self.target_tracking_policy || policy_name == self.scale_from_zero_policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alarm_name_leads_back_to_its_resource_id() {
        let names = ResourceNames::new("ep-1", "AllTraffic");
        assert!(names.alarm.starts_with(ALARM_PREFIX));
        assert_eq!(
            ResourceNames::resource_id_of_alarm(&names.alarm),
            Some(names.resource_id.as_str())
        );
        assert_eq!(
            ResourceNames::resource_id_of_alarm("asyncscale-other"),
            None
        );
        assert_eq!(
            ResourceNames::resource_id_of_alarm_high(
                "TargetTracking-endpoint/ep-1/variant/AllTraffic-AlarmHigh-609224a3-1f2b"
            ),
            Some(names.resource_id.as_str())
        );
        assert_eq!(
            ResourceNames::resource_id_of_alarm_high(
                "TargetTracking-endpoint/ep-1/variant/AllTraffic-AlarmLow-6148a0e4"
            ),
            None
        );
    }

    #[test]
    fn names_of_different_variants_never_collide() {
        // Hyphens are allowed in both names, so a `-` separator would make these two equal.
        let a = ResourceNames::new("a-b", "c");
        let b = ResourceNames::new("a", "b-c");
        assert_ne!(a.alarm, b.alarm);
        assert_ne!(a.resource_id, b.resource_id);
        assert_eq!(
            a.alarm,
            "asyncscale-endpoint/a-b/variant/c-HasBacklogWithoutCapacity"
        );
    }

    #[test]
    fn owner_tags_stay_within_aws_limits_and_distinct() {
        let owner = |ns: &str, name: &str| Owner {
            namespace: ns.into(),
            name: name.into(),
            uid: None,
        };
        let short = owner("ml", "sdxl");
        assert_eq!(short.tag_value(), "ml/sdxl");
        let long_a = owner(&"n".repeat(63), &"a".repeat(253));
        let long_b = owner(&"n".repeat(63), &format!("{}b", "a".repeat(252)));
        assert_eq!(long_a.id().len(), 317);
        for o in [&long_a, &long_b] {
            assert!(o.tags().values().all(|v| v.len() <= MAX_TAG_VALUE_LEN));
        }
        assert_eq!(long_a.tag_value().len(), MAX_TAG_VALUE_LEN);
        assert_ne!(long_a.tag_value(), long_b.tag_value());
        assert_eq!(long_a.tag_value(), long_a.clone().tag_value(), "stable");
    }

    #[test]
    fn longest_names_fit_cloudwatch_limits() {
        let long = "a".repeat(63);
        assert!(ResourceNames::new(&long, &long).alarm.len() <= 255);
    }
}
