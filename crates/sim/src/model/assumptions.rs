//! Every choice the simulator makes where AWS documents nothing, in one place, with the value
//! used and where the guess comes from (docs/aws-behaviour.md, "§"). Change a
//! value here, or through `asyncscale simulate --assume NAME=VALUE`, to see what it changes.
//!
//! Also assumed, and not adjustable:
//! - SageMaker publishes every queue metric every minute, at zero instances too (§1.2, §1.3);
//!   alarms therefore see missing data only before the first datapoint.
//! - Alarms are evaluated once a minute, high-resolution ones (period 10, 20 or 30 s) included,
//!   over the datapoints completed by then (§4.4, §4.10).
//! - Target tracking's scale-out cooldown needs no rule of its own: the next scale-out starts from
//!   the desired count, which already holds the previous one, and happens only if larger (§2.12).
//! - Instances fail never; requests are processed in arrival order at a fixed rate per instance.

use crate::account::TargetTrackingAlarms;
use crate::error::SimError;

/// See the field docs; `Assumptions::default()` holds the values docs/aws-behaviour.md gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Assumptions {
    /// Seconds from a scale-out until a new instance is in service. §7.6: "several minutes" [DOC];
    /// one activity took about 7 minutes [OBS].
    pub provisioning_delay_s: f64,
    /// The simulation step. Metrics are published per minute (§1.2) and aggregated from these samples.
    pub tick_s: f64,
    /// ApproximateBacklogSizePerInstance at zero instances is backlog / max(instances, 1) (§1.3, §7.1).
    pub backlog_per_instance_divides_by_at_least_one: bool,
    /// Target tracking from zero instances asks for max(1, ceil(metric / target)) (§1.3, §7.1).
    pub target_tracking_from_zero_uses_metric_over_target: bool,
    /// Extra datapoints CloudWatch fetches beyond EvaluationPeriods (the doc's tables: N=3 → 5) (§4.4).
    pub evaluation_range_extra: usize,
    /// Target tracking's AWS-created alarms: AlarmHigh over 3 of 3 one-minute periods at the
    /// target, AlarmLow over 15 of 15 at 0.9 × target (§2.7 [OBS]).
    pub alarm_high_periods: u32,
    pub alarm_low_periods: u32,
    pub alarm_low_ratio: f64,
    /// A step policy's "current capacity" is the desired count, not the in-service count, while
    /// instances are still starting (§3, §7.4): after its cooldown a still-breaching alarm adds more.
    pub step_counts_desired_capacity: bool,
    /// A scale-in takes effect at once (instances stop being billed and serving immediately).
    pub scale_in_is_immediate: bool,
    /// Target tracking scales in to ceil(current × metric / target), and from one instance to zero
    /// only when the metric is 0 (§2.7: "removing capacity only when ... far enough below").
    pub scale_in_rounds_up: bool,
}

impl Default for Assumptions {
    fn default() -> Self {
        Self {
            provisioning_delay_s: 420.0,
            tick_s: 10.0,
            backlog_per_instance_divides_by_at_least_one: true,
            target_tracking_from_zero_uses_metric_over_target: true,
            evaluation_range_extra: 2,
            alarm_high_periods: 3,
            alarm_low_periods: 15,
            alarm_low_ratio: 0.9,
            step_counts_desired_capacity: true,
            scale_in_is_immediate: true,
            scale_in_rounds_up: true,
        }
    }
}

impl Default for TargetTrackingAlarms {
    fn default() -> Self {
        let a = Assumptions::default();
        Self {
            high_periods: a.alarm_high_periods,
            low_periods: a.alarm_low_periods,
            low_ratio: a.alarm_low_ratio,
        }
    }
}

impl Assumptions {
    /// Name, value and source of each assumption, for `simulate` output.
    pub fn describe(&self) -> Vec<(&'static str, String, &'static str)> {
        vec![
            (
                "provisioning_delay_s",
                self.provisioning_delay_s.to_string(),
                "§7.6: 'several minutes'; ~7 min observed",
            ),
            (
                "tick_s",
                self.tick_s.to_string(),
                "simulation step; metrics are per minute (§1.2)",
            ),
            (
                "backlog_per_instance_divides_by_at_least_one",
                self.backlog_per_instance_divides_by_at_least_one
                    .to_string(),
                "§1.3, §7.1",
            ),
            (
                "target_tracking_from_zero_uses_metric_over_target",
                self.target_tracking_from_zero_uses_metric_over_target
                    .to_string(),
                "§1.3, §7.1",
            ),
            (
                "evaluation_range_extra",
                self.evaluation_range_extra.to_string(),
                "§4.4 tables (N=3, range 5)",
            ),
            (
                "alarm_high_periods",
                self.alarm_high_periods.to_string(),
                "§2.7 observed AlarmHigh",
            ),
            (
                "alarm_low_periods",
                self.alarm_low_periods.to_string(),
                "§2.7 observed AlarmLow",
            ),
            (
                "alarm_low_ratio",
                self.alarm_low_ratio.to_string(),
                "§2.7 observed AlarmLow threshold",
            ),
            (
                "step_counts_desired_capacity",
                self.step_counts_desired_capacity.to_string(),
                "§3, §7.4",
            ),
            (
                "scale_in_is_immediate",
                self.scale_in_is_immediate.to_string(),
                "not documented",
            ),
            (
                "scale_in_rounds_up",
                self.scale_in_rounds_up.to_string(),
                "§2.7 'acts conservatively'",
            ),
        ]
    }

    /// Sets one assumption from `NAME=VALUE`.
    pub fn set(&mut self, assignment: &str) -> Result<(), SimError> {
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| SimError::Assumption(format!("{assignment:?}: expected NAME=VALUE")))?;
        let number = || {
            value
                .parse::<f64>()
                .map_err(|_| SimError::Assumption(format!("{name}: {value:?} is not a number")))
        };
        let flag = || {
            value.parse::<bool>().map_err(|_| {
                SimError::Assumption(format!("{name}: {value:?} is not true or false"))
            })
        };
        match name {
            "provisioning_delay_s" => self.provisioning_delay_s = number()?.max(0.0),
            "tick_s" => self.tick_s = number()?.clamp(1.0, 60.0),
            "backlog_per_instance_divides_by_at_least_one" => {
                self.backlog_per_instance_divides_by_at_least_one = flag()?;
            }
            "target_tracking_from_zero_uses_metric_over_target" => {
                self.target_tracking_from_zero_uses_metric_over_target = flag()?;
            }
            "evaluation_range_extra" => self.evaluation_range_extra = number()? as usize,
            "alarm_high_periods" => self.alarm_high_periods = number()?.max(1.0) as u32,
            "alarm_low_periods" => self.alarm_low_periods = number()?.max(1.0) as u32,
            "alarm_low_ratio" => self.alarm_low_ratio = number()?,
            "step_counts_desired_capacity" => self.step_counts_desired_capacity = flag()?,
            "scale_in_is_immediate" => self.scale_in_is_immediate = flag()?,
            "scale_in_rounds_up" => self.scale_in_rounds_up = flag()?,
            _ => {
                return Err(SimError::Assumption(format!(
                    "unknown assumption {name:?}; known: {}",
                    self.describe()
                        .iter()
                        .map(|d| d.0)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(())
    }
}
