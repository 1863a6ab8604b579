//! Every request the local endpoint answered, in order, with who signed it: what a soak's
//! "one writer" check needs (no write made with the keys of a replica that did not hold the
//! Lease) and what a reader of a run's history wants to see.
//!
//! Who signed a request is the access key id of its SigV4 `Authorization` header; for session
//! credentials that STS AssumeRole issued, also the key that assumed the role (`sourceKey`), so
//! that a write in another account is still attributed to the process that made it. Times are
//! epoch seconds on this machine's clock, when the request arrived and when it was answered (a
//! write takes effect at its answer).
//!
//! Bounded: the oldest entries are dropped past [`CallLog::CAPACITY`] (counted in `dropped`);
//! a reader polls `GET /_sim/log?since=SEQ` for the entries after the last one it saw.

use std::collections::VecDeque;

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// 1, 2, 3… in the order answered.
    pub seq: u64,
    pub received_at: f64,
    pub answered_at: f64,
    /// The access key id the request was signed with (None: unsigned).
    pub key: Option<String>,
    /// For session credentials: the access key that called AssumeRole for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_key: Option<String>,
    /// The simulated account the request acted in.
    pub account: String,
    pub region: String,
    pub service: String,
    pub operation: String,
    /// Describe*, List*, Get*: false; everything else changes state.
    pub write: bool,
    /// The AWS error code answered; None: success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the request named: ResourceId, PolicyName, ScheduledActionName, AlarmName(s),
    /// EndpointName, QuotaCode, RoleArn, and the MinCapacity and MaxCapacity it sets, as
    /// `Field=value` joined by spaces.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub names: String,
}

#[derive(Debug, Default)]
pub struct CallLog {
    entries: VecDeque<Entry>,
    next: u64,
    pub dropped: u64,
}

/// Whether an operation only reads (AWS's naming: Describe, List, Get).
pub fn is_read(operation: &str) -> bool {
    ["Describe", "List", "Get"]
        .iter()
        .any(|prefix| operation.starts_with(prefix))
}

/// The names a request addresses, for reading a log by eye and for checks on foreign objects.
pub fn names_of(input: &Value) -> String {
    const FIELDS: [&str; 7] = [
        "ResourceId",
        "PolicyName",
        "ScheduledActionName",
        "AlarmName",
        "EndpointName",
        "QuotaCode",
        "RoleArn",
    ];
    let mut names: Vec<String> = FIELDS
        .iter()
        .filter_map(|field| {
            input
                .get(*field)
                .and_then(Value::as_str)
                .map(|v| format!("{field}={v}"))
        })
        .collect();
    // The capacities a RegisterScalableTarget sets: what a quota check reads a history for.
    names.extend(["MinCapacity", "MaxCapacity"].iter().filter_map(|field| {
        input
            .get(*field)
            .and_then(Value::as_i64)
            .map(|v| format!("{field}={v}"))
    }));
    if let Some(alarms) = input.get("AlarmNames").and_then(Value::as_array) {
        names.extend(
            alarms
                .iter()
                .filter_map(Value::as_str)
                .map(|a| format!("AlarmName={a}")),
        );
    }
    names.join(" ")
}

impl CallLog {
    pub const CAPACITY: usize = 500_000;

    /// Records one answered request; `entry.seq` is assigned here.
    pub fn push(&mut self, mut entry: Entry) {
        self.next += 1;
        entry.seq = self.next;
        self.entries.push_back(entry);
        if self.entries.len() > Self::CAPACITY {
            self.entries.pop_front();
            self.dropped += 1;
        }
    }

    /// The entries after `seq`, at most `limit` of them.
    pub fn since(&self, seq: u64, limit: usize) -> Vec<Entry> {
        let start = self.entries.partition_point(|e| e.seq <= seq);
        self.entries
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(operation: &str) -> Entry {
        Entry {
            seq: 0,
            received_at: 1.0,
            answered_at: 2.0,
            key: Some("replica-a".into()),
            source_key: None,
            account: "123456789012".into(),
            region: "us-east-1".into(),
            service: "application-autoscaling".into(),
            operation: operation.into(),
            write: !is_read(operation),
            error: None,
            names: String::new(),
        }
    }

    #[test]
    fn entries_are_numbered_in_order_and_read_after_a_sequence_number() {
        let mut log = CallLog::default();
        for op in [
            "DescribeScalableTargets",
            "RegisterScalableTarget",
            "PutScalingPolicy",
        ] {
            log.push(entry(op));
        }
        let after_first = log.since(1, 10);
        assert_eq!(
            after_first.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(after_first[0].write);
        assert_eq!(log.since(0, 1).len(), 1);
        assert!(log.since(3, 10).is_empty());
    }

    #[test]
    fn names_cover_single_and_batch_fields() {
        let input = json!({"ResourceId": "endpoint/a/variant/AllTraffic", "PolicyName": "p", "AlarmNames": ["x", "y"], "MaxCapacity": 3});
        assert_eq!(
            names_of(&input),
            "ResourceId=endpoint/a/variant/AllTraffic PolicyName=p MaxCapacity=3 AlarmName=x AlarmName=y"
        );
    }
}
