//! observe → plan → apply → status, against any backend. The CLI's `plan`/`apply`/`delete` and
//! the in-cluster reconciler run exactly this.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use asyncscale_api::{AsyncEndpointScalingSpec, AsyncEndpointScalingStatus, validate_spec};
use asyncscale_core::plan::{Change, PlannedChange};
use asyncscale_core::share::{self, Bounds, Holder};
use asyncscale_core::status::{StatusInput, SyncOutcome, compute_status};
use asyncscale_core::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::error::{AwsError, ErrorClass, ErrorKind};
use crate::port::{AutoscalingBackend, Holding};
use crate::source::Place;

/// How many scaling activities to read; the newest decides ScalingHealthy.
const ACTIVITIES_TO_READ: i32 = 5;

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

/// Lets AWS writes through only while the caller may write: a controller replica while its
/// leader Lease is valid. Checked before every write, so a replica that lost the Lease (or the
/// connection that renews it) stops writing even in the middle of a plan.
#[derive(Clone, Default)]
pub struct Fence(Option<Arc<dyn Fn() -> Result<(), String> + Send + Sync>>);

impl Fence {
    /// A fence that is always open (the CLI, a controller without leader election).
    pub fn open() -> Self {
        Self(None)
    }

    /// `permits` answers Err(why) when writes must stop.
    pub fn new<E: std::fmt::Display>(
        permits: impl Fn() -> Result<(), E> + Send + Sync + 'static,
    ) -> Self {
        Self(Some(Arc::new(move || {
            permits().map_err(|why| why.to_string())
        })))
    }

    pub fn check(&self) -> Result<(), AwsError> {
        match &self.0 {
            Some(permits) => permits().map_err(|why| {
                AwsError::local(
                    ErrorClass::Recoverable,
                    "WriteFence",
                    ErrorKind::NotLeader,
                    why,
                )
            }),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Fence(checked)"
        } else {
            "Fence(open)"
        })
    }
}

/// One resource's intent.
#[derive(Clone)]
pub struct Intent<'a> {
    pub spec: &'a AsyncEndpointScalingSpec,
    pub owner: Owner,
    /// Whether a scalable target that is not ours may be taken over.
    pub adoption: Adoption<'a>,
    pub generation: Option<i64>,
    /// Checked before every AWS write.
    pub fence: Fence,
    /// When the scalable target's owner tags are read.
    pub ownership_check: OwnershipCheck,
    /// The caller's last good observation of AWS is too old to stand for the present (see
    /// `StatusInput::observation_stale`); always false where there is no previous status.
    pub observation_stale: bool,
    /// The other resources the caller knows that share this resource's instance quota
    /// (quota.policy Share, same account, region and instance type). Every endpoint of the type
    /// that is not among them, nor this one, counts as instances in use.
    pub quota_peers: &'a [QuotaPeer],
    /// The quota peers as they are now, asked again when a raise holds the quota's lock: a
    /// resource created while this reconcile ran (the controller's watch cache changes under a
    /// long reconcile) may have registered its target since `quota_peers` was read, and that
    /// MaxCapacity is reserved too. None where the peers cannot change during a run (the CLI).
    pub peers_now: Option<&'a (dyn Fn() -> Vec<QuotaPeer> + Send + Sync)>,
    /// The quota peers are applied in the same run, which writes every lowering before the
    /// raises it pays for (the CLI): a plan then counts them at their share, as apply will.
    pub run_peers_lower_first: bool,
}

/// Another resource sharing an instance quota, by its Application Auto Scaling resource id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaPeer {
    pub resource_id: String,
    pub bounds: Bounds,
    /// Being deleted: it no longer shares, but its scalable target stays until its cleanup
    /// deregisters it, and Application Auto Scaling may scale it to its MaxCapacity until then;
    /// a raise waits for that (see [`departing_quota_peers`]).
    pub departing: bool,
    /// It has been reconciled once (its status says so), so its own read of its endpoint is
    /// behind it: only then does its endpoint, missing from the picture of the account, keep a
    /// share for its return. A brand-new resource whose endpoint the picture lacks yet is left
    /// out until read, or every creation would move every cap of its quota twice.
    pub established: bool,
}

/// The bounds a spec puts on its endpoint's share.
fn share_bounds(spec: &AsyncEndpointScalingSpec) -> Bounds {
    Bounds {
        min_capacity: spec.min_capacity.max(0) as u32,
        max_capacity: spec.max_capacity.max(0) as u32,
    }
}

/// The resources among `others` (each with its account and region) that share `spec`'s instance
/// quota: quota policy Share, the same account, region and instance type, another endpoint variant.
pub fn quota_peers<'s>(
    spec: &AsyncEndpointScalingSpec,
    place: &Place,
    others: impl IntoIterator<Item = (&'s AsyncEndpointScalingSpec, &'s Place)>,
) -> Vec<QuotaPeer> {
    use asyncscale_api::QuotaPolicy::Share;
    if spec.quota.policy != Share {
        return Vec::new();
    }
    let me = ResourceNames::new(&spec.endpoint_name, &spec.variant_name).resource_id;
    let mut peers: Vec<QuotaPeer> = others
        .into_iter()
        .filter(|(other, other_place)| {
            other.quota.policy == Share
                && *other_place == place
                && other.instance_type == spec.instance_type
        })
        .map(|(other, _)| QuotaPeer {
            resource_id: ResourceNames::new(&other.endpoint_name, &other.variant_name).resource_id,
            bounds: share_bounds(other),
            departing: false,
            established: false,
        })
        .filter(|p| p.resource_id != me)
        .collect();
    peers.sort_by(|a, b| a.resource_id.cmp(&b.resource_id));
    peers.dedup_by(|a, b| a.resource_id == b.resource_id);
    peers
}

/// The resources among `others` being deleted that shared `spec`'s quota: departing peers. A
/// soak caught the gap they leave: a raise paid by a deleted resource's share went out 1.4 s
/// before the deleted one's target was deregistered, over the quota meanwhile.
pub fn departing_quota_peers<'s>(
    spec: &AsyncEndpointScalingSpec,
    place: &Place,
    others: impl IntoIterator<Item = (&'s AsyncEndpointScalingSpec, &'s Place)>,
) -> Vec<QuotaPeer> {
    quota_peers(spec, place, others)
        .into_iter()
        .map(|p| QuotaPeer {
            departing: true,
            ..p
        })
        .collect()
}

/// When a reconcile reads the scalable target's owner tags (ListTagsForResource).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwnershipCheck {
    /// On every observation (served from the fleet view's cache after the first read), so
    /// status always says whose the target is.
    #[default]
    Always,
    /// Only when the plan would write: ownership is proven before any change, and a target
    /// that already matches the intent costs no tag read. A bulk `plan`/`apply` of many
    /// resources, which has no cache across runs, uses this; such a target is reported in sync
    /// even when another resource's tags are on it.
    BeforeWrites,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvergeMode {
    /// Read only: report what apply would change.
    Plan,
    Apply,
}

#[derive(Debug, Clone)]
pub struct ConvergeReport {
    /// What apply changes (or would change).
    pub plan: Plan,
    /// How many changes of the plan were made, in order.
    pub applied: usize,
    pub outcome: SyncOutcome,
    pub status: AsyncEndpointScalingStatus,
    pub desired: Option<Desired>,
    /// This endpoint's share of its instance quota as worked out this reconcile, also when
    /// nothing was decided because minCapacity does not fit it (quota policy Share only).
    pub share: Option<QuotaShare>,
    /// AWS as last read (after the changes, when some were made).
    pub observed: Option<Observed>,
    /// The SageMaker endpoint as read before planning.
    pub endpoint: Option<EndpointReading>,
    /// The AWS error that stopped the reconcile, for backoff decisions.
    pub error: Option<AwsError>,
}

/// Reads everything asyncscale looks at for one endpoint variant, in parallel.
pub async fn observe(
    backend: &dyn AutoscalingBackend,
    names: &ResourceNames,
) -> Result<Observed, AwsError> {
    observe_parts(backend, names, TargetTags::Read).await
}

/// Whether `observe` reads the scalable target's tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetTags {
    Read,
    /// Left empty: read only when a plan would write (see `decide_and_apply`).
    WhenWriting,
}

async fn observe_parts(
    backend: &dyn AutoscalingBackend,
    names: &ResourceNames,
    target_tags: TargetTags,
) -> Result<Observed, AwsError> {
    let (target, policies, scheduled_actions, alarm, activities) = tokio::join!(
        backend.describe_target(&names.resource_id),
        backend.describe_policies(&names.resource_id),
        backend.describe_scheduled_actions(&names.resource_id),
        backend.describe_alarm(&names.alarm),
        backend.recent_activities(&names.resource_id, ACTIVITIES_TO_READ),
    );
    let mut target = target?;
    let mut alarm = alarm?;
    if target_tags == TargetTags::Read
        && let Some(t) = target.as_mut()
        && let Some(arn) = &t.arn
    {
        t.tags = backend.target_tags(arn).await?;
    }
    // Without a target, an alarm of our name proves nothing (a resource that never owned the
    // variant, or a released one, has the same names): its tags say whose it is. One more read,
    // on this path only.
    if target.is_none()
        && let Some(a) = alarm.as_mut()
        && let Some(arn) = a.arn.clone()
    {
        match backend.alarm_tags(&arn).await {
            Ok(tags) => a.tags = Some(tags),
            Err(e) if e.class == ErrorClass::NotFound => alarm = None,
            Err(e) => return Err(e),
        }
    }
    Ok(Observed {
        target,
        policies: policies?,
        scheduled_actions: scheduled_actions?,
        alarm,
        activities: activities?,
    })
}

pub async fn converge(
    backend: &dyn AutoscalingBackend,
    intent: &Intent<'_>,
    mode: ConvergeMode,
    previous: Option<&AsyncEndpointScalingStatus>,
    now: &Time,
) -> ConvergeReport {
    let spec = intent.spec;
    let mut report = ConvergeReport {
        plan: Plan::default(),
        applied: 0,
        outcome: SyncOutcome::InSync,
        status: AsyncEndpointScalingStatus::default(),
        desired: None,
        share: None,
        observed: None,
        endpoint: None,
        error: None,
    };
    let mut quota = None;
    if let Err(errors) = validate_spec(spec) {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        report.outcome = SyncOutcome::InvalidSpec(message);
    } else {
        let names = ResourceNames::new(&spec.endpoint_name, &spec.variant_name);
        let (reading, observed, endpoint) = tokio::join!(
            backend.instance_quota(&spec.instance_type),
            observe_parts(
                backend,
                &names,
                match intent.ownership_check {
                    OwnershipCheck::Always => TargetTags::Read,
                    OwnershipCheck::BeforeWrites => TargetTags::WhenWriting,
                }
            ),
            crate::endpoints::read_endpoint(backend, &spec.endpoint_name),
        );
        quota = Some(reading.lookup);
        let observed = observed.and_then(|o| endpoint.map(|e| (o, e)));
        match observed {
            Err(e) => {
                report.outcome = SyncOutcome::ObserveFailed(e.to_string());
                report.error = Some(e);
            }
            Ok((observed, endpoint)) => {
                report.observed = Some(observed);
                let checked = check_endpoint(spec, backend.region(), &endpoint);
                let lookup = quota.as_ref().expect("set above");
                let in_aws = report
                    .observed
                    .as_ref()
                    .and_then(|o| o.target.as_ref())
                    .map(|t| t.target.max_capacity);
                let share = match checked {
                    Err(problem) => Err(SyncOutcome::EndpointUnusable(Box::new(problem))),
                    Ok(()) => quota_share(backend, intent, mode, &names, lookup, &endpoint, in_aws)
                        .await
                        .map_err(|e| {
                            let outcome = SyncOutcome::ObserveFailed(e.to_string());
                            report.error = Some(e);
                            outcome
                        }),
                };
                report.endpoint = Some(endpoint);
                if let Ok((share, _)) = &share {
                    report.share = share.clone();
                }
                match share {
                    Err(outcome) => report.outcome = outcome,
                    Ok((Some(share), _)) if share.min_unmet => {
                        report.outcome = SyncOutcome::WaitingForQuota(format!(
                            "minCapacity {} asks for more instances than this endpoint's share of the quota '{}': {}. Nothing is written until instances are released or the quota is raised (AWS would fail the scale-out)",
                            spec.min_capacity,
                            lookup.name(),
                            share.explanation
                        ));
                    }
                    Ok((share, _raising)) => {
                        decide_and_apply(
                            backend,
                            intent,
                            mode,
                            lookup,
                            share.as_ref(),
                            now.0,
                            &mut report,
                        )
                        .await;
                    }
                }
            }
        }
        // A quota never read because of a passing failure (throttling, a timeout) holds
        // MaxCapacity where it is: that is not converged, and the reconcile retries like any
        // failed read. A last known value still clamps, and a standing failure (no quota of that
        // name, no permission) is reported in QuotaClamped without a retry storm.
        let quota_matters = spec.quota.policy != asyncscale_api::QuotaPolicy::Ignore;
        if quota_matters
            && report.error.is_none()
            && quota.as_ref().is_some_and(|q| q.value().is_none())
        {
            report.error = reading.error.filter(|e| e.class == ErrorClass::Recoverable);
        }
    }
    let input = StatusInput {
        generation: intent.generation,
        spec,
        quota: quota.as_ref(),
        desired: report.desired.as_ref(),
        observed: report.observed.as_ref(),
        endpoint: report.endpoint.as_ref(),
        outcome: report.outcome.clone(),
        observation_stale: intent.observation_stale,
    };
    report.status = compute_status(&input, previous, now);
    report
}

/// This endpoint's share of its instance quota under quota.policy Share (None under another
/// policy, or while the quota is unknown: then it bounds like Clamp). Every endpoint of the type in
/// the account counts; the intent's peers and this resource share, the others are in use.
///
/// A raise waits for the others: the cap is raised above the MaxCapacity AWS holds only as far as
/// the other sharing endpoints' MaxCapacities in AWS leave room (a cap being lowered elsewhere
/// is lowered by that endpoint's own reconcile first), so the targets in AWS never add up past
/// the quota, not even between two reconciles or while a lowering fails. Those MaxCapacities are
/// read on every raise (from the fleet view's picture and its own writes in the controller), and
/// raises of one quota are made one at a time: the returned guard is held until the raise is
/// written and read back. An endpoint whose instances could not be read holds every raise.
async fn quota_share(
    backend: &dyn AutoscalingBackend,
    intent: &Intent<'_>,
    mode: ConvergeMode,
    names: &ResourceNames,
    quota: &QuotaLookup,
    endpoint: &EndpointReading,
    in_aws: Option<i32>,
) -> Result<(Option<QuotaShare>, Option<RaiseGuard>), AwsError> {
    let spec = intent.spec;
    let Some(q) = quota.value() else {
        return Ok((None, None));
    };
    if spec.quota.policy != asyncscale_api::QuotaPolicy::Share {
        return Ok((None, None));
    }
    let allowed = desired::quota_instances(q).clamp(0, i64::from(u32::MAX)) as u32;
    // Nobody's cap goes above the quota.
    let within = |b: Bounds| Bounds {
        max_capacity: b.max_capacity.min(allowed),
        ..b
    };
    let sharing = || intent.quota_peers.iter().filter(|p| !p.departing);
    let mut bounds: BTreeMap<&str, Bounds> = sharing()
        .map(|p| (p.resource_id.as_str(), within(p.bounds)))
        .collect();
    bounds.insert(&names.resource_id, within(share_bounds(spec)));
    let (usage, waiting) = tokio::join!(
        backend.instance_usage(&spec.instance_type),
        backend.waiting_without_capacity(),
    );
    let (usage, waiting) = (usage?, waiting?);
    let unread: Vec<String> = usage
        .iter()
        .filter(|h| h.resource_id != names.resource_id)
        .filter_map(|h| {
            let why = h.unread.as_ref()?;
            let name = h.resource_id.split('/').nth(1).unwrap_or(&h.resource_id);
            Some(format!("endpoint {name} ({why})"))
        })
        .collect();
    // An unreadable endpoint's variants are unknown; where it is a peer's, the peer still shares
    // (with the instances last known of it, none when never read), so the others' caps leave
    // it its part.
    let usage: Vec<Holding> = usage
        .iter()
        .flat_map(|h| {
            let variants: Vec<Holding> = sharing()
                .filter(|p| {
                    h.unread.is_some()
                        && h.resource_id.matches('/').count() == 1
                        && p.resource_id
                            .starts_with(&format!("{}/variant/", h.resource_id))
                })
                .map(|p| Holding {
                    resource_id: p.resource_id.clone(),
                    asynchronous: true,
                    ..h.clone()
                })
                .collect();
            if variants.is_empty() {
                vec![h.clone()]
            } else {
                variants
            }
        })
        .collect();
    let mut holders: Vec<Holder> = usage
        .iter()
        .map(|h| Holder {
            resource_id: h.resource_id.clone(),
            instances: h.instances,
            shared: bounds
                .get(h.resource_id.as_str())
                .copied()
                .filter(|_| h.asynchronous),
            has_backlog: h.scaling_out || waiting.contains(&h.resource_id),
            prospective: false,
        })
        .collect();
    // An established peer whose endpoint is missing (deleted behind asyncscale's back, or
    // never created) still shares, prospectively: the endpoint comes back holding an instance (SageMaker
    // creates none with fewer), so the others' caps leave it one until its resource is deleted.
    // Giving that away would put the caps over the quota the moment the endpoint returns, for
    // as long as reading it takes. A peer whose endpoint exists without its variant cannot
    // scale it and takes none (every listed variant is a holding, of this type or not).
    for peer in sharing().filter(|p| p.established) {
        let endpoint = peer.resource_id.split('/').nth(1).unwrap_or_default();
        let unread = format!("endpoint/{endpoint}");
        let variants = format!("{unread}/variant/");
        let listed = holders
            .iter()
            .any(|h| h.resource_id.starts_with(&variants) || h.resource_id == unread);
        if !listed {
            holders.push(Holder {
                resource_id: peer.resource_id.clone(),
                instances: 0,
                shared: bounds.get(peer.resource_id.as_str()).copied(),
                // A deleted endpoint's alarm may still fire: no claim on a leftover instance.
                has_backlog: false,
                prospective: true,
            });
        }
    }
    // This endpoint, read just now, even when the picture of the account predates it.
    if !holders.iter().any(|h| h.resource_id == names.resource_id) {
        let held = match endpoint {
            EndpointReading::Found { endpoint, .. } => {
                endpoint.variant(&spec.variant_name).map_or(0, |v| {
                    let current = v.current_instances.unwrap_or(0);
                    current.max(v.desired_instances.unwrap_or(current)).max(0) as u32
                })
            }
            EndpointReading::Missing => 0,
        };
        holders.push(Holder {
            resource_id: names.resource_id.clone(),
            instances: held,
            shared: bounds.get(names.resource_id.as_str()).copied(),
            has_backlog: waiting.contains(&names.resource_id),
            prospective: false,
        });
    }
    let split = share::split(allowed, &holders);
    let Some(&cap) = split.caps.get(&names.resource_id) else {
        return Ok((None, None));
    };
    let mut explanation = split.explain(&names.resource_id).unwrap_or_default();
    let mut min_unmet = split.min_unmet.contains(&names.resource_id);
    // A minimum the share itself cannot meet waits for instances to be released, not for the
    // others' lowerings: none awaited (the controller then waits for the resync, not 5 s).
    let share_short = min_unmet;
    let mut cap = i32::try_from(cap).unwrap_or(i32::MAX);
    let now = in_aws.unwrap_or(0);
    let mut awaiting = Vec::new();
    // Departing peers, and peers that came during this reconcile, whose target still reserves
    // (id, MaxCapacity in AWS, came late).
    let mut departing: Vec<(String, i32, bool)> = Vec::new();
    let mut guard = None;
    let mut held = false;
    if cap > now && !unread.is_empty() {
        // What an unreadable endpoint holds may be anything: no room is certain.
        explanation.push_str(&format!(
            "; held at {now} for now: the instances of {} are unknown, and a raise could take instances they hold",
            unread.join(", ")
        ));
        cap = now;
        held = true;
        min_unmet |= cap < spec.min_capacity;
    } else if cap > now {
        // Every raise reads what the others hold in AWS now: a lowering that failed, is slow,
        // or was never made (another run's, another cluster's) keeps its instances reserved.
        if mode == ConvergeMode::Apply {
            guard = Some(raise_lock(&backend.place(), &spec.instance_type).await);
        }
        let others: Vec<&Holder> = holders
            .iter()
            .filter(|h| h.shared.is_some() && h.resource_id != names.resource_id)
            .collect();
        // Peers that are no holders (an endpoint not read yet, or real-time) still reserve what
        // a target of theirs in AWS holds.
        let mut ids: Vec<String> = others.iter().map(|h| h.resource_id.clone()).collect();
        ids.extend(
            sharing()
                .map(|p| p.resource_id.clone())
                .filter(|id| !others.iter().any(|h| &h.resource_id == id)),
        );
        let shared_ids = ids.len();
        // A departing peer's instances count as in use already (elsewhere); what AAS may still
        // scale its target to above them is reserved too, until the target is gone. Reserving
        // peers: (id, came during this reconcile).
        let mut reserving: Vec<(String, bool)> = intent
            .quota_peers
            .iter()
            .filter(|p| p.departing)
            .map(|p| (p.resource_id.clone(), false))
            .collect();
        // Peers that came after `quota_peers` was read: asked again now that this raise holds
        // the lock, so that every raise of theirs is in AWS or in the view's writes. Their
        // endpoints' instances count as in use (elsewhere), as a departing peer's do.
        if guard.is_some()
            && let Some(peers_now) = intent.peers_now
        {
            let known: HashSet<String> = ids
                .iter()
                .chain(reserving.iter().map(|(id, _)| id))
                .cloned()
                .collect();
            reserving.extend(
                peers_now()
                    .into_iter()
                    .filter(|p| {
                        p.resource_id != names.resource_id && !known.contains(&p.resource_id)
                    })
                    .map(|p| (p.resource_id, !p.departing)),
            );
        }
        ids.extend(reserving.iter().map(|(id, _)| id.clone()));
        let mut maxes = backend.max_capacities(&ids).await?;
        let reserving_maxes = maxes.split_off(shared_ids.min(maxes.len()));
        let mut committed = i64::from(split.elsewhere);
        for ((id, late), max) in reserving.into_iter().zip(reserving_maxes) {
            let held = holders
                .iter()
                .find(|h| h.resource_id == id)
                .map_or(0, |h| h.instances as i32);
            let max = max.unwrap_or(0);
            if max > held {
                committed += i64::from(max - held);
                departing.push((id, max, late));
            }
        }
        let ids = &ids[..shared_ids];
        for (i, (id, max)) in ids.iter().zip(maxes).enumerate() {
            let held = others.get(i).map_or(0, |h| h.instances as i32);
            let share = split.caps.get(id).map_or(0, |c| *c as i32);
            let reserved = max.unwrap_or(0).max(held);
            // A plan reports what apply would do: apply writes the lowerings it holds for
            // first (see the CLI), so the peers of one run count at their share there.
            let reserved = match mode {
                ConvergeMode::Plan if intent.run_peers_lower_first => reserved.min(share.max(held)),
                _ => reserved,
            };
            if reserved > share {
                awaiting.push((id.clone(), reserved, share));
            }
            committed += i64::from(reserved);
        }
        let room = (i64::from(allowed) - committed).clamp(0, i64::from(i32::MAX)) as i32;
        if room < cap {
            cap = room.max(now);
            held = true;
            let waits: Vec<String> = awaiting
                .iter()
                .map(|(id, held, share)| {
                    format!("{id} (MaxCapacity {held} in AWS, its share {share})")
                })
                .chain(departing.iter().map(|(id, held, late)| {
                    if *late {
                        format!("{id} (new to this quota during this reconcile: MaxCapacity {held} in AWS; shared from the next one)")
                    } else {
                        format!("{id} (being deleted: MaxCapacity {held} in AWS until its target is deregistered)")
                    }
                }))
                .collect();
            explanation.push_str(&format!(
                "; held at {cap} for now, until AWS holds the lowering of {}",
                if waits.is_empty() {
                    "the other endpoints' MaxCapacity".to_string()
                } else {
                    waits.join(", ")
                }
            ));
            min_unmet |= cap < spec.min_capacity;
        } else {
            awaiting.clear();
            departing.clear();
        }
    }
    Ok((
        Some(QuotaShare {
            cap,
            in_use: split.in_use,
            endpoints: split.endpoints,
            explanation,
            min_unmet,
            // Nothing awaited for a minimum that lowerings cannot make fit.
            awaiting: if share_short {
                Vec::new()
            } else {
                awaiting
                    .into_iter()
                    .map(|(id, _, _)| id)
                    .chain(departing.into_iter().map(|(id, _, _)| id))
                    .collect()
            },
            held,
        }),
        guard,
    ))
}

/// Held while a shared cap is raised: from reading the others' MaxCapacity until the raise is
/// written and read back, so that two raises of one quota never take the same room.
pub(crate) type RaiseGuard = tokio::sync::OwnedMutexGuard<()>;

/// The lock of raises of one quota: account, region and instance type, in this process. Another
/// process writing the same account (a second controller, a CLI run beside it) is not held by it;
/// only one writer per account is supported.
async fn raise_lock(place: &Place, instance_type: &str) -> RaiseGuard {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    type Locks = Mutex<HashMap<(Place, String), Arc<tokio::sync::Mutex<()>>>>;
    static LOCKS: LazyLock<Locks> = LazyLock::new(Locks::default);
    let lock = LOCKS
        .lock()
        .expect("raise locks")
        .entry((place.clone(), instance_type.to_string()))
        .or_default()
        .clone();
    lock.lock_owned().await
}

async fn decide_and_apply(
    backend: &dyn AutoscalingBackend,
    intent: &Intent<'_>,
    mode: ConvergeMode,
    quota: &QuotaLookup,
    share: Option<&QuotaShare>,
    now: jiff::Timestamp,
    report: &mut ConvergeReport,
) {
    let observed = report.observed.as_ref().expect("observed before deciding");
    let existing = observed.target.as_ref().map(|t| &t.target);
    let desired = match desire(intent.spec, &intent.owner, quota, existing, share) {
        Ok(mut d) => {
            asyncscale_core::scheduled::follow_schedules(&mut d, intent.spec, quota, observed, now);
            d
        }
        Err(e) => {
            report.outcome = match e {
                DesireError::QuotaTooLow { .. } => SyncOutcome::QuotaTooLow(e.to_string()),
                DesireError::QuotaUnknownBelowMin { .. } => {
                    SyncOutcome::WaitingForQuota(e.to_string())
                }
            };
            return;
        }
    };
    // Ownership is proven from AWS before any write: a plan that would write (or conflict)
    // reads the tags, past any cache, and is made again with the truth. In BeforeWrites mode a
    // target that already matches the intent needs no tags at all.
    if let Some(arn) = observed.target.as_ref().and_then(|t| t.arn.clone()) {
        let mut assumed = observed.clone();
        if intent.ownership_check == OwnershipCheck::BeforeWrites
            && let Some(t) = assumed.target.as_mut()
        {
            t.tags = intent.owner.tags();
        }
        let writes_nothing =
            plan_apply(&desired, &assumed, &intent.adoption).is_ok_and(|plan| plan.is_empty());
        if writes_nothing {
            report.desired = Some(desired);
            return;
        }
        match backend.direct().unwrap_or(backend).target_tags(&arn).await {
            Ok(tags) => {
                if let Some(t) = report.observed.as_mut().and_then(|o| o.target.as_mut()) {
                    t.tags = tags;
                }
            }
            Err(e) => {
                report.outcome = SyncOutcome::ObserveFailed(e.to_string());
                report.error = Some(e);
                return;
            }
        }
    }
    let observed = report.observed.as_ref().expect("observed before deciding");
    let plan = match plan_apply(&desired, observed, &intent.adoption) {
        Ok(plan) => plan,
        Err(Blocked::Conflict(message)) => {
            report.desired = Some(desired);
            report.outcome = SyncOutcome::Conflict(message);
            return;
        }
    };
    report.desired = Some(desired);
    report.plan = plan;
    if report.plan.is_empty() {
        return;
    }
    if mode == ConvergeMode::Plan {
        report.outcome = SyncOutcome::ChangesPending(report.plan.changes.len());
        return;
    }
    let (applied, result) = execute(backend, &report.plan.changes, &intent.fence).await;
    report.applied = applied;
    if let Err((change, e)) = result {
        report.outcome = SyncOutcome::ApplyFailed(format!("{}: {e}", change.summary));
        report.error = Some(e);
    }
    // Read back what AWS holds now, so status shows AWS's truth (ARNs, states), not our hopes:
    // someone may have changed AWS between observing and applying.
    let names = report
        .desired
        .as_ref()
        .map(|d| d.names.clone())
        .expect("desired before applying");
    match observe(backend, &names).await {
        Ok(after) => {
            if report.error.is_none() {
                let desired = report.desired.as_ref().expect("desired before applying");
                match plan_apply(desired, &after, &intent.adoption) {
                    Err(Blocked::Conflict(message)) => {
                        report.outcome = SyncOutcome::Conflict(message);
                    }
                    Ok(left) if !left.is_empty() => {
                        let message = format!(
                            "AWS does not show every change yet (someone changed it meanwhile, or it is not visible yet); still to do, retrying: {}",
                            left.summaries().join("; ")
                        );
                        report.error = Some(AwsError::local(
                            ErrorClass::Recoverable,
                            "ReadBack",
                            ErrorKind::ChangedDuringApply,
                            message.clone(),
                        ));
                        report.outcome = SyncOutcome::ApplyFailed(message);
                    }
                    Ok(_) => {}
                }
            }
            report.observed = Some(after);
        }
        Err(e) => {
            if report.error.is_none() {
                report.outcome = SyncOutcome::ObserveFailed(e.to_string());
                report.error = Some(e);
            }
        }
    }
}

/// Runs the changes in order and stops at the first failure, which it returns with its change.
/// The fence is checked before each change; a change that AWS answers with "not found" right
/// after this plan registered the target is retried briefly (eventual consistency, §2.1).
pub async fn execute<'p>(
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

#[derive(Debug, Clone)]
pub struct RemoveReport {
    pub plan: Plan,
    pub applied: usize,
    /// What stopped the removal, if anything.
    pub error: Option<AwsError>,
    /// The summary of the change that failed.
    pub failed_change: Option<String>,
}

/// Removes what asyncscale owns for this endpoint variant, or releases it under
/// `deletionPolicy: Retain` (`plan_delete`); with `execute_plan` false it only reports what it
/// would do.
pub async fn remove(
    backend: &dyn AutoscalingBackend,
    spec: &AsyncEndpointScalingSpec,
    owner: &Owner,
    execute_plan: bool,
    fence: &Fence,
) -> RemoveReport {
    let names = ResourceNames::new(&spec.endpoint_name, &spec.variant_name);
    let mut report = RemoveReport {
        plan: Plan::default(),
        applied: 0,
        error: None,
        failed_change: None,
    };
    // A failed read (the alarm's tags included, when the target is gone) removes nothing. Read
    // from AWS itself, not a picture: what is deleted depends on every policy on the target.
    let observed = match observe(backend.direct().unwrap_or(backend), &names).await {
        Ok(o) => o,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    report.plan = plan_delete(&names, owner, &observed, spec.deletion_policy);
    if execute_plan {
        let (applied, result) = execute(backend, &report.plan.changes, fence).await;
        report.applied = applied;
        if let Err((change, e)) = result {
            report.failed_change = Some(change.summary.clone());
            report.error = Some(e);
        }
    }
    report
}
