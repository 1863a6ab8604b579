//! The single-failure sweep of the shared quota: its scenarios, and the judge of its invariant.
//! Under `quota.policy: Share` the MaxCapacity values of the endpoints sharing an instance quota,
//! plus what other endpoints hold, never add up past the quota, so that no scale-out can fail
//! on it. Both sweeps (the CLI's, through the real binary, and the controller's, through the
//! fleet view) run these scenarios with each operation of the run failing in turn (see
//! [`crate::failures`]) and judge the local endpoint's record of every MaxCapacity write.

use std::collections::BTreeMap;

use crate::model::EndpointSpec;
use crate::{QuotaTable, SimServer};

/// The instance type every scenario uses.
pub const TYPE: &str = "ml.g4dn.xlarge";

/// Two runs over one account: `before` sets it up, `after` is the run under test.
#[derive(Debug)]
pub struct Scenario {
    pub name: &'static str,
    /// The account's applied quota, and AWS's default above it: a fall-back to the default on
    /// one failed answer would raise caps.
    pub applied: u32,
    pub default: u32,
    /// Endpoints asyncscale does not manage, and the instances they hold.
    pub unmanaged: &'static [(&'static str, u32)],
    /// The managed endpoints' instances.
    pub managed: &'static [(&'static str, u32)],
    /// maxCapacity of each resource in the first run, and in the run under test (in file order).
    pub before: &'static [(&'static str, u32)],
    pub after: &'static [(&'static str, u32)],
    /// The applied quota is changed to this between the two runs.
    pub applied_after: Option<u32>,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "two endpoints, b lowered while a is raised (a first in the file)",
        applied: 4,
        default: 8,
        unmanaged: &[],
        managed: &[("a1", 0), ("b1", 0)],
        before: &[("a1", 3), ("b1", 3)],
        after: &[("a1", 3), ("b1", 1)],
        applied_after: None,
    },
    Scenario {
        name: "two endpoints, b lowered while a is raised (b first in the file)",
        applied: 4,
        default: 8,
        unmanaged: &[],
        managed: &[("a1", 0), ("b1", 0)],
        before: &[("a1", 3), ("b1", 3)],
        after: &[("b1", 1), ("a1", 3)],
        applied_after: None,
    },
    Scenario {
        name: "three endpoints, c lowered while a and b are raised",
        applied: 6,
        default: 12,
        unmanaged: &[],
        managed: &[("a3", 1), ("b3", 0), ("c3", 0)],
        before: &[("a3", 4), ("b3", 4), ("c3", 4)],
        after: &[("a3", 4), ("c3", 1), ("b3", 4)],
        applied_after: None,
    },
    Scenario {
        name: "an unmanaged endpoint holds 2 of 4, nothing changes",
        applied: 4,
        default: 8,
        unmanaged: &[("held", 2)],
        managed: &[("s1", 0), ("s2", 0)],
        before: &[("s1", 4), ("s2", 4)],
        after: &[("s1", 4), ("s2", 4)],
        applied_after: None,
    },
    Scenario {
        name: "the quota lowered from 6 to 4 under two endpoints",
        applied: 6,
        default: 8,
        unmanaged: &[],
        managed: &[("q1", 1), ("q2", 0)],
        before: &[("q1", 3), ("q2", 3)],
        after: &[("q1", 3), ("q2", 3)],
        applied_after: Some(4),
    },
];

impl Scenario {
    /// The quota in force during the run under test.
    pub fn quota(&self) -> u32 {
        self.applied_after.unwrap_or(self.applied)
    }

    /// The quota table the account starts with.
    pub fn quotas(&self) -> QuotaTable {
        QuotaTable {
            applied: BTreeMap::from([(quota_name(), f64::from(self.applied))]),
            defaults: BTreeMap::from([(quota_name(), f64::from(self.default))]),
        }
    }

    /// Declares every endpoint in `server`.
    pub fn declare(&self, server: &SimServer) {
        let mut world = server.world.lock().expect("world lock");
        for (name, instances) in self.unmanaged.iter().chain(self.managed) {
            world.add_endpoint(EndpointSpec {
                initial_instances: *instances,
                ..EndpointSpec::idle(name, "AllTraffic", TYPE)
            });
        }
    }

    /// After the first run: the quota changes, and the record of writes starts afresh.
    pub fn between_runs(&self, server: &SimServer) {
        let mut account = server.account.lock().expect("account lock");
        if let Some(applied) = self.applied_after {
            account
                .quotas
                .applied
                .insert(quota_name(), f64::from(applied));
        }
        account.max_capacity_writes.clear();
    }
}

fn quota_name() -> String {
    format!("{TYPE} for endpoint usage")
}

/// The resources of a run as YAML documents, each `quota.policy: Share`.
pub fn manifest(resources: &[(&str, u32)]) -> String {
    resources
        .iter()
        .map(|(name, max)| {
            format!(
                "apiVersion: asyncscale.io/v1alpha1\nkind: AsyncEndpointScaling\nmetadata: {{name: {name}, namespace: ml}}\nspec: {{endpointName: {name}, instanceType: {TYPE}, maxCapacity: {max}, targetTracking: {{targetValue: 5}}, quota: {{policy: Share}}}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The account as the run under test starts: each endpoint's instances and each target's
/// MaxCapacity, by resource id.
#[derive(Debug, Clone)]
pub struct Start {
    instances: BTreeMap<String, u32>,
    maxes: BTreeMap<String, i64>,
}

impl Start {
    pub fn read(server: &SimServer) -> Self {
        let world = server.world.lock().expect("world lock");
        let instances = world
            .endpoints
            .iter()
            .map(|e| {
                let s = e.snapshot();
                let current =
                    s["inService"].as_u64().unwrap_or(0) + s["starting"].as_u64().unwrap_or(0);
                let desired = s["desired"].as_u64().unwrap_or(0);
                (
                    s["resourceId"].as_str().unwrap_or_default().to_string(),
                    current.max(desired) as u32,
                )
            })
            .collect();
        drop(world);
        let state = server
            .account
            .lock()
            .expect("account lock")
            .snapshot(crate::DEFAULT_REGION);
        let maxes = state["ScalableTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some((
                    t["ResourceId"].as_str()?.to_string(),
                    t["MaxCapacity"].as_i64()?,
                ))
            })
            .collect();
        Self { instances, maxes }
    }

    /// What the endpoints of the type may hold: each the larger of its target's MaxCapacity and
    /// its instances.
    fn allowed(&self, maxes: &BTreeMap<String, i64>) -> u32 {
        self.instances
            .iter()
            .map(|(id, n)| (maxes.get(id).copied().unwrap_or(0).max(0) as u32).max(*n))
            .sum()
    }

    /// What the account allowed as the run started.
    pub fn allowed_at_start(&self) -> u32 {
        self.allowed(&self.maxes)
    }

    /// Replays `server`'s record of MaxCapacity writes since the run started: each write that
    /// raised what the caps allow past `quota` is a violation (a lowering never is: it puts
    /// right a quota lowered below what is reserved). Returns the violations and what the caps
    /// allow at the end.
    pub fn judge(&self, server: &SimServer, quota: u32) -> (Vec<String>, u32, usize) {
        let writes = server
            .account
            .lock()
            .expect("account lock")
            .max_capacity_writes
            .clone();
        let mut maxes = self.maxes.clone();
        let mut violations = Vec::new();
        for (i, (_, id, max)) in writes.iter().enumerate() {
            let before = self.allowed(&maxes);
            match max {
                Some(m) => maxes.insert(id.clone(), *m),
                None => maxes.remove(id),
            };
            let after = self.allowed(&maxes);
            if after > before && after > quota {
                violations.push(format!(
                    "write {} ({id} → {max:?}) raised what the caps allow to {after} of a quota of {quota}",
                    i + 1
                ));
            }
        }
        (violations, self.allowed(&maxes), writes.len())
    }
}

/// Queues `requests` on every endpoint and runs the scaling model for `seconds`: how many
/// scaling activities failed on the account's quota meanwhile.
pub fn traffic(server: &SimServer, requests: f64, seconds: f64) -> usize {
    let failed = |server: &SimServer| {
        server
            .account
            .lock()
            .expect("account lock")
            .activities()
            .iter()
            .filter(|a| {
                a.status_code == "Failed"
                    && a.status_message
                        .as_deref()
                        .is_some_and(|m| m.contains("account-level service limit"))
            })
            .count()
    };
    let before = failed(server);
    {
        let mut world = server.world.lock().expect("world lock");
        let mut account = server.account.lock().expect("account lock");
        let now = world.now;
        for e in world.endpoints.iter_mut() {
            e.enqueue(now, requests);
        }
        world.advance(&mut account, seconds);
    }
    failed(server) - before
}

/// A failure of the `position`-th call (from 0) of an operation of a service.
pub type Injected = (String, String, u32, crate::failures::Failure);

/// One case: a scenario, and the failure injected in its run (None: the run without one).
pub type Case = (&'static Scenario, Option<Injected>);

/// How a case is named in the table: "RegisterScalableTarget #2 500", or "no fault".
pub fn label(fault: &Option<Injected>) -> String {
    match fault {
        Some((_, op, pos, failure)) => format!("{op} #{} {}", pos + 1, failure.label()),
        None => "no fault".to_string(),
    }
}

/// The operations made between two of the account's counts of requests answered
/// ([`crate::Account::calls`]), by service, and how often.
pub fn operations_between(
    before: &BTreeMap<String, BTreeMap<String, u64>>,
    after: &BTreeMap<String, BTreeMap<String, u64>>,
) -> Vec<(String, String, u64)> {
    let mut ops = Vec::new();
    for (service, by_op) in after {
        for (op, n) in by_op {
            let was = before.get(service).and_then(|m| m.get(op)).copied();
            let made = n - was.unwrap_or(0);
            if made > 0 {
                ops.push((service.clone(), op.clone(), made));
            }
        }
    }
    ops
}

/// The cases of one scenario: its run without a fault, then each of `operations` failed at each
/// position in each way.
pub fn cases_of(
    scenario: &'static Scenario,
    operations: &[(String, String, u64)],
    held_seconds: f64,
) -> Vec<Case> {
    let mut cases = vec![(scenario, None)];
    for (service, op, count) in operations {
        for position in 0..*count as u32 {
            for failure in crate::failures::Failure::all(held_seconds) {
                cases.push((
                    scenario,
                    Some((service.clone(), op.clone(), position, failure)),
                ));
            }
        }
    }
    cases
}

/// Runs `case` for each of `cases`, `parallel` at once (`SWEEP_ONLY=text` keeps the cases whose
/// scenario or label contains it). Each case answers its line of the table and the violations
/// it found. Returns the table under `header`, and every violation, named by scenario and case.
pub async fn run_cases<F, Fut>(
    mut cases: Vec<Case>,
    parallel: usize,
    header: &str,
    case: F,
) -> (String, Vec<String>)
where
    F: Fn(Case) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = (String, Vec<String>)> + Send + 'static,
{
    if let Ok(only) = std::env::var("SWEEP_ONLY") {
        cases.retain(|c| c.0.name.contains(&only) || label(&c.1).contains(&only));
    }
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut running = tokio::task::JoinSet::new();
    for (i, c) in cases.into_iter().enumerate() {
        let (slots, case) = (slots.clone(), case.clone());
        running.spawn(async move {
            let _slot = slots.acquire().await.expect("open semaphore");
            let (name, tag) = (c.0.name, label(&c.1));
            let (line, found) = case(c).await;
            let found: Vec<String> = found
                .into_iter()
                .map(|v| format!("{name}: {tag}: {v}"))
                .collect();
            (i, line, found)
        });
    }
    let mut results = Vec::new();
    while let Some(done) = running.join_next().await {
        results.push(done.expect("a case panicked"));
    }
    results.sort_by_key(|(i, _, _)| *i);
    let mut table = header.to_string();
    let mut violations = Vec::new();
    for (_, line, found) in results {
        table.push_str(&line);
        table.push('\n');
        violations.extend(found);
    }
    (table, violations)
}
