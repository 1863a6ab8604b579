//! What an account holds: its regions with their scalable targets, policies, alarms, scheduled
//! actions, tags and scaling activities; its quotas, faults and request rates; and the changes the
//! scaling model reads from it.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::arn::alarm_arn;
use super::faults::{Fault, RandomFaults};

pub const ACCOUNT_ID: &str = "123456789012";
const SAGEMAKER_DIMENSION: &str = "sagemaker:variant:DesiredInstanceCount";

pub(crate) type TargetKey = (String, String, String); // namespace, resource id, dimension

#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) min: i64,
    pub(crate) max: i64,
    pub(crate) suspended: Value,
    pub(super) arn: String,
    pub(super) created: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) target: TargetKey,
    pub(crate) name: String,
    pub(crate) arn: String,
    pub(crate) policy_type: String,
    pub(crate) config: Value,
    pub(super) created: f64,
    /// Alarms AWS created for a target-tracking policy (AlarmHigh, AlarmLow).
    pub(super) owned_alarms: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Alarm {
    pub(crate) config: Map<String, Value>,
    pub(crate) state: String,
    pub(super) state_reason: String,
    pub(super) state_updated: f64,
    pub(super) config_updated: f64,
}

/// A scaling activity, settable by tests through the admin routes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Activity {
    #[serde(default)]
    pub activity_id: String,
    #[serde(default = "sagemaker")]
    pub service_namespace: String,
    pub resource_id: String,
    #[serde(default = "sagemaker_dimension")]
    pub scalable_dimension: String,
    pub description: String,
    #[serde(default)]
    pub cause: String,
    #[serde(default)]
    pub start_time: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<f64>,
    pub status_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Why an alarm's invocation did not scale (`{"Code": "AlreadyAtMaxCapacity", "MaxCapacity":
    /// 4}`); such activities are listed only with IncludeNotScaledActivities (§2.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_scaled_reasons: Option<Vec<Value>>,
}

fn sagemaker() -> String {
    "sagemaker".into()
}
fn sagemaker_dimension() -> String {
    SAGEMAKER_DIMENSION.into()
}

/// Service Quotas for SageMaker, by quota name.
#[derive(Debug, Clone, Default)]
pub struct QuotaTable {
    /// The account's applied values (GetServiceQuota).
    pub applied: BTreeMap<String, f64>,
    /// AWS's defaults (GetAWSDefaultServiceQuota).
    pub defaults: BTreeMap<String, f64>,
}

/// What one region of the account holds: AWS keeps scalable targets, policies, alarms and
/// activities per region, so a client that changes region sees none of the old region's.
#[derive(Debug, Default)]
pub(crate) struct RegionState {
    pub(crate) targets: BTreeMap<TargetKey, Target>,
    pub(crate) policies: BTreeMap<(TargetKey, String), Policy>,
    pub(crate) alarms: BTreeMap<String, Alarm>,
    pub(crate) scheduled: BTreeMap<(TargetKey, String), ScheduledAction>,
    /// Tags by ARN, for both Application Auto Scaling and CloudWatch resources.
    pub(super) tags: BTreeMap<String, BTreeMap<String, String>>,
    pub(super) activities: VecDeque<Activity>,
    /// Activities dropped from the front by [`Account::activity_retention`]: indices stay stable.
    dropped_activities: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct ScheduledAction {
    pub(crate) target: TargetKey,
    pub(crate) name: String,
    pub(super) arn: String,
    pub(super) schedule: String,
    pub(super) timezone: Option<String>,
    pub(super) start: Option<f64>,
    pub(super) end: Option<f64>,
    pub(super) min: Option<i64>,
    pub(super) max: Option<i64>,
    pub(super) created: f64,
}

impl ScheduledAction {
    /// As DescribeScheduledActions shows it (and `/_sim/state`).
    pub(crate) fn described(&self) -> Value {
        let mut target_action = json!({});
        if let Some(min) = self.min {
            target_action["MinCapacity"] = json!(min);
        }
        if let Some(max) = self.max {
            target_action["MaxCapacity"] = json!(max);
        }
        let mut v = json!({
            "ScheduledActionName": self.name, "ScheduledActionARN": self.arn,
            "ServiceNamespace": self.target.0, "ResourceId": self.target.1,
            "ScalableDimension": self.target.2, "Schedule": self.schedule,
            "ScalableTargetAction": target_action, "CreationTime": self.created,
        });
        if let Some(timezone) = &self.timezone {
            v["Timezone"] = json!(timezone);
        }
        if let Some(start) = self.start {
            v["StartTime"] = json!(start);
        }
        if let Some(end) = self.end {
            v["EndTime"] = json!(end);
        }
        v
    }
}

/// The whole simulated account. One per `sim serve`; thread safety is the server's job.
#[derive(Debug, Default)]
pub struct Account {
    /// The twelve-digit account id, in every ARN.
    pub id: String,
    /// The region the current request addresses, and its state; the other regions wait in
    /// `other_regions` (see [`Self::select_region`]).
    pub(super) region: String,
    pub(crate) here: RegionState,
    other_regions: BTreeMap<String, RegionState>,
    /// Injected errors and delays, in the order they were added.
    pub faults: Vec<Fault>,
    /// A share of requests answered with a passing error (`sim serve --fault-rate`).
    pub random_faults: Option<RandomFaults>,
    /// Requests answered with a random fault, by service and operation.
    pub injected: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per-API request rates enforced like AWS's (none unless configured).
    pub rate_limits: crate::rate_limits::RateLimits,
    /// Requests refused by `rate_limits`, by service and operation.
    pub throttled: BTreeMap<String, BTreeMap<String, u64>>,
    pub quotas: QuotaTable,
    next_id: u64,
    /// Requests answered, by service and operation.
    pub calls: BTreeMap<String, BTreeMap<String, u64>>,
    /// Every change of a scalable target's MaxCapacity, in order: region, resource id, and the
    /// new value (None: deregistered). What a test replays to check a bound at every moment.
    pub max_capacity_writes: Vec<(String, String, Option<i64>)>,
    /// Bumped by every request that may change configuration, so the scaling model re-reads it.
    pub(crate) config_version: u64,
    /// The `config_version` of the latest change to each endpoint's configuration, by region and
    /// endpoint name: the model re-reads only the endpoints whose configuration changed.
    pub(crate) changed_endpoints: BTreeMap<(String, String), u64>,
    /// The `config_version` of the latest change not attributed to an endpoint: the model then
    /// re-reads every endpoint.
    pub(crate) changed_unattributed: u64,
    /// The shape of the alarms target tracking creates (an assumption of the model, §2.7).
    pub target_tracking_alarms: TargetTrackingAlarms,
    /// Keep only the newest this many scaling activities of a region. AWS keeps six weeks of
    /// them; a run whose history nobody reads (`asyncscale simulate` of a fleet) need not:
    /// 1,000 endpoints make about 290,000 activities a simulated day, 260 MB.
    pub activity_retention: Option<usize>,
    /// The scaling model's clock (epoch seconds) once it has run: what the account stamps on
    /// scheduled actions it creates, so that they run on the same clock as the model.
    pub virtual_now: Option<f64>,
}

/// Target tracking's AWS-created alarms, as observed (docs/aws-behaviour.md §2.7). The default is
/// the scaling model's assumption (`impl Default` in [`crate::model::assumptions`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetTrackingAlarms {
    pub high_periods: u32,
    pub low_periods: u32,
    pub low_ratio: f64,
}

pub fn now() -> f64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() as f64) / 1000.0
}

/// The region of a fresh account, and of unsigned requests.
pub const DEFAULT_REGION: &str = "us-east-1";

impl Account {
    pub fn new(quotas: QuotaTable) -> Self {
        Self::with_id(ACCOUNT_ID, quotas)
    }

    /// Another account than the caller's own (an assumed role's).
    pub fn with_id(id: &str, quotas: QuotaTable) -> Self {
        Self {
            id: id.to_string(),
            region: DEFAULT_REGION.to_string(),
            quotas,
            ..Default::default()
        }
    }

    /// The time the account stamps on what it creates: the model's clock once it has run.
    pub(crate) fn clock(&self) -> f64 {
        self.virtual_now.unwrap_or_else(now)
    }

    /// Whether the configuration of `endpoint` (in the selected region) changed after `version`.
    #[cfg(test)]
    pub(crate) fn changed_since(&self, endpoint: &str, version: u64) -> bool {
        self.changed_unattributed > version
            || self
                .changed_endpoints
                .get(&(self.region.clone(), endpoint.to_string()))
                .is_some_and(|at| *at > version)
    }

    /// The endpoints (in the selected region) whose configuration changed after `version`; None
    /// when a change not attributed to an endpoint may concern any of them. One pass over the
    /// changes, for a caller that asks of every endpoint at each write.
    pub(crate) fn endpoints_changed_since(&self, version: u64) -> Option<HashSet<&str>> {
        (self.changed_unattributed <= version).then(|| {
            self.changed_endpoints
                .iter()
                .filter(|((region, _), at)| *region == self.region && **at > version)
                .map(|((_, endpoint), _)| endpoint.as_str())
                .collect()
        })
    }

    /// Makes `region` the one `here` holds.
    pub fn select_region(&mut self, region: &str) {
        if self.region == region {
            return;
        }
        let incoming = self.other_regions.remove(region).unwrap_or_default();
        let outgoing = std::mem::replace(&mut self.here, incoming);
        self.other_regions.insert(
            std::mem::replace(&mut self.region, region.to_string()),
            outgoing,
        );
    }

    /// The fault that applies to this request, if any (and counts it down).
    pub fn take_fault(
        &mut self,
        service: &str,
        operation: &str,
        input: &serde_json::Value,
    ) -> Option<Fault> {
        let now = now();
        self.faults
            .retain(|f| f.hold_until.is_none_or(|until| until > now));
        let index = self.faults.iter().position(|f| {
            f.operation == operation
                && f.service.as_deref().is_none_or(|s| s == service)
                && f.input_has
                    .as_ref()
                    .is_none_or(|(field, value)| input.get(field) == Some(value))
        })?;
        if self.faults[index].after > 0 {
            self.faults[index].after -= 1;
            return None;
        }
        let mut fault = self.faults[index].clone();
        if let Some(until) = fault.hold_until {
            // Answered when the hold ends, whatever else the fault says.
            fault.delay_seconds = fault.delay_seconds.max(until - now);
            return Some(fault);
        }
        if fault.count == 1 {
            self.faults.remove(index);
        } else if fault.count > 1 {
            self.faults[index].count -= 1;
        }
        Some(fault)
    }

    pub(super) fn uuid(&mut self) -> String {
        self.next_id += 1;
        format!(
            "{:08x}-5a5a-4000-8000-{:012x}",
            self.next_id * 2_654_435_761 % 0xffff_ffff,
            self.next_id
        )
    }

    pub fn record_call(&mut self, service: &str, operation: &str) {
        *self
            .calls
            .entry(service.to_string())
            .or_default()
            .entry(operation.to_string())
            .or_default() += 1;
    }

    pub fn add_activity(&mut self, mut activity: Activity) {
        if activity.activity_id.is_empty() {
            activity.activity_id = self.uuid();
        }
        if activity.start_time == 0.0 {
            activity.start_time = now();
        }
        self.here.activities.push_back(activity);
        if let Some(kept) = self.activity_retention {
            while self.here.activities.len() > kept {
                self.here.activities.pop_front();
                self.here.dropped_activities += 1;
            }
        }
    }

    /// The instance quota enforced at scale-out: the applied value, else AWS's default; None when
    /// the account has neither (then nothing is enforced).
    pub fn instance_quota(&self, instance_type: &str) -> Option<f64> {
        let name = format!("{instance_type} for endpoint usage");
        self.quotas
            .applied
            .get(&name)
            .or_else(|| self.quotas.defaults.get(&name))
            .copied()
    }

    /// The scaling model moves alarms between states as CloudWatch would.
    pub(crate) fn transition_alarm(&mut self, name: &str, state: &str, reason: String, at: f64) {
        if let Some(alarm) = self.here.alarms.get_mut(name) {
            alarm.state = state.to_string();
            alarm.state_reason = reason;
            alarm.state_updated = at;
        }
    }

    /// Completes an activity the scaling model started (`index` from [`Self::record_activity`]).
    pub(crate) fn finish_activity(&mut self, index: usize, status: &str, message: String, at: f64) {
        let Some(position) = index.checked_sub(self.here.dropped_activities) else {
            return;
        };
        if let Some(a) = self.here.activities.get_mut(position) {
            a.status_code = status.to_string();
            a.status_message = Some(message);
            a.end_time = Some(at);
        }
    }

    /// Records an activity and returns its index (stable while activities are dropped).
    pub(crate) fn record_activity(&mut self, activity: Activity) -> usize {
        self.add_activity(activity);
        self.here.dropped_activities + self.here.activities.len() - 1
    }

    pub fn activities(&self) -> &VecDeque<Activity> {
        &self.here.activities
    }

    /// A summary of one region of the account, for tests and `GET /_sim/state`.
    pub fn snapshot(&mut self, region: &str) -> Value {
        self.select_region(region);
        let targets: Vec<Value> = self.here.targets.iter().map(|(k, t)| json!({ "ResourceId": k.1, "MinCapacity": t.min, "MaxCapacity": t.max, "SuspendedState": t.suspended, "ScalableTargetARN": t.arn, "Tags": self.here.tags.get(&t.arn).cloned().unwrap_or_default() })).collect();
        let policies: Vec<Value> = self.here.policies.values().map(|p| json!({ "ResourceId": p.target.1, "PolicyName": p.name, "PolicyType": p.policy_type, "PolicyARN": p.arn, "Configuration": p.config })).collect();
        let alarms: Vec<Value> = self
            .here
            .alarms
            .iter()
            .map(|(n, a)| {
                let mut v = Value::Object(a.config.clone());
                v["StateValue"] = json!(a.state);
                v["Tags"] = json!(
                    self.here
                        .tags
                        .get(&alarm_arn(&self.id, region, n))
                        .cloned()
                        .unwrap_or_default()
                );
                v
            })
            .collect();
        let scheduled: Vec<Value> = self
            .here
            .scheduled
            .values()
            .map(ScheduledAction::described)
            .collect();
        // Only the failed ones: what a check of "no scale-out failed for the quota" reads.
        let failed: Vec<&Activity> = self
            .here
            .activities
            .iter()
            .filter(|a| a.status_code == "Failed")
            .collect();
        json!({ "ScalableTargets": targets, "ScalingPolicies": policies, "MetricAlarms": alarms, "ScheduledActions": scheduled, "FailedActivities": failed })
    }
}

#[cfg(test)]
mod activity_retention_tests {
    use super::{Account, Activity, QuotaTable};

    fn activity(description: &str) -> Activity {
        serde_json::from_value(serde_json::json!({
            "ResourceId": "endpoint/e/variant/AllTraffic",
            "Description": description,
            "StatusCode": "InProgress",
            "StartTime": 1.0,
        }))
        .unwrap()
    }

    /// The model finishes an activity by the index it got when starting it; dropping older
    /// activities must not make it finish another one.
    #[test]
    fn dropped_activities_leave_the_indices_of_the_kept_ones_valid() {
        let mut account = Account::new(QuotaTable::default());
        account.activity_retention = Some(2);
        let first = account.record_activity(activity("first"));
        let second = account.record_activity(activity("second"));
        let third = account.record_activity(activity("third"));
        assert_eq!((first, second, third), (0, 1, 2));
        assert_eq!(account.activities().len(), 2);
        account.finish_activity(first, "Successful", "dropped".into(), 2.0);
        account.finish_activity(third, "Successful", "done".into(), 2.0);
        let kept: Vec<_> = account
            .activities()
            .iter()
            .map(|a| (a.description.as_str(), a.status_code.as_str()))
            .collect();
        assert_eq!(kept, [("second", "InProgress"), ("third", "Successful")]);
    }
}

#[cfg(test)]
mod hold_tests {
    use super::{Account, Fault, QuotaTable, now};

    /// A hold answers every request of its window when the window ends, then lifts itself.
    #[test]
    fn a_hold_delays_until_its_end_then_removes_itself() {
        let mut account = Account::new(QuotaTable::default());
        let until = now() + 0.3;
        account.faults.push(Fault {
            hold_seconds: 0.3,
            hold_until: Some(until),
            ..Fault::on("PutMetricAlarm")
        });
        let input = serde_json::json!({});
        let first = account
            .take_fault("cloudwatch", "PutMetricAlarm", &input)
            .expect("held");
        assert!(first.delay_seconds > 0.2 && first.delay_seconds <= 0.3);
        assert!(first.error().is_none(), "a hold only delays");
        let second = account
            .take_fault("cloudwatch", "PutMetricAlarm", &input)
            .expect("still held: a hold is not used up by a request");
        assert!(second.delay_seconds <= first.delay_seconds);
        assert!(
            account
                .take_fault("cloudwatch", "DescribeAlarms", &input)
                .is_none()
        );
        std::thread::sleep(std::time::Duration::from_millis(350));
        assert!(
            account
                .take_fault("cloudwatch", "PutMetricAlarm", &input)
                .is_none()
        );
        assert!(account.faults.is_empty(), "the ended hold is gone");
    }
}
