//! Whose a scalable target (or alarm) is, from its owner tags, and whether it may be adopted.

use crate::model::*;
use crate::names::{OWNER_TAG, OWNER_UID_TAG, Owner, ResourceNames};

use super::Blocked;

/// Who owns an existing scalable target (or alarm), according to its tags.
#[derive(Debug, Clone, PartialEq)]
pub enum Ownership {
    Ours,
    /// Ours by name, but the tags lack our UID (written by the CLI, which has none): the UID tag
    /// is added.
    OursWithoutUid,
    /// No asyncscale owner tag: set up by hand or by another tool, or released by a resource
    /// deleted with `deletionPolicy: Retain`.
    Unowned,
    /// Another AsyncEndpointScaling: its tag value (`namespace/name`) and UID. A resource of the
    /// same name but another UID is another resource (Kubernetes reuses names, never UIDs).
    Other {
        id: String,
        uid: Option<String>,
        /// The controller knows that no resource with that UID exists any more.
        departed: bool,
    },
}

impl Ownership {
    pub fn is_ours(&self) -> bool {
        matches!(self, Ownership::Ours | Ownership::OursWithoutUid)
    }
}

/// How a resource may take over a scalable target that is not its own.
#[derive(Clone, Copy)]
pub struct Adoption<'a> {
    /// The resource carries `asyncscale.io/adopt: "true"`.
    pub requested: bool,
    /// Whether the AsyncEndpointScaling with this UID is known to no longer exist. Only a
    /// controller that sees every resource can tell; elsewhere the answer is false, never a guess.
    pub departed: &'a (dyn Fn(&str) -> bool + Sync),
}

pub(super) fn nobody_departs(_: &str) -> bool {
    false
}

impl Adoption<'static> {
    /// Adoption of unowned targets only (the CLI cannot tell whether another owner still exists).
    pub fn new(requested: bool) -> Self {
        Self {
            requested,
            departed: &nobody_departs,
        }
    }
}

pub fn ownership(tags: &Tags, owner: &Owner, departed: &dyn Fn(&str) -> bool) -> Ownership {
    let id = tags.get(OWNER_TAG);
    let uid = tags.get(OWNER_UID_TAG);
    if id.is_none() && uid.is_none() {
        return Ownership::Unowned;
    }
    let named_as_us = id.is_some_and(|id| *id == owner.tag_value());
    let other = || Ownership::Other {
        id: id.cloned().unwrap_or_default(),
        uid: uid.cloned(),
        departed: uid.is_some_and(|u| departed(u)),
    };
    match (&owner.uid, uid) {
        (Some(mine), Some(theirs)) if mine == theirs => Ownership::Ours,
        (Some(_), Some(_)) => other(),
        (Some(_), None) if named_as_us => Ownership::OursWithoutUid,
        (None, _) if named_as_us => Ownership::Ours,
        _ => other(),
    }
}

pub(super) fn conflict(names: &ResourceNames, ownership: &Ownership) -> Blocked {
    let adopt = asyncscale_api::ADOPT_ANNOTATION;
    Blocked::Conflict(match ownership {
        Ownership::Other {
            id,
            uid: Some(uid),
            departed: true,
        } => format!(
            "scalable target {} is tagged as managed by the AsyncEndpointScaling {id} (uid {uid}), which no longer exists; to let this resource take it over, annotate it with {adopt}: \"true\"",
            names.resource_id
        ),
        Ownership::Other { id, .. } => format!(
            "scalable target {} is managed by the AsyncEndpointScaling {id}; only one resource may manage an endpoint variant",
            names.resource_id
        ),
        _ => format!(
            "scalable target {} already exists and is not managed by asyncscale (set up by hand or by another tool); to let asyncscale take it over, annotate the resource with {adopt}: \"true\"",
            names.resource_id
        ),
    })
}
