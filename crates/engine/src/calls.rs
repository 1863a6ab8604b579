//! Counts of AWS calls by service, operation and outcome, for the CLI's report, tests and metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallKey {
    pub service: &'static str,
    pub operation: &'static str,
    /// `ok`, `throttled`, or the error class (`terminal`, `recoverable`, `not_found`).
    pub outcome: &'static str,
}

/// Shared, cheap to clone; every adapter call records one entry per request sent.
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    counts: Arc<Mutex<BTreeMap<CallKey, u64>>>,
    /// Time requests waited for the request budget, by service and operation.
    waits: Arc<Mutex<BTreeMap<(&'static str, &'static str), Duration>>>,
}

/// Operations that change AWS; everything else only reads.
const WRITE_PREFIXES: &[&str] = &[
    "Register",
    "Deregister",
    "Put",
    "Delete",
    "Tag",
    "Untag",
    "Set",
];

impl CallCounter {
    pub fn record(&self, service: &'static str, operation: &'static str, outcome: &'static str) {
        let key = CallKey {
            service,
            operation,
            outcome,
        };
        *self
            .counts
            .lock()
            .expect("call counter lock")
            .entry(key)
            .or_default() += 1;
    }

    pub fn record_wait(&self, service: &'static str, operation: &'static str, waited: Duration) {
        *self
            .waits
            .lock()
            .expect("call counter lock")
            .entry((service, operation))
            .or_default() += waited;
    }

    /// Total time requests waited for the request budget, by service and operation.
    pub fn waited(&self) -> BTreeMap<(&'static str, &'static str), Duration> {
        self.waits.lock().expect("call counter lock").clone()
    }

    pub fn snapshot(&self) -> BTreeMap<CallKey, u64> {
        self.counts.lock().expect("call counter lock").clone()
    }

    /// Requests sent for operations whose name `matches`, whatever their outcome.
    pub fn count(&self, matches: impl Fn(&str) -> bool) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(k, _)| matches(k.operation))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    pub fn writes(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(k, _)| is_write(k.operation))
            .map(|(_, n)| n)
            .sum()
    }
}

pub fn is_write(operation: &str) -> bool {
    WRITE_PREFIXES.iter().any(|p| operation.starts_with(p))
}
