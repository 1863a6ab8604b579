//! Which changes in a status are news a person should hear about (a Kubernetes Event), decided
//! without I/O: the controller only publishes what this returns.

use asyncscale_api::AsyncEndpointScalingStatus;

use crate::conditions::{ConditionStatus, ConditionType, Reason};
use crate::status::{SyncOutcome, find, is};

/// One piece of news about a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// A Warning (something is wrong) rather than a Normal Event.
    pub warning: bool,
    /// The Event's reason, CamelCase.
    pub reason: String,
    /// What asyncscale was doing: `Apply` or `Scale`.
    pub action: &'static str,
    pub note: String,
}

impl Notice {
    fn new(warning: bool, reason: &str, action: &'static str, note: &str) -> Self {
        Self {
            warning,
            reason: reason.to_string(),
            action,
            note: note.to_string(),
        }
    }
}

/// The news in `status` compared with `previous`: the quota clamp applied or lifted (once AWS
/// holds it), a failed scaling activity (once per activity), a conflict, a quota too low or not
/// readable (once each, until it changes), and every failed apply.
pub fn notices(
    previous: Option<&AsyncEndpointScalingStatus>,
    status: &AsyncEndpointScalingStatus,
    outcome: &SyncOutcome,
) -> Vec<Notice> {
    let mut news = Vec::new();
    let was = |kind: ConditionType, s: ConditionStatus, r: Reason| {
        previous
            .and_then(|p| find(p, kind))
            .is_some_and(|c| is(c, s, r))
    };
    let synced_was = |r: Reason| {
        previous
            .and_then(|p| find(p, ConditionType::Synced))
            .is_some_and(|c| c.reason == r.as_str())
    };
    if let Some(clamp) =
        find(status, ConditionType::QuotaClamped).filter(|_| *outcome == SyncOutcome::InSync)
    {
        // A share below maxCapacity lowers it as a clamp does.
        let now = is(clamp, ConditionStatus::True, Reason::Clamped)
            || is(clamp, ConditionStatus::True, Reason::Shared);
        let before = [Reason::Clamped, Reason::Shared]
            .into_iter()
            .any(|r| was(ConditionType::QuotaClamped, ConditionStatus::True, r));
        if now && !before {
            news.push(Notice::new(
                false,
                "QuotaClampApplied",
                "Apply",
                &clamp.message,
            ));
        } else if before && clamp.reason == Reason::WithinQuota.as_str() {
            news.push(Notice::new(
                false,
                "QuotaClampLifted",
                "Apply",
                &clamp.message,
            ));
        }
    }
    if let (Some(activity), Some(healthy)) = (
        &status.last_scaling_activity,
        find(status, ConditionType::ScalingHealthy),
    ) && activity.status_code == "Failed"
        && previous.and_then(|p| p.last_scaling_activity.as_ref()) != Some(activity)
    {
        news.push(Notice::new(
            true,
            &healthy.reason,
            "Scale",
            &healthy.message,
        ));
    }
    // A schedule that ran: its last run (from the activity it caused) moved.
    for schedule in &status.schedules {
        let before = previous.and_then(|p| p.schedules.iter().find(|s| s.name == schedule.name));
        if let (Some(before), Some(ran)) = (before, &schedule.last_run)
            && before.last_run.as_ref() != Some(ran)
        {
            let next = schedule
                .next_run
                .as_deref()
                .map_or("it will not run again".to_string(), |n| {
                    format!("next run {n}")
                });
            news.push(Notice::new(
                false,
                "ScheduledActionRan",
                "Scale",
                &format!(
                    "schedule {} (scheduled action {}) ran at {ran}; {next}",
                    schedule.name, schedule.action_name
                ),
            ));
        }
    }
    match outcome {
        SyncOutcome::Conflict(message) if !synced_was(Reason::Conflict) => {
            news.push(Notice::new(true, "Conflict", "Apply", message));
        }
        SyncOutcome::ApplyFailed(message) => {
            news.push(Notice::new(true, "ApplyFailed", "Apply", message));
        }
        SyncOutcome::RoleNotAssumed(message) if !synced_was(Reason::RoleNotAssumed) => {
            news.push(Notice::new(true, "RoleNotAssumed", "Apply", message));
        }
        SyncOutcome::QuotaTooLow(message) if !synced_was(Reason::QuotaTooLow) => {
            news.push(Notice::new(true, "QuotaTooLow", "Apply", message));
        }
        SyncOutcome::WaitingForQuota(message) if !synced_was(Reason::WaitingForQuota) => {
            news.push(Notice::new(true, "WaitingForQuota", "Apply", message));
        }
        SyncOutcome::EndpointUnusable(problem) if !synced_was(problem.reason()) => {
            news.push(Notice::new(
                true,
                problem.reason().as_str(),
                "Apply",
                &problem.to_string(),
            ));
        }
        // A passing failure to read AWS is not news; one that outlasts the last good observation
        // (Ready turns Unknown) is.
        SyncOutcome::ObserveFailed(message)
            if find(status, ConditionType::Ready)
                .is_some_and(|c| is(c, ConditionStatus::Unknown, Reason::ObserveFailed))
                && !was(
                    ConditionType::Ready,
                    ConditionStatus::Unknown,
                    Reason::ObserveFailed,
                ) =>
        {
            news.push(Notice::new(true, "AWSUnreadable", "Apply", message));
        }
        _ => {}
    }
    news
}

#[cfg(test)]
mod tests {
    use super::*;
    use asyncscale_api::ScalingActivityStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn with(conditions: &[(ConditionType, ConditionStatus, Reason)]) -> AsyncEndpointScalingStatus {
        AsyncEndpointScalingStatus {
            conditions: conditions
                .iter()
                .map(|(k, s, r)| Condition {
                    type_: k.as_str().into(),
                    status: s.as_str().into(),
                    reason: r.as_str().into(),
                    message: format!("{r}"),
                    observed_generation: None,
                    last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn reasons(news: &[Notice]) -> Vec<&str> {
        news.iter().map(|n| n.reason.as_str()).collect()
    }

    #[test]
    fn an_endpoint_problem_is_news_once_until_it_changes() {
        use ConditionStatus::*;
        let problem = crate::endpoint::EndpointProblem::NotFound {
            endpoint: "sdxl-async".into(),
            region: "us-east-1".into(),
        };
        let outcome = SyncOutcome::EndpointUnusable(Box::new(problem));
        let now = with(&[(ConditionType::Synced, False, Reason::EndpointNotFound)]);
        let fine = with(&[(ConditionType::Synced, True, Reason::InSync)]);
        let first = notices(Some(&fine), &now, &outcome);
        assert_eq!(reasons(&first), ["EndpointNotFound"]);
        assert!(first[0].warning && first[0].note.contains("does not exist"));
        assert!(notices(Some(&now), &now, &outcome).is_empty(), "not again");
    }

    #[test]
    fn the_clamp_is_news_when_aws_first_holds_it_and_when_it_is_lifted() {
        use ConditionStatus::*;
        let clamped = with(&[(ConditionType::QuotaClamped, True, Reason::Clamped)]);
        let within = with(&[(ConditionType::QuotaClamped, False, Reason::WithinQuota)]);
        assert_eq!(
            reasons(&notices(None, &clamped, &SyncOutcome::InSync)),
            ["QuotaClampApplied"]
        );
        assert!(notices(Some(&clamped), &clamped, &SyncOutcome::InSync).is_empty());
        assert!(
            notices(None, &clamped, &SyncOutcome::ApplyFailed("x".into()))
                .iter()
                .all(|n| n.reason != "QuotaClampApplied"),
            "not before AWS holds it"
        );
        assert_eq!(
            reasons(&notices(Some(&clamped), &within, &SyncOutcome::InSync)),
            ["QuotaClampLifted"]
        );
    }

    #[test]
    fn a_failed_activity_is_news_once_and_conflicts_once() {
        let mut failed = with(&[(
            ConditionType::ScalingHealthy,
            ConditionStatus::False,
            Reason::QuotaExceeded,
        )]);
        failed.last_scaling_activity = Some(ScalingActivityStatus {
            status_code: "Failed".into(),
            description: "Setting desired instance count to 20.".into(),
            message: None,
            start_time: "2026-11-28T00:00:00Z".into(),
        });
        let first = notices(None, &failed, &SyncOutcome::InSync);
        assert_eq!(reasons(&first), ["QuotaExceeded"]);
        assert!(first[0].warning);
        assert!(notices(Some(&failed), &failed, &SyncOutcome::InSync).is_empty());

        let conflict = SyncOutcome::Conflict("owned by x/y".into());
        let in_conflict = with(&[(
            ConditionType::Synced,
            ConditionStatus::False,
            Reason::Conflict,
        )]);
        assert_eq!(
            reasons(&notices(None, &in_conflict, &conflict)),
            ["Conflict"]
        );
        assert!(notices(Some(&in_conflict), &in_conflict, &conflict).is_empty());
        let failing = SyncOutcome::ApplyFailed("boom".into());
        assert_eq!(
            reasons(&notices(Some(&in_conflict), &in_conflict, &failing)),
            ["ApplyFailed"]
        );
    }
}
