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

    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::from([
            (MANAGED_BY_TAG.to_string(), MANAGED_BY_VALUE.to_string()),
            (OWNER_TAG.to_string(), self.id()),
        ]);
        if let Some(uid) = &self.uid {
            tags.insert(OWNER_UID_TAG.to_string(), uid.clone());
        }
        tags
    }
}

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
            alarm: format!("{NAME_PREFIX}{resource_id}-HasBacklogWithoutCapacity"),
            resource_id,
            target_tracking_policy: TARGET_TRACKING_POLICY.to_string(),
            scale_from_zero_policy: SCALE_FROM_ZERO_POLICY.to_string(),
        }
    }

    pub fn is_ours(&self, policy_name: &str) -> bool {
        policy_name == self.target_tracking_policy || policy_name == self.scale_from_zero_policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn longest_names_fit_cloudwatch_limits() {
        let long = "a".repeat(63);
        assert!(ResourceNames::new(&long, &long).alarm.len() <= 255);
    }
}
