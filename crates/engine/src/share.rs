//! The quota share as the engine runs it: who shares an instance quota (from the caller's
//! resources), and one resource's share of it under quota.policy Share, read against what every
//! endpoint holds and what AWS holds of the others' MaxCapacity (see `asyncscale_core::share` for
//! the split itself).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use asyncscale_api::AsyncEndpointScalingSpec;
use asyncscale_core::share::{self, Bounds, Holder};
use asyncscale_core::*;

use crate::error::AwsError;
use crate::intent::{ConvergeMode, Intent, QuotaPeer};
use crate::port::{AutoscalingBackend, Holding, Place, QuotaReads};

/// The bounds a spec puts on its endpoint's share.
fn share_bounds(spec: &AsyncEndpointScalingSpec) -> Bounds {
    Bounds {
        min_capacity: spec.min_capacity.max(0) as u32,
        max_capacity: spec.max_capacity.max(0) as u32,
    }
}

/// A resource as a peer of the others sharing its quota (neither departing nor established).
pub fn as_peer(spec: &AsyncEndpointScalingSpec) -> QuotaPeer {
    QuotaPeer {
        resource_id: ResourceNames::new(&spec.endpoint_name, &spec.variant_name).resource_id,
        bounds: share_bounds(spec),
        departing: false,
        established: false,
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
        .map(|(other, _)| as_peer(other))
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

/// This endpoint's share of its instance quota under quota.policy Share (None under another
/// policy, or while the quota is unknown: then it bounds like Clamp): one [`read_split`] of the
/// account, then [`share_of`] this resource.
pub(crate) async fn quota_share(
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
    // This endpoint, read just now, stands in when the picture of the account predates it.
    let held = match endpoint {
        EndpointReading::Found { endpoint, .. } => {
            endpoint.variant(&spec.variant_name).map_or(0, |v| {
                let current = v.current_instances.unwrap_or(0);
                current.max(v.desired_instances.unwrap_or(current)).max(0) as u32
            })
        }
        EndpointReading::Missing => 0,
    };
    let me = Sharer {
        resource_id: &names.resource_id,
        bounds: share_bounds(spec),
        instances: held,
    };
    let reading = read_split(
        backend,
        &spec.instance_type,
        allowed,
        intent.quota_peers,
        Some(me),
    )
    .await?;
    share_of(
        backend,
        &backend.place(),
        &reading,
        intent,
        mode,
        &names.resource_id,
        in_aws,
    )
    .await
}

/// The resource being decided, for [`read_split`]: its bounds, and the instances its own read of
/// its endpoint found (the picture of the account may predate it).
#[derive(Debug, Clone, Copy)]
pub struct Sharer<'a> {
    pub resource_id: &'a str,
    pub bounds: Bounds,
    pub instances: u32,
}

/// One reading of an instance quota and its split: what every endpoint of the type holds, which
/// resources share the quota, and the split between them. Every sharing resource is decided
/// against such a reading: the controller takes one per reconcile (from the fleet view's
/// picture), `simulate` one per visit of its model.
#[derive(Debug, Clone)]
pub struct SplitReading {
    allowed: u32,
    /// The sharing resources (not being deleted) and their bounds, by resource id.
    sharing: BTreeMap<String, Bounds>,
    holders: Vec<Holder>,
    /// Endpoints whose instances could not be read: (holding id, "endpoint NAME (why)").
    unread: Vec<(String, String)>,
    split: share::Split,
}

impl SplitReading {
    /// The split of the quota, as read.
    pub fn split(&self) -> &share::Split {
        &self.split
    }
}

/// Reads what every endpoint of `instance_type` holds and which of them wait without capacity,
/// and splits the `allowed` instances between the sharing resources: `peers` (those being
/// deleted are left out) and `me`, when given.
pub async fn read_split(
    reads: &dyn QuotaReads,
    instance_type: &str,
    allowed: u32,
    peers: &[QuotaPeer],
    me: Option<Sharer<'_>>,
) -> Result<SplitReading, AwsError> {
    // Nobody's cap goes above the quota.
    let within = |b: Bounds| Bounds {
        max_capacity: b.max_capacity.min(allowed),
        ..b
    };
    let sharing = || peers.iter().filter(|p| !p.departing);
    let mut bounds: BTreeMap<String, Bounds> = sharing()
        .map(|p| (p.resource_id.clone(), within(p.bounds)))
        .collect();
    if let Some(me) = me {
        bounds.insert(me.resource_id.to_string(), within(me.bounds));
    }
    let (usage, waiting) = tokio::join!(
        reads.instance_usage(instance_type),
        reads.waiting_without_capacity(),
    );
    let (usage, waiting) = (usage?, waiting?);
    let unread: Vec<(String, String)> = usage
        .iter()
        .filter_map(|h| {
            let why = h.unread.as_ref()?;
            let name = h.resource_id.split('/').nth(1).unwrap_or(&h.resource_id);
            Some((h.resource_id.clone(), format!("endpoint {name} ({why})")))
        })
        .collect();
    // An unreadable endpoint's variants are unknown; where it is a peer's, the peer still shares
    // (with the instances last known of it, none when never read), so the others' caps leave
    // it its part.
    let usage: Vec<Holding> = usage
        .iter()
        .flat_map(|h| {
            // Only an unreadable endpoint (no variant in its id) stands for its peers' variants.
            if h.unread.is_none() || h.resource_id.matches('/').count() != 1 {
                return vec![h.clone()];
            }
            let prefix = format!("{}/variant/", h.resource_id);
            let variants: Vec<Holding> = sharing()
                .filter(|p| p.resource_id.starts_with(&prefix))
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
    // The endpoints the holders name (`endpoint/NAME` or `endpoint/NAME/variant/…`; SageMaker's
    // names hold no "/"): one lookup per peer, not a scan of every holder.
    let endpoint_of = |id: &str| id.split('/').nth(1).unwrap_or_default().to_string();
    let mut listed: HashSet<String> = holders
        .iter()
        .map(|h| endpoint_of(&h.resource_id))
        .collect();
    for peer in sharing().filter(|p| p.established) {
        let endpoint = endpoint_of(&peer.resource_id);
        if listed.insert(endpoint) {
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
    // The resource being decided, read just now, even when the picture of the account predates it.
    if let Some(me) = me
        && !holders.iter().any(|h| h.resource_id == me.resource_id)
    {
        holders.push(Holder {
            resource_id: me.resource_id.to_string(),
            instances: me.instances,
            shared: bounds.get(me.resource_id).copied(),
            has_backlog: waiting.contains(me.resource_id),
            prospective: false,
        });
    }
    let split = share::split(allowed, &holders);
    Ok(SplitReading {
        allowed,
        sharing: bounds,
        holders,
        unread,
        split,
    })
}

/// One resource's share of a quota, from a [`read_split`] of it.
///
/// A raise waits for the others: the cap is raised above the MaxCapacity AWS holds (`in_aws`)
/// only as far as the other sharing endpoints' MaxCapacities in AWS leave room (a cap being
/// lowered elsewhere is lowered by that endpoint's own visit first), so the targets in AWS never
/// add up past the quota, not even between two visits or while a lowering fails. Those
/// MaxCapacities are read on every raise (the controller's from the fleet view's picture and its
/// own writes), and raises of one quota are made one at a time: in Apply mode the returned guard
/// is held until the raise is written and read back. An endpoint whose instances could not be
/// read holds every raise.
pub async fn share_of(
    reads: &dyn QuotaReads,
    place: &Place,
    reading: &SplitReading,
    intent: &Intent<'_>,
    mode: ConvergeMode,
    resource_id: &str,
    in_aws: Option<i32>,
) -> Result<(Option<QuotaShare>, Option<RaiseGuard>), AwsError> {
    let spec = intent.spec;
    let split = &reading.split;
    let Some(&cap) = split.caps.get(resource_id) else {
        return Ok((None, None));
    };
    let unread: Vec<&str> = reading
        .unread
        .iter()
        .filter(|(id, _)| id != resource_id)
        .map(|(_, shown)| shown.as_str())
        .collect();
    let mut explanation = split.explain(resource_id).unwrap_or_default();
    let mut min_unmet = split.min_unmet.contains(resource_id);
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
            guard = Some(raise_lock(place, &spec.instance_type).await);
        }
        let others: Vec<&Holder> = reading
            .holders
            .iter()
            .filter(|h| h.shared.is_some() && h.resource_id != resource_id)
            .collect();
        // Sharing resources that are no holders (an endpoint not read yet, or real-time) still
        // reserve what a target of theirs in AWS holds.
        let mut ids: Vec<String> = others.iter().map(|h| h.resource_id.clone()).collect();
        let holding: HashSet<&str> = others.iter().map(|h| h.resource_id.as_str()).collect();
        ids.extend(
            reading
                .sharing
                .keys()
                .filter(|id| *id != resource_id && !holding.contains(id.as_str()))
                .cloned(),
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
                    .filter(|p| p.resource_id != resource_id && !known.contains(&p.resource_id))
                    .map(|p| (p.resource_id, !p.departing)),
            );
        }
        ids.extend(reserving.iter().map(|(id, _)| id.clone()));
        let mut maxes = reads.max_capacities(&ids).await?;
        let reserving_maxes = maxes.split_off(shared_ids.min(maxes.len()));
        let mut committed = i64::from(split.elsewhere);
        for ((id, late), max) in reserving.into_iter().zip(reserving_maxes) {
            let held = reading
                .holders
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
        let room = (i64::from(reading.allowed) - committed).clamp(0, i64::from(i32::MAX)) as i32;
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
pub type RaiseGuard = tokio::sync::OwnedMutexGuard<()>;

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
