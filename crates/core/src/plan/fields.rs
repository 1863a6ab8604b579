//! How a change is described to people: each AWS resource's fields, and what differs.

use std::fmt;

use crate::model::*;

pub(super) type Fields = Vec<(&'static str, String)>;

/// A created resource's settings, leaving out what is unset or empty (and the long description).
pub(super) fn describe(fields: &Fields) -> String {
    fields
        .iter()
        .filter(|(k, v)| !v.is_empty() && v != "(unset)" && *k != "description")
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn diff(have: &Fields, want: &Fields) -> String {
    let changed: Vec<String> = want
        .iter()
        .filter_map(|(k, w)| {
            let h = have
                .iter()
                .find(|(hk, _)| hk == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or("(unset)");
            (h != w).then(|| format!("{k} {h} → {w}"))
        })
        .collect();
    if changed.is_empty() {
        "configuration differs".to_string()
    } else {
        changed.join(", ")
    }
}

pub(super) fn opt<T: fmt::Display>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map_or_else(|| "(unset)".to_string(), ToString::to_string)
}

pub(super) fn target_fields(t: &ScalableTarget) -> Fields {
    let s = &t.suspended;
    vec![
        ("minCapacity", t.min_capacity.to_string()),
        ("maxCapacity", t.max_capacity.to_string()),
        (
            "suspended",
            format!(
                "in={} out={} scheduled={}",
                s.dynamic_scaling_in, s.dynamic_scaling_out, s.scheduled_scaling
            ),
        ),
    ]
}

pub(super) fn dimensions(dims: &[MetricDimension]) -> String {
    dims.iter()
        .map(|d| format!("{}={}", d.name, d.value))
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn policy_fields(p: &ScalingPolicy) -> Fields {
    match &p.config {
        PolicyConfig::TargetTracking(tt) => {
            let metric = tt.metric.as_ref().map_or_else(
                || "(not a customized metric)".to_string(),
                |m| {
                    format!(
                        "{}/{} [{}] {}",
                        m.namespace,
                        m.metric_name,
                        dimensions(&m.dimensions),
                        m.statistic
                    )
                },
            );
            vec![
                ("metric", metric),
                ("targetValue", tt.target_value.to_string()),
                ("scaleInCooldown", opt(&tt.scale_in_cooldown)),
                ("scaleOutCooldown", opt(&tt.scale_out_cooldown)),
                ("disableScaleIn", tt.disable_scale_in.to_string()),
            ]
        }
        PolicyConfig::Step(step) => {
            let steps = step
                .step_adjustments
                .iter()
                .map(|s| {
                    format!(
                        "metric-threshold in [{}, {}) → {:+}",
                        s.lower_bound.map_or("-∞".to_string(), |b| b.to_string()),
                        s.upper_bound.map_or("+∞".to_string(), |b| b.to_string()),
                        s.scaling_adjustment
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            vec![
                ("adjustmentType", opt(&step.adjustment_type)),
                ("aggregation", opt(&step.metric_aggregation_type)),
                ("cooldown", opt(&step.cooldown)),
                (
                    "minAdjustmentMagnitude",
                    opt(&step.min_adjustment_magnitude),
                ),
                ("steps", steps),
            ]
        }
        PolicyConfig::Other(kind) => vec![("type", kind.clone())],
    }
}

pub(super) fn alarm_fields(a: &MetricAlarm) -> Fields {
    vec![
        (
            "metric",
            format!(
                "{}/{} [{}] {}",
                a.namespace,
                a.metric_name,
                dimensions(&a.dimensions),
                a.statistic
            ),
        ),
        ("period", a.period.to_string()),
        ("evaluationPeriods", a.evaluation_periods.to_string()),
        ("datapointsToAlarm", opt(&a.datapoints_to_alarm)),
        (
            "condition",
            format!("{} {}", a.comparison_operator, a.threshold),
        ),
        ("treatMissingData", opt(&a.treat_missing_data)),
        ("actionsEnabled", a.actions_enabled.to_string()),
        ("alarmActions", a.alarm_actions.join(",")),
        ("okActions", a.ok_actions.join(",")),
        (
            "insufficientDataActions",
            a.insufficient_data_actions.join(","),
        ),
        ("description", opt(&a.description)),
    ]
}
