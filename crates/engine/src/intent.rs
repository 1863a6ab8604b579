//! What a caller asks of the engine for one resource: its spec, who owns it, whether it may adopt,
//! the write fence, and the other resources sharing its instance quota.

use asyncscale_api::AsyncEndpointScalingSpec;
use asyncscale_core::share::Bounds;
use asyncscale_core::*;

use crate::fence::Fence;

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
