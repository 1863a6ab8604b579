//! What a request meets instead of (or before) AWS's answer: the faults a test injects
//! (`POST /_sim/faults`) and a share of passing errors (`--fault-rate`).

use crate::aws_error::ApiError;

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
