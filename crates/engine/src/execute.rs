//! Applying a plan: each change through the port, in order, the write fence asked before each,
//! and "not found" right after a registration retried (eventual consistency).

use std::collections::BTreeMap;
use std::time::Duration;

use asyncscale_core::plan::{Change, PlannedChange};
use asyncscale_core::*;

use crate::error::{AwsError, ErrorClass};
use crate::fence::Fence;
use crate::port::AutoscalingBackend;

/// Waits before retrying a change that AWS answered with "not found" right after the target was
/// registered in the same plan: "there might be a brief delay until the operation achieves
/// eventual consistency ... The typical strategy is to retry the request" (docs/aws-behaviour.md §2.1).
/// 0.25 + 0.5 + 1 + 2 + 4 s: under 8 s in all.
const EVENTUAL_CONSISTENCY_WAITS: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// Runs the changes in order and stops at the first failure, which it returns with its change.
/// The fence is checked before each change; a change that AWS answers with "not found" right
/// after this plan registered the target is retried briefly (eventual consistency, §2.1).
pub(crate) async fn execute<'p>(
    backend: &dyn AutoscalingBackend,
    changes: &'p [PlannedChange],
    fence: &Fence,
) -> (usize, Result<(), (&'p PlannedChange, AwsError)>) {
    let mut policy_arns: BTreeMap<String, String> = BTreeMap::new();
    let mut registered_here = false;
    for (done, planned) in changes.iter().enumerate() {
        let removal = matches!(
            planned.change,
            Change::DeregisterTarget { .. }
                | Change::DeletePolicy { .. }
                | Change::DeleteAlarm { .. }
                | Change::DeleteScheduledAction { .. }
        );
        let mut waits = EVENTUAL_CONSISTENCY_WAITS.iter();
        let result = loop {
            if let Err(e) = fence.check() {
                return (done, Err((planned, e)));
            }
            let result = execute_one(backend, &planned.change, &mut policy_arns).await;
            match &result {
                Err(e) if registered_here && !removal && e.class == ErrorClass::NotFound => {
                    match waits.next() {
                        Some(wait) => tokio::time::sleep(*wait).await,
                        None => break result,
                    }
                }
                _ => break result,
            }
        };
        match result {
            // Removing what is already gone is done, not failed (deletes must be idempotent).
            Err(e) if removal && e.class == ErrorClass::NotFound => {}
            Err(e) => return (done, Err((planned, e))),
            Ok(()) => {}
        }
        registered_here |= matches!(planned.change, Change::RegisterTarget { create: true, .. });
    }
    (changes.len(), Ok(()))
}

async fn execute_one(
    backend: &dyn AutoscalingBackend,
    change: &Change,
    policy_arns: &mut BTreeMap<String, String>,
) -> Result<(), AwsError> {
    match change {
        Change::RegisterTarget { target, tags, .. } => backend
            .register_target(target, (!tags.is_empty()).then_some(tags))
            .await
            .map(drop),
        Change::DeregisterTarget { resource_id } => backend.deregister_target(resource_id).await,
        Change::TagTarget { arn, tags } => backend.tag_target(arn, tags).await,
        Change::UntagTarget { arn, keys } => backend.untag_target(arn, keys).await,
        Change::TagAlarm { arn, tags } => backend.tag_alarm(arn, tags).await,
        Change::UntagAlarm { arn, keys } => backend.untag_alarm(arn, keys).await,
        Change::PutPolicy { policy } => backend.put_policy(policy).await.map(|arn| {
            policy_arns.insert(policy.name.clone(), arn);
        }),
        Change::DeletePolicy { resource_id, name } => {
            backend.delete_policy(resource_id, name).await
        }
        Change::PutAlarm {
            alarm,
            tags,
            action,
        } => {
            let arn = match action {
                AlarmActionArn::Known(arn) => arn.clone(),
                AlarmActionArn::OfPolicy(name) => {
                    policy_arns.get(name).cloned().unwrap_or_default()
                }
            };
            let alarm = MetricAlarm {
                alarm_actions: vec![arn],
                ..alarm.clone()
            };
            backend.put_alarm(&alarm, tags).await
        }
        Change::DeleteAlarm { name } => backend.delete_alarm(name).await,
        Change::PutScheduledAction { action } => backend.put_scheduled_action(action).await,
        Change::DeleteScheduledAction { resource_id, name } => {
            backend.delete_scheduled_action(resource_id, name).await
        }
    }
}
