//! What a simulation shows a person: a per-minute timeline, a summary, warnings about
//! configurations that will misbehave, and an SVG chart of backlog and instances.

use crate::error::SimError;

use serde::Serialize;

use super::World;
use super::endpoint::EndpointSim;
use super::setup::{Action, Metric, Setup};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailedActivity {
    pub time_s: f64,
    pub message: String,
}

/// The summary `simulate --output json` prints, one per endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub endpoint: String,
    /// Seconds from the first request's arrival until the first instance was requested.
    pub time_to_first_instance_s: Option<f64>,
    /// Seconds from the first request's arrival until the first instance served.
    pub time_to_first_in_service_s: Option<f64>,
    pub peak_instances: u32,
    pub peak_desired_instances: u32,
    /// When every request that arrived had been processed (simulation seconds).
    pub drained_at_s: Option<f64>,
    /// When the endpoint went back to zero instances, after the queue drained.
    pub scaled_to_zero_at_s: Option<f64>,
    /// Instances running or starting, times minutes (what is billed).
    pub instance_minutes: f64,
    pub requests_arrived: f64,
    pub requests_processed: f64,
    /// The first few (time and AWS's message); `failed_activity_count` counts them all.
    pub failed_activities: Vec<FailedActivity>,
    pub failed_activity_count: u64,
    pub warnings: Vec<String>,
}

pub fn summarize(world: &World, endpoint: &EndpointSim, quota: Option<f64>) -> Summary {
    let stats = &endpoint.stats;
    let since_first = |t: Option<f64>| Some(t? - stats.first_arrival_s?);
    let drained_at_s = (endpoint.backlog <= 1e-9)
        .then_some(stats.drained_at_s)
        .flatten();
    Summary {
        endpoint: endpoint.spec.endpoint.clone(),
        time_to_first_instance_s: since_first(stats.first_instance_requested_s),
        // An instance that came into service before the first request (a pre-warm) kept it
        // from waiting at all.
        time_to_first_in_service_s: since_first(stats.first_instance_in_service_s)
            .map(|s| s.max(0.0)),
        peak_instances: stats.peak_in_service,
        peak_desired_instances: stats.peak_desired.max(endpoint.spec.initial_instances),
        drained_at_s,
        scaled_to_zero_at_s: stats
            .scaled_to_zero_s
            .iter()
            .copied()
            .find(|t| drained_at_s.is_some_and(|d| *t >= d)),
        instance_minutes: (stats.instance_seconds / 60.0 * 100.0).round() / 100.0,
        requests_arrived: stats.arrived.round(),
        requests_processed: stats.processed.round(),
        failed_activities: stats
            .failed_activities
            .iter()
            .map(|(t, m)| FailedActivity {
                time_s: *t,
                message: m.clone(),
            })
            .collect(),
        failed_activity_count: stats.failed_activity_count,
        warnings: warnings(world, endpoint, quota),
    }
}

/// Configurations that will misbehave, from the setup itself and from what happened.
pub fn warnings(world: &World, endpoint: &EndpointSim, quota: Option<f64>) -> Vec<String> {
    let setup: &Setup = &endpoint.setup;
    let a = &world.assumptions;
    let mut out = Vec::new();
    let Some(target) = setup.target else {
        out.push("no scalable target is registered: nothing scales this endpoint".into());
        return out;
    };
    let from_zero = setup.alarms.iter().any(|alarm| {
        alarm.metric == Metric::HasBacklogWithoutCapacity
            && alarm.actions.iter().any(|a| matches!(a, Action::Step(_)))
    });
    if target.min == 0 && !from_zero {
        let targets: Vec<String> = setup
            .target_tracking
            .iter()
            .map(|t| t.target.to_string())
            .collect();
        out.push(format!(
            "minCapacity is 0 and no step policy is driven by HasBacklogWithoutCapacity: at zero instances the endpoint scales out only once the backlog exceeds the target value ({}), so a few requests can wait forever (trap 1)",
            if targets.is_empty() { "none".to_string() } else { targets.join(", ") }
        ));
    }
    if let Some(limit) = quota {
        let other = world
            .other_usage
            .get(&endpoint.spec.instance_type)
            .copied()
            .unwrap_or(0);
        if f64::from(target.max) > limit {
            out.push(format!(
                "MaxCapacity {} is above the quota '{} for endpoint usage' of {limit}: a scale-out asking for more than the quota allows fails whole, leaving the endpoint where it is (trap 2)",
                target.max, endpoint.spec.instance_type
            ));
        } else if other > 0 && f64::from(target.max + other) > limit {
            out.push(format!(
                "other endpoints use {other} {} instances: with MaxCapacity {} the quota of {limit} can block scale-outs that ask for more than the remaining headroom",
                endpoint.spec.instance_type, target.max
            ));
        }
    }
    for step in &setup.steps {
        if from_zero && step.cooldown_s < a.provisioning_delay_s {
            out.push(format!(
                "the step policy {} has a cooldown of {} s, shorter than instance provisioning ({} s, an assumption): while the first instance still starts, the HasBacklogWithoutCapacity alarm is still in ALARM and the policy adds another instance",
                step.name, step.cooldown_s, a.provisioning_delay_s
            ));
        }
    }
    let stats = &endpoint.stats;
    if stats.arrived > 0.0 && stats.peak_in_service == 0 && endpoint.spec.initial_instances == 0 {
        out.push("requests arrived but no instance ever served them during the simulation".into());
    }
    if !stats.failed_activities.is_empty() {
        out.push(format!(
            "{} scaling activities failed; the first: {}",
            stats.failed_activity_count, stats.failed_activities[0].1
        ));
    }
    out
}

/// The per-minute timeline as text, one line a minute.
pub fn timeline_text(endpoint: &EndpointSim) -> String {
    let alarm_names: Vec<String> = endpoint
        .timeline
        .first()
        .map(|r| r.alarms.keys().cloned().collect())
        .unwrap_or_default();
    let short = |name: &str| {
        if name.contains("-AlarmHigh-") {
            "tt-high".to_string()
        } else if name.contains("-AlarmLow-") {
            "tt-low".to_string()
        } else if name.contains("HasBacklogWithoutCapacity") {
            "from-zero".to_string()
        } else {
            name.chars().take(12).collect()
        }
    };
    let mut text = format!(
        "{:>5} {:>8} {:>9} {:>9} {:>7} {:>10}",
        "min", "arrived", "backlog", "per-inst", "desired", "in-service"
    );
    for name in &alarm_names {
        text.push_str(&format!(" {:>10}", short(name)));
    }
    text.push('\n');
    let state = |s: &str| {
        match s {
            "INSUFFICIENT_DATA" => "INSUFF",
            other => other,
        }
        .to_string()
    };
    for r in &endpoint.timeline {
        text.push_str(&format!(
            "{:>5} {:>8.0} {:>9.1} {:>9.2} {:>7} {:>10}",
            r.minute, r.arrivals, r.backlog, r.backlog_per_instance, r.desired, r.in_service
        ));
        for name in &alarm_names {
            text.push_str(&format!(
                " {:>10}",
                r.alarms.get(name).map_or("-".to_string(), |s| state(s))
            ));
        }
        for activity in &r.activities {
            text.push_str(&format!("  | {activity}"));
        }
        text.push('\n');
    }
    text
}

/// An SVG chart of backlog (left axis) and desired and in-service instances (right axis).
pub fn chart_svg(endpoint: &EndpointSim) -> Result<String, SimError> {
    use plotters::prelude::*;
    let records = &endpoint.timeline;
    let minutes = records.last().map_or(1.0, |r| r.minute as f64).max(1.0);
    let backlog_max = records.iter().map(|r| r.backlog).fold(1.0, f64::max) * 1.1;
    let instances_max = records
        .iter()
        .map(|r| f64::from(r.desired.max(r.in_service)))
        .fold(1.0, f64::max)
        + 1.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 480)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| SimError::Chart(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{}: backlog and instances", endpoint.spec.endpoint),
                ("sans-serif", 18),
            )
            .margin(16)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .right_y_label_area_size(56)
            .build_cartesian_2d(0f64..minutes, 0f64..backlog_max)
            .map_err(|e| SimError::Chart(e.to_string()))?
            .set_secondary_coord(0f64..minutes, 0f64..instances_max);
        chart
            .configure_mesh()
            .x_desc("minutes")
            .y_desc("queued requests")
            .draw()
            .map_err(|e| SimError::Chart(e.to_string()))?;
        chart
            .configure_secondary_axes()
            .y_desc("instances")
            .draw()
            .map_err(|e| SimError::Chart(e.to_string()))?;
        chart
            .draw_series(LineSeries::new(
                records.iter().map(|r| (r.minute as f64, r.backlog)),
                &BLUE,
            ))
            .map_err(|e| SimError::Chart(e.to_string()))?
            .label("backlog")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .draw_secondary_series(LineSeries::new(
                records
                    .iter()
                    .map(|r| (r.minute as f64, f64::from(r.desired))),
                &RED,
            ))
            .map_err(|e| SimError::Chart(e.to_string()))?
            .label("desired instances")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .draw_secondary_series(LineSeries::new(
                records
                    .iter()
                    .map(|r| (r.minute as f64, f64::from(r.in_service))),
                &GREEN,
            ))
            .map_err(|e| SimError::Chart(e.to_string()))?
            .label("in-service instances")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| SimError::Chart(e.to_string()))?;
        root.present().map_err(|e| SimError::Chart(e.to_string()))?;
    }
    Ok(svg)
}
