//! spec (+ quota) → the AWS configuration asyncscale wants.
//!
//! The configuration follows the SageMaker guide for async endpoints (docs/aws-behaviour.md §1.4):
//! target tracking on ApproximateBacklogSizePerInstance, plus, while minCapacity is 0, a
//! ChangeInCapacity step policy driven by an alarm on HasBacklogWithoutCapacity (trap 1). The
//! maximum is clamped to the instance quota, because AWS fails a scale-out past the quota whole
//! instead of scaling partially (§5.4, trap 2).

use asyncscale_api::{AsyncEndpointScalingSpec, QuotaPolicy};

use crate::model::*;
use crate::names::{Owner, ResourceNames};

/// What asyncscale wants AWS to hold for one endpoint variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub names: ResourceNames,
    pub owner: Owner,
    pub target: ScalableTarget,
    pub target_tracking: ScalingPolicy,
    /// The step policy and its alarm; None while minCapacity > 0 or scale-from-zero is disabled.
    pub scale_from_zero: Option<ScaleFromZero>,
    pub effective_max: i32,
    /// True when the quota lowered maxCapacity.
    pub clamped: bool,
    /// Where `effective_max` comes from.
    pub max_source: MaxSource,
    /// This endpoint's share of the quota (quota.policy Share), when one was computed.
    pub share: Option<QuotaShare>,
    /// The scheduled actions of `spec.schedules`; set by `scheduled::follow_schedules`,
    /// which also moves `target`'s capacities while schedules run.
    pub schedules: Vec<DesiredSchedule>,
}

/// This endpoint's part of an instance quota shared with the other endpoints of its instance type
/// (see [`crate::share`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaShare {
    /// The most instances it may hold without any scale-out of the fleet failing on the quota.
    pub cap: i32,
    /// Instances of the type held in the account and region.
    pub in_use: u32,
    /// Endpoints the quota is split between.
    pub endpoints: usize,
    /// Why the cap is what it is ("4 of 4 in use by 2 endpoints; this endpoint may grow to 2").
    pub explanation: String,
    /// minCapacity asks for more instances than the endpoint holds and the quota leaves: it is
    /// not granted, and nothing is written until it fits.
    pub min_unmet: bool,
    /// The sharing endpoints whose MaxCapacity in AWS is still above their share, by resource id:
    /// the cap is held below its share until AWS holds their lowerings (a raise never outruns
    /// the lowering that pays for it). Empty when the cap is its whole share.
    pub awaiting: Vec<String>,
    /// The cap is held below its share for now: a lowering is awaited, or another endpoint's
    /// instances could not be read. Not converged: the controller tries again soon, and a
    /// one-shot run says so and fails.
    pub held: bool,
}

/// Why the scalable target's MaxCapacity is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxSource {
    /// maxCapacity as written (within the quota, or quota.policy Ignore).
    Spec,
    /// The instance quota (fresh or last known) lowered maxCapacity.
    Quota,
    /// This endpoint's share of the instance quota lowered maxCapacity.
    Share,
    /// The quota has never been read: the existing MaxCapacity stays (or is lowered to
    /// maxCapacity), so an unknown quota never lifts a clamp (a rule of the house: missing
    /// information never weakens what is in AWS).
    KeptWhileQuotaUnknown,
    /// The quota has never been read and the target does not exist yet: its first registration
    /// uses maxCapacity as written (quota.policy Clamp).
    SpecWhileQuotaUnknown,
    /// The same under Share: the first registration takes minCapacity only, as this endpoint's
    /// share of an unknown quota is unknown.
    MinWhileQuotaUnknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScaleFromZero {
    pub policy: ScalingPolicy,
    /// The alarm with an empty action list; the action is the step policy's ARN, known from AWS.
    pub alarm: MetricAlarm,
}

impl ScaleFromZero {
    pub fn alarm_with_action(&self, policy_arn: &str) -> MetricAlarm {
        MetricAlarm {
            alarm_actions: vec![policy_arn.to_string()],
            ..self.alarm.clone()
        }
    }
}

/// Why no desired state can be computed: the user must act.
#[derive(Debug, Clone, PartialEq)]
pub enum DesireError {
    /// The quota leaves no room for minCapacity (or for a single instance).
    QuotaTooLow { quota: Quota, min_capacity: i32 },
    /// The quota has never been read and minCapacity is above the MaxCapacity AWS holds: raising
    /// MaxCapacity to it would be a raise on a guess, so nothing is written until the quota is known.
    QuotaUnknownBelowMin {
        quota_name: String,
        max_in_aws: i32,
        min_capacity: i32,
    },
}

impl std::error::Error for DesireError {}

impl std::fmt::Display for DesireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DesireError::QuotaTooLow {
                quota,
                min_capacity,
            } => {
                write!(
                    f,
                    "the quota '{}' ({}) is {} instances ({} value)",
                    quota.name,
                    quota.code,
                    quota.value,
                    quota.source.as_str().to_lowercase(),
                )?;
                // With a quota of 0 not one instance can run, whatever minCapacity says.
                if quota.value < 1.0 {
                    write!(
                        f,
                        ": no instance of this type can run in this account and region; request a quota increase in Service Quotas"
                    )
                } else {
                    write!(
                        f,
                        ", below minCapacity {min_capacity}: request a quota increase in Service Quotas, or lower minCapacity"
                    )
                }
            }
            DesireError::QuotaUnknownBelowMin {
                quota_name,
                max_in_aws,
                min_capacity,
            } => write!(
                f,
                "minCapacity {min_capacity} needs MaxCapacity raised from {max_in_aws}, but the quota '{quota_name}' could not be read: nothing is changed until it can be (asyncscale never raises MaxCapacity on a guess)"
            ),
        }
    }
}

/// The instances the quota allows; fractional quota values do not buy a partial instance.
pub fn quota_instances(quota: &Quota) -> i64 {
    quota.value.floor() as i64
}

/// The desired state for `spec`. `existing` is the scalable target as AWS holds it now (None when
/// it is not registered): with the quota unknown, its MaxCapacity is kept rather than raised.
/// `share` is this endpoint's share of the quota under quota.policy Share; without one (no
/// share computed) Share bounds like Clamp.
pub fn desire(
    spec: &AsyncEndpointScalingSpec,
    owner: &Owner,
    quota: &QuotaLookup,
    existing: Option<&ScalableTarget>,
    share: Option<&QuotaShare>,
) -> Result<Desired, DesireError> {
    let names = ResourceNames::new(&spec.endpoint_name, &spec.variant_name);
    let bounded = matches!(spec.quota.policy, QuotaPolicy::Clamp | QuotaPolicy::Share);
    let share = share.filter(|_| spec.quota.policy == QuotaPolicy::Share);
    let (effective_max, max_source) = match (bounded, quota.value(), existing) {
        (false, _, _) => (spec.max_capacity, MaxSource::Spec),
        (true, Some(q), _) => {
            let allowed = quota_instances(q);
            if allowed < i64::from(spec.min_capacity.max(1)) {
                return Err(DesireError::QuotaTooLow {
                    quota: q.clone(),
                    min_capacity: spec.min_capacity,
                });
            }
            let clamped = i64::from(spec.max_capacity).min(allowed) as i32;
            match share {
                Some(share) if share.cap < clamped => (share.cap, MaxSource::Share),
                _ if clamped < spec.max_capacity => (clamped, MaxSource::Quota),
                _ => (clamped, MaxSource::Spec),
            }
        }
        // Lowering to maxCapacity is always safe; raising is not, not even to minCapacity (AWS
        // refuses a MaxCapacity below MinCapacity): that waits for the quota.
        (true, None, Some(target)) => {
            let kept = spec.max_capacity.min(target.max_capacity);
            if spec.min_capacity > kept {
                return Err(DesireError::QuotaUnknownBelowMin {
                    quota_name: quota.name().to_string(),
                    max_in_aws: target.max_capacity,
                    min_capacity: spec.min_capacity,
                });
            }
            (kept, MaxSource::KeptWhileQuotaUnknown)
        }
        // A share of an unknown quota is unknown: a first registration under Share takes no
        // more than minCapacity until the quota is read (a soak saw one registered at its
        // maxCapacity while GetServiceQuota failed, one over the quota for 8 s). Clamp promises
        // no split, so maxCapacity as written stands there.
        (true, None, None) if spec.quota.policy == QuotaPolicy::Share => {
            (spec.min_capacity.max(0), MaxSource::MinWhileQuotaUnknown)
        }
        (true, None, None) => (spec.max_capacity, MaxSource::SpecWhileQuotaUnknown),
    };
    let clamped = matches!(max_source, MaxSource::Quota | MaxSource::Share);
    let endpoint_dimension = vec![MetricDimension {
        name: ENDPOINT_DIMENSION.to_string(),
        value: spec.endpoint_name.clone(),
    }];
    let tt = &spec.target_tracking;
    let target_tracking = ScalingPolicy {
        name: names.target_tracking_policy.clone(),
        resource_id: names.resource_id.clone(),
        config: PolicyConfig::TargetTracking(TargetTrackingConfig {
            target_value: tt.target_value,
            metric: Some(CustomizedMetric {
                metric_name: BACKLOG_PER_INSTANCE_METRIC.to_string(),
                namespace: METRIC_NAMESPACE.to_string(),
                dimensions: endpoint_dimension.clone(),
                statistic: "Average".to_string(),
            }),
            scale_in_cooldown: Some(tt.scale_in_cooldown_seconds),
            scale_out_cooldown: Some(tt.scale_out_cooldown_seconds),
            disable_scale_in: tt.disable_scale_in,
        }),
    };
    let sfz = &spec.scale_from_zero;
    // A schedule may lower MinCapacity to 0 (a night without instances): the scale-out from zero
    // must be there for it.
    let may_reach_zero =
        spec.min_capacity == 0 || spec.schedules.iter().any(|s| s.min_capacity == Some(0));
    let scale_from_zero = (may_reach_zero && sfz.enabled).then(|| ScaleFromZero {
        policy: ScalingPolicy {
            name: names.scale_from_zero_policy.clone(),
            resource_id: names.resource_id.clone(),
            config: PolicyConfig::Step(StepScalingConfig {
                adjustment_type: Some("ChangeInCapacity".to_string()),
                metric_aggregation_type: Some("Average".to_string()),
                cooldown: Some(sfz.cooldown_seconds),
                min_adjustment_magnitude: None,
                step_adjustments: vec![StepAdjustment {
                    lower_bound: Some(0.0),
                    upper_bound: None,
                    scaling_adjustment: sfz.scaling_adjustment,
                }],
            }),
        },
        alarm: MetricAlarm {
            name: names.alarm.clone(),
            description: Some(format!(
                "Managed by asyncscale for {}: scales endpoint {} out from zero instances when requests are queued. Do not edit; change the AsyncEndpointScaling resource instead.",
                owner.id(),
                spec.endpoint_name
            )),
            namespace: METRIC_NAMESPACE.to_string(),
            metric_name: BACKLOG_WITHOUT_CAPACITY_METRIC.to_string(),
            dimensions: endpoint_dimension,
            statistic: "Average".to_string(),
            period: sfz.period_seconds,
            evaluation_periods: sfz.evaluation_periods,
            datapoints_to_alarm: Some(sfz.datapoints_to_alarm),
            threshold: 1.0,
            comparison_operator: "GreaterThanOrEqualToThreshold".to_string(),
            treat_missing_data: Some("missing".to_string()),
            actions_enabled: true,
            alarm_actions: Vec::new(),
            ok_actions: Vec::new(),
            insufficient_data_actions: Vec::new(),
        },
    });
    Ok(Desired {
        target: ScalableTarget {
            resource_id: names.resource_id.clone(),
            min_capacity: spec.min_capacity,
            max_capacity: effective_max,
            suspended: SuspendedState::all(spec.suspend),
        },
        names,
        owner: owner.clone(),
        target_tracking,
        scale_from_zero,
        effective_max,
        clamped,
        max_source,
        share: share.cloned(),
        schedules: Vec::new(),
    })
}

/// One schedule of the spec as asyncscale applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredSchedule {
    /// The schedule's name in the spec.
    pub name: String,
    pub action: ScheduledAction,
    /// The quota (or the endpoint's share of it, or, with the quota unknown, the MaxCapacity it
    /// holds) lowered the schedule's minCapacity in the action.
    pub lowered_min: bool,
    /// The same for maxCapacity.
    pub lowered_max: bool,
}
