//! A simulated AWS account: the state behind Application Auto Scaling, CloudWatch alarms and
//! Service Quotas, with AWS's validation and error shapes. Each operation takes and returns the
//! JSON shapes of the AWS API (botocore service models), so every wire protocol shares it.
//!
//! Behaviour follows docs/aws-behaviour.md; the section is cited at each rule.
//! Where AWS does not document a behaviour the choice is marked ASSUMPTION.
//!
//! One file per service, as the API references group the calls: [`autoscaling`] (Application
//! Auto Scaling), [`cloudwatch`], [`service_quotas`]; this file holds the account, its regions and
//! injected faults, the dispatch and what the services share.

use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::validation::Service;

mod autoscaling;
mod cloudwatch;
mod scheduled;
pub use scheduled::ScheduledRun;
mod service_quotas;
mod tags;

const AAS: Service = Service::ApplicationAutoScaling;
const CW: Service = Service::CloudWatch;

pub const ACCOUNT_ID: &str = "123456789012";
const SAGEMAKER_DIMENSION: &str = "sagemaker:variant:DesiredInstanceCount";

/// An AWS error: code, message and HTTP status, as AWS sends them.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub status: u16,
}

impl ApiError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            status: 400,
        }
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    fn not_found_cw(message: impl Into<String>) -> Self {
        Self {
            code: "ResourceNotFound".into(),
            message: message.into(),
            status: 404,
        }
    }
    /// Whether the client caused it (for awsQuery-compatible error headers).
    pub fn is_sender_fault(&self) -> bool {
        self.status < 500
    }
}

pub type ApiResult = Result<Value, ApiError>;

pub(crate) type TargetKey = (String, String, String); // namespace, resource id, dimension

#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) min: i64,
    pub(crate) max: i64,
    pub(crate) suspended: Value,
    arn: String,
    created: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) target: TargetKey,
    pub(crate) name: String,
    pub(crate) arn: String,
    pub(crate) policy_type: String,
    pub(crate) config: Value,
    created: f64,
    /// Alarms AWS created for a target-tracking policy (AlarmHigh, AlarmLow).
    owned_alarms: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Alarm {
    pub(crate) config: Map<String, Value>,
    pub(crate) state: String,
    state_reason: String,
    state_updated: f64,
    config_updated: f64,
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
    pub(crate) scheduled: BTreeMap<(TargetKey, String), scheduled::ScheduledAction>,
    /// Tags by ARN, for both Application Auto Scaling and CloudWatch resources.
    tags: BTreeMap<String, BTreeMap<String, String>>,
    activities: VecDeque<Activity>,
    /// Activities dropped from the front by [`Account::activity_retention`]: indices stay stable.
    dropped_activities: usize,
}

/// An AWS error to answer instead of (or after) serving a request: `POST /_sim/faults`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// `application-autoscaling`, `cloudwatch` or `service-quotas`; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub operation: String,
    /// The AWS error code to answer, e.g. `ThrottlingException`; none: only delay the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default = "default_fault_status")]
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How many requests it applies to; 0 means every request until cleared.
    #[serde(default = "default_fault_count")]
    pub count: u32,
    /// Hold the answer this long first (a hung or slow endpoint).
    #[serde(default)]
    pub delay_seconds: f64,
    /// Only requests whose input has this field at this value, e.g. `{"StateValue": "ALARM"}`
    /// for one of two DescribeAlarms reads; any request when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_has: Option<(String, serde_json::Value)>,
    /// Let this many matching requests through first: the fault hits the one after them (a
    /// failure at one position of a run).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub after: u32,
    /// Hold every matching request for this long from when the fault is added: requests that
    /// arrive meanwhile are answered when it ends (an operation hung for a while, then healthy
    /// again). The fault removes itself then; `count` does not apply.
    #[serde(default, skip_serializing_if = "is_no_time")]
    pub hold_seconds: f64,
    /// When a hold ends, epoch seconds (set when the fault is added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<f64>,
}

fn is_no_time(seconds: &f64) -> bool {
    *seconds == 0.0
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Answers a share of all requests with one of the passing errors AWS answers at times: the
/// service's throttling error, its internal error (500), or 503 Service Unavailable, in turn. The
/// SDK's retries and asyncscale's must absorb them. Deterministic for a given seed.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomFaults {
    rate: f64,
    state: u64,
    turn: u64,
}

impl RandomFaults {
    /// `rate` in [0, 1].
    pub fn new(rate: f64, seed: u64) -> Self {
        Self {
            rate: rate.clamp(0.0, 1.0),
            state: seed | 1,
            turn: 0,
        }
    }

    /// The share of requests answered with an error.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The error for this request, if it is one of the unlucky ones.
    pub fn draw(&mut self, service: &str) -> Option<ApiError> {
        // xorshift64*: enough for spreading faults, no dependency.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let sample =
            (self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        if sample >= self.rate {
            return None;
        }
        self.turn += 1;
        Some(match self.turn % 3 {
            0 => crate::rate_limits::throttled(service),
            // Each service's internal error shape (AAS InternalServiceException, CloudWatch
            // InternalServiceFault's code InternalServiceError, Service Quotas ServiceException).
            1 => ApiError::new(
                match service {
                    "cloudwatch" => "InternalServiceError",
                    "service-quotas" => "ServiceException",
                    _ => "InternalServiceException",
                },
                "Internal error (injected by --fault-rate)",
            )
            .with_status(500),
            _ => ApiError::new(
                "ServiceUnavailable",
                "Service unavailable (injected by --fault-rate)",
            )
            .with_status(503),
        })
    }
}

fn default_fault_status() -> u16 {
    400
}
fn default_fault_count() -> u32 {
    1
}

impl Fault {
    /// A fault on every request for `operation` (any service) until cleared, that changes
    /// nothing yet: add an error, a delay, or both.
    pub fn on(operation: impl Into<String>) -> Self {
        Self {
            service: None,
            operation: operation.into(),
            code: None,
            status: default_fault_status(),
            message: None,
            count: 0,
            delay_seconds: 0.0,
            input_has: None,
            after: 0,
            hold_seconds: 0.0,
            hold_until: None,
        }
    }

    /// Only after `count` matching requests were let through.
    pub fn after(mut self, count: u32) -> Self {
        self.after = count;
        self
    }

    /// Answers with the AWS error `code` and HTTP `status`.
    pub fn failing(mut self, code: impl Into<String>, status: u16) -> Self {
        self.code = Some(code.into());
        self.status = status;
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Only for the next `count` requests.
    pub fn times(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    /// Holds each answer this long first.
    pub fn delayed(mut self, seconds: f64) -> Self {
        self.delay_seconds = seconds;
        self
    }

    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Only requests whose input has `field` at `value`.
    pub fn when(mut self, field: impl Into<String>, value: serde_json::Value) -> Self {
        self.input_has = Some((field.into(), value));
        self
    }

    pub fn error(&self) -> Option<ApiError> {
        let code = self.code.clone()?;
        Some(ApiError {
            message: self
                .message
                .clone()
                .unwrap_or_else(|| format!("{code} (injected by POST /_sim/faults)")),
            code,
            status: self.status,
        })
    }
}

/// The whole simulated account. One per `sim serve`; thread safety is the server's job.
#[derive(Debug, Default)]
pub struct Account {
    /// The twelve-digit account id, in every ARN.
    pub id: String,
    /// The region the current request addresses, and its state; the other regions wait in
    /// `other_regions` (see [`Self::select_region`]).
    region: String,
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

/// Target tracking's AWS-created alarms, as observed (docs/aws-behaviour.md §2.7).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetTrackingAlarms {
    pub high_periods: u32,
    pub low_periods: u32,
    pub low_ratio: f64,
}

impl Default for TargetTrackingAlarms {
    fn default() -> Self {
        let a = crate::model::assumptions::Assumptions::default();
        Self {
            high_periods: a.alarm_high_periods,
            low_periods: a.alarm_low_periods,
            low_ratio: a.alarm_low_ratio,
        }
    }
}

pub fn now() -> f64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() as f64) / 1000.0
}

fn s<'a>(input: &'a Value, field: &str) -> Option<&'a str> {
    input.get(field).and_then(Value::as_str)
}

pub(crate) fn required<'a>(input: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    s(input, field).filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::new("ValidationException", format!("1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null", lower_first(field)))
    })
}

fn lower_first(field: &str) -> String {
    let mut chars = field.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

fn int(input: &Value, field: &str) -> Option<i64> {
    input
        .get(field)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

fn string_list(input: &Value, field: &str) -> Vec<String> {
    input
        .get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Pages `items` with an opaque numeric NextToken.
fn page(
    items: Vec<Value>,
    input: &Value,
    max_field: &str,
    default_max: usize,
    limit: usize,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    // CloudWatch's only paged call here uses MaxRecords; its constraint errors are ValidationError.
    let code = if max_field == "MaxRecords" {
        "ValidationError"
    } else {
        "ValidationException"
    };
    let max = match int(input, max_field) {
        Some(n) if n < 1 || n as usize > limit => {
            return Err(ApiError::new(
                code,
                format!(
                    "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: Member must have value between 1 and {limit}",
                    lower_first(max_field)
                ),
            ));
        }
        Some(n) => n as usize,
        None => default_max,
    };
    let start = match s(input, "NextToken") {
        None | Some("") => 0,
        Some(token) => token.parse::<usize>().map_err(|_| {
            ApiError::new(
                "InvalidNextTokenException",
                "The next token supplied was invalid.",
            )
        })?,
    };
    let end = (start + max).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items.into_iter().skip(start).take(max).collect(), next))
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

    /// Records which endpoints a write changes the configuration of (before it runs: a deleted
    /// alarm's endpoint is read from the alarm). Tags change nothing the model reads.
    fn mark_changed(&mut self, service: &str, operation: &str, input: &Value) {
        if operation.contains("Tag") {
            return;
        }
        let of_alarm = |alarm: &Alarm| -> Vec<String> {
            alarm
                .config
                .get("Dimensions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|d| d["Name"] == "EndpointName")
                .filter_map(|d| d["Value"].as_str().map(str::to_string))
                .collect()
        };
        let alarm_names: Vec<&str> = match input.get("AlarmNames").and_then(Value::as_array) {
            Some(names) => names.iter().filter_map(Value::as_str).collect(),
            None => input
                .get("AlarmName")
                .and_then(Value::as_str)
                .into_iter()
                .collect(),
        };
        let endpoints: Option<Vec<String>> = match service {
            "application-autoscaling" => input
                .get("ResourceId")
                .and_then(Value::as_str)
                .and_then(|id| id.strip_prefix("endpoint/"))
                .and_then(|rest| rest.split('/').next())
                .map(|name| vec![name.to_string()]),
            "cloudwatch" if !alarm_names.is_empty() => {
                let mut names: Vec<String> = alarm_names
                    .iter()
                    .filter_map(|n| self.here.alarms.get(*n))
                    .flat_map(of_alarm)
                    .collect();
                // A new or changed alarm's own dimensions.
                names.extend(
                    input
                        .get("Dimensions")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter(|d| d["Name"] == "EndpointName")
                        .filter_map(|d| d["Value"].as_str().map(str::to_string)),
                );
                Some(names)
            }
            _ => None,
        };
        match endpoints {
            Some(names) => {
                for name in names {
                    self.changed_endpoints
                        .insert((self.region.clone(), name), self.config_version);
                }
            }
            None => self.changed_unattributed = self.config_version,
        }
    }

    /// The time the account stamps on what it creates: the model's clock once it has run.
    pub(crate) fn clock(&self) -> f64 {
        self.virtual_now.unwrap_or_else(now)
    }

    /// Whether the configuration of `endpoint` (in the selected region) changed after `version`.
    pub(crate) fn changed_since(&self, endpoint: &str, version: u64) -> bool {
        self.changed_unattributed > version
            || self
                .changed_endpoints
                .get(&(self.region.clone(), endpoint.to_string()))
                .is_some_and(|at| *at > version)
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

    fn uuid(&mut self) -> String {
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

    /// Dispatches one operation of one service. `region` comes from the request's signature.
    pub fn handle(
        &mut self,
        service: &str,
        operation: &str,
        input: &Value,
        region: &str,
    ) -> ApiResult {
        self.record_call(service, operation);
        self.select_region(region);
        if !["Describe", "List", "Get"]
            .iter()
            .any(|read| operation.starts_with(read))
        {
            self.config_version += 1;
            self.mark_changed(service, operation, input);
        }
        match (service, operation) {
            ("application-autoscaling", "RegisterScalableTarget") => {
                self.register_scalable_target(input, region)
            }
            ("application-autoscaling", "DescribeScalableTargets") => {
                self.describe_scalable_targets(input)
            }
            ("application-autoscaling", "DeregisterScalableTarget") => {
                self.deregister_scalable_target(input)
            }
            ("application-autoscaling", "PutScalingPolicy") => {
                self.put_scaling_policy(input, region)
            }
            ("application-autoscaling", "DescribeScalingPolicies") => {
                self.describe_scaling_policies(input)
            }
            ("application-autoscaling", "DeleteScalingPolicy") => self.delete_scaling_policy(input),
            ("application-autoscaling", "PutScheduledAction") => {
                self.put_scheduled_action(input, region)
            }
            ("application-autoscaling", "DescribeScheduledActions") => {
                self.describe_scheduled_actions(input)
            }
            ("application-autoscaling", "DeleteScheduledAction") => {
                self.delete_scheduled_action(input)
            }
            ("application-autoscaling", "DescribeScalingActivities") => {
                self.describe_scaling_activities(input)
            }
            ("application-autoscaling", "TagResource") => self.aas_tag_resource(input),
            ("application-autoscaling", "UntagResource") => self.aas_untag_resource(input),
            ("application-autoscaling", "ListTagsForResource") => self.aas_list_tags(input),
            ("cloudwatch", "PutMetricAlarm") => self.put_metric_alarm(input, region),
            ("cloudwatch", "DescribeAlarms") => self.describe_alarms(input, region),
            ("cloudwatch", "DeleteAlarms") => self.delete_alarms(input, region),
            ("cloudwatch", "SetAlarmState") => self.set_alarm_state(input),
            ("cloudwatch", "ListTagsForResource") => self.cw_list_tags(input, region),
            ("cloudwatch", "TagResource") => self.cw_tag_resource(input, region),
            ("cloudwatch", "UntagResource") => self.cw_untag_resource(input, region),
            ("service-quotas", "GetServiceQuota") => self.get_service_quota(input, region, false),
            ("service-quotas", "GetAWSDefaultServiceQuota") => {
                self.get_service_quota(input, region, true)
            }
            ("service-quotas", "ListServiceQuotas") => {
                self.list_service_quotas(input, region, false)
            }
            ("service-quotas", "ListAWSDefaultServiceQuotas") => {
                self.list_service_quotas(input, region, true)
            }
            _ => Err(ApiError::new(
                "UnknownOperationException",
                format!("{service} {operation} is not supported by the asyncscale simulator"),
            )),
        }
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
            .map(scheduled::ScheduledAction::described)
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

fn alarm_arn(account: &str, region: &str, name: &str) -> String {
    let partition = partition(region);
    format!("arn:{partition}:cloudwatch:{region}:{account}:alarm:{name}")
}

/// The ARN partition of a region: `aws-cn` for China, `aws-us-gov` for GovCloud, else `aws`
/// (ARN reference, "partition").
pub(crate) fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

fn region_of(arn: &str) -> &str {
    arn.split(':').nth(3).unwrap_or("us-east-1")
}

fn with_token(mut v: Value, next: Option<String>) -> Value {
    if let Some(token) = next {
        v["NextToken"] = json!(token);
    }
    v
}

#[cfg(test)]
mod random_fault_tests {
    use super::RandomFaults;

    #[test]
    fn the_share_of_faults_is_the_rate_and_the_kinds_take_turns() {
        let mut faults = RandomFaults::new(0.3, 7);
        let drawn: Vec<_> = (0..10_000)
            .filter_map(|_| faults.draw("cloudwatch"))
            .collect();
        let share = drawn.len() as f64 / 10_000.0;
        assert!((0.28..0.32).contains(&share), "{share}");
        let codes: Vec<(&str, u16)> = drawn[..3]
            .iter()
            .map(|e| (e.code.as_str(), e.status))
            .collect();
        assert_eq!(
            codes,
            [
                ("InternalServiceError", 500),
                ("ServiceUnavailable", 503),
                ("Throttling", 400)
            ]
        );
        let mut none = RandomFaults::new(0.0, 7);
        assert!((0..1000).all(|_| none.draw("cloudwatch").is_none()));
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
mod changed_endpoint_tests {
    use super::{Account, QuotaTable};
    use serde_json::json;

    /// The model re-reads only the endpoints a write changed: each write must name the right
    /// ones, a deleted alarm's endpoint included (read from the alarm before it goes).
    #[test]
    fn writes_mark_the_endpoints_whose_configuration_they_change() {
        let mut account = Account::new(QuotaTable::default());
        let target = json!({"ServiceNamespace": "sagemaker", "ResourceId": "endpoint/a/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "MinCapacity": 0, "MaxCapacity": 2});
        let register = |account: &mut Account| {
            account
                .handle(
                    "application-autoscaling",
                    "RegisterScalableTarget",
                    &target,
                    "us-east-1",
                )
                .unwrap();
        };
        register(&mut account);
        let seen = account.config_version;
        assert!(!account.changed_since("a", seen) && !account.changed_since("b", seen));
        let alarm = json!({"AlarmName": "x", "Namespace": "AWS/SageMaker", "MetricName": "HasBacklogWithoutCapacity",
            "Dimensions": [{"Name": "EndpointName", "Value": "b"}], "Statistic": "Average", "Period": 60,
            "EvaluationPeriods": 1, "Threshold": 1.0, "ComparisonOperator": "GreaterThanOrEqualToThreshold"});
        account
            .handle("cloudwatch", "PutMetricAlarm", &alarm, "us-east-1")
            .unwrap();
        assert!(account.changed_since("b", seen) && !account.changed_since("a", seen));
        let seen = account.config_version;
        account
            .handle(
                "cloudwatch",
                "DeleteAlarms",
                &json!({"AlarmNames": ["x"]}),
                "us-east-1",
            )
            .unwrap();
        assert!(
            account.changed_since("b", seen),
            "the deleted alarm's endpoint"
        );
        let seen = account.config_version;
        register(&mut account);
        assert!(account.changed_since("a", seen) && !account.changed_since("b", seen));
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
