//! Reads one endpoint's scaling configuration out of the simulated account: whatever was put there
//! over the AWS APIs, by asyncscale or by hand, is what the model runs.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::alarm::{AlarmRule, Comparison, MissingData};
use super::policy::{AdjustmentType, Step, StepPolicy, TargetTracking};
use crate::account::Account;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    BacklogSize,
    BacklogPerInstance,
    HasBacklogWithoutCapacity,
    AgeOfOldestRequest,
}

impl Metric {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "ApproximateBacklogSize" => Metric::BacklogSize,
            "ApproximateBacklogSizePerInstance" => Metric::BacklogPerInstance,
            "HasBacklogWithoutCapacity" => Metric::HasBacklogWithoutCapacity,
            "ApproximateAgeOfOldestRequest" => Metric::AgeOfOldestRequest,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    Average,
    Sum,
    Minimum,
    Maximum,
    SampleCount,
}

impl Statistic {
    fn parse(s: Option<&str>) -> Self {
        match s {
            Some("Sum") => Statistic::Sum,
            Some("Minimum") => Statistic::Minimum,
            Some("Maximum") => Statistic::Maximum,
            Some("SampleCount") => Statistic::SampleCount,
            _ => Statistic::Average,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Target tracking policy `index`, asked to scale out (AlarmHigh) or in (AlarmLow).
    TargetTrackingOut(usize),
    TargetTrackingIn(usize),
    Step(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlarmSetup {
    pub name: String,
    pub metric: Metric,
    pub statistic: Statistic,
    pub period_s: f64,
    pub rule: AlarmRule,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetSetup {
    pub min: u32,
    pub max: u32,
    pub scale_in_suspended: bool,
    pub scale_out_suspended: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Setup {
    pub target: Option<TargetSetup>,
    pub target_tracking: Vec<TargetTracking>,
    pub steps: Vec<StepPolicy>,
    pub alarms: Vec<AlarmSetup>,
}

fn f(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// The names of the alarms on each endpoint of `of` (an `EndpointName` dimension in
/// `AWS/SageMaker`), found in one pass over the account's alarms for a refresh of every endpoint:
/// looking through every alarm for every endpoint made a refresh of 1,000 endpoints take 3
/// million steps. Only `of`'s are indexed: a fleet's setup refreshes one endpoint at a write.
pub fn alarms_by_endpoint<'a>(
    account: &'a Account,
    of: &BTreeSet<&str>,
) -> BTreeMap<&'a str, Vec<&'a str>> {
    let mut index: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, alarm) in &account.here.alarms {
        let c = &alarm.config;
        if c.get("Namespace").and_then(Value::as_str) != Some("AWS/SageMaker") {
            continue;
        }
        let endpoints = c
            .get("Dimensions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|d| d["Name"] == "EndpointName")
            .filter_map(|d| d["Value"].as_str())
            .filter(|endpoint| of.contains(endpoint))
            .collect::<BTreeSet<_>>();
        for endpoint in endpoints {
            index.entry(endpoint).or_default().push(name.as_str());
        }
    }
    index
}

/// The configuration that drives one endpoint; `alarms` are the names of the alarms on it (from
/// [`alarms_by_endpoint`]).
pub fn extract(account: &Account, resource_id: &str, alarms: &[&str]) -> Setup {
    let mut setup = Setup::default();
    let key = (
        "sagemaker".to_string(),
        resource_id.to_string(),
        "sagemaker:variant:DesiredInstanceCount".to_string(),
    );
    if let Some(t) = account.here.targets.get(&key) {
        let flag = |k: &str| t.suspended.get(k).and_then(Value::as_bool).unwrap_or(false);
        setup.target = Some(TargetSetup {
            min: t.min.max(0) as u32,
            max: t.max.max(0) as u32,
            scale_in_suspended: flag("DynamicScalingInSuspended"),
            scale_out_suspended: flag("DynamicScalingOutSuspended"),
        });
    }
    let policies = account
        .here
        .policies
        .range((key.clone(), String::new())..)
        .take_while(|((target, _), _)| *target == key)
        .map(|(_, p)| p);
    for policy in policies {
        let c = &policy.config;
        if policy.policy_type == "TargetTrackingScaling" {
            setup.target_tracking.push(TargetTracking {
                name: policy.name.clone(),
                arn: policy.arn.clone(),
                target: f(c, "TargetValue").unwrap_or(0.0),
                // docs/aws-behaviour.md §2.12: SageMaker's default cooldowns are 300 s.
                scale_in_cooldown_s: f(c, "ScaleInCooldown").unwrap_or(300.0),
                scale_out_cooldown_s: f(c, "ScaleOutCooldown").unwrap_or(300.0),
                disable_scale_in: c
                    .get("DisableScaleIn")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            });
        } else {
            let adjustment_type = match c.get("AdjustmentType").and_then(Value::as_str) {
                Some("PercentChangeInCapacity") => AdjustmentType::PercentChangeInCapacity,
                Some("ExactCapacity") => AdjustmentType::ExactCapacity,
                _ => AdjustmentType::ChangeInCapacity,
            };
            let steps = c
                .get("StepAdjustments")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|s| Step {
                    lower: f(s, "MetricIntervalLowerBound"),
                    upper: f(s, "MetricIntervalUpperBound"),
                    adjustment: s
                        .get("ScalingAdjustment")
                        .and_then(Value::as_i64)
                        .unwrap_or(0),
                })
                .collect();
            setup.steps.push(StepPolicy {
                name: policy.name.clone(),
                arn: policy.arn.clone(),
                adjustment_type,
                steps,
                cooldown_s: f(c, "Cooldown").unwrap_or(300.0), // §2.12: default 300
                min_adjustment_magnitude: c.get("MinAdjustmentMagnitude").and_then(Value::as_i64),
            });
        }
    }
    for (name, alarm) in alarms
        .iter()
        .filter_map(|name| Some((*name, account.here.alarms.get(*name)?)))
    {
        let c = &alarm.config;
        let Some(metric) = c
            .get("MetricName")
            .and_then(Value::as_str)
            .and_then(Metric::parse)
        else {
            continue;
        };
        let comparison = c
            .get("ComparisonOperator")
            .and_then(Value::as_str)
            .and_then(Comparison::parse)
            .unwrap_or(Comparison::GreaterThanOrEqual);
        let enabled = c
            .get("ActionsEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let mut actions = Vec::new();
        for action in c
            .get("AlarmActions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !enabled {
                break;
            }
            if let Some(i) = setup.steps.iter().position(|s| s.arn == action) {
                actions.push(Action::Step(i));
            } else if let Some(i) = setup
                .target_tracking
                .iter()
                .position(|t| action.starts_with(&format!("{}:createdBy/", t.arn)))
            {
                let out = matches!(
                    comparison,
                    Comparison::GreaterThan | Comparison::GreaterThanOrEqual
                );
                actions.push(if out {
                    Action::TargetTrackingOut(i)
                } else {
                    Action::TargetTrackingIn(i)
                });
            }
        }
        let n = c
            .get("EvaluationPeriods")
            .and_then(Value::as_u64)
            .unwrap_or(1) as usize;
        setup.alarms.push(AlarmSetup {
            name: name.to_string(),
            metric,
            statistic: Statistic::parse(c.get("Statistic").and_then(Value::as_str)),
            period_s: c.get("Period").and_then(Value::as_f64).unwrap_or(60.0),
            rule: AlarmRule {
                evaluation_periods: n,
                datapoints_to_alarm: c
                    .get("DatapointsToAlarm")
                    .and_then(Value::as_u64)
                    .map_or(n, |m| m as usize),
                threshold: c.get("Threshold").and_then(Value::as_f64).unwrap_or(0.0),
                comparison,
                missing: MissingData::parse(c.get("TreatMissingData").and_then(Value::as_str)),
            },
            actions,
        });
    }
    setup
}
