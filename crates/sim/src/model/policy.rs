//! How each policy kind computes a new capacity (docs/aws-behaviour.md §2.7 target tracking, §3 step
//! scaling). Pure functions; the world decides when they run and which result wins.

use super::assumptions::Assumptions;

#[derive(Debug, Clone, PartialEq)]
pub struct TargetTracking {
    pub name: String,
    pub arn: String,
    pub target: f64,
    pub scale_in_cooldown_s: f64,
    pub scale_out_cooldown_s: f64,
    pub disable_scale_in: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustmentType {
    ChangeInCapacity,
    PercentChangeInCapacity,
    ExactCapacity,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub adjustment: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepPolicy {
    pub name: String,
    pub arn: String,
    pub adjustment_type: AdjustmentType,
    pub steps: Vec<Step>,
    pub cooldown_s: f64,
    pub min_adjustment_magnitude: Option<i64>,
}

/// Scale-out: proportional, rounded up (§2.7 GUESS); from zero, max(1, ceil(metric / target))
/// (§1.3, §7.1 GUESS).
pub fn target_tracking_out(current: u32, metric: f64, target: f64, a: &Assumptions) -> u32 {
    if target <= 0.0 {
        return current;
    }
    if current == 0 {
        return if a.target_tracking_from_zero_uses_metric_over_target {
            (metric / target).ceil().max(1.0) as u32
        } else {
            0
        };
    }
    (f64::from(current) * metric / target).ceil().max(0.0) as u32
}

/// Scale-in: only when removing one instance would not push the metric back above the target
/// (§2.7), rounding up so as not to remove too much; to zero only with a metric of 0.
pub fn target_tracking_in(current: u32, metric: f64, target: f64, a: &Assumptions) -> u32 {
    if current == 0 || target <= 0.0 {
        return current;
    }
    if metric <= 0.0 {
        return 0;
    }
    if current == 1 {
        return 1;
    }
    let after_removing_one = metric * f64::from(current) / f64::from(current - 1);
    if after_removing_one > target {
        return current;
    }
    let proportional = f64::from(current) * metric / target;
    let new = if a.scale_in_rounds_up {
        proportional.ceil()
    } else {
        proportional.floor()
    };
    (new.max(0.0) as u32).min(current)
}

/// The step whose interval holds `delta` (metric − threshold). Above the threshold the lower
/// bound is inclusive and the upper exclusive; below it, the other way round (§3.2).
pub fn matching_step(steps: &[Step], delta: f64) -> Option<&Step> {
    steps.iter().find(|s| {
        let lower = s.lower.unwrap_or(f64::NEG_INFINITY);
        let upper = s.upper.unwrap_or(f64::INFINITY);
        if delta >= 0.0 {
            lower <= delta && delta < upper
        } else {
            lower < delta && delta <= upper
        }
    })
}

/// §3.3: "Values greater than 1 are rounded down ... between 0 and 1 are rounded to 1 ... between 0
/// and -1 are rounded to -1 ... less than -1 are rounded up", then MinAdjustmentMagnitude.
pub fn percent_change(current: u32, percent: i64, min_magnitude: Option<i64>) -> i64 {
    let raw = f64::from(current) * percent as f64 / 100.0;
    let rounded = if raw >= 1.0 {
        raw.floor()
    } else if raw > 0.0 {
        1.0
    } else if raw > -1.0 && raw < 0.0 {
        -1.0
    } else {
        raw.ceil()
    } as i64;
    match min_magnitude {
        Some(min) if rounded.abs() < min && rounded != 0 => min * rounded.signum(),
        _ => rounded,
    }
}

/// The capacity a step policy asks for from `base` (the current capacity, or during a scale-out
/// cooldown the capacity before that scale-out, §2.12).
pub fn step_target(policy: &StepPolicy, base: u32, delta: f64) -> Option<i64> {
    let step = matching_step(&policy.steps, delta)?;
    Some(match policy.adjustment_type {
        AdjustmentType::ChangeInCapacity => i64::from(base) + step.adjustment,
        AdjustmentType::PercentChangeInCapacity => {
            i64::from(base) + percent_change(base, step.adjustment, policy.min_adjustment_magnitude)
        }
        AdjustmentType::ExactCapacity => step.adjustment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_tracking_rounds_conservatively() {
        let a = Assumptions::default();
        assert_eq!(target_tracking_out(1, 100.0, 1.0, &a), 100);
        assert_eq!(
            target_tracking_out(0, 5.0, 180.0, &a),
            1,
            "from zero: at least one"
        );
        assert_eq!(target_tracking_out(3, 7.0, 5.0, &a), 5, "ceil(4.2)");
        assert_eq!(target_tracking_in(4, 1.0, 5.0, &a), 1);
        assert_eq!(
            target_tracking_in(4, 4.0, 5.0, &a),
            4,
            "removing one would exceed the target"
        );
        assert_eq!(
            target_tracking_in(1, 0.5, 5.0, &a),
            1,
            "not to zero with work left"
        );
        assert_eq!(target_tracking_in(1, 0.0, 5.0, &a), 0);
    }

    #[test]
    fn documented_percent_examples() {
        // §3.3 worked example: 10 → +10% → 11 → +30% → 14 → -10% → 13 → -30% → 10.
        assert_eq!(percent_change(10, 10, None), 1);
        assert_eq!(percent_change(11, 30, None), 3);
        assert_eq!(percent_change(14, -10, None), -1);
        assert_eq!(percent_change(13, -30, None), -3);
        assert_eq!(
            percent_change(4, 25, Some(2)),
            2,
            "MinAdjustmentMagnitude example"
        );
    }

    #[test]
    fn steps_use_bounds_relative_to_the_threshold() {
        let policy = StepPolicy {
            name: "p".into(),
            arn: "a".into(),
            adjustment_type: AdjustmentType::ChangeInCapacity,
            steps: vec![
                Step {
                    lower: Some(0.0),
                    upper: Some(10.0),
                    adjustment: 1,
                },
                Step {
                    lower: Some(10.0),
                    upper: None,
                    adjustment: 3,
                },
            ],
            cooldown_s: 300.0,
            min_adjustment_magnitude: None,
        };
        assert_eq!(
            step_target(&policy, 0, 0.0),
            Some(1),
            "lower bound 0 is inclusive above the threshold"
        );
        assert_eq!(step_target(&policy, 2, 10.0), Some(5));
        assert_eq!(step_target(&policy, 2, -1.0), None);
    }
}
