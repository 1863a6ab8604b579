//! One refresh of a fleet view: every target, policy, alarm, activity and endpoint of the place,
//! read in bulk with page retries, and the confirmation of what vanished from a listing.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use asyncscale_core::names::ALARM_PREFIX;
use asyncscale_core::{
    EndpointConfigState, EndpointState, ObservedAlarm, ObservedPolicy, ObservedScheduledAction,
    ObservedTarget, ScalingActivity,
};

use crate::error::{AwsError, ErrorClass};
use crate::port::Page;

use super::FleetView;
use super::picture::{is_finished, start_time};

/// Pages of activities the first refresh reads (50 each) before it stops and leaves the
/// resources it did not reach to a direct read; later refreshes read only what is new.
const FIRST_SWEEP_PAGES: usize = 20;

/// Pages of new activities one refresh reads at most (2,500 activities since the last refresh).
const SWEEP_PAGES: usize = 50;

/// Extra attempts for a page that failed recoverably (after the SDK's own retries): one failed
/// page must not fail a whole account's refresh.
const PAGE_WAITS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Endpoint and configuration descriptions a refresh reads at once (the request budget paces
/// them further).
const DESCRIBE_CONCURRENCY: usize = 16;

/// The longest the read of target tracking's firing alarms may take within a refresh.
const BACKLOG_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoints a refresh described, the configurations it read, and the endpoints it could
/// not describe (with why).
pub(super) type SweptEndpoints = (
    Vec<EndpointState>,
    Vec<EndpointConfigState>,
    Vec<(String, String)>,
);

/// What one refresh read.
pub(super) struct Sweep {
    pub(super) started: Instant,
    pub(super) targets: Vec<ObservedTarget>,
    pub(super) policies: Option<Vec<ObservedPolicy>>,
    pub(super) scheduled: Option<Vec<ObservedScheduledAction>>,
    pub(super) alarms: Vec<ObservedAlarm>,
    pub(super) activities: Vec<(String, ScalingActivity)>,
    /// The activity sweep reached the end of the history.
    pub(super) activities_complete: bool,
    /// The activity sweep stopped at its page limit before reaching what was known.
    pub(super) activities_cut: bool,
    pub(super) endpoints: Vec<EndpointState>,
    pub(super) configs: Vec<EndpointConfigState>,
    /// Endpoints listed that could not be described, with why.
    pub(super) unreadable: Vec<(String, String)>,
    /// None when the read failed or took too long: it serves only the on-call metrics, so it
    /// never fails or holds a refresh.
    pub(super) backlog_above_target: Option<Arc<HashSet<String>>>,
}

impl FleetView {
    pub(super) async fn sweep(&self) -> Result<Sweep, AwsError> {
        let started = Instant::now();
        let (refreshes, policies_at, newest_known, oldest_open) = {
            let picture = self.picture();
            (
                picture.refreshes,
                picture.policies_at,
                picture.activities_newest,
                picture
                    .activities
                    .values()
                    .flatten()
                    .filter(|a| !is_finished(a))
                    .filter_map(start_time)
                    .min(),
            )
        };
        // Every n-th refresh; and whenever the policies read last are older than n intervals:
        // after a long idle spell (a standby that leads again) the count says nothing of age,
        // and a soak saw a replica take the Lease back after 15 minutes of standby and rewrite
        // the policies of every resource created meanwhile, missing from its old picture.
        let every = self.config.policy_refresh_every.max(1);
        let policies_old = policies_at
            .is_none_or(|at| started.duration_since(at) > self.config.refresh_every * every);
        let sweep_policies = refreshes % u64::from(every) == 0 || policies_old;
        let inner = &self.inner;
        let (targets, policies, scheduled, alarms, activities, endpoints, backlog) = tokio::join!(
            all_pages(|next| inner.list_targets(next)),
            async {
                if sweep_policies {
                    all_pages(|next| inner.list_policies(next)).await.map(Some)
                } else {
                    Ok(None)
                }
            },
            async {
                if sweep_policies {
                    all_pages(|next| inner.list_scheduled_actions(next))
                        .await
                        .map(Some)
                } else {
                    Ok(None)
                }
            },
            all_pages(|next| inner.list_alarms(ALARM_PREFIX, next)),
            // Back to the newest activity seen before, and to the oldest one still in
            // progress then (its status may have changed since).
            self.sweep_activities(match (newest_known, oldest_open) {
                (Some(newest), Some(open)) => Some(newest.min(open)),
                (newest, _) => newest,
            }),
            self.sweep_endpoints(),
            async {
                if !self.config.read_backlog_alarms {
                    return None;
                }
                // Bounded on its own: a hung read of what only the metrics use must not hold
                // the refresh that every reconcile waits for.
                let bound = (self.config.refresh_every / 2)
                    .clamp(Duration::from_secs(1), BACKLOG_READ_TIMEOUT);
                match tokio::time::timeout(
                    bound,
                    with_page_retries(|| inner.backlog_above_target()),
                )
                .await
                {
                    Ok(Ok(firing)) => Some(firing),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "target-tracking alarms unread: which endpoints have backlog above their target is unknown until the next refresh");
                        None
                    }
                    Err(_) => {
                        tracing::warn!(timeout = ?bound, "target-tracking alarms unread (no answer in time): which endpoints have backlog above their target is unknown until the next refresh");
                        None
                    }
                }
            },
        );
        let (activities, activities_complete, activities_cut) = activities?;
        let (endpoints, configs, unreadable) = endpoints?;
        let mut targets = targets?;
        self.confirm_vanished_targets(&mut targets).await?;
        Ok(Sweep {
            started,
            targets,
            policies: policies?,
            scheduled: scheduled?,
            alarms: alarms?,
            activities,
            activities_complete,
            activities_cut,
            endpoints,
            configs,
            unreadable,
            backlog_above_target: backlog,
        })
    }

    /// Targets the picture had that the listing did not show, unless this view deregistered
    /// them, are read one by one before they are taken for gone. A listing is paged, and what
    /// a page token means when items are removed meanwhile is not documented: with a token
    /// that counts items, a target deregistered from an earlier page moves the next page's
    /// first one back onto the page already read, and it is listed nowhere. A soak saw exactly
    /// that: a target missing from the picture counted as no cap, and a raise put the caps one
    /// over the quota. Usually none vanish, so this costs nothing; an endpoint deleted behind
    /// asyncscale's back costs one DescribeScalableTargets.
    pub(super) async fn confirm_vanished_targets(
        &self,
        targets: &mut Vec<ObservedTarget>,
    ) -> Result<(), AwsError> {
        let (vanished, known): (Vec<String>, HashMap<String, ObservedTarget>) = {
            let picture = self.picture();
            let listed: HashSet<&str> = targets
                .iter()
                .map(|t| t.target.resource_id.as_str())
                .collect();
            // What the picture had, and what this view registered that no read has brought
            // into it yet (its cap is only in `written_max`); not what this view deregistered.
            let ids: HashSet<&String> = picture
                .targets
                .keys()
                .chain(
                    picture
                        .written_max
                        .iter()
                        .filter(|(_, max)| max.is_some())
                        .map(|(id, _)| id),
                )
                .filter(|id| !listed.contains(id.as_str()))
                .filter(|id| picture.written_max.get(*id) != Some(&None))
                .collect();
            let known = ids
                .iter()
                .filter_map(|id| picture.targets.get(*id).map(|t| ((*id).clone(), t.clone())))
                .collect();
            (ids.into_iter().cloned().collect(), known)
        };
        let inner = &self.inner;
        let read = read_each(
            vanished,
            |id| async move { inner.describe_target(&id).await },
        )
        .await;
        for (id, found) in read {
            match found {
                Ok(Some(found)) => {
                    tracing::debug!(resource = %id, "a target the listing skipped is still registered");
                    targets.push(found);
                }
                Ok(None) => {}
                Err(e) if e.class == ErrorClass::Recoverable => return Err(e),
                // Unreadable for good: what was known stands (its cap stays reserved).
                Err(_) => targets.extend(known.get(&id).cloned()),
            }
        }
        Ok(())
    }

    /// ListEndpoints (100 a page); DescribeEndpoint only for the endpoints whose status or
    /// LastModifiedTime moved since the last refresh (an instance count changes only through an
    /// update, which moves both); DescribeEndpointConfig only for names not read before. A
    /// no-drift refresh of N endpoints costs ceil(N/100) calls.
    pub(super) async fn sweep_endpoints(&self) -> Result<SweptEndpoints, AwsError> {
        let mut listed = all_pages(|next| self.inner.list_endpoints(next)).await?;
        // As for targets (see `confirm_vanished_targets`): an endpoint the picture had that the
        // listing skipped would take its instances out of every quota's count. Each is read
        // before it is taken for gone; one still there is listed as its description says.
        let vanished: Vec<String> = {
            let picture = self.picture();
            let names: HashSet<&str> = listed.iter().map(|s| s.name.as_str()).collect();
            picture
                .endpoints
                .keys()
                .filter(|name| !names.contains(name.as_str()))
                .cloned()
                .collect()
        };
        let inner = &self.inner;
        let read = read_each(vanished, |name| async move {
            inner.describe_endpoint(&name).await
        })
        .await;
        let mut vanished_unreadable = Vec::new();
        for (name, found) in read {
            match found {
                Ok(Some(endpoint)) => listed.push(endpoint.summary),
                Ok(None) => {}
                Err(e) if e.class == ErrorClass::Recoverable => return Err(e),
                // Unreadable for good: its last description stands for it, and it is named
                // unreadable, so that no shared cap is raised on its count.
                Err(e) => {
                    if let Some(old) = self.picture().endpoints.get(&name) {
                        listed.push(old.summary.clone());
                    }
                    vanished_unreadable.push((name, e.to_string()));
                }
            }
        }
        let (known, known_configs): (HashMap<String, EndpointState>, HashSet<String>) = {
            let picture = self.picture();
            (
                listed
                    .iter()
                    .filter_map(|s| picture.endpoints.get(&s.name).filter(|e| e.summary == *s))
                    .map(|e| (e.summary.name.clone(), e.clone()))
                    .collect(),
                picture
                    .configs
                    .keys()
                    .filter(|name| !picture.recalled_configs.contains(*name))
                    .cloned()
                    .collect(),
            )
        };
        let to_describe: Vec<String> = listed
            .iter()
            .filter(|s| !known.contains_key(&s.name))
            .map(|s| s.name.clone())
            .collect();
        // Each endpoint with its configuration right after it, so that both APIs' budgets are
        // spent at once (a first refresh of N endpoints takes N reads of each).
        let known_configs = Arc::new(known_configs);
        let described = describe_all(to_describe, {
            let inner = self.inner.clone();
            move |name| {
                let (inner, known_configs) = (inner.clone(), known_configs.clone());
                async move {
                    // An endpoint or configuration that cannot be read for good (access denied
                    // to its name, say) does not fail every resource of the account; the
                    // resource that scales it gets the error from its own read. Its instances
                    // are unknown, though: it is named, its last description kept, and no
                    // shared cap is raised until it can be read.
                    let endpoint = match with_page_retries(|| inner.describe_endpoint(&name)).await
                    {
                        Ok(Some(endpoint)) => endpoint,
                        // Deleted since it was listed, or a wrong answer: the next refresh's
                        // list says which. Until then its instances are unknown, not none.
                        Ok(None) => {
                            return Ok(Some(Err((
                                name,
                                crate::endpoints::LISTED_NOT_FOUND.to_string(),
                            ))));
                        }
                        Err(e) if e.class == ErrorClass::Recoverable => return Err(e),
                        Err(e) => {
                            tracing::warn!(endpoint = %name, error = %e, "SageMaker endpoint unreadable: its instances are unknown, so no shared instance cap is raised until it can be read");
                            return Ok(Some(Err((name, e.to_string()))));
                        }
                    };
                    let config = if known_configs.contains(&endpoint.config_name) {
                        None
                    } else {
                        match with_page_retries(|| {
                            inner.describe_endpoint_config(&endpoint.config_name)
                        })
                        .await
                        {
                            Ok(config) => config,
                            Err(e) if e.class == ErrorClass::Recoverable => return Err(e),
                            Err(e) => {
                                tracing::warn!(endpoint = %name, config = %endpoint.config_name, error = %e, "endpoint configuration unreadable: the endpoint's instances count against every instance quota");
                                None
                            }
                        }
                    };
                    Ok(Some(Ok((endpoint, config))))
                }
            }
        })
        .await?;
        let mut endpoints: Vec<EndpointState> = known.into_values().collect();
        let mut configs = Vec::new();
        let mut unreadable = Vec::new();
        for described in described.into_iter().flatten() {
            match described {
                Ok((endpoint, config)) => {
                    endpoints.push(endpoint);
                    configs.extend(config);
                }
                Err((name, why)) => {
                    // The last description read stands for it: a failed read never lowers
                    // the count of instances in use.
                    endpoints.extend(self.picture().endpoints.get(&name).cloned());
                    unreadable.push((name, why));
                }
            }
        }
        unreadable.extend(vanished_unreadable);
        unreadable.sort();
        Ok((endpoints, configs, unreadable))
    }

    /// Newest first, until `back_to` (inclusive), the end of the history or the page limit.
    /// Returns the activities, whether the history ended, and whether the page limit cut it.
    pub(super) async fn sweep_activities(
        &self,
        back_to: Option<Timestamp>,
    ) -> Result<(Vec<(String, ScalingActivity)>, bool, bool), AwsError> {
        let limit = if back_to.is_some() {
            SWEEP_PAGES
        } else {
            FIRST_SWEEP_PAGES
        };
        let mut read = Vec::new();
        let mut next = None;
        for _ in 0..limit {
            let page = with_page_retries(|| self.inner.list_activities(next.clone())).await?;
            let reached = back_to.is_some_and(|back_to| {
                page.items
                    .iter()
                    .filter_map(|(_, a)| start_time(a))
                    .any(|t| t <= back_to)
            });
            read.extend(page.items);
            match page.next {
                None => return Ok((read, true, false)),
                Some(_) if reached => return Ok((read, false, false)),
                Some(token) => next = Some(token),
            }
        }
        Ok((read, false, true))
    }
}

/// `describe` of each name, a few at a time; the first error fails them all.
async fn describe_all<T, F, Fut>(names: Vec<String>, describe: F) -> Result<Vec<T>, AwsError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    use futures::StreamExt;
    futures::stream::iter(names)
        .map(describe)
        .buffer_unordered(DESCRIBE_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Reads each of `names` on its own, [`DESCRIBE_CONCURRENCY`] at a time, each retried as a page
/// is; every answer comes back with its name, a failure included, for the caller to weigh.
async fn read_each<T, F, Fut>(names: Vec<String>, read: F) -> Vec<(String, Result<T, AwsError>)>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    use futures::StreamExt;
    let read = &read;
    futures::stream::iter(names)
        .map(|name| async move {
            let answer = with_page_retries(|| read(name.clone())).await;
            (name, answer)
        })
        .buffer_unordered(DESCRIBE_CONCURRENCY)
        .collect()
        .await
}

/// Every page, each retried on its own when it fails recoverably.
async fn all_pages<T, F, Fut>(fetch: F) -> Result<Vec<T>, AwsError>
where
    F: Fn(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, AwsError>>,
{
    let mut items = Vec::new();
    let mut next = None;
    loop {
        let page = with_page_retries(|| fetch(next.clone())).await?;
        items.extend(page.items);
        match page.next {
            Some(token) => next = Some(token),
            None => return Ok(items),
        }
    }
}

async fn with_page_retries<T, F, Fut>(fetch: F) -> Result<T, AwsError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let mut waits = PAGE_WAITS.iter();
    loop {
        match fetch().await {
            Err(e) if e.class == ErrorClass::Recoverable => match waits.next() {
                Some(wait) => tokio::time::sleep(*wait).await,
                None => return Err(e),
            },
            result => return result,
        }
    }
}
