"""The soak's invariants, as pure checks over what the harness observed.

Each checker is fed observations as they come (the local AWS endpoint's call log and state, the
leader Lease as read from the API server, the resources, the controllers' logs) and returns the
violations it sees, each with the moment and the evidence. They hold no clock of their own: the
harness passes `now` (epoch seconds on this machine, the clock every process here shares), so
that the unit tests in tests/python/test_soak_invariants.py can replay any history.
"""

from __future__ import annotations

import bisect
import dataclasses
import statistics
from collections import defaultdict

# The names asyncscale gives what it owns (crates/core/src/names.rs).
TARGET_TRACKING_POLICY = "asyncscale-target-tracking"
SCALE_FROM_ZERO_POLICY = "asyncscale-scale-from-zero"
MANAGED_BY_TAG = "asyncscale.io/managed-by"
OWNER_TAG = "asyncscale.io/owner"


def alarm_name(resource_id: str) -> str:
    return f"asyncscale-{resource_id}-HasBacklogWithoutCapacity"



# The controller moves each resync by up to a tenth of it (`RESYNC_SPREAD` in
# crates/controller/src/reconciler.rs): the longest time between two resyncs.
RESYNC_SPREAD = 0.1


def longest_resync(resync: float) -> float:
    return resync * (1 + RESYNC_SPREAD)

@dataclasses.dataclass
class Violation:
    invariant: str
    at: float
    message: str

    def line(self, t0: float) -> str:
        return f"[{self.at - t0:8.1f}s] VIOLATION {self.invariant}: {self.message}"


class OneWriter:
    """No AWS write is made with the keys of a replica that did not hold the Lease.

    A write answered at `t` with replica R's key (or with a session R assumed) is allowed when
    the Lease as last renewed at `r <= t`, by whichever replica, names R, and had not expired:
    `t <= r + lease`. Judging by R's own last renewal alone would let a standby that took the
    Lease early (before R's had expired) and R write side by side. R itself stops writing at
    `r + renew_deadline` (two thirds of the lease); the rest of the lease, a third of it (5 s of
    15 s), is the margin for a write sent before that deadline and answered after it. A standby
    may take the Lease only after `r + lease`, so a write inside the margin never overlaps
    another holder's term.

    The Lease is read by polling, so a renewal is seen a little after it happened: a write is
    judged only once the Lease has been read after it was answered (`observed_until`); until
    then it waits in `pending` (a new leader's first write would otherwise look like a write by
    a replica that never held it).

    One history is outside a replica's hands: a write it sent before its renew deadline that the
    endpoint held (an injected hang) and answered past the Lease while the harness had the
    replica stopped (SIGSTOP): a stopped process cannot give up on a request. Those are listed
    in `held_while_paused`, not reported as violations; anything else answered past the Lease
    is, and so is a write that arrived after the renew deadline (the fence let it through).
    """

    # The time a request takes from the fence's check to the endpoint's clock.
    SENT_SLACK = 0.5

    name = "one writer"

    def __init__(self, replicas: set[str], lease_seconds: float):
        self.replicas = replicas
        self.lease = lease_seconds
        # replica -> sorted renew times seen while it was the holder.
        self.renewals: dict[str, list[float]] = defaultdict(list)
        # Every renewal seen, by anyone: sorted (renew time, holder).
        self.timeline: list[tuple[float, str]] = []
        self.holder_at: list[tuple[float, str]] = []
        self.pending: list[dict] = []
        # replica -> [(stopped at, continued at or None)]
        self.stopped: dict[str, list[tuple[float, float | None]]] = defaultdict(list)
        self.held_while_paused: list[str] = []
        self.writes_checked = 0

    def lease_seen(self, holder: str, renew_time: float) -> None:
        times = self.renewals[holder]
        if not times or renew_time > times[-1]:
            times.append(renew_time)
        elif renew_time not in times:
            bisect.insort(times, renew_time)
        else:
            return
        bisect.insort(self.timeline, (renew_time, holder))
        if not self.holder_at or self.holder_at[-1][1] != holder:
            self.holder_at.append((renew_time, holder))

    def paused(self, replica: str, at: float) -> None:
        self.stopped[replica].append((at, None))

    def resumed(self, replica: str, at: float) -> None:
        spans = self.stopped[replica]
        if spans and spans[-1][1] is None:
            spans[-1] = (spans[-1][0], at)

    def replica_of(self, entry: dict) -> str | None:
        for key in (entry.get("key"), entry.get("sourceKey")):
            if key in self.replicas:
                return key
        return None

    def _lease_at(self, t: float) -> tuple[float, str] | None:
        i = bisect.bisect_right(self.timeline, (t, "\U0010ffff"))
        return self.timeline[i - 1] if i else None

    def _was_stopped(self, replica: str, start: float, end: float) -> bool:
        return any(
            a <= end and (b is None or b >= start) for (a, b) in self.stopped.get(replica, [])
        )

    def calls(self, entries: list[dict], observed_until: float = float("inf")) -> list[Violation]:
        """Judges the replicas' writes answered up to `observed_until` (when the Lease was last
        read: later renewals may not be seen yet); later ones wait for a later call."""
        found = []
        waiting = []
        for e in self.pending + entries:
            # STS hands out credentials; it changes nothing asyncscale is fenced for.
            if not e.get("write") or e.get("service") == "sts":
                continue
            replica = self.replica_of(e)
            if replica is None:
                continue
            if e["answeredAt"] > observed_until:
                waiting.append(e)
                continue
            self.writes_checked += 1
            violation = self._judge(e, replica)
            if violation is not None:
                found.append(violation)
        self.pending = waiting
        return found

    def _judge(self, e: dict, replica: str) -> Violation | None:
        t = e["answeredAt"]
        lease = self._lease_at(t)
        if lease is not None and lease[1] == replica and t <= lease[0] + self.lease:
            return None
        times = self.renewals.get(replica, [])
        i = bisect.bisect_right(times, t)
        last = times[i - 1] if i else None
        what = f"{e['service']} {e['operation']} {e.get('names', '')}"
        received = e.get("receivedAt", t)
        sent_in_term = self._lease_at(received)
        if (
            sent_in_term is not None
            and sent_in_term[1] == replica
            and received <= sent_in_term[0] + self.lease * 2 / 3 + self.SENT_SLACK
            and self._was_stopped(replica, received, t)
        ):
            self.held_while_paused.append(
                f"{what} by {replica}: received {received - sent_in_term[0]:.1f}s and answered "
                f"{t - sent_in_term[0]:.1f}s after its last renewal, while it was stopped"
            )
            return None
        holder = lease[1] if lease is not None else "nobody"
        if last is None:
            since = "never held"
        elif lease is not None and lease[1] != replica:
            since = (
                f"{t - last:.1f}s after its last renewal, {t - lease[0]:.1f}s after {lease[1]} "
                f"renewed the Lease"
            )
        else:
            since = f"{t - last:.1f}s after its last renewal"
        return Violation(
            self.name,
            t,
            f"{what} answered with {replica}'s keys, {since} (Lease {self.lease:.0f}s; "
            f"holder then: {holder})",
        )


class QuotaShare:
    """Trap 2: under Share the MaxCapacity of the managed endpoints of a quota, plus what other
    endpoints use, stays within the quota; no scaling activity fails for the quota.

    Two kinds of moment are outside asyncscale's hands, and each opens a window that lasts until
    the sum fits again (every window's length is reported):
    - the soak lowers a quota below what is in use (limit `window_limit`: the quota re-read
      and the resyncs that follow). The window stays open for `learn_limit` even once the sum
      fits: until the controller's next read of the quota it knows only the old value, and a
      raise into the room that value leaves is all it can do (the hour at 8cee1a6: churn had
      brought the sum under the lowered quota, the harness closed the window, and a raise
      into the old value's room was judged as an over-commit 156 s after the lowering);
    - other endpoints' instances grow (an endpoint created with its initial instance, one
      re-created behind asyncscale's back): asyncscale sees it at the next refresh of its
      picture and lowers the caps at the resync after, so a sum over the quota is allowed for
      `reaction_limit` after the growth, or after the last disturbance that keeps asyncscale from
      reacting (an outage, a leader change, AWS failing), whichever is later. Only the growth
      is excused: meanwhile the managed caps must still fit what the quota left before it (a
      raise of asyncscale's own in the window is a violation at once). An endpoint of a live
      resource that comes back with one instance (`endpoint_returns`) is no such growth: its
      resource kept an instance for it, so the sum must fit at once.
    A sum over the quota outside these windows, or a window past its limit, is a violation;
    how long each window lasted is reported."""

    name = "no quota over-commit"

    def __init__(self, window_limit: float, reaction_limit: float, learn_limit: float = 0.0):
        self.window_limit = window_limit
        self.reaction_limit = reaction_limit
        self.learn_limit = learn_limit
        # Lowering windows whose sum has fitted once: reported then, open until `learn_limit`.
        self.fitted: set[tuple[str, str]] = set()
        self.windows: list[tuple[str, float]] = []  # lowering windows until they fit: (what, seconds)
        # Over-commits inside a reaction window, once they closed: (what, seconds over).
        self.reactions: list[tuple[str, float]] = []
        self.over_since: dict[tuple[str, str], float] = {}
        self.open_since: dict[tuple[str, str], float] = {}
        self.reaction_since: dict[tuple[str, str], float] = {}
        self.previous_other: dict[tuple[str, str], int] = {}
        # What other endpoints held before the growth that opened a reaction window.
        self.baseline: dict[tuple[str, str], int] = {}
        # Every reaction window, as (start, end); end None while open: a scaling activity that
        # started inside one failed for the growth.
        self.spans: dict[tuple[str, str], list[list[float | None]]] = {}
        self.seen_failures: set[str] = set()
        self.over: set[tuple[str, str]] = set()
        # Endpoints of live resources re-created with one instance, not yet seen as growth:
        # when each came back.
        self.returns: dict[tuple[str, str], list[float]] = {}

    def endpoint_returns(self, account: str, instance_type: str, now: float) -> None:
        """An endpoint of a live resource came back with one instance: its resource kept one
        for it, so that instance is no growth to react to."""
        self.returns.setdefault((account, instance_type), []).append(now)

    def quota_lowered(self, account: str, instance_type: str, now: float) -> None:
        key = (account, instance_type)
        if key in self.fitted:
            # A new lowering while the last one's window waited out its learning time.
            self.fitted.discard(key)
            self.open_since[key] = now
        self.open_since.setdefault(key, now)

    def sums(
        self,
        now: float,
        quotas: dict[tuple[str, str], int],
        managed_max: dict[tuple[str, str], int],
        other_use: dict[tuple[str, str], int],
        quiet_since: float | None = None,
    ) -> list[Violation]:
        found = []
        for key, quota in quotas.items():
            managed, others = managed_max.get(key, 0), other_use.get(key, 0)
            total = managed + others
            what = f"{key[1]} in {key[0]}"
            # The first look is the baseline, not growth.
            previous = self.previous_other.get(key, others)
            # A return not seen as growth within the reaction limit (its target registered
            # between two looks) is forgotten: it excuses nothing later.
            returns = [t for t in self.returns.get(key, []) if now - t <= self.reaction_limit]
            if others > previous and returns:
                returned = min(len(returns), others - previous)
                returns = returns[returned:]
                previous += returned
            self.returns[key] = returns
            if others > previous:
                # Each growth gives asyncscale the reaction limit from then on.
                self.reaction_since[key] = now
                self.baseline.setdefault(key, previous)
                spans = self.spans.setdefault(key, [])
                if not spans or spans[-1][1] is not None:
                    spans.append([now, None])
            if key in self.baseline:
                self.baseline[key] = min(self.baseline[key], others)
            self.previous_other[key] = others
            if key in self.open_since and total <= quota:
                if key not in self.fitted:
                    self.fitted.add(key)
                    self.windows.append((what, now - self.open_since[key]))
                if now - self.open_since[key] >= self.learn_limit:
                    self.open_since.pop(key)
                    self.fitted.discard(key)
            if total <= quota:
                if key in self.over_since:
                    self.reactions.append((what, now - self.over_since.pop(key)))
                self.baseline.pop(key, None)
                for span in self.spans.get(key, []):
                    if span[1] is None:
                        span[1] = now
                self.over.discard(key)
                continue
            sums = f"MaxCapacity {managed} + other endpoints' {others} instances > quota {quota}"
            reacting_since = max(self.reaction_since.get(key, float("-inf")), quiet_since or float("-inf"))
            if key in self.open_since:
                since, limit, why = self.open_since[key], self.window_limit, "the lowered quota"
            elif key in self.baseline and now - reacting_since <= self.reaction_limit:
                before = self.baseline[key]
                if managed + before > quota and key not in self.over:
                    # Not the growth's doing: the caps alone are past what was left before it.
                    self.over.add(key)
                    found.append(
                        Violation(
                            self.name,
                            now,
                            f"{what}: MaxCapacity {managed} + the {before} instances other "
                            f"endpoints held before they grew > quota {quota} (asyncscale's caps "
                            f"alone are past the quota)",
                        )
                    )
                self.over_since.setdefault(key, now)
                continue
            elif key in self.reaction_since:
                since, limit, why = self.reaction_since[key], self.reaction_limit, "other endpoints' growth"
            else:
                since, limit, why = now, 0.0, None
            if why is not None and now - since <= limit:
                continue
            if key in self.over:
                continue
            self.over.add(key)
            message = f"{what}: {sums}"
            if why is not None:
                message += f", {now - since:.0f}s after {why} (limit {limit:.0f}s)"
            found.append(Violation(self.name, now, message))
        return found

    def failed_activities(
        self, now: float, account: str, activities: list[dict], type_of: dict[str, str]
    ) -> list[Violation]:
        found = []
        for a in activities:
            ident = f"{account}/{a.get('ActivityId')}"
            if ident in self.seen_failures:
                continue
            self.seen_failures.add(ident)
            message = a.get("StatusMessage") or ""
            # AWS's wording: "The account-level service limit '<type> for endpoint usage' is N
            # Instances ..." (the word quota comes only in its advice at the end).
            lowered = message.lower()
            if not any(w in lowered for w in ("quota", "service limit", "resourcelimitexceeded")):
                continue
            key = (account, type_of.get(a.get("ResourceId", ""), "?"))
            # When it was seen (within a round of being recorded): its StartTime is on the
            # model's clock, which runs faster than the wall's.
            if key in self.open_since or any(
                start <= now <= (end + 2.0 if end is not None else now)
                for start, end in self.spans.get(key, [])
            ):
                # Within a window: the growth's (or the lowered quota's) doing, not asyncscale's.
                continue
            found.append(
                Violation(
                    self.name,
                    now,
                    f"scaling activity failed for the quota on {a.get('ResourceId')} in {account}: {message[:200]}",
                )
            )
        return found


@dataclasses.dataclass
class Resource:
    """What the harness knows of one AsyncEndpointScaling it made."""

    key: str  # namespace/name
    account: str
    endpoint: str
    instance_type: str
    min_capacity: int
    changed_at: float  # created, edited, or its endpoint re-created
    deleted_at: float | None = None
    endpoint_missing: bool = False
    # A schedule lowers MinCapacity to 0 at times: trap 1 applies as at minCapacity 0.
    zero_by_schedule: bool = False
    # The harness removed its endpoint once the resource was gone.
    endpoint_removed: bool = False
    # metadata.generation as last seen: a new one is an edit (changed_at moves).
    generation: int | None = None

    @property
    def resource_id(self) -> str:
        return f"endpoint/{self.endpoint}/variant/AllTraffic"


class Ownership:
    """Nothing lost, nothing left, foreign objects untouched, and trap 1:

    - a live resource, quiet for a resync, has its scalable target and target-tracking policy;
      when it may reach zero instances (minCapacity 0, or a schedule to 0) and its share is
      above 0, also the step policy (ChangeInCapacity, a step from 0 that adds instances) and
      the alarm on its endpoint's HasBacklogWithoutCapacity (>= 1, actions enabled) whose
      action is that policy (trap 1): an alarm that exists but watches another endpoint or
      another metric wakes nothing;
    - two resyncs after a resource is deleted, it is gone from the API server (its finalizer
      finished) and nothing of asyncscale's for its endpoint is left in AWS (target tagged as
      ours, our policies, our alarm), unless another live resource now names that endpoint;
    - no write by a replica names a policy or scheduled action the soak made as a foreign tool,
      nor deregisters a target that holds one (AWS would delete them with it).
    """

    lost = "nothing lost"
    trap1 = "trap 1: scale from zero wired"
    left = "nothing left"
    foreign = "foreign objects untouched"

    def __init__(self, resync: float, grace: float, replicas: set[str], foreign_prefix: str):
        self.resync = resync
        self.grace = grace
        self.replicas = replicas
        self.foreign_prefix = foreign_prefix
        # Targets the soak put foreign objects on, still holding them.
        self.foreign_targets: set[str] = set()
        self.reported: set[tuple[str, str]] = set()
        # When each resource was last seen WaitingForQuota.
        self.last_waiting: dict[str, float] = {}

    def _once(self, invariant: str, key: str, now: float, message: str) -> list[Violation]:
        if (invariant, key) in self.reported:
            return []
        self.reported.add((invariant, key))
        return [Violation(invariant, now, message)]

    def state(
        self,
        now: float,
        quiet_since: float,
        resources: list[Resource],
        states: dict[str, dict],
        effective_max: dict[str, int | None],
        present: set[str] | None = None,
        quiet_by_key: dict[str, float] | None = None,
        waiting: set[str] | None = None,
    ) -> list[Violation]:
        """`quiet_since`: when the last fault that disturbs every resource ended (now while
        one is on); `quiet_by_key`: the same for faults that disturb some resources only (a
        quota lowered: those of its type); `states`: the endpoint's /_sim/state by account;
        `effective_max`: status.effectiveMaxCapacity by key (missing or None: the target's
        MaxCapacity in AWS is judged instead); `present`: the names the API server still
        lists (None: not known this round); `waiting`: the keys whose Ready says
        WaitingForQuota: nothing is written for a minimum that does not fit (it waits for
        instances other endpoints hold, which only their own scale-in releases, or for their
        caps' lowerings), so those without a target are judged a resync after they were last
        seen waiting."""
        found = []
        overall = quiet_since
        live_ids = {
            (r.account, r.resource_id) for r in resources if r.deleted_at is None
        }
        for r in resources:
            st = states.get(r.account, {})
            targets = {t["ResourceId"]: t for t in st.get("ScalableTargets", [])}
            policies = {
                (p["ResourceId"], p["PolicyName"]): p for p in st.get("ScalingPolicies", [])
            }
            alarms = {a["AlarmName"]: a for a in st.get("MetricAlarms", [])}
            rid = r.resource_id
            quiet_since = max(overall, (quiet_by_key or {}).get(r.key, overall))
            if r.deleted_at is None:
                # Waiting with nothing written; a share of 0 still has its target (MaxCapacity
                # 0) and policy, and those are judged.
                if r.key in (waiting or ()) and rid not in targets:
                    self.last_waiting[r.key] = now
                since = max(r.changed_at, quiet_since, self.last_waiting.get(r.key, float("-inf")))
                settled = since + longest_resync(self.resync) + self.grace
                if now < settled or r.endpoint_missing:
                    # Reported once per change: a later change may repair what was lost.
                    self.reported.discard((self.lost, r.key))
                    self.reported.discard((self.trap1, r.key))
                    continue
                missing = [
                    what
                    for what, there in (
                        ("scalable target", rid in targets),
                        (f"policy {TARGET_TRACKING_POLICY}", (rid, TARGET_TRACKING_POLICY) in policies),
                    )
                    if not there
                ]
                if missing:
                    found += self._once(
                        self.lost, r.key, now,
                        f"{r.key} ({rid} in {r.account}) has no {', '.join(missing)} "
                        f"{now - since:.0f}s after its last change, fault or wait for the quota",
                    )
                share = effective_max.get(r.key)
                if share is None and rid in targets:
                    # No status to read it from (a status never written is no excuse).
                    share = targets[rid].get("MaxCapacity")
                if (r.min_capacity == 0 or r.zero_by_schedule) and share not in (None, 0):
                    what = scale_from_zero_fault(
                        r.endpoint,
                        policies.get((rid, SCALE_FROM_ZERO_POLICY)),
                        alarms.get(alarm_name(rid)),
                    )
                    if what is not None:
                        at = "at minCapacity 0" if r.min_capacity == 0 else "with a schedule to 0"
                        found += self._once(
                            self.trap1, r.key, now,
                            f"{r.key} ({rid} in {r.account}) {at} has {what}",
                        )
            else:
                if now < max(r.deleted_at, quiet_since) + 2 * longest_resync(self.resync) + self.grace:
                    continue
                if present is not None and r.key.split("/", 1)[1] in present:
                    found += self._once(
                        self.left, r.key + "#object", now,
                        f"{r.key} was deleted {now - r.deleted_at:.0f}s ago and is still in the "
                        "API server: its finalizer has not finished",
                    )
                    continue
                if (r.account, rid) in live_ids:
                    continue
                left = []
                t = targets.get(rid)
                if t is not None and (t.get("Tags") or {}).get(MANAGED_BY_TAG):
                    left.append("scalable target")
                left += [
                    f"policy {name}"
                    for name in (TARGET_TRACKING_POLICY, SCALE_FROM_ZERO_POLICY)
                    if (rid, name) in policies
                ]
                if alarm_name(rid) in alarms:
                    left.append("alarm")
                if left:
                    found += self._once(
                        self.left, r.key, now,
                        f"{r.key} was deleted {now - r.deleted_at:.0f}s ago; left in AWS "
                        f"({r.account}, {rid}): {', '.join(left)}",
                    )
        return found

    def foreign_planted(self, resource_id: str) -> None:
        """The soak, as a foreign tool, put a policy and a scheduled action on this target."""
        self.foreign_targets.add(resource_id)

    def foreign_gone(self, resource_id: str) -> None:
        """The soak deleted the endpoint: AWS took the target and what it held."""
        self.foreign_targets.discard(resource_id)

    def calls(self, entries: list[dict]) -> list[Violation]:
        found = []
        for e in entries:
            if not e.get("write"):
                continue
            if e.get("key") not in self.replicas and e.get("sourceKey") not in self.replicas:
                continue
            names = e.get("names", "")
            if e.get("operation") == "DeregisterScalableTarget" and not e.get("error") and any(
                f"ResourceId={rid}" in names.split() for rid in self.foreign_targets
            ):
                found.append(
                    Violation(
                        self.foreign,
                        e["answeredAt"],
                        f"DeregisterScalableTarget by {e.get('key')} of a target holding a foreign "
                        f"tool's policy and scheduled action (AWS deletes them with it): {names}",
                    )
                )
            for field in ("PolicyName=", "ScheduledActionName="):
                for word in names.split():
                    if word.startswith(field + self.foreign_prefix):
                        found.append(
                            Violation(
                                self.foreign,
                                e["answeredAt"],
                                f"{e['operation']} by {e.get('key')} on a foreign object: {names}",
                            )
                        )
        return found


def scale_from_zero_fault(endpoint: str, step: dict | None, alarm: dict | None) -> str | None:
    """What keeps an endpoint at zero instances from scaling out (trap 1), or None when the
    step policy and its alarm are wired as docs/aws-behaviour.md §1.4 says."""
    if step is None:
        return "no step policy"
    if alarm is None:
        return "no alarm"
    if step.get("PolicyARN") not in (alarm.get("AlarmActions") or []):
        return "an alarm whose actions do not name the step policy"
    if alarm.get("ActionsEnabled") is False:
        return "an alarm with its actions disabled"
    if alarm.get("MetricName") != "HasBacklogWithoutCapacity" or alarm.get("Namespace") != "AWS/SageMaker":
        return f"an alarm on {alarm.get('Namespace')} {alarm.get('MetricName')}, not AWS/SageMaker HasBacklogWithoutCapacity"
    dimensions = {d.get("Name"): d.get("Value") for d in alarm.get("Dimensions") or []}
    if dimensions.get("EndpointName") != endpoint:
        return f"an alarm on endpoint {dimensions.get('EndpointName')!r}, not {endpoint!r}"
    try:
        threshold = float(alarm.get("Threshold"))
    except (TypeError, ValueError):
        threshold = None
    if alarm.get("ComparisonOperator") != "GreaterThanOrEqualToThreshold" or threshold != 1.0:
        return (
            f"an alarm that fires at {alarm.get('ComparisonOperator')} {alarm.get('Threshold')}, "
            "not GreaterThanOrEqualToThreshold 1"
        )
    config = step.get("Configuration") or {}
    if step.get("PolicyType") not in (None, "StepScaling") or config.get("AdjustmentType") != "ChangeInCapacity":
        return (
            f"a step policy of type {step.get('PolicyType')} adjusting by "
            f"{config.get('AdjustmentType')}, not StepScaling by ChangeInCapacity"
        )
    adds = any(
        (s.get("MetricIntervalLowerBound") or 0) <= 0 and (s.get("ScalingAdjustment") or 0) >= 1
        for s in config.get("StepAdjustments") or []
    )
    if not adds:
        return "a step policy with no step from 0 that adds an instance"
    return None


class Recovery:
    """After the last fault of a burst ends, every resource is Ready within two resyncs (each up
    to a tenth longer, see `longest_resync`; plus the grace the other checks allow for a requeue
    and a round of checks)."""

    name = "recovery"

    def __init__(self, resync: float, grace: float = 0.0):
        self.limit = 2 * longest_resync(resync) + grace
        self.waiting_since: float | None = None
        # What the limit judges: until every resource not excused was Ready.
        self.longest = 0.0
        # Until every resource was Ready, the excused ones too (not judged).
        self.longest_all = 0.0
        self.recoveries: list[float] = []
        self.reported = False
        self.cleared = False

    def burst_ended(self, now: float) -> None:
        self.waiting_since = now
        self.reported = False
        self.cleared = False

    def burst_started(self) -> None:
        self.waiting_since = None

    def ready(self, now: float, not_ready: list[str], excused: frozenset[str] = frozenset()) -> list[Violation]:
        """`excused`: resources of `not_ready` allowed to be so for now (a quota dip's aftermath):
        they keep the recovery open, and count against its limit once no longer excused."""
        if self.waiting_since is None:
            return []
        waited = now - self.waiting_since
        late = [k for k in not_ready if k not in excused]
        if not late and not self.cleared:
            self.cleared = True
            self.longest = max(self.longest, waited)
        if not not_ready:
            self.recoveries.append(waited)
            self.longest_all = max(self.longest_all, waited)
            self.waiting_since = None
            return []
        if late:
            self.cleared = False
        if waited > self.limit and late and not self.reported:
            self.reported = True
            self.longest = max(self.longest, waited)
            return [
                Violation(
                    self.name,
                    now,
                    f"{len(late)} resource(s) not Ready {waited:.0f}s after the last fault "
                    f"ended (limit {self.limit:.0f}s): {', '.join(sorted(late)[:5])}",
                )
            ]
        return []


class Visits:
    """No stuck resource: while nothing disturbs the cluster, each live resource is reconciled
    at least once a resync (a tenth more at the longest, see `longest_resync`; plus a grace
    for the requeue's own delay), counted from the end of its last visit: a visit may itself take long (after a takeover the new leader reads the
    whole account before the first write); one that runs past `longest` is stuck too. A visit
    that failed is due again when the controller said it would retry (its backoff, 5 s
    doubling, logged with the failure), if that is later: four failures in a row during an AWS
    burst put the next try 40 s away, past a resync of 20 s, by design."""

    name = "no stuck resource"

    def __init__(self, resync: float, grace: float, longest: float = 130.0):
        self.limit = longest_resync(resync) + grace
        self.grace = grace
        self.longest = longest
        self.last: dict[str, float] = {}
        self.running: dict[str, float] = {}  # key -> when the visit in progress started
        self.reported: set[str] = set()
        # key -> when the controller said it would try again after a failed visit
        self.retry_at: dict[str, float] = {}

    def failed(self, key: str, at: float, retry_in: float) -> None:
        """A visit failed; the controller retries it `retry_in` seconds later."""
        self.retry_at[key] = max(self.retry_at.get(key, 0.0), at + retry_in)

    def visited(self, key: str, at: float) -> None:
        """A visit started."""
        self.running[key] = at
        if self.retry_at.get(key, float("inf")) <= at:
            self.retry_at.pop(key)
        if at > self.last.get(key, 0.0):
            self.last[key] = at
            self.reported.discard(key)

    def finished(self, key: str, at: float) -> None:
        self.running.pop(key, None)
        if at > self.last.get(key, 0.0):
            self.last[key] = at

    def check(self, now: float, quiet_since: float, live: dict[str, float]) -> list[Violation]:
        """`live`: key -> when it was created (or last changed)."""
        found = []
        for key, since in live.items():
            if key in self.reported:
                continue
            running = self.running.get(key)
            if running is not None:
                if now - max(running, quiet_since) > self.longest:
                    self.reported.add(key)
                    found.append(
                        Violation(self.name, now, f"{key}: a visit has run for {now - running:.0f}s")
                    )
                continue
            start = max(quiet_since, since, self.last.get(key, 0.0))
            due = max(start + self.limit, self.retry_at.get(key, 0.0) + self.grace)
            if now > due:
                self.reported.add(key)
                last = self.last.get(key)
                found.append(
                    Violation(
                        self.name,
                        now,
                        f"{key} not reconciled for {now - max(quiet_since, since, last or 0):.0f}s "
                        f"while nothing was disturbed (last visit: "
                        f"{'never' if last is None else f'{now - last:.0f}s ago'})",
                    )
                )
        return found


class Memory:
    """Controller anonymous RSS (RssAnon: what it allocates; not the executable's pages, which
    map in as code paths first run) grows less than `limit` (10 %) in each role of a process.

    A standby holds the watch cache only; once it leads it also builds what reconciles keep (the
    endpoint picture, metrics readings, Event series, AWS connections), and keeps it when it
    stands by again (to lead again from it). That state fills over the first minutes of leading:
    in the hour at 901dcb4 (300 resources) leaders rose to about 34 MB over about ten minutes of
    leading, counted across terms, and stayed there (a replica that had led 9 minutes stood by
    for 37 minutes at 33.8 to 34.0 MB, and leading 4 more minutes added 0.2 MB). So the roles
    are three, each judged on its own: standby before ever leading, leading, and standby after
    leading; the last two only once the process has led `lead_warmup` seconds in all. Within a
    role, from its first samples (past the warm-up of each stretch) to its last, across all its
    stretches, so that a leak of each term of leadership adds up and shows.

    Each end is the median of the samples within `window` seconds of it: the allocator moves
    RssAnon in steps of about 3 MB both ways from one minute to the next (a leader at 29.5,
    32.5, 29.7, 32.8 MB), a tenth of a 30 MB process, so one sample at each end would judge a
    step, not a trend."""

    name = "memory"

    def __init__(
        self,
        warmup: float,
        min_judged: float,
        limit: float = 0.10,
        window: float = 300.0,
        lead_warmup: float = 0.0,
    ):
        self.warmup = warmup
        self.min_judged = min_judged
        self.limit = limit
        self.window = window
        self.lead_warmup = lead_warmup
        # (pid, role) -> (label, [(t, anonymous rss, file-backed rss)]) past the warm-ups
        self.samples: dict[tuple[int, str], tuple[str, list[tuple[float, int, int | None]]]] = {}
        # pid -> (leading, when its current stretch began)
        self.stretch: dict[int, tuple[bool, float]] = {}
        # pid -> (seconds led in all, the last sample's time)
        self.led: dict[int, tuple[float, float]] = {}

    def sample(
        self,
        pid: int,
        label: str,
        started: float,
        now: float,
        rss: int,
        leading: bool = False,
        file: int | None = None,
    ) -> None:
        role, since = self.stretch.get(pid, (leading, started))
        if role != leading:
            since = now
        self.stretch[pid] = (leading, since)
        led, last = self.led.get(pid, (0.0, now))
        if leading and role:
            led += now - last
        self.led[pid] = (led, now)
        has_led = leading or led > 0
        name = "leading" if leading else "standby after leading" if has_led else "standby"
        entry = self.samples.setdefault((pid, name), (f"{label} ({name})", []))
        warm = now - since >= self.warmup and (not has_led or led >= self.lead_warmup)
        if warm:
            entry[1].append((now, rss, file))

    def judge(self) -> tuple[list[Violation], list[str]]:
        found, lines = [], []
        for (pid, _), (label, warm) in self.samples.items():
            if len(warm) < 2:
                lines.append(f"{label} (pid {pid}): not judged (no sample past the warm-ups)")
                continue
            t0, t1 = warm[0][0], warm[-1][0]
            first = [w for w in warm if w[0] <= t0 + self.window]
            last = [w for w in warm if w[0] >= t1 - self.window]
            r0, r1 = statistics.median(w[1] for w in first), statistics.median(w[1] for w in last)
            f0, f1 = first[0][2], last[-1][2]
            growth = (r1 - r0) / r0 if r0 else 0.0
            judged = t1 - t0 >= self.min_judged
            files = (
                f" (file-backed, not judged: {f0 / 1e6:.1f} to {f1 / 1e6:.1f} MB)"
                if f0 is not None and f1 is not None
                else ""
            )
            lines.append(
                f"{label} (pid {pid}): anonymous RSS {r0 / 1e6:.1f} MB after warm-up, {r1 / 1e6:.1f} MB "
                f"{t1 - t0:.0f}s later ({growth:+.1%}; medians of {self.window:.0f} s at each end)"
                f"{files}{'' if judged else ', too short to judge'}"
            )
            if judged and growth > self.limit:
                found.append(
                    Violation(self.name, t1, f"{label} anonymous RSS grew {growth:.1%} over {t1 - t0:.0f}s")
                )
        return found, lines

    def judged(self) -> int:
        """How many (process, role) were judged: a long soak in which none was says so."""
        return sum(
            1
            for _, warm in self.samples.values()
            if len(warm) >= 2 and warm[-1][0] - warm[0][0] >= self.min_judged
        )


class Coverage:
    """What the checks above could not see. The ones that wait for a quiet spell (nothing
    lost, trap 1, nothing left, recovery, no stuck resource) look only once the fleet first
    converged and a resync after each fault, and nothing looks while the harness cannot read
    the API server; a soak in which they never looked would pass on nothing. So:

    - the fleet must converge (every resource Ready at once) within `converge_limit` of the
      first round;
    - outside faults, the harness must not fail to read the API server and the endpoint for
      longer than `blind_limit`;
    - the quiet checks must have been armed at some point, and for `after_last_fault` seconds
      after the last fault ended (`finish`): the faults are what they must see the end of.
    """

    converged = "fleet converged"
    looked = "harness could look"
    armed = "quiet checks armed"

    def __init__(self, converge_limit: float, blind_limit: float):
        self.converge_limit = converge_limit
        self.blind_limit = blind_limit
        self.started: float | None = None
        self.converged_at: float | None = None
        self.blind_since: float | None = None
        self.last_round: float | None = None
        self.armed_seconds = 0.0
        # Armed since the last fault ended (None: no fault yet).
        self.armed_after: float | None = None
        self.reported: set[str] = set()

    def fault_ended(self) -> None:
        self.armed_after = 0.0

    def round(self, now: float, converged: bool, fault_on: bool, looked: bool, armed: bool) -> list[Violation]:
        found = []
        if self.started is None:
            self.started = now
        if converged and self.converged_at is None:
            self.converged_at = now
        if (
            self.converged_at is None
            and now - self.started > self.converge_limit
            and self.converged not in self.reported
        ):
            self.reported.add(self.converged)
            found.append(Violation(
                self.converged, now,
                f"the fleet was never all Ready at once in {now - self.started:.0f}s (limit "
                f"{self.converge_limit:.0f}s): the checks that wait for it have seen nothing",
            ))
        if looked or fault_on:
            self.blind_since = None
            self.reported.discard(self.looked)
        else:
            if self.blind_since is None:
                self.blind_since = now
            if now - self.blind_since > self.blind_limit and self.looked not in self.reported:
                self.reported.add(self.looked)
                found.append(Violation(
                    self.looked, now,
                    f"the harness could not read the API server or the endpoint for "
                    f"{now - self.blind_since:.0f}s with no fault on (limit {self.blind_limit:.0f}s)",
                ))
        if armed and self.last_round is not None:
            self.armed_seconds += now - self.last_round
            if self.armed_after is not None:
                self.armed_after += now - self.last_round
        self.last_round = now
        return found

    def finish(self, now: float, after_last_fault: float = 0.0) -> list[Violation]:
        if self.armed in self.reported:
            return []
        if self.armed_seconds <= 0:
            why = ("nothing lost, trap 1, nothing left and no stuck resource never got a quiet "
                   "resync to look in (faults back to back, or the fleet never converged): they saw nothing")
        elif self.armed_after is not None and self.armed_after < after_last_fault:
            why = (f"the quiet checks looked only {self.armed_after:.0f}s after the last fault ended "
                   f"(need {after_last_fault:.0f}s): what it left behind was not judged")
        else:
            return []
        self.reported.add(self.armed)
        return [Violation(self.armed, now, why)]
