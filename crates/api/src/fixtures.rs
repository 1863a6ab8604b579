//! The example every test starts from, built once, next to the types (as kube-rs's controller-rs
//! keeps its fixtures): the README's `sdxl` resource with every default.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::{
    AsyncEndpointScaling, AsyncEndpointScalingSpec, DeletionPolicy, QuotaSpec, ScaleFromZeroSpec,
    TargetTrackingSpec,
};

impl AsyncEndpointScalingSpec {
    /// `endpointName: sdxl-async`, `instanceType: ml.g4dn.xlarge`, `maxCapacity: 20`,
    /// `targetTracking: {targetValue: 5}`, everything else defaulted as the schema does.
    pub fn sdxl() -> Self {
        Self {
            endpoint_name: "sdxl-async".into(),
            variant_name: "AllTraffic".into(),
            instance_type: "ml.g4dn.xlarge".into(),
            region: None,
            role_arn: None,
            external_id: None,
            min_capacity: 0,
            max_capacity: 20,
            target_tracking: TargetTrackingSpec {
                target_value: 5.0,
                scale_in_cooldown_seconds: 300,
                scale_out_cooldown_seconds: 300,
                disable_scale_in: false,
            },
            scale_from_zero: ScaleFromZeroSpec::default(),
            quota: QuotaSpec::default(),
            suspend: false,
            schedules: Vec::new(),
            deletion_policy: DeletionPolicy::Delete,
        }
    }
}

impl AsyncEndpointScaling {
    /// `ml/sdxl` with [`AsyncEndpointScalingSpec::sdxl`].
    pub fn sdxl() -> Self {
        Self {
            metadata: ObjectMeta {
                name: Some("sdxl".into()),
                namespace: Some("ml".into()),
                ..Default::default()
            },
            spec: AsyncEndpointScalingSpec::sdxl(),
            status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_is_what_the_readme_example_parses_to() {
        let yaml = "apiVersion: asyncscale.io/v1alpha1\nkind: AsyncEndpointScaling\nmetadata: {name: sdxl, namespace: ml}\nspec: {endpointName: sdxl-async, instanceType: ml.g4dn.xlarge, maxCapacity: 20, targetTracking: {targetValue: 5}}\n";
        let parsed = crate::parse_manifests("t.yaml", yaml)
            .unwrap()
            .remove(0)
            .resource;
        assert_eq!(parsed.spec, AsyncEndpointScalingSpec::sdxl());
        assert_eq!(parsed.metadata, AsyncEndpointScaling::sdxl().metadata);
    }
}
