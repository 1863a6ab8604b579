//! The other resources, from the controllers' watch caches (no API or AWS call): who shares this
//! resource's instance quota, whether it is a younger duplicate of another, whether an owner
//! named in a tag still exists, and the nudges that a raise waiting for lowerings sends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use asyncscale_api::AsyncEndpointScaling;
use asyncscale_core::names::ResourceNames;
use asyncscale_engine::{Place, Placement};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::broadcast;

use super::Context;

/// The watch caches of the controllers, to see every resource without asking the API server.
#[derive(Clone)]
pub struct WatchedStore {
    pub store: Store<AsyncEndpointScaling>,
    pub synced: Arc<AtomicBool>,
    /// True when the store holds every namespace (so the absence of an object means it is gone).
    pub all_namespaces: bool,
}

impl Context {
    /// Lets reconciles consult the controllers' watch caches (other resources, their UIDs).
    pub fn watch_stores(&self, stores: Vec<WatchedStore>) {
        *self.stores.lock().expect("stores lock") = stores;
    }

    /// The peers a held raise waits for: each lowers its MaxCapacity to its share at its next
    /// reconcile, and until then the raise, or a new endpoint's minCapacity, waits. Without a
    /// nudge that is the peer's resync away (a minute by default).
    pub fn awaited(&self) -> broadcast::Receiver<ObjectRef<AsyncEndpointScaling>> {
        self.awaited.subscribe()
    }

    /// Asks for the reconcile of each of `peers` that [`Context::nudge`] lets through.
    pub(super) fn await_lowerings<'a>(
        &self,
        peers: impl Iterator<Item = &'a AsyncEndpointScaling>,
    ) {
        for peer in peers.filter(|peer| self.nudge(peer)) {
            // Without a receiver (no controller running yet) the resync does it.
            let _ = self.awaited.send(ObjectRef::from_obj(peer));
        }
    }

    /// Every resource in the watch caches.
    pub(super) fn watched(&self) -> Vec<Arc<AsyncEndpointScaling>> {
        let stores = self.stores.lock().expect("stores lock");
        stores.iter().flat_map(|s| s.store.state()).collect()
    }

    /// Whether no resource with `uid` exists: only answered yes when a synced cache of every
    /// namespace says so, never on a guess.
    pub fn departed(&self, uid: &str) -> bool {
        let stores = self.stores.lock().expect("stores lock").clone();
        let complete = stores
            .iter()
            .any(|s| s.all_namespaces && s.synced.load(Ordering::SeqCst));
        complete
            && !stores
                .iter()
                .flat_map(|s| s.store.state())
                .any(|o| o.uid().as_deref() == Some(uid))
    }
}

/// Awaited lowerings not yet turned into reconciles; more are dropped (the resync does them).
pub(super) const AWAITED_BUFFERED: usize = 1024;

/// Where each watched resource's calls land (from the watch cache and the controller's
/// configuration; no AWS call): resources in one account and region share its quotas, and two
/// for one endpoint variant there would overwrite each other. `obj`'s own place is `obj_place`.
pub(super) async fn watched_places(
    ctx: &Context,
    obj: &AsyncEndpointScaling,
    obj_place: &Place,
) -> (Vec<(Arc<AsyncEndpointScaling>, Place)>, Option<String>) {
    let default_region = match obj.spec.region {
        None => Some(obj_place.region.clone()),
        Some(_) => ctx.backends.default_region().await,
    };
    let others = watched_in(ctx, obj, default_region.as_deref());
    (others, default_region)
}

/// The other watched resources and where each writes, `default_region` standing for an unset
/// `region` (from the watch cache; no call).
pub(super) fn watched_in(
    ctx: &Context,
    obj: &AsyncEndpointScaling,
    default_region: Option<&str>,
) -> Vec<(Arc<AsyncEndpointScaling>, Place)> {
    ctx.watched()
        .into_iter()
        .filter(|o| o.uid() != obj.uid())
        .filter_map(|o| {
            let place = ctx
                .backends
                .place_of(&Placement::of(&o.spec), default_region)?;
            Some((o, place))
        })
        .collect()
}

/// The watched resources that share `obj`'s instance quota (from the watch cache; no AWS call).
/// One with an invalid spec writes nothing: its endpoint's instances count as in use, not
/// shared. One being deleted no longer shares, but departs: until its cleanup deregisters its
/// target, that target's MaxCapacity stays reserved.
pub(super) fn quota_peers_of(
    obj: &AsyncEndpointScaling,
    obj_place: &Place,
    others: &[(Arc<AsyncEndpointScaling>, Place)],
) -> Vec<asyncscale_engine::QuotaPeer> {
    if obj.spec.quota.policy != asyncscale_api::QuotaPolicy::Share {
        return Vec::new();
    }
    // Validated once, and only those of this quota: this runs on every reconcile (and again
    // on every raise), over every watched resource.
    let valid: Vec<&(Arc<AsyncEndpointScaling>, Place)> = others
        .iter()
        .filter(|(o, place)| {
            place == obj_place
                && o.spec.instance_type == obj.spec.instance_type
                && o.spec.quota.policy == asyncscale_api::QuotaPolicy::Share
        })
        .filter(|(o, _)| asyncscale_api::validate_spec(&o.spec).is_ok())
        .collect();
    let valid = || valid.iter().copied();
    let mut peers = asyncscale_engine::quota_peers(
        &obj.spec,
        obj_place,
        valid()
            .filter(|(o, _)| o.meta().deletion_timestamp.is_none())
            .map(|(o, place)| (&o.spec, place)),
    );
    peers.extend(asyncscale_engine::departing_quota_peers(
        &obj.spec,
        obj_place,
        valid()
            .filter(|(o, _)| o.meta().deletion_timestamp.is_some())
            .map(|(o, place)| (&o.spec, place)),
    ));
    // Which peers have been reconciled once (see QuotaPeer): their first reconcile read their
    // endpoint, into the picture when it exists; whatever their later outcomes (a failed read,
    // a role not assumed), they stay so, or a share kept for a missing endpoint would come and
    // go with them.
    let established: std::collections::HashSet<String> = valid()
        .filter(|(o, _)| reconciled_once(o))
        .map(|(o, _)| {
            asyncscale_core::ResourceNames::new(&o.spec.endpoint_name, &o.spec.variant_name)
                .resource_id
        })
        .collect();
    for peer in &mut peers {
        peer.established = established.contains(&peer.resource_id);
    }
    peers
}

/// Its status says a reconcile has run (Ready is there, and not the "reading AWS" of a
/// resource not reconciled yet).
fn reconciled_once(o: &AsyncEndpointScaling) -> bool {
    o.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason != "Reconciling")
    })
}

/// The resources that name the same endpoint variant in the same region (the account is the
/// controller's own): None when `obj` is the oldest of them, else a message naming the oldest.
pub(super) fn younger_duplicate(
    obj: &AsyncEndpointScaling,
    obj_place: &Place,
    others: &[(Arc<AsyncEndpointScaling>, Place)],
) -> Option<String> {
    let variant =
        |o: &AsyncEndpointScaling| (o.spec.endpoint_name.clone(), o.spec.variant_name.clone());
    // creationTimestamp has whole seconds. Two resources created in the same second have no
    // order here: AWS decides, as the first to tag the target owns it and the other one gets
    // Conflict from the ownership check. (Breaking the tie by name could name the other one
    // older than the owner AWS already has, and then both would be refused for good.)
    let created = |o: &AsyncEndpointScaling| o.meta().creation_timestamp.clone().map(|t| t.0);
    // One being deleted hands the endpoint over.
    let (oldest, _) = others
        .iter()
        .filter(|(o, _)| o.meta().deletion_timestamp.is_none())
        .filter(|(o, place)| place == obj_place && variant(o) == variant(obj))
        .min_by_key(|(o, _)| (created(o), o.namespace(), o.name_any()))?;
    (created(oldest) < created(obj)).then(|| {
        format!(
            "the AsyncEndpointScaling {}/{} (older) already manages {} in {}; only one resource may manage an endpoint variant: delete this one (endpointName cannot be changed; to manage another endpoint, create a new resource)",
            oldest.namespace().unwrap_or_default(),
            oldest.name_any(),
            ResourceNames::new(&obj.spec.endpoint_name, &obj.spec.variant_name).resource_id,
            obj_place,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(
        name: &str,
        endpoint: &str,
        region: &str,
        ready: Option<&str>,
    ) -> AsyncEndpointScaling {
        let yaml = format!(
            "apiVersion: asyncscale.io/v1alpha1\nkind: AsyncEndpointScaling\nmetadata: {{name: {name}, namespace: ml, uid: uid-{name}}}\nspec: {{endpointName: {endpoint}, region: {region}, instanceType: ml.g4dn.xlarge, maxCapacity: 4, targetTracking: {{targetValue: 5}}}}\n"
        );
        let mut r = asyncscale_api::parse_manifests("t.yaml", &yaml)
            .unwrap()
            .remove(0)
            .resource;
        r.status = ready.map(|reason| asyncscale_api::AsyncEndpointScalingStatus {
            conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: "Ready".into(),
                status: if reason == "Ready" { "True" } else { "False" }.into(),
                reason: reason.into(),
                message: String::new(),
                observed_generation: None,
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
            }],
            ..Default::default()
        });
        r
    }

    /// A peer reconciled once is established (its missing endpoint keeps a share), whatever
    /// its outcome since; a brand-new one is not, nor one elsewhere.
    #[test]
    fn peers_reconciled_once_are_established() {
        let place = |region: &str| Place {
            account: None,
            region: region.into(),
        };
        let others: Vec<(Arc<AsyncEndpointScaling>, Place)> = [
            // Its role could not be assumed since: still established.
            (
                resource("b", "b", "us-east-1", Some("RoleNotAssumed")),
                "us-east-1",
            ),
            (
                resource("c", "c", "us-east-1", Some("Reconciling")),
                "us-east-1",
            ),
            (resource("d", "d", "us-east-1", None), "us-east-1"),
            // The same endpoint name in another region says nothing of d's.
            (
                resource("d-west", "d", "us-west-2", Some("Ready")),
                "us-west-2",
            ),
        ]
        .into_iter()
        .map(|(r, region)| (Arc::new(r), place(region)))
        .collect();
        let peers = quota_peers_of(
            &resource("a", "a", "us-east-1", None),
            &place("us-east-1"),
            &others,
        );
        let established: Vec<(&str, bool)> = peers
            .iter()
            .map(|p| (p.resource_id.as_str(), p.established))
            .collect();
        assert_eq!(
            established,
            [
                ("endpoint/b/variant/AllTraffic", true),
                ("endpoint/c/variant/AllTraffic", false),
                ("endpoint/d/variant/AllTraffic", false),
            ]
        );
    }
}
